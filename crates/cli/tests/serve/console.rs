//! The web console under `/ui/`: its login, sessions and CSRF over plain HTTP, and
//! the pages driven in a real browser (Debian's chromium through chromedriver,
//! which `scripts/test` installs; without them these tests fail, they never skip).

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

use crate::mdm_workflows::{
    acknowledge, authenticate, first_token_update, webhook_to, FakeNanoMdm, MDM_KEY,
};
use crate::support::{self, wait_for, TOKEN};

/// The Mac that enrolls through NanoMDM in the browser test.
const ENROLLING: &str = "C02ENROLL001";
const ENROLLING_UDID: &str = "0000FE00-CAFE-5EC4-8429-15640684C489";

/// Saves what the browser shows, for people to look at (not compared).
async fn screenshot(client: &Client, name: &str) {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots");
    let _ = std::fs::create_dir_all(&dir);
    if let Ok(png) = client.screenshot().await {
        let _ = std::fs::write(dir.join(format!("{name}.png")), png);
    }
}

/// An HTTP agent that does not follow redirects (cookies are passed by hand).
fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .build()
        .into()
}

fn get(agent: &ureq::Agent, url: &str, cookie: &str) -> (u16, String, String) {
    let mut resp = agent.get(url).header("Cookie", cookie).call().unwrap();
    let location = resp
        .headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let status = resp.status().as_u16();
    (status, location, resp.body_mut().read_to_string().unwrap())
}

/// The value of the first hidden `csrf` field in a page.
fn csrf_of(page: &str) -> String {
    let at = page.find(r#"name="csrf" value=""#).expect("a csrf field") + 19;
    page[at..at + 64].to_owned()
}

/// A read token (`server.read_tokens`) sees the console and reads the API, and
/// changes nothing through either.
#[test]
fn a_read_token_sees_everything_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let rx = support::receiver();
    support::write_config(dir.path(), &rx.url, "");
    std::fs::write(dir.path().join("read-token"), "help-desk-token").unwrap();
    support::edit_config(dir.path(), |c| {
        c.replace(
            "  api_tokens: [\"${file:api-token}\"]\n",
            "  api_tokens: [\"${file:api-token}\"]\n  read_tokens: [\"${file:read-token}\"]\n",
        )
    });
    let server = support::Server::start(dir.path());
    let agent = agent();
    let api = |method: &str, path: &str| {
        let url = format!("{}{path}", server.base);
        let auth = "Bearer help-desk-token";
        let resp = match method {
            "GET" => agent.get(&url).header("Authorization", auth).call(),
            _ => agent
                .post(&url)
                .header("Authorization", auth)
                .header("Content-Type", "application/json")
                .send("{\"Entries\": []}"),
        };
        resp.unwrap().status().as_u16()
    };
    assert_eq!(api("GET", "/v1/dlq"), 200);
    assert_eq!(api("GET", "/v1/events?limit=1"), 200);
    assert_eq!(api("POST", "/v1/dlq/redrive"), 403);
    assert_eq!(api("POST", "/v1/events"), 403);
    assert_eq!(api("POST", "/v1/admin/reload"), 403);
    assert_eq!(
        api("GET", "/v1/assets/devices/C02ANY"),
        403,
        "a PIN reveal is not a read"
    );
    // The console: pages yes, redrive no.
    let resp = agent
        .post(format!("{}/ui/login", server.base))
        .send_form([("token", "help-desk-token")])
        .unwrap();
    assert_eq!(resp.status().as_u16(), 303);
    let cookie = resp.headers().get("set-cookie").unwrap().to_str().unwrap();
    let cookie = cookie.split(';').next().unwrap().to_owned();
    let (status, _, page) = get(&agent, &format!("{}/ui/dlq", server.base), &cookie);
    assert_eq!(status, 200);
    let resp = agent
        .post(format!("{}/ui/dlq/redrive", server.base))
        .header("Cookie", &cookie)
        .send_form([("csrf", csrf_of(&page).as_str()), ("which", "all")])
        .unwrap();
    assert_eq!(resp.status().as_u16(), 403);
    // Behind a TLS proxy the cookie is Secure.
    let resp = agent
        .post(format!("{}/ui/login", server.base))
        .header("X-Forwarded-Proto", "https")
        .send_form([("token", TOKEN)])
        .unwrap();
    let cookie = resp.headers().get("set-cookie").unwrap().to_str().unwrap();
    assert!(cookie.ends_with("; Secure"), "{cookie}");
    server.stop();
}

