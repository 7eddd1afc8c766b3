//! The command line. Configuration never comes from here: only from the environment.

use std::time::Duration;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};

use crate::build::Identity;

#[derive(Parser)]
#[command(
    about = "An HTTP service with a correct process lifecycle",
    long_about = "An HTTP service with a correct process lifecycle: honest probes, a drain that \
                  drops no request, an exit inside the grace period, safe as PID 1.\n\n\
                  Configured only by environment variables; the `config` command shows them.",
    after_help = "Exit codes: 0 clean stop, 1 runtime failure, 2 usage, 75 already running, \
                  78 invalid configuration, 123 forced by a second signal, 124 shutdown deadline \
                  reached, 128+N killed by signal N. `status` answers with LSB codes (0 running, 1 dead \
                  with its PID file left, 3 not running, 4 unknown)."
)]
pub(super) struct Cli {
    #[command(subcommand)]
    pub(super) command: Option<Command>,
}

impl Cli {
    /// Parses the process's arguments, for the application `identity` names: its name and
    /// version are the command's (`--version`, `--help`, usage lines). Exits on `--help`,
    /// `--version` and usage errors, as clap does.
    pub(super) fn parse_for(identity: &Identity) -> Self {
        let mut command = Cli::command()
            .name(identity.name)
            .bin_name(identity.name)
            .version(identity.version);
        if let Some(about) = identity.about {
            command = command.about(about).long_about(None);
        }
        let matches = command.get_matches();
        Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
    }
}

#[derive(Subcommand)]
pub(super) enum Command {
    /// Serve until SIGTERM or SIGINT (the default command).
    Serve(ServeArgs),
    /// Whether the instance holding RODENT_PID_FILE is running.
    ///
    /// LSB exit codes: 0 running (its PID printed), 1 not running but its PID file is left,
    /// 3 not running, 4 unknown (no PID file configured, or it cannot be read).
    Status,
    /// Stop the instance holding RODENT_PID_FILE and wait until it has exited.
    ///
    /// Sends SIGTERM (the instance drains as it would for Kubernetes) and waits for the PID
    /// file's lock to be released. Exit 0 stopped, 3 not running, 1 still running after the
    /// timeout or not signalled.
    Stop(StopArgs),
    /// Make the instance holding RODENT_PID_FILE reload its configuration.
    ///
    /// Sends SIGHUP; the outcome is in the instance's log. Exit 0 sent, 3 not running.
    Reload,
    /// Replace the instance holding RODENT_PID_FILE with a fresh one, losing no request.
    ///
    /// Sends SIGUSR2: the instance starts its successor on its own listening socket (the same
    /// binary path, arguments and environment; RODENT_ENV_FILE read afresh), waits until it is
    /// ready and holds the PID file, then drains. Exit 0 once the old instance has exited;
    /// the successor's own exit code (78 for an invalid configuration) with its error when it
    /// could not start, the old instance serving on untouched; 3 not running; 1 otherwise.
    Restart(RestartArgs),
    /// Call a probe of a running instance; exit 0 when it answers 200 (`grpc`: SERVING).
    Probe(ProbeArgs),
    /// Print the effective configuration, secrets redacted.
    Config {
        #[command(subcommand)]
        action: Option<ConfigAction>,
    },
    /// Print the version and build information.
    Version,
}

#[derive(Args, Default)]
pub(super) struct ServeArgs {
    /// Run in the background as a daemon; return once it serves or has failed to start.
    ///
    /// Exit 0 with its PID once it serves; its own error and exit code if it could not start.
    /// Its output goes to RODENT_LOG_FILE (or nowhere); its PID to RODENT_PID_FILE.
    #[arg(long)]
    pub(super) detach: bool,
}

#[derive(Args)]
pub(super) struct StopArgs {
    /// How long to wait for the instance to exit; by default RODENT_SHUTDOWN_GRACE plus 5s.
    #[arg(long, value_parser = duration)]
    pub(super) timeout: Option<Duration>,
}

#[derive(Args)]
pub(super) struct RestartArgs {
    /// How long to wait for the outcome and the old instance's exit; by default a minute for
    /// the successor's start plus RODENT_SHUTDOWN_GRACE plus 5s.
    #[arg(long, value_parser = duration)]
    pub(super) timeout: Option<Duration>,
}

#[derive(Subcommand)]
pub(super) enum ConfigAction {
    /// Validate the configuration: exit 0 when valid, 78 with every problem listed otherwise.
    Check,
}

#[derive(Args)]
pub(super) struct ProbeArgs {
    /// Which probe: `live` (/healthz), `ready` (/readyz) or `grpc` (grpc.health.v1.Health/Check,
    /// over h2c).
    #[arg(value_enum, default_value_t = ProbeKind::Ready)]
    pub(super) kind: ProbeKind,
    /// With `grpc`: the service to ask about; by default the whole server (the empty name).
    #[arg(long)]
    pub(super) service: Option<String>,
    /// The instance to probe, as http://host[:port]; by default the one RODENT_HOST and
    /// RODENT_PORT describe, over loopback.
    #[arg(long)]
    pub(super) url: Option<String>,
    /// How long to wait for the answer.
    #[arg(long, default_value = "2s", value_parser = duration)]
    pub(super) timeout: Duration,
}

#[derive(Clone, Copy, ValueEnum)]
pub(super) enum ProbeKind {
    Live,
    Ready,
    Grpc,
}

/// Durations on the command line take the same form as in the environment.
fn duration(raw: &str) -> Result<Duration, String> {
    crate::config::parse_duration(raw)
}
