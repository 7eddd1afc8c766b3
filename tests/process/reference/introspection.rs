//! What the platform did to a request, and what the process was given: `GET /headers` with
//! credentials masked, and `GET /env` behind the admin token with secrets masked.

use nix::sys::signal::Signal::SIGHUP;
use reqwest::Method;

use super::{TOKEN, admin};
use kit::{TempDir, client, rodent};

#[tokio::test]
async fn headers_come_back_as_json_with_credentials_masked() {
    let rodent = rodent().spawn();
    let response = client()
        .get(rodent.url("/headers"))
        .header("authorization", "Bearer abc123")
        .header("proxy-authorization", "Basic dXNlcjpwdw==")
        .header("cookie", "session=xyz789")
        .header("x-forwarded-for", "10.0.0.1")
        .header("x-mesh", "one")
        .header("x-mesh", "two")
        .header("x-request-id", "from-the-client")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    let text = response.text().await.unwrap();
    for secret in ["abc123", "dXNlcjpwdw", "xyz789"] {
        assert!(!text.contains(secret), "{secret} shown: {text}");
    }
    let headers: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(headers["authorization"], "***");
    assert_eq!(headers["proxy-authorization"], "***");
    assert_eq!(headers["cookie"], "***");
    assert_eq!(headers["x-forwarded-for"], "10.0.0.1");
    assert_eq!(headers["x-mesh"], "one, two");
    assert_eq!(headers["x-request-id"], "from-the-client");
    assert!(
        headers["host"].as_str().unwrap().starts_with("127.0.0.1:"),
        "{headers}"
    );
}

#[tokio::test]
async fn env_is_404_without_a_token_like_the_admin_api() {
    let rodent = rodent().env("SOME_SETTING", "visible").spawn();
    let (status, problem) = admin(&rodent, Method::GET, "/env", None).await;
    assert_eq!(status, 404, "{problem}");
    assert_eq!(rodent.get("/env").await.status(), 404);
}

#[tokio::test]
async fn env_shows_the_environment_to_the_token_with_secrets_masked() {
    let dir = TempDir::new("env-route");
    let env_file = dir.join("rodent.env");
    std::fs::write(&env_file, "FROM_THE_FILE=first\nAPI_KEY=k-42\n").unwrap();
    let rodent = rodent()
        .env("RODENT_ADMIN_TOKEN", TOKEN)
        .env("RODENT_ENV_FILE", env_file.to_str().unwrap())
        .env("SOME_SETTING", "visible")
        .env("DATABASE_PASSWORD", "hunter2")
        .env("GITHUB_TOKEN", "ghp_xyz")
        .env(
            "OTEL_EXPORTER_OTLP_HEADERS",
            "authorization=Bearer otlp-secret",
        )
        .spawn();
    let unauthorized = client().get(rodent.url("/env")).send().await.unwrap();
    assert_eq!(unauthorized.status(), 401);
    let wrong = client()
        .get(rodent.url("/env"))
        .bearer_auth("guess")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);

    // The token guards /env only: what no route matches is still a 404, to anyone.
    assert_eq!(rodent.get("/no/such/route").await.status(), 404);
    assert_eq!(rodent.get("/").await.status(), 200);
    let (status, env) = admin(&rodent, Method::GET, "/env", None).await;
    assert_eq!(status, 200, "{env}");
    let text = env.to_string();
    for secret in [TOKEN, "hunter2", "ghp_xyz", "otlp-secret", "k-42"] {
        assert!(!text.contains(secret), "{secret} shown: {text}");
    }
    assert_eq!(env["SOME_SETTING"], "visible");
    assert_eq!(env["FROM_THE_FILE"], "first");
    assert_eq!(env["RODENT_PORT"], "0");
    for masked in [
        "RODENT_ADMIN_TOKEN",
        "DATABASE_PASSWORD",
        "GITHUB_TOKEN",
        "OTEL_EXPORTER_OTLP_HEADERS",
        "API_KEY",
    ] {
        assert_eq!(env[masked], "***", "{masked}: {text}");
    }

    // The environment as of the last reload.
    std::fs::write(&env_file, "FROM_THE_FILE=second\n").unwrap();
    rodent.signal(SIGHUP);
    rodent.wait_log(|l| l["message"] == "configuration reloaded");
    let (_, env) = admin(&rodent, Method::GET, "/env", None).await;
    assert_eq!(env["FROM_THE_FILE"], "second");
}
