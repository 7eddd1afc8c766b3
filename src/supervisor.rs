//! PID 1 supervision: what makes rodent safe as a container's first process without tini or
//! `docker run --init`.
//!
//! PID 1 has two jobs nobody else does: every orphaned process is re-parented to it, and must be
//! reaped by it or stay a zombie forever; and the kernel delivers it no signal it has not asked
//! for, so a plain program as PID 1 ignores `docker stop`. Reaping with `waitpid(-1)` inside the
//! service would steal the exit statuses of the service's own children (`tokio::process` waits
//! on specific PIDs), so, as tini and catatonit do, rodent splits in two:
//!
//! - the **supervisor** (this process): before any thread exists, it re-executes itself
//!   (`/proc/self/exe`, same arguments) with a marker variable, then runs one synchronous loop —
//!   no runtime — over `sigwait`: SIGCHLD reaps every child that has exited, orphans included;
//!   TERM, INT, HUP, QUIT, USR1, USR2 and WINCH are forwarded to the service. When the service
//!   exits, the supervisor exits at once with its code, or 128+N if signal N killed it, and the
//!   kernel ends whatever else is left in the container. It never sends SIGKILL itself: the
//!   service bounds its own shutdown, and the orchestrator owns the grace period.
//! - the **service** (the child): a normal rodent that reaps only its own children. The number of
//!   orphans the supervisor reaped reaches its `/metrics` through an inherited pipe.
//!
//! Setup may fail and end the process; once the loop runs, problems are only logged.
//!
//! `RODENT_INIT=auto` (the default) supervises when rodent is PID 1; `always` supervises in any
//! case, making rodent a child subreaper (`PR_SET_CHILD_SUBREAPER`) when it is not PID 1, so that
//! orphans of its descendants come to it rather than to the host's init; `never` never does.

use std::fs::File;
use std::io::{IsTerminal, Write};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Command;

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, FdFlag, OFlag, fcntl};
use nix::sys::signal::{SigHandler, SigSet, SigmaskHow, Signal as Sig, kill, sigprocmask};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{Pid, getpid, getppid, pipe2, setpgid};
use tokio::io::AsyncReadExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::{Config, InitMode, LogFormat, Vars};
use crate::daemon::{self, Report};
use crate::exit::Exit;
use crate::pidfile::PidFileLock;
use crate::signal::Signal;

/// The internal variable that tells a re-executed rodent it is the supervised service:
/// `<supervisor pid>:<fd of the zombie-count pipe>`. It is honoured only when the supervisor is
/// the process's parent, so a rodent started by the service never mistakes it for its own.
const MARKER: &str = "RODENT_SUPERVISED";

const TARGET: &str = "rodent::supervisor";

/// What this process does, as [`role`] decided.
#[derive(Debug)]
pub enum Role {
    /// Run the service here. A [`Link`] when a supervisor started this process.
    Service(Option<Link>),
    /// Supervise: [`Supervisor::run`] starts the service as a child and waits for it.
    Supervisor(Supervisor),
}

