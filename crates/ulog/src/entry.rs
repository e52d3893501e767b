//! One unified-log entry as `log show --style json|ndjson` prints it.
//!
//! Every field is kept: the fields fleetbus knows are stored typed (strings borrowed from
//! the input when they contain no escapes), every other field is kept as raw JSON in
//! input order, so nothing `log` emits is lost.

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use time::OffsetDateTime;

/// String-valued fields `log` emits (or that other producers add, like `process`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StrField {
    Timestamp,
    MessageType,
    EventType,
    Subsystem,
    Category,
    Process,
    Sender,
    ProcessImagePath,
    SenderImagePath,
    EventMessage,
    ComposedMessage,
    FormatString,
    ProcessImageUuid,
    SenderImageUuid,
    BootUuid,
    TimezoneName,
    SignpostName,
    SignpostScope,
    SignpostType,
}

impl StrField {
    /// Every string field, in storage order.
    pub const ALL: [StrField; 19] = [
        StrField::Timestamp,
        StrField::MessageType,
        StrField::EventType,
        StrField::Subsystem,
        StrField::Category,
        StrField::Process,
        StrField::Sender,
        StrField::ProcessImagePath,
        StrField::SenderImagePath,
        StrField::EventMessage,
        StrField::ComposedMessage,
        StrField::FormatString,
        StrField::ProcessImageUuid,
        StrField::SenderImageUuid,
        StrField::BootUuid,
        StrField::TimezoneName,
        StrField::SignpostName,
        StrField::SignpostScope,
        StrField::SignpostType,
    ];

    /// The JSON key `log` uses.
    pub fn json_key(self) -> &'static str {
        match self {
            StrField::Timestamp => "timestamp",
            StrField::MessageType => "messageType",
            StrField::EventType => "eventType",
            StrField::Subsystem => "subsystem",
            StrField::Category => "category",
            StrField::Process => "process",
            StrField::Sender => "sender",
            StrField::ProcessImagePath => "processImagePath",
            StrField::SenderImagePath => "senderImagePath",
            StrField::EventMessage => "eventMessage",
            StrField::ComposedMessage => "composedMessage",
            StrField::FormatString => "formatString",
            StrField::ProcessImageUuid => "processImageUUID",
            StrField::SenderImageUuid => "senderImageUUID",
            StrField::BootUuid => "bootUUID",
            StrField::TimezoneName => "timezoneName",
            StrField::SignpostName => "signpostName",
            StrField::SignpostScope => "signpostScope",
            StrField::SignpostType => "signpostType",
        }
    }

    fn from_json_key(key: &str) -> Option<StrField> {
        // A `match` compiles to a length switch plus one comparison: this runs for every
        // field of every entry.
        Some(match key {
            "timestamp" => StrField::Timestamp,
            "messageType" => StrField::MessageType,
            "eventType" => StrField::EventType,
            "subsystem" => StrField::Subsystem,
            "category" => StrField::Category,
            "process" => StrField::Process,
            "sender" => StrField::Sender,
            "processImagePath" => StrField::ProcessImagePath,
            "senderImagePath" => StrField::SenderImagePath,
            "eventMessage" => StrField::EventMessage,
            "composedMessage" => StrField::ComposedMessage,
            "formatString" => StrField::FormatString,
            "processImageUUID" => StrField::ProcessImageUuid,
            "senderImageUUID" => StrField::SenderImageUuid,
            "bootUUID" => StrField::BootUuid,
            "timezoneName" => StrField::TimezoneName,
            "signpostName" => StrField::SignpostName,
            "signpostScope" => StrField::SignpostScope,
            "signpostType" => StrField::SignpostType,
            _ => return None,
        })
    }
}

/// Integer-valued fields `log` emits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NumField {
    ProcessId,
    ThreadId,
    ActivityIdentifier,
    ParentActivityIdentifier,
    TraceId,
    MachTimestamp,
    SenderProgramCounter,
    UserId,
    SignpostId,
    ProcessUniqueId,
    CreatorActivityId,
}

impl NumField {
    /// Every integer field, in storage order.
    pub const ALL: [NumField; 11] = [
        NumField::ProcessId,
        NumField::ThreadId,
        NumField::ActivityIdentifier,
        NumField::ParentActivityIdentifier,
        NumField::TraceId,
        NumField::MachTimestamp,
        NumField::SenderProgramCounter,
        NumField::UserId,
        NumField::SignpostId,
        NumField::ProcessUniqueId,
        NumField::CreatorActivityId,
    ];

