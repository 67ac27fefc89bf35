//! [`Store`]: block files and the index together, as every command uses them.

use std::{
    path::PathBuf,
    sync::{
        atomic::{AtomicU64, Ordering},
        Mutex, MutexGuard,
    },
    time::Duration,
};

use bytes::Bytes;
use cid::Cid;

use crate::{
    blocks::FileBlocks,
    codec, hash,
    index::{BlockMeta, IndexReader, IngestStats, RocksIndex},
    journal::{JournalWriter, Record},
    layout::Layout,
    source::BlockSource,
    temp::TempPins,
    StoreError,
};

/// One cairn root, opened.
pub struct Store {
    layout: Layout,
    blocks: FileBlocks,
    journal: Mutex<Option<JournalWriter>>,
    index: Mutex<Option<RocksIndex>>,
    /// The index opened for reading, when this handle does not hold it (see [`Store::indexed`]).
    reader: std::sync::OnceLock<IndexReader>,
    /// When opening the reader last failed or found no index.
    reader_tried: Mutex<Option<std::time::Instant>>,
    temp: Mutex<Option<TempPins>>,
    scoped: std::sync::OnceLock<crate::temp::ScopedPins>,
    written: AtomicU64,
}

/// What `verify` found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    pub checked: u64,
    pub bytes: u64,
    /// Blocks whose bytes did not match their CID, now in `R/blocks/.corrupt/`.
    pub corrupt: Vec<Cid>,
    /// Files under `R/blocks` that are not named by a canonical CID (left in place).
    pub strays: Vec<PathBuf>,
    /// Blocks whose hash this build cannot check (left in place).
    pub unsupported: Vec<Cid>,
    /// Staging files of dead writers that were removed.
    pub stale_staging: usize,
}

/// What `repair` did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RepairReport {
    pub indexed: u64,
    pub bytes: u64,
    pub corrupt: Vec<Cid>,
    /// Blocks that hash correctly but do not decode with their codec (indexed without links).
    pub undecodable: Vec<Cid>,
    pub strays: Vec<PathBuf>,
}

/// Totals from the index.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct StoreStats {
    pub blocks: u64,
    pub bytes: u64,
}

impl Store {
    /// Opens an existing root. Fails with [`StoreError::NotARoot`] if `cairn init` never ran.
    pub fn open(root: impl Into<PathBuf>) -> Result<Store, StoreError> {
        let layout = Layout::new(root);
        layout.check()?;
        let blocks = FileBlocks::new(&layout);
        blocks.clean_staging()?;
        Ok(Store {
            layout,
            blocks,
            journal: Mutex::new(None),
            index: Mutex::new(None),
            reader: std::sync::OnceLock::new(),
            reader_tried: Mutex::new(None),
            temp: Mutex::new(None),
            scoped: std::sync::OnceLock::new(),
            written: AtomicU64::new(0),
        })
    }

    /// Creates the root if needed, then opens it.
    pub fn init(root: impl Into<PathBuf>) -> Result<Store, StoreError> {
        let layout = Layout::new(root);
        layout.create()?;
        Store::open(layout.root().to_owned())
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    pub fn blocks(&self) -> &FileBlocks {
        &self.blocks
    }

    /// Blocks newly written by this handle.
    pub fn written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }

    /// Stores a block after checking that `data` hashes to `cid`. Returns false if it was
    /// already present. Blocks whose codec we parse must decode.
    pub fn put(&self, cid: &Cid, data: &[u8]) -> Result<bool, StoreError> {
        hash::verify(cid, data)?;
        self.put_hashed(cid, &[data], None)
    }

