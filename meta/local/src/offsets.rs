//! Consumer positions of a cluster ([`PositionStore`] for [`ClusterStreams`]): kept by the
//! meta service, so whichever node coordinates a group after a move serves the offsets
//! its members committed through another. Reads answer from what this node has applied; a
//! commit returns once this node has applied it too.
//!
//! A commit is one meta command, all or none, while it fits in one ([`MAX_COMMAND`] bytes
//! of JSON: about 900 partitions of a topic with a 249-byte name, thousands with short
//! names and no metadata); a larger one is written as several, each all or none, after
//! its partitions were checked against the catalog.

use std::collections::BTreeMap;

use async_trait::async_trait;
use strata_frontend::seams::positions::{Position, PositionStore, StreamPosition, valid_consumer};
use strata_frontend::seams::{StoreError, StoreResult};
use strata_meta::model::{Command, CommittedOffset, Outcome};
use strata_meta::{MAX_COMMAND, MetaError};

use crate::cluster::ClusterStreams;

/// Most bytes of JSON the offsets of one command take: the rest of it (the group, whose
/// bytes JSON may write as six each, and the envelope) fits in what is left.
const OFFSETS_PER_COMMAND: usize = MAX_COMMAND - 4096;

/// The bytes of JSON an offset takes in a command, as written.
fn weight(stream: &str, c: &CommittedOffset) -> usize {
    serde_json::to_vec(&(stream, u32::MAX, c)).map_or(usize::MAX, |j| j.len()) + 1
}

fn committed(p: Position) -> CommittedOffset {
    CommittedOffset {
        offset: p.offset,
        leader_epoch: p.leader_epoch,
        metadata: p.metadata,
    }
}

fn position(c: &CommittedOffset) -> Position {
    Position {
        offset: c.offset,
        leader_epoch: c.leader_epoch,
        metadata: c.metadata.clone(),
    }
}

impl ClusterStreams {
    /// Writes `offsets` in as few commands as hold them.
    async fn commit_in_parts(
        &self,
        consumer: &str,
        offsets: impl IntoIterator<Item = (String, u32, CommittedOffset)>,
        if_absent: bool,
    ) -> StoreResult<()> {
        let mut part = Vec::new();
        let mut bytes = 0;
        for (stream, partition, c) in offsets {
            let w = weight(&stream, &c);
            if bytes + w > OFFSETS_PER_COMMAND && !part.is_empty() {
                self.commit_part(consumer, std::mem::take(&mut part), if_absent)
                    .await?;
                bytes = 0;
            }
            bytes += w;
            part.push((stream, partition, c));
        }
        self.commit_part(consumer, part, if_absent).await
    }

    /// Writes the offsets of one part of a commit (nothing for none).
    async fn commit_part(
        &self,
        consumer: &str,
        offsets: Vec<(String, u32, CommittedOffset)>,
        if_absent: bool,
    ) -> StoreResult<()> {
        if offsets.is_empty() {
            return Ok(());
        }
        let command = Command::CommitOffsets {
            group: consumer.to_string(),
            offsets,
            if_absent,
        };
        self.write_offsets(consumer, command).await
    }

    /// Writes `command` and waits until this node applied it; errors as the catalog's.
    async fn write_offsets(&self, consumer: &str, command: Command) -> StoreResult<()> {
        match self.meta().write_applied(command).await {
            Ok(Outcome::Done) => Ok(()),
            Ok(Outcome::NotFound(why)) => Err(StoreError::UnknownStream(why)),
            Ok(Outcome::Invalid(why)) => Err(StoreError::Invalid(why)),
            Ok(other) => Err(StoreError::Storage(format!(
                "unexpected meta outcome {other:?} for the offsets of {consumer}"
            ))),
            Err(MetaError::Refused(why)) => Err(StoreError::Invalid(why)),
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
        // One entry per partition: the last one named wins.
        let mut offsets = BTreeMap::new();
        for (stream, partition, p) in positions {
            let Ok(partition) = u32::try_from(partition) else {
                return Err(StoreError::Invalid(format!(
                    "no partition {partition} in `{stream}`"
                )));
            };
            offsets.insert((stream, partition), committed(p));
        }
        // Checked here too, so a commit written in parts is refused before the first.
        self.meta().read(|s| {
            offsets
                .keys()
                .try_for_each(|(stream, partition)| match s.streams.get(stream) {
                    None => Err(StoreError::UnknownStream(stream.clone())),
                    Some(info) if *partition >= info.partitions => Err(StoreError::Invalid(
                        format!("no partition {partition} in `{stream}`"),
                    )),
                    Some(_) => Ok(()),
                })
        })?;
        let offsets = offsets.into_iter().map(|((s, p), c)| (s, p, c));
        self.commit_in_parts(consumer, offsets, false).await
    }

    async fn adopt(&self, consumer: &str, positions: Vec<StreamPosition>) -> StoreResult<()> {
        if !valid_consumer(consumer) {
            return Err(StoreError::Invalid(format!(
                "bad consumer name {consumer:?}"
            )));
        }
        // Partitions gone since are skipped (a race with a deletion still refuses a part).
        let offsets: Vec<(String, u32, CommittedOffset)> = self.meta().read(|s| {
            positions
                .into_iter()
                .filter_map(|(stream, partition, p)| {
                    let partition = u32::try_from(partition).ok()?;
                    let exists = s
                        .streams
                        .get(&stream)
                        .is_some_and(|info| partition < info.partitions);
                    exists.then(|| (stream, partition, committed(p)))
                })
                .collect()
        });
        self.commit_in_parts(consumer, offsets, true).await
    }

    fn has_consumer(&self, consumer: &str) -> bool {
        self.meta().read(|s| s.offsets.contains_key(consumer))
    }

    fn consumer_count(&self) -> usize {
        self.meta().read(|s| s.offsets.len())
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
