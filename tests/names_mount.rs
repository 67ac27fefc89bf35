//! Names in the mount and names that outlive their owner: `R/store/name/<name>/<version>`
//! run through a real FUSE mount while releases land, aliases, a plain IPNS name as a
//! symlink, and a follower keeping a name resolvable after its owner stopped, until the
//! record's validity ends (then `latest` is gone and released versions still resolve).

use std::{
    os::unix::fs::PermissionsExt,
    path::Path,
    process::{Command, Output},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
};

use crate::{
    peers::Daemon,
    util::{eventually, Root},
};

fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout.clone()).unwrap()
}

/// `cairn` on `root` with the keys (and aliases) of `home`.
fn with_keys(root: &Root, home: &Path, args: &[&str]) -> Output {
    root.cmd(args)
        .env("XDG_CONFIG_HOME", home)
        .output()
        .unwrap()
}

/// A root whose names are asked for again after a second.
fn quick_root() -> Root {
    let r = Root::new();
    std::fs::create_dir_all(r.path()).unwrap();
    std::fs::write(
        r.path().join("config.toml"),
        "[names]\nrefresh = 1\nrepublish = 2\n",
    )
    .unwrap();
    r
}

/// An app `hello` whose `bin/hello` prints `hello {v}`, added on `root`.
fn hello_app(root: &Root, v: &str) -> String {
    let dir = root.dir.path().join(format!("hello-{v}"));
    std::fs::create_dir_all(dir.join("bin")).unwrap();
    let bin = dir.join("bin/hello");
    std::fs::write(&bin, format!("#!/bin/sh\necho hello {v}\n")).unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    root.add_q(&["--app", "--name", "hello", dir.to_str().unwrap()])
}

/// Runs `path` from `by`'s mount; a failure to start shows what its daemon logged.
fn run(by: &Daemon, path: &Path) -> Output {
    Command::new(path).output().unwrap_or_else(|e| {
        panic!(
            "running {}: {e}; its daemon said:\n{}",
            path.display(),
            by.stderr.lock().unwrap().join("\n")
        )
    })
}

