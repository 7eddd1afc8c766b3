//! Replacing rodent under constant keep-alive load, with the test in the role systemd plays for a
//! `.socket` unit: it holds the listening socket and starts each instance on it.
//!
//! - **overlap**: the next instance starts on the held socket and turns ready, then the old one
//!   gets SIGTERM. The old one drains (its own connections get `Connection: close`, in-flight
//!   requests finish) and closes its copy of the socket without disturbing it: connections
//!   queued in the backlog are left for the new one. Nothing is lost.
//! - **stop then start on the held socket** (`systemctl restart` of a socket-activated
//!   service): nothing accepts for a moment, but the socket stays open, so connections wait in
//!   its backlog instead of being refused. Measured, and asserted only to refuse nothing: the
//!   stopping process, with nobody else accepting, closes its idle kept-alive connections, and
//!   a request a client writes on one at that instant fails, as HTTP/1.1 allows.
//! - **stop then start, each instance binding the port itself** (the baseline: a restart
//!   without socket activation): while nothing listens, connections are refused. It must lose
//!   requests, which proves the scenario can tell.

use std::net::TcpListener;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal::SIGTERM;

use super::{held_listener, on_socket};
use kit::load::{Counts, Load, Report};
use kit::{self, PATIENCE, free_port, rodent};

const REPLACEMENTS: usize = 5;
/// How long the old instance keeps serving its open connections with `Connection: close`: the
/// load's keep-alive connections each carry a request every few milliseconds, so all of them
/// learn to reconnect well inside it.
const DRAIN_DELAY: &str = "300ms";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Replacement {
    Overlap,
    StopThenStartOnTheSocket,
    StopThenStartBinding,
}

/// Where the instances serve: the socket the test holds, or a port each one binds itself.
enum Target {
    Held(TcpListener),
    Port(u16),
}

impl Target {
    fn for_scenario(how: Replacement) -> Self {
        match how {
            Replacement::StopThenStartBinding => Self::Port(free_port()),
            Replacement::Overlap | Replacement::StopThenStartOnTheSocket => {
                Self::Held(held_listener())
            }
        }
    }

    fn url(&self) -> String {
        match self {
            Self::Held(listener) => format!("http://{}", listener.local_addr().unwrap()),
            Self::Port(port) => format!("http://127.0.0.1:{port}"),
        }
    }

    fn start(&self) -> kit::Rodent {
        let spawn = rodent()
            .env("RODENT_DRAIN_DELAY", DRAIN_DELAY)
            .env("RODENT_LOG", "info,rodent::access=warn");
        match self {
            Self::Held(listener) => {
                let command = on_socket(&spawn, listener);
                spawn.spawn_command(command)
            }
            Self::Port(port) => spawn.env("RODENT_PORT", port.to_string()).spawn(),
        }
    }
}

struct Run {
    report: Report,
    /// Requests counted during each replacement, and how long it took.
    replacements: Vec<(Counts, Duration)>,
}

impl Run {
    fn summary(&self, how: Replacement) -> String {
        let counts = self.report.counts;
        let mut text = format!(
            "{how:?}: {} requests in {:.1} s, {} failed, {} instances served",
            counts.sent(),
            self.report.elapsed.as_secs_f64(),
            counts.failed,
            self.report.pids.len()
        );
        for (i, (counts, took)) in self.replacements.iter().enumerate() {
            text.push_str(&format!(
                "\n  replacement {}: {} requests, {} failed, {} ms",
                i + 1,
                counts.sent(),
                counts.failed,
                took.as_millis()
            ));
        }
        for (what, n) in self.report.failure_kinds() {
            text.push_str(&format!("\n  {n} × {what}"));
        }
        text
    }
}

fn replacements(how: Replacement) -> Run {
    let _one = kit::load::one_at_a_time();
    let target = Target::for_scenario(how);
    let mut current = target.start();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("the load runtime starts");
    let load = Load::start(runtime.handle(), &target.url());
    load.wait_for_successes(Counts::default(), 500);

    let mut done = Vec::new();
    for _ in 0..REPLACEMENTS {
        let before = load.counts();
        let started = Instant::now();
        current = match how {
            Replacement::Overlap => {
                // `start` returns once the new instance is ready.
                let next = target.start();
                current.signal(SIGTERM);
                assert_eq!(current.exit_code(PATIENCE), 0, "the old instance drains");
                next
            }
            Replacement::StopThenStartOnTheSocket | Replacement::StopThenStartBinding => {
                current.signal(SIGTERM);
                assert_eq!(current.exit_code(PATIENCE), 0, "the old instance drains");
                target.start()
            }
        };
        let took = started.elapsed();
        load.wait_for_successes(load.counts(), 100);
        done.push((load.counts().since(before), took));
    }
    let report = runtime.block_on(load.stop());
    current.signal(SIGTERM);
    assert_eq!(current.exit_code(PATIENCE), 0);
    Run {
        report,
        replacements: done,
    }
}

fn check(how: Replacement, run: &Run) {
    for (i, (counts, _)) in run.replacements.iter().enumerate() {
        assert!(
            counts.sent() >= 200,
            "too little load in replacement {} to prove anything:\n{}",
            i + 1,
            run.summary(how)
        );
    }
    assert_eq!(
        run.report.pids.len(),
        REPLACEMENTS + 1,
        "every instance served:\n{}",
        run.summary(how)
    );
}

#[test]
fn five_overlapping_replacements_on_a_held_socket_lose_nothing() {
    let run = replacements(Replacement::Overlap);
    eprintln!("{}", run.summary(Replacement::Overlap));
    check(Replacement::Overlap, &run);
    assert_eq!(
        run.report.counts.failed,
        0,
        "requests were lost:\n{}\n{}",
        run.summary(Replacement::Overlap),
        run.report.first_failures(20)
    );
}

#[test]
fn stop_then_start_on_a_held_socket_refuses_no_connection() {
    let how = Replacement::StopThenStartOnTheSocket;
    let run = replacements(how);
    eprintln!("{}", run.summary(how));
    check(how, &run);
    let refused: Vec<_> = run
        .report
        .failure_kinds()
        .into_iter()
        .filter(|(what, _)| what.contains("refused"))
        .collect();
    assert!(
        refused.is_empty(),
        "connections were refused while the socket was held:\n{}\n{}",
        run.summary(how),
        run.report.first_failures(20)
    );
}

#[test]
fn the_baseline_stop_then_start_without_a_held_socket_loses_requests() {
    let how = Replacement::StopThenStartBinding;
    let run = replacements(how);
    eprintln!("{}", run.summary(how));
    check(how, &run);
    assert!(
        run.report.counts.failed > 0,
        "nothing was lost, so the scenario cannot tell a held socket from none:\n{}",
        run.summary(how)
    );
}
