//! `kind: os-feed`: Apple's software releases, polled from a feed on a schedule.
//! Two feeds are read: SOFA (`sofafeed.macadmins.io/v1/macos_data_feed.json`, v1
//! and v2: `UpdateHash`, `OSVersions[].Latest` and `.SecurityReleases[]`) and
//! Apple's `gdmf.apple.com/v2/pmv` (`PublicAssetSets.<platform>[]`).
//!
//! Each poll sends the last `ETag` (`If-None-Match`), so an unchanged feed is not
//! downloaded again; SOFA's `UpdateHash` is kept with the state. A release the source has
//! not seen becomes an `OS Release Published` event, a current release whose
//! `ExpirationDate` has passed an `OS Release Expired` event; the first poll of a
//! new source records everything the feed lists and publishes only each OS
//! version's latest release (not years of history). What was seen, the `ETag`
//! and the last good copy of the feed are kept in `<data_dir>/sources/`, so a
//! restart publishes nothing twice. A feed that cannot be fetched or read is one
//! `OS Feed Unavailable` event (and one `OS Feed Recovered` when it is back), not
//! an event per poll.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use fleetbus_config::{FeedFormat, OsFeed};
use fleetbus_event::{Event, Meta};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use super::{HandleFuture, Request, RunFuture, Source, SourceError};
use crate::AppState;

/// `source` of the events this kind makes.
pub const SOURCE: &str = "fleetbus.os-feed";
/// A feed larger than this is refused (SOFA's macOS feed is a few MiB).
const MAX_FEED_BYTES: usize = 32 * 1024 * 1024;

/// The kind.
#[derive(Debug)]
pub struct OsFeedSource;

impl Source for OsFeedSource {
    fn handle<'a>(
        &'a self,
        _state: &'a AppState,
        source: &'a fleetbus_config::Source,
        _request: Request<'a>,
    ) -> HandleFuture<'a> {
        let name = source.name.clone();
        Box::pin(async move {
            Err(SourceError::Invalid(format!(
                "source {name:?} polls its feed on a schedule; nothing is posted to it"
            )))
        })
    }

    fn run(
        &self,
        state: AppState,
        source: fleetbus_config::Source,
        cancel: CancellationToken,
    ) -> Option<RunFuture> {
        let feed = source.os_feed.clone()?;
        Some(Box::pin(poll_loop(state, source, feed, cancel)))
    }
}

/// One release a feed lists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Release {
    pub platform: String,
    /// The feed's name for the OS line, e.g. `Sequoia 15` (SOFA only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub os_version: Option<String>,
    pub product_version: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub build: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub release_date: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expiration_date: Option<String>,
    pub supported_devices: usize,
    pub cves: usize,
    pub actively_exploited_cves: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub security_info: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub update_name: Option<String>,
    /// The feed's current release of its OS line (SOFA's `Latest`; every entry
    /// of gdmf's public asset sets).
    pub latest: bool,
}

impl Release {
    /// What makes a release itself: its platform and version.
    fn key(&self) -> String {
        format!("{}|{}", self.platform, self.product_version)
    }
}

/// A feed as read.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Parsed {
    /// SOFA's `UpdateHash`: unchanged means nothing changed.
    pub update_hash: Option<String>,
    pub releases: Vec<Release>,
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(str::to_owned))
        .collect()
}

fn text(v: &Value, k: &str) -> Option<String> {
    v.get(k).and_then(Value::as_str).map(str::to_owned)
}

fn count(v: &Value) -> usize {
    match v {
        Value::Array(a) => a.len(),
        Value::Object(m) => m.len(),
        _ => 0,
    }
}

