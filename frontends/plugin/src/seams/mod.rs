//! The interfaces every frontend reaches storage through, instead of the journal and the
//! key-value store: a [`router::PartitionRouter`] (append, read, wait for data, offsets,
//! find by timestamp), a [`catalog::Catalog`] (streams, partitions, placement and leaders)
//! and a [`state::StateStore`] (sessions, consumer positions, group offsets). None of them
//! says where a partition or a key lives: this node, another node, memory or disk.
//!
//! Each trait has an in-memory implementation in [`memory`] and a conformance suite in
//! [`conformance`] that every implementation runs; the node wires in its own.

pub mod catalog;
pub mod conformance;
mod error;
pub mod memory;
pub mod router;
pub mod state;

pub use catalog::{
    Catalog, NodeId, Placement, StreamInfo, StreamSpec, ensure_stream, validate_stream_name,
};
pub use error::{StoreError, StoreResult};
pub use router::{Appended, Offsets, Partition, PartitionRouter};
pub use state::{SpaceBackend, StateError, StateOp, StatePair, StateSpace, StateStore};
