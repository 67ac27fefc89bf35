//! Mounting: stale-mount cleanup, the FUSE session, read-ahead, clean unmount.

use std::{
    io,
    os::unix::ffi::OsStrExt,
    path::{Path, PathBuf},
    sync::Arc,
};

use cairn_store::BlockSource;
use fuser::{Config, MountOption, Session, SessionACL, SessionUnmounter};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use crate::{
    cache::NodeCache,
    fs::{CairnFs, FsOptions, Names, PinnedRoots},
    view,
};

/// How to mount.
#[derive(Debug, Clone)]
pub struct MountOptions {
    pub mountpoint: PathBuf,
    /// FUSE passthrough for single-block raw files (root only; opens then cost a round trip).
    pub passthrough: bool,
    /// Memory for decoded, verified blocks.
    pub cache_bytes: u64,
    /// FUSE worker threads.
    pub threads: usize,
    /// The mount's read-ahead window (`read_ahead_kb` of its bdi); 0 leaves the default.
    pub read_ahead_kb: u32,
    /// What the root and the view roots list besides the views.
    pub pinned: PinnedRoots,
    /// What `R/store/name/` shows.
    pub names: Names,
    /// Serve requests through per-CPU io_uring queues when the kernel allows it (root only;
    /// not with passthrough): see [`crate::uring`].
    pub uring: bool,
}

impl MountOptions {
    /// Whether the mount will ask for io_uring queues: asked for, as root, without
    /// passthrough, on a kernel that has them switched on.
    pub fn wants_uring(&self) -> bool {
        self.uring && is_root() && !self.passthrough && crate::uring::enabled()
    }

    pub fn new(mountpoint: impl Into<PathBuf>) -> Self {
        MountOptions {
            mountpoint: mountpoint.into(),
            passthrough: false,
            cache_bytes: 256 << 20,
            threads: 16,
            read_ahead_kb: 4096,
            pinned: PinnedRoots::none(),
            names: Names::none(),
            uring: true,
        }
    }
}

/// A mounted filesystem, not yet serving requests until [`Mounted::run`].
pub struct Mounted {
    session: Session<CairnFs>,
    mountpoint: PathBuf,
    /// Mounted by cairn itself (for io_uring), not by fuser: unmounted by path.
    own_mount: bool,
    queues: Option<crate::uring::Queues>,
}

/// Unmounts a [`Mounted`] from another thread.
pub enum Unmounter {
    Fuser(SessionUnmounter),
    Path(PathBuf),
}

impl Unmounter {
    pub fn unmount(&mut self) -> io::Result<()> {
        match self {
            Unmounter::Fuser(u) => u.unmount(),
            Unmounter::Path(p) => {
                let c = c_path(p)?;
                // SAFETY: a valid C string for the call.
                if unsafe { libc::umount(c.as_ptr()) } != 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            }
        }
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn c_path(p: &Path) -> io::Result<std::ffi::CString> {
    std::ffi::CString::new(p.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"))
}

/// If a dead cairn (or any FUSE daemon) left its mount at `mountpoint`, detaches it and
/// returns true. Fails if a live FUSE filesystem is mounted there. A dead daemon's mount
/// answers `statfs` with one of [`is_stale_errno`]'s errors (`stat` may still be answered
/// from the kernel's cache).
pub fn clean_stale(mountpoint: &Path) -> io::Result<bool> {
    if !is_mounted(mountpoint) {
        return Ok(false);
    }
    let c = c_path(mountpoint)?;
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: valid C string and out-pointer.
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } == 0 {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!(
                "a FUSE filesystem is already mounted at {}",
                mountpoint.display()
            ),
        ));
    }
    let err = io::Error::last_os_error();
    if !is_stale_errno(err.raw_os_error()) {
        return Err(err);
    }
    // SAFETY: `c` is a valid C string for the duration of the call.
    if unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) } != 0 {
        let err = io::Error::last_os_error();
        // Not root: let fusermount3 do it.
        let ok = std::process::Command::new("fusermount3")
            .arg("-u")
            .arg("-z")
            .arg(mountpoint)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            return Err(io::Error::new(
                err.kind(),
                format!(
                    "{} is a stale mount and could not be detached: {err}",
                    mountpoint.display()
                ),
            ));
        }
    }
    Ok(true)
}

