//! The FUSE requests a ring entry carries and the replies it sends back, in the kernel's ABI
//! (`include/uapi/linux/fuse.h`, little-endian): decoded from the entry's header and payload,
//! handed to the [`CairnFs`] operations, encoded into the same buffers.
//!
//! An io_uring request comes split: the `fuse_in_header` in the header's first 128 bytes, the
//! operation's fixed arguments (`fuse_read_in`, ...) in the next 128, and the rest (a name) in
//! the payload buffer. The reply is a `fuse_out_header` in the first 128 bytes and the whole
//! reply body in the payload. Bytes come from the kernel, not a peer, but every read is
//! bounds-checked all the same: a short request is EINVAL, never a panic.

use std::{
    ffi::OsStr,
    os::unix::ffi::OsStrExt,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use fuser::{Errno, FileAttr, FileType};

use crate::fs::{
    ops::{Looked, Xattr},
    CairnFs,
};

/// Where the parts of a ring entry's header are.
pub(super) const HEADER_LEN: usize = 288;
const OP_IN: usize = 128;
const ENT_IN_OUT: usize = 256;

mod op {
    pub const LOOKUP: u32 = 1;
    pub const GETATTR: u32 = 3;
    pub const READLINK: u32 = 5;
    pub const OPEN: u32 = 14;
    pub const READ: u32 = 15;
    pub const STATFS: u32 = 17;
    pub const RELEASE: u32 = 18;
    pub const GETXATTR: u32 = 22;
    pub const LISTXATTR: u32 = 23;
    pub const FLUSH: u32 = 25;
    pub const OPENDIR: u32 = 27;
    pub const READDIR: u32 = 28;
    pub const RELEASEDIR: u32 = 29;
    pub const ACCESS: u32 = 34;
    pub const IOCTL: u32 = 39;
    pub const READDIRPLUS: u32 = 44;
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// The ring entry's own fields: the id to commit the reply with, and the payload's length.
pub(super) fn entry_in(header: &[u8; HEADER_LEN]) -> (u64, usize) {
    let commit_id = u64_at(header, ENT_IN_OUT + 8).unwrap_or(0);
    let payload = u32_at(header, ENT_IN_OUT + 16).unwrap_or(0) as usize;
    (commit_id, payload)
}

/// How a READ is done: [`CairnFs::op_read`] into the buffer, on this thread or another.
pub(super) type Reader<'a> = &'a dyn Fn(&CairnFs, u64, u64, u32, &mut Vec<u8>) -> Result<(), Errno>;

/// Serves the request in `header` and `payload` and writes the reply over them.
pub(super) fn serve(
    fs: &CairnFs,
    header: &mut [u8; HEADER_LEN],
    payload: &mut [u8],
    read_buf: &mut Vec<u8>,
    read: Reader,
) {
    fs.uring_served
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let (_, payload_len) = entry_in(header);
    let payload_len = payload_len.min(payload.len());
    let opcode = u32_at(header, 4).unwrap_or(0);
    let unique = u64_at(header, 8).unwrap_or(0);
    let nodeid = u64_at(header, 16).unwrap_or(0);
    let pid = u32_at(header, 32).unwrap_or(0);
    let mut out = Out {
        buf: payload,
        len: 0,
    };
    let op_in: [u8; 128] = header[OP_IN..OP_IN + 128].try_into().expect("128 bytes");
    let result = answer(
        fs,
        opcode,
        nodeid,
        pid,
        &op_in,
        payload_len,
        &mut out,
        read_buf,
        read,
    );
    let (error, len) = match result {
        Ok(()) => (0, out.len),
        Err(e) => (-e.code(), 0),
    };
    header[..16].fill(0);
    header[0..4].copy_from_slice(&(16 + len as u32).to_le_bytes());
    header[4..8].copy_from_slice(&error.to_le_bytes());
    header[8..16].copy_from_slice(&unique.to_le_bytes());
    header[ENT_IN_OUT + 16..ENT_IN_OUT + 20].copy_from_slice(&(len as u32).to_le_bytes());
}

/// Turns the request in `header` into an error reply (`errno`, no body): for a request
/// whose operation panicked. The in and out headers keep `unique` at the same place.
pub(super) fn fail(header: &mut [u8; HEADER_LEN], errno: i32) {
    header[0..4].copy_from_slice(&16u32.to_le_bytes());
    header[4..8].copy_from_slice(&(-errno).to_le_bytes());
    header[ENT_IN_OUT + 16..ENT_IN_OUT + 20].fill(0);
}

/// The reply body being written into the payload buffer.
struct Out<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl Out<'_> {
    /// Appends `bytes`, or answers false (and appends nothing) if they do not fit.
    fn put(&mut self, bytes: &[u8]) -> bool {
        let Some(to) = self.buf.get_mut(self.len..self.len + bytes.len()) else {
            return false;
        };
        to.copy_from_slice(bytes);
        self.len += bytes.len();
        true
    }
}

/// The NUL-terminated name at the start of the payload.
fn name(payload: &[u8]) -> Result<&OsStr, Errno> {
    let end = payload.iter().position(|b| *b == 0).ok_or(Errno::EINVAL)?;
    Ok(OsStr::from_bytes(&payload[..end]))
}

#[allow(clippy::too_many_arguments)]
fn answer(
    fs: &CairnFs,
    opcode: u32,
    nodeid: u64,
    pid: u32,
    op_in: &[u8; 128],
    payload_len: usize,
    out: &mut Out,
    read_buf: &mut Vec<u8>,
    read: Reader,
) -> Result<(), Errno> {
    let too_small = Errno::ERANGE;
    match opcode {
        op::LOOKUP => {
            // The name is all that the request carries: `out` still holds it.
            let looked = {
                let n = name(&out.buf[..payload_len])?;
                fs.op_lookup(nodeid, n, pid)?
            };
            out.put(&entry_out(&looked)).then_some(()).ok_or(too_small)
        }
        op::GETATTR => {
            let (attr, ttl) = fs.op_getattr(nodeid)?;
            let mut b = Vec::with_capacity(104);
            b.extend(ttl.as_secs().to_le_bytes());
            b.extend(ttl.subsec_nanos().to_le_bytes());
            b.extend(0u32.to_le_bytes());
            b.extend(fuse_attr(&attr));
            out.put(&b).then_some(()).ok_or(too_small)
        }
        op::READLINK => {
            let target = fs.op_readlink(nodeid)?;
            out.put(&target).then_some(()).ok_or(too_small)
        }
        op::OPEN => Err(fs.op_open_stateless(u32_at(op_in, 0).unwrap_or(0) as i32)),
        op::READ => {
            let offset = u64_at(op_in, 8).unwrap_or(0);
            let size = u32_at(op_in, 16).unwrap_or(0);
            read(fs, nodeid, offset, size, read_buf)?;
            let n = read_buf.len().min(size as usize);
            out.put(&read_buf[..n]).then_some(()).ok_or(too_small)
        }
        op::STATFS => {
            let st = fs.op_statfs()?;
            let mut b = Vec::with_capacity(80);
            for v in [st.f_blocks, st.f_bfree, st.f_bavail, st.f_files, st.f_ffree] {
                b.extend(v.to_le_bytes());
            }
            for v in [st.f_bsize as u32, 255, st.f_frsize as u32, 0] {
                b.extend(v.to_le_bytes());
            }
            b.extend([0u8; 24]);
            out.put(&b).then_some(()).ok_or(too_small)
        }
        op::RELEASE | op::RELEASEDIR => Ok(()),
        op::GETXATTR | op::LISTXATTR => {
            let size = u32_at(op_in, 0).unwrap_or(0);
            let value = if opcode == op::GETXATTR {
                let n = name(&out.buf[..payload_len])?.to_owned();
                fs.op_xattr(nodeid, Some(&n), size)?
            } else {
                fs.op_xattr(nodeid, None, size)?
            };
            let ok = match value {
                Xattr::Size(n) => out.put(&[n.to_le_bytes(), [0; 4]].concat()),
                Xattr::Data(v) => out.put(&v),
            };
            ok.then_some(()).ok_or(too_small)
        }
        op::FLUSH => Err(fs.op_flush()),
        op::OPENDIR => {
            let flags = fs.op_opendir(nodeid)?;
            let mut b = [0u8; 16];
            b[8..12].copy_from_slice(&flags.bits().to_le_bytes());
            out.put(&b).then_some(()).ok_or(too_small)
        }
        op::READDIR | op::READDIRPLUS => {
            let offset = u64_at(op_in, 8).unwrap_or(0);
            let size = u32_at(op_in, 16).unwrap_or(0) as usize;
            let limit = size.min(out.buf.len());
            let mut dir = Out {
                buf: &mut out.buf[..limit],
                len: 0,
            };
            if opcode == op::READDIR {
                let mut add = |ino, next, kind, name: &str| {
                    !dir.put(&dirent(ino, next, kind, name.as_bytes()))
                };
                fs.op_readdir(nodeid, offset, &mut add)?;
            } else {
                let mut add = |ino, next, name: &str, ttl: &Duration, attr: &FileAttr| {
                    let looked = Looked {
                        attr: *attr,
                        attr_ttl: *ttl,
                        entry_ttl: *ttl,
                    };
                    let mut e = entry_out(&looked).to_vec();
                    e.extend(dirent(ino, next, attr.kind, name.as_bytes()));
                    !dir.put(&e)
                };
                fs.op_readdirplus(nodeid, offset, pid, &mut add)?;
            }
            out.len = dir.len;
            Ok(())
        }
        op::ACCESS => fs.op_access(nodeid, u32_at(op_in, 0).unwrap_or(0) as i32),
        op::IOCTL => Err(Errno::ENOTTY),
        // A read-only mount: nothing else is asked for, and what is, is not supported.
        _ => Err(Errno::ENOSYS),
    }
}

/// `fuse_entry_out`: the inode, no generation, the two lifetimes, the attributes.
fn entry_out(l: &Looked) -> [u8; 128] {
    let mut b = [0u8; 128];
    b[0..8].copy_from_slice(&l.attr.ino.0.to_le_bytes());
    b[16..24].copy_from_slice(&l.entry_ttl.as_secs().to_le_bytes());
    b[24..32].copy_from_slice(&l.attr_ttl.as_secs().to_le_bytes());
    b[32..36].copy_from_slice(&l.entry_ttl.subsec_nanos().to_le_bytes());
    b[36..40].copy_from_slice(&l.attr_ttl.subsec_nanos().to_le_bytes());
    b[40..].copy_from_slice(&fuse_attr(&l.attr));
    b
}

/// Seconds and nanoseconds since the epoch, negative before it.
fn time(t: SystemTime) -> (i64, u32) {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => (d.as_secs() as i64, d.subsec_nanos()),
        Err(e) => {
            let d = e.duration();
            match d.subsec_nanos() {
                0 => (-(d.as_secs() as i64), 0),
                n => (-(d.as_secs() as i64) - 1, 1_000_000_000 - n),
            }
        }
    }
}

