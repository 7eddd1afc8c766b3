//! Where log lines go: a buffer in memory, written to stdout by a thread of its own, so that a
//! slow or blocked stdout never holds up a request.
//!
//! Writing a line is a copy into the buffer under a short lock: no allocation, no channel, and
//! no wake-up of the flushing thread per line. The thread writes whatever has accumulated, in
//! one `write`, at most [`FLUSH_EVERY`] after it arrived, or as soon as [`FLUSH_AT`] bytes are
//! waiting; when there is nothing to write it sleeps until the next line. Past [`MAX_BUFFERED`]
//! bytes waiting (stdout stuck), lines are dropped and counted rather than blocking, and the
//! count is reported in the log once stdout drains.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::AsFd;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use tracing_subscriber::fmt::MakeWriter;

/// The longest a line waits in memory before it is written.
pub(crate) const FLUSH_EVERY: Duration = Duration::from_millis(20);
/// Bytes waiting that make the thread write at once.
pub(crate) const FLUSH_AT: usize = 64 * 1024;
/// Bytes waiting beyond which new lines are dropped.
pub(crate) const MAX_BUFFERED: usize = 8 * 1024 * 1024;

#[derive(Default)]
struct Pending {
    lines: Vec<u8>,
    dropped: u64,
    /// The thread is waiting for a line, not for its next tick: the next line must wake it.
    idle: bool,
    closing: bool,
}

struct Shared {
    pending: Mutex<Pending>,
    wake: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        // A panic while holding this lock cannot leave `Pending` inconsistent: keep logging.
        self.pending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Hands out writers to the log buffer (a `MakeWriter` for tracing-subscriber).
#[derive(Clone)]
pub(crate) struct LineWriter {
    shared: Arc<Shared>,
}

/// Stops the flushing thread and writes what is left when dropped.
pub(crate) struct FlushOnDrop {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

/// Starts the flushing thread for `out`.
pub(crate) fn spawn(out: Box<dyn Write + Send>) -> io::Result<(LineWriter, FlushOnDrop)> {
    let shared = Arc::new(Shared {
        pending: Mutex::new(Pending {
            lines: Vec::with_capacity(FLUSH_AT),
            ..Pending::default()
        }),
        wake: Condvar::new(),
    });
    let thread = std::thread::Builder::new()
        .name("rodent-log".to_string())
        .spawn({
            let shared = shared.clone();
            move || flush_until_closed(&shared, out)
        })?;
    Ok((
        LineWriter {
            shared: shared.clone(),
        },
        FlushOnDrop {
            shared,
            thread: Some(thread),
        },
    ))
}

/// stdout as a file of its own (a duplicate of fd 1), so writes are not line-buffered again.
pub(crate) fn stdout() -> Box<dyn Write + Send> {
    match io::stdout().as_fd().try_clone_to_owned() {
        Ok(fd) => Box::new(File::from(fd)),
        Err(_) => Box::new(io::stdout()),
    }
}

fn flush_until_closed(shared: &Shared, mut out: Box<dyn Write + Send>) {
    let mut writing = Vec::with_capacity(FLUSH_AT);
    loop {
        let (dropped, closing) = {
            let mut pending = shared.lock();
            if pending.lines.is_empty() && !pending.closing {
                pending.idle = true;
                pending = shared
                    .wake
                    .wait_while(pending, |p| p.lines.is_empty() && !p.closing)
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                pending.idle = false;
            }
            if !pending.closing && pending.lines.len() < FLUSH_AT {
                // Let a few more lines join this write.
                pending = shared
                    .wake
                    .wait_timeout_while(pending, FLUSH_EVERY, |p| {
                        p.lines.len() < FLUSH_AT && !p.closing
                    })
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .0;
            }
            std::mem::swap(&mut pending.lines, &mut writing);
            (std::mem::take(&mut pending.dropped), pending.closing)
        };
        if dropped > 0 {
            let _ = writeln!(
                writing,
                "{{\"level\":\"WARN\",\"message\":\"log lines dropped: stdout was not keeping up\",\"dropped\":{dropped},\"target\":\"rodent::logging\"}}"
            );
        }
        // Nobody to tell when stdout is gone: the lines are lost either way.
        let _ = out.write_all(&writing).and_then(|()| out.flush());
        writing.clear();
        if closing && shared.lock().lines.is_empty() {
            return;
        }
    }
}

impl io::Write for LineWriter {
    fn write(&mut self, line: &[u8]) -> io::Result<usize> {
        let mut pending = self.shared.lock();
        if pending.lines.len() + line.len() > MAX_BUFFERED {
            pending.dropped += 1;
        } else {
            pending.lines.extend_from_slice(line);
            let full = pending.lines.len() >= FLUSH_AT;
            if pending.idle || full {
                drop(pending);
                self.shared.wake.notify_one();
            }
        }
        Ok(line.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for LineWriter {
    type Writer = LineWriter;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

impl Drop for FlushOnDrop {
    fn drop(&mut self) {
        self.shared.lock().closing = true;
        self.shared.wake.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Collects what the flushing thread writes.
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl Write for Sink {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn every_line_is_written_by_the_time_the_writer_is_dropped() {
        let sink = Sink::default();
        let (writer, flush) = spawn(Box::new(sink.clone())).unwrap();
        for i in 0..10_000 {
            writer
                .make_writer()
                .write_all(format!("line {i}\n").as_bytes())
                .unwrap();
        }
        drop(flush);
        let written = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        assert_eq!(written.lines().count(), 10_000);
        assert_eq!(written.lines().last(), Some("line 9999"));
    }

    #[test]
    fn a_line_reaches_the_output_soon_without_more_lines() {
        let sink = Sink::default();
        let (writer, _flush) = spawn(Box::new(sink.clone())).unwrap();
        writer.make_writer().write_all(b"alone\n").unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while sink.0.lock().unwrap().is_empty() {
            assert!(
                std::time::Instant::now() < deadline,
                "the line was never written"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(&*sink.0.lock().unwrap(), b"alone\n");
    }
}
