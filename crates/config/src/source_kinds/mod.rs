//! The source kinds' configuration: one module per kind holding its raw struct
//! (the fields only it takes) and its validation, and one table of every kind.
//! Like the target kinds ([`crate::kinds`]), every "does not apply to kind" and
//! "expected one of" message and the sources' `oneOf` in the JSON Schema derive
//! from the table, so a source kind's configuration is a module and one line here
//! (and its `SourceKind` variant).

mod generic;
mod mdm;
mod os_feed;
mod unified_log;

use schemars::{JsonSchema, SchemaGenerator};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;

use crate::kinds::{schema_of, serde_fields};
use crate::load::Origin;
use crate::model::{Mapping, OsFeed};
use crate::raw::SourceKind;
use crate::validate::Ctx;

/// What a kind's own fields add to a source.
#[derive(Debug, Default)]
pub(crate) struct SourceParts {
    pub(crate) idle_polls: bool,
    pub(crate) mapping: Option<Mapping>,
    pub(crate) os_feed: Option<OsFeed>,
    pub(crate) device_key: Option<crate::Secret>,
}

/// Reads a source's kind-specific fields (only fields the kind takes) and checks
/// them; errors go to the context.
pub(crate) type Validate = fn(Value, &Origin, &mut Ctx<'_>) -> SourceParts;

/// One source kind.
#[derive(Debug)]
pub struct SourceKindSpec {
    pub kind: SourceKind,
    /// As written in `kind:`.
    pub name: &'static str,
    /// Whether it takes requests that need a token (a polling kind does not).
    pub needs_token: bool,
    own_fields: fn() -> &'static [&'static str],
    schema: fn(&mut SchemaGenerator) -> schemars::Schema,
    pub(crate) validate: Validate,
}

impl SourceKindSpec {
    /// The fields only this kind takes.
    pub fn fields(&self) -> &'static [&'static str] {
        (self.own_fields)()
    }
}

/// A kind with no fields of its own.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NoFields {}

fn no_fields(_: Value, _: &Origin, _: &mut Ctx<'_>) -> SourceParts {
    SourceParts::default()
}

const fn kind<R: DeserializeOwned + JsonSchema>(
    kind: SourceKind,
    name: &'static str,
    needs_token: bool,
    validate: Validate,
) -> SourceKindSpec {
    SourceKindSpec {
        kind,
        name,
        needs_token,
        own_fields: serde_fields::<R>,
        schema: schema_of::<R>,
        validate,
    }
}

/// Every source kind, in the order messages list them.
pub static SOURCE_KINDS: &[SourceKindSpec] = &[
    kind::<generic::RawGeneric>(SourceKind::Generic, "generic", true, generic::validate),
    kind::<mdm::RawMdmSource>(SourceKind::Nanomdm, "nanomdm", true, mdm::validate),
    kind::<mdm::RawMdmSource>(SourceKind::Micromdm, "micromdm", true, mdm::validate),
    kind::<unified_log::RawUnifiedLog>(
        SourceKind::UnifiedLog,
        "unified-log",
        true,
        unified_log::validate,
    ),
    kind::<NoFields>(SourceKind::Jamf, "jamf", true, no_fields),
    kind::<NoFields>(SourceKind::Okta, "okta", true, no_fields),
    kind::<NoFields>(SourceKind::Fleet, "fleet", true, no_fields),
    kind::<NoFields>(SourceKind::Eventbridge, "eventbridge", true, no_fields),
    kind::<os_feed::RawOsFeed>(SourceKind::OsFeed, "os-feed", false, os_feed::validate),
];

/// The spec of `kind`.
pub fn spec(kind: SourceKind) -> &'static SourceKindSpec {
    SOURCE_KINDS
        .iter()
        .find(|s| s.kind == kind)
        .expect("every SourceKind has a line in SOURCE_KINDS (checked by a test)")
}

/// True for a field some source kind takes and others do not.
pub fn is_kind_field(field: &str) -> bool {
    SOURCE_KINDS.iter().any(|s| s.fields().contains(&field))
}

/// The `sources` items of the JSON Schema: one alternative per kind.
pub(crate) fn source_schema(
    common: &Value,
    generator: &mut SchemaGenerator,
) -> (Value, Vec<String>) {
    let entries: Vec<(&str, schemars::Schema)> = SOURCE_KINDS
        .iter()
        .map(|s| (s.name, (s.schema)(generator)))
        .collect();
    crate::kinds::alternatives(common, generator, entries, |_, _| {})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_source_kind_has_one_line_named_as_serde_reads_it() {
        for s in SOURCE_KINDS {
            let read: SourceKind = serde_json::from_value(serde_json::json!(s.name)).unwrap();
            assert_eq!(read, s.kind, "{}", s.name);
            assert_eq!(SOURCE_KINDS.iter().filter(|o| o.kind == s.kind).count(), 1);
        }
        assert_eq!(
            spec(SourceKind::OsFeed).fields(),
            ["url", "feed", "interval", "ca_file"]
        );
        assert_eq!(spec(SourceKind::Nanomdm).fields(), ["idle_polls"]);
        assert!(spec(SourceKind::Jamf).fields().is_empty());
        assert!(is_kind_field("mapping") && !is_kind_field("tokens"));
    }

    #[test]
    fn the_schema_has_one_alternative_per_source_kind() {
        let schema = crate::json_schema();
        let alts = schema["$defs"]["RawSource"]["oneOf"]
            .as_array()
            .expect("oneOf");
        assert_eq!(alts.len(), SOURCE_KINDS.len());
        for (alt, spec) in alts.iter().zip(SOURCE_KINDS) {
            assert_eq!(alt["properties"]["kind"]["const"], spec.name);
            for f in spec.fields() {
                assert!(
                    alt["properties"].get(*f).is_some(),
                    "{} lacks {f}",
                    spec.name
                );
            }
            assert!(alt["properties"].get("tokens").is_some());
        }
    }
}
