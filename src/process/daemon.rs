//! Daemon mode (`rodent serve --detach`): detach from the terminal and the caller, and tell the
//! caller the truth about how the start went.
//!
//! The classic sequence, in order: fork (the caller waits), `setsid` (a new session, no
//! controlling terminal), fork again (the daemon is not a session leader, so it can never
//! acquire a terminal by opening one), `chdir /` (no directory kept busy), `umask 027`, stdin
//! from `/dev/null`, stdout and stderr to `RODENT_LOG_FILE` or `/dev/null`.
//!
//! The caller keeps the read end of a pipe; the daemon keeps the write end and sends one line:
//! `ready <pid> <address>` once it serves, or `failed <code> <message>` when it cannot start (the
//! PID file is held, the port is taken, a startup hook failed). If the pipe closes with nothing
//! on it, the daemon died before it could say anything. Only then does the caller exit, so a
//! script that runs `rodent serve --detach && curl ...` never races the start.
//!
//! After a failure the daemon keeps the pipe open until it exits, and the caller waits for
//! that end of file: when `serve --detach` returns an error, the failed daemon is gone and its
//! PID file with it, so an immediate `rodent status` or a retry sees a consistent world.
//!
//! The PID file is taken by the daemon itself, after the forks, so it holds the daemon's PID.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use nix::fcntl::OFlag;
use nix::sys::signal::{SigmaskHow, pthread_sigmask};
use nix::sys::stat::{Mode, umask};
use nix::sys::wait::waitpid;
use nix::unistd::{ForkResult, Pid, chdir, fork, pipe2, setsid};

use crate::config::Vars;
use crate::exit::Exit;
use crate::lifecycle::Event;
use crate::process::handoff;
use crate::process::signal::handled_set;
use crate::process::threads;

/// The internal variable that hands the report pipe to a service started by a supervisor
/// (see [`handoff`]).
pub(crate) const FD_VARIABLE: &str = "RODENT_DAEMON_FD";

/// Which side of the fork this process is on.
#[derive(Debug)]
pub(crate) enum Detached {
    /// The process that ran `serve --detach`; the daemon has reported.
    Launcher(Outcome),
    /// The daemon: it must report through this once it serves or fails.
    Daemon(Report),
}

/// How the daemon's start went, as the launcher learnt it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Serving; `pid` is the PID in the PID file (the process to signal).
    Ready {
        pid: Pid,
        address: Option<SocketAddr>,
    },
    /// The daemon could not start and exits with `code`.
    Failed { code: u8, message: String },
    /// The pipe closed with nothing on it: the daemon died before it could report.
    Vanished,
}

/// Why the process could not detach.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DetachError {
    #[error("cannot open the log file {} (RODENT_LOG_FILE): {source}", path.display())]
    LogFile { path: PathBuf, source: io::Error },
    #[error(
        "cannot detach: {} and forking now could copy a process in an unknown state",
        match .0 {
            Some(n) => format!("{n} threads are running,"),
            None => "whether other threads run is unknown (/proc/self/task cannot be read),".into(),
        }
    )]
    Threads(Option<usize>),
    #[error("cannot detach: {call} failed: {source}")]
    Os {
        call: &'static str,
        source: io::Error,
    },
}

fn os<E: Into<io::Error>>(call: &'static str) -> impl FnOnce(E) -> DetachError {
    move |source| DetachError::Os {
        call,
        source: source.into(),
    }
}

/// Detaches. Must run before any thread exists (it forks twice, and only the forking thread
/// survives a fork); that is checked. `log_file` is opened here, before the forks, so that an
/// unwritable one is reported by the launcher like any other error.
///
/// The daemon keeps only its standard streams, its report pipe and the descriptors in `keep`
/// (a listening socket it inherited and claimed): every other descriptor it inherited from its
/// caller is closed. A caller's descriptor would otherwise stay open for the daemon's whole
/// life, and in every successor of a restart: `flock LOCK rodent serve --detach` would hold
/// LOCK until the last of them exits.
pub(crate) fn detach(log_file: Option<&Path>, keep: &[RawFd]) -> Result<Detached, DetachError> {
    if !threads::single() {
        return Err(DetachError::Threads(threads::count()));
    }
    let output = match log_file {
        Some(path) => OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o640)
            .open(path)
            .map_err(|source| DetachError::LogFile {
                path: path.to_path_buf(),
                source,
            })?,
        None => dev_null(true)?,
    };
    let input = dev_null(false)?;
    let (read, write) = pipe2(OFlag::O_CLOEXEC).map_err(os("pipe"))?;

    // SAFETY: no other thread exists (checked above), so the child is a complete copy.
    match unsafe { fork() }.map_err(os("fork"))? {
        ForkResult::Parent { child } => {
            drop(write);
            // The intermediate process exits at once; reap it so it leaves no zombie.
            let _ = waitpid(child, None);
            // The launcher only waits from here on: let Ctrl-C and SIGTERM end the wait.
            let _ = pthread_sigmask(SigmaskHow::SIG_UNBLOCK, Some(&handled_set()), None);
            Ok(Detached::Launcher(wait_for_report(read)))
        }
        ForkResult::Child => {
            drop(read);
            let report = Report::new(write, nix::unistd::getpid());
            let report_fd = report.raw_fd();
            let steps = move || -> Result<(), DetachError> {
                setsid().map_err(os("setsid"))?;
                // SAFETY: still the only thread.
                if let ForkResult::Parent { .. } = unsafe { fork() }.map_err(os("fork"))? {
                    // SAFETY: _exit is async-signal-safe; the intermediate process must not run
                    // destructors or exit hooks that belong to the launcher.
                    unsafe { libc::_exit(0) };
                }
                chdir("/").map_err(os("chdir"))?;
                umask(Mode::from_bits_truncate(0o027));
                nix::unistd::dup2_stdin(&input).map_err(os("dup2"))?;
                nix::unistd::dup2_stdout(&output).map_err(os("dup2"))?;
                nix::unistd::dup2_stderr(&output).map_err(os("dup2"))?;
                drop(input);
                drop(output);
                let mut kept = keep.to_vec();
                kept.extend(report_fd);
                close_all_but(&kept).map_err(os("close_range"))?;
                Ok(())
            };
            if let Err(e) = steps() {
                report.failed(Exit::Failure, &e.to_string());
                // SAFETY: as above: this copy of the launcher ends here, reported.
                unsafe { libc::_exit(1) };
            }
            Ok(Detached::Daemon(Report {
                pid: nix::unistd::getpid(),
                ..report
            }))
        }
    }
}

