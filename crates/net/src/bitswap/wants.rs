//! The client side of Bitswap, as a state machine with no I/O: what we want, whom we asked,
//! and whom to ask next. The engine feeds it events and carries out the [`Action`]s it
//! returns, which keeps the policy testable on its own.
//!
//! For each wanted block:
//! 1. If some peer is likely to have it, send that peer a want-block: the peer that sent us
//!    the block linking to it (the design's optimistic ask: who has a block has its
//!    children), peers that delivered blocks in the last seconds (the session), peers that
//!    said HAVE, and peers found by mDNS (asked for anything); among them, the one with the
//!    fewest want-blocks outstanding, so a DAG comes from several peers at once.
//! 2. Otherwise, and whenever the want-block fails (DONT_HAVE, or no answer within
//!    [`BLOCK_WAIT`]), broadcast want-have with send-dont-have to the connected peers not
//!    asked yet; a HAVE then gets a want-block.
//! 3. If no peer has it after the first broadcast, look for providers on the DHT, and again
//!    every [`SEARCH_AGAIN`]; providers count as peers that said HAVE.
//! 4. When it arrives, every peer still asked gets a cancel; when nobody waits any more
//!    (the last deadline passed), likewise.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    time::{Duration, Instant},
};

use bytes::Bytes;
use cairn_store::Cid;
use libp2p::PeerId;
use multihash::Multihash;

use super::wire::WantType;

/// Wants are keyed by multihash: a CIDv0 and a CIDv1 of one block are one want.
pub type Key = Multihash<64>;

/// How long a want-block may go unanswered before another peer is asked.
pub const BLOCK_WAIT: Duration = Duration::from_secs(3);
/// A peer that delivered a block this recently is asked first for the next ones.
pub const SESSION: Duration = Duration::from_secs(10);
/// How often providers are looked for again while a block is missing.
pub const SEARCH_AGAIN: Duration = Duration::from_secs(10);
/// Delay before the DHT is asked, when the connected peers have not answered.
pub const SEARCH_AFTER: Duration = Duration::from_millis(500);
/// Blocks remembered as just received or given up (a late copy is a duplicate, not an
/// offence).
const RECENT: usize = 16384;
/// Children remembered with the peer that sent their parent.
const HINTS: usize = 65536;

/// Someone waiting for a block.
pub enum Waiter {
    /// A thread (a FUSE reader), with its own deadline.
    Sync(std::sync::mpsc::SyncSender<Bytes>),
    /// A task.
    Async(tokio::sync::oneshot::Sender<Bytes>),
}

impl Waiter {
    pub fn give(self, b: Bytes) {
        match self {
            Waiter::Sync(tx) => {
                let _ = tx.try_send(b);
            }
            Waiter::Async(tx) => {
                let _ = tx.send(b);
            }
        }
    }
}

/// What the engine must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Want {
        peer: PeerId,
        cid: Cid,
        want_type: WantType,
    },
    Cancel {
        peer: PeerId,
        cid: Cid,
    },
    FindProviders(Key),
}

struct Want {
    cid: Cid,
    waiters: Vec<Waiter>,
    until: Instant,
    /// The want-block outstanding, and since when.
    block_from: Option<(PeerId, Instant)>,
    /// Peers sent a want (either kind).
    asked: HashSet<PeerId>,
    haves: Vec<PeerId>,
    dont_haves: HashSet<PeerId>,
    broadcasts: u32,
    first_broadcast: Option<Instant>,
    next_broadcast: Instant,
    searched: Option<Instant>,
}

/// Whether to ask the DHT for providers of `w` now: first once the connected peers have had
/// [`SEARCH_AFTER`] to answer a broadcast (at once when there are none), then every
/// [`SEARCH_AGAIN`].
fn search_due(w: &Want, no_peers: bool, now: Instant) -> bool {
    match w.searched {
        None => {
            no_peers
                || w.first_broadcast
                    .is_some_and(|t| now.duration_since(t) >= SEARCH_AFTER)
        }
        Some(t) => now.duration_since(t) >= SEARCH_AGAIN,
    }
}

#[derive(Default)]
struct Peer {
    /// Want-blocks we have outstanding with it.
    outstanding: usize,
    mdns: bool,
    last_delivery: Option<Instant>,
}

/// What a received block was.
#[derive(Debug, PartialEq, Eq)]
pub enum Received {
    /// Wanted: handed to its waiters. The engine stores it.
    Wanted,
    /// Already received, or given up on, recently: a copy that crossed a cancel.
    Duplicate,
    /// Never asked for.
    Unwanted,
}

