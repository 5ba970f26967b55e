//! The node's key-value store: one RocksDB instance under the data directory, one column
//! family per namespace (`mqtt`, later `kafka` offsets...). Small records that change in
//! place (sessions, subscriptions, retained messages, references into the journal) live
//! here; message bodies live in the journal.
//!
//! Every write goes to RocksDB's write-ahead log before it returns, so it survives a
//! process crash. With `sync` the log is also fsynced, so it survives power loss.

use std::path::Path;
use std::sync::Arc;

use rocksdb::{DBWithThreadMode, MultiThreaded, Options, WriteBatch, WriteOptions};

type Db = DBWithThreadMode<MultiThreaded>;

/// A failed key-value operation.
#[derive(Debug, thiserror::Error)]
#[error("key-value store: {0}")]
pub struct KvError(String);

impl From<rocksdb::Error> for KvError {
    fn from(e: rocksdb::Error) -> Self {
        KvError(e.into_string())
    }
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

/// A key and its value.
pub type KvPair = (Vec<u8>, Vec<u8>);

/// One write of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvOp {
    /// Sets `key` to `value`.
    Put(Vec<u8>, Vec<u8>),
    /// Removes `key`.
    Delete(Vec<u8>),
}

impl KvStore {
    /// Opens (or creates) the store in `path`. With `sync`, every write is fsynced before
    /// it returns.
    pub fn open(path: &Path, sync: bool) -> Result<Self, KvError> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.set_compression_type(rocksdb::DBCompressionType::Lz4);
        let families = match Db::list_cf(&opts, path) {
            Ok(f) => f,
            Err(_) => vec!["default".to_string()],
        };
        let db = Db::open_cf(&opts, path, families)?;
        Ok(KvStore {
            db: Arc::new(db),
            sync,
        })
    }

    /// The namespace `name`, created when missing.
    pub fn space(&self, name: &str) -> Result<KvSpace, KvError> {
        if self.db.cf_handle(name).is_none() {
            self.db.create_cf(name, &Options::default())?;
        }
        Ok(KvSpace {
            store: self.clone(),
            name: name.to_string(),
        })
    }

    /// Fsyncs the write-ahead log: every write so far survives power loss.
    pub fn sync_wal(&self) -> Result<(), KvError> {
        self.db.flush_wal(true)?;
        Ok(())
    }

    /// Fsyncs the write-ahead log (after this, every write so far survives power loss),
    /// then writes the memtables of every namespace to table files, so the next open has
    /// no log to replay. Called when the node stops.
    pub fn flush(&self) -> Result<(), KvError> {
        self.db.flush_wal(true)?;
        let names = Db::list_cf(&Options::default(), self.db.path())?;
        for name in names {
            if let Some(cf) = self.db.cf_handle(&name) {
                self.db.flush_cf(&cf)?;
            }
        }
        Ok(())
    }
}

/// One namespace of the store.
#[derive(Clone)]
pub struct KvSpace {
    store: KvStore,
    name: String,
}

impl std::fmt::Debug for KvSpace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KvSpace").field("name", &self.name).finish()
    }
}

impl KvSpace {
    fn handle(&self) -> Result<Arc<rocksdb::BoundColumnFamily<'_>>, KvError> {
        self.store
            .db
            .cf_handle(&self.name)
            .ok_or_else(|| KvError(format!("column family {} is gone", self.name)))
    }

    /// The value of `key`.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, KvError> {
        Ok(self.store.db.get_cf(&self.handle()?, key)?)
    }

    /// Applies `ops` atomically: after a crash either all of them are there or none.
    pub fn write<O: std::borrow::Borrow<KvOp>>(
        &self,
        ops: impl IntoIterator<Item = O>,
    ) -> Result<(), KvError> {
        let cf = self.handle()?;
        let mut batch = WriteBatch::default();
        for op in ops {
            match op.borrow() {
                KvOp::Put(k, v) => batch.put_cf(&cf, k, v),
                KvOp::Delete(k) => batch.delete_cf(&cf, k),
            }
        }
        let mut opts = WriteOptions::default();
        opts.set_sync(self.store.sync);
        self.store.db.write_opt(batch, &opts)?;
        Ok(())
    }

    /// Sets `key` to `value`.
    pub fn put(&self, key: &[u8], value: &[u8]) -> Result<(), KvError> {
        self.write([KvOp::Put(key.to_vec(), value.to_vec())])
    }

    /// Removes `key`.
    pub fn delete(&self, key: &[u8]) -> Result<(), KvError> {
        self.write([KvOp::Delete(key.to_vec())])
    }

    /// Every key starting with `prefix`, with its value, in key order.
    pub fn scan_prefix(&self, prefix: &[u8]) -> Result<Vec<KvPair>, KvError> {
        let cf = self.handle()?;
        let mut out = Vec::new();
        let iter = self.store.db.iterator_cf(
            &cf,
            rocksdb::IteratorMode::From(prefix, rocksdb::Direction::Forward),
        );
        for item in iter {
            let (k, v) = item?;
            if !k.starts_with(prefix) {
                break;
            }
            out.push((k.into_vec(), v.into_vec()));
        }
        Ok(out)
    }

    /// Removes every key starting with `prefix`, atomically.
    pub fn delete_prefix(&self, prefix: &[u8]) -> Result<(), KvError> {
        let keys = self.scan_prefix(prefix)?;
        if keys.is_empty() {
            return Ok(());
        }
        self.write(keys.into_iter().map(|(k, _)| KvOp::Delete(k)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_survive_reopen_and_spaces_are_separate() -> Result<(), KvError> {
        let dir = tempfile::tempdir().map_err(|e| KvError(e.to_string()))?;
        {
            let kv = KvStore::open(dir.path(), false)?;
            let a = kv.space("a")?;
            let b = kv.space("b")?;
            a.write([
                KvOp::Put(b"s/1".to_vec(), b"one".to_vec()),
                KvOp::Put(b"s/2".to_vec(), b"two".to_vec()),
                KvOp::Put(b"t/1".to_vec(), b"other".to_vec()),
            ])?;
            b.put(b"s/1", b"b-one")?;
            a.delete(b"s/2")?;
        }
        let kv = KvStore::open(dir.path(), true)?;
        let a = kv.space("a")?;
        assert_eq!(a.get(b"s/1")?, Some(b"one".to_vec()));
        assert_eq!(a.get(b"s/2")?, None);
        assert_eq!(
            a.scan_prefix(b"s/")?,
            vec![(b"s/1".to_vec(), b"one".to_vec())]
        );
        assert_eq!(kv.space("b")?.get(b"s/1")?, Some(b"b-one".to_vec()));
        a.delete_prefix(b"")?;
        assert!(a.scan_prefix(b"")?.is_empty());
        Ok(())
    }
}
