//! The store under abuse: corrupt files, verify and repair, the index held by another
//! process, a full disk, missing blocks.

use std::time::Duration;

use cairn_store::{RocksIndex, Store};
use cairn_unixfs::{FileReader, UnixfsError};

use crate::util::{cid_of, shared, write_tree, Root};

#[test]
fn a_corrupt_block_is_an_error_and_verify_moves_it_aside() {
    let root = Root::new();
    let src = root.dir.path().join("src");
    write_tree(
        &src,
        &[("good.txt", "good\n"), ("bad.txt", "will be corrupted\n")],
    );
    let out = root.ok(&["add", "-r", "--cid-version=1", src.to_str().unwrap()]);
    let (bad, good) = (cid_of(&out, "src/bad.txt"), cid_of(&out, "src/good.txt"));
    let file = root.corrupt_block(&bad, 3);

    let err = root.fails(&["cat", &bad]);
    assert!(err.contains(&format!("block {bad} is corrupt")), "{err}");
    assert!(!err.contains("will be"), "the bytes are never shown: {err}");
    assert_eq!(root.ok(&["cat", &good]), "good\n");

    let out = root.output(&["verify"]);
    assert!(
        !out.status.success(),
        "verify reports corruption with a failing exit"
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("1 corrupt") && text.contains(&bad), "{text}");
    assert!(!file.exists());
    assert!(root.path().join("blocks/.corrupt").join(&bad).exists());
    // Now it is simply missing, and adding the file again brings it back.
    assert!(root.fails(&["cat", &bad]).contains("is not available"));
    root.ok(&["add", "-r", "--cid-version=1", src.to_str().unwrap()]);
    assert_eq!(root.ok(&["cat", &bad]), "will be corrupted\n");
    assert!(root.ok(&["verify"]).contains(": 0 corrupt"));
}

#[test]
fn cidv0_and_cidv1_name_the_same_block() {
    let root = Root::new();
    let f = root.dir.path().join("f");
    std::fs::write(&f, "Hello Worlds!\n").unwrap();
    let v0 = root.add_q(&[f.to_str().unwrap()]);
    assert_eq!(v0, "QmVr26fY1tKyspEJBniVhqxQeEjhF78XerGiqWAwraVLQH");
    let v1 = root.add_q(&["--cid-base=base32", "-n", f.to_str().unwrap()]);
    assert!(v1.starts_with("bafybei"));
    assert_eq!(root.ok(&["cat", &v0]), root.ok(&["cat", &v1]));
    assert_eq!(root.block_files(), vec![v1]);
}

#[test]
fn adds_never_wait_for_the_index() {
    let root = Root::new();
    // Another process (here: this test) holds the RocksDB index.
    let held = RocksIndex::open(&root.path().join("index/db"), Duration::ZERO)
        .unwrap()
        .unwrap();
    let src = root.dir.path().join("src");
    write_tree(&src, &[("a", "a\n"), ("b/c", "c\n")]);
    root.ok(&["add", "-r", src.to_str().unwrap()]);
    let journals: Vec<_> = std::fs::read_dir(root.path().join("index/journal"))
        .unwrap()
        .collect();
    assert_eq!(journals.len(), 1, "the add left its records in a journal");
    drop(held);
    // The next reader ingests the journal.
    let stat: serde_json::Value = serde_json::from_str(&root.ok(&["stat", "--json"])).unwrap();
    assert_eq!(stat["blocks"], 4);
    assert_eq!(
        std::fs::read_dir(root.path().join("index/journal"))
            .unwrap()
            .count(),
        0
    );
}

#[test]
fn reads_cover_only_the_blocks_they_need() {
    // gateway-conformance: a 3-block file whose middle block is missing.
    let root = Root::new();
    let car = shared().join(
        "fixtures/gateway-conformance/fixtures/trustless_gateway_car/file-3k-and-3-blocks-missing-block.car",
    );
    root.ok(&["dag", "import", car.to_str().unwrap()]);
    let store = Store::open(root.path()).unwrap();
    let cid = cairn_store::parse_cid("QmYhmPjhFjYFyaoiuNzYv8WGavpSRDwdHWe5B4M5du5Rtk").unwrap();
    let r = FileReader::open(&store, &cid).unwrap();
    assert_eq!(r.size(), 3072);
    assert_eq!(r.read_at(0, 1024).unwrap().len(), 1024);
    assert_eq!(r.read_at(2048, 5000).unwrap().len(), 1024);
    assert_eq!(r.read_at(100, 10).unwrap().len(), 10);
    let middle = r.node().children[1].0;
    assert!(!store.has(&middle).unwrap());
    match r.read_at(1500, 10) {
        Err(UnixfsError::MissingBlock(c)) => assert_eq!(c, middle),
        other => panic!("expected the missing middle block, got {other:?}"),
    }
}

/// A full disk: the add fails with a clear error, and what is in the store stays valid.
#[test]
fn a_full_disk_fails_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("small");
    std::fs::create_dir(&mnt).unwrap();
    let st = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=3m", "tmpfs"])
        .arg(&mnt)
        .status()
        .unwrap();
    assert!(st.success(), "mounting a tmpfs needs root");
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let _guard = Unmount(mnt.clone());
    let root = mnt.join("root");
    let run = |args: &[&str]| {
        std::process::Command::new(crate::util::cairn_bin())
            .arg("--root")
            .arg(&root)
            .args(args)
            .output()
            .unwrap()
    };
    assert!(run(&["init"]).status.success());
    let small = dir.path().join("small.txt");
    std::fs::write(&small, "fits\n").unwrap();
    assert!(run(&["add", small.to_str().unwrap()]).status.success());
    let big = dir.path().join("big.bin");
    std::fs::write(
        &big,
        (0..8_000_000u32)
            .map(|i| (i % 253) as u8)
            .collect::<Vec<_>>(),
    )
    .unwrap();
    let out = run(&["add", big.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("No space left on device"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    let out = run(&["verify"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(
        run(&["cat", "Qma9UZBMAqye9umojpVYticjkYHMGj3wFva52raHVUpSVD"]).stdout,
        b"fits\n"
    );
    assert!(std::fs::read_dir(root.join("blocks/.tmp"))
        .unwrap()
        .next()
        .is_none());
}
