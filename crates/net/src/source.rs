//! [`NetworkSource`]: the [`BlockSource`] that answers from the local store and, for what it
//! lacks, from peers. A FUSE read, `cairn cat`, `get` and `ls` through it fetch missing
//! blocks; everything else about them stays as it was.
//!
//! - A block is here: the store answers (verified), and nobody waits.
//! - A block here fails its hash: it is moved to `R/blocks/.corrupt` and fetched again.
//! - A block is missing: the calling thread waits for the network at most the fetch timeout,
//!   then gets [`StoreError::Unavailable`] (EIO in the mount). Concurrent reads of one block
//!   share one want; the block is stored as unpinned cache (see `Store::put_cache`).
//! - At most `max_waiting` threads of one pool (`cairn_store::pool`: the mount's `/dev/fuse`
//!   threads, or one CPU's io_uring queue) wait at once: each keeps threads free to answer
//!   listings and `stat`s of local entries while peers are slow. A read over that limit is
//!   `Unavailable` at once.
//! - `prefetch` of missing blocks starts fetching them now: a sequential reader's read-ahead
//!   becomes "want these next blocks".
//! - When a reader enters a tree (`entered`, the mount resolving `R/store/{view}/{cid}`), its
//!   skeleton ([`crate::skeleton`]: directories, file roots, app nodes) is fetched in the
//!   background, many blocks at once, so that lookups and listings below it stop waiting on
//!   the network one name at a time. At most [`MAX_WALKS`] walks run at once; a root is
//!   walked once per start of the source (a walk of a complete skeleton reads local blocks
//!   only), again after a walk that ended early, but not within a minute of it.
//! - A block cairn could not check (a hash function the store does not compute, see
//!   [`crate::verifiable`]) is refused at once, with an error that says so: no peer is asked.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use cairn_store::{BlockSource, Cid, Store, StoreError};

use crate::{
    client::Client,
    skeleton::{self, Activity, Outcome, SkeletonLimits},
};

/// Skeleton walks running at once (each has up to its window of wants in flight).
pub const MAX_WALKS: usize = 4;
/// Roots remembered as walked; past this the finished ones are forgotten (walked again,
/// from local blocks, when entered again).
const WALKED: usize = 4096;

pub struct NetworkSource {
    store: Arc<Store>,
    client: Client,
    timeout: Duration,
    /// The limit for pool 0 (the mount's `/dev/fuse` threads, and every other thread).
    max_waiting: usize,
    /// The limit for each other pool (a CPU's io_uring queue).
    max_waiting_queue: usize,
    /// Threads waiting, per pool. Pool 0 has its own count; pools past the last share one
    /// (a tighter limit, never a looser one).
    waiting: Vec<AtomicUsize>,
    /// When a reader last came through.
    activity: Arc<Activity>,
    skeletons: Option<Arc<Skeletons>>,
}

/// A root's walk: running (`None`), or how it ended; since when.
type Walk = (Option<Outcome>, Instant);

/// A walk that ended early is not started again sooner than this.
const RETRY_WALK: Duration = Duration::from_secs(60);

/// The skeleton walks: where they run, how far, and each root's state.
struct Skeletons {
    rt: tokio::runtime::Handle,
    limits: SkeletonLimits,
    /// `None` while a walk runs; its outcome when it ended.
    roots: Mutex<HashMap<Cid, Walk>>,
}

/// How many pools are counted apart.
const POOLS: usize = 64;

impl NetworkSource {
    /// Answers from `store`, then from `client`'s peers, waiting at most `timeout` per block
    /// and with at most `max_waiting` threads of one pool waiting at once.
    pub fn new(
        store: Arc<Store>,
        client: Client,
        timeout: Duration,
        max_waiting: usize,
    ) -> NetworkSource {
        NetworkSource {
            store,
            client,
            timeout,
            max_waiting: max_waiting.max(1),
            max_waiting_queue: max_waiting.max(1),
            waiting: (0..POOLS).map(|_| AtomicUsize::new(0)).collect(),
            activity: Arc::new(Activity::default()),
            skeletons: None,
        }
    }

    /// Fetches the skeleton of each tree a reader enters, on `rt`, within `limits` (none if
    /// `limits.nodes` is 0).
    pub fn with_skeletons(
        mut self,
        rt: tokio::runtime::Handle,
        limits: SkeletonLimits,
    ) -> NetworkSource {
        self.skeletons = (limits.nodes > 0).then(|| {
            Arc::new(Skeletons {
                rt,
                limits,
                roots: Mutex::new(HashMap::new()),
            })
        });
        self
    }

    /// How the walk of `root`'s skeleton ended, `Some(None)` while it runs, `None` if none
    /// was started.
    pub fn skeleton(&self, root: &Cid) -> Option<Option<Outcome>> {
        let s = self.skeletons.as_ref()?;
        let roots = s.roots.lock().expect("skeleton roots");
        roots.get(&cairn_store::canonical(root)).map(|w| w.0)
    }

