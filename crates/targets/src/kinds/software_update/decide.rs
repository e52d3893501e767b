//! The policy's decisions, pure and timed by the `now` they are given: the version
//! and deadline a Mac is held to (its goal), the InstallAction the time to the
//! deadline calls for, the next command for a Mac's state, and what a Mac's
//! answers, check-ins and log events say about where it is.

use fleetbus_assets::{compare_versions, OsRelease, SuState};
use fleetbus_config::{RequiredVersion, SoftwareUpdate, SuRequirement};
use serde_json::{json, Value};
use time::{Duration, OffsetDateTime};

/// The version a Mac must run and by when.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Goal {
    pub(crate) version: String,
    pub(crate) build: Option<String>,
    pub(crate) deadline: OffsetDateTime,
    /// How the deadline was set, for people.
    pub(crate) why: String,
}

fn major(v: &str) -> Option<u64> {
    v.split('.').next()?.trim().parse().ok()
}

/// The goal of `req` for a Mac on `os_version`, from the releases the feed
/// published; an error says why there is none yet.
pub(crate) fn goal(
    req: &SuRequirement,
    releases: &[OsRelease],
    os_version: Option<&str>,
) -> Result<Goal, String> {
    let newest = |filter: &dyn Fn(&OsRelease) -> bool| {
        releases
            .iter()
            .filter(|r| filter(r))
            .max_by(|a, b| compare_versions(&a.product_version, &b.product_version))
    };
    // The release the goal is (if the feed published it) and its version.
    let (release, version) = match &req.required {
        RequiredVersion::Version(v) => {
            (releases.iter().find(|r| &r.product_version == v), v.clone())
        }
        RequiredVersion::Latest => {
            let r =
                newest(&|_| true).ok_or("latest: the feed has published no macOS release yet")?;
            (Some(r), r.product_version.clone())
        }
        RequiredVersion::LatestMinor => {
            let m = os_version
                .and_then(major)
                .ok_or("latest-minor: the Mac's OS version is not known yet")?;
            let r = newest(&|r| major(&r.product_version) == Some(m)).ok_or_else(|| {
                format!("latest-minor: the feed has published no macOS {m} release yet")
            })?;
            (Some(r), r.product_version.clone())
        }
    };
    if let Some(date) = req.installation_date {
        return Ok(Goal {
            build: release.and_then(|r| r.build.clone()),
            version,
            deadline: date,
            why: format!("required_installation_date of requirement {}", req.name),
        });
    }
    let Some(r) = release else {
        return Err(format!(
            "{version}: no required_installation_date, and the feed has not published {version} (no release date to count the SLA from)"
        ));
    };
    let released = r
        .release_date
        .as_deref()
        .and_then(|d| OffsetDateTime::parse(d, &time::format_description::well_known::Rfc3339).ok())
        .ok_or_else(|| {
            format!("{version}: the feed gives no release date to count the SLA from")
        })?;
    let is_major = match (os_version.and_then(major), major(&version)) {
        (Some(from), Some(to)) => to > from,
        _ => false,
    };
    let days = req.sla.days(r.cves, r.actively_exploited, is_major);
    let class = match (r.actively_exploited, r.cves > 0) {
        (true, _) => "actively exploited CVEs",
        (false, true) => "CVEs not actively exploited",
        (false, false) => "no CVEs",
    };
    Ok(Goal {
        build: r.build.clone(),
        version: version.clone(),
        deadline: released + Duration::days(i64::from(days)),
        why: format!(
            "{version} released {}, {} {} update with {class}: {days} days",
            r.release_date.as_deref().unwrap_or("?"),
            if is_major { "a major" } else { "a minor" },
            "macOS"
        ),
    })
}

/// ScheduleOSUpdate's InstallActions, mildest first.
pub(crate) const ACTIONS: [&str; 4] = [
    "DownloadOnly",
    "InstallLater",
    "InstallASAP",
    "InstallForceRestart",
];

fn rank(action: Option<&str>) -> Option<usize> {
    action.and_then(|a| ACTIONS.iter().position(|x| *x == a))
}

