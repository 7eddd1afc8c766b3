//! One budget for the whole exit, computed when the stop begins from the grace in force then: a
//! grace reloaded from 30 s to 2 s bounds every last step of the exit, with every peer stalled
//! at once (a collector that never answers, a stream that ignores the drain, a stdout nobody
//! reads).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal::{SIGHUP, SIGTERM};

use kit::stalled::Stdout;
use kit::{PATIENCE, Rodent, TempDir, eventually_async, rodent};

/// The grace the reload sets.
const GRACE: Duration = Duration::from_secs(2);
/// The schedule ends the log's last flush an eighth of the margin (25 ms) before the grace; this
/// much more is left for a loaded machine to see the exit. Computed from the 30 s grace the
/// process started with, the last steps took it 2.3 s past SIGTERM.
const OBSERVED_WITHIN: Duration = Duration::from_millis(100);

/// Waits until the counter `series` is above 0.
async fn wait_for(rodent: &Rodent, series: &str, patience: Duration) {
    eventually_async(patience, async || {
        match rodent.metrics().await.expect::<u64>(series) {
            0 => Err(format!("{series} is still 0")),
            _ => Ok(()),
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grace_reloaded_from_30s_to_2s_bounds_the_whole_exit() {
    let dir = TempDir::new("reloaded-grace");
    let env_file = dir.join("rodent.env");
    std::fs::write(&env_file, "RODENT_SHUTDOWN_GRACE=30s\n").unwrap();
    // Accepts connections (the kernel does) and never answers.
    let collector = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let spawn = rodent()
        .env("RODENT_ENV_FILE", env_file.to_str().unwrap())
        .env("RODENT_DRAIN_DELAY", "500ms")
        .env("RODENT_REQUEST_TIMEOUT", "1s")
        .env(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            format!("http://{}", collector.local_addr().unwrap()),
        )
        .env("OTEL_EXPORTER_OTLP_TIMEOUT", "60000")
        .env("OTEL_BSP_SCHEDULE_DELAY", "20");
    let command = spawn.command();
    let (rodent, stdout) = spawn.spawn_with_stdout(command, Stdout::Unread, &dir);

    // A stream that ignores the drain: only the deadline ends it.
    let mut stream = rodent.get("/stream/60000?drain=ignore").await;
    assert_eq!(stream.status(), 200);
    assert!(
        stream.chunk().await.unwrap().is_some(),
        "the stream started"
    );

    std::fs::write(&env_file, "RODENT_SHUTDOWN_GRACE=2s\n").unwrap();
    rodent.signal(SIGHUP);
    wait_for(
        &rodent,
        "rodent_reloads_total{outcome=\"applied\"}",
        PATIENCE,
    )
    .await;

    // Load, each request a span for the stalled collector and a 4 KiB log line for the stalled
    // stdout, until the log drops lines.
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for _ in 0..6 {
        let (url, stop) = (rodent.url("/"), stop.clone());
        clients.push(tokio::spawn(async move {
            let client = kit::client_builder().build().expect("the client builds");
            let request_id = "r".repeat(4096);
            while !stop.load(Ordering::Relaxed) {
                if client
                    .get(&url)
                    .header("x-request-id", &request_id)
                    .send()
                    .await
                    .is_err()
                {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }));
    }
    wait_for(
        &rodent,
        "rodent_log_lines_dropped_total",
        Duration::from_secs(120),
    )
    .await;

    let signalled = Instant::now();
    rodent.signal(SIGTERM);
    let mut rodent = rodent;
    let status = tokio::task::spawn_blocking(move || {
        let status = rodent.try_wait_exit(PATIENCE);
        (status, signalled.elapsed(), rodent)
    });
    let (status, took, rodent) = status.await.unwrap();
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        let _ = client.await;
    }
    drop((stdout, stream, collector));
    let status = status.expect("rodent exits");
    assert!(
        took < GRACE + OBSERVED_WITHIN,
        "exited {took:?} after SIGTERM, past the reloaded {GRACE:?} grace"
    );
    assert_eq!(
        status.code(),
        Some(124),
        "the stream was cut at the deadline; the log so far:\n{}",
        rodent.raw_lines().join("\n")
    );
}
