//! Tail notification: readers wait for a partition's visible end offset to move past an
//! offset, without polling.

use tokio::sync::watch;

use crate::error::{JournalError, Result};

/// Publishes a partition's visible end offset (the offset the next record will get, among
/// records readers may see).
#[derive(Debug)]
pub struct EndWatch {
    tx: watch::Sender<EndState>,
}

#[derive(Debug, Clone, Copy)]
struct EndState {
    end: u64,
    closed: bool,
}

impl EndWatch {
    /// A watch starting at `end`.
    pub fn new(end: u64) -> Self {
        EndWatch {
            tx: watch::Sender::new(EndState { end, closed: false }),
        }
    }

    /// Current visible end.
    pub fn end(&self) -> u64 {
        self.tx.borrow().end
    }

    /// Moves the visible end (to any value: a rollback may lower it).
    pub fn publish(&self, end: u64) {
        self.tx.send_if_modified(|s| {
            let changed = s.end != end;
            s.end = end;
            changed
        });
    }

    /// Wakes every waiter; later waits fail with [`JournalError::Closed`].
    pub fn close(&self) {
        self.tx.send_modify(|s| s.closed = true);
    }

    /// Waits until the visible end is greater than `offset` and returns it.
    pub async fn wait_beyond(&self, offset: u64) -> Result<u64> {
        let mut rx = self.tx.subscribe();
        let state = rx
            .wait_for(|s| s.end > offset || s.closed)
            .await
            .map_err(|_| JournalError::Closed)?;
        if state.end > offset {
            Ok(state.end)
        } else {
            Err(JournalError::Closed)
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::sync::Arc;

    #[tokio::test]
    async fn waiters_wake_on_publish_and_close() {
        let w = Arc::new(EndWatch::new(5));
        assert_eq!(w.wait_beyond(4).await.unwrap(), 5);
        let w2 = w.clone();
        let waiter = tokio::spawn(async move { w2.wait_beyond(5).await });
        w.publish(9);
        assert_eq!(waiter.await.unwrap().unwrap(), 9);
        let w3 = w.clone();
        let waiter = tokio::spawn(async move { w3.wait_beyond(100).await });
        w.close();
        assert!(matches!(waiter.await.unwrap(), Err(JournalError::Closed)));
    }
}
