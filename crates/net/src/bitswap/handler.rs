//! The per-connection side of Bitswap: every byte read from or written to a Bitswap stream
//! is read or written here, in two bounded sets of futures (as rust-libp2p's own
//! request-response and Kademlia handlers do), driven by the connection's task:
//!
//! - **reads**: each inbound stream is read one message at a time, at most
//!   [`READS_PER_CONNECTION`] streams at once; a stream past that is dropped unread. A
//!   message's length is checked against [`super::wire::MAX_MESSAGE`] before anything else;
//!   its buffer grows as its bytes arrive, each chunk taking room from the memory budget
//!   ([`super::budget`]) first, and the room is held until the engine has handled the
//!   message. A stream silent for [`INBOUND_IDLE`] between messages (or inside a length
//!   prefix) is closed; inside a message body each [`STALL`] must bring [`MIN_PROGRESS`]
//!   bytes (or the rest of the message), or the stream is closed and counted against its
//!   peer. A slow link that keeps making progress is not stalled: the judgement is of
//!   progress, not of how long a message takes; a trickle of a byte now and then is, since it
//!   would hold a read slot and its room for ever. The decoded message, its blocks hashed on
//!   a blocking thread ([`super::accept::hash`]), goes to the engine on its bounded channel:
//!   when the engine is behind, reads wait, the set fills, and yamux's windows push back on
//!   the peer.
//! - **writes**: the messages the engine's per-peer sender hands over, each on a new stream,
//!   written and closed within [`SEND_TIMEOUT`], then kept until the peer closes its side
//!   too (at most [`DRAIN`]), so that it is not reset before the peer read it. For a peer
//!   that reads many messages per stream (cairn, kubo, Helia), the stream is flushed and
//!   kept open instead, at most [`KEPT_STREAMS`] of them for [`KEEP_FOR`], and the next
//!   message goes on one of them without a round trip of negotiation. At most [`WRITES_PER_CONNECTION`] at once, [`QUEUED_PER_CONNECTION`]
//!   waiting for a stream; past that a send is refused at once (the sender retries).

use std::{
    collections::VecDeque,
    convert::Infallible,
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use futures::{AsyncReadExt, AsyncWriteExt};
use futures_bounded::{Delay, FuturesSet};
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

use super::{
    accept::{self, Incoming},
    budget::{PeerBudget, Taken},
    protocol::Upgrade,
    wire::{self, Entry, Message, Presence, Version, WireError},
    Event,
};
use crate::ledger::Offence;

/// How long a stream may take to negotiate.
const NEGOTIATION: Duration = Duration::from_secs(10);
/// Inbound streams read at once on one connection.
pub const READS_PER_CONNECTION: usize = 16;
/// Outbound streams being written or waiting for the peer's close, on one connection.
pub const WRITES_PER_CONNECTION: usize = 16;
/// Messages waiting for an outbound stream, on one connection.
pub const QUEUED_PER_CONNECTION: usize = 16;
/// Outbound streams being negotiated at once, on one connection.
const OPENING_PER_CONNECTION: usize = 8;
/// An inbound stream silent this long between messages is closed (kubo keeps its want
/// stream open and opens another when it needs one).
pub const INBOUND_IDLE: Duration = Duration::from_secs(120);
/// Inside a message body, each window of this long must bring [`MIN_PROGRESS`] bytes.
pub const STALL: Duration = Duration::from_secs(10);
/// Bytes a message body must bring per [`STALL`] (1.6 KB/s; or the rest of the message).
pub const MIN_PROGRESS: usize = 16 << 10;
/// How long writing and closing one message may take.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a written stream is kept for the peer to close its side.
pub const DRAIN: Duration = Duration::from_secs(10);
/// Outbound streams kept open for the next message, on one connection (each a write slot
/// while its message is written). A peer that reads many messages per stream then pays the
/// round trip of negotiating a stream once, not for every message.
const KEPT_STREAMS: usize = 8;
/// How long a kept stream waits for its next message: well under any reader's idle timeout
/// (cairn's [`INBOUND_IDLE`]), so that a message is not written into a stream the peer is
/// closing.
const KEEP_FOR: Duration = Duration::from_secs(5);
/// Reads grow a message's buffer by at most this much at a time.
const CHUNK: usize = 64 << 10;
/// The bounded sets' own limit on one future: a backstop past every bound above (a read may
/// wait [`INBOUND_IDLE`], then for the engine; a write [`SEND_TIMEOUT`] then [`DRAIN`]).
const FUTURE_LIMIT: Duration = Duration::from_secs(900);

/// A message as the engine sees it: decoded, its blocks hashed, and the inbound budget it
/// holds until the engine is done with it.
pub struct Received {
    pub full: bool,
    pub wants: Vec<Entry>,
    pub presences: Vec<(cairn_store::Cid, Presence)>,
    pub blocks: Vec<Incoming>,
    pub room: Option<Taken>,
}

/// Why a message was not sent.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("not connected")]
    NotConnected,
    #[error("the peer does not speak Bitswap")]
    Unsupported,
    #[error("timed out")]
    Timeout,
    #[error("too many messages waiting for this connection")]
    Busy,
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// A message to send, and where to say how it went (the version the peer speaks, once
/// written and closed).
pub struct Outgoing {
    pub message: Message,
    pub reply: oneshot::Sender<Result<Version, SendError>>,
    /// The peer reads many messages per stream and many streams at once (cairn, kubo,
    /// Helia): the stream stays open after the message, for the next one.
    pub keep: bool,
}

impl std::fmt::Debug for Outgoing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outgoing")
            .field("wants", &self.message.wants.len())
            .field("blocks", &self.message.blocks.len())
            .finish()
    }
}

