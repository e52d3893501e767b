//! JSONPath as EventBridge users write it: RFC 9535 (serde_json_path), plus the
//! dotted names with dashes that EventBridge accepts (`$.detail.instance-id`,
//! `$.detail-type`), which RFC 9535 only allows in brackets.

use std::fmt;
use std::sync::Arc;

use serde_json::Value;
use serde_json_path::JsonPath;

/// A JSONPath as written in the config, compiled once at load: what a delivery or
/// a request evaluates, never parsing it again.
#[derive(Clone)]
pub struct Path {
    text: Arc<str>,
    compiled: Arc<JsonPath>,
}

impl Path {
    /// Compiles `text`; the error says why it is not a JSONPath.
    pub fn parse(text: &str) -> Result<Path, String> {
        Ok(Path {
            text: text.into(),
            compiled: Arc::new(parse(text)?),
        })
    }

    /// The path as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// What the path selects in `doc`: one match as is, several as an array, none
    /// as `None`.
    pub fn select(&self, doc: &Value) -> Option<Value> {
        let nodes = self.compiled.query(doc).all();
        match nodes.len() {
            0 => None,
            1 => Some(nodes[0].clone()),
            _ => Some(Value::Array(nodes.into_iter().cloned().collect())),
        }
    }

    /// The first match in `doc`.
    pub fn first<'a>(&self, doc: &'a Value) -> Option<&'a Value> {
        self.compiled.query(doc).first()
    }
}

impl fmt::Debug for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.text, f)
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl PartialEq for Path {
    fn eq(&self, other: &Path) -> bool {
        self.text == other.text
    }
}

impl Eq for Path {}

/// Parses a path, rewriting dashed dotted names to brackets when needed.
pub fn parse(path: &str) -> Result<JsonPath, String> {
    match JsonPath::parse(path) {
        Ok(p) => Ok(p),
        Err(first) => {
            let normalized = normalize_path(path).ok_or_else(|| first.to_string())?;
            JsonPath::parse(&normalized).map_err(|_| first.to_string())
        }
    }
}

/// Rewrites `.name` segments whose names RFC 9535 refuses in shorthand (dashes,
/// slashes, leading digits...) as `['name']`. None when the path does not start
/// with `$` or a bracket is left open.
fn normalize_path(path: &str) -> Option<String> {
    let rest = path.trim().strip_prefix('$')?;
    let mut out = String::from("$");
    let chars: Vec<char> = rest.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '[' => {
                // Copy a bracketed selector verbatim, minding quoted names.
                let mut quote: Option<char> = None;
                let start = i;
                loop {
                    let c = *chars.get(i)?;
                    match quote {
                        Some(_) if c == '\\' => i += 1,
                        Some(q) if c == q => quote = None,
                        Some(_) => {}
                        None if c == '\'' || c == '"' => quote = Some(c),
                        None if c == ']' => break,
                        None => {}
                    }
                    i += 1;
                }
                out.extend(&chars[start..=i]);
                i += 1;
            }
            '.' => {
                i += 1;
                if chars.get(i) == Some(&'.') {
                    out.push_str("..");
                    i += 1;
                } else {
                    out.push('.');
                }
                let start = i;
                while i < chars.len() && chars[i] != '.' && chars[i] != '[' {
                    i += 1;
                }
                let name: String = chars[start..i].iter().collect();
                if name == "*" {
                    out.push('*');
                } else if name.is_empty() {
                    return None;
                } else {
                    // `.['x']` is not valid; a bracket follows the dot's parent directly.
                    out.pop();
                    if out.ends_with('.') {
                        // descendant segment: `..['x']`
                        out.push('.');
                    }
                    out.push_str("['");
                    for c in name.chars() {
                        if c == '\'' || c == '\\' {
                            out.push('\\');
                        }
                        out.push(c);
                    }
                    out.push_str("']");
                }
            }
            _ => return None,
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn dashed_names_work_as_on_eventbridge() {
        let v = json!({"detail-type": "t", "detail": {"instance-id": "i-1", "a": [{"b-c": 1}]}});
        for (path, want) in [
            ("$.detail-type", json!("t")),
            ("$.detail.instance-id", json!("i-1")),
            ("$.detail.a[0].b-c", json!(1)),
        ] {
            let p = parse(path).unwrap();
            assert_eq!(p.query(&v).first(), Some(&want), "{path}");
        }
        assert!(parse("detail").is_err());
        assert!(parse("$.[").is_err());
    }
    #[test]
    fn paths_are_normalized() {
        assert_eq!(
            normalize_path("$.detail.instance-id").as_deref(),
            Some("$['detail']['instance-id']")
        );
        assert_eq!(
            normalize_path("$.a.*[0]..b-c").as_deref(),
            Some("$['a'].*[0]..['b-c']")
        );
        assert_eq!(
            normalize_path("$.a['x.y']").as_deref(),
            Some("$['a']['x.y']")
        );
        assert!(normalize_path("x").is_none());
        assert!(normalize_path("$.a[").is_none());
        assert!(normalize_path("$.").is_none());
        assert!(parse("$.detail/key").is_ok());
        // RFC 9535 refuses dashes in shorthand names; EventBridge paths use them.
        assert!(JsonPath::parse("$.detail.instance-id").is_err());
        assert!(parse("$.detail-type").is_ok());
    }
}
