//! The RocksDB index under `R/index/db`: for every block, its size, codec and links, recorded
//! once at put time so that `refs`, listings and the collector never re-parse blocks.
//!
//! Key: the block's binary CIDv1. Value: `varint size | varint codec | varint n | n × (varint
//! len | CID bytes)`, then for UnixFS nodes their attributes ([`Attrs`]: kind, size, mode,
//! mtime), so that a mount lists and `stat`s without reading blocks, then for directories
//! (and HAMT shards) `varint n | n × Attrs`: how each link's block is described, in link
//! order, so that a mount describes a whole listing with one read instead of one per entry.
//! The index is derived data: block files are the truth, `cairn repair` rebuilds the index
//! from them, and readers fall back to parsing a block the index lacks.
//!
//! A directory's children are summarised when it is recorded if the index (or the batch
//! being written) knows every child then: an import records children before their parent.
//! Blocks that arrive parent first are summarised when their journal is ingested if the
//! children are in by then (a CAR: one journal); a directory whose children came in a later
//! batch (a fetch) is summarised by the next collection or `cairn repair`. Content never
//! changes, so a summary never goes stale, not even when a child is collected.
//!
//! Readers of an older cairn refuse records with a summary (they expect the record to end
//! after the attributes) and fall back to reading blocks; its collector and `refs` fail on
//! them until `cairn repair` is run with the older binary.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    thread,
    time::{Duration, Instant},
};

use cid::Cid;
use rocksdb::{
    BlockBasedOptions, DBCompressionType, DataBlockIndexType, IteratorMode, LogLevel, Options,
    WriteBatch, DB,
};

use crate::{
    blocks::FileBlocks,
    codec::{
        pb::{put_varint, Reader},
        unixfs::{AttrKind, Attrs},
    },
    journal::{self, Record},
    StoreError,
};

/// What the index knows of a block.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BlockMeta {
    pub size: u64,
    pub codec: u64,
    pub links: Vec<Cid>,
    /// A UnixFS node's kind, size, mode and mtime (dag-pb blocks that are UnixFS nodes).
    pub attrs: Option<Attrs>,
    /// A directory's children as [`BlockMeta::described`] describes them, one per link in
    /// link order, when the index knew all of them as the directory was recorded.
    pub children: Option<Vec<Attrs>>,
}

impl BlockMeta {
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        put_varint(out, self.size);
        put_varint(out, self.codec);
        put_varint(out, self.links.len() as u64);
        for l in &self.links {
            let b = l.to_bytes();
            put_varint(out, b.len() as u64);
            out.extend_from_slice(&b);
        }
        if let Some(a) = &self.attrs {
            a.encode_into(out);
            if let Some(children) = &self.children {
                put_varint(out, children.len() as u64);
                for c in children {
                    c.encode_into(out);
                }
            }
        }
    }

    /// How a listing describes this block: a raw block is a file of its size, a UnixFS node
    /// has its attributes; anything else (`None`) must be read to be described.
    pub fn described(&self) -> Option<Attrs> {
        if self.codec == crate::codec::codes::RAW {
            return Some(Attrs {
                kind: AttrKind::File,
                size: self.size,
                mode: None,
                mtime: None,
            });
        }
        // A directory's size is its number of links, which records written before that
        // rule say is 0.
        self.attrs.map(|a| match a.kind {
            AttrKind::Directory => Attrs {
                size: self.links.len() as u64,
                ..a
            },
            _ => a,
        })
    }

    /// A directory (or HAMT shard) whose children are not summarised yet.
    pub fn wants_children(&self) -> bool {
        self.children.is_none() && self.attrs.is_some_and(|a| a.kind == AttrKind::Directory)
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(8 + self.links.len() * 40);
        self.encode_into(&mut v);
        v
    }

    pub fn decode(bytes: &[u8]) -> Option<BlockMeta> {
        let mut r = Reader::new(bytes);
        let size = r.varint().ok()?;
        let codec = r.varint().ok()?;
        let n = r.varint().ok()?;
        let mut links = Vec::with_capacity(n.min(4096) as usize);
        for _ in 0..n {
            links.push(Cid::try_from(r.bytes().ok()?).ok()?);
        }
        // Records written before attributes were kept end here.
        let attrs = if r.is_empty() {
            None
        } else {
            Some(Attrs::decode_from(&mut r)?)
        };
        // And records without a summary of children here.
        let children = if r.is_empty() {
            None
        } else {
            if r.varint().ok()? != n {
                return None;
            }
            let mut children = Vec::with_capacity(links.len());
            for _ in 0..n {
                children.push(Attrs::decode_from(&mut r)?);
            }
            Some(children)
        };
        r.is_empty().then_some(BlockMeta {
            size,
            codec,
            links,
            attrs,
            children,
        })
    }
}

