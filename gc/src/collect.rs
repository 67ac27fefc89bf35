//! Mark and sweep. See the crate docs for the protocol with writers.

use std::{
    collections::{HashMap, HashSet},
    fs::{self, File, OpenOptions},
    io::{self, Read, Seek, SeekFrom},
    path::PathBuf,
    time::{Duration, Instant},
};

use cairn_store::{codec, journal::Record, temp, Cid, Store};

use crate::{pins, GcError};

/// Block files unlinked together (on two threads) within a sweep batch.
const SWEEP_CHUNK: usize = 64;

/// How to collect.
#[derive(Debug, Clone)]
pub struct GcOptions {
    /// Report what would be freed; delete nothing (not even dead temp pins or stale links).
    pub dry_run: bool,
    /// Stop once this many bytes were freed.
    pub max_freed: Option<u64>,
    /// Longest time the collector holds `R/pins/lock` at once (writers wait at most this).
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
    pub roots_time: Duration,
    pub mark_time: Duration,
    pub sweep_time: Duration,
    /// The longest time `R/pins/lock` was held exclusively.
    pub longest_hold: Duration,
}

/// A block's identity for the mark set: 8 bytes of its digest. Two CIDs that collide are
/// both kept (a collision can only keep garbage, never free a live block).
fn fp(cid: &Cid) -> u64 {
    let d = cid.hash().digest();
    let mut b = [0u8; 8];
    let n = d.len().min(8);
    b[..n].copy_from_slice(&d[..n]);
    u64::from_le_bytes(b) ^ cid.hash().code().rotate_left(48)
}

/// A temp pin file being followed: what was read of it so far.
struct TempFile {
    file: File,
    /// Its inode: a new process with a reused pid makes a new file at the same path.
    ino: u64,
    offset: u64,
}

struct Marker<'a> {
    store: &'a Store,
    /// Links of every indexed block that has links.
    links: HashMap<u64, Vec<Cid>>,
    /// Every indexed block.
    indexed: HashSet<u64>,
    marked: HashSet<u64>,
}

impl Marker<'_> {
    /// Marks `root` and everything below it.
    fn mark(&mut self, root: &Cid) -> Result<(), GcError> {
        let mut stack = vec![*root];
        while let Some(cid) = stack.pop() {
            let f = fp(&cid);
            if !self.marked.insert(f) {
                continue;
            }
            if let Some(children) = self.links.get(&f) {
                stack.extend(children.iter().copied());
            } else if !self.indexed.contains(&f) {
                // Not in the index (a journal not yet ingested, or a block written during
                // this collection): parse the block itself, if it is here.
                if let Some(data) = self.store.blocks().get_unverified(&cid)? {
                    if let Ok(children) = codec::links(cid.codec(), &data) {
                        stack.extend(children);
                    }
                }
            }
        }
        Ok(())
    }
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
    let candidates: Vec<Cid> = store.blocks().iter()?.flatten().collect();
    report.candidates = candidates.len() as u64;
    let mut marker = Marker {
        store,
        links: HashMap::new(),
        indexed: HashSet::with_capacity(candidates.len()),
        marked: HashSet::with_capacity(candidates.len()),
    };
    store.with_index(|index| {
        for item in index.iter() {
            let (cid, meta) = item?;
            let f = fp(&cid);
            marker.indexed.insert(f);
            if !meta.links.is_empty() {
                marker.links.insert(f, meta.links);
            }
        }
        Ok(())
    })?;

    // Roots.
    let mut temps: HashMap<PathBuf, TempFile> = HashMap::new();
    let roots = gather_roots(store, opts, &mut report, &mut temps)?;
    report.roots_time = t.elapsed();

    let t = Instant::now();
    for r in &roots {
        marker.mark(r)?;
    }
    report.marked = marker.marked.len() as u64;
    report.mark_time = t.elapsed();

    // Sweep, in short batches under the exclusive lock; each batch first re-reads the roots
    // so that anything protected or pinned meanwhile is kept.
    let t = Instant::now();
    let garbage: Vec<Cid> = candidates
        .into_iter()
        .filter(|c| !marker.marked.contains(&fp(c)))
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
        let mut batch_report = GcReport::default();
        let fresh = gather_roots(store, opts, &mut batch_report, &mut temps)?;
        for r in &fresh {
            marker.mark(r)?;
        }
        let mut deleted = Vec::new();
        while next < garbage.len() && held.elapsed() < opts.batch {
            // A chunk at a time, unlinked on two threads: ext4 frees an inode's blocks
            // after releasing the directory lock, so two unlinkers overlap.
            let mut chunk = Vec::with_capacity(SWEEP_CHUNK);
            while next < garbage.len() && chunk.len() < SWEEP_CHUNK {
                let cid = garbage[next];
                next += 1;
                if marker.marked.contains(&fp(&cid)) {
                    report.rescued += 1;
                    continue;
                }
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
        }
        report.longest_hold = report.longest_hold.max(held.elapsed());
        let _ = lock(&pins_lock, libc::LOCK_UN);
        if !opts.dry_run {
            store.with_index(|index| index.apply(&deleted))?;
        }
    }
    report.sweep_time = t.elapsed();
    if !opts.dry_run {
        store.with_index(|index| index.flush())?;
    }
    Ok(report)
}

