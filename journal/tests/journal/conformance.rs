//! The conformance suite: one set of behaviours, run against every storage class.

use std::time::Duration;

use strata_journal::{FsyncPolicy, JournalError, ObjectAck, StorageClass};

use crate::common::{Harness, Tiering, Variant, batch, read_all, records};

macro_rules! suite {
    ($($class:ident => $value:expr),* $(,)?) => {$(
        mod $class {
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn append_and_read() { append_and_read_case($value).await }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn reads_cross_segment_boundaries() { reads_cross_segments_case($value).await }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn size_and_age_retention() { retention_case($value).await }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn delete_before() { delete_before_case($value).await }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn reopen() { reopen_case($value).await }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn wait_for_data() { wait_case($value).await }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn offset_for_timestamp() { timestamp_case($value).await }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn concurrent_appends_under_fsync_always() { concurrent_case($value).await }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn streams_are_listed_and_deleted() { streams_case($value).await }
        }
    )*};
}

suite! {
    memory => Variant::from(StorageClass::Memory),
    segment => Variant::from(StorageClass::Segment),
    rocksdb => Variant::from(StorageClass::Rocksdb),
    segment_offload => Variant { class: StorageClass::Segment, tiering: Tiering::Offload },
    object => Variant { class: StorageClass::Object, tiering: Tiering::Object(ObjectAck::Object) },
    object_ack_local => Variant { class: StorageClass::Object, tiering: Tiering::Object(ObjectAck::Local) },
}

async fn append_and_read_case(v: Variant) {
    let h = Harness::new(v);
    let j = h.open();
    let s = j.create_stream(h.stream(&j, "s", 2)).await.unwrap();
    let mut expected = 0;
    for i in 0..50u32 {
        let n = i % 5 + 1;
        let a = s.append(1, batch(&format!("b{i}"), n, 1000)).await.unwrap();
        assert_eq!(a.base_offset, expected);
        assert_eq!(a.last_offset, expected + u64::from(n) - 1);
        expected += u64::from(n);
    }
    let p = s.partition(1).unwrap();
    assert_eq!(p.offsets().end, expected);
    assert_eq!(
        s.partition(0).unwrap().offsets().end,
        0,
        "partitions are independent"
    );
    let all = read_all(p, 0).await;
    assert_eq!(all.len() as u64, expected);
    for (i, r) in all.iter().enumerate() {
        assert_eq!(r.offset, i as u64);
        assert_eq!(r.headers[0].key, "h");
    }
    assert_eq!(all[0].value.as_deref(), Some(&b"b0-0"[..]));
    // A read from inside a batch returns the batch holding that offset.
    let batches = p.read(2, 1).await.unwrap();
    assert_eq!(
        batches.len(),
        1,
        "at least one batch even when it exceeds max_bytes"
    );
    assert!(batches[0].base_offset() <= 2 && batches[0].last_offset() >= 2);
    assert!(p.read(expected, 1000).await.unwrap().is_empty());
    assert!(matches!(
        p.read(expected + 1, 1000).await,
        Err(JournalError::OffsetOutOfRange { .. })
    ));
    assert!(matches!(
        s.partition(2),
        Err(JournalError::UnknownPartition { .. })
    ));
    j.close().await.unwrap();
}

async fn reads_cross_segments_case(v: Variant) {
    let h = Harness::new(v);
    let j = h.open();
    let s = j.create_stream(h.stream(&j, "s", 1)).await.unwrap();
    for i in 0..200 {
        s.append(0, batch(&format!("r{i}"), 3, 5)).await.unwrap();
    }
    let p = s.partition(0).unwrap();
    if v.class == StorageClass::Segment {
        assert!(
            p.describe().segments.len() > 5,
            "small segments must have rolled"
        );
    }
    // One large read spans every segment.
    let batches = p.read(0, 10 << 20).await.unwrap();
    assert_eq!(batches.len(), 200);
    let recs = records(&batches);
    assert_eq!(recs.len(), 600);
    assert!(recs.iter().enumerate().all(|(i, r)| r.offset == i as u64));
    // Bounded reads walk across boundaries without gaps.
    assert_eq!(read_all(p, 7).await.len(), 593);
    j.close().await.unwrap();
}

