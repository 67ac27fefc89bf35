//! What a peer holds of our wantlist: every want that ends (a block received, a reader that
//! gave up, EIO) is cancelled at every peer told of it, so an honest peer never fills up with
//! our dead wants and stops answering; and a peer that connects again gets our whole list
//! anew, replacing whatever it kept.

use std::time::{Duration, Instant};

use cairn_store::{Cid, HashAlg};
use libp2p::identity::Keypair;

use crate::{
    peers::Daemon,
    raw_peer::RawPeer,
    util::{eventually, sha256_hex, Root},
};

/// How many of our wants `peer` is holding, as `daemon` (the peer) counts them.
fn held_by(daemon: &Daemon, peer: &str) -> u64 {
    let s = daemon.stats();
    s["wantlists"]
        .as_array()
        .unwrap_or_else(|| panic!("no wantlist counters: {s}"))
        .iter()
        .find(|w| w["peer"] == peer)
        .map_or(0, |w| w["theirs"].as_u64().unwrap())
}

/// 3,000 reads through the mount of blocks a connected cairn peer lacks, 190 at a time, each
/// waiting 1.5 s (past the second broadcast, where wants used to be forgotten) and ending in
/// EIO. Every one of those wants is cancelled at the peer, which keeps wants it answered
/// DONT_HAVE to: it ends up holding none of them. Had it kept 1,024, it would drop every new
/// want of ours (and count them against us), and the file read next, which it has, would
/// fail.
#[test]
fn ended_wants_are_cancelled_at_every_peer_told() {
    let seed = Root::new();
    let data: Vec<u8> = (0..(8u32 << 20) / 4)
        .flat_map(|i| i.wrapping_mul(2_654_435_761).to_le_bytes())
        .collect();
    let file = seed.dir.path().join("file");
    std::fs::write(&file, &data).unwrap();
    let cid = seed.add_q(&[file.to_str().unwrap()]);
    let ds = Daemon::start(&seed, false, &["--no-dht"]);

    let reader = Root::new();
    let dr = Daemon::start(
        &reader,
        true,
        &[
            "--no-dht",
            "--bootstrap",
            &ds.addr,
            "--fetch-timeout",
            "1.5",
            "--threads",
            "200",
            "--no-uring",
        ],
    );
    let reader_peer = dr.peer.clone();
    eventually(10, "the reader connects", || {
        reader.ok(&["swarm", "peers"]).lines().count() >= 1
    });
    let m = dr.mountpoint.clone().unwrap();
    let missing: Vec<String> = (0..3000u32)
        .map(|i| {
            let mh = HashAlg::Sha2_256.digest(format!("no one has block {i}").as_bytes());
            Cid::new_v1(0x55, mh).to_string()
        })
        .collect();
    let t = Instant::now();
    let failed = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        for chunk in missing.chunks(missing.len().div_ceil(190)) {
            let (m, failed) = (&m, &failed);
            s.spawn(move || {
                for c in chunk {
                    let e = std::fs::read(m.join(c)).unwrap_err();
                    assert_eq!(e.raw_os_error(), Some(libc::EIO), "{c}: {e}");
                    failed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            });
        }
    });
    eprintln!(
        "{} reads ended in EIO in {:?}",
        failed.into_inner(),
        t.elapsed()
    );
    // The seeder still takes our wants: its file reads.
    let got = std::fs::read(m.join(&cid)).expect("the seeder's file reads");
    assert_eq!(sha256_hex(&got), sha256_hex(&data));
    // Nothing is in flight now: the peer holds none of our wants once the cancels are in.
    eventually(10, "the seeder holds none of our wants", || {
        held_by(&ds, &reader_peer) == 0
    });
    let row = ds.stats()["by_peer"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p[0] == reader_peer.as_str())
        .map(|p| p[1].clone())
        .unwrap();
    assert_eq!(
        row["malformed_messages"], 0,
        "charged for too many wants: {row}"
    );
}

/// A peer that comes back (the same identity, a new connection) gets our whole wantlist at
/// once, in a message that replaces what it kept (`full`), not at the next rebroadcast.
#[test]
fn a_peer_that_reconnects_gets_the_whole_list_anew() {
    let root = Root::new();
    let v = Daemon::start(&root, false, &["--no-dht", "--fetch-timeout", "60"]);
    let key = Keypair::generate_ed25519();
    let wanted = Cid::new_v1(0x55, HashAlg::Sha2_256.digest(b"wanted across a reconnect"));
    let first = RawPeer::start_with(key.clone());
    let victim = first.connect(&v);
    let mut cat = root
        .cmd(&["cat", &wanted.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    first.wait_for_want(&wanted, None);
    assert!(
        first.seen(|s| s.messages[0].full),
        "the first message to a new peer replaces its list"
    );
    drop(first);
    eventually(10, "the daemon sees the peer go", || {
        root.ok(&["swarm", "peers"]).lines().count() == 0
    });
    let again = RawPeer::start_with(key);
    assert_eq!(again.connect(&v), victim);
    let t = Instant::now();
    again.wait_for_want(&wanted, None);
    let took = t.elapsed();
    let first_msg = again.seen(|s| s.messages[0].clone());
    assert!(first_msg.full, "{first_msg:?}");
    assert!(
        first_msg.wants.iter().any(|e| e.cid == wanted && !e.cancel),
        "{first_msg:?}"
    );
    assert!(
        took < Duration::from_secs(2),
        "the list came {took:?} after the reconnect (a rebroadcast, not the connect)"
    );
    let _ = cat.kill();
    let _ = cat.wait();
}
