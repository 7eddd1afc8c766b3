//! Lifecycle events: what the service tells the outside world as it moves through its life,
//! and the observers that hear them.
//!
//! The application's observers ([`Rodent::on_event`](crate::Rodent::on_event)) are called on a
//! thread of their own, in order, each call caught if it panics: an observer that blocks or
//! panics can neither stall nor unwind the loop that drains the service. The last events wait
//! for them a moment at most ([`Observers::delivered`]). rodent's own observers (systemd's
//! notification, the report to a daemon's launcher) are quick and run on the loop, so that
//! `READY=1` or a daemon's outcome is sent when the step happens, not later.

use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};

use tokio::sync::oneshot;
use tokio::time::Instant;

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

/// What the observers' thread is handed.
enum Delivery {
    Event(Event),
    /// Answered once every event before it has been delivered.
    Delivered(oneshot::Sender<()>),
}

/// Everyone who asked to hear about lifecycle events, in the order they asked.
#[derive(Default)]
pub(crate) struct Observers {
    /// rodent's own: called on the loop.
    own: Vec<Observer>,
    /// The application's, until their thread starts with the first event.
    application: Mutex<Vec<Observer>>,
    thread: OnceLock<Option<mpsc::Sender<Delivery>>>,
}

impl Observers {
    /// An observer of the application's, called on the observers' thread.
    pub(crate) fn push(&mut self, observer: impl Fn(&Event) + Send + Sync + 'static) {
        self.application
            .get_mut()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(Box::new(observer));
    }

    /// One of rodent's own observers, called on the loop: it must be quick and must not panic.
    pub(crate) fn push_own(&mut self, observer: impl Fn(&Event) + Send + Sync + 'static) {
        self.own.push(Box::new(observer));
    }

    pub(crate) fn emit(&self, event: &Event) {
        for observer in &self.own {
            observer(event);
        }
        if let Some(thread) = self.thread() {
            // Fails only once the thread is gone, which it is not before the observers are.
            let _ = thread.send(Delivery::Event(event.clone()));
        }
    }

    /// Waits until the application's observers have seen every event so far, or until
    /// `deadline`: one that blocks does not hold the exit.
    pub(crate) async fn delivered(&self, deadline: Instant) {
        let Some(thread) = self.thread() else {
            return;
        };
        let (done, delivered) = oneshot::channel();
        if thread.send(Delivery::Delivered(done)).is_ok()
            && tokio::time::timeout_at(deadline, delivered).await.is_err()
        {
            tracing::warn!(target: "rodent::lifecycle", "an event observer is still busy; not waiting for it");
        }
    }

    /// The observers' thread, started with the first event (by then the signal handlers exist,
    /// so it starts with the signals unblocked, as every thread must: see `process::signal`).
    /// `None` when the application has no observer, or the thread could not start.
    fn thread(&self) -> Option<&mpsc::Sender<Delivery>> {
        self.thread
            .get_or_init(|| {
                let observers = std::mem::take(
                    &mut *self
                        .application
                        .lock()
                        .unwrap_or_else(|poisoned| poisoned.into_inner()),
                );
                if observers.is_empty() {
                    return None;
                }
                let (tx, rx) = mpsc::channel();
                let started = std::thread::Builder::new()
                    .name("rodent-observers".to_string())
                    .spawn(move || deliver(&observers, &rx));
                match started {
                    Ok(_) => Some(tx),
                    Err(e) => {
                        tracing::error!(target: "rodent::lifecycle", error = %e, "cannot start the thread of the event observers; they will not be called");
                        None
                    }
                }
            })
            .as_ref()
    }
}

/// The observers' thread: every event to every observer, in order, until the service is gone.
fn deliver(observers: &[Observer], deliveries: &mpsc::Receiver<Delivery>) {
    while let Ok(delivery) = deliveries.recv() {
        let event = match delivery {
            Delivery::Event(event) => event,
            Delivery::Delivered(done) => {
                let _ = done.send(());
                continue;
            }
        };
        for (index, observer) in observers.iter().enumerate() {
            // A panic is the observer's own: logged, and the others still hear the event.
            if std::panic::catch_unwind(AssertUnwindSafe(|| observer(&event))).is_err() {
                tracing::error!(target: "rodent::lifecycle", observer = index, event = ?event, "an event observer panicked");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn observers_that_block_or_panic_do_not_hold_the_caller() {
        let heard = Arc::new(Mutex::new(Vec::new()));
        let (release, released) = std::sync::mpsc::channel::<()>();
        let released = Mutex::new(released);
        let mut observers = Observers::default();
        observers.push(|_| panic!("an observer's bug"));
        let log = heard.clone();
        observers.push(move |event| log.lock().unwrap().push(event.clone()));
        observers.push(move |event| {
            if *event == Event::Draining {
                // Blocks until the test lets it go.
                let _ = released.lock().unwrap().recv();
            }
        });

        observers.emit(&Event::Ready);
        observers.emit(&Event::Draining);
        observers.emit(&Event::Stopped(Exit::Clean));
        // The caller goes on at once; the blocked observer holds only its own thread, and the
        // wait for it ends at its deadline. (Generous: a test's panic hook prints backtraces.)
        let waited = std::time::Instant::now();
        observers
            .delivered(Instant::now() + Duration::from_secs(3))
            .await;
        assert!(waited.elapsed() < Duration::from_secs(10));
        let heard_so_far = heard.lock().unwrap().clone();
        assert_eq!(
            heard_so_far,
            [Event::Ready, Event::Draining],
            "the others heard what came before the blocked one, despite the panics"
        );

        release.send(()).unwrap();
        observers
            .delivered(Instant::now() + Duration::from_secs(10))
            .await;
        let heard = heard.lock().unwrap().clone();
        assert_eq!(
            heard,
            [Event::Ready, Event::Draining, Event::Stopped(Exit::Clean)]
        );
    }
}
