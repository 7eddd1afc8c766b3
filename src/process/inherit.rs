//! What a parent process hands down and names in a variable: the supervisor's zombie-count pipe,
//! a daemon's report pipe, a listening socket, the pipe a successor reports on. Each descriptor is
//! claimed once, and the variables are forgotten before this process starts any of its own.

use std::os::fd::{FromRawFd, OwnedFd, RawFd};

/// Takes ownership of a descriptor a parent process left open for us and named in a variable,
/// if it is open, and keeps it from our own children from now on.
///
/// Sound only for descriptors that nothing else in this process refers to: call it once per
/// descriptor, at startup, before anything could have opened another file under that number.
pub(crate) fn claim_inherited(fd: RawFd) -> Option<OwnedFd> {
    // SAFETY: F_SETFD on a number that is not open fails with EBADF and changes nothing.
    if fd < 3 || unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) } != 0 {
        return None;
    }
    // SAFETY: open (checked above), and by this function's contract referred to by nothing else.
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Removes `names` from this process's environment, so that no process it starts (a handler's,
/// a hook's, a successor's) takes what they describe for its own: descriptors that are not open
/// there, or a parent that is not its parent.
///
/// Changing the environment is sound only while no other thread can read it, so this is done
/// only when this process has a single thread (the start of `launch::serve`, which forks for the
/// same reason); returns whether it was.
pub(crate) fn forget(names: &[&str]) -> bool {
    let threads = std::fs::read_dir("/proc/self/task").map_or(usize::MAX, |t| t.count());
    if threads != 1 {
        return false;
    }
    for name in names {
        // clippy.toml bans remove_var so that nothing mutates the environment threads share;
        // here no other thread exists (checked above), and none can appear meanwhile, since only
        // this thread could start one.
        #[allow(clippy::disallowed_methods)]
        // SAFETY: as above: no other thread reads or writes the environment meanwhile.
        unsafe {
            std::env::remove_var(name)
        };
    }
    true
}
