//! `cairn mount`.

use std::{
    path::{Path, PathBuf},
    process::{ExitCode, Stdio},
    sync::Arc,
    time::Duration,
};

use anyhow::{bail, Context, Result};
use cairn_fuse::{
    fs::PinnedRoots,
    mount::{mount, MountOptions},
};
use cairn_store::Store;
use clap::Args;

#[derive(Args)]
pub struct MountArgs {
    /// Where to mount [default: ROOT/store]
    mountpoint: Option<PathBuf>,
    /// Detach and run in the background once the mount is ready (logs go to ROOT/mount.log)
    #[arg(long)]
    daemon: bool,
    #[command(flatten)]
    pub settings: MountSettings,
}

/// How the mount serves, for `cairn mount` and `cairn daemon` alike.
#[derive(Args, Clone)]
pub struct MountSettings {
    /// Let the kernel read single-block raw files straight from their block files (root only).
    /// Opens then cost a round trip each; without it opens are stateless.
    #[arg(long)]
    pub passthrough: bool,
    /// Memory for decoded, verified blocks, in MiB
    #[arg(long, default_value_t = 256, value_name = "MIB")]
    pub cache_mib: u64,
    /// FUSE worker threads; with io_uring queues, as many again for each online CPU's queue
    /// (at least 4, and about 256 in all past 16 CPUs)
    #[arg(long, default_value_t = 16)]
    pub threads: usize,
    /// Serve every request through /dev/fuse, not per-CPU io_uring queues. The queues need
    /// root, Linux 6.14+ and `echo 1 > /sys/module/fuse/parameters/enable_uring`; without
    /// them (or with --passthrough) the mount uses /dev/fuse anyway.
    #[arg(long)]
    pub no_uring: bool,
    /// Read-ahead window of the mount, in KiB (0 keeps the kernel's default)
    #[arg(long, default_value_t = 4096, value_name = "KIB")]
    pub read_ahead_kb: u32,
}

impl MountSettings {
    /// The mount's options: these settings, at `mountpoint`, listing `layout`'s pins.
    pub fn options(&self, layout: &cairn_store::Layout, mountpoint: &Path) -> MountOptions {
        MountOptions {
            passthrough: self.passthrough,
            cache_bytes: self.cache_mib << 20,
            threads: self.threads,
            read_ahead_kb: self.read_ahead_kb,
            pinned: pinned_roots(layout.clone()),
            uring: !self.no_uring,
            ..MountOptions::new(mountpoint)
        }
    }
}

/// `R/store/name/`, as `naming` resolves names.
pub fn names(naming: Arc<crate::naming::Naming>) -> cairn_fuse::fs::Names {
    cairn_fuse::fs::Names(Arc::new(crate::naming::MountNames(naming)))
}

/// Every pinned CID, for the listings of the mount root and the view roots.
fn pinned_roots(layout: cairn_store::Layout) -> PinnedRoots {
    PinnedRoots(Arc::new(move || match cairn_gc::pins::list(&layout) {
        Ok((pins, _)) => pins.into_iter().map(|p| p.cid).collect(),
        Err(e) => {
            log::warn!("listing pins: {e}");
            Vec::new()
        }
    }))
}

pub fn run(root: &Path, args: MountArgs) -> Result<ExitCode> {
    let ready = ready_pipe();
    let store = Arc::new(Store::open(root)?);
    let mountpoint = args
        .mountpoint
        .clone()
        .unwrap_or_else(|| store.layout().store());
    if args.daemon {
        return daemonize(root, &mountpoint, "--daemon", "mount.log");
    }
    // Signals are taken by one thread with sigwait; every thread started later inherits the mask.
    let signals = block_signals();
    store.open_reader();
    // Without a daemon, names are shown as the daemon last saw them.
    let naming = crate::naming::Naming::open(
        root,
        None,
        store.clone(),
        std::time::Duration::from_secs(30),
        Default::default(),
        None,
    )?;
    serve(
        root,
        store,
        &mountpoint,
        &args.settings,
        names(naming),
        signals,
        ready,
    )?;
    Ok(ExitCode::SUCCESS)
}

