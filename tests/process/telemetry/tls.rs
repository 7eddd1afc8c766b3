//! OTLP over TLS, against a receiver whose CA is made by the test: spans arrive over https for
//! both protocols, mutual TLS is required and works, a server rodent does not trust costs spans
//! (counted, logged once), and TLS files that cannot be used are configuration errors.

use std::collections::BTreeSet;

use nix::sys::signal::Signal::SIGTERM;

use super::pki::Pki;
use super::receiver::Receiver;
use super::scrape::Scrape;
use kit::{PATIENCE, Rodent, Spawn, TempDir, eventually_async, rodent};

const DROPPED: &str = "rodent_spans_dropped_total";
const EXPORTED: &str = "rodent_spans_exported_total";

/// rodent exporting to `receiver` with `protocol`, every 20 ms.
fn exporting(receiver: &Receiver, protocol: &str) -> Spawn {
    rodent()
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint())
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", protocol)
        .env("OTEL_BSP_SCHEDULE_DELAY", "20")
}

fn path(p: &std::path::Path) -> String {
    p.to_str().expect("temporary paths are UTF-8").to_string()
}

/// The `span id` field of the `traceresponse` of a GET to `path`.
async fn traced_get(rodent: &Rodent, path: &str) -> String {
    let response = rodent.get(path).await;
    assert!(response.status().is_success(), "GET {path}");
    let value = response
        .headers()
        .get("traceresponse")
        .expect("a traced response carries traceresponse")
        .to_str()
        .unwrap()
        .to_string();
    value.split('-').nth(2).expect("four fields").to_string()
}

/// Polls `/metrics` until `family` reaches `at_least`, and returns the scrape.
async fn wait_for_count(rodent: &Rodent, family: &str, at_least: f64) -> Scrape {
    eventually_async(PATIENCE, async || {
        let scrape = Scrape::of(rodent).await;
        match scrape.value(family, &[]) >= at_least {
            true => Ok(scrape),
            false => Err(format!(
                "{family} never reached {at_least}:\n{}",
                scrape.text()
            )),
        }
    })
    .await
}

