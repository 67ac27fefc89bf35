//! Names to inodes: lookups, entries whose block cannot be read yet, and directory listings
//! resolved a page at a time.

use std::{ffi::OsStr, sync::Arc};

use cairn_store::{codec::codes, parse_block_name, Cid};
use fuser::{Errno, FileType, INodeNo};

use super::{names::NameNode, CairnFs, FsResult, PREFETCH_CHILDREN, SIBLINGS};
use crate::{
    inodes::{Inode, Inodes},
    view::{default_view, Entry, Kind, Link, ViewError},
};

/// A directory's entries after "." and "..", see [`CairnFs::listing`].
pub(super) enum Listing {
    /// The root and the view roots: few entries, resolved up front.
    Resolved(Vec<(String, Inode)>),
    /// A content directory: names and CIDs from the cached listing, children resolved on demand.
    Dir {
        view: usize,
        dir: Arc<Entry>,
        names: Arc<Vec<(String, Cid)>>,
    },
}

impl Listing {
    pub(super) fn len(&self) -> usize {
        match self {
            Listing::Resolved(v) => v.len(),
            Listing::Dir { names, .. } => names.len(),
        }
    }
}

impl CairnFs {
    /// Resolves `name` in `parent` to an inode (not yet counted in the table).
    pub(super) fn resolve(&self, parent: u64, name: &OsStr) -> FsResult<Inode> {
        let name = name.to_str().ok_or(Errno::ENOENT)?;
        let parent_inode = self.inode(INodeNo(parent))?;
        let root_of = |view: usize| -> FsResult<Inode> {
            let cid = parse_cid_name(name).ok_or(Errno::ENOENT)?;
            // A source that fetches starts on the tree's skeleton now, beside the root's
            // own block, which the view waits for next.
            self.nodes.source().entered(&cid);
            match self.views[view].root(&self.nodes, &cid) {
                Ok(Some(entry)) => Ok(Inode::Node {
                    view,
                    entry: Arc::new(entry),
                }),
                Ok(None) => Err(Errno::ENOENT),
                // A CID whose top block is not here is simply not in this directory.
                Err(ViewError::Content(cairn_unixfs::UnixfsError::MissingBlock(_))) => {
                    Err(Errno::ENOENT)
                }
                Err(e) => Err(self.errno(&cid, e, Errno::ENOENT)),
            }
        };
        match parent_inode {
            Inode::Root => {
                if let Some(v) = self.views.iter().position(|v| v.name() == name) {
                    return Ok(Inode::ViewDir(v));
                }
                if name == NAME_DIR {
                    return Ok(Inode::NameDir);
                }
                let cid = parse_cid_name(name).ok_or(Errno::ENOENT)?;
                root_of(default_view(&self.views, &cid))
            }
            Inode::ViewDir(v) => root_of(v),
            Inode::NameDir => match self.opts.names.0.lookup(name) {
                Ok(Some(named)) => Ok(Inode::Name(NameNode::of(named))),
                Ok(None) => Err(Errno::ENOENT),
                Err(e) => Err(Errno::from(e)),
            },
            Inode::Name(NameNode::Dir(v)) => NameNode::child(&v, name)
                .map(Inode::Name)
                .ok_or(Errno::ENOENT),
            Inode::Name(_) => Err(Errno::ENOTDIR),
            Inode::Pending { .. } => Err(Errno::EIO),
            Inode::Node { view, entry } => {
                let v = &self.views[view];
                let at = || format!("{}/{name}", entry.cid);
                let cid = match v.lookup(&self.nodes, &entry, name) {
                    Ok(Some(cid)) => cid,
                    Ok(None) => return Err(Errno::ENOENT),
                    Err(e) => return Err(self.errno(&at(), e, Errno::ENOTDIR)),
                };
                let child = v
                    .child(
                        &self.nodes,
                        &entry,
                        Link {
                            name,
                            cid: &cid,
                            at: None,
                        },
                    )
                    .map_err(|e| self.errno(&at(), e, Errno::EIO))?;
                Ok(Inode::Node {
                    view,
                    entry: Arc::new(child),
                })
            }
        }
    }

