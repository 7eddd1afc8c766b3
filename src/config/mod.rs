//! Configuration: environment variables only, plus an optional dotenv file layered over them.
//!
//! Everything is parsed and validated before anything binds or spawns, and every problem is
//! reported at once: a user fixing a manifest should not have to redeploy once per typo. The
//! process environment is read in exactly one place (`source`); tests go through
//! [`Config::from_vars`] with a map.
//!
//! | part | owns |
//! | --- | --- |
//! | this file | [`Config`]: what was read, behind accessors, and how to read it again |
//! | `variables` | rodent's own variables, and which names count as unknown |
//! | `fields` | turning rodent's variables into a [`Config`], every problem collected |
//! | `settings` | the application's own variables: [`Var`], [`Reader`], [`Current`] |
//! | `parse` | parsers for single values, each with its bounds |
//! | `source` | the process environment and `RODENT_ENV_FILE` |
//! | `reload` | what a reload may change |
//! | `otel` | the `OTEL_*` variables |
//! | `error` | [`ConfigError`]: each problem, naming its variable |

mod error;
mod fields;
pub(crate) mod otel;
pub mod parse;
mod reload;
mod settings;
mod source;
mod variables;

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::build::{BuildInfo, Identity};
pub use error::{ConfigError, ConfigErrors, looks_secret};
pub use parse::{duration as parse_duration, format_duration};
pub(crate) use reload::Reload;
pub use settings::{Current, Reader, Var};
pub(crate) use settings::{Declaration, declaration, none as settings_none};
pub use source::Vars;
pub use variables::{VARIABLES, Variable};

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LogFormat {
    /// One JSON object per line: what log collectors expect.
    Json,
    /// Human-readable lines for a terminal.
    Text,
}

/// Whether rodent supervises its service as an init process (see the `supervisor` module).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum InitMode {
    /// Supervise when running as PID 1, as in a container.
    Auto,
    /// Always supervise; outside PID 1 this makes rodent a child subreaper.
    Always,
    /// Never supervise, even as PID 1.
    Never,
}

/// A value that is never printed: `Debug` and the rendered configuration show `***`.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself; only for using it, never for logging.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// The validated configuration of one rodent process: rodent's own settings and the
/// application's. It can only be read, and only whole and validated ([`Config::from_env`],
/// [`Config::from_vars`], or an [`App`](crate::App)'s); a reload reads it again the same way.
#[derive(Clone)]
pub struct Config {
    pub(crate) host: IpAddr,
    pub(crate) port: u16,
    /// Where the probes, `/metrics` and the admin API are served instead of `port`, when set.
    pub(crate) management_port: Option<u16>,
    /// Tracing filter directives, already checked to parse.
    pub(crate) log: String,
    pub(crate) log_format: LogFormat,
    /// How long readiness fails before the listener closes, so load balancers stop routing here
    /// while every request that still arrives is served.
    pub(crate) drain_delay: Duration,
    /// The whole budget from the first shutdown signal to exit.
    pub(crate) shutdown_grace: Duration,
    pub(crate) request_timeout: Duration,
    pub(crate) header_read_timeout: Duration,
    pub(crate) idle_timeout: Duration,
    pub(crate) body_limit: usize,
    pub(crate) max_inflight: usize,
    /// Connections open at once on a listener; one more is closed as it is accepted.
    pub(crate) max_connections: usize,
    pub(crate) pid_file: Option<PathBuf>,
    pub(crate) init: InitMode,
    pub(crate) env_file: Option<PathBuf>,
    pub(crate) log_file: Option<PathBuf>,
    /// The certificate chain and key the main port serves HTTPS with, when set (both or
    /// neither).
    pub(crate) tls_cert: Option<PathBuf>,
    pub(crate) tls_key: Option<PathBuf>,
    pub(crate) admin_token: Option<Secret>,
    /// Variables that look like rodent's or the application's but are not read: most likely
    /// typos, logged as warnings.
    pub(crate) unknown: Vec<String>,
    /// The whole environment the configuration was read from, for the parts of the program that
    /// read their own variables (telemetry reads `OTEL_*`).
    pub(crate) vars: Vars,
    /// The application's own settings.
    pub(crate) settings: settings::Values,
    /// How this configuration was read, to read it again the same way on reload.
    pub(crate) spec: Spec,
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

/// How a configuration is read: whose it is, with which settings of the application, whether
/// the trace export variables count, and from where.
#[derive(Clone)]
pub(crate) struct Spec {
    pub(crate) identity: Identity,
    pub(crate) settings: Declaration,
    /// The `OTEL_*` variables of trace export are validated: this process exports traces (it
    /// was started by an [`App`](crate::App)). A lifecycle run alone exports nothing, and is
    /// not refused for a typo in them.
    pub(crate) telemetry: bool,
    origin: Origin,
}

/// Where the variables come from.
#[derive(Clone)]
enum Origin {
    /// The process environment, read afresh each time.
    Env,
    /// Variables given in code: a reload reads them again (and `RODENT_ENV_FILE` over them),
    /// so what was set in code survives it.
    Vars(Vars),
}

impl Spec {
    /// rodent's own variables only, as a lifecycle run without an application reads them.
    pub(crate) fn rodent() -> Self {
        Self::of(Identity::RODENT, settings::none(), false)
    }

