//! Targets against real receivers on loopback: an HTTP server (axum) standing in
//! for APIs, OAuth token endpoints and Slack, and a small SMTP sink
//! (`fleetbus-test-support`, shared with the `fleetbus serve` tests).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fleetbus_config::{Auth, Input, RetryPolicy, Secret, Smtp, Target, TargetSpec, Tls};
use fleetbus_event::{Event, Meta, StoredEvent};
use fleetbus_targets::{apply, BuildContext, DeliveryContext, DeliveryError, Payload, TargetImpl};
use serde_json::{json, Value};

use fleetbus_test_support::smtp;

fn target(spec: TargetSpec, input: Input, timeout: Duration) -> Target {
    Target {
        site: Default::default(),
        id: "t1".into(),
        input,
        retry: RetryPolicy::default(),
        concurrency: 1,
        rate_limit: None,
        timeout,
        spec,
    }
}

fn stored() -> StoredEvent {
    let mut event = Event::new(
        "mdm.nanomdm",
        "Device Enrolled",
        json!({"device": {"serial": "C02XK1JDJG5J", "name": "jdoe-mbp"}})
            .as_object()
            .cloned()
            .unwrap(),
    );
    event.resources = vec!["device/C02XK1JDJG5J".into()];
    StoredEvent {
        event,
        meta: Meta::ingested("default", "api"),
    }
}

fn ctx<'a>(e: &'a StoredEvent, key: &'a str) -> DeliveryContext<'a> {
    DeliveryContext {
        event: e,
        rule: "enrolled",
        target: "t1",
        attempt: 1,
        idempotency_key: key,
    }
}

mod server {
    //! A recording HTTP server whose answers a closure decides.

    use super::*;
    use axum::body::Bytes;
    use axum::http::{HeaderMap, Method, StatusCode, Uri};
    use axum::response::IntoResponse;

    #[derive(Debug, Clone)]
    pub struct Request {
        pub method: String,
        pub path: String,
        pub headers: HeaderMap,
        pub body: Vec<u8>,
    }

    impl Request {
        pub fn header(&self, name: &str) -> Option<&str> {
            self.headers.get(name).and_then(|v| v.to_str().ok())
        }
    }

    pub struct Answer {
        pub status: u16,
        pub headers: Vec<(&'static str, String)>,
        pub body: String,
        pub delay: Duration,
    }

    pub fn answer(status: u16, body: impl Into<String>) -> Answer {
        Answer {
            status,
            headers: Vec::new(),
            body: body.into(),
            delay: Duration::ZERO,
        }
    }

    type Responder = dyn Fn(&Request, &[Request]) -> Answer + Send + Sync;

    #[derive(Clone)]
    struct AppState {
        log: Arc<Mutex<Vec<Request>>>,
        respond: Arc<Responder>,
    }

    pub struct Server {
        pub base: String,
        pub log: Arc<Mutex<Vec<Request>>>,
    }

    impl Server {
        pub fn requests(&self) -> Vec<Request> {
            self.log.lock().unwrap().clone()
        }
        pub fn on(&self, path: &str) -> Vec<Request> {
            self.requests()
                .into_iter()
                .filter(|r| r.path == path)
                .collect()
        }
    }

    /// Starts a server; `respond` sees the request and those before it.
    pub async fn start(
        respond: impl Fn(&Request, &[Request]) -> Answer + Send + Sync + 'static,
    ) -> Server {
        let state = AppState {
            log: Arc::new(Mutex::new(Vec::new())),
            respond: Arc::new(respond),
        };
        let log = state.log.clone();
        let app = axum::Router::new().fallback(handle).with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Server {
            base: format!("http://{addr}"),
            log,
        }
    }

    async fn handle(
        axum::extract::State(state): axum::extract::State<AppState>,
        method: Method,
        uri: Uri,
        headers: HeaderMap,
        body: Bytes,
    ) -> impl IntoResponse {
        let req = Request {
            method: method.to_string(),
            path: uri.path().to_owned(),
            headers,
            body: body.to_vec(),
        };
        let answer = {
            let mut log = state.log.lock().unwrap();
            let a = (state.respond)(&req, &log);
            log.push(req);
            a
        };
        if !answer.delay.is_zero() {
            tokio::time::sleep(answer.delay).await;
        }
        let mut headers = HeaderMap::new();
        for (k, v) in answer.headers {
            headers.insert(k, v.parse().unwrap());
        }
        (
            StatusCode::from_u16(answer.status).unwrap(),
            headers,
            answer.body,
        )
    }
}

mod http {
    use super::server::{answer, start, Answer};
    use super::*;

    fn http_spec(url: String, connection: Option<&str>) -> TargetSpec {
        let mut headers = BTreeMap::new();
        headers.insert("X-Custom".to_owned(), "yes".to_owned());
        TargetSpec::Http {
            url,
            method: "POST".into(),
            headers,
            connection: connection.map(str::to_owned),
        }
    }

