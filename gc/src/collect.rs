//! Mark and sweep. See the crate docs for the protocol with writers.

use std::{
    collections::HashSet,
    fs::{File, OpenOptions},
    io,
    path::PathBuf,
    time::{Duration, Instant},
};

use cairn_store::{journal::Record, Cid, Layout, Store};

use crate::{
    mark::Marker,
    pins::{PinWalker, Refused, Stale},
    temp::TempPins,
    GcError,
};

/// Block files unlinked together (on two threads) within a sweep batch.
const SWEEP_CHUNK: usize = 64;

/// How to collect.
#[derive(Debug, Clone)]
pub struct GcOptions {
    /// Report what would be freed; delete nothing (not even dead temp pins or stale links).
    pub dry_run: bool,
    /// Stop once this many bytes were freed.
    pub max_freed: Option<u64>,
    /// How long the collector goes on deleting once it holds `R/pins/lock` (writers wait for
    /// it). A batch first gathers the roots again, then deletes at least one chunk of blocks
    /// and goes on until this much time has passed since it took the lock: a budget shorter
    /// than the gathering still deletes a chunk per batch.
    pub batch: Duration,
    /// How long to wait for another process to release the index.
    pub index_wait: Duration,
}

impl Default for GcOptions {
    fn default() -> Self {
        GcOptions {
            dry_run: false,
            max_freed: None,
            batch: Duration::from_millis(20),
            index_wait: Duration::from_secs(60),
        }
    }
}

/// What a collection did.
#[derive(Debug, Default, Clone)]
pub struct GcReport {
    pub pins: usize,
    pub live_temp_pins: usize,
    pub candidates: u64,
    pub marked: u64,
    pub freed_blocks: u64,
    pub freed_bytes: u64,
    /// Garbage at the start that a writer protected during the sweep, and so was kept.
    pub rescued: u64,
    /// Temp pin files of dead processes, removed.
    pub dead_temp_pins: usize,
    /// Pin symlinks that pinned nothing, removed.
    pub removed_links: Vec<PathBuf>,
    /// What the walks of pins, profiles and temp pins left alone, and why (each path once).
    pub refused: Vec<Refused>,
    pub roots_time: Duration,
    pub mark_time: Duration,
    pub sweep_time: Duration,
    /// The longest time `R/pins/lock` was held exclusively.
    pub longest_hold: Duration,
    /// How many batches the sweep took (times `R/pins/lock` was held exclusively).
    pub batches: u64,
    /// Directories kept whose summary of their children the index lacked (they were
    /// recorded before their children, as a fetch records them) and now has.
    pub summarised: u64,
}

/// Takes `R/pins/gc.lock`, so that collections do not overlap.
fn gc_lock(store: &Store) -> Result<File, GcError> {
    let path = store.layout().pins().join("gc.lock");
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| GcError::io(&path, e))?;
    if lock(&f, libc::LOCK_EX | libc::LOCK_NB).is_err() {
        return Err(GcError::Busy);
    }
    Ok(f)
}