/// The InstallAction the time left to `deadline` calls for at `now`.
pub(crate) fn install_action(
    policy: &SoftwareUpdate,
    deadline: OffsetDateTime,
    now: OffsetDateTime,
) -> &'static str {
    let left = deadline - now;
    let std = |d: std::time::Duration| Duration::try_from(d).unwrap_or(Duration::MAX);
    if left > std(policy.download_only_before) {
        "DownloadOnly"
    } else if left > Duration::ZERO {
        "InstallLater"
    } else if -left < std(policy.force_restart_after) {
        "InstallASAP"
    } else {
        "InstallForceRestart"
    }
}

/// What to do for one Mac now.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Decision {
    /// It runs the goal's version or later.
    Compliant,
    /// Nothing to send now, and why.
    Wait(String),
    /// A command: its RequestType, its keys, the stage it puts the Mac in, and
    /// what happens next.
    Send {
        request_type: &'static str,
        payload: Value,
        stage: &'static str,
        next: String,
    },
    /// The declaration for this goal (the Mac is on macOS 14 or later).
    Declare(Value),
}

/// Whether `state`'s Mac runs at least `version`.
pub(crate) fn runs_at_least(os: Option<&str>, version: &str) -> bool {
    os.is_some_and(|v| compare_versions(v, version).is_ge())
}

/// The ScheduleOSUpdate of `product_key` with `action`.
pub(crate) fn schedule(
    product_key: &str,
    version: Option<&str>,
    action: &str,
    max_user_deferrals: u32,
) -> Value {
    let mut update = json!({"ProductKey": product_key, "InstallAction": action});
    if let Some(v) = version {
        update["ProductVersion"] = json!(v);
    }
    if action == "InstallLater" {
        update["MaxUserDeferrals"] = json!(max_user_deferrals);
    }
    json!({"Updates": [update]})
}

/// The next step for a Mac on `os` in `state`, held to `goal` by `req`.
pub(crate) fn decide(
    policy: &SoftwareUpdate,
    req: &SuRequirement,
    state: &SuState,
    os: Option<&str>,
    goal: &Goal,
    now: OffsetDateTime,
) -> Decision {
    if runs_at_least(os, &goal.version) {
        return Decision::Compliant;
    }
    if state.stage == "failed" && state.errors >= policy.max_errors {
        return Decision::Wait(format!(
            "a person: {} error answers in a row ({})",
            state.errors,
            state.reason.as_deref().unwrap_or("no reason given")
        ));
    }
    if let (Some(cmd), Some(since)) = (&state.pending_command, &state.pending_since) {
        let since = OffsetDateTime::parse(since, &time::format_description::well_known::Rfc3339)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH);
        let resend = Duration::try_from(policy.resend_after).unwrap_or(Duration::MAX);
        if now - since < resend {
            return Decision::Wait(format!("waiting for the Mac's answer to {cmd}"));
        }
    }
    if req.declarations && os.and_then(major).is_some_and(|m| m >= 14) {
        // Declared once per goal: the Mac's status reports move its stage after.
        let same = state.install_action.as_deref() == Some(DECLARED)
            && state.required_version.as_deref() == Some(goal.version.as_str())
            && state.deadline.as_deref() == Some(rfc3339(goal.deadline).as_str());
        if same {
            return Decision::Wait(
                "the declaration is in place; the Mac reports through its status items".into(),
            );
        }
        return Decision::Declare(declaration(policy, goal));
    }
    let action = install_action(policy, goal.deadline, now);
    match (state.stage.as_str(), &state.product_key) {
        ("update found" | "scheduled" | "downloading" | "downloaded", Some(key)) => {
            if rank(Some(action)) > rank(state.install_action.as_deref()) {
                Decision::Send {
                    request_type: "ScheduleOSUpdate",
                    payload: schedule(
                        key,
                        state.available_version.as_deref(),
                        action,
                        req.max_user_deferrals,
                    ),
                    stage: "scheduled",
                    next: format!("the Mac acknowledges {action}; OSUpdateStatus follows it"),
                }
            } else {
                Decision::Send {
                    request_type: "OSUpdateStatus",
                    payload: json!({}),
                    stage: state_stage(&state.stage),
                    next: "the Mac reports its download and install (OSUpdateStatus)".into(),
                }
            }
        }
        ("scanned", _) => Decision::Send {
            request_type: "AvailableOSUpdates",
            payload: json!({}),
            stage: "scanned",
            next: "the Mac names the updates it found; the OS update is scheduled".into(),
        },
        ("installing", _) => Decision::Send {
            request_type: "DeviceInformation",
            payload: json!({"Queries": ["OSVersion", "BuildVersion"]}),
            stage: "installing",
            next: "the Mac reports the version it runs (DeviceInformation)".into(),
        },
        _ => Decision::Send {
            request_type: "ScheduleOSUpdateScan",
            payload: json!({"Force": true}),
            stage: "scan sent",
            next: "the Mac scans; then it is asked which updates it found (AvailableOSUpdates)"
                .into(),
        },
    }
}

