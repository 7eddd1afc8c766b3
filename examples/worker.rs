//! An application with background work inside rodent's lifecycle: a worker that takes jobs from
//! a queue and, when the service drains, finishes the job in hand before the shutdown hooks
//! run; and a handler that holds the drain while work it started completes.
//!
//! ```sh
//! cargo run --example worker
//! curl -X POST localhost:8080/jobs/3000    # a job of 3 s for the worker (202)
//! curl -X POST localhost:8080/hold/5000    # hold the drain for 5 s, as an outbox flush would
//! kill -TERM <pid>                         # the job and the hold end before the hooks run
//! curl -X POST localhost:8080/jobs/fail    # the worker fails: the service stops, exit 1
//! curl -X POST localhost:8080/jobs/panic   # the worker panics: the same
//! ```
//!
//! With `WORKER_DETACHED=true` the same worker is started the way it had to be before
//! `Rodent::task`: spawned by the setup, watching the drain on its own. Nothing waits for it
//! then, and the job in hand at a stop is cut when the process exits.

use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::post;
use rodent::launch::Options;
use rodent::{BoxError, Drain};
use tokio::sync::mpsc;

enum Job {
    /// Work for this long.
    Sleep(Duration),
    Fail,
    Panic,
}

/// Takes jobs until the drain is signaled; a job in hand is finished first.
async fn work(mut jobs: mpsc::Receiver<Job>, drain: Drain) -> Result<(), BoxError> {
    loop {
        let job = tokio::select! {
            biased;
            () = drain.signaled() => return Ok(()),
            job = jobs.recv() => match job {
                Some(job) => job,
                None => return Ok(()),
            },
        };
        match job {
            Job::Sleep(length) => {
                let ms = length.as_millis() as u64;
                tracing::info!(ms, "job started");
                tokio::time::sleep(length).await;
                tracing::info!(ms, "job finished");
            }
            Job::Fail => return Err("the job queue answered garbage".into()),
            Job::Panic => panic!("a job the worker cannot handle"),
        }
    }
}

/// `POST /jobs/{ms}`, `/jobs/fail`, `/jobs/panic`: queues a job for the worker.
async fn queue(State(jobs): State<mpsc::Sender<Job>>, Path(job): Path<String>) -> StatusCode {
    let job = match job.as_str() {
        "fail" => Job::Fail,
        "panic" => Job::Panic,
        ms => match ms.parse() {
            Ok(ms) => Job::Sleep(Duration::from_millis(ms)),
            Err(_) => return StatusCode::NOT_FOUND,
        },
    };
    match jobs.try_send(job) {
        Ok(()) => StatusCode::ACCEPTED,
        Err(_) => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// `POST /hold/{ms}`: answers at once, and holds the drain for `ms` milliseconds, as work the
/// request started (an outbox flush, an acknowledgement) would.
async fn hold(Path(ms): Path<u64>, drain: Drain) -> StatusCode {
    let hold = drain.hold();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        tracing::info!(ms, "hold released");
        drop(hold);
    });
    StatusCode::ACCEPTED
}

fn main() -> std::process::ExitCode {
    let detached = std::env::var("WORKER_DETACHED").is_ok_and(|v| v == "true");
    rodent::App::new("worker", env!("CARGO_PKG_VERSION")).serve(
        Options::default(),
        move |service, _settings| async move {
            let (jobs, queued) = mpsc::channel(64);
            let routes = Router::new()
                .route("/jobs/{job}", post(queue))
                .route("/hold/{ms}", post(hold))
                .with_state(jobs);
            let service =
                service
                    .routes(routes)
                    .on_shutdown("report", Duration::from_secs(1), || async {
                        tracing::info!("the worker and the holds are done");
                        Ok(())
                    });
            Ok(if detached {
                tokio::spawn(work(queued, Drain::new(&service.lifecycle())));
                service
            } else {
                service.task("worker", move |drain| work(queued, drain))
            })
        },
    )
}
