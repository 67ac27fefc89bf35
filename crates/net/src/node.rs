//! The swarm and its event loop: transports, identify, ping, Kademlia (public and LAN), mDNS,
//! connection limits, bans, and the Bitswap behaviour. The loop only moves queued work:
//! peer events go to the Bitswap engine, requests from the engine and the client handle are
//! turned into swarm calls, and replies go back on oneshot channels.

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
    kad::{
        self,
        store::{MemoryStore, RecordStore},
        GetProvidersOk, QueryId, QueryResult, RecordKey,
    },
    mdns, noise, ping, request_response,
    swarm::{
        behaviour::toggle::Toggle,
        dial_opts::{DialOpts, PeerCondition},
        ConnectionId, NetworkBehaviour, SwarmEvent,
    },
    tcp, Multiaddr, PeerId, StreamProtocol, Swarm,
};
use multihash::Multihash;
use tokio::sync::{mpsc, oneshot};

use crate::{
    bitswap::{self, engine::Statements, Engine, Event, NodeRequest},
    client::{Client, PeerView},
    config::Config,
    history, NetError,
};

/// The public DHT's protocol (kubo refuses peers with only private addresses there).
pub const KAD: StreamProtocol = StreamProtocol::new("/ipfs/kad/1.0.0");
/// kubo's LAN DHT, which accepts peers with private and loopback addresses.
pub const LAN_KAD: StreamProtocol = StreamProtocol::new("/ipfs/lan/kad/1.0.0");
/// kubo's largest DHT message.
const KAD_PACKET: usize = 4 << 20;
/// Provider records accepted from others, in all, and per provider.
const PROVIDER_KEYS: usize = 1 << 20;
const PROVIDER_KEYS_PER_PEER: usize = 1 << 16;
/// How long a connection with nothing going on stays open.
const IDLE: Duration = Duration::from_secs(120);

#[derive(NetworkBehaviour)]
#[behaviour(prelude = "libp2p::swarm::derive_prelude")]
struct Behaviour {
    limits: connection_limits::Behaviour,
    blocked: allow_block_list::Behaviour<allow_block_list::BlockedPeers>,
    identify: identify::Behaviour,
    ping: ping::Behaviour,
    bitswap: bitswap::behaviour::Behaviour,
    kad: Toggle<kad::Behaviour<MemoryStore>>,
    lan: Toggle<kad::Behaviour<MemoryStore>>,
    mdns: Toggle<mdns::tokio::Behaviour>,
    history: history::Behaviour,
}

/// Requests from the client handle.
pub(crate) enum Command {
    Dial(Multiaddr, oneshot::Sender<Result<PeerId, String>>),
    Disconnect(PeerId, oneshot::Sender<bool>),
    Peers(oneshot::Sender<Vec<PeerView>>),
    ListenAddrs(oneshot::Sender<Vec<Multiaddr>>),
    Provide(Vec<Multihash<64>>, oneshot::Sender<usize>),
    Dht(oneshot::Sender<DhtStats>),
}

/// What the DHT did, for `cairn stat` and the tests.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct DhtStats {
    /// Provider announcements that reached the closest peers, and ones that failed.
    pub provided: u64,
    pub provide_failed: u64,
    /// Provider lookups started, and providers they found (other than us).
    pub lookups: u64,
    pub providers_found: u64,
    /// Provider records others announced to us and we kept.
    pub records_kept: u64,
    /// Peers in the routing tables (public + LAN).
    pub routing_peers: usize,
}

fn kad_behaviour(peer: PeerId, protocol: StreamProtocol) -> kad::Behaviour<MemoryStore> {
    let mut cfg = kad::Config::new(protocol);
    cfg.set_max_packet_size(KAD_PACKET);
    // Records others send are checked before they are kept (see `on_kad_request`).
    cfg.set_record_filtering(kad::StoreInserts::FilterBoth);
    let store = MemoryStore::with_config(
        peer,
        kad::store::MemoryStoreConfig {
            max_records: 0,
            max_value_bytes: 0,
            max_provided_keys: PROVIDER_KEYS,
            max_providers_per_key: 20,
        },
    );
    let mut k = kad::Behaviour::with_config(peer, store, cfg);
    // Loopback and LAN addresses never make kad a server on its own.
    k.set_mode(Some(kad::Mode::Server));
    k
}

