//! A file system whose unsynced writes live only in this process's memory, so a crash of
//! the process (SIGKILL) loses every byte that was not fsynced, as a power loss would.
//!
//! The operating system keeps a killed process's writes in its page cache, so killing a
//! node alone never shows what the journal would lose when the machine itself went down.
//! Wrapped around the real file system, this one holds each file's writes back until
//! `sync` (or a `set_len`, which the journal follows with a sync) and hands them to the
//! file then; reads see them meanwhile. The chaos harness runs nodes with it
//! (`CHAOS_VOLATILE_WRITES=1`): every kill is then a power loss of that node.
//!
//! Only for `fsync = "always"`: the node refuses it otherwise (under `never`, sealed
//! segments are never synced and their bytes would pile up in memory).
//!
//! Not simulated: directory entries (a created or renamed file survives the crash
//! whether or not its directory was synced) and torn sectors within a synced write.
//! The journal opens each file through one handle, which is what makes a per-handle
//! buffer enough: a second handle on the same path would not see the first's
//! unsynced writes.

use std::io;
use std::sync::Arc;

use parking_lot::Mutex;

use super::{FileSystem, JournalFile, Layer};

/// A [`FileSystem`] wrapper that keeps unsynced writes in memory.
#[derive(Debug, Clone)]
pub struct VolatileFs {
    inner: Arc<dyn FileSystem>,
}

impl VolatileFs {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn FileSystem>) -> Self {
        VolatileFs { inner }
    }
}

#[derive(Debug)]
struct VolatileFile {
    inner: Arc<dyn JournalFile>,
    /// Writes since the last sync, in the order they were made.
    pending: Mutex<Vec<(u64, Vec<u8>)>>,
}

impl VolatileFile {
    /// Hands every pending write to the file (still to be synced).
    fn apply(&self, pending: &mut Vec<(u64, Vec<u8>)>) -> io::Result<()> {
        for (pos, data) in pending.iter() {
            self.inner.write_all_at(data, *pos)?;
        }
        pending.clear();
        Ok(())
    }
}

impl JournalFile for VolatileFile {
    fn read_exact_at(&self, buf: &mut [u8], pos: u64) -> io::Result<()> {
        let pending = self.pending.lock();
        let end = pos + buf.len() as u64;
        let on_file = self.inner.len()?;
        let logical = pending
            .iter()
            .map(|(p, d)| p + d.len() as u64)
            .fold(on_file, u64::max);
        if end > logical {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "read past the end of the file",
            ));
        }
        // What the file holds, zeros past its end, then the writes over it in order.
        let from_file = on_file.saturating_sub(pos).min(buf.len() as u64) as usize;
        if from_file > 0 {
            self.inner.read_exact_at(&mut buf[..from_file], pos)?;
        }
        buf[from_file..].fill(0);
        for (p, data) in pending.iter() {
            let (start, stop) = ((*p).max(pos), (p + data.len() as u64).min(end));
            if start < stop {
                buf[(start - pos) as usize..(stop - pos) as usize]
                    .copy_from_slice(&data[(start - p) as usize..(stop - p) as usize]);
            }
        }
        Ok(())
    }

    fn write_all_at(&self, buf: &[u8], pos: u64) -> io::Result<()> {
        self.pending.lock().push((pos, buf.to_vec()));
        Ok(())
    }

    fn sync(&self) -> io::Result<()> {
        // Handed to the file under the lock (a copy into the page cache), synced outside
        // it, as a real file's writers do not wait for another's fsync.
        self.apply(&mut self.pending.lock())?;
        self.inner.sync()
    }

    fn len(&self) -> io::Result<u64> {
        let pending = self.pending.lock();
        Ok(pending
            .iter()
            .map(|(p, d)| p + d.len() as u64)
            .fold(self.inner.len()?, u64::max))
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let mut pending = self.pending.lock();
        self.apply(&mut pending)?;
        self.inner.set_len(len)
    }
}

impl Drop for VolatileFile {
    /// A file closed without a sync keeps its writes, as the page cache would: only a
    /// crash loses them.
    fn drop(&mut self) {
        let pending = self.pending.get_mut();
        for (pos, data) in pending.drain(..) {
            let _ = self.inner.write_all_at(&data, pos);
        }
    }
}

impl Layer for VolatileFs {
    fn inner(&self) -> &dyn FileSystem {
        &*self.inner
    }

    fn wrap(&self, inner: Arc<dyn JournalFile>) -> Arc<dyn JournalFile> {
        Arc::new(VolatileFile {
            inner,
            pending: Mutex::new(Vec::new()),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::fs::StdFs;

    #[test]
    fn unsynced_writes_are_read_back_but_reach_the_file_only_at_sync() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let fs = VolatileFs::new(Arc::new(StdFs));
        let file = fs.open(&path, true).unwrap();
        file.write_all_at(b"hello", 0).unwrap();
        file.sync().unwrap();
        file.write_all_at(b" world", 5).unwrap();
        file.write_all_at(b"W", 6).unwrap();
        assert_eq!(file.len().unwrap(), 11);
        let mut buf = [0u8; 8];
        file.read_exact_at(&mut buf, 3).unwrap();
        assert_eq!(&buf, b"lo World");
        assert!(file.read_exact_at(&mut buf, 4).is_err());
        // What a crash now would leave: only the synced bytes.
        assert_eq!(std::fs::read(&path).unwrap(), b"hello");
        file.sync().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"hello World");
        file.write_all_at(b"!!", 11).unwrap();
        file.set_len(4).unwrap();
        assert_eq!(file.len().unwrap(), 4);
        assert_eq!(std::fs::read(&path).unwrap(), b"hell");
    }
}
