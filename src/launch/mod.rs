//! The life of a rodent process, in the order it must happen, for the `rodent` binary and for
//! any application built on the library (through [`App`](crate::App)):
//!
//! 1. block the handled signals, before anything else, so none is lost;
//! 2. read and validate the configuration, all of it (the application's settings and `OTEL_*`
//!    included), before anything binds (exit 78), and claim what was inherited: a listening
//!    socket, a predecessor to report to;
//! 3. become what this process is meant to be, while it is still single-threaded: the PID 1
//!    supervisor, or a daemon (`--detach`);
//! 4. install the signal handlers, before any other thread exists;
//! 5. start trace export and logging, take the PID file, build the runtime;
//! 6. run the application's setup in that runtime (a shutdown signal meanwhile ends the start);
//! 7. serve until shutdown, and exit with the code the lifecycle ended with.
//!
//! [`App::main`](crate::App::main) puts the command line in front of it (`serve`, `status`,
//! `stop`, `reload`, `restart`, `probe`, `config`, `version`);
//! [`App::serve`](crate::App::serve) is the `serve` command alone, for an application with a
//! command line of its own, given [`Options`].
//!
//! | part | owns |
//! | --- | --- |
//! | this file | the order of a process's life, from blocked signals to the exit code |
//! | `setup` | the application's setup, in the runtime, against shutdown signals |
//! | `cli` | the command line |
//! | `commands` | the commands other than `serve`: `probe`, `config`, `version` |
//! | `control` | `status`, `stop`, `reload` and `restart`: an instance found through its PID file |
//! | `inherited` | what the process was handed at start: a socket, a predecessor |
//! | `probe` | the HTTP client behind `rodent probe` |

mod cli;
mod commands;
mod control;
mod inherited;
mod probe;
mod setup;

use std::os::fd::{AsRawFd, RawFd};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::unistd::Pid;

use crate::build::Identity;
use crate::config::{self, Config, Declaration, Spec};
use crate::exit::Exit;
use crate::observe::logging::{BoxedLayer, Logging};
use crate::observe::telemetry::Telemetry;
use crate::process::daemon::{self, Detached, Outcome, Report};
use crate::process::notify::Notifier;
use crate::process::pidfile::PidFileLock;
use crate::process::successor::{Predecessor, Restarts};
use crate::process::supervisor::{self, Link, Role};
use crate::run::{Rodent, Signals};
use cli::{Cli, Command, ServeArgs};
use inherited::{Inheritance, Refused, refuse};
pub(crate) use setup::Setup;

/// What an application brings to a process: who it is, its settings, its tracing layers.
pub(crate) struct Launch {
    pub(crate) identity: Identity,
    pub(crate) settings: Declaration,
    pub(crate) layers: Vec<BoxedLayer>,
}

impl Launch {
    /// How `serve` and `config` read the configuration: everything, the application's
    /// settings and the `OTEL_*` variables of trace export included.
    fn spec(&self) -> Spec {
        Spec::of(self.identity, self.settings.clone(), true)
    }

    /// How the commands that only look for an instance read it: rodent's own variables (where
    /// it listens, its PID file, its grace), so that they work whatever else is wrong.
    fn own_spec(&self) -> Spec {
        Spec::of(self.identity, config::settings_none(), false)
    }
}

/// Runs the command line around the service `setup` makes: `serve` (the default), `status`,
/// `stop`, `reload`, `restart`, `probe`, `config` and `version`.
pub(crate) fn main(launch: Launch, setup: Setup) -> ExitCode {
    if let Some(refused) = setup::inside_a_runtime(launch.identity.name, "main") {
        return refused;
    }
    let cli = Cli::parse_for(&launch.identity);
    match cli.command.unwrap_or(Command::Serve(ServeArgs::default())) {
        Command::Serve(args) => serve(
            launch,
            Options {
                detach: args.detach,
            },
            setup,
        ),
        Command::Status => control::status(&launch.own_spec()),
        Command::Stop(args) => control::stop(&launch.own_spec(), args.timeout),
        Command::Reload => control::reload(&launch.own_spec()),
        Command::Restart(args) => control::restart(&launch.own_spec(), args.timeout),
        Command::Probe(args) => commands::probe(&launch.own_spec(), args).into(),
        Command::Config { action } => commands::config(&launch.spec(), action).into(),
        Command::Version => commands::version(&launch.own_spec()).into(),
    }
}

