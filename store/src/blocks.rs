//! Block files: `R/blocks/{cid}`, one file per block, written atomically and read verified.
//!
//! A put writes the bytes to an unnamed file in `R/blocks` (`O_TMPFILE`) and then links it
//! under its name, so a crash at any instant leaves either no file or the whole block under its
//! final name. Filesystems without `O_TMPFILE` get the classic way: the bytes go to
//! `R/blocks/.tmp/{pid}-{n}`, which is renamed into place. Files are created read-only (0444). Nothing is fsynced per block: callers call [`FileBlocks::sync`] once
//! at the end of a batch (an `add`, a CAR import), which flushes the whole filesystem with
//! `syncfs(2)`. A power cut before that sync can leave a block file whose bytes never reached the
//! disk; reads then fail its hash check and `cairn verify` moves it aside, so nothing wrong is
//! ever served.

use std::{
    ffi::OsStr,
    fs::{self, File, OpenOptions},
    io::{self, Read, Write},
    os::{fd::AsRawFd, unix::fs::OpenOptionsExt},
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicU64, Ordering},
        OnceLock,
    },
    time::{Duration, SystemTime},
};

use bytes::Bytes;
use cid::Cid;

use crate::{block_name, hash, layout::Layout, parse_block_name, prefetch::Prefetcher, StoreError};

/// The largest block the store accepts (far above the 2 MiB Bitswap limit, well below memory).
pub const MAX_BLOCK_SIZE: usize = 8 << 20;

/// Room a caller's buffer must have for a block to be read with one `read` and no `fstat`
/// (see [`FileBlocks::get_into`]).
pub const ONE_READ_ROOM: usize = 16 << 10;

/// Block files under one root.
#[derive(Debug)]
pub struct FileBlocks {
    dir: PathBuf,
    staging: PathBuf,
    corrupt: PathBuf,
    /// Started by the first prefetch: most commands never ask for one.
    prefetcher: OnceLock<Prefetcher>,
}

static STAGING_SEQ: AtomicU64 = AtomicU64::new(0);

impl FileBlocks {
    pub fn new(layout: &Layout) -> Self {
        FileBlocks {
            dir: layout.blocks(),
            staging: layout.staging(),
            corrupt: layout.corrupt(),
            prefetcher: OnceLock::new(),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn path(&self, cid: &Cid) -> PathBuf {
        self.dir.join(block_name(cid))
    }

    /// True if the block's file exists. Identity CIDs are always present.
    pub fn has(&self, cid: &Cid) -> Result<bool, StoreError> {
        if cid.hash().code() == hash::IDENTITY {
            return Ok(true);
        }
        let path = self.path(cid);
        match fs::symlink_metadata(&path) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(StoreError::io(path, e)),
        }
    }

    /// Asks the kernel to start reading the block's file into the page cache
    /// (`POSIX_FADV_WILLNEED`), from a background thread: opening a file on a cold disk
    /// waits for its directory entry and inode. A missing block is ignored.
    pub fn prefetch(&self, cid: &Cid) {
        if cid.hash().code() == hash::IDENTITY {
            return;
        }
        self.prefetcher
            .get_or_init(|| Prefetcher::new(self.dir.clone()))
            .push(*cid);
    }

    /// The block's size on disk, if present (not verified).
    pub fn size(&self, cid: &Cid) -> Result<Option<u64>, StoreError> {
        if cid.hash().code() == hash::IDENTITY {
            return Ok(Some(cid.hash().digest().len() as u64));
        }
        let path = self.path(cid);
        match fs::symlink_metadata(&path) {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::io(path, e)),
        }
    }

    /// The block's bytes, checked against its hash. `Ok(None)` if absent.
    pub fn get(&self, cid: &Cid) -> Result<Option<Bytes>, StoreError> {
        // Room for a small block's one read (no fstat), given back once it is read.
        let mut bytes = Vec::with_capacity(ONE_READ_ROOM);
        if !self.get_into(cid, &mut bytes)? {
            return Ok(None);
        }
        bytes.shrink_to_fit();
        Ok(Some(Bytes::from(bytes)))
    }

