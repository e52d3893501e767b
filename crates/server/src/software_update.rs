//! `GET /v1/software-update/status`: where the fleet stands against a required
//! macOS version: how many Macs are compliant, which are not, why, and what
//! happens next to each.
//!
//! Under a `software_update:` policy the answer is the policy's: each Mac's state
//! as its orchestrator keeps it in the asset store. Without one:
//! The required version is the one asked for (`version=`) or the newest macOS
//! release an `os-feed` source published. A Mac is compliant when its asset
//! record's `os_version` is at least that. For the others, the software-update
//! story on each Mac's timeline (the MDM commands of the workflow and their
//! answers, the Mac's own `Software Update ...` log events) says where it is.

use std::collections::BTreeMap;

use axum::extract::{Query, State};
use axum::Json;
use fleetbus_assets::{compare_versions, DeviceFilter};
use fleetbus_engine::store::EventQuery;
use fleetbus_event::StoredEvent;
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::AppState;

/// The MDM commands of the software-update workflow.
const SU_COMMANDS: &[&str] = &[
    "ScheduleOSUpdateScan",
    "AvailableOSUpdates",
    "ScheduleOSUpdate",
    "OSUpdateStatus",
];

/// Timeline entries looked at per Mac.
const STORY: usize = 200;

/// Where one Mac is in the workflow, read from its newest software-update event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// Short state: `not started`, `scan sent`, `scanned`, `update found`,
    /// `update scheduled`, `downloading`, `installing`, `refused`, `failed`...
    pub state: String,
    /// Why, where the event says (the error chain, the failure reason, NotNow).
    pub why: Option<String>,
    /// What happens next.
    pub next: String,
    /// The event the state comes from.
    pub event_id: Option<String>,
    pub at: Option<String>,
}

/// The text at a `/`-separated path below an event's `detail`.
fn text<'a>(d: &'a serde_json::Map<String, Value>, pointer: &str) -> Option<&'a str> {
    let mut parts = pointer.trim_start_matches('/').split('/');
    let mut at = d.get(parts.next()?)?;
    for p in parts {
        at = at.get(p)?;
    }
    at.as_str()
}

/// The step a Mac is at, from its timeline (newest first).
pub fn step(timeline: &[StoredEvent]) -> Step {
    for e in timeline {
        let detail = &e.event.detail;
        let at = Some(e.event.time_rfc3339());
        let id = Some(e.event.id.clone());
        let make = |state: &str, why: Option<String>, next: &str| Step {
            state: state.to_owned(),
            why,
            next: next.to_owned(),
            event_id: id.clone(),
            at: at.clone(),
        };
        let request = text(detail, "/command/request_type").unwrap_or("");
        let status = text(detail, "/command/status").unwrap_or("");
        let dt = e.event.detail_type.as_str();
        if e.event.source == "fleetbus.ulog" && dt.starts_with("Software Update") {
            let action = text(detail, "/action").unwrap_or("");
            let phase = text(detail, "/phase").unwrap_or("");
            return match action {
                "otaAbandoned" => make(
                    "abandoned",
                    text(detail, "/failureReason")
                        .or(text(detail, "/result"))
                        .map(str::to_owned),
                    "a person: the Mac gave the update up (its next scan or schedule starts again)",
                ),
                "otaInstalling" | "rebooting" | "restartCountdown" => make(
                    "installing",
                    None,
                    "the Mac restarts; its next check-in reports the new version",
                ),
                "otaReady" | "otaDownloaded" => make(
                    "downloaded",
                    None,
                    "the Mac installs at its scheduled time or when its user agrees",
                ),
                "progress" if phase.contains("DOWNLOAD") => make(
                    "downloading",
                    None,
                    "the download finishes, then the Mac prepares the install",
                ),
                _ => make(
                    "in progress",
                    Some(format!("{dt}: {action}")),
                    "the Mac goes on with the update",
                ),
            };
        }
        if !SU_COMMANDS.contains(&request) {
            continue;
        }
        if dt == "MDM Command Enqueued" {
            return make(
                &format!("{request} sent"),
                None,
                &format!("the Mac answers {request} at its next check-in"),
            );
        }
        if dt != "MDM Command Result" {
            continue;
        }
        let command = detail.get("command");
        let why = command
            .and_then(|c| c.get("error_chain"))
            .map(|c| c.to_string())
            .or_else(|| {
                (status == "NotNow").then(|| "the Mac answered NotNow (busy or locked)".into())
            });
        return match (request, status) {
            (_, "NotNow") => make(
                "refused",
                why,
                &format!("{request} is asked again at the next check-in"),
            ),
            (_, "Error" | "CommandFormatError") => {
                make("failed", why, "a person: the error chain says why")
            }
            ("ScheduleOSUpdateScan", _) => make(
                "scanned",
                None,
                "the Mac is asked which updates it found (AvailableOSUpdates)",
            ),
            ("AvailableOSUpdates", _) => {
                let found = command
                    .and_then(|c| c.pointer("/response/AvailableOSUpdates"))
                    .and_then(Value::as_array)
                    .map(|u| u.iter().any(|x| x["IsOSUpdate"] == true))
                    .unwrap_or(false);
                if found {
                    make(
                        "update found",
                        None,
                        "the update the Mac named is scheduled (ScheduleOSUpdate)",
                    )
                } else {
                    make(
                        "no update offered",
                        None,
                        "the next release or scan tries again",
                    )
                }
            }
            ("ScheduleOSUpdate", _) => make(
                "update scheduled",
                None,
                "the Mac downloads and installs; OSUpdateStatus follows it",
            ),
            _ => make(
                "installing",
                None,
                "the Mac restarts; its next check-in reports the new version",
            ),
        };
    }
    Step {
        state: "not started".into(),
        why: None,
        next: "a scan is sent when a release it is below is published".into(),
        event_id: None,
        at: None,
    }
}

