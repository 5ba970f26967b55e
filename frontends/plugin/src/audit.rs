//! The audit log: every change made through the admin API (or a protocol's own
//! administration, such as Kafka's CreateAcls), appended to the journal stream
//! `strata.audit` (one record per change: key = action, value = JSON with the time, the
//! action, what it was about and who made it). Never a secret: a password change records
//! the username only. The stream is internal: Kafka clients cannot delete or write it.

use serde::Serialize;
use strata_batch::{BatchBuilder, now_ms};

use crate::seams::{Storage, StoreError, StreamSpec};

/// The stream audit records go to.
pub const STREAM: &str = "strata.audit";

#[derive(Debug, Serialize)]
struct AuditRecord<'a> {
    time_ms: i64,
    action: &'a str,
    target: &'a str,
    actor: &'a str,
}

/// Appends one audit record, creating the stream on first use. Logged too (target
/// `strata::audit`), so a failed append still leaves a trace.
pub async fn record(storage: &Storage, action: &str, target: &str, actor: &str) {
    tracing::info!(target: "strata::audit", action, target_name = target, actor, "change");
    if let Err(e) = append(storage, action, target, actor).await {
        tracing::error!(action, error = %e, "audit record not stored");
    }
}

async fn append(
    storage: &Storage,
    action: &str,
    target: &str,
    actor: &str,
) -> Result<(), StoreError> {
    storage.ensure_stream(StreamSpec::new(STREAM, 1)).await?;
    let time_ms = now_ms();
    let value = serde_json::to_vec(&AuditRecord {
        time_ms,
        action,
        target,
        actor,
    })
    .unwrap_or_default();
    let mut b = BatchBuilder::new();
    b.push(time_ms, Some(action.as_bytes()), Some(&value), &[]);
    storage
        .partition(STREAM, 0)
        .await?
        .append(b.build()?)
        .await?;
    Ok(())
}
