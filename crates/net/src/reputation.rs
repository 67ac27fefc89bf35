//! Shared history, checked: signed statements of what others gave a node, a bounded
//! contribution graph built from them, and a peer's reputation as the max flow from it to
//! us (after Feldman et al.).
//!
//! A statement says "`subject` gave me `bytes` lately, as of `at_ms`" (the issuer's decaying
//! figure, [`crate::ledger::HALF_LIFE`]). A node signs its statements as one batch with its
//! libp2p key, so a batch speaks only for the node whose key signed it: nobody can credit a
//! peer on another node's behalf. Statements are taken only from their issuer, over the
//! connection that issuer authenticated.
//!
//! The graph has an edge `subject → issuer` per statement and, first-hand, `k → us` for what
//! each peer `k` gave us (our own ledger, never a statement). A peer's reputation is the
//! flow it can push to us over two hops, each issuer's edge to us shared among the peers it
//! names in proportion to what it says they gave ([`Graph::reputation`]). Two colluders that
//! sign that they gave each other a terabyte gain at most what the other gave *us*, and an
//! issuer that names sixty-four identities of its own gives them all together no more: the
//! flow caps what any set of liars can claim by what they gave honest nodes, which is what
//! makes the shared history safe to use. The graph is bounded: [`MAX_ISSUERS`] issuers (when
//! full, the one that gave us least goes, never for one that gave no more),
//! [`MAX_STATEMENTS`] statements each.

use std::collections::HashMap;

use libp2p::{
    identity::{Keypair, PublicKey},
    PeerId,
};
use serde::{Deserialize, Serialize};

use crate::ledger::Decaying;

/// Statements kept per issuer (its largest givers).
pub const MAX_STATEMENTS: usize = 64;
/// Issuers whose statements are kept.
pub const MAX_ISSUERS: usize = 256;
/// How far ahead of our clock a statement may be dated.
const CLOCK_SKEW_MS: u64 = 60_000;
/// What is signed ahead of the statements, so a signature means nothing anywhere else.
const DOMAIN: &[u8] = b"/cairn/history/1.0.0 statements\0";

/// "`subject` gave me `bytes` lately, as of `at_ms`."
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Statement {
    pub subject: String,
    pub bytes: u64,
    pub at_ms: u64,
}

/// A batch of statements and its issuer's signature.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Signed {
    /// The issuer's public key (libp2p protobuf encoding); the issuer is its peer ID.
    pub key: Vec<u8>,
    pub statements: Vec<Statement>,
    pub signature: Vec<u8>,
}

fn signing_bytes(statements: &[Statement]) -> Vec<u8> {
    let mut b = DOMAIN.to_vec();
    for s in statements {
        b.extend_from_slice(&(s.subject.len() as u32).to_be_bytes());
        b.extend_from_slice(s.subject.as_bytes());
        b.extend_from_slice(&s.bytes.to_be_bytes());
        b.extend_from_slice(&s.at_ms.to_be_bytes());
    }
    b
}

impl Signed {
    /// Signs `statements` (at most [`MAX_STATEMENTS`] are kept) with `key`.
    pub fn sign(key: &Keypair, mut statements: Vec<Statement>) -> Option<Signed> {
        statements.truncate(MAX_STATEMENTS);
        let signature = key.sign(&signing_bytes(&statements)).ok()?;
        Some(Signed {
            key: key.public().encode_protobuf(),
            statements,
            signature,
        })
    }
}

/// The peer a batch's key names (whether or not its signature holds).
pub fn issuer(batch: &Signed) -> Option<PeerId> {
    PublicKey::try_decode_protobuf(&batch.key)
        .ok()
        .map(|k| k.to_peer_id())
}

/// Why a batch was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("the signature does not hold")]
    Signature,
    #[error("signed by another node than the one that sent it")]
    NotIssuer,
    #[error("more than {MAX_STATEMENTS} statements")]
    TooMany,
}

struct Issuer {
    gave: HashMap<PeerId, Decaying>,
}

/// What cairn nodes said others gave them.
#[derive(Default)]
pub struct Graph {
    issuers: HashMap<PeerId, Issuer>,
}

