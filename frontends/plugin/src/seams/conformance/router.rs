//! The catalog and router suite.

use std::sync::Arc;
use std::time::Duration;

use strata_batch::{BatchBuilder, PendingBatch};

use crate::seams::catalog::{Catalog, StreamSpec, ensure_stream};
use crate::seams::error::StoreError;
use crate::seams::router::{Partition, PartitionRouter};

/// A generous bound for waits that should complete at once.
const DEADLINE: Duration = Duration::from_secs(30);

fn batch(records: &[(&str, i64)]) -> PendingBatch {
    let mut b = BatchBuilder::new();
    for (value, ts) in records {
        b.push(
            *ts,
            Some(b"k"),
            Some(value.as_bytes()),
            &[("h", Some(b"v"))],
        );
    }
    b.build().expect("a batch of records builds")
}

async fn values(p: &dyn Partition, from: u64) -> Vec<(u64, String)> {
    let mut out = Vec::new();
    for b in p.read(from, usize::MAX).await.expect("read") {
        for r in b.records().expect("records") {
            let r = r.expect("record");
            let v = String::from_utf8(r.value.expect("value").to_vec()).expect("utf-8");
            assert_eq!(r.headers[0].key, "h");
            out.push((r.offset, v));
        }
    }
    out
}

/// Runs every check against a catalog and the router over the same streams. Uses stream
/// names starting with `conformance-`; the implementation must start without them.
pub async fn catalog_and_router(catalog: &dyn Catalog, router: &dyn PartitionRouter) {
    streams_are_created_once(catalog, router).await;
    appends_and_reads_follow_the_contract(catalog, router).await;
    waiters_wake_on_append(catalog, router).await;
    partitions_grow_and_streams_go(catalog, router).await;
}

async fn streams_are_created_once(catalog: &dyn Catalog, router: &dyn PartitionRouter) {
    let created = catalog
        .create_stream(StreamSpec::new("conformance-a", 3))
        .await
        .expect("create");
    assert_eq!(
        (created.name.as_str(), created.partitions),
        ("conformance-a", 3)
    );
    assert_eq!(catalog.stream("conformance-a"), Some(created.clone()));
    assert!(catalog.streams().iter().any(|s| s.name == "conformance-a"));
    assert!(matches!(
        catalog
            .create_stream(StreamSpec::new("conformance-a", 1))
            .await,
        Err(StoreError::StreamExists(_))
    ));
    for bad in ["", ".hidden", "a/b", "sp ace"] {
        assert!(
            matches!(
                catalog.create_stream(StreamSpec::new(bad, 1)).await,
                Err(StoreError::Invalid(_))
            ),
            "name {bad:?} must be refused"
        );
    }
    let zero = StreamSpec {
        name: "conformance-zero".into(),
        partitions: 0,
        storage_class: None,
        replication_factor: None,
        min_in_sync: None,
        keep_all: false,
    };
    assert!(matches!(
        catalog.create_stream(zero).await,
        Err(StoreError::Invalid(_))
    ));
    assert!(catalog.stream("conformance-zero").is_none());

    let again = ensure_stream(catalog, StreamSpec::new("conformance-a", 9)).await;
    assert_eq!(again.expect("ensure existing").partitions, 3);
    let (x, y) = tokio::join!(
        ensure_stream(catalog, StreamSpec::new("conformance-race", 2)),
        ensure_stream(catalog, StreamSpec::new("conformance-race", 2)),
    );
    assert_eq!(x.expect("first racer"), y.expect("second racer"));

    for p in 0..3 {
        let placement = catalog.placement("conformance-a", p).expect("placement");
        let leader = placement.leader.expect("a leader");
        assert!(placement.replicas.contains(&leader));
    }
    assert!(catalog.placement("conformance-a", 3).is_none());
    assert!(catalog.placement("conformance-none", 0).is_none());
    assert!(matches!(
        router.partition("conformance-none", 0).await,
        Err(StoreError::UnknownStream(_))
    ));
    assert!(matches!(
        router.partition("conformance-a", 3).await,
        Err(StoreError::UnknownPartition { partition: 3, .. })
    ));
}

