//! Replicated partitions on a node: the leader appends in its epoch and acknowledges once
//! a majority of replicas has the records durable; followers fetch from the leader,
//! truncate where their logs leave the leader's and copy its batches byte for byte; the
//! high watermark (what readers see) is the majority's durable end. Who leads is the meta
//! service's: [`drive`] follows its placement, fences each replica's log at a new epoch,
//! reports the log's end to elections, and (on the meta leader) starts an election when a
//! partition's leader stops sending heartbeats. See docs/architecture.md, "Replication".

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use strata_batch::{Batch, BatchBuilder, PendingBatch};
use strata_frontend::seams::{
    Appended, Catalog, NodeId, Offsets, Partition, StoreError, StoreResult,
};
use strata_journal::{OffloadDuty, PartitionLog};
use strata_meta::MetaNode;
use strata_meta::model::{Command, Outcome, PartitionPlacement, ReplicaEnd, majority};
use strata_meta::partitions::{MAX_READ_BYTES, Op, PartitionReply, PartitionRequest};
use tokio::sync::{Notify, watch};
use tracing::{info, warn};

use crate::errors::store_error;

/// How often placement is checked for changes of role.
const DRIVE_EVERY: Duration = Duration::from_millis(50);
/// How long a follower's fetch waits at the leader for new records while it has records
/// whose commitment it has not heard of yet (the leader's answer carries the high
/// watermark).
const FETCH_WAIT_MS: u64 = 500;
/// How long it waits when it holds nothing uncommitted: only new records can change
/// anything, and they end the wait at once. Idle partitions then cost one fetch per
/// follower every 5 s instead of two a second.
const IDLE_FETCH_WAIT_MS: u64 = 5_000;
/// Most bytes one fetch answers.
const FETCH_BYTES: u64 = 1 << 20;
/// How long a write waits for a majority before it fails (it may still be committed).
const COMMIT_DEADLINE: Duration = Duration::from_secs(30);
/// A leader that has led this long and heard no fetch in this long from enough followers
/// to make a majority with itself is cut off from them: it refuses appends, and fails
/// those waiting, at once instead of after [`COMMIT_DEADLINE`]. Longer than an idle
/// follower's fetch waits at the leader (`IDLE_FETCH_WAIT_MS`) with its margin.
const CONTACT_LEASE: Duration = Duration::from_secs(8);
/// How much longer than its wait at the leader a fetch may take.
const FETCH_MARGIN: Duration = Duration::from_millis(1_500);
/// Least time between two elections begun for one partition.
const ELECTION_SPACING: Duration = Duration::from_secs(1);
/// Pause after a failed fetch.
const RETRY: Duration = Duration::from_millis(100);
/// The file in a partition's directory saying its replica once held every committed record.
pub const JOINED_FILE: &str = "replica-joined";
/// A divergence answer meaning "your newest epoch is unknown to me: drop it".
pub const DROP_LAST_EPOCH: u64 = u64::MAX;
/// A follower is in sync while it caught up with the leader's end within this long
/// (Kafka's `replica.lag.time.max.ms`, shorter).
pub const IN_SYNC_LAG: Duration = Duration::from_secs(10);
/// Least time between two failed reports of the in-sync replicas.
const IN_SYNC_RETRY: Duration = Duration::from_secs(1);
/// How often the replication gauges are brought up to date.
const MEASURE_EVERY: Duration = Duration::from_secs(1);
/// A leader that is not its partition's preferred replica (the first one, where
/// placement put the leader) hands over to it once it has led this long and the
/// preferred replica is up and in sync: after a failover, leadership returns to where
/// placement spread it instead of piling up on the nodes that stayed up.
const HAND_OVER_AFTER: Duration = Duration::from_secs(10);
/// ... and once the preferred replica has been in sync that long without a break (a node
/// that keeps crashing and coming back is not handed leadership each time).
const HAND_OVER_IN_SYNC: Duration = Duration::from_secs(30);
/// ... plus up to this much more, a fixed share per partition: a node that comes back is
/// handed its partitions one after another over this window, not all within the same
/// few seconds (each handover refuses appends for up to [`HAND_OVER_WAIT`]).
const HAND_OVER_SPREAD: Duration = Duration::from_secs(30);
/// How long a handing-over leader, taking no appends, waits for the preferred replica
/// to hold its whole log before it gives up and takes appends again. It begins only
/// when the preferred replica's last fetch was at its end, within the last second.
const HAND_OVER_WAIT: Duration = Duration::from_millis(500);
/// After a failed attempt, a leader waits this long before the next, twice as long
/// after each further failure, up to [`HAND_OVER_RETRY_MAX`]: a preferred replica that
/// never keeps up costs at most half a second of refused appends every 10 minutes.
const HAND_OVER_RETRY: Duration = Duration::from_secs(30);
const HAND_OVER_RETRY_MAX: Duration = Duration::from_secs(600);
/// A leader whose move's new copies did not all keep up waits this long before it tries
/// again (twice as long after each further failure, up to [`HAND_OVER_RETRY_MAX`]).
const MOVE_RETRY: Duration = Duration::from_secs(5);
/// A leader that handed over reports to the election this much later than the others,
/// so the preferred replica (as up to date as itself) is among the first majority.
const HAND_OVER_REPORT_DELAY: Duration = Duration::from_secs(1);

/// What the leader knows of one follower in its epoch.
#[derive(Debug, Clone, Copy)]
struct Follower {
    /// Its last fetch offset: it holds every record below it durably.
    offset: u64,
    /// When it last fetched.
    fetched_at: std::time::Instant,
    /// The leader's end at that fetch.
    end_at_fetch: u64,
    /// When it last held everything the leader had (Kafka's rule: a fetch at the
    /// leader's end, or at the end the leader had at the follower's previous fetch).
    caught_up_at: Option<std::time::Instant>,
}

impl Follower {
    fn in_sync(&self, now: std::time::Instant) -> bool {
        self.caught_up_at
            .is_some_and(|at| now.saturating_duration_since(at) <= IN_SYNC_LAG)
    }

    /// Whether it held everything the leader had within the last second, or holds all
    /// of the leader's log now (`end`) and is waiting at the leader for more (an idle
    /// partition's followers fetch every few seconds).
    fn keeping_up(&self, now: std::time::Instant, end: u64) -> bool {
        let waiting = Duration::from_millis(IDLE_FETCH_WAIT_MS) + FETCH_MARGIN;
        self.caught_up_at
            .is_some_and(|at| now.saturating_duration_since(at) < Duration::from_secs(1))
            || (self.offset >= end && now.saturating_duration_since(self.fetched_at) < waiting)
    }
}

/// One replica's state, for the admin API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaStatus {
    /// Stream.
    pub stream: String,
    /// Partition.
    pub partition: u32,
    /// Its role now.
    pub role: Role,
    /// Its high watermark (what readers see).
    pub high_watermark: u64,
    /// The end of what its log holds.
    pub log_end: u64,
    /// Leader: its followers, by node id.
    pub followers: Vec<FollowerStatus>,
}

/// A follower as its leader sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FollowerStatus {
    /// The follower.
    pub node: NodeId,
    /// Its fetch offset (none: it did not fetch in this epoch yet).
    pub offset: Option<u64>,
    /// Records the leader holds past that offset.
    pub lag: u64,
    /// Whether it is in sync.
    pub in_sync: bool,
    /// Whether it is a learner: a node the partition is moving to, copying the log
    /// without counting toward commitment.
    pub learner: bool,
}

/// What this node is for one replicated partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// No leader and no election (not placed yet), or no longer a replica.
    Idle,
    /// The replicas elect the leader of `epoch`.
    Electing {
        /// The epoch being elected.
        epoch: u64,
    },
    /// This node leads `epoch`.
    Leader {
        /// Its epoch.
        epoch: u64,
    },
    /// `leader` leads `epoch`; this node copies it.
    Follower {
        /// The leader's epoch.
        epoch: u64,
        /// The leader.
        leader: NodeId,
    },
}

