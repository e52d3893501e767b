//! The configuration loader end to end: the shipped example, every error kind with
//! its position, directory merging, and no panic on any input.

use std::path::Path;

use fleetbus_config::{load, load_str, Input, TargetSpec};
use proptest::prelude::*;

fn errors_of(text: &str) -> Vec<String> {
    match load_str("c.yaml", text, Path::new("/nonexistent")) {
        Ok(_) => Vec::new(),
        Err(e) => e.0.iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn the_shipped_example_validates() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/fleetbus.yaml");
    let config = load(&path).unwrap_or_else(|e| panic!("{e}"));
    assert!(config
        .rules
        .iter()
        .any(|r| r.name == "hey-listen" && r.enabled));
    assert_eq!(config.server.api_tokens[0].expose(), "dev-token-change-me");
    assert_eq!(config.buses, vec!["default"]);
}

#[test]
fn three_mistakes_give_three_located_errors() {
    let errors = errors_of(
        "server:\n  listen: 127.0.0.1:8088\n  colour: blue\nrules:\n  - name: r1\n    event_pattern: {source: [a]}\n    state: on\n  - name: r2\n    schedule: rate(5 minute)\n",
    );
    assert_eq!(
        errors,
        vec![
            "c.yaml:3:3: server.colour: unknown field (expected one of listen, data_dir, api_tokens, read_tokens, account, region, max_body_bytes, dedup_window, max_backlog, hop_limit, max_connections, header_timeout, request_timeout, drain_timeout, aws_access_keys, chain_budget)",
            "c.yaml:7:12: rules[0].state: unknown value \"on\" (expected one of enabled, disabled)",
            "c.yaml:9:15: rules[1].schedule: \"rate(5 minute)\": use the singular unit for 1 and the plural otherwise (e.g. rate(1 hour), rate(2 hours))",
        ]
    );
}

#[test]
fn each_kind_of_mistake_is_located() {
    let cases: &[(&str, &str)] = &[
        // unknown key
        ("rules:\n  - name: r\n    event_patern: {source: [a]}\n", "c.yaml:3:5: rules[0].event_patern: unknown field (expected one of name, bus, description, state, event_pattern, schedule, exempt, targets)"),
        // wrong type
        ("server:\n  hop_limit: lots\n", "c.yaml:2:14: server.hop_limit: wrong type: string \"lots\" (expected a non-negative integer)"),
        ("rules: {a: 1}\n", "c.yaml:1:8: rules: wrong type (expected a list)"),
        // missing required field
        ("rules:\n  - event_pattern: {source: [a]}\n", "c.yaml:2:5: rules[0].name: missing required field"),
        ("rules:\n  - name: r\n    event_pattern: {source: [a]}\n    targets:\n      - id: h\n        kind: http\n", "c.yaml:5:9: rules[0].targets[0]: missing required field url (kind http needs it)"),
        // bad secret reference
        ("server:\n  api_tokens: [\"${vault:x}\"]\n", "c.yaml:2:16: server.api_tokens[0]: \"${vault:x}\": unknown secret scheme \"vault\" (expected env or file)"),
        ("server:\n  api_tokens: [\"${env:FLEETBUS_TEST_UNSET_1}\"]\n", "c.yaml:2:16: server.api_tokens[0]: \"${env:FLEETBUS_TEST_UNSET_1}\": environment variable FLEETBUS_TEST_UNSET_1 is not set"),
        // duplicate rule name
        ("rules:\n  - name: r\n    schedule: rate(1 day)\n  - name: r\n    schedule: rate(2 days)\n", "c.yaml:4:11: rules[1].name: duplicate rule name \"r\" (first at c.yaml:2:11)"),
        // references and meaning
        ("rules:\n  - name: r\n    bus: nope\n    schedule: rate(1 day)\n", "c.yaml:3:10: rules[0].bus: unknown bus \"nope\" (declared: default)"),
        // archives
        ("archives:\n  - name: default\n", "c.yaml:2:11: archives[0].name: \"default\" is the archive of every event; name this one differently"),
        ("archives:\n  - name: \"a b\"\n", "c.yaml:2:11: archives[0].name: \"a b\" is not a valid archive name (1 to 48 letters, digits, '.', '-' or '_')"),
        ("archives:\n  - name: a\n  - name: a\n", "c.yaml:3:11: archives[1].name: duplicate archive name \"a\""),
        ("archives:\n  - name: a\n    bus: nope\n", "c.yaml:3:10: archives[0].bus: unknown bus \"nope\" (declared: default)"),
        ("archives:\n  - name: a\n    retention: 1d\n", "c.yaml:3:16: archives[0].retention: 86400s is shorter than retention.archive (7776000s): every event is kept that long in the default archive, so a named archive cannot keep its events for less"),
        ("archives:\n  - name: a\n    event_pattern: {source: a}\n", "c.yaml:3:29: archives[0].event_pattern.source: invalid pattern: source: expected an array of conditions or an object, found a string"),
        ("rules:\n  - name: r\n", "c.yaml:2:5: rules[0]: a rule needs an event_pattern or a schedule"),
        ("rules:\n  - name: r\n    event_pattern: '{\"source\": '\n", "c.yaml:3:20: rules[0].event_pattern: is not valid JSON: EOF while parsing a value at line 1 column 11"),
        ("rules:\n  - name: r\n    schedule: rate(1 day)\n    targets:\n      - {id: l, kind: log, url: 'http://x'}\n", "c.yaml:5:28: rules[0].targets[0].url: does not apply to kind log (it takes: path, max_bytes, keep)"),
        ("rules:\n  - name: r\n    schedule: rate(1 day)\n    targets:\n      - {id: l, kind: log, colour: red}\n", "c.yaml:5:28: rules[0].targets[0].colour: unknown field (expected one of id, kind, input, input_path, input_transformer, retry_policy, concurrency, rate_limit, path, max_bytes, keep)"),
        ("rules:\n  - name: r\n    schedule: rate(1 day)\n    targets:\n      - {id: l, kind: log, timeout: 5s}\n", "c.yaml:5:28: rules[0].targets[0].timeout: does not apply to kind log (it takes: path, max_bytes, keep)"),
        ("rules:\n  - name: r\n    schedule: rate(1 day)\n    targets:\n      - {id: l, kind: log, keep: many}\n", "c.yaml:5:34: rules[0].targets[0].keep: wrong type: string \"many\" (expected a non-negative integer)"),
        ("rules:\n  - name: r\n    schedule: rate(1 day)\n    targets:\n      - {id: l, kind: http, url: 'http://x', timeout: soon}\n", "c.yaml:5:55: rules[0].targets[0].timeout: \"soon\" is not a duration (expected e.g. 30s, 5m, 24h, 90d)"),
        ("rules:\n  - name: r\n    schedule: rate(1 day)\n    targets:\n      - id: l\n        kind: log\n        input_transformer: {input_paths_map: {a: $.x}, input_template: '<b>'}\n", "c.yaml:7:72: rules[0].targets[0].input_transformer.input_template: placeholder <b> is not in input_paths_map (defined: a)"),
        ("rules:\n  - name: r\n    event_pattern: {source: [{prefx: a}]}\n", "c.yaml:3:29: rules[0].event_pattern.source: invalid pattern: source: unknown operator \"prefx\" (expected one of prefix, suffix, equals-ignore-case, wildcard, anything-but, numeric, exists, cidr)"),
        // Inside a pattern written over several lines: the offending line.
        ("rules:\n  - name: r\n    event_pattern:\n      source: [a]\n      detail:\n        state:\n          - numeric: [\">\", x]\n", "c.yaml:7:11: rules[0].event_pattern.detail.state: invalid pattern: detail.state: \"numeric\" \">\" expects a number, found a string"),
        // As a JSON string, at the pattern.
        ("rules:\n  - name: r\n    event_pattern: '{\"source\": [{\"prefx\": \"a\"}]}'\n", "c.yaml:3:20: rules[0].event_pattern: invalid pattern: source: unknown operator \"prefx\" (expected one of prefix, suffix, equals-ignore-case, wildcard, anything-but, numeric, exists, cidr)"),
        ("server:\n  dedup_window: soon\n", "c.yaml:2:17: server.dedup_window: \"soon\" is not a duration (expected e.g. 30s, 5m, 24h, 90d)"),
        ("server:\n  dedup_window: 2d\nretention:\n  archive: 1d\n", "c.yaml:2:17: server.dedup_window: 172800s is longer than the archive retention (86400s): duplicates are detected among archived events"),
        ("retention:\n  archive: 5m\n", "c.yaml:2:12: retention.archive: 300s is shorter than the dedup window (600s): duplicates are detected among archived events"),
        ("sources:\n  - {name: j, kind: jamf, tokens: [t], idle_polls: true}\n", "c.yaml:2:40: sources[0].idle_polls: does not apply to kind jamf (it takes: no fields of its own)"),
        ("sources:\n  - {name: n, kind: nanomdm, tokens: [t], mapping: {source: a, detail_type: b}}\n", "c.yaml:2:43: sources[0].mapping: does not apply to kind nanomdm (it takes: idle_polls)"),
        ("sources:\n  - {name: n, kind: nanomdm, tokens: [t], colour: red}\n", "c.yaml:2:43: sources[0].colour: unknown field (expected one of name, kind, bus, tokens, token_header, hmac, idle_polls)"),
        ("sources:\n  - {name: n, kind: nanomdm, tokens: [t], idle_polls: often}\n", "c.yaml:2:55: sources[0].idle_polls: wrong type: string \"often\" (expected a boolean)"),
        ("colour: blue\n", "c.yaml:1:1: colour: unknown field (expected one of server, sources, connections, buses, rules, retention, storage, archives, software_update)"),
        ("a: 1\na: 2\n", "c.yaml:2:1: a: duplicate key"),
        // storage
        ("storage:\n  kind: postgres\n", "c.yaml:2:9: storage.kind: unknown storage kind \"postgres\" (expected one of sqlite)"),
        ("storage:\n  kind: sqlite\n  dir: x\n", "c.yaml:3:3: storage.dir: unknown field (expected one of kind, path)"),
    ];
    for (text, want) in cases {
        let errors = errors_of(text);
        assert!(
            errors.iter().any(|e| e == want),
            "for {text:?}\n got: {errors:#?}\nwant: {want}"
        );
    }
}

#[test]
fn syntax_errors_point_at_the_spot() {
    let errors = errors_of("rules:\n  - name: [unclosed\n");
    assert_eq!(errors.len(), 1);
    assert!(errors[0].starts_with("c.yaml:"), "{}", errors[0]);
    assert!(errors[0].contains("invalid YAML"), "{}", errors[0]);
}

#[test]
fn a_directory_merges_and_names_the_other_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("tok"), "t\n").unwrap();
    std::fs::write(
        dir.path().join("10-server.yaml"),
        "server:\n  api_tokens: ['${file:tok}']\nbuses:\n  - name: audit\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("20-rules.yml"),
        "rules:\n  - name: r\n    bus: audit\n    event_pattern: {source: [a]}\n    targets:\n      - {id: fwd, kind: bus, bus: default}\n      - id: cmd\n        kind: exec\n        command: [/bin/cat]\n        input_path: $.detail\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("notes.txt"), "ignored").unwrap();
    let config = load(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.buses, vec!["default", "audit"]);
    let rule = &config.rules[0];
    assert!(matches!(&rule.targets[0].spec, TargetSpec::Bus { bus } if bus == "default"));
    assert_eq!(
        rule.targets[1].input,
        Input::Path(fleetbus_config::JsonPath::parse("$.detail").unwrap())
    );

    std::fs::write(
        dir.path().join("30-more.yaml"),
        "server:\n  listen: 127.0.0.1:1\n",
    )
    .unwrap();
    let errors = load(dir.path()).unwrap_err().to_string();
    assert!(
        errors.contains("30-more.yaml:1:1: server: is defined in more than one file (first at"),
        "{errors}"
    );
}

