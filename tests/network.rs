//! The network, with real peers on loopback: cairn daemons, Helia and kubo. Each test is one
//! scenario and checks what a user would see: bytes that hash right, files that `cmp` equal,
//! EIO where nothing can be had, counters that say who sent what.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use crate::{
    peers::{helia_fetch, kubo_download, Daemon, Helia, Kubo},
    util::{cat_sha, eventually, sha256_hex, shared, Root},
};

/// What every interop test moves: a small raw block, the 5 MiB vector file (kubo's default
/// layout), the HAMT fixture (1000 entries) and the symlink fixture.
struct Content {
    small: PathBuf,
    small_cid: String,
    vector: PathBuf,
    vector_cid: String,
    hamt_cid: String,
    hamt_file_cid: String,
    symlink_cid: String,
}

const HAMT_CAR: &str =
    "fixtures/gateway-conformance/fixtures/trustless_gateway_car/single-layer-hamt-with-multi-block-files.car";
const SYMLINK_CAR: &str = "fixtures/gateway-conformance/fixtures/path_gateway_unixfs/symlink.car";

fn content(root: &Root) -> Content {
    let small = root.dir.path().join("small.bin");
    let bytes: Vec<u8> = (0..1000u32).map(|i| (i * 31 % 251) as u8).collect();
    std::fs::write(&small, &bytes).unwrap();
    let small_cid = root.add_q(&["--cid-version", "1", small.to_str().unwrap()]);
    assert!(small_cid.starts_with("bafkrei"), "a raw block: {small_cid}");
    let vector = shared().join("vectors/random-data-seed41-5MiB.bin");
    let vector_cid = root.add_q(&[vector.to_str().unwrap()]);
    let hamt = shared().join(HAMT_CAR);
    let hamt_cid = root.ok(&["dag", "import", hamt.to_str().unwrap()]);
    let hamt_cid = hamt_cid.split_whitespace().last().unwrap().to_owned();
    let symlink = shared().join(SYMLINK_CAR);
    let symlink_cid = root.ok(&["dag", "import", symlink.to_str().unwrap()]);
    let symlink_cid = symlink_cid.split_whitespace().last().unwrap().to_owned();
    let hamt_file_cid = root
        .ok(&["ls", &hamt_cid])
        .lines()
        .next()
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .to_owned();
    Content {
        small,
        small_cid,
        vector,
        vector_cid,
        hamt_cid,
        hamt_file_cid,
        symlink_cid,
    }
}

/// `n` bytes no two blocks of which are alike (xorshift64*).
pub fn random_bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut out = Vec::with_capacity(n + 8);
    while out.len() < n {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    out.truncate(n);
    out
}

fn file_sha(p: &Path) -> String {
    sha256_hex(&std::fs::read(p).unwrap())
}

/// Checks that `root` holds the whole of `c` (after a fetch): every file's bytes (the small
/// file under `small_cid`), the 1000 HAMT entries, the symlink and its target.
fn check_content(root: &Root, c: &Content, small_cid: &str) {
    assert_eq!(cat_sha(root, small_cid), file_sha(&c.small));
    assert_eq!(cat_sha(root, &c.vector_cid), file_sha(&c.vector));
    let names: BTreeSet<String> = root
        .ok(&["ls", &c.hamt_cid])
        .lines()
        .map(|l| l.rsplit(' ').next().unwrap().to_owned())
        .collect();
    assert_eq!(names.len(), 1000);
    assert!(names.contains("1.txt") && names.contains("1000.txt"));
    let out = root.dir.path().join(format!("hamt-{}", names.len()));
    root.ok(&["get", &c.hamt_cid, "-o", out.to_str().unwrap()]);
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 1000);
    let link = root.dir.path().join("symlink-out");
    root.ok(&["get", &c.symlink_cid, "-o", link.to_str().unwrap()]);
    assert_eq!(
        std::fs::read_link(link.join("bar")).unwrap(),
        Path::new("foo")
    );
    assert_eq!(std::fs::read(link.join("foo")).unwrap(), b"content\n");
}

