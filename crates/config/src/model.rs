//! Stage two's result: the validated configuration the engine runs. The checks
//! that make it live in [`crate::validate`] and, per target kind, [`crate::kinds`].

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use crate::ca::CaCerts;
use crate::error::ConfigError;
use crate::jsonpath::Path as JsonPath;
use crate::load::Origin;
use crate::schedule::Schedule;
use crate::secret::Secret;
use crate::yaml::PathSeg;
pub use fleetbus_mdm::MdmServer;

pub use crate::raw::{SourceKind, TargetKind};

/// The whole validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub server: Server,
    pub sources: Vec<Source>,
    pub connections: BTreeMap<String, Auth>,
    /// Bus names; `default` is always first.
    pub buses: Vec<String>,
    /// Bus descriptions, where given.
    pub bus_descriptions: BTreeMap<String, String>,
    pub rules: Vec<Rule>,
    pub retention: Retention,
    pub storage: Storage,
    /// Named archives (the default archive, every event, is not listed).
    pub archives: Vec<Archive>,
    /// The software-update policy; its rules are among `rules`.
    pub software_update: Option<std::sync::Arc<SoftwareUpdate>>,
}

/// The rule the `software_update:` section makes for the events of the workflow.
pub const SU_RULE: &str = "software-update";
/// The rule it makes for its schedule (deadlines looked at again).
pub const SU_DEADLINES_RULE: &str = "software-update-deadlines";
/// The id of the one target of those rules.
pub const SU_TARGET: &str = "enforce";
/// Source of the events the policy emits (state changes, declarations, evaluations
/// asked for).
pub const SU_SOURCE: &str = "fleetbus.software-update";
/// The event that asks for an evaluation now (`fleetbus su evaluate`).
pub const SU_EVALUATE: &str = "Software Update Evaluation Requested";

/// `software_update:`, validated.
#[derive(Debug, Clone)]
pub struct SoftwareUpdate {
    pub mdm: SuMdm,
    pub bus: String,
    pub evaluate: crate::schedule::Schedule,
    pub download_only_before: Duration,
    pub force_restart_after: Duration,
    pub resend_after: Duration,
    pub max_errors: u32,
    pub details_url: Option<String>,
    pub requirements: Vec<SuRequirement>,
}

/// The MDM server the policy's commands go through.
#[derive(Debug, Clone)]
pub struct SuMdm {
    pub server: MdmServer,
    /// Base URL, without a trailing slash.
    pub url: String,
    pub api_key: Secret,
    pub push: bool,
}

/// The version a requirement asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequiredVersion {
    Version(String),
    /// The newest macOS the feed published.
    Latest,
    /// The newest of the major version the Mac runs.
    LatestMinor,
}

/// Days after a release to install it, by what it fixes (Nudge's SLA keys).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SuSla {
    pub actively_exploited_major: u32,
    pub actively_exploited_minor: u32,
    pub non_actively_exploited_major: u32,
    pub non_actively_exploited_minor: u32,
    pub standard_major: u32,
    pub standard_minor: u32,
}

impl SuSla {
    /// The days that apply to a release with `cves` fixed, some `exploited`, that is
    /// a `major` upgrade for the Mac or not.
    pub fn days(&self, cves: u32, exploited: bool, major: bool) -> u32 {
        match (exploited, cves > 0, major) {
            (true, _, true) => self.actively_exploited_major,
            (true, _, false) => self.actively_exploited_minor,
            (false, true, true) => self.non_actively_exploited_major,
            (false, true, false) => self.non_actively_exploited_minor,
            (false, false, true) => self.standard_major,
            (false, false, false) => self.standard_minor,
        }
    }
}

