//! `--output text|json`, shared by every command whose output is data.

/// How a command prints its answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    #[default]
    Text,
    Json,
    /// One JSON value per line (event queries; elsewhere the same as json).
    Ndjson,
}