    /// The JSON key `log` uses.
    pub fn json_key(self) -> &'static str {
        match self {
            NumField::ProcessId => "processID",
            NumField::ThreadId => "threadID",
            NumField::ActivityIdentifier => "activityIdentifier",
            NumField::ParentActivityIdentifier => "parentActivityIdentifier",
            NumField::TraceId => "traceID",
            NumField::MachTimestamp => "machTimestamp",
            NumField::SenderProgramCounter => "senderProgramCounter",
            NumField::UserId => "userID",
            NumField::SignpostId => "signpostID",
            NumField::ProcessUniqueId => "processUniqueID",
            NumField::CreatorActivityId => "creatorActivityID",
        }
    }

    fn from_json_key(key: &str) -> Option<NumField> {
        Some(match key {
            "processID" => NumField::ProcessId,
            "threadID" => NumField::ThreadId,
            "activityIdentifier" => NumField::ActivityIdentifier,
            "parentActivityIdentifier" => NumField::ParentActivityIdentifier,
            "traceID" => NumField::TraceId,
            "machTimestamp" => NumField::MachTimestamp,
            "senderProgramCounter" => NumField::SenderProgramCounter,
            "userID" => NumField::UserId,
            "signpostID" => NumField::SignpostId,
            "processUniqueID" => NumField::ProcessUniqueId,
            "creatorActivityID" => NumField::CreatorActivityId,
            _ => return None,
        })
    }
}

/// A unified-log entry, borrowing from the bytes it was parsed from.
#[derive(Debug, Clone, Default)]
pub struct LogEntry<'a> {
    strs: [Option<Cow<'a, str>>; StrField::ALL.len()],
    nums: [Option<u64>; NumField::ALL.len()],
    /// Every other field (`backtrace`, `source`, values of unexpected type...), raw, in
    /// input order.
    pub extra: Vec<(Cow<'a, str>, &'a RawValue)>,
}

impl<'a> LogEntry<'a> {
    /// Parses one JSON object (one entry).
    pub fn parse(bytes: &'a [u8]) -> Result<LogEntry<'a>, serde_json::Error> {
        serde_json::from_slice(bytes)
    }

    /// A string field as it appeared in the input.
    pub fn get_str(&self, field: StrField) -> Option<&str> {
        self.strs[field as usize].as_deref()
    }

    /// An integer field.
    pub fn get_num(&self, field: NumField) -> Option<u64> {
        self.nums[field as usize]
    }

    /// Sets a string field (used by tests and producers of synthetic entries).
    pub fn set_str(&mut self, field: StrField, value: impl Into<Cow<'a, str>>) {
        self.strs[field as usize] = Some(value.into());
    }

    /// Sets an integer field.
    pub fn set_num(&mut self, field: NumField, value: u64) {
        self.nums[field as usize] = Some(value);
    }

    /// A field that is neither a known string nor a known integer, by JSON key.
    pub fn get_extra(&self, key: &str) -> Option<&'a RawValue> {
        self.extra.iter().find(|(k, _)| k == key).map(|(_, v)| *v)
    }

    /// The process name: `process` when present, else the last component of
    /// `processImagePath` (which is what `log` itself shows).
    pub fn process(&self) -> Option<&str> {
        self.get_str(StrField::Process)
            .or_else(|| self.get_str(StrField::ProcessImagePath).map(basename))
    }

    /// The sender (library or executable that logged): `sender` or the last component of
    /// `senderImagePath`.
    pub fn sender(&self) -> Option<&str> {
        self.get_str(StrField::Sender)
            .or_else(|| self.get_str(StrField::SenderImagePath).map(basename))
    }

    /// The message text: `eventMessage`, or `composedMessage` from other producers.
    pub fn message(&self) -> Option<&str> {
        self.get_str(StrField::EventMessage)
            .or_else(|| self.get_str(StrField::ComposedMessage))
    }

    /// The message type, when `messageType` names one `log` knows.
    pub fn message_type(&self) -> Option<MessageType> {
        self.get_str(StrField::MessageType)
            .and_then(MessageType::from_name)
    }

    /// The event type, when `eventType` names one `log` knows.
    pub fn event_type(&self) -> Option<EventType> {
        self.get_str(StrField::EventType)
            .and_then(EventType::from_name)
    }

    /// The timestamp parsed (`2024-10-03 09:12:44.123456-0700`), if present and valid.
    pub fn time(&self) -> Option<OffsetDateTime> {
        self.get_str(StrField::Timestamp).and_then(parse_timestamp)
    }

