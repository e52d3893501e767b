//! Every command schema in the catalog builds, writes and parses back; invalid payloads
//! get precise errors for every key.

use fleetbus_mdm::catalog::{KeySpec, ValueType};
use fleetbus_mdm::{
    build_command, catalog, example_payload, parse_command, validate_command_payload, MdmError,
    ProblemKind,
};
use serde_json::{json, Value};

fn problems(err: MdmError) -> Vec<fleetbus_mdm::Problem> {
    match err {
        MdmError::InvalidPayload { problems, .. } => problems,
        other => panic!("expected InvalidPayload, got {other}"),
    }
}

#[test]
fn every_command_round_trips_through_xml_and_binary() {
    let mut count = 0;
    for spec in &catalog().commands {
        let payload = example_payload(spec);
        let cmd = build_command(&spec.request_type, payload.clone())
            .unwrap_or_else(|e| panic!("{}: {e}", spec.request_type));
        assert_eq!(cmd.request_type, spec.request_type);
        let xml = cmd.to_xml().unwrap();
        let back = parse_command(&xml).unwrap_or_else(|e| panic!("{}: {e}", spec.request_type));
        assert_eq!(back, cmd, "{} via XML", spec.request_type);
        let bin = cmd.to_binary().unwrap();
        assert_eq!(
            parse_command(&bin).unwrap(),
            cmd,
            "{} via binary",
            spec.request_type
        );
        // The JSON form of the payload reproduces the same command.
        let again = fleetbus_mdm::CommandBuilder::new(&spec.request_type)
            .command_uuid(cmd.command_uuid.clone())
            .payload(cmd.payload_json())
            .build()
            .unwrap();
        assert_eq!(again, cmd, "{} via JSON", spec.request_type);
        count += 1;
    }
    assert_eq!(count, 66);
}

#[test]
fn minimal_payloads_with_only_required_keys_are_valid() {
    for spec in &catalog().commands {
        let full = example_payload(spec);
        let mut minimal = serde_json::Map::new();
        for k in spec.keys.iter().filter(|k| k.required) {
            minimal.insert(k.key.clone(), full[&k.key].clone());
        }
        validate_command_payload(&spec.request_type, &Value::Object(minimal))
            .unwrap_or_else(|e| panic!("{}: {e}", spec.request_type));
    }
}

fn wrong_value_for(k: &KeySpec) -> Value {
    match k.ty {
        ValueType::String | ValueType::Date | ValueType::Data => json!(12),
        ValueType::Any => Value::Null,
        _ => json!("not-the-right-type"),
    }
}

#[test]
fn every_key_rejects_wrong_types_missing_and_unknown() {
    let mut checked = 0;
    for spec in &catalog().commands {
        let full = example_payload(spec);
        let obj = full.as_object().unwrap();
        // Unknown key: named, with the allowed list.
        let mut bad = obj.clone();
        bad.insert("NoSuchKey".into(), json!(1));
        let p = problems(build_command(&spec.request_type, Value::Object(bad)).unwrap_err());
        assert_eq!(p.len(), 1, "{}", spec.request_type);
        assert_eq!(p[0].path, "NoSuchKey");
        match &p[0].kind {
            ProblemKind::UnknownKey { allowed } => {
                let names: Vec<_> = spec.keys.iter().map(|k| k.key.clone()).collect();
                assert_eq!(allowed, &names);
            }
            other => panic!("{}: {other:?}", spec.request_type),
        }
        for k in &spec.keys {
            // Wrong type at each key.
            let mut bad = obj.clone();
            bad.insert(k.key.clone(), wrong_value_for(k));
            let p = problems(build_command(&spec.request_type, Value::Object(bad)).unwrap_err());
            assert_eq!(p.len(), 1, "{}.{}: {p:?}", spec.request_type, k.key);
            assert_eq!(p[0].path, k.key);
            assert!(
                matches!(p[0].kind, ProblemKind::WrongType { .. }),
                "{}.{}: {p:?}",
                spec.request_type,
                k.key
            );
            // Missing required key.
            if k.required {
                let mut bad = obj.clone();
                bad.remove(&k.key);
                let p =
                    problems(build_command(&spec.request_type, Value::Object(bad)).unwrap_err());
                assert_eq!(p.len(), 1);
                assert_eq!(p[0].path, k.key);
                assert!(matches!(p[0].kind, ProblemKind::MissingKey { .. }));
            }
            // Value outside the allowed list.
            if !k.allowed.is_empty() {
                let mut bad = obj.clone();
                let outside = match k.ty {
                    ValueType::Integer => json!(987_654),
                    _ => json!("NotAnAllowedValue"),
                };
                bad.insert(k.key.clone(), outside);
                let p =
                    problems(build_command(&spec.request_type, Value::Object(bad)).unwrap_err());
                match &p[0].kind {
                    ProblemKind::NotAllowed { allowed, .. } => {
                        assert_eq!(allowed, &k.allowed_strings())
                    }
                    other => panic!("{}.{}: {other:?}", spec.request_type, k.key),
                }
            }
            checked += 1;
        }
    }
    assert!(checked > 100, "checked {checked} keys");
}