pub struct Handler {
    peer: PeerId,
    events: mpsc::Sender<Event>,
    budget: PeerBudget,
    reads: FuturesSet<Option<Stream>>,
    writes: FuturesSet<Option<Kept>>,
    queued: VecDeque<Outgoing>,
    opening: usize,
    /// Outbound streams written and kept open for the next message, newest last.
    idle: Vec<Kept>,
}

/// An outbound stream a message was written on and left open, its version, and since when.
struct Kept(Stream, Version, std::time::Instant);

impl Handler {
    pub fn new(peer: PeerId, events: mpsc::Sender<Event>, budget: PeerBudget) -> Handler {
        Handler {
            peer,
            events,
            budget,
            reads: FuturesSet::new(|| Delay::tokio(FUTURE_LIMIT), READS_PER_CONNECTION),
            writes: FuturesSet::new(|| Delay::tokio(FUTURE_LIMIT), WRITES_PER_CONNECTION),
            queued: VecDeque::new(),
            opening: 0,
            idle: Vec::new(),
        }
    }

    fn read(&mut self, stream: Stream, first: bool) {
        let read = read_next(
            stream,
            self.peer,
            self.events.clone(),
            self.budget.clone(),
            first,
        );
        if self.reads.try_push(read).is_err() {
            log::debug!(
                "bitswap: {} has {READS_PER_CONNECTION} streams being read; dropped one",
                self.peer
            );
        }
    }
}

impl ConnectionHandler for Handler {
    type FromBehaviour = Outgoing;
    type ToBehaviour = Infallible;
    type InboundProtocol = Upgrade;
    type OutboundProtocol = Upgrade;
    type InboundOpenInfo = ();
    type OutboundOpenInfo = Outgoing;

    fn listen_protocol(&self) -> SubstreamProtocol<Upgrade> {
        SubstreamProtocol::new(Upgrade, ()).with_timeout(NEGOTIATION)
    }

