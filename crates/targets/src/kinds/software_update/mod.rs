//! `kind: software-update`: the `software_update:` policy run on the events its
//! rules give it. Per Mac below its requirement: ScheduleOSUpdateScan ->
//! AvailableOSUpdates (the ProductKey from the Mac's answer) -> ScheduleOSUpdate
//! with the InstallAction the time to the deadline calls for (escalated at later
//! evaluations) -> OSUpdateStatus until done -> the new version from a check-in or
//! DeviceInformation. Macs on macOS 14 or later whose requirement says
//! `declarations: true` get the enforcement declaration instead (as an event to
//! route to the declarative-management server), and their status items are read.
//!
//! Each Mac's state is kept in the asset store; every change of stage is a
//! `Software Update Status Changed` event on the Mac's timeline, linked to the
//! event that caused it, beside the `MDM Command Enqueued` events of the commands.
//! Deliveries that read and write states run one at a time: only the target of the
//! `software-update` rule does (concurrency 1); the schedule's rule hands its turn
//! over as a `Software Update Evaluation Requested` event. Retries are safe: commands are
//! keyed by the delivery and the ledger skips one already sent.

mod decide;

use std::collections::BTreeMap;
use std::sync::Arc;

use fleetbus_assets::{AsyncAssetStore, Device, DeviceFilter, OsRelease, SuState};
use fleetbus_config::{SoftwareUpdate, SuRequirement, Target, TargetSpec, SU_SOURCE};
use fleetbus_event::{Defaults, Event};
use serde_json::{json, Map, Value};
use time::OffsetDateTime;

use super::mdm::{command_uuid, Addressee, MdmTargetImpl, Template};
use super::metrics::{SeriesPoint, SeriesSink};
use super::{BuildContext, Clock, Deliver, DeliverFuture};
use crate::{BuildError, Delivered, DeliveryContext, DeliveryError, Payload};
use decide::{Decision, Goal};

/// Detail-type of a Mac's change of stage.
pub const STATUS_CHANGED: &str = "Software Update Status Changed";
/// Detail-type of a declaration to put in place.
pub const DECLARATION: &str = "Software Update Declaration";
/// The series each evaluation samples Macs into, by requirement and state.
pub const SERIES: &str = "software_update";

/// Failed Macs named in a failed delivery's message.
const SHOWN_FAILURES: usize = 5;

/// How long one MDM call may take.
const MDM_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

#[derive(Debug)]
struct SoftwareUpdateTarget {
    policy: Arc<SoftwareUpdate>,
    /// The section's MDM server.
    mdm: MdmTargetImpl,
    /// The requirements' own servers, by requirement name.
    own_mdm: BTreeMap<String, MdmTargetImpl>,
    assets: Option<AsyncAssetStore>,
    series: Option<Arc<dyn SeriesSink>>,
    clock: Clock,
}

pub(crate) fn build(t: &Target, cx: &BuildContext<'_>) -> Result<Box<dyn Deliver>, BuildError> {
    let TargetSpec::SoftwareUpdate(policy) = &t.spec else {
        return Err(super::wrong_spec(t, "software-update"));
    };
    let mut own_mdm = BTreeMap::new();
    for r in &policy.requirements {
        if let Some(m) = &r.mdm {
            own_mdm.insert(
                r.name.clone(),
                MdmTargetImpl::sender(&t.id, m, MDM_TIMEOUT, cx)?,
            );
        }
    }
    Ok(Box::new(SoftwareUpdateTarget {
        mdm: MdmTargetImpl::sender(&t.id, &policy.mdm, MDM_TIMEOUT, cx)?,
        own_mdm,
        policy: policy.clone(),
        assets: cx.assets.cloned(),
        series: cx.series.cloned(),
        clock: cx.clock,
    }))
}

impl Deliver for SoftwareUpdateTarget {
    fn deliver<'a>(
        &'a self,
        _payload: &'a Payload,
        ctx: &'a DeliveryContext<'_>,
    ) -> DeliverFuture<'a> {
        Box::pin(self.run(ctx))
    }

    /// A release sets off a step per Mac, each waiting on that Mac: one chain per
    /// step (command and answer, a change of state), not one per release, so a
    /// fleet of any size stays within the chain budget. The Macs' states bound the
    /// workflow: a Mac's next command waits for its answer to the last.
    fn starts_chains(&self) -> bool {
        true
    }
}

