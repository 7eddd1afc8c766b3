//! The application's own metrics, rendered after rodent's: registered by name (refused, naming
//! it, when invalid, in rodent's namespace or registered twice), or through its registry.

use prometheus_client::registry::{Metric, Registry};

use super::Metrics;

/// The application's registry, and the names registered in it through
/// [`Metrics::register`].
#[derive(Default)]
pub(super) struct Application {
    pub(super) registry: Registry,
    names: Vec<String>,
}

impl Metrics {
    pub(super) fn application(&self) -> std::sync::MutexGuard<'_, Application> {
        self.application
            .lock()
            .expect("the application's registry is never poisoned: nothing panics holding it")
    }

    /// Registers one of the application's metrics. `name` is refused, naming it, when it is
    /// not a valid metric name, when it is in rodent's namespace (`rodent_*`, `process_*`), or
    /// when it was registered already. The reference service, the application named `rodent`,
    /// shares the `rodent_*` namespace, but not the names rodent exports itself.
    pub(crate) fn register(
        &self,
        name: &str,
        help: &str,
        metric: impl Metric,
    ) -> Result<(), String> {
        let valid = name
            .chars()
            .enumerate()
            .all(|(i, c)| c.is_ascii_alphabetic() || c == '_' || (i > 0 && c.is_ascii_digit()));
        if name.is_empty() || !valid {
            return Err(format!(
                "{name:?} is not a metric name (letters, digits and _, not starting with a digit)"
            ));
        }
        let shared = self.reference && name.starts_with("rodent_");
        if !shared && ["rodent_", "process_"].iter().any(|p| name.starts_with(p)) {
            return Err(format!(
                "{name:?} is in rodent's own namespace (rodent_*, process_*): give the \
                 application's metrics a prefix of their own"
            ));
        }
        if shared
            && self
                .own_families()
                .iter()
                .any(|family| family == name || family.strip_suffix("_total") == Some(name))
        {
            return Err(format!("{name:?} is one of rodent's own metrics"));
        }
        let mut application = self.application();
        if application.names.iter().any(|n| n == name) {
            return Err(format!("the metric {name:?} is registered twice"));
        }
        application.names.push(name.to_string());
        application.registry.register(name, help, metric);
        Ok(())
    }

    /// The names of the families rodent renders itself, as `# TYPE` lines give them.
    fn own_families(&self) -> Vec<String> {
        let mut out = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out.lines()
            .filter_map(|line| line.strip_prefix("# TYPE "))
            .filter_map(|rest| rest.split_whitespace().next())
            .map(str::to_string)
            .collect()
    }

    /// Gives the application's registry to `register`, for what [`register`](Self::register)
    /// does not cover: units, sub-registries, collectors.
    pub(crate) fn with_application_registry(&self, register: impl FnOnce(&mut Registry)) {
        register(&mut self.application().registry);
    }
}

#[cfg(test)]
mod tests {
    use prometheus_client::metrics::counter::Counter;

    use super::*;
    use crate::build::BuildInfo;
    use crate::lifecycle::Lifecycle;

    fn notes() -> BuildInfo {
        crate::build::Identity {
            name: "notes",
            ..crate::build::Identity::RODENT
        }
        .build_info()
    }

    #[test]
    fn the_reference_service_shares_the_namespace_but_not_rodents_names() {
        let metrics = Metrics::new(
            Lifecycle::new(),
            crate::build::Identity::RODENT.build_info(),
        );
        let injected = Counter::<u64>::default();
        metrics
            .register("rodent_faults_injected", "Faults", injected)
            .unwrap();
        for refused in [
            "rodent_reloads",
            "rodent_reloads_total",
            "rodent_uptime_seconds",
            "process_threads",
        ] {
            assert!(
                metrics
                    .register(refused, "x", Counter::<u64>::default())
                    .is_err(),
                "{refused:?} must be refused"
            );
        }
    }

    #[test]
    fn the_applications_metrics_follow_rodents() {
        let metrics = Metrics::new(Lifecycle::new(), notes());
        let created = Counter::<u64>::default();
        metrics
            .register("notes_created", "Notes created", created.clone())
            .unwrap();
        created.inc();
        let text = metrics.render(false);
        let rodents = text.find("rodent_reloads_total").unwrap();
        let ours = text.find("notes_created_total 1").unwrap();
        assert!(rodents < ours, "{text}");
        let open = metrics.render(true);
        assert_eq!(open.matches("# EOF").count(), 1, "{open}");
        assert!(open.ends_with("# EOF\n"));

        for refused in [
            "rodent_requests",
            "process_threads",
            "notes_created",
            "9lives",
            "a-b",
            "",
        ] {
            assert!(
                metrics
                    .register(refused, "x", Counter::<u64>::default())
                    .is_err(),
                "{refused:?} must be refused"
            );
        }
    }
}
