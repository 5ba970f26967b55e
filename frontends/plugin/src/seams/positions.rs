//! Consumer positions: where a consumer (a Kafka group, the MQTT bridge reading a stream)
//! has got to in each partition, kept in a [`StateSpace`] in one format for every
//! frontend.
//!
//! Keys are `o/{consumer}\0{stream}\0{partition as 4 big-endian bytes}`, so one prefix
//! scan finds a consumer's positions and stream names may hold any byte but NUL (which
//! no stream name has). Values are JSON [`Position`]s.

use std::fmt::Debug;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::error::{StoreError, StoreResult};
use super::state::{StateError, StateOp, StateSpace};

/// A committed position in one partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    /// The next offset to read.
    pub offset: i64,
    /// The leader epoch the consumer last read under (`-1` when unknown).
    #[serde(default = "unknown_epoch")]
    pub leader_epoch: i32,
    /// The consumer's own note, kept with the position.
    #[serde(default)]
    pub metadata: Option<String>,
}

fn unknown_epoch() -> i32 {
    -1
}

impl Position {
    /// A position with no epoch or note.
    pub fn at(offset: i64) -> Self {
        Position {
            offset,
            leader_epoch: -1,
            metadata: None,
        }
    }

    /// The stored form.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Reads a stored position; `None` for bytes that are not one.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        serde_json::from_slice(bytes).ok()
    }
}

/// Whether `consumer` may name a consumer: not empty and without NUL (a NUL would make
/// its keys the prefix of another consumer's: `a\0t` would be consumer `a`'s stream `t`).
pub fn valid_consumer(consumer: &str) -> bool {
    !consumer.is_empty() && !consumer.contains('\0')
}

/// The prefix of every position of `consumer`, or `None` for an invalid one.
pub fn prefix(consumer: &str) -> Option<Vec<u8>> {
    valid_consumer(consumer).then(|| format!("o/{consumer}\0").into_bytes())
}

/// The key of `consumer`'s position in a partition (the caller checks the consumer with
/// [`valid_consumer`] first).
pub fn key(consumer: &str, stream: &str, partition: i32) -> Vec<u8> {
    let mut k = format!("o/{consumer}\0{stream}\0").into_bytes();
    k.extend_from_slice(&partition.to_be_bytes());
    k
}

/// The stored position of `consumer` in a partition; `None` when there is none (or it
/// cannot be read).
pub fn get(
    space: &StateSpace,
    consumer: &str,
    stream: &str,
    partition: i32,
) -> Result<Option<Position>, StateError> {
    Ok(space
        .get(&key(consumer, stream, partition))?
        .as_deref()
        .and_then(Position::decode))
}

/// Stores `consumer`'s position in a partition.
pub fn put(
    space: &StateSpace,
    consumer: &str,
    stream: &str,
    partition: i32,
    position: &Position,
) -> Result<(), StateError> {
    space.put(&key(consumer, stream, partition), &position.encode())
}

/// Every stored position of `consumer`: stream, partition and position (`None` where the
/// value cannot be read), in key order.
pub fn scan(space: &StateSpace, consumer: &str) -> Vec<(String, i32, Option<Position>)> {
    let Some(prefix) = prefix(consumer) else {
        return Vec::new();
    };
    space
        .scan_prefix(&prefix)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(key, value)| {
            let rest = &key[prefix.len()..];
            let split = rest.iter().position(|&b| b == 0)?;
            let stream = String::from_utf8_lossy(&rest[..split]).into_owned();
            let partition = <[u8; 4]>::try_from(&rest[split + 1..]).ok()?;
            Some((
                stream,
                i32::from_be_bytes(partition),
                Position::decode(&value),
            ))
        })
        .collect()
}

/// Every consumer with a stored position.
pub fn consumers(space: &StateSpace) -> impl Iterator<Item = String> {
    space
        .scan_prefix(b"o/")
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(key, _)| {
            let end = key[2..].iter().position(|&b| b == 0)?;
            Some(String::from_utf8_lossy(&key[2..2 + end]).into_owned())
        })
}

/// A position of a consumer, with its stream and partition.
pub type StreamPosition = (String, i32, Position);

