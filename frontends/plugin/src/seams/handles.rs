//! A stream's partitions, opened once and kept: what a frontend that writes one stream
//! from many places holds (MQTT's message store, a bridge's target), and the one rule
//! that picks a partition for a key.

use std::sync::Arc;

use super::Storage;
use super::catalog::StreamSpec;
use super::error::StoreResult;
use super::router::Partition;

/// The partition a record with `key` goes to among `partitions`: FNV-1a of the key, so
/// the choice is the same on every node and in every release (records with one key stay
/// in one partition, in order).
pub fn partition_for_key(key: &[u8], partitions: u32) -> u32 {
    let h = key.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    (h % u64::from(partitions.max(1))) as u32
}

/// Handles on every partition a stream had when it was opened.
#[derive(Debug, Clone)]
pub struct StreamHandles {
    name: String,
    partitions: Vec<Arc<dyn Partition>>,
}

impl StreamHandles {
    /// Opens `spec.name` (creating it as `spec` says when missing) and a handle on each
    /// of its partitions.
    pub async fn open(storage: &Storage, spec: StreamSpec) -> StoreResult<Self> {
        let info = storage.ensure_stream(spec).await?;
        let mut partitions = Vec::with_capacity(info.partitions as usize);
        for p in 0..info.partitions {
            partitions.push(storage.partition(&info.name, p).await?);
        }
        Ok(StreamHandles {
            name: info.name,
            partitions,
        })
    }

    /// The stream's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Number of partitions (at least one).
    pub fn len(&self) -> u32 {
        self.partitions.len() as u32
    }

    /// Always false: a stream has at least one partition.
    pub fn is_empty(&self) -> bool {
        self.partitions.is_empty()
    }

    /// Partition `p`.
    pub fn get(&self, p: u32) -> Option<&Arc<dyn Partition>> {
        self.partitions.get(p as usize)
    }

    /// Every partition, by number.
    pub fn all(&self) -> &[Arc<dyn Partition>] {
        &self.partitions
    }

    /// The partition number for `key` (see [`partition_for_key`]).
    pub fn partition_for_key(&self, key: &[u8]) -> u32 {
        partition_for_key(key, self.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_spread_and_the_choice_is_fixed() {
        // Fixed values: a change here moves records of existing keys to other partitions.
        assert_eq!(
            partition_for_key(b"", 7),
            (0xcbf2_9ce4_8422_2325_u64 % 7) as u32
        );
        assert_eq!(partition_for_key(b"anything", 1), 0);
        assert_eq!(partition_for_key(b"anything", 0), 0);
        let mut seen = [0u32; 4];
        for i in 0..400 {
            seen[partition_for_key(format!("client-{i}").as_bytes(), 4) as usize] += 1;
        }
        assert!(seen.iter().all(|&n| n > 50), "uneven spread {seen:?}");
    }
}