fn lock(f: &File, op: i32) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    loop {
        // SAFETY: valid fd for the call.
        if unsafe { libc::flock(f.as_raw_fd(), op) } == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Collects garbage in `store`: everything no pin, auto pin, live temp pin or profile
/// generation reaches.
pub fn collect(store: &Store, opts: &GcOptions) -> Result<GcReport, GcError> {
    let _gc = gc_lock(store)?;
    let mut report = GcReport::default();
    let layout = store.layout().clone();

    // The index, with every finished journal folded in.
    if !store.open_index(opts.index_wait)? {
        return Err(GcError::IndexBusy);
    }
    let t = Instant::now();
    // Candidates: the block files present now. Blocks written later are not candidates.
    let mut marker = Marker::new(store);
    let candidates = marker.candidates(store.blocks().iter()?.flatten());
    report.candidates = candidates.len() as u64;
    // Directories recorded before their children: summarised after the sweep, if kept.
    let mut unsummarised = Vec::new();
    store.with_index(|index| {
        for item in index.iter() {
            let (cid, meta) = item?;
            marker.indexed(&cid, &meta.links);
            if meta.wants_children() {
                unsummarised.push(cid);
            }
        }
        Ok(())
    })?;

    // Roots.
    let mut roots = Roots::default();
    let first = roots.gather(&layout, opts, &mut report)?;
    report.pins = first.pins;
    report.live_temp_pins = roots.temps.live();
    report.roots_time = t.elapsed();

    let t = Instant::now();
    for r in &first.cids {
        marker.mark(r)?;
    }
    report.marked = marker.marked_count();
    report.mark_time = t.elapsed();

    // Sweep, in short batches under the exclusive lock; each batch first re-reads the roots
    // so that anything protected or pinned meanwhile is kept.
    let t = Instant::now();
    let garbage: Vec<u32> = candidates
        .into_iter()
        .filter(|&id| !marker.is_marked(id))
        .collect();
    let lock_path = layout.pins_lock();
    let pins_lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| GcError::io(&lock_path, e))?;
    let mut next = 0;
    while next < garbage.len() {
        lock(&pins_lock, libc::LOCK_EX).map_err(|e| GcError::io(&lock_path, e))?;
        let held = Instant::now();
        report.batches += 1;
        let fresh = roots.gather(&layout, opts, &mut report)?;
        for r in &fresh.cids {
            marker.mark(r)?;
        }
        let mut deleted = Vec::new();
        // At least one chunk per batch, however long the roots took to gather: every batch
        // moves `next` on, so the sweep ends.
        loop {
            // A chunk at a time, unlinked on two threads: ext4 frees an inode's blocks
            // after releasing the directory lock, so two unlinkers overlap.
            let mut chunk = Vec::with_capacity(SWEEP_CHUNK);
            while next < garbage.len() && chunk.len() < SWEEP_CHUNK {
                let id = garbage[next];
                next += 1;
                if marker.is_marked(id) {
                    report.rescued += 1;
                    continue;
                }
                let cid = marker.cid(id);
                let size = store.blocks().size(&cid)?.unwrap_or(0);
                if opts
                    .max_freed
                    .is_some_and(|max| report.freed_bytes + size > max)
                {
                    next = garbage.len();
                    break;
                }
                report.freed_bytes += size;
                chunk.push((cid, size));
            }
            let removed: Vec<Result<bool, cairn_store::StoreError>> = if opts.dry_run {
                chunk.iter().map(|_| Ok(true)).collect()
            } else {
                let (a, b) = chunk.split_at(chunk.len() / 2);
                let rm = |part: &[(Cid, u64)]| -> Vec<_> {
                    part.iter().map(|(c, _)| store.blocks().remove(c)).collect()
                };
                std::thread::scope(|s| {
                    let other = s.spawn(|| rm(b));
                    let mut out = rm(a);
                    out.extend(other.join().expect("sweeper thread"));
                    out
                })
            };
            for ((cid, size), r) in chunk.into_iter().zip(removed) {
                if r? {
                    report.freed_blocks += 1;
                    deleted.push(Record::Delete(cid));
                } else {
                    report.freed_bytes -= size;
                }
            }
            if next >= garbage.len() || held.elapsed() >= opts.batch {
                break;
            }
        }
        report.longest_hold = report.longest_hold.max(held.elapsed());
        let _ = lock(&pins_lock, libc::LOCK_UN);
        if !opts.dry_run {
            store.with_index(|index| index.apply(&deleted))?;
        }
    }
    report.sweep_time = t.elapsed();
    report.dead_temp_pins = roots.temps.dead();
    if !opts.dry_run {
        // Best effort: a failure here must not lose what the sweep did.
        match store.with_index(|index| index.summarise_dirs(unsummarised)) {
            Ok(n) => report.summarised = n as u64,
            Err(e) => log::warn!("summarising directories' children: {e}"),
        }
        store.with_index(|index| index.flush())?;
    }
    Ok(report)
}

