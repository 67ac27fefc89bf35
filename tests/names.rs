//! Names: `cairn key` as users type it. A user's keys live under their own config directory,
//! checked as ssh checks its keys; another user can neither read nor use them.

use std::{
    os::unix::fs::PermissionsExt,
    path::Path,
    process::{Command, Output},
};

use crate::{
    peers::Daemon,
    util::{as_nobody, cairn_bin, eventually, reachable_bin, Root},
};

/// `cairn` with `HOME` (and nothing of XDG) pointing at `home`.
fn cairn_at(home: &Path, args: &[&str]) -> Output {
    Command::new(cairn_bin())
        .args(args)
        .env("HOME", home)
        .env_remove("XDG_CONFIG_HOME")
        .env("CAIRN_ROOT", home.join("root"))
        .output()
        .unwrap()
}

fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn err(o: &Output) -> String {
    assert!(
        !o.status.success(),
        "succeeded: {}",
        String::from_utf8_lossy(&o.stdout)
    );
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// gen, list, export, rm, import: the name survives the round trip; an export never
/// overwrites; names and files that are not keys are refused saying why.
#[test]
fn keys_round_trip() {
    let t = tempfile::tempdir().unwrap();
    let home = t.path();
    let k51 = ok(&cairn_at(home, &["key", "gen", "hello"]))
        .trim()
        .to_owned();
    assert!(k51.starts_with("k51"), "{k51}");
    let dir = home.join(".config/cairn/keys");
    assert_eq!(
        std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
        0o700
    );
    assert_eq!(
        std::fs::metadata(dir.join("hello.key"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    assert_eq!(
        ok(&cairn_at(home, &["key", "list"])),
        format!("hello {k51}\n")
    );
    let json: serde_json::Value =
        serde_json::from_str(&ok(&cairn_at(home, &["key", "list", "--json"]))).unwrap();
    assert_eq!(json[0]["ipns"], k51.as_str());
    assert_eq!(json[0]["type"], "Ed25519");
    assert!(err(&cairn_at(home, &["key", "gen", "hello"])).contains("exists"));

    let out = home.join("hello.export");
    let out_s = out.to_str().unwrap();
    ok(&cairn_at(home, &["key", "export", "hello", "-o", out_s]));
    assert!(err(&cairn_at(home, &["key", "export", "hello", "-o", out_s])).contains("overwrites"));
    // Standard output gives the same bytes.
    assert_eq!(
        cairn_at(home, &["key", "export", "hello"]).stdout,
        std::fs::read(&out).unwrap()
    );
    ok(&cairn_at(home, &["key", "rm", "hello"]));
    assert!(err(&cairn_at(home, &["key", "export", "hello"])).contains("no key named"));
    let again = ok(&cairn_at(home, &["key", "import", "back", out_s]));
    assert_eq!(again.trim(), k51);

    for bad in ["../x", ".x", "a b"] {
        assert!(err(&cairn_at(home, &["key", "gen", bad])).contains("not a key name"));
    }
    let junk = home.join("junk");
    std::fs::write(&junk, b"not a key at all").unwrap();
    assert!(err(&cairn_at(
        home,
        &["key", "import", "j", junk.to_str().unwrap()]
    ))
    .contains("not a key"));
}

/// Loose modes, a symlinked key and a foreign owner are refused; the user nobody, even with
/// its HOME pointed at ours and our files opened up, can neither read nor use our key.
#[test]
fn keys_are_their_owners_alone() {
    let t = tempfile::tempdir().unwrap();
    let home = t.path();
    ok(&cairn_at(home, &["key", "gen", "mine"]));
    let dir = home.join(".config/cairn/keys");
    let key = dir.join("mine.key");

    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let e = err(&cairn_at(home, &["key", "export", "mine"]));
    assert!(e.contains("chmod 600"), "{e}");
    assert!(err(&cairn_at(home, &["key", "list"])).contains("mine"));
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();

    std::os::unix::fs::symlink(&key, dir.join("alias.key")).unwrap();
    assert!(err(&cairn_at(home, &["key", "export", "alias"])).contains("symlink"));
    std::fs::remove_file(dir.join("alias.key")).unwrap();

    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    assert!(err(&cairn_at(home, &["key", "list"])).contains("chmod 700"));
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();

    // nobody, told our HOME: the directory is 0700 and ours, so nothing inside is reachable.
    std::fs::set_permissions(home, std::fs::Permissions::from_mode(0o755)).unwrap();
    for d in [home.join(".config"), home.join(".config/cairn")] {
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let bin = reachable_bin(t.path());
    let as_them = |args: &str| {
        as_nobody(&format!(
            "HOME={} CAIRN_ROOT=/nonexistent {} {args}",
            home.display(),
            bin.display()
        ))
    };
    assert!(!as_them("key export mine > /dev/null"));
    assert!(!as_nobody(&format!("cat {}", key.display())));
    // Even opened up to everyone, a key owned by someone else is refused to nobody.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert!(
        as_nobody(&format!("cat {} > /dev/null", key.display())),
        "the file is readable"
    );
    assert!(!as_them("key export mine > /dev/null"));
    assert!(!as_them("key list"));
    // The binary itself must be reachable by nobody for the refusals above to mean anything.
    assert!(
        as_them("--version > /dev/null"),
        "nobody cannot run {}",
        bin.display()
    );
}

/// `cairn` on `root` with the keys of `home`.
fn with_keys(root: &Root, home: &Path, args: &[&str]) -> Output {
    root.cmd(args)
        .env("XDG_CONFIG_HOME", home)
        .output()
        .unwrap()
}

/// Sends one control request line to a daemon; its answer.
pub(crate) fn control(root: &Root, line: &str) -> serde_json::Value {
    use std::io::{BufRead, Write};
    let mut s = std::os::unix::net::UnixStream::connect(root.path().join("daemon.sock")).unwrap();
    s.write_all(line.as_bytes()).unwrap();
    s.write_all(b"\n").unwrap();
    let mut answer = String::new();
    std::io::BufReader::new(s).read_line(&mut answer).unwrap();
    serde_json::from_str(&answer).unwrap()
}

/// Three daemons on loopback's LAN DHT (A and C know only B), A's DHT already knowing B,
/// and a keys directory for A's user. Daemons are declared first, so they stop first.
struct Trio {
    _da: Daemon,
    _db: Daemon,
    _dc: Daemon,
    a: Root,
    _b: Root,
    c: Root,
    keys: tempfile::TempDir,
}

fn trio() -> Trio {
    let (a, b, c) = (Root::new(), Root::new(), Root::new());
    let db = Daemon::start(&b, false, &[]);
    let da = Daemon::start(&a, false, &["--bootstrap", &db.addr]);
    let dc = Daemon::start(&c, false, &["--bootstrap", &db.addr]);
    eventually(30, "A's LAN DHT knowing B", || {
        da.stats()["dht"]["routing_peers"].as_u64().unwrap() >= 1
    });
    Trio {
        _da: da,
        _db: db,
        _dc: dc,
        a,
        _b: b,
        c,
        keys: tempfile::tempdir().unwrap(),
    }
}

/// Three daemons on loopback's LAN DHT (A and C know only B). A publishes a name, C
/// resolves it from the network; A publishes again and C sees the newer record; a forged,
/// an older and a foreign-key record handed to a daemon are refused and change nothing.
#[test]
fn names_publish_and_resolve_between_daemons() {
    let t = trio();
    let (a, c, home) = (&t.a, &t.c, t.keys.path());
    let k51 = ok(&with_keys(a, home, &["key", "gen", "app"]))
        .trim()
        .to_owned();
    let f1 = a.dir.path().join("one");
    std::fs::write(&f1, b"version one\n").unwrap();
    let cid1 = a.add_q(&[f1.to_str().unwrap()]);
    let out = ok(&with_keys(
        a,
        home,
        &["name", "publish", "--key", "app", &cid1],
    ));
    assert_eq!(out, format!("Published to {k51}: /ipfs/{cid1}\n"));

    let resolve = |r: &Root| r.output(&["name", "resolve", "--nocache", &k51]);
    eventually(30, "C resolving A's name", || resolve(c).status.success());
    assert_eq!(ok(&resolve(c)), format!("/ipfs/{cid1}\n"));
    let first: serde_json::Value = serde_json::from_str(&ok(&c.output(&[
        "name",
        "resolve",
        "--json",
        "--nocache",
        &k51,
    ])))
    .unwrap();
    assert_eq!(first["sequence"], 0);
    assert!(first["from"].is_string(), "{first}");

    // Again, to a second version: sequence 1, and C sees it without being told.
    let f2 = a.dir.path().join("two");
    std::fs::write(&f2, b"version two\n").unwrap();
    let cid2 = a.add_q(&[f2.to_str().unwrap()]);
    ok(&with_keys(
        a,
        home,
        &["name", "publish", "--key", "app", &cid2],
    ));
    eventually(30, "C resolving the second version", || {
        String::from_utf8_lossy(&resolve(c).stdout).contains(&cid2)
    });

    // Records handed to C's daemon over its socket: the first (older), a forged copy of the
    // newest, and the newest under another name. All refused; C still answers the newest.
    let old = first["record"].as_str().unwrap();
    let ans = control(
        c,
        &format!(r#"{{"op":"name_publish","name":"{k51}","record":"{old}","offline":true}}"#),
    );
    let said = ans["error"].as_str().unwrap_or_default();
    assert!(said.contains("holds a newer one (sequence 1"), "{ans}");
    // C's own record (--offline), not the network's answer, is what must not have gone back.
    let newest: serde_json::Value = serde_json::from_str(&ok(&c.output(&[
        "name",
        "resolve",
        "--json",
        "--offline",
        &k51,
    ])))
    .unwrap();
    assert_eq!(
        newest["sequence"], 1,
        "an older record replaced a newer one"
    );
    let mut forged = cairn_names::record::from_base64(newest["record"].as_str().unwrap()).unwrap();
    let n = forged.len();
    forged[n - 5] ^= 1;
    let forged = cairn_names::record::to_base64(&forged);
    let ans = control(
        c,
        &format!(r#"{{"op":"name_publish","name":"{k51}","record":"{forged}","offline":true}}"#),
    );
    assert!(ans["error"].as_str().unwrap().contains("refused"), "{ans}");
    let other = ok(&with_keys(a, home, &["key", "gen", "other"]))
        .trim()
        .to_owned();
    let rec = newest["record"].as_str().unwrap();
    let ans = control(
        c,
        &format!(r#"{{"op":"name_publish","name":"{other}","record":"{rec}","offline":true}}"#),
    );
    assert!(ans["error"].as_str().unwrap().contains("refused"), "{ans}");
    assert_eq!(
        ok(&c.output(&["name", "resolve", "--offline", &k51])),
        format!("/ipfs/{cid2}\n")
    );
    assert!(!c
        .output(&["name", "resolve", "--offline", &other])
        .status
        .success());

    // inspect: of the name, verified; a name nobody published is a clear error.
    let shown = ok(&c.output(&["name", "inspect", &k51]));
    assert!(
        shown.contains(&format!("Value:         /ipfs/{cid2}")),
        "{shown}"
    );
    assert!(shown.contains("Verified for:"), "{shown}");
    let e = err(&c.output(&["name", "resolve", "--nocache", &other]));
    assert!(e.contains("no valid record"), "{e}");
    let e = err(&c.output(&["name", "resolve", "not-a-name"]));
    assert!(e.contains("not an IPNS name"), "{e}");
}

/// A node with its DHT off resolves a name through the peer it is connected to, asked
/// directly (`/cairn/name/1.0.0`): A holds a record it published offline (no DHT peer took
/// it), B asks A and gets it, from A.
#[test]
fn names_resolve_through_connected_peers() {
    let (a, b) = (Root::new(), Root::new());
    let home = tempfile::tempdir().unwrap();
    let da = Daemon::start(&a, false, &[]);
    let _db = Daemon::start(&b, false, &["--no-dht", "--bootstrap", &da.addr]);
    let k51 = ok(&with_keys(&a, home.path(), &["key", "gen", "app"]))
        .trim()
        .to_owned();
    let f = a.dir.path().join("one");
    std::fs::write(&f, b"version one\n").unwrap();
    let cid = a.add_q(&[f.to_str().unwrap()]);
    ok(&with_keys(
        &a,
        home.path(),
        &["name", "publish", "--offline", "--key", "app", &cid],
    ));
    let resolve = || b.output(&["name", "resolve", "--json", "--nocache", &k51]);
    eventually(30, "B resolving through A", || resolve().status.success());
    let r: serde_json::Value = serde_json::from_str(&ok(&resolve())).unwrap();
    assert_eq!(r["value"], format!("/ipfs/{cid}"), "{r}");
    assert_eq!(r["from"], da.peer.as_str(), "{r}");
}

/// kubo v0.22 as the DHT that validates: A and C (cairn) know only kubo's LAN DHT server. A
/// publishes twice and stops; C resolves from kubo. kubo itself refuses a forged, an expired,
/// an 11 KiB and an older record put straight at it (and takes the valid one), so its answer
/// stays the newest. kubo's own RSA identity, imported from its repo's config, publishes
/// under its Qm… name (the key in the record) and kubo takes and serves that record too.
#[test]
fn kubo_validates_and_serves_cairn_names() {
    use cairn_names::{record, Name};

    use crate::{
        dht_attack::{ipns, KadPeer, LAN},
        peers::Kubo,
    };
    let keys = tempfile::tempdir().unwrap();
    let home = keys.path();
    let (a, c) = (Root::new(), Root::new());
    let repo = a.dir.path().join("kubo");
    let kubo = Kubo::start(&repo, &["--routing", "dhtserver"]);
    let da = Daemon::start(&a, false, &["--bootstrap", &kubo.addr()]);
    let dc = Daemon::start(&c, false, &["--bootstrap", &kubo.addr()]);
    eventually(30, "A's LAN DHT knowing kubo", || {
        da.stats()["dht"]["routing_peers"].as_u64().unwrap() >= 1
    });
    let k51 = ok(&with_keys(&a, home, &["key", "gen", "app"]))
        .trim()
        .to_owned();
    let name: Name = k51.parse().unwrap();
    let (f1, f2) = (a.dir.path().join("one"), a.dir.path().join("two"));
    std::fs::write(&f1, b"one\n").unwrap();
    std::fs::write(&f2, b"two\n").unwrap();
    let (cid1, cid2) = (
        a.add_q(&[f1.to_str().unwrap()]),
        a.add_q(&[f2.to_str().unwrap()]),
    );
    ok(&with_keys(
        &a,
        home,
        &["name", "publish", "--key", "app", &cid1],
    ));
    let json = |r: &Root, args: &[&str]| -> serde_json::Value {
        serde_json::from_str(&ok(&r.output(args))).unwrap()
    };
    let first = json(&a, &["name", "resolve", "--offline", "--json", &k51]);
    ok(&with_keys(
        &a,
        home,
        &["name", "publish", "--key", "app", &cid2],
    ));
    let second = json(&a, &["name", "resolve", "--offline", "--json", &k51]);
    assert_eq!(
        (first["sequence"].clone(), second["sequence"].clone()),
        (0.into(), 1.into())
    );

    // Straight at kubo, from a Kademlia peer of the test's own.
    let kpeer: libp2p::PeerId = kubo.peer().parse().unwrap();
    let h = KadPeer::start(LAN, Vec::new());
    h.cmd(crate::dht_attack::Cmd::AddAddress(
        kpeer,
        kubo.addr().parse().unwrap(),
    ));
    let b64 = |v: &serde_json::Value| record::from_base64(v["record"].as_str().unwrap()).unwrap();
    let mut forged = b64(&second);
    let n = forged.len();
    forged[n - 4] ^= 1;
    let owner_key = cairn_names::keys::Keystore::open(&home.join("cairn/keys"))
        .unwrap()
        .get("app")
        .unwrap()
        .keypair;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i128;
    let expired =
        record::sign(&owner_key, "/ipfs/bafkqaaa", 7, now - 3_600_000_000_000, 1).unwrap();
    for (what, bytes) in [
        ("forged", forged),
        ("expired", expired),
        ("11 KiB", vec![0x0a; 11 << 10]),
        ("older", b64(&first)),
    ] {
        assert!(
            !h.put_at(ipns(&name, bytes), kpeer),
            "kubo took the {what} record"
        );
    }
    assert!(
        h.put_at(ipns(&name, b64(&second)), kpeer),
        "kubo refused the valid record"
    );

    // A stops: C finds the newest record at kubo.
    drop(da);
    let got = json(&c, &["name", "resolve", "--nocache", "--json", &k51]);
    assert_eq!(got["value"], format!("/ipfs/{cid2}"), "{got}");
    assert_eq!(got["from"], kubo.peer(), "{got}");

    // kubo's RSA identity, from its repo's config.
    let imported = ok(&with_keys(
        &c,
        home,
        &[
            "key",
            "import",
            "kubo",
            repo.join("config").to_str().unwrap(),
        ],
    ));
    let kname: Name = imported.trim().parse().unwrap();
    assert_eq!(
        kname.peer_id().to_string(),
        kubo.peer(),
        "the import is kubo's key"
    );
    assert!(
        kname.inline_key().is_none(),
        "an RSA key, carried in the record"
    );
    ok(&with_keys(
        &c,
        home,
        &["name", "publish", "--key", "kubo", &cid1],
    ));
    drop(dc);
    let d = Root::new();
    let dd = Daemon::start(&d, false, &["--bootstrap", &kubo.addr()]);
    let got = json(
        &d,
        &["name", "resolve", "--nocache", "--json", &kubo.peer()],
    );
    assert_eq!(got["value"], format!("/ipfs/{cid1}"), "{got}");
    assert_eq!(got["from"], kubo.peer(), "{got}");
    drop(dd);
}

/// Releases: A releases two versions of a package under a key made at the first release; C,
/// which knows only B, lists them and resolves each and `latest`; a yank moves `latest` back;
/// a version never changes its CID.
#[test]
fn releases_list_versions_anyone_can_resolve() {
    let t = trio();
    let (a, c, home) = (&t.a, &t.c, t.keys.path());
    let mut cids = Vec::new();
    for v in ["1.0", "1.1"] {
        let f = a.dir.path().join(v);
        std::fs::write(&f, format!("hello {v}\n")).unwrap();
        cids.push(a.add_q(&[f.to_str().unwrap()]));
    }
    let first = with_keys(
        a,
        home,
        &["release", "hello", "1.0", &cids[0], "--notes", "first"],
    );
    let said = String::from_utf8_lossy(&first.stderr).into_owned();
    assert!(ok(&first).starts_with("released hello 1.0"), "{said}");
    assert!(said.contains("made the key hello"), "{said}");
    let k51 = ok(&with_keys(a, home, &["key", "list", "--json"]));
    let k51 = serde_json::from_str::<serde_json::Value>(&k51).unwrap()[0]["ipns"]
        .as_str()
        .unwrap()
        .to_owned();
    ok(&with_keys(a, home, &["release", "hello", "1.1", &cids[1]]));
    let e = err(&with_keys(a, home, &["release", "hello", "1.0", &cids[1]]));
    assert!(e.contains("released already"), "{e}");
    let e = err(&with_keys(
        a,
        home,
        &["release", "hello", "latest", &cids[1]],
    ));
    assert!(e.contains("not a version"), "{e}");

    // C's reader keeps what it saw in its own config directory.
    let reader = tempfile::tempdir().unwrap();
    let on_c = |args: &[&str]| with_keys(c, reader.path(), args);
    let versions = |_: &Root| -> serde_json::Value {
        serde_json::from_str(&ok(&on_c(&["versions", "--json", "--nocache", &k51]))).unwrap()
    };
    eventually(30, "C seeing both versions", || {
        on_c(&["versions", "--json", "--nocache", &k51])
            .status
            .success()
            && versions(c)["versions"].as_array().unwrap().len() == 2
    });
    let v = versions(c);
    assert_eq!(v["versions"][0]["cid"], cids[0].as_str(), "{v}");
    assert_eq!(v["versions"][0]["notes"], "first", "{v}");
    assert_eq!(v["versions"][1]["latest"], true, "{v}");
    let at = |_: &Root, what: &str| ok(&on_c(&["name", "resolve", "--nocache", what]));
    assert_eq!(at(c, &format!("{k51}@1.0")), format!("/ipfs/{}\n", cids[0]));
    assert_eq!(
        at(c, &format!("{k51}@latest")),
        format!("/ipfs/{}\n", cids[1])
    );
    let e = err(&on_c(&["name", "resolve", &format!("{k51}@9.9")]));
    assert!(e.contains("no version 9.9"), "{e}");
    // A released version is fetched by its name.
    ok(&on_c(&["fetch", &format!("{k51}@1.0")]));
    assert_eq!(ok(&c.output(&["cat", &cids[0]])), "hello 1.0\n");

    ok(&with_keys(
        a,
        home,
        &["release", "hello", "--yank", "1.1", "--reason", "broken"],
    ));
    eventually(30, "C seeing the yank", || {
        versions(c)["versions"][1]["yanked"] == "broken"
    });
    assert_eq!(
        at(c, &format!("{k51}@latest")),
        format!("/ipfs/{}\n", cids[0])
    );
    // The text form: one line per version.
    let text = ok(&on_c(&["versions", &k51]));
    assert!(text.lines().next().unwrap().contains("latest"), "{text}");
    assert!(text.contains("yanked: broken"), "{text}");

    // The key's holder rewrites history: a list where 1.0 names another CID, with no link
    // to the lists before. C keeps its last good list, says so, until it accepts the new one.
    let name: cairn_names::Name = k51.parse().unwrap();
    let mut forged = cairn_names::releases::List::empty(name)
        .append(None, "1.0", cids[1].parse().unwrap(), 0, None)
        .unwrap();
    forged.seq = 9;
    let list = crate::names_mount::put_dag_cbor(a, "forged-list", &forged.encode());
    ok(&with_keys(
        a,
        home,
        &["name", "publish", "--key", "hello", list.trim()],
    ));
    let mut warned = String::new();
    eventually(30, "C noticing the rewritten history", || {
        let out = on_c(&["versions", "--json", "--nocache", &k51]);
        warned = String::from_utf8_lossy(&out.stderr).into_owned();
        warned.contains("rewritten history")
    });
    let v = versions(c);
    assert_eq!(
        v["versions"][0]["cid"],
        cids[0].as_str(),
        "the last good list: {v}"
    );
    assert_eq!(v["versions"].as_array().unwrap().len(), 2, "{v}");
    ok(&on_c(&["name", "accept", &k51]));
    let v = versions(c);
    assert_eq!(v["versions"][0]["cid"], cids[1].as_str(), "accepted: {v}");
    // The owner's own release refuses to build on a history it did not make.
    let e = err(&with_keys(a, home, &["release", "hello", "2.0", &cids[0]]));
    assert!(e.contains("rewritten history"), "{e}");
}

/// Runs `tests/support/helia_ipns.mjs` (copied beside Helia's modules) with these arguments;
/// its JSON lines, and whether it succeeded.
fn helia_ipns(args: &[&str]) -> (Vec<serde_json::Value>, bool) {
    let dir = crate::peers::interop().join("helia");
    let tmp = dir.join(format!(".helia_ipns.{}.mjs", std::process::id()));
    std::fs::write(&tmp, include_str!("support/helia_ipns.mjs")).unwrap();
    std::fs::rename(&tmp, dir.join("helia_ipns.mjs")).unwrap();
    let out = Command::new("node")
        .current_dir(&dir)
        .args(["--import", "./node20-polyfills.mjs", "helia_ipns.mjs"])
        .args(args)
        .stderr(std::process::Stdio::inherit())
        .output()
        .expect("node");
    let lines = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (lines, out.status.success())
}

/// Helia (@helia/ipns over kad-dht) and cairn through one kubo DHT server: Helia serves an
/// app (a CAR exported by cairn) and publishes a name for it; a fresh cairn node runs the
/// app by that name through its mount, fetching it from Helia. And Helia resolves the
/// release list a cairn release points to.
#[test]
fn helia_and_cairn_resolve_each_others_names() {
    use crate::peers::Kubo;
    let keys = tempfile::tempdir().unwrap();
    let home = keys.path();
    let a = Root::new();
    let kubo = Kubo::start(&a.dir.path().join("kubo"), &["--routing", "dhtserver"]);
    let da = Daemon::start(&a, false, &["--bootstrap", &kubo.addr()]);
    eventually(30, "A's LAN DHT knowing kubo", || {
        da.stats()["dht"]["routing_peers"].as_u64().unwrap() >= 1
    });

    // An app made on a root that never runs a daemon, exported as a CAR: Helia serves it,
    // and names it.
    let maker = Root::new();
    let dir = maker.dir.path().join("hello");
    std::fs::create_dir_all(dir.join("bin")).unwrap();
    std::fs::write(dir.join("bin/hello"), "#!/bin/sh\necho hello from a name\n").unwrap();
    std::fs::set_permissions(
        dir.join("bin/hello"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    let app = maker.add_q(&["--app", "--name", "hello", dir.to_str().unwrap()]);
    let car = maker.dir.path().join("hello.car");
    maker.ok(&["dag", "export", &app, "-o", car.to_str().unwrap()]);
    let server = crate::peers::Helia::serve(&["--import-car", car.to_str().unwrap()]);
    let value = format!("/ipfs/{app}");
    let (lines, ok_) = helia_ipns(&[
        "--bootstrap",
        &kubo.addr(),
        "publish",
        "--count",
        "1",
        "--value",
        &value,
    ]);
    assert!(ok_, "Helia could not publish: {lines:?}");
    let helias = lines
        .iter()
        .find_map(|l| l["name"].as_str())
        .unwrap()
        .to_owned();
    assert_eq!(
        ok(&a.output(&["name", "resolve", "--nocache", &helias])),
        format!("{value}\n")
    );
    // A fresh node, mounted, knowing kubo and the Helia peer: it runs the app by Helia's
    // name, its blocks fetched from Helia (nobody else has them).
    let c = Root::new();
    let dc = Daemon::start(
        &c,
        true,
        &["--bootstrap", &kubo.addr(), "--bootstrap", &server.addr()],
    );
    eventually(30, "C's LAN DHT knowing kubo", || {
        dc.stats()["dht"]["routing_peers"].as_u64().unwrap() >= 1
    });
    let run = Command::new(c.path().join("store/name").join(&helias).join("bin/hello"))
        .output()
        .unwrap();
    assert_eq!(ok(&run), "hello from a name\n");
    drop((dc, server));

    let f = a.dir.path().join("app");
    std::fs::write(&f, b"an app\n").unwrap();
    let cid = a.add_q(&[f.to_str().unwrap()]);
    let said = ok(&with_keys(&a, home, &["release", "hello", "1.0", &cid]));
    let list = said
        .split("(list ")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .unwrap()
        .to_owned();
    let k51 = serde_json::from_str::<serde_json::Value>(&ok(&with_keys(
        &a,
        home,
        &["key", "list", "--json"],
    )))
    .unwrap()[0]["ipns"]
        .as_str()
        .unwrap()
        .to_owned();
    let (lines, ok_) = helia_ipns(&["--bootstrap", &kubo.addr(), "resolve", &k51]);
    assert!(ok_, "Helia could not resolve {k51}: {lines:?}");
    let got = lines.iter().find(|l| l["name"] == k51.as_str()).unwrap();
    assert_eq!(got["value"], format!("/ipfs/{list}"), "{got}");
    drop(da);
}

/// `cairn env install NAME@VERSION` on another node records the name and the version, and
/// `cairn env upgrade` moves it to the newest release, warning about a yanked one.
#[test]
fn environments_install_and_upgrade_released_versions() {
    let keys = tempfile::tempdir().unwrap();
    let home = keys.path();
    let (a, c) = (Root::new(), Root::new());
    let da = Daemon::start(&a, false, &[]);
    let dc = Daemon::start(&c, false, &["--bootstrap", &da.addr]);
    eventually(30, "C's LAN DHT knowing A", || {
        dc.stats()["dht"]["routing_peers"].as_u64().unwrap() >= 1
    });
    let app = |v: &str| {
        let dir = a.dir.path().join(format!("hello-{v}"));
        std::fs::create_dir_all(dir.join("bin")).unwrap();
        let bin = dir.join("bin/hello");
        std::fs::write(&bin, format!("#!/bin/sh\necho hello {v}\n")).unwrap();
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
        a.add_q(&["--app", "--name", "hello", dir.to_str().unwrap()])
    };
    let one = app("1.0");
    let said = ok(&with_keys(&a, home, &["release", "hello", "1.0", &one]));
    let k51 = said
        .rsplit("name ")
        .next()
        .unwrap()
        .trim_end_matches(")\n")
        .to_owned();
    assert!(k51.starts_with("k51"), "{said}");
    let user = tempfile::tempdir().unwrap();
    let env = |args: &[&str]| c.cmd(args).env("HOME", user.path()).output().unwrap();
    ok(&env(&["env", "install", &format!("{k51}@1.0")]));
    let current = |out: &Output| -> serde_json::Value {
        let v: serde_json::Value = serde_json::from_str(&ok(out)).unwrap();
        v.as_array()
            .unwrap()
            .iter()
            .find(|g| g["current"] == true)
            .unwrap()["apps"][0]
            .clone()
    };
    let installed = current(&env(&["env", "list", "--json"]));
    assert_eq!(installed["version"], "1.0", "{installed}");
    assert_eq!(installed["release"], k51.as_str(), "{installed}");
    assert_eq!(installed["cid"], one.as_str(), "{installed}");

    let two = app("1.1");
    ok(&with_keys(&a, home, &["release", "hello", "1.1", &two]));
    let out = env(&["env", "upgrade"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("upgrading hello 1.0 -> 1.1"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let installed = current(&env(&["env", "list", "--json"]));
    assert_eq!(installed["version"], "1.1", "{installed}");
    assert_eq!(installed["cid"], two.as_str(), "{installed}");

    ok(&with_keys(
        &a,
        home,
        &["release", "hello", "--yank", "1.1", "--reason", "broken"],
    ));
    let out = env(&["env", "upgrade"]);
    let said = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(said.contains("hello 1.1 is yanked: broken"), "{said}");
    // Not a step back to 1.0 behind the user's back.
    assert_eq!(current(&env(&["env", "list", "--json"]))["version"], "1.1");
    drop((da, dc));
}

/// `cairn profile set` publishes a user's profile under their key `profile`; another node
/// shows it by that name; a change replaces it; a bad entry is refused saying why.
#[test]
fn profiles_name_a_users_packages() {
    let t = trio();
    let (a, c, home) = (&t.a, &t.c, t.keys.path());
    let pkg = ok(&with_keys(a, home, &["key", "gen", "hello"]));
    let pkg = pkg.trim().to_owned();
    let out = with_keys(
        a,
        home,
        &[
            "profile",
            "set",
            "--display",
            "Ada",
            "--package",
            "hello=hello",
            "--repo",
            "cairn=/ipns/x",
        ],
    );
    let said = String::from_utf8_lossy(&out.stderr).into_owned();
    ok(&out);
    let me = said.rsplit("to share: ").next().unwrap().trim().to_owned();
    assert!(me.starts_with("k51"), "{said}");
    let show = |what: &str| -> serde_json::Value {
        serde_json::from_str(&ok(&c.output(&["profile", "show", "--json", what]))).unwrap()
    };
    let p = show(&me);
    assert_eq!(p["display"], "Ada", "{p}");
    assert_eq!(p["packages"]["hello"], pkg.as_str(), "{p}");
    assert_eq!(p["repositories"]["cairn"], "/ipns/x", "{p}");
    ok(&with_keys(a, home, &["profile", "set", "--rm", "cairn"]));
    eventually(30, "C seeing the change", || {
        serde_json::from_slice::<serde_json::Value>(
            &c.output(&["profile", "show", "--json", "--nocache", &me])
                .stdout,
        )
        .is_ok_and(|p| p["repositories"].as_object().is_some_and(|r| r.is_empty()))
    });
    let e = err(&with_keys(a, home, &["profile", "set", "--repo", "a/b=x"]));
    assert!(e.contains("not an entry name"), "{e}");
}