/// Reads a SOFA feed (v1 or v2) for `platform`.
pub fn parse_sofa(bytes: &[u8], platform: &str) -> Result<Parsed, String> {
    let doc: Value =
        serde_json::from_slice(bytes).map_err(|e| format!("the feed is not JSON: {e}"))?;
    let versions = doc
        .get("OSVersions")
        .and_then(Value::as_array)
        .ok_or("the feed has no OSVersions list (is it a SOFA feed?)")?;
    let mut releases: Vec<Release> = Vec::new();
    for (i, v) in versions.iter().enumerate() {
        let os_version = text(v, "OSVersion");
        let mut add = |r: &Value, latest: bool| -> Result<(), String> {
            let Some(product_version) = text(r, "ProductVersion") else {
                return Err(format!("OSVersions[{i}]: a release has no ProductVersion"));
            };
            let release = Release {
                platform: platform.to_owned(),
                os_version: os_version.clone(),
                product_version,
                build: text(r, "Build"),
                release_date: text(r, "ReleaseDate"),
                expiration_date: text(r, "ExpirationDate"),
                supported_devices: count(r.get("SupportedDevices").unwrap_or(&Value::Null)),
                cves: count(r.get("CVEs").unwrap_or(&Value::Null)),
                actively_exploited_cves: strings(
                    r.get("ActivelyExploitedCVEs").unwrap_or(&Value::Null),
                ),
                security_info: text(r, "SecurityInfo"),
                update_name: text(r, "UpdateName"),
                latest,
            };
            // Latest and its security release are one release: what each says
            // is merged.
            match releases.iter_mut().find(|o| o.key() == release.key()) {
                Some(o) => merge(o, release),
                None => releases.push(release),
            }
            Ok(())
        };
        if let Some(latest) = v.get("Latest").filter(|l| l.is_object()) {
            add(latest, true)?;
        }
        for r in v
            .get("SecurityReleases")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            add(r, false)?;
        }
    }
    Ok(Parsed {
        update_hash: text(&doc, "UpdateHash"),
        releases,
    })
}

fn merge(into: &mut Release, other: Release) {
    into.latest |= other.latest;
    into.build = into.build.take().or(other.build);
    into.release_date = into.release_date.take().or(other.release_date);
    into.expiration_date = into.expiration_date.take().or(other.expiration_date);
    into.supported_devices = into.supported_devices.max(other.supported_devices);
    into.cves = into.cves.max(other.cves);
    if into.actively_exploited_cves.is_empty() {
        into.actively_exploited_cves = other.actively_exploited_cves;
    }
    into.security_info = into.security_info.take().or(other.security_info);
    into.update_name = into.update_name.take().or(other.update_name);
}

/// Reads Apple's `gdmf.apple.com/v2/pmv` answer: every platform of
/// `PublicAssetSets` (the releases Apple offers to all devices).
pub fn parse_gdmf(bytes: &[u8]) -> Result<Parsed, String> {
    let doc: Value =
        serde_json::from_slice(bytes).map_err(|e| format!("the feed is not JSON: {e}"))?;
    let sets = doc
        .get("PublicAssetSets")
        .and_then(Value::as_object)
        .ok_or("the answer has no PublicAssetSets (is it gdmf.apple.com/v2/pmv?)")?;
    let mut releases = Vec::new();
    for (platform, list) in sets {
        for (i, r) in list.as_array().into_iter().flatten().enumerate() {
            let product_version = text(r, "ProductVersion")
                .ok_or_else(|| format!("PublicAssetSets.{platform}[{i}] has no ProductVersion"))?;
            releases.push(Release {
                platform: platform.clone(),
                os_version: None,
                product_version,
                build: text(r, "Build"),
                release_date: text(r, "PostingDate"),
                expiration_date: text(r, "ExpirationDate"),
                supported_devices: count(r.get("SupportedDevices").unwrap_or(&Value::Null)),
                cves: 0,
                actively_exploited_cves: Vec::new(),
                security_info: None,
                update_name: None,
                latest: true,
            });
        }
    }
    Ok(Parsed {
        update_hash: None,
        releases,
    })
}

/// What a source remembers between polls and across restarts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub etag: Option<String>,
    pub update_hash: Option<String>,
    /// Releases seen (`platform|version`).
    pub known: BTreeSet<String>,
    /// Releases whose expiry was announced.
    pub expired: BTreeSet<String>,
    /// The last poll failed (its event was sent).
    pub failing: bool,
    pub last_good_at: Option<String>,
}

