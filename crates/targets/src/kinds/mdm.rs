//! `kind: mdm`: enqueue an Apple MDM command for each selected device through a
//! NanoMDM or MicroMDM server, and keep the command ledger.
//!
//! Per device: the command template's placeholders are filled (event variables,
//! the device's asset record, a generated PIN), the command is validated against
//! the catalog, enqueued, and recorded in the ledger so the later acknowledgement
//! (which carries only the CommandUUID) can be linked back to this delivery.
//!
//! Retries are safe: a device's CommandUUID is derived from the delivery's
//! idempotency key, devices already in the ledger are skipped, and a PIN escrowed
//! for that CommandUUID is reused. The PIN is escrowed *before* the enqueue call, so
//! a crash can never leave a device locked with a PIN nobody knows.

use super::{BuildContext, Deliver, DeliverFuture};
use crate::Payload;
use fleetbus_config::JsonPath;
use fleetbus_config::{Target, TargetSpec};

use fleetbus_telemetry::{InternalEvent, MdmCommandEnqueued};
use std::collections::BTreeSet;

use fleetbus_assets::{AssetStore, AsyncAssetStore, CommandRecord, Device, DeviceFilter};
use fleetbus_config::{MdmServer, MdmTarget};
use fleetbus_event::{Defaults, Event};
use fleetbus_mdm::enqueue::{self, HttpRequest};
use fleetbus_mdm::CommandBuilder;
use reqwest::Client;
use serde_json::{json, Map, Value};
use time::OffsetDateTime;

use super::http::{read_body, request_error, status_error};
use crate::{BuildError, Delivered, DeliveryContext, DeliveryError};

/// Source of the events an mdm target emits, one per enqueued command.
pub const MDM_SOURCE: &str = "fleetbus.mdm";
/// Detail-type of those events.
pub const ENQUEUED: &str = "MDM Command Enqueued";

#[derive(Debug)]
pub struct MdmTargetImpl {
    spec: MdmTarget,
    /// The command template as one value, and whether it asks for a PIN: both fixed
    /// at build time, not recomputed per device.
    template: Value,
    uses_pin: bool,
    client: Client,
    /// Where devices are looked up and PINs escrowed.
    assets: Option<fleetbus_assets::AsyncAssetStore>,
    clock: super::Clock,
}

/// A device to address: its UDID and, when the asset store knows it, its record.
pub(crate) struct Addressee {
    pub(crate) udid: String,
    pub(crate) record: Option<Device>,
}

/// One command to build per device: its RequestType and its template.
pub(crate) struct Template<'a> {
    pub(crate) request_type: &'a str,
    pub(crate) template: &'a Value,
    pub(crate) uses_pin: bool,
    /// The ledger names the command's own `MDM Command Enqueued` event (its id is
    /// the CommandUUID) as the cause of the answer, rather than the delivery's
    /// event: each command and its answer are then a chain of their own.
    pub(crate) own_cause: bool,
}

impl MdmTargetImpl {
    pub(crate) fn new(
        id: &str,
        spec: &MdmTarget,
        timeout: std::time::Duration,
        cx: &BuildContext<'_>,
    ) -> Result<Self, BuildError> {
        super::http::parse_url(id, &spec.url)?;
        let template = Value::Object(spec.payload.clone());
        Ok(MdmTargetImpl {
            uses_pin: mentions(&template, "pin"),
            template,
            spec: spec.clone(),
            client: super::http::client(id, timeout)?,
            assets: cx.assets.cloned(),
            clock: cx.clock,
        })
    }

    /// A sender of commands made elsewhere (the software-update policy's) through
    /// `server`: no template, no device selector of its own.
    pub(crate) fn sender(
        id: &str,
        server: &fleetbus_config::SuMdm,
        timeout: std::time::Duration,
        cx: &BuildContext<'_>,
    ) -> Result<Self, BuildError> {
        let spec = MdmTarget {
            server: server.server,
            url: server.url.clone(),
            api_key: server.api_key.clone(),
            push: server.push,
            request_type: String::new(),
            payload: Map::new(),
            devices: fleetbus_config::DeviceSelector::default(),
            variables: Default::default(),
        };
        Self::new(id, &spec, timeout, cx)
    }

