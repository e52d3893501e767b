//! `kind: fleet`: Fleet (fleetdm.com) automation webhooks, as Fleet's server posts
//! them (Policies > Manage automations, Software > Vulnerabilities > Manage
//! automations, Settings > Integrations > Host status webhook).
//!
//! - Failing policies: `{"timestamp", "policy": {...}, "hosts": [{"id", "hostname",
//!   "display_name", "url"}]}` becomes one `Fleet Policy Failing` event per host.
//! - Vulnerabilities: `{"timestamp", "vulnerability": {"cve", "details_link",
//!   "hosts_affected": [...]}}` (with `epss_probability`, `cvss_score`,
//!   `cisa_known_exploit` on Fleet Premium) becomes one `Fleet Vulnerability
//!   Detected` event per host.
//! - Host status: `{"text", "data": {"unseen_hosts", "total_hosts", "days_unseen",
//!   "host_ids", "team_id"?}}` becomes one `Fleet Hosts Unseen` event.
//!
//! Fleet's hosts carry no serial number: a host's resource is `device/<serial>` when
//! the asset store knows it (a device tagged `fleet:<host id>`, or named as the
//! host's `display_name` or `hostname`), otherwise `host/fleet-<id>`. Ids derive
//! from what the event says (policy or CVE, host, Fleet's timestamp), so a webhook
//! Fleet sends again is stored once. Fleet has no authentication option of its own:
//! the token goes in the URL, `?token=<token>` (or Basic userinfo).

use std::collections::HashMap;

use fleetbus_event::{Defaults, Event};
use serde_json::{json, Map, Value};

use super::SourceError;

/// The source of the events Fleet's webhooks make.
pub const SOURCE: &str = "fleetdm";

/// Namespace of the ids derived from what an event says (UUID v5).
const IDS: uuid::Uuid = uuid::Uuid::from_u128(0x6f1e_22c9_8b3a_4d57_a0e4_5c91_d7b2_0e38);

/// Hosts one webhook may name; Fleet batches (`host_batch_size`) far below this.
const MAX_HOSTS: usize = 10_000;

/// `kind: fleet`.
#[derive(Debug)]
pub struct Fleet;

impl super::Source for Fleet {
    fn handle<'a>(
        &'a self,
        state: &'a crate::AppState,
        source: &'a fleetbus_config::Source,
        request: super::Request<'a>,
    ) -> super::HandleFuture<'a> {
        Box::pin(async move {
            let parsed = parse(request.body)?;
            let known = match (&state.assets, parsed.needs_lookup()) {
                (Some(assets), true) => assets.run("fleet hosts", known_hosts).await?,
                _ => Known::default(),
            };
            let events = parsed.events(&known, &state.engine.defaults())?;
            Ok(super::ingested(source, events))
        })
    }
}

/// The asset store's devices by what a Fleet host may be known as.
#[derive(Debug, Default)]
struct Known {
    /// Fleet host id (a `fleet:<id>` tag) -> serial.
    by_id: HashMap<u64, String>,
    /// Lowercased device name -> serial.
    by_name: HashMap<String, String>,
}

fn known_hosts(store: &fleetbus_assets::AssetStore) -> Result<Known, SourceError> {
    let mut known = Known::default();
    for d in store.list_devices(&fleetbus_assets::DeviceFilter::default())? {
        for tag in &d.tags {
            if let Some(id) = tag.strip_prefix("fleet:").and_then(|i| i.parse().ok()) {
                known.by_id.insert(id, d.serial.clone());
            }
        }
        if let Some(name) = &d.name {
            known.by_name.insert(name.to_lowercase(), d.serial.clone());
        }
    }
    Ok(known)
}

impl Known {
    /// The resource of a Fleet host.
    fn resource(&self, host: &Host) -> String {
        let serial = self.by_id.get(&host.id).or_else(|| {
            [&host.display_name, &host.hostname]
                .into_iter()
                .flatten()
                .find_map(|n| self.by_name.get(&n.to_lowercase()))
        });
        match serial {
            Some(s) => format!("device/{s}"),
            None => format!("host/fleet-{}", host.id),
        }
    }
}

/// A host as Fleet names it in a webhook.
#[derive(Debug, Clone)]
struct Host {
    id: u64,
    hostname: Option<String>,
    display_name: Option<String>,
    /// The host as sent, for `detail.host`.
    raw: Value,
}

/// What one webhook body says.
#[derive(Debug)]
enum Parsed {
    Policy {
        timestamp: String,
        policy: Value,
        hosts: Vec<Host>,
    },
    Vulnerability {
        timestamp: String,
        /// The vulnerability without `hosts_affected`.
        vulnerability: Map<String, Value>,
        hosts: Vec<Host>,
    },
    HostStatus {
        text: String,
        data: Value,
    },
}