/// Helia and kubo fetch from a cairn daemon: every piece, sha256-checked on their side. The
/// daemon has an upload limit it is not near, with its incentives on: kubo and Helia never
/// give cairn anything, and are strangers, yet with spare capacity they get everything.
#[test]
fn helia_and_kubo_fetch_from_cairn() {
    let root = Root::new();
    let c = content(&root);
    let d = Daemon::start(&root, false, &["--upload-limit", "200M"]);

    let got = helia_fetch(
        &d.addr,
        &[
            &c.small_cid,
            &c.vector_cid,
            &c.hamt_cid,
            &c.hamt_file_cid,
            &c.symlink_cid,
        ],
    );
    assert_eq!(got.len(), 5, "{got:?}");
    assert_eq!(got[0]["sha256"], file_sha(&c.small), "{got:?}");
    assert_eq!(got[1]["sha256"], file_sha(&c.vector), "{got:?}");
    assert_eq!(
        got[2]["entries"].as_array().map(Vec::len),
        Some(1000),
        "{:?}",
        got[2]
    );
    let want = cat_sha(&root, &c.hamt_file_cid);
    assert_eq!(got[3]["sha256"], want.as_str(), "{:?}", got[3]);
    let entries: Vec<&str> = got[4]["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    assert_eq!(entries, ["bar", "foo"]);

    let dl = kubo_download(
        root.dir.path(),
        &d.addr,
        &[&c.small_cid, &c.vector_cid, &c.hamt_cid, &c.symlink_cid],
    );
    assert_eq!(file_sha(&dl[0]), file_sha(&c.small));
    assert_eq!(file_sha(&dl[1]), file_sha(&c.vector));
    let files: Vec<_> = std::fs::read_dir(&dl[2])
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1000);
    for f in &files {
        assert_eq!(file_sha(f), want, "{}", f.display());
    }
    // The wheel's downloader writes a symlink node as a file holding its target.
    let bar = dl[3].join("bar");
    match std::fs::read_link(&bar) {
        Ok(t) => assert_eq!(t, Path::new("foo")),
        Err(_) => assert_eq!(std::fs::read(&bar).unwrap(), b"foo"),
    }
    assert_eq!(std::fs::read(dl[3].join("foo")).unwrap(), b"content\n");
    let (sent, _) = d.bytes();
    assert!(sent > 10 << 20, "the daemon sent {sent} bytes");
}

/// cairn fetches everything from Helia, then from kubo (which has the HAMT and symlink
/// fixtures only because it downloaded them from another cairn first: kubo cannot import CARs
/// here). Each time the fetching node knows one address: its peer's.
#[test]
fn cairn_fetches_from_helia_and_kubo() {
    let src = Root::new();
    let c = content(&src);
    let hamt = shared().join(HAMT_CAR);
    let symlink = shared().join(SYMLINK_CAR);
    let helia = Helia::serve(&[
        "--add-file",
        c.small.to_str().unwrap(),
        "--add-file",
        c.vector.to_str().unwrap(),
        "--import-car",
        hamt.to_str().unwrap(),
        "--import-car",
        symlink.to_str().unwrap(),
    ]);
    let small_v1 = &helia.info["files"][c.small.to_str().unwrap()]["kubo_cid_version_1"];
    assert_eq!(
        small_v1,
        c.small_cid.as_str(),
        "Helia and cairn agree on the raw CID"
    );
    let from_helia = Root::new();
    for cid in [&c.small_cid, &c.vector_cid, &c.hamt_cid, &c.symlink_cid] {
        from_helia.ok(&[
            "fetch",
            cid,
            "--no-mdns",
            "--no-dht",
            "--bootstrap",
            &helia.addr(),
        ]);
    }
    check_content(&from_helia, &c, &c.small_cid);

    // kubo: it adds the two files itself (the small one as `ipfs add` does, a CIDv0 dag-pb
    // block); the fixtures it downloads from a cairn daemon.
    let seed = Daemon::start(&src, false, &[]);
    let repo = src.dir.path().join("kubo");
    let hamt_dir = src.dir.path().join("kubo-hamt");
    let link_dir = src.dir.path().join("kubo-symlink");
    let kubo = Kubo::start(
        &repo,
        &[
            "--add",
            c.small.to_str().unwrap(),
            "--add",
            c.vector.to_str().unwrap(),
            "--connect",
            &seed.addr,
            "--download",
            &c.hamt_cid,
            hamt_dir.to_str().unwrap(),
            "--download",
            &c.symlink_cid,
            link_dir.to_str().unwrap(),
        ],
    );
    assert_eq!(kubo.added(&c.vector), c.vector_cid, "kubo and cairn agree");
    let kubo_small = kubo.added(&c.small);
    drop(seed);
    let from_kubo = Root::new();
    for cid in [&kubo_small, &c.vector_cid, &c.hamt_cid, &c.symlink_cid] {
        from_kubo.ok(&[
            "fetch",
            cid,
            "--no-mdns",
            "--no-dht",
            "--bootstrap",
            &kubo.addr(),
        ]);
    }
    check_content(&from_kubo, &c, &kubo_small);
}

