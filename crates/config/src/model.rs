//! Stage two: the validated configuration the engine runs. Every reference,
//! pattern, duration, schedule and secret is checked here, and every problem is
//! reported with its position.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::ca::CaCerts;
use crate::error::{ConfigError, ConfigErrors};
use crate::jsonpath::Path as JsonPath;
use crate::kinds;
use crate::load::{load_raw, Origin, RawSet};
use crate::raw::*;
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
}

/// Where an item of the configuration is written: errors found after loading (a
/// target that does not build) are reported at `file:line:col` like load errors.
/// A target made in code rather than read from a file has the default, unplaced site.
#[derive(Debug, Clone, Default)]
pub struct Site(Option<Origin>);

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
    pub account: String,
    pub region: String,
    pub max_body_bytes: u64,
    pub dedup_window: Duration,
    pub max_backlog: u64,
    pub hop_limit: u32,
}

#[derive(Debug, Clone)]
pub struct Source {
    pub name: String,
    pub kind: SourceKind,
    pub bus: String,
    pub tokens: Vec<Secret>,
    pub mapping: Option<Mapping>,
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
    Mdm(MdmTarget),
    Assets {
        /// Device fields (names of `fleetbus_assets::DeviceUpdate`); `serial` is required.
        device: BTreeMap<String, Field>,
        /// User fields (names of `fleetbus_assets::UserUpdate`); `id` is required.
        user: BTreeMap<String, Field>,
    },
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
            TargetSpec::Mdm(_) => TargetKind::Mdm,
            TargetSpec::Assets { .. } => TargetKind::Assets,
        }
    }
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
    pub os_below: Option<String>,
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

/// Reads, merges and validates a file or directory; every error at once.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let mut errors = Vec::new();
    let raw = load_raw(path, &mut errors);
    let config = validate(raw, &mut errors);
    if errors.is_empty() {
        Ok(config)
    } else {
        errors.sort_by(|a, b| {
            (&a.file, a.loc.line, a.loc.col).cmp(&(&b.file, b.loc.line, b.loc.col))
        });
        Err(ConfigErrors(errors))
    }
}

/// Validates config text as if read from `name` (relative paths resolve against
/// `base_dir`). For tests and `PutRule`-style API callers.
pub fn load_str(name: &str, text: &str, base_dir: &Path) -> Result<Config, ConfigErrors> {
    let mut errors = Vec::new();
    let mut raw = RawSet {
        base_dir: base_dir.to_path_buf(),
        ..RawSet::default()
    };
    crate::load::load_text(&name.into(), text, &mut raw, &mut errors);
    let config = validate(raw, &mut errors);
    if errors.is_empty() {
        Ok(config)
    } else {
        Err(ConfigErrors(errors))
    }
}

fn key(k: &str) -> PathSeg {
    PathSeg::Key(k.to_owned())
}

struct Ctx<'a> {
    errors: &'a mut Vec<ConfigError>,
    base_dir: PathBuf,
}

impl Ctx<'_> {
    fn secret(&mut self, origin: &Origin, path: &[PathSeg], text: &str) -> Secret {
        match Secret::resolve(text, &self.base_dir) {
            Ok(s) => s,
            Err(msg) => {
                self.errors.push(origin.error(path, msg));
                Secret::empty()
            }
        }
    }

    fn duration(
        &mut self,
        origin: &Origin,
        path: &[PathSeg],
        text: Option<&str>,
        default: Duration,
    ) -> Duration {
        match text.map(parse_duration) {
            None => default,
            Some(Ok(d)) => d,
            Some(Err(msg)) => {
                self.errors.push(origin.error(path, msg));
                default
            }
        }
    }
}

/// `500ms`, `30s`, `5m`, `24h`, `90d`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (expected e.g. 30s, 5m, 24h, 90d)"))?;
    let secs = match unit.trim() {
        "ms" => return Ok(Duration::from_millis(n)),
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => {
            return Err(format!(
                "{text:?} is not a duration (expected a unit among ms, s, m, h, d)"
            ))
        }
    };
    Ok(Duration::from_secs(n.saturating_mul(secs)))
}

