//! Configuration as code: YAML files (or a directory of them) read in two stages,
//! raw structs that refuse unknown fields, then a validated model. Every error is
//! reported at once with `file:line:col: path: what is wrong (what was expected)`.

mod api_rule;
mod ca;
mod error;
pub mod jsonpath;
pub mod kinds;
mod load;
mod model;
mod raw;
mod reference;
pub mod schedule;
mod secret;
pub mod source_kinds;
mod validate;
mod yaml;

pub use api_rule::{find_target, target_arn, ApiArchive, ApiRule, ApiTarget, ApiTransformer};
pub use ca::CaCerts;
pub use error::{ConfigError, ConfigErrors};
pub use jsonpath::Path as JsonPath;
pub use model::*;
pub use reference::reference_markdown;
pub use schedule::Schedule;
pub use secret::Secret;
pub use validate::{load, load_str, parse_duration, placeholders, AWS_ACTIONS};
pub use yaml::Loc;

/// The JSON Schema of the configuration file, for editors.
/// Targets are one alternative per kind, derived from [`kinds::TARGET_KINDS`].
pub fn json_schema() -> serde_json::Value {
    let mut generator = schemars::SchemaGenerator::default();
    let root = generator.root_schema_for::<raw::RawConfig>();
    let mut schema = serde_json::to_value(root).unwrap_or_default();
    let common = schema["$defs"]["RawTarget"].clone();
    let (targets, mut inlined) = kinds::target_schema(&common, &mut generator);
    let common_source = schema["$defs"]["RawSource"].clone();
    let (sources, more) = source_kinds::source_schema(&common_source, &mut generator);
    inlined.extend(more);
    // The kinds' own definitions (their nested structs) join the root's.
    if let Some(defs) = schema.get_mut("$defs").and_then(|d| d.as_object_mut()) {
        for (name, def) in generator.definitions() {
            defs.entry(name.clone()).or_insert_with(|| def.clone());
        }
        defs.insert("RawTarget".into(), targets);
        defs.insert("RawSource".into(), sources);
        // The kinds' structs are inlined into their alternatives.
        defs.retain(|name, _| !inlined.contains(name));
    }
    schema
}
