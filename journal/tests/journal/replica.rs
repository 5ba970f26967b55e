//! What a replica needs from a partition: appends stamped with the leader's epoch, copies
//! of the leader's batches, truncation of a divergent tail, the epoch cache, fencing and a
//! high watermark that bounds readers.

use std::sync::Arc;
use std::time::Duration;

use strata_journal::{Batch, FsyncPolicy, Journal, JournalError, PartitionLog, StorageClass};

use crate::common::{Harness, batch, read_all};

/// Opens partition 0 of a fresh segment stream `name` with small segments.
async fn partition(h: &Harness, j: &Journal, name: &str) -> Arc<dyn PartitionLog> {
    let mut c = h.stream(j, name, 1);
    c.fsync = FsyncPolicy::Always;
    let s = j.create_stream(c).await.unwrap();
    s.partition(0).unwrap().clone()
}

/// Everything written in `log` from `from`, past the high watermark.
async fn written(log: &Arc<dyn PartitionLog>, from: u64) -> Vec<Batch> {
    let end = log.replica_state().unwrap().written_end;
    let mut out = Vec::new();
    let mut next = from;
    while next < end {
        let got = log.read_written(next, 4096).await.unwrap();
        next = got.last().unwrap().last_offset() + 1;
        out.extend(got);
    }
    out
}

