//! The swarm and its event loop: transports, identify, ping, the two DHTs ([`crate::dht`]),
//! mDNS, connection limits, bans, the shared-history protocol and the Bitswap behaviour. The
//! loop only moves queued work: requests from the engine and the client handle are turned
//! into swarm calls, and replies go back on oneshot channels. Who is connected reaches the
//! Bitswap engine through the Bitswap behaviour itself (per connection, never dropped).

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::{Duration, Instant},
};

use cairn_store::Store;
use libp2p::{
    allow_block_list, connection_limits,
    core::ConnectedPoint,
    identify,
    identity::Keypair,
    mdns, noise, ping, request_response,
    swarm::{
        behaviour::toggle::Toggle,
        dial_opts::{DialOpts, PeerCondition},
        ConnectionId, NetworkBehaviour, SwarmEvent,
    },
    tcp, Multiaddr, PeerId, Swarm,
};
use multihash::Multihash;
use tokio::sync::{mpsc, oneshot};

use crate::{
    bitswap::{
        self,
        budget::Budget,
        engine::{self, Parts, Statements},
        Engine, Event, NodeRequest,
    },
    client::{Client, PeerView},
    config::Config,
    dht::{
        self,
        addrs::{Filtered, Scope, MAX_ADDRS_PER_PEER},
        Dht, DhtStats, Kad, KAD, LAN_KAD,
    },
    history, NetError,
};

/// How long a connection with nothing going on stays open.
const IDLE: Duration = Duration::from_secs(120);
/// Connections, in all, per peer, being accepted, and being dialled. (kubo keeps 32 to 96
/// by default; each connection can hold 16 MiB of unread data in yamux, so 512 connections
/// bound that at 8 GiB, and a peer needs 128 identities to come near it.)
pub const MAX_CONNECTIONS: u32 = 512;
pub const MAX_CONNECTIONS_PER_PEER: u32 = 4;
pub const MAX_PENDING_INCOMING: u32 = 256;
pub const MAX_PENDING_OUTGOING: u32 = 64;
/// Inbound streams of one connection negotiating their protocol at once.
const MAX_NEGOTIATING: usize = 32;
/// Requests from the engine (provider lookups, bans) waiting for the event loop.
const NODE_REQUESTS: usize = 1024;
/// Requests from client handles waiting for the event loop.
const COMMANDS: usize = 256;

#[derive(NetworkBehaviour)]
#[behaviour(prelude = "libp2p::swarm::derive_prelude")]
struct Behaviour {
    limits: connection_limits::Behaviour,
    blocked: allow_block_list::Behaviour<allow_block_list::BlockedPeers>,
    identify: identify::Behaviour,
    ping: ping::Behaviour,
    bitswap: bitswap::behaviour::Behaviour,
    kad: Toggle<Filtered<Kad>>,
    lan: Toggle<Filtered<Kad>>,
    mdns: Toggle<mdns::tokio::Behaviour>,
    history: history::Behaviour,
    names: dht::ask::Behaviour,
}

impl Behaviour {
    fn kads(&mut self) -> [Option<&mut Filtered<Kad>>; 2] {
        [self.kad.as_mut(), self.lan.as_mut()]
    }
}

/// Requests from the client handle.
pub(crate) enum Command {
    Dial(Multiaddr, oneshot::Sender<Result<PeerId, String>>),
    Disconnect(PeerId, oneshot::Sender<bool>),
    Peers(oneshot::Sender<Vec<PeerView>>),
    ListenAddrs(oneshot::Sender<Vec<Multiaddr>>),
    Provide(Vec<Multihash<64>>, oneshot::Sender<usize>),
    Dht(oneshot::Sender<DhtStats>),
    PublishName {
        name: cairn_names::Name,
        record: Vec<u8>,
        offline: bool,
        reply: oneshot::Sender<Result<(), String>>,
    },
    ResolveName {
        name: cairn_names::Name,
        nocache: bool,
        offline: bool,
        found: mpsc::Sender<dht::ipns::Found>,
        rejects: dht::ipns::Rejects,
        reply: oneshot::Sender<Result<(), String>>,
    },
}

