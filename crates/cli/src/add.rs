//! `cairn add`.

use std::{
    io::{BufWriter, Write},
    path::{Path, PathBuf},
    process::ExitCode,
    sync::Arc,
};

use anyhow::{bail, Context, Result};
use cairn_app::AppKind;
use cairn_store::{Cid, HashAlg, Store};
use cairn_unixfs::{
    data::Mtime,
    import::{file, tree, AddOptions, BlockSink, Ignore, NullSink, DEFAULT_SHARD_THRESHOLD},
    Metadata,
};
use clap::Args;
use ignore::gitignore::GitignoreBuilder;

use crate::progress::Bar;

#[derive(Args)]
pub struct AddArgs {
    /// Files, directories or symlinks to add; none, or "-", reads standard input
    paths: Vec<PathBuf>,
    /// Add directories and everything below them
    #[arg(short, long)]
    recursive: bool,
    /// Print only CIDs
    #[arg(short, long)]
    quiet: bool,
    /// Print only the last CID (the root)
    #[arg(short = 'Q', long)]
    quieter: bool,
    /// Compute CIDs without storing anything
    #[arg(short = 'n', long)]
    only_hash: bool,
    /// Pin each root added (a symlink under ROOT/pins/per-user/USER/add/), so gc keeps it
    #[arg(long, default_value_t = true, num_args = 0..=1, default_missing_value = "true", require_equals = true, value_name = "BOOL")]
    pin: bool,
    /// CID version: 0 (Qm…, kubo's default) or 1 (implies --raw-leaves)
    #[arg(long, value_name = "0|1")]
    cid_version: Option<u8>,
    /// Store file chunks as raw blocks [default: true with CIDv1, else false]
    #[arg(long, num_args = 0..=1, default_missing_value = "true", require_equals = true, value_name = "BOOL")]
    raw_leaves: Option<bool>,
    /// Chunking: size-BYTES (fixed-size chunks)
    #[arg(short = 's', long, default_value = "size-262144")]
    chunker: String,
    /// Hash function: sha2-256, sha2-512, blake2b-256 or blake3 (anything but sha2-256 implies CIDv1)
    #[arg(long, default_value = "sha2-256")]
    hash: HashAlg,
    /// Include files and directories whose names start with a dot
    #[arg(short = 'H', long)]
    hidden: bool,
    /// Record each entry's permission bits
    #[arg(long)]
    preserve_mode: bool,
    /// Record each entry's modification time
    #[arg(long)]
    preserve_mtime: bool,
    /// Record this mode (octal) on every file and directory
    #[arg(long, value_parser = parse_octal, value_name = "OCTAL")]
    mode: Option<u32>,
    /// Record this modification time (seconds since the epoch) on every entry
    #[arg(long, value_name = "SECONDS", allow_negative_numbers = true)]
    mtime: Option<i64>,
    /// Nanoseconds of --mtime
    #[arg(long, requires = "mtime", value_name = "NANOS")]
    mtime_nsecs: Option<u32>,
    /// Shard directories whose entries take more than this many bytes (name + CID) as HAMTs
    #[arg(long, default_value_t = DEFAULT_SHARD_THRESHOLD, value_name = "BYTES")]
    shard_threshold: usize,
    /// Shard every non-empty directory as a HAMT
    #[arg(long)]
    shard: bool,
    /// Print CIDs in this base: base58btc (CIDv0 stays Qm…) or base32 (always CIDv1)
    #[arg(long, value_name = "BASE")]
    cid_base: Option<String>,
    /// Skip entries matching this gitignore-style pattern (repeatable)
    #[arg(long, value_name = "PATTERN")]
    ignore: Vec<String>,
    /// Skip entries matching the rules in this gitignore-style file
    #[arg(long, value_name = "FILE")]
    ignore_rules_path: Option<PathBuf>,
    /// One JSON object per entry: {"name", "cid", "size"}
    #[arg(long)]
    json: bool,
    /// Add one directory as an app: its tree as usual with modes and dotfiles, every occurrence
    /// of the placeholder (`cairn app placeholder`) in its files and symlink targets
    /// recorded, and an app node on top, printed last and pinned. Run it from
    /// ROOT/store/app/CID/, where the placeholder reads as CID.
    #[arg(long, conflicts_with = "webapp")]
    app: bool,
    /// Add one directory as a web app, served to static web servers from
    /// ROOT/store/webapp/CID/ (as --app, and the placeholder works the same way)
    #[arg(long)]
    webapp: bool,
    /// The app's name, recorded in its node (for `cairn env install`)
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
}

