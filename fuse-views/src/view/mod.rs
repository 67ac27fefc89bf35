//! Views: what the filesystem shows for a CID.
//!
//! A view turns a CID, and paths inside it, into [`Entry`]s (files, directories, symlinks with
//! their attributes) and serves their bytes. The filesystem adapter owns inodes, caching and
//! the FUSE protocol; a view only answers questions about content. Adding a view is one file
//! implementing [`View`] and one line in [`registry`].
//!
//! Views see nodes through a [`NodeCache`], so every byte they serve comes from a verified
//! block. A view may rewrite the bytes it serves (the `app` view will) and may decline CIDs
//! it does not show ([`View::root`] returning `Ok(None)`).

mod raw;
mod unixfs;

use std::sync::Arc;

use cairn_store::{Cid, StoreError};
use cairn_unixfs::{data::Mtime, FileReader, Node, UnixfsError};

pub use self::{raw::RawView, unixfs::UnixfsView};
use crate::cache::NodeCache;

/// The kind of a filesystem entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Directory,
    Symlink,
}

/// One thing a view shows: its CID, kind and attributes, and the decoded node behind it.
#[derive(Debug, Clone)]
pub struct Entry {
    pub cid: Cid,
    /// The CID at the top of the tree this entry belongs to (as named under the view root).
    pub root: Cid,
    pub kind: Kind,
    pub size: u64,
    /// Permission bits as stored (`None`: the view's defaults).
    pub mode: Option<u32>,
    pub mtime: Option<Mtime>,
    pub node: Arc<Node>,
}

/// Why a view could not answer. The adapter maps these to errno values and logs the CID.
#[derive(Debug, thiserror::Error)]
pub enum ViewError {
    /// The name does not exist (ENOENT).
    #[error("no such entry")]
    NotFound,
    /// The entry is of the wrong kind for the operation (ENOTDIR, EINVAL, EISDIR).
    #[error("wrong kind of entry")]
    WrongKind,
    /// Content that cannot be served: corrupt, missing, undecodable (EIO).
    #[error(transparent)]
    Content(#[from] UnixfsError),
}

impl From<StoreError> for ViewError {
    fn from(e: StoreError) -> Self {
        ViewError::Content(e.into())
    }
}

/// A way of showing content. See the module docs for the contract.
pub trait View: Send + Sync + 'static {
    /// The directory name of this view under the mount root.
    fn name(&self) -> &'static str;

    /// The entry `cid` is at the top of this view, or `Ok(None)` if this view does not show it.
    fn root(&self, nodes: &NodeCache, cid: &Cid) -> Result<Option<Entry>, ViewError>;

    /// The CID named `name` in directory `dir`, if any.
    fn lookup(&self, nodes: &NodeCache, dir: &Entry, name: &str) -> Result<Option<Cid>, ViewError>;

    /// The entry for `cid`, found in directory `dir` (its attributes come from its own block:
    /// a listing fetches each child's top block, never its content below that).
    fn child(&self, nodes: &NodeCache, dir: &Entry, cid: &Cid) -> Result<Entry, ViewError>;

    /// A directory's entries: names and CIDs, in a stable order.
    fn list(&self, nodes: &NodeCache, dir: &Entry) -> Result<Arc<Vec<(String, Cid)>>, ViewError>;

    /// Appends up to `size` bytes of file `file` from `offset` to `out` (a buffer the
    /// adapter reuses from request to request, empty on entry). The default reads the
    /// entry's node as a file: UnixFS file DAGs, raw blocks, and other codecs' bytes. A view
    /// that rewrites bytes overrides it.
    fn read(
        &self,
        nodes: &NodeCache,
        file: &Entry,
        offset: u64,
        size: u32,
        out: &mut Vec<u8>,
    ) -> Result<(), ViewError> {
        if file.kind != Kind::File {
            return Err(ViewError::WrongKind);
        }
        let reader = FileReader::from_node(nodes, &file.cid, file.node.clone())?;
        Ok(reader.read_into(offset, size.into(), out)?)
    }

    /// A symlink's target.
    fn readlink(&self, nodes: &NodeCache, link: &Entry) -> Result<Vec<u8>, ViewError>;

    /// The block whose bytes are exactly this file's bytes, when there is one: the adapter
    /// may then let the kernel read the block file directly (FUSE passthrough). Views that
    /// rewrite bytes return `None`.
    fn backing_block(&self, file: &Entry) -> Option<Cid> {
        let _ = file;
        None
    }
}

/// Every view the filesystem shows, in the order the mount root lists them.
pub fn registry() -> Vec<Arc<dyn View>> {
    vec![Arc::new(UnixfsView), Arc::new(RawView)]
}

/// The view `R/store/{cid}` uses: `raw` for raw blocks, `unixfs` for everything else (UnixFS
/// for dag-pb, the block's bytes for other codecs).
pub fn default_view(views: &[Arc<dyn View>], cid: &Cid) -> usize {
    let want = if cid.codec() == cairn_store::codec::codes::RAW {
        "raw"
    } else {
        "unixfs"
    };
    views.iter().position(|v| v.name() == want).unwrap_or(0)
}
