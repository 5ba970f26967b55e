//! The file-system seam. Every byte the `segment` class reads or writes, every fsync,
//! rename and removal goes through [`FileSystem`], so tests can inject faults.

mod faulty;
mod std_fs;
mod volatile;

pub use faulty::{Faults, FaultyFs};
pub use std_fs::StdFs;
pub use volatile::VolatileFs;

use std::fmt::Debug;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// An open file addressed by position.
///
/// Contract: `write_at` either writes all of `buf` or returns an error, in which case any
/// prefix of `buf` MAY have reached the file (the caller truncates it away). `sync` MUST NOT
/// return `Ok` unless every byte written before the call is on stable storage.
/// Implementations MUST be safe to call from several threads at once.
pub trait JournalFile: Send + Sync + Debug {
    /// Reads exactly `buf.len()` bytes at `pos`; `UnexpectedEof` past the end.
    fn read_exact_at(&self, buf: &mut [u8], pos: u64) -> io::Result<()>;
    /// Writes all of `buf` at `pos`.
    fn write_all_at(&self, buf: &[u8], pos: u64) -> io::Result<()>;
    /// Flushes file data (and the size) to stable storage.
    fn sync(&self) -> io::Result<()>;
    /// Current length in bytes.
    fn len(&self) -> io::Result<u64>;
    /// True when the file holds no bytes.
    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }
    /// Truncates or extends the file to `len` bytes.
    fn set_len(&self, len: u64) -> io::Result<()>;
}

/// Directory and file operations the journal needs.
///
/// Contract: `rename` is atomic; `sync_dir` makes earlier creations, renames and removals
/// in that directory durable.
pub trait FileSystem: Send + Sync + Debug + 'static {
    /// Opens a file for reading and writing, creating it when `create` is set.
    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn JournalFile>>;
    /// Creates a directory and its parents.
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Lists the entries of a directory (full paths), in no particular order.
    fn read_dir(&self, path: &Path) -> io::Result<Vec<PathBuf>>;
    /// Removes a file.
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Removes a directory and everything in it.
    fn remove_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Atomically renames a file or directory.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Makes directory entry changes durable.
    fn sync_dir(&self, path: &Path) -> io::Result<()>;
    /// True when the path exists.
    fn exists(&self, path: &Path) -> bool;
}

/// A file system layered on another: directory operations pass through to `inner`, and
/// every file it opens is wrapped by `wrap`. What [`FaultyFs`] and [`VolatileFs`] share.
trait Layer: Send + Sync + Debug + 'static {
    /// The file system underneath.
    fn inner(&self) -> &dyn FileSystem;
    /// Wraps a file `inner` opened.
    fn wrap(&self, file: Arc<dyn JournalFile>) -> Arc<dyn JournalFile>;
    /// Runs before a directory fsync is passed on (an error fails it).
    fn before_sync_dir(&self) -> io::Result<()> {
        Ok(())
    }
}

impl<L: Layer> FileSystem for L {
    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn JournalFile>> {
        Ok(self.wrap(self.inner().open(path, create)?))
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        self.inner().create_dir_all(path)
    }

    fn read_dir(&self, path: &Path) -> io::Result<Vec<PathBuf>> {
        self.inner().read_dir(path)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.inner().remove_file(path)
    }

    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        self.inner().remove_dir_all(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.inner().rename(from, to)
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        self.before_sync_dir()?;
        self.inner().sync_dir(path)
    }

    fn exists(&self, path: &Path) -> bool {
        self.inner().exists(path)
    }
}

/// Reads a whole file through the seam.
pub fn read_file(fs: &dyn FileSystem, path: &Path) -> io::Result<Vec<u8>> {
    let file = fs.open(path, false)?;
    let len = usize::try_from(file.len()?).map_err(io::Error::other)?;
    let mut buf = vec![0u8; len];
    file.read_exact_at(&mut buf, 0)?;
    Ok(buf)
}

/// Replaces `path` with `data` atomically and durably (temporary file, fsync, rename,
/// directory fsync).
pub fn write_file_atomic(fs: &dyn FileSystem, path: &Path, data: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = path.with_extension("tmp");
    let file = fs.open(&tmp, true)?;
    file.set_len(0)?;
    file.write_all_at(data, 0)?;
    file.sync()?;
    drop(file);
    fs.rename(&tmp, path)?;
    fs.sync_dir(dir)
}
