//! UnixFS v1 for cairn: dag-pb files, directories, HAMT-sharded directories and symlinks, with
//! the mode and mtime fields; an importer that reproduces kubo's `ipfs add` CIDs byte for
//! byte; path resolution; a seekable file reader; CAR import and export; and restoring DAGs
//! to the filesystem.
//!
//! ```
//! use cairn_unixfs::import::{file::cid_of, AddOptions};
//!
//! // `echo "Hello Worlds!" | ipfs add` (kubo's t0040).
//! let cid = cid_of(b"Hello Worlds!\n", &AddOptions::default())?;
//! assert_eq!(cid.to_string(), "QmVr26fY1tKyspEJBniVhqxQeEjhF78XerGiqWAwraVLQH");
//! # Ok::<(), cairn_unixfs::UnixfsError>(())
//! ```

pub mod car;
/// The UnixFS `Data` message (decoded in `cairn-store`, whose index records attributes).
pub use cairn_store::codec::unixfs as data;
mod error;
pub mod get;
pub mod hamt;
pub mod import;
pub mod node;
pub mod reader;
pub mod resolve;

pub use crate::{
    error::UnixfsError,
    node::{Metadata, Node},
    reader::{Decode, FileReader, NodeSource, Whole},
};

/// Progress of long work, reported as it happens. Every method has a no-op default.
pub trait Progress: Sync {
    /// The total work is known: bytes and files.
    fn set_total(&self, _bytes: u64, _files: u64) {}
    fn add_bytes(&self, _n: u64) {}
    fn add_files(&self, _n: u64) {}
}

impl Progress for () {}
