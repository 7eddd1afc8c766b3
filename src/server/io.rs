//! A socket wrapper that records what the connection task needs to enforce its timeouts (when
//! the first byte of a request head arrived, since when a write has been blocked) and to follow
//! the socket past an upgrade: hyper hands an upgraded socket (a WebSocket) to the handler and
//! its connection future ends, but the socket is still this wrapper, which says when it closes
//! and lets the connection task shut it down at the deadline.

use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::time::Instant;

const NEVER: u64 = u64::MAX;

/// What one connection is doing, shared between its socket wrapper, its requests and its task.
/// Times are milliseconds since the connection was accepted.
pub(super) struct Activity {
    accepted: Instant,
    /// Requests whose response has not been fully sent.
    requests: AtomicUsize,
    /// Known to speak HTTP/2, from its first request.
    http2: AtomicBool,
    /// Notified when `http2` is set.
    http2_known: Notify,
    /// Whether a request has started on it: until then, its first request may be on the wire.
    requested: AtomicBool,
    /// When the connection last became idle: accepted, or its last response finished.
    idle_since: AtomicU64,
    /// When the request head being read started, or `NEVER` while no head is being read. The
    /// first head is timed from accept, whatever the protocol, so a connection that never
    /// makes a request is cut like a slow one; later HTTP/1 heads from their first byte. Bytes
    /// that reach an idle HTTP/2 connection start no head: they are frames such as PING or
    /// WINDOW_UPDATE, and the connection is judged by its idleness alone.
    head_started: AtomicU64,
    /// A head started that the connection task has not yet timed: set by the socket as the
    /// first byte arrives, taken by the task on the same poll (see [`Activity::new_head_due`]).
    head_untimed: AtomicBool,
    /// When a write started to block (the client stopped reading), or `NEVER`.
    write_blocked_since: AtomicU64,
    /// The socket's descriptor while the socket is open, `None` once it is closed. The lock
    /// keeps a shutdown from outside (an upgraded connection aborted at the deadline) from
    /// racing the close, which could let it shut down a new socket given the same number.
    socket: Mutex<Option<RawFd>>,
    /// Notified when the socket closes.
    closed: Notify,
}

/// What the connection task should do now.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Nothing is overdue; check again at this time.
    CheckAt(Instant),
    /// Idle for the idle timeout: close gracefully.
    Idle,
    /// A request head took longer than the header-read timeout: drop.
    SlowHead,
    /// The client has not read anything for the idle timeout: drop.
    WriteStalled,
}

impl Activity {
    pub(super) fn new() -> Self {
        Self {
            accepted: Instant::now(),
            requests: AtomicUsize::new(0),
            http2: AtomicBool::new(false),
            http2_known: Notify::new(),
            requested: AtomicBool::new(false),
            idle_since: AtomicU64::new(0),
            head_started: AtomicU64::new(0),
            head_untimed: AtomicBool::new(false),
            write_blocked_since: AtomicU64::new(NEVER),
            socket: Mutex::new(None),
            closed: Notify::new(),
        }
    }

    fn socket(&self) -> MutexGuard<'_, Option<RawFd>> {
        // Only a descriptor is kept under the lock: a panic cannot leave it inconsistent.
        self.socket
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether the socket is still open: after hyper's connection future has ended, it is
    /// open only if hyper handed it to an upgrade.
    pub(super) fn socket_open(&self) -> bool {
        self.socket().is_some()
    }

    /// Resolves once the socket has closed.
    pub(super) async fn socket_closed(&self) {
        let closed = self.closed.notified();
        if self.socket_open() {
            closed.await;
        }
    }

    /// Shuts the socket down in both directions, if it is still open, whoever holds it: the
    /// peer sees the connection end, and a handler reading or writing it gets an end of file or
    /// an error at once.
    pub(super) fn shut_down_socket(&self) {
        let socket = self.socket();
        if let Some(fd) = *socket {
            // SAFETY: `fd` is open while the lock is held: `Tracked` clears it under the same
            // lock before its stream closes it.
            unsafe {
                libc::shutdown(fd, libc::SHUT_RDWR);
            }
        }
    }

    /// `wait` after the connection was accepted.
    pub(super) fn accepted_plus(&self, wait: std::time::Duration) -> Instant {
        self.accepted + wait
    }

    fn now_ms(&self) -> u64 {
        self.accepted.elapsed().as_millis() as u64
    }

    fn at(&self, ms: u64) -> Instant {
        self.accepted + std::time::Duration::from_millis(ms)
    }

