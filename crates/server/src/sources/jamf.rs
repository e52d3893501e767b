//! `kind: jamf`: Jamf Pro webhooks (Settings > Global > Webhooks, content type JSON).
//!
//! Jamf posts `{"webhook": {"id", "name", "webhookEvent", "eventTimestamp"},
//! "event": {...}}`, one event per request. Each becomes an event with source
//! `jamf.pro`, detail-type the `webhookEvent`, time the `eventTimestamp` (epoch
//! milliseconds), the body as it came for `detail`, and resources
//! `device/<serial>` wherever the event carries a serial number (at its top level
//! or under `computer`) and `user/<email or username>` where it names a user.
//!
//! Jamf sends no event id and its `webhook.id` is the same for every delivery of
//! one webhook, so the id is derived from the body: a redelivered body is a
//! duplicate, two different events never are. An unknown `webhookEvent`, or an
//! event without the fields its `webhookEvent` always carries, is refused whole
//! (400 naming the field), so a misconfigured sender is noticed at once.

use fleetbus_event::{Defaults, Event};
use serde_json::{json, Map, Value};

use super::SourceError;

/// The source of the events Jamf's webhooks make.
pub const SOURCE: &str = "jamf.pro";

/// Namespace of the ids derived from bodies (UUID v5).
const IDS: uuid::Uuid = uuid::Uuid::from_u128(0x3b0c_5e7a_12d4_4f8e_9a61_c2f0_7d18_b544);

/// What a field must hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Str,
    Int,
    Bool,
    Arr,
}

impl Kind {
    fn fits(self, v: &Value) -> bool {
        match self {
            Kind::Str => v.is_string(),
            Kind::Int => v.is_i64() || v.is_u64(),
            Kind::Bool => v.is_boolean(),
            Kind::Arr => v.is_array(),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Kind::Str => "a string",
            Kind::Int => "an integer",
            Kind::Bool => "a boolean",
            Kind::Arr => "an array",
        }
    }
}

use Kind::*;

/// What a `webhookEvent`'s event always holds, beyond being an object.
#[derive(Debug)]
enum Shape {
    /// A device's serial number, at `event.serialNumber` (the flat shape of most
    /// device events) or `event.computer.serialNumber` (check-ins and policy runs,
    /// which nest the computer), plus these fields below `event`.
    Device(&'static [(&'static str, Kind)]),
    /// These fields below `event`.
    Fields(&'static [(&'static str, Kind)]),
}

use Shape::*;

const STARTUP: &[(&str, Kind)] = &[
    ("hostAddress", Str),
    ("institution", Str),
    ("isClusterMaster", Bool),
    ("jssUrl", Str),
];
const DEVICE_GROUP: &[(&str, Kind)] = &[
    ("jssid", Int),
    ("name", Str),
    ("groupAddedDevicesIds", Arr),
    ("groupRemovedDevicesIds", Arr),
];

/// Every documented `webhookEvent` with what its event always has (Jamf's
/// documented payloads). For ComputerPatchPolicyCompleted, PatchSoftwareTitleUpdated
/// and SCEPChallenge only an event object is required: their documented field
/// lists were not at hand when this table was written.
static EVENTS: &[(&str, Shape)] = &[
    ("ComputerAdded", Device(&[])),
    ("ComputerCheckIn", Device(&[])),
    ("ComputerInventoryCompleted", Device(&[])),
    (
        "ComputerPolicyFinished",
        Device(&[("policyId", Int), ("successful", Bool)]),
    ),
    ("ComputerPushCapabilityChanged", Device(&[])),
    ("ComputerPatchPolicyCompleted", Fields(&[])),
    (
        "DeviceAddedToDEP",
        Device(&[("deviceEnrollmentProgramInstanceId", Int)]),
    ),
    ("JSSShutdown", Fields(STARTUP)),
    ("JSSStartup", Fields(STARTUP)),
    ("MobileDeviceCheckIn", Device(&[])),
    ("MobileDeviceCommandCompleted", Device(&[])),
    ("MobileDeviceEnrolled", Device(&[])),
    ("MobileDeviceUnEnrolled", Device(&[])),
    ("MobileDevicePushSent", Device(&[])),
    ("PatchSoftwareTitleUpdated", Fields(&[])),
    ("PushSent", Fields(&[("type", Str)])),
    (
        "RestAPIOperation",
        Fields(&[
            ("authorizedUsername", Str),
            ("objectTypeName", Str),
            ("operationSuccessful", Bool),
            ("restAPIOperationType", Str),
        ]),
    ),
    ("SCEPChallenge", Fields(&[])),
    ("SmartGroupComputerMembershipChange", Fields(DEVICE_GROUP)),
    (
        "SmartGroupMobileDeviceMembershipChange",
        Fields(DEVICE_GROUP),
    ),
    (
        "SmartGroupUserMembershipChange",
        Fields(&[
            ("jssid", Int),
            ("name", Str),
            ("groupAddedUserIds", Arr),
            ("groupRemovedUserIds", Arr),
        ]),
    ),
];

