//! Extraction rules: a predicate picks log entries, regexes pull fields out of
//! `eventMessage`, and each hit becomes an event in the AWS EventBridge envelope.
//!
//! Events are plain `serde_json::Value`s shaped exactly like EventBridge events
//! (`version`, `id`, `detail-type`, `source`, `account`, `time`, `region`, `resources`,
//! `detail`), so any envelope type can deserialize them.

use std::collections::BTreeMap;

use regex::Regex;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::entry::{NumField, StrField};
use crate::error::RuleError;
use crate::{LogEntry, Predicate};

/// Default `source` of extracted events.
pub const DEFAULT_SOURCE: &str = "fleetbus.ulog";

/// Detail keys the extractor writes itself; capture groups may not use them.
const RESERVED: [&str; 4] = ["scope", "device", "rule", "log"];

/// How a captured text is typed in `detail`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FieldType {
    String,
    Integer,
    Number,
    Boolean,
}

/// An extraction rule as written in configuration (see the crate README for the YAML).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RuleSpec {
    /// Unique name, copied to `detail.rule`.
    pub name: String,
    /// The event's `detail-type`.
    pub detail_type: String,
    /// Which entries the rule looks at (`log --predicate` syntax).
    pub predicate: String,
    /// `detail.action` unless a pattern captures a group named `action`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// Regexes run on `eventMessage`; named groups become `detail` fields. When non-empty,
    /// at least one must match for the rule to fire.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub patterns: Vec<String>,
    /// A named group holding an NSDictionary description (`{ key = value; ... }`) or a
    /// JSON object, whose keys are merged into `detail`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dictionary: Option<String>,
    /// Types for `detail` fields (captured text is a string otherwise).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub types: BTreeMap<String, FieldType>,
    /// Constant fields added to `detail`.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub detail: Map<String, Value>,
}

/// A compiled rule.
#[derive(Debug, Clone)]
pub struct Rule {
    spec: RuleSpec,
    predicate: Predicate,
    patterns: Vec<Regex>,
}

impl Rule {
    /// Compiles and checks a rule.
    pub fn compile(spec: RuleSpec) -> Result<Rule, RuleError> {
        let predicate =
            Predicate::parse(&spec.predicate).map_err(|source| RuleError::Predicate {
                rule: spec.name.clone(),
                source,
            })?;
        let mut patterns = Vec::new();
        for p in &spec.patterns {
            let re = Regex::new(p).map_err(|e| RuleError::Regex {
                rule: spec.name.clone(),
                pattern: p.clone(),
                source: Box::new(e),
            })?;
            for name in re.capture_names().flatten() {
                if RESERVED.contains(&name) {
                    return Err(RuleError::Reserved {
                        rule: spec.name.clone(),
                        group: name.to_owned(),
                    });
                }
            }
            patterns.push(re);
        }
        if let Some(group) = &spec.dictionary {
            let known = patterns
                .iter()
                .any(|re| re.capture_names().flatten().any(|n| n == group));
            if !known {
                return Err(RuleError::DictionaryGroup {
                    rule: spec.name.clone(),
                    group: group.clone(),
                });
            }
        }
        Ok(Rule {
            spec,
            predicate,
            patterns,
        })
    }

    /// The rule as written.
    pub fn spec(&self) -> &RuleSpec {
        &self.spec
    }

