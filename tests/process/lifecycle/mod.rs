//! The lifecycle of the real `rodent` binary: real processes, real signals, real sockets.

mod background;
mod budget;
mod config;
mod drain;
mod http_edges;
mod operator;
mod sinks;
mod upgrades;