    /// Stores a block whose CID the caller computed from these very bytes. `links`, when the
    /// caller knows them (the importer built the node), spares parsing the block again.
    pub fn put_hashed(
        &self,
        cid: &Cid,
        parts: &[&[u8]],
        links: Option<&[Cid]>,
    ) -> Result<bool, StoreError> {
        if cid.hash().code() == hash::IDENTITY {
            return Ok(false);
        }
        let size: usize = parts.iter().map(|p| p.len()).sum();
        // One part is the rule (the importer writes each node contiguously); several are
        // joined only when the block must be parsed.
        let joined;
        let data = match parts {
            [one] => Some(*one),
            _ if links.is_none() || cid.codec() == codec::codes::DAG_PB => {
                joined = parts.concat();
                Some(&joined[..])
            }
            _ => None,
        };
        let links = match (links, data) {
            (Some(l), _) => l.to_vec(),
            (None, Some(data)) => codec::links_of(cid, data)
                .map_err(|source| StoreError::Decode { cid: *cid, source })?,
            (None, None) => unreachable!("joined when links are needed"),
        };
        let attrs = data.and_then(|d| attrs_of(cid, d));
        // Protected from the collector before we look for the block or write it.
        self.protect(&[*cid])?;
        let fresh = self.blocks.put_parts(cid, parts)?;
        if fresh {
            self.written.fetch_add(1, Ordering::Relaxed);
        }
        // Recorded even when the file was already there: it heals an index that lost the entry.
        let meta = BlockMeta {
            size: size as u64,
            codec: cid.codec(),
            links,
            attrs,
            children: None,
        };
        self.record(Record::Put(crate::canonical(cid), meta))?;
        Ok(fresh)
    }

    /// Stores a block that was fetched for a reader, not for keeping: `data` must hash to `cid`
    /// (the caller checked it). It is protected from the collector only while it is being
    /// written (see [`crate::temp::ScopedPins`]); afterwards it is cache, which a collection
    /// deletes unless a pin reaches it. Returns false if it was already present.
    pub fn put_cache(&self, cid: &Cid, data: &[u8]) -> Result<bool, StoreError> {
        if cid.hash().code() == hash::IDENTITY {
            return Ok(false);
        }
        let links = codec::links_of(cid, data)
            .map_err(|source| StoreError::Decode { cid: *cid, source })?;
        let scoped = self
            .scoped
            .get_or_init(|| crate::temp::ScopedPins::new(&self.layout));
        let _scope = scoped.protect(&[*cid])?;
        let fresh = self.blocks.put_parts(cid, &[data])?;
        if fresh {
            self.written.fetch_add(1, Ordering::Relaxed);
        }
        self.record(Record::Put(
            crate::canonical(cid),
            BlockMeta {
                size: data.len() as u64,
                codec: cid.codec(),
                links,
                attrs: attrs_of(cid, data),
                children: None,
            },
        ))?;
        Ok(fresh)
    }

    /// Lets go of the scoped temp pins of [`put_cache`](Self::put_cache) writes that have
    /// finished (a daemon calls this when it is idle).
    pub fn release_cache_pins(&self) {
        if let Some(s) = self.scoped.get() {
            s.release_idle();
        }
    }

    /// Temp-pins `cids` for this process (see [`crate::temp`]) until [`Store::release`] or
    /// the store is dropped. Puts do this themselves; callers protect CIDs they are about to
    /// rely on without putting them.
    pub fn protect(&self, cids: &[Cid]) -> Result<(), StoreError> {
        let mut temp = self.temp.lock().expect("temp lock");
        if temp.is_none() {
            *temp = Some(TempPins::create(&self.layout)?);
        }
        temp.as_mut().expect("just set").protect(cids)
    }

    /// Drops this process's temp pins: what it wrote is collectable from now on unless pinned.
    pub fn release(&self) {
        self.temp.lock().expect("temp lock").take();
    }

    fn record(&self, r: Record) -> Result<(), StoreError> {
        if let Some(index) = self.index.lock().expect("index lock").as_ref() {
            return index.apply(&[r]);
        }
        let mut journal = self.journal.lock().expect("journal lock");
        if journal.is_none() {
            *journal = Some(JournalWriter::create(&self.layout.journals())?);
        }
        journal.as_mut().expect("just set").append(&r)
    }

    /// The block's verified bytes.
    pub fn get(&self, cid: &Cid) -> Result<Option<Bytes>, StoreError> {
        self.blocks.get(cid)
    }

    pub fn has(&self, cid: &Cid) -> Result<bool, StoreError> {
        self.blocks.has(cid)
    }

    /// Deletes a block (file and index entry). Returns false if it was not there.
    pub fn remove(&self, cid: &Cid) -> Result<bool, StoreError> {
        let removed = self.blocks.remove(cid)?;
        self.record(Record::Delete(crate::canonical(cid)))?;
        Ok(removed)
    }

