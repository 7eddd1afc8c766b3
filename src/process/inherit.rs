//! Descriptors a parent process leaves open for us and names in a variable: the supervisor's
//! zombie-count pipe and a daemon's report pipe.

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
