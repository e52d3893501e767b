//! The AWS API's rule and target actions. Rules come from two places: the
//! configuration (read-only here: changing one is AWS's `ManagedRuleException`,
//! and they show `ManagedBy: fleetbus.configuration`) and the API itself
//! (PutRule, PutTargets, ...: kept in the store, in effect at once, surviving
//! restarts). An API target names a configuration target by its ARN.

use axum::http::StatusCode;
use fleetbus_config::{ApiRule, ApiTarget, ApiTransformer, Config, Input, Rule};
use serde_json::{json, Value};

use super::{arn, bus_name, paged, paging, required, string_param, AwsError};
use crate::AppState;

/// Most targets a rule may have, and per PutTargets (EventBridge's limits).
const TARGETS_PER_RULE: usize = 5;
const TARGETS_PER_REQUEST: usize = 10;
/// EventBridge's limits on a rule's fields.
const PATTERN_MAX: usize = 4096;
const DESCRIPTION_MAX: usize = 512;
const SCHEDULE_MAX: usize = 256;

/// Who manages a configuration rule, in DescribeRule's `ManagedBy`.
const MANAGED_BY: &str = "fleetbus.configuration";

pub(super) fn rule_arn(state: &AppState, bus: &str, name: &str) -> String {
    if bus == "default" {
        arn(state, &format!("rule/{name}"))
    } else {
        arn(state, &format!("rule/{bus}/{name}"))
    }
}

/// A rule the API lists: from the configuration, or made through the API.
enum Listed<'a> {
    Config(&'a Rule),
    Api(&'a ApiRule),
}

impl Listed<'_> {
    fn name(&self) -> &str {
        match self {
            Listed::Config(r) => &r.name,
            Listed::Api(r) => &r.name,
        }
    }

    fn bus(&self) -> &str {
        match self {
            Listed::Config(r) => &r.bus,
            Listed::Api(r) => &r.bus,
        }
    }
}

fn rule_value(state: &AppState, rule: &Listed<'_>) -> Value {
    let (enabled, pattern, schedule, description) = match rule {
        Listed::Config(r) => (
            r.enabled,
            r.event_pattern.as_ref().map(Value::to_string),
            r.schedule.as_ref().map(ToString::to_string),
            r.description.clone(),
        ),
        Listed::Api(r) => (
            r.enabled,
            r.event_pattern.clone(),
            r.schedule.clone(),
            r.description.clone(),
        ),
    };
    let mut v = json!({
        "Name": rule.name(),
        "Arn": rule_arn(state, rule.bus(), rule.name()),
        "State": if enabled { "ENABLED" } else { "DISABLED" },
        "EventBusName": rule.bus(),
    });
    if let Some(p) = pattern {
        v["EventPattern"] = json!(p);
    }
    if let Some(s) = schedule {
        v["ScheduleExpression"] = json!(s);
    }
    if let Some(d) = description {
        v["Description"] = json!(d);
    }
    match rule {
        Listed::Config(_) => v["ManagedBy"] = json!(MANAGED_BY),
        Listed::Api(_) => v["CreatedBy"] = json!(state.config().server.account),
    }
    v
}

