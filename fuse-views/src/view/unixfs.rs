//! `unixfs`: UnixFS files, directories, HAMT-sharded directories and symlinks, with mode
//! and mtime when the nodes carry them. Blocks of other codecs (dag-cbor, dag-json, ...) are
//! files holding their bytes.

use std::sync::Arc;

use cairn_store::{
    codec::{
        codes,
        unixfs::{AttrKind, Attrs},
    },
    Cid,
};
use cairn_unixfs::Node;

use super::{Entry, Kind, Link, NodeSlot, View, ViewError};
use crate::cache::NodeCache;

pub struct UnixfsView;

/// The largest raw block described by its directory's word without being read: Bitswap's
/// largest block (2 MiB).
const MAX_RAW_DESCRIBED: u64 = 2 << 20;

fn entry(root: &Cid, cid: &Cid, node: Arc<Node>) -> Entry {
    let meta = node.meta();
    let (kind, size) = match &*node {
        Node::File(f) => (Kind::File, f.size),
        Node::Opaque { bytes, .. } => (Kind::File, bytes.len() as u64),
        Node::Directory(d) => (Kind::Directory, d.links.len() as u64),
        Node::HamtShard(h) => (Kind::Directory, h.links.len() as u64),
        Node::Symlink { target, .. } => (Kind::Symlink, target.len() as u64),
    };
    Entry {
        cid: *cid,
        root: *root,
        kind,
        size,
        mode: meta.mode,
        mtime: meta.mtime,
        slot: NodeSlot::loaded(node),
        state: None,
    }
}

/// The entry for `cid` as the index describes it, without reading its block (its node is
/// read when the entry is listed, read or followed).
fn described_entry(root: &Cid, cid: &Cid, a: Attrs) -> Entry {
    Entry {
        cid: *cid,
        root: *root,
        kind: match a.kind {
            AttrKind::File => Kind::File,
            AttrKind::Directory => Kind::Directory,
            AttrKind::Symlink => Kind::Symlink,
        },
        size: a.size,
        mode: a.mode,
        mtime: a.mtime,
        slot: NodeSlot::default(),
        state: None,
    }
}

