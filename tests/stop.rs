//! Stopping cleanly, for every user: a daemon or a mount run by an unprivileged user and
//! stopped by SIGTERM or SIGINT leaves no mount behind (the next reader would get ENOTCONN),
//! even when it was started in the background by a script, which hands it SIGINT ignored; a
//! mount left by `kill -9` is detached by the next start.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use crate::util::{eventually, reachable_bin, Root};

/// True if `/proc/mounts` lists something at `p`.
fn mounted(p: &Path) -> bool {
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
    let p = p.to_string_lossy();
    mounts.lines().any(|l| l.split(' ').nth(1) == Some(&*p))
}

fn alive(pid: u32) -> bool {
    // Not our child (its shell exited): gone when /proc says so, or a zombie.
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        !s.rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z')
    })
}

/// Starts `cairn ARGS` as nobody, in the background of a non-interactive `sh` (which hands it
/// SIGINT and SIGQUIT ignored), logging to `log`; returns its pid.
fn start_as_nobody(root: &Path, args: &str, log: &Path) -> u32 {
    let bin = reachable_bin(root.parent().unwrap());
    let script = format!(
        "'{}' --root '{}' {args} >>'{}' 2>&1 & echo $!",
        bin.display(),
        root.display(),
        log.display()
    );
    let out = Command::new("setpriv")
        .args(["--reuid", "nobody", "--regid", "nogroup", "--clear-groups"])
        .args(["sh", "-c", &script])
        .env("RUST_LOG", "info")
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

/// The premise: a background job of a non-interactive `sh` starts with SIGINT ignored (cairn
/// sets it back at once, so this looks at another job of the same kind).
fn assert_background_jobs_ignore_sigint() {
    let out = Command::new("sh")
        .args(["-c", "grep SigIgn /proc/self/status & wait"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let ign = text
        .trim()
        .strip_prefix("SigIgn:")
        .map(|v| u64::from_str_radix(v.trim(), 16).unwrap_or(0))
        .unwrap_or(0);
    assert!(
        ign & (1 << (libc::SIGINT - 1)) != 0,
        "SIGINT is not ignored: {text}"
    );
}

/// Whatever a failed test leaves behind: the processes it started (not children of the test:
/// their shell exited) and their mount.
struct Leftovers {
    pids: Vec<u32>,
    store: PathBuf,
}

impl Drop for Leftovers {
    fn drop(&mut self) {
        for pid in &self.pids {
            if alive(*pid) {
                // SAFETY: signalling a process this test started.
                unsafe { libc::kill(*pid as i32, libc::SIGKILL) };
            }
        }
        if mounted(&self.store) {
            let _ = Command::new("umount").arg("-l").arg(&self.store).status();
        }
    }
}

/// A root that belongs to nobody, in a directory nobody can reach.
fn nobodys_root() -> (Root, PathBuf) {
    use std::os::unix::fs::PermissionsExt;
    let root = Root::new();
    std::fs::set_permissions(root.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let st = Command::new("chown")
        .args(["-R", "65534:65534"])
        .arg(root.path())
        .status()
        .unwrap();
    assert!(st.success());
    let log = root.dir.path().join("log");
    std::fs::write(&log, b"").unwrap();
    std::fs::set_permissions(&log, std::fs::Permissions::from_mode(0o666)).unwrap();
    (root, log)
}

/// Starts, waits for the mount, sends `sig`, and checks that the process ends within 10 s
/// with nothing left mounted.
fn start_and_stop(root: &Path, args: &str, log: &Path, sig: i32, left: &mut Leftovers) {
    let store = root.join("store");
    let before = std::fs::read_to_string(log).unwrap().len();
    let pid = start_as_nobody(root, args, log);
    left.pids.push(pid);
    eventually(30, "the mount comes up", || {
        std::fs::read_to_string(log).unwrap()[before..].contains("cairn: mounted")
    });
    assert!(mounted(&store));
    // SAFETY: signalling a process this test started.
    unsafe { libc::kill(pid as i32, sig) };
    let t = Instant::now();
    while alive(pid) {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "{args}: still running 10 s after signal {sig}: {}",
            std::fs::read_to_string(log).unwrap()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let said = std::fs::read_to_string(log).unwrap()[before..].to_owned();
    assert!(
        !mounted(&store),
        "{args}: signal {sig} left {} mounted: {said}",
        store.display()
    );
    assert!(said.contains("cairn: unmounted"), "{args}: {said}");
}

/// `cairn daemon` as nobody: SIGTERM, then SIGINT (ignored by the shell that started it), each
/// time unmounted; then `kill -9`, whose stale mount the next start detaches.
#[test]
fn an_unprivileged_daemon_unmounts_on_every_stop() {
    assert_background_jobs_ignore_sigint();
    let (root, log) = nobodys_root();
    let r = root.path();
    let mut left = Leftovers {
        pids: Vec::new(),
        store: r.join("store"),
    };
    let daemon = "daemon --listen /ip4/127.0.0.1/tcp/0 --no-mdns --no-dht";
    start_and_stop(&r, daemon, &log, libc::SIGTERM, &mut left);
    start_and_stop(&r, daemon, &log, libc::SIGINT, &mut left);
    let pid = start_as_nobody(&r, daemon, &log);
    left.pids.push(pid);
    eventually(30, "the mount comes up", || mounted(&r.join("store")));
    // SAFETY: as above.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    eventually(10, "the daemon dies", || !alive(pid));
    assert!(
        mounted(&r.join("store")),
        "kill -9 leaves the mount (stale)"
    );
    start_and_stop(&r, daemon, &log, libc::SIGTERM, &mut left);
}

/// `cairn mount` as nobody, the same way.
#[test]
fn an_unprivileged_mount_unmounts_on_every_stop() {
    let (root, log) = nobodys_root();
    let r = root.path();
    let mut left = Leftovers {
        pids: Vec::new(),
        store: r.join("store"),
    };
    start_and_stop(&r, "mount", &log, libc::SIGTERM, &mut left);
    start_and_stop(&r, "mount", &log, libc::SIGINT, &mut left);
}
