//! Waiting for a condition: checked again and again until a deadline, then a failure that says
//! what was last seen. The one loop the tests use, instead of a sleep that hopes or a deadline
//! loop written by hand.

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
pub fn eventually<T>(patience: Duration, mut check: impl FnMut() -> Result<T, String>) -> T {
    let deadline = std::time::Instant::now() + patience;
    loop {
        let seen = match check() {
            Ok(value) => return value,
            Err(seen) => seen,
        };
        if std::time::Instant::now() >= deadline {
            panic!("not within {patience:?}: {seen}");
        }
        std::thread::sleep(EVERY);
    }
}

/// [`eventually`] for a check that awaits (an HTTP request, say), on tokio's clock: in a test
/// on paused time, the patience is virtual too.
pub async fn eventually_async<T>(
    patience: Duration,
    mut check: impl AsyncFnMut() -> Result<T, String>,
) -> T {
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        let seen = match check().await {
            Ok(value) => return value,
            Err(seen) => seen,
        };
        if tokio::time::Instant::now() >= deadline {
            panic!("not within {patience:?}: {seen}");
        }
        tokio::time::sleep(EVERY).await;
    }
}
