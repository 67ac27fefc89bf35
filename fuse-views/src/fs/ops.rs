//! The filesystem's operations as plain results, for either transport to encode: fuser's
//! `/dev/fuse` threads (the `Filesystem` impl in `fs.rs`) or cairn's io_uring queues
//! (`uring.rs`).

use std::{ffi::OsStr, os::unix::ffi::OsStrExt, sync::atomic::Ordering, time::Duration};

use fuser::{Errno, FileAttr, FileType, FopenFlags, INodeNo};

use super::{
    file_type, listers::SMALL_LISTING, listing_ino, CairnFs, FsResult, CONTENT_TTL, LISTING_TTL,
    READ_BUFFER_KEPT, XATTR_CID, XATTR_FLUSHES, XATTR_INODES, XATTR_PLUS, XATTR_URING,
};
use crate::{
    fs::names::NameNode,
    inodes::{Inode, Inodes},
    view::Kind,
};

/// The longest symlink target the kernel takes from a FUSE server (a page less its NUL).
const MAX_SYMLINK: usize = 4095;

/// A name looked up: its attributes (inode 0 for a name that is not there, which the kernel
/// remembers as absent for `entry_ttl`) and how long the kernel may keep them.
pub(crate) struct Looked {
    pub attr: FileAttr,
    pub attr_ttl: Duration,
    pub entry_ttl: Duration,
}

/// What an xattr request gets: the size of the value (asked with size 0) or the value.
pub(crate) enum Xattr {
    Size(u32),
    Data(Vec<u8>),
}

impl CairnFs {
    /// Looks `name` up in `parent` for caller `pid`.
    pub(crate) fn op_lookup(&self, parent: u64, name: &OsStr, pid: u32) -> FsResult<Looked> {
        match self.lookup_counted(parent, name) {
            Ok((ino, inode)) => {
                if file_type(&inode) != FileType::Directory {
                    self.listers.looked_up_file(pid);
                }
                let (attr, ttl) = self.attr(ino, &inode);
                // Content names never change meaning; only the root's and view dirs'
                // attributes do. Names below `name/` do: they live as long as listings.
                let entry_ttl = match inode {
                    Inode::Name(_) | Inode::NameDir => LISTING_TTL,
                    _ => CONTENT_TTL,
                };
                Ok(Looked {
                    attr,
                    attr_ttl: ttl,
                    entry_ttl,
                })
            }
            // Content never changes, so a name that is not there never will be: the kernel
            // may remember that for as long as it remembers names. Under the root and the
            // view roots a CID may arrive at any time, so for a second only.
            Err(e) if e == Errno::ENOENT => {
                let ttl = match self.inode(INodeNo(parent)) {
                    Ok(Inode::Node { .. }) => CONTENT_TTL,
                    _ => LISTING_TTL,
                };
                let mut attr = self.dir_attr(0);
                attr.ino = INodeNo(0);
                Ok(Looked {
                    attr,
                    attr_ttl: ttl,
                    entry_ttl: ttl,
                })
            }
            Err(e) => Err(e),
        }
    }

    pub(crate) fn op_forget(&self, ino: u64, nlookup: u64) {
        self.inodes.lock().expect("inodes").forget(ino, nlookup);
    }

    pub(crate) fn op_getattr(&self, ino: u64) -> FsResult<(FileAttr, Duration)> {
        let inode = self.inode(INodeNo(ino))?;
        Ok(self.attr(ino, &inode))
    }

    /// A symlink's target. The kernel takes at most a page less one byte; a longer target
    /// (a stranger's block may hold one) is ENAMETOOLONG through either transport, rather
    /// than whatever each makes of a reply too long.
    pub(crate) fn op_readlink(&self, ino: u64) -> FsResult<Vec<u8>> {
        if let Ok(Inode::Name(n)) = self.inode(INodeNo(ino)) {
            return match n {
                NameNode::Link(t) if t.len() <= MAX_SYMLINK => Ok(t.as_bytes().to_vec()),
                NameNode::Link(_) => Err(Errno::ENAMETOOLONG),
                _ => Err(Errno::EINVAL),
            };
        }
        let (view, entry) = self.node_entry(INodeNo(ino)).map_err(|_| Errno::EINVAL)?;
        let target = self.views[view]
            .readlink(&self.nodes, &entry)
            .map_err(|e| self.errno(&entry.cid, e, Errno::EINVAL))?;
        if target.len() > MAX_SYMLINK {
            log::warn!("{}: a symlink target of {} bytes", entry.cid, target.len());
            return Err(Errno::ENAMETOOLONG);
        }
        Ok(target)
    }

