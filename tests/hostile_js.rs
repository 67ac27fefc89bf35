//! Hostile and honest peers written in another implementation: JavaScript on the libp2p
//! stack Helia runs on (`tests/support/*.mjs`, run from the Helia install of
//! `scripts/interop.sh`).

use std::{
    collections::BTreeSet,
    path::PathBuf,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::{
    peers::{helia_fetch, interop, Daemon, Helia},
    util::{cat_sha, eventually, rss_kib, Root},
};

/// `tests/support/NAME` copied beside Helia's node_modules (node finds modules from where a
/// script is); its path there.
fn script(name: &str) -> PathBuf {
    let dir = interop().join("helia");
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/support")
        .join(name);
    let dest = dir.join(name);
    std::fs::copy(&src, &dest).unwrap();
    dest
}

fn node(script: &PathBuf) -> Command {
    let mut c = Command::new("node");
    c.current_dir(interop().join("helia"))
        .args(["--import", "./node20-polyfills.mjs"])
        .arg(script);
    c
}

/// A JavaScript peer that answers every want with HAVE and then with wrong bytes, sends
/// blocks nobody asked for, garbage, truncated frames, a 1 GiB length prefix and a flood of
/// 64k wants with cancels, for 30 s and under new identities whenever it is cut off. Meanwhile
/// an honest Helia peer's 5 MiB file is fetched byte-identical; nothing unwanted is stored
/// (every block file belongs to that DAG); `cairn verify` is clean; the daemon stays under
/// 300 MB and serves Helia afterwards.
#[test]
fn a_hostile_js_peer_cannot_stop_an_honest_helia_fetch() {
    let root = Root::new();
    let file = root.dir.path().join("five-mib");
    let mut x: u32 = 0x9e37_79b9;
    let data: Vec<u8> = (0..5 << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect();
    std::fs::write(&file, &data).unwrap();
    let helia = Helia::serve(&["--add-file", file.to_str().unwrap()]);
    let added = &helia.info["files"][file.to_str().unwrap()];
    let cid = added["kubo_default_v0"].as_str().unwrap().to_owned();
    let sha = added["sha256"].as_str().unwrap().to_owned();
    let d = Daemon::start(&root, false, &["--no-dht", "--fetch-timeout", "60"]);
    let hostile = script("hostile.mjs");
    let attack = node(&hostile)
        .args(["--target", &d.addr, "--seconds", "30"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    let pid = d.pid();
    let sampler = std::thread::spawn(move || {
        let mut max = 0;
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(32) {
            max = max.max(rss_kib(pid));
            std::thread::sleep(Duration::from_millis(200));
        }
        max
    });
    // The fetch starts with only the liar around (it says HAVE, then sends wrong bytes); the
    // honest peer comes a moment later, into a node under attack.
    let fetch = root
        .cmd(&["fetch", &cid])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    root.ok(&["swarm", "connect", &helia.addr()]);
    let out = fetch.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(cat_sha(&root, &cid), sha);
    let out = attack.wait_with_output().unwrap();
    let report: Value = serde_json::from_str(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .last()
            .unwrap_or("{}"),
    )
    .unwrap_or_default();
    let max_rss = sampler.join().unwrap();
    eprintln!("attack: {report}; daemon max RSS {} MiB", max_rss >> 10);
    assert!(
        report["sent"]["wrong"].as_u64() > Some(0) || report["sent"]["haves"].as_u64() > Some(0),
        "the hostile peer never answered a want: {report}"
    );
    assert!(report["sent"]["unsolicited"].as_u64() > Some(0), "{report}");
    assert!(
        max_rss < 300 << 10,
        "the daemon reached {} MiB",
        max_rss >> 10
    );

    // Every block file is a block of the DAG: nothing unwanted was stored.
    let mut dag: BTreeSet<String> = root
        .ok(&["refs", "-r", &cid])
        .lines()
        .map(|c| cairn_store::block_name(&c.parse().unwrap()))
        .collect();
    dag.insert(cairn_store::block_name(&cid.parse().unwrap()));
    let files: BTreeSet<String> = std::fs::read_dir(root.path().join("blocks"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_type().unwrap().is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(files, dag, "blocks outside the DAG were stored");
    // The daemon still serves Helia.
    let got = helia_fetch(&d.addr, &[&cid]);
    assert_eq!(got[0]["sha256"], sha.as_str(), "{got:?}");
    drop(d);
    let v: Value = serde_json::from_str(&root.ok(&["verify", "--json"])).unwrap();
    assert_eq!(v["corrupt"], serde_json::json!([]), "{v}");
}

/// A block under sha3-256, which cairn cannot hash, served by an honest Helia peer: reading
/// it fails at once with a message that says why, and the peer is asked nothing and charged
/// nothing (it used to be sent the want, answer honestly, and be charged a bad block).
#[test]
fn a_block_cairn_cannot_check_is_refused_up_front() {
    let peer = script("sha3_peer.mjs");
    let mut child = node(&peer)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    let info: Value = serde_json::from_str(&line).unwrap();
    let cid = info["cid"].as_str().unwrap().to_owned();
    let addr = info["multiaddrs"][0].as_str().unwrap().to_owned();
    let helia_peer = info["peerId"].as_str().unwrap().to_owned();
    let root = Root::new();
    let d = Daemon::start(
        &root,
        true,
        &["--no-dht", "--bootstrap", &addr, "--fetch-timeout", "30"],
    );
    eventually(10, "connected to Helia", || {
        root.ok(&["swarm", "peers"]).contains(&helia_peer)
    });
    let t = Instant::now();
    let err = root.fails(&["cat", &cid]);
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert!(err.contains("0x16"), "{err}");
    assert!(err.contains("cannot compute"), "{err}");
    let m = d.mountpoint.clone().unwrap();
    let t = Instant::now();
    assert!(std::fs::read(m.join(&cid)).is_err());
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    let fetch = root.fails(&["fetch", &cid]);
    assert!(fetch.contains("0x16"), "{fetch}");
    let row = d.stats()["by_peer"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p[0] == helia_peer.as_str())
        .map(|p| p[1].clone())
        .unwrap_or_default();
    assert_eq!(row["bad_blocks"].as_u64().unwrap_or(0), 0, "{row}");
    assert_eq!(row["unwanted_blocks"].as_u64().unwrap_or(0), 0, "{row}");
    assert_eq!(row["offence"].as_f64().unwrap_or(0.0), 0.0, "{row}");
    let _ = child.kill();
    let _ = child.wait();
}