    /// The entry as a JSON object with every field (known fields first, then the others in
    /// input order).
    pub fn to_value(&self) -> serde_json::Value {
        let mut map = serde_json::Map::new();
        for f in StrField::ALL {
            if let Some(v) = self.get_str(f) {
                map.insert(f.json_key().to_owned(), v.into());
            }
        }
        for f in NumField::ALL {
            if let Some(v) = self.get_num(f) {
                map.insert(f.json_key().to_owned(), v.into());
            }
        }
        for (k, v) in &self.extra {
            // A RawValue always holds valid JSON, so this cannot fail; keep null if it did.
            let value = serde_json::from_str(v.get()).unwrap_or(serde_json::Value::Null);
            map.insert(k.to_string(), value);
        }
        serde_json::Value::Object(map)
    }
}

fn basename(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// `messageType` values, with the numeric codes `log --predicate` accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageType {
    Default,
    Info,
    Debug,
    Error,
    Fault,
}

impl MessageType {
    /// Parses a name as `log` prints it (`Default`) or as predicates spell it (`default`,
    /// `release`), case-insensitively.
    pub fn from_name(name: &str) -> Option<MessageType> {
        let t = match name.to_ascii_lowercase().as_str() {
            "default" | "release" | "notice" => MessageType::Default,
            "info" => MessageType::Info,
            "debug" => MessageType::Debug,
            "error" => MessageType::Error,
            "fault" => MessageType::Fault,
            _ => return None,
        };
        Some(t)
    }

    /// The numeric code (`default` 0, `info` 1, `debug` 2, `error` 16, `fault` 17).
    pub fn code(self) -> u64 {
        match self {
            MessageType::Default => 0,
            MessageType::Info => 1,
            MessageType::Debug => 2,
            MessageType::Error => 16,
            MessageType::Fault => 17,
        }
    }

    /// The type for a numeric code.
    pub fn from_code(code: u64) -> Option<MessageType> {
        [
            MessageType::Default,
            MessageType::Info,
            MessageType::Debug,
            MessageType::Error,
            MessageType::Fault,
        ]
        .into_iter()
        .find(|t| t.code() == code)
    }

    /// The two-letter abbreviation of `log --style compact`.
    pub fn abbrev(self) -> &'static str {
        match self {
            MessageType::Default => "Df",
            MessageType::Info => "I ",
            MessageType::Debug => "D ",
            MessageType::Error => "E ",
            MessageType::Fault => "F ",
        }
    }
}

/// `eventType` values, with the numeric codes `log --predicate` accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    ActivityCreateEvent,
    ActivityTransitionEvent,
    UserActionEvent,
    TraceEvent,
    LogEvent,
    StateEvent,
    SignpostEvent,
    LossEvent,
    TimesyncEvent,
}

impl EventType {
    const ALL: [EventType; 9] = [
        EventType::ActivityCreateEvent,
        EventType::ActivityTransitionEvent,
        EventType::UserActionEvent,
        EventType::TraceEvent,
        EventType::LogEvent,
        EventType::StateEvent,
        EventType::SignpostEvent,
        EventType::LossEvent,
        EventType::TimesyncEvent,
    ];

    /// The name `log` prints (`logEvent`).
    pub fn name(self) -> &'static str {
        match self {
            EventType::ActivityCreateEvent => "activityCreateEvent",
            EventType::ActivityTransitionEvent => "activityTransitionEvent",
            EventType::UserActionEvent => "userActionEvent",
            EventType::TraceEvent => "traceEvent",
            EventType::LogEvent => "logEvent",
            EventType::StateEvent => "stateEvent",
            EventType::SignpostEvent => "signpostEvent",
            EventType::LossEvent => "lossEvent",
            EventType::TimesyncEvent => "timesyncEvent",
        }
    }

    /// The numeric code `log` documents (`logEvent` 1024, `traceEvent` 768, ...).
    pub fn code(self) -> u64 {
        match self {
            EventType::ActivityCreateEvent => 513,
            EventType::ActivityTransitionEvent => 514,
            EventType::UserActionEvent => 515,
            EventType::TraceEvent => 768,
            EventType::LogEvent => 1024,
            EventType::StateEvent => 1280,
            EventType::SignpostEvent => 1536,
            EventType::LossEvent => 1792,
            EventType::TimesyncEvent => 2048,
        }
    }

    /// Parses a name, case-insensitively (`logEvent`, `logevent`).
    pub fn from_name(name: &str) -> Option<EventType> {
        EventType::ALL
            .into_iter()
            .find(|t| t.name().eq_ignore_ascii_case(name))
    }

    /// The type for a numeric code.
    pub fn from_code(code: u64) -> Option<EventType> {
        EventType::ALL.into_iter().find(|t| t.code() == code)
    }
}