    /// The variables of an application, its own settings and, when it exports traces, the
    /// `OTEL_*` ones, read from the environment.
    pub(crate) fn of(identity: Identity, settings: Declaration, telemetry: bool) -> Self {
        Self {
            identity,
            settings,
            telemetry,
            origin: Origin::Env,
        }
    }

    /// The same, read from `vars` instead of the environment.
    pub(crate) fn reading<I, K, V>(mut self, vars: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        self.origin = Origin::Vars(
            vars.into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        );
        self
    }

    /// Reads and validates everything. `running`: the configuration in effect, on a reload.
    pub(crate) fn read(&self, running: Option<&Config>) -> Result<Config, ConfigErrors> {
        let vars = match &self.origin {
            Origin::Env => source::process_env().map_err(|e| ConfigErrors(vec![e]))?,
            Origin::Vars(vars) => vars.clone(),
        };
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
        fields::Fields::new().build(raw, vars, self.clone(), running)
    }
}

impl Config {
    /// Reads rodent's own variables from the process environment (and `RODENT_ENV_FILE`, when
    /// set). The `OTEL_*` variables of trace export are not read: a service run without an
    /// [`App`](crate::App) exports no traces.
    pub fn from_env() -> Result<Self, ConfigErrors> {
        Spec::rodent().read(None)
    }

    /// Reads rodent's own variables from the given ones, layering `RODENT_ENV_FILE` over them
    /// when it is set among them. A reload reads the same variables again (and the env file),
    /// not the process environment.
    pub fn from_vars<I, K, V>(vars: I) -> Result<Self, ConfigErrors>
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        Spec::rodent().reading(vars).read(None)
    }

    /// Reads this configuration again, the way it was read first, for a reload.
    pub(crate) fn reread(&self) -> Result<Config, ConfigErrors> {
        self.spec.read(Some(self))
    }

