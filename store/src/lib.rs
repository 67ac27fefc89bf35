//! cairn's block store: one file per block under `R/blocks/`, a RocksDB index of their links
//! under `R/index/`, and the [`BlockSource`] trait every reader goes through.
//!
//! - Block files are named by the canonical CIDv1 in base32 ([`block_name`]); a CIDv0 and its
//!   CIDv1 name the same file. Identity CIDs are never stored: their bytes are in the CID.
//! - Writes are atomic (staged, then renamed into place, then read-only) and safe from many
//!   threads and processes at once ([`blocks`]). Nothing is fsynced per block; a batch ends
//!   with one [`Store::flush`].
//! - Every read checks the block's multihash ([`hash`]); a mismatch is
//!   [`StoreError::Corrupt`], never the bytes. sha1 (git's object ids) is computed with
//!   collision detection: a block carrying an attack such as SHAttered is refused as a
//!   mismatch is.
//! - Links are read by codec ([`codec`]): dag-pb, dag-cbor, dag-json and git objects
//!   (git-raw); each decoder's input is one block (at most [`MAX_BLOCK_SIZE`]) and it
//!   allocates at most its links.
//! - The index records size, codec and links once, at put time ([`index`]); processes that do
//!   not hold it write journals instead ([`journal`]), so no writer ever waits for it.
//! - Writers temp-pin what they write before writing it ([`temp`]), so the garbage
//!   collector never deletes a block a live writer relies on.
//!
//! ```
//! use cairn_store::{BlockSource, HashAlg, Store};
//! use cid::Cid;
//!
//! let root = tempfile::tempdir()?;
//! let store = Store::init(root.path())?;
//! let cid = Cid::new_v1(0x55, HashAlg::Sha2_256.digest(b"hello\n"));
//! store.put(&cid, b"hello\n")?;
//! store.flush()?;
//! assert_eq!(store.get(&cid)?.as_deref(), Some(&b"hello\n"[..]));
//! assert_eq!(cid.to_string(), "bafkreicysg23kiwv34eg2d7qweipxwosdo2py4ldv42nbauguluen5v6am");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod blocks;
pub mod codec;
mod error;
pub mod hash;
pub mod index;
pub mod journal;
mod layout;
pub mod pool;
mod prefetch;
mod source;
mod store;
pub mod temp;

pub use bytes::Bytes;
pub use cid::Cid;

pub use crate::{
    blocks::{FileBlocks, MAX_BLOCK_SIZE},
    error::{DecodeError, StoreError},
    hash::HashAlg,
    index::{BlockMeta, RocksIndex},
    layout::Layout,
    source::BlockSource,
    store::{RepairReport, Store, StoreStats, VerifyReport},
};

/// The CIDv1 form of `cid` (a CIDv0 becomes the dag-pb CIDv1 with the same multihash).
pub fn canonical(cid: &Cid) -> Cid {
    match cid.version() {
        cid::Version::V0 => Cid::new_v1(codec::codes::DAG_PB, *cid.hash()),
        cid::Version::V1 => *cid,
    }
}

/// The file name of a block: its canonical CIDv1 in base32.
pub fn block_name(cid: &Cid) -> String {
    canonical(cid).to_string()
}

/// The CID a block file name stands for, if the name is canonical.
pub fn parse_block_name(name: &str) -> Option<Cid> {
    let cid: Cid = name.parse().ok()?;
    (cid.version() == cid::Version::V1 && cid.to_string() == name).then_some(cid)
}

/// Parses a CID as users type it (CIDv0 `Qm…` or CIDv1 in any multibase).
pub fn parse_cid(s: &str) -> Result<Cid, StoreError> {
    s.parse().map_err(|source| StoreError::InvalidCid {
        input: s.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v0_and_v1_share_a_name() {
        let v0: Cid = "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH"
            .parse()
            .unwrap();
        let v1: Cid = "bafybeif7ztnhq65lumvvtr4ekcwd2ifwgm3awq4zfr3srh462rwyinlb4y"
            .parse()
            .unwrap();
        assert_eq!(block_name(&v0), block_name(&v1));
        assert_eq!(parse_block_name(&block_name(&v0)), Some(v1));
        assert_eq!(
            parse_block_name("QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH"),
            None
        );
    }
}
