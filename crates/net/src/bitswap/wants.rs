//! The client side of Bitswap, as a state machine with no I/O: what we want, whom we asked,
//! and whom to ask next. The engine feeds it events and carries out the [`Action`]s it
//! returns, which keeps the policy testable on its own.
//!
//! For each wanted block:
//! 1. Peers that said HAVE get a want-block: partial holders first (peers that lacked some
//!    block before: other fetchers), then the cheapest, by load discounted by how much the
//!    peer delivered lately (discriminating server selection, [`crate::incentives`]); a
//!    better deliverer that has not answered yet gets [`CHOOSE_WAIT`]. A peer that never
//!    lacked anything (a seeder) only when no one else has answered HAVE within
//!    [`CHOOSE_WAIT`]; a peer that sent bad blocks lately only when nobody else has
//!    answered within [`BAD_WAIT`].
//!    So in a swarm the seeder serves what nobody else has yet, and fetchers trade the rest.
//!    While a fetcher has partners to trade with, it keeps at most [`SEEDER_SLOTS`]
//!    want-blocks at each seeder; the others wait for a partner's HAVE or a free slot.
//! 2. Before any HAVE: the peer that sent us the block linking to this one (the design's
//!    optimistic ask: who has a block has its children) gets a want-block at once, unless it
//!    is a seeder with other peers around.
//! 3. Otherwise, and whenever a want-block fails (DONT_HAVE, or no answer within
//!    [`BLOCK_WAIT`]), every connected peer not asked yet (mDNS peers included) gets a
//!    want-have with send-dont-have; everyone is asked again after a backoff.
//! 4. If no peer has it after the first broadcast, look for providers on the DHT, and again
//!    every [`SEARCH_AGAIN`] while no connected peer has it; a provider counts as a peer
//!    that said HAVE once it is connected (the last [`MAX_PROVIDERS`] named are kept, so
//!    providers that never connect cannot crowd out ones found later).
//! 5. When it arrives, every peer still asked gets a cancel; when nobody waits any more
//!    (the last deadline passed), likewise.
//!
//! What each peer holds of our wants is known exactly: every want sent to a peer is recorded
//! in its wantlist here ([`Wants::told`]), stays there until a cancel is sent, and a want ends
//! (block received, deadline passed) only with a cancel to every peer that holds it. A peer
//! holds at most [`MAX_TOLD`] of our wants, as kubo and boxo expect: past that a peer drops
//! new wants (and a cairn peer counts them as an offence), so a want that finds a peer full
//! waits for room instead of being sent. When a peer connects again, its list starts empty
//! and the engine's first message to it replaces whatever it kept (`full`). Wants nobody
//! reads from the mount (prefetches, fetches) may fill at most [`MAX_TOLD`] minus
//! [`URGENT_TOLD`] of a peer's list, so that a reader's want always finds room.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    time::{Duration, Instant},
};

use bytes::Bytes;
use cairn_store::Cid;
use libp2p::PeerId;
use multihash::Multihash;

use super::wire::WantType;
use crate::incentives::Standing;

/// Wants are keyed by multihash: a CIDv0 and a CIDv1 of one block are one want.
pub type Key = Multihash<64>;

/// How long a want-block may go unanswered before another peer is asked.
pub const BLOCK_WAIT: Duration = Duration::from_secs(3);
/// How long a want whose only HAVEs come from seeders waits for other peers to answer.
pub const CHOOSE_WAIT: Duration = Duration::from_millis(30);
/// Want-blocks a fetcher keeps outstanding with one seeder (a peer that never lacked a block)
/// while it has other peers to trade with.
pub const SEEDER_SLOTS: usize = 2;
/// How often providers are looked for again while a block is missing.
pub const SEARCH_AGAIN: Duration = Duration::from_secs(10);
/// How long a want whose only HAVEs come from peers that sent bad blocks lately waits for
/// anyone else to answer.
pub const BAD_WAIT: Duration = Duration::from_secs(1);
/// Delay before the DHT is asked, when the connected peers have not answered.
pub const SEARCH_AFTER: Duration = Duration::from_millis(500);
/// Blocks remembered as just received or given up (a late copy is a duplicate, not an
/// offence).
const RECENT: usize = 16384;
/// Children remembered with the peer that sent their parent.
const HINTS: usize = 65536;
/// Most of our wants one peer holds at once (kubo's, boxo's and Helia's limit).
pub const MAX_TOLD: usize = super::MAX_WANTS_PER_PEER;
/// Providers taken from the DHT for one block (kubo takes 20 too).
pub const MAX_PROVIDERS: usize = 20;
/// Room in each peer's list kept for wants a reader of the mount waits for.
pub const URGENT_TOLD: usize = 256;
/// However busy a peer looks, a want-block it does not answer within this long goes to
/// someone else.
pub const BUSY_WAIT: Duration = Duration::from_secs(9);

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
    /// Peers asked in this round of broadcasts (a round ends every second broadcast).
    asked: HashSet<PeerId>,
    /// Peers that hold this want now (sent, not cancelled): they get a cancel when it ends.
    told: HashSet<PeerId>,
    /// Providers the DHT named, latest last: holders once connected.
    providers: VecDeque<PeerId>,
    /// A reader (a mount thread) waits for it.
    urgent: bool,
    haves: Vec<PeerId>,
    dont_haves: HashSet<PeerId>,
    broadcasts: u32,
    first_broadcast: Option<Instant>,
    /// When the first HAVE came.
    first_have: Option<Instant>,
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
    /// How many times it said DONT_HAVE (or let a want-block go unanswered): a peer that
    /// did is a partial holder, one that never did is likely a seeder.
    dont_have_count: u32,
    /// When it last sent us a block.
    last_block: Option<Instant>,
    /// How it served us lately (from the ledger).
    standing: Standing,
    /// Our wants it holds, as sent and not cancelled (at most [`MAX_TOLD`]).
    told: HashMap<Key, (Cid, WantType)>,
}

