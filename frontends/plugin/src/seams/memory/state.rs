//! The in-memory state store: one ordered map per space.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::seams::state::{SpaceBackend, StateError, StateOp, StatePair, StateSpace, StateStore};

/// Spaces of keys held in memory. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct MemoryState {
    spaces: Arc<Mutex<HashMap<String, Arc<MemorySpace>>>>,
}

impl MemoryState {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// The space `name`, created when missing (the in-memory store cannot fail).
    pub fn open(&self, name: &str) -> StateSpace {
        let space = self
            .spaces
            .lock()
            .entry(name.to_string())
            .or_default()
            .clone();
        StateSpace::new(space)
    }
}

impl StateStore for MemoryState {
    fn space(&self, name: &str) -> Result<StateSpace, StateError> {
        Ok(self.open(name))
    }
}

#[derive(Debug, Default)]
struct MemorySpace(Mutex<BTreeMap<Vec<u8>, Vec<u8>>>);

impl SpaceBackend for MemorySpace {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        Ok(self.0.lock().get(key).cloned())
    }

    fn write(&self, ops: &[StateOp]) -> Result<(), StateError> {
        let mut map = self.0.lock();
        for op in ops {
            match op {
                StateOp::Put(k, v) => map.insert(k.clone(), v.clone()),
                StateOp::Delete(k) => map.remove(k),
            };
        }
        Ok(())
    }

    fn scan_prefix(&self, prefix: &[u8]) -> Result<Vec<StatePair>, StateError> {
        Ok(self
            .0
            .lock()
            .range(prefix.to_vec()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }
}
