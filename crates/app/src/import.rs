//! `cairn add --app`: a tree imported as plain UnixFS, the placeholder found in the same
//! pass, and the app node on top.

use std::{
    collections::BTreeMap,
    fmt,
    io::Write,
    path::Path,
    sync::{Arc, Mutex},
};

use cairn_store::Cid;
use cairn_unixfs::{
    import::{
        tree::{self, AddedEntry, EntryKind},
        AddOptions, BlockSink, FileWatch, Watch, Watcher,
    },
    Progress, UnixfsError,
};

use crate::{
    node::{AppError, AppKind, AppNode},
    scan::{find_in, Scanner},
};

/// Decompressed bytes looked at per gzip file, at most (the look is for a warning only).
const GZIP_LOOK: u64 = 256 << 20;

/// What the importer can tell will not work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Warning {
    /// The placeholder's first characters without the rest: a self-path cut short or
    /// spelled at another length, which the view will not rewrite.
    Partial { path: String, offset: u64 },
    /// The placeholder inside gzip-compressed bytes, where the view cannot reach it.
    Compressed { path: String },
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Warning::Partial { path, offset } => write!(
                f,
                "{path}: at byte {offset}, the placeholder's beginning without the rest \
                 (cut short or a different length?); it will be served as it is"
            ),
            Warning::Compressed { path } => write!(
                f,
                "{path}: the placeholder occurs inside gzip-compressed data, where it cannot \
                 be rewritten; store that file uncompressed"
            ),
        }
    }
}

/// An imported app.
#[derive(Debug)]
pub struct Imported {
    /// The app node's CID: what `R/store/app/` shows.
    pub cid: Cid,
    pub node: AppNode,
    /// The UnixFS entries, as `ipfs add` reports them (the last is the content root).
    pub entries: Vec<AddedEntry>,
    pub warnings: Vec<Warning>,
}

#[derive(Default)]
struct Found {
    refs: Mutex<BTreeMap<String, Vec<u64>>>,
    warnings: Mutex<Vec<Warning>>,
}

struct Collect {
    /// The display name of the root (`ipfs add` prints paths below it as `base/...`).
    base: String,
    found: Arc<Found>,
}

impl Collect {
    fn relative(&self, path: &str) -> String {
        path.strip_prefix(&self.base)
            .and_then(|p| p.strip_prefix('/'))
            .unwrap_or(path)
            .to_owned()
    }

    fn record(found: &Found, path: String, offsets: Vec<u64>, partial: Vec<u64>) {
        let mut w = found.warnings.lock().expect("warnings");
        w.extend(partial.into_iter().map(|offset| Warning::Partial {
            path: path.clone(),
            offset,
        }));
        drop(w);
        if !offsets.is_empty() {
            found.refs.lock().expect("refs").insert(path, offsets);
        }
    }
}

impl Watcher for Collect {
    fn file(&self, path: &str) -> Box<dyn FileWatch> {
        Box::new(FileScan {
            path: self.relative(path),
            found: self.found.clone(),
            scanner: Scanner::new(),
            first: true,
            gzip: None,
        })
    }

    fn symlink(&self, path: &str, target: &[u8]) {
        let (offsets, partial) = find_in(target);
        Collect::record(&self.found, self.relative(path), offsets, partial);
    }
}

/// The scan of one file, and of its decompressed bytes when it is gzip.
struct FileScan {
    path: String,
    found: Arc<Found>,
    scanner: Scanner,
    first: bool,
    gzip: Option<flate2::write::GzDecoder<Inner>>,
}

/// Where decompressed bytes go: a scanner, up to a limit.
struct Inner {
    scanner: Scanner,
    left: u64,
}

impl Write for Inner {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.left == 0 {
            return Err(std::io::Error::other("looked far enough"));
        }
        let n = buf.len().min(self.left as usize);
        self.scanner.feed(&buf[..n]);
        self.left -= n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl FileWatch for FileScan {
    fn bytes(&mut self, bytes: &[u8]) {
        if std::mem::take(&mut self.first) && bytes.starts_with(&[0x1f, 0x8b, 0x08]) {
            self.gzip = Some(flate2::write::GzDecoder::new(Inner {
                scanner: Scanner::new(),
                left: GZIP_LOOK,
            }));
        }
        self.scanner.feed(bytes);
        if let Some(g) = &mut self.gzip {
            if g.write_all(bytes).is_err() {
                // Not gzip after all, or looked far enough: what was seen still counts.
                let g = self.gzip.take().expect("gzip");
                self.note_compressed(g);
            }
        }
    }

    fn end(mut self: Box<Self>) {
        if let Some(mut g) = self.gzip.take() {
            let _ = g.try_finish();
            self.note_compressed(g);
        }
        let (offsets, partial) = std::mem::take(&mut self.scanner).finish();
        Collect::record(&self.found, self.path.clone(), offsets, partial);
    }
}

impl FileScan {
    fn note_compressed(&self, mut g: flate2::write::GzDecoder<Inner>) {
        let (inside, _) = std::mem::take(&mut g.get_mut().scanner).finish();
        if !inside.is_empty() {
            self.found
                .warnings
                .lock()
                .expect("warnings")
                .push(Warning::Compressed {
                    path: self.path.clone(),
                });
        }
    }
}

/// Imports directory `dir` as an app (or webapp): its tree as `opts` says (the caller
/// decides on modes: an app wants `preserve_mode`), the placeholder found in one streaming
/// pass over every file and symlink target, and the app node stored above it.
pub fn import(
    sink: &dyn BlockSink,
    opts: &AddOptions,
    dir: &Path,
    kind: AppKind,
    name: Option<String>,
    progress: &dyn Progress,
) -> Result<Imported, AppError> {
    if !std::fs::symlink_metadata(dir)
        .map_err(|e| AppError::Import(UnixfsError::io(dir, e)))?
        .is_dir()
    {
        return Err(AppError::Invalid(format!(
            "{} is not a directory (an app is a directory tree)",
            dir.display()
        )));
    }
    let base = dir
        .file_name()
        .unwrap_or(dir.as_os_str())
        .to_string_lossy()
        .into_owned();
    let found = Arc::new(Found::default());
    let opts = AddOptions {
        watch: Some(Watch(Arc::new(Collect {
            base,
            found: found.clone(),
        }))),
        ..opts.clone()
    };
    let entries = tree::add_path(sink, &opts, dir, true, progress)?;
    let root = entries.last().expect("a directory import has a root");
    debug_assert_eq!(root.kind, EntryKind::Directory);
    let node = AppNode {
        kind,
        content: root.added.cid,
        name,
        refs: std::mem::take(&mut *found.refs.lock().expect("refs")),
    };
    let (cid, bytes) = node.encode()?;
    sink.put(&cid, &[&bytes], &[node.content])
        .map_err(|e| AppError::Import(e.into()))?;
    let mut warnings = std::mem::take(&mut *found.warnings.lock().expect("warnings"));
    warnings.sort_by(|a, b| format!("{a}").cmp(&format!("{b}")));
    Ok(Imported {
        cid,
        node,
        entries,
        warnings,
    })
}
