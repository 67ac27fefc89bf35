use std::{io, path::PathBuf};

use cid::Cid;

/// Everything that can go wrong in the block store.
///
/// A block that is absent is not an error: lookups answer `Ok(None)`.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The bytes on disk do not hash to the block's CID. The bytes are never returned.
    #[error("block {cid} is corrupt: its bytes do not match its hash")]
    Corrupt { cid: Cid },

    /// The CID uses a multihash this store cannot compute, so its bytes cannot be checked.
    #[error("block {cid} uses the hash function 0x{code:x}, which cairn cannot compute: no copy of it can be checked, so none is fetched or stored")]
    UnsupportedHash { cid: Cid, code: u64 },

    /// A block's bytes could not be decoded with the codec its CID names.
    #[error("block {cid}")]
    Decode {
        cid: Cid,
        #[source]
        source: DecodeError,
    },

    /// The block is not here and the network did not bring it within the wait (no peer had
    /// it, or none answered in time). Not "absent": it may be had later. Readers answer EIO.
    #[error("block {cid} is not available: {why}")]
    Unavailable { cid: Cid, why: &'static str },

    /// A block larger than the store accepts.
    #[error("block {cid} is {size} bytes, larger than the {max} byte limit")]
    TooLarge { cid: Cid, size: usize, max: usize },

    /// The CID could not be parsed.
    #[error("invalid CID {input:?}")]
    InvalidCid {
        input: String,
        #[source]
        source: cid::Error,
    },

    /// An I/O error on a path of the store.
    #[error("{}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// The RocksDB index failed.
    #[error("index {}", path.display())]
    Index {
        path: PathBuf,
        #[source]
        source: rocksdb::Error,
    },

    /// The index holds a record it cannot read (it is rebuilt by `repair`).
    #[error("index record for {key} is malformed")]
    IndexRecord { key: String },

    /// Another process holds the index and did not release it in time.
    #[error("the index {} is held by another cairn process", path.display())]
    IndexBusy { path: PathBuf },

    /// An operation that needs the index ran before [`crate::Store::open_index`].
    #[error("the index is not open in this process")]
    IndexNotOpen,

    /// The root directory is not a cairn root.
    #[error("{path} is not a cairn root (run `cairn init`)")]
    NotARoot { path: PathBuf },
}

impl StoreError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        StoreError::Io {
            path: path.into(),
            source,
        }
    }

    /// True when the error means "there is no space left on the device".
    pub fn is_disk_full(&self) -> bool {
        matches!(self, StoreError::Io { source, .. } if source.raw_os_error() == Some(libc::ENOSPC))
    }
}

/// Why a block's bytes could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("truncated protobuf")]
    Truncated,
    #[error("varint overflows 64 bits")]
    VarintOverflow,
    #[error("protobuf field {field} has wire type {wire_type}, expected {expected}")]
    WireType {
        field: u64,
        wire_type: u8,
        expected: u8,
    },
    #[error("unexpected protobuf field {field} in {message}")]
    UnknownField { field: u64, message: &'static str },
    #[error("duplicate protobuf field {field} in {message}")]
    DuplicateField { field: u64, message: &'static str },
    #[error("dag-pb link has no hash")]
    LinkWithoutHash,
    #[error("invalid CID in link: {0}")]
    LinkCid(String),
    #[error("link name is not UTF-8")]
    NameNotUtf8,
    #[error("missing required field {0}")]
    Missing(&'static str),
    #[error("dag-cbor: {0}")]
    DagCbor(String),
    #[error("{0}")]
    Unixfs(String),
    #[error("dag-json: {0}")]
    DagJson(String),
    #[error("git object: {0}")]
    Git(String),
    #[error("{0}")]
    Invalid(String),
}
