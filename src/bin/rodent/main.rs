//! The `rodent` binary: the library's lifecycle around the reference routes.

mod cli;

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use rodent::config::{Config, ConfigErrors, LogFormat};
use rodent::logging::Logging;
use rodent::probe::{self, Probe, Target};
use rodent::{Exit, Rodent, Telemetry, build};

use cli::{Cli, Command, ConfigAction, ProbeArgs, ProbeKind, ServeArgs};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let exit = match cli.command.unwrap_or(Command::Serve(ServeArgs::default())) {
        Command::Serve(args) => serve(args),
        Command::Probe(args) => probe(args),
        Command::Config { action } => config(action),
        Command::Version => version(),
    };
    exit.into()
}

/// Reads configuration, then runs the service until it stops. The order matters: signals are
/// blocked before anything else so none is lost, and configuration is complete before anything
/// binds.
fn serve(_args: ServeArgs) -> Exit {
    if let Err(e) = rodent::signal::block_early() {
        eprintln!("rodent: cannot block signals: {e}");
        return Exit::Failure;
    }
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(errors) => {
            let _logging = Logging::init("info", guess_log_format(), Vec::new());
            log_config_errors(&errors);
            return Exit::Config;
        }
    };
    let mut telemetry = Telemetry::start(&config.vars);
    let logging = Logging::init(&config.log, config.log_format, telemetry.layers());
    log_starting(&config);

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
    // Attached first, so that its flush is the last shutdown hook.
    let service = telemetry
        .attach(Rodent::new(config))
        .routes(rodent::reference::routes())
        .logging(logging.handle());
    let exit = runtime.block_on(service.run());
    // Tasks still parked in blocking calls must not hold the exit.
    runtime.shutdown_timeout(Duration::from_millis(100));
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
