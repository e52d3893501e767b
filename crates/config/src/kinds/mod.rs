//! The target kinds: one module per kind holding its validation, and one table of
//! each kind's name as written, the fields only it takes and its validation. Every
//! list of kind names, every "expected one of" message and every "does not apply
//! to kind" check derives from the table, so adding a kind is a module and one
//! line here (beside its fields in `raw.rs` and its `TargetSpec` variant).

mod assets;
mod bus;
mod email;
mod exec;
mod http;
mod log;
mod mdm;
mod slack;

use std::collections::BTreeMap;

use crate::load::Origin;
use crate::model::{Auth, TargetSpec};
use crate::raw::{RawTarget, TargetKind};
use crate::validate::Ctx;

/// What a kind's validation may check a target against besides its own fields.
pub(crate) struct Env<'a> {
    /// Declared buses.
    pub(crate) buses: &'a [String],
    /// Declared connections.
    pub(crate) connections: &'a BTreeMap<String, Auth>,
    /// The kind's name, for messages.
    pub(crate) name: &'static str,
}

/// Checks a target's kind-specific fields and builds its [`TargetSpec`]; errors
/// go to the context (the spec is then a placeholder that is never used).
pub(crate) type Validate = fn(&RawTarget, &Origin, &Env<'_>, &mut Ctx<'_>) -> TargetSpec;

/// One target kind.
#[derive(Debug)]
pub struct KindSpec {
    pub kind: TargetKind,
    /// As written in `kind:`.
    pub name: &'static str,
    /// The kind-specific fields it takes (the fields every target takes are not
    /// listed).
    pub fields: &'static [&'static str],
    pub(crate) validate: Validate,
}

/// Every target kind, in the order messages list them.
pub static TARGET_KINDS: &[KindSpec] = &[
    KindSpec {
        kind: TargetKind::Http,
        name: "http",
        fields: &["url", "method", "headers", "connection", "timeout"],
        validate: http::validate,
    },
    KindSpec {
        kind: TargetKind::Slack,
        name: "slack",
        fields: &["url", "timeout"],
        validate: slack::validate,
    },
    KindSpec {
        kind: TargetKind::Email,
        name: "email",
        fields: &["smtp", "from", "to", "subject", "timeout"],
        validate: email::validate,
    },
    KindSpec {
        kind: TargetKind::Exec,
        name: "exec",
        fields: &["command", "env", "emit_events", "timeout"],
        validate: exec::validate,
    },
    KindSpec {
        kind: TargetKind::Bus,
        name: "bus",
        fields: &["bus"],
        validate: bus::validate,
    },
    KindSpec {
        kind: TargetKind::Log,
        name: "log",
        fields: &["path", "max_bytes", "keep"],
        validate: log::validate,
    },
    KindSpec {
        kind: TargetKind::Mdm,
        name: "mdm",
        fields: &[
            "server",
            "url",
            "api_key",
            "push",
            "mdm_command",
            "devices",
            "variables",
            "timeout",
        ],
        validate: mdm::validate,
    },
    KindSpec {
        kind: TargetKind::Assets,
        name: "assets",
        fields: &["device", "user"],
        validate: assets::validate,
    },
];

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
    TARGET_KINDS.iter().any(|s| s.fields.contains(&field))
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
        // The JSON Schema lists the same kinds, in the same order.
        let schema = crate::json_schema().to_string();
        assert!(schema.contains(
            &TARGET_KINDS
                .iter()
                .map(|s| format!("\"{}\"", s.name))
                .collect::<Vec<_>>()
                .join(",")
        ));
    }
}
