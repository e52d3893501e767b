//! One module per command family; each exposes clap `Args` and a `run` returning the
//! process exit code.

pub mod assets;
pub mod backup;
pub mod config;
pub mod dlq;
pub mod events;
pub mod http;
pub mod input;
pub mod mdm;
pub mod output;
pub mod pattern;
pub mod replay;
pub mod serve;
pub mod simulate;
pub mod su;
pub mod ulog;
pub mod validate;