/// Closes every descriptor from 3 up, except those in `keep`. Nothing else may refer to the
/// descriptors closed: call it in a single-threaded process, before anything but `keep` was
/// opened or claimed.
///
/// `close_range(2)` (Linux 5.9), called through `syscall` as nix has no wrapper and glibc only
/// since 2.34; on older kernels, the descriptors `/proc/self/fd` lists.
fn close_all_but(keep: &[RawFd]) -> io::Result<()> {
    let mut keep: Vec<u32> = keep
        .iter()
        .filter_map(|&fd| u32::try_from(fd).ok())
        .filter(|&fd| fd >= 3)
        .collect();
    keep.sort_unstable();
    keep.dedup();
    let mut ranges = Vec::new();
    let mut first = 3;
    for fd in keep.iter().copied() {
        if first < fd {
            ranges.push((first, fd - 1));
        }
        first = fd + 1;
    }
    ranges.push((first, u32::MAX));
    for (first, last) in ranges {
        // SAFETY: close_range takes two descriptor numbers and flags; by this function's
        // contract nothing refers to the descriptors it closes.
        if unsafe { libc::syscall(libc::SYS_close_range, first, last, 0) } != 0 {
            let error = io::Error::last_os_error();
            if error.raw_os_error() != Some(libc::ENOSYS) {
                return Err(error);
            }
            return close_listed_but(&keep);
        }
    }
    Ok(())
}

/// [`close_all_but`] without `close_range`.
fn close_listed_but(keep: &[u32]) -> io::Result<()> {
    let open: Vec<u32> = std::fs::read_dir("/proc/self/fd")?
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse().ok())
        .collect();
    for fd in open {
        if fd >= 3 && !keep.contains(&fd) {
            // SAFETY: as in close_all_but; the directory's own descriptor, listed too, is
            // closed already, and EBADF is harmless.
            unsafe { libc::close(fd as RawFd) };
        }
    }
    Ok(())
}

fn dev_null(write: bool) -> Result<File, DetachError> {
    OpenOptions::new()
        .read(!write)
        .write(write)
        .open("/dev/null")
        .map_err(os("open /dev/null"))
}

fn wait_for_report(read: OwnedFd) -> Outcome {
    read_report(File::from(read))
}

