//! The engine: one task that owns every want and every peer's ledger. It only moves queued
//! work: streams are read and written by per-peer tasks, blocks are hashed and stored on
//! blocking threads, and everything reaches it as an [`Event`] on one bounded channel.

use std::{
    collections::HashMap,
    sync::{atomic::Ordering, Arc},
    time::{Duration, Instant},
};

use cairn_store::{codec, hash::IDENTITY, Cid, Store};
use libp2p::PeerId;
use serde::Serialize;
use tokio::sync::mpsc;

use super::{
    behaviour::Opener,
    handler::Inbound,
    peer::{self, LedgerEntry, PeerShared},
    upload::Upload,
    wants::{Action, Received, Wants},
    wire::{Entry, Presence},
    Event, NodeRequest, MAX_WANTS_PER_PEER,
};
use crate::{
    history,
    incentives::{self, Standing},
    ledger::{now_ms, Ledger, Offence, PeerStats},
    reputation::{Graph, Signed},
};

/// Our signed statements as last made, for the node to hand to peers that ask.
pub type Statements = Arc<std::sync::Mutex<Option<Signed>>>;

/// How often timeouts are looked at.
const TICK: Duration = Duration::from_millis(25);
/// How often the ledger is written to `R/ledger.json` (and at shutdown).
const LEDGER_SAVE: Duration = Duration::from_secs(30);
/// How often every peer's weight and standing are brought up to date (they decay).
const REFRESH: Duration = Duration::from_secs(2);
/// Messages a peer may send per second before it counts as a flood.
const FLOOD_MESSAGES: u32 = 2000;
/// Inbound streams of one peer read at once (each may hold a message of up to 4 MiB).
const MAX_READERS_PER_PEER: usize = 64;

/// Counters, for `cairn stat` and the tests.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Stats {
    pub peers: usize,
    pub wants: usize,
    pub totals: PeerStats,
    pub by_peer: Vec<(String, PeerStats)>,
    /// Per peer: its share of a contended upload, and what shared history credits it with.
    pub standing: Vec<(String, f64, f64)>,
    pub stranger_weight: f64,
    /// Statements from other cairn nodes held.
    pub statements: usize,
}

struct Peer {
    shared: Arc<PeerShared>,
    /// Messages this second, for flood detection.
    window: (Instant, u32),
}

pub struct Engine {
    store: Arc<Store>,
    opener: Opener,
    serve: bool,
    limit: Option<Arc<Upload>>,
    /// The incentive policy is on (off: everyone weighs the same, as a baseline).
    incentives: bool,
    key: libp2p::identity::Keypair,
    graph: Graph,
    /// Each connected peer's reputation, as of the last refresh of all (computing it walks
    /// the graph: not something to do per block).
    reputations: HashMap<PeerId, f64>,
    statements: Statements,
    refreshed: Instant,
    wants: Wants,
    peers: HashMap<PeerId, Peer>,
    ledger: Ledger,
    /// `R/ledger.json`, and when the ledger was last written there.
    ledger_path: std::path::PathBuf,
    ledger_saved: Instant,
    /// Blocks received and handed to their waiters, not yet on disk.
    storing: HashMap<super::wants::Key, bytes::Bytes>,
    /// Inbound streams being read, per peer.
    readers: HashMap<PeerId, Arc<std::sync::atomic::AtomicUsize>>,
    events: mpsc::Receiver<Event>,
    events_tx: mpsc::Sender<Event>,
    inbound: mpsc::Receiver<Inbound>,
    node: mpsc::Sender<NodeRequest>,
}

