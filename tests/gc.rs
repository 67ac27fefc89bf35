//! Pins and garbage collection. Each liveness rule is one test, stated in its comment, and
//! checked on the files under `R/blocks` and `R/pins`.

use std::{
    collections::{BTreeMap, BTreeSet},
    io::Write,
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant},
};

use crate::{
    crash::random_file,
    util::{as_nobody, shared, write_tree, Root},
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

/// `cairn gc --json ARGS`, failing the test if it has not finished within `limit`: a
/// collector that hangs or never ends is what some tests look for.
fn gc_within(root: &Root, args: &[&str], limit: Duration) -> serde_json::Value {
    let out = root.dir.path().join("gc.json");
    let mut child = root
        .cmd(&[&["gc", "--json"], args].concat())
        .stdout(std::fs::File::create(&out).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("cairn gc {args:?} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "cairn gc {args:?} failed");
    serde_json::from_str(&std::fs::read_to_string(out).unwrap()).unwrap()
}

/// The paths of a report's list `key` (`refused`: objects with a path; `removed_links`:
/// strings).
fn paths(report: &serde_json::Value, key: &str) -> BTreeSet<PathBuf> {
    report[key]
        .as_array()
        .unwrap_or_else(|| panic!("no {key} in {report}"))
        .iter()
        .map(|v| PathBuf::from(v["path"].as_str().or(v.as_str()).unwrap()))
        .collect()
}

/// Lets other users reach the root (test roots live in private temporary directories).
fn let_others_in(root: &Root) {
    use std::os::unix::fs::PermissionsExt;
    for dir in root
        .path()
        .ancestors()
        .take_while(|d| d.starts_with(root.dir.path()))
    {
        let mut perm = std::fs::metadata(dir).unwrap().permissions();
        perm.set_mode(perm.mode() | 0o001);
        std::fs::set_permissions(dir, perm).unwrap();
    }
}

/// Every file under `dir` (relative path -> bytes).
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let bytes = std::fs::read(&p).unwrap();
                out.insert(p.strip_prefix(dir).unwrap().to_owned(), bytes);
            }
        }
    }
    out
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
    write_tree(&tree, &files);
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
    use std::os::unix::fs::MetadataExt;
    let root = Root::new();
    let ((a, ba), (b, bb)) = two_trees(&root);
    root.ok(&["pin", "add", &b]);
    let_others_in(&root);
    let pins = root.path().join("pins/per-user");
    assert_eq!(std::fs::metadata(&pins).unwrap().mode() & 0o7777, 0o1777);
    let store = root.path().join("store");
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

