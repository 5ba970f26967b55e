//! Strata's MQTT frontend: MQTT 3.1, 3.1.1 and 5.0 over TCP. A pure codec, topic matching,
//! sessions, the broker's routing core and the connection handler.

pub mod admin;
mod admin_api;
pub mod bridge;
mod bridge_from;
pub mod broker;
pub mod codec;
pub mod config;
mod connection;
mod frontend;
pub mod message;
pub mod metrics;
pub mod persist;
pub mod retained;
pub mod rules;
pub mod session;
pub mod store;
pub mod stored;
pub mod topic;
pub mod trie;
mod websocket;
pub mod work_queue;

pub use admin::MqttAdmin;

pub use config::{MqttConfig, TopicRule};
pub use frontend::MqttFrontend;
