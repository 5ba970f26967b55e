//! Claim-check: a message body over `claim_check_bytes` is stored once, as one record of
//! stream `agent.blobs` (in the node's default storage class: on object storage when the
//! node has it), and the message carries a claim (`{"id", "bytes"}`) instead. A consumer
//! reads the body with `GET /v1/blobs/{id}`; the SDKs do it for it.
//!
//! A claim's id is the record's offset and a random 128-bit key kept as the record's key:
//! knowing one blob's id says nothing of another's, so a mailbox's large bodies are no
//! easier to reach than its small ones.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use strata_batch::{BatchBuilder, now_ms};
use strata_frontend::seams::{Partition, Storage, StoreError};

use crate::error::AgentError;
use crate::storage::{StorageClass, ensure_stream};

/// Compares without stopping at the first difference: the time taken says nothing of how
/// much of a guessed key was right.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The stream large bodies are kept in.
pub const BLOBS_STREAM: &str = "agent.blobs";

/// Where a large body is: what a message carries instead of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    /// The body's id, for `GET /v1/blobs/{id}`.
    pub id: String,
    /// Its size, in bytes of JSON.
    pub bytes: u64,
}

/// The node's large bodies.
pub struct Blobs {
    storage: Storage,
    class: StorageClass,
    partition: tokio::sync::OnceCell<Arc<dyn Partition>>,
    /// Bodies larger than this (in bytes of JSON) are claim-checked.
    pub threshold: usize,
    /// The largest body a send may carry when it is claim-checked.
    pub max_bytes: usize,
}

impl std::fmt::Debug for Blobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Blobs")
            .field("class", &self.class)
            .field("threshold", &self.threshold)
            .field("max_bytes", &self.max_bytes)
            .finish()
    }
}

impl Blobs {
    /// Blobs kept in `storage`, in a stream of class `class` (`local` for `memory`: a
    /// message that outlives a restart must find its body).
    pub fn new(storage: Storage, class: StorageClass, threshold: usize, max_bytes: usize) -> Self {
        let class = match class {
            StorageClass::Memory => StorageClass::Local,
            other => other,
        };
        Blobs {
            storage,
            class,
            partition: tokio::sync::OnceCell::new(),
            threshold,
            max_bytes,
        }
    }

    async fn partition(&self) -> Result<Arc<dyn Partition>, AgentError> {
        self.partition
            .get_or_try_init(|| async {
                ensure_stream(&self.storage, BLOBS_STREAM, 1, self.class).await?;
                self.storage
                    .partition(BLOBS_STREAM, 0)
                    .await
                    .map_err(AgentError::from)
            })
            .await
            .cloned()
    }

    /// Keeps `body` (JSON text): its claim, once it is stored.
    pub async fn put(&self, body: &[u8]) -> Result<Claim, AgentError> {
        let key = format!("{:032x}", rand::random::<u128>());
        let mut batch = BatchBuilder::new();
        batch.push(now_ms(), Some(key.as_bytes()), Some(body), &[]);
        let batch = batch
            .build()
            .map_err(|e| AgentError::bad_request("bad_body", e.to_string()))?;
        let appended = self.partition().await?.append(batch).await?;
        Ok(Claim {
            id: format!("{}-{key}", appended.base_offset),
            bytes: body.len() as u64,
        })
    }

    /// The body claim `id` names.
    pub async fn get(&self, id: &str) -> Result<Vec<u8>, AgentError> {
        let unknown = || AgentError::not_found("unknown_blob", format!("no blob {id}"));
        let (offset, key) = id.split_once('-').ok_or_else(unknown)?;
        let offset: u64 = offset.parse().map_err(|_| unknown())?;
        if key.len() != 32 {
            return Err(unknown());
        }
        let partition = self.partition().await?;
        // The batch holding the offset (a read returns at least one whole batch).
        let read = partition.read(offset, 1).await;
        let batches = match read {
            Ok(batches) => batches,
            Err(StoreError::OffsetOutOfRange { .. }) => return Err(unknown()),
            Err(e) => return Err(e.into()),
        };
        batches
            .iter()
            .filter_map(|b| b.records().ok())
            .flatten()
            .filter_map(Result::ok)
            .find(|r| r.offset == offset)
            .filter(|r| r.key.as_deref().is_some_and(|k| same(k, key.as_bytes())))
            .and_then(|r| r.value)
            .map(|v| v.to_vec())
            .ok_or_else(unknown)
    }
}
