//! The per-connection side of Bitswap: accepts inbound streams (any version) and opens
//! outbound ones on request. It holds no protocol state; streams go straight to the engine's
//! tasks, which read and write them.

use std::{
    collections::VecDeque,
    convert::Infallible,
    task::{Context, Poll, Waker},
    time::Duration,
};

use libp2p::{
    swarm::{
        handler::{
            ConnectionEvent, DialUpgradeError, FullyNegotiatedInbound, FullyNegotiatedOutbound,
        },
        ConnectionHandler, ConnectionHandlerEvent, StreamUpgradeError, SubstreamProtocol,
    },
    PeerId, Stream,
};
use tokio::sync::{mpsc, oneshot};

use super::{protocol::Upgrade, wire::Version};

/// How long a stream may take to negotiate.
const NEGOTIATION: Duration = Duration::from_secs(10);

/// An inbound stream, handed to the engine.
pub struct Inbound {
    pub peer: PeerId,
    pub stream: Stream,
    pub version: Version,
}

/// Why a stream could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("not connected")]
    NotConnected,
    #[error("the peer does not speak Bitswap")]
    Unsupported,
    #[error("opening a stream timed out")]
    Timeout,
    #[error("opening a stream: {0}")]
    Io(#[from] std::io::Error),
}

pub type OpenReply = oneshot::Sender<Result<(Stream, Version), OpenError>>;

pub struct Handler {
    peer: PeerId,
    inbound: mpsc::Sender<Inbound>,
    opens: VecDeque<OpenReply>,
    waker: Option<Waker>,
}

impl Handler {
    pub fn new(peer: PeerId, inbound: mpsc::Sender<Inbound>) -> Handler {
        Handler {
            peer,
            inbound,
            opens: VecDeque::new(),
            waker: None,
        }
    }
}

impl ConnectionHandler for Handler {
    type FromBehaviour = OpenReply;
    type ToBehaviour = Infallible;
    type InboundProtocol = Upgrade;
    type OutboundProtocol = Upgrade;
    type InboundOpenInfo = ();
    type OutboundOpenInfo = OpenReply;

    fn listen_protocol(&self) -> SubstreamProtocol<Upgrade> {
        SubstreamProtocol::new(Upgrade, ()).with_timeout(NEGOTIATION)
    }

    fn poll(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<ConnectionHandlerEvent<Upgrade, OpenReply, Infallible>> {
        match self.opens.pop_front() {
            Some(reply) => Poll::Ready(ConnectionHandlerEvent::OutboundSubstreamRequest {
                protocol: SubstreamProtocol::new(Upgrade, reply).with_timeout(NEGOTIATION),
            }),
            None => {
                self.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }

    fn on_behaviour_event(&mut self, reply: OpenReply) {
        self.opens.push_back(reply);
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }

    fn on_connection_event(&mut self, event: ConnectionEvent<Upgrade, Upgrade, (), OpenReply>) {
        match event {
            ConnectionEvent::FullyNegotiatedInbound(FullyNegotiatedInbound {
                protocol: (stream, version),
                ..
            }) => {
                let inbound = Inbound {
                    peer: self.peer,
                    stream,
                    version,
                };
                // The engine takes streams as fast as they come; a full queue means a peer
                // is opening streams faster than anyone could read them.
                if self.inbound.try_send(inbound).is_err() {
                    log::warn!("{}: dropped an inbound bitswap stream", self.peer);
                }
            }
            ConnectionEvent::FullyNegotiatedOutbound(FullyNegotiatedOutbound {
                protocol,
                info: reply,
            }) => {
                let _ = reply.send(Ok(protocol));
            }
            ConnectionEvent::DialUpgradeError(DialUpgradeError { info: reply, error }) => {
                let e = match error {
                    StreamUpgradeError::Timeout => OpenError::Timeout,
                    StreamUpgradeError::NegotiationFailed => OpenError::Unsupported,
                    StreamUpgradeError::Io(e) => OpenError::Io(e),
                    StreamUpgradeError::Apply(never) => match never {},
                };
                let _ = reply.send(Err(e));
            }
            _ => {}
        }
    }
}
