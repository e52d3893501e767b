//! `fleetbus simulate -c CANDIDATE`: a candidate configuration's rules run over a
//! running server's archive, delivering nothing: per rule, how many events its
//! pattern matches against how many the running rule matches, how many its
//! exemption would suppress, and a sample of what each target would receive. Exits
//! 1 when the candidate changes what fires, so it can gate a change in CI.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use fleetbus_event::StoredEvent;
use fleetbus_pattern::{Matcher, Pattern};
use serde_json::{json, Value};

use super::http::{encode, Api};
use super::output::Output;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The candidate configuration (a file or a directory of YAML files).
    #[arg(short, long)]
    config: PathBuf,
    /// Archived events from (RFC 3339, or a duration ago such as `7d`).
    #[arg(long, default_value = "7d")]
    since: String,
    /// Archived events until (default now).
    #[arg(long)]
    until: Option<String>,
    /// Only these rules (default every rule of either configuration).
    #[arg(long)]
    rule: Vec<String>,
    /// The running server whose archive and rules are compared.
    #[arg(long, env = "FLEETBUS_URL")]
    url: String,
    /// Its management API (or read) token.
    #[arg(long, env = "FLEETBUS_TOKEN", hide_env_values = true)]
    token: String,
    #[arg(long, value_enum, default_value_t)]
    output: Output,
}

/// A rule's pattern and exemption compiled, with its targets' inputs (candidate).
struct Compiled {
    matcher: Matcher<u32>,
    exempt: Matcher<u32>,
    names: Vec<String>,
}

fn compile(rules: &[(String, Option<Value>, Option<Value>)]) -> anyhow::Result<Compiled> {
    let mut matcher = Matcher::new();
    let mut exempt = Matcher::new();
    let mut names = Vec::new();
    for (name, pattern, ex) in rules {
        let i = names.len() as u32;
        names.push(name.clone());
        if let Some(p) = pattern {
            let p = Pattern::from_value(p).with_context(|| format!("rule {name}: pattern"))?;
            matcher.add_pattern(i, &p)?;
        }
        if let Some(e) = ex {
            let e = Pattern::from_value(e).with_context(|| format!("rule {name}: exempt"))?;
            exempt.add_pattern(i, &e)?;
        }
    }
    Ok(Compiled {
        matcher,
        exempt,
        names,
    })
}

