//! The SDK's error: what the API answered (its status, code and message), or why no
//! answer came.

use std::time::Duration;

use reqwest::header::RETRY_AFTER;
use serde::Deserialize;

/// An error of a call to the agent API.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// 401: the deployment's bearer token is missing or wrong (see [`Client::with_token`]).
    ///
    /// [`Client::with_token`]: crate::Client::with_token
    #[error("401 unauthorized: {message}")]
    Unauthorized {
        /// What the server said.
        message: String,
    },
    /// Any other error the API answered: `{"error": {"code", "message"}}` with its status.
    #[error("{status} {code}: {message}")]
    Api {
        /// HTTP status.
        status: u16,
        /// The API's stable code (`unknown_lease`, `queue_full`, ...), or `http` when the
        /// answer was not the API's JSON error (a proxy's, say).
        code: String,
        /// What the server said.
        message: String,
        /// How long to wait before trying again, when the server said (`Retry-After`).
        retry_after: Option<Duration>,
    },
    /// An `error` event a stream carried before it ended (storage failed under it). A
    /// subscription yields it and then resumes.
    #[error("stream error {code}: {message}")]
    Stream {
        /// The API's code.
        code: String,
        /// What the server said.
        message: String,
    },
    /// No answer: the connection failed, was cut or timed out, or the URL is wrong.
    #[error("http: {0}")]
    Http(#[from] reqwest::Error),
    /// An answer that is not the JSON expected.
    #[error("unexpected answer: {0}")]
    Decode(#[from] serde_json::Error),
}

impl Error {
    /// The HTTP status the API answered with, if it answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Unauthorized { .. } => Some(401),
            Error::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The API's error code (`unauthorized`, `unknown_lease`, ...), if it answered one.
    pub fn code(&self) -> Option<&str> {
        match self {
            Error::Unauthorized { .. } => Some("unauthorized"),
            Error::Api { code, .. } | Error::Stream { code, .. } => Some(code),
            _ => None,
        }
    }

    /// How long the server asked to wait before trying again (`Retry-After`).
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::Api { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// Whether the same call may succeed later: no answer (but for a malformed request),
    /// a server error, a limit that lifts by waiting (429 with `Retry-After`), a stream's
    /// storage failure.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Http(e) => !e.is_builder(),
            Error::Api {
                status,
                retry_after,
                ..
            } => *status >= 500 || (*status == 429 && retry_after.is_some()),
            Error::Stream { .. } => true,
            Error::Unauthorized { .. } | Error::Decode(_) => false,
        }
    }

    /// The error an answer with an error status carries.
    pub(crate) async fn from_response(response: reqwest::Response) -> Error {
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let body = response.bytes().await.unwrap_or_default();
        Error::from_parts(status, retry_after, &body)
    }

    fn from_parts(status: u16, retry_after: Option<Duration>, body: &[u8]) -> Error {
        #[derive(Deserialize)]
        struct Answer {
            error: Inner,
        }
        #[derive(Deserialize)]
        struct Inner {
            code: String,
            message: String,
        }
        let (code, message) = match serde_json::from_slice::<Answer>(body) {
            Ok(a) => (a.error.code, a.error.message),
            Err(_) => (
                "http".to_string(),
                String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned(),
            ),
        };
        if status == 401 {
            Error::Unauthorized { message }
        } else {
            Error::Api {
                status,
                code,
                message,
                retry_after,
            }
        }
    }

    /// The error an SSE `error` event carries (`{"code", "message"}`).
    pub(crate) fn from_stream_event(data: &str) -> Error {
        #[derive(Deserialize)]
        struct Inner {
            code: String,
            message: String,
        }
        match serde_json::from_str::<Inner>(data) {
            Ok(e) => Error::Stream {
                code: e.code,
                message: e.message,
            },
            Err(_) => Error::Stream {
                code: "unavailable".into(),
                message: data.to_string(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn reads_the_api_error_body() {
        let e = Error::from_parts(
            429,
            Some(Duration::from_secs(1)),
            br#"{"error": {"code": "queue_full", "message": "full"}}"#,
        );
        assert_eq!(e.status(), Some(429));
        assert_eq!(e.code(), Some("queue_full"));
        assert_eq!(e.retry_after(), Some(Duration::from_secs(1)));
        assert!(e.is_retryable());
        assert_eq!(e.to_string(), "429 queue_full: full");
    }

    #[test]
    fn a_401_is_unauthorized_and_a_foreign_body_is_kept() {
        let e = Error::from_parts(
            401,
            None,
            br#"{"error": {"code": "unauthorized", "message": "m"}}"#,
        );
        assert!(matches!(e, Error::Unauthorized { ref message } if message == "m"));
        assert!(!e.is_retryable());
        let e = Error::from_parts(405, None, b"Method Not Allowed");
        assert_eq!(e.code(), Some("http"));
        assert!(matches!(e, Error::Api { ref message, .. } if message == "Method Not Allowed"));
        assert!(!Error::from_parts(429, None, b"{}").is_retryable());
    }

    #[test]
    fn a_stream_error_event() {
        let e = Error::from_stream_event(r#"{"code":"unavailable","message":"disk"}"#);
        assert_eq!(e.code(), Some("unavailable"));
        assert!(e.is_retryable());
    }
}
