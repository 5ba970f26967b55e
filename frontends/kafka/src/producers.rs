//! Producer ids and idempotent produce: per partition and producer, the sequence numbers
//! of the last batches, so a retried batch is answered with its first offset instead of
//! being stored twice, and a gap in sequences is refused.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use kafka_protocol::messages::{InitProducerIdResponse, ProducerId};
use strata_batch::PendingBatch;
use strata_frontend::seams::StateSpace;
use strata_frontend::seams::{Partition, StoreError};

use crate::code;

/// Key of the next producer id in the key-value store.
const NEXT_ID: &[u8] = b"p/next";
/// Key of the end of the producer ids handed out before the node ran in a cluster.
const LEGACY_END: &[u8] = b"p/legacy";
/// The first producer id handed out (after the node's base).
const FIRST_ID: i64 = 1000;
/// Batches remembered per producer and partition (Kafka keeps five).
const REMEMBERED: usize = 5;

#[derive(Debug, Clone, Copy)]
struct Sent {
    first_seq: i32,
    last_seq: i32,
    base_offset: i64,
    last_offset: u64,
}

/// Longest a retry of a stored batch waits for that batch to be committed (as long as a
/// replicated append waits for its replicas).
const DUPLICATE_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Returns once the batch ending at `last_offset` is committed (readable): a batch found
/// in the log by a rebuild may be past the high watermark, and its retry is answered only
/// when it is committed, as its first append would have been. NOT_LEADER_OR_FOLLOWER once
/// this node no longer leads, REQUEST_TIMED_OUT after [`DUPLICATE_WAIT`].
async fn committed(log: &Arc<dyn Partition>, last_offset: u64) -> Result<(), i16> {
    let until = tokio::time::Instant::now() + DUPLICATE_WAIT;
    loop {
        let end = log.offsets().await.map_err(|e| storage_code(&e))?.end;
        if end > last_offset {
            return Ok(());
        }
        if tokio::time::Instant::now() >= until {
            return Err(code::REQUEST_TIMED_OUT);
        }
        // Short waits: the leadership is checked again between them.
        let _ = tokio::time::timeout(
            std::time::Duration::from_millis(200),
            log.wait_for(last_offset),
        )
        .await;
    }
}

#[derive(Debug, Default)]
struct ProducerState {
    epoch: i16,
    sent: VecDeque<Sent>,
    /// When it last produced here (the partition's own count of appends).
    last_used: u64,
}

/// The producers of one partition; `loaded` once rebuilt from the partition's tail.
#[derive(Debug, Default)]
struct PartitionProducers {
    loaded: bool,
    /// The partition's leader epoch when they were rebuilt: a leader that changed since
    /// (this node led, then followed, then leads again) rebuilds them from the log.
    loaded_epoch: u64,
    by_id: HashMap<i64, ProducerState>,
    /// Appends with a producer id so far.
    clock: u64,
    /// Producer ids by when they last produced here, oldest first.
    by_use: std::collections::BTreeMap<u64, i64>,
}

impl PartitionProducers {
    /// The state of `pid`, made room for: past `max` producers, the one unseen the longest
    /// is forgotten (its next retry of an old batch would be stored again, as after
    /// Kafka's producer id expiration).
    fn producer(&mut self, pid: i64, max: usize) -> &mut ProducerState {
        self.clock += 1;
        if !self.by_id.contains_key(&pid)
            && self.by_id.len() >= max.max(1)
            && let Some((_, oldest)) = self.by_use.pop_first()
        {
            self.by_id.remove(&oldest);
        }
        let clock = self.clock;
        let p = self.by_id.entry(pid).or_default();
        if p.last_used != 0 {
            self.by_use.remove(&p.last_used);
        }
        p.last_used = clock;
        self.by_use.insert(clock, pid);
        p
    }
}

/// Offsets at the end of a partition scanned to rebuild producer state after a restart.
const REBUILD_OFFSETS: u64 = 10_000;
/// Idempotence state by (stream, partition), each behind its own lock.
type ByPartition = HashMap<(String, i32), Arc<tokio::sync::Mutex<PartitionProducers>>>;

