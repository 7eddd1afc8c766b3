//! The image where hardened platforms run it, with no mount and no extra setting: a read-only
//! root filesystem, any UID in group 0 (OpenShift's restricted policy), a Kubernetes pod with
//! every capability dropped. The image has no PID file by default; `rodent status`, `reload`
//! and `stop` inside the container find rodent as PID 1 instead. A PID file configured
//! explicitly works on a tmpfs, and where it cannot be written it stays a one-line error.

use super::*;

/// The JSON log lines of a container at `level`.
fn lines_at(logs: &str, level: &str) -> Vec<serde_json::Value> {
    logs.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|l| l["level"] == level)
        .collect()
}

/// Runs the image with `options`, checks it serves, stops it and checks it exited 0 in time
/// with nothing logged as an error.
async fn serves_and_stops(options: &[&str]) {
    let drain = format!("RODENT_DRAIN_DELAY={}ms", DRAIN_DELAY.as_millis());
    let mut all = vec!["--env", &drain];
    all.extend(options);
    let container = Container::run(&all, &[]).await;
    let url = container.ready().await;
    assert_eq!(get_status(&format!("{url}/")).await, Some(200));
    assert_eq!(get_status(&format!("{url}/healthz")).await, Some(200));

    let started = Instant::now();
    docker_ok(&["stop", &container.name]).await;
    let took = started.elapsed();
    let logs = container.logs().await;
    assert!(
        took < DOCKER_KILL_AFTER / 2,
        "docker stop took {took:?} with {options:?}"
    );
    assert_eq!(
        container.inspect("{{.State.ExitCode}}").await,
        "0",
        "{options:?}; logs:\n{logs}"
    );
    let errors = lines_at(&logs, "ERROR");
    assert!(errors.is_empty(), "{options:?} logged errors: {errors:?}");
}

#[tokio::test]
async fn a_read_only_root_filesystem_with_no_volume_starts_serves_and_stops() {
    require!(engine());
    serves_and_stops(&["--read-only"]).await;
}

#[tokio::test]
async fn any_uid_in_group_0_starts_serves_and_stops() {
    require!(engine());
    // A small UID, and one from the range OpenShift hands out per namespace.
    for user in ["1234:0", "1000680000:0"] {
        serves_and_stops(&["--user", user]).await;
    }
}

#[tokio::test]
async fn a_restricted_pod_with_no_volume_starts_serves_and_stops() {
    require!(engine());
    // What Kubernetes' restricted Pod Security Standard and OpenShift's restricted-v2 give a
    // container: readOnlyRootFilesystem, an arbitrary non-root UID in group 0, no capability,
    // no privilege escalation.
    serves_and_stops(&[
        "--read-only",
        "--user",
        "1000680000:0",
        "--cap-drop",
        "ALL",
        "--security-opt",
        "no-new-privileges:true",
    ])
    .await;
}

#[tokio::test]
async fn status_reload_and_stop_inside_the_container_find_rodent_as_pid_1() {
    require!(engine());
    let drain = format!("RODENT_DRAIN_DELAY={}ms", DRAIN_DELAY.as_millis());
    let container = Container::run(&["--read-only", "--env", &drain], &[]).await;
    container.ready().await;

    let status = docker(&["exec", &container.name, "/rodent", "status"]).await;
    let said = String::from_utf8_lossy(&status.stdout).into_owned();
    assert_eq!(
        status.status.code(),
        Some(0),
        "rodent status: {said}{}",
        String::from_utf8_lossy(&status.stderr)
    );
    assert!(said.contains("PID 1"), "rodent status said {said:?}");

    let reload = docker(&["exec", &container.name, "/rodent", "reload"]).await;
    assert_eq!(
        reload.status.code(),
        Some(0),
        "rodent reload: {}",
        String::from_utf8_lossy(&reload.stderr)
    );
    let reloaded = holds_within(Duration::from_secs(5), async || {
        container.logs().await.contains("configuration reloaded")
    })
    .await;
    assert!(
        reloaded,
        "no reload in the logs:\n{}",
        container.logs().await
    );

    let started = Instant::now();
    let stop = docker(&["exec", &container.name, "/rodent", "stop"]).await;
    assert_eq!(
        stop.status.code(),
        Some(0),
        "rodent stop: {}{}",
        String::from_utf8_lossy(&stop.stdout),
        String::from_utf8_lossy(&stop.stderr)
    );
    let code = container.wait(DOCKER_KILL_AFTER).await;
    let logs = container.logs().await;
    assert_eq!(code, 0, "logs:\n{logs}");
    assert!(
        started.elapsed() >= DRAIN_DELAY,
        "the container stopped before draining"
    );
    assert!(logs.contains("\"draining\""), "logs:\n{logs}");
}

#[tokio::test]
async fn a_configured_pid_file_that_cannot_be_written_is_a_one_line_error() {
    require!(engine());
    let pid_file = "RODENT_PID_FILE=/run/rodent/rodent.pid";
    for (options, cause) in [
        (vec!["--read-only"], "Read-only file system"),
        // Not the owner of /run/rodent, as OpenShift runs it.
        (vec!["--user", "1000680000:0"], "Permission denied"),
    ] {
        let mut all = vec!["--env", pid_file];
        all.extend(&options);
        let container = Container::run(&all, &[]).await;
        let code = container.wait(Duration::from_secs(20)).await;
        let logs = container.logs().await;
        assert_eq!(code, 1, "{options:?}; logs:\n{logs}");
        let errors = lines_at(&logs, "ERROR");
        assert_eq!(
            errors.len(),
            1,
            "{options:?}: one error line expected:\n{logs}"
        );
        let message = errors[0]["message"].as_str().unwrap_or_default();
        let expected = format!("cannot open the PID file /run/rodent/rodent.pid: {cause}");
        assert!(
            message.starts_with(&expected),
            "{options:?}: {message:?} is not {expected:?}"
        );
    }
}

#[tokio::test]
async fn a_configured_pid_file_on_a_tmpfs_works_for_any_uid() {
    require!(engine());
    let container = Container::run(
        &[
            "--read-only",
            "--user",
            "1000680000:0",
            "--tmpfs",
            "/run/rodent:uid=1000680000,gid=0,mode=0700",
            "--env",
            "RODENT_PID_FILE=/run/rodent/rodent.pid",
        ],
        &[],
    )
    .await;
    container.ready().await;
    let status = docker(&["exec", &container.name, "/rodent", "status"]).await;
    let said = String::from_utf8_lossy(&status.stdout).into_owned();
    assert_eq!(
        status.status.code(),
        Some(0),
        "{said}{}",
        String::from_utf8_lossy(&status.stderr)
    );
    assert!(said.contains("PID 1"), "rodent status said {said:?}");
    docker_ok(&["stop", &container.name]).await;
    assert_eq!(container.inspect("{{.State.ExitCode}}").await, "0");
}
