//! Conformance suites: what every implementation of a seam must do, written once and run
//! against each (the in-memory ones here, the node's own in their crates). A failed check
//! panics with what was expected, so they are meant for tests.

mod positions;
mod router;
mod state;

pub use positions::positions;
pub use router::catalog_and_router;
pub use state::state_store;
