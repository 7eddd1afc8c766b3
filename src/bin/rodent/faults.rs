//! Fault injection, for testing what a platform does with a workload that errs or is slow
//! (retries, outlier detection, circuit breakers, timeouts): a share of application requests
//! answered 500, and a random wait before each. Set by `RODENT_FAULT_ERROR_RATE` and
//! `RODENT_FAULT_DELAY` (reloadable), changed at run time through `PUT /admin/faults`, which a
//! reload resets to the configured values.
//!
//! The faults wrap each reference route inside rodent's handler timeout, so a wait counts
//! against the request's deadline and ends with it (503, as any timeout). The probes,
//! `/metrics` and the admin API are rodent's routes, outside: never touched.
//!
//! With no fault set, a request pays an atomic load: the check is on every request of the
//! reference routes, and `GET /` must not get slower for it (see BENCHMARKS.md).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::handler::Handler;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures_util::future::Either;
use rodent::config::{Current, format_duration};
use rodent::http::{AccessNote, Problem};
use rodent::prometheus_client::metrics::counter::Counter;
use rodent::prometheus_client::metrics::family::Family;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::settings::{DelayRange, FaultSet, Settings, error_rate};

/// `rodent_faults_injected_total{kind}`: `error` or `delay`.
type Injected = Family<[(&'static str, &'static str); 1], Counter>;

/// The faults in effect, shared by the request path and the admin API.
pub(crate) struct Faults {
    settings: Current<Settings>,
    effective: ArcSwap<Effective>,
    /// Whether `effective` injects anything: all a request reads when nothing is set.
    active: AtomicBool,
    /// Serializes the writers of `effective` (the admin API and reloads).
    changing: Mutex<()>,
    injected: Injected,
}

/// The faults in effect, and who set them.
#[derive(Debug, Clone, Copy)]
struct Effective {
    set: FaultSet,
    /// Through `PUT /admin/faults`, rather than the configuration.
    by_admin: bool,
}

impl Faults {
    /// The faults of this process, for as long as it runs: leaked, so that the handlers hold a
    /// plain reference. axum clones a route's handler for every request, and an `Arc` there
    /// would be an atomic increment and decrement on every request (BENCHMARKS.md).
    pub(crate) fn new(settings: Current<Settings>) -> &'static Self {
        let configured = settings.get().faults;
        let injected = Injected::default();
        // Both kinds from the start, so that a rate over them works before the first fault.
        for kind in ["error", "delay"] {
            let _ = injected.get_or_create(&[("kind", kind)]);
        }
        Box::leak(Box::new(Self {
            settings,
            effective: ArcSwap::from_pointee(Effective {
                set: configured,
                by_admin: false,
            }),
            active: AtomicBool::new(configured.any()),
            changing: Mutex::new(()),
            injected,
        }))
    }

    /// The counter family, for `/metrics`.
    pub(crate) fn metric(&self) -> Injected {
        self.injected.clone()
    }

    /// `handler`, with the faults injected into each of its requests.
    pub(crate) fn inject<H>(&'static self, handler: H) -> Faulty<H> {
        Faulty {
            handler,
            faults: self,
        }
    }

    fn store(&self, effective: Effective) {
        let _changing = self
            .changing
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        self.effective.store(Arc::new(effective));
        self.active.store(effective.set.any(), Ordering::Release);
    }

    /// Back to the configured faults, as they are now: after every reload, and on
    /// `DELETE /admin/faults`.
    pub(crate) fn reset(&self) {
        let was = *self.effective.load_full();
        let configured = self.settings.get().faults;
        self.store(Effective {
            set: configured,
            by_admin: false,
        });
        if was.by_admin || was.set != configured {
            tracing::info!(
                error_rate = configured.error_rate,
                delay = configured.delay.map(|d| d.to_string()),
                "faults reset to the configured values"
            );
        }
    }

    fn describe(&self) -> Value {
        let effective = *self.effective.load_full();
        let configured = self.settings.get().faults;
        json!({
            "error_rate": effective.set.error_rate,
            "delay": effective.set.delay.map(|d| d.to_string()),
            "set_by": if effective.by_admin { "admin API" } else { "configuration" },
            "configured": {
                "error_rate": configured.error_rate,
                "delay": configured.delay.map(|d| d.to_string()),
            },
        })
    }

    fn count(&self, kind: &'static str) {
        self.injected.get_or_create(&[("kind", kind)]).inc();
    }
}

/// The routes `PUT`, `GET` and `DELETE /admin/faults`, relative to `/admin`.
pub(crate) fn admin_routes(faults: &'static Faults) -> Router {
    Router::new()
        .route("/faults", get(read).put(replace).delete(reset))
        .with_state(faults)
}

/// `GET /admin/faults`: the faults in effect, and the configured ones.
async fn read(State(faults): State<&'static Faults>) -> Response {
    axum::Json(faults.describe()).into_response()
}

/// What `PUT /admin/faults` takes: a field left out injects nothing of its kind.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Replacement {
    error_rate: Option<Value>,
    delay: Option<String>,
}