/// `?version=&tag=` (`below=` and `group=` are the same).
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusParams {
    #[serde(alias = "below")]
    version: Option<String>,
    #[serde(alias = "group")]
    tag: Option<String>,
}

/// The answer under a `software_update:` policy: each Mac's state as the policy's
/// orchestrator keeps it (its requirement, version, deadline, stage, why, next).
/// `version` narrows to Macs below it; `tag` to a requirement's Macs or a tag's.
async fn policy_status(
    state: &AppState,
    params: StatusParams,
    policy: &fleetbus_config::SoftwareUpdate,
) -> Result<Json<Value>, ApiError> {
    let assets = state
        .assets
        .clone()
        .ok_or_else(|| ApiError::not_found("this server has no asset store"))?;
    let (devices, states) = assets
        .run("software-update status", |s| {
            let devices = s.list_devices(&DeviceFilter {
                enrolled_only: true,
                ..DeviceFilter::default()
            })?;
            Ok::<_, fleetbus_assets::AssetError>((devices, s.su_states()?))
        })
        .await?;
    let states: BTreeMap<String, fleetbus_assets::SuState> =
        states.into_iter().map(|s| (s.serial.clone(), s)).collect();
    let below = params.version.filter(|v| !v.is_empty());
    let mut compliant = Vec::new();
    let mut behind = Vec::new();
    let mut outside = 0u64;
    let mut by_state: BTreeMap<String, u64> = BTreeMap::new();
    let mut by_requirement: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for d in &devices {
        let requirement = policy
            .requirements
            .iter()
            .find(|r| r.selects(&d.tags, d.model.as_deref(), d.os_version.as_deref()));
        let Some(req) = requirement else {
            outside += 1;
            continue;
        };
        if let Some(g) = &params.tag {
            if &req.name != g && !d.tags.contains(g) {
                continue;
            }
        }
        if let Some(v) = &below {
            if d.os_version
                .as_deref()
                .is_some_and(|o| compare_versions(o, v).is_ge())
            {
                continue;
            }
        }
        let st = states.get(&d.serial);
        let required = st.and_then(|s| s.required_version.clone());
        // The policy's word (a version the Mac reported) or the asset record's.
        let ok = st.is_some_and(|s| s.stage == "compliant")
            || required.as_deref().is_some_and(|r| {
                d.os_version
                    .as_deref()
                    .is_some_and(|o| compare_versions(o, r).is_ge())
            });
        // The newer of what the Mac reported to the policy and the asset record
        // (either may be ahead: they are written by different rules).
        let os_version = [st.and_then(|s| s.os_version.clone()), d.os_version.clone()]
            .into_iter()
            .flatten()
            .max_by(|a, b| compare_versions(a, b));
        let counts = by_requirement.entry(req.name.clone()).or_default();
        if ok {
            counts.0 += 1;
            compliant.push(
                json!({"serial": d.serial, "os_version": os_version, "requirement": req.name, "state": "compliant"}),
            );
            continue;
        }
        counts.1 += 1;
        let stage = st
            .map(|s| s.stage.clone())
            .unwrap_or_else(|| "not started".into());
        *by_state.entry(stage.clone()).or_default() += 1;
        behind.push(json!({
            "serial": d.serial,
            "name": d.name,
            "os_version": d.os_version,
            "requirement": req.name,
            "required_version": required,
            "deadline": st.and_then(|s| s.deadline.clone()),
            "state": stage,
            "why": st.and_then(|s| s.reason.clone()),
            "next": st.and_then(|s| s.next.clone()).unwrap_or_else(|| "the next evaluation sends it a scan".into()),
            "install_action": st.and_then(|s| s.install_action.clone()),
            "product_key": st.and_then(|s| s.product_key.clone()),
            "available_version": st.and_then(|s| s.available_version.clone()),
            "progress": st.and_then(|s| s.progress),
            "deferrals_used": st.map(|s| s.deferrals_used).unwrap_or(0),
            "max_user_deferrals": st.and_then(|s| s.max_user_deferrals),
            "pending_command": st.and_then(|s| s.pending_command.clone()),
            "since": st.map(|s| s.updated_at.clone()),
            "event_id": st.and_then(|s| s.event_id.clone()),
        }));
    }
    let requirements: Vec<Value> = by_requirement
        .into_iter()
        .map(|(name, (ok, late))| json!({"name": name, "compliant": ok, "non_compliant": late}))
        .collect();
    Ok(Json(json!({
        "required_version": below,
        "required_from": "policy",
        "devices": compliant.len() + behind.len(),
        "compliant": compliant.len(),
        "non_compliant": behind.len(),
        "outside_policy": outside,
        "by_state": by_state,
        "requirements": requirements,
        "behind": behind,
        "compliant_devices": compliant,
    })))
}

