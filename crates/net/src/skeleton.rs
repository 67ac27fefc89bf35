//! The skeleton of a tree: the blocks that lookups, listings and `stat` below a root need,
//! fetched breadth first with many wants in flight as soon as a reader enters the root, so
//! that what the reader does next is answered here instead of one round trip at a time (a
//! catalog, as CernVM-FS fetches one before it serves a tree).
//!
//! The skeleton of a root is the root and every block reachable from it through
//! - dag-cbor nodes (an app node; every link is followed),
//! - UnixFS directories and HAMT shards (every link is followed),
//!
//! which makes it also hold what those link to: file roots (a dag-pb file's top block, with
//! its size and the CIDs of its parts; a small file imported without raw leaves is nothing
//! but its top block) and symlinks. It holds neither the parts of a file nor raw blocks: a
//! raw block is leaf data, a single-block file's bytes, whose size its directory states
//! (the views show that size until the block is read, and the read checks it).
//!
//! Blocks here are not fetched again, only read for their links, so a skeleton is resumable
//! and a walk of one that is complete costs reads of the local store only.
//!
//! A skeleton is a hint: the reader's own wants go on as before, and nothing waits for the
//! skeleton. Bounds (a peer or the tree's author decides how large a tree is):
//!
//! | What                         | Bound                                  |
//! |------------------------------|----------------------------------------|
//! | blocks in a skeleton         | [`SkeletonLimits::nodes`] (config `skeleton_nodes`)  |
//! | bytes of those blocks        | [`SkeletonLimits::bytes`] (config `skeleton_bytes`), checked as blocks arrive: the wants in flight then (at most the window, each block at most 2 MiB) may still be stored as cache |
//! | wants in flight              | [`SkeletonLimits::window`]             |
//! | whole walk                   | [`SkeletonLimits::deadline`]           |
//! | no reader of the mount       | [`SkeletonLimits::idle`], then it stops |
//! | blocks waiting to be visited | at most `nodes` (each was counted when first seen) |
//!
//! A walk that reaches a bound stops; what it fetched stays as cache, and the rest of the
//! tree is fetched as it is read. Idleness is the mount's, not the tree's: a reader of any
//! file keeps every walk going, up to the deadline. A walk that ended early (idle, timed
//! out, a block nobody sent) is started again the next time its root is looked up.

use std::{
    collections::{HashSet, VecDeque},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use cairn_store::{
    codec::{
        self, codes,
        unixfs::{AttrKind, Attrs},
    },
    hash::IDENTITY,
    Cid, Store, StoreError,
};
use futures::{stream::FuturesUnordered, StreamExt};
use serde::Serialize;

use crate::client::Client;

/// How far a skeleton walk may go.
#[derive(Debug, Clone, Copy)]
pub struct SkeletonLimits {
    /// Blocks in the skeleton, the root included; 0 turns skeletons off.
    pub nodes: u64,
    /// Bytes of those blocks.
    pub bytes: u64,
    /// Wants in flight at once.
    pub window: usize,
    /// The longest one block is waited for.
    pub timeout: Duration,
    /// The longest the whole walk takes.
    pub deadline: Duration,
    /// The walk stops when nothing was read from the mount for this long.
    pub idle: Duration,
}

impl Default for SkeletonLimits {
    fn default() -> Self {
        SkeletonLimits {
            nodes: 65_536,
            bytes: 64 << 20,
            window: 256,
            timeout: Duration::from_secs(30),
            deadline: Duration::from_secs(600),
            idle: Duration::from_secs(30),
        }
    }
}

/// How a walk ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// Every block of the skeleton is here.
    Complete,
    /// The skeleton is larger than the limits allow: the rest is fetched as it is read.
    TooLarge,
    /// Some blocks could not be fetched (no peer sent them in time, or they were not valid).
    Incomplete,
    /// Nobody read from the mount for [`SkeletonLimits::idle`].
    Idle,
    /// The walk took [`SkeletonLimits::deadline`].
    TimedOut,
}