/// Decides, from `RODENT_INIT` and whether this is PID 1, what this process is. Call it once,
/// early in `main`, after reading the configuration and before any thread exists: a supervisor
/// must fork from a single-threaded process.
pub fn role(config: &Config) -> Role {
    if let Some(link) = Link::inherited(&config.vars) {
        return Role::Service(Some(link));
    }
    let init = getpid() == Pid::from_raw(1);
    let mode = match (config.init, init) {
        (InitMode::Never, _) | (InitMode::Auto, false) => return Role::Service(None),
        (_, true) => Mode::Init,
        (InitMode::Always, false) => Mode::Subreaper,
    };
    Role::Supervisor(Supervisor {
        mode,
        pid_file: None,
        report: None,
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// PID 1 of a PID namespace (a container): orphans come here by definition.
    Init,
    /// Not PID 1: marked as a child subreaper so that orphans of descendants come here.
    Subreaper,
}

impl Mode {
    fn as_str(self) -> &'static str {
        match self {
            Self::Init => "pid1",
            Self::Subreaper => "subreaper",
        }
    }
}

/// The supervisor, before it starts the service.
#[derive(Debug)]
pub struct Supervisor {
    mode: Mode,
    pid_file: Option<PathBuf>,
    report: Option<Report>,
}

impl Supervisor {
    /// Holds this PID file while supervising: it names the supervisor, which forwards every
    /// signal sent to it, and the service child leaves the file alone.
    pub fn pid_file(mut self, path: Option<PathBuf>) -> Self {
        self.pid_file = path;
        self
    }

    /// A detached daemon's report pipe: handed to the service, which reports readiness on it.
    pub fn report_to(mut self, report: Option<Report>) -> Self {
        self.report = report;
        self
    }

    /// Starts the service and supervises it until it exits; returns the exit code to end this
    /// process with. Installs the supervisor's own logger (the service's format, its level).
    pub fn run(self, config: &Config) -> u8 {
        install_log(config);
        match self.start() {
            Ok(mut running) => running.supervise(),
            Err(exit) => exit.code(),
        }
    }

    fn start(self) -> Result<Running, Exit> {
        let report = self.report;
        let fail = |exit: Exit, message: String| {
            tracing::error!(target: TARGET, "{message}");
            if let Some(report) = &report {
                report.failed(exit, &message);
            }
            exit
        };
        take_signals().map_err(|e| fail(Exit::Failure, format!("cannot take signals: {e}")))?;
        if self.mode == Mode::Subreaper {
            nix::sys::prctl::set_child_subreaper(true).map_err(|e| {
                fail(
                    Exit::Failure,
                    format!("cannot become a child subreaper: {e}"),
                )
            })?;
        }
        let pid_file = match &self.pid_file {
            Some(path) => {
                Some(PidFileLock::acquire(path).map_err(|e| fail(e.exit(), e.to_string()))?)
            }
            None => None,
        };
        let (counts_read, counts_write) = pipe2(OFlag::O_CLOEXEC)
            .map_err(|e| fail(Exit::Failure, format!("cannot create a pipe: {e}")))?;
        // A service too busy to read must never block the loop: a count that does not fit is
        // dropped, and the next one carries the total anyway.
        fcntl(&counts_write, FcntlArg::F_SETFL(OFlag::O_NONBLOCK))
            .map_err(|e| fail(Exit::Failure, format!("cannot configure a pipe: {e}")))?;
        let report_fd = report.as_ref().and_then(Report::raw_fd);
        let service = spawn_service(&counts_read, report_fd)
            .map_err(|e| fail(Exit::Failure, format!("cannot start the service: {e}")))?;
        drop(counts_read);
        tracing::info!(
            target: TARGET,
            mode = self.mode.as_str(),
            pid = getpid().as_raw(),
            service_pid = service.as_raw(),
            "supervising"
        );
        Ok(Running {
            service,
            counts: File::from(counts_write),
            reaped: 0,
            _pid_file: pid_file,
            _report: report,
        })
    }
}

/// Signals this process forwards: every one the service handles.
fn forwarded() -> SigSet {
    let mut set = SigSet::empty();
    for signal in Signal::ALL {
        set.add(signal.os());
    }
    set
}

/// Default dispositions, so nothing inherited as ignored is discarded instead of queued (an
/// ignored SIGCHLD would even reap children behind our back); then everything blocked, to be
/// taken one at a time by `sigwait`.
fn take_signals() -> nix::Result<()> {
    let mut waited = forwarded();
    waited.add(Sig::SIGCHLD);
    for signal in waited.iter() {
        // SAFETY: setting the default disposition installs no handler.
        unsafe { nix::sys::signal::signal(signal, SigHandler::SigDfl) }?;
    }
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&waited), None)
}

