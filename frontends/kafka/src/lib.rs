//! Strata's Kafka frontend: unmodified Kafka clients produce to and consume from journal
//! streams. A Kafka topic is a journal stream, a Kafka partition a journal partition and a
//! Kafka offset a journal offset; Produce stores the record batches as received and Fetch
//! answers with the stored bytes.

mod acls;
pub mod admin;
mod admin_api;
mod code;
mod config;
mod connection;
mod frontend;
mod groups;
mod guard;
mod handlers;
mod metrics;
mod producers;
mod quota;
mod reassign;
pub mod record_batches;
mod sasl;
mod session;
mod state;

pub use admin::KafkaAdmin;
pub use config::KafkaConfig;
pub use frontend::KafkaFrontend;
