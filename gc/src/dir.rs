//! Directories walked by file descriptor, so that nothing under `R/pins` or `R/profiles` is
//! ever reached through a symlink.
//!
//! A [`Dir`] is an open directory. Its subdirectories are opened relative to it with
//! `O_NOFOLLOW | O_DIRECTORY` (a symlink there fails with `ELOOP`), its entries are
//! classified by their own type (`d_type`, or `fstatat(AT_SYMLINK_NOFOLLOW)`), links are read
//! with `readlinkat` and names removed with `unlinkat`, all relative to the directory's
//! descriptor: renaming or replacing a directory on the path after it was opened changes
//! nothing about which directory the next call acts on.

use std::{
    collections::HashMap,
    ffi::{CStr, CString, OsStr, OsString},
    fs::File,
    io,
    os::{
        fd::{AsRawFd, FromRawFd, OwnedFd},
        unix::ffi::{OsStrExt, OsStringExt},
    },
    path::{Path, PathBuf},
    rc::Rc,
    time::{Duration, SystemTime},
};

use cairn_store::Cid;

/// What a directory entry is, by its own type (a symlink is a symlink, wherever it points).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Dir,
    Symlink,
    File,
    /// FIFO, socket, device.
    Other,
}

impl Kind {
    fn from_mode(mode: libc::mode_t) -> Kind {
        match mode & libc::S_IFMT {
            libc::S_IFDIR => Kind::Dir,
            libc::S_IFLNK => Kind::Symlink,
            libc::S_IFREG => Kind::File,
            _ => Kind::Other,
        }
    }

    /// How a report names it.
    pub(crate) fn describe(self) -> &'static str {
        match self {
            Kind::Dir => "a directory",
            Kind::Symlink => "a symlink",
            Kind::File => "a regular file",
            Kind::Other => "a FIFO, socket or device",
        }
    }
}

/// One entry of a directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub name: OsString,
    pub kind: Kind,
}

/// The parts of `stat` the walkers use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stat {
    pub kind: Kind,
    pub uid: u32,
    pub dev: u64,
    pub ino: u64,
    /// Changes with every entry added, removed or renamed (and cannot be set by users).
    pub ctime: (i64, i64),
}

impl Stat {
    fn from(st: &libc::stat) -> Stat {
        Stat {
            kind: Kind::from_mode(st.st_mode),
            uid: st.st_uid,
            dev: st.st_dev,
            ino: st.st_ino,
            ctime: (st.st_ctime, st.st_ctime_nsec),
        }
    }
}

/// An open directory and the path it was reached by (for messages only: every operation goes
/// through the descriptor).
#[derive(Debug)]
pub(crate) struct Dir {
    fd: OwnedFd,
    path: PathBuf,
}