/// `kind: jamf`.
#[derive(Debug)]
pub struct Jamf;

impl super::Source for Jamf {
    fn handle<'a>(
        &'a self,
        state: &'a crate::AppState,
        source: &'a fleetbus_config::Source,
        request: super::Request<'a>,
    ) -> super::HandleFuture<'a> {
        let event = process(request.body, &state.engine.defaults());
        super::ready(source, event.map(|e| vec![e]))
    }
}

/// Turns one webhook body into its event.
pub fn process(body: &[u8], defaults: &Defaults) -> Result<Event, SourceError> {
    let invalid = |m: String| SourceError::Invalid(m);
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        invalid(format!(
            "body is not valid JSON: {e} (Jamf webhooks must use content type JSON)"
        ))
    })?;
    let Value::Object(top) = &value else {
        return Err(invalid(
            "body must be a JSON object with webhook and event".into(),
        ));
    };
    let webhook = top
        .get("webhook")
        .and_then(Value::as_object)
        .ok_or_else(|| invalid("webhook: missing (expected an object with webhookEvent)".into()))?;
    let name = match webhook.get("webhookEvent") {
        Some(Value::String(s)) => s.as_str(),
        Some(_) => return Err(invalid("webhook.webhookEvent: must be a string".into())),
        None => return Err(invalid("webhook.webhookEvent: missing".into())),
    };
    let Some((_, shape)) = EVENTS.iter().find(|(n, _)| *n == name) else {
        return Err(invalid(format!(
            "webhook.webhookEvent: unknown event {name:?} (expected one of {})",
            EVENTS
                .iter()
                .map(|(n, _)| *n)
                .collect::<Vec<_>>()
                .join(", ")
        )));
    };
    let event = top
        .get("event")
        .and_then(Value::as_object)
        .ok_or_else(|| invalid("event: missing (expected an object)".into()))?;
    let required = match shape {
        Device(more) => {
            let serial = event
                .get("serialNumber")
                .or_else(|| lookup(event, "computer.serialNumber"));
            match serial {
                Some(Value::String(_)) => {}
                None | Some(Value::Null) => {
                    return Err(invalid(format!(
                        "event.serialNumber: missing ({name} events carry the computer's serial number at event.serialNumber or event.computer.serialNumber)"
                    )))
                }
                Some(v) => {
                    return Err(invalid(format!("event.serialNumber: must be a string, found {v}")))
                }
            }
            more
        }
        Fields(fields) => fields,
    };
    for (path, kind) in *required {
        match lookup(event, path) {
            None | Some(Value::Null) => {
                return Err(invalid(format!(
                    "event.{path}: missing ({name} events carry it)"
                )))
            }
            Some(v) if !kind.fits(v) => {
                return Err(invalid(format!(
                    "event.{path}: must be {}, found {v}",
                    kind.name()
                )))
            }
            Some(_) => {}
        }
    }
    let time = match webhook.get("eventTimestamp") {
        None => None,
        Some(Value::Number(n)) => {
            let ms = n.as_i64().ok_or_else(|| {
                invalid(format!(
                    "webhook.eventTimestamp: {n} is not epoch milliseconds"
                ))
            })?;
            let at = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
                .map_err(|_| invalid(format!("webhook.eventTimestamp: {ms} is out of range")))?;
            // Whole seconds, as EventBridge's `time`; the milliseconds stay in detail.
            let at = at.replace_nanosecond(0).unwrap_or(at);
            Some(
                at.format(&time::format_description::well_known::Rfc3339)
                    .map_err(|e| invalid(format!("webhook.eventTimestamp: {e}")))?,
            )
        }
        Some(other) => {
            return Err(invalid(format!(
                "webhook.eventTimestamp: must be epoch milliseconds, found {other}"
            )))
        }
    };
    let mut envelope = Map::new();
    envelope.insert(
        "id".into(),
        json!(uuid::Uuid::new_v5(&IDS, body).to_string()),
    );
    envelope.insert("source".into(), json!(SOURCE));
    envelope.insert("detail-type".into(), json!(name));
    envelope.insert("resources".into(), json!(resources(event)));
    if let Some(t) = time {
        envelope.insert("time".into(), json!(t));
    }
    envelope.insert("detail".into(), value.clone());
    Ok(Event::from_value(Value::Object(envelope), defaults)?)
}