async fn retention_case(v: Variant) {
    let h = Harness::new(v);
    let j = h.open();
    let mut c = h.stream(&j, "sized", 1);
    c.retention.max_bytes = Some(8192);
    let sized = j.create_stream(c).await.unwrap();
    for i in 0..300 {
        sized
            .append(0, batch(&format!("x{i}"), 2, 1))
            .await
            .unwrap();
    }
    let p = sized.partition(0).unwrap();
    let before = p.describe().size;
    let removed = p.enforce_retention(strata_journal::now_ms()).await.unwrap();
    let info = p.describe();
    assert!(removed.units > 0 && removed.bytes > 0, "{removed:?}");
    assert!(info.size >= 8192, "kept at least the bound: {}", info.size);
    assert!(info.size < before);
    assert!(info.offsets.log_start > 0);
    let start = info.offsets.log_start;
    assert!(matches!(
        p.read(start - 1, 100).await,
        Err(JournalError::OffsetOutOfRange { .. })
    ));
    assert_eq!(read_all(p, start).await.len() as u64, 600 - start);

    let mut c = h.stream(&j, "aged", 1);
    c.retention.max_age_ms = Some(60_000);
    let aged = j.create_stream(c).await.unwrap();
    let now = strata_journal::now_ms();
    for i in 0..100 {
        aged.append(0, batch(&format!("old{i}"), 2, now - 3_600_000))
            .await
            .unwrap();
    }
    for i in 0..10 {
        aged.append(0, batch(&format!("new{i}"), 2, now))
            .await
            .unwrap();
    }
    let p = aged.partition(0).unwrap();
    p.enforce_retention(now).await.unwrap();
    // Age retention may need a roll first, then removes what rolled out.
    p.enforce_retention(now).await.unwrap();
    let start = p.offsets().log_start;
    assert!(start >= 100, "old data removed, log start {start}");
    assert!(start <= 200, "young data kept, log start {start}");
    let kept = read_all(p, start).await;
    assert!(kept.iter().all(|r| r.offset >= start));
    assert!(kept.iter().rev().take(20).all(|r| r.timestamp >= now));
    j.close().await.unwrap();
}

async fn delete_before_case(v: Variant) {
    let h = Harness::new(v);
    let j = h.open();
    let s = j.create_stream(h.stream(&j, "s", 1)).await.unwrap();
    for i in 0..100 {
        s.append(0, batch(&format!("d{i}"), 4, 1)).await.unwrap();
    }
    let p = s.partition(0).unwrap();
    assert_eq!(p.delete_before(201).await.unwrap(), 201);
    assert_eq!(p.offsets().log_start, 201);
    assert!(matches!(
        p.read(200, 100).await,
        Err(JournalError::OffsetOutOfRange { .. })
    ));
    let rest = read_all(p, 201).await;
    assert_eq!(rest.first().unwrap().offset, 201);
    assert_eq!(rest.len(), 199);
    assert_eq!(
        p.delete_before(5).await.unwrap(),
        201,
        "log start never moves back"
    );
    assert_eq!(
        p.delete_before(10_000).await.unwrap(),
        400,
        "clamped to the end"
    );
    assert!(p.read(400, 100).await.unwrap().is_empty());
    let a = s.append(0, batch("after", 1, 1)).await.unwrap();
    assert_eq!(a.base_offset, 400);
    if h.persistent() {
        drop(s);
        j.close().await.unwrap();
        let j = h.open();
        let p = j.stream("s").unwrap().partition(0).unwrap().clone();
        assert_eq!(p.offsets().log_start, 400);
        assert_eq!(read_all(&p, 400).await.len(), 1);
        j.close().await.unwrap();
    }
}

async fn reopen_case(v: Variant) {
    let h = Harness::new(v);
    let j = h.open();
    let mut c = h.stream(&j, "s", 3);
    c.fsync = FsyncPolicy::Never;
    j.create_stream(c.clone()).await.unwrap();
    let s = j.stream("s").unwrap();
    for i in 0..60 {
        s.append(i % 3, batch(&format!("v{i}"), 2, 7))
            .await
            .unwrap();
    }
    drop(s);
    j.close().await.unwrap();
    drop(j);
    let j = h.open();
    let s = j.stream("s").unwrap();
    assert_eq!(s.config(), &c, "the definition persists");
    for p in 0..3 {
        let log = s.partition(p).unwrap();
        if h.persistent() {
            assert_eq!(log.offsets().end, 40);
            let recs = read_all(log, 0).await;
            assert_eq!(recs.len(), 40);
            assert_eq!(
                recs[39].value.as_deref().unwrap(),
                format!("v{}-1", 57 + p).as_bytes()
            );
        } else {
            assert_eq!(log.offsets().end, 0, "memory partitions start empty");
        }
    }
    let next = s.append(0, batch("more", 1, 1)).await.unwrap();
    assert_eq!(next.base_offset, if h.persistent() { 40 } else { 0 });
    j.close().await.unwrap();
}

