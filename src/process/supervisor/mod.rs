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
//! Setup may fail and end the process; once the loop runs, problems are only logged, each line
//! written without blocking or dropped (`observe::logging`), so that no write to a stuck stdout
//! ever stands between a SIGCHLD and its reaping, or a SIGTERM and its forwarding.
//!
//! `RODENT_INIT=auto` (the default) supervises when rodent is PID 1; `always` supervises in any
//! case, making rodent a child subreaper (`PR_SET_CHILD_SUBREAPER`) when it is not PID 1, so that
//! orphans of its descendants come to it rather than to the host's init; `never` never does.

mod link;
mod reap;

use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;

use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::sys::signal::{SigHandler, SigSet, SigmaskHow, Signal as Sig, sigprocmask};
use nix::unistd::{Pid, getpid, pipe2, setpgid};

use crate::config::{Config, InitMode};
use crate::exit::Exit;
use crate::observe::logging;
use crate::process::daemon::{self, Report};
use crate::process::handoff;
use crate::process::pidfile::PidFileLock;
use crate::process::reexec::{self, Binary};
use crate::process::signal::handled_set;

pub(crate) use link::Link;
use reap::Running;

/// The internal variable that tells a re-executed rodent it is the supervised service:
/// `<supervisor pid>:<fd of the zombie-count pipe>`. It is honoured only when the supervisor is
/// the process's parent, so a rodent started by the service never mistakes it for its own.
pub(crate) const MARKER: &str = "RODENT_SUPERVISED";

const TARGET: &str = "rodent::supervisor";

/// What this process does, as [`role`] decided.
#[derive(Debug)]
pub(crate) enum Role {
    /// Run the service here. A [`Link`] when a supervisor started this process.
    Serve(Option<Link>),
    /// Supervise: [`Supervisor::run`] starts the service as a child and waits for it.
    Supervisor(Supervisor),
}

/// Decides, from `RODENT_INIT` and whether this is PID 1, what this process is. Call it once,
/// early in `main`, after reading the configuration and before any thread exists: a supervisor
/// must fork from a single-threaded process.
pub(crate) fn role(config: &Config) -> Role {
    if let Some(link) = Link::inherited(&config.vars) {
        return Role::Serve(Some(link));
    }
    let init = getpid() == Pid::from_raw(1);
    let mode = match (config.init, init) {
        (InitMode::Never, _) | (InitMode::Auto, false) => return Role::Serve(None),
        (_, true) => Mode::Init,
        (InitMode::Always, false) => Mode::Subreaper,
    };
    Role::Supervisor(Supervisor {
        mode,
        pid_file: None,
        report: None,
        listener: None,
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
pub(crate) struct Supervisor {
    mode: Mode,
    pid_file: Option<PathBuf>,
    report: Option<Report>,
    /// An inherited listening socket (socket activation), handed to the service.
    listener: Option<std::net::TcpListener>,
}

impl Supervisor {
    /// Hands this inherited listening socket to the service: the supervisor is the process the
    /// service manager started, so the socket came to it. The supervisor keeps no copy once
    /// the service has it.
    pub(crate) fn listener(mut self, listener: Option<std::net::TcpListener>) -> Self {
        self.listener = listener;
        self
    }

    /// Holds this PID file while supervising: it names the supervisor, which forwards every
    /// signal sent to it, and the service child leaves the file alone.
    pub(crate) fn pid_file(mut self, path: Option<PathBuf>) -> Self {
        self.pid_file = path;
        self
    }

    /// A detached daemon's report pipe: handed to the service, which reports readiness on it.
    pub(crate) fn report_to(mut self, report: Option<Report>) -> Self {
        self.report = report;
        self
    }

    /// Starts the service and supervises it until it exits; returns the exit code to end this
    /// process with. Installs the supervisor's own logger (the service's format, its level),
    /// which writes without blocking or drops, so that neither the loop nor the exit ever waits
    /// on stdout.
    pub(crate) fn run(self, config: &Config) -> u8 {
        let log = logging::init_direct(&config.log, config.log_format);
        let code = match self.start() {
            Ok(mut running) => running.supervise(),
            Err(exit) => exit.code(),
        };
        log.finish();
        code
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
        let service = spawn_service(&counts_read, report_fd, self.listener.as_ref())
            .map_err(|e| fail(Exit::Failure, format!("cannot start the service: {e}")))?;
        drop(counts_read);
        tracing::info!(
            target: TARGET,
            mode = self.mode.as_str(),
            pid = getpid().as_raw(),
            service_pid = service.as_raw(),
            "supervising"
        );
        Ok(Running::new(
            service,
            File::from(counts_write),
            pid_file,
            report,
        ))
    }
}

/// The signals the loop takes: every one the service handles, to forward, and SIGCHLD.
fn waited() -> SigSet {
    let mut set = handled_set();
    set.add(Sig::SIGCHLD);
    set
}

/// Default dispositions, so nothing inherited as ignored is discarded instead of queued (an
/// ignored SIGCHLD would even reap children behind our back); then everything blocked, to be
/// taken one at a time by `sigwait`.
fn take_signals() -> nix::Result<()> {
    let waited = waited();
    for signal in waited.iter() {
        // SAFETY: setting the default disposition installs no handler.
        unsafe { nix::sys::signal::signal(signal, SigHandler::SigDfl) }?;
    }
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&waited), None)
}

/// Re-executes this binary as the service ([`reexec::command`]: it starts as a fresh rodent
/// would, its signals blocked until its handlers exist), with the pipes and the socket handed
/// down; it gets a process group of its own, so a terminal's Ctrl-C reaches it once (through
/// us), not twice.
fn spawn_service(
    counts: &OwnedFd,
    report: Option<RawFd>,
    listener: Option<&std::net::TcpListener>,
) -> std::io::Result<Pid> {
    let mut command = reexec::command(Binary::Running);
    // Executed through /proc/self/exe, the child would show as `exe` in ps, top and docker top,
    // beside a supervisor with the same command line: its title says what it is instead.
    command.arg0(format!("{}: service", reexec::program_name()));
    handoff::hand_down(&mut command, MARKER, counts.as_raw_fd());
    if let Some(fd) = report {
        handoff::hand_down(&mut command, daemon::FD_VARIABLE, fd);
    }
    if let Some(listener) = listener {
        crate::process::activation::hand_down(&mut command, listener);
    }
    // SAFETY: setpgid is async-signal-safe.
    unsafe {
        command.pre_exec(|| {
            setpgid(Pid::from_raw(0), Pid::from_raw(0))?;
            Ok(())
        });
    }
    let child = command.spawn()?;
    Ok(Pid::from_raw(child.id() as i32))
}

/// Gives the supervised service the program's name, in place of the `exe` of /proc/self/exe it
/// was executed through: the name ps, top and the kernel's messages show (at most 15 bytes).
/// Call it in the service before any thread exists, so every thread starts with it.
pub(crate) fn name_service() {
    let mut name = reexec::program_name().into_bytes();
    name.truncate(15);
    if let Ok(name) = std::ffi::CString::new(name) {
        // Cosmetic: a failure leaves the name as it was.
        let _ = nix::sys::prctl::set_name(&name);
    }
}
