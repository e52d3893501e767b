//! The AWS JSON API through the real binary and the real AWS CLI
//! (`aws events ... --endpoint-url`), signing with SigV4 as the CLI does.
//! `scripts/test` installs the CLI when it is missing; without it these fail.

use std::process::Command;

use serde_json::{json, Value};

use super::support::*;

const KEY_ID: &str = "AKIAFLEETBUSTEST0001";
const SECRET: &str = "fleetbus/test/secret+key/0123456789abcdefghij";
/// A key limited to reading rules (a dashboard's).
const READ_KEY_ID: &str = "AKIAFLEETBUSREAD0001";

fn start_with_keys() -> (tempfile::TempDir, Receiver, Server) {
    let dir = tempfile::tempdir().unwrap();
    let rx = receiver();
    write_config(dir.path(), &rx.url, "");
    std::fs::write(dir.path().join("aws-secret"), SECRET).unwrap();
    edit_config(dir.path(), |c| {
        c.replacen(
            "  dedup_window: 10m\n",
            &format!("  dedup_window: 10m\n  aws_access_keys:\n    - access_key_id: {KEY_ID}\n      secret_access_key: \"${{file:aws-secret}}\"\n    - access_key_id: {READ_KEY_ID}\n      secret_access_key: \"${{file:aws-secret}}\"\n      actions: [ListRules, DescribeRule, ListTargetsByRule, ListRuleNamesByTarget]\n"),
            1,
        )
    });
    let server = Server::start(dir.path());
    (dir, rx, server)
}

