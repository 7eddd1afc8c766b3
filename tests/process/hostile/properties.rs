//! Property-based runs over the two places where the outside world's input first arrives: the
//! configuration parser and the HTTP edge.
//!
//! CI runs a short pass (1,000 configurations, 200 requests: a few seconds). The number of cases
//! comes from `PROPTEST_CASES`; a longer run, worth doing after touching either edge (5,000 cases
//! each take about 80 s on two cores):
//!
//! ```sh
//! PROPTEST_CASES=5000 scripts/test --test process -- hostile::properties
//! ```

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io::Write;
use std::net::Shutdown;
use std::time::Duration;

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestCaseError, TestRunner};
use rodent::config::{Config, ConfigError, VARIABLES};

use super::{Answer, answer};
use kit::{PATIENCE, TempDir, client, connect, rodent};

/// `PROPTEST_CASES`, or `default` for the quick pass CI runs.
fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    vec(any::<u8>(), 0..max)
}

// ---- the configuration parser ----

/// Names rodent knows (the env file is given separately), near misses, and strangers.
fn name() -> impl Strategy<Value = String> {
    let known: Vec<String> = VARIABLES
        .iter()
        .map(|v| v.name)
        .filter(|n| *n != "RODENT_ENV_FILE")
        .map(String::from)
        .collect();
    prop_oneof![
        4 => proptest::sample::select(known),
        1 => "RODENT_[A-Z_]{0,16}",
        1 => "(OTEL|HOME|PATH|HOSTNAME)_?[A-Z_]{0,8}",
        1 => Just("RODENT_SUPERVISED".to_string()),
    ]
}

/// Values that are right, nearly right, and nothing like right.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        "[0-9]{1,24}(ms|s|m|h|d|)",
        " ?-?[0-9]{0,6}(\\.[0-9])? ?(ms|s|m|h)? ?",
        "(127.0.0.1|::1|0.0.0.0|::|localhost|256.1.1.1|[0-9a-f:]{1,20})",
        "(json|text|JSON|auto|always|never|info|debug|warn,hyper=off|rodent=trace,[a-z]{1,8}=[a-z]{1,6})",
        "(/tmp/rodent.pid|/|relative/path|/nonexistent/dir/file)",
        Just(String::new()),
        "[ -~]{0,40}",
        any::<String>(),
    ]
}

/// An env file's contents: well-formed lines, or anything.
fn env_file() -> impl Strategy<Value = Option<String>> {
    let line = (name(), value()).prop_map(|(k, v)| format!("{k}={v}\n"));
    prop_oneof![
        3 => Just(None),
        2 => vec(line, 0..6).prop_map(|lines| Some(lines.concat())),
        1 => "[ -~\n#='\"]{0,200}".prop_map(Some),
    ]
}

/// Whether the input mentions `variable`: set in the map, or written in the env file.
fn given(variable: &str, vars: &BTreeMap<String, String>, file: Option<&str>) -> bool {
    vars.contains_key(variable) || file.is_some_and(|f| f.contains(variable))
}

/// `name()` with the case of some letters after the prefix changed: `RODENT_Port`, not
/// `RODENT_PORT`. The environment is case-sensitive, so these are strangers too.
fn name_in_any_case() -> impl Strategy<Value = String> {
    (name(), vec(any::<bool>(), 32)).prop_map(|(name, flips)| {
        name.char_indices()
            .map(|(i, c)| match flips.get(i) {
                Some(true) if i >= "RODENT_".len() => c.to_ascii_lowercase(),
                _ => c,
            })
            .collect()
    })
}

/// The property: whatever the input, the parser returns, and every error it reports names a
/// variable the input set.
fn errors_name_given_variables(
    mut vars: BTreeMap<String, String>,
    file: Option<String>,
    missing_file: bool,
) -> Result<(), TestCaseError> {
    let dir = TempDir::new("config-property");
    if let Some(contents) = &file {
        std::fs::write(dir.join("env"), contents).unwrap();
        vars.insert(
            "RODENT_ENV_FILE".into(),
            dir.join("env").display().to_string(),
        );
    } else if missing_file {
        vars.insert(
            "RODENT_ENV_FILE".into(),
            dir.join("missing").display().to_string(),
        );
    }
    let Err(errors) = Config::from_vars(vars.clone()) else {
        return Ok(());
    };
    prop_assert!(!errors.0.is_empty(), "an error with no problem in it");
    for error in &errors.0 {
        match error {
            ConfigError::Invalid { variable, .. } => prop_assert!(
                given(variable, &vars, file.as_deref()),
                "{error} names {variable}, which was not given"
            ),
            ConfigError::EnvFile { .. } => prop_assert!(vars.contains_key("RODENT_ENV_FILE")),
            ConfigError::Inconsistent { explanation } => prop_assert!(
                VARIABLES
                    .iter()
                    .any(|v| explanation.contains(v.name) && given(v.name, &vars, file.as_deref())),
                "{explanation:?} names no variable that was given"
            ),
            other => prop_assert!(false, "a kind of problem this test does not know: {other}"),
        }
        prop_assert!(!error.to_string().is_empty());
    }
    Ok(())
}

