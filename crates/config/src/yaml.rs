//! YAML into a tree that remembers where every key and value stood, so that every
//! later error can name `file:line:col`.

use std::collections::HashMap;

use saphyr_parser::{Event, Parser, ScalarStyle, Span};
use serde_json::{Map, Number, Value};

/// A position in a source file: line and column, both 1-based.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Loc {
    pub line: usize,
    pub col: usize,
}

impl Loc {
    fn of(span: &Span) -> Loc {
        Loc {
            line: span.start.line(),
            col: span.start.col() + 1,
        }
    }
}

/// A YAML node with its position.
#[derive(Debug, Clone)]
pub struct Node {
    pub loc: Loc,
    pub kind: NodeKind,
}

#[derive(Debug, Clone)]
pub enum NodeKind {
    Scalar(Value),
    Seq(Vec<Node>),
    /// Keys keep their own position: an unknown key is reported where the key is.
    Map(Vec<(String, Loc, Node)>),
}

/// A YAML syntax or structure error, with its position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YamlError {
    pub loc: Loc,
    pub path: String,
    pub message: String,
}

impl Node {
    /// The node as plain JSON, the form serde deserializes the raw config from.
    pub fn to_json(&self) -> Value {
        match &self.kind {
            NodeKind::Scalar(v) => v.clone(),
            NodeKind::Seq(items) => Value::Array(items.iter().map(Node::to_json).collect()),
            NodeKind::Map(entries) => Value::Object(
                entries
                    .iter()
                    .map(|(k, _, v)| (k.clone(), v.to_json()))
                    .collect::<Map<_, _>>(),
            ),
        }
    }

    /// Follows a path of map keys and sequence indexes; returns the node and, for a
    /// map entry, the position of its key.
    pub fn lookup<'a>(&'a self, path: &[PathSeg]) -> Option<(&'a Node, Option<Loc>)> {
        let mut node = self;
        let mut key_loc = None;
        for seg in path {
            match (seg, &node.kind) {
                (PathSeg::Key(k), NodeKind::Map(entries)) => {
                    let (_, kl, v) = entries.iter().find(|(name, _, _)| name == k)?;
                    key_loc = Some(*kl);
                    node = v;
                }
                (PathSeg::Index(i), NodeKind::Seq(items)) => {
                    node = items.get(*i)?;
                    key_loc = None;
                }
                _ => return None,
            }
        }
        Some((node, key_loc))
    }

    pub fn as_map(&self) -> Option<&[(String, Loc, Node)]> {
        match &self.kind {
            NodeKind::Map(m) => Some(m),
            _ => None,
        }
    }
}

/// One step of a path into the tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathSeg {
    Key(String),
    Index(usize),
}

/// Renders a path as `rules[0].targets[1].url`.
pub fn render_path(path: &[PathSeg]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            PathSeg::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            PathSeg::Index(i) => {
                out.push('[');
                out.push_str(&i.to_string());
                out.push(']');
            }
        }
    }
    out
}

/// Parses one YAML document (an empty file is an empty map). Duplicate keys are
/// reported, all of them; a syntax error stops parsing, as it must.
pub fn parse(text: &str) -> Result<Node, Vec<YamlError>> {
    let mut builder = Builder::default();
    for item in Parser::new_from_str(text) {
        match item {
            Ok((event, span)) => {
                if let Err(e) = builder.event(event, &span) {
                    return Err(vec![e]);
                }
            }
            Err(e) => {
                return Err(vec![YamlError {
                    loc: Loc {
                        line: e.marker().line(),
                        col: e.marker().col() + 1,
                    },
                    path: String::new(),
                    message: format!("invalid YAML: {}", e.info()),
                }])
            }
        }
    }
    if !builder.errors.is_empty() {
        return Err(builder.errors);
    }
    Ok(builder.root.unwrap_or(Node {
        loc: Loc { line: 1, col: 1 },
        kind: NodeKind::Map(Vec::new()),
    }))
}

enum Frame {
    Seq(Loc, usize, Vec<Node>),
    Map(Loc, usize, Vec<(String, Loc, Node)>, Option<(String, Loc)>),
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    root: Option<Node>,
    anchors: HashMap<usize, Node>,
    documents: usize,
    errors: Vec<YamlError>,
}

impl Builder {
    fn path(&self) -> String {
        let mut segs = Vec::new();
        for frame in &self.stack {
            match frame {
                Frame::Seq(_, _, items) => segs.push(PathSeg::Index(items.len())),
                Frame::Map(_, _, _, Some((k, _))) => segs.push(PathSeg::Key(k.clone())),
                Frame::Map(..) => {}
            }
        }
        render_path(&segs)
    }