/// Starts the node on the current tokio runtime: listens, dials the bootstrap peers, and
/// runs the swarm and the Bitswap engine as tasks. Returns once it listens.
pub async fn start(config: &Config, key: Keypair, store: Arc<Store>) -> Result<Client, NetError> {
    let local = key.public().to_peer_id();
    let (bitswap, inbound, opener) = bitswap::behaviour::Behaviour::new();
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
                        .with_max_established(Some(1024))
                        .with_max_established_per_peer(Some(4))
                        .with_max_pending_incoming(Some(256)),
                ),
                blocked: Default::default(),
                identify: identify::Behaviour::new(
                    identify::Config::new("/ipfs/0.1.0".into(), key.public())
                        .with_agent_version(format!("cairn/{}", env!("CARGO_PKG_VERSION")))
                        .with_push_listen_addr_updates(true),
                ),
                ping: ping::Behaviour::default(),
                bitswap,
                kad: Toggle::from(config.dht.then(|| kad_behaviour(local, KAD))),
                lan: Toggle::from(config.dht.then(|| kad_behaviour(local, LAN_KAD))),
                mdns: Toggle::from(mdns),
                history: history::behaviour(),
            })
        })
        .map_err(|e| NetError::Transport(e.to_string()))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(IDLE))
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
    let (node_tx, node_rx) = mpsc::channel(1024);
    let statements = Statements::default();
    let (engine, events) = Engine::new(
        store,
        opener.clone(),
        inbound,
        node_tx,
        config,
        key.clone(),
        statements.clone(),
    );
    tokio::spawn(engine.run());
    let (commands_tx, commands) = mpsc::channel(256);
    let mut lp = EventLoop {
        swarm,
        commands,
        requests: node_rx,
        events: events.clone(),
        peers: HashMap::new(),
        mdns_peers: HashSet::new(),
        dials: HashMap::new(),
        provider_queries: HashMap::new(),
        provider_counts: HashMap::new(),
        listen_addrs: Vec::new(),
        banned: HashMap::new(),
        dht: DhtStats::default(),
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
    Ok(Client::new(local, commands_tx, events, opener))
}

struct PeerInfo {
    addrs: Vec<Multiaddr>,
    agent: String,
    protocols: Vec<String>,
    connections: usize,
    since: Instant,
}