    /// At most `n` threads of each pool but pool 0 (each io_uring queue's) wait at once.
    pub fn with_queue_limit(mut self, n: usize) -> NetworkSource {
        self.max_waiting_queue = n.max(1);
        self
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The block from the network, within the timeout.
    fn fetch(&self, cid: &Cid) -> Result<Bytes, StoreError> {
        crate::bitswap::accept::verifiable(cid)?;
        let pool = cairn_store::pool::current();
        let (slot, limit) = match pool {
            0 => (0, self.max_waiting),
            p => (1 + (p - 1) % (POOLS - 1), self.max_waiting_queue),
        };
        let waiting = &self.waiting[slot];
        if waiting.fetch_add(1, Ordering::AcqRel) >= limit {
            waiting.fetch_sub(1, Ordering::AcqRel);
            return Err(StoreError::Unavailable {
                cid: *cid,
                why: "too many reads are waiting for the network",
            });
        }
        let got = self.client.want_blocking(*cid, self.timeout);
        waiting.fetch_sub(1, Ordering::AcqRel);
        got.ok_or(StoreError::Unavailable {
            cid: *cid,
            why: "no peer sent it in time",
        })
    }

    fn local(&self, cid: &Cid, out: &mut Vec<u8>) -> Result<bool, StoreError> {
        match self.store.blocks().get_into(cid, out) {
            Err(StoreError::Corrupt { cid }) => {
                log::warn!("block {cid} is corrupt on disk; moving it aside and fetching it again");
                self.store.blocks().quarantine(&cid)?;
                Ok(false)
            }
            other => other,
        }
    }
}

impl BlockSource for NetworkSource {
    fn get(&self, cid: &Cid) -> Result<Option<Bytes>, StoreError> {
        self.activity.touch();
        let mut v = Vec::new();
        if self.local(cid, &mut v)? {
            return Ok(Some(Bytes::from(v)));
        }
        self.fetch(cid).map(Some)
    }

    fn get_into(&self, cid: &Cid, out: &mut Vec<u8>) -> Result<bool, StoreError> {
        self.activity.touch();
        if self.local(cid, out)? {
            return Ok(true);
        }
        let b = self.fetch(cid)?;
        out.extend_from_slice(&b);
        Ok(true)
    }

    fn size(&self, cid: &Cid) -> Result<Option<u64>, StoreError> {
        self.store.blocks().size(cid)
    }

    fn indexed(&self, cid: &Cid) -> Option<cairn_store::index::BlockMeta> {
        self.store.indexed(cid)
    }

    fn has(&self, cid: &Cid) -> Result<bool, StoreError> {
        self.store.has(cid)
    }

    fn prefetch(&self, cids: &[Cid]) {
        let mut missing = Vec::new();
        for c in cids {
            match self.store.has(c) {
                Ok(true) => self.store.blocks().prefetch(c),
                _ => missing.push(*c),
            }
        }
        if !missing.is_empty() {
            self.client.prefetch(&missing, self.timeout);
        }
    }

    fn prefetch_local(&self, cids: &[Cid]) {
        // A block file that is not there is skipped by the prefetch workers.
        for c in cids {
            self.store.blocks().prefetch(c);
        }
    }

    fn entered(&self, root: &Cid) {
        self.activity.touch();
        let Some(s) = &self.skeletons else { return };
        let root = cairn_store::canonical(root);
        if root.codec() == cairn_store::codec::codes::RAW {
            return;
        }
        {
            let mut roots = s.roots.lock().expect("skeleton roots");
            // Walked already, or walking; a walk that gave up early (idle, out of time, a
            // block nobody sent) is tried again, but not sooner than RETRY_WALK after.
            match roots.get(&root) {
                Some((None | Some(Outcome::Complete | Outcome::TooLarge), _)) => return,
                Some((Some(_), ended)) if ended.elapsed() < RETRY_WALK => return,
                _ => {}
            }
            if roots.values().filter(|w| w.0.is_none()).count() >= MAX_WALKS {
                log::debug!("skeleton of {root}: {MAX_WALKS} walks running; fetched as read");
                return;
            }
            if roots.len() >= WALKED {
                roots.retain(|_, w| w.0.is_none());
            }
            roots.insert(root, (None, Instant::now()));
        }
        let (s, client, store, activity) = (
            s.clone(),
            self.client.clone(),
            self.store.clone(),
            self.activity.clone(),
        );
        s.rt.clone().spawn(async move {
            // However the walk ends (a panic included), its slot is given back.
            let mut ended = Ended {
                skeletons: s.clone(),
                root,
                outcome: Outcome::Incomplete,
            };
            let r = skeleton::fetch_skeleton(&client, &store, root, &s.limits, &activity).await;
            log::info!(
                "skeleton of {root}: {:?}, {} blocks ({} fetched, {} bytes) in {} ms",
                r.outcome,
                r.nodes,
                r.fetched,
                r.bytes,
                r.millis
            );
            ended.outcome = r.outcome;
        });
    }
}

/// Marks a root's walk ended when dropped: with its outcome once it has one, else
/// `Incomplete` (the task stopped without finishing: a panic, the runtime shutting down).
struct Ended {
    skeletons: Arc<Skeletons>,
    root: Cid,
    outcome: Outcome,
}

impl Drop for Ended {
    fn drop(&mut self) {
        if let Ok(mut roots) = self.skeletons.roots.lock() {
            roots.insert(self.root, (Some(self.outcome), Instant::now()));
        }
    }
}

/// A source shared by the mount and others.
pub type SharedSource = Arc<NetworkSource>;
