//! Pins and garbage collection. Each liveness rule is one test, stated in its comment, and
//! checked on the files under `R/blocks` and `R/pins`.

use std::{
    collections::BTreeSet,
    io::Write,
    process::Stdio,
    time::{Duration, Instant},
};

use crate::{
    crash::random_file,
    util::{shared, write_tree, Root},
};

/// The block files a DAG consists of, by asking `cairn refs -r` (plus the root). Identity
/// CIDs have no file: their bytes are in the CID.
fn dag_blocks(root: &Root, cid: &str) -> BTreeSet<String> {
    let mut set: BTreeSet<String> = root
        .ok(&["refs", "-r", cid])
        .lines()
        .map(|c| cairn_store::parse_cid(c).unwrap())
        .filter(|c| c.hash().code() != cairn_store::hash::IDENTITY)
        .map(|c| cairn_store::block_name(&c))
        .collect();
    set.insert(cairn_store::block_name(
        &cairn_store::parse_cid(cid).unwrap(),
    ));
    set
}

fn present(root: &Root, blocks: &BTreeSet<String>) -> usize {
    blocks
        .iter()
        .filter(|b| root.path().join("blocks").join(b).exists())
        .count()
}

fn gc(root: &Root) -> serde_json::Value {
    serde_json::from_str(&root.ok(&["gc", "--json"])).unwrap()
}

/// Two unpinned trees, returned as (root CID, its blocks).
fn two_trees(root: &Root) -> ((String, BTreeSet<String>), (String, BTreeSet<String>)) {
    let d = root.dir.path();
    write_tree(
        &d.join("a"),
        &[
            ("one.txt", "only in a\n"),
            ("shared.txt", "in both trees\n"),
        ],
    );
    write_tree(
        &d.join("b"),
        &[
            ("two.txt", "only in b\n"),
            ("shared.txt", "in both trees\n"),
        ],
    );
    let a = root.add_q(&["--pin=false", "-r", d.join("a").to_str().unwrap()]);
    let b = root.add_q(&["--pin=false", "-r", d.join("b").to_str().unwrap()]);
    let (ba, bb) = (dag_blocks(root, &a), dag_blocks(root, &b));
    ((a, ba), (b, bb))
}

/// Rule: a block no root reaches is deleted (file and index entry).
#[test]
fn unreachable_blocks_are_deleted() {
    let root = Root::new();
    let ((_, a), (_, b)) = two_trees(&root);
    let r = gc(&root);
    assert_eq!(present(&root, &a) + present(&root, &b), 0);
    assert_eq!(
        r["freed_blocks"].as_u64().unwrap() as usize,
        a.union(&b).count()
    );
    assert!(root.block_files().is_empty());
    let stat: serde_json::Value = serde_json::from_str(&root.ok(&["stat", "--json"])).unwrap();
    assert_eq!(stat["blocks"], 0, "index entries go with the files");
}

/// Rule: a direct pin (`cairn pin add`) keeps its whole DAG.
#[test]
fn a_direct_pin_keeps_its_dag() {
    let root = Root::new();
    let ((a, ba), (_, bb)) = two_trees(&root);
    root.ok(&["pin", "add", &a]);
    gc(&root);
    assert_eq!(present(&root, &ba), ba.len());
    assert_eq!(present(&root, &bb), bb.intersection(&ba).count());
    // pin rm, and it goes at the next collection.
    root.ok(&["pin", "rm", &a]);
    gc(&root);
    assert_eq!(present(&root, &ba), 0);
}

/// Rule: a symlink made with plain `ln -s` under R/pins/per-user/{user}/{prog}/ is a pin.
#[test]
fn an_ln_s_pin_counts_like_any_other() {
    let root = Root::new();
    let ((a, ba), _) = two_trees(&root);
    let dir = root.path().join("pins/per-user/alice/handmade");
    std::fs::create_dir_all(&dir).unwrap();
    std::os::unix::fs::symlink(root.path().join("store").join(&a), dir.join(&a)).unwrap();
    gc(&root);
    assert_eq!(present(&root, &ba), ba.len());
    let ls = root.ok(&["pin", "ls"]);
    assert!(
        ls.contains(&format!("alice\thandmade\t{a}\tcomplete")),
        "{ls}"
    );
}

