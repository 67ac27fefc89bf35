//! Helpers shared by the end-to-end tests.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
};

/// The `cairn` binary built next to this test binary.
pub fn cairn_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let bin = dir.join("cairn");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build --workspace` before the tests",
        bin.display()
    );
    bin
}

/// The cairn binary where nobody can run it: linked (or copied) into `dir`, since the build
/// directory may be under /root, out of nobody's reach.
pub fn reachable_bin(dir: &Path) -> PathBuf {
    let bin = dir.join("cairn");
    if !bin.exists() && std::fs::hard_link(cairn_bin(), &bin).is_err() {
        std::fs::copy(cairn_bin(), &bin).unwrap();
    }
    bin
}

/// The project's shared material (vectors, fixtures): `$CAIRN_SHARED`, else `../shared` beside
/// the clone, as CI lays it out.
pub fn shared() -> PathBuf {
    let p = match std::env::var_os("CAIRN_SHARED") {
        Some(p) => PathBuf::from(p),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared"),
    };
    assert!(
        p.is_dir(),
        "{} is missing: clone cairn beside shared/ or set CAIRN_SHARED",
        p.display()
    );
    p
}

/// A fresh cairn root in a temporary directory.
pub struct Root {
    pub dir: tempfile::TempDir,
}

impl Root {
    pub fn new() -> Root {
        let r = Root {
            dir: tempfile::tempdir().expect("tempdir"),
        };
        r.ok(&["init"]);
        r
    }

    pub fn path(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(cairn_bin());
        c.arg("--root").arg(self.path()).args(args);
        c.stdin(Stdio::null());
        c
    }

    /// Runs cairn, asserting success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.cmd(args).output().expect("run cairn");
        assert!(
            out.status.success(),
            "cairn {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8 output")
    }

    /// Runs cairn, asserting failure; returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.cmd(args).output().expect("run cairn");
        assert!(
            !out.status.success(),
            "cairn {args:?} should have failed; stdout: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    pub fn output(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("run cairn")
    }

    /// The root CID `cairn add -Q ARGS` prints.
    pub fn add_q(&self, args: &[&str]) -> String {
        let mut a = vec!["add", "-Q"];
        a.extend_from_slice(args);
        self.ok(&a).trim().to_owned()
    }

    /// Flips one bit of byte `at` in the block file of `cid` (any spelling), as a disk error
    /// would, and returns the file's path.
    pub fn corrupt_block(&self, cid: &str, at: usize) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let cid = cairn_store::parse_cid(cid).expect("a CID");
        let file = self
            .path()
            .join("blocks")
            .join(cairn_store::block_name(&cid));
        let mut bytes = std::fs::read(&file).unwrap();
        bytes[at] ^= 0x01;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::write(&file, bytes).unwrap();
        file
    }

    pub fn block_files(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.path().join("blocks"))
            .expect("blocks dir")
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| !n.starts_with('.'))
            .collect();
        v.sort();
        v
    }
}

/// The CID that `cairn add` (without -Q) printed for the entry whose path ends with `suffix`.
pub fn cid_of(add_output: &str, suffix: &str) -> String {
    add_output
        .lines()
        .find(|l| l.ends_with(suffix))
        .unwrap_or_else(|| panic!("no line ends with {suffix:?} in {add_output}"))
        .split(' ')
        .nth(1)
        .unwrap()
        .to_owned()
}

/// Writes `files` (path → contents) under `dir`, creating parent directories.
pub fn write_tree(dir: &Path, files: &[(impl AsRef<Path>, impl AsRef<[u8]>)]) {
    for (p, content) in files {
        let path = dir.join(p);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, content).unwrap();
    }
}

pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex(&Sha256::digest(data))
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The sha256 of `cairn cat CID` in `root`, which must succeed.
pub fn cat_sha(root: &Root, cid: &str) -> String {
    let out = root.output(&["cat", cid]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    sha256_hex(&out.stdout)
}

/// `root`'s `cairn swarm ledger --json` row for `peer` (from its daemon, or its
/// `ledger.json`), or `Null`.
pub fn ledger_row(root: &Root, peer: &str) -> serde_json::Value {
    let rows: serde_json::Value =
        serde_json::from_str(&root.ok(&["swarm", "ledger", "--json"])).unwrap();
    rows.as_array()
        .unwrap()
        .iter()
        .find(|r| r["peer"] == peer)
        .cloned()
        .unwrap_or(serde_json::Value::Null)
}

/// Polls `f` every 50 ms until it holds; fails the test after `secs`.
pub fn eventually(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let t = std::time::Instant::now();
    while !f() {
        assert!(
            t.elapsed() < std::time::Duration::from_secs(secs),
            "{what}: not within {secs}s"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Runs `script` with `sh` as the user nobody; true if it succeeded.
pub fn as_nobody(script: &str) -> bool {
    Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .args(["sh", "-c", script])
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success()
}

/// Resident memory of `pid`, in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Open file descriptors of `pid`.
pub fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}
