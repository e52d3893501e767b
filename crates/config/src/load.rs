//! Reading files and directories, and stage one: raw structs, with every error
//! collected rather than the first one alone.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::ConfigError;
use crate::raw::*;
use crate::yaml::{self, render_path, Loc, Node, NodeKind, PathSeg};

/// Where a raw item came from, so stage two can locate its errors too.
#[derive(Debug, Clone)]
pub struct Origin {
    pub file: Arc<str>,
    pub root: Arc<Node>,
    pub path: Vec<PathSeg>,
}

impl Origin {
    /// An error at `sub` (relative to this item), at the value's position, or the
    /// nearest ancestor that exists.
    pub fn error(&self, sub: &[PathSeg], message: impl Into<String>) -> ConfigError {
        self.error_at(sub, false, message)
    }

    /// An error at `sub`, at the key's position when it is a map entry.
    pub fn key_error(&self, sub: &[PathSeg], message: impl Into<String>) -> ConfigError {
        self.error_at(sub, true, message)
    }

    fn error_at(
        &self,
        sub: &[PathSeg],
        prefer_key: bool,
        message: impl Into<String>,
    ) -> ConfigError {
        let mut full = self.path.clone();
        full.extend_from_slice(sub);
        let mut loc = Loc { line: 1, col: 1 };
        for n in (0..=full.len()).rev() {
            if let Some((node, key_loc)) = self.root.lookup(&full[..n]) {
                loc = match (prefer_key, key_loc) {
                    (true, Some(k)) => k,
                    _ => node.loc,
                };
                break;
            }
        }
        ConfigError {
            file: self.file.to_string(),
            loc,
            path: render_path(&full),
            message: message.into(),
        }
    }

    pub fn child(&self, seg: PathSeg) -> Origin {
        let mut path = self.path.clone();
        path.push(seg);
        Origin {
            file: self.file.clone(),
            root: self.root.clone(),
            path,
        }
    }
}

/// A raw item and where it stood.
#[derive(Debug)]
pub struct Located<T> {
    pub value: T,
    pub origin: Origin,
    /// Stage one already reported errors here (bad keys were dropped).
    pub had_errors: bool,
}

/// The raw configuration of all files, items kept with their origins.
#[derive(Debug, Default)]
pub struct RawSet {
    pub server: Option<Located<RawServer>>,
    pub sources: Vec<Located<RawSource>>,
    pub connections: Vec<Located<RawConnection>>,
    pub buses: Vec<Located<RawBus>>,
    pub rules: Vec<Located<RawRule>>,
    pub retention: Option<Located<RawRetention>>,
    pub storage: Option<Located<RawStorage>>,
    pub archives: Vec<Located<RawArchive>>,
    pub software_update: Option<Located<RawSoftwareUpdate>>,
    /// The directory relative paths in the config resolve against.
    pub base_dir: PathBuf,
}

const SECTIONS: &str =
    "server, sources, connections, buses, rules, retention, storage, archives, software_update";

/// Lists the files of a config path: the file itself, or a directory's `*.yaml` and
/// `*.yml` files in name order.
pub fn config_files(path: &Path) -> Result<Vec<PathBuf>, ConfigError> {
    let io_err = |e: std::io::Error| ConfigError {
        file: path.display().to_string(),
        loc: Loc::default(),
        path: String::new(),
        message: format!("cannot read: {e}"),
    };
    let meta = std::fs::metadata(path).map_err(io_err)?;
    if !meta.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(io_err)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")) && p.is_file()
        })
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(ConfigError {
            file: path.display().to_string(),
            loc: Loc::default(),
            path: String::new(),
            message: "directory holds no .yaml or .yml file".into(),
        });
    }
    Ok(files)
}

/// Reads and merges every file, collecting all errors.
pub fn load_raw(path: &Path, errors: &mut Vec<ConfigError>) -> RawSet {
    let base_dir = if path.is_dir() {
        path.to_path_buf()
    } else {
        path.parent().map(Path::to_path_buf).unwrap_or_default()
    };
    let mut set = RawSet {
        base_dir,
        ..RawSet::default()
    };
    let files = match config_files(path) {
        Ok(f) => f,
        Err(e) => {
            errors.push(e);
            return set;
        }
    };
    for file in files {
        let name: Arc<str> = file.display().to_string().into();
        match std::fs::read_to_string(&file) {
            Ok(text) => load_text(&name, &text, &mut set, errors),
            Err(e) => errors.push(ConfigError {
                file: name.to_string(),
                loc: Loc::default(),
                path: String::new(),
                message: format!("cannot read: {e}"),
            }),
        }
    }
    set
}

