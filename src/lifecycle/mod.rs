//! The vocabulary of a service's life: the [`State`] it is in and the readiness switch
//! ([`Lifecycle`]), the readiness checks, the startup and shutdown hooks, the [`Event`]s the
//! outside world hears about, and the [`Drain`] handle long-lived responses watch.
//!
//! These are small shared types. Exactly one place advances the state machine: the service's
//! run loop and drain sequence (`crate::run`); everything else reads it.
//!
//! | part | owns |
//! | --- | --- |
//! | `state` | [`State`], [`Lifecycle`] and the runtime heartbeat behind liveness |
//! | `readiness` | readiness checks and how `/readyz` evaluates them |
//! | `hooks` | named startup and shutdown work, each bounded by its timeout |
//! | `event` | [`Event`] and the observers that hear them |
//! | `drain` | [`Drain`]: when a long-lived response should end itself |
//! | `budget` | the exit's schedule, computed once when the stop begins |

pub(crate) mod budget;
mod drain;
mod event;
pub(crate) mod hooks;
pub(crate) mod readiness;
mod state;

pub use drain::Drain;
pub use event::Event;
pub(crate) use event::Observers;
pub use hooks::BoxError;
pub use state::{HEARTBEAT_STALE_AFTER, Lifecycle, State};