fn export_failures(rodent: &Rodent) -> usize {
    rodent
        .json_lines()
        .iter()
        .filter(|l| {
            l["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("cannot export spans"))
        })
        .count()
}

fn stop_cleanly(rodent: &mut Rodent) {
    rodent.signal(SIGTERM);
    assert_eq!(rodent.exit_code(PATIENCE), 0);
}

#[tokio::test]
async fn spans_arrive_over_tls_trusting_a_private_ca_over_http_protobuf() {
    arrive_over_tls("http/protobuf").await;
}

#[tokio::test]
async fn spans_arrive_over_tls_trusting_a_private_ca_over_grpc() {
    arrive_over_tls("grpc").await;
}

async fn arrive_over_tls(protocol: &str) {
    let pki = Pki::new();
    let receiver = Receiver::start_tls(pki.server_config());
    assert!(receiver.endpoint().starts_with("https://"));
    let mut rodent = exporting(&receiver, protocol)
        .env("OTEL_EXPORTER_OTLP_CERTIFICATE", path(&pki.ca))
        .spawn();
    let exporting = rodent.wait_log(|l| l["message"] == "exporting traces");
    assert_eq!(exporting["protocol"], protocol);
    assert!(
        exporting["endpoint"]
            .as_str()
            .is_some_and(|e| e.starts_with("https://")),
        "{exporting}"
    );

    let span_id = traced_get(&rodent, "/status/201").await;
    let span = receiver.wait_for("the request's span", |s| s.span_id() == span_id);
    assert_eq!(span.span.name, "GET /status/{code}");
    assert_eq!(receiver.handshakes_failed(), 0);
    stop_cleanly(&mut rodent);
    assert_eq!(export_failures(&rodent), 0);
}

#[tokio::test]
async fn mutual_tls_is_required_and_works_over_http_protobuf() {
    mutual_tls("http/protobuf").await;
}

#[tokio::test]
async fn mutual_tls_is_required_and_works_over_grpc() {
    mutual_tls("grpc").await;
}

async fn mutual_tls(protocol: &str) {
    let pki = Pki::new();
    let receiver = Receiver::start_tls(pki.mtls_server_config());

    // Trusting the server is not enough: this receiver wants a client certificate.
    let mut anonymous = exporting(&receiver, protocol)
        .env("OTEL_EXPORTER_OTLP_CERTIFICATE", path(&pki.ca))
        .spawn();
    traced_get(&anonymous, "/").await;
    wait_for_count(&anonymous, DROPPED, 1.0).await;
    assert!(
        receiver.spans().is_empty(),
        "spans came without a client certificate"
    );
    assert!(receiver.handshakes_failed() >= 1);
    stop_cleanly(&mut anonymous);

    // The traces variables win over the general ones: the general ones here name a CA that did
    // not sign the server and a client certificate the receiver refuses.
    let mut identified = exporting(&receiver, protocol)
        .env("OTEL_EXPORTER_OTLP_CERTIFICATE", path(&pki.other_ca))
        .env(
            "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
            path(&pki.stranger.cert),
        )
        .env("OTEL_EXPORTER_OTLP_CLIENT_KEY", path(&pki.stranger.key))
        .env("OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE", path(&pki.ca))
        .env(
            "OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE",
            path(&pki.client.cert),
        )
        .env(
            "OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY",
            path(&pki.client.key),
        )
        .spawn();
    let span_id = traced_get(&identified, "/version").await;
    receiver.wait_for("the span sent with a client certificate", |s| {
        s.span_id() == span_id
    });
    assert!(receiver.client_certificates() >= 1);
    let scrape = Scrape::of(&identified).await;
    assert_eq!(scrape.value(DROPPED, &[]), 0.0);
    stop_cleanly(&mut identified);
}

#[tokio::test]
async fn a_server_rodent_does_not_trust_costs_spans_counted_and_logged_once() {
    let pki = Pki::new();
    let receiver = Receiver::start_tls(pki.server_config());
    // One trusts the wrong CA; the other the public roots it embeds, which know nothing of a
    // CA made a moment ago.
    let wrong_ca = exporting(&receiver, "http/protobuf")
        .env("OTEL_EXPORTER_OTLP_CERTIFICATE", path(&pki.other_ca))
        .spawn();
    let public_roots = exporting(&receiver, "grpc").spawn();

    for mut rodent in [wrong_ca, public_roots] {
        // One span per export: each failed export is counted before the next request.
        for sent in 1..=3 {
            traced_get(&rodent, "/").await;
            let scrape = wait_for_count(&rodent, DROPPED, f64::from(sent)).await;
            assert_eq!(scrape.value(EXPORTED, &[]), 0.0);
        }
        assert_eq!(
            Scrape::of(&rodent).await.value(DROPPED, &[]),
            3.0,
            "every span dropped is counted once"
        );
        assert_eq!(
            export_failures(&rodent),
            1,
            "one warning per outage, not one per export:\n{}",
            rodent.raw_lines().join("\n")
        );
        let warning = rodent.wait_log(|l| {
            l["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("cannot export spans"))
        });
        assert!(warning["cause"].is_string(), "{warning}");
        stop_cleanly(&mut rodent);
    }
    assert!(receiver.spans().is_empty());
    assert!(receiver.handshakes_failed() >= 2);
}

/// The variables refused at startup, from the `invalid configuration` lines.
fn refused(rodent: &Rodent) -> BTreeSet<String> {
    rodent
        .json_lines()
        .iter()
        .filter(|l| {
            l["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("invalid configuration"))
        })
        .filter_map(|l| l["variable"].as_str().map(str::to_string))
        .collect()
}

#[tokio::test]
async fn tls_files_that_cannot_be_used_exit_78_naming_each_variable() {
    let pki = Pki::new();
    let dir = TempDir::new("tls-files");
    let garbage = dir.join("garbage.pem");
    std::fs::write(&garbage, "this is not a certificate\n").unwrap();
    let key_pem = std::fs::read_to_string(&pki.client.key).unwrap();
    let key_body = key_pem.lines().nth(1).expect("a PEM body").to_string();

    let mut unusable = rodent()
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", "https://127.0.0.1:4318")
        // Missing.
        .env(
            "OTEL_EXPORTER_OTLP_CERTIFICATE",
            path(&dir.join("missing.pem")),
        )
        // Not PEM at all.
        .env("OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE", path(&garbage))
        // A private key where a certificate is expected: its content must not be printed.
        .env(
            "OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE",
            path(&pki.client.key),
        )
        // A directory: it cannot be read as a file.
        .env("OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY", path(dir.path()))
        // A certificate where a private key is expected.
        .env("OTEL_EXPORTER_OTLP_CLIENT_KEY", path(&pki.ca))
        // Reported with the rest.
        .env("RODENT_PORT", "abc")
        .no_wait()
        .spawn();
    assert_eq!(unusable.exit_code(PATIENCE), 78);
    let expected: BTreeSet<String> = [
        "OTEL_EXPORTER_OTLP_CERTIFICATE",
        "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE",
        "OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE",
        "OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY",
        "OTEL_EXPORTER_OTLP_CLIENT_KEY",
        "RODENT_PORT",
    ]
    .into_iter()
    .map(str::to_string)
    .collect();
    assert_eq!(
        refused(&unusable),
        expected,
        "{}",
        unusable.raw_lines().join("\n")
    );
    assert!(
        !unusable.raw_lines().iter().any(|l| l.contains(&key_body)),
        "a private key was printed"
    );

    // A certificate and a key that do not belong together, and a key with no certificate.
    let mut mismatched = rodent()
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", "https://127.0.0.1:4318")
        .env(
            "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
            path(&pki.client.cert),
        )
        .env("OTEL_EXPORTER_OTLP_CLIENT_KEY", path(&pki.stranger.key))
        .no_wait()
        .spawn();
    assert_eq!(mismatched.exit_code(PATIENCE), 78);
    assert!(
        refused(&mismatched).contains("OTEL_EXPORTER_OTLP_CLIENT_KEY"),
        "{}",
        mismatched.raw_lines().join("\n")
    );
    let mut half = rodent()
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", "https://127.0.0.1:4318")
        .env(
            "OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY",
            path(&pki.client.key),
        )
        .no_wait()
        .spawn();
    assert_eq!(half.exit_code(PATIENCE), 78);
    assert!(
        refused(&half).contains("OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE"),
        "{}",
        half.raw_lines().join("\n")
    );
}