fn invalid(m: impl Into<String>) -> SourceError {
    SourceError::Invalid(m.into())
}

/// Reads a body: which webhook it is and its fields, or a 400 naming the field.
fn parse(body: &[u8]) -> Result<Parsed, SourceError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| invalid(format!("body is not valid JSON: {e}")))?;
    let Value::Object(obj) = value else {
        return Err(invalid("body: expected a JSON object (a Fleet webhook)"));
    };
    let timestamp = || -> Result<String, SourceError> {
        match obj.get("timestamp") {
            Some(Value::String(t)) => Ok(t.clone()),
            Some(_) => Err(invalid("timestamp: expected a string")),
            None => Err(invalid("timestamp: missing")),
        }
    };
    if let Some(policy) = obj.get("policy") {
        let Value::Object(p) = policy else {
            return Err(invalid("policy: expected an object"));
        };
        match p.get("id") {
            Some(v) if v.is_u64() => {}
            Some(_) => return Err(invalid("policy.id: expected a number")),
            None => return Err(invalid("policy.id: missing")),
        }
        let hosts = hosts(obj.get("hosts"), "hosts")?;
        return Ok(Parsed::Policy {
            timestamp: timestamp()?,
            policy: policy.clone(),
            hosts,
        });
    }
    if let Some(vuln) = obj.get("vulnerability") {
        let Value::Object(v) = vuln else {
            return Err(invalid("vulnerability: expected an object"));
        };
        match v.get("cve") {
            Some(Value::String(c)) if !c.is_empty() => {}
            Some(_) => return Err(invalid("vulnerability.cve: expected a CVE id")),
            None => return Err(invalid("vulnerability.cve: missing")),
        }
        let hosts = hosts(v.get("hosts_affected"), "vulnerability.hosts_affected")?;
        let mut vulnerability = v.clone();
        vulnerability.remove("hosts_affected");
        return Ok(Parsed::Vulnerability {
            timestamp: timestamp()?,
            vulnerability,
            hosts,
        });
    }
    if let Some(data) = obj.get("data") {
        let Value::Object(d) = data else {
            return Err(invalid("data: expected an object"));
        };
        for field in ["unseen_hosts", "total_hosts", "days_unseen"] {
            match d.get(field) {
                Some(v) if v.is_u64() => {}
                Some(_) => return Err(invalid(format!("data.{field}: expected a number"))),
                None => return Err(invalid(format!("data.{field}: missing"))),
            }
        }
        if !d
            .get("host_ids")
            .is_some_and(|v| v.is_array() || v.is_null())
        {
            return Err(invalid("data.host_ids: expected an array"));
        }
        let text = match obj.get("text") {
            Some(Value::String(t)) => t.clone(),
            _ => return Err(invalid("text: missing (Fleet's host status message)")),
        };
        return Ok(Parsed::HostStatus {
            text,
            data: data.clone(),
        });
    }
    Err(invalid(
        "body: not a Fleet webhook (expected a failing policy's \"policy\" and \"hosts\", a \"vulnerability\", or a host status \"data\")",
    ))
}

fn hosts(v: Option<&Value>, at: &str) -> Result<Vec<Host>, SourceError> {
    let items = match v {
        Some(Value::Array(items)) => items,
        Some(_) => return Err(invalid(format!("{at}: expected an array"))),
        None => return Err(invalid(format!("{at}: missing"))),
    };
    if items.is_empty() {
        return Err(invalid(format!(
            "{at}: empty (a webhook names at least one host)"
        )));
    }
    if items.len() > MAX_HOSTS {
        return Err(invalid(format!(
            "{at}: {} hosts (at most {MAX_HOSTS}; set Fleet's host_batch_size)",
            items.len()
        )));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let id = h
                .get("id")
                .and_then(Value::as_u64)
                .ok_or_else(|| invalid(format!("{at}[{i}].id: missing or not a number")))?;
            let text = |k: &str| -> Result<Option<String>, SourceError> {
                match h.get(k) {
                    None | Some(Value::Null) => Ok(None),
                    Some(Value::String(s)) if s.is_empty() => Ok(None),
                    Some(Value::String(s)) => Ok(Some(s.clone())),
                    Some(_) => Err(invalid(format!("{at}[{i}].{k}: expected a string"))),
                }
            };
            Ok(Host {
                id,
                hostname: text("hostname")?,
                display_name: text("display_name")?,
                raw: h.clone(),
            })
        })
        .collect()
}

impl Parsed {
    /// True when the events name hosts the asset store may know.
    fn needs_lookup(&self) -> bool {
        !matches!(self, Parsed::HostStatus { .. })
    }

