//! Reloads (SIGHUP): which settings a freshly read configuration may change in a running
//! process, and which wait for a restart.

use std::collections::BTreeMap;

use super::Config;
use super::variables::VARIABLES;

/// The outcome of combining a running configuration with a freshly read one.
#[derive(Debug)]
pub(crate) struct Reload {
    pub(crate) config: Config,
    /// Reloadable variables whose value changed and now applies.
    pub(crate) changed: Vec<&'static str>,
    /// Variables that changed but only apply after a restart.
    pub(crate) needs_restart: Vec<&'static str>,
}

impl Reload {
    /// Combines the running configuration with a freshly read one: reloadable settings come
    /// from `next`, the others stay as they are and are reported so the operator knows a restart
    /// is needed for them. The application's settings were read with the running ones at hand
    /// (see [`Reader`](super::Reader)), so `next` already keeps what they may not change.
    pub(crate) fn of(running: &Config, next: Config) -> Reload {
        let before: BTreeMap<_, _> = running.render().into_iter().collect();
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
        for &variable in super::otel::VARIABLES {
            if running.vars.get(variable) != next.vars.get(variable) {
                needs_restart.push(variable);
            }
        }
        // The token renders as *** either way; compare the values themselves.
        if running.admin_token != next.admin_token && !changed.contains(&"RODENT_ADMIN_TOKEN") {
            changed.push("RODENT_ADMIN_TOKEN");
        }
        for declared in &next.settings.declared {
            let was = running
                .settings
                .declared
                .iter()
                .find(|d| d.name == declared.name);
            if declared.not_applied {
                needs_restart.push(declared.name);
            } else if was.map(|d| &d.raw) != Some(&declared.raw) {
                changed.push(declared.name);
            }
        }
        let config = Config {
            log: next.log,
            log_format: next.log_format,
            drain_delay: next.drain_delay,
            shutdown_grace: next.shutdown_grace,
            request_timeout: next.request_timeout,
            body_limit: next.body_limit,
            max_inflight: next.max_inflight,
            max_connections: next.max_connections,
            admin_token: next.admin_token,
            unknown: next.unknown,
            vars: next.vars,
            settings: next.settings,
            ..running.clone()
        };
        Reload {
            config,
            changed,
            needs_restart,
        }
    }
}
