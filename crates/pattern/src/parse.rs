//! Parsing and validating a pattern, and expanding `$or` into branches (disjunctive
//! normal form) that the matcher and the explainer both work on.

use serde_json::{Map, Value};

use crate::cond::{
    fold_case, to_micro, AnythingBut, Cidr, Cond, NumRange, Wildcard, NUMERIC_LIMIT,
};
use crate::error::PatternError;

/// Deepest field nesting accepted in a pattern.
pub const MAX_PATTERN_DEPTH: usize = 32;
/// Most branches one pattern may expand to after multiplying out `$or`.
pub const MAX_BRANCHES: usize = 256;
/// Most leaf fields in one branch.
pub const MAX_FIELDS_PER_BRANCH: usize = 64;
/// Most conditions (array elements) in one leaf.
pub const MAX_CONDITIONS_PER_FIELD: usize = 1024;

const OPERATORS: &str =
    "prefix, suffix, equals-ignore-case, wildcard, anything-but, numeric, exists, cidr";

/// One leaf of a branch: a field path and its OR list of conditions.
#[derive(Debug, Clone, PartialEq)]
pub struct Leaf {
    /// Field names from the event root to the leaf.
    pub path: Vec<String>,
    /// Any one of these must hold.
    pub conds: Vec<Cond>,
}

impl Leaf {
    /// True when absence of the field satisfies this leaf (`{"exists": false}` listed).
    pub fn absent_ok(&self) -> bool {
        self.conds.iter().any(|c| matches!(c, Cond::Exists(false)))
    }
}

/// A parsed, validated event pattern.
#[derive(Debug, Clone, PartialEq)]
pub struct Pattern {
    source: Value,
    branches: Vec<Vec<Leaf>>,
}

impl Pattern {
    /// Parses pattern JSON text.
    pub fn parse(json: &str) -> Result<Pattern, PatternError> {
        let v: Value = serde_json::from_str(json).map_err(|e| PatternError::Json(e.to_string()))?;
        Pattern::from_value(&v)
    }

    /// Validates an already parsed JSON value.
    pub fn from_value(v: &Value) -> Result<Pattern, PatternError> {
        let Value::Object(obj) = v else {
            return Err(PatternError::at(&[], "a pattern must be a JSON object"));
        };
        let mut path = Vec::new();
        let branches = expand(obj, &mut path)?;
        for b in &branches {
            if b.len() > MAX_FIELDS_PER_BRANCH {
                return Err(PatternError::at(
                    &[],
                    format!(
                        "pattern too complex: a branch names {} fields (limit {MAX_FIELDS_PER_BRANCH})",
                        b.len()
                    ),
                ));
            }
        }
        Ok(Pattern {
            source: v.clone(),
            branches,
        })
    }

    /// The pattern as given.
    pub fn source(&self) -> &Value {
        &self.source
    }

    /// The `$or`-free branches; the pattern matches when any branch does.
    pub fn branches(&self) -> &[Vec<Leaf>] {
        &self.branches
    }
}

impl std::fmt::Display for Pattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.source)
    }
}

fn expand(
    obj: &Map<String, Value>,
    path: &mut Vec<String>,
) -> Result<Vec<Vec<Leaf>>, PatternError> {
    if path.len() >= MAX_PATTERN_DEPTH {
        return Err(PatternError::at(
            path,
            format!("pattern too complex: nested deeper than {MAX_PATTERN_DEPTH} levels"),
        ));
    }
    if obj.is_empty() {
        return Err(PatternError::at(
            path,
            "empty object: name at least one field",
        ));
    }
    let mut branches: Vec<Vec<Leaf>> = vec![Vec::new()];
    for (key, val) in obj {
        let alternatives: Vec<Vec<Leaf>> = if key == "$or" {
            let Value::Array(items) = val else {
                return Err(PatternError::at(
                    path,
                    "\"$or\" must be an array of objects",
                ));
            };
            if items.is_empty() {
                return Err(PatternError::at(path, "\"$or\" must not be empty"));
            }
            let mut alts = Vec::new();
            for item in items {
                let Value::Object(o) = item else {
                    return Err(PatternError::at(
                        path,
                        format!("\"$or\" elements must be objects, found {}", kind(item)),
                    ));
                };
                alts.extend(expand(o, path)?);
                check_branches(alts.len(), path)?;
            }
            alts
        } else {
            path.push(key.clone());
            let r = match val {
                Value::Object(o) => expand(o, path),
                Value::Array(items) => leaf(items, path).map(|l| vec![vec![l]]),
                other => Err(PatternError::at(
                    path,
                    format!(
                        "expected an array of conditions or an object, found {}",
                        kind(other)
                    ),
                )),
            };
            path.pop();
            r?
        };
        let mut next = Vec::with_capacity(branches.len() * alternatives.len());
        for b in &branches {
            for a in &alternatives {
                let mut n = b.clone();
                n.extend(a.iter().cloned());
                next.push(n);
            }
            check_branches(next.len(), path)?;
        }
        branches = next;
    }
    Ok(branches)
}

