//! Configuration as code: YAML files (or a directory of them) read in two stages,
//! raw structs that refuse unknown fields, then a validated model. Every error is
//! reported at once with `file:line:col: path: what is wrong (what was expected)`.

mod ca;
mod error;
pub mod jsonpath;
pub mod kinds;
mod load;
mod model;
mod raw;
pub mod schedule;
mod secret;
mod validate;
mod yaml;

pub use ca::CaCerts;
pub use error::{ConfigError, ConfigErrors};
pub use jsonpath::Path as JsonPath;
pub use model::*;
pub use schedule::Schedule;
pub use secret::Secret;
pub use validate::{load, load_str, parse_duration, placeholders};
pub use yaml::Loc;

/// The JSON Schema of the configuration file, for editors.
pub fn json_schema() -> serde_json::Value {
    let schema = schemars::schema_for!(raw::RawConfig);
    serde_json::to_value(schema).unwrap_or_default()
}