    /// The fields extracted from `entry`, or `None` when the rule does not fire.
    pub fn extract(&self, entry: &LogEntry<'_>) -> Option<Map<String, Value>> {
        if !self.predicate.matches(entry) {
            return None;
        }
        let message = entry.message().unwrap_or("");
        let mut fields = Map::new();
        let mut any = self.patterns.is_empty();
        for re in &self.patterns {
            let Some(caps) = re.captures(message) else {
                continue;
            };
            any = true;
            for name in re.capture_names().flatten() {
                let Some(m) = caps.name(name) else {
                    continue;
                };
                if self.spec.dictionary.as_deref() == Some(name) {
                    for (k, v) in parse_dictionary(m.as_str()) {
                        fields.entry(k).or_insert(v);
                    }
                } else {
                    // Explicit captures win over dictionary keys of the same name.
                    fields.insert(name.to_owned(), Value::String(m.as_str().trim().to_owned()));
                }
            }
        }
        if !any {
            return None;
        }
        for (k, v) in &self.spec.detail {
            fields.entry(k.clone()).or_insert_with(|| v.clone());
        }
        for (k, ty) in &self.spec.types {
            if let Some(v) = fields.get_mut(k) {
                *v = convert(v.take(), *ty);
            }
        }
        if !fields.contains_key("action") {
            if let Some(a) = &self.spec.action {
                fields.insert("action".to_owned(), Value::String(a.clone()));
            }
        }
        Some(fields)
    }
}

fn convert(v: Value, ty: FieldType) -> Value {
    let text = match &v {
        Value::String(s) => s.trim().to_owned(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        _ => return v,
    };
    let converted = match ty {
        FieldType::String => Some(Value::String(text)),
        FieldType::Integer => text.parse::<i64>().ok().map(Value::from),
        FieldType::Number => text
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map(Value::Number),
        FieldType::Boolean => match text.to_ascii_lowercase().as_str() {
            "1" | "yes" | "true" => Some(Value::Bool(true)),
            "0" | "no" | "false" => Some(Value::Bool(false)),
            _ => None,
        },
    };
    converted.unwrap_or(v)
}

/// Envelope fields that do not come from the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvelopeOptions {
    pub source: String,
    pub account: String,
    pub region: String,
}

impl Default for EnvelopeOptions {
    fn default() -> Self {
        EnvelopeOptions {
            source: DEFAULT_SOURCE.to_owned(),
            account: "000000000000".to_owned(),
            region: "local".to_owned(),
        }
    }
}

/// A set of compiled rules turning entries into events.
#[derive(Debug, Clone)]
pub struct Extractor {
    rules: Vec<Rule>,
    options: EnvelopeOptions,
}

impl Extractor {
    /// The built-in software-update and MDM-client rules.
    pub fn builtin() -> Extractor {
        let rules = builtin_rules()
            .into_iter()
            // The built-ins are tested to compile; a failure would drop only that rule.
            .filter_map(|spec| Rule::compile(spec).ok())
            .collect();
        Extractor {
            rules,
            options: EnvelopeOptions::default(),
        }
    }

    /// The given rules only.
    pub fn new(specs: Vec<RuleSpec>) -> Result<Extractor, RuleError> {
        let rules = specs
            .into_iter()
            .map(Rule::compile)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Extractor {
            rules,
            options: EnvelopeOptions::default(),
        })
    }

    /// Adds rules (user rules after the built-ins).
    pub fn with_rules(mut self, specs: Vec<RuleSpec>) -> Result<Extractor, RuleError> {
        for spec in specs {
            self.rules.push(Rule::compile(spec)?);
        }
        Ok(self)
    }

    /// Sets the envelope's `source`, `account` and `region`.
    pub fn with_options(mut self, options: EnvelopeOptions) -> Extractor {
        self.options = options;
        self
    }

    /// The compiled rules.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Every event `entry` produces (one per rule that fires), for the device `serial`.
    pub fn events(&self, entry: &LogEntry<'_>, serial: Option<&str>) -> Vec<Value> {
        let mut out = Vec::new();
        for rule in &self.rules {
            if let Some(fields) = rule.extract(entry) {
                out.push(self.envelope(rule, entry, fields, serial));
            }
        }
        out
    }

    fn envelope(
        &self,
        rule: &Rule,
        entry: &LogEntry<'_>,
        fields: Map<String, Value>,
        serial: Option<&str>,
    ) -> Value {
        let time = entry
            .time()
            .unwrap_or_else(OffsetDateTime::now_utc)
            .to_offset(time::UtcOffset::UTC);
        let time = time.format(&Rfc3339).unwrap_or_default();
        let mut detail = Map::new();
        detail.insert("scope".into(), "device".into());
        if let Some(a) = fields.get("action") {
            detail.insert("action".into(), a.clone());
        }
        let mut device = Map::new();
        if let Some(s) = serial {
            device.insert("serial".into(), s.into());
        }
        detail.insert("device".into(), Value::Object(device));
        detail.insert("rule".into(), rule.spec.name.clone().into());
        for (k, v) in fields {
            if !RESERVED.contains(&k.as_str()) {
                detail.entry(k).or_insert(v);
            }
        }
        detail.insert("log".into(), log_summary(entry));
        let resources: Vec<Value> = serial
            .map(|s| vec![Value::String(format!("device/{s}"))])
            .unwrap_or_default();
        serde_json::json!({
            "version": "0",
            "id": uuid::Uuid::new_v4().to_string(),
            "detail-type": rule.spec.detail_type,
            "source": self.options.source,
            "account": self.options.account,
            "time": time,
            "region": self.options.region,
            "resources": resources,
            "detail": detail,
        })
    }
}

