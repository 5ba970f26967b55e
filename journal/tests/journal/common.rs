//! Shared helpers: opening journals in temporary directories and building batches.

use std::sync::Arc;

use strata_journal::fs::{FileSystem, StdFs};
use strata_journal::{
    Batch, BatchBuilder, Journal, JournalConfig, JournalOptions, PendingBatch, Record,
    StorageClass, StreamConfig,
};

/// A data directory that can be opened, closed and reopened.
pub struct Harness {
    pub dir: tempfile::TempDir,
    pub class: StorageClass,
    pub fs: Arc<dyn FileSystem>,
}

impl Harness {
    pub fn new(class: StorageClass) -> Self {
        Harness {
            dir: tempfile::tempdir().unwrap(),
            class,
            fs: Arc::new(StdFs),
        }
    }

    pub fn with_fs(class: StorageClass, fs: Arc<dyn FileSystem>) -> Self {
        Harness {
            fs,
            ..Harness::new(class)
        }
    }

    pub fn open(&self) -> Journal {
        let mut opts = JournalOptions::new(
            self.dir.path().to_path_buf(),
            JournalConfig {
                class: self.class,
                // Small, so that most reads in tests go to the files, not the tail cache.
                tail_cache_bytes: 2048,
                ..JournalConfig::default()
            },
            prometheus::Registry::new(),
        );
        opts.fs = self.fs.clone();
        Journal::open(opts).unwrap()
    }

    /// A stream definition with small segments so tests cross segment boundaries.
    pub fn stream(&self, journal: &Journal, name: &str, partitions: u32) -> StreamConfig {
        let mut c = journal.stream_config(name, partitions);
        c.segment.segment_bytes = 4096;
        c.segment.index_interval_bytes = 512;
        c.retention.max_age_ms = None;
        c
    }

    pub fn persistent(&self) -> bool {
        self.class != StorageClass::Memory
    }
}

/// A batch of `n` records whose values are `"{tag}-{i}"` with timestamp `ts + i`.
pub fn batch(tag: &str, n: u32, ts: i64) -> PendingBatch {
    let mut b = BatchBuilder::new();
    for i in 0..n {
        let v = format!("{tag}-{i}");
        let k = format!("k{i}");
        b.push(
            ts + i64::from(i),
            Some(k.as_bytes()),
            Some(v.as_bytes()),
            &[("h", Some(b"x"))],
        );
    }
    b.build().unwrap()
}

/// Decodes every record of `batches`.
pub fn records(batches: &[Batch]) -> Vec<Record> {
    batches
        .iter()
        .flat_map(|b| b.records().unwrap().map(|r| r.unwrap()))
        .collect()
}

/// Reads everything from `from` to the end.
pub async fn read_all(log: &Arc<dyn strata_journal::PartitionLog>, from: u64) -> Vec<Record> {
    let end = log.offsets().end;
    let mut out = Vec::new();
    let mut next = from;
    while next < end {
        let batches = log.read(next, 10_000).await.unwrap();
        assert!(
            !batches.is_empty(),
            "read at {next} below end {end} returned nothing"
        );
        assert!(batches[0].base_offset() <= next && batches[0].last_offset() >= next);
        for pair in batches.windows(2) {
            assert_eq!(
                pair[1].base_offset(),
                pair[0].last_offset() + 1,
                "a read skipped offsets"
            );
        }
        next = batches.last().unwrap().last_offset() + 1;
        out.extend(records(&batches).into_iter().filter(|r| r.offset >= from));
    }
    out
}
