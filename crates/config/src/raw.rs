//! Stage one: the configuration exactly as written. Unknown fields are refused here;
//! meaning (references, patterns, durations, secrets) is checked in [`crate::model`].

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

/// A fleetbus configuration file (a directory's files are merged: lists are
/// concatenated, `server` and `retention` may appear in one file only).
// Sections are read one by one (see `load`), so that one bad section does not hide
// another's errors; this struct describes the whole file for the JSON Schema.
#[allow(dead_code)]
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// The HTTP server, storage and API access.
    #[serde(default)]
    pub server: Option<RawServer>,
    /// Ingest endpoints, each at `POST /v1/sources/{name}`.
    #[serde(default)]
    pub sources: Vec<RawSource>,
    /// Credentials for targets that call out (HTTP APIs, MDM servers).
    #[serde(default)]
    pub connections: Vec<RawConnection>,
    /// Named event streams; `default` always exists.
    #[serde(default)]
    pub buses: Vec<RawBus>,
    /// Patterns or schedules with the targets they send to.
    #[serde(default)]
    pub rules: Vec<RawRule>,
    /// How long events and delivery records are kept.
    #[serde(default)]
    pub retention: Option<RawRetention>,
    /// Where events, deliveries and dead letters are stored.
    #[serde(default)]
    pub storage: Option<RawStorage>,
    /// Named archives: the events matching a pattern, kept for their own retention
    /// and replayable by name (EventBridge's archives). `default` keeps every event.
    #[serde(default)]
    pub archives: Vec<RawArchive>,
    /// The software-update policy (Nudge's `osVersionRequirements`, enforced through
    /// MDM): which Macs must run which macOS version by when.
    #[serde(default)]
    pub software_update: Option<RawSoftwareUpdate>,
}

/// `software_update:`: the policy fleetbus enforces. It runs as two rules it makes,
/// `software-update` (the events of the workflow) and `software-update-deadlines`
/// (the schedule that escalates as deadlines near).
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawSoftwareUpdate {
    /// The MDM server the commands go through.
    pub mdm: Option<RawSuMdm>,
    /// The bus its rules listen on (default `default`).
    pub bus: Option<String>,
    /// How often deadlines are looked at again: `rate(...)` or `cron(...)`
    /// (default `rate(1 hour)`).
    pub evaluate: Option<String>,
    /// While the deadline is further away than this, updates are only downloaded
    /// (`DownloadOnly`); closer, `InstallLater` with the requirement's
    /// `max_user_deferrals`; at the deadline `InstallASAP` (default `7d`).
    pub download_only_before: Option<String>,
    /// This long past the deadline, `InstallForceRestart` (default `1d`).
    pub force_restart_after: Option<String>,
    /// A command the Mac has not answered in this long is sent again (default `1d`).
    pub resend_after: Option<String>,
    /// Error answers in a row before a Mac is left `failed` for a person (default 3).
    pub max_errors: Option<u32>,
    /// `DetailsURL` of the declarations (shown to the user by macOS).
    pub details_url: Option<String>,
    /// First match wins: a Mac no requirement selects is left alone.
    #[serde(default)]
    pub requirements: Vec<RawSuRequirement>,
}

/// The MDM server of the software-update policy.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawSuMdm {
    /// `nanomdm` or `micromdm` (default `nanomdm`).
    pub server: Option<String>,
    /// The server's base URL.
    pub url: Option<String>,
    /// The server's API key (a secret reference).
    pub api_key: Option<String>,
    /// Send an APNs push after enqueueing (default true).
    pub push: Option<bool>,
}