/// Adds one file's text to the set.
pub fn load_text(file: &Arc<str>, text: &str, set: &mut RawSet, errors: &mut Vec<ConfigError>) {
    let root = match yaml::parse(text) {
        Ok(root) => Arc::new(root),
        Err(errs) => {
            errors.extend(errs.into_iter().map(|e| ConfigError {
                file: file.to_string(),
                loc: e.loc,
                path: e.path,
                message: e.message,
            }));
            return;
        }
    };
    let origin = Origin {
        file: file.clone(),
        root: root.clone(),
        path: Vec::new(),
    };
    let Some(entries) = root.as_map() else {
        errors.push(origin.error(
            &[],
            format!("the top level must be a mapping (expected keys among {SECTIONS})"),
        ));
        return;
    };
    for (key, _, node) in entries {
        let at = origin.child(PathSeg::Key(key.clone()));
        match key.as_str() {
            "server" => single(node, at, &mut set.server, errors),
            "retention" => single(node, at, &mut set.retention, errors),
            "storage" => single(node, at, &mut set.storage, errors),
            "software_update" => single(node, at, &mut set.software_update, errors),
            "sources" => list(node, at, &mut set.sources, errors),
            "connections" => list(node, at, &mut set.connections, errors),
            "buses" => list(node, at, &mut set.buses, errors),
            "rules" => list(node, at, &mut set.rules, errors),
            "archives" => list(node, at, &mut set.archives, errors),
            _ => errors
                .push(at.key_error(&[], format!("unknown field (expected one of {SECTIONS})"))),
        }
    }
}

fn single<T: DeserializeOwned>(
    node: &Node,
    at: Origin,
    slot: &mut Option<Located<T>>,
    errors: &mut Vec<ConfigError>,
) {
    if let Some(first) = slot {
        let (line, col) = first
            .origin
            .root
            .lookup(&first.origin.path)
            .map_or((0, 0), |(n, _)| (n.loc.line, n.loc.col));
        errors.push(at.key_error(
            &[],
            format!(
                "is defined in more than one file (first at {}:{line}:{col})",
                first.origin.file
            ),
        ));
        return;
    }
    if matches!(&node.kind, NodeKind::Scalar(Value::Null)) {
        return;
    }
    let before = errors.len();
    if let Some(value) = deserialize_item(node, &at, errors) {
        *slot = Some(Located {
            value,
            origin: at,
            had_errors: errors.len() > before,
        });
    }
}

fn list<T: DeserializeOwned>(
    node: &Node,
    at: Origin,
    out: &mut Vec<Located<T>>,
    errors: &mut Vec<ConfigError>,
) {
    match &node.kind {
        NodeKind::Seq(items) => {
            for (i, item) in items.iter().enumerate() {
                let item_at = at.child(PathSeg::Index(i));
                let before = errors.len();
                if let Some(value) = deserialize_item(item, &item_at, errors) {
                    out.push(Located {
                        value,
                        origin: item_at,
                        had_errors: errors.len() > before,
                    });
                }
            }
        }
        NodeKind::Scalar(Value::Null) => {}
        _ => errors.push(at.error(&[], "wrong type (expected a list)")),
    }
}

/// Deserializes one item; on an error, records it, drops the offending key and tries
/// again, so several mistakes in one item are all reported.
pub fn deserialize_item<T: DeserializeOwned>(
    node: &Node,
    at: &Origin,
    errors: &mut Vec<ConfigError>,
) -> Option<T> {
    deserialize_value(node.to_json(), at, errors)
}

/// [`deserialize_item`] for a value taken from the node at `at` (a part of it, say:
/// paths in errors are relative to `at`).
pub fn deserialize_value<T: DeserializeOwned>(
    mut json: Value,
    at: &Origin,
    errors: &mut Vec<ConfigError>,
) -> Option<T> {
    let mut removed: Vec<Vec<PathSeg>> = Vec::new();
    for _ in 0..32 {
        match serde_path_to_error::deserialize::<_, T>(&json) {
            // What remains once the bad keys are gone still goes through stage two,
            // so its mistakes are reported too.
            Ok(v) => return Some(v),
            Err(err) => {
                let mut path = to_segs(err.path());
                let raw_msg = err.inner().to_string();
                let (message, is_key, missing) = rewrite(&raw_msg);
                if let Some(field) = missing {
                    path.push(PathSeg::Key(field));
                    if removed.contains(&path) {
                        // The field was there but wrong, and is already reported.
                        path.pop();
                        if !remove(&mut json, &path) {
                            return None;
                        }
                        continue;
                    }
                    let parent = &path[..path.len() - 1];
                    let mut e = at.error(parent, message);
                    let mut full = at.path.clone();
                    full.extend_from_slice(&path);
                    e.path = render_path(&full);
                    errors.push(e);
                    path.pop();
                } else if is_key {
                    errors.push(at.key_error(&path, message));
                } else {
                    errors.push(at.error(&path, message));
                }
                if path.is_empty() || !remove(&mut json, &path) {
                    return None;
                }
                removed.push(path);
            }
        }
    }
    None
}

