//! The PID 1 supervisor's log sink: each line written at once without blocking, for a process
//! that must not wait on stdout and has no thread to spare (one synchronous loop). A line that
//! stdout does not take at once is dropped and counted.

use std::io::{self, Write};

use tracing_subscriber::fmt::MakeWriter;

use super::stdout::NonBlockingStdout;
use super::writer::{DroppedLines, last_word};

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