/// Rule: the collector never follows a symlink where a directory belongs and deletes only
/// entries that are symlinks themselves. A user's `auto`, program and user directories that
/// are symlinks to a directory elsewhere are refused (reported, not entered), links to files
/// elsewhere are removed as links, FIFOs neither hang the collector nor get deleted; every
/// file outside the root stays as it was, and garbage and pins (that user's too) behave as
/// ever.
#[test]
fn planted_symlinks_and_fifos_are_refused_never_followed() {
    use std::os::unix::fs::PermissionsExt;
    let root = Root::new();
    let ((a, ba), (b, bb)) = two_trees(&root);
    root.ok(&["pin", "add", &b]);
    let junk = root.dir.path().join("junk.txt");
    std::fs::write(&junk, "garbage\n").unwrap();
    let garbage = root.add_q(&["--pin=false", junk.to_str().unwrap()]);
    let garbage = dag_blocks(&root, &garbage);
    let_others_in(&root);
    // Files outside the root, laid out like pins so that following a link would find them.
    let outside = tempfile::tempdir().unwrap();
    let out = outside.path();
    write_tree(
        out,
        &[
            ("a.txt", "outside a\n"),
            ("b.txt", "outside b\n"),
            ("prog/auto/c.txt", "outside c\n"),
            ("prog/auto/d.txt", "outside d\n"),
            ("auto/e.txt", "outside e\n"),
        ],
    );
    for d in ["", "prog", "prog/auto", "auto"] {
        std::fs::set_permissions(out.join(d), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let before = snapshot(out);
    let pins = root.path().join("pins/per-user");
    let store = root.path().join("store");
    let mine = pins.join("nobody");
    // nobody's real pin of a, then what nobody plants around it.
    assert!(as_nobody(&format!(
        "set -e; mkdir -p {m}/handmade {m}/other/auto
         ln -s {s}/{a} {m}/handmade/{a}
         ln -s {o} {p}/evil
         ln -s {o}/prog {m}/proglink
         ln -s {o}/auto {m}/handmade/auto
         ln -s {o}/a.txt {m}/handmade/stolen
         ln -s {o}/b.txt {m}/other/auto/x
         mkfifo {m}/other/auto/fifo",
        m = mine.display(),
        p = pins.display(),
        s = store.display(),
        o = out.display(),
    )));
    // The temp pin directory is the root owner's; a FIFO there must not hang the collector.
    let fifo = root.path().join("pins/temp/4242-0");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);

    let r = gc_within(&root, &[], Duration::from_secs(30));

    assert_eq!(snapshot(out), before, "a file outside the root changed");
    let refused = paths(&r, "refused");
    for p in [
        pins.join("evil"),
        mine.join("proglink"),
        mine.join("handmade/auto"),
        mine.join("other/auto/fifo"),
        fifo.clone(),
    ] {
        assert!(refused.contains(&p), "{} not refused: {r}", p.display());
        assert!(
            std::fs::symlink_metadata(&p).is_ok(),
            "{} deleted",
            p.display()
        );
    }
    // Links to files outside pin nothing: the links go, their targets stay.
    let removed = paths(&r, "removed_links");
    for p in [mine.join("handmade/stolen"), mine.join("other/auto/x")] {
        assert!(removed.contains(&p), "{} not removed: {r}", p.display());
        assert!(std::fs::symlink_metadata(&p).is_err());
    }
    assert_eq!(present(&root, &garbage), 0, "garbage is still collected");
    assert_eq!(present(&root, &ba), ba.len(), "nobody's pin counts");
    assert_eq!(present(&root, &bb), bb.len(), "root's pin counts");
}

/// Rule: a directory is opened relative to its parent without following a symlink, so an
/// entry that is a directory when listed and a symlink when opened is not entered. A thread
/// swaps `auto` directories with symlinks to a directory outside the root (renameat2
/// RENAME_EXCHANGE, atomic, over and over) while the collector runs again and again: every
/// link in the outside directory survives, though each pins nothing.
#[test]
fn a_directory_swapped_for_a_symlink_mid_walk_is_not_entered() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let root = Root::new();
    let outside = tempfile::tempdir().unwrap();
    let links: Vec<PathBuf> = (0..20)
        .map(|i| {
            let l = outside.path().join(format!("link{i}"));
            std::os::unix::fs::symlink(format!("/nowhere/{i}"), &l).unwrap();
            l
        })
        .collect();
    let user = root.path().join("pins/per-user/root");
    let pairs: Vec<(std::ffi::CString, std::ffi::CString)> = (0..16)
        .map(|i| {
            let auto = user.join(format!("prog{i}/auto"));
            std::fs::create_dir_all(&auto).unwrap();
            let swap = user.join(format!("swap{i}"));
            std::os::unix::fs::symlink(outside.path(), &swap).unwrap();
            let c = |p: &Path| std::ffi::CString::new(p.to_str().unwrap()).unwrap();
            (c(&auto), c(&swap))
        })
        .collect();
    let stop = AtomicBool::new(false);
    let swaps = std::thread::scope(|s| {
        let swapper = s.spawn(|| {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                for (a, b) in &pairs {
                    // SAFETY: valid NUL-terminated paths.
                    let r = unsafe {
                        libc::renameat2(
                            libc::AT_FDCWD,
                            a.as_ptr(),
                            libc::AT_FDCWD,
                            b.as_ptr(),
                            libc::RENAME_EXCHANGE,
                        )
                    };
                    assert_eq!(r, 0, "{}", std::io::Error::last_os_error());
                    n += 1;
                }
            }
            n
        });
        for _ in 0..40 {
            gc_within(&root, &[], Duration::from_secs(30));
        }
        stop.store(true, Ordering::Relaxed);
        swapper.join().unwrap()
    });
    assert!(swaps > 1000, "the swapper ran {swaps} times");
    for l in &links {
        assert!(
            std::fs::symlink_metadata(l).is_ok(),
            "{} was deleted through a swapped-in symlink",
            l.display()
        );
    }
}

/// Rule: a user directory owned by someone else than the user it is named after (or root) is
/// reported; its pins count, and the collector (root here) deletes nothing in it.
#[test]
fn a_squatted_user_directory_is_reported_and_left_alone() {
    let root = Root::new();
    let ((a, ba), _) = two_trees(&root);
    let_others_in(&root);
    // nobody makes the directory of the user daemon, with a pin and a link that pins nothing.
    let squat = root.path().join("pins/per-user/daemon");
    assert!(as_nobody(&format!(
        "set -e; mkdir -p {d}/prog/auto
         ln -s {s}/{a} {d}/prog/{a}
         ln -s /nowhere/at/all {d}/prog/broken
         ln -s /nowhere/at/all {d}/prog/auto/stale",
        d = squat.display(),
        s = root.path().join("store").display(),
    )));
    let r = gc(&root);
    let refused = paths(&r, "refused");
    assert!(refused.contains(&squat), "{r}");
    assert!(refused.contains(&squat.join("prog/broken")), "{r}");
    assert!(std::fs::symlink_metadata(squat.join("prog/broken")).is_ok());
    assert!(std::fs::symlink_metadata(squat.join("prog/auto/stale")).is_ok());
    assert!(paths(&r, "removed_links").is_empty(), "{r}");
    assert_eq!(present(&root, &ba), ba.len(), "the squatter's pin counts");
}