    fn connections() -> BTreeMap<String, Auth> {
        let mut c = BTreeMap::new();
        c.insert(
            "basic".into(),
            Auth::Basic {
                username: "fleet".into(),
                password: Secret::from_value("s3cret"),
            },
        );
        c.insert(
            "key".into(),
            Auth::ApiKey {
                header: "X-Api-Key".into(),
                value: Secret::from_value("k-123"),
            },
        );
        c.insert(
            "bearer".into(),
            Auth::Bearer {
                token: Secret::from_value("tok-9"),
            },
        );
        c
    }

    async fn deliver(
        spec: TargetSpec,
        conns: &BTreeMap<String, Auth>,
        payload: &Payload,
        timeout: Duration,
    ) -> Result<fleetbus_targets::Delivered, DeliveryError> {
        let t = TargetImpl::build(
            &target(spec, Input::Event, timeout),
            &BuildContext::new(conns),
        )
        .unwrap();
        let e = stored();
        t.deliver(payload, &ctx(&e, "ev-1:enrolled:t1")).await
    }

    /// A `Retry-After` HTTP date is read against the clock the build context hands
    /// the target, not the machine's: a date 90 s after the injected "now" waits 90 s.
    #[tokio::test]
    async fn retry_after_dates_use_the_build_contexts_clock() {
        fn fixed_now() -> std::time::SystemTime {
            std::time::UNIX_EPOCH + Duration::from_secs(1_700_000_000)
        }
        let later = httpdate::fmt_http_date(fixed_now() + Duration::from_secs(90));
        let srv = start(move |_, _| {
            let mut a = answer(503, "busy");
            a.headers.push(("retry-after", later.clone()));
            a
        })
        .await;
        let none = BTreeMap::new();
        let mut build = BuildContext::new(&none);
        build.clock = fixed_now;
        let t = TargetImpl::build(
            &target(
                http_spec(format!("{}/hook", srv.base), None),
                Input::Event,
                Duration::from_secs(5),
            ),
            &build,
        )
        .unwrap();
        let e = stored();
        let err = t
            .deliver(&Payload::Json(serde_json::json!({})), &ctx(&e, "k"))
            .await
            .unwrap_err();
        assert_eq!(err.retry_after(), Some(Duration::from_secs(90)), "{err}");
    }

    #[tokio::test]
    async fn posts_payload_with_headers_and_auth() {
        let srv = start(|_, _| answer(200, "ok")).await;
        let conns = connections();
        let e = stored();
        let payload = apply(
            &Input::Transformer {
                paths: [(
                    "serial".to_owned(),
                    fleetbus_config::JsonPath::parse("$.detail.device.serial").unwrap(),
                )]
                .into_iter()
                .collect(),
                template: r#"{"serial": <serial>, "rule": <aws.events.rule-name>}"#.into(),
            },
            &e,
            "enrolled",
        )
        .unwrap();
        for (conn, header, expected) in [
            ("basic", "authorization", "Basic ZmxlZXQ6czNjcmV0"),
            ("key", "x-api-key", "k-123"),
            ("bearer", "authorization", "Bearer tok-9"),
        ] {
            let t = TargetImpl::build(
                &target(
                    http_spec(format!("{}/hook", srv.base), Some(conn)),
                    Input::Event,
                    Duration::from_secs(5),
                ),
                &BuildContext::new(&conns),
            )
            .unwrap();
            assert_eq!(t.kind(), "http");
            let out = t
                .deliver(&payload, &ctx(&e, "ev:enrolled:t1"))
                .await
                .unwrap();
            assert_eq!(out.status, "200");
            let req = srv.requests().pop().unwrap();
            assert_eq!(req.header(header), Some(expected), "{conn}");
        }
        let req = srv.requests().pop().unwrap();
        assert_eq!(req.method, "POST");
        assert_eq!(req.path, "/hook");
        assert_eq!(req.header("idempotency-key"), Some("ev:enrolled:t1"));
        assert_eq!(req.header("x-fleetbus-event-id"), Some(e.event.id.as_str()));
        assert_eq!(req.header("x-custom"), Some("yes"));
        assert_eq!(req.header("content-type"), Some("application/json"));
        let body: Value = serde_json::from_slice(&req.body).unwrap();
        assert_eq!(body, json!({"serial": "C02XK1JDJG5J", "rule": "enrolled"}));
    }