fn mode_type(kind: FileType) -> u32 {
    match kind {
        FileType::NamedPipe => libc::S_IFIFO,
        FileType::CharDevice => libc::S_IFCHR,
        FileType::BlockDevice => libc::S_IFBLK,
        FileType::Directory => libc::S_IFDIR,
        FileType::RegularFile => libc::S_IFREG,
        FileType::Symlink => libc::S_IFLNK,
        FileType::Socket => libc::S_IFSOCK,
    }
}

/// `fuse_attr`.
fn fuse_attr(a: &FileAttr) -> [u8; 88] {
    let mut b = [0u8; 88];
    let (at, atn) = time(a.atime);
    let (mt, mtn) = time(a.mtime);
    let (ct, ctn) = time(a.ctime);
    let fields64 = [a.ino.0, a.size, a.blocks, at as u64, mt as u64, ct as u64];
    for (i, v) in fields64.iter().enumerate() {
        b[i * 8..i * 8 + 8].copy_from_slice(&v.to_le_bytes());
    }
    let fields32 = [
        atn,
        mtn,
        ctn,
        mode_type(a.kind) | u32::from(a.perm),
        a.nlink,
        a.uid,
        a.gid,
        a.rdev,
        a.blksize,
        a.flags,
    ];
    for (i, v) in fields32.iter().enumerate() {
        b[48 + i * 4..52 + i * 4].copy_from_slice(&v.to_le_bytes());
    }
    b
}