/// One requirement of the policy.
#[derive(Debug, Clone)]
pub struct SuRequirement {
    pub name: String,
    pub tags: Vec<String>,
    pub models: Vec<String>,
    /// Only Macs on this major version (`targeted_os_versions_rule`).
    pub targeted_major: Option<u64>,
    pub required: RequiredVersion,
    pub installation_date: Option<time::OffsetDateTime>,
    pub sla: SuSla,
    pub max_user_deferrals: u32,
    pub declarations: bool,
    /// These Macs' own MDM server, if not the section's.
    pub mdm: Option<SuMdm>,
}

impl SuRequirement {
    /// Whether a Mac with these tags, model and OS version is one of this
    /// requirement's.
    pub fn selects(&self, tags: &[String], model: Option<&str>, os_version: Option<&str>) -> bool {
        let tag_ok = self.tags.is_empty() || self.tags.iter().any(|t| tags.contains(t));
        let model_ok = self.models.is_empty()
            || model.is_some_and(|m| {
                self.models.iter().any(|want| match want.strip_suffix('*') {
                    Some(prefix) => m.starts_with(prefix),
                    None => m == want,
                })
            });
        let major_ok = match self.targeted_major {
            None => true,
            Some(major) => {
                os_version
                    .and_then(|v| v.split('.').next())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    == Some(major)
            }
        };
        tag_ok && model_ok && major_ok
    }
}

/// Where an item of the configuration is written: errors found after loading (a
/// target that does not build) are reported at `file:line:col` like load errors.
/// A target made in code rather than read from a file has the default, unplaced site.
#[derive(Debug, Clone, Default)]
pub struct Site(pub(crate) Option<Origin>);

impl Site {
    /// An error at `field` (a path of keys below the item; empty for the item).
    pub fn error(&self, field: &[String], message: impl Into<String>) -> ConfigError {
        match &self.0 {
            Some(origin) => {
                let sub: Vec<PathSeg> = field.iter().map(|k| PathSeg::Key(k.clone())).collect();
                origin.error(&sub, message)
            }
            None => ConfigError {
                file: "<not from a file>".into(),
                loc: crate::Loc::default(),
                path: field.join("."),
                message: message.into(),
            },
        }
    }
}

/// Where events, delivery jobs and dead letters are stored (`storage:`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Storage {
    /// The embedded SQLite store in `dir`; `None`: the data directory.
    Sqlite { dir: Option<PathBuf> },
}

/// The storage kinds `storage.kind` takes.
pub const STORAGE_KINDS: [&str; 1] = ["sqlite"];

#[derive(Debug, Clone)]
pub struct Server {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub api_tokens: Vec<Secret>,
    /// Tokens that may only read (GET) the management API and the console.
    pub read_tokens: Vec<Secret>,
    pub account: String,
    pub region: String,
    pub max_body_bytes: u64,
    pub dedup_window: Duration,
    pub max_backlog: u64,
    pub hop_limit: u32,
    /// Connections open at once.
    pub max_connections: u32,
    /// Time for a request head to arrive (and keep-alive idle time).
    pub header_timeout: Duration,
    /// Time from a request head to its answer.
    pub request_timeout: Duration,
    /// How long shutdown lets requests in flight finish.
    pub drain_timeout: Duration,
    /// Access keys whose SigV4 signatures the AWS JSON API accepts.
    pub aws_access_keys: Vec<AccessKey>,
    /// Events one causation chain (an ingested event and everything derived from
    /// it) may put on the buses; derived events past it are dropped.
    pub chain_budget: u32,
}

#[derive(Debug, Clone)]
pub struct Source {
    pub name: String,
    pub kind: SourceKind,
    pub bus: String,
    pub tokens: Vec<Secret>,
    /// Lower-case name of the header carrying the token, when not `Authorization`.
    pub token_header: Option<String>,
    /// MDM sources: idle polls become events too.
    pub idle_polls: bool,
    /// The signature every request must carry, when the sender signs.
    pub hmac: Option<Hmac>,
    pub mapping: Option<Mapping>,
    /// `kind: os-feed`: the feed polled.
    pub os_feed: Option<OsFeed>,
    /// `kind: unified-log`: the key each device's own token derives from
    /// (HMAC-SHA256 of its serial).
    pub device_key: Option<Secret>,
}

