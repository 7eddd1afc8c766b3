//! What a rodent process is to the operating system, apart from the service it runs: how OS
//! signals become [`Signal`]s, the PID 1 supervisor, daemon mode, the PID file, systemd's
//! readiness notifications and socket activation, and the successor a restart starts.
//!
//! | part | owns |
//! | --- | --- |
//! | [`signal`] | OS signals, blocked early and translated once into [`Signal`] |
//! | [`supervisor`] | PID 1: re-exec as a child, reap orphans, forward signals |
//! | [`daemon`] | `serve --detach`: double fork and an honest report to the launcher |
//! | [`pidfile`] | one instance per PID file, held with `flock` |
//! | [`notify`] | systemd readiness notifications (`NOTIFY_SOCKET`) |
//! | [`activation`] | listening sockets inherited instead of bound: `LISTEN_FDS`, or from a parent rodent |
//! | [`successor`] | `rodent restart`: the successor started on the socket, its report, the outcome |
//! | `handoff` | descriptors a rodent hands to the rodent it starts, named in variables, claimed once |
//! | `reexec` | this program started again: the supervised service, a restart's successor |
//! | `threads` | whether this process is single-threaded (unknown counts as no) |
//!
//! Nothing here knows about HTTP or the service's state: the launcher wires these parts to the
//! service through lifecycle [`Event`](crate::lifecycle::Event)s.

pub(crate) mod activation;
pub(crate) mod daemon;
pub(crate) mod handoff;
pub(crate) mod notify;
pub(crate) mod pidfile;
pub(crate) mod reexec;
pub(crate) mod signal;
pub(crate) mod successor;
pub(crate) mod supervisor;
pub(crate) mod threads;

pub use signal::Signal;
