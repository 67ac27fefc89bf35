//! Kademlia, twice: the public DHT (`/ipfs/kad/1.0.0`) and kubo's LAN DHT
//! (`/ipfs/lan/kad/1.0.0`), kept apart. Each has its own provider store, its own routing
//! table and its own rule for addresses ([`addrs::Scope`]): the public one never dials,
//! keeps or serves a private or loopback address; the LAN one exists for them.
//!
//! What a DHT peer can make us do is bounded here:
//!
//! | what                                   | bound                                  |
//! |----------------------------------------|----------------------------------------|
//! | one DHT message                        | [`KAD_PACKET`] (256 KiB)               |
//! | one lookup                             | [`QUERY_TIMEOUT`] (30 s)               |
//! | providers taken from lookups of a key  | [`crate::bitswap::wants::MAX_PROVIDERS`] (20) |
//! | addresses dialled or kept for a peer   | [`addrs::MAX_ADDRS_PER_PEER`] (16)     |
//! | dials in progress                      | the node's pending-outgoing limit (64) |
//! | provider lookups in flight, per DHT    | [`MAX_LOOKUPS`]                        |
//! | provider records                       | see [`providers`]                      |
//! | IPNS records                           | see [`records`]                        |
//! | name lookups and publications          | see [`ipns`]                           |
//! | records asked of connected peers       | see [`ask`]                            |
//!
//! One GET_PROVIDERS answer of kubo's 4 MiB could name 75,000 providers with addresses of
//! the sender's choosing; cairn reads answers of up to 256 KiB (under 5,000), takes twenty
//! providers, dials each at its in-scope addresses only (at most sixteen, each an IP address
//! and a port), and never more than the node's dial limit at once.

pub mod addrs;
pub mod ask;
pub mod ipns;
pub mod providers;
pub mod records;

use std::collections::HashMap;

use cairn_names::Name;
use libp2p::{
    kad::{
        self, store::RecordStore, AddProviderOk, GetProvidersOk, GetRecordOk, InboundRequest,
        ProviderRecord, QueryId, QueryResult, Quorum, RecordKey,
    },
    Multiaddr, PeerId, StreamProtocol,
};
use multihash::Multihash;
use tokio::sync::{mpsc, oneshot};

use self::{
    addrs::{Filtered, Scope},
    ipns::{Publishing, Rejects, Resolving},
    providers::ProviderStore,
};

/// The public DHT's protocol (kubo refuses peers with only private addresses there).
pub const KAD: StreamProtocol = StreamProtocol::new("/ipfs/kad/1.0.0");
/// kubo's LAN DHT, which accepts peers with private and loopback addresses.
pub const LAN_KAD: StreamProtocol = StreamProtocol::new("/ipfs/lan/kad/1.0.0");
/// The largest DHT message taken. kubo allows 4 MiB, but no honest answer comes near 256
/// KiB (twenty providers and twenty closer peers with sixteen addresses each are ~25 KiB;
/// an IPNS record is under 10 KiB), and everything a message names stays in the lookup's
/// state until the lookup ends: 4 MiB is 75,000 providers per answer, 256 KiB under 5,000.
pub const KAD_PACKET: usize = 256 << 10;
/// How long a lookup may run (kad's default is 60 s).
pub const QUERY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
/// Provider lookups in flight at once in one DHT; a lookup past it is not started (the
/// want planner looks again a little later).
pub const MAX_LOOKUPS: usize = 16;

pub type Kad = kad::Behaviour<ProviderStore>;

/// One DHT's behaviour: Kademlia with its addresses filtered by scope.
pub fn behaviour(local: PeerId, scope: Scope) -> Filtered<Kad> {
    let protocol = match scope {
        Scope::Public => KAD,
        Scope::Lan => LAN_KAD,
    };
    let mut cfg = kad::Config::new(protocol);
    cfg.set_max_packet_size(KAD_PACKET);
    cfg.set_query_timeout(QUERY_TIMEOUT);
    // Records others send are checked before they are kept (see `Dht::on_event`).
    cfg.set_record_filtering(kad::StoreInserts::FilterBoth);
    // Records are re-put by their owners and followers (cairn's own republishing), never
    // by kad on its own, and a lookup's write-back is ours (`ipns::Resolving::end`).
    cfg.set_replication_interval(None);
    cfg.set_publication_interval(None);
    cfg.set_record_ttl(None);
    cfg.set_caching(kad::Caching::Disabled);
    if scope == Scope::Public {
        // Peers enter the public routing table only at their public addresses (`on_event`).
        cfg.set_kbucket_inserts(kad::BucketInserts::Manual);
    }
    let mut k = kad::Behaviour::with_config(local, ProviderStore::new(local, scope), cfg);
    // Loopback and LAN addresses never make kad a server on its own.
    k.set_mode(Some(kad::Mode::Server));
    Filtered::new(k, scope)
}

