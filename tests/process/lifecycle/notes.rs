//! `examples/notes`, a service built on the library's public API alone (SQLite through sqlx,
//! its own `NOTES_*` settings, a purge worker, a WebSocket feed), run as the process it is:
//! its own name everywhere, its settings refused and reloaded like rodent's, and a stop in the
//! middle of its work that loses nothing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use futures_util::StreamExt;
use nix::sys::signal::Signal::{SIGHUP, SIGTERM};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use kit::{
    PATIENCE, Rodent, Spawn, TempDir, client, code_of, eventually, eventually_async, example,
    rodent,
};

const KEY: &str = "n0tes-k3y";

fn notes_binary() -> PathBuf {
    let binary = example("notes");
    assert!(
        binary.exists(),
        "{} is missing: `cargo test` builds the examples, but a run limited with `--test` does \
         not; build them first with `scripts/test --no-run` (or `cargo build --examples`)",
        binary.display()
    );
    binary
}

/// The notes service's environment: rodent's test defaults, and its files in `dir`.
fn notes(dir: &TempDir) -> Spawn {
    rodent()
        .env("NOTES_DATABASE", dir.join("notes.db").to_str().unwrap())
        .env("NOTES_ARCHIVE", dir.join("archive.jsonl").to_str().unwrap())
        .env("NOTES_API_KEY", KEY)
}

fn start(spawn: Spawn) -> Rodent {
    spawn.spawn_program(&notes_binary())
}

