//! The first run from an empty node: entering a tree through the mount fetches its skeleton
//! (directories, file roots, app nodes) at once, so that listings and `stat` below it never
//! wait on the network; a skeleton over its limits, or a hostile tree, is fetched as read.

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use bytes::Bytes;
use cairn_store::{
    codec::{
        dagpb::{PbLink, PbNode},
        unixfs::{Data, DataType},
    },
    Cid, HashAlg,
};

use crate::{
    peers::Daemon,
    util::{eventually, Root},
};

/// Blocks the daemon started wanting since it started.
fn wanted(d: &Daemon) -> u64 {
    let s = d.stats();
    s["wanted"]
        .as_u64()
        .unwrap_or_else(|| panic!("no `wanted` counter: {s}"))
}

/// Waits until the daemon has no want open and its count of wants has not moved for a
/// second; returns that count.
fn settled(d: &Daemon) -> u64 {
    let mut last = (u64::MAX, Instant::now());
    let mut now = 0;
    eventually(60, "the skeleton to settle", || {
        let s = d.stats();
        now = s["wanted"].as_u64().unwrap();
        if now != last.0 || s["wants"].as_u64().unwrap() != 0 {
            last = (now, Instant::now());
        }
        last.1.elapsed() > Duration::from_secs(1)
    });
    now
}

/// A path relative to the walked directory, its kind (`d`, `f`, `l`) and size.
type Listed = (String, char, u64);

/// Every entry below `dir` with `lstat`'s kind and size, by path relative to `dir`, in
/// order; `Err` with the path of the first that failed.
fn walk(dir: &Path) -> Result<Vec<Listed>, (PathBuf, std::io::Error)> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let rd = std::fs::read_dir(&d).map_err(|e| (d.clone(), e))?;
        for e in rd {
            let e = e.map_err(|e| (d.clone(), e))?;
            let p = e.path();
            let m = std::fs::symlink_metadata(&p).map_err(|e| (p.clone(), e))?;
            let kind = if m.is_dir() {
                todo.push(p.clone());
                'd'
            } else if m.is_symlink() {
                'l'
            } else {
                'f'
            };
            let size = if m.is_dir() { 0 } else { m.len() };
            let rel = p.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
            out.push((rel, kind, size));
        }
    }
    out.sort();
    Ok(out)
}

/// 2,000 small files in 20 directories (raw leaves: each a raw block whose size only its
/// directory states), a few files of several blocks, a symlink, a subdirectory.
fn tree(at: &Path) {
    for d in 0..20 {
        let dir = at.join(format!("pkg{d:02}"));
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        for f in 0..100 {
            let body = format!("module {d}.{f}\n").repeat(1 + (d * 100 + f) % 37);
            std::fs::write(dir.join(format!("m{f:03}.py")), body).unwrap();
        }
        std::fs::write(dir.join("sub/data.bin"), vec![d as u8; 700_000]).unwrap();
        std::os::unix::fs::symlink("m000.py", dir.join("link")).unwrap();
    }
}

/// A node that has nothing enters a 2,000-file tree through its mount. Once the skeleton is
/// in, the only peer that has the tree stops: every entry below the root still lists and
/// `stat`s as on the source (sizes of raw files included) with no want started, and only
/// file contents are EIO.
#[test]
fn a_skeleton_keeps_a_tree_listable_without_its_peer() {
    let seed = Root::new();
    let src = seed.dir.path().join("tree");
    tree(&src);
    let cid = seed.add_q(&["-r", "--cid-version", "1", src.to_str().unwrap()]);
    let mut ds = Daemon::start(&seed, false, &[]);

    let reader = Root::new();
    let dr = Daemon::start(
        &reader,
        true,
        &["--bootstrap", &ds.addr, "--fetch-timeout", "2"],
    );
    let top = dr.mountpoint.clone().unwrap().join(&cid);
    // Entering the root: its skeleton comes at once.
    assert!(std::fs::metadata(&top).unwrap().is_dir());
    let before = settled(&dr);
    // The root, 20 directories, 20 subdirectories, 20 roots of multi-block files, and the
    // one symlink block the 20 links share: nothing else (no raw leaf, no file part).
    assert_eq!(
        before, 62,
        "the skeleton: the root, 20 directories, 20 subdirectories, 20 file roots, a symlink"
    );
    ds.kill9();

    let want = walk(&src).unwrap();
    assert_eq!(want.len(), 20 * 104);
    let got = walk(&top).unwrap_or_else(|(p, e)| panic!("{}: {e}", p.display()));
    assert_eq!(got, want, "the listing and stat of the tree");
    assert_eq!(wanted(&dr), before, "a listing or stat went to the network");
    assert_eq!(
        std::fs::read_link(top.join("pkg03/link")).unwrap(),
        Path::new("m000.py")
    );

    // File contents were not part of the skeleton: nobody has them now.
    let err = std::fs::read(top.join("pkg07/m010.py")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EIO), "{err}");
    let err = std::fs::read(top.join("pkg07/sub/data.bin")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EIO), "{err}");
}

