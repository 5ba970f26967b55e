//! In-memory implementations of the seams: a node with no disk. Tests and tools use them;
//! they run the same conformance suites as the node's own implementations.

mod partition;
mod state;
mod streams;

pub use state::MemoryState;
pub use streams::MemoryStreams;
