//! `RODENT_ENV_FILE` is watched: a change on disk is applied as SIGHUP applies it (validated,
//! all or nothing, logged, counted in `rodent_reloads_total`), however the file was changed:
//! written in place, an editor's write-then-rename, the kubelet's `..data` symlink swap, deleted
//! and written again, its directory removed, a symlink loop. No signal is sent in these tests.
//!
//! What a change does is seen where a user sees it: `RODENT_BODY_LIMIT` decides whether
//! `POST /echo` answers 200 or 413.

use std::os::unix::fs::symlink;
use std::path::Path;
use std::time::Duration;

use kit::{KubeletVolume, PATIENCE, Rodent, TempDir, client, eventually_async, rodent};
use nix::sys::signal::Signal::SIGTERM;

/// Bytes posted to `/echo`: refused (413) under a limit of 1000, accepted under 4000.
const BODY: usize = 2000;

fn env(limit: usize) -> String {
    format!("RODENT_DRAIN_DELAY=50ms\nRODENT_BODY_LIMIT={limit}\n")
}

fn serving(file: &Path) -> Rodent {
    rodent()
        .env("RODENT_ENV_FILE", file.to_str().unwrap())
        .spawn()
}

/// The status `POST /echo` answers a body of [`BODY`] bytes.
async fn echo(rodent: &Rodent) -> u16 {
    client()
        .post(rodent.url("/echo"))
        .body(vec![b'x'; BODY])
        .send()
        .await
        .expect("/echo answers")
        .status()
        .as_u16()
}

/// Waits until `/echo` answers `status`, and the reload counts are `applied` and `rejected`.
async fn applied(rodent: &Rodent, status: u16, applied: u64, rejected: u64) {
    eventually_async(PATIENCE, || async {
        let metrics = rodent.metrics().await;
        let counts = (
            echo(rodent).await,
            metrics.expect::<u64>("rodent_reloads_total{outcome=\"applied\"}"),
            metrics.expect::<u64>("rodent_reloads_total{outcome=\"rejected\"}"),
        );
        match counts == (status, applied, rejected) {
            true => Ok(()),
            false => Err(format!(
                "(echo, applied, rejected) = {counts:?}, waiting for {:?}",
                (status, applied, rejected)
            )),
        }
    })
    .await;
}

/// Writes `contents` into a new file beside `file`, then renames it over `file`: an editor's
/// save, and `mv`.
fn replace(file: &Path, contents: &str) {
    let new = file.with_extension("new");
    std::fs::write(&new, contents).unwrap();
    std::fs::rename(&new, file).unwrap();
}

#[tokio::test]
async fn a_file_written_in_place_is_applied_without_a_signal() {
    let dir = TempDir::new("watch-in-place");
    let file = dir.join("rodent.env");
    std::fs::write(&file, env(1000)).unwrap();
    let mut rodent = serving(&file);
    assert_eq!(echo(&rodent).await, 413);

    std::fs::write(&file, env(4000)).unwrap();
    let reloaded = rodent.wait_log(|l| l["message"] == "configuration reloaded");
    assert_eq!(reloaded["changed"], "RODENT_BODY_LIMIT");
    rodent.wait_log(|l| l["message"] == "reloading configuration: the env file changed");
    applied(&rodent, 200, 1, 0).await;

    // A change that sets nothing new (a comment) is not a reload.
    std::fs::write(&file, format!("# the same\n{}", env(4000))).unwrap();
    rodent.wait_log(|l| l["message"] == "the env file changed on disk, but not what it sets");
    applied(&rodent, 200, 1, 0).await;
    std::fs::write(&file, env(1000)).unwrap();
    applied(&rodent, 413, 2, 0).await;
    rodent.signal(SIGTERM);
    assert_eq!(rodent.exit_code(PATIENCE), 0);
}

#[tokio::test]
async fn an_editors_rename_over_the_file_is_applied() {
    let dir = TempDir::new("watch-rename");
    let file = dir.join("rodent.env");
    std::fs::write(&file, env(1000)).unwrap();
    let rodent = serving(&file);

    replace(&file, &env(4000));
    applied(&rodent, 200, 1, 0).await;
    // The old file moved aside first, then the new one written: what some editors do.
    std::fs::rename(&file, dir.join("rodent.env~")).unwrap();
    std::fs::write(&file, env(1000)).unwrap();
    applied(&rodent, 413, 2, 0).await;
    // And again, to show the watch followed the file to its new inode.
    replace(&file, &env(4000));
    applied(&rodent, 200, 3, 0).await;
}

#[tokio::test]
async fn the_kubelets_symlink_swap_is_applied() {
    let dir = TempDir::new("watch-kubelet");
    let file = |limit| [("rodent.env", env(limit))];
    let mut volume = KubeletVolume::new(dir.path(), &file(1000));
    let rodent = serving(&volume.path("rodent.env"));
    assert_eq!(echo(&rodent).await, 413);

    volume.update(&file(4000));
    applied(&rodent, 200, 1, 0).await;
    // The watch moved to the new directory: a second update is seen as well.
    volume.update(&file(1000));
    applied(&rodent, 413, 2, 0).await;
}

