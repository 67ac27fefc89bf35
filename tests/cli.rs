//! The commands as a user types them.

use std::{
    os::unix::fs::{MetadataExt, PermissionsExt},
    path::Path,
};

use crate::util::{cairn_bin, shared, write_tree, Root};

#[test]
fn every_command_has_help() {
    for args in [
        &["--help"][..],
        &["init", "--help"],
        &["add", "--help"],
        &["cat", "--help"],
        &["get", "--help"],
        &["ls", "--help"],
        &["block", "--help"],
        &["block", "put", "--help"],
        &["refs", "--help"],
        &["dag", "import", "--help"],
        &["dag", "export", "--help"],
        &["verify", "--help"],
        &["repair", "--help"],
        &["stat", "--help"],
    ] {
        let out = std::process::Command::new(cairn_bin())
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}");
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(text.contains("Usage:"), "{args:?}: {text}");
    }
}

#[test]
fn errors_are_one_clear_line() {
    let root = Root::new();
    let cases: &[(&[&str], &str)] = &[
        (&["cat", "not-a-cid"], "invalid CID \"not-a-cid\""),
        (
            &[
                "cat",
                "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku",
            ],
            "is not available",
        ),
        (&["add", "/definitely/not/here"], "/definitely/not/here"),
        (
            &["add", "--chunker", "rabin", "/etc/hostname"],
            "unsupported chunker",
        ),
        (
            &[
                "add",
                "--cid-version",
                "0",
                "--hash",
                "blake3",
                "/etc/hostname",
            ],
            "CIDv0 only supports sha2-256",
        ),
        (
            &[
                "block",
                "stat",
                "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH",
            ],
            "not in the store",
        ),
    ];
    for (args, says) in cases {
        let err = root.fails(args);
        assert!(err.contains(says), "{args:?}: {err:?} should say {says:?}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err:?}");
        assert!(err.starts_with("cairn: "), "{err}");
    }
    let dir = root.dir.path().join("d");
    std::fs::create_dir(&dir).unwrap();
    let err = root.fails(&["add", dir.to_str().unwrap()]);
    assert!(err.contains("is a directory (add it with -r)"), "{err}");
    // A root that was never initialised.
    let out = std::process::Command::new(cairn_bin())
        .args([
            "--root",
            "/nonexistent/cairn",
            "cat",
            "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH",
        ])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a cairn root (run `cairn init`)"));
}

/// Compares two trees: names, types, contents, symlink targets, and exec bits.
fn assert_same_tree(a: &Path, b: &Path, modes: bool) {
    let (ma, mb) = (
        std::fs::symlink_metadata(a).unwrap(),
        std::fs::symlink_metadata(b).unwrap(),
    );
    assert_eq!(ma.file_type(), mb.file_type(), "{}", b.display());
    if modes && !ma.file_type().is_symlink() {
        assert_eq!(
            ma.permissions().mode() & 0o7777,
            mb.permissions().mode() & 0o7777,
            "{}",
            b.display()
        );
        assert_eq!(ma.mtime(), mb.mtime(), "mtime of {}", b.display());
    }
    if ma.is_dir() {
        let names = |p: &Path| {
            let mut v: Vec<_> = std::fs::read_dir(p)
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            v.sort();
            v
        };
        assert_eq!(names(a), names(b), "{}", b.display());
        for n in names(a) {
            assert_same_tree(&a.join(&n), &b.join(&n), modes);
        }
    } else if ma.file_type().is_symlink() {
        assert_eq!(
            std::fs::read_link(a).unwrap(),
            std::fs::read_link(b).unwrap()
        );
    } else {
        assert_eq!(
            std::fs::read(a).unwrap(),
            std::fs::read(b).unwrap(),
            "{}",
            b.display()
        );
    }
}

