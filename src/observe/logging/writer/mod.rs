//! Where the service's log lines go: a buffer in memory, written to stdout by a thread of its
//! own, so that a slow, blocked or closed stdout never holds up a request or the exit. (The
//! supervisor, which has no thread to spare, writes its few lines through `direct`.)
//!
//! Writing a line is a copy into the buffer under a short lock: no allocation, no channel, and
//! no wake-up of the flushing thread per line. The thread writes whatever has accumulated, in
//! one `write`, at most [`FLUSH_EVERY`] after it arrived, or as soon as [`FLUSH_AT`] bytes are
//! waiting; when there is nothing to write it sleeps until the next line.
//!
//! Lines are dropped, and counted ([`DroppedLines`], `rodent_log_lines_dropped_total`), rather
//! than waited for: past [`MAX_BUFFERED`] bytes waiting (stdout stuck), when a write fails
//! (stdout closed), and at exit when stdout has not taken the rest within the bound given to
//! [`FlushOnDrop::close_within`]. The thread stays blocked in its `write` then: nothing joins it,
//! and the process exits around it. The count is reported in the log once stdout drains, and
//! once more at exit (see [`last_word`]).
//!
//! Why not `tracing-appender`'s `non_blocking` (0.2.5), which is built for this: its guard's
//! drop waits up to 1.1 s, a bound that is fixed (not the grace's) and, when the channel is full
//! because stdout is stuck, ends in a `println!` to that same stdout, which blocks for ever (or
//! panics on a closed pipe); it counts only lines refused by a full channel, not those its
//! worker failed to write (a closed pipe loses every line uncounted); and it allocates and sends
//! each line on a channel, then writes each with a `write(2)` of its own, where this writer
//! copies into one buffer and writes a batch per system call.

use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicU64, Ordering};
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
/// How long dropping [`FlushOnDrop`] without [`FlushOnDrop::close_within`] waits for stdout.
const CLOSE_WITHIN: Duration = Duration::from_millis(100);

/// The log lines lost in the life of the process: never written, or written to a stdout that
/// failed. Shared with `/metrics`.
#[derive(Clone, Debug, Default)]
pub(crate) struct DroppedLines(Arc<AtomicU64>);

impl DroppedLines {
    pub(crate) fn total(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    pub(crate) fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
}

#[derive(Default)]
struct Backlog {
    lines: Vec<u8>,
    /// How many lines `lines` holds.
    count: u64,
    /// Dropped since the last report in the log.
    unreported: u64,
    /// Lines in the batch the thread is writing, until its write returns.
    writing: u64,
    /// The thread is waiting for a line, not for its next tick: the next line must wake it.
    idle: bool,
    closing: bool,
    /// The thread has written everything and is returning.
    done: bool,
}

struct LineQueue {
    backlog: Mutex<Backlog>,
    wake: Condvar,
    /// Signalled once `done` is set.
    finished: Condvar,
    dropped: DroppedLines,
}

impl LineQueue {
    fn lock(&self) -> MutexGuard<'_, Backlog> {
        // A panic while holding this lock cannot leave `Backlog` inconsistent: keep logging.
        self.backlog
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Hands out writers to the log buffer (a `MakeWriter` for tracing-subscriber).
#[derive(Clone)]
pub(crate) struct LineWriter {
    queue: Arc<LineQueue>,
}

impl LineWriter {
    pub(crate) fn dropped(&self) -> DroppedLines {
        self.queue.dropped.clone()
    }