    fn event(&mut self, event: Event<'_>, span: &Span) -> Result<(), YamlError> {
        let loc = Loc::of(span);
        match event {
            Event::DocumentStart(_) => {
                self.documents += 1;
                if self.documents > 1 {
                    return Err(YamlError {
                        loc,
                        path: String::new(),
                        message: "a config file holds one YAML document (split documents into files of a directory)".into(),
                    });
                }
            }
            Event::SequenceStart(anchor, _) => self.stack.push(Frame::Seq(loc, anchor, Vec::new())),
            Event::MappingStart(anchor, _) => {
                self.stack.push(Frame::Map(loc, anchor, Vec::new(), None))
            }
            Event::SequenceEnd => {
                if let Some(Frame::Seq(l, anchor, items)) = self.stack.pop() {
                    self.value(
                        anchor,
                        Node {
                            loc: l,
                            kind: NodeKind::Seq(items),
                        },
                    )?;
                }
            }
            Event::MappingEnd => {
                if let Some(Frame::Map(l, anchor, entries, _)) = self.stack.pop() {
                    self.value(
                        anchor,
                        Node {
                            loc: l,
                            kind: NodeKind::Map(entries),
                        },
                    )?;
                }
            }
            Event::Alias(id) => {
                let node = self.anchors.get(&id).cloned().ok_or_else(|| YamlError {
                    loc,
                    path: self.path(),
                    message: "alias refers to an unknown anchor".into(),
                })?;
                self.value(0, Node { loc, ..node })?;
            }
            Event::Scalar(text, style, anchor, tag) => {
                let value = if let Some(tag) = tag {
                    let suffix = tag.suffix.as_str();
                    match suffix {
                        "str" => Value::String(text.into_owned()),
                        _ => resolve_plain(&text),
                    }
                } else if style == ScalarStyle::Plain {
                    resolve_plain(&text)
                } else {
                    Value::String(text.into_owned())
                };
                // A mapping key is a scalar event too.
                if let Some(Frame::Map(_, _, entries, None)) = self.stack.last_mut() {
                    let key = match value {
                        Value::String(s) => s,
                        other => other.to_string(),
                    };
                    if entries.iter().any(|(k, _, _)| *k == key) {
                        let path = self.path();
                        let full = if path.is_empty() {
                            key.clone()
                        } else {
                            format!("{path}.{key}")
                        };
                        self.errors.push(YamlError {
                            loc,
                            path: full,
                            message: "duplicate key".into(),
                        });
                    }
                    if let Some(Frame::Map(_, _, _, pending)) = self.stack.last_mut() {
                        *pending = Some((key, loc));
                    }
                    return Ok(());
                }
                self.value(
                    anchor,
                    Node {
                        loc,
                        kind: NodeKind::Scalar(value),
                    },
                )?;
            }
            Event::StreamStart | Event::StreamEnd | Event::DocumentEnd | Event::Nothing => {}
        }
        Ok(())
    }

    fn value(&mut self, anchor: usize, node: Node) -> Result<(), YamlError> {
        if anchor != 0 {
            self.anchors.insert(anchor, node.clone());
        }
        match self.stack.last_mut() {
            None => self.root = Some(node),
            Some(Frame::Seq(_, _, items)) => items.push(node),
            Some(Frame::Map(_, _, entries, pending)) => match pending.take() {
                Some((key, key_loc)) => {
                    // The first of duplicate keys wins; the duplicate is already reported.
                    if !entries.iter().any(|(k, _, _)| *k == key) {
                        entries.push((key, key_loc, node));
                    }
                }
                None => {
                    return Err(YamlError {
                        loc: node.loc,
                        path: self.path(),
                        message: "mapping keys must be plain scalars".into(),
                    })
                }
            },
        }
        Ok(())
    }
}

/// YAML 1.2 core schema for plain scalars.
fn resolve_plain(text: &str) -> Value {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        _ => {}
    }
    if let Ok(i) = text.parse::<i64>() {
        return Value::Number(i.into());
    }
    let looks_numeric = text
        .trim_start_matches(['-', '+'])
        .starts_with(|c: char| c.is_ascii_digit() || c == '.');
    if looks_numeric {
        if let Some(n) = text.parse::<f64>().ok().and_then(Number::from_f64) {
            return Value::Number(n);
        }
    }
    Value::String(text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_positions_of_keys_and_values() {
        let root = parse("a:\n  b: [1, two]\n  'c': \"3\"\n").unwrap();
        let (b, key) = root
            .lookup(&[PathSeg::Key("a".into()), PathSeg::Key("b".into())])
            .unwrap();
        assert_eq!(key, Some(Loc { line: 2, col: 3 }));
        assert_eq!(b.loc, Loc { line: 2, col: 6 });
        let (two, _) = root
            .lookup(&[
                PathSeg::Key("a".into()),
                PathSeg::Key("b".into()),
                PathSeg::Index(1),
            ])
            .unwrap();
        assert_eq!(two.loc, Loc { line: 2, col: 10 });
        assert_eq!(
            root.to_json(),
            serde_json::json!({"a": {"b": [1, "two"], "c": "3"}})
        );
    }

    #[test]
    fn resolves_core_schema_scalars() {
        let root = parse("[~, true, 'true', 1.5, -3, 0x1, .inf, 1e3, abc, '']").unwrap();
        assert_eq!(
            root.to_json(),
            serde_json::json!([null, true, "true", 1.5, -3, "0x1", ".inf", 1000.0, "abc", ""])
        );
    }

    #[test]
    fn reports_every_duplicate_key() {
        let errs = parse("a: 1\nb: 2\na: 3\nc:\n  d: 1\n  d: 2\n").unwrap_err();
        assert_eq!(errs.len(), 2);
        assert_eq!((errs[0].path.as_str(), errs[0].loc.line), ("a", 3));
        assert_eq!((errs[1].path.as_str(), errs[1].loc.line), ("c.d", 6));
    }

    #[test]
    fn syntax_errors_have_positions() {
        let errs = parse("a: [1, 2\nb: 3\n").unwrap_err();
        assert!(errs[0].message.starts_with("invalid YAML"), "{:?}", errs[0]);
        assert!(errs[0].loc.line >= 1);
    }

    #[test]
    fn anchors_and_aliases_expand() {
        let root = parse("x: &t {a: 1}\ny: *t\n").unwrap();
        assert_eq!(
            root.to_json(),
            serde_json::json!({"x": {"a": 1}, "y": {"a": 1}})
        );
    }

    #[test]
    fn empty_document_is_an_empty_map() {
        assert_eq!(parse("").unwrap().to_json(), serde_json::json!({}));
        assert_eq!(
            parse("# only a comment\n").unwrap().to_json(),
            serde_json::json!({})
        );
    }
}