/// Copies what `leader` has and `follower` lacks, as a follower's fetch would.
async fn catch_up(leader: &Arc<dyn PartitionLog>, follower: &Arc<dyn PartitionLog>) -> u64 {
    let from = follower.replica_state().unwrap().written_end;
    let copies = written(leader, from).await;
    follower.append_copies(copies).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_copies_the_leader_byte_for_byte() {
    let h = Harness::new(StorageClass::Segment);
    let j = h.open();
    let leader = partition(&h, &j, "leader").await;
    let follower = partition(&h, &j, "follower").await;
    for i in 0..40u32 {
        let a = leader
            .append_in_epoch(batch(&format!("b{i}"), i % 4 + 10, 1000), 3)
            .await
            .unwrap();
        assert!(a.last_offset >= a.base_offset);
    }
    let end = leader.replica_state().unwrap().written_end;
    assert_eq!(catch_up(&leader, &follower).await, end);
    let (a, b) = (written(&leader, 0).await, written(&follower, 0).await);
    assert_eq!(a, b, "the same batches, bytes and CRCs included");
    assert!(a.iter().all(|b| b.header().leader_epoch == 3));
    assert!(
        follower.describe().segments.len() > 2,
        "copies roll segments"
    );
    assert_eq!(
        follower.leader_epochs().unwrap(),
        leader.leader_epochs().unwrap()
    );
    assert_eq!(
        follower.end_offset_for_epoch(3).unwrap(),
        Some((3, end)),
        "the newest epoch ends at the log end"
    );
    // A copy that does not continue the log, or goes back in epochs, is refused.
    let again = written(&leader, 0).await;
    assert!(matches!(
        follower.append_copies(again[..1].to_vec()).await,
        Err(JournalError::InvalidBatch(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_high_watermark_bounds_readers_and_wakes_waiters() {
    let h = Harness::new(StorageClass::Segment);
    let j = h.open();
    let log = partition(&h, &j, "hw").await;
    log.set_high_watermark(0).unwrap();
    let a = log.append_in_epoch(batch("x", 3, 1000), 1).await.unwrap();
    assert_eq!(a.last_offset, 2);
    assert_eq!(log.offsets().end, 0, "nothing committed, nothing visible");
    assert!(log.read(0, 1000).await.unwrap().is_empty());
    assert!(
        log.read(2, 1000).await.unwrap().is_empty(),
        "a reader past the high watermark but within the written log waits"
    );
    assert!(matches!(
        log.read(4, 1000).await,
        Err(JournalError::OffsetOutOfRange { .. })
    ));
    assert_eq!(log.read_written(0, 1000).await.unwrap().len(), 1);
    let waiter = {
        let log = log.clone();
        tokio::spawn(async move { log.wait_for(0).await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        !waiter.is_finished(),
        "a waiter does not wake for uncommitted data"
    );
    log.set_high_watermark(3).unwrap();
    let woke = tokio::time::timeout(Duration::from_secs(30), waiter)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(woke, 3);
    assert_eq!(read_all(&log, 0).await.len(), 3);
    log.set_high_watermark(1).unwrap();
    assert_eq!(log.offsets().end, 3, "the high watermark never goes back");
    assert!(
        matches!(
            log.truncate_from(1).await,
            Err(JournalError::OffsetOutOfRange { log_start: 3, .. })
        ),
        "committed records are never truncated"
    );
    let state = log.replica_state().unwrap();
    assert_eq!(
        (state.written_end, state.durable_end, state.high_watermark),
        (3, 3, Some(3))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_epochs_are_fenced() {
    let h = Harness::new(StorageClass::Segment);
    let j = h.open();
    let log = partition(&h, &j, "fence").await;
    log.append_in_epoch(batch("a", 1, 1000), 2).await.unwrap();
    assert!(matches!(
        log.append_in_epoch(batch("b", 1, 1000), 1).await,
        Err(JournalError::Fenced {
            epoch: 1,
            current: 2
        })
    ));
    log.fence(5).unwrap();
    assert!(matches!(
        log.append_in_epoch(batch("c", 1, 1000), 4).await,
        Err(JournalError::Fenced {
            epoch: 4,
            current: 5
        })
    ));
    log.append_in_epoch(batch("d", 1, 1000), 5).await.unwrap();
    assert_eq!(
        log.replica_state().unwrap().written_end,
        2,
        "only the good appends"
    );
    let epochs: Vec<_> = log
        .leader_epochs()
        .unwrap()
        .iter()
        .map(|e| (e.epoch, e.start_offset))
        .collect();
    assert_eq!(epochs, vec![(2, 0), (5, 1)]);
}

/// The Raft case: a deposed leader holds records of its epoch that the new leader never
/// got; it finds where the logs diverge from the new leader's epoch cache, truncates,
/// and copies the new leader's records.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_divergent_tail_is_found_and_truncated_across_segments() {
    let h = Harness::new(StorageClass::Segment);
    let j = h.open();
    let old = partition(&h, &j, "old").await;
    let new = partition(&h, &j, "new").await;
    for i in 0..10u32 {
        old.append_in_epoch(batch(&format!("c{i}"), 2, 1000), 1)
            .await
            .unwrap();
    }
    catch_up(&old, &new).await;
    let common = new.replica_state().unwrap().written_end;
    // The old leader goes on alone (never committed) across several segments...
    for i in 0..60u32 {
        old.append_in_epoch(batch(&format!("lost{i}"), 10, 1000), 1)
            .await
            .unwrap();
    }
    // ... while the new leader, elected in epoch 2, takes other writes.
    for i in 0..5u32 {
        new.append_in_epoch(batch(&format!("won{i}"), 1, 1000), 2)
            .await
            .unwrap();
    }
    let segments_before = old.describe().segments.len();
    assert!(segments_before > 3);
    let old_latest = old.replica_state().unwrap().latest_epoch.unwrap();
    let (epoch, end) = new.end_offset_for_epoch(old_latest.epoch).unwrap().unwrap();
    assert_eq!((epoch, end), (1, common), "epoch 1 ended where both agree");
    assert_eq!(old.truncate_from(end).await.unwrap(), common);
    assert!(
        old.describe().segments.len() < segments_before,
        "later segments removed"
    );
    assert_eq!(old.replica_state().unwrap().written_end, common);
    catch_up(&new, &old).await;
    assert_eq!(written(&old, 0).await, written(&new, 0).await);
    assert_eq!(old.leader_epochs().unwrap(), new.leader_epochs().unwrap());
    // Truncating from inside a batch cuts from that batch's start.
    let holder = old.read_written(common - 1, 1).await.unwrap()[0].clone();
    assert_eq!(holder.record_count(), 2);
    assert_eq!(holder.base_offset(), common - 2);
    assert_eq!(old.truncate_from(common - 1).await.unwrap(), common - 2);
    assert_eq!(old.truncate_from(0).await.unwrap(), 0);
    assert!(old.leader_epochs().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncation_and_epochs_survive_a_reopen_and_a_damaged_cache_is_rebuilt() {
    let h = Harness::new(StorageClass::Segment);
    let cut;
    let epochs;
    {
        let j = h.open();
        let log = partition(&h, &j, "re").await;
        for (i, epoch) in [1, 1, 4, 4, 4, 7, 7].iter().enumerate() {
            log.append_in_epoch(batch(&format!("r{i}"), 30, 1000), *epoch)
                .await
                .unwrap();
        }
        // Cut inside epoch 7: its entry stays, starting where it started.
        cut = log.truncate_from(180).await.unwrap();
        assert_eq!(cut, 180);
        epochs = log.leader_epochs().unwrap();
        j.close().await.unwrap();
    }
    let dir = h.dir.path().join("streams/re/0");
    {
        let j = h.open();
        let log = j.stream("re").unwrap().partition(0).unwrap().clone();
        let state = log.replica_state().unwrap();
        assert_eq!(state.written_end, cut);
        assert_eq!(log.leader_epochs().unwrap(), epochs);
        assert_eq!(state.latest_epoch.unwrap().epoch, 7);
        assert_eq!(log.end_offset_for_epoch(4).unwrap(), Some((4, 150)));
        j.close().await.unwrap();
    }
    std::fs::write(dir.join("leader-epochs"), b"7 0\n1 \xff garbage\n").unwrap();
    let j = h.open();
    let log = j.stream("re").unwrap().partition(0).unwrap().clone();
    assert_eq!(
        log.leader_epochs().unwrap(),
        epochs,
        "rebuilt from the batches' epochs"
    );
    assert!(matches!(
        log.append_in_epoch(batch("late", 1, 1000), 6).await,
        Err(JournalError::Fenced { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_below_the_leaders_log_start_starts_over_there_and_survives_a_reopen() {
    let h = Harness::new(StorageClass::Segment);
    {
        let j = h.open();
        let leader = partition(&h, &j, "leader").await;
        let follower = partition(&h, &j, "follower").await;
        for i in 0..40u32 {
            leader
                .append_in_epoch(batch(&format!("b{i}"), 10, 1000), 2)
                .await
                .unwrap();
        }
        // The follower holds the first records, the leader no longer has them.
        let first = written(&leader, 0).await;
        follower.append_copies(first[..3].to_vec()).await.unwrap();
        let start = leader.delete_before(250).await.unwrap();
        assert_eq!(start, 250);
        // Not backwards, not to where the log already is.
        assert!(matches!(
            follower.start_at(30).await,
            Err(JournalError::OffsetOutOfRange { .. })
        ));
        assert_eq!(follower.start_at(250).await.unwrap(), 250);
        let state = follower.replica_state().unwrap();
        assert_eq!((state.log_start, state.written_end), (250, 250));
        assert!(
            state.latest_epoch.is_none(),
            "its epochs went with its records"
        );
        assert_eq!(catch_up(&leader, &follower).await, 400);
        assert_eq!(written(&follower, 250).await, written(&leader, 250).await);
        j.close().await.unwrap();
    }
    let j = h.open();
    let follower = j.stream("follower").unwrap().partition(0).unwrap().clone();
    let state = follower.replica_state().unwrap();
    assert_eq!((state.log_start, state.written_end), (250, 400));
    assert_eq!(follower.end_offset_for_epoch(2).unwrap(), Some((2, 400)));
    assert_eq!(
        follower.describe().segments.first().map(|s| s.base_offset),
        Some(250),
        "nothing below the new start is kept"
    );
    j.close().await.unwrap();
    drop(j);
    // A start_at cut short by a crash after it recorded the new start, before the segment
    // there existed: the open finishes it.
    let dir = h.dir.path().join("streams/follower/0");
    std::fs::write(dir.join("log-start"), b"1000").unwrap();
    let j = h.open();
    let follower = j.stream("follower").unwrap().partition(0).unwrap().clone();
    let state = follower.replica_state().unwrap();
    assert_eq!((state.log_start, state.written_end), (1000, 1000));
    assert!(
        follower.read(999, 4096).await.is_err(),
        "nothing below the start is read"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn classes_that_cannot_be_replicas_say_so() {
    for class in [StorageClass::Memory, StorageClass::Rocksdb] {
        let h = Harness::new(class);
        let j = h.open();
        let s = j.create_stream(h.stream(&j, "s", 1)).await.unwrap();
        let p = s.partition(0).unwrap();
        assert!(matches!(
            p.append_in_epoch(batch("x", 1, 1000), 1).await,
            Err(JournalError::Unsupported(_))
        ));
        assert!(matches!(
            p.truncate_from(0).await,
            Err(JournalError::Unsupported(_))
        ));
        assert!(matches!(
            p.replica_state(),
            Err(JournalError::Unsupported(_))
        ));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_moved_away_drops_its_committed_records_too() {
    let h = Harness::new(StorageClass::Segment);
    let j = h.open();
    let log = partition(&h, &j, "gone").await;
    for i in 0..40u32 {
        log.append_in_epoch(batch(&format!("g{i}"), 10, 1000), 2)
            .await
            .unwrap();
    }
    let segments_before = log.describe().segments.len();
    assert!(segments_before > 2);
    log.set_high_watermark(300).unwrap();
    // A divergent tail stops at the high watermark; a copy no longer a replica does not.
    assert!(log.truncate_from(100).await.is_err());
    assert_eq!(log.clear_copy().await.unwrap(), 0);
    let state = log.replica_state().unwrap();
    assert_eq!((state.written_end, state.high_watermark), (0, None));
    assert_eq!(log.describe().segments.len(), 1, "its segments are gone");
    assert!(log.leader_epochs().unwrap().is_empty());
    assert_eq!(log.clear_copy().await.unwrap(), 0, "twice is a no-op");
    // A log start inside a batch: that batch stays, so the end never goes below the start.
    let log2 = partition(&h, &j, "gone2").await;
    for i in 0..6u32 {
        log2.append_in_epoch(batch(&format!("h{i}"), 10, 1000), 2)
            .await
            .unwrap();
    }
    log2.set_high_watermark(60).unwrap();
    log2.delete_before(15).await.unwrap();
    assert_eq!(log2.replica_state().unwrap().log_start, 15);
    assert_eq!(log2.clear_copy().await.unwrap(), 20);
    let state = log2.replica_state().unwrap();
    assert!(state.written_end >= state.log_start);
    // Reopened, it is still empty: a copy placed here again starts as a new one does.
    j.close().await.unwrap();
    let j = h.open();
    let log = j.stream("gone").unwrap().partition(0).unwrap().clone();
    assert_eq!(log.replica_state().unwrap().written_end, 0);
}