/// Starts the node on the current tokio runtime: listens, dials the bootstrap peers, and
/// runs the swarm and the Bitswap engine as tasks. Returns once it listens.
pub async fn start(config: &Config, key: Keypair, store: Arc<Store>) -> Result<Client, NetError> {
    let local = key.public().to_peer_id();
    let (events_tx, events) = mpsc::channel(engine::EVENTS);
    let (bitswap, outbox, table) =
        bitswap::behaviour::Behaviour::new(events_tx.clone(), Budget::default());
    let mut swarm = libp2p::SwarmBuilder::with_existing_identity(key.clone())
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            crate::muxer::Yamux::default,
        )
        .map_err(|e| NetError::Transport(e.to_string()))?
        .with_quic()
        .with_behaviour(|key| {
            let mdns = if config.mdns {
                Some(mdns::tokio::Behaviour::new(
                    mdns::Config::default(),
                    key.public().to_peer_id(),
                )?)
            } else {
                None
            };
            Ok(Behaviour {
                limits: connection_limits::Behaviour::new(
                    connection_limits::ConnectionLimits::default()
                        .with_max_established(Some(MAX_CONNECTIONS))
                        .with_max_established_per_peer(Some(MAX_CONNECTIONS_PER_PEER))
                        .with_max_pending_incoming(Some(MAX_PENDING_INCOMING))
                        .with_max_pending_outgoing(Some(MAX_PENDING_OUTGOING)),
                ),
                blocked: Default::default(),
                identify: identify::Behaviour::new(
                    identify::Config::new("/ipfs/0.1.0".into(), key.public())
                        .with_agent_version(format!("cairn/{}", env!("CARGO_PKG_VERSION")))
                        .with_push_listen_addr_updates(true),
                ),
                ping: ping::Behaviour::default(),
                bitswap,
                kad: Toggle::from(config.dht.then(|| dht::behaviour(local, Scope::Public))),
                lan: Toggle::from(config.dht.then(|| dht::behaviour(local, Scope::Lan))),
                mdns: Toggle::from(mdns),
                history: history::behaviour(),
                names: dht::ask::behaviour(),
            })
        })
        .map_err(|e| NetError::Transport(e.to_string()))?
        .with_swarm_config(|c| {
            c.with_idle_connection_timeout(IDLE)
                .with_max_negotiating_inbound_streams(MAX_NEGOTIATING)
        })
        .build();
    let mut listening = 0;
    for addr in &config.listen {
        match swarm.listen_on(addr.clone()) {
            Ok(_) => listening += 1,
            Err(e) => log::warn!("cannot listen on {addr}: {e}"),
        }
    }
    if listening == 0 && !config.listen.is_empty() {
        return Err(NetError::Transport("no listen address worked".into()));
    }
    let (node_tx, node_rx) = mpsc::channel(NODE_REQUESTS);
    let (local_tx, local_rx) = mpsc::channel(engine::LOCAL_EVENTS);
    let statements = Statements::default();
    let engine = Engine::new(
        Parts {
            store,
            outbox,
            table,
            events,
            events_tx: events_tx.clone(),
            local: local_rx,
            node: node_tx,
            key: key.clone(),
            statements: statements.clone(),
        },
        config,
    );
    tokio::spawn(engine.run());
    let (commands_tx, commands) = mpsc::channel(COMMANDS);
    let mut lp = EventLoop {
        swarm,
        commands,
        requests: node_rx,
        events: events_tx.clone(),
        peers: HashMap::new(),
        mdns_peers: HashSet::new(),
        dials: HashMap::new(),
        dht: Dht::default(),
        listen_addrs: Vec::new(),
        banned: HashMap::new(),
        statements,
        history_asked: HashMap::new(),
        history_answered: HashMap::new(),
    };
    // Wait until the listeners report their addresses, so the caller can print them.
    let deadline = Instant::now() + Duration::from_secs(5);
    while lp.listen_addrs.len() < listening && Instant::now() < deadline {
        if let Ok(Some(ev)) = tokio::time::timeout(
            Duration::from_millis(100),
            futures::StreamExt::next(&mut lp.swarm),
        )
        .await
        {
            lp.on_swarm_event(ev);
        }
    }
    for addr in &config.bootstrap {
        lp.dial(addr.clone(), None);
    }
    tokio::spawn(lp.run());
    Ok(Client::new(local, commands_tx, events_tx, local_tx))
}

