//! rodent under load with a stdout that stalls (nobody reads it, or it is closed), then SIGTERM:
//! what a stuck log agent or a Docker log driver whose endpoint is gone does to a container.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio_util::sync::CancellationToken;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::{Log, PATIENCE, Rodent, Spawn, TempDir, binary, eventually_async, rodent};

pub const GRACE: Duration = Duration::from_secs(3);
const DRAIN_DELAY: Duration = Duration::from_millis(500);
/// The load: this many clients sending `GET /` back to back.
const CLIENTS: usize = 8;
/// How long the load may take to overflow the log buffer (8 MB).
const FILL_PATIENCE: Duration = Duration::from_secs(120);
/// Each request carries a request id this long, which its access line repeats: the 8 MB log
/// buffer fills in a couple of thousand requests rather than tens of thousands.
const REQUEST_ID_BYTES: usize = 4096;

/// What the scenario saw.
#[derive(Debug)]
pub struct Outcome {
    pub exit_code: Option<i32>,
    /// From SIGTERM to the exit of the process the test started.
    pub exit_after: Duration,
    /// `rodent_log_lines_dropped_total` before SIGTERM.
    pub dropped: u64,
    /// Requests answered 200 before SIGTERM, and after it (during the drain delay).
    pub served_before: u64,
    pub served_after: u64,
    /// Requests that failed before SIGTERM.
    pub failed_before: u64,
}

/// rodent with a 3 s grace.
pub fn spawn() -> Spawn {
    rodent()
        .env("RODENT_SHUTDOWN_GRACE", "3s")
        .env("RODENT_DRAIN_DELAY", "500ms")
        .env("RODENT_REQUEST_TIMEOUT", "1s")
}