/// The index, opened by this process for writing. Only one process holds it at a time.
///
/// Opening takes an exclusive `flock` on `{path}.lock` first and keeps it while the database
/// is open: RocksDB rotates its info log before it takes its own lock, so two processes
/// merely trying to open the database could otherwise trip over each other's log files.
pub struct RocksIndex {
    // Fields drop in order: the database closes before the lock is released.
    db: DB,
    path: PathBuf,
    _lock: std::fs::File,
}

/// What an ingest of journals did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct IngestStats {
    pub journals: usize,
    pub records: usize,
    /// Journals that ended in a torn record (their writer was killed).
    pub torn: usize,
}

fn options() -> Options {
    let mut opts = Options::default();
    opts.create_if_missing(true);
    opts.set_compression_type(DBCompressionType::None);
    opts.set_keep_log_file_num(2);
    opts.set_max_log_file_size(1 << 20);
    opts.set_log_level(LogLevel::Warn);
    opts.set_max_open_files(256);
    opts.set_max_total_wal_size(64 << 20);
    let mut table = BlockBasedOptions::default();
    table.set_bloom_filter(10.0, false);
    // Every read is a point lookup (the mount's, one per name it resolves): a hash index in
    // each data block finds the key without a binary search over its restart points.
    table.set_data_block_index_type(DataBlockIndexType::BinaryAndHash);
    table.set_data_block_hash_ratio(0.75);
    opts.set_block_based_table_factory(&table);
    opts
}

impl RocksIndex {
    /// Opens the index at `path`. If another process holds it, retries until `wait` has passed
    /// and then answers `Ok(None)`; other failures are errors.
    pub fn open(path: &Path, wait: Duration) -> Result<Option<RocksIndex>, StoreError> {
        Self::open_inner(path, wait, false)
    }

    /// Deletes the index and opens it empty (for `repair`), holding the lock throughout.
    pub fn recreate(path: &Path, wait: Duration) -> Result<Option<RocksIndex>, StoreError> {
        Self::open_inner(path, wait, true)
    }

    fn open_inner(
        path: &Path,
        wait: Duration,
        fresh: bool,
    ) -> Result<Option<RocksIndex>, StoreError> {
        let Some(lock) = acquire(path, wait)? else {
            return Ok(None);
        };
        let index_err = |source| StoreError::Index {
            path: path.to_owned(),
            source,
        };
        if fresh {
            DB::destroy(&options(), path).map_err(index_err)?;
        }
        match DB::open(&options(), path) {
            Ok(db) => Ok(Some(RocksIndex {
                db,
                path: path.to_owned(),
                _lock: lock,
            })),
            // Someone opened the database without our lock (an older cairn): treat as busy.
            Err(e) if is_lock_error(&e) => Ok(None),
            Err(e) => Err(index_err(e)),
        }
    }

    fn err(&self, e: rocksdb::Error) -> StoreError {
        StoreError::Index {
            path: self.path.clone(),
            source: e,
        }
    }

    pub fn get(&self, cid: &Cid) -> Result<Option<BlockMeta>, StoreError> {
        let key = crate::canonical(cid).to_bytes();
        match self.db.get_pinned(&key).map_err(|e| self.err(e))? {
            None => Ok(None),
            Some(v) => BlockMeta::decode(&v)
                .map(Some)
                .ok_or_else(|| StoreError::IndexRecord {
                    key: crate::block_name(cid),
                }),
        }
    }

