//! Parsing what devices send: command reports (`Status` with `ErrorChain`,
//! `QueryResponses`, ...) and check-in messages (`MessageType`), from XML or binary
//! plists. Everything becomes JSON-friendly structs (data as base64, dates RFC 3339).

use std::fmt;

use serde::{Serialize, Serializer};
use serde_json::{Map, Value};

use crate::value::{decode_base64, plist_to_json, read_plist};
use crate::MdmError;

/// The `Status` of a command report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    Acknowledged,
    Error,
    CommandFormatError,
    Idle,
    NotNow,
    /// A status this crate does not know (kept verbatim).
    Other(String),
}

impl Status {
    /// Parses Apple's spelling.
    pub fn parse(s: &str) -> Status {
        match s {
            "Acknowledged" => Status::Acknowledged,
            "Error" => Status::Error,
            "CommandFormatError" => Status::CommandFormatError,
            "Idle" => Status::Idle,
            "NotNow" => Status::NotNow,
            other => Status::Other(other.to_string()),
        }
    }

    /// Apple's spelling.
    pub fn as_str(&self) -> &str {
        match self {
            Status::Acknowledged => "Acknowledged",
            Status::Error => "Error",
            Status::CommandFormatError => "CommandFormatError",
            Status::Idle => "Idle",
            Status::NotNow => "NotNow",
            Status::Other(s) => s,
        }
    }

    /// Whether the report answers a command (not just "Idle" polling).
    pub fn is_command_result(&self) -> bool {
        !matches!(self, Status::Idle)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Status {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// One entry of a report's `ErrorChain`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ErrorChainItem {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_code: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_domain: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub localized_description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub us_english_description: Option<String>,
}

/// A device's command report (the body it sends to the server URL).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CommandResponse {
    pub status: Status,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command_uuid: Option<String>,
    /// Present when the device echoes it (some responses do).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub udid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enrollment_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enrollment_user_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_short_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_long_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_on_console: Option<bool>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub error_chain: Vec<ErrorChainItem>,
    /// `QueryResponses` of a DeviceInformation report.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub query_responses: Option<Value>,
    /// Every other key (the command's response keys), as JSON.
    #[serde(skip_serializing_if = "Map::is_empty")]
    pub fields: Map<String, Value>,
}

/// A check-in message (Authenticate, TokenUpdate, CheckOut, ...).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CheckinMessage {
    pub message_type: String,
    /// Whether the catalog knows this message type.
    pub known: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub udid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enrollment_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub serial_number: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub product_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub os_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub build_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_short_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_long_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub awaiting_configuration: Option<bool>,
    /// The declarative-management `Data` decoded as JSON, when it is JSON.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub declarative_data: Option<Value>,
    /// The whole message as JSON.
    pub fields: Map<String, Value>,
}

/// A parsed command plist (the server-to-device direction).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CommandMessage {
    pub request_type: String,
    pub command_uuid: String,
    /// The `Command` keys other than `RequestType`.
    pub payload: Map<String, Value>,
}

/// Any MDM plist: a command report, a check-in message or a command.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Message {
    Response(CommandResponse),
    Checkin(CheckinMessage),
    Command(CommandMessage),
}

fn read_dict(bytes: &[u8]) -> Result<Map<String, Value>, MdmError> {
    match plist_to_json(&read_plist(bytes)?) {
        Value::Object(m) => Ok(m),
        _ => Err(MdmError::Shape(
            "an MDM message must be a plist dictionary".into(),
        )),
    }
}

fn take_str(m: &mut Map<String, Value>, k: &str) -> Option<String> {
    match m.get(k) {
        Some(Value::String(s)) => {
            let s = s.clone();
            m.remove(k);
            Some(s)
        }
        _ => None,
    }
}

fn take_bool(m: &mut Map<String, Value>, k: &str) -> Option<bool> {
    match m.get(k) {
        Some(Value::Bool(b)) => {
            let b = *b;
            m.remove(k);
            Some(b)
        }
        _ => None,
    }
}

