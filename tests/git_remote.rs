//! `git-remote-cairn` (the git issue): real git pushing to `cairn://<key>/<repo>` through a
//! daemon, and other daemons, knowing only the first's address, cloning and fetching; and
//! documents and bundles built to deceive, each refused with one line and no ref moved.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
};

use cairn_git::doc::Document;

use crate::{
    peers::{Daemon, Kubo},
    util::{cairn_bin, eventually, Root},
};

/// git and cairn as one user: keys under `home`, the helper found on PATH beside `cairn`.
struct User {
    home: tempfile::TempDir,
}

impl User {
    fn new() -> User {
        User {
            home: tempfile::tempdir().unwrap(),
        }
    }

    fn git(&self, root: &Root, dir: &Path, args: &[&str]) -> Output {
        let bin = cairn_bin();
        let path = format!(
            "{}:{}",
            bin.parent().unwrap().display(),
            std::env::var("PATH").unwrap_or_default()
        );
        Command::new("git")
            .current_dir(dir)
            .args(args)
            .env("PATH", path)
            .env(
                "CAIRN",
                std::env::var("CAIRN_WRAP")
                    .map(PathBuf::from)
                    .unwrap_or(bin.clone()),
            )
            .env("CAIRN_ROOT", root.path())
            .env("HOME", self.home.path())
            .env("XDG_CONFIG_HOME", self.home.path().join(".config"))
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_AUTHOR_NAME", "Ada")
            .env("GIT_AUTHOR_EMAIL", "ada@example.invalid")
            .env("GIT_COMMITTER_NAME", "Ada")
            .env("GIT_COMMITTER_EMAIL", "ada@example.invalid")
            .env("GIT_AUTHOR_DATE", "1700000000 +0000")
            .env("GIT_COMMITTER_DATE", "1700000000 +0000")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// git, which must succeed; its standard output.
    fn ok(&self, root: &Root, dir: &Path, args: &[&str]) -> String {
        let o = self.git(root, dir, args);
        assert!(
            o.status.success(),
            "git {args:?} failed:\n{}",
            String::from_utf8_lossy(&o.stderr)
        );
        // Paths may not be UTF-8 (one of rich_repo's is not): compared as git printed them.
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// git, which must fail; its standard error.
    fn fails(&self, root: &Root, dir: &Path, args: &[&str]) -> String {
        let o = self.git(root, dir, args);
        assert!(!o.status.success(), "git {args:?} succeeded");
        String::from_utf8(o.stderr).unwrap()
    }

    fn cairn(&self, root: &Root, args: &[&str]) -> String {
        let o = root
            .cmd(args)
            .env("XDG_CONFIG_HOME", self.home.path().join(".config"))
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "cairn {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8(o.stdout).unwrap()
    }
}

/// The snapshot URL a push printed.
fn snapshot(push_stderr: &str) -> String {
    push_stderr
        .split("this state: ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .unwrap_or_else(|| panic!("no snapshot in {push_stderr}"))
        .to_owned()
}

fn push(u: &User, root: &Root, dir: &Path, args: &[&str]) -> String {
    let mut a = vec!["push"];
    a.extend_from_slice(args);
    let o = u.git(root, dir, &a);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "git {a:?} failed:\n{err}");
    err
}

fn document(u: &User, root: &Root, url: &str) -> Document {
    let cid = url.trim_start_matches("cairn://");
    let bytes = root
        .cmd(&["block", "get", cid])
        .env("XDG_CONFIG_HOME", u.home.path().join(".config"))
        .output()
        .unwrap()
        .stdout;
    Document::decode(&bytes).unwrap()
}

/// Pseudo-random bytes from a seed (a binary file git cannot delta against anything).
fn noise(len: usize, mut seed: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) as u8
        })
        .collect()
}

