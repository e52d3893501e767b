//! `fleetbus serve`: the engine and its HTTP API on the embedded store.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use fleetbus_engine::{Engine, Settings};
use fleetbus_server::AppState;
use tokio_util::sync::CancellationToken;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Configuration file or directory of YAML files.
    #[arg(short, long, default_value = "fleetbus.yaml", env = "FLEETBUS_CONFIG")]
    config: PathBuf,
    /// Address to listen on (overrides `server.listen`; default 127.0.0.1:8088).
    #[arg(long, env = "FLEETBUS_LISTEN")]
    listen: Option<SocketAddr>,
    /// Data directory for the embedded store (overrides `server.data_dir`; default ./fleetbus-data).
    #[arg(long, env = "FLEETBUS_DATA")]
    data: Option<PathBuf>,
    /// Log as JSON lines instead of human-readable text.
    #[arg(long)]
    log_json: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    init_tracing(args.log_json);
    let config = match fleetbus_config::load(&args.config) {
        Ok(c) => c,
        Err(errors) => {
            eprintln!("{errors}");
            eprintln!(
                "{}: {} error(s); not starting",
                args.config.display(),
                errors.0.len()
            );
            return Ok(ExitCode::from(crate::EXIT_ERROR));
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(serve(args, config))
}

fn init_tracing(json: bool) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("FLEETBUS_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    // Colour only for a person at a terminal: a journal or a file gets plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn serve(args: Args, config: fleetbus_config::Config) -> anyhow::Result<ExitCode> {
    let listen = args.listen.unwrap_or(config.server.listen);
    let data_dir = args
        .data
        .clone()
        .unwrap_or_else(|| config.server.data_dir.clone());
    if config.server.api_tokens.is_empty() {
        tracing::warn!(
            "server.api_tokens is empty: the management API and /v1/events refuse every request"
        );
    }
    // Held until the process exits: the OS releases it even after kill -9.
    let _lock = lock_data_dir(&data_dir)?;
    let metrics = metrics_exporter_prometheus::PrometheusBuilder::new()
        .set_buckets(&[
            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
        ])
        .ok()
        .and_then(|b| b.install_recorder().ok());
    if metrics.is_some() {
        // `# HELP` lines for every metric, from the one catalogue.
        fleetbus_telemetry::describe();
    }
    let store = fleetbus_engine::store::open(
        &config.storage,
        &data_dir,
        fleetbus_engine::store::StoreOptions::from_config(&config),
    )
    .context("opening the store")?;
    let assets_path = data_dir.join("assets.db");
    // One facade for the targets and the API: its bound on blocking calls is shared.
    let assets = fleetbus_assets::AssetStore::open(&assets_path)
        .with_context(|| format!("opening the asset store {}", assets_path.display()))?
        .to_async();
    let mut settings = Settings::from_config(&config);
    settings.assets = Some(assets.clone());
    let engine = Engine::start(&config, store, settings).await?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("listening on {listen}"))?;
    let local = listener.local_addr()?;
    tracing::info!(listen = %local, data = %data_dir.display(), rules = config.rules.len(), sources = config.sources.len(), "fleetbus serving");
    // A line for scripts and tests that start fleetbus on port 0.
    println!("listening on {local}");
    let state = AppState::new(engine.clone(), config, Some(args.config.clone()), metrics)
        .with_assets(assets);
    let shutdown = CancellationToken::new();
    let signals = tokio::spawn(handle_signals(state.clone(), shutdown.clone()));
    let source_tasks = fleetbus_server::sources::start(&state, &shutdown);
    // The API with the web console under /ui/.
    let app = fleetbus_server::router_with(
        state.clone(),
        fleetbus_console::routes(state.clone(), shutdown.clone()),
    );
    fleetbus_server::serve_router(listener, app, state, shutdown.clone())
        .await
        .context("serving HTTP")?;
    for task in source_tasks {
        let _ = task.await;
    }
    tracing::info!("intake stopped; finishing deliveries in flight");
    engine.shutdown().await;
    signals.abort();
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}

/// Takes an exclusive lock on `<data_dir>/fleetbus.lock` (creating the directory),
/// so a second `fleetbus serve` on the same data cannot write and deliver beside the
/// first. The holder's pid is written into the file for the error message.
pub(crate) fn lock_data_dir(data_dir: &Path) -> anyhow::Result<std::fs::File> {
    use std::io::{Read, Seek, Write};
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating the data directory {}", data_dir.display()))?;
    let path = data_dir.join("fleetbus.lock");
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim();
            anyhow::bail!(
                "data directory {} is in use by another fleetbus serve (pid {}); \
                 one process per data directory",
                data_dir.display(),
                if holder.is_empty() { "unknown" } else { holder }
            );
        }
        Err(std::fs::TryLockError::Error(e)) => {
            return Err(e).with_context(|| format!("locking {}", path.display()));
        }
    }
    file.set_len(0)?;
    file.rewind()?;
    writeln!(file, "{}", std::process::id())?;
    file.flush()?;
    Ok(file)
}

async fn handle_signals(state: AppState, shutdown: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) else {
        tracing::error!("cannot install signal handlers");
        return;
    };
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = hup.recv() => match state.reload() {
                Ok(rules) => tracing::info!(rules, "reloaded on SIGHUP"),
                Err(e) => tracing::error!(errors = %e, "reload refused; the running configuration stays"),
            },
        }
    }
    tracing::info!("shutdown requested; a second SIGTERM or SIGINT stops at once");
    shutdown.cancel();
    // Every acknowledged event is already committed, so stopping now loses nothing
    // acknowledged: requests in flight go unanswered and their senders retry, and
    // deliveries in flight run again from the store at the next start.
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    tracing::warn!("second signal: exiting without waiting for requests and deliveries in flight");
    std::process::exit(130);
}