/// Rule: every batch of the sweep deletes something, however long gathering the roots again
/// takes. With a zero budget, which every gathering outlasts, and many pins and live temp
/// pins to gather, the collection still ends and frees all the garbage.
#[test]
fn gc_finishes_when_gathering_roots_outlasts_the_batch() {
    use std::os::fd::AsRawFd;
    let root = Root::new();
    let kept = root.dir.path().join("kept.txt");
    std::fs::write(&kept, "kept\n").unwrap();
    let kept = root.add_q(&["--pin=false", kept.to_str().unwrap()]);
    let big = root.dir.path().join("big.bin");
    random_file(&big, 96 << 10, 3);
    let garbage = root.add_q(&["--pin=false", "--chunker=size-256", big.to_str().unwrap()]);
    let garbage = dag_blocks(&root, &garbage);
    assert!(garbage.len() > 4 * 64, "several batches' worth");
    let many = root.path().join("pins/per-user/root/many");
    std::fs::create_dir_all(&many).unwrap();
    for i in 0..300 {
        std::os::unix::fs::symlink(
            root.path().join("store").join(&kept),
            many.join(format!("kept-{i}")),
        )
        .unwrap();
    }
    // Live writers' temp pins: files whose lock this test holds through the collection.
    let temps: Vec<std::fs::File> = (0..20)
        .map(|i| {
            let path = root
                .path()
                .join(format!("pins/temp/{}-{i}", std::process::id()));
            std::fs::write(&path, format!("{kept}\n")).unwrap();
            let f = std::fs::File::open(&path).unwrap();
            // SAFETY: a valid fd.
            assert_eq!(unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) }, 0);
            f
        })
        .collect();
    let r = gc_within(&root, &["--batch-ms", "0"], Duration::from_secs(60));
    drop(temps);
    assert_eq!(r["live_temp_pins"], 20, "{r}");
    assert_eq!(r["pins"], 300, "{r}");
    assert!(r["batches"].as_u64().unwrap() >= 4, "{r}");
    assert_eq!(present(&root, &garbage), 0);
    assert_eq!(r["freed_blocks"].as_u64().unwrap() as usize, garbage.len());
    assert_eq!(root.ok(&["cat", &kept]), "kept\n");
}

/// Rule: blocks are told apart by their whole CID. A pinned DAG that links to a made-up CID
/// whose digest differs from a live block's only in its last byte takes nothing from the live
/// block: everything under it stays. (The live DAG's blocks are copied in without index
/// entries, as after a lost journal record or a copied `blocks/`, so its links come from the
/// blocks themselves; the made-up CID is met first.)
#[test]
fn a_made_up_cid_sharing_a_live_digest_prefix_frees_nothing() {
    use cairn_store::codec::dagpb::{PbLink, PbNode};
    let root = Root::new();
    // The live DAG, built in another root and copied in block file by block file.
    let elsewhere = Root::new();
    let file = root.dir.path().join("live.bin");
    random_file(&file, 8 << 10, 9);
    let live = elsewhere.add_q(&["--pin=false", "--chunker=size-1024", file.to_str().unwrap()]);
    let blocks = dag_blocks(&elsewhere, &live);
    assert!(blocks.len() > 2);
    for b in &blocks {
        std::fs::copy(
            elsewhere.path().join("blocks").join(b),
            root.path().join("blocks").join(b),
        )
        .unwrap();
    }
    // A node linking to the made-up CID on both sides of the live root.
    let x = cairn_store::parse_cid(&live).unwrap();
    let mut digest = x.hash().digest().to_vec();
    *digest.last_mut().unwrap() ^= 0xff;
    // CIDv1, dag-pb, sha2-256, 32 bytes.
    let fake =
        cairn_store::Cid::try_from(&[&[0x01, 0x70, 0x12, 0x20][..], &digest].concat()[..]).unwrap();
    let link = |cid| PbLink {
        cid,
        name: None,
        tsize: None,
    };
    let node = PbNode {
        links: vec![link(fake), link(x), link(fake)],
        data: None,
    };
    let node_file = root.dir.path().join("node.pb");
    std::fs::write(&node_file, node.encode()).unwrap();
    let hostile = root
        .ok(&[
            "block",
            "put",
            "--cid-codec",
            "dag-pb",
            node_file.to_str().unwrap(),
        ])
        .trim()
        .to_owned();
    root.ok(&["pin", "add", &hostile, "--prog", "a-hostile"]);
    root.ok(&["pin", "add", &live, "--prog", "z-live"]);
    let r = gc(&root);
    assert_eq!(present(&root, &blocks), blocks.len(), "{r}");
    let cat = root.output(&["cat", &live]);
    assert!(cat.status.success());
    assert_eq!(cat.stdout, std::fs::read(&file).unwrap());
    assert!(root.ok(&["verify"]).contains(": 0 corrupt"));
}