/// A (owner) releases an app; C reads it through `R/store/name/` of its mount: versions,
/// `latest`, `versions.json`, an alias, a plain name as a symlink. While A releases 1.1 and
/// 1.2, a loop on C runs `latest/bin/hello` and every run is one whole version, never an
/// error. Then B follows the name, A stops, and a new node D (knowing only B) resolves it
/// from B alone (A and C gone, B restarted) until its validity ends; then `latest` is
/// refused, `@1.1` still resolves, and D's mount shows the versions without `latest`.
#[test]
fn names_in_the_mount_and_after_their_owner() {
    let keys = tempfile::tempdir().unwrap();
    let home = keys.path();
    let (a, b, c) = (quick_root(), quick_root(), quick_root());
    let db = Daemon::start(&b, false, &[]);
    let da = Daemon::start(&a, false, &["--bootstrap", &db.addr]);
    let dc = Daemon::start(&c, true, &["--bootstrap", &db.addr]);
    eventually(30, "A's and C's DHTs knowing B", || {
        da.stats()["dht"]["routing_peers"].as_u64().unwrap() >= 1
            && dc.stats()["dht"]["routing_peers"].as_u64().unwrap() >= 1
    });

    let v10 = hello_app(&a, "1.0");
    let said = ok(&with_keys(&a, home, &["release", "hello", "1.0", &v10]));
    let k51 = said
        .rsplit("name ")
        .next()
        .unwrap()
        .trim_end_matches(")\n")
        .to_owned();
    let names = c.path().join("store/name");
    let dir = names.join(&k51);
    eventually(30, "C's mount showing 1.0", || {
        dir.join("1.0/bin/hello").exists()
    });
    assert_eq!(ok(&run(&dc, &dir.join("1.0/bin/hello"))), "hello 1.0\n");
    assert_eq!(
        std::fs::read_link(dir.join("1.0"))
            .unwrap()
            .to_str()
            .unwrap(),
        format!("../../app/{v10}")
    );
    assert_eq!(ok(&run(&dc, &dir.join("latest/bin/hello"))), "hello 1.0\n");
    let listed: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    for want in ["1.0", "latest", "versions.json"] {
        assert!(listed.iter().any(|n| n == want), "{listed:?}");
    }
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("versions.json")).unwrap()).unwrap();
    assert_eq!(json["versions"][0]["cid"], v10.as_str(), "{json}");
    assert_eq!(json["latest"], "1.0", "{json}");
    // A name that is none is not there; a record never points a link out of the store.
    assert!(!names
        .join("k51qzi5uqu5dlvj2baxnqndepeb86cbk3ng7n3i46uzyxzyqj2xjonzllnv0v8")
        .exists());

    // Aliases: the node's, listed in R/store/name/ as a link to the name.
    ok(&c.output(&["name", "alias", "set", "--node", "hello", &k51]));
    eventually(10, "the alias in the mount", || {
        names.join("hello/1.0/bin/hello").exists()
    });
    assert_eq!(
        std::fs::read_link(names.join("hello"))
            .unwrap()
            .to_str()
            .unwrap(),
        k51
    );
    let listed: Vec<String> = std::fs::read_dir(&names)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(listed.contains(&"hello".to_owned()), "{listed:?}");
    // And a user's own alias, for the CLI.
    let reader = tempfile::tempdir().unwrap();
    ok(&with_keys(
        &c,
        reader.path(),
        &["name", "alias", "set", "hi", &k51],
    ));
    assert_eq!(
        ok(&with_keys(
            &c,
            reader.path(),
            &["name", "resolve", "hi@1.0"]
        )),
        format!("/ipfs/{v10}\n")
    );

    // A plain IPNS name is a symlink to its content.
    let file = a.dir.path().join("note");
    std::fs::write(&file, "a plain name\n").unwrap();
    let note = a.add_q(&[file.to_str().unwrap()]);
    ok(&with_keys(&a, home, &["key", "gen", "plain"]));
    let out = ok(&with_keys(
        &a,
        home,
        &["name", "publish", "--key", "plain", &note],
    ));
    let plain = out
        .trim()
        .strip_prefix("Published to ")
        .unwrap()
        .split(':')
        .next()
        .unwrap()
        .to_owned();
    eventually(30, "the plain name in C's mount", || {
        std::fs::read_to_string(names.join(&plain)).is_ok_and(|s| s == "a plain name\n")
    });
    // The CID in its canonical spelling (CIDv1), in the store's top directory.
    let link = std::fs::read_link(names.join(&plain)).unwrap();
    let link = link.to_str().unwrap();
    assert!(
        link.starts_with("../bafy") && !link[3..].contains('/'),
        "{link}"
    );

    // Releases while a program runs through `latest`, over and over.
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let runner = {
        let (stop, seen, latest) = (stop.clone(), seen.clone(), dir.join("latest/bin/hello"));
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                let said = match Command::new(&latest).output() {
                    Ok(out) if out.status.success() => {
                        String::from_utf8_lossy(&out.stdout).into_owned()
                    }
                    Ok(out) => format!("failed: {}", String::from_utf8_lossy(&out.stderr)),
                    Err(e) => format!("failed: {e}"),
                };
                seen.lock().unwrap().push(said);
            }
        })
    };
    let v11 = hello_app(&a, "1.1");
    ok(&with_keys(&a, home, &["release", "hello", "1.1", &v11]));
    let v12 = hello_app(&a, "1.2");
    // The last release lives 40 s: the follower's part below ends with it.
    ok(&with_keys(
        &a,
        home,
        &[
            "release",
            "hello",
            "1.2",
            &v12,
            "--lifetime",
            "40s",
            "--ttl",
            "1s",
        ],
    ));
    let t = std::time::Instant::now();
    while seen
        .lock()
        .unwrap()
        .last()
        .is_none_or(|s| s != "hello 1.2\n")
    {
        let s = seen.lock().unwrap();
        assert!(
            t.elapsed().as_secs() < 60,
            "the loop on C never ran 1.2: {:?}",
            s.iter().rev().take(5).collect::<Vec<_>>()
        );
        drop(s);
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    stop.store(true, Ordering::SeqCst);
    runner.join().unwrap();
    let seen = seen.lock().unwrap();
    for s in seen.iter() {
        assert!(
            ["hello 1.0\n", "hello 1.1\n", "hello 1.2\n"].contains(&s.as_str()),
            "a run through latest said {s:?} (of {} runs)",
            seen.len()
        );
    }

    // B follows (mirroring: every version is fetched and pinned there). A and C go away,
    // and B restarts: what B serves now comes from what it keeps for the names it follows.
    let out = ok(&b.output(&["name", "follow", "--mirror", &k51]));
    assert!(out.contains("following"), "{out}");
    assert!(ok(&b.output(&["name", "list"])).contains(&k51));
    // Whole DAGs, not only their roots: A and C go away next.
    eventually(60, "B holding every version", || {
        [&v10, &v11, &v12].iter().all(|v| {
            b.output(&["dag", "export", v, "-o", "/dev/null"])
                .status
                .success()
        })
    });
    drop((da, dc, db));
    let db = Daemon::start(&b, false, &[]);
    assert_eq!(
        ok(&b.output(&["name", "resolve", "--offline", &format!("{k51}@latest")])),
        format!("/ipfs/{v12}\n"),
        "B keeps the name across its restart"
    );
    let d = quick_root();
    let dd = Daemon::start(&d, true, &["--bootstrap", &db.addr]);
    eventually(30, "D resolving the name from the follower", || {
        d.output(&["name", "resolve", "--nocache", &format!("{k51}@latest")])
            .stdout
            == format!("/ipfs/{v12}\n").into_bytes()
    });
    let dir = d.path().join("store/name").join(&k51);
    assert_eq!(ok(&run(&dd, &dir.join("latest/bin/hello"))), "hello 1.2\n");
    // Once its validity ends, nobody can say which version is latest; released versions
    // are still what they were.
    eventually(60, "the record's validity ending", || {
        let out = d.output(&["name", "resolve", &format!("{k51}@latest")]);
        !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("validity has ended")
    });
    assert_eq!(
        ok(&d.output(&["name", "resolve", &format!("{k51}@1.1")])),
        format!("/ipfs/{v11}\n")
    );
    assert_eq!(
        ok(&d.output(&["name", "resolve", "--stale", &format!("{k51}@latest")])),
        format!("/ipfs/{v12}\n")
    );
    eventually(30, "D's mount dropping latest", || {
        !dir.join("latest").exists() && dir.join("1.1").exists()
    });
    assert_eq!(ok(&run(&dd, &dir.join("1.1/bin/hello"))), "hello 1.1\n");
    drop((dd, db));
}

