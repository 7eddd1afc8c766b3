//! Traces of an application on the library (`tests/fixtures/app.rs`): its name and version on
//! the resource, and its own tracing layer next to rodent's log and OTLP export.

use nix::sys::signal::Signal::SIGTERM;

use super::receiver::Receiver;
use kit::{PATIENCE, TempDir, example, rodent};

#[tokio::test]
async fn the_applications_layer_joins_rodents_log_and_export() {
    let fixture = example("fixture");
    assert!(
        fixture.exists(),
        "{} is missing: build the examples first (scripts/test --no-run)",
        fixture.display()
    );
    let receiver = Receiver::start();
    let dir = TempDir::new("app-layer");
    let layer_file = dir.join("events");
    let mut app = rodent()
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint())
        .env("OTEL_BSP_SCHEDULE_DELAY", "20")
        .env("LAYER_FILE", layer_file.to_str().unwrap())
        .spawn_program(&fixture);
    assert_eq!(app.get("/greeting").await.status(), 200);

    // Exported as the application: its name and version.
    let span = receiver.wait_for("GET /greeting", |s| s.span.name == "GET /greeting");
    assert_eq!(span.resource["service.name"], "fixture");
    assert_eq!(span.resource["service.version"], "7.1.2");
    // rodent's log has the application's event, and so has the application's own layer.
    app.wait_log(|l| l["message"] == "greeted" && l["greeting"] == "hello");
    let seen = std::fs::read_to_string(&layer_file).unwrap();
    assert!(seen.lines().any(|l| l == "greeted"), "{seen}");
    assert!(
        seen.lines().any(|l| l == "listening"),
        "rodent's events too: {seen}"
    );

    app.signal(SIGTERM);
    assert_eq!(app.exit_code(PATIENCE), 0);
}

#[tokio::test]
async fn the_notes_example_is_exported_under_its_own_name() {
    let notes = example("notes");
    assert!(
        notes.exists(),
        "{} is missing: build the examples first (scripts/test --no-run)",
        notes.display()
    );
    let receiver = Receiver::start();
    let dir = TempDir::new("notes-traces");
    let mut app = rodent()
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint())
        .env("OTEL_BSP_SCHEDULE_DELAY", "20")
        .env("NOTES_DATABASE", dir.join("notes.db").to_str().unwrap())
        .spawn_program(&notes);
    assert_eq!(app.get("/notes").await.status(), 200);
    let span = receiver.wait_for("GET /notes", |s| s.span.name == "GET /notes");
    assert_eq!(span.resource["service.name"], "notes");
    assert_eq!(span.resource["service.version"], "1.0.0");
    app.signal(SIGTERM);
    assert_eq!(app.exit_code(PATIENCE), 0);
}