    /// Size, codec and links of a present block: from the index when this handle holds it and
    /// knows the block, otherwise by reading and parsing the block. `Ok(None)` if absent.
    pub fn meta(&self, cid: &Cid) -> Result<Option<BlockMeta>, StoreError> {
        if let Some(index) = self.index.lock().expect("index lock").as_ref() {
            if let Some(m) = index.get(cid)? {
                return Ok(Some(m));
            }
        }
        let Some(data) = self.blocks.get(cid)? else {
            return Ok(None);
        };
        let links = codec::links_of(cid, &data)
            .map_err(|source| StoreError::Decode { cid: *cid, source })?;
        Ok(Some(BlockMeta {
            size: data.len() as u64,
            codec: cid.codec(),
            links,
            attrs: attrs_of(cid, &data),
            children: None,
        }))
    }

    /// Opens the read-only view of the index now rather than at the first
    /// [`indexed`](Self::indexed) call, so the first program to look something up through a
    /// mount does not wait for it. A no-op when this handle holds the index.
    pub fn open_reader(&self) {
        if self.index.lock().expect("index lock").is_some() || self.reader.get().is_some() {
            return;
        }
        *self.reader_tried.lock().expect("reader time") = Some(std::time::Instant::now());
        match IndexReader::open(&self.layout.index_db()) {
            Ok(Some(r)) => {
                let _ = self.reader.set(r);
            }
            Ok(None) => {}
            Err(e) => log::warn!("reading the index: {e}; attributes come from blocks"),
        }
    }

    /// What the index knows of a block, without reading the block: from the index this
    /// handle holds, else from a read-only view of it opened on first use (a mount never
    /// takes the writers' lock). `None` when the index does not know the block (yet: records
    /// still in journals are not seen) or cannot be read; callers then read the block.
    pub fn indexed(&self, cid: &Cid) -> Option<BlockMeta> {
        if let Some(index) = self.index.lock().expect("index lock").as_ref() {
            return index.get(cid).ok().flatten();
        }
        if let Some(r) = self.reader.get() {
            return r.get(cid);
        }
        // No index yet (a mount started before the first add), or it failed to open: try
        // again at most once a second, reading blocks meanwhile.
        {
            let mut last = self.reader_tried.lock().expect("reader time");
            if last.is_some_and(|t| t.elapsed() < Duration::from_secs(1)) {
                return None;
            }
            *last = Some(std::time::Instant::now());
        }
        match IndexReader::open(&self.layout.index_db()) {
            Ok(Some(r)) => self.reader.get_or_init(|| r).get(cid),
            Ok(None) => None,
            Err(e) => {
                log::warn!("reading the index: {e}; attributes come from blocks");
                None
            }
        }
    }