/// What the DHTs did, for `cairn stat` and the tests.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct DhtStats {
    /// Provider announcements that reached the closest peers, and ones that failed.
    pub provided: u64,
    pub provide_failed: u64,
    /// Provider lookups started, lookups not started (too many in flight), and providers
    /// they found (other than us, at most twenty a key).
    pub lookups: u64,
    pub lookups_skipped: u64,
    pub providers_found: u64,
    /// Provider records others announced to us and we kept, and ones refused.
    pub records_kept: u64,
    pub records_refused: u64,
    /// Provider records from others held now (public + LAN).
    pub records_held: usize,
    /// IPNS records from peers kept and refused (did not verify; full stores are not
    /// counted), held now (others', published here; public + LAN).
    pub names_kept: u64,
    pub names_refused: u64,
    pub names_held: usize,
    pub names_own: usize,
    /// Peers in the routing tables (public + LAN).
    pub routing_peers: usize,
}

/// Providers found for a block.
pub struct Found {
    pub key: Multihash<64>,
    pub providers: Vec<PeerId>,
}

/// What a DHT event asks of the node.
pub enum Out {
    /// Providers found for a block.
    Providers(Found),
    /// A peer sent a record that did not verify.
    BadRecord(PeerId),
    /// A peer put records faster than [`PUTS_PER_SECOND`].
    Flood(PeerId),
}

/// Records one peer may put here per second. Each costs a signature check (an Ed25519
/// verification is about 50 µs, so 100 a second is a few percent of a core); a follower
/// republishing a thousand names in a small network, where every peer is among every
/// name's closest, puts about 80 a second at each (`cairn`'s names, 40 names a second
/// into two DHTs).
pub const PUTS_PER_SECOND: u32 = 100;

/// What the node's event loop keeps of both DHTs: lookups in flight and counters.
#[derive(Default)]
pub struct Dht {
    /// Each Kademlia numbers its queries from 0: a lookup is known by its DHT and its number.
    lookups: HashMap<(Scope, QueryId), Multihash<64>>,
    in_flight: [usize; 2],
    /// Name lookups, one per DHT asked; the asker's channel closes when all have ended.
    resolving: HashMap<(Scope, QueryId), Resolving>,
    /// Name publications, by number; and the puts (one per DHT) of each.
    publishing: HashMap<u64, Publishing>,
    puts: HashMap<(Scope, QueryId), u64>,
    next_publish: u64,
    /// PUT_VALUEs per peer in the current second (cleared each second; at most one entry per
    /// peer that put something within it).
    puts_this_second: HashMap<PeerId, u32>,
    /// Direct asks ([`ask`]) per peer in the current second, kept as the puts are: theirs
    /// of us, and ours of them.
    asks_this_second: HashMap<PeerId, u32>,
    asking_this_second: HashMap<PeerId, u32>,
    second: Option<std::time::Instant>,
    /// Our direct asks waiting for their answer ([`ask::MAX_IN_FLIGHT`] at most).
    pub asked: HashMap<libp2p::request_response::OutboundRequestId, ask::Asked>,
    pub stats: DhtStats,
}

fn slot(scope: Scope) -> usize {
    match scope {
        Scope::Public => 0,
        Scope::Lan => 1,
    }
}

impl Dht {
    /// Starts a provider lookup of `key` in `kad`, unless [`MAX_LOOKUPS`] are in flight.
    pub fn find(&mut self, kad: &mut Filtered<Kad>, key: Multihash<64>) {
        let scope = kad.scope();
        if self.in_flight[slot(scope)] >= MAX_LOOKUPS {
            self.stats.lookups_skipped += 1;
            return;
        }
        let id = kad.inner.get_providers(RecordKey::new(&key.to_bytes()));
        self.in_flight[slot(scope)] += 1;
        self.stats.lookups += 1;
        self.lookups.insert((scope, id), key);
    }

