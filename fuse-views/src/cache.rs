//! Decoded nodes by CID, each block verified once: the filesystem's memory.
//!
//! Content never changes, so a decoded node can be kept as long as memory allows. The cache
//! is weighted by block size and shared by every FUSE thread; concurrent misses on the same
//! CID load it once.

use std::sync::Arc;

use bytes::Bytes;
use cairn_store::{
    codec::{codes, dagpb::PbLink, unixfs::Attrs},
    BlockSource, Cid,
};
use cairn_unixfs::{
    node::{DirNode, FileNode},
    resolve, Node, NodeSource, UnixfsError, Whole,
};
use quick_cache::{sync::Cache, Weighter};

use crate::view::Link;

/// Raw blocks this large are described by their file's size, unread (small ones cost about
/// as much to read and verify as to `stat`, and are then cached).
const DESCRIBE_UNREAD: u64 = 64 << 10;

/// How many recently prefetched CIDs [`NodeCache`] remembers (16 GiB of 256 KiB blocks).
const PREFETCHED: usize = 65536;

/// Directories with more links than this get a sorted name index for lookups; a scan of
/// fewer costs about as much as a search.
const INDEXED_LINKS: usize = 32;

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

#[derive(Clone)]
struct BySummary;

impl Weighter<Cid, Arc<[Attrs]>> for BySummary {
    fn weight(&self, _: &Cid, v: &Arc<[Attrs]>) -> u64 {
        v.len() as u64 * std::mem::size_of::<Attrs>() as u64 + 64
    }
}

#[derive(Clone)]
struct ByLinks;

impl Weighter<Cid, Arc<Vec<u32>>> for ByLinks {
    fn weight(&self, _: &Cid, v: &Arc<Vec<u32>>) -> u64 {
        v.len() as u64 * 4 + 64
    }
}

