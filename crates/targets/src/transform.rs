//! The EventBridge input transformer: what a target receives instead of (or as)
//! the matched event.
//!
//! - [`Input::Event`]: the whole event, as JSON.
//! - [`Input::Constant`]: the configured JSON, as is.
//! - [`Input::Path`] (InputPath): the part of the event a JSONPath selects.
//! - [`Input::Transformer`] (InputPathsMap + InputTemplate): variables taken from
//!   the event by JSONPath, substituted for `<name>` placeholders in a template.
//!
//! Template semantics follow EventBridge's documentation:
//!
//! - A placeholder outside a JSON string is replaced by the value as JSON: strings
//!   get their quotes added, objects and arrays are inserted as is.
//! - A placeholder inside a JSON string (`"state is <state>"`) is replaced by the
//!   value's text. EventBridge strips the internal quotes of an object or array
//!   inserted there so the string stays valid; so does fleetbus. Where EventBridge
//!   inserts a string's characters unescaped (and so can produce invalid JSON when
//!   the value holds a quote), fleetbus JSON-escapes them, so the output is always
//!   valid JSON.
//! - A variable whose path matches nothing "is not created": it becomes `null` in a
//!   JSON value position and the empty string inside a string or a text template.
//!   A path that matches several values (a wildcard) gives the array of them.
//! - Reserved variables: `aws.events.rule-name`, `aws.events.rule-arn`
//!   (`arn:fleetbus:events:<region>:<account>:rule/<name>`, or
//!   `rule/<bus>/<name>` off the default bus, as AWS spells it),
//!   `aws.events.event` (the event without `detail`), `aws.events.event.json`
//!   (the whole event) and `aws.events.event.ingestion-time` (when fleetbus made
//!   the event durable, RFC 3339).
//! - A template that is valid JSON after substitution is a JSON payload. One that
//!   is not is sent as text, with every value inserted as raw text, unless the
//!   template starts with `{` or `[` (JSON was clearly meant): that is a
//!   [`TransformError`], a permanent failure.
//!
//! JSONPaths are EventBridge's dot notation (`$.detail.instance-id`,
//! `$.resources[0]`, `$.detail.*`), which allows dashes and slashes in member
//! names where RFC 9535 does not; such names are rewritten to bracket notation
//! before parsing. Paths in the config are compiled once, at load
//! ([`fleetbus_config::JsonPath`]); only `<$.path>` placeholders of a text
//! template ([`render_text`]) are parsed per delivery.

use std::collections::BTreeMap;

use fleetbus_config::{Input, JsonPath};
use fleetbus_event::StoredEvent;
use serde_json::Value;

/// What a target sends.
#[derive(Debug, Clone, PartialEq)]
pub enum Payload {
    Json(Value),
    Text(String),
}

impl Payload {
    /// The bytes on the wire: compact JSON, or the text as UTF-8.
    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            // Serializing a JSON value cannot fail.
            Payload::Json(v) => serde_json::to_vec(v).unwrap_or_default(),
            Payload::Text(t) => t.as_bytes().to_vec(),
        }
    }

    /// The MIME type of [`Payload::to_bytes`].
    pub fn content_type(&self) -> &'static str {
        match self {
            Payload::Json(_) => "application/json",
            Payload::Text(_) => "text/plain; charset=utf-8",
        }
    }

    /// The payload as human-readable text: a text payload or a JSON string as is,
    /// other JSON pretty-printed.
    pub fn to_text(&self) -> String {
        match self {
            Payload::Text(t) => t.clone(),
            Payload::Json(Value::String(s)) => s.clone(),
            Payload::Json(v) => serde_json::to_string_pretty(v).unwrap_or_default(),
        }
    }
}

/// Why an input could not be built. Permanent: the same event fails the same way.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransformError {
    #[error("input template did not produce valid JSON ({reason}): {snippet}")]
    InvalidJson { reason: String, snippet: String },
}

