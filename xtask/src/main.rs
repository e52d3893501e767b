//! Project chores that are not part of the product (code generation).
fn main() -> anyhow::Result<()> {
    let task = std::env::args().nth(1).unwrap_or_default();
    anyhow::bail!("unknown task {task:?} (expected one of: none yet)")
}
