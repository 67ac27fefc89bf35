//! Mounting: stale-mount cleanup, the FUSE session, read-ahead, clean unmount.

use std::{
    io,
    os::unix::ffi::OsStrExt,
    path::{Path, PathBuf},
    sync::Arc,
};

use cairn_store::BlockSource;
use fuser::{Config, MountOption, Session, SessionACL, SessionUnmounter};

use crate::{
    cache::NodeCache,
    fs::{CairnFs, FsOptions, PinnedRoots},
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
}

impl MountOptions {
    pub fn new(mountpoint: impl Into<PathBuf>) -> Self {
        MountOptions {
            mountpoint: mountpoint.into(),
            passthrough: false,
            cache_bytes: 256 << 20,
            threads: 16,
            read_ahead_kb: 4096,
            pinned: PinnedRoots::none(),
        }
    }
}

/// A mounted filesystem, not yet serving requests until [`Mounted::run`].
pub struct Mounted {
    session: Session<CairnFs>,
    mountpoint: PathBuf,
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
/// answers `statfs` with ENOTCONN (`stat` may still be answered from the kernel's cache).
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
    if err.raw_os_error() != Some(libc::ENOTCONN) {
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
        if e.raw_os_error() == Some(libc::ENOTCONN) || e.kind() == std::io::ErrorKind::AlreadyExists
        {
            Ok(())
        } else {
            Err(e)
        }
    })?;
    if clean_stale(&opts.mountpoint)? {
        log::warn!("detached a stale mount at {}", opts.mountpoint.display());
    }
    let root = is_root();
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
    let session = Session::new(fs, &opts.mountpoint, &cfg)?;
    if opts.read_ahead_kb > 0 {
        if let Err(e) = set_read_ahead(&opts.mountpoint, opts.read_ahead_kb) {
            log::warn!("could not set read_ahead_kb: {e}");
        }
    }
    Ok(Mounted {
        session,
        mountpoint: opts.mountpoint.clone(),
    })
}

impl Mounted {
    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    /// Something that unmounts the filesystem from another thread (a signal handler thread).
    pub fn unmounter(&mut self) -> SessionUnmounter {
        self.session.unmount_callable()
    }

    /// Serves requests until the filesystem is unmounted.
    pub fn run(self) -> io::Result<()> {
        self.session.run()
    }

    /// Serves requests on a background thread; dropping or `umount_and_join` unmounts.
    pub fn spawn(self) -> io::Result<fuser::BackgroundSession> {
        self.session.spawn()
    }
}