const RULE_NAME: &str = "aws.events.rule-name";
const RULE_ARN: &str = "aws.events.rule-arn";
const EVENT: &str = "aws.events.event";
const EVENT_JSON: &str = "aws.events.event.json";
const INGESTION_TIME: &str = "aws.events.event.ingestion-time";

/// Escapes text taken from an event for where a target puts it (Slack's `&`, `<`,
/// `>`).
pub type Escape = fn(&str) -> String;

/// [`apply`], with every string an input transformer takes from the event passed
/// through `escape` first (the template's own text is the admin's, left as is).
pub fn apply_escaped(
    input: &Input,
    event: &StoredEvent,
    rule_name: &str,
    escape: Option<Escape>,
) -> Result<Payload, TransformError> {
    match (input, escape) {
        (Input::Transformer { paths, template }, Some(esc)) => {
            let mut vars = variables(paths, event, rule_name)?;
            for v in vars.values_mut().flatten() {
                escape_strings(v, esc);
            }
            render(template, &vars)
        }
        _ => apply(input, event, rule_name),
    }
}

fn escape_strings(v: &mut Value, esc: Escape) {
    match v {
        Value::String(s) => *s = esc(s),
        Value::Array(items) => items.iter_mut().for_each(|i| escape_strings(i, esc)),
        Value::Object(m) => m.values_mut().for_each(|i| escape_strings(i, esc)),
        _ => {}
    }
}

/// Builds the payload a target receives for `event` matched by `rule_name`.
pub fn apply(
    input: &Input,
    event: &StoredEvent,
    rule_name: &str,
) -> Result<Payload, TransformError> {
    match input {
        Input::Event => Ok(Payload::Json(event.event.to_value())),
        Input::Constant(v) => Ok(Payload::Json(v.clone())),
        Input::Path(path) => {
            let doc = event.event.to_value();
            Ok(Payload::Json(path.select(&doc).unwrap_or(Value::Null)))
        }
        Input::Transformer { paths, template } => {
            let vars = variables(paths, event, rule_name)?;
            render(template, &vars)
        }
    }
}

/// Renders a text template (an email subject) against an event: the reserved
/// `aws.events.*` names, the envelope's top-level fields (`<detail-type>`,
/// `<source>`, `<id>`, `<account>`, `<region>`, `<time>`, `<resources>`) and
/// `<$.json.path>` placeholders. Values go in as raw text; unknown names stay
/// as written.
pub fn render_text(template: &str, event: &StoredEvent, rule_name: &str) -> String {
    let doc = event.event.to_value();
    let mut vars = reserved(event, rule_name, &doc);
    if let Value::Object(map) = &doc {
        for (k, v) in map {
            if k != "detail" {
                vars.insert(k.clone(), Some(v.clone()));
            }
        }
    }
    substitute(
        template,
        &|name: &str| {
            if let Some(v) = vars.get(name) {
                return Some(v.clone());
            }
            if name.starts_with('$') {
                return JsonPath::parse(name).ok().map(|p| p.select(&doc));
            }
            None
        },
        Mode::Text,
    )
}

/// Variable values; None for a path that matched nothing.
type Vars = BTreeMap<String, Option<Value>>;

fn reserved(event: &StoredEvent, rule_name: &str, doc: &Value) -> Vars {
    let e = &event.event;
    let arn = if event.meta.bus == "default" || event.meta.bus.is_empty() {
        format!(
            "arn:fleetbus:events:{}:{}:rule/{rule_name}",
            e.region, e.account
        )
    } else {
        format!(
            "arn:fleetbus:events:{}:{}:rule/{}/{rule_name}",
            e.region, e.account, event.meta.bus
        )
    };
    let mut without_detail = doc.clone();
    if let Value::Object(map) = &mut without_detail {
        map.remove("detail");
    }
    let ingested = event
        .meta
        .received_at
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let mut vars = Vars::new();
    vars.insert(RULE_NAME.into(), Some(Value::String(rule_name.to_owned())));
    vars.insert(RULE_ARN.into(), Some(Value::String(arn)));
    vars.insert(EVENT.into(), Some(without_detail));
    vars.insert(EVENT_JSON.into(), Some(doc.clone()));
    vars.insert(INGESTION_TIME.into(), Some(Value::String(ingested)));
    vars
}