#[test]
fn pages_need_a_session_and_changes_need_its_csrf_token() {
    let (_dir, _rx, server) = support::start();
    let agent = agent();
    // No session: a page goes to the login, keeping where it was going; a form
    // post is refused.
    let (status, location, _) = get(&agent, &format!("{}/ui/events?source=x", server.base), "");
    assert_eq!(status, 303);
    assert_eq!(location, "/ui/login?next=%2Fui%2Fevents%3Fsource%3Dx");
    let resp = agent
        .post(format!("{}/ui/dlq/redrive", server.base))
        .send_form([("which", "all")])
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);

    // A wrong token is refused with the reason, and no cookie.
    let resp = agent
        .post(format!("{}/ui/login", server.base))
        .send_form([("token", "nope")])
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    assert!(resp.headers().get("set-cookie").is_none());
    let page = resp.into_body().read_to_string().unwrap();
    assert!(
        page.contains("not one of this server&#39;s API tokens")
            || page.contains("not one of this server's API tokens"),
        "{page}"
    );

    // The right one: a session cookie that scripts cannot read, and back to the
    // page asked for; never to another site.
    let resp = agent
        .post(format!("{}/ui/login", server.base))
        .send_form([("token", TOKEN), ("next", "//evil.example/x")])
        .unwrap();
    assert_eq!(resp.status().as_u16(), 303);
    assert_eq!(resp.headers().get("location").unwrap(), "/ui/");
    let cookie = resp.headers().get("set-cookie").unwrap().to_str().unwrap();
    assert!(cookie.starts_with("fleetbus_console="), "{cookie}");
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    assert!(
        !cookie.contains(TOKEN),
        "the token itself is not the cookie"
    );
    let cookie = cookie.split(';').next().unwrap().to_owned();
    let resp = agent
        .post(format!("{}/ui/login", server.base))
        .send_form([("token", TOKEN), ("next", "/ui/dlq")])
        .unwrap();
    assert_eq!(resp.headers().get("location").unwrap(), "/ui/dlq");

    let (status, _, page) = get(&agent, &format!("{}/ui/dlq", server.base), &cookie);
    assert_eq!(status, 200);
    let csrf = csrf_of(&page);
    // A change without the session's CSRF token is refused, with one it goes on.
    let resp = agent
        .post(format!("{}/ui/dlq/redrive", server.base))
        .header("Cookie", &cookie)
        .send_form([("csrf", "0".repeat(64).as_str()), ("which", "all")])
        .unwrap();
    assert_eq!(resp.status().as_u16(), 403);
    let resp = agent
        .post(format!("{}/ui/dlq/redrive", server.base))
        .header("Cookie", &cookie)
        .send_form([("csrf", csrf.as_str()), ("which", "all")])
        .unwrap();
    assert_eq!(resp.status().as_u16(), 303);
    assert_eq!(
        resp.headers().get("location").unwrap(),
        "/ui/dlq?redriven=0"
    );

    // Every answer limits what the page may load; the assets are embedded.
    let resp = agent
        .get(format!("{}/ui/static/console.js", server.base))
        .call()
        .unwrap();
    let csp = resp
        .headers()
        .get("content-security-policy")
        .unwrap()
        .to_str()
        .unwrap();
    assert!(
        csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert!(resp
        .into_body()
        .read_to_string()
        .unwrap()
        .contains("EventSource"));
    // A bad pattern for the live stream is a 400 saying why.
    let (status, _, page) = get(
        &agent,
        &format!("{}/ui/tail/stream?pattern=%7B", server.base),
        &cookie,
    );
    assert_eq!(status, 400);
    assert!(page.contains("invalid pattern"), "{page}");

    // Logging out ends the session on the server, not only in the browser.
    let resp = agent
        .post(format!("{}/ui/logout", server.base))
        .header("Cookie", &cookie)
        .send_form([("csrf", csrf.as_str())])
        .unwrap();
    assert_eq!(resp.status().as_u16(), 303);
    assert_eq!(
        get(&agent, &format!("{}/ui/dlq", server.base), &cookie).0,
        303
    );
    server.stop();
}

