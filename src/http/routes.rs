//! Which routes are rodent's own, what answers when no route matches, and the check that keeps
//! the application's routes out of rodent's.

use axum::Router;
use axum::http::{StatusCode, Uri};

use super::problem::Problem;

/// The routes that bypass the post-drain 503, and log at debug: probes and scrapes must keep
/// answering, and arrive too often to log by default. The gRPC health service's methods are
/// probes too (Kubernetes' `grpc:` probes call `Check`).
pub(crate) fn is_exempt(route: &str) -> bool {
    matches!(
        route,
        "/healthz"
            | "/readyz"
            | "/readyz/{check}"
            | "/metrics"
            | "/grpc.health.v1.Health/Check"
            | "/grpc.health.v1.Health/Watch"
    )
}

/// What the paths of rodent's operational routes start with: the application may not route
/// under them (`/readyz/{check}` names any check, `/admin` is the admin API's, which the
/// application extends through [`Rodent::admin_routes`](crate::Rodent::admin_routes), and the
/// gRPC health service is rodent's, answered from the lifecycle).
const OPERATIONAL: [&str; 5] = [
    "/healthz",
    "/readyz",
    "/metrics",
    "/admin",
    "/grpc.health.v1.Health",
];

/// Where the admin API's own routes are, relative to `/admin`.
pub(crate) const ADMIN_OWN: &str = "/readiness";

/// rodent's answer when no route matched and the application's fallback, if it has one, had
/// nothing to say (an empty 404).
pub(super) fn not_found(path: &str) -> Problem {
    Problem::new(StatusCode::NOT_FOUND).detail(format!("no route for {path}"))
}

/// The fallback of a router that has only rodent's routes (the management port's).
pub(super) async fn no_route(uri: Uri) -> Problem {
    not_found(uri.path())
}

/// The first path of `router` that is, or lies under, one of `reserved`; named as the
/// application wrote it.
pub(crate) fn first_collision(router: &Router, reserved: &[&str]) -> Option<String> {
    paths(router).into_iter().find(|path| {
        reserved.iter().any(|prefix| {
            path.strip_prefix(prefix)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        })
    })
}

/// The first path of the application's routes that collides with rodent's operational routes.
pub(crate) fn operational_collision(router: &Router) -> Option<String> {
    first_collision(router, &OPERATIONAL)
}

/// The path templates `router` routes, fallbacks left out.
///
/// axum has no accessor for them, on purpose (tokio-rs/axum#2515: "track which routes you add
/// yourself"), and rodent cannot track them: an application hands over a finished `Router`
/// (tonic's, one with `nest`ed parts). They are read from the router's `Debug` form, which
/// lists every path as `RouteId(n): "path"`. The unit tests below pin that form: an axum that
/// changes it fails them rather than letting collisions through unnoticed.
pub(super) fn paths(router: &Router) -> Vec<String> {
    const MARK: &str = "RouteId(";
    let debug = format!("{router:?}");
    // The fallback's own routes (`/` and a catch-all) come after the routes, in a router of
    // their own.
    let routes = debug
        .split_once("fallback_router:")
        .map_or(debug.as_str(), |(routes, _)| routes);
    let mut paths = Vec::new();
    let mut rest = routes;
    while let Some(at) = rest.find(MARK) {
        rest = &rest[at + MARK.len()..];
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let Some(quoted) = rest[digits..].strip_prefix("): \"") else {
            continue; // a route's id as a key of its endpoint, not of its path
        };
        let (path, after) = unquote(quoted);
        rest = after;
        if !path.contains("__private__axum_fallback") && !paths.contains(&path) {
            paths.push(path);
        }
    }
    paths
        .into_iter()
        .map(|p| p.replace("{*__private__axum_nest_tail_param}", "{*rest}"))
        .collect()
}

/// A string as `Debug` writes it, up to its closing quote; and what follows.
fn unquote(quoted: &str) -> (String, &str) {
    let mut text = String::new();
    let mut chars = quoted.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return (text, &quoted[i + 1..]),
            '\\' => {
                if let Some((_, escaped)) = chars.next() {
                    text.push(escaped);
                }
            }
            c => text.push(c),
        }
    }
    (text, "")
}

#[cfg(test)]
mod tests {
    use axum::routing::{any, get, post};

    use super::*;

    fn app() -> Router {
        Router::new()
            .route("/", get(|| async {}))
            .route("/users/{id}", get(|| async {}).post(|| async {}))
            .nest("/api", Router::new().route("/v1/items", post(|| async {})))
            .nest_service("/files", any(|| async {}))
            .fallback(|| async {})
    }

    #[test]
    fn every_path_is_read_and_no_fallback_is() {
        let mut found = paths(&app());
        found.sort();
        assert_eq!(
            found,
            [
                "/",
                "/api/v1/items",
                "/files",
                "/files/",
                "/files/{*rest}",
                "/users/{id}"
            ]
        );
        assert!(paths(&Router::new()).is_empty());
    }

    #[test]
    fn operational_paths_and_those_under_them_collide() {
        for path in [
            "/healthz",
            "/readyz",
            "/readyz/{check}",
            "/readyz/db",
            "/metrics",
            "/admin",
            "/admin/faults",
        ] {
            let router = app().route(path, post(|| async {}));
            assert_eq!(operational_collision(&router).as_deref(), Some(path));
        }
        let nested = Router::new().nest("/admin", Router::new().route("/x", get(|| async {})));
        assert_eq!(operational_collision(&nested).as_deref(), Some("/admin/x"));
    }

    #[test]
    fn neighbours_and_wildcards_do_not_collide() {
        let router = app()
            .route("/healthzz", get(|| async {}))
            .route("/metrics-old", get(|| async {}))
            .route("/administration", get(|| async {}))
            .route("/{*path}", get(|| async {}));
        assert_eq!(operational_collision(&router), None);
        let params = app().route("/{a}/{b}", get(|| async {}));
        assert_eq!(operational_collision(&params), None);
    }

    #[test]
    fn quoted_paths_are_read_whole() {
        let router = Router::new().route("/a\"b\\c", get(|| async {}));
        assert_eq!(paths(&router), ["/a\"b\\c"]);
    }
}
