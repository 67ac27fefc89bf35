//! User environments: the apps a user installed, on their PATH, the way Nix profiles do it.
//!
//! An environment is content. [`build`] makes, from a set of installed apps, a UnixFS
//! directory that mirrors the union of the apps' trees (`bin/`, `lib/`, `share/` ...) with
//! symlinks into `R/store/app/<cid>/...`, plus `.cairn/manifest.json` (what is installed under
//! which name) and `.cairn/apps/<name>`, a link to each app node, so that the collector keeps
//! every installed app from the environment's one root. The same set of apps always makes
//! the same CID.
//!
//! A [`Profile`] is a user's directory `R/profiles/per-user/{user}/`:
//!
//! ```text
//! generations/{n} -> R/store/<env-cid>    one root for the collector per generation
//! current -> generations/{n}              replaced by rename: readers see old or new
//! .lock                                   serialises a user's env commands
//! ```
//!
//! `~/.cairn-profile -> R/profiles/per-user/{user}/current`, so `~/.cairn-profile/bin` goes on
//! PATH once and follows every switch. Profiles live under the sticky, world-writable
//! `per-user`: a user works only in a directory of their own (owned by them, not a symlink),
//! and nothing here ever follows or deletes anything in another user's.

mod build;
mod profile;

pub use build::{build, Conflict, Installed, Manifest};
pub use profile::{Generation, Profile};

/// What can go wrong with environments.
#[derive(Debug, thiserror::Error)]
pub enum EnvError {
    #[error("{path}: {source}")]
    Io {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] cairn_store::StoreError),
    #[error(transparent)]
    Unixfs(#[from] cairn_unixfs::UnixfsError),
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Conflict(#[from] Conflict),
}

impl EnvError {
    pub(crate) fn io(path: impl Into<std::path::PathBuf>, source: std::io::Error) -> EnvError {
        EnvError::Io {
            path: path.into(),
            source,
        }
    }
}
