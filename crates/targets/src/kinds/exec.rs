//! The exec target, fleetbus's self-hosted Lambda: runs a program (an argv list,
//! never through a shell) with the payload on stdin.
//!
//! Environment: the inherited environment is cleared except `PATH`, `HOME` and
//! `LANG`, so the server's own secrets do not leak into handlers. Then come
//! `FLEETBUS_EVENT_ID`, `FLEETBUS_RULE`, `FLEETBUS_TARGET`, `FLEETBUS_ATTEMPT`,
//! `FLEETBUS_IDEMPOTENCY_KEY`, `FLEETBUS_DETAIL_TYPE`, `FLEETBUS_SOURCE`, and
//! last the target's configured `env` (which may override any of them).
//!
//! Outcome: exit 0 is success; another exit code or a signal is retryable, with
//! the last lines of stderr; a program that does not exist or cannot be executed
//! is permanent. The program runs in its own process group; the timeout kills
//! the whole group (what it started too). Stdout and stderr are captured up
//! to 1 MiB each; the rest is read and dropped so the program never blocks.
//!
//! With `emit_events`, each stdout line that is a JSON object is read as an
//! EventBridge envelope (absent `account`/`region` from the matched event, absent
//! `time` now) and put on the bus the matched event came from (the rule's bus;
//! an envelope has no field naming a bus). A line without an `id` gets one
//! derived from the delivery's idempotency key and the line's position, so a
//! retried run emits the same ids. Other lines (not JSON, or an invalid
//! envelope) are ignored and counted in the status.

use super::{BuildContext, Deliver, DeliverFuture};
use fleetbus_config::{Target, TargetSpec};

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::Duration;

use fleetbus_event::{Defaults, Event};
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

use crate::{BuildError, Delivered, DeliveryContext, DeliveryError, Payload};

/// Most bytes of stdout, and of stderr, kept from one run.
const CAPTURE_LIMIT: usize = 1024 * 1024;
/// Stderr lines quoted in a failure.
const STDERR_LINES: usize = 10;
/// Most characters of stderr quoted in a failure.
const STDERR_CHARS: usize = 2000;
/// The inherited variables a program keeps.
const KEPT_ENV: [&str; 3] = ["PATH", "HOME", "LANG"];

#[derive(Debug)]
pub struct ExecTarget {
    program: String,
    args: Vec<String>,
    env: BTreeMap<String, String>,
    emit_events: bool,
    timeout: Duration,
}

impl ExecTarget {
    pub(crate) fn new(
        id: &str,
        command: &[String],
        env: &BTreeMap<String, String>,
        emit_events: bool,
        timeout: Duration,
    ) -> Result<ExecTarget, BuildError> {
        let Some((program, args)) = command.split_first().filter(|(p, _)| !p.is_empty()) else {
            return Err(BuildError::Other {
                target: id.to_owned(),
                reason: "command is empty (expected an argv list)".into(),
            });
        };
        Ok(ExecTarget {
            program: program.clone(),
            args: args.to_vec(),
            env: env.clone(),
            emit_events,
            timeout,
        })
    }

    pub(crate) async fn deliver(
        &self,
        payload: &Payload,
        ctx: &DeliveryContext<'_>,
    ) -> Result<Delivered, DeliveryError> {
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args)
            .env_clear()
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        // Its own process group, so a timeout ends what it started too.
        #[cfg(unix)]
        cmd.process_group(0);
        for name in KEPT_ENV {
            if let Some(v) = std::env::var_os(name) {
                cmd.env(name, v);
            }
        }
        let e = &ctx.event.event;
        cmd.env("FLEETBUS_EVENT_ID", &e.id)
            .env("FLEETBUS_RULE", ctx.rule)
            .env("FLEETBUS_TARGET", ctx.target)
            .env("FLEETBUS_ATTEMPT", ctx.attempt.to_string())
            .env("FLEETBUS_IDEMPOTENCY_KEY", ctx.idempotency_key)
            .env("FLEETBUS_DETAIL_TYPE", &e.detail_type)
            .env("FLEETBUS_SOURCE", &e.source)
            .envs(&self.env);

        let mut child = cmd.spawn().map_err(|err| {
            let msg = format!("cannot run {:?}: {err}", self.program);
            match err.kind() {
                std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied => {
                    DeliveryError::Permanent(msg)
                }
                _ => DeliveryError::Retryable(msg),
            }
        })?;
        let pid = child.id();
        let stdin = child.stdin.take();
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        let input = payload.to_bytes();