/// What a walk did.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct SkeletonReport {
    pub outcome: Outcome,
    /// Blocks of the skeleton visited (here already or fetched).
    pub nodes: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Of those, fetched from peers.
    pub fetched: u64,
    pub millis: u64,
}

/// When the mount was last read: the walk stops when nobody reads.
#[derive(Debug)]
pub struct Activity {
    epoch: Instant,
    last_ms: AtomicU64,
}

impl Default for Activity {
    fn default() -> Self {
        Activity {
            epoch: Instant::now(),
            last_ms: AtomicU64::new(0),
        }
    }
}

impl Activity {
    /// Someone read just now.
    pub fn touch(&self) {
        let now = self.epoch.elapsed().as_millis() as u64;
        // Readers touch on every block: store only when it moves, to keep the line shared.
        if self.last_ms.load(Ordering::Relaxed) + 50 < now {
            self.last_ms.store(now, Ordering::Relaxed);
        }
    }

    /// How long since someone last read.
    pub fn idle_for(&self) -> Duration {
        let last = self.last_ms.load(Ordering::Relaxed);
        Duration::from_millis((self.epoch.elapsed().as_millis() as u64).saturating_sub(last))
    }
}

/// The links of a skeleton block that lead to more skeleton: all of a dag-cbor node's and of
/// a UnixFS directory's or HAMT shard's, none of anything else; never raw blocks (leaf data)
/// nor identity CIDs (their bytes are in the CID).
pub fn skeleton_links(cid: &Cid, attrs: Option<Attrs>, links: Vec<Cid>) -> Vec<Cid> {
    let follow = match cid.codec() {
        codes::DAG_CBOR => true,
        codes::DAG_PB => attrs.is_some_and(|a| a.kind == AttrKind::Directory),
        _ => false,
    };
    if !follow {
        return Vec::new();
    }
    links
        .into_iter()
        .filter(|l| l.codec() != codes::RAW && l.hash().code() != IDENTITY)
        .collect()
}

/// One block of the skeleton: its CID, the links to follow, its size, whether it was
/// fetched.
type Visited = Result<(Cid, Vec<Cid>, u64, bool), ()>;

/// Walks the skeleton of `root` breadth first, fetching what is not here from `client`'s
/// peers, within `limits`, while `activity` shows a reader. Fetched blocks are stored as
/// cache.
pub async fn fetch_skeleton(
    client: &Client,
    store: &Arc<Store>,
    root: Cid,
    limits: &SkeletonLimits,
    activity: &Activity,
) -> SkeletonReport {
    let start = Instant::now();
    let mut r = SkeletonReport {
        outcome: Outcome::Complete,
        nodes: 0,
        bytes: 0,
        fetched: 0,
        millis: 0,
    };
    let mut seen: HashSet<Cid> = HashSet::new();
    // Each block to visit, with the block that linked to it.
    let mut queue: VecDeque<(Cid, Option<Cid>)> = VecDeque::new();
    if root.codec() != codes::RAW && root.hash().code() != IDENTITY {
        seen.insert(cairn_store::canonical(&root));
        queue.push_back((root, None));
    }
    let mut running = FuturesUnordered::new();
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let deadline = tokio::time::sleep(limits.deadline);
    tokio::pin!(deadline);
    loop {
        while running.len() < limits.window.max(1) {
            let Some((cid, parent)) = queue.pop_front() else {
                break;
            };
            running.push(visit(client, store.clone(), cid, parent, limits.timeout));
        }
        if running.is_empty() {
            break;
        }
        let done = tokio::select! {
            d = running.next() => d,
            _ = tick.tick() => {
                if activity.idle_for() > limits.idle {
                    r.outcome = Outcome::Idle;
                    break;
                }
                continue;
            }
            _ = &mut deadline => {
                r.outcome = Outcome::TimedOut;
                break;
            }
        };
        let Some(done) = done else { break };
        let Ok((cid, links, size, fetched)) = done else {
            r.outcome = Outcome::Incomplete;
            continue;
        };
        log::trace!(
            "skeleton of {root}: {cid} ({size} bytes, fetched {fetched}) at {} ms, {} links, {} running",
            start.elapsed().as_millis(),
            links.len(),
            running.len()
        );
        r.nodes += 1;
        r.bytes += size;
        r.fetched += fetched as u64;
        if r.bytes > limits.bytes {
            r.outcome = Outcome::TooLarge;
            break;
        }
        for l in links {
            if seen.insert(cairn_store::canonical(&l)) {
                // Counted when seen, so that the queue is bounded too: a node with more
                // links than the limit leaves ends the walk here.
                if seen.len() as u64 > limits.nodes {
                    r.outcome = Outcome::TooLarge;
                    break;
                }
                queue.push_back((l, Some(cid)));
            }
        }
        if r.outcome == Outcome::TooLarge {
            break;
        }
    }
    r.millis = start.elapsed().as_millis() as u64;
    r
}