/// Every rule of `bus`: the configuration's, then the API's, in name order each.
fn with_rules<T>(state: &AppState, f: impl FnOnce(&Config, Vec<Listed<'_>>) -> T) -> T {
    let config = state.config();
    let api = state.engine.api_rules();
    let mut all: Vec<Listed<'_>> = config.rules.iter().map(Listed::Config).collect();
    all.extend(api.iter().map(Listed::Api));
    f(&config, all)
}

fn bus_exists(state: &AppState, bus: &str) -> Result<(), AwsError> {
    if state.config().buses.iter().any(|b| b == bus) {
        Ok(())
    } else {
        Err(AwsError::not_found(format!(
            "Event bus {bus} does not exist."
        )))
    }
}

fn no_rule(name: &str, bus: &str) -> AwsError {
    AwsError::not_found(format!("Rule {name} does not exist on EventBus {bus}."))
}

fn managed(name: &str) -> AwsError {
    AwsError::new(
        StatusCode::BAD_REQUEST,
        "ManagedRuleException",
        format!("Rule {name} is declared in fleetbus's configuration (ManagedBy {MANAGED_BY}): change it there and reload; the API changes only rules it made"),
    )
}

pub(super) fn list_rules(state: &AppState, req: &Value) -> Result<Value, AwsError> {
    let bus = bus_name(req, "EventBusName")?;
    let prefix = string_param(req, "NamePrefix")?.unwrap_or("");
    let (start, limit) = paging(req)?;
    bus_exists(state, &bus)?;
    let rules: Vec<Value> = with_rules(state, |_, all| {
        all.iter()
            .filter(|r| r.bus() == bus && r.name().starts_with(prefix))
            .map(|r| rule_value(state, r))
            .collect()
    });
    Ok(paged("Rules", &rules, start, limit))
}

pub(super) fn describe_rule(state: &AppState, req: &Value) -> Result<Value, AwsError> {
    let name = required(req, "Name")?;
    let bus = bus_name(req, "EventBusName")?;
    with_rules(state, |_, all| {
        all.iter()
            .find(|r| r.name() == name && r.bus() == bus)
            .map(|r| rule_value(state, r))
            .ok_or_else(|| no_rule(name, &bus))
    })
}

fn input_fields(v: &mut Value, input: &Input) {
    match input {
        Input::Event => {}
        Input::Constant(c) => v["Input"] = json!(c.to_string()),
        Input::Path(p) => v["InputPath"] = json!(p.as_str()),
        Input::Transformer { paths, template } => {
            let map: serde_json::Map<String, Value> = paths
                .iter()
                .map(|(k, p)| (k.clone(), json!(p.as_str())))
                .collect();
            v["InputTransformer"] = json!({"InputPathsMap": map, "InputTemplate": template});
        }
    }
}

pub(super) fn list_targets_by_rule(state: &AppState, req: &Value) -> Result<Value, AwsError> {
    let name = required(req, "Rule")?;
    let bus = bus_name(req, "EventBusName")?;
    let (start, limit) = paging(req)?;
    let targets = with_rules(state, |config, all| {
        let rule = all
            .iter()
            .find(|r| r.name() == name && r.bus() == bus)
            .ok_or_else(|| no_rule(name, &bus))?;
        Ok::<_, AwsError>(match rule {
            Listed::Config(r) => r
                .targets
                .iter()
                .map(|t| {
                    let mut v = json!({
                        "Id": t.id,
                        // Not AWS resources: fleetbus names the kind.
                        "Arn": fleetbus_config::target_arn(config, &r.name, t),
                        "RetryPolicy": {
                            "MaximumRetryAttempts": t.retry.maximum_retry_attempts,
                            "MaximumEventAgeInSeconds": t.retry.maximum_event_age.as_secs(),
                        },
                    });
                    input_fields(&mut v, &t.input);
                    v
                })
                .collect::<Vec<_>>(),
            Listed::Api(r) => r.targets.iter().map(api_target_value).collect(),
        })
    })?;
    Ok(paged("Targets", &targets, start, limit))
}

fn api_target_value(t: &ApiTarget) -> Value {
    let mut v = json!({"Id": t.id, "Arn": t.arn});
    if let Some(i) = &t.input {
        v["Input"] = json!(i);
    }
    if let Some(p) = &t.input_path {
        v["InputPath"] = json!(p);
    }
    if let Some(tr) = &t.input_transformer {
        v["InputTransformer"] =
            json!({"InputPathsMap": tr.input_paths_map, "InputTemplate": tr.input_template});
    }
    if t.maximum_retry_attempts.is_some() || t.maximum_event_age_seconds.is_some() {
        let mut r = json!({});
        if let Some(n) = t.maximum_retry_attempts {
            r["MaximumRetryAttempts"] = json!(n);
        }
        if let Some(s) = t.maximum_event_age_seconds {
            r["MaximumEventAgeInSeconds"] = json!(s);
        }
        v["RetryPolicy"] = r;
    }
    v
}

/// `ListRuleNamesByTarget`: the rules (of the bus, `default` unless named) with a
/// target of that ARN.
pub(super) fn list_rule_names_by_target(state: &AppState, req: &Value) -> Result<Value, AwsError> {
    let Some(target) = req["TargetArn"].as_str().filter(|a| !a.is_empty()) else {
        return Err(AwsError::validation(
            "1 validation error detected: Value null at 'targetArn' failed to satisfy constraint: Member must not be null",
        ));
    };
    let bus = bus_name(req, "EventBusName")?;
    let (start, limit) = paging(req)?;
    let names: Vec<Value> = with_rules(state, |config, all| {
        all.iter()
            .filter(|r| r.bus() == bus)
            .filter(|r| match r {
                Listed::Config(r) => r
                    .targets
                    .iter()
                    .any(|t| fleetbus_config::target_arn(config, &r.name, t) == target),
                Listed::Api(r) => r.targets.iter().any(|t| t.arn == target),
            })
            .map(|r| json!(r.name()))
            .collect()
    });
    Ok(paged("RuleNames", &names, start, limit))
}

/// `[\.\-_A-Za-z0-9]+` of at most `max` characters, as EventBridge's names.
fn check_name(value: &str, field: &str, max: usize) -> Result<(), AwsError> {
    let ok = !value.is_empty()
        && value.len() <= max
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    if ok {
        Ok(())
    } else {
        Err(AwsError::validation(format!(
            "1 validation error detected: Value '{value}' at '{field}' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\.\\-_A-Za-z0-9]+ and have length between 1 and {max}"
        )))
    }
}

fn max_len(value: Option<&str>, field: &str, max: usize) -> Result<(), AwsError> {
    match value {
        Some(v) if v.chars().count() > max => Err(AwsError::validation(format!(
            "1 validation error detected: Value at '{field}' failed to satisfy constraint: Member must have length less than or equal to {max}"
        ))),
        _ => Ok(()),
    }
}

/// The API rule `name` of `bus`: a configuration rule is refused, none is 404.
fn api_rule(state: &AppState, name: &str, bus: &str) -> Result<ApiRule, AwsError> {
    if state.config().rules.iter().any(|r| r.name == name) {
        return Err(managed(name));
    }
    state
        .engine
        .api_rules()
        .iter()
        .find(|r| r.name == name && r.bus == bus)
        .cloned()
        .ok_or_else(|| no_rule(name, bus))
}

async fn store(state: &AppState, rule: ApiRule) -> Result<(), AwsError> {
    let config = state.config();
    Ok(state.engine.put_api_rule(&config, rule).await?)
}

/// `PutRule`: creates a rule, or replaces an API rule's settings (keeping its
/// targets), in effect for the next event.
pub(super) async fn put_rule(state: &AppState, req: &Value) -> Result<Value, AwsError> {
    let name = required(req, "Name")?;
    check_name(name, "name", 64)?;
    if state.config().rules.iter().any(|r| r.name == name) {
        return Err(managed(name));
    }
    let bus = bus_name(req, "EventBusName")?;
    bus_exists(state, &bus)?;
    let pattern = string_param(req, "EventPattern")?;
    let schedule = string_param(req, "ScheduleExpression")?;
    let description = string_param(req, "Description")?;
    max_len(pattern, "eventPattern", PATTERN_MAX)?;
    max_len(schedule, "scheduleExpression", SCHEDULE_MAX)?;
    max_len(description, "description", DESCRIPTION_MAX)?;
    if pattern.is_none() && schedule.is_none() {
        return Err(AwsError::validation(
            "Parameter(s) EventPattern or ScheduleExpression must be specified.",
        ));
    }
    if schedule.is_some() && bus != "default" {
        return Err(AwsError::validation(
            "ScheduleExpression is supported only on the default event bus.",
        ));
    }
    if let Some(p) = pattern {
        super::parse_pattern(p)?;
    }
    if let Some(s) = schedule {
        fleetbus_config::Schedule::parse(s).map_err(|e| {
            AwsError::validation(format!(
                "Parameter ScheduleExpression is not valid. Reason: {e}"
            ))
        })?;
    }
    let enabled = match string_param(req, "State")? {
        None | Some("ENABLED") | Some("ENABLED_WITH_ALL_CLOUDTRAIL_MANAGEMENT_EVENTS") => true,
        Some("DISABLED") => false,
        Some(other) => {
            return Err(AwsError::validation(format!(
                "1 validation error detected: Value '{other}' at 'state' failed to satisfy constraint: Member must satisfy enum value set: [ENABLED, DISABLED, ENABLED_WITH_ALL_CLOUDTRAIL_MANAGEMENT_EVENTS]"
            )))
        }
    };
    let targets = match api_rule(state, name, &bus) {
        Ok(existing) => existing.targets,
        Err(e) if e.code == "ResourceNotFoundException" => Vec::new(),
        Err(e) => return Err(e),
    };
    store(
        state,
        ApiRule {
            name: name.to_owned(),
            bus: bus.clone(),
            description: description.map(str::to_owned),
            event_pattern: pattern.map(str::to_owned),
            schedule: schedule.map(str::to_owned),
            enabled,
            targets,
        },
    )
    .await?;
    Ok(json!({ "RuleArn": rule_arn(state, &bus, name) }))
}

/// `DeleteRule`: refused while the rule has targets (as EventBridge), unless
/// `Force`; a rule that does not exist is not an error.
pub(super) async fn delete_rule(state: &AppState, req: &Value) -> Result<Value, AwsError> {
    let name = required(req, "Name")?;
    let bus = bus_name(req, "EventBusName")?;
    let rule = match api_rule(state, name, &bus) {
        Ok(r) => r,
        Err(e) if e.code == "ResourceNotFoundException" => return Ok(json!({})),
        Err(e) => return Err(e),
    };
    if !rule.targets.is_empty() && req["Force"].as_bool() != Some(true) {
        return Err(AwsError::validation(
            "Rule can't be deleted since it has targets.",
        ));
    }
    let config = state.config();
    state.engine.delete_api_rule(&config, &bus, name).await?;
    Ok(json!({}))
}

/// `EnableRule` / `DisableRule`.
pub(super) async fn set_enabled(
    state: &AppState,
    req: &Value,
    enabled: bool,
) -> Result<Value, AwsError> {
    let name = required(req, "Name")?;
    let bus = bus_name(req, "EventBusName")?;
    let mut rule = api_rule(state, name, &bus)?;
    rule.enabled = enabled;
    store(state, rule).await?;
    Ok(json!({}))
}

fn api_target(t: &Value) -> Result<ApiTarget, AwsError> {
    let id = required(t, "Id")?;
    check_name(id, "targets.member.id", 64)?;
    let arn = required(t, "Arn")?;
    max_len(Some(arn), "targets.member.arn", 1600)?;
    let input = string_param(t, "Input")?;
    max_len(input, "targets.member.input", 8192)?;
    let input_path = string_param(t, "InputPath")?;
    max_len(input_path, "targets.member.inputPath", 256)?;
    let input_transformer = match t.get("InputTransformer") {
        None | Some(Value::Null) => None,
        Some(tr) => {
            let template = required(tr, "InputTemplate")?;
            max_len(
                Some(template),
                "targets.member.inputTransformer.inputTemplate",
                8192,
            )?;
            let mut map = std::collections::BTreeMap::new();
            if let Some(m) = tr.get("InputPathsMap").and_then(Value::as_object) {
                for (k, v) in m {
                    let Some(path) = v.as_str() else {
                        return Err(AwsError::validation(format!(
                            "InputPathsMap {k:?}: must be a string"
                        )));
                    };
                    map.insert(k.clone(), path.to_owned());
                }
            }
            Some(ApiTransformer {
                input_paths_map: map,
                input_template: template.to_owned(),
            })
        }
    };
    let retry = t.get("RetryPolicy");
    let number = |field: &str| retry.and_then(|r| r.get(field)).and_then(Value::as_u64);
    let target = ApiTarget {
        id: id.to_owned(),
        arn: arn.to_owned(),
        input: input.map(str::to_owned),
        input_path: input_path.map(str::to_owned),
        input_transformer,
        maximum_retry_attempts: number("MaximumRetryAttempts").map(|n| n.min(185) as u32),
        maximum_event_age_seconds: number("MaximumEventAgeInSeconds"),
    };
    // Checked here so the answer names the target; the engine checks again.
    target
        .input()
        .map_err(|e| AwsError::validation(format!("target {id}: {e}")))?;
    Ok(target)
}

/// `PutTargets`: adds or replaces (by Id) up to 10 targets of an API rule.
pub(super) async fn put_targets(state: &AppState, req: &Value) -> Result<Value, AwsError> {
    let name = required(req, "Rule")?;
    let bus = bus_name(req, "EventBusName")?;
    let Some(list) = req.get("Targets").and_then(Value::as_array) else {
        return Err(AwsError::validation(
            "1 validation error detected: Value null at 'targets' failed to satisfy constraint: Member must not be null",
        ));
    };
    if list.is_empty() || list.len() > TARGETS_PER_REQUEST {
        return Err(AwsError::validation(format!(
            "1 validation error detected: Value at 'targets' failed to satisfy constraint: Member must have length between 1 and {TARGETS_PER_REQUEST}"
        )));
    }
    let mut rule = api_rule(state, name, &bus)?;
    for t in list {
        let t = api_target(t)?;
        rule.targets.retain(|x| x.id != t.id);
        rule.targets.push(t);
    }
    if rule.targets.len() > TARGETS_PER_RULE {
        return Err(AwsError::new(
            StatusCode::BAD_REQUEST,
            "LimitExceededException",
            format!(
                "The requested resource exceeds the maximum number allowed: rule {name} would have {} targets (at most {TARGETS_PER_RULE}).",
                rule.targets.len()
            ),
        ));
    }
    store(state, rule).await?;
    Ok(json!({"FailedEntryCount": 0, "FailedEntries": []}))
}

/// `RemoveTargets`: removes targets of an API rule by Id.
pub(super) async fn remove_targets(state: &AppState, req: &Value) -> Result<Value, AwsError> {
    let name = required(req, "Rule")?;
    let bus = bus_name(req, "EventBusName")?;
    let Some(ids) = req.get("Ids").and_then(Value::as_array) else {
        return Err(AwsError::validation(
            "1 validation error detected: Value null at 'ids' failed to satisfy constraint: Member must not be null",
        ));
    };
    if ids.is_empty() || ids.len() > 100 {
        return Err(AwsError::validation(
            "1 validation error detected: Value at 'ids' failed to satisfy constraint: Member must have length between 1 and 100",
        ));
    }
    let mut rule = api_rule(state, name, &bus)?;
    let ids: Vec<&str> = ids.iter().filter_map(Value::as_str).collect();
    rule.targets.retain(|t| !ids.contains(&t.id.as_str()));
    store(state, rule).await?;
    Ok(json!({"FailedEntryCount": 0, "FailedEntries": []}))
}
