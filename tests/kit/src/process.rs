//! The real `rodent` process: started with a clean environment on port 0, its JSON log read
//! line by line, signalled, waited for.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;

use crate::{PATIENCE, binary, client, try_eventually};

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
        self.command_via(&[], binary())
    }

    /// Runs `rodent <args>` (after this spawn's own arguments, with its environment) to its
    /// end: its exit code, stdout and stderr. Panics if a signal killed it.
    pub fn run(&self, args: &[&str]) -> (i32, String, String) {
        let output = self
            .command()
            .args(args)
            .output()
            .expect("the rodent binary runs");
        (
            code_of(&output),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
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
    pub(crate) fn push(&self, line: String) {
        self.lines.lock().unwrap().push(line);
        self.grew.notify_all();
    }

    pub(crate) fn stream_ended(&self) {
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
    pub(crate) child: Child,
    pub(crate) log: Arc<Log>,
    pub(crate) addr: Option<SocketAddr>,
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

    /// The exit status, once the process has exited within `patience` (and its output has
    /// been read to the end); `None` if it still runs.
    pub fn try_wait_exit(&mut self, patience: Duration) -> Option<ExitStatus> {
        let child = &mut self.child;
        let status = try_eventually(patience, || {
            child
                .try_wait()
                .expect("waiting on the child works")
                .ok_or(())
        })
        .ok()?;
        self.log.wait_read_to_end(Duration::from_secs(2));
        Some(status)
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

impl Spawn {
    /// Starts another program with this environment and waits for it like rodent: a program
    /// that prints rodent's `listening` (with `address`) and `ready` JSON lines, such as the
    /// baseline.
    pub fn spawn_program(self, program: &Path) -> Rodent {
        let command = self.command_via(&[], program);
        self.spawn_command(command)
    }
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