/// Rule: an auto pin keeps the DAG its user link points at; deleting the user link (or
/// pointing it elsewhere) unpins, and the collection removes the stale auto link.
#[test]
fn auto_pins_follow_the_user_link() {
    let root = Root::new();
    let ((a, ba), (b, bb)) = two_trees(&root);
    let result = root.dir.path().join("result");
    root.ok(&["pin", "add", &a, "--link", result.to_str().unwrap()]);
    let a_name = cairn_store::block_name(&cairn_store::parse_cid(&a).unwrap());
    assert_eq!(
        std::fs::read_link(&result).unwrap(),
        root.path().join("store").join(a_name)
    );
    gc(&root);
    assert_eq!(present(&root, &ba), ba.len());
    assert_eq!(
        present(&root, &bb),
        bb.intersection(&ba).count(),
        "b was not pinned"
    );
    // Re-pointed (to b, added again): now b is kept and a's own blocks go.
    let b_dir = root.dir.path().join("b");
    assert_eq!(
        root.add_q(&["--pin=false", "-r", b_dir.to_str().unwrap()]),
        b
    );
    root.ok(&["pin", "add", &b, "--link", result.to_str().unwrap()]);
    gc(&root);
    assert_eq!(present(&root, &bb), bb.len());
    assert_eq!(present(&root, &ba), ba.intersection(&bb).count());
    // Deleted: everything goes, and so does the auto link.
    std::fs::remove_file(&result).unwrap();
    let r = gc(&root);
    assert_eq!(present(&root, &bb), 0);
    assert_eq!(r["removed_links"].as_array().unwrap().len(), 1, "{r}");
    let auto = root.path().join("pins/per-user/root/cli/auto");
    assert_eq!(std::fs::read_dir(auto).unwrap().count(), 0);
}

