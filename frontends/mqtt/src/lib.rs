//! Strata's MQTT frontend. So far: the codec, a pure translation between bytes and
//! packets for MQTT 3.1, 3.1.1 and 5.0 (no I/O, no runtime).

pub mod codec;
pub mod topic;
pub mod trie;
