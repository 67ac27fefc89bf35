//! Bitswap 1.2.0 (and 1.1.0, 1.0.0), client and server, over libp2p.
//!
//! - [`wire`]: the message format, strict and bounded.
//! - [`protocol`], [`handler`], [`behaviour`]: the swarm side; every stream is read and
//!   written in its connection's handler, in bounded sets of futures; the behaviour counts
//!   each peer's connections and routes outgoing messages.
//! - [`budget`]: the memory inbound messages may take while they are read.
//! - [`accept`]: what becomes of a received block (hash, match, store, notify, account).
//! - [`wants`]: the client policy, whom to ask for what, and what each peer holds of our
//!   wantlist, with no I/O.
//! - [`upload`]: the upload limit, and who goes first under it.
//! - [`peer`]: per peer, the queue of what we owe it and the task that turns it into
//!   messages.
//! - [`engine`]: one task that owns the wants and every peer's ledger, and reacts to
//!   messages, peer changes and requests from the rest of cairn.
//!
//! What a stranger can make us do is bounded (the crate docs list every bound): at most
//! [`MAX_WANTS_PER_PEER`] wants each, at most [`wire::MAX_MESSAGE`] bytes per message, read
//! within a memory budget, no block stored unless it hashes to a multihash we want (and then
//! under the CID we wanted); an unwanted, wrong or malformed message costs the sender offence
//! points in the [`crate::ledger`], and enough of them within seconds disconnect and ban it.

pub mod accept;
pub mod behaviour;
pub mod budget;
pub mod engine;
pub mod handler;
pub mod peer;
pub mod protocol;
pub mod upload;
pub mod wants;
pub mod wire;

use bytes::Bytes;
use cairn_store::Cid;
use libp2p::PeerId;

pub use self::engine::{Engine, Stats};
use crate::ledger::Offence;

/// Most wants a peer may have with us at once (kubo's and Helia's limit too).
pub const MAX_WANTS_PER_PEER: usize = 1024;

/// Everything the engine reacts to, but who is connected (see [`behaviour::PeerTable`]).
pub enum Event {
    /// A message from a peer, blocks hashed.
    Inbound(PeerId, handler::Received),
    /// A connected peer was found on the local network by mDNS as well.
    Mdns(PeerId),
    /// A peer's queue of our wants overflowed while messages to it failed: resend it our
    /// whole list, replacing its copy.
    Resync(PeerId),
    /// The peer refused every Bitswap protocol.
    NotBitswap(PeerId),
    /// The peer reads many inbound streams at once (see `peer::IN_FLIGHT`).
    Concurrent(PeerId),
    /// Providers of a block, from the DHT.
    Providers {
        key: wants::Key,
        peers: Vec<PeerId>,
    },
    /// Something a peer did wrong, seen outside the engine (a reader, the node).
    Offence(PeerId, Offence),
    /// A sender task delivered blocks.
    Sent {
        peer: PeerId,
        blocks: u64,
        bytes: u64,
    },
    /// A received block was stored (or failed to be: `links` is `None`); its links.
    Stored {
        cid: Cid,
        from: PeerId,
        links: Option<Vec<Cid>>,
    },
    /// Want `cid` until `until`; hand it to `waiter`.
    Want {
        cid: Cid,
        waiter: Option<wants::Waiter>,
        until: std::time::Instant,
        /// The block that links to it, if the asker knows (see [`wants::Wants::below`]).
        parent: Option<Cid>,
    },
    Stats(tokio::sync::oneshot::Sender<Stats>),
    /// A peer's shared history: its own signed statements of what others gave it, and
    /// others' it relays (`/cairn/history/2.0.0`).
    History(PeerId, crate::history::Answer),
    /// Write the ledger to `R/ledger.json` now (a daemon about to stop asks this).
    SaveLedger(tokio::sync::oneshot::Sender<()>),
    /// The node stopped: so does the engine.
    Shutdown,
}

/// What the engine asks of the node.
#[derive(Debug)]
pub enum NodeRequest {
    FindProviders(wants::Key),
    /// Close every connection to this peer and refuse it for a while.
    Ban(PeerId),
}

/// Bytes handed to a waiter; the block is stored behind its back.
pub type Block = Bytes;