    /// An open without passthrough: refused for writing, else ENOSYS, after which the kernel
    /// opens statelessly for good and keeps the page cache.
    pub(crate) fn op_open_stateless(&self, flags: i32) -> Errno {
        if flags & (libc::O_WRONLY | libc::O_RDWR | libc::O_TRUNC) != 0 {
            Errno::EROFS
        } else {
            Errno::ENOSYS
        }
    }

    /// Sent at a `close`; a read-only filesystem has nothing to write back. Answered ENOSYS,
    /// so the kernel never sends another: answering it "ok" cost a round trip per `close`
    /// (small-file open+read+close fell from 171k/s to 35k/s).
    pub(crate) fn op_flush(&self) -> Errno {
        self.flushes.fetch_add(1, Ordering::Relaxed);
        Errno::ENOSYS
    }

    /// Reads into `out` (cleared first). Each thread keeps its buffer between reads, so its
    /// pages stay mapped, unless a read made it larger than [`READ_BUFFER_KEPT`].
    pub(crate) fn op_read(
        &self,
        ino: u64,
        offset: u64,
        size: u32,
        out: &mut Vec<u8>,
    ) -> FsResult<()> {
        if let Ok(Inode::Name(n)) = self.inode(INodeNo(ino)) {
            let NameNode::File(bytes) = n else {
                return Err(Errno::EISDIR);
            };
            out.clear();
            let from = (offset as usize).min(bytes.len());
            let to = from.saturating_add(size as usize).min(bytes.len());
            out.extend_from_slice(&bytes[from..to]);
            return Ok(());
        }
        let (view, entry) = self.node_entry(INodeNo(ino))?;
        if offset == 0 {
            self.prefetch_siblings(ino);
        }
        out.clear();
        if out.capacity() > READ_BUFFER_KEPT {
            *out = Vec::new();
        }
        out.reserve(size as usize);
        self.views[view]
            .read(&self.nodes, &entry, offset, size, out)
            .map_err(|e| self.errno(&entry.cid, e, Errno::EISDIR))
    }

    /// The flags a directory opens with (handle 0), or ENOSYS for stateless directory opens.
    pub(crate) fn op_opendir(&self, ino: u64) -> FsResult<FopenFlags> {
        match self.inode(INodeNo(ino))? {
            Inode::Node { entry, .. } if entry.kind != Kind::Directory => Err(Errno::ENOTDIR),
            Inode::Node { .. } if !self.opts.passthrough => Err(Errno::ENOSYS),
            Inode::Node { .. } => Ok(FopenFlags::FOPEN_CACHE_DIR),
            Inode::Name(NameNode::Link(_) | NameNode::File(_)) => Err(Errno::ENOTDIR),
            _ => Ok(FopenFlags::empty()),
        }
    }

    /// Hands `add` the entries of directory `ino` from `offset` (inode, next offset, kind,
    /// name) until it answers that the reply is full.
    pub(crate) fn op_readdir(
        &self,
        ino: u64,
        offset: u64,
        add: &mut dyn FnMut(u64, u64, FileType, &str) -> bool,
    ) -> FsResult<()> {
        let (listing, parent) = self.open_listing(INodeNo(ino))?;
        self.prefetch_children(&listing, (offset as usize).saturating_sub(2));
        for i in (offset as usize)..listing.len() + 2 {
            let full = match i {
                0 => add(ino, 1, FileType::Directory, "."),
                1 => add(parent, 2, FileType::Directory, ".."),
                _ => {
                    let Some((name, inode)) = self.listing_entry(&listing, i - 2) else {
                        continue;
                    };
                    let child_ino = match inode {
                        Inode::ViewDir(v) => Inodes::view_dir(v),
                        Inode::NameDir => Inodes::name_dir(self.views.len()),
                        _ => listing_ino(ino, name),
                    };
                    add(child_ino, i as u64 + 1, file_type(&inode), name)
                }
            };
            if full {
                break;
            }
        }
        Ok(())
    }

