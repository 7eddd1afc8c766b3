//! The `rodent` binary: the library's lifecycle around the reference routes.

mod cli;
mod control;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use rodent::config::{Config, ConfigErrors, LogFormat};
use rodent::daemon::Report;
use rodent::logging::Logging;
use rodent::notify::Notifier;
use rodent::pidfile::PidFileLock;
use rodent::probe::{self, Probe, Target};
use rodent::supervisor::{self, Link, Role};
use rodent::{Exit, Rodent, build};

use cli::{Cli, Command, ConfigAction, ProbeArgs, ProbeKind, ServeArgs};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Serve(ServeArgs::default())) {
        Command::Serve(args) => serve(args),
        Command::Status => control::status(),
        Command::Stop(args) => control::stop(args.timeout),
        Command::Reload => control::reload(),
        Command::Probe(args) => probe(args).into(),
        Command::Config { action } => config(action).into(),
        Command::Version => version().into(),
    }
}

/// Reads configuration, becomes what this process is meant to be, then runs the service until
/// it stops. The order matters: signals are blocked before anything else so none is lost;
/// configuration is complete before anything binds; detaching and supervising fork, so they
/// happen before any thread exists.
fn serve(args: ServeArgs) -> ExitCode {
    if let Err(e) = rodent::signal::block_early() {
        eprintln!("rodent: cannot block signals: {e}");
        return Exit::Failure.into();
    }
    let mut config = match Config::from_env() {
        Ok(config) => config,
        Err(errors) if args.detach => {
            eprintln!("rodent: {errors}");
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
        Role::Service(None) | Role::Supervisor(_) if args.detach => {
            match control::detach(&mut config) {
                Ok(report) => Some(report),
                Err(launcher_exit) => return launcher_exit,
            }
        }
        _ => None,
    };
    match role {
        Role::Supervisor(supervisor) => supervisor
            .pid_file(config.pid_file.clone())
            .report_to(report)
            .run(&config)
            .into(),
        Role::Service(link) => service(config, link, report).into(),
    }
}

/// Runs the service in this process. Under a supervisor, the supervisor holds the PID file
/// and the daemon report (if any) comes from it.
fn service(config: Config, mut link: Option<Link>, report: Option<Report>) -> Exit {
    // Shared with the lifecycle observer, and kept here until the very end: after a failure,
    // the launcher returns when the last copy is closed, which must follow the PID file.
    let report = report
        .or_else(|| link.as_mut().and_then(Link::take_report))
        .map(Arc::new);
    // Before any thread exists, so every thread (and every process they spawn) starts with
    // the signals unblocked: see rodent::signal.
    let signals = match rodent::signal::listen() {
        Ok(signals) => signals,
        Err(e) => {
            eprintln!("rodent: cannot install signal handlers: {e}");
            return Exit::Failure;
        }
    };
    let logging = Logging::init(&config.log, config.log_format, Vec::new());
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
    let mut service = Rodent::new(config)
        .signals(signals)
        .routes(rodent::reference::routes())
        .logging(logging.handle());
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
            rodent::config::ConfigError::Invalid {
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

fn probe(args: ProbeArgs) -> Exit {
    let target = match &args.url {
        Some(url) => match Target::parse(url) {
            Ok(target) => target,
            Err(e) => {
                eprintln!("rodent probe: {e}");
                return Exit::Usage;
            }
        },
        None => match Config::from_env() {
            Ok(config) => Target::from_config(&config),
            Err(errors) => {
                eprintln!("rodent probe: {errors}");
                return Exit::Config;
            }
        },
    };
    let which = match args.kind {
        ProbeKind::Live => Probe::Live,
        ProbeKind::Ready => Probe::Ready,
    };
    match probe::check(&target, which, args.timeout) {
        Ok(200) => Exit::Clean,
        Ok(status) => {
            eprintln!("rodent probe: {} answered {status}", which.path());
            Exit::Failure
        }
        Err(e) => {
            eprintln!("rodent probe: {e}");
            Exit::Failure
        }
    }
}

fn config(action: Option<ConfigAction>) -> Exit {
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(errors) => {
            eprintln!("{errors}");
            return Exit::Config;
        }
    };
    for variable in &config.unknown {
        eprintln!("warning: {variable} is not a rodent variable (a typo?)");
    }
    match action {
        Some(ConfigAction::Check) => println!("configuration is valid"),
        None => {
            for (name, value) in config.render() {
                println!("{name}={value}");
            }
        }
    }
    Exit::Clean
}

fn version() -> Exit {
    let info = build::INFO;
    println!(
        "{} {} (commit {}, {}, {}, {})",
        info.name, info.version, info.commit, info.rustc, info.target, info.profile
    );
    Exit::Clean
}