impl Engine {
    /// An engine and the sender of its events (for the node and the client handle).
    pub fn new(
        store: Arc<Store>,
        opener: Opener,
        inbound: mpsc::Receiver<Inbound>,
        node: mpsc::Sender<NodeRequest>,
        config: &crate::Config,
        key: libp2p::identity::Keypair,
        statements: Statements,
    ) -> (Engine, mpsc::Sender<Event>) {
        let (events_tx, events) = mpsc::channel(4096);
        let ledger_path = store.layout().root().join("ledger.json");
        (
            Engine {
                ledger: Ledger::load(&ledger_path),
                ledger_path,
                ledger_saved: Instant::now(),
                store,
                opener,
                serve: config.serve,
                limit: config.upload_limit.map(|r| Arc::new(Upload::new(r))),
                incentives: config.incentives,
                key,
                graph: Graph::default(),
                reputations: HashMap::new(),
                statements,
                refreshed: Instant::now(),
                wants: Wants::default(),
                peers: HashMap::new(),
                storing: HashMap::new(),
                readers: HashMap::new(),
                events,
                events_tx: events_tx.clone(),
                inbound,
                node,
            },
            events_tx,
        )
    }

    /// Runs until every event sender is gone.
    pub async fn run(mut self) {
        self.sign_statements();
        self.refresh_all();
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                Some(inbound) = self.inbound.recv() => {
                    if self.ledger.is_banned(&inbound.peer) {
                        continue;
                    }
                    let readers = self.readers.entry(inbound.peer).or_default().clone();
                    if readers.load(Ordering::Relaxed) >= MAX_READERS_PER_PEER {
                        log::debug!("bitswap: {} has too many streams open; dropped one", inbound.peer);
                        continue;
                    }
                    readers.fetch_add(1, Ordering::Relaxed);
                    let events = self.events_tx.clone();
                    tokio::spawn(async move {
                        peer::read_loop(inbound, events).await;
                        readers.fetch_sub(1, Ordering::Relaxed);
                    });
                }
                ev = self.events.recv() => match ev {
                    Some(Event::Shutdown) | None => break,
                    Some(ev) => self.on_event(ev),
                },
                _ = tick.tick() => {
                    let now = Instant::now();
                    let acts = self.wants.tick(now);
                    self.apply(acts);
                    if now.duration_since(self.ledger_saved) >= LEDGER_SAVE {
                        self.save_ledger();
                        self.sign_statements();
                    }
                    if now.duration_since(self.refreshed) >= REFRESH {
                        self.refreshed = now;
                        self.refresh_all();
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

    fn on_event(&mut self, ev: Event) {
        let now = Instant::now();
        match ev {
            Event::Inbound(peer, msg) => self.on_message(peer, msg, now),
            Event::Connected { peer, mdns } => {
                log::debug!("bitswap: {peer} connected");
                if self.ledger.is_banned(&peer) {
                    return;
                }
                self.add_peer(peer, now);
                let acts = self.wants.connected(peer, mdns, now);
                self.apply(acts);
            }
            Event::Disconnected(peer) | Event::NotBitswap(peer) => {
                if self
                    .readers
                    .get(&peer)
                    .is_some_and(|r| r.load(Ordering::Relaxed) == 0)
                {
                    self.readers.remove(&peer);
                }
                if let Some(p) = self.peers.remove(&peer) {
                    p.shared.closed.store(true, Ordering::Relaxed);
                    p.shared.notify.notify_one();
                }
                let acts = self.wants.disconnected(&peer, now);
                self.apply(acts);
            }
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
            Event::History(peer, batch) => {
                let now = now_ms();
                let ledger = &self.ledger;
                let direct = |k: &PeerId| ledger.get(k).map_or(0.0, |s| s.recent_received.at(now));
                match self.graph.accept(&peer, &batch, now, direct) {
                    Ok(n) => {
                        log::debug!("ledger: {n} statements from {peer}");
                        // Weights follow at the next refresh: a peer cannot make us
                        // recompute everyone's on demand.
                    }
                    Err(e) => {
                        log::debug!("ledger: statements from {peer} refused: {e}");
                        self.offend(peer, Offence::Malformed);
                    }
                }
            }
            Event::Stored { cid, from, links } => {
                self.storing.remove(cid.hash());
                if let Some(links) = links {
                    self.wants.hint(from, &links);
                    self.notify_new_block(&cid);
                }
            }
            Event::Want { cid, waiter, until } => {
                if cid.hash().code() == IDENTITY {
                    return; // never sent: kubo disconnects peers that want identity CIDs
                }
                // Received a moment ago and still on its way to disk.
                if let Some(data) = self.storing.get(cid.hash()) {
                    if let Some(w) = waiter {
                        w.give(data.clone());
                    }
                    return;
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
                        (p.to_string(), self.weight(s, rep, now), rep)
                    })
                    .collect();
                let _ = reply.send(Stats {
                    peers: self.peers.len(),
                    wants: self.wants.len(),
                    totals: self.ledger.totals.clone(),
                    by_peer: self
                        .ledger
                        .iter()
                        .map(|(p, s)| (p.to_string(), s.clone()))
                        .collect(),
                    standing,
                    stranger_weight: self.stranger_weight(now),
                    statements: self.graph.len(),
                });
            }
        }
    }

    fn weight(&self, s: &PeerStats, reputation: f64, now: u64) -> f64 {
        if self.incentives {
            incentives::weight(s, reputation, now)
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
    fn refresh(&mut self, peer: PeerId) {
        let now = now_ms();
        let Some(s) = self.ledger.get(&peer) else {
            return;
        };
        if let Some(p) = self.peers.get(&peer) {
            let rep = self.reputations.get(&peer).copied().unwrap_or(0.0);
            // Without the policy, nobody is grouped with the strangers.
            let stranger = self.incentives && s.is_stranger() && rep < incentives::GRACE;
            p.shared.stranger.store(stranger, Ordering::Relaxed);
            p.shared.set_weight(self.weight(s, rep, now));
        }
        if self.incentives {
            let standing = Standing::of(s);
            self.wants.set_standing(peer, standing);
        }
    }

    fn refresh_all(&mut self) {
        let now = now_ms();
        let peers: Vec<PeerId> = self.peers.keys().copied().collect();
        self.reputations = if self.incentives {
            let ledger = &self.ledger;
            self.graph.reputations(
                &peers.iter().copied().collect(),
                |k| ledger.get(k).map_or(0.0, |s| s.recent_received.at(now)),
                now,
            )
        } else {
            HashMap::new()
        };
        for p in peers {
            self.refresh(p);
        }
        if let Some(l) = &self.limit {
            l.set_stranger_weight(self.stranger_weight(now_ms()));
        }
    }

    /// Our statements, signed for peers that ask; none with the policy off (then the node
    /// does not answer, and publishes nothing of whom it traded with).
    fn sign_statements(&mut self) {
        let signed = self
            .incentives
            .then(|| history::statements(&self.ledger, &self.key))
            .flatten();
        *self.statements.lock().unwrap_or_else(|e| e.into_inner()) = signed;
    }

    fn save_ledger(&mut self) {
        self.ledger_saved = Instant::now();
        if let Err(e) = self.ledger.save(&self.ledger_path) {
            log::warn!("saving {}: {e}", self.ledger_path.display());
        }
    }

    /// Starts talking to `peer` (its queue and sender task) if we were not already.
    fn add_peer(&mut self, peer: PeerId, now: Instant) {
        if self.peers.contains_key(&peer) {
            return;
        }
        let shared = PeerShared::new();
        tokio::spawn(peer::send_loop(
            peer,
            shared.clone(),
            self.opener.clone(),
            self.store.clone(),
            self.limit.clone(),
            self.events_tx.clone(),
        ));
        self.peers.insert(
            peer,
            Peer {
                shared,
                window: (now, 0),
            },
        );
        self.refresh(peer);
    }

    fn on_message(&mut self, peer: PeerId, msg: peer::Received, now: Instant) {
        if self.ledger.is_banned(&peer) {
            return;
        }
        // A message can come before the node's "connected" (they travel different paths):
        // a peer that sends us something is a peer we talk to.
        if !self.peers.contains_key(&peer) {
            self.add_peer(peer, now);
            let acts = self.wants.connected(peer, false, now);
            self.apply(acts);
        }
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        if now.duration_since(p.window.0) >= Duration::from_secs(1) {
            p.window = (now, 0);
        }
        p.window.1 += 1;
        if p.window.1 == FLOOD_MESSAGES {
            self.offend(peer, Offence::Flood);
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
        for (cid, data) in msg.blocks {
            let cid = match cid {
                Ok(c) => c,
                Err(e) => {
                    log::debug!("bitswap: bad block from {peer}: {e}");
                    self.offend(peer, Offence::BadBlock);
                    continue;
                }
            };
            match self.wants.block(peer, &cid, &data, now, &mut acts) {
                Received::Wanted(waited) => {
                    self.ledger.received(peer, data.len());
                    if let Some(w) = waited {
                        self.ledger.answered(peer, data.len(), w);
                    }
                    self.refresh(peer);
                    self.storing.insert(*cid.hash(), data.clone());
                    let (store, events) = (self.store.clone(), self.events_tx.clone());
                    tokio::spawn(async move {
                        let stored = tokio::task::spawn_blocking(move || {
                            let links = codec::links(cid.codec(), &data).unwrap_or_default();
                            store.put_cache(&cid, &data).map(|_| links)
                        })
                        .await;
                        let links = match stored {
                            Ok(Ok(links)) => Some(links),
                            Ok(Err(e)) => {
                                log::warn!("storing {cid}: {e}");
                                None
                            }
                            Err(e) => {
                                log::warn!("storing {cid}: {e}");
                                None
                            }
                        };
                        let _ = events
                            .send(Event::Stored {
                                cid,
                                from: peer,
                                links,
                            })
                            .await;
                    });
                }
                Received::Duplicate => self.ledger.duplicate(peer),
                Received::Unwanted => self.offend(peer, Offence::Unwanted),
            }
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
                q.ledger.clear();
                q.serve.clear();
            }
            for e in entries {
                let key = *e.cid.hash();
                if e.cid.hash().code() == IDENTITY {
                    continue; // its bytes are in the CID
                }
                if e.cancel {
                    if q.ledger.remove(&key).is_some() {
                        q.serve.retain(|k| *k != key);
                    }
                    continue;
                }
                if !self.serve {
                    continue;
                }
                if !q.ledger.contains_key(&key) && q.ledger.len() >= MAX_WANTS_PER_PEER {
                    over = true;
                    continue;
                }
                let entry = q.ledger.entry(key).or_insert(LedgerEntry {
                    cid: e.cid,
                    want_type: e.want_type,
                    send_dont_have: e.send_dont_have,
                    queued: false,
                });
                // A want-block upgrades a want-have; the peer's latest wishes win.
                entry.cid = e.cid;
                if e.want_type == super::wire::WantType::Block {
                    entry.want_type = e.want_type;
                }
                entry.send_dont_have = e.send_dont_have;
                if !entry.queued {
                    entry.queued = true;
                    q.serve.push_back(key);
                }
            }
        }
        p.shared.notify.notify_one();
        if over {
            self.offend(peer, Offence::TooManyWants);
        }
    }

    /// Peers that wanted a block we did not have get it now that we do (kubo does the same).
    fn notify_new_block(&mut self, cid: &Cid) {
        let key = *cid.hash();
        for p in self.peers.values() {
            let mut q = p.shared.lock();
            if let Some(e) = q.ledger.get_mut(&key) {
                if !e.queued {
                    e.queued = true;
                    q.serve.push_back(key);
                    drop(q);
                    p.shared.notify.notify_one();
                }
            }
        }
    }

    fn offend(&mut self, peer: PeerId, o: Offence) {
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
            let _ = self.node.try_send(NodeRequest::Ban(peer));
        }
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