    /// The events, one per host (or one for a host status alert).
    fn events(&self, known: &Known, defaults: &Defaults) -> Result<Vec<Event>, SourceError> {
        let build = |detail_type: &str,
                     id: String,
                     time: Option<&str>,
                     resources: Vec<String>,
                     detail: Value| {
            let mut envelope = json!({
                "id": uuid::Uuid::new_v5(&IDS, id.as_bytes()).to_string(),
                "source": SOURCE,
                "detail-type": detail_type,
                "resources": resources,
                "detail": detail,
            });
            // Fleet's timestamp is RFC 3339 (Go's time.Time); a zero or odd one
            // leaves the receipt time.
            if let Some(t) = time.filter(|t| {
                time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
                    .is_ok_and(|d| d.year() >= 2000)
            }) {
                envelope["time"] = json!(t);
            }
            Event::from_value(envelope, defaults)
        };
        // One event per host: `detail` is `base` with the host and its resource.
        let per_host = |detail_type: &str,
                        key: String,
                        timestamp: &str,
                        hosts: &[Host],
                        at_hosts: &str,
                        base: &Map<String, Value>| {
            hosts
                .iter()
                .enumerate()
                .map(|(i, h)| {
                    let resource = known.resource(h);
                    let mut detail = base.clone();
                    detail.insert("timestamp".into(), json!(timestamp));
                    detail.insert("host".into(), h.raw.clone());
                    detail.insert("resource".into(), json!(resource));
                    build(
                        detail_type,
                        format!("{key}/{}/{timestamp}", h.id),
                        Some(timestamp),
                        vec![resource],
                        Value::Object(detail),
                    )
                    .map_err(|e| at(format!("{at_hosts}[{i}]"), e))
                })
                .collect::<Result<Vec<_>, _>>()
        };
        match self {
            Parsed::Policy {
                timestamp,
                policy,
                hosts,
            } => {
                let mut base = Map::new();
                base.insert("policy".into(), policy.clone());
                per_host(
                    "Fleet Policy Failing",
                    format!("policy/{}", policy["id"]),
                    timestamp,
                    hosts,
                    "hosts",
                    &base,
                )
            }
            Parsed::Vulnerability {
                timestamp,
                vulnerability,
                hosts,
            } => per_host(
                "Fleet Vulnerability Detected",
                format!("cve/{}", vulnerability["cve"]),
                timestamp,
                hosts,
                "vulnerability.hosts_affected",
                vulnerability,
            ),
            Parsed::HostStatus { text, data } => {
                let mut detail = data.clone();
                detail["text"] = json!(text);
                let id = format!("status/{}", serde_json::to_string(data).unwrap_or_default());
                Ok(vec![build("Fleet Hosts Unseen", id, None, vec![], detail)
                    .map_err(|e| at("data".into(), e))?])
            }
        }
    }
}