impl Graph {
    /// Takes `batch` from `from`, replacing what `from` said before. Statements about the
    /// issuer itself, about unparsable peers, or dated in the future are dropped. `direct(k)`
    /// is what `k` gave us first-hand: when the graph is full, the issuer that gave us least
    /// goes, or the newcomer if it gave no more (an issuer's word carries no more flow than
    /// what it gave us, so one that gave nothing counts for nothing until it gives).
    pub fn accept(
        &mut self,
        from: &PeerId,
        batch: &Signed,
        now_ms: u64,
        direct: impl Fn(&PeerId) -> f64,
    ) -> Result<usize, Refused> {
        if batch.statements.len() > MAX_STATEMENTS {
            return Err(Refused::TooMany);
        }
        // The cheap check first: the key must be the sender's own, before any signature
        // arithmetic is done on it.
        let key = PublicKey::try_decode_protobuf(&batch.key).map_err(|_| Refused::Signature)?;
        let issuer = key.to_peer_id();
        if issuer != *from {
            return Err(Refused::NotIssuer);
        }
        if !key.verify(&signing_bytes(&batch.statements), &batch.signature) {
            return Err(Refused::Signature);
        }
        let mut gave = HashMap::new();
        for s in &batch.statements {
            let Ok(subject) = s.subject.parse::<PeerId>() else {
                continue;
            };
            if subject == issuer || s.at_ms > now_ms + CLOCK_SKEW_MS {
                continue;
            }
            gave.insert(
                subject,
                Decaying {
                    value: s.bytes as f64,
                    at_ms: s.at_ms.min(now_ms),
                },
            );
        }
        if !self.issuers.contains_key(&issuer) && self.issuers.len() >= MAX_ISSUERS {
            // Full: the issuer that gave us least goes, unless the newcomer gave no more
            // (a crowd of identities that gave nothing cannot push out one that did).
            let least = self
                .issuers
                .keys()
                .map(|p| (direct(p), *p))
                .min_by(|a, b| a.0.total_cmp(&b.0));
            match least {
                Some((d, p)) if d < direct(&issuer) => {
                    self.issuers.remove(&p);
                }
                _ => return Ok(0),
            }
        }
        let n = gave.len();
        self.issuers.insert(issuer, Issuer { gave });
        Ok(n)
    }

