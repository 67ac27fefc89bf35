//! Shared history, checked: signed statements of what others gave a node, relayed from node
//! to node, a bounded contribution graph built from them, and a peer's credit as the max flow
//! over that graph, both ways (after Feldman, Lai, Stoica and Chuang, EC 2004).
//!
//! **Statements.** A statement says "`subject` gave me `bytes` lately, as of `at_ms`" (the
//! issuer's decaying figure, [`crate::ledger::HALF_LIFE`]). A node signs its statements as one
//! batch with its libp2p key and the time it signed them (`issued_ms`), so a batch speaks
//! only for the node whose key signed it, and only for [`WINDOW_MS`] after it was signed
//! (three half-lives: by then what it says has decayed to an eighth).
//!
//! **History travels.** A node answers a request with its own batch and the batches of up to
//! [`MAX_RELAYED`] other issuers, as their issuers signed them ([`Graph::relay`]: the issuers
//! of its bounded graph, nearest first, so a node passes on the history that connects to its
//! own contributors, never a stranger's spam). A relayed batch is checked as an own one is:
//! a changed byte, a key that did not sign it, a subject that is not a peer ID, or a window
//! that ended long ago ([`Refused::Expired`]), and the batch is refused and the relayer
//! charged (an honest relayer checked it too, and relays a batch only while five minutes of
//! its window are left). What depends on the clocks costs no relayer: a batch dated ahead of
//! our clock, or whose window ended within the last ten minutes, is dropped without blame. A
//! copy older than the batch held from the same issuer changes nothing (honest relayers may
//! hold older copies).
//!
//! What a peer took through others counts only what it says it got (statements are signed by
//! those who received): a peer that publishes nothing, as kubo and Helia do, is charged what
//! it took from us first-hand only. That is the paper's trade-off: a peer that keeps quiet
//! about what it got denies credit to those that served it, and a contributor that does not
//! publish loses the credit of everything it gave through others, as every edge into a
//! peer's giving is signed by others and every edge into its taking by itself.
//!
//! **Credit.** The graph has an edge `subject → issuer` per statement and, first-hand, `k → us`
//! for what each peer `k` gave us (our own ledger, never a statement; statements about us are
//! ignored, our ledger knows better). What a peer gave through others is the max flow from
//! it to us over that graph, its own first-hand edge left out (that is counted apart, from
//! the ledger): what it gave others that they passed on to us, over any number of hops within
//! the bound ([`Graph::reputations`]). What it took through others is the flow the other way,
//! from us to it, over the same statements and `us → k` for what we sent `k`
//! ([`Graph::took`]): what we gave peers that gave it. An edge into an issuer carries no more
//! than that issuer can pass on towards us, so whatever a set of colluders sign about each
//! other, each of them gets at most the cut between the set and the honest nodes: what the
//! set gave honest nodes that reached us. (Each identity is bounded, not a crowd of them: a
//! contributor that vouches for identities of its own lends each of them up to what it gave
//! us, as in the paper; the service weight caps each peer, [`crate::incentives`].)
//!
//! **Bounds.** Input from peers, and what it may cost:
//!
//! | what | bound | why |
//! |---|---|---|
//! | statements in a batch | [`MAX_STATEMENTS`] (64) | a node's largest givers; more is refused |
//! | a batch's key, signature | 1 KiB each | Ed25519's are 36 and 64 bytes |
//! | a statement's subject | 128 bytes, and a peer ID | checked before base58 decoding, which is quadratic |
//! | batches in an answer | 1 own + [`MAX_RELAYED`] (15) | the answer's size is bounded by the codec too (`crate::history`) |
//! | issuers held | [`MAX_ISSUERS`] (256), one batch each (about 5 MiB at most, with RSA keys) | when full, the issuers the bounded graph uses stay, and of the rest the one with the narrowest path to us goes, unless the newcomer's is no wider; batches past their window expire |
//! | nodes in a computation | [`MAX_NODES`] (100), within [`MAX_HOPS`] (4) edges, [`MAX_VIA`] (16) brought in by one node | nearest first, and at each distance the widest path to us first, so claims of a terabyte rank no higher than what carried them |
//! | one flow | [`FLOW_WORK`] (100,000) edge visits | a lower bound past it, the safe side |
//!
//! A refresh (every 2 s) is at most 2 × 99 flows of 100,000 visits. Measured: 6.7 ms a
//! refresh for 4,030 statements from 256 issuers, one direction (`examples/reputation.rs`);
//! the worst case is some tens of milliseconds, a few percent of a core. Holding 256 issuers'
//! batches is at most about 5 MiB. The Sybil exposure is as small: a peer outside the bound
//! gets nothing through others, and one inside at most its cut.

