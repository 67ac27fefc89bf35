//! The FUSE mount, mounted for real by `cairn mount` and read with ordinary tools.

use std::{
    io::{Read, Seek, SeekFrom},
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::util::{cid_of, eventually, sha256_hex, shared, write_tree, Root};

/// True if a FUSE filesystem is mounted at `p` (from mountinfo: never blocks on the daemon).
fn is_fuse(p: &Path) -> bool {
    cairn_fuse::mount::is_mounted(p)
}

/// A running `cairn mount`; dropping it sends SIGTERM and checks the mount went away.
pub struct Mount {
    pub child: Option<Child>,
    pub dir: PathBuf,
    /// What `cairn mount` says on stderr after "mounted" (shown if it does not stop well).
    said: Option<std::sync::mpsc::Receiver<String>>,
}

impl Mount {
    pub fn start(root: &Root, extra: &[&str]) -> Mount {
        let dir = root.dir.path().join("mnt");
        Self::start_at(root, &dir, extra)
    }

    pub fn start_at(root: &Root, dir: &Path, extra: &[&str]) -> Mount {
        let mut args = vec!["mount", dir.to_str().unwrap()];
        args.extend_from_slice(extra);
        let mut child = root
            .cmd(&args)
            .env("RUST_LOG", "error")
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // `cairn mount` says "mounted" once the filesystem is up (a stale mount at the same
        // place can have the same mount ID and device, so mountinfo cannot tell them apart).
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                let _ = tx.send(line);
            }
        });
        let mut m = Mount {
            child: Some(child),
            dir: dir.to_owned(),
            said: None,
        };
        let start = Instant::now();
        let mut seen = Vec::new();
        loop {
            match rx.recv_timeout(Duration::from_millis(50)) {
                Ok(line) if line.starts_with("cairn: mounted") => break,
                Ok(line) => seen.push(line),
                Err(_) => {}
            }
            if let Some(status) = m.child.as_mut().unwrap().try_wait().unwrap() {
                m.child = None;
                panic!("cairn mount exited with {status}: {seen:?}");
            }
            if start.elapsed() > Duration::from_secs(20) {
                let _ = m.child.as_mut().unwrap().kill();
                panic!("mount did not appear at {}: {seen:?}", dir.display());
            }
        }
        assert!(is_fuse(dir));
        m.said = Some(rx);
        m
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    /// SIGTERM, and the process must exit and unmount on its own.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // SAFETY: sending a signal to our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let start = Instant::now();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                if !status.success() {
                    std::thread::sleep(Duration::from_millis(100));
                    let said: Vec<String> = self.said.iter().flat_map(|r| r.try_iter()).collect();
                    panic!("cairn mount exited with {status}; it said: {said:?}");
                }
                break;
            }
            if start.elapsed() > Duration::from_secs(20) {
                let _ = child.kill();
                panic!("cairn mount did not stop on SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(!is_fuse(&self.dir), "still mounted after SIGTERM");
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if std::thread::panicking() {
            if let Some(mut c) = self.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
            let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        } else {
            self.stop();
        }
    }
}

/// A directory's entry names, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

