//! `kind: os-feed` through the real binary: a SOFA feed served on loopback (in
//! SOFA's shape; values made up here), polled every second: the first read, a
//! new release, ETag revalidation, an outage and its recovery, and a restart that
//! publishes nothing twice.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

use super::support::*;

pub(super) fn release(version: &str, date: &str, exploited: &[&str]) -> Value {
    let cves: serde_json::Map<String, Value> = exploited
        .iter()
        .map(|c| ((*c).to_owned(), json!(true)))
        .chain([("CVE-2024-40001".to_owned(), json!(false))])
        .collect();
    json!({
        "UpdateName": format!("macOS Sequoia {version}"),
        "ProductVersion": version,
        "ReleaseDate": date,
        "SecurityInfo": "https://support.apple.com/en-us/100100",
        "SupportedDevices": ["Mac-1", "Mac-2"],
        "CVEs": cves,
        "ActivelyExploitedCVEs": exploited,
        "UniqueCVEsCount": cves.len(),
        "DaysSincePreviousRelease": 20
    })
}

pub(super) fn feed(with_new: bool) -> String {
    let mut releases = vec![
        release("15.1", "2024-10-28T00:00:00Z", &["CVE-2024-44270"]),
        release("15.0.1", "2024-10-03T00:00:00Z", &[]),
    ];
    let mut latest = json!({"ProductVersion": "15.1", "Build": "24B83", "ReleaseDate": "2024-10-28T00:00:00Z", "ExpirationDate": "2099-01-01T00:00:00Z", "SupportedDevices": ["Mac-1", "Mac-2", "Mac-3"]});
    if with_new {
        releases.insert(
            0,
            release(
                "15.1.1",
                "2024-11-19T00:00:00Z",
                &["CVE-2024-44308", "CVE-2024-44309"],
            ),
        );
        latest = json!({"ProductVersion": "15.1.1", "Build": "24B91", "ReleaseDate": "2024-11-19T00:00:00Z", "ExpirationDate": "2099-01-01T00:00:00Z", "SupportedDevices": ["Mac-1", "Mac-2", "Mac-3"]});
    }
    json!({
        "UpdateHash": if with_new { "hash-2" } else { "hash-1" },
        "OSVersions": [{"OSVersion": "Sequoia 15", "Latest": latest, "SecurityReleases": releases, "SupportedModels": []}]
    })
    .to_string()
}

/// A feed server: serves `body` with an ETag, answers 304 to a matching
/// `If-None-Match`, and 503 while `down`.
pub(super) struct FeedServer {
    pub(super) url: String,
    body: Arc<Mutex<String>>,
    pub(super) down: Arc<AtomicBool>,
    not_modified: Arc<AtomicUsize>,
    _rt: tokio::runtime::Runtime,
}

pub(super) fn feed_server(initial: String) -> FeedServer {
    use axum::http::{HeaderMap, StatusCode};
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let url = format!(
        "http://{}/v1/macos_data_feed.json",
        listener.local_addr().unwrap()
    );
    let body = Arc::new(Mutex::new(initial));
    let down = Arc::new(AtomicBool::new(false));
    let not_modified = Arc::new(AtomicUsize::new(0));
    let (b, d, n) = (body.clone(), down.clone(), not_modified.clone());
    let app = axum::Router::new().route(
        "/v1/macos_data_feed.json",
        axum::routing::get(move |headers: HeaderMap| {
            let (b, d, n) = (b.clone(), d.clone(), n.clone());
            async move {
                let mut answer = HeaderMap::new();
                if d.load(Ordering::SeqCst) {
                    return (StatusCode::SERVICE_UNAVAILABLE, answer, String::new());
                }
                let text = b.lock().unwrap().clone();
                let etag = format!("\"{}\"", text.len());
                answer.insert("etag", etag.parse().unwrap());
                if headers.get("if-none-match").and_then(|v| v.to_str().ok()) == Some(&etag) {
                    n.fetch_add(1, Ordering::SeqCst);
                    return (StatusCode::NOT_MODIFIED, answer, String::new());
                }
                (StatusCode::OK, answer, text)
            }
        }),
    );
    rt.spawn(async move { axum::serve(listener, app).await.unwrap() });
    FeedServer {
        url,
        body,
        down,
        not_modified,
        _rt: rt,
    }
}

fn with_feed(dir: &std::path::Path, url: &str) {
    edit_config(dir, |c| {
        c.replacen(
            "sources:\n",
            &format!(
                "sources:\n  - name: apple\n    kind: os-feed\n    url: {url}\n    interval: 1s\n"
            ),
            1,
        )
    });
}