    /// Sends `command` to one device unless the ledger already has `uuid` (an
    /// earlier attempt of the same delivery sent it): the `MDM Command Enqueued`
    /// event, or `None` when it was sent before.
    pub(crate) async fn send_one(
        &self,
        assets: &AsyncAssetStore,
        ctx: &DeliveryContext<'_>,
        device: &Addressee,
        uuid: &str,
        command: &Template<'_>,
    ) -> Result<Option<Event>, DeliveryError> {
        if ledger_entry(assets, uuid).await?.is_some() {
            return Ok(None);
        }
        self.send(assets, ctx, device, uuid, command, &Map::new())
            .await
            .map(Some)
    }

    pub(crate) async fn deliver(
        &self,
        ctx: &DeliveryContext<'_>,
    ) -> Result<Delivered, DeliveryError> {
        let assets = self.assets.as_ref().ok_or_else(|| {
            DeliveryError::Permanent("mdm target: no asset store is configured".into())
        })?;
        let doc = ctx.event.event.to_value();
        let vars = self.variables(&doc)?;
        let sel = self.spec.devices.clone();
        let devices = assets
            .run("select devices", move |a| select_devices(a, &sel, &doc))
            .await?;
        let mut emitted = Vec::new();
        let mut already = 0;
        let mut failures = Vec::new();
        for device in &devices {
            let uuid = command_uuid(ctx.idempotency_key, &device.udid);
            let known = ledger_entry(assets, &uuid).await?;
            if let Some(record) = known {
                // Enqueued by an earlier attempt of this delivery, which failed as a
                // whole: its event was never put on the bus.
                already += 1;
                let now = OffsetDateTime::now_utc();
                let event = self.enqueued_event(
                    ctx,
                    device,
                    (&self.spec.request_type, &uuid),
                    record.serial.as_deref(),
                    Vec::new(),
                    now,
                )?;
                emitted.push((ctx.event.meta.bus.clone(), event));
                continue;
            }
            let command = Template {
                request_type: &self.spec.request_type,
                template: &self.template,
                uses_pin: self.uses_pin,
                own_cause: false,
            };
            match self.send(assets, ctx, device, &uuid, &command, &vars).await {
                Ok(event) => emitted.push((ctx.event.meta.bus.clone(), event)),
                Err(e) => failures.push((device.udid.clone(), e)),
            }
        }
        let sent = emitted.len() - already;
        if !failures.is_empty() {
            let retryable = failures.iter().any(|(_, e)| e.is_retryable());
            let detail: Vec<String> = failures
                .iter()
                .map(|(udid, e)| format!("{udid}: {e}"))
                .collect();
            let msg = format!(
                "{} of {} devices failed ({} enqueued now, {already} before): {}",
                failures.len(),
                devices.len(),
                sent,
                detail.join("; ")
            );
            // The enqueued devices are in the ledger; a retry skips them. The MDM
            // server's longest Retry-After, if it sent one, is honoured.
            let after = failures.iter().filter_map(|(_, e)| e.retry_after()).max();
            return Err(match after {
                Some(after) if retryable => DeliveryError::RetryAfter {
                    message: msg,
                    after,
                },
                _ if retryable => DeliveryError::Retryable(msg),
                _ => DeliveryError::Permanent(msg),
            });
        }
        Ok(Delivered {
            status: format!(
                "enqueued {} {} for {} device{}",
                sent + already,
                self.spec.request_type,
                devices.len(),
                if devices.len() == 1 { "" } else { "s" }
            ),
            emitted,
        })
    }

    fn variables(&self, doc: &Value) -> Result<Map<String, Value>, DeliveryError> {
        let mut vars = Map::new();
        for (name, path) in &self.spec.variables {
            let value = path.select(doc).ok_or_else(|| {
                DeliveryError::Permanent(format!(
                    "variable {name}: {path} matches nothing in the event"
                ))
            })?;
            vars.insert(name.clone(), value);
        }
        Ok(vars)
    }

