//! The conformance suites against the in-memory implementations.

use strata_frontend::seams::conformance;
use strata_frontend::seams::memory::{MemoryState, MemoryStreams};

#[tokio::test]
async fn memory_streams_conform() {
    let streams = MemoryStreams::new();
    conformance::catalog_and_router(&streams, &streams).await;
}

#[test]
fn memory_state_conforms() {
    conformance::state_store(&MemoryState::new());
}