fn parse_octal(s: &str) -> Result<u32, String> {
    let v = u32::from_str_radix(s.trim_start_matches("0o"), 8)
        .map_err(|_| format!("{s:?} is not an octal mode"))?;
    if v > 0o7777 {
        return Err(format!("mode {s} is larger than 07777"));
    }
    Ok(v)
}

fn parse_chunker(s: &str) -> Result<usize> {
    match s.strip_prefix("size-") {
        Some(n) => n
            .parse()
            .with_context(|| format!("chunker {s:?}: {n:?} is not a byte count")),
        None => bail!("unsupported chunker {s:?} (cairn supports size-BYTES)"),
    }
}

impl AddArgs {
    fn options(&self) -> Result<AddOptions> {
        if self.mtime_nsecs.is_some_and(|n| n > 999_999_999) {
            bail!("--mtime-nsecs must be below 1000000000");
        }
        let opts = AddOptions {
            chunk_size: parse_chunker(&self.chunker)?,
            hash: self.hash,
            hidden: self.hidden,
            preserve_mode: self.preserve_mode,
            preserve_mtime: self.preserve_mtime,
            mode: self.mode,
            mtime: self.mtime.map(|seconds| Mtime {
                seconds,
                nanos: self.mtime_nsecs.filter(|n| *n != 0),
            }),
            shard_threshold: if self.shard { 0 } else { self.shard_threshold },
            ..AddOptions::default()
        };
        opts.resolve(self.cid_version, self.raw_leaves)
            .map_err(anyhow::Error::msg)
    }

    /// The `--ignore` patterns and `--ignore-rules-path` rules, relative to `base`.
    fn ignore_filter(&self, base: &Path) -> Result<Option<Ignore>> {
        if self.ignore.is_empty() && self.ignore_rules_path.is_none() {
            return Ok(None);
        }
        let mut b = GitignoreBuilder::new(base);
        if let Some(rules) = &self.ignore_rules_path {
            if let Some(e) = b.add(rules) {
                return Err(e).with_context(|| format!("reading {}", rules.display()));
            }
        }
        for pattern in &self.ignore {
            b.add_line(None, pattern)
                .with_context(|| format!("bad --ignore pattern {pattern:?}"))?;
        }
        let matcher = b.build().context("building ignore rules")?;
        Ok(Some(Ignore(Arc::new(move |path: &Path, is_dir: bool| {
            matcher.matched(path, is_dir).is_ignore()
        }))))
    }

    /// The store to add to, created if needed; none with `--only-hash`.
    fn store(&self, root: &Path) -> Result<Option<Store>> {
        Ok(if self.only_hash {
            None
        } else {
            Some(Store::init(root)?)
        })
    }

    fn show(&self, cid: &Cid) -> Result<String> {
        Ok(match self.cid_base.as_deref() {
            None | Some("base58btc") => cid.to_string(),
            Some("base32") => cairn_store::canonical(cid).to_string(),
            Some(other) => bail!("unsupported --cid-base {other:?} (base58btc or base32)"),
        })
    }
}

pub fn run(root: &Path, args: AddArgs) -> Result<ExitCode> {
    if args.app || args.webapp {
        return run_app(root, args);
    }
    if args.name.is_some() {
        bail!("--name names an app: use it with --app or --webapp");
    }
    let opts = args.options()?;
    args.show(&Cid::default())?;
    let store = args.store(root)?;
    let sink = sink(&store);
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let inputs: Vec<Option<&PathBuf>> = if args.paths.is_empty() {
        vec![None]
    } else {
        args.paths
            .iter()
            .map(|p| (p.as_os_str() != "-").then_some(p))
            .collect()
    };
    let mut last = None;
    let mut roots = Vec::new();
    for input in inputs {
        let bar = Bar::bytes("add", None);
        let entries = match input {
            None => {
                let meta = Metadata {
                    mode: opts.mode,
                    mtime: opts.mtime,
                };
                let added =
                    file::import_reader(sink, &opts, &mut std::io::stdin().lock(), &meta, &bar)
                        .context("adding standard input")?;
                vec![tree::AddedEntry {
                    path: added.cid.to_string(),
                    added,
                    kind: tree::EntryKind::File,
                }]
            }
            Some(path) => {
                let opts = AddOptions {
                    ignore: args.ignore_filter(path)?,
                    ..opts.clone()
                };
                tree::add_path(sink, &opts, path, args.recursive, &bar)
                    .with_context(|| format!("adding {}", path.display()))?
            }
        };
        bar.finish();
        if let Some(r) = entries.last() {
            roots.push(r.added.cid);
        }
        for e in &entries {
            if args.quieter {
                continue;
            }
            print_entry(&mut out, &args, e)?;
        }
        last = entries.last().cloned();
    }
    if let Some(root_entry) = &last {
        if args.quieter {
            print_entry(&mut out, &args, root_entry)?;
        }
    }
    out.flush()?;
    settle(store.as_ref(), args.pin, &roots)?;
    Ok(ExitCode::SUCCESS)
}

