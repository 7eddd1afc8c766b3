//! HTTP/2 readers that never open their flow-control window. Every stream a connection may
//! open asks for `/metrics` (the largest answer rodent gives anyone), on as many connections as
//! rodent accepts, and no client ever reads a byte. rodent refuses connections past
//! `RODENT_MAX_CONNECTIONS`, sheds scrapes past its bound, stays inside the chart's memory
//! limit, keeps answering its probes, resets each stalled stream at the idle timeout, and exits
//! inside the grace.

use std::io::Write;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::http::Request;
use nix::sys::signal::Signal::{SIGHUP, SIGTERM};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

use kit::{PATIENCE, Rodent, TempDir, rodent};

/// The chart's memory limit (`resources.limits.memory`).
const CHART_MEMORY_LIMIT: u64 = 128 * 1024 * 1024;
/// `RODENT_MAX_CONNECTIONS`' documented default: what a binary without the variable (the
/// baseline, which must fail here) is attacked with.
const DOCUMENTED_MAX_CONNECTIONS: usize = 1024;
/// Connections tried past the limit, which must be refused.
const PAST_THE_LIMIT: usize = 8;

/// A connection whose client never reads: a zero stream window, so no byte of any response
/// body can be sent.
struct Stalled {
    /// Every response head, with the time it arrived.
    heads: Vec<(axum::http::Response<h2::RecvStream>, Instant)>,
    connection: tokio::task::JoinHandle<Result<(), h2::Error>>,
    // Dropping it would release the connection's streams on the client's side.
    _requests: h2::client::SendRequest<bytes::Bytes>,
}

/// Opens a connection and asks for `path` on as many streams as the server allows; `None`
/// when the server refused the connection.
async fn stall(addr: SocketAddr, path: &str) -> Option<Stalled> {
    let io = TcpStream::connect(addr).await.ok()?;
    let (mut requests, connection) = h2::client::Builder::new()
        .initial_window_size(0)
        .handshake::<_, bytes::Bytes>(io)
        .await
        .ok()?;
    let connection = tokio::spawn(connection);
    let get = || {
        Request::get(format!("http://{addr}{path}"))
            .body(())
            .unwrap()
    };
    // The first answer brings the server's SETTINGS, so how many streams it allows.
    let (first, _) = requests.send_request(get(), true).ok()?;
    let first = tokio::time::timeout(PATIENCE, first)
        .await
        .expect("a first answer, or the end of a refused connection")
        .ok()?;
    let mut heads = vec![(first, Instant::now())];
    let allowed = requests.current_max_send_streams();
    for _ in 1..allowed {
        requests = requests
            .ready()
            .await
            .expect("the connection takes requests");
        let (response, _) = requests.send_request(get(), true).unwrap();
        let head = tokio::time::timeout(PATIENCE, response)
            .await
            .expect("a response head within the patience")
            .expect("a response head");
        heads.push((head, Instant::now()));
    }
    Some(Stalled {
        heads,
        connection,
        _requests: requests,
    })
}

fn rss_bytes(rodent: &Rodent) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", rodent.pid()))
        .expect("rodent's /proc status is readable");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS is in /proc/PID/status");
    kib * 1024
}

/// Raises this process's soft limit on open files to at least `needed`, within the hard limit.
fn raise_open_files_limit(needed: usize) {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("the limit can be read");
    let needed = needed as u64;
    assert!(
        hard >= needed,
        "{needed} open files are needed; the hard limit is {hard}"
    );
    if soft < needed {
        setrlimit(Resource::RLIMIT_NOFILE, needed, hard).expect("the soft limit can be raised");
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / 1048576.0
}

/// `RODENT_MAX_CONNECTIONS` in force, as `rodent config` shows it.
fn max_connections(spawn: &kit::Spawn) -> Option<usize> {
    let (code, stdout, stderr) = spawn.run(&["config"]);
    assert_eq!(code, 0, "rodent config: {stderr}");
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("RODENT_MAX_CONNECTIONS="))
        .map(|n| n.parse().expect("a number"))
}

