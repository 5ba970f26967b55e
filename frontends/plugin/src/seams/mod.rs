//! The interfaces every frontend reaches storage through, instead of the journal and the
//! key-value store: a [`router::PartitionRouter`] (append, read, wait for data, offsets,
//! find by timestamp), a [`catalog::Catalog`] (streams, partitions, placement and leaders),
//! a [`state::StateStore`] (sessions, consumer positions, group offsets) and a
//! [`positions::PositionStore`] (consumer positions every node serves alike). None of them
//! says where a partition or a key lives: this node, another node, memory or disk.
//!
//! Each trait has an in-memory implementation in [`memory`] and a conformance suite in
//! [`conformance`] that every implementation runs; the node wires in its own.

pub mod catalog;
pub mod conformance;
mod error;
mod handles;
pub mod memory;
pub mod positions;
pub mod router;
pub mod state;

pub use catalog::{
    Catalog, Member, NodeId, Placement, StreamInfo, StreamSpec, ensure_stream, validate_stream_name,
};
pub use error::{StoreError, StoreResult};
pub use handles::{StreamHandles, partition_for_key};
pub use positions::{PositionStore, SpacePositions, StreamPosition};
pub use router::{Appended, Offsets, Partition, PartitionRouter};
pub use state::{SpaceBackend, StateError, StateOp, StatePair, StateSpace, StateStore};

use std::sync::Arc;

/// The seams together, as the node hands them to every frontend. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Storage {
    /// Streams, partitions, placement.
    pub catalog: Arc<dyn Catalog>,
    /// Partitions, wherever they are.
    pub router: Arc<dyn PartitionRouter>,
    /// Frontend state, this node's own.
    pub state: Arc<dyn StateStore>,
    /// Consumer positions every node serves alike.
    pub positions: Arc<dyn PositionStore>,
}

impl Storage {
    /// Everything in memory: for tests and tools that need no disk.
    pub fn in_memory() -> Self {
        let streams = memory::MemoryStreams::new();
        let state = memory::MemoryState::new();
        let positions =
            positions::SpacePositions::new(state.open("positions"), Arc::new(streams.clone()));
        Storage {
            catalog: Arc::new(streams.clone()),
            router: Arc::new(streams),
            state: Arc::new(state),
            positions: Arc::new(positions),
        }
    }

    /// The stream named in `spec`, created when missing (see [`ensure_stream`]).
    pub async fn ensure_stream(&self, spec: StreamSpec) -> StoreResult<StreamInfo> {
        ensure_stream(self.catalog.as_ref(), spec).await
    }

    /// A handle on one partition.
    pub async fn partition(&self, stream: &str, partition: u32) -> StoreResult<Arc<dyn Partition>> {
        self.router.partition(stream, partition).await
    }

    /// A handle on one partition while this node leads it (see
    /// [`PartitionRouter::partition_led_here`]).
    pub async fn partition_led_here(
        &self,
        stream: &str,
        partition: u32,
    ) -> StoreResult<Arc<dyn Partition>> {
        self.router.partition_led_here(stream, partition).await
    }
}