    /// Applies a batch of records, summarising the children of the directories among them
    /// where this batch or the index knows every child.
    pub fn apply(&self, records: &[Record]) -> Result<(), StoreError> {
        let mut batch = WriteBatch::default();
        let mut value = Vec::new();
        let mut in_batch = None;
        for r in records {
            match r {
                Record::Put(cid, meta) => {
                    let summarised;
                    let meta = if meta.wants_children() {
                        let known = in_batch.get_or_insert_with(|| puts_by_cid(records));
                        summarised = self.summarise(meta, known)?;
                        summarised.as_ref().unwrap_or(meta)
                    } else {
                        meta
                    };
                    value.clear();
                    meta.encode_into(&mut value);
                    batch.put(crate::canonical(cid).to_bytes(), &value);
                }
                Record::Delete(cid) => batch.delete(crate::canonical(cid).to_bytes()),
            }
        }
        self.db.write(batch).map_err(|e| self.err(e))
    }

    /// `dir` with its children summarised, if `known` (records beside it) or the index
    /// describes every one of them.
    fn summarise(
        &self,
        dir: &BlockMeta,
        known: &HashMap<Cid, &BlockMeta>,
    ) -> Result<Option<BlockMeta>, StoreError> {
        let mut children = Vec::with_capacity(dir.links.len());
        for link in &dir.links {
            let link = crate::canonical(link);
            // A child whose record cannot be read is one the index does not describe: the
            // directory goes unsummarised, and the write goes on.
            let described = match known.get(&link) {
                Some(m) => m.described(),
                None => self.get(&link).ok().flatten().and_then(|m| m.described()),
            };
            let Some(d) = described else {
                return Ok(None);
            };
            children.push(d);
        }
        Ok(Some(BlockMeta {
            children: Some(children),
            ..dir.clone()
        }))
    }

    /// Summarises the children of those of `dirs` that are directories without a summary
    /// and whose children the index now describes (blocks recorded parent first). Returns
    /// how many it summarised.
    pub fn summarise_dirs(&self, dirs: impl IntoIterator<Item = Cid>) -> Result<usize, StoreError> {
        let none = HashMap::new();
        let mut done = 0;
        let mut batch = Vec::new();
        for cid in dirs {
            let Some(meta) = self.get(&cid).ok().flatten() else {
                continue;
            };
            if !meta.wants_children() {
                continue;
            }
            if let Some(m) = self.summarise(&meta, &none)? {
                batch.push(Record::Put(cid, m));
                done += 1;
            }
            if batch.len() >= 1024 {
                self.apply(&std::mem::take(&mut batch))?;
            }
        }
        self.apply(&batch)?;
        Ok(done)
    }

    pub fn put(&self, cid: &Cid, meta: &BlockMeta) -> Result<(), StoreError> {
        self.apply(&[Record::Put(*cid, meta.clone())])
    }

    pub fn delete(&self, cid: &Cid) -> Result<(), StoreError> {
        self.apply(&[Record::Delete(*cid)])
    }

    /// Every entry, in key order. Entries that do not decode are errors.
    pub fn iter(&self) -> impl Iterator<Item = Result<(Cid, BlockMeta), StoreError>> + '_ {
        self.db.iterator(IteratorMode::Start).map(move |item| {
            let (k, v) = item.map_err(|e| self.err(e))?;
            let cid = Cid::try_from(&k[..]).map_err(|_| StoreError::IndexRecord {
                key: format!("{k:02x?}"),
            })?;
            let meta = BlockMeta::decode(&v).ok_or_else(|| StoreError::IndexRecord {
                key: crate::block_name(&cid),
            })?;
            Ok((cid, meta))
        })
    }

    /// Ingests every finished journal in `dir`. A put is applied only if its block file still
    /// exists and a delete only if it does not, so the index converges on the files whatever
    /// order writers and deleters ran in.
    pub fn ingest(&self, dir: &Path, blocks: &FileBlocks) -> Result<IngestStats, StoreError> {
        let mut stats = IngestStats::default();
        // Directories recorded before their children (a CAR, a fetch): summarised once every
        // journal is in, if their children came too.
        let mut unsummarised = Vec::new();
        for claimed in journal::claim_all(dir)? {
            let mut keep = Vec::with_capacity(claimed.records.len());
            for r in claimed.records {
                let present = match &r {
                    Record::Put(cid, _) | Record::Delete(cid) => blocks.has(cid)?,
                };
                match (&r, present) {
                    (Record::Put(..), true) | (Record::Delete(..), false) => keep.push(r),
                    _ => {}
                }
            }
            for chunk in keep.chunks(16 * 1024) {
                self.apply(chunk)?;
            }
            unsummarised.extend(keep.iter().filter_map(|r| match r {
                Record::Put(cid, m) if m.wants_children() => Some(*cid),
                _ => None,
            }));
            stats.journals += 1;
            stats.records += keep.len();
            stats.torn += claimed.torn as usize;
            std::fs::remove_file(&claimed.path).map_err(|e| StoreError::io(&claimed.path, e))?;
        }
        self.summarise_dirs(unsummarised)?;
        Ok(stats)
    }

    /// Flushes memtables to disk.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.db.flush().map_err(|e| self.err(e))
    }
}

