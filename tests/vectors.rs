//! The 65 `ipfs add` vectors of ../shared/vectors/kubo-add-vectors.md, each reproduced by
//! running `cairn add` with the same input and flags. Expected CIDs are read from that file.

use std::{
    collections::{BTreeSet, HashMap},
    path::{Path, PathBuf},
    process::Command,
    sync::OnceLock,
};

use crate::util::{shared, write_tree, Root};

/// id → expected CID, parsed from the vectors table.
fn expected() -> &'static HashMap<String, String> {
    static TABLE: OnceLock<HashMap<String, String>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let text = std::fs::read_to_string(shared().join("vectors/kubo-add-vectors.md")).unwrap();
        let mut map = HashMap::new();
        for line in text.lines() {
            let cols: Vec<&str> = line.split('|').map(str::trim).collect();
            if cols.len() < 6 || cols[1].is_empty() || cols[1] == "id" || cols[1].starts_with('-') {
                continue;
            }
            let cid = cols[4].trim_matches('`');
            if cid.starts_with("Qm") || cid.starts_with("baf") {
                map.insert(cols[1].to_string(), cid.to_string());
            }
        }
        assert_eq!(map.len(), 65, "the vectors table should list 65 CIDs");
        map
    })
}

fn expect(id: &str, got: &str) {
    let want = expected()
        .get(id)
        .unwrap_or_else(|| panic!("no vector {id}"));
    assert_eq!(got, want, "vector {id}");
}

/// Adds one file with the given contents and flags; returns the CID printed.
fn add_text(root: &Root, text: &str, name: &str, flags: &[&str]) -> String {
    let path = root.dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    let mut args: Vec<&str> = flags.to_vec();
    args.push(path.to_str().unwrap());
    root.add_q(&args)
}

/// Adds a tree recursively; returns printed path → CID.
fn add_tree(root: &Root, dir: &Path, flags: &[&str]) -> HashMap<String, String> {
    let mut args = vec!["add", "-r"];
    args.extend_from_slice(flags);
    args.push(dir.to_str().unwrap());
    root.ok(&args)
        .lines()
        .map(|l| {
            let mut parts = l.splitn(3, ' ');
            assert_eq!(parts.next(), Some("added"), "{l}");
            let cid = parts.next().unwrap().to_owned();
            (parts.next().unwrap().to_owned(), cid)
        })
        .collect()
}

#[test]
fn single_files() {
    let root = Root::new();
    for (id, text, flags) in [
        ("A1", "Hello Worlds!\n", &[][..]),
        ("A2", "", &[]),
        ("A3", "IPFS\n", &[]),
        ("A5", "base32 test\n", &["--cid-base=base32"]),
        ("A6", "Helloo Worlds!\n", &[]),
        ("A7", "Hello MFS!\n", &[]),
        ("A8", "file1\n", &["--cid-version", "1"]),
        ("A9", "file2\n", &["--cid-version", "1"]),
        ("A11", "", &["--raw-leaves"]),
        ("A12", "World\n", &[]),
        ("A13", "Hello Venus!\n", &[]),
        ("A14", "Hello Jupiter!\n", &[]),
        ("A15", "Hello Neptune!\nHello Pluton!", &[]),
        ("P2", "Hello Mars!\n", &[]),
        ("P4", "Hello Mars!\n", &["--raw-leaves"]),
        ("P5", "Hello Venus!\n", &["--raw-leaves"]),
        (
            "P8",
            "Hello Mars!\n",
            &["--cid-version=1", "--raw-leaves=false"],
        ),
        (
            "P9",
            "Hello Venus!\n",
            &["--cid-version=1", "--raw-leaves=false"],
        ),
        ("P11", "Hello Mars!\n", &["--hash=blake2b-256"]),
        ("M3", "hey you are no moon!\n", &[]),
        ("M4", "Hello Europa!\n", &[]),
        ("M6", "Hello Titan!\n", &[]),
        ("K1", "Hello Mars\n", &[]),
        ("H4", "100\n", &[]),
    ] {
        expect(id, &add_text(&root, text, "f.txt", flags));
    }
    // A hidden file named explicitly is added (t0042).
    expect("K7", &add_text(&root, "set nocompatible\n", ".vimrc", &[]));
}

