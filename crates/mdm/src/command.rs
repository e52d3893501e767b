//! Building and validating MDM commands against the catalog.
//!
//! A command payload is given as JSON (the keys inside `Command`, without
//! `RequestType`): data values as base64 strings, dates as RFC 3339 strings. Validation
//! and conversion to a plist happen in one walk over the catalog's key specs, collecting
//! every problem with its key path rather than stopping at the first.

use serde_json::{Map, Value};

use crate::catalog::{catalog, KeySpec, RequestSpec, ValueType};
use crate::value::{
    decode_base64, json_type_name, plist_to_json, read_plist, rfc3339_to_date, write_binary,
    write_xml,
};
use crate::{MdmError, Problem, ProblemKind};

/// A validated MDM command, ready to be written as a plist.
#[derive(Debug, Clone, PartialEq)]
pub struct Command {
    /// The command's `RequestType`.
    pub request_type: String,
    /// The command's `CommandUUID`.
    pub command_uuid: String,
    /// The `Command` dictionary, including `RequestType`.
    pub command: plist::Dictionary,
}

impl Command {
    /// The whole command as a plist value: `{Command: {...}, CommandUUID: ...}`.
    pub fn to_plist(&self) -> plist::Value {
        let mut root = plist::Dictionary::new();
        root.insert(
            "Command".to_string(),
            plist::Value::Dictionary(self.command.clone()),
        );
        root.insert(
            "CommandUUID".to_string(),
            plist::Value::String(self.command_uuid.clone()),
        );
        plist::Value::Dictionary(root)
    }

    /// The command as an XML plist (what NanoMDM's enqueue API takes).
    pub fn to_xml(&self) -> Result<Vec<u8>, MdmError> {
        write_xml(&self.to_plist())
    }

    /// The command as a binary plist.
    pub fn to_binary(&self) -> Result<Vec<u8>, MdmError> {
        write_binary(&self.to_plist())
    }

    /// The command as JSON (data as base64, dates as RFC 3339).
    pub fn to_json(&self) -> Value {
        plist_to_json(&self.to_plist())
    }

    /// The `Command` dictionary's keys other than `RequestType`, as JSON.
    pub fn payload_json(&self) -> Map<String, Value> {
        let mut m = match plist_to_json(&plist::Value::Dictionary(self.command.clone())) {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        m.remove("RequestType");
        m
    }
}

/// Builds a command step by step; see [`build_command`] for the one-call form.
#[derive(Debug, Clone)]
pub struct CommandBuilder {
    request_type: String,
    command_uuid: Option<String>,
    payload: Map<String, Value>,
}

impl CommandBuilder {
    /// Starts a command of `request_type` (checked when built).
    pub fn new(request_type: impl Into<String>) -> Self {
        CommandBuilder {
            request_type: request_type.into(),
            command_uuid: None,
            payload: Map::new(),
        }
    }

    /// Uses this `CommandUUID` instead of a fresh random one.
    pub fn command_uuid(mut self, uuid: impl Into<String>) -> Self {
        self.command_uuid = Some(uuid.into());
        self
    }

    /// Sets one top-level key.
    pub fn key(mut self, key: impl Into<String>, value: Value) -> Self {
        self.payload.insert(key.into(), value);
        self
    }

    /// Merges the keys of a JSON object payload.
    pub fn payload(mut self, payload: Map<String, Value>) -> Self {
        self.payload.extend(payload);
        self
    }

