//! Where the agent frontend keeps its state (queues' marks and idempotency keys, agents'
//! cards, tasks): the node's state store when the node is alone, or, in a cluster, a
//! [`ChangeLog`]: the records of one replicated partition, which the node leading it reads
//! into memory when it takes over and appends every change to before it answers.
//!
//! A change log's write is acknowledged once the partition has it (a majority of its
//! copies, durable), then applied to the view the reads are answered from. Writes go out
//! in order, grouped: a write waiting while another is appended goes out with the next
//! batch, so many clients' acknowledgements cost one append. Each write's operations
//! are one batch, so they are applied all or none, even across a crash.
//!
//! The log is compacted by its owner: once it holds more than twice the live keys (and at
//! least [`COMPACT_AFTER`] records) or more than twice their bytes (and at least
//! [`COMPACT_AFTER_BYTES`]), the live keys are written again, and the records below them
//! deleted (`delete_before`). A crash in between leaves both: replaying the
//! older records before the rewrite gives the same view.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::RwLock;
use strata_batch::{BatchBuilder, PendingBatch, now_ms};
#[cfg(test)]
use strata_frontend::seams::StreamSpec;
use strata_frontend::seams::{Partition, StateOp, StatePair, StateSpace, StoreError};
use tokio::sync::{mpsc, oneshot, watch};

use crate::error::AgentError;

/// The state stream of a cluster's agent frontend: one partition, replicated; the node
/// leading it serves the agent API.
pub const STATE_STREAM: &str = "agent.state";

/// A log holding fewer records than this is not compacted for their number.
pub const COMPACT_AFTER: u64 = 10_000;

/// A log holding fewer bytes than this is not compacted for their size.
pub const COMPACT_AFTER_BYTES: u64 = 64 * 1024 * 1024;

/// The largest write: one batch, which every copy must be able to fetch whole.
pub const MAX_WRITE_BYTES: usize = 4 * 1024 * 1024;

/// Writes grouped into one append, at most.
const GROUP_WRITES: usize = 512;

/// Bytes of one batch the log appends, about (a larger write is one batch of its own).
const BATCH_BYTES: usize = 512 * 1024;

/// Bytes read at a time when the view is built.
const READ_BYTES: usize = 1024 * 1024;

/// Writes waiting for the log at once; past it a write waits for room.
const QUEUED_WRITES: usize = 4096;

/// The agent frontend's state, wherever it is kept. Cheap to clone.
#[derive(Debug, Clone)]
pub enum Space {
    /// The node's own state store.
    Node(StateSpace),
    /// A replicated partition this node leads.
    Cluster(Arc<ChangeLog>),
}

fn unavailable(e: impl std::fmt::Display) -> AgentError {
    AgentError::unavailable(e.to_string())
}

impl Space {
    /// The value of `key`.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, AgentError> {
        match self {
            Space::Node(s) => s.get(key).map_err(|e| unavailable(e.0)),
            Space::Cluster(log) => log.get(key),
        }
    }

    /// Every key starting with `prefix`, with its value, in key order.
    pub fn scan_prefix(&self, prefix: &[u8]) -> Result<Vec<StatePair>, AgentError> {
        match self {
            Space::Node(s) => s.scan_prefix(prefix).map_err(|e| unavailable(e.0)),
            Space::Cluster(log) => log.scan_prefix(prefix),
        }
    }

    /// Applies `ops` atomically; done once they are durable (in a cluster: on a majority).
    pub async fn write(&self, ops: Vec<StateOp>) -> Result<(), AgentError> {
        if ops.is_empty() {
            return Ok(());
        }
        match self {
            Space::Node(s) => s.write(&ops).map_err(|e| unavailable(e.0)),
            Space::Cluster(log) => log.write(ops).await,
        }
    }

    /// Sets `key` to `value`.
    pub async fn put(&self, key: Vec<u8>, value: Vec<u8>) -> Result<(), AgentError> {
        self.write(vec![StateOp::Put(key, value)]).await
    }

    /// Removes `key`.
    pub async fn delete(&self, key: Vec<u8>) -> Result<(), AgentError> {
        self.write(vec![StateOp::Delete(key)]).await
    }
}

