//! Hostile input, end to end: DAGs built to explode a walk, broken journals and CARs, a stale
//! ready-pipe variable, a machine without `/proc`. Each test names the defect it guards
//! against; each failed before its fix.

use std::{
    io::Read,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use bytes::Bytes;
use cairn_store::{
    codec::dagpb::{PbLink, PbNode},
    Cid, HashAlg,
};
use cairn_unixfs::{
    car::CarWriter,
    data::{Data, DataType},
};

use crate::{
    mount::Mount,
    util::{sha256_hex, Root},
};

fn raw(data: &[u8]) -> Cid {
    Cid::new_v1(0x55, HashAlg::Sha2_256.digest(data))
}

fn pb_block(links: Vec<PbLink>, data: Data) -> (Cid, Vec<u8>) {
    let block = PbNode {
        links,
        data: Some(Bytes::from(data.encode())),
    }
    .encode();
    (Cid::new_v1(0x70, HashAlg::Sha2_256.digest(&block)), block)
}

fn shard(links: Vec<PbLink>) -> (Cid, Vec<u8>) {
    let mut d = Data::new(DataType::HamtShard);
    d.hash_type = Some(cairn_unixfs::hamt::MURMUR3_X64_64);
    d.fanout = Some(256);
    d.data = Some(Bytes::new());
    pb_block(links, d)
}

/// Imports a directory of these named single-block children into `root`; returns its CID.
fn import_dir(root: &Root, children: impl IntoIterator<Item = (String, Data)>) -> Cid {
    let mut entries = Vec::new();
    let mut blocks = Vec::new();
    for (name, data) in children {
        let b = pb_block(vec![], data);
        entries.push(PbLink::new(b.0, name, b.1.len() as u64));
        blocks.push(b);
    }
    let dir = pb_block(entries, Data::new(DataType::Directory));
    blocks.push(dir.clone());
    let car = write_car(root.dir.path(), "t.car", &[dir.0], &blocks);
    root.ok(&["dag", "import", car.to_str().unwrap()]);
    dir.0
}

/// Writes a CARv1 with these roots and blocks and returns its path.
fn write_car(dir: &Path, name: &str, roots: &[Cid], blocks: &[(Cid, Vec<u8>)]) -> PathBuf {
    let path = dir.join(name);
    let mut w = CarWriter::new(std::fs::File::create(&path).unwrap(), roots).unwrap();
    for (c, b) in blocks {
        w.write_block(c, b).unwrap();
    }
    w.finish().unwrap();
    path
}

/// A directory holding `entry` -> a HAMT of eight levels in which every sub-shard link of a
/// level points to the one shard below: 256^7 paths through 8 blocks. Returns (dir, CAR).
fn exploding_hamt(root: &Root) -> (Cid, PathBuf) {
    let f = raw(b"leaf\n");
    let mut blocks = vec![(f, b"leaf\n".to_vec())];
    let mut below = shard(vec![PbLink::new(f, "00a", 5), PbLink::new(f, "01b", 5)]);
    blocks.push(below.clone());
    for _ in 0..7 {
        let links = (0..256)
            .map(|i| PbLink::new(below.0, cairn_unixfs::hamt::prefix(i, 256), 1))
            .collect();
        below = shard(links);
        blocks.push(below.clone());
    }
    let fine = raw(b"still readable\n");
    blocks.push((fine, b"still readable\n".to_vec()));
    let dir = pb_block(
        vec![
            PbLink::new(fine, "fine.txt", 15),
            PbLink::new(below.0, "hamt", 1),
        ],
        Data::new(DataType::Directory),
    );
    blocks.push(dir.clone());
    let car = write_car(root.dir.path(), "hamt.car", &[dir.0], &blocks);
    (dir.0, car)
}

/// Defect: listing a HAMT followed every sub-shard link, so shards that all link to one shard
/// took time exponential in the depth. Now a shard reached twice is an error, at once, in
/// `cairn ls` and in the mount, and the rest of the mount keeps answering.
#[test]
fn a_hamt_whose_shards_share_one_shard_fails_fast() {
    let root = Root::new();
    let (dir, car) = exploding_hamt(&root);
    root.ok(&["dag", "import", car.to_str().unwrap()]);
    let t = Instant::now();
    let err = root.fails(&["ls", &format!("{dir}/hamt")]);
    assert!(err.contains("more than once"), "{err}");
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());

    let m = Mount::start(&root, &[]);
    let t = Instant::now();
    let e = std::fs::read_dir(m.path(&format!("{dir}/hamt")))
        .and_then(|rd| rd.collect::<Result<Vec<_>, _>>());
    assert_eq!(e.unwrap_err().raw_os_error(), Some(libc::EIO));
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    assert_eq!(
        std::fs::read(m.path(&format!("{dir}/fine.txt"))).unwrap(),
        b"still readable\n"
    );
}