/// Verified, decoded nodes and directory listings, by CID.
pub struct NodeCache {
    src: Arc<dyn BlockSource>,
    nodes: Cache<Cid, Arc<Node>, ByBlockSize>,
    listings: Cache<Cid, Arc<Vec<(String, Cid)>>, ByEntries>,
    /// Large directories' links in name order (positions in the node's links), so that a
    /// lookup is a binary search and not a scan of every name.
    by_name: Cache<Cid, Arc<Vec<u32>>, ByLinks>,
    /// Directories' children as the index summarised them (see `cairn_store::index`), one
    /// per link; empty when the index has no summary.
    summaries: Cache<Cid, Arc<[Attrs]>, BySummary>,
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
            by_name: Cache::with_weighter(items / 8, bytes / 32, ByLinks),
            summaries: Cache::with_weighter(items / 8, bytes / 16, BySummary),
            prefetched: Cache::new(PREFETCHED),
        }
    }

    pub fn source(&self) -> &dyn BlockSource {
        &*self.src
    }

    /// The node to describe `cid` by (kind, size, mode, mtime) and to read it through. A
    /// large raw block is described without being read: its size is its file's size, and
    /// the node is a file whose one child is the block itself, so its bytes are read and
    /// verified when they are read, not when a listing or `stat` names the file. Everything
    /// else is the decoded, verified node.
    pub fn entry_node(&self, cid: &Cid) -> Result<Arc<Node>, UnixfsError> {
        if cid.codec() == codes::RAW && !self.nodes.contains_key(cid) {
            if let Some(size) = self.src.size(cid)?.filter(|s| *s >= DESCRIBE_UNREAD) {
                return Ok(Arc::new(Node::File(FileNode {
                    inline: Bytes::new(),
                    children: vec![(*cid, size)],
                    size,
                    meta: Default::default(),
                })));
            }
        }
        self.node(cid)
    }

    /// The node of `cid` if it is decoded and cached already.
    pub fn cached(&self, cid: &Cid) -> Option<Arc<Node>> {
        self.nodes.get(cid)
    }

    /// The CID that `name` names in directory (or HAMT) `dir`, whose CID is `cid`: the first
    /// link of that name, as a scan would find it. A large directory is searched through its
    /// name index, built once; its links need not be sorted (a hostile block's may not be).
    pub fn lookup(&self, cid: &Cid, dir: &Node, name: &str) -> Result<Option<Cid>, UnixfsError> {
        let Node::Directory(d) = dir else {
            return Ok(resolve::lookup(self, dir, name)?.map(|l| l.cid));
        };
        Ok(self.position(cid, d, name).map(|i| d.links[i].cid))
    }

    /// Where the first link named `name` is among the links of directory `d` (CID `cid`).
    fn position(&self, cid: &Cid, d: &DirNode, name: &str) -> Option<usize> {
        if d.links.len() <= INDEXED_LINKS {
            return d.links.iter().position(|l| l.name() == name);
        }
        let order = self.by_name.get_or_insert_with(cid, || {
            let mut order: Vec<u32> = (0..d.links.len() as u32).collect();
            // Stable: of links with one name, the first stays first.
            order.sort_by(|a, b| d.links[*a as usize].name().cmp(d.links[*b as usize].name()));
            Ok::<_, ()>(Arc::new(order))
        });
        let order = order.ok()?;
        let at = order.partition_point(|i| d.links[*i as usize].name() < name);
        let i = *order.get(at)? as usize;
        (d.links[i].name() == name).then_some(i)
    }

    /// How the index describes `link` of directory `dir` (CID `cid`), from the directory's
    /// summary of its children: no read of the child's own record. `None` when there is no
    /// summary, or the link is not where its place or its name says.
    pub fn described_child(&self, cid: &Cid, dir: &Node, link: Link<'_>) -> Option<Attrs> {
        let Node::Directory(d) = dir else {
            return None;
        };
        let summary = self
            .summaries
            .get_or_insert_with(cid, || {
                let children = self.src.indexed(cid).and_then(|m| m.children);
                Ok::<_, ()>(children.unwrap_or_default().into())
            })
            .ok()?;
        if summary.len() != d.links.len() {
            return None;
        }
        // A directory's listing is its links in order, so a listing's place is the link's.
        let i = link
            .at
            .filter(|i| d.links.get(*i).is_some_and(|l| l.name() == link.name))
            .or_else(|| self.position(cid, d, link.name))?;
        (d.links[i].cid == *link.cid).then(|| summary[i])
    }

    /// The size `link` of directory `dir` (CID `cid`) states for what it names (its `Tsize`),
    /// if the link is where its place or name says. For a raw block that is its length.
    pub fn link_size(&self, cid: &Cid, dir: &Node, link: Link<'_>) -> Option<u64> {
        let found = match dir {
            Node::Directory(d) => {
                let i = link
                    .at
                    .filter(|i| d.links.get(*i).is_some_and(|l| l.name() == link.name))
                    .or_else(|| self.position(cid, d, link.name))?;
                d.links[i].clone()
            }
            _ => resolve::lookup(self, dir, link.name).ok()??,
        };
        (found.cid == *link.cid).then_some(found.tsize?)
    }

    /// A directory's (or HAMT's) entries: name and CID, in listing order.
    pub fn listing(&self, cid: &Cid, dir: &Node) -> Result<Arc<Vec<(String, Cid)>>, UnixfsError> {
        self.listings.get_or_insert_with(cid, || {
            let entries =
                |links: &[PbLink]| links.iter().map(|l| (l.name().to_owned(), l.cid)).collect();
            Ok(Arc::new(match dir {
                Node::Directory(d) => entries(&d.links),
                _ => entries(&resolve::list(self, dir)?),
            }))
        })
    }
}

thread_local! {
    /// Where each FUSE thread reads dag-pb leaves that it will not keep.
    static SCRATCH: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
}

/// The buffer behind `block`, for the next leaf, if nothing else holds it (no copy: the
/// scratch buffer keeps its pages from leaf to leaf).
fn reclaim(block: Bytes) -> Vec<u8> {
    block.try_into_mut().map(Vec::from).unwrap_or_default()
}

impl NodeSource for NodeCache {
    fn node(&self, cid: &Cid) -> Result<Arc<Node>, UnixfsError> {
        self.nodes.get_or_insert_with(cid, || {
            let block = self.src.get(cid)?.ok_or(UnixfsError::MissingBlock(*cid))?;
            Node::decode(cid, block).map(Arc::new)
        })
    }