fn check_branches(n: usize, path: &[String]) -> Result<(), PatternError> {
    if n > MAX_BRANCHES {
        Err(PatternError::at(
            path,
            format!("pattern too complex: \"$or\" expands to more than {MAX_BRANCHES} branches"),
        ))
    } else {
        Ok(())
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn leaf(items: &[Value], path: &[String]) -> Result<Leaf, PatternError> {
    if items.is_empty() {
        return Err(PatternError::at(
            path,
            "empty array: list at least one condition",
        ));
    }
    if items.len() > MAX_CONDITIONS_PER_FIELD {
        return Err(PatternError::at(
            path,
            format!("pattern too complex: more than {MAX_CONDITIONS_PER_FIELD} conditions"),
        ));
    }
    let conds = items
        .iter()
        .map(|v| condition(v, path))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Leaf {
        path: path.to_vec(),
        conds,
    })
}

fn number(v: &serde_json::Number, path: &[String]) -> Result<f64, PatternError> {
    v.as_f64()
        .filter(|f| f.is_finite())
        .ok_or_else(|| PatternError::at(path, format!("number {v} is out of range")))
}

fn condition(v: &Value, path: &[String]) -> Result<Cond, PatternError> {
    match v {
        Value::String(s) => Ok(Cond::Str(s.clone())),
        Value::Number(n) => Ok(Cond::Num(number(n, path)?)),
        Value::Bool(b) => Ok(Cond::Bool(*b)),
        Value::Null => Ok(Cond::Null),
        Value::Array(_) => Err(PatternError::at(
            path,
            "nested arrays are not allowed in a pattern",
        )),
        Value::Object(o) => operator(o, path),
    }
}

fn operator(o: &Map<String, Value>, path: &[String]) -> Result<Cond, PatternError> {
    let mut it = o.iter();
    let (Some((op, arg)), None) = (it.next(), it.next()) else {
        return Err(PatternError::at(
            path,
            format!(
                "an operator object must have exactly one key, found {} (one of {OPERATORS})",
                o.len()
            ),
        ));
    };
    let bad = |what: &str| {
        PatternError::at(
            path,
            format!("\"{op}\" expects {what}, found {}", kind(arg)),
        )
    };
    match op.as_str() {
        "prefix" | "suffix" => {
            let is_prefix = op == "prefix";
            match arg {
                Value::String(s) => Ok(if is_prefix {
                    Cond::Prefix(s.clone())
                } else {
                    Cond::Suffix(s.clone())
                }),
                Value::Object(inner) => match single_string(inner, "equals-ignore-case") {
                    Some(s) => Ok(if is_prefix {
                        Cond::PrefixIc(fold_case(s))
                    } else {
                        Cond::SuffixIc(fold_case(s))
                    }),
                    None => Err(bad("a string or {\"equals-ignore-case\": string}")),
                },
                _ => Err(bad("a string or {\"equals-ignore-case\": string}")),
            }
        }
        "equals-ignore-case" => match arg {
            Value::String(s) => Ok(Cond::EqIc(fold_case(s))),
            _ => Err(bad("a string")),
        },
        "wildcard" => match arg {
            Value::String(s) => Wildcard::parse(s)
                .map(Cond::Wildcard)
                .map_err(|e| PatternError::at(path, e)),
            _ => Err(bad("a string")),
        },
        "cidr" => match arg {
            Value::String(s) => Cidr::parse(s)
                .map(Cond::Cidr)
                .map_err(|e| PatternError::at(path, e)),
            _ => Err(bad("a string")),
        },
        "exists" => match arg {
            Value::Bool(b) => Ok(Cond::Exists(*b)),
            _ => Err(bad("true or false")),
        },
        "numeric" => numeric(arg, path).map(Cond::Numeric),
        "anything-but" => anything_but(arg, path).map(Cond::AnythingBut),
        other => Err(PatternError::at(
            path,
            format!("unknown operator \"{other}\" (expected one of {OPERATORS})"),
        )),
    }
}

fn single_string<'a>(o: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    if o.len() != 1 {
        return None;
    }
    o.get(key).and_then(Value::as_str)
}