/// `POST /v1/software-update/evaluate`: the policy looks at every Mac now (after a
/// change of policy, or to escalate without waiting for the schedule).
pub async fn evaluate(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let config = state.config();
    let Some(policy) = config.software_update.as_ref() else {
        return Err(ApiError::not_found(
            "this configuration has no software_update: section to evaluate",
        ));
    };
    let event = fleetbus_event::Event::new(
        fleetbus_config::SU_SOURCE,
        fleetbus_config::SU_EVALUATE,
        serde_json::Map::new(),
    );
    let id = event.id.clone();
    let meta = fleetbus_event::Meta::ingested(policy.bus.clone(), "api/software-update");
    let mut results = state.engine.put_attached(vec![(event, meta, None)]).await?;
    match results.pop() {
        Some(Ok(_)) => Ok(Json(json!({"event_id": id}))),
        Some(Err(e)) => Err(ApiError::bad_request(e.to_string())),
        None => Err(ApiError::bad_request(
            "the evaluation was not put on the bus",
        )),
    }
}

/// The newest macOS version an `os-feed` source published.
async fn newest_release(state: &AppState) -> Result<Option<String>, ApiError> {
    let page = state
        .engine
        .query(
            EventQuery {
                source: Some("fleetbus.os-feed".into()),
                detail_type: Some("OS Release Published".into()),
                limit: 1000,
                ..EventQuery::default()
            },
            None,
        )
        .await?;
    Ok(page
        .events
        .iter()
        .filter(|(_, e)| e.event.detail.get("platform").and_then(Value::as_str) == Some("macOS"))
        .filter_map(|(_, e)| {
            e.event
                .detail
                .get("product_version")
                .and_then(Value::as_str)
        })
        .max_by(|a, b| compare_versions(a, b))
        .map(str::to_owned))
}

