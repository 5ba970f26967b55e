//! The in-memory catalog and router: one node (id 0) leading every partition at epoch 0.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use parking_lot::RwLock;

use super::partition::MemoryPartition;
use crate::seams::catalog::{
    Catalog, NodeId, Placement, StreamInfo, StreamSpec, validate_stream_name,
};
use crate::seams::error::{StoreError, StoreResult};
use crate::seams::router::{Partition, PartitionRouter};

/// Most partitions one stream may have.
const MAX_PARTITIONS: u32 = 1 << 16;

/// Streams held in memory: both the catalog and the router. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct MemoryStreams {
    streams: Arc<RwLock<BTreeMap<String, MemoryStream>>>,
}

#[derive(Debug)]
struct MemoryStream {
    info: StreamInfo,
    partitions: Vec<Arc<MemoryPartition>>,
}

impl MemoryStreams {
    /// An empty set of streams.
    pub fn new() -> Self {
        Self::default()
    }
}

fn info(name: &str, partitions: u32) -> StreamInfo {
    StreamInfo {
        name: name.to_string(),
        partitions,
        storage_class: "memory".into(),
        fsync: "never".into(),
        retention_bytes: None,
        retention_ms: None,
        segment_bytes: 1 << 30,
        segment_ms: 7 * 24 * 3600 * 1000,
        min_in_sync: 1,
    }
}

fn check_count(partitions: u32) -> StoreResult<()> {
    if partitions == 0 || partitions > MAX_PARTITIONS {
        return Err(StoreError::Invalid(format!(
            "partitions must be 1..={MAX_PARTITIONS}, got {partitions}"
        )));
    }
    Ok(())
}

#[async_trait]
impl Catalog for MemoryStreams {
    fn node_id(&self) -> NodeId {
        0
    }

    fn stream(&self, name: &str) -> Option<StreamInfo> {
        self.streams.read().get(name).map(|s| s.info.clone())
    }

    fn streams(&self) -> Vec<StreamInfo> {
        self.streams
            .read()
            .values()
            .map(|s| s.info.clone())
            .collect()
    }

    async fn create_stream(&self, spec: StreamSpec) -> StoreResult<StreamInfo> {
        validate_stream_name(&spec.name)?;
        check_count(spec.partitions)?;
        let mut streams = self.streams.write();
        if streams.contains_key(&spec.name) {
            return Err(StoreError::StreamExists(spec.name));
        }
        let stream = MemoryStream {
            info: StreamInfo {
                // Held in memory whatever it asks for; the class is reported as asked.
                storage_class: spec.storage_class.clone().unwrap_or("memory".into()),
                ..info(&spec.name, spec.partitions)
            },
            partitions: (0..spec.partitions)
                .map(|p| Arc::new(MemoryPartition::new(&spec.name, p)))
                .collect(),
        };
        let info = stream.info.clone();
        streams.insert(spec.name, stream);
        Ok(info)
    }

    async fn delete_stream(&self, name: &str) -> StoreResult<()> {
        let removed = self.streams.write().remove(name);
        let stream = removed.ok_or_else(|| StoreError::UnknownStream(name.to_string()))?;
        stream.partitions.iter().for_each(|p| p.close());
        Ok(())
    }

    async fn add_partitions(&self, name: &str, partitions: u32) -> StoreResult<StreamInfo> {
        check_count(partitions)?;
        let mut streams = self.streams.write();
        let stream = streams
            .get_mut(name)
            .ok_or_else(|| StoreError::UnknownStream(name.to_string()))?;
        if partitions <= stream.info.partitions {
            return Err(StoreError::Invalid(format!(
                "stream {name:?} has {} partitions; it can only grow",
                stream.info.partitions
            )));
        }
        for p in stream.info.partitions..partitions {
            stream
                .partitions
                .push(Arc::new(MemoryPartition::new(name, p)));
        }
        stream.info.partitions = partitions;
        Ok(stream.info.clone())
    }

    fn placement(&self, stream: &str, partition: u32) -> Option<Placement> {
        let streams = self.streams.read();
        (partition < streams.get(stream)?.info.partitions).then(|| Placement {
            leader: Some(0),
            epoch: 0,
            replicas: vec![0],
            in_sync: vec![0],
            target: Vec::new(),
        })
    }
}

#[async_trait]
impl PartitionRouter for MemoryStreams {
    async fn partition(&self, stream: &str, partition: u32) -> StoreResult<Arc<dyn Partition>> {
        let streams = self.streams.read();
        let s = streams
            .get(stream)
            .ok_or_else(|| StoreError::UnknownStream(stream.to_string()))?;
        let p =
            s.partitions
                .get(partition as usize)
                .ok_or_else(|| StoreError::UnknownPartition {
                    stream: stream.to_string(),
                    partition,
                })?;
        Ok(p.clone())
    }
}