/// An AWS access key pair (the secret never prints).
#[derive(Debug, Clone)]
pub struct AccessKey {
    pub id: String,
    pub secret: Secret,
    /// The actions the key may call; `None`: every action.
    pub actions: Option<Vec<String>>,
    /// The `X-Amz-Security-Token` its requests carry, if it has one.
    pub session_token: Option<Secret>,
}

/// A release feed an `os-feed` source polls.
#[derive(Debug, Clone)]
pub struct OsFeed {
    pub url: String,
    pub format: FeedFormat,
    pub interval: Duration,
    /// The only roots trusted for the feed's server, when set.
    pub ca: Option<crate::CaCerts>,
}

/// The shape of a release feed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeedFormat {
    /// SOFA (`sofafeed.macadmins.io`), v1 or v2.
    Sofa,
    /// Apple's `gdmf.apple.com/v2/pmv`.
    Gdmf,
}

/// How a signed webhook is checked.
#[derive(Debug, Clone)]
pub struct Hmac {
    pub secret: Secret,
    /// Lower-case header name.
    pub header: String,
    pub algorithm: HmacAlgorithm,
    pub encoding: HmacEncoding,
    pub prefix: String,
    /// The signed message, with `{body}` and `{timestamp}` placeholders.
    pub message: String,
    /// Lower-case header name of the signing time, when `message` uses it.
    pub timestamp_header: Option<String>,
    pub tolerance: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HmacAlgorithm {
    Sha256,
    /// For legacy senders only.
    Sha1,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HmacEncoding {
    Hex,
    Base64,
}

/// A mapped field: a constant, a JSONPath into the request body, or a template
/// of text and `{$.path}` substitutions (`device/{$.event.serialNumber}`).
#[derive(Debug, Clone, PartialEq)]
pub enum Field {
    Const(String),
    Path(JsonPath),
    Template(Template),
}

impl Field {
    /// The field as written in the config.
    pub fn as_written(&self) -> &str {
        match self {
            Field::Const(c) => c,
            Field::Path(p) => p.as_str(),
            Field::Template(t) => &t.text,
        }
    }
}

/// Text with `{$.path}` substitutions, each path compiled at load.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    text: String,
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Text(String),
    Path(JsonPath),
}

impl Template {
    /// Parses `text`; `Ok(None)` when it holds no `{$`, an error naming the bad
    /// substitution otherwise.
    pub fn parse(text: &str) -> Result<Option<Template>, String> {
        if !text.contains("{$") {
            return Ok(None);
        }
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find("{$") {
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_owned()));
            }
            let after = &rest[open + 1..];
            let Some(close) = after.find('}') else {
                return Err(format!("{{{after} is not closed with }}"));
            };
            let path = &after[..close];
            let compiled = JsonPath::parse(path)
                .map_err(|e| format!("{{{path}}} is not a valid JSONPath ({e})"))?;
            parts.push(Part::Path(compiled));
            rest = &after[close + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_owned()));
        }
        Ok(Some(Template {
            text: text.to_owned(),
            parts,
        }))
    }

    /// The template as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The text with each path's value in place (strings as they are, numbers and
    /// booleans as JSON); `Ok(None)` when a path matches nothing or null, an error
    /// naming the path when it selects an object or array.
    pub fn render(&self, doc: &serde_json::Value) -> Result<Option<String>, String> {
        use serde_json::Value;
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Path(p) => match p.first(doc) {
                    None | Some(Value::Null) => return Ok(None),
                    Some(Value::String(s)) => out.push_str(s),
                    Some(v @ (Value::Number(_) | Value::Bool(_))) => out.push_str(&v.to_string()),
                    Some(_) => {
                        return Err(format!(
                            "{{{p}}} selects an object or array, not a value to put in text"
                        ))
                    }
                },
            }
        }
        Ok(Some(out))
    }
}

