//! OS signals, translated once into what they mean for rodent.
//!
//! Everything downstream matches on [`Signal`], never on signal numbers. Signals are blocked at
//! the very start of `main` ([`block_early`]) and unblocked only once handlers exist
//! ([`listen`]): one that arrives while configuration is read stays pending and is delivered
//! then, instead of being lost or killing the process with its default action.
//!
//! What the handlers receive is read on a thread of its own, so [`listen`] can be called before
//! the application's runtime is built. That order matters: a thread inherits the signal mask of
//! the thread that creates it, and a child process inherits the mask of the thread that spawns
//! it, so runtime threads created while the signals are still blocked would hand a blocked
//! SIGTERM to every process the service starts.
//!
//! signal-hook, not a second tokio runtime, receives them there: its handlers are in the
//! registry tokio's own signal handling uses, and a plain thread reads them. Like tokio's, it
//! reports a signal sent several times before it is read once.

use std::collections::VecDeque;

use nix::sys::signal::{SigSet, SigmaskHow, Signal as Sig, pthread_sigmask};
use signal_hook::iterator::{Handle, Signals};
use tokio::sync::mpsc;

/// A signal, named by what it asks rodent to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Signal {
    /// SIGTERM: Kubernetes (pod deletion, rolling update, node drain), `docker stop` and
    /// `rodent stop` send this to start a graceful shutdown. A second one forces the exit.
    Terminate,
    /// SIGINT: Ctrl-C in a terminal. Treated exactly like SIGTERM.
    Interrupt,
    /// SIGHUP: `rodent reload`, `kill -HUP`, systemd's `ExecReload`: re-read the configuration.
    Reload,
    /// SIGQUIT: Ctrl-\ or `docker kill -s QUIT`: an operator asking what the process is doing.
    Dump,
    /// SIGUSR1: no meaning yet; caught so it never kills the process (its default action).
    User1,
    /// SIGUSR2: `rodent restart` (the nginx and unicorn convention): start a successor on the
    /// listening socket, then drain once it is ready. Without meaning where restarts are not
    /// enabled (a service run without `launch`).
    User2,
    /// SIGWINCH: a terminal was resized; forwarded by a supervisor like any other, ignored.
    WindowChange,
}

impl Signal {
    /// Every signal rodent handles, which is every signal a supervisor forwards.
    pub const ALL: [Signal; 7] = [
        Self::Terminate,
        Self::Interrupt,
        Self::Reload,
        Self::Dump,
        Self::User1,
        Self::User2,
        Self::WindowChange,
    ];

    pub(crate) fn os(self) -> Sig {
        match self {
            Self::Terminate => Sig::SIGTERM,
            Self::Interrupt => Sig::SIGINT,
            Self::Reload => Sig::SIGHUP,
            Self::Dump => Sig::SIGQUIT,
            Self::User1 => Sig::SIGUSR1,
            Self::User2 => Sig::SIGUSR2,
            Self::WindowChange => Sig::SIGWINCH,
        }
    }

    /// The conventional name, `SIGTERM` and so on, for logs.
    pub fn name(self) -> &'static str {
        self.os().as_str()
    }

    /// Whether this signal asks the process to stop.
    pub fn is_shutdown(self) -> bool {
        matches!(self, Self::Terminate | Self::Interrupt)
    }
}

/// Every signal in [`Signal::ALL`], as the OS numbers them.
pub(crate) fn handled_set() -> SigSet {
    let mut set = SigSet::empty();
    for signal in Signal::ALL {
        set.add(signal.os());
    }
    set
}

/// Blocks every handled signal on the calling thread, and so on every thread it later spawns.
/// Call first thing in `main`, before any thread exists; [`listen`] undoes it.
pub(crate) fn block_early() -> nix::Result<()> {
    pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&handled_set()), None)
}

/// Installs a handler for every signal in [`Signal::ALL`] and forwards them into the returned
/// [`Received`]; then unblocks them on the calling thread, so a signal left pending since
/// [`block_early`] is delivered now. Call it before building the application's runtime (see the
/// module documentation).
///
/// The handlers are signal-hook's, in the registry tokio's own signal handling shares; a plain
/// thread of their own reads what they received, so no runtime is needed yet.
pub(crate) fn listen() -> std::io::Result<Received> {
    let mut signals = Signals::new(Signal::ALL.map(|which| which.os() as i32))?;
    // Handlers exist now: a signal pending since block_early is delivered and queued.
    pthread_sigmask(SigmaskHow::SIG_UNBLOCK, Some(&handled_set()), None)?;
    let handle = signals.handle();
    let (tx, rx) = mpsc::unbounded_channel();
    std::thread::Builder::new()
        .name("rodent-signals".to_string())
        .spawn(move || {
            for number in signals.forever() {
                let which = Signal::ALL.into_iter().find(|s| s.os() as i32 == number);
                if let Some(which) = which
                    && tx.send(which).is_err()
                {
                    break;
                }
            }
        })?;
    Ok(Received {
        early: VecDeque::new(),
        rx,
        handle,
    })
}

/// The signals [`listen`] forwards. Dropping it ends the forwarding thread.
#[derive(Debug)]
pub(crate) struct Received {
    /// Signals received earlier and handed back, to come before the others.
    early: VecDeque<Signal>,
    rx: mpsc::UnboundedReceiver<Signal>,
    handle: Handle,
}

impl Received {
    /// The next signal; `None` once the forwarding thread is gone.
    pub(crate) async fn recv(&mut self) -> Option<Signal> {
        match self.early.pop_front() {
            Some(signal) => Some(signal),
            None => self.rx.recv().await,
        }
    }

    /// Hands back signals received but not acted on (during an application's setup): they
    /// come first, in this order.
    pub(crate) fn hand_back(&mut self, signals: impl IntoIterator<Item = Signal>) {
        let mut early: VecDeque<Signal> = signals.into_iter().collect();
        early.append(&mut self.early);
        self.early = early;
    }
}

impl Drop for Received {
    fn drop(&mut self) {
        self.handle.close();
    }
}