    /// Builds, escrows, enqueues and records one device's command.
    async fn send(
        &self,
        assets: &AsyncAssetStore,
        ctx: &DeliveryContext<'_>,
        device: &Addressee,
        uuid: &str,
        command: &Template<'_>,
        event_vars: &Map<String, Value>,
    ) -> Result<Event, DeliveryError> {
        // The serial (for the ledger and the escrow) and the PIN, reused when a
        // retry finds one escrowed for this CommandUUID, escrowed before the enqueue.
        let (serial, pin) = {
            let known = device.record.as_ref().map(|d| d.serial.clone());
            let (udid, uuid, uses_pin) = (device.udid.clone(), uuid.to_owned(), command.uses_pin);
            assets
                .run("escrow pin", move |a| -> Result<_, DeliveryError> {
                    let serial = match known {
                        Some(s) => Some(s),
                        None => a.serial_for_udid(&udid)?,
                    };
                    if !uses_pin {
                        return Ok((serial, None));
                    }
                    let escrow_key = serial.clone().unwrap_or_else(|| udid.clone());
                    let existing = a.pin_for_command(&uuid)?;
                    let pin = match existing {
                        Some(p) => p.pin,
                        None => {
                            let pin = generate_pin();
                            a.escrow_pin(&escrow_key, &uuid, &pin, OffsetDateTime::now_utc())?;
                            pin
                        }
                    };
                    Ok((serial, Some(pin)))
                })
                .await?
        };
        let mut vars = event_vars.clone();
        vars.insert("device.udid".into(), json!(device.udid));
        vars.insert("command_uuid".into(), json!(uuid));
        if let Some(s) = &serial {
            vars.insert("device.serial".into(), json!(s));
        }
        if let Some(d) = &device.record {
            for (k, v) in [
                ("device.name", &d.name),
                ("device.model", &d.model),
                ("device.os_version", &d.os_version),
                ("device.user_id", &d.user_id),
            ] {
                if let Some(v) = v {
                    vars.insert(k.into(), json!(v));
                }
            }
        }
        if let Some(pin) = pin {
            vars.insert("pin".into(), json!(pin));
        }
        let payload = fill(command.template, &vars).map_err(DeliveryError::Permanent)?;
        let Value::Object(payload) = payload else {
            unreachable!("filling an object yields an object")
        };
        let request_type = command.request_type;
        let (uses_pin, own_cause) = (command.uses_pin, command.own_cause);
        let command = CommandBuilder::new(request_type)
            .command_uuid(uuid)
            .payload(payload)
            .build()
            .map_err(|e| DeliveryError::Permanent(format!("command: {e}")))?;
        let key = self.spec.api_key.expose();
        let request = match self.spec.server {
            MdmServer::NanoMdm => {
                enqueue::nanomdm::enqueue_request(&command, &[&device.udid], key, self.spec.push)
            }
            // The raw plist endpoint: any command of Apple's catalog, not only those
            // MicroMDM's JSON schema knows.
            MdmServer::MicroMdm => {
                enqueue::micromdm::raw_enqueue_request(&command, &device.udid, key)
            }
        }
        .map_err(|e| DeliveryError::Permanent(format!("enqueue request: {e}")))?;
        let answer = self.call(request).await?;
        let mut warnings = Vec::new();
        if self.spec.server == MdmServer::MicroMdm && self.spec.push {
            // The command is queued; a failed push only delays it to the device's
            // next check-in, so it is a warning, not a failed delivery.
            let push = enqueue::micromdm::push_request(&device.udid, key)
                .map_err(|e| DeliveryError::Permanent(format!("push request: {e}")))?;
            if let Err(e) = self.call(push).await {
                warnings.push(format!("push: {e}"));
            }
        }
        if self.spec.server == MdmServer::NanoMdm {
            if let Ok(result) = enqueue::nanomdm::parse_result(&answer) {
                // A push error still leaves the command queued for the next check-in.
                if let Some(e) = result.errors.iter().find(|e| e.contains("command_error")) {
                    return Err(DeliveryError::Permanent(format!("nanomdm: {e}")));
                }
                warnings = result.errors;
            }
        }
        let now = OffsetDateTime::now_utc();
        let entry = CommandRecord {
            command_uuid: uuid.to_owned(),
            request_type: request_type.to_owned(),
            udid: device.udid.clone(),
            serial: serial.clone(),
            rule: Some(ctx.rule.to_owned()),
            target: Some(ctx.target.to_owned()),
            event_id: Some(if own_cause {
                uuid.to_owned()
            } else {
                ctx.event.event.id.clone()
            }),
            enqueued_at: rfc3339(now),
            status: None,
            completed_at: None,
        };
        assets
            .run("record command", move |a| {
                Ok::<_, DeliveryError>(a.record_command(&entry)?)
            })
            .await?;
        MdmCommandEnqueued {
            server: self.spec.server.as_str(),
            request_type,
            command_uuid: uuid,
        }
        .emit();
        let mut event = self.enqueued_event(
            ctx,
            device,
            (request_type, uuid),
            serial.as_deref(),
            warnings,
            now,
        )?;
        event.detail.insert("pin_escrowed".into(), json!(uses_pin));
        Ok(event)
    }

