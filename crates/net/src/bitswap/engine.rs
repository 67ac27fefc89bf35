//! The engine: one task that owns every want and every peer's ledger. It only moves queued
//! work: streams are read and written by the connections' handlers, blocks are hashed and
//! stored on blocking threads, and everything reaches it as an [`Event`] on one bounded
//! channel, except who is connected, which it takes from the [`PeerTable`].

use std::{
    collections::HashMap,
    sync::{atomic::Ordering, Arc},
    time::{Duration, Instant},
};

use cairn_store::{hash::IDENTITY, Cid, Store};
use libp2p::PeerId;
use serde::Serialize;
use tokio::sync::mpsc;

use super::{
    accept,
    behaviour::{Change, Outbox, PeerTable},
    handler::Received,
    peer::{self, PeerShared, TheirWant},
    upload::Upload,
    wants::{Action, Wants},
    wire::{Entry, Presence},
    Event, NodeRequest, MAX_WANTS_PER_PEER,
};
use crate::{
    history,
    incentives::{self, Standing},
    ledger::{now_ms, Ledger, Offence, PeerStats},
    reputation::{Graph, Refused},
};

/// Our signed statements as last made, for the node to hand to peers that ask.
pub type Statements = Arc<std::sync::Mutex<Option<history::Answer>>>;

/// How often timeouts are looked at.
const TICK: Duration = Duration::from_millis(25);
/// How often the ledger is written to `R/ledger.json` (and at shutdown).
const LEDGER_SAVE: Duration = Duration::from_secs(30);
/// How often every peer's weight and standing are brought up to date (they decay).
const REFRESH: Duration = Duration::from_secs(2);
/// Messages a peer may send per second before it counts as a flood.
const FLOOD_MESSAGES: u32 = 2000;
/// Events waiting for the engine (messages from readers, stored blocks, wants from readers
/// of the mount and from fetches).
pub const EVENTS: usize = 4096;
/// Blocks wanted at once, for all readers and fetches together; a want past it fails at
/// once (the reader sees "unavailable" and may retry).
pub const MAX_WANTS: usize = 8192;
/// Of [`MAX_WANTS`], room only readers of the mount may take: prefetches and fetches (any
/// local user can start them) cannot crowd the mount out.
pub const URGENT_WANTS: usize = 1024;
/// Wants from this process (the mount, fetches, prefetches) waiting for the engine; on a
/// channel of their own, so a flood of messages from peers does not queue ahead of them.
pub const LOCAL_EVENTS: usize = 4096;
/// Bytes of blocks read from disk for serving, waiting to be sent, for all peers together.
pub const SERVING: usize = 256 << 20;

/// Counters, for `cairn stat` and the tests.
/// Peers remembered as reading many streams at once (connected ones, and ones identify
/// reported before their Bitswap side was up).
const CONCURRENT_KEPT: usize = 1024;

#[derive(Debug, Clone, Default, Serialize)]
pub struct Stats {
    pub peers: usize,
    pub wants: usize,
    /// Blocks this node has started wanting since it started (a want already open is not
    /// counted again): how many times its readers and fetches went to the network.
    pub wanted: u64,
    pub totals: PeerStats,
    pub by_peer: Vec<(String, PeerStats)>,
    /// Per peer: its share of a contended upload, and what shared history credits it with:
    /// what it gave through others, and what it took through others.
    pub standing: Vec<(String, f64, f64, f64)>,
    pub stranger_weight: f64,
    /// Statements from other cairn nodes held.
    pub statements: usize,
    /// Per connected peer: how many of its wants we hold (`theirs`), and how many of ours it
    /// holds (`ours`, as we told it).
    pub wantlists: Vec<WantlistView>,
}

/// One peer's wantlists, as `cairn stat --json` shows them.
#[derive(Debug, Clone, Default, Serialize)]
pub struct WantlistView {
    pub peer: String,
    pub theirs: usize,
    pub ours: usize,
}

struct Peer {
    shared: Arc<PeerShared>,
}

