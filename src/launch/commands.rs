//! The commands that do not serve and do not look for an instance through its PID file:
//! `probe`, `config` and `version`.

use super::cli::{ConfigAction, ProbeArgs, ProbeKind};
use super::probe::{self, Probe, Target};
use crate::config::Spec;
use crate::exit::Exit;

/// `rodent probe [live|ready|grpc]`: exit 0 when the probe answers 200 (or `SERVING`), the
/// Docker `HEALTHCHECK` of an image with no shell. Reads only where the service listens: a
/// probe must not fail for a setting the running service does not even share.
pub(super) fn probe(spec: &Spec, args: ProbeArgs) -> Exit {
    let name = spec.identity.name;
    if args.service.is_some() && !matches!(args.kind, ProbeKind::Grpc) {
        eprintln!("{name} probe: --service names a gRPC service: use it with `{name} probe grpc`");
        return Exit::Usage;
    }
    let target = match &args.url {
        // An https URL trusts the certificate the service serves, as the probe of this
        // instance does, or the public roots.
        Some(url) => match Target::parse(
            url,
            std::env::var_os("RODENT_TLS_CERT")
                .filter(|cert| !cert.is_empty())
                .map(Into::into),
        ) {
            Ok(target) => target,
            Err(e) => {
                eprintln!("{name} probe: {e}");
                return Exit::Usage;
            }
        },
        None => match spec.read(None) {
            Ok(config) => Target::from_config(&config),
            Err(errors) => {
                eprintln!("{name} probe: {errors}");
                return Exit::Config;
            }
        },
    };
    let which = match args.kind {
        ProbeKind::Live => Probe::Live,
        ProbeKind::Ready => Probe::Ready,
        ProbeKind::Grpc => return probe_grpc(name, &target, &args),
    };
    match probe::check(&target, which, args.timeout) {
        Ok(200) => Exit::Clean,
        Ok(status) => {
            eprintln!("{name} probe: {} answered {status}", which.path());
            Exit::Failure
        }
        Err(e) => {
            eprintln!("{name} probe: {e}");
            Exit::Failure
        }
    }
}

/// `rodent probe grpc [--service NAME]`: exit 0 when the health service answers `SERVING`.
fn probe_grpc(name: &str, target: &Target, args: &ProbeArgs) -> Exit {
    let service = args.service.as_deref().unwrap_or_default();
    match probe::check_grpc(target, service, args.timeout) {
        Ok(status) if status == "SERVING" => Exit::Clean,
        Ok(status) => {
            eprintln!("{name} probe: grpc.health.v1.Health/Check of {service:?} answered {status}");
            Exit::Failure
        }
        Err(e) => {
            eprintln!("{name} probe: {e}");
            Exit::Failure
        }
    }
}

/// `rodent config [check]`: the effective configuration, secrets redacted, or just whether it
/// is valid: everything `serve` reads, the application's settings and `OTEL_*` included.
pub(super) fn config(spec: &Spec, action: Option<ConfigAction>) -> Exit {
    // The TLS files too: a pair the start would refuse is an invalid configuration.
    let config = match spec
        .read(None)
        .and_then(|config| crate::tls::check(&config).map(|()| config))
    {
        Ok(config) => config,
        Err(errors) => {
            eprintln!("{errors}");
            return Exit::Config;
        }
    };
    for variable in config.unknown() {
        eprintln!(
            "warning: {variable} is not a variable of {} (a typo?)",
            spec.identity.name
        );
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
pub(super) fn version(spec: &Spec) -> Exit {
    let info = spec.identity.build_info();
    println!(
        "{} {} (commit {}, rodent {}, {}, {}, {})",
        info.name, info.version, info.commit, info.rodent, info.rustc, info.target, info.profile
    );
    Exit::Clean
}
