//! `raw`: any block, of any codec, as a file holding the block's bytes.

use std::sync::Arc;

use cairn_store::{codec::codes, Cid};
use cairn_unixfs::{Node, UnixfsError};

use super::{Entry, Kind, Link, NodeSlot, View, ViewError};
use crate::cache::NodeCache;

pub struct RawView;

impl View for RawView {
    fn name(&self) -> &'static str {
        "raw"
    }

    /// Raw blocks: their bytes are all there is to show.
    fn is_default_for(&self, cid: &Cid) -> bool {
        cid.codec() == codes::RAW
    }

    fn root(&self, nodes: &NodeCache, cid: &Cid) -> Result<Option<Entry>, ViewError> {
        let node = if cid.codec() == codes::RAW {
            // A raw block decodes to a file of exactly its bytes (read when read, if large).
            nodes.entry_node(cid)?
        } else {
            let bytes = nodes
                .source()
                .get(cid)?
                .ok_or(UnixfsError::MissingBlock(*cid))?;
            Arc::new(Node::Opaque {
                codec: cid.codec(),
                bytes,
            })
        };
        let size = match &*node {
            Node::File(f) => f.size,
            Node::Opaque { bytes, .. } => bytes.len() as u64,
            _ => return Err(ViewError::WrongKind),
        };
        Ok(Some(Entry {
            cid: *cid,
            root: *cid,
            kind: Kind::File,
            size,
            mode: None,
            mtime: None,
            slot: NodeSlot::loaded(node),
            state: None,
        }))
    }

    fn lookup(&self, _: &NodeCache, _: &Entry, _: &str) -> Result<Option<Cid>, ViewError> {
        Err(ViewError::WrongKind)
    }

    fn child(&self, _: &NodeCache, _: &Entry, _: Link<'_>) -> Result<Entry, ViewError> {
        Err(ViewError::WrongKind)
    }

    fn list(&self, _: &NodeCache, _: &Entry) -> Result<Arc<Vec<(String, Cid)>>, ViewError> {
        Err(ViewError::WrongKind)
    }

    fn readlink(&self, _: &NodeCache, _: &Entry) -> Result<Vec<u8>, ViewError> {
        Err(ViewError::WrongKind)
    }

    fn backing_block(&self, file: &Entry) -> Option<Cid> {
        Some(file.cid)
    }
}
