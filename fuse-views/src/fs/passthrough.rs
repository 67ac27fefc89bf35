//! FUSE passthrough: the kernel reads a file whose bytes are exactly one block straight from
//! the block file, once cairn has verified it.

use std::sync::{atomic::Ordering, Arc};

use fuser::{BackingId, INodeNo, ReplyOpen};

use super::{chain, CairnFs};
use crate::view::passthrough_block;

impl CairnFs {
    /// Opens `ino` for passthrough: its handle and backing id, or `None` to serve its reads
    /// through cairn (not a single-block file, a view that rewrites, a corrupt block, or a
    /// kernel that refuses).
    pub(super) fn open_passthrough(
        &self,
        ino: u64,
        reply: &ReplyOpen,
    ) -> Option<(u64, Arc<BackingId>)> {
        let (view, entry) = self.node_entry(INodeNo(ino)).ok()?;
        let cid = passthrough_block(&*self.views[view], &entry)?;
        let mut backing = self.backing.lock().expect("backing");
        let id = match backing.get_mut(&ino) {
            Some((id, opens)) => {
                *opens += 1;
                id.clone()
            }
            None => {
                // Verify the block once, as this mount first hands it to the kernel; the
                // kernel reads the same file from then on (and its page cache holds the
                // verified bytes). A block that fails is served through cairn: EIO.
                if let Err(e) = self.nodes.source().get(&cid) {
                    log::error!("{cid}: {}", chain(&e));
                    return None;
                }
                let path = self.opts.blocks_dir.join(cairn_store::block_name(&cid));
                let file = std::fs::File::open(&path).ok()?;
                match reply.open_backing(file) {
                    Ok(id) => {
                        let id = Arc::new(id);
                        backing.insert(ino, (id.clone(), 1));
                        id
                    }
                    Err(e) => {
                        log::warn!("passthrough unavailable ({e}); serving reads through cairn");
                        self.passthrough.store(false, Ordering::Relaxed);
                        return None;
                    }
                }
            }
        };
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        self.handles.lock().expect("handles").insert(fh, ino);
        Some((fh, id))
    }

    /// Forgets the passthrough handle `fh`; the backing file goes with its last handle.
    pub(super) fn release_passthrough(&self, fh: u64) {
        // The handle table is let go before the backing table is taken: an open takes them
        // the other way round, so holding both here deadlocked the two.
        let ino = self.handles.lock().expect("handles").remove(&fh);
        if let Some(ino) = ino {
            let mut backing = self.backing.lock().expect("backing");
            if let Some((_, opens)) = backing.get_mut(&ino) {
                *opens -= 1;
                if *opens == 0 {
                    backing.remove(&ino);
                }
            }
        }
    }
}