#[test]
fn secrets_never_reach_debug_output() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("tok"), "super-secret-value\n").unwrap();
    let config = load_str(
        "c.yaml",
        "server:\n  api_tokens: ['${file:tok}']\nrules:\n  - name: r\n    schedule: rate(1 day)\n    targets:\n      - {id: s, kind: slack, url: '${file:tok}'}\n",
        dir.path(),
    )
    .unwrap();
    let debug = format!("{config:?}");
    assert!(!debug.contains("super-secret-value"));
    assert_eq!(config.server.api_tokens[0].expose(), "super-secret-value");
}

#[test]
fn the_schema_describes_every_section() {
    let schema = fleetbus_config::json_schema();
    let props = schema["properties"].as_object().unwrap();
    for section in [
        "server",
        "sources",
        "connections",
        "buses",
        "rules",
        "retention",
    ] {
        assert!(props.contains_key(section), "{section}");
    }
}

fn yamlish() -> impl Strategy<Value = String> {
    let atoms = prop::sample::select(vec![
        "server:",
        "rules:",
        "  - name: r",
        "    event_pattern: {source: [a]}",
        "    targets:",
        "      - id: x",
        "        kind: log",
        "  listen: x",
        "&a b: *a",
        "- [",
        "]",
        "{",
        ": :",
        "    schedule: cron(0 0 * * ? *)",
        "\t",
        "'",
        "\"",
        "? x",
        "---",
        "  api_tokens: ['${env:HOME}']",
        "sources:",
        "  - {name: s, kind: generic}",
    ]);
    prop::collection::vec(atoms, 0..12).prop_map(|lines| lines.join("\n"))
}

