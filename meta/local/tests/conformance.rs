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
