//! The admin API under `/admin`, behind the bearer token `RODENT_ADMIN_TOKEN`: rodent's
//! `/admin/readiness/{enable,disable}` (take an instance out of rotation and put it back), and
//! the routes the application adds with [`Rodent::admin_routes`](crate::Rodent::admin_routes).
//! Without a token the routes do not exist (404), so an unconfigured instance exposes nothing.

use std::sync::Arc;

use arc_swap::ArcSwap;

use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use subtle::ConstantTimeEq;

use super::instance::Instance;
use super::problem::Problem;
use crate::config::Config;

/// In front of every admin route, and of the application's protected routes: 404 without a
/// configured token, 401 without the right one.
pub(crate) async fn authorize(
    State(config): State<Arc<ArcSwap<Config>>>,
    req: Request,
    next: Next,
) -> Response {
    let authorized = {
        let config = config.load();
        let Some(token) = &config.admin_token else {
            return Problem::new(StatusCode::NOT_FOUND)
                .detail("the admin API is disabled (RODENT_ADMIN_TOKEN is not set)")
                .into_response();
        };
        bearer_matches(req.headers(), token.expose())
    };
    if !authorized {
        let mut response = Problem::new(StatusCode::UNAUTHORIZED)
            .detail("a valid bearer token is required")
            .into_response();
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"rodent-admin\""),
        );
        return response;
    }
    next.run(req).await
}

/// `/admin/readiness/{enable,disable}`. Any method reaches it, so that a wrong one is answered
/// only to a client that holds the token.
pub(super) async fn readiness(
    State(state): State<Arc<Instance>>,
    Path(action): Path<String>,
    method: Method,
) -> Response {
    if method != Method::POST {
        let mut response = Problem::new(StatusCode::METHOD_NOT_ALLOWED).into_response();
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
        return response;
    }
    let lifecycle = &state.lifecycle;
    match action.as_str() {
        "enable" => lifecycle.enable_readiness(),
        "disable" => lifecycle.disable_readiness(),
        other => {
            return Problem::new(StatusCode::NOT_FOUND)
                .detail(format!("unknown action {other:?}: use enable or disable"))
                .into_response();
        }
    }
    tracing::info!(target: "rodent::lifecycle", action, "readiness switched through the admin API");
    axum::Json(json!({
        "readiness": if lifecycle.readiness_enabled() { "enabled" } else { "disabled" },
        "state": lifecycle.state().as_str(),
    }))
    .into_response()
}

/// Compares the bearer token in constant time, so response timing does not reveal how much of
/// a guess was right.
fn bearer_matches(headers: &HeaderMap, token: &str) -> bool {
    let Some(given) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return false;
    };
    given.as_bytes().ct_eq(token.as_bytes()).into()
}