    /// Validates against the catalog and builds the command.
    pub fn build(self) -> Result<Command, MdmError> {
        let spec = lookup(&self.request_type)?;
        let command = convert_payload(spec, &Value::Object(self.payload))?;
        Ok(Command {
            request_type: spec.request_type.clone(),
            command_uuid: self
                .command_uuid
                .unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
            command,
        })
    }
}

/// Validates `payload` (a JSON object of the `Command` keys) for `request_type` and
/// builds the command with a fresh `CommandUUID`.
pub fn build_command(request_type: &str, payload: Value) -> Result<Command, MdmError> {
    let spec = lookup(request_type)?;
    let command = convert_payload(spec, &payload)?;
    Ok(Command {
        request_type: spec.request_type.clone(),
        command_uuid: uuid::Uuid::new_v4().to_string(),
        command,
    })
}

/// Checks a payload without building anything (e.g. a command template at config
/// validation time). Every problem is reported in one error.
pub fn validate_command_payload(request_type: &str, payload: &Value) -> Result<(), MdmError> {
    let spec = lookup(request_type)?;
    convert_payload(spec, payload).map(|_| ())
}

/// Reads a command plist (XML or binary) and validates it against the catalog.
pub fn parse_command(bytes: &[u8]) -> Result<Command, MdmError> {
    let root = read_plist(bytes)?;
    let dict = root
        .as_dictionary()
        .ok_or_else(|| MdmError::Shape("a command plist must be a dictionary".into()))?;
    let uuid = dict
        .get("CommandUUID")
        .and_then(plist::Value::as_string)
        .ok_or_else(|| MdmError::Shape("command has no CommandUUID string".into()))?;
    let inner = dict
        .get("Command")
        .and_then(plist::Value::as_dictionary)
        .ok_or_else(|| MdmError::Shape("command has no Command dictionary".into()))?;
    let request_type = inner
        .get("RequestType")
        .and_then(plist::Value::as_string)
        .ok_or_else(|| MdmError::Shape("command has no RequestType string".into()))?;
    let mut payload = match plist_to_json(&plist::Value::Dictionary(inner.clone())) {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    payload.remove("RequestType");
    let spec = lookup(request_type)?;
    // Dates and data lose their plist type in JSON; the spec restores them.
    let command = convert_payload(spec, &Value::Object(payload))?;
    Ok(Command {
        request_type: spec.request_type.clone(),
        command_uuid: uuid.to_string(),
        command,
    })
}

/// The catalog entry of a command, or an error suggesting a close name.
pub fn lookup(request_type: &str) -> Result<&'static RequestSpec, MdmError> {
    let cat = catalog();
    if let Some(spec) = cat.command(request_type) {
        return Ok(spec);
    }
    let lower = request_type.to_ascii_lowercase();
    let suggestion = cat
        .commands
        .iter()
        .find(|c| c.request_type.to_ascii_lowercase() == lower)
        .or_else(|| {
            cat.commands.iter().find(|c| {
                let l = c.request_type.to_ascii_lowercase();
                !lower.is_empty() && (l.contains(&lower) || lower.contains(&l))
            })
        })
        .or_else(|| {
            // The nearest name by edit distance, when it is near enough to be a typo.
            cat.commands
                .iter()
                .map(|c| {
                    let d = strsim::levenshtein(&lower, &c.request_type.to_ascii_lowercase());
                    (d, c)
                })
                .filter(|(d, c)| *d <= 3.max(c.request_type.len() / 4))
                .min_by_key(|(d, _)| *d)
                .map(|(_, c)| c)
        })
        .map(|c| c.request_type.clone());
    Err(MdmError::UnknownRequestType {
        name: request_type.to_string(),
        suggestion,
    })
}

/// Validates and converts a payload object into the `Command` dictionary.
/// Rules Apple documents in prose that the schema's types cannot say. A value
/// holding a `<placeholder>` is a template, filled in later, and is not checked.
fn check_rules(spec: &RequestSpec, payload: &Map<String, Value>, problems: &mut Vec<Problem>) {
    // DeviceLock's PIN: "the six-character PIN for Find My", which a Mac takes as
    // six digits.
    if spec.request_type == "DeviceLock" {
        if let Some(Value::String(pin)) = payload.get("PIN") {
            let ok = pin.len() == 6 && pin.bytes().all(|b| b.is_ascii_digit());
            if !ok && !pin.contains('<') {
                problems.push(Problem {
                    path: "PIN".into(),
                    kind: ProblemKind::BadFormat {
                        value: pin.clone(),
                        format: "Find My PIN (six digits)".into(),
                    },
                });
            }
        }
    }
}

fn convert_payload(spec: &RequestSpec, payload: &Value) -> Result<plist::Dictionary, MdmError> {
    let mut problems = Vec::new();
    let mut out = plist::Dictionary::new();
    match payload {
        Value::Object(obj) => {
            let mut obj = obj.clone();
            // Tolerate a RequestType that agrees with the command (e.g. copied from a plist).
            if let Some(rt) = obj.remove("RequestType") {
                if rt.as_str() != Some(spec.request_type.as_str()) {
                    problems.push(Problem {
                        path: "RequestType".into(),
                        kind: ProblemKind::NotAllowed {
                            value: rt.to_string(),
                            allowed: vec![spec.request_type.clone()],
                        },
                    });
                }
            }
            if let Some(d) = check_dict(&spec.keys, &obj, "", &mut problems) {
                out = d;
            }
            check_rules(spec, &obj, &mut problems);
        }
        Value::Null => {
            check_dict(&spec.keys, &Map::new(), "", &mut problems);
        }
        other => problems.push(Problem {
            path: "Command".into(),
            kind: ProblemKind::WrongType {
                expected: "a dictionary".into(),
                found: json_type_name(other).into(),
            },
        }),
    }
    if !problems.is_empty() {
        return Err(MdmError::InvalidPayload {
            request_type: spec.request_type.clone(),
            problems,
        });
    }
    let mut command = plist::Dictionary::new();
    command.insert(
        "RequestType".into(),
        plist::Value::String(spec.request_type.clone()),
    );
    for (k, v) in out {
        command.insert(k, v);
    }
    Ok(command)
}

fn join_path(base: &str, key: &str) -> String {
    if base.is_empty() {
        key.to_string()
    } else {
        format!("{base}.{key}")
    }
}

/// Checks a dictionary against its subkeys; an empty list allows anything.
fn check_dict(
    keys: &[KeySpec],
    obj: &Map<String, Value>,
    path: &str,
    problems: &mut Vec<Problem>,
) -> Option<plist::Dictionary> {
    check_dict_in(keys, obj, path, problems, !path.is_empty())
}

/// `open_if_empty`: whether a dictionary without subkeys takes any keys (nested
/// dictionaries do; a command without keys takes none).
fn check_dict_in(
    keys: &[KeySpec],
    obj: &Map<String, Value>,
    path: &str,
    problems: &mut Vec<Problem>,
    open_if_empty: bool,
) -> Option<plist::Dictionary> {
    let mut out = plist::Dictionary::new();
    let wildcard = keys.iter().find(|k| k.is_wildcard());
    let before = problems.len();
    for (k, v) in obj {
        let p = join_path(path, k);
        let spec = keys
            .iter()
            .find(|s| !s.is_wildcard() && s.key == *k)
            .or(wildcard);
        let converted = match spec {
            Some(spec) => check_value(spec, v, &p, problems),
            None if keys.is_empty() && open_if_empty => any_value(v, &p, problems),
            None => {
                problems.push(Problem {
                    path: p,
                    kind: ProblemKind::UnknownKey {
                        allowed: keys.iter().map(|s| s.key.clone()).collect(),
                    },
                });
                None
            }
        };
        if let Some(c) = converted {
            out.insert(k.clone(), c);
        }
    }
    for s in keys.iter().filter(|s| s.required && !s.is_wildcard()) {
        if !obj.contains_key(&s.key) {
            problems.push(Problem {
                path: join_path(path, &s.key),
                kind: ProblemKind::MissingKey {
                    expected_type: s.ty.to_string(),
                },
            });
        }
    }
    (problems.len() == before).then_some(out)
}

fn wrong_type(path: &str, expected: &str, v: &Value, problems: &mut Vec<Problem>) {
    problems.push(Problem {
        path: path.to_string(),
        kind: ProblemKind::WrongType {
            expected: expected.to_string(),
            found: json_type_name(v).to_string(),
        },
    });
}

/// Whether `v` equals one of `allowed` (numbers compared by value).
fn is_allowed(allowed: &[Value], v: &Value) -> bool {
    allowed.iter().any(|a| match (a, v) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == v,
    })
}