/// The entry's identifying fields, kept in `detail.log` so an event can be traced back.
fn log_summary(entry: &LogEntry<'_>) -> Value {
    let mut m = Map::new();
    for f in [
        StrField::Timestamp,
        StrField::Subsystem,
        StrField::Category,
        StrField::MessageType,
        StrField::EventType,
    ] {
        if let Some(v) = entry.get_str(f) {
            m.insert(f.json_key().into(), v.into());
        }
    }
    if let Some(p) = entry.process() {
        m.insert("process".into(), p.into());
    }
    for f in [
        NumField::ProcessId,
        NumField::ThreadId,
        NumField::TraceId,
        NumField::MachTimestamp,
        NumField::ActivityIdentifier,
    ] {
        if let Some(v) = entry.get_num(f) {
            m.insert(f.json_key().into(), v.into());
        }
    }
    if let Some(v) = entry.get_str(StrField::BootUuid) {
        m.insert("bootUUID".into(), v.into());
    }
    if let Some(v) = entry.message() {
        m.insert("eventMessage".into(), v.into());
    }
    Value::Object(m)
}

/// Extracts the built-in events from NDJSON (or `log show --style json`) bytes posted by
/// one device: the entry point for the `unified-log` source. Returns the events and the
/// number of lines skipped as junk.
pub fn events_from_ndjson(extractor: &Extractor, bytes: &[u8], serial: &str) -> (Vec<Value>, u64) {
    let (events, stats) = extract_ndjson(extractor, bytes, serial);
    (events, stats.junk_lines)
}

/// [`events_from_ndjson`] with the reader's counts: how many log entries the bytes
/// held (a batch with none is not a log batch) and how many lines were junk.
pub fn extract_ndjson(
    extractor: &Extractor,
    bytes: &[u8],
    serial: &str,
) -> (Vec<Value>, crate::reader::ReadStats) {
    let mut events = Vec::new();
    let mut reader = crate::reader::LogReader::new(bytes);
    let stats = reader.for_each_entry(|_, entry| {
        events.extend(extractor.events(entry, Some(serial)));
        true
    });
    // Reading from a byte slice cannot fail with I/O errors.
    (events, stats.unwrap_or_default())
}