fn strings(arg: &Value, op: &str, path: &[String]) -> Result<Vec<String>, PatternError> {
    let err = || {
        PatternError::at(
            path,
            format!("\"anything-but\" \"{op}\" expects a string or a non-empty array of strings"),
        )
    };
    match arg {
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Array(items) if !items.is_empty() => items
            .iter()
            .map(|i| i.as_str().map(str::to_owned).ok_or_else(err))
            .collect(),
        _ => Err(err()),
    }
}

fn anything_but(arg: &Value, path: &[String]) -> Result<AnythingBut, PatternError> {
    match arg {
        Value::String(_) | Value::Number(_) | Value::Bool(_) | Value::Null => {
            Ok(AnythingBut::Values(vec![condition(arg, path)?]))
        }
        Value::Array(items) => {
            if items.is_empty() {
                return Err(PatternError::at(
                    path,
                    "\"anything-but\" list must not be empty",
                ));
            }
            let all_str = items.iter().all(Value::is_string);
            let all_num = items.iter().all(Value::is_number);
            if !all_str && !all_num {
                return Err(PatternError::at(
                    path,
                    "\"anything-but\" list must hold only strings or only numbers",
                ));
            }
            items
                .iter()
                .map(|i| condition(i, path))
                .collect::<Result<Vec<_>, _>>()
                .map(AnythingBut::Values)
        }
        Value::Object(o) => {
            let mut it = o.iter();
            let (Some((op, inner)), None) = (it.next(), it.next()) else {
                return Err(PatternError::at(
                    path,
                    "\"anything-but\" object must have exactly one key (prefix, suffix, wildcard or equals-ignore-case)",
                ));
            };
            match op.as_str() {
                "prefix" => Ok(AnythingBut::Prefix(strings(inner, op, path)?)),
                "suffix" => Ok(AnythingBut::Suffix(strings(inner, op, path)?)),
                "equals-ignore-case" => Ok(AnythingBut::EqIc(
                    strings(inner, op, path)?.iter().map(|s| fold_case(s)).collect(),
                )),
                "wildcard" => strings(inner, op, path)?
                    .iter()
                    .map(|s| Wildcard::parse(s).map_err(|e| PatternError::at(path, e)))
                    .collect::<Result<Vec<_>, _>>()
                    .map(AnythingBut::Wildcard),
                other => Err(PatternError::at(
                    path,
                    format!(
                        "unknown \"anything-but\" operator \"{other}\" (expected one of prefix, suffix, wildcard, equals-ignore-case)"
                    ),
                )),
            }
        }
    }
}

