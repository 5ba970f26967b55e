//! Damaged bytes: CRC failures inside sealed segments surface as `Corruption` naming the
//! file and position, torn tails are cut at open, damaged indexes are rebuilt.

use std::path::PathBuf;

use strata_journal::{JournalError, StorageClass};

use crate::common::{Harness, batch, read_all};

fn segment_files(h: &Harness, stream: &str, partition: u32) -> Vec<PathBuf> {
    let dir = h
        .dir
        .path()
        .join("streams")
        .join(stream)
        .join(partition.to_string());
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    v.sort();
    v
}

async fn fill(h: &Harness) {
    let j = h.open();
    let s = j.create_stream(h.stream(&j, "s", 2)).await.unwrap();
    for i in 0..400 {
        s.append(i % 2, batch(&format!("c{i}"), 3, 1))
            .await
            .unwrap();
    }
    j.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flipped_bytes_in_a_sealed_segment_give_corruption() {
    let h = Harness::new(StorageClass::Segment);
    fill(&h).await;
    let files = segment_files(&h, "s", 0);
    assert!(files.len() >= 3);
    let victim = &files[1];
    let mut bytes = std::fs::read(victim).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0xff;
    std::fs::write(victim, &bytes).unwrap();

    let j = h.open();
    let s = j.stream("s").unwrap();
    let p0 = s.partition(0).unwrap();
    let info = p0.describe();
    let seg = &info.segments[1];
    let mut saw = None;
    let mut from = seg.base_offset;
    while from < seg.end_offset {
        match p0.read(from, 100).await {
            Ok(b) => from = b.last().unwrap().last_offset() + 1,
            Err(JournalError::Corruption {
                file,
                position,
                reason,
            }) => {
                saw = Some((file, position, reason));
                break;
            }
            Err(e) => panic!("unexpected {e}"),
        }
    }
    let (file, position, reason) = saw.expect("the damaged range must not read cleanly");
    assert_eq!(&file, victim);
    assert!(
        position <= at as u64,
        "batch position {position} precedes the flipped byte {at}"
    );
    assert!(
        reason.contains("crc") || reason.contains("length") || reason.contains("magic"),
        "{reason}"
    );
    // Data before and after the damaged segment, and the other partition, still serve.
    assert!(!p0.read(0, 100).await.unwrap().is_empty());
    let after = info.segments[2].base_offset;
    assert!(!p0.read(after, 100).await.unwrap().is_empty());
    assert_eq!(read_all(s.partition(1).unwrap(), 0).await.len(), 600);
    assert!(j.metrics().corruptions.get() >= 1);
    j.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_tail_is_truncated_at_open() {
    let h = Harness::new(StorageClass::Segment);
    fill(&h).await;
    let files = segment_files(&h, "s", 1);
    let last = files.last().unwrap();
    let good = std::fs::metadata(last).unwrap().len();
    // A torn write: half a batch of garbage after the last good batch.
    let mut f = std::fs::OpenOptions::new().append(true).open(last).unwrap();
    std::io::Write::write_all(&mut f, &[0x5a; 50]).unwrap();
    drop(f);
    let j = h.open();
    let p = j.stream("s").unwrap().partition(1).unwrap().clone();
    assert_eq!(p.offsets().end, 600);
    assert_eq!(read_all(&p, 0).await.len(), 600);
    assert_eq!(std::fs::metadata(last).unwrap().len(), good);
    assert_eq!(j.metrics().recovery_truncated_bytes.get(), 50);
    assert_eq!(
        p.append(batch("next", 1, 1)).await.unwrap().base_offset,
        600
    );
    j.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_cut_in_half_is_dropped_and_the_rest_kept() {
    let h = Harness::new(StorageClass::Segment);
    fill(&h).await;
    let files = segment_files(&h, "s", 0);
    let last = files.last().unwrap();
    let len = std::fs::metadata(last).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(last)
        .unwrap()
        .set_len(len - 10)
        .unwrap();
    let j = h.open();
    let p = j.stream("s").unwrap().partition(0).unwrap().clone();
    assert_eq!(p.offsets().end, 597, "the last 3-record batch was torn");
    assert_eq!(read_all(&p, 0).await.len(), 597);
    j.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_or_missing_indexes_are_rebuilt() {
    let h = Harness::new(StorageClass::Segment);
    fill(&h).await;
    let files = segment_files(&h, "s", 0);
    std::fs::write(files[0].with_extension("index"), b"garbage!").unwrap();
    std::fs::remove_file(files[1].with_extension("timeindex")).unwrap();
    let j = h.open();
    let p = j.stream("s").unwrap().partition(0).unwrap().clone();
    let recs = read_all(&p, 0).await;
    assert_eq!(recs.len(), 600);
    assert!(recs.iter().enumerate().all(|(i, r)| r.offset == i as u64));
    j.close().await.unwrap();
    assert!(
        std::fs::read(files[0].with_extension("index"))
            .unwrap()
            .len()
            .is_multiple_of(8)
    );
    assert!(files[1].with_extension("timeindex").exists());
}

/// A stream whose definition is damaged does not stop the journal from opening: it is
/// listed as failed (and counted), the others serve, and it is never created anew over
/// its files.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_that_cannot_open_leaves_the_others_serving() {
    let h = Harness::new(StorageClass::Segment);
    fill(&h).await;
    {
        let j = h.open();
        j.create_stream(h.stream(&j, "broken", 1)).await.unwrap();
        j.close().await.unwrap();
    }
    let def = h
        .dir
        .path()
        .join("streams")
        .join("broken")
        .join("stream.json");
    std::fs::write(&def, b"{ not json").unwrap();

    let j = h.open();
    let failed = j.failed_streams();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0].0, "broken");
    assert!(failed[0].1.contains("does not parse"), "{failed:?}");
    assert_eq!(j.metrics().streams_failed.get(), 1);
    let s = j.stream("s").unwrap();
    assert_eq!(read_all(s.partition(0).unwrap(), 0).await.len(), 600);
    assert!(j.stream("broken").is_err());
    let again = j.create_stream(h.stream(&j, "broken", 1)).await;
    assert!(
        matches!(again, Err(JournalError::StreamExists(_))),
        "{again:?}"
    );
    assert_eq!(std::fs::read(&def).unwrap(), b"{ not json");
    j.close().await.unwrap();
}