async fn appends_and_reads_follow_the_contract(
    catalog: &dyn Catalog,
    router: &dyn PartitionRouter,
) {
    catalog
        .create_stream(StreamSpec::new("conformance-log", 2))
        .await
        .expect("create");
    let p = router
        .partition("conformance-log", 1)
        .await
        .expect("partition");
    assert_eq!((p.stream(), p.index()), ("conformance-log", 1));
    let o = p.offsets().await.expect("offsets");
    assert_eq!((o.log_start, o.end), (0, 0));
    assert!(p.read(0, 1024).await.expect("empty read").is_empty());

    let a = p
        .append(batch(&[("a", 1000), ("b", 2000)]))
        .await
        .expect("append");
    assert_eq!((a.base_offset, a.last_offset), (0, 1));
    let b = p.append(batch(&[("c", 3000)])).await.expect("append");
    assert_eq!((b.base_offset, b.last_offset), (2, 2));
    let c = p
        .append(batch(&[("d", 4000), ("e", 5000)]))
        .await
        .expect("append");
    assert_eq!((c.base_offset, c.last_offset), (3, 4));
    assert_eq!(p.offsets().await.expect("offsets").end, 5);

    let all: Vec<(u64, String)> = ["a", "b", "c", "d", "e"]
        .iter()
        .enumerate()
        .map(|(i, v)| (i as u64, v.to_string()))
        .collect();
    assert_eq!(values(p.as_ref(), 0).await, all);
    // A read inside a batch starts with the whole batch holding the offset.
    assert_eq!(values(p.as_ref(), 4).await, all[3..].to_vec());
    // At least one batch however small the budget; none at the end; an error beyond it.
    assert_eq!(p.read(0, 1).await.expect("small read").len(), 1);
    assert!(p.read(5, 1024).await.expect("read at end").is_empty());
    assert!(matches!(
        p.read(6, 1024).await,
        Err(StoreError::OffsetOutOfRange { offset: 6, .. })
    ));

    assert_eq!(p.offset_for_timestamp(0).await.expect("ts"), Some(0));
    assert_eq!(p.offset_for_timestamp(2500).await.expect("ts"), Some(2));
    assert_eq!(p.offset_for_timestamp(5000).await.expect("ts"), Some(4));
    assert_eq!(p.offset_for_timestamp(5001).await.expect("ts"), None);

    // Partitions are independent.
    let other = router
        .partition("conformance-log", 0)
        .await
        .expect("partition");
    assert_eq!(other.offsets().await.expect("offsets").end, 0);
    // A second handle sees the same partition.
    let again = router
        .partition("conformance-log", 1)
        .await
        .expect("partition");
    assert_eq!(values(again.as_ref(), 0).await, all);
}

async fn waiters_wake_on_append(catalog: &dyn Catalog, router: &dyn PartitionRouter) {
    catalog
        .create_stream(StreamSpec::new("conformance-wait", 1))
        .await
        .expect("create");
    let p: Arc<dyn Partition> = router.partition("conformance-wait", 0).await.expect("p");
    p.append(batch(&[("x", 1)])).await.expect("append");
    let now = tokio::time::timeout(DEADLINE, p.wait_for(0)).await;
    assert_eq!(now.expect("data already there").expect("wait"), 1);

    let waiter = {
        let p = p.clone();
        tokio::spawn(async move { p.wait_for(1).await })
    };
    tokio::task::yield_now().await;
    assert!(!waiter.is_finished(), "nothing at offset 1 yet");
    p.append(batch(&[("y", 2), ("z", 3)]))
        .await
        .expect("append");
    let woken = tokio::time::timeout(DEADLINE, waiter).await;
    assert_eq!(woken.expect("woken").expect("task").expect("wait"), 3);
}

async fn partitions_grow_and_streams_go(catalog: &dyn Catalog, router: &dyn PartitionRouter) {
    catalog
        .create_stream(StreamSpec::new("conformance-grow", 1))
        .await
        .expect("create");
    let grown = catalog
        .add_partitions("conformance-grow", 4)
        .await
        .expect("grow");
    assert_eq!(grown.partitions, 4);
    assert_eq!(
        catalog
            .stream("conformance-grow")
            .expect("stream")
            .partitions,
        4
    );
    let p3 = router
        .partition("conformance-grow", 3)
        .await
        .expect("new partition");
    p3.append(batch(&[("n", 1)])).await.expect("append");
    assert!(matches!(
        catalog.add_partitions("conformance-grow", 2).await,
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        catalog.add_partitions("conformance-none", 2).await,
        Err(StoreError::UnknownStream(_))
    ));

    let p0 = router
        .partition("conformance-grow", 0)
        .await
        .expect("partition");
    catalog
        .delete_stream("conformance-grow")
        .await
        .expect("delete");
    assert!(catalog.stream("conformance-grow").is_none());
    assert!(
        !catalog
            .streams()
            .iter()
            .any(|s| s.name == "conformance-grow")
    );
    assert!(matches!(
        router.partition("conformance-grow", 0).await,
        Err(StoreError::UnknownStream(_))
    ));
    let stale = p0.append(batch(&[("late", 1)])).await;
    assert!(
        matches!(
            stale,
            Err(StoreError::Closed | StoreError::UnknownStream(_))
        ),
        "a handle on a deleted stream must refuse appends, got {stale:?}"
    );
    assert!(matches!(
        catalog.delete_stream("conformance-grow").await,
        Err(StoreError::UnknownStream(_))
    ));
    // The name can be used again, for a new, empty stream.
    catalog
        .create_stream(StreamSpec::new("conformance-grow", 1))
        .await
        .expect("create again");
    let fresh = router
        .partition("conformance-grow", 0)
        .await
        .expect("partition");
    assert_eq!(fresh.offsets().await.expect("offsets").end, 0);
}