/// A repository with two branches and a merge, a lightweight and an annotated tag, a 5 MiB
/// binary, a submodule (gitlink), a symlink, an executable and a file whose name is not UTF-8.
fn rich_repo(u: &User, root: &Root, dir: &Path) {
    use std::os::unix::ffi::OsStrExt;
    std::fs::create_dir_all(dir).unwrap();
    u.ok(root, dir, &["init", "-q", "-b", "main"]);
    std::fs::write(dir.join("README"), "demo\n").unwrap();
    std::fs::write(dir.join("blob.bin"), noise(5 << 20, 7)).unwrap();
    std::fs::write(dir.join("run.sh"), "#!/bin/sh\necho hi\n").unwrap();
    std::fs::set_permissions(
        dir.join("run.sh"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    std::os::unix::fs::symlink("README", dir.join("link")).unwrap();
    std::fs::write(
        dir.join(std::ffi::OsStr::from_bytes(b"caf\xe9-latin1")),
        "bytes\n",
    )
    .unwrap();
    u.ok(root, dir, &["add", "-A"]);
    let foreign = "1".repeat(40);
    u.ok(
        root,
        dir,
        &[
            "update-index",
            "--add",
            "--cacheinfo",
            &format!("160000,{foreign},module"),
        ],
    );
    u.ok(root, dir, &["commit", "-q", "-m", "one"]);
    u.ok(root, dir, &["tag", "light"]);
    u.ok(root, dir, &["checkout", "-q", "-b", "feature"]);
    std::fs::write(dir.join("feature.txt"), "f\n").unwrap();
    u.ok(root, dir, &["add", "-A"]);
    u.ok(root, dir, &["commit", "-q", "-m", "feature"]);
    u.ok(root, dir, &["checkout", "-q", "main"]);
    std::fs::write(dir.join("README"), "demo, two\n").unwrap();
    u.ok(root, dir, &["commit", "-q", "-am", "two"]);
    u.ok(
        root,
        dir,
        &["merge", "-q", "--no-ff", "-m", "merge", "feature"],
    );
    u.ok(root, dir, &["tag", "-a", "v1", "-m", "release one"]);
    // Signatures (ssh keys, as git signs with them since 2.34): a signed tag, a signed commit,
    // and a merge of a signed tag (its commit carries the tag as a mergetag header).
    let key = dir.with_extension("signing-key");
    let made = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key)
        .status()
        .unwrap();
    assert!(made.success());
    let sk = format!("user.signingkey={}", key.display());
    let signed = |args: &[&str]| {
        let mut a = vec!["-c", "gpg.format=ssh", "-c", &sk];
        a.extend_from_slice(args);
        u.ok(root, dir, &a);
    };
    signed(&["tag", "-s", "v1-signed", "-m", "signed release"]);
    u.ok(root, dir, &["checkout", "-q", "-b", "side"]);
    std::fs::write(dir.join("side.txt"), "s\n").unwrap();
    u.ok(root, dir, &["add", "-A"]);
    signed(&["commit", "-q", "-S", "-m", "signed side"]);
    signed(&["tag", "-s", "side-signed", "-m", "to merge"]);
    u.ok(root, dir, &["checkout", "-q", "main"]);
    u.ok(
        root,
        dir,
        &[
            "merge",
            "-q",
            "--no-ff",
            "-m",
            "merge a signed tag",
            "side-signed",
        ],
    );
    let head = u.ok(root, dir, &["cat-file", "commit", "HEAD"]);
    assert!(head.contains("\nmergetag object "), "{head}");
}

fn refs(u: &User, root: &Root, dir: &Path) -> String {
    u.ok(
        root,
        dir,
        &[
            "for-each-ref",
            "--format=%(objectname) %(refname)",
            "refs/heads",
            "refs/tags",
        ],
    )
}

fn objects(u: &User, root: &Root, dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = u
        .ok(root, dir, &["rev-list", "--all", "--objects"])
        .lines()
        .map(str::to_owned)
        .collect();
    v.sort();
    v
}

/// A daemon alone, a user, a work directory.
fn solo() -> (Root, Daemon, User, tempfile::TempDir) {
    let a = Root::new();
    let d = Daemon::start(&a, false, &[]);
    (a, d, User::new(), tempfile::tempdir().unwrap())
}

/// A repository at `dir` with one commit ("one") of one file `f` holding `content`.
fn one_commit(u: &User, root: &Root, dir: &Path, content: &str) {
    std::fs::create_dir_all(dir).unwrap();
    u.ok(root, dir, &["init", "-q", "-b", "main"]);
    std::fs::write(dir.join("f"), content).unwrap();
    u.ok(root, dir, &["add", "-A"]);
    u.ok(root, dir, &["commit", "-q", "-m", "one"]);
}

/// A and B on loopback, B knowing only A's address, A's DHT knowing B.
fn pair() -> (Root, Daemon, Root, Daemon) {
    let (a, b) = (Root::new(), Root::new());
    let da = Daemon::start(&a, false, &[]);
    let db = Daemon::start(&b, false, &["--bootstrap", &da.addr]);
    eventually(30, "A's DHT knowing B", || {
        da.stats()["dht"]["routing_peers"].as_u64().unwrap() >= 1
    });
    (a, da, b, db)
}

/// The round trip: a rich repository pushed to `cairn://<key>/demo` by A's user is
/// cloned whole by B (same refs, same objects, `fsck --strict` clean); one more commit moves
/// one small bundle; a force push, a deletion with `fetch --prune`, an old snapshot URL; and
/// a third node clones from B with A gone.
#[test]
fn push_clone_fetch_force_delete_snapshot() {
    let (a, mut da, b, db) = pair();
    let u = User::new();
    let key = u.cairn(&a, &["key", "gen", "profile"]).trim().to_owned();
    let url = format!("cairn://{key}/demo");
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    rich_repo(&u, &a, &src);
    let said = push(
        &u,
        &a,
        &src,
        &[&url, "refs/heads/*:refs/heads/*", "refs/tags/*:refs/tags/*"],
    );
    let first = snapshot(&said);

    // B clones (a mirror: its refs are the remote's, as they are).
    let cl = work.path().join("clone.git");
    u.ok(
        &b,
        work.path(),
        &["clone", "-q", "--mirror", &url, cl.to_str().unwrap()],
    );
    assert_eq!(refs(&u, &b, &cl), refs(&u, &a, &src));
    assert_eq!(objects(&u, &b, &cl), objects(&u, &a, &src));
    u.ok(&b, &cl, &["fsck", "--full", "--strict", "--no-dangling"]);
    assert_eq!(
        u.ok(&b, &cl, &["symbolic-ref", "HEAD"]).trim(),
        "refs/heads/main"
    );
    // A working clone checks out the files as they were.
    let wc = work.path().join("wc");
    u.ok(
        &b,
        work.path(),
        &["clone", "-q", &url, wc.to_str().unwrap()],
    );
    assert_eq!(
        std::fs::read(wc.join("blob.bin")).unwrap(),
        noise(5 << 20, 7)
    );
    assert_eq!(
        std::fs::read_link(wc.join("link")).unwrap(),
        PathBuf::from("README")
    );

    // One more commit: B's fetch moves one small bundle and the document.
    std::fs::write(src.join("README"), "demo, three\n").unwrap();
    u.ok(&a, &src, &["commit", "-q", "-am", "three"]);
    let said = push(&u, &a, &src, &[&url, "main"]);
    let doc = document(&u, &a, &snapshot(&said));
    let newest = doc.bundles.last().unwrap();
    assert!(newest.size < 4096, "{newest:?}");
    let before = db.bytes().1;
    u.ok(&b, &cl, &["fetch", "-q"]);
    let moved = db.bytes().1 - before;
    assert!(
        moved <= 2 * newest.size + 8192,
        "a one-commit fetch moved {moved} bytes (bundle {})",
        newest.size
    );
    assert_eq!(refs(&u, &b, &cl), refs(&u, &a, &src));

    // A force push and a deletion; B follows with --prune.
    u.ok(&a, &src, &["reset", "-q", "--hard", "HEAD~1"]);
    std::fs::write(src.join("README"), "demo, rewritten\n").unwrap();
    u.ok(&a, &src, &["commit", "-q", "-am", "rewritten"]);
    let stale = u.fails(&a, &src, &["push", &url, "main"]);
    assert!(stale.contains("rejected"), "{stale}");
    push(&u, &a, &src, &["--force", &url, "main"]);
    push(&u, &a, &src, &[&url, ":refs/heads/feature"]);
    u.ok(&a, &src, &["branch", "-q", "-D", "feature"]);
    u.ok(
        &b,
        &cl,
        &["fetch", "-q", "--prune", "origin", "+refs/*:refs/*"],
    );
    assert_eq!(refs(&u, &b, &cl), refs(&u, &a, &src));
    u.ok(&b, &cl, &["fsck", "--full", "--strict", "--no-dangling"]);

    // A record older than one this clone has seen is refused (as if the network answered
    // with a replayed record): the clone remembers the newest sequence per remote.
    let slug = cairn_git::remote::slug(&cairn_git::url::Url::parse(&url).unwrap());
    let seen = cl.join("cairn").join(slug).join("seen");
    let was = std::fs::read_to_string(&seen).unwrap();
    std::fs::write(&seen, "1000000\n").unwrap();
    let e = u.fails(&b, &cl, &["fetch", "-q"]);
    assert!(e.contains("older than one"), "{e}");
    std::fs::write(&seen, was).unwrap();

    // The first push's snapshot still gives the first state; it takes no push.
    let old = work.path().join("old.git");
    u.ok(
        &b,
        work.path(),
        &["clone", "-q", "--mirror", &first, old.to_str().unwrap()],
    );
    assert!(refs(&u, &b, &old).contains("refs/heads/feature"));
    let e = u.fails(&b, &old, &["push", &first, "refs/heads/main:refs/heads/x"]);
    assert!(e.contains("fixed state"), "{e}");

    // C knows only B; A stops; C clones what B holds.
    let c = Root::new();
    let _dc = Daemon::start(&c, false, &["--bootstrap", &db.addr]);
    da.kill9();
    drop(da);
    let cc = work.path().join("third.git");
    u.ok(
        &c,
        work.path(),
        &["clone", "-q", "--mirror", &url, cc.to_str().unwrap()],
    );
    assert_eq!(refs(&u, &c, &cc), refs(&u, &a, &src));
}

/// Forty one-commit pushes leave few bundles (each at least twice all newer ones), and the
/// oldest bundle is a `git bundle` stock git clones without the helper.
#[test]
fn bundles_stay_few_and_git_reads_them_alone() {
    let (a, _da, _b, _db) = pair();
    let u = User::new();
    let key = u.cairn(&a, &["key", "gen", "profile"]).trim().to_owned();
    let url = format!("cairn://{key}/log");
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    u.ok(&a, &src, &["init", "-q", "-b", "main"]);
    std::fs::write(src.join("big"), noise(64 << 10, 1)).unwrap();
    let mut said = String::new();
    for i in 0..40 {
        std::fs::write(src.join("log"), format!("{i}\n")).unwrap();
        u.ok(&a, &src, &["add", "-A"]);
        u.ok(&a, &src, &["commit", "-q", "-m", &format!("commit {i}")]);
        said = push(&u, &a, &src, &[&url, "main"]);
    }
    // A dry run publishes nothing.
    let listed = u.ok(&a, &src, &["ls-remote", &url]);
    std::fs::write(src.join("log"), "dry\n").unwrap();
    u.ok(&a, &src, &["commit", "-q", "-am", "dry"]);
    push(&u, &a, &src, &["--dry-run", &url, "main"]);
    assert_eq!(u.ok(&a, &src, &["ls-remote", &url]), listed);
    let doc = document(&u, &a, &snapshot(&said));
    assert!(
        (1..=8).contains(&doc.bundles.len()),
        "{} bundles after 40 pushes",
        doc.bundles.len()
    );
    let base = work.path().join("base.bundle");
    let bytes = a
        .cmd(&["cat", &doc.bundles[0].cid.to_string()])
        .output()
        .unwrap()
        .stdout;
    std::fs::write(&base, bytes).unwrap();
    let cl = work.path().join("plain");
    u.ok(
        &a,
        work.path(),
        &["clone", "-q", base.to_str().unwrap(), cl.to_str().unwrap()],
    );
    u.ok(&a, &cl, &["fsck", "--full", "--strict"]);
    let ids = u.ok(&a, &cl, &["rev-list", "--all"]);
    let all = u.ok(&a, &src, &["rev-list", "--all"]);
    assert!(!ids.is_empty() && ids.lines().all(|l| all.contains(l)));

    // Pushers racing with one key, each its own branch: every branch lands (a push that
    // lost the race publishes again on top of the winner's).
    let clones: Vec<PathBuf> = (0..4)
        .map(|i| work.path().join(format!("racer{i}")))
        .collect();
    for (i, c) in clones.iter().enumerate() {
        u.ok(&a, work.path(), &["clone", "-q", &url, c.to_str().unwrap()]);
        u.ok(&a, c, &["checkout", "-q", "-b", &format!("racer{i}")]);
        std::fs::write(c.join("log"), format!("racer {i}\n")).unwrap();
        u.ok(&a, c, &["commit", "-q", "-am", &format!("racer {i}")]);
    }
    let said: Vec<String> = std::thread::scope(|s| {
        let pushes: Vec<_> = clones
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let (u, a, url) = (&u, &a, &url);
                s.spawn(move || push(u, a, c, &[url, &format!("racer{i}")]))
            })
            .collect();
        pushes.into_iter().map(|p| p.join().unwrap()).collect()
    });
    let last = work.path().join("after-race.git");
    u.ok(
        &a,
        work.path(),
        &["clone", "-q", "--mirror", &url, last.to_str().unwrap()],
    );
    let r = refs(&u, &a, &last);
    for i in 0..4 {
        assert!(
            r.contains(&format!("refs/heads/racer{i}")),
            "racer{i} lost:\n{r}\n{said:?}"
        );
    }

    // A sha256 repository: cloned as one, with the same ids; a sha1 repository will not take it.
    let s256 = work.path().join("s256");
    std::fs::create_dir_all(&s256).unwrap();
    u.ok(
        &a,
        &s256,
        &["init", "-q", "-b", "main", "--object-format=sha256"],
    );
    std::fs::write(s256.join("f"), "sha256\n").unwrap();
    u.ok(&a, &s256, &["add", "-A"]);
    u.ok(&a, &s256, &["commit", "-q", "-m", "one"]);
    let url256 = format!("cairn://{key}/s256");
    push(&u, &a, &s256, &[&url256, "main"]);
    let cl256 = work.path().join("s256.git");
    u.ok(
        &a,
        work.path(),
        &["clone", "-q", "--mirror", &url256, cl256.to_str().unwrap()],
    );
    assert_eq!(
        u.ok(&a, &cl256, &["rev-parse", "--show-object-format"])
            .trim(),
        "sha256"
    );
    assert_eq!(refs(&u, &a, &cl256), refs(&u, &a, &s256));
    u.ok(&a, &cl256, &["fsck", "--full", "--strict"]);
    let e = u.fails(
        &a,
        &cl,
        &["fetch", &url256, "refs/heads/main:refs/heads/s256"],
    );
    assert!(e.contains("is a sha256 repository"), "{e}");
}