/// Consumer positions every node serves alike: Kafka group offsets, which a group's
/// coordinator reads back after it moves to another node. In a cluster they are the meta
/// service's; reads answer from what this node has applied, with no network round trip.
///
/// Contract (checked by [`super::conformance::positions`]): a commit stores all its
/// positions or none (the cluster's store may split one too large for a single meta
/// command, after checking every partition) and, once it returned `Ok`, reads on this
/// node see it and it survives a crash; positions name existing partitions of existing
/// streams (others are refused with `UnknownStream` or `Invalid`).
#[async_trait]
pub trait PositionStore: Send + Sync + Debug {
    /// The position of `consumer` in a partition.
    fn get(&self, consumer: &str, stream: &str, partition: i32) -> Option<Position>;
    /// Every position of `consumer`, in stream and partition order.
    fn scan(&self, consumer: &str) -> Vec<StreamPosition>;
    /// Every consumer with a position, in order.
    fn consumers(&self) -> Vec<String>;
    /// Stores `positions` of `consumer`, all or none.
    async fn commit(&self, consumer: &str, positions: Vec<StreamPosition>) -> StoreResult<()>;
    /// Forgets every position of `consumer`.
    async fn forget(&self, consumer: &str) -> StoreResult<()>;
    /// Stores those of `positions` whose partition has none yet, leaving newer commits
    /// alone (positions handed over from another store); partitions that no longer exist
    /// are skipped.
    async fn adopt(&self, consumer: &str, positions: Vec<StreamPosition>) -> StoreResult<()>;
    /// Whether `consumer` has a position.
    fn has_consumer(&self, consumer: &str) -> bool {
        !self.scan(consumer).is_empty()
    }
    /// How many consumers have a position.
    fn consumer_count(&self) -> usize {
        self.consumers().len()
    }
}

/// Positions kept in one node's [`StateSpace`]: the in-memory store's, and what a node
/// that kept Kafka offsets locally hands over to the cluster's store.
#[derive(Debug, Clone)]
pub struct SpacePositions {
    space: StateSpace,
    catalog: std::sync::Arc<dyn super::Catalog>,
}

impl SpacePositions {
    /// Positions in `space`, for partitions of the streams `catalog` knows.
    pub fn new(space: StateSpace, catalog: std::sync::Arc<dyn super::Catalog>) -> Self {
        SpacePositions { space, catalog }
    }
}

fn state_error(e: StateError) -> StoreError {
    StoreError::Storage(e.0)
}

#[async_trait]
impl PositionStore for SpacePositions {
    fn get(&self, consumer: &str, stream: &str, partition: i32) -> Option<Position> {
        if !valid_consumer(consumer) {
            return None;
        }
        get(&self.space, consumer, stream, partition).ok().flatten()
    }

    fn scan(&self, consumer: &str) -> Vec<StreamPosition> {
        scan(&self.space, consumer)
            .into_iter()
            .filter_map(|(s, p, position)| Some((s, p, position?)))
            .collect()
    }

    fn consumers(&self) -> Vec<String> {
        let mut all: Vec<String> = consumers(&self.space).collect();
        all.dedup();
        all
    }

    async fn commit(&self, consumer: &str, positions: Vec<StreamPosition>) -> StoreResult<()> {
        if !valid_consumer(consumer) {
            return Err(StoreError::Invalid(format!(
                "bad consumer name {consumer:?}"
            )));
        }
        let mut ops = Vec::with_capacity(positions.len());
        for (stream, partition, position) in positions {
            let info = self
                .catalog
                .stream(&stream)
                .ok_or_else(|| StoreError::UnknownStream(stream.clone()))?;
            if partition < 0 || partition as u32 >= info.partitions {
                return Err(StoreError::Invalid(format!(
                    "no partition {partition} in `{stream}`"
                )));
            }
            ops.push(StateOp::Put(
                key(consumer, &stream, partition),
                position.encode(),
            ));
        }
        self.space.write(&ops).map_err(state_error)
    }

    async fn forget(&self, consumer: &str) -> StoreResult<()> {
        match prefix(consumer) {
            Some(prefix) => self.space.delete_prefix(&prefix).map_err(state_error),
            None => Ok(()),
        }
    }

    async fn adopt(&self, consumer: &str, positions: Vec<StreamPosition>) -> StoreResult<()> {
        let fresh: Vec<StreamPosition> = positions
            .into_iter()
            .filter(|(stream, p, _)| {
                self.catalog
                    .stream(stream)
                    .is_some_and(|s| *p >= 0 && (*p as u32) < s.partitions)
                    && PositionStore::get(self, consumer, stream, *p).is_none()
            })
            .collect();
        if fresh.is_empty() {
            return Ok(());
        }
        self.commit(consumer, fresh).await
    }
}

