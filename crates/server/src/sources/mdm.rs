//! `kind: nanomdm` and `kind: micromdm`: the MDM server's webhook.
//!
//! Each webhook event becomes an `MDM Check-in` or `MDM Command Result` event
//! (source `mdm.nanomdm` / `mdm.micromdm`) on `device/<serial>`. The asset store
//! keeps the UDID -> serial mapping (learnt from any message that carries both, such
//! as Authenticate), so later messages that carry only the UDID land on the same
//! timeline. A command result is looked up in the command ledger: it gains the
//! request type, the rule and target that sent it, and a causation link to the event
//! that triggered the command (one hop further, so result -> command loops stop at
//! the hop limit).
//!
//! A command answer too large for an event (an InstalledApplicationList of
//! thousands of apps) is kept beside it (claim-check): the event's
//! `detail.command` keeps its status, ids and a summary of each large part
//! (`attached`), `meta.attachment` says what was moved, and the whole of
//! `detail.command` is the event's attachment (`GET /v1/events/{id}/attachment`).
//! The ledger entry completes either way.

use fleetbus_assets::AssetStore;
use fleetbus_engine::store::Attachment;
use fleetbus_event::{AttachmentInfo, Defaults, Event, EventError, Meta};
use fleetbus_mdm::webhook::WebhookEvent;
use fleetbus_mdm::MdmServer;
use fleetbus_telemetry::{InternalEvent, MdmWebhookEvent};
use serde_json::{json, Map, Value};
use time::OffsetDateTime;

use super::SourceError;
use crate::AppState;

/// `kind: nanomdm` / `kind: micromdm`.
#[derive(Debug)]
pub struct Mdm(pub MdmServer);

impl super::Source for Mdm {
    fn handle<'a>(
        &'a self,
        state: &'a AppState,
        source: &'a fleetbus_config::Source,
        request: super::Request<'a>,
    ) -> super::HandleFuture<'a> {
        let ingest = format!("source/{}", source.name);
        Box::pin(async move { process(state, self.0, request.body, source, &ingest).await })
    }
}

async fn process(
    state: &AppState,
    server: MdmServer,
    body: &[u8],
    source: &fleetbus_config::Source,
    ingest: &str,
) -> Result<super::Events, SourceError> {
    let bus = source.bus.as_str();
    let mut parsed = server
        .parse_webhook(body)
        .map_err(|e| SourceError::Invalid(e.to_string()))?;
    // Every device polls; a poll with nothing to report is noise on its timeline
    // unless the source asks for it.
    if !source.idle_polls {
        parsed.retain(|we| we.detail["action"] != "idle");
    }
    let link_all = |assets: Option<&AssetStore>| {
        parsed
            .into_iter()
            .map(|we| link(assets, we))
            .collect::<Result<Vec<_>, SourceError>>()
    };
    let linked = match state.assets.clone() {
        Some(assets) => {
            assets
                .run("link mdm webhook", move |a| link_all(Some(a)))
                .await?
        }
        None => link_all(None)?,
    };
    let defaults = state.engine.defaults();
    let mut out = Vec::with_capacity(linked.len());
    for (we, resources, cause) in linked {
        MdmWebhookEvent {
            server: server.event_source(),
            detail_type: &we.detail_type,
        }
        .emit();
        let mut envelope = json!({
            "source": server.event_source(),
            "detail-type": we.detail_type,
            "resources": resources,
            "detail": we.detail,
        });
        if let Some(t) = we.created_at.as_deref().filter(|t| is_rfc3339(t)) {
            envelope["time"] = json!(t);
        }
        if let Some(id) = &we.event_id {
            // The sender's id makes a re-sent webhook a duplicate within the window.
            envelope["id"] = json!(id);
        }
        let (event, attachment) = fit(envelope, &defaults)?;
        let mut meta = Meta::ingested(bus.to_owned(), ingest.to_owned());
        let attachment = attachment.map(|(a, info)| {
            meta.attachment = Some(info);
            a
        });
        if let Some(cause_id) = cause {
            // The answer joins its command's causation chain: same root, one hop on.
            let (hop, root) = match state.engine.event(cause_id.clone()).await {
                Ok(Some(c)) => (c.meta.hop + 1, c.chain_root().to_owned()),
                _ => (1, cause_id.clone()),
            };
            meta.causation_id = Some(cause_id);
            meta.hop = hop;
            meta.root_id = Some(root);
        }
        out.push((event, meta, attachment));
    }
    Ok(out)
}

