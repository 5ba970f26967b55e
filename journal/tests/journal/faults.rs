//! Injected write and fsync failures and a full disk: failed appends are not acknowledged,
//! acknowledged ones survive, and appends succeed again once the fault is gone.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use strata_journal::fs::{Faults, FaultyFs, StdFs};
use strata_journal::{FsyncPolicy, JournalError, StorageClass};

use crate::common::{Harness, batch, read_all};

fn faulty() -> (Harness, Arc<Faults>) {
    let faults = Faults::new();
    let fs = Arc::new(FaultyFs::new(Arc::new(StdFs), faults.clone()));
    (Harness::with_fs(StorageClass::Segment, fs), faults)
}

async fn run(policy: FsyncPolicy, inject: impl Fn(&Faults), expect_full: bool) {
    let (h, faults) = faulty();
    let j = h.open();
    let mut c = h.stream(&j, "s", 1);
    c.fsync = policy;
    let s = j.create_stream(c).await.unwrap();
    let mut acked = Vec::new();
    for i in 0..40 {
        let a = s.append(0, batch(&format!("ok{i}"), 2, 1)).await.unwrap();
        acked.push(a);
    }
    inject(&faults);
    let mut failures = 0;
    for i in 0..10 {
        match s.append(0, batch(&format!("fail{i}"), 2, 1)).await {
            Ok(a) => acked.push(a),
            Err(e) => {
                failures += 1;
                assert!(e.is_retriable(), "{e}");
                if expect_full {
                    assert!(e.to_string().contains("full"), "{e}");
                }
            }
        }
    }
    assert!(failures > 0, "the fault must make appends fail");
    let p = s.partition(0).unwrap();
    // Nothing of a failed append is visible: offsets stay dense over acknowledged data.
    assert_eq!(p.offsets().end, acked.last().unwrap().last_offset + 1);
    faults.heal();
    for i in 0..10 {
        acked.push(
            s.append(0, batch(&format!("healed{i}"), 2, 1))
                .await
                .unwrap(),
        );
    }
    let end = acked.last().unwrap().last_offset + 1;
    for w in acked.windows(2) {
        assert_eq!(w[1].base_offset, w[0].last_offset + 1, "offsets are dense");
    }
    let before = read_all(p, 0).await;
    assert_eq!(before.len() as u64, end);
    assert!(before.iter().all(|r| {
        !r.value.as_deref().unwrap().starts_with(b"fail")
            || acked
                .iter()
                .any(|a| a.base_offset <= r.offset && r.offset <= a.last_offset)
    }));
    j.close().await.unwrap();
    drop(j);
    let j = h.open();
    let p = j.stream("s").unwrap().partition(0).unwrap().clone();
    assert_eq!(
        p.offsets().end,
        end,
        "every acknowledged record survives reopen"
    );
    assert_eq!(read_all(&p, 0).await, before);
    j.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_failures_are_reported_and_recovered() {
    run(
        FsyncPolicy::Always,
        |f| f.fail_writes.store(true, Ordering::SeqCst),
        false,
    )
    .await;
    run(
        FsyncPolicy::Never,
        |f| f.fail_writes.store(true, Ordering::SeqCst),
        false,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fsync_failures_roll_back_unacknowledged_appends() {
    run(
        FsyncPolicy::Always,
        |f| f.fail_syncs.store(true, Ordering::SeqCst),
        false,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_fails_appends_until_space_returns() {
    // Room for a few batches, then a partial write and StorageFull.
    run(
        FsyncPolicy::Always,
        |f| f.space_left.store(700, Ordering::SeqCst),
        true,
    )
    .await;
    run(
        FsyncPolicy::Interval(5),
        |f| f.space_left.store(700, Ordering::SeqCst),
        true,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_fsync_is_never_seen_by_readers() {
    let (h, faults) = faulty();
    let j = h.open();
    let mut c = h.stream(&j, "s", 1);
    c.fsync = FsyncPolicy::Always;
    let s = j.create_stream(c).await.unwrap();
    s.append(0, batch("durable", 1, 1)).await.unwrap();
    faults.fail_syncs.store(true, Ordering::SeqCst);
    let err = s.append(0, batch("lost", 1, 1)).await.unwrap_err();
    assert!(matches!(err, JournalError::Io { .. }), "{err}");
    let p = s.partition(0).unwrap();
    assert_eq!(p.offsets().end, 1);
    let recs = read_all(p, 0).await;
    assert_eq!(recs.len(), 1);
    faults.heal();
    let a = s.append(0, batch("next", 1, 1)).await.unwrap();
    assert_eq!(a.base_offset, 1, "the rolled-back offset is reused");
    let recs = read_all(p, 0).await;
    assert_eq!(recs[1].value.as_deref(), Some(&b"next-0"[..]));
    j.close().await.unwrap();
}
