use std::{io, path::PathBuf};

use cairn_store::{Cid, StoreError};

/// Errors of the UnixFS layer.
#[derive(Debug, thiserror::Error)]
pub enum UnixfsError {
    #[error(transparent)]
    Store(#[from] StoreError),

    /// A block the operation needs is not available.
    #[error("block {0} is not available")]
    MissingBlock(Cid),

    /// A node that is not valid UnixFS.
    #[error("block {cid} is not valid UnixFS: {reason}")]
    InvalidNode { cid: Cid, reason: String },

    /// Used while decoding, before the CID is attached.
    #[error("invalid UnixFS data: {0}")]
    BadUnixfs(String),

    #[error("{path}: no such entry")]
    NotFound { path: String },

    #[error("{path}: not a directory")]
    NotADirectory { path: String },

    #[error("{path}: not a file")]
    NotAFile { path: String },

    /// A directory entry whose name would escape the destination or is not a file name.
    #[error("refusing entry {name:?} in {dir}: {why}")]
    UnsafeName {
        dir: String,
        name: String,
        why: &'static str,
    },

    #[error("{}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// Reading the input failed (not a path of ours).
    #[error("reading input")]
    Input(#[source] io::Error),

    /// Writing output failed (not a path of ours).
    #[error("writing output")]
    Output(#[source] io::Error),

    #[error(transparent)]
    Car(#[from] crate::car::CarError),

    #[error("{0}")]
    Unsupported(String),

    /// Work past a configured bound (a listing with too many entries).
    #[error("{0}")]
    TooLarge(String),
}

impl UnixfsError {
    pub fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        UnixfsError::Io {
            path: path.into(),
            source,
        }
    }

    /// Attaches the CID to a decoding error.
    pub(crate) fn at(self, cid: &Cid) -> Self {
        match self {
            UnixfsError::BadUnixfs(reason) => UnixfsError::InvalidNode { cid: *cid, reason },
            other => other,
        }
    }
}