/// What a received block was.
#[derive(Debug, PartialEq, Eq)]
pub enum Received {
    /// Wanted, as this CID (ours: the sender's prefix may name another codec or CID version
    /// for the same bytes): handed to its waiters; the engine stores it. How long after our
    /// want-block to this peer it came, if it answered one.
    Wanted(Cid, Option<Duration>),
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
    /// Who sent each block received lately (as many as [`RECENT`]): a want that names the
    /// block linking to it asks that peer first, before the link is known from the store.
    senders: HashMap<Key, PeerId>,
    /// Wants held back because every seeder that has them was busy with ours
    /// ([`SEEDER_SLOTS`]): planned again when a seeder delivers.
    slot_waiters: HashSet<Key>,
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

    /// `peer` can be asked. A peer new to us hears at once of what we want (as kubo does):
    /// it may be what we lacked.
    pub fn connected(&mut self, peer: PeerId, mdns: bool, now: Instant) -> Vec<Action> {
        let fresh = !self.peers.contains_key(&peer);
        let p = self.peers.entry(peer).or_default();
        p.mdns |= mdns;
        let mut out = Vec::new();
        if fresh {
            let mut keys: Vec<(Key, Cid, bool)> = self
                .wants
                .iter()
                .filter(|(_, w)| w.block_from.is_none())
                .map(|(k, w)| (*k, w.cid, w.urgent))
                .collect();
            // Readers' wants first; within its room, as many as fit.
            keys.sort_by_key(|(_, _, urgent)| !urgent);
            keys.truncate(MAX_TOLD);
            for (k, cid, _) in keys {
                if self.tell(peer, &k, cid, WantType::Have, &mut out) {
                    if let Some(w) = self.wants.get_mut(&k) {
                        w.asked.insert(peer);
                    }
                }
            }
        }
        let keys: Vec<Key> = self.wants.keys().copied().collect();
        for k in keys {
            self.plan(&k, now, &mut out);
        }
        out
    }

    /// Sends `peer` a want for `key` and records that it holds it. False (nothing sent) if the
    /// peer is unknown or already holds [`MAX_TOLD`] other wants of ours. A want it holds is
    /// sent again (a want-have becoming a want-block, or a broadcast repeated): its list does
    /// not grow.
    fn tell(
        &mut self,
        peer: PeerId,
        key: &Key,
        cid: Cid,
        want_type: WantType,
        out: &mut Vec<Action>,
    ) -> bool {
        let urgent = self.wants.get(key).is_some_and(|w| w.urgent);
        let Some(p) = self.peers.get_mut(&peer) else {
            return false;
        };
        if !p.told.contains_key(key) {
            let room = if urgent {
                MAX_TOLD
            } else {
                MAX_TOLD - URGENT_TOLD
            };
            if p.told.len() >= room {
                return false;
            }
        }
        p.told.insert(*key, (cid, want_type));
        if let Some(w) = self.wants.get_mut(key) {
            w.told.insert(peer);
        }
        out.push(Action::Want {
            peer,
            cid,
            want_type,
        });
        true
    }

    /// Sends `peer` a cancel for `key` if it holds that want.
    fn untell(&mut self, peer: PeerId, key: &Key, cid: Cid, out: &mut Vec<Action>) {
        if let Some(w) = self.wants.get_mut(key) {
            w.told.remove(&peer);
        }
        if let Some(p) = self.peers.get_mut(&peer) {
            if p.told.remove(key).is_some() {
                out.push(Action::Cancel { peer, cid });
            }
        }
    }

    /// Everything `peer` holds of ours, as it was sent: what a message that replaces its
    /// list (`full`) must carry.
    pub fn told_entries(&self, peer: &PeerId) -> Vec<(Cid, WantType)> {
        self.peers
            .get(peer)
            .map(|p| p.told.values().copied().collect())
            .unwrap_or_default()
    }

    /// The wants `peer` holds (for the engine's counters and tests).
    pub fn told(&self, peer: &PeerId) -> usize {
        self.peers.get(peer).map_or(0, |p| p.told.len())
    }