use std::collections::{BinaryHeap, HashMap, HashSet};

use libp2p::{
    identity::{Keypair, PublicKey},
    PeerId,
};
use serde::{Deserialize, Serialize};

use crate::{ledger::Decaying, maxflow::FlowGraph};

/// Nodes (us included) a flow is computed over.
pub const MAX_NODES: usize = 100;
/// Edges between a peer and us that a flow may take.
pub const MAX_HOPS: usize = 4;
/// Peers one node brings into the bounded graph (its best-reaching ones).
pub const MAX_VIA: usize = 16;
/// Edge visits one peer's flow may take (see [`crate::maxflow::FlowGraph::max_flow`]).
pub const FLOW_WORK: u64 = 100_000;

/// Statements in one batch (a node's largest givers).
pub const MAX_STATEMENTS: usize = 64;
/// Issuers whose batches are kept.
pub const MAX_ISSUERS: usize = 256;
/// Batches of other issuers relayed in one answer.
pub const MAX_RELAYED: usize = 15;
/// How long a batch counts after its issuer signed it.
pub const WINDOW_MS: u64 = 30 * 60 * 1000;
/// How far our clock and an issuer's may disagree.
const CLOCK_SKEW_MS: u64 = 60_000;
/// The longest key or signature taken.
const MAX_KEY: usize = 1024;
/// How long after its window a batch is refused without blame ([`Refused::Late`]).
const LATE_GRACE_MS: u64 = 10 * 60 * 1000;
/// The longest subject taken (a peer ID in base58 is 46 or 52 characters).
const MAX_SUBJECT: usize = 128;
/// A batch is relayed only while this much of its window is left, so that a relayer whose
/// clock or answer is a little late is not charged for passing on a batch that expired on
/// the way.
const RELAY_MARGIN_MS: u64 = 5 * 60 * 1000;
/// What is signed ahead of the statements, so a signature means nothing anywhere else.
const DOMAIN: &[u8] = b"/cairn/history/2.0.0 statements\0";

/// "`subject` gave me `bytes` lately, as of `at_ms`."
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Statement {
    pub subject: String,
    pub bytes: u64,
    pub at_ms: u64,
}

/// A batch of statements and its issuer's signature.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Signed {
    /// The issuer's public key (libp2p protobuf encoding); the issuer is its peer ID.
    pub key: Vec<u8>,
    /// When the issuer signed it (ms since the epoch): it counts for [`WINDOW_MS`] from then,
    /// and a newer batch of the same issuer replaces an older one, never the reverse.
    pub issued_ms: u64,
    pub statements: Vec<Statement>,
    pub signature: Vec<u8>,
}

fn signing_bytes(issued_ms: u64, statements: &[Statement]) -> Vec<u8> {
    let mut b = DOMAIN.to_vec();
    b.extend_from_slice(&issued_ms.to_be_bytes());
    for s in statements {
        b.extend_from_slice(&(s.subject.len() as u32).to_be_bytes());
        b.extend_from_slice(s.subject.as_bytes());
        b.extend_from_slice(&s.bytes.to_be_bytes());
        b.extend_from_slice(&s.at_ms.to_be_bytes());
    }
    b
}

