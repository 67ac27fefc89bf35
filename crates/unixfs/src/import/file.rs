//! One file: fixed-size chunks into kubo's balanced DAG.
//!
//! The balanced layout is built as the chunks arrive, one stack of pending links per level:
//! when a level already holds `max_links` links and another arrives, the level is folded into
//! a parent node first. At the end the levels are folded bottom-up. This yields exactly boxo's
//! `balanced.Layout`: every subtree but the rightmost is full, a lone trailing leaf still gets
//! its own parent, and only the root carries mode and mtime.

use std::{
    collections::BTreeMap,
    io::{self, Read},
    sync::{mpsc, Mutex},
};

use cairn_store::{
    codec::{
        dagpb::{PbLink, PbNode},
        pb,
    },
    Cid, StoreError,
};

use super::{put_pb, AddOptions, Added, BlockSink};
use crate::{
    data::{Data, DataType},
    node::Metadata,
    Progress, UnixfsError,
};

/// Room before a chunk for the protobuf header of a dag-pb leaf.
const HEADROOM: usize = 16;
/// Room after a chunk for `filesize`, `mode` and `mtime`.
const TAILROOM: usize = 64;

/// A reusable chunk buffer: the chunk lives at `buf[HEADROOM..HEADROOM + len]`.
struct Chunk {
    buf: Vec<u8>,
    len: usize,
}

