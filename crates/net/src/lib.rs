//! cairn's libp2p node: Bitswap 1.2.0 client and server, Kademlia (public and LAN) and mDNS
//! discovery, and [`NetworkSource`], the `BlockSource` that fetches what the store lacks
//! while a program reads it.
//!
//! - [`node::start`] builds the swarm (TCP + noise + yamux and QUIC v1, identify, ping,
//!   Kademlia, mDNS, Bitswap) on the current tokio runtime and returns a [`Client`], the
//!   cloneable handle everything else uses. QUIC costs the build aws-lc (about four minutes
//!   of C on two cores, once: ccache keeps it); kubo speaks it too, though the kubo and Helia
//!   peers of the tests listen on TCP only, so QUIC is tested between cairn nodes. The swarm task and the Bitswap [`bitswap::engine`] only move
//!   queued work; disk and hashing run on blocking threads; every channel is bounded.
//! - [`NetworkSource`] wraps the store: local blocks as before, missing ones fetched within
//!   a timeout, corrupt ones fetched again.
//! - [`fetch::fetch_dag`] fetches a whole DAG with many wants in flight.
//! - [`config`]: `R/config.toml`; [`identity`]: the node's key in `R/node.key`;
//!   [`ledger`]: what each peer did, and when it is cut off.
//! - [`incentives`]: whom cairn serves first and whom it asks (the policy and why);
//!   [`reputation`] and [`history`]: signed statements shared between cairn nodes, and the
//!   maxflow reputation built from them.
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

pub mod bitswap;
pub mod client;
pub mod config;
pub mod fetch;
pub mod history;
pub mod identity;
pub mod incentives;
pub mod ledger;
mod muxer;
pub mod node;
pub mod reputation;
pub mod source;

use cairn_store::{Cid, StoreError};

pub use crate::{client::Client, config::Config, source::NetworkSource};
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
    #[error(transparent)]
    Store(#[from] StoreError),
}
