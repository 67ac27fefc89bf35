//! Reading files: any byte range, loading only the blocks that cover it.

use std::{io::Write, sync::Arc};

use bytes::Bytes;
use cairn_store::{BlockSource, Cid};

use crate::{
    node::{FileNode, Node},
    Progress, UnixfsError,
};

/// Deeper than any DAG an importer makes; a hostile DAG deeper than this is refused.
const MAX_DEPTH: usize = 64;

/// How far past the end of a read the reader asks for blocks ahead ([`NodeSource::prefetch`]):
/// sequential readers then find the next blocks on their way from disk (or a peer).
const READ_AHEAD: u64 = 4 << 20;

/// At most this many blocks are named in one read-ahead hint.
const READ_AHEAD_BLOCKS: usize = 64;

/// Where readers get decoded nodes: straight from blocks, or from a cache of decoded nodes.
pub trait NodeSource: Sync {
    /// The node `cid` names, from a verified block. A block that is not available is
    /// [`UnixfsError::MissingBlock`].
    fn node(&self, cid: &Cid) -> Result<Arc<Node>, UnixfsError>;

    /// A hint that these nodes will be asked for soon (see [`BlockSource::prefetch`]).
    fn prefetch(&self, cids: &[Cid]) {
        let _ = cids;
    }

    /// All the file bytes of `cid`, for a reader that wants every one of them: either
    /// appended to `out` ([`Whole::Appended`], for a leaf: a source may then skip decoding
    /// into a node it would keep), or the node to walk ([`Whole::Node`]). The default
    /// always answers with the node.
    fn whole(&self, cid: &Cid, out: &mut Vec<u8>) -> Result<Whole, UnixfsError> {
        let _ = out;
        self.node(cid).map(Whole::Node)
    }
}

/// What [`NodeSource::whole`] did.
pub enum Whole {
    /// The leaf's bytes were appended to the caller's buffer.
    Appended,
    /// Not appended: here is the node (a file with children, or a cached leaf).
    Node(Arc<Node>),
}

impl<T: NodeSource + ?Sized> NodeSource for &T {
    fn node(&self, cid: &Cid) -> Result<Arc<Node>, UnixfsError> {
        (**self).node(cid)
    }
    fn prefetch(&self, cids: &[Cid]) {
        (**self).prefetch(cids)
    }
    fn whole(&self, cid: &Cid, out: &mut Vec<u8>) -> Result<Whole, UnixfsError> {
        (**self).whole(cid, out)
    }
}

/// Decodes each node it is asked for, with no cache.
pub struct Decode<'a>(pub &'a dyn BlockSource);

impl NodeSource for Decode<'_> {
    fn node(&self, cid: &Cid) -> Result<Arc<Node>, UnixfsError> {
        crate::resolve::load(self.0, cid).map(Arc::new)
    }
    fn prefetch(&self, cids: &[Cid]) {
        self.0.prefetch(cids)
    }
}

/// Where [`FileReader`] puts the bytes it reads.
enum Sink<'a> {
    /// Each piece, as a slice of its block.
    Each(&'a mut dyn FnMut(Bytes) -> Result<(), UnixfsError>),
    /// Appended to one buffer; whole leaves may be read straight into it.
    Buffer(&'a mut Vec<u8>),
}

impl Sink<'_> {
    fn put(&mut self, b: Bytes) -> Result<(), UnixfsError> {
        match self {
            Sink::Each(f) => f(b),
            Sink::Buffer(v) => {
                v.extend_from_slice(&b);
                Ok(())
            }
        }
    }
}

/// A UnixFS file (or raw block, or block of another codec read as bytes) opened for reading.
pub struct FileReader<S> {
    src: S,
    root: Arc<Node>,
    cid: Cid,
}

impl<'a> FileReader<Decode<'a>> {
    /// Opens `cid` from a block source, without caching.
    pub fn open(src: &'a dyn BlockSource, cid: &Cid) -> Result<Self, UnixfsError> {
        let node = crate::resolve::load(src, cid)?;
        Self::from_node(Decode(src), cid, Arc::new(node))
    }
}

