//! The admin HTTP API: health, `/metrics`, the OpenAPI document, and `/api/v1/...` for the
//! node, its streams, users and the log level, plus the routes each frontend contributes
//! under `/api/v1/<frontend>`. Every error is JSON: `{"code": "...", "message": "..."}`.

mod auth;
mod cluster;
mod log;
mod node;
mod openapi;
pub mod tls_listener;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, delete, get, post, put};
use axum::{Json, Router};
use parking_lot::Mutex;
use serde::Serialize;
use strata_frontend::admin::http::{ACTOR, AdminApi, ApiError, ApiResult, ErrorBody};
use strata_frontend::security::Security;
use strata_frontend::security::tokens::Role;
use strata_journal::Journal;
use utoipa::ToSchema;

use super::log_filter::LogControl;
use super::metrics::{METRICS_CONTENT_TYPE, NodeMetrics, VERSION};

/// Everything the admin API reads and acts on.
#[derive(Clone)]
pub struct AdminState {
    /// The node's registry and uptime.
    pub metrics: Arc<NodeMetrics>,
    /// The storage engine.
    pub journal: Journal,
    /// The seams the frontends see (the audit log is appended through them).
    pub storage: strata_frontend::seams::Storage,
    /// The effective configuration, secrets masked.
    pub config: Arc<serde_json::Value>,
    /// The runtime log filter.
    pub log: LogControl,
    /// The frontends this node runs, by name.
    pub frontends: Arc<[&'static str]>,
    /// Every listener the node bound (name, address), the admin one included.
    pub listeners: Arc<Mutex<Vec<(String, SocketAddr)>>>,
    /// The bearer token `/api/v1/...` requires, if any.
    pub token: Option<Arc<str>>,
    /// Users, ACL and bans.
    pub security: Security,
    /// This node's part of the meta service.
    pub meta: Arc<strata_meta::MetaNode>,
    /// The replicated partitions this node holds a copy of.
    pub replicas: Arc<strata_local::replica::Replicas>,
}

impl AdminState {
    /// Records a change made through the admin API in the audit log, with the token that
    /// made it.
    pub async fn audit(&self, action: &str, target: &str) {
        strata_frontend::admin::http::audit(&self.storage, action, target).await;
    }
}

/// A frontend's admin routes, as the node mounts them.
#[derive(Debug)]
pub struct FrontendApi {
    /// The frontend's name: its routes are under `/api/v1/<name>`.
    pub name: &'static str,
    /// Whether this node runs it; a disabled frontend's routes answer 404 `disabled`.
    pub enabled: bool,
    /// Its routes and their document.
    pub api: AdminApi,
}

/// Builds the admin routes: the node's own and those of every frontend.
pub fn router(state: AdminState, frontends: Vec<FrontendApi>) -> Router {
    let document = openapi::spec(frontends.iter().map(|f| f.api.openapi.clone()));
    let mut api: Router = Router::new()
        .route("/node", get(node::status))
        .route("/node/config", get(node::config))
        .route("/streams", get(node::streams))
        .route("/streams/{name}", get(node::stream))
        .route(
            "/streams/{name}/partitions/{partition}",
            get(node::partition),
        )
        .route("/auth/users", get(auth::users))
        .route(
            "/auth/users/{name}",
            put(auth::put_user).delete(auth::delete_user),
        )
        .route("/auth/acl", get(auth::acl).put(auth::set_acl))
        .route("/auth/bans", get(auth::bans).post(auth::add_ban))
        .route("/auth/bans/{kind}/{value}", delete(auth::remove_ban))
        .route("/log", get(log::state))
        .route("/log/level", put(log::set_level))
        .route("/log/overrides", post(log::add_override))
        .route("/log/overrides/{id}", delete(log::remove_override))
        .route("/auth/tokens", get(auth::tokens).post(auth::create_token))
        .route("/auth/tokens/{name}", delete(auth::revoke_token))
        .route(
            "/cluster/nodes",
            get(cluster::nodes).post(cluster::add_node),
        )
        .route("/cluster/nodes/{id}", delete(cluster::remove_node))
        .route("/cluster/leaders", get(cluster::leaders))
        .route("/cluster/replicas", get(cluster::replicas))
        .route("/cluster/rebalance", post(cluster::rebalance))
        .route(
            "/cluster/partitions/{stream}/{partition}/replicas",
            post(cluster::move_replicas),
        )
        .with_state(state.clone())
        .route(
            "/openapi.json",
            get(openapi::document).with_state(openapi::serialized(&document)),
        );
    for f in frontends {
        let routes = if f.enabled {
            f.api.router
        } else {
            // Real routes, not a fallback: a nested router's fallback is dropped when the
            // API is nested under `/api/v1`, and fallbacks escape the token check.
            let name = f.name;
            let disabled = move || async move { ApiError::disabled(name) };
            Router::new()
                .route("/", any(disabled))
                .route("/{*rest}", any(disabled))
        };
        api = api.nest(&format!("/{}", f.name), routes);
    }
    let api = api.route_layer(axum::middleware::from_fn_with_state(
        state.clone(),
        require_token,
    ));
    let requests = request_counter(state.metrics.registry());
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics_text))
        .with_state(state)
        .nest("/api/v1", api)
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(not_found)
        .layer(axum::middleware::from_fn(move |req, next| {
            count_request(requests.clone(), req, next)
        }))
}