/// The sink an add writes to: the store, or nowhere (`--only-hash`).
fn sink(store: &Option<Store>) -> &dyn BlockSink {
    match store {
        Some(s) => s,
        None => &NullSink,
    }
}

/// Makes what was added durable and pins `roots` (if `pin`), before this process's temp pins
/// go, so that the collector always sees one or the other.
fn settle(store: Option<&Store>, pin: bool, roots: &[Cid]) -> Result<()> {
    let Some(store) = store else {
        return Ok(());
    };
    store.flush().context("syncing the store")?;
    if pin {
        let user = cairn_gc::pins::current_user();
        for cid in roots {
            cairn_gc::pins::add(store.layout(), &user, "add", cid)?;
        }
    }
    store.release();
    Ok(())
}

/// `cairn add --app DIR` and `--webapp DIR`.
fn run_app(root: &Path, args: AddArgs) -> Result<ExitCode> {
    let [dir] = &args.paths[..] else {
        bail!("--app and --webapp take exactly one directory");
    };
    let kind = if args.app {
        AppKind::App
    } else {
        AppKind::Webapp
    };
    args.show(&Cid::default())?;
    // Programs need their exec bits (--mode still overrides) and their dotfiles (`.libs/`,
    // `.well-known/`, `node_modules/.bin/`).
    let opts = AddOptions {
        preserve_mode: true,
        hidden: true,
        ignore: args.ignore_filter(dir)?,
        ..args.options()?
    };
    let store = args.store(root)?;
    let bar = Bar::bytes("add", None);
    let imported = cairn_app::import(sink(&store), &opts, dir, kind, args.name.clone(), &bar)
        .with_context(|| format!("adding {}", dir.display()))?;
    bar.finish();
    for w in &imported.warnings {
        eprintln!("cairn: warning: {w}");
    }
    let refs: usize = imported.node.refs.values().map(Vec::len).sum();
    eprintln!(
        "cairn: {refs} self-references in {} files and symlinks",
        imported.node.refs.len()
    );
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    if !args.quieter {
        for e in &imported.entries {
            print_entry(&mut out, &args, e)?;
        }
    }
    let cid = cairn_store::block_name(&imported.cid);
    let what = if args.app { "app" } else { "webapp" };
    let root_name = imported.entries.last().map_or("", |e| e.path.as_str());
    if args.json {
        writeln!(
            out,
            "{}",
            serde_json::json!({"name": root_name, "cid": cid, what: true, "refs": refs})
        )?;
    } else if args.quiet || args.quieter {
        writeln!(out, "{cid}")?;
    } else {
        writeln!(out, "added {cid} {root_name} ({what})")?;
    }
    out.flush()?;
    settle(store.as_ref(), args.pin, &[imported.cid])?;
    Ok(ExitCode::SUCCESS)
}

fn print_entry(out: &mut impl Write, args: &AddArgs, e: &tree::AddedEntry) -> Result<()> {
    let cid = args.show(&e.added.cid)?;
    if args.json {
        writeln!(
            out,
            "{}",
            serde_json::json!({"name": e.path, "cid": cid, "size": e.added.tsize})
        )?;
    } else if args.quiet || args.quieter {
        writeln!(out, "{cid}")?;
    } else {
        writeln!(out, "added {cid} {}", e.path)?;
    }
    Ok(())
}