    /// The application's name (`rodent` without an [`App`](crate::App)).
    pub fn name(&self) -> &'static str {
        self.spec.identity.name
    }

    /// What is running: the application's name and version, and rodent's build.
    pub fn build_info(&self) -> BuildInfo {
        self.spec.identity.build_info()
    }

    /// The application's settings, when they are of type `S` (read by an
    /// [`App`](crate::App) declared with them); `()` when there are none.
    pub fn settings<S: Send + Sync + 'static>(&self) -> Option<Arc<S>> {
        self.settings.values.clone().downcast::<S>().ok()
    }

    /// The address to bind: `RODENT_HOST` and `RODENT_PORT`.
    pub fn bind_addr(&self) -> SocketAddr {
        SocketAddr::new(self.host, self.port)
    }

    /// `RODENT_LOG`: tracing filter directives, already checked to parse.
    pub fn log(&self) -> &str {
        &self.log
    }

    /// `RODENT_LOG_FORMAT`.
    pub fn log_format(&self) -> LogFormat {
        self.log_format
    }

    /// `RODENT_DRAIN_DELAY`: how long readiness fails before the listener closes.
    pub fn drain_delay(&self) -> Duration {
        self.drain_delay
    }

    /// `RODENT_SHUTDOWN_GRACE`: the whole budget from the first shutdown signal to exit.
    pub fn shutdown_grace(&self) -> Duration {
        self.shutdown_grace
    }

    /// `RODENT_REQUEST_TIMEOUT`: the handler timeout.
    pub fn request_timeout(&self) -> Duration {
        self.request_timeout
    }

    /// `RODENT_HEADER_READ_TIMEOUT`: how long a client may take to send its request head.
    pub fn header_read_timeout(&self) -> Duration {
        self.header_read_timeout
    }

    /// `RODENT_IDLE_TIMEOUT`: how long a keep-alive connection may stay idle.
    pub fn idle_timeout(&self) -> Duration {
        self.idle_timeout
    }

    /// `RODENT_BODY_LIMIT`: request body bytes beyond which the answer is 413.
    pub fn body_limit(&self) -> usize {
        self.body_limit
    }

    /// `RODENT_MAX_INFLIGHT`: application requests in flight beyond which the answer is 503.
    pub fn max_inflight(&self) -> usize {
        self.max_inflight
    }

    /// `RODENT_MAX_CONNECTIONS`: connections open at once on each listener.
    pub fn max_connections(&self) -> usize {
        self.max_connections
    }

    /// `RODENT_PID_FILE`, or the default for this application; `None` when disabled.
    pub fn pid_file(&self) -> Option<&Path> {
        self.pid_file.as_deref()
    }

    /// `RODENT_INIT`.
    pub fn init(&self) -> InitMode {
        self.init
    }

    /// `RODENT_ENV_FILE`.
    pub fn env_file(&self) -> Option<&Path> {
        self.env_file.as_deref()
    }

    /// `RODENT_LOG_FILE`.
    pub fn log_file(&self) -> Option<&Path> {
        self.log_file.as_deref()
    }

    /// `RODENT_TLS_CERT`: the PEM certificate chain the main port serves HTTPS with.
    pub fn tls_cert(&self) -> Option<&Path> {
        self.tls_cert.as_deref()
    }

    /// `RODENT_TLS_KEY`: the PEM private key of [`tls_cert`](Self::tls_cert).
    pub fn tls_key(&self) -> Option<&Path> {
        self.tls_key.as_deref()
    }

    /// `RODENT_ADMIN_TOKEN`.
    pub fn admin_token(&self) -> Option<&Secret> {
        self.admin_token.as_ref()
    }

    /// Variables that look like rodent's or the application's (`RODENT_*`, or a prefix the
    /// application declared) but are not read: most likely typos.
    pub fn unknown(&self) -> &[String] {
        &self.unknown
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

    /// Warns about every variable that looks like one read here but is not.
    pub(crate) fn warn_unknown(&self) {
        for variable in &self.unknown {
            match variables::in_another_case(variable, &self.settings.declared) {
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

    /// `RODENT_MANAGEMENT_PORT`: where the probes, `/metrics` and the admin API listen, when
    /// they have a port of their own.
    pub fn management_addr(&self) -> Option<SocketAddr> {
        self.management_port
            .map(|port| SocketAddr::new(self.host, port))
    }

    /// The effective configuration as `(variable, value)` pairs, secrets masked: rodent's own
    /// settings, then the application's.
    pub fn render(&self) -> Vec<(&'static str, String)> {
        let path = |p: &Option<PathBuf>| {
            p.as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        };
        let mut rendered = vec![
            ("RODENT_HOST", self.host.to_string()),
            ("RODENT_PORT", self.port.to_string()),
            (
                "RODENT_MANAGEMENT_PORT",
                self.management_port
                    .map(|p| p.to_string())
                    .unwrap_or_default(),
            ),
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
            ("RODENT_MAX_CONNECTIONS", self.max_connections.to_string()),
            ("RODENT_PID_FILE", path(&self.pid_file)),
            ("RODENT_INIT", self.init.as_str().to_string()),
            ("RODENT_ENV_FILE", path(&self.env_file)),
            ("RODENT_LOG_FILE", path(&self.log_file)),
            ("RODENT_TLS_CERT", path(&self.tls_cert)),
            ("RODENT_TLS_KEY", path(&self.tls_key)),
            (
                "RODENT_ADMIN_TOKEN",
                if self.admin_token.is_some() {
                    "***"
                } else {
                    ""
                }
                .to_string(),
            ),
        ];
        rendered.extend(
            self.settings
                .declared
                .iter()
                .map(|declared| (declared.name, declared.rendered())),
        );
        rendered
    }
}

impl LogFormat {
    /// The value as `RODENT_LOG_FORMAT` takes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Json => "json",
            Self::Text => "text",
        }
    }
}

impl InitMode {
    /// The value as `RODENT_INIT` takes it.
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
