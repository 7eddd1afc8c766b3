//! Shared by the integration test binaries: start the real `rodent` binary on port 0, read its
//! JSON log, send it real signals, and wait for it with deadlines (never sleeps that hope).
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;

pub mod load;
pub mod namespace;
pub mod plot;
pub mod stalled;

pub const BINARY: &str = env!("CARGO_BIN_EXE_rodent");

/// How long a test waits for something that should take milliseconds. Generous: the suite runs
/// in parallel on two cores.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// A `rodent` process about to be started.
pub struct Spawn {
    env: Vec<(String, String)>,
    args: Vec<String>,
    wait_for_listening: bool,
}

/// Starts `rodent serve` on 127.0.0.1 with an OS-picked port, no PID file, a drain delay of
/// 50 ms, and a clean environment (nothing inherited but PATH), so that a developer's own
/// RODENT_* variables never leak into a test.
pub fn rodent() -> Spawn {
    Spawn {
        env: vec![
            ("RODENT_HOST".into(), "127.0.0.1".into()),
            ("RODENT_PORT".into(), "0".into()),
            ("RODENT_PID_FILE".into(), String::new()),
            ("RODENT_DRAIN_DELAY".into(), "50ms".into()),
            ("RODENT_LOG".into(), "debug,hyper=info,h2=info".into()),
        ],
        args: Vec::new(),
        wait_for_listening: true,
    }
}

impl Spawn {
    pub fn env(mut self, key: &str, value: impl Into<String>) -> Self {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.to_string(), value.into()));
        self
    }

    pub fn without_env(mut self, key: &str) -> Self {
        self.env.retain(|(k, _)| k != key);
        self
    }

    /// The environment the process gets, for a launcher that passes variables on itself (such
    /// as `systemd-socket-activate -E`).
    pub fn vars(&self) -> impl Iterator<Item = (&str, &str)> {
        self.env.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    pub fn arg(mut self, arg: &str) -> Self {
        self.args.push(arg.to_string());
        self
    }

    /// Returns as soon as the process is started, without waiting for the `listening` line
    /// (for processes expected to fail at startup).
    pub fn no_wait(mut self) -> Self {
        self.wait_for_listening = false;
        self
    }

    pub fn command(&self) -> Command {
        self.command_via(&[], Path::new(BINARY))
    }

    pub fn spawn(self) -> Rodent {
        let command = self.command();
        self.spawn_command(command)
    }

    /// Starts `command` (built from this spawn, see [`Spawn::command_via`]) and waits for it
    /// like [`Spawn::spawn`] does.
    pub fn spawn_command(self, mut command: Command) -> Rodent {
        let mut child = command.spawn().expect("the rodent binary starts");
        let log = Arc::new(Log::default());
        for stream in [
            Box::new(child.stdout.take().expect("stdout is piped"))
                as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().expect("stderr is piped")),
        ] {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    log.push(line);
                }
                log.stream_ended();
            });
        }
        let mut rodent = Rodent {
            child,
            log,
            addr: None,
        };
        if self.wait_for_listening {
            let listening = rodent.wait_log(|l| l["message"] == "listening");
            let addr = listening["address"]
                .as_str()
                .expect("the listening line has an address");
            rodent.addr = Some(addr.parse().expect("the address parses"));
            rodent.wait_log(|l| l["message"] == "ready");
        }
        rodent
    }
}

/// Every line the process wrote, stdout and stderr, in arrival order.
#[derive(Default)]
pub struct Log {
    lines: Mutex<Vec<String>>,
    grew: Condvar,
    /// stdout and stderr that reached their end: 2 once the process and everything that
    /// inherited its output are gone.
    ended: Mutex<u8>,
    ended_changed: Condvar,
}

impl Log {
    fn push(&self, line: String) {
        self.lines.lock().unwrap().push(line);
        self.grew.notify_all();
    }

    fn stream_ended(&self) {
        *self.ended.lock().unwrap() += 1;
        self.ended_changed.notify_all();
    }

    /// Waits until both streams are read to their end, so that every line the process wrote
    /// is in `lines`. Bounded: a daemon's grandchild may keep them open.
    fn wait_read_to_end(&self, patience: Duration) {
        let ended = self.ended.lock().unwrap();
        let _ = self
            .ended_changed
            .wait_timeout_while(ended, patience, |n| *n < 2);
    }
}