fn cstr(name: &OsStr) -> io::Result<CString> {
    CString::new(name.as_bytes()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

/// Retries a call interrupted by a signal; -1 becomes the OS error.
fn cvt(mut f: impl FnMut() -> libc::c_int) -> io::Result<libc::c_int> {
    loop {
        let r = f();
        if r != -1 {
            return Ok(r);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// True for the errors `open_dir` gives when `name` is there but is not a directory (a
/// symlink gives `ELOOP` under `O_NOFOLLOW`).
pub(crate) fn not_a_dir(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ELOOP) | Some(libc::ENOTDIR))
}

impl Dir {
    /// Opens the directory at `path`. Only for the fixed top of a walk (the root `R`, which
    /// may itself be a link its owner made): everything below is opened with [`Dir::open_dir`].
    pub fn open_path(path: &Path) -> io::Result<Dir> {
        let c = cstr(path.as_os_str())?;
        // SAFETY: a valid NUL-terminated path; the fd is ours on success.
        let fd = cvt(|| unsafe {
            libc::open(
                c.as_ptr(),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        })?;
        Ok(Dir {
            // SAFETY: a fresh descriptor we own.
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
            path: path.to_owned(),
        })
    }

    /// Opens the subdirectory `name`, never through a symlink: a symlink, or anything else
    /// that is not a directory, fails (see [`not_a_dir`]).
    pub fn open_dir(&self, name: &OsStr) -> io::Result<Dir> {
        let fd = self.open_at(
            name,
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_NONBLOCK,
        )?;
        Ok(Dir {
            fd,
            path: self.path.join(name),
        })
    }

    /// `openat` of `name` relative to this directory, with `flags` and `O_CLOEXEC`.
    fn open_at(&self, name: &OsStr, flags: libc::c_int) -> io::Result<OwnedFd> {
        let c = cstr(name)?;
        // SAFETY: a valid fd and NUL-terminated name; the fd is ours on success.
        let fd = cvt(|| unsafe {
            libc::openat(self.fd.as_raw_fd(), c.as_ptr(), flags | libc::O_CLOEXEC)
        })?;
        // SAFETY: a fresh descriptor we own.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }

    /// The path this directory was reached by, for messages.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The path of `name` in this directory, for messages.
    pub fn join(&self, name: &OsStr) -> PathBuf {
        self.path.join(name)
    }

    /// The directory's own `stat` (of the open descriptor).
    pub fn stat(&self) -> io::Result<Stat> {
        fstat(&self.fd)
    }

    /// `stat` of the entry `name` itself (a symlink is not followed).
    pub fn stat_at(&self, name: &OsStr) -> io::Result<Stat> {
        let c = cstr(name)?;
        // SAFETY: zeroed stat is a valid out-buffer; valid fd and name.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        cvt(|| unsafe {
            libc::fstatat(
                self.fd.as_raw_fd(),
                c.as_ptr(),
                &mut st,
                libc::AT_SYMLINK_NOFOLLOW,
            )
        })?;
        Ok(Stat::from(&st))
    }

    /// Every entry but `.` and `..`, sorted by name. An entry that vanishes while being
    /// classified is left out.
    pub fn entries(&self) -> io::Result<Vec<Entry>> {
        // SAFETY: F_DUPFD_CLOEXEC on a valid fd; fdopendir takes the duplicate.
        let dup = cvt(|| unsafe { libc::fcntl(self.fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 0) })?;
        let dirp = unsafe { libc::fdopendir(dup) };
        if dirp.is_null() {
            let e = io::Error::last_os_error();
            // SAFETY: fdopendir failed, so `dup` is still ours to close.
            unsafe { libc::close(dup) };
            return Err(e);
        }
        struct Closer(*mut libc::DIR);
        impl Drop for Closer {
            fn drop(&mut self) {
                // SAFETY: a stream from fdopendir, closed once.
                unsafe { libc::closedir(self.0) };
            }
        }
        let dirp = Closer(dirp);
        // The duplicate shares the file offset with `self.fd`: start from the beginning.
        // SAFETY: a valid stream.
        unsafe { libc::rewinddir(dirp.0) };
        let mut out = Vec::new();
        loop {
            // readdir signals the end and errors alike with NULL; errno tells them apart.
            // SAFETY: errno is thread-local; the stream is valid.
            unsafe { *libc::__errno_location() = 0 };
            let ent = unsafe { libc::readdir(dirp.0) };
            if ent.is_null() {
                let e = io::Error::last_os_error();
                if e.raw_os_error().unwrap_or(0) != 0 {
                    return Err(e);
                }
                break;
            }
            // SAFETY: readdir returned a valid entry that lives until the next call.
            let (name, d_type) = unsafe {
                (
                    CStr::from_ptr((*ent).d_name.as_ptr()).to_bytes().to_vec(),
                    (*ent).d_type,
                )
            };
            if name == b"." || name == b".." {
                continue;
            }
            let name = OsString::from_vec(name);
            let kind = match d_type {
                libc::DT_DIR => Kind::Dir,
                libc::DT_LNK => Kind::Symlink,
                libc::DT_REG => Kind::File,
                libc::DT_UNKNOWN => match self.stat_at(&name) {
                    Ok(st) => st.kind,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(e),
                },
                _ => Kind::Other,
            };
            out.push(Entry { name, kind });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// The target of the symlink `name` (`EINVAL` if it is not one).
    pub fn read_link(&self, name: &OsStr) -> io::Result<PathBuf> {
        let c = cstr(name)?;
        let mut buf = vec![0u8; 4096];
        loop {
            // SAFETY: valid fd, name and buffer of the given length.
            let n = unsafe {
                libc::readlinkat(
                    self.fd.as_raw_fd(),
                    c.as_ptr(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            let n = n as usize;
            if n < buf.len() {
                buf.truncate(n);
                return Ok(PathBuf::from(OsString::from_vec(buf)));
            }
            // Possibly truncated: try a larger buffer.
            let len = buf.len() * 2;
            buf.resize(len, 0);
        }
    }

    /// Removes the entry `name` (not a directory) from this directory.
    pub fn unlink(&self, name: &OsStr) -> io::Result<()> {
        let c = cstr(name)?;
        // SAFETY: valid fd and name.
        cvt(|| unsafe { libc::unlinkat(self.fd.as_raw_fd(), c.as_ptr(), 0) }).map(drop)
    }

    /// Opens the entry `name` for reading without following a symlink (`ELOOP`) and without
    /// waiting for a FIFO's writer (`O_NONBLOCK`); the caller checks what it opened.
    pub fn open_file(&self, name: &OsStr) -> io::Result<File> {
        self.open_at(
            name,
            libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY,
        )
        .map(File::from)
    }

    /// Creates the subdirectory `name` with `mode` (before the umask).
    pub fn mkdir(&self, name: &OsStr, mode: libc::mode_t) -> io::Result<()> {
        let c = cstr(name)?;
        // SAFETY: valid fd and name.
        cvt(|| unsafe { libc::mkdirat(self.fd.as_raw_fd(), c.as_ptr(), mode) }).map(drop)
    }

    /// Sets this directory's permission bits.
    pub fn chmod(&self, mode: libc::mode_t) -> io::Result<()> {
        // SAFETY: valid fd.
        cvt(|| unsafe { libc::fchmod(self.fd.as_raw_fd(), mode) }).map(drop)
    }

    /// Creates the symlink `name` -> `target` in this directory.
    pub fn symlink(&self, target: &Path, name: &OsStr) -> io::Result<()> {
        let (t, c) = (cstr(target.as_os_str())?, cstr(name)?);
        // SAFETY: valid fd and NUL-terminated strings.
        cvt(|| unsafe { libc::symlinkat(t.as_ptr(), self.fd.as_raw_fd(), c.as_ptr()) }).map(drop)
    }

    /// Renames `from` to `to`, both in this directory, replacing `to`.
    pub fn rename(&self, from: &OsStr, to: &OsStr) -> io::Result<()> {
        let (f, t) = (cstr(from)?, cstr(to)?);
        let fd = self.fd.as_raw_fd();
        // SAFETY: valid fd and NUL-terminated names.
        cvt(|| unsafe { libc::renameat(fd, f.as_ptr(), fd, t.as_ptr()) }).map(drop)
    }
}

/// `stat` of an open file.
pub(crate) fn fstat(f: &impl AsRawFd) -> io::Result<Stat> {
    // SAFETY: zeroed stat is a valid out-buffer; valid fd.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    cvt(|| unsafe { libc::fstat(f.as_raw_fd(), &mut st) })?;
    Ok(Stat::from(&st))
}

/// The uid of the user called `name` (a name that is a number and no user's name is that
/// uid, as `pins::current_user` spells users without a passwd entry).
pub(crate) fn uid_of(name: &str) -> Option<u32> {
    let c = CString::new(name).ok()?;
    let mut buf = vec![0 as libc::c_char; 4096];
    loop {
        // SAFETY: getpwnam_r with buffers we own; the result points into them.
        let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
        let mut out: *mut libc::passwd = std::ptr::null_mut();
        let r =
            unsafe { libc::getpwnam_r(c.as_ptr(), &mut pw, buf.as_mut_ptr(), buf.len(), &mut out) };
        if r == libc::ERANGE && buf.len() < 1 << 20 {
            let len = buf.len() * 4;
            buf.resize(len, 0);
            continue;
        }
        if r == 0 && !out.is_null() {
            return Some(pw.pw_uid);
        }
        return name.parse().ok();
    }
}

/// This process's effective uid.
pub(crate) fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() }
}

/// One entry of a cached listing: a symlink's target is read with the listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Listed {
    pub name: OsString,
    pub kind: Kind,
    /// The target of a symlink (`None` for anything else, or a link that vanished).
    pub target: Option<PathBuf>,
    /// The CID the target names ([`crate::pins::cid_in_path`]), parsed once per listing.
    pub target_cid: Option<Cid>,
}

/// How long a directory must have been unchanged before a listing of it may be reused: a
/// change made in the same clock tick as our read could leave its `ctime` as we saw it.
const SETTLED: Duration = Duration::from_secs(1);

struct Cached {
    dev: u64,
    ino: u64,
    ctime: (i64, i64),
    /// The directory had not changed for [`SETTLED`] when it was read.
    settled: bool,
    listing: Rc<[Listed]>,
    walk: u64,
}

/// Listings of directories, re-read only when a directory changed. A directory's `ctime`
/// changes whenever an entry is added, removed or renamed in it (including a symlink replaced
/// by `rename`), and no user can set it back; so the same directory (device and inode) with
/// the same `ctime` has the same entries and the same link targets, once its last change is
/// old enough that a later one could not share its timestamp.
pub(crate) struct DirCache {
    dirs: HashMap<PathBuf, Cached>,
    walk: u64,
    settle: Duration,
}

impl Default for DirCache {
    fn default() -> Self {
        DirCache {
            dirs: HashMap::new(),
            walk: 0,
            settle: SETTLED,
        }
    }
}

fn since_epoch(t: (i64, i64)) -> Option<Duration> {
    let secs = u64::try_from(t.0).ok()?;
    let nanos = u32::try_from(t.1).ok()?;
    Some(Duration::new(secs, nanos))
}

impl DirCache {
    /// Starts a walk: listings not used by the walk are forgotten at its [`DirCache::end`].
    pub fn begin(&mut self) {
        self.walk += 1;
    }

    /// Forgets the directories the last walk did not visit.
    pub fn end(&mut self) {
        let walk = self.walk;
        self.dirs.retain(|_, c| c.walk == walk);
    }

    /// The entries of `dir` (whose `stat` is `st`), and whether they were read just now
    /// (`false`: the directory is unchanged since the listing returned before).
    pub fn list(&mut self, dir: &Dir, st: &Stat) -> io::Result<(Rc<[Listed]>, bool)> {
        if let Some(c) = self.dirs.get_mut(dir.path()) {
            if c.settled && c.dev == st.dev && c.ino == st.ino && c.ctime == st.ctime {
                c.walk = self.walk;
                return Ok((c.listing.clone(), false));
            }
        }
        let read_at = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        let mut listing = Vec::new();
        for e in dir.entries()? {
            let target = match e.kind {
                Kind::Symlink => match dir.read_link(&e.name) {
                    Ok(t) => Some(t),
                    // Gone or replaced since the listing: the directory changed, so the next
                    // walk reads it again.
                    Err(e)
                        if matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::EINVAL)) =>
                    {
                        None
                    }
                    Err(err) => return Err(err),
                },
                _ => None,
            };
            listing.push(Listed {
                name: e.name,
                kind: e.kind,
                target_cid: target.as_deref().and_then(crate::pins::cid_in_path),
                target,
            });
        }
        let listing: Rc<[Listed]> = listing.into();
        let settled = since_epoch(st.ctime).is_some_and(|c| c + self.settle <= read_at);
        self.dirs.insert(
            dir.path().to_owned(),
            Cached {
                dev: st.dev,
                ino: st.ino,
                ctime: st.ctime,
                settled,
                listing: listing.clone(),
                walk: self.walk,
            },
        );
        Ok((listing, true))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(l: &[Listed]) -> Vec<&str> {
        l.iter().map(|e| e.name.to_str().unwrap()).collect()
    }

    #[test]
    fn entries_are_typed_by_themselves_and_links_are_not_followed() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir(t.path().join("d")).unwrap();
        std::fs::write(t.path().join("f"), "x").unwrap();
        std::os::unix::fs::symlink(t.path().join("d"), t.path().join("l")).unwrap();
        let d = Dir::open_path(t.path()).unwrap();
        let kinds: Vec<(String, Kind)> = d
            .entries()
            .unwrap()
            .into_iter()
            .map(|e| (e.name.into_string().unwrap(), e.kind))
            .collect();
        assert_eq!(
            kinds,
            [
                ("d".into(), Kind::Dir),
                ("f".into(), Kind::File),
                ("l".into(), Kind::Symlink)
            ]
        );
        assert!(d.open_dir(OsStr::new("d")).is_ok());
        let e = d.open_dir(OsStr::new("l")).unwrap_err();
        assert!(not_a_dir(&e), "{e}");
        assert!(d.open_file(OsStr::new("l")).is_err());
        assert_eq!(d.read_link(OsStr::new("l")).unwrap(), t.path().join("d"));
    }

    #[test]
    fn a_fifo_opens_without_waiting() {
        let t = tempfile::tempdir().unwrap();
        let c = CString::new(t.path().join("p").into_os_string().into_vec()).unwrap();
        // SAFETY: a valid path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
        let d = Dir::open_path(t.path()).unwrap();
        let f = d.open_file(OsStr::new("p")).unwrap();
        assert_eq!(fstat(&f).unwrap().kind, Kind::Other);
    }

    #[test]
    fn an_unchanged_settled_directory_is_not_read_again() {
        let t = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("a", t.path().join("one")).unwrap();
        let d = Dir::open_path(t.path()).unwrap();
        let mut cache = DirCache {
            settle: Duration::ZERO,
            ..DirCache::default()
        };
        let (l, fresh) = cache.list(&d, &d.stat().unwrap()).unwrap();
        assert!(fresh);
        assert_eq!(names(&l), ["one"]);
        assert_eq!(l[0].target.as_deref(), Some(Path::new("a")));
        let (_, fresh) = cache.list(&d, &d.stat().unwrap()).unwrap();
        assert!(!fresh);
    }

    #[test]
    fn a_recently_changed_directory_is_always_read_again() {
        let t = tempfile::tempdir().unwrap();
        let d = Dir::open_path(t.path()).unwrap();
        let mut cache = DirCache::default();
        let (l, _) = cache.list(&d, &d.stat().unwrap()).unwrap();
        assert!(l.is_empty());
        // Possibly within the same clock tick as the listing: its ctime may not change.
        std::os::unix::fs::symlink("b", t.path().join("two")).unwrap();
        let (l, fresh) = cache.list(&d, &d.stat().unwrap()).unwrap();
        assert!(fresh);
        assert_eq!(names(&l), ["two"]);
    }
}
