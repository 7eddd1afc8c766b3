//! Configuration: environment variables only, plus an optional dotenv file layered over them.
//!
//! Everything is parsed and validated before anything binds or spawns, and every problem is
//! reported at once: a user fixing a manifest should not have to redeploy once per typo. The
//! process environment is read in exactly one place ([`Config::from_env`]); everything else,
//! tests included, goes through [`Config::from_vars`] with a map.

mod parse;
mod source;

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

pub use parse::{duration as parse_duration, format_duration};

/// The environment as rodent sees it: process variables with the env file layered on top.
pub type Vars = BTreeMap<String, String>;

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

/// One documented variable.
pub struct Variable {
    pub name: &'static str,
    pub default: &'static str,
    /// Applied by a reload (SIGHUP) without a restart.
    pub reloadable: bool,
}

/// Every variable rodent reads, in the order the README documents them.
pub const VARIABLES: &[Variable] = &[
    var("RODENT_HOST", "0.0.0.0", false),
    var("RODENT_PORT", "8080", false),
    var("RODENT_LOG", "info", true),
    var("RODENT_LOG_FORMAT", "json", true),
    var("RODENT_DRAIN_DELAY", "5s", true),
    var("RODENT_SHUTDOWN_GRACE", "30s", true),
    var("RODENT_REQUEST_TIMEOUT", "20s", true),
    var("RODENT_HEADER_READ_TIMEOUT", "10s", false),
    var("RODENT_IDLE_TIMEOUT", "60s", false),
    var("RODENT_BODY_LIMIT", "1048576", true),
    var("RODENT_MAX_INFLIGHT", "1024", true),
    var("RODENT_PID_FILE", "(per platform)", false),
    var("RODENT_INIT", "auto", false),
    var("RODENT_ENV_FILE", "", false),
    var("RODENT_LOG_FILE", "", false),
    var("RODENT_ADMIN_TOKEN", "", true),
];

const fn var(name: &'static str, default: &'static str, reloadable: bool) -> Variable {
    Variable {
        name,
        default,
        reloadable,
    }
}

/// Variables that rodent itself sets for its own child processes, never by users.
const INTERNAL_VARIABLES: &[&str] = &["RODENT_SUPERVISED", "RODENT_DAEMON_FD"];

/// One reason the configuration was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// A variable whose value could not be used.
    Invalid {
        variable: String,
        /// The value as given, or `***` for secrets.
        value: String,
        expected: String,
    },
    /// Values that are each valid but cannot work together.
    Inconsistent { explanation: String },
    /// `RODENT_ENV_FILE` names a file that cannot be read or parsed.
    EnvFile { path: PathBuf, reason: String },
}

impl ConfigError {
    /// `variable` had the value `raw`, which is not what was `expected`; the value is kept
    /// only when the variable's name does not look secret.
    pub fn invalid(variable: &str, raw: &str, expected: impl Into<String>) -> Self {
        let value = if looks_secret(variable) {
            "***".to_string()
        } else {
            raw.to_string()
        };
        Self::Invalid {
            variable: variable.to_string(),
            value,
            expected: expected.into(),
        }
    }

    /// The variable this error is about, when there is exactly one.
    pub fn variable(&self) -> Option<&str> {
        match self {
            Self::Invalid { variable, .. } => Some(variable),
            Self::EnvFile { .. } => Some("RODENT_ENV_FILE"),
            Self::Inconsistent { .. } => None,
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Invalid {
                variable,
                value,
                expected,
            } => write!(f, "{variable}={value:?} is invalid: expected {expected}"),
            Self::Inconsistent { explanation } => f.write_str(explanation),
            Self::EnvFile { path, reason } => {
                write!(
                    f,
                    "RODENT_ENV_FILE={:?} cannot be used: {reason}",
                    path.display().to_string()
                )
            }
        }
    }
}

/// Every problem found in one reading of the configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let noun = if self.0.len() == 1 {
            "problem"
        } else {
            "problems"
        };
        write!(f, "invalid configuration ({} {noun})", self.0.len())?;
        for error in &self.0 {
            write!(f, "\n  - {error}")?;
        }
        Ok(())
    }
}

