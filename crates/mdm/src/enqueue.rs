//! Requests that enqueue a command through an MDM server's API, as plain data (method,
//! path with query, headers, body). The caller adds the server's base URL and does the
//! HTTP I/O.
//!
//! - NanoMDM: `PUT /v1/enqueue/{id,id,...}` with the command plist as body, HTTP Basic
//!   auth `nanomdm:<API key>`, `?nopush=1` to skip the APNs push. The JSON answer is
//!   read by [`nanomdm::parse_result`].
//! - MicroMDM: `POST /v1/commands/{udid}` with the raw command plist (what the mdm
//!   target sends: every command of Apple's catalog, whether MicroMDM's JSON schema
//!   knows it or not), answered 201 with `{"payload": {"command_uuid", ...}}`; that
//!   endpoint does not push, so `GET /push/{udid}` follows when pushing. Its JSON
//!   form, `POST /v1/commands` (`udid`, `request_type`, `command_uuid` and the keys in
//!   snake_case), is kept for callers that want it. Basic auth `micromdm:<API key>`.

use serde::Serialize;
use serde_json::{Map, Value};

use crate::catalog::{KeySpec, ValueType};
use crate::value::encode_base64;
use crate::{Command, MdmError};

/// An HTTP request to send; `path` includes the query string.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HttpRequest {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpRequest {
    /// The value of a header (case-insensitive name).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// `Basic base64(user:password)`.
pub fn basic_auth(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        encode_base64(format!("{user}:{password}").as_bytes())
    )
}

/// Percent-encodes one path segment (keeps RFC 3986 unreserved characters and `:`,
/// which NanoMDM user-channel ids contain).
fn encode_segment(s: &str) -> String {
    const KEEP: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~')
        .remove(b':');
    percent_encoding::utf8_percent_encode(s, KEEP).to_string()
}

fn check_ids(ids: &[&str]) -> Result<(), MdmError> {
    if ids.is_empty() {
        return Err(MdmError::Value {
            key: "ids".into(),
            reason: "at least one enrollment id is needed".into(),
        });
    }
    if let Some(bad) = ids.iter().find(|i| i.is_empty() || i.contains(',')) {
        return Err(MdmError::Value {
            key: "ids".into(),
            reason: format!("enrollment id {bad:?} is empty or contains a comma"),
        });
    }
    Ok(())
}

/// NanoMDM's enqueue API.
pub mod nanomdm {
    use super::*;

    /// The basic-auth user NanoMDM expects.
    pub const USER: &str = "nanomdm";

    /// `PUT /v1/enqueue/{ids}`: the command plist for these enrollment ids; `push`
    /// false adds `?nopush=1`.
    pub fn enqueue_request(
        command: &Command,
        ids: &[&str],
        api_key: &str,
        push: bool,
    ) -> Result<HttpRequest, MdmError> {
        check_ids(ids)?;
        let joined: Vec<String> = ids.iter().map(|i| encode_segment(i)).collect();
        let mut path = format!("/v1/enqueue/{}", joined.join(","));
        if !push {
            path.push_str("?nopush=1");
        }
        Ok(HttpRequest {
            method: "PUT".into(),
            path,
            headers: vec![
                ("Authorization".into(), basic_auth(USER, api_key)),
                ("Content-Type".into(), "application/xml".into()),
            ],
            body: command.to_xml()?,
        })
    }

    /// NanoMDM's answer to an enqueue call.
    #[derive(Debug, Clone, PartialEq, Serialize)]
    pub struct EnqueueResult {
        pub command_uuid: Option<String>,
        pub request_type: Option<String>,
        pub no_push: bool,
        /// Per enrollment id: the APNs push id, or an error.
        pub status: Map<String, Value>,
        /// Errors: the call's own, and each id's push or enqueue error.
        pub errors: Vec<String>,
    }

    /// Reads the JSON answer (`{status: {id: {push_result|push_error|command_error}},
    /// no_push, command_uuid, request_type, push_error, command_error}`).
    pub fn parse_result(body: &[u8]) -> Result<EnqueueResult, MdmError> {
        let v: Value = serde_json::from_slice(body)
            .map_err(|e| MdmError::Shape(format!("nanomdm answer is not JSON: {e}")))?;
        let Value::Object(m) = v else {
            return Err(MdmError::Shape(
                "nanomdm answer is not a JSON object".into(),
            ));
        };
        let s = |k: &str| m.get(k).and_then(Value::as_str).map(str::to_string);
        let status = m
            .get("status")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let mut errors = Vec::new();
        for k in ["push_error", "command_error"] {
            if let Some(e) = m.get(k).filter(|e| !e.is_null()) {
                errors.push(format!("{k}: {}", show(e)));
            }
        }
        for (id, r) in &status {
            for k in ["push_error", "command_error"] {
                if let Some(e) = r.get(k).filter(|e| !e.is_null()) {
                    errors.push(format!("{id} {k}: {}", show(e)));
                }
            }
        }
        Ok(EnqueueResult {
            command_uuid: s("command_uuid"),
            request_type: s("request_type"),
            no_push: m.get("no_push").and_then(Value::as_bool).unwrap_or(false),
            status,
            errors,
        })
    }

