//! Rules made through the AWS API (PutRule, PutTargets) rather than written in a
//! file: the document the store keeps for each, and how it becomes a [`Rule`]
//! beside the configuration's. An API target names a target of the configuration
//! by its ARN (`arn:fleetbus:<kind>:<region>:<account>:target/<rule>/<id>`, as
//! ListTargetsByRule gives it) and takes that target's kind and settings, with its
//! own Id, input (Input, InputPath or InputTransformer) and retry policy.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::jsonpath::Path as JsonPath;
use crate::model::{Config, Input, RetryPolicy, Rule, Target};
use crate::schedule::Schedule;

/// A rule as the API made it (kept as JSON by the store).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiRule {
    pub name: String,
    pub bus: String,
    #[serde(default)]
    pub description: Option<String>,
    /// The EventBridge pattern as the API took it (JSON text).
    #[serde(default)]
    pub event_pattern: Option<String>,
    #[serde(default)]
    pub schedule: Option<String>,
    pub enabled: bool,
    #[serde(default)]
    pub targets: Vec<ApiTarget>,
}

/// A target of an [`ApiRule`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiTarget {
    pub id: String,
    pub arn: String,
    #[serde(default)]
    pub input: Option<String>,
    #[serde(default)]
    pub input_path: Option<String>,
    #[serde(default)]
    pub input_transformer: Option<ApiTransformer>,
    #[serde(default)]
    pub maximum_retry_attempts: Option<u32>,
    #[serde(default)]
    pub maximum_event_age_seconds: Option<u64>,
}

/// EventBridge's InputTransformer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiTransformer {
    #[serde(default)]
    pub input_paths_map: BTreeMap<String, String>,
    pub input_template: String,
}

/// The ARN a configuration target is named by in the API.
pub fn target_arn(config: &Config, rule: &str, t: &Target) -> String {
    let kind = crate::kinds::spec(t.spec.kind()).name;
    format!(
        "arn:fleetbus:{kind}:{}:{}:target/{rule}/{}",
        config.server.region, config.server.account, t.id
    )
}

/// The configuration's target named by `arn`, if any.
pub fn find_target<'a>(config: &'a Config, arn: &str) -> Option<&'a Target> {
    config
        .rules
        .iter()
        .flat_map(|r| r.targets.iter().map(move |t| (r, t)))
        .find(|(r, t)| target_arn(config, &r.name, t) == arn)
        .map(|(_, t)| t)
}

impl ApiTarget {
    /// The input this target sends, checked as EventBridge checks it.
    pub fn input(&self) -> Result<Input, String> {
        let set = [
            self.input.is_some(),
            self.input_path.is_some(),
            self.input_transformer.is_some(),
        ];
        if set.iter().filter(|s| **s).count() > 1 {
            return Err(
                "Only one of Input, InputPath, or InputTransformer must be provided".into(),
            );
        }
        if let Some(text) = &self.input {
            return serde_json::from_str(text)
                .map(Input::Constant)
                .map_err(|e| format!("Input is not valid JSON: {e}"));
        }
        if let Some(path) = &self.input_path {
            return path_of(path, "InputPath").map(Input::Path);
        }
        if let Some(tr) = &self.input_transformer {
            if tr.input_paths_map.len() > 100 {
                return Err("InputPathsMap has more than 100 entries".into());
            }
            let mut paths = BTreeMap::new();
            for (name, path) in &tr.input_paths_map {
                if name.starts_with("aws.") {
                    return Err(format!(
                        "InputPathsMap key {name:?}: names starting with aws. are reserved"
                    ));
                }
                paths.insert(
                    name.clone(),
                    path_of(path, &format!("InputPathsMap {name:?}"))?,
                );
            }
            for p in crate::validate::placeholders(&tr.input_template) {
                if !paths.contains_key(p) && !p.starts_with("aws.events.") {
                    return Err(format!(
                        "InputTemplate placeholder <{p}> is not in InputPathsMap"
                    ));
                }
            }
            return Ok(Input::Transformer {
                paths,
                template: tr.input_template.clone(),
            });
        }
        Ok(Input::Event)
    }

    /// The configuration target it names, with this target's id, input and retry.
    pub fn to_target(&self, config: &Config) -> Result<Target, String> {
        let base = find_target(config, &self.arn).ok_or_else(|| {
            format!(
                "target {:?}: Arn {:?} names no target of the configuration (ListTargetsByRule on a configuration rule gives the ARNs)",
                self.id, self.arn
            )
        })?;
        let mut t = base.clone();
        t.id = self.id.clone();
        t.input = self
            .input()
            .map_err(|e| format!("target {:?}: {e}", self.id))?;
        let mut retry = RetryPolicy::default();
        if let Some(n) = self.maximum_retry_attempts {
            retry.maximum_retry_attempts = n;
        }
        if let Some(s) = self.maximum_event_age_seconds {
            retry.maximum_event_age = Duration::from_secs(s);
        }
        t.retry = retry;
        Ok(t)
    }
}