/// One write waiting for the log.
struct Pending {
    ops: Vec<StateOp>,
    done: oneshot::Sender<Result<(), AgentError>>,
}

/// Keys and values as the log's records say, with how many records (and bytes) the log
/// holds and how many bytes the live keys take.
#[derive(Debug, Default)]
struct View {
    keys: BTreeMap<Vec<u8>, Vec<u8>>,
    records: u64,
    bytes: u64,
    live_bytes: u64,
}

impl View {
    fn apply(&mut self, ops: &[StateOp]) {
        for op in ops {
            let old = match op {
                StateOp::Put(k, v) => {
                    self.live_bytes += op_bytes(op) as u64;
                    self.keys.insert(k.clone(), v.clone())
                }
                StateOp::Delete(k) => self.keys.remove(k),
            };
            if let (Some(old), StateOp::Put(k, _) | StateOp::Delete(k)) = (old, op) {
                self.live_bytes -= (k.len() + old.len() + 16) as u64;
            }
            self.bytes += op_bytes(op) as u64;
        }
        self.records += ops.len() as u64;
    }

    fn wants_compaction(&self) -> bool {
        (self.records >= COMPACT_AFTER && self.records > 2 * self.keys.len() as u64)
            || (self.bytes >= COMPACT_AFTER_BYTES && self.bytes > 2 * self.live_bytes)
    }

    /// The log holds the live keys alone (just compacted).
    fn compacted(&mut self) {
        self.records = self.keys.len() as u64;
        self.bytes = self.live_bytes;
    }
}

/// The state kept as the records of a partition this node leads: a record per change
/// (its key the state's key, its value the new value, or null for a deletion).
#[derive(Debug)]
pub struct ChangeLog {
    view: Arc<RwLock<View>>,
    writes: mpsc::Sender<Pending>,
    /// Set once an append failed, or the log was closed: the partition may have another
    /// leader, so this view may be stale and nothing more is written through it.
    lost: Arc<AtomicBool>,
    partition: Arc<dyn Partition>,
    /// Tells the writer to stop after the append under way.
    closing: watch::Sender<bool>,
    /// Set by the writer when it has stopped (whoever waits, however many).
    stopped: watch::Receiver<bool>,
    writer: tokio::task::JoinHandle<()>,
}

impl Drop for ChangeLog {
    fn drop(&mut self) {
        self.writer.abort();
    }
}

/// The records of `batches` from `from` on, as state operations (the owner's markers,
/// records without a key, skipped).
fn ops_of(batches: &[strata_batch::Batch], from: u64) -> Result<(Vec<StateOp>, u64), StoreError> {
    let mut ops = Vec::new();
    for batch in batches {
        for record in batch.records()? {
            let record = record?;
            if record.offset < from {
                continue;
            }
            match (record.key, record.value) {
                (Some(k), _) if k.is_empty() => {}
                (Some(k), Some(v)) => ops.push(StateOp::Put(k.to_vec(), v.to_vec())),
                (Some(k), None) => ops.push(StateOp::Delete(k.to_vec())),
                (None, _) => {}
            }
        }
    }
    let next = batches.last().map_or(from, |b| b.last_offset() + 1);
    Ok((ops, next.max(from)))
}

/// The batch holding `ops`, one record each.
fn batch_of(ops: &[StateOp]) -> Result<PendingBatch, AgentError> {
    let at = now_ms();
    let mut batch = BatchBuilder::new();
    for op in ops {
        match op {
            StateOp::Put(k, v) => batch.push(at, Some(k), Some(v), &[]),
            StateOp::Delete(k) => batch.push(at, Some(k), None, &[]),
        }
    }
    batch.build().map_err(unavailable)
}

