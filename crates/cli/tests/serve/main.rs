//! `fleetbus serve` end to end: the real binary, real HTTP receivers, a real SMTP
//! sink and real programs on loopback, a real SQLite file. One file per concern
//! under `serve/`, one behaviour per test.

mod archive;
mod aws_api;
mod backpressure;
mod backup;
mod compliance;
mod console;
mod delivery;
mod eventbridge;
mod fleet;
mod ingest;
mod jamf;
mod lifecycle;
mod limits;
mod mdm_workflows;
mod metrics;
mod okta;
mod os_feed;
mod replay;
mod signed;
mod software_update;
mod support;