fn path_of(text: &str, what: &str) -> Result<JsonPath, String> {
    if !text.starts_with('$') {
        return Err(format!(
            "{what}: {text:?} must be a JSONPath starting with $"
        ));
    }
    JsonPath::parse(text).map_err(|e| format!("{what}: {text:?} is not a valid JSONPath ({e})"))
}

/// A pattern the API took as JSON text, checked by the matcher's parser.
fn pattern_of(text: Option<&str>) -> Result<Option<serde_json::Value>, String> {
    let Some(text) = text else { return Ok(None) };
    let v: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("EventPattern is not valid JSON: {e}"))?;
    fleetbus_pattern::Pattern::from_value(&v).map_err(|e| e.to_string())?;
    Ok(Some(v))
}

impl ApiRule {
    /// The rule as the engine runs it, its targets resolved against `config`.
    pub fn to_rule(&self, config: &Config) -> Result<Rule, String> {
        if !config.buses.contains(&self.bus) {
            return Err(format!("event bus {:?} does not exist", self.bus));
        }
        let event_pattern = pattern_of(self.event_pattern.as_deref())?;
        let schedule = match &self.schedule {
            Some(s) => Some(Schedule::parse(s).map_err(|e| e.to_string())?),
            None => None,
        };
        let targets = self
            .targets
            .iter()
            .map(|t| t.to_target(config))
            .collect::<Result<_, _>>()?;
        Ok(Rule {
            name: self.name.clone(),
            bus: self.bus.clone(),
            description: self.description.clone(),
            enabled: self.enabled,
            event_pattern,
            schedule,
            exempt: None,
            targets,
        })
    }
}

/// An archive made through the API (CreateArchive), kept as JSON by the store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiArchive {
    pub name: String,
    pub bus: String,
    #[serde(default)]
    pub description: Option<String>,
    /// The EventBridge pattern as the API took it (JSON text).
    #[serde(default)]
    pub event_pattern: Option<String>,
    /// Days its events are kept; 0: for ever (as EventBridge's RetentionDays).
    pub retention_days: u32,
    /// When it was made (ms since the epoch).
    pub created_at: i64,
}

/// "For ever" for an archive: a hundred years.
const FOREVER: Duration = Duration::from_secs(100 * 365 * 86_400);

impl ApiArchive {
    /// The archive as the engine keeps it.
    pub fn to_archive(&self, config: &Config) -> Result<crate::model::Archive, String> {
        if !config.buses.contains(&self.bus) {
            return Err(format!("event bus {:?} does not exist", self.bus));
        }
        let event_pattern = pattern_of(self.event_pattern.as_deref())?;
        let retention = match self.retention_days {
            0 => FOREVER,
            d => Duration::from_secs(u64::from(d) * 86_400),
        };
        if retention < config.retention.archive {
            return Err(format!(
                "RetentionDays {} is shorter than the default archive's {} days: every event is kept that long anyway",
                self.retention_days,
                config.retention.archive.as_secs() / 86_400
            ));
        }
        Ok(crate::model::Archive {
            name: self.name.clone(),
            description: self.description.clone(),
            bus: self.bus.clone(),
            event_pattern,
            retention,
        })
    }
}

/// `items` made through the API added to `base`'s own (named by `name`) with
/// `make`; one whose name `base` now has itself, or that no longer fits, is an
/// error naming it.
fn merge_named<A, T>(
    api: &[A],
    name: impl Fn(&A) -> &str,
    taken: impl Fn(&str) -> bool,
    make: impl Fn(&A) -> Result<T, String>,
    what: &str,
    into: &mut Vec<T>,
) -> Result<(), (String, String)> {
    for a in api {
        let n = name(a);
        if taken(n) {
            return Err((
                n.to_owned(),
                format!("the configuration now declares {what} of this name"),
            ));
        }
        into.push(make(a).map_err(|e| (n.to_owned(), e))?);
    }
    Ok(())
}

impl Config {
    /// This configuration with `api` archives added beside its own.
    pub fn with_api_archives(&self, api: &[ApiArchive]) -> Result<Config, (String, String)> {
        let mut merged = self.clone();
        merge_named(
            api,
            |a| &a.name,
            |n| self.archives.iter().any(|x| x.name == n),
            |a| a.to_archive(self),
            "an archive",
            &mut merged.archives,
        )?;
        Ok(merged)
    }

    /// This configuration with `api` rules added beside its own; an API rule that
    /// no longer fits (a name the configuration now has, a target it dropped) is
    /// an error naming it.
    pub fn with_api_rules(&self, api: &[ApiRule]) -> Result<Config, (String, String)> {
        let mut merged = self.clone();
        merge_named(
            api,
            |a| &a.name,
            |n| self.rules.iter().any(|r| r.name == n),
            |a| a.to_rule(self),
            "a rule",
            &mut merged.rules,
        )?;
        Ok(merged)
    }
}