/// Runs `aws events <args>` against the server with `key`/`secret`; returns the
/// exit code, stdout as JSON (or Null) and stderr.
fn aws(server: &Server, key: &str, secret: &str, args: &[&str]) -> (i32, Value, String) {
    let out = Command::new("aws")
        .arg("events")
        .args(args)
        .args([
            "--endpoint-url",
            &server.base,
            "--region",
            "local",
            "--output",
            "json",
        ])
        .env("AWS_ACCESS_KEY_ID", key)
        .env("AWS_SECRET_ACCESS_KEY", secret)
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("AWS_PROFILE")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_MAX_ATTEMPTS", "1")
        .env("AWS_PAGER", "")
        .output()
        .expect("the AWS CLI (`aws`) must be installed: scripts/test installs it with pip");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    (
        out.status.code().unwrap_or(-1),
        serde_json::from_str(&stdout).unwrap_or(Value::Null),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs `aws events <args>` with the full key and checks it fails with AWS's
/// `code` and a message containing `text`.
fn refused(server: &Server, args: &[&str], code: &str, text: &str) {
    let (status, _, err) = aws(server, KEY_ID, SECRET, args);
    assert_ne!(status, 0, "{args:?}");
    assert!(err.contains(code) && err.contains(text), "{args:?}: {err}");
}

#[test]
fn the_aws_cli_puts_events_tests_patterns_and_reads_rules() {
    let (_dir, _rx, server) = start_with_keys();
    let ok = |args: &[&str]| {
        let (code, out, err) = aws(&server, KEY_ID, SECRET, args);
        assert_eq!(code, 0, "aws events {args:?}: {err}");
        out
    };

    let put = ok(&[
        "put-events",
        "--entries",
        r#"[{"Source": "cli.test", "DetailType": "Hello", "Detail": "{\"a\": 1}", "Resources": ["device/C02AWSCLI"]}]"#,
    ]);
    assert_eq!(put["FailedEntryCount"], 0, "{put}");
    let id = put["Entries"][0]["EventId"].as_str().unwrap().to_owned();
    let stored = received(&server, "device/C02AWSCLI");
    assert_eq!(stored[0]["event"]["id"], id.as_str());

    let event = json!({"id": "1", "account": "000000000000", "source": "cli.test", "time": "2026-12-04T00:00:00Z", "region": "local", "resources": [], "detail-type": "Hello", "detail": {"a": 1}}).to_string();
    let yes = ok(&[
        "test-event-pattern",
        "--event-pattern",
        r#"{"source": ["cli.test"], "detail": {"a": [{"numeric": [">", 0]}]}}"#,
        "--event",
        &event,
    ]);
    assert_eq!(yes, json!({"Result": true}));
    let no = ok(&[
        "test-event-pattern",
        "--event-pattern",
        r#"{"source": ["other"]}"#,
        "--event",
        &event,
    ]);
    assert_eq!(no, json!({"Result": false}));
    let (code, _, err) = aws(
        &server,
        KEY_ID,
        SECRET,
        &[
            "test-event-pattern",
            "--event-pattern",
            r#"{"source": "cli.test"}"#,
            "--event",
            &event,
        ],
    );
    assert_ne!(code, 0);
    assert!(err.contains("InvalidEventPatternException"), "{err}");

    let buses = ok(&["list-event-buses"]);
    assert_eq!(buses["EventBuses"][0]["Name"], "default", "{buses}");
    assert_eq!(
        buses["EventBuses"][0]["Arn"],
        "arn:aws:events:local:000000000000:event-bus/default"
    );

    // The CLI follows NextToken: one rule per page still lists them all.
    let rules = ok(&["list-rules", "--page-size", "1"]);
    let names: Vec<&str> = rules["Rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["Name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["all", "outcomes", "to-api"], "{rules}");
    let prefixed = ok(&["list-rules", "--name-prefix", "to"]);
    assert_eq!(prefixed["Rules"].as_array().unwrap().len(), 1);
    let rule = ok(&["describe-rule", "--name", "to-api"]);
    assert_eq!(rule["State"], "ENABLED");
    assert_eq!(rule["Arn"], "arn:aws:events:local:000000000000:rule/to-api");
    let pattern: Value = serde_json::from_str(rule["EventPattern"].as_str().unwrap()).unwrap();
    assert_eq!(pattern, json!({"detail-type": ["Notify"]}));
    let targets = ok(&["list-targets-by-rule", "--rule", "to-api"]);
    assert_eq!(targets["Targets"][0]["Id"], "api", "{targets}");
    assert_eq!(
        targets["Targets"][0]["RetryPolicy"]["MaximumRetryAttempts"],
        5
    );
    assert!(targets["Targets"][0]["InputTransformer"]["InputTemplate"].is_string());

    let (code, _, err) = aws(
        &server,
        KEY_ID,
        SECRET,
        &["describe-rule", "--name", "nope"],
    );
    assert_ne!(code, 0);
    assert!(
        err.contains("ResourceNotFoundException")
            && err.contains("Rule nope does not exist on EventBus default"),
        "{err}"
    );
    let (code, _, err) = aws(
        &server,
        KEY_ID,
        SECRET,
        &[
            "put-rule",
            "--name",
            "to-api",
            "--event-pattern",
            r#"{"source": ["a"]}"#,
        ],
    );
    assert_ne!(code, 0);
    assert!(
        err.contains("ManagedRuleException")
            && err.contains("declared in fleetbus's configuration"),
        "{err}"
    );
    assert_eq!(rule["ManagedBy"], "fleetbus.configuration");
    server.stop();
}

#[test]
fn unsigned_wrongly_signed_and_unknown_keys_are_refused_as_aws_does() {
    let (_dir, _rx, server) = start_with_keys();
    let (code, _, err) = aws(&server, KEY_ID, "not-the-secret", &["list-event-buses"]);
    assert_ne!(code, 0);
    assert!(err.contains("InvalidSignatureException"), "{err}");
    let (code, _, err) = aws(
        &server,
        "AKIANOTAKEYWEKNOW000",
        SECRET,
        &["list-event-buses"],
    );
    assert_ne!(code, 0);
    assert!(err.contains("UnrecognizedClientException"), "{err}");
    // No credentials at all: AWS's error shape, 403.
    let (status, body) = server.post(
        "/",
        None,
        "application/x-amz-json-1.1",
        b"{}",
        &[("X-Amz-Target", "AWSEvents.ListEventBuses")],
    );
    assert_eq!(status, 403);
    assert_eq!(
        body["__type"], "MissingAuthenticationTokenException",
        "{body}"
    );
    // A management token still works, and an unknown action is AWS's error.
    let (status, body) = server.post(
        "/",
        Some(TOKEN),
        "application/x-amz-json-1.1",
        b"{}",
        &[("X-Amz-Target", "AWSEvents.ListArchivesAndMore")],
    );
    assert_eq!(status, 400);
    assert_eq!(body["__type"], "UnknownOperationException", "{body}");
    // Eleven entries: more than EventBridge's PutEvents takes.
    let eleven: Vec<Value> = (0..11)
        .map(|i| json!({"Source": "s", "DetailType": "d", "Detail": format!("{{\"i\": {i}}}")}))
        .collect();
    let (status, body) = server.post(
        "/",
        Some(TOKEN),
        "application/x-amz-json-1.1",
        json!({"Entries": eleven}).to_string().as_bytes(),
        &[("X-Amz-Target", "AWSEvents.PutEvents")],
    );
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["__type"], "ValidationException");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("between 1 and 10 (it has 11)"),
        "{body}"
    );
    // A signature from 20 minutes ago.
    let (status, body) = server.post(
        "/",
        None,
        "application/x-amz-json-1.1",
        b"{}",
        &[
            ("X-Amz-Target", "AWSEvents.ListEventBuses"),
            ("X-Amz-Date", &stale_date()),
            ("Authorization", &format!("AWS4-HMAC-SHA256 Credential={KEY_ID}/{}/local/events/aws4_request, SignedHeaders=host;x-amz-date;x-amz-target, Signature=00", &stale_date()[..8])),
        ],
    );
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["__type"], "InvalidSignatureException");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .starts_with("Signature expired"),
        "{body}"
    );
    server.stop();
}