impl View for UnixfsView {
    fn name(&self) -> &'static str {
        "unixfs"
    }

    /// Everything but raw blocks: UnixFS for dag-pb, the block's bytes for other codecs.
    fn is_default_for(&self, cid: &Cid) -> bool {
        cid.codec() != codes::RAW
    }

    fn root(&self, nodes: &NodeCache, cid: &Cid) -> Result<Option<Entry>, ViewError> {
        Ok(Some(entry(cid, cid, nodes.entry_node(cid)?)))
    }

    fn lookup(&self, nodes: &NodeCache, dir: &Entry, name: &str) -> Result<Option<Cid>, ViewError> {
        if dir.kind != Kind::Directory {
            return Err(ViewError::WrongKind);
        }
        let node = dir.node(nodes)?;
        Ok(nodes.lookup(&dir.cid, &node, name)?)
    }

    fn child(&self, nodes: &NodeCache, dir: &Entry, link: Link<'_>) -> Result<Entry, ViewError> {
        let cid = link.cid;
        // A node decoded already describes itself; else the directory's summary of its
        // children in the index, else the child's own record, else its block.
        if let Some(node) = nodes.cached(cid) {
            return Ok(entry(&dir.root, cid, node));
        }
        let node = dir.node(nodes)?;
        if let Some(a) = nodes.described_child(&dir.cid, &node, link) {
            return Ok(described_entry(&dir.root, cid, a));
        }
        if let Some(a) = nodes.source().indexed(cid).and_then(|m| m.described()) {
            return Ok(described_entry(&dir.root, cid, a));
        }
        // A raw block that is not here (its tree's skeleton came without its leaves): a
        // file of the size its directory states, so that a listing or `stat` does not wait
        // for the file's bytes. A raw block has no mode or mtime to miss. The size is the
        // directory author's word (honest importers write the block's length) and stays
        // the inode's while the kernel keeps it; reads serve the block's verified bytes,
        // so a wrong size makes short reads or a cut file, never other bytes. Sizes no
        // peer could send as one block are not taken: such a child is read to describe it.
        if cid.codec() == codes::RAW && !nodes.source().has(cid).unwrap_or(true) {
            if let Some(size) = nodes
                .link_size(&dir.cid, &node, link)
                .filter(|s| *s <= MAX_RAW_DESCRIBED)
            {
                let a = Attrs {
                    kind: AttrKind::File,
                    size,
                    mode: None,
                    mtime: None,
                };
                return Ok(described_entry(&dir.root, cid, a));
            }
        }
        Ok(entry(&dir.root, cid, nodes.entry_node(cid)?))
    }

    fn list(&self, nodes: &NodeCache, dir: &Entry) -> Result<Arc<Vec<(String, Cid)>>, ViewError> {
        if dir.kind != Kind::Directory {
            return Err(ViewError::WrongKind);
        }
        let node = dir.node(nodes)?;
        Ok(nodes.listing(&dir.cid, &node)?)
    }

    fn readlink(&self, nodes: &NodeCache, link: &Entry) -> Result<Vec<u8>, ViewError> {
        match &*link.node(nodes)? {
            Node::Symlink { target, .. } => Ok(target.to_vec()),
            _ => Err(ViewError::WrongKind),
        }
    }

    fn backing_block(&self, file: &Entry) -> Option<Cid> {
        // A raw block is the file's bytes exactly; a dag-pb leaf wraps them in protobuf.
        (file.cid.codec() == codes::RAW).then_some(file.cid)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use cairn_store::{index::BlockMeta, BlockSource, Bytes, Store, StoreError};
    use cairn_unixfs::{
        import::{tree, AddOptions},
        NodeSource,
    };

    use super::*;

    /// The store, counting the index reads that describe single blocks.
    struct Counting(Store, AtomicUsize);

    impl BlockSource for Counting {
        fn get(&self, cid: &Cid) -> Result<Option<Bytes>, StoreError> {
            self.0.get(cid)
        }
        fn has(&self, cid: &Cid) -> Result<bool, StoreError> {
            self.0.has(cid)
        }
        fn indexed(&self, cid: &Cid) -> Option<BlockMeta> {
            self.1.fetch_add(1, Ordering::Relaxed);
            self.0.indexed(cid)
        }
    }

    /// A listing is described by the directory's summary of its children in the index: one
    /// read of the index for the whole directory, none per child, and for each child what
    /// its own block says (kind, size, mode, mtime; raw leaves and dag-pb files, symlinks,
    /// directories). A lookup by name finds the same.
    #[test]
    fn a_listing_is_described_by_one_read_of_the_index() {
        let t = tempfile::tempdir().unwrap();
        let src = t.path().join("src");
        std::fs::create_dir_all(src.join("sub")).unwrap();
        for i in 0..40 {
            let f = src.join(format!("f{i:02}"));
            std::fs::write(&f, "x".repeat(i * 37)).unwrap();
            let mode = if i % 3 == 0 { 0o750 } else { 0o644 };
            std::fs::set_permissions(&f, std::os::unix::fs::PermissionsExt::from_mode(mode))
                .unwrap();
        }
        std::os::unix::fs::symlink("f01", src.join("link")).unwrap();
        let root = t.path().join("root");
        let store = Store::init(&root).unwrap();
        for raw_leaves in [false, true] {
            let opts = AddOptions {
                raw_leaves,
                preserve_mode: true,
                preserve_mtime: true,
                ..AddOptions::default()
            }
            .resolve(Some(1), None)
            .unwrap();
            let added = tree::add_path(&store, &opts, &src, true, &()).unwrap();
            store.flush().unwrap();
            let dir_cid = added.last().unwrap().added.cid;

            // As a mount sees the store: another handle, reading the index beside its holder.
            let src = Arc::new(Counting(Store::open(&root).unwrap(), AtomicUsize::new(0)));
            let nodes = NodeCache::new(src.clone(), 64 << 20);
            let dir = UnixfsView.root(&nodes, &dir_cid).unwrap().unwrap();
            let listing = UnixfsView.list(&nodes, &dir).unwrap();
            assert_eq!(listing.len(), 42);
            let before = src.1.load(Ordering::Relaxed);
            let listed: Vec<Entry> = (listing.iter().enumerate())
                .map(|(i, (name, cid))| {
                    let link = Link {
                        name,
                        cid,
                        at: Some(i),
                    };
                    UnixfsView.child(&nodes, &dir, link).unwrap()
                })
                .collect();
            assert_eq!(
                src.1.load(Ordering::Relaxed) - before,
                1,
                "raw leaves {raw_leaves}"
            );
            let looked = UnixfsView
                .child(
                    &nodes,
                    &dir,
                    Link {
                        name: "f05",
                        cid: &listing[5].1,
                        at: None,
                    },
                )
                .unwrap();
            assert_eq!(src.1.load(Ordering::Relaxed) - before, 1);

            // What each child's own block says, through a cache that decodes every block.
            let blocks = NodeCache::new(Arc::new(Store::open(&root).unwrap()), 64 << 20);
            for (e, (name, cid)) in listed
                .iter()
                .chain([&looked])
                .zip(listing.iter().chain([&listing[5]]))
            {
                let want = entry(&dir_cid, cid, blocks.node(cid).unwrap());
                let got = (e.kind, e.size, e.mode, e.mtime);
                assert_eq!(got, (want.kind, want.size, want.mode, want.mtime), "{name}");
                assert!(e.kind != Kind::File || want.mtime.is_some(), "{name}");
            }
        }
    }
}
