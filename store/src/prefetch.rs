//! Prefetching block files in the background.
//!
//! `BlockSource::prefetch` must not wait. Asking the kernel for a block file's pages
//! (`POSIX_FADV_WILLNEED`) is itself asynchronous, but opening the file is not: on a cold
//! disk each open reads a directory block and an inode from disk, one seek at a time. A few
//! worker threads do the opens, so a listing page's 64 children or a reader's next 4 MiB are
//! in flight together.

use std::{
    fs::File,
    os::fd::AsRawFd,
    path::PathBuf,
    sync::{
        mpsc::{self, Receiver, SyncSender, TrySendError},
        Arc, Mutex,
    },
};

use cid::Cid;

use crate::block_name;

/// Worker threads (each mostly waits on the disk).
const WORKERS: usize = 8;
/// Requests beyond this many waiting are dropped: a hint may be lost, never a reader slowed.
const QUEUE: usize = 4096;

/// A queue of block files to bring into the page cache, and its workers. The workers stop
/// when the queue is dropped.
#[derive(Debug)]
pub struct Prefetcher {
    tx: SyncSender<Cid>,
}

impl Prefetcher {
    pub fn new(dir: PathBuf) -> Prefetcher {
        let (tx, rx) = mpsc::sync_channel::<Cid>(QUEUE);
        let rx = Arc::new(Mutex::new(rx));
        let dir = Arc::new(dir);
        for i in 0..WORKERS {
            let (rx, dir) = (rx.clone(), dir.clone());
            // Without threads there is no prefetching, and nothing else changes.
            let _ = std::thread::Builder::new()
                .name(format!("prefetch-{i}"))
                .spawn(move || work(&rx, &dir));
        }
        Prefetcher { tx }
    }

    /// Queues `cid`'s file; false if the queue is full (or no worker runs).
    pub fn push(&self, cid: Cid) -> bool {
        match self.tx.try_send(cid) {
            Ok(()) => true,
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => false,
        }
    }
}

fn work(rx: &Mutex<Receiver<Cid>>, dir: &std::path::Path) {
    loop {
        let next = rx.lock().map(|rx| rx.recv());
        let Ok(Ok(cid)) = next else {
            return;
        };
        if let Ok(f) = File::open(dir.join(block_name(&cid))) {
            // SAFETY: a valid fd for the duration of the call.
            unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_WILLNEED) };
        }
    }
}
