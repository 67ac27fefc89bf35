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
//! each peer `k` gave us (our own ledger, never a statement). A peer's reputation is the max
//! flow from it to us over that graph, its own first-hand edge left out (that is counted
//! apart, from the ledger): what it gave others that they passed on to us, over any number
//! of hops within the bound ([`Graph::reputations`]). An edge into an issuer carries no more
//! than that issuer can pass on towards us, so whatever a set of colluders sign about each
//! other, each of them gets at most the cut between the set and the honest nodes: what the
//! set gave honest nodes that reached us. (Each identity is bounded, not a crowd of them: a
//! contributor that vouches for identities of its own lends each of them up to what it gave
//! us, as in the paper; the service weight caps each peer, [`crate::incentives`].)
//!
//! The graph is bounded: [`MAX_ISSUERS`] issuers (when full, the one that gave us least goes,
//! never for one that gave no more), [`MAX_STATEMENTS`] statements each. A computation takes
//! the nodes that reach us within [`MAX_HOPS`] edges, at most [`MAX_NODES`] (nearest first,
//! and at each distance those with the widest path to us first, so that claims of a
//! terabyte rank no higher than what carried them; at most [`MAX_VIA`] brought in by any
//! one issuer), and each peer's flow stops after [`FLOW_WORK`] edge visits (a lower bound
//! then): at most 99 runs of 100,000 visits every refresh (2 s). Measured: 6.7 ms a refresh
//! for 4,030 statements from 256 issuers (`examples/reputation.rs`); the worst case is some
//! tens of milliseconds, a few percent of a core. The Sybil exposure is as small: a peer
//! outside the bound gets nothing through others, and one inside at most its cut.

use std::collections::HashMap;

use libp2p::{
    identity::{Keypair, PublicKey},
    PeerId,
};
use serde::{Deserialize, Serialize};

use crate::{ledger::Decaying, maxflow::FlowGraph};

