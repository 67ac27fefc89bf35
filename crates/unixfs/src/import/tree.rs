//! Paths: a file, a symlink, or (recursively) a directory tree.
//!
//! The tree is walked first (names sorted bytewise, dotfiles skipped unless `hidden`), then its
//! files are imported by `opts.threads` workers, large files one at a time with the chunk
//! pipeline, and finally directories are built bottom-up. Results come out in `ipfs add`'s
//! order: depth first, each directory after its contents.

use std::{
    fs::{self, File},
    os::unix::fs::{MetadataExt, PermissionsExt},
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicUsize, Ordering},
        OnceLock,
    },
};

use bytes::Bytes;
use cairn_store::codec::dagpb::{PbLink, PbNode};

use super::{file, put_pb, AddOptions, Added, BlockSink};
use crate::{
    data::{Data, DataType, Mtime},
    hamt,
    node::Metadata,
    Progress, UnixfsError,
};

/// Files at least this large are imported one at a time with the parallel chunk pipeline;
/// smaller ones are spread over the workers whole.
const LARGE_FILE: u64 = 8 << 20;

/// One entry of an import, as `ipfs add` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddedEntry {
    /// The path as `ipfs add` prints it: the argument's base name, then the path inside it.
    pub path: String,
    pub added: Added,
    pub kind: EntryKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    File,
    Directory,
    Symlink,
}

enum Item {
    File {
        path: PathBuf,
        size: u64,
        meta: Metadata,
    },
    Symlink {
        target: Vec<u8>,
        meta: Metadata,
    },
    Dir {
        children: Vec<(String, usize)>,
        meta: Metadata,
    },
}

struct Walk<'a> {
    opts: &'a AddOptions,
    items: Vec<Item>,
    names: Vec<String>,
    bytes: u64,
    files: u64,
}

fn metadata_of(opts: &AddOptions, md: &fs::Metadata, symlink: bool) -> Metadata {
    let mode = match opts.mode {
        Some(m) if !symlink => Some(m),
        _ if opts.preserve_mode && !symlink => Some(md.permissions().mode() & 0o7777),
        _ => None,
    };
    let mtime = opts.mtime.or_else(|| {
        opts.preserve_mtime.then(|| Mtime {
            seconds: md.mtime(),
            nanos: u32::try_from(md.mtime_nsec()).ok().filter(|n| *n != 0),
        })
    });
    Metadata { mode, mtime }
}

fn name_of(path: &Path) -> Result<String, UnixfsError> {
    let name = path.file_name().unwrap_or(path.as_os_str());
    name.to_str().map(str::to_owned).ok_or_else(|| {
        UnixfsError::Unsupported(format!("{}: file name is not UTF-8", path.display()))
    })
}

impl Walk<'_> {
    /// Walks `path`, returning its item index. Children come before their directory.
    fn walk(
        &mut self,
        path: &Path,
        display: String,
        recursive: bool,
    ) -> Result<usize, UnixfsError> {
        let md = fs::symlink_metadata(path).map_err(|e| UnixfsError::io(path, e))?;
        let ft = md.file_type();
        let item = if ft.is_file() {
            self.bytes += md.len();
            self.files += 1;
            Item::File {
                path: path.to_owned(),
                size: md.len(),
                meta: metadata_of(self.opts, &md, false),
            }
        } else if ft.is_symlink() {
            let target = fs::read_link(path).map_err(|e| UnixfsError::io(path, e))?;
            Item::Symlink {
                target: target.into_os_string().into_encoded_bytes(),
                meta: metadata_of(self.opts, &md, true),
            }
        } else if ft.is_dir() {
            if !recursive {
                return Err(UnixfsError::Unsupported(format!(
                    "{} is a directory (add it with -r)",
                    path.display()
                )));
            }
            let mut entries = Vec::new();
            for entry in fs::read_dir(path).map_err(|e| UnixfsError::io(path, e))? {
                let entry = entry.map_err(|e| UnixfsError::io(path, e))?;
                let p = entry.path();
                let name = name_of(&p)?;
                if !self.opts.hidden && name.starts_with('.') {
                    continue;
                }
                if let Some(ignore) = &self.opts.ignore {
                    let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
                    if (ignore.0)(&p, is_dir) {
                        continue;
                    }
                }
                entries.push((name, p));
            }
            entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            let mut children = Vec::with_capacity(entries.len());
            for (name, p) in entries {
                let child = self.walk(&p, format!("{display}/{name}"), true)?;
                children.push((name, child));
            }
            Item::Dir {
                children,
                meta: metadata_of(self.opts, &md, false),
            }
        } else {
            return Err(UnixfsError::Unsupported(format!(
                "{}: cannot add a socket, FIFO or device file",
                path.display()
            )));
        };
        self.items.push(item);
        self.names.push(display);
        Ok(self.items.len() - 1)
    }
}

