//! A file system that fails on command: write errors, fsync errors and a full disk.
//! Wraps another [`FileSystem`]; used by tests to prove that failed appends are never
//! acknowledged and that the journal recovers once the fault is gone.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::{FileSystem, JournalFile, Layer};

/// Switches shared by a [`FaultyFs`] and every file it opened.
#[derive(Debug, Default)]
pub struct Faults {
    /// Every write fails with an I/O error.
    pub fail_writes: AtomicBool,
    /// Every fsync fails with an I/O error.
    pub fail_syncs: AtomicBool,
    /// Bytes that may still be written before the disk is "full" (`u64::MAX`: unlimited).
    /// A write that does not fit writes what fits, then fails with `StorageFull`.
    pub space_left: AtomicU64,
}

impl Faults {
    /// No faults, unlimited space.
    pub fn new() -> Arc<Faults> {
        Arc::new(Faults {
            space_left: AtomicU64::new(u64::MAX),
            ..Faults::default()
        })
    }

    /// Clears every fault.
    pub fn heal(&self) {
        self.fail_writes.store(false, Ordering::SeqCst);
        self.fail_syncs.store(false, Ordering::SeqCst);
        self.space_left.store(u64::MAX, Ordering::SeqCst);
    }
}

/// A [`FileSystem`] wrapper that injects the faults in [`Faults`].
#[derive(Debug, Clone)]
pub struct FaultyFs {
    inner: Arc<dyn FileSystem>,
    faults: Arc<Faults>,
}

impl FaultyFs {
    /// Wraps `inner`; faults are controlled through `faults`.
    pub fn new(inner: Arc<dyn FileSystem>, faults: Arc<Faults>) -> Self {
        FaultyFs { inner, faults }
    }
}

#[derive(Debug)]
struct FaultyFile {
    inner: Arc<dyn JournalFile>,
    faults: Arc<Faults>,
}

fn injected(what: &str) -> io::Error {
    io::Error::other(format!("injected {what} failure"))
}

impl JournalFile for FaultyFile {
    fn read_exact_at(&self, buf: &mut [u8], pos: u64) -> io::Result<()> {
        self.inner.read_exact_at(buf, pos)
    }

    fn write_all_at(&self, buf: &[u8], pos: u64) -> io::Result<()> {
        if self.faults.fail_writes.load(Ordering::SeqCst) {
            return Err(injected("write"));
        }
        let want = buf.len() as u64;
        let granted = self
            .faults
            .space_left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
                Some(left.saturating_sub(want))
            })
            .unwrap_or(u64::MAX);
        if granted >= want {
            return self.inner.write_all_at(buf, pos);
        }
        // Write the part that fits, as a real full disk would, then fail.
        self.inner.write_all_at(&buf[..granted as usize], pos)?;
        Err(io::Error::new(
            io::ErrorKind::StorageFull,
            "injected full disk",
        ))
    }

    fn sync(&self) -> io::Result<()> {
        if self.faults.fail_syncs.load(Ordering::SeqCst) {
            return Err(injected("fsync"));
        }
        self.inner.sync()
    }

    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.inner.set_len(len)
    }
}

impl Layer for FaultyFs {
    fn inner(&self) -> &dyn FileSystem {
        &*self.inner
    }

    fn wrap(&self, inner: Arc<dyn JournalFile>) -> Arc<dyn JournalFile> {
        Arc::new(FaultyFile {
            inner,
            faults: self.faults.clone(),
        })
    }

    fn before_sync_dir(&self) -> io::Result<()> {
        if self.faults.fail_syncs.load(Ordering::SeqCst) {
            return Err(injected("directory fsync"));
        }
        Ok(())
    }
}
