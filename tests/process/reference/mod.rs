//! The reference service's toolbox on the real binary, as platform teams use podinfo's: faults
//! injected into application requests, failing on purpose (never ready, unhealthy, a crash),
//! what the platform did to a request (`/headers`, `/env`), and chains of services
//! (`POST /echo` to `RODENT_BACKENDS`).

mod chain;
mod failing;
mod faults;
mod introspection;

use kit::{PATIENCE, Rodent, client, eventually_async};
use serde_json::Value;

/// The admin token the tests configure.
const TOKEN: &str = "s3cret";

/// `method path` with the admin token; the status and the JSON body (`Null` when not JSON).
async fn admin(
    rodent: &Rodent,
    method: reqwest::Method,
    path: &str,
    body: Option<&str>,
) -> (u16, Value) {
    let mut request = client()
        .request(method, rodent.url(path))
        .bearer_auth(TOKEN);
    if let Some(body) = body {
        request = request
            .header("content-type", "application/json")
            .body(body.to_string());
    }
    let response = request.send().await.expect("the admin API answers");
    let status = response.status().as_u16();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, body)
}

/// The status and JSON body of `GET path`.
async fn get_json(rodent: &Rodent, path: &str) -> (u16, Value) {
    let response = rodent.get(path).await;
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Waits until `/metrics` has `series` at `value`.
async fn wait_metric(rodent: &Rodent, series: &str, value: u64) {
    eventually_async(PATIENCE, async || {
        let metrics = rodent.metrics().await;
        match metrics.value::<u64>(series) {
            Some(v) if v == value => Ok(()),
            other => Err(format!(
                "{series} is {other:?}, not {value}:\n{}",
                metrics.text()
            )),
        }
    })
    .await;
}
