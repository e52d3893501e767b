//! Delivery: retries with backoff, the dead-letter queue and redrive, a receiver's
//! `Retry-After`, exec targets emitting events and the hop limit, email over SMTP.

use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::json;

use super::support::*;
use fleetbus_test_support::smtp;

#[test]
fn retries_dead_letters_and_redrive() {
    let dir = tempfile::tempdir().unwrap();
    let rx = receiver();
    write_config(dir.path(), &rx.url, "");
    let server = Server::start(dir.path());

    // Two 503s, then success: delivered once, with a stable idempotency key.
    rx.fail_next.store(2, Ordering::SeqCst);
    let answer = server.put_events(
        json!([{"Source": "s", "DetailType": "Notify", "Detail": "{\"serial\":\"C02R\"}"}]),
    );
    let id = answer["Entries"][0]["EventId"].as_str().unwrap().to_owned();
    wait_for("retried delivery", Duration::from_secs(15), || {
        !rx.bodies.lock().unwrap().is_empty()
    });
    {
        let got = rx.bodies.lock().unwrap();
        assert_eq!(got[0].0, json!({"device": "C02R", "what": "Notify"}));
        assert_eq!(got[0].1, format!("{id}:to-api:api"));
    }
    wait_for("success outcome", Duration::from_secs(20), || {
        lines(&dir.path().join("outcomes.log"))
            .iter()
            .any(|e| e["detail"]["target"] == "api" && e["detail"]["attempts"] == 3)
    });

    // A 400 is permanent: straight to the dead-letter queue with the reason.
    rx.status.store(400, Ordering::SeqCst);
    server.put_events(
        json!([{"Source": "s", "DetailType": "Notify", "Detail": "{\"serial\":\"C02D\"}"}]),
    );
    let fleetbus = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_fleetbus"))
            .args(args)
            .args([
                "-c",
                dir.path().join("fleetbus.yaml").to_str().unwrap(),
                "--url",
                &server.base,
            ])
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    wait_for("dead letter", Duration::from_secs(10), || {
        fleetbus(&["dlq", "list"]).1.contains("permanent failure")
    });
    let (code, out, _) = fleetbus(&["dlq", "list"]);
    assert_eq!(code, Some(0));
    assert!(
        out.contains("rule to-api  target api") && out.contains("400"),
        "{out}"
    );
    let failed = lines(&dir.path().join("outcomes.log"));
    assert!(
        failed
            .iter()
            .any(|e| e["detail-type"] == "Target Delivery Failed"),
        "{failed:?}"
    );

    // Redrive once the receiver is fixed.
    rx.status.store(200, Ordering::SeqCst);
    let (code, out, err) = fleetbus(&["dlq", "redrive"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("redriven 1 job(s)"), "{out}");
    wait_for("redriven delivery", Duration::from_secs(10), || {
        rx.bodies
            .lock()
            .unwrap()
            .iter()
            .any(|(b, _)| b["device"] == "C02D")
    });
    assert!(fleetbus(&["dlq", "list"]).1.contains("empty"));
    let (code, _, err) = fleetbus(&["dlq", "redrive"]);
    assert_eq!(code, Some(2), "{err}");
    server.stop();
}

#[test]
fn a_receivers_retry_after_is_honoured() {
    let dir = tempfile::tempdir().unwrap();
    let rx = receiver();
    let extra = format!(
        r#"
  - name: impatient
    event_pattern: {{detail-type: [Hurry]}}
    targets:
      - id: short-lived
        kind: http
        url: {}/hook
        retry_policy: {{maximum_event_age: 60s}}
"#,
        rx.url
    );
    write_config(dir.path(), &rx.url, &extra);
    let server = Server::start(dir.path());

    // 429 with Retry-After: 3, then success: the second attempt waits the 3 s
    // (backoff alone would retry within 1 s).
    *rx.retry_after.lock().unwrap() = Some("3".into());
    rx.fail_next.store(1, Ordering::SeqCst);
    server.put_events(
        json!([{"Source": "s", "DetailType": "Notify", "Detail": "{\"serial\":\"C02W\"}"}]),
    );
    wait_for(
        "delivery after Retry-After",
        Duration::from_secs(20),
        || !rx.bodies.lock().unwrap().is_empty(),
    );
    let hits = rx.hits.lock().unwrap().clone();
    assert_eq!(hits.len(), 2, "{hits:?}");
    let waited = hits[1] - hits[0];
    assert!(
        waited >= Duration::from_millis(2900),
        "retried after {waited:?}"
    );
    assert!(waited < Duration::from_secs(10), "retried after {waited:?}");

    // Asked to come back after the event's maximum age: dead-lettered at once,
    // saying why, instead of an attempt that could only fail.
    *rx.retry_after.lock().unwrap() = Some("3600".into());
    rx.fail_next.store(1, Ordering::SeqCst);
    server.put_events(json!([{"Source": "s", "DetailType": "Hurry", "Detail": "{}"}]));
    wait_for("dead letter", Duration::from_secs(10), || {
        let (_, dlq) = server.get("/v1/dlq");
        dlq.to_string().contains("Retry-After")
    });
    let (_, dlq) = server.get("/v1/dlq");
    let text = dlq.to_string();
    assert!(
        text.contains(
            "the receiver asked to wait 3600s (Retry-After), past the maximum event age 60s"
        ) && text.contains("http 429"),
        "{text}"
    );
    assert_eq!(rx.hits.lock().unwrap().len(), 3);
    server.stop();
}

#[test]
fn exec_emits_events_and_the_hop_limit_stops_loops() {
    let dir = tempfile::tempdir().unwrap();
    let rx = receiver();
    let extra = r#"
  - name: run-handler
    event_pattern: {detail-type: [Run]}
    targets:
      - id: handler
        kind: exec
        command: ["/bin/sh", "-c", "cat > /dev/null; echo '{\"source\":\"handler\",\"detail-type\":\"Handled\",\"detail\":{\"by\":\"'$FLEETBUS_RULE'\"}}'; echo not-json"]
        emit_events: true
  - name: loop
    event_pattern: {detail-type: [Loop]}
    targets:
      - {id: again, kind: bus, bus: default}
"#;
    write_config(dir.path(), &rx.url, extra);
    let server = Server::start(dir.path());
    let answer = server.put_events(json!([
        {"Source": "s", "DetailType": "Run", "Detail": "{}"},
        {"Source": "s", "DetailType": "Loop", "Detail": "{}"},
    ]));
    let run_id = answer["Entries"][0]["EventId"].as_str().unwrap().to_owned();
    let log = dir.path().join("all.log");
    wait_for("handled event", Duration::from_secs(10), || {
        lines(&log).iter().any(|e| e["detail-type"] == "Handled")
    });
    let (_, timeline) = server.get(&format!(
        "/v1/events/{}",
        lines(&log)
            .iter()
            .find(|e| e["detail-type"] == "Handled")
            .unwrap()["id"]
            .as_str()
            .unwrap()
    ));
    assert_eq!(timeline["meta"]["causation_id"], run_id.as_str());
    assert_eq!(timeline["event"]["detail"]["by"], "run-handler");

    // The loop re-puts each event; hop 8 is the last accepted, then it stops.
    wait_for("loop to stop", Duration::from_secs(15), || {
        lines(&log)
            .iter()
            .filter(|e| e["detail-type"] == "Loop")
            .count()
            >= 9
    });
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(
        lines(&log)
            .iter()
            .filter(|e| e["detail-type"] == "Loop")
            .count(),
        9
    );
    server.stop();
}

/// A loop through three bus targets triples at every hop: the chain's budget stops
/// it (the hop limit alone would let 3 + 9 + ... + 3^8 events through), every event
/// of the chain counts, and the drops are one warning, not one per event.
#[test]
fn a_fan_out_loop_stops_at_the_chain_budget_with_one_warning() {
    let dir = tempfile::tempdir().unwrap();
    let rx = receiver();
    let extra = r#"
  - name: fan
    event_pattern: {detail-type: [Fan]}
    targets:
      - {id: a, kind: bus, bus: default}
      - {id: b, kind: bus, bus: default}
      - {id: c, kind: bus, bus: default}
"#;
    write_config(dir.path(), &rx.url, extra);
    edit_config(dir.path(), |c| {
        c.replace(
            "  dedup_window: 10m\n",
            "  dedup_window: 10m\n  chain_budget: 60\n",
        )
    });
    let server = Server::start(dir.path());
    let answer = server.put_events(json!([
        {"Source": "s", "DetailType": "Fan", "Detail": "{}", "Resources": ["device/C02FAN"]},
    ]));
    let root = answer["Entries"][0]["EventId"].as_str().unwrap().to_owned();
    wait_for(
        "the chain to use its budget",
        Duration::from_secs(20),
        || timeline(&server, "device/C02FAN").len() >= 60,
    );
    // Quiet now: nothing more comes of it.
    std::thread::sleep(Duration::from_millis(1500));
    let chain = timeline(&server, "device/C02FAN");
    assert_eq!(chain.len(), 60, "the root and 59 derived events");
    for e in &chain {
        let id = e["event"]["id"].as_str().unwrap();
        if id != root {
            assert_eq!(e["meta"]["root_id"], root.as_str(), "{e}");
        }
    }
    assert_eq!(
        server.log_lines("causation chain put chain_budget").len(),
        1,
        "{}",
        server.stderr.lock().unwrap()
    );
    assert!(server.log_lines("hop limit").len() <= 1);
    assert!(server
        .log_lines("derived event not put on the bus")
        .is_empty());
    let (_, metrics) = server.get("/metrics");
    let metrics = metrics.as_str().unwrap().to_owned();
    let dropped: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("fleetbus_events_chain_budget_dropped_total "))
        .and_then(|v| v.trim().parse().ok())
        .expect("the chain-budget counter is exported");
    assert!(dropped >= 1, "{metrics}");
    server.stop();
}

