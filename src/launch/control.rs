//! Commands that operate an instance from outside: `status`, `stop`, `reload` and `restart`. The instance
//! is the process holding the lock on RODENT_PID_FILE, read from the environment like the server
//! reads it; the number written in the file is never trusted on its own. Without a PID file, in
//! rodent's own container, it is PID 1.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use crate::config::{Config, Spec, format_duration};
use crate::exit::Exit;
use crate::process::pidfile::{self, Status};
use crate::process::successor::START_PATIENCE;
use crate::process::successor::outcome::{self, Recorded};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// Added to the shutdown grace for `stop`'s default timeout: the instance exits inside its
/// grace, and the rest is process teardown.
const STOP_SLACK: Duration = Duration::from_secs(5);
const STOP_POLL: Duration = Duration::from_millis(20);

/// LSB `status` codes.
const RUNNING: u8 = 0;
const DEAD_WITH_PID_FILE: u8 = 1;
const NOT_RUNNING: u8 = 3;
const UNKNOWN: u8 = 4;

/// `rodent status`: LSB codes; the PID is the lock holder's.
pub(super) fn status(spec: &Spec) -> ExitCode {
    let name = spec.identity.name;
    if let Some(pid) = container_instance(spec) {
        println!("{name} is running (PID {pid})");
        return ExitCode::from(RUNNING);
    }
    let (_, path) = match target(spec, "status", UNKNOWN) {
        Ok(target) => target,
        Err(code) => return code,
    };
    ExitCode::from(match pidfile::status(&path) {
        Ok(Status::Running(pid)) => {
            println!("{name} is running (PID {pid})");
            RUNNING
        }
        Ok(Status::Dead(pid)) => {
            println!(
                "{name} is not running, but its PID file {} remains (PID {pid})",
                path.display()
            );
            DEAD_WITH_PID_FILE
        }
        Ok(Status::NotRunning) => {
            println!("{name} is not running");
            NOT_RUNNING
        }
        Err(e) => {
            eprintln!("{name} status: {e}");
            UNKNOWN
        }
    })
}

/// `rodent stop`: SIGTERM to the lock holder, then wait for the lock to be released.
pub(super) fn stop(spec: &Spec, timeout: Option<Duration>) -> ExitCode {
    let name = spec.identity.name;
    if let Some(pid) = container_instance(spec) {
        // Waiting is pointless: this command ends with the container when PID 1 exits.
        return match kill(pid, Signal::SIGTERM) {
            Ok(()) => {
                println!("{name} (PID {pid}) is stopping; the container ends when it has drained");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{name} stop: cannot signal PID {pid}: {e}");
                Exit::Failure.into()
            }
        };
    }
    let (config, path) = match target(spec, "stop", Exit::Failure.code()) {
        Ok(target) => target,
        Err(code) => return code,
    };
    let timeout = timeout.unwrap_or(config.shutdown_grace + STOP_SLACK);
    let pid = match running(&path, "stop", name) {
        Ok(pid) => pid,
        Err(code) => return code,
    };
    if let Err(e) = kill(pid, Signal::SIGTERM) {
        eprintln!("{name} stop: cannot signal PID {pid}: {e}");
        return Exit::Failure.into();
    }
    let deadline = Instant::now() + timeout;
    loop {
        match pidfile::status(&path) {
            Ok(Status::Running(holder)) if holder == pid => {}
            _ => {
                println!("{name} stopped (PID {pid})");
                return ExitCode::SUCCESS;
            }
        }
        if Instant::now() >= deadline {
            eprintln!(
                "{name} stop: {name} (PID {pid}) is still running after {}",
                format_duration(timeout)
            );
            return Exit::Failure.into();
        }
        std::thread::sleep(STOP_POLL);
    }
}

/// `rodent reload`: SIGHUP to the lock holder. The outcome is in the instance's log.
pub(super) fn reload(spec: &Spec) -> ExitCode {
    let name = spec.identity.name;
    let pid = match container_instance(spec) {
        Some(pid) => pid,
        None => {
            let (_, path) = match target(spec, "reload", Exit::Failure.code()) {
                Ok(target) => target,
                Err(code) => return code,
            };
            match running(&path, "reload", name) {
                Ok(pid) => pid,
                Err(code) => return code,
            }
        }
    };
    match kill(pid, Signal::SIGHUP) {
        Ok(()) => {
            println!("{name} (PID {pid}) is reloading its configuration");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{name} reload: cannot signal PID {pid}: {e}");
            Exit::Failure.into()
        }
    }
}

/// The configuration and the PID file path a command acts on; `Err` is the exit code when
/// there is none (`no_pid_file` when RODENT_PID_FILE is empty).
fn target(spec: &Spec, command: &str, no_pid_file: u8) -> Result<(Config, PathBuf), ExitCode> {
    let name = spec.identity.name;
    let config = spec.read(None).map_err(|errors| {
        eprintln!("{name} {command}: {errors}");
        ExitCode::from(Exit::Config)
    })?;
    match config.pid_file.clone() {
        Some(path) => Ok((config, path)),
        None => {
            eprintln!(
                "{name} {command}: RODENT_PID_FILE is empty, so there is no instance to look for"
            );
            Err(ExitCode::from(no_pid_file))
        }
    }
}