/// One replicated partition on this node.
#[derive(Debug)]
pub struct Replica {
    stream: String,
    partition: u32,
    log: Arc<dyn PartitionLog>,
    /// The nodes holding a copy and those copying it to become one.
    members: parking_lot::RwLock<Members>,
    role: watch::Sender<Role>,
    /// Leader: each follower's progress in the current epoch.
    followers: parking_lot::Mutex<HashMap<NodeId, Follower>>,
    /// Leader: a report of the in-sync replicas is being written, or the last one failed
    /// at this time.
    reporting: parking_lot::Mutex<(bool, Option<std::time::Instant>)>,
    /// Leader: wakes followers' waiting fetches when records are written.
    written: Notify,
    /// Leader: wakes a handover waiting for the preferred replica when a follower fetches.
    followed: Notify,
    /// A file in the partition's directory saying this replica's log once held every
    /// committed record (it led, or caught up with a leader). A replica without it (its
    /// disk was wiped, or it never caught up) does not take part in elections: its empty
    /// or short log could otherwise outvote the records it lost.
    joined: std::path::PathBuf,
    joined_known: std::sync::atomic::AtomicBool,
    /// Leader: the epoch whose marker is committed: from then on the high watermark
    /// covers everything the log held when this node took over, and clients are served.
    serving: std::sync::atomic::AtomicU64,
    /// Leader: handing over to the preferred replica.
    handover: parking_lot::Mutex<Handover>,
    /// Follower: held through each fetch and its writes, so a copy moved away is
    /// emptied only once no fetch of it is under way.
    fetching: tokio::sync::Mutex<()>,
}

/// A replicated partition's members as placement has them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Members {
    /// The replicas: their count sets the majority, and only they count toward it (and
    /// toward a leader's contact with its followers).
    replicas: Vec<NodeId>,
    /// Nodes a move adds: they fetch like followers, and count for nothing until the
    /// move's election makes them replicas.
    learners: Vec<NodeId>,
    /// The move they belong to.
    move_id: u64,
}

impl Members {
    fn of(p: &PartitionPlacement) -> Self {
        Members {
            replicas: p.replicas.clone(),
            learners: p.learners(),
            move_id: p.move_id,
        }
    }
}

/// A leader's handover to its partition's preferred replica.
#[derive(Debug, Default)]
struct Handover {
    /// The epoch this node began leading, and when.
    led_since: Option<(u64, std::time::Instant)>,
    /// The epoch being handed over: appends in it are refused (clients retry at the new
    /// leader).
    active: Option<u64>,
    /// Since when the preferred replica has been in sync without a break.
    in_sync_since: Option<std::time::Instant>,
    /// When the next attempt may begin, after failed ones.
    retry_at: Option<std::time::Instant>,
    /// Failed attempts in a row.
    failures: u32,
    /// This partition's share of [`HAND_OVER_SPREAD`].
    spread: Duration,
}

