//! The `rodent` binary: the library's lifecycle around the reference routes.

mod cli;
mod control;

use std::process::ExitCode;

use clap::Parser;
use rodent::config::Config;
use rodent::launch::Options;
use rodent::probe::{self, Probe, Target};
use rodent::{Exit, build};

use cli::{Cli, Command, ConfigAction, ProbeArgs, ProbeKind, ServeArgs};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Serve(ServeArgs::default())) {
        Command::Serve(args) => rodent::launch::serve(
            Options {
                detach: args.detach,
            },
            |service| service.routes(rodent::reference::routes()),
        ),
        Command::Status => control::status(),
        Command::Stop(args) => control::stop(args.timeout),
        Command::Reload => control::reload(),
        Command::Probe(args) => probe(args).into(),
        Command::Config { action } => config(action).into(),
        Command::Version => version().into(),
    }
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
