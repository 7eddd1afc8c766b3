//! Waiting for a condition: checked again and again until a deadline, then a failure that says
//! what was last seen. The one loop the tests use, instead of a sleep that hopes or a deadline
//! loop written by hand.

use std::fmt::Display;
use std::time::Duration;

/// How long between two checks: short beside what the tests wait for (tens of milliseconds and
/// more), long enough not to load the machine with checks.
const EVERY: Duration = Duration::from_millis(10);

/// Checks `check` until it gives `Ok`, and returns its value; panics with the last `Err` (what
/// was seen instead) once `patience` has passed. The first check is immediate.
///
/// ```ignore
/// let child = eventually(PATIENCE, || match children(pid)[..] {
///     [child] => Ok(child),
///     ref other => Err(format!("{pid} has children {other:?}, not one")),
/// });
/// ```
#[track_caller]
pub fn eventually<T, E: Display>(patience: Duration, check: impl FnMut() -> Result<T, E>) -> T {
    try_eventually(patience, check).unwrap_or_else(|seen| panic!("not within {patience:?}: {seen}"))
}

/// [`eventually`] that gives the last `Err` back at the deadline instead of panicking, for a
/// test that reports everything it measured before it asserts.
pub fn try_eventually<T, E>(
    patience: Duration,
    mut check: impl FnMut() -> Result<T, E>,
) -> Result<T, E> {
    let deadline = std::time::Instant::now() + patience;
    loop {
        let seen = match check() {
            Ok(value) => return Ok(value),
            Err(seen) => seen,
        };
        if std::time::Instant::now() >= deadline {
            return Err(seen);
        }
        std::thread::sleep(EVERY);
    }
}

/// [`eventually`] for a check that awaits (an HTTP request, say), on tokio's clock: in a test
/// on paused time, the patience is virtual too.
pub async fn eventually_async<T, E: Display>(
    patience: Duration,
    check: impl AsyncFnMut() -> Result<T, E>,
) -> T {
    try_eventually_async(patience, check)
        .await
        .unwrap_or_else(|seen| panic!("not within {patience:?}: {seen}"))
}

/// [`try_eventually`] for a check that awaits.
pub async fn try_eventually_async<T, E>(
    patience: Duration,
    mut check: impl AsyncFnMut() -> Result<T, E>,
) -> Result<T, E> {
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        let seen = match check().await {
            Ok(value) => return Ok(value),
            Err(seen) => seen,
        };
        if tokio::time::Instant::now() >= deadline {
            return Err(seen);
        }
        tokio::time::sleep(EVERY).await;
    }
}