/// A fixed share of [`HAND_OVER_SPREAD`] for a partition, the same on every node.
fn spread(stream: &str, partition: u32) -> Duration {
    // FNV-1a: stable across builds and nodes (std's hasher promises neither).
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in stream.bytes().chain(partition.to_be_bytes()) {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    HAND_OVER_SPREAD.mul_f64((h % 1000) as f64 / 1000.0)
}

impl Replica {
    fn new(
        stream: &str,
        partition: u32,
        log: Arc<dyn PartitionLog>,
        placement: &PartitionPlacement,
        joined: std::path::PathBuf,
    ) -> Self {
        Replica {
            joined_known: std::sync::atomic::AtomicBool::new(joined.exists()),
            joined,
            serving: std::sync::atomic::AtomicU64::new(u64::MAX),
            stream: stream.to_string(),
            partition,
            log,
            members: parking_lot::RwLock::new(Members::of(placement)),
            role: watch::Sender::new(Role::Idle),
            followers: parking_lot::Mutex::default(),
            reporting: parking_lot::Mutex::default(),
            written: Notify::new(),
            followed: Notify::new(),
            handover: parking_lot::Mutex::new(Handover {
                spread: spread(stream, partition),
                ..Handover::default()
            }),
            fetching: tokio::sync::Mutex::new(()),
        }
    }

    /// Takes the members `placement` names (a move's learners come and go; the replicas
    /// change only with an election).
    fn set_members(&self, placement: &PartitionPlacement) {
        let members = Members::of(placement);
        // Read-locked in the common case (no change): appends and fetches read it too.
        let now = self.members.upgradable_read();
        if *now != members {
            let mut now = parking_lot::RwLockUpgradableReadGuard::upgrade(now);
            // What the leader knew of a node that is no longer a member is dropped, and
            // of every learner once the move changed (cancelled and asked for again
            // between two passes, a learner must show its progress anew: its copy was
            // emptied meanwhile).
            let same_move = now.move_id == members.move_id;
            self.followers.lock().retain(|n, _| {
                members.replicas.contains(n) || (same_move && members.learners.contains(n))
            });
            *now = members;
        }
    }

    /// This node's copy is no longer a member: it never votes again (it would hold a log
    /// the replicas went on without), and its records go.
    async fn forget(&self) {
        // Its last fetch is over (the role is idle: no other begins).
        let _fetching = self.fetching.lock().await;
        if let Err(e) = std::fs::remove_file(&self.joined)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            warn!(stream = self.stream, partition = self.partition, error = %e,
                "cannot remove the replica's joined marker");
        }
        self.joined_known
            .store(false, std::sync::atomic::Ordering::Release);
        match self.log.clear_copy().await {
            Ok(_) => info!(
                stream = self.stream,
                partition = self.partition,
                "this node's copy was moved away: its records are deleted"
            ),
            Err(e) => warn!(stream = self.stream, partition = self.partition, error = %e,
                "this node's copy was moved away but its records stay"),
        }
    }

    /// Whether this replica's log once held every committed record.
    fn has_joined(&self) -> bool {
        self.joined_known.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Records, durably, that this replica's log holds every committed record.
    fn mark_joined(&self) {
        if self.has_joined() {
            return;
        }
        let written = std::fs::write(&self.joined, b"")
            .and_then(|()| std::fs::File::open(&self.joined)?.sync_all());
        match written {
            Ok(()) => self
                .joined_known
                .store(true, std::sync::atomic::Ordering::Release),
            Err(e) => warn!(stream = self.stream, partition = self.partition, error = %e,
                "cannot record that the replica caught up"),
        }
    }

    /// The role now.
    pub fn role(&self) -> Role {
        *self.role.borrow()
    }

    fn not_leader(&self) -> StoreError {
        let (leader, epoch) = match self.role() {
            Role::Follower { epoch, leader } => (Some(leader), epoch),
            Role::Electing { epoch } => (None, epoch),
            Role::Leader { epoch } => (None, epoch),
            Role::Idle => (None, 0),
        };
        StoreError::NotLeader {
            stream: self.stream.clone(),
            partition: self.partition,
            leader,
            epoch,
        }
    }

    fn leading(&self) -> StoreResult<u64> {
        match self.role() {
            Role::Leader { epoch } => Ok(epoch),
            _ => Err(self.not_leader()),
        }
    }

    /// The epoch this node leads and serves clients in: once its marker is committed
    /// (until then readers would see less than was acknowledged before, and producers'
    /// sequences could not be checked against the whole log).
    fn serving(&self) -> StoreResult<u64> {
        let epoch = self.leading()?;
        if self.serving.load(std::sync::atomic::Ordering::Acquire) != epoch {
            return Err(self.not_leader());
        }
        Ok(epoch)
    }

    /// [`Replica::serving`], and not cut off from its followers ([`Replica::cut_off`]):
    /// what a caller that answers from its own view of the partition checks first.
    fn serving_in_contact(&self) -> StoreResult<u64> {
        let epoch = self.serving()?;
        if self.cut_off(epoch, self.handover.lock().led_since) {
            return Err(self.cut_off_error());
        }
        Ok(epoch)
    }

    /// Leader of `epoch`, leading since `led_since`: whether it has led for
    /// [`CONTACT_LEASE`] without hearing, in that time, from enough followers to make a
    /// majority with itself.
    fn cut_off(&self, epoch: u64, led_since: Option<(u64, std::time::Instant)>) -> bool {
        let now = std::time::Instant::now();
        let led_long = led_since.is_some_and(|(e, at)| {
            e == epoch && now.saturating_duration_since(at) >= CONTACT_LEASE
        });
        if !led_long {
            return false;
        }
        let members = self.members.read();
        let heard = self
            .followers
            .lock()
            .iter()
            .filter(|(n, f)| {
                members.replicas.contains(n)
                    && now.saturating_duration_since(f.fetched_at) < CONTACT_LEASE
            })
            .count();
        heard + 1 < majority(members.replicas.len())
    }

    /// Returns, with the error to answer, once an append of this leader of `epoch`
    /// waiting for a majority gives up: as soon as the leader is cut off from its
    /// followers (checked every second), or after [`COMMIT_DEADLINE`]. One timer at a time,
    /// so an append committed at once costs no more than before. What was written may or
    /// may not be kept (the followers may return).
    async fn gives_up(&self, epoch: u64) -> StoreError {
        let until = std::time::Instant::now() + COMMIT_DEADLINE;
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            if self.cut_off(epoch, self.handover.lock().led_since) {
                return self.cut_off_error();
            }
            if std::time::Instant::now() >= until {
                return StoreError::Unavailable(format!(
                    "no majority of {}/{}'s replicas took the write within {COMMIT_DEADLINE:?}: it may or may not be kept",
                    self.stream, self.partition
                ));
            }
        }
    }

    fn cut_off_error(&self) -> StoreError {
        StoreError::Unavailable(format!(
            "this leader of {}/{} heard from no majority of its replicas in {CONTACT_LEASE:?}",
            self.stream, self.partition
        ))
    }

    /// Appends as the leader and returns once a majority has the batch durable.
    pub async fn append(&self, batch: PendingBatch) -> StoreResult<Appended> {
        let epoch = self.leading()?;
        let led_since = {
            let h = self.handover.lock();
            if h.active == Some(epoch) {
                return Err(self.not_leader());
            }
            h.led_since
        };
        if self.cut_off(epoch, led_since) {
            return Err(self.cut_off_error());
        }
        let a = self
            .log
            .append_in_epoch(batch, epoch_i32(epoch))
            .await
            .map_err(store_error)?;
        self.written.notify_waiters();
        self.advance();
        let mut role = self.role.subscribe();
        tokio::select! {
            r = self.log.wait_for(a.last_offset) => { r.map_err(store_error)?; }
            _ = role.wait_for(|r| *r != Role::Leader { epoch }) => {
                // It may or may not be kept: a retry finds the new leader.
                return Err(self.not_leader());
            }
            e = self.gives_up(epoch) => return Err(e),
        }
        // Committed as written only if this node still leads the epoch and the log still
        // holds the batch in it (not truncated and refilled by a newer leader meanwhile).
        let ours = self.role() == (Role::Leader { epoch })
            && self
                .log
                .end_offset_for_epoch(epoch_i32(epoch))
                .ok()
                .flatten()
                .is_some_and(|(e, end)| e == epoch_i32(epoch) && end > a.last_offset);
        if !ours {
            return Err(self.not_leader());
        }
        Ok(Appended {
            base_offset: a.base_offset,
            last_offset: a.last_offset,
        })
    }

    /// Leader: moves the high watermark to the end a majority has durable, once that
    /// covers a record of the current epoch (Raft commits earlier epochs' records only
    /// through one of its own).
    fn advance(&self) {
        let Role::Leader { epoch } = self.role() else {
            return;
        };
        let Ok(state) = self.log.replica_state() else {
            return;
        };
        let (mut ends, need) = {
            let members = self.members.read();
            let ends: Vec<u64> = self
                .followers
                .lock()
                .iter()
                .filter(|(n, _)| members.replicas.contains(n))
                .map(|(_, f)| f.offset)
                .collect();
            (ends, majority(members.replicas.len()))
        };
        ends.push(state.durable_end);
        if ends.len() < need {
            return;
        }
        ends.sort_unstable_by(|a, b| b.cmp(a));
        let committed = ends[need - 1].min(state.written_end);
        let Some(own) = state
            .latest_epoch
            .filter(|e| i64::from(e.epoch) == epoch as i64)
        else {
            return;
        };
        if committed > own.start_offset {
            match self.log.set_high_watermark(committed) {
                // The marker (the epoch's first batch) is committed: serve clients, even
                // when the append that wrote it gave up waiting.
                Ok(()) => self
                    .serving
                    .store(epoch, std::sync::atomic::Ordering::Release),
                Err(e) => {
                    warn!(stream = self.stream, partition = self.partition, error = %e, "cannot move the high watermark")
                }
            }
        }
    }

    /// Leader: answers a follower's fetch (`me`: this node).
    pub async fn fetch(
        &self,
        request: &PartitionRequest,
        me: NodeId,
    ) -> StoreResult<PartitionReply> {
        let epoch = self.leading()?;
        if request.epoch != epoch {
            return Err(self.not_leader());
        }
        let member = {
            let m = self.members.read();
            m.replicas.contains(&request.replica)
                || (m.learners.contains(&request.replica) && request.move_id == m.move_id)
        };
        if request.replica == me || !member {
            return Err(StoreError::Invalid(format!(
                "node {} is not a follower of {}/{}",
                request.replica, self.stream, self.partition
            )));
        }
        let mut reply = PartitionReply::default();
        let state = self.log.replica_state().map_err(store_error)?;
        if request.offset < state.log_start {
            reply.below_start = true;
            reply.first = state.log_start;
            reply.last = state.written_end;
            return Ok(reply);
        }
        if request.offset < state.local_start {
            // Below this, the records are only in object storage (uploaded, so
            // committed): the follower starts after them.
            reply.stored_below = state.local_start;
            return Ok(reply);
        }
        if request.last_epoch >= 0 {
            let end = self
                .log
                .end_offset_for_epoch(request.last_epoch)
                .map_err(store_error)?;
            // Kafka's rule: the follower cuts at the end of the newest epoch both logs
            // know, or at its own end of that epoch when that comes first.
            let diverged = match end {
                Some((e, end)) if e == request.last_epoch && end >= request.offset => None,
                Some((e, end)) => Some((e, end)),
                None => Some((-1, DROP_LAST_EPOCH)),
            };
            if let Some((e, at)) = diverged {
                reply.diverged = true;
                reply.diverged_epoch = e;
                reply.diverged_at = at;
                return Ok(reply);
            }
        }
        let written = self.log.replica_state().map_err(store_error)?.written_end;
        if request.offset > written {
            return Err(StoreError::Invalid(format!(
                "a follower of {}/{} fetches at {} past the leader's end {written}",
                self.stream, self.partition, request.offset
            )));
        }
        // Waiting for records from before the fetch is recorded: a handover's wake-up
        // (`ask_for_fetches`) right after it must reach this fetch.
        let notified = self.written.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        self.followed(request.replica, request.offset, written);
        self.advance();
        let max = request.max_bytes.clamp(1, MAX_READ_BYTES) as usize;
        let mut batches = self
            .log
            .read_written(request.offset, max)
            .await
            .map_err(store_error)?;
        if batches.is_empty() {
            let wait = Duration::from_millis(request.wait_ms.min(IDLE_FETCH_WAIT_MS));
            let _ = tokio::time::timeout(wait, notified).await;
            batches = self
                .log
                .read_written(request.offset, max)
                .await
                .map_err(store_error)?;
        }
        // A node that stopped leading while the fetch waited answers nothing: what its log
        // holds now may be another leader's.
        if self.role() != (Role::Leader { epoch }) {
            return Err(self.not_leader());
        }
        reply.batches = batches.iter().map(|b| b.as_bytes().clone()).collect();
        let state = self.log.replica_state().map_err(store_error)?;
        reply.high_watermark = state.high_watermark.unwrap_or(0);
        // Where the leader's log starts: retention is decided once, by the leader, and
        // followers start theirs there too.
        reply.first = state.log_start;
        Ok(reply)
    }

    /// Leader: records a follower's fetch at `offset` while this log ends at `end`.
    fn followed(&self, node: NodeId, offset: u64, end: u64) {
        let now = std::time::Instant::now();
        let mut followers = self.followers.lock();
        let before = followers.get(&node).copied();
        let caught_up_at = if offset >= end {
            Some(now)
        } else {
            match before {
                Some(b) if offset >= b.end_at_fetch => Some(b.fetched_at),
                Some(b) => b.caught_up_at,
                None => None,
            }
        };
        followers.insert(
            node,
            Follower {
                offset,
                fetched_at: now,
                end_at_fetch: end,
                caught_up_at,
            },
        );
        drop(followers);
        self.followed.notify_waiters();
    }

    /// Leader: the replicas in sync with it (itself among them), in replica order.
    fn in_sync(&self, me: NodeId) -> Vec<NodeId> {
        let now = std::time::Instant::now();
        let members = self.members.read();
        let followers = self.followers.lock();
        members
            .replicas
            .iter()
            .copied()
            .filter(|n| *n == me || followers.get(n).is_some_and(|f| f.in_sync(now)))
            .collect()
    }

    /// Its state now, for the admin API (`me`: this node).
    pub fn status(&self, me: NodeId) -> ReplicaStatus {
        let role = self.role();
        let (high_watermark, log_end) = self
            .log
            .replica_state()
            .map_or((0, 0), |s| (s.high_watermark.unwrap_or(0), s.written_end));
        let now = std::time::Instant::now();
        let followers = if matches!(role, Role::Leader { .. }) {
            let members = self.members.read();
            let known = self.followers.lock();
            let learners = members.learners.iter().map(|n| (n, true));
            members
                .replicas
                .iter()
                .map(|n| (n, false))
                .chain(learners)
                .filter(|(n, _)| **n != me)
                .map(|(n, learner)| {
                    let f = known.get(n);
                    FollowerStatus {
                        node: *n,
                        offset: f.map(|f| f.offset),
                        lag: log_end.saturating_sub(f.map_or(0, |f| f.offset)),
                        in_sync: !learner && f.is_some_and(|f| f.in_sync(now)),
                        learner,
                    }
                })
                .collect()
        } else {
            Vec::new()
        };
        ReplicaStatus {
            stream: self.stream.clone(),
            partition: self.partition,
            role,
            high_watermark,
            log_end,
            followers,
        }
    }

    /// Leader serving `epoch`: tells the meta service which replicas are in sync when
    /// that differs from what it records (`recorded`), one report at a time.
    fn report_in_sync(self: &Arc<Self>, meta: &Arc<MetaNode>, me: NodeId, recorded: &[NodeId]) {
        let Role::Leader { epoch } = self.role() else {
            return;
        };
        if self.serving.load(std::sync::atomic::Ordering::Acquire) != epoch {
            return;
        }
        let in_sync = self.in_sync(me);
        if in_sync == recorded {
            return;
        }
        {
            let mut reporting = self.reporting.lock();
            if reporting.0 || reporting.1.is_some_and(|at| at.elapsed() < IN_SYNC_RETRY) {
                return;
            }
            *reporting = (true, None);
        }
        let (replica, meta) = (self.clone(), meta.clone());
        tokio::spawn(async move {
            let command = Command::SetInSync {
                stream: replica.stream.clone(),
                partition: replica.partition,
                epoch,
                in_sync,
            };
            let failed = match meta.write(command).await {
                Ok(_) => None,
                Err(e) => {
                    tracing::debug!(stream = replica.stream, partition = replica.partition, error = %e,
                        "cannot report the in-sync replicas");
                    Some(std::time::Instant::now())
                }
            };
            *replica.reporting.lock() = (false, failed);
        });
    }

    /// Leader serving `epoch` that is not the preferred replica (`placement.replicas[0]`):
    /// hands over to it once it has led [`HAND_OVER_AFTER`] and the preferred one is up
    /// and in sync. It stops taking appends, waits until the preferred replica's fetches
    /// reach its log's end, then begins an election preferring it (both logs end alike,
    /// and this node reports late); when the preferred replica does not catch up in
    /// time, appends resume and it tries again later. A partition being moved ends its
    /// move instead ([`Replica::move_to_target`]).
    fn hand_over(
        self: &Arc<Self>,
        streams: &crate::cluster::ClusterStreams,
        placement: &PartitionPlacement,
        me: NodeId,
    ) {
        let Role::Leader { epoch } = self.role() else {
            return;
        };
        let Some(&preferred) = placement.replicas.first() else {
            return;
        };
        if preferred == me
            || !placement.target.is_empty()
            || self.serving.load(std::sync::atomic::Ordering::Acquire) != epoch
            || !placement.in_sync.contains(&preferred)
            || !streams.is_up(preferred)
            || streams.meta().refuses_connections(preferred)
        {
            return;
        }
        {
            let mut h = self.handover.lock();
            let led_long = h
                .led_since
                .is_some_and(|(e, at)| e == epoch && at.elapsed() >= HAND_OVER_AFTER);
            let now = std::time::Instant::now();
            let follower = self.followers.lock().get(&preferred).copied();
            let Some(follower) = follower.filter(|f| f.in_sync(now)) else {
                h.in_sync_since = None;
                return;
            };
            let since = *h.in_sync_since.get_or_insert(now);
            if h.active.is_some()
                || !led_long
                || now.duration_since(since) < HAND_OVER_IN_SYNC + h.spread
                || h.retry_at.is_some_and(|at| now < at)
            {
                return;
            }
            // Read only once every cheaper condition holds (this runs every pass).
            let end = self.log.replica_state().map_or(u64::MAX, |s| s.written_end);
            if !follower.keeping_up(now, end) {
                return;
            }
            h.active = Some(epoch);
        }
        let (replica, meta) = (self.clone(), streams.meta_arc().clone());
        tokio::spawn(async move {
            let since = replica.ask_for_fetches();
            let until = tokio::time::Instant::now() + HAND_OVER_WAIT;
            let begun = if replica
                .copies_reach_end(&[preferred], epoch, until, since)
                .await
            {
                let command = Command::BeginElection {
                    stream: replica.stream.clone(),
                    partition: replica.partition,
                    epoch: epoch + 1,
                    preferred: Some(preferred),
                    replicas: None,
                    move_id: 0,
                };
                begin_within(&meta, command).await
            } else {
                Err(format!(
                    "node {preferred} did not catch up in {HAND_OVER_WAIT:?}"
                ))
            };
            match begun {
                Ok(()) => {
                    let mut h = replica.handover.lock();
                    (h.failures, h.retry_at) = (0, None);
                    info!(
                        stream = replica.stream,
                        partition = replica.partition,
                        epoch,
                        to = preferred,
                        "handing the partition over to its preferred replica"
                    );
                }
                Err(e) => replica.handover_failed(epoch, &e, HAND_OVER_RETRY),
            }
        });
    }

    /// Leader serving `epoch` of a partition moving to `placement.target`: once every
    /// node of the target keeps up with it (each fetched at its end within the last
    /// second), it ends the move. It stops taking appends, waits until each has its whole
    /// log, fences its own log at the next epoch (an append already past the check lands
    /// before that, and the wait after the fence covers it), waits again, and begins the
    /// next epoch's election with the target as its replicas, preferring the target's
    /// first. Every new replica then holds every record this leader had, so any majority
    /// of them holds every committed one. When they do not catch up in time, appends
    /// resume and it tries again later; once fenced, it can only step down: if the
    /// move's election is refused it begins an ordinary one.
    fn move_to_target(
        self: &Arc<Self>,
        streams: &crate::cluster::ClusterStreams,
        placement: &PartitionPlacement,
        me: NodeId,
    ) {
        let Role::Leader { epoch } = self.role() else {
            return;
        };
        if placement.target.is_empty()
            || self.serving.load(std::sync::atomic::Ordering::Acquire) != epoch
        {
            return;
        }
        let others: Vec<NodeId> = placement
            .target
            .iter()
            .copied()
            .filter(|n| *n != me)
            .collect();
        if others
            .iter()
            .any(|n| !streams.is_up(*n) || streams.meta().refuses_connections(*n))
        {
            return;
        }
        {
            let mut h = self.handover.lock();
            let now = std::time::Instant::now();
            if h.active.is_some() || h.retry_at.is_some_and(|at| now < at) {
                return;
            }
            let end = self.log.replica_state().map_or(u64::MAX, |s| s.written_end);
            let followers = self.followers.lock();
            if !others
                .iter()
                .all(|n| followers.get(n).is_some_and(|f| f.keeping_up(now, end)))
            {
                return;
            }
            h.active = Some(epoch);
        }
        let (replica, meta) = (self.clone(), streams.meta_arc().clone());
        let (target, move_id) = (placement.target.clone(), placement.move_id);
        tokio::spawn(async move {
            let since = replica.ask_for_fetches();
            let until = tokio::time::Instant::now() + HAND_OVER_WAIT;
            if !replica.copies_reach_end(&others, epoch, until, since).await {
                let why = format!("the new copies did not catch up in {HAND_OVER_WAIT:?}");
                replica.handover_failed(epoch, &why, MOVE_RETRY);
                return;
            }
            if let Err(e) = replica.log.fence(epoch_i32(epoch + 1)) {
                replica.handover_failed(epoch, &e.to_string(), MOVE_RETRY);
                return;
            }
            let until = tokio::time::Instant::now() + HAND_OVER_WAIT;
            let begun = if replica.copies_reach_end(&others, epoch, until, since).await {
                let command = Command::BeginElection {
                    stream: replica.stream.clone(),
                    partition: replica.partition,
                    epoch: epoch + 1,
                    preferred: target.first().copied(),
                    replicas: Some(target.clone()),
                    move_id,
                };
                begin_within(&meta, command).await
            } else {
                Err("the new copies did not catch up once the log was fenced".to_string())
            };
            match begun {
                Ok(()) => {
                    let mut h = replica.handover.lock();
                    (h.failures, h.retry_at) = (0, None);
                    if target.first() == Some(&me) {
                        // Preferred again: it reports at once, not late as a leader
                        // handing over does (its fenced log takes no appends meanwhile).
                        h.active = None;
                    }
                    info!(
                        stream = replica.stream,
                        partition = replica.partition,
                        epoch,
                        ?target,
                        "move done: the new replicas elect the next leader"
                    );
                }
                Err(e) => {
                    warn!(stream = replica.stream, partition = replica.partition, epoch, error = %e,
                        "the move did not end: this fenced leader steps down");
                    replica.step_down(&meta, epoch, me).await;
                }
            }
        });
    }

    /// Leader taking no appends: ends the fetches waiting here for records, so each
    /// follower fetches again at once and shows where its log ends now. Returns when.
    fn ask_for_fetches(&self) -> std::time::Instant {
        let since = std::time::Instant::now();
        self.written.notify_waiters();
        since
    }

    /// Leader: waits until every node of `nodes` fetched at this log's end, in a fetch
    /// that began at `since` or later (what the leader knew before may be stale: a
    /// copy emptied or wiped since), while it leads `epoch`, until `until`.
    async fn copies_reach_end(
        &self,
        nodes: &[NodeId],
        epoch: u64,
        until: tokio::time::Instant,
        since: std::time::Instant,
    ) -> bool {
        loop {
            let fetched = self.followed.notified();
            tokio::pin!(fetched);
            fetched.as_mut().enable();
            if let Ok(end) = self.log.replica_state().map(|s| s.written_end) {
                let followers = self.followers.lock();
                if nodes.iter().all(|n| {
                    followers
                        .get(n)
                        .is_some_and(|f| f.offset >= end && f.fetched_at >= since)
                }) {
                    return true;
                }
            }
            if self.role() != (Role::Leader { epoch }) || tokio::time::Instant::now() >= until {
                return false;
            }
            // The next fetch, or the deadline (the role is checked again after it).
            let _ = tokio::time::timeout_at(until, fetched).await;
        }
    }

    /// A handover or a move that did not happen: appends resume, and the next attempt
    /// waits `first`, twice as long after each further failure.
    fn handover_failed(&self, epoch: u64, error: &str, first: Duration) {
        let mut h = self.handover.lock();
        let wait = first
            .saturating_mul(1 << h.failures.min(7))
            .min(HAND_OVER_RETRY_MAX);
        h.failures += 1;
        h.retry_at = Some(std::time::Instant::now() + wait);
        h.active = None;
        info!(stream = self.stream, partition = self.partition, epoch, error,
            retry_in = ?wait, "not handing over now");
    }

    /// A leader of `epoch` whose log is fenced at the next: begins an ordinary election
    /// (preferring itself), until the partition is in another epoch.
    async fn step_down(&self, meta: &MetaNode, epoch: u64, me: NodeId) {
        while self.role() == (Role::Leader { epoch }) {
            let command = Command::BeginElection {
                stream: self.stream.clone(),
                partition: self.partition,
                epoch: epoch + 1,
                preferred: Some(me),
                replicas: None,
                move_id: 0,
            };
            match begin_within(meta, command).await {
                Ok(()) => return,
                Err(e) => {
                    warn!(stream = self.stream, partition = self.partition, epoch, error = %e,
                        "cannot begin the election yet");
                    tokio::time::sleep(RETRY * 5).await;
                }
            }
        }
    }

    /// Follower: fetches from `leader` until the role changes.
    async fn follow(self: Arc<Self>, meta: Arc<MetaNode>, me: NodeId, epoch: u64, leader: NodeId) {
        let mine = Role::Follower { epoch, leader };
        let mut role = self.role.subscribe();
        while self.role() == mine {
            // Never cancelled midway: a copy cut off inside its fsync would leave the
            // log's group commit waiting. Each step is bounded (the fetch waits at most
            // IDLE_FETCH_WAIT_MS at the leader), and the role is checked between steps.
            let outcome = self.fetch_once(&meta, me, epoch, leader).await;
            if let Err(e) = outcome {
                tracing::debug!(stream = self.stream, partition = self.partition, error = %e, "replica fetch failed");
                tokio::select! {
                    () = tokio::time::sleep(RETRY) => {}
                    _ = role.wait_for(|r| *r != mine) => return,
                }
            }
        }
    }

    async fn fetch_once(
        &self,
        meta: &MetaNode,
        me: NodeId,
        epoch: u64,
        leader: NodeId,
    ) -> StoreResult<()> {
        let _fetching = self.fetching.lock().await;
        if self.role() != (Role::Follower { epoch, leader }) {
            return Ok(());
        }
        let state = self.log.replica_state().map_err(store_error)?;
        let wait_ms = if state.high_watermark.unwrap_or(0) >= state.written_end {
            IDLE_FETCH_WAIT_MS
        } else {
            FETCH_WAIT_MS
        };
        let request = PartitionRequest {
            op: Op::ReplicaFetch as i32,
            stream: self.stream.clone(),
            partition: self.partition,
            epoch,
            offset: state.written_end,
            max_bytes: FETCH_BYTES,
            wait_ms,
            replica: me,
            last_epoch: state.latest_epoch.map_or(-1, |e| e.epoch),
            move_id: self.members.read().move_id,
            ..PartitionRequest::default()
        };
        // Bounded well below the RPC timeout: a leader that stopped answering (paused,
        // cut off) must not hold its followers for long after a new one is elected.
        let deadline = Duration::from_millis(wait_ms) + FETCH_MARGIN;
        let reply = tokio::time::timeout(deadline, meta.partition_call(leader, request))
            .await
            .map_err(|_| StoreError::Unavailable(format!("node {leader} did not answer a fetch")))?
            .map_err(StoreError::Unavailable)?;
        if !reply.error.is_empty() {
            return Err(
                serde_json::from_str(&reply.error).unwrap_or(StoreError::Storage(reply.error))
            );
        }
        if self.role() != (Role::Follower { epoch, leader }) {
            return Ok(());
        }
        if reply.below_start {
            // Only forward, and never past the leader's end.
            if reply.first <= state.written_end || reply.first > reply.last {
                return Err(StoreError::Storage(format!(
                    "the leader of {}/{} answered a log start {} (its end {}) to a follower ending at {}",
                    self.stream, self.partition, reply.first, reply.last, state.written_end
                )));
            }
            info!(
                stream = self.stream,
                partition = self.partition,
                end = state.written_end,
                leader_log_start = reply.first,
                "the leader's log starts past this log's end: starting over there"
            );
            self.log.start_at(reply.first).await.map_err(store_error)?;
            return Ok(());
        }
        if reply.stored_below > state.written_end {
            info!(
                stream = self.stream,
                partition = self.partition,
                end = state.written_end,
                from = reply.stored_below,
                "the records up to the leader's local files are in object storage: starting after them"
            );
            self.log
                .start_after_stored(reply.stored_below)
                .await
                .map_err(store_error)?;
            return Ok(());
        }
        if reply.diverged {
            let to = if reply.diverged_at == DROP_LAST_EPOCH {
                state.latest_epoch.map_or(0, |e| e.start_offset)
            } else {
                // Where this log's copy of that epoch ends, if sooner.
                let own = self
                    .log
                    .end_offset_for_epoch(reply.diverged_epoch)
                    .map_err(store_error)?
                    .map_or(reply.diverged_at, |(_, end)| end);
                reply.diverged_at.min(own)
            };
            if to >= state.written_end {
                return Err(StoreError::Storage(format!(
                    "the leader of {}/{} answered a divergence at {to}, not below this log's end {}",
                    self.stream, self.partition, state.written_end
                )));
            }
            info!(
                stream = self.stream,
                partition = self.partition,
                from = to,
                "truncating records the leader does not have"
            );
            self.log.truncate_from(to).await.map_err(store_error)?;
            return Ok(());
        }
        let batches = reply
            .batches
            .into_iter()
            .map(|b| Batch::from_bytes(b).map_err(StoreError::Corruption))
            .collect::<StoreResult<Vec<_>>>()?;
        let end = if batches.is_empty() {
            state.written_end
        } else {
            self.log.append_copies(batches).await.map_err(store_error)?
        };
        let committed = reply.high_watermark.min(end);
        self.log
            .set_high_watermark(committed)
            .map_err(store_error)?;
        if reply.first > state.log_start && reply.first <= committed {
            self.log
                .delete_before(reply.first)
                .await
                .map_err(store_error)?;
        }
        // Caught up once this log holds the leader's marker and the leader says it is
        // committed: only then is the leader's high watermark its own (before, it may be a
        // restarted leader's 0).
        let marker_committed = self
            .log
            .replica_state()
            .map_err(store_error)?
            .latest_epoch
            .is_some_and(|e| e.epoch == epoch_i32(epoch) && reply.high_watermark > e.start_offset);
        if marker_committed && reply.high_watermark <= end {
            self.mark_joined();
        }
        Ok(())
    }
}

