//! The log target: one compact JSON line per delivery, to stdout or to a file
//! opened in append mode. A text payload is written as a JSON string, so every
//! line parses.
//!
//! Rotation: before a write would take the file past `max_bytes`, the file is
//! renamed to `<path>.1` (`.1` to `.2`, and so on; the oldest beyond `keep` is
//! removed) and a new file is started. With `keep: 0` the old content is
//! dropped. A single line larger than `max_bytes` is still written whole.
//!
//! Each line is one `write` on a file opened with `O_APPEND`, under a plain mutex:
//! a short blocking system call costs far less than handing every line to tokio's
//! blocking pool (two thread hand-offs a line), and nothing is buffered in the
//! process, so a line reported written is in the kernel.

use super::{BuildContext, Deliver, DeliverFuture};
use crate::{BuildError, DeliveryContext};
use fleetbus_config::{Target, TargetSpec};

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde_json::Value;

use crate::{Delivered, DeliveryError, Payload};

#[derive(Debug)]
pub struct LogTarget {
    sink: Sink,
}

#[derive(Debug)]
enum Sink {
    Stdout(Mutex<()>),
    File {
        path: PathBuf,
        max_bytes: u64,
        keep: u32,
        /// The open file and its size, opened on first use.
        state: Mutex<Option<(File, u64)>>,
    },
}

impl LogTarget {
    pub(crate) fn new(path: Option<&PathBuf>, max_bytes: u64, keep: u32) -> LogTarget {
        let sink = match path {
            None => Sink::Stdout(Mutex::new(())),
            Some(path) => Sink::File {
                path: path.clone(),
                max_bytes,
                keep,
                state: Mutex::new(None),
            },
        };
        LogTarget { sink }
    }

    pub(crate) async fn deliver(&self, payload: &Payload) -> Result<Delivered, DeliveryError> {
        let mut line = match payload {
            Payload::Json(v) => serde_json::to_vec(v),
            Payload::Text(t) => serde_json::to_vec(&Value::String(t.clone())),
        }
        .map_err(|e| DeliveryError::Permanent(format!("cannot serialize payload: {e}")))?;
        line.push(b'\n');
        match &self.sink {
            Sink::Stdout(lock) => {
                let _guard = lock.lock().unwrap_or_else(|p| p.into_inner());
                // A line to stdout is a short blocking write; nothing awaits while
                // the lock is held.
                let mut out = std::io::stdout().lock();
                out.write_all(&line)
                    .and_then(|()| out.flush())
                    .map_err(|e| {
                        DeliveryError::Retryable(format!("cannot write to stdout: {e}"))
                    })?;
            }
            Sink::File {
                path,
                max_bytes,
                keep,
                state,
            } => {
                let mut state = state.lock().unwrap_or_else(|p| p.into_inner());
                write_file(&mut state, path, *max_bytes, *keep, &line).map_err(|e| {
                    // The file is reopened next time, after whatever went wrong.
                    *state = None;
                    DeliveryError::Retryable(format!("cannot write {}: {e}", path.display()))
                })?;
            }
        }
        Ok(Delivered {
            status: "written".into(),
            emitted: Vec::new(),
        })
    }
}

fn open(path: &Path) -> std::io::Result<(File, u64)> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let file = OpenOptions::new().create(true).append(true).open(path)?;
    let size = file.metadata()?.len();
    Ok((file, size))
}

fn write_file(
    state: &mut Option<(File, u64)>,
    path: &Path,
    max_bytes: u64,
    keep: u32,
    line: &[u8],
) -> std::io::Result<()> {
    if state.is_none() {
        *state = Some(open(path)?);
    }
    let size = state.as_ref().map_or(0, |(_, s)| *s);
    if size > 0 && size.saturating_add(line.len() as u64) > max_bytes {
        *state = None;
        rotate(path, keep)?;
        *state = Some(open(path)?);
    }
    let Some((file, size)) = state.as_mut() else {
        return Err(std::io::Error::other("log file not open"));
    };
    file.write_all(line)?;
    *size += line.len() as u64;
    Ok(())
}

fn numbered(path: &Path, n: u32) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