    /// The `MDM Command Enqueued` event of one device for a (RequestType,
    /// CommandUUID). Its id is the CommandUUID:
    /// a retry that re-emits it for a device enqueued by an earlier attempt (whose
    /// events were lost with that attempt's failure) is dropped as a duplicate if
    /// the earlier one did reach the bus.
    fn enqueued_event(
        &self,
        ctx: &DeliveryContext<'_>,
        device: &Addressee,
        (request_type, uuid): (&str, &str),
        serial: Option<&str>,
        warnings: Vec<String>,
        now: OffsetDateTime,
    ) -> Result<Event, DeliveryError> {
        let mut resources = vec![format!("device/{}", serial.unwrap_or(&device.udid))];
        if let Some(user) = device.record.as_ref().and_then(|d| d.user_id.as_ref()) {
            resources.push(format!("user/{user}"));
        }
        let mut device_detail = json!({"udid": device.udid});
        if let Some(s) = serial {
            device_detail["serial"] = json!(s);
        }
        let detail = json!({
            "scope": "device",
            "action": "command_enqueued",
            "server": self.spec.server.as_str(),
            "rule": ctx.rule,
            "target": ctx.target,
            "device": device_detail,
            "command": {"request_type": request_type, "command_uuid": uuid},
            "pin_escrowed": self.uses_pin,
            "warnings": warnings,
        });
        let defaults = Defaults {
            account: ctx.event.event.account.clone(),
            region: ctx.event.event.region.clone(),
            now,
        };
        Event::from_value(
            json!({
                "id": uuid,
                "source": MDM_SOURCE,
                "detail-type": ENQUEUED,
                "resources": resources,
                "detail": detail,
            }),
            &defaults,
        )
        .map_err(|e| DeliveryError::Permanent(format!("enqueued event: {e}")))
    }

    async fn call(&self, request: HttpRequest) -> Result<Vec<u8>, DeliveryError> {
        let url = format!("{}{}", self.spec.url, request.path);
        let method = reqwest::Method::from_bytes(request.method.as_bytes())
            .map_err(|e| DeliveryError::Permanent(format!("method: {e}")))?;
        let mut builder = self.client.request(method, &url);
        for (k, v) in &request.headers {
            builder = builder.header(k, v);
        }
        let response = builder
            .body(request.body)
            .send()
            .await
            .map_err(|e| request_error(&e, false))?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = read_body(response).await;
        if !status.is_success() {
            return Err(status_error(
                status,
                retry_after.as_deref(),
                (self.clock)(),
                &body,
            ));
        }
        Ok(body)
    }
}

/// The version `os_below` names for this event: as written, or taken from it
/// (`$.detail.product_version` of a release event).
fn os_below(
    sel: &fleetbus_config::DeviceSelector,
    doc: &Value,
) -> Result<Option<String>, DeliveryError> {
    use fleetbus_config::Field;
    let Some(field) = &sel.os_below else {
        return Ok(None);
    };
    let value = match field {
        Field::Const(c) => Some(c.clone()),
        Field::Path(p) => match p.first(doc) {
            Some(Value::String(s)) => Some(s.clone()),
            None | Some(Value::Null) => None,
            Some(other) => {
                return Err(DeliveryError::Permanent(format!(
                    "devices.os_below: {p} holds {other}, not a version"
                )))
            }
        },
        Field::Template(t) => t
            .render(doc)
            .map_err(|e| DeliveryError::Permanent(format!("devices.os_below: {e}")))?,
    };
    match value {
        Some(v) => Ok(Some(v)),
        // Comparing with nothing would select every device: refuse instead.
        None => Err(DeliveryError::Permanent(format!(
            "devices.os_below: {} is not in the event",
            field.as_written()
        ))),
    }
}

