//! Pins and garbage collection for cairn.
//!
//! # Roots
//!
//! A block is live if it is reachable, through the links recorded in the index, from:
//! - a pin: a symlink `R/pins/per-user/{user}/{prog}/{cid}` -> `R/store/{cid}` (made by
//!   `cairn pin add` or plain `ln -s`; see [`pins`]);
//! - an auto pin `R/pins/per-user/{user}/{prog}/auto/{hash}` -> the user's own symlink, while
//!   that symlink points into `R/store/` (Nix's indirect gcroots);
//! - a symlink anywhere under `R/profiles/` (user environments' generations);
//! - a temp pin of a live process: a CID listed in `R/pins/temp/{pid}` while that process
//!   holds an exclusive `flock` on the file.
//!
//! # The protocol between writers and the collector
//!
//! Invariant: the collector never deletes a block that a pin reaches, or that a live writer
//! protected before the collector's last look at the roots.
//!
//! Writers (`add`, `dag import`, network fetches), in `cairn_store::temp`:
//! 1. create `R/pins/temp/{pid}` and hold an exclusive `flock` on it for their lifetime;
//! 2. before looking for a block or writing it, append its CID to that file while holding
//!    `R/pins/lock` *shared* (a few system calls; they wait only while the collector holds
//!    the lock exclusively, which is one short batch);
//! 3. pin what they keep (a pin symlink), and only then delete their temp pin file.
//!
//! The collector ([`collect`]):
//! 1. takes `R/pins/gc.lock` (one collection at a time) and the RocksDB index, folding in
//!    finished journals;
//! 2. lists the block files present now: only they are candidates (a block written later is
//!    never deleted by this collection);
//! 3. gathers the roots (above), deleting temp pin files whose lock it can take (their writer
//!    is dead) and pin links that pin nothing;
//! 4. marks everything reachable, from the index's links (a block missing from the index is
//!    parsed from its file);
//! 5. sweeps the unmarked candidates in batches: for each batch it takes `R/pins/lock`
//!    *exclusive*, gathers the roots again (new pins, new temp pin lines, which it reads
//!    incrementally) and marks from them, deletes unmarked candidates for at most
//!    [`GcOptions::batch`] (20 ms by default), and releases the lock. Index entries of deleted
//!    blocks are removed after the lock is released.
//!
//! Why it holds: a writer's temp pin line is appended under the shared lock, so it is either
//! complete before a batch starts (and that batch marks it and its DAG) or appended after the
//! batch released the lock, in which case the writer's own check for the block comes after
//! the deletion and it writes the block again. A writer pins its root before it drops its
//! temp pins, and every batch re-reads the pins, so there is no moment when neither protects
//! it. Adds never wait for a whole collection: at most for one batch.
//!
//! A mounted filesystem whose blocks are collected answers `EIO` or `ENOENT` for them, never
//! other bytes: every read is verified.
//!
//! ```no_run
//! let store = cairn_store::Store::open("/ipfs")?;
//! let report = cairn_gc::collect(&store, &cairn_gc::GcOptions::default())?;
//! println!("freed {} bytes", report.freed_bytes);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod collect;
pub mod pins;

use std::{io, path::PathBuf};

pub use collect::{collect, GcOptions, GcReport};

/// Errors of pins and collection.
#[derive(Debug, thiserror::Error)]
pub enum GcError {
    #[error(transparent)]
    Store(#[from] cairn_store::StoreError),
    #[error("{}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("invalid {what} name {name:?}")]
    BadName { what: String, name: String },
    #[error("{} belongs to uid {owner}, not to you (uid {me}): pin under your own user", path.display())]
    NotYours { path: PathBuf, owner: u32, me: u32 },
    #[error("another garbage collection is running")]
    Busy,
    #[error("the index is held by another cairn process")]
    IndexBusy,
}

impl GcError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        GcError::Io {
            path: path.into(),
            source,
        }
    }
}
