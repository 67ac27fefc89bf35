//! [`Client`]: the cloneable handle the rest of cairn talks to the node through. Every
//! request is a message on a bounded channel with a reply channel; nothing here touches the
//! swarm.

use std::time::{Duration, Instant};

use bytes::Bytes;
use cairn_store::Cid;
use libp2p::{Multiaddr, PeerId};
use multihash::Multihash;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use crate::{
    bitswap::{wants::Waiter, Event, Stats},
    node::Command,
    NetError,
};

/// A connected peer, as `cairn swarm peers` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct PeerView {
    pub peer: String,
    pub addrs: Vec<String>,
    pub agent: String,
    pub protocols: Vec<String>,
    pub connected_secs: u64,
    pub mdns: bool,
}

/// A handle on a running node. Dropping every clone stops the swarm.
#[derive(Clone)]
pub struct Client {
    peer_id: PeerId,
    commands: mpsc::Sender<Command>,
    engine: mpsc::Sender<Event>,
    /// The engine's channel for this process's own wants.
    wants: mpsc::Sender<Event>,
}

impl Client {
    pub(crate) fn new(
        peer_id: PeerId,
        commands: mpsc::Sender<Command>,
        engine: mpsc::Sender<Event>,
        wants: mpsc::Sender<Event>,
    ) -> Client {
        Client {
            peer_id,
            commands,
            engine,
            wants,
        }
    }

    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// The block `cid` from the network, waiting at most `timeout`. `None` if no peer
    /// delivered it in time, at once if cairn cannot check such a block
    /// ([`crate::verifiable`]) or wants too many already. The bytes hash to `cid`; they are
    /// being stored meanwhile.
    pub async fn want(&self, cid: Cid, timeout: Duration) -> Option<Bytes> {
        self.want_below(cid, None, timeout).await
    }

    /// Like [`want`](Self::want), for a link of `parent` (a block received lately): the peer
    /// that sent `parent` is asked first.
    pub async fn want_below(
        &self,
        cid: Cid,
        parent: Option<Cid>,
        timeout: Duration,
    ) -> Option<Bytes> {
        let (tx, rx) = oneshot::channel();
        let until = Instant::now() + timeout;
        self.wants
            .send(Event::Want {
                cid,
                waiter: Some(Waiter::Async(tx)),
                until,
                parent,
            })
            .await
            .ok()?;
        tokio::time::timeout_at(until.into(), rx).await.ok()?.ok()
    }

