//! The manifest of a partition's offloaded segments: which object holds which offset
//! range. It is the only truth about remote data: an object no manifest entry names is an
//! orphan (an upload interrupted before it was recorded) and may be deleted; an entry is
//! added only after its upload was confirmed, so every entry names a readable object.
//!
//! Stored as JSON in one local file, replaced atomically (write a temporary file, fsync,
//! rename, fsync the directory), so a crash leaves either the old or the new manifest.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// One offloaded segment.
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
}

/// A partition's manifest.
#[derive(Debug)]
pub struct Manifest {
    path: PathBuf,
    entries: BTreeMap<u64, Entry>,
}

#[derive(Serialize, Deserialize)]
struct Stored {
    version: u32,
    entries: Vec<Entry>,
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

/// The entries of a stored manifest, by base offset; why not when it cannot be one.
pub fn parse(bytes: &[u8]) -> Result<BTreeMap<u64, Entry>, String> {
    let stored: Stored = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    if stored.version != 1 {
        return Err(format!("unknown version {}", stored.version));
    }
    let mut entries = BTreeMap::new();
    for e in stored.entries {
        if e.last_offset < e.base_offset {
            return Err(format!("entry {} ends before it starts", e.base_offset));
        }
        entries.insert(e.base_offset, e);
    }
    Ok(entries)
}

impl Manifest {
    /// Loads the manifest at `path`; an empty one when the file does not exist.
    pub fn load(path: &Path) -> Result<Self, ManifestError> {
        let io = |source| ManifestError::Io {
            path: path.to_path_buf(),
            source,
        };
        let entries = match fs::read(path) {
            Ok(bytes) => parse(&bytes).map_err(|reason| ManifestError::Damaged {
                path: path.to_path_buf(),
                reason,
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(io(e)),
        };
        Ok(Manifest {
            path: path.to_path_buf(),
            entries,
        })
    }

    /// Entries in offset order.
    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.entries.values()
    }

    /// The entry whose range holds `offset`.
    pub fn find(&self, offset: u64) -> Option<&Entry> {
        self.entries
            .range(..=offset)
            .next_back()
            .map(|(_, e)| e)
            .filter(|e| offset <= e.last_offset)
    }

    /// One past the last offloaded offset (0 when nothing is offloaded).
    pub fn end(&self) -> u64 {
        self.entries
            .values()
            .next_back()
            .map_or(0, |e| e.last_offset + 1)
    }

    /// Records an uploaded object and saves the manifest durably.
    pub fn add(&mut self, entry: Entry) -> Result<(), ManifestError> {
        self.entries.insert(entry.base_offset, entry);
        self.save()
    }

    /// Removes the entries whose whole range is below `offset` (retention) and saves the
    /// manifest; returns them, so their objects can be deleted afterwards.
    pub fn remove_before(&mut self, offset: u64) -> Result<Vec<Entry>, ManifestError> {
        let gone: Vec<u64> = self
            .entries
            .values()
            .filter(|e| e.last_offset < offset)
            .map(|e| e.base_offset)
            .collect();
        let removed: Vec<Entry> = gone.iter().filter_map(|b| self.entries.remove(b)).collect();
        if !removed.is_empty() {
            self.save()?;
        }
        Ok(removed)
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

    fn save(&self) -> Result<(), ManifestError> {
        let io = |source| ManifestError::Io {
            path: self.path.clone(),
            source,
        };
        let stored = Stored {
            version: 1,
            entries: self.entries.values().cloned().collect(),
        };
        let bytes = serde_json::to_vec_pretty(&stored).unwrap_or_default();
        let tmp = self.path.with_extension("tmp");
        let mut f = File::create(&tmp).map_err(io)?;
        f.write_all(&bytes).map_err(io)?;
        f.sync_all().map_err(io)?;
        fs::rename(&tmp, &self.path).map_err(io)?;
        if let Some(dir) = self.path.parent() {
            File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
        }
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
        fs::write(&path, b"{not json").map_err(|source| ManifestError::Io {
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
