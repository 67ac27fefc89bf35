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

mod app;
mod raw;
mod unixfs;

use std::sync::Arc;

use cairn_store::{Cid, StoreError};
use cairn_unixfs::{data::Mtime, FileReader, Node, UnixfsError};

pub use self::{app::AppView, raw::RawView, unixfs::UnixfsView};
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
    /// A file's size, a symlink target's length, a directory's number of links.
    pub size: u64,
    /// Permission bits as stored (`None`: the view's defaults).
    pub mode: Option<u32>,
    pub mtime: Option<Mtime>,
    /// The decoded node behind the entry, or an empty slot filled on first use (entries made
    /// from the index, so that a listing or `stat` reads no block): see [`Entry::node`].
    pub slot: NodeSlot,
    /// What the view that made this entry keeps with it (an app file's offsets, say), so that
    /// it does not decode its node again on every read. The adapter never looks inside.
    pub state: Option<ViewState>,
}

/// An entry's decoded node, present or loaded once when first needed. Clones share it.
#[derive(Debug, Clone, Default)]
pub struct NodeSlot(Arc<std::sync::OnceLock<Arc<Node>>>);

impl NodeSlot {
    /// A slot holding `node`.
    pub fn loaded(node: Arc<Node>) -> NodeSlot {
        let slot = NodeSlot::default();
        let _ = slot.0.set(node);
        slot
    }
}

impl Entry {
    /// The entry's decoded, verified node: read from its block the first time it is needed
    /// if the entry was described from the index.
    pub fn node(&self, nodes: &NodeCache) -> Result<Arc<Node>, UnixfsError> {
        if let Some(n) = self.slot.0.get() {
            return Ok(n.clone());
        }
        let n = nodes.entry_node(&self.cid)?;
        Ok(self.slot.0.get_or_init(|| n).clone())
    }
}

/// A name in a directory and the CID it names, as a lookup or a listing found it.
#[derive(Debug, Clone, Copy)]
pub struct Link<'a> {
    pub name: &'a str,
    pub cid: &'a Cid,
    /// Where it is in the directory's listing, when a listing found it (a lookup by name
    /// does not know).
    pub at: Option<usize>,
}

/// A view's own data attached to an [`Entry`]: any type, shared, read back with
/// [`ViewState::get`].
#[derive(Clone)]
pub struct ViewState(pub Arc<dyn std::any::Any + Send + Sync>);

impl ViewState {
    /// The state as a `T`, if it is one.
    pub fn get<T: std::any::Any>(&self) -> Option<&T> {
        self.0.downcast_ref()
    }
}

impl std::fmt::Debug for ViewState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ViewState(..)")
    }
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

    /// Whether `R/store/{cid}` (no view named) shows `cid` in this view. The first view of
    /// the [`registry`] that claims a CID gets it; when none does, the first view.
    fn is_default_for(&self, cid: &Cid) -> bool {
        let _ = cid;
        false
    }

    /// The entry `cid` is at the top of this view, or `Ok(None)` if this view does not show it.
    fn root(&self, nodes: &NodeCache, cid: &Cid) -> Result<Option<Entry>, ViewError>;

    /// The CID named `name` in directory `dir`, if any.
    fn lookup(&self, nodes: &NodeCache, dir: &Entry, name: &str) -> Result<Option<Cid>, ViewError>;

    /// The entry that `link` of directory `dir` names. Its attributes come from the index
    /// where it has them (the directory's summary of its children, else the child's own
    /// record), else from the child's top block, never from its content below that.
    fn child(&self, nodes: &NodeCache, dir: &Entry, link: Link<'_>) -> Result<Entry, ViewError>;

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
        let reader = FileReader::from_node(nodes, &file.cid, file.node(nodes)?)?;
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

    /// Whether this view serves bytes other than its blocks' (the `app` view patches its own
    /// CID in). The adapter never lets the kernel read such a view's files from block files,
    /// whatever [`View::backing_block`] says.
    fn rewrites(&self) -> bool {
        false
    }
}