/// Puts `bytes` into `root`'s store as a dag-cbor block (by way of the file `file`), as
/// `cairn release` puts a list; its CID.
pub(crate) fn put_dag_cbor(root: &Root, file: &str, bytes: &[u8]) -> String {
    let f = root.dir.path().join(file);
    std::fs::write(&f, bytes).unwrap();
    let out = ok(&root.output(&[
        "block",
        "put",
        "--cid-codec",
        "dag-cbor",
        f.to_str().unwrap(),
    ]));
    out.trim().to_owned()
}

/// Hands a daemon a signed record of `name` to keep (offline: no peer needed).
fn publish_offline(root: &Root, name: &str, record: &[u8]) {
    let r = crate::names::control(
        root,
        &format!(
            r#"{{"op":"name_publish","name":"{name}","record":"{}","offline":true}}"#,
            cairn_names::record::to_base64(record)
        ),
    );
    assert!(r.get("error").is_none(), "{r}");
}

/// Two lists with one sequence: the key's holder signs list 1.1 -> B, and then, at the
/// same sequence with a later validity (so the record itself wins), a fork where 1.1 -> C.
/// The daemon keeps the list it saw first, reports a rewritten history, and its mount goes
/// on showing 1.1 -> B; after `cairn name accept` it takes the fork.
#[test]
fn a_forked_list_is_caught_by_the_daemon() {
    use cairn_names::{
        record,
        releases::{List, Release},
        Name,
    };
    use cairn_store::{codec::codes, Cid, HashAlg};
    let root = quick_root();
    let d = Daemon::start(&root, true, &[]);
    let key = libp2p::identity::Keypair::generate_ed25519();
    let name = Name::of(&key.public());
    let k51 = name.to_string();
    let cid = |s: &str| Cid::new_v1(codes::RAW, HashAlg::Sha2_256.digest(s.as_bytes()));
    let (a, b, c) = (cid("a"), cid("b"), cid("c"));
    // Each list into the store, as `cairn release` would put it.
    let put = |l: &List| -> Cid {
        put_dag_cbor(&root, &format!("list-{}", l.seq), &l.encode())
            .parse()
            .unwrap()
    };
    let l0 = List::empty(name).append(None, "1.0", a, 0, None).unwrap();
    let c0 = put(&l0);
    let l1 = l0.append(Some(c0), "1.1", b, 0, None).unwrap();
    let c1 = put(&l1);
    let mut fork = l1.clone();
    fork.versions[1] = Release {
        cid: c,
        ..fork.versions[1].clone()
    };
    let f1 = put_dag_cbor(&root, "fork", &fork.encode());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i128;
    let hour = 3_600_000_000_000i128;
    let publish = |value: &str, seq: u64, validity: i128| {
        let rec = record::sign(&key, value, seq, validity, 1_000_000_000).unwrap();
        publish_offline(&root, &k51, &rec);
    };
    let resolved = || -> serde_json::Value {
        serde_json::from_str(&ok(&root.output(&[
            "name",
            "resolve",
            "--json",
            "--offline",
            &k51,
        ])))
        .unwrap()
    };
    publish(&format!("/ipfs/{c0}"), 0, now + hour);
    publish(&format!("/ipfs/{c1}"), 1, now + hour);
    let r = resolved();
    assert_eq!(r["list"], c1.to_string(), "{r}");
    assert!(r["rewritten"].is_null(), "{r}");
    let dir = root.path().join("store/name").join(&k51);
    let link = |v: &str| std::fs::read_link(dir.join(v)).unwrap();
    assert!(link("1.1")
        .to_str()
        .unwrap()
        .ends_with(&cairn_store::block_name(&b)));

    // The fork, at the same sequence, valid longer: the better record, a list that does
    // not extend the one seen.
    publish(&format!("/ipfs/{f1}"), 1, now + 2 * hour);
    let r = resolved();
    assert_eq!(r["value"], format!("/ipfs/{f1}"), "{r}");
    assert_eq!(
        r["list"],
        c1.to_string(),
        "the list seen first is kept: {r}"
    );
    assert!(
        r["rewritten"]
            .as_str()
            .unwrap()
            .contains("rewritten history"),
        "{r}"
    );
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("versions.json")).unwrap()).unwrap();
    assert_eq!(json["versions"][1]["cid"], b.to_string(), "{json}");
    assert!(link("1.1")
        .to_str()
        .unwrap()
        .ends_with(&cairn_store::block_name(&b)));

    // Accepted: the node takes the fork as it is.
    ok(&root.output(&["name", "accept", &k51]));
    let r = resolved();
    assert_eq!(r["list"], f1, "{r}");
    eventually(10, "the mount showing the accepted list", || {
        std::fs::read_link(dir.join("1.1"))
            .is_ok_and(|l| l.to_str().unwrap().ends_with(&cairn_store::block_name(&c)))
    });
    drop(d);
}

