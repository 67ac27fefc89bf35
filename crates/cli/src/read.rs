//! `cat`, `get`, `ls`, `refs`.

use std::{
    collections::HashSet,
    io::{BufWriter, Write},
    path::{Path, PathBuf},
    process::ExitCode,
    sync::Arc,
};

use anyhow::{Context, Result};
use cairn_store::{codec::codes, BlockSource, Cid, Store};
use cairn_unixfs::{get as restore, resolve, Node};

use crate::{
    control::{Control, DaemonSource},
    progress::Bar,
};

/// Where reads come from: the store, and through a running daemon the network.
fn source(root: &Path) -> Result<(Arc<Store>, Box<dyn BlockSource>)> {
    let store = Arc::new(Store::open(root)?);
    let src: Box<dyn BlockSource> = match Control::connect(root) {
        Some(c) => Box::new(DaemonSource::new(store.clone(), c)),
        None => Box::new(store.clone()),
    };
    Ok((store, src))
}

/// A resolved `CID[/path]`: the store, the source to read through, the CID the path names,
/// and the path's components.
struct Opened {
    store: Arc<Store>,
    src: Box<dyn BlockSource>,
    cid: Cid,
    parts: Vec<String>,
}

/// Opens the store and resolves `CID[/path]`.
fn open_path(root: &Path, path: &str) -> Result<Opened> {
    let (store, src) = source(root)?;
    let (cid, parts) = resolve::parse_path(path)?;
    let target = resolve::resolve(&*src, &cid, &parts)?;
    Ok(Opened {
        store,
        src,
        cid: target,
        parts,
    })
}

pub fn cat(root: &Path, path: &str) -> Result<ExitCode> {
    let Opened { src, cid, .. } = open_path(root, path)?;
    let stdout = std::io::stdout();
    let mut out = BufWriter::with_capacity(1 << 20, stdout.lock());
    restore::cat(&*src, &cid, &mut out, &())?;
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

pub fn get(root: &Path, path: &str, output: Option<PathBuf>) -> Result<ExitCode> {
    let Opened {
        src, cid, parts, ..
    } = open_path(root, path)?;
    let dest = output
        .unwrap_or_else(|| PathBuf::from(parts.last().cloned().unwrap_or_else(|| cid.to_string())));
    let bar = Bar::bytes("get", None);
    let stats = restore::get(&*src, &cid, &dest, &bar)
        .with_context(|| format!("writing {} to {}", path, dest.display()))?;
    bar.finish();
    eprintln!(
        "saved {} to {}: {} files, {} directories, {} symlinks, {} bytes",
        cid,
        dest.display(),
        stats.files,
        stats.dirs,
        stats.symlinks,
        stats.bytes
    );
    Ok(ExitCode::SUCCESS)
}

pub fn ls(root: &Path, path: &str, json: bool) -> Result<ExitCode> {
    let Opened {
        store, src, cid, ..
    } = open_path(root, path)?;
    let node = resolve::load(&*src, &cid)?;
    if !node.is_dir() {
        anyhow::bail!("{path}: not a directory");
    }
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    for link in resolve::list(&*src, &node)? {
        // The type comes from the child block when it is here; listing never fails for a
        // missing child.
        let kind = match link.cid.codec() {
            codes::RAW => "file",
            codes::DAG_PB => match store.get(&link.cid) {
                Ok(Some(b)) => match Node::decode(&link.cid, b) {
                    Ok(Node::Directory(_) | Node::HamtShard(_)) => "directory",
                    Ok(Node::Symlink { .. }) => "symlink",
                    Ok(Node::File(_)) => "file",
                    _ => "unknown",
                },
                _ => "unknown",
            },
            _ => "block",
        };
        let size = link.tsize.unwrap_or(0);
        if json {
            writeln!(
                out,
                "{}",
                serde_json::json!({"name": link.name(), "cid": link.cid.to_string(), "size": size, "type": kind})
            )?;
        } else {
            let slash = if kind == "directory" { "/" } else { "" };
            writeln!(out, "{} {} {}{}", link.cid, size, link.name(), slash)?;
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

pub fn refs(root: &Path, path: &str, recursive: bool) -> Result<ExitCode> {
    let store = Store::open(root)?;
    let (cid, parts) = resolve::parse_path(path)?;
    let cid = resolve::resolve(&store, &cid, &parts)?;
    // The index answers without parsing blocks; if another process holds it, parse instead.
    let _ = store.open_index(std::time::Duration::from_secs(2))?;
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let links_of = |c: &Cid| -> Result<Vec<Cid>> {
        Ok(store
            .meta(c)?
            .with_context(|| format!("block {c} is not available"))?
            .links)
    };
    if !recursive {
        for l in links_of(&cid)? {
            writeln!(out, "{l}")?;
        }
    } else {
        let mut seen = HashSet::new();
        let mut stack = links_of(&cid)?;
        stack.reverse();
        while let Some(c) = stack.pop() {
            if !seen.insert(cairn_store::canonical(&c)) {
                continue;
            }
            writeln!(out, "{c}")?;
            let mut next = links_of(&c)?;
            next.reverse();
            stack.extend(next);
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}
