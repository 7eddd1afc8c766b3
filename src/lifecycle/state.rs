//! The lifecycle state of a service and the readiness switch: small shared types that the
//! orchestrator (in `service`) advances and everything else only reads.
//!
//! Liveness and readiness are separate on purpose: liveness says "restart me if this fails" and
//! never depends on anything outside the process; readiness says "send me traffic" and fails
//! from the first shutdown signal on, or whenever code or an operator switches it off.

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio_util::task::TaskTracker;

/// Where a service is in its life. States only move forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum State {
    /// Configuration read; binding and running startup hooks.
    Starting,
    /// Serving and in rotation.
    Ready,
    /// A shutdown signal arrived: readiness fails, everything else is served normally so load
    /// balancers have time to stop sending traffic here.
    Draining,
    /// The listener is closed: in-flight requests finish, then shutdown hooks run.
    Stopping,
}

impl State {
    /// Every state, in order.
    pub const ALL: [State; 4] = [Self::Starting, Self::Ready, Self::Draining, Self::Stopping];

    /// The state's name, as `/readyz`, the log and `rodent_lifecycle_state` give it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Starting => "starting",
            Self::Ready => "ready",
            Self::Draining => "draining",
            Self::Stopping => "stopping",
        }
    }

    fn from_u8(n: u8) -> Self {
        Self::ALL[usize::from(n).min(Self::ALL.len() - 1)]
    }
}

/// A cheap handle on one service's lifecycle. Handlers can extract it from request extensions
/// (`Extension<Lifecycle>`) to report the state or take the instance out of rotation.
#[derive(Clone)]
pub struct Lifecycle {
    inner: Arc<Inner>,
}

struct Inner {
    /// Mirrors `watch` for the per-request hot path, which only needs the current value.
    state: AtomicU8,
    watch: watch::Sender<State>,
    readiness_enabled: AtomicBool,
    started: Instant,
    /// Milliseconds since `started` at the last tick of the runtime heartbeat.
    heartbeat_ms: AtomicU64,
    /// The drain's holds ([`Drain::hold`](super::Drain::hold)): the shutdown hooks wait until
    /// none is left, or until the deadline.
    holds: TaskTracker,
    /// Why liveness fails whatever the heartbeat says, once code asked for it.
    liveness_failure: OnceLock<Box<str>>,
}

/// How long the runtime may go without running its heartbeat task before liveness fails. Long
/// enough that a loaded machine never trips it; short enough that a wedged runtime is restarted.
pub const HEARTBEAT_STALE_AFTER: Duration = Duration::from_secs(10);
const HEARTBEAT_EVERY: Duration = Duration::from_millis(500);

impl std::fmt::Debug for Lifecycle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lifecycle")
            .field("state", &self.state())
            .field("readiness_enabled", &self.readiness_enabled())
            .finish_non_exhaustive()
    }
}

impl Default for Lifecycle {
    fn default() -> Self {
        Self::new()
    }
}

impl Lifecycle {
    /// A lifecycle in [`State::Starting`], for a service being built.
    pub fn new() -> Self {
        let (watch, _) = watch::channel(State::Starting);
        Self {
            inner: Arc::new(Inner {
                state: AtomicU8::new(State::Starting as u8),
                watch,
                readiness_enabled: AtomicBool::new(true),
                started: Instant::now(),
                heartbeat_ms: AtomicU64::new(0),
                holds: TaskTracker::new(),
                liveness_failure: OnceLock::new(),
            }),
        }
    }

    /// The state now.
    pub fn state(&self) -> State {
        State::from_u8(self.inner.state.load(Ordering::Acquire))
    }

    /// Notified on every state change, and when the readiness switch is flipped (the state
    /// stays the same then).
    pub(crate) fn subscribe(&self) -> watch::Receiver<State> {
        self.inner.watch.subscribe()
    }

    /// Moves to `next` if it is later than the current state; returns whether it moved.
    pub(crate) fn advance(&self, next: State) -> bool {
        let moved = self.inner.state.fetch_max(next as u8, Ordering::AcqRel) < next as u8;
        if moved {
            self.inner.watch.send_replace(next);
        }
        moved
    }