/// `a.b` below `event`.
fn lookup<'a>(event: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    let mut parts = path.split('.');
    let mut at = event.get(parts.next()?)?;
    for p in parts {
        at = at.as_object()?.get(p)?;
    }
    Some(at)
}

/// `device/<serial>` and `user/<email or username>` for what the event names: the
/// computer's record when it is nested (a check-in's top-level `username` is a
/// display name), a SCEP challenge's `targetDevice` and `targetUser`, the event's
/// top level otherwise; and a REST API operation's account.
fn resources(event: &Map<String, Value>) -> Vec<String> {
    let mut out = Vec::new();
    let nested = |k: &str| event.get(k).and_then(Value::as_object);
    let device = nested("computer")
        .or_else(|| nested("targetDevice"))
        .unwrap_or(event);
    let user = nested("computer")
        .or_else(|| nested("targetUser"))
        .unwrap_or(event);
    let text = |scope: &'_ Map<String, Value>, k: &str| {
        scope
            .get(k)
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    if let Some(serial) = text(device, "serialNumber") {
        push_once(&mut out, format!("device/{serial}"));
    }
    if let Some(name) = text(user, "emailAddress")
        .or_else(|| text(user, "email"))
        .or_else(|| text(user, "username"))
    {
        push_once(&mut out, format!("user/{name}"));
    }
    if let Some(account) = event.get("authorizedUsername").and_then(Value::as_str) {
        if !account.is_empty() {
            push_once(&mut out, format!("user/{account}"));
        }
    }
    out
}

fn push_once(out: &mut Vec<String>, r: String) {
    if !out.contains(&r) {
        out.push(r);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn body(name: &str, event: Value) -> Vec<u8> {
        json!({
            "event": event,
            "webhook": {"eventTimestamp": 1764806400000_i64, "id": 1, "name": "hook", "webhookEvent": name}
        })
        .to_string()
        .into_bytes()
    }

    /// One body per documented `webhookEvent`, in the shape Jamf documents for it
    /// (field names are Jamf's, values made up), from `tests/fixtures/jamf/`, with
    /// the resources each must name. The binary's tests post the same files.
    fn documented() -> Vec<(String, Vec<u8>, Vec<String>)> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/jamf");
        let expected: std::collections::BTreeMap<String, Vec<String>> =
            serde_json::from_slice(&std::fs::read(dir.join("expected-resources.json")).unwrap())
                .unwrap();
        expected
            .into_iter()
            .map(|(name, resources)| {
                let body = std::fs::read(dir.join(format!("{name}.json"))).unwrap();
                (name, body, resources)
            })
            .collect()
    }

    #[test]
    fn every_documented_event_is_accepted_with_its_resources() {
        let all = documented();
        assert_eq!(all.len(), EVENTS.len(), "a fixture per documented event");
        for (name, body, resources) in all {
            assert!(
                EVENTS.iter().any(|(n, _)| *n == name),
                "{name} is documented"
            );
            let e =
                process(&body, &Defaults::default()).unwrap_or_else(|err| panic!("{name}: {err}"));
            assert_eq!(e.source, SOURCE);
            assert_eq!(e.detail_type, name);
            assert_eq!(e.resources, resources, "{name}");
        }
    }

    #[test]
    fn a_field_of_the_wrong_kind_is_named() {
        let err = process(
            &body(
                "ComputerPolicyFinished",
                json!({"computer": {"jssID": 1, "serialNumber": "C02T"}, "policyId": "4", "successful": true}),
            ),
            &Defaults::default(),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "event.policyId: must be an integer, found \"4\""
        );
        let err = process(&body("PushSent", json!({})), &Defaults::default()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "event.type: missing (PushSent events carry it)"
        );
    }

    proptest! {
        /// No body makes the parser panic: bytes, or JSON objects of the right outline.
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256),
                        name in "[A-Za-z]{0,30}", key in "[a-zA-Z.]{0,12}", n in any::<i64>()) {
            let _ = process(&bytes, &Defaults::default());
            let event = json!({key.clone(): n, "computer": {key: "x"}});
            let _ = process(&body(&name, event), &Defaults::default());
            let odd = json!({"webhook": {"webhookEvent": name, "eventTimestamp": n}, "event": {"serialNumber": n}});
            let _ = process(odd.to_string().as_bytes(), &Defaults::default());
        }
    }
}
