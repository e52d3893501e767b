//! `kind: mdm`: a command enqueued through NanoMDM or MicroMDM on selected devices.

use serde_json::Value;
use std::collections::BTreeMap;

use crate::jsonpath::Path as JsonPath;
use crate::kinds::Env;
use crate::load::Origin;
use crate::model::{DeviceSelector, MdmServer, MdmTarget, TargetSpec, MDM_BUILTIN_PLACEHOLDERS};
use crate::secret::Secret;
use crate::validate::{json_path, key, placeholders, require, Ctx};
use crate::yaml::PathSeg;
use schemars::JsonSchema;
use serde::Deserialize;

/// The fields of an `mdm` target.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMdm {
    /// `nanomdm` or `micromdm`.
    server: Option<String>,
    /// The server's base URL.
    url: Option<String>,
    /// The server's API key (a secret reference).
    api_key: Option<String>,
    /// Send an APNs push after enqueueing (default true): NanoMDM without
    /// `?nopush=1`, MicroMDM with `GET /push/{udid}` after the raw enqueue.
    push: Option<bool>,
    /// The `Command` dictionary with its `RequestType`, checked against Apple's
    /// schema; string values may hold `<name>` placeholders.
    mdm_command: Option<serde_json::Map<String, Value>>,
    /// Which devices get the command.
    devices: Option<RawDevices>,
    /// Placeholder values, each a JSONPath into the event.
    variables: Option<BTreeMap<String, String>>,
}

/// Where an mdm target's devices come from: paths into the event, asset-store
/// queries, or both (the queries then filter).
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDevices {
    /// JSONPath to a UDID (or a list of them) in the event.
    udid: Option<String>,
    /// JSONPath to a serial number (or a list); the UDID comes from the asset store.
    serial: Option<String>,
    /// JSONPath to a user id: all of that user's devices in the asset store.
    user: Option<String>,
    /// Only devices whose OS version is below this one, e.g. `14.6`, or below the
    /// version an event names (a JSONPath such as `$.detail.product_version`).
    os_below: Option<String>,
    /// Only devices with this tag.
    tag: Option<String>,
    /// Only devices enrolled now (default true for asset-store queries).
    enrolled_only: Option<bool>,
    /// Every device in the asset store (narrowed by the filters above). Must be
    /// said explicitly: an empty selector is an error, never "the whole fleet".
    all: Option<bool>,
}

/// An MDM server's kind (`nanomdm` when not said) and base URL, checked; shared
/// with the `software_update:` section's servers.
pub(crate) fn server_and_url(
    server: Option<&str>,
    url: Option<&str>,
    o: &Origin,
    cx: &mut Ctx<'_>,
) -> (MdmServer, String) {
    let server = match server {
        Some("nanomdm") | None => MdmServer::NanoMdm,
        Some("micromdm") => MdmServer::MicroMdm,
        Some(other) => {
            cx.errors.push(o.error(
                &[key("server")],
                format!("unknown MDM server {other:?} (expected nanomdm or micromdm)"),
            ));
            MdmServer::NanoMdm
        }
    };
    let url = url.unwrap_or_default().to_owned();
    if !(url.is_empty() || url.starts_with("http://") || url.starts_with("https://")) {
        cx.errors.push(o.error(
            &[key("url")],
            format!("{url:?} is not an http:// or https:// URL"),
        ));
    }
    (server, url)
}

/// Validates a target of this kind.
pub(crate) fn validate(fields: Value, o: &Origin, env: &Env<'_>, cx: &mut Ctx<'_>) -> TargetSpec {
    let t: RawMdm = crate::kinds::read(fields, o, cx);
    TargetSpec::Mdm(validate_mdm(&t, o, env, cx))
}