    /// A leaf wanted whole is read into the caller's buffer (raw) or a reused scratch buffer
    /// (dag-pb), verified there, and not kept: the kernel's page cache keeps the file's bytes
    /// (`FOPEN_KEEP_CACHE`), and a sequential read of a large file would otherwise push every
    /// directory and file root out of this cache. Leaves read in part are kept, because the
    /// rest of them is likely asked for next.
    fn whole(&self, cid: &Cid, out: &mut Vec<u8>) -> Result<Whole, UnixfsError> {
        if let Some(node) = self.nodes.get(cid) {
            return Ok(Whole::Node(node));
        }
        match cid.codec() {
            codes::RAW => {
                if !self.src.get_into(cid, out)? {
                    return Err(UnixfsError::MissingBlock(*cid));
                }
                Ok(Whole::Appended)
            }
            codes::DAG_PB => {
                let mut buf = SCRATCH.take();
                buf.clear();
                // Room for a small block in one read, without an fstat (see
                // `FileBlocks::get_into`); kept for the thread's next block.
                buf.reserve(cairn_store::blocks::ONE_READ_ROOM);
                let found = self.src.get_into(cid, &mut buf);
                let result = match found {
                    Ok(true) => {
                        let block = Bytes::from(buf);
                        let node = Node::decode(cid, block.clone());
                        let result = match node {
                            Ok(Node::File(f)) if f.children.is_empty() => {
                                out.extend_from_slice(&f.inline);
                                Ok(Whole::Appended)
                            }
                            // Not a leaf: keep it, decoded from a block of its own size (the
                            // scratch buffer may be far larger).
                            Ok(_) => {
                                let node =
                                    Arc::new(Node::decode(cid, Bytes::copy_from_slice(&block))?);
                                self.nodes.insert(*cid, node.clone());
                                Ok(Whole::Node(node))
                            }
                            Err(e) => Err(e),
                        };
                        buf = reclaim(block);
                        result
                    }
                    Ok(false) => Err(UnixfsError::MissingBlock(*cid)),
                    Err(e) => Err(e.into()),
                };
                SCRATCH.set(buf);
                result
            }
            _ => self.node(cid).map(Whole::Node),
        }
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
    fn get_into(&self, cid: &Cid, out: &mut Vec<u8>) -> Result<bool, cairn_store::StoreError> {
        self.src.get_into(cid, out)
    }
    fn size(&self, cid: &Cid) -> Result<Option<u64>, cairn_store::StoreError> {
        self.src.size(cid)
    }
    fn has(&self, cid: &Cid) -> Result<bool, cairn_store::StoreError> {
        self.src.has(cid)
    }
    fn prefetch(&self, cids: &[Cid]) {
        NodeSource::prefetch(self, cids)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_store::{HashAlg, StoreError};
    use cairn_unixfs::node::Metadata;

    struct Nothing;
    impl BlockSource for Nothing {
        fn get(&self, _: &Cid) -> Result<Option<Bytes>, StoreError> {
            Ok(None)
        }
        fn has(&self, _: &Cid) -> Result<bool, StoreError> {
            Ok(false)
        }
    }

    /// A large directory is searched through its name index, and finds what a scan finds:
    /// names out of order, a name twice (the first link wins), names absent.
    #[test]
    fn large_directories_find_what_a_scan_finds() {
        let cid_of = |i: usize| Cid::new_v1(codes::RAW, HashAlg::Sha2_256.digest(&i.to_le_bytes()));
        let mut names: Vec<String> = (0..200).map(|i| format!("f{}", (i * 7919) % 200)).collect();
        names.push("f17".into());
        names.insert(3, "f150".into());
        let links: Vec<PbLink> = names
            .iter()
            .enumerate()
            .map(|(i, n)| PbLink::new(cid_of(i), n.clone(), 1))
            .collect();
        let dir = Node::Directory(DirNode {
            links: links.clone(),
            meta: Metadata::default(),
        });
        let cache = NodeCache::new(Arc::new(Nothing), 1 << 20);
        let dir_cid = cid_of(1000);
        for probe in (0..210)
            .map(|i| format!("f{i}"))
            .chain(["".into(), "g".into()])
        {
            let scan = links.iter().find(|l| l.name() == probe).map(|l| l.cid);
            assert_eq!(
                cache.lookup(&dir_cid, &dir, &probe).unwrap(),
                scan,
                "{probe}"
            );
        }
        assert_eq!(
            cache.lookup(&dir_cid, &dir, "f150").unwrap(),
            Some(cid_of(3))
        );
        assert_eq!(cache.by_name.len(), 1, "the index was built once and kept");
    }

    #[test]
    fn the_scratch_buffer_comes_back_without_a_copy() {
        let mut v = Vec::with_capacity(1 << 20);
        v.extend_from_slice(&[7; 300_000]);
        let ptr = v.as_ptr();
        let block = Bytes::from(v);
        let inline = block.slice(14..);
        assert!(reclaim(block.clone()).is_empty(), "still shared: not taken");
        drop(inline);
        let back = reclaim(block);
        assert_eq!(back.as_ptr(), ptr);
        assert!(back.capacity() >= 1 << 20);
    }
}
