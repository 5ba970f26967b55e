//! The meta service's Raft log and state machine, both in one RocksDB instance under
//! `<data_dir>/meta`: column family `log` (entries by index), `raft` (vote, committed and
//! purged log ids, the last snapshot) and `sm` (the metadata, one key per object, with the
//! id of the last applied entry and the membership, written in the same batch). Every
//! write is synced before openraft is told it is done: the log because Raft's safety
//! depends on it, the state machine because a snapshot may let the log behind it go.

use std::fmt::Debug;
use std::io::Cursor;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::Arc;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage, RaftStateMachine, Snapshot};
use openraft::{
    AnyError, Entry, EntryPayload, ErrorSubject, ErrorVerb, LogId, OptionalSend, RaftLogReader,
    RaftSnapshotBuilder, SnapshotMeta, StorageError, StorageIOError, StoredMembership, Vote,
};
use parking_lot::RwLock;
use rocksdb::{
    ColumnFamilyDescriptor, DB, Direction, IteratorMode, Options, WriteBatch, WriteOptions,
};
use serde::{Deserialize, Serialize};

use crate::TypeConfig;
use crate::model::{CommittedOffset, MetaState, NodeAddr, NodeId, Outcome, Touched, metadata_len};

type StorageResult<T> = Result<T, StorageError<NodeId>>;

const LOG: &str = "log";
const RAFT: &str = "raft";
const SM: &str = "sm";
const APPLIED: &[u8] = b"_applied";
const MEMBERSHIP: &[u8] = b"_membership";

fn io(
    subject: ErrorSubject<NodeId>,
    verb: ErrorVerb,
    e: impl std::error::Error + 'static,
) -> StorageError<NodeId> {
    StorageIOError::new(subject, verb, AnyError::new(&e)).into()
}

fn synced() -> WriteOptions {
    let mut w = WriteOptions::default();
    w.set_sync(true);
    w
}

/// The open store. Dropping the last handle closes RocksDB and only then raises
/// `closed`, so whoever waits for it may open the store again at once.
#[derive(Debug)]
pub struct Db {
    db: Option<DB>,
    closed: Arc<std::sync::atomic::AtomicBool>,
}

impl std::ops::Deref for Db {
    type Target = DB;

    fn deref(&self) -> &DB {
        // `db` is only taken in `drop`.
        self.db
            .as_ref()
            .expect("the meta store is open until dropped")
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        drop(self.db.take());
        self.closed
            .store(true, std::sync::atomic::Ordering::Release);
    }
}

/// Opens (creating) the meta store in `dir`; the flag rises once it is closed.
pub fn open(dir: &Path) -> Result<(Arc<Db>, Arc<std::sync::atomic::AtomicBool>), rocksdb::Error> {
    let mut options = Options::default();
    options.create_if_missing(true);
    options.create_missing_column_families(true);
    let cfs = [LOG, RAFT, SM].map(|n| ColumnFamilyDescriptor::new(n, Options::default()));
    let db = DB::open_cf_descriptors(&options, dir, cfs)?;
    let closed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    Ok((
        Arc::new(Db {
            db: Some(db),
            closed: closed.clone(),
        }),
        closed,
    ))
}

fn cf<'a>(db: &'a DB, name: &str) -> StorageResult<&'a rocksdb::ColumnFamily> {
    db.cf_handle(name).ok_or_else(|| {
        io(
            ErrorSubject::Store,
            ErrorVerb::Read,
            std::io::Error::other(format!("column family {name} is missing")),
        )
    })
}

fn get_json<T: for<'de> Deserialize<'de>>(
    db: &DB,
    family: &str,
    key: &[u8],
    subject: ErrorSubject<NodeId>,
) -> StorageResult<Option<T>> {
    let Some(bytes) = db
        .get_cf(cf(db, family)?, key)
        .map_err(|e| io(subject.clone(), ErrorVerb::Read, e))?
    else {
        return Ok(None);
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| io(subject, ErrorVerb::Read, e))
}