/// `PUT /admin/faults` with `{"error_rate": 0.5, "delay": "100ms..300ms"}`: replaces the faults
/// in effect until the next reload, checked as the variables are. A body that is not JSON is a
/// 400; JSON that is not such an object, or holds a value out of its range, a 422 naming the
/// field (axum's `Json` draws the same line). The content type is not required, so that a bare
/// `curl -X PUT -d` works.
async fn replace(State(faults): State<&'static Faults>, body: Bytes) -> Response {
    let refuse = |status, detail: String| Problem::new(status).detail(detail).into_response();
    let unprocessable = |detail| refuse(StatusCode::UNPROCESSABLE_ENTITY, detail);
    let replacement: Replacement = match serde_json::from_slice(&body) {
        Ok(replacement) => replacement,
        Err(e) => {
            let status = if e.is_data() {
                StatusCode::UNPROCESSABLE_ENTITY
            } else {
                StatusCode::BAD_REQUEST
            };
            return refuse(
                status,
                format!("expected {{\"error_rate\": 0.5, \"delay\": \"100ms..300ms\"}}: {e}"),
            );
        }
    };
    let rate = match replacement.error_rate {
        None | Some(Value::Null) => Ok(0.0),
        Some(Value::Number(n)) => error_rate(&n.to_string()),
        Some(Value::String(s)) => error_rate(&s),
        Some(other) => error_rate(&other.to_string()),
    };
    let rate = match rate {
        Ok(rate) => rate,
        Err(expected) => return unprocessable(format!("error_rate: expected {expected}")),
    };
    let delay = match replacement.delay.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(raw) => match DelayRange::parse(raw) {
            Ok(range) => Some(range),
            Err(expected) => return unprocessable(format!("delay: expected {expected}")),
        },
    };
    let set = FaultSet {
        error_rate: rate,
        delay,
    };
    faults.store(Effective {
        set,
        by_admin: true,
    });
    tracing::info!(
        error_rate = set.error_rate,
        delay = set.delay.map(|d| d.to_string()),
        "faults set through the admin API, until the next reload"
    );
    read(State(faults)).await
}

/// `DELETE /admin/faults`: back to the configured faults.
async fn reset(State(faults): State<&'static Faults>) -> Response {
    faults.reset();
    read(State(faults)).await
}

/// A handler with the faults in effect injected into each of its requests
/// ([`Faults::inject`]).
///
/// A handler of its own rather than a `tower::Layer` through `Handler::layer`: axum turns a
/// layered handler into a service, and that service back into a handler's future, on every
/// request; this costs a flag's load and one match when no fault is set (BENCHMARKS.md).
#[derive(Clone)]
pub(crate) struct Faulty<H> {
    handler: H,
    faults: &'static Faults,
}

type Injecting = Pin<Box<dyn Future<Output = Response> + Send>>;

impl<H, T, S> Handler<T, S> for Faulty<H>
where
    H: Handler<T, S>,
    T: 'static,
    S: Send + 'static,
{
    type Future = Either<H::Future, Injecting>;

    fn call(self, req: Request, state: S) -> Self::Future {
        if !self.faults.active.load(Ordering::Acquire) {
            return Either::Left(self.handler.call(req, state));
        }
        Either::Right(Box::pin(inject(self.faults, self.handler, req, state)))
    }
}

async fn inject<H, T, S>(faults: &'static Faults, handler: H, req: Request, state: S) -> Response
where
    H: Handler<T, S>,
{
    let effective = faults.effective.load_full();
    let set = effective.set;
    let mut waited = None;
    if let Some(range) = set.delay {
        let wait = range.sample();
        if !wait.is_zero() {
            faults.count("delay");
            // Inside the handler timeout: a wait past the deadline is cut there, with its 503.
            tokio::time::sleep(wait).await;
            waited = Some(wait);
        }
    }
    let erred = set.error_rate > 0.0 && rand::random_bool(set.error_rate);
    let mut response = if erred {
        faults.count("error");
        let set_by = if effective.by_admin {
            "PUT /admin/faults"
        } else {
            "RODENT_FAULT_ERROR_RATE"
        };
        Problem::new(StatusCode::INTERNAL_SERVER_ERROR)
            .title("Injected fault")
            .detail(format!(
                "this error was injected on purpose ({set_by}: error rate {})",
                set.error_rate
            ))
            .extension(
                "fault",
                json!({ "injected": true, "kind": "error", "error_rate": set.error_rate, "set_by": set_by }),
            )
            .into_response()
    } else {
        handler.call(req, state).await
    };
    if let Some(wait) = waited {
        AccessNote::add(
            &mut response,
            format!("injected delay {}", format_duration(millis(wait))),
        );
    }
    if erred {
        AccessNote::add(&mut response, "injected error");
    }
    response
}

/// A wait rounded to the millisecond, as durations are written.
fn millis(wait: std::time::Duration) -> std::time::Duration {
    std::time::Duration::from_millis(wait.as_millis() as u64)
}