        let run = async {
            let feed = async {
                if let Some(mut stdin) = stdin {
                    // A program that exits without reading its input is not an error.
                    let _ = stdin.write_all(&input).await;
                    let _ = stdin.shutdown().await;
                }
            };
            let (_, out, err, status) =
                tokio::join!(feed, capture(stdout), capture(stderr), child.wait());
            (out, err, status)
        };
        let (out, err, status) = match tokio::time::timeout(self.timeout, run).await {
            Ok(done) => done,
            Err(_) => {
                kill_group(pid);
                // Dropping `child` then kills the leader too (kill_on_drop).
                return Err(DeliveryError::Retryable(format!(
                    "{:?} timed out after {:?} and was killed",
                    self.program, self.timeout
                )));
            }
        };
        let status = status.map_err(|e| {
            DeliveryError::Retryable(format!("cannot wait for {:?}: {e}", self.program))
        })?;
        if !status.success() {
            let how = match status.code() {
                Some(code) => format!("exit {code}"),
                None => signal_text(&status),
            };
            let tail = stderr_tail(&err);
            return Err(DeliveryError::Retryable(if tail.is_empty() {
                format!("{:?} failed: {how}", self.program)
            } else {
                format!("{:?} failed: {how}: {tail}", self.program)
            }));
        }
        let mut delivered = Delivered {
            status: "exit 0".into(),
            emitted: Vec::new(),
        };
        if self.emit_events {
            let (emitted, ignored) = parse_events(&out, ctx);
            delivered.status = format!("exit 0, {} events emitted", emitted.len());
            if ignored > 0 {
                delivered
                    .status
                    .push_str(&format!(", {ignored} lines ignored"));
            }
            delivered.emitted = emitted;
        }
        Ok(delivered)
    }
}

/// Kills the process group a timed-out program leads. The leader is not reaped
/// yet (its `Child` is alive), so its pid, the group id, cannot have been reused.
#[cfg(unix)]
#[allow(unsafe_code)] // kill(2), see SAFETY below
fn kill_group(pid: Option<u32>) {
    if let Some(pgid) = pid.and_then(|p| i32::try_from(p).ok()).filter(|p| *p > 1) {
        // SAFETY: kill(2) takes plain integers and touches no memory of ours.
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
        }
    }
}

#[cfg(not(unix))]
fn kill_group(_: Option<u32>) {}

#[cfg(unix)]
fn signal_text(status: &std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match status.signal() {
        Some(sig) => format!("killed by signal {sig}"),
        None => "no exit code".into(),
    }
}

#[cfg(not(unix))]
fn signal_text(_: &std::process::ExitStatus) -> String {
    "no exit code".into()
}

/// Reads a stream to its end, keeping at most [`CAPTURE_LIMIT`] bytes.
async fn capture<R: AsyncRead + Unpin>(stream: Option<R>) -> Vec<u8> {
    let mut kept = Vec::new();
    let Some(mut stream) = stream else {
        return kept;
    };
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let room = CAPTURE_LIMIT.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
    kept
}

/// The last few lines of stderr, bounded.
fn stderr_tail(err: &[u8]) -> String {
    let text = String::from_utf8_lossy(err);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let tail = lines[lines.len().saturating_sub(STDERR_LINES)..].join(" | ");
    let count = tail.chars().count();
    if count > STDERR_CHARS {
        let skip = count - STDERR_CHARS;
        format!("…{}", tail.chars().skip(skip).collect::<String>())
    } else {
        tail
    }
}

/// Events from stdout lines, and how many lines were ignored.
fn parse_events(out: &[u8], ctx: &DeliveryContext<'_>) -> (Vec<(String, Event)>, usize) {
    let cause = &ctx.event;
    let bus = if cause.meta.bus.is_empty() {
        "default".to_owned()
    } else {
        cause.meta.bus.clone()
    };
    let defaults = Defaults {
        account: cause.event.account.clone(),
        region: cause.event.region.clone(),
        now: time::OffsetDateTime::now_utc(),
    };
    let mut emitted = Vec::new();
    let mut ignored = 0;
    for (n, line) in String::from_utf8_lossy(out).lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let event = match serde_json::from_str::<Value>(line) {
            Ok(Value::Object(mut map)) => {
                if !map.contains_key("id") {
                    let id = super::bus::derived_id(ctx.idempotency_key, n);
                    map.insert("id".into(), Value::String(id));
                }
                Event::from_value(Value::Object(map), &defaults)
            }
            _ => {
                ignored += 1;
                continue;
            }
        };
        match event {
            Ok(event) => emitted.push((bus.clone(), event)),
            Err(e) => {
                tracing::warn!(rule = ctx.rule, target = ctx.target, line = n + 1, error = %e,
                    "exec output line is not a valid event; ignored");
                ignored += 1;
            }
        }
    }
    (emitted, ignored)
}

