//! The swarm side of Bitswap: one [`Handler`] per connection (where all stream I/O is), the
//! count of each peer's connections (from [`FromSwarm`], one event per connection, never
//! dropped), and the routing of outgoing messages to one of a peer's connections.
//!
//! The engine learns who is connected through a [`PeerTable`]: a peer comes up with its first
//! connection and goes down with its last. The table keeps, per peer, the change the engine
//! has not taken yet, folded (up then down is nothing; down then up is both, so that the
//! engine starts that peer afresh), so it holds at most one entry per peer and nothing is
//! lost when the engine is busy.

use std::{
    collections::HashMap,
    convert::Infallible,
    sync::{Arc, Mutex},
    task::{Context, Poll},
    time::Duration,
};

use libp2p::{
    core::{transport::PortUse, Endpoint},
    swarm::{
        behaviour::{ConnectionClosed, ConnectionEstablished, DialFailure, ListenFailure},
        ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, NotifyHandler, THandler,
        THandlerInEvent, THandlerOutEvent, ToSwarm,
    },
    Multiaddr, PeerId,
};
use tokio::sync::{mpsc, oneshot, Notify};

use super::{
    budget::{Budget, PeerBudget},
    handler::{Handler, Outgoing, SendError},
    wire::{Message, Version},
    Event,
};

/// Messages waiting to be routed to a connection, from all peers' senders.
const ROUTING_QUEUE: usize = 1024;

/// A change in whether a peer is connected, not yet taken by the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Up,
    Down,
    /// Went down and came back: the engine forgets what the peer held and starts again.
    DownUp,
}

#[derive(Default)]
struct Table {
    connections: HashMap<PeerId, usize>,
    changes: HashMap<PeerId, Change>,
}

/// Who is connected, shared by the behaviour (which writes it) and the engine (which takes
/// the changes).
#[derive(Default)]
pub struct PeerTable {
    table: Mutex<Table>,
    /// Woken when a change is added.
    pub notify: Notify,
}

impl PeerTable {
    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn opened(&self, peer: PeerId) {
        let mut t = self.lock();
        let n = t.connections.entry(peer).or_default();
        *n += 1;
        if *n == 1 {
            let c = match t.changes.get(&peer) {
                None => Some(Change::Up),
                Some(Change::Down) => Some(Change::DownUp),
                Some(Change::Up | Change::DownUp) => None,
            };
            if let Some(c) = c {
                t.changes.insert(peer, c);
            }
            drop(t);
            self.notify.notify_one();
        }
    }

    fn closed(&self, peer: PeerId) {
        let mut t = self.lock();
        let Some(n) = t.connections.get_mut(&peer) else {
            return;
        };
        *n -= 1;
        if *n > 0 {
            return;
        }
        t.connections.remove(&peer);
        match t.changes.get(&peer) {
            // The engine never heard it was up.
            Some(Change::Up) => {
                t.changes.remove(&peer);
            }
            _ => {
                t.changes.insert(peer, Change::Down);
            }
        }
        drop(t);
        self.notify.notify_one();
    }

    /// The changes since the last call.
    pub fn take(&self) -> Vec<(PeerId, Change)> {
        self.lock().changes.drain().collect()
    }

    pub fn is_connected(&self, peer: &PeerId) -> bool {
        self.lock().connections.contains_key(peer)
    }

