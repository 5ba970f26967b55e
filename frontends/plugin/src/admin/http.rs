//! The admin API's HTTP vocabulary, shared by the node's own routes and those each
//! frontend contributes: the JSON error every endpoint answers with, the acting token's
//! name for the audit log, and what a frontend hands the node ([`AdminApi`]).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde::Serialize;
use utoipa::ToSchema;

use super::AdminError;
use crate::seams::Storage;
use crate::security::SecurityError;

tokio::task_local! {
    /// The name of the token the current request came with (`anonymous` without one).
    /// The node's token check runs every `/api/v1` request inside this scope.
    pub static ACTOR: String;
}

/// A frontend's part of the admin API: routes the node serves under `/api/v1/<name>`
/// (behind the same token check as its own), and their OpenAPI document (paths written
/// in full, `/api/v1/<name>/...`), merged into the node's.
pub struct AdminApi {
    /// The routes, their state already applied; paths relative to `/api/v1/<name>`.
    pub router: Router,
    /// Their OpenAPI document.
    pub openapi: utoipa::openapi::OpenApi,
}

impl std::fmt::Debug for AdminApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminApi").finish_non_exhaustive()
    }
}

/// Records a change made through the admin API in the audit log, with the token that
/// made it (the current [`ACTOR`]).
pub async fn audit(storage: &Storage, action: &str, target: &str) {
    let actor = ACTOR
        .try_with(Clone::clone)
        .unwrap_or_else(|_| "anonymous".to_string());
    crate::audit::record(storage, action, target, &actor).await;
}

/// The error every admin endpoint answers with. `code` is stable and meant for programs
/// (`not_found`, `bad_request`, `unavailable`, `disabled`, `internal`, ...); `message` is
/// for people.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// Machine-readable error code.
    code: &'static str,
    /// What went wrong.
    message: String,
}

/// An [`ErrorBody`] with its HTTP status.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    body: ErrorBody,
}

/// What handlers return.
pub type ApiResult<T> = Result<Json<T>, ApiError>;

impl ApiError {
    /// An error with this status, code and message.
    pub fn new(status: StatusCode, code: &'static str, message: String) -> Self {
        Self {
            status,
            body: ErrorBody { code, message },
        }
    }

    /// 400 `bad_request`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message.into())
    }

    /// 404 `not_found`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message.into())
    }

    /// 404 `disabled`: the routes of a frontend this node does not run.
    pub fn disabled(frontend: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "disabled",
            format!("the {frontend} frontend is not enabled on this node"),
        )
    }
}

impl From<AdminError> for ApiError {
    fn from(e: AdminError) -> Self {
        match e {
            AdminError::NotFound(m) => Self::not_found(m),
            AdminError::BadRequest(m) => Self::bad_request(m),
            AdminError::Unavailable(m) => {
                Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", m)
            }
        }
    }
}

impl From<SecurityError> for ApiError {
    fn from(e: SecurityError) -> Self {
        match e {
            SecurityError::Invalid(m) => Self::bad_request(m),
            SecurityError::NotFound(m) => Self::not_found(m),
            SecurityError::Fixed(m) => Self::new(StatusCode::CONFLICT, "configured", m),
            SecurityError::Store(e) => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                e.to_string(),
            ),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body)).into_response()
    }
}
