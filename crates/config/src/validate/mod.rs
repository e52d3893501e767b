//! Stage two, validation: the raw sections checked and turned into the model
//! ([`crate::model`]). Each section has its function here; each target kind's own
//! fields are checked by its module in [`crate::kinds`]. Every problem is reported
//! with its position, all at once.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::error::{ConfigError, ConfigErrors};
use crate::jsonpath::Path as JsonPath;
use crate::kinds;
use crate::load::{load_raw, Origin, RawSet};
use crate::model::*;
use crate::raw::*;
use crate::schedule::Schedule;
use crate::secret::Secret;
use crate::yaml::PathSeg;

mod software_update;

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

pub(crate) fn key(k: &str) -> PathSeg {
    PathSeg::Key(k.to_owned())
}

pub(crate) struct Ctx<'a> {
    pub(crate) errors: &'a mut Vec<ConfigError>,
    pub(crate) base_dir: PathBuf,
}

impl Ctx<'_> {
    pub(crate) fn secret(&mut self, origin: &Origin, path: &[PathSeg], text: &str) -> Secret {
        match Secret::resolve(text, &self.base_dir) {
            Ok(s) => s,
            Err(msg) => {
                self.errors.push(origin.error(path, msg));
                Secret::empty()
            }
        }
    }

    pub(crate) fn duration(
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
        let bus = bus_of(v.bus.as_deref(), o, &buses, &mut cx);
        let spec = crate::source_kinds::spec(v.kind);
        let hmac = v
            .hmac
            .as_ref()
            .map(|h| validate_hmac(h, &o.child(key("hmac")), &mut cx));
        let tokens = v
            .tokens
            .iter()
            .enumerate()
            .map(|(i, t)| cx.secret(o, &[key("tokens"), PathSeg::Index(i)], t))
            .collect();
        let token_header = v
            .token_header
            .as_deref()
            .and_then(|h| header_name(h, o, "token_header", &mut cx));
        let fields = kind_fields(
            o,
            kinds::serde_fields::<RawSource>(),
            spec.fields(),
            spec.name,
            crate::source_kinds::is_kind_field,
            &mut cx,
        );
        let parts = (spec.validate)(fields, o, &mut cx);
        if v.tokens.is_empty() && v.hmac.is_none() && parts.device_key.is_none() && spec.needs_token
        {
            cx.errors.push(o.error(
                &[key("tokens")],
                "a source needs at least one token or an hmac signature (every ingest endpoint is authenticated)",
            ));
        }
        sources.push(Source {
            name: v.name.clone(),
            kind: v.kind,
            bus,
            tokens,
            token_header,
            idle_polls: parts.idle_polls,
            hmac,
            mapping: parts.mapping,
            os_feed: parts.os_feed,
            device_key: parts.device_key,
        });
    }

    let policy =
        software_update::validate_software_update(raw.software_update.as_ref(), &buses, &mut cx);

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
        let bus = bus_of(v.bus.as_deref(), o, &buses, &mut cx);
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
            let env = TargetEnv {
                buses: &buses,
                connections: &connections,
                software_update: policy.as_ref(),
            };
            if let Some(target) = validate_target(t, &to, &env, r.had_errors, &mut cx) {
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

    if let (Some(policy), Some(section)) = (&policy, &raw.software_update) {
        for rule in software_update::rules(policy, &section.origin) {
            if let Some(first) = rule_names.get(&rule.name) {
                cx.errors.push(section.origin.error(
                    &[],
                    format!(
                        "the software_update: section runs as rule {:?}, a name the rule at {first} has already",
                        rule.name
                    ),
                ));
            }
            rules.push(rule);
        }
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
    let archives = validate_archives(&raw, &buses, &retention, &mut cx);

    Config {
        server,
        sources,
        connections,
        buses,
        bus_descriptions,
        rules,
        retention,
        storage,
        archives,
        software_update: policy,
    }
}

fn validate_archives(
    raw: &RawSet,
    buses: &[String],
    retention: &Retention,
    cx: &mut Ctx<'_>,
) -> Vec<Archive> {
    let mut out: Vec<Archive> = Vec::new();
    for a in &raw.archives {
        let (o, v) = (&a.origin, &a.value);
        // EventBridge's ArchiveName: [\.\-_A-Za-z0-9]+, 1 to 48 characters.
        let valid = !v.name.is_empty()
            && v.name.len() <= 48
            && v.name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
        if !valid {
            cx.errors.push(o.error(
                &[key("name")],
                format!(
                    "{:?} is not a valid archive name (1 to 48 letters, digits, '.', '-' or '_')",
                    v.name
                ),
            ));
        } else if v.name == DEFAULT_ARCHIVE {
            cx.errors.push(o.error(
                &[key("name")],
                "\"default\" is the archive of every event; name this one differently",
            ));
        } else if out.iter().any(|x| x.name == v.name) {
            cx.errors.push(o.error(
                &[key("name")],
                format!("duplicate archive name {:?}", v.name),
            ));
        }
        let bus = bus_of(v.bus.as_deref(), o, buses, cx);
        let event_pattern = v
            .event_pattern
            .as_ref()
            .and_then(|p| check_pattern(p, o, "event_pattern", cx));
        let keep = cx.duration(
            o,
            &[key("retention")],
            v.retention.as_deref(),
            retention.archive,
        );
        if keep < retention.archive {
            cx.errors.push(o.error(
                &[key("retention")],
                format!(
                    "{}s is shorter than retention.archive ({}s): every event is kept that long in the default archive, so a named archive cannot keep its events for less",
                    keep.as_secs(),
                    retention.archive.as_secs()
                ),
            ));
        }
        out.push(Archive {
            name: v.name.clone(),
            description: v.description.clone(),
            bus,
            event_pattern,
            retention: keep,
        });
    }
    out
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

/// An item's `bus:` (default `default`), which must be declared.
fn bus_of(bus: Option<&str>, o: &Origin, buses: &[String], cx: &mut Ctx<'_>) -> String {
    let bus = bus.unwrap_or("default").to_owned();
    if !buses.contains(&bus) {
        cx.errors.push(o.error(
            &[key("bus")],
            format!("unknown bus {bus:?} (declared: {})", buses.join(", ")),
        ));
    }
    bus
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// The AWS JSON API's actions a key may be limited to.
pub const AWS_ACTIONS: &[&str] = &[
    "PutEvents",
    "TestEventPattern",
    "ListEventBuses",
    "DescribeEventBus",
    "ListRules",
    "DescribeRule",
    "ListTargetsByRule",
    "ListRuleNamesByTarget",
    "PutRule",
    "DeleteRule",
    "EnableRule",
    "DisableRule",
    "PutTargets",
    "RemoveTargets",
    "CreateArchive",
    "UpdateArchive",
    "DeleteArchive",
    "DescribeArchive",
    "ListArchives",
    "StartReplay",
    "DescribeReplay",
    "ListReplays",
    "CancelReplay",
];

fn validate_server(raw: &RawSet, cx: &mut Ctx<'_>) -> Server {
    let default_listen: SocketAddr = ([127, 0, 0, 1], 8088).into();
    let mut server = Server {
        listen: default_listen,
        data_dir: cx.base_dir.join("fleetbus-data"),
        api_tokens: Vec::new(),
        read_tokens: Vec::new(),
        account: "000000000000".into(),
        region: "local".into(),
        max_body_bytes: 4 * 1024 * 1024,
        dedup_window: Duration::from_secs(600),
        max_backlog: 100_000,
        hop_limit: 8,
        max_connections: 4096,
        header_timeout: Duration::from_secs(10),
        request_timeout: Duration::from_secs(60),
        drain_timeout: Duration::from_secs(10),
        aws_access_keys: Vec::new(),
        chain_budget: 1_000,
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
    server.read_tokens = v
        .read_tokens
        .iter()
        .enumerate()
        .map(|(i, t)| cx.secret(o, &[key("read_tokens"), PathSeg::Index(i)], t))
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
    if let Some(m) = v.max_connections {
        if m == 0 {
            cx.errors
                .push(o.error(&[key("max_connections")], "must be at least 1"));
        }
        server.max_connections = m;
    }
    for (name, slot) in [
        ("header_timeout", &mut server.header_timeout),
        ("request_timeout", &mut server.request_timeout),
        ("drain_timeout", &mut server.drain_timeout),
    ] {
        let text = match name {
            "header_timeout" => v.header_timeout.as_deref(),
            "request_timeout" => v.request_timeout.as_deref(),
            _ => v.drain_timeout.as_deref(),
        };
        *slot = cx.duration(o, &[key(name)], text, *slot);
        if slot.is_zero() {
            cx.errors
                .push(o.error(&[key(name)], "must be longer than 0s"));
        }
    }
    for (i, k) in v.aws_access_keys.iter().enumerate() {
        let at = [key("aws_access_keys"), PathSeg::Index(i)];
        let id_ok = (16..=128).contains(&k.access_key_id.len())
            && k.access_key_id.bytes().all(|b| b.is_ascii_alphanumeric());
        if !id_ok {
            let mut p = at.to_vec();
            p.push(key("access_key_id"));
            cx.errors.push(o.error(
                &p,
                format!(
                    "{:?} is not an access key id (16 to 128 letters and digits, e.g. AKIAIOSFODNN7EXAMPLE)",
                    k.access_key_id
                ),
            ));
        }
        let mut p = at.to_vec();
        p.push(key("secret_access_key"));
        let secret = cx.secret(o, &p, &k.secret_access_key);
        if let Some(actions) = &k.actions {
            for (j, a) in actions.iter().enumerate() {
                if !AWS_ACTIONS.contains(&a.as_str()) {
                    let mut p = at.to_vec();
                    p.extend([key("actions"), PathSeg::Index(j)]);
                    cx.errors.push(o.error(
                        &p,
                        format!(
                            "{a:?} is not an action of the AWS API here (expected one of {})",
                            AWS_ACTIONS.join(", ")
                        ),
                    ));
                }
            }
        }
        let session_token = k.session_token.as_ref().map(|t| {
            let mut p = at.to_vec();
            p.push(key("session_token"));
            cx.secret(o, &p, t)
        });
        server.aws_access_keys.push(AccessKey {
            id: k.access_key_id.clone(),
            secret,
            actions: k.actions.clone(),
            session_token,
        });
    }
    if let Some(b) = v.chain_budget {
        if b == 0 {
            cx.errors
                .push(o.error(&[key("chain_budget")], "must be at least 1"));
        }
        server.chain_budget = b;
    }
    server
}

/// A mapped field: a JSONPath when it starts with `$`, a template when it holds
/// `{$...}`, a constant otherwise. A `$.` in a constant is refused: it would be
/// kept as literal text where a value from the request was meant.
pub(crate) fn field(text: &str, o: &Origin, path: &[PathSeg], cx: &mut Ctx<'_>) -> Field {
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
pub(crate) fn json_path(
    text: &str,
    o: &Origin,
    path: &[PathSeg],
    cx: &mut Ctx<'_>,
) -> Option<JsonPath> {
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

pub(crate) fn validate_mapping(m: &RawMapping, o: &Origin, cx: &mut Ctx<'_>) -> Mapping {
    Mapping {
        source: field(&m.source, o, &[key("source")], cx),
        detail_type: field(&m.detail_type, o, &[key("detail_type")], cx),
        resources: m
            .resources
            .iter()
            .enumerate()
            .map(|(i, r)| field(r, o, &[key("resources"), PathSeg::Index(i)], cx))
            .collect(),
        id: m.id.as_deref().map(|t| {
            let id = field(t, o, &[key("id")], cx);
            if let Some(why) = constant_id(&id) {
                cx.errors.push(o.error(
                    &[key("id")],
                    format!(
                        "{why}: every event after the first within the dedup window would be dropped as a duplicate (map a field unique to each event, or leave id out for a fresh one)"
                    ),
                ));
            }
            id
        }),
        time: m.time.as_deref().map(|t| field(t, o, &[key("time")], cx)),
        detail: m
            .detail
            .as_deref()
            .and_then(|t| json_path(t, o, &[key("detail")], cx)),
    }
}

/// Why an id mapping gives the same id to different events, where that is knowable:
/// a constant, or a field senders keep the same for every delivery.
fn constant_id(id: &Field) -> Option<String> {
    /// Fields that are the same in every delivery of one sender: Jamf Pro's
    /// `webhook.id` and `webhook.name` name the webhook, not the event.
    const PER_SENDER: &[&str] = &["$.webhook.id", "$.webhook.name"];
    match id {
        Field::Const(c) => Some(format!("{c:?} is a constant, the same for every event")),
        Field::Path(p) if PER_SENDER.contains(&p.as_str()) => Some(format!(
            "{} is the same in every delivery of one sender (Jamf Pro's webhook, not the event)",
            p.as_str()
        )),
        _ => None,
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
        // Written as YAML: the mistake is located at its own key inside the pattern.
        Err(fleetbus_pattern::PatternError::Invalid { path, reason })
            if !matches!(p, Value::String(_)) && !path.is_empty() =>
        {
            let mut at = vec![key(name)];
            at.extend(path.split('.').map(key));
            let mut full = o.path.clone();
            full.extend(at.iter().cloned());
            if o.root.lookup(&full).is_none() {
                at.truncate(1);
            }
            cx.errors
                .push(o.error(&at, format!("invalid pattern: {path}: {reason}")));
            None
        }
        Err(e) => {
            cx.errors
                .push(o.error(&[key(name)], format!("invalid pattern: {e}")));
            None
        }
    }
}

/// Splits an item's fields as written (from the file, so no table of fields is
/// kept by hand): the kind's own go into the object returned for its module; a
/// field another kind takes is refused naming what this kind takes; a field no
/// kind takes is refused naming every field this one takes.
fn kind_fields(
    o: &Origin,
    common: &[&str],
    own: &[&str],
    kind: &str,
    some_kind_takes: impl Fn(&str) -> bool,
    cx: &mut Ctx<'_>,
) -> serde_json::Value {
    let written = o
        .root
        .lookup(&o.path)
        .map(|(node, _)| node.to_json())
        .and_then(|v| match v {
            serde_json::Value::Object(m) => Some(m),
            _ => None,
        })
        .unwrap_or_default();
    let takes = if own.is_empty() {
        "no fields of its own".to_owned()
    } else {
        own.join(", ")
    };
    let mut fields = serde_json::Map::new();
    for (name, value) in written {
        if common.contains(&name.as_str()) {
            // Read with the common fields.
        } else if own.contains(&name.as_str()) {
            fields.insert(name, value);
        } else if some_kind_takes(&name) {
            cx.errors.push(o.key_error(
                &[key(&name)],
                format!("does not apply to kind {kind} (it takes: {takes})"),
            ));
        } else {
            let expected: Vec<&str> = common
                .iter()
                .chain(own.iter().filter(|f| !common.contains(f)))
                .copied()
                .collect();
            cx.errors.push(o.key_error(
                &[key(&name)],
                format!("unknown field (expected one of {})", expected.join(", ")),
            ));
        }
    }
    serde_json::Value::Object(fields)
}

/// A target: the fields every target has here, its kind's own through the kind's
/// `validate` in [`crate::kinds`].
/// What a target is checked against beside its own fields.
struct TargetEnv<'a> {
    buses: &'a [String],
    connections: &'a BTreeMap<String, Auth>,
    software_update: Option<&'a std::sync::Arc<SoftwareUpdate>>,
}

fn validate_target(
    t: &RawTarget,
    o: &Origin,
    te: &TargetEnv<'_>,
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
    let own = spec.fields();
    let common: Vec<&str> = kinds::serde_fields::<RawTarget>()
        .iter()
        .copied()
        .filter(|f| *f != "timeout" || spec.timeout)
        .collect();
    let fields = kind_fields(
        o,
        &common,
        &own,
        spec.name,
        |f| kinds::is_kind_field(f) || f == "timeout",
        cx,
    );
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
    let env = kinds::Env {
        buses: te.buses,
        connections: te.connections,
        software_update: te.software_update,
        name: spec.name,
    };
    let spec = (spec.validate)(fields, o, &env, cx);
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

/// An HTTP header name (RFC 9110 token), lower-cased; `None` after reporting it.
fn header_name(name: &str, o: &Origin, field: &str, cx: &mut Ctx<'_>) -> Option<String> {
    let token_char = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if name.is_empty() || !name.chars().all(token_char) {
        cx.errors.push(o.error(
            &[key(field)],
            format!("{name:?} is not an HTTP header name"),
        ));
        return None;
    }
    Some(name.to_ascii_lowercase())
}

/// A source's `hmac:` block.
fn validate_hmac(h: &RawHmac, o: &Origin, cx: &mut Ctx<'_>) -> Hmac {
    let algorithm = match h.algorithm.as_deref() {
        None | Some("sha256") => HmacAlgorithm::Sha256,
        Some("sha1") => HmacAlgorithm::Sha1,
        Some(other) => {
            cx.errors.push(o.error(
                &[key("algorithm")],
                format!("unknown value {other:?} (expected one of sha256, sha1)"),
            ));
            HmacAlgorithm::Sha256
        }
    };
    let encoding = match h.encoding.as_deref() {
        None | Some("hex") => HmacEncoding::Hex,
        Some("base64") => HmacEncoding::Base64,
        Some(other) => {
            cx.errors.push(o.error(
                &[key("encoding")],
                format!("unknown value {other:?} (expected one of hex, base64)"),
            ));
            HmacEncoding::Hex
        }
    };
    let message = h.message.clone().unwrap_or_else(|| "{body}".into());
    if !message.contains("{body}") {
        cx.errors.push(o.error(
            &[key("message")],
            format!("{message:?} does not sign the body (expected {{body}} in it)"),
        ));
    }
    let timestamp_header = h
        .timestamp_header
        .as_deref()
        .and_then(|t| header_name(t, o, "timestamp_header", cx));
    if message.contains("{timestamp}") && timestamp_header.is_none() {
        cx.errors.push(o.error(
            &[key("timestamp_header")],
            "missing (message signs {timestamp}: say which header holds it)",
        ));
    }
    Hmac {
        secret: cx.secret(o, &[key("secret")], &h.secret),
        header: header_name(&h.header, o, "header", cx).unwrap_or_default(),
        algorithm,
        encoding,
        prefix: h.prefix.clone().unwrap_or_default(),
        message,
        timestamp_header,
        tolerance: cx.duration(
            o,
            &[key("tolerance")],
            h.tolerance.as_deref(),
            Duration::from_secs(300),
        ),
    }
}

/// Reports `name` missing when it is not `present`: kind `kind` needs it.
pub(crate) fn require(cx: &mut Ctx<'_>, o: &Origin, kind: &str, name: &str, present: bool) {
    if !present {
        cx.errors.push(o.error(
            &[],
            format!("missing required field {name} (kind {kind} needs it)"),
        ));
    }
}