struct PeerInfo {
    /// The address of each open connection (at most the per-peer connection limit).
    connected: Vec<(ConnectionId, Multiaddr)>,
    /// Where it says it listens (identify), at most [`MAX_ADDRS_PER_PEER`], replaced by
    /// each report.
    listen: Vec<Multiaddr>,
    agent: String,
    protocols: Vec<String>,
    since: Instant,
}

impl PeerInfo {
    fn addrs(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for a in self.connected.iter().map(|(_, a)| a).chain(&self.listen) {
            let s = a.to_string();
            if !out.contains(&s) {
                out.push(s);
            }
        }
        out
    }
}

struct EventLoop {
    swarm: Swarm<Behaviour>,
    commands: mpsc::Receiver<Command>,
    requests: mpsc::Receiver<NodeRequest>,
    events: mpsc::Sender<Event>,
    peers: HashMap<PeerId, PeerInfo>,
    mdns_peers: HashSet<PeerId>,
    dials: HashMap<ConnectionId, oneshot::Sender<Result<PeerId, String>>>,
    dht: Dht,
    listen_addrs: Vec<Multiaddr>,
    banned: HashMap<PeerId, Instant>,
    /// Our signed statements, made by the engine, handed to whoever asks.
    statements: Statements,
    /// When we last asked each peer for its statements, and last answered it (kept across
    /// reconnects, so that reconnecting buys nothing; pruned after [`history::ASK_EVERY`]).
    history_asked: HashMap<PeerId, Instant>,
    history_answered: HashMap<PeerId, Instant>,
}

impl EventLoop {
    async fn run(mut self) {
        let mut tick = tokio::time::interval(Duration::from_secs(10));
        for k in self.swarm.behaviour_mut().kads().into_iter().flatten() {
            let _ = k.inner.bootstrap();
        }
        loop {
            tokio::select! {
                ev = futures::StreamExt::next(&mut self.swarm) => match ev {
                    Some(ev) => self.on_swarm_event(ev),
                    None => break,
                },
                cmd = self.commands.recv() => match cmd {
                    Some(cmd) => self.on_command(cmd),
                    // Every client handle is gone: the node stops.
                    None => break,
                },
                Some(req) = self.requests.recv() => self.on_request(req),
                _ = tick.tick() => {
                    self.unban_expired();
                    self.ask_history();
                    dht::prune(self.swarm.behaviour_mut().kads());
                }
            }
        }
        let _ = self.events.send(Event::Shutdown).await;
    }

    fn dial(&mut self, addr: Multiaddr, reply: Option<oneshot::Sender<Result<PeerId, String>>>) {
        let peer = addr.iter().find_map(|p| match p {
            libp2p::multiaddr::Protocol::P2p(id) => Some(id),
            _ => None,
        });
        if let Some(p) = peer {
            if self.swarm.is_connected(&p) {
                if let Some(r) = reply {
                    let _ = r.send(Ok(p));
                }
                return;
            }
        }
        let opts = match peer {
            Some(p) => DialOpts::peer_id(p)
                .addresses(vec![addr.clone()])
                .condition(PeerCondition::DisconnectedAndNotDialing)
                .allocate_new_port()
                .build(),
            None => DialOpts::unknown_peer_id()
                .address(addr.clone())
                .allocate_new_port()
                .build(),
        };
        let id = opts.connection_id();
        match self.swarm.dial(opts) {
            Ok(()) => {
                if let Some(r) = reply {
                    self.dials.insert(id, r);
                }
            }
            Err(e) => {
                log::debug!("dialing {addr}: {e}");
                if let Some(r) = reply {
                    let _ = r.send(Err(e.to_string()));
                }
            }
        }
    }

    fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Dial(addr, reply) => self.dial(addr, Some(reply)),
            Command::Disconnect(peer, reply) => {
                let _ = reply.send(self.swarm.disconnect_peer_id(peer).is_ok());
            }
            Command::Peers(reply) => {
                let v = self
                    .peers
                    .iter()
                    .map(|(p, i)| PeerView {
                        peer: p.to_string(),
                        addrs: i.addrs(),
                        agent: i.agent.clone(),
                        protocols: i.protocols.clone(),
                        connected_secs: i.since.elapsed().as_secs(),
                        mdns: self.mdns_peers.contains(p),
                    })
                    .collect();
                let _ = reply.send(v);
            }
            Command::ListenAddrs(reply) => {
                let _ = reply.send(self.listen_addrs.clone());
            }
            Command::Dht(reply) => {
                let b = self.swarm.behaviour_mut();
                let mut routing = 0;
                for k in b.kads().into_iter().flatten() {
                    routing += k
                        .inner
                        .kbuckets()
                        .map(|bucket| bucket.num_entries())
                        .sum::<usize>();
                }
                let held = dht::records_held(b.kads());
                let (names_held, names_own) = dht::names_held(b.kads());
                let _ = reply.send(DhtStats {
                    routing_peers: routing,
                    records_held: held,
                    names_held,
                    names_own,
                    ..self.dht.stats
                });
            }
            Command::PublishName {
                name,
                record,
                offline,
                reply,
            } => {
                let b = self.swarm.behaviour_mut();
                self.dht.publish(b.kads(), name, record, offline, reply);
            }
            Command::ResolveName {
                name,
                nocache,
                offline,
                found,
                rejects,
                reply,
            } => {
                let b = self.swarm.behaviour_mut();
                let r = self
                    .dht
                    .resolve(
                        b.kads(),
                        name,
                        found.clone(),
                        nocache,
                        offline,
                        rejects.clone(),
                    )
                    .and_then(|dhts| {
                        let peers = if offline {
                            0
                        } else {
                            self.ask_name(name, &found, &rejects)
                        };
                        match dhts + peers {
                            0 if !offline => {
                                Err("the DHT is off in this node (dht = false) and no \
                                 connected peer answers name lookups"
                                    .into())
                            }
                            _ => Ok(()),
                        }
                    });
                let _ = reply.send(r);
            }
            Command::Provide(keys, reply) => {
                let mut n = 0;
                for key in keys {
                    let rk = libp2p::kad::RecordKey::new(&key.to_bytes());
                    let mut ok = false;
                    for k in self.swarm.behaviour_mut().kads().into_iter().flatten() {
                        match k.inner.start_providing(rk.clone()) {
                            Ok(_) => ok = true,
                            Err(e) => log::warn!("providing {key:?}: {e}"),
                        }
                    }
                    n += ok as usize;
                }
                let _ = reply.send(n);
            }
        }
    }

    fn on_request(&mut self, req: NodeRequest) {
        match req {
            NodeRequest::FindProviders(key) => {
                let b = self.swarm.behaviour_mut();
                for k in [b.kad.as_mut(), b.lan.as_mut()].into_iter().flatten() {
                    self.dht.find(k, key);
                }
            }
            NodeRequest::Ban(peer) => {
                self.swarm.behaviour_mut().blocked.block_peer(peer);
                self.banned
                    .insert(peer, Instant::now() + crate::ledger::BAN);
            }
        }
    }

    /// Asks connected peers that answer name lookups for their record of `name` (at most
    /// [`dht::ask::MAX_ASKED`]); returns how many were asked.
    fn ask_name(
        &mut self,
        name: cairn_names::Name,
        tx: &mpsc::Sender<dht::ipns::Found>,
        rejects: &dht::ipns::Rejects,
    ) -> usize {
        let room = dht::ask::MAX_IN_FLIGHT.saturating_sub(self.dht.asked.len());
        let peers: Vec<PeerId> = self
            .peers
            .iter()
            .filter(|(_, p)| p.protocols.iter().any(|s| s == dht::ask::PROTOCOL.as_ref()))
            .map(|(k, _)| *k)
            .filter(|k| self.dht.may_ask(*k))
            .take(dht::ask::MAX_ASKED.min(room))
            .collect();
        let b = self.swarm.behaviour_mut();
        let floor = Dht::floor(b.kads(), &name);
        for peer in &peers {
            let id = b.names.send_request(
                peer,
                dht::ask::Ask {
                    name: name.to_string(),
                },
            );
            self.dht.asked.insert(
                id,
                dht::ask::Asked {
                    name,
                    tx: tx.clone(),
                    floor,
                    rejects: rejects.clone(),
                },
            );
        }
        peers.len()
    }

    fn on_name_ask(&mut self, ev: request_response::Event<dht::ask::Ask, dht::ask::Answer>) {
        match ev {
            request_response::Event::Message {
                peer,
                message:
                    request_response::Message::Request {
                        request, channel, ..
                    },
                ..
            } => {
                if !self.dht.ask_allowed(peer) {
                    // Dropped unanswered, the asker's request fails; not charged: an honest
                    // node's users can make it ask this often.
                    return;
                }
                let b = self.swarm.behaviour_mut();
                let record = request
                    .name
                    .parse::<cairn_names::Name>()
                    .ok()
                    .and_then(|name| Dht::best_held(b.kads(), &name))
                    .map(|bytes| cairn_names::record::to_base64(&bytes));
                let _ = b.names.send_response(channel, dht::ask::Answer { record });
            }
            request_response::Event::Message {
                peer,
                message:
                    request_response::Message::Response {
                        request_id,
                        response,
                    },
                ..
            } => {
                if let Some(asked) = self.dht.asked.remove(&request_id) {
                    let b = self.swarm.behaviour_mut();
                    let kads = b.kads().map(|k| k.map(|k| &mut k.inner));
                    if let Err(p) = asked.answered(kads, peer, response) {
                        self.dht.stats.names_refused += 1;
                        self.engine(Event::Offence(p, crate::ledger::Offence::BadRecord));
                    }
                }
            }
            request_response::Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                log::debug!("name ask of {peer}: {error}");
                self.dht.asked.remove(&request_id);
            }
            _ => {}
        }
    }

    /// Asks every cairn peer whose statements are older than [`history::ASK_EVERY`].
    fn ask_history(&mut self) {
        let now = Instant::now();
        let fresh = |t: &Instant| now.duration_since(*t) < history::ASK_EVERY;
        self.history_asked.retain(|_, t| fresh(t));
        self.history_answered.retain(|_, t| fresh(t));
        // (Both maps hold only peers heard from within ASK_EVERY: at most the connection
        // limit's worth.)
        let due: Vec<PeerId> = self
            .peers
            .iter()
            .filter(|(k, p)| {
                p.protocols.iter().any(|s| s == history::PROTOCOL.as_ref())
                    && !self.history_asked.contains_key(k)
            })
            .map(|(k, _)| *k)
            .collect();
        for peer in due {
            self.ask_history_of(peer);
        }
    }

    fn ask_history_of(&mut self, peer: PeerId) {
        self.history_asked.insert(peer, Instant::now());
        self.swarm
            .behaviour_mut()
            .history
            .send_request(&peer, history::Ask {});
    }

    fn on_history(&mut self, ev: request_response::Event<history::Ask, history::Answer>) {
        match ev {
            request_response::Event::Message {
                peer,
                message: request_response::Message::Request { channel, .. },
                ..
            } => {
                // Once per ASK_EVERY per peer (the channel dropped unanswered otherwise).
                if self
                    .history_answered
                    .get(&peer)
                    .is_some_and(|t| t.elapsed() < history::ASK_EVERY / 2)
                {
                    return;
                }
                self.history_answered.insert(peer, Instant::now());
                let ours = self
                    .statements
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone();
                if let Some(ours) = ours {
                    let _ = self
                        .swarm
                        .behaviour_mut()
                        .history
                        .send_response(channel, ours);
                }
            }
            request_response::Event::Message {
                peer,
                message: request_response::Message::Response { response, .. },
                ..
            } => self.engine(Event::History(peer, response)),
            request_response::Event::OutboundFailure { peer, error, .. } => {
                log::debug!("history: asking {peer}: {error}");
            }
            _ => {}
        }
    }

    fn unban_expired(&mut self) {
        let now = Instant::now();
        let expired: Vec<PeerId> = self
            .banned
            .iter()
            .filter(|(_, t)| **t <= now)
            .map(|(p, _)| *p)
            .collect();
        for p in expired {
            self.banned.remove(&p);
            self.swarm.behaviour_mut().blocked.unblock_peer(p);
        }
    }

    /// A hint for the engine (providers, statements, mDNS): dropped, with a warning, when
    /// the engine is behind. Who is connected does not travel this way.
    fn engine(&self, ev: Event) {
        if let Err(e) = self.events.try_send(ev) {
            log::warn!("bitswap engine is behind; dropped a hint ({e})");
        }
    }

    fn on_swarm_event(&mut self, ev: SwarmEvent<BehaviourEvent>) {
        match ev {
            SwarmEvent::NewListenAddr { address, .. } => {
                log::info!("listening on {address}");
                // Kademlia announces only external addresses in provider records; on a LAN
                // (or loopback) the listen addresses are the ones peers can use.
                self.swarm.add_external_address(address.clone());
                self.listen_addrs.push(address);
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                endpoint,
                ..
            } => {
                if let Some(r) = self.dials.remove(&connection_id) {
                    let _ = r.send(Ok(peer_id));
                }
                let addr = match &endpoint {
                    ConnectedPoint::Dialer { address, .. } => address.clone(),
                    ConnectedPoint::Listener { send_back_addr, .. } => send_back_addr.clone(),
                };
                let info = self.peers.entry(peer_id).or_insert_with(|| PeerInfo {
                    connected: Vec::new(),
                    listen: Vec::new(),
                    agent: String::new(),
                    protocols: Vec::new(),
                    since: Instant::now(),
                });
                info.connected.push((connection_id, addr.clone()));
                if endpoint.is_dialer() {
                    // We reached it there: the DHT can use that address (if in its scope).
                    for k in self.swarm.behaviour_mut().kads().into_iter().flatten() {
                        if k.scope().allows(&addr) {
                            k.inner.add_address(&peer_id, addr.clone());
                        }
                    }
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                connection_id,
                num_established,
                ..
            } => {
                if num_established == 0 {
                    self.peers.remove(&peer_id);
                } else if let Some(i) = self.peers.get_mut(&peer_id) {
                    i.connected.retain(|(id, _)| *id != connection_id);
                }
            }
            SwarmEvent::OutgoingConnectionError {
                connection_id,
                peer_id,
                error,
            } => {
                log::debug!("dial {peer_id:?} failed: {error}");
                if let Some(r) = self.dials.remove(&connection_id) {
                    let _ = r.send(Err(error.to_string()));
                }
            }
            SwarmEvent::Behaviour(ev) => self.on_behaviour_event(ev),
            _ => {}
        }
    }

    fn on_behaviour_event(&mut self, ev: BehaviourEvent) {
        match ev {
            BehaviourEvent::Identify(identify::Event::Received { peer_id, info, .. }) => {
                // At most MAX_ADDRS_PER_PEER of what it says, replacing what it said before:
                // a peer pushing new addresses again and again grows nothing.
                let listen = Scope::Lan.filter(info.listen_addrs.iter().cloned());
                let b = self.swarm.behaviour_mut();
                for (proto, k) in [(KAD, b.kad.as_mut()), (LAN_KAD, b.lan.as_mut())] {
                    if let Some(k) = k {
                        if info.protocols.contains(&proto) {
                            dht::learn(k, &peer_id, &listen);
                        }
                    }
                }
                if info.protocols.contains(&history::PROTOCOL)
                    && self.peers.contains_key(&peer_id)
                    && !self.history_asked.contains_key(&peer_id)
                {
                    self.ask_history_of(peer_id);
                }
                if reads_streams_concurrently(&info) {
                    self.engine(Event::Concurrent(peer_id));
                }
                if let Some(p) = self.peers.get_mut(&peer_id) {
                    p.agent = info.agent_version.chars().take(128).collect();
                    p.protocols = info
                        .protocols
                        .iter()
                        .take(64)
                        .map(|p| p.to_string())
                        .collect();
                    p.listen = listen;
                    debug_assert!(p.listen.len() <= MAX_ADDRS_PER_PEER);
                }
            }
            BehaviourEvent::Mdns(mdns::Event::Discovered(found)) => {
                for (peer, addr) in found {
                    if self.mdns_peers.len() >= MAX_CONNECTIONS as usize
                        && !self.mdns_peers.contains(&peer)
                    {
                        continue;
                    }
                    let fresh = self.mdns_peers.insert(peer);
                    if self.swarm.is_connected(&peer) {
                        if fresh {
                            self.engine(Event::Mdns(peer));
                        }
                    } else {
                        log::info!("mDNS: found {peer} at {addr}");
                        // Both ends of a LAN find each other at the same moment. Dialing
                        // from the listen port would make the two dials one TCP
                        // simultaneous open, where both ends act as initiator and the noise
                        // handshake fails (seen 1 run in 5 under load): every dial of
                        // ours takes a fresh port.
                        let opts = DialOpts::peer_id(peer)
                            .addresses(vec![addr])
                            .condition(PeerCondition::DisconnectedAndNotDialing)
                            .allocate_new_port()
                            .build();
                        let _ = self.swarm.dial(opts);
                    }
                }
            }
            BehaviourEvent::Mdns(mdns::Event::Expired(gone)) => {
                for (peer, _) in gone {
                    self.mdns_peers.remove(&peer);
                }
            }
            BehaviourEvent::Kad(ev) => self.on_kad_event(Scope::Public, ev),
            BehaviourEvent::Lan(ev) => self.on_kad_event(Scope::Lan, ev),
            BehaviourEvent::History(ev) => self.on_history(ev),
            BehaviourEvent::Names(ev) => self.on_name_ask(ev),
            _ => {}
        }
    }

    fn on_kad_event(&mut self, scope: Scope, ev: libp2p::kad::Event) {
        let local = *self.swarm.local_peer_id();
        let b = self.swarm.behaviour_mut();
        let kad = match scope {
            Scope::Public => b.kad.as_mut(),
            Scope::Lan => b.lan.as_mut(),
        };
        let Some(kad) = kad else { return };
        let found = match self.dht.on_event(kad, local, ev) {
            Some(dht::Out::Providers(found)) => found,
            Some(dht::Out::BadRecord(peer)) => {
                self.engine(Event::Offence(peer, crate::ledger::Offence::BadRecord));
                return;
            }
            Some(dht::Out::Flood(peer)) => {
                self.engine(Event::Offence(peer, crate::ledger::Offence::Flood));
                return;
            }
            None => return,
        };
        for p in &found.providers {
            if !self.swarm.is_connected(p) {
                // Now, while the lookup still knows the addresses it was told (each DHT
                // offers those in its scope, at most sixteen; the node's dial limit holds).
                let opts = DialOpts::peer_id(*p)
                    .condition(PeerCondition::DisconnectedAndNotDialing)
                    .allocate_new_port()
                    .build();
                if let Err(e) = self.swarm.dial(opts) {
                    log::debug!("dialing provider {p}: {e}");
                }
            }
        }
        log::debug!("providers of {:?}: {:?}", found.key, found.providers);
        self.engine(Event::Providers {
            key: found.key,
            peers: found.providers,
        });
    }
}

/// Whether a peer reads many inbound streams at once, as far as identify tells: cairn nodes
/// (they speak the history protocol), kubo, Helia and other js-libp2p nodes (`libp2p/…`).
fn reads_streams_concurrently(info: &identify::Info) -> bool {
    let agent = &info.agent_version;
    info.protocols.contains(&history::PROTOCOL)
        || agent.starts_with("kubo/")
        || agent.starts_with("go-ipfs/")
        || agent.starts_with("helia/")
        || agent.starts_with("libp2p/")
}