fn variables(
    paths: &BTreeMap<String, JsonPath>,
    event: &StoredEvent,
    rule_name: &str,
) -> Result<Vars, TransformError> {
    let doc = event.event.to_value();
    let mut vars = Vars::new();
    for (name, path) in paths {
        vars.insert(name.clone(), path.select(&doc));
    }
    // Reserved names win: EventBridge refuses to let a map redefine them.
    vars.extend(reserved(event, rule_name, &doc));
    Ok(vars)
}

fn render(template: &str, vars: &Vars) -> Result<Payload, TransformError> {
    let lookup = |name: &str| vars.get(name).cloned();
    let json_text = substitute(template, &lookup, Mode::Json);
    match serde_json::from_str::<Value>(&json_text) {
        Ok(v) => Ok(Payload::Json(v)),
        Err(e) => {
            let head = template.trim_start();
            if head.starts_with('{') || head.starts_with('[') {
                Err(TransformError::InvalidJson {
                    reason: e.to_string(),
                    snippet: snippet(&json_text, 200),
                })
            } else {
                Ok(Payload::Text(substitute(template, &lookup, Mode::Text)))
            }
        }
    }
}

/// At most `max` characters of `text`, marked when cut.
fn snippet(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_owned()
    } else {
        let mut s: String = text.chars().take(max).collect();
        s.push('…');
        s
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Placeholders are JSON values outside strings and escaped text inside.
    Json,
    /// Placeholders are raw text everywhere.
    Text,
}

