//! Black-box tests of the `strata` binary: real processes, real sockets, real files.
//!
//! One test binary on purpose: each links the whole node (RocksDB included), so new areas
//! become modules here (`mod journal_tools;`, `mod crash;`) rather than new files in `tests/`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

#[path = "cli/serve.rs"]
mod serve;

#[path = "cli/journal_tools.rs"]
mod journal_tools;

#[path = "cli/mqtt_rumqttc.rs"]
mod mqtt_rumqttc;

#[path = "cli/tiered_serve.rs"]
mod tiered_serve;

#[path = "cli/kafka_rdkafka.rs"]
mod kafka_rdkafka;

#[path = "cli/agent_sdk_rust.rs"]
mod agent_sdk_rust;
