//! Process supervision with the real binary: as PID 1 of a PID namespace, one instance per PID
//! file, daemon mode, and the commands that operate a running instance.

mod daemon;
mod pid1;
mod pidfile;