    pub(super) fn request_started(&self, http2: bool) {
        if http2 && !self.http2.swap(true, Ordering::Relaxed) {
            // A permit is kept if nobody waits yet (see `speaks_http2`).
            self.http2_known.notify_one();
        }
        self.requests.fetch_add(1, Ordering::AcqRel);
        self.requested.store(true, Ordering::Relaxed);
        self.head_started.store(NEVER, Ordering::Relaxed);
    }

    /// `wait` after the connection was accepted, while it has made no request yet; `None` once
    /// it has.
    pub(super) fn first_request_due(&self, wait: std::time::Duration) -> Option<Instant> {
        (!self.requested.load(Ordering::Relaxed)).then(|| self.accepted + wait)
    }

    pub(super) fn request_finished(&self) {
        if self.requests.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.idle_since.store(self.now_ms(), Ordering::Relaxed);
        }
    }

    pub(super) fn is_http2(&self) -> bool {
        self.http2.load(Ordering::Relaxed)
    }

    /// Resolves once the connection is known to speak HTTP/2 (its first request has started).
    pub(super) async fn speaks_http2(&self) {
        if !self.is_http2() {
            self.http2_known.notified().await;
        }
    }

    fn bytes_read(&self) {
        if self.requests.load(Ordering::Acquire) == 0
            && self.head_started.load(Ordering::Relaxed) == NEVER
            && !self.is_http2()
        {
            self.head_started.store(self.now_ms(), Ordering::Relaxed);
            self.head_untimed.store(true, Ordering::Relaxed);
        }
    }

    /// When the head that started since the last call is due, if one did. The socket reads
    /// inside the connection task's poll of hyper, so the task asks right after that poll and
    /// re-arms its timer without being woken for it.
    pub(super) fn new_head_due(&self, header_read_ms: u64) -> Option<Instant> {
        if !self.head_untimed.load(Ordering::Relaxed) {
            return None;
        }
        self.head_untimed.store(false, Ordering::Relaxed);
        let started = self.head_started.load(Ordering::Relaxed);
        (started != NEVER).then(|| self.at(started.saturating_add(header_read_ms)))
    }

    fn write_blocked(&self, blocked: bool) {
        let since = self.write_blocked_since.load(Ordering::Relaxed);
        if blocked && since == NEVER {
            self.write_blocked_since
                .store(self.now_ms(), Ordering::Relaxed);
        } else if !blocked && since != NEVER {
            self.write_blocked_since.store(NEVER, Ordering::Relaxed);
        }
    }

    /// Judges the connection against its timeouts, in milliseconds.
    pub(super) fn verdict(&self, header_read_ms: u64, idle_ms: u64) -> Verdict {
        let now = self.now_ms();
        // A client that stopped reading its response is judged first: hyper takes the last body
        // frame (and the request counts as finished) before it has written it, so a connection
        // stuck on a write can look idle.
        let blocked = self.write_blocked_since.load(Ordering::Relaxed);
        if blocked != NEVER {
            let due = blocked.saturating_add(idle_ms);
            return if now >= due {
                Verdict::WriteStalled
            } else {
                Verdict::CheckAt(self.at(due))
            };
        }
        if self.requests.load(Ordering::Acquire) > 0 {
            // Busy: handlers are bounded by the request timeout and bodies by the stall timeout;
            // an HTTP/2 stream that stops taking its response, by the stall of its own task
            // (see `stream`).
            return Verdict::CheckAt(self.at(now + idle_ms));
        }
        let started = self.head_started.load(Ordering::Relaxed);
        if started != NEVER {
            let due = started.saturating_add(header_read_ms);
            return if now >= due {
                Verdict::SlowHead
            } else {
                Verdict::CheckAt(self.at(due))
            };
        }
        let due = self
            .idle_since
            .load(Ordering::Relaxed)
            .saturating_add(idle_ms);
        if now >= due {
            Verdict::Idle
        } else {
            Verdict::CheckAt(self.at(due))
        }
    }
}

/// The accepted socket, reporting reads and blocked writes to its [`Activity`].
pub(super) struct Tracked {
    stream: TcpStream,
    activity: Arc<Activity>,
}

