//! Rolling restarts behind a real load balancer, under constant load, counting every request.
//!
//! Three instances sit behind HAProxy (active `/readyz` checks, no retries, no redispatch).
//! While keep-alive clients send a few thousand requests a second, each instance in turn gets
//! SIGTERM, exits, and is replaced by a fresh one on the same port, for several full cycles.
//! rodent must lose nothing. The bare axum baseline (`examples/baseline.rs`), which stops
//! accepting the moment it is signalled, goes through the same scenario and must lose requests:
//! that proves the scenario can fail, and shows what the drain is for.
//!
//! Run with `--nocapture` to see the figures.

mod haproxy;

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use haproxy::{HaProxy, TIME_TO_MARK_DOWN};
use kit::load::{Counts, Load, Report};
use kit::{PATIENCE, baseline_binary, rodent};

const INSTANCES: usize = 3;
const CYCLES: usize = 3;

/// rodent's drain delay here, from the check arithmetic. Once SIGTERM arrives, `/readyz` fails
/// within milliseconds; HAProxy's next check starts at most one interval (200 ms) later and fails
/// at the latest at its timeout (300 ms), and with `fall 1` that one failure takes the instance
/// out of rotation: new requests can reach it for up to `TIME_TO_MARK_DOWN` (500 ms). The
/// listener must stay open and serving for all of that window, so the drain delay has to be
/// longer; twice as long absorbs the scheduling delays of a busy two-core CI machine, where the
/// checks, the signal handling and this load all compete for the same cores. (In Kubernetes the
/// same sum is the readiness probe's `periodSeconds × failureThreshold + timeoutSeconds`, plus
/// the time endpoints take to propagate.)
const DRAIN_DELAY: Duration = Duration::from_millis(2 * TIME_TO_MARK_DOWN.as_millis() as u64);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Server {
    Rodent,
    Baseline,
}

impl Server {
    fn start(self, port: u16) -> kit::Rodent {
        let spawn = rodent()
            .env("RODENT_PORT", port.to_string())
            .env(
                "RODENT_DRAIN_DELAY",
                format!("{}ms", DRAIN_DELAY.as_millis()),
            )
            // Lifecycle lines only: an access-log line per request would cost the cores the
            // load needs.
            .env("RODENT_LOG", "info,rodent::access=warn");
        match self {
            Self::Rodent => spawn.spawn(),
            Self::Baseline => spawn.spawn_program(&baseline_binary()),
        }
    }
}

struct Run {
    /// From starting the first instance to the end of the load.
    elapsed: Duration,
    report: Report,
    /// Requests counted during each cycle.
    cycles: Vec<Counts>,
    /// When each cycle started, on the load's clock.
    marks: Vec<(f64, String)>,
    haproxy_log: Vec<String>,
}

impl Run {
    fn summary(&self, server: Server) -> String {
        let mut text = format!(
            "{server:?}: {} requests in {:.1} s ({:.0}/s), {} failed, {} instances served; \
             scenario {:.1} s",
            self.report.counts.sent(),
            self.report.elapsed.as_secs_f64(),
            self.report.counts.sent() as f64 / self.report.elapsed.as_secs_f64(),
            self.report.counts.failed,
            self.report.pids.len(),
            self.elapsed.as_secs_f64(),
        );
        for (i, cycle) in self.cycles.iter().enumerate() {
            text.push_str(&format!(
                "\n  cycle {}: {} requests, {} failed",
                i + 1,
                cycle.sent(),
                cycle.failed
            ));
        }
        for (what, n) in self.report.failure_kinds() {
            text.push_str(&format!("\n  {n} × {what}"));
        }
        text
    }
}

