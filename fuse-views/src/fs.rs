//! [`CairnFs`]: the one adapter between the kernel's FUSE protocol and the views.

use std::{
    collections::HashMap,
    ffi::OsStr,
    os::unix::ffi::OsStrExt,
    path::PathBuf,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use cairn_store::{codec::codes, parse_block_name, Cid};
use fuser::{
    AccessFlags, BackingId, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags,
    Generation, INodeNo, InitFlags, IoctlFlags, KernelConfig, LockOwner, OpenFlags, ReplyAttr,
    ReplyData, ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyIoctl, ReplyOpen,
    ReplyStatfs, ReplyXattr, Request,
};

use crate::{
    cache::NodeCache,
    inodes::{Inode, Inodes},
    view::{default_view, Entry, Kind, View, ViewError},
};

/// Content never changes: the kernel may keep entries and attributes for a year.
const CONTENT_TTL: Duration = Duration::from_secs(365 * 24 * 3600);
/// The root and view directories list pins, which change.
const LISTING_TTL: Duration = Duration::from_secs(1);
/// `st_blksize`: tools size their buffers by it; reads come in up to 1 MiB.
const BLKSIZE: u32 = 1 << 20;
/// How many children of a directory a listing page asks for ahead (a readdirplus page holds
/// about 25 entries).
const PREFETCH_CHILDREN: usize = 64;
/// A FUSE thread keeps a reply buffer up to this size between reads (requests are at most
/// 1 MiB: the kernel's `max_pages`).
const READ_BUFFER_KEPT: usize = 4 << 20;
const XATTR_CID: &str = "user.ipfs.cid";
/// On the mount root: how many inodes the table holds (to see `forget` at work).
const XATTR_INODES: &str = "user.cairn.inodes";

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

/// How the filesystem behaves.
#[derive(Debug, Clone)]
pub struct FsOptions {
    /// Let the kernel read single-block raw files straight from their block files (needs
    /// root). Opens then cost a round trip each; without it, opens are stateless.
    pub passthrough: bool,
    /// Owner shown for every file.
    pub uid: u32,
    pub gid: u32,
    /// `R/blocks`, for `statfs` and passthrough.
    pub blocks_dir: PathBuf,
    /// What the root and the view roots list besides the views.
    pub pinned: PinnedRoots,
}

/// The filesystem: views, a node cache, the inode table.
pub struct CairnFs {
    views: Vec<Arc<dyn View>>,
    nodes: NodeCache,
    inodes: Mutex<Inodes>,
    opts: FsOptions,
    mounted_at: SystemTime,
    passthrough: AtomicBool,
    /// Backing files of passthrough opens: inode -> (id, open handles).
    backing: Mutex<HashMap<u64, (Arc<BackingId>, u64)>>,
    /// Open passthrough handles: fh -> inode.
    handles: Mutex<HashMap<u64, u64>>,
    next_fh: AtomicU64,
    /// The pinned roots, read at most once per listing TTL.
    pins: Mutex<PinSnapshot>,
}

/// The pinned roots as last read, by canonical name (CIDv1, so that a CID pinned in both
/// spellings is listed once), and when they last changed: the mtime of the root and the view
/// roots, so that the kernel drops listings of them it has cached.
struct PinSnapshot {
    read_at: Option<Instant>,
    roots: Arc<Vec<(String, Cid)>>,
    changed_at: SystemTime,
}

/// What FUSE gets back from a helper: an errno, already logged if it hides a content error.
type FsResult<T> = Result<T, Errno>;

/// A directory's entries after "." and "..", see [`CairnFs::listing`].
enum Listing {
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
    fn len(&self) -> usize {
        match self {
            Listing::Resolved(v) => v.len(),
            Listing::Dir { names, .. } => names.len(),
        }
    }
}

impl CairnFs {
    pub fn new(views: Vec<Arc<dyn View>>, nodes: NodeCache, opts: FsOptions) -> CairnFs {
        CairnFs {
            inodes: Mutex::new(Inodes::new(views.len())),
            views,
            nodes,
            passthrough: AtomicBool::new(opts.passthrough),
            opts,
            mounted_at: SystemTime::now(),
            backing: Mutex::new(HashMap::new()),
            handles: Mutex::new(HashMap::new()),
            next_fh: AtomicU64::new(1),
            pins: Mutex::new(PinSnapshot {
                read_at: None,
                roots: Arc::new(Vec::new()),
                changed_at: SystemTime::now(),
            }),
        }
    }

    /// Inodes currently in the table.
    pub fn inode_count(&self) -> usize {
        self.inodes.lock().expect("inodes").len()
    }

    fn errno(&self, what: &dyn std::fmt::Display, e: ViewError, wrong_kind: Errno) -> Errno {
        match e {
            ViewError::NotFound => Errno::ENOENT,
            ViewError::WrongKind => wrong_kind,
            ViewError::Content(err) => {
                log::error!("{what}: {}", chain(&err));
                Errno::EIO
            }
        }
    }

    fn inode(&self, ino: INodeNo) -> FsResult<Inode> {
        let inode = self
            .inodes
            .lock()
            .expect("inodes")
            .get(ino.0)
            .cloned()
            .ok_or(Errno::ENOENT)?;
        self.settle(ino.0, inode)
    }

    /// The pinned roots and when they last changed, re-read once the snapshot is older than
    /// the listings' TTL.
    fn pins(&self) -> (Arc<Vec<(String, Cid)>>, SystemTime) {
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

    fn dir_attr(&self, ino: u64) -> FileAttr {
        FileAttr {
            ino: INodeNo(ino),
            size: 0,
            blocks: 0,
            atime: self.mounted_at,
            mtime: self.mounted_at,
            ctime: self.mounted_at,
            crtime: self.mounted_at,
            kind: FileType::Directory,
            perm: 0o555,
            nlink: 2,
            uid: self.opts.uid,
            gid: self.opts.gid,
            rdev: 0,
            blksize: BLKSIZE,
            flags: 0,
        }
    }

    fn attr(&self, ino: u64, inode: &Inode) -> (FileAttr, Duration) {
        let entry = match inode {
            Inode::Node { entry, .. } => entry,
            Inode::Pending { .. } => {
                let mut a = self.dir_attr(ino);
                a.kind = FileType::RegularFile;
                a.perm = 0o444;
                a.nlink = 1;
                return (a, Duration::ZERO);
            }
            _ => {
                let mut a = self.dir_attr(ino);
                a.mtime = self.pins().1;
                a.ctime = a.mtime;
                return (a, LISTING_TTL);
            }
        };
        let (kind, default_perm, nlink) = match entry.kind {
            Kind::File => (FileType::RegularFile, 0o444, 1),
            Kind::Directory => (FileType::Directory, 0o555, 2),
            Kind::Symlink => (FileType::Symlink, 0o777, 1),
        };
        let mtime = entry.mtime.map_or(UNIX_EPOCH, |t| {
            let nanos = Duration::from_nanos(t.nanos.unwrap_or(0) as u64);
            if t.seconds >= 0 {
                UNIX_EPOCH + Duration::from_secs(t.seconds as u64) + nanos
            } else {
                UNIX_EPOCH - Duration::from_secs(t.seconds.unsigned_abs()) + nanos
            }
        });
        let attr = FileAttr {
            ino: INodeNo(ino),
            size: entry.size,
            blocks: entry.size.div_ceil(512),
            atime: mtime,
            mtime,
            ctime: mtime,
            crtime: mtime,
            kind,
            perm: entry.mode.map_or(default_perm, |m| (m & 0o7777) as u16),
            nlink,
            uid: self.opts.uid,
            gid: self.opts.gid,
            rdev: 0,
            blksize: BLKSIZE,
            flags: 0,
        };
        (attr, CONTENT_TTL)
    }

    /// Resolves `name` in `parent` to an inode (not yet counted in the table).
    fn resolve(&self, parent: u64, name: &OsStr) -> FsResult<Inode> {
        let name = name.to_str().ok_or(Errno::ENOENT)?;
        let parent_inode = self.inode(INodeNo(parent))?;
        let root_of = |view: usize| -> FsResult<Inode> {
            let cid = parse_cid_name(name).ok_or(Errno::ENOENT)?;
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
                let cid = parse_cid_name(name).ok_or(Errno::ENOENT)?;
                root_of(default_view(&self.views, &cid))
            }
            Inode::ViewDir(v) => root_of(v),
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
                    .child(&self.nodes, &entry, &cid)
                    .map_err(|e| self.errno(&at(), e, Errno::EIO))?;
                Ok(Inode::Node {
                    view,
                    entry: Arc::new(child),
                })
            }
        }
    }

    /// Looks `name` up and counts a kernel reference to the result.
    fn lookup_counted(&self, parent: u64, name: &OsStr) -> FsResult<(u64, Inode)> {
        let found = self.inodes.lock().expect("inodes").find(parent, name);
        if let Some((ino, inode)) = found {
            let inode = self.settle(ino, inode)?;
            self.inodes.lock().expect("inodes").count(ino);
            return Ok((ino, inode));
        }
        let inode = self.resolve(parent, name)?;
        if let Inode::ViewDir(v) = inode {
            return Ok((Inodes::view_dir(v), inode));
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
    fn settle(&self, ino: u64, inode: Inode) -> FsResult<Inode> {
        let Inode::Pending { view, dir, cid } = inode else {
            return Ok(inode);
        };
        match self.views[view].child(&self.nodes, &dir, &cid) {
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
    fn listing(&self, inode: &Inode) -> FsResult<Listing> {
        match inode {
            Inode::Root => {
                let mut out: Vec<(String, Inode)> = self
                    .views
                    .iter()
                    .enumerate()
                    .map(|(i, v)| (v.name().to_owned(), Inode::ViewDir(i)))
                    .collect();
                out.extend(self.pinned_roots(None));
                Ok(Listing::Resolved(out))
            }
            Inode::ViewDir(v) => Ok(Listing::Resolved(self.pinned_roots(Some(*v)))),
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
    fn open_listing(&self, ino: INodeNo) -> FsResult<(Listing, u64)> {
        let listing = self.listing(&self.inode(ino)?)?;
        Ok((listing, self.inodes.lock().expect("inodes").parent(ino.0)))
    }

    /// Asks for the blocks of the children a listing page is about to resolve, all at once:
    /// on a cold disk the kernel then reads them together instead of one seek at a time. Raw
    /// children are left out (a large one is described unread, and its bytes are content).
    fn prefetch_children(&self, listing: &Listing, from: usize) {
        let Listing::Dir { names, .. } = listing else {
            return;
        };
        let cids: Vec<Cid> = names
            .iter()
            .skip(from)
            .take(PREFETCH_CHILDREN)
            .map(|(_, cid)| *cid)
            .filter(|cid| cid.codec() != codes::RAW)
            .collect();
        cairn_unixfs::NodeSource::prefetch(&self.nodes, &cids);
    }

    /// Entry `i` of `listing`: its name and inode (a [`Inode::Pending`] one if its block
    /// cannot be read now), or `None` for a name that cannot be a file name ("", ".", "..",
    /// or with '/' or NUL), which is not shown: no path could reach it anyway.
    fn listing_entry(&self, listing: &Listing, i: usize) -> Option<(String, Inode)> {
        match listing {
            Listing::Resolved(v) => v.get(i).cloned(),
            Listing::Dir { view, dir, names } => {
                let (name, cid) = names.get(i)?;
                if cairn_unixfs::get::check_name("", name).is_err() {
                    log::warn!(
                        "{}: hiding entry {name:?}, which is not a file name",
                        dir.cid
                    );
                    return None;
                }
                let inode = match self.views[*view].child(&self.nodes, dir, cid) {
                    Ok(c) => Inode::Node {
                        view: *view,
                        entry: Arc::new(c),
                    },
                    Err(e) => {
                        let _ = self.errno(&format!("{}/{name}", dir.cid), e, Errno::EIO);
                        Inode::Pending {
                            view: *view,
                            dir: dir.clone(),
                            cid: *cid,
                        }
                    }
                };
                Some((name.clone(), inode))
            }
        }
    }

    /// The pinned roots shown in view `view` (`None`: the mount root, each in its default
    /// view). A root whose top block is not here, or that the view does not show, is left out,
    /// as a lookup of it would fail.
    fn pinned_roots(&self, view: Option<usize>) -> Vec<(String, Inode)> {
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

    fn node_entry(&self, ino: INodeNo) -> FsResult<(usize, Arc<Entry>)> {
        match self.inode(ino)? {
            Inode::Node { view, entry } => Ok((view, entry)),
            _ => Err(Errno::EISDIR),
        }
    }

    fn open_passthrough(&self, ino: u64, reply: &ReplyOpen) -> Option<(u64, Arc<BackingId>)> {
        let (view, entry) = self.node_entry(INodeNo(ino)).ok()?;
        if entry.kind != Kind::File {
            return None;
        }
        let cid = self.views[view].backing_block(&entry)?;
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
}

/// A CID as it may appear as a file name: any multibase spelling of v1, or v0.
fn parse_cid_name(name: &str) -> Option<Cid> {
    parse_block_name(name).or_else(|| name.parse().ok())
}

/// An error and its sources on one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

fn file_type(inode: &Inode) -> FileType {
    match inode {
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
fn listing_ino(parent: u64, name: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ parent;
    for b in name.bytes() {
        h = (h ^ b as u64).wrapping_mul(0x100_0000_01b3);
    }
    h | (1 << 63)
}

impl Filesystem for CairnFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        // Each capability on its own: add_capabilities is all-or-nothing.
        let mut want = vec![
            InitFlags::FUSE_DO_READDIRPLUS | InitFlags::FUSE_READDIRPLUS_AUTO,
            InitFlags::FUSE_PARALLEL_DIROPS,
            InitFlags::FUSE_CACHE_SYMLINKS,
        ];
        if self.opts.passthrough {
            want.push(InitFlags::FUSE_PASSTHROUGH);
        } else {
            want.push(InitFlags::FUSE_NO_OPEN_SUPPORT | InitFlags::FUSE_NO_OPENDIR_SUPPORT);
        }
        for caps in want {
            if config.add_capabilities(caps).is_err() {
                log::info!("kernel does not offer {caps:?}");
                if caps.contains(InitFlags::FUSE_PASSTHROUGH) {
                    self.passthrough.store(false, Ordering::Relaxed);
                }
            }
        }
        if self.passthrough.load(Ordering::Relaxed) && config.set_max_stack_depth(1).is_err() {
            self.passthrough.store(false, Ordering::Relaxed);
        }
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        match self.lookup_counted(parent.0, name) {
            Ok((ino, inode)) => {
                let (attr, ttl) = self.attr(ino, &inode);
                // Names never change meaning; only the root's and view dirs' attributes do.
                reply.entry_with_ttls(&ttl, &CONTENT_TTL, &attr, Generation(0));
            }
            // Content never changes, so a name that is not there never will be: the kernel
            // may remember that for as long as it remembers names. Under the root and the
            // view roots a CID may arrive at any time, so for a second only.
            Err(e) if e == Errno::ENOENT => {
                let ttl = match self.inode(parent) {
                    Ok(Inode::Node { .. }) => CONTENT_TTL,
                    _ => LISTING_TTL,
                };
                let mut attr = self.dir_attr(0);
                attr.ino = INodeNo(0);
                reply.entry_with_ttls(&ttl, &ttl, &attr, Generation(0));
            }
            Err(e) => reply.error(e),
        }
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.inodes.lock().expect("inodes").forget(ino.0, nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.inode(ino) {
            Ok(inode) => {
                let (attr, ttl) = self.attr(ino.0, &inode);
                reply.attr(&ttl, &attr);
            }
            Err(e) => reply.error(e),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.node_entry(ino) {
            Ok((view, entry)) => match self.views[view].readlink(&self.nodes, &entry) {
                Ok(target) => reply.data(&target),
                Err(e) => reply.error(self.errno(&entry.cid, e, Errno::EINVAL)),
            },
            Err(_) => reply.error(Errno::EINVAL),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        if flags.0 & (libc::O_WRONLY | libc::O_RDWR | libc::O_TRUNC) != 0 {
            return reply.error(Errno::EROFS);
        }
        if self.passthrough.load(Ordering::Relaxed) {
            if let Some((fh, id)) = self.open_passthrough(ino.0, &reply) {
                return reply.opened_passthrough(FileHandle(fh), FopenFlags::empty(), &id);
            }
            return reply.opened(FileHandle(0), FopenFlags::FOPEN_KEEP_CACHE);
        }
        // Stateless opens: the kernel stops sending OPEN for good and keeps the page cache.
        reply.error(Errno::ENOSYS)
    }

    /// Called at every `close` of a file descriptor; a read-only filesystem has nothing to
    /// write back. (fuser's default answers ENOSYS and logs a warning in the user's terminal.)
    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        if let Some(ino) = self.handles.lock().expect("handles").remove(&fh.0) {
            let mut backing = self.backing.lock().expect("backing");
            if let Some((_, opens)) = backing.get_mut(&ino) {
                *opens -= 1;
                if *opens == 0 {
                    backing.remove(&ino);
                }
            }
        }
        reply.ok();
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        thread_local! {
            /// Each FUSE thread's reply buffer: reused, so its pages stay mapped.
            static OUT: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
        }
        let (view, entry) = match self.node_entry(ino) {
            Ok(e) => e,
            Err(e) => return reply.error(e),
        };
        let mut out = OUT.take();
        out.clear();
        if out.capacity() > READ_BUFFER_KEPT {
            out = Vec::new();
        }
        out.reserve(size as usize);
        match self.views[view].read(&self.nodes, &entry, offset, size, &mut out) {
            Ok(()) => reply.data(&out),
            Err(e) => reply.error(self.errno(&entry.cid, e, Errno::EISDIR)),
        }
        OUT.set(out);
    }

    /// The kernel forwards every ioctl, such as the `TCGETS` behind each `isatty()` that
    /// Python and C stdio make on open: answer at once, and without a log line.
    #[allow(clippy::too_many_arguments)]
    fn ioctl(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _flags: IoctlFlags,
        _cmd: u32,
        _in_data: &[u8],
        _out_size: u32,
        reply: ReplyIoctl,
    ) {
        reply.error(Errno::ENOTTY);
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.inode(ino) {
            Ok(Inode::Node { entry, .. }) if entry.kind != Kind::Directory => {
                reply.error(Errno::ENOTDIR)
            }
            Ok(Inode::Node { .. }) if !self.opts.passthrough => reply.error(Errno::ENOSYS),
            Ok(Inode::Node { .. }) => reply.opened(FileHandle(0), FopenFlags::FOPEN_CACHE_DIR),
            Ok(_) => reply.opened(FileHandle(0), FopenFlags::empty()),
            Err(e) => reply.error(e),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let (listing, parent) = match self.open_listing(ino) {
            Ok(l) => l,
            Err(e) => return reply.error(e),
        };
        self.prefetch_children(&listing, (offset as usize).saturating_sub(2));
        for i in (offset as usize)..listing.len() + 2 {
            let (name, child_ino, kind) = match i {
                0 => (".".to_owned(), ino.0, FileType::Directory),
                1 => ("..".to_owned(), parent, FileType::Directory),
                _ => {
                    let Some((name, inode)) = self.listing_entry(&listing, i - 2) else {
                        continue;
                    };
                    let child_ino = match inode {
                        Inode::ViewDir(v) => Inodes::view_dir(v),
                        _ => listing_ino(ino.0, &name),
                    };
                    (name, child_ino, file_type(&inode))
                }
            };
            if reply.add(INodeNo(child_ino), i as u64 + 1, kind, &name) {
                break;
            }
        }
        reply.ok();
    }

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        let (listing, parent) = match self.open_listing(ino) {
            Ok(l) => l,
            Err(e) => return reply.error(e),
        };
        self.prefetch_children(&listing, (offset as usize).saturating_sub(2));
        let total = listing.len() + 2;
        for i in (offset as usize)..total {
            let full = match i {
                0 | 1 => {
                    // The kernel does not count references for "." and "..".
                    let dir_ino = if i == 0 { ino.0 } else { parent };
                    let dir_inode = self.inode(INodeNo(dir_ino)).unwrap_or(Inode::Root);
                    let (attr, ttl) = self.attr(dir_ino, &dir_inode);
                    let name = if i == 0 { "." } else { ".." };
                    reply.add(
                        INodeNo(dir_ino),
                        i as u64 + 1,
                        name,
                        &ttl,
                        &attr,
                        Generation(0),
                    )
                }
                _ => {
                    let Some((name, inode)) = self.listing_entry(&listing, i - 2) else {
                        continue;
                    };
                    let child_ino = match inode {
                        Inode::ViewDir(v) => Inodes::view_dir(v),
                        _ => self.inodes.lock().expect("inodes").insert(
                            ino.0,
                            OsStr::new(&name),
                            inode.clone(),
                        ),
                    };
                    let (attr, ttl) = self.attr(child_ino, &inode);
                    let full = reply.add(
                        INodeNo(child_ino),
                        i as u64 + 1,
                        &name,
                        &ttl,
                        &attr,
                        Generation(0),
                    );
                    if full && !matches!(inode, Inode::ViewDir(_)) {
                        // Not sent: take back the reference just counted.
                        self.inodes.lock().expect("inodes").forget(child_ino, 1);
                    }
                    full
                }
            };
            if full {
                break;
            }
        }
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let path = std::ffi::CString::new(self.opts.blocks_dir.as_os_str().as_bytes())
            .expect("no NUL in the blocks path");
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        // SAFETY: `path` is a valid C string and `st` a valid out-pointer for the call.
        if unsafe { libc::statvfs(path.as_ptr(), &mut st) } != 0 {
            return reply.error(Errno::from(std::io::Error::last_os_error()));
        }
        reply.statfs(
            st.f_blocks,
            st.f_bfree,
            st.f_bavail,
            st.f_files,
            st.f_ffree,
            st.f_bsize as u32,
            255,
            st.f_frsize as u32,
        );
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        let value = match self.inode(ino) {
            Ok(Inode::Node { entry, .. }) if name == XATTR_CID => entry.cid.to_string(),
            Ok(Inode::Root) if name == XATTR_INODES => self.inode_count().to_string(),
            _ => return reply.error(Errno::NO_XATTR),
        };
        if size == 0 {
            reply.size(value.len() as u32);
        } else if value.len() <= size as usize {
            reply.data(value.as_bytes());
        } else {
            reply.error(Errno::ERANGE);
        }
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        let names: &[u8] = match self.inode(ino) {
            Ok(Inode::Node { .. }) => b"user.ipfs.cid\0",
            Ok(Inode::Root) => b"user.cairn.inodes\0",
            _ => b"",
        };
        if size == 0 {
            reply.size(names.len() as u32);
        } else if names.len() <= size as usize {
            reply.data(names);
        } else {
            reply.error(Errno::ERANGE);
        }
    }

    fn access(&self, _req: &Request, ino: INodeNo, mask: AccessFlags, reply: ReplyEmpty) {
        if self.inode(ino).is_err() {
            return reply.error(Errno::ENOENT);
        }
        if mask.contains(AccessFlags::W_OK) {
            return reply.error(Errno::EROFS);
        }
        reply.ok();
    }
}
