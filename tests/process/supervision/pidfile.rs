//! One instance per PID file, and the commands that find it there: `status`, `stop`, `reload`.

use std::process::{Command, Stdio};
use std::time::Duration;

use nix::sys::signal::Signal::SIGKILL;

use kit::{PATIENCE, PidFile, Rodent, TempDir, client, eventually, rodent, wait_in_flight};

#[test]
fn of_twenty_racing_starts_exactly_one_serves_and_the_rest_name_it() {
    let pid_file = PidFile::new("race");
    let mut racers: Vec<Rodent> = (0..20)
        .map(|_| pid_file.spawn().no_wait().spawn())
        .collect();

    // Each racer either serves or exits: (the winners' PIDs, the losers' exit codes and
    // indices).
    let (winners, losers) = eventually(PATIENCE, || {
        let (mut winners, mut losers) = (Vec::new(), Vec::new());
        for (i, racer) in racers.iter_mut().enumerate() {
            if let Some(status) = racer.try_wait_exit(Duration::ZERO) {
                losers.push((status.code(), i));
            } else if racer.json_lines().iter().any(|l| l["message"] == "ready") {
                winners.push(racer.pid());
            } else {
                return Err(format!("racer {} neither served nor exited", racer.pid()));
            }
        }
        Ok((winners, losers))
    });
    assert_eq!(winners.len(), 1, "exactly one serves: {winners:?}");
    let winner = winners[0];
    assert_eq!(pid_file.pid(), winner);
    let wanted = format!("another instance is already running (PID: {winner})");
    for (code, loser) in losers {
        let loser = &racers[loser];
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
    let pid_file = PidFile::new("stale");
    let spawn = pid_file.spawn();
    let mut first = pid_file.spawn().spawn();
    first.signal(SIGKILL);
    first.wait_exit(PATIENCE);
    assert_eq!(pid_file.pid(), first.pid(), "left behind");

    let (code, out, _) = spawn.run(&["status"]);
    assert_eq!(code, 1, "dead, but its PID file is there: {out}");
    assert!(out.contains(&format!("(PID {})", first.pid())), "{out}");

    let second = pid_file.spawn().spawn();
    assert_eq!(pid_file.pid(), second.pid());
    let (code, out, _) = spawn.run(&["status"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        out.trim(),
        format!("rodent is running (PID {})", second.pid())
    );
}

#[test]
fn a_live_but_unrelated_pid_in_the_file_is_not_mistaken_for_rodent() {
    let pid_file = PidFile::new("reused");
    let spawn = pid_file.spawn();
    let mut stranger = Command::new("sleep")
        .arg("60")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    std::fs::write(pid_file.path(), format!("{}\n", stranger.id())).unwrap();

    let (code, out, _) = spawn.run(&["status"]);
    assert_eq!(code, 1, "{out}");
    let (code, out, _) = spawn.run(&["stop"]);
    assert_eq!(code, 3, "{out}");
    assert!(
        stranger.try_wait().unwrap().is_none(),
        "stop signalled a process that is not rodent"
    );
    stranger.kill().unwrap();
    stranger.wait().unwrap();

    let rodent = spawn.spawn();
    assert_eq!(pid_file.pid(), rodent.pid(), "taken over");
}

#[test]
fn a_symlink_in_place_of_the_pid_file_is_refused() {
    let pid_file = PidFile::new("symlink");
    let precious = pid_file.dir().join("precious");
    std::fs::write(&precious, "do not truncate\n").unwrap();
    std::os::unix::fs::symlink(&precious, pid_file.path()).unwrap();

    let mut rodent = pid_file.spawn().no_wait().spawn();
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
    let pid_file = PidFile::new("commands");
    let spawn = pid_file.spawn();
    let mut rodent = pid_file.spawn().spawn();
    let pid = rodent.pid();

    let (code, out, _) = spawn.run(&["status"]);
    assert_eq!(
        (code, out.trim()),
        (0, format!("rodent is running (PID {pid})").as_str())
    );

    let (code, out, _) = spawn.run(&["reload"]);
    assert_eq!(code, 0, "{out}");
    rodent.wait_log(|l| l["message"] == "configuration reloaded");

    let (code, out, _) = spawn.run(&["stop"]);
    assert_eq!(
        (code, out.trim()),
        (0, format!("rodent stopped (PID {pid})").as_str())
    );
    // stop returned only once the lock was released: the process is exiting or gone.
    assert_eq!(rodent.exit_code(PATIENCE), 0);
    assert!(!pid_file.path().exists(), "removed on a clean exit");

    for args in [&["status"][..], &["stop"], &["reload"]] {
        let (code, out, _) = spawn.run(args);
        assert_eq!(code, 3, "{args:?}: {out}");
        assert_eq!(out.trim(), "rodent is not running");
    }
}

#[tokio::test]
async fn stop_reports_an_instance_still_running_after_its_timeout() {
    let pid_file = PidFile::new("slowstop");
    let spawn = pid_file.spawn();
    let mut rodent = pid_file.spawn().spawn();
    let slow = tokio::spawn(client().get(rodent.url("/delay/2000")).send());
    wait_in_flight(&rodent, "/delay/{ms}", 1).await;

    let (code, _, err) = spawn.run(&["stop", "--timeout", "300ms"]);
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