/// Writes an election's beginning, waiting at most [`HAND_OVER_WAIT`] (appends wait
/// meanwhile: bounded, should the meta service be slow).
async fn begin_within(meta: &MetaNode, command: Command) -> Result<(), String> {
    match tokio::time::timeout(HAND_OVER_WAIT, meta.write(command)).await {
        Ok(Ok(Outcome::Done)) => Ok(()),
        Ok(Ok(refused)) => Err(format!("the election was refused: {refused:?}")),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!(
            "the meta service did not begin the election in {HAND_OVER_WAIT:?}"
        )),
    }
}

fn epoch_i32(epoch: u64) -> i32 {
    i32::try_from(epoch).unwrap_or(i32::MAX)
}

/// The replicated partitions of this node, by stream and partition.
#[derive(Debug, Default)]
pub struct Replicas {
    parts: parking_lot::Mutex<HashMap<(String, u32), Arc<Replica>>>,
    /// Elections this node (as meta leader) began: for each partition, the epoch and
    /// when, so each is asked for once and a partition is not elected again at once.
    begun: parking_lot::Mutex<HashMap<(String, u32), (u64, std::time::Instant)>>,
    /// Copies moved away whose logs are being emptied: not opened again until done.
    forgetting: parking_lot::Mutex<HashSet<(String, u32)>>,
    metrics: ReplicaMetrics,
}

