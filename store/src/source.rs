//! The trait every reader of blocks goes through.

use std::sync::Arc;

use bytes::Bytes;
use cid::Cid;

use crate::StoreError;

/// Somewhere blocks can be read from: the local store, or the network in front of it.
///
/// Contract:
/// - `get` returns bytes that hash to `cid`, checked by the implementation. A block whose
///   bytes do not match is [`StoreError::Corrupt`] (a source that can fetch it again may do
///   so instead).
/// - `Ok(None)` means "absent, and this source has nowhere else to look" (the local store).
///   A source that asks the network bounds its wait, then answers
///   [`StoreError::Unavailable`]: not here, and the network gave up (readers answer EIO).
/// - Implementations may block the calling thread (disk I/O, or a bounded wait for a peer),
///   so async code calls them from `spawn_blocking`. They are synchronous on purpose: the hot
///   caller is a FUSE thread, and the local store has nothing to await.
/// - `size` and `has` answer from what is here, without waiting for anyone.
pub trait BlockSource: Send + Sync {
    fn get(&self, cid: &Cid) -> Result<Option<Bytes>, StoreError>;

    /// Like `get`, appending the verified bytes to `out` (left as it was on error or when the
    /// block is absent). The local store reads straight into `out`; the default copies.
    fn get_into(&self, cid: &Cid, out: &mut Vec<u8>) -> Result<bool, StoreError> {
        match self.get(cid)? {
            Some(b) => {
                out.extend_from_slice(&b);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// The size of a block that is here, without reading or checking it; `Ok(None)` if it
    /// is absent or the source cannot tell without fetching it (callers then `get` it).
    fn size(&self, cid: &Cid) -> Result<Option<u64>, StoreError> {
        let _ = cid;
        Ok(None)
    }

    /// What the local index knows of the block (size, codec, links, UnixFS attributes),
    /// without reading it; `None` if it knows nothing or there is no index. A hint: the
    /// block itself may have been collected since.
    fn indexed(&self, cid: &Cid) -> Option<crate::index::BlockMeta> {
        let _ = cid;
        None
    }

    /// True if `get` would find the block without waiting for anyone.
    fn has(&self, cid: &Cid) -> Result<bool, StoreError>;

    /// A hint that these blocks will be read soon: start bringing them closer (into the page
    /// cache, or from a peer) without waiting. Never fails; the default does nothing.
    fn prefetch(&self, cids: &[Cid]) {
        let _ = cids;
    }

    /// As [`prefetch`](Self::prefetch), for blocks that are here only: nothing is asked of
    /// the network (a guess too wide to pay for with a peer's bytes). The default does
    /// nothing.
    fn prefetch_local(&self, cids: &[Cid]) {
        let _ = cids;
    }

    /// A hint that a reader entered the tree under `root` (the mount resolved
    /// `R/store/{view}/{root}`): a source that fetches may bring the blocks that listings and
    /// lookups below it need now, many at once, rather than one round trip per name. Never
    /// waits, never fails; the default does nothing.
    fn entered(&self, root: &Cid) {
        let _ = root;
    }
}

impl<T: BlockSource + ?Sized> BlockSource for Arc<T> {
    fn get(&self, cid: &Cid) -> Result<Option<Bytes>, StoreError> {
        (**self).get(cid)
    }
    fn get_into(&self, cid: &Cid, out: &mut Vec<u8>) -> Result<bool, StoreError> {
        (**self).get_into(cid, out)
    }
    fn size(&self, cid: &Cid) -> Result<Option<u64>, StoreError> {
        (**self).size(cid)
    }
    fn indexed(&self, cid: &Cid) -> Option<crate::index::BlockMeta> {
        (**self).indexed(cid)
    }
    fn has(&self, cid: &Cid) -> Result<bool, StoreError> {
        (**self).has(cid)
    }
    fn prefetch(&self, cids: &[Cid]) {
        (**self).prefetch(cids)
    }
    fn prefetch_local(&self, cids: &[Cid]) {
        (**self).prefetch_local(cids)
    }
    fn entered(&self, root: &Cid) {
        (**self).entered(root)
    }
}

impl<T: BlockSource + ?Sized> BlockSource for &T {
    fn get(&self, cid: &Cid) -> Result<Option<Bytes>, StoreError> {
        (**self).get(cid)
    }
    fn get_into(&self, cid: &Cid, out: &mut Vec<u8>) -> Result<bool, StoreError> {
        (**self).get_into(cid, out)
    }
    fn size(&self, cid: &Cid) -> Result<Option<u64>, StoreError> {
        (**self).size(cid)
    }
    fn indexed(&self, cid: &Cid) -> Option<crate::index::BlockMeta> {
        (**self).indexed(cid)
    }
    fn has(&self, cid: &Cid) -> Result<bool, StoreError> {
        (**self).has(cid)
    }
    fn prefetch(&self, cids: &[Cid]) {
        (**self).prefetch(cids)
    }
    fn prefetch_local(&self, cids: &[Cid]) {
        (**self).prefetch_local(cids)
    }
    fn entered(&self, root: &Cid) {
        (**self).entered(root)
    }
}