/// What changed between what `state` saw and `feed`, as (detail-type, release)
/// pairs, and the state after them. `first` is a source's first read of a feed.
pub fn diff(
    state: &State,
    feed: &Parsed,
    now: OffsetDateTime,
    first: bool,
) -> (Vec<(&'static str, Release)>, State) {
    let mut next = state.clone();
    let mut out = Vec::new();
    for r in &feed.releases {
        let key = r.key();
        if next.known.insert(key.clone()) && (!first || r.latest) {
            out.push(("OS Release Published", r.clone()));
        }
        let expired = r
            .expiration_date
            .as_deref()
            .and_then(parse_date)
            .is_some_and(|at| at <= now);
        if r.latest && expired && next.expired.insert(key) && !first {
            out.push(("OS Release Expired", r.clone()));
        }
    }
    next.update_hash = feed.update_hash.clone().or(next.update_hash);
    (out, next)
}

/// `2024-09-16T00:00:00Z` or `2024-09-16`.
fn parse_date(s: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s, &Rfc3339).ok().or_else(|| {
        let d =
            time::Date::parse(s, time::macros::format_description!("[year]-[month]-[day]")).ok()?;
        Some(d.midnight().assume_utc())
    })
}

/// Where a source keeps its state and its last good copy.
fn files(state: &AppState, name: &str) -> (PathBuf, PathBuf) {
    let dir = state.config().server.data_dir.join("sources");
    (
        dir.join(format!("{name}.state.json")),
        dir.join(format!("{name}.feed.json")),
    )
}

/// Writes `bytes` to `path` whole or not at all.
fn write_atomic(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(tmp, path)
}

async fn poll_loop(
    state: AppState,
    source: fleetbus_config::Source,
    feed: OsFeed,
    cancel: CancellationToken,
) {
    let client = match client(&feed) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(source = %source.name, error = %e, "os-feed source cannot start");
            return;
        }
    };
    let (state_file, feed_file) = files(&state, &source.name);
    let mut mem: Option<State> = match std::fs::read(&state_file) {
        Ok(bytes) => match serde_json::from_slice(&bytes) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(source = %source.name, file = %state_file.display(), error = %e, "os-feed state unreadable; starting afresh");
                None
            }
        },
        Err(_) => None,
    };
    let mut ticks = tokio::time::interval(feed.interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = ticks.tick() => {}
        }
        // The first read that succeeds (a feed down at start has recorded an outage
        // but no release yet) publishes only each line's latest.
        let first = mem.as_ref().is_none_or(|s| s.known.is_empty());
        let current = mem.clone().unwrap_or_default();
        let (mut events, next) = match fetch(&client, &feed, &current).await {
            Ok(Fetched::NotModified) => (
                Vec::new(),
                State {
                    failing: false,
                    ..current.clone()
                },
            ),
            Ok(Fetched::Body { etag, body }) => {
                let parsed = match feed.format {
                    FeedFormat::Sofa => parse_sofa(&body, sofa_platform(&feed.url)),
                    FeedFormat::Gdmf => parse_gdmf(&body),
                };
                match parsed {
                    Ok(p) => {
                        let now = OffsetDateTime::now_utc();
                        let (changes, mut next) = diff(&current, &p, now, first);
                        next.etag = etag;
                        next.last_good_at = now.format(&Rfc3339).ok();
                        next.failing = false;
                        if let Err(e) = write_atomic(&feed_file, &body) {
                            tracing::warn!(source = %source.name, error = %e, "cannot keep the feed's last good copy");
                        }
                        let events = changes
                            .into_iter()
                            .map(|(dt, r)| release_event(&source, &feed, dt, &r))
                            .collect();
                        (events, next)
                    }
                    Err(e) => failed(&source, &feed, &current, e),
                }
            }
            Err(e) => failed(&source, &feed, &current, e),
        };
        if current.failing && !next.failing {
            events.push(status_event(
                &source,
                &feed,
                "OS Feed Recovered",
                None,
                &current,
            ));
        }
        if !events.is_empty() {
            let n = events.len();
            match state.engine.put(events).await {
                Ok(_) => {
                    tracing::info!(source = %source.name, events = n, "os-feed changes put on the bus")
                }
                Err(e) => {
                    // The state is not advanced: the next poll tries again.
                    tracing::warn!(source = %source.name, error = %e, "os-feed events not accepted; will retry");
                    continue;
                }
            }
        }
        if mem.as_ref() != Some(&next) {
            match serde_json::to_vec_pretty(&next) {
                Ok(bytes) => {
                    if let Err(e) = write_atomic(&state_file, &bytes) {
                        tracing::warn!(source = %source.name, error = %e, "cannot save os-feed state");
                    }
                }
                Err(e) => {
                    tracing::warn!(source = %source.name, error = %e, "cannot save os-feed state")
                }
            }
        }
        mem = Some(next);
    }
}