    /// Whether `peer` may put another record this second.
    fn put_allowed(&mut self, peer: PeerId) -> bool {
        self.tick();
        let n = self.puts_this_second.entry(peer).or_default();
        *n += 1;
        *n <= PUTS_PER_SECOND
    }

    /// Whether `peer` may have another direct ask answered this second.
    pub fn ask_allowed(&mut self, peer: PeerId) -> bool {
        self.tick();
        let n = self.asks_this_second.entry(peer).or_default();
        *n += 1;
        *n <= ask::ANSWERS_PER_SECOND
    }

    /// Whether this node may ask `peer` directly once more this second (at most
    /// [`ask::ASKS_PER_SECOND`], half of what a peer answers, so our users cannot make us
    /// flood anyone).
    pub fn may_ask(&mut self, peer: PeerId) -> bool {
        self.tick();
        let n = self.asking_this_second.entry(peer).or_default();
        if *n >= ask::ASKS_PER_SECOND {
            return false;
        }
        *n += 1;
        true
    }

    /// Starts a new second of counts when the last one is over.
    fn tick(&mut self) {
        let now = std::time::Instant::now();
        if self
            .second
            .is_none_or(|t| now.duration_since(t) >= std::time::Duration::from_secs(1))
        {
            self.second = Some(now);
            self.puts_this_second.clear();
            self.asks_this_second.clear();
            self.asking_this_second.clear();
        }
    }

    /// The highest sequence of `name` this node has seen, in any DHT store.
    pub fn floor(kads: [Option<&mut Filtered<Kad>>; 2], name: &Name) -> u64 {
        let key = records::key_of(name);
        kads.into_iter()
            .flatten()
            .filter_map(|k| k.inner.store_mut().records.floor(&key))
            .max()
            .unwrap_or(0)
    }

    /// The best record of `name` this node holds, in any DHT store, for a peer that asks.
    pub fn best_held(kads: [Option<&mut Filtered<Kad>>; 2], name: &Name) -> Option<Vec<u8>> {
        let key = records::key_of(name);
        let mut best: Option<(cairn_names::Record, Vec<u8>)> = None;
        for k in kads.into_iter().flatten() {
            if let Some(h) = k.inner.store_mut().records.get(&key) {
                let better = match &best {
                    None => true,
                    Some((r, b)) => {
                        cairn_names::record::better((r, b), (&h.record, &h.bytes)).1
                            == h.bytes.as_slice()
                    }
                };
                if better {
                    best = Some((h.record.clone(), h.bytes.clone()));
                }
            }
        }
        best.map(|(_, b)| b)
    }

    /// Name lookups and publications in flight.
    fn name_queries(&self) -> usize {
        self.resolving.len() + self.publishing.len()
    }

    /// Looks `name` up in every DHT given; each valid record found goes to `tx` as it
    /// arrives (this node's own first, unless `nocache`), and `tx` closes when every lookup
    /// (and every direct ask the caller adds) has ended. `offline`: this node's records
    /// only. Returns how many DHTs were asked (none when the DHT is off).
    pub fn resolve(
        &mut self,
        kads: [Option<&mut Filtered<Kad>>; 2],
        name: Name,
        tx: mpsc::Sender<ipns::Found>,
        nocache: bool,
        offline: bool,
        rejects: Rejects,
    ) -> Result<usize, String> {
        let key = records::key_of(&name);
        if offline {
            for k in kads.into_iter().flatten() {
                if let Some(h) = k.inner.store_mut().records.get(&key) {
                    let _ = tx.try_send(ipns::Found {
                        record: h.record.clone(),
                        bytes: h.bytes.clone(),
                        from: None,
                        direct: false,
                    });
                }
            }
            return Ok(0);
        }
        if self.name_queries() >= ipns::MAX_NAME_QUERIES {
            return Err(format!(
                "{} name lookups and publications are in flight already; try again",
                ipns::MAX_NAME_QUERIES
            ));
        }
        let mut asked = 0;
        for k in kads.into_iter().flatten() {
            let floor = k.inner.store_mut().records.floor(&key).unwrap_or(0);
            let id = k.inner.get_record(key.clone());
            self.resolving.insert(
                (k.scope(), id),
                Resolving::new(name, tx.clone(), nocache, floor, rejects.clone()),
            );
            asked += 1;
        }
        Ok(asked)
    }