/// One requirement, named after Nudge's `osVersionRequirements` keys.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawSuRequirement {
    /// Its name, in states, events and `fleetbus su status --group`.
    pub name: String,
    /// Macs with any of these asset tags (none: any Mac).
    #[serde(default)]
    pub tags: Vec<String>,
    /// Macs whose model matches one of these (`Mac14,7`, or a prefix with `*`:
    /// `Mac14,*`; none: any model).
    #[serde(default)]
    pub models: Vec<String>,
    /// Macs running this major version (`14`), or `default` (any; the default).
    pub targeted_os_versions_rule: Option<String>,
    /// A version (`15.3`), `latest` (the newest macOS the feed published) or
    /// `latest-minor` (the newest of the major version the Mac runs).
    pub required_minimum_os_version: Option<String>,
    /// The deadline (RFC 3339, e.g. `2026-12-20T17:00:00Z`); without it, the
    /// deadline is the release date plus the SLA that applies.
    pub required_installation_date: Option<String>,
    /// Days after its release date to install a major upgrade that fixes an
    /// actively exploited CVE (default 14, as Nudge).
    pub actively_exploited_cves_major_upgrade_sla: Option<u32>,
    /// Days for a minor update that fixes an actively exploited CVE (default 14).
    pub actively_exploited_cves_minor_update_sla: Option<u32>,
    /// Days for a major upgrade with CVEs, none actively exploited (default 21).
    pub non_actively_exploited_cves_major_upgrade_sla: Option<u32>,
    /// Days for a minor update with CVEs, none actively exploited (default 21).
    pub non_actively_exploited_cves_minor_update_sla: Option<u32>,
    /// Days for a major upgrade without CVEs (default 28).
    pub standard_major_upgrade_sla: Option<u32>,
    /// Days for a minor update without CVEs (default 28).
    pub standard_minor_update_sla: Option<u32>,
    /// `MaxUserDeferrals` of `InstallLater` (default 3).
    pub max_user_deferrals: Option<u32>,
    /// These Macs' own MDM server (default: the section's `mdm`), e.g. for a group
    /// still on the server being left.
    pub mdm: Option<RawSuMdm>,
    /// Macs on macOS 14 or later get the
    /// `com.apple.configuration.softwareupdate.enforcement.specific` declaration
    /// (as a `Software Update Declaration` event to route to the declarative
    /// management server) instead of ScheduleOSUpdate commands (default false).
    pub declarations: Option<bool>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    /// Address to listen on, e.g. `127.0.0.1:8088`.
    pub listen: Option<String>,
    /// Directory for the embedded store (relative to the config file).
    pub data_dir: Option<String>,
    /// Bearer tokens for the management API and `/v1/events` (secret references).
    #[serde(default)]
    pub api_tokens: Vec<String>,
    /// Tokens that may read through the management API and the console but change
    /// nothing: no ingest, redrive, reload, asset change or PIN reveal (secret
    /// references), e.g. for dashboards and help-desk staff.
    #[serde(default)]
    pub read_tokens: Vec<String>,
    /// `account` given to events that carry none.
    pub account: Option<String>,
    /// `region` given to events that carry none.
    pub region: Option<String>,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: Option<u64>,
    /// Window in which a repeated (source, id) is accepted and dropped, e.g. `10m`.
    pub dedup_window: Option<String>,
    /// Pending deliveries above which ingest answers 429.
    pub max_backlog: Option<u64>,
    /// Rule hops after which derived events are dropped (rule-loop guard).
    pub hop_limit: Option<u32>,
    /// Connections open at once (default 4096); one beyond is closed when accepted.
    pub max_connections: Option<u32>,
    /// Time for a request head to arrive, also the keep-alive idle timeout (default 10s).
    pub header_timeout: Option<String>,
    /// Time from a request head to its answer, body included (default 60s; then 408).
    pub request_timeout: Option<String>,
    /// How long shutdown lets requests in flight finish (default 10s).
    pub drain_timeout: Option<String>,
    /// Access keys the AWS JSON API (`POST /`) accepts SigV4 signatures of, for the
    /// AWS CLI and SDKs (`--endpoint-url`).
    #[serde(default)]
    pub aws_access_keys: Vec<RawAccessKey>,
    /// Events one causation chain (an ingested event and all it causes) may put on
    /// the buses (default 1000): bounds a loop's fan-out as `hop_limit` bounds its
    /// depth.
    pub chain_budget: Option<u32>,
}

/// An AWS access key pair.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawAccessKey {
    /// The key id, e.g. `AKIAIOSFODNN7EXAMPLE`.
    pub access_key_id: String,
    /// The secret key (a secret reference).
    pub secret_access_key: String,
    /// The actions this key may call, e.g. `[ListRules, DescribeRule]` for a
    /// dashboard (default: every action).
    pub actions: Option<Vec<String>>,
    /// A session token (a secret reference) requests with this key must carry in
    /// `X-Amz-Security-Token`, as temporary credentials do (default: none, and a
    /// request carrying one is refused).
    pub session_token: Option<String>,
}

