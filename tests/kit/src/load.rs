//! Constant load from keep-alive clients, with every request counted by its outcome.
//!
//! Two kinds of workers share one HTTP/1.1 client (and so its pool of kept-alive connections):
//! fast ones send `GET /` on a fixed beat, slow ones send `GET /delay/{ms}` back to back, so that
//! at every instant some requests are in flight for a few hundred milliseconds, the ones a
//! careless shutdown cuts. A request succeeds when it gets a 2xx and its whole body; anything
//! else (another status, a reset, a timeout) is a failure, recorded with what happened.
//! Every outcome is also counted in the second it completed in, for the figures' timelines, and
//! every request is kept as a [`Sample`] (when it ended, its status, its latency), so that a
//! scenario can tell what latency clients saw while something happened.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::task::JoinSet;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use crate::{PATIENCE, eventually};

/// Workers sending `GET /`, each once per `FAST_EVERY`: 16 × 200/s, about 3,200 requests/s.
const FAST_WORKERS: usize = 16;
const FAST_EVERY: Duration = Duration::from_millis(5);
/// Workers sending `GET /delay/{ms}`, each with its own delay among these.
const SLOW_WORKERS: usize = 16;
const DELAYS_MS: [u64; 3] = [200, 300, 400];

/// What went wrong with one request.
#[derive(Debug, Clone)]
pub struct Failure {
    /// Since the load started.
    pub at: Duration,
    pub path: String,
    pub what: String,
}

#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    failed: AtomicU64,
    failures: Mutex<Vec<Failure>>,
    /// The `pid` of every `GET /` answer: which instances actually served.
    pids: Mutex<BTreeSet<u64>>,
    /// The `instance` (host name) of every `GET /` answer: in Kubernetes every container's
    /// service has the same PID, but each pod has its own name.
    instances: Mutex<BTreeSet<String>>,
    /// Outcomes by the second (since the load started) they completed in.
    seconds: Mutex<Vec<Counts>>,
    samples: Mutex<Vec<Sample>>,
}

/// One request, as the client saw it.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// When it ended, since the load started.
    pub at: Duration,
    pub latency: Duration,
    /// The response's status; `None` when no response came (refused, reset, timed out).
    pub status: Option<u16>,
    /// Whether it was a fast `GET /` (or one of the slow `GET /delay/{ms}`).
    pub fast: bool,
    pub ok: bool,
}

impl Tally {
    fn count(&self, at: Duration, ok: bool) {
        let second = at.as_secs() as usize;
        let mut seconds = self.seconds.lock().unwrap();
        if seconds.len() <= second {
            seconds.resize(second + 1, Counts::default());
        }
        if ok {
            seconds[second].ok += 1;
        } else {
            seconds[second].failed += 1;
        }
    }
}

/// Requests so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub ok: u64,
    pub failed: u64,
}

impl Counts {
    pub fn sent(&self) -> u64 {
        self.ok + self.failed
    }

    pub fn since(&self, earlier: Counts) -> Counts {
        Counts {
            ok: self.ok - earlier.ok,
            failed: self.failed - earlier.failed,
        }
    }
}

/// Held by a scenario that loads the machine and counts what is lost (the rolling restarts, the
/// handovers): they share two cores, so they run one at a time, and none skews another's timing.
pub fn one_at_a_time() -> MutexGuard<'static, ()> {
    static ONE: Mutex<()> = Mutex::new(());
    ONE.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The whole run, once the load has stopped.
pub struct Report {
    pub counts: Counts,
    pub elapsed: Duration,
    pub failures: Vec<Failure>,
    pub pids: BTreeSet<u64>,
    pub instances: BTreeSet<String>,
    /// Requests by the second they completed in, from the start of the load.
    pub timeline: Vec<Counts>,
    /// Every request, in the order they ended.
    pub samples: Vec<Sample>,
}