/// chromedriver on a free loopback port, ended with the test.
struct Driver {
    child: Child,
    url: String,
    _profile: tempfile::TempDir,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn chromedriver() -> Driver {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("chromedriver: {e}: the console's browser tests need Debian's chromium and chromium-driver (scripts/test installs them)")
        });
    let url = format!("http://127.0.0.1:{port}");
    wait_for("chromedriver to listen", Duration::from_secs(20), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    Driver {
        child,
        url,
        _profile: tempfile::tempdir().unwrap(),
    }
}

async fn browser(driver: &Driver) -> Client {
    let caps = json!({
        "goog:chromeOptions": {
            "binary": "/usr/bin/chromium",
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-quic", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--window-size=1400,1000",
                format!("--user-data-dir={}", driver._profile.path().display()),
            ],
        }
    });
    let Value::Object(caps) = caps else {
        unreachable!()
    };
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .expect("a chromium session through chromedriver")
}

/// Waits until the element at `css` holds `text`, or fails naming both.
async fn wait_text(client: &Client, css: &str, text: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut last = String::new();
    while Instant::now() < deadline {
        if let Ok(e) = client.find(Locator::Css(css)).await {
            last = e.text().await.unwrap_or_default();
            if last.contains(text) {
                return last;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{css} never held {text:?}; last it held {last:?}");
}

async fn click(client: &Client, css: &str) {
    client
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .click()
        .await
        .unwrap_or_else(|e| panic!("clicking {css}: {e}"));
}

async fn fill(client: &Client, css: &str, text: &str) {
    let field = client.find(Locator::Css(css)).await.unwrap();
    field.clear().await.unwrap();
    field.send_keys(text).await.unwrap();
}

#[test]
fn an_admin_follows_a_mac_tests_a_rule_tails_events_and_redrives_in_a_browser() {
    // The shared test config, plus a NanoMDM webhook source and a rule that asks an
    // enrolling Mac for its OS version through a fake NanoMDM.
    let dir = tempfile::tempdir().unwrap();
    let rx = support::receiver();
    let mdm = FakeNanoMdm::start();
    std::fs::write(dir.path().join("mdm-key"), MDM_KEY).unwrap();
    let enroll_rule = format!(
        "  - name: ask-on-enroll\n    event_pattern: {{source: [mdm.nanomdm], detail: {{action: [enroll]}}}}\n    targets:\n      - id: info\n        kind: mdm\n        server: nanomdm\n        url: {}\n        api_key: \"${{file:mdm-key}}\"\n        devices: {{udid: $.detail.device.udid}}\n        mdm_command: {{RequestType: DeviceInformation, Queries: [OSVersion]}}\n",
        mdm.url
    );
    support::write_config(dir.path(), &rx.url, &enroll_rule);
    support::edit_config(dir.path(), |c| {
        c.replacen(
            "sources:\n",
            "sources:\n  - name: nanomdm\n    kind: nanomdm\n    tokens: [\"${file:source-token}\"]\n",
            1,
        )
    });
    let server = support::Server::start(dir.path());
    // The receiver refuses for good: the Notify delivery is dead-lettered at once.
    rx.status.store(400, Ordering::SeqCst);
    support::put_device(
        &server,
        "C02CONSOLE1",
        json!({"name": "Ada's MacBook", "user_id": "ada@example.com", "model": "Mac14,2"}),
    );
    // A Mac enrolls through NanoMDM; the rule asks it for its OS version; it answers.
    webhook_to(&server, "nanomdm", &authenticate(ENROLLING_UDID, ENROLLING));
    webhook_to(&server, "nanomdm", &first_token_update(ENROLLING_UDID));
    wait_for(
        "the DeviceInformation command",
        Duration::from_secs(20),
        || !mdm.calls_of("DeviceInformation").is_empty(),
    );
    let uuid = mdm.calls_of("DeviceInformation")[0]
        .command
        .command_uuid
        .clone();
    webhook_to(
        &server,
        "nanomdm",
        &acknowledge(
            ENROLLING_UDID,
            &uuid,
            "Acknowledged",
            "<key>QueryResponses</key><dict><key>OSVersion</key><string>15.1</string></dict>",
        ),
    );
    // An event whose text is hostile markup.
    let hostile = server.put_events(json!([{
        "Source": "com.example.hr",
        "DetailType": "Note Added",
        "Detail": json!({"note": "<script>document.title='pwned'</script><img src=x onerror=\"document.title='pwned'\">"}).to_string(),
        "Resources": ["device/C02CONSOLE1"],
    }]))["Entries"][0]["EventId"]
        .as_str()
        .unwrap()
        .to_owned();
    let put = |detail_type: &str| {
        server.put_events(json!([{
            "Source": "com.example.mdm",
            "DetailType": detail_type,
            "Detail": "{\"serial\": \"C02CONSOLE1\"}",
            "Resources": ["device/C02CONSOLE1"],
        }]))["Entries"][0]["EventId"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let enrolled = put("Device Enrolled");
    put("Notify");
    wait_for("the dead letter", Duration::from_secs(20), || {
        server.get("/v1/dlq").1["entries"]
            .as_array()
            .is_some_and(|e| !e.is_empty())
    });

    let driver = chromedriver();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let c = browser(&driver).await;
        let base = &server.base;
        // Login: a wrong token says so, the right one lands on the overview.
        c.goto(&format!("{base}/ui/")).await.unwrap();
        fill(&c, "#token", "wrong").await;
        click(&c, "button[type=submit]").await;
        wait_text(&c, "p.error", "not one of this server's API tokens").await;
        fill(&c, "#token", TOKEN).await;
        click(&c, "button[type=submit]").await;
        wait_text(&c, "h1", "Overview").await;
        wait_text(&c, "#store-health", "healthy").await;
        wait_text(&c, "#dead", "1").await;
        screenshot(&c, "overview").await;

        // The enrolled Mac: its check-ins, the rule's delivery, the MDM command with
        // the Mac's answer, each linked to what caused it.
        c.goto(&format!("{base}/ui/devices/{ENROLLING}")).await.unwrap();
        wait_text(&c, "#commands", "DeviceInformation").await;
        wait_text(&c, "#commands", "Acknowledged").await;
        wait_text(&c, "#timeline", "MDM Check-in").await;
        wait_text(&c, "#timeline", "MDM Command Result").await;
        wait_text(&c, "#timeline", "Target Delivery Succeeded").await;
        // Grouped by causation: the enrollment and what it set off, the command's
        // answer among them.
        let chains = c.find_all(Locator::Css("#timeline tbody.chain")).await.unwrap();
        let mut grouped = false;
        for chain in chains {
            let text = chain.text().await.unwrap();
            grouped |= text.contains("MDM Check-in")
                && text.contains("↳ MDM Command Result")
                && text.contains("↳ Target Delivery Succeeded");
        }
        assert!(grouped, "no chain holds the enrollment with its effects");
        wait_text(&c, "#software-update", "not started").await;
        screenshot(&c, "device").await;
        // The command's cause is one click away: the enrollment.
        click(&c, "#commands td:last-child a").await;
        wait_text(&c, "#trace", "MDM Command Enqueued").await;

        // Hostile text from an event is text: no script ran, the markup shows.
        c.goto(&format!("{base}/ui/events/{hostile}")).await.unwrap();
        wait_text(&c, "pre.json", "<script>document.title='pwned'</script>").await;
        let title = c.execute("return document.title", vec![]).await.unwrap();
        assert_ne!(title, json!("pwned"), "a script from an event ran");
        assert!(title.as_str().unwrap().contains("Note Added"), "{title}");

        // Search finds the Mac by its user; its page has the record and timeline.
        fill(&c, "header input[name=q]", "ada@").await;
        c.find(Locator::Css("header input[name=q]"))
            .await
            .unwrap()
            .send_keys("\u{E007}")
            .await
            .unwrap();
        wait_text(&c, "table.records", "C02CONSOLE1").await;
        click(&c, "table.records a").await;
        wait_text(&c, "#serial", "C02CONSOLE1").await;
        wait_text(&c, "#timeline", "Device Enrolled").await;

        // The event's page: its trace down to the delivery, and why to-api did not
        // match it.
        c.goto(&format!("{base}/ui/events/{enrolled}")).await.unwrap();
        wait_text(&c, "#trace", "Target Delivery Succeeded").await;
        wait_text(&c, "#trace", "all → file").await;
        screenshot(&c, "event").await;
        let select = c.find(Locator::Css("select[name=explain]")).await.unwrap();
        select.select_by_value("to-api").await.unwrap();
        click(&c, "#explain button").await;
        wait_text(&c, "pre.explanation", "no match").await;
        wait_text(&c, "pre.explanation", "detail-type").await;

        // The sandbox with that event and rule: no match; a pattern that matches,
        // and the input transformer's real output for the rule's target.
        c.goto(&format!("{base}/ui/sandbox?event={enrolled}&rule=to-api"))
            .await
            .unwrap();
        click(&c, "#sandbox-test").await;
        wait_text(&c, "#sandbox-result h2", "Does not match").await;
        fill(&c, "#sandbox-pattern", r#"{"detail-type": ["Device Enrolled"]}"#).await;
        click(&c, "#sandbox-test").await;
        wait_text(&c, "#sandbox-result h2", "Matches").await;
        wait_text(&c, "#sandbox-result", r#""what": "Device Enrolled""#).await;
        wait_text(&c, "#sandbox-result", r#""device": "C02CONSOLE1""#).await;
        screenshot(&c, "sandbox").await;

        // The live tail shows what is committed after it opened, filtered by its
        // pattern; paused, it holds events back until resumed.
        let pattern = r#"{"source": ["com.example.tail"]}"#;
        c.goto(&format!("{base}/ui/tail?pattern={}", urlencode(pattern)))
            .await
            .unwrap();
        wait_text(&c, "#tail-status", "live").await;
        let tail_event = |dt: &str| {
            server.put_events(json!([
                {"Source": "com.example.other", "DetailType": "Not Shown", "Detail": "{}"},
                {"Source": "com.example.tail", "DetailType": dt, "Detail": "{}", "Resources": ["device/C02CONSOLE1"]},
            ]));
        };
        tail_event("Tail One");
        wait_text(&c, "#tail tbody", "Tail One").await;
        click(&c, "#tail-pause").await;
        tail_event("Tail Two");
        wait_text(&c, "#tail-status", "paused (1 waiting)").await;
        let rows = c.find(Locator::Css("#tail tbody")).await.unwrap().text().await.unwrap();
        assert!(!rows.contains("Tail Two") && !rows.contains("Not Shown"), "{rows}");
        click(&c, "#tail-resume").await;
        wait_text(&c, "#tail tbody", "Tail Two").await;
        screenshot(&c, "tail").await;

        // Dead letters: the failed Notify with its reason; redriven once the
        // receiver takes it again.
        c.goto(&format!("{base}/ui/dlq")).await.unwrap();
        wait_text(&c, "#dlq", "to-api → api").await;
        wait_text(&c, "#dlq", "400").await;
        rx.status.store(200, Ordering::SeqCst);
        click(&c, "#dlq input[type=checkbox]").await;
        click(&c, "#redrive-selected").await;
        wait_text(&c, "#redriven", "1 sent back for delivery").await;
        // Delivered this time, it is gone from the list.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            c.goto(&format!("{base}/ui/dlq")).await.unwrap();
            if c.find(Locator::Css("#dlq-empty")).await.is_ok() {
                break;
            }
            assert!(Instant::now() < deadline, "the redriven dead letter stays listed");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        screenshot(&c, "dlq").await;

        // The rules page counts that rule's deliveries.
        c.goto(&format!("{base}/ui/rules")).await.unwrap();
        wait_text(&c, "#rules", "to-api").await;
        screenshot(&c, "rules").await;
        // A phone's width: the page still works (the navigation wraps, nothing hides).
        c.set_window_size(390, 844).await.unwrap();
        c.goto(&format!("{base}/ui/devices/{ENROLLING}")).await.unwrap();
        wait_text(&c, "#serial", ENROLLING).await;
        screenshot(&c, "device-phone").await;
        c.set_window_size(1400, 1000).await.unwrap();

        // Logging out: the console is closed again.
        click(&c, "header form[action='/ui/logout'] button").await;
        wait_text(&c, "h1", "fleetbus").await;
        c.goto(&format!("{base}/ui/dlq")).await.unwrap();
        wait_text(&c, "label[for=token]", "API token").await;
        c.close().await.unwrap();
    });
    wait_for("the redriven delivery", Duration::from_secs(20), || {
        rx.bodies
            .lock()
            .unwrap()
            .iter()
            .any(|(b, _)| b["what"] == "Notify")
    });
    server.stop();
}

fn urlencode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}
