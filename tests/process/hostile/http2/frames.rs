//! HTTP/2 frames written and read by hand, for what a client library would not send when asked:
//! a PING or a WINDOW_UPDATE at a chosen moment on an idle connection.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const WINDOW_UPDATE: u8 = 0x8;

const END_STREAM: u8 = 0x1;
const ACK: u8 = 0x1;
const END_HEADERS: u8 = 0x4;

/// A control frame that is not part of any request.
#[derive(Debug, Clone, Copy)]
pub enum FrameKind {
    Ping,
    WindowUpdate,
}

pub struct Frame {
    kind: u8,
    flags: u8,
    stream: u32,
    payload: Vec<u8>,
}

/// A prior-knowledge (h2c) connection.
pub struct H2 {
    stream: TcpStream,
}

impl H2 {
    /// Connects and sends the preface and empty SETTINGS.
    pub fn connect(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect(addr).expect("rodent accepts the connection");
        let mut h2 = Self { stream };
        h2.stream.write_all(PREFACE).unwrap();
        h2.send(SETTINGS, 0, 0, &[]);
        h2
    }

    fn send(&mut self, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
        let length = (payload.len() as u32).to_be_bytes();
        let mut frame = vec![length[1], length[2], length[3], kind, flags];
        frame.extend_from_slice(&stream.to_be_bytes());
        frame.extend_from_slice(payload);
        self.stream.write_all(&frame).expect("the frame is sent");
    }

    pub fn send_control(&mut self, kind: FrameKind) {
        match kind {
            FrameKind::Ping => self.send(PING, 0, 0, b"rodent!!"),
            // A connection-level increment: the client makes room for more response bytes.
            FrameKind::WindowUpdate => self.send(WINDOW_UPDATE, 0, 0, &1024u32.to_be_bytes()),
        }
    }

    /// Reads the next frame, acknowledging the server's SETTINGS on the way; `None` when the
    /// connection ended (or `patience` ran out: `Err`).
    fn next(&mut self, patience: Duration) -> Result<Option<Frame>, ()> {
        let deadline = Instant::now() + patience;
        loop {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                return Err(());
            };
            self.stream
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .unwrap();
            let mut head = [0u8; 9];
            match self.stream.read_exact(&mut head) {
                Ok(()) => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return Err(());
                }
                // The end of the connection, cleanly or by a reset.
                Err(_) => return Ok(None),
            }
            let length = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
            let mut payload = vec![0; length];
            if self.stream.read_exact(&mut payload).is_err() {
                return Ok(None);
            }
            let frame = Frame {
                kind: head[3],
                flags: head[4],
                stream: u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff,
                payload,
            };
            if frame.kind == SETTINGS && frame.flags & ACK == 0 {
                self.send(SETTINGS, ACK, 0, &[]);
                continue;
            }
            return Ok(Some(frame));
        }
    }

    /// `GET path` on stream `id`; returns the status once the whole response arrived.
    pub fn get(&mut self, id: u32, path: &str) -> u16 {
        // HPACK: :method GET (static 2), :scheme http (static 6), :path and :authority as
        // literals without indexing, named by their static entries (4 and 1).
        let mut block = vec![0x82, 0x86, 0x04, path.len() as u8];
        block.extend_from_slice(path.as_bytes());
        block.extend_from_slice(&[0x01, 6]);
        block.extend_from_slice(b"rodent");
        self.send(HEADERS, END_HEADERS | END_STREAM, id, &block);
        let mut status = None;
        loop {
            let frame = self
                .next(kit::PATIENCE)
                .unwrap_or_else(|()| panic!("no response on stream {id}"))
                .unwrap_or_else(|| panic!("the connection ended before stream {id}'s response"));
            if frame.stream != id {
                continue;
            }
            if frame.kind == HEADERS {
                // rodent's server encodes `:status` first, as a static-table entry for the
                // common statuses (0x88: 200).
                status = Some(match frame.payload.first() {
                    Some(0x88) => 200,
                    other => panic!("a response head starting with {other:?}"),
                });
            }
            if matches!(frame.kind, HEADERS | DATA) && frame.flags & END_STREAM != 0 {
                return status.expect("a response head came first");
            }
        }
    }

    /// Reads until a GOAWAY (`true`) or the end of the connection (`false`); panics if neither
    /// came within `patience`.
    pub fn wait_goaway(&mut self, patience: Duration) -> bool {
        loop {
            match self.next(patience) {
                Ok(Some(frame)) if frame.kind == GOAWAY => return true,
                Ok(Some(_)) => {}
                Ok(None) => return false,
                Err(()) => panic!("neither a GOAWAY nor the end of the connection in {patience:?}"),
            }
        }
    }

    /// Reads until the connection ends; `false` if it did not within `patience`.
    pub fn wait_end(&mut self, patience: Duration) -> bool {
        loop {
            match self.next(patience) {
                Ok(Some(_)) => {}
                Ok(None) => return true,
                Err(()) => return false,
            }
        }
    }
}
