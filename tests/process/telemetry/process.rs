//! The standard `process_*` metrics every Prometheus client library exports, checked against
//! what the kernel says about the same process, and `/metrics` as a whole through Prometheus's
//! own linter, `promtool check metrics`.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

use nix::sys::signal::Signal::SIGTERM;
use openmetrics_parser::PrometheusType;

use super::scrape::Scrape;
use kit::{PATIENCE, Rodent, client, eventually_async, require_tool, rodent};

const FAMILIES: &[(&str, PrometheusType)] = &[
    ("process_cpu_seconds_total", PrometheusType::Counter),
    ("process_resident_memory_bytes", PrometheusType::Gauge),
    ("process_virtual_memory_bytes", PrometheusType::Gauge),
    ("process_open_fds", PrometheusType::Gauge),
    ("process_max_fds", PrometheusType::Gauge),
    ("process_start_time_seconds", PrometheusType::Gauge),
    ("process_threads", PrometheusType::Gauge),
];

/// A field of `/proc/<pid>/stat` by its number in proc(5) (1-based; the command name, which may
/// hold spaces, is field 2).
fn stat_field(rodent: &Rodent, field: usize) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", rodent.pid())).unwrap();
    let after_name = &stat[stat.rfind(')').expect("a command name in parentheses") + 2..];
    after_name
        .split_whitespace()
        .nth(field - 3)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no field {field} in {stat}"))
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf reads a constant of the system and has no preconditions.
    (unsafe { libc::sysconf(libc::_SC_CLK_TCK) }) as f64
}

fn page_size() -> f64 {
    // SAFETY: as above.
    (unsafe { libc::sysconf(libc::_SC_PAGESIZE) }) as f64
}

fn open_fds(rodent: &Rodent) -> f64 {
    std::fs::read_dir(format!("/proc/{}/fd", rodent.pid()))
        .unwrap()
        .count() as f64
}

/// The soft limit on open files, as `/proc/<pid>/limits` shows it.
fn max_fds(rodent: &Rodent) -> f64 {
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", rodent.pid())).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("a Max open files line");
    line["Max open files".len()..]
        .split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .expect("a numeric soft limit")
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is past 1970")
        .as_secs_f64()
}

#[tokio::test]
async fn process_metrics_describe_the_process_that_serves() {
    let before_start = now();
    let mut rodent = rodent().spawn();
    // Work to show up as CPU time: enough requests for several clock ticks.
    let client = client();
    for _ in 0..500 {
        let response = client.get(rodent.url("/")).send().await.unwrap();
        assert_eq!(response.status(), 200);
    }
    let scrape = Scrape::of(&rodent).await;
    for (family, kind) in FAMILIES {
        assert_eq!(
            scrape.family_type(family),
            Some(kind),
            "{family} in {:?}",
            scrape.family_names()
        );
    }
    let value = |family| scrape.value(family, &[]);

    let started = value("process_start_time_seconds");
    assert!(
        (before_start - 2.0..=now()).contains(&started),
        "started at {started}, the test spawned it at {before_start}"
    );

    // What the kernel says now; the process did little between the scrape and these reads.
    let cpu = (stat_field(&rodent, 14) + stat_field(&rodent, 15)) / clock_ticks();
    let scraped_cpu = value("process_cpu_seconds_total");
    assert!(scraped_cpu > 0.0, "no CPU time after 500 requests");
    assert!(
        scraped_cpu <= cpu + 0.02 && scraped_cpu >= cpu - 0.5,
        "process_cpu_seconds_total {scraped_cpu}, the kernel says {cpu}"
    );
    let rss = stat_field(&rodent, 24) * page_size();
    let scraped_rss = value("process_resident_memory_bytes");
    assert!(
        scraped_rss > rss / 2.0 && scraped_rss < rss * 2.0,
        "process_resident_memory_bytes {scraped_rss}, the kernel says {rss}"
    );
    assert!(
        value("process_virtual_memory_bytes") >= scraped_rss,
        "virtual memory below resident"
    );
    let fds = value("process_open_fds");
    let now_open = open_fds(&rodent);
    assert!(
        (fds - now_open).abs() <= 4.0,
        "process_open_fds {fds}, /proc says {now_open}"
    );
    assert_eq!(value("process_max_fds"), max_fds(&rodent));
    let threads = value("process_threads");
    assert!(
        (threads - stat_field(&rodent, 20)).abs() <= 2.0,
        "process_threads {threads}"
    );

    // A counter only goes up.
    for _ in 0..200 {
        client.get(rodent.url("/")).send().await.unwrap();
    }
    let later = Scrape::of(&rodent).await;
    assert!(later.value("process_cpu_seconds_total", &[]) >= scraped_cpu);
    assert_eq!(later.value("process_start_time_seconds", &[]), started);

    rodent.signal(SIGTERM);
    assert_eq!(rodent.exit_code(PATIENCE), 0);
}

/// Runs `promtool check metrics` on `text`; returns its exit status and what it printed.
fn promtool(text: &str) -> (bool, String) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool starts");
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(text.as_bytes())
        .expect("promtool reads its input");
    let output = child.wait_with_output().expect("promtool finishes");
    let mut said = String::from_utf8_lossy(&output.stdout).into_owned();
    said.push_str(&String::from_utf8_lossy(&output.stderr));
    (output.status.success(), said)
}

#[tokio::test]
async fn promtool_finds_nothing_wrong_with_metrics() {
    if !require_tool(
        "promtool",
        "Debian's prometheus package; scripts/ci/tools.sh installs it",
    ) {
        return;
    }
    // The linter must be able to fail: a counter without `_total` is one of its findings.
    let (ok, said) = promtool("# HELP requests Requests.\n# TYPE requests counter\nrequests 1\n");
    assert!(
        !ok && said.contains("_total"),
        "promtool found nothing in a bad exposition: {said}"
    );

    let mut rodent = rodent()
        .env("RODENT_REQUEST_TIMEOUT", "200ms")
        .env("RODENT_SHUTDOWN_GRACE", "2s")
        .spawn();
    // Every family with labels shows up: answered requests, a timeout and a panic.
    for path in [
        "/",
        "/status/404",
        "/status/503",
        "/no/such/route",
        "/delay/1000",
        "/panic",
    ] {
        client().get(rodent.url(path)).send().await.unwrap();
    }
    let scrape = eventually_async(PATIENCE, async || {
        let scrape = Scrape::of(&rodent).await;
        let families = scrape.family_names();
        match families.contains("rodent_http_request_timeouts_total")
            && families.contains("rodent_http_panics_total")
        {
            true => Ok(scrape),
            false => Err(format!("{families:?}")),
        }
    })
    .await;
    let (ok, said) = promtool(scrape.text());
    assert!(
        ok && said.trim().is_empty(),
        "promtool check metrics found problems:\n{said}\nin:\n{}",
        scrape.text()
    );
    rodent.signal(SIGTERM);
    assert_eq!(rodent.exit_code(PATIENCE), 0);
}