    /// Statements held.
    pub fn len(&self) -> usize {
        self.issuers.values().map(|i| i.gave.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// [`Graph::reputation`] of every peer in `peers` at once (each issuer's statements
    /// read once): the peers with any, and theirs.
    pub fn reputations(
        &self,
        peers: &std::collections::HashSet<PeerId>,
        direct: impl Fn(&PeerId) -> f64,
        now_ms: u64,
    ) -> HashMap<PeerId, f64> {
        let mut out = HashMap::new();
        for (k, i) in &self.issuers {
            let named: f64 = i.gave.values().map(|d| d.at(now_ms)).sum();
            let capacity = direct(k).max(0.0);
            if !(named > 0.0 && capacity > 0.0) {
                continue;
            }
            for (p, d) in &i.gave {
                if p == k || !peers.contains(p) {
                    continue;
                }
                let via = d.at(now_ms);
                if via > 0.0 {
                    *out.entry(*p).or_insert(0.0) += via.min(capacity * (via / named));
                }
            }
        }
        out
    }

    /// What `p` gave us through others: the flow from `p` to us over paths of two hops,
    /// `Σ_k min(c(p → k), c(k → us) · c(p → k) / Σ_q c(q → k))`, where `direct(k)` is
    /// `c(k → us)`, what `k` gave us first-hand. An issuer's capacity is shared among everyone
    /// it names, in proportion to what it says each gave: whatever `k` signs, all the peers
    /// it vouches for together get at most what `k` gave us (a contributor cannot hand full
    /// credit to a thousand identities of its own).
    pub fn reputation(&self, p: &PeerId, direct: impl Fn(&PeerId) -> f64, now_ms: u64) -> f64 {
        let one = std::iter::once(*p).collect();
        self.reputations(&one, direct, now_ms)
            .get(p)
            .copied()
            .unwrap_or(0.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn say(key: &Keypair, rows: &[(PeerId, u64)], at_ms: u64) -> Signed {
        let rows = rows
            .iter()
            .map(|(p, b)| Statement {
                subject: p.to_string(),
                bytes: *b,
                at_ms,
            })
            .collect();
        Signed::sign(key, rows).unwrap()
    }

    /// Two colluders that credit each other with a terabyte gain no more than what the other
    /// gave us; an honest relay passes on what it really got, up to what it gave us.
    #[test]
    fn colluders_gain_no_more_than_maxflow_allows() {
        let now = 1_700_000_000_000;
        let (c1, c2, honest) = (
            Keypair::generate_ed25519(),
            Keypair::generate_ed25519(),
            Keypair::generate_ed25519(),
        );
        let (p1, p2, ph) = (
            c1.public().to_peer_id(),
            c2.public().to_peer_id(),
            honest.public().to_peer_id(),
        );
        let mut g = Graph::default();
        let tb = 1u64 << 40;
        // What each gave us first-hand.
        let direct = |k: &PeerId| {
            if *k == p2 {
                1000.0
            } else if *k == ph {
                200.0
            } else {
                0.0
            }
        };
        // C1 gave us nothing: its word is kept, and carries nothing.
        g.accept(&p1, &say(&c1, &[(p2, tb)], now), now, direct)
            .unwrap();
        g.accept(&p2, &say(&c2, &[(p1, tb)], now), now, direct)
            .unwrap();
        g.accept(&ph, &say(&honest, &[(p1, 300)], now), now, direct)
            .unwrap();
        let r = g.reputation(&p1, direct, now);
        assert_eq!(
            r,
            1000.0 + 200.0,
            "min(tb, 1000) via c2, min(300, 200) via the honest node"
        );
        // A batch sent by someone else than its signer, or tampered with, is refused.
        assert_eq!(
            g.accept(&p1, &say(&c2, &[(p1, tb)], now), now, direct),
            Err(Refused::NotIssuer)
        );
        let mut forged = say(&honest, &[(p1, 300)], now);
        forged.statements[0].bytes = tb;
        assert_eq!(g.accept(&ph, &forged, now, direct), Err(Refused::Signature));
        assert_eq!(g.reputation(&p1, direct, now), 1200.0);
        // C2 vouches for 64 identities of its own: together they get what C2 gave us.
        let sybils: Vec<PeerId> = (0..64).map(|_| PeerId::random()).collect();
        let rows: Vec<(PeerId, u64)> = sybils.iter().map(|p| (*p, tb)).collect();
        g.accept(&p2, &say(&c2, &rows, now), now, direct).unwrap();
        let total: f64 = sybils.iter().map(|p| g.reputation(p, direct, now)).sum();
        assert!((total - 1000.0).abs() < 1e-6, "{total}");
        // All at once: the sybils share C2's 1000; C1 keeps only what the honest node
        // passes on (C2 no longer names it).
        let all = g.reputations(&sybils.iter().copied().chain([p1]).collect(), direct, now);
        let shared: f64 = sybils.iter().filter_map(|p| all.get(p)).sum();
        assert!((shared - 1000.0).abs() < 1e-6, "{shared}");
        assert_eq!(all.get(&p1).copied(), Some(200.0));
    }

    /// A full graph keeps the issuers that gave us something: identities that gave nothing
    /// cannot push them out.
    #[test]
    fn issuers_that_gave_nothing_cannot_evict_ones_that_did() {
        let now = 1_700_000_000_000;
        let real = Keypair::generate_ed25519();
        let pr = real.public().to_peer_id();
        let subject = PeerId::random();
        let direct = |k: &PeerId| if *k == pr { 5000.0 } else { 0.0 };
        let mut g = Graph::default();
        g.accept(&pr, &say(&real, &[(subject, 1 << 20)], now), now, direct)
            .unwrap();
        for _ in 0..MAX_ISSUERS + 8 {
            let k = Keypair::generate_ed25519();
            let p = k.public().to_peer_id();
            let _ = g.accept(&p, &say(&k, &[(subject, 1 << 40)], now), now, direct);
        }
        assert_eq!(g.issuers.len(), MAX_ISSUERS);
        assert_eq!(g.reputation(&subject, direct, now), 5000.0);
    }
}
