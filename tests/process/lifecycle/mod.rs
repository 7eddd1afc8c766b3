//! The lifecycle of the real `rodent` binary: real processes, real signals, real sockets.

mod app_settings;
mod application;
mod background;
mod budget;
mod config;
mod drain;
mod http_edges;
mod management;
mod notes;
mod operator;
mod sinks;
mod upgrades;
mod watched;
