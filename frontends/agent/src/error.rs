//! The agent API's errors: an HTTP status and a JSON body
//! `{"error": {"code": "...", "message": "..."}}`, with `Retry-After` when waiting helps.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use strata_frontend::seams::StoreError;

/// The code of the error a response carries (in its extensions).
#[derive(Debug, Clone, Copy)]
pub struct ErrorCode(pub &'static str);

/// An error answered to a client.
#[derive(Debug, Clone)]
pub struct AgentError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable, machine-readable code (also the `code` label of the error metric).
    pub code: &'static str,
    /// What happened, for a person.
    pub message: String,
    /// Seconds to wait before trying again, when that helps.
    pub retry_after: Option<u64>,
}

impl AgentError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        AgentError {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// 400: the request is wrong.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 401: no token, or a wrong one.
    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid bearer token is required",
        )
    }

    /// 404: no such thing.
    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }

    /// 429: a limit is reached; try again in a second.
    pub fn too_many(code: &'static str, message: impl Into<String>) -> Self {
        AgentError {
            retry_after: Some(1),
            ..Self::new(StatusCode::TOO_MANY_REQUESTS, code, message)
        }
    }

    /// 429 without Retry-After: a bound that waiting does not lift (only deleting does).
    pub fn full(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::TOO_MANY_REQUESTS, code, message)
    }

    /// 503: storage cannot answer now; try again.
    pub fn unavailable(message: impl Into<String>) -> Self {
        AgentError {
            retry_after: Some(1),
            ..Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
        }
    }
}

impl IntoResponse for AgentError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({"error": {"code": self.code, "message": self.message}});
        let mut response = (self.status, axum::Json(body)).into_response();
        // For the router's guard, which counts errors by code.
        response.extensions_mut().insert(ErrorCode(self.code));
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

/// Storage that cannot answer: 503, try again.
impl From<StoreError> for AgentError {
    fn from(e: StoreError) -> Self {
        AgentError::unavailable(e.to_string())
    }
}