/// A skeleton over the node's limits stops there: a chain of 400 nested directories under a
/// limit of 60 blocks, a directory of 3,000 files (a HAMT) under a limit of 64 KiB. Each
/// walk asks for no more than its limit allows, and the tree still reads in full as it is
/// read, from the peer.
#[test]
fn a_skeleton_over_its_limits_is_fetched_as_read() {
    let seed = Root::new();
    let chain = seed.dir.path().join("chain");
    let mut deepest = chain.clone();
    for i in 0..400 {
        deepest = deepest.join(format!("d{i}"));
    }
    std::fs::create_dir_all(&deepest).unwrap();
    std::fs::write(deepest.join("end"), b"the end\n").unwrap();
    let wide = seed.dir.path().join("wide");
    std::fs::create_dir_all(&wide).unwrap();
    for i in 0..3000 {
        std::fs::write(wide.join(format!("entry-{i:05}")), format!("{i}\n")).unwrap();
    }
    let chain_cid = seed.add_q(&["-r", chain.to_str().unwrap()]);
    let wide_cid = seed.add_q(&["-r", "--shard", wide.to_str().unwrap()]);
    let ds = Daemon::start(&seed, false, &[]);

    for (cid, config, limit) in [
        (&chain_cid, "skeleton_nodes = 60\n", 60),
        (&wide_cid, "skeleton_bytes = \"64K\"\n", 64 << 10),
    ] {
        let reader = Root::new();
        std::fs::write(reader.path().join("config.toml"), config).unwrap();
        let dr = Daemon::start(&reader, true, &["--bootstrap", &ds.addr]);
        let top = dr.mountpoint.clone().unwrap().join(cid);
        assert!(std::fs::metadata(&top).unwrap().is_dir());
        let n = settled(&dr);
        let (_, received) = dr.bytes();
        if limit == 60 {
            // The root's own want, and at most the limit's worth of the skeleton's.
            assert!((10..=61).contains(&n), "{n} wants for a limit of 60 blocks");
        } else {
            // The walk stops at the first block past the limit, with up to its window of
            // wants in flight: a shard or a file's block is a few hundred bytes.
            assert!(
                received >= limit,
                "{received} bytes: stopped before the limit"
            );
            assert!(received < 2 * limit + (256 << 10), "{received} bytes");
        }
        // Past the limit, the tree reads as it is read.
        let got = walk(&top).unwrap_or_else(|(p, e)| panic!("{}: {e}", p.display()));
        if limit == 60 {
            assert_eq!(got.len(), 401);
            let end = top.join(
                deepest
                    .strip_prefix(&chain)
                    .unwrap()
                    .join("end")
                    .to_str()
                    .unwrap(),
            );
            assert_eq!(std::fs::read(end).unwrap(), b"the end\n");
        } else {
            assert_eq!(got.len(), 3000);
        }
        assert!(wanted(&dr) > n, "nothing was fetched as read");
    }
}

