//! Hostile clients against the real binary: slow and stalled clients, running out of file
//! descriptors, garbage on the socket, and property-based runs over the configuration parser and
//! the HTTP edge; and, for rodent as PID 1, a flood of orphans. In every case rodent keeps
//! serving everyone else, and never crashes or hangs.

mod descriptors;
mod files;
mod garbage;
mod http2;
mod orphans;
mod properties;
mod slow;

use std::io::{ErrorKind, Read};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// What a connection got back for what it sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// A response head with this status.
    Status(u16),
    /// Closed (FIN or reset) without a response.
    Closed,
    /// Neither, within the patience given: a hang.
    Nothing,
}

/// Reads until a whole response head has arrived, the peer closes, or `patience` runs out.
pub fn answer(stream: &mut TcpStream, patience: Duration) -> Answer {
    let deadline = Instant::now() + patience;
    let mut received = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = received.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&received[..end]);
            return match head.split_whitespace().nth(1).and_then(|c| c.parse().ok()) {
                Some(status) => Answer::Status(status),
                None => panic!("a response head without a status: {head:?}"),
            };
        }
        let Some(left) = deadline.checked_duration_since(Instant::now()) else {
            return Answer::Nothing;
        };
        stream
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .expect("a read timeout can be set");
        match stream.read(&mut chunk) {
            Ok(0) => return Answer::Closed,
            Ok(n) => received.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Answer::Nothing;
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            // A reset: closed, abruptly.
            Err(_) => return Answer::Closed,
        }
    }
}
