//! compose.yaml's `chain` profile: a frontend whose `POST /echo` forwards to a backend by its
//! service name, through Docker's DNS, from the static binary in the scratch image.

use super::*;

#[tokio::test]
async fn the_chain_profile_runs_a_frontend_that_forwards_to_its_backend() {
    require!(engine(), compose());
    let project = ComposeProject::of(Some("chain"), &["rodent", "backend", "frontend"]);
    let up = tokio::time::timeout(
        Duration::from_secs(120),
        project.run(&["up", "--detach", "--wait"]),
    )
    .await
    .expect("docker compose up --wait returns within 2 minutes");
    assert!(
        up.status.success(),
        "docker compose --profile chain up --wait failed ({}):\n{}",
        up.status,
        String::from_utf8_lossy(&up.stderr)
    );
    let port = project.run(&["port", "frontend", "8080"]).await;
    let url = loopback_url(String::from_utf8_lossy(&port.stdout).trim());
    let response = client()
        .post(format!("{url}/echo"))
        .header("x-request-id", "two-tier")
        .body("hello")
        .send()
        .await
        .expect("the frontend answers");
    assert_eq!(response.status(), 200);
    let answer: serde_json::Value = response.json().await.expect("a JSON answer");
    assert_eq!(
        answer["backends"][0]["url"], "http://backend:8080/echo",
        "{answer}"
    );
    assert_eq!(answer["backends"][0]["status"], 200, "{answer}");
    assert_eq!(answer["backends"][0]["body"], "hello", "{answer}");
    // The backend logged the frontend's call under the client's request id.
    let logs = project.run(&["logs", "backend"]).await;
    let logs = String::from_utf8_lossy(&logs.stdout);
    assert!(
        logs.lines()
            .any(|l| l.contains("\"route\":\"/echo\"") && l.contains("two-tier")),
        "{logs}"
    );
}
