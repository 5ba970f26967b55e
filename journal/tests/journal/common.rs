//! Shared helpers: opening journals in temporary directories and building batches.

use std::sync::Arc;

use strata_journal::fs::{FileSystem, StdFs};
use strata_journal::{
    Batch, BatchBuilder, CacheConfig, Journal, JournalConfig, JournalOptions, ObjectAck,
    ObjectStoreConfig, OffloadSettings, PendingBatch, Record, StorageClass, StreamConfig,
};

/// How a stream under test uses object storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tiering {
    /// Not at all.
    None,
    /// Sealed segments offloaded and their local copies dropped at once.
    Offload,
    /// `object` class with the given acknowledgement.
    Object(ObjectAck),
}

/// A storage class and its use of object storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Variant {
    pub class: StorageClass,
    pub tiering: Tiering,
}

impl From<StorageClass> for Variant {
    fn from(class: StorageClass) -> Self {
        Variant {
            class,
            tiering: Tiering::None,
        }
    }
}

/// A data directory that can be opened, closed and reopened.
pub struct Harness {
    pub dir: tempfile::TempDir,
    pub class: StorageClass,
    pub tiering: Tiering,
    pub fs: Arc<dyn FileSystem>,
}

impl Harness {
    pub fn new(v: impl Into<Variant>) -> Self {
        let v = v.into();
        Harness {
            dir: tempfile::tempdir().unwrap(),
            class: v.class,
            tiering: v.tiering,
            fs: Arc::new(StdFs),
        }
    }

    /// Where the filesystem object store keeps its objects.
    pub fn objects_dir(&self) -> std::path::PathBuf {
        self.dir.path().join("objects")
    }

    pub fn with_fs(class: StorageClass, fs: Arc<dyn FileSystem>) -> Self {
        Harness {
            fs,
            ..Harness::new(class)
        }
    }

    pub fn open(&self) -> Journal {
        let tiered = self.tiering != Tiering::None;
        let mut opts = JournalOptions::new(
            self.dir.path().to_path_buf(),
            JournalConfig {
                class: self.class,
                // Small, so that most reads in tests go to the files, not the tail cache.
                tail_cache_bytes: 2048,
                object_store: tiered.then(|| ObjectStoreConfig::Fs {
                    root: self.objects_dir(),
                }),
                cache: CacheConfig {
                    memory_bytes: 64 * 1024,
                    disk_bytes: 16 << 20,
                    block_bytes: 4096,
                    read_ahead_blocks: 4,
                    dir: None,
                },
                ..JournalConfig::default()
            },
            prometheus::Registry::new(),
        );
        opts.fs = self.fs.clone();
        if tiered {
            opts = tokio::task::block_in_place(|| {
                tokio::runtime::Handle::current().block_on(opts.with_object_store())
            })
            .unwrap();
        }
        Journal::open(opts).unwrap()
    }

    /// A stream definition with small segments so tests cross segment boundaries.
    pub fn stream(&self, journal: &Journal, name: &str, partitions: u32) -> StreamConfig {
        let mut c = journal.stream_config(name, partitions);
        c.segment.segment_bytes = 4096;
        c.segment.index_interval_bytes = 512;
        c.retention.max_age_ms = None;
        match self.tiering {
            Tiering::None => {}
            Tiering::Offload => {
                c.offload = Some(OffloadSettings {
                    local_retention_ms: 0,
                    local_retention_bytes: Some(0),
                })
            }
            Tiering::Object(ack) => {
                c.object.batch_bytes = 4096;
                c.object.batch_ms = 5;
                c.object.ack = ack;
            }
        }
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

/// Runs this test binary's ignored test `test` as a child process with `env` set, waits (on
/// a condition, with a generous deadline) until it has printed `want` lines starting with
/// `ACK `, kills it with SIGKILL and returns every `ACK ` line it printed.
pub fn acks_until_killed(test: &str, env: (&str, String), want: usize) -> Vec<String> {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            test,
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(env.0, env.1)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if line.starts_with("ACK ") && tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut lines = Vec::new();
    while lines.len() < want {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => lines.push(line),
            Err(_) => panic!("the child printed {} acks before the deadline", lines.len()),
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    reader.join().unwrap();
    lines.extend(rx.try_iter());
    lines
}
