//! The life of a rodent process, in the order it must happen, for the `rodent` binary and for
//! any application embedding the library:
//!
//! 1. block the handled signals, before anything else, so none is lost ([`crate::signal`]);
//! 2. read and validate the configuration, all of it, before anything binds (exit 78);
//! 3. become what this process is meant to be, while it is still single-threaded: the PID 1
//!    supervisor ([`crate::supervisor`]), or a daemon (`--detach`, [`crate::daemon`]);
//! 4. install the signal handlers, before any other thread exists;
//! 5. start trace export and logging, take the PID file, build the runtime;
//! 6. serve until shutdown, and exit with the code the lifecycle ended with.
//!
//! ```no_run
//! use axum::{Router, routing::get};
//!
//! fn main() -> std::process::ExitCode {
//!     rodent::launch::serve(rodent::launch::Options::default(), |service| {
//!         service.routes(Router::new().route("/hello", get(|| async { "hello" })))
//!     })
//! }
//! ```

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use nix::unistd::Pid;

use crate::build::{self, NAME};
use crate::config::{Config, ConfigError, ConfigErrors, LogFormat};
use crate::daemon::{self, Detached, Outcome, Report};
use crate::exit::Exit;
use crate::logging::Logging;
use crate::notify::Notifier;
use crate::pidfile::PidFileLock;
use crate::service::Rodent;
use crate::supervisor::{self, Link, Role};
use crate::telemetry::Telemetry;

/// How to serve.
#[derive(Debug, Default, Clone, Copy)]
pub struct Options {
    /// Run as a daemon (`serve --detach`): return once it is ready, or with its error.
    pub detach: bool,
}

/// Reads configuration, becomes what this process is meant to be, then runs the service until
/// it stops. The order matters: signals are blocked before anything else so none is lost;
/// configuration is complete before anything binds; detaching and supervising fork, so they
/// happen before any thread exists.
pub fn serve(options: Options, build: impl FnOnce(Rodent) -> Rodent) -> ExitCode {
    if let Err(e) = crate::signal::block_early() {
        eprintln!("{NAME}: cannot block signals: {e}");
        return Exit::Failure.into();
    }
    let mut config = match Config::from_env() {
        Ok(config) => config,
        Err(errors) if options.detach => {
            eprintln!("{NAME}: {errors}");
            return Exit::Config.into();
        }
        Err(errors) => {
            let _logging = Logging::init("info", guess_log_format(), Vec::new());
            log_config_errors(&errors);
            return Exit::Config.into();
        }
    };
    let role = supervisor::role(&config);
    // A supervised service was re-executed with the same arguments: its supervisor detached.
    let report = match &role {
        Role::Service(None) | Role::Supervisor(_) if options.detach => match detach(&mut config) {
            Ok(report) => Some(report),
            Err(launcher_exit) => return launcher_exit,
        },
        _ => None,
    };
    match role {
        Role::Supervisor(supervisor) => supervisor
            .pid_file(config.pid_file.clone())
            .report_to(report)
            .run(&config)
            .into(),
        Role::Service(link) => service(config, link, report, build).into(),
    }
}

/// Runs the service in this process. Under a supervisor, the supervisor holds the PID file
/// and the daemon report (if any) comes from it.
fn service(
    config: Config,
    mut link: Option<Link>,
    report: Option<Report>,
    build: impl FnOnce(Rodent) -> Rodent,
) -> Exit {
    // Shared with the lifecycle observer, and kept here until the very end: after a failure,
    // the launcher returns when the last copy is closed, which must follow the PID file.
    let report = report
        .or_else(|| link.as_mut().and_then(Link::take_report))
        .map(Arc::new);
    // Before any thread exists, so every thread (and every process they spawn) starts with
    // the signals unblocked: see rodent::signal.
    let signals = match crate::signal::listen() {
        Ok(signals) => signals,
        Err(e) => {
            eprintln!("{NAME}: cannot install signal handlers: {e}");
            return Exit::Failure;
        }
    };
    // Trace export, when configured, starts its thread here: after the signal handlers, like
    // every thread.
    let mut telemetry = Telemetry::start(&config.vars);
    let logging = Logging::init(&config.log, config.log_format, telemetry.layers());
    log_starting(&config);
    let pid_file = match (&link, &config.pid_file) {
        (None, Some(path)) => match PidFileLock::acquire(path) {
            Ok(lock) => Some(lock),
            Err(e) => {
                tracing::error!(target: "rodent::lifecycle", path = %path.display(), exit_code = e.exit().code(), "{e}");
                if let Some(report) = &report {
                    report.failed(e.exit(), &e.to_string());
                }
                return e.exit();
            }
        },
        _ => None,
    };

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("rodent-worker")
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the async runtime");
            return Exit::Failure;
        }
    };
    let notifier = Notifier::from_vars(&config.vars);
    // Telemetry first, so that its flush is the last shutdown hook.
    let service = telemetry.attach(Rodent::new(config));
    let mut service = build(service.signals(signals).logging(logging.handle()));
    if let Some(link) = link {
        service = service.supervised_by(link);
    }
    match notifier {
        Some(Ok(notifier)) => service = service.on_event(move |event| notifier.observe(event)),
        Some(Err(e)) => {
            tracing::warn!(target: "rodent::notify", error = %e, "NOTIFY_SOCKET is set but cannot be used")
        }
        None => {}
    }
    if let Some(report) = report.clone() {
        service = service.on_event(move |event| report.observe(event));
    }
    let exit = runtime.block_on(service.run());
    // Tasks still parked in blocking calls must not hold the exit.
    runtime.shutdown_timeout(Duration::from_millis(100));
    // Removed last, once nothing of the service is left running; then the launcher of a
    // failed daemon may return.
    drop(pid_file);
    drop(report);
    exit
}