/// The raw strings, mapped by envy from `RODENT_*` names to fields. Every field is optional and a
/// string so that mapping cannot fail: the typed parsing happens field by field afterwards, which
/// is what lets us report every bad variable instead of the first one.
#[derive(Deserialize, Default)]
struct Raw {
    host: Option<String>,
    port: Option<String>,
    log: Option<String>,
    log_format: Option<String>,
    drain_delay: Option<String>,
    shutdown_grace: Option<String>,
    request_timeout: Option<String>,
    header_read_timeout: Option<String>,
    idle_timeout: Option<String>,
    body_limit: Option<String>,
    max_inflight: Option<String>,
    pid_file: Option<String>,
    init: Option<String>,
    env_file: Option<String>,
    log_file: Option<String>,
    admin_token: Option<String>,
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
        let raw: Raw = envy::prefixed("RODENT_")
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
        Fields::new().build(raw, vars)
    }

    /// Time kept in reserve at the end of the grace period for shutdown hooks, flushing
    /// telemetry and exiting: 10% of the grace, at least 100 ms and at most 5 s.
    pub fn safety_margin(&self) -> Duration {
        safety_margin(self.shutdown_grace)
    }

    /// When remaining connections are aborted, measured from the first shutdown signal.
    pub fn shutdown_deadline(&self) -> Duration {
        self.shutdown_grace.saturating_sub(self.safety_margin())
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

    /// Combines this (running) configuration with a freshly read one: reloadable settings come
    /// from `next`, the others stay as they are and are reported so the operator knows a restart
    /// is needed for them.
    pub fn reload(&self, next: Config) -> Reload {
        let before: BTreeMap<_, _> = self.render().into_iter().collect();
        let after: BTreeMap<_, _> = next.render().into_iter().collect();
        let mut changed = Vec::new();
        let mut needs_restart = Vec::new();
        for variable in VARIABLES {
            if before.get(variable.name) != after.get(variable.name) {
                if variable.reloadable {
                    changed.push(variable.name);
                } else {
                    needs_restart.push(variable.name);
                }
            }
        }
        for &variable in crate::telemetry::settings::VARIABLES {
            if self.vars.get(variable) != next.vars.get(variable) {
                needs_restart.push(variable);
            }
        }
        // The token renders as *** either way; compare the values themselves.
        if self.admin_token != next.admin_token && !changed.contains(&"RODENT_ADMIN_TOKEN") {
            changed.push("RODENT_ADMIN_TOKEN");
        }
        let config = Config {
            log: next.log,
            log_format: next.log_format,
            drain_delay: next.drain_delay,
            shutdown_grace: next.shutdown_grace,
            request_timeout: next.request_timeout,
            body_limit: next.body_limit,
            max_inflight: next.max_inflight,
            admin_token: next.admin_token,
            unknown: next.unknown,
            vars: next.vars,
            ..self.clone()
        };
        Reload {
            config,
            changed,
            needs_restart,
        }
    }
}

/// The outcome of combining a running configuration with a freshly read one.
#[derive(Debug)]
pub struct Reload {
    pub config: Config,
    /// Reloadable variables whose value changed and now applies.
    pub changed: Vec<&'static str>,
    /// Variables that changed but only apply after a restart.
    pub needs_restart: Vec<&'static str>,
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

pub(crate) fn safety_margin(grace: Duration) -> Duration {
    (grace / 10).clamp(Duration::from_millis(100), Duration::from_secs(5))
}

/// Whether a variable's value must be masked wherever it is shown.
pub fn looks_secret(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    [
        "TOKEN",
        "PASSWORD",
        "PASSWD",
        "SECRET",
        "CREDENTIAL",
        "API_KEY",
        "PRIVATE_KEY",
        "HEADERS",
    ]
    .iter()
    .any(|word| upper.contains(word))
}

/// Parses field after field, collecting every error instead of stopping at the first.
struct Fields {
    errors: Vec<ConfigError>,
}

impl Fields {
    fn new() -> Self {
        Self { errors: Vec::new() }
    }

    /// Parses one variable; an empty or missing value means the default. On error the default
    /// is returned so parsing can go on, and the error is recorded.
    fn parse<T>(
        &mut self,
        variable: &str,
        raw: Option<String>,
        default: T,
        parse: impl FnOnce(&str) -> Result<T, parse::Expected>,
    ) -> T {
        let Some(raw) = raw.filter(|v| !v.trim().is_empty()) else {
            return default;
        };
        match parse(&raw) {
            Ok(value) => value,
            Err(expected) => {
                self.invalid(variable, &raw, expected);
                default
            }
        }
    }

    fn invalid(&mut self, variable: &str, raw: &str, expected: String) {
        self.errors
            .push(ConfigError::invalid(variable, raw, expected));
    }

