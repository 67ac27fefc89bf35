//! git objects as blocks (the git issue, item 1): every object of a real repository, put with
//! `cairn block put --cid-codec git-raw`, is named by git's own id; a commit's DAG is every
//! object it reaches (a gitlink is not a link); and kubo, which reads git-raw with
//! go-ipld-git, pins a commit only a cairn daemon serves, fetching each object from it.
//!
//! Found here: kubo v0.22's go-ipld-git does take a gitlink (a submodule's commit, mode
//! 160000) for a link, so kubo pinning a commit whose tree has a submodule waits for a
//! commit of another repository for ever. The kubo test's repository has none.

use std::{
    path::Path,
    process::{Command, Stdio},
};

use crate::{
    peers::{free_ports, interop, Daemon},
    util::Root,
};

fn git(dir: &Path, args: &[&str], input: Option<&str>) -> String {
    text(git_bytes(dir, args, input.map(str::as_bytes)))
}

/// A repository with two commits, a subdirectory, an executable, a symlink, an annotated tag
/// and, with `submodule`, a gitlink to a commit this repository does not have. Returns the
/// id of the second commit and every object as (id, loose object bytes).
fn repo(dir: &Path, submodule: bool) -> (String, Vec<(String, Vec<u8>)>) {
    git(dir, &["init", "-q"], None);
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    std::fs::write(dir.join("a"), "one\n").unwrap();
    std::fs::write(dir.join("sub/run"), "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(
        dir.join("sub/run"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    std::os::unix::fs::symlink("a", dir.join("link")).unwrap();
    git(dir, &["add", "-A"], None);
    if submodule {
        let foreign = "1".repeat(40);
        git(
            dir,
            &[
                "update-index",
                "--add",
                "--cacheinfo",
                &format!("160000,{foreign},module"),
            ],
            None,
        );
    }
    git(dir, &["commit", "-q", "-m", "one"], None);
    std::fs::write(dir.join("a"), "two\n").unwrap();
    git(dir, &["commit", "-q", "-am", "two"], None);
    git(dir, &["tag", "-a", "v1", "-m", "v1"], None);
    let head = git(dir, &["rev-parse", "HEAD"], None);
    let all = git(
        dir,
        &["cat-file", "--batch-all-objects", "--batch-check"],
        None,
    );
    let objects = all
        .lines()
        .map(|l| {
            let id = l.split(' ').next().unwrap();
            (id.to_owned(), object(dir, id))
        })
        .collect();
    (head, objects)
}

/// Puts every object into `root`; returns the CIDs, checked to carry git's ids.
fn put_all(root: &Root, objects: &[(String, Vec<u8>)]) -> Vec<String> {
    objects
        .iter()
        .enumerate()
        .map(|(i, (id, bytes))| {
            let f = root.dir.path().join(format!("object-{i}"));
            std::fs::write(&f, bytes).unwrap();
            let cid = root
                .ok(&[
                    "block",
                    "put",
                    "--cid-codec",
                    "git-raw",
                    f.to_str().unwrap(),
                ])
                .trim()
                .to_owned();
            let parsed: cid::Cid = cid.parse().unwrap();
            let digest: String = parsed
                .hash()
                .digest()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            assert_eq!(
                (parsed.codec(), parsed.hash().code(), digest.as_str()),
                (0x78, 0x11, id.as_str())
            );
            cid
        })
        .collect()
}

/// The git-raw CID of object `id`.
fn cid_of(id: &str) -> String {
    let bytes: Vec<u8> = (0..id.len() / 2)
        .map(|i| u8::from_str_radix(&id[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    cid::Cid::new_v1(
        0x78,
        multihash::Multihash::<64>::wrap(0x11, &bytes).unwrap(),
    )
    .to_string()
}

#[test]
fn git_objects_are_blocks_named_by_their_ids() {
    let dir = tempfile::tempdir().unwrap();
    let (head, objects) = repo(dir.path(), true);
    let a = Root::new();
    put_all(&a, &objects);
    // The second commit reaches every object but the tag (and the first commit's tree
    // and blob through its parent): exported whole, imported elsewhere, all there.
    let car = a.dir.path().join("head.car");
    a.ok(&["dag", "export", &cid_of(&head), "-o", car.to_str().unwrap()]);
    let b = Root::new();
    b.ok(&["dag", "import", car.to_str().unwrap()]);
    let tag = git(dir.path(), &["rev-parse", "v1"], None);
    for (id, _) in &objects {
        let there = b.output(&["block", "stat", &cid_of(id)]).status.success();
        assert_eq!(there, *id != tag, "{id}");
    }
    // A block that is not what its header says, or not an object at all, is refused.
    let bad = a.dir.path().join("bad");
    std::fs::write(&bad, b"blob 5\0four").unwrap();
    a.fails(&[
        "block",
        "put",
        "--cid-codec",
        "git-raw",
        bad.to_str().unwrap(),
    ]);
    std::fs::write(&bad, b"hello").unwrap();
    a.fails(&[
        "block",
        "put",
        "--cid-codec",
        "git-raw",
        bad.to_str().unwrap(),
    ]);
}

/// kubo pins (recursively) a commit that only a cairn daemon has: it reads the commit's
/// links with its git plugin and fetches each object from cairn.
#[test]
fn kubo_pins_a_git_commit_only_cairn_serves() {
    let dir = tempfile::tempdir().unwrap();
    let (head, objects) = repo(dir.path(), false);
    let a = Root::new();
    put_all(&a, &objects);
    let d = Daemon::start(&a, false, &[]);
    let i = interop();
    // A pin that never ends (a block nobody serves) fails the test instead of hanging it.
    let out = Command::new("timeout")
        .arg("120")
        .arg(i.join("kubo-py/bin/python"))
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/kubo_pin.py"))
        .arg(a.dir.path().join("kubo"))
        .arg(free_ports().to_string())
        .arg(&d.addr)
        .arg(cid_of(&head))
        .stderr(Stdio::null())
        .output()
        .expect("kubo");
    let text = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value =
        serde_json::from_str(text.lines().last().unwrap_or("{}")).unwrap_or_default();
    assert_eq!(v["connect_rc"], 0, "{text}");
    assert_eq!(v["pins"][cid_of(&head)], 0, "kubo could not pin: {text}");
    let kubo = v["peerId"].as_str().unwrap().to_owned();
    // Every object the commit reaches came from cairn: all but the tag.
    let s = d.stats();
    let sent = s["by_peer"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p[0] == kubo.as_str())
        .map_or(0, |p| p[1]["blocks_sent"].as_u64().unwrap());
    assert_eq!(sent, objects.len() as u64 - 1, "{s}");
}

// The parser (store/src/codec/git.rs) against git's own objects, of both formats.

fn git_bytes(dir: &Path, args: &[&str], input: Option<&[u8]>) -> Vec<u8> {
    use std::io::Write;
    let mut c = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "A")
        .env("GIT_AUTHOR_EMAIL", "a@example.org")
        .env("GIT_COMMITTER_NAME", "A")
        .env("GIT_COMMITTER_EMAIL", "a@example.org")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("git (this test needs git)");
    c.stdin
        .take()
        .unwrap()
        .write_all(input.unwrap_or(b""))
        .unwrap();
    let out = c.wait_with_output().unwrap();
    assert!(out.status.success(), "git {args:?}");
    out.stdout
}

fn text(b: Vec<u8>) -> String {
    String::from_utf8(b).unwrap().trim().to_owned()
}

/// The loose object of `id` as git hashes it, and its links as git says.
fn object(dir: &Path, id: &str) -> Vec<u8> {
    let kind = text(git_bytes(dir, &["cat-file", "-t", id], None));
    let body = git_bytes(dir, &["cat-file", &kind, id], None);
    let mut o = format!("{kind} {}\0", body.len()).into_bytes();
    o.extend(body);
    o
}

fn ids(cids: &[cairn_store::Cid]) -> Vec<String> {
    cids.iter()
        .map(|c| {
            c.hash()
                .digest()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect()
        })
        .collect()
}

/// Real objects of both formats: a tree with a file, an executable, a symlink, a
/// subtree and a gitlink; commits with and without parents, a merge, a commit with a
/// signature and a mergetag header; an annotated tag. Links as git lists them.
#[test]
fn links_are_what_git_says() {
    use cairn_store::codec::git::{links, GIT_RAW, SHA1, SHA2_256};
    for format in ["sha1", "sha256"] {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        git_bytes(
            d,
            &["init", "-q", &format!("--object-format={format}")],
            None,
        );
        let id_len = if format == "sha1" { 20 } else { 32 };
        let blob = text(git_bytes(
            d,
            &["hash-object", "-w", "--stdin"],
            Some(b"hello\n"),
        ));
        let sub = text(git_bytes(
            d,
            &["mktree"],
            Some(format!("100644 blob {blob}\tinner\n").as_bytes()),
        ));
        // A gitlink names a commit of another repository: any id will do.
        let foreign = "1".repeat(2 * id_len);
        let tree = text(git_bytes(
            d,
            &["mktree"],
            Some(
                format!(
                    "100644 blob {blob}\ta file\n100755 blob {blob}\trun\n120000 blob {blob}\tlink\n040000 tree {sub}\tsub\n160000 commit {foreign}\tmodule\n"
                )
                .as_bytes(),
            ),
        ));
        let c1 = text(git_bytes(d, &["commit-tree", &tree, "-m", "one"], None));
        let c2 = text(git_bytes(
            d,
            &["commit-tree", &tree, "-p", &c1, "-m", "two"],
            None,
        ));
        let merge = text(git_bytes(
            d,
            &["commit-tree", &sub, "-p", &c1, "-p", &c2, "-m", "merge"],
            None,
        ));
        // Signed commits and mergetags carry text that looks like links; it is not.
        let fake = "2".repeat(2 * id_len);
        let signed = format!(
            "tree {tree}\nparent {c2}\nauthor A <a@example.org> 0 +0000\ncommitter A <a@example.org> 0 +0000\nmergetag object {fake}\n type commit\n tag v0\n tagger A <a@example.org> 0 +0000\n \n tagged\ngpgsig -----BEGIN PGP SIGNATURE-----\n \n tree {fake}\n -----END PGP SIGNATURE-----\n\nsigned\nparent {fake}\n"
        );
        let signed = text(git_bytes(
            d,
            &["hash-object", "-t", "commit", "-w", "--stdin"],
            Some(signed.as_bytes()),
        ));
        let tag = format!(
            "object {merge}\ntype commit\ntag v1\ntagger A <a@example.org> 0 +0000\n\nv1\n"
        );
        let tag = text(git_bytes(
            d,
            &["hash-object", "-t", "tag", "-w", "--stdin"],
            Some(tag.as_bytes()),
        ));
        let cases: Vec<(&str, Vec<&str>)> = vec![
            (&blob, vec![]),
            (&sub, vec![&blob]),
            (&tree, vec![&blob, &blob, &blob, &sub]),
            (&c1, vec![&tree]),
            (&c2, vec![&tree, &c1]),
            (&merge, vec![&sub, &c1, &c2]),
            (&signed, vec![&tree, &c2]),
            (&tag, vec![&merge]),
        ];
        for (id, want) in cases {
            let o = object(d, id);
            let got = links(&o, id_len).unwrap_or_else(|e| panic!("{format} {id}: {e}"));
            let mut got = ids(&got);
            let mut want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
            got.sort();
            want.sort();
            assert_eq!(got, want, "{format} {id}");
            // The id is the hash of the block, as git computes it.
            assert_eq!(
                cairn_store::hash::checked_digest(if id_len == 20 { SHA1 } else { SHA2_256 }, &o)
                    .map(|mh| ids(&[cairn_store::Cid::new_v1(GIT_RAW, mh)])),
                Some(vec![id.to_string()])
            );
        }
    }
}