/// Where the shape of a source kind is not the generic one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum SourceKind {
    /// Any JSON body, mapped to an event by `mapping`.
    Generic,
    /// NanoMDM webhook.
    Nanomdm,
    /// MicroMDM webhook.
    Micromdm,
    /// NDJSON batches of macOS unified-log entries posted by a device.
    UnifiedLog,
    /// Jamf Pro webhooks.
    Jamf,
    /// Okta event hooks.
    Okta,
    /// Fleet (fleetdm) automation webhooks: failing policies, vulnerabilities, host status.
    Fleet,
    /// An AWS EventBridge API destination posting original event envelopes.
    Eventbridge,
    /// Apple's software releases, polled from SOFA or gdmf.apple.com.
    OsFeed,
}

/// A source: the fields every source takes. Its kind's own fields are read by the
/// kind's module (`crate::source_kinds`), so unknown fields are refused there, in
/// stage two, where the kind is known.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct RawSource {
    /// The source's name: it is posted to at `/v1/sources/<name>`.
    pub name: String,
    /// What sends to it (each kind's own fields are listed under it).
    pub kind: SourceKind,
    /// Bus the source's events go to (default `default`).
    pub bus: Option<String>,
    /// Bearer tokens accepted by this source (secret references).
    #[serde(default)]
    pub tokens: Vec<String>,
    /// A header the token comes in instead of `Authorization` (for senders that let
    /// the admin choose one, such as Jamf Pro's header authentication).
    pub token_header: Option<String>,
    /// The sender signs each body with a shared secret (HMAC); checked before
    /// anything is ingested. With it, `tokens` may be left out.
    pub hmac: Option<RawHmac>,
}

/// Each value is a constant, or a JSONPath into the body when it starts with `$`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawMapping {
    /// The event's `source`: a constant, or a JSONPath such as `$.system`.
    pub source: String,
    /// The event's `detail-type`: a constant or a JSONPath.
    pub detail_type: String,
    /// The event's resources: constants, JSONPaths, or templates such as
    /// `device/{$.event.serialNumber}`.
    #[serde(default)]
    pub resources: Vec<String>,
    /// Event id (dedup key); absent: a fresh UUID.
    pub id: Option<String>,
    /// Event time; absent: time of receipt.
    pub time: Option<String>,
    /// Part of the body that becomes `detail` (default: the whole body).
    pub detail: Option<String>,
}

