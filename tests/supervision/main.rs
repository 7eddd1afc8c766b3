//! Process supervision with the real binary: as PID 1 of a PID namespace, one instance per PID
//! file, daemon mode, and the commands that operate a running instance.

#[path = "../support/mod.rs"]
mod support;

mod daemon;
mod pid1;
mod pidfile;