    fn show(e: &Value) -> String {
        match e {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        }
    }
}

/// MicroMDM's commands API.
pub mod micromdm {
    use super::*;

    /// The basic-auth user MicroMDM expects.
    pub const USER: &str = "micromdm";

    /// `POST /v1/commands` with MicroMDM's JSON form of the command.
    pub fn enqueue_request(
        command: &Command,
        udid: &str,
        api_key: &str,
    ) -> Result<HttpRequest, MdmError> {
        check_ids(&[udid])?;
        let body = serde_json::to_vec(&command_json(command, udid))
            .map_err(|e| MdmError::Shape(e.to_string()))?;
        Ok(HttpRequest {
            method: "POST".into(),
            path: "/v1/commands".into(),
            headers: vec![
                ("Authorization".into(), basic_auth(USER, api_key)),
                ("Content-Type".into(), "application/json".into()),
            ],
            body,
        })
    }

    /// `POST /v1/commands/{udid}` with the raw command plist (any command, unvalidated
    /// by MicroMDM).
    pub fn raw_enqueue_request(
        command: &Command,
        udid: &str,
        api_key: &str,
    ) -> Result<HttpRequest, MdmError> {
        check_ids(&[udid])?;
        Ok(HttpRequest {
            method: "POST".into(),
            path: format!("/v1/commands/{}", encode_segment(udid)),
            headers: vec![
                ("Authorization".into(), basic_auth(USER, api_key)),
                ("Content-Type".into(), "application/xml".into()),
            ],
            body: command.to_xml()?,
        })
    }

    /// `GET /push/{udid}`: an APNs push so the device checks in for what was queued
    /// (the raw endpoint queues without pushing).
    pub fn push_request(udid: &str, api_key: &str) -> Result<HttpRequest, MdmError> {
        check_ids(&[udid])?;
        Ok(HttpRequest {
            method: "GET".into(),
            path: format!("/push/{}", encode_segment(udid)),
            headers: vec![("Authorization".into(), basic_auth(USER, api_key))],
            body: Vec::new(),
        })
    }

    /// MicroMDM's JSON for a command: `udid`, `request_type`, `command_uuid`, then the
    /// command's keys in snake_case (data as base64). Keys inside free-form
    /// dictionaries (`ANY` keys, `<any>` values) are left as they are.
    pub fn command_json(command: &Command, udid: &str) -> Value {
        let mut out = Map::new();
        out.insert("udid".into(), Value::String(udid.to_string()));
        out.insert(
            "request_type".into(),
            Value::String(command.request_type.clone()),
        );
        out.insert(
            "command_uuid".into(),
            Value::String(command.command_uuid.clone()),
        );
        let keys = crate::catalog()
            .command(&command.request_type)
            .map(|s| s.keys.as_slice())
            .unwrap_or(&[]);
        if let Value::Object(m) = snake_dict(keys, &command.payload_json()) {
            out.extend(m);
        }
        Value::Object(out)
    }

    fn snake_dict(keys: &[KeySpec], m: &Map<String, Value>) -> Value {
        Value::Object(
            m.iter()
                .map(
                    |(k, v)| match keys.iter().find(|s| !s.is_wildcard() && s.key == *k) {
                        Some(spec) => (snake_key(k), snake_value(spec, v)),
                        None => (k.clone(), v.clone()),
                    },
                )
                .collect(),
        )
    }

    fn snake_value(spec: &KeySpec, v: &Value) -> Value {
        match (spec.ty, v) {
            (ValueType::Dictionary, Value::Object(m)) => snake_dict(&spec.subkeys, m),
            (ValueType::Array, Value::Array(items)) => Value::Array(
                items
                    .iter()
                    .map(|item| {
                        let alt = match spec.subkeys.as_slice() {
                            [one] => Some(one),
                            many => many.iter().find(|alt| {
                                alt.subkeys.iter().any(|k| {
                                    k.allowed.len() == 1 && item.get(&k.key) == k.allowed.first()
                                })
                            }),
                        };
                        match alt {
                            Some(a) => snake_value(a, item),
                            None => item.clone(),
                        }
                    })
                    .collect(),
            ),
            _ => v.clone(),
        }
    }

