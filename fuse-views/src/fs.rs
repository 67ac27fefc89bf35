//! [`CairnFs`]: the one adapter between the kernel's FUSE protocol and the views. This file
//! holds the state and fuser's callbacks; the operations themselves, as plain results that
//! either transport (fuser's `/dev/fuse` threads or cairn's io_uring queues) encodes, are in
//! `ops`; name resolution and listings in `resolve`, the pinned roots in `roots`, passthrough
//! opens in `passthrough`.

mod listers;
pub mod names;
pub(crate) mod ops;
mod passthrough;
mod resolve;
mod roots;

pub use self::{
    names::{NameSource, Named, Names, Versions},
    roots::PinnedRoots,
};
use self::{
    ops::Xattr,
    resolve::{file_type, listing_ino},
    roots::PinSnapshot,
};

use std::{
    collections::HashMap,
    ffi::OsStr,
    path::PathBuf,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use fuser::{
    AccessFlags, BackingId, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags,
    Generation, INodeNo, InitFlags, IoctlFlags, KernelConfig, LockOwner, OpenFlags, ReplyAttr,
    ReplyData, ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyIoctl, ReplyOpen,
    ReplyStatfs, ReplyXattr, Request,
};

use crate::{
    cache::NodeCache,
    inodes::{Inode, Inodes},
    view::{Entry, Kind, View, ViewError},
};

/// Content never changes: the kernel may keep entries and attributes for a year.
const CONTENT_TTL: Duration = Duration::from_secs(365 * 24 * 3600);
/// The root and view directories list pins, which change.
const LISTING_TTL: Duration = Duration::from_secs(1);
/// Files' `st_blksize`: tools size their buffers by it; reads come in up to 1 MiB.
const BLKSIZE: u32 = 1 << 20;
/// The view roots' `st_blksize` (see [`listing_blksize`]).
const DIR_BLKSIZE: u32 = 4096;
/// Room for one entry of a listing with attributes (a `fuse_direntplus` and a name).
const DIRENTPLUS: u64 = 256;

/// A directory's `st_blksize`: room for its whole listing with attributes. glibc sizes its
/// `getdents` buffer by it (32 KiB to 1 MiB), and since Linux 6.16 the kernel allocates and
/// maps a buffer of that size (up to `max_pages`) for every READDIR request. A small directory asking for 1 MiB made `find` over
/// a tree of small directories spend a third of its time allocating and freeing 256 pages
/// a request; a large one asking for 32 KiB gets attributes for its first 150 entries only
/// (the kernel asks for the rest plainly), and `du` then pays a LOOKUP for each of the rest.
fn listing_blksize(links: u64) -> u32 {
    (links
        .saturating_mul(DIRENTPLUS)
        .clamp(4096, MAX_REQUEST as u64) as u32)
        .next_power_of_two()
}
/// How many children of a directory a listing page asks for ahead (a readdirplus page holds
/// about 25 entries).
const PREFETCH_CHILDREN: usize = 64;
/// A directory of at most this many entries has its files' blocks prefetched from the local
/// disk when one of them is first looked up (see `prefetch_siblings`).
const SIBLINGS: usize = 256;
/// Directories remembered as prefetched already.
const SIBLING_DIRS: usize = 4096;
/// The largest request or reply: the kernel's largest read (`max_pages`, 256 pages).
pub const MAX_REQUEST: usize = 1 << 20;
/// A FUSE thread keeps a reply buffer up to this size between reads.
const READ_BUFFER_KEPT: usize = 4 << 20;
const XATTR_CID: &str = "user.ipfs.cid";
/// On the mount root: how many inodes the table holds (to see `forget` at work).
const XATTR_INODES: &str = "user.cairn.inodes";
/// On the mount root: how many FLUSH requests reached cairn.
const XATTR_FLUSHES: &str = "user.cairn.flushes";
/// On the mount root: how many entries went out with their attributes in listings.
const XATTR_PLUS: &str = "user.cairn.plus";
/// On the mount root: how many requests came through io_uring queues.
const XATTR_URING: &str = "user.cairn.uring";

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
    /// What `R/store/name/` shows.
    pub names: Names,
}

