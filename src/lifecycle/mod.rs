//! The vocabulary of a service's life: the [`State`] it is in and the readiness switch
//! ([`Lifecycle`]), the readiness checks, the startup and shutdown hooks, background tasks, the
//! [`Event`]s the outside world hears about, the [`Drain`] handle long-lived work watches and the
//! [`DrainHold`] that keeps the shutdown hooks waiting.
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
//! | `drain` | [`Drain`]: when long-lived work should end itself; [`DrainHold`] |
//! | `budget` | the exit's schedule, computed once when the stop begins |
//! | `tasks` | background tasks: started before ready, awaited by the drain |

pub(crate) mod budget;
mod drain;
mod event;
pub(crate) mod hooks;
pub(crate) mod readiness;
mod state;
pub(crate) mod tasks;

pub use drain::{Drain, DrainHold};
pub use event::Event;
pub(crate) use event::Observers;
pub use hooks::BoxError;
pub use state::{HEARTBEAT_STALE_AFTER, Lifecycle, State};
