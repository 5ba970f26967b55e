//! What forwarding costs: appends of 1 KiB batches to one partition, sequentially (one in
//! flight, as a client waiting for each acknowledgement), through the node that leads it
//! and through another node that forwards each over node-to-node RPC (gRPC on loopback).
//! Two in-process nodes, each with its own meta store, journal (segment class, the
//! journal's default fsync) and listener. Prints p50/p99/mean of both and what forwarding
//! adds.
//!
//!   cargo bench -p strata-local --bench forward -- [appends]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use strata_frontend::owned::OwnedStreams;
use strata_frontend::seams::{Catalog, Partition, PartitionRouter, StreamSpec};
use strata_journal::{Journal, JournalConfig, JournalOptions};
use strata_local::ClusterStreams;
use strata_meta::model::Command;
use strata_meta::{MetaConfig, MetaNode};
use tokio::net::TcpListener;

fn batch() -> strata_batch::PendingBatch {
    let mut b = strata_batch::BatchBuilder::new();
    b.push(0, Some(b"key"), Some(&[7u8; 1024]), &[]);
    b.build().unwrap()
}

async fn timed(p: &Arc<dyn Partition>, n: usize) -> Vec<Duration> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        p.append(batch()).await.unwrap();
        out.push(started.elapsed());
    }
    out.sort();
    out
}

fn summary(name: &str, d: &[Duration]) -> (f64, f64) {
    let us = |x: Duration| x.as_secs_f64() * 1e6;
    let p50 = us(d[d.len() / 2]);
    let p99 = us(d[d.len() * 99 / 100]);
    let mean = d.iter().map(|x| us(*x)).sum::<f64>() / d.len() as f64;
    println!("{name:<28} p50 {p50:>8.1} us   p99 {p99:>8.1} us   mean {mean:>8.1} us");
    (p50, p99)
}

fn main() {
    let n: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(5_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let dir = tempfile::tempdir().unwrap();
        let mut listeners = Vec::new();
        for _ in 0..2 {
            let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let a = l.local_addr().unwrap().to_string();
            listeners.push((l, a));
        }
        let voters: BTreeMap<u64, String> = listeners
            .iter()
            .enumerate()
            .map(|(i, (_, a))| (i as u64 + 1, a.clone()))
            .collect();
        let mut nodes = Vec::new();
        for (i, (l, a)) in listeners.into_iter().enumerate() {
            let id = i as u64 + 1;
            let mut c = MetaConfig::single(id, dir.path().join(format!("meta{id}")), a);
            c.voters = voters.clone();
            c.secret = "forward-bench-secret-0123".into();
            let meta = Arc::new(MetaNode::start(c, l).await.unwrap());
            let options = JournalOptions::new(
                dir.path().join(format!("j{id}")),
                JournalConfig::default(),
                prometheus::Registry::new(),
            );
            let journal = Journal::open(options).unwrap();
            let streams =
                ClusterStreams::new(journal.clone(), meta.clone(), OwnedStreams::default());
            meta.serve_partitions(Arc::new(streams.clone()));
            nodes.push((meta, journal, streams));
        }
        for (meta, _, _) in &nodes {
            let listeners = BTreeMap::new();
            let rpc = meta.advertised().to_owned();
            meta.write(Command::AddNode {
                id: meta.id(),
                rpc,
                listeners,
                at_ms: 0,
            })
            .await
            .unwrap();
            let at_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis() as i64;
            meta.write(Command::Heartbeat {
                id: meta.id(),
                at_ms,
            })
            .await
            .unwrap();
        }
        let s1 = &nodes[0].2;
        s1.create_stream(StreamSpec::new("forward-bench", 2))
            .await
            .unwrap();
        for (meta, _, _) in &nodes {
            meta.applied(
                |s| s.streams.contains_key("forward-bench"),
                Duration::from_secs(15),
            )
            .await;
        }
        let p = (0..2)
            .find(|&p| s1.placement("forward-bench", p).unwrap().leader == Some(1))
            .unwrap();
        let local = nodes[0].2.partition("forward-bench", p).await.unwrap();
        let forwarded = nodes[1].2.partition("forward-bench", p).await.unwrap();
        println!(
            "{n} sequential appends of one 1 KiB record each, per path (after 500 to warm up)"
        );
        timed(&local, 500).await;
        timed(&forwarded, 500).await;
        let (l50, l99) = summary("on the leader", &timed(&local, n).await);
        let (f50, f99) = summary("forwarded by another node", &timed(&forwarded, n).await);
        println!(
            "forwarding adds            p50 {:>8.1} us   p99 {:>8.1} us",
            f50 - l50,
            f99 - l99
        );
        for (meta, journal, _) in &nodes {
            journal.close().await.unwrap();
            meta.shutdown().await;
        }
    });
}
