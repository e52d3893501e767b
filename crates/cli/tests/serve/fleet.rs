//! `kind: fleet` through the real binary: Fleet's failing-policy, vulnerability and
//! host-status webhooks in the shape Fleet's server posts them (field names from
//! Fleet's own webhook tests, values made up here), the token in the URL as Fleet
//! needs it, a redelivery and malformed bodies.

use serde_json::{json, Value};

use super::support::*;

fn failing_policy(timestamp: &str) -> Value {
    json!({
        "timestamp": timestamp,
        "policy": {
            "id": 12, "name": "FileVault enabled", "query": "SELECT 1 FROM disk_encryption WHERE encrypted = 1;",
            "description": "Checks FileVault on macOS.", "author_id": 1, "author_name": "Alice",
            "author_email": "alice@example.com", "team_id": null, "resolution": "Turn on FileVault.",
            "platform": "darwin", "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z",
            "passing_host_count": 140, "failing_host_count": 2, "host_count_updated_at": null,
            "critical": true, "calendar_events_enabled": false, "conditional_access_enabled": false
        },
        "hosts": [
            {"id": 31, "hostname": "adas-macbook.local", "display_name": "Ada's MacBook", "url": "https://fleet.example.com/hosts/31"},
            {"id": 32, "hostname": "lab-07.local", "display_name": "lab-07", "url": "https://fleet.example.com/hosts/32"}
        ]
    })
}

fn post(server: &Server, query: &str, body: &Value) -> (u16, Value) {
    server.post(
        &format!("/v1/sources/fleet{query}"),
        None,
        "application/json",
        body.to_string().as_bytes(),
        &[],
    )
}

#[test]
fn a_failing_policy_lands_on_each_host_once_and_known_hosts_on_their_mac() {
    let (_dir, _rx, server) = start();
    put_device(&server, "C02FLEETADA1", json!({"name": "Ada's MacBook"}));
    let body = failing_policy("2026-12-03T08:00:00.5Z");
    let (status, answer) = post(&server, &format!("?token={SOURCE_TOKEN}"), &body);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["FailedEntryCount"], 0, "{answer}");
    let ada = received(&server, "device/C02FLEETADA1");
    assert_eq!(ada.len(), 1, "{ada:?}");
    let e = &ada[0]["event"];
    assert_eq!(e["source"], "fleetdm");
    assert_eq!(e["detail-type"], "Fleet Policy Failing");
    assert_eq!(e["time"], "2026-12-03T08:00:00.5Z");
    assert_eq!(e["detail"]["policy"]["name"], "FileVault enabled");
    assert_eq!(e["detail"]["host"]["id"], 31);
    // A host the asset store does not know is still on a timeline of its own.
    let lab = received(&server, "host/fleet-32");
    assert_eq!(lab.len(), 1, "{lab:?}");
    // Fleet sends the same webhook again: nothing new is stored.
    let (status, again) = post(&server, &format!("?token={SOURCE_TOKEN}"), &body);
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["Entries"][0]["Duplicate"], true, "{again}");
    assert_eq!(received(&server, "device/C02FLEETADA1").len(), 1);
    // The next day's run is a new event.
    post(
        &server,
        &format!("?token={SOURCE_TOKEN}"),
        &failing_policy("2026-12-04T08:00:00Z"),
    );
    assert_eq!(received(&server, "device/C02FLEETADA1").len(), 2);
    server.stop();
}

#[test]
fn vulnerabilities_and_host_status_arrive_and_a_tagged_host_is_found_by_its_fleet_id() {
    let (_dir, _rx, server) = start();
    put_device(
        &server,
        "C02FLEET0044",
        json!({"name": "someone-else", "tags": ["fleet:44"]}),
    );
    let vuln = json!({
        "timestamp": "2026-12-03T09:00:00Z",
        "vulnerability": {
            "cve": "CVE-2026-1234",
            "details_link": "https://nvd.nist.gov/vuln/detail/CVE-2026-1234",
            "epss_probability": 0.42, "cvss_score": 8.1, "cisa_known_exploit": false,
            "hosts_affected": [{"id": 44, "hostname": "h44", "url": "https://fleet.example.com/hosts/44"}]
        }
    });
    let (status, answer) = post(&server, &format!("?token={SOURCE_TOKEN}"), &vuln);
    assert_eq!(status, 200, "{answer}");
    let got = received(&server, "device/C02FLEET0044");
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(
        got[0]["event"]["detail-type"],
        "Fleet Vulnerability Detected"
    );
    assert_eq!(got[0]["event"]["detail"]["cve"], "CVE-2026-1234");
    assert_eq!(got[0]["event"]["detail"]["cvss_score"], 8.1);

    let status_alert = json!({
        "text": "More than 30.00% of your hosts have not checked into Fleet for more than 7 days. You've been sent this message because the Host status webhook is enabled in your Fleet instance.",
        "data": {"unseen_hosts": 3, "total_hosts": 10, "days_unseen": 7, "host_ids": [31, 32, 44]}
    });
    // Basic userinfo works as well as ?token=.
    use base64::Engine as _;
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("fleet:{SOURCE_TOKEN}"))
    );
    let (status, answer) = server.post(
        "/v1/sources/fleet",
        None,
        "application/json",
        status_alert.to_string().as_bytes(),
        &[("Authorization", basic.as_str())],
    );
    assert_eq!(status, 200, "{answer}");
    let id = answer["Entries"][0]["EventId"].as_str().unwrap();
    let (_, stored) = server.get(&format!("/v1/events/{id}"));
    assert_eq!(stored["event"]["detail-type"], "Fleet Hosts Unseen");
    assert_eq!(stored["event"]["detail"]["host_ids"], json!([31, 32, 44]));
    server.stop();
}

#[test]
fn a_wrong_token_or_a_malformed_body_is_refused_and_nothing_is_stored() {
    let (_dir, _rx, server) = start();
    let body = failing_policy("2026-12-03T08:00:00Z");
    let (status, answer) = post(&server, "?token=wrong", &body);
    assert_eq!(status, 401, "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("?token=<token>"),
        "the 401 says where Fleet's token goes: {answer}"
    );
    assert_eq!(post(&server, "", &body).0, 401);
    let mut broken = body.clone();
    broken["hosts"][1]["id"] = json!("thirty-two");
    let (status, answer) = post(&server, &format!("?token={SOURCE_TOKEN}"), &broken);
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("hosts[1].id"),
        "{answer}"
    );
    let (status, answer) = post(
        &server,
        &format!("?token={SOURCE_TOKEN}"),
        &json!({"hello": 1}),
    );
    assert_eq!(status, 400, "{answer}");
    assert!(
        received(&server, "host/fleet-31").is_empty(),
        "a refused body stores nothing"
    );
    server.stop();
}