impl ChangeLog {
    /// Takes the state over from `partition`, which this node leads: appends a marker
    /// (committed, it shows that every earlier record is too, and that this node leads),
    /// then reads every record below it into the view.
    pub async fn take_over(partition: Arc<dyn Partition>, node: u64) -> Result<Self, AgentError> {
        let mut marker = BatchBuilder::new();
        let says = format!("owner {node}");
        marker.push(now_ms(), Some(b""), Some(says.as_bytes()), &[]);
        let marker = marker.build().map_err(unavailable)?;
        let at = partition.append(marker).await?.base_offset;
        let mut view = View::default();
        let mut from = partition.offsets().await?.log_start;
        while from < at {
            let batches = partition.read(from, READ_BYTES).await?;
            if batches.is_empty() {
                return Err(AgentError::unavailable(format!(
                    "the agent state read stopped at {from}, below its marker at {at}"
                )));
            }
            let (ops, next) = ops_of(&batches, from)?;
            view.apply(&ops[..]);
            from = next;
        }
        tracing::info!(
            keys = view.keys.len(),
            records = view.records,
            "agent state taken over"
        );
        let view = Arc::new(RwLock::new(view));
        let lost = Arc::new(AtomicBool::new(false));
        let (writes, queued) = mpsc::channel(QUEUED_WRITES);
        let (closing, closed) = watch::channel(false);
        let (stop, stopped) = watch::channel(false);
        let writer = tokio::spawn({
            let (partition, view, lost) = (partition.clone(), view.clone(), lost.clone());
            async move {
                write_loop(partition, view, lost, queued, closed).await;
                stop.send_replace(true);
            }
        });
        Ok(ChangeLog {
            view,
            writes,
            lost,
            partition,
            closing,
            stopped,
            writer,
        })
    }

    /// Stops writing: every write from here on fails, and this returns once the writer
    /// has stopped, its append under way done, so that nothing written through this log
    /// can follow a later owner's marker. Called before the state is taken over again;
    /// a caller cancelled while it waits leaves the log to the next one to close it.
    pub async fn close(&self) {
        self.lost.store(true, Ordering::Release);
        self.closing.send_replace(true);
        let mut stopped = self.stopped.clone();
        let _ = stopped.wait_for(|s| *s).await;
    }

    /// Whether the partition is still served here (led, its marker committed, and a
    /// majority heard from within the contact lease): checked before each request is
    /// answered from this view.
    pub async fn still_leads(&self) -> Result<(), AgentError> {
        self.usable()?;
        self.partition.offsets().await?;
        Ok(())
    }

    /// Whether an append failed: the partition may be led elsewhere now.
    pub fn is_lost(&self) -> bool {
        self.lost.load(Ordering::Acquire)
    }

    fn usable(&self) -> Result<(), AgentError> {
        if self.is_lost() {
            return Err(AgentError::unavailable(
                "this node no longer holds the agent state: try again",
            ));
        }
        Ok(())
    }