/// `kind: exec`.
pub(crate) fn build(t: &Target, _: &BuildContext<'_>) -> Result<Box<dyn Deliver>, BuildError> {
    let TargetSpec::Exec {
        command,
        env,
        emit_events,
    } = &t.spec
    else {
        return Err(super::wrong_spec(t, "exec"));
    };
    Ok(Box::new(ExecTarget::new(
        &t.id,
        command,
        env,
        *emit_events,
        t.timeout,
    )?))
}

impl Deliver for ExecTarget {
    fn deliver<'a>(
        &'a self,
        payload: &'a Payload,
        ctx: &'a DeliveryContext<'_>,
    ) -> DeliverFuture<'a> {
        Box::pin(ExecTarget::deliver(self, payload, ctx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleetbus_event::{Meta, StoredEvent};
    use serde_json::json;

    fn stored() -> StoredEvent {
        let mut event = Event::new("mdm", "Device Enrolled", Default::default());
        event.account = "acct".into();
        event.region = "eu".into();
        StoredEvent {
            event,
            meta: Meta::ingested("fleet", "api"),
        }
    }

    fn ctx(e: &StoredEvent) -> DeliveryContext<'_> {
        DeliveryContext {
            event: e,
            rule: "enrolled",
            target: "handler",
            attempt: 2,
            idempotency_key: "k:enrolled:handler",
        }
    }

    fn sh(script: &str, emit: bool, timeout: Duration) -> ExecTarget {
        let mut env = BTreeMap::new();
        env.insert("EXTRA".to_owned(), "yes".to_owned());
        ExecTarget::new(
            "handler",
            &["/bin/sh".into(), "-c".into(), script.into()],
            &env,
            emit,
            timeout,
        )
        .unwrap()
    }

    #[tokio::test]
    async fn stdin_env_and_emitted_events() {
        let e = stored();
        let script = r#"
            input=$(cat)
            printf '{"source":"handler","detail-type":"Seen","detail":{"input":%s,"attempt":"%s","rule":"%s","target":"%s","key":"%s","dt":"%s","src":"%s","id":"%s","extra":"%s","secret":"%s"}}\n' \
              "$input" "$FLEETBUS_ATTEMPT" "$FLEETBUS_RULE" "$FLEETBUS_TARGET" "$FLEETBUS_IDEMPOTENCY_KEY" \
              "$FLEETBUS_DETAIL_TYPE" "$FLEETBUS_SOURCE" "$FLEETBUS_EVENT_ID" "$EXTRA" "${FLEETBUS_TEST_SECRET:-unset}"
            echo 'not json'
            echo '[1,2]'
            echo '{"source":"x"}'
            echo '{"id":"fixed","source":"handler","detail-type":"Second"}'
        "#;
        std::env::set_var("FLEETBUS_TEST_SECRET", "leak");
        let out = sh(script, true, Duration::from_secs(10))
            .deliver(&Payload::Json(json!({"n": 1})), &ctx(&e))
            .await
            .unwrap();
        assert_eq!(out.status, "exit 0, 2 events emitted, 3 lines ignored");
        assert_eq!(out.emitted.len(), 2);
        let (bus, first) = &out.emitted[0];
        assert_eq!(bus, "fleet");
        assert_eq!(first.account, "acct");
        assert_eq!(
            serde_json::Value::Object(first.detail.clone()),
            json!({"input": {"n": 1}, "attempt": "2", "rule": "enrolled", "target": "handler",
                   "key": "k:enrolled:handler", "dt": "Device Enrolled", "src": "mdm",
                   "id": e.event.id, "extra": "yes", "secret": "unset"})
        );
        assert_eq!(
            first.id,
            crate::kinds::bus::derived_id("k:enrolled:handler", 0)
        );
        assert_eq!(out.emitted[1].1.id, "fixed");
    }

    #[tokio::test]
    async fn without_emit_events_output_is_ignored() {
        let e = stored();
        let out = sh(
            "cat >/dev/null; echo '{\"source\":\"a\",\"detail-type\":\"b\"}'",
            false,
            Duration::from_secs(10),
        )
        .deliver(&Payload::Text("x".into()), &ctx(&e))
        .await
        .unwrap();
        assert_eq!(out.status, "exit 0");
        assert!(out.emitted.is_empty());
    }

    #[tokio::test]
    async fn nonzero_exit_is_retryable_with_stderr_tail() {
        let e = stored();
        let err = sh(
            "for i in $(seq 1 30); do echo line$i >&2; done; exit 3",
            false,
            Duration::from_secs(10),
        )
        .deliver(&Payload::Text(String::new()), &ctx(&e))
        .await
        .unwrap_err();
        let DeliveryError::Retryable(msg) = err else {
            panic!("expected retryable")
        };
        assert!(msg.contains("exit 3"), "{msg}");
        assert!(msg.contains("line30") && msg.contains("line21"), "{msg}");
        assert!(!msg.contains("line20 "), "{msg}");
    }

    #[tokio::test]
    async fn timeout_kills_the_program() {
        let e = stored();
        let started = std::time::Instant::now();
        let err = sh("sleep 30", false, Duration::from_millis(300))
            .deliver(&Payload::Text(String::new()), &ctx(&e))
            .await
            .unwrap_err();
        assert!(err.is_retryable());
        assert!(err.to_string().contains("timed out"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[tokio::test]
    async fn timeout_kills_what_the_program_started() {
        let e = stored();
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("pid");
        let script = format!("sleep 30 & echo $! > {}; wait", pidfile.display());
        let err = sh(&script, false, Duration::from_millis(500))
            .deliver(&Payload::Text(String::new()), &ctx(&e))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("timed out"), "{err}");
        let pid = std::fs::read_to_string(&pidfile).unwrap();
        let stat = format!("/proc/{}/stat", pid.trim());
        let mut gone = false;
        for _ in 0..50 {
            // Gone, or a zombie waiting for its new parent to reap it.
            match std::fs::read_to_string(&stat) {
                Err(_) => gone = true,
                Ok(s) => {
                    gone = s
                        .rsplit(')')
                        .next()
                        .is_some_and(|r| r.trim_start().starts_with('Z'))
                }
            }
            if gone {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(gone, "grandchild {} still running", pid.trim());
    }

    #[tokio::test]
    async fn missing_or_non_executable_program_is_permanent() {
        let e = stored();
        let t = ExecTarget::new(
            "h",
            &["/nonexistent/fleetbus-handler".into()],
            &BTreeMap::new(),
            false,
            Duration::from_secs(5),
        )
        .unwrap();
        let err = t
            .deliver(&Payload::Text(String::new()), &ctx(&e))
            .await
            .unwrap_err();
        assert!(!err.is_retryable(), "{err}");

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("not-executable");
        std::fs::write(&file, "#!/bin/sh\nexit 0\n").unwrap();
        let t = ExecTarget::new(
            "h",
            &[file.to_string_lossy().into_owned()],
            &BTreeMap::new(),
            false,
            Duration::from_secs(5),
        )
        .unwrap();
        let err = t
            .deliver(&Payload::Text(String::new()), &ctx(&e))
            .await
            .unwrap_err();
        assert!(!err.is_retryable(), "{err}");
        assert!(ExecTarget::new("h", &[], &BTreeMap::new(), false, Duration::ZERO).is_err());
    }

    #[tokio::test]
    async fn large_output_and_unread_stdin_do_not_block() {
        let e = stored();
        // 3 MiB of output, input never read: capture is bounded, no deadlock.
        let out = sh(
            "head -c 3145728 /dev/zero | tr '\\0' 'a'; echo",
            true,
            Duration::from_secs(20),
        )
        .deliver(&Payload::Text("y".repeat(1 << 20)), &ctx(&e))
        .await
        .unwrap();
        assert_eq!(out.status, "exit 0, 0 events emitted, 1 lines ignored");
    }

    #[test]
    fn stderr_tail_is_bounded() {
        let long = "x".repeat(10_000);
        let tail = stderr_tail(long.as_bytes());
        assert!(tail.chars().count() <= STDERR_CHARS + 1);
    }
}