/// Producer ids handed out and the idempotence state of every partition.
#[derive(Debug)]
pub struct Producers {
    kv: StateSpace,
    /// The first id of this node's range.
    first: i64,
    /// The end of the ids handed out before the node ran in a cluster (from `FIRST_ID`).
    legacy_end: i64,
    /// Producers whose state one partition keeps.
    max_per_partition: usize,
    next: AtomicI64,
    partitions: parking_lot::Mutex<ByPartition>,
}

/// The Kafka error code for a storage error.
pub fn storage_code(e: &StoreError) -> i16 {
    match e {
        StoreError::InvalidBatch(_) | StoreError::UnsupportedCodec(_) => code::CORRUPT_MESSAGE,
        StoreError::Full { .. } => code::MESSAGE_TOO_LARGE,
        StoreError::UnknownStream(_) | StoreError::UnknownPartition { .. } => {
            code::UNKNOWN_TOPIC_OR_PARTITION
        }
        StoreError::NotLeader { .. } => code::NOT_LEADER_OR_FOLLOWER,
        StoreError::OffsetOutOfRange { .. } => code::OFFSET_OUT_OF_RANGE,
        _ => code::KAFKA_STORAGE_ERROR,
    }
}

impl Producers {
    /// Loads the next producer id.
    ///
    /// Ids are unique across the cluster: node `node` hands out `node << 32` and up (a
    /// producer's batches go to every partition leader, whichever node gave it its id).
    /// Ids a node handed out before it ran in a cluster stay valid.
    pub fn new(kv: StateSpace, max_per_partition: usize, node: u64) -> Self {
        let read = |key: &[u8]| {
            kv.get(key)
                .ok()
                .flatten()
                .and_then(|v| <[u8; 8]>::try_from(v.as_slice()).ok())
                .map(i64::from_be_bytes)
        };
        let stored = read(NEXT_ID).unwrap_or(FIRST_ID);
        let first = Self::node_base(node) + FIRST_ID;
        // Ids handed out before the node ran in a cluster stay valid: their end is kept
        // once, since the next id stored from now on is in the node's range.
        let legacy_end = if stored < first {
            if let Err(e) = kv.put(LEGACY_END, &stored.to_be_bytes()) {
                tracing::error!(error = %e, "cannot store the end of the earlier producer ids");
            }
            stored
        } else {
            read(LEGACY_END).unwrap_or(FIRST_ID)
        };
        let next = stored.max(first);
        Producers {
            kv,
            first,
            legacy_end,
            max_per_partition,
            next: AtomicI64::new(next),
            partitions: parking_lot::Mutex::new(HashMap::new()),
        }
    }

    /// The first id of node `node`'s range.
    fn node_base(node: u64) -> i64 {
        i64::try_from(node.min(i32::MAX as u64)).unwrap_or(0) << 32
    }

    /// The node that handed out producer id `pid`.
    pub fn node_of(pid: i64) -> u64 {
        (pid >> 32) as u64
    }

