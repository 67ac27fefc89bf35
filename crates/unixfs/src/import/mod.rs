//! The importer: files and directory trees into UnixFS DAGs with the same CIDs as kubo's
//! `ipfs add` for the same options.
//!
//! Files stream through a fixed-size chunker into a balanced DAG ([`file`]); nothing holds more
//! than a few chunks in memory whatever the file size. Large files are hashed and written by a
//! small pool of threads while the next chunks are read. Directory trees ([`tree`]) import
//! their files in parallel and build directories bottom-up, switching to HAMT shards above
//! kubo's size threshold.

pub mod file;
pub mod tree;

use cairn_store::{
    codec::{codes, dagpb::PbNode},
    Cid, HashAlg, Store, StoreError,
};

use crate::data::Mtime;

/// kubo's default chunk size.
pub const DEFAULT_CHUNK_SIZE: usize = 256 * 1024;
/// The largest chunk kubo accepts (`chunker.ChunkSizeLimit`).
pub const MAX_CHUNK_SIZE: usize = 2 * 1024 * 1024 - 256;
/// kubo's links per file node (`8192 / 47`).
pub const DEFAULT_MAX_LINKS: usize = 174;
/// kubo's `Import.UnixFSHAMTDirectorySizeThreshold`.
pub const DEFAULT_SHARD_THRESHOLD: usize = 256 * 1024;

/// How to import, in `ipfs add`'s terms.
#[derive(Debug, Clone)]
pub struct AddOptions {
    /// 0 (`Qm…`, the default) or 1.
    pub cid_version: u8,
    /// Leaves as `raw` blocks instead of dag-pb File nodes.
    pub raw_leaves: bool,
    pub chunk_size: usize,
    pub hash: HashAlg,
    pub max_links: usize,
    /// Include files and directories whose names start with a dot.
    pub hidden: bool,
    /// Record each file's permission bits.
    pub preserve_mode: bool,
    /// Record each file's modification time.
    pub preserve_mtime: bool,
    /// Use this mode instead (like `ipfs add --mode`).
    pub mode: Option<u32>,
    /// Use this mtime instead (like `ipfs add --mtime --mtime-nsecs`).
    pub mtime: Option<Mtime>,
    /// Directories whose estimated size (Σ name + CID bytes) exceeds this become HAMTs.
    pub shard_threshold: usize,
    pub fanout: u64,
    /// Threads for hashing and writing (1 disables the pipeline).
    pub threads: usize,
    /// Entries below an added directory that this filter rejects are skipped.
    pub ignore: Option<Ignore>,
    /// Sees every file's bytes and every symlink's target as a tree import reads them.
    pub watch: Option<Watch>,
}

/// Something that looks at what a tree import stores, in the same pass (the app importer
/// finds its placeholder this way): each file's bytes once, in order, as they are read, and
/// each symlink's target. Called from the import's worker threads.
pub trait Watcher: Send + Sync {
    /// A file at `path` (as `ipfs add` prints it) is about to be read.
    fn file(&self, path: &str) -> Box<dyn FileWatch>;
    /// A symlink at `path` with this target.
    fn symlink(&self, path: &str, target: &[u8]);
}

/// What a [`Watcher`] is fed for one file.
pub trait FileWatch: Send {
    /// The next bytes of the file.
    fn bytes(&mut self, bytes: &[u8]);
    /// The file is imported whole; nothing more follows.
    fn end(self: Box<Self>);
}

/// A shared [`Watcher`].
#[derive(Clone)]
pub struct Watch(pub std::sync::Arc<dyn Watcher>);

impl std::fmt::Debug for Watch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Watch(..)")
    }
}

/// `(path, is_dir) -> skip?`
pub type IgnoreFn = dyn Fn(&std::path::Path, bool) -> bool + Send + Sync;

/// A filter on the paths of a tree import.
#[derive(Clone)]
pub struct Ignore(pub std::sync::Arc<IgnoreFn>);

impl std::fmt::Debug for Ignore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Ignore(..)")
    }
}

