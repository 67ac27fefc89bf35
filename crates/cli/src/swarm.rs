//! `cairn swarm`, `cairn fetch`, `cairn provide`: the network, through the daemon.

use std::{path::Path, process::ExitCode, sync::Arc, time::Duration};

use anyhow::{Context, Result};
use cairn_store::{parse_cid, Store};
use clap::Subcommand;
use serde_json::Value;

use crate::{
    control::{Control, Request},
    daemon::NetArgs,
    progress::Bar,
};

#[derive(Subcommand)]
pub enum SwarmCmd {
    /// This node's peer ID, and the addresses peers can reach it at
    Id {
        /// Print JSON instead of text, for scripts
        #[arg(long)]
        json: bool,
    },
    /// Connected peers: ID, agent, addresses
    Peers {
        /// Print JSON instead of text, for scripts
        #[arg(long)]
        json: bool,
    },
    /// Connect to a peer (a multiaddr ending in /p2p/PEER)
    Connect { addr: String },
    /// Close every connection to a peer
    Disconnect { peer: String },
    /// What each peer gave us and took, lately and in all (from the running daemon, or from
    /// ROOT/ledger.json, which it writes every 30 s and when it stops)
    Ledger {
        /// Print JSON instead of text, for scripts
        #[arg(long)]
        json: bool,
    },
}