/// Every want, and what is known of the peers.
#[derive(Default)]
pub struct Wants {
    wants: HashMap<Key, Want>,
    peers: HashMap<PeerId, Peer>,
    hints: HashMap<Key, PeerId>,
    hint_order: VecDeque<Key>,
    recent: HashSet<Key>,
    recent_order: VecDeque<Key>,
}

impl Wants {
    pub fn len(&self) -> usize {
        self.wants.len()
    }

    pub fn is_empty(&self) -> bool {
        self.wants.is_empty()
    }

    pub fn is_wanted(&self, key: &Key) -> bool {
        self.wants.contains_key(key)
    }

    pub fn connected(&mut self, peer: PeerId, mdns: bool, now: Instant) -> Vec<Action> {
        let p = self.peers.entry(peer).or_default();
        p.mdns |= mdns;
        // A new peer hears of what we want now (as kubo does), and may be what we lacked.
        let keys: Vec<Key> = self.wants.keys().copied().collect();
        let mut out = Vec::new();
        for k in keys {
            self.plan(&k, now, &mut out);
        }
        out
    }

    pub fn disconnected(&mut self, peer: &PeerId, now: Instant) -> Vec<Action> {
        self.peers.remove(peer);
        let mut out = Vec::new();
        let keys: Vec<Key> = self
            .wants
            .iter_mut()
            .filter_map(|(k, w)| {
                w.asked.remove(peer);
                w.haves.retain(|p| p != peer);
                (w.block_from.map(|(p, _)| p) == Some(*peer)).then(|| {
                    w.block_from = None;
                    *k
                })
            })
            .collect();
        for k in keys {
            self.plan(&k, now, &mut out);
        }
        out
    }

    /// Wants `cid` until `until` (extended if already wanted), for `waiter` if any.
    pub fn want(
        &mut self,
        cid: Cid,
        waiter: Option<Waiter>,
        until: Instant,
        now: Instant,
    ) -> Vec<Action> {
        let key = *cid.hash();
        let w = self.wants.entry(key).or_insert_with(|| Want {
            cid,
            waiters: Vec::new(),
            until,
            block_from: None,
            asked: HashSet::new(),
            haves: Vec::new(),
            dont_haves: HashSet::new(),
            broadcasts: 0,
            first_broadcast: None,
            next_broadcast: now,
            searched: None,
        });
        w.until = w.until.max(until);
        w.waiters.extend(waiter);
        let mut out = Vec::new();
        self.plan(&key, now, &mut out);
        out
    }

    pub fn have(&mut self, peer: PeerId, key: &Key, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        if let Some(w) = self.wants.get_mut(key) {
            if !w.haves.contains(&peer) {
                w.haves.push(peer);
            }
            self.plan(key, now, &mut out);
        }
        out
    }

    pub fn dont_have(&mut self, peer: PeerId, key: &Key, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        if let Some(w) = self.wants.get_mut(key) {
            w.dont_haves.insert(peer);
            w.haves.retain(|p| *p != peer);
            if w.block_from.map(|(p, _)| p) == Some(peer) {
                w.block_from = None;
                if let Some(p) = self.peers.get_mut(&peer) {
                    p.outstanding = p.outstanding.saturating_sub(1);
                }
            }
            self.plan(key, now, &mut out);
        }
        out
    }

    /// Providers found on the DHT: as good as a HAVE.
    pub fn providers(&mut self, key: &Key, peers: &[PeerId], now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        if let Some(w) = self.wants.get_mut(key) {
            for p in peers {
                if !w.haves.contains(p) && !w.dont_haves.contains(p) {
                    w.haves.push(*p);
                }
            }
            self.plan(key, now, &mut out);
        }
        out
    }

    /// A block `cid` arrived from `peer` (its bytes already hash to `cid`).
    pub fn block(
        &mut self,
        peer: PeerId,
        cid: &Cid,
        data: &Bytes,
        now: Instant,
        out: &mut Vec<Action>,
    ) -> Received {
        let key = *cid.hash();
        let Some(w) = self.wants.remove(&key) else {
            return if self.recent.contains(&key) {
                Received::Duplicate
            } else {
                Received::Unwanted
            };
        };
        for waiter in w.waiters {
            waiter.give(data.clone());
        }
        if let Some(p) = self.peers.get_mut(&peer) {
            p.last_delivery = Some(now);
        }
        self.finish(key, &w.cid, w.block_from, w.asked, Some(peer), out);
        Received::Wanted
    }