pub struct Engine {
    pub(super) store: Arc<Store>,
    outbox: Outbox,
    table: Arc<PeerTable>,
    serve: bool,
    limit: Option<Arc<Upload>>,
    /// The incentive policy is on (off: everyone weighs the same, as a baseline).
    incentives: bool,
    key: libp2p::identity::Keypair,
    graph: Graph,
    /// Each connected peer's reputation (what it gave through others), as of the last
    /// refresh of all (computing it walks the graph: not something to do per block).
    reputations: HashMap<PeerId, f64>,
    /// And what it took through others, as of the same refresh.
    took: HashMap<PeerId, f64>,
    statements: Statements,
    refreshed: Instant,
    pub(super) wants: Wants,
    /// Wants started (see [`Stats::wanted`]).
    wanted: u64,
    /// Peers that read many streams at once (identify said so; see `peer::IN_FLIGHT`),
    /// at most [`CONCURRENT_KEPT`].
    concurrent: std::collections::HashSet<PeerId>,
    peers: HashMap<PeerId, Peer>,
    pub(super) ledger: Ledger,
    /// `R/ledger.json`, and when the ledger was last written there.
    ledger_path: std::path::PathBuf,
    ledger_saved: Instant,
    /// Blocks received and handed to their waiters, not yet on disk.
    pub(super) storing: HashMap<super::wants::Key, bytes::Bytes>,
    /// Per connected peer, its messages this second (flood detection): kept apart from
    /// `peers`, so that a peer whose sender is rebuilt does not start from zero.
    windows: HashMap<PeerId, (Instant, u32)>,
    /// Connected peers that refused our Bitswap streams: not rebuilt on every message.
    not_bitswap: std::collections::HashSet<PeerId>,
    /// Bans the node has not taken yet (its channel was full): sent again every tick.
    pending_bans: Vec<PeerId>,
    /// Room for blocks being served.
    serving: Arc<tokio::sync::Semaphore>,
    events: mpsc::Receiver<Event>,
    local: mpsc::Receiver<Event>,
    pub(super) events_tx: mpsc::Sender<Event>,
    node: mpsc::Sender<NodeRequest>,
}

/// What the engine is built from.
pub struct Parts {
    pub store: Arc<Store>,
    pub outbox: Outbox,
    pub table: Arc<PeerTable>,
    /// The engine's channel: `events` receives what `events_tx` (handed to the behaviour,
    /// the client and the node) sends.
    pub events: mpsc::Receiver<Event>,
    pub events_tx: mpsc::Sender<Event>,
    /// The channel of this process's own wants ([`LOCAL_EVENTS`]).
    pub local: mpsc::Receiver<Event>,
    pub node: mpsc::Sender<NodeRequest>,
    pub key: libp2p::identity::Keypair,
    pub statements: Statements,
}

impl Engine {
    /// An engine from its parts.
    pub fn new(parts: Parts, config: &crate::Config) -> Engine {
        let Parts {
            store,
            outbox,
            table,
            events,
            events_tx,
            local,
            node,
            key,
            statements,
        } = parts;
        let ledger_path = store.layout().root().join("ledger.json");
        Engine {
            ledger: Ledger::load(&ledger_path),
            ledger_path,
            ledger_saved: Instant::now(),
            store,
            outbox,
            table,
            serve: config.serve,
            limit: config.upload_limit.map(|r| Arc::new(Upload::new(r))),
            incentives: config.incentives,
            graph: Graph::new(key.public().to_peer_id()),
            key,
            reputations: HashMap::new(),
            took: HashMap::new(),
            statements,
            refreshed: Instant::now(),
            wants: Wants::default(),
            wanted: 0,
            concurrent: Default::default(),
            peers: HashMap::new(),
            storing: HashMap::new(),
            windows: HashMap::new(),
            not_bitswap: Default::default(),
            pending_bans: Vec::new(),
            serving: Arc::new(tokio::sync::Semaphore::new(SERVING >> 10)),
            events,
            local,
            events_tx,
            node,
        }
    }

    /// Runs until every event sender is gone.
    pub async fn run(mut self) {
        self.sign_statements();
        self.refresh_all();
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let table = self.table.clone();
        loop {
            tokio::select! {
                _ = table.notify.notified() => {
                    for (peer, change) in table.take() {
                        self.on_change(peer, change);
                    }
                }
                ev = self.events.recv() => match ev {
                    Some(Event::Shutdown) | None => break,
                    Some(ev) => self.on_event(ev),
                },
                Some(ev) = self.local.recv() => self.on_event(ev),
                _ = tick.tick() => {
                    let now = Instant::now();
                    let acts = self.wants.tick(now);
                    self.apply(acts);
                    self.send_bans();
                    if now.duration_since(self.ledger_saved) >= LEDGER_SAVE {
                        self.save_ledger();
                    }
                    if now.duration_since(self.refreshed) >= REFRESH {
                        self.refreshed = now;
                        self.ledger.prune_bans();
                        self.refresh_all();
                        // What we say and relay follows what we learnt (a batch of ours
                        // older than REFRESH is never handed out).
                        self.sign_statements();
                    }
                }
            }
        }
        self.save_ledger();
        for p in self.peers.values() {
            p.shared.closed.store(true, Ordering::Relaxed);
            p.shared.notify.notify_one();
        }
    }

