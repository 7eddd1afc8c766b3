//! rodent as PID 1 of a PID namespace (what it is in a container), looked at from the outside:
//! who is its PID 1, who lives in it, in what state.
//!
//! `unshare --pid --fork --mount-proc` makes rodent PID 1 of a new namespace without a container
//! runtime; `nsenter` runs more processes inside it. Both need root.

use std::path::Path;
use std::process::Command;

use nix::unistd::Pid;
use serde_json::Value;

use crate::{PATIENCE, Rodent, Spawn, eventually, require_root, require_tool};

/// Prefix that runs a program as PID 1 of a new PID namespace, with its own /proc. When
/// `unshare` dies (a test's cleanup kills it), its child gets SIGKILL, and with PID 1 the whole
/// namespace goes: nothing outlives a test.
pub const UNSHARE: &[&str] = &[
    "unshare",
    "--pid",
    "--fork",
    "--kill-child",
    "--mount-proc",
    "--",
];

/// Whether PID namespaces can be made here: root, util-linux, and a kernel that lets us. In CI
/// anything missing fails the test; elsewhere it is skipped with the reason.
pub fn available() -> bool {
    if !require_root("a PID namespace needs CAP_SYS_ADMIN")
        || !require_tool("unshare", "apt-get install util-linux")
        || !require_tool("nsenter", "apt-get install util-linux")
    {
        return false;
    }
    let works = Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc", "true"])
        .status()
        .is_ok_and(|s| s.success());
    if !works {
        if std::env::var_os("CI").is_some() {
            panic!("unshare --pid --fork --mount-proc fails here, but CI needs it");
        }
        eprintln!("SKIPPED: unshare --pid --fork --mount-proc fails here (no namespaces?)");
    }
    works
}

/// The children of `pid`, as the host sees them.
pub fn children(pid: Pid) -> Vec<Pid> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("children")).ok())
        .flat_map(|list| {
            list.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .map(Pid::from_raw)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Waits for `parent` to have exactly one child, and returns it: the namespace's PID 1 under
/// `unshare`, the service under a supervisor.
pub fn only_child(parent: Pid) -> Pid {
    eventually(PATIENCE, || match children(parent)[..] {
        [child] => Ok(child),
        ref other => Err(format!("{parent} has children {other:?}, not exactly one")),
    })
}

/// The PID namespace `pid` lives in, as `/proc/<pid>/ns/pid` names it.
pub fn namespace_of(pid: Pid) -> String {
    std::fs::read_link(format!("/proc/{pid}/ns/pid"))
        .expect("the process exists")
        .display()
        .to_string()
}

/// One process, from `/proc/<pid>/stat`.
#[derive(Debug, Clone)]
pub struct Process {
    pub pid: Pid,
    pub comm: String,
    pub state: char,
    pub ppid: Pid,
}

impl Process {
    pub fn is_zombie(&self) -> bool {
        self.state == 'Z'
    }

    /// Whether one of its open files is `path`.
    pub fn has_open(&self, path: &Path) -> bool {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid)).is_ok_and(|fds| {
            fds.flatten()
                .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|target| target == path))
        })
    }
}

/// Waits until `pid` no longer runs (a zombie counts as gone).
#[track_caller]
pub fn wait_gone(pid: Pid) {
    eventually(PATIENCE, || match process(pid) {
        Some(p) if !p.is_zombie() => Err(format!("{pid} is still running: {p:?}")),
        _ => Ok(()),
    });
}

pub fn process(pid: Pid) -> Option<Process> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(pid, &stat)
}

fn parse_stat(pid: Pid, stat: &str) -> Option<Process> {
    // The command name is in parentheses and may itself hold spaces and parentheses.
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let mut rest = stat[close + 1..].split_whitespace();
    let state = rest.next()?.chars().next()?;
    let ppid = rest.next()?.parse().ok()?;
    Some(Process {
        pid,
        comm: stat[open + 1..close].to_string(),
        state,
        ppid: Pid::from_raw(ppid),
    })
}

/// Every process of the namespace named `namespace`, zombies included.
pub fn members(namespace: &str) -> Vec<Process> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .map(Pid::from_raw)
        .filter(|pid| {
            std::fs::read_link(format!("/proc/{pid}/ns/pid"))
                .is_ok_and(|ns| ns.display().to_string() == namespace)
        })
        .filter_map(process)
        .collect()
}

/// Runs a shell script inside the namespace whose PID 1 is `init` (host PID).
pub fn run_inside(init: Pid, script: &str) {
    let status = Command::new("nsenter")
        .args(["--target", &init.to_string(), "--pid", "--mount", "--"])
        .args(["sh", "-c", script])
        .status()
        .expect("nsenter runs");
    assert!(
        status.success(),
        "the script failed inside the namespace: {status}"
    );
}

/// rodent (or `program`) as PID 1 of a fresh namespace; returns it and its host PID.
pub fn as_pid1(spawn: Spawn, program: &Path) -> (Rodent, Pid) {
    let command = spawn.command_via(UNSHARE, program);
    let rodent = spawn.spawn_command(command);
    let init = only_child(rodent.pid());
    (rodent, init)
}

/// The supervisor's `supervising` line, once it has written it.
pub fn supervising(rodent: &Rodent) -> Value {
    rodent.wait_log(|l| l["message"] == "supervising" && l["target"] == "rodent::supervisor")
}

/// `rodent_zombies_reaped_total`, as the service's `/metrics` shows it.
pub async fn zombies_reaped_metric(rodent: &Rodent) -> u64 {
    rodent.metrics().await.expect("rodent_zombies_reaped_total")
}

/// Every process of the namespace whose PID 1 is `init` (host PID), zombies included, as the
/// namespace's own `/proc` lists them: `pid` and `ppid` are the namespace's numbers (its PID 1
/// is 1), not the host's that [`Process::has_open`] needs. Reaches that `/proc` through
/// `init`'s root, so it reads only the namespace's processes, not the whole host's: about a
/// millisecond for a few dozen, cheap enough to sample hundreds of times a second. Empty once
/// the namespace is gone.
pub fn seen_from_inside(init: Pid) -> Vec<Process> {
    let proc = format!("/proc/{init}/root/proc");
    let Ok(entries) = std::fs::read_dir(&proc) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| {
            // Gone between the listing and the read: it is no one's zombie any more.
            let stat = std::fs::read_to_string(format!("{proc}/{pid}/stat")).ok()?;
            parse_stat(Pid::from_raw(pid), &stat)
        })
        .collect()
}