/// Legal UnixFS: a file whose 10,000 links all name one 1 KiB leaf. Reading it is
/// proportional to its 10 MiB (through `cat` and the mount), and the walks that need each
/// block once (`refs -r`, `dag export`, gc's mark) see two blocks.
#[test]
fn a_file_that_repeats_one_leaf_reads_in_proportion() {
    let root = Root::new();
    let leaf: Vec<u8> = (0..1024u32).map(|i| (i * 7 % 251) as u8).collect();
    let l = raw(&leaf);
    let n = 10_000;
    let mut d = Data::new(DataType::File);
    d.filesize = Some(1024 * n as u64);
    d.blocksizes = vec![1024; n];
    let file = pb_block(
        (0..n)
            .map(|_| PbLink {
                cid: l,
                name: Some(String::new()),
                tsize: Some(1024),
            })
            .collect(),
        d,
    );
    let car = write_car(
        root.dir.path(),
        "rep.car",
        &[file.0],
        &[file.clone(), (l, leaf.clone())],
    );
    root.ok(&["dag", "import", car.to_str().unwrap()]);
    let want = sha256_hex(&leaf.repeat(n));

    let t = Instant::now();
    let out = root.output(&["cat", &file.0.to_string()]);
    assert!(out.status.success());
    assert_eq!(sha256_hex(&out.stdout), want);
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());

    let refs = root.ok(&["refs", "-r", &file.0.to_string()]);
    assert_eq!(refs.lines().count(), 1, "the leaf, once: {refs}");
    let exported = root.dir.path().join("out.car");
    root.ok(&[
        "dag",
        "export",
        &file.0.to_string(),
        "-o",
        exported.to_str().unwrap(),
    ]);
    let other = Root::new();
    let imported: serde_json::Value =
        serde_json::from_str(&other.ok(&["dag", "import", "--json", exported.to_str().unwrap()]))
            .unwrap();
    assert_eq!(imported["blocks"], 2, "{imported}");

    let m = Mount::start(&root, &[]);
    let mut f = std::fs::File::open(m.path(&file.0.to_string())).unwrap();
    let mut all = Vec::new();
    f.read_to_end(&mut all).unwrap();
    assert_eq!(sha256_hex(&all), want);
}

