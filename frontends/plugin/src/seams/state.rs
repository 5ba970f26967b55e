//! The state store: small records a frontend changes in place (MQTT sessions and queues,
//! bridge positions, Kafka group offsets, users and ACLs), in named spaces of ordered keys.
//! Message bodies live in partitions, never here.
//!
//! Calls are synchronous and may block briefly on local I/O: callers on async tasks keep
//! them short (one batch, one scan) or run them in `spawn_blocking`.

use std::fmt::Debug;
use std::sync::Arc;

/// A failed state-store operation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("state store: {0}")]
pub struct StateError(pub String);

/// A key and its value.
pub type StatePair = (Vec<u8>, Vec<u8>);

/// One write of an atomic batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateOp {
    /// Sets `key` to `value`.
    Put(Vec<u8>, Vec<u8>),
    /// Removes `key`.
    Delete(Vec<u8>),
}

/// Named spaces of keys.
///
/// Contract (checked by [`super::conformance::state`]): spaces are independent (the same
/// key in two spaces is two keys); `space` returns the same data for the same name for the
/// store's lifetime; what a write returned `Ok` for survives a process crash.
pub trait StateStore: Send + Sync + Debug {
    /// The space `name`, created when missing.
    fn space(&self, name: &str) -> Result<StateSpace, StateError>;
}

/// One space, as an implementation provides it.
///
/// Contract: `write` applies every op or none, even across a crash; `scan_prefix` returns
/// keys in byte order, each with its latest value.
pub trait SpaceBackend: Send + Sync + Debug {
    /// The value of `key`.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError>;
    /// Applies `ops` atomically, in order.
    fn write(&self, ops: &[StateOp]) -> Result<(), StateError>;
    /// Every key starting with `prefix`, with its value, in key order.
    fn scan_prefix(&self, prefix: &[u8]) -> Result<Vec<StatePair>, StateError>;
}

/// A handle on one space; cheap to clone.
#[derive(Debug, Clone)]
pub struct StateSpace(Arc<dyn SpaceBackend>);

impl StateSpace {
    /// Wraps an implementation's space.
    pub fn new(backend: Arc<dyn SpaceBackend>) -> Self {
        StateSpace(backend)
    }

    /// The value of `key`.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        self.0.get(key)
    }

    /// Applies `ops` atomically: after a crash either all of them are there or none.
    pub fn write(&self, ops: &[StateOp]) -> Result<(), StateError> {
        if ops.is_empty() {
            return Ok(());
        }
        self.0.write(ops)
    }

    /// Sets `key` to `value`.
    pub fn put(&self, key: &[u8], value: &[u8]) -> Result<(), StateError> {
        self.0.write(&[StateOp::Put(key.to_vec(), value.to_vec())])
    }

    /// Removes `key`.
    pub fn delete(&self, key: &[u8]) -> Result<(), StateError> {
        self.0.write(&[StateOp::Delete(key.to_vec())])
    }

    /// Every key starting with `prefix`, with its value, in key order.
    pub fn scan_prefix(&self, prefix: &[u8]) -> Result<Vec<StatePair>, StateError> {
        self.0.scan_prefix(prefix)
    }

    /// Removes every key starting with `prefix`, atomically.
    pub fn delete_prefix(&self, prefix: &[u8]) -> Result<(), StateError> {
        let ops: Vec<StateOp> = self
            .scan_prefix(prefix)?
            .into_iter()
            .map(|(k, _)| StateOp::Delete(k))
            .collect();
        self.write(&ops)
    }
}