/// Reads a report off the launcher's end of a report pipe: up to the first line when it says
/// ready, to the end of file (the reporter's exit) otherwise. Blocks.
pub(super) fn read_report(mut pipe: File) -> Outcome {
    let mut received = Vec::new();
    let mut chunk = [0u8; 512];
    while !received.starts_with(b"ready ") || !received.contains(&b'\n') {
        match pipe.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => received.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    parse(&String::from_utf8_lossy(&received))
}

fn parse(report: &str) -> Outcome {
    let line = report.lines().next().unwrap_or_default();
    let mut words = line.splitn(3, ' ');
    match (words.next(), words.next(), words.next()) {
        (Some("ready"), Some(pid), address) => match pid.parse() {
            Ok(pid) => Outcome::Ready {
                pid: Pid::from_raw(pid),
                address: address.and_then(|a| a.parse().ok()),
            },
            Err(_) => Outcome::Vanished,
        },
        (Some("failed"), Some(code), message) => Outcome::Failed {
            code: code.parse().unwrap_or(Exit::Failure.code()),
            message: message.unwrap_or("the daemon failed to start").to_string(),
        },
        _ => Outcome::Vanished,
    }
}

/// The daemon's end of the pipe: one report, then it closes.
#[derive(Debug)]
pub(crate) struct Report {
    pipe: Mutex<Pipe>,
    /// The PID the launcher announces: the daemon's own, or its supervisor's when a supervisor
    /// holds the PID file.
    pid: Pid,
    address: Mutex<Option<SocketAddr>>,
}

#[derive(Debug)]
struct Pipe {
    /// Closed once the launcher has been told the daemon is ready.
    file: Option<File>,
    reported: bool,
}

impl Report {
    /// The reporting end of a report pipe; `pid` is the PID to announce.
    pub(super) fn new(pipe: OwnedFd, pid: Pid) -> Self {
        Self {
            pipe: Mutex::new(Pipe {
                file: Some(File::from(pipe)),
                reported: false,
            }),
            pid,
            address: Mutex::new(None),
        }
    }

    /// The report pipe handed down by the supervisor that spawned this process, claimed here
    /// once: the supervisor's PID is the one to announce.
    pub(crate) fn inherited(vars: &Vars) -> Option<Self> {
        let supervisor = handoff::handed_down(vars, FD_VARIABLE)?;
        Some(Self::new(supervisor.claim()?, supervisor.parent))
    }

    /// The descriptor to hand to a child process, which then reports in our place.
    pub(crate) fn raw_fd(&self) -> Option<RawFd> {
        self.pipe
            .lock()
            .expect("the report lock is never poisoned: nothing panics while holding it")
            .file
            .as_ref()
            .map(AsRawFd::as_raw_fd)
    }

    /// Tells the launcher the daemon serves, and closes this end: the launcher returns now.
    pub(crate) fn ready(&self, address: Option<SocketAddr>) {
        let address = address.map_or("-".to_string(), |a| a.to_string());
        self.send(&format!("ready {} {address}\n", self.pid), true);
    }

    /// Tells the launcher the daemon could not start, and why (one line). The pipe stays open
    /// until this process drops the report or exits, which the launcher waits for: drop it
    /// only once the PID file is released.
    pub(crate) fn failed(&self, exit: Exit, message: &str) {
        let message: String = message.replace('\n', " ").chars().take(400).collect();
        self.send(&format!("failed {} {message}\n", exit.code()), false);
    }

    /// Reports at the right lifecycle events; for [`Rodent::on_event`](crate::Rodent::on_event).
    pub(crate) fn observe(&self, event: &Event) {
        match event {
            Event::Listening(address) => {
                *self
                    .address
                    .lock()
                    .expect("the address lock is never poisoned") = Some(*address);
            }
            Event::Ready => {
                let address = *self
                    .address
                    .lock()
                    .expect("the address lock is never poisoned");
                self.ready(address);
            }
            Event::StartFailed(cause) => self.failed(Exit::Failure, cause),
            _ => {}
        }
    }

    /// Sends the one report; later events have nobody to tell.
    fn send(&self, line: &str, close: bool) {
        let mut pipe = self
            .pipe
            .lock()
            .expect("the report lock is never poisoned: nothing panics while holding it");
        if pipe.reported {
            return;
        }
        pipe.reported = true;
        if let Some(file) = pipe.file.as_mut() {
            // The launcher may be gone (killed while waiting); the daemon runs on regardless.
            let _ = file.write_all(line.as_bytes());
        }
        if close {
            pipe.file = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_parse_back() {
        assert_eq!(
            parse("ready 42 127.0.0.1:8080\n"),
            Outcome::Ready {
                pid: Pid::from_raw(42),
                address: Some("127.0.0.1:8080".parse().unwrap()),
            }
        );
        assert_eq!(
            parse("failed 75 another instance is already running (PID: 7)\n"),
            Outcome::Failed {
                code: 75,
                message: "another instance is already running (PID: 7)".into(),
            }
        );
        assert_eq!(parse(""), Outcome::Vanished);
    }

    #[test]
    fn after_a_failure_the_pipe_stays_open_until_the_report_is_dropped() {
        let (read, write) = pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK).unwrap();
        let report = Report::new(write, Pid::from_raw(7));
        report.observe(&Event::StartFailed("cannot listen".into()));
        let mut pipe = File::from(read);
        let mut line = [0u8; 64];
        let n = pipe.read(&mut line).unwrap();
        assert_eq!(&line[..n], b"failed 1 cannot listen\n");
        let open = pipe.read(&mut line).unwrap_err();
        assert_eq!(open.kind(), io::ErrorKind::WouldBlock, "no end of file yet");
        drop(report);
        assert_eq!(pipe.read(&mut line).unwrap(), 0, "end of file");
    }

    #[test]
    fn one_report_only() {
        let (read, write) = pipe2(OFlag::O_CLOEXEC).unwrap();
        let report = Report::new(write, Pid::from_raw(7));
        report.observe(&Event::Listening("127.0.0.1:1".parse().unwrap()));
        report.observe(&Event::Ready);
        report.observe(&Event::StartFailed("too late".into()));
        assert_eq!(
            wait_for_report(read),
            Outcome::Ready {
                pid: Pid::from_raw(7),
                address: Some("127.0.0.1:1".parse().unwrap()),
            }
        );
    }
}