fn state_stage(stage: &str) -> &'static str {
    match stage {
        "downloading" => "downloading",
        "downloaded" => "downloaded",
        "update found" => "update found",
        _ => "scheduled",
    }
}

/// RFC 3339 in UTC.
pub(crate) fn rfc3339(t: OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// The `install_action` of a Mac given the declaration instead of commands.
pub(crate) const DECLARED: &str = "declaration";

/// The `com.apple.configuration.softwareupdate.enforcement.specific` declaration
/// for `goal` (Apple's keys; `TargetLocalDateTime` has no offset: the Mac reads it
/// in its own time zone).
pub(crate) fn declaration(policy: &SoftwareUpdate, goal: &Goal) -> Value {
    let local = goal
        .deadline
        .to_offset(time::UtcOffset::UTC)
        .format(time::macros::format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second]"
        ))
        .unwrap_or_default();
    let mut payload = json!({"TargetOSVersion": goal.version, "TargetLocalDateTime": local});
    if let Some(b) = &goal.build {
        payload["TargetBuildVersion"] = json!(b);
    }
    if let Some(u) = &policy.details_url {
        payload["DetailsURL"] = json!(u);
    }
    let identifier = format!("fleetbus.softwareupdate.enforcement.{}", goal.version);
    json!({
        "Type": "com.apple.configuration.softwareupdate.enforcement.specific",
        "Identifier": identifier,
        // The server token changes with what the declaration says.
        "ServerToken": format!("{}-{}", goal.version, local),
        "Payload": payload,
    })
}

/// The OS update of an AvailableOSUpdates answer to install for `version`: the
/// lowest OS update at or above it (a minor update over a major upgrade).
pub(crate) fn pick_update<'a>(
    answer: &'a Value,
    version: &str,
) -> Result<(&'a str, Option<&'a str>), String> {
    let updates = answer
        .get("AvailableOSUpdates")
        .and_then(Value::as_array)
        .ok_or("the answer has no AvailableOSUpdates list")?;
    let os: Vec<(&str, Option<&str>)> = updates
        .iter()
        .filter(|u| u.get("IsOSUpdate").and_then(Value::as_bool) == Some(true))
        .filter_map(|u| {
            let key = u.get("ProductKey")?.as_str()?;
            let v = u
                .get("ProductVersion")
                .or_else(|| u.get("Version"))
                .and_then(Value::as_str);
            Some((key, v))
        })
        .collect();
    os.iter()
        .filter(|(_, v)| v.is_some_and(|v| compare_versions(v, version).is_ge()))
        .min_by(|a, b| compare_versions(a.1.unwrap_or(""), b.1.unwrap_or("")))
        .copied()
        .ok_or_else(|| {
            let offered: Vec<String> = os
                .iter()
                .map(|(k, v)| format!("{} ({k})", v.unwrap_or("?")))
                .collect();
            if offered.is_empty() {
                format!("the Mac offers no OS update (it needs {version})")
            } else {
                format!(
                    "the Mac offers {}; none is {version} or later",
                    offered.join(", ")
                )
            }
        })
}