/// A followed name's list is kept as a file (a shallow root: the list, not what it
/// releases). After the collector has taken the list's block, the daemon puts it back into
/// its store at its next start, so that it can serve it to peers again.
#[test]
fn a_followed_list_survives_the_collector() {
    use cairn_names::{record, releases::List, Name};
    use cairn_store::{codec::codes, Cid, HashAlg};
    let root = quick_root();
    let key = libp2p::identity::Keypair::generate_ed25519();
    let name = Name::of(&key.public());
    let k51 = name.to_string();
    let app = Cid::new_v1(codes::RAW, HashAlg::Sha2_256.digest(b"an app"));
    let list = List::empty(name).append(None, "1.0", app, 0, None).unwrap();
    let lcid = put_dag_cbor(&root, "list", &list.encode());
    let lcid = lcid.as_str();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i128;
    let rec = record::sign(
        &key,
        &format!("/ipfs/{lcid}"),
        0,
        now + 3_600_000_000_000,
        1,
    )
    .unwrap();
    let d = Daemon::start(&root, false, &[]);
    publish_offline(&root, &k51, &rec);
    ok(&root.output(&["name", "follow", &k51]));
    drop(d);
    ok(&root.output(&["gc"]));
    assert!(
        !root.output(&["block", "stat", lcid]).status.success(),
        "the collector took the list's block"
    );
    let d = Daemon::start(&root, false, &[]);
    eventually(10, "the list's block back in the store", || {
        root.output(&["block", "stat", lcid]).status.success()
    });
    assert_eq!(
        ok(&root.output(&["name", "resolve", "--offline", &format!("{k51}@1.0")])),
        format!("/ipfs/{app}\n")
    );
    drop(d);
}

