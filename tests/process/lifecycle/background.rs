//! Background work inside the lifecycle, on `examples/worker.rs` (a worker registered with
//! `Rodent::task`, a handler that holds the drain): the drain waits for both before the shutdown
//! hooks, they give way at the deadline, and a task that fails or panics stops the service.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal::SIGTERM;
use serde_json::Value;

use kit::{PATIENCE, Rodent, Spawn, client, example, rodent};

fn worker() -> PathBuf {
    let binary = example("worker");
    assert!(
        binary.exists(),
        "{} is missing: `cargo test` builds the examples, but a run limited with `--test` does \
         not; build them first with `scripts/test --no-run` (or `cargo build --examples`)",
        binary.display()
    );
    binary
}

fn spawn(spawn: Spawn) -> Rodent {
    spawn.spawn_program(&worker())
}

async fn post(rodent: &Rodent, path: &str) {
    let response = client()
        .post(rodent.url(path))
        .send()
        .await
        .expect("the request is answered");
    assert_eq!(response.status(), 202, "POST {path}");
}

/// Where the first line matching `matches` is in the log.
fn position(lines: &[Value], what: &str, matches: impl Fn(&Value) -> bool) -> usize {
    lines
        .iter()
        .position(matches)
        .unwrap_or_else(|| panic!("no {what} line in the log"))
}

fn message(line: &Value, message: &str) -> bool {
    line["message"] == message
}

fn hook_ran(line: &Value) -> bool {
    line["message"] == "running shutdown hook" && line["hook"] == "report"
}

#[tokio::test]
async fn a_background_task_finishes_its_item_before_the_hooks() {
    let mut rodent = spawn(rodent().env("RODENT_DRAIN_DELAY", "200ms"));
    post(&rodent, "/jobs/1500").await;
    // The gate: SIGTERM arrives once the item is in hand, with most of it still to do.
    rodent.wait_log(|l| message(l, "job started"));
    let signalled = Instant::now();
    rodent.signal(SIGTERM);

    assert_eq!(rodent.exit_code(PATIENCE), 0);
    assert!(
        signalled.elapsed() >= Duration::from_millis(1000),
        "exited before the item could end"
    );
    let lines = rodent.json_lines();
    let closed = position(&lines, "listener closed", |l| message(l, "listener closed"));
    let finished = position(&lines, "job finished", |l| message(l, "job finished"));
    let hook = position(&lines, "shutdown hook", hook_ran);
    assert_eq!(
        lines[closed]["tasks"], 1,
        "the worker is in the drain's count"
    );
    assert!(
        closed < finished && finished < hook,
        "the item ended after the listener closed and before the hooks ran"
    );
    let done = position(&lines, "task end", |l| {
        message(l, "background task finished") && l["task"] == "worker"
    });
    assert!(done < hook);
}

/// The baseline: the same worker spawned by the setup, as before `Rodent::task`. Nothing
/// waits for it, and the item in hand is cut by the exit: the test above can fail.
#[tokio::test]
async fn without_the_task_api_the_item_in_hand_is_lost() {
    let mut rodent = spawn(
        rodent()
            .env("RODENT_DRAIN_DELAY", "200ms")
            .env("WORKER_DETACHED", "true"),
    );
    post(&rodent, "/jobs/1500").await;
    rodent.wait_log(|l| message(l, "job started"));
    rodent.signal(SIGTERM);
    assert_eq!(rodent.exit_code(PATIENCE), 0);
    assert!(
        !rodent
            .json_lines()
            .iter()
            .any(|l| message(l, "job finished")),
        "the baseline was expected to cut the job"
    );
}

#[tokio::test]
async fn a_drain_hold_delays_the_hooks_but_not_the_listener() {
    let mut rodent = spawn(rodent().env("RODENT_DRAIN_DELAY", "200ms"));
    post(&rodent, "/hold/1200").await;
    let signalled = Instant::now();
    rodent.signal(SIGTERM);
    let closed = rodent.wait_log(|l| message(l, "listener closed"));
    let closed_after = signalled.elapsed();
    assert!(
        closed_after < Duration::from_millis(1000),
        "the listener closed {closed_after:?} after SIGTERM: the hold delayed it"
    );
    assert_eq!(closed["holds"], 1, "{closed}");

    assert_eq!(rodent.exit_code(PATIENCE), 0);
    let lines = rodent.json_lines();
    let released = position(&lines, "hold released", |l| message(l, "hold released"));
    let hook = position(&lines, "shutdown hook", hook_ran);
    assert!(released < hook, "the hooks ran while the drain was held");
}

#[tokio::test]
async fn a_drain_hold_gives_way_at_the_deadline() {
    // Grace 2 s: the deadline is 1.8 s after the signal.
    let mut rodent = spawn(
        rodent()
            .env("RODENT_SHUTDOWN_GRACE", "2s")
            .env("RODENT_REQUEST_TIMEOUT", "1s")
            .env("RODENT_DRAIN_DELAY", "200ms"),
    );
    post(&rodent, "/hold/60000").await;
    let signalled = Instant::now();
    rodent.signal(SIGTERM);
    assert_eq!(rodent.exit_code(PATIENCE), 124, "deadline reached");
    let took = signalled.elapsed();
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_secs(2),
        "exited {took:?} after SIGTERM, not at the deadline"
    );
    let lines = rodent.json_lines();
    let deadline = position(&lines, "deadline", |l| {
        l["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("shutdown deadline reached"))
    });
    assert_eq!(lines[deadline]["holds_given_way"], 1, "{}", lines[deadline]);
    let hook = position(&lines, "shutdown hook", hook_ran);
    assert!(deadline < hook, "the hooks ran once the hold gave way");
}

async fn a_failed_task_stops_the_service(job: &str, cause: &str) {
    let mut rodent = spawn(rodent().env("RODENT_DRAIN_DELAY", "200ms"));
    post(&rodent, &format!("/jobs/{job}")).await;
    assert_eq!(rodent.exit_code(PATIENCE), 1);
    let failed = rodent.wait_log(|l| message(l, "background task failed"));
    assert_eq!(failed["task"], "worker", "{failed}");
    assert!(
        failed["error"].as_str().unwrap().contains(cause),
        "the cause is on the same line: {failed}"
    );
    let draining = rodent.wait_log(|l| message(l, "draining"));
    assert_eq!(draining["reason"], "task failed", "{draining}");
    assert_eq!(draining["task"], "worker", "{draining}");
    // The shutdown is a drain like any other: the hooks ran.
    rodent.wait_log(hook_ran);
}

#[tokio::test]
async fn a_task_that_fails_stops_the_service_with_exit_1() {
    a_failed_task_stops_the_service("fail", "the job queue answered garbage").await;
}

#[tokio::test]
async fn a_task_that_panics_stops_the_service_with_exit_1() {
    a_failed_task_stops_the_service("panic", "panicked: a job the worker cannot handle").await;
}
