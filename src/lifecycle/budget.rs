//! [`ExitBudget`]: the whole exit's schedule, computed once when the stop begins, from the
//! grace in force then. Every stage of the stop reads its own moment from it and none computes
//! one of its own, so a reload that changes `RODENT_SHUTDOWN_GRACE` cannot leave two stages
//! on different clocks: a changed grace applies from the next stop on, entirely.
//!
//! Measured from the moment the stop began (`began`), with the safety margin `m` (10% of the
//! grace, at least 100 ms and at most 5 s):
//!
//! | moment | at | what happens |
//! | --- | --- | --- |
//! | listener closes | `RODENT_DRAIN_DELAY` (0 if never ready) | the drain delay is over; the drain is signaled |
//! | deadline | grace − m | connections, background tasks and drain holds still open are aborted (exit 124) |
//! | hooks stop | grace − m/2 | a shutdown hook or the telemetry flush still running is cut; the management port, which closes after the hooks, aborts what it still serves |
//! | runtime stopped | grace − m/4 | tasks parked in blocking calls are left behind |
//! | log flushed | grace − m/8 | lines the log could not write by then are dropped |
//!
//! The last m/8 is what the process needs to exit once its log gave up; a PID 1 supervisor
//! follows its service's exit without waiting on stdout at all. So the SIGKILL that follows the
//! grace never finds the process still there.

use std::time::Duration;

use tokio::time::Instant;

/// The fraction of the grace kept in reserve at its end, and its bounds.
const MARGIN_SHARE: u32 = 10;
const MARGIN_MIN: Duration = Duration::from_millis(100);
const MARGIN_MAX: Duration = Duration::from_secs(5);

/// The longest the runtime's shutdown may take, however much of its slot is left: it only
/// waits for tasks parked in blocking calls, which it then leaves behind.
const RUNTIME_SHUTDOWN_MAX: Duration = Duration::from_millis(100);

/// Time kept in reserve at the end of the grace for the hooks, the flushes and the exit: 10% of
/// the grace, at least 100 ms and at most 5 s.
pub(crate) fn safety_margin(grace: Duration) -> Duration {
    (grace / MARGIN_SHARE).clamp(MARGIN_MIN, MARGIN_MAX)
}

/// How long after the first signal whatever is still open is aborted: the grace minus the
/// safety margin. Configuration checks that the drain delay and the request timeout fit inside.
pub(crate) fn deadline_after(grace: Duration) -> Duration {
    grace.saturating_sub(safety_margin(grace))
}

/// The schedule of one stop. Made once, when the stop begins; copied to whoever needs a moment
/// of it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ExitBudget {
    /// When the stop began: the first shutdown signal, a handover, a failed task.
    pub(crate) began: Instant,
    /// The end of the drain delay: the listener closes and the drain is signaled.
    pub(crate) listener_closes: Instant,
    /// Whatever is still open is aborted.
    pub(crate) deadline: Instant,
    /// Shutdown hooks and the telemetry flush are cut.
    pub(crate) hooks_stop: Instant,
    runtime_stopped: Instant,
    log_flushed: Instant,
    margin: Duration,
}

impl ExitBudget {
    /// The schedule of a stop beginning at `began`, with `drain_delay` of it spent serving
    /// before the listener closes (zero for a service that was never in rotation).
    pub(crate) fn new(began: Instant, grace: Duration, drain_delay: Duration) -> Self {
        let margin = safety_margin(grace);
        let end = began + grace;
        let deadline = began + deadline_after(grace);
        Self {
            began,
            listener_closes: (began + drain_delay).min(deadline),
            deadline,
            hooks_stop: end - margin / 2,
            runtime_stopped: end - margin / 4,
            log_flushed: end - margin / 8,
            margin,
        }
    }

    /// The schedule of a stop beginning now, with no drain delay: a start that failed.
    pub(crate) fn starting_now(grace: Duration) -> Self {
        Self::new(Instant::now(), grace, Duration::ZERO)
    }

    /// The drain delay this schedule gives.
    pub(crate) fn drain_delay(&self) -> Duration {
        self.listener_closes - self.began
    }

    /// How long after `began` the deadline falls.
    pub(crate) fn deadline_in(&self) -> Duration {
        self.deadline - self.began
    }

    /// How long aborted connections get to notice, from `now`: a short share of the margin,
    /// and never past the hooks' stop.
    pub(crate) fn abort_settles(&self, now: Instant) -> Instant {
        (now + self.margin / 4).min(self.hooks_stop).max(now)
    }

    /// How long the application's event observers get to hear the last events, from `now`: as
    /// long as aborted connections get to notice.
    pub(crate) fn observers_heard(&self, now: Instant) -> Instant {
        self.abort_settles(now)
    }

    /// How long the runtime's shutdown may take, from `now`.
    pub(crate) fn runtime_shutdown_limit(&self, now: Instant) -> Duration {
        self.runtime_stopped
            .saturating_duration_since(now)
            .min(self.margin / 4)
            .min(RUNTIME_SHUTDOWN_MAX)
    }

    /// How long the log's last flush may take, from `now`.
    pub(crate) fn log_flush_limit(&self, now: Instant) -> Duration {
        self.log_flushed
            .saturating_duration_since(now)
            .min(self.margin / 8)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;
    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn the_margin_is_a_tenth_of_the_grace_within_bounds() {
        assert_eq!(safety_margin(S(30)), S(3));
        assert_eq!(safety_margin(S(300)), S(5));
        assert_eq!(safety_margin(MS(500)), MS(100));
        assert_eq!(deadline_after(S(30)), S(27));
    }

    #[test]
    fn every_moment_falls_inside_the_grace_in_order() {
        for grace in [MS(200), S(2), S(30), S(600)] {
            let began = Instant::now();
            let budget = ExitBudget::new(began, grace, S(5));
            let end = began + grace;
            assert!(budget.listener_closes <= budget.deadline, "{grace:?}");
            assert!(budget.deadline < budget.hooks_stop, "{grace:?}");
            assert!(budget.hooks_stop < budget.runtime_stopped, "{grace:?}");
            assert!(budget.runtime_stopped < budget.log_flushed, "{grace:?}");
            assert!(budget.log_flushed < end, "{grace:?}");
        }
    }

    #[test]
    fn the_tail_never_reaches_past_its_slot() {
        let began = Instant::now();
        let budget = ExitBudget::new(began, S(2), MS(500));
        // The service ended at its hooks' stop: 1.9 s of a 2 s grace.
        let late = budget.hooks_stop;
        let runtime = budget.runtime_shutdown_limit(late);
        let flush = budget.log_flush_limit(late + runtime);
        assert!(late + runtime + flush < began + S(2));
        // Past every slot: nothing is left to wait for.
        let past = began + S(3);
        assert_eq!(budget.runtime_shutdown_limit(past), Duration::ZERO);
        assert_eq!(budget.log_flush_limit(past), Duration::ZERO);
    }

    #[test]
    fn an_early_exit_keeps_the_tail_short() {
        let began = Instant::now();
        let budget = ExitBudget::new(began, S(30), S(5));
        assert_eq!(budget.runtime_shutdown_limit(began), RUNTIME_SHUTDOWN_MAX);
        assert_eq!(budget.log_flush_limit(began), S(3) / 8);
    }
}
