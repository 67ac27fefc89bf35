//! Reading files: any byte range, loading only the blocks that cover it.

use std::io::Write;

use bytes::Bytes;
use cairn_store::{BlockSource, Cid};

use crate::{
    node::{FileNode, Node},
    Progress, UnixfsError,
};

/// Deeper than any DAG an importer makes; a hostile DAG deeper than this is refused.
const MAX_DEPTH: usize = 64;

/// A UnixFS file (or raw block) opened for reading.
pub struct FileReader<'a> {
    src: &'a dyn BlockSource,
    root: FileNode,
    cid: Cid,
}

impl<'a> FileReader<'a> {
    /// Opens `cid`, which must be a file (dag-pb File, or a raw block), or any block of another
    /// codec (read as its bytes).
    pub fn open(src: &'a dyn BlockSource, cid: &Cid) -> Result<Self, UnixfsError> {
        let node = crate::resolve::load(src, cid)?;
        Self::from_node(src, cid, node)
    }

    pub fn from_node(src: &'a dyn BlockSource, cid: &Cid, node: Node) -> Result<Self, UnixfsError> {
        let root = match node {
            Node::File(f) => f,
            Node::Opaque { bytes, .. } => FileNode {
                size: bytes.len() as u64,
                inline: bytes,
                children: vec![],
                meta: Default::default(),
            },
            _ => {
                return Err(UnixfsError::NotAFile {
                    path: cid.to_string(),
                })
            }
        };
        Ok(FileReader {
            src,
            root,
            cid: *cid,
        })
    }

    pub fn size(&self) -> u64 {
        self.root.size
    }

    pub fn node(&self) -> &FileNode {
        &self.root
    }

    /// Calls `f` with the file's bytes in `[offset, offset + len)`, in order, as slices of the
    /// blocks that hold them.
    pub fn for_each(
        &self,
        offset: u64,
        len: u64,
        f: &mut dyn FnMut(Bytes) -> Result<(), UnixfsError>,
    ) -> Result<(), UnixfsError> {
        let end = offset.saturating_add(len).min(self.root.size);
        if offset >= end {
            return Ok(());
        }
        self.visit(&self.root, &self.cid, 0, offset, end, f, 0)
    }

    #[allow(clippy::too_many_arguments)]
    fn visit(
        &self,
        node: &FileNode,
        cid: &Cid,
        at: u64,
        start: u64,
        end: u64,
        f: &mut dyn FnMut(Bytes) -> Result<(), UnixfsError>,
        depth: usize,
    ) -> Result<(), UnixfsError> {
        if depth > MAX_DEPTH {
            return Err(UnixfsError::InvalidNode {
                cid: *cid,
                reason: format!("file DAG deeper than {MAX_DEPTH} levels"),
            });
        }
        let inline_end = at + node.inline.len() as u64;
        if start < inline_end && end > at {
            let s = (start.max(at) - at) as usize;
            let e = (end.min(inline_end) - at) as usize;
            f(node.inline.slice(s..e))?;
        }
        let mut child_at = inline_end;
        for (child, size) in &node.children {
            let child_end = child_at + size;
            if child_at >= end {
                break;
            }
            if child_end > start && *size > 0 {
                let sub = match crate::resolve::load(self.src, child)? {
                    Node::File(sub) => sub,
                    _ => {
                        return Err(UnixfsError::InvalidNode {
                            cid: *cid,
                            reason: format!("file links to {child}, which is not a file"),
                        })
                    }
                };
                if sub.size != *size {
                    return Err(UnixfsError::InvalidNode {
                        cid: *cid,
                        reason: format!(
                            "blocksize of {child} says {size} bytes but it holds {}",
                            sub.size
                        ),
                    });
                }
                self.visit(&sub, child, child_at, start, end, f, depth + 1)?;
            }
            child_at = child_end;
        }
        Ok(())
    }

    /// The bytes in `[offset, offset + len)` (fewer at the end of the file).
    pub fn read_at(&self, offset: u64, len: usize) -> Result<Vec<u8>, UnixfsError> {
        let mut out = Vec::with_capacity(len.min(self.root.size as usize));
        self.for_each(offset, len as u64, &mut |b| {
            out.extend_from_slice(&b);
            Ok(())
        })?;
        Ok(out)
    }

    /// Writes the whole file to `w`.
    pub fn copy_to(&self, w: &mut dyn Write, progress: &dyn Progress) -> Result<u64, UnixfsError> {
        let mut n = 0;
        self.for_each(0, self.root.size, &mut |b| {
            w.write_all(&b).map_err(UnixfsError::Output)?;
            n += b.len() as u64;
            progress.add_bytes(b.len() as u64);
            Ok(())
        })?;
        Ok(n)
    }
}