fn stale_date() -> String {
    let t = time::OffsetDateTime::now_utc() - time::Duration::minutes(20);
    t.format(time::macros::format_description!(
        "[year][month][day]T[hour][minute][second]Z"
    ))
    .unwrap()
}

/// A key limited to some actions calls those and is refused the rest with AWS's
/// AccessDeniedException; ListRuleNamesByTarget finds rules by a target's ARN.
#[test]
fn a_key_limited_to_reading_reads_and_is_refused_the_rest() {
    let (_dir, _rx, server) = start_with_keys();
    let (code, rules, err) = aws(&server, READ_KEY_ID, SECRET, &["list-rules"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        rules["Rules"].as_array().is_some_and(|r| !r.is_empty()),
        "{rules}"
    );
    let (code, targets, err) = aws(
        &server,
        READ_KEY_ID,
        SECRET,
        &["list-targets-by-rule", "--rule", "to-api"],
    );
    assert_eq!(code, 0, "{err}");
    let arn = targets["Targets"][0]["Arn"].as_str().unwrap().to_owned();
    let (code, names, err) = aws(
        &server,
        READ_KEY_ID,
        SECRET,
        &["list-rule-names-by-target", "--target-arn", &arn],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(names["RuleNames"], json!(["to-api"]));
    let (code, _, err) = aws(
        &server,
        READ_KEY_ID,
        SECRET,
        &[
            "put-events",
            "--entries",
            r#"[{"Source":"s","DetailType":"d","Detail":"{}"}]"#,
        ],
    );
    assert_ne!(code, 0);
    assert!(
        err.contains("AccessDeniedException") && err.contains("events:PutEvents"),
        "{err}"
    );
    // An action name the API does not have is a config error at its place.
    let (code, out) = validate_yaml(
        "server:\n  aws_access_keys:\n    - access_key_id: AKIAFLEETBUSREAD0002\n      secret_access_key: x\n      actions: [ListRulez]\n",
    );
    assert_eq!(code, Some(2), "{out}");
    assert!(
        out.contains("server.aws_access_keys[0].actions[0]") && out.contains("\"ListRulez\""),
        "{out}"
    );
    server.stop();
}

/// Archives and replays through the AWS CLI: list-archives, describe-archive,
/// start-replay (archive and rule ARNs, times as the CLI sends them),
/// describe-replay until COMPLETED, list-replays, cancel-replay of a finished one
/// (IllegalStatusException), and create-archive refused for the default archive.
#[test]
fn the_aws_cli_lists_archives_and_starts_and_follows_replays() {
    let (_dir, rx, server) = start_with_keys();
    let ok = |args: &[&str]| {
        let (code, out, err) = aws(&server, KEY_ID, SECRET, args);
        assert_eq!(code, 0, "aws events {args:?}: {err}");
        out
    };
    let start = time::OffsetDateTime::now_utc() - time::Duration::minutes(1);
    ok(&[
        "put-events",
        "--entries",
        r#"[{"Source": "cli.replay", "DetailType": "Notify", "Detail": "{\"serial\": \"C02REPLAY\"}"}]"#,
    ]);
    wait_for(
        "the live delivery",
        std::time::Duration::from_secs(20),
        || rx.bodies.lock().unwrap().len() == 1,
    );
    // The CLI sends whole seconds: the window ends a second past the event.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let end = time::OffsetDateTime::now_utc();
    let fmt = |t: time::OffsetDateTime| {
        t.format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    };

    let archives = ok(&["list-archives"]);
    assert_eq!(
        archives["Archives"][0]["ArchiveName"], "default",
        "{archives}"
    );
    assert_eq!(archives["Archives"][0]["State"], "ENABLED");
    let archive = ok(&["describe-archive", "--archive-name", "default"]);
    let archive_arn = archive["ArchiveArn"].as_str().unwrap().to_owned();
    assert_eq!(
        archive_arn,
        "arn:aws:events:local:000000000000:archive/default"
    );
    assert_eq!(archive["RetentionDays"], 90);

    let started = ok(&[
        "start-replay",
        "--replay-name",
        "cli-replay",
        "--event-source-arn",
        &archive_arn,
        "--event-start-time",
        &fmt(start),
        "--event-end-time",
        &fmt(end),
        "--destination",
        r#"{"Arn": "arn:aws:events:local:000000000000:event-bus/default", "FilterArns": ["arn:aws:events:local:000000000000:rule/to-api"]}"#,
    ]);
    assert_eq!(
        started["ReplayArn"], "arn:aws:events:local:000000000000:replay/cli-replay",
        "{started}"
    );
    assert!(
        matches!(
            started["State"].as_str(),
            Some("STARTING" | "RUNNING" | "COMPLETED")
        ),
        "{started}"
    );
    wait_for("the replay", std::time::Duration::from_secs(20), || {
        ok(&["describe-replay", "--replay-name", "cli-replay"])["State"] == "COMPLETED"
    });
    let replay = ok(&["describe-replay", "--replay-name", "cli-replay"]);
    assert_eq!(
        replay["Destination"]["FilterArns"][0],
        "arn:aws:events:local:000000000000:rule/to-api"
    );
    assert!(replay["EventLastReplayedTime"].is_number(), "{replay}");
    assert!(replay["ReplayEndTime"].is_number(), "{replay}");
    wait_for(
        "the replayed delivery",
        std::time::Duration::from_secs(20),
        || rx.bodies.lock().unwrap().len() == 2,
    );
    let listed = ok(&["list-replays", "--state", "COMPLETED"]);
    assert_eq!(listed["Replays"][0]["ReplayName"], "cli-replay", "{listed}");
    assert_eq!(
        ok(&["list-replays", "--name-prefix", "zzz"])["Replays"],
        json!([])
    );

    let refused = |args: &[&str], code: &str, text: &str| refused(&server, args, code, text);
    refused(
        &["cancel-replay", "--replay-name", "cli-replay"],
        "IllegalStatusException",
        "Replay cli-replay is COMPLETED",
    );
    refused(
        &["describe-replay", "--replay-name", "nope"],
        "ResourceNotFoundException",
        "Replay nope does not exist.",
    );
    refused(
        &["describe-archive", "--archive-name", "nope"],
        "ResourceNotFoundException",
        "Archive nope does not exist.",
    );
    refused(
        &[
            "start-replay",
            "--replay-name",
            "cli-replay",
            "--event-source-arn",
            &archive_arn,
            "--event-start-time",
            &fmt(start),
            "--event-end-time",
            &fmt(end),
            "--destination",
            r#"{"Arn": "arn:aws:events:local:000000000000:event-bus/default"}"#,
        ],
        "ResourceAlreadyExistsException",
        "a replay named \"cli-replay\" already exists",
    );
    refused(
        &[
            "start-replay",
            "--replay-name",
            "backwards",
            "--event-source-arn",
            &archive_arn,
            "--event-start-time",
            &fmt(end),
            "--event-end-time",
            &fmt(start),
            "--destination",
            r#"{"Arn": "arn:aws:events:local:000000000000:event-bus/default"}"#,
        ],
        "ValidationException",
        "must be before its end",
    );
    refused(
        &[
            "create-archive",
            "--archive-name",
            "default",
            "--event-source-arn",
            "arn:aws:events:local:000000000000:event-bus/default",
        ],
        "ValidationException",
        "declared in fleetbus's configuration",
    );
    server.stop();
}

/// Rules and targets made through the AWS CLI: put-rule, put-targets naming a
/// configuration target by its ARN with an InputTransformer, in effect at once,
/// listed beside the configuration's, kept across a restart; disable-rule stops
/// deliveries; delete-rule is refused while targets remain; EventBridge's
/// validation errors.
#[test]
fn rules_and_targets_made_through_the_aws_cli_take_effect_and_survive_a_restart() {
    let (dir, rx, server) = start_with_keys();
    let run = |server: &Server, args: &[&str]| aws(server, KEY_ID, SECRET, args);
    let ok = |server: &Server, args: &[&str]| {
        let (code, out, err) = run(server, args);
        assert_eq!(code, 0, "aws events {args:?}: {err}");
        out
    };
    let target_arn = ok(&server, &["list-targets-by-rule", "--rule", "to-api"])["Targets"][0]
        ["Arn"]
        .as_str()
        .unwrap()
        .to_owned();
    let made = ok(
        &server,
        &[
            "put-rule",
            "--name",
            "laptops-lost",
            "--event-pattern",
            r#"{"source": ["cli.rules"], "detail-type": ["Lost"]}"#,
            "--description",
            "made with the AWS CLI",
        ],
    );
    assert_eq!(
        made["RuleArn"],
        "arn:aws:events:local:000000000000:rule/laptops-lost"
    );
    let targets = json!([{
        "Id": "tell-api",
        "Arn": target_arn,
        "InputTransformer": {"InputPathsMap": {"s": "$.detail.serial"}, "InputTemplate": "{\"lost\": <s>}"},
        "RetryPolicy": {"MaximumRetryAttempts": 3}
    }])
    .to_string();
    let put = ok(
        &server,
        &[
            "put-targets",
            "--rule",
            "laptops-lost",
            "--targets",
            &targets,
        ],
    );
    assert_eq!(put["FailedEntryCount"], 0, "{put}");
    let lost =
        r#"[{"Source": "cli.rules", "DetailType": "Lost", "Detail": "{\"serial\": \"C02LOST\"}"}]"#;
    ok(&server, &["put-events", "--entries", lost]);
    wait_for(
        "the API rule's delivery",
        std::time::Duration::from_secs(20),
        || {
            rx.bodies
                .lock()
                .unwrap()
                .iter()
                .any(|(b, _)| b == &json!({"lost": "C02LOST"}))
        },
    );
    let names: Vec<String> = ok(&server, &["list-rules"])["Rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["Name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["all", "outcomes", "to-api", "laptops-lost"]);
    let described = ok(&server, &["describe-rule", "--name", "laptops-lost"]);
    assert_eq!(described["Description"], "made with the AWS CLI");
    assert_eq!(described["CreatedBy"], "000000000000");
    assert!(described.get("ManagedBy").is_none());
    let listed = ok(&server, &["list-targets-by-rule", "--rule", "laptops-lost"]);
    assert_eq!(listed["Targets"][0]["Id"], "tell-api");
    assert_eq!(
        listed["Targets"][0]["RetryPolicy"]["MaximumRetryAttempts"],
        3
    );
    let by_target = ok(
        &server,
        &["list-rule-names-by-target", "--target-arn", &target_arn],
    );
    assert_eq!(by_target["RuleNames"], json!(["to-api", "laptops-lost"]));
    let (status, running) = server.get("/v1/rules");
    assert_eq!(status, 200);
    assert!(
        running["rules"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["name"] == "laptops-lost" && r["origin"] == "api"),
        "{running}"
    );

    // Kept in the store: a restart runs it again.
    server.stop();
    let server = Server::start(dir.path());
    rx.bodies.lock().unwrap().clear();
    ok(&server, &["put-events", "--entries", lost]);
    wait_for(
        "the delivery after the restart",
        std::time::Duration::from_secs(20),
        || {
            rx.bodies
                .lock()
                .unwrap()
                .iter()
                .any(|(b, _)| b == &json!({"lost": "C02LOST"}))
        },
    );

    // Disabled: no delivery.
    ok(&server, &["disable-rule", "--name", "laptops-lost"]);
    assert_eq!(
        ok(&server, &["describe-rule", "--name", "laptops-lost"])["State"],
        "DISABLED"
    );
    rx.bodies.lock().unwrap().clear();
    ok(&server, &["put-events", "--entries", lost]);
    std::thread::sleep(std::time::Duration::from_millis(800));
    assert!(
        rx.bodies.lock().unwrap().is_empty(),
        "a disabled rule delivers nothing"
    );
    ok(&server, &["enable-rule", "--name", "laptops-lost"]);

    let refused = |args: &[&str], code: &str, text: &str| refused(&server, args, code, text);
    refused(
        &["delete-rule", "--name", "laptops-lost"],
        "ValidationException",
        "Rule can't be deleted since it has targets.",
    );
    refused(
        &["delete-rule", "--name", "to-api"],
        "ManagedRuleException",
        "Rule to-api is declared in fleetbus's configuration",
    );
    refused(
        &["disable-rule", "--name", "nope"],
        "ResourceNotFoundException",
        "Rule nope does not exist on EventBus default.",
    );
    refused(
        &["put-rule", "--name", "bad name", "--event-pattern", "{}"],
        "ValidationException",
        "failed to satisfy constraint",
    );
    refused(
        &["put-rule", "--name", "nothing"],
        "ValidationException",
        "Parameter(s) EventPattern or ScheduleExpression must be specified.",
    );
    refused(
        &[
            "put-rule",
            "--name",
            "bad-pattern",
            "--event-pattern",
            r#"{"source": "x"}"#,
        ],
        "InvalidEventPatternException",
        "Event pattern is not valid.",
    );
    let long = format!(r#"{{"source": ["{}"]}}"#, "x".repeat(4100));
    refused(
        &["put-rule", "--name", "long", "--event-pattern", &long],
        "ValidationException",
        "less than or equal to 4096",
    );
    refused(
        &[
            "put-rule",
            "--name",
            "elsewhere",
            "--event-pattern",
            "{}",
            "--event-bus-name",
            "nope",
        ],
        "ResourceNotFoundException",
        "Event bus nope does not exist.",
    );
    let both =
        json!([{"Id": "x", "Arn": target_arn, "Input": "{}", "InputPath": "$.detail"}]).to_string();
    refused(
        &["put-targets", "--rule", "laptops-lost", "--targets", &both],
        "ValidationException",
        "Only one of Input, InputPath, or InputTransformer must be provided",
    );
    let unknown =
        json!([{"Id": "x", "Arn": "arn:fleetbus:http:local:000000000000:target/none/none"}])
            .to_string();
    refused(
        &[
            "put-targets",
            "--rule",
            "laptops-lost",
            "--targets",
            &unknown,
        ],
        "ValidationException",
        "names no target of the configuration",
    );
    let many = json!((0..5)
        .map(|i| json!({"Id": format!("t{i}"), "Arn": target_arn}))
        .collect::<Vec<_>>())
    .to_string();
    refused(
        &["put-targets", "--rule", "laptops-lost", "--targets", &many],
        "LimitExceededException",
        "at most 5",
    );

    let removed = ok(
        &server,
        &[
            "remove-targets",
            "--rule",
            "laptops-lost",
            "--ids",
            "tell-api",
        ],
    );
    assert_eq!(removed["FailedEntryCount"], 0);
    ok(&server, &["delete-rule", "--name", "laptops-lost"]);
    let (code, _, _) = run(&server, &["describe-rule", "--name", "laptops-lost"]);
    assert_ne!(code, 0, "deleted");
    server.stop();
    // Gone from the store too.
    let server = Server::start(dir.path());
    let (code, _, _) = run(&server, &["describe-rule", "--name", "laptops-lost"]);
    assert_ne!(code, 0, "still deleted after a restart");
    server.stop();
}

/// Every action through boto3 (the SDK, not the CLI): `boto3/every_action.py`
/// asserts shapes, paging, errors and a session token; this runs it against the
/// real binary. `scripts/test` installs boto3 when it is missing.
#[test]
fn boto3_drives_every_action() {
    const TOKEN_KEY: &str = "AKIAFLEETBUSTEMP0001";
    const SESSION: &str = "FwoGZXIvYXdzEFleetbusTestSessionToken0123456789";
    let dir = tempfile::tempdir().unwrap();
    let rx = receiver();
    write_config(dir.path(), &rx.url, "");
    std::fs::write(dir.path().join("aws-secret"), SECRET).unwrap();
    std::fs::write(dir.path().join("aws-session"), SESSION).unwrap();
    edit_config(dir.path(), |c| {
        c.replacen(
            "  dedup_window: 10m\n",
            &format!("  dedup_window: 10m\n  aws_access_keys:\n    - access_key_id: {KEY_ID}\n      secret_access_key: \"${{file:aws-secret}}\"\n    - access_key_id: {TOKEN_KEY}\n      secret_access_key: \"${{file:aws-secret}}\"\n      session_token: \"${{file:aws-session}}\"\n"),
            1,
        )
    });
    let server = Server::start(dir.path());
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/serve/boto3/every_action.py");
    let out = Command::new("python3")
        .arg(&script)
        .env("FLEETBUS_ENDPOINT", &server.base)
        .env("FLEETBUS_KEY", KEY_ID)
        .env("FLEETBUS_SECRET", SECRET)
        .env("FLEETBUS_TOKEN_KEY", TOKEN_KEY)
        .env("FLEETBUS_SESSION_TOKEN", SESSION)
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("AWS_PROFILE")
        .output()
        .expect("python3 with boto3 (scripts/test installs it)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    for step in [
        "PutEvents",
        "ListRules paging",
        "StartReplay DescribeReplay ListReplays CancelReplay",
        "X-Amz-Security-Token",
        "errors",
    ] {
        assert!(
            stdout.lines().any(|l| l == format!("ok {step}")),
            "{step} missing:\n{stdout}"
        );
    }
    server.stop();
}

/// The README's AWS CLI commands, against the shipped sample configuration and its
/// key: put-rule, put-targets, put-events, test-event-pattern, list-rules.
#[test]
fn the_readme_aws_commands_work_with_the_sample_configuration() {
    let tmp = tempfile::tempdir().unwrap();
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let dir = tmp.path().join("examples");
    std::fs::create_dir_all(dir.join("secrets")).unwrap();
    std::fs::copy(examples.join("fleetbus.yaml"), dir.join("fleetbus.yaml")).unwrap();
    for f in std::fs::read_dir(examples.join("secrets")).unwrap() {
        let f = f.unwrap();
        std::fs::copy(f.path(), dir.join("secrets").join(f.file_name())).unwrap();
    }
    // The test's management token, for reading the trace back.
    std::fs::write(dir.join("secrets/api-token"), TOKEN).unwrap();
    let server = Server::start(&dir);
    let secret = std::fs::read_to_string(examples.join("secrets/aws-secret")).unwrap();
    let run = |args: &[&str]| {
        let out = Command::new("aws")
            .arg("events")
            .args(args)
            .args(["--endpoint-url", &server.base, "--output", "json"])
            .env("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE")
            .env("AWS_SECRET_ACCESS_KEY", secret.trim())
            .env("AWS_DEFAULT_REGION", "local")
            .env_remove("AWS_SESSION_TOKEN")
            .env_remove("AWS_PROFILE")
            .env("AWS_CONFIG_FILE", "/dev/null")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_PAGER", "")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "aws events {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<Value>(&out.stdout).unwrap_or(Value::Null)
    };
    run(&[
        "put-rule",
        "--name",
        "hello-rule",
        "--event-pattern",
        r#"{"source": ["com.example"]}"#,
    ]);
    run(&[
        "put-targets",
        "--rule",
        "hello-rule",
        "--targets",
        r#"[{"Id": "log", "Arn": "arn:fleetbus:log:local:000000000000:target/device-enrolled/enrollments"}]"#,
    ]);
    let put = run(&[
        "put-events",
        "--entries",
        r#"[{"Source": "com.example", "DetailType": "Hello", "Detail": "{}"}]"#,
    ]);
    assert_eq!(put["FailedEntryCount"], 0);
    let tested = run(&[
        "test-event-pattern",
        "--event-pattern",
        r#"{"source": ["com.example"]}"#,
        "--event",
        r#"{"id": "1", "account": "000000000000", "source": "com.example", "time": "2026-12-04T00:00:00Z", "region": "local", "resources": [], "detail-type": "Hello", "detail": {}}"#,
    ]);
    assert_eq!(tested, json!({"Result": true}));
    let rules = run(&["list-rules"]);
    assert!(
        rules["Rules"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["Name"] == "hello-rule"),
        "{rules}"
    );
    // The API rule delivered the event, whole, through the sample's log target.
    let log = tmp.path().join("fleetbus-data/enrollments.log");
    wait_for(
        "the delivery through the API rule",
        std::time::Duration::from_secs(20),
        || {
            lines(&log)
                .iter()
                .any(|e| e["id"] == put["Entries"][0]["EventId"])
        },
    );
    server.stop();
}

/// Archives made through the AWS CLI: create-archive with a pattern and a
/// retention, kept across a restart, replayed from, updated and deleted.
#[test]
fn archives_made_through_the_aws_cli_hold_their_events_and_replay() {
    let (dir, rx, server) = start_with_keys();
    let run = |server: &Server, args: &[&str]| {
        let (code, out, err) = aws(server, KEY_ID, SECRET, args);
        assert_eq!(code, 0, "aws events {args:?}: {err}");
        out
    };
    let made = run(
        &server,
        &[
            "create-archive",
            "--archive-name",
            "notify-only",
            "--event-source-arn",
            "arn:aws:events:local:000000000000:event-bus/default",
            "--event-pattern",
            r#"{"detail-type": ["Notify"]}"#,
            "--retention-days",
            "400",
            "--description",
            "what went to the API",
        ],
    );
    assert_eq!(
        made["ArchiveArn"], "arn:aws:events:local:000000000000:archive/notify-only",
        "{made}"
    );
    assert_eq!(made["State"], "ENABLED");
    refused(
        &server,
        &[
            "create-archive",
            "--archive-name",
            "notify-only",
            "--event-source-arn",
            "arn:aws:events:local:000000000000:event-bus/default",
        ],
        "ResourceAlreadyExistsException",
        "Archive notify-only already exists.",
    );
    refused(
        &server,
        &[
            "create-archive",
            "--archive-name",
            "short",
            "--event-source-arn",
            "arn:aws:events:local:000000000000:event-bus/default",
            "--retention-days",
            "30",
        ],
        "ValidationException",
        "RetentionDays 30 is shorter than the default archive's 90 days",
    );
    refused(
        &server,
        &[
            "create-archive",
            "--archive-name",
            "bad",
            "--event-source-arn",
            "arn:aws:events:local:000000000000:event-bus/default",
            "--event-pattern",
            r#"{"source": "x"}"#,
        ],
        "InvalidEventPatternException",
        "Event pattern is not valid.",
    );
    let start = time::OffsetDateTime::now_utc() - time::Duration::minutes(1);
    run(
        &server,
        &[
            "put-events",
            "--entries",
            r#"[{"Source": "cli.archive", "DetailType": "Notify", "Detail": "{\"serial\": \"C02ARCH\"}"}, {"Source": "cli.archive", "DetailType": "Other", "Detail": "{}"}]"#,
        ],
    );
    wait_for(
        "the live delivery",
        std::time::Duration::from_secs(20),
        || rx.bodies.lock().unwrap().len() == 1,
    );
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let end = time::OffsetDateTime::now_utc();

    // Kept across a restart.
    server.stop();
    let server = Server::start(dir.path());
    let described = run(
        &server,
        &["describe-archive", "--archive-name", "notify-only"],
    );
    assert_eq!(described["RetentionDays"], 400, "{described}");
    assert_eq!(described["Description"], "what went to the API");
    let pattern: Value = serde_json::from_str(described["EventPattern"].as_str().unwrap()).unwrap();
    assert_eq!(pattern, json!({"detail-type": ["Notify"]}));
    let names: Vec<String> = run(&server, &["list-archives"])["Archives"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["ArchiveName"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["default", "notify-only"]);

    // Replayed from: only its events, to every rule of the bus that takes them.
    let fmt = |t: time::OffsetDateTime| {
        t.format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    };
    run(
        &server,
        &[
            "start-replay",
            "--replay-name",
            "from-notify-only",
            "--event-source-arn",
            "arn:aws:events:local:000000000000:archive/notify-only",
            "--event-start-time",
            &fmt(start),
            "--event-end-time",
            &fmt(end),
            "--destination",
            r#"{"Arn": "arn:aws:events:local:000000000000:event-bus/default", "FilterArns": ["arn:aws:events:local:000000000000:rule/to-api"]}"#,
        ],
    );
    wait_for("the replay", std::time::Duration::from_secs(20), || {
        run(
            &server,
            &["describe-replay", "--replay-name", "from-notify-only"],
        )["State"]
            == "COMPLETED"
    });
    wait_for(
        "the replayed delivery",
        std::time::Duration::from_secs(20),
        || rx.bodies.lock().unwrap().len() == 2,
    );
    let (status, replay) = server.get("/v1/replays/from-notify-only");
    assert_eq!(status, 200);
    assert_eq!(
        replay["events_replayed"], 1,
        "only the archive's event: {replay}"
    );

    run(
        &server,
        &[
            "update-archive",
            "--archive-name",
            "notify-only",
            "--description",
            "renamed",
        ],
    );
    assert_eq!(
        run(
            &server,
            &["describe-archive", "--archive-name", "notify-only"]
        )["Description"],
        "renamed"
    );
    run(
        &server,
        &["delete-archive", "--archive-name", "notify-only"],
    );
    refused(
        &server,
        &["describe-archive", "--archive-name", "notify-only"],
        "ResourceNotFoundException",
        "Archive notify-only does not exist.",
    );
    refused(
        &server,
        &["delete-archive", "--archive-name", "notify-only"],
        "ResourceNotFoundException",
        "Archive notify-only does not exist.",
    );
    server.stop();
}