    /// Asks the flushing thread to write what is left and stop, and waits for it at most
    /// `bound`: for a process about to end without the launcher's own close.
    pub(crate) fn close_within(&self, bound: Duration) {
        let mut backlog = self.queue.lock();
        backlog.closing = true;
        self.queue.wake.notify_one();
        let _ = self
            .queue
            .finished
            .wait_timeout_while(backlog, bound, |p| !p.done)
            .unwrap_or_else(|poisoned| poisoned.into_inner());
    }
}

/// Stops the flushing thread, waiting a bounded time for what is left to be written.
pub(crate) struct FlushOnDrop {
    queue: Arc<LineQueue>,
    thread: Option<JoinHandle<()>>,
    last_resort: Option<LastResort>,
}

/// Writes one line without ever blocking; whether it got through is not reported.
pub(crate) type LastResort = Box<dyn FnOnce(&[u8]) + Send>;

/// Where the lines go. `lines` is written by the flushing thread and may block. `last_resort`
/// takes the last word when the thread is still stuck in a write to `lines` at close.
pub(crate) struct Output {
    pub(crate) lines: Box<dyn Write + Send>,
    pub(crate) last_resort: LastResort,
}

/// Starts the flushing thread for `out`. It inherits the calling thread's signal mask: the
/// supervisor calls this once its signals are blocked, so that a SIGCHLD its loop waits for is
/// never delivered to (and discarded by) this thread.
pub(crate) fn spawn(out: Output) -> io::Result<(LineWriter, FlushOnDrop)> {
    let Output { lines, last_resort } = out;
    let queue = Arc::new(LineQueue {
        backlog: Mutex::new(Backlog {
            lines: Vec::with_capacity(FLUSH_AT),
            ..Backlog::default()
        }),
        wake: Condvar::new(),
        finished: Condvar::new(),
        dropped: DroppedLines::default(),
    });
    let thread = std::thread::Builder::new()
        .name("rodent-log".to_string())
        .spawn({
            let queue = queue.clone();
            move || flush_until_closed(&queue, lines)
        })?;
    Ok((
        LineWriter {
            queue: queue.clone(),
        },
        FlushOnDrop {
            queue,
            thread: Some(thread),
            last_resort: Some(last_resort),
        },
    ))
}

/// stdout as a file of its own (a duplicate of fd 1), so writes are not line-buffered again;
/// the last word through a description of its own that never blocks.
pub(crate) fn stdout() -> Output {
    let lines: Box<dyn Write + Send> = match io::stdout().as_fd().try_clone_to_owned() {
        Ok(fd) => Box::new(File::from(fd)),
        Err(_) => Box::new(io::stdout()),
    };
    Output {
        lines,
        last_resort: Box::new(|line| {
            super::stdout::NonBlockingStdout::open().write_line(line);
        }),
    }
}

fn flush_until_closed(queue: &LineQueue, mut out: Box<dyn Write + Send>) {
    let mut writing = Vec::with_capacity(FLUSH_AT);
    loop {
        let (lines, unreported, closing) = {
            let mut backlog = queue.lock();
            if backlog.lines.is_empty() && !backlog.closing {
                backlog.idle = true;
                backlog = queue
                    .wake
                    .wait_while(backlog, |p| p.lines.is_empty() && !p.closing)
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                backlog.idle = false;
            }
            if !backlog.closing && backlog.lines.len() < FLUSH_AT {
                // Let a few more lines join this write.
                backlog = queue
                    .wake
                    .wait_timeout_while(backlog, FLUSH_EVERY, |p| {
                        p.lines.len() < FLUSH_AT && !p.closing
                    })
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .0;
            }
            std::mem::swap(&mut backlog.lines, &mut writing);
            let lines = std::mem::take(&mut backlog.count);
            backlog.writing = lines;
            (
                lines,
                std::mem::take(&mut backlog.unreported),
                backlog.closing,
            )
        };
        // The report goes first: the lines it counts were dropped before these.
        let mut batch = Vec::new();
        if unreported > 0 {
            batch = report_line("log lines dropped: stdout was not keeping up", unreported);
        }
        let report = batch.len();
        let lost = if report > 0 {
            batch.extend_from_slice(&writing);
            write_batch(&mut *out, &batch)
        } else {
            write_batch(&mut *out, &writing)
        };
        // Lines cut by the failure count as lost; the report, if it was not written, is
        // carried to the next write.
        let (lost, carried) = match lost {
            Ok(()) => (0, 0),
            Err(written) if written < report => (lines, unreported),
            Err(written) => {
                let sent = if report > 0 { &batch } else { &writing };
                (newlines(&sent[written.min(sent.len())..]).min(lines), 0)
            }
        };
        writing.clear();
        let mut backlog = queue.lock();
        backlog.writing = 0;
        if lost + carried > 0 {
            queue.dropped.add(lost);
            backlog.unreported += lost + carried;
        }
        if closing && backlog.lines.is_empty() {
            let total = queue.dropped.total();
            drop(backlog);
            if total > 0 {
                let _ = out.write_all(&last_word(total));
            }
            queue.lock().done = true;
            queue.finished.notify_all();
            return;
        }
    }
}

/// Writes `batch` whole; on failure, returns how many bytes were written.
fn write_batch(out: &mut dyn Write, batch: &[u8]) -> Result<(), usize> {
    let mut written = 0;
    while written < batch.len() {
        match out.write(&batch[written..]) {
            Ok(0) => return Err(written),
            Ok(n) => written += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Err(written),
        }
    }
    // Nobody to tell when stdout is gone: the lines are counted above, then lost either way.
    let _ = out.flush();
    Ok(())
}

/// How many lines end in `bytes`: a line cut by a failed write still has its newline there.
fn newlines(bytes: &[u8]) -> u64 {
    bytes.iter().filter(|&&b| b == b'\n').count() as u64
}

/// A line in the JSON format, written by the sink itself (it is not an event: the subscriber's
/// writer is this sink).
fn report_line(message: &str, dropped: u64) -> Vec<u8> {
    let mut line = String::from("{\"timestamp\":\"");
    let _ = super::json::write_timestamp(&mut line, std::time::SystemTime::now());
    let _ = writeln!(
        line,
        "\",\"level\":\"WARN\",\"message\":\"{message}\",\"dropped\":{dropped},\"target\":\"rodent::logging\"}}"
    );
    line.into_bytes()
}

/// The line written at exit when lines were lost in the life of the process.
pub(crate) fn last_word(total: u64) -> Vec<u8> {
    report_line(
        "log lines dropped in the life of this process (rodent_log_lines_dropped_total)",
        total,
    )
}

impl io::Write for LineWriter {
    fn write(&mut self, line: &[u8]) -> io::Result<usize> {
        let mut backlog = self.queue.lock();
        if backlog.lines.len() + line.len() > MAX_BUFFERED {
            backlog.unreported += 1;
            drop(backlog);
            self.queue.dropped.add(1);
        } else {
            backlog.lines.extend_from_slice(line);
            backlog.count += 1;
            let full = backlog.lines.len() >= FLUSH_AT;
            if backlog.idle || full {
                drop(backlog);
                self.queue.wake.notify_one();
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

impl FlushOnDrop {
    /// Asks the thread to write what is left and waits for it, at most `bound`. If stdout has
    /// not taken it all by then, what is left counts as dropped, the last word is written
    /// without blocking (or not at all), and the thread is left where it is blocked: the
    /// process exits around it.
    pub(crate) fn close_within(mut self, bound: Duration) {
        self.close(bound);
    }

    fn close(&mut self, bound: Duration) {
        let Some(thread) = self.thread.take() else {
            return;
        };
        let mut backlog = self.queue.lock();
        backlog.closing = true;
        self.queue.wake.notify_one();
        backlog = self
            .queue
            .finished
            .wait_timeout_while(backlog, bound, |p| !p.done)
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .0;
        if backlog.done {
            drop(backlog);
            let _ = thread.join();
            return;
        }
        // The batch being written counts whole: how much of it got through is not known.
        let lost = backlog.count + backlog.writing;
        backlog.lines.clear();
        backlog.count = 0;
        backlog.writing = 0;
        drop(backlog);
        self.queue.dropped.add(lost);
        if let Some(last_resort) = self.last_resort.take() {
            last_resort(&last_word(self.queue.dropped.total()));
        }
    }
}

impl Drop for FlushOnDrop {
    fn drop(&mut self) {
        self.close(CLOSE_WITHIN);
    }
}

#[cfg(test)]
mod tests;