#[derive(Clone, Debug)]
enum Seg {
    Key(String),
    Index(usize),
}

fn render(path: &[Seg]) -> String {
    let mut s = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) if s.is_empty() => s.push_str(k),
            Seg::Key(k) => {
                s.push('.');
                s.push_str(k)
            }
            Seg::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}

/// Every non-wildcard key at any depth of the example payload, with its path.
fn nested_keys(keys: &[KeySpec], path: Vec<Seg>, out: &mut Vec<(Vec<Seg>, KeySpec)>) {
    for k in keys.iter().filter(|k| !k.is_wildcard()) {
        let mut p = path.clone();
        p.push(Seg::Key(k.key.clone()));
        out.push((p.clone(), k.clone()));
        match k.ty {
            ValueType::Dictionary => nested_keys(&k.subkeys, p, out),
            ValueType::Array => match k.subkeys.as_slice() {
                [one] if one.ty == ValueType::Dictionary => {
                    let mut q = p.clone();
                    q.push(Seg::Index(0));
                    nested_keys(&one.subkeys, q, out)
                }
                many if many.len() > 1 => {
                    for (i, alt) in many.iter().enumerate() {
                        let mut q = p.clone();
                        q.push(Seg::Index(i));
                        nested_keys(&alt.subkeys, q, out)
                    }
                }
                _ => {}
            },
            _ => {}
        }
    }
}

fn slot<'a>(v: &'a mut Value, path: &[Seg]) -> &'a mut Value {
    path.iter().fold(v, |v, seg| match seg {
        Seg::Key(k) => &mut v[k.as_str()],
        Seg::Index(i) => &mut v[*i],
    })
}

#[test]
fn nested_keys_at_any_depth_reject_wrong_types_with_their_path() {
    let mut checked = 0;
    for spec in &catalog().commands {
        let full = example_payload(spec);
        let mut all = Vec::new();
        nested_keys(&spec.keys, Vec::new(), &mut all);
        for (path, k) in all {
            // Discriminators (a single allowed value) are covered by the alternative tests.
            if k.allowed.len() == 1 && path.len() > 2 {
                continue;
            }
            let mut bad = full.clone();
            *slot(&mut bad, &path) = wrong_value_for(&k);
            let p = problems(build_command(&spec.request_type, bad).unwrap_err());
            assert_eq!(p.len(), 1, "{} {}: {p:?}", spec.request_type, render(&path));
            assert_eq!(p[0].path, render(&path));
            assert!(matches!(p[0].kind, ProblemKind::WrongType { .. }));
            if k.required {
                let mut bad = full.clone();
                let (last, parent) = path.split_last().unwrap();
                if let (Seg::Key(name), Value::Object(m)) = (last, slot(&mut bad, parent)) {
                    m.remove(name);
                }
                let p = problems(build_command(&spec.request_type, bad).unwrap_err());
                assert_eq!(p[0].path, render(&path), "{}", spec.request_type);
                assert!(matches!(p[0].kind, ProblemKind::MissingKey { .. }));
            }
            checked += 1;
        }
    }
    assert!(checked >= 200, "checked {checked} keys");
}

#[test]
fn nested_errors_carry_the_full_path() {
    let err = build_command(
        "ScheduleOSUpdate",
        json!({"Updates": [{"InstallAction": "InstallSoon", "ProductVersion": "14.5"}]}),
    )
    .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("Updates[0].InstallAction"), "{msg}");
    assert!(msg.contains("InstallASAP"), "{msg}");
}