async fn wait_case(v: Variant) {
    let h = Harness::new(v);
    let j = h.open();
    let s = j.create_stream(h.stream(&j, "s", 1)).await.unwrap();
    let p = s.partition(0).unwrap().clone();
    let waiter = {
        let p = p.clone();
        tokio::spawn(async move { p.wait_for(0).await })
    };
    tokio::task::yield_now().await;
    assert!(!waiter.is_finished());
    s.append(0, batch("w", 3, 1)).await.unwrap();
    let end = tokio::time::timeout(Duration::from_secs(30), waiter)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(end, 3);
    // Already satisfied waits return at once; close wakes the rest with Closed.
    assert_eq!(p.wait_for(2).await.unwrap(), 3);
    let pending = {
        let p = p.clone();
        tokio::spawn(async move { p.wait_for(3).await })
    };
    tokio::task::yield_now().await;
    j.close().await.unwrap();
    let r = tokio::time::timeout(Duration::from_secs(30), pending)
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(r, Err(JournalError::Closed)));
}

async fn timestamp_case(v: Variant) {
    let h = Harness::new(v);
    let j = h.open();
    let s = j.create_stream(h.stream(&j, "s", 1)).await.unwrap();
    // Batch i holds timestamps 1000*i .. 1000*i+4, offsets 5i .. 5i+4.
    for i in 0..100i64 {
        s.append(0, batch("t", 5, 1000 * i)).await.unwrap();
    }
    let p = s.partition(0).unwrap();
    assert_eq!(p.offset_for_timestamp(i64::MIN).await.unwrap(), Some(0));
    assert_eq!(p.offset_for_timestamp(0).await.unwrap(), Some(0));
    assert_eq!(p.offset_for_timestamp(3).await.unwrap(), Some(3));
    assert_eq!(p.offset_for_timestamp(5).await.unwrap(), Some(5));
    assert_eq!(p.offset_for_timestamp(42_002).await.unwrap(), Some(212));
    assert_eq!(p.offset_for_timestamp(99_004).await.unwrap(), Some(499));
    assert_eq!(p.offset_for_timestamp(99_005).await.unwrap(), None);
    j.close().await.unwrap();
}

async fn concurrent_case(v: Variant) {
    let h = Harness::new(v);
    let j = h.open();
    let mut c = h.stream(&j, "s", 1);
    c.fsync = FsyncPolicy::Always;
    c.segment.segment_bytes = 64 * 1024;
    let s = j.create_stream(c).await.unwrap();
    let mut tasks = Vec::new();
    for t in 0..16 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            for i in 0..25 {
                let a = s
                    .append(0, batch(&format!("t{t}-{i}"), 2, 1))
                    .await
                    .unwrap();
                got.push(a.base_offset);
            }
            got
        }));
    }
    let mut bases = Vec::new();
    for t in tasks {
        bases.extend(t.await.unwrap());
    }
    bases.sort_unstable();
    assert_eq!(bases, (0..800).step_by(2).collect::<Vec<u64>>());
    let p = s.partition(0).unwrap();
    assert_eq!(p.offsets().end, 800);
    assert_eq!(read_all(p, 0).await.len(), 800);
    j.close().await.unwrap();
}

async fn streams_case(v: Variant) {
    let h = Harness::new(v);
    let j = h.open();
    for name in ["b", "a", "c"] {
        j.create_stream(h.stream(&j, name, 1)).await.unwrap();
    }
    assert!(matches!(
        j.create_stream(h.stream(&j, "a", 1)).await,
        Err(JournalError::StreamExists(_))
    ));
    let s = j.stream("b").unwrap();
    s.append(0, batch("gone", 2, 1)).await.unwrap();
    let names: Vec<_> = j.list_streams().into_iter().map(|c| c.name).collect();
    assert_eq!(names, ["a", "b", "c"]);
    // Partitions can be added, never removed; the new count persists.
    let grown = j.add_partitions("a", 3).await.unwrap();
    assert_eq!(grown.partitions().len(), 3);
    grown.append(2, batch("p2", 1, 1)).await.unwrap();
    assert!(j.add_partitions("a", 2).await.is_err());
    j.delete_stream("b").await.unwrap();
    assert!(matches!(j.stream("b"), Err(JournalError::UnknownStream(_))));
    // A stream created again under the same name starts empty.
    let again = j.create_stream(h.stream(&j, "b", 1)).await.unwrap();
    assert_eq!(again.partition(0).unwrap().offsets().end, 0);
    drop((s, again, grown));
    j.close().await.unwrap();
    let j = h.open();
    assert_eq!(j.list_streams().len(), 3);
    assert_eq!(j.stream("a").unwrap().partitions().len(), 3);
    if h.persistent() {
        assert_eq!(
            j.stream("a").unwrap().partition(2).unwrap().offsets().end,
            1
        );
    }
    assert_eq!(
        j.stream("b").unwrap().partition(0).unwrap().offsets().end,
        0
    );
    j.close().await.unwrap();
}
