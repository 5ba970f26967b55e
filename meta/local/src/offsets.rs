//! Consumer positions of a cluster ([`PositionStore`] for [`ClusterStreams`]): kept by the
//! meta service, so whichever node coordinates a group after a move serves the offsets
//! its members committed through another. Reads answer from what this node has applied; a
//! commit returns once this node has applied it too.

use async_trait::async_trait;
use strata_frontend::seams::positions::{Position, PositionStore, StreamPosition, valid_consumer};
use strata_frontend::seams::{StoreError, StoreResult};
use strata_meta::model::{Command, CommittedOffset, Outcome};

use crate::cluster::ClusterStreams;

fn position(c: &CommittedOffset) -> Position {
    Position {
        offset: c.offset,
        leader_epoch: c.leader_epoch,
        metadata: c.metadata.clone(),
    }
}

impl ClusterStreams {
    /// Writes `command` and waits until this node applied it; errors as the catalog's.
    async fn write_offsets(&self, consumer: &str, command: Command) -> StoreResult<()> {
        match self.meta().write_applied(command).await {
            Ok(Outcome::Done) => Ok(()),
            Ok(Outcome::NotFound(why)) => Err(StoreError::UnknownStream(why)),
            Ok(Outcome::Invalid(why)) => Err(StoreError::Invalid(why)),
            Ok(other) => Err(StoreError::Storage(format!(
                "unexpected meta outcome {other:?} for the offsets of {consumer}"
            ))),
            Err(e) => Err(StoreError::Unavailable(e.to_string())),
        }
    }
}

#[async_trait]
impl PositionStore for ClusterStreams {
    fn get(&self, consumer: &str, stream: &str, partition: i32) -> Option<Position> {
        let partition = u32::try_from(partition).ok()?;
        self.meta()
            .read(|s| s.committed(consumer, stream, partition).map(position))
    }

    fn scan(&self, consumer: &str) -> Vec<StreamPosition> {
        self.meta().read(|s| {
            s.offsets
                .get(consumer)
                .into_iter()
                .flatten()
                .flat_map(|(stream, parts)| {
                    parts
                        .iter()
                        .map(move |(&p, c)| (stream.clone(), p as i32, position(c)))
                })
                .collect()
        })
    }

    fn consumers(&self) -> Vec<String> {
        self.meta().read(|s| s.offsets.keys().cloned().collect())
    }

    async fn commit(&self, consumer: &str, positions: Vec<StreamPosition>) -> StoreResult<()> {
        if !valid_consumer(consumer) {
            return Err(StoreError::Invalid(format!(
                "bad consumer name {consumer:?}"
            )));
        }
        let mut offsets = Vec::with_capacity(positions.len());
        for (stream, partition, p) in positions {
            let Ok(partition) = u32::try_from(partition) else {
                return Err(StoreError::Invalid(format!(
                    "no partition {partition} in `{stream}`"
                )));
            };
            let c = CommittedOffset {
                offset: p.offset,
                leader_epoch: p.leader_epoch,
                metadata: p.metadata,
            };
            offsets.push((stream, partition, c));
        }
        let command = Command::CommitOffsets {
            group: consumer.to_string(),
            offsets,
        };
        self.write_offsets(consumer, command).await
    }

    async fn forget(&self, consumer: &str) -> StoreResult<()> {
        if !self.meta().read(|s| s.offsets.contains_key(consumer)) {
            return Ok(());
        }
        let command = Command::DeleteOffsets {
            group: consumer.to_string(),
        };
        self.write_offsets(consumer, command).await
    }
}