/// A signed webhook: where the signature is and how it is made.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawHmac {
    /// The shared secret (a secret reference).
    pub secret: String,
    /// The header holding the signature, e.g. `X-Hub-Signature-256`.
    pub header: String,
    /// `sha256` (default) or `sha1` (legacy senders).
    pub algorithm: Option<String>,
    /// `hex` (default) or `base64`.
    pub encoding: Option<String>,
    /// Text before the signature in the header, e.g. `sha256=`.
    pub prefix: Option<String>,
    /// What is signed: `{body}` (default), `{timestamp}.{body}`, `v0:{timestamp}:{body}`...
    pub message: Option<String>,
    /// The header holding the Unix time the sender signed at (needed when
    /// `message` uses `{timestamp}`).
    pub timestamp_header: Option<String>,
    /// How old a signed timestamp may be (default 5m), against replays.
    pub tolerance: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawConnection {
    /// The name targets refer to with `connection:`.
    pub name: String,
    /// How requests through it authenticate: `basic`, `api_key`, `bearer` or
    /// `oauth` (client credentials).
    pub auth: RawAuth,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub enum RawAuth {
    /// HTTP Basic.
    Basic {
        /// The user name.
        username: String,
        /// The password (a secret reference).
        password: String,
    },
    /// A header carrying a key.
    ApiKey {
        /// The header's name, e.g. `X-Api-Key`.
        header: String,
        /// The key (a secret reference).
        value: String,
    },
    /// `Authorization: Bearer <token>`.
    Bearer {
        /// The token (a secret reference).
        token: String,
    },
    /// OAuth 2.0 client credentials: a token fetched and cached, renewed before it
    /// expires.
    Oauth {
        /// The token endpoint.
        token_url: String,
        /// The client id.
        client_id: String,
        /// The client secret (a secret reference).
        client_secret: String,
        /// Scopes asked for, space-separated.
        #[serde(default)]
        scope: Option<String>,
    },
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawBus {
    /// The bus's name, as rules' and sources' `bus:` name it.
    pub name: String,
    /// What the bus carries, for people.
    pub description: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RuleState {
    #[default]
    Enabled,
    Disabled,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    /// The rule's name (letters, digits, `-`, `_`, `.`), in outcome events and metrics.
    pub name: String,
    /// The bus whose events it matches (default `default`).
    pub bus: Option<String>,
    /// What the rule is for, for people.
    pub description: Option<String>,
    /// `enabled` (default) or `disabled`: a disabled rule matches nothing.
    #[serde(default)]
    pub state: RuleState,
    /// An EventBridge event pattern, as YAML or as a JSON string.
    pub event_pattern: Option<Value>,
    /// `rate(5 minutes)` or `cron(0 12 * * ? *)`.
    pub schedule: Option<String>,
    /// A pattern whose match suppresses this rule for that event.
    pub exempt: Option<Value>,
    /// Where matched events go, each with its own retries and dead letters.
    #[serde(default)]
    pub targets: Vec<RawTarget>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum TargetKind {
    Http,
    Slack,
    Email,
    Exec,
    Bus,
    Log,
    Gelf,
    Mdm,
    Assets,
    Metrics,
    #[serde(rename = "software-update")]
    SoftwareUpdate,
}

/// A target: the fields every target takes. Its kind's own fields are read by the
/// kind's module (`crate::kinds`), so unknown fields are refused there, in stage two,
/// where the kind is known.
#[derive(Debug, Default, Deserialize, JsonSchema)]
pub struct RawTarget {
    /// The target's id within its rule (in outcome events, metrics, dead letters).
    pub id: String,
    /// What it does (each kind's own fields are listed under it).
    pub kind: Option<TargetKind>,
    /// Constant JSON text sent instead of the event.
    pub input: Option<String>,
    /// JSONPath of the part of the event sent.
    pub input_path: Option<String>,
    /// EventBridge's input transformer: values picked from the event into a template.
    pub input_transformer: Option<RawInputTransformer>,
    /// How long and how often a failed delivery is retried (EventBridge's defaults:
    /// 24h, 185 attempts).
    pub retry_policy: Option<RawRetryPolicy>,
    /// Deliveries in flight at once for this target.
    pub concurrency: Option<u32>,
    /// Deliveries per second at most.
    pub rate_limit: Option<f64>,
    /// http, slack, email, mdm: per-attempt timeout, e.g. `10s`; exec: run time limit.
    pub timeout: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawInputTransformer {
    /// Variable name -> JSONPath into the event (EventBridge's InputPathsMap).
    #[serde(default)]
    pub input_paths_map: BTreeMap<String, String>,
    /// The text sent, with `<variable>` placeholders (EventBridge's InputTemplate).
    pub input_template: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawRetryPolicy {
    /// Oldest an event may be and still be retried, e.g. `24h` (60s to 24h).
    pub maximum_event_age: Option<String>,
    /// Attempts after the first (0 to 185).
    pub maximum_retry_attempts: Option<u32>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawRetention {
    /// How long archived events are kept, e.g. `90d`.
    pub archive: Option<String>,
    /// How long finished delivery records are kept.
    pub deliveries: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawArchive {
    /// The archive's name (letters, digits, `.`, `-`, `_`; at most 48, as
    /// EventBridge's ArchiveName), used by `fleetbus replay start --archive`.
    pub name: String,
    /// What the archive is for, for people.
    pub description: Option<String>,
    /// The bus whose events it keeps (default `default`).
    pub bus: Option<String>,
    /// An EventBridge event pattern: only matching events are in the archive
    /// (default: every event of the bus).
    pub event_pattern: Option<Value>,
    /// How long its events are kept, e.g. `400d`, even past `retention.archive`
    /// (default: as `retention.archive`).
    pub retention: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawStorage {
    /// The backend: `sqlite` (the embedded store, the default).
    pub kind: Option<String>,
    /// For `sqlite`: the directory of the store file (relative to the config file);
    /// by default the data directory (`server.data_dir`, or `serve --data`).
    pub path: Option<String>,
}