/// `kind: mdm`: the server, the command template (checked against Apple's schema
/// now, so a typo fails the load, not the first delivery) and the device selector.
fn validate_mdm(t: &RawMdm, o: &Origin, env: &Env<'_>, cx: &mut Ctx<'_>) -> MdmTarget {
    require(cx, o, env.name, "server", t.server.is_some());
    require(cx, o, env.name, "url", t.url.is_some());
    require(cx, o, env.name, "api_key", t.api_key.is_some());
    require(cx, o, env.name, "mdm_command", t.mdm_command.is_some());
    require(cx, o, env.name, "devices", t.devices.is_some());
    let (server, url) = server_and_url(t.server.as_deref(), t.url.as_deref(), o, cx);
    let api_key = t
        .api_key
        .as_deref()
        .map(|k| cx.secret(o, &[key("api_key")], k))
        .unwrap_or_else(Secret::empty);
    let mut variables = BTreeMap::new();
    for (name, path) in t.variables.iter().flatten() {
        if let Some(p) = json_path(path, o, &[key("variables"), key(name)], cx) {
            variables.insert(name.clone(), p);
        }
    }
    let mut payload = t.mdm_command.clone().unwrap_or_default();
    let request_type = match payload.remove("RequestType") {
        Some(Value::String(r)) => r,
        Some(other) => {
            cx.errors.push(o.error(
                &[key("mdm_command"), key("RequestType")],
                format!("must be a string, found {other}"),
            ));
            String::new()
        }
        None => {
            if t.mdm_command.is_some() {
                cx.errors.push(o.error(
                    &[key("mdm_command")],
                    "missing required key RequestType (e.g. DeviceLock)",
                ));
            }
            String::new()
        }
    };
    if !request_type.is_empty() {
        check_mdm_command(&request_type, &payload, &variables, o, cx);
    }
    let devices = t
        .devices
        .as_ref()
        .map(|d| {
            let dp = [key("devices")];
            let path = |p: &Option<String>, name: &str, cx: &mut Ctx<'_>| {
                p.as_deref()
                    .and_then(|p| json_path(p, o, &[dp[0].clone(), key(name)], cx))
            };
            let selector = DeviceSelector {
                udid: path(&d.udid, "udid", cx),
                serial: path(&d.serial, "serial", cx),
                user: path(&d.user, "user", cx),
                os_below: d
                    .os_below
                    .as_deref()
                    .map(|t| crate::validate::field(t, o, &[dp[0].clone(), key("os_below")], cx)),
                tag: d.tag.clone(),
                enrolled_only: d.enrolled_only.unwrap_or(true),
                all: d.all.unwrap_or(false),
            };
            let named = selector.udid.is_some()
                || selector.serial.is_some()
                || selector.user.is_some()
                || selector.os_below.is_some()
                || selector.tag.is_some();
            if !named && !selector.all {
                cx.errors.push(o.error(
                    &dp,
                    "names no devices (give udid, serial, user, os_below or tag; all: true addresses every device)",
                ));
            }
            if selector.all && (selector.udid.is_some() || selector.serial.is_some() || selector.user.is_some()) {
                cx.errors.push(o.error(
                    &[key("devices"), key("all")],
                    "cannot be combined with udid, serial or user",
                ));
            }
            if selector.udid.is_some() && selector.serial.is_some() && selector.user.is_some() {
                cx.errors.push(o.error(
                    &dp,
                    "user cannot be combined with udid and serial (pick the event's devices or the user's)",
                ));
            }
            selector
        })
        .unwrap_or_default();
    MdmTarget {
        server,
        url: url.trim_end_matches('/').to_owned(),
        api_key,
        push: t.push.unwrap_or(true),
        request_type,
        payload,
        devices,
        variables,
    }
}

/// Checks the template against the catalog with every placeholder still in place;
/// placeholders must name a variable or a built-in.
fn check_mdm_command(
    request_type: &str,
    payload: &serde_json::Map<String, Value>,
    variables: &BTreeMap<String, JsonPath>,
    o: &Origin,
    cx: &mut Ctx<'_>,
) {
    let mut strings = Vec::new();
    collect_strings(&Value::Object(payload.clone()), &mut strings);
    for s in strings {
        for name in placeholders(&s) {
            if !variables.contains_key(name) && !MDM_BUILTIN_PLACEHOLDERS.contains(&name) {
                let mut known: Vec<&str> = variables.keys().map(String::as_str).collect();
                known.extend(MDM_BUILTIN_PLACEHOLDERS);
                cx.errors.push(o.error(
                    &[key("mdm_command")],
                    format!(
                        "unknown placeholder <{name}> (declare it under variables, or use one of: {})",
                        known.join(", ")
                    ),
                ));
            }
        }
    }
    match fleetbus_mdm::validate_command_payload(request_type, &Value::Object(payload.clone())) {
        Ok(()) => {}
        Err(fleetbus_mdm::MdmError::InvalidPayload { problems, .. }) => {
            for p in problems {
                let mut at = vec![key("mdm_command")];
                at.extend(problem_path(&p.path));
                cx.errors.push(o.error(&at, p.to_string()));
            }
        }
        Err(e) => cx
            .errors
            .push(o.error(&[key("mdm_command"), key("RequestType")], e.to_string())),
    }
}

fn collect_strings(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Array(items) => items.iter().for_each(|i| collect_strings(i, out)),
        Value::Object(m) => m.values().for_each(|i| collect_strings(i, out)),
        _ => {}
    }
}

/// `Settings[0].DeviceName` -> key, index, key.
fn problem_path(path: &str) -> Vec<PathSeg> {
    let mut out = Vec::new();
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let mut rest = part;
        if let Some(i) = rest.find('[') {
            out.push(key(&rest[..i]));
            rest = &rest[i..];
            while let Some(end) = rest.find(']') {
                if let Ok(n) = rest[1..end].parse() {
                    out.push(PathSeg::Index(n));
                }
                rest = &rest[end + 1..];
            }
        } else {
            out.push(key(rest));
        }
    }
    out
}