/// A document stored on `root` as a snapshot URL.
fn put_document(u: &User, root: &Root, dir: &Path, doc: &Document) -> String {
    let path = dir.join("doc.cbor");
    std::fs::write(&path, doc.encode()).unwrap();
    let cid = u.cairn(
        root,
        &[
            "block",
            "put",
            "--cid-codec",
            "dag-cbor",
            path.to_str().unwrap(),
        ],
    );
    format!("cairn://{}", cid.trim())
}

/// A bundle file added to `root`, with its entry as its header says.
fn put_bundle(u: &User, root: &Root, path: &Path) -> cairn_git::doc::Bundle {
    let bytes = std::fs::read(path).unwrap();
    let (h, _) = cairn_git::bundle::Header::read(&mut bytes.as_slice()).unwrap();
    let cid = u.cairn(root, &["add", "-Q", "--pin=false", path.to_str().unwrap()]);
    cairn_git::doc::Bundle {
        cid: cid.trim().parse().unwrap(),
        size: bytes.len() as u64,
        objects: 0,
        tips: h.refs.iter().map(|(id, _)| id.clone()).collect(),
        prereqs: h.prereqs,
    }
}

/// Any file added to `root`, entered as a bundle bringing `tips` (a lie).
fn put_bundle_raw(u: &User, root: &Root, path: &Path, tips: &[Vec<u8>]) -> cairn_git::doc::Bundle {
    let cid = u.cairn(root, &["add", "-Q", "--pin=false", path.to_str().unwrap()]);
    cairn_git::doc::Bundle {
        cid: cid.trim().parse().unwrap(),
        size: std::fs::metadata(path).unwrap().len(),
        objects: 1,
        tips: tips.to_vec(),
        prereqs: vec![],
    }
}