impl Report {
    /// Failures grouped by path and what happened, most frequent first.
    pub fn failure_kinds(&self) -> Vec<(String, u64)> {
        let mut kinds = BTreeMap::<String, u64>::new();
        for failure in &self.failures {
            *kinds
                .entry(format!("GET {}: {}", failure.path, failure.what))
                .or_default() += 1;
        }
        let mut kinds: Vec<_> = kinds.into_iter().collect();
        kinds.sort_by_key(|kind| std::cmp::Reverse(kind.1));
        kinds
    }

    /// The requests that ended between `from` and `to` (since the load started).
    pub fn between(&self, from: Duration, to: Duration) -> impl Iterator<Item = &Sample> {
        self.samples
            .iter()
            .filter(move |s| s.at >= from && s.at <= to)
    }

    /// The latency quantile `q` (0–1) of the fast `GET /` requests that ended between `from` and
    /// `to`, failed ones included (a request that failed after a wait was slow too); `None` when
    /// there were none.
    pub fn fast_latency(&self, from: Duration, to: Duration, q: f64) -> Option<Duration> {
        let mut latencies: Vec<Duration> = self
            .between(from, to)
            .filter(|s| s.fast)
            .map(|s| s.latency)
            .collect();
        if latencies.is_empty() {
            return None;
        }
        latencies.sort();
        let rank = ((latencies.len() as f64 * q).ceil() as usize).clamp(1, latencies.len());
        Some(latencies[rank - 1])
    }

