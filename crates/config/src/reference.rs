//! The configuration reference (`fleetbus config reference`, committed as
//! `docs/configuration.md`), generated from the JSON Schema so it cannot drift from
//! what the loader takes: every key with its type, description, default and an
//! example, the example taken from the shipped `examples/` where they use the key.

use std::collections::BTreeMap;
use std::fmt::Write;

use serde_json::{Map, Value};

/// The shipped example configurations, searched for examples of each key.
const EXAMPLES: &[(&str, &str)] = &[
    (
        "examples/fleetbus.yaml",
        include_str!("../../../examples/fleetbus.yaml"),
    ),
    (
        "examples/mdm-workflows.yaml",
        include_str!("../../../examples/mdm-workflows.yaml"),
    ),
    (
        "examples/software-update.yaml",
        include_str!("../../../examples/software-update.yaml"),
    ),
];

/// Examples for keys the shipped configurations do not use (by the key's path as
/// the reference writes it); a test checks every key ends up with one.
const MORE_EXAMPLES: &[(&str, &str)] = &[
    ("server.aws_access_keys", "[{access_key_id: AKIAFLEETBUS0EXAMPLE, secret_access_key: \"${file:secrets/aws-secret}\"}]"),
    ("server.aws_access_keys[].secret_access_key", "${file:secrets/aws-secret}"),
    ("server.aws_access_keys[].session_token", "${file:secrets/aws-session-token}"),
    ("software_update.bus", "default"),
    ("software_update.max_errors", "3"),
    ("software_update.mdm", "{server: nanomdm, url: \"http://127.0.0.1:9000\", api_key: \"${file:secrets/nanomdm-api-key}\"}"),
    ("software_update.mdm.push", "true"),
    ("software_update.requirements", "[{name: fleet, required_minimum_os_version: latest-minor}]"),
    ("software_update.resend_after", "1d"),
    ("software_update.requirements[].actively_exploited_cves_major_upgrade_sla", "14"),
    ("software_update.requirements[].non_actively_exploited_cves_major_upgrade_sla", "21"),
    ("software_update.requirements[].standard_major_upgrade_sla", "28"),
    ("software_update.requirements[].declarations", "true"),
    ("software_update.requirements[].models", "[\"Mac14,*\", \"Mac15,3\"]"),
    ("software_update.requirements[].targeted_os_versions_rule", "14"),
    ("software_update.requirements[].mdm.server", "micromdm"),
    ("software_update.requirements[].mdm.url", "https://mdm-old.example.com"),
    ("software_update.requirements[].mdm.api_key", "${file:secrets/micromdm-api-key}"),
    ("software_update.requirements[].mdm.push", "true"),
    ("software_update.requirements[].mdm", "{server: micromdm, url: \"https://mdm-old.example.com\", api_key: \"${file:secrets/micromdm-api-key}\"}"),
    ("software_update.requirements[].required_installation_date", "2026-12-20T17:00:00Z"),
    ("server.drain_timeout", "10s"),
    ("server.read_tokens", "[\"${file:secrets/read-token}\"]"),
    ("server.header_timeout", "10s"),
    ("server.request_timeout", "60s"),
    ("server.max_backlog", "100000"),
    ("server.max_body_bytes", "4194304"),
    ("server.max_connections", "4096"),
    ("storage.kind", "sqlite"),
    ("storage.path", "/var/lib/fleetbus"),
    ("connections[].name", "jira"),
    ("connections[].auth", "{bearer: {token: \"${env:JIRA_TOKEN}\"}}"),
    ("connections[].auth.basic.username", "fleetbus"),
    ("connections[].auth.basic.password", "${file:secrets/jira-password}"),
    ("connections[].auth.api_key.value", "${env:OPSGENIE_KEY}"),
    ("connections[].auth.bearer.token", "${env:JIRA_TOKEN}"),
    ("connections[].auth.oauth.client_id", "fleetbus"),
    ("connections[].auth.oauth.client_secret", "${file:secrets/oauth-secret}"),
    ("connections[].auth.oauth.scope", "tickets.write"),
    ("connections[].auth.oauth.token_url", "https://auth.example.com/oauth2/token"),
    ("sources[].bus", "default"),
    ("sources[].hmac", "{secret: \"${file:secrets/github}\", header: X-Hub-Signature-256, prefix: \"sha256=\"}"),
    ("sources[].hmac.algorithm", "sha256"),
    ("sources[].hmac.encoding", "base64"),
    ("sources[].hmac.message", "v0:{timestamp}:{body}"),
    ("sources[].hmac.secret", "${file:secrets/webhook-secret}"),
    ("sources[].hmac.timestamp_header", "X-Slack-Request-Timestamp"),
    ("sources[].hmac.tolerance", "5m"),
    ("sources[].mapping", "{source: $.system, detail_type: $.kind, resources: [\"device/{$.serial}\"]}"),
    ("sources[].mapping.time", "$.occurred_at"),
    ("sources[].idle_polls", "false"),
    ("sources[].device_key", "${file:secrets/ulog-device-key}"),
    ("sources[].ca_file", "apple-root-ca.pem"),
    ("sources[].feed", "gdmf"),
    ("sources[].interval", "1h"),
    ("sources[].url", "https://sofafeed.macadmins.io/v1/macos_data_feed.json"),
    ("rules[].bus", "default"),
    ("rules[].exempt", "{detail: {device: {serial: [C02EXEMPT001]}}}"),
    ("rules[].state", "disabled"),
    ("rules[].targets[].concurrency", "4"),
    ("rules[].targets[].input", "{\"text\": \"something happened\"}"),
    ("rules[].targets[].input_path", "$.detail"),
    ("rules[].targets[].input_transformer", "{input_paths_map: {serial: $.detail.serial}, input_template: '{\"s\": <serial>}'}"),
    ("rules[].targets[].rate_limit", "5"),
    ("rules[].targets[].retry_policy", "{maximum_event_age: 1h, maximum_retry_attempts: 10}"),
    ("rules[].targets[].retry_policy.maximum_retry_attempts", "10"),
    ("rules[].targets[].connection", "jira"),
    ("rules[].targets[].headers", "{X-Fleetbus: \"1\"}"),
    ("rules[].targets[].method", "PUT"),
    ("rules[].targets[].from", "fleetbus <fleetbus@example.com>"),
    ("rules[].targets[].smtp", "{host: smtp.example.com, username: fleetbus, password: \"${file:secrets/smtp}\"}"),
    ("rules[].targets[].subject", "<detail-type> on <$.detail.device.serial>"),
    ("rules[].targets[].to", "[it@example.com]"),
    ("rules[].targets[].smtp.ca_file", "corp-ca.pem"),
    ("rules[].targets[].smtp.host", "smtp.example.com"),
    ("rules[].targets[].smtp.password", "${file:secrets/smtp}"),
    ("rules[].targets[].smtp.port", "587"),
    ("rules[].targets[].smtp.tls", "starttls"),
    ("rules[].targets[].smtp.username", "fleetbus"),
    ("rules[].targets[].command", "[/usr/local/bin/open-ticket, --queue, IT]"),
    ("rules[].targets[].emit_events", "true"),
    ("rules[].targets[].env", "{TICKET_TOKEN: \"${env:TICKET_TOKEN}\"}"),
    ("rules[].targets[].bus", "security"),
    ("rules[].targets[].keep", "5"),
    ("rules[].targets[].host", "fleetbus-prod"),
    ("rules[].targets[].short_message", "<detail-type> on <$.detail.device.serial>"),
    ("rules[].targets[].level", "6"),
    ("rules[].targets[].max_bytes", "104857600"),
    ("rules[].targets[].mdm_command", "{RequestType: DeviceInformation, Queries: [OSVersion]}"),
    ("rules[].targets[].push", "true"),
    ("rules[].targets[].variables", "{message: $.detail.reason}"),
    ("rules[].targets[].devices.all", "true"),
    ("rules[].targets[].devices.enrolled_only", "true"),
    ("rules[].targets[].devices.tag", "engineering"),
    ("rules[].targets[].device", "{serial: $.detail.device.serial, enrollment_state: enrolled}"),
];