/// `path` -> `path.1` -> ... -> `path.<keep>`; the oldest is dropped.
fn rotate(path: &Path, keep: u32) -> std::io::Result<()> {
    if keep == 0 {
        return remove_if_present(path);
    }
    remove_if_present(&numbered(path, keep))?;
    for n in (1..keep).rev() {
        let from = numbered(path, n);
        if from.try_exists()? {
            std::fs::rename(&from, numbered(path, n + 1))?;
        }
    }
    std::fs::rename(path, numbered(path, 1))
}

fn remove_if_present(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// `kind: log`.
pub(crate) fn build(t: &Target, _: &BuildContext<'_>) -> Result<Box<dyn Deliver>, BuildError> {
    let TargetSpec::Log {
        path,
        max_bytes,
        keep,
    } = &t.spec
    else {
        return Err(super::wrong_spec(t, "log"));
    };
    Ok(Box::new(LogTarget::new(path.as_ref(), *max_bytes, *keep)))
}

impl Deliver for LogTarget {
    fn deliver<'a>(
        &'a self,
        payload: &'a Payload,
        _: &'a DeliveryContext<'_>,
    ) -> DeliverFuture<'a> {
        Box::pin(LogTarget::deliver(self, payload))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn target(path: Option<PathBuf>, max_bytes: u64, keep: u32) -> LogTarget {
        LogTarget::new(path.as_ref(), max_bytes, keep)
    }

    fn lines(path: &Path) -> Vec<Value> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[tokio::test]
    async fn writes_json_lines_and_appends() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/events.log");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, "{\"old\":true}\n").unwrap();
        let t = target(Some(path.clone()), 1 << 20, 3);
        let out = t
            .deliver(&Payload::Json(json!({"a": [1, 2]})))
            .await
            .unwrap();
        assert_eq!(out.status, "written");
        t.deliver(&Payload::Text("plain \"text\"".into()))
            .await
            .unwrap();
        assert_eq!(
            lines(&path),
            vec![
                json!({"old": true}),
                json!({"a": [1, 2]}),
                json!("plain \"text\"")
            ]
        );
    }

    #[tokio::test]
    async fn rotates_past_max_bytes_and_keeps_n() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.log");
        // Each line is 10 bytes: {"n":100}\n; max 25 => two lines per file.
        let t = target(Some(path.clone()), 25, 2);
        for n in 100..110 {
            t.deliver(&Payload::Json(json!({ "n": n }))).await.unwrap();
        }
        assert_eq!(lines(&path), vec![json!({"n": 108}), json!({"n": 109})]);
        assert_eq!(
            lines(&numbered(&path, 1)),
            vec![json!({"n": 106}), json!({"n": 107})]
        );
        assert_eq!(
            lines(&numbered(&path, 2)),
            vec![json!({"n": 104}), json!({"n": 105})]
        );
        assert!(!numbered(&path, 3).exists());
        for f in [path.clone(), numbered(&path, 1), numbered(&path, 2)] {
            assert!(std::fs::metadata(&f).unwrap().len() <= 25);
        }
    }

    #[tokio::test]
    async fn keep_zero_truncates_and_concurrent_writes_stay_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.log");
        let t = std::sync::Arc::new(target(Some(path.clone()), 1 << 20, 0));
        let mut tasks = Vec::new();
        for n in 0..50 {
            let t = t.clone();
            tasks.push(tokio::spawn(async move {
                t.deliver(&Payload::Json(json!({"n": n, "pad": "x".repeat(100)})))
                    .await
                    .unwrap();
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(lines(&path).len(), 50);

        let small = target(Some(path.clone()), 15, 0);
        small
            .deliver(&Payload::Json(json!({"n": 1})))
            .await
            .unwrap();
        assert_eq!(lines(&path), vec![json!({"n": 1})]);
        assert!(!numbered(&path, 1).exists());
    }

    #[tokio::test]
    async fn stdout_sink_writes() {
        let t = target(None, 0, 0);
        assert!(t.deliver(&Payload::Json(json!({"hello": 1}))).await.is_ok());
    }

    #[tokio::test]
    async fn unwritable_path_is_retryable() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("file");
        std::fs::write(&blocker, "x").unwrap();
        let t = target(Some(blocker.join("events.log")), 100, 1);
        let err = t.deliver(&Payload::Json(json!({}))).await.unwrap_err();
        assert!(err.is_retryable(), "{err}");
    }
}