    /// Like [`want`](Self::want), for a thread outside the runtime (a FUSE thread). Must not
    /// be called from an async task.
    pub fn want_blocking(&self, cid: Cid, timeout: Duration) -> Option<Bytes> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let until = Instant::now() + timeout;
        self.wants
            .blocking_send(Event::Want {
                cid,
                waiter: Some(Waiter::Sync(tx)),
                until,
                parent: None,
            })
            .ok()?;
        rx.recv_timeout(until.saturating_duration_since(Instant::now()))
            .ok()
    }

    /// Starts fetching these blocks without waiting for them (a reader will want them next).
    /// Dropped, not queued, when the engine is busy: it is only a hint. Callers bound the
    /// list (the control socket takes at most 1024).
    pub fn prefetch(&self, cids: &[Cid], timeout: Duration) {
        let until = Instant::now() + timeout;
        for c in cids {
            if self
                .wants
                .try_send(Event::Want {
                    cid: *c,
                    waiter: None,
                    until,
                    parent: None,
                })
                .is_err()
            {
                return;
            }
        }
    }

    /// Connects to the peer at `addr` (`/p2p/…` optional); returns its peer ID.
    pub async fn dial(&self, addr: Multiaddr) -> Result<PeerId, NetError> {
        ask(&self.commands, |tx| Command::Dial(addr, tx))
            .await?
            .map_err(NetError::Dial)
    }

    /// Closes every connection to `peer`; false if there was none.
    pub async fn disconnect(&self, peer: PeerId) -> Result<bool, NetError> {
        ask(&self.commands, |tx| Command::Disconnect(peer, tx)).await
    }

    pub async fn peers(&self) -> Result<Vec<PeerView>, NetError> {
        ask(&self.commands, Command::Peers).await
    }

    /// Where the node listens, with `/p2p/{peer id}` appended: addresses to give others.
    pub async fn listen_addrs(&self) -> Result<Vec<Multiaddr>, NetError> {
        Ok(ask(&self.commands, Command::ListenAddrs)
            .await?
            .into_iter()
            .map(|a| a.with(libp2p::multiaddr::Protocol::P2p(self.peer_id)))
            .collect())
    }

    /// Announces on the DHT that this node provides these blocks. Returns how many were
    /// accepted for announcing.
    pub async fn provide(&self, cids: &[Cid]) -> Result<usize, NetError> {
        let keys: Vec<Multihash<64>> = cids.iter().map(|c| *c.hash()).collect();
        ask(&self.commands, |tx| Command::Provide(keys, tx)).await
    }

    /// Publishes a signed IPNS record of `name`: it must verify; it is kept here and, unless
    /// `offline`, put at the closest DHT peers. Returns at the first peer's acknowledgement.
    pub async fn publish_name(
        &self,
        name: cairn_names::Name,
        record: Vec<u8>,
        offline: bool,
    ) -> Result<(), NetError> {
        ask(&self.commands, |reply| Command::PublishName {
            name,
            record,
            offline,
            reply,
        })
        .await?
        .map_err(NetError::Name)
    }

    /// Resolves `name`: the best valid record found, with its bytes, or `None`, and what
    /// was refused on the way. Asks every DHT and the connected peers that answer name
    /// lookups ([`crate::dht::ask`]). Returns once it holds a record and three peers have
    /// answered with one or a second has passed (or the lookup has ended, or
    /// [`crate::dht::QUERY_TIMEOUT`]); the lookup goes on in the background, and writes the
    /// best record back to peers that had older ones. `nocache` leaves out the record this
    /// node holds; `offline` asks no peer.
    pub async fn resolve_name(
        &self,
        name: cairn_names::Name,
        nocache: bool,
        offline: bool,
    ) -> Result<Resolved, NetError> {
        let (found, mut rx) = mpsc::channel(crate::dht::ipns::FOUND_QUEUE);
        let rejects = crate::dht::ipns::Rejects::default();
        ask(&self.commands, |reply| Command::ResolveName {
            name,
            nocache,
            offline,
            found,
            rejects: rejects.clone(),
            reply,
        })
        .await?
        .map_err(NetError::Name)?;
        let start = Instant::now();
        let enough = start + RESOLVE_ENOUGH;
        let end = start + crate::dht::QUERY_TIMEOUT;
        let mut best: Option<crate::dht::ipns::Found> = None;
        // Distinct peers (one in both DHTs answers twice).
        let mut peers = std::collections::HashSet::new();
        loop {
            let wait = if best.is_some() { enough.min(end) } else { end };
            match tokio::time::timeout_at(wait.into(), rx.recv()).await {
                Ok(Some(f)) => {
                    // Peers asked directly do not count: three Sybil connections must not
                    // end a lookup before the DHT answers.
                    if let (Some(p), false) = (f.from, f.direct) {
                        if peers.len() < RESOLVE_PEERS {
                            peers.insert(p);
                        }
                    }
                    let better = match &best {
                        None => true,
                        Some(b) => {
                            cairn_names::record::better(
                                (&b.record, &b.bytes),
                                (&f.record, &f.bytes),
                            )
                            .1 == f.bytes.as_slice()
                        }
                    };
                    if better {
                        best = Some(f);
                    }
                    if best.is_some() && peers.len() >= RESOLVE_PEERS {
                        break;
                    }
                }
                // Every lookup ended, or time is up.
                Ok(None) | Err(_) => break,
            }
        }
        let rejected = rejects.lock().unwrap_or_else(|e| e.into_inner()).clone();
        Ok(Resolved {
            found: best,
            rejected,
        })
    }

    /// What the DHT did.
    pub async fn dht(&self) -> Result<crate::dht::DhtStats, NetError> {
        ask(&self.commands, Command::Dht).await
    }

    /// Writes the ledger to `R/ledger.json` now (before stopping: tasks are not awaited
    /// when a runtime shuts down).
    pub async fn save_ledger(&self) -> Result<(), NetError> {
        ask(&self.engine, Event::SaveLedger).await
    }

    /// Bitswap counters.
    pub async fn stats(&self) -> Result<Stats, NetError> {
        ask(&self.engine, Event::Stats).await
    }
}

/// What [`Client::resolve_name`] found.
#[derive(Debug)]
pub struct Resolved {
    /// The best valid record.
    pub found: Option<crate::dht::ipns::Found>,
    /// What was refused (so far: the lookup may go on after the answer).
    pub rejected: crate::dht::ipns::Rejected,
}

/// A resolve answers once this many peers have sent a valid record…
pub const RESOLVE_PEERS: usize = 3;
/// …or this long after it began, if it holds one.
pub const RESOLVE_ENOUGH: Duration = Duration::from_secs(1);

/// Sends the request `make` builds around a reply channel and waits for the reply; a node
/// that has stopped answers neither.
async fn ask<C, T>(
    to: &mpsc::Sender<C>,
    make: impl FnOnce(oneshot::Sender<T>) -> C,
) -> Result<T, NetError> {
    let (tx, rx) = oneshot::channel();
    to.send(make(tx)).await.map_err(|_| NetError::Stopped)?;
    rx.await.map_err(|_| NetError::Stopped)
}