fn check_value(
    spec: &KeySpec,
    v: &Value,
    path: &str,
    problems: &mut Vec<Problem>,
) -> Option<plist::Value> {
    let before = problems.len();
    let out = match spec.ty {
        ValueType::String => match v {
            Value::String(s) => {
                check_format(spec, s, path, problems);
                Some(plist::Value::String(s.clone()))
            }
            _ => {
                wrong_type(path, "a string", v, problems);
                None
            }
        },
        ValueType::Integer => match v {
            Value::Number(n) if n.is_i64() => n.as_i64().map(|i| plist::Value::Integer(i.into())),
            Value::Number(n) if n.is_u64() => n.as_u64().map(|i| plist::Value::Integer(i.into())),
            _ => {
                wrong_type(path, "an integer", v, problems);
                None
            }
        },
        ValueType::Real => match v.as_f64() {
            Some(f) if v.is_number() => Some(plist::Value::Real(f)),
            _ => {
                wrong_type(path, "a real number", v, problems);
                None
            }
        },
        ValueType::Boolean => match v {
            Value::Bool(b) => Some(plist::Value::Boolean(*b)),
            _ => {
                wrong_type(path, "a boolean", v, problems);
                None
            }
        },
        ValueType::Date => match v.as_str().and_then(rfc3339_to_date) {
            Some(d) => Some(plist::Value::Date(d)),
            None => {
                if let Value::String(s) = v {
                    problems.push(Problem {
                        path: path.to_string(),
                        kind: ProblemKind::BadFormat {
                            value: s.clone(),
                            format: "RFC 3339 date".into(),
                        },
                    });
                } else {
                    wrong_type(path, "a date (RFC 3339 string)", v, problems);
                }
                None
            }
        },
        ValueType::Data => match v {
            Value::String(s) => match decode_base64(s) {
                Some(bytes) => Some(plist::Value::Data(bytes)),
                None => {
                    problems.push(Problem {
                        path: path.to_string(),
                        kind: ProblemKind::BadFormat {
                            value: s.chars().take(40).collect(),
                            format: "base64 data".into(),
                        },
                    });
                    None
                }
            },
            _ => {
                wrong_type(path, "data (a base64 string)", v, problems);
                None
            }
        },
        ValueType::Dictionary => match v {
            Value::Object(obj) => {
                check_dict(&spec.subkeys, obj, path, problems).map(plist::Value::Dictionary)
            }
            _ => {
                wrong_type(path, "a dictionary", v, problems);
                None
            }
        },
        ValueType::Array => match v {
            Value::Array(items) => check_array(spec, items, path, problems),
            _ => {
                wrong_type(path, "an array", v, problems);
                None
            }
        },
        ValueType::Any => any_value(v, path, problems),
    };
    if problems.len() == before && !spec.allowed.is_empty() && !is_allowed(&spec.allowed, v) {
        problems.push(Problem {
            path: path.to_string(),
            kind: ProblemKind::NotAllowed {
                value: v.to_string(),
                allowed: spec.allowed_strings(),
            },
        });
    }
    if problems.len() == before {
        check_range(spec, v, path, problems);
    }
    if problems.len() == before {
        out
    } else {
        None
    }
}