    /// Appends the block's bytes, checked against its hash, to `out`; returns false if the
    /// block is absent. On any error `out` is left as it was. Readers that reuse one buffer
    /// avoid an allocation (and its page faults) per block, and can hash the bytes where they
    /// will be served from.
    pub fn get_into(&self, cid: &Cid, out: &mut Vec<u8>) -> Result<bool, StoreError> {
        if cid.hash().code() == hash::IDENTITY {
            out.extend_from_slice(cid.hash().digest());
            return Ok(true);
        }
        let path = self.path(cid);
        let mut file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(StoreError::io(path, e)),
        };
        let start = out.len();
        // Most blocks are small and most callers bring a buffer with room: one read into
        // that room finds the whole block when it comes back short (a short read of a
        // regular file is its end), without the fstat. A block that fills the room is read
        // on from there; one that fails its hash after a short read is read again whole
        // below before it is called corrupt.
        let mut have = 0u64;
        if out.capacity() - start >= ONE_READ_ROOM {
            let spare = out.spare_capacity_mut();
            let room = spare.len().min(MAX_BLOCK_SIZE + 1);
            // SAFETY: `spare` is valid for writes of `room` bytes, and read(2) writes at most
            // that many; the length is set to cover only the bytes it wrote.
            let n = unsafe { libc::read(file.as_raw_fd(), spare.as_mut_ptr().cast(), room) };
            if n >= 0 {
                // SAFETY: read(2) initialised the first `n` bytes of the spare capacity.
                unsafe { out.set_len(start + n as usize) };
                if (n as usize) < room {
                    if hash::verify(cid, &out[start..]).is_ok() {
                        return Ok(true);
                    }
                    out.truncate(start);
                    if let Err(e) = io::Seek::seek(&mut file, io::SeekFrom::Start(0)) {
                        return Err(StoreError::io(path, e));
                    }
                } else {
                    have = n as u64;
                }
            }
        }
        let read = file.metadata().and_then(|m| {
            if m.len() > MAX_BLOCK_SIZE as u64 {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{} bytes, more than any block", m.len()),
                ));
            }
            let rest = m.len().saturating_sub(have);
            out.reserve_exact(rest as usize);
            // Exactly the length fstat gave: no probe read for the end of the file. A file
            // that changed size meanwhile fails its hash.
            (&mut file).take(rest).read_to_end(out)
        });
        let checked = match read {
            Ok(_) => hash::verify(cid, &out[start..]),
            Err(e) => Err(StoreError::io(path, e)),
        };
        if let Err(e) = checked {
            out.truncate(start);
            return Err(e);
        }
        Ok(true)
    }

    /// The block's bytes as they are on disk, without checking them. For `verify`, for
    /// serving peers (who check every block they receive), and tests.
    pub fn get_unverified(&self, cid: &Cid) -> Result<Option<Bytes>, StoreError> {
        if cid.hash().code() == hash::IDENTITY {
            return Ok(Some(Bytes::copy_from_slice(cid.hash().digest())));
        }
        let path = self.path(cid);
        match fs::read(&path) {
            Ok(v) => Ok(Some(Bytes::from(v))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::io(path, e)),
        }
    }

    /// Writes a block atomically. The caller vouches that `data` hashes to `cid` (the importer
    /// and the CAR reader hash before they put). Returns false if it was already present.
    pub fn put(&self, cid: &Cid, data: &[u8]) -> Result<bool, StoreError> {
        self.put_parts(cid, &[data])
    }

    /// Like [`put`](Self::put), with the block given as consecutive parts (written with one
    /// `writev` where the kernel allows), so callers need not concatenate a header and a chunk.
    pub fn put_parts(&self, cid: &Cid, parts: &[&[u8]]) -> Result<bool, StoreError> {
        if cid.hash().code() == hash::IDENTITY {
            return Ok(false);
        }
        let size: usize = parts.iter().map(|p| p.len()).sum();
        if size > MAX_BLOCK_SIZE {
            return Err(StoreError::TooLarge {
                cid: *cid,
                size,
                max: MAX_BLOCK_SIZE,
            });
        }
        let dest = self.path(cid);
        if fs::symlink_metadata(&dest).is_ok() {
            return Ok(false);
        }
        match self.put_tmpfile(&dest, parts, size) {
            Ok(Some(linked)) => return Ok(linked),
            // No /proc to name the unnamed file by: stage it instead.
            Ok(None) => {}
            Err(e)
                if e.raw_os_error() == Some(libc::EOPNOTSUPP)
                    || e.raw_os_error() == Some(libc::EISDIR) => {}
            Err(e) => return Err(StoreError::io(&dest, e)),
        }
        let (tmp, mut file) = self.create_staging()?;
        let written = write_all_vectored(&mut file, parts).map(|()| start_writeback(&file, size));
        drop(file);
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(StoreError::io(&tmp, e));
        }
        if let Err(e) = fs::rename(&tmp, &dest) {
            let _ = fs::remove_file(&tmp);
            return Err(StoreError::io(&dest, e));
        }
        Ok(true)
    }

    /// The fast path: an unnamed file in `R/blocks` (`O_TMPFILE`), written, then given its
    /// name with `linkat`. It has no name until it is complete, a crash leaves nothing to clean
    /// up, and it takes one directory lock where staging and a cross-directory rename take
    /// three, one of them filesystem-wide. Returns false if the block appeared meanwhile, and
    /// `None` when the file cannot be linked because `/proc` is not mounted (the unnamed file
    /// is only reachable through `/proc/self/fd`, or through `AT_EMPTY_PATH`, which needs
    /// `CAP_DAC_READ_SEARCH`).
    fn put_tmpfile(&self, dest: &Path, parts: &[&[u8]], size: usize) -> io::Result<Option<bool>> {
        if !proc_mounted() {
            return Ok(None);
        }
        let mut file = OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_TMPFILE)
            .mode(0o444)
            .open(&self.dir)?;
        write_all_vectored(&mut file, parts)?;
        start_writeback(&file, size);
        let from =
            std::ffi::CString::new(format!("/proc/self/fd/{}", file.as_raw_fd())).expect("no NUL");
        let to = std::ffi::CString::new(dest.as_os_str().as_encoded_bytes())
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: two valid C strings for the duration of the call.
        let r = unsafe {
            libc::linkat(
                libc::AT_FDCWD,
                from.as_ptr(),
                libc::AT_FDCWD,
                to.as_ptr(),
                libc::AT_SYMLINK_FOLLOW,
            )
        };
        if r == 0 {
            return Ok(Some(true));
        }
        match io::Error::last_os_error() {
            e if e.kind() == io::ErrorKind::AlreadyExists => Ok(Some(false)),
            // /proc went away after the first look.
            e if e.kind() == io::ErrorKind::NotFound && !Path::new("/proc/self/fd").is_dir() => {
                Ok(None)
            }
            e => Err(e),
        }
    }

    fn create_staging(&self) -> Result<(PathBuf, File), StoreError> {
        loop {
            let n = STAGING_SEQ.fetch_add(1, Ordering::Relaxed);
            let tmp = self.staging.join(format!("{}-{n}", std::process::id()));
            match OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o444)
                .open(&tmp)
            {
                Ok(f) => return Ok((tmp, f)),
                // Left by an earlier process with our pid: it is dead, so the file is stale.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    let _ = fs::remove_file(&tmp);
                }
                Err(e) => return Err(StoreError::io(tmp, e)),
            }
        }
    }

    /// Deletes a block file. Returns false if it was not there.
    pub fn remove(&self, cid: &Cid) -> Result<bool, StoreError> {
        let path = self.path(cid);
        match fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(StoreError::io(path, e)),
        }
    }

    /// Moves a block file to `R/blocks/.corrupt/`, where it no longer answers for its CID.
    pub fn quarantine(&self, cid: &Cid) -> Result<PathBuf, StoreError> {
        let from = self.path(cid);
        let to = self.corrupt.join(block_name(cid));
        fs::rename(&from, &to).map_err(|e| StoreError::io(&from, e))?;
        Ok(to)
    }

    /// Every block file, by CID. Files whose names are not canonical CIDs are reported as
    /// errors, not skipped, so that `verify` can show them.
    pub fn iter(&self) -> Result<impl Iterator<Item = Result<Cid, (PathBuf, String)>>, StoreError> {
        let rd = fs::read_dir(&self.dir).map_err(|e| StoreError::io(&self.dir, e))?;
        Ok(rd.filter_map(|entry| {
            let entry = match entry {
                Ok(e) => e,
                Err(e) => return Some(Err((PathBuf::new(), e.to_string()))),
            };
            let name = entry.file_name();
            if name.as_encoded_bytes().first() == Some(&b'.') {
                return None;
            }
            Some(
                parse_name(&name)
                    .ok_or_else(|| (entry.path(), "not a canonical block name".to_string())),
            )
        }))
    }

    /// Removes staging files left by processes that died mid-write. Returns how many.
    pub fn clean_staging(&self) -> Result<usize, StoreError> {
        let rd = match fs::read_dir(&self.staging) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(StoreError::io(&self.staging, e)),
        };
        let mut removed = 0;
        let day = Duration::from_secs(24 * 3600);
        for entry in rd.flatten() {
            let name = entry.file_name();
            let pid = name
                .to_str()
                .and_then(|n| n.split('-').next())
                .and_then(|p| p.parse::<i32>().ok());
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .map(|t| SystemTime::now().duration_since(t).unwrap_or_default() > day)
                .unwrap_or(false);
            let dead = match pid {
                Some(pid) if pid == std::process::id() as i32 => false,
                Some(pid) => !process_alive(pid),
                None => true,
            };
            if (dead || old) && fs::remove_file(entry.path()).is_ok() {
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Flushes every block written so far to disk (`syncfs` on the blocks' filesystem).
    pub fn sync(&self) -> Result<(), StoreError> {
        let dir = File::open(&self.dir).map_err(|e| StoreError::io(&self.dir, e))?;
        // SAFETY: the fd is valid for the duration of the call.
        if unsafe { libc::syncfs(dir.as_raw_fd()) } != 0 {
            return Err(StoreError::io(&self.dir, io::Error::last_os_error()));
        }
        Ok(())
    }
}

/// True if `/proc/self/fd` can name this process's open files (looked at once; a `/proc`
/// unmounted later shows as `ENOENT` from `linkat`, which looks again).
fn proc_mounted() -> bool {
    static MOUNTED: OnceLock<bool> = OnceLock::new();
    *MOUNTED.get_or_init(|| Path::new("/proc/self/fd").is_dir())
}

fn parse_name(name: &OsStr) -> Option<Cid> {
    parse_block_name(name.to_str()?)
}

/// True if a process with this pid exists (it may belong to another user).
pub fn process_alive(pid: i32) -> bool {
    if pid <= 0 {
        return false;
    }
    // SAFETY: signal 0 only checks for existence and permission.
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// Starts writing a large block to disk now, so that the final sync has little left to wait
/// for. Small blocks are left to the final sync, which writes them in bulk.
fn start_writeback(file: &File, size: usize) {
    if size >= 128 << 10 {
        // SAFETY: the fd is valid for the duration of the call.
        unsafe {
            libc::sync_file_range(file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE);
        }
    }
}

fn write_all_vectored(file: &mut File, parts: &[&[u8]]) -> io::Result<()> {
    let mut bufs: Vec<io::IoSlice<'_>> = parts
        .iter()
        .filter(|p| !p.is_empty())
        .map(|p| io::IoSlice::new(p))
        .collect();
    let mut bufs = &mut bufs[..];
    while !bufs.is_empty() {
        match file.write_vectored(bufs) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => io::IoSlice::advance_slices(&mut bufs, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::HashAlg;

    fn blocks() -> (tempfile::TempDir, FileBlocks) {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        std::fs::create_dir_all(layout.blocks()).unwrap();
        let blocks = FileBlocks::new(&layout);
        (dir, blocks)
    }

    #[test]
    fn get_into_appends_verified_bytes_and_leaves_the_buffer_alone_otherwise() {
        let (_dir, blocks) = blocks();
        let data = b"a block read into a buffer it shares".to_vec();
        let cid = Cid::new_v1(0x55, HashAlg::Sha2_256.digest(&data));
        let mut out = b"prefix".to_vec();
        assert!(!blocks.get_into(&cid, &mut out).unwrap(), "absent");
        assert_eq!(out, b"prefix");

        blocks.put(&cid, &data).unwrap();
        assert!(blocks.get_into(&cid, &mut out).unwrap());
        assert_eq!(out, [&b"prefix"[..], &data].concat());

        let path = blocks.path(&cid);
        let mut bad = data.clone();
        bad[3] ^= 1;
        fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
        fs::write(&path, bad).unwrap();
        let mut out = b"prefix".to_vec();
        let err = blocks.get_into(&cid, &mut out).unwrap_err();
        assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
        assert_eq!(out, b"prefix");
    }

    /// With room in the buffer a block is read in one `read`: whole when it fits, with the
    /// prefix kept and a corrupt block refused as before; one larger than the room, or than
    /// the room after a prefix, is read whole too.
    #[test]
    fn a_buffer_with_room_reads_blocks_whole_in_one_read() {
        let (_dir, blocks) = blocks();
        for len in [
            0,
            1,
            5000,
            ONE_READ_ROOM - 7,
            ONE_READ_ROOM,
            3 * ONE_READ_ROOM + 1,
        ] {
            let data: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
            let cid = Cid::new_v1(0x55, HashAlg::Sha2_256.digest(&data));
            blocks.put(&cid, &data).unwrap();
            for room in [ONE_READ_ROOM, len + 1, len, 2 * ONE_READ_ROOM + 3] {
                let mut out = Vec::with_capacity(6 + room);
                out.extend_from_slice(b"prefix");
                assert!(blocks.get_into(&cid, &mut out).unwrap(), "{len} in {room}");
                assert_eq!(out, [&b"prefix"[..], &data].concat(), "{len} in {room}");
            }
            let path = blocks.path(&cid);
            if len > 0 {
                let mut bad = data.clone();
                bad[len / 2] ^= 1;
                fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o644))
                    .unwrap();
                fs::write(&path, bad).unwrap();
                let mut out = Vec::with_capacity(4 * ONE_READ_ROOM);
                out.extend_from_slice(b"prefix");
                let err = blocks.get_into(&cid, &mut out).unwrap_err();
                assert!(matches!(err, StoreError::Corrupt { .. }), "{len}: {err}");
                assert_eq!(out, b"prefix");
            }
        }
    }

    /// Pages of `path` in the page cache, by `mincore`.
    fn resident_pages(path: &Path) -> usize {
        let f = File::open(path).unwrap();
        let len = f.metadata().unwrap().len() as usize;
        // SAFETY: a private read-only mapping of an open file, unmapped before returning;
        // `vec` has one byte per page as mincore requires.
        unsafe {
            let p = libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_SHARED,
                f.as_raw_fd(),
                0,
            );
            assert_ne!(p, libc::MAP_FAILED);
            let mut vec = vec![0u8; len.div_ceil(4096)];
            assert_eq!(libc::mincore(p, len, vec.as_mut_ptr()), 0);
            libc::munmap(p, len);
            vec.iter().filter(|b| **b & 1 == 1).count()
        }
    }

    #[test]
    fn prefetch_brings_an_evicted_block_back_into_the_page_cache() {
        let (_dir, blocks) = blocks();
        let data: Vec<u8> = (0..1 << 20).map(|i| (i % 241) as u8).collect();
        let cid = Cid::new_v1(0x55, HashAlg::Sha2_256.digest(&data));
        blocks.put(&cid, &data).unwrap();
        blocks.sync().unwrap();
        let path = blocks.path(&cid);
        let f = File::open(&path).unwrap();
        // SAFETY: a valid fd for the duration of the call.
        unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
        if resident_pages(&path) > 0 {
            eprintln!("the kernel kept the pages (tmpfs?): nothing to show");
            return;
        }
        let missing = Cid::new_v1(0x55, HashAlg::Sha2_256.digest(b"not stored"));
        blocks.prefetch(&missing);
        blocks.prefetch(&cid);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while resident_pages(&path) < 256 {
            assert!(
                std::time::Instant::now() < deadline,
                "prefetched pages never arrived"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}