#[tokio::test]
async fn a_file_deleted_and_written_again_is_applied() {
    let dir = TempDir::new("watch-deleted");
    let file = dir.join("rodent.env");
    std::fs::write(&file, env(1000)).unwrap();
    let rodent = serving(&file);

    std::fs::remove_file(&file).unwrap();
    let missing = rodent.wait_log(|l| {
        l["message"] == "invalid configuration" && l["variable"] == "RODENT_ENV_FILE"
    });
    assert!(
        missing["error"].as_str().unwrap().contains("No such file"),
        "{missing}"
    );
    applied(&rodent, 413, 0, 1).await;

    std::fs::write(&file, env(4000)).unwrap();
    applied(&rodent, 200, 1, 1).await;
}

#[tokio::test]
async fn a_burst_of_changes_is_applied_once() {
    let dir = TempDir::new("watch-burst");
    let file = dir.join("rodent.env");
    std::fs::write(&file, env(1000)).unwrap();
    let rodent = serving(&file);

    // Twenty writes, 10 ms apart: well inside the quiet time a burst is waited out for
    // (250 ms), so the file is read once, after the last.
    for limit in 1001..=1020 {
        std::fs::write(&file, env(limit)).unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    replace(&file, &env(4000));
    applied(&rodent, 200, 1, 0).await;
    // Nothing more comes of the burst later.
    tokio::time::sleep(Duration::from_secs(3)).await;
    applied(&rodent, 200, 1, 0).await;
    let reloads = rodent
        .json_lines()
        .iter()
        .filter(|l| l["message"] == "configuration reloaded")
        .count();
    assert_eq!(reloads, 1);
}

#[tokio::test]
async fn an_invalid_file_changes_nothing_and_names_each_bad_variable() {
    let dir = TempDir::new("watch-invalid");
    let file = dir.join("rodent.env");
    std::fs::write(&file, env(1000)).unwrap();
    let mut rodent = serving(&file);

    std::fs::write(
        &file,
        "RODENT_BODY_LIMIT=lots\nRODENT_REQUEST_TIMEOUT=soon\nRODENT_DRAIN_DELAY=50ms\n",
    )
    .unwrap();
    let rejected = rodent
        .wait_log(|l| l["message"] == "reload rejected; the running configuration is unchanged");
    assert_eq!(rejected["problems"], 2);
    let named: Vec<_> = rodent
        .json_lines()
        .into_iter()
        .filter(|l| l["message"] == "invalid configuration")
        .map(|l| l["variable"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(named, ["RODENT_REQUEST_TIMEOUT", "RODENT_BODY_LIMIT"]);
    applied(&rodent, 413, 0, 1).await;

    std::fs::write(&file, env(4000)).unwrap();
    applied(&rodent, 200, 1, 1).await;
    rodent.signal(SIGTERM);
    assert_eq!(rodent.exit_code(PATIENCE), 0);
}

#[tokio::test]
async fn a_vanished_directory_and_a_symlink_loop_are_survived() {
    let dir = TempDir::new("watch-vanished");
    let config = dir.join("config");
    std::fs::create_dir(&config).unwrap();
    let file = config.join("rodent.env");
    std::fs::write(&file, env(1000)).unwrap();
    let mut rodent = serving(&file);

    std::fs::remove_dir_all(&config).unwrap();
    applied(&rodent, 413, 0, 1).await;
    std::fs::create_dir(&config).unwrap();
    std::fs::write(&file, env(4000)).unwrap();
    applied(&rodent, 200, 1, 1).await;

    // The file turns into a link to itself (renamed over it, so at once), then back into a
    // file.
    let link = config.join("rodent.env.link");
    symlink(&file, &link).unwrap();
    std::fs::rename(&link, &file).unwrap();
    let looped = rodent.wait_log(|l| {
        l["variable"] == "RODENT_ENV_FILE"
            && l["error"]
                .as_str()
                .is_some_and(|e| e.contains("symbolic links"))
    });
    assert!(rodent.is_running(), "{looped}");
    replace(&file, &env(1000));
    applied(&rodent, 413, 2, 2).await;
    rodent.signal(SIGTERM);
    assert_eq!(rodent.exit_code(PATIENCE), 0);
}

/// The watch is set up at start, or the start fails (exit 1) naming the file: here its
/// directory cannot be read (only searched), so it cannot be watched, while the file itself can
/// be read.
#[test]
fn a_watch_that_cannot_be_set_up_fails_the_start() {
    let root = nix::unistd::geteuid().is_root();
    if root && !kit::require_tool("setpriv", "apt-get install util-linux") {
        return;
    }
    let dir = TempDir::new("watch-unreadable");
    let config = dir.join("config");
    std::fs::create_dir(&config).unwrap();
    let file = config.join("rodent.env");
    std::fs::write(&file, env(1000)).unwrap();
    use std::os::unix::fs::PermissionsExt;
    let mode = |path: &Path, mode| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap()
    };
    mode(dir.path(), 0o711);
    mode(&config, 0o311);
    mode(&file, 0o644);
    let spawn = rodent()
        .env("RODENT_ENV_FILE", file.to_str().unwrap())
        .no_wait();
    // Root reads every directory: the service runs as nobody, as in a container.
    let command = match root {
        true => spawn.command_via(
            &[
                "setpriv",
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
            ],
            kit::binary(),
        ),
        false => spawn.command(),
    };
    let mut refused = spawn.spawn_command(command);
    assert_eq!(refused.exit_code(PATIENCE), 1);
    let error = refused.wait_log(|l| l["level"] == "ERROR");
    assert_eq!(error["file"], file.to_str().unwrap());
    let message = error["message"].as_str().unwrap();
    assert!(
        message.starts_with(&format!("cannot watch {} for changes", file.display())),
        "{message}"
    );
    mode(&config, 0o755);
}
