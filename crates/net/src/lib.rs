//! cairn's libp2p node: Bitswap 1.2.0 client and server, Kademlia (public and LAN) and mDNS
//! discovery, and [`NetworkSource`], the `BlockSource` that fetches what the store lacks
//! while a program reads it.
//!
//! - [`node::start`] builds the swarm (TCP + noise + yamux and QUIC v1, identify, ping,
//!   Kademlia, mDNS, Bitswap) on the current tokio runtime and returns a [`Client`], the
//!   cloneable handle everything else uses. QUIC costs the build aws-lc (about four minutes
//!   of C on two cores, once: ccache keeps it); kubo speaks it too, though the kubo and Helia
//!   peers of the tests listen on TCP only, so QUIC is tested between cairn nodes.
//! - [`bitswap`]: every Bitswap stream is read and written in its connection's handler, in
//!   bounded sets of futures; the [`bitswap::engine`] owns the wants and every peer's ledger
//!   and only moves queued work; disk and hashing run on blocking threads.
//! - [`dht`]: the public and the LAN DHT, kept apart, with bounded provider stores and
//!   IPNS records (verified before they are kept or served: [`dht::records`]; lookups and
//!   publications: [`dht::ipns`], through [`Client::publish_name`] and
//!   [`Client::resolve_name`], which also asks connected cairn peers: [`dht::ask`]).
//! - [`NetworkSource`] wraps the store: local blocks as before, missing ones fetched within
//!   a timeout, corrupt ones fetched again.
//! - [`fetch::fetch_dag`] fetches a whole DAG with many wants in flight;
//!   [`skeleton::fetch_skeleton`] the part of a tree that listings and lookups need, when a
//!   reader enters it.
//! - [`config`]: `R/config.toml`; [`identity`]: the node's key in `R/node.key`;
//!   [`ledger`]: what each peer did, and when it is cut off.
//! - [`incentives`]: whom cairn serves first and whom it asks (the policy and why);
//!   [`reputation`] and [`history`]: signed statements shared and relayed between cairn
//!   nodes on `/cairn/history/2.0.0`, and what a peer gave and took through others, as max
//!   flows over them ([`maxflow`]: Dinic's algorithm with a bound on its work).
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! let store = Arc::new(cairn_store::Store::open("/ipfs")?);
//! let key = cairn_net::identity::load_or_create(std::path::Path::new("/ipfs/node.key"))?;
//! let client = cairn_net::node::start(&cairn_net::Config::default(), key, store.clone()).await?;
//! let src = cairn_net::NetworkSource::new(store, client, std::time::Duration::from_secs(30), 12);
//! // `src` is a BlockSource: mount it, or read through it.
//! # Ok(()) }
//! ```
//!
//! # What a peer can make the node spend
//!
//! Every task, channel, map and buffer a peer can fill, with its bound, where the bound is
//! enforced, and what happens at it. Nothing a peer sends is allocated before its bound is
//! checked.
//!
//! | what | bound | where | when full |
//! |---|---|---|---|
//! | connections | 512 in all, 4 per peer, 256 being accepted, 64 being dialled | [`node`] | refused |
//! | yamux streams, and data received on them not yet read | 64 per connection, 256 KiB each: 16 MiB per connection | `muxer` | refused; the sender waits for window |
//! | streams negotiating their protocol | 32 per connection | [`node`] | refused |
//! | Bitswap streams read at once | 16 per connection | [`bitswap::handler`] | dropped unread |
//! | a Bitswap message | 4 MiB ([`bitswap::wire::MAX_MESSAGE`]), checked at its length prefix | [`bitswap::handler`] | Malformed offence |
//! | items in a message | 4096 ([`bitswap::wire::MAX_ITEMS`]); a block 2 MiB; a CID 168 bytes | [`bitswap::wire`] | Malformed offence |
//! | inbound message memory | 256 MiB in all, 32 MiB per peer, taken as bytes arrive, held until the engine has handled the message | [`bitswap::budget`] | the message is dropped after 5 s without room |
//! | a stream silent between messages / slow inside one | 120 s / under 16 KiB in 10 s | [`bitswap::handler`] | closed / Stalled offence |
//! | messages written at once, waiting for a stream | 16 / 16 per connection | [`bitswap::handler`] | the send fails; the sender retries |
//! | outbound streams kept open for the next message (peers that read many per stream) | 8 per connection, 5 s idle | [`bitswap::handler`] | closed |
//! | rounds of answers being written to one peer | 1, or 8 for cairn, kubo and Helia (identify) | [`bitswap::peer`] | the next round waits |
//! | one peer's wants at us | 1024 ([`bitswap::MAX_WANTS_PER_PEER`]) | [`bitswap::engine`] | dropped, TooManyWants (0.2 points) |
//! | the queue of answers to one peer | 2048 entries (stale ones dropped past it) | [`bitswap::peer`] | compacted |
//! | blocks read from disk for serving | 256 MiB for all peers ([`bitswap::engine::SERVING`]); one message's worth per peer per round | [`bitswap::peer`] | senders wait |
//! | messages per second from one peer | 2000 | [`bitswap::engine`] | Flood offence |
//! | events from the network waiting for the engine | 4096 ([`bitswap::engine::EVENTS`]) | [`bitswap::engine`] | readers wait (backpressure) |
//! | our own wants waiting for the engine | 4096, on a channel of their own | [`bitswap::engine`] | readers wait; prefetches are dropped |
//! | peers coming and going | one folded change per peer | [`bitswap::behaviour::PeerTable`] | never dropped |
//! | messages waiting to be routed to a connection | 1024 | [`bitswap::behaviour`] | senders wait |
//! | per-peer sender tasks | one per connected peer, one message in flight | [`bitswap::peer`] | - |
//! | our wants and cancels waiting for one peer | one entry per block; 4096 kept while sends fail | [`bitswap::peer`] | the peer's whole list is resent instead (`full`) |
//! | our wants, in all | 8192 ([`bitswap::engine::MAX_WANTS`]), of which 1024 for readers of the mount only | [`bitswap::engine`] | the want fails at once |
//! | our wants one peer holds | 1024 ([`bitswap::wants::MAX_TOLD`]), 256 of them for readers only; each cancelled when it ends | [`bitswap::wants`] | the want waits for room |
//! | providers taken for a block | the last 20 named; holders once connected | [`dht`], [`bitswap::wants`] | the oldest dropped |
//! | addresses dialled or kept per peer | 16, each an IP address and a port (128 bytes at most), in the DHT's scope | [`dht::addrs`] | ignored |
//! | a DHT message | 256 KiB | [`dht`] | refused by kad |
//! | provider lookups | 16 at once per DHT, 30 s each | [`dht`] | not started |
//! | provider records | ours 2^20; others' 2^18, 2^15 per provider, 20 per key, 4 addresses each, expiring | [`dht::providers`] | refused |
//! | IPNS records (PUT_VALUE, GET_VALUE answers) | 10 KiB each, checked before parsing; others' 4096 (64 per peer), published here 4096, per DHT; kept until their validity ends, at most 48 h; the highest sequence of 16,384 names remembered beyond that | [`dht::records`] | refused; one no honest peer sends is a BadRecord offence (10 points) |
//! | PUT_VALUEs from one peer | 100 a second ([`dht::PUTS_PER_SECOND`]), counted in a map cleared each second | [`dht`] | refused unchecked, Flood offence |
//! | name lookups and publications | 64 at once, 30 s each; 32 records queued per asker; 20 peers written back to | [`dht::ipns`] | refused, saying so |
//! | name asks of connected peers (`/cairn/name/1.0.0`) | 32 peers per lookup, 1024 in flight, 5 s each; a request 1 KiB, an answer 16 KiB; 100 answered per peer a second, 50 asked | [`dht::ask`] | not asked / the stream closed / unanswered |
//! | identify reports | 16 addresses, 64 protocols, 128-byte agent kept per peer | [`node`] | cut |
//! | signed statements | 64 per batch; an answer its sender's batch and 15 relayed, 256 KiB; a key or signature 1 KiB, a subject 128 bytes; each batch good for 30 minutes after it was signed; asked of each peer once a minute, answered at most twice | [`history`], [`reputation`] | refused; a forged, expired or malformed batch (relayed or not) costs its sender a BadStatement offence (10 points) |
//! | statements held | 256 issuers, one batch each (about 5 MiB at most) | [`reputation`] | the issuers the bounded graph uses stay; of the rest, the one with the narrowest path to us goes, unless the newcomer's is no wider; batches past their window expire |
//! | a reputation's graph and flow | 100 nodes within 4 edges of us; 100,000 edge visits per peer's flow, each way, every 2 s (6.7 ms for 4,030 statements from 256 issuers one way, `examples/reputation.rs`) | [`reputation`], [`maxflow`] | nodes past the bound get nothing through others; a flow past its visits is a lower bound |
//! | offences | 50 points (decaying 2/s) | [`ledger`] | disconnected, banned 10 minutes (a ban is resent until the node takes it) |
//! | the ledger file | 4096 peers | [`ledger`] | the longest-unseen strangers forgotten |
//! | a tree's skeleton (a stranger's tree: a HAMT bomb, a chain) | 65,536 blocks, 64 MiB (checked as blocks arrive: the 256 wants then in flight, 2 MiB each at most, may land past it), 256 wants in flight, 10 minutes, stopped 30 s after the last read (config `skeleton_nodes`, `skeleton_bytes`) | [`skeleton`] | the walk stops; the rest is fetched as read |
//! | skeleton walks | 4 at once, 4096 roots remembered, a walk that ended early (idle, a block nobody sent) not retried within 60 s | [`source`] | not started (fetched as read) |
//!
//! Not bounded here: the yamux buffers of 512 connections could in theory hold 8 GiB, if a
//! peer with 128 identities filled every stream of every connection and we read none of
//! them (we read and drop streams as they come, so a peer holds what it sent for as long as
//! our reads take); and the DAG a local user asks `fetch` to walk is as big as that DAG.
//!
//! The control socket (any local user) has its own table in the `cairn` binary's `socket`
//! module.