/// True if a FUSE filesystem is mounted at `path`, from `/proc/self/mountinfo` (asking the
/// filesystem itself could block on a daemon that is not answering).
/// What a FUSE mount whose server is gone answers: ENOTCONN; with io_uring queues
/// registered on it, ECONNABORTED once its connection is aborted, and ECANCELED for a
/// request caught while its queues are torn down.
pub fn is_stale_errno(errno: Option<i32>) -> bool {
    matches!(
        errno,
        Some(libc::ENOTCONN) | Some(libc::ECONNABORTED) | Some(libc::ECANCELED)
    )
}

/// How many threads of one pool may wait for the network at once, leaving the rest to
/// answer for what is here: of the `/dev/fuse` threads (pool 0) all but 4, of each io_uring
/// queue's threads all but 2.
pub fn network_waiters(opts: &MountOptions) -> (usize, usize) {
    let dev_fuse = opts.threads.saturating_sub(4).max(1);
    (dev_fuse, crate::uring::threads_per_queue(opts.threads) - 2)
}

pub fn is_mounted(path: &Path) -> bool {
    mount_dev(path).is_ok_and(|m| m.fstype.starts_with("fuse"))
}

/// The mount ID of the FUSE filesystem mounted at `path`, if one is: it tells a new mount
/// from a stale one at the same place (device numbers are reused, mount IDs are not soon).
pub fn mounted_device(path: &Path) -> Option<String> {
    mount_dev(path)
        .ok()
        .filter(|m| m.fstype.starts_with("fuse"))
        .map(|m| m.id)
}

struct MountInfo {
    id: String,
    dev: String,
    fstype: String,
}

/// What `/proc/self/mountinfo` says of the mount at `path` (the last one mounted there).
fn mount_dev(path: &Path) -> io::Result<MountInfo> {
    let want = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
    let info = std::fs::read_to_string("/proc/self/mountinfo")?;
    // Fields: id parent major:minor root mountpoint options ... - fstype source super.
    info.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let dash = f.iter().position(|x| *x == "-")?;
            (f.len() > dash + 1 && Path::new(&unescape(f[4])) == want).then(|| MountInfo {
                id: f[0].to_owned(),
                dev: f[2].to_owned(),
                fstype: f[dash + 1].to_owned(),
            })
        })
        .next_back()
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "not a mount point"))
}

/// Sets the read-ahead window of the filesystem mounted at `path`. The device number comes
/// from `/proc/self/mountinfo`, not from `stat`: the filesystem may not be serving yet.
pub fn set_read_ahead(path: &Path, kb: u32) -> io::Result<()> {
    let m = mount_dev(path)?;
    std::fs::write(
        format!("/sys/class/bdi/{}/read_ahead_kb", m.dev),
        kb.to_string(),
    )
}

/// mountinfo escapes spaces, tabs, newlines and backslashes as octal.
fn unescape(s: &str) -> String {
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 4], 8) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Mounts `src` read-only at `opts.mountpoint`. `blocks_dir` is the store's `R/blocks`
/// (`statfs` reports its filesystem; passthrough opens block files there). The source may be
/// the local [`Store`](cairn_store::Store) or anything in front of it, such as the network.
pub fn mount(
    src: Arc<dyn BlockSource>,
    blocks_dir: PathBuf,
    opts: &MountOptions,
) -> io::Result<Mounted> {
    std::fs::create_dir_all(&opts.mountpoint).or_else(|e| {
        // On a stale mountpoint this fails (ENOTCONN, or EEXIST from mkdir); clean_stale
        // deals with it next.
        if is_stale_errno(e.raw_os_error()) || e.kind() == std::io::ErrorKind::AlreadyExists {
            Ok(())
        } else {
            Err(e)
        }
    })?;
    if clean_stale(&opts.mountpoint)? {
        log::warn!("detached a stale mount at {}", opts.mountpoint.display());
    }
    let root = is_root();
    let want_uring = opts.wants_uring();
    let fs = CairnFs::new(
        view::registry(),
        NodeCache::new(src, opts.cache_bytes),
        FsOptions {
            passthrough: opts.passthrough && root,
            // SAFETY: getuid/getgid have no preconditions.
            uid: unsafe { libc::getuid() },
            gid: unsafe { libc::getgid() },
            blocks_dir,
            pinned: opts.pinned.clone(),
            names: opts.names.clone(),
        },
    );
    let mut cfg = Config::default();
    cfg.mount_options = vec![
        MountOption::RO,
        MountOption::FSName("cairn".into()),
        MountOption::Subtype("cairn".into()),
        MountOption::NoAtime,
        // Content comes from strangers: a setuid bit or a device node in it must never
        // give anyone more than reading it gives.
        MountOption::NoSuid,
        MountOption::NoDev,
    ];
    if root {
        cfg.mount_options.push(MountOption::DefaultPermissions);
        cfg.acl = SessionACL::All;
    }
    cfg.n_threads = Some(opts.threads.max(1));
    cfg.clone_fd = true;
    let (session, queues, own_mount) = if want_uring {
        let per_queue = crate::uring::threads_per_queue(opts.threads);
        let (session, queues) = mount_own(fs, &opts.mountpoint, cfg, per_queue)?;
        (session, queues, true)
    } else {
        (Session::new(fs, &opts.mountpoint, &cfg)?, None, false)
    };
    if opts.read_ahead_kb > 0 {
        if let Err(e) = set_read_ahead(&opts.mountpoint, opts.read_ahead_kb) {
            log::warn!("could not set read_ahead_kb: {e}");
        }
    }
    Ok(Mounted {
        session,
        mountpoint: opts.mountpoint.clone(),
        own_mount,
        queues,
    })
}