/// `fuse_dirent`, padded to 8 bytes.
fn dirent(ino: u64, next: u64, kind: FileType, name: &[u8]) -> Vec<u8> {
    let len = (24 + name.len()).next_multiple_of(8);
    let mut b = Vec::with_capacity(len);
    b.extend(ino.to_le_bytes());
    b.extend(next.to_le_bytes());
    b.extend((name.len() as u32).to_le_bytes());
    b.extend((mode_type(kind) >> 12).to_le_bytes());
    b.extend(name);
    b.resize(len, 0);
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_before_the_epoch_count_down_in_seconds_and_up_in_nanoseconds() {
        assert_eq!(time(UNIX_EPOCH + Duration::new(5, 7)), (5, 7));
        assert_eq!(time(UNIX_EPOCH - Duration::new(1, 0)), (-1, 0));
        assert_eq!(time(UNIX_EPOCH - Duration::new(0, 1)), (-1, 999_999_999));
    }

    #[test]
    fn dirents_are_padded_to_eight_bytes() {
        let d = dirent(7, 3, FileType::Directory, b"abc");
        assert_eq!(d.len(), 32);
        assert_eq!(u32_at(&d, 16), Some(3));
        assert_eq!(u32_at(&d, 20), Some(libc::DT_DIR as u32));
        assert_eq!(&d[24..27], b"abc");
    }
}
