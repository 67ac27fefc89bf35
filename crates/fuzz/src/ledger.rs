//! The shared history a cairn peer sends us (`/cairn/history/2.0.0`): a JSON batch of
//! statements, its key, window and signature, checked by [`Graph::accept`] (its sender's
//! own) and [`Graph::accept_relayed`] (relayed), and then weighed by maxflow.
//!
//! Random bytes almost never carry a valid signature, so the input is used twice: as a batch
//! exactly as a peer would send it (everything but the signature check is reachable), and as
//! a list of statements that a fixed key signs, which the graph then takes in full. What holds
//! for every input:
//! - nothing panics; a batch from someone other than its signer, or with more than
//!   [`MAX_STATEMENTS`], is refused as its sender's own; a batch whose subjects are not all
//!   peer IDs is refused whole;
//! - whatever was accepted, every peer's reputation is finite, at least 0, and at most the sum
//!   of what the issuers gave us first-hand (the maxflow bound colluders cannot pass);
//! - a tampered batch (one byte of a statement changed) is refused.

use cairn_net::{
    reputation::{Graph, Signed, Statement, MAX_STATEMENTS},
    Keypair, PeerId,
};

/// One input: as a peer's batch, and as statements a fixed key signs.
pub fn ledger(data: &[u8]) {
    let now = 1_800_000_000_000;
    let key = Keypair::ed25519_from_bytes([7u8; 32]).expect("a 32-byte seed");
    let me = key.public().to_peer_id();
    let mut g = Graph::default();
    let direct = |k: &PeerId| if *k == me { 1e6 } else { 0.0 };
    // As sent: from an arbitrary peer, and from the peer its key names (if any).
    if let Ok(batch) = serde_json::from_slice::<Signed>(data) {
        let _ = g.accept(&PeerId::random(), &batch, now, |_| 1.0);
        // Relayed by anyone: taken on its own merits (its signature), never on the relayer's.
        let (_, refused) = g.accept_relayed(std::slice::from_ref(&batch), now, |_| 1.0);
        if refused.is_empty() {
            assert!(batch.statements.len() <= MAX_STATEMENTS);
        }
        if let Some(from) = cairn_net::reputation::issuer(&batch) {
            if g.accept(&from, &batch, now, |_| 1.0).is_ok() {
                assert!(batch.statements.len() <= MAX_STATEMENTS);
            }
        }
    }
    // As statements of ours, signed.
    let Ok(statements) = serde_json::from_slice::<Vec<Statement>>(data) else {
        return;
    };
    let Some(batch) = Signed::sign(&key, now, statements) else {
        return;
    };
    // Taken whole, or refused whole when a subject is not a peer ID.
    let peers = batch
        .statements
        .iter()
        .all(|s| s.subject.parse::<PeerId>().is_ok());
    assert_eq!(
        g.accept(&me, &batch, now, direct).is_ok(),
        peers,
        "a batch its issuer signed"
    );
    if !peers {
        return;
    }
    if let Some(first) = batch.statements.first() {
        let mut tampered = batch.clone();
        tampered.statements[0].bytes = first.bytes.wrapping_add(1);
        assert!(
            g.accept(&me, &tampered, now, direct).is_err(),
            "a tampered batch"
        );
    }
    for s in &batch.statements {
        let Ok(p) = s.subject.parse::<PeerId>() else {
            continue;
        };
        let r = g.reputation(&p, direct, now);
        assert!(r.is_finite() && r >= 0.0, "{r}");
    }
    // What the issuer gave us first-hand (1e6) is all the flow it can carry, to all the
    // distinct subjects together (the other issuer, if any, gave 0 under this measure).
    let mut seen = std::collections::HashSet::new();
    let distinct: f64 = batch
        .statements
        .iter()
        .filter_map(|s| s.subject.parse::<PeerId>().ok())
        .filter(|p| seen.insert(*p))
        .map(|p| g.reputation(&p, direct, now))
        .sum();
    assert!(
        distinct <= 1e6 * (1.0 + 1e-9),
        "{distinct} credited in all, beyond what the issuer gave"
    );
}