/// The walkers of every kind of root, kept across the collection's looks so that each look
/// re-reads only what changed.
#[derive(Default)]
struct Roots {
    pins: PinWalker,
    temps: TempPins,
    /// Paths already in the report.
    reported: HashSet<PathBuf>,
}

/// One look at the roots.
struct Gathered {
    cids: Vec<Cid>,
    pins: usize,
}

impl Roots {
    /// Every root: pins, auto pins, profile generations, and the CIDs in temp pin files of
    /// live processes (the lines not read by an earlier look). Removes dead temp pin files
    /// and pin links that pin nothing, unless this is a dry run. Adds those, and what the
    /// walks refused, to the report.
    fn gather(
        &mut self,
        layout: &Layout,
        opts: &GcOptions,
        report: &mut GcReport,
    ) -> Result<Gathered, GcError> {
        let stale = if opts.dry_run {
            Stale::WouldRemove
        } else {
            Stale::Remove
        };
        let walk = self.pins.walk_cids(layout, stale)?;
        let mut cids = walk.cids.unwrap_or_default();
        let pins = cids.len();
        let mut refused = walk.refused;
        for d in walk.dangling {
            if self.reported.insert(d.path.clone()) {
                report.removed_links.push(d.path);
            }
        }
        cids.extend(self.pins.profile_roots(layout, &mut refused)?);
        let temps = self.temps.look(layout, opts.dry_run)?;
        cids.extend(temps.cids);
        refused.extend(temps.refused);
        for r in refused {
            if self.reported.insert(r.path.clone()) {
                log::info!("refused {}: {}", r.path.display(), r.why);
                report.refused.push(r);
            }
        }
        Ok(Gathered { cids, pins })
    }
}

#[cfg(test)]
mod tests {
    use cairn_unixfs::import::{tree, AddOptions};

    use super::*;

    /// The collector summarises the children of the directories it keeps that were recorded
    /// before their children (a fetch records blocks parent first, batch by batch), so that
    /// a mount describes their listings with one read of the index.
    #[test]
    fn kept_directories_recorded_before_their_children_are_summarised() {
        let t = tempfile::tempdir().unwrap();
        let src = t.path().join("src");
        std::fs::create_dir_all(src.join("sub")).unwrap();
        for (name, body) in [("a", "one"), ("b", "two two"), ("sub/c", "three")] {
            std::fs::write(src.join(name), body).unwrap();
        }
        let first = Store::init(t.path().join("first")).unwrap();
        let opts = AddOptions::default().resolve(None, None).unwrap();
        let added = tree::add_path(&first, &opts, &src, true, &()).unwrap();
        first.flush().unwrap();
        // Copied root first, a batch per block: each directory is recorded before its
        // children. This handle's temp pins keep every block through the collection.
        let store = Store::init(t.path().join("second")).unwrap();
        for e in added.iter().rev() {
            let cid = e.added.cid;
            store.put(&cid, &first.get(&cid).unwrap().unwrap()).unwrap();
            store.flush().unwrap();
        }
        let root = added.last().unwrap().added.cid;
        let opts = GcOptions {
            index_wait: Duration::ZERO,
            ..GcOptions::default()
        };
        let report = collect(&store, &opts).unwrap();
        assert_eq!(report.freed_blocks, 0);
        assert_eq!(report.summarised, 2, "src and sub");
        let meta = store.indexed(&root).unwrap();
        let want: Vec<_> = meta
            .links
            .iter()
            .map(|c| store.indexed(c).unwrap().described().unwrap())
            .collect();
        assert_eq!(want.len(), 3);
        assert_eq!(meta.children, Some(want));
        assert_eq!(collect(&store, &opts).unwrap().summarised, 0, "once");
    }
}