/// Defect: a journal whose header is all zeros passed its checksum (crc32 of nothing is 0)
/// and then panicked on the empty payload. A crash can leave exactly that (the file's size
/// reached the disk, its bytes did not). Now it is skipped with a log line, and the complete
/// records of a torn journal are still folded in.
#[test]
fn zero_filled_and_torn_journals_are_skipped() {
    let root = Root::new();
    let journals = root.path().join("index/journal");
    std::fs::write(journals.join("1-1.log"), vec![0u8; 8192]).unwrap();
    let out = root.output(&["stat", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("torn or corrupt"), "{stderr}");
    assert!(!journals.join("1-1.log").exists());
}

/// Defect: in a CARv2, a zero-length section spelled as an overlong varint whose last byte
/// lies past the payload made the padding arithmetic underflow (a panic in debug builds, a
/// read of 2^64 bytes in release). Now it is an error naming the section.
#[test]
fn a_carv2_whose_padding_runs_past_its_payload_is_refused() {
    let root = Root::new();
    let car = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/regressions/car/v2-overlong-zero-length-past-the-end");
    let err = root.fails(&["dag", "import", car.to_str().unwrap()]);
    assert!(err.contains("past the end"), "{err}");
}

/// Defect: `cairn mount` wrote its "ready" line to whatever descriptor `CAIRN_READY_FD`
/// named, and closed it, without checking it was the pipe its `--daemon` parent made. A
/// stale value in the environment then clobbered another file (or closed `/dev/fuse`).
#[test]
fn a_stale_ready_fd_is_not_written_to() {
    use std::os::{fd::AsRawFd, unix::process::CommandExt};
    let root = Root::new();
    let victim = root.dir.path().join("victim");
    let file = std::fs::File::create(&victim).unwrap();
    let fd = file.as_raw_fd();
    let mnt = root.dir.path().join("mnt");
    for value in [format!("{fd}"), format!("{fd}:12345")] {
        let mut cmd = root.cmd(&["mount", mnt.to_str().unwrap()]);
        cmd.env("CAIRN_READY_FD", &value)
            .stderr(std::process::Stdio::piped());
        // SAFETY: fcntl in the child between fork and exec, on a descriptor we own.
        unsafe {
            cmd.pre_exec(move || {
                libc::fcntl(fd, libc::F_SETFD, 0);
                Ok(())
            });
        }
        let mut child = cmd.spawn().unwrap();
        let stderr = std::io::BufReader::new(child.stderr.take().unwrap());
        let mut lines = std::io::BufRead::lines(stderr).map_while(Result::ok);
        let mut seen = Vec::new();
        for line in lines.by_ref() {
            let up = line.starts_with("cairn: mounted");
            seen.push(line);
            if up {
                break;
            }
        }
        assert!(
            seen.iter().any(|l| l.starts_with("cairn: mounted")),
            "{seen:?}"
        );
        // Keep reading: a closed pipe would kill it with SIGPIPE when it says "unmounted".
        let drain = std::thread::spawn(move || lines.count());
        // SAFETY: signalling our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        assert!(child.wait().unwrap().success());
        drain.join().unwrap();
        assert_eq!(
            std::fs::read(&victim).unwrap(),
            b"",
            "CAIRN_READY_FD={value} was written to"
        );
    }
}

/// Defect: puts linked their O_TMPFILE through /proc/self/fd and failed outright where /proc
/// is not mounted (a minimal container). Now they fall back to staging and renaming.
#[test]
fn adds_work_without_proc() {
    let root = Root::new();
    let src = root.dir.path().join("f");
    std::fs::write(&src, b"no proc here\n").unwrap();
    let bin = crate::util::cairn_bin();
    let script = format!(
        "umount -l /proc && {} --root {} add -Q --cid-version 1 {}",
        bin.display(),
        root.path().display(),
        src.display()
    );
    let out = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cid = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert_eq!(cid, raw(b"no proc here\n").to_string());
    assert_eq!(root.ok(&["cat", &cid]), "no proc here\n");
    assert!(root.block_files().contains(&cid));
}

/// UnixFS mtimes at the edges of i64 (a block's choice) go through the mount's time
/// arithmetic without a panic in a FUSE thread. (Not a defect found: a check of the edges.)
#[test]
fn extreme_mtimes_do_not_panic_the_mount() {
    let root = Root::new();
    let files = [i64::MAX, i64::MIN, -1]
        .into_iter()
        .enumerate()
        .map(|(i, seconds)| {
            let mut d = Data::new(DataType::File);
            d.data = Some(Bytes::from_static(b"t"));
            d.filesize = Some(1);
            d.mtime = Some(cairn_unixfs::data::Mtime {
                seconds,
                nanos: Some(999_999_999),
            });
            (format!("f{i}"), d)
        });
    let dir = import_dir(&root, files);
    let m = Mount::start(&root, &[]);
    for i in 0..3 {
        let p = m.path(&format!("{dir}/f{i}"));
        std::fs::metadata(&p).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"t");
    }
}

/// Symlink targets of 4095 bytes (the longest the kernel takes) and longer, in a stranger's
/// blocks: the first reads back whole, the others are ENAMETOOLONG, the same through the
/// io_uring queues and through /dev/fuse (the kernel had made the reply EINVAL on one and EIO
/// on the other).
#[test]
fn symlink_targets_too_long_for_the_kernel_are_enametoolong() {
    let root = Root::new();
    let links = [4095, 4096, 70_000].map(|len| {
        let mut d = Data::new(DataType::Symlink);
        d.data = Some(Bytes::from(vec![b'x'; len]));
        (format!("l{len}"), d)
    });
    let dir = import_dir(&root, links);
    for extra in [&[][..], &["--no-uring"][..]] {
        let m = Mount::start(&root, extra);
        let at = |len: usize| m.path(&format!("{dir}/l{len}"));
        assert_eq!(
            std::fs::read_link(at(4095)).unwrap().as_os_str().len(),
            4095,
            "{extra:?}"
        );
        for len in [4096, 70_000] {
            let err = std::fs::read_link(at(len)).unwrap_err();
            assert_eq!(
                err.raw_os_error(),
                Some(libc::ENAMETOOLONG),
                "{extra:?} {len}"
            );
        }
    }
}
