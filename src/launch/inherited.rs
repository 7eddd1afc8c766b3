//! What this process inherited from whoever started it, read once before anything else: a
//! listening socket (from a service manager, the supervisor or a predecessor) and, for the
//! successor of `rodent restart`, the predecessor to report to. The variables that described
//! them are forgotten while the process is still single-threaded, so that nothing it starts
//! takes them for its own.

use std::process::ExitCode;

use crate::config::{LogFormat, Vars};
use crate::exit::Exit;
use crate::observe::logging::Logging;
use crate::process::activation::{self, Activation, ActivationError, Inherited, Source};
use crate::process::handoff;
use crate::process::successor::{self, Predecessor};

/// What was inherited.
pub(super) struct Inheritance {
    /// The socket to serve on instead of binding.
    pub(super) socket: Option<Inherited>,
    /// The management port's socket, from a predecessor.
    pub(super) management: Option<std::net::TcpListener>,
    /// The instance this one replaces (`rodent restart`).
    pub(super) predecessor: Option<Predecessor>,
    /// `LISTEN_FDS` was set for another process: its `LISTEN_PID` (or unset).
    not_ours: Option<Option<String>>,
    /// Whether the variables could be forgotten (not when threads were running already).
    forgotten: bool,
}

/// The socket described by an inherited variable cannot be used; the predecessor, if any,
/// still waits to be told.
pub(super) struct Refused {
    pub(super) error: ActivationError,
    pub(super) predecessor: Option<Predecessor>,
}

impl Inheritance {
    /// Claims what `vars` describe, then forgets the variables.
    pub(super) fn take(vars: &Vars) -> Result<Self, Box<Refused>> {
        let predecessor = Predecessor::inherited(vars);
        let activation = Activation::from_vars(vars);
        let management = activation::management_handed_down(vars);
        let mut names = activation::VARIABLES.to_vec();
        names.extend([
            activation::HANDED_DOWN,
            activation::MANAGEMENT_HANDED_DOWN,
            successor::MARKER,
        ]);
        // Before anything can start a process: none of them is the one these were meant for.
        let forgotten = handoff::forget(&names);
        let (socket, not_ours) = match activation {
            Ok(Activation::Inherited(socket)) => (Some(socket), None),
            Ok(Activation::NotOurs { listen_pid }) => (None, Some(listen_pid)),
            Ok(Activation::None) => (None, None),
            Err(error) => return Err(Box::new(Refused { error, predecessor })),
        };
        let management = match management {
            Ok(management) => management,
            Err(error) => return Err(Box::new(Refused { error, predecessor })),
        };
        Ok(Self {
            socket,
            management,
            predecessor,
            not_ours,
            forgotten,
        })
    }

    /// Logs where the socket comes from, when it is not bound here. `supervised`: a socket
    /// handed down by a parent came from the supervisor, not from a predecessor.
    pub(super) fn log(&self, supervised: bool) {
        if let Some(listen_pid) = &self.not_ours {
            let listen_pid = listen_pid
                .as_deref()
                .and_then(|p| p.trim().parse::<i64>().ok());
            tracing::info!(
                target: "rodent::config",
                variable = "LISTEN_PID",
                listen_pid,
                "LISTEN_FDS is set for another process (LISTEN_PID); socket activation ignored"
            );
        }
        if let Some(socket) = &self.socket {
            let address = socket.listener.local_addr().ok();
            tracing::info!(
                target: "rodent::lifecycle",
                fd = socket.fd,
                name = socket.name.as_deref(),
                address = address.map(|a| a.to_string()),
                source = match socket.source {
                    Source::ServiceManager => "LISTEN_FDS",
                    Source::Parent if supervised => "supervisor",
                    Source::Parent => "predecessor",
                },
                ignored = "RODENT_HOST, RODENT_PORT",
                "serving on an inherited socket"
            );
        }
        if !self.forgotten {
            tracing::warn!(
                target: "rodent::lifecycle",
                "threads were running before rodent started, so LISTEN_FDS, LISTEN_PID and \
                 LISTEN_FDNAMES stay in the environment of the processes it starts"
            );
        }
    }
}

/// Refuses to start with an invalid configuration: the error goes to the predecessor waiting
/// for this successor, if any, and to the terminal for `--detach` (the launcher prints it
/// there, before any fork) or to the log. `log` writes a line for each of the `problems`.
pub(super) fn refuse(
    name: &str,
    message: &str,
    problems: usize,
    detach: bool,
    predecessor: Option<Predecessor>,
    log: impl FnOnce(),
) -> ExitCode {
    let exit = Exit::Config;
    let successor = predecessor.is_some();
    if let Some(predecessor) = predecessor {
        predecessor.report.failed(exit, message);
    }
    if detach && !successor {
        eprintln!("{name}: {message}");
        return exit.into();
    }
    let _logging = Logging::init("info", guess_log_format(), Vec::new());
    log();
    tracing::error!(
        target: "rodent::config",
        problems,
        exit_code = exit.code(),
        "refusing to start with an invalid configuration"
    );
    exit.into()
}

/// The process environment, as far as it is UTF-8: where a predecessor is looked for when the
/// configuration could not be read.
pub(super) fn process_vars() -> Vars {
    std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect()
}

/// Logs an activation variable that cannot be honoured, naming it.
pub(super) fn log_activation_error(e: &ActivationError) {
    tracing::error!(
        target: "rodent::config",
        variable = e.variable,
        value = %e.value,
        "invalid configuration: {e}"
    );
}

/// The log format to report configuration errors in, when the configuration itself is invalid.
fn guess_log_format() -> LogFormat {
    match std::env::var("RODENT_LOG_FORMAT").as_deref().map(str::trim) {
        Ok("text") => LogFormat::Text,
        _ => LogFormat::Json,
    }
}
