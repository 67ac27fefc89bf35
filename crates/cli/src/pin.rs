//! `cairn pin` and `cairn gc`.

use std::{path::Path, path::PathBuf, process::ExitCode};

use anyhow::{Context, Result};
use cairn_gc::{collect, pins, GcOptions};
use cairn_store::{parse_cid, Cid, Store};
use clap::Subcommand;

#[derive(Subcommand)]
pub enum PinCmd {
    /// Pin a CID: keep its whole DAG through garbage collection. The pin is a symlink
    /// ROOT/pins/per-user/USER/PROG/CID -> ROOT/store/CID; `ln -s` works just as well.
    Add {
        cid: String,
        /// The program the pin belongs to
        #[arg(long, default_value = "cli")]
        prog: String,
        /// Also make the symlink LINK -> ROOT/store/CID and pin through it: deleting or
        /// re-pointing LINK unpins at the next gc (like Nix's result links)
        #[arg(long, value_name = "LINK")]
        link: Option<PathBuf>,
    },
    /// Remove your pins of a CID
    Rm {
        cid: String,
        /// Only the pin of this program
        #[arg(long)]
        prog: Option<String>,
    },
    /// List pins: user, program, CID, and whether the whole DAG is here
    Ls {
        /// Print JSON instead of text, for scripts
        #[arg(long)]
        json: bool,
    },
}

pub fn run(root: &Path, cmd: PinCmd) -> Result<ExitCode> {
    let store = Store::init(root)?;
    let layout = store.layout();
    let user = pins::current_user();
    match cmd {
        PinCmd::Add { cid, prog, link } => {
            let cid = parse_cid(&cid)?;
            let path = match &link {
                Some(l) => pins::add_auto(layout, &user, &prog, &cid, l)?,
                None => pins::add(layout, &user, &prog, &cid)?,
            };
            let complete = complete(&store, &cid)?;
            println!("pinned {cid} at {}", path.display());
            if !complete {
                eprintln!("cairn: note: not every block of {cid} is here yet");
            }
        }
        PinCmd::Rm { cid, prog } => {
            let cid = parse_cid(&cid)?;
            let n = pins::remove(layout, &user, prog.as_deref(), &cid)?;
            if n == 0 {
                anyhow::bail!("{user} has no pin of {cid}");
            }
            println!("unpinned {cid} ({n} pin{})", if n == 1 { "" } else { "s" });
        }
        PinCmd::Ls { json } => {
            let _ = store.open_index(std::time::Duration::from_secs(2))?;
            let pins::Walk {
                pins: list,
                dangling,
                refused,
                ..
            } = pins::walk(layout)?;
            for p in &list {
                let complete = complete(&store, &p.cid)?;
                let via = match &p.kind {
                    pins::PinKind::Direct => String::new(),
                    pins::PinKind::Auto { link } => link.display().to_string(),
                };
                if json {
                    println!(
                        "{}",
                        serde_json::json!({"user": p.user, "prog": p.prog, "cid": p.cid.to_string(),
                            "complete": complete, "link": via, "path": p.path.display().to_string()})
                    );
                } else {
                    let state = if complete { "complete" } else { "incomplete" };
                    let via = if via.is_empty() {
                        via
                    } else {
                        format!(" via {via}")
                    };
                    println!("{}\t{}\t{}\t{state}{via}", p.user, p.prog, p.cid);
                }
            }
            for d in dangling {
                eprintln!(
                    "cairn: {} pins nothing ({}); gc removes it",
                    d.path.display(),
                    d.why
                );
            }
            for r in refused {
                eprintln!("cairn: {}: {}", r.path.display(), r.why);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// True if every block under `cid` is in the store.
pub fn complete(store: &Store, cid: &Cid) -> Result<bool> {
    let mut seen = std::collections::HashSet::new();
    let mut stack = vec![*cid];
    while let Some(c) = stack.pop() {
        if !seen.insert(cairn_store::canonical(&c)) {
            continue;
        }
        match store.meta(&c) {
            Ok(Some(m)) => stack.extend(m.links),
            Ok(None) => return Ok(false),
            Err(e) => return Err(e).with_context(|| format!("reading {c}")),
        }
    }
    Ok(true)
}

pub fn gc(root: &Path, opts: GcOptions, json: bool) -> Result<ExitCode> {
    let store = Store::open(root)?;
    let dry_run = opts.dry_run;
    let r = collect(&store, &opts)?;
    if json {
        println!(
            "{}",
            serde_json::json!({
                "dry_run": dry_run,
                "pins": r.pins, "live_temp_pins": r.live_temp_pins,
                "candidates": r.candidates, "marked": r.marked,
                "freed_blocks": r.freed_blocks, "freed_bytes": r.freed_bytes, "rescued": r.rescued,
                "dead_temp_pins": r.dead_temp_pins,
                "removed_links": r.removed_links.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
                "refused": r.refused.iter().map(|f| serde_json::json!({
                    "path": f.path.display().to_string(), "why": f.why.to_string(),
                })).collect::<Vec<_>>(),
                "roots_ms": r.roots_time.as_millis(), "mark_ms": r.mark_time.as_millis(),
                "sweep_ms": r.sweep_time.as_millis(), "longest_hold_ms": r.longest_hold.as_millis(),
                "batches": r.batches, "summarised": r.summarised,
            })
        );
    } else {
        let verb = if dry_run { "would free" } else { "freed" };
        println!(
            "{verb} {} blocks ({} bytes) of {}; kept {} reachable from {} pins and {} live writers",
            r.freed_blocks, r.freed_bytes, r.candidates, r.marked, r.pins, r.live_temp_pins
        );
        println!(
            "roots {} ms, mark {} ms, sweep {} ms in {} batches (lock held at most {} ms)",
            r.roots_time.as_millis(),
            r.mark_time.as_millis(),
            r.sweep_time.as_millis(),
            r.batches,
            r.longest_hold.as_millis()
        );
        let removed = if dry_run { "would remove" } else { "removed" };
        for p in &r.removed_links {
            println!("{removed} stale pin link {}", p.display());
        }
        if r.dead_temp_pins > 0 {
            println!("{removed} {} temp pins of dead processes", r.dead_temp_pins);
        }
        if r.summarised > 0 {
            println!(
                "summarised the children of {} directories recorded before them",
                r.summarised
            );
        }
        for f in &r.refused {
            println!("refused {}: {}", f.path.display(), f.why);
        }
    }
    Ok(ExitCode::SUCCESS)
}
