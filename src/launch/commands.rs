//! The commands that do not serve and do not look for an instance through its PID file:
//! `probe`, `config` and `version`.

use super::cli::{ConfigAction, ProbeArgs, ProbeKind};
use super::probe::{self, Probe, Target};
use crate::build;
use crate::config::Config;
use crate::exit::Exit;

/// `rodent probe [live|ready|grpc]`: exit 0 when the probe answers 200 (or `SERVING`), the
/// Docker `HEALTHCHECK` of an image with no shell.
pub(super) fn probe(args: ProbeArgs) -> Exit {
    if args.service.is_some() && !matches!(args.kind, ProbeKind::Grpc) {
        eprintln!("rodent probe: --service names a gRPC service: use it with `rodent probe grpc`");
        return Exit::Usage;
    }
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
        ProbeKind::Grpc => return probe_grpc(&target, &args),
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

/// `rodent probe grpc [--service NAME]`: exit 0 when the health service answers `SERVING`.
fn probe_grpc(target: &Target, args: &ProbeArgs) -> Exit {
    let service = args.service.as_deref().unwrap_or_default();
    match probe::check_grpc(target, service, args.timeout) {
        Ok(status) if status == "SERVING" => Exit::Clean,
        Ok(status) => {
            eprintln!("rodent probe: grpc.health.v1.Health/Check of {service:?} answered {status}");
            Exit::Failure
        }
        Err(e) => {
            eprintln!("rodent probe: {e}");
            Exit::Failure
        }
    }
}

/// `rodent config [check]`: the effective configuration, secrets redacted, or just whether it
/// is valid.
pub(super) fn config(action: Option<ConfigAction>) -> Exit {
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

/// `rodent version`.
pub(super) fn version() -> Exit {
    let info = build::INFO;
    println!(
        "{} {} (commit {}, {}, {}, {})",
        info.name, info.version, info.commit, info.rustc, info.target, info.profile
    );
    Exit::Clean
}