/// Three cairn nodes: one seeds, one fetches from it, the third fetches one DAG from both at
/// once, and blocks come from both (the counters say so).
#[test]
fn a_dag_comes_from_two_seeders_at_once() {
    let a = Root::new();
    let b = Root::new();
    let data = random_bytes(24 << 20, 1);
    let file = a.dir.path().join("f");
    std::fs::write(&file, &data).unwrap();
    let cid = a.add_q(&[file.to_str().unwrap()]);
    let da = Daemon::start(&a, false, &[]);
    let db = Daemon::start(&b, false, &["--bootstrap", &da.addr]);
    b.ok(&["fetch", &cid]);
    assert_eq!(cat_sha(&b, &cid), sha256_hex(&data));
    let c = Root::new();
    let dc = Daemon::start(
        &c,
        false,
        &["--bootstrap", &da.addr, "--bootstrap", &db.addr],
    );
    // Both seeders connected before the fetch starts.
    let t = Instant::now();
    while c.ok(&["swarm", "peers"]).lines().count() < 2 {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "peers never connected"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    c.ok(&["fetch", &cid]);
    assert_eq!(cat_sha(&c, &cid), sha256_hex(&data));
    let (from_a, from_b) = (dc.blocks_from(&da.peer), dc.blocks_from(&db.peer));
    assert!(
        from_a > 5 && from_b > 5,
        "blocks from a: {from_a}, from b: {from_b}: {}",
        dc.stats()
    );
}

/// Two cairn nodes connect over QUIC (the seeder listens on nothing else) and move a DAG
/// across it.
#[test]
fn a_dag_moves_over_quic() {
    let a = Root::new();
    let b = Root::new();
    let data = random_bytes(3 << 20, 7);
    let file = a.dir.path().join("f");
    std::fs::write(&file, &data).unwrap();
    let cid = a.add_q(&[file.to_str().unwrap()]);
    // The seeder listens on QUIC only: every connection to it is QUIC.
    let da = Daemon::start_listening(&a, "/ip4/127.0.0.1/udp/0/quic-v1", &[]);
    assert!(da.addr.contains("/quic-v1/p2p/"), "{}", da.addr);
    let _db = Daemon::start(&b, false, &["--bootstrap", &da.addr]);
    b.ok(&["fetch", &cid]);
    assert_eq!(cat_sha(&b, &cid), sha256_hex(&data));
    let peers: serde_json::Value =
        serde_json::from_str(&b.ok(&["swarm", "peers", "--json"])).unwrap();
    let via: Vec<&str> = peers
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["peer"] == da.peer.as_str())
        .flat_map(|p| p["addrs"].as_array().unwrap().iter())
        .filter_map(|a| a.as_str())
        .collect();
    assert!(
        !via.is_empty() && via.iter().all(|a| a.contains("/quic-v1")),
        "connected to the seeder over {via:?}"
    );
}

