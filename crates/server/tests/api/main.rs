//! The HTTP API in process: the real router on a loopback listener, a real SQLite
//! store in a temporary directory, a real HTTP client. One file per concern.

mod assets;
mod auth;
mod ingest;
mod listen;
mod manage;
mod support;
