//! The seams of `strata_frontend::seams` served by this node alone: the catalog and the
//! partition router over the local [`strata_journal::Journal`] ([`LocalStreams`]), and the
//! state store in a RocksDB instance under the data directory ([`KvStore`]). A cluster
//! wraps these: a partition this node leads is served by them.

mod cluster;
mod errors;
mod manifests;
mod offsets;
mod partition;
pub mod replica;
mod state;
mod streams;

pub use cluster::ClusterStreams;
pub use errors::store_error;
pub use manifests::MetaManifests;
pub use partition::LocalPartition;
pub use state::KvStore;
pub use streams::LocalStreams;
