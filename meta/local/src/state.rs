//! The state store of a node on its own: one RocksDB instance under the data directory, one
//! column family per space (`mqtt`, `kafka`, `security`). Small records that change in
//! place (sessions, subscriptions, retained messages, references into the journal) live
//! here; message bodies live in the journal.
//!
//! Every write goes to RocksDB's write-ahead log before it returns, so it survives a
//! process crash. With `sync` the log is also fsynced, so it survives power loss.

use std::path::Path;
use std::sync::Arc;

use rocksdb::{DBWithThreadMode, MultiThreaded, Options, WriteBatch, WriteOptions};
use strata_frontend::seams::{
    SpaceBackend, StateError, StateOp, StatePair, StateSpace, StateStore,
};

type Db = DBWithThreadMode<MultiThreaded>;

fn db_error(e: rocksdb::Error) -> StateError {
    StateError(format!("rocksdb: {}", e.into_string()))
}

/// The node's key-value store; cheap to clone.
#[derive(Clone)]
pub struct KvStore {
    db: Arc<Db>,
    sync: bool,
}

impl std::fmt::Debug for KvStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KvStore")
            .field("path", &self.db.path())
            .field("sync", &self.sync)
            .finish()
    }
}

impl KvStore {
    /// Opens (or creates) the store in `path`. With `sync`, every write is fsynced before
    /// it returns.
    pub fn open(path: &Path, sync: bool) -> Result<Self, StateError> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.set_compression_type(rocksdb::DBCompressionType::Lz4);
        let families = match Db::list_cf(&opts, path) {
            Ok(f) => f,
            Err(_) => vec!["default".to_string()],
        };
        let db = Db::open_cf(&opts, path, families).map_err(db_error)?;
        Ok(KvStore {
            db: Arc::new(db),
            sync,
        })
    }

    /// Fsyncs the write-ahead log: every write so far survives power loss.
    pub fn sync_wal(&self) -> Result<(), StateError> {
        self.db.flush_wal(true).map_err(db_error)
    }

    /// Fsyncs the write-ahead log (after this, every write so far survives power loss),
    /// then writes the memtables of every namespace to table files, so the next open has
    /// no log to replay. Called when the node stops.
    pub fn flush(&self) -> Result<(), StateError> {
        self.db.flush_wal(true).map_err(db_error)?;
        let names = Db::list_cf(&Options::default(), self.db.path()).map_err(db_error)?;
        for name in names {
            if let Some(cf) = self.db.cf_handle(&name) {
                self.db.flush_cf(&cf).map_err(db_error)?;
            }
        }
        Ok(())
    }
}

impl StateStore for KvStore {
    /// One column family per space, created when missing.
    fn space(&self, name: &str) -> Result<StateSpace, StateError> {
        if self.db.cf_handle(name).is_none() {
            self.db
                .create_cf(name, &Options::default())
                .map_err(db_error)?;
        }
        Ok(StateSpace::new(Arc::new(KvSpace {
            store: self.clone(),
            name: name.to_string(),
        })))
    }
}

/// One column family.
#[derive(Debug)]
struct KvSpace {
    store: KvStore,
    name: String,
}

impl KvSpace {
    fn handle(&self) -> Result<Arc<rocksdb::BoundColumnFamily<'_>>, StateError> {
        self.store
            .db
            .cf_handle(&self.name)
            .ok_or_else(|| StateError(format!("column family {} is gone", self.name)))
    }
}

impl SpaceBackend for KvSpace {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        self.store.db.get_cf(&self.handle()?, key).map_err(db_error)
    }

    fn write(&self, ops: &[StateOp]) -> Result<(), StateError> {
        let cf = self.handle()?;
        let mut batch = WriteBatch::default();
        for op in ops {
            match op {
                StateOp::Put(k, v) => batch.put_cf(&cf, k, v),
                StateOp::Delete(k) => batch.delete_cf(&cf, k),
            }
        }
        let mut opts = WriteOptions::default();
        opts.set_sync(self.store.sync);
        self.store.db.write_opt(batch, &opts).map_err(db_error)
    }

    fn scan_prefix(&self, prefix: &[u8]) -> Result<Vec<StatePair>, StateError> {
        let cf = self.handle()?;
        let mut out = Vec::new();
        let iter = self.store.db.iterator_cf(
            &cf,
            rocksdb::IteratorMode::From(prefix, rocksdb::Direction::Forward),
        );
        for item in iter {
            let (k, v) = item.map_err(db_error)?;
            if !k.starts_with(prefix) {
                break;
            }
            out.push((k.into_vec(), v.into_vec()));
        }
        Ok(out)
    }
}