/// Nodes (us included) a reputation is computed over.
pub const MAX_NODES: usize = 100;
/// Edges between a peer and us that a flow may take.
pub const MAX_HOPS: usize = 4;
/// Peers one issuer brings into the bounded graph (its best-reaching ones).
pub const MAX_VIA: usize = 16;
/// Edge visits one peer's flow may take (see [`crate::maxflow::FlowGraph::max_flow`]).
pub const FLOW_WORK: u64 = 100_000;

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

    /// [`Graph::reputation`] of every peer in `peers` at once (one bounded graph, one flow
    /// per peer in it): the peers that have any, and theirs.
    pub fn reputations(
        &self,
        peers: &std::collections::HashSet<PeerId>,
        direct: impl Fn(&PeerId) -> f64,
        now_ms: u64,
    ) -> HashMap<PeerId, f64> {
        let (graph, index, to_us) = self.bounded(&direct, now_ms);
        let mut out = HashMap::new();
        for p in peers {
            let Some(&i) = index.get(p) else { continue };
            let mut g = graph.clone();
            if let Some(e) = to_us[i] {
                g.remove_edge(e);
            }
            let f = g.max_flow(i, 0, FLOW_WORK);
            if f > 0.0 {
                out.insert(*p, f);
            }
        }
        out
    }

    /// The nodes within [`MAX_HOPS`] of us (node 0), at most [`MAX_NODES`], breadth first and
    /// at each distance those with the most to pass on first; their edges; and each node's
    /// first-hand edge to us, if it has one.
    fn bounded(
        &self,
        direct: &impl Fn(&PeerId) -> f64,
        now_ms: u64,
    ) -> (FlowGraph, HashMap<PeerId, usize>, Vec<Option<usize>>) {
        let mut index: HashMap<PeerId, usize> = HashMap::new();
        let mut order: Vec<PeerId> = Vec::new();
        // Distance 1: whoever gave us something (issuers, and who we only know first-hand
        // but is named by an issuer, found below).
        let mut frontier: Vec<(f64, PeerId)> = self
            .issuers
            .keys()
            .map(|k| (direct(k), *k))
            .filter(|(d, _)| *d > 0.0)
            .collect();
        for _ in 0..MAX_HOPS {
            frontier.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
            let mut next: HashMap<PeerId, f64> = HashMap::new();
            for (reach, p) in frontier.drain(..) {
                if index.contains_key(&p) {
                    continue;
                }
                if order.len() + 1 >= MAX_NODES {
                    break;
                }
                index.insert(p, order.len() + 1);
                order.push(p);
                if let Some(i) = self.issuers.get(&p) {
                    // Ranked by what could reach us through `p` (its claim, but no more than
                    // reached `p`), and at most MAX_VIA of them: an issuer's own say cannot
                    // fill the bound with identities of its choosing.
                    let mut named: Vec<(f64, PeerId)> = i
                        .gave
                        .iter()
                        .map(|(s, d)| (d.at(now_ms).min(reach), *s))
                        .filter(|(c, s)| *c > 0.0 && !index.contains_key(s))
                        .collect();
                    named.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
                    for (c, s) in named.into_iter().take(MAX_VIA) {
                        let e = next.entry(s).or_default();
                        *e = e.max(c);
                    }
                }
            }
            frontier = next.into_iter().map(|(p, c)| (c, p)).collect();
            if frontier.is_empty() || order.len() + 1 >= MAX_NODES {
                break;
            }
        }
        let mut g = FlowGraph::new(order.len() + 1);
        let mut to_us = vec![None; order.len() + 1];
        for (n, p) in order.iter().enumerate() {
            let i = n + 1;
            to_us[i] = g.add_edge(i, 0, direct(p));
            if let Some(issuer) = self.issuers.get(p) {
                for (s, d) in &issuer.gave {
                    if let Some(&j) = index.get(s) {
                        g.add_edge(j, i, d.at(now_ms));
                    }
                }
            }
        }
        (g, index, to_us)
    }

    /// What `p` gave us through others: the max flow from `p` to us over the bounded graph,
    /// without `p`'s own first-hand edge (`direct(k)` is `c(k → us)`, what `k` gave us
    /// first-hand; statements give every other edge).
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
        // C2 vouches for 64 identities of its own instead: at most MAX_VIA of them enter the
        // graph, and each gets at most the colluders' cut, what C2 gave us and what C1 (to
        // whom C1 says C2 gave a terabyte) gave the honest node that reached us: 1000 + 200.
        let sybils: Vec<PeerId> = (0..64).map(|_| PeerId::random()).collect();
        let rows: Vec<(PeerId, u64)> = sybils.iter().map(|p| (*p, tb)).collect();
        g.accept(&p2, &say(&c2, &rows, now), now, direct).unwrap();
        let each: Vec<f64> = sybils
            .iter()
            .map(|p| g.reputation(p, direct, now))
            .collect();
        assert!(each.iter().all(|r| *r == 0.0 || *r == 1200.0), "{each:?}");
        assert_eq!(each.iter().filter(|r| **r > 0.0).count(), MAX_VIA);
        // All at once, the same; C1 keeps only what the honest node passes on (C2 no longer
        // names it).
        let all = g.reputations(&sybils.iter().copied().chain([p1]).collect(), direct, now);
        let credited: Vec<f64> = sybils.iter().filter_map(|p| all.get(p).copied()).collect();
        assert_eq!(credited, vec![1200.0; MAX_VIA], "{all:?}");
        assert_eq!(all.get(&p1).copied(), Some(200.0));
    }

    /// An honest newcomer vouched for over three hops gets credit (the two-hop rule gave it
    /// none: the node that names it gave us nothing first-hand); past [`MAX_HOPS`], none.
    #[test]
    fn a_newcomer_is_credited_along_a_chain_of_contributors() {
        let now = 1_700_000_000_000;
        let keys: Vec<Keypair> = (0..6).map(|_| Keypair::generate_ed25519()).collect();
        let ids: Vec<PeerId> = keys.iter().map(|k| k.public().to_peer_id()).collect();
        // ids[0] gave us 2000; ids[i] says ids[i + 1] gave it 1000 - 100 i.
        let direct = |k: &PeerId| if *k == ids[0] { 2000.0 } else { 0.0 };
        let mut g = Graph::default();
        let newcomer = PeerId::random();
        for i in 0..5 {
            let mut rows = vec![(ids[i + 1], 1000 - 100 * i as u64)];
            if i == 1 {
                // ids[1] also says the newcomer gave it 500.
                rows.push((newcomer, 500));
            }
            g.accept(&ids[i], &say(&keys[i], &rows, now), now, direct)
                .unwrap();
        }
        // What ids[0] gave us is first-hand, counted apart: nothing through others.
        assert_eq!(g.reputation(&ids[0], direct, now), 0.0);
        // newcomer -> ids[1] -> ids[0] -> us: min(500, 1000, 2000).
        assert_eq!(g.reputation(&newcomer, direct, now), 500.0);
        // ids[1] gave ids[0] 1000 and ids[0] passed it on: 1000.
        assert_eq!(g.reputation(&ids[1], direct, now), 1000.0);
        // ids[3] is four edges from us: min(800, 900, 1000, 2000); ids[4], five edges away,
        // is outside the bound.
        assert_eq!(g.reputation(&ids[3], direct, now), 800.0);
        assert_eq!(g.reputation(&ids[4], direct, now), 0.0);
        assert_eq!(g.reputation(&ids[5], direct, now), 0.0);
    }

    /// A clique of 10 identities signing terabytes about each other, with one thin edge to
    /// an honest node (it says one of them gave it 100 bytes), gets no more than that edge:
    /// each of them at most 100.
    #[test]
    fn a_clique_of_colluders_gets_no_more_than_its_cut() {
        let now = 1_700_000_000_000;
        let clique: Vec<Keypair> = (0..10).map(|_| Keypair::generate_ed25519()).collect();
        let ids: Vec<PeerId> = clique.iter().map(|k| k.public().to_peer_id()).collect();
        let honest = Keypair::generate_ed25519();
        let ph = honest.public().to_peer_id();
        let direct = |k: &PeerId| if *k == ph { 10_000.0 } else { 0.0 };
        let mut g = Graph::default();
        g.accept(&ph, &say(&honest, &[(ids[0], 100)], now), now, direct)
            .unwrap();
        for (k, p) in clique.iter().zip(&ids) {
            let rows: Vec<(PeerId, u64)> = ids
                .iter()
                .filter(|q| *q != p)
                .map(|q| (*q, 1 << 40))
                .collect();
            g.accept(p, &say(k, &rows, now), now, direct).unwrap();
        }
        let all = g.reputations(&ids.iter().copied().collect(), direct, now);
        for p in &ids {
            let r = all.get(p).copied().unwrap_or(0.0);
            assert!(r <= 100.0 + 1e-6, "{p}: {r}");
        }
        assert_eq!(all.get(&ids[0]).copied(), Some(100.0));
        assert_eq!(all.get(&ids[5]).copied(), Some(100.0));
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