#[test]
fn email_over_starttls_with_a_private_ca() {
    let dir = tempfile::tempdir().unwrap();
    let rx = receiver();
    // The sink's runtime lives as long as the test.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let pki = smtp::test_pki(&["127.0.0.1"]);
    let (port, mails) = rt.block_on(smtp::start(
        smtp::Mode::StartTls(pki.acceptor),
        "250 ok\r\n",
        Some("PLAIN"),
    ));
    std::fs::write(dir.path().join("ca.pem"), &pki.ca_pem).unwrap();
    std::fs::write(dir.path().join("smtp-password"), "s3cret pass").unwrap();
    // Two targets on one sink: `mail` trusts the test CA, `stranger` only the
    // platform's roots, which do not know it.
    let target = |id: &str, ca_file: &str| {
        format!(
            r#"
      - id: {id}
        kind: email
        from: fleetbus <bot@example.com>
        to: [admin@example.com]
        subject: "fleetbus: <detail-type> <$.detail.device.serial>"
        smtp:
          host: 127.0.0.1
          port: {port}
          tls: starttls
          username: fleetbus
          password: ${{file:smtp-password}}{ca_file}"#
        )
    };
    let extra = format!(
        "  - name: mail-admins\n    event_pattern: {{detail-type: [Device Enrolled]}}\n    targets:{}{}\n",
        target("mail", "\n          ca_file: ca.pem"),
        target("stranger", ""),
    );
    write_config(dir.path(), &rx.url, &extra);
    let server = Server::start(dir.path());

    let answer = server.put_events(json!([{
        "Source": "com.example.mdm",
        "DetailType": "Device Enrolled",
        "Detail": "{\"device\":{\"serial\":\"C02MAIL\"}}",
        "Resources": ["device/C02MAIL"],
    }]));
    let id = answer["Entries"][0]["EventId"].as_str().unwrap().to_owned();

    // Delivered over TLS, authenticated with the password from the secret file.
    wait_for("the mail", Duration::from_secs(15), || {
        !mails.lock().unwrap().is_empty()
    });
    let m = mails.lock().unwrap()[0].clone();
    assert!(m.tls, "not encrypted: {m:?}");
    assert_eq!(m.auth.as_deref(), Some("fleetbus:s3cret pass"), "{m:?}");
    // EHLO in plain, STARTTLS, EHLO again over TLS.
    assert_eq!(m.ehlo, 2, "{m:?}");
    assert!(m.from.contains("bot@example.com"), "{m:?}");
    assert_eq!(m.rcpt, vec!["<admin@example.com>"], "{m:?}");
    for expected in [
        "Subject: fleetbus: Device Enrolled C02MAIL".to_owned(),
        // The idempotency key `<event id>:<rule>:<target>`, made a Message-ID.
        format!("Message-ID: <{id}.mail-admins.mail@fleetbus>"),
        // The body is the event, pretty-printed.
        format!("\"id\": \"{id}\""),
        "\"serial\": \"C02MAIL\"".to_owned(),
    ] {
        assert!(
            m.data.contains(&expected),
            "{expected:?} not in\n{}",
            m.data
        );
    }

    let outcomes = dir.path().join("outcomes.log");
    wait_for("the success outcome", Duration::from_secs(10), || {
        lines(&outcomes).iter().any(|e| {
            e["detail-type"] == "Target Delivery Succeeded" && e["detail"]["target"] == "mail"
        })
    });
    let succeeded = lines(&outcomes)
        .into_iter()
        .find(|e| {
            e["detail-type"] == "Target Delivery Succeeded" && e["detail"]["target"] == "mail"
        })
        .unwrap();
    assert_eq!(succeeded["detail"]["rule"], "mail-admins", "{succeeded}");
    assert_eq!(succeeded["detail"]["event-id"], id.as_str(), "{succeeded}");
    assert_eq!(succeeded["detail"]["status"], "smtp 250", "{succeeded}");
    assert_eq!(succeeded["detail"]["attempts"], 1, "{succeeded}");

    // Without ca_file the certificate is refused: a permanent failure, so
    // dead-lettered on the first attempt (the default retry policy would
    // otherwise keep trying for a day), saying why.
    wait_for("the dead letter", Duration::from_secs(15), || {
        server.get("/v1/dlq").1.to_string().contains("stranger")
    });
    let (status, dlq) = server.get("/v1/dlq");
    assert_eq!(status, 200, "{dlq}");
    let entries = dlq["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{dlq}");
    let dead = &entries[0];
    assert_eq!(
        (
            dead["event_id"].as_str(),
            dead["rule"].as_str(),
            dead["target"].as_str()
        ),
        (Some(id.as_str()), Some("mail-admins"), Some("stranger")),
        "{dead}"
    );
    assert_eq!(dead["attempts"], 1, "{dead}");
    let error = dead["error"].as_str().unwrap();
    assert!(
        error.contains(&format!(
            "the TLS certificate of 127.0.0.1:{port} was refused"
        )) && error.contains("UnknownIssuer")
            && error.contains("set smtp.ca_file"),
        "{error}"
    );
    wait_for("the failure outcome", Duration::from_secs(10), || {
        lines(&outcomes).iter().any(|e| {
            e["detail-type"] == "Target Delivery Failed" && e["detail"]["target"] == "stranger"
        })
    });
    // Nothing reached the sink for it: still the one message.
    assert_eq!(mails.lock().unwrap().len(), 1);
    server.stop();
}

