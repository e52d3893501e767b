//! The metrics target through the real binary: events counted into a series by
//! dimensions from the event, read back per bucket from `/v1/stats/series/{name}`,
//! totals on `/metrics` only for bounded series, kept across a restart.

use std::time::Duration;

use serde_json::{json, Value};

use super::support::*;

const RULES: &str = r#"
  - name: enrollment-stats
    event_pattern: {detail-type: [Enrolled]}
    targets:
      - id: per-model
        kind: metrics
        series: enrollments
        dimensions: {model: $.detail.model, os: $.detail.os}
        prometheus: true
        max_series: 2
      - id: per-device
        kind: metrics
        series: enrollments_by_device
        dimensions: {serial: $.detail.serial}
"#;

fn series(server: &Server, q: &str) -> (u16, Value) {
    server.get(&format!("/v1/stats/series/{q}"))
}

#[test]
fn events_are_counted_by_dimension_read_back_and_exposed_when_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let rx = receiver();
    write_config(dir.path(), &rx.url, RULES);
    let server = Server::start(dir.path());
    let entries: Vec<Value> = [
        ("C02M1", "Mac14,2"),
        ("C02M2", "Mac14,2"),
        ("C02M3", "Mac14,2"),
        ("C02M4", "Mac15,3"),
        ("C02M5", "Mac16,1"),
    ]
    .iter()
    .map(|(serial, model)| {
        json!({"Source": "mdm.test", "DetailType": "Enrolled",
               "Detail": json!({"serial": serial, "model": model, "os": "15.2"}).to_string()})
    })
    .collect();
    server.put_events(Value::Array(entries));
    let total = |server: &Server| {
        series(server, "enrollments").1["total"]
            .as_u64()
            .unwrap_or(0)
    };
    let series = |server: &Server, q: &str| {
        let (status, v) = series(server, q);
        assert_eq!(status, 200, "{v}");
        v
    };
    wait_for("five counts", Duration::from_secs(20), || {
        series(&server, "enrollments")["total"] == 5
            && series(&server, "enrollments_by_device")["total"] == 5
    });
    let got = series(&server, "enrollments?since=2h&bucket=1h");
    assert_eq!(got["dimensions"], json!(["model", "os"]));
    assert_eq!(got["buckets"], 3, "{got}");
    let rows: Vec<(Value, u64)> = got["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let n = r["counts"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(Value::as_u64)
                .sum();
            (r["dimensions"].clone(), n)
        })
        .collect();
    // Two dimension sets are kept (max_series: 2); the third is counted as overflow.
    assert_eq!(
        rows,
        [
            (json!({"_overflow": "true"}), 1),
            (json!({"model": "Mac14,2", "os": "15.2"}), 3),
            (json!({"model": "Mac15,3", "os": "15.2"}), 1),
        ],
        "{got}"
    );
    let (_, metrics) = server.get("/metrics");
    let metrics = metrics.as_str().unwrap().to_owned();
    assert!(
        metrics
            .contains(r#"fleetbus_series_total{series="enrollments",model="Mac14,2",os="15.2"} 3"#),
        "{metrics}"
    );
    assert!(metrics.contains(r#"fleetbus_series_total{series="enrollments",_overflow="true"} 1"#));
    assert!(
        !metrics.contains("enrollments_by_device"),
        "a per-device series stays off /metrics"
    );

    // Bad requests name the parameter; an unknown series lists the known ones.
    let (status, err) = self::series(&server, "nope");
    assert_eq!(status, 404);
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("(series: enrollments, enrollments_by_device)"),
        "{err}"
    );
    let (status, err) = self::series(&server, "enrollments?bucket=30m");
    assert_eq!(status, 400);
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("parameter bucket"),
        "{err}"
    );

    // Kept in the store.
    server.stop();
    let server = Server::start(dir.path());
    assert_eq!(total(&server), 5);
    server.stop();
}

#[test]
fn a_per_device_dimension_is_refused_on_metrics_with_its_place() {
    let (code, out) = validate_yaml(
        "rules:\n  - name: r\n    event_pattern: {source: [a]}\n    targets:\n      - id: m\n        kind: metrics\n        series: checkins\n        prometheus: true\n        dimensions: {device: $.detail.device.serial}\n",
    );
    assert_eq!(code, Some(2), "{out}");
    assert!(
        out.contains("rules[0].targets[0].dimensions.device")
            && out.contains("names a device (serial)")
            && out.contains("prometheus: false"),
        "{out}"
    );
    let (code, out) = validate_yaml(
        "rules:\n  - name: r\n    event_pattern: {source: [a]}\n    targets:\n      - id: m\n        kind: metrics\n        series: Bad-Name\n",
    );
    assert_eq!(code, Some(2), "{out}");
    assert!(
        out.contains("rules[0].targets[0].series") && out.contains("is not a series name"),
        "{out}"
    );
}