/// Where an OSUpdateStatus answer puts the Mac: (stage, progress).
pub(crate) fn status_stage(
    answer: &Value,
    product_key: Option<&str>,
) -> Option<(&'static str, Option<f64>)> {
    let list = answer.get("OSUpdateStatus")?.as_array()?;
    let entry = list
        .iter()
        .find(|e| {
            product_key.is_some() && e.get("ProductKey").and_then(Value::as_str) == product_key
        })
        .or_else(|| list.first())?;
    let progress = entry.get("DownloadPercentComplete").and_then(Value::as_f64);
    let downloaded = entry.get("IsDownloaded").and_then(Value::as_bool) == Some(true);
    let stage = match entry.get("Status").and_then(Value::as_str) {
        Some("Installing") => "installing",
        Some("Downloading") => "downloading",
        _ if downloaded => "downloaded",
        Some("Idle") => "scheduled",
        _ => "scheduled",
    };
    Some((stage, progress))
}

/// What a Mac's software-update log event says: (stage, `""` to keep it; reason;
/// whether the user put the install off).
pub(crate) fn log_stage(
    detail: &serde_json::Map<String, Value>,
) -> Option<(&'static str, Option<String>, bool)> {
    let action = detail.get("action").and_then(Value::as_str).unwrap_or("");
    let text = |k: &str| detail.get(k).and_then(Value::as_str).map(str::to_owned);
    Some(match action {
        "otaAbandoned" => ("abandoned", text("failureReason").or(text("result")), false),
        "otaDownloaded" | "otaReady" => ("downloaded", None, false),
        "otaInstalling" | "restartCountdown" | "rebootNow" => ("installing", None, false),
        "updateFinished" => (
            "installing",
            Some("the Mac finished installing; it restarts into the new version".into()),
            false,
        ),
        "progress" => ("downloading", None, false),
        "userAction" => {
            let verb = text("verb").unwrap_or_default().to_lowercase();
            let choice = text("choice").unwrap_or_default().to_lowercase();
            let deferred = verb == "deferred"
                || verb == "dismissed"
                || matches!(
                    choice.as_str(),
                    "later" | "remind me later" | "tonight" | "try tonight"
                );
            if !deferred {
                return None;
            }
            // The stage stays: the user put the install off.
            (
                "",
                Some(format!("the user {verb} {choice}").trim().to_owned()),
                true,
            )
        }
        _ => return None,
    })
}