/// Parses `log`'s timestamp format, `2024-10-03 09:12:44.123456-0700` (fraction and
/// offset optional), also accepting RFC 3339.
pub fn parse_timestamp(s: &str) -> Option<OffsetDateTime> {
    use time::format_description::well_known::Rfc3339;
    use time::macros::format_description;
    let with_offset = format_description!(
        "[year]-[month]-[day] [hour]:[minute]:[second].[subsecond][offset_hour sign:mandatory][offset_minute]"
    );
    let no_fraction = format_description!(
        "[year]-[month]-[day] [hour]:[minute]:[second][offset_hour sign:mandatory][offset_minute]"
    );
    OffsetDateTime::parse(s, with_offset)
        .or_else(|_| OffsetDateTime::parse(s, no_fraction))
        .or_else(|_| OffsetDateTime::parse(s, &Rfc3339))
        .ok()
}

impl<'de: 'a, 'a> Deserialize<'de> for LogEntry<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(EntryVisitor(std::marker::PhantomData))
    }
}

struct EntryVisitor<'a>(std::marker::PhantomData<&'a ()>);

impl<'de: 'a, 'a> Visitor<'de> for EntryVisitor<'a> {
    type Value = LogEntry<'a>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a unified-log entry object")
    }

    fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
        let mut entry = LogEntry::default();
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            let raw: &'de RawValue = map.next_value()?;
            let text = raw.get();
            if let Some(field) = StrField::from_json_key(&key) {
                if let Some(s) = json_str(text) {
                    entry.strs[field as usize] = Some(s);
                    continue;
                }
            } else if let Some(field) = NumField::from_json_key(&key) {
                if let Ok(n) = text.parse::<u64>() {
                    entry.nums[field as usize] = Some(n);
                    continue;
                }
            }
            // Unknown key, or a known key with an unexpected type: keep it verbatim.
            entry.extra.push((key, raw));
        }
        Ok(entry)
    }
}

/// A map key, borrowed from the input when it has no escapes (serde's own `Cow` impl
/// always allocates).
struct Key<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Key<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for KeyVisitor<'a> {
            type Value = Key<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string key")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'a>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Key<'a>, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
        }
        deserializer.deserialize_str(KeyVisitor(std::marker::PhantomData))
    }
}

/// The string a raw JSON string literal denotes, borrowed when it has no escapes.
fn json_str(raw: &str) -> Option<Cow<'_, str>> {
    let inner = raw.strip_prefix('"')?.strip_suffix('"')?;
    if !inner.contains('\\') {
        return Some(Cow::Borrowed(inner));
    }
    serde_json::from_str::<String>(raw).ok().map(Cow::Owned)
}

/// Removes insignificant whitespace from one JSON value (e.g. a pretty-printed entry from
/// `log show --style json`) so it fits on one NDJSON line, keeping key order and bytes.
pub fn compact_json(raw: &[u8], out: &mut Vec<u8>) {
    let mut in_string = false;
    let mut escaped = false;
    for &b in raw {
        if in_string {
            out.push(b);
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
        } else if b == b'"' {
            in_string = true;
            out.push(b);
        } else if !matches!(b, b' ' | b'\n' | b'\r' | b'\t') {
            out.push(b);
        }
    }
}

