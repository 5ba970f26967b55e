//! Black-box tests of the journal: the conformance suite every storage class passes, a
//! model-based property test, fault injection and corruption handling.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "journal/common.rs"]
mod common;
#[path = "journal/conformance.rs"]
mod conformance;
#[path = "journal/corruption.rs"]
mod corruption;
#[path = "journal/crash.rs"]
mod crash;
#[path = "journal/faults.rs"]
mod faults;
#[path = "journal/model.rs"]
mod model;
#[path = "journal/replica.rs"]
mod replica;
#[path = "journal/tiered.rs"]
mod tiered;