pub mod bitswap;
pub mod client;
pub mod config;
pub mod dht;
pub mod fetch;
pub mod history;
pub mod identity;
pub mod incentives;
pub mod ledger;
pub mod maxflow;
mod muxer;
pub mod node;
pub mod reputation;
pub mod skeleton;
pub mod source;

use cairn_store::{Cid, StoreError};

pub use crate::{
    bitswap::accept::Unverifiable,
    client::{Client, Resolved},
    config::Config,
    source::NetworkSource,
};
pub use libp2p::{identity::Keypair, Multiaddr, PeerId};

/// What can go wrong with the node.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("setting up the transport: {0}")]
    Transport(String),
    #[error("the node has stopped")]
    Stopped,
    #[error("dialing: {0}")]
    Dial(String),
    #[error("block {0} is not available: no peer sent it in time")]
    Unavailable(Cid),
    #[error("a background task failed: {0}")]
    Task(String),
    #[error("{0}")]
    Name(String),
    #[error(transparent)]
    Unverifiable(#[from] Unverifiable),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Ok if cairn can check a block of this CID, and so will ask peers for it: its hash
/// function is one the store computes, its digest neither truncated below 16 bytes nor
/// longer than the function's output. Every want passes this before it reaches a peer.
pub fn verifiable(cid: &Cid) -> Result<(), NetError> {
    Ok(bitswap::accept::verifiable(cid)?)
}