/// How to serve.
#[derive(Debug, Default, Clone, Copy)]
#[non_exhaustive]
pub struct Options {
    /// Run as a daemon (`serve --detach`): return once it is ready, or with its error.
    pub detach: bool,
}

impl Options {
    /// Run as a daemon (`serve --detach`) or not.
    pub fn detach(mut self, detach: bool) -> Self {
        self.detach = detach;
        self
    }
}

/// Reads configuration, becomes what this process is meant to be, then runs the service until
/// it stops. The order matters: signals are blocked before anything else so none is lost;
/// configuration is complete before anything binds; detaching and supervising fork, so they
/// happen before any thread exists.
pub(crate) fn serve(launch: Launch, options: Options, setup: Setup) -> ExitCode {
    let name = launch.identity.name;
    if let Some(refused) = setup::inside_a_runtime(name, "serve") {
        return refused;
    }
    if let Err(e) = crate::process::signal::block_early() {
        eprintln!("{name}: cannot block signals: {e}");
        return Exit::Failure.into();
    }
    crate::process::reexec::remember_executable();
    // The TLS files too: a pair the service would refuse is refused before anything forks.
    let read = launch
        .spec()
        .read(None)
        .and_then(|config| crate::tls::check(&config).map(|()| config));
    let mut config = match read {
        Ok(config) => config,
        Err(errors) => {
            let predecessor = Predecessor::inherited(&inherited::process_vars());
            let message = errors.to_string();
            return refuse(
                name,
                &message,
                errors.0.len(),
                options.detach,
                predecessor,
                || errors.log(),
            );
        }
    };
    let mut inherited = match Inheritance::take(&config.vars) {
        Ok(inherited) => inherited,
        Err(refused) => {
            let Refused { error, predecessor } = *refused;
            let message = error.to_string();
            return refuse(name, &message, 1, options.detach, predecessor, || {
                inherited::log_activation_error(&error)
            });
        }
    };
    let role = supervisor::role(&config);
    let predecessor = inherited.predecessor.take();
    let replaces = predecessor.as_ref().map(|p| p.pid);
    let report = match (predecessor, &role) {
        // The instance being replaced is not supervised (it refuses to restart then), but the
        // successor's configuration may ask for supervision: that takes a stop and a start.
        (Some(predecessor), Role::Supervisor(_)) => {
            let message = "RODENT_INIT asks for the PID 1 supervisor, which a restart cannot \
                           start: stop the instance and start it again";
            predecessor.report.failed(Exit::Config, message);
            eprintln!("{name}: {message}");
            return Exit::Config.into();
        }
        // A successor is started by a running instance: it is as detached as its predecessor,
        // and reports to it instead of to a launcher.
        (Some(predecessor), _) => Some(predecessor.report),
        // A supervised service was re-executed with the same arguments: its supervisor detached.
        (None, Role::Serve(None) | Role::Supervisor(_)) if options.detach => {
            // Everything else the caller left open is closed in the daemon.
            let keep: Vec<RawFd> = (inherited.socket.as_ref().map(|s| s.listener.as_raw_fd()))
                .into_iter()
                .chain(inherited.management.as_ref().map(AsRawFd::as_raw_fd))
                .collect();
            match detach(name, &mut config, &keep) {
                Detach::Daemon(report) => Some(report),
                Detach::LauncherDone(exit) => return exit,
            }
        }
        _ => None,
    };
    match role {
        Role::Supervisor(supervisor) => supervisor
            .pid_file(config.pid_file.clone())
            .report_to(report)
            .listener(inherited.socket.take().map(|socket| socket.listener))
            .run(&config)
            .into(),
        Role::Serve(link) => {
            let started = Started {
                link,
                report,
                inherited,
                replaces,
            };
            serve_here(config, launch.layers, started, setup).into()
        }
    }
}

