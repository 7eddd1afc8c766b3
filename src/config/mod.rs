//! Configuration: environment variables only, plus an optional dotenv file layered over them.
//!
//! Everything is parsed and validated before anything binds or spawns, and every problem is
//! reported at once: a user fixing a manifest should not have to redeploy once per typo. The
//! process environment is read in exactly one place ([`Config::from_env`]); everything else,
//! tests included, goes through [`Config::from_vars`] with a map.

mod error;
mod fields;
pub(crate) mod otel;
mod parse;
mod reload;
mod source;
mod variables;

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

pub use error::{ConfigError, ConfigErrors, looks_secret};
pub use parse::{duration as parse_duration, format_duration};
pub use reload::Reload;
pub use source::Vars;
pub use variables::{VARIABLES, Variable};

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line: what log collectors expect.
    Json,
    /// Human-readable lines for a terminal.
    Text,
}

/// Whether rodent supervises its service as an init process (see the `supervisor` module).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitMode {
    /// Supervise when running as PID 1, as in a container.
    Auto,
    /// Always supervise; outside PID 1 this makes rodent a child subreaper.
    Always,
    /// Never supervise, even as PID 1.
    Never,
}

/// A value that is never printed: `Debug` and the rendered configuration show `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself; only for comparing, never for logging.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// The validated configuration of one rodent process.
#[derive(Clone, PartialEq, Eq)]
pub struct Config {
    pub host: IpAddr,
    pub port: u16,
    /// Tracing filter directives, already checked to parse.
    pub log: String,
    pub log_format: LogFormat,
    /// How long readiness fails before the listener closes, so load balancers stop routing here
    /// while every request that still arrives is served.
    pub drain_delay: Duration,
    /// The whole budget from the first shutdown signal to exit.
    pub shutdown_grace: Duration,
    pub request_timeout: Duration,
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub body_limit: usize,
    pub max_inflight: usize,
    pub pid_file: Option<PathBuf>,
    pub init: InitMode,
    pub env_file: Option<PathBuf>,
    pub log_file: Option<PathBuf>,
    pub admin_token: Option<Secret>,
    /// `RODENT_*` variables that rodent does not know: most likely typos, logged as warnings.
    pub unknown: Vec<String>,
    /// The whole environment the configuration was read from, for the parts of the program that
    /// read their own variables (telemetry reads `OTEL_*`).
    pub vars: Vars,
}

/// Shows the rendered (masked) settings: the raw environment may hold secrets of any name.
impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut map = f.debug_map();
        for (name, value) in self.render() {
            map.entry(&name, &value);
        }
        map.finish()
    }
}

impl Config {
    /// Reads the process environment (and `RODENT_ENV_FILE`, when set).
    pub fn from_env() -> Result<Self, ConfigErrors> {
        let vars = source::process_env().map_err(|e| ConfigErrors(vec![e]))?;
        Self::from_vars(vars)
    }

    /// Reads configuration from the given variables, layering `RODENT_ENV_FILE` over them when
    /// it is set among them.
    pub fn from_vars<I, K, V>(vars: I) -> Result<Self, ConfigErrors>
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let vars: Vars = vars
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        let vars = source::layer_env_file(vars).map_err(|e| ConfigErrors(vec![e]))?;
        let raw: fields::Raw = envy::prefixed("RODENT_")
            .from_iter(
                vars.iter()
                    // Exact names only: envy lowercases names before matching them, which would
                    // read `RODENT_Port` as `RODENT_PORT` (and blame `RODENT_PORT` for its value)
                    // and refuse `RODENT_PORT` next to `RODENT_port` as a duplicate. Any other
                    // `RODENT_*` name is warned about as unknown.
                    .filter(|(k, _)| VARIABLES.iter().any(|v| v.name == k.as_str()))
                    .map(|(k, v)| (k.clone(), v.clone())),
            )
            .map_err(|e| {
                ConfigErrors(vec![ConfigError::Inconsistent {
                    explanation: format!("the environment could not be read: {e}"),
                }])
            })?;
        fields::Fields::new().build(raw, vars)
    }

    /// Time kept in reserve at the end of the grace period for shutdown hooks, flushing
    /// telemetry and exiting: 10% of the grace, at least 100 ms and at most 5 s. The exit's
    /// schedule owns the rule (`lifecycle::budget`).
    pub fn safety_margin(&self) -> Duration {
        crate::lifecycle::budget::safety_margin(self.shutdown_grace)
    }

    /// When remaining connections are aborted, measured from the first shutdown signal.
    pub fn shutdown_deadline(&self) -> Duration {
        crate::lifecycle::budget::deadline_after(self.shutdown_grace)
    }

    /// Warns about every `RODENT_*` variable that rodent does not know.
    pub(crate) fn warn_unknown(&self) {
        for variable in &self.unknown {
            match variables::in_another_case(variable) {
                Some(meant) => tracing::warn!(
                    target: "rodent::config",
                    variable = %variable,
                    not = meant,
                    "unknown variable: names are case-sensitive, and this one is not read"
                ),
                None => {
                    tracing::warn!(target: "rodent::config", variable = %variable, "unknown variable (a typo?)")
                }
            }
        }
    }

    pub fn bind_addr(&self) -> SocketAddr {
        SocketAddr::new(self.host, self.port)
    }

    /// The effective configuration as `(variable, value)` pairs, secrets masked.
    pub fn render(&self) -> Vec<(&'static str, String)> {
        let path = |p: &Option<PathBuf>| {
            p.as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        };
        vec![
            ("RODENT_HOST", self.host.to_string()),
            ("RODENT_PORT", self.port.to_string()),
            ("RODENT_LOG", self.log.clone()),
            ("RODENT_LOG_FORMAT", self.log_format.as_str().to_string()),
            ("RODENT_DRAIN_DELAY", format_duration(self.drain_delay)),
            (
                "RODENT_SHUTDOWN_GRACE",
                format_duration(self.shutdown_grace),
            ),
            (
                "RODENT_REQUEST_TIMEOUT",
                format_duration(self.request_timeout),
            ),
            (
                "RODENT_HEADER_READ_TIMEOUT",
                format_duration(self.header_read_timeout),
            ),
            ("RODENT_IDLE_TIMEOUT", format_duration(self.idle_timeout)),
            ("RODENT_BODY_LIMIT", self.body_limit.to_string()),
            ("RODENT_MAX_INFLIGHT", self.max_inflight.to_string()),
            ("RODENT_PID_FILE", path(&self.pid_file)),
            ("RODENT_INIT", self.init.as_str().to_string()),
            ("RODENT_ENV_FILE", path(&self.env_file)),
            ("RODENT_LOG_FILE", path(&self.log_file)),
            (
                "RODENT_ADMIN_TOKEN",
                if self.admin_token.is_some() {
                    "***"
                } else {
                    ""
                }
                .to_string(),
            ),
        ]
    }
}

impl LogFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Json => "json",
            Self::Text => "text",
        }
    }
}

impl InitMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Always => "always",
            Self::Never => "never",
        }
    }
}

#[cfg(test)]
mod tests;