/// Mounts `src` at `mountpoint` and serves it until a signal in `signals` arrives (the
/// caller blocked them with [`block_signals`] before starting any thread). Says "mounted"
/// on stderr and on the `ready` pipe once the filesystem is up.
pub fn serve(
    root: &Path,
    src: Arc<dyn cairn_store::BlockSource>,
    mountpoint: &Path,
    settings: &MountSettings,
    names: cairn_fuse::fs::Names,
    signals: libc::sigset_t,
    ready: Option<std::fs::File>,
) -> Result<()> {
    let layout = cairn_store::Layout::new(root);
    let opts = MountOptions {
        names,
        ..settings.options(&layout, mountpoint)
    };
    if settings.passthrough && unsafe { libc::geteuid() } != 0 {
        log::warn!("--passthrough needs root; serving every read through cairn");
    }
    let mut mounted = mount(src, layout.blocks(), &opts)
        .with_context(|| format!("mounting {} at {}", root.display(), mountpoint.display()))?;
    match mounted.uring_threads() {
        0 => log::info!("serving through /dev/fuse"),
        n => log::info!("serving through io_uring: {n} threads, pinned to their CPUs' queues"),
    }
    let mut unmounter = mounted.unmounter();
    let mp = mountpoint.to_owned();
    let stopping = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop = stopping.clone();
    std::thread::spawn(move || {
        let sig = wait_signal(&signals);
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        log::info!("signal {sig}: unmounting {}", mp.display());
        if let Err(e) = unmounter.unmount() {
            log::warn!("unmount of {} failed ({e}); detaching it", mp.display());
            if let Ok(c) = std::ffi::CString::new(mp.as_os_str().as_encoded_bytes()) {
                // SAFETY: valid C string for the call.
                unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
            }
        }
    });
    eprintln!(
        "cairn: mounted {} at {}",
        root.display(),
        mountpoint.display()
    );
    // `--daemon`'s parent waits for this line on a pipe.
    if let Some(mut f) = ready {
        use std::io::Write;
        let _ = f.write_all(b"ready\n");
    }
    match mounted.run() {
        Ok(()) => {}
        // Unmounting while a FUSE thread is in the middle of a read of /dev/fuse can end
        // that read with ECONNABORTED (seen under load): after a stop we asked for, that is
        // the end we asked for, not an error.
        Err(e)
            if e.raw_os_error() == Some(libc::ECONNABORTED)
                && stopping.load(std::sync::atomic::Ordering::SeqCst) => {}
        Err(e) => return Err(e).context("serving the mount"),
    }
    eprintln!("cairn: unmounted {}", mountpoint.display());
    Ok(())
}

/// The pipe `--daemon`'s parent made for the "ready" line: `CAIRN_READY_FD=fd:inode`, taken
/// only if that descriptor is open, is a pipe, and is the pipe with that inode. A stale or
/// inherited value (a shell that exported it, a service manager) names no such pipe, and
/// adopting it would write to, then close, whatever that descriptor is now (`/dev/fuse`, a
/// socket). The variable is removed so that nothing this process starts inherits it.
pub fn ready_pipe() -> Option<std::fs::File> {
    use std::os::fd::FromRawFd;
    let value = std::env::var("CAIRN_READY_FD").ok()?;
    // Called before this process starts any thread.
    std::env::remove_var("CAIRN_READY_FD");
    let (fd, ino) = value.split_once(':')?;
    let (fd, ino) = (fd.parse::<i32>().ok()?, ino.parse::<u64>().ok()?);
    // SAFETY: fstat on any integer is safe; it fails with EBADF if it is not open.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if fd < 3 || unsafe { libc::fstat(fd, &mut st) } != 0 {
        log::warn!("CAIRN_READY_FD={value}: no such descriptor; ignored");
        return None;
    }
    if st.st_mode & libc::S_IFMT != libc::S_IFIFO || st.st_ino != ino {
        log::warn!("CAIRN_READY_FD={value}: not the pipe it names; ignored");
        return None;
    }
    // SAFETY: an open pipe, checked above, handed to us by our parent for this one line.
    Some(unsafe { std::fs::File::from_raw_fd(fd) })
}

