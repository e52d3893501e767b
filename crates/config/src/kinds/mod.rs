//! The target kinds: one module per kind holding its raw config (the fields only it
//! takes, as a serde struct) and its validation, and one table of each kind's name
//! as written. Every list of kind names, every "expected one of" and "does not apply
//! to kind" message, and the targets' part of the JSON Schema derive from the table
//! and the kinds' structs, so adding a kind is a module and one line here (and its
//! `TargetSpec` variant).

mod assets;
mod bus;
mod email;
mod exec;
mod gelf;
mod http;
mod log;
mod mdm;
mod metrics;
mod slack;
mod software_update;

use std::collections::BTreeMap;

use schemars::{JsonSchema, SchemaGenerator};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::load::Origin;
use crate::model::{Auth, TargetSpec};
use crate::raw::TargetKind;
use crate::validate::Ctx;

/// What a kind's validation may check a target against besides its own fields.
pub(crate) struct Env<'a> {
    /// Declared buses.
    pub(crate) buses: &'a [String],
    /// Declared connections.
    pub(crate) connections: &'a BTreeMap<String, Auth>,
    /// The `software_update:` policy, if the configuration has one.
    pub(crate) software_update: Option<&'a std::sync::Arc<crate::model::SoftwareUpdate>>,
    /// The kind's name, for messages.
    pub(crate) name: &'static str,
}

/// Reads a target's kind-specific fields (a JSON object holding only fields the
/// kind takes), checks them and builds its [`TargetSpec`]; errors go to the context
/// (the spec is then a placeholder that is never used).
pub(crate) type Validate = fn(Value, &Origin, &Env<'_>, &mut Ctx<'_>) -> TargetSpec;

/// One target kind.
#[derive(Debug)]
pub struct KindSpec {
    pub kind: TargetKind,
    /// As written in `kind:`.
    pub name: &'static str,
    /// Whether it takes the common `timeout` field.
    pub timeout: bool,
    /// The names of its own fields, from its raw struct.
    own_fields: fn() -> &'static [&'static str],
    /// The JSON Schema of its own fields.
    schema: fn(&mut SchemaGenerator) -> schemars::Schema,
    pub(crate) validate: Validate,
}

impl KindSpec {
    /// The kind-specific fields it takes (those every target takes are not listed),
    /// in the order its raw struct declares them, `timeout` last where it applies.
    pub fn fields(&self) -> Vec<&'static str> {
        let mut out = (self.own_fields)().to_vec();
        if self.timeout {
            out.push("timeout");
        }
        out
    }
}

/// Every target kind, in the order messages list them.
pub static TARGET_KINDS: &[KindSpec] = &[
    kind::<http::RawHttp>(TargetKind::Http, "http", true, http::validate),
    kind::<slack::RawSlack>(TargetKind::Slack, "slack", true, slack::validate),
    kind::<email::RawEmail>(TargetKind::Email, "email", true, email::validate),
    kind::<exec::RawExec>(TargetKind::Exec, "exec", true, exec::validate),
    kind::<bus::RawBusTarget>(TargetKind::Bus, "bus", false, bus::validate),
    kind::<log::RawLog>(TargetKind::Log, "log", false, log::validate),
    kind::<gelf::RawGelf>(TargetKind::Gelf, "gelf", true, gelf::validate),
    kind::<mdm::RawMdm>(TargetKind::Mdm, "mdm", true, mdm::validate),
    kind::<assets::RawAssets>(TargetKind::Assets, "assets", false, assets::validate),
    kind::<metrics::RawMetrics>(TargetKind::Metrics, "metrics", false, metrics::validate),
    kind::<software_update::RawSoftwareUpdateTarget>(
        TargetKind::SoftwareUpdate,
        "software-update",
        false,
        software_update::validate,
    ),
];

/// A table line for the kind whose own fields are `R`.
const fn kind<R: DeserializeOwned + JsonSchema>(
    kind: TargetKind,
    name: &'static str,
    timeout: bool,
    validate: Validate,
) -> KindSpec {
    KindSpec {
        kind,
        name,
        timeout,
        own_fields: serde_fields::<R>,
        schema: schema_of::<R>,
        validate,
    }
}