/// The puts among `records`, by canonical CID.
fn puts_by_cid(records: &[Record]) -> HashMap<Cid, &BlockMeta> {
    records
        .iter()
        .filter_map(|r| match r {
            Record::Put(cid, m) => Some((crate::canonical(cid), m)),
            Record::Delete(_) => None,
        })
        .collect()
}

/// The index opened for reading beside whichever process writes it: a RocksDB secondary
/// instance, for long-running readers (the mount) that must never hold the writers' lock.
/// It sees the database as of its last catch-up; [`IndexReader::get`] catches up (at most
/// once a second) when asked for a key it does not have, so blocks put since are found too.
/// Records still in journals are not seen: callers treat a miss as "read the block".
pub struct IndexReader {
    db: DB,
    scratch: PathBuf,
    caught_up: std::sync::Mutex<Instant>,
}

impl IndexReader {
    /// Opens the index at `path` for reading; `Ok(None)` if there is none yet.
    pub fn open(path: &Path) -> Result<Option<IndexReader>, StoreError> {
        if !path.join("CURRENT").exists() {
            return Ok(None);
        }
        let scratch = scratch_dir()?;
        let mut opts = options();
        opts.create_if_missing(false);
        // A secondary keeps every table file open, so that one the writer compacts away
        // stays readable until the next catch-up.
        opts.set_max_open_files(-1);
        match DB::open_as_secondary(&opts, path, &scratch) {
            Ok(db) => Ok(Some(IndexReader {
                db,
                scratch,
                caught_up: std::sync::Mutex::new(Instant::now()),
            })),
            Err(source) => {
                let _ = std::fs::remove_dir_all(&scratch);
                Err(StoreError::Index {
                    path: path.to_owned(),
                    source,
                })
            }
        }
    }

    /// What the index knows of `cid`, catching up with the writers first if it knows
    /// nothing and has not caught up for a second.
    pub fn get(&self, cid: &Cid) -> Option<BlockMeta> {
        let key = crate::canonical(cid).to_bytes();
        let read = |db: &DB| match db.get_pinned(&key) {
            Ok(Some(v)) => BlockMeta::decode(&v),
            _ => None,
        };
        if let Some(m) = read(&self.db) {
            return Some(m);
        }
        {
            let mut last = self.caught_up.lock().expect("catch-up time");
            if last.elapsed() < Duration::from_secs(1) {
                return None;
            }
            *last = Instant::now();
        }
        if let Err(e) = self.db.try_catch_up_with_primary() {
            log::debug!("index reader: catching up: {e}");
        }
        read(&self.db)
    }
}

/// A new directory of our own in the temporary directory, for the reader's own files: made
/// with `mkdir`, which never follows or reuses what another user put there (names are
/// predictable, so a name taken is skipped, not trusted), mode 0700.
fn scratch_dir() -> Result<PathBuf, StoreError> {
    use std::os::unix::fs::DirBuilderExt;
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let mut last = None;
    for _ in 0..64 {
        let p = std::env::temp_dir().join(format!(
            "cairn-index-reader-{}-{nanos:x}-{}",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        match std::fs::DirBuilder::new().mode(0o700).create(&p) {
            Ok(()) => return Ok(p),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last = Some((p, e)),
            Err(e) => return Err(StoreError::io(&p, e)),
        }
    }
    let (p, e) = last.expect("tried");
    Err(StoreError::io(&p, e))
}

impl Drop for IndexReader {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.scratch);
    }
}