    #[tokio::test]
    async fn text_payload_and_get_without_body() {
        let srv = start(|_, _| answer(204, "")).await;
        let out = deliver(
            http_spec(format!("{}/t", srv.base), None),
            &BTreeMap::new(),
            &Payload::Text("plain".into()),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
        assert_eq!(out.status, "204");
        let req = srv.requests().pop().unwrap();
        assert_eq!(req.body, b"plain");
        assert_eq!(
            req.header("content-type"),
            Some("text/plain; charset=utf-8")
        );

        let spec = TargetSpec::Http {
            url: format!("{}/g", srv.base),
            method: "GET".into(),
            headers: BTreeMap::new(),
            connection: None,
        };
        deliver(
            spec,
            &BTreeMap::new(),
            &Payload::Json(json!({"a": 1})),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
        let req = srv.requests().pop().unwrap();
        assert_eq!(req.method, "GET");
        assert!(req.body.is_empty());
    }

    #[tokio::test]
    async fn statuses_are_classified() {
        let srv = start(|req, _| match req.path.as_str() {
            "/500" => answer(500, "boom"),
            "/503" => answer(503, ""),
            "/408" => answer(408, ""),
            "/429" => Answer {
                headers: vec![("retry-after", "7".into())],
                ..answer(429, "slow down")
            },
            "/404" => answer(404, format!("no such thing {}", "x".repeat(4000))),
            "/400" => answer(400, "{\"error\":\"bad field serial\"}"),
            "/slow" => Answer {
                delay: Duration::from_secs(3),
                ..answer(200, "")
            },
            _ => answer(200, ""),
        })
        .await;
        let p = Payload::Json(json!({}));
        let none = BTreeMap::new();
        let run = |path: &str, timeout: Duration| {
            let spec = http_spec(format!("{}{path}", srv.base), None);
            let none = none.clone();
            let p = p.clone();
            async move { deliver(spec, &none, &p, timeout).await }
        };
        let secs = Duration::from_secs(5);
        for path in ["/500", "/503", "/408"] {
            let err = run(path, secs).await.unwrap_err();
            assert!(err.is_retryable(), "{path}: {err}");
        }
        let err = run("/500", secs).await.unwrap_err();
        assert_eq!(err.to_string(), "http 500 Internal Server Error: boom");
        let err = run("/429", secs).await.unwrap_err();
        assert!(err.is_retryable());
        assert!(err.to_string().contains("retry after 7"), "{err}");
        let err = run("/404", secs).await.unwrap_err();
        assert!(!err.is_retryable());
        assert!(err
            .to_string()
            .starts_with("http 404 Not Found: no such thing"));
        assert!(err.to_string().len() < 700);
        let err = run("/400", secs).await.unwrap_err();
        assert!(!err.is_retryable());
        assert!(err.to_string().contains("bad field serial"), "{err}");
        let err = run("/slow", Duration::from_millis(300)).await.unwrap_err();
        assert!(err.is_retryable());
        assert!(err.to_string().contains("timed out"), "{err}");
    }

    #[tokio::test]
    async fn connection_refused_is_retryable() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let err = deliver(
            http_spec(format!("http://{addr}/x"), None),
            &BTreeMap::new(),
            &Payload::Json(json!({})),
            Duration::from_secs(5),
        )
        .await
        .unwrap_err();
        assert!(err.is_retryable(), "{err}");
    }

    fn oauth(base: &str) -> BTreeMap<String, Auth> {
        let mut c = BTreeMap::new();
        c.insert(
            "oauth".into(),
            Auth::Oauth {
                token_url: format!("{base}/token"),
                client_id: "client".into(),
                client_secret: Secret::from_value("csecret"),
                scope: Some("events.write".into()),
            },
        );
        c
    }

    /// A token endpoint issuing tok-1, tok-2... valid for `expires_in`; the API
    /// refuses `revoked` tokens with 401.
    async fn oauth_server(
        expires_in: u64,
        revoked: &'static [&'static str],
    ) -> super::server::Server {
        start(move |req, before| {
            if req.path == "/token" {
                let n = before.iter().filter(|r| r.path == "/token").count() + 1;
                return answer(
                    200,
                    json!({"access_token": format!("tok-{n}"), "token_type": "Bearer", "expires_in": expires_in})
                        .to_string(),
                );
            }
            let auth = req.header("authorization").unwrap_or_default();
            if revoked.iter().any(|t| auth == format!("Bearer {t}")) {
                answer(401, "expired")
            } else {
                answer(200, "ok")
            }
        })
        .await
    }

    #[tokio::test]
    async fn oauth_token_is_fetched_once_and_cached() {
        let srv = oauth_server(3600, &[]).await;
        let conns = oauth(&srv.base);
        let t = TargetImpl::build(
            &target(
                http_spec(format!("{}/api", srv.base), Some("oauth")),
                Input::Event,
                Duration::from_secs(5),
            ),
            &BuildContext::new(&conns),
        )
        .unwrap();
        let t = Arc::new(t);
        let e = Arc::new(stored());
        let mut tasks = Vec::new();
        for _ in 0..5 {
            let t = t.clone();
            let e = e.clone();
            tasks.push(tokio::spawn(async move {
                t.deliver(&Payload::Json(json!({})), &ctx(&e, "k")).await
            }));
        }
        for task in tasks {
            task.await.unwrap().unwrap();
        }
        let tokens = srv.on("/token");
        assert_eq!(tokens.len(), 1);
        let body = String::from_utf8(tokens[0].body.clone()).unwrap();
        assert!(body.contains("grant_type=client_credentials"), "{body}");
        assert!(body.contains("scope=events.write"), "{body}");
        assert_eq!(
            tokens[0].header("authorization"),
            Some("Basic Y2xpZW50OmNzZWNyZXQ=")
        );
        assert!(srv
            .on("/api")
            .iter()
            .all(|r| r.header("authorization") == Some("Bearer tok-1")));
    }