/// A list longer than one block holds (300 versions with 4 KiB of notes each): its older
/// entries spill into an older list, and the daemon, the CLI and the mount read the name
/// whole. The owner goes on releasing and yanks a version of the older list from the CLI;
/// the daemon keeps the older list beside the head in `R/names/`.
#[test]
fn a_long_list_spills_into_an_older_one_and_reads_whole() {
    use cairn_names::{releases::List, Name};
    use cairn_store::{codec::codes, Cid, HashAlg};
    let keys = tempfile::tempdir().unwrap();
    let home = keys.path();
    let (root, peer) = (quick_root(), quick_root());
    // A DHT peer to take the records (a publish waits for one to acknowledge).
    let dp = Daemon::start(&peer, false, &[]);
    let d = Daemon::start(&root, true, &["--bootstrap", &dp.addr]);
    eventually(30, "the DHT knowing the peer", || {
        d.stats()["dht"]["routing_peers"].as_u64().unwrap() >= 1
    });
    let key = libp2p::identity::Keypair::generate_ed25519();
    let name = Name::of(&key.public());
    let k51 = name.to_string();
    let file = root.dir.path().join("hello.key");
    std::fs::write(&file, key.to_protobuf_encoding().unwrap()).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    ok(&with_keys(
        &root,
        home,
        &["key", "import", "hello", file.to_str().unwrap()],
    ));
    let app: Cid = hello_app(&root, "0.5").parse().unwrap();

    let cid = |b: &[u8]| Cid::new_v1(codes::DAG_CBOR, HashAlg::Sha2_256.digest(b));
    let notes = "n".repeat(4000);
    let (mut l, mut c) = (List::empty(name), None);
    let mut older = Vec::new();
    for k in 0..300u32 {
        let target = if k == 5 {
            app
        } else {
            Cid::new_v1(codes::RAW, HashAlg::Sha2_256.digest(&k.to_le_bytes()))
        };
        let next = l
            .append(c, &format!("0.{k}"), target, 0, Some(notes.clone()))
            .unwrap();
        if next.older != l.older {
            older.push(l.encode());
        }
        c = Some(cid(&next.encode()));
        l = next;
    }
    assert_eq!(older.len(), 1, "one spill");
    let head = l.encode();
    assert!(head.len() < older[0].len() / 2, "the head started again");
    for (i, b) in older.iter().chain([&head]).enumerate() {
        put_dag_cbor(&root, &format!("list-{i}"), b);
    }
    ok(&with_keys(
        &root,
        home,
        &[
            "name",
            "publish",
            "--key",
            "hello",
            &format!("/ipfs/{}", c.unwrap()),
        ],
    ));

    // The node reads it whole: every version, those of the older list included.
    let versions = |nocache: bool| -> serde_json::Value {
        let mut args = vec!["versions", "--json", &k51];
        if nocache {
            args.push("--nocache");
        }
        serde_json::from_str(&ok(&root.output(&args))).unwrap()
    };
    let v = versions(true);
    assert_eq!(
        v["versions"].as_array().unwrap().len(),
        300,
        "{}",
        v["list"]
    );
    assert_eq!(
        ok(&root.output(&["name", "resolve", &format!("{k51}@0.5")])),
        format!("/ipfs/{app}\n")
    );
    let dir = root.path().join("store/name").join(&k51);
    eventually(10, "the mount showing the older list's versions", || {
        dir.join("0.5/bin/hello").exists()
    });
    assert_eq!(ok(&run(&d, &dir.join("0.5/bin/hello"))), "hello 0.5\n");
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("versions.json")).unwrap()).unwrap();
    assert_eq!(json["versions"].as_array().unwrap().len(), 300);
    let kept = root.path().join("names").join(&k51).join("older");
    assert_eq!(
        std::fs::read_dir(&kept).unwrap().count(),
        1,
        "the older list kept"
    );

    // The owner releases on top of it and yanks a version of the older list.
    let app2 = hello_app(&root, "1.0");
    ok(&with_keys(&root, home, &["release", "hello", "1.0", &app2]));
    ok(&with_keys(
        &root,
        home,
        &["release", "hello", "--yank", "0.5", "--reason", "broken"],
    ));
    let v = versions(true);
    let vs = v["versions"].as_array().unwrap();
    assert_eq!(vs.len(), 301, "{v}");
    assert_eq!(vs[5]["version"], "0.5");
    assert_eq!(vs[5]["yanked"], "broken", "{}", vs[5]);
    let latest: Vec<_> = vs.iter().filter(|r| r["latest"] == true).collect();
    assert_eq!(latest.len(), 1);
    assert_eq!(latest[0]["version"], "1.0");
    eventually(10, "the mount showing the yank", || {
        std::fs::read(dir.join("versions.json")).is_ok_and(|b| {
            let j: serde_json::Value = serde_json::from_slice(&b).unwrap();
            j["versions"][5]["yanked"] == "broken" && j["latest"] == "1.0"
        })
    });
    assert!(
        std::fs::read_link(dir.join("latest"))
            .unwrap()
            .ends_with(&app2),
        "latest is 1.0"
    );
    drop((d, dp));
}

