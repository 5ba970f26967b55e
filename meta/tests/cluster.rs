//! The meta service over real sockets: one node alone, three nodes electing a leader,
//! writes through a follower, the leader stopped and a new one elected, a node restarted
//! from its store. Deadlines are generous; nothing waits a fixed time.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use strata_meta::model::{Command, Outcome, StreamMeta};
use strata_meta::{MetaConfig, MetaNode};
use tokio::net::TcpListener;

const DEADLINE: Duration = Duration::from_secs(60);

fn stream(name: &str, partitions: u32) -> Command {
    Command::CreateStream(StreamMeta {
        name: name.into(),
        partitions,
        storage_class: "segment".into(),
        replication_factor: 1,
        retention_bytes: None,
        retention_ms: None,
        min_in_sync: None,
    })
}

fn add_node(id: u64) -> Command {
    Command::AddNode {
        id,
        rpc: format!("node-{id}"),
        listeners: BTreeMap::from([("kafka".to_string(), format!("127.0.0.1:{}", 19000 + id))]),
        at_ms: 0,
    }
}

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < DEADLINE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn listener() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").await.unwrap()
}

fn config(id: u64, dir: &std::path::Path, voters: &BTreeMap<u64, String>) -> MetaConfig {
    let mut c = MetaConfig::single(id, dir.join(format!("n{id}")), voters[&id].clone());
    c.voters = voters.clone();
    c.secret = "the-cluster-secret-of-this-test".into();
    c
}