/// `GET path` on a kept-alive connection opened before the attack.
fn get_on(probe: &mut std::net::TcpStream, path: &str) -> kit::RawResponse {
    tokio::task::block_in_place(|| kit::get_on(probe, path)).expect("rodent answers")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_that_never_read_stay_inside_the_memory_limit_and_the_exit_inside_the_grace() {
    const GRACE: Duration = Duration::from_secs(10);
    // The defaults, but for a grace that keeps the test short (and a request timeout that fits
    // inside it). The idle timeout (60 s) outlasts the attack, so every stream stays pinned.
    let spawn = rodent()
        .env("RODENT_SHUTDOWN_GRACE", "10s")
        .env("RODENT_REQUEST_TIMEOUT", "5s");
    let limit = max_connections(&spawn).unwrap_or(DOCUMENTED_MAX_CONNECTIONS);
    // Both ends of every connection are in this machine: room for them, rodent's included
    // (it inherits the limit).
    raise_open_files_limit(2 * (limit + PAST_THE_LIMIT) + 256);
    let mut rodent = spawn.spawn();
    // The probe's connection is opened first: every other one the port accepts is the
    // attacker's, and past the limit even a probe's new connection is refused.
    let mut probe = kit::connect(rodent.addr());
    assert_eq!(get_on(&mut probe, "/healthz").status, 200);
    let rss_before = rss_bytes(&rodent);

    let attacking = limit - 1;
    let mut attackers = JoinSet::new();
    // A few connections set up at a time, so that each sends its first request well inside
    // the header-read timeout (a connection that does not is cut, and would count as refused).
    let setting_up = std::sync::Arc::new(tokio::sync::Semaphore::new(32));
    for _ in 0..attacking + PAST_THE_LIMIT {
        let addr = rodent.addr();
        let setting_up = setting_up.clone();
        attackers.spawn(async move {
            let _turn = setting_up
                .acquire()
                .await
                .expect("the semaphore is never closed");
            stall(addr, "/metrics").await
        });
    }
    let mut peak = rss_before;
    let mut slowest_probe = Duration::ZERO;
    let mut stalled = Vec::new();
    let mut refused = 0;
    let attack_started = Instant::now();
    loop {
        tokio::select! {
            joined = attackers.join_next() => match joined {
                Some(outcome) => match outcome.expect("an attacker does not panic") {
                    Some(connection) => stalled.push(connection),
                    None => refused += 1,
                },
                None => break,
            },
            () = tokio::time::sleep(Duration::from_millis(250)) => {
                let asked = Instant::now();
                assert_eq!(get_on(&mut probe, "/healthz").status, 200);
                slowest_probe = slowest_probe.max(asked.elapsed());
                peak = peak.max(rss_bytes(&rodent));
            }
        }
        assert!(
            attack_started.elapsed() < 12 * PATIENCE,
            "{} connections pinned their streams in {:?}",
            stalled.len(),
            attack_started.elapsed()
        );
    }
    let asked = Instant::now();
    assert_eq!(get_on(&mut probe, "/healthz").status, 200);
    slowest_probe = slowest_probe.max(asked.elapsed());
    let pinned = rss_bytes(&rodent);
    peak = peak.max(pinned);
    let streams: usize = stalled.iter().map(|s| s.heads.len()).sum();
    let scrapes = stalled
        .iter()
        .flat_map(|s| &s.heads)
        .filter(|(head, _)| head.status() == 200)
        .count();
    eprintln!(
        "{} connections × {} streams ({streams} in all, {scrapes} of them scrapes answered), \
         {refused} refused: VmRSS {:.1} MiB before, {:.1} MiB pinned, {:.1} MiB peak; slowest \
         /healthz {slowest_probe:?}; attack set up in {:?}",
        stalled.len(),
        stalled.first().map_or(0, |s| s.heads.len()),
        mib(rss_before),
        mib(pinned),
        mib(peak),
        attack_started.elapsed(),
    );
    assert!(
        peak < CHART_MEMORY_LIMIT,
        "VmRSS reached {:.1} MiB, past the chart's 128 MiB memory limit",
        mib(peak)
    );
    assert_eq!(
        refused, PAST_THE_LIMIT,
        "connections past RODENT_MAX_CONNECTIONS ({limit}) are refused"
    );
    assert_eq!(stalled.len(), attacking);
    assert!(
        stalled.iter().all(|s| s.heads.len() > 1),
        "an HTTP/2 connection opens several streams"
    );
    assert!(
        scrapes <= 16,
        "{scrapes} scrapes answered at once; the rest are shed"
    );
    assert!(
        slowest_probe < Duration::from_secs(2),
        "/healthz took {slowest_probe:?} during the attack"
    );

    // SIGTERM with every stream still pinned: the exit comes inside the grace, the pinned
    // connections aborted at the deadline.
    let signalled = Instant::now();
    rodent.signal(SIGTERM);
    let code = rodent.exit_code(GRACE + PATIENCE);
    let exited_after = signalled.elapsed();
    assert!(
        exited_after < GRACE,
        "the exit came {exited_after:?} after SIGTERM, past the {GRACE:?} grace"
    );
    assert_eq!(
        code, 124,
        "connections still pinned at the deadline are aborted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_whose_reader_makes_no_room_is_reset_at_the_idle_timeout() {
    const IDLE_TIMEOUT: Duration = Duration::from_secs(2);
    let rodent = rodent().env("RODENT_IDLE_TIMEOUT", "2s").spawn();
    let mut connections = Vec::new();
    for path in ["/", "/metrics", "/"] {
        connections.push(stall(rodent.addr(), path).await.expect("a connection"));
    }
    let mut resets = JoinSet::new();
    let mut ends = Vec::new();
    for connection in connections {
        for (head, arrived) in connection.heads {
            let mut body = head.into_body();
            resets.spawn(async move {
                match tokio::time::timeout(
                    arrived + IDLE_TIMEOUT + PATIENCE - Instant::now(),
                    body.data(),
                )
                .await
                {
                    Ok(Some(Err(_)) | None) => Some(arrived.elapsed()),
                    Ok(Some(Ok(data))) => {
                        panic!("{} bytes arrived through a closed window", data.len())
                    }
                    Err(_) => None,
                }
            });
        }
        ends.push((connection.connection, connection._requests));
    }
    let mut reset = 0;
    while let Some(after) = resets.join_next().await {
        let after = after.expect("a reader does not panic").unwrap_or_else(|| {
            panic!(
                "a stream whose reader made no room was not reset within {:?}",
                IDLE_TIMEOUT + PATIENCE
            )
        });
        assert!(
            after + Duration::from_millis(50) >= IDLE_TIMEOUT,
            "a stalled stream was reset {after:?} after its head, before the idle timeout"
        );
        reset += 1;
    }
    // Every stream reset, each connection is idle: it ends at the idle timeout.
    for (connection, requests) in ends {
        drop(requests);
        assert!(
            tokio::time::timeout(IDLE_TIMEOUT + PATIENCE, connection)
                .await
                .is_ok(),
            "a connection whose streams were all reset did not end at the idle timeout"
        );
    }
    let metrics = rodent.metrics().await;
    assert_eq!(
        metrics.expect::<u64>("rodent_http2_streams_reset_total"),
        reset,
        "every stalled stream is counted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_limit_are_refused_and_a_reload_raises_it() {
    let (code, _, stderr) = rodent()
        .env("RODENT_MAX_CONNECTIONS", "0")
        .run(&["config", "check"]);
    assert_eq!(code, 78, "{stderr}");
    assert!(
        stderr.contains("RODENT_MAX_CONNECTIONS=\"0\" is invalid"),
        "{stderr}"
    );

    let dir = TempDir::new("max-connections");
    let env_file = dir.join("rodent.env");
    std::fs::write(&env_file, "RODENT_MAX_CONNECTIONS=3\n").unwrap();
    let rodent = rodent()
        .env("RODENT_ENV_FILE", env_file.to_str().unwrap())
        .spawn();
    let mut held: Vec<_> = (0..3).map(|_| kit::connect(rodent.addr())).collect();
    for connection in &mut held {
        assert_eq!(get_on(connection, "/healthz").status, 200);
    }
    let mut refused = kit::connect(rodent.addr());
    let _ = refused.write_all(b"GET /healthz HTTP/1.1\r\nHost: rodent\r\n\r\n");
    let answer = tokio::task::block_in_place(|| kit::read_to_close(&mut refused));
    assert!(
        answer.unwrap_or_default().is_empty(),
        "a fourth connection is closed without an answer"
    );
    rodent.wait_log(|l| {
        l["message"] == "connection refused: RODENT_MAX_CONNECTIONS connections are open"
            && l["max_connections"] == 3
    });

    std::fs::write(&env_file, "RODENT_MAX_CONNECTIONS=4\n").unwrap();
    rodent.signal(SIGHUP);
    rodent.wait_log(|l| {
        l["message"] == "configuration reloaded" && l["changed"] == "RODENT_MAX_CONNECTIONS"
    });
    let mut fourth = kit::connect(rodent.addr());
    assert_eq!(get_on(&mut fourth, "/healthz").status, 200);
    let text = get_on(&mut fourth, "/metrics");
    let metrics = kit::Metrics::from(String::from_utf8_lossy(&text.body).into_owned());
    assert_eq!(metrics.expect::<u64>("rodent_connections_refused_total"), 1);
    drop(held);
}