    /// `peer` is gone: whatever it held of our wants went with its connection (a peer
    /// forgets a wantlist when the connection closes), and what was asked of it is asked of
    /// others.
    pub fn disconnected(&mut self, peer: &PeerId, now: Instant) -> Vec<Action> {
        let told = self.peers.remove(peer).map(|p| p.told).unwrap_or_default();
        for k in told.keys() {
            if let Some(w) = self.wants.get_mut(k) {
                w.told.remove(peer);
            }
        }
        let mut out = Vec::new();
        let keys: Vec<Key> = self
            .wants
            .iter_mut()
            .filter_map(|(k, w)| {
                w.asked.remove(peer);
                w.haves.retain(|p| p != peer);
                w.providers.retain(|p| p != peer);
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

    /// Wants `cid` until `until` (extended if already wanted), for `waiter` if any. A want a
    /// thread waits for (a reader of the mount) is urgent.
    pub fn want(
        &mut self,
        cid: Cid,
        waiter: Option<Waiter>,
        until: Instant,
        now: Instant,
    ) -> Vec<Action> {
        let key = *cid.hash();
        let urgent = matches!(waiter, Some(Waiter::Sync(_)));
        let w = self.wants.entry(key).or_insert_with(|| Want {
            cid,
            waiters: Vec::new(),
            until,
            block_from: None,
            asked: HashSet::new(),
            told: HashSet::new(),
            providers: VecDeque::new(),
            urgent: false,
            haves: Vec::new(),
            dont_haves: HashSet::new(),
            broadcasts: 0,
            first_broadcast: None,
            first_have: None,
            next_broadcast: now,
            searched: None,
        });
        w.until = w.until.max(until);
        w.urgent |= urgent;
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
            w.first_have.get_or_insert(now);
            self.plan(key, now, &mut out);
        }
        out
    }

    pub fn dont_have(&mut self, peer: PeerId, key: &Key, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        // Only an answer to a want we sent makes a peer a partial holder: a peer cannot buy
        // that standing with DONT_HAVEs for blocks nobody asked it about.
        let asked = self.wants.get(key).is_some_and(|w| w.told.contains(&peer));
        if let Some(p) = self.peers.get_mut(&peer).filter(|_| asked) {
            p.dont_have_count += 1;
        }
        if let Some(w) = self.wants.get_mut(key) {
            w.dont_haves.insert(peer);
            w.haves.retain(|p| *p != peer);
            w.providers.retain(|p| *p != peer);
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

    /// Providers found on the DHT: as good as a HAVE. At most [`MAX_PROVIDERS`] are kept
    /// per block, however many a DHT answer names.
    pub fn providers(&mut self, key: &Key, peers: &[PeerId], now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        if let Some(w) = self.wants.get_mut(key) {
            for p in peers.iter().take(MAX_PROVIDERS) {
                if w.providers.contains(p) || w.dont_haves.contains(p) {
                    continue;
                }
                if w.providers.len() >= MAX_PROVIDERS {
                    w.providers.pop_front();
                }
                w.providers.push_back(*p);
            }
            // The waits for better holders count from here, as from a HAVE.
            if w.providers.iter().any(|p| self.peers.contains_key(p)) {
                w.first_have.get_or_insert(now);
            }
            self.plan(key, now, &mut out);
        }
        out
    }

    /// A block whose bytes hash to `key` arrived from `peer`.
    pub fn block(
        &mut self,
        peer: PeerId,
        key: &Key,
        data: &Bytes,
        now: Instant,
        out: &mut Vec<Action>,
    ) -> Received {
        let key = *key;
        let Some(w) = self.wants.remove(&key) else {
            // A duplicate does not make its sender look busy: a peer resending old blocks
            // must not keep our want-blocks waiting on it.
            return if self.recent.contains(&key) {
                Received::Duplicate
            } else {
                Received::Unwanted
            };
        };
        if let Some(p) = self.peers.get_mut(&peer) {
            p.last_block = Some(now);
        }
        let waited = w
            .block_from
            .filter(|(p, _)| *p == peer)
            .map(|(_, t)| now.duration_since(t));
        for waiter in w.waiters {
            waiter.give(data.clone());
        }
        self.finish(key, &w.cid, w.block_from, &w.told, out);
        if self.recent.contains(&key) {
            self.senders.insert(key, peer);
        }
        // A seeder's slot came free: the wants that waited for one go on (those still held
        // back are put back in the set by `plan`).
        if !self.slot_waiters.is_empty()
            && self
                .peers
                .get(&peer)
                .is_some_and(|p| p.dont_have_count == 0)
        {
            for k in std::mem::take(&mut self.slot_waiters) {
                self.plan(&k, now, out);
            }
        }
        Received::Wanted(w.cid, waited)
    }

    /// How `peer` served us lately: the planner asks good deliverers first, bad ones last.
    pub fn set_standing(&mut self, peer: PeerId, standing: Standing) {
        if let Some(p) = self.peers.get_mut(&peer) {
            p.standing = standing;
        }
    }

    /// `peer` sent a block we did not ask for, or bytes that are no block: whatever we asked
    /// of it goes to someone else, as if it had said DONT_HAVE to all of it.
    pub fn misbehaved(&mut self, peer: PeerId, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        let keys: Vec<Key> = self
            .wants
            .iter()
            .filter(|(_, w)| w.block_from.map(|(p, _)| p) == Some(peer))
            .map(|(k, _)| *k)
            .collect();
        for k in keys {
            out.extend(self.dont_have(peer, &k, now));
        }
        out
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
                self.finish(key, &w.cid, w.block_from, &w.told, &mut out);
            }
        }
        let mut due = Vec::new();
        let mut timed_out = Vec::new();
        for (k, w) in &mut self.wants {
            if let Some((p, since)) = w.block_from {
                // A peer that keeps delivering is busy, not gone: its queue may be long.
                let busy = self
                    .peers
                    .get(&p)
                    .and_then(|i| i.last_block)
                    .is_some_and(|t| now.duration_since(t) < BLOCK_WAIT);
                let waited = now.duration_since(since);
                if waited >= BLOCK_WAIT && (!busy || waited >= BUSY_WAIT) {
                    // No answer: as good as a DONT_HAVE (kubo does the same); the peer hears
                    // a cancel, so that it does not send the block after we got it elsewhere.
                    w.block_from = None;
                    w.dont_haves.insert(p);
                    if let Some(peer) = self.peers.get_mut(&p) {
                        peer.outstanding = peer.outstanding.saturating_sub(1);
                        peer.dont_have_count += 1;
                    }
                    timed_out.push((p, *k, w.cid));
                    w.asked.remove(&p);
                    due.push(*k);
                    continue;
                }
            }
            let provider_here = w.providers.iter().any(|p| self.peers.contains_key(p));
            if w.block_from.is_none()
                && (now >= w.next_broadcast
                    || !w.haves.is_empty()
                    || provider_here
                    || (w.haves.is_empty() && search_due(w, self.peers.is_empty(), now)))
            {
                due.push(*k);
            }
        }
        for (p, k, cid) in timed_out {
            log::debug!("bitswap: want-block {cid} to {p} unanswered for {BLOCK_WAIT:?}");
            self.untell(p, &k, cid, &mut out);
        }
        for k in due {
            self.plan(&k, now, &mut out);
        }
        out
    }

    /// A want ended (received, or nobody waits any more): every peer that holds it gets a
    /// cancel, the one that sent the block included (it dropped the want-block itself, but a
    /// want-have sent to it before may still be there).
    fn finish(
        &mut self,
        key: Key,
        cid: &Cid,
        block_from: Option<(PeerId, Instant)>,
        told: &HashSet<PeerId>,
        out: &mut Vec<Action>,
    ) {
        if let Some((p, _)) = block_from {
            if let Some(peer) = self.peers.get_mut(&p) {
                peer.outstanding = peer.outstanding.saturating_sub(1);
            }
        }
        for p in told {
            if let Some(peer) = self.peers.get_mut(p) {
                if peer.told.remove(&key).is_some() {
                    out.push(Action::Cancel {
                        peer: *p,
                        cid: *cid,
                    });
                }
            }
        }
        if self.recent.insert(key) {
            self.recent_order.push_back(key);
        }
        while self.recent_order.len() > RECENT {
            if let Some(k) = self.recent_order.pop_front() {
                self.recent.remove(&k);
                self.senders.remove(&k);
            }
        }
    }

    /// `cid` is wanted as a link of `parent`: the peer that sent `parent` lately is asked
    /// for it first (who has a block has its children), as if the link were known already.
    /// A walk asks for children as soon as it has the parent's bytes, before the engine has
    /// stored the parent and read its links ([`Wants::hint`]).
    pub fn below(&mut self, parent: &Key, cid: &Cid) {
        if let Some(p) = self.senders.get(parent).copied() {
            self.hint(p, std::slice::from_ref(cid));
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
        let peers = &self.peers;
        let limit = if w.urgent {
            MAX_TOLD
        } else {
            MAX_TOLD - URGENT_TOLD
        };
        let room = |p: &PeerId| {
            peers
                .get(p)
                .is_some_and(|i| i.told.len() < limit || i.told.contains_key(key))
        };
        let usable = |p: &PeerId| room(p) && !w.dont_haves.contains(p);
        let partial = |p: &PeerId| peers.get(p).is_some_and(|i| i.dont_have_count > 0);
        let bad = |p: &PeerId| peers.get(p).is_some_and(|i| i.standing.bad);
        let load = |p: &PeerId| peers.get(p).map_or(usize::MAX, |i| i.outstanding);
        // Peers that sent bad blocks lately are asked only when nobody else has the block.
        // Peers that said HAVE, and providers the DHT named that are connected now.
        let mut haves: Vec<PeerId> = w
            .haves
            .iter()
            .chain(w.providers.iter().filter(|p| !w.haves.contains(p)))
            .copied()
            .filter(|p| usable(p))
            .collect();
        // Holders count from the moment one is known (a provider that just connected too).
        let holder = |p: &PeerId| w.haves.contains(p) || w.providers.contains(p);
        if !haves.is_empty() {
            w.first_have.get_or_insert(now);
        }
        if haves.iter().any(|p| !bad(p)) {
            haves.retain(|p| !bad(p));
        } else if !haves.is_empty() {
            let waiting = w.asked.iter().any(|p| usable(p) && !holder(p));
            let since = w.first_have.unwrap_or(now);
            if waiting && now.duration_since(since) < BAD_WAIT {
                return;
            }
        }
        // Discriminating server selection: a peer's load counts for less the more it
        // delivered lately (the best deliverer takes up to four times the wants of a peer
        // that delivered nothing), so wants go to the best deliverers first, are split among
        // them, and spill over to the rest as their queues fill.
        let best = haves
            .iter()
            .filter_map(|p| peers.get(p))
            .map(|i| i.standing.delivered)
            .fold(0.0f64, f64::max);
        let cost = |p: &PeerId| {
            let delivered = peers.get(p).map_or(0.0, |i| i.standing.delivered);
            let share = if best > 0.0 { delivered / best } else { 0.0 };
            (load(p) as f64 + 1.0) / (1.0 + 3.0 * share)
        };
        let cheapest = |a: &PeerId, b: &PeerId| cost(a).total_cmp(&cost(b));
        // 1. Peers that said HAVE: partial holders first (a seeder that has everything is
        //    left for the blocks nobody else has yet), then the cheapest.
        let mut choice = haves
            .iter()
            .copied()
            .filter(|p| partial(p))
            .min_by(cheapest);
        if let Some(c) = choice {
            // A better deliverer that was asked and has not answered yet gets a moment.
            let delivered = |p: &PeerId| peers.get(p).map_or(0.0, |i| i.standing.delivered);
            let better_coming = w
                .asked
                .iter()
                .any(|p| usable(p) && !holder(p) && !bad(p) && delivered(p) > delivered(&c));
            let since = w.first_have.unwrap_or(now);
            if better_coming && now.duration_since(since) < CHOOSE_WAIT {
                return;
            }
        }
        if choice.is_none() && !haves.is_empty() {
            // Only seeders said HAVE so far: give the others a moment to answer too (a
            // fetcher that has it is better; another seeder spreads the load).
            let waiting = w.asked.iter().any(|p| usable(p) && !holder(p));
            let since = w.first_have.unwrap_or(now);
            if waiting && now.duration_since(since) < CHOOSE_WAIT {
                return;
            }
            choice = haves.iter().copied().min_by(cheapest);
            // A seeder already busy with our wants waits while we have partners to trade
            // with: by the time it is free, one of them may have the block (it tells us with
            // a HAVE), and the seeder's upload goes to blocks nobody else has.
            let trading = peers.values().any(|i| {
                i.dont_have_count > 0
                    && i.last_block
                        .is_some_and(|t| now.duration_since(t) < BLOCK_WAIT)
            });
            if trading && choice.is_some_and(|p| load(&p) >= SEEDER_SLOTS) {
                choice = None;
                self.slot_waiters.insert(*key);
            }
        }
        // 2. Nobody said HAVE yet: the peer that sent the block linking to this one is asked
        //    for it straight away (who has a block likely has its children), if it is no
        //    seeder or is the only peer: asking a seeder for everything would make it serve
        //    every fetcher in a swarm.
        if choice.is_none() {
            if let Some(h) = self.hints.get(key).copied() {
                if usable(&h) && !bad(&h) && (partial(&h) || peers.len() == 1) {
                    choice = Some(h);
                }
            }
        }
        if let Some(p) = choice {
            w.block_from = Some((p, now));
            w.asked.insert(p);
            let cid = w.cid;
            if let Some(info) = self.peers.get_mut(&p) {
                info.outstanding += 1;
            }
            // `usable` checked its room.
            self.tell(p, key, cid, WantType::Block, out);
            return;
        }
        // 3. Ask every peer (mDNS peers included) whether it has the block: those with room
        //    for another of our wants (the others are asked at a later broadcast).
        if now >= w.next_broadcast {
            let cid = w.cid;
            let ask: Vec<PeerId> = self
                .peers
                .keys()
                .filter(|p| !w.asked.contains(p) && !w.dont_haves.contains(p))
                .copied()
                .collect();
            let mut asked = Vec::new();
            for p in ask {
                if self.tell(p, key, cid, WantType::Have, out) {
                    asked.push(p);
                }
            }
            let Some(w) = self.wants.get_mut(key) else {
                return;
            };
            w.asked.extend(asked);
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
        // 4. The DHT, when the peers we have do not answer HAVE.
        let no_peers = self.peers.is_empty();
        let peers = &self.peers;
        let Some(w) = self.wants.get_mut(key) else {
            return;
        };
        // Searched again while no connected peer has it, named providers or not.
        let holder_here = !w.haves.is_empty() || w.providers.iter().any(|p| peers.contains_key(p));
        if !holder_here && search_due(w, no_peers, now) {
            w.searched = Some(now);
            out.push(Action::FindProviders(*key));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_store::HashAlg;

    /// The engine's tick, for tests that walk time forward.
    const TICK_FOR_TESTS: Duration = Duration::from_millis(25);

    fn cid(n: u32) -> Cid {
        Cid::new_v1(0x55, HashAlg::Sha2_256.digest(&n.to_le_bytes()))
    }

    fn blocks_to(acts: &[Action]) -> Vec<(PeerId, Cid)> {
        acts.iter()
            .filter_map(|a| match a {
                Action::Want {
                    peer,
                    cid,
                    want_type: WantType::Block,
                } => Some((*peer, *cid)),
                _ => None,
            })
            .collect()
    }

    /// With no one known to have a block, every peer is asked whether it has it; the first
    /// HAVE gets the want-block.
    #[test]
    fn a_first_want_is_broadcast_then_asked_of_who_has_it() {
        let (a, b) = (PeerId::random(), PeerId::random());
        let now = Instant::now();
        let mut w = Wants::default();
        w.connected(a, false, now);
        w.connected(b, false, now);
        let acts = w.want(cid(0), None, now + Duration::from_secs(30), now);
        assert!(blocks_to(&acts).is_empty());
        assert_eq!(acts.len(), 2, "want-have to both: {acts:?}");
        // b has not answered: a moment's wait, then a gets it.
        assert!(blocks_to(&w.have(a, cid(0).hash(), now)).is_empty());
        let acts = w.tick(now + CHOOSE_WAIT);
        assert_eq!(blocks_to(&acts), vec![(a, cid(0))]);
        assert!(
            w.have(b, cid(0).hash(), now).is_empty(),
            "one want-block at a time"
        );
    }

    /// Blocks that two seeders both have are spread over them.
    #[test]
    fn a_dags_wants_spread_over_its_holders() {
        let (a, b) = (PeerId::random(), PeerId::random());
        let now = Instant::now();
        let mut w = Wants::default();
        w.connected(a, false, now);
        w.connected(b, false, now);
        let children: Vec<Cid> = (1..=10).map(cid).collect();
        w.hint(a, &children);
        let mut to = Vec::new();
        for c in &children {
            let acts = w.want(*c, None, now + Duration::from_secs(30), now);
            assert!(
                blocks_to(&acts).is_empty(),
                "a seeder is asked, not told: {acts:?}"
            );
            to.extend(blocks_to(&w.have(a, c.hash(), now)));
            to.extend(blocks_to(&w.have(b, c.hash(), now)));
            to.extend(blocks_to(&w.tick(now + CHOOSE_WAIT)));
        }
        assert_eq!(to.len(), 10, "{to:?}");
        assert_eq!(to.iter().filter(|(p, _)| *p == a).count(), 5, "{to:?}");
    }

    /// In a swarm, a block that another fetcher (a peer that once lacked something) has is
    /// asked of it, not of the seeder that has everything.
    #[test]
    fn partial_holders_are_asked_before_the_seeder() {
        let (seeder, fetcher) = (PeerId::random(), PeerId::random());
        let now = Instant::now();
        let mut w = Wants::default();
        w.connected(seeder, false, now);
        w.connected(fetcher, false, now);
        w.want(cid(1), None, now + Duration::from_secs(30), now);
        w.dont_have(fetcher, cid(1).hash(), now);
        w.have(seeder, cid(1).hash(), now);
        w.want(cid(2), None, now + Duration::from_secs(30), now);
        assert!(
            blocks_to(&w.have(seeder, cid(2).hash(), now)).is_empty(),
            "waits"
        );
        let acts = w.have(fetcher, cid(2).hash(), now);
        assert_eq!(blocks_to(&acts), vec![(fetcher, cid(2))]);
    }

    /// A fetcher with a partner to trade with keeps at most [`SEEDER_SLOTS`] want-blocks at
    /// the seeder; the rest wait for the partner's HAVE, or for a seeder slot to come free.
    #[test]
    fn a_busy_seeder_is_not_asked_for_more_while_a_partner_trades() {
        let (seeder, partner) = (PeerId::random(), PeerId::random());
        let now = Instant::now();
        let until = now + Duration::from_secs(30);
        let mut w = Wants::default();
        w.connected(seeder, false, now);
        w.connected(partner, false, now);
        // The partner lacked one block and then sent us another: a fetcher like us.
        w.want(cid(0), None, until, now);
        w.dont_have(partner, cid(0).hash(), now);
        w.want(cid(1), None, until, now);
        assert_eq!(
            blocks_to(&w.have(partner, cid(1).hash(), now)),
            vec![(partner, cid(1))]
        );
        let mut out = Vec::new();
        w.block(
            partner,
            cid(1).hash(),
            &Bytes::from_static(b"1"),
            now,
            &mut out,
        );

        let n = SEEDER_SLOTS as u32 + 2;
        let wanted: Vec<Cid> = (10..10 + n).map(cid).collect();
        let mut to_seeder = Vec::new();
        for c in &wanted {
            w.want(*c, None, until, now);
            to_seeder.extend(blocks_to(&w.have(seeder, c.hash(), now)));
        }
        to_seeder.extend(blocks_to(&w.tick(now + CHOOSE_WAIT)));
        assert_eq!(to_seeder.len(), SEEDER_SLOTS, "{to_seeder:?}");
        assert!(blocks_to(&w.tick(now + CHOOSE_WAIT * 2)).is_empty());
        // The partner got one of the waiting blocks meanwhile.
        let waiting: Vec<Cid> = wanted
            .iter()
            .copied()
            .filter(|c| !to_seeder.iter().any(|(_, t)| t == c))
            .collect();
        let acts = w.have(partner, waiting[0].hash(), now);
        assert_eq!(blocks_to(&acts), vec![(partner, waiting[0])]);
        // The seeder delivers: its free slot goes to the last waiting block.
        let mut out = Vec::new();
        let (_, first) = to_seeder[0];
        let later = now + CHOOSE_WAIT * 2;
        w.block(
            seeder,
            first.hash(),
            &Bytes::from_static(b"s"),
            later,
            &mut out,
        );
        assert_eq!(blocks_to(&out), vec![(seeder, waiting[1])]);
    }

    /// A DONT_HAVE from the peer asked moves the want-block to the next holder; a block no
    /// longer wanted is a duplicate only if it was received or given up on recently.
    #[test]
    fn dont_have_moves_on_and_strangers_blocks_are_unwanted() {
        let (a, b) = (PeerId::random(), PeerId::random());
        let now = Instant::now();
        let mut w = Wants::default();
        w.connected(a, false, now);
        w.connected(b, false, now);
        w.want(cid(1), None, now + Duration::from_secs(30), now);
        w.have(a, cid(1).hash(), now);
        w.have(b, cid(1).hash(), now);
        let acts = w.dont_have(a, cid(1).hash(), now);
        assert_eq!(blocks_to(&acts), vec![(b, cid(1))]);
        let mut out = Vec::new();
        assert_eq!(
            w.block(b, cid(1).hash(), &Bytes::from_static(b"x"), now, &mut out),
            Received::Wanted(cid(1), Some(Duration::ZERO)),
            "answered the want-block at once"
        );
        assert!(out.contains(&Action::Cancel {
            peer: a,
            cid: cid(1)
        }));
        assert_eq!(
            w.block(a, cid(1).hash(), &Bytes::from_static(b"x"), now, &mut out),
            Received::Duplicate
        );
        assert_eq!(
            w.block(a, cid(99).hash(), &Bytes::from_static(b"y"), now, &mut out),
            Received::Unwanted
        );
    }

    /// A peer that sent a bad block lately is asked for a block only when nobody else has
    /// it (and gets a moment less); among good ones, the best deliverer is asked first and
    /// wants spill over to the next as its queue fills.
    #[test]
    fn bad_peers_are_asked_last_and_good_deliverers_first() {
        let (defector, good, better) = (PeerId::random(), PeerId::random(), PeerId::random());
        let now = Instant::now();
        let until = now + Duration::from_secs(30);
        let mut w = Wants::default();
        for p in [defector, good, better] {
            w.connected(p, false, now);
            // All partial holders: nobody is a seeder here.
            w.want(cid(100), None, until, now);
            w.dont_have(p, cid(100).hash(), now);
        }
        let standing = |bad, delivered| Standing { bad, delivered };
        w.set_standing(defector, standing(true, 1e9));
        w.set_standing(good, standing(false, 1e6));
        w.set_standing(better, standing(false, 4e6));
        w.want(cid(1), None, until, now);
        assert!(
            blocks_to(&w.have(defector, cid(1).hash(), now)).is_empty(),
            "others may still answer"
        );
        // The better deliverer has not answered: it gets a moment, then good is asked.
        assert!(blocks_to(&w.have(good, cid(1).hash(), now)).is_empty());
        assert_eq!(blocks_to(&w.tick(now + CHOOSE_WAIT)), vec![(good, cid(1))]);
        // Alone with the block, the defector is asked once the others had their time.
        w.want(cid(2), None, until, now);
        w.have(defector, cid(2).hash(), now);
        assert!(blocks_to(&w.tick(now + CHOOSE_WAIT)).is_empty());
        assert_eq!(blocks_to(&w.tick(now + BAD_WAIT)), vec![(defector, cid(2))]);
        // Good and better both have blocks 10..20: better takes more of them.
        let mut to = Vec::new();
        for n in 10..20 {
            w.want(cid(n), None, until, now);
            to.extend(blocks_to(&w.have(good, cid(n).hash(), now)));
            to.extend(blocks_to(&w.have(better, cid(n).hash(), now)));
        }
        let by_better = to.iter().filter(|(p, _)| *p == better).count();
        assert_eq!(to.len(), 10);
        assert!(
            (6..10).contains(&by_better),
            "{by_better} of 10 to the better deliverer"
        );
    }

    /// Nobody waits any more: the want is dropped and every peer asked hears a cancel.
    #[test]
    fn expired_wants_are_cancelled() {
        let a = PeerId::random();
        let now = Instant::now();
        let mut w = Wants::default();
        w.connected(a, false, now);
        w.want(cid(2), None, now + Duration::from_millis(10), now);
        let acts = w.tick(now + Duration::from_millis(20));
        assert_eq!(
            acts,
            vec![Action::Cancel {
                peer: a,
                cid: cid(2)
            }]
        );
        assert!(w.is_empty());
    }

    fn cancels_to(acts: &[Action]) -> Vec<PeerId> {
        acts.iter()
            .filter_map(|a| match a {
                Action::Cancel { peer, .. } => Some(*peer),
                _ => None,
            })
            .collect()
    }

    /// A want that lives through several broadcasts (a reader waiting its full timeout) is
    /// cancelled, when it ends, at every peer ever told of it: the rounds of rebroadcasting
    /// forget whom they asked, the peers' lists do not.
    #[test]
    fn a_long_want_is_cancelled_at_every_peer_told() {
        let (a, b) = (PeerId::random(), PeerId::random());
        let t0 = Instant::now();
        let mut w = Wants::default();
        w.connected(a, false, t0);
        w.connected(b, false, t0);
        w.want(cid(7), None, t0 + Duration::from_secs(20), t0);
        w.dont_have(a, cid(7).hash(), t0);
        w.dont_have(b, cid(7).hash(), t0);
        let mut now = t0;
        while now < t0 + Duration::from_secs(19) {
            now += TICK_FOR_TESTS;
            w.tick(now);
        }
        assert_eq!(w.told(&a), 1);
        let acts = w.tick(t0 + Duration::from_secs(21));
        let mut to = cancels_to(&acts);
        to.sort();
        let mut both = vec![a, b];
        both.sort();
        assert_eq!(to, both, "{acts:?}");
        assert_eq!(w.told(&a) + w.told(&b), 0);
    }

    /// A peer is never told more than MAX_TOLD of our wants, and prefetches and fetches
    /// never more than MAX_TOLD - URGENT_TOLD: the rest is kept for readers of the mount. The
    /// wants that find no room wait for it, and get it as wants end.
    #[test]
    fn a_peer_holds_at_most_max_told_of_our_wants() {
        let a = PeerId::random();
        let now = Instant::now();
        let mut w = Wants::default();
        w.connected(a, false, now);
        let wants = |acts: Vec<Action>| {
            acts.iter()
                .filter(|x| matches!(x, Action::Want { .. }))
                .count()
        };
        let mut asked = 0;
        for i in 0..(MAX_TOLD as u32 + 100) {
            let until = now + Duration::from_secs(if i < 10 { 1 } else { 60 });
            asked += wants(w.want(cid(1000 + i), None, until, now));
        }
        assert_eq!(
            asked,
            MAX_TOLD - URGENT_TOLD,
            "prefetches fill their part only"
        );
        let mut readers = Vec::new();
        let mut urgent = 0;
        for i in 0..(URGENT_TOLD as u32 + 50) {
            let (tx, rx) = std::sync::mpsc::sync_channel(1);
            readers.push(rx);
            let until = now + Duration::from_secs(60);
            urgent += wants(w.want(cid(5000 + i), Some(Waiter::Sync(tx)), until, now));
        }
        assert_eq!(urgent, URGENT_TOLD, "readers' wants take the rest");
        assert_eq!(w.told(&a), MAX_TOLD);
        // Ten wants end: ten cancels, and ten of the waiting readers' wants are asked at the
        // next broadcast (the prefetches still find no room of theirs).
        let later = now + Duration::from_secs(2);
        let acts = w.tick(later);
        assert_eq!(cancels_to(&acts).len(), 10);
        assert_eq!(wants(acts), 10);
        assert_eq!(w.told(&a), MAX_TOLD);
    }

    /// A peer that goes away forgets our wants (its list went with the connection); when it
    /// comes back it is told every want at once.
    #[test]
    fn a_returning_peer_is_told_everything_at_once() {
        let a = PeerId::random();
        let now = Instant::now();
        let mut w = Wants::default();
        w.connected(a, false, now);
        for i in 0..5 {
            w.want(cid(i), None, now + Duration::from_secs(60), now);
        }
        assert_eq!(w.told(&a), 5);
        w.disconnected(&a, now);
        assert_eq!(w.told(&a), 0);
        let acts = w.connected(a, false, now + Duration::from_millis(10));
        let wants = acts
            .iter()
            .filter(|x| matches!(x, Action::Want { peer, .. } if *peer == a))
            .count();
        assert_eq!(wants, 5, "{acts:?}");
        assert_eq!(w.told(&a), 5);
    }

    /// Twenty providers that never connect do not hide one found later; while none of them
    /// is connected, the DHT is asked again; a provider that connects is asked for the block.
    #[test]
    fn providers_count_once_connected_and_fakes_do_not_crowd_out_real_ones() {
        let now = Instant::now();
        let mut w = Wants::default();
        let key = *cid(3).hash();
        w.want(cid(3), None, now + Duration::from_secs(60), now);
        let fakes: Vec<PeerId> = (0..MAX_PROVIDERS).map(|_| PeerId::random()).collect();
        w.providers(&key, &fakes, now);
        let searches = |acts: &[Action]| {
            acts.iter()
                .filter(|a| matches!(a, Action::FindProviders(_)))
                .count()
        };
        let acts = w.tick(now + SEARCH_AGAIN + Duration::from_millis(1));
        assert_eq!(
            searches(&acts),
            1,
            "searched again: no provider is connected"
        );
        let real = PeerId::random();
        w.providers(&key, &[real], now + SEARCH_AGAIN);
        let acts = w.connected(real, false, now + SEARCH_AGAIN);
        assert!(
            blocks_to(&acts).contains(&(real, cid(3))) || {
                let later = w.tick(now + SEARCH_AGAIN + CHOOSE_WAIT);
                blocks_to(&later).contains(&(real, cid(3)))
            },
            "{acts:?}"
        );
    }

    /// A peer that says HAVE and then resends old blocks (duplicates) does not look busy: its
    /// want-block goes to someone else after BLOCK_WAIT. And DONT_HAVEs for blocks it was
    /// never asked about do not make it a partial holder.
    #[test]
    fn a_liar_cannot_hold_a_want_block() {
        let (liar, honest) = (PeerId::random(), PeerId::random());
        let now = Instant::now();
        let mut w = Wants::default();
        w.connected(liar, false, now);
        // Old business: a block the liar sent, now only a duplicate.
        w.want(cid(50), None, now + Duration::from_secs(60), now);
        let mut out = Vec::new();
        w.block(
            liar,
            cid(50).hash(),
            &Bytes::from_static(b"o"),
            now,
            &mut out,
        );
        // DONT_HAVE for something nobody asked it: no standing as a partial holder.
        w.dont_have(liar, cid(77).hash(), now);
        assert_eq!(w.peers[&liar].dont_have_count, 0);
        w.want(cid(51), None, now + Duration::from_secs(60), now);
        assert_eq!(
            blocks_to(&w.have(liar, cid(51).hash(), now)),
            vec![(liar, cid(51))]
        );
        w.connected(honest, false, now);
        w.have(honest, cid(51).hash(), now);
        // The liar sends duplicates every second; at BLOCK_WAIT the want-block moves anyway.
        let mut t = now;
        let mut moved = false;
        while t < now + BLOCK_WAIT + Duration::from_secs(1) {
            t += Duration::from_secs(1);
            let mut o = Vec::new();
            assert_eq!(
                w.block(liar, cid(50).hash(), &Bytes::from_static(b"o"), t, &mut o),
                Received::Duplicate
            );
            moved |= blocks_to(&w.tick(t)).contains(&(honest, cid(51)));
        }
        assert!(moved, "the want-block stayed with the liar");
    }
}
