//! What the platform did to a request and what the process was given: `GET /headers` and
//! `GET /env`, with credentials masked.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use rodent::config::Current;
use serde_json::{Map, Value};

use crate::settings::Settings;

/// How a masked value is shown: as `rodent config` shows secrets.
const MASKED: &str = "***";

/// `GET /headers`: the request's headers as a JSON object, as they reached the service (after
/// every proxy, mesh sidecar and ingress on the way), names in lower case. A header sent more
/// than once has its values joined with `, `. Credentials are masked: `authorization`,
/// `proxy-authorization` and `cookie`.
pub(crate) async fn headers(headers: HeaderMap) -> Json<Map<String, Value>> {
    let mut shown = Map::new();
    for name in headers.keys() {
        let masked = [
            header::AUTHORIZATION,
            header::PROXY_AUTHORIZATION,
            header::COOKIE,
        ]
        .contains(name);
        let value = if masked {
            MASKED.to_string()
        } else {
            headers
                .get_all(name)
                .iter()
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                .collect::<Vec<_>>()
                .join(", ")
        };
        shown.insert(name.as_str().to_string(), Value::String(value));
    }
    Json(shown)
}

/// `GET /env`, behind the admin token: the environment the configuration was read from (the
/// env file layered over the process environment, as of the last reload), sorted, each
/// secret-looking value masked as `rodent config` masks it.
pub(crate) async fn env(State(settings): State<Current<Settings>>) -> Json<Map<String, Value>> {
    let config = settings.config();
    let shown = config
        .environment()
        .into_iter()
        .map(|(name, value)| (name.to_string(), Value::String(value.to_string())))
        .collect();
    Json(shown)
}