    /// Peers connected now.
    pub fn len(&self) -> usize {
        self.lock().connections.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Sends messages to peers; cloneable, usable from any task.
#[derive(Clone)]
pub struct Outbox {
    tx: mpsc::Sender<(PeerId, Outgoing)>,
}

impl Outbox {
    /// Sends `message` to `peer` on a new stream (or, with `keep`, on one kept open from an
    /// earlier message, and kept open after), encoded for the version it speaks; returns
    /// that version once the message is written. Bounded by `timeout`.
    pub async fn send(
        &self,
        peer: PeerId,
        message: Message,
        timeout: Duration,
        keep: bool,
    ) -> Result<Version, SendError> {
        let (reply, rx) = oneshot::channel();
        let go = async {
            self.tx
                .send((
                    peer,
                    Outgoing {
                        message,
                        reply,
                        keep,
                    },
                ))
                .await
                .map_err(|_| SendError::NotConnected)?;
            rx.await.map_err(|_| SendError::NotConnected)?
        };
        tokio::time::timeout(timeout, go)
            .await
            .map_err(|_| SendError::Timeout)?
    }
}

struct Connections {
    ids: Vec<ConnectionId>,
    budget: PeerBudget,
}

pub struct Behaviour {
    events: mpsc::Sender<Event>,
    budget: Budget,
    table: Arc<PeerTable>,
    outgoing: mpsc::Receiver<(PeerId, Outgoing)>,
    connections: HashMap<PeerId, Connections>,
    /// Connections whose handler we made and the swarm has not yet reported established or
    /// refused: at most the ones being set up at once.
    pending: HashMap<ConnectionId, PeerId>,
}

impl Behaviour {
    /// The behaviour, handing received messages to `events` (the engine's channel), and the
    /// outbox and peer table the engine uses.
    pub fn new(events: mpsc::Sender<Event>, budget: Budget) -> (Behaviour, Outbox, Arc<PeerTable>) {
        let (tx, outgoing) = mpsc::channel(ROUTING_QUEUE);
        let table = Arc::new(PeerTable::default());
        (
            Behaviour {
                events,
                budget,
                table: table.clone(),
                outgoing,
                connections: HashMap::new(),
                pending: HashMap::new(),
            },
            Outbox { tx },
            table,
        )
    }

    fn handler(&mut self, id: ConnectionId, peer: PeerId) -> Handler {
        // The peer's share of the inbound budget is made with its first handler and kept
        // while it has a connection (or until the swarm says this one was refused).
        self.pending.insert(id, peer);
        let budget = match self.connections.get(&peer) {
            Some(c) => c.budget.clone(),
            None => {
                let budget = self.budget.peer();
                self.connections.insert(
                    peer,
                    Connections {
                        ids: Vec::new(),
                        budget: budget.clone(),
                    },
                );
                budget
            }
        };
        Handler::new(peer, self.events.clone(), budget)
    }
}

impl NetworkBehaviour for Behaviour {
    type ConnectionHandler = Handler;
    type ToSwarm = Infallible;

    fn handle_established_inbound_connection(
        &mut self,
        id: ConnectionId,
        peer: PeerId,
        _: &Multiaddr,
        _: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(self.handler(id, peer))
    }

    fn handle_established_outbound_connection(
        &mut self,
        id: ConnectionId,
        peer: PeerId,
        _: &Multiaddr,
        _: Endpoint,
        _: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(self.handler(id, peer))
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        match event {
            FromSwarm::ConnectionEstablished(ConnectionEstablished {
                peer_id,
                connection_id,
                ..
            }) => {
                self.pending.remove(&connection_id);
                let budget = &self.budget;
                self.connections
                    .entry(peer_id)
                    .or_insert_with(|| Connections {
                        ids: Vec::new(),
                        budget: budget.peer(),
                    })
                    .ids
                    .push(connection_id);
                self.table.opened(peer_id);
            }
            // A connection another behaviour refused after ours made its handler: the entry
            // that handler made goes, if it was the peer's only one.
            FromSwarm::ListenFailure(ListenFailure { connection_id, .. })
            | FromSwarm::DialFailure(DialFailure { connection_id, .. }) => {
                if let Some(peer) = self.pending.remove(&connection_id) {
                    if self
                        .connections
                        .get(&peer)
                        .is_some_and(|c| c.ids.is_empty())
                    {
                        self.connections.remove(&peer);
                    }
                }
            }
            FromSwarm::ConnectionClosed(ConnectionClosed {
                peer_id,
                connection_id,
                ..
            }) => {
                if let Some(c) = self.connections.get_mut(&peer_id) {
                    let before = c.ids.len();
                    c.ids.retain(|id| *id != connection_id);
                    let closed = c.ids.len() < before;
                    if c.ids.is_empty() {
                        self.connections.remove(&peer_id);
                    }
                    if closed {
                        self.table.closed(peer_id);
                    }
                }
            }
            _ => {}
        }
    }

    fn on_connection_handler_event(
        &mut self,
        _: PeerId,
        _: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        match event {}
    }

    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<ToSwarm<Infallible, THandlerInEvent<Self>>> {
        while let Poll::Ready(Some((peer, out))) = self.outgoing.poll_recv(cx) {
            // The newest connection: older ones are the likelier to be closing.
            match self.connections.get(&peer).and_then(|c| c.ids.last()) {
                Some(conn) => {
                    return Poll::Ready(ToSwarm::NotifyHandler {
                        peer_id: peer,
                        handler: NotifyHandler::One(*conn),
                        event: out,
                    })
                }
                None => {
                    let _ = out.reply.send(Err(SendError::NotConnected));
                }
            }
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Changes fold per peer: up then down is nothing, down then up is both, and the table
    /// never holds more than one change per peer however often a peer comes and goes.
    #[test]
    fn peer_changes_fold_and_none_is_lost() {
        let t = PeerTable::default();
        let (a, b) = (PeerId::random(), PeerId::random());
        t.opened(a);
        t.opened(a);
        t.closed(a);
        assert_eq!(t.take(), vec![(a, Change::Up)]);
        t.closed(a);
        t.opened(a);
        assert_eq!(t.take(), vec![(a, Change::DownUp)]);
        for _ in 0..1000 {
            t.opened(b);
            t.closed(b);
        }
        assert!(t.take().is_empty(), "b came and went unseen");
        t.closed(a);
        for _ in 0..1000 {
            t.opened(a);
            t.closed(a);
        }
        assert_eq!(t.take(), vec![(a, Change::Down)]);
        assert!(!t.is_connected(&a));
    }

    /// A connection refused by another behaviour after ours made its handler leaves nothing
    /// behind; an established one is counted until it closes.
    #[test]
    fn refused_connections_leave_no_entry() {
        use libp2p::{core::ConnectedPoint, swarm::ListenError};
        let (events, _rx) = mpsc::channel(1);
        let (mut b, _outbox, table) = Behaviour::new(events, Budget::default());
        let addr: Multiaddr = "/ip4/127.0.0.1/tcp/1".parse().unwrap();
        let peer = PeerId::random();
        for n in 0..100 {
            let id = ConnectionId::new_unchecked(n);
            let _handler = b
                .handle_established_inbound_connection(id, peer, &addr, &addr)
                .unwrap();
            let refused = ListenError::Denied {
                cause: ConnectionDenied::new("over a limit"),
            };
            b.on_swarm_event(FromSwarm::ListenFailure(ListenFailure {
                local_addr: &addr,
                send_back_addr: &addr,
                error: &refused,
                connection_id: id,
                peer_id: Some(peer),
            }));
        }
        assert!(b.connections.is_empty() && b.pending.is_empty());
        let id = ConnectionId::new_unchecked(1000);
        let _handler = b
            .handle_established_inbound_connection(id, peer, &addr, &addr)
            .unwrap();
        let endpoint = ConnectedPoint::Listener {
            local_addr: addr.clone(),
            send_back_addr: addr.clone(),
        };
        b.on_swarm_event(FromSwarm::ConnectionEstablished(ConnectionEstablished {
            peer_id: peer,
            connection_id: id,
            endpoint: &endpoint,
            failed_addresses: &[],
            other_established: 0,
        }));
        assert_eq!(b.connections[&peer].ids, vec![id]);
        assert!(b.pending.is_empty() && table.is_connected(&peer));
    }
}