/// Parses an NSDictionary description (`{ key = value; ... }`, as `%@` prints one) or a
/// JSON object into fields. Unquoted integers become numbers, nested dictionaries objects,
/// `( ... )` arrays; everything else stays a string. Malformed input yields what parsed.
pub fn parse_dictionary(text: &str) -> Map<String, Value> {
    let text = text.trim();
    if let Ok(Value::Object(m)) = serde_json::from_str::<Value>(text) {
        return m;
    }
    let mut p = DictParser {
        s: text.as_bytes(),
        i: 0,
        depth: 0,
    };
    match p.value() {
        Some(Value::Object(m)) => m,
        // `( { ... } )`: one dictionary in an array, as some daemons log a list of updates.
        Some(Value::Array(items)) => {
            let list = items.clone();
            let mut objects = items.into_iter().filter_map(|v| match v {
                Value::Object(m) => Some(m),
                _ => None,
            });
            match (objects.next(), objects.next()) {
                (Some(first), None) => first,
                (Some(first), Some(second)) => {
                    let mut all = vec![Value::Object(first), Value::Object(second)];
                    all.extend(objects.map(Value::Object));
                    let mut m = Map::new();
                    m.insert("items".into(), Value::Array(all));
                    m
                }
                // `( "<SUOSUProduct: ...>" )`: a list of plain values.
                _ => {
                    let mut m = Map::new();
                    if !list.is_empty() {
                        m.insert("items".into(), Value::Array(list));
                    }
                    m
                }
            }
        }
        _ => Map::new(),
    }
}

struct DictParser<'a> {
    s: &'a [u8],
    i: usize,
    depth: usize,
}

impl DictParser<'_> {
    fn ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn value(&mut self) -> Option<Value> {
        self.ws();
        match self.peek()? {
            b'{' => {
                if self.depth >= 32 {
                    return None;
                }
                self.depth += 1;
                self.i += 1;
                let mut m = Map::new();
                loop {
                    self.ws();
                    match self.peek() {
                        None => break,
                        Some(b'}') => {
                            self.i += 1;
                            break;
                        }
                        Some(b';') => {
                            self.i += 1;
                            continue;
                        }
                        _ => {}
                    }
                    let key = match self.peek()? {
                        b'"' => self.quoted()?,
                        _ => self.bare(b"=;}")?,
                    };
                    self.ws();
                    if self.peek() != Some(b'=') {
                        break;
                    }
                    self.i += 1;
                    let v = self.value()?;
                    m.insert(key, v);
                }
                self.depth -= 1;
                Some(Value::Object(m))
            }
            b'(' => {
                if self.depth >= 32 {
                    return None;
                }
                self.depth += 1;
                self.i += 1;
                let mut items = Vec::new();
                loop {
                    self.ws();
                    match self.peek() {
                        None => break,
                        Some(b')') => {
                            self.i += 1;
                            break;
                        }
                        Some(b',') => {
                            self.i += 1;
                            continue;
                        }
                        _ => {}
                    }
                    let before = self.i;
                    match self.value() {
                        Some(v) => items.push(v),
                        None => break,
                    }
                    if self.i == before {
                        break;
                    }
                }
                self.depth -= 1;
                Some(Value::Array(items))
            }
            b'"' => self.quoted().map(Value::String),
            _ => {
                let word = self.bare(b";,)}")?;
                Some(match word.parse::<i64>() {
                    Ok(n) if !(word.len() > 1 && word.starts_with('0')) => Value::from(n),
                    _ => Value::String(word),
                })
            }
        }
    }

    fn quoted(&mut self) -> Option<String> {
        self.i += 1;
        let mut out = Vec::new();
        while let Some(b) = self.peek() {
            self.i += 1;
            match b {
                b'"' => return Some(String::from_utf8_lossy(&out).into_owned()),
                b'\\' => {
                    let e = self.peek()?;
                    self.i += 1;
                    out.push(match e {
                        b'n' => b'\n',
                        b't' => b'\t',
                        other => other,
                    });
                }
                other => out.push(other),
            }
        }
        None
    }

    fn bare(&mut self, stops: &[u8]) -> Option<String> {
        let start = self.i;
        while let Some(b) = self.peek() {
            if stops.contains(&b) || b == b'\n' {
                break;
            }
            self.i += 1;
        }
        let word = String::from_utf8_lossy(&self.s[start..self.i])
            .trim()
            .to_owned();
        (!word.is_empty()).then_some(word)
    }
}

