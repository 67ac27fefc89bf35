//! Temp pins: the writer's side of the protocol between writers and the garbage collector.
//!
//! Every process that writes blocks protects them first in `R/pins/temp/{pid}-{n}`, a file it
//! holds an exclusive `flock` on for as long as it lives. Each batch of CIDs is appended while
//! holding `R/pins/lock` *shared*; the collector takes that lock *exclusive* for each short
//! batch of deletions, after re-reading every temp pin file. So a block is either protected
//! before the collector's last look (and kept), or its writer finds it deleted when it checks
//! for it after protecting it (and writes it again). The full protocol, with the collector's
//! side, is documented in the `cairn-gc` crate.

use std::{
    fs::{File, OpenOptions},
    io::{self, Write},
    os::unix::fs::{MetadataExt, OpenOptionsExt},
    path::{Path, PathBuf},
    sync::atomic::{AtomicU64, Ordering},
};

use cid::Cid;

static SEQ: AtomicU64 = AtomicU64::new(0);

use crate::{journal::flock, layout::Layout, StoreError};

/// This process's temp pin file, locked. Dropping it releases the pins (and deletes the file).
#[derive(Debug)]
pub struct TempPins {
    file: File,
    path: PathBuf,
    lock: File,
    buf: Vec<u8>,
}

impl TempPins {
    /// Creates `R/pins/temp/{pid}-{n}`, `n` counting the handles of this process (each
    /// `Store` has its own, so two in one process never wait for each other's lock). A file
    /// of that name left by a dead process with our pid is taken over.
    pub fn create(layout: &Layout) -> Result<TempPins, StoreError> {
        let lock_path = layout.pins_lock();
        let lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(|e| StoreError::io(&lock_path, e))?;
        loop {
            let n = SEQ.fetch_add(1, Ordering::Relaxed);
            let path = layout
                .temp_pins()
                .join(format!("{}-{n}", std::process::id()));
            let file = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o644)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&path)
                .map_err(|e| StoreError::io(&path, e))?;
            // Never wait: a lock held by someone else (a process with our pid in another pid
            // namespace sharing this root) means the name is taken; try the next one.
            match flock(&file, libc::LOCK_EX | libc::LOCK_NB) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(StoreError::io(&path, e)),
            }
            // The collector may have deleted the file (its writer died) between our open and
            // our lock: then we hold a lock on an unlinked file. Start again.
            let ours = file.metadata().map_err(|e| StoreError::io(&path, e))?;
            match std::fs::symlink_metadata(&path) {
                Ok(m) if m.ino() == ours.ino() && m.dev() == ours.dev() => {
                    file.set_len(0).map_err(|e| StoreError::io(&path, e))?;
                    return Ok(TempPins {
                        file,
                        path,
                        lock,
                        buf: Vec::with_capacity(4096),
                    });
                }
                Ok(_) => continue,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(StoreError::io(&path, e)),
            }
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Records `cids` as in use by this process. Returns once they are visible to the
    /// collector; only then may the caller look for or write their blocks.
    pub fn protect(&mut self, cids: &[Cid]) -> Result<(), StoreError> {
        self.buf.clear();
        for c in cids {
            self.buf.extend_from_slice(crate::block_name(c).as_bytes());
            self.buf.push(b'\n');
        }
        flock(&self.lock, libc::LOCK_SH).map_err(|e| StoreError::io(&self.path, e))?;
        let r = self.file.write_all(&self.buf);
        let _ = flock(&self.lock, libc::LOCK_UN);
        r.map_err(|e| StoreError::io(&self.path, e))
    }
}

impl Drop for TempPins {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Temp pins for a long-running writer (the network daemon), scoped to each write: a block
/// is protected while it is being written, and is unprotected cache once the write returns.
/// The protections go to a file that is replaced once it has taken [`ROTATE_AT`] bytes, or
/// when no write protected in it is still in flight; a replaced file is deleted when the last
/// write protected in it has finished. So the daemon's temp pins never grow without bound and
/// never drop a protection a write still relies on.
#[derive(Debug)]
pub struct ScopedPins {
    layout: Layout,
    current: std::sync::Mutex<Option<(std::sync::Arc<std::sync::Mutex<TempPins>>, u64)>>,
}

/// Bytes of CIDs a scoped temp pin file takes before the next one is started.
pub const ROTATE_AT: u64 = 64 << 10;

/// A protection, held while a write is in flight.
#[derive(Debug)]
pub struct Scope {
    _file: std::sync::Arc<std::sync::Mutex<TempPins>>,
}

impl ScopedPins {
    pub fn new(layout: &Layout) -> ScopedPins {
        ScopedPins {
            layout: layout.clone(),
            current: std::sync::Mutex::new(None),
        }
    }

    /// Protects `cids` until the returned [`Scope`] is dropped.
    pub fn protect(&self, cids: &[Cid]) -> Result<Scope, StoreError> {
        let mut cur = self.current.lock().expect("scoped pins lock");
        // A new file when the current one is full, or when no write protected in it is still
        // in flight (then dropping it releases everything it held at once).
        let rotate = match cur.as_ref() {
            None => true,
            Some((file, written)) => {
                *written >= ROTATE_AT || std::sync::Arc::strong_count(file) == 1
            }
        };
        if rotate {
            *cur = Some((
                std::sync::Arc::new(std::sync::Mutex::new(TempPins::create(&self.layout)?)),
                0,
            ));
        }
        let (file, written) = cur.as_mut().expect("just set");
        file.lock().expect("temp pins lock").protect(cids)?;
        *written += cids
            .iter()
            .map(|c| 60u64.max(c.encoded_len() as u64 * 2))
            .sum::<u64>();
        Ok(Scope {
            _file: file.clone(),
        })
    }
}

impl ScopedPins {
    /// Drops the current file if no write protected in it is in flight.
    pub fn release_idle(&self) {
        let mut cur = self.current.lock().expect("scoped pins lock");
        if cur
            .as_ref()
            .is_some_and(|(f, _)| std::sync::Arc::strong_count(f) == 1)
        {
            *cur = None;
        }
    }
}

/// The CIDs in a temp pin file's bytes (lines of CIDs; a torn last line is ignored).
pub fn parse(bytes: &[u8]) -> Vec<Cid> {
    bytes
        .split(|b| *b == b'\n')
        .filter_map(|l| std::str::from_utf8(l).ok()?.parse().ok())
        .collect()
}
