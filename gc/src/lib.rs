//! Pins and garbage collection for cairn.
//!
//! # Roots
//!
//! A block is live if it is reachable, through the links recorded in the index, from:
//! - a pin: a symlink `R/pins/per-user/{user}/{prog}/{cid}` -> `R/store/{cid}` (made by
//!   `cairn pin add` or plain `ln -s`; see [`pins`]);
//! - an auto pin `R/pins/per-user/{user}/{prog}/auto/{hash}` -> the user's own symlink, while
//!   that symlink points into `R/store/` (Nix's indirect gcroots);
//! - a symlink anywhere under `R/profiles/per-user/` (user environments' generations), up to
//!   [`pins::MAX_PROFILE_DEPTH`] directories down;
//! - a temp pin of a live process: a CID listed in its file in `R/pins/temp/` (any name, such
//!   as `{pid}-{n}`) while that process holds an exclusive `flock` on the file.
//!
//! # The protocol between writers and the collector
//!
//! Invariant: the collector never deletes a block that a pin reaches, or that a live writer
//! protected before the collector's last look at the roots.
//!
//! Writers (`add`, `dag import`, network fetches), in `cairn_store::temp`:
//! 1. create a file in `R/pins/temp/` and hold an exclusive `flock` on it for their lifetime;
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
//!    *exclusive*, gathers the roots again (new pins, new temp pin lines) and marks from
//!    them, deletes at least one chunk of unmarked candidates and goes on until
//!    [`GcOptions::batch`] (20 ms by default) has passed since it took the lock, and releases
//!    the lock. Every batch deletes something however long the gathering took, so the sweep
//!    always ends. Gathering again is cheap: a directory whose `ctime` has not changed is not
//!    read again, and temp pin files are read from where the last look stopped. Index entries
//!    of deleted blocks are removed after the lock is released.
//!
//! Why it holds: a writer's temp pin line is appended under the shared lock, so it is either
//! complete before a batch starts (and that batch marks it and its DAG) or appended after the
//! batch released the lock, in which case the writer's own check for the block comes after
//! the deletion and it writes the block again. A writer pins its root before it drops its
//! temp pins, and every batch re-reads the pins, so there is no moment when neither protects
//! it. Adds never wait for a whole collection: at most for one batch.
//!
//! Blocks are told apart by their whole canonical CID (codec and full multihash), never by a
//! shorter fingerprint: a DAG may link to any made-up CID, and one that shared a live block's
//! key would stand in for it while marking (see `mark.rs`).
//!
//! A mounted filesystem whose blocks are collected answers `EIO` or `ENOENT` for them, never
//! other bytes: every read is verified.
//!
//! # What a collector deletes, and why nothing else
//!
//! `R/pins/per-user` and `R/profiles/per-user` are sticky and world-writable: any user can put
//! anything there, including symlinks to anywhere. A collection (often run as root) deletes
//! exactly these, all inside `R`, and nothing else:
//!
//! 1. block files `R/blocks/{cid}` present when it started that no root reaches;
//! 2. pin links that pin nothing: entries of `R/pins/per-user/{user}/{prog}/` or of its
//!    `auto/` that are symlinks themselves, and only where the collector runs as the owner of
//!    every directory from `{user}/` down, or runs as root and they belong to `{user}` (the
//!    user of that name, or a numeric name's uid);
//! 3. temp pin files of dead writers: regular files in `R/pins/temp` (any name), opened
//!    `O_NOFOLLOW | O_NONBLOCK` and checked with `fstat`, whose `flock` the collector took,
//!    while their name still names the file it locked.
//!
//! Why nothing else can go:
//! - every directory under `R/pins/per-user`, `R/pins/temp` and `R/profiles/per-user` is
//!   opened relative to its parent's descriptor with `O_NOFOLLOW | O_DIRECTORY`, and entries
//!   are classified by their own type, never by a `stat` through a link. A symlink where a
//!   directory belongs (`{user}`, `{prog}` or `auto` pointing anywhere) fails to open: it is
//!   reported in [`GcReport::refused`], never entered, never deleted;
//! - a removal is an `unlinkat` of one name relative to the descriptor of the directory the
//!   walk listed it in, after `fstatat(AT_SYMLINK_NOFOLLOW)` found a symlink (or `fstat`
//!   of the open file found a regular file) under that name. It removes that name from that
//!   directory: never a directory, never what a symlink points to, never a file's other
//!   hard links. Renaming directories on the path afterwards changes nothing, the
//!   descriptor is the directory;
//! - the directories it cleans belong to the collector itself or to the user they are named
//!   after, so whatever is in them is there by their owner's doing, and the owner could
//!   remove it too. A user directory owned by anyone else (another user squatting the name)
//!   is reported; its pins count, but a collector running as another user than its owner
//!   deletes nothing in it. The one race left, an entry replaced between the check and the
//!   `unlinkat`, can only make it remove such a name;
//! - `R/profiles` is only read, and a user's own link behind an auto pin is only read
//!   (`readlink`), wherever it is;
//! - the fixed directories (`R/pins`, `R/pins/per-user`, `R/pins/temp`, `R/profiles`,
//!   `R/profiles/per-user`) belong to the root's owner: if one of them is not a directory,
//!   the collection stops with an error rather than follow it or lose the pins behind it.
//!   A directory that cannot be read stops it too: pins it cannot see, it cannot honour.
//!
//! `cairn pin add|rm|ls` and the mount's list of pinned roots use the same walker
//! ([`pins::PinWalker`]): `pin add` writes only in a user directory it opened without
//! following a link, that belongs to its user (or, for root, to root or the named user).
//!
//! ```no_run
//! let store = cairn_store::Store::open("/ipfs")?;
//! let report = cairn_gc::collect(&store, &cairn_gc::GcOptions::default())?;
//! println!("freed {} bytes", report.freed_bytes);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod collect;
mod dir;
mod mark;
pub mod pins;
mod temp;

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
    #[error("{} is not a directory (cairn never follows a symlink there)", path.display())]
    NotADirectory { path: PathBuf },
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
