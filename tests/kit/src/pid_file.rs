//! The PID file fixture: a directory for one instance's PID file (and, for a daemon, whose
//! output is no pipe the test reads, its log file).

use std::path::PathBuf;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::namespace::{children, process};
use crate::{PATIENCE, Spawn, TempDir, eventually, rodent};

/// A directory with `rodent.pid` (and `rodent.log`). When dropped, the rodent process the PID
/// file names, and its children, are killed: a daemon is not the test's child, and a test that
/// fails must leave nothing running.
pub struct PidFile {
    dir: TempDir,
}

impl PidFile {
    pub fn new(name: &str) -> Self {
        Self {
            dir: TempDir::new(name),
        }
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join("rodent.pid")
    }

    pub fn log_file(&self) -> PathBuf {
        self.dir.join("rodent.log")
    }

    /// The directory, for whatever else the instance needs (an env file, say).
    pub fn dir(&self) -> &TempDir {
        &self.dir
    }

    /// rodent with this PID file, logging to its stdout as usual.
    pub fn spawn(&self) -> Spawn {
        rodent().env(
            "RODENT_PID_FILE",
            self.path().to_str().expect("a UTF-8 path"),
        )
    }

    /// rodent with this PID file and `rodent.log` as its log file: what a daemon needs.
    pub fn daemon(&self) -> Spawn {
        self.spawn().env(
            "RODENT_LOG_FILE",
            self.log_file().to_str().expect("a UTF-8 path"),
        )
    }

    /// The PID written in the file, if the file is there and holds one.
    pub fn written(&self) -> Option<Pid> {
        let text = std::fs::read_to_string(self.path()).ok()?;
        text.trim().parse().ok().map(Pid::from_raw)
    }

    /// The PID written in the file; panics if there is none.
    #[track_caller]
    pub fn pid(&self) -> Pid {
        self.written()
            .unwrap_or_else(|| panic!("no PID in {}", self.path().display()))
    }

    /// What the log file holds so far (empty if it is not there yet).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_file()).unwrap_or_default()
    }

    /// Waits for a line with this `message` in the log file (written by a background thread,
    /// so it may land a moment after the event).
    #[track_caller]
    pub fn wait_log(&self, message: &str) {
        let needle = format!(r#""message":"{message}""#);
        eventually(PATIENCE, || {
            let log = self.log();
            match log.contains(&needle) {
                true => Ok(()),
                false => Err(format!("no {message:?} in the log:\n{log}")),
            }
        });
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        // Only a rodent: a PID left in a stale file may name someone else's process by now.
        let Some(pid) = self
            .written()
            .filter(|&pid| process(pid).is_some_and(|p| p.comm == "rodent" && !p.is_zombie()))
        else {
            return;
        };
        for child in children(pid) {
            let _ = kill(child, Signal::SIGKILL);
        }
        let _ = kill(pid, Signal::SIGKILL);
    }
}