    /// A new producer id (durable: never handed out twice, even after a restart).
    pub fn init(&self) -> InitProducerIdResponse {
        let id = self.next.fetch_add(1, Ordering::SeqCst);
        if let Err(e) = self.kv.put(NEXT_ID, &(id + 1).to_be_bytes()) {
            tracing::error!(error = %e, "cannot store the next producer id");
            return InitProducerIdResponse::default()
                .with_error_code(code::KAFKA_STORAGE_ERROR)
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1);
        }
        InitProducerIdResponse::default()
            .with_producer_id(ProducerId(id))
            .with_producer_epoch(0)
    }

    /// Appends `batch`, applying the idempotence checks when it carries a producer id.
    /// `member` says whether a node id is one of the cluster's. Returns the first offset,
    /// or a Kafka error code.
    pub async fn append(
        &self,
        stream: &str,
        partition: i32,
        log: &Arc<dyn Partition>,
        batch: PendingBatch,
        member: impl Fn(u64) -> bool,
        leader_epoch: u64,
    ) -> Result<i64, i16> {
        let (pid, epoch, first_seq) = batch.producer();
        let ours = (self.first..self.next.load(Ordering::SeqCst)).contains(&pid)
            || (FIRST_ID..self.legacy_end).contains(&pid);
        if pid >= 0 && !ours && !(pid >= FIRST_ID && member(Self::node_of(pid))) {
            // Only ids this node or another member handed out: made-up ones would fill
            // the state of others.
            return Err(code::UNKNOWN_PRODUCER_ID);
        }
        if pid < 0 {
            return log
                .append(batch)
                .await
                .map(|a| a.base_offset as i64)
                .map_err(|e| storage_code(&e));
        }
        let state = self
            .partitions
            .lock()
            .entry((stream.to_string(), partition))
            .or_default()
            .clone();
        let mut producers = state.lock().await;
        if !producers.loaded || producers.loaded_epoch != leader_epoch {
            producers.by_id.clear();
            producers.by_use.clear();
            // Loaded only by a rebuild that read the whole tail: a failed or partial one
            // leaves the state unloaded, so the next request rebuilds again instead of
            // taking a retry of a stored batch for a new one.
            producers.loaded = false;
            rebuild(&mut producers, log, self.max_per_partition).await;
            if producers.loaded {
                producers.loaded_epoch = leader_epoch;
            } else {
                // Sequences cannot be checked without the log's tail: the client retries.
                return Err(code::NOT_LEADER_OR_FOLLOWER);
            }
        }
        let p = producers.producer(pid, self.max_per_partition);
        if epoch < p.epoch {
            return Err(code::INVALID_PRODUCER_EPOCH);
        }
        if epoch > p.epoch {
            p.epoch = epoch;
            p.sent.clear();
        }
        let last_seq = first_seq.wrapping_add(batch.record_count() as i32 - 1);
        if let Some(dup) = p
            .sent
            .iter()
            .find(|s| s.first_seq == first_seq && s.last_seq == last_seq)
            .copied()
        {
            committed(log, dup.last_offset).await?;
            return Ok(dup.base_offset);
        }
        if let Some(last) = p.sent.back()
            && first_seq != last.last_seq.wrapping_add(1)
        {
            tracing::debug!(stream, partition, pid, epoch, first_seq, last_seq, sent = ?p.sent,
                leader_epoch, "out of order sequence");
            return Err(code::OUT_OF_ORDER_SEQUENCE);
        }
        let appended = match log.append(batch).await {
            Ok(a) => a,
            Err(e) => {
                // The batch may be stored all the same (a replicated write whose leader
                // moved while it waited): the next request rebuilds from the log, where a
                // retry of it is then recognised.
                producers.loaded = false;
                return Err(storage_code(&e));
            }
        };
        let base = appended.base_offset as i64;
        p.sent.push_back(Sent {
            first_seq,
            last_seq,
            base_offset: base,
            last_offset: appended.last_offset,
        });
        if p.sent.len() > REMEMBERED {
            p.sent.pop_front();
        }
        Ok(base)
    }
}

/// Rebuilds the producers' last sequences from the batches at the end of the partition, so
/// that a retry sent before a restart is still recognised after it. It reads up to the
/// leader's written end, past the high watermark: a batch whose append gave up waiting for
/// the replicas is still in the log and is committed if this node goes on leading, so a
/// retry of it must be answered as a duplicate, not stored a second time (and the batches
/// after it must not be refused as out of order).
async fn rebuild(producers: &mut PartitionProducers, log: &Arc<dyn Partition>, max: usize) {
    let Ok(offsets) = log.offsets().await else {
        return;
    };
    let mut next = offsets
        .end
        .saturating_sub(REBUILD_OFFSETS)
        .max(offsets.log_start);
    loop {
        let Ok(batches) = log.read_written(next, 1 << 20).await else {
            return;
        };
        let Some(last) = batches.last() else { break };
        next = last.last_offset() + 1;
        for b in &batches {
            let (pid, epoch, first_seq) = b.producer();
            if pid < 0 {
                continue;
            }
            let p = producers.producer(pid, max);
            if epoch > p.epoch {
                p.epoch = epoch;
                p.sent.clear();
            }
            p.sent.push_back(Sent {
                first_seq,
                last_seq: first_seq.wrapping_add(b.record_count() as i32 - 1),
                base_offset: b.base_offset() as i64,
                last_offset: b.last_offset(),
            });
            if p.sent.len() > REMEMBERED {
                p.sent.pop_front();
            }
        }
    }
    producers.loaded = true;
}