/// The top-level sections, in the order a configuration usually has them.
const SECTIONS: &[&str] = &[
    "server",
    "storage",
    "buses",
    "connections",
    "sources",
    "rules",
    "retention",
    "archives",
    "software_update",
];

/// The reference as Markdown.
pub fn reference_markdown() -> String {
    let schema = crate::json_schema();
    let defs = schema["$defs"].as_object().cloned().unwrap_or_default();
    let mut examples = BTreeMap::new();
    for (_, text) in EXAMPLES {
        if let Ok(node) = crate::yaml::parse(text) {
            collect_examples(&node.to_json(), String::new(), &mut examples);
        }
    }
    let r = Ref {
        defs: &defs,
        examples: &examples,
    };
    let mut out = String::new();
    out.push_str(
        "# Configuration reference\n\n\
         Generated from the configuration's JSON Schema by `fleetbus config reference`\n\
         (do not edit by hand: a test compares this file with the command's output).\n\
         Every key below with its type, what it does, its default where it has one, and\n\
         an example, from the shipped `examples/` where they use the key. Durations are\n\
         written `500ms`, `30s`, `10m`, `1h`, `7d`; secrets as `${env:NAME}` or\n\
         `${file:PATH}` (relative to the configuration file). `fleetbus config schema`\n\
         prints the schema itself for editors.\n",
    );
    let props = schema["properties"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    for name in SECTIONS {
        let Some(p) = props.get(*name) else { continue };
        let _ = write!(out, "\n## `{name}`\n\n{}\n", text(p));
        r.section(&mut out, p, name);
    }
    out
}

/// Every scalar value (and short list) in an example, by its path with list
/// indices as `[]`: the first one seen is kept.
fn collect_examples(v: &Value, path: String, out: &mut BTreeMap<String, String>) {
    match v {
        Value::Object(m) => {
            if !path.is_empty() {
                let compact = serde_json::to_string(v).unwrap_or_default();
                if compact.len() <= 80 {
                    out.entry(path.clone()).or_insert(compact);
                }
            }
            for (k, v) in m {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                collect_examples(v, p, out);
            }
        }
        Value::Array(items) => {
            let compact = serde_json::to_string(v).unwrap_or_default();
            if items.iter().all(|i| !i.is_object()) && compact.len() <= 60 {
                out.entry(path.clone()).or_insert(compact);
            }
            for item in items {
                collect_examples(item, format!("{path}[]"), out);
            }
        }
        scalar => {
            let shown = match scalar {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            if shown.len() <= 60 {
                out.entry(path).or_insert(shown);
            }
        }
    }
}

/// A description on one line, safe in a table cell.
fn text(v: &Value) -> String {
    v["description"]
        .as_str()
        .unwrap_or("")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace('|', "\\|")
}

struct Ref<'a> {
    defs: &'a Map<String, Value>,
    examples: &'a BTreeMap<String, String>,
}

impl Ref<'_> {
    /// `v` with a `$ref`, or an `anyOf` of one schema and null, resolved.
    fn resolve<'v>(&'v self, v: &'v Value) -> &'v Value {
        if let Some(r) = v["$ref"].as_str() {
            let name = r.trim_start_matches("#/$defs/");
            return self.defs.get(name).map_or(v, |d| self.resolve(d));
        }
        if let Some(alts) = v["anyOf"].as_array() {
            let real: Vec<&Value> = alts.iter().filter(|a| a["type"] != "null").collect();
            if let [one] = real.as_slice() {
                return self.resolve(one);
            }
        }
        v
    }

    /// A type as the reader writes it.
    fn type_name(&self, v: &Value) -> String {
        let v = self.resolve(v);
        if let Some(c) = v.get("const") {
            return format!("`{c}`");
        }
        if let Some(e) = v["enum"].as_array() {
            let names: Vec<String> = e.iter().map(|x| format!("`{}`", json_text(x))).collect();
            return format!("one of {}", names.join(", "));
        }
        if let Some(alts) = v["oneOf"].as_array() {
            return if alts
                .iter()
                .all(|a| a["properties"]["kind"]["const"].is_string())
            {
                "object (by `kind`)".into()
            } else {
                "object (one of its keys)".into()
            };
        }
        let types: Vec<&str> = match &v["type"] {
            Value::String(t) => vec![t.as_str()],
            Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        };
        let t = types.into_iter().find(|t| *t != "null").unwrap_or("any");
        match t {
            "array" => format!("list of {}", self.type_name(&v["items"])),
            "object" if v["properties"].is_object() => "object".into(),
            "object" => "map".into(),
            other => other.into(),
        }
    }

    /// The object (or list of objects) at `v`, if it has fields to list.
    fn object<'v>(&'v self, v: &'v Value) -> Option<(&'v Value, bool)> {
        let v = self.resolve(v);
        if v["properties"].is_object() || v["oneOf"].is_array() {
            return Some((v, false));
        }
        let items = self.resolve(&v["items"]);
        (items["properties"].is_object() || items["oneOf"].is_array()).then_some((items, true))
    }

    fn section(&self, out: &mut String, v: &Value, path: &str) {
        let Some((obj, list)) = self.object(v) else {
            return;
        };
        let prefix = if list {
            format!("{path}[]")
        } else {
            path.to_owned()
        };
        if let Some(alts) = obj["oneOf"].as_array() {
            if alts
                .iter()
                .all(|a| a["properties"]["kind"]["const"].is_string())
            {
                self.by_kind(out, alts, &prefix);
            } else {
                self.variants(out, alts, &prefix);
            }
        } else {
            self.table(out, obj, &prefix, &[]);
        }
    }

    /// A table of `obj`'s fields but `skip`, then a section for each nested object.
    fn table(&self, out: &mut String, obj: &Value, prefix: &str, skip: &[String]) {
        let Some(props) = obj["properties"].as_object() else {
            return;
        };
        out.push_str("\n| key | type | what | default | example |\n|---|---|---|---|---|\n");
        let mut nested = Vec::new();
        for (k, v) in props {
            if skip.contains(k) {
                continue;
            }
            let path = format!("{prefix}.{k}");
            let default = v
                .get("default")
                .filter(|d| !d.is_null())
                .map(|d| format!("`{}`", json_text(d)))
                .unwrap_or_default();
            let example = self
                .examples
                .get(&path)
                .or_else(|| self.examples.get(&format!("{path}[]")))
                .cloned()
                .or_else(|| described_example(v))
                .or_else(|| {
                    MORE_EXAMPLES
                        .iter()
                        .find(|(p, _)| *p == path)
                        .map(|(_, e)| (*e).to_owned())
                })
                .map(|e| format!("`{}`", e.replace('|', "\\|")))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "| `{k}` | {} | {} | {default} | {example} |",
                self.type_name(v),
                text(v)
            );
            if self.object(v).is_some() {
                nested.push((path, v));
            }
        }
        for (path, v) in nested {
            let _ = write!(out, "\n### `{path}`\n\n{}\n", text(v));
            self.section(out, v, &path);
        }
    }

    /// An enum written as one key naming the variant (`auth: {basic: {...}}`): one
    /// row per variant, then each variant's fields.
    fn variants(&self, out: &mut String, alts: &[Value], prefix: &str) {
        out.push_str("\nOne of:\n\n| key | what |\n|---|---|\n");
        let mut nested = Vec::new();
        for a in alts {
            let Some((key, inner)) = a["properties"].as_object().and_then(|m| m.iter().next())
            else {
                continue;
            };
            let _ = writeln!(out, "| `{key}` | {} |", text(a));
            nested.push((format!("{prefix}.{key}"), inner));
        }
        for (path, v) in nested {
            let _ = writeln!(out, "\n### `{path}`");
            self.section(out, v, &path);
        }
    }

    /// Fields every alternative has, then each `kind`'s own.
    fn by_kind(&self, out: &mut String, alts: &[Value], prefix: &str) {
        let keys = |a: &Value| -> Vec<String> {
            a["properties"]
                .as_object()
                .map(|m| m.keys().cloned().collect())
                .unwrap_or_default()
        };
        let mut common = alts.first().map(keys).unwrap_or_default();
        for a in alts {
            let k = keys(a);
            common.retain(|c| k.contains(c));
        }
        if let Some(first) = alts.first() {
            let mut shared = first.clone();
            if let Some(m) = shared["properties"].as_object_mut() {
                m.retain(|k, _| common.contains(k) && k != "kind");
            }
            out.push_str("\nEvery kind takes:\n");
            self.table(out, &shared, prefix, &[]);
        }
        for a in alts {
            let kind = json_text(&a["properties"]["kind"]["const"]);
            let _ = write!(out, "\n### `{prefix}` of `kind: {kind}`\n");
            let own: Vec<String> = keys(a)
                .into_iter()
                .filter(|k| !common.contains(k) && k != "kind")
                .collect();
            if own.is_empty() {
                out.push_str("\nNo fields of its own.\n");
            } else {
                self.table(out, a, prefix, &common);
            }
        }
    }
}