fn validate(raw: RawSet, errors: &mut Vec<ConfigError>) -> Config {
    let mut cx = Ctx {
        errors,
        base_dir: raw.base_dir.clone(),
    };
    let server = validate_server(&raw, &mut cx);

    let mut buses = vec!["default".to_owned()];
    let mut bus_descriptions = BTreeMap::new();
    for b in &raw.buses {
        if b.value.name.trim().is_empty() {
            cx.errors
                .push(b.origin.error(&[key("name")], "must not be empty"));
        } else if buses.contains(&b.value.name) {
            if b.value.name != "default" {
                cx.errors.push(b.origin.error(
                    &[key("name")],
                    format!("duplicate bus name {:?}", b.value.name),
                ));
            }
        } else {
            buses.push(b.value.name.clone());
        }
        if let Some(d) = &b.value.description {
            bus_descriptions.insert(b.value.name.clone(), d.clone());
        }
    }

    let mut connections = BTreeMap::new();
    for c in &raw.connections {
        let o = &c.origin;
        let auth = match &c.value.auth {
            RawAuth::Basic { username, password } => Auth::Basic {
                username: username.clone(),
                password: cx.secret(o, &[key("auth"), key("basic"), key("password")], password),
            },
            RawAuth::ApiKey { header, value } => Auth::ApiKey {
                header: header.clone(),
                value: cx.secret(o, &[key("auth"), key("api_key"), key("value")], value),
            },
            RawAuth::Bearer { token } => Auth::Bearer {
                token: cx.secret(o, &[key("auth"), key("bearer"), key("token")], token),
            },
            RawAuth::Oauth {
                token_url,
                client_id,
                client_secret,
                scope,
            } => Auth::Oauth {
                token_url: token_url.clone(),
                client_id: client_id.clone(),
                client_secret: cx.secret(
                    o,
                    &[key("auth"), key("oauth"), key("client_secret")],
                    client_secret,
                ),
                scope: scope.clone(),
            },
        };
        if connections.insert(c.value.name.clone(), auth).is_some() {
            cx.errors.push(o.error(
                &[key("name")],
                format!("duplicate connection name {:?}", c.value.name),
            ));
        }
    }

    let mut sources = Vec::new();
    let mut source_names = HashSet::new();
    for s in &raw.sources {
        let o = &s.origin;
        let v = &s.value;
        if !valid_name(&v.name) {
            cx.errors.push(o.error(
                &[key("name")],
                format!(
                    "{:?} is not a valid name (expected letters, digits, '-', '_' or '.')",
                    v.name
                ),
            ));
        }
        if !source_names.insert(v.name.clone()) {
            cx.errors.push(o.error(
                &[key("name")],
                format!("duplicate source name {:?}", v.name),
            ));
        }
        let bus = v.bus.clone().unwrap_or_else(|| "default".into());
        if !buses.contains(&bus) {
            cx.errors.push(o.error(
                &[key("bus")],
                format!("unknown bus {bus:?} (declared: {})", buses.join(", ")),
            ));
        }
        if v.tokens.is_empty() {
            cx.errors.push(o.error(
                &[key("tokens")],
                "a source needs at least one token (every ingest endpoint is authenticated)",
            ));
        }
        let tokens = v
            .tokens
            .iter()
            .enumerate()
            .map(|(i, t)| cx.secret(o, &[key("tokens"), PathSeg::Index(i)], t))
            .collect();
        let mapping = match (&v.kind, &v.mapping) {
            (SourceKind::Generic, None) => {
                cx.errors.push(o.error(
                    &[],
                    "a generic source needs a mapping (source, detail_type, resources...)",
                ));
                None
            }
            (SourceKind::Generic, Some(m)) => {
                Some(validate_mapping(m, &o.child(key("mapping")), &mut cx))
            }
            (_, Some(_)) => {
                cx.errors
                    .push(o.key_error(&[key("mapping")], "applies only to kind generic"));
                None
            }
            (_, None) => None,
        };
        sources.push(Source {
            name: v.name.clone(),
            kind: v.kind,
            bus,
            tokens,
            mapping,
        });
    }

    let mut rules = Vec::new();
    let mut rule_names: BTreeMap<String, String> = BTreeMap::new();
    for r in &raw.rules {
        let o = &r.origin;
        let v = &r.value;
        if !valid_name(&v.name) {
            cx.errors.push(o.error(
                &[key("name")],
                format!(
                    "{:?} is not a valid name (expected letters, digits, '-', '_' or '.')",
                    v.name
                ),
            ));
        }
        let here = o.error(&[key("name")], "");
        if let Some(first) = rule_names.get(&v.name) {
            cx.errors.push(o.error(
                &[key("name")],
                format!("duplicate rule name {:?} (first at {first})", v.name),
            ));
        } else {
            rule_names.insert(
                v.name.clone(),
                format!("{}:{}:{}", here.file, here.loc.line, here.loc.col),
            );
        }
        let bus = v.bus.clone().unwrap_or_else(|| "default".into());
        if !buses.contains(&bus) {
            cx.errors.push(o.error(
                &[key("bus")],
                format!("unknown bus {bus:?} (declared: {})", buses.join(", ")),
            ));
        }
        let event_pattern = v
            .event_pattern
            .as_ref()
            .and_then(|p| check_pattern(p, o, "event_pattern", &mut cx));
        let exempt = v
            .exempt
            .as_ref()
            .and_then(|p| check_pattern(p, o, "exempt", &mut cx));
        let schedule = v.schedule.as_ref().and_then(|s| match Schedule::parse(s) {
            Ok(s) => Some(s),
            Err(e) => {
                cx.errors.push(o.error(&[key("schedule")], e.to_string()));
                None
            }
        });
        match (&v.event_pattern, &v.schedule) {
            (None, None) => cx
                .errors
                .push(o.error(&[], "a rule needs an event_pattern or a schedule")),
            (Some(_), Some(_)) => cx.errors.push(o.key_error(
                &[key("schedule")],
                "a rule has an event_pattern or a schedule, not both",
            )),
            _ => {}
        }
        let mut target_ids = HashSet::new();
        let mut targets = Vec::new();
        for (i, t) in v.targets.iter().enumerate() {
            let to = o.child(key("targets")).child(PathSeg::Index(i));
            if !target_ids.insert(t.id.clone()) {
                cx.errors.push(to.error(
                    &[key("id")],
                    format!("duplicate target id {:?} in rule {:?}", t.id, v.name),
                ));
            }
            if let Some(target) =
                validate_target(t, &to, &buses, &connections, r.had_errors, &mut cx)
            {
                targets.push(target);
            }
        }
        rules.push(Rule {
            name: v.name.clone(),
            bus,
            description: v.description.clone(),
            enabled: v.state == RuleState::Enabled,
            event_pattern,
            schedule,
            exempt,
            targets,
        });
    }

    let retention = match &raw.retention {
        None => Retention {
            archive: Duration::from_secs(90 * 86_400),
            deliveries: Duration::from_secs(7 * 86_400),
        },
        Some(r) => Retention {
            archive: cx.duration(
                &r.origin,
                &[key("archive")],
                r.value.archive.as_deref(),
                Duration::from_secs(90 * 86_400),
            ),
            deliveries: cx.duration(
                &r.origin,
                &[key("deliveries")],
                r.value.deliveries.as_deref(),
                Duration::from_secs(7 * 86_400),
            ),
        },
    };

    // Duplicates are found among archived events, so the window cannot outlast them.
    if server.dedup_window > retention.archive {
        let why = "duplicates are detected among archived events";
        let (window, archive) = (server.dedup_window.as_secs(), retention.archive.as_secs());
        // Point at whichever the file set: the window, or else the archive that
        // cuts the default window short.
        if let Some(s) = raw
            .server
            .as_ref()
            .filter(|s| s.value.dedup_window.is_some())
        {
            cx.errors.push(s.origin.error(
                &[key("dedup_window")],
                format!("{window}s is longer than the archive retention ({archive}s): {why}"),
            ));
        } else if let Some(r) = &raw.retention {
            cx.errors.push(r.origin.error(
                &[key("archive")],
                format!("{archive}s is shorter than the dedup window ({window}s): {why}"),
            ));
        }
    }

    let storage = validate_storage(&raw, &mut cx);

    Config {
        server,
        sources,
        connections,
        buses,
        bus_descriptions,
        rules,
        retention,
        storage,
    }
}