    #[tokio::test]
    async fn oauth_refreshes_on_401_and_when_expiring() {
        let srv = oauth_server(3600, &["tok-1"]).await;
        let conns = oauth(&srv.base);
        let out = deliver(
            http_spec(format!("{}/api", srv.base), Some("oauth")),
            &conns,
            &Payload::Json(json!({})),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
        assert_eq!(out.status, "200");
        assert_eq!(srv.on("/token").len(), 2);
        let api = srv.on("/api");
        assert_eq!(api.len(), 2);
        assert_eq!(api[1].header("authorization"), Some("Bearer tok-2"));

        // A token that keeps being refused: one refresh, then a permanent 401.
        let srv = oauth_server(3600, &["tok-1", "tok-2"]).await;
        let err = deliver(
            http_spec(format!("{}/api", srv.base), Some("oauth")),
            &oauth(&srv.base),
            &Payload::Json(json!({})),
            Duration::from_secs(5),
        )
        .await
        .unwrap_err();
        assert!(!err.is_retryable());
        assert!(err.to_string().starts_with("http 401"), "{err}");
        assert_eq!(srv.on("/token").len(), 2);

        // A token about to expire is fetched again for each delivery.
        let srv = oauth_server(1, &[]).await;
        let t = TargetImpl::build(
            &target(
                http_spec(format!("{}/api", srv.base), Some("oauth")),
                Input::Event,
                Duration::from_secs(5),
            ),
            &BuildContext::new(&oauth(&srv.base)),
        )
        .unwrap();
        let e = stored();
        for _ in 0..2 {
            t.deliver(&Payload::Json(json!({})), &ctx(&e, "k"))
                .await
                .unwrap();
        }
        assert_eq!(srv.on("/token").len(), 2);
    }

    #[tokio::test]
    async fn token_endpoint_failures() {
        let srv = start(|req, _| match req.path.as_str() {
            "/token" => answer(401, "{\"error\":\"invalid_client\"}"),
            _ => answer(200, ""),
        })
        .await;
        let err = deliver(
            http_spec(format!("{}/api", srv.base), Some("oauth")),
            &oauth(&srv.base),
            &Payload::Json(json!({})),
            Duration::from_secs(5),
        )
        .await
        .unwrap_err();
        assert!(!err.is_retryable(), "{err}");
        assert!(err.to_string().contains("invalid_client"), "{err}");
        assert!(!err.to_string().contains("csecret"));
        assert!(srv.on("/api").is_empty());

        let srv = start(|_, _| answer(503, "")).await;
        let err = deliver(
            http_spec(format!("{}/api", srv.base), Some("oauth")),
            &oauth(&srv.base),
            &Payload::Json(json!({})),
            Duration::from_secs(5),
        )
        .await
        .unwrap_err();
        assert!(err.is_retryable(), "{err}");
    }
}

mod slack {
    use super::server::{answer, start};
    use super::*;

    fn slack(url: String, input: Input) -> TargetImpl {
        TargetImpl::build(
            &target(
                TargetSpec::Slack {
                    url: Secret::from_value(url),
                },
                input,
                Duration::from_secs(5),
            ),
            &BuildContext::new(&BTreeMap::new()),
        )
        .unwrap()
    }