/// The filesystem: views, a node cache, the inode table. A handle: clones share one state, so
/// that fuser's session and the io_uring queues serve the same inodes.
#[derive(Clone)]
pub struct CairnFs(Arc<FsCore>);

/// What every handle of a [`CairnFs`] shares.
pub struct FsCore {
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
    /// FLUSH requests seen (`user.cairn.flushes` on the root): one, then the kernel stops.
    flushes: AtomicU64,
    /// Entries sent with their attributes in listings, ever (`user.cairn.plus` on the root):
    /// unlike the inode count, the kernel's reclaim never lowers it.
    plus: AtomicU64,
    /// Ask the kernel for FUSE over io_uring at INIT (queues are ready to register).
    uring_offer: AtomicBool,
    /// The kernel agreed to FUSE over io_uring at INIT.
    uring: AtomicBool,
    /// Requests served through io_uring queues (`user.cairn.uring` on the root).
    pub(crate) uring_served: AtomicU64,
    /// Which callers get attributes with their listings.
    listers: listers::Listers,
    /// Directories whose files were prefetched on a lookup (see `prefetch_siblings`).
    siblings: quick_cache::sync::Cache<cairn_store::Cid, ()>,
}

impl std::ops::Deref for CairnFs {
    type Target = FsCore;
    fn deref(&self) -> &FsCore {
        &self.0
    }
}

/// What FUSE gets back from a helper: an errno, already logged if it hides a content error.
type FsResult<T> = Result<T, Errno>;

impl CairnFs {
    pub fn new(views: Vec<Arc<dyn View>>, nodes: NodeCache, opts: FsOptions) -> CairnFs {
        CairnFs(Arc::new(FsCore {
            inodes: Mutex::new(Inodes::new(views.len())),
            views,
            nodes,
            passthrough: AtomicBool::new(opts.passthrough),
            opts,
            mounted_at: SystemTime::now(),
            backing: Mutex::new(HashMap::new()),
            handles: Mutex::new(HashMap::new()),
            next_fh: AtomicU64::new(1),
            pins: Mutex::new(PinSnapshot::new()),
            flushes: AtomicU64::new(0),
            plus: AtomicU64::new(0),
            uring_offer: AtomicBool::new(false),
            uring: AtomicBool::new(false),
            uring_served: AtomicU64::new(0),
            listers: listers::Listers::new(),
            siblings: quick_cache::sync::Cache::new(SIBLING_DIRS),
        }))
    }

    /// Whether INIT asks the kernel for io_uring queues: only once they are made, because
    /// after agreeing the kernel holds every request back until they are registered.
    pub fn offer_uring(&self, offer: bool) {
        self.uring_offer.store(offer, Ordering::Relaxed);
    }