/// The JSON Schema of `R`, as a reference into the generator's definitions.
pub(crate) fn schema_of<R: JsonSchema>(generator: &mut SchemaGenerator) -> schemars::Schema {
    generator.subschema_for::<R>()
}

pub(crate) use mdm::server_and_url as mdm_server_and_url;

/// The spec of `kind`.
pub fn spec(kind: TargetKind) -> &'static KindSpec {
    TARGET_KINDS
        .iter()
        .find(|s| s.kind == kind)
        .expect("every TargetKind has a line in TARGET_KINDS (checked by a test)")
}

/// `http, slack, ...`: the kind names for messages.
pub fn names() -> String {
    TARGET_KINDS
        .iter()
        .map(|s| s.name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// True for a field some kind takes and others do not.
pub fn is_kind_field(field: &str) -> bool {
    TARGET_KINDS.iter().any(|s| s.fields().contains(&field))
}

/// Reads a kind's raw struct from its fields, reporting every mistake at its place
/// (relative to the target); what could not be read is left at its default.
pub(crate) fn read<R: DeserializeOwned + Default>(
    fields: Value,
    o: &Origin,
    cx: &mut Ctx<'_>,
) -> R {
    crate::load::deserialize_value(fields, o, cx.errors).unwrap_or_default()
}

/// The field names serde reads `R` from, in declaration order: asked of serde
/// itself (a deserializer that only records what `deserialize_struct` is given),
/// so no list is kept by hand beside the struct.
pub(crate) fn serde_fields<R: DeserializeOwned>() -> &'static [&'static str] {
    struct Probe(Option<&'static [&'static str]>);
    #[derive(Debug)]
    struct Done;
    impl std::fmt::Display for Done {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("field probe")
        }
    }
    impl std::error::Error for Done {}
    impl serde::de::Error for Done {
        fn custom<T: std::fmt::Display>(_: T) -> Self {
            Done
        }
    }
    impl<'de> serde::Deserializer<'de> for &mut Probe {
        type Error = Done;
        fn deserialize_any<V: serde::de::Visitor<'de>>(self, _: V) -> Result<V::Value, Done> {
            Err(Done)
        }
        fn deserialize_struct<V: serde::de::Visitor<'de>>(
            self,
            _name: &'static str,
            fields: &'static [&'static str],
            _visitor: V,
        ) -> Result<V::Value, Done> {
            self.0 = Some(fields);
            Err(Done)
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
            bytes byte_buf option unit unit_struct newtype_struct seq tuple
            tuple_struct map enum identifier ignored_any
        }
    }
    let mut probe = Probe(None);
    let _ = R::deserialize(&mut probe);
    probe.0.unwrap_or(&[])
}

/// The `targets` items of the JSON Schema: one alternative per kind, each with the
/// fields every target takes (`common`, an object schema) and the kind's own, and
/// nothing else. Also returns the definitions inlined (the kinds' structs).
pub(crate) fn target_schema(
    common: &Value,
    generator: &mut SchemaGenerator,
) -> (Value, Vec<String>) {
    let entries: Vec<(&str, schemars::Schema)> = TARGET_KINDS
        .iter()
        .map(|s| (s.name, (s.schema)(generator)))
        .collect();
    alternatives(common, generator, entries, |name, props| {
        if TARGET_KINDS.iter().any(|s| s.name == name && !s.timeout) {
            props.remove("timeout");
        }
    })
}