/// What the process became before the service starts: supervised or not, reporting to a
/// launcher or a predecessor or not, with what it inherited.
struct Started {
    link: Option<Link>,
    report: Option<Report>,
    inherited: Inheritance,
    /// The instance this one succeeds.
    replaces: Option<Pid>,
}

/// Runs the service in this process. Under a supervisor, the supervisor holds the PID file
/// and the daemon report (if any) comes from it. `layers`: the application's tracing layers.
fn serve_here(config: Config, layers: Vec<BoxedLayer>, started: Started, setup: Setup) -> Exit {
    let Started {
        mut link,
        report,
        mut inherited,
        replaces,
    } = started;
    let name = config.name();
    if link.is_some() {
        supervisor::name_service();
    }
    // Shared with the lifecycle observer, and kept here until the very end: after a failure,
    // the launcher returns when the last copy is closed, which must follow the PID file.
    let report = report
        .or_else(|| link.as_mut().and_then(Link::take_report))
        .map(Arc::new);
    // Before any thread exists, so every thread (and every process they spawn) starts with
    // the signals unblocked: see `process::signal`.
    let signals = match crate::process::signal::listen() {
        Ok(signals) => signals,
        Err(e) => {
            eprintln!("{name}: cannot install signal handlers: {e}");
            return Exit::Failure;
        }
    };
    // Trace export, when configured, starts its thread here: after the signal handlers, like
    // every thread.
    let mut telemetry = Telemetry::start(&config.vars, &config.spec.identity);
    let mut layers = layers;
    layers.extend(telemetry.layers());
    let logging = Logging::init(&config.log, config.log_format, layers);
    log_starting(&config);
    inherited.log(link.is_some());
    // A successor locks a file beside the PID file, which its last startup step moves over it.
    let pid_file = match (&link, &config.pid_file) {
        (None, Some(path)) => match replaces.map_or_else(
            || PidFileLock::acquire(path),
            |_| PidFileLock::stand_by(path),
        ) {
            Ok(lock) => Some(Arc::new(Mutex::new(lock))),
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
    let restarts =
        Restarts::of_this_process(config.pid_file.clone(), link.is_some(), notifier.is_some());
    let takeover = match (replaces, &pid_file, &config.pid_file) {
        (Some(predecessor), Some(lock), Some(path)) => {
            Some((predecessor, lock.clone(), path.clone()))
        }
        _ => None,
    };
    let mut service = Rodent::new(config).restarts(restarts);
    if let Some(management) = inherited.management.take() {
        service = service.management_socket(management);
    }
    let flush = telemetry.connect(&service.metrics());
    let service = service.logging(logging.handle()).flush_last(flush);
    let (service, signals) = match setup::run(&runtime, setup, service, signals) {
        Ok(ready) => ready,
        Err(stopped) => {
            if let Some(report) = &report {
                report.failed(stopped.exit, &stopped.cause);
            }
            let budget = stopped.budget;
            runtime.shutdown_timeout(budget.runtime_shutdown_limit(tokio::time::Instant::now()));
            drop(pid_file);
            drop(report);
            logging.close_within(budget.log_flush_limit(tokio::time::Instant::now()));
            return stopped.exit;
        }
    };
    let mut service = service;
    // Registered after the application's hooks, so it runs last: the PID file names this
    // process only once everything else is ready, right before the predecessor is told.
    if let Some((predecessor, lock, path)) = takeover {
        service = service.on_startup(
            "PID file takeover",
            Duration::from_secs(1),
            move || async move {
                lock.lock()
                    .expect("the PID file lock is never poisoned: nothing panics while holding it")
                    .take_over(&path, predecessor)
                    .map_err(|e| e.into())
            },
        );
    }
    match notifier {
        Some(Ok(notifier)) => {
            service = service.on_event_in_loop(move |event| notifier.observe(event))
        }
        Some(Err(e)) => {
            tracing::warn!(target: "rodent::notify", error = %e, "NOTIFY_SOCKET is set but cannot be used")
        }
        None => {}
    }
    if let Some(report) = report.clone() {
        service = service.on_event_in_loop(move |event| report.observe(event));
    }
    let metrics = service.metrics();
    let ended = runtime.block_on(async move {
        if let Some(link) = link {
            link.publish(move |total| metrics.set_zombies_reaped(total));
        }
        match inherited.socket.take() {
            Some(socket) => {
                service
                    .serve_inherited(socket.listener, Signals::Os(signals))
                    .await
            }
            None => service.bind_and_serve(Signals::Os(signals)).await,
        }
    });
    // What is left of the exit keeps to the schedule the stop began with (see
    // `lifecycle::budget`): tasks still parked in blocking calls must not hold it, nor a stuck
    // stdout.
    let budget = ended.budget;
    runtime.shutdown_timeout(budget.runtime_shutdown_limit(tokio::time::Instant::now()));
    // Removed last, once nothing of the service is left running; then the launcher of a
    // failed daemon may return.
    drop(pid_file);
    drop(report);
    logging.close_within(budget.log_flush_limit(tokio::time::Instant::now()));
    ended.exit
}

fn log_starting(config: &Config) {
    let identity = &config.spec.identity;
    let settings: Vec<String> = config
        .render()
        .into_iter()
        .map(|(name, value)| format!("{name}={value}"))
        .collect();
    tracing::info!(
        target: "rodent::lifecycle",
        name = identity.name,
        version = identity.version,
        commit = identity.commit(),
        rodent = crate::build::VERSION,
        pid = std::process::id(),
        config = settings.join(" "),
        "starting"
    );
    config.warn_unknown();
}

/// Which side of `--detach` this process is on once [`detach`] returns.
enum Detach {
    /// The daemon, with the pipe to report its start on.
    Daemon(Report),
    /// The launcher, done: the daemon has said how its start went (or could not be started),
    /// and this is the launcher's exit code.
    LauncherDone(ExitCode),
}

/// Becomes a daemon. `name`: the application's, for what the launcher prints; `keep`: the
/// inherited descriptors the daemon keeps.
fn detach(name: &str, config: &mut Config, keep: &[RawFd]) -> Detach {
    if nix::unistd::getpid() == Pid::from_raw(1) {
        eprintln!(
            "{name}: serve --detach as PID 1 would end the container as soon as it returns; \
             run `rodent serve` in the foreground"
        );
        return Detach::LauncherDone(Exit::Usage.into());
    }
    // The daemon runs in `/`, and reads these files again while it runs.
    let files = [
        ("RODENT_ENV_FILE", &config.env_file),
        ("RODENT_TLS_CERT", &config.tls_cert),
        ("RODENT_TLS_KEY", &config.tls_key),
    ];
    for (variable, path) in files {
        if let Some(path) = path.as_ref().filter(|p| p.is_relative()) {
            eprintln!(
                "{name}: {variable}={} must be an absolute path with serve --detach (the daemon \
                 runs in /)",
                path.display()
            );
            return Detach::LauncherDone(Exit::Config.into());
        }
    }
    if let Some(path) = &config.pid_file {
        config.pid_file = Some(std::path::absolute(path).unwrap_or_else(|_| path.clone()));
    }
    let outcome = match daemon::detach(config.log_file.as_deref(), keep) {
        Ok(Detached::Daemon(report)) => return Detach::Daemon(report),
        Ok(Detached::Launcher(outcome)) => outcome,
        Err(e) => {
            eprintln!("{name}: {e}");
            return Detach::LauncherDone(Exit::Failure.into());
        }
    };
    Detach::LauncherDone(match outcome {
        Outcome::Ready { pid, address } => {
            match address {
                Some(address) => println!("{name} is running (PID {pid}), listening on {address}"),
                None => println!("{name} is running (PID {pid})"),
            }
            ExitCode::SUCCESS
        }
        Outcome::Failed { code, message } => {
            eprintln!("{name}: {message}");
            ExitCode::from(code)
        }
        Outcome::Vanished => {
            match &config.log_file {
                Some(log) => eprintln!(
                    "{name}: the daemon exited before it was ready; its output is in {}",
                    log.display()
                ),
                None => eprintln!(
                    "{name}: the daemon exited before it was ready (set RODENT_LOG_FILE to keep \
                     its output)"
                ),
            }
            Exit::Failure.into()
        }
    })
}