    /// A peer came (its first connection) or went (its last).
    fn on_change(&mut self, peer: PeerId, change: Change) {
        let now = Instant::now();
        if matches!(change, Change::Down | Change::DownUp) {
            log::debug!("bitswap: {peer} disconnected");
            self.drop_peer(peer, now);
            self.windows.remove(&peer);
            self.not_bitswap.remove(&peer);
        }
        if matches!(change, Change::Up | Change::DownUp) {
            log::debug!("bitswap: {peer} connected");
            self.peer_up(peer, false, now);
        }
    }

    /// `peer` is connected: it gets a sender, hears what we want, and its first message
    /// from us replaces whatever it kept of our wantlist.
    fn peer_up(&mut self, peer: PeerId, mdns: bool, now: Instant) {
        if self.ledger.is_banned(&peer) {
            return;
        }
        let fresh = !self.peers.contains_key(&peer);
        self.add_peer(peer);
        if fresh {
            if let Some(p) = self.peers.get(&peer) {
                p.shared.lock().full = true;
            }
        }
        let acts = self.wants.connected(peer, mdns, now);
        self.apply(acts);
    }

    /// `peer` is gone (or does not speak Bitswap): its sender stops, and what we asked of it
    /// is asked of others.
    fn drop_peer(&mut self, peer: PeerId, now: Instant) {
        self.concurrent.remove(&peer);
        if let Some(p) = self.peers.remove(&peer) {
            p.shared.closed.store(true, Ordering::Relaxed);
            p.shared.notify.notify_one();
        }
        let acts = self.wants.disconnected(&peer, now);
        self.apply(acts);
    }

