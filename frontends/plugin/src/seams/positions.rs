//! Consumer positions: where a consumer (a Kafka group, the MQTT bridge reading a stream)
//! has got to in each partition, kept in a [`StateSpace`] in one format for every
//! frontend.
//!
//! Keys are `o/{consumer}\0{stream}\0{partition as 4 big-endian bytes}`, so one prefix
//! scan finds a consumer's positions and stream names may hold any byte but NUL (which
//! no stream name has). Values are JSON [`Position`]s.

use serde::{Deserialize, Serialize};

use super::state::{StateError, StateSpace};

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
}
