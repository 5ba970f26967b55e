//! Model-based property test: random sequences of appends, reads, delete-before,
//! retention and reopen, checked against a plain in-memory model, for every class.

use proptest::prelude::*;
use strata_journal::{FsyncPolicy, Journal, StorageClass};

use crate::common::{Harness, batch, records};

#[derive(Debug, Clone)]
enum Op {
    Append { records: u32 },
    Read { at: f64, max_bytes: usize },
    DeleteBefore { at: f64 },
    Retention,
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (1u32..6).prop_map(|records| Op::Append { records }),
        3 => (0.0f64..=1.0, 1usize..3000).prop_map(|(at, max_bytes)| Op::Read { at, max_bytes }),
        1 => (0.0f64..=1.0).prop_map(|at| Op::DeleteBefore { at }),
        1 => Just(Op::Retention),
        1 => Just(Op::Reopen),
    ]
}

/// The model: every record's value by offset, and the log start.
#[derive(Default)]
struct Model {
    values: Vec<String>,
    log_start: u64,
}

impl Model {
    fn end(&self) -> u64 {
        self.values.len() as u64
    }
    fn pick(&self, at: f64) -> u64 {
        let span = self.end() - self.log_start;
        self.log_start + ((span as f64) * at) as u64
    }
}

async fn check(class: StorageClass, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let h = Harness::new(class);
    let mut j: Journal = h.open();
    let mut c = h.stream(&j, "m", 1);
    c.fsync = FsyncPolicy::Never;
    c.retention.max_bytes = Some(6000);
    j.create_stream(c).await.unwrap();
    let mut m = Model::default();
    for (n, op) in ops.into_iter().enumerate() {
        let p = j.stream("m").unwrap().partition(0).unwrap().clone();
        match op {
            Op::Append { records } => {
                let tag = format!("op{n}");
                let a = p.append(batch(&tag, records, n as i64)).await.unwrap();
                prop_assert_eq!(a.base_offset, m.end());
                m.values.extend((0..records).map(|i| format!("{tag}-{i}")));
            }
            Op::Read { at, max_bytes } => {
                let from = m.pick(at);
                let batches = p.read(from, max_bytes).await.unwrap();
                if from == m.end() {
                    prop_assert!(batches.is_empty());
                    continue;
                }
                prop_assert!(!batches.is_empty());
                prop_assert!(batches[0].base_offset() <= from);
                for pair in batches.windows(2) {
                    prop_assert_eq!(
                        pair[1].base_offset(),
                        pair[0].last_offset() + 1,
                        "batches are contiguous"
                    );
                }
                let total: usize = batches.iter().map(|b| b.len()).sum();
                prop_assert!(batches.len() == 1 || total <= max_bytes);
                for r in records(&batches) {
                    if r.offset >= m.log_start {
                        prop_assert_eq!(
                            r.value.as_deref().unwrap(),
                            m.values[r.offset as usize].as_bytes()
                        );
                    }
                }
            }
            Op::DeleteBefore { at } => {
                let to = m.pick(at);
                let start = p.delete_before(to).await.unwrap();
                prop_assert_eq!(start, to.max(m.log_start));
                m.log_start = start;
            }
            Op::Retention => {
                p.enforce_retention(strata_journal::now_ms()).await.unwrap();
                let start = p.offsets().log_start;
                prop_assert!(start >= m.log_start && start <= m.end());
                m.log_start = start;
            }
            Op::Reopen => {
                drop(p);
                j.close().await.unwrap();
                j = h.open();
                if !h.persistent() {
                    m = Model::default();
                }
            }
        }
        let p = j.stream("m").unwrap().partition(0).unwrap().clone();
        let offsets = p.offsets();
        prop_assert_eq!(offsets.end, m.end());
        prop_assert_eq!(offsets.log_start, m.log_start);
    }
    j.close().await.unwrap();
    Ok(())
}

fn run(class: StorageClass) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let config = ProptestConfig {
        cases: 24,
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::WithSource("regressions"),
        )),
        ..ProptestConfig::default()
    };
    proptest!(config, |(ops in proptest::collection::vec(op(), 1..60))| {
        rt.block_on(check(class, ops))?;
    });
}

#[test]
fn segment_matches_the_model() {
    run(StorageClass::Segment);
}

#[test]
fn rocksdb_matches_the_model() {
    run(StorageClass::Rocksdb);
}

#[test]
fn memory_matches_the_model() {
    run(StorageClass::Memory);
}