    /// Writes out this handle's journal and makes every block written so far durable, then
    /// folds finished journals into the index if no other process holds it. Call at the end
    /// of a batch of puts.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.blocks.sync()?;
        self.finish_journal()?;
        let held = self.index.lock().expect("index lock").is_some();
        if held {
            self.with_index(|index| {
                index.ingest(&self.layout.journals(), &self.blocks)?;
                index.flush()
            })?;
        } else if let Some(index) = RocksIndex::open(&self.layout.index_db(), Duration::ZERO)? {
            // Out of the log and into a table: a reader (a mount) opening later replays
            // whatever is still in the log, and would pay for this batch at its first lookup.
            if index.ingest(&self.layout.journals(), &self.blocks)?.records > 0 {
                index.flush()?;
            }
        }
        Ok(())
    }

    fn finish_journal(&self) -> Result<(), StoreError> {
        if let Some(j) = self.journal.lock().expect("journal lock").take() {
            j.finish()?;
        }
        Ok(())
    }

    /// Opens the index for this handle, waiting up to `wait` for another process to release
    /// it, and ingests every finished journal. Returns false if the index stayed busy.
    pub fn open_index(&self, wait: Duration) -> Result<bool, StoreError> {
        let mut slot = self.index.lock().expect("index lock");
        if slot.is_some() {
            return Ok(true);
        }
        // Our own journal must be finished to be ingested, and from now on we write directly.
        self.finish_journal()?;
        let Some(index) = RocksIndex::open(&self.layout.index_db(), wait)? else {
            return Ok(false);
        };
        index.ingest(&self.layout.journals(), &self.blocks)?;
        *slot = Some(index);
        Ok(true)
    }

    /// Releases the index for other processes.
    pub fn close_index(&self) {
        self.index.lock().expect("index lock").take();
    }

    /// Runs `f` with the index, which must have been opened with [`open_index`](Self::open_index)
    /// ([`StoreError::IndexNotOpen`] otherwise).
    pub fn with_index<T>(
        &self,
        f: impl FnOnce(&RocksIndex) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let guard: MutexGuard<'_, Option<RocksIndex>> = self.index.lock().expect("index lock");
        f(guard.as_ref().ok_or(StoreError::IndexNotOpen)?)
    }

    /// Ingests journals that finished since the index was opened.
    pub fn ingest(&self) -> Result<IngestStats, StoreError> {
        self.with_index(|i| i.ingest(&self.layout.journals(), &self.blocks))
    }

    /// Block count and bytes, from the index (which must be open: [`StoreError::IndexNotOpen`]
    /// otherwise).
    pub fn stats(&self) -> Result<StoreStats, StoreError> {
        self.with_index(|index| {
            let mut s = StoreStats::default();
            for item in index.iter() {
                let (_, meta) = item?;
                s.blocks += 1;
                s.bytes += meta.size;
            }
            Ok(s)
        })
    }

    /// Re-hashes every block; moves corrupt ones to `R/blocks/.corrupt/` and drops their index
    /// entries. Calls `progress(done)` now and then. Uses `threads` threads.
    pub fn verify(
        &self,
        threads: usize,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<VerifyReport, StoreError> {
        let mut report = VerifyReport {
            stale_staging: self.blocks.clean_staging()?,
            ..Default::default()
        };
        let mut cids = Vec::new();
        for item in self.blocks.iter()? {
            match item {
                Ok(cid) => cids.push(cid),
                Err((path, _)) => report.strays.push(path),
            }
        }
        let results = self.scan(&cids, threads, progress, |cid, data| {
            Ok(hash::verify(cid, data).map(|()| data.len() as u64))
        })?;
        for (cid, r) in cids.iter().zip(results) {
            match r {
                Some(Ok(n)) => {
                    report.checked += 1;
                    report.bytes += n;
                }
                Some(Err(StoreError::UnsupportedHash { .. })) => report.unsupported.push(*cid),
                Some(Err(_)) => {
                    self.blocks.quarantine(cid)?;
                    self.record(Record::Delete(*cid))?;
                    report.corrupt.push(*cid);
                }
                None => {} // deleted while we ran
            }
        }
        self.flush()?;
        Ok(report)
    }

    /// Rebuilds the index from the block files alone. Corrupt blocks are moved aside as by
    /// `verify`. Waits up to `wait` for the index.
    pub fn repair(
        &self,
        threads: usize,
        wait: Duration,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<RepairReport, StoreError> {
        self.close_index();
        self.finish_journal()?;
        let db = self.layout.index_db();
        let index =
            RocksIndex::recreate(&db, wait)?.ok_or(StoreError::IndexBusy { path: db.clone() })?;
        // Journals written before now describe blocks we are about to scan anyway.
        for claimed in crate::journal::claim_all(&self.layout.journals())? {
            let _ = std::fs::remove_file(&claimed.path);
        }
        let mut report = RepairReport::default();
        let mut cids = Vec::new();
        for item in self.blocks.iter()? {
            match item {
                Ok(cid) => cids.push(cid),
                Err((path, _)) => report.strays.push(path),
            }
        }
        let results = self.scan(&cids, threads, progress, |cid, data| {
            hash::verify(cid, data)?;
            Ok(Ok(codec::links_of(cid, data).map(|links| BlockMeta {
                size: data.len() as u64,
                codec: cid.codec(),
                links,
                attrs: attrs_of(cid, data),
                children: None,
            })))
        })?;
        let mut batch = Vec::new();
        let mut dirs = Vec::new();
        for (cid, r) in cids.iter().zip(results) {
            let meta = match r {
                None => continue,
                Some(Err(StoreError::Corrupt { .. })) => {
                    self.blocks.quarantine(cid)?;
                    report.corrupt.push(*cid);
                    continue;
                }
                Some(Err(e)) => return Err(e),
                Some(Ok(Ok(meta))) => meta,
                Some(Ok(Err(_))) => {
                    report.undecodable.push(*cid);
                    BlockMeta {
                        size: self.blocks.size(cid)?.unwrap_or(0),
                        codec: cid.codec(),
                        links: vec![],
                        attrs: None,
                        children: None,
                    }
                }
            };
            report.indexed += 1;
            report.bytes += meta.size;
            if meta.wants_children() {
                dirs.push(*cid);
            }
            batch.push(Record::Put(*cid, meta));
            if batch.len() >= 16 * 1024 {
                index.apply(&batch)?;
                batch.clear();
            }
        }
        index.apply(&batch)?;
        // Blocks are scanned in no order: directories met before their children get their
        // summaries now.
        index.summarise_dirs(dirs)?;
        index.flush()?;
        Ok(report)
    }

    /// Reads every block in `cids` on `threads` threads and applies `f` to it. `None` for
    /// blocks that vanished meanwhile.
    #[allow(clippy::type_complexity)]
    fn scan<T: Send>(
        &self,
        cids: &[Cid],
        threads: usize,
        progress: &(dyn Fn(u64) + Sync),
        f: impl Fn(&Cid, &[u8]) -> Result<Result<T, StoreError>, StoreError> + Sync,
    ) -> Result<Vec<Option<Result<T, StoreError>>>, StoreError> {
        let threads = threads.max(1);
        let done = AtomicU64::new(0);
        let chunk = cids.len().div_ceil(threads).max(1);
        let parts: Vec<Result<Vec<_>, StoreError>> = std::thread::scope(|s| {
            let handles: Vec<_> = cids
                .chunks(chunk)
                .map(|part| {
                    let (f, done) = (&f, &done);
                    s.spawn(move || {
                        let mut out = Vec::with_capacity(part.len());
                        for cid in part {
                            let r = self
                                .blocks
                                .get_unverified(cid)?
                                .map(|data| f(cid, &data).unwrap_or_else(Err));
                            out.push(r);
                            let n = done.fetch_add(1, Ordering::Relaxed) + 1;
                            if n % 256 == 0 {
                                progress(n);
                            }
                        }
                        Ok(out)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("scan thread panicked"))
                .collect()
        });
        progress(done.load(Ordering::Relaxed));
        let mut out = Vec::with_capacity(cids.len());
        for p in parts {
            out.extend(p?);
        }
        Ok(out)
    }
}

impl BlockSource for Store {
    fn get(&self, cid: &Cid) -> Result<Option<Bytes>, StoreError> {
        self.blocks.get(cid)
    }
    fn get_into(&self, cid: &Cid, out: &mut Vec<u8>) -> Result<bool, StoreError> {
        self.blocks.get_into(cid, out)
    }
    fn size(&self, cid: &Cid) -> Result<Option<u64>, StoreError> {
        self.blocks.size(cid)
    }
    fn indexed(&self, cid: &Cid) -> Option<BlockMeta> {
        Store::indexed(self, cid)
    }
    fn has(&self, cid: &Cid) -> Result<bool, StoreError> {
        self.blocks.has(cid)
    }
    fn prefetch(&self, cids: &[Cid]) {
        for cid in cids {
            self.blocks.prefetch(cid);
        }
    }
    fn prefetch_local(&self, cids: &[Cid]) {
        self.prefetch(cids)
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        let _ = self.finish_journal();
    }
}

/// The UnixFS attributes the index keeps for a block (dag-pb nodes only).
fn attrs_of(cid: &Cid, data: &[u8]) -> Option<crate::codec::unixfs::Attrs> {
    (cid.codec() == codec::codes::DAG_PB)
        .then(|| crate::codec::unixfs::Attrs::of_dag_pb(data))
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::HashAlg;

    fn raw(data: &[u8]) -> Cid {
        Cid::new_v1(0x55, HashAlg::Sha2_256.digest(data))
    }

    /// Defect: every handle of a process used `R/pins/temp/{pid}` and took an exclusive
    /// `flock` on it, so a second `Store` in the same process waited forever on the first.
    #[test]
    fn two_handles_in_one_process_write_side_by_side() {
        let dir = tempfile::tempdir().unwrap();
        let a = std::sync::Arc::new(Store::init(dir.path()).unwrap());
        let b = Store::open(dir.path()).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let a2 = a.clone();
        // Detached: if it hangs, the test fails at the timeout instead of hanging too.
        std::thread::spawn(move || {
            a2.put(&raw(b"one"), b"one").unwrap();
            b.put(&raw(b"two"), b"two").unwrap();
            tx.send(b).unwrap();
        });
        let _b = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the second handle's put is stuck behind the first's temp pin lock");
        let temps: Vec<_> = std::fs::read_dir(a.layout().temp_pins())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(temps.len(), 2, "one temp pin file per handle: {temps:?}");
    }

    /// Defect: `flush` folded journals into the index's write-ahead log and left them there,
    /// so every mount opened afterwards replayed the log into memory at its first lookup
    /// (~30 ms of a program's first run after adding 4 MiB of records). Folded records go
    /// into a table now; a reader opened afterwards finds them without any log to replay.
    #[test]
    fn flushed_records_leave_no_log_for_readers_to_replay() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::init(dir.path()).unwrap();
        let cids: Vec<Cid> = (0..100u32)
            .map(|i| {
                let data = i.to_le_bytes();
                let cid = raw(&data);
                store.put(&cid, &data).unwrap();
                cid
            })
            .collect();
        store.flush().unwrap();
        let log_bytes: u64 = std::fs::read_dir(store.layout().index_db())
            .unwrap()
            .map(|e| e.unwrap())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".log"))
            .map(|e| e.metadata().unwrap().len())
            .sum();
        assert_eq!(log_bytes, 0, "records left in the index's log");
        let reader = Store::open(dir.path()).unwrap();
        reader.open_reader();
        assert!(reader.reader.get().is_some(), "open_reader opened nothing");
        for cid in &cids {
            assert_eq!(reader.indexed(cid).map(|m| m.size), Some(4));
        }
    }

    /// Defect: `stats()` panicked when the index had not been opened.
    #[test]
    fn stats_without_the_index_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::init(dir.path()).unwrap();
        assert!(matches!(store.stats(), Err(StoreError::IndexNotOpen)));
        assert!(store.open_index(Duration::ZERO).unwrap());
        assert_eq!(store.stats().unwrap(), StoreStats::default());
    }

    /// Defect: `repair` reported a held index as an I/O error with a made-up `WouldBlock`.
    #[test]
    fn repair_says_when_the_index_is_busy() {
        let dir = tempfile::tempdir().unwrap();
        let holder = Store::init(dir.path()).unwrap();
        assert!(holder.open_index(Duration::ZERO).unwrap());
        let other = Store::open(dir.path()).unwrap();
        let err = other.repair(1, Duration::ZERO, &|_| {}).unwrap_err();
        assert!(matches!(err, StoreError::IndexBusy { .. }), "{err}");
    }

    /// Defect the network issue names: a daemon that temp-pinned every block it fetched for
    /// its whole life grew its temp pin file without bound and kept every fetched block from
    /// the collector. Cache puts are protected only while they are written.
    #[test]
    fn cache_puts_leave_no_temp_pins_behind() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::init(dir.path()).unwrap();
        let temp_bytes = || -> u64 {
            std::fs::read_dir(store.layout().temp_pins())
                .unwrap()
                .map(|e| e.unwrap().metadata().unwrap().len())
                .sum()
        };
        for i in 0..2000u32 {
            let data = i.to_le_bytes();
            store.put_cache(&raw(&data), &data).unwrap();
            assert!(temp_bytes() < 4096, "temp pins grow: {}", temp_bytes());
        }
        store.release_cache_pins();
        assert_eq!(temp_bytes(), 0);
        assert!(store.has(&raw(&7u32.to_le_bytes())).unwrap());
    }

    /// A UnixFS block: `kind` with `data`, mode and mtime, linking to `links`.
    fn unixfs(
        kind: crate::codec::unixfs::DataType,
        data: &[u8],
        links: &[(&str, Cid)],
    ) -> (Cid, Vec<u8>) {
        use crate::codec::{
            dagpb::{PbLink, PbNode},
            unixfs::{Data, DataType, Mtime},
        };
        let mut d = Data::new(kind);
        if !data.is_empty() {
            d.data = Some(bytes::Bytes::copy_from_slice(data));
        }
        if kind == DataType::File {
            d.filesize = Some(data.len() as u64);
        }
        d.mode = Some(0o640);
        d.mtime = Some(Mtime {
            seconds: -86_400,
            nanos: Some(5),
        });
        let node = PbNode {
            links: links.iter().map(|(n, c)| PbLink::new(*c, *n, 1)).collect(),
            data: Some(d.encode().into()),
        };
        let bytes = node.encode();
        (Cid::new_v1(0x70, HashAlg::Sha2_256.digest(&bytes)), bytes)
    }

    /// A directory's record describes its children (as a listing would from their own
    /// records), whether the children were put before it (an import) or after it in the
    /// same batch (a CAR); across batches, `repair` summarises it. A directory with a child
    /// that the index cannot describe (dag-cbor) has no summary.
    #[test]
    fn directories_record_how_their_children_are_described() {
        use crate::codec::unixfs::DataType;
        let raw_child = (raw(b"raw bytes"), b"raw bytes".to_vec());
        let file = unixfs(DataType::File, b"hello", &[]);
        let link = unixfs(DataType::Symlink, b"../target", &[]);
        let sub = unixfs(DataType::Directory, b"", &[]);
        let children = [&raw_child, &file, &link, &sub];
        let names = ["a", "b", "c", "d"];
        let links: Vec<(&str, Cid)> = names.iter().zip(children).map(|(n, c)| (*n, c.0)).collect();
        let dir = unixfs(DataType::Directory, b"", &links);
        let cbor = (
            Cid::new_v1(0x71, HashAlg::Sha2_256.digest(&[0xa0])),
            vec![0xa0],
        );
        let mixed = unixfs(DataType::Directory, b"", &[("a", file.0), ("z", cbor.0)]);
        let each = |s: &Store| -> Vec<_> {
            children
                .iter()
                .map(|c| s.indexed(&c.0).unwrap().described().unwrap())
                .collect()
        };
        let summary = |s: &Store, c: &Cid| s.indexed(c).unwrap().children;

        // An import: children first, into the index this handle holds.
        let t = tempfile::tempdir().unwrap();
        let s = Store::init(t.path()).unwrap();
        assert!(s.open_index(Duration::ZERO).unwrap());
        for (cid, bytes) in children.iter().copied().chain([&cbor, &dir, &mixed]) {
            s.put(cid, bytes).unwrap();
        }
        let want = each(&s);
        assert_eq!(want[0].size, 9);
        assert_eq!(want[2].size, 9);
        assert_eq!(summary(&s, &dir.0), Some(want.clone()));
        assert_eq!(summary(&s, &sub.0), Some(vec![]), "an empty directory");
        assert_eq!(
            summary(&s, &mixed.0),
            None,
            "a child the index cannot describe"
        );

        // A CAR: the directory first, all in one journal, folded in by `flush`.
        let t = tempfile::tempdir().unwrap();
        let s = Store::init(t.path()).unwrap();
        for (cid, bytes) in [&dir].into_iter().chain(children.iter().copied()) {
            s.put(cid, bytes).unwrap();
        }
        s.flush().unwrap();
        let fresh = Store::open(t.path()).unwrap();
        assert_eq!(summary(&fresh, &dir.0), Some(want.clone()));

        // A fetch: the directory in one batch, its children in a later one.
        let t = tempfile::tempdir().unwrap();
        let s = Store::init(t.path()).unwrap();
        s.put(&dir.0, &dir.1).unwrap();
        s.flush().unwrap();
        for (cid, bytes) in children {
            s.put(cid, bytes).unwrap();
        }
        s.flush().unwrap();
        assert!(s.open_index(Duration::ZERO).unwrap());
        assert_eq!(summary(&s, &dir.0), None);
        s.close_index();
        s.repair(1, Duration::ZERO, &|_| {}).unwrap();
        assert!(s.open_index(Duration::ZERO).unwrap());
        assert_eq!(summary(&s, &dir.0), Some(want));
    }
}