impl Tracked {
    pub(super) fn new(stream: TcpStream, activity: Arc<Activity>) -> Self {
        *activity.socket() = Some(stream.as_raw_fd());
        Self { stream, activity }
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        // Before `stream` closes the descriptor (fields drop after this), under the lock.
        self.activity.socket().take();
        self.activity.closed.notify_waiters();
    }
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.bytes_read();
        }
        polled
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.stream).poll_write(cx, buf);
        self.activity.write_blocked(polled.is_pending());
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        self.activity.write_blocked(polled.is_pending());
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: u64 = 1_000;
    const IDLE: u64 = 5_000;

    #[tokio::test(start_paused = true)]
    async fn a_silent_new_connection_is_cut_at_the_header_timeout() {
        let activity = Activity::new();
        assert!(matches!(activity.verdict(HEAD, IDLE), Verdict::CheckAt(_)));
        tokio::time::advance(std::time::Duration::from_millis(HEAD)).await;
        assert_eq!(activity.verdict(HEAD, IDLE), Verdict::SlowHead);
    }

    #[tokio::test(start_paused = true)]
    async fn a_close_waits_for_the_first_request_only() {
        let activity = Activity::new();
        let wait = std::time::Duration::from_millis(HEAD);
        let accepted = Instant::now();
        tokio::time::advance(std::time::Duration::from_millis(300)).await;
        assert_eq!(activity.first_request_due(wait), Some(accepted + wait));
        activity.request_started(false);
        assert_eq!(activity.first_request_due(wait), None, "it has made one");
        activity.request_finished();
        assert_eq!(
            activity.first_request_due(wait),
            None,
            "kept alive: idle now"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_kept_alive_connection_waits_for_the_idle_timeout() {
        let activity = Activity::new();
        activity.request_started(false);
        activity.request_finished();
        tokio::time::advance(std::time::Duration::from_millis(HEAD * 2)).await;
        assert!(matches!(activity.verdict(HEAD, IDLE), Verdict::CheckAt(_)));
        tokio::time::advance(std::time::Duration::from_millis(IDLE)).await;
        assert_eq!(activity.verdict(HEAD, IDLE), Verdict::Idle);
    }

    #[tokio::test(start_paused = true)]
    async fn a_head_that_starts_is_timed_from_its_first_byte() {
        let activity = Activity::new();
        activity.request_started(false);
        activity.request_finished();
        tokio::time::advance(std::time::Duration::from_millis(2_000)).await;
        activity.bytes_read();
        tokio::time::advance(std::time::Duration::from_millis(HEAD - 1)).await;
        assert!(matches!(activity.verdict(HEAD, IDLE), Verdict::CheckAt(_)));
        tokio::time::advance(std::time::Duration::from_millis(1)).await;
        assert_eq!(activity.verdict(HEAD, IDLE), Verdict::SlowHead);
    }

    #[tokio::test(start_paused = true)]
    async fn a_head_that_starts_tells_the_connection_task_when_it_is_due_once() {
        let activity = Activity::new();
        activity.request_started(false);
        activity.request_finished();
        assert_eq!(activity.new_head_due(HEAD), None, "no head started yet");
        tokio::time::advance(std::time::Duration::from_millis(2_000)).await;
        activity.bytes_read();
        let due = activity.new_head_due(HEAD).expect("a head started");
        assert_eq!(due, Instant::now() + std::time::Duration::from_millis(HEAD));
        activity.bytes_read();
        assert_eq!(activity.new_head_due(HEAD), None, "told once per head");
    }

    #[tokio::test(start_paused = true)]
    async fn bytes_on_an_idle_http2_connection_start_no_head() {
        let activity = Activity::new();
        activity.request_started(true);
        activity.request_finished();
        tokio::time::advance(std::time::Duration::from_millis(100)).await;
        // A PING or a WINDOW_UPDATE.
        activity.bytes_read();
        assert_eq!(activity.new_head_due(HEAD), None);
        tokio::time::advance(std::time::Duration::from_millis(HEAD * 2)).await;
        assert!(matches!(activity.verdict(HEAD, IDLE), Verdict::CheckAt(_)));
        tokio::time::advance(std::time::Duration::from_millis(IDLE)).await;
        assert_eq!(activity.verdict(HEAD, IDLE), Verdict::Idle);
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_stops_reading_is_cut_at_the_idle_timeout() {
        let activity = Activity::new();
        activity.request_started(false);
        tokio::time::advance(std::time::Duration::from_millis(IDLE * 3)).await;
        assert!(
            matches!(activity.verdict(HEAD, IDLE), Verdict::CheckAt(_)),
            "a slow handler is not a slow client"
        );
        activity.write_blocked(true);
        tokio::time::advance(std::time::Duration::from_millis(IDLE)).await;
        assert_eq!(activity.verdict(HEAD, IDLE), Verdict::WriteStalled);
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_stops_reading_the_last_response_is_cut_at_the_idle_timeout() {
        let activity = Activity::new();
        activity.request_started(false);
        activity.write_blocked(true);
        // The whole body is with hyper: the request counts as finished, its bytes are not sent.
        activity.request_finished();
        tokio::time::advance(std::time::Duration::from_millis(IDLE - 1)).await;
        assert!(matches!(activity.verdict(HEAD, IDLE), Verdict::CheckAt(_)));
        tokio::time::advance(std::time::Duration::from_millis(1)).await;
        assert_eq!(activity.verdict(HEAD, IDLE), Verdict::WriteStalled);
    }
}
