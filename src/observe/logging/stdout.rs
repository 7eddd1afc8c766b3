//! stdout, reached so that a write never blocks: the supervisor's sink (`direct`) writes every
//! line this way, and the service's (`writer`) its last word when its thread is stuck in a write.
//!
//! Setting `O_NONBLOCK` on fd 1 would change the open file description the service shares (and
//! every other process with the same stdout), so stdout is reached another way: a socket
//! (journald's stdout) through `send(MSG_DONTWAIT)` on a duplicate; anything else (pipe, FIFO,
//! terminal, file) opened again through `/proc/self/fd/1`, as a description of its own, with
//! `O_NONBLOCK`. A FIFO that nobody holds open for reading refuses that open (ENXIO): nothing
//! would read the lines anyway.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};

/// stdout, reached so that a write never blocks.
#[derive(Debug)]
pub(crate) enum NonBlockingStdout {
    Socket(OwnedFd),
    Own(File),
    /// Nothing could be opened: every line is dropped.
    Unreachable,
}

impl NonBlockingStdout {
    pub(crate) fn open() -> Self {
        let Ok(fd) = io::stdout().as_fd().try_clone_to_owned() else {
            return Self::Unreachable;
        };
        let duplicate = File::from(fd);
        if duplicate
            .metadata()
            .is_ok_and(|m| m.file_type().is_socket())
        {
            return Self::Socket(duplicate.into());
        }
        match OpenOptions::new()
            .append(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(format!(
                "/proc/self/fd/{}",
                io::stdout().as_fd().as_raw_fd()
            )) {
            Ok(own) => Self::Own(own),
            Err(_) => Self::Unreachable,
        }
    }

    /// Writes `line` whole and at once; `false` if stdout did not take all of it. (A line up to
    /// `PIPE_BUF`, 4 KiB, goes into a pipe whole or not at all.)
    pub(crate) fn write_line(&self, line: &[u8]) -> bool {
        match self {
            Self::Socket(fd) => {
                // SAFETY: `line` is valid for `line.len()` bytes, and `fd` is open.
                let sent = unsafe {
                    libc::send(
                        fd.as_raw_fd(),
                        line.as_ptr().cast(),
                        line.len(),
                        libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
                    )
                };
                usize::try_from(sent) == Ok(line.len())
            }
            Self::Own(file) => matches!((&*file).write(line), Ok(n) if n == line.len()),
            Self::Unreachable => false,
        }
    }
}
