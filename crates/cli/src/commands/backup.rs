//! `fleetbus backup` and `fleetbus restore`: an online copy of a data directory's
//! stores (the event store, the asset store, the sources' state), consistent while
//! `fleetbus serve` keeps writing, and putting one back while no server runs.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use serde_json::{json, Value};

/// What a backup directory holds, so a restore can tell one from anything else.
const MANIFEST: &str = "fleetbus-backup.json";
const FORMAT: u64 = 1;
const STORE: &str = "fleetbus.db";
const ASSETS: &str = "assets.db";
const SOURCES: &str = "sources";
/// The key escrowed PINs are sealed with (`<data_dir>/pin.key`).
const PIN_KEY: &str = "pin.key";

/// Where the data lives: `--data`, else the configuration's `server.data_dir`.
#[derive(Debug, clap::Args)]
pub struct DataArgs {
    /// Configuration file or directory (for `server.data_dir` and `storage:`).
    #[arg(short, long, default_value = "fleetbus.yaml", env = "FLEETBUS_CONFIG")]
    config: PathBuf,
    /// The data directory (overrides the configuration's).
    #[arg(long, env = "FLEETBUS_DATA")]
    data: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct BackupArgs {
    #[command(flatten)]
    data: DataArgs,
    /// The directory to write the backup to (new, or empty).
    #[arg(long)]
    to: PathBuf,
    /// Copy the PIN key too. Without it the backup's escrowed PINs stay sealed and a
    /// restore needs the original data directory's `pin.key`, kept apart.
    #[arg(long)]
    with_pin_key: bool,
}

#[derive(Debug, clap::Args)]
pub struct RestoreArgs {
    #[command(flatten)]
    data: DataArgs,
    /// A directory `fleetbus backup` wrote.
    #[arg(long)]
    from: PathBuf,
    /// Replace the stores the data directory already holds.
    #[arg(long)]
    force: bool,
}

/// (data directory, event store directory).
fn dirs(args: &DataArgs) -> anyhow::Result<(PathBuf, PathBuf)> {
    let config = fleetbus_config::load(&args.config);
    let (data, storage) = match (&args.data, config) {
        (Some(d), Ok(c)) => (d.clone(), c.storage),
        (Some(d), Err(_)) => (d.clone(), fleetbus_config::Storage::Sqlite { dir: None }),
        (None, Ok(c)) => (c.server.data_dir.clone(), c.storage),
        (None, Err(e)) => bail!(
            "{}: {e}\n(give the data directory with --data, or a configuration that loads)",
            args.config.display()
        ),
    };
    let fleetbus_config::Storage::Sqlite { dir } = storage;
    let store = dir.unwrap_or_else(|| data.clone());
    Ok((data, store))
}

fn copy_tree(from: &Path, to: &Path) -> anyhow::Result<usize> {
    let mut n = 0;
    std::fs::create_dir_all(to).with_context(|| format!("creating {}", to.display()))?;
    for entry in std::fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            n += copy_tree(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)
                .with_context(|| format!("copying {}", entry.path().display()))?;
            n += 1;
        }
    }
    Ok(n)
}

pub fn backup(args: BackupArgs) -> anyhow::Result<ExitCode> {
    let (data, store_dir) = dirs(&args.data)?;
    if args.to.exists()
        && std::fs::read_dir(&args.to)
            .map(|mut d| d.next().is_some())
            .unwrap_or(true)
    {
        bail!(
            "{} exists and is not empty: a backup goes to a new or empty directory",
            args.to.display()
        );
    }
    std::fs::create_dir_all(&args.to).with_context(|| format!("creating {}", args.to.display()))?;
    let mut files = serde_json::Map::new();
    let store_bytes = fleetbus_engine::store::sqlite::backup(&store_dir, &args.to.join(STORE))
        .with_context(|| format!("copying the event store in {}", store_dir.display()))?;
    files.insert(STORE.into(), json!(store_bytes));
    eprintln!("event store: {store_bytes} bytes");
    let assets = data.join(ASSETS);
    if assets.exists() {
        let bytes = fleetbus_assets::backup(&assets, &args.to.join(ASSETS))
            .with_context(|| format!("copying the asset store {}", assets.display()))?;
        files.insert(ASSETS.into(), json!(bytes));
        eprintln!("asset store: {bytes} bytes");
    }
    let key = data.join(PIN_KEY);
    if args.with_pin_key && key.exists() {
        std::fs::copy(&key, args.to.join(PIN_KEY))?;
        files.insert(PIN_KEY.into(), json!(1));
        eprintln!("pin.key: copied (whoever reads this backup can read its escrowed PINs)");
    } else if key.exists() {
        eprintln!(
            "pin.key: not copied; escrowed PINs stay sealed, and a restore needs {} (keep it apart)",
            key.display()
        );
    }
    let sources = data.join(SOURCES);
    if sources.is_dir() {
        let n = copy_tree(&sources, &args.to.join(SOURCES))?;
        files.insert(SOURCES.into(), json!(n));
        eprintln!("sources' state: {n} file(s)");
    }
    let manifest = json!({
        "format": FORMAT,
        "fleetbus": env!("CARGO_PKG_VERSION"),
        "created_at": time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default(),
        "data_dir": data.display().to_string(),
        "files": files,
    });
    std::fs::write(
        args.to.join(MANIFEST),
        serde_json::to_string_pretty(&manifest)? + "\n",
    )?;
    println!("backed up {} to {}", data.display(), args.to.display());
    Ok(ExitCode::SUCCESS)
}