    /// Publishes a signed record of `name`: kept here (it must verify), then, unless
    /// `offline`, put at the closest peers of every DHT given; `reply` gets `Ok` at the
    /// first peer's acknowledgement, or why none came.
    pub fn publish(
        &mut self,
        kads: [Option<&mut Filtered<Kad>>; 2],
        name: Name,
        bytes: Vec<u8>,
        offline: bool,
        reply: oneshot::Sender<Result<(), String>>,
    ) {
        let key = records::key_of(&name);
        let kads: Vec<&mut Filtered<Kad>> = kads.into_iter().flatten().collect();
        if kads.is_empty() {
            let _ = reply.send(Err("the DHT is off in this node (dht = false)".into()));
            return;
        }
        if !offline && self.name_queries() >= ipns::MAX_NAME_QUERIES {
            let _ = reply.send(Err(format!(
                "{} name lookups and publications are in flight already; try again",
                ipns::MAX_NAME_QUERIES
            )));
            return;
        }
        let mut kads = kads;
        // Verified once here, then kept in each DHT's store.
        let record = match cairn_names::record::verify(&name, &bytes, records::now_nanos()) {
            Ok(r) => r,
            Err(e) => {
                let _ = reply.send(Err(format!("the record is refused: {e}")));
                return;
            }
        };
        for k in kads.iter_mut() {
            match k.inner.store_mut().records.offer_verified(
                &key,
                &bytes,
                record.clone(),
                true,
                None,
            ) {
                Ok(records::Offer::Older(held)) => {
                    let _ = reply.send(Err(format!(
                        "the record is refused: this node holds a newer one (sequence {held}; this one {})",
                        record.sequence
                    )));
                    return;
                }
                Ok(_) => {}
                Err(e) => {
                    let _ = reply.send(Err(format!("the record is refused: {e}")));
                    return;
                }
            }
        }
        if offline {
            let _ = reply.send(Ok(()));
            return;
        }
        let n = self.next_publish;
        self.next_publish += 1;
        let mut p = Publishing {
            reply: Some(reply),
            left: 0,
            errors: Vec::new(),
        };
        for k in kads {
            let record = kad::Record {
                key: key.clone(),
                value: bytes.clone(),
                publisher: None,
                expires: None,
            };
            match k.inner.put_record(record, Quorum::One) {
                Ok(id) => {
                    self.puts.insert((k.scope(), id), n);
                    p.left += 1;
                }
                Err(e) => p.errors.push(format!("{:?} DHT: {e}", k.scope())),
            }
        }
        if p.left == 0 {
            p.last();
            return;
        }
        self.publishing.insert(n, p);
    }