    fn poll(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<ConnectionHandlerEvent<Upgrade, Outgoing, Infallible>> {
        // A stream whose message was read goes on to its next one, in the slot it just freed.
        while let Poll::Ready(done) = self.reads.poll_unpin(cx) {
            if let Ok(Some(stream)) = done {
                self.read(stream, false);
            }
        }
        while let Poll::Ready(done) = self.writes.poll_unpin(cx) {
            if let Ok(Some(kept)) = done {
                self.idle.push(kept);
            }
        }
        // A message whose sender gave up (timed out) is not sent late: it could cross a later
        // cancel of the same want, leaving the want at the peer.
        self.queued.retain(|o| !o.reply.is_closed());
        // Streams kept too long, or past the pool, are closed (on a write slot of their own).
        while self.idle.len() > KEPT_STREAMS
            || self.idle.first().is_some_and(|k| k.2.elapsed() > KEEP_FOR)
        {
            let Kept(stream, ..) = self.idle.remove(0);
            let _ = self.writes.try_push(finish(stream));
        }
        // A message for a peer that reads many per stream goes on a kept stream, unnegotiated.
        while self.queued.front().is_some_and(|o| o.keep) && !self.idle.is_empty() {
            let (Some(out), Some(Kept(stream, version, _))) =
                (self.queued.pop_front(), self.idle.pop())
            else {
                break;
            };
            let bytes = Bytes::from(out.message.encode(version));
            if let Err(refused) = self
                .writes
                .try_push(write(stream, bytes, version, out.reply, out.keep))
            {
                drop(refused);
            }
        }
        if self.opening < OPENING_PER_CONNECTION {
            if let Some(out) = self.queued.pop_front() {
                self.opening += 1;
                return Poll::Ready(ConnectionHandlerEvent::OutboundSubstreamRequest {
                    protocol: SubstreamProtocol::new(Upgrade, out).with_timeout(NEGOTIATION),
                });
            }
        }
        Poll::Pending
    }

    fn on_behaviour_event(&mut self, out: Outgoing) {
        if self.queued.len() >= QUEUED_PER_CONNECTION {
            let _ = out.reply.send(Err(SendError::Busy));
            return;
        }
        // The connection task polls the handler again after every behaviour event.
        self.queued.push_back(out);
    }

    fn on_connection_event(&mut self, event: ConnectionEvent<Upgrade, Upgrade, (), Outgoing>) {
        match event {
            ConnectionEvent::FullyNegotiatedInbound(FullyNegotiatedInbound {
                protocol: (stream, _version),
                ..
            }) => self.read(stream, true),
            ConnectionEvent::FullyNegotiatedOutbound(FullyNegotiatedOutbound {
                protocol: (stream, version),
                info: out,
            }) => {
                self.opening = self.opening.saturating_sub(1);
                if out.reply.is_closed() {
                    return; // given up on meanwhile (the stream is dropped unused)
                }
                let bytes = Bytes::from(out.message.encode(version));
                let write = write(stream, bytes, version, out.reply, out.keep);
                if let Err(refused) = self.writes.try_push(write) {
                    // Dropping the future drops its reply: the sender sees the send failed.
                    drop(refused);
                }
            }
            ConnectionEvent::DialUpgradeError(DialUpgradeError { info: out, error }) => {
                self.opening = self.opening.saturating_sub(1);
                let e = match error {
                    StreamUpgradeError::Timeout => SendError::Timeout,
                    StreamUpgradeError::NegotiationFailed => SendError::Unsupported,
                    StreamUpgradeError::Io(e) => SendError::Io(e),
                    StreamUpgradeError::Apply(never) => match never {},
                };
                let _ = out.reply.send(Err(e));
            }
            _ => {}
        }
    }
}

/// Writes one message on `stream`; says how it went on `reply`. With `keep`, the stream is
/// flushed and handed back for the next message; else it is closed and kept until the peer
/// closes its side too (dropping a stream the peer has not finished reading would reset it,
/// and the message with it).
async fn write(
    mut stream: Stream,
    bytes: Bytes,
    version: Version,
    reply: oneshot::Sender<Result<Version, SendError>>,
    keep: bool,
) -> Option<Kept> {
    let sent = tokio::time::timeout(SEND_TIMEOUT, async {
        wire::write_frame(&mut stream, &bytes).await?;
        if keep {
            stream.flush().await
        } else {
            stream.close().await
        }
    })
    .await;
    let ok = matches!(sent, Ok(Ok(())));
    let _ = reply.send(match sent {
        Ok(Ok(())) => Ok(version),
        Ok(Err(e)) => Err(SendError::Io(e)),
        Err(_) => Err(SendError::Timeout),
    });
    drop(bytes);
    match (ok, keep) {
        (true, true) => Some(Kept(stream, version, std::time::Instant::now())),
        (true, false) => {
            drain(stream).await;
            None
        }
        _ => None,
    }
}

/// Closes a kept stream and waits for the peer to close its side.
async fn finish(mut stream: Stream) -> Option<Kept> {
    if tokio::time::timeout(SEND_TIMEOUT, stream.close())
        .await
        .is_ok()
    {
        drain(stream).await;
    }
    None
}

/// Waits (at most [`DRAIN`]) for the peer to close its side of a stream we closed.
async fn drain(mut stream: Stream) {
    let mut sink = [0u8; 64];
    let _ = tokio::time::timeout(DRAIN, async {
        while let Ok(n) = stream.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
}

/// How reading a message ended, when it did not end in a message.
enum ReadEnd {
    /// The stream ended, or stayed silent between messages: nothing wrong.
    Closed,
    /// The peer's fault.
    Offence(Offence),
}

/// Reads the next message on `stream` and hands it to the engine; the stream back if it may
/// carry another. `first`: the stream has just been accepted (our side of an inbound stream
/// carries nothing, so it is closed now: Helia frees a stream only when both sides are).
async fn read_next(
    mut stream: Stream,
    peer: PeerId,
    events: mpsc::Sender<Event>,
    budget: PeerBudget,
    first: bool,
) -> Option<Stream> {
    if first {
        let _ = tokio::time::timeout(STALL, stream.close()).await;
    }
    let end = match read_message(&mut stream, &budget).await {
        Ok((msg, taken)) => {
            let blocks = if msg.blocks.is_empty() {
                Vec::new()
            } else {
                let raw = msg.blocks;
                tokio::task::spawn_blocking(move || {
                    raw.into_iter()
                        .map(|(prefix, data)| Incoming {
                            hashed: accept::hash(&prefix, &data),
                            prefix,
                            data,
                        })
                        .collect()
                })
                .await
                .ok()?
            };
            let received = Received {
                full: msg.full,
                wants: msg.wants,
                presences: msg.presences,
                blocks,
                room: Some(taken),
            };
            events.send(Event::Inbound(peer, received)).await.ok()?;
            return Some(stream);
        }
        Err(end) => end,
    };
    if let ReadEnd::Offence(o) = end {
        let _ = events.send(Event::Offence(peer, o)).await;
    }
    None
}

/// One length-prefixed message, decoded, with the budget its bytes took.
async fn read_message(
    stream: &mut Stream,
    budget: &PeerBudget,
) -> Result<(Message, Taken), ReadEnd> {
    // Silence before a message is no fault (kubo keeps its want stream open).
    let len = match tokio::time::timeout(INBOUND_IDLE, wire::read_len(stream)).await {
        Err(_) | Ok(Ok(None)) => return Err(ReadEnd::Closed),
        Ok(Ok(Some(len))) => len,
        Ok(Err(WireError::Io(e))) => {
            log::debug!("bitswap: reading a stream: {e}");
            return Err(ReadEnd::Closed);
        }
        Ok(Err(e)) => {
            log::debug!("bitswap: {e}");
            return Err(ReadEnd::Offence(Offence::Malformed));
        }
    };
    let mut taken = budget.start();
    let mut buf = Vec::new();
    // The current window of STALL: when it ends, and what it must have brought by then.
    let mut window_end = tokio::time::Instant::now() + STALL;
    let mut window_need = MIN_PROGRESS.min(len);
    while buf.len() < len {
        let start = buf.len();
        let chunk = CHUNK.min(len - start);
        if !taken.grow(chunk).await {
            log::debug!("bitswap: no room in the inbound budget; a message of {len} bytes dropped");
            return Err(ReadEnd::Closed);
        }
        buf.resize(start + chunk, 0);
        let mut filled = start;
        while filled < start + chunk {
            match tokio::time::timeout_at(window_end, stream.read(&mut buf[filled..start + chunk]))
                .await
            {
                Err(_) => {
                    log::debug!("bitswap: a peer stalled in the middle of a message");
                    return Err(ReadEnd::Offence(Offence::Stalled));
                }
                Ok(Ok(0)) => {
                    log::debug!("bitswap: a stream ended in the middle of a message");
                    return Err(ReadEnd::Closed);
                }
                Ok(Ok(n)) => {
                    filled += n;
                    window_need = window_need.saturating_sub(n);
                    if window_need == 0 {
                        window_end = tokio::time::Instant::now() + STALL;
                        window_need = MIN_PROGRESS.min(len - filled);
                    }
                }
                Ok(Err(e)) => {
                    log::debug!("bitswap: reading a stream: {e}");
                    return Err(ReadEnd::Closed);
                }
            }
        }
    }
    match Message::decode(&Bytes::from(buf)) {
        Ok(m) => Ok((m, taken)),
        Err(e) => {
            log::debug!("bitswap: {e}");
            Err(ReadEnd::Offence(Offence::Malformed))
        }
    }
}
