//! The manifest of a partition's remote objects: which object holds which offset range.
//! It is the only truth about remote data: an object no manifest entry names is an orphan
//! (an upload interrupted before it was recorded) and may be deleted; an entry is added
//! only after its upload was confirmed, so every entry names a readable object.
//!
//! Stored in one local file as a log of JSON lines, one change per line, each appended
//! and fsynced before the change counts: an addition costs one small write however many
//! entries there are. A line cut short by a crash is ignored (its change never counted);
//! the file is rewritten atomically (temporary file, fsync, rename, fsync of the
//! directory) once it holds many more lines than entries.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// One remote object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// First offset in the object.
    pub base_offset: u64,
    /// Last offset in the object.
    pub last_offset: u64,
    /// Object key.
    pub key: String,
    /// Object size in bytes.
    pub size: u64,
    /// Largest record timestamp in the object (milliseconds), for retention by age.
    pub max_timestamp: i64,
    /// Bytes at the end of the object that are its index rather than batches.
    #[serde(default)]
    pub index_len: u64,
}

impl Entry {
    /// Bytes of batches (the object minus its index).
    pub fn data_len(&self) -> u64 {
        self.size.saturating_sub(self.index_len)
    }
}

/// A partition's manifest.
#[derive(Debug)]
pub struct Manifest {
    path: PathBuf,
    entries: BTreeMap<u64, Entry>,
    /// Lines in the file.
    lines: usize,
}

/// One line of the file.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
enum Change {
    /// An object was uploaded.
    Add(Entry),
    /// Entries ending before this offset are gone (retention).
    DropBefore(u64),
}