/// Adds `path` (a file, a symlink, or with `recursive` a directory tree). Returns every entry
/// in `ipfs add` order; the last one is the root.
pub fn add_path(
    sink: &dyn BlockSink,
    opts: &AddOptions,
    path: &Path,
    recursive: bool,
    progress: &dyn Progress,
) -> Result<Vec<AddedEntry>, UnixfsError> {
    let mut walk = Walk {
        opts,
        items: Vec::new(),
        names: Vec::new(),
        bytes: 0,
        files: 0,
    };
    walk.walk(path, name_of(path)?, recursive)?;
    progress.set_total(walk.bytes, walk.files);
    let Walk { items, names, .. } = walk;

    let results: Vec<OnceLock<Added>> = (0..items.len()).map(|_| OnceLock::new()).collect();
    import_files(sink, opts, &items, &names, &results, progress)?;

    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let (added, kind) = match item {
            Item::File { .. } => (*results[i].get().expect("imported"), EntryKind::File),
            Item::Symlink { target, meta } => {
                if let Some(w) = &opts.watch {
                    w.0.symlink(&names[i], target);
                }
                (symlink(sink, opts, target, meta)?, EntryKind::Symlink)
            }
            Item::Dir { children, meta } => {
                let entries = children
                    .iter()
                    .map(|(name, c)| {
                        (
                            name.clone(),
                            *results[*c].get().expect("child before parent"),
                        )
                    })
                    .collect();
                (directory(sink, opts, entries, meta)?, EntryKind::Directory)
            }
        };
        let _ = results[i].set(added);
        out.push(AddedEntry {
            path: names[i].clone(),
            added,
            kind,
        });
    }
    Ok(out)
}

fn import_files(
    sink: &dyn BlockSink,
    opts: &AddOptions,
    items: &[Item],
    names: &[String],
    results: &[OnceLock<Added>],
    progress: &dyn Progress,
) -> Result<(), UnixfsError> {
    let one = |i: usize, threads: usize| -> Result<(), UnixfsError> {
        let Item::File { path, meta, .. } = &items[i] else {
            return Ok(());
        };
        let f = File::open(path).map_err(|e| UnixfsError::io(path, e))?;
        let o = AddOptions {
            threads,
            ..opts.clone()
        };
        let mut input = Watched {
            inner: f,
            watch: opts.watch.as_ref().map(|w| w.0.file(&names[i])),
        };
        let added =
            file::import_reader(sink, &o, &mut input, meta, progress).map_err(|e| match e {
                UnixfsError::Input(e) => UnixfsError::io(path, e),
                e => e,
            })?;
        if let Some(w) = input.watch {
            w.end();
        }
        progress.add_files(1);
        let _ = results[i].set(added);
        Ok(())
    };
    let (mut large, mut small) = (Vec::new(), Vec::new());
    for (i, item) in items.iter().enumerate() {
        if let Item::File { size, .. } = item {
            if *size >= LARGE_FILE {
                large.push(i);
            } else {
                small.push(i);
            }
        }
    }
    for i in large {
        one(i, opts.threads)?;
    }
    let workers = opts.threads.clamp(1, small.len().max(1));
    if workers == 1 {
        return small.iter().try_for_each(|&i| one(i, 1));
    }
    let next = AtomicUsize::new(0);
    let failed: OnceLock<UnixfsError> = OnceLock::new();
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                if failed.get().is_some() {
                    return;
                }
                let k = next.fetch_add(1, Ordering::Relaxed);
                let Some(&i) = small.get(k) else { return };
                if let Err(e) = one(i, 1) {
                    let _ = failed.set(e);
                    return;
                }
            });
        }
    });
    match failed.into_inner() {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// A file read through, with a [`FileWatch`](super::FileWatch) shown each read.
struct Watched {
    inner: File,
    watch: Option<Box<dyn super::FileWatch>>,
}

impl std::io::Read for Watched {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(w) = &mut self.watch {
            w.bytes(&buf[..n]);
        }
        Ok(n)
    }
}