/// A directory whose author lies about its raw children's sizes (a link's Tsize): shown as
/// stated while the block is not here (an honest importer writes the block's length), but
/// no read serves other bytes than the block's, and a size no single block could have is
/// not taken: that child is fetched to describe it.
#[test]
fn a_directory_lying_about_sizes_serves_only_verified_bytes() {
    let seed = Root::new();
    let body = b"twelve bytes".to_vec();
    let leaf = Cid::new_v1(0x55, HashAlg::Sha2_256.digest(&body));
    let other = b"another raw block\n".to_vec();
    let leaf2 = Cid::new_v1(0x55, HashAlg::Sha2_256.digest(&other));
    let dir = PbNode {
        links: vec![
            PbLink::new(leaf, "short", 5),
            PbLink::new(leaf2, "huge", 1 << 40),
        ],
        data: Some(Bytes::from(Data::new(DataType::Directory).encode())),
    }
    .encode();
    let dir_cid = Cid::new_v1(0x70, HashAlg::Sha2_256.digest(&dir));
    for (bytes, codec) in [(&body, "raw"), (&other, "raw"), (&dir, "dag-pb")] {
        let f = seed.dir.path().join("block");
        std::fs::write(&f, bytes).unwrap();
        seed.ok(&["block", "put", "--cid-codec", codec, f.to_str().unwrap()]);
    }
    let ds = Daemon::start(&seed, false, &[]);
    let reader = Root::new();
    let dr = Daemon::start(&reader, true, &["--bootstrap", &ds.addr]);
    let top = dr.mountpoint.clone().unwrap().join(dir_cid.to_string());
    assert!(std::fs::metadata(&top).unwrap().is_dir());
    settled(&dr);
    // The stated size, for a block not here; the bytes read are the block's, cut at it.
    assert_eq!(
        std::fs::symlink_metadata(top.join("short")).unwrap().len(),
        5
    );
    let got = std::fs::read(top.join("short")).unwrap();
    assert!(body.starts_with(&got) && !got.is_empty(), "{got:?}");
    // 2^40 bytes is no block: the child was read, and its own length is shown.
    assert_eq!(
        std::fs::symlink_metadata(top.join("huge")).unwrap().len(),
        other.len() as u64
    );
    assert_eq!(std::fs::read(top.join("huge")).unwrap(), other);
}

/// Random bytes from a seeded generator (no file of a test's is the same as another's).
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
    v
}

/// The first read of a file from a peer asks for the whole file when it is small (3 MiB,
/// twelve blocks: all of them come with the first 4 KiB read), and for a window ahead when
/// it is not (12 MiB: the first read brings some of its 48 blocks, not all).
#[test]
fn a_first_read_brings_a_small_file_whole() {
    let seed = Root::new();
    let small = seed.dir.path().join("small");
    let large = seed.dir.path().join("large");
    std::fs::write(&small, noise(3 << 20, 1)).unwrap();
    std::fs::write(&large, noise(12 << 20, 2)).unwrap();
    let small = seed.add_q(&[small.to_str().unwrap()]);
    let large = seed.add_q(&[large.to_str().unwrap()]);
    let ds = Daemon::start(&seed, false, &[]);

    let reader = Root::new();
    let dr = Daemon::start(&reader, true, &["--bootstrap", &ds.addr]);
    let first_4k = |cid: &str| {
        use std::io::Read;
        let mut f = std::fs::File::open(dr.mountpoint.clone().unwrap().join(cid)).unwrap();
        let mut b = vec![0u8; 4096];
        f.read_exact(&mut b).unwrap();
    };
    first_4k(&small);
    // The file root, then its twelve blocks.
    assert_eq!(settled(&dr), 13, "a 3 MiB file after its first 4 KiB");
    first_4k(&large);
    let large_blocks = settled(&dr) - 13;
    assert!(
        (2..49).contains(&large_blocks),
        "a 12 MiB file's first 4 KiB wanted {large_blocks} blocks (its root and 48 parts)"
    );
}

/// A 1 GiB file read through the mount from a peer: the read-ahead keeps the reading
/// daemon's memory bounded (its peak resident set stays under 256 MiB, a quarter of the file) and
/// every byte arrives as written.
#[test]
fn reading_a_large_file_from_a_peer_keeps_memory_bounded() {
    use std::io::Read;
    const SIZE: usize = 1 << 30;
    let seed = Root::new();
    let mut add = seed
        .cmd(&["add", "-Q", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = add.stdin.take().unwrap();
        for i in 0..(SIZE >> 24) {
            stdin.write_all(&noise(16 << 20, 100 + i as u64)).unwrap();
        }
    }
    let out = add.wait_with_output().unwrap();
    assert!(out.status.success());
    let cid = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let ds = Daemon::start(&seed, false, &[]);

    let reader = Root::new();
    let dr = Daemon::start(&reader, true, &["--bootstrap", &ds.addr]);
    let mut f = std::fs::File::open(dr.mountpoint.clone().unwrap().join(&cid)).unwrap();
    let mut buf = vec![0u8; 16 << 20];
    for i in 0..(SIZE >> 24) {
        f.read_exact(&mut buf).unwrap();
        assert!(buf == noise(16 << 20, 100 + i as u64), "chunk {i} differs");
    }
    assert_eq!(f.read(&mut buf).unwrap(), 0, "more than 1 GiB");
    let status = std::fs::read_to_string(format!("/proc/{}/status", dr.pid())).unwrap();
    let peak_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    eprintln!("reader's peak resident set: {} MiB", peak_kib >> 10);
    assert!(
        peak_kib < 256 << 10,
        "the reader's peak resident set was {} MiB",
        peak_kib >> 10
    );
}
