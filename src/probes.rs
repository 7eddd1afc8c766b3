//! `/healthz` and `/readyz`: liveness and readiness, answered in `application/health+json`.
//!
//! Liveness only asks whether this process can still serve (its runtime is responsive); it never
//! looks at dependencies, because failing it gets the process restarted, and restarting every
//! replica because a database is down makes an outage worse. Readiness asks whether this
//! instance should receive traffic: it is in the `ready` state, nobody switched it off, and every
//! registered check passes.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::http::problem::Problem;
use crate::lifecycle::{Lifecycle, State as LifecycleState};
use crate::state::ServiceState;

pub const CONTENT_TYPE: &str = "application/health+json";

/// How long one readiness check may take before it counts as failed. Below the one-second
/// default probe timeout of Kubernetes, so the probe gets an answer that says which check hung.
pub const CHECK_TIMEOUT: Duration = Duration::from_millis(800);

/// The built-in checks: the lifecycle state, and the switch code or operators can flip.
pub const LIFECYCLE_CHECK: &str = "lifecycle";
pub const ENABLED_CHECK: &str = "enabled";

type CheckFuture = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;

/// A named readiness condition, such as "the database answers". The error says why not.
#[derive(Clone)]
pub struct ReadinessCheck {
    name: Arc<str>,
    run: Arc<dyn Fn() -> CheckFuture + Send + Sync>,
}