struct EventLoop {
    swarm: Swarm<Behaviour>,
    commands: mpsc::Receiver<Command>,
    requests: mpsc::Receiver<NodeRequest>,
    events: mpsc::Sender<Event>,
    peers: HashMap<PeerId, PeerInfo>,
    mdns_peers: HashSet<PeerId>,
    dials: HashMap<ConnectionId, oneshot::Sender<Result<PeerId, String>>>,
    provider_queries: HashMap<QueryId, Multihash<64>>,
    provider_counts: HashMap<PeerId, usize>,
    listen_addrs: Vec<Multiaddr>,
    banned: HashMap<PeerId, Instant>,
    dht: DhtStats,
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
        if let Some(k) = self.swarm.behaviour_mut().kad.as_mut() {
            let _ = k.bootstrap();
        }
        if let Some(k) = self.swarm.behaviour_mut().lan.as_mut() {
            let _ = k.bootstrap();
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
                        addrs: i.addrs.iter().map(|a| a.to_string()).collect(),
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
                for k in [b.kad.as_mut(), b.lan.as_mut()].into_iter().flatten() {
                    routing += k
                        .kbuckets()
                        .map(|bucket| bucket.num_entries())
                        .sum::<usize>();
                }
                let _ = reply.send(DhtStats {
                    routing_peers: routing,
                    ..self.dht
                });
            }
            Command::Provide(keys, reply) => {
                let mut n = 0;
                for key in keys {
                    let rk = RecordKey::new(&key.to_bytes());
                    let b = self.swarm.behaviour_mut();
                    let mut ok = false;
                    for k in [b.kad.as_mut(), b.lan.as_mut()].into_iter().flatten() {
                        match k.start_providing(rk.clone()) {
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
                let rk = RecordKey::new(&key.to_bytes());
                let b = self.swarm.behaviour_mut();
                let mut ids = Vec::new();
                for k in [b.kad.as_mut(), b.lan.as_mut()].into_iter().flatten() {
                    ids.push(k.get_providers(rk.clone()));
                }
                for id in ids {
                    self.dht.lookups += 1;
                    self.provider_queries.insert(id, key);
                }
            }
            NodeRequest::Ban(peer) => {
                self.swarm.behaviour_mut().blocked.block_peer(peer);
                self.banned
                    .insert(peer, Instant::now() + crate::ledger::BAN);
            }
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

    fn on_history(&mut self, ev: request_response::Event<history::Ask, history::Signed>) {
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
                log::debug!("ledger: asking {peer}: {error}");
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

    fn engine(&self, ev: Event) {
        if let Err(e) = self.events.try_send(ev) {
            log::warn!("bitswap engine is behind; dropped a peer event ({e})");
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
                num_established,
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
                    addrs: Vec::new(),
                    agent: String::new(),
                    protocols: Vec::new(),
                    connections: 0,
                    since: Instant::now(),
                });
                info.connections += 1;
                if !info.addrs.contains(&addr) {
                    info.addrs.push(addr.clone());
                }
                if endpoint.is_dialer() {
                    // We reached it there: the DHT can use that address.
                    let b = self.swarm.behaviour_mut();
                    for k in [b.kad.as_mut(), b.lan.as_mut()].into_iter().flatten() {
                        k.add_address(&peer_id, addr.clone());
                    }
                }
                if num_established.get() == 1 {
                    self.engine(Event::Connected {
                        peer: peer_id,
                        mdns: self.mdns_peers.contains(&peer_id),
                    });
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established,
                ..
            } => {
                if num_established == 0 {
                    self.peers.remove(&peer_id);
                    self.engine(Event::Disconnected(peer_id));
                } else if let Some(i) = self.peers.get_mut(&peer_id) {
                    i.connections = num_established as usize;
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
                let b = self.swarm.behaviour_mut();
                for (proto, k) in [(KAD, b.kad.as_mut()), (LAN_KAD, b.lan.as_mut())] {
                    if let Some(k) = k {
                        if info.protocols.contains(&proto) {
                            for a in &info.listen_addrs {
                                k.add_address(&peer_id, a.clone());
                            }
                        }
                    }
                }
                if info.protocols.contains(&history::PROTOCOL)
                    && self.peers.contains_key(&peer_id)
                    && !self.history_asked.contains_key(&peer_id)
                {
                    self.ask_history_of(peer_id);
                }
                if let Some(p) = self.peers.get_mut(&peer_id) {
                    p.agent = info.agent_version.clone();
                    p.protocols = info.protocols.iter().map(|p| p.to_string()).collect();

                    for a in info.listen_addrs {
                        if !p.addrs.contains(&a) {
                            p.addrs.push(a);
                        }
                    }
                }
            }
            BehaviourEvent::Mdns(mdns::Event::Discovered(found)) => {
                for (peer, addr) in found {
                    let fresh = self.mdns_peers.insert(peer);
                    if self.swarm.is_connected(&peer) {
                        if fresh {
                            self.engine(Event::Connected { peer, mdns: true });
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
            BehaviourEvent::Kad(ev) | BehaviourEvent::Lan(ev) => self.on_kad_event(ev),
            BehaviourEvent::History(ev) => self.on_history(ev),
            _ => {}
        }
    }

    fn on_kad_event(&mut self, ev: kad::Event) {
        match ev {
            kad::Event::InboundRequest {
                request: kad::InboundRequest::AddProvider { record: Some(r) },
            } => self.accept_provider(r),
            kad::Event::OutboundQueryProgressed { id, result, .. } => match result {
                QueryResult::GetProviders(Ok(GetProvidersOk::FoundProviders {
                    providers, ..
                })) => {
                    let Some(key) = self.provider_queries.get(&id).copied() else {
                        return;
                    };
                    let me = *self.swarm.local_peer_id();
                    let peers: Vec<PeerId> = providers.into_iter().filter(|p| *p != me).collect();
                    for p in &peers {
                        if !self.swarm.is_connected(p) {
                            // Now, while the query still knows the addresses it was given.
                            let opts = DialOpts::peer_id(*p)
                                .condition(PeerCondition::DisconnectedAndNotDialing)
                                .allocate_new_port()
                                .build();
                            let _ = self.swarm.dial(opts);
                        }
                    }
                    log::debug!("providers of {key:?}: {peers:?}");
                    self.dht.providers_found += peers.len() as u64;
                    self.engine(Event::Providers { key, peers });
                }
                QueryResult::GetProviders(_) => {
                    self.provider_queries.remove(&id);
                }
                QueryResult::StartProviding(Ok(_)) => self.dht.provided += 1,
                QueryResult::StartProviding(Err(e)) => {
                    self.dht.provide_failed += 1;
                    log::debug!("providing: {e}");
                }
                _ => {}
            },
            _ => {}
        }
    }

    /// A provider record someone sent us, kept only if it is one we can use: its key is a
    /// multihash, the provider is the sender (kad checks that), it has at most a few
    /// addresses, and the provider has not filled its share of the store.
    fn accept_provider(&mut self, mut r: kad::ProviderRecord) {
        if Multihash::<64>::from_bytes(r.key.as_ref()).is_err() {
            log::debug!("refused a provider record whose key is not a multihash");
            return;
        }
        r.addresses.truncate(8);
        let n = self.provider_counts.entry(r.provider).or_default();
        if *n >= PROVIDER_KEYS_PER_PEER {
            return;
        }
        *n += 1;
        let b = self.swarm.behaviour_mut();
        for k in [b.kad.as_mut(), b.lan.as_mut()].into_iter().flatten() {
            if let Err(e) = k.store_mut().add_provider(r.clone()) {
                log::debug!("provider record: {e}");
            }
        }
        self.dht.records_kept += 1;
    }
}