    /// Handles one of `kad`'s events: providers found, or a peer to blame.
    pub fn on_event(
        &mut self,
        kad: &mut Filtered<Kad>,
        local: PeerId,
        ev: kad::Event,
    ) -> Option<Out> {
        let scope = kad.scope();
        match ev {
            kad::Event::InboundRequest {
                request: InboundRequest::AddProvider { record: Some(r) },
            } => {
                self.accept_provider(&mut kad.inner, r);
                None
            }
            kad::Event::InboundRequest {
                request:
                    InboundRequest::PutRecord {
                        source,
                        record: Some(r),
                        ..
                    },
            } => {
                // A flood of PUTs costs a signature check each: past the rate, refused
                // unchecked, and the sender charged.
                if !self.put_allowed(source) {
                    self.stats.names_refused += 1;
                    return Some(Out::Flood(source));
                }
                match kad
                    .inner
                    .store_mut()
                    .records
                    .offer(&r.key, &r.value, false, Some(source))
                {
                    Ok(records::Offer::Kept) => {
                        self.stats.names_kept += 1;
                        None
                    }
                    Ok(_) => None,
                    Err(e) => {
                        log::debug!("a record put by {source} refused: {e}");
                        if e.is_offence() {
                            self.stats.names_refused += 1;
                            Some(Out::BadRecord(source))
                        } else {
                            None
                        }
                    }
                }
            }
            kad::Event::OutboundQueryProgressed {
                id,
                result: QueryResult::GetRecord(r),
                step,
                ..
            } => {
                let mut blame = None;
                if let Some(res) = self.resolving.get_mut(&(scope, id)) {
                    if let Ok(GetRecordOk::FoundRecord(found)) = r {
                        if let Err(p) = res.found(&mut kad.inner, found) {
                            self.stats.names_refused += 1;
                            blame = Some(Out::BadRecord(p));
                        }
                    }
                    if step.last {
                        if let Some(res) = self.resolving.remove(&(scope, id)) {
                            res.end(&mut kad.inner);
                        }
                    }
                }
                blame
            }
            kad::Event::OutboundQueryProgressed {
                id,
                result: QueryResult::PutRecord(r),
                step,
                ..
            } => {
                if let Some(n) = self.puts.get(&(scope, id)).copied() {
                    if let Some(p) = self.publishing.get_mut(&n) {
                        p.ended(scope, r.map(|_| ()).map_err(|e| e.to_string()));
                    }
                    if step.last {
                        self.puts.remove(&(scope, id));
                        if self.publishing.get_mut(&n).is_some_and(|p| p.last()) {
                            self.publishing.remove(&n);
                        }
                    }
                }
                None
            }
            kad::Event::OutboundQueryProgressed {
                id, result, step, ..
            } => {
                let found = match result {
                    QueryResult::GetProviders(Ok(GetProvidersOk::FoundProviders {
                        providers,
                        ..
                    })) => self.lookups.get(&(scope, id)).map(|key| {
                        let providers: Vec<PeerId> = providers
                            .into_iter()
                            .filter(|p| *p != local)
                            .take(crate::bitswap::wants::MAX_PROVIDERS)
                            .collect();
                        self.stats.providers_found += providers.len() as u64;
                        Found {
                            key: *key,
                            providers,
                        }
                    }),
                    QueryResult::StartProviding(Ok(AddProviderOk { .. })) => {
                        self.stats.provided += 1;
                        None
                    }
                    QueryResult::StartProviding(Err(e)) => {
                        self.stats.provide_failed += 1;
                        log::debug!("providing: {e}");
                        None
                    }
                    _ => None,
                };
                if step.last && self.lookups.remove(&(scope, id)).is_some() {
                    self.in_flight[slot(scope)] -= 1;
                }
                found.map(Out::Providers)
            }
            kad::Event::RoutablePeer { peer, address } if scope == Scope::Public => {
                if scope.allows(&address) {
                    kad.inner.add_address(&peer, address);
                }
                None
            }
            kad::Event::RoutingUpdated {
                peer, addresses, ..
            } if scope == Scope::Public => {
                // kad adds the address of every new connection of a peer it knows: in the
                // public table, keep the public ones only.
                for a in addresses.iter() {
                    if !scope.allows(a) {
                        kad.inner.remove_address(&peer, a);
                    }
                }
                None
            }
            _ => None,
        }
    }

    /// A provider record someone announced to us, kept if it is one we can use: its key is
    /// a multihash, the provider is the sender (kad checks that), and the store has room.
    fn accept_provider(&mut self, kad: &mut Kad, r: ProviderRecord) {
        if Multihash::<64>::from_bytes(r.key.as_ref()).is_err() {
            log::debug!("refused a provider record whose key is not a multihash");
            self.stats.records_refused += 1;
            return;
        }
        match kad.store_mut().add_provider(r) {
            Ok(()) => self.stats.records_kept += 1,
            Err(e) => {
                log::debug!("provider record: {e}");
                self.stats.records_refused += 1;
            }
        }
    }
}

/// Sets what `kad`'s routing table knows of where `peer` listens to `addrs` (as identify
/// reported them): at most [`addrs::MAX_ADDRS_PER_PEER`] in scope, replacing what an
/// earlier report said, so that a peer pushing new addresses again and again does not grow
/// the table.
pub fn learn(kad: &mut Filtered<Kad>, peer: &PeerId, addrs: &[Multiaddr]) {
    let new = kad.scope().filter(addrs.iter().cloned());
    if new.is_empty() {
        return;
    }
    let key = kad::KBucketKey::from(*peer);
    let old: Vec<Multiaddr> = kad
        .inner
        .kbucket(*peer)
        .and_then(|b| {
            b.iter()
                .find(|e| *e.node.key == key)
                .map(|e| e.node.value.iter().cloned().collect())
        })
        .unwrap_or_default();
    let with_p2p: Vec<Multiaddr> = new
        .iter()
        .filter_map(|a| a.clone().with_p2p(*peer).ok())
        .collect();
    // Added before the old ones go, so the peer never drops out of the table meanwhile.
    for a in new {
        kad.inner.add_address(peer, a);
    }
    for a in old {
        if !with_p2p.contains(&a) {
            kad.inner.remove_address(peer, &a);
        }
    }
}