/// One `oneOf` alternative per `(kind name, schema of its own fields)`: the common
/// fields, `kind` fixed to the name, the kind's own, nothing else (`adjust` may
/// take common fields away). Returns it and the definitions it inlined.
pub(crate) fn alternatives(
    common: &Value,
    generator: &SchemaGenerator,
    entries: Vec<(&str, schemars::Schema)>,
    adjust: impl Fn(&str, &mut serde_json::Map<String, Value>),
) -> (Value, Vec<String>) {
    let mut inlined = Vec::new();
    let common_props = common
        .get("properties")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let alternatives: Vec<Value> = entries
        .into_iter()
        .map(|(name, own)| {
            let (own, def) = resolve(own.as_value(), generator);
            inlined.extend(def);
            let mut props = common_props.clone();
            adjust(name, &mut props);
            props.insert("kind".into(), serde_json::json!({ "const": name }));
            if let Some(p) = own.get("properties").and_then(Value::as_object) {
                props.extend(p.clone());
            }
            let mut required: Vec<Value> = common
                .get("required")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            if !required.contains(&Value::from("kind")) {
                required.push(Value::from("kind"));
            }
            if let Some(r) = own.get("required").and_then(Value::as_array) {
                required.extend(r.iter().cloned());
            }
            serde_json::json!({
                "title": format!("kind: {name}"),
                "type": "object",
                "properties": props,
                "required": required,
                "additionalProperties": false,
            })
        })
        .collect();
    let mut out = serde_json::json!({ "oneOf": alternatives });
    if let Some(d) = common.get("description") {
        out["description"] = d.clone();
    }
    (out, inlined)
}

/// A `$ref` into the generator's definitions, followed (a kind's struct is
/// inlined into its alternative; what it refers to stays a definition).
fn resolve(schema: &Value, generator: &SchemaGenerator) -> (Value, Option<String>) {
    let Some(name) = schema
        .get("$ref")
        .and_then(Value::as_str)
        .and_then(|r| r.rsplit('/').next())
    else {
        return (schema.clone(), None);
    };
    match generator.definitions().get(name) {
        Some(def) => (def.clone(), Some(name.to_owned())),
        None => (schema.clone(), None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_one_line_and_its_name_is_how_serde_reads_it() {
        for s in TARGET_KINDS {
            let read: TargetKind = serde_json::from_value(serde_json::json!(s.name)).unwrap();
            assert_eq!(read, s.kind, "{}", s.name);
            assert_eq!(
                TARGET_KINDS.iter().filter(|o| o.kind == s.kind).count(),
                1,
                "{}",
                s.name
            );
        }
    }

    #[test]
    fn fields_come_from_the_kinds_structs() {
        assert_eq!(
            spec(TargetKind::Http).fields(),
            ["url", "method", "headers", "connection", "timeout"]
        );
        assert_eq!(
            spec(TargetKind::Log).fields(),
            ["path", "max_bytes", "keep"]
        );
        assert!(is_kind_field("mdm_command"));
        assert!(!is_kind_field("input_path"));
    }

    #[test]
    fn the_schema_has_one_alternative_per_kind_with_its_fields_only() {
        let schema = crate::json_schema();
        let target = &schema["$defs"]["RawTarget"];
        let alts = target["oneOf"]
            .as_array()
            .expect("targets are oneOf the kinds");
        assert_eq!(alts.len(), TARGET_KINDS.len());
        for (alt, spec) in alts.iter().zip(TARGET_KINDS) {
            assert_eq!(alt["properties"]["kind"]["const"], spec.name);
            assert_eq!(alt["additionalProperties"], false);
            let props = alt["properties"].as_object().unwrap();
            for f in spec.fields() {
                assert!(props.contains_key(f), "{} lacks {f}", spec.name);
            }
            for other in TARGET_KINDS.iter().filter(|o| o.kind != spec.kind) {
                for f in other.fields() {
                    if !spec.fields().contains(&f) {
                        assert!(!props.contains_key(f), "{} has {f}", spec.name);
                    }
                }
            }
            assert!(props.contains_key("input_transformer"), "{}", spec.name);
        }
        // References inside a kind (the email target's smtp) resolve.
        let email = &alts[2]["properties"]["smtp"];
        let r = email.to_string();
        assert!(r.contains("RawSmtp"), "{r}");
        assert!(schema["$defs"]["RawSmtp"].is_object());
    }
}