/// Replication gauges: counts, with no label per partition (a cluster's partitions are
/// many; the admin API lists them one by one).
#[derive(Debug, Clone)]
struct ReplicaMetrics {
    /// Replicated partitions this node holds a copy of, by role.
    roles: prometheus::IntGaugeVec,
    /// Partitions this node leads with fewer replicas in sync than copies.
    under_replicated: prometheus::IntGauge,
    /// Replicated partitions without a leader, as this node's metadata has them.
    offline: prometheus::IntGauge,
    /// The most records any follower of a partition this node leads is behind.
    max_lag: prometheus::IntGauge,
    /// Partitions this node leads that are moving to other replicas.
    moving: prometheus::IntGauge,
}

impl Default for ReplicaMetrics {
    fn default() -> Self {
        let gauge = |name: &str, help: &str| {
            prometheus::IntGauge::new(name, help).expect("a valid metric name")
        };
        ReplicaMetrics {
            roles: prometheus::IntGaugeVec::new(
                prometheus::Opts::new(
                    "strata_replica_partitions",
                    "Replicated partitions this node holds a copy of, by role",
                ),
                &["role"],
            )
            .expect("a valid metric name"),
            under_replicated: gauge(
                "strata_replica_under_replicated_partitions",
                "Partitions this node leads with fewer replicas in sync than copies",
            ),
            offline: gauge(
                "strata_replica_offline_partitions",
                "Replicated partitions without a leader (as this node's metadata has them)",
            ),
            max_lag: gauge(
                "strata_replica_max_lag_records",
                "The most records a follower of a partition this node leads is behind",
            ),
            moving: gauge(
                "strata_replica_moving_partitions",
                "Partitions this node leads that are moving to other replicas",
            ),
        }
    }
}