    /// Whether the kernel agreed, at INIT, to take requests through io_uring queues.
    pub fn uring_agreed(&self) -> bool {
        self.uring.load(Ordering::Relaxed)
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
            blksize: DIR_BLKSIZE,
            flags: 0,
        }
    }

    fn attr(&self, ino: u64, inode: &Inode) -> (FileAttr, Duration) {
        let entry = match inode {
            Inode::Node { entry, .. } => entry,
            Inode::Name(n) => return (self.name_attr(ino, n), LISTING_TTL),
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
        let (kind, default_perm, nlink, blksize) = match entry.kind {
            Kind::File => (FileType::RegularFile, 0o444, 1, BLKSIZE),
            Kind::Directory => (FileType::Directory, 0o555, 2, listing_blksize(entry.size)),
            Kind::Symlink => (FileType::Symlink, 0o777, 1, BLKSIZE),
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
            // A directory's size counts links, not bytes: no blocks for `du` to add up.
            blocks: if kind == FileType::Directory {
                0
            } else {
                entry.size.div_ceil(512)
            },
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
            blksize,
            flags: 0,
        };
        (attr, CONTENT_TTL)
    }

    /// The attributes of an entry below `R/store/name/`.
    fn name_attr(&self, ino: u64, node: &names::NameNode) -> FileAttr {
        let mut a = self.dir_attr(ino);
        match node {
            names::NameNode::Dir(v) => a.size = v.versions.len() as u64 + 2,
            names::NameNode::Link(t) => {
                a.kind = FileType::Symlink;
                a.perm = 0o777;
                a.nlink = 1;
                a.size = t.len() as u64;
            }
            names::NameNode::File(b) => {
                a.kind = FileType::RegularFile;
                a.perm = 0o444;
                a.nlink = 1;
                a.size = b.len() as u64;
                a.blocks = a.size.div_ceil(512);
            }
        }
        a
    }

    fn node_entry(&self, ino: INodeNo) -> FsResult<(usize, Arc<Entry>)> {
        match self.inode(ino)? {
            Inode::Node { view, entry } => Ok((view, entry)),
            _ => Err(Errno::EISDIR),
        }
    }
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
        // Nothing is ever written; a smaller largest write, and read-ahead requests of at
        // most 1 MiB, keep the largest request or reply (which each io_uring entry's payload
        // buffer must hold) at 1 MiB.
        let _ = config.set_max_write(MAX_REQUEST as u32);
        let _ = config.set_max_readahead(MAX_REQUEST as u32);
        if self.uring_offer.load(Ordering::Relaxed) {
            match config.add_capabilities(InitFlags::FUSE_OVER_IO_URING) {
                Ok(()) => self.uring.store(true, Ordering::Relaxed),
                Err(_) => log::info!("kernel does not offer FUSE over io_uring"),
            }
        }
        Ok(())
    }

    fn lookup(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        match self.op_lookup(parent.0, name, req.pid()) {
            Ok(l) => reply.entry_with_ttls(&l.attr_ttl, &l.entry_ttl, &l.attr, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.op_forget(ino.0, nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.op_getattr(ino.0) {
            Ok((attr, ttl)) => reply.attr(&ttl, &attr),
            Err(e) => reply.error(e),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.op_readlink(ino.0) {
            Ok(target) => reply.data(&target),
            Err(e) => reply.error(e),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let refused = self.op_open_stateless(flags.0);
        if refused == Errno::EROFS || !self.passthrough.load(Ordering::Relaxed) {
            return reply.error(refused);
        }
        if let Some((fh, id)) = self.open_passthrough(ino.0, &reply) {
            return reply.opened_passthrough(FileHandle(fh), FopenFlags::empty(), &id);
        }
        reply.opened(FileHandle(0), FopenFlags::FOPEN_KEEP_CACHE)
    }

    /// Answered ENOSYS (see `op_flush`). fuser's own default answers ENOSYS too, but logs a
    /// warning in the user's terminal.
    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        reply.error(self.op_flush());
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
        self.release_passthrough(fh.0);
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
        let mut out = OUT.take();
        match self.op_read(ino.0, offset, size, &mut out) {
            Ok(()) => reply.data(&out),
            Err(e) => reply.error(e),
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
        match self.op_opendir(ino.0) {
            Ok(flags) => reply.opened(FileHandle(0), flags),
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
        let mut add = |ino, next, kind, name: &str| reply.add(INodeNo(ino), next, kind, name);
        match self.op_readdir(ino.0, offset, &mut add) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn readdirplus(
        &self,
        req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        let mut add = |ino, next, name: &str, ttl: &Duration, attr: &FileAttr| {
            reply.add(INodeNo(ino), next, name, ttl, attr, Generation(0))
        };
        match self.op_readdirplus(ino.0, offset, req.pid(), &mut add) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        match self.op_statfs() {
            Ok(st) => reply.statfs(
                st.f_blocks,
                st.f_bfree,
                st.f_bavail,
                st.f_files,
                st.f_ffree,
                st.f_bsize as u32,
                255,
                st.f_frsize as u32,
            ),
            Err(e) => reply.error(e),
        }
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        match self.op_xattr(ino.0, Some(name), size) {
            Ok(Xattr::Size(n)) => reply.size(n),
            Ok(Xattr::Data(v)) => reply.data(&v),
            Err(e) => reply.error(e),
        }
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        match self.op_xattr(ino.0, None, size) {
            Ok(Xattr::Size(n)) => reply.size(n),
            Ok(Xattr::Data(v)) => reply.data(&v),
            Err(e) => reply.error(e),
        }
    }

    fn access(&self, _req: &Request, ino: INodeNo, mask: AccessFlags, reply: ReplyEmpty) {
        match self.op_access(ino.0, mask.bits()) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }
}