/// A running `rodent` process. Killed (SIGKILL) when dropped, if still running.
pub struct Rodent {
    child: Child,
    log: Arc<Log>,
    addr: Option<SocketAddr>,
}

impl Rodent {
    pub fn addr(&self) -> SocketAddr {
        self.addr
            .expect("the process was waited for until listening")
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr())
    }

    /// `GET path` on a fresh connection; panics if no response comes.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        client()
            .get(self.url(path))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path} got no response: {e}"))
    }

    pub fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }

    pub fn signal(&self, signal: Signal) {
        kill(self.pid(), signal).expect("the signal is delivered");
    }

    /// Every log line that parsed as JSON.
    pub fn json_lines(&self) -> Vec<Value> {
        self.log
            .lines
            .lock()
            .unwrap()
            .iter()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Every line as written.
    pub fn raw_lines(&self) -> Vec<String> {
        self.log.lines.lock().unwrap().clone()
    }

    /// Waits for a JSON log line matching `matches` and returns it.
    pub fn wait_log(&self, matches: impl Fn(&Value) -> bool) -> Value {
        self.try_wait_log(PATIENCE, matches).unwrap_or_else(|| {
            panic!(
                "no matching log line within {PATIENCE:?}; the log was:\n{}",
                self.raw_lines().join("\n")
            )
        })
    }

    pub fn try_wait_log(
        &self,
        patience: Duration,
        matches: impl Fn(&Value) -> bool,
    ) -> Option<Value> {
        let deadline = Instant::now() + patience;
        let mut lines = self.log.lines.lock().unwrap();
        let mut seen = 0;
        loop {
            for line in &lines[seen..] {
                if let Ok(value) = serde_json::from_str::<Value>(line)
                    && matches(&value)
                {
                    return Some(value);
                }
            }
            seen = lines.len();
            let left = deadline.checked_duration_since(Instant::now())?;
            lines = self.log.grew.wait_timeout(lines, left).unwrap().0;
        }
    }

    /// Waits for the process to exit, at most `patience`; panics (with the log) otherwise.
    pub fn wait_exit(&mut self, patience: Duration) -> ExitStatus {
        self.try_wait_exit(patience).unwrap_or_else(|| {
            panic!(
                "the process did not exit within {patience:?}; the log was:\n{}",
                self.raw_lines().join("\n")
            )
        })
    }

    pub fn try_wait_exit(&mut self, patience: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + patience;
        loop {
            if let Some(status) = self.child.try_wait().expect("waiting on the child works") {
                self.log.wait_read_to_end(Duration::from_secs(2));
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    pub fn is_running(&mut self) -> bool {
        self.child
            .try_wait()
            .expect("waiting on the child works")
            .is_none()
    }

    /// The exit code, or a panic with the log if the process was killed by a signal.
    pub fn exit_code(&mut self, patience: Duration) -> i32 {
        let status = self.wait_exit(patience);
        status.code().unwrap_or_else(|| {
            panic!(
                "the process was killed by a signal ({status}); the log was:\n{}",
                self.raw_lines().join("\n")
            )
        })
    }
}

impl Drop for Rodent {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A fresh HTTP client that keeps no idle connections, so every request opens its own.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(PATIENCE)
        .build()
        .expect("the client builds")
}

/// A per-test scratch directory, removed when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(name: &str) -> Self {
        use std::sync::atomic::{AtomicU64, Ordering};
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let unique = format!(
            "rodent-test-{name}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let path = std::env::temp_dir().join(unique);
        std::fs::create_dir_all(&path).expect("the temp dir is created");
        Self(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Whether an external tool the test needs is present. In CI (`CI` set) a missing tool fails
/// the test; elsewhere the test is skipped with a message saying what to install.
pub fn require_tool(tool: &str, install_hint: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if found {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!("{tool} is required in CI but is not installed ({install_hint})");
    }
    eprintln!("SKIPPED: {tool} is not installed ({install_hint})");
    false
}

/// An HTTP/1.1 response read off a raw socket.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("the body is JSON")
    }
}

/// Connects with a read timeout, for tests that talk HTTP by hand.
pub fn connect(addr: SocketAddr) -> std::net::TcpStream {
    let stream = std::net::TcpStream::connect(addr).expect("rodent accepts the connection");
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    stream
}

/// Reads one response with a `Content-Length` body (every response rodent itself writes has
/// one), leaving the connection ready for the next.
pub fn read_response(stream: &mut std::net::TcpStream) -> std::io::Result<RawResponse> {
    use std::io::Read;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte)? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("connection closed after {} bytes of head", head.len()),
            ));
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .expect("a status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let length = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .map_or(0, |(_, v)| v.parse().expect("a numeric content-length"));
    let mut body = vec![0; length];
    stream.read_exact(&mut body)?;
    Ok(RawResponse {
        status,
        headers,
        body,
    })
}

/// Sends a GET on an open connection and reads the answer.
pub fn get_on(stream: &mut std::net::TcpStream, path: &str) -> std::io::Result<RawResponse> {
    use std::io::Write;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: rodent\r\n\r\n")?;
    read_response(stream)
}

/// Reads until the peer closes; `Ok` when it closed cleanly (FIN), `Err` on a reset.
pub fn read_to_close(stream: &mut std::net::TcpStream) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest)?;
    Ok(rest)
}