impl Replicas {
    /// Registers the replication gauges.
    pub fn register(&self, registry: &prometheus::Registry) -> prometheus::Result<()> {
        let m = &self.metrics;
        registry.register(Box::new(m.roles.clone()))?;
        registry.register(Box::new(m.under_replicated.clone()))?;
        registry.register(Box::new(m.offline.clone()))?;
        registry.register(Box::new(m.moving.clone()))?;
        registry.register(Box::new(m.max_lag.clone()))
    }

    /// Every replica's state, by stream and partition (`me`: this node).
    pub fn statuses(&self, me: NodeId) -> Vec<ReplicaStatus> {
        let parts: Vec<Arc<Replica>> = self.parts.lock().values().cloned().collect();
        let mut all: Vec<ReplicaStatus> = parts.iter().map(|r| r.status(me)).collect();
        all.sort_by(|a, b| (&a.stream, a.partition).cmp(&(&b.stream, b.partition)));
        all
    }

    fn measure(&self, meta: &MetaNode, me: NodeId) {
        let (under, offline, moving) = meta.read(|s| {
            let replicated = s
                .placement
                .values()
                .flatten()
                .filter(|p| p.replicas.len() > 1);
            replicated.fold((0, 0, 0), |(under, offline, moving), p| {
                let led = p.leader == Some(me);
                (
                    under + i64::from(led && p.under_replicated()),
                    offline + i64::from(p.leader.is_none()),
                    moving + i64::from(led && !p.target.is_empty()),
                )
            })
        });
        let m = &self.metrics;
        m.under_replicated.set(under);
        m.offline.set(offline);
        m.moving.set(moving);
        let mut roles = [0i64; 4];
        let mut max_lag = 0;
        for status in self.statuses(me) {
            let i = match status.role {
                Role::Idle => 0,
                Role::Electing { .. } => 1,
                Role::Leader { .. } => 2,
                Role::Follower { .. } => 3,
            };
            roles[i] += 1;
            for f in &status.followers {
                max_lag = max_lag.max(f.lag);
            }
        }
        for (name, n) in ["idle", "electing", "leader", "follower"].iter().zip(roles) {
            m.roles.with_label_values(&[name]).set(n);
        }
        m.max_lag.set(i64::try_from(max_lag).unwrap_or(i64::MAX));
    }

    /// The replica of `stream`/`partition` on this node, if it is one.
    pub fn get(&self, stream: &str, partition: u32) -> Option<Arc<Replica>> {
        self.parts
            .lock()
            .get(&(stream.to_string(), partition))
            .cloned()
    }

    fn insert(&self, replica: Arc<Replica>) -> Arc<Replica> {
        self.parts
            .lock()
            .entry((replica.stream.clone(), replica.partition))
            .or_insert(replica)
            .clone()
    }
}

/// What `placement` asks of node `me` (a replica, or a learner of a move).
fn wanted(p: &PartitionPlacement, me: NodeId) -> Role {
    let learner = !p.replicas.contains(&me);
    match (p.leader, &p.election) {
        // A learner takes no part in elections: it follows the leader they elect.
        (_, Some(_)) if learner => Role::Idle,
        (_, Some(_)) => Role::Electing { epoch: p.epoch },
        (Some(l), None) if l == me => Role::Leader { epoch: p.epoch },
        (Some(leader), None) => Role::Follower {
            epoch: p.epoch,
            leader,
        },
        (None, None) => Role::Idle,
    }
}