/// The block the kernel may read `file` from directly, if any: none for a view that rewrites
/// bytes, and none for what is not a file.
pub fn passthrough_block(view: &dyn View, file: &Entry) -> Option<Cid> {
    if view.rewrites() || file.kind != Kind::File {
        return None;
    }
    view.backing_block(file)
}

/// Every view the filesystem shows, in the order the mount root lists them. A new view is one
/// file and one line here.
pub fn registry() -> Vec<Arc<dyn View>> {
    vec![
        Arc::new(UnixfsView),
        Arc::new(RawView),
        Arc::new(AppView::app()),
        Arc::new(AppView::webapp()),
    ]
}

/// The view `R/store/{cid}` uses: the first that claims it ([`View::is_default_for`]).
pub fn default_view(views: &[Arc<dyn View>], cid: &Cid) -> usize {
    views
        .iter()
        .position(|v| v.is_default_for(cid))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A view that rewrites bytes and, wrongly, names a backing block.
    struct Rewriting;

    impl View for Rewriting {
        fn name(&self) -> &'static str {
            "rewriting"
        }
        fn root(&self, _: &NodeCache, _: &Cid) -> Result<Option<Entry>, ViewError> {
            Ok(None)
        }
        fn lookup(&self, _: &NodeCache, _: &Entry, _: &str) -> Result<Option<Cid>, ViewError> {
            Ok(None)
        }
        fn child(&self, _: &NodeCache, _: &Entry, _: Link<'_>) -> Result<Entry, ViewError> {
            Err(ViewError::NotFound)
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
        fn rewrites(&self) -> bool {
            true
        }
    }

    fn raw_file(bytes: &[u8]) -> Entry {
        let cid = Cid::new_v1(
            cairn_store::codec::codes::RAW,
            cairn_store::HashAlg::Sha2_256.digest(bytes),
        );
        Entry {
            cid,
            root: cid,
            kind: Kind::File,
            size: bytes.len() as u64,
            mode: None,
            mtime: None,
            slot: NodeSlot::loaded(Arc::new(Node::Opaque {
                codec: cid.codec(),
                bytes: bytes.to_vec().into(),
            })),
            state: None,
        }
    }

    /// Invariant: a view that rewrites bytes offers no backing block for passthrough, even if
    /// it names one; the views that serve blocks as they are offer a raw file's block.
    #[test]
    fn a_rewriting_view_never_gets_passthrough() {
        let file = raw_file(b"a file that is one raw block");
        assert_eq!(passthrough_block(&Rewriting, &file), None);
        for v in registry().into_iter().filter(|v| !v.rewrites()) {
            assert_eq!(
                passthrough_block(&*v, &file),
                Some(file.cid),
                "{}",
                v.name()
            );
        }
        let dir = Entry {
            kind: Kind::Directory,
            ..raw_file(b"")
        };
        assert_eq!(passthrough_block(&RawView, &dir), None);
    }

    /// Every registered view claims exactly the CIDs it is the default for, and the first
    /// claim wins.
    #[test]
    fn each_codec_has_one_default_view() {
        use cairn_store::codec::codes;
        let views = registry();
        let raw = Cid::new_v1(codes::RAW, cairn_store::HashAlg::Sha2_256.digest(b"x"));
        let pb = Cid::new_v1(codes::DAG_PB, *raw.hash());
        let cbor = Cid::new_v1(codes::DAG_CBOR, *raw.hash());
        assert_eq!(views[default_view(&views, &raw)].name(), "raw");
        assert_eq!(views[default_view(&views, &pb)].name(), "unixfs");
        assert_eq!(views[default_view(&views, &cbor)].name(), "unixfs");
        for c in [raw, pb, cbor] {
            let claims = views.iter().filter(|v| v.is_default_for(&c)).count();
            assert_eq!(claims, 1, "{c}");
        }
    }
}