    fn on_event(&mut self, ev: Event) {
        let now = Instant::now();
        match ev {
            Event::Inbound(peer, msg) => self.on_message(peer, msg, now),
            Event::Mdns(peer) => {
                if self.peers.contains_key(&peer) {
                    let acts = self.wants.connected(peer, true, now);
                    self.apply(acts);
                }
            }
            Event::NotBitswap(peer) => {
                if self.table.is_connected(&peer) {
                    self.not_bitswap.insert(peer);
                }
                self.drop_peer(peer, now);
            }
            Event::Concurrent(peer) => {
                // Identify may report before the peer's Bitswap side is up: kept for then.
                if self.concurrent.len() >= CONCURRENT_KEPT {
                    let peers = &self.peers;
                    self.concurrent.retain(|p| peers.contains_key(p));
                }
                if self.concurrent.len() < CONCURRENT_KEPT {
                    self.concurrent.insert(peer);
                }
                if let Some(p) = self.peers.get(&peer) {
                    p.shared.concurrent.store(true, Ordering::Relaxed);
                    p.shared.notify.notify_one();
                }
            }
            Event::Resync(peer) => self.resync(peer),
            Event::Providers { key, peers } => {
                let acts = self.wants.providers(&key, &peers, now);
                self.apply(acts);
            }
            Event::Offence(peer, o) => self.offend(peer, o),
            Event::Sent {
                peer,
                blocks,
                bytes,
            } => {
                self.ledger.sent(peer, blocks, bytes);
                self.refresh(peer);
            }
            Event::History(peer, answer) => {
                if !self.incentives {
                    return; // the policy off: no history asked for, none taken
                }
                let now = now_ms();
                let ledger = &self.ledger;
                let direct = |k: &PeerId| ledger.get(k).map_or(0.0, |s| s.recent_received.at(now));
                // (refusal, relayed)
                let mut refused = Vec::new();
                let mut taken = 0;
                if let Some(own) = &answer.own {
                    match self.graph.accept(&peer, own, now, direct) {
                        Ok(n) => taken += n,
                        Err(e) => refused.push((e, false)),
                    }
                }
                // At most MAX_RELAYED: more is not an honest answer.
                if answer.relayed.len() > history::MAX_RELAYED {
                    refused.push((Refused::TooMany, true));
                }
                let relayed = &answer.relayed[..answer.relayed.len().min(history::MAX_RELAYED)];
                let (n, bad) = self.graph.accept_relayed(relayed, now, direct);
                taken += n;
                refused.extend(bad.into_iter().map(|e| (e, true)));
                // Weights follow at the next refresh: a peer cannot make us recompute
                // everyone's on demand.
                log::debug!(
                    "history: {taken} statements from {peer}, {} batches refused",
                    refused.len()
                );
                for (e, relayed) in refused {
                    log::debug!("history from {peer} refused: {e}");
                    if e.charged(relayed) {
                        self.offend(peer, Offence::BadStatement);
                    }
                }
            }
            Event::Stored { cid, from, links } => self.stored(cid, from, links),
            Event::Want {
                cid,
                waiter,
                until,
                parent,
            } => {
                if cid.hash().code() == IDENTITY {
                    return; // never sent: kubo disconnects peers that want identity CIDs
                }
                if let Err(e) = accept::verifiable(&cid) {
                    // Never asked of a peer: no copy of it could be checked. The waiter is
                    // dropped, so it hears "unavailable" now, not after a timeout. (Callers
                    // say why; a prefetch of such blocks is not worth a warning each.)
                    log::debug!("bitswap: not fetching {e}");
                    return;
                }
                let urgent = matches!(waiter, Some(super::wants::Waiter::Sync(_)));
                let limit = if urgent {
                    MAX_WANTS
                } else {
                    MAX_WANTS - URGENT_WANTS
                };
                if self.wants.len() >= limit && !self.wants.is_wanted(cid.hash()) {
                    log::debug!("bitswap: {limit} blocks wanted already; {cid} refused");
                    return;
                }
                // Received a moment ago and still on its way to disk.
                if let Some(data) = self.storing.get(cid.hash()) {
                    if let Some(w) = waiter {
                        w.give(data.clone());
                    }
                    return;
                }
                if !self.wants.is_wanted(cid.hash()) {
                    self.wanted += 1;
                    if let Some(p) = parent {
                        self.wants.below(p.hash(), &cid);
                    }
                }
                let acts = self.wants.want(cid, waiter, until, now);
                self.apply(acts);
            }
            Event::Shutdown => {}
            Event::SaveLedger(reply) => {
                self.save_ledger();
                let _ = reply.send(());
            }
            Event::Stats(reply) => {
                let now = now_ms();
                let standing = self
                    .ledger
                    .iter()
                    .map(|(p, s)| {
                        let rep = self.reputations.get(p).copied().unwrap_or(0.0);
                        let took = self.took.get(p).copied().unwrap_or(0.0);
                        (p.to_string(), self.weight(s, rep, took, now), rep, took)
                    })
                    .collect();
                let _ = reply.send(Stats {
                    peers: self.peers.len(),
                    wants: self.wants.len(),
                    wanted: self.wanted,
                    totals: self.ledger.totals.clone(),
                    by_peer: self
                        .ledger
                        .iter()
                        .map(|(p, s)| (p.to_string(), s.clone()))
                        .collect(),
                    standing,
                    stranger_weight: self.stranger_weight(now),
                    statements: self.graph.len(),
                    wantlists: self
                        .peers
                        .iter()
                        .map(|(p, i)| WantlistView {
                            peer: p.to_string(),
                            theirs: i.shared.lock().wants.len(),
                            ours: self.wants.told(p),
                        })
                        .collect(),
                });
            }
        }
    }

    fn weight(&self, s: &PeerStats, reputation: f64, took: f64, now: u64) -> f64 {
        if self.incentives {
            incentives::weight(s, reputation, took, now)
        } else {
            1.0
        }
    }

    fn stranger_weight(&self, now: u64) -> f64 {
        if self.incentives {
            incentives::stranger_weight(&self.ledger.strangers, now)
        } else {
            1.0
        }
    }

    /// Brings `peer`'s upload class and weight, and its standing with the want planner, up
    /// to date with the ledger.
    pub(super) fn refresh(&mut self, peer: PeerId) {
        let now = now_ms();
        let Some(s) = self.ledger.get(&peer) else {
            return;
        };
        if let Some(p) = self.peers.get(&peer) {
            let rep = self.reputations.get(&peer).copied().unwrap_or(0.0);
            let took = self.took.get(&peer).copied().unwrap_or(0.0);
            // Without the policy, nobody is grouped with the strangers.
            let stranger = self.incentives && s.is_stranger(now) && rep < incentives::GRACE;
            p.shared.stranger.store(stranger, Ordering::Relaxed);
            p.shared.set_weight(self.weight(s, rep, took, now));
        }
        if self.incentives {
            let standing = Standing::of(s);
            self.wants.set_standing(peer, standing);
        }
    }