    #[tokio::test]
    async fn messages_are_posted() {
        let srv = start(|_, _| answer(200, "ok")).await;
        let url = format!("{}/services/T0/B0/SECRETPART", srv.base);
        let e = stored();

        let whole = slack(url.clone(), Input::Event);
        let payload = apply(&Input::Event, &e, "enrolled").unwrap();
        assert_eq!(
            whole.deliver(&payload, &ctx(&e, "k")).await.unwrap().status,
            "200"
        );

        let input = Input::Transformer {
            paths: [(
                "name".to_owned(),
                fleetbus_config::JsonPath::parse("$.detail.device.name").unwrap(),
            )]
            .into_iter()
            .collect(),
            template: "<name> enrolled".into(),
        };
        let text = slack(url.clone(), input.clone());
        text.deliver(&apply(&input, &e, "enrolled").unwrap(), &ctx(&e, "k"))
            .await
            .unwrap();

        let blocks =
            json!({"blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "*hi*"}}]});
        let block_target = slack(url.clone(), Input::Constant(blocks.clone()));
        block_target
            .deliver(&Payload::Json(blocks.clone()), &ctx(&e, "k"))
            .await
            .unwrap();

        let bodies: Vec<Value> = srv
            .requests()
            .iter()
            .map(|r| serde_json::from_slice(&r.body).unwrap())
            .collect();
        assert_eq!(
            bodies,
            vec![
                json!({"text": "Device Enrolled from mdm.nanomdm (device/C02XK1JDJG5J)"}),
                json!({"text": "jdoe-mbp enrolled"}),
                blocks,
            ]
        );
        assert!(srv
            .requests()
            .iter()
            .all(|r| r.path == "/services/T0/B0/SECRETPART"
                && r.header("content-type") == Some("application/json")));
    }

    #[tokio::test]
    async fn failures_never_show_the_url() {
        let srv = start(|_, _| answer(400, "invalid_payload")).await;
        let e = stored();
        let err = slack(format!("{}/services/SECRETPART", srv.base), Input::Event)
            .deliver(&Payload::Text("x".into()), &ctx(&e, "k"))
            .await
            .unwrap_err();
        assert!(!err.is_retryable());
        assert!(err.to_string().contains("invalid_payload"));
        assert!(!err.to_string().contains("SECRETPART"), "{err}");

        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let target = slack(format!("http://{addr}/services/SECRETPART"), Input::Event);
        let err = target
            .deliver(&Payload::Text("x".into()), &ctx(&e, "k"))
            .await
            .unwrap_err();
        assert!(err.is_retryable());
        assert!(!err.to_string().contains("SECRETPART"), "{err}");
        assert!(!format!("{target:?}").contains("SECRETPART"));
    }
}

mod email {
    //! The email target against the shared SMTP sink: plain, implicit TLS and
    //! STARTTLS, with AUTH, and the certificate checks.

    use super::smtp::{acceptor, expired_pki, start, test_pki, Mail, Mails, Mode};
    use super::*;
    use fleetbus_config::CaCerts;

    async fn sink(rcpt_reply: &'static str) -> (u16, Mails) {
        start(Mode::Plain, rcpt_reply, None).await
    }

    fn email(port: u16, subject: &str, input: Input) -> TargetImpl {
        email_via(
            Smtp {
                host: "127.0.0.1".into(),
                port,
                tls: Tls::None,
                credentials: None,
                ca: None,
            },
            subject,
            input,
        )
    }

    fn email_via(smtp: Smtp, subject: &str, input: Input) -> TargetImpl {
        TargetImpl::build(
            &target(
                TargetSpec::Email {
                    smtp,
                    from: "fleetbus <bot@example.com>".into(),
                    to: vec!["admin@example.com".into(), "ops@example.com".into()],
                    subject: subject.into(),
                },
                input,
                Duration::from_secs(5),
            ),
            &BuildContext::new(&BTreeMap::new()),
        )
        .unwrap()
    }

    #[tokio::test]
    async fn sends_a_message() {
        let (port, mails) = sink("250 ok\r\n").await;
        let e = stored();
        let t = email(
            port,
            "fleetbus: <detail-type> <$.detail.device.serial>",
            Input::Event,
        );
        let payload = apply(&Input::Event, &e, "enrolled").unwrap();
        let out = t
            .deliver(&payload, &ctx(&e, "ev1:enrolled:t1"))
            .await
            .unwrap();
        assert_eq!(out.status, "smtp 250");
        let mails = mails.lock().unwrap().clone();
        assert_eq!(mails.len(), 1);
        let m = &mails[0];
        assert_message(m);
        assert!(
            m.data.contains("To: admin@example.com, ops@example.com"),
            "{}",
            m.data
        );
    }

    #[tokio::test]
    async fn a_line_break_from_the_event_in_the_subject_is_refused_not_sent() {
        let (port, mails) = sink("250 ok\r\n").await;
        let mut e = stored();
        e.event.detail.insert(
            "device".into(),
            json!({"serial": "C02X\r\nBcc: attacker@example.com", "name": "x"}),
        );
        let t = email(port, "Enrolled <$.detail.device.serial>", Input::Event);
        let payload = apply(&Input::Event, &e, "enrolled").unwrap();
        let err = t.deliver(&payload, &ctx(&e, "k")).await.unwrap_err();
        assert!(!err.is_retryable(), "{err}");
        assert!(err.to_string().contains("line break"), "{err}");
        assert!(mails.lock().unwrap().is_empty(), "nothing was sent");
        // A tab or another control character is only a space.
        e.event
            .detail
            .insert("device".into(), json!({"serial": "C02X\tY", "name": "x"}));
        let payload = apply(&Input::Event, &e, "enrolled").unwrap();
        t.deliver(&payload, &ctx(&e, "k2")).await.unwrap();
        assert!(mails.lock().unwrap()[0]
            .data
            .contains("Subject: Enrolled C02X Y"));
    }

    #[tokio::test]
    async fn refusals_are_classified() {
        let e = stored();
        let (port, _) = sink("550 no such user\r\n").await;
        let err = email(port, "s", Input::Event)
            .deliver(&Payload::Text("x".into()), &ctx(&e, "k"))
            .await
            .unwrap_err();
        assert!(!err.is_retryable(), "{err}");

        let (port, _) = sink("451 try later\r\n").await;
        let err = email(port, "s", Input::Event)
            .deliver(&Payload::Text("x".into()), &ctx(&e, "k"))
            .await
            .unwrap_err();
        assert!(err.is_retryable(), "{err}");

        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let err = email(port, "s", Input::Event)
            .deliver(&Payload::Text("x".into()), &ctx(&e, "k"))
            .await
            .unwrap_err();
        assert!(err.is_retryable(), "{err}");
    }

    /// The CA written to a real file and read the way the config loader does.
    fn ca_file(dir: &std::path::Path, pem: &str) -> CaCerts {
        let path = dir.join("ca.pem");
        std::fs::write(&path, pem).unwrap();
        CaCerts::read(&path).unwrap()
    }

    fn tls_smtp(host: &str, port: u16, tls: Tls, ca: Option<CaCerts>) -> Smtp {
        Smtp {
            host: host.into(),
            port,
            tls,
            credentials: Some(("fleetbus".into(), Secret::from_value("s3cret pass"))),
            ca,
        }
    }

    fn assert_intact(m: &Mail) {
        assert!(m.tls, "not encrypted: {m:?}");
        assert_message(m);
    }

    /// Sender, both recipients, the rendered subject, the Message-ID from the
    /// idempotency key, and the body: the pretty-printed event.
    fn assert_message(m: &Mail) {
        assert!(m.from.contains("bot@example.com"), "{m:?}");
        assert_eq!(m.rcpt.len(), 2);
        assert!(
            m.data
                .contains("Subject: fleetbus: Device Enrolled C02XK1JDJG5J"),
            "{}",
            m.data
        );
        assert!(
            m.data.contains("Message-ID: <ev1.enrolled.t1@fleetbus>"),
            "{}",
            m.data
        );
        assert!(
            m.data.contains("\"detail-type\": \"Device Enrolled\""),
            "{}",
            m.data
        );
    }

    async fn send(smtp: Smtp) -> Result<String, DeliveryError> {
        let e = stored();
        let t = email_via(
            smtp,
            "fleetbus: <detail-type> <$.detail.device.serial>",
            Input::Event,
        );
        let payload = apply(&Input::Event, &e, "enrolled").unwrap();
        t.deliver(&payload, &ctx(&e, "ev1:enrolled:t1"))
            .await
            .map(|d| d.status)
    }

    #[tokio::test]
    async fn implicit_tls_with_a_private_ca() {
        let dir = tempfile::tempdir().unwrap();
        let pki = test_pki(&["localhost", "127.0.0.1"]);
        let (port, mails) = start(Mode::Implicit(pki.acceptor), "250 ok\r\n", Some("LOGIN")).await;
        let ca = ca_file(dir.path(), &pki.ca_pem);
        let status = send(tls_smtp("localhost", port, Tls::Implicit, Some(ca)))
            .await
            .unwrap();
        assert_eq!(status, "smtp 250");
        let mails = mails.lock().unwrap().clone();
        assert_eq!(mails.len(), 1);
        assert_intact(&mails[0]);
        assert_eq!(mails[0].auth.as_deref(), Some("fleetbus:s3cret pass"));
    }

    #[tokio::test]
    async fn starttls_with_a_private_ca() {
        let dir = tempfile::tempdir().unwrap();
        let pki = test_pki(&["localhost", "127.0.0.1"]);
        let (port, mails) = start(Mode::StartTls(pki.acceptor), "250 ok\r\n", Some("PLAIN")).await;
        let ca = ca_file(dir.path(), &pki.ca_pem);
        let smtp = tls_smtp("127.0.0.1", port, Tls::StartTls, Some(ca));
        assert_eq!(send(smtp.clone()).await.unwrap(), "smtp 250");
        // Without credentials the session is the same, minus AUTH.
        let anonymous = Smtp {
            credentials: None,
            ..smtp
        };
        assert_eq!(send(anonymous).await.unwrap(), "smtp 250");

        let mails = mails.lock().unwrap().clone();
        assert_eq!(mails.len(), 2);
        for m in &mails {
            assert_intact(m);
            // EHLO in plain, STARTTLS, EHLO again over TLS.
            assert_eq!(m.ehlo, 2, "{m:?}");
        }
        assert_eq!(mails[0].auth.as_deref(), Some("fleetbus:s3cret pass"));
        assert_eq!(mails[1].auth, None);
    }

    #[tokio::test]
    async fn refused_certificates_fail_permanently_unless_out_of_date() {
        let dir = tempfile::tempdir().unwrap();
        let pki = test_pki(&["localhost", "127.0.0.1"]);
        let implicit = start(Mode::Implicit(pki.acceptor.clone()), "250 ok\r\n", None).await;
        let starttls = start(Mode::StartTls(pki.acceptor), "250 ok\r\n", Some("PLAIN")).await;

        for ((port, mails), tls) in [(&implicit, Tls::Implicit), (&starttls, Tls::StartTls)] {
            // No ca_file: the platform's roots do not know the test CA.
            let err = send(tls_smtp("localhost", *port, tls, None))
                .await
                .unwrap_err();
            assert!(!err.is_retryable(), "{err}");
            let msg = err.to_string();
            assert!(
                msg.contains(&format!(
                    "the TLS certificate of localhost:{port} was refused"
                )) && msg.contains("UnknownIssuer")
                    && msg.contains("set smtp.ca_file"),
                "{msg}"
            );

            // A ca_file with another CA: that file alone is trusted.
            let other = ca_file(dir.path(), &test_pki(&["localhost"]).ca_pem);
            let err = send(tls_smtp("localhost", *port, tls, Some(other)))
                .await
                .unwrap_err();
            assert!(!err.is_retryable(), "{err}");
            let msg = err.to_string();
            assert!(
                msg.contains("UnknownIssuer")
                    && msg.contains(&format!(
                        "trusting only the CAs in {}",
                        dir.path().join("ca.pem").display()
                    )),
                "{msg}"
            );
            assert!(mails.lock().unwrap().is_empty(), "{tls:?}");
        }

        // The right CA, but a certificate for another name.
        let wrong = test_pki(&["mail.example.com"]);
        let (port, mails) = start(Mode::Implicit(wrong.acceptor), "250 ok\r\n", None).await;
        let ca = ca_file(dir.path(), &wrong.ca_pem);
        let err = send(tls_smtp("127.0.0.1", port, Tls::Implicit, Some(ca)))
            .await
            .unwrap_err();
        assert!(!err.is_retryable(), "{err}");
        let msg = err.to_string();
        assert!(
            msg.contains("certificate not valid for name \"127.0.0.1\"")
                && !msg.contains("ca_file"),
            "{msg}"
        );
        assert!(mails.lock().unwrap().is_empty());

        // Trusted and for the right name, but expired: a renewal fixes it, so retry.
        let old = expired_pki(&["localhost"]);
        let (port, mails) = start(Mode::Implicit(old.acceptor), "250 ok\r\n", None).await;
        let ca = ca_file(dir.path(), &old.ca_pem);
        let err = send(tls_smtp("localhost", port, Tls::Implicit, Some(ca)))
            .await
            .unwrap_err();
        assert!(err.is_retryable(), "{err}");
        let msg = err.to_string();
        assert!(
            msg.contains(&format!(
                "the TLS certificate of localhost:{port} was refused"
            )) && msg.contains("expired"),
            "{msg}"
        );
        assert!(mails.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_self_signed_server_certificate_can_be_the_ca_file() {
        let dir = tempfile::tempdir().unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let (port, mails) = start(
            Mode::StartTls(acceptor(cert.der().clone(), &key)),
            "250 ok\r\n",
            Some("PLAIN"),
        )
        .await;
        let ca = ca_file(dir.path(), &cert.pem());
        let status = send(tls_smtp("localhost", port, Tls::StartTls, Some(ca)))
            .await
            .unwrap();
        assert_eq!(status, "smtp 250");
        assert_intact(&mails.lock().unwrap()[0]);
    }
}

mod local {
    //! exec, bus and log built through the public API.

    use super::*;

    #[tokio::test]
    async fn exec_bus_and_log_through_build() {
        let e = stored();
        let dir = tempfile::tempdir().unwrap();
        let none = BTreeMap::new();

        let exec = TargetImpl::build(
            &target(
                TargetSpec::Exec {
                    command: vec![
                        "/bin/sh".into(),
                        "-c".into(),
                        r#"cat > "$OUT"; echo '{"source":"handler","detail-type":"Handled","detail":{"ok":true}}'"#
                            .into(),
                    ],
                    env: [(
                        "OUT".to_owned(),
                        dir.path().join("stdin").to_string_lossy().into_owned(),
                    )]
                    .into_iter()
                    .collect(),
                    emit_events: true,
                },
                Input::Event,
                Duration::from_secs(10),
            ),
            &BuildContext::new(&none),
        )
        .unwrap();
        let payload = apply(&Input::Event, &e, "enrolled").unwrap();
        let out = exec.deliver(&payload, &ctx(&e, "k")).await.unwrap();
        assert_eq!(out.status, "exit 0, 1 events emitted");
        assert_eq!(out.emitted[0].0, "default");
        assert_eq!(out.emitted[0].1.detail_type, "Handled");
        let stdin: Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("stdin")).unwrap()).unwrap();
        assert_eq!(stdin, e.event.to_value());

        let bus = TargetImpl::build(
            &target(
                TargetSpec::Bus {
                    bus: "audit".into(),
                },
                Input::Event,
                Duration::ZERO,
            ),
            &BuildContext::new(&none),
        )
        .unwrap();
        let out = bus.deliver(&payload, &ctx(&e, "k")).await.unwrap();
        assert_eq!(out.emitted[0].0, "audit");
        assert_eq!(out.emitted[0].1.detail, e.event.detail);

        let path = dir.path().join("log/events.jsonl");
        let log = TargetImpl::build(
            &target(
                TargetSpec::Log {
                    path: Some(path.clone()),
                    max_bytes: 1 << 20,
                    keep: 2,
                },
                Input::Event,
                Duration::ZERO,
            ),
            &BuildContext::new(&none),
        )
        .unwrap();
        log.deliver(&payload, &ctx(&e, "k")).await.unwrap();
        let line: Value =
            serde_json::from_str(std::fs::read_to_string(&path).unwrap().trim()).unwrap();
        assert_eq!(line, e.event.to_value());
    }
}

mod gelf {
    //! GELF to real UDP and TCP listeners and an HTTP receiver on loopback.

    use super::*;
    use fleetbus_config::GelfTransport;
    use tokio::io::AsyncReadExt;

    fn gelf(transport: GelfTransport) -> TargetImpl {
        TargetImpl::build(
            &target(
                TargetSpec::Gelf {
                    transport,
                    host: "fleetbus-test".into(),
                    short_message: "<detail-type> on <$.detail.device.serial>".into(),
                    level: 5,
                },
                Input::Event,
                Duration::from_secs(5),
            ),
            &BuildContext::new(&BTreeMap::new()),
        )
        .unwrap()
    }

    fn check(m: &Value, e: &StoredEvent) {
        assert_eq!(m["version"], "1.1");
        assert_eq!(m["host"], "fleetbus-test");
        assert_eq!(m["short_message"], "Device Enrolled on C02XK1JDJG5J");
        assert_eq!(m["level"], 5);
        assert_eq!(m["_event_id"], e.event.id.as_str());
        assert_eq!(m["_detail_type"], "Device Enrolled");
        assert_eq!(m["_resources"], "device/C02XK1JDJG5J");
        assert_eq!(m["_rule"], "enrolled");
        let full: Value = serde_json::from_str(m["full_message"].as_str().unwrap()).unwrap();
        assert_eq!(full["detail"]["device"]["serial"], "C02XK1JDJG5J");
        let ts = m["timestamp"].as_f64().unwrap();
        assert!(
            (ts - e.event.time.unix_timestamp() as f64).abs() < 1.0,
            "{ts}"
        );
    }

    #[tokio::test]
    async fn udp_one_datagram_and_chunks_for_a_large_event() {
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap().to_string();
        let t = gelf(GelfTransport::Udp(addr));
        let e = stored();
        let payload = apply(&Input::Event, &e, "enrolled").unwrap();
        let out = t.deliver(&payload, &ctx(&e, "k")).await.unwrap();
        assert_eq!(out.status, "udp 1 datagram(s)");
        let mut buf = vec![0u8; 65_536];
        let n = socket.recv(&mut buf).await.unwrap();
        check(&serde_json::from_slice(&buf[..n]).unwrap(), &e);

        // An event past one datagram arrives in chunks that reassemble.
        let mut big = stored();
        big.event
            .detail
            .insert("apps".into(), json!(vec!["com.example.app"; 2000]));
        let payload = apply(&Input::Event, &big, "enrolled").unwrap();
        let out = t.deliver(&payload, &ctx(&big, "k2")).await.unwrap();
        let count: usize = out
            .status
            .split_whitespace()
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        assert!(count > 1, "{}", out.status);
        let mut parts = vec![Vec::new(); count];
        for _ in 0..count {
            let n = socket.recv(&mut buf).await.unwrap();
            assert_eq!(&buf[..2], &[0x1e, 0x0f]);
            assert_eq!(buf[11] as usize, count);
            parts[buf[10] as usize] = buf[12..n].to_vec();
        }
        let whole: Vec<u8> = parts.concat();
        let m: Value = serde_json::from_slice(&whole).unwrap();
        assert!(m["full_message"]
            .as_str()
            .unwrap()
            .contains("com.example.app"));
    }

    #[tokio::test]
    async fn tcp_null_terminated_on_one_kept_connection() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let t = gelf(GelfTransport::Tcp(addr));
        let e = stored();
        let payload = apply(&Input::Event, &e, "enrolled").unwrap();
        let accept = tokio::spawn(async move {
            let (mut conn, _) = listener.accept().await.unwrap();
            let mut all = Vec::new();
            let mut buf = [0u8; 4096];
            while all.iter().filter(|b| **b == 0).count() < 2 {
                let n = conn.read(&mut buf).await.unwrap();
                assert!(n > 0, "connection closed early");
                all.extend_from_slice(&buf[..n]);
            }
            all
        });
        t.deliver(&payload, &ctx(&e, "a")).await.unwrap();
        t.deliver(&payload, &ctx(&e, "b")).await.unwrap();
        let all = accept.await.unwrap();
        let messages: Vec<&[u8]> = all.split(|b| *b == 0).filter(|m| !m.is_empty()).collect();
        assert_eq!(messages.len(), 2, "both on the one connection");
        for m in messages {
            check(&serde_json::from_slice(m).unwrap(), &e);
        }
    }

    #[tokio::test]
    async fn http_posts_the_message_and_an_unreachable_input_is_retryable() {
        let received: Arc<Mutex<Vec<Value>>> = Arc::default();
        let r = received.clone();
        let app = axum::Router::new().route(
            "/gelf",
            axum::routing::post(move |body: axum::body::Bytes| {
                let r = r.clone();
                async move {
                    r.lock()
                        .unwrap()
                        .push(serde_json::from_slice(&body).unwrap());
                    axum::http::StatusCode::ACCEPTED
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/gelf", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let e = stored();
        let payload = apply(&Input::Event, &e, "enrolled").unwrap();
        let out = gelf(GelfTransport::Http(url))
            .deliver(&payload, &ctx(&e, "k"))
            .await
            .unwrap();
        assert_eq!(out.status, "http 202");
        check(&received.lock().unwrap()[0], &e);

        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = closed.local_addr().unwrap().to_string();
        drop(closed);
        let err = gelf(GelfTransport::Tcp(addr))
            .deliver(&payload, &ctx(&e, "k"))
            .await
            .unwrap_err();
        assert!(err.is_retryable(), "{err}");
    }
}