/// One line in the style of `log show --style compact`:
/// `2024-10-03 09:12:44.123 Df softwareupdated[512:1a2b] [com.apple.X:cat] message`.
pub fn format_compact(entry: &LogEntry<'_>) -> String {
    let ts = entry.get_str(StrField::Timestamp).unwrap_or("");
    // `log` prints milliseconds in compact style: "YYYY-MM-DD HH:MM:SS.mmm".
    let ts = ts.get(..23).unwrap_or(ts);
    let ty = match entry.event_type() {
        Some(EventType::ActivityCreateEvent) => "A ",
        Some(EventType::SignpostEvent) => "S ",
        Some(EventType::StateEvent) => "St",
        _ => entry.message_type().map_or("  ", MessageType::abbrev),
    };
    let process = entry.process().unwrap_or("");
    let pid = entry.get_num(NumField::ProcessId).unwrap_or(0);
    let tid = entry.get_num(NumField::ThreadId).unwrap_or(0);
    let mut line = format!("{ts} {ty} {process}[{pid}:{tid:x}]");
    let subsystem = entry.get_str(StrField::Subsystem).unwrap_or("");
    let category = entry.get_str(StrField::Category).unwrap_or("");
    if !subsystem.is_empty() || !category.is_empty() {
        line.push_str(&format!(" [{subsystem}:{category}]"));
    }
    line.push(' ');
    line.push_str(entry.message().unwrap_or(""));
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    const WIFI: &str = r#"{
  "timezoneName" : "",
  "messageType" : "Default",
  "eventType" : "logEvent",
  "source" : null,
  "formatString" : "%{public}@",
  "userID" : 0,
  "activityIdentifier" : 0,
  "subsystem" : "com.apple.WiFiPolicy",
  "category" : "",
  "threadID" : 500795,
  "backtrace" : { "frames" : [ { "imageOffset" : 28940, "imageUUID" : "452AEEAF-04BA-3FCA-83C8-16F162D87321" } ] },
  "bootUUID" : "2DF74FE0-4876-43B0-828B-F285FA4D42F5",
  "processImagePath" : "\/usr\/sbin\/wifid",
  "timestamp" : "2023-02-23 10:44:02.761747+0100",
  "senderImagePath" : "\/System\/Library\/PrivateFrameworks\/WiFiPolicy.framework\/WiFiPolicy",
  "machTimestamp" : 3208860279380,
  "eventMessage" : "Joined \"Office\" network",
  "processID" : 50,
  "senderProgramCounter" : 28940,
  "parentActivityIdentifier" : 0,
  "traceID" : 1158816569950212
}"#;

    #[test]
    fn keeps_every_field() {
        let e = LogEntry::parse(WIFI.as_bytes()).unwrap();
        assert_eq!(e.get_str(StrField::Subsystem), Some("com.apple.WiFiPolicy"));
        assert_eq!(e.process(), Some("wifid"));
        assert_eq!(e.sender(), Some("WiFiPolicy"));
        assert_eq!(e.message(), Some("Joined \"Office\" network"));
        assert_eq!(e.get_num(NumField::MachTimestamp), Some(3208860279380));
        assert_eq!(e.get_num(NumField::TraceId), Some(1158816569950212));
        assert_eq!(e.message_type(), Some(MessageType::Default));
        assert_eq!(e.event_type(), Some(EventType::LogEvent));
        let keys: Vec<&str> = e.extra.iter().map(|(k, _)| k.as_ref()).collect();
        assert_eq!(keys, ["source", "backtrace"]);
        let v = e.to_value();
        assert_eq!(v["backtrace"]["frames"][0]["imageOffset"], 28940);
        assert_eq!(v["processImagePath"], "/usr/sbin/wifid");
        assert_eq!(v.as_object().unwrap().len(), 21);
    }

    #[test]
    fn key_tables_agree() {
        for f in StrField::ALL {
            assert_eq!(StrField::from_json_key(f.json_key()), Some(f));
        }
        for f in NumField::ALL {
            assert_eq!(NumField::from_json_key(f.json_key()), Some(f));
        }
    }

    #[test]
    fn timestamp_with_offset() {
        let t = parse_timestamp("2024-10-03 09:12:44.123456-0700").unwrap();
        assert_eq!(t.unix_timestamp(), 1727971964);
        assert_eq!(t.microsecond(), 123456);
        assert!(parse_timestamp("2024-10-03 09:12:44-0700").is_some());
        assert!(parse_timestamp("2024-10-03T16:12:44Z").is_some());
        assert!(parse_timestamp("yesterday").is_none());
    }

    #[test]
    fn unexpected_types_go_to_extra() {
        let e = LogEntry::parse(br#"{"subsystem": 5, "processID": "x", "threadID": -1}"#).unwrap();
        assert_eq!(e.get_str(StrField::Subsystem), None);
        assert_eq!(e.extra.len(), 3);
    }

    #[test]
    fn compact_keeps_strings() {
        let mut out = Vec::new();
        compact_json(
            b"{\n  \"a\" : \"x  y\\\" }\" ,\n \"b\" : [ 1, 2 ]\n}",
            &mut out,
        );
        assert_eq!(out, b"{\"a\":\"x  y\\\" }\",\"b\":[1,2]}");
    }

    #[test]
    fn compact_style() {
        let e = LogEntry::parse(WIFI.as_bytes()).unwrap();
        assert_eq!(
            format_compact(&e),
            "2023-02-23 10:44:02.761 Df wifid[50:7a43b] [com.apple.WiFiPolicy:] Joined \"Office\" network"
        );
    }
}
