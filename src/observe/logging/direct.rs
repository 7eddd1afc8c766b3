//! Writing to stdout without ever blocking, for a process that must not wait on it and has no
//! thread to spare: the PID 1 supervisor, one synchronous loop. Also the last word of the
//! service's sink when its thread is stuck in a write. A line that stdout does not take at once
//! is dropped and counted.
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

use tracing_subscriber::fmt::MakeWriter;

use super::writer::{DroppedLines, last_word};

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

/// The supervisor's log sink: each line written at once without blocking, or dropped.
#[derive(Clone, Debug)]
pub(crate) struct DirectWriter {
    out: std::sync::Arc<NonBlockingStdout>,
    dropped: DroppedLines,
}

impl DirectWriter {
    pub(crate) fn new() -> Self {
        Self {
            out: std::sync::Arc::new(NonBlockingStdout::open()),
            dropped: DroppedLines::default(),
        }
    }

    /// Writes the count of dropped lines, if any, without blocking: for the very end.
    pub(crate) fn finish(&self) {
        let total = self.dropped.total();
        if total > 0 {
            self.out.write_line(&last_word(total));
        }
    }
}

impl Write for DirectWriter {
    fn write(&mut self, line: &[u8]) -> io::Result<usize> {
        if !self.out.write_line(line) {
            self.dropped.add(1);
        }
        Ok(line.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for DirectWriter {
    type Writer = DirectWriter;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}
