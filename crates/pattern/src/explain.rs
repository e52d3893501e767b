//! Answers "why did my rule not fire?": evaluates one pattern against one event by walking
//! the event tree, and reports for every `$or` branch which field failed, what the
//! pattern wanted and what the event had.

use std::fmt;

use serde_json::Value;

use crate::cond::{Cond, Scalar};
use crate::error::{display_path, EventError};
use crate::event::{PathTrie, Scanner, Step};
use crate::matcher::{search, MAX_ARRAY_SEARCH_STEPS};
use crate::parse::Pattern;

/// The verdict for one pattern and one event, with reasons.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explanation {
    /// Whether the pattern matches.
    pub matched: bool,
    /// One entry per `$or` branch (a pattern without `$or` has one).
    pub branches: Vec<BranchExplanation>,
}

/// How one branch fared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BranchExplanation {
    /// Whether every field of the branch was satisfied.
    pub matched: bool,
    /// Fields whose conditions failed.
    pub failures: Vec<FieldFailure>,
    /// Every field matched on its own, but not within one array element.
    pub array_conflict: bool,
}

/// One failed field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldFailure {
    /// Dot-separated field path.
    pub path: String,
    /// The conditions, rendered (any one would do).
    pub wanted: String,
    /// What the event had there, rendered.
    pub had: String,
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", if self.matched { "match" } else { "no match" })?;
        let n = self.branches.len();
        for (i, b) in self.branches.iter().enumerate() {
            let verdict = if b.matched {
                "matches"
            } else {
                "does not match"
            };
            if n > 1 {
                writeln!(f, "$or branch {} of {n}: {verdict}", i + 1)?;
            } else if !b.matched || b.array_conflict {
                writeln!(f, "pattern {verdict}")?;
            }
            for fail in &b.failures {
                writeln!(
                    f,
                    "  {}: wanted {}; event had {}",
                    fail.path, fail.wanted, fail.had
                )?;
            }
            if b.array_conflict {
                writeln!(
                    f,
                    "  every field matched, but not within the same array element (fields of one pattern object must match one element)"
                )?;
            }
        }
        Ok(())
    }
}

/// Names every path, so the scanner walks (and fully validates) the whole event.
struct AllPaths;

impl PathTrie for AllPaths {
    fn child(&self, _: u32, _: &[u8]) -> Option<u32> {
        Some(0)
    }
    fn has_children(&self, _: u32) -> bool {
        true
    }
    fn is_leaf(&self, _: u32) -> bool {
        true
    }
}

struct Flat<'a> {
    path: Vec<&'a str>,
    value: Scalar<'a>,
    trail: Vec<Step>,
}

fn flatten<'a>(
    v: &'a Value,
    path: &mut Vec<&'a str>,
    trail: &mut Vec<Step>,
    cut: usize,
    arrays: &mut u32,
    out: &mut Vec<Flat<'a>>,
) {
    let scalar = match v {
        Value::Object(o) => {
            // Steps after the innermost object hold scalars directly and do not constrain.
            let cut = trail.len();
            for (k, child) in o {
                path.push(k);
                flatten(child, path, trail, cut, arrays, out);
                path.pop();
            }
            return;
        }
        Value::Array(items) => {
            let id = *arrays;
            *arrays += 1;
            for (i, item) in items.iter().enumerate() {
                trail.push((id, i as u32));
                flatten(item, path, trail, cut, arrays, out);
                trail.pop();
            }
            return;
        }
        Value::String(s) => Scalar::Str(s),
        Value::Number(n) => Scalar::Num(n.as_f64().unwrap_or(f64::NAN)),
        Value::Bool(b) => Scalar::Bool(*b),
        Value::Null => Scalar::Null,
    };
    out.push(Flat {
        path: path.clone(),
        value: scalar,
        trail: trail[..cut].to_vec(),
    });
}