fn check_range(spec: &KeySpec, v: &Value, path: &str, problems: &mut Vec<Problem>) {
    let (Some(range), Some(x)) = (spec.range, v.as_f64()) else {
        return;
    };
    let low = range.min.is_some_and(|m| x < m);
    let high = range.max.is_some_and(|m| x > m);
    if low || high {
        let show = |b: Option<f64>| b.map(|b| b.to_string()).unwrap_or_else(|| "..".into());
        problems.push(Problem {
            path: path.to_string(),
            kind: ProblemKind::OutOfRange {
                value: v.to_string(),
                range: format!("[{}, {}]", show(range.min), show(range.max)),
            },
        });
    }
}

fn check_format(spec: &KeySpec, s: &str, path: &str, problems: &mut Vec<Problem>) {
    // Only formats with an unambiguous grammar are enforced; the others are hints.
    let ok = match spec.format.as_deref() {
        Some("uuid") => uuid::Uuid::try_parse(s).is_ok(),
        _ => true,
    };
    if !ok {
        problems.push(Problem {
            path: path.to_string(),
            kind: ProblemKind::BadFormat {
                value: s.to_string(),
                format: spec.format.clone().unwrap_or_default(),
            },
        });
    }
}

fn check_array(
    spec: &KeySpec,
    items: &[Value],
    path: &str,
    problems: &mut Vec<Problem>,
) -> Option<plist::Value> {
    let before = problems.len();
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let p = format!("{path}[{i}]");
        let converted = match spec.subkeys.as_slice() {
            [] => any_value(item, &p, problems),
            [one] => check_item(one, item, &p, problems),
            alternatives => check_alternative(alternatives, item, &p, problems),
        };
        if let Some(c) = converted {
            out.push(c);
        }
    }
    (problems.len() == before).then_some(plist::Value::Array(out))
}

