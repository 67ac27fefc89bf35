//! Real peers for the network tests: cairn daemons (the real binary), Helia and kubo (from
//! `scripts/interop.sh`, under `$CAIRN_INTEROP` or `~/.cache/cairn-interop`). Every process is
//! stopped when its handle drops. A missing interop install fails the test loudly.

use std::{
    io::{BufRead, BufReader},
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::util::{cairn_bin, Root};

/// Where `scripts/interop.sh` installed Helia and kubo.
pub fn interop() -> PathBuf {
    let dir = std::env::var_os("CAIRN_INTEROP")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/cairn-interop")
        });
    assert!(
        dir.join("helia/node_modules").is_dir() && dir.join("kubo-py/bin/python").exists(),
        "Helia and kubo are not installed in {}: run `bash scripts/interop.sh` (the README's \
         test command does)",
        dir.display()
    );
    dir
}

/// Reads a child's stream line by line on a thread, keeping every line.
fn collect(r: impl std::io::Read + Send + 'static) -> Arc<Mutex<Vec<String>>> {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let l = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(r).lines().map_while(Result::ok) {
            l.lock().unwrap().push(line);
        }
    });
    lines
}

fn wait_for(lines: &Arc<Mutex<Vec<String>>>, child: &mut Child, what: &str, secs: u64) {
    let start = Instant::now();
    loop {
        if lines.lock().unwrap().iter().any(|l| l.contains(what)) {
            return;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "exited ({status}) before {what:?}: {:?}",
                lines.lock().unwrap()
            );
        }
        assert!(
            start.elapsed() < Duration::from_secs(secs),
            "no {what:?} within {secs}s: {:?}",
            lines.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn stop(child: &mut Child) {
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let start = Instant::now();
    while child.try_wait().ok().flatten().is_none() {
        if start.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            let _ = child.wait();
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A `cairn daemon` on 127.0.0.1, mDNS off.
pub struct Daemon {
    child: Child,
    pub root: PathBuf,
    /// Its listen address, with `/p2p/{peer}`.
    pub addr: String,
    pub peer: String,
    pub mountpoint: Option<PathBuf>,
    /// Everything it said on stderr (for failure messages).
    pub stderr: Arc<Mutex<Vec<String>>>,
}

impl Daemon {
    /// Starts a daemon on `root`; `mount`: mount the store at ROOT/store too.
    pub fn start(root: &Root, mount: bool, extra: &[&str]) -> Daemon {
        let mut args = vec!["daemon", "--listen", "/ip4/127.0.0.1/tcp/0", "--no-mdns"];
        if !mount {
            args.push("--no-mount");
        }
        args.extend_from_slice(extra);
        Daemon::spawn(root, mount, root.cmd(&args))
    }

    /// A daemon (no mount, mDNS off) listening on `listen` only.
    pub fn start_listening(root: &Root, listen: &str, extra: &[&str]) -> Daemon {
        let mut args = vec!["daemon", "--listen", listen, "--no-mdns", "--no-mount"];
        args.extend_from_slice(extra);
        Daemon::spawn(root, false, root.cmd(&args))
    }

    /// A daemon (no mount, mDNS on, listening on every address) inside the network
    /// namespace `netns`.
    pub fn start_in(netns: &str, root: &Root) -> Daemon {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", netns])
            .arg(cairn_bin())
            .arg("--root")
            .arg(root.path())
            .args(["daemon", "--no-mount", "--listen", "/ip4/0.0.0.0/tcp/0"]);
        Daemon::spawn(root, false, cmd)
    }

    fn spawn(root: &Root, mount: bool, mut cmd: Command) -> Daemon {
        // CAIRN_TEST_LOG=debug (any RUST_LOG value) shows the daemons' logs in failures.
        let log = std::env::var("CAIRN_TEST_LOG").unwrap_or_else(|_| "warn".into());
        let mut child = cmd
            .env("RUST_LOG", log)
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = collect(child.stderr.take().unwrap());
        let ready = if mount {
            "cairn: mounted"
        } else {
            "daemon ready"
        };
        wait_for(&stderr, &mut child, ready, 30);
        let lines = stderr.lock().unwrap().clone();
        let addr = lines
            .iter()
            .find(|l| l.trim_start().starts_with("/ip4/"))
            .expect("a listen address")
            .trim()
            .to_owned();
        let peer = addr.rsplit('/').next().unwrap().to_owned();
        Daemon {
            child,
            root: root.path(),
            addr,
            peer,
            mountpoint: mount.then(|| root.path().join("store")),
            stderr,
        }
    }

    /// The daemon's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `kill -9`: no clean stop (the drop that follows finds it gone).
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The daemon's network counters (`cairn stat --json`'s `network`).
    pub fn stats(&self) -> Value {
        let out = Command::new(cairn_bin())
            .arg("--root")
            .arg(&self.root)
            .args(["stat", "--json"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        v["network"].clone()
    }

    /// Bytes this daemon sent to peers, and received from them.
    pub fn bytes(&self) -> (u64, u64) {
        let s = self.stats();
        (
            s["totals"]["bytes_sent"].as_u64().unwrap(),
            s["totals"]["bytes_received"].as_u64().unwrap(),
        )
    }

    /// What it said on stderr so far.
    pub fn log(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }

    /// Blocks received from the peer `peer`.
    pub fn blocks_from(&self, peer: &str) -> u64 {
        let s = self.stats();
        s["by_peer"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p[0] == peer)
            .map_or(0, |p| p[1]["blocks_received"].as_u64().unwrap())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        stop(&mut self.child);
        if let Some(m) = self.mountpoint.as_ref().filter(|m| is_mounted(m)) {
            let _ = Command::new("umount").arg("-l").arg(m).status();
        }
    }
}

/// True if something is mounted at `p` (from /proc/self/mountinfo).
fn is_mounted(p: &Path) -> bool {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let p = p.to_string_lossy();
    info.lines().any(|l| l.split(' ').nth(4) == Some(&*p))
}

/// A Helia peer serving (from `peer.mjs`), with what it printed at start.
pub struct Helia {
    child: Child,
    pub info: Value,
}

impl Helia {
    /// `peer.mjs --no-add` with these extra arguments (`--add-file`, `--import-car`).
    pub fn serve(args: &[&str]) -> Helia {
        let dir = interop().join("helia");
        let mut child = Command::new("node")
            .current_dir(&dir)
            .args(["--import", "./node20-polyfills.mjs", "peer.mjs", "--no-add"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("node (run scripts/interop.sh)");
        let out = collect(child.stdout.take().unwrap());
        wait_for(&out, &mut child, "peerId", 60);
        let info = serde_json::from_str(&out.lock().unwrap()[0]).unwrap();
        Helia { child, info }
    }

    pub fn addr(&self) -> String {
        self.info["multiaddrs"][0].as_str().unwrap().to_owned()
    }
}

impl Drop for Helia {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}

/// Helia fetching `cids` from the peer at `addr`: one JSON object per CID (length and sha256
/// of files, entry names of directories, or an error).
pub fn helia_fetch(addr: &str, cids: &[&str]) -> Vec<Value> {
    let dir = interop().join("helia");
    let out = Command::new("node")
        .current_dir(&dir)
        .args([
            "--import",
            "./node20-polyfills.mjs",
            "peer.mjs",
            "--fetch",
            addr,
        ])
        .args(cids)
        .args(["--timeout-ms", "60000"])
        .stderr(Stdio::null())
        .output()
        .expect("node");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Three consecutive free TCP ports on 127.0.0.1 (kubo takes PORT, PORT+1, PORT+2).
pub fn free_ports() -> u16 {
    for _ in 0..100 {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let p = l.local_addr().unwrap().port();
        if p < 65000
            && TcpListener::bind(("127.0.0.1", p + 1)).is_ok()
            && TcpListener::bind(("127.0.0.1", p + 2)).is_ok()
        {
            return p;
        }
    }
    panic!("no three free ports");
}

/// A kubo v0.22 peer (`kubo_peer.py`) in `repo`, staying up until dropped.
pub struct Kubo {
    child: Child,
    pub info: Value,
    pub port: u16,
}

impl Kubo {
    /// Starts kubo with these arguments (e.g. `--add FILE`, `--routing dht --bootstrap MA`),
    /// and waits for the JSON line it prints once they are done.
    pub fn start(repo: &Path, args: &[&str]) -> Kubo {
        let dir = interop();
        let port = free_ports();
        let mut child = Command::new(dir.join("kubo-py/bin/python"))
            .arg(dir.join("kubo_peer.py"))
            .arg(repo)
            .arg(port.to_string())
            .args(args)
            .args(["--stay", "3600"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("kubo (run scripts/interop.sh)");
        let out = collect(child.stdout.take().unwrap());
        wait_for(&out, &mut child, "peerId", 120);
        let info = serde_json::from_str(&out.lock().unwrap()[0]).unwrap();
        Kubo { child, info, port }
    }

    pub fn peer(&self) -> String {
        self.info["peerId"].as_str().unwrap().to_owned()
    }

    pub fn addr(&self) -> String {
        format!("/ip4/127.0.0.1/tcp/{}/p2p/{}", self.port, self.peer())
    }

    /// The CID kubo's `ipfs add` gave `file`.
    pub fn added(&self, file: &Path) -> String {
        self.info["added"][file.to_str().unwrap()]
            .as_str()
            .unwrap()
            .to_owned()
    }
}

impl Drop for Kubo {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}

/// kubo (a fresh repo) connecting to `addr` and downloading each CID to a path under `dir`,
/// as `ipfs get` writes it. Returns the downloaded paths, in order.
pub fn kubo_download(dir: &Path, addr: &str, cids: &[&str]) -> Vec<PathBuf> {
    let i = interop();
    let port = free_ports();
    let repo = dir.join(format!("kubo-dl-{port}"));
    let mut cmd = Command::new(i.join("kubo-py/bin/python"));
    cmd.arg(i.join("kubo_peer.py"))
        .arg(&repo)
        .arg(port.to_string())
        .args(["--connect", addr]);
    let mut dests = Vec::new();
    for (n, c) in cids.iter().enumerate() {
        let dest = dir.join(format!("kubo-got-{port}-{n}"));
        cmd.args(["--download", c, dest.to_str().unwrap()]);
        dests.push(dest);
    }
    let out = cmd.stderr(Stdio::null()).output().expect("kubo");
    let text = String::from_utf8_lossy(&out.stdout);
    let v: Value = serde_json::from_str(text.lines().last().unwrap_or("{}")).unwrap_or_default();
    assert_eq!(
        v["connect_rc"], 0,
        "kubo could not connect to {addr}: {text}"
    );
    for c in cids {
        assert_eq!(
            v["downloads"][c]["rc"], 0,
            "kubo's download of {c} failed: {text}"
        );
    }
    dests
}