/// Refuses `/api/v1/...` requests without a valid bearer token once the node has one
/// (`[admin] token`, an administrator, or tokens created through the API): 401 without
/// one, 403 for a viewer's request that is not a read. Every request runs with its
/// token's name as the audit actor.
async fn require_token(
    State(state): State<AdminState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if state.token.is_none() && !state.security.has_tokens() {
        return ACTOR.scope("anonymous".to_string(), next.run(req)).await;
    }
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let found = given.and_then(|g| match &state.token {
        Some(t) if constant_time_eq(g.as_bytes(), t.as_bytes()) => {
            Some(("config".to_string(), Role::Administrator))
        }
        _ => state.security.check_token(g),
    });
    if let Some((name, role)) = found {
        let reads = matches!(*req.method(), Method::GET | Method::HEAD);
        if role == Role::Viewer && !reads {
            return ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!("token `{name}` is a viewer's: it may only read"),
            )
            .into_response();
        }
        return ACTOR.scope(name, next.run(req)).await;
    }
    let mut response = ApiError::new(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "this node's admin API needs `Authorization: Bearer <token>` ([admin] token)".into(),
    )
    .into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        axum::http::HeaderValue::from_static("Bearer"),
    );
    response
}

/// Compares without stopping at the first difference, so timing does not reveal how much
/// of a guessed token was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `strata_admin_requests_total{method, route, status}`: every admin request, bad ones
/// included (`route` is the matched pattern, `unmatched` for unknown paths).
fn request_counter(registry: &prometheus::Registry) -> prometheus::IntCounterVec {
    strata_metrics::counter_vec(
        registry,
        "strata_admin_requests_total",
        "Admin API requests by method, route and HTTP status.",
        &["method", "route", "status"],
    )
}

async fn count_request(
    counter: prometheus::IntCounterVec,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    // Bounded label values: methods outside the standard ones are `other`.
    let method = match *req.method() {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    };
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let response = next.run(req).await;
    counter
        .with_label_values(&[method, &route, response.status().as_str()])
        .inc();
    response
}

/// Serves `router` on `listener` until `stop` completes, then stops accepting and waits for
/// in-flight requests. The caller bounds that wait: an idle client can hold it open.
pub async fn serve<L>(
    listener: L,
    router: Router,
    stop: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()>
where
    L: axum::serve::Listener,
    L::Addr: std::fmt::Debug,
{
    axum::serve(listener, router)
        .with_graceful_shutdown(stop)
        .await
}

/// The body of `GET /health`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// Always `ok` while the node serves.
    status: &'static str,
    /// The node's version.
    version: &'static str,
    /// Seconds since the node started.
    uptime_seconds: u64,
}

/// Liveness: the node is up and serving its admin API.
#[utoipa::path(get, path = "/health", tag = "node",
    responses((status = 200, description = "The node is up", body = Health)))]
async fn health(State(s): State<AdminState>) -> Json<Health> {
    Json(Health {
        status: "ok",
        version: VERSION,
        uptime_seconds: s.metrics.uptime().as_secs(),
    })
}

/// Every metric of the node in Prometheus' text format 0.0.4.
#[utoipa::path(get, path = "/metrics", tag = "node",
    responses((status = 200, description = "Prometheus text exposition", body = String,
        content_type = "text/plain")))]
async fn metrics_text(State(s): State<AdminState>) -> Response {
    match s.metrics.render() {
        Ok(text) => ([(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)], text).into_response(),
        Err(err) => {
            tracing::error!(error = %err, "cannot render metrics");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                err.to_string(),
            )
            .into_response()
        }
    }
}

async fn not_found(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no route for {method} {uri}"),
    )
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    let message = format!("{method} is not allowed on {}", uri.path());
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        message,
    )
}
