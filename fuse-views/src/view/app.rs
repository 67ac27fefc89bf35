//! `app` and `webapp`: a tree named by a cairn app node, served with the node's own CID
//! written over the placeholder wherever the node recorded it.
//!
//! `R/store/app/<cid>/` shows the app's content (a UnixFS directory) as the `unixfs` view
//! would, except that at each recorded offset of a file or symlink target the placeholder is
//! replaced by `<cid>` (the same length, so sizes and offsets never change). Reads, `mmap`ed
//! pages (they come through the same reads: the view rewrites, so the kernel is never given
//! the block files) and link targets all see the rewritten bytes. If the bytes at a recorded
//! offset are not the placeholder, the block or the node is not what the app's author made:
//! the read fails with EIO rather than patch something else.
//!
//! A CID that is not an app node of this view's kind is not in the view (ENOENT), so
//! `R/store/webapp/` lists and serves only webapps.

use std::{collections::BTreeMap, sync::Arc};

use cairn_app::{AppKind, AppNode, LEN, PLACEHOLDER};
use cairn_store::{codec::codes, Cid};
use cairn_unixfs::{Node, UnixfsError};

use super::{Entry, Kind, Link, UnixfsView, View, ViewError, ViewState};
use crate::cache::NodeCache;

/// The `app` (programs) or `webapp` (static sites) view.
pub struct AppView {
    kind: AppKind,
    /// Decoded app nodes (a node is up to 1 MiB; a lookup of the app's root, and every
    /// listing of the view root, would decode it again).
    apps: quick_cache::sync::Cache<Cid, Arc<App>>,
}

impl AppView {
    fn new(kind: AppKind) -> AppView {
        AppView {
            kind,
            apps: quick_cache::sync::Cache::new(64),
        }
    }

    /// The `app` view.
    pub fn app() -> AppView {
        AppView::new(AppKind::App)
    }

    /// The `webapp` view.
    pub fn webapp() -> AppView {
        AppView::new(AppKind::Webapp)
    }

    /// App `cid` decoded, if it is an app node of this view's kind (`Ok(None)` if not).
    fn load(&self, nodes: &NodeCache, cid: &Cid) -> Result<Option<Arc<App>>, ViewError> {
        if let Some(a) = self.apps.get(cid) {
            return Ok(Some(a));
        }
        let Some(self_ref) = cairn_app::self_reference(cid) else {
            return Ok(None);
        };
        if cid.codec() != codes::DAG_CBOR {
            return Ok(None);
        }
        let node = nodes.entry_node(cid)?;
        let Node::Opaque { bytes, .. } = &*node else {
            return Ok(None);
        };
        let app = match AppNode::decode(bytes) {
            Ok(a) if a.kind == self.kind => a,
            Ok(_) => return Ok(None),
            Err(e) => {
                log::debug!("{cid} is not an app: {e}");
                return Ok(None);
            }
        };
        let app = Arc::new(App {
            cid: *cid,
            content: app.content,
            self_ref: self_ref.as_bytes().try_into().expect("LEN bytes"),
            refs: app
                .refs
                .into_iter()
                .map(|(p, o)| (p, Arc::from(o)))
                .collect(),
        });
        self.apps.insert(*cid, app.clone());
        Ok(Some(app))
    }
}

/// One app, shared by all its entries.
struct App {
    cid: Cid,
    content: Cid,
    /// What is written over the placeholder: the app's canonical CID.
    self_ref: [u8; LEN],
    refs: BTreeMap<String, Arc<[u64]>>,
}

/// An entry's place in its app: its path below the content root and, for files and
/// symlinks, where the placeholder is.
struct Place {
    app: Arc<App>,
    path: String,
    offsets: Option<Arc<[u64]>>,
}

fn place(e: &Entry) -> Result<&Place, ViewError> {
    e.state
        .as_ref()
        .and_then(|s| s.get::<Place>())
        .ok_or(ViewError::WrongKind)
}

fn corrupt(app: &App, path: &str, why: String) -> ViewError {
    ViewError::Content(UnixfsError::InvalidNode {
        cid: app.cid,
        reason: format!("{path}: {why}"),
    })
}