/// A mount on a node that has nothing reads a 64 MiB file another node serves: `cmp` equal.
/// A block no peer has is EIO after the fetch timeout, while another file on the same mount
/// stays readable meanwhile.
#[test]
fn a_mount_reads_what_a_peer_serves_and_eio_for_what_nobody_has() {
    let seed = Root::new();
    let data = random_bytes(64 << 20, 2);
    let file = seed.dir.path().join("big");
    std::fs::write(&file, &data).unwrap();
    let cid = seed.add_q(&[file.to_str().unwrap()]);
    let small = seed.dir.path().join("small");
    std::fs::write(&small, b"small and quick\n").unwrap();
    let small_cid = seed.add_q(&[small.to_str().unwrap()]);
    let ds = Daemon::start(&seed, false, &[]);

    let reader = Root::new();
    let dr = Daemon::start(
        &reader,
        true,
        &["--bootstrap", &ds.addr, "--fetch-timeout", "3"],
    );
    let m = dr.mountpoint.clone().unwrap();
    let st = std::process::Command::new("cmp")
        .arg(m.join(&cid))
        .arg(&file)
        .status()
        .unwrap();
    assert!(st.success(), "cmp of the mounted file and the original");

    // Nobody has this one: EIO after about the timeout, and meanwhile the mount answers.
    let missing = "bafkreih5a4yjwrsfyzf6ah3mxamkm4u53f54hpbsptr4jjm6jsvg2qyv2e";
    let m2 = m.clone();
    let t = Instant::now();
    let waiting = std::thread::spawn(move || std::fs::read(m2.join(missing)));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        std::fs::read(m.join(&small_cid)).unwrap(),
        b"small and quick\n",
        "another file reads while one waits"
    );
    assert!(t.elapsed() < Duration::from_secs(2));
    let err = waiting.join().unwrap().unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EIO), "{err}");
    let waited = t.elapsed();
    assert!(
        waited >= Duration::from_millis(2500) && waited < Duration::from_secs(15),
        "{waited:?}"
    );
}

/// Providers through kubo's LAN DHT, both ways, each node configured with one address only.
/// B and C are cairn DHT nodes (C knows B); kubo knows only B. kubo adds a file and announces
/// it: C, which never heard of kubo's address, finds kubo as the provider and fetches from it.
/// Then A (cairn, knows only B) pins and announces a file: kubo, which knows only B, finds A
/// as the provider and downloads it.
#[test]
fn providers_are_found_through_kubos_lan_dht() {
    let b = Root::new();
    let db = Daemon::start(&b, false, &[]);
    let c = Root::new();
    let dc = Daemon::start(&c, false, &["--bootstrap", &db.addr]);
    let repo = b.dir.path().join("kubo");
    let file = b.dir.path().join("from-kubo");
    std::fs::write(&file, crate::network::random_bytes(3 << 20, 3)).unwrap();
    let kubo = Kubo::start(
        &repo,
        &[
            "--routing",
            "dht",
            "--bootstrap",
            &db.addr,
            "--add",
            file.to_str().unwrap(),
        ],
    );
    let cid = kubo.added(&file);
    // C never heard kubo's address: it reaches kubo through the DHT, by a provider lookup, or
    // because its walk of the LAN DHT connected the two (then kubo hears C's wants as soon as it
    // connects, and is asked directly). C is cut off from kubo first, so that one of those
    // happens during the fetch.
    eventually(30, "C's DHT learning of kubo's records", || {
        dc.stats()["dht"]["records_kept"].as_u64().unwrap() > 0
            || dc.stats()["dht"]["routing_peers"].as_u64().unwrap() >= 2
    });
    let _ = c.output(&["swarm", "disconnect", &kubo.peer()]);
    let out = c.output(&["fetch", &cid]);
    assert!(
        out.status.success(),
        "C could not fetch kubo's file: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        dc.log()
    );
    assert_eq!(cat_sha(&c, &cid), file_sha(&file));
    assert!(dc.blocks_from(&kubo.peer()) > 0, "{}", dc.stats());
    let dht = &dc.stats()["dht"];
    eprintln!("C's DHT after the fetch: {dht}");
    assert!(
        dht["providers_found"].as_u64().unwrap() > 0 || dht["routing_peers"].as_u64().unwrap() >= 2,
        "{dht}"
    );

    let a = Root::new();
    let afile = a.dir.path().join("from-a");
    std::fs::write(&afile, crate::network::random_bytes(2 << 20, 4)).unwrap();
    let acid = a.add_q(&[afile.to_str().unwrap()]);
    let da = Daemon::start(&a, false, &["--bootstrap", &db.addr]);
    // A announces once it has a peer; the record lands on B (and C).
    eventually(30, "A's announcement reaching the DHT", || {
        da.stats()["dht"]["provided"].as_u64().unwrap() > 0
    });
    let got = kubo_download(b.dir.path(), &db.addr, &[&acid]);
    assert_eq!(file_sha(&got[0]), file_sha(&afile));
    let (sent, _) = da.bytes();
    assert!(sent >= 2 << 20, "A sent {sent} bytes:\n{}", da.log());
}