fn str_of(m: &Map<String, Value>, k: &str) -> Option<String> {
    m.get(k).and_then(Value::as_str).map(str::to_string)
}

/// Parses a command report (must have a `Status` string).
pub fn parse_response(bytes: &[u8]) -> Result<CommandResponse, MdmError> {
    response_from_map(read_dict(bytes)?)
}

fn response_from_map(mut m: Map<String, Value>) -> Result<CommandResponse, MdmError> {
    let status = take_str(&mut m, "Status")
        .ok_or_else(|| MdmError::Shape("not a command report: no Status string".into()))?;
    let error_chain = match m.remove("ErrorChain") {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_object)
            .map(|e| ErrorChainItem {
                error_code: e.get("ErrorCode").and_then(Value::as_i64),
                error_domain: str_of(e, "ErrorDomain"),
                localized_description: str_of(e, "LocalizedDescription"),
                us_english_description: str_of(e, "USEnglishDescription"),
            })
            .collect(),
        // Keep an unexpected shape visible rather than dropping it.
        Some(other) => {
            m.insert("ErrorChain".into(), other);
            Vec::new()
        }
        None => Vec::new(),
    };
    Ok(CommandResponse {
        status: Status::parse(&status),
        command_uuid: take_str(&mut m, "CommandUUID"),
        request_type: take_str(&mut m, "RequestType"),
        udid: take_str(&mut m, "UDID"),
        enrollment_id: take_str(&mut m, "EnrollmentID"),
        enrollment_user_id: take_str(&mut m, "EnrollmentUserID"),
        user_id: take_str(&mut m, "UserID"),
        user_short_name: take_str(&mut m, "UserShortName"),
        user_long_name: take_str(&mut m, "UserLongName"),
        not_on_console: take_bool(&mut m, "NotOnConsole"),
        error_chain,
        query_responses: m.remove("QueryResponses"),
        fields: m,
    })
}

/// Parses a check-in message (must have a `MessageType` string).
pub fn parse_checkin(bytes: &[u8]) -> Result<CheckinMessage, MdmError> {
    checkin_from_map(read_dict(bytes)?)
}

fn checkin_from_map(m: Map<String, Value>) -> Result<CheckinMessage, MdmError> {
    let message_type = str_of(&m, "MessageType")
        .ok_or_else(|| MdmError::Shape("not a check-in message: no MessageType string".into()))?;
    let declarative_data = if message_type == "DeclarativeManagement" {
        str_of(&m, "Data")
            .and_then(|d| decode_base64(&d))
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
    } else {
        None
    };
    let bool_of = |k: &str| m.get(k).and_then(Value::as_bool);
    Ok(CheckinMessage {
        known: crate::catalog().checkin(&message_type).is_some(),
        udid: str_of(&m, "UDID"),
        enrollment_id: str_of(&m, "EnrollmentID"),
        serial_number: str_of(&m, "SerialNumber"),
        model: str_of(&m, "Model"),
        model_name: str_of(&m, "ModelName"),
        product_name: str_of(&m, "ProductName"),
        os_version: str_of(&m, "OSVersion"),
        build_version: str_of(&m, "BuildVersion"),
        device_name: str_of(&m, "DeviceName"),
        topic: str_of(&m, "Topic"),
        user_id: str_of(&m, "UserID"),
        user_short_name: str_of(&m, "UserShortName"),
        user_long_name: str_of(&m, "UserLongName"),
        awaiting_configuration: bool_of("AwaitingConfiguration"),
        declarative_data,
        message_type,
        fields: m,
    })
}