    /// Looks `name` up and counts a kernel reference to the result.
    pub(super) fn lookup_counted(&self, parent: u64, name: &OsStr) -> FsResult<(u64, Inode)> {
        let found = self.inodes.lock().expect("inodes").find(parent, name);
        // What a name points to changes: it is resolved again each time the kernel asks
        // (its entries' TTL is the listings'), and gets a new inode if it changed.
        let found = found.filter(|(_, i)| !matches!(i, Inode::Name(_)));
        if let Some((ino, inode)) = found {
            let inode = self.settle(ino, inode)?;
            self.inodes.lock().expect("inodes").count(ino);
            return Ok((ino, inode));
        }
        let inode = self.resolve(parent, name)?;
        if let Inode::ViewDir(v) = inode {
            return Ok((Inodes::view_dir(v), inode));
        }
        if let Inode::NameDir = inode {
            return Ok((Inodes::name_dir(self.views.len()), inode));
        }
        let ino = self
            .inodes
            .lock()
            .expect("inodes")
            .insert(parent, name, inode.clone());
        Ok((ino, inode))
    }

    /// A pending inode resolved now if its block has become readable (EIO if not); any other
    /// inode as it is.
    pub(super) fn settle(&self, ino: u64, inode: Inode) -> FsResult<Inode> {
        let Inode::Pending {
            view,
            dir,
            name,
            cid,
        } = inode
        else {
            return Ok(inode);
        };
        let link = Link {
            name: &name,
            cid: &cid,
            at: None,
        };
        match self.views[view].child(&self.nodes, &dir, link) {
            Ok(entry) => {
                let node = Inode::Node {
                    view,
                    entry: Arc::new(entry),
                };
                self.inodes
                    .lock()
                    .expect("inodes")
                    .replace(ino, node.clone());
                Ok(node)
            }
            Err(e) => Err(self.errno(&cid, e, Errno::EIO)),
        }
    }

    /// The entries of a directory inode after "." and "..". Content directories resolve
    /// their children one at a time ([`Listing::get`]), so that each readdir call, which
    /// returns a page of entries, costs that page and not the whole directory.
    pub(super) fn listing(&self, inode: &Inode) -> FsResult<Listing> {
        match inode {
            Inode::Root => {
                let mut out: Vec<(String, Inode)> = self
                    .views
                    .iter()
                    .enumerate()
                    .map(|(i, v)| (v.name().to_owned(), Inode::ViewDir(i)))
                    .collect();
                out.push((NAME_DIR.to_owned(), Inode::NameDir));
                out.extend(self.pinned_roots(None));
                Ok(Listing::Resolved(out))
            }
            Inode::ViewDir(v) => Ok(Listing::Resolved(self.pinned_roots(Some(*v)))),
            Inode::NameDir => Ok(Listing::Resolved(
                self.opts
                    .names
                    .0
                    .list()
                    .into_iter()
                    .filter(|(n, _)| cairn_unixfs::get::check_name("", n).is_ok())
                    .map(|(n, named)| (n, Inode::Name(NameNode::of(named))))
                    .collect(),
            )),
            Inode::Name(NameNode::Dir(v)) => Ok(Listing::Resolved(
                NameNode::children(v)
                    .into_iter()
                    .map(|(n, node)| (n, Inode::Name(node)))
                    .collect(),
            )),
            Inode::Name(_) => Err(Errno::ENOTDIR),
            Inode::Pending { .. } => Err(Errno::EIO),
            Inode::Node { view, entry } => {
                if entry.kind != Kind::Directory {
                    return Err(Errno::ENOTDIR);
                }
                let names = self.views[*view]
                    .list(&self.nodes, entry)
                    .map_err(|e| self.errno(&entry.cid, e, Errno::ENOTDIR))?;
                Ok(Listing::Dir {
                    view: *view,
                    dir: entry.clone(),
                    names,
                })
            }
        }
    }

    /// The listing of directory `ino` and the inode of its parent, for readdir.
    pub(super) fn open_listing(&self, ino: INodeNo) -> FsResult<(Listing, u64)> {
        let listing = self.listing(&self.inode(ino)?)?;
        Ok((listing, self.inodes.lock().expect("inodes").parent(ino.0)))
    }

    /// Asks for the blocks of the children a listing page is about to resolve, all at once:
    /// on a cold disk the kernel then reads them together instead of one seek at a time. Raw
    /// children are left out (a large one is described unread, and its bytes are content),
    /// and so is the whole page when its first child is described by the index: a page is
    /// then answered without reading blocks (a directory's children are put, or fetched,
    /// together), and prefetching them would read every file of a tree that `find` walks.
    pub(super) fn prefetch_children(&self, listing: &Listing, from: usize) {
        let Listing::Dir { names, .. } = listing else {
            return;
        };
        let page = names.iter().skip(from).take(PREFETCH_CHILDREN);
        let mut cids = page
            .map(|(_, cid)| *cid)
            .filter(|cid| cid.codec() != codes::RAW)
            .peekable();
        let described = cids
            .peek()
            .and_then(|c| self.nodes.source().indexed(c))
            .is_some_and(|m| m.attrs.is_some());
        if !described {
            let cids: Vec<Cid> = cids.collect();
            cairn_unixfs::NodeSource::prefetch(&self.nodes, &cids);
        }
    }