fn at(at: String, error: fleetbus_event::EventError) -> SourceError {
    SourceError::Event { at, error }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A failing-policy webhook as Fleet's server sends it (fields as in Fleet's own
    /// webhook tests).
    const POLICY: &str = r#"{
        "timestamp": "2026-12-01T09:30:00.123456789Z",
        "policy": {
            "id": 1, "name": "Is Gatekeeper enabled?", "query": "SELECT 1 FROM gatekeeper WHERE assessments_enabled = 1;",
            "description": "Checks if gatekeeper is enabled on macOS devices.", "author_id": 1,
            "author_name": "Alice", "author_email": "alice@example.com", "team_id": null,
            "resolution": "Turn on Gatekeeper.", "platform": "darwin",
            "created_at": "0001-01-01T00:00:00Z", "updated_at": "0001-01-01T00:00:00Z",
            "passing_host_count": 2000, "failing_host_count": 2, "host_count_updated_at": null,
            "critical": true, "calendar_events_enabled": false, "conditional_access_enabled": false
        },
        "hosts": [
            {"id": 1, "hostname": "host1.example", "display_name": "Ada's MacBook", "url": "https://fleet.example.com/hosts/1"},
            {"id": 2, "hostname": "host2.example", "display_name": "display2", "url": "https://fleet.example.com/hosts/2"}
        ]
    }"#;

    fn known() -> Known {
        let mut k = Known::default();
        k.by_name.insert("ada's macbook".into(), "C02ADA".into());
        k.by_id.insert(7, "C02SEVEN".into());
        k
    }

    #[test]
    fn a_failing_policy_is_one_event_per_host_on_the_known_device_or_the_fleet_host() {
        let events = parse(POLICY.as_bytes())
            .unwrap()
            .events(&known(), &Defaults::default())
            .unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].detail_type, "Fleet Policy Failing");
        assert_eq!(events[0].source, "fleetdm");
        assert_eq!(events[0].resources, ["device/C02ADA"]);
        assert_eq!(events[1].resources, ["host/fleet-2"]);
        assert_eq!(events[0].detail["policy"]["name"], "Is Gatekeeper enabled?");
        assert_eq!(events[1].detail["host"]["hostname"], "host2.example");
        assert_eq!(events[0].time_rfc3339(), "2026-12-01T09:30:00.123456789Z");
        // Sent again, the same ids: stored once.
        let again = parse(POLICY.as_bytes())
            .unwrap()
            .events(&known(), &Defaults::default())
            .unwrap();
        assert_eq!(events[0].id, again[0].id);
        assert_ne!(events[0].id, events[1].id);
    }

    #[test]
    fn a_vulnerability_is_one_event_per_affected_host() {
        let body = r#"{"timestamp":"2026-12-01T10:00:00Z","vulnerability":{"cve":"CVE-2014-9471","details_link":"https://nvd.nist.gov/vuln/detail/CVE-2014-9471","epss_probability":0.7,"cvss_score":9.8,"cisa_known_exploit":true,"hosts_affected":[{"id":7,"hostname":"h7","url":"https://fleet.example.com/hosts/7"},{"id":4,"hostname":"h4","url":"https://fleet.example.com/hosts/4"}]}}"#;
        let events = parse(body.as_bytes())
            .unwrap()
            .events(&known(), &Defaults::default())
            .unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].detail_type, "Fleet Vulnerability Detected");
        assert_eq!(events[0].resources, ["device/C02SEVEN"]);
        assert_eq!(events[1].resources, ["host/fleet-4"]);
        assert_eq!(events[0].detail["cve"], "CVE-2014-9471");
        assert_eq!(events[0].detail["cvss_score"], 9.8);
        assert!(events[0].detail.get("hosts_affected").is_none());
    }

    #[test]
    fn a_host_status_alert_is_one_event() {
        let body = r#"{"text":"More than 20.00% of your hosts have not checked into Fleet for more than 3 days. You've been sent this message because the Host status webhook is enabled in your Fleet instance.","data":{"unseen_hosts":3,"total_hosts":10,"days_unseen":3,"host_ids":[1,2,3],"team_id":2}}"#;
        let parsed = parse(body.as_bytes()).unwrap();
        assert!(!parsed.needs_lookup());
        let events = parsed
            .events(&Known::default(), &Defaults::default())
            .unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].detail_type, "Fleet Hosts Unseen");
        assert_eq!(events[0].detail["unseen_hosts"], 3);
        assert_eq!(events[0].detail["team_id"], 2);
        assert!(events[0].detail["text"]
            .as_str()
            .unwrap()
            .starts_with("More than 20.00%"));
    }

    #[test]
    fn bad_bodies_name_the_field() {
        let cases = [
            ("[]", "body: expected a JSON object"),
            ("{}", "not a Fleet webhook"),
            (
                r#"{"policy":{"id":1},"hosts":[],"timestamp":"x"}"#,
                "hosts: empty",
            ),
            (
                r#"{"policy":{"id":"1"},"hosts":[{"id":1}],"timestamp":"x"}"#,
                "policy.id: expected a number",
            ),
            (
                r#"{"policy":{"id":1},"hosts":[{"hostname":"a"}],"timestamp":"x"}"#,
                "hosts[0].id: missing",
            ),
            (
                r#"{"policy":{"id":1},"hosts":[{"id":1}]}"#,
                "timestamp: missing",
            ),
            (
                r#"{"vulnerability":{"hosts_affected":[{"id":1}]},"timestamp":"x"}"#,
                "vulnerability.cve: missing",
            ),
            (
                r#"{"text":"t","data":{"unseen_hosts":1,"total_hosts":"2","days_unseen":3,"host_ids":[]}}"#,
                "data.total_hosts: expected a number",
            ),
        ];
        for (body, want) in cases {
            let err = parse(body.as_bytes()).unwrap_err().to_string();
            assert!(err.contains(want), "{body}: {err}");
        }
    }

    proptest! {
        #[test]
        fn no_body_panics(body in proptest::collection::vec(any::<u8>(), 0..512)) {
            if let Ok(p) = parse(&body) {
                let _ = p.events(&Known::default(), &Defaults::default());
            }
        }

        #[test]
        fn no_json_shape_panics(id in any::<i64>(), host in any::<i64>(), ts in ".{0,30}", name in ".{0,20}") {
            let body = json!({"timestamp": ts, "policy": {"id": id}, "hosts": [{"id": host, "hostname": name}]});
            if let Ok(p) = parse(body.to_string().as_bytes()) {
                let _ = p.events(&known(), &Defaults::default());
            }
        }
    }
}