/// Starts `spawn` through `wrapper` (empty, or `unshare` for PID 1), with `stdout` failing
/// once it is ready; loads it until it has dropped log lines; sends SIGTERM to the process
/// `signalled` picks (given the started one's PID) and waits for the exit.
pub async fn run(
    spawn: Spawn,
    wrapper: &[&str],
    stdout: Stdout,
    signalled: impl FnOnce(Pid) -> Pid,
) -> Outcome {
    let dir = TempDir::new("stalled-stdout");
    let command = spawn.command_via(wrapper, binary());
    let (mut rodent, reader) = spawn.spawn_with_stdout(command, stdout, &dir);
    let reader = match stdout {
        Stdout::Unread => Some(reader),
        Stdout::Closed => {
            drop(reader);
            None
        }
    };
    let target = signalled(rodent.pid());

    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let stop = CancellationToken::new();
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        let (url, ok, failed, stop) = (rodent.url("/"), ok.clone(), failed.clone(), stop.clone());
        let request_id = "r".repeat(REQUEST_ID_BYTES);
        clients.push(tokio::spawn(async move {
            let client = crate::client_builder().timeout(PATIENCE).build().unwrap();
            while !stop.is_cancelled() {
                let sent = client.get(&url).header("x-request-id", &request_id).send();
                let answered = match sent.await {
                    Ok(r) => r.status() == 200 && r.bytes().await.is_ok(),
                    Err(_) => false,
                };
                match answered {
                    true => {
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    false => {
                        failed.fetch_add(1, Ordering::Relaxed);
                        // Refused once the listener closes: do not spin.
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            }
        }));
    }

    let dropped = eventually_async(FILL_PATIENCE, async || {
        match rodent
            .metrics()
            .await
            .expect("rodent_log_lines_dropped_total")
        {
            0 => Err(format!("no log line dropped yet with stdout {stdout:?}")),
            dropped => Ok(dropped),
        }
    })
    .await;
    let served_before = ok.load(Ordering::Relaxed);
    let failed_before = failed.load(Ordering::Relaxed);

    let signalled_at = Instant::now();
    kill(target, Signal::SIGTERM).expect("SIGTERM is delivered");
    // The drain delay: still serving, from a process whose stdout is stuck.
    tokio::time::sleep(DRAIN_DELAY / 2).await;
    let served_after = ok.load(Ordering::Relaxed) - served_before;

    let status = tokio::task::spawn_blocking(move || {
        let status = rodent.try_wait_exit(GRACE + Duration::from_secs(2));
        (status, signalled_at.elapsed(), rodent)
    });
    let (status, exit_after, _rodent) = status.await.expect("waiting does not panic");
    stop.cancel();
    for c in clients {
        let _ = c.await;
    }
    drop(reader);
    let status = status.unwrap_or_else(|| {
        panic!("rodent (stdout {stdout:?}) did not exit within {GRACE:?} + 2 s of SIGTERM")
    });
    Outcome {
        exit_code: status.code(),
        exit_after,
        dropped,
        served_before,
        served_after,
        failed_before,
    }
}

/// The assertions every stalled-stdout scenario shares.
pub fn assert_exits_in_time(outcome: &Outcome, expected_code: i32) {
    assert_eq!(outcome.exit_code, Some(expected_code), "{outcome:?}");
    assert!(
        outcome.exit_after < GRACE + Duration::from_secs(2),
        "{outcome:?}"
    );
    assert!(outcome.dropped > 0, "{outcome:?}");
    assert!(outcome.served_before > 0, "{outcome:?}");
    assert_eq!(outcome.failed_before, 0, "{outcome:?}");
    assert!(
        outcome.served_after > 0,
        "nothing was served during the drain delay: {outcome:?}"
    );
}

/// What the test does with rodent's stdout once rodent is ready, playing a log agent that fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stdout {
    /// A FIFO that the test keeps open and stops reading: a stuck log agent, a blocking
    /// Docker log driver whose endpoint is gone.
    Unread,
    /// A pipe whose read end the test closes: every write fails (EPIPE).
    Closed,
}

impl Spawn {
    /// Starts `command` (built from this spawn) with stdout on a FIFO (`Unread`, made in `dir`)
    /// or a pipe (`Closed`). The test reads it until the `ready` line, then stops reading; the
    /// read end is returned, for the test to hold (`Unread`) or drop (`Closed`) from then on.
    /// stderr is read to the end as usual.
    pub fn spawn_with_stdout(
        self,
        mut command: Command,
        stdout: Stdout,
        dir: &TempDir,
    ) -> (Rodent, Box<dyn std::io::Read + Send>) {
        use std::os::fd::OwnedFd;
        use std::os::unix::fs::OpenOptionsExt;

        let (reader, writer): (std::fs::File, OwnedFd) = match stdout {
            Stdout::Unread => {
                let path = dir.join("stdout.fifo");
                nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600))
                    .expect("the FIFO is made");
                // Opened for reading without waiting for a writer, then made blocking again.
                let reader = std::fs::OpenOptions::new()
                    .read(true)
                    .custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits())
                    .open(&path)
                    .expect("the FIFO opens for reading");
                nix::fcntl::fcntl(
                    &reader,
                    nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::empty()),
                )
                .expect("the FIFO's read end is made blocking");
                let writer = std::fs::OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .expect("the FIFO opens for writing");
                (reader, writer.into())
            }
            Stdout::Closed => {
                let (reader, writer) =
                    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).expect("a pipe");
                (reader.into(), writer)
            }
        };
        command.stdout(Stdio::from(writer));
        let mut child = command.spawn().expect("the rodent binary starts");
        // The child has its copy; ours would keep the pipe writable after it exits.
        drop(command);
        let log = Arc::new(Log::default());
        let stderr = child.stderr.take().expect("stderr is piped");
        {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    log.push(line);
                }
                log.stream_ended();
            });
        }
        let (hand_back, handed_back) = std::sync::mpsc::channel();
        {
            let log = log.clone();
            std::thread::spawn(move || {
                let mut lines = BufReader::new(reader);
                let mut line = String::new();
                loop {
                    line.clear();
                    if !matches!(lines.read_line(&mut line), Ok(n) if n > 0) {
                        log.stream_ended();
                        return;
                    }
                    let ready =
                        serde_json::from_str::<Value>(&line).is_ok_and(|l| l["message"] == "ready");
                    log.push(line.trim_end().to_string());
                    if ready {
                        // Nothing more of it is read: as far as the log goes, it has ended.
                        log.stream_ended();
                        let _ = hand_back.send(lines.into_inner());
                        return;
                    }
                }
            });
        }
        let mut rodent = Rodent {
            child,
            log,
            addr: None,
        };
        let listening = rodent.wait_log(|l| l["message"] == "listening");
        let addr = listening["address"]
            .as_str()
            .expect("the listening line has an address");
        rodent.addr = Some(addr.parse().expect("the address parses"));
        let reader = handed_back
            .recv_timeout(PATIENCE)
            .expect("rodent logs `ready` on stdout");
        (rodent, Box::new(reader))
    }
}
