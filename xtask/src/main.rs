//! Project chores that are not part of the product (code generation).
//!
//! `cargo run -p xtask -- gen-mdm-catalog [SCHEMA_DIR]` reads Apple's device-management
//! YAML (default `../shared/apple-device-management`, relative to the repository root)
//! and writes `crates/mdm/catalog/catalog.json` plus the `NOTICE` carrying Apple's
//! MIT copyright notice.

mod mdm_catalog;

use std::path::PathBuf;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let task = args.next().unwrap_or_default();
    match task.as_str() {
        "gen-mdm-catalog" => {
            let root = repo_root();
            let schema = args
                .next()
                .map(PathBuf::from)
                .unwrap_or_else(|| root.join("../shared/apple-device-management"));
            let out = root.join("crates/mdm/catalog");
            let summary = mdm_catalog::generate(&schema, &out)?;
            println!("{summary}");
            Ok(())
        }
        _ => anyhow::bail!("unknown task {task:?} (expected one of: gen-mdm-catalog)"),
    }
}

/// The workspace root: xtask's manifest directory's parent.
fn repo_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(PathBuf::from).unwrap_or(manifest)
}