/// A failed poll: one event when the feed was fine before, the state marked.
fn failed(
    source: &fleetbus_config::Source,
    feed: &OsFeed,
    current: &State,
    error: String,
) -> (Vec<(Event, Meta)>, State) {
    // Once per outage at warn; every later failed poll at debug.
    if current.failing {
        tracing::debug!(source = %source.name, url = %feed.url, error = %error, "os feed still unavailable");
    } else {
        tracing::warn!(source = %source.name, url = %feed.url, error = %error, "os feed unavailable; an OS Feed Recovered event follows when it is back");
    }
    let mut next = current.clone();
    next.failing = true;
    let events = if current.failing {
        Vec::new()
    } else {
        vec![status_event(
            source,
            feed,
            "OS Feed Unavailable",
            Some(&error),
            current,
        )]
    };
    (events, next)
}

/// The platform a SOFA feed is about, from its file name.
fn sofa_platform(url: &str) -> &'static str {
    if url.to_ascii_lowercase().contains("ios_data_feed") {
        "iOS"
    } else {
        "macOS"
    }
}

fn format_name(f: FeedFormat) -> &'static str {
    match f {
        FeedFormat::Sofa => "sofa",
        FeedFormat::Gdmf => "gdmf",
    }
}

fn release_event(
    source: &fleetbus_config::Source,
    feed: &OsFeed,
    detail_type: &str,
    r: &Release,
) -> (Event, Meta) {
    let mut detail: Map<String, Value> = match serde_json::to_value(r) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    };
    detail.insert(
        "actively_exploited".into(),
        json!(!r.actively_exploited_cves.is_empty()),
    );
    detail.insert("feed".into(), json!(format_name(feed.format)));
    detail.insert("url".into(), json!(feed.url));
    let mut event = Event::new(SOURCE, detail_type, detail);
    // The same change of the same feed is the same event (a redelivery is dropped).
    event.id = uuid::Uuid::new_v5(
        &uuid::Uuid::NAMESPACE_URL,
        format!("{}|{detail_type}|{}", feed.url, r.key()).as_bytes(),
    )
    .to_string();
    event.resources = vec![format!("os/{}/{}", r.platform, r.product_version)];
    (
        event,
        Meta::ingested(source.bus.clone(), format!("source/{}", source.name)),
    )
}

fn status_event(
    source: &fleetbus_config::Source,
    feed: &OsFeed,
    detail_type: &str,
    error: Option<&str>,
    state: &State,
) -> (Event, Meta) {
    let mut detail = Map::new();
    detail.insert("feed".into(), json!(format_name(feed.format)));
    detail.insert("url".into(), json!(feed.url));
    detail.insert("source_name".into(), json!(source.name));
    if let Some(e) = error {
        detail.insert("error".into(), json!(e));
    }
    if let Some(at) = &state.last_good_at {
        detail.insert("last_good_at".into(), json!(at));
    }
    let event = Event::new(SOURCE, detail_type, detail);
    (
        event,
        Meta::ingested(source.bus.clone(), format!("source/{}", source.name)),
    )
}

enum Fetched {
    NotModified,
    Body { etag: Option<String>, body: Vec<u8> },
}