/// The event of `envelope`; when it is over the size limit, `detail.command` moves
/// whole into an attachment and the event keeps the command's status and ids with
/// a summary of its answer, so the result is still an event (and its ledger entry
/// complete). An event still too large after that is refused.
fn fit(
    mut envelope: Value,
    defaults: &Defaults,
) -> Result<(Event, Option<(Attachment, AttachmentInfo)>), SourceError> {
    match Event::from_value(envelope.clone(), defaults) {
        Err(EventError::TooLarge { .. }) => {}
        other => return Ok((other?, None)),
    }
    let Some(command) = envelope
        .pointer_mut("/detail/command")
        .and_then(Value::as_object_mut)
    else {
        return Err(Event::from_value(envelope, defaults)
            .err()
            .map(SourceError::from)
            .unwrap_or_else(|| SourceError::Invalid("event too large".into())));
    };
    let body = serde_json::to_vec(&*command).map_err(|e| SourceError::Invalid(e.to_string()))?;
    let mut summary = Map::new();
    for key in ["response", "query_responses"] {
        if let Some(v) = command.remove(key) {
            summary.insert(key.into(), summarize(&v));
        }
    }
    command.insert(
        "attached".into(),
        json!({"bytes": body.len(), "summary": summary}),
    );
    let event = Event::from_value(envelope, defaults)?;
    let info = AttachmentInfo {
        part: "detail.command".into(),
        content_type: "application/json".into(),
        bytes: body.len() as u64,
    };
    let attachment = Attachment {
        content_type: info.content_type.clone(),
        body,
    };
    Ok((event, Some((attachment, info))))
}

/// A small stand-in for a large answer: per key, short scalars as they are, lists
/// by their length, dictionaries by their keys' count.
fn summarize(v: &Value) -> Value {
    let leaf = |v: &Value| match v {
        Value::Array(items) => json!({"items": items.len()}),
        Value::Object(m) => json!({"keys": m.len()}),
        Value::String(s) if s.len() > 256 => json!({"chars": s.len()}),
        other => other.clone(),
    };
    match v {
        Value::Object(m) => Value::Object(m.iter().map(|(k, v)| (k.clone(), leaf(v))).collect()),
        other => leaf(other),
    }
}

/// Fills the serial from the UDID mapping (and records the mapping), adds the
/// command ledger's facts; returns the event, its resources and its cause.
fn link(
    assets: Option<&AssetStore>,
    mut we: WebhookEvent,
) -> Result<(WebhookEvent, Vec<String>, Option<String>), SourceError> {
    let Some(assets) = assets else {
        let resources = we.resource().into_iter().collect();
        return Ok((we, resources, None));
    };
    let now = OffsetDateTime::now_utc();
    match (&we.udid, &we.serial) {
        (Some(udid), Some(serial)) => assets.link_udid(udid, serial, now)?,
        (Some(udid), None) => {
            if let Some(serial) = assets.serial_for_udid(udid)? {
                if let Some(device) = we.detail.get_mut("device").and_then(Value::as_object_mut) {
                    device.insert("serial".into(), json!(serial));
                }
                we.serial = Some(serial);
            }
        }
        _ => {}
    }
    if let Some(udid) = we.udid.clone() {
        track_enrollment(assets, &mut we, &udid, now)?;
    }
    let mut resources: Vec<String> = we.resource().into_iter().collect();
    if let Some(user) = we
        .serial
        .as_deref()
        .map(|s| assets.device(s))
        .transpose()?
        .flatten()
        .and_then(|d| d.user_id)
    {
        resources.push(format!("user/{user}"));
    }
    let mut cause = None;
    if let (Some(uuid), Some(status)) = (
        we.command_uuid.clone(),
        we.detail
            .pointer("/command/status")
            .and_then(Value::as_str)
            .map(str::to_owned),
    ) {
        if let Some(record) = assets.complete_command(&uuid, &status, now)? {
            if let Some(command) = we.detail.get_mut("command").and_then(Value::as_object_mut) {
                command
                    .entry("request_type")
                    .or_insert_with(|| json!(record.request_type));
                if let Some(r) = &record.rule {
                    command.insert("rule".into(), json!(r));
                }
                if let Some(t) = &record.target {
                    command.insert("target".into(), json!(t));
                }
                if let Some(e) = &record.event_id {
                    command.insert("caused_by".into(), json!(e));
                }
                command.insert("enqueued_at".into(), json!(record.enqueued_at));
            }
            cause = record.event_id;
        }
    }
    Ok((we, resources, cause))
}

/// Tells an enrollment from a token refresh where the server does not count
/// TokenUpdates (MicroMDM sends no `token_update_tally`): a channel's first
/// TokenUpdate since its device's last Authenticate is the enrollment.
fn track_enrollment(
    assets: &AssetStore,
    we: &mut WebhookEvent,
    udid: &str,
    now: OffsetDateTime,
) -> Result<(), SourceError> {
    match we.topic.as_str() {
        "mdm.Authenticate" => assets.mdm_authenticated(udid, now)?,
        "mdm.TokenUpdate" => {
            let user = we
                .detail
                .pointer("/user/id")
                .and_then(Value::as_str)
                .map(str::to_owned);
            let first = assets.mdm_token_update(udid, user.as_deref())?;
            let counted = we.detail.get("token_update_tally").is_some();
            if first && !counted {
                we.detail["action"] = json!("enroll");
            }
        }
        _ => {}
    }
    Ok(())
}

fn is_rfc3339(t: &str) -> bool {
    OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).is_ok()
}