    /// Remembers that `peer` sent the block whose links these are.
    pub fn hint(&mut self, peer: PeerId, children: &[Cid]) {
        for c in children {
            let k = *c.hash();
            if self.hints.insert(k, peer).is_none() {
                self.hint_order.push_back(k);
            }
        }
        while self.hint_order.len() > HINTS {
            if let Some(k) = self.hint_order.pop_front() {
                self.hints.remove(&k);
            }
        }
    }

    /// Timeouts: want-blocks unanswered, broadcasts due, searches due, wants nobody waits for.
    pub fn tick(&mut self, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        let expired: Vec<Key> = self
            .wants
            .iter()
            .filter(|(_, w)| w.until <= now)
            .map(|(k, _)| *k)
            .collect();
        for key in expired {
            if let Some(w) = self.wants.remove(&key) {
                self.finish(key, &w.cid, w.block_from, w.asked, None, &mut out);
            }
        }
        let mut due = Vec::new();
        for (k, w) in &mut self.wants {
            if let Some((p, since)) = w.block_from {
                if now.duration_since(since) >= BLOCK_WAIT {
                    // No answer: as good as a DONT_HAVE (kubo does the same).
                    w.block_from = None;
                    w.dont_haves.insert(p);
                    if let Some(peer) = self.peers.get_mut(&p) {
                        peer.outstanding = peer.outstanding.saturating_sub(1);
                    }
                    due.push(*k);
                    continue;
                }
            }
            if w.block_from.is_none()
                && (now >= w.next_broadcast
                    || (w.haves.is_empty() && search_due(w, self.peers.is_empty(), now)))
            {
                due.push(*k);
            }
        }
        for k in due {
            self.plan(&k, now, &mut out);
        }
        out
    }

    fn finish(
        &mut self,
        key: Key,
        cid: &Cid,
        block_from: Option<(PeerId, Instant)>,
        asked: HashSet<PeerId>,
        from: Option<PeerId>,
        out: &mut Vec<Action>,
    ) {
        if let Some((p, _)) = block_from {
            if let Some(peer) = self.peers.get_mut(&p) {
                peer.outstanding = peer.outstanding.saturating_sub(1);
            }
        }
        for p in asked {
            if Some(p) != from && self.peers.contains_key(&p) {
                out.push(Action::Cancel { peer: p, cid: *cid });
            }
        }
        if self.recent.insert(key) {
            self.recent_order.push_back(key);
        }
        while self.recent_order.len() > RECENT {
            if let Some(k) = self.recent_order.pop_front() {
                self.recent.remove(&k);
            }
        }
    }

    /// Decides what to send for `key` now.
    fn plan(&mut self, key: &Key, now: Instant, out: &mut Vec<Action>) {
        let Some(w) = self.wants.get_mut(key) else {
            return;
        };
        if w.block_from.is_some() {
            return;
        }
        let connected = |p: &PeerId| self.peers.contains_key(p);
        // Likely holders, best first: the parent's sender, HAVEs, the session, mDNS peers.
        let mut candidates: Vec<PeerId> = Vec::new();
        if let Some(h) = self.hints.get(key) {
            candidates.push(*h);
        }
        candidates.extend(w.haves.iter().copied());
        for (p, info) in &self.peers {
            let recent = info
                .last_delivery
                .is_some_and(|t| now.duration_since(t) < SESSION);
            if recent || info.mdns {
                candidates.push(*p);
            }
        }
        let best = candidates
            .into_iter()
            .filter(|p| connected(p) && !w.dont_haves.contains(p))
            .min_by_key(|p| self.peers.get(p).map_or(usize::MAX, |i| i.outstanding));
        if let Some(p) = best {
            w.block_from = Some((p, now));
            w.asked.insert(p);
            if let Some(info) = self.peers.get_mut(&p) {
                info.outstanding += 1;
            }
            out.push(Action::Want {
                peer: p,
                cid: w.cid,
                want_type: WantType::Block,
            });
            return;
        }
        if now >= w.next_broadcast {
            for p in self.peers.keys() {
                if !w.asked.contains(p) && !w.dont_haves.contains(p) {
                    w.asked.insert(*p);
                    out.push(Action::Want {
                        peer: *p,
                        cid: w.cid,
                        want_type: WantType::Have,
                    });
                }
            }
            w.broadcasts += 1;
            w.first_broadcast.get_or_insert(now);
            // Ask everyone again now and then: a peer may have got the block since.
            let backoff = Duration::from_millis(500 << w.broadcasts.min(4));
            w.next_broadcast = now + backoff;
            if w.broadcasts > 1 {
                w.asked.clear();
                w.dont_haves.clear();
            }
        }
        if w.haves.is_empty() && search_due(w, self.peers.is_empty(), now) {
            w.searched = Some(now);
            out.push(Action::FindProviders(*key));
        }
    }
}