thread_local! {
    /// Chunk buffers kept for the next file this thread imports: a tree of many small files
    /// would otherwise allocate (and the kernel zero) two fresh chunks per file.
    static SPARE: std::cell::RefCell<Vec<Chunk>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl Chunk {
    fn new(chunk_size: usize) -> Chunk {
        let want = HEADROOM + chunk_size + TAILROOM;
        let spare = SPARE.with(|s| {
            let mut s = s.borrow_mut();
            let i = s.iter().position(|c| c.buf.len() == want)?;
            Some(s.swap_remove(i))
        });
        spare.unwrap_or_else(|| Chunk {
            buf: vec![0; want],
            len: 0,
        })
    }

    /// Keeps the buffer for reuse by this thread.
    fn recycle(self) {
        SPARE.with(|s| {
            let mut s = s.borrow_mut();
            if s.len() < 2 {
                s.push(self);
            }
        });
    }

    /// Fills the chunk from `r`; a short chunk means the end of the input.
    fn fill(&mut self, r: &mut dyn Read, chunk_size: usize) -> io::Result<usize> {
        let area = &mut self.buf[HEADROOM..HEADROOM + chunk_size];
        let mut n = 0;
        while n < area.len() {
            match r.read(&mut area[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.len = n;
        Ok(n)
    }
}

/// Makes and stores the leaf for a chunk. `root_meta` is set only when this leaf is the whole
/// file and mode or mtime must be kept: such a leaf is a dag-pb node even with raw leaves,
/// because a raw block cannot carry metadata.
fn leaf(
    sink: &dyn BlockSink,
    opts: &AddOptions,
    chunk: &mut Chunk,
    root_meta: Option<&Metadata>,
) -> Result<Added, StoreError> {
    let len = chunk.len;
    if opts.raw_leaves && root_meta.is_none() {
        let data = &chunk.buf[HEADROOM..HEADROOM + len];
        let cid = opts.raw_cid(data);
        sink.put(&cid, &[data], &[])?;
        return Ok(Added {
            cid,
            tsize: len as u64,
            size: len as u64,
        });
    }
    // Data{Type=File, Data=chunk, filesize=len, mode?, mtime?} inside PBNode{Data=...},
    // written around the chunk in place.
    let mut tail = Data::new(DataType::File);
    tail.filesize = Some(len as u64);
    if let Some(m) = root_meta {
        tail.mode = m.mode;
        tail.mtime = m.mtime;
    }
    let mut suffix = Vec::with_capacity(TAILROOM);
    tail.encode_tail(&mut suffix);
    let data_field = if len > 0 {
        1 + pb::varint_len(len as u64) + len
    } else {
        0
    };
    let inner_len = 2 + data_field + suffix.len();
    let mut prefix = Vec::with_capacity(HEADROOM);
    pb::put_key(&mut prefix, 1, pb::LEN);
    pb::put_varint(&mut prefix, inner_len as u64);
    pb::put_uint(&mut prefix, 1, DataType::File as u64);
    if len > 0 {
        pb::put_key(&mut prefix, 2, pb::LEN);
        pb::put_varint(&mut prefix, len as u64);
    }
    let start = HEADROOM - prefix.len();
    chunk.buf[start..HEADROOM].copy_from_slice(&prefix);
    let end = HEADROOM + len + suffix.len();
    chunk.buf[HEADROOM + len..end].copy_from_slice(&suffix);
    let block = &chunk.buf[start..end];
    let cid = opts.pb_cid(block);
    sink.put(&cid, &[block], &[])?;
    Ok(Added {
        cid,
        tsize: block.len() as u64,
        size: len as u64,
    })
}

/// The balanced DAG under construction.
struct Balanced<'a> {
    sink: &'a dyn BlockSink,
    opts: &'a AddOptions,
    levels: Vec<Vec<Added>>,
}

impl<'a> Balanced<'a> {
    fn new(sink: &'a dyn BlockSink, opts: &'a AddOptions) -> Self {
        Balanced {
            sink,
            opts,
            levels: vec![Vec::new()],
        }
    }

    fn push(&mut self, level: usize, added: Added) -> Result<(), StoreError> {
        if self.levels.len() <= level {
            self.levels.push(Vec::new());
        }
        if self.levels[level].len() == self.opts.max_links {
            let parent = self.fold(level, None)?;
            self.push(level + 1, parent)?;
        }
        self.levels[level].push(added);
        Ok(())
    }

    /// Makes the parent of everything pending at `level`.
    fn fold(&mut self, level: usize, meta: Option<&Metadata>) -> Result<Added, StoreError> {
        let children = std::mem::take(&mut self.levels[level]);
        let mut data = Data::new(DataType::File);
        let size: u64 = children.iter().map(|c| c.size).sum();
        data.filesize = Some(size);
        data.blocksizes = children.iter().map(|c| c.size).collect();
        if let Some(m) = meta {
            data.mode = m.mode;
            data.mtime = m.mtime;
        }
        let node = PbNode {
            links: children
                .iter()
                .map(|c| PbLink::new(c.cid, "", c.tsize))
                .collect(),
            data: Some(data.encode().into()),
        };
        put_pb(self.sink, self.opts, &node, size)
    }

    /// Folds every level; the last fold makes the root, which gets `meta`.
    fn finish(mut self, meta: &Metadata) -> Result<Added, StoreError> {
        let mut level = 0;
        loop {
            let is_root = self.levels[level + 1..].iter().all(Vec::is_empty);
            let node = self.fold(level, Some(meta).filter(|_| is_root))?;
            if is_root {
                return Ok(node);
            }
            self.levels[level + 1].push(node);
            level += 1;
        }
    }
}

/// Imports one file from `input`. Memory stays bounded by a few chunks whatever its size.
pub fn import_reader(
    sink: &dyn BlockSink,
    opts: &AddOptions,
    input: &mut dyn Read,
    meta: &Metadata,
    progress: &dyn Progress,
) -> Result<Added, UnixfsError> {
    let cs = opts.chunk_size;
    let mut first = Chunk::new(cs);
    let n = first.fill(input, cs).map_err(UnixfsError::Input)?;
    progress.add_bytes(n as u64);
    let mut second = None;
    let more = if n == cs {
        let c = second.insert(Chunk::new(cs));
        c.fill(input, cs).map_err(UnixfsError::Input)?
    } else {
        0
    };
    if more == 0 {
        // The whole file is one leaf, which is also the root.
        let has_meta = meta.mode.is_some() || meta.mtime.is_some();
        let added = leaf(sink, opts, &mut first, has_meta.then_some(meta))?;
        first.recycle();
        if let Some(c) = second {
            c.recycle();
        }
        return Ok(added);
    }
    let second = second.expect("a second chunk was read");
    progress.add_bytes(more as u64);
    if opts.threads > 1 {
        pipelined(sink, opts, input, meta, progress, first, second)
    } else {
        let mut dag = Balanced::new(sink, opts);
        dag.push(0, leaf(sink, opts, &mut first, None)?)?;
        let mut chunk = second;
        loop {
            dag.push(0, leaf(sink, opts, &mut chunk, None)?)?;
            let n = chunk.fill(input, cs).map_err(UnixfsError::Input)?;
            if n == 0 {
                break;
            }
            progress.add_bytes(n as u64);
        }
        first.recycle();
        chunk.recycle();
        Ok(dag.finish(meta)?)
    }
}

/// The reader (this thread) keeps `opts.threads` workers busy hashing and writing leaves;
/// their results come back out of order and enter the DAG in order.
fn pipelined(
    sink: &dyn BlockSink,
    opts: &AddOptions,
    input: &mut dyn Read,
    meta: &Metadata,
    progress: &dyn Progress,
    first: Chunk,
    second: Chunk,
) -> Result<Added, UnixfsError> {
    let cs = opts.chunk_size;
    let threads = opts.threads;
    let max_in_flight = threads * 2 + 2;
    let (job_tx, job_rx) = mpsc::sync_channel::<(u64, Chunk)>(max_in_flight);
    let job_rx = Mutex::new(job_rx);
    let (res_tx, res_rx) = mpsc::channel::<(u64, Result<Added, StoreError>, Chunk)>();
    std::thread::scope(|s| {
        for _ in 0..threads {
            let (job_rx, res_tx) = (&job_rx, res_tx.clone());
            s.spawn(move || loop {
                let job = job_rx.lock().expect("job queue").recv();
                let Ok((seq, mut chunk)) = job else { break };
                let r = leaf(sink, opts, &mut chunk, None);
                if res_tx.send((seq, r, chunk)).is_err() {
                    break;
                }
            });
        }
        drop(res_tx);

        let mut dag = Balanced::new(sink, opts);
        let mut pending: BTreeMap<u64, Added> = BTreeMap::new();
        let mut next = 0u64;
        let mut sent = 0u64;
        let mut received = 0u64;
        let mut free: Vec<Chunk> = Vec::new();
        let mut allocated = 2usize;
        let mut failed: Option<UnixfsError> = None;

        let mut handle = |(seq, r, chunk): (u64, Result<Added, StoreError>, Chunk),
                          free: &mut Vec<Chunk>,
                          failed: &mut Option<UnixfsError>|
         -> Result<(), StoreError> {
            free.push(chunk);
            match r {
                Ok(a) => {
                    pending.insert(seq, a);
                }
                Err(e) => {
                    failed.get_or_insert(e.into());
                }
            }
            while let Some(a) = pending.remove(&next) {
                dag.push(0, a)?;
                next += 1;
            }
            Ok(())
        };

        for chunk in [first, second] {
            job_tx.send((sent, chunk)).expect("workers alive");
            sent += 1;
        }
        loop {
            if failed.is_some() {
                break;
            }
            let mut chunk = match free.pop() {
                Some(c) => c,
                None if allocated < max_in_flight => {
                    allocated += 1;
                    Chunk::new(cs)
                }
                None => {
                    let r = res_rx.recv().expect("workers alive");
                    received += 1;
                    handle(r, &mut free, &mut failed)?;
                    continue;
                }
            };
            match chunk.fill(input, cs) {
                Ok(0) => break,
                Ok(n) => progress.add_bytes(n as u64),
                Err(e) => {
                    failed = Some(UnixfsError::Input(e));
                    break;
                }
            }
            job_tx.send((sent, chunk)).expect("workers alive");
            sent += 1;
            while let Ok(r) = res_rx.try_recv() {
                received += 1;
                handle(r, &mut free, &mut failed)?;
            }
        }
        drop(job_tx);
        while received < sent {
            let r = res_rx.recv().expect("workers alive");
            received += 1;
            handle(r, &mut free, &mut failed)?;
        }
        if let Some(e) = failed {
            return Err(e);
        }
        debug_assert!(pending.is_empty());
        Ok(dag.finish(meta)?)
    })
}

/// The CID `ipfs add` would give `bytes` with `opts`, computed without storing anything.
pub fn cid_of(bytes: &[u8], opts: &AddOptions) -> Result<Cid, UnixfsError> {
    let mut input = bytes;
    Ok(import_reader(
        &super::NullSink,
        opts,
        &mut input,
        &Metadata::default(),
        &(),
    )?
    .cid)
}