/// Provider records from others, in both stores (for the counters).
pub fn records_held(kads: [Option<&mut Filtered<Kad>>; 2]) -> usize {
    kads.into_iter()
        .flatten()
        .map(|k| k.inner.store_mut().others_len())
        .sum()
}

/// IPNS records held: (others', published here), public + LAN.
pub fn names_held(kads: [Option<&mut Filtered<Kad>>; 2]) -> (usize, usize) {
    kads.into_iter()
        .flatten()
        .map(|k| k.inner.store_mut().records.len())
        .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
}

/// Drops expired provider and IPNS records (the event loop calls it every few seconds).
pub fn prune(kads: [Option<&mut Filtered<Kad>>; 2]) {
    let now = std::time::Instant::now();
    for k in kads.into_iter().flatten() {
        k.inner.store_mut().prune(now);
        k.inner.store_mut().records.prune(now);
    }
}

#[cfg(test)]
mod tests {
    use libp2p::{
        core::Endpoint,
        swarm::{ConnectionId, NetworkBehaviour},
    };

    use super::*;

    fn table_addrs(k: &mut Filtered<Kad>, p: &PeerId) -> Vec<Multiaddr> {
        let key = kad::KBucketKey::from(*p);
        k.inner
            .kbucket(*p)
            .and_then(|b| {
                b.iter()
                    .find(|e| *e.node.key == key)
                    .map(|e| e.node.value.iter().cloned().collect())
            })
            .unwrap_or_default()
    }

    /// identify reports, again and again, fifty new addresses each: the routing table keeps
    /// the last report's first sixteen, and a dial is offered no more.
    #[test]
    fn learned_addresses_are_capped_and_replaced() {
        let mut k = behaviour(PeerId::random(), Scope::Lan);
        let p = PeerId::random();
        for round in 0..20 {
            let addrs: Vec<Multiaddr> = (0..50)
                .map(|i| format!("/ip4/10.0.{round}.{i}/tcp/1").parse().unwrap())
                .collect();
            learn(&mut k, &p, &addrs);
        }
        let kept = table_addrs(&mut k, &p);
        assert_eq!(kept.len(), addrs::MAX_ADDRS_PER_PEER, "{kept:?}");
        assert!(kept
            .iter()
            .all(|a| a.to_string().starts_with("/ip4/10.0.19.")));
        let offered = k
            .handle_pending_outbound_connection(
                ConnectionId::new_unchecked(1),
                Some(p),
                &[],
                Endpoint::Dialer,
            )
            .unwrap();
        assert!(offered.len() <= addrs::MAX_ADDRS_PER_PEER, "{offered:?}");
    }

    /// The public DHT's table takes a peer at its public addresses only, and offers none of
    /// its private ones to dial.
    #[test]
    fn the_public_table_takes_public_addresses_only() {
        let mut k = behaviour(PeerId::random(), Scope::Public);
        let p = PeerId::random();
        let private: Vec<Multiaddr> = vec![
            "/ip4/127.0.0.1/tcp/4001".parse().unwrap(),
            "/ip4/192.168.1.2/tcp/4001".parse().unwrap(),
        ];
        learn(&mut k, &p, &private);
        assert!(table_addrs(&mut k, &p).is_empty());
        let public: Multiaddr = "/ip4/8.8.4.4/tcp/4001".parse().unwrap();
        learn(&mut k, &p, &[private[0].clone(), public.clone()]);
        let kept = table_addrs(&mut k, &p);
        assert_eq!(kept.len(), 1, "{kept:?}");
        // Even an address put in by hand is not offered if it is private.
        k.inner.add_address(&p, private[1].clone());
        let offered = k
            .handle_pending_outbound_connection(
                ConnectionId::new_unchecked(2),
                Some(p),
                &[],
                Endpoint::Dialer,
            )
            .unwrap();
        assert!(
            offered.iter().all(|a| Scope::Public.allows(a)),
            "{offered:?}"
        );
        assert!(!offered.is_empty());
    }
}