impl<S: NodeSource> FileReader<S> {
    /// A reader of `node`, the decoded block of `cid`, which must be a file or opaque bytes.
    pub fn from_node(src: S, cid: &Cid, node: Arc<Node>) -> Result<Self, UnixfsError> {
        let root = match &*node {
            Node::File(_) => node,
            Node::Opaque { bytes, .. } => Arc::new(Node::File(FileNode {
                size: bytes.len() as u64,
                inline: bytes.clone(),
                children: vec![],
                meta: Default::default(),
            })),
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

    pub fn node(&self) -> &FileNode {
        match &*self.root {
            Node::File(f) => f,
            _ => unreachable!("from_node keeps only files"),
        }
    }

    pub fn size(&self) -> u64 {
        self.node().size
    }

    /// Calls `f` with the file's bytes in `[offset, offset + len)`, in order, as slices of the
    /// blocks that hold them.
    pub fn for_each(
        &self,
        offset: u64,
        len: u64,
        f: &mut dyn FnMut(Bytes) -> Result<(), UnixfsError>,
    ) -> Result<(), UnixfsError> {
        self.read(offset, len, &mut Sink::Each(f))
    }

    /// Appends the file's bytes in `[offset, offset + len)` to `out` (fewer at the end of
    /// the file). Leaves wholly inside the range go straight from their blocks into `out`.
    /// On error, `out` may hold part of the range.
    pub fn read_into(&self, offset: u64, len: u64, out: &mut Vec<u8>) -> Result<(), UnixfsError> {
        self.read(offset, len, &mut Sink::Buffer(out))
    }

    fn read(&self, offset: u64, len: u64, sink: &mut Sink) -> Result<(), UnixfsError> {
        let root = self.node();
        let end = offset.saturating_add(len).min(root.size);
        if offset >= end {
            return Ok(());
        }
        self.visit(root, &self.cid, 0, offset, end, sink, 0)
    }

    #[allow(clippy::too_many_arguments)]
    fn visit(
        &self,
        node: &FileNode,
        cid: &Cid,
        at: u64,
        start: u64,
        end: u64,
        sink: &mut Sink,
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
            sink.put(node.inline.slice(s..e))?;
        }
        self.ask_ahead(node, inline_end, start, end);
        let mut child_at = inline_end;
        for (child, size) in node.children.iter() {
            let child_end = child_at + size;
            if child_at >= end {
                break;
            }
            if child_end > start && *size > 0 {
                let sub = match sink {
                    Sink::Buffer(out) if child_at >= start && child_end <= end => {
                        let before = out.len();
                        match self.src.whole(child, out)? {
                            Whole::Appended if (out.len() - before) as u64 == *size => {
                                child_at = child_end;
                                continue;
                            }
                            Whole::Appended => {
                                let got = out.len() - before;
                                out.truncate(before);
                                return Err(UnixfsError::InvalidNode {
                                    cid: *cid,
                                    reason: format!(
                                        "blocksize of {child} says {size} bytes but it holds {got}"
                                    ),
                                });
                            }
                            Whole::Node(n) => n,
                        }
                    }
                    _ => self.src.node(child)?,
                };
                let Node::File(sub) = &*sub else {
                    return Err(UnixfsError::InvalidNode {
                        cid: *cid,
                        reason: format!("file links to {child}, which is not a file"),
                    });
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
                self.visit(sub, child, child_at, start, end, sink, depth + 1)?;
            }
            child_at = child_end;
        }
        Ok(())
    }

    /// Hints that the children of `node` (whose first child begins at `first`) covering
    /// `[start, end)` and [`READ_AHEAD`] bytes after it will be read, all at once and before
    /// the first is waited for: from a peer, a read of several missing blocks then costs one
    /// round trip rather than one each, and a file of up to `READ_AHEAD` bytes is asked for
    /// whole at its first read. At most [`READ_AHEAD_BLOCKS`] past the range, and that many
    /// more in it, are named (a file may repeat one block, or hold empty ones, many times).
    fn ask_ahead(&self, node: &FileNode, first: u64, start: u64, end: u64) {
        let until = end.saturating_add(READ_AHEAD);
        let mut want: Vec<Cid> = Vec::new();
        let (mut at, mut ahead) = (first, 0);
        for (c, size) in &node.children {
            let c_end = at.saturating_add(*size);
            if at >= until || ahead >= READ_AHEAD_BLOCKS || want.len() >= 2 * READ_AHEAD_BLOCKS {
                break;
            }
            if c_end > start && *size > 0 {
                if at >= end {
                    ahead += 1;
                }
                if !want.contains(c) {
                    want.push(*c);
                }
            }
            at = c_end;
        }
        // One block in all is the one about to be read: nothing to ask ahead of it.
        if want.len() > 1 {
            self.src.prefetch(&want);
        }
    }

    /// The bytes in `[offset, offset + len)` (fewer at the end of the file).
    pub fn read_at(&self, offset: u64, len: usize) -> Result<Vec<u8>, UnixfsError> {
        let mut out = Vec::with_capacity(len.min(self.size() as usize));
        self.read_into(offset, len as u64, &mut out)?;
        Ok(out)
    }

    /// Writes the whole file to `w`.
    pub fn copy_to(&self, w: &mut dyn Write, progress: &dyn Progress) -> Result<u64, UnixfsError> {
        let mut n = 0;
        self.for_each(0, self.size(), &mut |b| {
            w.write_all(&b).map_err(UnixfsError::Output)?;
            n += b.len() as u64;
            progress.add_bytes(b.len() as u64);
            Ok(())
        })?;
        Ok(n)
    }
}