proptest! {
    #[test]
    fn no_text_panics_the_loader(text in "\\PC{0,200}") {
        let _ = load_str("p.yaml", &text, Path::new("/nonexistent"));
    }

    #[test]
    fn no_yaml_shaped_text_panics_the_loader(text in yamlish()) {
        let _ = load_str("p.yaml", &text, Path::new("/nonexistent"));
    }
}

#[test]
fn mdm_and_assets_targets_are_checked_against_the_schema() {
    let text = r#"
rules:
  - name: lock
    event_pattern: {source: [idp]}
    targets:
      - id: lock
        kind: mdm
        server: nanomdm
        url: http://127.0.0.1:9000/
        api_key: ${env:PATH}
        mdm_command: {RequestType: DeviceLock, PIN: <pin>, Message: "Locked: <reason>"}
        variables: {reason: $.detail.reason}
        devices: {user: $.detail.user.id}
      - id: record
        kind: assets
        user: {id: $.detail.user.id, status: deactivated}
"#;
    let config =
        load_str("c.yaml", text, Path::new("/nonexistent")).unwrap_or_else(|e| panic!("{e}"));
    let targets = &config.rules[0].targets;
    let TargetSpec::Mdm(m) = &targets[0].spec else {
        panic!("{:?}", targets[0].spec)
    };
    assert_eq!(m.url, "http://127.0.0.1:9000");
    assert_eq!(m.request_type, "DeviceLock");
    assert_eq!(
        m.devices.user.as_ref().map(|p| p.as_str()),
        Some("$.detail.user.id")
    );
    assert!(m.devices.enrolled_only);
    assert!(matches!(&targets[1].spec, TargetSpec::Assets { user, .. } if user.len() == 2));

    let errors = errors_of(
        r#"
rules:
  - name: bad
    event_pattern: {source: [idp]}
    targets:
      - id: t
        kind: mdm
        server: jamf
        url: http://127.0.0.1:9000
        api_key: ${env:PATH}
        mdm_command: {RequestType: ScheduleOSUpdate, Updates: [{InstallAction: InstallSoon, ProductKey: 3}], Colour: <nope>}
        devices: {udid: $.detail.udid, os_below: "14"}
      - id: a
        kind: assets
        device: {name: $.detail.name, colour: blue}
      - id: x
        kind: mdm
        url: http://127.0.0.1:9000
        api_key: ${env:PATH}
        devices: {tag: x}
        mdm_command: {RequestType: DeviceLok}
      - id: y
        kind: mdm
        server: micromdm
        url: http://127.0.0.1:9000
        api_key: ${env:PATH}
        devices: {}
        mdm_command: {RequestType: DeviceLock}
"#,
    );
    assert_eq!(
        errors,
        vec![
            "c.yaml:8:17: rules[0].targets[0].server: unknown MDM server \"jamf\" (expected nanomdm or micromdm)",
            "c.yaml:11:22: rules[0].targets[0].mdm_command: unknown placeholder <nope> (declare it under variables, or use one of: pin, device.serial, device.udid, device.name, device.model, device.os_version, device.user_id, command_uuid)",
            "c.yaml:11:118: rules[0].targets[0].mdm_command.Colour: unknown key Colour (allowed: Updates)",
            "c.yaml:11:80: rules[0].targets[0].mdm_command.Updates[0].InstallAction: key Updates[0].InstallAction has value \"InstallSoon\" which is not allowed (allowed: Default, DownloadOnly, InstallASAP, NotifyOnly, InstallLater, InstallForceRestart)",
            "c.yaml:11:105: rules[0].targets[0].mdm_command.Updates[0].ProductKey: key Updates[0].ProductKey must be a string, found an integer",
            "c.yaml:15:39: rules[0].targets[1].device.colour: unknown device field (expected one of: serial, udid, name, model, os_version, os_build, enrollment_state, enrolled_at, user_id, tags, add_tags, last_seen, notes)",
            "c.yaml:15:17: rules[0].targets[1].device: missing required field serial (it says which record to update)",
            "c.yaml:16:9: rules[0].targets[2]: missing required field server (kind mdm needs it)",
            "c.yaml:21:36: rules[0].targets[2].mdm_command.RequestType: unknown request type \"DeviceLok\" (did you mean DeviceLock?)",
            "c.yaml:27:18: rules[0].targets[3].devices: names no devices (give udid, serial, user, os_below or tag; all: true addresses every device)",
        ]
    );
}

