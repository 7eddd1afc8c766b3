//! Descriptors a rodent hands to the rodent it starts, each named in an internal variable as
//! `<parent pid>:<descriptor>`: the supervisor's zombie-count pipe and a daemon's report pipe (to
//! the supervised service), the listening socket (to the service, and to a restart's successor),
//! the pipe a successor reports on. The child honours a variable only when the PID in it is its
//! parent's, so a rodent started by the service never takes what was meant for the service; it
//! claims each descriptor once; and the variables are forgotten before it starts any process of
//! its own.

use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::Command;

use nix::unistd::{Pid, getpid, getppid};

use super::threads;
use crate::config::Vars;

/// Hands `fd` down to the process `command` starts: open across its exec, and named in
/// `variable` with this process's PID.
pub(crate) fn hand_down(command: &mut Command, variable: &str, fd: RawFd) {
    command.env(variable, format!("{}:{fd}", getpid()));
    // SAFETY: fcntl is async-signal-safe; `fd` is open in the parent (the caller holds it), so
    // in the child too.
    unsafe {
        command.pre_exec(move || {
            if libc::fcntl(fd, libc::F_SETFD, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// The descriptor the parent of this process named in `variable` (see [`hand_down`]), when it is
/// this process's parent that named it. Not claimed yet: see [`HandedDown::claim`].
pub(crate) fn handed_down(vars: &Vars, variable: &str) -> Option<HandedDown> {
    let (parent, fd) = vars.get(variable)?.split_once(':')?;
    let parent = Pid::from_raw(parent.parse().ok()?);
    let fd = fd.parse().ok()?;
    (parent == getppid()).then_some(HandedDown { parent, fd })
}

/// A descriptor handed down by this process's parent.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HandedDown {
    pub(crate) parent: Pid,
    pub(crate) fd: RawFd,
}

impl HandedDown {
    /// Takes ownership of the descriptor, if it is open, and keeps it from this process's own
    /// children from now on.
    ///
    /// Sound only for descriptors that nothing else in this process refers to: call it once per
    /// descriptor, at startup, before anything could have opened another file under that number.
    pub(crate) fn claim(self) -> Option<OwnedFd> {
        claim_inherited(self.fd)
    }
}

/// Takes ownership of a descriptor a parent process left open for us, if it is open, and keeps
/// it from our own children from now on. Same contract as [`HandedDown::claim`].
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
/// only when this process is known to have a single thread (the start of `launch::serve`);
/// returns whether it was.
pub(crate) fn forget(names: &[&str]) -> bool {
    if !threads::single() {
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
