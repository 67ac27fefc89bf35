//! Fetching a whole DAG: every block below a root, with many wants in flight, in an order
//! that differs from node to node (so that a swarm of fetchers asks the seeder for different
//! blocks and can then trade among themselves), and resumable: blocks already here are not
//! fetched again, only read for their links.

use std::{
    collections::HashSet,
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use cairn_store::{codec, hash::IDENTITY, Cid, Store};
use futures::{stream::FuturesUnordered, StreamExt};
use serde::Serialize;

use crate::{client::Client, NetError};

/// How far a fetch has got.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct FetchProgress {
    /// Blocks of the DAG seen so far (fetched or already here).
    pub blocks: u64,
    /// Of those, fetched from peers, and their bytes.
    pub fetched: u64,
    pub fetched_bytes: u64,
}

/// A small xorshift generator: the order of a fetch need only differ between nodes.
struct Rng(u64);

impl Rng {
    fn new() -> Rng {
        let t = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos() as u64;
        Rng(t ^ ((std::process::id() as u64) << 32) | 1)
    }
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

/// Fetches every block below `root` that is not here, `window` at a time, each waiting at
/// most `timeout`. Fetched blocks are stored as cache (pin the root first to keep them).
/// Calls `progress` after each block.
pub async fn fetch_dag(
    client: &Client,
    store: &Arc<Store>,
    root: Cid,
    window: usize,
    timeout: Duration,
    progress: &(dyn Fn(&FetchProgress) + Sync),
) -> Result<FetchProgress, NetError> {
    crate::verifiable(&root)?;
    let mut p = FetchProgress::default();
    let mut seen: HashSet<Cid> = HashSet::new();
    let mut frontier = vec![root];
    seen.insert(cairn_store::canonical(&root));
    let mut rng = Rng::new();
    let mut running = FuturesUnordered::new();
    loop {
        while running.len() < window.max(1) && !frontier.is_empty() {
            let i = rng.below(frontier.len());
            let cid = frontier.swap_remove(i);
            running.push(one(client, store.clone(), cid, timeout));
        }
        let Some(done) = running.next().await else {
            break;
        };
        let (links, fetched) = done?;
        p.blocks += 1;
        if let Some(n) = fetched {
            p.fetched += 1;
            p.fetched_bytes += n;
        }
        for l in links {
            if l.hash().code() != IDENTITY && seen.insert(cairn_store::canonical(&l)) {
                // A link cairn could not check: the DAG cannot be fetched whole.
                crate::verifiable(&l)?;
                frontier.push(l);
            }
        }
        progress(&p);
    }
    Ok(p)
}

/// One block: its links, and its size if it had to be fetched.
async fn one(
    client: &Client,
    store: Arc<Store>,
    cid: Cid,
    timeout: Duration,
) -> Result<(Vec<Cid>, Option<u64>), NetError> {
    let s = store.clone();
    let local = tokio::task::spawn_blocking(move || -> Result<Option<Vec<Cid>>, NetError> {
        if !s.has(&cid)? {
            return Ok(None);
        }
        match s.get(&cid) {
            Ok(Some(data)) => Ok(Some(codec::links_of(&cid, &data).unwrap_or_default())),
            Ok(None) => Ok(None),
            Err(cairn_store::StoreError::Corrupt { cid }) => {
                s.blocks().quarantine(&cid)?;
                Ok(None)
            }
            Err(e) => Err(e.into()),
        }
    })
    .await
    .map_err(|e| NetError::Task(e.to_string()))??;
    if let Some(links) = local {
        return Ok((links, None));
    }
    let data = client
        .want(cid, timeout)
        .await
        .ok_or(NetError::Unavailable(cid))?;
    let n = data.len() as u64;
    let links = tokio::task::spawn_blocking(move || -> Result<Vec<Cid>, NetError> {
        store.put_cache(&cid, &data)?;
        Ok(codec::links_of(&cid, &data).unwrap_or_default())
    })
    .await
    .map_err(|e| NetError::Task(e.to_string()))??;
    Ok((links, Some(n)))
}