#[derive(Debug, Clone)]
pub struct Mapping {
    pub source: Field,
    pub detail_type: Field,
    pub resources: Vec<Field>,
    pub id: Option<Field>,
    pub time: Option<Field>,
    pub detail: Option<JsonPath>,
}

#[derive(Debug, Clone)]
pub enum Auth {
    Basic {
        username: String,
        password: Secret,
    },
    ApiKey {
        header: String,
        value: Secret,
    },
    Bearer {
        token: Secret,
    },
    Oauth {
        token_url: String,
        client_id: String,
        client_secret: Secret,
        scope: Option<String>,
    },
}

#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    pub bus: String,
    pub description: Option<String>,
    pub enabled: bool,
    /// The event pattern as JSON (validated by the matcher's parser).
    pub event_pattern: Option<Value>,
    pub schedule: Option<Schedule>,
    pub exempt: Option<Value>,
    pub targets: Vec<Target>,
}

/// What a target receives (EventBridge's Input, InputPath, InputTransformer).
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    Event,
    Constant(Value),
    Path(JsonPath),
    Transformer {
        paths: BTreeMap<String, JsonPath>,
        template: String,
    },
}

#[derive(Debug, Clone)]
pub struct RetryPolicy {
    pub maximum_event_age: Duration,
    pub maximum_retry_attempts: u32,
}