impl Signed {
    /// Signs `statements` (at most [`MAX_STATEMENTS`] are kept) with `key`, as of `issued_ms`.
    pub fn sign(key: &Keypair, issued_ms: u64, mut statements: Vec<Statement>) -> Option<Signed> {
        statements.truncate(MAX_STATEMENTS);
        let signature = key.sign(&signing_bytes(issued_ms, &statements)).ok()?;
        Some(Signed {
            key: key.public().encode_protobuf(),
            issued_ms,
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

/// Why a batch was refused (each costs whoever sent it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("the signature does not hold")]
    Signature,
    #[error("signed by another node than the one that sent it")]
    NotIssuer,
    #[error("more than {MAX_STATEMENTS} statements")]
    TooMany,
    #[error("a subject that is not a peer ID")]
    Subject,
    #[error("its window ended more than {} minutes ago", LATE_GRACE_MS / 60_000)]
    Expired,
    /// Its window ended lately: a relayer whose clock is behind ours may send it honestly.
    #[error("its window ended lately")]
    Late,
    #[error("signed in the future")]
    Future,
}

impl Refused {
    /// Whether the refusal costs whoever sent the batch: a refusal that depends on the
    /// clocks never costs a relayer (its clock, and the issuer's, may differ from ours), nor
    /// a window that ended lately anyone (an answer may be late); the rest, forgeries, do.
    pub fn charged(self, relayed: bool) -> bool {
        match self {
            Refused::Late => false,
            Refused::Future => !relayed,
            _ => true,
        }
    }
}

struct Issuer {
    gave: HashMap<PeerId, Decaying>,
    /// As signed, to relay.
    batch: Signed,
}

/// What cairn nodes said others gave them.
#[derive(Default)]
pub struct Graph {
    /// Our own peer ID: statements about us, and our own batch relayed back, are ignored.
    me: Option<PeerId>,
    issuers: HashMap<PeerId, Issuer>,
}

/// Edges into each node: `into[b]` holds `(a, c)` for each edge `a → b` of capacity `c`.
type Into = HashMap<PeerId, Vec<(PeerId, f64)>>;

/// How the issuers held rank, when the graph is full: each node's widest path to us, and
/// the nodes a computation uses.
struct Ranking {
    reach: HashMap<PeerId, f64>,
    used: HashSet<PeerId>,
}

impl Graph {
    /// The graph of the node `me`.
    pub fn new(me: PeerId) -> Graph {
        Graph {
            me: Some(me),
            issuers: HashMap::new(),
        }
    }

    /// Takes `from`'s own batch, replacing an older one of `from`'s. `direct(k)` is what `k`
    /// gave us first-hand. Returns the statements taken (0 when the batch is no newer than
    /// the one held, or the graph is full of issuers that reach us better).
    pub fn accept(
        &mut self,
        from: &PeerId,
        batch: &Signed,
        now_ms: u64,
        direct: impl Fn(&PeerId) -> f64,
    ) -> Result<usize, Refused> {
        // The cheap checks first: the key must be the sender's own before any signature
        // arithmetic is done on it.
        if batch.statements.len() > MAX_STATEMENTS {
            return Err(Refused::TooMany);
        }
        if batch.key.len() > MAX_KEY || batch.signature.len() > MAX_KEY {
            return Err(Refused::Signature);
        }
        match issuer(batch) {
            Some(named) if named == *from => {}
            Some(_) => return Err(Refused::NotIssuer),
            None => return Err(Refused::Signature),
        }
        let (issuer, gave) = check(batch, now_ms)?;
        Ok(self.store(issuer, gave, batch, now_ms, &direct, &mut None))
    }

    /// Takes batches `from` relayed (each checked as its issuer's own), in order. Returns the
    /// statements taken, and why each refused batch was refused.
    pub fn accept_relayed(
        &mut self,
        batches: &[Signed],
        now_ms: u64,
        direct: impl Fn(&PeerId) -> f64,
    ) -> (usize, Vec<Refused>) {
        let (mut taken, mut refused) = (0, Vec::new());
        // The ranking, computed once for the whole answer if the graph is full.
        let mut reach = None;
        for batch in batches {
            match check(batch, now_ms) {
                Ok((issuer, gave)) => {
                    taken += self.store(issuer, gave, batch, now_ms, &direct, &mut reach)
                }
                Err(e) => refused.push(e),
            }
        }
        (taken, refused)
    }

    /// Keeps `batch` of `issuer` unless ours, no newer than the one held, or the graph is full
    /// of issuers with wider paths to us than its.
    fn store(
        &mut self,
        issuer: PeerId,
        gave: HashMap<PeerId, Decaying>,
        batch: &Signed,
        now_ms: u64,
        direct: &impl Fn(&PeerId) -> f64,
        reach: &mut Option<Ranking>,
    ) -> usize {
        if Some(issuer) == self.me {
            return 0;
        }
        match self.issuers.get(&issuer) {
            Some(held) if held.batch.issued_ms >= batch.issued_ms => return 0,
            Some(_) => {}
            None if self.issuers.len() >= MAX_ISSUERS => {
                // Full: the issuers a computation uses (the bounded graph: at most MAX_NODES,
                // MAX_VIA brought in by any one node) stay; of the others, the one with the
                // narrowest path to us goes (the one signed longest ago among equals),
                // unless the newcomer's is no wider: a crowd of identities that reach us
                // through nobody cannot push out one that does, and the identities one
                // contributor vouches for cannot push out the graph others make.
                let rank = reach.get_or_insert_with(|| Ranking {
                    reach: self.reach(direct, now_ms),
                    used: bounded(&self.edges(now_ms, false), direct)
                        .1
                        .into_keys()
                        .collect(),
                });
                let wide = |k: &PeerId| rank.reach.get(k).copied().unwrap_or(0.0).max(direct(k));
                let least = self
                    .issuers
                    .iter()
                    .filter(|(k, _)| !rank.used.contains(*k))
                    .map(|(k, i)| (wide(k), i.batch.issued_ms.min(now_ms), *k))
                    .min_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
                match least {
                    Some((w, _, k)) if w < wide(&issuer) => {
                        self.issuers.remove(&k);
                    }
                    _ => return 0,
                }
            }
            None => {}
        }
        // The paths through the newcomer, one step on: a relayer sends a chain of issuers
        // nearest first, so each finds the one before it in place (a full recomputation
        // per batch would cost E log E each).
        if let Some(rank) = reach.as_mut() {
            let r = rank
                .reach
                .get(&issuer)
                .copied()
                .unwrap_or(0.0)
                .max(direct(&issuer));
            for (s, d) in &gave {
                let c = d.at(now_ms).min(r);
                let e = rank.reach.entry(*s).or_default();
                *e = e.max(c);
            }
        }
        let n = gave.len();
        self.issuers.insert(
            issuer,
            Issuer {
                gave,
                batch: batch.clone(),
            },
        );
        n
    }

    /// Forgets batches whose window has passed.
    pub fn expire(&mut self, now_ms: u64) {
        self.issuers
            .retain(|_, i| i.batch.issued_ms.saturating_add(WINDOW_MS) >= now_ms);
    }

    /// Statements held.
    pub fn len(&self) -> usize {
        self.issuers.values().map(|i| i.gave.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Issuers held.
    pub fn issuers(&self) -> usize {
        self.issuers.len()
    }

    /// The batches to relay: those of the first [`MAX_RELAYED`] issuers of the bounded graph
    /// (nearest us first, and at each distance the widest path to us first; none that does
    /// not reach us, and at most [`MAX_VIA`] brought in by any one node), with five minutes
    /// or more of their window left and none dated ahead of our clock.
    pub fn relay(&self, direct: impl Fn(&PeerId) -> f64, now_ms: u64) -> Vec<Signed> {
        let (_, index, _) = bounded(&self.edges(now_ms, false), &direct);
        let mut order: Vec<(usize, &Issuer)> = index
            .iter()
            .filter_map(|(k, n)| Some((*n, self.issuers.get(k)?)))
            .filter(|(_, i)| {
                i.batch.issued_ms <= now_ms
                    && i.batch
                        .issued_ms
                        .saturating_add(WINDOW_MS - RELAY_MARGIN_MS)
                        >= now_ms
            })
            .collect();
        order.sort_by_key(|(n, _)| *n);
        order
            .into_iter()
            .take(MAX_RELAYED)
            .map(|(_, i)| i.batch.clone())
            .collect()
    }

    /// Every node's widest path to us: the most that could reach us from it along the graph
    /// (what `direct` says it gave us first-hand, or through the issuers that name it, each
    /// edge no wider than what its issuer can pass on). Each node is settled once, widest
    /// first: O(E log E) for the E statements held.
    fn reach(&self, direct: &impl Fn(&PeerId) -> f64, now_ms: u64) -> HashMap<PeerId, f64> {
        let mut best: HashMap<PeerId, f64> = HashMap::new();
        // Non-negative floats order as their bits do.
        let mut heap = BinaryHeap::new();
        for k in self.issuers.keys() {
            let d = direct(k);
            if d > 0.0 && d.is_finite() {
                best.insert(*k, d);
                heap.push((d.to_bits(), *k));
            }
        }
        while let Some((bits, x)) = heap.pop() {
            let r = f64::from_bits(bits);
            if best.get(&x).is_some_and(|b| *b > r) {
                continue;
            }
            let Some(i) = self.issuers.get(&x) else {
                continue;
            };
            for (s, d) in &i.gave {
                if Some(*s) == self.me {
                    continue;
                }
                let c = d.at(now_ms).min(r);
                if c > best.get(s).copied().unwrap_or(0.0) {
                    best.insert(*s, c);
                    heap.push((c.to_bits(), *s));
                }
            }
        }
        best
    }

    /// The statements as edges, `subject → issuer` (`reverse`: `issuer → subject`), by the
    /// node they go into. Statements about us are left out: our ledger knows better.
    fn edges(&self, now_ms: u64, reverse: bool) -> Into {
        let mut into: Into = HashMap::new();
        for (i, issuer) in &self.issuers {
            for (s, d) in &issuer.gave {
                let c = d.at(now_ms);
                if Some(*s) == self.me || c.is_nan() || c <= 0.0 {
                    continue;
                }
                if reverse {
                    into.entry(*s).or_default().push((*i, c));
                } else {
                    into.entry(*i).or_default().push((*s, c));
                }
            }
        }
        into
    }

    /// What each peer in `peers` gave us through others: the max flow from it to us over the
    /// bounded graph, without its own first-hand edge (`direct(k)`, what `k` gave us
    /// first-hand, is the edge `k → us`; statements give every other edge). The peers that
    /// have any, and theirs.
    pub fn reputations(
        &self,
        peers: &HashSet<PeerId>,
        direct: impl Fn(&PeerId) -> f64,
        now_ms: u64,
    ) -> HashMap<PeerId, f64> {
        flows(&self.edges(now_ms, false), peers, &direct)
    }

    /// What each peer in `peers` took through others: the max flow from us to it (`sent(k)`,
    /// what we sent `k` first-hand, is the edge `us → k`; its own left out), over the same
    /// statements and bounds. The peers that have any, and theirs.
    pub fn took(
        &self,
        peers: &HashSet<PeerId>,
        sent: impl Fn(&PeerId) -> f64,
        now_ms: u64,
    ) -> HashMap<PeerId, f64> {
        // The flow from us to p is the flow from p to us with every edge turned round.
        flows(&self.edges(now_ms, true), peers, &sent)
    }

    /// [`Graph::reputations`] of one peer.
    pub fn reputation(&self, p: &PeerId, direct: impl Fn(&PeerId) -> f64, now_ms: u64) -> f64 {
        let one = std::iter::once(*p).collect();
        self.reputations(&one, direct, now_ms)
            .get(p)
            .copied()
            .unwrap_or(0.0)
    }
}

/// Checks `batch` on its own (size, key, signature, window, subjects): its issuer and what it
/// says each subject gave, decaying from when it said so. Statements about the issuer itself
/// are dropped.
fn check(batch: &Signed, now_ms: u64) -> Result<(PeerId, HashMap<PeerId, Decaying>), Refused> {
    if batch.statements.len() > MAX_STATEMENTS {
        return Err(Refused::TooMany);
    }
    if batch.key.len() > MAX_KEY || batch.signature.len() > MAX_KEY {
        return Err(Refused::Signature);
    }
    let key = PublicKey::try_decode_protobuf(&batch.key).map_err(|_| Refused::Signature)?;
    if !key.verify(
        &signing_bytes(batch.issued_ms, &batch.statements),
        &batch.signature,
    ) {
        return Err(Refused::Signature);
    }
    if batch.issued_ms > now_ms.saturating_add(CLOCK_SKEW_MS) {
        return Err(Refused::Future);
    }
    let ends = batch.issued_ms.saturating_add(WINDOW_MS);
    if ends < now_ms {
        return Err(if ends.saturating_add(LATE_GRACE_MS) < now_ms {
            Refused::Expired
        } else {
            Refused::Late
        });
    }
    let issuer = key.to_peer_id();
    let mut gave = HashMap::new();
    for s in &batch.statements {
        // Checked before parsing: base58 decoding is quadratic in the length.
        if s.subject.len() > MAX_SUBJECT {
            return Err(Refused::Subject);
        }
        let subject = s.subject.parse::<PeerId>().map_err(|_| Refused::Subject)?;
        if subject == issuer || s.at_ms > batch.issued_ms {
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
    Ok((issuer, gave))
}

/// The max flow from each of `peers` to us (node 0) over the bounded graph of `into`, each
/// without its own edge to us.
fn flows(
    into: &Into,
    peers: &HashSet<PeerId>,
    direct: &impl Fn(&PeerId) -> f64,
) -> HashMap<PeerId, f64> {
    let (graph, index, to_us) = bounded(into, direct);
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

/// The nodes within [`MAX_HOPS`] of us (node 0), at most [`MAX_NODES`], breadth first and at
/// each distance those with the widest path to us first (at most [`MAX_VIA`] brought in by
/// any one node); their edges; and each node's first-hand edge to us, if it has one.
fn bounded(
    into: &Into,
    direct: &impl Fn(&PeerId) -> f64,
) -> (FlowGraph, HashMap<PeerId, usize>, Vec<Option<usize>>) {
    let mut index: HashMap<PeerId, usize> = HashMap::new();
    let mut order: Vec<PeerId> = Vec::new();
    // Distance 1: whoever has an edge to us and edges into it (one with none can only carry
    // its own flow, and its own edge is counted apart).
    let mut frontier: Vec<(f64, PeerId)> = into
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
            if let Some(edges) = into.get(&p) {
                // Ranked by what could reach us through `p` (the edge, but no more than
                // reached `p`), and at most MAX_VIA of them: one node's say cannot fill the
                // bound with identities of its choosing.
                let mut named: Vec<(f64, PeerId)> = edges
                    .iter()
                    .map(|(s, c)| (c.min(reach), *s))
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
        for (s, c) in into.get(p).into_iter().flatten() {
            if let Some(&j) = index.get(s) {
                g.add_edge(j, i, *c);
            }
        }
    }
    (g, index, to_us)
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
        Signed::sign(key, at_ms, rows).unwrap()
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
        // (A newer batch of C2's: one signed no later than the one held changes nothing.)
        assert_eq!(g.accept(&p2, &say(&c2, &rows, now), now, direct), Ok(0));
        g.accept(&p2, &say(&c2, &rows, now + 1), now, direct)
            .unwrap();
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

    /// History travels: a node that talks only to its contributor K1 credits a newcomer
    /// three hops out (newcomer -> K2 -> K1 -> us) once K1 relays K2's batch, signed by K2;
    /// without the relayed batch, nothing.
    #[test]
    fn relayed_history_credits_a_newcomer_three_hops_out() {
        let now = 1_700_000_000_000;
        let (k1, k2) = (Keypair::generate_ed25519(), Keypair::generate_ed25519());
        let (p1, p2) = (k1.public().to_peer_id(), k2.public().to_peer_id());
        let newcomer = PeerId::random();
        let direct = |k: &PeerId| if *k == p1 { 4000.0 } else { 0.0 };
        let mut g = Graph::new(PeerId::random());
        g.accept(&p1, &say(&k1, &[(p2, 3000)], now), now, direct)
            .unwrap();
        assert_eq!(g.reputation(&newcomer, direct, now), 0.0);
        // K1 relays K2's batch (K2 reaches us through K1, so K1 does).
        let k2_says = say(&k2, &[(newcomer, 1000)], now);
        let (n, refused) = g.accept_relayed(std::slice::from_ref(&k2_says), now, direct);
        assert_eq!((n, refused), (1, vec![]));
        assert_eq!(g.reputation(&newcomer, direct, now), 1000.0);
        // And we relay it on, as signed.
        assert!(g.relay(direct, now).contains(&k2_says));
    }

    /// A relayed batch with a changed byte, a key that did not sign it, a window that has
    /// passed or not begun, or a subject that is not a peer ID is refused (and its relayer
    /// charged, by the engine, for each); an older copy than the one held changes nothing.
    #[test]
    fn forged_expired_and_replayed_relays_are_refused() {
        let now = 1_700_000_000_000;
        let (k1, k2, k3) = (
            Keypair::generate_ed25519(),
            Keypair::generate_ed25519(),
            Keypair::generate_ed25519(),
        );
        let p1 = k1.public().to_peer_id();
        let newcomer = PeerId::random();
        let direct = |k: &PeerId| if *k == p1 { 4000.0 } else { 0.0 };
        let mut g = Graph::new(PeerId::random());
        let p2 = k2.public().to_peer_id();
        g.accept(&p1, &say(&k1, &[(p2, 3000)], now), now, direct)
            .unwrap();
        let good = say(&k2, &[(newcomer, 1000)], now);
        let mut changed = good.clone();
        changed.statements[0].bytes = 1 << 40;
        let mut swapped = good.clone();
        swapped.key = k3.public().encode_protobuf();
        let expired = say(
            &k2,
            &[(newcomer, 1000)],
            now - WINDOW_MS - LATE_GRACE_MS - 1,
        );
        let late = say(&k2, &[(newcomer, 1000)], now - WINDOW_MS - 1);
        let future = say(&k2, &[(newcomer, 1000)], now + 2 * CLOCK_SKEW_MS);
        let not_a_peer = Signed::sign(
            &k2,
            now,
            vec![Statement {
                subject: "x".repeat(200),
                bytes: 1,
                at_ms: now,
            }],
        )
        .unwrap();
        let (n, refused) = g.accept_relayed(
            &[
                changed.clone(),
                swapped,
                expired,
                late,
                future.clone(),
                not_a_peer.clone(),
            ],
            now,
            direct,
        );
        assert_eq!(n, 0);
        assert_eq!(
            refused,
            vec![
                Refused::Signature,
                Refused::Signature,
                Refused::Expired,
                Refused::Late,
                Refused::Future,
                Refused::Subject
            ]
        );
        // What depends on the clocks costs no relayer; forgeries, and a window long past, do.
        let charged: Vec<bool> = refused.iter().map(|e| e.charged(true)).collect();
        assert_eq!(charged, vec![true, true, true, false, false, true]);
        assert!(Refused::Future.charged(false));
        // Nor do we relay a batch dated ahead of our clock.
        let (p2, f2) = (k2.public().to_peer_id(), future);
        assert_eq!(g.accept(&p2, &f2, now + 2 * CLOCK_SKEW_MS, direct), Ok(1));
        assert!(!g.relay(direct, now).contains(&f2));
        assert!(g.relay(direct, now + 2 * CLOCK_SKEW_MS).contains(&f2));
        g.issuers.remove(&p2);
        assert_eq!(g.reputation(&newcomer, direct, now), 0.0);
        // The same checks hold for an own batch.
        assert_eq!(
            g.accept(&p2, &changed, now, direct),
            Err(Refused::Signature)
        );
        assert_eq!(
            g.accept(&p2, &not_a_peer, now, direct),
            Err(Refused::Subject)
        );
        // The good one is taken; an older copy of K2's (a replay) changes nothing, a newer
        // one replaces it.
        assert_eq!(g.accept_relayed(&[good], now, direct), (1, vec![]));
        let older = say(&k2, &[(newcomer, 3000)], now - 1000);
        assert_eq!(g.accept_relayed(&[older], now, direct), (0, vec![]));
        assert_eq!(g.reputation(&newcomer, direct, now), 1000.0);
        let newer = say(&k2, &[(newcomer, 2000)], now + 1000);
        assert_eq!(g.accept_relayed(&[newer], now + 1000, direct), (1, vec![]));
        assert_eq!(g.reputation(&newcomer, direct, now + 1000), 2000.0);
        // Past its window, a batch expires (K1's, signed a second before K2's newer one).
        g.expire(now + WINDOW_MS + 500);
        assert_eq!(g.issuers(), 1);
    }

    /// What a peer took through others is the flow from us to it: we sent K 1000, and P
    /// says K gave it 600: P took 600 through K; what we sent P ourselves is counted apart.
    #[test]
    fn what_a_peer_took_through_others_is_the_flow_from_us() {
        let now = 1_700_000_000_000;
        let me = PeerId::random();
        let (kp, kk) = (Keypair::generate_ed25519(), Keypair::generate_ed25519());
        let (p, k) = (kp.public().to_peer_id(), kk.public().to_peer_id());
        let sent = |x: &PeerId| {
            if *x == k {
                1000.0
            } else if *x == p {
                5000.0
            } else {
                0.0
            }
        };
        let mut g = Graph::new(me);
        g.accept(&p, &say(&kp, &[(k, 600), (me, 1 << 40)], now), now, |_| 0.0)
            .unwrap();
        let both: HashSet<PeerId> = [p, k].into_iter().collect();
        let took = g.took(&both, sent, now);
        assert_eq!(took.get(&p).copied(), Some(600.0));
        assert_eq!(took.get(&k), None);
        // Nothing of it counts as given: K gave us nothing.
        assert!(g.reputations(&both, |_| 0.0, now).is_empty());
    }

    /// We relay the batches of the issuers that reach us best, at most MAX_RELAYED, and none
    /// of an issuer that reaches us through nobody; when full, an issuer with a wider path
    /// to us pushes out the narrowest.
    #[test]
    fn relays_and_room_go_to_issuers_that_reach_us() {
        let now = 1_700_000_000_000;
        let keys: Vec<Keypair> = (0..40).map(|_| Keypair::generate_ed25519()).collect();
        let ids: Vec<PeerId> = keys.iter().map(|k| k.public().to_peer_id()).collect();
        // ids[i] gave us 100 (i + 1) for the first 20; the rest gave nothing.
        let direct = |k: &PeerId| {
            ids.iter()
                .position(|x| x == k)
                .filter(|i| *i < 20)
                .map_or(0.0, |i| 100.0 * (i + 1) as f64)
        };
        let mut g = Graph::new(PeerId::random());
        for (k, p) in keys.iter().zip(&ids) {
            g.accept(p, &say(k, &[(PeerId::random(), 10)], now), now, direct)
                .unwrap();
        }
        let relayed = g.relay(direct, now);
        assert_eq!(relayed.len(), MAX_RELAYED);
        let from: Vec<PeerId> = relayed.iter().filter_map(issuer).collect();
        assert_eq!(from, ids[5..20].iter().rev().copied().collect::<Vec<_>>());
        // Fill the graph with issuers that reach us through nobody; then one named by our
        // best contributor takes the place of one of them, and one named by nobody does not.
        let mut g = Graph::new(PeerId::random());
        let vouched = Keypair::generate_ed25519();
        let pv = vouched.public().to_peer_id();
        g.accept(&ids[19], &say(&keys[19], &[(pv, 500)], now), now, direct)
            .unwrap();
        while g.issuers() < MAX_ISSUERS {
            let k = Keypair::generate_ed25519();
            let _ = g.accept_relayed(&[say(&k, &[], now)], now, direct);
        }
        let nobody = Keypair::generate_ed25519();
        let batch = say(&nobody, &[(PeerId::random(), 1 << 30)], now);
        assert_eq!(g.accept_relayed(&[batch], now, direct), (0, vec![]));
        let batch = say(&vouched, &[(PeerId::random(), 300)], now);
        assert_eq!(g.accept_relayed(&[batch], now, direct), (1, vec![]));
        assert_eq!(g.issuers(), MAX_ISSUERS);
        assert!(g.issuers.contains_key(&pv) && g.issuers.contains_key(&ids[19]));
        // A chain relayed nearest first enters whole: the second finds the first in place.
        let (c1, c2) = (Keypair::generate_ed25519(), Keypair::generate_ed25519());
        let p2 = c2.public().to_peer_id();
        g.accept(
            &ids[19],
            &say(
                &keys[19],
                &[(pv, 500), (c1.public().to_peer_id(), 400)],
                now + 1,
            ),
            now,
            direct,
        )
        .unwrap();
        let chain = [
            say(&c1, &[(p2, 300)], now),
            say(&c2, &[(PeerId::random(), 100)], now),
        ];
        assert_eq!(g.accept_relayed(&chain, now, direct), (2, vec![]));
        assert!(g.issuers.contains_key(&p2));
    }
}
