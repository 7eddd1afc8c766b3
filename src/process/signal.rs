//! OS signals, translated once into what they mean for rodent.
//!
//! Everything downstream matches on [`Signal`], never on signal numbers. Signals are blocked at
//! the very start of `main` ([`block_early`]) and unblocked only once handlers exist
//! ([`listen`]): one that arrives while configuration is read stays pending and is delivered
//! then, instead of being lost or killing the process with its default action.
//!
//! The handlers run on a thread of their own, so [`listen`] can be called before the
//! application's runtime is built. That order matters: a thread inherits the signal mask of the
//! thread that creates it, and a child process inherits the mask of the thread that spawns it,
//! so runtime threads created while the signals are still blocked would hand a blocked SIGTERM
//! to every process the service starts.

use nix::sys::signal::{SigSet, SigmaskHow, Signal as Sig, pthread_sigmask};
use tokio::signal::unix::{SignalKind, signal};
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

/// Installs a handler for every signal in [`Signal::ALL`] and forwards them, in arrival order,
/// into the returned channel; then unblocks them on the calling thread, so a signal left pending
/// since [`block_early`] is delivered now. Call it before building the application's runtime
/// (see the module documentation). The handler thread ends when the receiver is dropped.
pub(crate) fn listen() -> std::io::Result<mpsc::UnboundedReceiver<Signal>> {
    // A runtime of its own, with no worker threads: it only drives the signal streams.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    let streams = {
        let _context = runtime.enter();
        Signal::ALL
            .into_iter()
            .map(|which| Ok((which, signal(SignalKind::from_raw(which.os() as i32))?)))
            .collect::<std::io::Result<Vec<_>>>()?
    };
    // Handlers exist now: a signal pending since block_early is delivered and queued.
    pthread_sigmask(SigmaskHow::SIG_UNBLOCK, Some(&handled_set()), None)?;
    let (tx, rx) = mpsc::unbounded_channel();
    std::thread::Builder::new()
        .name("rodent-signals".to_string())
        .spawn(move || runtime.block_on(forward(streams, tx)))?;
    Ok(rx)
}

async fn forward(
    streams: Vec<(Signal, tokio::signal::unix::Signal)>,
    tx: mpsc::UnboundedSender<Signal>,
) {
    for (which, mut stream) in streams {
        let tx = tx.clone();
        tokio::spawn(async move {
            while stream.recv().await.is_some() {
                if tx.send(which).is_err() {
                    break;
                }
            }
        });
    }
    tx.closed().await;
}
