//! The swarm side of Bitswap: one [`Handler`] per connection, and the routing of "open a
//! stream to this peer" requests from any task to one of the peer's connections.

use std::{
    collections::HashMap,
    convert::Infallible,
    task::{Context, Poll},
    time::Duration,
};

use libp2p::{
    core::{transport::PortUse, Endpoint},
    swarm::{
        behaviour::{ConnectionClosed, ConnectionEstablished},
        ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, NotifyHandler, THandler,
        THandlerInEvent, THandlerOutEvent, ToSwarm,
    },
    Multiaddr, PeerId, Stream,
};
use tokio::sync::{mpsc, oneshot};

use super::{
    handler::{Handler, Inbound, OpenError, OpenReply},
    wire::Version,
};

struct OpenRequest {
    peer: PeerId,
    reply: OpenReply,
}

/// Opens outbound Bitswap streams; cloneable, usable from any task.
#[derive(Clone)]
pub struct Opener {
    tx: mpsc::Sender<OpenRequest>,
}

impl Opener {
    /// A new stream to `peer` (which must be connected), negotiated to the best version it
    /// speaks. Bounded by `timeout`.
    pub async fn open(
        &self,
        peer: PeerId,
        timeout: Duration,
    ) -> Result<(Stream, Version), OpenError> {
        let (reply, rx) = oneshot::channel();
        let go = async {
            self.tx
                .send(OpenRequest { peer, reply })
                .await
                .map_err(|_| OpenError::NotConnected)?;
            rx.await.map_err(|_| OpenError::NotConnected)?
        };
        tokio::time::timeout(timeout, go)
            .await
            .map_err(|_| OpenError::Timeout)?
    }
}

pub struct Behaviour {
    inbound: mpsc::Sender<Inbound>,
    opens: mpsc::Receiver<OpenRequest>,
    connections: HashMap<PeerId, Vec<ConnectionId>>,
}

impl Behaviour {
    /// The behaviour, the receiving end of its inbound streams, and an opener.
    pub fn new() -> (Behaviour, mpsc::Receiver<Inbound>, Opener) {
        let (inbound, inbound_rx) = mpsc::channel(1024);
        let (tx, opens) = mpsc::channel(1024);
        (
            Behaviour {
                inbound,
                opens,
                connections: HashMap::new(),
            },
            inbound_rx,
            Opener { tx },
        )
    }
}

impl NetworkBehaviour for Behaviour {
    type ConnectionHandler = Handler;
    type ToSwarm = Infallible;

    fn handle_established_inbound_connection(
        &mut self,
        _: ConnectionId,
        peer: PeerId,
        _: &Multiaddr,
        _: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(Handler::new(peer, self.inbound.clone()))
    }

    fn handle_established_outbound_connection(
        &mut self,
        _: ConnectionId,
        peer: PeerId,
        _: &Multiaddr,
        _: Endpoint,
        _: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(Handler::new(peer, self.inbound.clone()))
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        match event {
            FromSwarm::ConnectionEstablished(ConnectionEstablished {
                peer_id,
                connection_id,
                ..
            }) => self
                .connections
                .entry(peer_id)
                .or_default()
                .push(connection_id),
            FromSwarm::ConnectionClosed(ConnectionClosed {
                peer_id,
                connection_id,
                ..
            }) => {
                if let Some(c) = self.connections.get_mut(&peer_id) {
                    c.retain(|id| *id != connection_id);
                    if c.is_empty() {
                        self.connections.remove(&peer_id);
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
        while let Poll::Ready(Some(req)) = self.opens.poll_recv(cx) {
            // The newest connection: older ones are the likelier to be closing.
            match self.connections.get(&req.peer).and_then(|c| c.last()) {
                Some(conn) => {
                    return Poll::Ready(ToSwarm::NotifyHandler {
                        peer_id: req.peer,
                        handler: NotifyHandler::One(*conn),
                        event: req.reply,
                    })
                }
                None => {
                    let _ = req.reply.send(Err(OpenError::NotConnected));
                }
            }
        }
        Poll::Pending
    }
}
