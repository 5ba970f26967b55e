//! The public queues as other frontends reach them (`[agent] mqtt_prefix`): an MQTT
//! publish to `<prefix><queue>` is a send, an MQTT subscription to it a consumer taking
//! messages on leases, settled by its PUBACKs. The same checks and limits as the HTTP
//! API's apply; mailboxes and the frontend's own queues (names starting with `_`) are not
//! reachable.
//!
//! Payloads: a message body is JSON. A published payload that is JSON is stored as that
//! value; any other UTF-8 text as a JSON string; anything else is refused. A body handed
//! to MQTT is its JSON text, except a string, which goes as its text: what an MQTT client
//! published comes back as it was (JSON up to formatting).

use std::sync::Arc;

use async_trait::async_trait;
use axum::http::StatusCode;
use strata_frontend::work_queues::{Leased, QueueError, QueueErrorKind, QueueItem, WorkQueues};

use crate::error::AgentError;
use crate::http::{self, Api};

/// The agent frontend's queues, for other frontends.
pub struct LinkedQueues {
    api: Arc<Api>,
}

impl LinkedQueues {
    /// The queues of `api`.
    pub fn new(api: Arc<Api>) -> Self {
        LinkedQueues { api }
    }

    /// `error` for the other frontend, counted as the HTTP API counts its errors.
    fn refused(&self, error: AgentError) -> QueueError {
        self.api
            .metrics
            .errors
            .with_label_values(&[error.code])
            .inc();
        let kind = match error.status {
            StatusCode::TOO_MANY_REQUESTS => QueueErrorKind::Full,
            StatusCode::PAYLOAD_TOO_LARGE => QueueErrorKind::TooLarge,
            StatusCode::NOT_FOUND if error.code == "unknown_lease" => QueueErrorKind::Lease,
            StatusCode::NOT_FOUND if error.code == "unknown_queue" => QueueErrorKind::Unknown,
            StatusCode::NOT_FOUND => QueueErrorKind::BadName,
            s if s.is_server_error() => QueueErrorKind::Unavailable,
            _ if error.code == "bad_name" => QueueErrorKind::BadName,
            _ => QueueErrorKind::BadInput,
        };
        QueueError {
            kind,
            message: error.message,
        }
    }
}

/// A published payload as a message body.
pub fn body_of(payload: &[u8]) -> Result<serde_json::Value, AgentError> {
    if let Ok(value) = serde_json::from_slice(payload) {
        return Ok(value);
    }
    match std::str::from_utf8(payload) {
        Ok(text) => Ok(serde_json::Value::String(text.to_string())),
        Err(_) => Err(AgentError::bad_request(
            "bad_payload",
            "a payload sent to a queue is JSON or UTF-8 text",
        )),
    }
}

/// A message body as a payload.
pub fn payload_of(body: &serde_json::Value) -> Vec<u8> {
    match body {
        serde_json::Value::String(text) => text.as_bytes().to_vec(),
        other => serde_json::to_vec(other).unwrap_or_default(),
    }
}

#[async_trait]
impl WorkQueues for LinkedQueues {
    async fn send(&self, queue: &str, item: QueueItem) -> Result<(), QueueError> {
        let sent = async {
            let queue = http::public(queue)?;
            if item.payload.len() > self.api.max_body_bytes {
                return Err(http::too_large(self.api.max_body_bytes));
            }
            if item.idempotency_key.as_ref().is_some_and(|k| {
                k.is_empty()
                    || k.len() > http::MAX_IDEMPOTENCY_KEY
                    || !k.bytes().all(|b| b.is_ascii_graphic())
            }) {
                return Err(AgentError::bad_request(
                    "bad_idempotency_key",
                    format!(
                        "an idempotency key is 1 to {} visible ASCII characters",
                        http::MAX_IDEMPOTENCY_KEY
                    ),
                ));
            }
            let envelope = http::envelope(
                body_of(&item.payload)?,
                item.key.as_deref(),
                item.tags,
                item.ttl_ms,
                None,
            )?;
            let level = item.priority.unwrap_or(1);
            self.api
                .queues
                .send(
                    queue,
                    level,
                    item.key.as_deref(),
                    envelope,
                    item.idempotency_key.as_deref(),
                )
                .await
        };
        sent.await.map(|_| ()).map_err(|e| self.refused(e))
    }

    async fn fetch(
        &self,
        queue: &str,
        max: usize,
        lease_ms: i64,
        wait_ms: i64,
    ) -> Result<Vec<Leased>, QueueError> {
        let fetched = async {
            let queue = http::public(queue)?;
            self.api
                .queues
                .fetch(queue, max, Some(lease_ms), wait_ms)
                .await
        };
        let fetched = fetched.await.map_err(|e| self.refused(e))?;
        let mut out = Vec::with_capacity(fetched.len());
        for f in fetched {
            // A claim-checked body is read in: an MQTT client gets the body, not a claim.
            let payload = match &f.envelope.claim {
                Some(claim) => match self.api.blobs.get(&claim.id).await {
                    Ok(text) => serde_json::from_slice(&text)
                        .map(|v| payload_of(&v))
                        .unwrap_or(text),
                    Err(e) => {
                        // Not handed out without its body: back to the queue, counted.
                        let _ = self.api.queues.settle(queue, &f.lease, Some(1000)).await;
                        return Err(self.refused(e));
                    }
                },
                None => payload_of(&f.envelope.body),
            };
            out.push(Leased {
                payload,
                id: f.id,
                lease: f.lease,
                attempt: f.attempt,
                priority: f.priority,
                key: f.key,
                tags: f.envelope.tags,
            });
        }
        Ok(out)
    }

    async fn ack(&self, queue: &str, lease: &str) -> Result<(), QueueError> {
        self.api
            .queues
            .settle(queue, lease, None)
            .await
            .map(|_| ())
            .map_err(|e| self.refused(e))
    }

    async fn nack(&self, queue: &str, lease: &str) -> Result<(), QueueError> {
        self.api
            .queues
            .settle(queue, lease, Some(0))
            .await
            .map(|_| ())
            .map_err(|e| self.refused(e))
    }

    async fn release(&self, queue: &str, lease: &str) -> Result<(), QueueError> {
        self.api
            .queues
            .release(queue, lease)
            .await
            .map_err(|e| self.refused(e))
    }

    async fn extend(&self, queue: &str, lease: &str, lease_ms: i64) -> Result<(), QueueError> {
        self.api
            .queues
            .extend(queue, lease, lease_ms)
            .await
            .map(|_| ())
            .map_err(|e| self.refused(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_round_trip_through_bodies() {
        for payload in [&b"{\"n\":1}"[..], b"plain text", b"42", b"\"quoted\""] {
            let body = body_of(payload).expect("JSON or text");
            let back = payload_of(&body);
            // JSON strings come back as their text; everything else as it was sent.
            if payload == b"\"quoted\"" {
                assert_eq!(back, b"quoted");
            } else {
                assert_eq!(back, payload);
            }
        }
        assert_eq!(
            body_of(&[0xff, 0xfe]).expect_err("not text").code,
            "bad_payload"
        );
    }
}
