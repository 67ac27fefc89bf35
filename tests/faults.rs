//! Faults in the middle of a fetch: a seeder killed, the fetch itself killed, a seeder that
//! restarts. Each time the fetch completes and the store holds exactly the DAG, verified.

use std::{process::Stdio, time::Duration};

use serde_json::Value;

use crate::{
    peers::Daemon,
    util::{cat_sha, eventually, sha256_hex, Root},
};

fn random(n: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// A file of `mib` MiB added to `root`; its CID and bytes.
fn file(root: &Root, mib: usize, seed: u32) -> (String, Vec<u8>) {
    let data = random(mib << 20, seed);
    let f = root.dir.path().join(format!("f{seed}"));
    std::fs::write(&f, &data).unwrap();
    (root.add_q(&[f.to_str().unwrap()]), data)
}

/// Blocks in `root`'s store now.
fn blocks(root: &Root) -> usize {
    std::fs::read_dir(root.path().join("blocks")).map_or(0, |d| {
        d.filter(|e| e.as_ref().is_ok_and(|e| e.file_type().unwrap().is_file()))
            .count()
    })
}

/// `cairn fetch CID` through `root`'s daemon, started and let run until some blocks came.
fn fetch_until_halfway(root: &Root, cid: &str) -> std::process::Child {
    let fetch = root
        .cmd(&["fetch", cid])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    eventually(30, "some blocks arrive", || blocks(root) > 20);
    fetch
}

fn verify_clean(root: &Root) {
    let report: Value = serde_json::from_str(&root.ok(&["verify", "--json"])).unwrap();
    assert_eq!(report["corrupt"], serde_json::json!([]), "{report}");
}

/// Two seeders, one killed with `kill -9` while a daemon fetches from both: the fetch
/// completes from the other.
#[test]
fn a_seeder_killed_mid_fetch_leaves_the_other() {
    let a = Root::new();
    let b = Root::new();
    let (cid, data) = file(&a, 48, 1);
    let (cid_b, _) = file(&b, 48, 1);
    assert_eq!(cid, cid_b);
    let mut da = Daemon::start(&a, false, &["--no-dht", "--upload-limit", "8M"]);
    let db = Daemon::start(&b, false, &["--no-dht", "--upload-limit", "8M"]);
    let f = Root::new();
    let df = Daemon::start(
        &f,
        false,
        &["--no-dht", "--bootstrap", &da.addr, "--bootstrap", &db.addr],
    );
    eventually(10, "both seeders connected", || {
        f.ok(&["swarm", "peers"]).lines().count() >= 2
    });
    let fetch = fetch_until_halfway(&f, &cid);
    da.kill9();
    let out = fetch.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(cat_sha(&f, &cid), sha256_hex(&data));
    drop(df);
    verify_clean(&f);
    drop(db);
}

/// `cairn fetch` (its own node) killed with `kill -9` halfway, then run again: the second run
/// fetches the rest, and nothing half-written is left in the store.
#[test]
fn a_fetch_killed_and_run_again_completes() {
    let a = Root::new();
    let (cid, data) = file(&a, 48, 2);
    let da = Daemon::start(&a, false, &["--no-dht", "--upload-limit", "8M"]);
    let f = Root::new();
    let mut first = f
        .cmd(&[
            "fetch",
            &cid,
            "--no-dht",
            "--no-mdns",
            "--bootstrap",
            &da.addr,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    eventually(30, "some blocks arrive", || blocks(&f) > 20);
    first.kill().unwrap();
    first.wait().unwrap();
    let had = blocks(&f);
    let out = f
        .cmd(&[
            "fetch",
            &cid,
            "--json",
            "--no-dht",
            "--no-mdns",
            "--bootstrap",
            &da.addr,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let done: Value = serde_json::from_slice(&out.stdout).unwrap();
    let fetched = done["result"]["fetched"].as_u64().unwrap();
    let all = done["result"]["blocks"].as_u64().unwrap();
    assert!(
        fetched < all && fetched as usize + had >= all as usize - 1,
        "the second run fetched {fetched} of {all} blocks; {had} were there"
    );
    assert_eq!(cat_sha(&f, &cid), sha256_hex(&data));
    verify_clean(&f);
}

/// The only seeder stops in the middle of a daemon's fetch and comes back (dialling the
/// fetcher): the fetcher's wantlist goes to it anew and the fetch completes.
#[test]
fn a_seeder_that_restarts_mid_fetch_is_asked_again() {
    let a = Root::new();
    let (cid, data) = file(&a, 48, 3);
    let f = Root::new();
    let df = Daemon::start(&f, false, &["--no-dht", "--fetch-timeout", "60"]);
    let mut da = Daemon::start(
        &a,
        false,
        &["--no-dht", "--upload-limit", "8M", "--bootstrap", &df.addr],
    );
    let fetch = fetch_until_halfway(&f, &cid);
    da.kill9();
    std::thread::sleep(Duration::from_secs(2));
    let before = blocks(&f);
    let _da = Daemon::start(
        &a,
        false,
        &["--no-dht", "--upload-limit", "8M", "--bootstrap", &df.addr],
    );
    let out = fetch.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(blocks(&f) > before);
    assert_eq!(cat_sha(&f, &cid), sha256_hex(&data));
    drop(df);
    verify_clean(&f);
}