/// Three voters on free ports, their stores under `dir`, once they agree on a leader and
/// each node registered itself: their addresses and nodes.
async fn start_three(dir: &std::path::Path) -> (BTreeMap<u64, String>, BTreeMap<u64, MetaNode>) {
    let mut listeners = BTreeMap::new();
    for id in 1..=3u64 {
        listeners.insert(id, listener().await);
    }
    let voters: BTreeMap<u64, String> = listeners
        .iter()
        .map(|(&id, l)| (id, l.local_addr().unwrap().to_string()))
        .collect();
    let mut nodes = BTreeMap::new();
    for (id, l) in listeners {
        let node = MetaNode::start(config(id, dir, &voters), l).await;
        nodes.insert(id, node.unwrap());
    }
    wait_for("a leader all three agree on", || {
        let leaders: Vec<_> = nodes.values().map(MetaNode::leader).collect();
        leaders[0].is_some() && leaders.iter().all(|l| *l == leaders[0])
    })
    .await;
    // Each node registers itself, as a node does at start (a node's heartbeats are writes
    // too, and a node that started empty votes only once one of its writes committed).
    for (id, n) in &nodes {
        n.write(add_node(*id)).await.unwrap();
    }
    (voters, nodes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_node_is_a_cluster_of_one_and_keeps_its_state() {
    let dir = tempfile::tempdir().unwrap();
    let l = listener().await;
    let addr = l.local_addr().unwrap().to_string();
    let config = MetaConfig::single(1, dir.path().join("meta"), addr);
    let node = MetaNode::start(config.clone(), l).await.unwrap();
    assert_eq!(node.write(add_node(1)).await.unwrap(), Outcome::Done);
    let created = node.write(stream("orders", 3)).await.unwrap();
    assert!(matches!(created, Outcome::Stream { existed: false, .. }));
    let state = node.state();
    assert_eq!(state.placement["orders"].len(), 3);
    assert!(
        state.placement["orders"]
            .iter()
            .all(|p| p.leader == Some(1))
    );
    node.shutdown().await;

    // Restarted from its store, on another port: the same metadata, and it still writes.
    let l = listener().await;
    let mut config = config;
    config.advertised = l.local_addr().unwrap().to_string();
    config.voters = BTreeMap::from([(1, config.advertised.clone())]);
    let node = MetaNode::start(config, l).await.unwrap();
    assert_eq!(node.state().streams["orders"].partitions, 3);
    let again = node.write(stream("orders", 3)).await.unwrap();
    assert!(matches!(again, Outcome::Stream { existed: true, .. }));
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_are_stamped_with_the_leaders_clock_not_the_senders() {
    let dir = tempfile::tempdir().unwrap();
    let l = listener().await;
    let addr = l.local_addr().unwrap().to_string();
    let node = MetaNode::start(MetaConfig::single(1, dir.path().join("meta"), addr), l)
        .await
        .unwrap();
    // The first registration starts the cluster's clock (here at 0).
    assert_eq!(node.write(add_node(1)).await.unwrap(), Outcome::Done);
    // A node whose clock runs an hour ahead registers and beats: its times are replaced
    // by the leader's, so it does not make the others look down.
    let hour = 3_600_000;
    let ahead = |c: Command| match c {
        Command::AddNode {
            id, rpc, listeners, ..
        } => Command::AddNode {
            id,
            rpc,
            listeners,
            at_ms: hour,
        },
        c => c,
    };
    assert_eq!(node.write(ahead(add_node(2))).await.unwrap(), Outcome::Done);
    let beat = |id, at_ms| Command::Heartbeat { id, at_ms };
    assert_eq!(node.write(beat(2, hour)).await.unwrap(), Outcome::Done);
    assert_eq!(node.write(beat(1, 0)).await.unwrap(), Outcome::Done);
    let state = node.state();
    assert!(
        state.nodes[&2].heartbeat_ms < hour / 2,
        "{:?}",
        state.nodes[&2]
    );
    assert!(state.is_live(1) && state.is_live(2));
    // Time runs on the leader's clock: node 1 beating alone, node 2 is taken for down
    // once its last beat is LIVENESS_MS older than node 1's.
    let started = Instant::now();
    while node.state().is_live(2) {
        assert!(started.elapsed() < DEADLINE, "node 2 never taken for down");
        node.write(beat(1, 0)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(node.state().is_live(1));
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_elect_replicate_fail_over_and_catch_up() {
    let dir = tempfile::tempdir().unwrap();
    let (voters, mut nodes) = start_three(dir.path()).await;
    let leader = nodes[&1].leader().unwrap();
    let follower = *nodes.keys().find(|&&id| id != leader).unwrap();
    // Written through a follower: handed to the leader, applied everywhere.
    for i in 0..10 {
        nodes[&follower]
            .write(stream(&format!("t{i}"), 3))
            .await
            .unwrap();
    }
    wait_for("every node to apply the streams", || {
        nodes.values().all(|n| n.state().streams.len() == 10)
    })
    .await;
    let state = nodes[&leader].state();
    for n in nodes.values() {
        assert_eq!(n.state(), state, "node {} differs", n.id());
    }
    let mut per_node = BTreeMap::new();
    for p in state.placement.values().flatten() {
        *per_node.entry(p.leader.unwrap()).or_insert(0) += 1;
    }
    assert_eq!(per_node, BTreeMap::from([(1, 10), (2, 10), (3, 10)]));

    // The leader stops: the others elect a new one and take writes.
    let stopped_at = Instant::now();
    let old = nodes.remove(&leader).unwrap();
    let old_dir_config = config(leader, dir.path(), &voters);
    let stopping = tokio::spawn(async move { old.shutdown().await });
    wait_for("a new leader", || {
        nodes
            .values()
            .all(|n| n.leader().is_some_and(|l| l != leader))
    })
    .await;
    let survivor = nodes.values().next().unwrap();
    survivor.write(stream("after", 1)).await.unwrap();
    eprintln!(
        "meta leader failover: {:?} from stop to the first write by the new leader",
        stopped_at.elapsed()
    );

    // The old leader comes back from its store and catches up.
    stopping.await.unwrap();
    let l = TcpListener::bind(voters[&leader].as_str()).await.unwrap();
    let back = MetaNode::start(old_dir_config, l).await.unwrap();
    wait_for("the restarted node to catch up", || {
        back.state().streams.contains_key("after")
    })
    .await;
    back.shutdown().await;
    for (_, n) in nodes {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_voter_that_lost_its_store_catches_up_and_votes_only_once_its_old_votes_expired() {
    let dir = tempfile::tempdir().unwrap();
    let (voters, mut nodes) = start_three(dir.path()).await;
    let leader = nodes[&1].leader().unwrap();
    let wiped = *nodes.keys().find(|&&id| id != leader).unwrap();
    nodes[&leader].write(stream("before", 2)).await.unwrap();

    // A follower loses its disk: stopped, its store deleted, started again as it was
    // configured (an initial voter with an empty store).
    nodes.remove(&wiped).unwrap().shutdown().await;
    std::fs::remove_dir_all(dir.path().join(format!("n{wiped}"))).unwrap();
    let l = TcpListener::bind(voters[&wiped].as_str()).await.unwrap();
    let back = MetaNode::start(config(wiped, dir.path(), &voters), l)
        .await
        .unwrap();
    wait_for("the wiped node to learn the group's state again", || {
        back.state().streams.contains_key("before") && back.leader().is_some()
    })
    .await;
    // The leader may have changed meanwhile on a loaded machine (never to the wiped node,
    // which nobody that caught up votes for).
    let leader = back.leader().unwrap();
    assert_ne!(leader, wiped);

    // Until it wrote something of its own (what a node's heartbeats do) and that was
    // committed, it cannot know its log holds what was committed before it lost its disk:
    // it refuses to vote, and with the leader gone the other voter cannot be elected.
    nodes.remove(&leader).unwrap().shutdown().await;
    let other = nodes.values().next().unwrap();
    let stuck = Instant::now();
    while stuck.elapsed() < Duration::from_secs(3) {
        assert!(
            other.leader().is_none_or(|l| l == leader) && back.leader().is_none_or(|l| l == leader),
            "a leader was elected with the vote of a node that never caught up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The old leader returns; the wiped node writes through it and catches up: from then
    // on (and once its old votes expired) it votes, so losing the leader again costs
    // only an election.
    let l = TcpListener::bind(voters[&leader].as_str()).await.unwrap();
    nodes.insert(
        leader,
        MetaNode::start(config(leader, dir.path(), &voters), l)
            .await
            .unwrap(),
    );
    back.write(stream("after", 1)).await.unwrap();
    wait_for("the wiped node to apply its own write", || {
        back.state().streams.contains_key("after")
    })
    .await;
    let new_leader = back.leader().unwrap();
    let survivor = *nodes.keys().find(|&&id| id != new_leader).unwrap();
    if new_leader != wiped {
        nodes.remove(&new_leader).unwrap().shutdown().await;
        let other = &nodes[&survivor];
        wait_for("a leader elected with the wiped node's vote", || {
            other.leader().is_some_and(|l| l != new_leader) && back.leader() == other.leader()
        })
        .await;
        other.write(stream("elected", 1)).await.unwrap();
    }
    back.shutdown().await;
    for (_, n) in nodes {
        n.shutdown().await;
    }
}