/// One block: here already (read for its links), or fetched (first from the peer that sent
/// `parent`) and stored as cache.
async fn visit(
    client: &Client,
    store: Arc<Store>,
    cid: Cid,
    parent: Option<Cid>,
    timeout: Duration,
) -> Visited {
    let s = store.clone();
    let local = tokio::task::spawn_blocking(move || match s.meta(&cid) {
        Ok(Some(m)) => Some((skeleton_links(&cid, m.attrs, m.links), m.size)),
        Err(StoreError::Corrupt { cid }) => {
            let _ = s.blocks().quarantine(&cid);
            None
        }
        _ => None,
    })
    .await
    .map_err(|_| ())?;
    if let Some((links, size)) = local {
        return Ok((cid, links, size, false));
    }
    let data = client.want_below(cid, parent, timeout).await.ok_or(())?;
    let parsed = tokio::task::spawn_blocking(move || {
        // The engine stores what it receives too; storing here makes the block's index
        // record certain before the walk reports it complete.
        let _ = store.put_cache(&cid, &data);
        let links = codec::links_of(&cid, &data).unwrap_or_default();
        let attrs = match cid.codec() {
            codes::DAG_PB => Attrs::of_dag_pb(&data),
            _ => None,
        };
        (skeleton_links(&cid, attrs, links), data.len() as u64)
    })
    .await
    .map_err(|_| ())?;
    Ok((cid, parsed.0, parsed.1, true))
}

#[cfg(test)]
mod tests {
    use cairn_store::HashAlg;

    use super::*;

    fn cid(codec: u64, seed: &[u8]) -> Cid {
        Cid::new_v1(codec, HashAlg::Sha2_256.digest(seed))
    }

    /// Directories and dag-cbor nodes lead on; files, symlinks and raw blocks do not, and a
    /// raw link is never part of the skeleton.
    #[test]
    fn only_directories_and_cbor_lead_on() {
        let (pb, raw) = (cid(codes::DAG_PB, b"child"), cid(codes::RAW, b"leaf"));
        let links = vec![pb, raw];
        let attrs = |kind| {
            Some(Attrs {
                kind,
                size: 2,
                mode: None,
                mtime: None,
            })
        };
        let dir = cid(codes::DAG_PB, b"dir");
        assert_eq!(
            skeleton_links(&dir, attrs(AttrKind::Directory), links.clone()),
            vec![pb]
        );
        for kind in [AttrKind::File, AttrKind::Symlink] {
            assert!(skeleton_links(&dir, attrs(kind), links.clone()).is_empty());
        }
        // dag-pb that is not UnixFS: no way to tell a directory, so not followed.
        assert!(skeleton_links(&dir, None, links.clone()).is_empty());
        let app = cid(codes::DAG_CBOR, b"app");
        assert_eq!(skeleton_links(&app, None, links.clone()), vec![pb]);
        assert!(skeleton_links(&raw, None, links).is_empty());
    }
}