    fn refresh_all(&mut self) {
        let now = now_ms();
        let peers: Vec<PeerId> = self.peers.keys().copied().collect();
        (self.reputations, self.took) = if self.incentives {
            self.graph.expire(now);
            let ledger = &self.ledger;
            let connected = peers.iter().copied().collect();
            (
                self.graph.reputations(
                    &connected,
                    |k| ledger.get(k).map_or(0.0, |s| s.recent_received.at(now)),
                    now,
                ),
                self.graph.took(
                    &connected,
                    |k| ledger.get(k).map_or(0.0, |s| s.recent_sent.at(now)),
                    now,
                ),
            )
        } else {
            (HashMap::new(), HashMap::new())
        };
        for p in peers {
            self.refresh(p);
        }
        if let Some(l) = &self.limit {
            l.set_stranger_weight(self.stranger_weight(now_ms()));
        }
    }

    /// Our answer to peers that ask for history: our statements, signed now, and the
    /// batches we relay; none with the policy off (then the node does not answer, and
    /// publishes nothing of whom it traded with).
    fn sign_statements(&mut self) {
        let answer = self.incentives.then(|| {
            let now = now_ms();
            let ledger = &self.ledger;
            history::Answer {
                own: history::statements(ledger, &self.key),
                relayed: self.graph.relay(
                    |k| ledger.get(k).map_or(0.0, |s| s.recent_received.at(now)),
                    now,
                ),
            }
        });
        *self.statements.lock().unwrap_or_else(|e| e.into_inner()) = answer;
    }

    fn save_ledger(&mut self) {
        self.ledger_saved = Instant::now();
        if let Err(e) = self.ledger.save(&self.ledger_path) {
            log::warn!("saving {}: {e}", self.ledger_path.display());
        }
    }

    /// Starts talking to `peer` (its queue and sender task) if we were not already.
    fn add_peer(&mut self, peer: PeerId) {
        if self.peers.contains_key(&peer) {
            return;
        }
        let shared = PeerShared::new();
        if self.concurrent.contains(&peer) {
            shared.concurrent.store(true, Ordering::Relaxed);
        }
        tokio::spawn(peer::send_loop(
            peer,
            shared.clone(),
            self.outbox.clone(),
            self.store.clone(),
            self.limit.clone(),
            self.serving.clone(),
            self.events_tx.clone(),
        ));
        self.peers.insert(peer, Peer { shared });
        self.refresh(peer);
    }

    fn on_message(&mut self, peer: PeerId, msg: Received, now: Instant) {
        if self.ledger.is_banned(&peer) {
            return;
        }
        // A message can come before the engine took the peer's arrival from the table: a
        // connected peer that sends us something is a peer we talk to. (One that is no
        // longer connected, a late message, gets no sender: its blocks still count.)
        let connected = self.table.is_connected(&peer);
        if !self.peers.contains_key(&peer) && connected && !self.not_bitswap.contains(&peer) {
            self.peer_up(peer, false, now);
        }
        if connected {
            let w = self.windows.entry(peer).or_insert((now, 0));
            if now.duration_since(w.0) >= Duration::from_secs(1) {
                *w = (now, 0);
            }
            w.1 += 1;
            if w.1 == FLOOD_MESSAGES {
                self.offend(peer, Offence::Flood);
            }
        }
        self.on_wants(peer, msg.full, msg.wants);
        for (cid, presence) in msg.presences {
            let acts = match presence {
                Presence::Have => self.wants.have(peer, cid.hash(), now),
                Presence::DontHave => {
                    self.ledger.peer(peer).dont_haves += 1;
                    self.wants.dont_have(peer, cid.hash(), now)
                }
            };
            self.apply(acts);
        }
        let mut acts = Vec::new();
        for block in msg.blocks {
            self.accept(peer, block, now, &mut acts);
        }
        self.apply(acts);
    }

