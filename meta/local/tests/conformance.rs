//! The seams' conformance suites against the local implementations: the catalog and router
//! over the journal in each local storage class, and the RocksDB state store (plus what
//! only a store on disk promises: writes survive a reopen).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use strata_frontend::seams::{StateOp, StateStore, conformance};
use strata_journal::{Journal, JournalConfig, JournalOptions, StorageClass};
use strata_local::{KvStore, LocalStreams};

async fn journal_of(class: StorageClass, dir: &std::path::Path) -> Journal {
    let config = JournalConfig {
        class,
        ..JournalConfig::default()
    };
    let options = JournalOptions::new(dir.to_path_buf(), config, prometheus::Registry::new());
    Journal::open(options).expect("journal opens")
}

#[tokio::test]
async fn local_streams_conform_in_every_local_class() {
    for class in [
        StorageClass::Memory,
        StorageClass::Segment,
        StorageClass::Rocksdb,
    ] {
        let dir = tempfile::tempdir().unwrap();
        let streams = LocalStreams::new(journal_of(class, dir.path()).await, 7);
        conformance::catalog_and_router(&streams, &streams).await;
        streams.journal().close().await.unwrap();
    }
}

#[test]
fn rocksdb_state_conforms_and_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let kv = KvStore::open(dir.path(), false).unwrap();
        conformance::state_store(&kv);
        kv.space("kept")
            .unwrap()
            .write(&[StateOp::Put(b"k".to_vec(), b"v".to_vec())])
            .unwrap();
    }
    let kv = KvStore::open(dir.path(), true).unwrap();
    assert_eq!(
        kv.space("kept").unwrap().get(b"k").unwrap(),
        Some(b"v".to_vec())
    );
}

mod cluster {
    use std::collections::BTreeMap;
    use std::sync::Arc;
    use std::time::Duration;

    use strata_frontend::owned::OwnedStreams;
    use strata_frontend::seams::positions::Position;
    use strata_frontend::seams::{
        Catalog, PartitionRouter, PositionStore, StoreError, StreamSpec, conformance,
    };
    use strata_journal::StorageClass;
    use strata_local::ClusterStreams;
    use strata_meta::model::Command;
    use strata_meta::partitions::{Op, PartitionHost, PartitionRequest};
    use strata_meta::{MetaConfig, MetaNode};
    use tokio::net::TcpListener;

    use super::journal_of;