    /// Where the drain's holds are counted.
    pub(crate) fn holds(&self) -> &TaskTracker {
        &self.inner.holds
    }

    /// Takes the instance out of rotation (readiness fails) without stopping it.
    pub fn disable_readiness(&self) {
        self.inner.readiness_enabled.store(false, Ordering::Release);
        self.inner.watch.send_modify(|_| {});
    }

    /// Puts the instance back into rotation, unless it is shutting down.
    pub fn enable_readiness(&self) {
        self.inner.readiness_enabled.store(true, Ordering::Release);
        self.inner.watch.send_modify(|_| {});
    }

    /// Whether readiness is switched on (it may still fail for another reason).
    pub fn readiness_enabled(&self) -> bool {
        self.inner.readiness_enabled.load(Ordering::Acquire)
    }

    /// Time since the lifecycle was made, as `GET /` and `rodent_uptime_seconds` report it.
    pub fn uptime(&self) -> Duration {
        self.inner.started.elapsed()
    }

    /// How long since the runtime last ran the heartbeat task.
    pub fn heartbeat_age(&self) -> Duration {
        let last = Duration::from_millis(self.inner.heartbeat_ms.load(Ordering::Acquire));
        self.uptime().saturating_sub(last)
    }

    /// Whether the process is live: its runtime is responsive, and no code failed its liveness
    /// ([`fail_liveness`](Self::fail_liveness)). What `/healthz` reports.
    pub fn is_live(&self) -> bool {
        self.liveness_failure().is_none() && self.heartbeat_age() < HEARTBEAT_STALE_AFTER
    }

    /// Fails liveness from now on, for `reason`: `/healthz` answers 503 with it, so the
    /// orchestrator restarts the process (which drains as on any SIGTERM). There is no way
    /// back, and the first reason given stays: a process that declared itself broken is
    /// replaced, not repaired. Liveness is not a dependency check: this is for a process that
    /// knows it cannot go on (a corrupted state, a test of what the platform does with an
    /// unhealthy workload), never for a database that is down.
    pub fn fail_liveness(&self, reason: impl Into<String>) {
        let reason = reason.into();
        if self
            .inner
            .liveness_failure
            .set(reason.clone().into_boxed_str())
            .is_ok()
        {
            tracing::warn!(target: "rodent::lifecycle", reason, "liveness failed: /healthz answers 503 from now on");
        }
    }

    /// Why liveness was failed by [`fail_liveness`](Self::fail_liveness), if it was.
    pub fn liveness_failure(&self) -> Option<&str> {
        self.inner.liveness_failure.get().map(|reason| &**reason)
    }

    /// Ticks the heartbeat until the returned task is aborted.
    pub(crate) fn spawn_heartbeat(&self) -> tokio::task::JoinHandle<()> {
        let lifecycle = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(HEARTBEAT_EVERY);
            loop {
                tick.tick().await;
                let now = lifecycle.uptime().as_millis() as u64;
                lifecycle.inner.heartbeat_ms.store(now, Ordering::Release);
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_only_move_forward() {
        let lifecycle = Lifecycle::new();
        let watch = lifecycle.subscribe();
        assert!(lifecycle.advance(State::Ready));
        assert!(lifecycle.advance(State::Draining));
        assert!(!lifecycle.advance(State::Ready));
        assert_eq!(lifecycle.state(), State::Draining);
        assert_eq!(*watch.borrow(), State::Draining);
    }

    #[test]
    fn a_failed_liveness_stays_failed_with_its_first_reason() {
        let lifecycle = Lifecycle::new();
        assert!(lifecycle.is_live());
        lifecycle.fail_liveness("first");
        lifecycle.fail_liveness("second");
        assert!(!lifecycle.is_live());
        assert_eq!(lifecycle.liveness_failure(), Some("first"));
    }

    #[test]
    fn the_readiness_switch_is_separate_from_the_state() {
        let lifecycle = Lifecycle::new();
        lifecycle.advance(State::Ready);
        lifecycle.disable_readiness();
        assert!(!lifecycle.readiness_enabled());
        assert_eq!(lifecycle.state(), State::Ready);
        lifecycle.enable_readiness();
        assert!(lifecycle.readiness_enabled());
    }
}
