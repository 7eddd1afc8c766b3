//! HTTP/2 clients that hold on to the server: readers that never open their flow-control
//! window, and idle connections that send only control frames (PING, WINDOW_UPDATE).

mod frames;
mod stalled_readers;

use std::time::{Duration, Instant};

use frames::{FrameKind, H2};
use kit::{PATIENCE, rodent};

const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(1);
const IDLE_TIMEOUT: Duration = Duration::from_secs(3);

/// An idle HTTP/2 connection is closed at the idle timeout with a GOAWAY, whatever control
/// frames it receives meanwhile: a PING or a WINDOW_UPDATE is not the start of a request head,
/// so it neither starts the header-read timeout nor keeps the connection open.
#[test]
fn an_idle_http2_connection_sent_control_frames_gets_a_goaway_at_the_idle_timeout() {
    let rodent = rodent()
        .env("RODENT_HEADER_READ_TIMEOUT", "1s")
        .env("RODENT_IDLE_TIMEOUT", "3s")
        .spawn();
    for control in [FrameKind::Ping, FrameKind::WindowUpdate] {
        let mut h2 = H2::connect(rodent.addr());
        assert_eq!(h2.get(1, "/"), 200, "the first request is served");

        // A control frame, then a request only after the header-read timeout has passed since
        // it: the control frame did not start a head, so the request is served.
        std::thread::sleep(Duration::from_millis(300));
        h2.send_control(control);
        std::thread::sleep(HEADER_READ_TIMEOUT + Duration::from_millis(500));
        assert_eq!(
            h2.get(3, "/"),
            200,
            "a request {:?} after a {control:?} is served",
            HEADER_READ_TIMEOUT + Duration::from_millis(500)
        );

        // Idle from now on, but for one more control frame: a GOAWAY comes at the idle timeout,
        // then the end of the connection; never an end without a GOAWAY.
        let idle_from = Instant::now();
        std::thread::sleep(Duration::from_millis(300));
        h2.send_control(control);
        let goaway = h2.wait_goaway(IDLE_TIMEOUT + PATIENCE);
        let after = idle_from.elapsed();
        assert!(
            goaway,
            "the connection ended without a GOAWAY {after:?} after it went idle (a {control:?} \
             arrived meanwhile)"
        );
        assert!(
            after >= IDLE_TIMEOUT - Duration::from_millis(50) && after < IDLE_TIMEOUT + PATIENCE,
            "GOAWAY {after:?} after the connection went idle; the idle timeout is {IDLE_TIMEOUT:?}"
        );
        assert!(
            h2.wait_end(PATIENCE),
            "the connection did not end after its GOAWAY"
        );
    }
}
