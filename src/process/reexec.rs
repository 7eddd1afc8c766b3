//! This program, started again as a child: the service under the PID 1 supervisor, and the
//! successor of `rodent restart`.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use nix::sys::signal::{SigHandler, SigmaskHow, Signal as Sig, sigprocmask};

use super::signal::handled_set;

static EXECUTABLE: OnceLock<Option<PathBuf>> = OnceLock::new();

/// Notes the path this program was started from, before anything can replace the file there:
/// [`Binary::Installed`] starts whatever is at that path then. (Read later, `/proc/self/exe`
/// would name the replaced file, with ` (deleted)` after it.)
pub(crate) fn remember_executable() {
    EXECUTABLE.get_or_init(|| std::env::current_exe().ok());
}

/// Which file to execute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Binary {
    /// The very binary running now (`/proc/self/exe`), even if the file was replaced since.
    Running,
    /// Whatever is now at the path this program was started from (a binary upgraded in place),
    /// or the running one when nothing is there any more.
    Installed,
}

/// This program again, with the same arguments (`argv[0]` included) and environment. The
/// child starts with every handled signal blocked and at its default disposition, exactly as
/// `signal::block_early` leaves a fresh process, so a signal sent while it starts stays pending
/// until its handlers exist, instead of killing it or being lost; SIGCHLD and SIGPIPE are at
/// their defaults too, whatever this process did with them.
pub(crate) fn command(binary: Binary) -> Command {
    let running = || PathBuf::from("/proc/self/exe");
    let program = match binary {
        Binary::Running => running(),
        Binary::Installed => EXECUTABLE
            .get()
            .and_then(Option::as_ref)
            .filter(|path| path.exists())
            .cloned()
            .unwrap_or_else(running),
    };
    let mut args = std::env::args_os();
    let mut command = Command::new(program);
    command
        .arg0(args.next().unwrap_or_else(|| program_name().into()))
        .args(args);
    let early_mask = handled_set();
    let mut reset = handled_set();
    reset.add(Sig::SIGCHLD);
    reset.add(Sig::SIGPIPE);
    // SAFETY: between fork and exec only async-signal-safe calls are made (sigaction,
    // sigprocmask), on values prepared before the fork.
    unsafe {
        command.pre_exec(move || {
            for signal in reset.iter() {
                nix::sys::signal::signal(signal, SigHandler::SigDfl)?;
            }
            sigprocmask(SigmaskHow::SIG_SETMASK, Some(&early_mask), None)?;
            Ok(())
        });
    }
    command
}

/// The name of this program: the file the process was executed from (`rodent`, or an
/// embedding application's binary).
pub(crate) fn program_name() -> String {
    std::env::current_exe()
        .ok()
        .and_then(|path| Some(path.file_name()?.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "rodent".to_string())
}
