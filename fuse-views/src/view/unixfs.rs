//! `unixfs`: UnixFS files, directories, HAMT-sharded directories and symlinks, with mode
//! and mtime when the nodes carry them. Blocks of other codecs (dag-cbor, dag-json, ...) are
//! files holding their bytes.

use std::sync::Arc;

use cairn_store::{
    codec::{codes, unixfs::AttrKind},
    Cid,
};
use cairn_unixfs::Node;

use super::{Entry, Kind, NodeSlot, View, ViewError};
use crate::cache::NodeCache;

pub struct UnixfsView;

fn entry(root: &Cid, cid: &Cid, node: Arc<Node>) -> Entry {
    let meta = node.meta();
    let (kind, size) = match &*node {
        Node::File(f) => (Kind::File, f.size),
        Node::Opaque { bytes, .. } => (Kind::File, bytes.len() as u64),
        Node::Directory(_) | Node::HamtShard(_) => (Kind::Directory, 0),
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

/// The entry for `cid` described from the index, without reading its block (its node is
/// read when the entry is listed, read or followed), if the index knows it.
fn indexed_entry(nodes: &NodeCache, root: &Cid, cid: &Cid) -> Option<Entry> {
    let meta = nodes.source().indexed(cid)?;
    let (kind, size, mode, mtime) = match (cid.codec(), meta.attrs) {
        (codes::RAW, _) => (Kind::File, meta.size, None, None),
        (codes::DAG_PB, Some(a)) => {
            let kind = match a.kind {
                AttrKind::File => Kind::File,
                AttrKind::Directory => Kind::Directory,
                AttrKind::Symlink => Kind::Symlink,
            };
            (kind, a.size, a.mode, a.mtime)
        }
        _ => return None,
    };
    Some(Entry {
        cid: *cid,
        root: *root,
        kind,
        size,
        mode,
        mtime,
        slot: NodeSlot::default(),
        state: None,
    })
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

    fn child(
        &self,
        nodes: &NodeCache,
        dir: &Entry,
        _: &str,
        cid: &Cid,
    ) -> Result<Entry, ViewError> {
        // A node decoded already describes itself; else the index, else its block.
        if let Some(node) = nodes.cached(cid) {
            return Ok(entry(&dir.root, cid, node));
        }
        if let Some(e) = indexed_entry(nodes, &dir.root, cid) {
            return Ok(e);
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