    fn build(mut self, raw: Raw, vars: Vars) -> Result<Config, ConfigErrors> {
        let secs = Duration::from_secs;
        let positive = |raw: &str| match parse::duration(raw)? {
            d if d.is_zero() => Err("a duration greater than zero, such as 500ms or 5s".into()),
            d => Ok(d),
        };
        let path = |raw: Option<String>| raw.filter(|p| !p.trim().is_empty()).map(PathBuf::from);

        let host = self.parse(
            "RODENT_HOST",
            raw.host,
            IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            parse::ip_addr,
        );
        let port = self.parse("RODENT_PORT", raw.port, 8080, parse::port);
        let log = self.parse("RODENT_LOG", raw.log, "info".to_string(), parse::log_filter);
        let log_format = self.parse("RODENT_LOG_FORMAT", raw.log_format, LogFormat::Json, |r| {
            parse::choice(r, &[("json", LogFormat::Json), ("text", LogFormat::Text)])
        });
        let drain_delay = self.parse(
            "RODENT_DRAIN_DELAY",
            raw.drain_delay,
            secs(5),
            parse::duration,
        );
        let shutdown_grace =
            self.parse("RODENT_SHUTDOWN_GRACE", raw.shutdown_grace, secs(30), |r| {
                match parse::duration(r)? {
                    d if d < secs(1) => Err("a duration of at least 1s".into()),
                    d => Ok(d),
                }
            });
        let request_timeout = self.parse(
            "RODENT_REQUEST_TIMEOUT",
            raw.request_timeout,
            secs(20),
            positive,
        );
        let header_read_timeout = self.parse(
            "RODENT_HEADER_READ_TIMEOUT",
            raw.header_read_timeout,
            secs(10),
            positive,
        );
        let idle_timeout = self.parse("RODENT_IDLE_TIMEOUT", raw.idle_timeout, secs(60), positive);
        let body_limit = self.parse("RODENT_BODY_LIMIT", raw.body_limit, 1_048_576, |r| {
            parse::count(r, 0)
        });
        let max_inflight = self.parse("RODENT_MAX_INFLIGHT", raw.max_inflight, 1024, |r| {
            parse::count(r, 1)
        });
        // Empty disables the PID file, so only a missing variable means the default.
        let pid_file = match raw.pid_file {
            None => source::default_pid_file(&vars),
            Some(p) => path(Some(p)),
        };
        let init = self.parse("RODENT_INIT", raw.init, InitMode::Auto, |r| {
            parse::choice(
                r,
                &[
                    ("auto", InitMode::Auto),
                    ("always", InitMode::Always),
                    ("never", InitMode::Never),
                ],
            )
        });
        let admin_token = self
            .parse("RODENT_ADMIN_TOKEN", raw.admin_token, None, |r| {
                parse::token(r).map(Some)
            })
            .map(Secret);

        let config = Config {
            host,
            port,
            log,
            log_format,
            drain_delay,
            shutdown_grace,
            request_timeout,
            header_read_timeout,
            idle_timeout,
            body_limit,
            max_inflight,
            pid_file,
            init,
            env_file: path(raw.env_file),
            log_file: path(raw.log_file),
            admin_token,
            unknown: unknown_variables(&vars),
            vars,
        };
        self.check_consistency(&config);
        self.errors
            .extend(crate::telemetry::settings::check(&config.vars));
        if self.errors.is_empty() {
            Ok(config)
        } else {
            Err(ConfigErrors(self.errors))
        }
    }

    /// Every request admitted during the drain delay must be able to run to its timeout and
    /// still finish before the deadline; otherwise the orchestrator's SIGKILL cuts it.
    fn check_consistency(&mut self, config: &Config) {
        let timing_vars = [
            "RODENT_DRAIN_DELAY",
            "RODENT_SHUTDOWN_GRACE",
            "RODENT_REQUEST_TIMEOUT",
        ];
        if self
            .errors
            .iter()
            .any(|e| e.variable().is_some_and(|v| timing_vars.contains(&v)))
        {
            return; // the sum would be computed from defaults, not from what the user wrote
        }
        let needed = config.drain_delay + config.request_timeout;
        let available = config.shutdown_deadline();
        if needed > available {
            self.errors.push(ConfigError::Inconsistent {
                explanation: format!(
                    "RODENT_DRAIN_DELAY ({}) + RODENT_REQUEST_TIMEOUT ({}) = {} does not fit inside \
                     RODENT_SHUTDOWN_GRACE ({}) minus its safety margin ({}), which leaves {}: a request \
                     admitted at the end of the drain could still be running when the process is \
                     killed; lower the drain delay or the request timeout, or raise the grace \
                     (and terminationGracePeriodSeconds / stop_grace_period with it)",
                    format_duration(config.drain_delay),
                    format_duration(config.request_timeout),
                    format_duration(needed),
                    format_duration(config.shutdown_grace),
                    format_duration(config.safety_margin()),
                    format_duration(available),
                ),
            });
        }
    }
}

fn unknown_variables(vars: &Vars) -> Vec<String> {
    vars.keys()
        .filter(|k| k.starts_with("RODENT_"))
        .filter(|k| !VARIABLES.iter().any(|v| v.name == k.as_str()))
        .filter(|k| !INTERNAL_VARIABLES.contains(&k.as_str()))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests;
