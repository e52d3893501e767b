//! The HTTP API: ingest endpoints, management API, metrics and health.