fn run(spawn: Spawn, args: &[&str]) -> (i32, String, String) {
    let output = spawn
        .command_via(&[], &notes_binary())
        .args(args)
        .output()
        .expect("notes runs");
    (
        code_of(&output),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

async fn create(service: &Rodent, body: &str) -> i64 {
    let response = client()
        .post(service.url("/notes"))
        .bearer_auth(KEY)
        .json(&json!({ "body": body }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201, "POST /notes");
    response.json::<Value>().await.unwrap()["id"]
        .as_i64()
        .unwrap()
}

async fn delete(service: &Rodent, id: i64) {
    let response = client()
        .delete(service.url(&format!("/notes/{id}")))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204, "DELETE /notes/{id}");
}

async fn listed(service: &Rodent) -> usize {
    let list: Vec<Value> = service.get("/notes").await.json().await.unwrap();
    list.len()
}

/// The archive's notes by id, and how many times each was archived.
fn archived(path: &Path) -> BTreeMap<i64, usize> {
    let mut ids = BTreeMap::new();
    for line in std::fs::read_to_string(path).unwrap_or_default().lines() {
        let note: Value = serde_json::from_str(line).expect("an archive line is a JSON note");
        *ids.entry(note["id"].as_i64().unwrap()).or_default() += 1;
    }
    ids
}

fn invalid(log: &[Value]) -> Vec<String> {
    log.iter()
        .filter(|l| l["message"] == "invalid configuration")
        .filter_map(|l| l["variable"].as_str().map(str::to_string))
        .collect()
}

#[tokio::test]
async fn notes_names_itself_everywhere_rodent_would() {
    let dir = TempDir::new("notes-name");
    let (code, stdout, _) = run(notes(&dir), &["--version"]);
    assert_eq!(code, 0);
    assert_eq!(stdout.trim(), "notes 1.0.0");

    // The default PID file is named after the service: /run/notes.pid for root,
    // $XDG_RUNTIME_DIR/notes.pid otherwise.
    let pid_file = if nix::unistd::geteuid().is_root() {
        PathBuf::from("/run/notes.pid")
    } else {
        dir.join("notes.pid")
    };
    let spawn = || {
        notes(&dir)
            .without_env("RODENT_PID_FILE")
            .env("XDG_RUNTIME_DIR", dir.path().to_str().unwrap())
    };
    let (_, stdout, _) = run(spawn(), &["config"]);
    let line = format!("RODENT_PID_FILE={}", pid_file.display());
    assert!(stdout.lines().any(|l| l == line), "{line} in {stdout}");

    let mut service = start(spawn());
    let written = std::fs::read_to_string(&pid_file).unwrap();
    assert_eq!(written.trim(), service.pid().to_string());
    let starting = service.wait_log(|l| l["message"] == "starting");
    assert_eq!(
        (&starting["name"], &starting["version"]),
        (&json!("notes"), &json!("1.0.0"))
    );

    // The database is open and migrated before the port is bound; its check is in /readyz.
    let ready: Value = service.get("/readyz?verbose").await.json().await.unwrap();
    assert_eq!(ready["checks"]["database"][0]["status"], "pass", "{ready}");

    create(&service, "milk").await;
    let metrics = service.metrics().await;
    assert_eq!(metrics.expect::<u64>("notes_created_total"), 1);
    let info = metrics
        .text()
        .lines()
        .find(|l| l.starts_with("rodent_build_info{"))
        .expect("the build info");
    assert!(info.contains(r#"name="notes""#), "{info}");
    assert!(info.contains(r#"version="1.0.0""#), "{info}");

    service.signal(SIGTERM);
    assert_eq!(service.exit_code(PATIENCE), 0);
    assert!(!pid_file.exists(), "the PID file is removed at the exit");
}

#[test]
fn bad_notes_settings_are_named_with_rodents_and_refused_with_78() {
    let dir = TempDir::new("notes-invalid");
    let bad = || {
        notes(&dir)
            .env("NOTES_PAGE_SIZE", "0")
            .env("NOTES_PURGE_EVERY", "soon")
            .env("RODENT_DRAIN_DELAY", "forever")
    };
    let mut service = start(bad().no_wait());
    assert_eq!(service.exit_code(PATIENCE), 78);
    service.wait_log(|l| l["message"] == "refusing to start with an invalid configuration");
    let log = service.json_lines();
    assert_eq!(
        invalid(&log),
        ["RODENT_DRAIN_DELAY", "NOTES_PAGE_SIZE", "NOTES_PURGE_EVERY"]
    );
    assert!(
        !log.iter().any(|l| l["message"] == "listening"),
        "nothing was bound"
    );
    assert!(
        !dir.join("notes.db").exists(),
        "the setup did not run: no database was made"
    );

    // `config check` checks both sets, says every problem, and exits 78 too.
    let (code, _, stderr) = run(bad(), &["config", "check"]);
    assert_eq!(code, 78, "{stderr}");
    for variable in ["RODENT_DRAIN_DELAY", "NOTES_PAGE_SIZE", "NOTES_PURGE_EVERY"] {
        assert!(stderr.contains(variable), "{variable} in {stderr}");
    }
    let (code, _, stderr) = run(notes(&dir), &["config", "check"]);
    assert_eq!(code, 0, "{stderr}");

    // `config` shows them all, the key masked.
    let (code, stdout, _) = run(notes(&dir).env("NOTES_PURGE_RATE", "7"), &["config"]);
    assert_eq!(code, 0);
    for line in [
        "NOTES_PURGE_RATE=7",
        "NOTES_PAGE_SIZE=100",
        "NOTES_API_KEY=***",
    ] {
        assert!(stdout.lines().any(|l| l == line), "{line} in {stdout}");
    }
    assert!(!stdout.contains(KEY), "the key is never shown: {stdout}");
}

#[tokio::test]
async fn a_sighup_applies_a_new_page_size_and_refuses_a_bad_one() {
    let dir = TempDir::new("notes-reload");
    let env_file = dir.join("notes.env");
    std::fs::write(&env_file, "NOTES_PAGE_SIZE=2\n").unwrap();
    let mut service = start(notes(&dir).env("RODENT_ENV_FILE", env_file.to_str().unwrap()));
    for body in ["one", "two", "three"] {
        create(&service, body).await;
    }
    assert_eq!(listed(&service).await, 2);

    std::fs::write(&env_file, "NOTES_PAGE_SIZE=3\n").unwrap();
    service.signal(SIGHUP);
    service.wait_log(|l| l["message"] == "configuration reloaded");
    assert_eq!(listed(&service).await, 3);

    // A bad value changes nothing, and is named.
    std::fs::write(&env_file, "NOTES_PAGE_SIZE=many\n").unwrap();
    service.signal(SIGHUP);
    let refused = service.wait_log(|l| {
        l["message"] == "invalid configuration" && l["variable"] == "NOTES_PAGE_SIZE"
    });
    assert_eq!(refused["value"], "many");
    assert_eq!(listed(&service).await, 3);

    service.signal(SIGTERM);
    assert_eq!(service.exit_code(PATIENCE), 0);
}

/// SIGTERM while the purge worker is part-way through a round and a WebSocket follows the
/// feed: the feed tells every change, then says goodbye with close 1001; the worker finishes
/// the note it is on; the exit is 0. Then a second run purges the rest: every deleted note
/// ends up in the archive exactly once.
#[tokio::test]
async fn a_stop_in_the_middle_of_the_work_loses_nothing() {
    const NOTES: i64 = 20;
    let dir = TempDir::new("notes-drain");
    let archive = dir.join("archive.jsonl");
    // Two notes a second: the round takes ten seconds, and the stop comes early in it.
    let spawn = || {
        notes(&dir)
            .env("NOTES_PURGE_EVERY", "100ms")
            .env("NOTES_PURGE_RATE", "2")
            .env("RODENT_DRAIN_DELAY", "200ms")
    };
    let mut service = start(spawn());
    let (mut feed, response) =
        tokio_tungstenite::connect_async(format!("ws://{}/feed", service.addr()))
            .await
            .expect("the feed's handshake");
    assert_eq!(response.status(), 101);

    for n in 0..NOTES {
        create(&service, &format!("note {n}")).await;
    }
    // Deleting is much faster than purging: the worker falls behind at once.
    for id in 1..=NOTES {
        delete(&service, id).await;
    }
    // The gate: the round has begun, and most of it is still to do.
    eventually(PATIENCE, || match archived(&archive).len() {
        0 => Err("nothing purged yet"),
        _ => Ok(()),
    });
    // The requests' connections are gone: what is left open is the feed (and the scrape).
    eventually_async(PATIENCE, async || {
        match service
            .metrics()
            .await
            .value::<u64>("rodent_connections_open")
        {
            Some(2) => Ok(()),
            open => Err(format!("rodent_connections_open is {open:?}, not 2")),
        }
    })
    .await;
    service.signal(SIGTERM);

    let mut told = Vec::new();
    let farewell = loop {
        let message = tokio::time::timeout(PATIENCE, feed.next())
            .await
            .expect("the feed ends in time")
            .expect("a close frame, not the end of the stream")
            .expect("a frame, not an error");
        match message {
            Message::Text(text) => told.push(serde_json::from_str::<Value>(&text).unwrap()),
            Message::Close(frame) => break frame.expect("a close frame with a code"),
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!(farewell.code, CloseCode::Away, "close 1001, going away");
    let expected: Vec<Value> = ["created", "deleted"]
        .into_iter()
        .flat_map(|event| (1..=NOTES).map(move |id| json!({ "event": event, "id": id })))
        .collect();
    assert_eq!(told, expected, "every change, in order, before the goodbye");

    assert_eq!(service.exit_code(PATIENCE), 0);
    let stopped =
        service.wait_log(|l| l["message"] == "purge stopped by the drain, after a whole note");
    let first_run = archived(&archive);
    assert!(
        (first_run.len() as i64) < NOTES,
        "the stop came in the middle of the round: {stopped}"
    );
    assert!(first_run.values().all(|&n| n == 1), "{first_run:?}");
    let closed = service.wait_log(|l| l["message"] == "listener closed");
    assert_eq!(
        closed["connections"], 1,
        "the feed is in the drain's count: {closed}"
    );
    assert_eq!(
        closed["tasks"], 1,
        "the worker is in the drain's count: {closed}"
    );

    // The rest, in a second run: none twice, none missing.
    let mut again = start(spawn().env("NOTES_PURGE_RATE", "1000"));
    eventually(PATIENCE, || match archived(&archive).len() as i64 {
        n if n < NOTES => Err(format!("{n} of {NOTES} archived")),
        _ => Ok(()),
    });
    let all = archived(&archive);
    assert_eq!(
        all.keys().copied().collect::<Vec<_>>(),
        (1..=NOTES).collect::<Vec<_>>()
    );
    assert!(
        all.values().all(|&n| n == 1),
        "each note archived once: {all:?}"
    );
    assert_eq!(listed(&again).await, 0);
    again.signal(SIGTERM);
    assert_eq!(again.exit_code(PATIENCE), 0);
}

/// The baseline the test above is measured against: the same feed, stopped the way the kubelet
/// stops a process that overruns its grace (SIGKILL), gets no goodbye.
#[tokio::test]
async fn a_kill_instead_of_the_drain_ends_the_feed_without_a_goodbye() {
    let dir = TempDir::new("notes-kill");
    let mut service = start(notes(&dir));
    let (mut feed, _) = tokio_tungstenite::connect_async(format!("ws://{}/feed", service.addr()))
        .await
        .expect("the feed's handshake");
    create(&service, "milk").await;
    let first = tokio::time::timeout(PATIENCE, feed.next()).await.unwrap();
    assert!(matches!(first, Some(Ok(Message::Text(_)))), "{first:?}");
    service.signal(nix::sys::signal::Signal::SIGKILL);
    let last = tokio::time::timeout(PATIENCE, feed.next())
        .await
        .expect("the feed ends in time");
    assert!(
        !matches!(last, Some(Ok(Message::Close(_)))),
        "no close frame from a killed process: {last:?}"
    );
    service.wait_exit(PATIENCE);
}