const SU_SCOPE: &str = r#"(subsystem BEGINSWITH "com.apple.SoftwareUpdate" OR subsystem == "com.apple.softwareupdated" OR subsystem == "com.apple.MobileSoftwareUpdate" OR process == "softwareupdated" OR process == "SoftwareUpdateNotificationManager")"#;
const MDM_SCOPE: &str =
    r#"(process == "mdmclient" OR subsystem BEGINSWITH "com.apple.ManagedClient")"#;

fn spec(
    name: &str,
    detail_type: &str,
    predicate: String,
    action: &str,
    patterns: &[&str],
    dictionary: Option<&str>,
    types: &[(&str, FieldType)],
) -> RuleSpec {
    RuleSpec {
        name: name.to_owned(),
        detail_type: detail_type.to_owned(),
        predicate,
        action: Some(action.to_owned()),
        patterns: patterns.iter().map(|p| (*p).to_owned()).collect(),
        dictionary: dictionary.map(str::to_owned),
        types: types.iter().map(|(k, t)| ((*k).to_owned(), *t)).collect(),
        detail: Map::new(),
    }
}

/// The built-in rules, as specs (the same shape users write in configuration).
pub fn builtin_rules() -> Vec<RuleSpec> {
    use FieldType::*;
    vec![
        spec(
            "softwareupdate.ota-event",
            "Software Update OTA Event",
            format!(r#"{SU_SCOPE} AND eventMessage CONTAINS "Sending event""#),
            "otaEvent",
            &[
                // `Sending event (otaAvailable): {...}` as softwareupdated writes it,
                // and the `Sending event: com.apple.softwareupdate.otaReady {...}` form.
                r"Sending event[:\s]+\(?(?:com\.apple\.[A-Za-z.]*?\.)?(?P<action>ota[A-Z][A-Za-z]*)\)?[^{]*(?P<dict>\{[\s\S]*\})?",
            ],
            Some("dict"),
            &[
                ("installTonight", Boolean),
                ("mdm", Boolean),
                ("notification", Boolean),
                ("commandLine", Boolean),
                ("configUserInitiated", Boolean),
                ("targetOSVersion", String),
                ("installedRecoveryOSBuild", String),
                ("installedRecoveryOSVersion", String),
                ("result", String),
            ],
        ),
        spec(
            "softwareupdate.progress",
            "Software Update Progress",
            format!(
                r#"{SU_SCOPE} AND (eventMessage CONTAINS "Reported progress" OR eventMessage CONTAINS "UpdateStatus")"#
            ),
            "progress",
            &[
                r"Reported progress \((?P<edge>start|end)\): phase:(?P<phase>[A-Z_]+) stalled:(?P<stalled>YES|NO) portionComplete:(?P<portionComplete>-?[0-9.]+)(?: estimatedTimeRemaining:(?P<estimatedTimeRemaining>-?[0-9.]+))?",
                // `UpdateStatus 'MSU_UPDATE_22F82_patch_13.4.1_minor' ==> {...}`,
                // `mdmUpdateStatus: {...}` and `UpdateStatus: {...}`.
                r"(?P<report>mdmUpdateStatus|UpdateStatus)(?:\s+'(?P<productKey>[^']*)')?\s*(?:==>|:)?\s*(?P<dict>\{[\s\S]*\})",
            ],
            Some("dict"),
            &[
                ("stalled", Boolean),
                ("portionComplete", Number),
                ("estimatedTimeRemaining", Number),
                ("progress", Number),
                ("productMarketingVersion", String),
            ],
        ),
        spec(
            "softwareupdate.finished",
            "Software Update Finished",
            format!(r#"{SU_SCOPE} AND eventMessage CONTAINS[c] "updateFinished""#),
            "updateFinished",
            &[
                // `... Attempting to gather analytics data for phase : UpdateFinished`
                r"(?i)analytics data for phase\s*:\s*(?P<phase>UpdateFinished)",
                r"(?i)updateFinished",
                r"\b(?:result|success|status)\s*[=:]\s*(?P<result>[A-Za-z0-9_]+)",
                r"\berror\s*[=:]\s*(?P<error>[^\n;]+)",
            ],
            None,
            &[],
        ),
        spec(
            "softwareupdate.restart-countdown",
            "Software Update Restart Countdown",
            format!(
                r#"{SU_SCOPE} AND (eventMessage CONTAINS[c] "restart countdown" OR eventMessage CONTAINS "seconds remaining:") AND NOT eventMessage CONTAINS "Remove restart countdown""#
            ),
            "restartCountdown",
            &[
                r"(?i)(?P<countdown>start|cancel|stop|finish|complet|end)\w*\s+(?:the\s+)?restart countdown",
                r"(?i)restart countdown[^0-9\n]*(?P<seconds>\d+)",
                // `SUOSUCountdownNotification: seconds remaining: 9`
                r"seconds remaining:\s*(?P<seconds>\d+)",
            ],
            None,
            &[("seconds", Integer)],
        ),
        spec(
            "softwareupdate.restart-countdown-removed",
            "Software Update Restart Countdown Removed",
            format!(r#"{SU_SCOPE} AND eventMessage CONTAINS "Remove restart countdown""#),
            "restartCountdownRemoved",
            &[],
            None,
            &[],
        ),
        spec(
            "softwareupdate.reboot-now",
            "Software Update Rebooting",
            format!(
                r#"{SU_SCOPE} AND eventMessage CONTAINS "Skipping restart notification, immediately going down for the reboot""#
            ),
            "rebootNow",
            &[],
            None,
            &[],
        ),
        spec(
            "softwareupdate.notification-response",
            "Software Update Notification Response",
            format!(r#"{SU_SCOPE} AND eventMessage CONTAINS "Received notification response""#),
            "notificationResponse",
            &[
                r"Received notification response w/ request identifier:\s*(?:com\.apple\.SoftwareUpdateNotificationManager\.)?(?P<notification>[^,\s]+),\s*action identifier:\s*(?P<actionIdentifier>[^,\s]+)(?:,\s*source:\s*(?P<notificationSource>[^,\s]+))?[^{]*(?P<dict>\{[\s\S]*\})?",
            ],
            Some("dict"),
            &[("SecondsRemaining", Integer)],
        ),
        spec(
            "softwareupdate.install-options",
            "Software Update Install Options",
            format!(r#"{SU_SCOPE} AND eventMessage CONTAINS " options: {{""#),
            "installOptions",
            &[
                // `InstallAction: Default options: {...}`, `InstallASAP options: {...}`
                r"(?:^|InstallAction:\s*)(?P<installAction>Default|Install[A-Za-z]*|NotifyOnly|DownloadOnly)\s+options:\s*(?P<dict>\{[\s\S]*\})",
            ],
            Some("dict"),
            &[],
        ),
        spec(
            "softwareupdate.mdm-scan",
            "Software Update MDM Scan",
            format!(r#"{SU_SCOPE} AND eventMessage CONTAINS "MDM initiated, scanning for update""#),
            "mdmScan",
            &[r"MDM initiated, scanning for update with options:\s*(?P<dict>\{[\s\S]*\})"],
            Some("dict"),
            &[],
        ),
        spec(
            "softwareupdate.available-updates",
            "Software Update Available Updates Changed",
            format!(r#"{SU_SCOPE} AND eventMessage CONTAINS "Available updates did change""#),
            "availableUpdatesChanged",
            &[
                r"Available updates did change:\s*(?P<dict>\([\s\S]*\))",
                r"<SUOSUProduct:\s*(?P<productKey>[^>\s]+)>",
            ],
            Some("dict"),
            &[],
        ),
        spec(
            "softwareupdate.user-action",
            "Software Update User Action",
            format!(
                r#"{SU_SCOPE} AND (eventMessage CONTAINS[c] "user clicked" OR eventMessage CONTAINS[c] "user chose" OR eventMessage CONTAINS[c] "user selected" OR eventMessage CONTAINS[c] "user deferred" OR eventMessage CONTAINS[c] "user dismissed")"#
            ),
            "userAction",
            &[
                r#"(?i)user (?P<verb>clicked|chose|selected|deferred|dismissed)(?:\s+(?:on\s+)?(?:the\s+)?["'\[]?(?P<choice>restart now|restart|install now|update now|try tonight|tonight|remind me later|later|dismiss|details))?"#,
                // `... the notification com.apple.SoftwareUpdateNotificationManager.UpdatesAvailableOfferLater`
                r"com\.apple\.SoftwareUpdateNotificationManager\.(?P<notification>[A-Za-z]+)",
                // `Restart countdown: user clicked restart`
                r"(?P<notification>Restart countdown): user",
            ],
            None,
            &[],
        ),
        spec(
            "softwareupdate.mdm-tonight",
            "Software Update Scheduled Tonight",
            format!(r#"{SU_SCOPE} AND eventMessage CONTAINS[c] "Schedule MDM tonight action""#),
            "scheduleTonight",
            &[
                r"(?i)\bproductKey\s*[=:]\s*(?P<productKey>[A-Za-z0-9_.-]+)",
                r"(?i)\b(?:product)?version\s*[=:]\s*(?P<productVersion>[0-9][0-9.]*[0-9])",
                r"(?i)Schedule MDM tonight action",
            ],
            None,
            &[],
        ),
        spec(
            "mdm.server-request",
            "MDM Client Request",
            format!(r#"{MDM_SCOPE} AND eventMessage CONTAINS "Processing server request""#),
            "serverRequest",
            &[
                r"Processing server request:\s*(?P<requestType>[A-Za-z]+)(?:\s+for:\s*<(?P<target>[^>]*)>)?(?:\s*\((?P<sequence>\d+)\))?",
            ],
            None,
            &[("sequence", Integer)],
        ),
        spec(
            "mdm.command-result",
            "MDM Command Result",
            format!(
                r#"{MDM_SCOPE} AND eventMessage MATCHES ".*\\[(Acknowledged|Error|NotNow|CommandFormatError)\\([A-Za-z]+\\):[0-9]+\\].*""#
            ),
            "commandResult",
            &[
                r"\[(?P<status>Acknowledged|Error|NotNow|CommandFormatError)\((?P<requestType>[A-Za-z]+)\):(?P<sequence>\d+)\]",
            ],
            None,
            &[("sequence", Integer)],
        ),
        spec(
            "mdm.software-update-requested",
            "MDM Software Update Requested",
            r#"eventMessage CONTAINS "MDM requested""#.to_owned(),
            "updateRequested",
            &[r"MDM requested:?\s*(?P<dict>[\{\(][\s\S]*)"],
            Some("dict"),
            &[("MaxUserDeferrals", Integer), ("ProductVersion", String)],
        ),
        spec(
            "mdm.bootstrap-token",
            "MDM Bootstrap Token",
            format!(
                r#"({MDM_SCOPE} OR {SU_SCOPE}) AND (eventMessage CONTAINS[c] "bootstraptoken" OR eventMessage CONTAINS[c] "bootstrap token")"#
            ),
            "bootstrapToken",
            &[
                // `>>>>> Sending HTTP request (PUT) [MDM_SetBootstrapToken] >>>>>`
                r"Sending HTTP request\s*\((?P<httpMethod>[A-Z]+)\)\s*\[MDM_(?P<messageType>(?:Get|Set)BootstrapToken)\]",
                // `<<<<< Received HTTP response (200) [MDM_SetBootstrapToken] <<<<<`
                r"Received HTTP response\s*\((?P<httpStatus>\d{3})\)\s*\[MDM_(?P<messageType>(?:Get|Set)BootstrapToken)\]",
                r"(?i)(?P<operation>get|set|fetch|escrow)\w*\s*bootstrap\s*token",
                r"(?P<messageType>GetBootstrapToken|SetBootstrapToken)",
                // (last: a later pattern's capture wins) `Prefetching Bootstrap Token for SoftwareUpdate`
                r"(?P<operation>Prefetch)ing Bootstrap Token for (?P<client>\w+)",
            ],
            None,
            &[("httpStatus", Integer)],
        ),
        spec(
            "mdm.install-profile",
            "MDM Profile Installed",
            format!(
                r#"{MDM_SCOPE} AND (eventMessage CONTAINS[c] "configuration profile" OR eventMessage BEGINSWITH "InstallProfile")"#
            ),
            "installProfile",
            &[
                r#"(?i)(?P<profileAction>install|remov)\w*\s+configuration profile:?\s*['"]?(?P<profileName>[^'"(\n]+?)['"]?\s*\((?P<profileIdentifier>[^)\s]+)\)"#,
                r"(?i)(?P<profileAction>install|remov)\w*\s+configuration profile",
            ],
            None,
            &[],
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_compile() {
        for s in builtin_rules() {
            let name = s.name.clone();
            Rule::compile(s).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }

    #[test]
    fn nsdictionary_descriptions() {
        let d = parse_dictionary(
            "{\n    installTonight = 0;\n    targetOSVersion = \"14.4.1\";\n    updateType = minor;\n    failureReason = \"Not enough \\\"space\\\"\";\n    nested = { a = 1; };\n    list = ( a, \"b c\" );\n    zero = 007;\n}",
        );
        assert_eq!(d["installTonight"], 0);
        assert_eq!(d["targetOSVersion"], "14.4.1");
        assert_eq!(d["updateType"], "minor");
        assert_eq!(d["failureReason"], "Not enough \"space\"");
        assert_eq!(d["nested"]["a"], 1);
        assert_eq!(d["list"], serde_json::json!(["a", "b c"]));
        assert_eq!(d["zero"], "007");
        assert_eq!(parse_dictionary(r#"{"a": true}"#)["a"], true);
        assert_eq!(
            parse_dictionary("( { ProductKey = X; } )")["ProductKey"],
            "X"
        );
        assert!(parse_dictionary("garbage").is_empty());
        assert!(parse_dictionary("{ a = ").is_empty() || parse_dictionary("{ a = ").len() <= 1);
    }

    #[test]
    fn conversions() {
        assert_eq!(convert("YES".into(), FieldType::Boolean), true);
        assert_eq!(convert("0".into(), FieldType::Boolean), false);
        assert_eq!(convert("12".into(), FieldType::Integer), 12);
        assert_eq!(convert("0.5".into(), FieldType::Number), 0.5);
        assert_eq!(convert(Value::from(14), FieldType::String), "14");
        assert_eq!(convert("x".into(), FieldType::Integer), "x");
    }

    #[test]
    fn rule_errors_name_the_problem() {
        let mut s = builtin_rules().remove(0);
        s.predicate = "process ==".into();
        assert!(Rule::compile(s.clone())
            .unwrap_err()
            .to_string()
            .contains("column 11"));
        s.predicate = "TRUEPREDICATE".into();
        s.patterns = vec!["(".into()];
        assert!(Rule::compile(s.clone())
            .unwrap_err()
            .to_string()
            .contains("invalid regex `(`"));
        s.patterns = vec!["(?P<log>x)".into()];
        assert!(Rule::compile(s.clone())
            .unwrap_err()
            .to_string()
            .contains("`log`"));
        s.patterns = vec!["x".into()];
        assert!(Rule::compile(s)
            .unwrap_err()
            .to_string()
            .contains("dictionary group `dict`"));
    }
}
