//! `init`, `verify`, `repair`, `stat`.

use std::{path::Path, process::ExitCode, time::Duration};

use anyhow::{Context, Result};
use cairn_store::Store;

use crate::progress::Bar;

/// How long commands wait for another process to release the index.
pub const INDEX_WAIT: Duration = Duration::from_secs(60);

pub fn threads() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

pub fn init(root: &Path) -> Result<ExitCode> {
    Store::init(root)?;
    println!("initialized cairn root at {}", root.display());
    Ok(ExitCode::SUCCESS)
}

/// Opens the store and its index, waiting for other processes to release the index.
pub fn open_indexed(root: &Path) -> Result<Store> {
    let store = Store::open(root)?;
    if !store.open_index(INDEX_WAIT)? {
        anyhow::bail!(
            "the index at {} is held by another cairn process (waited {}s)",
            store.layout().index_db().display(),
            INDEX_WAIT.as_secs()
        );
    }
    Ok(store)
}

pub fn verify(root: &Path, json: bool) -> Result<ExitCode> {
    let store = Store::open(root)?;
    let total = store.blocks().iter()?.count() as u64;
    let bar = Bar::items("verify", total);
    let report = store.verify(threads(), &|n| bar.set_position(n))?;
    bar.finish();
    if json {
        println!(
            "{}",
            serde_json::json!({
                "checked": report.checked,
                "bytes": report.bytes,
                "corrupt": report.corrupt.iter().map(|c| c.to_string()).collect::<Vec<_>>(),
                "unsupported": report.unsupported.iter().map(|c| c.to_string()).collect::<Vec<_>>(),
                "strays": report.strays.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
                "stale_staging": report.stale_staging,
            })
        );
    } else {
        println!(
            "verified {} blocks ({} bytes): {} corrupt",
            report.checked,
            report.bytes,
            report.corrupt.len()
        );
        for c in &report.corrupt {
            println!(
                "corrupt {c}: moved to {}",
                store
                    .layout()
                    .corrupt()
                    .join(cairn_store::block_name(c))
                    .display()
            );
        }
        for c in &report.unsupported {
            println!("unchecked {c}: its hash function is not supported");
        }
        for p in &report.strays {
            println!("stray file {} (not a block name; left alone)", p.display());
        }
        if report.stale_staging > 0 {
            println!(
                "removed {} staging files of dead writers",
                report.stale_staging
            );
        }
    }
    Ok(if report.corrupt.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

pub fn repair(root: &Path, json: bool) -> Result<ExitCode> {
    let store = Store::open(root)?;
    let total = store.blocks().iter()?.count() as u64;
    let bar = Bar::items("repair", total);
    let report = store
        .repair(threads(), INDEX_WAIT, &|n| bar.set_position(n))
        .context("rebuilding the index")?;
    bar.finish();
    if json {
        println!(
            "{}",
            serde_json::json!({
                "indexed": report.indexed,
                "bytes": report.bytes,
                "corrupt": report.corrupt.iter().map(|c| c.to_string()).collect::<Vec<_>>(),
                "undecodable": report.undecodable.iter().map(|c| c.to_string()).collect::<Vec<_>>(),
                "strays": report.strays.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
            })
        );
    } else {
        println!(
            "rebuilt the index: {} blocks, {} bytes",
            report.indexed, report.bytes
        );
        for c in &report.corrupt {
            println!(
                "corrupt {c}: moved to {}",
                store.layout().corrupt().display()
            );
        }
        for c in &report.undecodable {
            println!("undecodable {c}: indexed without links");
        }
        for p in &report.strays {
            println!("stray file {} (left alone)", p.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn stat(root: &Path, json: bool) -> Result<ExitCode> {
    let store = open_indexed(root)?;
    let s = store.stats()?;
    // With a daemon running, its network counters too.
    let net = crate::control::Control::connect(root)
        .and_then(|mut c| c.call(&crate::control::Request::Stats).ok());
    if json {
        let mut v = serde_json::json!({"root": root.display().to_string(), "blocks": s.blocks, "bytes": s.bytes});
        if let Some(n) = &net {
            v["network"] = n.clone();
        }
        println!("{v}");
    } else {
        println!("root:   {}", root.display());
        println!("blocks: {}", s.blocks);
        println!("bytes:  {}", s.bytes);
        if let Some(n) = &net {
            let t = &n["totals"];
            println!("peers:  {}", n["peers"]);
            println!("wants:  {}", n["wants"]);
            println!(
                "received {} blocks ({} bytes), sent {} blocks ({} bytes)",
                t["blocks_received"], t["bytes_received"], t["blocks_sent"], t["bytes_sent"]
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