/// An array item: a scalar item with subkeys lists the allowed values.
fn check_item(
    spec: &KeySpec,
    item: &Value,
    path: &str,
    problems: &mut Vec<Problem>,
) -> Option<plist::Value> {
    if !spec.ty.is_container() && !spec.subkeys.is_empty() && spec.allowed.is_empty() {
        let mut enumerated = spec.clone();
        enumerated.allowed = spec
            .subkeys
            .iter()
            .map(|s| Value::String(s.key.clone()))
            .collect();
        enumerated.subkeys.clear();
        return check_value(&enumerated, item, path, problems);
    }
    check_value(spec, item, path, problems)
}

/// An item of an array whose subkeys are alternative dictionaries, told apart by a
/// required key with a single allowed value (Apple uses `Item`).
fn check_alternative(
    alternatives: &[KeySpec],
    item: &Value,
    path: &str,
    problems: &mut Vec<Problem>,
) -> Option<plist::Value> {
    let discriminator = |alt: &KeySpec| -> Option<(String, Value)> {
        alt.subkeys
            .iter()
            .find(|k| k.required && k.allowed.len() == 1)
            .and_then(|k| k.allowed.first().map(|v| (k.key.clone(), v.clone())))
    };
    let Value::Object(obj) = item else {
        wrong_type(path, "a dictionary", item, problems);
        return None;
    };
    let found = alternatives.iter().find(|alt| {
        discriminator(alt).is_some_and(|(k, v)| obj.get(&k).is_some_and(|x| is_allowed(&[v], x)))
    });
    match found {
        Some(alt) => check_value(alt, item, path, problems),
        None => {
            let Some(key) = alternatives.iter().find_map(discriminator).map(|(k, _)| k) else {
                return any_value(item, path, problems);
            };
            let allowed: Vec<String> = alternatives
                .iter()
                .filter_map(discriminator)
                .map(|(_, v)| {
                    v.as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| v.to_string())
                })
                .collect();
            let p = join_path(path, &key);
            match obj.get(&key) {
                Some(v) => problems.push(Problem {
                    path: p,
                    kind: ProblemKind::NotAllowed {
                        value: v.to_string(),
                        allowed,
                    },
                }),
                None => problems.push(Problem {
                    path: p,
                    kind: ProblemKind::MissingKey {
                        expected_type: format!("<string>, one of: {}", allowed.join(", ")),
                    },
                }),
            }
            None
        }
    }
}

/// A value of `<any>` type: every JSON value but null maps onto a plist value.
fn any_value(v: &Value, path: &str, problems: &mut Vec<Problem>) -> Option<plist::Value> {
    match v {
        Value::Null => {
            wrong_type(path, "a plist value (plists have no null)", v, problems);
            None
        }
        Value::Bool(b) => Some(plist::Value::Boolean(*b)),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Some(plist::Value::Integer(i.into()))
            } else if let Some(u) = n.as_u64() {
                Some(plist::Value::Integer(u.into()))
            } else {
                n.as_f64().map(plist::Value::Real)
            }
        }
        Value::String(s) => Some(plist::Value::String(s.clone())),
        Value::Array(items) => {
            let before = problems.len();
            let out: Vec<_> = items
                .iter()
                .enumerate()
                .filter_map(|(i, x)| any_value(x, &format!("{path}[{i}]"), problems))
                .collect();
            (problems.len() == before).then_some(plist::Value::Array(out))
        }
        Value::Object(obj) => {
            let before = problems.len();
            let mut out = plist::Dictionary::new();
            for (k, x) in obj {
                if let Some(c) = any_value(x, &join_path(path, k), problems) {
                    out.insert(k.clone(), c);
                }
            }
            (problems.len() == before).then_some(plist::Value::Dictionary(out))
        }
    }
}

/// A complete example payload for a command: every key (required and optional) with a
/// value of the right type, the first allowed value where there is a list, and one
/// item per alternative in arrays of alternatives. Used by tests and `--example`.
pub fn example_payload(spec: &RequestSpec) -> Value {
    Value::Object(example_dict(&spec.keys))
}

