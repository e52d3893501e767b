//! `fleetbus serve`'s process lifecycle: one process per data directory; SIGTERM
//! drains requests in flight up to a deadline, and a second SIGTERM exits at once.
//! Through the real binary, with real signals.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

const TOKEN: &str = "shutdown-test-token";

struct Serve {
    child: Child,
    addr: String,
    _dir: tempfile::TempDir,
}

fn start() -> Serve {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("api-token"), TOKEN).unwrap();
    std::fs::write(
        dir.path().join("fleetbus.yaml"),
        "server:\n  data_dir: data\n  api_tokens: [\"${file:api-token}\"]\nrules: []\n",
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_fleetbus"))
        .args(["serve", "-c"])
        .arg(dir.path().join("fleetbus.yaml"))
        .args(["--listen", "127.0.0.1:0"])
        .env("FLEETBUS_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start fleetbus");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    Serve {
        child,
        addr,
        _dir: dir,
    }
}

impl Serve {
    /// A PutEvents request whose body never arrives in full.
    fn half_sent_request(&self) -> TcpStream {
        let mut conn = TcpStream::connect(&self.addr).unwrap();
        write!(
            conn,
            "POST /v1/events HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {TOKEN}\r\n\
             content-type: application/json\r\ncontent-length: 1000\r\n\r\n{{\"Entries\": ["
        )
        .unwrap();
        conn
    }

    fn sigterm(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    fn exited_within(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn sigterm_with_a_half_sent_request_exits_after_the_drain_deadline() {
    let mut serve = start();
    let _conn = serve.half_sent_request();
    std::thread::sleep(Duration::from_millis(200));
    serve.sigterm();
    // The drain deadline is 10 s; the engine's grace for deliveries 10 s more.
    let status = serve
        .exited_within(Duration::from_secs(40))
        .expect("fleetbus serve never exited with a request half sent");
    assert!(status.success(), "{status}");
}

#[test]
fn a_second_sigterm_exits_at_once() {
    let mut serve = start();
    let _conn = serve.half_sent_request();
    std::thread::sleep(Duration::from_millis(200));
    serve.sigterm();
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        serve.exited_within(Duration::ZERO).is_none(),
        "exited before the drain deadline with a request in flight"
    );
    serve.sigterm();
    let status = serve
        .exited_within(Duration::from_secs(5))
        .expect("a second SIGTERM was ignored");
    assert_eq!(status.code(), Some(130), "{status}");
}

#[test]
fn a_second_serve_on_the_same_data_directory_is_refused_naming_the_holder() {
    let first = start();
    let config = first._dir.path().join("fleetbus.yaml");
    let second = Command::new(env!("CARGO_BIN_EXE_fleetbus"))
        .args(["serve", "-c"])
        .arg(&config)
        .args(["--listen", "127.0.0.1:0"])
        .env("FLEETBUS_LOG", "warn")
        .output()
        .unwrap();
    assert!(!second.status.success(), "a second serve started");
    let stderr = String::from_utf8_lossy(&second.stderr);
    let data = first._dir.path().join("data");
    assert!(
        stderr.contains(&format!(
            "data directory {} is in use by another fleetbus serve (pid {})",
            data.display(),
            first.child.id()
        )),
        "{stderr}"
    );
}