/// Moves `replica` to `role`: fences its log at the new epoch first, then reports to the
/// election, takes over as leader (its marker batch commits the earlier epochs' records),
/// or starts following.
fn transition(replica: &Arc<Replica>, role: Role, meta: &Arc<MetaNode>, me: NodeId) {
    let epoch = match role {
        Role::Idle => None,
        Role::Electing { epoch } | Role::Leader { epoch } | Role::Follower { epoch, .. } => {
            Some(epoch)
        }
    };
    if let Some(epoch) = epoch
        && let Err(e) = replica.log.fence(epoch_i32(epoch))
    {
        warn!(stream = replica.stream, partition = replica.partition, error = %e, "cannot fence the replica");
        return;
    }
    if replica
        .log
        .replica_state()
        .is_ok_and(|s| s.high_watermark.is_none())
    {
        // Until the leader says what is committed, nothing uncommitted is shown.
        let _ = replica.log.set_high_watermark(0);
    }
    replica.followers.lock().clear();
    // Only the leader uploads to object storage, deletes objects and applies retention.
    replica.log.set_offload_duty(match role {
        Role::Leader { epoch } => OffloadDuty::Leader {
            epoch: epoch_i32(epoch),
        },
        _ => OffloadDuty::Follower,
    });
    replica.role.send_replace(role);
    info!(
        stream = replica.stream,
        partition = replica.partition,
        ?role,
        "replica role"
    );
    match role {
        Role::Idle => {}
        Role::Electing { epoch } => {
            let handed_over = epoch
                .checked_sub(1)
                .is_some_and(|before| replica.handover.lock().active == Some(before));
            let (replica, meta) = (replica.clone(), meta.clone());
            tokio::spawn(async move {
                if handed_over {
                    tokio::time::sleep(HAND_OVER_REPORT_DELAY).await;
                }
                report(replica, meta, me, epoch).await
            });
        }
        Role::Leader { epoch } => {
            replica.mark_joined();
            {
                let mut h = replica.handover.lock();
                h.led_since = Some((epoch, std::time::Instant::now()));
                // A handover or move of an earlier epoch is over.
                h.active = None;
            }
            let replica = replica.clone();
            tokio::spawn(async move {
                let marker = BatchBuilder::leader_change_marker(me, crate::cluster::now_ms());
                match replica.append(marker).await {
                    Ok(_) => replica
                        .serving
                        .store(epoch, std::sync::atomic::Ordering::Release),
                    Err(e) => {
                        warn!(stream = replica.stream, partition = replica.partition, epoch, error = %e,
                        "the leader's marker was not committed")
                    }
                }
            });
        }
        Role::Follower { epoch, leader } => {
            tokio::spawn(replica.clone().follow(meta.clone(), me, epoch, leader));
        }
    }
}

/// Tells the election of `epoch` where this replica's log ends, until it is heard or
/// the role changes.
async fn report(replica: Arc<Replica>, meta: Arc<MetaNode>, me: NodeId, epoch: u64) {
    if !replica.has_joined() {
        warn!(
            stream = replica.stream,
            partition = replica.partition,
            epoch,
            "this replica never held every committed record (a new or wiped disk): it does not vote"
        );
        return;
    }
    while replica.role() == (Role::Electing { epoch }) {
        let Ok(state) = replica.log.replica_state() else {
            return;
        };
        let command = Command::ReportReplica {
            stream: replica.stream.clone(),
            partition: replica.partition,
            epoch,
            node: me,
            end: ReplicaEnd {
                last_epoch: state.latest_epoch.map_or(-1, |e| e.epoch),
                end_offset: state.written_end,
            },
        };
        match meta.write(command).await {
            Ok(_) => return,
            Err(e) => {
                warn!(stream = replica.stream, partition = replica.partition, error = %e, "cannot report to the election yet");
                tokio::time::sleep(RETRY).await;
            }
        }
    }
}