    async fn listener() -> (TcpListener, String) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        (l, addr)
    }

    async fn register(meta: &MetaNode) {
        let command = Command::AddNode {
            id: meta.id(),
            rpc: meta.advertised().to_owned(),
            listeners: BTreeMap::new(),
            at_ms: 0,
        };
        meta.write(command).await.unwrap();
        let at_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        let beat = Command::Heartbeat {
            id: meta.id(),
            at_ms,
        };
        meta.write(beat).await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn cluster_streams_conform_as_a_cluster_of_one() {
        let dir = tempfile::tempdir().unwrap();
        let (l, addr) = listener().await;
        let meta = MetaConfig::single(3, dir.path().join("meta"), addr);
        let meta = Arc::new(MetaNode::start(meta, l).await.unwrap());
        register(&meta).await;
        let journal = journal_of(StorageClass::Segment, &dir.path().join("journal")).await;
        let streams = ClusterStreams::new(journal.clone(), meta.clone(), OwnedStreams::default());
        conformance::catalog_and_router(&streams, &streams).await;
        conformance::positions(&streams, &streams).await;
        journal.close().await.unwrap();
        meta.shutdown().await;
    }

    /// Two nodes: a stream created through one is placed on both; each serves the
    /// partitions it leads from its journal and reaches the others through their leader
    /// (appends and reads cross the node-to-node RPC); a request carrying a stale epoch is
    /// refused with the leader and epoch; a deletion through one removes the other's copy.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn each_node_serves_what_it_leads_and_names_the_leader_of_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let (l1, a1) = listener().await;
        let (l2, a2) = listener().await;
        let voters = BTreeMap::from([(1, a1.clone()), (2, a2.clone())]);
        let mut nodes = Vec::new();
        for (id, l, addr) in [(1u64, l1, a1), (2, l2, a2)] {
            let mut c = MetaConfig::single(id, dir.path().join(format!("meta{id}")), addr);
            c.voters = voters.clone();
            c.secret = "two-node-test-secret-0123".into();
            let meta = Arc::new(MetaNode::start(c, l).await.unwrap());
            let journal =
                journal_of(StorageClass::Segment, &dir.path().join(format!("j{id}"))).await;
            let streams =
                ClusterStreams::new(journal.clone(), meta.clone(), OwnedStreams::default());
            meta.serve_partitions(Arc::new(streams.clone()));
            nodes.push((meta, journal, streams));
        }
        for (meta, _, _) in &nodes {
            register(meta).await;
        }
        let reconcilers: Vec<_> = nodes
            .iter()
            .enumerate()
            .map(|(i, (_, _, s))| {
                tokio::spawn(
                    s.clone()
                        .reconcile(dir.path().join(format!("meta{}", i + 1))),
                )
            })
            .collect();
        let (_, j1, s1) = &nodes[0];
        let (_, j2, s2) = &nodes[1];
        s2.create_stream(StreamSpec::new("shared", 4))
            .await
            .unwrap();
        // Both nodes see it at once (the creating node has applied it; the other within
        // the apply deadline).
        nodes[0]
            .0
            .applied(
                |s| s.streams.contains_key("shared"),
                Duration::from_secs(15),
            )
            .await
            .then_some(())
            .unwrap();
        let mut led = BTreeMap::<u64, u32>::new();
        for p in 0..4 {
            let placed = s1.placement("shared", p).unwrap();
            assert_eq!(Some(placed.clone()), s2.placement("shared", p));
            let leader = placed.leader.unwrap();
            *led.entry(leader).or_default() += 1;
            let (here, there) = if leader == 1 { (s1, s2) } else { (s2, s1) };
            let batch = || {
                let mut b = strata_batch::BatchBuilder::new();
                b.push(0, None, Some(b"v"), &[]);
                b.build().unwrap()
            };
            let local = here.partition("shared", p).await.unwrap();
            let remote = there.partition("shared", p).await.unwrap();
            assert_eq!(local.append(batch()).await.unwrap().base_offset, 0);
            // Through the other node: forwarded to the leader, stored there.
            assert_eq!(remote.append(batch()).await.unwrap().base_offset, 1);
            assert_eq!(remote.offsets().await.unwrap().end, 2);
            let read = remote.read(0, 1 << 20).await.unwrap();
            assert_eq!(
                read.iter().map(|b| b.base_offset()).collect::<Vec<_>>(),
                [0, 1]
            );
            assert_eq!(remote.wait_for(1).await.unwrap(), 2);
            let waiting = tokio::spawn({
                let remote = remote.clone();
                async move { remote.wait_for(2).await }
            });
            local.append(batch()).await.unwrap();
            assert_eq!(waiting.await.unwrap().unwrap(), 3);
            assert_eq!(remote.offset_for_timestamp(0).await.unwrap(), Some(0));
            // A caller that found an older epoch is told the current one.
            let stale = PartitionRequest {
                op: Op::Offsets as i32,
                stream: "shared".into(),
                partition: p,
                epoch: placed.epoch + 1,
                ..PartitionRequest::default()
            };
            let refused: StoreError =
                serde_json::from_str(&PartitionHost::call(here, stale).await.error).unwrap();
            assert!(
                matches!(refused, StoreError::NotLeader { leader: Some(l), epoch, .. } if l == leader && epoch == placed.epoch),
                "{refused:?}"
            );
        }
        assert_eq!(led, BTreeMap::from([(1, 2), (2, 2)]));
        // Offsets committed through one node are served by the other (a group's
        // coordinator that moved), and forgotten through it.
        let noted = Position {
            offset: 3,
            leader_epoch: 0,
            metadata: Some("m".into()),
        };
        PositionStore::commit(s2, "moving", vec![("shared".into(), 3, noted.clone())])
            .await
            .unwrap();
        assert_eq!(
            PositionStore::get(s2, "moving", "shared", 3),
            Some(noted.clone())
        );
        nodes[0]
            .0
            .applied(
                |s| s.committed("moving", "shared", 3).is_some(),
                Duration::from_secs(15),
            )
            .await
            .then_some(())
            .unwrap();
        assert_eq!(
            PositionStore::scan(s1, "moving"),
            vec![("shared".to_string(), 3, noted)]
        );
        PositionStore::forget(s1, "moving").await.unwrap();
        assert!(PositionStore::scan(s1, "moving").is_empty());
        assert!(j1.stream("shared").is_ok() && j2.stream("shared").is_ok());
        s1.delete_stream("shared").await.unwrap();
        let gone = async {
            while j2.stream("shared").is_ok() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(30), gone)
            .await
            .expect("the other node's copy is deleted");
        for r in reconcilers {
            r.abort();
        }
        for (meta, journal, _) in &nodes {
            journal.close().await.unwrap();
            meta.shutdown().await;
        }
    }

    /// A node that lost its journal directory (its disk) reads again what it had
    /// uploaded: each partition's objects are recorded in the meta service, and the
    /// partition opened anew starts where they end.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn uploads_recorded_in_the_meta_service_outlive_the_journal_directory() {
        use strata_journal::{
            CacheConfig, JournalConfig, JournalOptions, ObjectStoreConfig, OffloadSettings,
        };
        use strata_local::MetaManifests;
        use strata_meta::model::StreamMeta;

        let dir = tempfile::tempdir().unwrap();
        let (l, addr) = listener().await;
        let meta = MetaConfig::single(1, dir.path().join("meta"), addr);
        let meta = Arc::new(MetaNode::start(meta, l).await.unwrap());
        register(&meta).await;
        let stream = StreamMeta {
            name: "kept".into(),
            partitions: 1,
            storage_class: "segment".into(),
            replication_factor: 1,
            retention_bytes: None,
            retention_ms: None,
            min_in_sync: None,
        };
        meta.write(Command::CreateStream(stream)).await.unwrap();
        let open = || async {
            let config = JournalConfig {
                object_store: Some(ObjectStoreConfig::Fs {
                    root: dir.path().join("objects"),
                }),
                cache: CacheConfig {
                    memory_bytes: 64 * 1024,
                    disk_bytes: 16 << 20,
                    block_bytes: 4096,
                    read_ahead_blocks: 4,
                    dir: None,
                },
                ..JournalConfig::default()
            };
            let mut options = JournalOptions::new(
                dir.path().join("journal"),
                config,
                prometheus::Registry::new(),
            )
            .with_object_store()
            .await
            .unwrap();
            options.manifests = Some(Arc::new(MetaManifests::new(meta.clone())));
            let journal = strata_journal::Journal::open(options).unwrap();
            let mut c = journal.stream_config("kept", 1);
            c.segment.segment_bytes = 4096;
            c.retention.max_age_ms = None;
            c.offload = Some(OffloadSettings {
                local_retention_ms: 0,
                local_retention_bytes: Some(0),
            });
            let s = journal.create_stream(c).await.unwrap();
            (journal, s)
        };
        let (journal, s) = open().await;
        for i in 0..200 {
            let mut b = strata_batch::BatchBuilder::new();
            for r in 0..3 {
                b.push(i, None, Some(format!("r{i}-{r}").as_bytes()), &[]);
            }
            s.append(0, b.build().unwrap()).await.unwrap();
        }
        let recorded = || meta.read(|m| m.manifests.get("kept").and_then(|p| p.get(&0)).cloned());
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        while recorded().is_none_or(|e| e.len() < 5) {
            assert!(
                std::time::Instant::now() < deadline,
                "uploads recorded in the meta service"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        drop(s);
        journal.close().await.unwrap();
        let entries = recorded().unwrap();
        let uploaded_end = entries.last().unwrap().last_offset + 1;

        // The disk is lost: the journal directory goes, objects and meta service stay.
        std::fs::remove_dir_all(dir.path().join("journal")).unwrap();
        let (journal, s) = open().await;
        let p = s.partition(0).unwrap().clone();
        assert_eq!(p.offsets().end, uploaded_end);
        let mut read = Vec::new();
        let mut from = 0;
        while from < uploaded_end {
            let batches = p.read(from, 1 << 20).await.unwrap();
            assert!(!batches.is_empty(), "nothing read at {from}");
            for b in &batches {
                for r in b.records().unwrap() {
                    let r = r.unwrap();
                    read.push((r.offset, r.value.unwrap()));
                }
                from = b.last_offset() + 1;
            }
        }
        assert_eq!(read.len() as u64, uploaded_end);
        for (i, (offset, value)) in read.iter().enumerate() {
            assert_eq!(*offset, i as u64);
            let want = format!("r{}-{}", i / 3, i % 3);
            assert_eq!(value.as_ref(), want.as_bytes(), "offset {offset}");
        }
        // Appends go on after the uploaded records.
        let mut b = strata_batch::BatchBuilder::new();
        b.push(0, None, Some(b"after"), &[]);
        assert_eq!(
            s.append(0, b.build().unwrap()).await.unwrap().base_offset,
            uploaded_end
        );
        drop((s, p));
        journal.close().await.unwrap();
        meta.shutdown().await;
    }
}
