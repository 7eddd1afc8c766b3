//! Turning the raw strings into a [`Config`], field by field, collecting every problem instead of
//! stopping at the first; then the checks that span several fields.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::error::ConfigError;
use super::parse::{self, format_duration};
use super::settings::{self, Reader};
use super::source::{self, Vars};
use super::variables::unknown_variables;
use super::{Config, ConfigErrors, InitMode, LogFormat, Secret, Spec};

/// The largest `RODENT_BODY_LIMIT`: 1 GiB. A body larger than that is an upload, which belongs
/// on a route without the body limit, streamed rather than buffered.
pub(crate) const MAX_BODY_LIMIT: usize = 1 << 30;
/// The largest `RODENT_MAX_INFLIGHT`: far more requests than one process can run at once.
pub(crate) const MAX_INFLIGHT: usize = 1_000_000;
/// The largest `RODENT_MAX_CONNECTIONS`: far more sockets than one process can hold open.
pub(crate) const MAX_CONNECTIONS: usize = 1_000_000;
/// The default `RODENT_MAX_CONNECTIONS`: as many as `RODENT_MAX_INFLIGHT`'s default, so that
/// HTTP/1 clients, one request per connection, can reach it; and with
/// `server::MAX_HTTP2_STREAMS`, what keeps clients that never read inside the chart's memory
/// limit (see the README's limits).
pub(crate) const DEFAULT_MAX_CONNECTIONS: usize = 1024;

/// The raw strings, mapped by envy from `RODENT_*` names to fields. Every field is optional and a
/// string so that mapping cannot fail: the typed parsing happens field by field afterwards, which
/// is what lets us report every bad variable instead of the first one.
#[derive(Deserialize, Default)]
pub(super) struct Raw {
    host: Option<String>,
    port: Option<String>,
    management_port: Option<String>,
    log: Option<String>,
    log_format: Option<String>,
    drain_delay: Option<String>,
    shutdown_grace: Option<String>,
    request_timeout: Option<String>,
    header_read_timeout: Option<String>,
    idle_timeout: Option<String>,
    body_limit: Option<String>,
    max_inflight: Option<String>,
    max_connections: Option<String>,
    pid_file: Option<String>,
    init: Option<String>,
    env_file: Option<String>,
    log_file: Option<String>,
    tls_cert: Option<String>,
    tls_key: Option<String>,
    admin_token: Option<String>,
}

/// Parses field after field, collecting every error instead of stopping at the first.
pub(super) struct Fields {
    errors: Vec<ConfigError>,
}

impl Fields {
    pub(super) fn new() -> Self {
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

    /// Builds the configuration `spec` describes from `raw` and `vars`. `running`: the
    /// configuration in effect, on a reload.
    pub(super) fn build(
        mut self,
        raw: Raw,
        vars: Vars,
        spec: Spec,
        running: Option<&Config>,
    ) -> Result<Config, ConfigErrors> {
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
        let management_port = self.parse(
            "RODENT_MANAGEMENT_PORT",
            raw.management_port.clone(),
            None,
            |r| parse::port(r).map(Some),
        );
        if let Some(same) = management_port.filter(|p| *p != 0 && *p == port) {
            self.invalid(
                "RODENT_MANAGEMENT_PORT",
                &same.to_string(),
                "a port other than RODENT_PORT's (0 picks a free one)".into(),
            );
        }
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
            parse::count(r, 0, MAX_BODY_LIMIT)
        });
        let max_inflight = self.parse("RODENT_MAX_INFLIGHT", raw.max_inflight, 1024, |r| {
            parse::count(r, 1, MAX_INFLIGHT)
        });
        let max_connections = self.parse(
            "RODENT_MAX_CONNECTIONS",
            raw.max_connections,
            DEFAULT_MAX_CONNECTIONS,
            |r| parse::count(r, 1, MAX_CONNECTIONS),
        );
        // Empty disables the PID file, so only a missing variable means the default.
        let pid_file = match raw.pid_file {
            None => source::default_pid_file(&vars, spec.identity.name),
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

        let tls_cert = path(raw.tls_cert);
        let tls_key = path(raw.tls_key);
        // One without the other: the one given is named, with what it needs.
        for (variable, given, missing, partner) in [
            (
                "RODENT_TLS_CERT",
                &tls_cert,
                &tls_key,
                "RODENT_TLS_KEY, its private key",
            ),
            (
                "RODENT_TLS_KEY",
                &tls_key,
                &tls_cert,
                "RODENT_TLS_CERT, its certificate",
            ),
        ] {
            if let (Some(given), None) = (given, missing) {
                self.invalid(
                    variable,
                    &given.display().to_string(),
                    format!("to be set together with {partner}"),
                );
            }
        }

        let mut reader = Reader::new(&vars, running.map(|c| c.settings.declared.as_slice()));
        let values = (spec.settings)(&mut reader);
        let (declared, prefixes, problems) = reader.finish();
        self.errors.extend(problems);
        let settings = settings::Values {
            values,
            declared,
            prefixes,
        };

        let config = Config {
            host,
            port,
            management_port,
            log,
            log_format,
            drain_delay,
            shutdown_grace,
            request_timeout,
            header_read_timeout,
            idle_timeout,
            body_limit,
            max_inflight,
            max_connections,
            pid_file,
            init,
            env_file: path(raw.env_file),
            log_file: path(raw.log_file),
            tls_cert,
            tls_key,
            admin_token,
            unknown: unknown_variables(&vars, &settings),
            vars,
            settings,
            spec,
        };
        self.check_consistency(&config);
        // Trace export's variables count only where traces are exported; the propagators
        // everywhere, since incoming trace context is read whether or not spans are exported.
        if config.spec.telemetry {
            self.errors.extend(super::otel::check(&config.vars));
        } else {
            self.errors
                .extend(super::otel::check_propagators(&config.vars));
        }
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