fn validate_storage(raw: &RawSet, cx: &mut Ctx<'_>) -> Storage {
    let Some(s) = &raw.storage else {
        return Storage::Sqlite { dir: None };
    };
    let dir = s.value.path.as_ref().map(|p| cx.base_dir.join(p));
    match s.value.kind.as_deref().unwrap_or("sqlite") {
        "sqlite" => {}
        other => cx.errors.push(s.origin.error(
            &[key("kind")],
            format!(
                "unknown storage kind {other:?} (expected one of {})",
                STORAGE_KINDS.join(", ")
            ),
        )),
    }
    Storage::Sqlite { dir }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn validate_server(raw: &RawSet, cx: &mut Ctx<'_>) -> Server {
    let default_listen: SocketAddr = ([127, 0, 0, 1], 8088).into();
    let mut server = Server {
        listen: default_listen,
        data_dir: cx.base_dir.join("fleetbus-data"),
        api_tokens: Vec::new(),
        account: "000000000000".into(),
        region: "local".into(),
        max_body_bytes: 4 * 1024 * 1024,
        dedup_window: Duration::from_secs(600),
        max_backlog: 100_000,
        hop_limit: 8,
    };
    let Some(s) = &raw.server else { return server };
    let o = &s.origin;
    let v = &s.value;
    if let Some(listen) = &v.listen {
        match listen.parse() {
            Ok(addr) => server.listen = addr,
            Err(_) => cx.errors.push(o.error(
                &[key("listen")],
                format!("{listen:?} is not an address (expected host:port, e.g. 127.0.0.1:8088)"),
            )),
        }
    }
    if let Some(dir) = &v.data_dir {
        server.data_dir = cx.base_dir.join(dir);
    }
    server.api_tokens = v
        .api_tokens
        .iter()
        .enumerate()
        .map(|(i, t)| cx.secret(o, &[key("api_tokens"), PathSeg::Index(i)], t))
        .collect();
    if let Some(a) = &v.account {
        server.account = a.clone();
    }
    if let Some(r) = &v.region {
        server.region = r.clone();
    }
    if let Some(b) = v.max_body_bytes {
        if b < 1024 {
            cx.errors.push(o.error(
                &[key("max_body_bytes")],
                format!("{b} is too small (expected at least 1024)"),
            ));
        }
        server.max_body_bytes = b;
    }
    server.dedup_window = cx.duration(
        o,
        &[key("dedup_window")],
        v.dedup_window.as_deref(),
        server.dedup_window,
    );
    if let Some(b) = v.max_backlog {
        server.max_backlog = b;
    }
    if let Some(h) = v.hop_limit {
        if h == 0 {
            cx.errors
                .push(o.error(&[key("hop_limit")], "must be at least 1"));
        }
        server.hop_limit = h;
    }
    server
}

/// A mapped field: a JSONPath when it starts with `$`, a template when it holds
/// `{$...}`, a constant otherwise. A `$.` in a constant is refused: it would be
/// kept as literal text where a value from the request was meant.
fn field(text: &str, o: &Origin, path: &[PathSeg], cx: &mut Ctx<'_>) -> Field {
    if text.starts_with('$') {
        return match JsonPath::parse(text) {
            Ok(p) => Field::Path(p),
            Err(e) => {
                cx.errors
                    .push(o.error(path, format!("{text:?} is not a valid JSONPath ({e})")));
                Field::Const(text.to_owned())
            }
        };
    }
    match Template::parse(text) {
        Ok(Some(t)) => Field::Template(t),
        Ok(None) if text.contains("$.") => {
            let at = text.find("$.").unwrap_or(0);
            cx.errors.push(o.error(
                path,
                format!(
                    "{text:?} has a JSONPath inside a constant, which would be kept as literal text; \
                     write it as a substitution: {:?}",
                    format!("{}{{{}}}", &text[..at], &text[at..])
                ),
            ));
            Field::Const(text.to_owned())
        }
        Ok(None) => Field::Const(text.to_owned()),
        Err(e) => {
            cx.errors.push(o.error(path, format!("{text:?}: {e}")));
            Field::Const(text.to_owned())
        }
    }
}

/// A field that must be a JSONPath (`$...`); `None` after reporting otherwise.
fn json_path(text: &str, o: &Origin, path: &[PathSeg], cx: &mut Ctx<'_>) -> Option<JsonPath> {
    if !text.starts_with('$') {
        cx.errors
            .push(o.error(path, format!("{text:?} must be a JSONPath starting with $")));
        return None;
    }
    match JsonPath::parse(text) {
        Ok(p) => Some(p),
        Err(e) => {
            cx.errors
                .push(o.error(path, format!("{text:?} is not a valid JSONPath ({e})")));
            None
        }
    }
}

fn validate_mapping(m: &RawMapping, o: &Origin, cx: &mut Ctx<'_>) -> Mapping {
    Mapping {
        source: field(&m.source, o, &[key("source")], cx),
        detail_type: field(&m.detail_type, o, &[key("detail_type")], cx),
        resources: m
            .resources
            .iter()
            .enumerate()
            .map(|(i, r)| field(r, o, &[key("resources"), PathSeg::Index(i)], cx))
            .collect(),
        id: m.id.as_deref().map(|t| field(t, o, &[key("id")], cx)),
        time: m.time.as_deref().map(|t| field(t, o, &[key("time")], cx)),
        detail: m
            .detail
            .as_deref()
            .and_then(|t| json_path(t, o, &[key("detail")], cx)),
    }
}

/// A pattern may be written as YAML or as a JSON string; both must compile.
fn check_pattern(p: &Value, o: &Origin, name: &str, cx: &mut Ctx<'_>) -> Option<Value> {
    let value = match p {
        Value::String(text) => match serde_json::from_str::<Value>(text) {
            Ok(v) => v,
            Err(e) => {
                cx.errors
                    .push(o.error(&[key(name)], format!("is not valid JSON: {e}")));
                return None;
            }
        },
        other => other.clone(),
    };
    match fleetbus_pattern::Pattern::from_value(&value) {
        Ok(_) => Some(value),
        Err(e) => {
            cx.errors
                .push(o.error(&[key(name)], format!("invalid pattern: {e}")));
            None
        }
    }
}

/// Which target fields each kind accepts, beyond the common ones.
fn validate_target(
    t: &RawTarget,
    o: &Origin,
    buses: &[String],
    connections: &BTreeMap<String, Auth>,
    already_reported: bool,
    cx: &mut Ctx<'_>,
) -> Option<Target> {
    let errors_before = cx.errors.len();
    let Some(kind) = t.kind else {
        // A kind that stage one refused has been reported and dropped already.
        if already_reported {
            return None;
        }
        cx.errors.push(o.error(
            &[],
            format!(
                "missing required field kind (expected one of {})",
                kinds::names()
            ),
        ));
        return None;
    };
    let spec = kinds::spec(kind);
    // The fields as written (from the file, so no table of RawTarget's fields is kept
    // by hand): a kind-specific field of another kind is refused, naming what this
    // kind takes.
    let written: Vec<String> = o
        .root
        .lookup(&o.path)
        .and_then(|(node, _)| node.as_map())
        .map(|entries| entries.iter().map(|(k, _, _)| k.clone()).collect())
        .unwrap_or_default();
    for name in written {
        if kinds::is_kind_field(&name) && !spec.fields.contains(&name.as_str()) {
            cx.errors.push(o.key_error(
                &[key(&name)],
                format!(
                    "does not apply to kind {} (it takes: {})",
                    spec.name,
                    spec.fields.join(", ")
                ),
            ));
        }
    }
    let input = validate_input(t, o, cx);
    let retry = match &t.retry_policy {
        None => RetryPolicy::default(),
        Some(r) => {
            let ro = o.child(key("retry_policy"));
            let age = cx.duration(
                &ro,
                &[key("maximum_event_age")],
                r.maximum_event_age.as_deref(),
                Duration::from_secs(86_400),
            );
            if !(60..=86_400).contains(&age.as_secs()) {
                cx.errors.push(ro.error(
                    &[key("maximum_event_age")],
                    format!(
                        "{}s is out of range (expected 60s to 24h, as EventBridge)",
                        age.as_secs()
                    ),
                ));
            }
            let attempts = r.maximum_retry_attempts.unwrap_or(185);
            if attempts > 185 {
                cx.errors.push(ro.error(
                    &[key("maximum_retry_attempts")],
                    format!("{attempts} is out of range (expected 0 to 185, as EventBridge)"),
                ));
            }
            RetryPolicy {
                maximum_event_age: age,
                maximum_retry_attempts: attempts,
            }
        }
    };
    let concurrency = t.concurrency.unwrap_or(4);
    if concurrency == 0 {
        cx.errors
            .push(o.error(&[key("concurrency")], "must be at least 1"));
    }
    if let Some(r) = t.rate_limit {
        if !(r > 0.0 && r.is_finite()) {
            cx.errors.push(o.error(
                &[key("rate_limit")],
                format!("{r} is not a positive number of deliveries per second"),
            ));
        }
    }
    let timeout = cx.duration(
        o,
        &[key("timeout")],
        t.timeout.as_deref(),
        Duration::from_secs(10),
    );
    let require = |cx: &mut Ctx<'_>, name: &str, present: bool| {
        if !present {
            cx.errors.push(o.error(
                &[],
                format!(
                    "missing required field {name} (kind {} needs it)",
                    spec.name
                ),
            ));
        }
    };
    let spec = match kind {
        TargetKind::Http => {
            require(cx, "url", t.url.is_some());
            let url = t.url.clone().unwrap_or_default();
            if t.url.is_some() && !(url.starts_with("http://") || url.starts_with("https://")) {
                cx.errors.push(o.error(
                    &[key("url")],
                    format!("{url:?} is not an http:// or https:// URL"),
                ));
            }
            if let Some(c) = &t.connection {
                if !connections.contains_key(c) {
                    let known: Vec<&str> = connections.keys().map(String::as_str).collect();
                    cx.errors.push(o.error(
                        &[key("connection")],
                        format!(
                            "unknown connection {c:?} (declared: {})",
                            if known.is_empty() {
                                "none".to_owned()
                            } else {
                                known.join(", ")
                            }
                        ),
                    ));
                }
            }
            let method = t
                .method
                .clone()
                .unwrap_or_else(|| "POST".into())
                .to_ascii_uppercase();
            if !["GET", "POST", "PUT", "PATCH", "DELETE"].contains(&method.as_str()) {
                cx.errors.push(o.error(
                    &[key("method")],
                    format!(
                        "{method:?} is not supported (expected GET, POST, PUT, PATCH or DELETE)"
                    ),
                ));
            }
            TargetSpec::Http {
                url,
                method,
                headers: t.headers.clone().unwrap_or_default(),
                connection: t.connection.clone(),
            }
        }
        TargetKind::Slack => {
            require(cx, "url", t.url.is_some());
            let url = t
                .url
                .as_deref()
                .map(|u| cx.secret(o, &[key("url")], u))
                .unwrap_or_else(Secret::empty);
            TargetSpec::Slack { url }
        }
        TargetKind::Email => {
            require(cx, "smtp", t.smtp.is_some());
            require(cx, "from", t.from.is_some());
            require(cx, "to", t.to.as_ref().is_some_and(|v| !v.is_empty()));
            let smtp = t.smtp.as_ref().map(|s| {
                let so = o.child(key("smtp"));
                let tls = match s.tls.as_deref() {
                    None | Some("starttls") => Tls::StartTls,
                    Some("tls") => Tls::Implicit,
                    Some("none") => Tls::None,
                    Some(other) => {
                        cx.errors.push(so.error(
                            &[key("tls")],
                            format!(
                                "unknown value {other:?} (expected one of starttls, tls, none)"
                            ),
                        ));
                        Tls::StartTls
                    }
                };
                let port = s.port.unwrap_or(match tls {
                    Tls::Implicit => 465,
                    Tls::StartTls => 587,
                    Tls::None => 25,
                });
                let credentials = match (&s.username, &s.password) {
                    (Some(u), Some(p)) => Some((u.clone(), cx.secret(&so, &[key("password")], p))),
                    (None, None) => None,
                    _ => {
                        cx.errors
                            .push(so.error(&[], "username and password go together"));
                        None
                    }
                };
                let ca = s.ca_file.as_deref().and_then(|f| {
                    if tls == Tls::None {
                        cx.errors.push(so.error(
                            &[key("ca_file")],
                            "has no effect with tls: none (a plain connection checks no certificate; use starttls or tls)",
                        ));
                        return None;
                    }
                    match CaCerts::read(&cx.base_dir.join(f)) {
                        Ok(ca) => Some(ca),
                        Err(msg) => {
                            cx.errors.push(so.error(&[key("ca_file")], msg));
                            None
                        }
                    }
                });
                Smtp {
                    host: s.host.clone(),
                    port,
                    tls,
                    credentials,
                    ca,
                }
            });
            TargetSpec::Email {
                smtp: smtp.unwrap_or(Smtp {
                    host: String::new(),
                    port: 0,
                    tls: Tls::None,
                    credentials: None,
                    ca: None,
                }),
                from: t.from.clone().unwrap_or_default(),
                to: t.to.clone().unwrap_or_default(),
                subject: t
                    .subject
                    .clone()
                    .unwrap_or_else(|| "fleetbus: <detail-type>".into()),
            }
        }
        TargetKind::Exec => {
            let command = t.command.clone().unwrap_or_default();
            if command.is_empty() || command[0].is_empty() {
                cx.errors.push(o.error(&[key("command")], "missing required program (expected an argv list, e.g. [/usr/local/bin/handler, --flag])"));
            }
            TargetSpec::Exec {
                command,
                env: t.env.clone().unwrap_or_default(),
                emit_events: t.emit_events.unwrap_or(false),
            }
        }
        TargetKind::Bus => {
            require(cx, "bus", t.bus.is_some());
            let bus = t.bus.clone().unwrap_or_default();
            if t.bus.is_some() && !buses.contains(&bus) {
                cx.errors.push(o.error(
                    &[key("bus")],
                    format!("unknown bus {bus:?} (declared: {})", buses.join(", ")),
                ));
            }
            TargetSpec::Bus { bus }
        }
        TargetKind::Log => TargetSpec::Log {
            path: t
                .path
                .as_deref()
                .filter(|p| *p != "stdout")
                .map(|p| cx.base_dir.join(p)),
            max_bytes: t.max_bytes.unwrap_or(64 * 1024 * 1024),
            keep: t.keep.unwrap_or(5),
        },
        TargetKind::Mdm => TargetSpec::Mdm(validate_mdm(t, o, &require, cx)),
        TargetKind::Assets => validate_assets(t, o, cx),
    };
    (cx.errors.len() == errors_before).then(|| Target {
        site: Site(Some(o.clone())),
        id: t.id.clone(),
        input,
        retry,
        concurrency,
        rate_limit: t.rate_limit,
        timeout,
        spec,
    })
}

