//! A plain tree-walking evaluator of EventBridge patterns, written independently of the
//! library for the tests: it walks the pattern and the event side by side and shares no
//! code with the compiled matcher. Patterns given to it are assumed valid.

use std::collections::HashSet;

use serde_json::{Map, Value};

/// Whether `pattern` matches `event` (both parsed JSON).
pub fn matches(pattern: &Value, event: &Value) -> bool {
    matches_prepared(pattern, event, &leaf_paths(event))
}

/// The event's leaf paths, computed once per event for [`matches_prepared`].
pub fn leaf_paths(event: &Value) -> HashSet<Vec<String>> {
    let mut leaves = HashSet::new();
    collect_leaf_paths(event, &mut Vec::new(), &mut leaves);
    leaves
}

/// [`matches`] with the event's leaf paths already computed.
pub fn matches_prepared(pattern: &Value, event: &Value, leaves: &HashSet<Vec<String>>) -> bool {
    match pattern {
        Value::Object(p) => object(p, Some(event), &mut Vec::new(), leaves),
        _ => false,
    }
}

/// Every path that holds at least one scalar somewhere in the event.
fn collect_leaf_paths(v: &Value, path: &mut Vec<String>, out: &mut HashSet<Vec<String>>) {
    match v {
        Value::Object(o) => {
            for (k, c) in o {
                path.push(k.clone());
                collect_leaf_paths(c, path, out);
                path.pop();
            }
        }
        Value::Array(items) => items.iter().for_each(|i| collect_leaf_paths(i, path, out)),
        _ => {
            out.insert(path.clone());
        }
    }
}

fn object(
    p: &Map<String, Value>,
    e: Option<&Value>,
    path: &mut Vec<String>,
    leaves: &HashSet<Vec<String>>,
) -> bool {
    // `$or` stands for its alternatives each merged into the enclosing object, so an
    // alternative's fields bind to the same array element as their siblings.
    if let Some(alts) = p.get("$or").and_then(Value::as_array) {
        let mut rest = p.clone();
        rest.remove("$or");
        return alts
            .iter()
            .filter_map(Value::as_object)
            .any(|alt| object(&merge(&rest, alt), e, path, leaves));
    }
    p.iter().all(|(k, pv)| {
        if k == AND {
            return pv
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_object)
                .all(|part| object(part, e, path, leaves));
        }
        let child = e.and_then(|e| e.as_object()).and_then(|o| o.get(k));
        path.push(k.clone());
        let ok = match pv {
            Value::Object(sub) => nested(sub, child, path, leaves),
            Value::Array(conds) => leaf(conds, child, path, leaves),
            _ => false,
        };
        path.pop();
        ok
    })
}

/// This evaluator's own key for "all of these parts, at this same place" (patterns
/// under test never use it: their field names come from a small alphabet).
const AND: &str = "$reference-and";

/// `a` and `b` as one object: nested objects merge; two conditions on the same field
/// both apply.
fn merge(a: &Map<String, Value>, b: &Map<String, Value>) -> Map<String, Value> {
    let mut out = a.clone();
    for (k, bv) in b {
        match (out.get(k), bv) {
            (None, _) => {
                out.insert(k.clone(), bv.clone());
            }
            (Some(Value::Object(ao)), Value::Object(bo)) if k != AND => {
                let merged = merge(ao, bo);
                out.insert(k.clone(), Value::Object(merged));
            }
            (Some(_), _) => {
                let av = out.remove(k).unwrap_or(Value::Null);
                let mut parts = match out.remove(AND) {
                    Some(Value::Array(parts)) => parts,
                    _ => Vec::new(),
                };
                if k == AND {
                    parts.extend(av.as_array().cloned().unwrap_or_default());
                    parts.extend(bv.as_array().cloned().unwrap_or_default());
                } else {
                    parts.push(Value::Object(Map::from_iter([(k.clone(), av)])));
                    parts.push(Value::Object(Map::from_iter([(k.clone(), bv.clone())])));
                }
                out.insert(AND.to_owned(), Value::Array(parts));
            }
        }
    }
    out
}

/// A nested pattern object: one element of an event array must satisfy all of it.
fn nested(
    sub: &Map<String, Value>,
    child: Option<&Value>,
    path: &mut Vec<String>,
    leaves: &HashSet<Vec<String>>,
) -> bool {
    match child {
        Some(Value::Object(_)) => object(sub, child, path, leaves),
        Some(Value::Array(items)) => {
            items.iter().any(|el| nested(sub, Some(el), path, leaves))
                || object(sub, None, path, leaves)
        }
        _ => object(sub, None, path, leaves),
    }
}

fn scalars<'a>(v: &'a Value, out: &mut Vec<&'a Value>) {
    match v {
        Value::Array(items) => items.iter().for_each(|i| scalars(i, out)),
        Value::Object(_) => {}
        other => out.push(other),
    }
}

fn leaf(
    conds: &[Value],
    child: Option<&Value>,
    path: &[String],
    leaves: &HashSet<Vec<String>>,
) -> bool {
    let mut vals = Vec::new();
    if let Some(c) = child {
        scalars(c, &mut vals);
    }
    let absent_ok = conds
        .iter()
        .any(|c| c.get("exists") == Some(&Value::Bool(false)));
    if absent_ok && !leaves.contains(path) {
        return true;
    }
    vals.iter().any(|v| conds.iter().any(|c| cond(c, v)))
}

