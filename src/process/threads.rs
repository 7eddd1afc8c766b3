//! Whether this process is single-threaded: what forking (`serve --detach`) and changing the
//! environment depend on, since only the forking thread survives a fork and the environment is
//! read by every thread without a lock.

/// How many threads this process has; `None` when `/proc` cannot tell.
pub(crate) fn count() -> Option<usize> {
    std::fs::read_dir("/proc/self/task")
        .ok()
        .map(|tasks| tasks.count())
}

/// Whether this process is known to have a single thread. Unknown counts as no: what depends on
/// the answer is unsound with a second thread, and merely refused or skipped without one.
pub(crate) fn single() -> bool {
    count() == Some(1)
}