/// The shipped examples `files`, loaded as one directory with the shipped secrets.
fn load_examples(files: &[&str]) -> fleetbus_config::Config {
    let dir = tempfile::tempdir().unwrap();
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    std::fs::create_dir(dir.path().join("secrets")).unwrap();
    for f in files {
        std::fs::copy(examples.join(f), dir.path().join(f)).unwrap();
    }
    for f in std::fs::read_dir(examples.join("secrets")).unwrap() {
        let f = f.unwrap();
        std::fs::copy(f.path(), dir.path().join("secrets").join(f.file_name())).unwrap();
    }
    load(dir.path()).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn the_shipped_software_update_workflow_validates_beside_the_sample() {
    let config = load_examples(&["fleetbus.yaml", "software-update.yaml"]);
    let names: Vec<&str> = config.rules.iter().map(|r| r.name.as_str()).collect();
    for want in [
        "software-update",
        "software-update-deadlines",
        "su-record-version",
        "su-trouble",
        "su-declarations",
    ] {
        assert!(names.contains(&want), "{names:?}");
    }
    assert!(config.sources.iter().any(|s| s.name == "apple-releases"));
    let policy = config.software_update.as_ref().expect("the policy");
    assert_eq!(policy.requirements.len(), 2);
    assert_eq!(policy.requirements[0].name, "pilot");
    assert_eq!(
        policy.requirements[0].required,
        fleetbus_config::RequiredVersion::Latest
    );
    assert_eq!(policy.requirements[0].sla.actively_exploited_minor, 2);
    // Nudge's defaults where the file says nothing.
    assert_eq!(policy.requirements[1].sla.actively_exploited_minor, 14);
    assert_eq!(policy.requirements[1].sla.non_actively_exploited_minor, 21);
    assert_eq!(policy.requirements[1].sla.standard_minor, 28);
    assert_eq!(
        policy.download_only_before,
        std::time::Duration::from_secs(7 * 86_400)
    );
    // Its rules run one target, one delivery at a time.
    let su = config
        .rules
        .iter()
        .find(|r| r.name == "software-update")
        .unwrap();
    assert_eq!(su.targets.len(), 1);
    assert_eq!(su.targets[0].concurrency, 1);
    assert!(matches!(su.targets[0].spec, TargetSpec::SoftwareUpdate(_)));
    let deadlines = config
        .rules
        .iter()
        .find(|r| r.name == "software-update-deadlines")
        .unwrap();
    assert!(deadlines.schedule.is_some());
}

#[test]
fn software_update_mistakes_are_all_reported_at_their_place() {
    let text = "software_update:
  mdm: {server: jamf, url: ftp://x}
  evaluate: rate(5 parsecs)
  resend_after: 1s
  requirements:
    - name: a
      required_minimum_os_version: fifteen
      required_installation_date: next tuesday
      targeted_os_versions_rule: sonoma
      models: [\"Mac*14\"]
    - name: a
rules:
  - name: software-update
    schedule: rate(1 day)
    targets:
      - id: x
        kind: log
";
    let errors = errors_of(text).join("\n");
    for want in [
        "c.yaml:2:8: software_update.mdm: missing required field api_key",
        "c.yaml:2:17: software_update.mdm.server: unknown MDM server \"jamf\"",
        "mdm.url: \"ftp://x\" is not an http:// or https:// URL",
        "c.yaml:3:13: software_update.evaluate: \"rate(5 parsecs)\": unknown unit",
        "c.yaml:4:17: software_update.resend_after: 1s is too short",
        "required_minimum_os_version: \"fifteen\" is not a version",
        "required_installation_date: \"next tuesday\" is not an RFC 3339 time",
        "targeted_os_versions_rule: \"sonoma\" is not a major version",
        "models: \"Mac*14\" is not a model",
        "duplicate requirement name \"a\"",
    ] {
        assert!(errors.contains(want), "{want}\n in:\n{errors}");
    }
    // A target of the kind without the section says what it needs.
    let text = "rules:
  - name: r
    schedule: rate(1 day)
    targets:
      - id: x
        kind: software-update
";
    let errors = errors_of(text).join("\n");
    assert!(
        errors.contains("c.yaml:6:15: rules[0].targets[0].kind: a software-update target is made by the software_update: section, which this configuration does not have"),
        "{errors}"
    );
}

#[test]
fn the_software_update_rules_names_are_its_own() {
    let text = "software_update:
  mdm: {url: \"http://127.0.0.1:9000\", api_key: \"${env:HOME}\"}
  requirements: [{name: all}]
rules:
  - name: software-update
    schedule: rate(1 day)
    targets:
      - id: x
        kind: log
";
    let errors = errors_of(text).join("\n");
    assert!(
        errors.contains("runs as rule \"software-update\", a name the rule at c.yaml:5:11"),
        "{errors}"
    );
}

#[test]
fn the_shipped_mdm_workflows_validate_beside_the_sample() {
    let config = load_examples(&["fleetbus.yaml", "mdm-workflows.yaml"]);
    let names: Vec<&str> = config.rules.iter().map(|r| r.name.as_str()).collect();
    for want in [
        "enrolled",
        "offboard",
        "lock-report",
        "os-nudge",
        "os-nudge-retry",
        "os-nudge-report",
    ] {
        assert!(names.contains(&want), "{names:?}");
    }
    let mdm_targets = config
        .rules
        .iter()
        .flat_map(|r| &r.targets)
        .filter(|t| matches!(t.spec, TargetSpec::Mdm(_)))
        .count();
    assert_eq!(mdm_targets, 4);
}

/// An email target whose smtp block ends with `extra` (more `smtp:` keys).
fn email_target(extra: &str) -> String {
    format!(
        "rules:\n  - name: r\n    schedule: rate(1 day)\n    targets:\n      - id: mail\n        kind: email\n        from: bot@example.com\n        to: [admin@example.com]\n        smtp:\n          host: localhost\n{extra}"
    )
}

fn smtp_of(config: &fleetbus_config::Config) -> &fleetbus_config::Smtp {
    match &config.rules[0].targets[0].spec {
        TargetSpec::Email { smtp, .. } => smtp,
        other => panic!("{other:?}"),
    }
}

#[test]
fn smtp_ca_file_is_read_relative_to_the_config() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("pki")).unwrap();
    // Two CAs in one bundle, with a private key left in the file: only the
    // certificates count.
    let ca = |name: &str| {
        let mut params = rcgen::CertificateParams::new(Vec::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let key = rcgen::KeyPair::generate().unwrap();
        (params.self_signed(&key).unwrap(), key)
    };
    let (one, key) = ca("Example Corp Root CA");
    let (two, _) = ca("Example Corp Issuing CA");
    std::fs::write(
        dir.path().join("pki/corp-ca.pem"),
        format!("{}{}{}", one.pem(), key.serialize_pem(), two.pem()),
    )
    .unwrap();

    let config = load_str(
        "c.yaml",
        &email_target("          ca_file: pki/corp-ca.pem\n"),
        dir.path(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let ca = smtp_of(&config).ca.as_ref().expect("ca_file read");
    assert_eq!(ca.path, dir.path().join("pki/corp-ca.pem"));
    assert_eq!(ca.certs, vec![one.der().clone(), two.der().clone()]);

    let config = load_str("c.yaml", &email_target(""), dir.path()).unwrap();
    assert!(smtp_of(&config).ca.is_none());
}

#[test]
fn smtp_ca_file_mistakes_are_located_and_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.txt"), "call IT\n").unwrap();
    let errors = |extra: &str| -> Vec<String> {
        match load_str("c.yaml", &email_target(extra), dir.path()) {
            Ok(_) => Vec::new(),
            Err(e) => e.0.iter().map(ToString::to_string).collect(),
        }
    };
    let missing = dir.path().join("missing.pem");
    let got = errors("          ca_file: missing.pem\n");
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(
        got[0].starts_with(&format!(
            "c.yaml:11:20: rules[0].targets[0].smtp.ca_file: cannot read {}: ",
            missing.display()
        )),
        "{got:?}"
    );

    let notes = dir.path().join("notes.txt");
    assert_eq!(
        errors("          ca_file: notes.txt\n"),
        vec![format!(
            "c.yaml:11:20: rules[0].targets[0].smtp.ca_file: {} holds no certificate (expected PEM blocks \"-----BEGIN CERTIFICATE-----\")",
            notes.display()
        )]
    );

    assert_eq!(
        errors("          tls: none\n          ca_file: notes.txt\n"),
        vec!["c.yaml:12:20: rules[0].targets[0].smtp.ca_file: has no effect with tls: none (a plain connection checks no certificate; use starttls or tls)"]
    );

    let got = errors("          ca_file: notes.txt\n          cafile: x\n");
    assert!(
        got.iter()
            .any(|e| e.starts_with("c.yaml:12:11: rules[0].targets[0].smtp.cafile: unknown field (expected one of host, port, tls, username, password, ca_file)")),
        "{got:?}"
    );
}

#[test]
fn storage_defaults_to_sqlite_in_the_data_directory_and_takes_a_path_relative_to_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let config = fleetbus_config::load_str("c.yaml", "rules: []\n", dir.path()).unwrap();
    assert_eq!(
        config.storage,
        fleetbus_config::Storage::Sqlite { dir: None }
    );
    let config = fleetbus_config::load_str(
        "c.yaml",
        "storage:\n  kind: sqlite\n  path: events\n",
        dir.path(),
    )
    .unwrap();
    assert_eq!(
        config.storage,
        fleetbus_config::Storage::Sqlite {
            dir: Some(dir.path().join("events"))
        }
    );
}

/// A mapping field with `{$.path}` substitutions is a template; a `$.` left in a
/// constant would be stored as literal text, so it is refused with the fix.
#[test]
fn mapping_templates_substitute_and_a_path_inside_a_constant_is_refused() {
    let source = |resource: &str| {
        format!(
            "sources:\n  - name: s\n    kind: generic\n    tokens: [\"${{env:HOME}}\"]\n    mapping:\n      source: s\n      detail_type: t\n      resources: [\"{resource}\"]\n"
        )
    };
    let config = load_str(
        "c.yaml",
        &source("device/{$.event.serialNumber}"),
        Path::new("/nonexistent"),
    )
    .unwrap();
    let mapping = config.sources[0].mapping.as_ref().unwrap();
    let fleetbus_config::Field::Template(t) = &mapping.resources[0] else {
        panic!("{:?}", mapping.resources[0])
    };
    let body = serde_json::json!({"event": {"serialNumber": "C02X"}});
    assert_eq!(t.render(&body).unwrap().as_deref(), Some("device/C02X"));
    assert_eq!(t.render(&serde_json::json!({})).unwrap(), None);
    assert_eq!(
        errors_of(&source("device/$.event.serialNumber")),
        [
            "c.yaml:8:19: sources[0].mapping.resources[0]: \"device/$.event.serialNumber\" has a JSONPath inside a constant, which would be kept as literal text; write it as a substitution: \"device/{$.event.serialNumber}\""
        ]
    );
    assert_eq!(
        errors_of(&source("device/{$.event")),
        ["c.yaml:8:19: sources[0].mapping.resources[0]: \"device/{$.event\": {$.event is not closed with }"]
    );
}

proptest! {
    /// A mapping template never panics to parse or render, and text without a
    /// substitution renders as itself.
    #[test]
    fn mapping_templates_parse_and_render_without_panicking(text in "[a-z/{}$.\\[\\]'0-9]{0,30}") {
        let body = serde_json::json!({"a": "x", "b": {"c": 1}, "n": null});
        match fleetbus_config::Template::parse(&text) {
            Ok(Some(t)) => {
                let _ = t.render(&body);
                prop_assert_eq!(t.as_str(), text.as_str());
            }
            Ok(None) => prop_assert!(!text.contains("{$"), "{:?} has a substitution", text),
            Err(e) => prop_assert!(!e.is_empty()),
        }
        if let Ok(Some(t)) = fleetbus_config::Template::parse(&format!("{text}/{{$.a}}")) {
            if !text.contains("{$") {
                prop_assert_eq!(t.render(&body).unwrap(), Some(format!("{text}/x")));
            }
        }
    }
}

/// `token_header` must be a header name; it is kept lower-case.
#[test]
fn a_source_token_header_is_a_header_name() {
    let source = |header: &str| {
        format!(
            "sources:\n  - name: jamf\n    kind: jamf\n    tokens: [\"${{env:HOME}}\"]\n    token_header: \"{header}\"\n"
        )
    };
    let config = load_str("c.yaml", &source("X-Jamf-Token"), Path::new("/nonexistent")).unwrap();
    assert_eq!(
        config.sources[0].token_header.as_deref(),
        Some("x-jamf-token")
    );
    assert_eq!(
        errors_of(&source("X Jamf")),
        ["c.yaml:5:19: sources[0].token_header: \"X Jamf\" is not an HTTP header name"]
    );
}

/// An `hmac:` block's mistakes are each located; with it, a source needs no token.
#[test]
fn hmac_blocks_are_checked_and_stand_in_for_tokens() {
    let source = |hmac: &str| {
        format!(
            "sources:\n  - name: s\n    kind: generic\n    hmac: {hmac}\n    mapping: {{source: s, detail_type: t}}\n"
        )
    };
    let ok = source("{secret: '${env:HOME}', header: X-Hub-Signature-256, prefix: 'sha256='}");
    let config = load_str("c.yaml", &ok, Path::new("/nonexistent")).unwrap();
    let hmac = config.sources[0].hmac.as_ref().unwrap();
    assert_eq!(hmac.header, "x-hub-signature-256");
    assert_eq!(hmac.message, "{body}");
    assert_eq!(
        errors_of(&source(
            "{secret: '${env:HOME}', header: X-Sig, algorithm: md5, message: '{timestamp}'}"
        )),
        [
            "c.yaml:4:61: sources[0].hmac.algorithm: unknown value \"md5\" (expected one of sha256, sha1)",
            "c.yaml:4:75: sources[0].hmac.message: \"{timestamp}\" does not sign the body (expected {body} in it)",
            "c.yaml:4:11: sources[0].hmac.timestamp_header: missing (message signs {timestamp}: say which header holds it)",
        ]
    );
}

/// An id mapping that gives different events the same id loses all but the first
/// within the dedup window: refused where that is knowable, saying why.
#[test]
fn an_id_mapping_that_cannot_tell_events_apart_is_refused() {
    let source = |id: &str| {
        format!(
            "sources:\n  - name: s\n    kind: generic\n    tokens: [\"${{env:HOME}}\"]\n    mapping:\n      source: s\n      detail_type: t\n      id: \"{id}\"\n"
        )
    };
    let errs = errors_of(&source("webhook-1"));
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].starts_with("c.yaml:8:11: sources[0].mapping.id: \"webhook-1\" is a constant"),
        "{errs:?}"
    );
    assert!(errs[0].contains("dropped as a duplicate"), "{errs:?}");
    let errs = errors_of(&source("$.webhook.id"));
    assert!(
        errs.len() == 1 && errs[0].contains("the same in every delivery of one sender"),
        "{errs:?}"
    );
    assert!(errors_of(&source("$.event.uuid")).is_empty());
    assert!(errors_of(&source("jamf-{$.event.jssID}-{$.webhook.eventTimestamp}")).is_empty());
}

/// A gelf target's URL must name a transport and, for UDP and TCP, a host and port.
#[test]
fn a_gelf_target_names_its_transport() {
    let target = |url: &str| {
        format!("rules:\n  - name: r\n    event_pattern: {{source: [s]}}\n    targets:\n      - id: g\n        kind: gelf\n        url: \"{url}\"\n")
    };
    assert!(errors_of(&target("udp://graylog.example.com:12201")).is_empty());
    assert!(errors_of(&target("tcp://[::1]:12201")).is_empty());
    assert!(errors_of(&target("https://graylog.example.com/gelf")).is_empty());
    let errs = errors_of(&target("udp://graylog.example.com"));
    assert!(
        errs.len() == 1 && errs[0].contains("has no host:port"),
        "{errs:?}"
    );
    let errs = errors_of(&target("syslog://x:514"));
    assert!(
        errs.len() == 1 && errs[0].contains("is not a udp://, tcp://, http:// or https:// URL"),
        "{errs:?}"
    );
}
