//! One instance per PID file, and the commands that find it there: `status`, `stop`, `reload`.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal::SIGKILL;

use kit::{PATIENCE, Rodent, Spawn, TempDir, client, code_of, rodent, wait_in_flight};

fn with_pid_file(dir: &TempDir) -> Spawn {
    rodent().env("RODENT_PID_FILE", dir.join("rodent.pid").to_str().unwrap())
}

/// Runs `rodent <args>` with the same environment as `spawn`; returns (code, stdout, stderr).
fn command(spawn: &Spawn, args: &[&str]) -> (i32, String, String) {
    let mut command = spawn.command();
    command.args(args);
    let output = command.output().expect("rodent runs");
    (
        code_of(&output),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn written_pid(dir: &TempDir) -> String {
    std::fs::read_to_string(dir.join("rodent.pid"))
        .expect("the PID file exists")
        .trim()
        .to_string()
}

#[test]
fn of_twenty_racing_starts_exactly_one_serves_and_the_rest_name_it() {
    let dir = TempDir::new("race");
    let mut racers: Vec<Rodent> = (0..20)
        .map(|_| with_pid_file(&dir).no_wait().spawn())
        .collect();

    let mut winners = Vec::new();
    let mut losers = Vec::new();
    let deadline = Instant::now() + PATIENCE;
    for racer in &mut racers {
        loop {
            if let Some(status) = racer.try_wait_exit(Duration::from_millis(5)) {
                losers.push((status.code(), &*racer));
                break;
            }
            if racer.json_lines().iter().any(|l| l["message"] == "ready") {
                winners.push(racer.pid());
                break;
            }
            assert!(
                Instant::now() < deadline,
                "a racer neither served nor exited"
            );
        }
    }
    assert_eq!(winners.len(), 1, "exactly one serves: {winners:?}");
    let winner = winners[0];
    assert_eq!(written_pid(&dir), winner.to_string());
    let wanted = format!("another instance is already running (PID: {winner})");
    for (code, loser) in losers {
        assert_eq!(
            code,
            Some(75),
            "{} exits with the documented code",
            loser.pid()
        );
        let refused = loser.wait_log(|l| l["level"] == "ERROR");
        assert_eq!(refused["message"], wanted.as_str());
    }
}

#[test]
fn a_file_left_by_a_killed_instance_is_taken_over() {
    let dir = TempDir::new("stale");
    let spawn = with_pid_file(&dir);
    let mut first = with_pid_file(&dir).spawn();
    first.signal(SIGKILL);
    first.wait_exit(PATIENCE);
    assert_eq!(written_pid(&dir), first.pid().to_string(), "left behind");

    let (code, out, _) = command(&spawn, &["status"]);
    assert_eq!(code, 1, "dead, but its PID file is there: {out}");
    assert!(out.contains(&format!("(PID {})", first.pid())), "{out}");

    let second = with_pid_file(&dir).spawn();
    assert_eq!(written_pid(&dir), second.pid().to_string());
    let (code, out, _) = command(&spawn, &["status"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        out.trim(),
        format!("rodent is running (PID {})", second.pid())
    );
}

#[test]
fn a_live_but_unrelated_pid_in_the_file_is_not_mistaken_for_rodent() {
    let dir = TempDir::new("reused");
    let spawn = with_pid_file(&dir);
    let mut stranger = Command::new("sleep")
        .arg("60")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    std::fs::write(dir.join("rodent.pid"), format!("{}\n", stranger.id())).unwrap();

    let (code, out, _) = command(&spawn, &["status"]);
    assert_eq!(code, 1, "{out}");
    let (code, out, _) = command(&spawn, &["stop"]);
    assert_eq!(code, 3, "{out}");
    assert!(
        stranger.try_wait().unwrap().is_none(),
        "stop signalled a process that is not rodent"
    );
    stranger.kill().unwrap();
    stranger.wait().unwrap();

    let rodent = spawn.spawn();
    assert_eq!(written_pid(&dir), rodent.pid().to_string(), "taken over");
}

#[test]
fn a_symlink_in_place_of_the_pid_file_is_refused() {
    let dir = TempDir::new("symlink");
    let precious = dir.join("precious");
    std::fs::write(&precious, "do not truncate\n").unwrap();
    std::os::unix::fs::symlink(&precious, dir.join("rodent.pid")).unwrap();

    let mut rodent = with_pid_file(&dir).no_wait().spawn();
    assert_eq!(rodent.exit_code(PATIENCE), 1);
    let refused = rodent.wait_log(|l| l["level"] == "ERROR");
    let message = refused["message"].as_str().unwrap();
    assert!(message.contains("symbolic link"), "{message}");
    assert_eq!(
        std::fs::read_to_string(&precious).unwrap(),
        "do not truncate\n"
    );
}

#[test]
fn a_directory_that_cannot_hold_the_file_is_one_error_line_and_exit_1() {
    let dir = TempDir::new("nodir");
    let path = dir.join("missing").join("rodent.pid");
    let mut rodent = rodent()
        .env("RODENT_PID_FILE", path.to_str().unwrap())
        .no_wait()
        .spawn();
    assert_eq!(rodent.exit_code(PATIENCE), 1);
    let errors: Vec<_> = rodent
        .json_lines()
        .into_iter()
        .filter(|l| l["level"] == "ERROR")
        .collect();
    assert_eq!(errors.len(), 1, "{errors:?}");
    let message = errors[0]["message"].as_str().unwrap();
    assert!(
        message.contains(path.to_str().unwrap()) && message.contains("No such file"),
        "{message}"
    );
    assert!(
        !rodent
            .json_lines()
            .iter()
            .any(|l| l["message"] == "listening"),
        "nothing was bound"
    );
}

#[test]
fn status_reload_and_stop_act_on_the_lock_holder() {
    let dir = TempDir::new("commands");
    let spawn = with_pid_file(&dir);
    let mut rodent = with_pid_file(&dir).spawn();
    let pid = rodent.pid();

    let (code, out, _) = command(&spawn, &["status"]);
    assert_eq!(
        (code, out.trim()),
        (0, format!("rodent is running (PID {pid})").as_str())
    );

    let (code, out, _) = command(&spawn, &["reload"]);
    assert_eq!(code, 0, "{out}");
    rodent.wait_log(|l| l["message"] == "configuration reloaded");

    let (code, out, _) = command(&spawn, &["stop"]);
    assert_eq!(
        (code, out.trim()),
        (0, format!("rodent stopped (PID {pid})").as_str())
    );
    // stop returned only once the lock was released: the process is exiting or gone.
    assert_eq!(rodent.exit_code(PATIENCE), 0);
    assert!(!dir.join("rodent.pid").exists(), "removed on a clean exit");

    for args in [&["status"][..], &["stop"], &["reload"]] {
        let (code, out, _) = command(&spawn, args);
        assert_eq!(code, 3, "{args:?}: {out}");
        assert_eq!(out.trim(), "rodent is not running");
    }
}

#[tokio::test]
async fn stop_reports_an_instance_still_running_after_its_timeout() {
    let dir = TempDir::new("slowstop");
    let spawn = with_pid_file(&dir);
    let mut rodent = with_pid_file(&dir).spawn();
    let slow = tokio::spawn(client().get(rodent.url("/delay/2000")).send());
    wait_in_flight(&rodent, "/delay/{ms}", 1).await;

    let (code, _, err) = command(&spawn, &["stop", "--timeout", "300ms"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!(
            "(PID {}) is still running after 300ms",
            rodent.pid()
        )),
        "{err}"
    );
    // The drain goes on: the request is answered, then the instance stops by itself.
    assert_eq!(slow.await.unwrap().unwrap().status(), 200);
    assert_eq!(rodent.exit_code(PATIENCE), 0);
}