fn id(u: &User, root: &Root, dir: &Path, rev: &str) -> Vec<u8> {
    let hex = u.ok(root, dir, &["rev-parse", rev]);
    cairn_git::bundle::unhex(hex.trim(), 20).unwrap()
}

/// A repository at `dir` of one commit (message `message`) holding `path`, made by `git
/// fast-import`, and a bundle of all its objects packed without a walk: its path and the
/// commit's id.
fn fast_import(u: &User, root: &Root, dir: &Path, path: &str, message: &str) -> (PathBuf, Vec<u8>) {
    use std::io::Write;
    std::fs::create_dir_all(dir).unwrap();
    u.ok(root, dir, &["init", "-q", "-b", "main"]);
    let mut stream = format!(
        "commit refs/heads/main\ncommitter A <a@x> 1700000000 +0000\ndata {}\n{message}\nM 100644 inline {path}\ndata 2\nx\n\n",
        message.len()
    );
    stream.push('\n');
    let mut c = Command::new("git")
        .current_dir(dir)
        .args(["fast-import", "--quiet"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin
        .take()
        .unwrap()
        .write_all(stream.as_bytes())
        .unwrap();
    assert!(c.wait().unwrap().success());
    let tip = u.ok(root, dir, &["rev-parse", "main"]).trim().to_owned();
    let all = u.ok(
        root,
        dir,
        &[
            "cat-file",
            "--batch-all-objects",
            "--batch-check=%(objectname)",
        ],
    );
    let mut pack = Command::new("git")
        .current_dir(dir)
        .args(["pack-objects", "--stdout", "-q"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    pack.stdin
        .take()
        .unwrap()
        .write_all(all.as_bytes())
        .unwrap();
    let pack = pack.wait_with_output().unwrap().stdout;
    let mut bundle = format!("# v2 git bundle\n{tip} refs/heads/evil\n\n").into_bytes();
    bundle.extend(pack);
    let path = dir.with_extension("bundle");
    std::fs::write(&path, bundle).unwrap();
    (path, cairn_git::bundle::unhex(&tip, 20).unwrap())
}

/// Documents and bundles built to deceive: each fetch fails with one line saying why, and
/// the victim's refs and objects stay as they were.
#[test]
fn deceiving_documents_and_bundles_are_refused() {
    let (a, _da, u, work) = solo();
    let w = work.path();
    let src = w.join("src");
    one_commit(&u, &a, &src, "one\n");
    u.ok(&a, &src, &["tag", "one"]);
    u.ok(
        &a,
        &src,
        &["bundle", "create", "-q", "../one.bundle", "main"],
    );
    std::fs::write(src.join("f"), "two\n").unwrap();
    u.ok(&a, &src, &["commit", "-q", "-am", "two"]);
    u.ok(
        &a,
        &src,
        &["bundle", "create", "-q", "../two.bundle", "main", "^one"],
    );
    // A commit whose tree holds a `.git` entry: git refuses to check such trees out.
    let blob = u.ok(&a, &src, &["rev-parse", "HEAD:f"]);
    let tree = {
        let mut c = Command::new("git")
            .current_dir(&src)
            .args(["mktree"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        writeln!(c.stdin.take().unwrap(), "100644 blob {}\t.git", blob.trim()).unwrap();
        String::from_utf8(c.wait_with_output().unwrap().stdout).unwrap()
    };
    let evil = u.ok(
        &a,
        &src,
        &["commit-tree", tree.trim(), "-p", "HEAD", "-m", "evil"],
    );
    u.ok(&a, &src, &["update-ref", "refs/heads/evil", evil.trim()]);
    u.ok(
        &a,
        &src,
        &["bundle", "create", "-q", "../evil.bundle", "evil", "^main"],
    );

    let one = put_bundle(&u, &a, &w.join("one.bundle"));
    let two = put_bundle(&u, &a, &w.join("two.bundle"));
    let good = Document {
        format: cairn_git::doc::Format::Sha1,
        head: "refs/heads/main".into(),
        refs: [("refs/heads/main".to_owned(), id(&u, &a, &src, "one"))].into(),
        bundles: vec![one.clone()],
    };
    let victim = w.join("victim");
    let url = put_document(&u, &a, w, &good);
    u.ok(
        &a,
        w,
        &["clone", "-q", "--mirror", &url, victim.to_str().unwrap()],
    );
    // ls-remote runs the helper outside any repository.
    let listed = u.ok(&a, w, &["ls-remote", &url]);
    assert!(listed.contains("refs/heads/main"), "{listed}");
    let packs = |dir: &Path| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir.join("objects/pack"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            // What index-pack leaves when it dies on a corrupt pack, as in git's own fetch
            // (git gc removes it).
            .filter(|n| !n.starts_with("tmp_pack_"))
            .collect();
        v.sort();
        v
    };
    let before = (
        refs(&u, &a, &victim),
        objects(&u, &a, &victim),
        packs(&victim),
    );

    let next = |bundles: Vec<cairn_git::doc::Bundle>, tip: &str| {
        let mut d = good.clone();
        d.refs
            .insert("refs/heads/main".into(), id(&u, &a, &src, tip));
        d.bundles = bundles;
        d
    };
    let mut cases: Vec<(&str, Document)> = Vec::new();
    let mut longer = two.clone();
    longer.size += 1;
    cases.push(("bytes, not the", next(vec![one.clone(), longer], "main")));
    let mut lying = two.clone();
    lying.tips = vec![vec![7; 20]];
    cases.push(("disagrees", next(vec![one.clone(), lying], "main")));
    let mut ghost = good.clone();
    ghost.refs.insert("refs/heads/ghost".into(), vec![9; 20]);
    cases.push(("no bundle brings", ghost));
    let mut bytes = std::fs::read(w.join("two.bundle")).unwrap();
    let n = bytes.len();
    bytes[n - 30] ^= 1;
    std::fs::write(w.join("corrupt.bundle"), &bytes).unwrap();
    let corrupt = put_bundle(&u, &a, &w.join("corrupt.bundle"));
    cases.push(("refused the pack", next(vec![one.clone(), corrupt], "main")));
    let dotgit = put_bundle(&u, &a, &w.join("evil.bundle"));
    let mut d = next(vec![one.clone(), two.clone(), dotgit], "main");
    d.refs
        .insert("refs/heads/evil".into(), id(&u, &a, &src, "evil"));
    cases.push(("refused the pack", d));

    // A tree nested 5000 deep and a commit of 17 MiB, each in a bundle of every object of a
    // repository of its own (git's own bundle create refuses the deep one).
    let depth = 5000;
    let deep_path = vec!["a"; depth].join("/") + "/f";
    let deep = fast_import(&u, &a, &w.join("deep"), &deep_path, "deep");
    let huge = fast_import(&u, &a, &w.join("huge"), "f", &"x".repeat(17 << 20));
    for (why, (bundle, tip)) in [("nested too deep", deep), ("over the", huge)] {
        let b = put_bundle(&u, &a, &bundle);
        let mut d = good.clone();
        d.bundles.push(b);
        d.refs.insert("refs/heads/evil".into(), tip);
        cases.push((why, d));
    }

    for (why, doc) in cases {
        let url = put_document(&u, &a, w, &doc);
        let o = u.git(&a, &victim, &["fetch", "-q", &url, "+refs/*:refs/*"]);
        let e = String::from_utf8_lossy(&o.stderr).into_owned();
        assert!(!o.status.success(), "{why}: the fetch succeeded\n{e}");
        let said: Vec<&str> = e.lines().filter(|l| l.starts_with("cairn: ")).collect();
        assert!(
            said.len() == 1 && said[0].contains(why),
            "expected one line saying {why:?}, got:\n{e}"
        );
        let after = (
            refs(&u, &a, &victim),
            objects(&u, &a, &victim),
            packs(&victim),
        );
        assert_eq!(after, before, "{why}");
    }
    // The victim's pin is still the honest document's, and nothing refused stayed pinned.
    let pins: Vec<serde_json::Value> = u
        .cairn(&a, &["pin", "ls", "--json"])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|p: &serde_json::Value| p["prog"].as_str().is_some_and(|p| p.starts_with("git")))
        .collect();
    let honest = url.trim_start_matches("cairn://");
    assert!(
        pins.len() == 1 && pins[0]["prog"] == "git" && pins[0]["cid"] == honest,
        "{pins:?}"
    );

    // A bundle whose prerequisites no bundle before it brings: a clone from nothing fails.
    let url = put_document(&u, &a, w, &next(vec![two.clone()], "main"));
    let e = u.fails(&a, w, &["clone", "-q", &url, "fresh"]);
    assert!(e.contains("no earlier bundle brought"), "{e}");
    assert!(!w.join("fresh").exists());

    // The honest next state is taken, and no pack of the refused ones is kept.
    let url = put_document(&u, &a, w, &next(vec![one, two], "main"));
    // Links planted in the state directory (another user of a shared repository) are not
    // followed: state files are written under fresh names and renamed into place.
    let slug = cairn_git::remote::slug(&cairn_git::url::Url::parse(&url).unwrap());
    let bait = w.join("bait");
    std::fs::write(&bait, "untouched").unwrap();
    for name in ["doc.tmp", "seen.tmp", "doc"] {
        let dir = victim.join("cairn").join(&slug);
        std::fs::create_dir_all(&dir).unwrap();
        let link = dir.join(name);
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&bait, &link).unwrap();
    }

    u.ok(&a, &victim, &["fetch", "-q", &url, "+refs/*:refs/*"]);
    let main = u.ok(&a, &src, &["rev-parse", "main"]);
    assert_eq!(
        refs(&u, &a, &victim),
        format!("{} refs/heads/main\n", main.trim())
    );
    assert_eq!(std::fs::read_to_string(&bait).unwrap(), "untouched");
    let keeps = std::fs::read_dir(victim.join("objects/pack"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "keep")
        })
        .count();
    assert_eq!(keeps, 0);
}

/// Bundles are files as `ipfs add` adds them: kubo adding a pushed bundle gives the CID the
/// document names, and a node whose only peer is that kubo clones the document's snapshot,
/// every bundle served by kubo.
#[test]
fn kubo_serves_the_bundles_a_clone_needs() {
    let (a, da, b, db) = pair();
    let u = User::new();
    let key = u.cairn(&a, &["key", "gen", "profile"]).trim().to_owned();
    let url = format!("cairn://{key}/demo");
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    rich_repo(&u, &a, &src);
    let said = push(&u, &a, &src, &[&url, "main", "v1"]);
    let snap = snapshot(&said);
    let doc = document(&u, &a, &snap);
    let files: Vec<PathBuf> = doc
        .bundles
        .iter()
        .enumerate()
        .map(|(i, bundle)| {
            let f = work.path().join(format!("b{i}.bundle"));
            let bytes = a
                .cmd(&["cat", &bundle.cid.to_string()])
                .output()
                .unwrap()
                .stdout;
            assert_eq!(bytes.len() as u64, bundle.size);
            std::fs::write(&f, bytes).unwrap();
            f
        })
        .collect();
    let mut args = Vec::new();
    for f in &files {
        args.extend(["--add", f.to_str().unwrap()]);
    }
    let kubo = Kubo::start(&work.path().join("kubo"), &args);
    for (f, bundle) in files.iter().zip(&doc.bundles) {
        assert_eq!(kubo.added(f), bundle.cid.to_string());
    }
    drop((da, db, a, b));

    // D holds the document only and knows only kubo.
    let d = Root::new();
    let doc_file = work.path().join("doc.cbor");
    std::fs::write(&doc_file, doc.encode()).unwrap();
    u.cairn(
        &d,
        &[
            "block",
            "put",
            "--cid-codec",
            "dag-cbor",
            doc_file.to_str().unwrap(),
        ],
    );
    let dd = Daemon::start(&d, false, &["--bootstrap", &kubo.addr()]);
    let cl = work.path().join("from-kubo.git");
    u.ok(
        &d,
        work.path(),
        &["clone", "-q", "--mirror", &snap, cl.to_str().unwrap()],
    );
    let want = u.ok(
        &d,
        &src,
        &[
            "for-each-ref",
            "--format=%(objectname) %(refname)",
            "refs/heads/main",
            "refs/tags/v1",
        ],
    );
    assert_eq!(refs(&u, &d, &cl), want);
    u.ok(&d, &cl, &["fsck", "--full", "--strict"]);
    assert!(dd.blocks_from(&kubo.peer()) >= doc.bundles.len() as u64);
}

/// A bundle entry declaring fewer bytes than its CID holds: the fetch stops a little past
/// the declared size, far short of the file, and the clone fails with nothing left.
#[test]
fn a_bundle_larger_than_declared_is_not_fetched_whole() {
    let (a, _da, b, db) = pair();
    let u = User::new();
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let big = w.join("big");
    std::fs::write(&big, noise(8 << 20, 3)).unwrap();
    let cid = u.cairn(&a, &["add", "-Q", big.to_str().unwrap()]);
    let doc = Document {
        format: cairn_git::doc::Format::Sha1,
        head: "refs/heads/main".into(),
        refs: [("refs/heads/main".to_owned(), vec![5; 20])].into(),
        bundles: vec![cairn_git::doc::Bundle {
            cid: cid.trim().parse().unwrap(),
            size: 100_000,
            objects: 1,
            tips: vec![vec![5; 20]],
            prereqs: vec![],
        }],
    };
    let url = put_document(&u, &b, w, &doc);
    let before = db.bytes().1;
    let e = u.fails(&b, w, &["clone", "-q", &url, "victim"]);
    assert!(e.contains("--max-bytes"), "{e}");
    let moved = db.bytes().1 - before;
    assert!(
        moved < 1 << 20,
        "{moved} bytes fetched for a bundle said to be 100,000"
    );
    assert!(!w.join("victim").exists());
}

/// Real histories round-trip with identical ids: this project's own (a mirror of the
/// checkout the tests run in) and a package's releases (every version of a crate in cargo's
/// cache, one commit each, made with `git fast-import`).
#[test]
fn real_histories_round_trip() {
    let (a, _da, b, _db) = pair();
    let u = User::new();
    let key = u.cairn(&a, &["key", "gen", "profile"]).trim().to_owned();
    let work = tempfile::tempdir().unwrap();
    let w = work.path();

    let own = w.join("own.git");
    let here = env!("CARGO_MANIFEST_DIR");
    u.ok(
        &a,
        w,
        &[
            "clone",
            "-q",
            "--mirror",
            "--no-local",
            here,
            own.to_str().unwrap(),
        ],
    );
    let releases = w.join("releases");
    crate_history(&u, &a, &releases);

    for (name, src) in [("own", &own), ("releases", &releases)] {
        let url = format!("cairn://{key}/{name}");
        push(
            &u,
            &a,
            src,
            &[&url, "refs/heads/*:refs/heads/*", "refs/tags/*:refs/tags/*"],
        );
        let cl = w.join(format!("{name}-clone.git"));
        u.ok(
            &b,
            w,
            &["clone", "-q", "--mirror", &url, cl.to_str().unwrap()],
        );
        assert_eq!(refs(&u, &b, &cl), refs(&u, &a, src), "{name}");
        assert_eq!(objects(&u, &b, &cl), objects(&u, &a, src), "{name}");
    }
}

/// Every version of one crate in cargo's cache (the one with the most), a commit each.
fn crate_history(u: &User, root: &Root, dir: &Path) {
    use std::io::Write;
    let src = std::path::PathBuf::from(std::env::var("HOME").unwrap()).join(".cargo/registry/src");
    let mut versions: std::collections::BTreeMap<String, Vec<PathBuf>> = Default::default();
    for index in std::fs::read_dir(&src).expect("cargo's cache (~/.cargo/registry/src)") {
        for c in std::fs::read_dir(index.unwrap().path()).unwrap() {
            let p = c.unwrap().path();
            let n = p.file_name().unwrap().to_string_lossy().into_owned();
            // name-1.2.3: the name is what comes before the last '-' followed by a digit.
            let cut = n
                .char_indices()
                .rev()
                .find(|(i, c)| *c == '-' && n[i + 1..].starts_with(|d: char| d.is_ascii_digit()))
                .map(|(i, _)| i);
            if let Some(i) = cut {
                versions.entry(n[..i].to_owned()).or_default().push(p);
            }
        }
    }
    let (_, mut dirs) = versions
        .into_iter()
        .max_by_key(|(n, v)| (v.len(), n.clone()))
        .unwrap();
    dirs.sort();
    assert!(
        dirs.len() >= 2,
        "cargo's cache holds no crate in two versions"
    );
    std::fs::create_dir_all(dir).unwrap();
    u.ok(root, dir, &["init", "-q", "-b", "main"]);
    let mut stream = Vec::new();
    for (i, d) in dirs.iter().enumerate() {
        let v = d.file_name().unwrap().to_string_lossy().into_owned();
        writeln!(
            stream,
            "commit refs/heads/main\ncommitter A <a@x> {} +0000",
            1_600_000_000 + i
        )
        .unwrap();
        writeln!(stream, "data {}\n{v}", v.len()).unwrap();
        writeln!(stream, "deleteall").unwrap();
        let mut stack = vec![d.clone()];
        while let Some(p) = stack.pop() {
            for e in std::fs::read_dir(&p).unwrap() {
                let e = e.unwrap().path();
                let m = std::fs::symlink_metadata(&e).unwrap();
                if m.is_dir() {
                    stack.push(e);
                } else if m.is_file() {
                    let rel = e.strip_prefix(d).unwrap().to_string_lossy().into_owned();
                    if rel.contains('\n') || rel.contains('"') {
                        continue;
                    }
                    let data = std::fs::read(&e).unwrap();
                    writeln!(stream, "M 100644 inline {rel}\ndata {}", data.len()).unwrap();
                    stream.extend(data);
                    stream.push(b'\n');
                }
            }
        }
        writeln!(
            stream,
            "\ntag {v}\nfrom refs/heads/main\ntagger A <a@x> 1600000000 +0000\ndata 0\n"
        )
        .unwrap();
    }
    let mut c = Command::new("git")
        .current_dir(dir)
        .args(["fast-import", "--quiet"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(&stream).unwrap();
    assert!(c.wait().unwrap().success());
}

/// Object mode: a repository stored one git object per block (git-raw, as git-remote-ipld
/// stored them) on A is cloned by B from `cairn://<commit CID>` with the same ids.
#[test]
fn object_mode_clones_a_git_raw_dag() {
    let (a, _da, b, _db) = pair();
    let u = User::new();
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let src = w.join("src");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    u.ok(&a, &src, &["init", "-q", "-b", "main"]);
    std::fs::write(src.join("a"), "one\n").unwrap();
    std::fs::write(src.join("sub/b"), noise(300 << 10, 9)).unwrap();
    u.ok(&a, &src, &["add", "-A"]);
    u.ok(&a, &src, &["commit", "-q", "-m", "one"]);
    std::fs::write(src.join("a"), "two\n").unwrap();
    u.ok(&a, &src, &["commit", "-q", "-am", "two"]);
    let head = u.ok(&a, &src, &["rev-parse", "HEAD"]).trim().to_owned();
    let mut commit_cid = String::new();
    let all = u.ok(
        &a,
        &src,
        &[
            "cat-file",
            "--batch-all-objects",
            "--batch-check=%(objectname) %(objecttype)",
        ],
    );
    for line in all.lines() {
        let (id, kind) = line.split_once(' ').unwrap();
        let body = u.git(&a, &src, &["cat-file", kind, id]).stdout;
        let mut loose = format!("{kind} {}\0", body.len()).into_bytes();
        loose.extend(body);
        let f = w.join("obj");
        std::fs::write(&f, loose).unwrap();
        let cid = u.cairn(
            &a,
            &[
                "block",
                "put",
                "--cid-codec",
                "git-raw",
                f.to_str().unwrap(),
            ],
        );
        if id == head {
            commit_cid = cid.trim().to_owned();
        }
    }
    let url = format!("cairn://{commit_cid}");
    let cl = w.join("clone");
    u.ok(&b, w, &["clone", "-q", &url, cl.to_str().unwrap()]);
    assert_eq!(u.ok(&b, &cl, &["rev-parse", "HEAD"]).trim(), head);
    assert_eq!(objects(&u, &b, &cl), objects(&u, &a, &src));
    u.ok(&b, &cl, &["fsck", "--full", "--strict"]);
    assert_eq!(
        std::fs::read(cl.join("sub/b")).unwrap(),
        noise(300 << 10, 9)
    );
    let e = u.fails(&b, &cl, &["push", &url, "HEAD:refs/heads/x"]);
    assert!(e.contains("fixed state"), "{e}");
}

/// The helper's side of gitremote-helpers(7), spoken to directly: capabilities, options
/// (object-format taken, depth unsupported), list with the object format first and HEAD,
/// and an unknown command ending the conversation with an error.
#[test]
fn a_scripted_conversation() {
    use std::io::Write;
    let (a, _da, u, work) = solo();
    let w = work.path();
    let src = w.join("src");
    one_commit(&u, &a, &src, "x\n");
    u.ok(
        &a,
        &src,
        &["bundle", "create", "-q", "../all.bundle", "main"],
    );
    let bundle = put_bundle(&u, &a, &w.join("all.bundle"));
    let id = id(&u, &a, &src, "main");
    let doc = Document {
        format: cairn_git::doc::Format::Sha1,
        head: "refs/heads/main".into(),
        refs: [("refs/heads/main".to_owned(), id.clone())].into(),
        bundles: vec![bundle],
    };
    let url = put_document(&u, &a, w, &doc);
    let helper = cairn_bin().with_file_name("git-remote-cairn");
    let talk = |input: &str| -> (bool, String, String) {
        let mut c = Command::new(&helper)
            .args(["origin", &url])
            .current_dir(&src)
            .env("CAIRN", cairn_bin())
            .env("CAIRN_ROOT", a.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        c.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        let o = c.wait_with_output().unwrap();
        (
            o.status.success(),
            String::from_utf8(o.stdout).unwrap(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let hex = cairn_git::bundle::hex(&id);
    let (ok, out, err) = talk("capabilities\noption object-format true\noption depth 1\nlist\n\n");
    assert!(ok, "{err}");
    assert_eq!(
        out,
        format!(
            "fetch\npush\noption\nobject-format\n\nok\nunsupported\n:object-format sha1\n\
             @refs/heads/main HEAD\n{hex} refs/heads/main\n\n"
        )
    );
    let (ok, out, err) = talk("capabilities\nconnect git-upload-pack\n");
    assert!(
        !ok && out == "fetch\npush\noption\nobject-format\n\n",
        "{out}"
    );
    assert!(err.contains("does not do"), "{err}");
}

/// Forks share: B clones A's repository, commits and pushes it under B's own key; B's
/// document lists A's bundle by its CID and adds one small bundle, and C, knowing only B,
/// clones the fork whole.
#[test]
fn a_fork_lists_the_bundles_it_was_cloned_from() {
    let (a, _da, b, db) = pair();
    let (ua, ub) = (User::new(), User::new());
    let ka = ua.cairn(&a, &["key", "gen", "profile"]).trim().to_owned();
    let kb = ub.cairn(&b, &["key", "gen", "profile"]).trim().to_owned();
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let src = w.join("src");
    rich_repo(&ua, &a, &src);
    let said = push(&ua, &a, &src, &[&format!("cairn://{ka}/demo"), "main"]);
    let mut upstream = document(&ua, &a, &snapshot(&said));
    // A's document also lists a bundle that claims A's commit and holds nothing of it (a
    // plain file): clones skip it (they have the commit by then), and no fork may list it.
    let liar = w.join("liar");
    std::fs::write(&liar, noise(1000, 4)).unwrap();
    let liar = put_bundle_raw(&ua, &a, &liar, &upstream.bundles[0].tips);
    let honest_bundles = upstream.bundles.clone();
    upstream.bundles.push(liar.clone());
    let doc_url = put_document(&ua, &a, w, &upstream);
    ua.cairn(
        &a,
        &[
            "profile",
            "set",
            &format!(
                "--repo=demo=/ipfs/{}",
                doc_url.trim_start_matches("cairn://")
            ),
        ],
    );

    let fork = w.join("fork");
    ub.ok(
        &b,
        w,
        &[
            "clone",
            "-q",
            &format!("cairn://{ka}/demo"),
            fork.to_str().unwrap(),
        ],
    );
    std::fs::write(fork.join("README"), "forked\n").unwrap();
    ub.ok(&b, &fork, &["commit", "-q", "-am", "fork"]);
    let said = push(
        &ub,
        &b,
        &fork,
        &[&format!("cairn://{kb}/demo"), "HEAD:refs/heads/main"],
    );
    let doc = document(&ub, &b, &snapshot(&said));
    assert_eq!(doc.bundles.len(), honest_bundles.len() + 1, "{doc:?}");
    assert_eq!(doc.bundles[..honest_bundles.len()], honest_bundles[..]);
    assert!(!doc.bundles.contains(&liar));
    assert!(
        doc.bundles.last().unwrap().size < 4096,
        "{:?}",
        doc.bundles.last()
    );

    let c = Root::new();
    let _dc = Daemon::start(&c, false, &["--bootstrap", &db.addr]);
    let cl = w.join("third");
    ub.ok(
        &c,
        w,
        &[
            "clone",
            "-q",
            &format!("cairn://{kb}/demo"),
            cl.to_str().unwrap(),
        ],
    );
    assert_eq!(objects(&ub, &c, &cl), objects(&ub, &b, &fork));
    ub.ok(&c, &cl, &["fsck", "--full", "--strict"]);
}

/// A delta bomb: a pack of 200 KB whose second object is a delta expanding a 64 KiB blob
/// to 9 GiB (one byte per 64 KiB copied). index-pack runs under an 8 GiB address-space
/// limit, so it dies asking for the memory instead of taking it; the clone fails saying so.
#[test]
fn a_delta_bomb_ends_index_pack_not_the_machine() {
    use sha1_checked::Digest;
    use std::io::Write;
    let (a, _da, u, work) = solo();
    let w = work.path();

    let zlib = |data: &[u8]| {
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(data).unwrap();
        z.finish().unwrap()
    };
    let entry_head = |kind: u8, mut size: u64| {
        let mut h = vec![(kind << 4) | (size & 0x0f) as u8];
        size >>= 4;
        while size > 0 {
            *h.last_mut().unwrap() |= 0x80;
            h.push((size & 0x7f) as u8);
            size >>= 7;
        }
        h
    };
    let varint = |mut v: u64| {
        let mut out = Vec::new();
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(b);
                return out;
            }
            out.push(b | 0x80);
        }
    };
    let base = noise(64 << 10, 5);
    let mut base_entry = entry_head(3, base.len() as u64);
    base_entry.extend(zlib(&base));
    let result: u64 = 9 << 30;
    let mut delta = varint(base.len() as u64);
    delta.extend(varint(result));
    delta.extend(std::iter::repeat_n(0x80u8, (result / (64 << 10)) as usize));
    let mut delta_entry = entry_head(6, delta.len() as u64);
    // The base's distance back, in git's offset encoding.
    let mut off = base_entry.len() as u64;
    let mut enc = vec![(off & 0x7f) as u8];
    off >>= 7;
    while off > 0 {
        off -= 1;
        enc.insert(0, 0x80 | (off & 0x7f) as u8);
        off >>= 7;
    }
    delta_entry.extend(enc);
    delta_entry.extend(zlib(&delta));
    let mut pack = b"PACK\0\0\0\x02\0\0\0\x02".to_vec();
    pack.extend(base_entry);
    pack.extend(delta_entry);
    let trailer = sha1_checked::Sha1::digest(&pack);
    pack.extend(trailer);
    let fake = vec![0xb0; 20];
    let mut bundle = format!(
        "# v2 git bundle\n{} refs/heads/main\n\n",
        cairn_git::bundle::hex(&fake)
    )
    .into_bytes();
    bundle.extend(pack);
    let path = w.join("bomb.bundle");
    std::fs::write(&path, &bundle).unwrap();
    assert!(bundle.len() < 300_000, "{}", bundle.len());
    let b = put_bundle(&u, &a, &path);
    let doc = Document {
        format: cairn_git::doc::Format::Sha1,
        head: "refs/heads/main".into(),
        refs: [("refs/heads/main".to_owned(), fake)].into(),
        bundles: vec![b],
    };
    let url = put_document(&u, &a, w, &doc);
    let e = u.fails(&a, w, &["clone", "-q", &url, "victim"]);
    assert!(e.contains("refused the pack"), "{e}");
    assert!(
        e.to_lowercase().contains("out of memory"),
        "not stopped by the memory limit:\n{e}"
    );
    assert!(!w.join("victim").exists());
}
