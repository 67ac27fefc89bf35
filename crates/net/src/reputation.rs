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
//! flow it can push to us over two hops: `Σ_k min(c(p → k), c(k → us))`. Two colluders that
//! sign that they gave each other a terabyte gain at most what the other gave *us*: maxflow
//! caps what any set of liars can claim by what they gave honest nodes, which is what makes
//! the shared history safe to use. The graph is bounded: [`MAX_ISSUERS`] issuers (the one
//! heard from longest ago goes first), [`MAX_STATEMENTS`] statements each.

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
const DOMAIN: &[u8] = b"/cairn/ledger/1.0.0 statements\0";

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

    /// The issuer, if the signature holds.
    pub fn verify(&self) -> Option<PeerId> {
        let key = PublicKey::try_decode_protobuf(&self.key).ok()?;
        key.verify(&signing_bytes(&self.statements), &self.signature)
            .then(|| key.to_peer_id())
    }
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
    heard_ms: u64,
    gave: HashMap<PeerId, Decaying>,
}

/// What cairn nodes said others gave them.
#[derive(Default)]
pub struct Graph {
    issuers: HashMap<PeerId, Issuer>,
}

impl Graph {
    /// Takes `batch` from `from`, replacing what `from` said before. Statements about the
    /// issuer itself, about unparsable peers, or dated in the future are dropped.
    pub fn accept(&mut self, from: &PeerId, batch: &Signed, now_ms: u64) -> Result<usize, Refused> {
        if batch.statements.len() > MAX_STATEMENTS {
            return Err(Refused::TooMany);
        }
        let issuer = batch.verify().ok_or(Refused::Signature)?;
        if issuer != *from {
            return Err(Refused::NotIssuer);
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
            if let Some(old) = self
                .issuers
                .iter()
                .min_by_key(|(_, i)| i.heard_ms)
                .map(|(p, _)| *p)
            {
                self.issuers.remove(&old);
            }
        }
        let n = gave.len();
        self.issuers.insert(
            issuer,
            Issuer {
                heard_ms: now_ms,
                gave,
            },
        );
        Ok(n)
    }

    /// Statements held.
    pub fn len(&self) -> usize {
        self.issuers.values().map(|i| i.gave.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// What `p` gave us through others: the max flow from `p` to us over paths of two hops,
    /// `Σ_k min(c(p → k), c(k → us))`, where `direct(k)` is what `k` gave us (first-hand).
    pub fn reputation(&self, p: &PeerId, direct: impl Fn(&PeerId) -> f64, now_ms: u64) -> f64 {
        self.issuers
            .iter()
            .filter(|(k, _)| *k != p)
            .filter_map(|(k, i)| {
                let via = i.gave.get(p)?.at(now_ms);
                Some(via.min(direct(k).max(0.0)))
            })
            .sum()
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
        g.accept(&p1, &say(&c1, &[(p2, tb)], now), now).unwrap();
        g.accept(&p2, &say(&c2, &[(p1, tb)], now), now).unwrap();
        g.accept(&ph, &say(&honest, &[(p1, 300)], now), now)
            .unwrap();
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
        let r = g.reputation(&p1, direct, now);
        assert_eq!(
            r,
            1000.0 + 200.0,
            "min(tb, 1000) via c2, min(300, 200) via the honest node"
        );
        // A batch sent by someone else than its signer, or tampered with, is refused.
        assert_eq!(
            g.accept(&p1, &say(&c2, &[(p1, tb)], now), now),
            Err(Refused::NotIssuer)
        );
        let mut forged = say(&honest, &[(p1, 300)], now);
        forged.statements[0].bytes = tb;
        assert_eq!(g.accept(&ph, &forged, now), Err(Refused::Signature));
        assert_eq!(g.reputation(&p1, direct, now), 1200.0);
    }
}