/// Text from the event reaches Slack escaped as Slack documents (`&`, `<`, `>`),
/// in the whole-event summary and in every value an input transformer takes from
/// the event; the template's own markup (a link) stays.
#[test]
fn slack_gets_event_text_escaped_and_the_templates_markup_kept() {
    let dir = tempfile::tempdir().unwrap();
    let rx = receiver();
    std::fs::write(dir.path().join("slack-url"), format!("{}/hook", rx.url)).unwrap();
    let extra = r#"
  - name: named
    event_pattern: {detail-type: [Named <!channel>]}
    targets:
      - {id: summary, kind: slack, url: "${file:slack-url}"}
      - id: templated
        kind: slack
        url: "${file:slack-url}"
        input_transformer:
          input_paths_map: {name: $.detail.name}
          input_template: '{"text": "Mac <name> enrolled, see <https://mdm.example.com|the MDM>"}'
"#;
    write_config(dir.path(), &rx.url, extra);
    let server = Server::start(dir.path());
    server.put_events(json!([{
        "Source": "s", "DetailType": "Named <!channel>",
        "Detail": "{\"name\": \"<!channel> & <@U1>\"}", "Resources": ["device/C02<X>"]
    }]));
    wait_for("both Slack messages", Duration::from_secs(15), || {
        rx.bodies.lock().unwrap().len() >= 2
    });
    let mut texts: Vec<String> = rx
        .bodies
        .lock()
        .unwrap()
        .iter()
        .map(|(b, _)| b["text"].as_str().unwrap().to_owned())
        .collect();
    texts.sort();
    assert_eq!(
        texts,
        [
            "Mac &lt;!channel&gt; &amp; &lt;@U1&gt; enrolled, see <https://mdm.example.com|the MDM>",
            "Named &lt;!channel&gt; from s (device/C02&lt;X&gt;)",
        ]
    );
    server.stop();
}