#[derive(Default)]
struct Tally {
    today: u64,
    candidate: u64,
    exempted: u64,
    sample: BTreeMap<String, Value>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let candidate = fleetbus_config::load(&args.config).map_err(|e| anyhow::anyhow!("{e}"))?;
    let api = Api::new(args.url.clone(), args.token.clone());
    let running = api.get("/v1/rules")?;
    let wanted = |name: &str| args.rule.is_empty() || args.rule.iter().any(|r| r == name);
    // Scheduled rules and disabled ones match nothing, here as when serving.
    let today_rules: Vec<(String, Option<Value>, Option<Value>)> = running["rules"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["enabled"] == true && wanted(r["name"].as_str().unwrap_or("")))
        .map(|r| {
            (
                r["name"].as_str().unwrap_or("").to_owned(),
                Some(r["event_pattern"].clone()).filter(|p| !p.is_null()),
                Some(r["exempt"].clone()).filter(|p| !p.is_null()),
            )
        })
        .collect();
    let cand_rules: Vec<&fleetbus_config::Rule> = candidate
        .rules
        .iter()
        .filter(|r| r.enabled && wanted(&r.name))
        .collect();
    let today = compile(&today_rules)?;
    let mut cand_list: Vec<(String, Option<Value>, Option<Value>)> = cand_rules
        .iter()
        .map(|r| (r.name.clone(), r.event_pattern.clone(), r.exempt.clone()))
        .collect();
    // Rules made through the AWS API run beside whatever the file says: the
    // candidate keeps them as they run today.
    let made_by_api: Vec<String> = running["rules"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["origin"] == "api")
        .filter_map(|r| r["name"].as_str().map(str::to_owned))
        .collect();
    for rule in &today_rules {
        if made_by_api.contains(&rule.0) && !cand_list.iter().any(|c| c.0 == rule.0) {
            cand_list.push(rule.clone());
        }
    }
    let cand = compile(&cand_list)?;
    let mut tally: BTreeMap<String, Tally> = BTreeMap::new();
    for n in today.names.iter().chain(&cand.names) {
        tally.entry(n.clone()).or_default();
    }
    // A closed range (until now by default), so the pages end.
    let until = match &args.until {
        Some(u) => u.clone(),
        None => time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default(),
    };
    let query = format!(
        "/v1/events?order=oldest&limit=1000&since={}&until={}",
        encode(&args.since),
        encode(&until)
    );
    let mut cursor: Option<String> = None;
    let mut events = 0u64;
    loop {
        let path = match &cursor {
            Some(c) => format!("{query}&cursor={}", encode(c)),
            None => query.clone(),
        };
        let page = api.get(&path)?;
        for v in page["events"].as_array().into_iter().flatten() {
            let stored: StoredEvent = serde_json::from_value(v.clone())
                .context("the server answered an event this fleetbus cannot read")?;
            events += 1;
            let json = stored.event.to_json();
            for i in today.matcher.matches_for_event(&json).unwrap_or_default() {
                let name = &today.names[i as usize];
                let exempt = today.exempt.matches_for_event(&json).unwrap_or_default();
                if !exempt.contains(&i) {
                    tally.entry(name.clone()).or_default().today += 1;
                }
            }
            let exempt = cand.exempt.matches_for_event(&json).unwrap_or_default();
            for i in cand.matcher.matches_for_event(&json).unwrap_or_default() {
                let t = tally.entry(cand.names[i as usize].clone()).or_default();
                if exempt.contains(&i) {
                    t.exempted += 1;
                    continue;
                }
                t.candidate += 1;
                // The file's rules have targets to sample (API rules come after them).
                let Some(rule) = cand_rules.get(i as usize) else {
                    continue;
                };
                if t.sample.is_empty() {
                    for target in &rule.targets {
                        let input =
                            fleetbus_targets::transform::apply(&target.input, &stored, &rule.name)
                                .map(|p| match p {
                                    fleetbus_targets::Payload::Json(v) => v,
                                    fleetbus_targets::Payload::Text(t) => Value::String(t),
                                })
                                .unwrap_or_else(|e| json!({"error": e.to_string()}));
                        t.sample.insert(target.id.clone(), input);
                    }
                }
            }
        }
        match page["next"].as_str() {
            // A cursor that does not move would page forever: stop there.
            Some(next) if cursor.as_deref() != Some(next) => cursor = Some(next.to_owned()),
            _ => break,
        }
    }
    let changed: Vec<&String> = tally
        .iter()
        .filter(|(_, t)| t.today != t.candidate)
        .map(|(n, _)| n)
        .collect();
    if args.output == Output::Text {
        println!("{events} archived events since {}:", args.since);
        println!(
            "  {:<28} {:>8} {:>10} {:>9}",
            "rule", "today", "candidate", "exempted"
        );
        for (name, t) in &tally {
            let mark = if t.today != t.candidate {
                "  <- changes"
            } else {
                ""
            };
            println!(
                "  {name:<28} {:>8} {:>10} {:>9}{mark}",
                t.today, t.candidate, t.exempted
            );
        }
        for (name, t) in &tally {
            for (target, input) in &t.sample {
                println!("  sample {name} -> {target}: {input}");
            }
        }
        if changed.is_empty() {
            println!("the candidate fires exactly as the running rules do");
        }
    } else {
        let rules: serde_json::Map<String, Value> = tally
            .iter()
            .map(|(n, t)| {
                (
                    n.clone(),
                    json!({"today": t.today, "candidate": t.candidate, "exempted": t.exempted, "sample": t.sample}),
                )
            })
            .collect();
        println!(
            "{}",
            json!({"events": events, "rules": rules, "changed": changed})
        );
    }
    if events == 0 {
        bail!(
            "no archived events since {}: nothing to simulate on",
            args.since
        );
    }
    Ok(if changed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