    /// The first `n` failures, one line each, with when they happened.
    pub fn first_failures(&self, n: usize) -> String {
        self.failures
            .iter()
            .take(n)
            .map(|f| {
                format!(
                    "  {:>7.3} s  GET {}: {}",
                    f.at.as_secs_f64(),
                    f.path,
                    f.what
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

pub struct Load {
    started: Instant,
    tally: Arc<Tally>,
    stop: CancellationToken,
    workers: JoinSet<()>,
}

impl Load {
    /// Starts the workers on `runtime`, against `base` (`http://host:port`).
    pub fn start(runtime: &tokio::runtime::Handle, base: &str) -> Self {
        let _entered = runtime.enter();
        let client = Self::client().build().expect("the client builds");
        Self::start_with(runtime, base, client)
    }

    /// The client [`Load::start`] uses: HTTP/1.1, connections kept alive for as long as the
    /// server keeps them. A test that needs more of it (TLS) builds on it.
    pub fn client() -> reqwest::ClientBuilder {
        crate::client_builder()
            .http1_only()
            .timeout(PATIENCE)
            .pool_idle_timeout(None)
    }

    /// [`Load::start`] with a client of the test's own, such as one that speaks HTTPS.
    pub fn start_with(
        runtime: &tokio::runtime::Handle,
        base: &str,
        client: reqwest::Client,
    ) -> Self {
        let _entered = runtime.enter();
        let started = Instant::now();
        let tally = Arc::new(Tally::default());
        let stop = CancellationToken::new();
        let mut workers = JoinSet::new();
        for _ in 0..FAST_WORKERS {
            let worker = Worker {
                client: client.clone(),
                url: format!("{base}/"),
                path: "/".into(),
                tally: tally.clone(),
                started,
            };
            let stop = stop.clone();
            workers.spawn_on(
                async move {
                    let mut beat = tokio::time::interval(FAST_EVERY);
                    beat.set_missed_tick_behavior(MissedTickBehavior::Delay);
                    loop {
                        tokio::select! {
                            () = stop.cancelled() => break,
                            _ = beat.tick() => {}
                        }
                        worker.request(true).await;
                    }
                },
                runtime,
            );
        }
        for i in 0..SLOW_WORKERS {
            let ms = DELAYS_MS[i % DELAYS_MS.len()];
            let worker = Worker {
                client: client.clone(),
                url: format!("{base}/delay/{ms}"),
                path: format!("/delay/{ms}"),
                tally: tally.clone(),
                started,
            };
            let stop = stop.clone();
            workers.spawn_on(
                async move {
                    while !stop.is_cancelled() {
                        worker.request(false).await;
                    }
                },
                runtime,
            );
        }
        Self {
            started,
            tally,
            stop,
            workers,
        }
    }

    /// Time since the load started: the timeline's clock.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    pub fn counts(&self) -> Counts {
        Counts {
            ok: self.tally.ok.load(Ordering::Relaxed),
            failed: self.tally.failed.load(Ordering::Relaxed),
        }
    }

    /// Blocks until `n` more requests have succeeded than in `from`.
    pub fn wait_for_successes(&self, from: Counts, n: u64) {
        eventually(PATIENCE, || {
            let since = self.counts().since(from);
            match since.ok >= n {
                true => Ok(()),
                false => Err(format!("fewer than {n} requests succeeded: {since:?}")),
            }
        });
    }

    /// Stops sending; every request already sent is finished and counted.
    pub async fn stop(mut self) -> Report {
        self.stop.cancel();
        while let Some(joined) = self.workers.join_next().await {
            joined.expect("a load worker does not panic");
        }
        Report {
            counts: self.counts(),
            elapsed: self.started.elapsed(),
            failures: std::mem::take(&mut *self.tally.failures.lock().unwrap()),
            pids: std::mem::take(&mut *self.tally.pids.lock().unwrap()),
            instances: std::mem::take(&mut *self.tally.instances.lock().unwrap()),
            timeline: std::mem::take(&mut *self.tally.seconds.lock().unwrap()),
            samples: std::mem::take(&mut *self.tally.samples.lock().unwrap()),
        }
    }
}

struct Worker {
    client: reqwest::Client,
    url: String,
    path: String,
    tally: Arc<Tally>,
    started: Instant,
}

impl Worker {
    async fn request(&self, read_pid: bool) {
        let sent = Instant::now();
        let mut status = None;
        let outcome = self.outcome(read_pid, &mut status).await;
        let at = self.started.elapsed();
        self.tally.samples.lock().unwrap().push(Sample {
            at,
            latency: sent.elapsed(),
            status,
            fast: read_pid,
            ok: outcome.is_ok(),
        });
        match outcome {
            Ok(who) => {
                self.tally.ok.fetch_add(1, Ordering::Relaxed);
                self.tally.count(at, true);
                if let Some((pid, instance)) = who {
                    if let Some(pid) = pid {
                        self.tally.pids.lock().unwrap().insert(pid);
                    }
                    if let Some(instance) = instance {
                        self.tally.instances.lock().unwrap().insert(instance);
                    }
                }
            }
            Err(what) => {
                self.tally.failed.fetch_add(1, Ordering::Relaxed);
                self.tally.count(at, false);
                self.tally.failures.lock().unwrap().push(Failure {
                    at,
                    path: self.path.clone(),
                    what,
                });
            }
        }
    }

    /// `Ok` with the answering instance's PID and name (for `GET /`), or what went wrong.
    async fn outcome(
        &self,
        read_pid: bool,
        answered: &mut Option<u16>,
    ) -> Result<Option<Answerer>, String> {
        let response = self
            .client
            .get(&self.url)
            .send()
            .await
            .map_err(|e| format!("request error: {}", error_chain(&e.without_url())))?;
        let status = response.status();
        *answered = Some(status.as_u16());
        let body = response.bytes().await.map_err(|e| {
            format!(
                "body error after {status}: {}",
                error_chain(&e.without_url())
            )
        })?;
        if !status.is_success() {
            return Err(format!("status {status}"));
        }
        if !read_pid {
            return Ok(None);
        }
        let info: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|e| format!("{status} with a body that is not JSON: {e}"))?;
        Ok(Some((
            info["pid"].as_u64(),
            info["instance"].as_str().map(str::to_string),
        )))
    }
}

/// Who answered a `GET /`: the service's PID and its instance (host) name.
type Answerer = (Option<u64>, Option<String>);

/// An error and its causes on one line: reqwest's own message rarely says what the socket did.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
