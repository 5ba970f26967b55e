//! Crash test: a child process appends with `fsync = always` from several tasks and prints
//! every acknowledged batch; it is killed with SIGKILL at random moments, 20+ times; after
//! each kill the journal is reopened and every acknowledged record must be present and
//! intact.
//!
//! The child is this same test binary running `crash::crash_child` (ignored unless the
//! parent asks for it through `STRATA_CRASH_CHILD_DIR`).

use std::collections::BTreeMap;

use rand::Rng;
use strata_journal::{FsyncPolicy, Journal, JournalConfig, JournalOptions, StorageClass};

use crate::common::{acks_until_killed, batch, read_all};

const CHILD_ENV: &str = "STRATA_CRASH_CHILD_DIR";
const CYCLES: usize = 24;

fn open(dir: &std::path::Path) -> Journal {
    let config = JournalConfig {
        class: StorageClass::Segment,
        ..JournalConfig::default()
    };
    Journal::open(JournalOptions::new(
        dir.to_path_buf(),
        config,
        prometheus::Registry::new(),
    ))
    .unwrap()
}

/// The child: appends forever, printing `ACK <base> <last> <tag>` after each acknowledgement.
#[test]
#[ignore = "run by crash::acknowledged_appends_survive_sigkill as a child process"]
fn crash_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let journal = open(std::path::Path::new(&dir));
        let stream = match journal.stream("crash") {
            Ok(s) => s,
            Err(_) => {
                let mut c = journal.stream_config("crash", 1);
                c.fsync = FsyncPolicy::Always;
                c.segment.segment_bytes = 64 * 1024;
                journal.create_stream(c).await.unwrap()
            }
        };
        let pid = std::process::id();
        let mut tasks = Vec::new();
        for t in 0..8 {
            let stream = stream.clone();
            tasks.push(tokio::spawn(async move {
                for seq in 0u64.. {
                    let tag = format!("p{pid}t{t}s{seq}");
                    let n = (seq % 4 + 1) as u32;
                    let a = stream.append(0, batch(&tag, n, seq as i64)).await.unwrap();
                    println!("ACK {} {} {tag}", a.base_offset, a.last_offset);
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_appends_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let mut acked: BTreeMap<u64, (u64, String)> = BTreeMap::new();
    let mut rng = rand::rng();
    for cycle in 0..CYCLES {
        // A random number of acknowledgements, then a kill without warning.
        let want = rng.random_range(1..400);
        let lines = acks_until_killed(
            "crash::crash_child",
            (CHILD_ENV, dir.path().display().to_string()),
            want,
        );
        for line in lines {
            let mut parts = line.split_whitespace().skip(1);
            let base: u64 = parts.next().unwrap().parse().unwrap();
            let last: u64 = parts.next().unwrap().parse().unwrap();
            acked.insert(base, (last, parts.next().unwrap().to_string()));
        }
        // Reopen (recovering the torn tail, as the next child will) and check everything.
        let journal = open(dir.path());
        let p = journal
            .stream("crash")
            .unwrap()
            .partition(0)
            .unwrap()
            .clone();
        let records = read_all(&p, 0).await;
        for (&base, (last, tag)) in &acked {
            for off in base..=*last {
                let r = records.get(off as usize).unwrap_or_else(|| {
                    panic!(
                        "cycle {cycle}: acknowledged offset {off} lost (end {})",
                        records.len()
                    )
                });
                assert_eq!(r.offset, off);
                let want = format!("{tag}-{}", off - base);
                assert_eq!(
                    r.value.as_deref(),
                    Some(want.as_bytes()),
                    "cycle {cycle}: offset {off}"
                );
            }
        }
        drop(p);
        journal.close().await.unwrap();
        println!(
            "cycle {cycle}: {} acknowledged batches intact, {} records stored",
            acked.len(),
            records.len()
        );
    }
    assert!(acked.len() >= CYCLES);
    println!(
        "{} acknowledged batches checked after {CYCLES} SIGKILLs",
        acked.len()
    );
}