proptest! {
    // A failure prints its shrunk input; nothing is filed under tests/ for later runs.
    #![proptest_config(ProptestConfig {
        cases: cases(1_000),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn the_config_parser_never_panics_and_names_what_it_refuses(
        vars in proptest::collection::btree_map(name(), value(), 0..10),
        file in env_file(),
        missing_file in any::<bool>(),
    ) {
        errors_name_given_variables(vars, file, missing_file)?;
    }

    // envy lowercases names before matching them: handed every variable, it would refuse
    // `RODENT_Port=abc` as `RODENT_PORT="abc"`, apply `RODENT_Port=9999` while also warning
    // about it as unknown, and fail on `RODENT_PORT` next to `RODENT_port` with "duplicate
    // field `port`", naming no variable. Only exact names may count.
    #[test]
    fn the_config_parser_reads_only_exact_names(
        vars in proptest::collection::btree_map(name_in_any_case(), value(), 0..10),
        file in env_file(),
        missing_file in any::<bool>(),
    ) {
        errors_name_given_variables(vars, file, missing_file)?;
    }
}

// ---- the HTTP edge ----

const HEADER_READ_TIMEOUT: Duration = Duration::from_millis(500);

/// A request head as a client might get it wrong: each part right, plausible, or random.
fn request() -> impl Strategy<Value = Vec<u8>> {
    let text = |s: &'static str| Just(s.as_bytes().to_vec());
    let method = prop_oneof![
        text("GET"),
        text("POST"),
        text("HEAD"),
        text("PUT"),
        text("OPTIONS"),
        text("PRI"),
        "[A-Za-z]{1,12}".prop_map(String::into_bytes),
        bytes(16),
    ];
    let target = prop_oneof![
        text("/"),
        text("/healthz"),
        text("/readyz?verbose"),
        text("/metrics"),
        text("/version"),
        text("/echo"),
        text("/status/418"),
        text("/nowhere"),
        text("*"),
        text("http://rodent/"),
        "/[!-~]{0,64}".prop_map(String::into_bytes),
        bytes(64),
    ];
    let version = prop_oneof![
        text("HTTP/1.1"),
        text("HTTP/1.0"),
        text("HTTP/2.0"),
        text(""),
        "HTTP/[0-9]\\.[0-9]".prop_map(String::into_bytes),
        bytes(10),
    ];
    let eol = prop_oneof![
        4 => text("\r\n"),
        1 => text("\n"),
        1 => text("\r"),
        1 => bytes(3),
    ];
    let header_name = prop_oneof![
        text("Host"),
        text("Content-Length"),
        text("Transfer-Encoding"),
        text("Connection"),
        text("Expect"),
        text("Upgrade"),
        text("Content-Type"),
        "[A-Za-z-]{1,20}".prop_map(String::into_bytes),
        bytes(20),
    ];
    let header_value = prop_oneof![
        "[0-9]{1,25}".prop_map(String::into_bytes),
        text("chunked"),
        text("chunked, gzip"),
        text("close"),
        text("keep-alive"),
        text("100-continue"),
        text("h2c"),
        text("-1"),
        "[ -~]{0,40}".prop_map(String::into_bytes),
        bytes(40),
    ];
    (
        method,
        target,
        version,
        eol,
        vec((header_name, header_value), 0..8),
        bytes(256),
    )
        .prop_map(|(method, target, version, eol, headers, body)| {
            let mut request = [method, b" ".to_vec(), target, b" ".to_vec(), version].concat();
            request.extend_from_slice(&eol);
            for (name, value) in headers {
                request.extend_from_slice(&name);
                request.extend_from_slice(b": ");
                request.extend_from_slice(&value);
                request.extend_from_slice(&eol);
            }
            request.extend_from_slice(&eol);
            request.extend_from_slice(&body);
            request
        })
}

#[test]
fn random_requests_are_answered_or_closed_and_never_crash() {
    let rodent = rodent()
        .env(
            "RODENT_HEADER_READ_TIMEOUT",
            format!("{}ms", HEADER_READ_TIMEOUT.as_millis()),
        )
        .env("RODENT_REQUEST_TIMEOUT", "1s")
        .env("RODENT_IDLE_TIMEOUT", "2s")
        // The access log of every case is noise here.
        .env("RODENT_LOG", "info,rodent::access=warn")
        .spawn();
    let addr = rodent.addr();
    let rodent = RefCell::new(rodent);
    let mut runner = TestRunner::new(ProptestConfig {
        cases: cases(200),
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let outcome = runner.run(&(request(), any::<bool>()), |(request, half_close)| {
        let mut stream = connect(addr);
        // The server may answer and close before reading it all.
        let _ = stream.write_all(&request);
        if half_close {
            let _ = stream.shutdown(Shutdown::Write);
        }
        let answer = answer(&mut stream, HEADER_READ_TIMEOUT + PATIENCE);
        prop_assert!(
            rodent.borrow_mut().is_running(),
            "rodent died:\n{}",
            rodent.borrow().raw_lines().join("\n")
        );
        prop_assert_ne!(&answer, &Answer::Nothing, "left hanging");
        prop_assert_ne!(&answer, &Answer::Status(500), "a request broke a handler");
        Ok(())
    });
    if let Err(e) = outcome {
        panic!("{e}");
    }
    let rodent = rodent.into_inner();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let after = runtime.block_on(async { client().get(rodent.url("/")).send().await });
    assert_eq!(after.expect("rodent still serves").status(), 200);
}