/// A manifest file that cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// I/O on the file.
    #[error("manifest {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a manifest this version understands.
    #[error("manifest {path} is damaged: {reason}")]
    Damaged {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

fn apply(entries: &mut BTreeMap<u64, Entry>, change: Change) -> Result<(), String> {
    match change {
        Change::Add(e) => {
            if e.last_offset < e.base_offset {
                return Err(format!("entry {} ends before it starts", e.base_offset));
            }
            if e.index_len > e.size {
                return Err(format!(
                    "entry {} has an index larger than it",
                    e.base_offset
                ));
            }
            entries.insert(e.base_offset, e);
        }
        Change::DropBefore(offset) => entries.retain(|_, e| e.last_offset >= offset),
    }
    Ok(())
}

/// The entries of a stored manifest, by base offset, and its number of lines; why not when
/// it cannot be one. A last line without its newline is a write a crash cut short: ignored.
pub fn parse(bytes: &[u8]) -> Result<(BTreeMap<u64, Entry>, usize), String> {
    let mut entries = BTreeMap::new();
    let mut lines = 0;
    let complete = bytes
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(&bytes[..0], |i| &bytes[..i]);
    for (n, line) in complete.split(|&b| b == b'\n').enumerate() {
        if line.is_empty() {
            continue;
        }
        let change: Change =
            serde_json::from_slice(line).map_err(|e| format!("line {}: {e}", n + 1))?;
        apply(&mut entries, change).map_err(|e| format!("line {}: {e}", n + 1))?;
        lines += 1;
    }
    Ok((entries, lines))
}

impl Manifest {
    /// Loads the manifest at `path`; an empty one when the file does not exist.
    pub fn load(path: &Path) -> Result<Self, ManifestError> {
        let io = |source| ManifestError::Io {
            path: path.to_path_buf(),
            source,
        };
        let (entries, lines) = match fs::read(path) {
            Ok(bytes) => parse(&bytes).map_err(|reason| ManifestError::Damaged {
                path: path.to_path_buf(),
                reason,
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (BTreeMap::new(), 0),
            Err(e) => return Err(io(e)),
        };
        let mut m = Manifest {
            path: path.to_path_buf(),
            entries,
            lines,
        };
        // Drops a torn last line and starts from a compact file.
        if lines > 0 {
            m.rewrite()?;
        }
        Ok(m)
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Entries in offset order.
    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.entries.values()
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entry whose range holds `offset`.
    pub fn find(&self, offset: u64) -> Option<&Entry> {
        self.entries
            .range(..=offset)
            .next_back()
            .map(|(_, e)| e)
            .filter(|e| offset <= e.last_offset)
    }

    /// One past the last remote offset (0 when nothing is remote).
    pub fn end(&self) -> u64 {
        self.entries
            .values()
            .next_back()
            .map_or(0, |e| e.last_offset + 1)
    }

    /// Records an uploaded object durably.
    pub fn add(&mut self, entry: Entry) -> Result<(), ManifestError> {
        self.log(&Change::Add(entry.clone()))?;
        self.entries.insert(entry.base_offset, entry);
        Ok(())
    }

    /// Removes the entries whose whole range is below `offset` (retention) durably;
    /// returns them, so their objects can be deleted afterwards.
    pub fn remove_before(&mut self, offset: u64) -> Result<Vec<Entry>, ManifestError> {
        let gone: Vec<u64> = self
            .entries
            .values()
            .filter(|e| e.last_offset < offset)
            .map(|e| e.base_offset)
            .collect();
        if gone.is_empty() {
            return Ok(Vec::new());
        }
        self.log(&Change::DropBefore(offset))?;
        Ok(gone.iter().filter_map(|b| self.entries.remove(b)).collect())
    }

    /// Keys among `listed` (the objects found under the partition's prefix) that no entry
    /// names: orphans of interrupted uploads.
    pub fn orphans<'a>(&self, listed: &'a [String]) -> Vec<&'a str> {
        let named: std::collections::HashSet<&str> =
            self.entries.values().map(|e| e.key.as_str()).collect();
        listed
            .iter()
            .map(String::as_str)
            .filter(|k| !named.contains(k))
            .collect()
    }

    fn io(&self) -> impl FnOnce(std::io::Error) -> ManifestError + '_ {
        |source| ManifestError::Io {
            path: self.path.clone(),
            source,
        }
    }

    /// Appends one change and fsyncs it; compacts the file when it has grown.
    fn log(&mut self, change: &Change) -> Result<(), ManifestError> {
        if self.lines >= 2 * self.entries.len() + 64 {
            self.rewrite()?;
        }
        let mut line = serde_json::to_vec(change).unwrap_or_default();
        line.push(b'\n');
        let fresh = !self.path.exists();
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(self.io())?;
        f.write_all(&line).map_err(self.io())?;
        f.sync_data().map_err(self.io())?;
        if fresh {
            self.sync_dir()?;
        }
        self.lines += 1;
        Ok(())
    }

    fn sync_dir(&self) -> Result<(), ManifestError> {
        if let Some(dir) = self.path.parent() {
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(self.io())?;
        }
        Ok(())
    }

    /// Replaces the file with one line per entry.
    fn rewrite(&mut self) -> Result<(), ManifestError> {
        let mut bytes = Vec::new();
        for e in self.entries.values() {
            bytes.extend(serde_json::to_vec(&Change::Add(e.clone())).unwrap_or_default());
            bytes.push(b'\n');
        }
        let tmp = self.path.with_extension("tmp");
        let mut f = File::create(&tmp).map_err(self.io())?;
        f.write_all(&bytes).map_err(self.io())?;
        f.sync_all().map_err(self.io())?;
        fs::rename(&tmp, &self.path).map_err(self.io())?;
        self.sync_dir()?;
        self.lines = self.entries.len();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(base: u64, last: u64) -> Entry {
        Entry {
            base_offset: base,
            last_offset: last,
            key: format!("p0/{base:020}"),
            size: 100,
            max_timestamp: 0,
            index_len: 0,
        }
    }

    #[test]
    fn entries_are_found_by_offset_and_survive_reload() -> Result<(), ManifestError> {
        let dir = tempfile::tempdir().map_err(|source| ManifestError::Io {
            path: PathBuf::new(),
            source,
        })?;
        let path = dir.path().join("manifest.json");
        let mut m = Manifest::load(&path)?;
        assert_eq!(m.end(), 0);
        m.add(entry(0, 99))?;
        m.add(entry(100, 249))?;
        let m = Manifest::load(&path)?;
        assert_eq!(m.find(0).map(|e| e.base_offset), Some(0));
        assert_eq!(m.find(99).map(|e| e.base_offset), Some(0));
        assert_eq!(m.find(100).map(|e| e.base_offset), Some(100));
        assert_eq!(m.find(249).map(|e| e.base_offset), Some(100));
        assert!(m.find(250).is_none());
        assert_eq!(m.end(), 250);
        let listed = vec![
            "p0/00000000000000000000".to_string(),
            "p0/00000000000000000100".to_string(),
            "p0/00000000000000000250".to_string(),
        ];
        assert_eq!(m.orphans(&listed), vec!["p0/00000000000000000250"]);
        // Many changes compact into one line per entry.
        let mut m = m;
        for i in 0..200u64 {
            m.add(entry(250 + i * 10, 259 + i * 10))?;
            m.remove_before(250 + i * 10)?;
        }
        let m = Manifest::load(&path)?;
        assert_eq!((m.len(), m.end()), (1, 2250));
        assert!(fs::read_to_string(&path).map_or(0, |s| s.lines().count()) <= 1);
        Ok(())
    }

    #[test]
    fn retention_removes_whole_entries_and_damage_is_reported() -> Result<(), ManifestError> {
        let dir = tempfile::tempdir().map_err(|source| ManifestError::Io {
            path: PathBuf::new(),
            source,
        })?;
        let path = dir.path().join("manifest.json");
        let mut m = Manifest::load(&path)?;
        m.add(entry(0, 99))?;
        m.add(entry(100, 199))?;
        let gone = m.remove_before(150)?;
        assert_eq!(
            gone.iter().map(|e| e.base_offset).collect::<Vec<_>>(),
            vec![0]
        );
        assert_eq!(Manifest::load(&path)?.entries().count(), 1);
        // A torn last line (no newline) is a change that never counted.
        let mut bytes = fs::read(&path).map_err(|source| ManifestError::Io {
            path: path.clone(),
            source,
        })?;
        bytes.extend_from_slice(br#"{"add":{"base_offset":200,"last"#);
        fs::write(&path, &bytes).map_err(|source| ManifestError::Io {
            path: path.clone(),
            source,
        })?;
        let m = Manifest::load(&path)?;
        assert_eq!((m.len(), m.end()), (1, 200));
        fs::write(&path, b"{not json\n").map_err(|source| ManifestError::Io {
            path: path.clone(),
            source,
        })?;
        assert!(matches!(
            Manifest::load(&path),
            Err(ManifestError::Damaged { .. })
        ));
        Ok(())
    }
}