#[test]
fn directories() {
    let root = Root::new();
    let d = root.dir.path();

    write_tree(
        &d.join("a4"),
        &[("hey", "Hey\n"), ("hello/world", "World\n")],
    );
    expect("A4", &root.add_q(&["-r", d.join("a4").to_str().unwrap()]));

    write_tree(
        &d.join("mfs"),
        &[("mfs1.txt", "file1\n"), ("mfs2.txt", "file2\n")],
    );
    expect(
        "A10",
        &root.add_q(&["--cid-version", "1", "-r", d.join("mfs").to_str().unwrap()]),
    );

    let planets = d.join("planets");
    write_tree(
        &planets,
        &[
            ("mars.txt", "Hello Mars!\n"),
            ("venus.txt", "Hello Venus!\n"),
        ],
    );
    for (id, flags) in [
        ("P1", &[][..]),
        ("P3", &["--raw-leaves"]),
        ("P6", &["--cid-version=1"]),
        ("P7", &["--cid-version=1", "--raw-leaves=false"]),
        ("P10", &["--hash=blake2b-256"]),
    ] {
        let out = add_tree(&root, &planets, flags);
        expect(id, &out["planets"]);
    }

    let moons = d.join("moons");
    write_tree(
        &moons,
        &[
            ("jupiter/europa.txt", "Hello Europa!\n"),
            ("saturn/titan.txt", "Hello Titan!\n"),
            ("mercury.txt", "hey you are no moon!\n"),
        ],
    );
    let out = add_tree(&root, &moons, &[]);
    expect("M1", &out["moons"]);
    expect("M2", &out["moons/jupiter"]);
    expect("M5", &out["moons/saturn"]);
    // Output order is `ipfs add`'s: depth first, a directory after its contents.
    let order: Vec<String> = root
        .ok(&["add", "-r", moons.to_str().unwrap()])
        .lines()
        .map(|l| l.rsplit(' ').next().unwrap().to_owned())
        .collect();
    assert_eq!(
        order,
        [
            "moons/jupiter/europa.txt",
            "moons/jupiter",
            "moons/mercury.txt",
            "moons/saturn/titan.txt",
            "moons/saturn",
            "moons"
        ]
    );
}

#[test]
fn hidden_files_and_ignore_rules() {
    let root = Root::new();
    let planets = root.dir.path().join("planets");
    write_tree(
        &planets,
        &[
            (".gitignore", "mars.txt\n"),
            ("mars.txt", "Hello Mars\n"),
            ("venus.txt", "Hello Venus\n"),
            (".pluto.txt", "Hello Pluto\n"),
            (".charon.txt", "Hello Charon\n"),
            (".asteroids/ceres.txt", "Hello Ceres\n"),
            (".asteroids/pallas.txt", "Hello Pallas\n"),
        ],
    );
    let p = planets.to_str().unwrap();
    expect("K2", &root.add_q(&["-r", p]));
    let all = add_tree(&root, &planets, &["--hidden"]);
    expect("K3", &all["planets"]);
    expect("K4", &all["planets/.asteroids"]);
    let rules = planets.join(".gitignore");
    let rules = rules.to_str().unwrap();
    expect(
        "K5",
        &root.add_q(&["-r", "--hidden", "--ignore-rules-path", rules, p]),
    );
    expect(
        "K6",
        &root.add_q(&[
            "-r",
            "--hidden",
            "--ignore-rules-path",
            rules,
            "--ignore",
            "venus.txt",
            "--ignore",
            ".asteroids",
            p,
        ]),
    );
}

#[test]
fn symlinks() {
    let root = Root::new();
    let files = root.dir.path().join("files");
    write_tree(&files, &[("foo/baz", "some text\n")]);
    std::fs::create_dir(files.join("bar")).unwrap();
    std::os::unix::fs::symlink("files/foo/baz", files.join("bar/baz")).unwrap();
    std::os::unix::fs::symlink("files/does/not/exist", files.join("bad")).unwrap();
    let f = files.to_str().unwrap();
    expect("S1", &root.add_q(&["-r", f]));
    expect("S2", &root.add_q(&["-r", "--cid-version=1", f]));
    expect(
        "S3",
        &root.add_q(&[files.join("bar/baz").to_str().unwrap()]),
    );
    expect("S4", &root.add_q(&[files.join("bad").to_str().unwrap()]));
}

fn touch(path: &Path, secs: i64, symlink: bool) {
    let mut c = Command::new("touch");
    if symlink {
        c.arg("-h");
    }
    let st = c
        .arg("-d")
        .arg(format!("@{secs}"))
        .arg(path)
        .status()
        .unwrap();
    assert!(st.success());
}

