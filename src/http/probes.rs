//! `/healthz` and `/readyz`: liveness and readiness, answered in `application/health+json`.
//! What they mean is [`crate::lifecycle`]'s; this is how they are asked and answered over HTTP.

use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use super::instance::Instance;
use super::problem::Problem;
use crate::lifecycle::readiness::{Outcome, Selection};

const CONTENT_TYPE: &str = "application/health+json";

/// What `/readyz?verbose&exclude=<check>` asks for.
fn selection(raw: Option<&str>) -> Selection {
    let mut selection = Selection::default();
    for (key, value) in form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
        match &*key {
            "verbose" => selection.verbose = !matches!(&*value, "false" | "0"),
            "exclude" => selection.exclude.push(value.into_owned()),
            _ => {}
        }
    }
    selection
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

/// `GET /healthz`: 200 while the runtime is responsive, draining included, unless code failed
/// liveness.
pub(super) async fn healthz(State(state): State<Arc<Instance>>) -> Response {
    let lifecycle = &state.lifecycle;
    let live = lifecycle.is_live();
    let mut body = json!({
        "status": if live { "pass" } else { "fail" },
        "state": lifecycle.state().as_str(),
    });
    if let Some(reason) = lifecycle.liveness_failure() {
        body["output"] = json!(reason);
    } else if !live {
        body["output"] = json!(format!(
            "runtime unresponsive: heartbeat last ran {}ms ago",
            lifecycle.heartbeat_age().as_millis()
        ));
    }
    health_response(live, body)
}

/// `GET /readyz[?verbose][&exclude=<check>]`.
pub(super) async fn readyz(
    State(state): State<Arc<Instance>>,
    RawQuery(raw): RawQuery,
) -> Response {
    let query = selection(raw.as_deref());
    let outcomes = state.readiness.evaluate(&state.lifecycle, &query).await;
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
pub(super) async fn readyz_one(
    State(state): State<Arc<Instance>>,
    Path(name): Path<String>,
) -> Response {
    match state.readiness.evaluate_one(&state.lifecycle, &name).await {
        Some(outcome) => {
            let pass = outcome.passed();
            let body = json!({
                "status": outcome.status,
                "checks": checks_map(std::slice::from_ref(&outcome)),
            });
            health_response(pass, body)
        }
        None => {
            let known: Vec<&str> = state.readiness.names().collect();
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
        let q = selection(Some("verbose&exclude=db&exclude=cache"));
        assert!(q.verbose);
        assert_eq!(q.exclude, ["db", "cache"]);
        assert!(!selection(Some("verbose=false")).verbose);
        assert!(!selection(None).verbose);
    }
}
