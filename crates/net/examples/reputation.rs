//! What one refresh of every peer's reputation costs: 4,096 statements from 256 issuers
//! (16 each, about the issuers and 256 peers more), reputations of all 512 peers.
//!
//! ```sh
//! cargo run --release -p cairn-net --example reputation
//! ```

use std::time::Instant;

use cairn_net::reputation::{Graph, Signed, Statement};
use libp2p::{identity::Keypair, PeerId};

fn main() {
    let now = 1_700_000_000_000u64;
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut rnd = move |m: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % m
    };
    let keys: Vec<Keypair> = (0..256).map(|_| Keypair::generate_ed25519()).collect();
    let issuers: Vec<PeerId> = keys.iter().map(|k| k.public().to_peer_id()).collect();
    let others: Vec<PeerId> = (0..256).map(|_| PeerId::random()).collect();
    let everyone: Vec<PeerId> = issuers.iter().chain(&others).copied().collect();
    let gave: std::collections::HashMap<PeerId, f64> =
        issuers.iter().map(|p| (*p, rnd(1 << 20) as f64)).collect();
    let direct = |k: &PeerId| gave.get(k).copied().unwrap_or(0.0);
    let mut g = Graph::new(PeerId::random());
    for (k, p) in keys.iter().zip(&issuers) {
        let rows: Vec<Statement> = (0..16)
            .map(|_| Statement {
                subject: everyone[rnd(512) as usize].to_string(),
                bytes: rnd(1 << 30),
                at_ms: now,
            })
            .collect();
        g.accept(p, &Signed::sign(k, now, rows).unwrap(), now, direct)
            .unwrap();
    }
    let peers = everyone.iter().copied().collect();
    let mut times = Vec::new();
    let mut credited = 0;
    for _ in 0..21 {
        let t = Instant::now();
        let r = g.reputations(&peers, direct, now);
        times.push(t.elapsed().as_secs_f64() * 1e3);
        credited = r.len();
    }
    times.sort_by(f64::total_cmp);
    println!(
        "{} statements from 256 issuers; reputations of {} peers ({} credited): median {:.2} ms, max {:.2} ms",
        g.len(),
        everyone.len(),
        credited,
        times[times.len() / 2],
        times[times.len() - 1]
    );
}