fn client(feed: &OsFeed) -> Result<reqwest::Client, String> {
    fleetbus_targets::ensure_tls_provider();
    let mut b = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .connect_timeout(Duration::from_secs(10))
        .user_agent(concat!("fleetbus/", env!("CARGO_PKG_VERSION")));
    if let Some(ca) = &feed.ca {
        // Only these roots: gdmf.apple.com chains to Apple's own root.
        let certs = ca
            .certs
            .iter()
            .map(|der| {
                reqwest::Certificate::from_der(der)
                    .map_err(|e| format!("{}: {e}", ca.path.display()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        b = b.tls_certs_only(certs);
    }
    b.build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))
}

async fn fetch(client: &reqwest::Client, feed: &OsFeed, state: &State) -> Result<Fetched, String> {
    let mut req = client.get(&feed.url).header("accept", "application/json");
    if let Some(etag) = &state.etag {
        req = req.header("if-none-match", etag);
    }
    let mut resp = req
        .send()
        .await
        .map_err(|e| format!("cannot fetch {}: {e}", feed.url))?;
    let status = resp.status();
    if status == reqwest::StatusCode::NOT_MODIFIED {
        return Ok(Fetched::NotModified);
    }
    if !status.is_success() {
        return Err(format!("{} answered {status}", feed.url));
    }
    let etag = resp
        .headers()
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut body = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| format!("reading {}: {e}", feed.url))?
    {
        if body.len() + chunk.len() > MAX_FEED_BYTES {
            return Err(format!(
                "{} is larger than {MAX_FEED_BYTES} bytes",
                feed.url
            ));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Fetched::Body { etag, body })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A SOFA v1 feed in SOFA's shape (keys as SOFA writes them; values made up
    /// here), with one OS line whose latest release is also its first security
    /// release.
    pub(crate) fn sofa(extra: bool) -> Value {
        let mut releases = vec![
            json!({
                "UpdateName": "macOS Sequoia 15.1",
                "ProductVersion": "15.1",
                "ReleaseDate": "2024-10-28T00:00:00Z",
                "SecurityInfo": "https://support.apple.com/en-us/121564",
                "SupportedDevices": ["Mac-1", "Mac-2"],
                "CVEs": {"CVE-2024-44255": false, "CVE-2024-44270": true},
                "ActivelyExploitedCVEs": ["CVE-2024-44270"],
                "UniqueCVEsCount": 2,
                "DaysSincePreviousRelease": 42
            }),
            json!({
                "UpdateName": "macOS Sequoia 15.0.1",
                "ProductVersion": "15.0.1",
                "ReleaseDate": "2024-10-03T00:00:00Z",
                "SecurityInfo": "https://support.apple.com/en-us/121400",
                "SupportedDevices": ["Mac-1", "Mac-2"],
                "CVEs": {},
                "ActivelyExploitedCVEs": [],
                "UniqueCVEsCount": 0,
                "DaysSincePreviousRelease": 17
            }),
        ];
        let mut latest = json!({"ProductVersion": "15.1", "Build": "24B83", "ReleaseDate": "2024-10-28T00:00:00Z", "ExpirationDate": "2099-01-01T00:00:00Z", "SupportedDevices": ["Mac-1", "Mac-2", "Mac-3"]});
        if extra {
            releases.insert(
                0,
                json!({
                    "UpdateName": "macOS Sequoia 15.1.1",
                    "ProductVersion": "15.1.1",
                    "ReleaseDate": "2024-11-19T00:00:00Z",
                    "SecurityInfo": "https://support.apple.com/en-us/121753",
                    "SupportedDevices": ["Mac-1", "Mac-2"],
                    "CVEs": {"CVE-2024-44308": true, "CVE-2024-44309": true},
                    "ActivelyExploitedCVEs": ["CVE-2024-44308", "CVE-2024-44309"],
                    "UniqueCVEsCount": 2,
                    "DaysSincePreviousRelease": 22
                }),
            );
            latest = json!({"ProductVersion": "15.1.1", "Build": "24B91", "ReleaseDate": "2024-11-19T00:00:00Z", "ExpirationDate": "2099-01-01T00:00:00Z", "SupportedDevices": ["Mac-1", "Mac-2", "Mac-3"]});
        }
        json!({
            "UpdateHash": if extra { "b2" } else { "a1" },
            "OSVersions": [{
                "OSVersion": "Sequoia 15",
                "Latest": latest,
                "SecurityReleases": releases,
                "SupportedModels": []
            }]
        })
    }

    #[test]
    fn sofa_latest_and_security_releases_merge() {
        let p = parse_sofa(sofa(false).to_string().as_bytes(), "macOS").unwrap();
        assert_eq!(p.update_hash.as_deref(), Some("a1"));
        assert_eq!(p.releases.len(), 2);
        let latest = &p.releases[0];
        assert_eq!(latest.product_version, "15.1");
        assert_eq!(latest.build.as_deref(), Some("24B83"));
        assert!(latest.latest);
        assert_eq!((latest.cves, latest.supported_devices), (2, 3));
        assert_eq!(latest.actively_exploited_cves, ["CVE-2024-44270"]);
        assert_eq!(latest.os_version.as_deref(), Some("Sequoia 15"));
        assert!(!p.releases[1].latest);
    }

    #[test]
    fn bad_feeds_are_errors_naming_what_is_wrong() {
        assert!(parse_sofa(b"<html>", "macOS")
            .unwrap_err()
            .starts_with("the feed is not JSON"));
        assert!(parse_sofa(b"{}", "macOS")
            .unwrap_err()
            .contains("no OSVersions"));
        let e =
            parse_sofa(br#"{"OSVersions": [{"Latest": {"Build": "1"}}]}"#, "macOS").unwrap_err();
        assert_eq!(e, "OSVersions[0]: a release has no ProductVersion");
        assert!(parse_gdmf(b"{}")
            .unwrap_err()
            .contains("no PublicAssetSets"));
    }

    #[test]
    fn gdmf_public_asset_sets_per_platform() {
        let body = json!({"PublicAssetSets": {
            "macOS": [{"ProductVersion": "15.1", "Build": "24B83", "PostingDate": "2024-10-28", "ExpirationDate": "2025-02-01", "SupportedDevices": ["J314sAP", "J316sAP"]}],
            "iOS": [{"ProductVersion": "18.1", "Build": "22B83", "PostingDate": "2024-10-28", "ExpirationDate": "2025-02-01", "SupportedDevices": ["iPhone17,1"]}]
        }, "AssetSets": {}});
        let p = parse_gdmf(body.to_string().as_bytes()).unwrap();
        let names: Vec<String> = p.releases.iter().map(Release::key).collect();
        assert_eq!(names, ["iOS|18.1", "macOS|15.1"]);
        assert_eq!(p.releases[1].supported_devices, 2);
    }

    #[test]
    fn the_first_read_publishes_latest_then_only_news_and_expiries_once() {
        let now = OffsetDateTime::from_unix_timestamp(1_735_000_000).unwrap();
        let first = parse_sofa(sofa(false).to_string().as_bytes(), "macOS").unwrap();
        let (events, s1) = diff(&State::default(), &first, now, true);
        let names: Vec<(&str, &str)> = events
            .iter()
            .map(|(d, r)| (*d, r.product_version.as_str()))
            .collect();
        assert_eq!(names, [("OS Release Published", "15.1")]);
        assert_eq!(s1.known.len(), 2);
        // Nothing new: nothing.
        assert!(diff(&s1, &first, now, false).0.is_empty());
        // A new release: only it.
        let second = parse_sofa(sofa(true).to_string().as_bytes(), "macOS").unwrap();
        let (events, s2) = diff(&s1, &second, now, false);
        let names: Vec<(&str, &str)> = events
            .iter()
            .map(|(d, r)| (*d, r.product_version.as_str()))
            .collect();
        assert_eq!(names, [("OS Release Published", "15.1.1")]);
        assert_eq!(events[0].1.actively_exploited_cves.len(), 2);
        // The latest release's expiry, once, when it comes due.
        let later = OffsetDateTime::from_unix_timestamp(4_200_000_000).unwrap();
        let (events, s3) = diff(&s2, &second, later, false);
        let names: Vec<(&str, &str)> = events
            .iter()
            .map(|(d, r)| (*d, r.product_version.as_str()))
            .collect();
        assert_eq!(names, [("OS Release Expired", "15.1.1")]);
        assert!(diff(&s3, &second, later, false).0.is_empty());
    }

    #[test]
    fn dates_are_rfc3339_or_plain_days() {
        assert!(parse_date("2024-10-28T00:00:00Z").is_some());
        assert_eq!(
            parse_date("2025-02-01").unwrap().unix_timestamp(),
            1_738_368_000
        );
        assert!(parse_date("soon").is_none());
    }

    proptest::proptest! {
        #[test]
        fn no_feed_text_panics_the_readers(s in "\\PC{0,200}") {
            let _ = parse_sofa(s.as_bytes(), "macOS");
            let _ = parse_gdmf(s.as_bytes());
        }
    }
}
