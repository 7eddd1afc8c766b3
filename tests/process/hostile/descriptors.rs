//! Running out of file descriptors: with a low `RLIMIT_NOFILE` and more connections than it
//! allows, rodent keeps running and serving the connections it has, says so in the log once
//! rather than once per failed accept, and accepts again as soon as connections close.

use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::time::Instant;

use nix::sys::resource::{Resource, setrlimit};

use kit::{Metrics, PATIENCE, client, connect, eventually, get_on, rodent};

/// Enough for the runtime, the listener and the log pipes, and a few dozen connections.
const NOFILE: u64 = 64;
const HOGS: usize = 2 * NOFILE as usize;

const BACKING_OFF: &str = "cannot accept connections; backing off until resources free up";
const RECOVERED: &str = "accepting connections again";

/// `rodent_accept_errors_total` read over an open connection (no new descriptor needed).
fn accept_errors(operator: &mut TcpStream) -> u64 {
    let metrics = get_on(operator, "/metrics").expect("/metrics answers on an open connection");
    assert_eq!(metrics.status, 200);
    Metrics::from(String::from_utf8_lossy(&metrics.body).into_owned())
        .expect("rodent_accept_errors_total")
}

#[test]
fn running_out_of_descriptors_is_survived_logged_once_and_recovered_from() {
    let spawn = rodent()
        // Nothing here is slow on purpose: hold the idle connections for the whole test.
        .env("RODENT_HEADER_READ_TIMEOUT", "1m");
    let mut command = spawn.command();
    // SAFETY: runs in the child between fork and exec, where only async-signal-safe calls are
    // allowed; setrlimit is a bare system call.
    unsafe {
        command.pre_exec(|| {
            setrlimit(Resource::RLIMIT_NOFILE, NOFILE, NOFILE).map_err(std::io::Error::from)
        });
    }
    let mut rodent = spawn.spawn_command(command);

    // An operator's connection, opened while there are descriptors to spare.
    let mut operator = connect(rodent.addr());
    assert_eq!(get_on(&mut operator, "/healthz").unwrap().status, 200);
    let errors_before = accept_errors(&mut operator);

    // Twice as many connections as the limit allows: those accepted hold every descriptor, the
    // rest wait in the listen backlog.
    let hogs: Vec<TcpStream> = (0..HOGS).map(|_| connect(rodent.addr())).collect();
    let first = rodent.wait_log(|l| l["message"] == BACKING_OFF);
    let exhausted = Instant::now();
    assert!(
        first["error"]
            .as_str()
            .is_some_and(|e| e.contains("Too many open files")),
        "{first}"
    );

    // Accept keeps failing (and backing off) while the descriptors stay taken...
    let errors = eventually(PATIENCE, || {
        match accept_errors(&mut operator) - errors_before {
            errors if errors >= 20 => Ok(errors),
            errors => Err(format!("only {errors} accept errors counted")),
        }
    });
    // ...the process keeps running and answering on the connections it has...
    assert!(rodent.is_running());
    assert_eq!(get_on(&mut operator, "/healthz").unwrap().status, 200);
    assert_eq!(get_on(&mut operator, "/").unwrap().status, 200);
    // ...and the log says so once per five seconds, not once per error.
    let lines = rodent
        .json_lines()
        .iter()
        .filter(|l| l["message"] == BACKING_OFF)
        .count();
    let allowed = 1 + (exhausted.elapsed().as_secs() / 5) as usize;
    assert!(
        lines <= allowed,
        "{lines} log lines for {errors} accept errors in {:?}",
        exhausted.elapsed()
    );

    // Connections close, descriptors free up, and new connections are served again.
    drop(hogs);
    let recovered = rodent.wait_log(|l| l["message"] == RECOVERED);
    assert!(
        recovered["errors"].as_u64().unwrap_or(0) >= errors,
        "{recovered}"
    );
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let answer = runtime.block_on(async { client().get(rodent.url("/")).send().await });
    assert_eq!(answer.expect("a new connection is served").status(), 200);
    assert_eq!(get_on(&mut operator, "/healthz").unwrap().status, 200);
    eprintln!(
        "RLIMIT_NOFILE={NOFILE}, {HOGS} idle connections: {errors} accept errors, {lines} log \
         line(s), served again once they closed"
    );
}