    /// The server side: a peer's wants and cancels go into its ledger and serve queue.
    fn on_wants(&mut self, peer: PeerId, full: bool, entries: Vec<Entry>) {
        let Some(p) = self.peers.get(&peer) else {
            return;
        };
        let mut over = false;
        {
            let mut q = p.shared.lock();
            if full {
                // Queued answers to the old list become stale and are skipped.
                q.wants.clear();
            }
            for e in entries {
                let key = *e.cid.hash();
                if e.cid.hash().code() == IDENTITY {
                    continue; // its bytes are in the CID
                }
                if e.cancel {
                    q.wants.remove(&key);
                    continue;
                }
                if !self.serve {
                    continue;
                }
                if !q.wants.contains_key(&key) && q.wants.len() >= MAX_WANTS_PER_PEER {
                    over = true;
                    continue;
                }
                let entry = q.wants.entry(key).or_insert(TheirWant {
                    cid: e.cid,
                    want_type: e.want_type,
                    send_dont_have: e.send_dont_have,
                    queued: None,
                });
                // A want-block upgrades a want-have; the peer's latest wishes win.
                entry.cid = e.cid;
                if e.want_type == super::wire::WantType::Block {
                    entry.want_type = e.want_type;
                }
                entry.send_dont_have = e.send_dont_have;
                q.queue(key);
            }
        }
        p.shared.notify.notify_one();
        if over {
            self.offend(peer, Offence::TooManyWants);
        }
    }

    /// Peers that wanted a block we did not have get it now that we do (kubo does the same).
    pub(super) fn notify_new_block(&mut self, cid: &Cid) {
        let key = *cid.hash();
        for p in self.peers.values() {
            let mut q = p.shared.lock();
            if q.wants.contains_key(&key) {
                q.queue(key);
                drop(q);
                p.shared.notify.notify_one();
            }
        }
    }

    pub(super) fn offend(&mut self, peer: PeerId, o: Offence) {
        if self.ledger.is_banned(&peer) {
            return; // late news from streams still open when it was cut off
        }
        if matches!(o, Offence::Unwanted | Offence::BadBlock) {
            let acts = self.wants.misbehaved(peer, Instant::now());
            self.apply(acts);
        }
        let banned = self.ledger.offend(peer, o);
        self.refresh(peer);
        if banned {
            log::warn!("bitswap: disconnecting {peer}: too many offences ({o:?} last)");
            if let Some(p) = self.peers.remove(&peer) {
                p.shared.closed.store(true, Ordering::Relaxed);
                p.shared.notify.notify_one();
            }
            let acts = self.wants.disconnected(&peer, Instant::now());
            self.apply(acts);
            self.pending_bans.push(peer);
            self.send_bans();
        }
    }

    /// Hands the bans the node has not taken yet to it (each is sent until it is taken: a
    /// ban lost to a full channel would leave an offender connected for its whole term).
    fn send_bans(&mut self) {
        while let Some(peer) = self.pending_bans.last().copied() {
            match self.node.try_send(NodeRequest::Ban(peer)) {
                Ok(()) => {
                    self.pending_bans.pop();
                }
                Err(mpsc::error::TrySendError::Full(_)) => return,
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    self.pending_bans.clear();
                    return;
                }
            }
        }
    }

    /// `peer`'s queue overflowed while messages to it failed: its next message replaces its
    /// copy of our list with everything it holds of ours.
    fn resync(&mut self, peer: PeerId) {
        let Some(p) = self.peers.get(&peer) else {
            return;
        };
        let entries = self.wants.told_entries(&peer);
        let mut q = p.shared.lock();
        q.control.clear();
        q.full = true;
        for (cid, want_type) in entries {
            q.control
                .insert(*cid.hash(), Entry::want(cid, want_type, true));
        }
        drop(q);
        p.shared.notify.notify_one();
    }

    fn apply(&mut self, acts: Vec<Action>) {
        let mut touched = Vec::new();
        for a in acts {
            match a {
                Action::Want {
                    peer,
                    cid,
                    want_type,
                } => {
                    log::trace!("want {want_type:?} {cid} from {peer}");
                    if let Some(p) = self.peers.get(&peer) {
                        p.shared
                            .lock()
                            .control
                            .insert(*cid.hash(), Entry::want(cid, want_type, true));
                        touched.push(peer);
                    }
                }
                Action::Cancel { peer, cid } => {
                    if let Some(p) = self.peers.get(&peer) {
                        p.shared
                            .lock()
                            .control
                            .insert(*cid.hash(), Entry::cancel(cid));
                        touched.push(peer);
                    }
                }
                Action::FindProviders(key) => {
                    let _ = self.node.try_send(NodeRequest::FindProviders(key));
                }
            }
        }
        touched.sort_unstable();
        touched.dedup();
        for peer in touched {
            if let Some(p) = self.peers.get(&peer) {
                p.shared.notify.notify_one();
            }
        }
    }
}