/// A kept list whose older lists are lost (their files gone, the collector took their
/// blocks, no peer has them) holds back any new head: taking one as if no list had been seen
/// would skip the history check. A forged head (0.5 renamed to another CID) is refused until
/// `cairn name accept`.
#[test]
fn a_kept_list_without_its_older_lists_takes_no_new_head() {
    use cairn_names::{record, releases::List, Name};
    use cairn_store::{codec::codes, Cid, HashAlg};
    let root = Root::new();
    std::fs::create_dir_all(root.path()).unwrap();
    // Nobody has the lost list: asked for 2 s, not 30.
    std::fs::write(
        root.path().join("config.toml"),
        "fetch_timeout = 2\n[names]\nrefresh = 1\n",
    )
    .unwrap();
    let key = libp2p::identity::Keypair::generate_ed25519();
    let name = Name::of(&key.public());
    let k51 = name.to_string();
    let raw = |b: &[u8]| Cid::new_v1(codes::RAW, HashAlg::Sha2_256.digest(b));
    let (mut l, mut c) = (List::empty(name), None);
    let mut older = Vec::new();
    for k in 0..300u32 {
        let next = l
            .append(
                c,
                &format!("0.{k}"),
                raw(&k.to_le_bytes()),
                0,
                Some("n".repeat(4000)),
            )
            .unwrap();
        if next.older != l.older {
            older.push(l.encode());
        }
        c = Some(Cid::new_v1(
            codes::DAG_CBOR,
            HashAlg::Sha2_256.digest(&next.encode()),
        ));
        l = next;
    }
    assert_eq!(older.len(), 1);
    let older_cid = put_dag_cbor(&root, "older", &older[0]);
    let head = put_dag_cbor(&root, "head", &l.encode());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i128;
    let sign =
        |value: &str, seq: u64| record::sign(&key, value, seq, now + 3_600_000_000_000, 1).unwrap();
    // Each resolution as a user who never read the name: what it gets is the daemon's.
    let resolve = |v: &str| {
        let fresh = tempfile::tempdir().unwrap();
        root.cmd(&["name", "resolve", "--offline", &format!("{k51}@{v}")])
            .env("XDG_CONFIG_HOME", fresh.path())
            .output()
            .unwrap()
    };
    let d = Daemon::start(&root, false, &[]);
    publish_offline(&root, &k51, &sign(&format!("/ipfs/{head}"), 0));
    assert_eq!(
        ok(&resolve("0.5")),
        format!("/ipfs/{}\n", raw(&5u32.to_le_bytes()))
    );
    drop(d);

    // The older list is lost: its kept file and, after the collector, its block.
    std::fs::remove_dir_all(root.path().join("names").join(&k51).join("older")).unwrap();
    ok(&root.output(&["gc"]));
    assert!(!root.output(&["block", "stat", &older_cid]).status.success());
    let d = Daemon::start(&root, false, &[]);
    let mut forged = List::empty(name)
        .append(None, "0.5", raw(b"forged"), 0, None)
        .unwrap();
    forged.seq = 300;
    let forged = put_dag_cbor(&root, "forged", &forged.encode());
    let r = crate::names::control(
        &root,
        &format!(
            r#"{{"op":"name_publish","name":"{k51}","record":"{}","offline":true}}"#,
            record::to_base64(&sign(&format!("/ipfs/{forged}"), 1))
        ),
    );
    let out = resolve("0.5");
    assert_ne!(
        String::from_utf8_lossy(&out.stdout),
        format!("/ipfs/{}\n", raw(b"forged")),
        "a forged head was taken: {r}"
    );
    // Accepted, it is taken as it is.
    ok(&root.output(&["name", "accept", &k51]));
    assert_eq!(ok(&resolve("0.5")), format!("/ipfs/{}\n", raw(b"forged")));
    drop(d);
}
