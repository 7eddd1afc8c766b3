//! systemd's readiness protocol (`sd_notify`): when `NOTIFY_SOCKET` is set, lifecycle events
//! become datagrams to it, so that a `Type=notify` (or `Type=notify-reload`) unit knows when
//! rodent is serving, reloading and stopping rather than guessing from the process alone.
//!
//! | event | sent |
//! | --- | --- |
//! | ready | `READY=1` |
//! | SIGHUP reload starts | `RELOADING=1` and `MONOTONIC_USEC=` (required by `notify-reload`) |
//! | reload done (applied or rejected) | `READY=1` |
//! | draining | `STOPPING=1` |
//! | startup failed | `STATUS=` and the cause |

use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};

use nix::time::{ClockId, clock_gettime};

use crate::config::Vars;
use crate::lifecycle::Event;

/// A connection to the service manager's notification socket.
pub(crate) struct Notifier {
    socket: UnixDatagram,
    address: SocketAddr,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier")
            .field("address", &self.address)
            .finish()
    }
}

impl Notifier {
    /// The notifier for `NOTIFY_SOCKET`, when the service manager set it: a path, or an abstract
    /// socket when it starts with `@`.
    pub(crate) fn from_vars(vars: &Vars) -> Option<io::Result<Self>> {
        let path = vars.get("NOTIFY_SOCKET").filter(|p| !p.is_empty())?;
        Some(Self::connect(path))
    }

    fn connect(path: &str) -> io::Result<Self> {
        let address = match path.strip_prefix('@') {
            Some(name) => SocketAddr::from_abstract_name(name.as_bytes())?,
            None => SocketAddr::from_pathname(path)?,
        };
        Ok(Self {
            socket: UnixDatagram::unbound()?,
            address,
        })
    }

    /// Sends one notification (newline-separated `KEY=value` assignments).
    pub(crate) fn send(&self, state: &str) -> io::Result<()> {
        self.socket
            .send_to_addr(state.as_bytes(), &self.address)
            .map(drop)
    }

    /// Tells the service manager about a lifecycle event; for [`Rodent::on_event`](crate::Rodent::on_event).
    pub(crate) fn observe(&self, event: &Event) {
        let state = match event {
            Event::Ready | Event::Reloaded => "READY=1".to_string(),
            Event::Reloading => format!("RELOADING=1\nMONOTONIC_USEC={}", monotonic_usec()),
            Event::Draining => "STOPPING=1".to_string(),
            Event::StartFailed(cause) => format!("STATUS={}", cause.replace('\n', " ")),
            Event::Listening(_) | Event::Stopped(_) => return,
        };
        if let Err(e) = self.send(&state) {
            tracing::warn!(target: "rodent::notify", error = %e, state, "cannot notify the service manager");
        }
    }
}

/// `CLOCK_MONOTONIC` in microseconds: how systemd orders a reload against its own clock.
fn monotonic_usec() -> u64 {
    let now = clock_gettime(ClockId::CLOCK_MONOTONIC).expect("CLOCK_MONOTONIC always exists");
    u64::try_from(now.tv_sec()).unwrap_or_default() * 1_000_000
        + u64::try_from(now.tv_nsec()).unwrap_or_default() / 1_000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_become_the_documented_datagrams() {
        let dir = std::env::temp_dir().join(format!("rodent-notify-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify.sock");
        let manager = UnixDatagram::bind(&path).unwrap();
        let vars = Vars::from([(
            "NOTIFY_SOCKET".to_string(),
            path.to_str().unwrap().to_string(),
        )]);
        let notifier = Notifier::from_vars(&vars).unwrap().unwrap();
        let received = |notifier: &Notifier, event: Event| {
            notifier.observe(&event);
            let mut buf = [0u8; 256];
            let n = manager.recv(&mut buf).unwrap();
            String::from_utf8(buf[..n].to_vec()).unwrap()
        };
        assert_eq!(received(&notifier, Event::Ready), "READY=1");
        let reloading = received(&notifier, Event::Reloading);
        assert!(
            reloading.starts_with("RELOADING=1\nMONOTONIC_USEC="),
            "{reloading}"
        );
        assert_eq!(received(&notifier, Event::Reloaded), "READY=1");
        assert_eq!(received(&notifier, Event::Draining), "STOPPING=1");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn no_socket_no_notifier() {
        assert!(Notifier::from_vars(&Vars::new()).is_none());
    }
}
