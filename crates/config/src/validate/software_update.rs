//! `software_update:`: the policy checked, and the two rules it runs as made from
//! it (`software-update` for the events of the workflow, `software-update-deadlines`
//! for its schedule), each with one `software-update` target holding the policy.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use time::format_description::well_known::Rfc3339;

use super::{bus_of, key, valid_name, Ctx};
use crate::load::{Located, Origin};
use crate::model::*;
use crate::raw::{RawSoftwareUpdate, RawSuMdm, RawSuRequirement};
use crate::schedule::Schedule;
use crate::secret::Secret;
use crate::yaml::PathSeg;

/// The MDM commands of the workflow, and the one that reports the OS version.
pub(crate) const SU_COMMANDS: [&str; 5] = [
    "ScheduleOSUpdateScan",
    "AvailableOSUpdates",
    "ScheduleOSUpdate",
    "OSUpdateStatus",
    "DeviceInformation",
];

/// The validated policy, or `None` without the section (or with errors in it).
pub(crate) fn validate_software_update(
    section: Option<&Located<RawSoftwareUpdate>>,
    buses: &[String],
    cx: &mut Ctx<'_>,
) -> Option<Arc<SoftwareUpdate>> {
    let section = section?;
    let (o, v) = (&section.origin, &section.value);
    let before = cx.errors.len();
    let mdm = match &v.mdm {
        None => {
            cx.errors.push(o.error(
                &[],
                "missing required field mdm (the server the commands go through: server, url, api_key)",
            ));
            None
        }
        Some(m) => Some(su_mdm(m, &o.child(key("mdm")), cx)),
    };
    let bus = bus_of(v.bus.as_deref(), o, buses, cx);
    let evaluate_text = v.evaluate.as_deref().unwrap_or("rate(1 hour)");
    let evaluate = match Schedule::parse(evaluate_text) {
        Ok(s) => Some(s),
        Err(e) => {
            cx.errors.push(o.error(&[key("evaluate")], e.to_string()));
            None
        }
    };
    let day = Duration::from_secs(86_400);
    let download_only_before = cx.duration(
        o,
        &[key("download_only_before")],
        v.download_only_before.as_deref(),
        7 * day,
    );
    let force_restart_after = cx.duration(
        o,
        &[key("force_restart_after")],
        v.force_restart_after.as_deref(),
        day,
    );
    let resend_after = cx.duration(o, &[key("resend_after")], v.resend_after.as_deref(), day);
    if resend_after < Duration::from_secs(60) {
        cx.errors.push(o.error(
            &[key("resend_after")],
            format!(
                "{}s is too short to wait for a Mac's answer (at least 60s)",
                resend_after.as_secs()
            ),
        ));
    }
    let max_errors = v.max_errors.unwrap_or(3);
    if max_errors == 0 {
        cx.errors
            .push(o.error(&[key("max_errors")], "must be at least 1"));
    }
    if let Some(u) = &v.details_url {
        if !(u.starts_with("https://") || u.starts_with("http://")) {
            cx.errors.push(o.error(
                &[key("details_url")],
                format!("{u:?} is not an http:// or https:// URL"),
            ));
        }
    }
    if v.requirements.is_empty() {
        cx.errors.push(o.error(
            &[key("requirements")],
            "at least one requirement is needed (which Macs must run which version by when)",
        ));
    }
    let mut names = Vec::new();
    let mut requirements = Vec::new();
    for (i, r) in v.requirements.iter().enumerate() {
        let ro = o.child(key("requirements")).child(PathSeg::Index(i));
        if !valid_name(&r.name) {
            cx.errors.push(ro.error(
                &[key("name")],
                format!(
                    "{:?} is not a valid name (expected letters, digits, '-', '_' or '.')",
                    r.name
                ),
            ));
        } else if names.contains(&r.name) {
            cx.errors.push(ro.error(
                &[key("name")],
                format!("duplicate requirement name {:?}", r.name),
            ));
        }
        names.push(r.name.clone());
        requirements.push(requirement(r, &ro, cx));
    }
    if cx.errors.len() != before {
        return None;
    }
    Some(Arc::new(SoftwareUpdate {
        mdm: mdm?,
        bus,
        evaluate: evaluate?,
        download_only_before,
        force_restart_after,
        resend_after,
        max_errors,
        details_url: v.details_url.clone(),
        requirements,
    }))
}

/// An MDM server of the policy (the section's, or a requirement's own).
fn su_mdm(m: &RawSuMdm, mo: &Origin, cx: &mut Ctx<'_>) -> SuMdm {
    if m.url.is_none() {
        cx.errors.push(mo.error(
            &[],
            "missing required field url (the MDM server's base URL)",
        ));
    }
    let (server, url) =
        crate::kinds::mdm_server_and_url(m.server.as_deref(), m.url.as_deref(), mo, cx);
    let api_key = match &m.api_key {
        Some(k) => cx.secret(mo, &[key("api_key")], k),
        None => {
            cx.errors.push(mo.error(
                &[],
                "missing required field api_key (a secret reference, e.g. ${file:secrets/nanomdm-api-key})",
            ));
            Secret::empty()
        }
    };
    SuMdm {
        server,
        url: url.trim_end_matches('/').to_owned(),
        api_key,
        push: m.push.unwrap_or(true),
    }
}