/// What sits at `path` in the event when it holds no scalar leaf.
fn describe_missing(event: &Value, path: &[String]) -> String {
    let mut cur = vec![event];
    for key in path {
        let mut next = Vec::new();
        for v in cur {
            collect(v, key, &mut next);
        }
        if next.is_empty() {
            return "no such field".to_owned();
        }
        cur = next;
    }
    if cur.iter().any(|v| v.is_object()) {
        "an object, not a value (conditions and exists apply to leaf fields only)".to_owned()
    } else {
        "an empty array".to_owned()
    }
}

fn collect<'a>(v: &'a Value, key: &str, out: &mut Vec<&'a Value>) {
    match v {
        Value::Object(o) => {
            if let Some(c) = o.get(key) {
                out.push(c);
            }
        }
        Value::Array(items) => items.iter().for_each(|i| collect(i, key, out)),
        _ => {}
    }
}

fn render_list<T: fmt::Display>(items: &[T]) -> String {
    if items.len() == 1 {
        items[0].to_string()
    } else {
        let parts: Vec<String> = items.iter().map(ToString::to_string).collect();
        format!("one of [{}]", parts.join(", "))
    }
}

/// Evaluates `pattern` against one event and says why it does or does not match.
pub fn explain(pattern: &Pattern, event_json: &[u8]) -> Result<Explanation, EventError> {
    // The scanner's strict walk checks what serde_json does not: depth and number limits.
    Scanner::default().scan(event_json, &AllPaths, &mut |_, _, _| {})?;
    let event: Value = serde_json::from_slice(event_json).map_err(|_| EventError::Syntax {
        offset: 0,
        reason: "invalid JSON",
    })?;
    let mut flat = Vec::new();
    flatten(
        &event,
        &mut Vec::new(),
        &mut Vec::new(),
        0,
        &mut 0,
        &mut flat,
    );
    let mut branches = Vec::new();
    for leaves in pattern.branches() {
        let mut failures = Vec::new();
        let mut per_slot: Vec<Vec<&[Step]>> = Vec::new();
        for leaf in leaves {
            let at: Vec<&Flat<'_>> = flat
                .iter()
                .filter(|l| {
                    l.path.len() == leaf.path.len()
                        && l.path.iter().zip(&leaf.path).all(|(a, b)| *a == b)
                })
                .collect();
            let ok: Vec<&[Step]> = at
                .iter()
                .filter(|l| leaf.conds.iter().any(|c| c.matches(l.value)))
                .map(|l| l.trail.as_slice())
                .collect();
            if !ok.is_empty() {
                per_slot.push(ok);
                continue;
            }
            if at.is_empty() && leaf.absent_ok() {
                continue;
            }
            let positive: Vec<&Cond> = leaf
                .conds
                .iter()
                .filter(|c| !matches!(c, Cond::Exists(false)))
                .collect();
            let wanted = if positive.is_empty() {
                "the field to be absent".to_owned()
            } else if leaf.absent_ok() {
                format!("the field to be absent, or {}", render_list(&positive))
            } else {
                render_list(&positive)
            };
            let had = if at.is_empty() {
                describe_missing(&event, &leaf.path)
            } else {
                let vals: Vec<String> = at.iter().map(|l| l.value.to_string()).collect();
                render_list(&vals)
            };
            failures.push(FieldFailure {
                path: display_path(&leaf.path),
                wanted,
                had,
            });
        }
        let mut array_conflict = false;
        if failures.is_empty() {
            per_slot.sort_by_key(Vec::len);
            let mut budget = MAX_ARRAY_SEARCH_STEPS;
            array_conflict = !search(&per_slot, &mut Vec::new(), &mut budget);
        }
        branches.push(BranchExplanation {
            matched: failures.is_empty() && !array_conflict,
            failures,
            array_conflict,
        });
    }
    Ok(Explanation {
        matched: branches.iter().any(|b| b.matched),
        branches,
    })
}