fn numeric(arg: &Value, path: &[String]) -> Result<NumRange, PatternError> {
    let Value::Array(items) = arg else {
        return Err(PatternError::at(
            path,
            "\"numeric\" expects an array like [\">\", 0, \"<=\", 5]",
        ));
    };
    if items.is_empty() || items.len() % 2 != 0 || items.len() > 4 {
        return Err(PatternError::at(
            path,
            "\"numeric\" expects one or two operator/number pairs, like [\">\", 0, \"<=\", 5]",
        ));
    }
    let mut range = NumRange {
        lower: None,
        upper: None,
    };
    let mut saw_eq = false;
    for pair in items.chunks(2) {
        let Some(op) = pair[0].as_str() else {
            return Err(PatternError::at(
                path,
                format!(
                    "\"numeric\" operator must be a string, found {}",
                    kind(&pair[0])
                ),
            ));
        };
        let Value::Number(n) = &pair[1] else {
            return Err(PatternError::at(
                path,
                format!(
                    "\"numeric\" \"{op}\" expects a number, found {}",
                    kind(&pair[1])
                ),
            ));
        };
        let x = number(n, path)?;
        let m = to_micro(x).ok_or_else(|| {
            PatternError::at(
                path,
                format!(
                    "number {n} is outside the numeric range -{NUMERIC_LIMIT:e}..{NUMERIC_LIMIT:e}"
                ),
            )
        })?;
        let dup = || PatternError::at(path, format!("\"numeric\" has more than one {op} bound"));
        match op {
            "=" => {
                if items.len() != 2 {
                    return Err(PatternError::at(
                        path,
                        "\"numeric\" \"=\" cannot be combined",
                    ));
                }
                saw_eq = true;
                range.lower = Some((m, true));
                range.upper = Some((m, true));
            }
            ">" | ">=" => {
                if range.lower.is_some() {
                    return Err(dup());
                }
                range.lower = Some((m, op == ">="));
            }
            "<" | "<=" => {
                if range.upper.is_some() {
                    return Err(dup());
                }
                range.upper = Some((m, op == "<="));
            }
            other => {
                return Err(PatternError::at(
                    path,
                    format!(
                        "unknown numeric operator \"{other}\" (expected one of =, <, <=, >, >=)"
                    ),
                ))
            }
        }
    }
    if !saw_eq {
        if let (Some((lo, li)), Some((hi, hi_inc))) = (range.lower, range.upper) {
            if lo > hi || (lo == hi && !(li && hi_inc)) {
                return Err(PatternError::at(
                    path,
                    format!(
                        "\"numeric\" range is empty: lower bound {} is not below upper bound {}",
                        lo as f64 / 1e6,
                        hi as f64 / 1e6
                    ),
                ));
            }
        }
        if items.len() == 4 && (range.lower.is_none() || range.upper.is_none()) {
            return Err(PatternError::at(
                path,
                "\"numeric\" with two pairs needs one lower (> or >=) and one upper (< or <=) bound",
            ));
        }
    }
    Ok(range)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(p: &str) -> String {
        Pattern::parse(p).unwrap_err().to_string()
    }

    #[test]
    fn errors_name_path_and_reason() {
        assert_eq!(
            err(r#"{"detail": {"state": [{"foo": 1}]}}"#),
            "detail.state: unknown operator \"foo\" (expected one of prefix, suffix, equals-ignore-case, wildcard, anything-but, numeric, exists, cidr)"
        );
        assert_eq!(
            err(r#"{"source": []}"#),
            "source: empty array: list at least one condition"
        );
        assert_eq!(
            err(r#"{"source": "aws.ec2"}"#),
            "source: expected an array of conditions or an object, found a string"
        );
        assert!(err(r#"{"a": [{"numeric": [">", 5, "<", 1]}]}"#)
            .starts_with("a: \"numeric\" range is empty"));
        assert!(err(r#"{"a": [{"numeric": [">", 5, ">", 1]}]}"#).contains("more than one"));
        assert!(err(r#"{"a": [{"numeric": [">", 6e9]}]}"#).contains("outside the numeric range"));
        assert!(err(r#"{"a": [{"numeric": [">", "5"]}]}"#).contains("expects a number"));
        assert!(err(r#"{"a": [{"prefix": 5}]}"#).contains("\"prefix\" expects a string"));
        assert!(err(r#"{"a": [{"exists": "yes"}]}"#).contains("true or false"));
        assert!(err(r#"{"a": [{"cidr": "10.0.0.0/40"}]}"#).contains("prefix length"));
        assert!(err(r#"{"a": [{"wildcard": "a**"}]}"#).contains("consecutive"));
        assert!(err(r#"{"a": [{"anything-but": []}]}"#).contains("must not be empty"));
        assert!(
            err(r#"{"a": [{"anything-but": ["x", 1]}]}"#).contains("only strings or only numbers")
        );
        assert!(err(r#"{"a": [{"anything-but": {"foo": "x"}}]}"#)
            .contains("unknown \"anything-but\" operator"));
        assert!(err(r#"{"a": [{"prefix": "x", "suffix": "y"}]}"#).contains("exactly one key"));
        assert!(err(r#"{"$or": []}"#).contains("must not be empty"));
        assert_eq!(
            err(r#"{"detail": {}}"#),
            "detail: empty object: name at least one field"
        );
        assert_eq!(err("[1]"), "$: a pattern must be a JSON object");
        assert!(err("{").starts_with("pattern is not valid JSON"));
        assert!(err(r#"{"a": [[1]]}"#).contains("nested arrays"));
    }

    #[test]
    fn or_expands_to_branches() {
        let p = Pattern::parse(
            r#"{"source": ["a"], "$or": [{"x": [1]}, {"y": [2], "$or": [{"z": [3]}, {"w": [4]}]}]}"#,
        )
        .unwrap();
        assert_eq!(p.branches().len(), 3);
        assert!(p
            .branches()
            .iter()
            .all(|b| b.iter().any(|l| l.path == ["source"])));
    }

    #[test]
    fn too_many_branches() {
        let alt = r#"{"$or": [{"a": [1]}, {"b": [1]}, {"c": [1]}, {"d": [1]}]}"#;
        let p = format!(r#"{{"w": {alt}, "x": {alt}, "y": {alt}, "z": {alt}, "v": {alt}}}"#);
        assert!(Pattern::parse(&p)
            .unwrap_err()
            .to_string()
            .contains("too complex"));
    }
}