#[test]
fn get_restores_files_dirs_symlinks_modes_and_mtimes() {
    let root = Root::new();
    let src = root.dir.path().join("src");
    write_tree(
        &src,
        &[
            ("a.txt", "alpha\n"),
            ("sub/b.txt", "beta\n"),
            ("sub/empty", ""),
        ],
    );
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(src.join("sub/big.bin"), &big).unwrap();
    std::fs::write(src.join("tool.sh"), "#!/bin/sh\necho hi\n").unwrap();
    std::fs::set_permissions(src.join("tool.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::symlink("sub/b.txt", src.join("link")).unwrap();
    std::os::unix::fs::symlink("../nowhere", src.join("sub/dangling")).unwrap();
    std::fs::create_dir(src.join("emptydir")).unwrap();

    let cid = root.add_q(&[
        "-r",
        "--preserve-mode",
        "--preserve-mtime",
        src.to_str().unwrap(),
    ]);
    let dest = root.dir.path().join("out");
    root.ok(&["get", &cid, "-o", dest.to_str().unwrap()]);
    assert_same_tree(&src, &dest, true);
    // The executable runs from the restored tree.
    let out = std::process::Command::new(dest.join("tool.sh"))
        .output()
        .unwrap();
    assert_eq!(out.stdout, b"hi\n");
    // A path inside, and an existing destination is refused.
    let one = root.dir.path().join("one.bin");
    root.ok(&[
        "get",
        &format!("{cid}/sub/big.bin"),
        "-o",
        one.to_str().unwrap(),
    ]);
    assert_eq!(std::fs::read(&one).unwrap(), big);
    let err = root.fails(&["get", &cid, "-o", dest.to_str().unwrap()]);
    assert!(err.contains("already exists"), "{err}");
    // cat of a path, ls of a directory.
    assert_eq!(
        root.ok(&["cat", &format!("/ipfs/{cid}/sub/b.txt")]),
        "beta\n"
    );
    let ls = root.ok(&["ls", &cid]);
    let names: Vec<&str> = ls.lines().map(|l| l.rsplit(' ').next().unwrap()).collect();
    assert_eq!(names, ["a.txt", "emptydir/", "link", "sub/", "tool.sh"]);
}

#[test]
fn get_refuses_names_that_escape_the_destination() {
    for (car, root_cid, bad) in [
        (
            "inside-root.car",
            "bafybeibfevfxlvxp5vxobr5oapczpf7resxnleb7tkqmdorc4gl5cdva3y",
            "../file",
        ),
        (
            "outside-root.car",
            "bafybeicaj7kvxpcv4neaqzwhrqqmdstu4dhrwfpknrgebq6nzcecfucvyu",
            "../foo",
        ),
    ] {
        let root = Root::new();
        let f = shared()
            .join("fixtures/gateway-conformance/fixtures/path_gateway_tar")
            .join(car);
        root.ok(&["dag", "import", f.to_str().unwrap()]);
        let work = root.dir.path().join("work");
        std::fs::create_dir(&work).unwrap();
        let dest = work.join("dest");
        let err = root.fails(&["get", root_cid, "-o", dest.to_str().unwrap()]);
        assert!(err.contains(&format!("refusing entry \"{bad}\"")), "{err}");
        assert!(err.contains("name contains '/'"), "{err}");
        // Nothing appeared beside the destination.
        let beside: Vec<_> = std::fs::read_dir(&work)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(beside.iter().all(|n| n == "dest"), "{beside:?}");
        assert!(!root.dir.path().join("file").exists() && !root.dir.path().join("foo").exists());
    }
}

#[test]
fn block_commands() {
    let root = Root::new();
    let data = root.dir.path().join("data");
    std::fs::write(&data, "hello\n").unwrap();
    let cid = root
        .ok(&["block", "put", data.to_str().unwrap()])
        .trim()
        .to_owned();
    assert_eq!(
        cid,
        "bafkreicysg23kiwv34eg2d7qweipxwosdo2py4ldv42nbauguluen5v6am"
    );
    assert_eq!(root.ok(&["block", "get", &cid]), "hello\n");
    assert!(root.ok(&["block", "stat", &cid]).contains("Size: 6\n"));
    // dag-pb blocks must decode.
    let err = root.fails(&[
        "block",
        "put",
        "--cid-codec",
        "dag-pb",
        data.to_str().unwrap(),
    ]);
    assert!(err.contains("protobuf") || err.contains("dag-pb"), "{err}");
    root.ok(&["block", "rm", &cid]);
    root.fails(&["block", "get", &cid]);
    root.fails(&["block", "rm", &cid]);
    root.ok(&["block", "rm", "-f", &cid]);
}

#[test]
fn refs_and_stat() {
    let root = Root::new();
    let f = shared().join("fixtures/go-car/simple-unixfs.car");
    root.ok(&["dag", "import", f.to_str().unwrap()]);
    let top = "QmPLPpnptHc1DMhJAWNYMTqBTqqRQNy5WsY7F9pZgsBfMT";
    assert_eq!(root.ok(&["refs", top]).lines().count(), 3);
    // All 21 blocks below the root, each once.
    assert_eq!(root.ok(&["refs", "-r", top]).lines().count(), 21);
    let stat: serde_json::Value = serde_json::from_str(&root.ok(&["stat", "--json"])).unwrap();
    assert_eq!(stat["blocks"], 22);
    // The same answers once the index is gone (refs parses blocks) and after repair.
    std::fs::remove_dir_all(root.path().join("index/db")).unwrap();
    assert_eq!(root.ok(&["refs", "-r", top]).lines().count(), 21);
    root.ok(&["repair"]);
    let stat: serde_json::Value = serde_json::from_str(&root.ok(&["stat", "--json"])).unwrap();
    assert_eq!(stat["blocks"], 22);
}

#[test]
fn add_from_stdin_and_only_hash() {
    let root = Root::new();
    let mut child = root
        .cmd(&["add"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"Hello Worlds!\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "added QmVr26fY1tKyspEJBniVhqxQeEjhF78XerGiqWAwraVLQH QmVr26fY1tKyspEJBniVhqxQeEjhF78XerGiqWAwraVLQH\n"
    );
    let f = root.dir.path().join("x");
    std::fs::write(&f, "only hash\n").unwrap();
    let before = root.block_files().len();
    root.ok(&["add", "-n", f.to_str().unwrap()]);
    assert_eq!(root.block_files().len(), before);
}