    /// Apple's key name in MicroMDM's JSON spelling (Go-style snake_case with the
    /// exceptions MicroMDM's schema makes).
    pub fn snake_key(key: &str) -> String {
        match key {
            "HostName" => return "hostname".into(),
            "FilterExtensionPoints" => return "filter_extensions_points".into(),
            _ => {}
        }
        let chars: Vec<char> = key.chars().collect();
        let mut out = String::with_capacity(key.len() + 4);
        for (i, &c) in chars.iter().enumerate() {
            if c.is_ascii_uppercase() {
                let prev = i.checked_sub(1).and_then(|p| chars.get(p));
                let next = chars.get(i + 1);
                let boundary = match prev {
                    Some(p) if p.is_ascii_lowercase() || p.is_ascii_digit() => true,
                    Some(p) if p.is_ascii_uppercase() => {
                        next.is_some_and(|n| n.is_ascii_lowercase())
                    }
                    _ => false,
                };
                if boundary {
                    out.push('_');
                }
                out.push(c.to_ascii_lowercase());
            } else {
                out.push(c);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn micromdm_takes_the_raw_plist_at_the_udid_and_a_push_after() {
        let command = crate::CommandBuilder::new("DeviceInformation")
            .command_uuid("0001")
            .payload(
                serde_json::json!({"Queries": ["OSVersion"]})
                    .as_object()
                    .unwrap()
                    .clone(),
            )
            .build()
            .unwrap();
        let raw = micromdm::raw_enqueue_request(&command, "UDID 1", "k").unwrap();
        assert_eq!(
            (raw.method.as_str(), raw.path.as_str()),
            ("POST", "/v1/commands/UDID%201")
        );
        assert_eq!(crate::parse_command(&raw.body).unwrap(), command);
        let push = micromdm::push_request("UDID-1", "k").unwrap();
        assert_eq!(
            (push.method.as_str(), push.path.as_str()),
            ("GET", "/push/UDID-1")
        );
        assert_eq!(
            push.header("authorization"),
            Some(basic_auth("micromdm", "k").as_str())
        );
        assert!(micromdm::push_request("", "k").is_err());
    }
    use serde_json::json;

    #[test]
    fn snake_keys_match_micromdm() {
        use micromdm::snake_key;
        assert_eq!(snake_key("PIN"), "pin");
        assert_eq!(snake_key("MDMOptions"), "mdm_options");
        assert_eq!(snake_key("PhoneNumber"), "phone_number");
        assert_eq!(snake_key("MaxUserDeferrals"), "max_user_deferrals");
        assert_eq!(snake_key("HostName"), "hostname");
        assert_eq!(snake_key("Queries"), "queries");
    }

    #[test]
    fn nanomdm_request_has_auth_ids_and_plist() {
        let cmd = crate::build_command("DeviceLock", json!({"PIN": "123456"})).unwrap();
        let r =
            nanomdm::enqueue_request(&cmd, &["UDID-1", "UDID-2:user 1"], "sekrit", false).unwrap();
        assert_eq!(r.method, "PUT");
        assert_eq!(r.path, "/v1/enqueue/UDID-1,UDID-2:user%201?nopush=1");
        assert_eq!(
            r.header("authorization"),
            Some("Basic bmFub21kbTpzZWtyaXQ=")
        );
        assert_eq!(crate::parse_command(&r.body).unwrap(), cmd);
        assert!(nanomdm::enqueue_request(&cmd, &[], "k", true).is_err());
        assert!(nanomdm::enqueue_request(&cmd, &["a,b"], "k", true).is_err());
    }

    #[test]
    fn nanomdm_result_is_read() {
        let body = br#"{"status":{"U1":{"push_result":"16C8"},"U2":{"push_error":"no push info"}},"command_uuid":"c1","request_type":"ProfileList"}"#;
        let r = nanomdm::parse_result(body).unwrap();
        assert_eq!(r.command_uuid.as_deref(), Some("c1"));
        assert_eq!(r.errors, vec!["U2 push_error: no push info".to_string()]);
        assert!(nanomdm::parse_result(b"[]").is_err());
    }

    #[test]
    fn micromdm_json_uses_snake_case_and_base64() {
        let cmd = crate::CommandBuilder::new("ScheduleOSUpdate")
            .command_uuid("u1")
            .key(
                "Updates",
                json!([{"InstallAction": "InstallLater", "MaxUserDeferrals": 3, "ProductVersion": "14.5"}]),
            )
            .build()
            .unwrap();
        let r = micromdm::enqueue_request(&cmd, "UDID-1", "k").unwrap();
        assert_eq!(r.method, "POST");
        assert_eq!(r.path, "/v1/commands");
        assert_eq!(r.header("Authorization"), Some("Basic bWljcm9tZG06aw=="));
        let v: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(
            v,
            json!({"udid": "UDID-1", "request_type": "ScheduleOSUpdate", "command_uuid": "u1",
                   "updates": [{"install_action": "InstallLater", "max_user_deferrals": 3, "product_version": "14.5"}]})
        );
        let settings = crate::build_command(
            "Settings",
            json!({"Settings": [{"Item": "DeviceName", "DeviceName": "Mac"}]}),
        )
        .unwrap();
        let v = micromdm::command_json(&settings, "U");
        assert_eq!(
            v["settings"],
            json!([{"item": "DeviceName", "device_name": "Mac"}])
        );
        let profile = crate::build_command("InstallProfile", json!({"Payload": "aGk="})).unwrap();
        assert_eq!(micromdm::command_json(&profile, "U")["payload"], "aGk=");
        let raw = micromdm::raw_enqueue_request(&profile, "UDID-1", "k").unwrap();
        assert_eq!(raw.path, "/v1/commands/UDID-1");
        assert_eq!(crate::parse_command(&raw.body).unwrap(), profile);
    }
}
