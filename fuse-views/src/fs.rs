//! [`CairnFs`]: the one adapter between the kernel's FUSE protocol and the views. This file
//! holds the state and the FUSE callbacks; name resolution and listings are in `resolve`,
//! the pinned roots in `roots`, passthrough opens in `passthrough`.

mod passthrough;
mod resolve;
mod roots;

pub use self::roots::PinnedRoots;
use self::{
    resolve::{file_type, listing_ino},
    roots::PinSnapshot,
};

use std::{
    collections::HashMap,
    ffi::OsStr,
    os::unix::ffi::OsStrExt,
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
/// On the mount root: how many FLUSH requests reached cairn.
const XATTR_FLUSHES: &str = "user.cairn.flushes";

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
    /// FLUSH requests seen (`user.cairn.flushes` on the root): one, then the kernel stops.
    flushes: AtomicU64,
}

/// What FUSE gets back from a helper: an errno, already logged if it hides a content error.
type FsResult<T> = Result<T, Errno>;

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
            pins: Mutex::new(PinSnapshot::new()),
            flushes: AtomicU64::new(0),
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

    /// Sent at a `close`; a read-only filesystem has nothing to write back. Answered ENOSYS,
    /// so the kernel never sends another: answering it "ok" cost a round trip per `close`
    /// (small-file open+read+close fell from 171k/s to 35k/s). fuser's own default answers
    /// ENOSYS too, but logs a warning in the user's terminal.
    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        self.flushes.fetch_add(1, Ordering::Relaxed);
        reply.error(Errno::ENOSYS);
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
            Ok(Inode::Root) if name == XATTR_FLUSHES => {
                self.flushes.load(Ordering::Relaxed).to_string()
            }
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
            Ok(Inode::Root) => b"user.cairn.inodes\0user.cairn.flushes\0",
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