impl Default for AddOptions {
    fn default() -> Self {
        AddOptions {
            cid_version: 0,
            raw_leaves: false,
            chunk_size: DEFAULT_CHUNK_SIZE,
            hash: HashAlg::Sha2_256,
            max_links: DEFAULT_MAX_LINKS,
            hidden: false,
            preserve_mode: false,
            preserve_mtime: false,
            mode: None,
            mtime: None,
            shard_threshold: DEFAULT_SHARD_THRESHOLD,
            fanout: crate::hamt::DEFAULT_FANOUT,
            threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
            ignore: None,
            watch: None,
        }
    }
}

impl AddOptions {
    /// Checks the combination and applies kubo's implications. `raw_leaves` of `None` means
    /// "as the CID version implies" (raw leaves for CIDv1, which a non-sha2-256 hash implies).
    pub fn resolve(
        mut self,
        cid_version: Option<u8>,
        raw_leaves: Option<bool>,
    ) -> Result<AddOptions, String> {
        let v = match cid_version {
            Some(v @ (0 | 1)) => v,
            Some(v) => return Err(format!("unknown CID version {v} (choose 0 or 1)")),
            None if self.hash != HashAlg::Sha2_256 => 1,
            None => 0,
        };
        if v == 0 && self.hash != HashAlg::Sha2_256 {
            return Err(format!(
                "CIDv0 only supports sha2-256; use --cid-version 1 with {}",
                self.hash
            ));
        }
        self.cid_version = v;
        self.raw_leaves = raw_leaves.unwrap_or(v == 1);
        if self.chunk_size == 0 || self.chunk_size > MAX_CHUNK_SIZE {
            return Err(format!(
                "chunk size {} is out of range (1 to {MAX_CHUNK_SIZE} bytes)",
                self.chunk_size
            ));
        }
        if self.max_links < 2 {
            return Err("a file node needs room for at least 2 links".into());
        }
        if !(8..=1024).contains(&self.fanout) || !self.fanout.is_power_of_two() {
            return Err(format!(
                "HAMT fanout {} must be a power of two from 8 to 1024",
                self.fanout
            ));
        }
        Ok(self)
    }

    /// The CID of a dag-pb node with these options.
    pub(crate) fn pb_cid(&self, block: &[u8]) -> Cid {
        let mh = self.hash.digest(block);
        if self.cid_version == 0 {
            Cid::new_v0(mh).expect("sha2-256 multihash is a valid CIDv0")
        } else {
            Cid::new_v1(codes::DAG_PB, mh)
        }
    }

    pub(crate) fn raw_cid(&self, block: &[u8]) -> Cid {
        Cid::new_v1(codes::RAW, self.hash.digest(block))
    }
}

/// Where the importer puts blocks: a [`Store`], or nowhere (`--only-hash`).
pub trait BlockSink: Sync {
    /// Stores a block whose CID was computed from `parts` (concatenated), with its links.
    fn put(&self, cid: &Cid, parts: &[&[u8]], links: &[Cid]) -> Result<(), StoreError>;
}

impl BlockSink for Store {
    fn put(&self, cid: &Cid, parts: &[&[u8]], links: &[Cid]) -> Result<(), StoreError> {
        self.put_hashed(cid, parts, Some(links)).map(|_| ())
    }
}

/// Computes CIDs and stores nothing.
pub struct NullSink;

impl BlockSink for NullSink {
    fn put(&self, _: &Cid, _: &[&[u8]], _: &[Cid]) -> Result<(), StoreError> {
        Ok(())
    }
}

/// A node the importer made: its CID, the size of the whole DAG below it (`Tsize`) and, for
/// files, the file's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Added {
    pub cid: Cid,
    pub tsize: u64,
    pub size: u64,
}

/// Encodes a dag-pb node, stores it and returns what a parent needs to link it.
pub(crate) fn put_pb(
    sink: &dyn BlockSink,
    opts: &AddOptions,
    node: &PbNode,
    size: u64,
) -> Result<Added, StoreError> {
    let block = node.encode();
    let cid = opts.pb_cid(&block);
    let links: Vec<Cid> = node.links.iter().map(|l| l.cid).collect();
    sink.put(&cid, &[&block], &links)?;
    let tsize = block.len() as u64 + node.links.iter().map(|l| l.tsize.unwrap_or(0)).sum::<u64>();
    Ok(Added { cid, tsize, size })
}
