//! Decoded nodes by CID, each block verified once: the filesystem's memory.
//!
//! Content never changes, so a decoded node can be kept as long as memory allows. The cache
//! is weighted by block size and shared by every FUSE thread; concurrent misses on the same
//! CID load it once.

use std::sync::Arc;

use cairn_store::{BlockSource, Cid};
use cairn_unixfs::{resolve, Node, NodeSource, UnixfsError};
use quick_cache::{sync::Cache, Weighter};

/// How many recently prefetched CIDs [`NodeCache`] remembers (16 GiB of 256 KiB blocks).
const PREFETCHED: usize = 65536;

#[derive(Clone)]
struct ByBlockSize;

impl Weighter<Cid, Arc<Node>> for ByBlockSize {
    fn weight(&self, _: &Cid, node: &Arc<Node>) -> u64 {
        // The block's bytes dominate: file leaves keep them, other nodes are small.
        let bytes = match &**node {
            Node::File(f) => f.inline.len() + f.children.len() * 112,
            Node::Opaque { bytes, .. } => bytes.len(),
            Node::Directory(d) => d.links.len() * 160,
            Node::HamtShard(h) => h.links.len() * 160,
            Node::Symlink { target, .. } => target.len(),
        };
        bytes as u64 + 256
    }
}

#[derive(Clone)]
struct ByEntries;

impl Weighter<Cid, Arc<Vec<(String, Cid)>>> for ByEntries {
    fn weight(&self, _: &Cid, v: &Arc<Vec<(String, Cid)>>) -> u64 {
        v.iter().map(|(n, _)| n.len() as u64 + 128).sum::<u64>() + 64
    }
}

/// Verified, decoded nodes and directory listings, by CID.
pub struct NodeCache {
    src: Arc<dyn BlockSource>,
    nodes: Cache<Cid, Arc<Node>, ByBlockSize>,
    listings: Cache<Cid, Arc<Vec<(String, Cid)>>, ByEntries>,
    /// Blocks recently passed on to the source's prefetch: a sequential reader asks for the
    /// same blocks ahead on each of its reads, and the source need hear of each once.
    prefetched: Cache<Cid, ()>,
}

impl NodeCache {
    /// A cache over `src` holding about `bytes` of blocks.
    pub fn new(src: Arc<dyn BlockSource>, bytes: u64) -> NodeCache {
        let items = (bytes / 4096).max(1024) as usize;
        NodeCache {
            src,
            nodes: Cache::with_weighter(items, bytes, ByBlockSize),
            listings: Cache::with_weighter(items / 8, bytes / 8, ByEntries),
            prefetched: Cache::new(PREFETCHED),
        }
    }

    pub fn source(&self) -> &dyn BlockSource {
        &*self.src
    }

    /// A directory's (or HAMT's) entries: name and CID, in listing order.
    pub fn listing(&self, cid: &Cid, dir: &Node) -> Result<Arc<Vec<(String, Cid)>>, UnixfsError> {
        self.listings.get_or_insert_with(cid, || {
            let links = resolve::list(self, dir)?;
            Ok(Arc::new(
                links
                    .into_iter()
                    .map(|l| (l.name().to_owned(), l.cid))
                    .collect(),
            ))
        })
    }
}

impl NodeSource for NodeCache {
    fn node(&self, cid: &Cid) -> Result<Arc<Node>, UnixfsError> {
        self.nodes.get_or_insert_with(cid, || {
            let block = self.src.get(cid)?.ok_or(UnixfsError::MissingBlock(*cid))?;
            Node::decode(cid, block).map(Arc::new)
        })
    }
    fn prefetch(&self, cids: &[Cid]) {
        let cold: Vec<Cid> = cids
            .iter()
            .filter(|c| !self.nodes.contains_key(*c) && !self.prefetched.contains_key(*c))
            .copied()
            .collect();
        for c in &cold {
            self.prefetched.insert(*c, ());
        }
        if !cold.is_empty() {
            self.src.prefetch(&cold);
        }
    }
}

/// `resolve::list` and `hamt::lookup` read shards through a `BlockSource`; the cache serves
/// them its verified blocks.
impl BlockSource for NodeCache {
    fn get(&self, cid: &Cid) -> Result<Option<cairn_store::Bytes>, cairn_store::StoreError> {
        self.src.get(cid)
    }
    fn has(&self, cid: &Cid) -> Result<bool, cairn_store::StoreError> {
        self.src.has(cid)
    }
    fn prefetch(&self, cids: &[Cid]) {
        NodeSource::prefetch(self, cids)
    }
}