fn validate_input(t: &RawTarget, o: &Origin, cx: &mut Ctx<'_>) -> Input {
    let set = [
        t.input.is_some(),
        t.input_path.is_some(),
        t.input_transformer.is_some(),
    ];
    if set.iter().filter(|s| **s).count() > 1 {
        cx.errors.push(o.error(
            &[],
            "input, input_path and input_transformer exclude each other (set one)",
        ));
    }
    if let Some(text) = &t.input {
        return match serde_json::from_str(text) {
            Ok(v) => Input::Constant(v),
            Err(e) => {
                cx.errors.push(o.error(
                    &[key("input")],
                    format!("is not valid JSON: {e} (EventBridge's Input is JSON text)"),
                ));
                Input::Event
            }
        };
    }
    if let Some(path) = &t.input_path {
        return match json_path(path, o, &[key("input_path")], cx) {
            Some(p) => Input::Path(p),
            None => Input::Event,
        };
    }
    if let Some(tr) = &t.input_transformer {
        let to = o.child(key("input_transformer"));
        if tr.input_paths_map.len() > 100 {
            cx.errors.push(to.error(
                &[key("input_paths_map")],
                "has more than 100 entries (EventBridge's limit)",
            ));
        }
        let mut paths = BTreeMap::new();
        for (name, path) in &tr.input_paths_map {
            if name.starts_with("aws.") {
                cx.errors.push(to.error(
                    &[key("input_paths_map"), key(name)],
                    "names starting with aws. are reserved",
                ));
            }
            if let Some(p) = json_path(path, &to, &[key("input_paths_map"), key(name)], cx) {
                paths.insert(name.clone(), p);
            }
        }
        for placeholder in placeholders(&tr.input_template) {
            let reserved = [
                "aws.events.rule-arn",
                "aws.events.rule-name",
                "aws.events.event",
                "aws.events.event.json",
                "aws.events.event.ingestion-time",
            ];
            if !tr.input_paths_map.contains_key(placeholder) && !reserved.contains(&placeholder) {
                cx.errors.push(to.error(
                    &[key("input_template")],
                    format!(
                    "placeholder <{placeholder}> is not in input_paths_map (defined: {})",
                    tr.input_paths_map.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
                ));
            }
        }
        return Input::Transformer {
            paths,
            template: tr.input_template.clone(),
        };
    }
    Input::Event
}

/// `<name>` placeholders of an EventBridge input template.
pub fn placeholders(template: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find('<') {
        let after = &rest[start + 1..];
        match after.find('>') {
            Some(end)
                if end > 0
                    && after[..end]
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')) =>
            {
                out.push(&after[..end]);
                rest = &after[end + 1..];
            }
            _ => rest = after,
        }
    }
    out
}

/// `kind: mdm`: the server, the command template (checked against Apple's schema
/// now, so a typo fails the load, not the first delivery) and the device selector.
fn validate_mdm(
    t: &RawTarget,
    o: &Origin,
    require: &dyn Fn(&mut Ctx<'_>, &str, bool),
    cx: &mut Ctx<'_>,
) -> MdmTarget {
    require(cx, "server", t.server.is_some());
    require(cx, "url", t.url.is_some());
    require(cx, "api_key", t.api_key.is_some());
    require(cx, "mdm_command", t.mdm_command.is_some());
    require(cx, "devices", t.devices.is_some());
    let server = match t.server.as_deref() {
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
    let url = t.url.clone().unwrap_or_default();
    if t.url.is_some() && !(url.starts_with("http://") || url.starts_with("https://")) {
        cx.errors.push(o.error(
            &[key("url")],
            format!("{url:?} is not an http:// or https:// URL"),
        ));
    }
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
                os_below: d.os_below.clone(),
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

/// `kind: assets`: field mappings for the device and/or the user record.
fn validate_assets(t: &RawTarget, o: &Origin, cx: &mut Ctx<'_>) -> TargetSpec {
    if t.device.is_none() && t.user.is_none() {
        cx.errors.push(o.error(
            &[],
            "missing required field device or user (kind assets needs at least one)",
        ));
    }
    let mapped = |section: &str,
                  fields: &Option<BTreeMap<String, String>>,
                  allowed: &[&str],
                  required: &str,
                  cx: &mut Ctx<'_>| {
        let mut out = BTreeMap::new();
        let Some(fields) = fields else {
            return out;
        };
        for (name, text) in fields {
            if !allowed.contains(&name.as_str()) {
                cx.errors.push(o.key_error(
                    &[key(section), key(name)],
                    format!(
                        "unknown {section} field (expected one of: {})",
                        allowed.join(", ")
                    ),
                ));
                continue;
            }
            out.insert(name.clone(), field(text, o, &[key(section), key(name)], cx));
        }
        if !fields.contains_key(required) {
            cx.errors.push(o.error(
                &[key(section)],
                format!("missing required field {required} (it says which record to update)"),
            ));
        }
        out
    };
    let device = mapped("device", &t.device, &ASSET_DEVICE_FIELDS, "serial", cx);
    let user = mapped("user", &t.user, &ASSET_USER_FIELDS, "id", cx);
    TargetSpec::Assets { device, user }
}
