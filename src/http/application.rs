//! What the application brings to the request path: its routes (bounded or not, HTTP or gRPC),
//! its routes on the admin API, the layers it wraps around them, and whether its error bodies
//! are rewritten.
//! [`Rodent`](crate::Rodent)'s builder collects them here; the stack composes them.

use std::sync::Arc;

use axum::Router;

use super::routes;

/// Wraps a router in one of the application's layers (`Router::layer`, kept to be applied again
/// when a reload rebuilds the stack).
pub(crate) type OuterLayer = Arc<dyn Fn(Router) -> Router + Send + Sync>;

/// The application's part of the request path.
#[derive(Clone)]
pub(crate) struct Application {
    /// Behind the handler timeout and the body bounds; its fallback too, if it has one.
    pub(super) bounded: Router,
    /// Without the handler timeout and the body bounds.
    pub(super) unbounded: Router,
    /// gRPC methods whose calls have a deadline: unary ones.
    pub(super) grpc: Router,
    /// gRPC methods without the handler timeout: streaming ones.
    pub(super) unbounded_grpc: Router,
    /// Every route the application registered, bounded or not: merged at registration, so
    /// that what axum refuses to merge (an overlapping route, two fallbacks) is refused there.
    all: Router,
    /// On the admin API, relative to `/admin`.
    pub(super) admin: Router,
    /// Innermost first.
    pub(super) layers: Vec<OuterLayer>,
    /// Error responses with a small plain body are rewritten as problem+json.
    pub(super) rewrite_errors: bool,
}

impl Default for Application {
    fn default() -> Self {
        Self {
            bounded: Router::new(),
            unbounded: Router::new(),
            grpc: Router::new(),
            unbounded_grpc: Router::new(),
            all: Router::new(),
            admin: Router::new(),
            layers: Vec::new(),
            rewrite_errors: true,
        }
    }
}

impl Application {
    /// Adds routes behind the handler timeout and the body bounds; panics, naming it, on a path
    /// that is rodent's.
    #[track_caller]
    pub(crate) fn add_bounded(&mut self, router: Router) {
        let bounded = std::mem::take(&mut self.bounded);
        self.bounded = bounded.merge(self.checked(router));
    }

    /// Adds routes without the handler timeout and the body bounds; panics, naming it, on a
    /// path that is rodent's.
    #[track_caller]
    pub(crate) fn add_unbounded(&mut self, router: Router) {
        let unbounded = std::mem::take(&mut self.unbounded);
        self.unbounded = unbounded.merge(self.checked(router));
    }

    /// Adds gRPC methods whose calls have a deadline; panics, naming it, on a path that is
    /// rodent's.
    #[track_caller]
    pub(crate) fn add_grpc(&mut self, router: Router) {
        let grpc = std::mem::take(&mut self.grpc);
        self.grpc = grpc.merge(self.checked(router));
    }

    /// Adds gRPC methods without the handler timeout; panics, naming it, on a path that is
    /// rodent's.
    #[track_caller]
    pub(crate) fn add_unbounded_grpc(&mut self, router: Router) {
        let unbounded = std::mem::take(&mut self.unbounded_grpc);
        self.unbounded_grpc = unbounded.merge(self.checked(router));
    }

    /// Whether the application serves gRPC, and so the health service with it.
    pub(super) fn has_grpc(&self) -> bool {
        self.grpc.has_routes() || self.unbounded_grpc.has_routes()
    }

    /// The names of the application's gRPC services: the first segment of their routes'
    /// paths (`/{service}/{method}`).
    pub(super) fn grpc_services(&self) -> Vec<String> {
        let mut services: Vec<String> = routes::paths(&self.grpc)
            .into_iter()
            .chain(routes::paths(&self.unbounded_grpc))
            .filter_map(|path| Some(path.strip_prefix('/')?.split('/').next()?.to_string()))
            .filter(|service| !service.is_empty() && !service.starts_with('{'))
            .collect();
        services.sort();
        services.dedup();
        services
    }

    #[track_caller]
    fn checked(&mut self, router: Router) -> Router {
        if let Some(path) = routes::operational_collision(&router) {
            panic!(
                "the application route {path} collides with rodent's operational routes \
                 (/healthz, /readyz, /readyz/{{check}}, /metrics, /admin/... and \
                 /grpc.health.v1.Health/...); routes of the application's own on the admin API \
                 are added with Rodent::admin_routes"
            );
        }
        self.all = std::mem::take(&mut self.all).merge(router.clone());
        router
    }

    /// Adds routes to the admin API, relative to `/admin`; panics, naming it, on a path that is
    /// rodent's.
    #[track_caller]
    pub(crate) fn add_admin(&mut self, router: Router) {
        if let Some(path) = routes::first_collision(&router, &[routes::ADMIN_OWN]) {
            panic!(
                "the admin route /admin{path} collides with rodent's own admin routes \
                 (/admin{}/...)",
                routes::ADMIN_OWN
            );
        }
        self.admin = std::mem::take(&mut self.admin).merge(router);
    }

    pub(crate) fn add_layer(&mut self, layer: OuterLayer) {
        self.layers.push(layer);
    }

    pub(crate) fn rewrite_errors(&mut self, rewrite: bool) {
        self.rewrite_errors = rewrite;
    }
}
