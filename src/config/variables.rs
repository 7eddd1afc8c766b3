//! Every variable rodent reads, with its default and whether a reload applies it.

use super::settings::{Declared, Values};
use super::source::Vars;

/// One documented variable.
#[derive(Debug)]
#[non_exhaustive]
pub struct Variable {
    /// Its name, `RODENT_…`.
    pub name: &'static str,
    /// Its default, as `config` shows it.
    pub default: &'static str,
    /// Applied by a reload (SIGHUP) without a restart.
    pub reloadable: bool,
}

/// Every variable rodent reads, in the order the README documents them.
pub const VARIABLES: &[Variable] = &[
    var("RODENT_HOST", "0.0.0.0", false),
    var("RODENT_PORT", "8080", false),
    var("RODENT_MANAGEMENT_PORT", "", false),
    var("RODENT_LOG", "info", true),
    var("RODENT_LOG_FORMAT", "json", true),
    var("RODENT_DRAIN_DELAY", "5s", true),
    var("RODENT_SHUTDOWN_GRACE", "30s", true),
    var("RODENT_REQUEST_TIMEOUT", "20s", true),
    var("RODENT_HEADER_READ_TIMEOUT", "10s", false),
    var("RODENT_IDLE_TIMEOUT", "60s", false),
    var("RODENT_BODY_LIMIT", "1048576", true),
    var("RODENT_MAX_INFLIGHT", "1024", true),
    var("RODENT_MAX_CONNECTIONS", "1024", true),
    var("RODENT_PID_FILE", "(per platform)", false),
    var("RODENT_INIT", "auto", false),
    var("RODENT_ENV_FILE", "", false),
    var("RODENT_LOG_FILE", "", false),
    // The paths; the files themselves are watched (see `tls`).
    var("RODENT_TLS_CERT", "", false),
    var("RODENT_TLS_KEY", "", false),
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
const INTERNAL_VARIABLES: &[&str] = &[
    "RODENT_SUPERVISED",
    "RODENT_DAEMON_FD",
    "RODENT_LISTENER",
    "RODENT_MANAGEMENT_LISTENER",
    "RODENT_SUCCESSOR",
];

/// Variables that look like ours but are not read: most likely typos. Ours are `RODENT_*` and
/// those with a prefix the application declared (`NOTES_`). Names are matched exactly, as the
/// environment matches them, so `rodent_port` is not `RODENT_PORT`: it is unknown, and said to
/// be (a prefix in another case counts as ours).
pub(super) fn unknown_variables(vars: &Vars, settings: &Values) -> Vec<String> {
    let ours = |name: &str| {
        std::iter::once("RODENT_")
            .chain(settings.prefixes.iter().copied())
            .any(|prefix| {
                name.get(..prefix.len())
                    .is_some_and(|p| p.eq_ignore_ascii_case(prefix))
            })
    };
    vars.keys()
        .filter(|k| ours(k))
        .filter(|k| !VARIABLES.iter().any(|v| v.name == k.as_str()))
        .filter(|k| !settings.declared.iter().any(|d| d.name == k.as_str()))
        .filter(|k| !INTERNAL_VARIABLES.contains(&k.as_str()))
        .cloned()
        .collect()
}

/// The variable, rodent's or the application's, that `name` spells in another case, if any.
pub(super) fn in_another_case(name: &str, declared: &[Declared]) -> Option<&'static str> {
    VARIABLES
        .iter()
        .map(|v| v.name)
        .chain(declared.iter().map(|d| d.name))
        .find(|v| *v != name && v.eq_ignore_ascii_case(name))
}
