//! The pinned roots: what the mount root and the view roots list besides the views. The
//! filesystem reads them through a lister that whoever mounts injects, at most once per
//! listing TTL.

use std::{
    sync::Arc,
    time::{Instant, SystemTime},
};

use cairn_store::Cid;

use super::{CairnFs, LISTING_TTL};
use crate::{inodes::Inode, view::default_view};

/// The CIDs the mount root and the view roots list: the pinned roots. The filesystem does not
/// know what a pin is (pins live in `cairn-gc`, above this crate); whoever mounts passes this
/// in. It is called at most once a second per directory (the listings' TTL).
#[derive(Clone)]
pub struct PinnedRoots(pub Arc<dyn Fn() -> Vec<Cid> + Send + Sync>);

impl PinnedRoots {
    /// Lists nothing.
    pub fn none() -> PinnedRoots {
        PinnedRoots(Arc::new(Vec::new))
    }
}

impl std::fmt::Debug for PinnedRoots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PinnedRoots(..)")
    }
}

/// The pinned roots as last read, by canonical name (CIDv1, so that a CID pinned in both
/// spellings is listed once), and when they last changed: the mtime of the root and the view
/// roots, so that the kernel drops listings of them it has cached.
pub(super) struct PinSnapshot {
    read_at: Option<Instant>,
    roots: Arc<Vec<(String, Cid)>>,
    changed_at: SystemTime,
}

impl PinSnapshot {
    /// Nothing read yet.
    pub(super) fn new() -> PinSnapshot {
        PinSnapshot {
            read_at: None,
            roots: Arc::new(Vec::new()),
            changed_at: SystemTime::now(),
        }
    }
}

impl CairnFs {
    /// The pinned roots and when they last changed, re-read once the snapshot is older than
    /// the listings' TTL.
    pub(super) fn pins(&self) -> (Arc<Vec<(String, Cid)>>, SystemTime) {
        let mut snap = self.pins.lock().expect("pins");
        if snap.read_at.is_none_or(|t| t.elapsed() >= LISTING_TTL) {
            let mut roots: Vec<(String, Cid)> = (self.opts.pinned.0)()
                .into_iter()
                .map(|c| (cairn_store::block_name(&c), c))
                .collect();
            roots.sort_unstable_by(|a, b| a.0.cmp(&b.0));
            roots.dedup_by(|a, b| a.0 == b.0);
            if roots != *snap.roots {
                snap.roots = Arc::new(roots);
                snap.changed_at = SystemTime::now();
            }
            snap.read_at = Some(Instant::now());
        }
        (snap.roots.clone(), snap.changed_at)
    }

    /// The pinned roots shown in view `view` (`None`: the mount root, each in its default
    /// view). A root whose top block is not here, or that the view does not show, is left out,
    /// as a lookup of it would fail.
    pub(super) fn pinned_roots(&self, view: Option<usize>) -> Vec<(String, Inode)> {
        self.pins()
            .0
            .iter()
            .filter_map(|(name, cid)| {
                let v = view.unwrap_or_else(|| default_view(&self.views, cid));
                let entry = self.views[v].root(&self.nodes, cid).ok()??;
                Some((
                    name.clone(),
                    Inode::Node {
                        view: v,
                        entry: Arc::new(entry),
                    },
                ))
            })
            .collect()
    }
}