fn log_starting(config: &Config) {
    let settings: Vec<String> = config
        .render()
        .into_iter()
        .map(|(name, value)| format!("{name}={value}"))
        .collect();
    tracing::info!(
        target: "rodent::lifecycle",
        version = build::VERSION,
        commit = build::COMMIT,
        pid = std::process::id(),
        config = settings.join(" "),
        "starting"
    );
    for variable in &config.unknown {
        tracing::warn!(target: "rodent::config", variable = %variable, "unknown variable (a typo?)");
    }
}

/// The log format to report configuration errors in, when the configuration itself is invalid.
fn guess_log_format() -> LogFormat {
    match std::env::var("RODENT_LOG_FORMAT").as_deref().map(str::trim) {
        Ok("text") => LogFormat::Text,
        _ => LogFormat::Json,
    }
}

fn log_config_errors(errors: &ConfigErrors) {
    for error in &errors.0 {
        match error {
            ConfigError::Invalid {
                variable,
                value,
                expected,
            } => tracing::error!(
                target: "rodent::config",
                variable = %variable,
                value = %value,
                expected = %expected,
                "invalid configuration: {error}"
            ),
            other => match other.variable() {
                Some(variable) => {
                    tracing::error!(target: "rodent::config", variable, "invalid configuration: {other}")
                }
                None => tracing::error!(target: "rodent::config", "invalid configuration: {other}"),
            },
        }
    }
    tracing::error!(
        target: "rodent::config",
        problems = errors.0.len(),
        exit_code = Exit::Config.code(),
        "refusing to start with an invalid configuration"
    );
}

/// Becomes a daemon. Returns the daemon's report pipe in the daemon, and the exit code in the
/// launcher, once the daemon has said how its start went.
fn detach(config: &mut Config) -> Result<Report, ExitCode> {
    if nix::unistd::getpid() == Pid::from_raw(1) {
        eprintln!(
            "{NAME}: serve --detach as PID 1 would end the container as soon as it returns; \
             run `rodent serve` in the foreground"
        );
        return Err(Exit::Usage.into());
    }
    // The daemon runs in `/`, and re-reads RODENT_ENV_FILE on every reload.
    if let Some(env_file) = config.env_file.as_ref().filter(|p| p.is_relative()) {
        eprintln!(
            "{NAME}: RODENT_ENV_FILE={} must be an absolute path with serve --detach (the daemon \
             runs in /)",
            env_file.display()
        );
        return Err(Exit::Config.into());
    }
    if let Some(path) = &config.pid_file {
        config.pid_file = Some(std::path::absolute(path).unwrap_or_else(|_| path.clone()));
    }
    let outcome = match daemon::detach(config.log_file.as_deref()) {
        Ok(Detached::Daemon(report)) => return Ok(report),
        Ok(Detached::Launcher(outcome)) => outcome,
        Err(e) => {
            eprintln!("{NAME}: {e}");
            return Err(Exit::Failure.into());
        }
    };
    Err(match outcome {
        Outcome::Ready { pid, address } => {
            match address {
                Some(address) => println!("{NAME} is running (PID {pid}), listening on {address}"),
                None => println!("{NAME} is running (PID {pid})"),
            }
            ExitCode::SUCCESS
        }
        Outcome::Failed { code, message } => {
            eprintln!("{NAME}: {message}");
            ExitCode::from(code)
        }
        Outcome::Vanished => {
            match &config.log_file {
                Some(log) => eprintln!(
                    "{NAME}: the daemon exited before it was ready; its output is in {}",
                    log.display()
                ),
                None => eprintln!(
                    "{NAME}: the daemon exited before it was ready (set RODENT_LOG_FILE to keep \
                     its output)"
                ),
            }
            Exit::Failure.into()
        }
    })
}