    /// As [`CairnFs::op_readdir`], with each entry's attributes: every entry handed to `add`
    /// and sent counts a kernel reference, as a lookup does. A large directory's first
    /// request from a caller `pid` that reads no attributes gets "." and ".." alone, so that
    /// the kernel asks for the rest without attributes (see [`listers`](super::listers)).
    pub(crate) fn op_readdirplus(
        &self,
        ino: u64,
        offset: u64,
        pid: u32,
        add: &mut dyn FnMut(u64, u64, &str, &Duration, &FileAttr) -> bool,
    ) -> FsResult<()> {
        let (listing, parent) = self.open_listing(INodeNo(ino))?;
        let names_only =
            offset == 0 && listing.len() > SMALL_LISTING && !self.listers.reads_attrs(pid);
        let end = if names_only { 2 } else { listing.len() + 2 };
        if !names_only {
            self.prefetch_children(&listing, (offset as usize).saturating_sub(2));
        }
        for i in (offset as usize)..end {
            let full = match i {
                0 | 1 => {
                    // The kernel does not count references for "." and "..".
                    let dir_ino = if i == 0 { ino } else { parent };
                    let dir_inode = self.inode(INodeNo(dir_ino)).unwrap_or(Inode::Root);
                    let (attr, ttl) = self.attr(dir_ino, &dir_inode);
                    let name = if i == 0 { "." } else { ".." };
                    add(dir_ino, i as u64 + 1, name, &ttl, &attr)
                }
                _ => {
                    let Some((name, inode)) = self.listing_entry(&listing, i - 2) else {
                        continue;
                    };
                    let child_ino = match inode {
                        Inode::ViewDir(v) => Inodes::view_dir(v),
                        Inode::NameDir => Inodes::name_dir(self.views.len()),
                        _ => self.inodes.lock().expect("inodes").insert(
                            ino,
                            OsStr::new(&name),
                            inode.clone(),
                        ),
                    };
                    let (attr, ttl) = self.attr(child_ino, &inode);
                    let full = add(child_ino, i as u64 + 1, name, &ttl, &attr);
                    if full && !matches!(inode, Inode::ViewDir(_) | Inode::NameDir) {
                        // Not sent: take back the reference just counted.
                        self.inodes.lock().expect("inodes").forget(child_ino, 1);
                    } else if !full {
                        self.plus.fetch_add(1, Ordering::Relaxed);
                    }
                    full
                }
            };
            if full {
                break;
            }
        }
        Ok(())
    }

    /// The filesystem holding the blocks, as `statfs` reports it.
    pub(crate) fn op_statfs(&self) -> FsResult<libc::statvfs> {
        let path = std::ffi::CString::new(self.opts.blocks_dir.as_os_str().as_bytes())
            .expect("no NUL in the blocks path");
        // SAFETY: statvfs is plain data; all-zero is a valid value.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        // SAFETY: `path` is a valid C string and `st` a valid out-pointer for the call.
        if unsafe { libc::statvfs(path.as_ptr(), &mut st) } != 0 {
            return Err(Errno::from(std::io::Error::last_os_error()));
        }
        Ok(st)
    }

    /// Extended attribute `name` of `ino` (or, with `None`, the list of names), for a request
    /// that has room for `size` bytes.
    pub(crate) fn op_xattr(&self, ino: u64, name: Option<&OsStr>, size: u32) -> FsResult<Xattr> {
        let inode = self.inode(INodeNo(ino));
        let value: Vec<u8> = match name {
            None => match inode {
                Ok(Inode::Node { .. }) => b"user.ipfs.cid\0".to_vec(),
                Ok(Inode::Root) => {
                    b"user.cairn.inodes\0user.cairn.flushes\0user.cairn.plus\0user.cairn.uring\0"
                        .to_vec()
                }
                _ => Vec::new(),
            },
            Some(name) => match inode {
                Ok(Inode::Node { entry, .. }) if name == XATTR_CID => entry.cid.to_string(),
                Ok(Inode::Root) if name == XATTR_INODES => self.inode_count().to_string(),
                Ok(Inode::Root) if name == XATTR_FLUSHES => {
                    self.flushes.load(Ordering::Relaxed).to_string()
                }
                Ok(Inode::Root) if name == XATTR_PLUS => {
                    self.plus.load(Ordering::Relaxed).to_string()
                }
                Ok(Inode::Root) if name == XATTR_URING => {
                    self.uring_served.load(Ordering::Relaxed).to_string()
                }
                _ => return Err(Errno::NO_XATTR),
            }
            .into_bytes(),
        };
        if size == 0 {
            Ok(Xattr::Size(value.len() as u32))
        } else if value.len() <= size as usize {
            Ok(Xattr::Data(value))
        } else {
            Err(Errno::ERANGE)
        }
    }

    pub(crate) fn op_access(&self, ino: u64, mask: i32) -> FsResult<()> {
        if self.inode(INodeNo(ino)).is_err() {
            return Err(Errno::ENOENT);
        }
        if mask & libc::W_OK != 0 {
            return Err(Errno::EROFS);
        }
        Ok(())
    }
}
