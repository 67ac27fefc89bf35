//! `unixfs`: UnixFS files, directories, HAMT-sharded directories and symlinks, with mode
//! and mtime when the nodes carry them. Blocks of other codecs (dag-cbor, dag-json, ...) are
//! files holding their bytes.

use std::sync::Arc;

use cairn_store::{codec::codes, Cid};
use cairn_unixfs::{resolve, Node};

use super::{Entry, Kind, View, ViewError};
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
        node,
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
        Ok(resolve::lookup(nodes, &dir.node, name)?.map(|l| l.cid))
    }

    fn child(
        &self,
        nodes: &NodeCache,
        dir: &Entry,
        _: &str,
        cid: &Cid,
    ) -> Result<Entry, ViewError> {
        Ok(entry(&dir.root, cid, nodes.entry_node(cid)?))
    }

    fn list(&self, nodes: &NodeCache, dir: &Entry) -> Result<Arc<Vec<(String, Cid)>>, ViewError> {
        if dir.kind != Kind::Directory {
            return Err(ViewError::WrongKind);
        }
        Ok(nodes.listing(&dir.cid, &dir.node)?)
    }

    fn readlink(&self, _: &NodeCache, link: &Entry) -> Result<Vec<u8>, ViewError> {
        match &*link.node {
            Node::Symlink { target, .. } => Ok(target.to_vec()),
            _ => Err(ViewError::WrongKind),
        }
    }

    fn backing_block(&self, file: &Entry) -> Option<Cid> {
        // A raw block is the file's bytes exactly; a dag-pb leaf wraps them in protobuf.
        (file.cid.codec() == codes::RAW).then_some(file.cid)
    }
}