/// Parses any MDM plist, telling a check-in (`MessageType`), a command report
/// (`Status`) and a command (`Command` + `CommandUUID`) apart.
pub fn parse_message(bytes: &[u8]) -> Result<Message, MdmError> {
    let m = read_dict(bytes)?;
    if m.get("MessageType").is_some_and(Value::is_string) {
        return checkin_from_map(m).map(Message::Checkin);
    }
    if m.get("Status").is_some_and(Value::is_string) {
        return response_from_map(m).map(Message::Response);
    }
    if let (Some(Value::Object(cmd)), Some(Value::String(uuid))) =
        (m.get("Command"), m.get("CommandUUID"))
    {
        let mut payload = cmd.clone();
        let request_type = take_str(&mut payload, "RequestType")
            .ok_or_else(|| MdmError::Shape("command has no RequestType string".into()))?;
        return Ok(Message::Command(CommandMessage {
            request_type,
            command_uuid: uuid.clone(),
            payload,
        }));
    }
    Err(MdmError::Shape(
        "neither a check-in (MessageType), a command report (Status) nor a command (Command, CommandUUID)"
            .into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ERROR_REPORT: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">
<dict>
	<key>CommandUUID</key>
	<string>0a9b7f3e-2c51-4e0c-8d7a-3f1e2b4c5d6e</string>
	<key>ErrorChain</key>
	<array>
		<dict>
			<key>ErrorCode</key>
			<integer>12078</integer>
			<key>ErrorDomain</key>
			<string>MCMDMErrorDomain</string>
			<key>LocalizedDescription</key>
			<string>The “Lock” command requires a passcode.</string>
			<key>USEnglishDescription</key>
			<string>The “Lock” command requires a passcode.</string>
		</dict>
	</array>
	<key>Status</key>
	<string>Error</string>
	<key>UDID</key>
	<string>00008103-0012345678901234</string>
</dict>
</plist>"#;

    #[test]
    fn error_report_with_chain() {
        let r = parse_response(ERROR_REPORT.as_bytes()).unwrap();
        assert_eq!(r.status, Status::Error);
        assert_eq!(r.error_chain.len(), 1);
        assert_eq!(r.error_chain[0].error_code, Some(12078));
        assert_eq!(
            r.error_chain[0].error_domain.as_deref(),
            Some("MCMDMErrorDomain")
        );
        assert!(r.fields.is_empty());
        let j = serde_json::to_value(&r).unwrap();
        assert_eq!(j["status"], "Error");
        assert_eq!(j["error_chain"][0]["error_code"], 12078);
    }

    #[test]
    fn messages_are_told_apart() {
        assert!(matches!(
            parse_message(ERROR_REPORT.as_bytes()).unwrap(),
            Message::Response(_)
        ));
        let mut d = plist::Dictionary::new();
        d.insert(
            "MessageType".into(),
            plist::Value::String("CheckOut".into()),
        );
        d.insert("UDID".into(), plist::Value::String("U1".into()));
        let bin = crate::value::write_binary(&plist::Value::Dictionary(d)).unwrap();
        match parse_message(&bin).unwrap() {
            Message::Checkin(c) => {
                assert_eq!(c.message_type, "CheckOut");
                assert!(c.known);
                assert_eq!(c.udid.as_deref(), Some("U1"));
            }
            other => panic!("{other:?}"),
        }
        let cmd = crate::build_command("ProfileList", serde_json::json!({})).unwrap();
        assert!(matches!(
            parse_message(&cmd.to_xml().unwrap()).unwrap(),
            Message::Command(_)
        ));
        assert!(parse_message(b"<plist><array/></plist>").is_err());
    }

    #[test]
    fn declarative_data_is_decoded() {
        let data = br#"{"SynchronizationTokens":{}}"#.to_vec();
        let mut d = plist::Dictionary::new();
        d.insert(
            "MessageType".into(),
            plist::Value::String("DeclarativeManagement".into()),
        );
        d.insert("Endpoint".into(), plist::Value::String("status".into()));
        d.insert("Data".into(), plist::Value::Data(data));
        let xml = crate::value::write_xml(&plist::Value::Dictionary(d)).unwrap();
        let c = parse_checkin(&xml).unwrap();
        assert_eq!(
            c.declarative_data,
            Some(serde_json::json!({"SynchronizationTokens":{}}))
        );
    }
}