/// A copy of the backup's asset store beside the data directory's, checked to open
/// with the PIN key the data directory will use (the backup's, when it has one): a
/// store whose PINs that key does not open is refused before anything changes.
fn prepare_assets(from: &Path, data: &Path) -> anyhow::Result<PathBuf> {
    let key = if from.join(PIN_KEY).is_file() {
        from.join(PIN_KEY)
    } else if data.join(PIN_KEY).is_file() {
        data.join(PIN_KEY)
    } else {
        bail!(
            "the backup has no {PIN_KEY} and {} has none: copy the original data directory's \
             {PIN_KEY} there first (backups leave it out unless --with-pin-key)",
            data.display()
        );
    };
    let trial = data.join("assets.db.restoring");
    remove_db(&trial)?;
    std::fs::copy(from.join(ASSETS), &trial)?;
    let opened = fleetbus_assets::PinKey::load_or_create(&key)
        .and_then(|k| fleetbus_assets::AssetStore::open_with_key(&trial, k));
    match opened {
        // Closing it checkpoints its WAL into the file.
        Ok(store) => drop(store),
        Err(e) => {
            remove_db(&trial)?;
            bail!(
                "the backup's asset store does not open with {}: {e}",
                key.display()
            );
        }
    }
    Ok(trial)
}

/// Removes a SQLite database with its WAL and shared-memory files.
fn remove_db(path: &Path) -> anyhow::Result<()> {
    for suffix in ["", "-wal", "-shm"] {
        let p = PathBuf::from(format!("{}{suffix}", path.display()));
        match std::fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("removing {}", p.display())),
        }
    }
    Ok(())
}

pub fn restore(args: RestoreArgs) -> anyhow::Result<ExitCode> {
    let manifest: Value = std::fs::read(args.from.join(MANIFEST))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .with_context(|| {
            format!(
                "{} is not a fleetbus backup (no readable {MANIFEST})",
                args.from.display()
            )
        })?;
    if manifest["format"] != FORMAT {
        bail!(
            "{}: backup format {} is not one this fleetbus reads ({FORMAT})",
            args.from.display(),
            manifest["format"]
        );
    }
    if !args.from.join(STORE).is_file() {
        bail!("{}: the backup has no {STORE}", args.from.display());
    }
    let (data, store_dir) = dirs(&args.data)?;
    // Held for the whole restore: a server starting meanwhile waits for nothing, it
    // is refused, and a running one makes the restore refuse.
    let _lock = crate::commands::serve::lock_data_dir(&data)?;
    let existing = store_dir.join(STORE).exists() || data.join(ASSETS).exists();
    if existing && !args.force {
        bail!(
            "{} already holds a store: --force replaces it with the backup",
            data.display()
        );
    }
    // The asset store is checked first (it must open with the PIN key here), so a
    // refused restore changes nothing.
    std::fs::create_dir_all(&data)?;
    let assets = if args.from.join(ASSETS).is_file() {
        Some(prepare_assets(&args.from, &data)?)
    } else {
        None
    };
    std::fs::create_dir_all(&store_dir)?;
    remove_db(&store_dir.join(STORE))?;
    std::fs::copy(args.from.join(STORE), store_dir.join(STORE))
        .with_context(|| format!("writing {}", store_dir.join(STORE).display()))?;
    remove_db(&data.join(ASSETS))?;
    if let Some(trial) = assets {
        std::fs::rename(&trial, data.join(ASSETS))?;
        if args.from.join(PIN_KEY).is_file() {
            std::fs::copy(args.from.join(PIN_KEY), data.join(PIN_KEY))?;
        }
    }
    let sources = data.join(SOURCES);
    if sources.exists() {
        std::fs::remove_dir_all(&sources)
            .with_context(|| format!("removing {}", sources.display()))?;
    }
    if args.from.join(SOURCES).is_dir() {
        copy_tree(&args.from.join(SOURCES), &sources)?;
    }
    println!(
        "restored {} (backup of {}, {}) into {}",
        args.from.display(),
        manifest["data_dir"].as_str().unwrap_or("?"),
        manifest["created_at"].as_str().unwrap_or("?"),
        data.display()
    );
    Ok(ExitCode::SUCCESS)
}
