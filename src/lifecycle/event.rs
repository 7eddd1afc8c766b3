//! Lifecycle events: what the service tells the outside world as it moves through its life.

use std::net::SocketAddr;

use crate::exit::Exit;

/// A lifecycle step, for whoever needs to tell the outside world: systemd (`sd_notify`), the
/// process that launched a daemon, a test.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// The listener is bound, at this address.
    Listening(SocketAddr),
    /// The startup hooks are done: the service is in rotation.
    Ready,
    /// A reload (SIGHUP) begins.
    Reloading,
    /// A reload is over, applied or rejected.
    Reloaded,
    /// The first shutdown signal arrived: readiness fails from now on.
    Draining,
    /// The service stopped, with this exit.
    Stopped(Exit),
    /// Startup failed; the message is the one-line cause.
    StartFailed(String),
}

type Observer = Box<dyn Fn(&Event) + Send + Sync>;

/// Everyone who asked to hear about lifecycle events, in the order they asked.
#[derive(Default)]
pub(crate) struct Observers(Vec<Observer>);

impl Observers {
    pub(crate) fn push(&mut self, observer: impl Fn(&Event) + Send + Sync + 'static) {
        self.0.push(Box::new(observer));
    }

    pub(crate) fn emit(&self, event: &Event) {
        for observer in &self.0 {
            observer(event);
        }
    }
}