/// The running instance's PID; `Err` is the exit code when there is none.
fn running(path: &std::path::Path, command: &str, name: &str) -> Result<Pid, ExitCode> {
    match pidfile::status(path) {
        Ok(Status::Running(pid)) => Ok(pid),
        Ok(Status::Dead(_) | Status::NotRunning) => {
            println!("{name} is not running");
            Err(ExitCode::from(NOT_RUNNING))
        }
        Err(e) => {
            eprintln!("{name} {command}: {e}");
            Err(Exit::Failure.into())
        }
    }
}

/// Added to the successor's start and the old instance's grace for `restart`'s default timeout.
const RESTART_SLACK: Duration = Duration::from_secs(5);
const RESTART_POLL: Duration = Duration::from_millis(20);

/// `rodent restart`: SIGUSR2 to the lock holder, which starts its successor on its socket; then
/// the outcome it records beside the PID file, and (on success) the old instance's exit.
pub(super) fn restart(spec: &Spec, timeout: Option<Duration>) -> ExitCode {
    let name = spec.identity.name;
    let (config, path) = match target(spec, "restart", Exit::Failure.code()) {
        Ok(target) => target,
        Err(code) => return code,
    };
    let old = match running(&path, "restart", name) {
        Ok(pid) => pid,
        Err(code) => return code,
    };
    let timeout = timeout.unwrap_or(START_PATIENCE + config.shutdown_grace + RESTART_SLACK);
    let deadline = Instant::now() + timeout;
    let before = outcome::identity(&path);
    // Watched from before the signal, so that an exit is seen even if the PID is reused since.
    let exited = ProcessExit::watch(old);
    if let Err(e) = kill(old, Signal::SIGUSR2) {
        eprintln!("{name} restart: cannot signal PID {old}: {e}");
        return Exit::Failure.into();
    }
    let recorded = loop {
        if let Some((identity, recorded)) = outcome::read(&path)
            && identity != before
            && recorded.old() == old
        {
            break recorded;
        }
        if exited.happened() {
            eprintln!("{name} restart: {name} (PID {old}) exited during the restart");
            return Exit::Failure.into();
        }
        if Instant::now() >= deadline {
            eprintln!(
                "{name} restart: no outcome from {name} (PID {old}) after {}",
                format_duration(timeout)
            );
            return Exit::Failure.into();
        }
        std::thread::sleep(RESTART_POLL);
    };
    match recorded {
        Recorded::Failed { code, message, .. } => {
            eprintln!("{name} restart: the new instance did not start: {message}");
            eprintln!("{name} restart: {name} (PID {old}) is still serving");
            ExitCode::from(code)
        }
        Recorded::Ready { new, address, .. } => {
            while !exited.happened() {
                if Instant::now() >= deadline {
                    eprintln!(
                        "{name} restart: {name} (PID {new}) serves, but {name} (PID {old}) is \
                         still draining after {}",
                        format_duration(timeout)
                    );
                    return Exit::Failure.into();
                }
                std::thread::sleep(RESTART_POLL);
            }
            match address {
                Some(address) => {
                    println!("{name} restarted (PID {old} -> {new}), listening on {address}")
                }
                None => println!("{name} restarted (PID {old} -> {new})"),
            }
            ExitCode::SUCCESS
        }
    }
}

/// Whether a process has exited, through a pidfd (`pidfd_open(2)`, readable once it has; nix
/// has no wrapper for it), or by its PID where there is none.
struct ProcessExit {
    pidfd: Option<OwnedFd>,
    pid: Pid,
}

impl ProcessExit {
    fn watch(pid: Pid) -> Self {
        // SAFETY: pidfd_open takes a PID and flags and returns a new descriptor or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), 0) };
        // SAFETY: a descriptor just returned to us, owned by nothing else.
        let pidfd = (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd as RawFd) });
        Self { pidfd, pid }
    }

    fn happened(&self) -> bool {
        match &self.pidfd {
            Some(fd) => {
                let mut poll = libc::pollfd {
                    fd: fd.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                };
                // SAFETY: one pollfd, and no waiting.
                (unsafe { libc::poll(&mut poll, 1, 0) }) > 0
            }
            // No pidfd (a kernel before 5.3): the PID no longer exists.
            None => kill(self.pid, None).is_err(),
        }
    }
}

/// The instance when no PID file is configured and this runs in its own container: PID 1,
/// when PID 1 is this very program (the image's default; `docker exec`, `kubectl exec`).
fn container_instance(spec: &Spec) -> Option<Pid> {
    use std::os::unix::fs::MetadataExt;
    let config = spec.read(None).ok()?;
    if config.pid_file.is_some() || std::process::id() == 1 {
        return None;
    }
    let ours = std::fs::metadata("/proc/self/exe").ok()?;
    let same = match std::fs::metadata("/proc/1/exe") {
        Ok(theirs) => (theirs.dev(), theirs.ino()) == (ours.dev(), ours.ino()),
        // PID 1 of another user: its executable cannot be looked at, its name can.
        Err(_) => std::fs::read("/proc/1/comm").ok()? == std::fs::read("/proc/self/comm").ok()?,
    };
    same.then(|| Pid::from_raw(1))
}
