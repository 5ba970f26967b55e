//! Group commit: appenders that need durability wait for an fsync that covers their bytes;
//! whoever finds no fsync running leads the next one, so concurrent appends share fsyncs.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::watch;

use crate::error::{JournalError, Result};
use crate::metrics::ClassMetrics;

#[derive(Debug, Clone, Default)]
struct Progress {
    /// Every offset below this is durable.
    durable: u64,
    /// Current write epoch; a rollback of undurable data starts a new one.
    epoch: u64,
    /// `floors[e]`: the durable end when epoch `e` was rolled back.
    floors: Vec<u64>,
}

/// Coordinates fsyncs for one partition.
#[derive(Debug)]
pub(crate) struct GroupCommit {
    progress: watch::Sender<Progress>,
    leader: AtomicBool,
}

/// What a caller must supply: one fsync covering everything written so far, returning the
/// end offset it covered (captured before the fsync started).
pub(crate) trait SyncOnce {
    fn sync_once(&self) -> impl Future<Output = Result<u64>> + Send;
}

impl GroupCommit {
    pub(crate) fn new(durable: u64) -> Self {
        GroupCommit {
            progress: watch::Sender::new(Progress {
                durable,
                ..Progress::default()
            }),
            leader: AtomicBool::new(false),
        }
    }

    /// The durable end offset.
    pub(crate) fn durable(&self) -> u64 {
        self.progress.borrow().durable
    }

    /// The current write epoch; record it (under the partition lock) with each write.
    pub(crate) fn epoch(&self) -> u64 {
        self.progress.borrow().epoch
    }

    /// Marks everything below `end` durable (for instance after a synchronous fsync).
    pub(crate) fn mark_durable(&self, end: u64) {
        self.progress.send_if_modified(|p| {
            let changed = end > p.durable;
            p.durable = p.durable.max(end);
            changed
        });
    }

    /// Records that undurable writes of the current epoch were discarded; their waiters
    /// fail. The caller holds the partition lock and has already truncated the data.
    pub(crate) fn rollback(&self) {
        self.progress.send_modify(|p| {
            let floor = p.durable;
            p.floors.push(floor);
            p.epoch += 1;
        });
    }

    /// The log was truncated to `end` and everything below it is durable (the caller just
    /// fsynced): the durable end becomes `end`, and writes of the current epoch still
    /// waiting fail unless they ended at or below it.
    pub(crate) fn truncate(&self, end: u64) {
        self.progress.send_modify(|p| {
            p.durable = end;
            p.floors.push(end);
            p.epoch += 1;
        });
    }

    /// Finishes an append: under `always` waits for durability, then counts the append
    /// (or the failure) in `class`.
    pub(crate) async fn acknowledge(
        &self,
        always: bool,
        end: u64,
        epoch: u64,
        log: &impl SyncOnce,
        class: &ClassMetrics,
        records: u32,
    ) -> Result<()> {
        if always && let Err(e) = self.wait_durable(end, epoch, log).await {
            class.append_errors.inc();
            return Err(e);
        }
        class.appends.inc();
        class.append_records.inc_by(u64::from(records));
        Ok(())
    }

    /// Waits until offsets below `end`, written in `epoch`, are durable.
    pub(crate) async fn wait_durable(
        &self,
        end: u64,
        epoch: u64,
        log: &impl SyncOnce,
    ) -> Result<()> {
        let mut rx = self.progress.subscribe();
        loop {
            {
                let p = rx.borrow_and_update();
                if p.epoch != epoch {
                    let floor = usize::try_from(epoch)
                        .ok()
                        .and_then(|e| p.floors.get(e).copied())
                        .unwrap_or(0);
                    return if end <= floor {
                        Ok(())
                    } else {
                        Err(JournalError::io(
                            "fsync",
                            std::io::Error::other("fsync failed; the append was rolled back"),
                        ))
                    };
                }
                if p.durable >= end {
                    return Ok(());
                }
            }
            if self
                .leader
                .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                // Leadership is given back even when this future is dropped mid-fsync (a
                // caller that stopped waiting), or no later fsync would ever run.
                let mut guard = Leading(self, false);
                let result = log.sync_once().await;
                // Release leadership before waking followers, so one of them can lead the
                // next fsync; one notification carries both the new durable end and that.
                guard.1 = true;
                drop(guard);
                let covered = result.as_ref().ok().copied();
                self.progress.send_modify(|p| {
                    // A truncation or rollback while the fsync ran started a new epoch:
                    // what this fsync covered may no longer be the log's.
                    if let Some(c) = covered
                        && p.epoch == epoch
                    {
                        p.durable = p.durable.max(c);
                    }
                });
                result?;
                continue;
            }
            rx.changed().await.map_err(|_| JournalError::Closed)?;
        }
    }
}

/// Holds the group-commit leadership; gives it back when dropped, and wakes the waiters
/// so that one of them leads the next fsync (a leader dropped mid-fsync would otherwise
/// leave them waiting for a write that may never come).
/// The flag is set when the fsync finished: its caller then wakes the waiters itself, with
/// the new durable end.
struct Leading<'a>(&'a GroupCommit, bool);

impl Drop for Leading<'_> {
    fn drop(&mut self) {
        self.0.leader.store(false, Ordering::Release);
        if !self.1 {
            self.0.progress.send_modify(|_| {});
        }
    }
}