/// What one delivery did, for its outcome and the bus.
#[derive(Default)]
struct Out {
    emitted: Vec<(String, Event)>,
    sent: usize,
    changed: usize,
    failures: Vec<(String, DeliveryError)>,
}

fn text<'a>(v: &'a Value, pointer: &str) -> Option<&'a str> {
    v.pointer(pointer).and_then(Value::as_str)
}

impl SoftwareUpdateTarget {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::from((self.clock)())
    }

    async fn run(&self, ctx: &DeliveryContext<'_>) -> Result<Delivered, DeliveryError> {
        let assets = self.assets.as_ref().ok_or_else(|| {
            DeliveryError::Permanent("software-update: no asset store is configured".into())
        })?;
        let e = &ctx.event.event;
        let doc = e.to_value();
        let mut out = Out::default();
        let what = match (e.source.as_str(), e.detail_type.as_str()) {
            ("fleetbus.os-feed", "OS Release Published") => {
                if text(&doc, "/detail/platform") != Some("macOS") {
                    return Ok(status("not a macOS release: nothing to do", out));
                }
                let release = release_of(&doc)?;
                let version = release.product_version.clone();
                assets
                    .run("record release", move |a| a.put_os_release(&release))
                    .await?;
                self.evaluate(assets, ctx, &mut out).await?;
                format!("macOS {version} recorded; Macs evaluated")
            }
            ("fleetbus.scheduler", "Scheduled Event") => {
                // The schedule's rule hands the evaluation to the workflow's rule,
                // whose one target reads and writes the states one delivery at a
                // time: two targets evaluating at once would overwrite each other.
                let mut detail = Map::new();
                detail.insert("asked_by".into(), json!("schedule"));
                let now = self.now();
                let e = event(ctx, fleetbus_config::SU_EVALUATE, None, detail, now)?;
                out.emitted.push((self.policy.bus.clone(), e));
                return Ok(status("evaluation handed to the software-update rule", out));
            }
            (SU_SOURCE, fleetbus_config::SU_EVALUATE) => {
                self.evaluate(assets, ctx, &mut out).await?;
                "Macs evaluated".into()
            }
            _ => match self.on_device_event(assets, ctx, &doc, &mut out).await? {
                Some(serial) => format!("{serial} updated"),
                None => return Ok(status("not an event of the software-update workflow", out)),
            },
        };
        if !out.failures.is_empty() {
            let retryable = out.failures.iter().any(|(_, e)| e.is_retryable());
            // The first few by name (an MDM server down fails every Mac alike).
            let mut detail: Vec<String> = out
                .failures
                .iter()
                .take(SHOWN_FAILURES)
                .map(|(s, e)| format!("{s}: {e}"))
                .collect();
            if out.failures.len() > SHOWN_FAILURES {
                detail.push(format!("and {} more", out.failures.len() - SHOWN_FAILURES));
            }
            // The Macs whose commands went out have their state written: a retry
            // finds them waiting for their answer and sends nothing again.
            let msg = format!(
                "software-update: {} Mac(s) failed ({} command(s) sent): {}",
                out.failures.len(),
                out.sent,
                detail.join("; ")
            );
            return Err(if retryable {
                DeliveryError::Retryable(msg)
            } else {
                DeliveryError::Permanent(msg)
            });
        }
        Ok(status(
            &format!(
                "{what}: {} command(s) sent, {} change(s)",
                out.sent, out.changed
            ),
            out,
        ))
    }

    /// Every enrolled Mac against the policy: compliant ones noted, the others
    /// sent their next command. Each evaluation samples each Mac once into the
    /// series, by requirement and state (`compliant` or `behind`): at the hourly
    /// schedule, an hour's bucket is the fleet as it stood.
    async fn evaluate(
        &self,
        assets: &AsyncAssetStore,
        ctx: &DeliveryContext<'_>,
        out: &mut Out,
    ) -> Result<(), DeliveryError> {
        let (devices, states, releases) = assets
            .run("software-update fleet", |a| {
                let devices = a.list_devices(&DeviceFilter {
                    enrolled_only: true,
                    ..DeviceFilter::default()
                })?;
                let states = a.su_states()?;
                Ok::<_, DeliveryError>((devices, states, a.os_releases("macOS")?))
            })
            .await?;
        let mut states: BTreeMap<String, SuState> =
            states.into_iter().map(|s| (s.serial.clone(), s)).collect();
        let mut tally: BTreeMap<(String, &'static str), u64> = BTreeMap::new();
        let now = self.now();
        for d in devices.iter().filter(|d| is_mac(d)) {
            let Some(req) = self.requirement(d) else {
                continue;
            };
            let state = states
                .remove(&d.serial)
                .unwrap_or_else(|| new_state(d, now));
            let state = self
                .step_device(assets, ctx, d, req, &releases, state, out)
                .await;
            let compliant = state.stage == "compliant";
            *tally
                .entry((
                    req.name.clone(),
                    if compliant { "compliant" } else { "behind" },
                ))
                .or_default() += 1;
        }
        if let Some(sink) = &self.series {
            let at = (now.unix_timestamp_nanos() / 1_000_000) as i64;
            for ((requirement, state), n) in tally {
                let point = SeriesPoint {
                    series: SERIES.into(),
                    dimensions: BTreeMap::from([
                        ("requirement".into(), requirement),
                        ("state".into(), state.into()),
                    ]),
                    at,
                    count: n,
                    max_series: 1_000,
                };
                sink.add(point).await.map_err(|e| {
                    DeliveryError::Retryable(format!("software-update: counting: {e}"))
                })?;
            }
        }
        Ok(())
    }

    /// The first requirement that selects `d`.
    fn requirement(&self, d: &Device) -> Option<&SuRequirement> {
        self.policy
            .requirements
            .iter()
            .find(|r| r.selects(&d.tags, d.model.as_deref(), d.os_version.as_deref()))
    }

    /// One Mac's next step; its state written and its change told. Returns the
    /// state as it is now.
    #[allow(clippy::too_many_arguments)]
    async fn step_device(
        &self,
        assets: &AsyncAssetStore,
        ctx: &DeliveryContext<'_>,
        d: &Device,
        req: &SuRequirement,
        releases: &[OsRelease],
        mut state: SuState,
        out: &mut Out,
    ) -> SuState {
        let before = state.clone();
        let now = self.now();
        state.requirement = Some(req.name.clone());
        state.os_version = d.os_version.clone().or(state.os_version);
        state.udid = d.udid.clone().or(state.udid);
        if d.udid.is_none() {
            // No MDM command can reach it until it checks in.
            set(
                &mut state,
                "waiting for check-in",
                Some(
                    "no UDID in the asset store: the Mac has not checked in with the MDM server"
                        .into(),
                ),
                "its first check-in gives its UDID; the next evaluation goes on",
            );
            self.save(assets, ctx, &before, state.clone(), now, out)
                .await;
            return state;
        }
        let goal = match decide::goal(req, releases, state.os_version.as_deref()) {
            Ok(g) => g,
            Err(why) => {
                set(
                    &mut state,
                    "waiting for a release",
                    Some(why),
                    "the feed publishes the release the requirement names",
                );
                self.save(assets, ctx, &before, state.clone(), now, out)
                    .await;
                return state;
            }
        };
        state.required_version = Some(goal.version.clone());
        state.deadline = Some(decide::rfc3339(goal.deadline));
        match decide::decide(
            &self.policy,
            req,
            &state,
            state.os_version.as_deref(),
            &goal,
            now,
        ) {
            Decision::Compliant => {
                let v = state.os_version.clone().unwrap_or_default();
                set(
                    &mut state,
                    "compliant",
                    Some(format!("runs {v}, at least {}", goal.version)),
                    "nothing: the Mac is compliant",
                );
                state.pending_command = None;
                state.pending_since = None;
            }
            Decision::Wait(why) => {
                state.next = Some(why);
            }
            Decision::Declare(declaration) => {
                set(&mut state, "declared", None, "the Mac installs by the declaration's date and reports through its status items");
                state.reason = Some(goal.why.clone());
                state.install_action = Some(decide::DECLARED.into());
                match declaration_event(ctx, d, &goal, declaration, now) {
                    Ok(e) => out.emitted.push((ctx.event.meta.bus.clone(), e)),
                    Err(e) => out.failures.push((d.serial.clone(), e)),
                }
            }
            Decision::Send {
                request_type,
                payload,
                stage,
                next,
            } => match self
                .send(assets, ctx, (d, req), (request_type, payload), out)
                .await
            {
                Ok(()) => {
                    keep(&mut state, stage, &next);
                    if request_type == "ScheduleOSUpdate" {
                        state.install_action =
                            Some(decide::install_action(&self.policy, goal.deadline, now).into());
                        state.max_user_deferrals = Some(req.max_user_deferrals);
                        state.reason = Some(goal.why.clone());
                    }
                    state.pending_command = Some(request_type.into());
                    state.pending_since = Some(decide::rfc3339(now));
                }
                // Worth another attempt: the delivery fails, and its retry finds
                // the Macs already sent to waiting for their answers.
                Err(e) if e.is_retryable() => out.failures.push((d.serial.clone(), e)),
                // This Mac's own problem (the MDM server refused its command): on
                // its state, for a person; the other Macs go on.
                Err(e) => {
                    state.errors += 1;
                    set(
                        &mut state,
                        "failed",
                        Some(format!("{request_type} could not be sent: {e}")),
                        "a person: the MDM server refused the command",
                    );
                }
            },
        }
        self.save(assets, ctx, &before, state.clone(), now, out)
            .await;
        state
    }

    /// Enqueues one command (RequestType, keys) to `d` through its requirement's
    /// MDM server.
    async fn send(
        &self,
        assets: &AsyncAssetStore,
        ctx: &DeliveryContext<'_>,
        (d, req): (&Device, &SuRequirement),
        (request_type, payload): (&'static str, Value),
        out: &mut Out,
    ) -> Result<(), DeliveryError> {
        let udid = d.udid.clone().ok_or_else(|| {
            DeliveryError::Permanent(format!("{} has no UDID in the asset store", d.serial))
        })?;
        let uuid = command_uuid(&format!("{}|{request_type}", ctx.idempotency_key), &udid);
        let device = Addressee {
            udid,
            record: Some(d.clone()),
        };
        let template = Template {
            request_type,
            template: &payload,
            uses_pin: false,
            own_cause: true,
        };
        let mdm = self.own_mdm.get(&req.name).unwrap_or(&self.mdm);
        if let Some(event) = mdm.send_one(assets, ctx, &device, &uuid, &template).await? {
            out.emitted.push((ctx.event.meta.bus.clone(), event));
        }
        out.sent += 1;
        Ok(())
    }

    /// Writes `state` if it changed; a change of stage, action or reason is an event.
    async fn save(
        &self,
        assets: &AsyncAssetStore,
        ctx: &DeliveryContext<'_>,
        before: &SuState,
        mut state: SuState,
        now: OffsetDateTime,
        out: &mut Out,
    ) {
        if &state == before {
            return;
        }
        let told = state.stage != before.stage
            || state.install_action != before.install_action
            || state.reason != before.reason
            || state.required_version != before.required_version;
        state.updated_at = decide::rfc3339(now);
        if told {
            state.event_id = Some(ctx.event.event.id.clone());
        }
        let serial = state.serial.clone();
        let saved = state.clone();
        if let Err(e) = assets
            .run("save su state", move |a| a.put_su_state(&saved))
            .await
        {
            out.failures.push((serial, e.into()));
            return;
        }
        if told {
            out.changed += 1;
            match status_event(ctx, before, &state, now) {
                Ok(e) => out.emitted.push((ctx.event.meta.bus.clone(), e)),
                Err(e) => out.failures.push((state.serial.clone(), e)),
            }
        }
    }

    /// A command's answer, a check-in, a status report or a log event of one Mac.
    /// Returns its serial, or `None` when the event is not one the policy reads.
    async fn on_device_event(
        &self,
        assets: &AsyncAssetStore,
        ctx: &DeliveryContext<'_>,
        doc: &Value,
        out: &mut Out,
    ) -> Result<Option<String>, DeliveryError> {
        let e = &ctx.event.event;
        let serial = text(doc, "/detail/device/serial")
            .map(str::to_owned)
            .or_else(|| {
                e.resources
                    .iter()
                    .find_map(|r| r.strip_prefix("device/").map(str::to_owned))
            });
        let udid = text(doc, "/detail/device/udid").map(str::to_owned);
        let (device, state, releases) = assets
            .run("software-update device", move |a| {
                // By serial, else by UDID (an answer may carry only the UDID).
                let device = match &serial {
                    Some(s) => a.device(s)?,
                    None => None,
                };
                let device = match (device, &udid) {
                    (None, Some(u)) => a.device_by_udid(u)?,
                    (d, _) => d,
                };
                let state = match &device {
                    Some(d) => a.su_state(&d.serial)?,
                    None => None,
                };
                Ok::<_, DeliveryError>((device, state, a.os_releases("macOS")?))
            })
            .await?;
        let Some(device) = device else {
            return Ok(None);
        };
        let Some(req) = self.requirement(&device) else {
            return Ok(None);
        };
        let now = self.now();
        let mut state = state.unwrap_or_else(|| new_state(&device, now));
        let before = state.clone();
        // The reading of the event, then the next step where the reading calls for one.
        let mut follow = false;
        if e.detail_type == "MDM Command Result" {
            let request = text(doc, "/detail/command/request_type").unwrap_or("");
            let status_text = text(doc, "/detail/command/status").unwrap_or("");
            let ours = state.pending_command.as_deref() == Some(request);
            if ours {
                state.pending_command = None;
                state.pending_since = None;
            }
            match status_text {
                "NotNow" => {
                    let next = format!("{request} is sent again at the next evaluation");
                    set(
                        &mut state,
                        "refused",
                        Some(format!(
                            "the Mac answered NotNow to {request} (busy, locked or on battery)"
                        )),
                        &next,
                    );
                }
                "Error" | "CommandFormatError" => {
                    state.errors += 1;
                    let why =
                        error_chain(doc).unwrap_or_else(|| format!("{request}: {status_text}"));
                    let next = if state.errors >= self.policy.max_errors {
                        format!("a person: {} error answers in a row", state.errors)
                    } else {
                        "sent again at the next evaluation".into()
                    };
                    set(&mut state, "failed", Some(why), &next);
                }
                "Acknowledged" => {
                    state.errors = 0;
                    let response = doc
                        .pointer("/detail/command/response")
                        .cloned()
                        .unwrap_or(Value::Null);
                    match request {
                        "ScheduleOSUpdateScan" => {
                            set(
                                &mut state,
                                "scanned",
                                None,
                                "the Mac is asked which updates it found (AvailableOSUpdates)",
                            );
                            follow = ours;
                        }
                        "AvailableOSUpdates" => {
                            let goal = decide::goal(req, &releases, state.os_version.as_deref());
                            match goal.as_ref().map_err(Clone::clone).and_then(|g| {
                                decide::pick_update(&response, &g.version)
                                    .map(|(k, v)| (k.to_owned(), v.map(str::to_owned)))
                            }) {
                                Ok((key, version)) => {
                                    state.product_key = Some(key);
                                    state.available_version = version;
                                    state.install_action = None;
                                    set(
                                        &mut state,
                                        "update found",
                                        None,
                                        "the update the Mac named is scheduled (ScheduleOSUpdate)",
                                    );
                                    follow = ours;
                                }
                                Err(why) => set(
                                    &mut state,
                                    "no update offered",
                                    Some(why),
                                    "a new scan at the next evaluation",
                                ),
                            }
                        }
                        "ScheduleOSUpdate" => {
                            let result = response.pointer("/UpdateResults/0");
                            let refused = result
                                .and_then(|r| r.get("Status"))
                                .and_then(Value::as_str)
                                .is_some_and(|s| s == "Error");
                            if refused {
                                state.errors += 1;
                                let why = result
                                    .and_then(|r| r.get("ErrorChain"))
                                    .map(|c| c.to_string())
                                    .unwrap_or_else(|| "UpdateResults says Error".into());
                                set(
                                    &mut state,
                                    "failed",
                                    Some(why),
                                    "sent again at the next evaluation",
                                );
                            } else {
                                let action = state.install_action.clone().unwrap_or_default();
                                keep(
                                    &mut state,
                                    "scheduled",
                                    &format!(
                                        "the Mac acted on {action}; OSUpdateStatus follows it"
                                    ),
                                );
                                follow = ours;
                            }
                        }
                        "OSUpdateStatus" => {
                            if let Some((stage, progress)) =
                                decide::status_stage(&response, state.product_key.as_deref())
                            {
                                state.progress = progress.or(state.progress);
                                let next = match stage {
                                    "installing" => "the Mac restarts; its next check-in reports the new version",
                                    "downloaded" => "the Mac installs as its InstallAction says, escalated as the deadline nears",
                                    _ => "OSUpdateStatus again at the next evaluation",
                                };
                                keep(&mut state, stage, next);
                            }
                        }
                        _ => {}
                    }
                }
                _ => {}
            }
        } else if e.detail_type == "MDM Check-in"
            && text(doc, "/detail/action") == Some("declarative_management")
        {
            if let Some((stage, pending, failure)) = doc
                .pointer("/detail/checkin/Data")
                .and_then(decide::declarative_status)
            {
                if pending.is_some() {
                    state.available_version = pending;
                }
                let next = match stage {
                    "failed" => "a person: the status report's failure reason says why",
                    _ => "the Mac installs by the declaration's date",
                };
                let why = failure.or_else(|| state.reason.clone());
                set(&mut state, stage, why, next);
            } else {
                return Ok(None);
            }
        } else if e.source == "fleetbus.ulog" {
            let Some((stage, reason, deferral)) = decide::log_stage(&e.detail) else {
                return Ok(None);
            };
            let newest = state.log_time.as_deref().and_then(|t| {
                OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()
            });
            if deferral {
                // A deferral counts whenever its line arrives.
                state.deferrals_used += 1;
            } else if newest.is_some_and(|newest| e.time < newest) {
                // Logged before what the state already says: it does not move it.
            } else {
                state.log_time = Some(decide::rfc3339(e.time));
                if stage == "downloading" {
                    if let Some(p) = e.detail.get("portionComplete").and_then(Value::as_f64) {
                        state.progress = Some(p);
                    }
                }
                let next = match stage {
                    "abandoned" => {
                        "a new scan at the next evaluation; a person if it happens again"
                    }
                    "installing" => "the Mac restarts; its next check-in reports the new version",
                    _ => "the Mac goes on with the update",
                };
                let why = reason.or_else(|| state.reason.clone());
                set(&mut state, stage, why, next);
            }
        }
        // A version reported (a check-in, DeviceInformation) is the Mac's own word.
        if let Some(v) = text(doc, "/detail/device/os_version") {
            state.os_version = Some(v.to_owned());
        }
        let goal: Option<Goal> = decide::goal(req, &releases, state.os_version.as_deref()).ok();
        if let Some(g) = &goal {
            state.required_version = Some(g.version.clone());
            state.deadline = Some(decide::rfc3339(g.deadline));
            if decide::runs_at_least(state.os_version.as_deref(), &g.version) {
                let v = state.os_version.clone().unwrap_or_default();
                set(
                    &mut state,
                    "compliant",
                    Some(format!("runs {v}, at least {}", g.version)),
                    "nothing: the Mac is compliant",
                );
                state.pending_command = None;
                state.pending_since = None;
                follow = false;
            }
        }
        let serial = device.serial.clone();
        if follow && goal.is_some() {
            // The next command at once, as an evaluation would send it: the reading
            // is saved (and told) first, then the step from it.
            self.save(assets, ctx, &before, state.clone(), now, out)
                .await;
            self.step_device(assets, ctx, &device, req, &releases, state, out)
                .await;
            return Ok(Some(serial));
        }
        self.save(assets, ctx, &before, state, now, out).await;
        Ok(Some(serial))
    }
}

fn status(text: &str, out: Out) -> Delivered {
    Delivered {
        status: text.to_owned(),
        emitted: out.emitted,
    }
}

/// A device the policy is for: a Mac, or one whose model is not known.
fn is_mac(d: &Device) -> bool {
    !d.model.as_deref().is_some_and(|m| {
        ["iPhone", "iPad", "AppleTV", "Watch", "RealityDevice"]
            .iter()
            .any(|p| m.starts_with(p))
    })
}

fn new_state(d: &Device, now: OffsetDateTime) -> SuState {
    SuState {
        serial: d.serial.clone(),
        udid: d.udid.clone(),
        os_version: d.os_version.clone(),
        stage: "not started".into(),
        updated_at: decide::rfc3339(now),
        ..SuState::default()
    }
}

fn set(state: &mut SuState, stage: &str, reason: Option<String>, next: &str) {
    if !stage.is_empty() {
        state.stage = stage.to_owned();
    }
    state.reason = reason;
    state.next = Some(next.to_owned());
}

/// A new stage; the reason stays.
fn keep(state: &mut SuState, stage: &str, next: &str) {
    let reason = state.reason.take();
    set(state, stage, reason, next);
}

/// The ErrorChain of a command answer, as its descriptions: the MDM source's
/// snake_case keys, or Apple's where an event carries the chain as sent.
fn error_chain(doc: &Value) -> Option<String> {
    let chain = doc.pointer("/detail/command/error_chain")?;
    let field = |e: &Value, keys: [&str; 2]| keys.iter().find_map(|k| e.get(*k).cloned());
    let parts: Vec<String> = chain
        .as_array()?
        .iter()
        .map(|e| {
            let d = field(e, ["localized_description", "LocalizedDescription"])
                .or_else(|| field(e, ["us_english_description", "USEnglishDescription"]));
            let d = d
                .as_ref()
                .and_then(Value::as_str)
                .unwrap_or("no description");
            let domain = field(e, ["error_domain", "ErrorDomain"]);
            let code = field(e, ["error_code", "ErrorCode"]);
            match (domain.as_ref().and_then(Value::as_str), code) {
                (Some(domain), Some(code)) => format!("{d} ({domain} {code})"),
                _ => d.to_owned(),
            }
        })
        .collect();
    (!parts.is_empty()).then(|| parts.join("; "))
}

/// The release of an `OS Release Published` event.
fn release_of(doc: &Value) -> Result<OsRelease, DeliveryError> {
    let version = text(doc, "/detail/product_version").ok_or_else(|| {
        DeliveryError::Permanent("OS Release Published without detail.product_version".into())
    })?;
    Ok(OsRelease {
        platform: "macOS".into(),
        product_version: version.to_owned(),
        build: text(doc, "/detail/build").map(str::to_owned),
        release_date: text(doc, "/detail/release_date").map(str::to_owned),
        cves: doc
            .pointer("/detail/cves")
            .and_then(Value::as_u64)
            .map(|n| u32::try_from(n).unwrap_or(u32::MAX))
            .unwrap_or(0),
        actively_exploited: doc
            .pointer("/detail/actively_exploited")
            .and_then(Value::as_bool)
            == Some(true),
    })
}

fn event(
    ctx: &DeliveryContext<'_>,
    detail_type: &str,
    serial: Option<&str>,
    detail: Map<String, Value>,
    now: OffsetDateTime,
) -> Result<Event, DeliveryError> {
    let defaults = Defaults {
        account: ctx.event.event.account.clone(),
        region: ctx.event.event.region.clone(),
        now,
    };
    Event::from_value(
        json!({
            "source": SU_SOURCE,
            "detail-type": detail_type,
            "resources": serial.map(|s| vec![format!("device/{s}")]).unwrap_or_default(),
            "detail": detail,
        }),
        &defaults,
    )
    .map_err(|e| DeliveryError::Permanent(format!("software-update event: {e}")))
}

fn status_event(
    ctx: &DeliveryContext<'_>,
    before: &SuState,
    state: &SuState,
    now: OffsetDateTime,
) -> Result<Event, DeliveryError> {
    let mut detail = match serde_json::to_value(state) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    };
    detail.remove("event_id");
    detail.insert("previous_stage".into(), json!(before.stage));
    detail.insert(
        "device".into(),
        json!({"serial": state.serial, "udid": state.udid}),
    );
    event(ctx, STATUS_CHANGED, Some(&state.serial), detail, now)
}