/// `GET /v1/software-update/status?version=&tag=`.
pub async fn status(
    State(state): State<AppState>,
    Query(params): Query<StatusParams>,
) -> Result<Json<Value>, ApiError> {
    let config = state.config();
    if let Some(policy) = config.software_update.as_ref() {
        return policy_status(&state, params, policy).await;
    }
    let (required, from) = match params.version.filter(|v| !v.is_empty()) {
        Some(v) => (v, "asked"),
        None => match newest_release(&state).await? {
            Some(v) => (v, "os-feed"),
            None => {
                return Err(ApiError::bad_request(
                    "no required version: give version=, or let an os-feed source publish a macOS release first",
                ))
            }
        },
    };
    let assets = state
        .assets
        .clone()
        .ok_or_else(|| ApiError::not_found("this server has no asset store"))?;
    let tag = params.tag.clone();
    let devices = assets
        .run("software-update devices", move |s| {
            s.list_devices(&DeviceFilter {
                tag,
                enrolled_only: true,
                ..DeviceFilter::default()
            })
        })
        .await?;
    let mut compliant = Vec::new();
    let mut behind = Vec::new();
    let mut by_state: BTreeMap<String, u64> = BTreeMap::new();
    for d in &devices {
        let ok = d
            .os_version
            .as_deref()
            .is_some_and(|v| compare_versions(v, &required).is_ge());
        if ok {
            compliant.push(json!({"serial": d.serial, "os_version": d.os_version}));
            continue;
        }
        let timeline = state
            .engine
            .timeline(format!("device/{}", d.serial), STORY)
            .await?;
        let s = step(&timeline);
        *by_state.entry(s.state.clone()).or_default() += 1;
        behind.push(json!({
            "serial": d.serial,
            "name": d.name,
            "os_version": d.os_version,
            "state": s.state,
            "why": s.why,
            "next": s.next,
            "since": s.at,
            "event_id": s.event_id,
        }));
    }
    Ok(Json(json!({
        "required_version": required,
        "required_from": from,
        "devices": devices.len(),
        "compliant": compliant.len(),
        "non_compliant": behind.len(),
        "by_state": by_state,
        "behind": behind,
        "compliant_devices": compliant,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleetbus_event::{Event, Meta};

    fn ev(source: &str, dt: &str, detail: Value) -> StoredEvent {
        StoredEvent {
            event: Event::new(source, dt, detail.as_object().cloned().unwrap()),
            meta: Meta::ingested("default", "t"),
        }
    }

    #[test]
    fn the_newest_software_update_event_says_where_a_mac_is() {
        assert_eq!(step(&[]).state, "not started");
        let sent = ev(
            "fleetbus.mdm",
            "MDM Command Enqueued",
            json!({"command": {"request_type": "ScheduleOSUpdateScan"}}),
        );
        assert_eq!(
            step(std::slice::from_ref(&sent)).state,
            "ScheduleOSUpdateScan sent"
        );
        let notnow = ev(
            "mdm.nanomdm",
            "MDM Command Result",
            json!({"command": {"request_type": "ScheduleOSUpdate", "status": "NotNow"}}),
        );
        let s = step(&[notnow, sent.clone()]);
        assert_eq!(s.state, "refused");
        assert!(s.why.unwrap().contains("NotNow"));
        let found = ev(
            "mdm.nanomdm",
            "MDM Command Result",
            json!({"command": {"request_type": "AvailableOSUpdates", "status": "Acknowledged",
                   "response": {"AvailableOSUpdates": [{"ProductKey": "k", "IsOSUpdate": true}]}}}),
        );
        assert_eq!(step(&[found]).state, "update found");
        let abandoned = ev(
            "fleetbus.ulog",
            "Software Update OTA Event",
            json!({"action": "otaAbandoned", "failureReason": "insufficient space"}),
        );
        let s = step(&[abandoned, sent]);
        assert_eq!(s.state, "abandoned");
        assert_eq!(s.why.as_deref(), Some("insufficient space"));
        // Other events on the timeline are passed over.
        let other = ev("jamf.pro", "ComputerCheckIn", json!({}));
        assert_eq!(step(&[other]).state, "not started");
    }
}