/// Rule: CIDs in the temp pin file of a live process are kept (here the live process is an
/// `add` still reading its input).
#[test]
fn a_live_writers_temp_pins_are_kept() {
    let root = Root::new();
    let mut child = root
        .cmd(&["add", "--chunker=size-1024"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    // Enough distinct chunks to be written while the add waits for more.
    let data: Vec<u8> = (0..64 * 1024u32)
        .map(|i| (i / 1024) as u8 ^ (i % 251) as u8)
        .collect();
    stdin.write_all(&data).unwrap();
    stdin.flush().unwrap();
    let start = Instant::now();
    while root.block_files().len() < 10 {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no blocks written"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let written = root.block_files();
    let r = gc(&root);
    assert_eq!(r["live_temp_pins"], 1, "{r}");
    assert_eq!(r["freed_blocks"], 0, "{r}");
    let after: BTreeSet<String> = root.block_files().into_iter().collect();
    assert!(
        written.iter().all(|b| after.contains(b)),
        "a temp-pinned block was deleted"
    );
    // The add finishes and pins its root; its blocks stay.
    stdin.write_all(b"the end").unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    gc(&root);
    assert!(root.block_files().len() >= written.len());
    assert!(root
        .path()
        .join("pins/temp")
        .read_dir()
        .unwrap()
        .next()
        .is_none());
}

/// Rule: the temp pin file of a dead process protects nothing; the collection deletes it.
#[test]
fn a_dead_writers_temp_pins_are_dropped() {
    let root = Root::new();
    let ((a, ba), _) = two_trees(&root);
    // A process that died holding temp pins: its file, with no lock holder.
    let temp = root.path().join("pins/temp/999999");
    std::fs::write(&temp, format!("{a}\n")).unwrap();
    let r = gc(&root);
    assert_eq!(r["dead_temp_pins"], 1, "{r}");
    assert!(!temp.exists());
    assert_eq!(present(&root, &ba), 0);
}

/// Rule: a pin symlink that names no CID pins nothing and is removed.
#[test]
fn dangling_pin_links_are_removed() {
    let root = Root::new();
    let dir = root.path().join("pins/per-user/bob/junk");
    std::fs::create_dir_all(&dir).unwrap();
    std::os::unix::fs::symlink("/nowhere/at/all", dir.join("broken")).unwrap();
    let r = gc(&root);
    assert_eq!(r["removed_links"].as_array().unwrap().len(), 1, "{r}");
    assert!(std::fs::symlink_metadata(dir.join("broken")).is_err());
}

/// Rule: a block shared by a live DAG and a dead one stays; the dead DAG's own blocks go.
#[test]
fn shared_blocks_of_live_and_dead_dags_are_kept() {
    let root = Root::new();
    let ((a, ba), (_, bb)) = two_trees(&root);
    root.ok(&["pin", "add", &a]);
    gc(&root);
    let shared: BTreeSet<_> = ba.intersection(&bb).cloned().collect();
    assert!(!shared.is_empty());
    assert_eq!(present(&root, &shared), shared.len());
    let only_b: BTreeSet<_> = bb.difference(&ba).cloned().collect();
    assert_eq!(present(&root, &only_b), 0);
}

/// Rule: --dry-run reports and deletes nothing; adds and imports pin their roots by default.
#[test]
fn dry_run_and_default_pins() {
    let root = Root::new();
    let _ = two_trees(&root);
    let before = root.block_files();
    let r: serde_json::Value =
        serde_json::from_str(&root.ok(&["gc", "--dry-run", "--json"])).unwrap();
    assert_eq!(r["freed_blocks"].as_u64().unwrap() as usize, before.len());
    assert_eq!(root.block_files(), before);
    // A plain add pins; a CAR import pins its roots.
    let f = root.dir.path().join("kept.txt");
    std::fs::write(&f, "kept\n").unwrap();
    let cid = root.add_q(&[f.to_str().unwrap()]);
    let car = shared().join("fixtures/go-car/simple-unixfs.car");
    root.ok(&["dag", "import", car.to_str().unwrap()]);
    gc(&root);
    assert_eq!(root.ok(&["cat", &cid]), "kept\n");
    assert_eq!(
        root.ok(&[
            "refs",
            "-r",
            "QmPLPpnptHc1DMhJAWNYMTqBTqqRQNy5WsY7F9pZgsBfMT"
        ])
        .lines()
        .count(),
        21
    );
    // --max-freed stops early.
    let _ = two_trees(&root);
    let r: serde_json::Value =
        serde_json::from_str(&root.ok(&["gc", "--max-freed", "1", "--json"])).unwrap();
    assert_eq!(r["freed_blocks"], 0, "{r}");
}

/// Rule: an adder killed with -9 leaves a temp pin that the next collection drops; what it
/// wrote becomes garbage and the store verifies clean.
#[test]
fn a_killed_adders_blocks_become_collectable() {
    let root = Root::new();
    let big = root.dir.path().join("big.bin");
    random_file(&big, 256 << 20, 11);
    let mut child = root
        .cmd(&["add", big.to_str().unwrap()])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while root.block_files().len() < 50 {
        assert!(start.elapsed() < Duration::from_secs(30));
        assert!(
            child.try_wait().unwrap().is_none(),
            "the add finished too soon"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let r = gc(&root);
    assert_eq!(r["dead_temp_pins"], 1, "{r}");
    assert!(root.block_files().is_empty());
    assert!(root.ok(&["verify"]).contains(": 0 corrupt"));
}

/// Rule: collecting while the store is mounted never serves wrong bytes: a file whose blocks
/// are gone answers ENOENT or EIO.
#[test]
fn collecting_under_a_mount() {
    let root = Root::new();
    let f = root.dir.path().join("f");
    std::fs::write(&f, "collected\n".repeat(10_000)).unwrap();
    let cid = root.add_q(&["--pin=false", f.to_str().unwrap()]);
    let m = crate::mount::Mount::start(&root, &[]);
    gc(&root);
    let err = std::fs::read(m.path(&cid)).unwrap_err();
    assert!(
        matches!(err.raw_os_error(), Some(libc::ENOENT) | Some(libc::EIO)),
        "{err}"
    );
}

/// Four writers (two `add`, two `dag import`) and a collection loop at once. Afterwards every
/// block reachable from a completed add's root is present and verifies: nothing lost. Runs
/// for CAIRN_GC_STRESS_SECS seconds (default 15).
#[test]
fn stress_adders_and_collector_together() {
    let secs: u64 = std::env::var("CAIRN_GC_STRESS_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(15);
    let root = Root::new();
    let d = root.dir.path().to_owned();
    // Inputs that share blocks with each other and with earlier rounds.
    let tree = d.join("tree");
    let files: Vec<(String, String)> = (0..300)
        .map(|i| (format!("d{}/f{i}", i % 7), format!("content {}\n", i % 120)))
        .collect();
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    write_tree(&tree, &refs);
    random_file(&d.join("mid.bin"), 6 << 20, 5);
    let cars = [
        shared().join("fixtures/go-car/sample-v1.car"),
        shared().join("fixtures/gateway-conformance/fixtures/trustless_gateway_car/single-layer-hamt-with-multi-block-files.car"),
    ];
    let deadline = Instant::now() + Duration::from_secs(secs);
    // Roots pinned now. The add workers make a new DAG each round (sharing most blocks with
    // the last one) and unpin the previous one, so the collector always has garbage to take
    // while the next add is writing blocks it shares.
    let pinned = std::sync::Mutex::new(BTreeSet::<String>::new());
    let collections = std::sync::atomic::AtomicU64::new(0);
    let completed = std::sync::atomic::AtomicU64::new(0);
    std::thread::scope(|s| {
        for w in 0..4usize {
            let (root, pinned, tree, d, cars, completed) =
                (&root, &pinned, &tree, &d, &cars, &completed);
            s.spawn(move || {
                let mut round = 0u32;
                let mut previous: Option<String> = None;
                while Instant::now() < deadline {
                    let cid = match w {
                        0 => {
                            std::fs::write(tree.join("round.txt"), format!("round {round}\n"))
                                .unwrap();
                            root.add_q(&["-r", tree.to_str().unwrap()])
                        }
                        1 => {
                            let chunk = format!("--chunker=size-{}", 65536 << (round % 3));
                            root.add_q(&[&chunk, d.join("mid.bin").to_str().unwrap()])
                        }
                        _ => {
                            let car = &cars[(w + round as usize) % 2];
                            let json = root.ok(&["dag", "import", "--json", car.to_str().unwrap()]);
                            let v: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
                            v["roots"][0]["cid"].as_str().unwrap().to_owned()
                        }
                    };
                    pinned.lock().unwrap().insert(cid.clone());
                    if w < 2 {
                        if let Some(old) = previous.replace(cid.clone()) {
                            if old != cid {
                                pinned.lock().unwrap().remove(&old);
                                root.ok(&["pin", "rm", &old, "--prog", "add"]);
                            }
                        }
                    }
                    completed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    round += 1;
                }
            });
        }
        let (root, collections) = (&root, &collections);
        s.spawn(move || {
            while Instant::now() < deadline {
                gc(root);
                collections.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        });
    });
    assert!(collections.load(std::sync::atomic::Ordering::Relaxed) >= 2);
    assert!(completed.load(std::sync::atomic::Ordering::Relaxed) >= 8);
    // Every root still pinned: all of its DAG is here and verifies. One more collection
    // first, to be sure nothing pinned is taken even when nothing else runs.
    gc(&root);
    let mut lost = 0;
    for r in pinned.into_inner().unwrap() {
        let blocks = dag_blocks(&root, &r);
        lost += blocks.len() - present(&root, &blocks);
    }
    assert_eq!(lost, 0, "blocks lost");
    assert!(root.ok(&["verify"]).contains(": 0 corrupt"));
}

/// Rule: each user pins under their own directory and nowhere else, and every user's pins
/// count. `R/pins/per-user` is sticky and world-writable, like /tmp; a user's directory
/// belongs to that user.
#[test]
fn users_pin_under_their_own_directory_only() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let root = Root::new();
    let ((a, ba), (b, bb)) = two_trees(&root);
    root.ok(&["pin", "add", &b]);
    // Let another user reach the root (test roots live in private temporary directories).
    for dir in root
        .path()
        .ancestors()
        .take_while(|d| d.starts_with(root.dir.path()))
    {
        let mut perm = std::fs::metadata(dir).unwrap().permissions();
        perm.set_mode(perm.mode() | 0o001);
        std::fs::set_permissions(dir, perm).unwrap();
    }
    let pins = root.path().join("pins/per-user");
    assert_eq!(std::fs::metadata(&pins).unwrap().mode() & 0o7777, 0o1777);
    let store = root.path().join("store");
    let as_nobody = |script: &str| {
        std::process::Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .args(["sh", "-c", script])
            .stderr(Stdio::null())
            .status()
            .unwrap()
            .success()
    };
    let mine = pins.join("nobody/handmade");
    assert!(as_nobody(&format!(
        "mkdir -p {m} && ln -s {s}/{a} {m}/{a}",
        m = mine.display(),
        s = store.display()
    )));
    assert_eq!(std::fs::metadata(pins.join("nobody")).unwrap().uid(), 65534);
    let roots = pins.join("root/cli");
    assert!(roots.is_dir());
    assert!(
        !as_nobody(&format!(
            "ln -s {s}/{a} {r}/{a}",
            r = roots.display(),
            s = store.display()
        )),
        "another user wrote into root's pins"
    );
    as_nobody(&format!("rm -rf {}", pins.join("root").display()));
    assert!(roots.is_dir(), "another user removed root's pins");
    let rootpin = roots.join(cairn_store::block_name(
        &cairn_store::parse_cid(&b).unwrap(),
    ));
    assert!(std::fs::symlink_metadata(rootpin).is_ok());
    gc(&root);
    assert_eq!(present(&root, &ba), ba.len(), "nobody's pin counts");
    assert_eq!(present(&root, &bb), bb.len(), "root's pin counts");
}