fn put_json<T: Serialize>(
    db: &DB,
    family: &str,
    key: &[u8],
    value: &T,
    subject: ErrorSubject<NodeId>,
) -> StorageResult<()> {
    let bytes = serde_json::to_vec(value).map_err(|e| io(subject.clone(), ErrorVerb::Write, e))?;
    db.put_cf_opt(cf(db, family)?, key, bytes, &synced())
        .map_err(|e| io(subject, ErrorVerb::Write, e))
}

/// The Raft log.
#[derive(Debug, Clone)]
pub struct LogStore {
    db: Arc<Db>,
}

impl LogStore {
    /// The log in `db`.
    pub fn new(db: Arc<Db>) -> Self {
        LogStore { db }
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> StorageResult<Vec<Entry<TypeConfig>>> {
        let start = match range.start_bound() {
            Bound::Included(&x) => x,
            Bound::Excluded(&x) => x + 1,
            Bound::Unbounded => 0,
        };
        let from = start.to_be_bytes();
        let mut out = Vec::new();
        for item in self.db.iterator_cf(
            cf(&self.db, LOG)?,
            IteratorMode::From(&from, Direction::Forward),
        ) {
            let (key, value) = item.map_err(|e| io(ErrorSubject::Logs, ErrorVerb::Read, e))?;
            let index = u64::from_be_bytes(key.as_ref().try_into().map_err(|_| {
                io(
                    ErrorSubject::Logs,
                    ErrorVerb::Read,
                    std::io::Error::other("a log key is not 8 bytes"),
                )
            })?);
            if !range.contains(&index) {
                break;
            }
            let entry: Entry<TypeConfig> = serde_json::from_slice(&value)
                .map_err(|e| io(ErrorSubject::Logs, ErrorVerb::Read, e))?;
            out.push(entry);
        }
        Ok(out)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> StorageResult<LogState<TypeConfig>> {
        let last = match self
            .db
            .iterator_cf(cf(&self.db, LOG)?, IteratorMode::End)
            .next()
        {
            None => None,
            Some(item) => {
                let (_, value) = item.map_err(|e| io(ErrorSubject::Logs, ErrorVerb::Read, e))?;
                let entry: Entry<TypeConfig> = serde_json::from_slice(&value)
                    .map_err(|e| io(ErrorSubject::Logs, ErrorVerb::Read, e))?;
                Some(entry.log_id)
            }
        };
        let last_purged_log_id: Option<LogId<NodeId>> =
            get_json(&self.db, RAFT, b"purged", ErrorSubject::Store)?;
        Ok(LogState {
            last_purged_log_id,
            last_log_id: last.or(last_purged_log_id),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> StorageResult<()> {
        put_json(&self.db, RAFT, b"vote", vote, ErrorSubject::Vote)
    }

    async fn read_vote(&mut self) -> StorageResult<Option<Vote<NodeId>>> {
        get_json(&self.db, RAFT, b"vote", ErrorSubject::Vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> StorageResult<()> {
        put_json(
            &self.db,
            RAFT,
            b"committed",
            &committed,
            ErrorSubject::Store,
        )
    }

    async fn read_committed(&mut self) -> StorageResult<Option<LogId<NodeId>>> {
        Ok(
            get_json::<Option<LogId<NodeId>>>(&self.db, RAFT, b"committed", ErrorSubject::Store)?
                .flatten(),
        )
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> StorageResult<()>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let family = cf(&self.db, LOG)?;
        let mut batch = WriteBatch::default();
        for entry in entries {
            let bytes = serde_json::to_vec(&entry)
                .map_err(|e| io(ErrorSubject::Logs, ErrorVerb::Write, e))?;
            batch.put_cf(family, entry.log_id.index.to_be_bytes(), bytes);
        }
        let written = self.db.write_opt(batch, &synced());
        let result = written
            .as_ref()
            .map(|_| ())
            .map_err(|e| std::io::Error::other(e.to_string()));
        callback.log_io_completed(result);
        written.map_err(|e| io(ErrorSubject::Logs, ErrorVerb::Write, e))
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> StorageResult<()> {
        let family = cf(&self.db, LOG)?;
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(family, log_id.index.to_be_bytes(), u64::MAX.to_be_bytes());
        batch.delete_cf(family, u64::MAX.to_be_bytes());
        self.db
            .write_opt(batch, &synced())
            .map_err(|e| io(ErrorSubject::Logs, ErrorVerb::Write, e))
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> StorageResult<()> {
        put_json(&self.db, RAFT, b"purged", &log_id, ErrorSubject::Store)?;
        let family = cf(&self.db, LOG)?;
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(family, 0u64.to_be_bytes(), (log_id.index + 1).to_be_bytes());
        self.db
            .write_opt(batch, &synced())
            .map_err(|e| io(ErrorSubject::Logs, ErrorVerb::Write, e))
    }
}

/// A snapshot as stored and sent: the metadata with the log id and membership it holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta<NodeId, NodeAddr>,
    /// The state's JSON, kept as a string: as bytes, JSON would write each as a number.
    data: String,
}

/// What the state machine knows, in memory; shared with readers.
#[derive(Debug, Default)]
pub struct Applied {
    /// The metadata.
    pub state: MetaState,
    /// The last entry applied.
    pub log_id: Option<LogId<NodeId>>,
    /// The membership as of that entry.
    pub membership: StoredMembership<NodeId, NodeAddr>,
}

/// The state machine: the metadata in memory, each change written to `sm`.
#[derive(Debug, Clone)]
pub struct StateMachine {
    db: Arc<Db>,
    applied: Arc<RwLock<Applied>>,
    snapshots: u64,
}

fn key_of(t: &Touched) -> Vec<u8> {
    match t {
        Touched::Node(id) => [b"n/".as_slice(), &id.to_be_bytes()].concat(),
        Touched::Stream(name) => [b"s/", name.as_bytes()].concat(),
        Touched::Manifest(name, p) => [b"m/", name.as_bytes(), b"\0", &p.to_be_bytes()].concat(),
        Touched::Coordinator(group) => [b"c/", group.as_bytes()].concat(),
        Touched::Offset(group, stream, p) => [
            b"o/",
            group.as_bytes(),
            b"\0",
            stream.as_bytes(),
            b"\0",
            &p.to_be_bytes(),
        ]
        .concat(),
    }
}

/// The stored value of what `t` names, or `None` when it is gone.
fn value_of(state: &MetaState, t: &Touched) -> Result<Option<Vec<u8>>, serde_json::Error> {
    match t {
        Touched::Node(id) => state.nodes.get(id).map(serde_json::to_vec).transpose(),
        Touched::Stream(name) => state
            .streams
            .get(name)
            .map(|s| serde_json::to_vec(&(s, state.placement.get(name))))
            .transpose(),
        Touched::Manifest(name, p) => state
            .manifests
            .get(name)
            .and_then(|m| m.get(p))
            .map(serde_json::to_vec)
            .transpose(),
        Touched::Coordinator(group) => state
            .coordinators
            .get(group)
            .map(serde_json::to_vec)
            .transpose(),
        Touched::Offset(group, stream, p) => state
            .committed(group, stream, *p)
            .map(serde_json::to_vec)
            .transpose(),
    }
}

impl StateMachine {
    /// Loads the state machine stored in `db`.
    pub fn open(db: Arc<Db>) -> StorageResult<Self> {
        let applied = load(&db)?;
        Ok(StateMachine {
            db,
            applied: Arc::new(RwLock::new(applied)),
            snapshots: 0,
        })
    }

    /// The in-memory view readers share.
    pub fn view(&self) -> Arc<RwLock<Applied>> {
        self.applied.clone()
    }

    /// Replaces everything stored with `applied` (an installed snapshot).
    fn replace(&self, applied: Applied) -> StorageResult<()> {
        let w = |e: serde_json::Error| io(ErrorSubject::StateMachine, ErrorVerb::Write, e);
        let family = cf(&self.db, SM)?;
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(family, [0u8].as_slice(), [0xffu8; 9].as_slice());
        let state = &applied.state;
        let all = state
            .nodes
            .keys()
            .map(|&id| Touched::Node(id))
            .chain(state.streams.keys().map(|n| Touched::Stream(n.clone())))
            .chain(
                state
                    .manifests
                    .iter()
                    .flat_map(|(n, ps)| ps.keys().map(move |&p| Touched::Manifest(n.clone(), p))),
            )
            .chain(
                state
                    .coordinators
                    .keys()
                    .map(|g| Touched::Coordinator(g.clone())),
            )
            .chain(state.offsets.iter().flat_map(|(g, streams)| {
                streams.iter().flat_map(move |(stream, ps)| {
                    ps.keys()
                        .map(move |&p| Touched::Offset(g.clone(), stream.clone(), p))
                })
            }));
        for t in all {
            if let Some(v) = value_of(state, &t).map_err(w)? {
                batch.put_cf(family, key_of(&t), v);
            }
        }
        batch.put_cf(
            family,
            APPLIED,
            serde_json::to_vec(&applied.log_id).map_err(w)?,
        );
        batch.put_cf(
            family,
            MEMBERSHIP,
            serde_json::to_vec(&applied.membership).map_err(w)?,
        );
        self.db
            .write_opt(batch, &synced())
            .map_err(|e| io(ErrorSubject::StateMachine, ErrorVerb::Write, e))?;
        *self.applied.write() = applied;
        Ok(())
    }
}

/// Reads the stored metadata back into memory.
fn load(db: &DB) -> StorageResult<Applied> {
    let r = |e: serde_json::Error| io(ErrorSubject::StateMachine, ErrorVerb::Read, e);
    let mut out = Applied::default();
    for item in db.iterator_cf(cf(db, SM)?, IteratorMode::Start) {
        let (key, value) = item.map_err(|e| io(ErrorSubject::StateMachine, ErrorVerb::Read, e))?;
        match key.as_ref() {
            APPLIED => out.log_id = serde_json::from_slice(&value).map_err(r)?,
            MEMBERSHIP => out.membership = serde_json::from_slice(&value).map_err(r)?,
            k if k.starts_with(b"n/") => {
                let n: crate::model::NodeInfo = serde_json::from_slice(&value).map_err(r)?;
                out.state.nodes.insert(n.id, n);
            }
            k if k.starts_with(b"s/") => {
                let (s, placement): (crate::model::StreamMeta, Option<Vec<_>>) =
                    serde_json::from_slice(&value).map_err(r)?;
                if let Some(p) = placement {
                    out.state.placement.insert(s.name.clone(), p);
                }
                out.state.streams.insert(s.name.clone(), s);
            }
            k if k.starts_with(b"m/") => {
                let rest = &k[2..];
                let Some(split) = rest.iter().position(|&b| b == 0) else {
                    continue;
                };
                let name = String::from_utf8_lossy(&rest[..split]).into_owned();
                let Ok(p) = <[u8; 4]>::try_from(&rest[split + 1..]) else {
                    continue;
                };
                let entries = serde_json::from_slice(&value).map_err(r)?;
                out.state
                    .manifests
                    .entry(name)
                    .or_default()
                    .insert(u32::from_be_bytes(p), entries);
            }
            k if k.starts_with(b"o/") => {
                let mut fields = k[2..].splitn(3, |&b| b == 0);
                let (Some(group), Some(stream), Some(p)) =
                    (fields.next(), fields.next(), fields.next())
                else {
                    continue;
                };
                let Ok(p) = <[u8; 4]>::try_from(p) else {
                    continue;
                };
                let c: CommittedOffset = serde_json::from_slice(&value).map_err(r)?;
                out.state.offset_metadata_bytes += metadata_len(&c);
                let previous = out
                    .state
                    .offsets
                    .entry(String::from_utf8_lossy(group).into_owned())
                    .or_default()
                    .entry(String::from_utf8_lossy(stream).into_owned())
                    .or_default()
                    .insert(u32::from_be_bytes(p), c);
                match previous {
                    None => out.state.offset_count += 1,
                    Some(p) => out.state.offset_metadata_bytes -= metadata_len(&p),
                }
            }
            k if k.starts_with(b"c/") => {
                let group = String::from_utf8_lossy(&k[2..]).into_owned();
                out.state
                    .coordinators
                    .insert(group, serde_json::from_slice(&value).map_err(r)?);
            }
            _ => {}
        }
    }
    Ok(out)
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(
        &mut self,
    ) -> StorageResult<(Option<LogId<NodeId>>, StoredMembership<NodeId, NodeAddr>)> {
        let a = self.applied.read();
        Ok((a.log_id, a.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> StorageResult<Vec<Outcome>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let w = |e: serde_json::Error| io(ErrorSubject::StateMachine, ErrorVerb::Write, e);
        let family = cf(&self.db, SM)?;
        let mut batch = WriteBatch::default();
        let mut outcomes = Vec::new();
        let mut applied = self.applied.write();
        for entry in entries {
            applied.log_id = Some(entry.log_id);
            match entry.payload {
                EntryPayload::Blank => outcomes.push(Outcome::Done),
                EntryPayload::Normal(command) => {
                    let (outcome, touched) = applied.state.apply(&command);
                    for t in touched {
                        match value_of(&applied.state, &t).map_err(w)? {
                            Some(v) => batch.put_cf(family, key_of(&t), v),
                            None => batch.delete_cf(family, key_of(&t)),
                        }
                    }
                    outcomes.push(outcome);
                }
                EntryPayload::Membership(m) => {
                    applied.membership = StoredMembership::new(Some(entry.log_id), m);
                    batch.put_cf(
                        family,
                        MEMBERSHIP,
                        serde_json::to_vec(&applied.membership).map_err(w)?,
                    );
                    outcomes.push(Outcome::Done);
                }
            }
        }
        batch.put_cf(
            family,
            APPLIED,
            serde_json::to_vec(&applied.log_id).map_err(w)?,
        );
        self.db
            .write_opt(batch, &synced())
            .map_err(|e| io(ErrorSubject::StateMachine, ErrorVerb::Write, e))?;
        Ok(outcomes)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.snapshots += 1;
        SnapshotBuilder {
            db: self.db.clone(),
            applied: self.applied.clone(),
            number: self.snapshots,
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> StorageResult<Box<Cursor<Vec<u8>>>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, NodeAddr>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> StorageResult<()> {
        let data = snapshot.into_inner();
        let state: MetaState = serde_json::from_slice(&data).map_err(|e| {
            io(
                ErrorSubject::Snapshot(Some(meta.signature())),
                ErrorVerb::Read,
                e,
            )
        })?;
        self.replace(Applied {
            state,
            log_id: meta.last_log_id,
            membership: meta.last_membership.clone(),
        })?;
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data: String::from_utf8(data).map_err(|e| {
                io(
                    ErrorSubject::Snapshot(Some(meta.signature())),
                    ErrorVerb::Read,
                    e,
                )
            })?,
        };
        put_json(
            &self.db,
            RAFT,
            b"snapshot",
            &stored,
            ErrorSubject::Snapshot(Some(meta.signature())),
        )
    }

    async fn get_current_snapshot(&mut self) -> StorageResult<Option<Snapshot<TypeConfig>>> {
        let stored: Option<StoredSnapshot> =
            get_json(&self.db, RAFT, b"snapshot", ErrorSubject::Snapshot(None))?;
        Ok(stored.map(|s| Snapshot {
            meta: s.meta,
            snapshot: Box::new(Cursor::new(s.data.into_bytes())),
        }))
    }
}

/// Builds a snapshot of the state machine as it is when asked.
#[derive(Debug)]
pub struct SnapshotBuilder {
    db: Arc<Db>,
    applied: Arc<RwLock<Applied>>,
    number: u64,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> StorageResult<Snapshot<TypeConfig>> {
        let (data, log_id, membership) = {
            let a = self.applied.read();
            let data = serde_json::to_string(&a.state)
                .map_err(|e| io(ErrorSubject::Snapshot(None), ErrorVerb::Write, e))?;
            (data, a.log_id, a.membership.clone())
        };
        let snapshot_id = match log_id {
            Some(l) => format!("{}-{}-{}", l.leader_id, l.index, self.number),
            None => format!("--{}", self.number),
        };
        let meta = SnapshotMeta {
            last_log_id: log_id,
            last_membership: membership,
            snapshot_id,
        };
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data,
        };
        put_json(
            &self.db,
            RAFT,
            b"snapshot",
            &stored,
            ErrorSubject::Snapshot(Some(meta.signature())),
        )?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(stored.data.into_bytes())),
        })
    }
}