/// Every root: pins, auto pins, profile generations, and the CIDs in temp pin files of live
/// processes (read incrementally through `temps`). Removes dead temp pin files and pin links
/// that pin nothing, unless this is a dry run.
fn gather_roots(
    store: &Store,
    opts: &GcOptions,
    report: &mut GcReport,
    temps: &mut HashMap<PathBuf, TempFile>,
) -> Result<Vec<Cid>, GcError> {
    let layout = store.layout();
    let (pin_list, dangling) = pins::list(layout)?;
    report.pins = pin_list.len();
    let mut roots: Vec<Cid> = pin_list.into_iter().map(|p| p.cid).collect();
    for d in dangling {
        if !opts.dry_run {
            match fs::remove_file(&d.path) {
                Ok(()) => log::info!("removed {} ({})", d.path.display(), d.why),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(GcError::io(&d.path, e)),
            }
        }
        report.removed_links.push(d.path);
    }
    roots.extend(pins::profile_roots(layout)?);

    let dir = layout.temp_pins();
    let entries = match fs::read_dir(&dir) {
        Ok(rd) => rd
            .filter_map(Result::ok)
            .map(|e| e.path())
            .collect::<Vec<_>>(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(GcError::io(&dir, e)),
    };
    let mut seen = HashSet::new();
    for path in entries {
        seen.insert(path.clone());
        let current = fs::metadata(&path)
            .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
            .ok();
        if temps.get(&path).is_some_and(|t| Some(t.ino) != current) {
            temps.remove(&path);
        }
        if !temps.contains_key(&path) {
            let file = match File::open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(GcError::io(&path, e)),
            };
            // Its writer holds an exclusive lock for as long as it lives.
            if lock(&file, libc::LOCK_EX | libc::LOCK_NB).is_ok() {
                if !opts.dry_run {
                    let _ = fs::remove_file(&path);
                }
                report.dead_temp_pins += 1;
                continue;
            }
            let ino = file
                .metadata()
                .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
                .map_err(|e| GcError::io(&path, e))?;
            temps.insert(
                path.clone(),
                TempFile {
                    file,
                    ino,
                    offset: 0,
                },
            );
        }
        let t = temps.get_mut(&path).expect("inserted");
        let mut bytes = Vec::new();
        t.file
            .seek(SeekFrom::Start(t.offset))
            .and_then(|_| t.file.read_to_end(&mut bytes))
            .map_err(|e| GcError::io(&path, e))?;
        // Only whole lines count; a line being written is read next time.
        let complete = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        t.offset += complete as u64;
        roots.extend(temp::parse(&bytes[..complete]));
    }
    // Files that vanished: their writers finished (after pinning what they keep).
    temps.retain(|p, _| seen.contains(p));
    report.live_temp_pins = temps.len();
    Ok(roots)
}