/// One seeder and 8 fetchers on loopback fetch a 256 MiB DAG at once: the fetchers serve
/// each other, so the seeder uploads well under 8 copies (measured from its counters).
#[test]
fn a_swarm_of_fetchers_trades_among_itself() {
    let mib: usize = std::env::var("CAIRN_SWARM_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    let seed = Root::new();
    let file = seed.dir.path().join("big");
    std::fs::write(&file, random_bytes(mib << 20, 5)).unwrap();
    let want = file_sha(&file);
    let cid = seed.add_q(&["--cid-version", "1", file.to_str().unwrap()]);
    std::fs::remove_file(&file).unwrap();
    let ds = Daemon::start(&seed, false, &[]);
    let mut roots = Vec::new();
    let mut daemons: Vec<Daemon> = Vec::new();
    for _ in 0..8 {
        let r = Root::new();
        let mut args = vec!["--bootstrap".to_owned(), ds.addr.clone()];
        for d in &daemons {
            args.push("--bootstrap".into());
            args.push(d.addr.clone());
        }
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        daemons.push(Daemon::start(&r, false, &a));
        roots.push(r);
    }
    for r in &roots {
        eventually(20, "every fetcher connected to all 8 others", || {
            r.ok(&["swarm", "peers"]).lines().count() >= 8
        });
    }
    let (sent_before, _) = ds.bytes();
    let t = Instant::now();
    std::thread::scope(|s| {
        for r in &roots {
            let cid = cid.clone();
            s.spawn(move || r.ok(&["fetch", &cid, "--no-pin"]));
        }
    });
    let took = t.elapsed();
    for r in &roots {
        assert_eq!(cat_sha(r, &cid), want);
    }
    let (sent, _) = ds.bytes();
    let copies = (sent - sent_before) as f64 / (mib << 20) as f64;
    let traded: u64 = daemons.iter().map(|d| d.bytes().0).sum();
    eprintln!(
        "swarm: {took:?}; the seeder sent {copies:.2} copies; the fetchers sent each other {:.2}",
        traded as f64 / (mib << 20) as f64
    );
    assert!(
        copies < 3.0,
        "the seeder sent {copies:.2} copies of the DAG"
    );
}

/// Two network namespaces joined by a veth pair: hosts on one LAN, nothing else.
struct Lan {
    names: [String; 2],
}

impl Lan {
    fn new() -> Lan {
        let tag = std::process::id() % 100_000;
        let names = [format!("cairn-a{tag}"), format!("cairn-b{tag}")];
        let (va, vb) = (format!("cva{tag}"), format!("cvb{tag}"));
        let sh = |args: &[&str]| {
            let st = std::process::Command::new("ip")
                .args(args)
                .status()
                .unwrap();
            assert!(st.success(), "ip {args:?}");
        };
        for n in &names {
            let _ = std::process::Command::new("ip")
                .args(["netns", "del", n])
                .stderr(std::process::Stdio::null())
                .status();
            sh(&["netns", "add", n]);
            sh(&["-n", n, "link", "set", "lo", "up"]);
        }
        sh(&["link", "add", &va, "type", "veth", "peer", "name", &vb]);
        for (v, n, addr) in [
            (&va, &names[0], "10.77.0.1/24"),
            (&vb, &names[1], "10.77.0.2/24"),
        ] {
            sh(&["link", "set", v, "netns", n]);
            sh(&["-n", n, "addr", "add", addr, "dev", v]);
            sh(&["-n", n, "link", "set", v, "up", "multicast", "on"]);
        }
        Lan { names }
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        for n in &self.names {
            let _ = std::process::Command::new("ip")
                .args(["netns", "del", n])
                .status();
        }
    }
}

/// mDNS: two nodes on a LAN of their own (network namespaces the test makes), with no
/// address configured anywhere, find each other and move a block.
#[test]
fn mdns_peers_find_each_other_on_a_lan() {
    let lan = Lan::new();
    let a = Root::new();
    let b = Root::new();
    let file = a.dir.path().join("f");
    std::fs::write(&file, random_bytes(1 << 20, 6)).unwrap();
    let cid = a.add_q(&[file.to_str().unwrap()]);
    let da = Daemon::start_in(&lan.names[0], &a);
    let db = Daemon::start_in(&lan.names[1], &b);
    let t = std::time::Instant::now();
    while !b.ok(&["swarm", "peers", "--json"]).contains(&da.peer) {
        assert!(
            t.elapsed().as_secs() < 30,
            "b did not find a by mDNS within 30 s.\na said:\n{}\nb said:\n{}",
            da.log(),
            db.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let peers: serde_json::Value =
        serde_json::from_str(&b.ok(&["swarm", "peers", "--json"])).unwrap();
    let a_seen = peers
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["peer"] == da.peer.as_str())
        .unwrap();
    assert_eq!(a_seen["mdns"], true, "{a_seen}");
    assert!(
        a_seen["addrs"][0].as_str().unwrap().contains("10.77.0.1"),
        "{a_seen}"
    );
    b.ok(&["fetch", &cid]);
    assert_eq!(cat_sha(&b, &cid), file_sha(&file));
}

/// `cairn fetch` resumes: run again after some blocks went missing, it fetches only those.
/// And `cairn provide` announces a CID that no pin names.
#[test]
fn fetch_resumes_and_provide_announces() {
    let a = Root::new();
    let file = a.dir.path().join("f");
    std::fs::write(&file, random_bytes(4 << 20, 7)).unwrap();
    let cid = a.add_q(&["--cid-version", "1", "--pin=false", file.to_str().unwrap()]);
    let da = Daemon::start(&a, false, &[]);
    let b = Root::new();
    let _db = Daemon::start(&b, false, &["--bootstrap", &da.addr]);
    let first: serde_json::Value = serde_json::from_str(&b.ok(&["fetch", &cid, "--json"])).unwrap();
    let total = first["result"]["blocks"].as_u64().unwrap();
    assert_eq!(first["result"]["fetched"], total);
    // Three leaves gone (as if collected): the second fetch brings back exactly those.
    let mut gone = 0;
    for name in b.block_files() {
        if gone < 3 && name.starts_with("bafkrei") {
            let p = b.path().join("blocks").join(&name);
            std::fs::remove_file(p).unwrap();
            gone += 1;
        }
    }
    let again: serde_json::Value = serde_json::from_str(&b.ok(&["fetch", &cid, "--json"])).unwrap();
    assert_eq!(again["result"]["fetched"], 3, "{again}");
    assert_eq!(again["result"]["blocks"], total);
    assert_eq!(cat_sha(&b, &cid), file_sha(&file));

    let before = da.stats()["dht"]["provided"].as_u64().unwrap();
    a.ok(&["provide", &cid]);
    eventually(20, "the announcement", || {
        da.stats()["dht"]["provided"].as_u64().unwrap() > before
    });
}

/// The control socket: any local user may read through the daemon, only root and the
/// daemon's user may change what it does.
#[test]
fn only_the_daemons_user_changes_what_it_does() {
    use std::os::unix::fs::PermissionsExt;
    let a = Root::new();
    let d = Daemon::start(&a, false, &[]);
    std::fs::set_permissions(a.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let as_nobody = |args: &[&str]| {
        std::process::Command::new("setpriv")
            .args(["--reuid", "nobody", "--regid", "nogroup", "--clear-groups"])
            .arg(crate::util::cairn_bin())
            .arg("--root")
            .arg(a.path())
            .args(args)
            .output()
            .unwrap()
    };
    let peers = as_nobody(&["swarm", "peers", "--json"]);
    assert!(
        peers.status.success(),
        "{}",
        String::from_utf8_lossy(&peers.stderr)
    );
    let connect = as_nobody(&["swarm", "connect", &d.addr]);
    assert!(!connect.status.success());
    let err = String::from_utf8_lossy(&connect.stderr);
    assert!(err.contains("only root and the daemon's user"), "{err}");
    let provide = as_nobody(&[
        "provide",
        "bafkreih5a4yjwrsfyzf6ah3mxamkm4u53f54hpbsptr4jjm6jsvg2qyv2e",
    ]);
    assert!(!provide.status.success());
}

/// The ledger outlives the daemon: what a peer gave us is in `R/ledger.json` after a stop,
/// `cairn swarm ledger` reads it with or without a daemon, and a restarted daemon goes on
/// from it. Recent figures decay; totals do not.
#[test]
fn the_ledger_is_kept_across_restarts() {
    let a = Root::new();
    let file = a.dir.path().join("f");
    std::fs::write(&file, random_bytes(3 << 20, 11)).unwrap();
    let cid = a.add_q(&["--cid-version", "1", file.to_str().unwrap()]);
    let da = Daemon::start(&a, false, &[]);
    let b = Root::new();
    let db = Daemon::start(&b, false, &["--bootstrap", &da.addr]);
    b.ok(&["fetch", &cid]);
    let ledger = |r: &Root| -> Vec<serde_json::Value> {
        serde_json::from_str::<serde_json::Value>(&r.ok(&["swarm", "ledger", "--json"]))
            .unwrap()
            .as_array()
            .unwrap()
            .clone()
    };
    let row = |rows: &[serde_json::Value], peer: &str| {
        rows.iter()
            .find(|r| r["peer"] == peer)
            .cloned()
            .unwrap_or_else(|| panic!("{peer} not in {rows:?}"))
    };
    // Through the running daemons.
    let from_a = row(&ledger(&b), &da.peer);
    assert!(
        from_a["bytes_received"].as_u64().unwrap() >= 3 << 20,
        "{from_a}"
    );
    assert!(
        from_a["recent_received"].as_f64().unwrap() > 1e6,
        "{from_a}"
    );
    assert_eq!(from_a["stranger"], false);
    let to_b = row(&ledger(&a), &db.peer);
    assert!(to_b["bytes_sent"].as_u64().unwrap() >= 3 << 20, "{to_b}");
    // After a stop: from the file.
    let b_peer = db.peer.clone();
    drop(db);
    assert!(b.path().join("ledger.json").exists());
    let kept = row(&ledger(&b), &da.peer);
    assert_eq!(kept["bytes_received"], from_a["bytes_received"]);
    // A restarted daemon goes on from it.
    let db = Daemon::start(&b, false, &[]);
    assert_ne!(db.peer, "");
    assert_eq!(db.peer, b_peer, "same identity");
    let again = row(&ledger(&b), &da.peer);
    assert_eq!(again["bytes_received"], from_a["bytes_received"]);
}

/// Reads waiting for blocks nobody has never take all the threads that answer one CPU: with
/// io_uring a request made on CPU 0 is answered only by CPU 0's queue, so the limit on
/// waiting reads holds per queue. Eight readers of missing blocks on CPU 0, then a local
/// file read on CPU 0 answers at once (it would wait until the fetch timeout if the queue's
/// four threads all waited).
#[test]
fn reads_stalled_on_the_network_leave_every_cpu_served() {
    let root = Root::new();
    let local = root.dir.path().join("local");
    std::fs::write(&local, b"here already\n").unwrap();
    let local_cid = root.add_q(&[local.to_str().unwrap()]);
    // CIDs of blocks that exist nowhere (added to another root, never served).
    let elsewhere = Root::new();
    let missing: Vec<String> = (0..8)
        .map(|i| {
            let f = elsewhere.dir.path().join(format!("m{i}"));
            std::fs::write(&f, format!("missing {i}\n")).unwrap();
            elsewhere.add_q(&["--cid-version", "1", f.to_str().unwrap()])
        })
        .collect();
    let d = Daemon::start(&root, true, &["--threads", "8", "--fetch-timeout", "8"]);
    let m = d.mountpoint.clone().unwrap();
    let on_cpu0 = |path: &Path| {
        std::process::Command::new("taskset")
            .args(["-c", "0", "cat"])
            .arg(path)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut waiting: Vec<_> = missing.iter().map(|c| on_cpu0(&m.join(c))).collect();
    std::thread::sleep(Duration::from_millis(1500));
    let t = Instant::now();
    let out = on_cpu0(&m.join(&local_cid)).wait_with_output().unwrap();
    let took = t.elapsed();
    for w in &mut waiting {
        let _ = w.kill();
        let _ = w.wait();
    }
    assert_eq!(out.stdout, b"here already\n");
    assert!(
        took < Duration::from_secs(2),
        "a local read on CPU 0 took {took:?} while reads there waited for the network"
    );
}
