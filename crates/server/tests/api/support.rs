//! A server for one test: config from YAML text, engine on a SQLite store in a
//! temporary directory, the router on 127.0.0.1:0 on its own runtime thread.

use std::path::Path;

use serde_json::Value;
use tokio_util::sync::CancellationToken;

pub const TOKEN: &str = "api-token-for-tests";
pub const SOURCE_TOKEN: &str = "source-token-for-tests";

/// Sources and rules every test server has; tests add their own after them.
pub const BASE_CONFIG: &str = r#"
server:
  data_dir: data
  api_tokens: ["${file:api-token}"]
sources:
  - name: hooks
    kind: generic
    tokens: ["${file:source-token}"]
    mapping:
      source: $.system
      detail_type: $.kind
      resources: ["$.device"]
  - name: nanomdm
    kind: nanomdm
    tokens: ["${file:source-token}"]
  - name: devlogs
    kind: unified-log
    tokens: ["${file:source-token}"]
rules: []
"#;

pub struct Api {
    pub base: String,
    shutdown: CancellationToken,
    thread: Option<std::thread::JoinHandle<()>>,
    /// Says when the listener has returned (drained or not).
    stopped: std::sync::mpsc::Receiver<()>,
    _dir: tempfile::TempDir,
}

pub struct Options {
    pub config: String,
    pub assets: bool,
    pub limits: fleetbus_server::Limits,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            config: BASE_CONFIG.to_owned(),
            assets: true,
            limits: fleetbus_server::Limits::default(),
        }
    }
}

impl Api {
    pub fn start() -> Api {
        Api::with(Options::default())
    }

    pub fn with(options: Options) -> Api {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("api-token"), TOKEN).unwrap();
        std::fs::write(dir.path().join("source-token"), SOURCE_TOKEN).unwrap();
        let config = fleetbus_config::load_str("fleetbus.yaml", &options.config, dir.path())
            .unwrap_or_else(|e| panic!("test config: {e}"));
        let shutdown = CancellationToken::new();
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let stop = shutdown.clone();
        let data = dir.path().to_owned();
        let (stopped_tx, stopped) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(serve(config, &data, &options, stop, addr_tx, stopped_tx));
            // Connections aborted at the drain deadline must not hold the runtime.
            rt.shutdown_timeout(std::time::Duration::from_secs(1));
        });
        let addr = addr_rx.recv().expect("test server started");
        Api {
            base: format!("http://{addr}"),
            shutdown,
            thread: Some(thread),
            stopped,
            _dir: dir,
        }
    }

    fn agent() -> ureq::Agent {
        ureq::Agent::new_with_config(
            ureq::config::Config::builder()
                .http_status_as_error(false)
                .build(),
        )
    }

    /// Sends a request; `token` goes in as a bearer token. Answers status and JSON
    /// body (`Value::Null` for an empty or non-JSON body).
    pub fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> (u16, Value) {
        let url = format!("{}{}", self.base, path);
        let mut request = ureq::http::Request::builder().method(method).uri(&url);
        if let Some(t) = token {
            request = request.header("authorization", format!("Bearer {t}"));
        }
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let request = request.body(body.to_vec()).unwrap();
        let mut response = Api::agent().run(request).unwrap();
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub fn get(&self, path: &str) -> (u16, Value) {
        self.call("GET", path, Some(TOKEN), &[], b"")
    }

    pub fn post_json(&self, path: &str, body: &Value) -> (u16, Value) {
        self.call(
            "POST",
            path,
            Some(TOKEN),
            &[("content-type", "application/json")],
            body.to_string().as_bytes(),
        )
    }
}

impl Api {
    /// The listener's address, for raw TCP clients.
    pub fn addr(&self) -> &str {
        self.base.strip_prefix("http://").unwrap()
    }

    /// The asset store file the server uses, to open beside it.
    pub fn assets_path(&self) -> std::path::PathBuf {
        self._dir.path().join("assets.db")
    }

    /// Starts shutdown; true when the listener returned within `within`.
    pub fn stop_within(&self, within: std::time::Duration) -> bool {
        self.shutdown.cancel();
        self.stopped.recv_timeout(within).is_ok()
    }
}

impl Drop for Api {
    fn drop(&mut self) {
        self.shutdown.cancel();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The engine and router as `fleetbus serve` builds them, minus signals.
async fn serve(
    config: fleetbus_config::Config,
    data: &Path,
    options: &Options,
    shutdown: CancellationToken,
    addr: std::sync::mpsc::Sender<std::net::SocketAddr>,
    stopped: std::sync::mpsc::Sender<()>,
) {
    let store = fleetbus_engine::store::sqlite::SqliteStore::open(
        &data.join("data"),
        fleetbus_engine::store::StoreOptions::from_config(&config),
    )
    .unwrap();
    let settings = fleetbus_engine::Settings::from_config(&config);
    let engine = fleetbus_engine::Engine::start(&config, std::sync::Arc::new(store), settings)
        .await
        .unwrap();
    let mut state = fleetbus_server::AppState::new(engine.clone(), config, None, None);
    if options.assets {
        let store = fleetbus_assets::AssetStore::open(&data.join("assets.db")).unwrap();
        state = state.with_assets(store.to_async());
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    addr.send(listener.local_addr().unwrap()).unwrap();
    let app = fleetbus_server::router(state);
    fleetbus_server::serve_with(listener, app, shutdown, options.limits)
        .await
        .unwrap();
    let _ = stopped.send(());
    engine.shutdown().await;
}

/// Waits (bounded) until `f` holds; the engine stores and delivers asynchronously.
pub fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..200 {
        if f() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    panic!("timed out waiting for {what}");
}