/// Waits (up to 10 s, past the listings' 1 s TTL) until `dir`'s names satisfy `ok`.
fn wait_names(dir: &Path, ok: impl Fn(&[String]) -> bool) -> Vec<String> {
    let start = Instant::now();
    loop {
        let n = names(dir);
        if ok(&n) {
            return n;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{}: {n:?}",
            dir.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn errno_of(r: std::io::Result<impl Sized>) -> Option<i32> {
    r.err().and_then(|e| e.raw_os_error())
}

fn read_range(p: &Path, off: u64, len: usize) -> std::io::Result<Vec<u8>> {
    read_range_with(p, off, len, 0)
}

/// Reads with O_DIRECT: the kernel asks for exactly this range instead of whole pages, so a
/// read can stay clear of a missing block that shares a page with it.
fn read_range_direct(p: &Path, off: u64, len: usize) -> std::io::Result<Vec<u8>> {
    read_range_with(p, off, len, libc::O_DIRECT)
}

fn read_range_with(p: &Path, off: u64, len: usize, flags: i32) -> std::io::Result<Vec<u8>> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(flags)
        .open(p)?;
    f.seek(SeekFrom::Start(off))?;
    let mut buf = vec![0; len];
    f.read_exact(&mut buf)?;
    Ok(buf)
}

/// Every fixture CAR's tree, read through the mount: files by content hash, directories by
/// their entries, symlinks by target, missing blocks as EIO without hanging.
#[test]
fn fixtures_read_through_the_mount() {
    let root = Root::new();
    let manifest: Vec<Value> = serde_json::from_str(
        &std::fs::read_to_string(shared().join("fixtures/manifest.json")).unwrap(),
    )
    .unwrap();
    let good: Vec<&Value> = manifest
        .iter()
        .filter(|e| {
            e.get("parse_error").is_none() && e["tree"].as_array().is_some_and(|t| !t.is_empty())
        })
        .filter(|e| !e["file"].as_str().unwrap().contains("tailing-corrupt"))
        .collect();
    for e in &good {
        let f = shared().join("fixtures").join(e["file"].as_str().unwrap());
        root.ok(&["dag", "import", f.to_str().unwrap()]);
    }
    let m = Mount::start(&root, &[]);
    let mut checked = 0;
    for e in &good {
        let file = e["file"].as_str().unwrap();
        // Each line: indentation, name, CID, description. Paths are built from the names; an
        // entry whose name cannot be a path component is read by its CID instead.
        let mut stack: Vec<String> = Vec::new();
        for line in e["tree"].as_array().unwrap() {
            let line = line.as_str().unwrap();
            let body = line.trim_start_matches(' ');
            if body.starts_with("...") {
                continue;
            }
            let depth = (line.len() - body.len()) / 2;
            let mut parts = body.splitn(3, "  ");
            let (name, cid, desc) = (
                parts.next().unwrap(),
                parts.next().unwrap(),
                parts.next().unwrap_or(""),
            );
            stack.truncate(depth);
            let path = if depth == 0 || name.contains('/') || stack.iter().any(|s| s.contains('/'))
            {
                m.path(cid)
            } else {
                let mut p = m.path(&stack[0]);
                for s in &stack[1..] {
                    p.push(s);
                }
                p.join(name)
            };
            stack.push(if depth == 0 {
                cid.to_owned()
            } else {
                name.to_owned()
            });
            let what = format!("{file}: {}", path.display());
            let present = root
                .path()
                .join("blocks")
                .join(cairn_store::block_name(
                    &cairn_store::parse_cid(cid).unwrap(),
                ))
                .exists();
            if desc.contains("[MISSING BLOCK]") && present {
                // Another fixture supplied it.
                assert!(std::fs::symlink_metadata(&path).is_ok(), "{what}");
            } else if desc.contains("[MISSING BLOCK]") {
                // The parent lists it, but its attributes cannot be read.
                assert_eq!(
                    errno_of(std::fs::metadata(&path)),
                    Some(libc::EIO),
                    "{what}"
                );
            } else if desc.contains("[content incomplete") {
                let size = std::fs::metadata(&path).unwrap().len();
                assert_eq!(errno_of(std::fs::read(&path)), Some(libc::EIO), "{what}");
                // Both ends are readable, the middle is not.
                assert_eq!(
                    read_range_direct(&path, 0, 1024).unwrap().len(),
                    1024,
                    "{what}"
                );
                assert_eq!(
                    read_range_direct(&path, size - 1024, 1024).unwrap().len(),
                    1024,
                    "{what}"
                );
                assert_eq!(
                    errno_of(read_range_direct(&path, 1500, 10)),
                    Some(libc::EIO),
                    "{what}"
                );
            } else if let Some(sha) = desc
                .split_whitespace()
                .find_map(|w| w.strip_prefix("sha256="))
            {
                let bytes = std::fs::read(&path).unwrap_or_else(|err| panic!("{what}: {err}"));
                assert!(sha256_hex(&bytes).starts_with(sha), "{what}");
                let len: usize = desc
                    .split_whitespace()
                    .find_map(|w| w.strip_prefix("len="))
                    .unwrap()
                    .parse()
                    .unwrap();
                assert_eq!(bytes.len(), len, "{what}");
            } else if let Some(target) = desc.strip_prefix("dag-pb Symlink -> ") {
                let got = std::fs::read_link(&path).unwrap();
                assert_eq!(format!("'{}'", got.display()), target, "{what}");
                assert!(std::fs::symlink_metadata(&path)
                    .unwrap()
                    .file_type()
                    .is_symlink());
            } else if desc.contains(" Directory ") || desc.contains("HAMTShard") {
                let n: usize = if desc.contains("HAMTShard") {
                    desc.split_whitespace()
                        .find_map(|w| w.strip_prefix("entries="))
                        .unwrap()
                        .parse()
                        .unwrap()
                } else {
                    desc.split_whitespace().nth(2).unwrap().parse().unwrap()
                };
                // Entries whose names are not file names (a '/' in them) are not shown.
                let unsafe_names = e["tree"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|l| {
                        let l = l.as_str().unwrap();
                        let b = l.trim_start_matches(' ');
                        (l.len() - b.len()) / 2 == depth + 1
                            && b.split("  ").next().unwrap().contains('/')
                    })
                    .count();
                let entries = std::fs::read_dir(&path)
                    .unwrap_or_else(|err| panic!("{what}: {err}"))
                    .count();
                assert_eq!(entries, n - unsafe_names, "{what}");
            } else if desc.contains(" block ") {
                let size: u64 = desc.split_whitespace().nth(2).unwrap().parse().unwrap();
                assert_eq!(std::fs::metadata(&path).unwrap().len(), size, "{what}");
                assert_eq!(std::fs::read(&path).unwrap().len() as u64, size, "{what}");
            }
            checked += 1;
        }
    }
    assert!(checked > 150, "{checked}");

    // The HAMT fixture: 1,000 entries, each found by name.
    let hamt = m.path("bafybeidbclfqleg2uojchspzd4bob56dqetqjsj27gy2cq3klkkgxtpn4i");
    let mut names: Vec<String> = std::fs::read_dir(&hamt)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names.len(), 1000);
    for i in 1..=1000 {
        assert_eq!(
            std::fs::metadata(hamt.join(format!("{i}.txt")))
                .unwrap()
                .len(),
            1026
        );
    }
    assert_eq!(
        errno_of(std::fs::metadata(hamt.join("1001.txt"))),
        Some(libc::ENOENT)
    );
    // Views: raw shows any block as a file, unixfs interprets it; CIDv0 and v1 both work.
    let v0 = "QmWvY6FaqFMS89YAQ9NAPjVP4WZKA1qbHbicc9HeSKQTgt";
    let v1 = cairn_store::block_name(&cairn_store::parse_cid(v0).unwrap());
    assert_eq!(
        std::fs::read(m.path(&format!("{v0}/foo"))).unwrap(),
        b"content\n"
    );
    assert_eq!(
        std::fs::read(m.path(&format!("unixfs/{v1}/foo"))).unwrap(),
        b"content\n"
    );
    assert!(std::fs::metadata(m.path(&format!("raw/{v0}")))
        .unwrap()
        .is_file());
    // The root lists the views and the imported (pinned) roots; an invalid CID is ENOENT.
    let top = self::names(&m.dir);
    let views = ["unixfs", "raw", "app", "webapp", "name"];
    assert!(views.iter().all(|v| top.iter().any(|n| n == v)), "{top:?}");
    for n in top.iter().filter(|n| !views.contains(&n.as_str())) {
        cairn_store::parse_cid(n).unwrap_or_else(|_| panic!("{n} in the root is not a CID"));
    }
    assert_eq!(
        errno_of(std::fs::metadata(m.path("not-a-cid"))),
        Some(libc::ENOENT)
    );
    assert_eq!(
        errno_of(std::fs::metadata(m.path(
            "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
        ))),
        Some(libc::ENOENT)
    );
}

/// A tree with an executable, symlinks, empty files and directories.
fn sample_tree(dir: &Path) {
    write_tree(
        dir,
        &[
            ("README", "a sample tree\n"),
            ("docs/guide.txt", &"guide line\n".repeat(5000)),
            ("docs/empty", ""),
            ("lib/data.bin", ""),
        ],
    );
    let big: Vec<u8> = (0..5_000_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(dir.join("lib/data.bin"), &big).unwrap();
    std::fs::create_dir_all(dir.join("emptydir")).unwrap();
    std::fs::create_dir_all(dir.join("bin")).unwrap();
    std::fs::write(dir.join("bin/hello"), "#!/bin/sh\necho hello from cairn\n").unwrap();
    std::fs::set_permissions(
        dir.join("bin/hello"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    std::os::unix::fs::symlink("../README", dir.join("docs/readme-link")).unwrap();
    std::os::unix::fs::symlink("/nonexistent/target", dir.join("dangling")).unwrap();
}

fn sh(cmd: &str) -> std::process::Output {
    let out = Command::new("sh").arg("-c").arg(cmd).output().unwrap();
    assert!(
        out.status.success(),
        "{cmd}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
fn ordinary_tools_see_the_added_tree() {
    let root = Root::new();
    let src = root.dir.path().join("src");
    sample_tree(&src);
    let cid = root.add_q(&[
        "-r",
        "--preserve-mode",
        "--preserve-mtime",
        src.to_str().unwrap(),
    ]);
    let m = Mount::start(&root, &[]);
    let mounted = m.path(&cid);
    let (s, t) = (src.display(), mounted.display());

    sh(&format!("diff -r --no-dereference {s} {t}"));
    // tar streams are identical: names, modes, owners, sizes, mtimes, symlinks, contents.
    let tar = |d: &str| {
        sh(&format!(
            "tar -C {d} --sort=name --numeric-owner --format=gnu -cf - ."
        ))
        .stdout
    };
    assert!(
        tar(&s.to_string()) == tar(&t.to_string()),
        "tar of the mount differs"
    );
    // Executables run from the mount.
    assert_eq!(sh(&format!("{t}/bin/hello")).stdout, b"hello from cairn\n");
    // ls -l, find, du, sha256sum, cp -a, rsync -a, mmap, xattr, df.
    sh(&format!("ls -lR {t} > /dev/null"));
    let count = |d: &str| String::from_utf8(sh(&format!("find {d} | wc -l")).stdout).unwrap();
    assert_eq!(count(&s.to_string()), count(&t.to_string()));
    sh(&format!("du -s {t}"));
    let sums = |d: &str| {
        sh(&format!(
            "cd {d} && find . -type f | sort | xargs sha256sum"
        ))
        .stdout
    };
    assert_eq!(sums(&s.to_string()), sums(&t.to_string()));
    let copy = root.dir.path().join("copy");
    sh(&format!("cp -a {t} {}", copy.display()));
    sh(&format!("diff -r --no-dereference {s} {}", copy.display()));
    let synced = root.dir.path().join("synced");
    sh(&format!("rsync -a {t}/ {}/", synced.display()));
    sh(&format!(
        "diff -r --no-dereference {s} {}",
        synced.display()
    ));
    let mm = sh(&format!(
        "python3 -c \"import mmap,hashlib;f=open('{t}/lib/data.bin','rb');m=mmap.mmap(f.fileno(),0,prot=mmap.PROT_READ);print(hashlib.sha256(m).hexdigest())\""
    ));
    let want = sha256_hex(&std::fs::read(src.join("lib/data.bin")).unwrap());
    assert_eq!(String::from_utf8(mm.stdout).unwrap().trim(), want);
    let x = sh(&format!("getfattr --only-values -n user.ipfs.cid {t}"));
    assert_eq!(String::from_utf8(x.stdout).unwrap(), cid);
    let df = String::from_utf8(sh(&format!("df -P {}", m.dir.display())).stdout).unwrap();
    assert!(df.contains("cairn"), "{df}");
    // Writes are refused.
    assert_eq!(
        errno_of(std::fs::write(mounted.join("new"), "x")),
        Some(libc::EROFS)
    );
    assert_eq!(
        errno_of(
            std::fs::OpenOptions::new()
                .write(true)
                .open(mounted.join("README"))
        ),
        Some(libc::EROFS)
    );
}

#[test]
fn sixty_four_concurrent_readers_agree() {
    let root = Root::new();
    let src = root.dir.path().join("src");
    let mut files = Vec::new();
    for i in 0..8u32 {
        let data: Vec<u8> = (0..(300_000 + i * 77_777))
            .map(|j| (j ^ (i * 31)).wrapping_mul(7) as u8)
            .collect();
        std::fs::create_dir_all(&src).unwrap();
        std::fs::write(src.join(format!("f{i}")), &data).unwrap();
        files.push(data);
    }
    let cid = root.add_q(&["-r", "--chunker=size-65536", src.to_str().unwrap()]);
    let m = Mount::start(&root, &[]);
    let base = m.path(&cid);
    std::thread::scope(|s| {
        for t in 0..64usize {
            let (base, files) = (&base, &files);
            s.spawn(move || {
                // Half read the same file, half read different ones; both whole and in pieces.
                let i = if t % 2 == 0 { 0 } else { t % files.len() };
                let p = base.join(format!("f{i}"));
                assert_eq!(&std::fs::read(&p).unwrap(), &files[i], "reader {t}");
                let off = (t * 4099) % (files[i].len() - 5000);
                assert_eq!(
                    read_range(&p, off as u64, 5000).unwrap(),
                    &files[i][off..off + 5000]
                );
            });
        }
    });
}

#[test]
fn a_flipped_byte_on_disk_is_eio_and_nothing_else_breaks() {
    let root = Root::new();
    let src = root.dir.path().join("src");
    write_tree(
        &src,
        &[
            ("good.txt", "still good\n"),
            ("bad.txt", "this block gets a flipped byte\n"),
        ],
    );
    let out = root.ok(&["add", "-r", "--cid-version=1", src.to_str().unwrap()]);
    let (top, bad) = (cid_of(&out, " src"), cid_of(&out, "src/bad.txt"));
    root.corrupt_block(&bad, 5);
    let m = Mount::start(&root, &[]);
    assert_eq!(
        errno_of(std::fs::read(m.path(&format!("{top}/bad.txt")))),
        Some(libc::EIO)
    );
    assert_eq!(
        std::fs::read(m.path(&format!("{top}/good.txt"))).unwrap(),
        b"still good\n"
    );
    assert_eq!(
        errno_of(std::fs::read(m.path(&format!("raw/{bad}")))),
        Some(libc::EIO)
    );
}

/// A leaf in the middle of a many-block file is corrupt: reads that cover any part of it
/// fail, reads beside it succeed, for dag-pb leaves (CIDv0) and raw leaves (CIDv1) alike.
/// Whole leaves go through the read path that verifies in the reply buffer, parts of leaves
/// through the node cache: both are covered.
#[test]
fn a_corrupt_middle_leaf_fails_only_the_reads_that_cover_it() {
    const CHUNK: usize = 4096;
    let root = Root::new();
    let data: Vec<u8> = (0..CHUNK * 10).map(|i| (i % 251) as u8).collect();
    let src = root.dir.path().join("big.bin");
    std::fs::write(&src, &data).unwrap();
    let other = root.dir.path().join("other.txt");
    std::fs::write(&other, "unharmed\n").unwrap();
    let other_cid = root.add_q(&[other.to_str().unwrap()]);
    for version in ["--cid-version=0", "--cid-version=1"] {
        let cid = root.add_q(&[version, "--chunker=size-4096", src.to_str().unwrap()]);
        let leaves: Vec<String> = root
            .ok(&["refs", &cid])
            .lines()
            .map(str::to_owned)
            .collect();
        assert_eq!(leaves.len(), 10, "{version}: {leaves:?}");
        let f = root.corrupt_block(&leaves[5], 100);

        let m = Mount::start(&root, &[]);
        let file = m.path(&cid);
        assert_eq!(errno_of(std::fs::read(&file)), Some(libc::EIO), "{version}");
        assert_eq!(
            read_range_direct(&file, 0, CHUNK * 5).unwrap(),
            data[..CHUNK * 5],
            "{version}: the leaves before"
        );
        assert_eq!(
            read_range_direct(&file, (CHUNK * 6) as u64, CHUNK * 4).unwrap(),
            data[CHUNK * 6..],
            "{version}: the leaves after"
        );
        for (off, len) in [
            (CHUNK * 4, CHUNK * 3),
            (CHUNK * 5 + 10, 100),
            (CHUNK * 5, CHUNK),
        ] {
            assert_eq!(
                errno_of(read_range_direct(&file, off as u64, len)),
                Some(libc::EIO),
                "{version}: {len} bytes at {off}"
            );
        }
        assert_eq!(std::fs::read(m.path(&other_cid)).unwrap(), b"unharmed\n");
        drop(m);
        std::fs::remove_file(&f).unwrap();
    }
}

/// A large raw block is listed and `stat`ed from its file's size, unread; its bytes are
/// still verified before anything is served, with and without FUSE passthrough (where the
/// kernel reads the block file itself once cairn has checked it).
#[test]
fn large_raw_blocks_are_described_unread_and_verified_when_read() {
    const SIZE: usize = 1 << 20;
    let root = Root::new();
    let src = root.dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    let good: Vec<u8> = (0..SIZE).map(|i| (i % 253) as u8).collect();
    let bad: Vec<u8> = (0..SIZE).map(|i| (i % 247) as u8).collect();
    std::fs::write(src.join("good.bin"), &good).unwrap();
    std::fs::write(src.join("bad.bin"), &bad).unwrap();
    let out = root.ok(&[
        "add",
        "-r",
        "--cid-version=1",
        "--chunker=size-1048576",
        src.to_str().unwrap(),
    ]);
    let (top, good_cid, bad_cid) = (
        cid_of(&out, " src"),
        cid_of(&out, "good.bin"),
        cid_of(&out, "bad.bin"),
    );
    assert!(bad_cid.starts_with("bafk"), "one raw block: {bad_cid}");
    root.corrupt_block(&bad_cid, SIZE / 2);

    for flags in [&[][..], &["--passthrough"][..]] {
        let m = Mount::start(&root, flags);
        let bad_path = m.path(&format!("{top}/bad.bin"));
        assert_eq!(
            std::fs::metadata(&bad_path).unwrap().len(),
            SIZE as u64,
            "{flags:?}: stat needs no read"
        );
        assert_eq!(
            errno_of(std::fs::read(&bad_path)),
            Some(libc::EIO),
            "{flags:?}"
        );
        assert_eq!(
            errno_of(std::fs::read(m.path(&format!("raw/{bad_cid}")))),
            Some(libc::EIO),
            "{flags:?}"
        );
        assert_eq!(
            std::fs::read(m.path(&format!("{top}/good.bin"))).unwrap(),
            good,
            "{flags:?}"
        );
        assert_eq!(
            std::fs::read(m.path(&format!("raw/{good_cid}"))).unwrap(),
            good,
            "{flags:?}"
        );
        // O_DIRECT asks cairn for exactly this part of the leaf; through passthrough it
        // would reach ext4, which wants aligned direct reads.
        let part = if flags.is_empty() {
            read_range_direct(&m.path(&good_cid), 1000, 5000)
        } else {
            read_range(&m.path(&good_cid), 1000, 5000)
        };
        assert_eq!(
            part.unwrap(),
            good[1000..6000],
            "{flags:?}: a part of a leaf"
        );
    }
}

#[test]
fn kill_9_then_mount_again_needs_no_cleanup() {
    let root = Root::new();
    let f = root.dir.path().join("f.txt");
    std::fs::write(&f, "survives\n").unwrap();
    let cid = root.add_q(&[f.to_str().unwrap()]);
    let mut m = Mount::start(&root, &[]);
    assert_eq!(std::fs::read(m.path(&cid)).unwrap(), b"survives\n");
    let mut child = m.child.take().unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    let errno = errno_of(std::fs::read_dir(&m.dir));
    assert!(
        cairn_fuse::mount::is_stale_errno(errno),
        "a stale mount is left: {errno:?}"
    );
    let m2 = Mount::start(&root, &[]);
    assert_eq!(std::fs::read(m2.path(&cid)).unwrap(), b"survives\n");
    drop(m2);
    drop(m);
}

#[test]
fn forgotten_inodes_leave_the_table() {
    let root = Root::new();
    let src = root.dir.path().join("src");
    let files: Vec<(String, String)> = (0..500)
        .map(|i| (format!("f{i}"), format!("{i}\n")))
        .collect();
    write_tree(&src, &files);
    let cid = root.add_q(&["-r", src.to_str().unwrap()]);
    let m = Mount::start(&root, &[]);
    let inodes = || inodes_in(&m.dir);
    for i in 0..500 {
        std::fs::metadata(m.path(&format!("{cid}/f{i}"))).unwrap();
    }
    let after_stat = inodes();
    assert!(after_stat >= 500, "{after_stat}");
    // Dropping the kernel's dentries and inodes makes it send FORGET for them.
    std::fs::write("/proc/sys/vm/drop_caches", "2").unwrap();
    let start = Instant::now();
    while inodes() > 50 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "inodes stayed at {}",
            inodes()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Opens and closes of passthrough files from several threads at once never deadlock. An
/// open held the backing-file table while it recorded its handle, and a release held the
/// handle table while it dropped its backing file: one of each at the same moment waited on
/// each other for ever, and so did every later open (CI hung on it once).
#[test]
fn passthrough_opens_and_releases_side_by_side() {
    let root = Root::new();
    let src = root.dir.path().join("src");
    let files: Vec<(String, String)> = (0..4)
        .map(|i| (format!("f{i}"), format!("{i}").repeat(1000)))
        .collect();
    write_tree(&src, &files);
    let cid = root.add_q(&["-r", "--cid-version=1", src.to_str().unwrap()]);
    let m = Mount::start(&root, &["--passthrough"]);
    let (done, finished) = std::sync::mpsc::channel();
    for t in 0..4 {
        let (done, path) = (done.clone(), m.path(&format!("{cid}/f{}", t % 2)));
        let want = files[t % 2].1.clone();
        std::thread::spawn(move || {
            for _ in 0..2000 {
                assert_eq!(std::fs::read_to_string(&path).unwrap(), want);
            }
            done.send(()).unwrap();
        });
    }
    for _ in 0..4 {
        finished
            .recv_timeout(Duration::from_secs(60))
            .expect("readers of passthrough files hung");
    }
}

/// A listing carries attributes only for a caller that reads them. `find` reads names and
/// kinds: walking 160 files instantiates no inode for any of them (each READDIRPLUS reply
/// with attributes makes the kernel build an inode and a dentry per entry, which cost `find`
/// five times its whole walk on ext4). A caller that has `stat`ed a file gets them: its
/// listing of a directory not listed before brings every entry's inode. (The kernel keeps
/// what a listing returned, attributes or not, for the next caller: `e` is left out of the
/// walk so that its listing reaches cairn.)
#[test]
fn listings_carry_attributes_for_callers_that_read_them() {
    let root = Root::new();
    let src = root.dir.path().join("src");
    let files: Vec<(String, String)> = ["a", "b", "c", "d", "e"]
        .iter()
        .flat_map(|d| (0..40).map(move |i| (format!("{d}/f{i:02}"), format!("{d}{i}\n"))))
        .collect();
    write_tree(&src, &files);
    let cid = root.add_q(&["-r", src.to_str().unwrap()]);
    let m = Mount::start(&root, &[]);
    let base = m.path(&cid);
    let walked = ["a", "b", "c", "d"].map(|d| base.join(d).display().to_string());
    let before = inodes_in(&m.dir);
    let found = sh(&format!("find {} -type f | sort", walked.join(" "))).stdout;
    let found = String::from_utf8(found).unwrap();
    assert_eq!(found.lines().count(), 160, "{found}");
    let after_find = inodes_in(&m.dir);
    assert!(
        after_find <= before + 8,
        "find instantiated {} inodes for 5 directories",
        after_find - before
    );
    // This thread reads attributes: it `stat`s the files of `a`. Its listing of `e` then
    // comes with every entry's attributes. (Counted as sent, not as inodes held: under
    // memory pressure the kernel forgets the inodes of `a` meanwhile, and CI saw the count
    // stand still.)
    let (a, e, mount) = (base.join("a"), base.join("e"), m.dir.clone());
    std::thread::spawn(move || {
        for f in std::fs::read_dir(&a).unwrap() {
            let md = std::fs::symlink_metadata(f.unwrap().path()).unwrap();
            assert!(md.is_file());
        }
        let before_e = counter(&mount, "plus");
        let listed: Vec<_> = std::fs::read_dir(&e)
            .unwrap()
            .map(|f| f.unwrap().file_type().unwrap().is_file())
            .collect();
        assert_eq!(listed, vec![true; 40]);
        let after_e = counter(&mount, "plus");
        assert!(
            after_e >= before_e + 40,
            "listing e sent {} entries with attributes",
            after_e - before_e
        );
    })
    .join()
    .unwrap();
}

/// A directory's `st_blksize` is room for its whole listing with attributes (glibc sizes its
/// `getdents` buffer by it, 32 KiB to 1 MiB, and the kernel allocates that much for every
/// READDIR), and its size is its number of entries; files advertise 1 MiB I/O. So a caller
/// that reads attributes (`du`) gets all 1,500 entries of a large directory with them in one
/// listing (with 32 KiB buffers, the first 150: the kernel asks for the rest plainly, and
/// `du` paid a LOOKUP for each), while a small directory asks for no more than 32 KiB (at
/// 1 MiB for all, a third of `find`'s time over small directories went to allocating pages).
#[test]
fn directories_ask_for_listing_buffers_their_size() {
    use std::os::unix::fs::MetadataExt;
    let root = Root::new();
    let src = root.dir.path().join("src");
    let mut files: Vec<(String, String)> = (0..1500)
        .map(|i| {
            (
                format!("big/a-long-name-for-a-file-{i:05}"),
                format!("{i}\n"),
            )
        })
        .collect();
    files.extend(["a", "b", "c"].map(|n| (format!("small/{n}"), format!("{n}\n"))));
    write_tree(&src, &files);
    let cid = root.add_q(&["-r", src.to_str().unwrap()]);
    let m = Mount::start(&root, &[]);
    let (big, small) = (
        m.path(&format!("{cid}/big")),
        m.path(&format!("{cid}/small")),
    );
    let md = std::fs::metadata(&big).unwrap();
    assert_eq!((md.blksize(), md.len(), md.blocks()), (512 << 10, 1500, 0));
    let md = std::fs::metadata(&small).unwrap();
    assert_eq!((md.blksize(), md.len()), (4096, 3));
    assert_eq!(m.dir.metadata().unwrap().blksize(), 4096);
    assert_eq!(
        std::fs::metadata(small.join("a")).unwrap().blksize(),
        1 << 20
    );
    let mount = m.dir.clone();
    std::thread::spawn(move || {
        // A caller that reads attributes (it looked up a file), listing `big` whole first
        // and then `stat`ing, as `du` does.
        std::fs::symlink_metadata(small.join("b")).unwrap();
        let before = inodes_in(&mount);
        assert_eq!(std::fs::read_dir(&big).unwrap().count(), 1500);
        let listed = inodes_in(&mount) - before;
        assert!(listed >= 1500, "{listed} entries came with attributes");
    })
    .join()
    .unwrap();
}

/// `user.cairn.inodes` of the mount at `mount`: the inodes the kernel holds of it.
fn inodes_in(mount: &Path) -> usize {
    counter(mount, "inodes")
}

/// One of the mount root's counters, `user.cairn.{name}`.
fn counter(mount: &Path, name: &str) -> usize {
    let out = sh(&format!(
        "getfattr --only-values -n user.cairn.{name} {}",
        mount.display()
    ));
    String::from_utf8(out.stdout).unwrap().parse().unwrap()
}

/// Invariant: an inode belongs to one (view, path), never to a CID. One block reached through
/// two views, or under two names of one directory, gets an inode for each: a view that
/// rewrites bytes (the app view) must never share page cache with one that does not. The same
/// path keeps its inode.
#[test]
fn inodes_are_per_view_and_path_never_per_cid() {
    use std::os::unix::fs::MetadataExt;
    let root = Root::new();
    let src = root.dir.path().join("src");
    write_tree(
        &src,
        &[
            ("a.txt", "same bytes\n"),
            ("b.txt", "same bytes\n"),
            ("c.txt", "other\n"),
        ],
    );
    let dir = root.add_q(&["-r", "--cid-version=1", src.to_str().unwrap()]);
    let m = Mount::start(&root, &[]);
    let cid_of = |rel: &str| {
        String::from_utf8(
            sh(&format!(
                "getfattr --only-values -n user.ipfs.cid {}",
                m.path(rel).display()
            ))
            .stdout,
        )
        .unwrap()
    };
    let leaf = cid_of(&format!("{dir}/a.txt"));
    assert_eq!(
        leaf,
        cid_of(&format!("{dir}/b.txt")),
        "one block, two names"
    );
    let paths = [
        format!("{dir}/a.txt"),
        format!("{dir}/b.txt"),
        format!("unixfs/{dir}/a.txt"),
        format!("unixfs/{leaf}"),
        format!("raw/{leaf}"),
        leaf.clone(),
    ];
    let inos: Vec<u64> = paths
        .iter()
        .map(|p| std::fs::metadata(m.path(p)).unwrap().ino())
        .collect();
    for (i, a) in inos.iter().enumerate() {
        for (j, b) in inos.iter().enumerate().skip(i + 1) {
            assert_ne!(a, b, "{} and {} share an inode", paths[i], paths[j]);
        }
    }
    for (p, ino) in paths.iter().zip(&inos) {
        assert_eq!(
            std::fs::metadata(m.path(p)).unwrap().ino(),
            *ino,
            "{p} moved"
        );
        assert_eq!(std::fs::read(m.path(p)).unwrap(), b"same bytes\n");
    }
}

/// The mount root and each view root list the views and the pinned roots (the root in each
/// CID's default view), and follow pins as they are made and removed, by cairn or by `ln -s`.
/// Unpinned content is not listed but is there by name.
#[test]
fn roots_list_views_and_pins() {
    let root = Root::new();
    let file = |name: &str, body: &str| {
        let p = root.dir.path().join(name);
        std::fs::write(&p, body).unwrap();
        p.to_str().unwrap().to_owned()
    };
    let pinned = root.add_q(&[&file("a", "pinned\n")]);
    let loose = root.add_q(&["--pin=false", &file("b", "not pinned\n")]);
    let raw = root.add_q(&["--pin=false", "--cid-version=1", &file("c", "raw\n")]);
    write_tree(&root.dir.path().join("d"), &[("inside", "x")]);
    let dir = root.add_q(&[
        "--pin=false",
        "-r",
        root.dir.path().join("d").to_str().unwrap(),
    ]);
    // Pins, and so the listings, name CIDs in their canonical CIDv1 form.
    let pinned = cairn_store::block_name(&cairn_store::parse_cid(&pinned).unwrap());
    let m = Mount::start(&root, &[]);
    let mut want = vec![
        pinned.clone(),
        "app".into(),
        "name".into(),
        "raw".into(),
        "unixfs".into(),
        "webapp".into(),
    ];
    want.sort();
    assert_eq!(names(&m.dir), want);
    assert_eq!(names(&m.path("unixfs")), vec![pinned.clone()]);
    assert_eq!(names(&m.path("raw")), vec![pinned.clone()]);
    // Not an app: the app views list only app nodes of their kind.
    assert!(names(&m.path("app")).is_empty());
    assert!(names(&m.path("webapp")).is_empty());
    // Names: none followed and no aliases, without a daemon.
    assert!(names(&m.path("name")).is_empty());
    assert_eq!(std::fs::read(m.path(&loose)).unwrap(), b"not pinned\n");
    // Listing a content directory makes the kernel cache directory listings from then on
    // (stateless opendir); the root's must still follow the pins.
    assert_eq!(names(&m.path(&dir)), ["inside"]);
    assert_eq!(
        errno_of(std::fs::metadata(m.path(&format!("{dir}/nope")))),
        Some(libc::ENOENT)
    );
    assert_eq!(names(&m.dir), want);

    // A pin made with plain ln -s shows up within the listings' TTL.
    let pins = root.path().join("pins/per-user/someone/by-hand");
    std::fs::create_dir_all(&pins).unwrap();
    std::os::unix::fs::symlink(root.path().join("store").join(&raw), pins.join(&raw)).unwrap();
    wait_names(&m.dir, |n| n.contains(&raw));
    assert_eq!(std::fs::read(m.path(&raw)).unwrap(), b"raw\n");

    // Unpinned, it leaves the listings; it is still there by name until gc.
    root.ok(&["pin", "rm", &pinned]);
    let after = wait_names(&m.dir, |n| !n.contains(&pinned));
    assert!(after.contains(&raw), "{after:?}");
    assert!(!names(&m.path("unixfs")).contains(&pinned));
    assert_eq!(std::fs::read(m.path(&pinned)).unwrap(), b"pinned\n");
}

/// A setuid-root program in the store gives nobody root: the mount is nosuid (and nodev),
/// whoever mounts it, since its content may come from strangers.
#[test]
fn a_setuid_program_in_the_store_runs_without_privilege() {
    let root = Root::new();
    std::fs::set_permissions(root.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let dir = root.dir.path().join("suid");
    std::fs::create_dir(&dir).unwrap();
    std::fs::copy("/usr/bin/id", dir.join("id")).unwrap();
    std::fs::set_permissions(dir.join("id"), std::fs::Permissions::from_mode(0o4755)).unwrap();
    let cid = root.add_q(&["-r", "--preserve-mode", dir.to_str().unwrap()]);
    let m = Mount::start(&root, &[]);
    let id = m.path(&format!("{cid}/id"));
    assert_eq!(
        std::fs::metadata(&id).unwrap().permissions().mode() & 0o7777,
        0o4755,
        "the bit is shown as stored"
    );
    let out = Command::new("setpriv")
        .args(["--reuid", "nobody", "--regid", "nogroup", "--clear-groups"])
        .arg(&id)
        .arg("-u")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let uid = String::from_utf8(out.stdout).unwrap();
    assert_ne!(uid.trim(), "0", "a stored setuid bit made nobody root");
}

/// A fresh mount lists and `stat`s from the index: with every file's block corrupted on
/// disk, `ls -l` still shows each name, kind, size and mode (nothing is read to get them),
/// while reading a file is EIO. Before attributes were kept in the index, each entry's block
/// was read (and found corrupt) to describe it.
#[test]
fn listings_and_stat_come_from_the_index_without_reading_blocks() {
    let root = Root::new();
    let src = root.dir.path().join("src");
    let mut files = Vec::new();
    for i in 0..40 {
        let body = format!("file {i} {}\n", "x".repeat(i * 10));
        files.push((format!("f{i:02}"), body));
    }
    write_tree(&src, &files);
    std::fs::set_permissions(src.join("f07"), std::fs::Permissions::from_mode(0o750)).unwrap();
    std::os::unix::fs::symlink("f01", src.join("link")).unwrap();
    let out = root.ok(&["add", "-r", "--preserve-mode", src.to_str().unwrap()]);
    let dir = cid_of(&out, " src");
    let blocks: Vec<PathBuf> = files
        .iter()
        .map(|(name, _)| root.corrupt_block(&cid_of(&out, &format!("src/{name}")), 3))
        .collect();
    // Nothing of the files' blocks in the page cache: what the mount reads shows below.
    std::fs::write("/proc/sys/vm/drop_caches", "3").unwrap();
    let m = Mount::start(&root, &[]);
    let base = m.path(&dir);
    let mut seen = 0;
    for (name, body) in &files {
        let md = std::fs::symlink_metadata(base.join(name))
            .unwrap_or_else(|e| panic!("stat {name}: {e}"));
        assert!(md.is_file(), "{name}");
        assert_eq!(md.len(), body.len() as u64, "{name}");
        let want = if name == "f07" { 0o750 } else { 0o644 };
        assert_eq!(md.permissions().mode() & 0o777, want, "{name}");
        seen += 1;
    }
    assert_eq!(seen, 40);
    assert_eq!(
        std::fs::read_link(base.join("link")).unwrap(),
        Path::new("f01")
    );
    let listed = std::fs::read_dir(&base).unwrap().count();
    assert_eq!(listed, 41);
    // Not even prefetched: the listing was answered from the index, and prefetching the
    // files' blocks would read every file of a tree that `find` walks.
    std::thread::sleep(Duration::from_millis(300));
    let cached = sh(&format!(
        "fincore --noheadings --output PAGES {}",
        blocks
            .iter()
            .map(|b| b.display().to_string())
            .collect::<Vec<_>>()
            .join(" ")
    ))
    .stdout;
    let pages: u64 = String::from_utf8(cached)
        .unwrap()
        .split_whitespace()
        .map(|n| n.parse::<u64>().unwrap())
        .sum();
    assert_eq!(
        pages, 0,
        "pages of the files' blocks read by a listing and stats"
    );
    assert_eq!(
        errno_of(std::fs::read(base.join("f05"))),
        Some(libc::EIO),
        "the corrupt block is still caught when read"
    );
}

/// Reading one file of a small directory brings its siblings' blocks from disk into the
/// page cache (a loader opens a directory's libraries one after another; on a cold disk
/// their reads then go together); a directory of more than 256 entries is left alone.
#[test]
fn reading_a_file_brings_its_siblings_from_disk() {
    let root = Root::new();
    let src = root.dir.path().join("src");
    let mut files: Vec<(String, String)> = (0..40)
        .map(|i| (format!("lib/f{i:02}"), format!("{i}\n").repeat(3000)))
        .collect();
    files.extend((0..300).map(|i| (format!("big/f{i:03}"), format!("b{i}\n").repeat(3000))));
    write_tree(&src, &files);
    let out = root.ok(&["add", "-r", src.to_str().unwrap()]);
    let dir = cid_of(&out, " src");
    let block = |name: &str| {
        root.path().join("blocks").join(cairn_store::block_name(
            &cairn_store::parse_cid(&cid_of(&out, &format!("src/{name}"))).unwrap(),
        ))
    };
    let pages = |names: &[String]| -> u64 {
        let list: Vec<String> = names
            .iter()
            .map(|n| block(n).display().to_string())
            .collect();
        let cached = sh(&format!(
            "fincore --noheadings --output PAGES {}",
            list.join(" ")
        ))
        .stdout;
        String::from_utf8(cached)
            .unwrap()
            .split_whitespace()
            .map(|n| n.parse::<u64>().unwrap())
            .sum()
    };
    let lib: Vec<String> = (1..40).map(|i| format!("lib/f{i:02}")).collect();
    let big: Vec<String> = (1..300).map(|i| format!("big/f{i:03}")).collect();
    // Written back first: drop_caches leaves dirty pages where they are.
    sh("sync");
    std::fs::write("/proc/sys/vm/drop_caches", "3").unwrap();
    let m = Mount::start(&root, &[]);
    let base = m.path(&dir);
    assert_eq!((pages(&lib), pages(&big)), (0, 0));
    assert_eq!(
        std::fs::read(base.join("lib/f00")).unwrap(),
        files[0].1.as_bytes()
    );
    assert_eq!(
        std::fs::read(base.join("big/f000")).unwrap(),
        files[40].1.as_bytes()
    );
    eventually(10, "the 39 siblings' blocks in the page cache", || {
        pages(&lib) >= 39 * 2
    });
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(pages(&big), 0, "a directory of 300 entries was prefetched");
}

/// `close` costs no round trip: the first FLUSH is answered ENOSYS and the kernel sends no
/// more (answering them cost a round trip per close, a fifth of small-file throughput).
#[test]
fn closing_files_costs_one_flush_per_mount() {
    let root = Root::new();
    let src = root.dir.path().join("src");
    write_tree(&src, &[("a", "a\n"), ("b", "b\n")]);
    let cid = root.add_q(&["-r", src.to_str().unwrap()]);
    let m = Mount::start(&root, &[]);
    for _ in 0..100 {
        for name in ["a", "b"] {
            std::fs::read(m.path(&format!("{cid}/{name}"))).unwrap();
        }
    }
    let flushes: u64 = String::from_utf8(
        sh(&format!(
            "getfattr --only-values -n user.cairn.flushes {}",
            m.dir.display()
        ))
        .stdout,
    )
    .unwrap()
    .parse()
    .unwrap();
    assert!(flushes <= 1, "{flushes} FLUSH requests for 200 closes");
}

/// Everything a walk of `dir` sees, in listing order: per entry its path, kind, mode, size,
/// mtime, link count, symlink target, content hash and `user.ipfs.cid`.
fn walk_all(dir: &Path) -> Vec<String> {
    use std::os::unix::fs::MetadataExt;
    let mut out = Vec::new();
    let mut todo = vec![PathBuf::new()];
    while let Some(rel) = todo.pop() {
        for e in std::fs::read_dir(dir.join(&rel)).unwrap() {
            let e = e.unwrap();
            let rel = rel.join(e.file_name());
            let p = dir.join(&rel);
            let m = std::fs::symlink_metadata(&p).unwrap();
            assert_eq!(e.file_type().unwrap(), m.file_type(), "{}", rel.display());
            let what = if m.is_dir() {
                todo.push(rel.clone());
                String::new()
            } else if m.file_type().is_symlink() {
                std::fs::read_link(&p).unwrap().display().to_string()
            } else {
                sha256_hex(&std::fs::read(&p).unwrap())
            };
            let cid = Command::new("getfattr")
                .args(["--only-values", "-h", "-n", "user.ipfs.cid"])
                .arg(&p)
                .output()
                .unwrap()
                .stdout;
            out.push(format!(
                "{} {:o} {} {}.{} {} {what} {}",
                rel.display(),
                m.mode(),
                m.size(),
                m.mtime(),
                m.mtime_nsec(),
                m.nlink(),
                String::from_utf8_lossy(&cid)
            ));
        }
    }
    out
}

fn uring_requests(m: &Mount) -> u64 {
    String::from_utf8(
        sh(&format!(
            "getfattr --only-values -n user.cairn.uring {}",
            m.dir.display()
        ))
        .stdout,
    )
    .unwrap()
    .parse()
    .unwrap()
}

/// The io_uring queues answer every request as fuser's `/dev/fuse` threads do: the same
/// walk (listings over several pages, attributes, times before and after the epoch, symlinks,
/// reads of up to 1 MiB, xattrs) gives the same result through both, and the errors agree.
#[test]
fn io_uring_queues_serve_what_dev_fuse_serves() {
    assert!(
        cairn_fuse::uring::enabled(),
        "FUSE over io_uring is off: echo 1 > /sys/module/fuse/parameters/enable_uring \
         (scripts/test.sh does; it needs Linux 6.14+)"
    );
    let root = Root::new();
    let src = root.dir.path().join("src");
    let names: Vec<(String, String)> = (0..300)
        .map(|i| {
            (
                format!("big/entry-with-a-longish-name-{i:04}"),
                format!("{i}\n"),
            )
        })
        .collect();
    let mut files: Vec<(&str, &str)> = names
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    files.extend([("a/b/c/deep.txt", "deep\n"), ("empty", "")]);
    write_tree(&src, &files);
    let large: Vec<u8> = (0..3_500_000u32)
        .map(|i| (i * 7 + i / 1000) as u8)
        .collect();
    std::fs::write(src.join("a/large.bin"), &large).unwrap();
    std::fs::set_permissions(
        src.join("a/b/c/deep.txt"),
        std::fs::Permissions::from_mode(0o751),
    )
    .unwrap();
    std::os::unix::fs::symlink("b/c/deep.txt", src.join("a/link")).unwrap();
    sh(&format!(
        "touch -d '1969-07-20 20:17:40.5 UTC' {0}/empty && touch -d '2038-01-19 03:14:08.25 UTC' {0}/a/large.bin",
        src.display()
    ));
    let cid = root.add_q(&[
        "-r",
        "--preserve-mode",
        "--preserve-mtime",
        src.to_str().unwrap(),
    ]);

    let mut seen = Vec::new();
    for extra in [&[][..], &["--no-uring"][..]] {
        let m = Mount::start(&root, extra);
        let tree = m.path(&cid);
        let walk = walk_all(&tree);
        assert_eq!(walk.len(), 300 + 8, "{walk:?}");
        assert_eq!(std::fs::read(tree.join("a/large.bin")).unwrap(), large);
        let errors = [
            errno_of(std::fs::metadata(tree.join("a/missing"))),
            errno_of(
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(tree.join("empty")),
            ),
            errno_of(std::fs::read_link(tree.join("empty"))),
            errno_of(std::fs::read_dir(tree.join("empty"))),
        ];
        assert_eq!(
            errors,
            [
                Some(libc::ENOENT),
                Some(libc::EROFS),
                Some(libc::EINVAL),
                Some(libc::ENOTDIR)
            ],
            "{extra:?}"
        );
        // statfs; listxattr on a file and on the mount root; an ioctl (isatty: ENOTTY).
        let more = sh(&format!(
            "stat -f -c '%s %l %S' {0}; getfattr -h -d -m - {0}/a/large.bin {1} | grep -v -e inodes -e uring; \
             python3 -c 'import os; print(os.isatty(os.open(\"{0}/empty\", os.O_RDONLY)))'",
            tree.display(),
            m.dir.display()
        ))
        .stdout;
        seen.push((walk, more, uring_requests(&m)));
    }
    let (uring, classic) = (&seen[0], &seen[1]);
    assert!(uring.2 > 300, "{} requests came through io_uring", uring.2);
    assert_eq!(classic.2, 0, "--no-uring still used the queues");
    assert_eq!(uring.0, classic.0);
    assert_eq!(
        String::from_utf8_lossy(&uring.1),
        String::from_utf8_lossy(&classic.1)
    );
    assert!(
        String::from_utf8_lossy(&uring.1).contains("user.ipfs.cid=\"Qm"),
        "{}",
        String::from_utf8_lossy(&uring.1)
    );

    // io_uring refused to everyone (the sysctl, as a seccomp profile or a container would):
    // the queues cannot be made, INIT does not ask for them, and the mount serves through
    // /dev/fuse. (Asking first and failing after held every request back for good.) Other
    // tests' mounts meanwhile fall back the same way; none of them checks its transport.
    struct Restore(String);
    impl Drop for Restore {
        fn drop(&mut self) {
            let _ = std::fs::write("/proc/sys/kernel/io_uring_disabled", &self.0);
        }
    }
    let _restore = Restore(std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled").unwrap());
    std::fs::write("/proc/sys/kernel/io_uring_disabled", "2").unwrap();
    let m = Mount::start(&root, &[]);
    sh(&format!(
        "timeout 10 ls -lR {} > /dev/null",
        m.path(&cid).display()
    ));
    assert_eq!(walk_all(&m.path(&cid)), classic.0);
    assert_eq!(uring_requests(&m), 0);
    assert!(
        uring
            .0
            .iter()
            .any(|l| l.starts_with("empty 100644 0 -14182940.500000000")),
        "{:?}",
        uring.0
    );
}