/// Takes the exclusive lock that guards opening the index at `path`, waiting up to `wait`.
fn acquire(path: &Path, wait: Duration) -> Result<Option<std::fs::File>, StoreError> {
    let deadline = Instant::now() + wait;
    let mut pause = Duration::from_millis(2);
    let lock_path = path.with_extension("lock");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| StoreError::io(&lock_path, e))?;
    loop {
        match journal::flock(&lock, libc::LOCK_EX | libc::LOCK_NB) {
            Ok(()) => return Ok(Some(lock)),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if Instant::now() >= deadline {
                    return Ok(None);
                }
                thread::sleep(pause.min(deadline.saturating_duration_since(Instant::now())));
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            Err(e) => return Err(StoreError::io(&lock_path, e)),
        }
    }
}

fn is_lock_error(e: &rocksdb::Error) -> bool {
    let s = e.to_string();
    s.contains("LOCK") || s.contains("lock hold") || s.contains("Resource temporarily unavailable")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_round_trips() {
        let mut m = BlockMeta {
            attrs: None,
            children: None,
            size: 262158,
            codec: 0x70,
            links: vec![
                "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH"
                    .parse()
                    .unwrap(),
                "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
                    .parse()
                    .unwrap(),
            ],
        };
        assert_eq!(BlockMeta::decode(&m.encode()), Some(m.clone()));
        let mut long = m.encode();
        long.push(0);
        assert_eq!(BlockMeta::decode(&long), None);
        use crate::codec::unixfs::{AttrKind, Mtime};
        for mtime in [
            None,
            Some(Mtime {
                seconds: -5,
                nanos: None,
            }),
            Some(Mtime {
                seconds: 1_700_000_000,
                nanos: Some(999_999_999),
            }),
        ] {
            m.attrs = Some(Attrs {
                kind: AttrKind::File,
                size: 1 << 40,
                mode: Some(0o4755),
                mtime,
            });
            assert_eq!(BlockMeta::decode(&m.encode()), Some(m.clone()));
            let mut cut = m.encode();
            cut.pop();
            assert_ne!(BlockMeta::decode(&cut), Some(m.clone()));
        }
        // A directory's summary of its children: one per link, or the record is unreadable.
        m.attrs = Some(Attrs {
            kind: AttrKind::Directory,
            size: 0,
            mode: None,
            mtime: None,
        });
        let child = m.attrs.unwrap();
        m.children = Some(vec![child, Attrs { size: 7, ..child }]);
        assert_eq!(BlockMeta::decode(&m.encode()), Some(m.clone()));
        let full = m.encode();
        let mut one_short = BlockMeta {
            children: None,
            ..m.clone()
        }
        .encode();
        put_varint(&mut one_short, 1);
        child.encode_into(&mut one_short);
        assert_eq!(BlockMeta::decode(&one_short), None);
        assert_eq!(BlockMeta::decode(&full[..full.len() - 1]), None);
    }

    /// A directory is described with its number of links, also from records written when
    /// its size was 0; a child whose record cannot be read leaves its directory unsummarised
    /// and the write goes on.
    #[test]
    fn summaries_survive_old_and_broken_records() {
        let dir = tempfile::tempdir().unwrap();
        let index = RocksIndex::open(dir.path(), Duration::ZERO)
            .unwrap()
            .unwrap();
        let child: Cid = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
            .parse()
            .unwrap();
        let old_dir = BlockMeta {
            size: 100,
            codec: 0x70,
            links: vec![child, child],
            attrs: Some(Attrs {
                kind: AttrKind::Directory,
                size: 0,
                mode: None,
                mtime: None,
            }),
            children: None,
        };
        assert_eq!(old_dir.described().unwrap().size, 2);
        index
            .db
            .put(child.to_bytes(), b"\xff not a record")
            .unwrap();
        let dir_cid: Cid = "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH"
            .parse()
            .unwrap();
        index.put(&dir_cid, &old_dir).unwrap();
        assert_eq!(index.get(&dir_cid).unwrap().unwrap().children, None);
        assert_eq!(index.summarise_dirs([dir_cid]).unwrap(), 0);
    }

    #[test]
    fn a_second_opener_waits_then_gives_up() {
        let dir = tempfile::tempdir().unwrap();
        let first = RocksIndex::open(dir.path(), Duration::ZERO)
            .unwrap()
            .unwrap();
        let second = RocksIndex::open(dir.path(), Duration::from_millis(50)).unwrap();
        assert!(second.is_none());
        drop(first);
        assert!(RocksIndex::open(dir.path(), Duration::ZERO)
            .unwrap()
            .is_some());
    }
}