fn micro(x: f64) -> Option<i64> {
    (x.abs() <= 5e9).then(|| (x * 1e6).round() as i64)
}

fn num_equal(a: f64, b: f64) -> bool {
    match (micro(a), micro(b)) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

fn lower(s: &str) -> String {
    s.to_lowercase()
}

/// Glob with `*`, `\*` and `\\`, by straightforward recursion.
fn glob(p: &[char], s: &[char]) -> bool {
    match p.first() {
        None => s.is_empty(),
        Some('*') => (0..=s.len()).any(|i| glob(&p[1..], &s[i..])),
        Some('\\') => p.len() > 1 && s.first() == Some(&p[1]) && glob(&p[2..], &s[1..]),
        Some(c) => s.first() == Some(c) && glob(&p[1..], &s[1..]),
    }
}

fn wildcard(p: &str, s: &str) -> bool {
    let p: Vec<char> = p.chars().collect();
    let s: Vec<char> = s.chars().collect();
    glob(&p, &s)
}

fn strings(v: &Value) -> Vec<&str> {
    match v {
        Value::String(s) => vec![s.as_str()],
        Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

fn cidr(net: &str, s: &str) -> bool {
    let Some((ip, len)) = net.split_once('/') else {
        return false;
    };
    let (Ok(n), Ok(a), Ok(len)) = (
        ip.parse::<std::net::IpAddr>(),
        s.parse::<std::net::IpAddr>(),
        len.parse::<u32>(),
    ) else {
        return false;
    };
    match (n, a) {
        (std::net::IpAddr::V4(n), std::net::IpAddr::V4(a)) => {
            let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
            u32::from(n) & mask == u32::from(a) & mask
        }
        (std::net::IpAddr::V6(n), std::net::IpAddr::V6(a)) => {
            let mask = if len == 0 {
                0
            } else {
                u128::MAX << (128 - len)
            };
            u128::from(n) & mask == u128::from(a) & mask
        }
        _ => false,
    }
}

fn cond(c: &Value, v: &Value) -> bool {
    match c {
        Value::Number(n) => {
            matches!(v, Value::Number(m) if num_equal(n.as_f64().unwrap_or(f64::NAN), m.as_f64().unwrap_or(f64::NAN)))
        }
        Value::Object(o) => {
            let Some((op, arg)) = o.iter().next() else {
                return false;
            };
            let s = v.as_str();
            match op.as_str() {
                "exists" => arg == &Value::Bool(true),
                "prefix" => match (arg, s) {
                    (Value::String(p), Some(s)) => s.starts_with(p.as_str()),
                    (Value::Object(i), Some(s)) => i
                        .get("equals-ignore-case")
                        .and_then(Value::as_str)
                        .is_some_and(|p| lower(s).starts_with(&lower(p))),
                    _ => false,
                },
                "suffix" => match (arg, s) {
                    (Value::String(p), Some(s)) => s.ends_with(p.as_str()),
                    (Value::Object(i), Some(s)) => i
                        .get("equals-ignore-case")
                        .and_then(Value::as_str)
                        .is_some_and(|p| lower(s).ends_with(&lower(p))),
                    _ => false,
                },
                "equals-ignore-case" => {
                    s.is_some_and(|s| arg.as_str().is_some_and(|p| lower(s) == lower(p)))
                }
                "wildcard" => s.is_some_and(|s| arg.as_str().is_some_and(|p| wildcard(p, s))),
                "cidr" => s.is_some_and(|s| arg.as_str().is_some_and(|p| cidr(p, s))),
                "numeric" => {
                    let Some(x) = v.as_f64().and_then(micro) else {
                        return false;
                    };
                    let Some(items) = arg.as_array() else {
                        return false;
                    };
                    items.chunks(2).all(|pair| {
                        let Some(b) = pair.get(1).and_then(Value::as_f64).and_then(micro) else {
                            return false;
                        };
                        match pair[0].as_str() {
                            Some("=") => x == b,
                            Some("<") => x < b,
                            Some("<=") => x <= b,
                            Some(">") => x > b,
                            Some(">=") => x >= b,
                            _ => false,
                        }
                    })
                }
                "anything-but" => match arg {
                    Value::Object(i) => {
                        let Some(s) = s else { return false };
                        let Some((op, list)) = i.iter().next() else {
                            return false;
                        };
                        let list = strings(list);
                        match op.as_str() {
                            "prefix" => !list.iter().any(|p| s.starts_with(p)),
                            "suffix" => !list.iter().any(|p| s.ends_with(p)),
                            "wildcard" => !list.iter().any(|p| wildcard(p, s)),
                            "equals-ignore-case" => !list.iter().any(|p| lower(p) == lower(s)),
                            _ => false,
                        }
                    }
                    Value::Array(items) => !items.iter().any(|x| cond(x, v)),
                    scalar => !cond(scalar, v),
                },
                _ => false,
            }
        }
        other => other == v,
    }
}