/// The devices a delivery addresses, deduplicated by UDID.
fn select_devices(
    assets: &AssetStore,
    sel: &fleetbus_config::DeviceSelector,
    doc: &Value,
) -> Result<Vec<Addressee>, DeliveryError> {
    let below = os_below(sel, doc)?;
    let mut out: Vec<Addressee> = Vec::new();
    let from_event = sel.udid.is_some() || sel.serial.is_some() || sel.user.is_some();
    if let Some(path) = &sel.udid {
        let udids = strings_at(path, doc)?;
        let serials = match &sel.serial {
            Some(p) => strings_at(p, doc)?,
            None => Vec::new(),
        };
        for (i, udid) in udids.into_iter().enumerate() {
            let record = match serials.get(i) {
                Some(s) => assets.device(s)?,
                None => assets.device_by_udid(&udid)?,
            };
            out.push(Addressee { udid, record });
        }
    } else if let Some(path) = &sel.serial {
        for serial in strings_at(path, doc)? {
            let record = assets.device(&serial)?;
            let udid = record
                .as_ref()
                .and_then(|d| d.udid.clone())
                .ok_or_else(|| {
                    DeliveryError::Permanent(format!(
                    "device {serial:?} has no UDID in the asset store (it has not checked in yet)"
                ))
                })?;
            out.push(Addressee { udid, record });
        }
    }
    if let Some(path) = &sel.user {
        for user in strings_at(path, doc)? {
            // By id, else by email: an identity provider names users by login
            // (Okta's alternateId), which is the email the asset store keeps.
            let found = match assets.user(&user)? {
                Some(u) => Some(u),
                None if user.contains('@') => assets.user_by_email(&user)?,
                None => None,
            };
            for d in found.map(|u| u.devices).unwrap_or_default() {
                if let Some(udid) = d.udid.clone() {
                    out.push(Addressee {
                        udid,
                        record: Some(d),
                    });
                } else {
                    tracing::warn!(
                        target: "fleetbus::mdm",
                        device = %d.serial,
                        user = %user,
                        "device has no UDID yet; no command sent to it"
                    );
                }
            }
        }
    }
    if !from_event {
        let filter = DeviceFilter {
            user_id: None,
            tag: sel.tag.clone(),
            os_below: below.clone(),
            enrolled_only: sel.enrolled_only,
        };
        for d in assets.list_devices(&filter)? {
            if let Some(udid) = d.udid.clone() {
                out.push(Addressee {
                    udid,
                    record: Some(d),
                });
            }
        }
    } else {
        // The selector's filters narrow what the event named.
        out.retain(|a| keep(a.record.as_ref(), below.as_deref(), sel));
    }
    let mut seen = BTreeSet::new();
    out.retain(|a| seen.insert(a.udid.clone()));
    Ok(out)
}

/// True when the selector's filters let this device through.
fn keep(
    record: Option<&Device>,
    below: Option<&str>,
    sel: &fleetbus_config::DeviceSelector,
) -> bool {
    let Some(d) = record else {
        // Nothing known to filter on: only an unfiltered selector keeps it.
        return below.is_none() && sel.tag.is_none();
    };
    if let Some(min) = below {
        match &d.os_version {
            Some(v) if fleetbus_assets::compare_versions(v, min).is_lt() => {}
            _ => return false,
        }
    }
    if let Some(tag) = &sel.tag {
        if !d.tags.contains(tag) {
            return false;
        }
    }
    true
}

/// Strings at a JSONPath: one string, or an array of strings.
fn strings_at(path: &JsonPath, doc: &Value) -> Result<Vec<String>, DeliveryError> {
    match path.select(doc) {
        Some(Value::String(s)) => Ok(vec![s]),
        Some(Value::Array(items)) => items
            .into_iter()
            .map(|v| match v {
                Value::String(s) => Ok(s),
                other => Err(DeliveryError::Permanent(format!(
                    "{path} holds {other}, not a string"
                ))),
            })
            .collect(),
        Some(other) => Err(DeliveryError::Permanent(format!(
            "{path} holds {other}, not a string or a list of strings"
        ))),
        None => Err(DeliveryError::Permanent(format!(
            "{path} matches nothing in the event"
        ))),
    }
}

/// Stable across retries of the same delivery to the same device.
/// The ledger's entry for `uuid`: sent before, by an earlier attempt.
async fn ledger_entry(
    assets: &AsyncAssetStore,
    uuid: &str,
) -> Result<Option<CommandRecord>, DeliveryError> {
    let uuid = uuid.to_owned();
    assets
        .run("command", move |a| {
            Ok::<_, DeliveryError>(a.command(&uuid)?)
        })
        .await
}

pub(crate) fn command_uuid(idempotency_key: &str, udid: &str) -> String {
    uuid::Uuid::new_v5(
        &uuid::Uuid::NAMESPACE_OID,
        format!("fleetbus-mdm:{idempotency_key}:{udid}").as_bytes(),
    )
    .to_string()
    .to_uppercase()
}