fn declaration_event(
    ctx: &DeliveryContext<'_>,
    d: &Device,
    goal: &Goal,
    declaration: Value,
    now: OffsetDateTime,
) -> Result<Event, DeliveryError> {
    let mut detail = Map::new();
    detail.insert("device".into(), json!({"serial": d.serial, "udid": d.udid}));
    detail.insert("target_os_version".into(), json!(goal.version));
    detail.insert("deadline".into(), json!(decide::rfc3339(goal.deadline)));
    detail.insert("declaration".into(), declaration);
    event(ctx, DECLARATION, Some(&d.serial), detail, now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_chains_read_in_either_spelling() {
        let doc = json!({"detail": {"command": {"error_chain": [
            {"error_code": 12021, "error_domain": "MCMDMErrorDomain", "localized_description": "The device is not supervised."},
            {"ErrorCode": 4, "ErrorDomain": "SUErrorDomain", "USEnglishDescription": "Scan failed"},
            {}
        ]}}});
        assert_eq!(
            error_chain(&doc).unwrap(),
            "The device is not supervised. (MCMDMErrorDomain 12021); Scan failed (SUErrorDomain 4); no description"
        );
        assert_eq!(error_chain(&json!({"detail": {}})), None);
    }

    /// The policy's clock in these tests: 2026-12-04 12:00 UTC.
    fn noon() -> std::time::SystemTime {
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_796_385_600)
    }

    fn policy_config() -> fleetbus_config::Config {
        // Port 9 on loopback: nothing listens, so an enqueue fails (retryably).
        fleetbus_config::load_str(
            "c.yaml",
            "software_update:
  mdm: {url: \"http://127.0.0.1:9\", api_key: \"${env:HOME}\"}
  requirements: [{name: all, required_minimum_os_version: '15.1', required_installation_date: '2026-12-20T17:00:00Z'}]
",
            std::path::Path::new("."),
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }

    async fn deliver(
        config: &fleetbus_config::Config,
        rule: usize,
        assets: &AsyncAssetStore,
        event: Event,
    ) -> Result<Delivered, DeliveryError> {
        let mut cx = BuildContext::new(&config.connections).with_assets(Some(assets));
        cx.clock = noon;
        let target = build(&config.rules[rule].targets[0], &cx).unwrap();
        let stored = fleetbus_event::StoredEvent {
            event,
            meta: fleetbus_event::Meta::ingested("default", "test"),
        };
        let ctx = DeliveryContext {
            event: &stored,
            rule: &config.rules[rule].name,
            target: fleetbus_config::SU_TARGET,
            attempt: 1,
            idempotency_key: "k",
        };
        let payload =
            crate::transform::apply(&fleetbus_config::Input::Event, &stored, "r").unwrap();
        target.deliver(&payload, &ctx).await
    }

    #[tokio::test]
    async fn the_schedule_hands_its_evaluation_to_the_workflow_rule() {
        let config = policy_config();
        let assets = fleetbus_assets::AssetStore::open_in_memory()
            .unwrap()
            .to_async();
        let deadlines = config
            .rules
            .iter()
            .position(|r| r.name == fleetbus_config::SU_DEADLINES_RULE)
            .unwrap();
        let tick = Event::new("fleetbus.scheduler", "Scheduled Event", Map::new());
        let done = deliver(&config, deadlines, &assets, tick).await.unwrap();
        assert_eq!(done.emitted.len(), 1);
        let (bus, e) = &done.emitted[0];
        assert_eq!(bus, "default");
        assert_eq!(e.source, SU_SOURCE);
        assert_eq!(e.detail_type, fleetbus_config::SU_EVALUATE);
        assert_eq!(
            e.time_rfc3339(),
            "2026-12-04T12:00:00Z",
            "the injected clock"
        );
        // Other events are not the policy's: nothing happens, and it says so.
        let other = Event::new("jamf.pro", "ComputerCheckIn", Map::new());
        let done = deliver(&config, 0, &assets, other).await.unwrap();
        assert_eq!(done.status, "not an event of the software-update workflow");
    }

    /// An asset store holding one enrolled Mac on 14.6.
    fn enrolled_mac(serial: &str, udid: Option<&str>) -> fleetbus_assets::AssetStore {
        let store = fleetbus_assets::AssetStore::open_in_memory().unwrap();
        store
            .upsert_device(
                &fleetbus_assets::DeviceUpdate {
                    serial: serial.into(),
                    udid: udid.map(Into::into),
                    os_version: Some("14.6".into()),
                    enrollment_state: Some("enrolled".into()),
                    ..Default::default()
                },
                time::OffsetDateTime::now_utc(),
            )
            .unwrap();
        store
    }

    #[tokio::test]
    async fn a_mac_that_never_checked_in_waits_without_failing_the_evaluation() {
        let config = policy_config();
        let store = enrolled_mac("C02NEW", None);
        let assets = store.to_async();
        let ask = Event::new(SU_SOURCE, fleetbus_config::SU_EVALUATE, Map::new());
        let done = deliver(&config, 0, &assets, ask).await.unwrap();
        assert!(
            done.status.contains("0 command(s) sent, 1 change(s)"),
            "{}",
            done.status
        );
        let st = store.su_state("C02NEW").unwrap().unwrap();
        assert_eq!(st.stage, "waiting for check-in");
        assert_eq!(done.emitted.len(), 1, "its change of state");
        assert_eq!(done.emitted[0].1.detail_type, STATUS_CHANGED);
        assert_eq!(done.emitted[0].1.resources, ["device/C02NEW"]);
    }

    #[tokio::test]
    async fn a_failed_enqueue_is_retried_and_leaves_the_mac_as_it_was() {
        let config = policy_config();
        let store = enrolled_mac("C02X", Some("U-1"));
        let assets = store.to_async();
        let mut ask = Event::new(SU_SOURCE, fleetbus_config::SU_EVALUATE, Map::new());
        ask.id = "eval-1".into();
        let err = deliver(&config, 0, &assets, ask).await.unwrap_err();
        assert!(err.is_retryable(), "{err}");
        assert!(err.to_string().contains("C02X"), "{err}");
        // The goal is on record; nothing says a scan was sent.
        let st = store.su_state("C02X").unwrap().unwrap();
        assert_eq!(st.required_version.as_deref(), Some("15.1"));
        assert_eq!(st.pending_command, None);
        assert_eq!(st.stage, "not started");
    }
}