/// Waits until `/metrics` shows `n` requests in flight on `route`.
pub async fn wait_in_flight(rodent: &Rodent, route: &str, n: i64) {
    let wanted = format!("rodent_http_requests_in_flight{{route=\"{route}\"}} {n}");
    let deadline = Instant::now() + PATIENCE;
    let client = client();
    loop {
        let text = client
            .get(rodent.url("/metrics"))
            .send()
            .await
            .expect("/metrics answers")
            .text()
            .await
            .expect("a text body");
        if text.lines().any(|l| l == wanted) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "never saw `{wanted}` in /metrics:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

impl Spawn {
    /// The command for `program` (rodent or a binary built on it, such as an example) with this
    /// spawn's arguments and clean environment, started through `wrapper` (a program and its
    /// arguments, such as `unshare --pid --fork --mount-proc`; empty for none).
    pub fn command_via(&self, wrapper: &[&str], program: &Path) -> Command {
        let mut command = match wrapper.split_first() {
            Some((first, rest)) => {
                let mut command = Command::new(first);
                command.args(rest).arg(program);
                command
            }
            None => Command::new(program),
        };
        command
            .args(&self.args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command
    }
}

/// An example program built next to the `rodent` binary (`cargo test` builds examples).
pub fn example(name: &str) -> PathBuf {
    Path::new(BINARY)
        .parent()
        .expect("the binary lives in a directory")
        .join("examples")
        .join(name)
}

/// The exit code of a finished command, or a panic saying which signal killed it.
pub fn code_of(output: &std::process::Output) -> i32 {
    output.status.code().unwrap_or_else(|| {
        panic!(
            "killed by a signal ({}); stderr:\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

/// Whether this test can run as root. In CI a missing privilege fails the test; elsewhere the
/// test is skipped with a message saying why.
pub fn require_root(why: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!("this test must run as root in CI ({why})");
    }
    eprintln!("SKIPPED: not root ({why})");
    false
}

/// The bare axum baseline (`examples/baseline.rs`), which `cargo test` builds next to rodent.
pub fn baseline_binary() -> PathBuf {
    let binary = example("baseline");
    assert!(
        binary.exists(),
        "{} is missing: `cargo test` builds the examples, but a run limited with `--test` \
         does not; build them first with `scripts/test --no-run`",
        binary.display()
    );
    binary
}

impl Spawn {
    /// Starts another program with this environment and waits for it like rodent: a program
    /// that prints rodent's `listening` (with `address`) and `ready` JSON lines, such as the
    /// baseline.
    pub fn spawn_program(self, program: &Path) -> Rodent {
        let command = self.command_via(&[], program);
        self.spawn_command(command)
    }
}

/// A port that was free a moment ago, for a program that must be given its port up front (a
/// load balancer, a replacement bound to the port of the instance it replaces).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("the OS picks a free port")
        .port()
}

/// A counter's value in `/metrics` (`name` with its `_total`), or `None` if it is not there.
pub async fn counter(rodent: &Rodent, name: &str) -> Option<u64> {
    let text = client()
        .get(rodent.url("/metrics"))
        .send()
        .await
        .expect("/metrics answers")
        .text()
        .await
        .expect("a text body");
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}