/// Six random digits from the operating system's CSPRNG (via a v4 UUID's 122 random
/// bits; the modulo bias over 2^64 is negligible).
fn generate_pin() -> String {
    let bytes = uuid::Uuid::new_v4().into_bytes();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap_or([0; 8]));
    format!("{:06}", n % 1_000_000)
}

/// True when any string in `v` holds the placeholder `<name>`.
fn mentions(v: &Value, name: &str) -> bool {
    match v {
        Value::String(s) => fleetbus_config::placeholders(s).contains(&name),
        Value::Array(items) => items.iter().any(|i| mentions(i, name)),
        Value::Object(m) => m.values().any(|i| mentions(i, name)),
        _ => false,
    }
}

/// Replaces placeholders in every string. A string that is exactly one placeholder
/// takes the variable's JSON value (so numbers and booleans keep their type);
/// otherwise values are spliced in as text.
pub(crate) fn fill(v: &Value, vars: &Map<String, Value>) -> Result<Value, String> {
    Ok(match v {
        Value::String(s) => {
            let names = fleetbus_config::placeholders(s);
            if names.is_empty() {
                return Ok(v.clone());
            }
            if names.len() == 1 && s.len() == names[0].len() + 2 {
                return vars.get(names[0]).cloned().ok_or_else(|| missing(names[0]));
            }
            let mut out = s.clone();
            for name in names {
                let value = vars.get(name).ok_or_else(|| missing(name))?;
                let text = match value {
                    Value::String(t) => t.clone(),
                    other => other.to_string(),
                };
                out = out.replace(&format!("<{name}>"), &text);
            }
            Value::String(out)
        }
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|i| fill(i, vars))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(m) => {
            let mut out = Map::new();
            for (k, i) in m {
                out.insert(k.clone(), fill(i, vars)?);
            }
            Value::Object(out)
        }
        other => other.clone(),
    })
}

fn missing(name: &str) -> String {
    match name.strip_prefix("device.") {
        Some(field) => {
            format!("placeholder <{name}>: the device's {field} is not in the asset store")
        }
        None => format!("placeholder <{name}> has no value"),
    }
}

pub(crate) fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// `kind: mdm`.
pub(crate) fn build(t: &Target, cx: &BuildContext<'_>) -> Result<Box<dyn Deliver>, BuildError> {
    let TargetSpec::Mdm(spec) = &t.spec else {
        return Err(super::wrong_spec(t, "mdm"));
    };
    Ok(Box::new(MdmTargetImpl::new(&t.id, spec, t.timeout, cx)?))
}

impl Deliver for MdmTargetImpl {
    fn deliver<'a>(&'a self, _: &'a Payload, ctx: &'a DeliveryContext<'_>) -> DeliverFuture<'a> {
        // It reads the event itself: its "input" is the command.
        Box::pin(MdmTargetImpl::deliver(self, ctx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fill_keeps_types_for_whole_placeholders() {
        let vars: Map<String, Value> =
            serde_json::from_value(json!({"n": 3, "name": "Ada's Mac", "pin": "012345"})).unwrap();
        let t = json!({"MaxUserDeferrals": "<n>", "DeviceName": "<name>", "Message": "pin <pin> for <name>", "Other": 1});
        assert_eq!(
            fill(&t, &vars).unwrap(),
            json!({"MaxUserDeferrals": 3, "DeviceName": "Ada's Mac", "Message": "pin 012345 for Ada's Mac", "Other": 1})
        );
        let err = fill(&json!({"DeviceName": "<device.name>"}), &vars).unwrap_err();
        assert_eq!(
            err,
            "placeholder <device.name>: the device's name is not in the asset store"
        );
    }

    #[test]
    fn pins_are_six_digits_and_vary() {
        let pins: BTreeSet<String> = (0..50).map(|_| generate_pin()).collect();
        assert!(pins
            .iter()
            .all(|p| p.len() == 6 && p.bytes().all(|b| b.is_ascii_digit())));
        assert!(pins.len() > 40, "{pins:?}");
    }

    #[test]
    fn command_uuids_are_stable_per_delivery_and_device() {
        let a = command_uuid("e1:r:t", "UDID-1");
        assert_eq!(a, command_uuid("e1:r:t", "UDID-1"));
        assert_ne!(a, command_uuid("e1:r:t", "UDID-2"));
        assert_ne!(a, command_uuid("e2:r:t", "UDID-1"));
        assert_eq!(a, a.to_uppercase());
    }
}
