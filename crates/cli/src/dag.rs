//! `cairn dag import|export`.

use std::{
    fs::File,
    io::{BufReader, BufWriter, IsTerminal, Write},
    path::{Path, PathBuf},
    process::ExitCode,
};

use anyhow::{bail, Context, Result};
use cairn_store::{parse_cid, Store};
use cairn_unixfs::car;
use clap::Subcommand;

use crate::progress::Bar;

#[derive(Subcommand)]
pub enum DagCmd {
    /// Import CAR files (v1 or v2), checking every block's hash before storing it.
    ///
    /// If a CAR is broken, the blocks before the bad section are kept (each was verified)
    /// and the command fails, naming the section and its byte offset.
    Import {
        /// CAR files; "-" reads standard input
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Pin the roots the CAR names (under ROOT/pins/per-user/USER/import/)
        #[arg(long, default_value_t = true, num_args = 0..=1, default_missing_value = "true", require_equals = true, value_name = "BOOL")]
        pin_roots: bool,
        /// Print JSON instead of text, for scripts
        #[arg(long)]
        json: bool,
    },
    /// Export the DAG under a CID as a CARv1, depth first, each block once
    Export {
        cid: String,
        /// Write here instead of standard output
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
}

pub fn run(root: &Path, cmd: DagCmd) -> Result<ExitCode> {
    match cmd {
        DagCmd::Import {
            files,
            pin_roots,
            json,
        } => {
            let store = Store::init(root)?;
            let mut result = Ok(ExitCode::SUCCESS);
            for f in &files {
                let (input, size): (Box<dyn std::io::Read>, Option<u64>) = if f.as_os_str() == "-" {
                    (Box::new(std::io::stdin().lock()), None)
                } else {
                    let file = File::open(f).with_context(|| format!("opening {}", f.display()))?;
                    let size = file.metadata().ok().map(|m| m.len());
                    (Box::new(file), size)
                };
                let bar = Bar::bytes("import", size);
                let r = car::import(&store, BufReader::with_capacity(1 << 20, input), &bar);
                bar.finish();
                match r {
                    Ok(stats) => {
                        store.flush()?;
                        if pin_roots {
                            let user = cairn_gc::pins::current_user();
                            for root in &stats.roots {
                                cairn_gc::pins::add(store.layout(), &user, "import", root)?;
                            }
                        }
                        report(f, &stats, &store, json)?
                    }
                    Err(e) => {
                        store.flush()?;
                        result = Err(
                            anyhow::Error::new(e).context(format!("importing {}", f.display()))
                        );
                        break;
                    }
                }
            }
            store.flush()?;
            store.release();
            result
        }
        DagCmd::Export { cid, output } => {
            let store = Store::open(root)?;
            let cid = parse_cid(&cid)?;
            let bar = Bar::bytes("export", None);
            match output {
                Some(path) => {
                    let file = File::create(&path)
                        .with_context(|| format!("creating {}", path.display()))?;
                    let (w, _) = car::export(&store, &[cid], BufWriter::new(file), &bar)?;
                    let file = w.into_inner().map_err(|e| e.into_error())?;
                    // A device such as /dev/null cannot be synced, and need not be.
                    if file.metadata()?.is_file() {
                        file.sync_all()
                            .with_context(|| format!("writing {}", path.display()))?;
                    }
                }
                None => {
                    if std::io::stdout().is_terminal() {
                        bail!("refusing to write a CAR to a terminal; use -o FILE or a pipe");
                    }
                    let stdout = std::io::stdout();
                    let (mut w, _) =
                        car::export(&store, &[cid], BufWriter::new(stdout.lock()), &bar)?;
                    w.flush()?;
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn report(file: &Path, stats: &car::CarImport, store: &Store, json: bool) -> Result<()> {
    let roots: Vec<(String, bool)> = stats
        .roots
        .iter()
        .map(|r| Ok((r.to_string(), store.has(r)?)))
        .collect::<Result<_>>()?;
    if json {
        println!(
            "{}",
            serde_json::json!({
                "file": file.display().to_string(),
                "version": stats.version,
                "blocks": stats.blocks,
                "new": stats.fresh,
                "bytes": stats.bytes,
                "roots": roots.iter().map(|(r, present)| serde_json::json!({"cid": r, "present": present})).collect::<Vec<_>>(),
            })
        );
    } else {
        println!(
            "imported {}: {} blocks ({} new, {} bytes)",
            file.display(),
            stats.blocks,
            stats.fresh,
            stats.bytes
        );
        for (r, present) in roots {
            let note = if present {
                ""
            } else {
                " (root block not in the CAR)"
            };
            println!("root {r}{note}");
        }
    }
    Ok(())
}