/// Re-executes this binary as the service. The child starts with default dispositions and the
/// forwarded signals blocked, exactly as `signal::block_early` would leave them, so a signal
/// forwarded while it starts stays pending until its handlers exist instead of killing it; it
/// gets a process group of its own, so a terminal's Ctrl-C reaches it once (through us), not
/// twice.
fn spawn_service(counts: &OwnedFd, report: Option<RawFd>) -> std::io::Result<Pid> {
    let mut args = std::env::args_os();
    let arg0 = args.next().unwrap_or_else(|| "rodent".into());
    let counts_fd = counts.as_raw_fd();
    let mut command = Command::new("/proc/self/exe");
    command
        .arg0(arg0)
        .args(args)
        .env(MARKER, format!("{}:{counts_fd}", getpid()));
    if let Some(fd) = report {
        command.env(daemon::FD_VARIABLE, fd.to_string());
    }
    let early_mask = forwarded();
    let mut reset = forwarded();
    reset.add(Sig::SIGCHLD);
    reset.add(Sig::SIGPIPE);
    // SAFETY: between fork and exec only async-signal-safe calls are made: fcntl, sigaction,
    // sigprocmask and setpgid, on values prepared before the fork.
    unsafe {
        command.pre_exec(move || {
            for fd in [Some(counts_fd), report].into_iter().flatten() {
                // SAFETY: both descriptors are open in the parent, so in this copy of it too.
                let fd = BorrowedFd::borrow_raw(fd);
                fcntl(fd, FcntlArg::F_SETFD(FdFlag::empty()))?;
            }
            for signal in reset.iter() {
                nix::sys::signal::signal(signal, SigHandler::SigDfl)?;
            }
            sigprocmask(SigmaskHow::SIG_SETMASK, Some(&early_mask), None)?;
            setpgid(Pid::from_raw(0), Pid::from_raw(0))?;
            Ok(())
        });
    }
    let child = command.spawn()?;
    Ok(Pid::from_raw(child.id() as i32))
}

/// The supervisor once the service runs.
struct Running {
    service: Pid,
    /// Where reaped-orphan totals go (the service's `/metrics`).
    counts: File,
    reaped: u64,
    /// Held until the supervisor exits, then removed.
    _pid_file: Option<PidFileLock>,
    /// A daemon's report pipe, which the service writes to. Our copy stays open until the PID
    /// file is removed (fields drop in order), so a launcher waiting for the end of file after
    /// a failure returns only once nothing is left.
    _report: Option<Report>,
}

impl Running {
    /// The loop. Returns the exit code once the service is gone.
    fn supervise(&mut self) -> u8 {
        let mut waited = forwarded();
        waited.add(Sig::SIGCHLD);
        loop {
            let signal = match waited.wait() {
                Ok(signal) => signal,
                Err(e) => {
                    tracing::warn!(target: TARGET, error = %e, "sigwait failed");
                    continue;
                }
            };
            if signal != Sig::SIGCHLD {
                self.forward(signal);
                continue;
            }
            if let Some(code) = self.reap() {
                tracing::info!(
                    target: TARGET,
                    exit_code = code,
                    zombies_reaped = self.reaped,
                    "supervisor exiting"
                );
                return code;
            }
        }
    }

    fn forward(&self, signal: Sig) {
        tracing::debug!(target: TARGET, signal = signal.as_str(), "forwarding signal to the service");
        if let Err(e) = kill(self.service, signal) {
            // ESRCH: the service is exiting; its SIGCHLD is on the way.
            tracing::warn!(target: TARGET, signal = signal.as_str(), error = %e, "cannot forward signal");
        }
    }