fn example_dict(keys: &[KeySpec]) -> Map<String, Value> {
    keys.iter()
        .map(|k| {
            let name = if k.is_wildcard() {
                "ExampleKey".to_string()
            } else {
                k.key.clone()
            };
            (name, example_value(k))
        })
        .collect()
}

fn example_value(k: &KeySpec) -> Value {
    if let Some(first) = k.allowed.first() {
        return first.clone();
    }
    match k.ty {
        // A Find My PIN is six digits (see `check_rules`).
        ValueType::String if k.key == "PIN" => Value::String("123456".into()),
        ValueType::String => match k.format.as_deref() {
            Some("uuid") => Value::String("0B3D6A66-1C5A-4F55-9D50-7E2F9C1A2B3C".into()),
            _ => Value::String(format!("example-{}", k.key)),
        },
        ValueType::Integer => match k.range.and_then(|r| r.min) {
            Some(m) => Value::from(m as i64),
            None => Value::from(1),
        },
        ValueType::Real => match k.range.and_then(|r| r.min) {
            Some(m) => Value::from(m),
            None => Value::from(0.5),
        },
        ValueType::Boolean => Value::Bool(true),
        ValueType::Date => Value::String("2024-10-01T12:00:00Z".into()),
        ValueType::Data => Value::String(crate::value::encode_base64(b"example")),
        ValueType::Any => Value::String("example".into()),
        ValueType::Dictionary => Value::Object(example_dict(&k.subkeys)),
        ValueType::Array => match k.subkeys.as_slice() {
            [] => Value::Array(vec![Value::String("example".into())]),
            [one] if !one.ty.is_container() && !one.subkeys.is_empty() => {
                Value::Array(vec![Value::String(one.subkeys[0].key.clone())])
            }
            [one] => Value::Array(vec![example_value(one)]),
            many => Value::Array(many.iter().map(example_value).collect()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn device_lock_builds_and_writes_xml() {
        let cmd = build_command("DeviceLock", json!({"PIN": "123456", "Message": "Lost"})).unwrap();
        let xml = String::from_utf8(cmd.to_xml().unwrap()).unwrap();
        assert!(xml.contains("<key>RequestType</key>"));
        assert!(xml.contains("<string>DeviceLock</string>"));
        assert!(xml.contains(&cmd.command_uuid));
        assert_eq!(parse_command(xml.as_bytes()).unwrap(), cmd);
    }

    #[test]
    fn errors_name_the_key_and_what_is_allowed() {
        let err = build_command("DeviceLock", json!({"Pin": "1"})).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("unknown key Pin"), "{msg}");
        assert!(msg.contains("PIN"), "{msg}");

        let err = build_command("DeviceInformation", json!({})).unwrap_err();
        assert!(err.to_string().contains("missing required key Queries"));

        let err = build_command("DeviceInformation", json!({"Queries": ["Modle"]})).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("Queries[0]") && msg.contains("OSVersion"),
            "{msg}"
        );

        let err = build_command("DeviceLock", json!({"PIN": 123456})).unwrap_err();
        assert!(err
            .to_string()
            .contains("key PIN must be a string, found an integer"));
    }

    #[test]
    fn settings_items_are_told_apart_by_item() {
        let ok = build_command(
            "Settings",
            json!({"Settings": [{"Item": "DeviceName", "DeviceName": "Mac-42"}]}),
        );
        assert!(ok.is_ok(), "{ok:?}");
        let err = build_command(
            "Settings",
            json!({"Settings": [{"Item": "DeviceNam", "DeviceName": "x"}]}),
        )
        .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("Settings[0].Item") && msg.contains("DeviceName"),
            "{msg}"
        );
        let err = build_command(
            "Settings",
            json!({"Settings": [{"Item": "DeviceName", "Name": "x"}]}),
        )
        .unwrap_err();
        assert!(err.to_string().contains("unknown key Settings[0].Name"));
    }

    #[test]
    fn unknown_request_type_suggests() {
        let err = build_command("devicelock", json!({})).unwrap_err();
        assert!(err.to_string().contains("did you mean DeviceLock"));
    }

    #[test]
    fn builder_keeps_given_uuid() {
        let cmd = CommandBuilder::new("ProfileList")
            .command_uuid("abc")
            .build()
            .unwrap();
        assert_eq!(cmd.command_uuid, "abc");
        assert_eq!(cmd.payload_json().len(), 0);
    }
}