/// The scenario: start the instances and HAProxy, put the load on, restart every instance in
/// turn `CYCLES` times, stop the load.
fn rolling_restarts(server: Server) -> Run {
    let _one_at_a_time = kit::load::one_at_a_time();
    let started = Instant::now();
    let mut instances: Vec<kit::Rodent> = (0..INSTANCES).map(|_| server.start(0)).collect();
    let ports: Vec<u16> = instances.iter().map(|i| i.addr().port()).collect();
    let haproxy = HaProxy::start(&ports);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("the load runtime starts");
    let load = Load::start(runtime.handle(), &haproxy.url(""));
    load.wait_for_successes(Counts::default(), 500);

    let mut cycles = Vec::new();
    let mut marks = Vec::new();
    for cycle in 0..CYCLES {
        marks.push((load.elapsed().as_secs_f64(), format!("cycle {}", cycle + 1)));
        let before = load.counts();
        for (i, port) in ports.iter().enumerate() {
            instances[i].signal(Signal::SIGTERM);
            // The load balancer takes the instance out of rotation (rodent: its readiness fails
            // while it drains; the baseline: its port refuses connections)...
            haproxy.wait_for(i, "DOWN");
            let exit = instances[i].exit_code(DRAIN_DELAY + PATIENCE);
            assert_eq!(exit, 0, "{server:?} instance b{i} exits cleanly");
            // ...and only then does the replacement start, as a new pod would: a replacement
            // quick enough to win the race with the next check would hide the gap instead of
            // closing it.
            instances[i] = server.start(*port);
            haproxy.wait_for(i, "UP");
            // Let the fresh instance take its share before the next one goes.
            load.wait_for_successes(load.counts(), 100);
        }
        cycles.push(load.counts().since(before));
    }
    let report = runtime.block_on(load.stop());
    Run {
        elapsed: started.elapsed(),
        report,
        cycles,
        marks,
        haproxy_log: haproxy.log(),
    }
}

/// Draws the run into `target/…/figures/haproxy-rollouts.svg`, beside the other server's run if it
/// has been saved (BENCHMARKS.md shows the committed copy).
fn plot(server: Server, run: &Run) {
    let (key, title) = match server {
        Server::Rodent => ("rodent", "rodent (drain delay 1 s)"),
        Server::Baseline => ("baseline", "bare axum baseline (no drain delay)"),
    };
    let panel = kit::plot::Panel {
        title: title.to_string(),
        timeline: run.report.timeline.clone(),
        marks: run.marks.clone(),
    };
    let svg = kit::plot::save(
        "haproxy-rollouts",
        "Three rolling restarts behind HAProxy, requests per second",
        key,
        &["rodent", "baseline"],
        &panel,
    );
    eprintln!("figure: {}", svg.display());
}

fn check_the_load_ran(server: Server, run: &Run) {
    for (i, cycle) in run.cycles.iter().enumerate() {
        assert!(
            cycle.sent() >= 500,
            "too little load in cycle {} to prove anything:\n{}",
            i + 1,
            run.summary(server)
        );
    }
    assert_eq!(
        run.report.pids.len(),
        INSTANCES * (CYCLES + 1),
        "every instance, first and replacements, served requests:\n{}",
        run.summary(server)
    );
}

#[test]
fn rodent_loses_no_request_across_rolling_restarts() {
    if !kit::require_tool(
        "haproxy",
        "apt-get install haproxy; see scripts/ci/tools.sh",
    ) {
        return;
    }
    let run = rolling_restarts(Server::Rodent);
    eprintln!("{}", run.summary(Server::Rodent));
    plot(Server::Rodent, &run);
    check_the_load_ran(Server::Rodent, &run);
    assert_eq!(
        run.report.counts.failed,
        0,
        "rodent lost requests:\n{}\nfirst failures:\n{}\nHAProxy's log:\n{}",
        run.summary(Server::Rodent),
        run.report.first_failures(20),
        run.haproxy_log.join("\n")
    );
}

#[test]
fn the_baseline_loses_requests_in_the_same_scenario() {
    if !kit::require_tool(
        "haproxy",
        "apt-get install haproxy; see scripts/ci/tools.sh",
    ) {
        return;
    }
    let run = rolling_restarts(Server::Baseline);
    eprintln!("{}", run.summary(Server::Baseline));
    plot(Server::Baseline, &run);
    check_the_load_ran(Server::Baseline, &run);
    assert!(
        run.report.counts.failed > 0,
        "the baseline lost nothing, so the scenario cannot tell a drain from none:\n{}",
        run.summary(Server::Baseline)
    );
}
