//! The conformance suites against the in-memory implementations.

use strata_frontend::seams::{Storage, conformance};

#[tokio::test]
async fn memory_streams_conform() {
    let storage = Storage::in_memory();
    conformance::catalog_and_router(storage.catalog.as_ref(), storage.router.as_ref()).await;
}

#[test]
fn memory_state_conforms() {
    conformance::state_store(Storage::in_memory().state.as_ref());
}

#[tokio::test]
async fn memory_positions_conform() {
    let storage = Storage::in_memory();
    conformance::positions(storage.positions.as_ref(), storage.catalog.as_ref()).await;
}