/// Writes the app's CID over each occurrence in `offsets` that lies within `bytes`, which
/// hold the entry's bytes from `at`; each must lie wholly inside and be the placeholder.
fn patch(
    app: &App,
    path: &str,
    offsets: &[u64],
    at: u64,
    bytes: &mut [u8],
) -> Result<(), ViewError> {
    for &o in offsets {
        let i = o
            .checked_sub(at)
            .and_then(|i| usize::try_from(i).ok())
            .filter(|i| i.checked_add(LEN).is_some_and(|end| end <= bytes.len()))
            .ok_or_else(|| {
                corrupt(
                    app,
                    path,
                    format!("self-reference at {o} lies past the end"),
                )
            })?;
        let slot = &mut bytes[i..i + LEN];
        if slot != PLACEHOLDER.as_bytes() {
            return Err(corrupt(
                app,
                path,
                format!("the bytes at {o} are not the placeholder"),
            ));
        }
        slot.copy_from_slice(&app.self_ref);
    }
    Ok(())
}

impl AppView {
    fn with_place(&self, mut e: Entry, app: Arc<App>, path: String) -> Entry {
        let offsets = match e.kind {
            Kind::File | Kind::Symlink => app.refs.get(&path).cloned(),
            Kind::Directory => None,
        };
        e.state = Some(ViewState(Arc::new(Place { app, path, offsets })));
        e
    }
}

impl View for AppView {
    fn name(&self) -> &'static str {
        match self.kind {
            AppKind::App => "app",
            AppKind::Webapp => "webapp",
        }
    }

    fn root(&self, nodes: &NodeCache, cid: &Cid) -> Result<Option<Entry>, ViewError> {
        let Some(app) = self.load(nodes, cid)? else {
            return Ok(None);
        };
        let mut dir = UnixfsView
            .root(nodes, &app.content)?
            .ok_or(ViewError::NotFound)?;
        if dir.kind != Kind::Directory {
            return Err(ViewError::Content(UnixfsError::InvalidNode {
                cid: *cid,
                reason: "an app's content must be a directory".into(),
            }));
        }
        dir.root = *cid;
        Ok(Some(self.with_place(dir, app, String::new())))
    }

    fn lookup(&self, nodes: &NodeCache, dir: &Entry, name: &str) -> Result<Option<Cid>, ViewError> {
        UnixfsView.lookup(nodes, dir, name)
    }

    fn child(&self, nodes: &NodeCache, dir: &Entry, link: Link<'_>) -> Result<Entry, ViewError> {
        let at = place(dir)?;
        let path = if at.path.is_empty() {
            link.name.to_owned()
        } else {
            format!("{}/{}", at.path, link.name)
        };
        let e = UnixfsView.child(nodes, dir, link)?;
        Ok(self.with_place(e, at.app.clone(), path))
    }

    fn list(&self, nodes: &NodeCache, dir: &Entry) -> Result<Arc<Vec<(String, Cid)>>, ViewError> {
        UnixfsView.list(nodes, dir)
    }

    fn read(
        &self,
        nodes: &NodeCache,
        file: &Entry,
        offset: u64,
        size: u32,
        out: &mut Vec<u8>,
    ) -> Result<(), ViewError> {
        let at = place(file)?;
        let Some(offsets) = &at.offsets else {
            return UnixfsView.read(nodes, file, offset, size, out);
        };
        let end = offset.saturating_add(size.into()).min(file.size);
        // The occurrences that overlap [offset, end), read whole so each can be checked.
        let first = offsets.partition_point(|&o| o.saturating_add(LEN as u64) <= offset);
        let last = offsets.partition_point(|&o| o < end);
        let hits = &offsets[first..last.max(first)];
        let (Some(&lo), Some(&hi)) = (hits.first(), hits.last()) else {
            return UnixfsView.read(nodes, file, offset, size, out);
        };
        let lo = lo.min(offset);
        let hi = hi.saturating_add(LEN as u64).max(end);
        let len = u32::try_from(hi - lo).map_err(|_| ViewError::WrongKind)?;
        let mut buf = Vec::with_capacity(len as usize);
        UnixfsView.read(nodes, file, lo, len, &mut buf)?;
        patch(&at.app, &at.path, hits, lo, &mut buf)?;
        let from = (offset - lo) as usize;
        let to = ((end - lo) as usize).min(buf.len());
        out.extend_from_slice(&buf[from.min(to)..to]);
        Ok(())
    }

    fn readlink(&self, nodes: &NodeCache, link: &Entry) -> Result<Vec<u8>, ViewError> {
        let mut target = UnixfsView.readlink(nodes, link)?;
        let at = place(link)?;
        if let Some(offsets) = &at.offsets {
            patch(&at.app, &at.path, offsets, 0, &mut target)?;
        }
        Ok(target)
    }

    fn rewrites(&self) -> bool {
        true
    }
}