/// The example a description gives itself (the first `` `...` `` after "e.g."),
/// for keys the shipped examples do not use.
fn described_example(v: &Value) -> Option<String> {
    let d = v["description"].as_str()?;
    let after = &d[d.find("e.g.")? + 4..];
    let start = after.find('`')? + 1;
    let len = after[start..].find('`')?;
    Some(after[start..start + len].to_owned())
}

/// A JSON value as written in YAML: strings bare.
fn json_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_committed_reference_is_the_generated_one() {
        let committed = include_str!("../../../docs/configuration.md");
        assert!(
            committed == reference_markdown(),
            "docs/configuration.md is out of date: run `fleetbus config reference > docs/configuration.md`"
        );
    }

    #[test]
    fn every_section_and_kind_is_in_the_reference_with_examples() {
        let md = reference_markdown();
        for s in SECTIONS {
            assert!(md.contains(&format!("## `{s}`")), "{s}");
        }
        for kind in ["http", "slack", "email", "exec", "mdm", "assets", "gelf"] {
            assert!(
                md.contains(&format!("`rules[].targets[]` of `kind: {kind}`")),
                "{kind}"
            );
        }
        for kind in ["generic", "jamf", "okta", "fleet", "os-feed", "unified-log"] {
            assert!(
                md.contains(&format!("`sources[]` of `kind: {kind}`")),
                "{kind}"
            );
        }
        // A key with its description, and an example from the shipped config.
        let listen = md.lines().find(|l| l.starts_with("| `listen` |")).unwrap();
        assert!(listen.contains("`127.0.0.1:8088`"), "{listen}");
        assert!(md.contains("| `device_key` |"));
        let bare: Vec<&str> = md
            .lines()
            .filter(|l| l.starts_with("| `") && l.ends_with("|  |"))
            .collect();
        assert!(bare.is_empty(), "keys without an example: {bare:#?}");
    }
}