/// Stores a symlink node.
pub fn symlink(
    sink: &dyn BlockSink,
    opts: &AddOptions,
    target: &[u8],
    meta: &Metadata,
) -> Result<Added, UnixfsError> {
    let mut data = Data::new(DataType::Symlink);
    data.data = Some(Bytes::copy_from_slice(target));
    data.mode = meta.mode;
    data.mtime = meta.mtime;
    let node = PbNode {
        links: vec![],
        data: Some(data.encode().into()),
    };
    Ok(put_pb(sink, opts, &node, 0)?)
}

/// Stores a directory from its entries: a single node, or a HAMT when kubo would shard it.
pub fn directory(
    sink: &dyn BlockSink,
    opts: &AddOptions,
    mut entries: Vec<(String, Added)>,
    meta: &Metadata,
) -> Result<Added, UnixfsError> {
    let estimate: usize = entries
        .iter()
        .map(|(name, a)| name.len() + a.cid.encoded_len())
        .sum();
    if estimate > opts.shard_threshold {
        return hamt_directory(sink, opts, entries, meta);
    }
    entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let mut data = Data::new(DataType::Directory);
    data.mode = meta.mode;
    data.mtime = meta.mtime;
    let node = PbNode {
        links: entries
            .into_iter()
            .map(|(name, a)| PbLink::new(a.cid, name, a.tsize))
            .collect(),
        data: Some(data.encode().into()),
    };
    Ok(put_pb(sink, opts, &node, 0)?)
}

fn hamt_directory(
    sink: &dyn BlockSink,
    opts: &AddOptions,
    entries: Vec<(String, Added)>,
    meta: &Metadata,
) -> Result<Added, UnixfsError> {
    let mut builder = hamt::Builder::new(opts.fanout);
    for (i, (name, _)) in entries.iter().enumerate() {
        builder.insert(i, name)?;
    }
    let root = builder.into_root();
    write_shard(sink, opts, &entries, &root, Some(meta))
}

fn write_shard(
    sink: &dyn BlockSink,
    opts: &AddOptions,
    entries: &[(String, Added)],
    level: &hamt::Level,
    meta: Option<&Metadata>,
) -> Result<Added, UnixfsError> {
    let mut links = Vec::new();
    let mut occupied = Vec::new();
    for (idx, slot) in level.slots.iter().enumerate() {
        let prefix = hamt::prefix(idx, opts.fanout);
        match slot {
            hamt::Slot::Empty => continue,
            hamt::Slot::Entry(e, _) => {
                let (name, a) = &entries[*e];
                links.push(PbLink::new(a.cid, format!("{prefix}{name}"), a.tsize));
            }
            hamt::Slot::Child(child) => {
                let a = write_shard(sink, opts, entries, child, None)?;
                links.push(PbLink::new(a.cid, prefix, a.tsize));
            }
        }
        occupied.push(idx);
    }
    let mut data = Data::new(DataType::HamtShard);
    data.data = Some(hamt::bitfield(occupied, opts.fanout).into());
    data.hash_type = Some(hamt::MURMUR3_X64_64);
    data.fanout = Some(opts.fanout);
    if let Some(m) = meta {
        data.mode = m.mode;
        data.mtime = m.mtime;
    }
    let node = PbNode {
        links,
        data: Some(data.encode().into()),
    };
    Ok(put_pb(sink, opts, &node, 0)?)
}