/// What a declarative-management status report says about software update:
/// (stage, pending version, failure reason).
pub(crate) fn declarative_status(
    data: &Value,
) -> Option<(&'static str, Option<String>, Option<String>)> {
    let su = data.get("StatusItems")?.get("softwareupdate")?;
    let state = su.get("install-state").and_then(Value::as_str);
    let pending = su
        .get("pending-version")
        .and_then(|p| p.get("os-version"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    let failure = su
        .get("failure-reason")
        .and_then(|f| f.get("reason"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    let stage = match state? {
        "downloading" => "downloading",
        "prepared" => "downloaded",
        "installing" => "installing",
        "failed" => "failed",
        "waiting" => "declared",
        _ => "declared",
    };
    Some((stage, pending, failure))
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn policy(text: &str) -> std::sync::Arc<SoftwareUpdate> {
        let config = fleetbus_config::load_str(
            "c.yaml",
            &format!(
                "software_update:\n  mdm: {{url: \"http://127.0.0.1:9\", api_key: \"${{env:HOME}}\"}}\n{text}"
            ),
            std::path::Path::new("."),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        config.software_update.unwrap()
    }

    fn release(v: &str, date: &str, cves: u32, exploited: bool) -> OsRelease {
        OsRelease {
            platform: "macOS".into(),
            product_version: v.into(),
            build: Some(format!("B{v}")),
            release_date: Some(date.into()),
            cves,
            actively_exploited: exploited,
        }
    }

    #[test]
    fn the_install_action_escalates_as_the_deadline_nears() {
        let p = policy("  requirements: [{name: all}]\n");
        let deadline = datetime!(2026-12-20 17:00 UTC);
        let at = |t| install_action(&p, deadline, t);
        assert_eq!(at(datetime!(2026-12-01 00:00 UTC)), "DownloadOnly");
        assert_eq!(at(datetime!(2026-12-13 16:59 UTC)), "DownloadOnly");
        assert_eq!(at(datetime!(2026-12-13 17:01 UTC)), "InstallLater");
        assert_eq!(at(datetime!(2026-12-20 16:59 UTC)), "InstallLater");
        assert_eq!(at(datetime!(2026-12-20 17:00 UTC)), "InstallASAP");
        assert_eq!(at(datetime!(2026-12-21 16:59 UTC)), "InstallASAP");
        assert_eq!(at(datetime!(2026-12-21 17:00 UTC)), "InstallForceRestart");
    }

    #[test]
    fn deadlines_come_from_the_date_or_the_sla_the_release_calls_for() {
        let p = policy(
            "  requirements:
    - {name: fixed, tags: [a], required_minimum_os_version: '15.1', required_installation_date: '2026-12-20T17:00:00Z'}
    - {name: sla, required_minimum_os_version: latest-minor, actively_exploited_cves_minor_update_sla: 3}
",
        );
        let releases = [
            release("15.1", "2026-11-01T00:00:00Z", 2, true),
            release("15.0.1", "2026-10-01T00:00:00Z", 0, false),
            release("14.7.1", "2026-11-02T00:00:00Z", 5, false),
            release("26.1", "2026-11-03T00:00:00Z", 0, false),
        ];
        let g = goal(&p.requirements[0], &releases, Some("14.6")).unwrap();
        assert_eq!(g.version, "15.1");
        assert_eq!(g.build.as_deref(), Some("B15.1"));
        assert_eq!(g.deadline, datetime!(2026-12-20 17:00 UTC));
        // latest-minor: the newest release of the Mac's own major version, with the
        // SLA of what that release fixes.
        let g = goal(&p.requirements[1], &releases, Some("15.0")).unwrap();
        assert_eq!(g.version, "15.1");
        assert_eq!(
            g.deadline,
            datetime!(2026-11-04 00:00 UTC),
            "3 days: exploited"
        );
        assert!(g.why.contains("actively exploited"), "{}", g.why);
        let g = goal(&p.requirements[1], &releases, Some("14.6")).unwrap();
        assert_eq!(g.version, "14.7.1");
        assert_eq!(g.deadline, datetime!(2026-11-23 00:00 UTC), "21 days: CVEs");
        let e = goal(&p.requirements[1], &releases, Some("13.7")).unwrap_err();
        assert!(e.contains("no macOS 13 release"), "{e}");
        let e = goal(&p.requirements[1], &[], None).unwrap_err();
        assert!(e.contains("not known"), "{e}");
        // latest: a major upgrade for a Mac on 15 gets the major SLA (28 days).
        let latest = policy("  requirements: [{name: all}]\n");
        let g = goal(&latest.requirements[0], &releases, Some("15.1")).unwrap();
        assert_eq!(g.version, "26.1");
        assert_eq!(g.deadline, datetime!(2026-12-01 00:00 UTC));
        assert!(g.why.contains("a major"), "{}", g.why);
        let e = goal(&latest.requirements[0], &[], Some("15.1")).unwrap_err();
        assert!(e.contains("no macOS release yet"), "{e}");
    }

    fn state(stage: &str) -> SuState {
        SuState {
            serial: "C02X".into(),
            stage: stage.into(),
            ..SuState::default()
        }
    }

    #[test]
    fn each_state_gets_its_next_command_and_escalations_are_sent_once() {
        let p = policy("  requirements: [{name: all, max_user_deferrals: 2}]\n");
        let req = &p.requirements[0];
        let g = Goal {
            version: "15.1".into(),
            build: None,
            deadline: datetime!(2026-12-20 17:00 UTC),
            why: String::new(),
        };
        let early = datetime!(2026-12-01 00:00 UTC);
        let rt = |d: Decision| match d {
            Decision::Send {
                request_type,
                payload,
                ..
            } => (request_type, payload),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            decide(&p, req, &state("not started"), Some("15.1"), &g, early),
            Decision::Compliant
        );
        assert_eq!(
            rt(decide(
                &p,
                req,
                &state("not started"),
                Some("14.6"),
                &g,
                early
            ))
            .0,
            "ScheduleOSUpdateScan"
        );
        let mut found = state("update found");
        found.product_key = Some("MSU_UPDATE_24B83_patch_15.1".into());
        found.available_version = Some("15.1".into());
        let (r, payload) = rt(decide(&p, req, &found, Some("14.6"), &g, early));
        assert_eq!(r, "ScheduleOSUpdate");
        assert_eq!(
            payload,
            json!({"Updates": [{"ProductKey": "MSU_UPDATE_24B83_patch_15.1", "ProductVersion": "15.1", "InstallAction": "DownloadOnly"}]})
        );
        // Scheduled with DownloadOnly: followed, until the deadline is a week away.
        let mut scheduled = found.clone();
        scheduled.stage = "scheduled".into();
        scheduled.install_action = Some("DownloadOnly".into());
        assert_eq!(
            rt(decide(&p, req, &scheduled, Some("14.6"), &g, early)).0,
            "OSUpdateStatus"
        );
        let (r, payload) = rt(decide(
            &p,
            req,
            &scheduled,
            Some("14.6"),
            &g,
            datetime!(2026-12-15 00:00 UTC),
        ));
        assert_eq!(r, "ScheduleOSUpdate");
        assert_eq!(payload["Updates"][0]["InstallAction"], "InstallLater");
        assert_eq!(payload["Updates"][0]["MaxUserDeferrals"], 2);
        scheduled.install_action = Some("InstallLater".into());
        let (_, payload) = rt(decide(
            &p,
            req,
            &scheduled,
            Some("14.6"),
            &g,
            datetime!(2026-12-22 00:00 UTC),
        ));
        assert_eq!(
            payload["Updates"][0]["InstallAction"],
            "InstallForceRestart"
        );
        // An unanswered command is waited for, then sent again.
        let mut pending = state("scan sent");
        pending.pending_command = Some("ScheduleOSUpdateScan".into());
        pending.pending_since = Some("2026-12-01T00:00:00Z".into());
        assert!(
            matches!(decide(&p, req, &pending, Some("14.6"), &g, datetime!(2026-12-01 12:00 UTC)), Decision::Wait(w) if w.contains("ScheduleOSUpdateScan"))
        );
        assert_eq!(
            rt(decide(
                &p,
                req,
                &pending,
                Some("14.6"),
                &g,
                datetime!(2026-12-02 00:00 UTC)
            ))
            .0,
            "ScheduleOSUpdateScan"
        );
        // Errors: retried, then left for a person.
        let mut failed = state("failed");
        failed.errors = 3;
        failed.reason = Some("disk full".into());
        assert!(
            matches!(decide(&p, req, &failed, Some("14.6"), &g, early), Decision::Wait(w) if w.contains("a person") && w.contains("disk full"))
        );
        failed.errors = 1;
        assert_eq!(
            rt(decide(&p, req, &failed, Some("14.6"), &g, early)).0,
            "ScheduleOSUpdateScan"
        );
        assert_eq!(
            rt(decide(
                &p,
                req,
                &state("installing"),
                Some("14.6"),
                &g,
                early
            ))
            .0,
            "DeviceInformation"
        );
        assert_eq!(
            rt(decide(&p, req, &state("scanned"), Some("14.6"), &g, early)).0,
            "AvailableOSUpdates"
        );
    }

    #[test]
    fn macs_on_14_or_later_get_the_declaration_once() {
        let p = policy("  details_url: https://it.example.com/u\n  requirements: [{name: all, declarations: true}]\n");
        let req = &p.requirements[0];
        let g = Goal {
            version: "15.1".into(),
            build: Some("24B83".into()),
            deadline: datetime!(2026-12-20 17:00 UTC),
            why: String::new(),
        };
        let now = datetime!(2026-12-01 00:00 UTC);
        let Decision::Declare(d) = decide(&p, req, &state("not started"), Some("14.6"), &g, now)
        else {
            panic!("a declaration");
        };
        assert_eq!(
            d["Type"],
            "com.apple.configuration.softwareupdate.enforcement.specific"
        );
        assert_eq!(
            d["Payload"],
            json!({"TargetOSVersion": "15.1", "TargetBuildVersion": "24B83",
                   "TargetLocalDateTime": "2026-12-20T17:00:00", "DetailsURL": "https://it.example.com/u"})
        );
        let mut declared = state("failed");
        declared.install_action = Some(DECLARED.into());
        declared.required_version = Some("15.1".into());
        declared.deadline = Some("2026-12-20T17:00:00Z".into());
        assert!(matches!(
            decide(&p, req, &declared, Some("14.6"), &g, now),
            Decision::Wait(_)
        ));
        // Older Macs get commands.
        assert!(matches!(
            decide(&p, req, &state("not started"), Some("13.6"), &g, now),
            Decision::Send { .. }
        ));
    }

    #[test]
    fn answers_and_status_reports_are_read() {
        let answer = json!({"AvailableOSUpdates": [
            {"ProductKey": "052-12345", "IsOSUpdate": false, "Version": "18.1"},
            {"ProductKey": "MSU_UPDATE_25B78_patch_26.1_major", "IsOSUpdate": true, "ProductVersion": "26.1"},
            {"ProductKey": "MSU_UPDATE_24B83_patch_15.1", "IsOSUpdate": true, "Version": "15.1"}
        ]});
        assert_eq!(
            pick_update(&answer, "15.1").unwrap(),
            ("MSU_UPDATE_24B83_patch_15.1", Some("15.1"))
        );
        let e = pick_update(&answer, "27").unwrap_err();
        assert!(
            e.contains("26.1 (MSU_UPDATE_25B78_patch_26.1_major)") && e.contains("none is 27"),
            "{e}"
        );
        assert!(pick_update(&json!({"AvailableOSUpdates": []}), "15.1")
            .unwrap_err()
            .contains("no OS update"));
        let status = json!({"OSUpdateStatus": [{"ProductKey": "K", "Status": "Downloading", "DownloadPercentComplete": 0.42, "IsDownloaded": false}]});
        assert_eq!(
            status_stage(&status, Some("K")),
            Some(("downloading", Some(0.42)))
        );
        let status = json!({"OSUpdateStatus": [{"ProductKey": "K", "Status": "Idle", "IsDownloaded": true}]});
        assert_eq!(status_stage(&status, Some("K")), Some(("downloaded", None)));
        let report = json!({"StatusItems": {"softwareupdate": {
            "install-state": "failed",
            "pending-version": {"os-version": "15.1", "build-version": "24B83"},
            "failure-reason": {"count": 2, "reason": "not enough space", "timestamp": "2026-12-01T00:00:00Z"}}}});
        assert_eq!(
            declarative_status(&report),
            Some((
                "failed",
                Some("15.1".into()),
                Some("not enough space".into())
            ))
        );
        let mut log = serde_json::Map::new();
        log.insert("action".into(), json!("otaAbandoned"));
        log.insert("failureReason".into(), json!("[SUMacControllerError:7749]"));
        assert_eq!(
            log_stage(&log),
            Some((
                "abandoned",
                Some("[SUMacControllerError:7749]".into()),
                false
            ))
        );
        log.insert("action".into(), json!("userAction"));
        log.insert("verb".into(), json!("clicked"));
        log.insert("choice".into(), json!("Remind Me Later"));
        assert!(log_stage(&log).unwrap().2, "a deferral");
    }
}