/// Replaces each `<name>` that `lookup` knows (Some(..)); unknown names stay as
/// written. A known name whose value is absent is `Some(None)`.
fn substitute(
    template: &str,
    lookup: &dyn Fn(&str) -> Option<Option<Value>>,
    mode: Mode,
) -> String {
    let mut out = String::with_capacity(template.len());
    let mut in_string = false;
    let mut rest = template;
    while let Some(c) = rest.chars().next() {
        if c == '<' {
            if let Some(end) = rest[1..].find('>') {
                let name = &rest[1..1 + end];
                if let Some(value) = lookup(name) {
                    render_value(&mut out, value.as_ref(), mode, in_string);
                    rest = &rest[end + 2..];
                    continue;
                }
            }
        }
        if mode == Mode::Json {
            if in_string && c == '\\' {
                // Copy an escape pair whole so `\"` does not end the string.
                out.push(c);
                rest = &rest[1..];
                if let Some(next) = rest.chars().next() {
                    out.push(next);
                    rest = &rest[next.len_utf8()..];
                }
                continue;
            }
            if c == '"' {
                in_string = !in_string;
            }
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

fn render_value(out: &mut String, value: Option<&Value>, mode: Mode, in_string: bool) {
    match (mode, in_string, value) {
        (Mode::Json, false, None) => out.push_str("null"),
        (Mode::Json, false, Some(v)) => out.push_str(&compact(v)),
        (_, _, None) => {}
        (Mode::Text, _, Some(Value::String(s))) => out.push_str(s),
        (Mode::Text, _, Some(v)) => out.push_str(&compact(v)),
        (Mode::Json, true, Some(Value::String(s))) => out.push_str(&escape(s)),
        (Mode::Json, true, Some(v @ (Value::Object(_) | Value::Array(_)))) => {
            // EventBridge drops an object's own quotes inside a string.
            out.push_str(&escape(&compact(v).replace('"', "")));
        }
        (Mode::Json, true, Some(v)) => out.push_str(&compact(v)),
    }
}

fn compact(v: &Value) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

/// The JSON-escaped content of a string, without its quotes.
fn escape(s: &str) -> String {
    let quoted = serde_json::to_string(s).unwrap_or_default();
    quoted
        .strip_prefix('"')
        .and_then(|q| q.strip_suffix('"'))
        .unwrap_or_default()
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleetbus_event::{Defaults, Event, Meta};
    use proptest::prelude::*;
    use serde_json::json;

    /// The EC2 example event of the EventBridge user guide.
    fn ec2() -> StoredEvent {
        let event = Event::from_value(
            json!({
                "version": "0",
                "id": "7bf73129-1428-4cd3-a780-95db273d1602",
                "detail-type": "EC2 Instance State-change Notification",
                "source": "aws.ec2",
                "account": "123456789012",
                "time": "2015-11-11T21:29:54Z",
                "region": "us-east-1",
                "resources": ["arn:aws:ec2:us-east-1:123456789012:instance/i-abcd1111"],
                "detail": {"instance-id": "i-0123456789", "state": "RUNNING"}
            }),
            &Defaults::default(),
        )
        .unwrap();
        let mut meta = Meta::ingested("default", "api");
        meta.received_at = time::macros::datetime!(2015-11-11 21:29:55 UTC);
        StoredEvent { event, meta }
    }

    fn transformer(paths: &[(&str, &str)], template: &str) -> Input {
        Input::Transformer {
            paths: paths
                .iter()
                .filter_map(|(k, v)| Some((k.to_string(), JsonPath::parse(v).ok()?)))
                .collect(),
            template: template.to_owned(),
        }
    }

    fn ec2_vars() -> Vec<(&'static str, &'static str)> {
        vec![
            ("instance", "$.detail.instance-id"),
            ("state", "$.detail.state"),
        ]
    }

    fn run(input: &Input) -> Result<Payload, TransformError> {
        apply(input, &ec2(), "example")
    }

    #[test]
    fn whole_event_constant_and_path() {
        let e = ec2();
        assert_eq!(
            run(&Input::Event).unwrap(),
            Payload::Json(e.event.to_value())
        );
        assert_eq!(
            run(&Input::Constant(json!({"a": 1}))).unwrap(),
            Payload::Json(json!({"a": 1}))
        );
        assert_eq!(
            run(&Input::Path(JsonPath::parse("$.detail").unwrap())).unwrap(),
            Payload::Json(json!({"instance-id": "i-0123456789", "state": "RUNNING"}))
        );
        assert_eq!(
            run(&Input::Path(
                JsonPath::parse("$.detail.instance-id").unwrap()
            ))
            .unwrap(),
            Payload::Json(json!("i-0123456789"))
        );
        assert_eq!(
            run(&Input::Path(JsonPath::parse("$.detail.nothing").unwrap())).unwrap(),
            Payload::Json(Value::Null)
        );
        // A path that does not parse never gets this far: the config refuses it.
        assert!(JsonPath::parse("detail").is_err());
    }

    #[test]
    fn aws_example_json_template_quoted_and_unquoted() {
        // From the user guide: variables unquoted, strings get their quotes.
        let out = run(&transformer(
            &ec2_vars(),
            r#"{"instance" : <instance>, "state": <state>}"#,
        ))
        .unwrap();
        assert_eq!(
            out,
            Payload::Json(json!({"instance": "i-0123456789", "state": "RUNNING"}))
        );
        // ...and quoted inside a longer string.
        let out = run(&transformer(
            &ec2_vars(),
            r#"{"instance" : "<instance>", "state": "<state>", "msg": "instance <instance> is in <state>"}"#,
        ))
        .unwrap();
        assert_eq!(
            out,
            Payload::Json(json!({
                "instance": "i-0123456789",
                "state": "RUNNING",
                "msg": "instance i-0123456789 is in RUNNING"
            }))
        );
    }

    #[test]
    fn aws_example_string_templates() {
        // A quoted template is a JSON string, as EventBridge outputs it.
        let out = run(&transformer(
            &ec2_vars(),
            r#""instance <instance> is in <state>""#,
        ))
        .unwrap();
        assert_eq!(
            out,
            Payload::Json(json!("instance i-0123456789 is in RUNNING"))
        );
        assert_eq!(out.to_bytes(), br#""instance i-0123456789 is in RUNNING""#);
        // Escaped quotes inside the string stay escaped.
        let out = run(&transformer(
            &ec2_vars(),
            r#""instance \"<instance>\" is in <state>""#,
        ))
        .unwrap();
        assert_eq!(
            out,
            Payload::Json(json!("instance \"i-0123456789\" is in RUNNING"))
        );
        // An unquoted sentence is plain text.
        let out = run(&transformer(&ec2_vars(), "<instance> is in state <state>")).unwrap();
        assert_eq!(
            out,
            Payload::Text("i-0123456789 is in state RUNNING".into())
        );
        assert_eq!(out.content_type(), "text/plain; charset=utf-8");
    }

    #[test]
    fn api_reference_mixed_example() {
        let out = run(&transformer(
            &ec2_vars(),
            r#"{"myInstance": <instance>,"myStatus": "<instance> is in state \"<state>\""}"#,
        ))
        .unwrap();
        assert_eq!(
            out,
            Payload::Json(json!({
                "myInstance": "i-0123456789",
                "myStatus": "i-0123456789 is in state \"RUNNING\""
            }))
        );
    }

    #[test]
    fn reserved_variables() {
        let out = run(&transformer(
            &[],
            r#"{"ruleArn" : <aws.events.rule-arn>, "ruleName" : <aws.events.rule-name>, "originalEvent" : <aws.events.event.json>, "ingested": <aws.events.event.ingestion-time>, "noDetail": <aws.events.event>}"#,
        ))
        .unwrap();
        let Payload::Json(v) = out else {
            panic!("expected JSON")
        };
        assert_eq!(
            v["ruleArn"],
            "arn:fleetbus:events:us-east-1:123456789012:rule/example"
        );
        assert_eq!(v["ruleName"], "example");
        assert_eq!(v["originalEvent"], ec2().event.to_value());
        assert_eq!(v["ingested"], "2015-11-11T21:29:55Z");
        assert_eq!(v["noDetail"]["source"], "aws.ec2");
        assert!(v["noDetail"].get("detail").is_none());

        let mut e = ec2();
        e.meta.bus = "fleet".into();
        let Payload::Json(v) = apply(&transformer(&[], "<aws.events.rule-arn>"), &e, "r").unwrap()
        else {
            panic!("expected JSON")
        };
        assert_eq!(v, "arn:fleetbus:events:us-east-1:123456789012:rule/fleet/r");
    }

    #[test]
    fn object_inside_a_string_loses_its_quotes() {
        // The guide: "Detail is <detail>" -> EventBridge removes the object's quotes.
        let out = run(&transformer(
            &[("detail", "$.detail")],
            r#"{"message": "Detail is <detail>", "detail": <detail>}"#,
        ))
        .unwrap();
        assert_eq!(
            out,
            Payload::Json(json!({
                "message": "Detail is {instance-id:i-0123456789,state:RUNNING}",
                "detail": {"instance-id": "i-0123456789", "state": "RUNNING"}
            }))
        );
    }

    #[test]
    fn missing_paths_are_null_or_empty() {
        let out = run(&transformer(
            &[("gone", "$.detail.nothing")],
            r#"{"v": <gone>, "s": "x<gone>y"}"#,
        ))
        .unwrap();
        assert_eq!(out, Payload::Json(json!({"v": null, "s": "xy"})));
        let out = run(&transformer(&[("gone", "$.detail.nothing")], "a <gone> b")).unwrap();
        assert_eq!(out, Payload::Text("a  b".into()));
    }

    #[test]
    fn values_with_quotes_are_escaped_inside_strings() {
        let mut e = ec2();
        e.event
            .detail
            .insert("note".into(), json!("say \"hi\"\nback\\slash"));
        let out = apply(
            &transformer(
                &[("note", "$.detail.note")],
                r#"{"n": "<note>", "m": <note>}"#,
            ),
            &e,
            "r",
        )
        .unwrap();
        assert_eq!(
            out,
            Payload::Json(json!({"n": "say \"hi\"\nback\\slash", "m": "say \"hi\"\nback\\slash"}))
        );
    }

    #[test]
    fn numbers_arrays_and_wildcards() {
        let mut e = ec2();
        e.event.detail.insert("count".into(), json!(3));
        e.event
            .detail
            .insert("items".into(), json!([{"n": "a"}, {"n": "b"}]));
        let out = apply(
            &transformer(
                &[
                    ("count", "$.detail.count"),
                    ("names", "$.detail.items[*].n"),
                    ("first", "$.resources[0]"),
                ],
                r#"{"c": <count>, "cs": "<count> items", "names": <names>, "first": <first>}"#,
            ),
            &e,
            "r",
        )
        .unwrap();
        assert_eq!(
            out,
            Payload::Json(json!({
                "c": 3,
                "cs": "3 items",
                "names": ["a", "b"],
                "first": "arn:aws:ec2:us-east-1:123456789012:instance/i-abcd1111"
            }))
        );
    }

    #[test]
    fn broken_json_template_is_an_error() {
        let err = run(&transformer(&ec2_vars(), r#"{"instance": <instance>"#)).unwrap_err();
        assert!(matches!(err, TransformError::InvalidJson { .. }), "{err}");
        assert!(err.to_string().contains("did not produce valid JSON"));
    }

    #[test]
    fn unknown_placeholders_and_angle_brackets_stay() {
        let out = run(&transformer(&ec2_vars(), "a < b and <unknown> <state>")).unwrap();
        assert_eq!(out, Payload::Text("a < b and <unknown> RUNNING".into()));
    }

    #[test]
    fn text_subject_rendering() {
        let e = ec2();
        assert_eq!(
            render_text("fleetbus: <detail-type>", &e, "r"),
            "fleetbus: EC2 Instance State-change Notification"
        );
        assert_eq!(
            render_text(
                "<source> <$.detail.state> <aws.events.rule-name> <nope>",
                &e,
                "r"
            ),
            "aws.ec2 RUNNING r <nope>"
        );
    }

    proptest! {
        #[test]
        fn no_input_panics(template in ".{0,80}", path in ".{0,30}",
                           pieces in proptest::collection::vec(
                               prop_oneof![
                                   Just("<v>".to_owned()), Just("\"".to_owned()),
                                   Just("\\".to_owned()), Just("{".to_owned()),
                                   Just("}".to_owned()), Just("<aws.events.event>".to_owned()),
                                   "[a-z :,<>]{0,5}",
                               ], 0..12)) {
            let e = ec2();
            if let Ok(compiled) = JsonPath::parse(&path) {
                let _ = apply(&Input::Path(compiled), &e, "r");
            }
            let _ = apply(&transformer(&[("v", &path)], &template), &e, "r");
            let built: String = pieces.concat();
            let _ = apply(&transformer(&[("v", "$.detail")], &built), &e, "r");
            let _ = render_text(&built, &e, "r");
            let _ = render_text(&template, &e, "r");
        }

        #[test]
        fn json_templates_always_give_valid_json(s in ".{0,40}") {
            let mut e = ec2();
            e.event.detail.insert("s".into(), Value::String(s.clone()));
            let out = apply(
                &transformer(&[("s", "$.detail.s")], r#"{"a": "<s>", "b": <s>, "c": "x <aws.events.event> y"}"#),
                &e,
                "r",
            ).unwrap();
            let Payload::Json(v) = out else { panic!("expected JSON") };
            prop_assert_eq!(&v["a"], &Value::String(s.clone()));
            prop_assert_eq!(&v["b"], &Value::String(s));
        }
    }
}