/// Follows the meta service's placement of every replicated partition this node holds a
/// copy of, until the journal closes.
pub(crate) async fn drive(streams: crate::cluster::ClusterStreams) {
    let mut every = tokio::time::interval(DRIVE_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let me = streams.node_id();
    let mut measured = std::time::Instant::now();
    let mut preexisting: Option<HashSet<(String, u32)>> = None;
    // The copies this process created empty for partitions placed after it started.
    let mut fresh_here: HashSet<(String, u32)> = HashSet::new();
    // Roles are taken from metadata at least as new as what this node knew before it
    // started (a replica must not act on an old view, such as follow a deposed leader).
    while let Err(e) = streams.caught_up().await {
        tracing::debug!(error = %e, "replicas wait for the metadata to catch up");
        tokio::time::sleep(RETRY * 5).await;
    }
    loop {
        every.tick().await;
        let mine: Vec<(String, u32, PartitionPlacement)> = streams.meta().read(|s| {
            s.placement
                .iter()
                .flat_map(|(name, parts)| {
                    parts
                        .iter()
                        .enumerate()
                        .filter(move |(_, p)| {
                            p.replicas.len() > 1
                                && (p.replicas.contains(&me) || p.target.contains(&me))
                        })
                        .map(move |(i, p)| (name.clone(), i as u32, p.clone()))
                })
                .collect()
        });
        // The copies this node held when it started (with metadata caught up): those of
        // partitions placed later are new, created with their partition.
        let held_at_start = preexisting.get_or_insert_with(|| {
            mine.iter()
                .map(|(stream, partition, _)| (stream.clone(), *partition))
                .collect()
        });
        let mut live = HashSet::new();
        let meta_leader = streams.meta().leader() == Some(me);
        for (stream, partition, placement) in mine {
            live.insert((stream.clone(), partition));
            let placed_since_start = !held_at_start.contains(&(stream.clone(), partition));
            if streams
                .replicas()
                .forgetting
                .lock()
                .contains(&(stream.clone(), partition))
            {
                // Its copy here is still being emptied: it comes back at a later pass.
                if meta_leader {
                    elect_if_leaderless(&streams, &stream, partition, &placement).await;
                }
                continue;
            }
            let replica = match streams.replicas().get(&stream, partition) {
                Some(r) => r,
                None => match streams.local_log(&stream, partition).await {
                    Ok((log, dir)) => {
                        // Empty too: a stream deleted and created again under its name
                        // between two reconciliations may find the old copy's log.
                        // A learner's copy is new to an existing partition: it joins
                        // once it caught up.
                        let fresh = placed_since_start
                            && !placement.moved
                            && placement.replicas.contains(&me)
                            && log.replica_state().is_ok_and(|s| s.written_end == 0);
                        let replica = Replica::new(
                            &stream,
                            partition,
                            log,
                            &placement,
                            dir.join(JOINED_FILE),
                        );
                        if fresh {
                            fresh_here.insert((stream.clone(), partition));
                            // A partition placed while this process runs, its copy here
                            // empty: it exists from the partition's start, so its log
                            // never lost anything it held, and it may vote as it is. (Waiting to
                            // join left a new partition whose leader died within a second
                            // without voters, offline until that node came back.) A copy
                            // that was here before the process started must show it holds
                            // every committed record first: its disk may have been wiped.
                            replica.mark_joined();
                        }
                        streams.replicas().insert(Arc::new(replica))
                    }
                    Err(StoreError::Closed) => return,
                    Err(e) => {
                        warn!(stream, partition, error = %e, "cannot open a replica");
                        continue;
                    }
                },
            };
            replica.set_members(&placement);
            let role = wanted(&placement, me);
            // A new partition's first leader: named at creation, before any copy held a
            // record (no election yet, no in-sync report).
            let created = placement.epoch == 0 && placement.in_sync.is_empty();
            if replica.role() == Role::Idle
                && matches!(role, Role::Leader { .. })
                && !fresh_here.contains(&(stream.clone(), partition))
                && (replica.has_joined() || !created)
            {
                // This process starts as the leader the metadata names: the node was
                // restarted before anyone noticed. It does not take the epoch up again:
                // it may have lost writes a majority of its replicas hold (a power loss
                // takes what was not fsynced, a lost disk all of it), and its high
                // watermark, kept in memory, starts from nothing. A new election picks
                // the most up-to-date log, this one on a tie; a copy that lost its disk
                // does not vote in it. (A chaos run caught a wiped leader taking its
                // epoch up again with a log that began where the uploads ended: its
                // followers, restarted meanwhile, truncated committed records to match.)
                // Not awaited here: a slow meta write must not hold up the other replicas'
                // roles (nor the gauges measured at the end of the pass).
                let (streams, replica, placement) =
                    (streams.clone(), replica.clone(), placement.clone());
                tokio::spawn(async move {
                    restarted_leader(&streams, &replica, &placement, me).await;
                });
            } else if replica.role() != role {
                transition(&replica, role, streams.meta_arc(), me);
            }
            replica.report_in_sync(streams.meta_arc(), me, &placement.in_sync());
            replica.hand_over(&streams, &placement, me);
            replica.move_to_target(&streams, &placement, me);
            if meta_leader {
                elect_if_leaderless(&streams, &stream, partition, &placement).await;
            }
        }
        if meta_leader {
            // The partitions with no copy here fail over too (four nodes or more, or a
            // copy moved away): the meta leader begins every election.
            // One read; only the partitions whose leader is gone are copied out (rare).
            let meta = streams.meta();
            let down: Vec<(String, u32, PartitionPlacement)> = meta.read(|s| {
                s.placement
                    .iter()
                    .flat_map(|(name, parts)| {
                        parts
                            .iter()
                            .enumerate()
                            .filter(|(_, p)| {
                                p.replicas.len() > 1
                                    && p.election.is_none()
                                    && p.leader.is_none_or(|l| {
                                        !s.is_live(l) || meta.refuses_connections(l)
                                    })
                            })
                            .map(move |(i, p)| (name.clone(), i as u32, p.clone()))
                    })
                    .collect()
            });
            for (stream, partition, placement) in down {
                if !live.contains(&(stream.clone(), partition)) {
                    elect_if_leaderless(&streams, &stream, partition, &placement).await;
                }
            }
        }
        fresh_here.retain(|k| live.contains(k));
        let gone: Vec<Arc<Replica>> = {
            let mut parts = streams.replicas().parts.lock();
            let keys: Vec<_> = parts
                .keys()
                .filter(|k| !live.contains(*k))
                .cloned()
                .collect();
            keys.iter().filter_map(|k| parts.remove(k)).collect()
        };
        for r in gone {
            r.log.set_offload_duty(OffloadDuty::Follower);
            r.role.send_replace(Role::Idle);
            // Moved away (the partition is still placed, and not here): the copy goes. A
            // deleted stream's go with it, by the reconciliation.
            let moved = streams.meta().read(|s| {
                s.placement
                    .get(&r.stream)
                    .and_then(|ps| ps.get(r.partition as usize))
                    .is_some_and(|p| !p.replicas.contains(&me) && !p.target.contains(&me))
            });
            if moved {
                let key = (r.stream.clone(), r.partition);
                let replicas = streams.replicas().clone();
                replicas.forgetting.lock().insert(key.clone());
                tokio::spawn(async move {
                    // Out of the set however the task ends.
                    let _done = Forgotten(replicas, key);
                    r.forget().await;
                });
            }
        }
        if measured.elapsed() >= MEASURE_EVERY {
            measured = std::time::Instant::now();
            streams.replicas().measure(streams.meta(), me);
        }
    }
}

/// Takes a partition out of [`Replicas::forgetting`] when dropped.
struct Forgotten(Arc<Replicas>, (String, u32));

impl Drop for Forgotten {
    fn drop(&mut self) {
        self.0.forgetting.lock().remove(&self.1);
    }
}

/// Begins the election of the epoch after `placement`'s for a partition this node led
/// before it restarted (at most one a second per partition).
async fn restarted_leader(
    streams: &crate::cluster::ClusterStreams,
    replica: &Arc<Replica>,
    placement: &PartitionPlacement,
    me: NodeId,
) {
    {
        let mut begun = streams.replicas().begun.lock();
        let key = (replica.stream.clone(), replica.partition);
        if begun
            .get(&key)
            .is_some_and(|(epoch, at)| *epoch >= placement.epoch && at.elapsed() < ELECTION_SPACING)
        {
            return;
        }
        begun.insert(key, (placement.epoch, std::time::Instant::now()));
    }
    let command = Command::BeginElection {
        stream: replica.stream.clone(),
        partition: replica.partition,
        epoch: placement.epoch + 1,
        preferred: replica.has_joined().then_some(me),
        replicas: None,
        move_id: 0,
    };
    match streams.meta().write(command).await {
        Ok(outcome) => info!(
            stream = replica.stream,
            partition = replica.partition,
            epoch = placement.epoch + 1,
            ?outcome,
            "restarted as the leader: election begun"
        ),
        Err(e) => warn!(stream = replica.stream, partition = replica.partition, error = %e,
            "restarted as the leader: cannot begin an election yet"),
    }
}

/// On the meta leader: begins an election for a partition whose leader stopped sending
/// heartbeats (or that has none), once per epoch.
async fn elect_if_leaderless(
    streams: &crate::cluster::ClusterStreams,
    stream: &str,
    partition: u32,
    p: &PartitionPlacement,
) {
    let me = streams.node_id();
    // This node is up (it is running this); others are judged by their heartbeats, or
    // taken for down at once when their port refuses connections (their process died).
    if p.election.is_some()
        || p.leader.is_some_and(|l| {
            l == me || (streams.is_up(l) && !streams.meta().refuses_connections(l))
        })
    {
        return;
    }
    {
        let mut begun = streams.replicas().begun.lock();
        let key = (stream.to_string(), partition);
        if begun
            .get(&key)
            .is_some_and(|(epoch, at)| *epoch >= p.epoch || at.elapsed() < ELECTION_SPACING)
        {
            return;
        }
        begun.insert(key, (p.epoch, std::time::Instant::now()));
    }
    let command = Command::BeginElection {
        stream: stream.to_string(),
        partition,
        epoch: p.epoch + 1,
        preferred: None,
        replicas: None,
        move_id: 0,
    };
    match streams.meta().write(command).await {
        Ok(outcome) => info!(
            stream,
            partition,
            epoch = p.epoch + 1,
            ?outcome,
            "election begun"
        ),
        Err(e) => {
            streams
                .replicas()
                .begun
                .lock()
                .remove(&(stream.to_string(), partition));
            warn!(stream, partition, error = %e, "cannot begin an election");
        }
    }
}

/// A replicated partition this node leads, behind the router's handle.
#[derive(Debug)]
pub struct ReplicatedPartition(pub Arc<Replica>);

#[async_trait]
impl Partition for ReplicatedPartition {
    fn stream(&self) -> &str {
        &self.0.stream
    }

    fn index(&self) -> u32 {
        self.0.partition
    }

    async fn append(&self, batch: PendingBatch) -> StoreResult<Appended> {
        self.0.serving()?;
        self.0.append(batch).await
    }

    async fn read(&self, from: u64, max_bytes: usize) -> StoreResult<Vec<Batch>> {
        self.0.serving()?;
        self.0.log.read(from, max_bytes).await.map_err(store_error)
    }

    async fn offsets(&self) -> StoreResult<Offsets> {
        // A leader cut off from its followers answers no offsets: a caller keeping a view
        // of the partition (the agent state) asks before it answers from that view.
        self.0.serving_in_contact()?;
        let o = self.0.log.offsets();
        Ok(Offsets {
            log_start: o.log_start,
            end: o.end,
        })
    }

    async fn wait_for(&self, offset: u64) -> StoreResult<u64> {
        self.0.serving()?;
        self.0.log.wait_for(offset).await.map_err(store_error)
    }

    async fn offset_for_timestamp(&self, timestamp_ms: i64) -> StoreResult<Option<u64>> {
        self.0.serving()?;
        self.0
            .log
            .offset_for_timestamp(timestamp_ms)
            .await
            .map_err(store_error)
    }

    async fn end_offset_for_epoch(&self, epoch: i32) -> StoreResult<Option<(i32, u64)>> {
        self.0.serving()?;
        self.0.log.end_offset_for_epoch(epoch).map_err(store_error)
    }

    async fn read_written(&self, from: u64, max_bytes: usize) -> StoreResult<Vec<Batch>> {
        self.0.serving()?;
        self.0
            .log
            .read_written(from, max_bytes)
            .await
            .map_err(store_error)
    }

    async fn delete_before(&self, offset: u64) -> StoreResult<()> {
        self.0.serving()?;
        // Never past what a majority holds: the followers follow this start (the fetch
        // reply carries it) and must keep what they may still need to serve.
        let committed = self.0.log.offsets().end;
        self.0
            .log
            .delete_before(offset.min(committed))
            .await
            .map_err(store_error)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handovers_are_spread_over_the_window_the_same_way_on_every_node() {
        let shares: Vec<Duration> = (0..64).map(|p| spread("mqtt.messages", p)).collect();
        assert!(shares.iter().all(|s| *s < HAND_OVER_SPREAD));
        // Spread out: no two-second slice of the window holds more than a quarter.
        for start in 0..28 {
            let from = Duration::from_secs(start);
            let inside = shares
                .iter()
                .filter(|s| **s >= from && **s < from + Duration::from_secs(2))
                .count();
            assert!(inside <= 16, "{inside} of 64 between {from:?} and +2 s");
        }
        // Fixed per partition (FNV-1a of the name and number).
        assert_eq!(spread("pref-d", 0), HAND_OVER_SPREAD.mul_f64(0.081));
    }
}