impl Default for RetryPolicy {
    /// EventBridge's defaults: 24 hours, 185 attempts.
    fn default() -> Self {
        RetryPolicy {
            maximum_event_age: Duration::from_secs(86_400),
            maximum_retry_attempts: 185,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Target {
    /// Where the target is written, to locate errors found when it is built.
    pub site: Site,
    pub id: String,
    pub input: Input,
    pub retry: RetryPolicy,
    pub concurrency: u32,
    pub rate_limit: Option<f64>,
    pub timeout: Duration,
    pub spec: TargetSpec,
}

#[derive(Debug, Clone)]
pub enum TargetSpec {
    Http {
        url: String,
        method: String,
        headers: BTreeMap<String, String>,
        connection: Option<String>,
    },
    Slack {
        url: Secret,
    },
    Email {
        smtp: Smtp,
        from: String,
        to: Vec<String>,
        subject: String,
    },
    Exec {
        command: Vec<String>,
        env: BTreeMap<String, String>,
        emit_events: bool,
    },
    Bus {
        bus: String,
    },
    Log {
        path: Option<PathBuf>,
        max_bytes: u64,
        keep: u32,
    },
    /// GELF 1.1 messages to a log platform.
    Gelf {
        transport: GelfTransport,
        host: String,
        short_message: String,
        level: u8,
    },
    Mdm(MdmTarget),
    Assets {
        /// Device fields (names of `fleetbus_assets::DeviceUpdate`); `serial` is required.
        device: BTreeMap<String, Field>,
        /// User fields (names of `fleetbus_assets::UserUpdate`); `id` is required.
        user: BTreeMap<String, Field>,
    },
    /// Counts each event into a named time series, by dimensions taken from it.
    Metrics {
        series: String,
        dimensions: BTreeMap<String, JsonPath>,
        /// Exposed on `/metrics` (only bounded dimensions).
        prometheus: bool,
        /// Distinct dimension sets kept; more are counted under `_overflow`.
        max_series: u32,
    },
    /// Runs the `software_update:` policy.
    SoftwareUpdate(std::sync::Arc<SoftwareUpdate>),
}

impl TargetSpec {
    /// The kind this spec is of.
    pub fn kind(&self) -> TargetKind {
        match self {
            TargetSpec::Http { .. } => TargetKind::Http,
            TargetSpec::Slack { .. } => TargetKind::Slack,
            TargetSpec::Email { .. } => TargetKind::Email,
            TargetSpec::Exec { .. } => TargetKind::Exec,
            TargetSpec::Bus { .. } => TargetKind::Bus,
            TargetSpec::Log { .. } => TargetKind::Log,
            TargetSpec::Gelf { .. } => TargetKind::Gelf,
            TargetSpec::Mdm(_) => TargetKind::Mdm,
            TargetSpec::Assets { .. } => TargetKind::Assets,
            TargetSpec::Metrics { .. } => TargetKind::Metrics,
            TargetSpec::SoftwareUpdate(_) => TargetKind::SoftwareUpdate,
        }
    }
}

/// How GELF messages travel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GelfTransport {
    /// `host:port`: one datagram per message, chunked past 8,192 bytes.
    Udp(String),
    /// `host:port`: messages ended by a null byte on one connection.
    Tcp(String),
    /// The URL a message is POSTed to as JSON.
    Http(String),
}

/// The MDM server an mdm target enqueues commands through.
/// `kind: mdm`: a command template sent to devices through an MDM server.
#[derive(Debug, Clone)]
pub struct MdmTarget {
    pub server: MdmServer,
    /// Base URL, without a trailing slash.
    pub url: String,
    pub api_key: Secret,
    pub push: bool,
    /// The command's `RequestType`.
    pub request_type: String,
    /// The `Command` keys other than `RequestType`; strings may hold placeholders.
    pub payload: serde_json::Map<String, Value>,
    pub devices: DeviceSelector,
    /// Placeholder name -> JSONPath into the event.
    pub variables: BTreeMap<String, JsonPath>,
}

/// Placeholders an mdm command template may use besides its `variables`.
pub const MDM_BUILTIN_PLACEHOLDERS: [&str; 8] = [
    "pin",
    "device.serial",
    "device.udid",
    "device.name",
    "device.model",
    "device.os_version",
    "device.user_id",
    "command_uuid",
];

/// Which devices an mdm target addresses.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeviceSelector {
    /// JSONPath to UDIDs in the event.
    pub udid: Option<JsonPath>,
    /// JSONPath to serial numbers in the event.
    pub serial: Option<JsonPath>,
    /// JSONPath to a user id in the event.
    pub user: Option<JsonPath>,
    /// Devices whose OS is below this version: as written, or from the event
    /// (`$.detail.product_version`).
    pub os_below: Option<Field>,
    pub tag: Option<String>,
    pub enrolled_only: bool,
    /// Explicitly every device of the asset store.
    pub all: bool,
}

/// Device fields a `kind: assets` target may set.
pub const ASSET_DEVICE_FIELDS: [&str; 13] = [
    "serial",
    "udid",
    "name",
    "model",
    "os_version",
    "os_build",
    "enrollment_state",
    "enrolled_at",
    "user_id",
    "tags",
    "add_tags",
    "last_seen",
    "notes",
];

/// User fields a `kind: assets` target may set.
pub const ASSET_USER_FIELDS: [&str; 4] = ["id", "email", "name", "status"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tls {
    StartTls,
    Implicit,
    None,
}

#[derive(Debug, Clone)]
pub struct Smtp {
    pub host: String,
    pub port: u16,
    pub tls: Tls,
    pub credentials: Option<(String, Secret)>,
    /// `ca_file`: the only roots trusted for the server's certificate; `None` means
    /// the platform's. Never set with [`Tls::None`].
    pub ca: Option<CaCerts>,
}

#[derive(Debug, Clone)]
pub struct Retention {
    pub archive: Duration,
    pub deliveries: Duration,
}

/// A named archive: the events of `bus` matching `event_pattern`, kept for
/// `retention` (at least as long as the default archive's).
#[derive(Debug, Clone)]
pub struct Archive {
    pub name: String,
    pub description: Option<String>,
    pub bus: String,
    /// The pattern as JSON (validated by the matcher's parser); `None`: every event.
    pub event_pattern: Option<Value>,
    pub retention: Duration,
}

/// The archive every event is in.
pub const DEFAULT_ARCHIVE: &str = "default";
