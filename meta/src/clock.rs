//! The time heartbeats are stamped with. Liveness is judged from the metadata alone (a
//! node is live while its last heartbeat is within `LIVENESS_MS` of the newest any node
//! has), so every stamp must come from one clock: the meta leader's. Each node's own wall
//! clock would let one node whose clock runs ahead make every other look down. The leader
//! stamps a node's heartbeat or registration as it writes it, with its monotonic clock
//! continued from the newest stamp the metadata held when it took over: wall-clock steps
//! and skew between leaders do not move it, and a new leader (after any gap without one)
//! goes on from where the last stopped instead of jumping ahead of every stamp.

use std::sync::Arc;
use std::time::Instant;

use parking_lot::{Mutex, RwLock};

use crate::MetaRaft;
use crate::model::Command;
use crate::store::Applied;

/// The leader's clock for heartbeats.
#[derive(Clone)]
pub(crate) struct LeaderClock {
    raft: MetaRaft,
    view: Arc<RwLock<Applied>>,
    /// The Raft term this node began stamping in, the stamp it began from and when.
    started: Arc<Mutex<Option<(u64, i64, Instant)>>>,
}

impl LeaderClock {
    pub(crate) fn new(raft: MetaRaft, view: Arc<RwLock<Applied>>) -> LeaderClock {
        LeaderClock {
            raft,
            view,
            started: Arc::new(Mutex::new(None)),
        }
    }

    /// `command` with its time replaced by the leader's, for a heartbeat or a node's
    /// registration; anything else as it is. Called where a command is handed to Raft: on
    /// a node that does not lead, Raft refuses the write and the leader stamps it again.
    pub(crate) fn stamp(&self, mut command: Command) -> Command {
        if let Command::Heartbeat { at_ms, .. } | Command::AddNode { at_ms, .. } = &mut command {
            *at_ms = self.now_ms(*at_ms);
        }
        command
    }

    /// Milliseconds on the cluster's clock; `fallback`, the sender's wall clock, only for
    /// the first stamp a new cluster ever writes.
    fn now_ms(&self, fallback: i64) -> i64 {
        let term = self.raft.metrics().borrow().current_term;
        let newest = self
            .view
            .read()
            .state
            .nodes
            .values()
            .map(|n| n.heartbeat_ms)
            .max()
            .unwrap_or(fallback);
        let mut started = self.started.lock();
        match *started {
            Some((t, base, at)) if t == term => {
                let elapsed = i64::try_from(at.elapsed().as_millis()).unwrap_or(i64::MAX);
                base.saturating_add(elapsed).max(newest)
            }
            _ => {
                *started = Some((term, newest, Instant::now()));
                newest
            }
        }
    }
}