fn to_segs(path: &serde_path_to_error::Path) -> Vec<PathSeg> {
    use serde_path_to_error::Segment;
    path.iter()
        .filter_map(|s| match s {
            Segment::Seq { index } => Some(PathSeg::Index(*index)),
            Segment::Map { key } => Some(PathSeg::Key(key.clone())),
            Segment::Enum { variant } => Some(PathSeg::Key(variant.clone())),
            Segment::Unknown => None,
        })
        .collect()
}

/// Removes the value at `path`; false when it cannot (an array element or the root).
fn remove(json: &mut Value, path: &[PathSeg]) -> bool {
    let Some((last, parent)) = path.split_last() else {
        return false;
    };
    let mut node = json;
    for seg in parent {
        node = match (seg, node) {
            (PathSeg::Key(k), Value::Object(m)) => match m.get_mut(k) {
                Some(v) => v,
                None => return false,
            },
            (PathSeg::Index(i), Value::Array(a)) => match a.get_mut(*i) {
                Some(v) => v,
                None => return false,
            },
            _ => return false,
        };
    }
    match (last, node) {
        (PathSeg::Key(k), Value::Object(m)) => m.remove(k).is_some(),
        _ => false,
    }
}

/// serde's messages in the project's form: what is wrong (what was expected).
/// Returns the message, whether it belongs at the key, and a missing field's name.
fn rewrite(msg: &str) -> (String, bool, Option<String>) {
    let strip = |s: &str| s.replace("` or `", ", ").replace('`', "");
    if let Some(rest) = msg.strip_prefix("unknown field `") {
        let expected = rest
            .split_once(", expected ")
            .map(|(_, e)| strip(e))
            .unwrap_or_default();
        let expected = expected.trim_start_matches("one of ").to_string();
        let what = if expected.is_empty() || rest.contains("there are no fields") {
            "unknown field (expected no fields here)".to_owned()
        } else {
            format!("unknown field (expected one of {expected})")
        };
        return (what, true, None);
    }
    if let Some(rest) = msg.strip_prefix("missing field `") {
        let field = rest.trim_end_matches('`').to_owned();
        return ("missing required field".to_owned(), false, Some(field));
    }
    if let Some(rest) = msg.strip_prefix("unknown variant `") {
        let (value, expected) = rest.split_once("`, expected ").unwrap_or((rest, ""));
        let expected = strip(expected);
        let expected = expected.trim_start_matches("one of ");
        return (
            format!("unknown value {value:?} (expected one of {expected})"),
            false,
            None,
        );
    }
    if let Some(rest) = msg.strip_prefix("invalid type: ") {
        let (got, expected) = rest
            .split_once(", expected ")
            .unwrap_or((rest, "another type"));
        return (
            format!(
                "wrong type: {} (expected {})",
                strip(got),
                friendly(expected)
            ),
            false,
            None,
        );
    }
    if let Some(rest) = msg.strip_prefix("invalid value: ") {
        let (got, expected) = rest
            .split_once(", expected ")
            .unwrap_or((rest, "another value"));
        return (
            format!(
                "invalid value: {} (expected {})",
                strip(got),
                friendly(expected)
            ),
            false,
            None,
        );
    }
    (strip(msg), false, None)
}

fn friendly(expected: &str) -> String {
    match expected {
        "a string" | "a sequence" | "a map" | "a boolean" => expected
            .replace("sequence", "list")
            .replace("map", "mapping"),
        e if e.starts_with("struct ") || e.starts_with("enum ") => "a mapping".to_owned(),
        "u8" | "u16" | "u32" | "u64" => "a non-negative integer".to_owned(),
        "f64" | "f32" => "a number".to_owned(),
        e => strip_ticks(e),
    }
}

fn strip_ticks(s: &str) -> String {
    s.replace('`', "")
}