impl ReadinessCheck {
    pub fn new<F, Fut>(name: impl Into<String>, check: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        Self {
            name: Arc::from(name.into()),
            run: Arc::new(move || Box::pin(check())),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

/// The readiness checks of one service.
pub(crate) struct Probes {
    checks: Vec<ReadinessCheck>,
}

#[derive(Debug, Serialize)]
struct Outcome {
    #[serde(skip)]
    name: Arc<str>,
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    output: Option<String>,
}

impl Outcome {
    fn new(name: impl Into<Arc<str>>, result: Result<(), String>) -> Self {
        let (status, output) = match result {
            Ok(()) => ("pass", None),
            Err(why) => ("fail", Some(why)),
        };
        Self {
            name: name.into(),
            status,
            output,
        }
    }

    fn passed(&self) -> bool {
        self.status == "pass"
    }
}

/// What `/readyz` was asked.
#[derive(Debug, Default)]
struct Query {
    verbose: bool,
    exclude: Vec<String>,
}

impl Query {
    fn parse(raw: Option<&str>) -> Self {
        let mut query = Self::default();
        for (key, value) in form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
            match &*key {
                "verbose" => query.verbose = !matches!(&*value, "false" | "0"),
                "exclude" => query.exclude.push(value.into_owned()),
                _ => {}
            }
        }
        query
    }
}

impl Probes {
    pub(crate) fn new(checks: Vec<ReadinessCheck>) -> Self {
        Self { checks }
    }

    pub(crate) fn names(&self) -> impl Iterator<Item = &str> {
        [LIFECYCLE_CHECK, ENABLED_CHECK]
            .into_iter()
            .chain(self.checks.iter().map(ReadinessCheck::name))
    }

    fn builtin(lifecycle: &Lifecycle) -> [Outcome; 2] {
        let state = lifecycle.state();
        let lifecycle_result = match state {
            LifecycleState::Ready => Ok(()),
            other => Err(other.as_str().to_string()),
        };
        let enabled_result = if lifecycle.readiness_enabled() {
            Ok(())
        } else {
            Err("taken out of rotation (POST /admin/readiness/enable puts it back)".to_string())
        };
        [
            Outcome::new(LIFECYCLE_CHECK, lifecycle_result),
            Outcome::new(ENABLED_CHECK, enabled_result),
        ]
    }

    async fn run(check: &ReadinessCheck) -> Outcome {
        let result = match tokio::time::timeout(CHECK_TIMEOUT, (check.run)()).await {
            Ok(result) => result,
            Err(_) => Err(format!("no answer within {}ms", CHECK_TIMEOUT.as_millis())),
        };
        Outcome::new(check.name.clone(), result)
    }

    /// Evaluates every check not excluded. The lifecycle check cannot be excluded: readiness
    /// must fail while draining whatever the caller asks. Registered checks are skipped when a
    /// built-in one already fails, unless the caller wants the full picture.
    async fn evaluate(&self, lifecycle: &Lifecycle, query: &Query) -> Vec<Outcome> {
        let excluded =
            |name: &str| name != LIFECYCLE_CHECK && query.exclude.iter().any(|e| e == name);
        let mut outcomes: Vec<Outcome> = Self::builtin(lifecycle)
            .into_iter()
            .filter(|o| !excluded(&o.name))
            .collect();
        if query.verbose || outcomes.iter().all(Outcome::passed) {
            let runs = self
                .checks
                .iter()
                .filter(|c| !excluded(c.name()))
                .map(Self::run);
            outcomes.extend(futures_util::future::join_all(runs).await);
        }
        outcomes
    }

    async fn evaluate_one(&self, lifecycle: &Lifecycle, name: &str) -> Option<Outcome> {
        if let Some(builtin) = Self::builtin(lifecycle)
            .into_iter()
            .find(|o| &*o.name == name)
        {
            return Some(builtin);
        }
        let check = self.checks.iter().find(|c| c.name() == name)?;
        Some(Self::run(check).await)
    }
}

fn health_response(pass: bool, body: Value) -> Response {
    let status = if pass {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let mut response = (status, body.to_string()).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn checks_map(outcomes: &[Outcome]) -> Value {
    let mut map = Map::new();
    for outcome in outcomes {
        // application/health+json lists each check's results as an array.
        map.insert(outcome.name.to_string(), json!([outcome]));
    }
    Value::Object(map)
}

/// `GET /healthz`: 200 while the runtime is responsive, draining included.
pub(crate) async fn healthz(State(state): State<Arc<ServiceState>>) -> Response {
    let lifecycle = &state.lifecycle;
    let live = lifecycle.is_live();
    let mut body = json!({
        "status": if live { "pass" } else { "fail" },
        "state": lifecycle.state().as_str(),
    });
    if !live {
        body["output"] = json!(format!(
            "runtime unresponsive: heartbeat last ran {}ms ago",
            lifecycle.heartbeat_age().as_millis()
        ));
    }
    health_response(live, body)
}

/// `GET /readyz[?verbose][&exclude=<check>]`.
pub(crate) async fn readyz(
    State(state): State<Arc<ServiceState>>,
    RawQuery(raw): RawQuery,
) -> Response {
    let query = Query::parse(raw.as_deref());
    let outcomes = state.probes.evaluate(&state.lifecycle, &query).await;
    let pass = outcomes.iter().all(Outcome::passed);
    let mut body = json!({
        "status": if pass { "pass" } else { "fail" },
        "state": state.lifecycle.state().as_str(),
    });
    if query.verbose {
        body["checks"] = checks_map(&outcomes);
    } else if !pass {
        let failing: Vec<&str> = outcomes
            .iter()
            .filter(|o| !o.passed())
            .map(|o| &*o.name)
            .collect();
        body["output"] = json!(format!("failing: {}", failing.join(", ")));
    }
    health_response(pass, body)
}

/// `GET /readyz/{check}`: one check alone.
pub(crate) async fn readyz_one(
    State(state): State<Arc<ServiceState>>,
    Path(name): Path<String>,
) -> Response {
    match state.probes.evaluate_one(&state.lifecycle, &name).await {
        Some(outcome) => {
            let pass = outcome.passed();
            let body = json!({
                "status": outcome.status,
                "checks": checks_map(std::slice::from_ref(&outcome)),
            });
            health_response(pass, body)
        }
        None => {
            let known: Vec<&str> = state.probes.names().collect();
            Problem::new(StatusCode::NOT_FOUND)
                .detail(format!(
                    "no readiness check named {name:?}; known: {}",
                    known.join(", ")
                ))
                .into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_take_verbose_and_repeated_excludes() {
        let q = Query::parse(Some("verbose&exclude=db&exclude=cache"));
        assert!(q.verbose);
        assert_eq!(q.exclude, ["db", "cache"]);
        assert!(!Query::parse(Some("verbose=false")).verbose);
        assert!(!Query::parse(None).verbose);
    }

    #[tokio::test]
    async fn the_lifecycle_check_cannot_be_excluded() {
        let lifecycle = Lifecycle::new();
        let probes = Probes::new(vec![ReadinessCheck::new("db", || async {
            Err("down".to_string())
        })]);
        let query = Query {
            verbose: true,
            exclude: vec![LIFECYCLE_CHECK.into(), "db".into()],
        };
        let outcomes = probes.evaluate(&lifecycle, &query).await;
        let names: Vec<&str> = outcomes.iter().map(|o| &*o.name).collect();
        assert_eq!(names, [LIFECYCLE_CHECK, ENABLED_CHECK]);
        assert!(!outcomes[0].passed(), "starting is not ready");
    }

    #[tokio::test]
    async fn a_hanging_check_fails_within_its_timeout() {
        let lifecycle = Lifecycle::new();
        lifecycle.advance(LifecycleState::Ready);
        let probes = Probes::new(vec![ReadinessCheck::new("hangs", std::future::pending)]);
        let started = std::time::Instant::now();
        let outcomes = probes.evaluate(&lifecycle, &Query::default()).await;
        assert!(started.elapsed() < CHECK_TIMEOUT * 3);
        assert!(!outcomes[2].passed());
    }
}