fn requirement(r: &RawSuRequirement, o: &Origin, cx: &mut Ctx<'_>) -> SuRequirement {
    let required = match r.required_minimum_os_version.as_deref().map(str::trim) {
        None | Some("latest") => RequiredVersion::Latest,
        Some("latest-minor") => RequiredVersion::LatestMinor,
        Some(v) if is_version(v) => RequiredVersion::Version(v.to_owned()),
        Some(v) => {
            cx.errors.push(o.error(
                &[key("required_minimum_os_version")],
                format!("{v:?} is not a version (e.g. 15.3), latest or latest-minor"),
            ));
            RequiredVersion::Latest
        }
    };
    let installation_date = r.required_installation_date.as_deref().and_then(|d| {
        match time::OffsetDateTime::parse(d.trim(), &Rfc3339) {
            Ok(t) => Some(t),
            Err(e) => {
                cx.errors.push(o.error(
                    &[key("required_installation_date")],
                    format!("{d:?} is not an RFC 3339 time such as 2026-12-20T17:00:00Z: {e}"),
                ));
                None
            }
        }
    });
    let targeted_major = match r.targeted_os_versions_rule.as_deref().map(str::trim) {
        None | Some("default") => None,
        Some(v) => match v.parse::<u64>() {
            Ok(m) => Some(m),
            Err(_) => {
                cx.errors.push(o.error(
                    &[key("targeted_os_versions_rule")],
                    format!("{v:?} is not a major version (e.g. 14) or default"),
                ));
                None
            }
        },
    };
    for m in &r.models {
        if m.is_empty() || m[..m.len() - 1].contains('*') {
            cx.errors.push(o.error(
                &[key("models")],
                format!("{m:?} is not a model (Mac14,7) or a prefix ending in * (Mac14,*)"),
            ));
        }
    }
    SuRequirement {
        name: r.name.clone(),
        tags: r.tags.clone(),
        models: r.models.clone(),
        targeted_major,
        required,
        installation_date,
        sla: SuSla {
            actively_exploited_major: r.actively_exploited_cves_major_upgrade_sla.unwrap_or(14),
            actively_exploited_minor: r.actively_exploited_cves_minor_update_sla.unwrap_or(14),
            non_actively_exploited_major: r
                .non_actively_exploited_cves_major_upgrade_sla
                .unwrap_or(21),
            non_actively_exploited_minor: r
                .non_actively_exploited_cves_minor_update_sla
                .unwrap_or(21),
            standard_major: r.standard_major_upgrade_sla.unwrap_or(28),
            standard_minor: r.standard_minor_update_sla.unwrap_or(28),
        },
        max_user_deferrals: r.max_user_deferrals.unwrap_or(3),
        declarations: r.declarations.unwrap_or(false),
        mdm: r.mdm.as_ref().map(|m| su_mdm(m, &o.child(key("mdm")), cx)),
    }
}

/// `15`, `15.3`, `15.3.1`.
fn is_version(v: &str) -> bool {
    let parts: Vec<&str> = v.split('.').collect();
    parts.len() <= 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.len() <= 4 && p.bytes().all(|b| b.is_ascii_digit()))
}

/// The pattern of the events the workflow follows: releases, the answers to its
/// commands, check-ins that report a version or a declarative-management status,
/// the Mac's own software-update log events, and evaluations asked for.
pub(crate) fn workflow_pattern() -> serde_json::Value {
    json!({"$or": [
        {"source": ["fleetbus.os-feed"], "detail-type": ["OS Release Published"]},
        {"source": [SU_SOURCE], "detail-type": [SU_EVALUATE]},
        {"source": [{"prefix": "mdm."}], "detail-type": ["MDM Command Result"],
         "detail": {"command": {"request_type": SU_COMMANDS}}},
        {"source": [{"prefix": "mdm."}], "detail-type": ["MDM Check-in"],
         "detail": {"device": {"os_version": [{"exists": true}]}}},
        {"source": [{"prefix": "mdm."}], "detail-type": ["MDM Check-in"],
         "detail": {"action": ["declarative_management"]}},
        {"source": ["fleetbus.ulog"], "detail-type": [{"prefix": "Software Update"}]}
    ]})
}

/// The two rules the policy runs as.
pub(crate) fn rules(policy: &Arc<SoftwareUpdate>, o: &Origin) -> Vec<Rule> {
    let target = || Target {
        site: Site(Some(o.clone())),
        id: SU_TARGET.to_owned(),
        input: Input::Event,
        retry: RetryPolicy::default(),
        // One at a time: each delivery reads and writes Macs' states.
        concurrency: 1,
        rate_limit: None,
        // An evaluation enqueues a command per Mac behind: minutes for a fleet.
        timeout: Duration::from_secs(900),
        spec: TargetSpec::SoftwareUpdate(policy.clone()),
    };
    vec![
        Rule {
            name: SU_RULE.to_owned(),
            bus: policy.bus.clone(),
            description: Some(
                "software_update: releases, command answers, check-ins and the Macs' log events move each Mac on"
                    .into(),
            ),
            enabled: true,
            event_pattern: Some(workflow_pattern()),
            schedule: None,
            exempt: None,
            targets: vec![target()],
        },
        Rule {
            name: SU_DEADLINES_RULE.to_owned(),
            bus: policy.bus.clone(),
            description: Some(
                "software_update: deadlines looked at again; commands the Macs left unanswered sent again"
                    .into(),
            ),
            enabled: true,
            event_pattern: None,
            schedule: Some(policy.evaluate.clone()),
            exempt: None,
            targets: vec![target()],
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_numbers_with_up_to_three_parts() {
        for ok in ["15", "15.3", "15.3.1"] {
            assert!(is_version(ok), "{ok}");
        }
        for bad in ["", "15.", "15.3.1.2", "v15", "15.x", "latest"] {
            assert!(!is_version(bad), "{bad}");
        }
    }

    #[test]
    fn the_workflow_pattern_compiles() {
        fleetbus_pattern::Pattern::from_value(&workflow_pattern()).expect("compiles");
    }
}
