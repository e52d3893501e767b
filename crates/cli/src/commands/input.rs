//! Reading command inputs given as a file path, `-` for stdin, or inline JSON.

use std::io::Read;

use anyhow::Context;

/// Reads `arg` as inline JSON (when it starts with `{` or `[`), stdin (`-`) or a file.
pub fn read_json_arg(arg: &str) -> anyhow::Result<String> {
    let trimmed = arg.trim_start();
    if trimmed.starts_with('{') || trimmed.starts_with('[') {
        return Ok(arg.to_owned());
    }
    read_path_or_stdin(arg)
}

/// Reads a whole file, or stdin when `path` is `-`.
pub fn read_path_or_stdin(path: &str) -> anyhow::Result<String> {
    if path == "-" {
        let mut buf = String::new();
        std::io::stdin()
            .read_to_string(&mut buf)
            .context("reading stdin")?;
        Ok(buf)
    } else {
        std::fs::read_to_string(path).with_context(|| format!("reading {path}"))
    }
}
