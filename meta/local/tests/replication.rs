//! Replicated partitions across three nodes in one process, over the real node-to-node
//! RPC: writes are acknowledged once a majority has them, every replica holds the same
//! batches at the same offsets, and when the leader's node stops, the others elect a new
//! leader that has every acknowledged record and goes on taking writes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use strata_batch::{Batch, BatchBuilder};
use strata_frontend::owned::OwnedStreams;
use strata_frontend::seams::{Catalog, Partition, PartitionRouter, StoreError, StreamSpec};
use strata_journal::{
    Journal, JournalConfig, JournalOptions, ObjectStoreConfig, OffloadSettings, PartitionLog,
};
use strata_local::{ClusterStreams, MetaManifests};
use strata_meta::model::{Command, ManifestEntry, Outcome};
use strata_meta::{MetaConfig, MetaNode};
use strata_tiered::testing::S3Server;
use tokio::net::TcpListener;

const DEADLINE: Duration = Duration::from_secs(90);

struct Node {
    meta: Arc<MetaNode>,
    journal: Journal,
    streams: ClusterStreams,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Node {
    async fn stop(self) {
        for t in &self.tasks {
            t.abort();
        }
        self.meta.shutdown().await;
        let _ = self.journal.close().await;
    }

    fn log(&self, stream: &str) -> Arc<dyn PartitionLog> {
        self.journal
            .stream(stream)
            .unwrap()
            .partition(0)
            .unwrap()
            .clone()
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Starts three new nodes on free ports, their data under `dir`.
async fn start(dir: &std::path::Path) -> Vec<Node> {
    start_with(dir, None).await
}

/// Starts three new nodes on free ports, their data under `dir`, offloading to `store`
/// when given.
async fn start_with(dir: &std::path::Path, store: Option<&ObjectStoreConfig>) -> Vec<Node> {
    start_count(dir, 3, store).await
}

/// Starts `count` new nodes (ids 1 to `count`) on free ports, their data under `dir`.
async fn start_count(
    dir: &std::path::Path,
    count: u64,
    store: Option<&ObjectStoreConfig>,
) -> Vec<Node> {
    let mut listeners = Vec::new();
    for id in 1..=count {
        listeners.push((id, TcpListener::bind("127.0.0.1:0").await.unwrap()));
    }
    let voters: BTreeMap<u64, String> = listeners
        .iter()
        .map(|(id, l)| (*id, l.local_addr().unwrap().to_string()))
        .collect();
    start_nodes(dir, listeners, &voters, store).await
}

/// Starts nodes `ids` again on their addresses, from what their data directories hold.
async fn restart(dir: &std::path::Path, ids: &[u64], voters: &BTreeMap<u64, String>) -> Vec<Node> {
    restart_with(dir, ids, voters, None).await
}

/// [`restart`], offloading to `store` when given.
async fn restart_with(
    dir: &std::path::Path,
    ids: &[u64],
    voters: &BTreeMap<u64, String>,
    store: Option<&ObjectStoreConfig>,
) -> Vec<Node> {
    let mut listeners = Vec::new();
    for id in ids {
        let l = TcpListener::bind(voters[id].as_str()).await.unwrap();
        listeners.push((*id, l));
    }
    start_nodes(dir, listeners, voters, store).await
}

/// Opens every node's meta store and journal first, then registers each and sends its
/// heartbeats (a registration needs a majority of the meta service up).
async fn start_nodes(
    dir: &std::path::Path,
    listeners: Vec<(u64, TcpListener)>,
    voters: &BTreeMap<u64, String>,
    store: Option<&ObjectStoreConfig>,
) -> Vec<Node> {
    let mut nodes = Vec::new();
    for (id, l) in listeners {
        nodes.push(open_node(dir, id, l, voters, store).await);
    }
    for n in &mut nodes {
        run_node(n, dir).await;
    }
    nodes
}

/// The meta service's voters: each node's id and address.
fn voters(nodes: &[Node]) -> BTreeMap<u64, String> {
    nodes
        .iter()
        .map(|n| (n.meta.id(), n.meta.advertised().to_owned()))
        .collect()
}

/// Opens node `id`'s meta store and journal under `dir`; with `store`, the journal
/// offloads every sealed 16 KiB segment there at once, recording it in the meta service,
/// as a node does.
async fn open_node(
    dir: &std::path::Path,
    id: u64,
    l: TcpListener,
    voters: &BTreeMap<u64, String>,
    store: Option<&ObjectStoreConfig>,
) -> Node {
    let mut c = MetaConfig::single(id, dir.join(format!("meta{id}")), voters[&id].clone());
    c.voters = voters.clone();
    c.secret = "replication-test-secret-0123".into();
    let meta = Arc::new(MetaNode::start(c, l).await.unwrap());
    let mut config = JournalConfig::default();
    if let Some(store) = store {
        config.object_store = Some(store.clone());
        config.segment_bytes = 16 * 1024;
        config.offload = Some(OffloadSettings {
            local_retention_ms: 0,
            local_retention_bytes: Some(0),
        });
    }
    let mut options = JournalOptions::new(
        dir.join(format!("j{id}")),
        config,
        prometheus::Registry::new(),
    );
    if store.is_some() {
        options = options.with_object_store().await.unwrap();
        options.manifests = Some(Arc::new(MetaManifests::new(meta.clone())));
    }
    let journal = Journal::open(options).unwrap();
    let streams = ClusterStreams::new(journal.clone(), meta.clone(), OwnedStreams::default());
    meta.serve_partitions(Arc::new(streams.clone()));
    Node {
        meta,
        journal,
        streams,
        tasks: Vec::new(),
    }
}

/// Registers node `n`, then sends its heartbeats and reconciles its streams.
async fn run_node(n: &mut Node, dir: &std::path::Path) {
    {
        let command = Command::AddNode {
            id: n.meta.id(),
            rpc: n.meta.advertised().to_owned(),
            listeners: BTreeMap::new(),
            at_ms: now_ms(),
        };
        n.meta.write(command).await.unwrap();
        let meta = n.meta.clone();
        // Heartbeats, as a node sends them.
        n.tasks.push(tokio::spawn(async move {
            loop {
                let beat = Command::Heartbeat {
                    id: meta.id(),
                    at_ms: now_ms(),
                };
                let _ = meta.write(beat).await;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }));
        let reconcile = n
            .streams
            .clone()
            .reconcile(dir.join(format!("meta{}", n.meta.id())));
        n.tasks.push(tokio::spawn(reconcile));
    }
}

fn batch(i: u32) -> strata_batch::PendingBatch {
    let mut b = BatchBuilder::new();
    for r in 0..3 {
        let v = format!("v{i}-{r}");
        b.push(1000, None, Some(v.as_bytes()), &[]);
    }
    b.build().unwrap()
}

/// Write `i` as three records of about 1 KiB each (their keys padded), their values as
/// [`batch`]'s.
fn large_batch(i: u32) -> strata_batch::PendingBatch {
    let mut b = BatchBuilder::new();
    let key = vec![b'k'; 1024];
    for r in 0..3 {
        let v = format!("v{i}-{r}");
        b.push(1000, Some(&key), Some(v.as_bytes()), &[]);
    }
    b.build().unwrap()
}

/// Appends through `p`, retrying while the partition has no leader serving it.
async fn append(p: &Arc<dyn Partition>, i: u32) -> u64 {
    append_with(p, i, batch).await
}

/// Appends write `i` as `make` builds it through `p`, retrying while the partition has
/// no leader serving it.
async fn append_with(
    p: &Arc<dyn Partition>,
    i: u32,
    make: fn(u32) -> strata_batch::PendingBatch,
) -> u64 {
    let until = Instant::now() + DEADLINE;
    loop {
        match p.append(make(i)).await {
            Ok(a) => return a.base_offset,
            Err(e @ (StoreError::Unavailable(_) | StoreError::NotLeader { .. }))
                if Instant::now() < until =>
            {
                tracing::debug!(error = %e, "retrying");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("append {i}: {e}"),
        }
    }
}

/// Reads `p` from its start and checks every acknowledged write (base offset, index) is
/// there at the offset it was acknowledged with; returns each record's value by offset.
async fn acked_at_their_offsets(
    p: &Arc<dyn Partition>,
    acked: &[(u64, u32)],
) -> BTreeMap<u64, String> {
    let read = p.read(0, 1 << 24).await.unwrap();
    let mut at: BTreeMap<u64, String> = BTreeMap::new();
    for b in read.iter().filter(|b| !b.header().control) {
        for r in b.records().unwrap() {
            let r = r.unwrap();
            at.insert(
                r.offset,
                String::from_utf8(r.value.unwrap().to_vec()).unwrap(),
            );
        }
    }
    for (base, i) in acked {
        assert_eq!(
            at.get(base),
            Some(&format!("v{i}-0")),
            "write {i} at {base}"
        );
    }
    at
}

/// Waits until `node`'s copy of `stream`'s partition ends where `leader_log` does.
async fn caught_up(node: &Node, stream: &str, leader_log: &Arc<dyn PartitionLog>) {
    wait_until("a copy to catch up with its leader", async || {
        node.journal
            .stream(stream)
            .and_then(|s| s.partition(0).cloned())
            .is_ok_and(|log| {
                log.replica_state().unwrap().written_end
                    == leader_log.replica_state().unwrap().written_end
            })
    })
    .await;
}

/// Every batch `log` holds from `from` on, past the high watermark.
async fn written_from(log: &Arc<dyn PartitionLog>, from: u64) -> Vec<Batch> {
    let end = log.replica_state().unwrap().written_end;
    let mut out = Vec::new();
    let mut next = from;
    while next < end {
        let got = log.read_written(next, 1 << 20).await.unwrap();
        next = got.last().unwrap().last_offset() + 1;
        out.extend(got);
    }
    out
}

/// The data batches of `log` (markers left out), past the high watermark.
async fn data_batches(log: &Arc<dyn PartitionLog>) -> Vec<Batch> {
    let all = written_from(log, 0).await;
    all.into_iter().filter(|b| !b.header().control).collect()
}

/// Creates stream `name`, one partition with three copies, through the first node;
/// returns a handle on the partition through that node.
async fn create(nodes: &[Node], name: &str) -> Arc<dyn Partition> {
    nodes[0]
        .streams
        .create_stream(StreamSpec::new(name, 1).with_replication_factor(3))
        .await
        .unwrap();
    nodes[0].streams.partition(name, 0).await.unwrap()
}

/// Waits until the metadata lists three in-sync copies of `name`'s partition.
async fn all_in_sync(nodes: &[Node], name: &str) {
    wait_until("every copy to be in sync", async || {
        nodes[0]
            .streams
            .placement(name, 0)
            .is_some_and(|p| p.in_sync.len() == 3)
    })
    .await;
}

async fn wait_until(what: &str, mut ok: impl AsyncFnMut() -> bool) {
    let until = Instant::now() + DEADLINE;
    while !ok().await {
        assert!(Instant::now() < until, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replicated_partition_survives_its_leaders_node() {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = start(dir.path()).await;
    let info = nodes[1]
        .streams
        .create_stream(StreamSpec::new("rep", 1).with_replication_factor(3))
        .await
        .unwrap();
    assert_eq!(info.name, "rep");
    // Every node knows the stream before it is written (each learns it from its copy of
    // the metadata).
    for n in &nodes {
        assert!(
            n.meta
                .applied(|s| s.streams.contains_key("rep"), DEADLINE)
                .await
        );
    }
    let placement = nodes[1].streams.placement("rep", 0).unwrap();
    assert_eq!(placement.replicas.len(), 3);
    let first_leader = placement.leader.unwrap();
    // Writes through a node that does not lead: forwarded, acknowledged once committed.
    let via = nodes
        .iter()
        .position(|n| n.meta.id() != first_leader)
        .unwrap();
    let p = nodes[via].streams.partition("rep", 0).await.unwrap();
    let mut acked = Vec::new();
    for i in 0..30 {
        acked.push((append(&p, i).await, i));
    }
    // A handle for use only while this node leads (what the Kafka frontend takes: a
    // write forwarded to the leader would bypass the producer sequences kept there)
    // refuses instead of forwarding, naming the leader.
    let here = nodes[via]
        .streams
        .partition_led_here("rep", 0)
        .await
        .unwrap();
    match here.append(batch(999)).await {
        Err(StoreError::NotLeader { leader, .. }) => assert_eq!(leader, Some(first_leader)),
        other => panic!("a write through a node that does not lead: {other:?}"),
    }
    // Committed means readable at the leader, and the followers catch up to the same
    // batches, byte for byte.
    let end = p.offsets().await.unwrap().end;
    assert!(end >= 90);
    let leader_log = nodes[(first_leader - 1) as usize].log("rep");
    let want = data_batches(&leader_log).await;
    assert_eq!(want.len(), 30);
    for n in &nodes {
        let log = n.log("rep");
        wait_until("a follower has every batch", async || {
            log.replica_state().unwrap().written_end
                >= leader_log.replica_state().unwrap().written_end
        })
        .await;
        assert_eq!(data_batches(&log).await, want, "node {}", n.meta.id());
        assert!(want.iter().all(|b| b.header().leader_epoch == 0));
    }
    // The leader's node stops; the two others elect one of themselves and take writes.
    let stopped = nodes.remove((first_leader - 1) as usize);
    stopped.stop().await;
    let p = nodes[0].streams.partition("rep", 0).await.unwrap();
    for i in 30..40 {
        acked.push((append(&p, i).await, i));
    }
    let placement = nodes[0].streams.placement("rep", 0).unwrap();
    assert_ne!(placement.leader, Some(first_leader));
    assert!(placement.epoch >= 1);
    // Every acknowledged write is there, at the offset it was acknowledged with, once.
    let at = acked_at_their_offsets(&p, &acked).await;
    let values: Vec<&String> = at.values().collect();
    let mut distinct = values.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(values.len(), distinct.len(), "no record twice");
    assert_eq!(values.len(), 120);
    for n in nodes {
        n.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_follower_that_lost_its_disk_starts_over_at_the_leaders_log_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = start(dir.path()).await;
    let voters = voters(&nodes);
    let p = create(&nodes, "wiped").await;
    for i in 0..20 {
        append(&p, i).await;
    }
    let leader = nodes[0]
        .streams
        .placement("wiped", 0)
        .unwrap()
        .leader
        .unwrap();
    let leader_log = nodes[(leader - 1) as usize].log("wiped");
    // The leader's log no longer starts at 0 (retention, or records deleted).
    let start = leader_log.delete_before(31).await.unwrap();
    assert_eq!(start, 31);
    // Retention is decided once, by the leader: the followers' logs start there too (the
    // leader's answers to their fetches say where).
    for n in nodes.iter().filter(|n| n.meta.id() != leader) {
        let log = n.log("wiped");
        append(&p, 99).await;
        wait_until(
            "a follower's log to start where the leader's does",
            async || log.replica_state().unwrap().log_start == 31,
        )
        .await;
    }
    // A follower loses its disk, journal and meta store, and starts again.
    let follower = nodes.iter().position(|n| n.meta.id() != leader).unwrap();
    let id = nodes[follower].meta.id();
    nodes.remove(follower).stop().await;
    std::fs::remove_dir_all(dir.path().join(format!("j{id}"))).unwrap();
    std::fs::remove_dir_all(dir.path().join(format!("meta{id}"))).unwrap();
    let back = restart(dir.path(), &[id], &voters).await.pop().unwrap();
    for i in 20..25 {
        append(&p, i).await;
    }
    // It copies the leader's log from the leader's log start, not from 0 (which the
    // leader no longer has), and holds the same batches from there on.
    caught_up(&back, "wiped", &leader_log).await;
    let log = back.log("wiped");
    let state = log.replica_state().unwrap();
    assert_eq!(state.log_start, 31);
    let copied = written_from(&log, state.log_start).await;
    let from_leader = leader_log
        .read_written(copied[0].base_offset(), 1 << 24)
        .await
        .unwrap();
    assert!(copied[0].base_offset() >= 31);
    assert_eq!(copied, from_leader);
    back.stop().await;
    for n in nodes {
        n.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn leadership_returns_to_the_preferred_replica_when_its_node_is_back() {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = start(dir.path()).await;
    let voters = voters(&nodes);
    // A stream whose partition's share of the handover spread (HAND_OVER_SPREAD) is
    // small, about 2.4 s, so the test does not wait out most of the window.
    let p = create(&nodes, "pref-d").await;
    let placement = nodes[0].streams.placement("pref-d", 0).unwrap();
    let preferred = placement.replicas[0];
    assert_eq!(
        placement.leader,
        Some(preferred),
        "placed on the preferred replica"
    );
    let mut acked = Vec::new();
    for i in 0..10 {
        acked.push((append(&p, i).await, i));
    }
    // Every copy in sync first (a partition whose leader dies before its followers ever
    // caught up stays offline until it returns: see docs/architecture.md).
    all_in_sync(&nodes, "pref-d").await;
    // The preferred replica's node stops: another replica leads.
    let at = nodes.iter().position(|n| n.meta.id() == preferred).unwrap();
    nodes.remove(at).stop().await;
    let p = nodes[0].streams.partition("pref-d", 0).await.unwrap();
    for i in 10..20 {
        acked.push((append(&p, i).await, i));
    }
    let during = nodes[0].streams.placement("pref-d", 0).unwrap();
    assert_ne!(during.leader, Some(preferred));
    // It comes back (from its disk) and, once in sync, is handed the partition back,
    // while writes go on; none of them is lost.
    nodes.extend(restart(dir.path(), &[preferred], &voters).await);
    let writer = {
        let p = p.clone();
        tokio::spawn(async move {
            let mut acked = Vec::new();
            for i in 20..200 {
                acked.push((append(&p, i).await, i));
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            acked
        })
    };
    wait_until("the preferred replica to lead again", async || {
        nodes.iter().all(|n| {
            n.streams
                .placement("pref-d", 0)
                .is_some_and(|p| p.leader == Some(preferred))
        })
    })
    .await;
    acked.extend(writer.await.unwrap());
    let p = nodes[0].streams.partition("pref-d", 0).await.unwrap();
    acked.push((append(&p, 999).await, 999));
    acked_at_their_offsets(&p, &acked).await;
    for n in nodes {
        n.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_leader_restarted_before_anyone_noticed_begins_a_new_epoch() {
    restarted_before_anyone_noticed(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_leader_that_lost_its_disk_and_restarted_before_anyone_noticed_does_not_lead() {
    restarted_before_anyone_noticed(true).await;
}

/// The leader's node restarts while the metadata still names it (with its journal lost
/// when `wiped`: it must not lead an empty log, which the followers, their high
/// watermarks gone with their restart, would copy).
async fn restarted_before_anyone_noticed(wiped: bool) {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = start(dir.path()).await;
    let voters = voters(&nodes);
    let p = create(&nodes, "again").await;
    let mut acked = Vec::new();
    for i in 0..10 {
        acked.push((append(&p, i).await, i));
    }
    all_in_sync(&nodes, "again").await;
    let before = nodes[0].streams.placement("again", 0).unwrap();
    // The whole cluster stops, the leader's node last (by then the meta service has no
    // majority: nobody elects), and starts again with the metadata naming the old leader.
    nodes.sort_by_key(|n| before.leader == Some(n.meta.id()));
    for n in nodes {
        n.stop().await;
    }
    if wiped {
        let leader = before.leader.unwrap();
        std::fs::remove_dir_all(dir.path().join(format!("j{leader}"))).unwrap();
    }
    let nodes = restart(dir.path(), &[1, 2, 3], &voters).await;
    // The named leader does not take its old epoch up again (its high watermark was kept
    // in memory, and a power loss may have taken what it had not fsynced): a new election
    // picks a leader, and writes go on with nothing acknowledged lost.
    wait_until("a new epoch with a leader", async || {
        nodes.iter().all(|n| {
            n.streams
                .placement("again", 0)
                .is_some_and(|p| p.epoch > before.epoch && p.leader.is_some())
        })
    })
    .await;
    let p = nodes[0].streams.partition("again", 0).await.unwrap();
    for i in 10..20 {
        acked.push((append(&p, i).await, i));
    }
    let at = acked_at_their_offsets(&p, &acked).await;
    assert_eq!(at.len(), 60);
    for n in nodes {
        n.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_leader_cut_off_from_its_followers_fails_writes_instead_of_holding_them() {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = start(dir.path()).await;
    let p = create(&nodes, "alone").await;
    let mut acked = Vec::new();
    for i in 0..5 {
        acked.push((append(&p, i).await, i));
    }
    let leader = nodes[0]
        .streams
        .placement("alone", 0)
        .unwrap()
        .leader
        .unwrap();
    // Both followers' nodes stop: the leader can commit nothing more (nor can anyone
    // elect another). Its write fails once it has heard from no follower for the contact
    // lease, not after the commit deadline, and the next one is refused at once.
    let at = nodes.iter().position(|n| n.meta.id() == leader).unwrap();
    let alone = nodes.remove(at);
    for n in nodes {
        n.stop().await;
    }
    let p = alone.streams.partition("alone", 0).await.unwrap();
    for i in 100..102 {
        match p.append(batch(i)).await {
            Err(StoreError::Unavailable(why)) => {
                assert!(why.contains("heard from no majority"), "write {i}: {why}")
            }
            other => panic!("write {i} by a leader cut off: {other:?}"),
        }
    }
    // What was acknowledged before is still there.
    acked_at_their_offsets(&p, &acked).await;
    alone.stop().await;
}

/// The uploaded segments of `stream`'s partition 0 the meta service records.
fn catalog(node: &Node, stream: &str) -> Vec<ManifestEntry> {
    node.meta.read(|s| {
        s.manifests
            .get(stream)
            .and_then(|m| m.get(&0))
            .cloned()
            .unwrap_or_default()
    })
}

/// The names of the segment objects in the S3 server's data directory `dir`.
fn stored_objects(dir: &std::path::Path) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let path = e.unwrap().path();
            if path.is_dir() {
                todo.push(path);
            } else if let Some(name) = path.file_name().and_then(|n| n.to_str())
                && name.ends_with(".seg")
            {
                found.insert(name.to_string());
            }
        }
    }
    found
}

/// Checks that the catalog's entries hold every offset from the first on, each ending
/// past the one before, and that the bucket holds the objects they name (nothing a copy
/// took for an orphan deleted) and nothing else but the leader's upload in flight (at
/// most one object, past the catalog's end: no copy of a follower's); returns the end of
/// the uploaded offsets.
fn one_set_of_objects(node: &Node, stream: &str, bucket: &std::path::Path) -> u64 {
    let entries = catalog(node, stream);
    for pair in entries.windows(2) {
        assert!(
            pair[1].base_offset <= pair[0].last_offset + 1
                && pair[1].base_offset > pair[0].base_offset
                && pair[1].last_offset > pair[0].last_offset,
            "entries {pair:?}"
        );
    }
    let named: BTreeSet<String> = entries
        .iter()
        .map(|e| e.key.rsplit('/').next().unwrap().to_string())
        .collect();
    let end = entries.last().map_or(0, |e| e.last_offset + 1);
    let stored = stored_objects(bucket);
    assert!(
        named.is_subset(&stored),
        "{named:?} named, {stored:?} stored"
    );
    let extra: Vec<&String> = stored.difference(&named).collect();
    let base = |key: &str| key.split('-').next().unwrap().parse::<u64>().unwrap();
    assert!(
        extra.len() <= 1 && extra.iter().all(|k| base(k) >= end),
        "objects no entry names: {extra:?}, the entries end at {end}"
    );
    end
}

/// Waits until the catalog `node` sees holds all but the last 30 offsets of stream
/// `tier`'s partition `p`; returns where the uploads end, checked by
/// [`one_set_of_objects`].
async fn most_uploaded(node: &Node, p: &Arc<dyn Partition>, bucket: &std::path::Path) -> u64 {
    let written = p.offsets().await.unwrap().end;
    wait_until("most of the partition to be uploaded", async || {
        catalog(node, "tier")
            .last()
            .is_some_and(|e| e.last_offset + 1 >= written - 30)
    })
    .await;
    one_set_of_objects(node, "tier", bucket)
}

/// The offset a copy's first local segment starts at (below it, it reads object storage).
fn first_local(log: &Arc<dyn PartitionLog>) -> u64 {
    log.describe()
        .segments
        .iter()
        .find(|s| !s.location.as_os_str().is_empty())
        .map_or(0, |s| s.base_offset)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn only_the_leader_uploads_and_lagging_or_wiped_copies_start_from_object_storage() {
    let s3 = S3Server::start("strata");
    let store = s3.config("strata", "cluster");
    let bucket = s3.data_dir().join("strata");
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = start_with(dir.path(), Some(&store)).await;
    let voters = voters(&nodes);
    let p = create(&nodes, "tier").await;
    let mut acked = Vec::new();
    for i in 0..120 {
        acked.push((append_with(&p, i, large_batch).await, i));
    }
    // The leader uploads its sealed segments (16 KiB: about five writes each) once
    // committed; the followers upload nothing and drop their own copies of what the
    // leader uploaded (local retention 0).
    let uploaded = most_uploaded(&nodes[0], &p, &bucket).await;
    for n in &nodes {
        let log = n.log("tier");
        wait_until(
            "a copy to drop its local copy of uploaded segments",
            async || first_local(&log) + 40 >= uploaded,
        )
        .await;
    }
    // The leader's node stops. The new leader goes on uploading from where the catalog
    // ends (its segments end elsewhere than the old leader's did).
    let leader = nodes[0]
        .streams
        .placement("tier", 0)
        .unwrap()
        .leader
        .unwrap();
    let at = nodes.iter().position(|n| n.meta.id() == leader).unwrap();
    nodes.remove(at).stop().await;
    let p = nodes[0].streams.partition("tier", 0).await.unwrap();
    for i in 120..240 {
        acked.push((append_with(&p, i, large_batch).await, i));
    }
    let uploaded = most_uploaded(&nodes[0], &p, &bucket).await;
    // The old leader comes back as a follower, its log behind where the new leader's
    // local files start: it starts after what object storage holds instead of copying
    // it, and reads below from the objects.
    let old = leader;
    nodes.extend(restart_with(dir.path(), &[old], &voters, Some(&store)).await);
    let leader = nodes[0]
        .streams
        .placement("tier", 0)
        .unwrap()
        .leader
        .unwrap();
    let leader_log = nodes
        .iter()
        .find(|n| n.meta.id() == leader)
        .unwrap()
        .log("tier");
    let back = nodes.iter().find(|n| n.meta.id() == old).unwrap();
    caught_up(back, "tier", &leader_log).await;
    let log = back.log("tier");
    assert!(
        first_local(&log) >= uploaded - 40,
        "the old leader's local files start at {} with {uploaded} uploaded",
        first_local(&log)
    );
    assert_eq!(log.replica_state().unwrap().log_start, 0);
    assert_eq!(
        written_from(&log, 0).await,
        written_from(&leader_log, 0).await
    );
    // Another follower loses its disk and starts from object storage: its log begins
    // where the uploads end, not at 0, and reads below that from the objects.
    let wiped = nodes.iter().position(|n| n.meta.id() != leader).unwrap();
    let id = nodes[wiped].meta.id();
    nodes.remove(wiped).stop().await;
    std::fs::remove_dir_all(dir.path().join(format!("j{id}"))).unwrap();
    std::fs::remove_dir_all(dir.path().join(format!("meta{id}"))).unwrap();
    nodes.extend(restart_with(dir.path(), &[id], &voters, Some(&store)).await);
    for i in 240..250 {
        acked.push((append_with(&p, i, large_batch).await, i));
    }
    let back = nodes.iter().find(|n| n.meta.id() == id).unwrap();
    caught_up(back, "tier", &leader_log).await;
    let log = back.log("tier");
    assert!(
        first_local(&log) >= uploaded - 30,
        "the wiped copy starts at {} with {uploaded} uploaded",
        first_local(&log)
    );
    assert_eq!(log.replica_state().unwrap().log_start, 0);
    assert_eq!(
        written_from(&log, 0).await,
        written_from(&leader_log, 0).await
    );
    acked_at_their_offsets(&p, &acked).await;
    one_set_of_objects(&nodes[0], "tier", &bucket);
    for n in nodes {
        n.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_new_partition_whose_leader_dies_at_once_elects_another() {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = start(dir.path()).await;
    // Every node follows the partitions placed on it (a copy of this one on each has
    // caught up) before the new one is created: that one is placed while they run.
    let warm = create(&nodes, "warm").await;
    append(&warm, 0).await;
    let leader = nodes[0]
        .streams
        .placement("warm", 0)
        .unwrap()
        .leader
        .unwrap();
    let leader_log = nodes[(leader - 1) as usize].log("warm");
    for n in &nodes {
        caught_up(n, "warm", &leader_log).await;
    }
    let p = create(&nodes, "young").await;
    // One write, acknowledged (a follower holds it), then the leader's node stops at once:
    // its followers may not have heard yet that the write is committed.
    let acked = vec![(append(&p, 0).await, 0)];
    let leader = nodes[0]
        .streams
        .placement("young", 0)
        .unwrap()
        .leader
        .unwrap();
    let stopped = nodes.remove((leader - 1) as usize);
    stopped.stop().await;
    // Both copies were placed while their processes ran: they vote, and one leads.
    let p = nodes[0].streams.partition("young", 0).await.unwrap();
    let mut acked = acked;
    acked.push((append(&p, 1).await, 1));
    let placement = nodes[0].streams.placement("young", 0).unwrap();
    assert_ne!(placement.leader, Some(leader));
    // Both writes, three records each, at the offsets they were acknowledged with.
    assert_eq!(acked_at_their_offsets(&p, &acked).await.len(), 6);
    for n in nodes {
        n.stop().await;
    }
}

/// Four new nodes, and stream `name` of one partition with three copies (on three of
/// them), every copy in sync.
async fn four_nodes_with(dir: &std::path::Path, name: &str) -> (Vec<Node>, Arc<dyn Partition>) {
    let nodes = start_count(dir, 4, None).await;
    // Every node up before placing, so the three copies go to three of the four.
    wait_until("every node to register", async || {
        nodes[0].meta.read(|s| s.nodes.len() == 4)
    })
    .await;
    let p = create(&nodes, name).await;
    all_in_sync(&nodes, name).await;
    (nodes, p)
}

/// Asks for `stream`'s partition to move to `replicas`, through the first node.
async fn move_to(nodes: &[Node], stream: &str, replicas: &[u64]) {
    let command = Command::MoveReplicas {
        stream: stream.into(),
        partition: 0,
        replicas: replicas.to_vec(),
    };
    assert_eq!(nodes[0].meta.write(command).await.unwrap(), Outcome::Done);
}

/// Waits until `stream`'s partition has `replicas`, no move under way, and a leader.
async fn moved(nodes: &[Node], stream: &str, replicas: &[u64]) {
    wait_until("the move to end with a leader", async || {
        nodes[0].meta.read(|s| {
            let now = &s.placement[stream][0];
            now.replicas == replicas && now.target.is_empty() && now.leader.is_some()
        })
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_partition_moves_its_leaders_copy_to_another_node_under_writes_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (nodes, p) = four_nodes_with(dir.path(), "mv").await;
    let node = |id: u64| &nodes[(id - 1) as usize];
    let before = nodes[0].streams.placement("mv", 0).unwrap();
    let old_leader = before.leader.unwrap();
    let spare = (1..=4).find(|n| !before.replicas.contains(n)).unwrap();
    let mut acked = Vec::new();
    for i in 0..30 {
        acked.push((append(&p, i).await, i));
    }
    // Writes go on through the move.
    let writing = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let writer = {
        let (p, writing) = (p.clone(), writing.clone());
        tokio::spawn(async move {
            let mut acked = Vec::new();
            let mut i = 1000;
            while writing.load(std::sync::atomic::Ordering::Acquire) {
                acked.push((append(&p, i).await, i));
                i += 1;
            }
            acked
        })
    };
    // The leader's copy moves to the spare node, which becomes the preferred leader.
    let mut target = vec![spare];
    target.extend(before.replicas.iter().filter(|n| **n != old_leader));
    move_to(&nodes, "mv", &target).await;
    moved(&nodes, "mv", &target).await;
    writing.store(false, std::sync::atomic::Ordering::Release);
    acked.extend(writer.await.unwrap());
    assert!(acked.len() > 30, "writes were acknowledged during the move");
    let after = nodes[0].streams.placement("mv", 0).unwrap();
    assert!(after.epoch > before.epoch);
    // The moved-away copy is deleted; the new replicas hold the same batches.
    wait_until("the old copy to be emptied", async || {
        node(old_leader)
            .log("mv")
            .replica_state()
            .unwrap()
            .written_end
            == 0
    })
    .await;
    all_in_sync(&nodes, "mv").await;
    let leader_log = node(after.leader.unwrap()).log("mv");
    let want = data_batches(&leader_log).await;
    for id in &target {
        caught_up(node(*id), "mv", &leader_log).await;
        assert_eq!(data_batches(&node(*id).log("mv")).await, want, "node {id}");
    }
    // Back to where it was, with no writes meanwhile (the followers of an idle partition
    // fetch every few seconds): the emptied copy copies the log again as a learner.
    move_to(&nodes, "mv", &before.replicas).await;
    moved(&nodes, "mv", &before.replicas).await;
    let back = nodes[0].streams.placement("mv", 0).unwrap();
    let leader_log = node(back.leader.unwrap()).log("mv");
    caught_up(node(old_leader), "mv", &leader_log).await;
    assert_eq!(
        data_batches(&node(old_leader).log("mv")).await,
        data_batches(&leader_log).await
    );
    wait_until("the spare's copy to be emptied", async || {
        node(spare).log("mv").replica_state().unwrap().written_end == 0
    })
    .await;
    // The leader's node stops: the two replicas left elect one of themselves, with every
    // acknowledged write (the spare's copy, emptied, has no vote).
    let after = back;
    let mut nodes = nodes;
    let new_leader = after.leader.unwrap();
    let at = nodes
        .iter()
        .position(|n| n.meta.id() == new_leader)
        .unwrap();
    nodes.remove(at).stop().await;
    let p = nodes[0].streams.partition("mv", 0).await.unwrap();
    for i in 5000..5010 {
        acked.push((append(&p, i).await, i));
    }
    let at = acked_at_their_offsets(&p, &acked).await;
    let mut values: Vec<&String> = at.values().collect();
    let all = values.len();
    values.sort();
    values.dedup();
    assert_eq!(all, values.len(), "no record twice");
    for n in nodes {
        n.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_move_cancelled_and_asked_again_at_once_waits_for_the_emptied_copies() {
    let dir = tempfile::tempdir().unwrap();
    let (nodes, p) = four_nodes_with(dir.path(), "again").await;
    let node = |id: u64| &nodes[(id - 1) as usize];
    let mut acked = Vec::new();
    for i in 0..20 {
        acked.push((append(&p, i).await, i));
    }
    let before = nodes[0].streams.placement("again", 0).unwrap();
    let spare = (1..=4).find(|n| !before.replicas.contains(n)).unwrap();
    let mut target = before.replicas.clone();
    let gone = target[2];
    target[2] = spare;
    // Started, cancelled once the learner caught up, and asked again at once, the
    // partition idle: the move ends only with the learner's copy refilled.
    move_to(&nodes, "again", &target).await;
    let leader_log = node(before.leader.unwrap()).log("again");
    wait_until("the learner to catch up", async || {
        node(spare)
            .journal
            .stream("again")
            .and_then(|s| s.partition(0).cloned())
            .is_ok_and(|log| {
                log.replica_state().unwrap().written_end
                    == leader_log.replica_state().unwrap().written_end
            })
    })
    .await;
    move_to(&nodes, "again", &before.replicas).await;
    move_to(&nodes, "again", &target).await;
    moved(&nodes, "again", &target).await;
    for i in 20..30 {
        acked.push((append(&p, i).await, i));
    }
    let after = nodes[0].streams.placement("again", 0).unwrap();
    let leader_log = node(after.leader.unwrap()).log("again");
    let want = data_batches(&leader_log).await;
    assert_eq!(want.len(), 30);
    for id in &target {
        caught_up(node(*id), "again", &leader_log).await;
        assert_eq!(
            data_batches(&node(*id).log("again")).await,
            want,
            "node {id}"
        );
    }
    acked_at_their_offsets(&p, &acked).await;
    wait_until("the copy moved away to be emptied", async || {
        node(gone).log("again").replica_state().unwrap().written_end == 0
    })
    .await;
    for n in nodes {
        n.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_partition_without_a_copy_on_the_meta_leader_fails_over() {
    let dir = tempfile::tempdir().unwrap();
    let (nodes, p) = four_nodes_with(dir.path(), "away").await;
    let mut acked = Vec::new();
    for i in 0..10 {
        acked.push((append(&p, i).await, i));
    }
    // The partition's copies go to the three nodes the meta leader is not.
    let meta_leader = nodes[0].meta.leader().unwrap();
    let elsewhere: Vec<u64> = (1..=4).filter(|n| *n != meta_leader).collect();
    let before = nodes[0].streams.placement("away", 0).unwrap();
    if before.replicas != elsewhere {
        move_to(&nodes, "away", &elsewhere).await;
        moved(&nodes, "away", &elsewhere).await;
    }
    // Its leader's node stops (the meta service keeps three of four voters): the meta
    // leader, holding no copy, begins the election.
    let leader = nodes[0]
        .streams
        .placement("away", 0)
        .unwrap()
        .leader
        .unwrap();
    assert_ne!(leader, meta_leader);
    let mut nodes = nodes;
    let at = nodes.iter().position(|n| n.meta.id() == leader).unwrap();
    nodes.remove(at).stop().await;
    let via = nodes
        .iter()
        .position(|n| n.meta.id() == meta_leader)
        .unwrap();
    let p = nodes[via].streams.partition("away", 0).await.unwrap();
    for i in 10..20 {
        acked.push((append(&p, i).await, i));
    }
    let now = nodes[via].streams.placement("away", 0).unwrap();
    assert!(now.leader.is_some_and(|l| l != leader && l != meta_leader));
    acked_at_their_offsets(&p, &acked).await;
    for n in nodes {
        n.stop().await;
    }
}