impl SpacePositions {
    /// Moves the positions kept here into `to` (a node's own positions into the
    /// cluster's store), for the partitions `catalog` has: each consumer's are committed to
    /// `to`, then deleted here, so a crash in between repeats the move instead of losing
    /// them. Positions of streams `catalog` does not know (yet) stay. How many positions
    /// moved and how many stay.
    pub async fn hand_over(
        &self,
        to: &dyn PositionStore,
        catalog: &dyn super::Catalog,
    ) -> StoreResult<(usize, usize)> {
        let (mut moved, mut left) = (0, 0);
        for consumer in PositionStore::consumers(self) {
            let (known, unknown): (Vec<StreamPosition>, Vec<StreamPosition>) =
                PositionStore::scan(self, &consumer)
                    .into_iter()
                    .partition(|(stream, p, _)| {
                        catalog
                            .stream(stream)
                            .is_some_and(|s| *p >= 0 && (*p as u32) < s.partitions)
                    });
            left += unknown.len();
            if known.is_empty() {
                continue;
            }
            let done: Vec<StateOp> = known
                .iter()
                .map(|(stream, p, _)| StateOp::Delete(key(&consumer, stream, *p)))
                .collect();
            moved += known.len();
            to.adopt(&consumer, known).await?;
            self.space.write(&done).map_err(state_error)?;
        }
        Ok((moved, left))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::seams::StateStore;
    use crate::seams::memory::MemoryState;

    #[test]
    fn positions_round_trip_and_scan_by_consumer() {
        let space = MemoryState::default().space("t").unwrap();
        let noted = Position {
            offset: 7,
            leader_epoch: 3,
            metadata: Some("m".into()),
        };
        put(&space, "g", "a", 1, &noted).unwrap();
        put(&space, "g", "a", 0, &Position::at(5)).unwrap();
        put(&space, "g2", "a", 0, &Position::at(9)).unwrap();
        assert_eq!(get(&space, "g", "a", 1).unwrap(), Some(noted.clone()));
        assert_eq!(get(&space, "g", "b", 0).unwrap(), None);
        let found = scan(&space, "g");
        assert_eq!(
            found,
            vec![
                ("a".into(), 0, Some(Position::at(5))),
                ("a".into(), 1, Some(noted)),
            ]
        );
        let mut all: Vec<_> = consumers(&space).collect();
        all.dedup();
        assert_eq!(all, vec!["g".to_string(), "g2".to_string()]);
        assert!(prefix("a\0b").is_none());
    }

    #[tokio::test]
    async fn hand_over_moves_known_partitions_and_keeps_the_rest() {
        use crate::seams::memory::MemoryStreams;
        use crate::seams::{Catalog, StreamSpec};
        let streams = MemoryStreams::new();
        streams
            .create_stream(StreamSpec::new("t", 2))
            .await
            .unwrap();
        let state = MemoryState::default();
        let catalog: std::sync::Arc<dyn Catalog> = std::sync::Arc::new(streams.clone());
        let own = SpacePositions::new(state.open("own"), catalog.clone());
        let shared = SpacePositions::new(state.open("shared"), catalog.clone());
        let space = state.open("own");
        // A newer commit in the shared store is not undone by the older one handed over.
        shared
            .commit("g", vec![("t".into(), 1, Position::at(50))])
            .await
            .unwrap();
        put(&space, "g", "t", 0, &Position::at(4)).unwrap();
        put(&space, "g", "t", 1, &Position::at(5)).unwrap();
        put(&space, "g", "later", 0, &Position::at(6)).unwrap();
        put(&space, "h", "t", 9, &Position::at(7)).unwrap();
        assert_eq!(
            own.hand_over(&shared, catalog.as_ref()).await.unwrap(),
            (2, 2)
        );
        assert_eq!(
            PositionStore::get(&shared, "g", "t", 1),
            Some(Position::at(50))
        );
        assert_eq!(
            PositionStore::get(&shared, "g", "t", 0),
            Some(Position::at(4))
        );
        assert_eq!(PositionStore::get(&own, "g", "t", 0), None);
        // The stream appears: its position follows; the missing partition stays behind.
        streams
            .create_stream(StreamSpec::new("later", 1))
            .await
            .unwrap();
        assert_eq!(
            own.hand_over(&shared, catalog.as_ref()).await.unwrap(),
            (1, 1)
        );
        assert_eq!(
            PositionStore::get(&shared, "g", "later", 0),
            Some(Position::at(6))
        );
        assert_eq!(PositionStore::scan(&shared, "g").len(), 3);
    }
}
