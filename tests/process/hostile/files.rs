//! Files that are not what a file should be, where the env file should be: a FIFO, `/dev/zero`,
//! a directory, a huge file, and a file whose read blocks (held under a lease by another
//! process, as a hung mount would hold it). Each makes the reload fail, named, while the process
//! goes on serving; SIGTERM is handled at once whatever a reload is doing; at start each is a
//! refused configuration (exit 78).

use std::io::{BufRead, BufReader};
use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kit::{PATIENCE, Rodent, TempDir, rodent};
use nix::sys::signal::Signal::{SIGHUP, SIGTERM};

/// How long SIGTERM may take to end an idle instance with a 50 ms drain delay: generous, and
/// far below the 5 s a read may block for.
const PROMPT: Duration = Duration::from_secs(2);

fn serving(file: &Path) -> Rodent {
    rodent()
        .env("RODENT_ENV_FILE", file.to_str().unwrap())
        .env("RODENT_SHUTDOWN_GRACE", "5s")
        .env("RODENT_REQUEST_TIMEOUT", "2s")
        .spawn()
}

/// Makes `file` (the env file, a regular file now) into what `kind` names.
fn turn_into(file: &Path, kind: &str) {
    std::fs::remove_file(file).unwrap();
    match kind {
        "FIFO" => nix::unistd::mkfifo(file, nix::sys::stat::Mode::S_IRWXU).unwrap(),
        "character device" => symlink("/dev/zero", file).unwrap(),
        "directory" => std::fs::create_dir(file).unwrap(),
        "huge file" => std::fs::File::create(file)
            .unwrap()
            .set_len(64 * 1024 * 1024)
            .unwrap(),
        other => unreachable!("{other}"),
    }
}

fn reason(kind: &str) -> &'static str {
    match kind {
        "FIFO" => "it is a FIFO, not a regular file",
        "character device" => "it is a character device, not a regular file",
        "directory" => "it is a directory, not a regular file",
        _ => "it is larger than 1048576 bytes",
    }
}

const KINDS: [&str; 4] = ["FIFO", "character device", "directory", "huge file"];

#[test]
fn an_env_file_that_is_not_a_file_fails_the_reload_and_sigterm_stays_prompt() {
    for kind in KINDS {
        let dir = TempDir::new("not-a-file");
        let file = dir.join("rodent.env");
        std::fs::write(&file, "RODENT_DRAIN_DELAY=50ms\n").unwrap();
        let mut rodent = serving(&file);

        turn_into(&file, kind);
        rodent.signal(SIGHUP);
        let error = rodent.wait_log(|l| {
            l["message"] == "invalid configuration" && l["variable"] == "RODENT_ENV_FILE"
        });
        let expected = format!(
            "RODENT_ENV_FILE={:?} cannot be used: {}",
            file.display().to_string(),
            reason(kind)
        );
        assert_eq!(error["error"], expected.as_str(), "{kind}");
        rodent.wait_log(|l| {
            l["message"] == "reload rejected; the running configuration is unchanged"
        });
        assert!(rodent.is_running(), "{kind}");

        // The issue this guards against: a reload stuck on the file, and SIGTERM never handled.
        rodent.signal(SIGHUP);
        let asked = Instant::now();
        rodent.signal(SIGTERM);
        assert_eq!(rodent.exit_code(PATIENCE), 0, "{kind}");
        assert!(asked.elapsed() < PROMPT, "{kind}: {:?}", asked.elapsed());
    }
}

#[test]
fn an_env_file_that_is_not_a_file_is_refused_at_start() {
    for kind in KINDS {
        let dir = TempDir::new("not-a-file-at-start");
        let file = dir.join("rodent.env");
        std::fs::write(&file, "").unwrap();
        turn_into(&file, kind);
        let started = Instant::now();
        let (code, _, errors) = rodent()
            .env("RODENT_ENV_FILE", file.to_str().unwrap())
            .run(&["config", "check"]);
        assert_eq!(code, 78, "{kind}: {errors}");
        assert!(errors.contains(reason(kind)), "{kind}: {errors}");
        let mut refused = rodent()
            .env("RODENT_ENV_FILE", file.to_str().unwrap())
            .no_wait()
            .spawn();
        assert_eq!(refused.exit_code(PATIENCE), 78, "{kind}");
        assert!(
            started.elapsed() < PROMPT * 2,
            "{kind}: {:?}",
            started.elapsed()
        );
    }
}

/// Another process holds a write lease on `file`: whoever opens it waits until the holder lets
/// go, or the kernel breaks the lease (`/proc/sys/fs/lease-break-time`, 45 s by default). A
/// read that blocks in the kernel, as one on a hung mount does. Ended when dropped.
struct Lease(Child);

impl Lease {
    fn hold(file: &Path) -> Option<Self> {
        if !kit::require_tool("python3", "apt-get install python3") {
            return None;
        }
        let holder = r#"
import fcntl, os, signal, sys, time
signal.signal(signal.SIGIO, signal.SIG_IGN)
fd = os.open(sys.argv[1], os.O_RDONLY)
fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_WRLCK)
print("held", flush=True)
time.sleep(120)
"#;
        let mut child = Command::new("python3")
            .args(["-c", holder, file.to_str().unwrap()])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "held", "the lease is held");
        Some(Self(child))
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn a_read_that_blocks_holds_neither_the_service_nor_sigterm() {
    let dir = TempDir::new("blocked-read");
    let file = dir.join("rodent.env");
    std::fs::write(&file, "RODENT_DRAIN_DELAY=50ms\n").unwrap();
    let mut rodent = serving(&file);
    let Some(lease) = Lease::hold(&file) else {
        return;
    };

    // The read blocks: the service goes on serving, and the reload fails at the bound.
    let asked = Instant::now();
    rodent.signal(SIGHUP);
    assert_eq!(rodent.get("/healthz").await.status(), 200);
    assert_eq!(rodent.get("/readyz").await.status(), 200);
    let error = rodent.wait_log(|l| l["variable"] == "RODENT_ENV_FILE");
    assert_eq!(
        error["error"],
        format!(
            "RODENT_ENV_FILE={:?} cannot be used: it could not be read within 5s (a hung mount?)",
            file.display().to_string()
        )
    );
    let waited = asked.elapsed();
    assert!(
        waited >= Duration::from_secs(4) && waited < Duration::from_secs(15),
        "{waited:?}"
    );

    // Again, and SIGTERM while the read blocks: handled at once.
    rodent.signal(SIGHUP);
    kit::eventually(PATIENCE, || {
        let asked = rodent
            .json_lines()
            .iter()
            .filter(|l| l["message"] == "reloading configuration")
            .count();
        if asked == 2 { Ok(()) } else { Err(asked) }
    });
    let asked = Instant::now();
    rodent.signal(SIGTERM);
    assert_eq!(rodent.exit_code(PATIENCE), 0);
    assert!(asked.elapsed() < PROMPT, "{:?}", asked.elapsed());
    drop(lease);
}