/// The os-feed events so far, oldest first.
fn feed_events(server: &Server) -> Vec<Value> {
    let (status, page) = server.get("/v1/events?source=fleetbus.os-feed&order=oldest&limit=100");
    assert_eq!(status, 200, "{page}");
    page["events"].as_array().unwrap().clone()
}

fn of_type<'a>(events: &'a [Value], dt: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|e| e["event"]["detail-type"] == dt)
        .collect()
}

#[test]
fn releases_are_published_once_with_outages_and_restarts() {
    let feed_srv = feed_server(feed(false));
    let dir = tempfile::tempdir().unwrap();
    let rx = receiver();
    write_config(dir.path(), &rx.url, "");
    with_feed(dir.path(), &feed_srv.url);
    let server = Server::start(dir.path());

    // The first read: the latest release only, not the history.
    wait_for("the first release", Duration::from_secs(15), || {
        !feed_events(&server).is_empty()
    });
    wait_for("a revalidation", Duration::from_secs(15), || {
        feed_srv.not_modified.load(Ordering::SeqCst) >= 1
    });
    let events = feed_events(&server);
    let published = of_type(&events, "OS Release Published");
    assert_eq!(published.len(), 1, "{events:#?}");
    let d = &published[0]["event"]["detail"];
    assert_eq!(
        (&d["platform"], &d["product_version"], &d["build"]),
        (&json!("macOS"), &json!("15.1"), &json!("24B83"))
    );
    assert_eq!(
        (&d["cves"], &d["actively_exploited"]),
        (&json!(2), &json!(true))
    );
    assert_eq!(d["actively_exploited_cves"], json!(["CVE-2024-44270"]));
    assert_eq!(
        (&d["feed"], &d["os_version"]),
        (&json!("sofa"), &json!("Sequoia 15"))
    );
    assert_eq!(published[0]["event"]["resources"], json!(["os/macOS/15.1"]));

    // A new release: it alone.
    *feed_srv.body.lock().unwrap() = feed(true);
    wait_for("the new release", Duration::from_secs(15), || {
        of_type(&feed_events(&server), "OS Release Published").len() >= 2
    });
    let events = feed_events(&server);
    let published = of_type(&events, "OS Release Published");
    assert_eq!(published.len(), 2, "{events:#?}");
    assert_eq!(published[1]["event"]["detail"]["product_version"], "15.1.1");
    assert_eq!(
        published[1]["event"]["detail"]["actively_exploited_cves"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    // An outage is one event however many polls fail, and its end another.
    feed_srv.down.store(true, Ordering::SeqCst);
    wait_for("the outage", Duration::from_secs(15), || {
        !of_type(&feed_events(&server), "OS Feed Unavailable").is_empty()
    });
    std::thread::sleep(Duration::from_millis(2500));
    let events = feed_events(&server);
    let down = of_type(&events, "OS Feed Unavailable");
    assert_eq!(down.len(), 1, "{events:#?}");
    assert!(
        down[0]["event"]["detail"]["error"]
            .as_str()
            .unwrap()
            .contains("503"),
        "{down:?}"
    );
    feed_srv.down.store(false, Ordering::SeqCst);
    wait_for("the recovery", Duration::from_secs(15), || {
        !of_type(&feed_events(&server), "OS Feed Recovered").is_empty()
    });
    server.stop();

    // A restart remembers what was published.
    let server = Server::start(dir.path());
    let seen = feed_srv.not_modified.load(Ordering::SeqCst);
    wait_for("polls after the restart", Duration::from_secs(15), || {
        feed_srv.not_modified.load(Ordering::SeqCst) >= seen + 2
    });
    let events = feed_events(&server);
    assert_eq!(
        of_type(&events, "OS Release Published").len(),
        2,
        "{events:#?}"
    );
    assert!(
        dir.path().join("data/sources/apple.feed.json").exists(),
        "the last good copy is kept"
    );
    server.stop();
}

#[test]
fn os_feed_config_mistakes_are_located() {
    let (code, text) = validate_yaml("sources:\n  - name: a\n    kind: os-feed\n    feed: rss\n    url: ftp://x\n  - name: b\n    kind: os-feed\n  - name: c\n    kind: jamf\n    tokens: [t]\n    interval: 1h\n");
    assert_eq!(code, Some(2), "{text}");
    for want in [
        "c.yaml:4:11: sources[0].feed: unknown feed \"rss\" (expected sofa or gdmf)",
        "c.yaml:5:10: sources[0].url: \"ftp://x\" is not an http:// or https:// URL",
        "c.yaml:6:5: sources[1]: missing required field url (kind os-feed needs it",
        "c.yaml:11:5: sources[2].interval: does not apply to kind jamf (it takes: no fields of its own)",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
}