pub fn swarm(root: &Path, cmd: SwarmCmd) -> Result<ExitCode> {
    match cmd {
        SwarmCmd::Id { json } => {
            let Some(mut c) = Control::connect(root) else {
                // No daemon: the identity it will have.
                let key = cairn_net::identity::load_or_create(&root.join("node.key"))?;
                let peer = key.public().to_peer_id().to_string();
                if json {
                    println!(
                        "{}",
                        serde_json::json!({"peer": peer, "addrs": [], "running": false})
                    );
                } else {
                    println!("{peer} (no daemon running)");
                }
                return Ok(ExitCode::SUCCESS);
            };
            let mut v = c.call(&Request::Id)?;
            if json {
                v["running"] = Value::Bool(true);
                println!("{v}");
            } else {
                println!("{}", v["peer"].as_str().unwrap_or(""));
                for a in v["addrs"].as_array().into_iter().flatten() {
                    println!("  {}", a.as_str().unwrap_or(""));
                }
            }
        }
        SwarmCmd::Peers { json } => {
            let v = Control::require(root)?.call(&Request::Peers)?;
            if json {
                println!("{v}");
            } else {
                for p in v.as_array().into_iter().flatten() {
                    let addr = p["addrs"][0].as_str().unwrap_or("");
                    println!(
                        "{} {} {}",
                        p["peer"].as_str().unwrap_or(""),
                        p["agent"].as_str().unwrap_or(""),
                        addr
                    );
                }
            }
        }
        SwarmCmd::Ledger { json } => ledger(root, json)?,
        SwarmCmd::Connect { addr } => {
            let v = Control::require(root)?.call(&Request::Connect { addr })?;
            println!("connected to {}", v["peer"].as_str().unwrap_or(""));
        }
        SwarmCmd::Disconnect { peer } => {
            let v = Control::require(root)?.call(&Request::Disconnect { peer: peer.clone() })?;
            if v["disconnected"] != Value::Bool(true) {
                anyhow::bail!("not connected to {peer}");
            }
            println!("disconnected {peer}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// How `cairn fetch` goes about it.
pub struct FetchArgs<'a> {
    pub pin: bool,
    pub prog: &'a str,
    pub window: usize,
    pub json: bool,
    /// Fail once more than this was fetched.
    pub max_bytes: Option<u64>,
}

/// `cairn fetch`: every block of a DAG, pinned first (so nothing fetched is collected
/// halfway), through the daemon if one runs, else through a node started for the occasion.
pub fn fetch(root: &Path, cid: &str, how: &FetchArgs, net: &NetArgs) -> Result<ExitCode> {
    let FetchArgs {
        pin,
        prog,
        window,
        json,
        max_bytes,
    } = *how;
    let cid = parse_cid(cid)?;
    let store = Arc::new(Store::init(root)?);
    if pin {
        let user = cairn_gc::pins::current_user();
        cairn_gc::pins::add(store.layout(), &user, prog, &cid)?;
    }
    let bar = Bar::bytes("fetch", None);
    let over = |n: u64| max_bytes.filter(|m| n > *m);
    let too_much =
        |m: u64| anyhow::anyhow!("{cid}: more than the {m} bytes allowed (--max-bytes); stopped");
    let show = |p: &Value| -> Result<()> {
        let n = p["fetched_bytes"].as_u64().unwrap_or(0);
        bar.set_position(n);
        match over(n) {
            Some(m) => Err(too_much(m)),
            None => Ok(()),
        }
    };
    let done: Value = match Control::connect(root) {
        Some(mut c) => {
            if net.is_set() {
                eprintln!(
                    "cairn: a daemon runs for {}: fetching through it, with its own network \
                     settings (the ones given here apply only when no daemon runs)",
                    root.display()
                );
            }
            c.call_with(
                &Request::Fetch {
                    cid: cid.to_string(),
                    window,
                },
                None,
                &mut |p| show(p),
            )?
        }
        None => {
            let config = net.config(root)?;
            let key = cairn_net::identity::load_or_create(&root.join("node.key"))?;
            let rt = crate::daemon::runtime()?;
            let config = cairn_net::Config {
                // A node for one fetch listens nowhere: it only dials out.
                listen: Vec::new(),
                ..config
            };
            let r = rt.block_on(async {
                let client = cairn_net::node::start(&config, key, store.clone()).await?;
                let stop = tokio::sync::Notify::new();
                let bar_progress = |p: &cairn_net::fetch::FetchProgress| {
                    bar.set_position(p.fetched_bytes);
                    if over(p.fetched_bytes).is_some() {
                        stop.notify_one();
                    }
                };
                // The first wants go out once a bootstrap peer is connected (or after a few
                // seconds: mDNS or the DHT may still bring one).
                if !config.bootstrap.is_empty() {
                    let t = std::time::Instant::now();
                    while client.peers().await?.is_empty() && t.elapsed() < Duration::from_secs(5) {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
                let fetch = cairn_net::fetch::fetch_dag(
                    &client,
                    &store,
                    cid,
                    window,
                    config.fetch_timeout,
                    &bar_progress,
                );
                tokio::select! {
                    r = fetch => r.map_err(anyhow::Error::from),
                    () = stop.notified() => Err(too_much(max_bytes.unwrap_or(0))),
                }
            });
            rt.shutdown_timeout(Duration::from_secs(1));
            serde_json::to_value(r?)?
        }
    };
    bar.finish();
    store.flush()?;
    // The last block may have crossed the bound after the last progress report.
    if let Some(m) = over(done["fetched_bytes"].as_u64().unwrap_or(0)) {
        return Err(too_much(m));
    }
    if json {
        println!(
            "{}",
            serde_json::json!({"cid": cid.to_string(), "pinned": pin, "result": done})
        );
    } else {
        eprintln!(
            "fetched {} of {} blocks ({} bytes) of {cid}{}",
            done["fetched"],
            done["blocks"],
            done["fetched_bytes"],
            if pin { ", pinned" } else { "" }
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `cairn provide`: announce CIDs on the DHT (the daemon keeps announcing them).
pub fn provide(root: &Path, cids: &[String]) -> Result<ExitCode> {
    for c in cids {
        parse_cid(c)?;
    }
    let v = Control::require(root)?
        .call(&Request::Provide {
            cids: cids.to_vec(),
        })
        .context("announcing")?;
    println!("announcing {} CIDs", v["announced"]);
    Ok(ExitCode::SUCCESS)
}

/// `cairn swarm ledger`: one object per peer, recent bytes decayed to now, most generous
/// first.
fn ledger(root: &Path, json: bool) -> Result<()> {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    // Weights and reputations from the daemon; without one, weights from the file alone.
    let mut standing: std::collections::HashMap<String, (f64, f64, f64)> = Default::default();
    let by_peer: Vec<(String, cairn_net::ledger::PeerStats)> = match Control::connect(root) {
        Some(mut c) => {
            let v = c.call(&Request::Stats)?;
            let rows: Vec<(String, f64, f64, f64)> =
                serde_json::from_value(v["standing"].clone()).unwrap_or_default();
            standing = rows
                .into_iter()
                .map(|(p, w, r, t)| (p, (w, r, t)))
                .collect();
            serde_json::from_value(v["by_peer"].clone()).context("the daemon's ledger")?
        }
        None => {
            let path = root.join("ledger.json");
            match std::fs::read(&path) {
                Ok(b) => {
                    let v: Value = serde_json::from_slice(&b)
                        .with_context(|| format!("reading {}", path.display()))?;
                    let peers: std::collections::HashMap<String, cairn_net::ledger::PeerStats> =
                        serde_json::from_value(v["peers"].clone())
                            .with_context(|| format!("reading {}", path.display()))?;
                    peers.into_iter().collect()
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
                Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
            }
        }
    };
    let mut rows: Vec<Value> = by_peer
        .into_iter()
        .map(|(peer, s)| {
            let peer = peer.as_str();
            serde_json::json!({
                "peer": peer,
                "bytes_received": s.bytes_received,
                "bytes_sent": s.bytes_sent,
                "blocks_received": s.blocks_received,
                "blocks_sent": s.blocks_sent,
                "recent_received": s.recent_received.at(now_ms).round(),
                "recent_sent": s.recent_sent.at(now_ms).round(),
                "dont_haves": s.dont_haves,
                "bad_blocks": s.bad_blocks,
                "unwanted_blocks": s.unwanted_blocks,
                "malformed_messages": s.malformed_messages,
                "bad_records": s.bad_records,
                "bad_statements": s.bad_statements,
                "stranger": s.is_stranger(now_ms),
                "bad": cairn_net::incentives::is_bad(&s, now_ms),
                "weight": standing.get(peer).map_or_else(
                    || cairn_net::incentives::weight(&s, 0.0, 0.0, now_ms),
                    |(w, _, _)| *w,
                ),
                "reputation": standing.get(peer).map_or(0.0, |(_, r, _)| r.round()),
                "took_through_others": standing.get(peer).map_or(0.0, |(_, _, t)| t.round()),
                "answer_ms": (s.answer_ms * 10.0).round() / 10.0,
                "answer_rate": s.answer_rate.round(),
                "first_seen": s.first_seen,
                "last_seen": s.last_seen,
            })
        })
        .collect();
    rows.sort_by(|a, b| {
        b["recent_received"]
            .as_f64()
            .partial_cmp(&a["recent_received"].as_f64())
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    if json {
        println!("{}", Value::Array(rows));
        return Ok(());
    }
    let mib = |v: &Value| v.as_f64().unwrap_or(0.0) / (1 << 20) as f64;
    println!(
        "{:<52} {:>10} {:>10} {:>10} {:>10} {:>5} {:>5} {:>6}",
        "peer", "got MiB", "gave MiB", "lately", "lately", "bad", "dh", "weight"
    );
    for r in &rows {
        println!(
            "{:<52} {:>10.1} {:>10.1} {:>10.1} {:>10.1} {:>5} {:>5} {:>6.2}",
            r["peer"].as_str().unwrap_or(""),
            mib(&r["bytes_received"]),
            mib(&r["bytes_sent"]),
            mib(&r["recent_received"]),
            mib(&r["recent_sent"]),
            r["bad_blocks"].as_u64().unwrap_or(0)
                + r["unwanted_blocks"].as_u64().unwrap_or(0)
                + r["bad_records"].as_u64().unwrap_or(0),
            r["dont_haves"].as_u64().unwrap_or(0),
            r["weight"].as_f64().unwrap_or(0.0),
        );
    }
    Ok(())
}