    /// The first time a file of a small directory (at most [`SIBLINGS`] entries) is read,
    /// the blocks of the directory's other entries are brought in from the local disk: a
    /// program that opens one file of a directory by name (a dynamic loader its libraries,
    /// Python a package's modules) reads its siblings next, and on a cold disk their reads
    /// then go together rather than a seek at a time (the 200-library program's cold start:
    /// 45-57 ms -> 34-39 ms). On a read, not a lookup: `du` and `ls -l` look every file up
    /// and read none. Local blocks only (a peer's bytes are not spent on a guess; the
    /// skeleton brings small files from peers); raw children are left out, as in listings
    /// (a large one is content nobody asked for).
    pub(super) fn prefetch_siblings(&self, ino: u64) {
        let parent = self.inodes.lock().expect("inodes").parent(ino);
        let Ok(Inode::Node { view, entry: dir }) = self.inode(INodeNo(parent)) else {
            return;
        };
        if dir.kind != Kind::Directory
            || dir.size > SIBLINGS as u64
            || self.siblings.get(&dir.cid).is_some()
        {
            return;
        }
        self.siblings.insert(dir.cid, ());
        // A plain directory whose block is here: a sharded one's root says nothing of how
        // many entries it has, and listing it could read (or fetch) every shard.
        if !self.nodes.source().has(&dir.cid).unwrap_or(false)
            || !matches!(
                dir.node(&self.nodes).as_deref(),
                Ok(cairn_unixfs::Node::Directory(_))
            )
        {
            return;
        }
        let Ok(names) = self.views[view].list(&self.nodes, &dir) else {
            return;
        };
        if names.len() > SIBLINGS {
            return;
        }
        let cids: Vec<Cid> = names
            .iter()
            .map(|(_, cid)| *cid)
            .filter(|cid| cid.codec() != codes::RAW)
            .collect();
        self.nodes.source().prefetch_local(&cids);
    }

    /// Entry `i` of `listing`: its name and inode (a [`Inode::Pending`] one if its block
    /// cannot be read now), or `None` for a name that cannot be a file name ("", ".", "..",
    /// or with '/' or NUL), which is not shown: no path could reach it anyway.
    pub(super) fn listing_entry<'a>(
        &self,
        listing: &'a Listing,
        i: usize,
    ) -> Option<(&'a str, Inode)> {
        match listing {
            Listing::Resolved(v) => v.get(i).map(|(name, inode)| (name.as_str(), inode.clone())),
            Listing::Dir { view, dir, names } => {
                let (name, cid) = names.get(i)?;
                if cairn_unixfs::get::check_name("", name).is_err() {
                    log::warn!(
                        "{}: hiding entry {name:?}, which is not a file name",
                        dir.cid
                    );
                    return None;
                }
                let link = Link {
                    name,
                    cid,
                    at: Some(i),
                };
                let inode = match self.views[*view].child(&self.nodes, dir, link) {
                    Ok(c) => Inode::Node {
                        view: *view,
                        entry: Arc::new(c),
                    },
                    Err(e) => {
                        let _ = self.errno(&format!("{}/{name}", dir.cid), e, Errno::EIO);
                        Inode::Pending {
                            view: *view,
                            dir: dir.clone(),
                            name: name.clone(),
                            cid: *cid,
                        }
                    }
                };
                Some((name, inode))
            }
        }
    }
}

/// The directory of names, `R/store/name`.
pub(super) const NAME_DIR: &str = "name";

/// A CID as it may appear as a file name: any multibase spelling of v1, or v0.
fn parse_cid_name(name: &str) -> Option<Cid> {
    parse_block_name(name).or_else(|| name.parse().ok())
}

pub(super) fn file_type(inode: &Inode) -> FileType {
    match inode {
        Inode::Name(NameNode::Link(_)) => FileType::Symlink,
        Inode::Name(NameNode::File(_)) => FileType::RegularFile,
        Inode::Node { entry, .. } => match entry.kind {
            Kind::File => FileType::RegularFile,
            Kind::Directory => FileType::Directory,
            Kind::Symlink => FileType::Symlink,
        },
        Inode::Pending { .. } => FileType::RegularFile,
        _ => FileType::Directory,
    }
}

/// A stable d_ino for directory entries the kernel has not looked up.
pub(super) fn listing_ino(parent: u64, name: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ parent;
    for b in name.bytes() {
        h = (h ^ b as u64).wrapping_mul(0x100_0000_01b3);
    }
    h | (1 << 63)
}