/// Blocks the signals that stop the mount (SIGINT, SIGTERM, SIGHUP) in this thread and every
/// thread started after, for [`wait_signal`] to take. Must run before any other thread
/// starts: a thread started earlier (RocksDB's own, when the index is opened) has them
/// unblocked and takes them instead. With SIGINT ignored, as a script's background job
/// inherits it, Ctrl-C then did nothing; with a default action, SIGTERM killed the process
/// and left its mount behind.
///
/// SIGINT and SIGTERM are also set back to their defaults (blocked, the default never runs):
/// POSIX lets a signal whose disposition is "ignore" be discarded even while it is blocked
/// (Linux keeps it pending). An ignored SIGHUP is left ignored: that is what `nohup` asks for.
pub fn block_signals() -> libc::sigset_t {
    // SAFETY: plain libc signal-set manipulation on a local set; no other thread runs yet, so
    // changing dispositions races with nothing.
    unsafe {
        for s in [libc::SIGINT, libc::SIGTERM] {
            libc::signal(s, libc::SIG_DFL);
        }
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            libc::sigaddset(&mut set, s);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

/// Raises this process's soft limit on open files to its hard limit, and returns it. The
/// daemon holds a descriptor per peer connection (up to 1024), per control connection (up to
/// 256) and per FUSE queue, beside RocksDB's files: the usual soft limit of 1024 is too low.
pub fn raise_fd_limit() -> u64 {
    // SAFETY: getrlimit/setrlimit with a valid out-pointer.
    unsafe {
        let mut r: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) != 0 {
            return 0;
        }
        if r.rlim_cur < r.rlim_max {
            let want = libc::rlimit {
                rlim_cur: r.rlim_max,
                rlim_max: r.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
                return want.rlim_cur as u64;
            }
        }
        r.rlim_cur as u64
    }
}

pub fn wait_signal(set: &libc::sigset_t) -> i32 {
    let mut sig = 0;
    // SAFETY: `set` is initialised and `sig` a valid out-pointer.
    unsafe { libc::sigwait(set, &mut sig) };
    sig
}

/// Starts `cairn mount` again in its own session, in the background, and returns once the
/// filesystem is mounted (the child says so on a pipe) or the child failed.
pub fn daemonize(root: &Path, mountpoint: &Path, flag: &str, log_name: &str) -> Result<ExitCode> {
    use std::{io::Read, os::fd::FromRawFd, os::unix::process::CommandExt};
    let log_path = root.join(log_name);
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("opening {}", log_path.display()))?;
    let mut fds = [0i32; 2];
    // SAFETY: pipe2 writes two fds into the array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error()).context("creating a pipe");
    }
    let (read_fd, write_fd) = (fds[0], fds[1]);
    // SAFETY: both fds were just created and are owned here.
    let mut ready = unsafe { std::fs::File::from_raw_fd(read_fd) };
    let pipe_ino = {
        use std::os::unix::fs::MetadataExt;
        ready.metadata()?.ino()
    };
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != flag).collect();
    let mut cmd = std::process::Command::new(std::env::current_exe()?);
    cmd.args(&args)
        .env("CAIRN_ROOT", root)
        .env("CAIRN_READY_FD", format!("{write_fd}:{pipe_ino}"))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    // SAFETY: setsid and fcntl are async-signal-safe; the closure touches nothing else.
    unsafe {
        cmd.pre_exec(move || {
            libc::setsid();
            // Keep the write end open across exec in the child only.
            libc::fcntl(write_fd, libc::F_SETFD, 0);
            Ok(())
        });
    }
    let child = cmd.spawn().context("starting the background mount");
    // SAFETY: our copy of the write end; the child has its own.
    unsafe { libc::close(write_fd) };
    let mut child = child?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 6];
        let _ = tx.send(ready.read(&mut buf).map(|n| n > 0).unwrap_or(false));
    });
    match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(true) => {
            println!("{}", child.id());
            eprintln!(
                "cairn: mounted {} at {} (pid {}, log {})",
                root.display(),
                mountpoint.display(),
                child.id(),
                log_path.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Ok(false) => {
            let status = child.wait()?;
            bail!(
                "the background mount exited ({status}); see {}",
                log_path.display()
            )
        }
        Err(_) => {
            let _ = child.kill();
            bail!(
                "the mount did not come up within 30 s; see {}",
                log_path.display()
            )
        }
    }
}
