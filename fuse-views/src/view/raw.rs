//! `raw`: any block, of any codec, as a file holding the block's bytes.

use std::sync::Arc;

use cairn_store::Cid;
use cairn_unixfs::Node;

use super::{Entry, Kind, View, ViewError};
use crate::cache::NodeCache;

pub struct RawView;

impl View for RawView {
    fn name(&self) -> &'static str {
        "raw"
    }

    fn root(&self, nodes: &NodeCache, cid: &Cid) -> Result<Option<Entry>, ViewError> {
        let bytes = nodes
            .source()
            .get(cid)?
            .ok_or(cairn_unixfs::UnixfsError::MissingBlock(*cid))?;
        Ok(Some(Entry {
            cid: *cid,
            root: *cid,
            kind: Kind::File,
            size: bytes.len() as u64,
            mode: None,
            mtime: None,
            node: Arc::new(Node::Opaque {
                codec: cid.codec(),
                bytes,
            }),
        }))
    }

    fn lookup(&self, _: &NodeCache, _: &Entry, _: &str) -> Result<Option<Cid>, ViewError> {
        Err(ViewError::WrongKind)
    }

    fn child(&self, _: &NodeCache, _: &Entry, _: &Cid) -> Result<Entry, ViewError> {
        Err(ViewError::WrongKind)
    }

    fn list(&self, _: &NodeCache, _: &Entry) -> Result<Arc<Vec<(String, Cid)>>, ViewError> {
        Err(ViewError::WrongKind)
    }

    fn read(
        &self,
        _: &NodeCache,
        file: &Entry,
        offset: u64,
        size: u32,
    ) -> Result<Vec<u8>, ViewError> {
        let Node::Opaque { bytes, .. } = &*file.node else {
            return Err(ViewError::WrongKind);
        };
        let start = (offset as usize).min(bytes.len());
        let end = start.saturating_add(size as usize).min(bytes.len());
        Ok(bytes[start..end].to_vec())
    }

    fn readlink(&self, _: &NodeCache, _: &Entry) -> Result<Vec<u8>, ViewError> {
        Err(ViewError::WrongKind)
    }

    fn backing_block(&self, file: &Entry) -> Option<Cid> {
        Some(file.cid)
    }
}