#[test]
fn mode_and_mtime() {
    use std::os::unix::fs::PermissionsExt;
    let root = Root::new();
    let d = root.dir.path();
    let f = d.join("empty");
    std::fs::write(&f, "").unwrap();
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o640)).unwrap();
    touch(&f, 1604320482, false);
    let fs = f.to_str().unwrap();
    expect("T1", &root.add_q(&["--preserve-mode", fs]));
    expect("T2", &root.add_q(&["--preserve-mtime", fs]));
    expect(
        "T3",
        &root.add_q(&["--preserve-mode", "--preserve-mtime", fs]),
    );
    expect("T5", &root.add_q(&["--mode=0764", fs]));
    expect("T6", &root.add_q(&["--mtime=1603539720", fs]));
    expect(
        "T7",
        &root.add_q(&["--mtime=1603539720", "--mtime-nsecs=54321", fs]),
    );
    expect(
        "T8",
        &root.add_q(&[
            "--mode=0764",
            "--mtime=1603539720",
            "--mtime-nsecs=54321",
            fs,
        ]),
    );
    let l = d.join("link");
    std::os::unix::fs::symlink("nothing", &l).unwrap();
    touch(&l, 1604320482, true);
    let ls = l.to_str().unwrap();
    expect("T4", &root.add_q(&["--preserve-mtime", ls]));
    expect("T9", &root.add_q(&["--mtime=1603539720", ls]));
}

#[test]
fn sharded_directories() {
    let root = Root::new();
    let dir = root.dir.path().join("testdata");
    std::fs::create_dir(&dir).unwrap();
    for i in 1..=2000 {
        std::fs::write(dir.join(format!("file{i}")), format!("{i}\n")).unwrap();
    }
    let d = dir.to_str().unwrap();
    expect(
        "H1",
        &root.add_q(&["-r", "--shard-threshold", "1000000000", d]),
    );
    expect("H2", &root.add_q(&["-r", "--shard-threshold", "1", d]));
    expect("H3", &root.add_q(&["-r", "--shard", "--cid-version=1", d]));
    // A file inside the HAMT resolves by name.
    let h2 = expected()["H2"].clone();
    assert_eq!(root.ok(&["cat", &format!("{h2}/file100")]), "100\n");
}

#[test]
fn five_mib_random_file() {
    let root = Root::new();
    let f = shared().join("vectors/random-data-seed41-5MiB.bin");
    let f = f.to_str().unwrap();
    for (id, flags) in [
        ("R1", &[][..]),
        ("R2", &["--raw-leaves"]),
        ("R3", &["--cid-version=1"]),
        ("R4", &["--cid-version=1", "--raw-leaves=false"]),
        ("R5", &["--hash=blake2b-256"]),
        ("R6", &["--hash=blake2b-256", "--raw-leaves=false"]),
    ] {
        let mut args = flags.to_vec();
        args.push(f);
        expect(id, &root.add_q(&args));
    }
}

/// Writes Go's math/rand stream for `seed` with the Go toolchain (`golang-go`).
fn go_random(size: u64, seed: u64, out: &Path) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/random-data.go");
    let file = std::fs::File::create(out).unwrap();
    let status = Command::new("go")
        .arg("run")
        .arg(&src)
        .arg(size.to_string())
        .arg(seed.to_string())
        .env("GOCACHE", std::env::temp_dir().join("cairn-go-cache"))
        .env("GOFLAGS", "-mod=mod")
        .env("GO111MODULE", "off")
        .stdout(file)
        .status()
        .expect("`go` is needed for the 100 MiB vectors: apt-get install golang-go");
    assert!(status.success(), "go run {} failed", src.display());
}

#[test]
fn hundred_mib_random_file() {
    let root = Root::new();
    // The generator is checked first against the stored 5 MiB seed-41 file.
    let small: PathBuf = root.dir.path().join("seed41");
    go_random(5 << 20, 41, &small);
    assert_eq!(
        std::fs::read(&small).unwrap(),
        std::fs::read(shared().join("vectors/random-data-seed41-5MiB.bin")).unwrap(),
        "Go's math/rand stream differs from the stored vector input"
    );
    let big = root.dir.path().join("seed42");
    go_random(100 << 20, 42, &big);
    let b = big.to_str().unwrap();
    expect("R7", &root.add_q(&[b]));
    expect("R8", &root.add_q(&["-n", "--cid-version=1", b]));
    expect("R9", &root.add_q(&["-n", "--hash=blake2b-256", b]));
}

/// Every id in the table is exercised by one of the tests above (this list mirrors them).
#[test]
fn every_vector_has_a_test() {
    let covered = "A1 A2 A3 A4 A5 A6 A7 A8 A9 A10 A11 A12 A13 A14 A15 \
        P1 P2 P3 P4 P5 P6 P7 P8 P9 P10 P11 M1 M2 M3 M4 M5 M6 \
        K1 K2 K3 K4 K5 K6 K7 S1 S2 S3 S4 T1 T2 T3 T4 T5 T6 T7 T8 T9 \
        H1 H2 H3 H4 R1 R2 R3 R4 R5 R6 R7 R8 R9";
    let covered: BTreeSet<String> = covered.split_whitespace().map(String::from).collect();
    let table: BTreeSet<String> = expected().keys().cloned().collect();
    assert_eq!(covered, table);
}