/// Mounts as root with `mount(2)` on a `/dev/fuse` descriptor of cairn's own (fuser keeps
/// its descriptor to itself, and the io_uring queues need one), makes the queues (before
/// INIT, which asks for them only if they could all be made), and does the INIT handshake.
/// Returns the session and the queues, registering, if the kernel agreed.
fn mount_own(
    fs: CairnFs,
    mountpoint: &Path,
    cfg: Config,
    per_queue: usize,
) -> io::Result<(Session<CairnFs>, Option<crate::uring::Queues>)> {
    // SAFETY: a valid C string; the descriptor is checked and then owned.
    let raw = unsafe { libc::open(c"/dev/fuse".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` was just opened and is owned by nothing else.
    let dev = unsafe { OwnedFd::from_raw_fd(raw) };
    let data = std::ffi::CString::new(format!(
        "fd={},rootmode=40000,user_id={},group_id={},default_permissions,allow_other",
        dev.as_raw_fd(),
        // SAFETY: getuid/getgid have no preconditions.
        unsafe { libc::getuid() },
        unsafe { libc::getgid() },
    ))
    .expect("no NUL");
    let target = c_path(mountpoint)?;
    let flags = libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOATIME;
    // SAFETY: valid C strings for the call.
    let r = unsafe {
        libc::mount(
            c"cairn".as_ptr(),
            target.as_ptr(),
            c"fuse.cairn".as_ptr(),
            flags,
            data.as_ptr().cast(),
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    let queues = dev.try_clone().and_then(|ring_dev| {
        crate::uring::Queues::prepare(fs.clone(), ring_dev, per_queue, crate::fs::MAX_REQUEST)
    });
    let queues = match queues {
        Ok(q) => Some(q),
        Err(e) => {
            log::warn!("FUSE over io_uring: {e}; serving through /dev/fuse");
            None
        }
    };
    fs.offer_uring(queues.is_some());
    match Session::from_fd(fs.clone(), dev, SessionACL::All, cfg) {
        Ok(session) => {
            let agreed = fs.uring_agreed();
            let queues = queues.and_then(|q| {
                q.go(agreed);
                if agreed {
                    Some(q)
                } else {
                    q.join(std::time::Duration::from_secs(5));
                    None
                }
            });
            Ok((session, queues))
        }
        Err(e) => {
            if let Some(q) = queues {
                q.join(std::time::Duration::from_secs(5));
            }
            // SAFETY: a valid C string for the call.
            unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
            Err(e)
        }
    }
}

impl Mounted {
    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    /// How many threads serve io_uring queues (0: every request comes through `/dev/fuse`).
    pub fn uring_threads(&self) -> usize {
        self.queues.as_ref().map_or(0, |q| q.len())
    }

    /// Something that unmounts the filesystem from another thread (a signal handler thread).
    pub fn unmounter(&mut self) -> Unmounter {
        if self.own_mount {
            Unmounter::Path(self.mountpoint.clone())
        } else {
            Unmounter::Fuser(self.session.unmount_callable())
        }
    }

    /// Serves requests until the filesystem is unmounted, and until the io_uring queues'
    /// threads have ended too (at most a minute).
    pub fn run(self) -> io::Result<()> {
        let served = self.session.run();
        if let Some(queues) = self.queues {
            queues.join(std::time::Duration::from_secs(60));
        }
        served
    }
}