    /// The value of `key`.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, AgentError> {
        self.usable()?;
        Ok(self.view.read().keys.get(key).cloned())
    }

    /// Every key starting with `prefix`, with its value, in key order.
    pub fn scan_prefix(&self, prefix: &[u8]) -> Result<Vec<StatePair>, AgentError> {
        self.usable()?;
        Ok(self
            .view
            .read()
            .keys
            .range(prefix.to_vec()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    /// Appends `ops` as one batch and applies them once the partition acknowledged it.
    pub async fn write(&self, ops: Vec<StateOp>) -> Result<(), AgentError> {
        self.usable()?;
        let bytes: usize = ops.iter().map(op_bytes).sum();
        if bytes > MAX_WRITE_BYTES {
            return Err(AgentError::unavailable(format!(
                "a state write of {bytes} bytes is larger than {MAX_WRITE_BYTES}"
            )));
        }
        let (done, answer) = oneshot::channel();
        self.writes
            .send(Pending { ops, done })
            .await
            .map_err(|_| AgentError::unavailable("the agent state is closed"))?;
        answer
            .await
            .map_err(|_| AgentError::unavailable("the agent state is closed"))?
    }

    /// How many keys the view holds, and how many records the log does.
    pub fn size(&self) -> (usize, u64) {
        let view = self.view.read();
        (view.keys.len(), view.records)
    }
}

/// Appends the writes as they come, grouped, in order; compacts the log when it is due.
/// Stops at the first failed append: every write after it fails too.
async fn write_loop(
    partition: Arc<dyn Partition>,
    view: Arc<RwLock<View>>,
    lost: Arc<AtomicBool>,
    mut queued: mpsc::Receiver<Pending>,
    mut closed: watch::Receiver<bool>,
) {
    let mut failed = AgentError::unavailable("the agent state is served elsewhere now: try again");
    loop {
        let first = tokio::select! {
            biased;
            _ = closed.wait_for(|c| *c) => break,
            next = queued.recv() => match next {
                Some(p) => p,
                None => break,
            },
        };
        if lost.load(Ordering::Acquire) {
            let _ = first.done.send(Err(failed.clone()));
            break;
        }
        let mut group = vec![first];
        let mut bytes: usize = group[0].ops.iter().map(op_bytes).sum();
        while group.len() < GROUP_WRITES && bytes < BATCH_BYTES {
            match queued.try_recv() {
                Ok(next) => {
                    bytes += next.ops.iter().map(op_bytes).sum::<usize>();
                    group.push(next);
                }
                Err(_) => break,
            }
        }
        let ops: Vec<StateOp> = group.iter().flat_map(|p| p.ops.iter().cloned()).collect();
        let appended = match batch_of(&ops) {
            Ok(batch) => partition.append(batch).await.map_err(AgentError::from),
            Err(e) => Err(e),
        };
        match appended {
            Ok(_) => {
                view.write().apply(&ops);
                for p in group {
                    let _ = p.done.send(Ok(()));
                }
            }
            Err(e) => {
                tracing::warn!(error = %e.message, "agent state: append failed, giving it up");
                lost.store(true, Ordering::Release);
                for p in group {
                    let _ = p.done.send(Err(e.clone()));
                }
                failed = e;
                break;
            }
        }
        if view.read().wants_compaction()
            && let Err(e) = compact(partition.as_ref(), &view, &closed).await
        {
            tracing::warn!(error = %e.message, "agent state: compaction failed, giving it up");
            lost.store(true, Ordering::Release);
            failed = e;
            break;
        }
    }
    // Nothing more is appended through this log: what still waits fails.
    lost.store(true, Ordering::Release);
    queued.close();
    while let Ok(p) = queued.try_recv() {
        let _ = p.done.send(Err(failed.clone()));
    }
}

fn op_bytes(op: &StateOp) -> usize {
    match op {
        StateOp::Put(k, v) => k.len() + v.len() + 16,
        StateOp::Delete(k) => k.len() + 16,
    }
}

/// Writes every live key again, then deletes the records below the first of them.
async fn compact(
    partition: &dyn Partition,
    view: &RwLock<View>,
    closed: &watch::Receiver<bool>,
) -> Result<(), AgentError> {
    // No write is appended meanwhile (the writer is here), so the copy stays current.
    let live: Vec<StateOp> = view
        .read()
        .keys
        .iter()
        .map(|(k, v)| StateOp::Put(k.clone(), v.clone()))
        .collect();
    let mut first = None;
    let mut rest = &live[..];
    while !rest.is_empty() {
        if *closed.borrow() {
            // Closed for a new take-over: no more of this view's keys may follow.
            return Err(AgentError::unavailable("the agent state was closed"));
        }
        let mut bytes = 0;
        let n = rest
            .iter()
            .take_while(|op| {
                let fits = bytes < BATCH_BYTES;
                bytes += op_bytes(op);
                fits
            })
            .count()
            .max(1);
        let a = partition.append(batch_of(&rest[..n])?).await?;
        first.get_or_insert(a.base_offset);
        rest = &rest[n..];
    }
    let Some(first) = first else {
        // Nothing live: everything written so far may go.
        let end = partition.offsets().await?.end;
        partition.delete_before(end).await?;
        view.write().compacted();
        return Ok(());
    };
    partition.delete_before(first).await?;
    let mut v = view.write();
    v.compacted();
    tracing::info!(keys = v.keys.len(), "agent state compacted");
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use strata_frontend::seams::Storage;

    async fn state_partition(storage: &Storage) -> Arc<dyn Partition> {
        storage
            .ensure_stream(StreamSpec::new(STATE_STREAM, 1).keeping_all())
            .await
            .unwrap();
        storage.partition(STATE_STREAM, 0).await.unwrap()
    }

    fn put(k: &str, v: &str) -> StateOp {
        StateOp::Put(k.as_bytes().to_vec(), v.as_bytes().to_vec())
    }

    #[tokio::test]
    async fn a_new_owner_reads_what_the_last_one_wrote_and_the_log_stays_bounded() {
        let storage = Storage::in_memory();
        let partition = state_partition(&storage).await;
        let log = ChangeLog::take_over(partition.clone(), 1).await.unwrap();
        log.write(vec![put("a/1", "x"), put("a/2", "y")])
            .await
            .unwrap();
        log.write(vec![StateOp::Delete(b"a/1".to_vec()), put("b/1", "z")])
            .await
            .unwrap();
        // Many writes of a few keys, some at once: compacted on the way.
        let writes: Vec<_> = (0..3 * COMPACT_AFTER)
            .map(|i| log.write(vec![put(&format!("c/{}", i % 7), &i.to_string())]))
            .collect();
        for w in futures_util::future::join_all(writes).await {
            w.unwrap();
        }
        let (keys, records) = log.size();
        assert_eq!(keys, 9);
        assert!(
            records < COMPACT_AFTER + 10,
            "{records} records for {keys} keys"
        );
        let start = partition.offsets().await.unwrap().log_start;
        assert!(start > 2 * COMPACT_AFTER, "log start {start}");
        let before = log.scan_prefix(b"").unwrap();
        drop(log);

        let again = ChangeLog::take_over(partition, 2).await.unwrap();
        assert_eq!(again.scan_prefix(b"").unwrap(), before);
        assert_eq!(again.get(b"a/1").unwrap(), None);
        assert_eq!(again.get(b"b/1").unwrap(), Some(b"z".to_vec()));
        assert_eq!(again.scan_prefix(b"c/").unwrap().len(), 7);
    }

    #[tokio::test]
    async fn a_closed_log_writes_nothing_more_and_the_next_view_has_what_it_wrote() {
        let storage = Storage::in_memory();
        let partition = state_partition(&storage).await;
        let old = ChangeLog::take_over(partition.clone(), 1).await.unwrap();
        old.write(vec![put("k", "1")]).await.unwrap();
        old.close().await;
        assert!(old.write(vec![put("k", "2")]).await.is_err());
        assert!(old.still_leads().await.is_err());
        let new = ChangeLog::take_over(partition.clone(), 1).await.unwrap();
        new.write(vec![put("j", "3")]).await.unwrap();
        // Nothing of the old view follows the new one's marker.
        assert!(old.write(vec![put("k", "4")]).await.is_err());
        let again = ChangeLog::take_over(partition, 1).await.unwrap();
        assert_eq!(again.get(b"k").unwrap(), Some(b"1".to_vec()));
        assert_eq!(again.get(b"j").unwrap(), Some(b"3".to_vec()));
    }

    #[tokio::test]
    async fn a_write_refused_by_the_partition_loses_the_state_for_good() {
        let storage = Storage::in_memory();
        let partition = state_partition(&storage).await;
        let log = ChangeLog::take_over(partition, 1).await.unwrap();
        log.write(vec![put("k", "v")]).await.unwrap();
        // The stream goes (its partition answers Closed): as when another node leads it.
        storage.catalog.delete_stream(STATE_STREAM).await.unwrap();
        assert!(log.write(vec![put("k", "w")]).await.is_err());
        assert!(log.is_lost());
        assert_eq!(log.get(b"k").unwrap_err().code, "unavailable");
        assert!(log.write(vec![put("k", "x")]).await.is_err());
    }
}