    /// Reaps every child that has exited (one SIGCHLD may stand for many), in the manner of
    /// catatonit's `reap_zombies`. Returns the exit code once the service is among them.
    fn reap(&mut self) -> Option<u8> {
        let before = self.reaped;
        let mut service_exit = None;
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) if pid == self.service => {
                    tracing::info!(target: TARGET, exit_code = code, "service exited");
                    service_exit = Some(u8::try_from(code).unwrap_or(u8::MAX));
                }
                Ok(WaitStatus::Signaled(pid, signal, _)) if pid == self.service => {
                    let code = Exit::Signal(signal as i32).code();
                    tracing::warn!(target: TARGET, signal = signal.as_str(), exit_code = code, "service killed by a signal");
                    service_exit = Some(code);
                }
                Ok(WaitStatus::Exited(..) | WaitStatus::Signaled(..)) => self.reaped += 1,
                Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => break,
                Ok(_) | Err(Errno::EINTR) => {}
                Err(e) => {
                    tracing::warn!(target: TARGET, error = %e, "waitpid failed");
                    break;
                }
            }
        }
        if self.reaped != before {
            tracing::debug!(target: TARGET, reaped = self.reaped - before, total = self.reaped, "reaped orphans");
            // Eight bytes are written whole or not at all (less than PIPE_BUF); a full pipe or
            // a service that is gone only loses this update.
            let _ = self.counts.write(&self.reaped.to_le_bytes());
        }
        service_exit
    }
}

/// The service's end of the supervisor: the reaped-orphan totals, and the daemon report pipe
/// when the supervisor is itself a detached daemon.
#[derive(Debug)]
pub struct Link {
    counts: OwnedFd,
    report: Option<Report>,
}

impl Link {
    fn inherited(vars: &Vars) -> Option<Self> {
        let (pid, fd) = vars.get(MARKER)?.split_once(':')?;
        let supervisor = Pid::from_raw(pid.parse().ok()?);
        if getppid() != supervisor {
            return None;
        }
        let counts = claim_inherited(fd.parse().ok()?)?;
        Some(Self {
            counts,
            report: Report::inherited(vars, supervisor),
        })
    }

    /// The daemon report pipe, when the supervisor was started by `serve --detach`: the service
    /// reports readiness in its place.
    pub fn take_report(&mut self) -> Option<Report> {
        self.report.take()
    }

    /// Feeds every total the supervisor sends to `update`. Must be called inside a Tokio
    /// runtime; the task ends when the supervisor closes the pipe.
    pub(crate) fn publish(self, update: impl Fn(u64) + Send + 'static) {
        let mut pipe = match tokio::net::unix::pipe::Receiver::from_owned_fd(self.counts) {
            Ok(pipe) => pipe,
            Err(e) => {
                tracing::warn!(target: TARGET, error = %e, "cannot read the supervisor's zombie counts");
                return;
            }
        };
        tokio::spawn(async move {
            let mut total = [0u8; 8];
            while pipe.read_exact(&mut total).await.is_ok() {
                update(u64::from_le_bytes(total));
            }
        });
    }
}

/// Takes ownership of a descriptor a parent process left open for us and named in a variable,
/// if it is open, and keeps it from our own children from now on.
///
/// Sound only for descriptors that nothing else in this process refers to: call it once per
/// descriptor, at startup, before anything could have opened another file under that number.
pub(crate) fn claim_inherited(fd: RawFd) -> Option<OwnedFd> {
    // SAFETY: F_SETFD on a number that is not open fails with EBADF and changes nothing.
    if fd < 3 || unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) } != 0 {
        return None;
    }
    // SAFETY: open (checked above), and by this function's contract referred to by nothing else.
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The supervisor logs in the service's format, synchronously: it has no runtime and no
/// threads, and writes a handful of lines in its whole life.
fn install_log(config: &Config) {
    let filter = EnvFilter::builder()
        .parse(&config.log)
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let format = match config.log_format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .with_writer(std::io::stdout)
            .boxed(),
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_ansi(std::io::stdout().is_terminal())
            .with_writer(std::io::stdout)
            .boxed(),
    };
    let _ = tracing_subscriber::registry()
        .with(format.with_filter(filter))
        .try_init();
}
