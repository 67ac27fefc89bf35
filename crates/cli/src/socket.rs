//! The daemon's side of the control socket (`R/daemon.sock`, mode 0666): any local user may
//! connect, so everything a connection can make the daemon hold is bounded before it is
//! allocated. The daemon is also the mount: a user who could exhaust its memory or its file
//! descriptors would take every program running from `R/store` down with it.
//!
//! | what                          | bound                         | past it                               |
//! |-------------------------------|-------------------------------|---------------------------------------|
//! | a request line                | [`MAX_LINE`] (64 KiB)         | an error line, then the connection closes |
//! | connections at once           | [`MAX_CONNECTIONS`] (256)     | an error line, then closed at once    |
//! | connections of one user       | [`MAX_PER_USER`] (64)         | likewise (root and the daemon's user are counted too, so another user cannot lock them out) |
//! | waiting for a request         | [`IDLE`] (60 s)               | closed                                |
//! | a reply the client won't read | [`WRITE_TIMEOUT`] (60 s)      | closed                                |
//! | CIDs in one `prefetch`        | [`MAX_PREFETCH`] (1024)       | refused with an error                 |
//! | a `fetch`'s window            | 1 ..= [`MAX_WINDOW`] (1024)   | refused with an error                 |
//! | names one user publishes      | [`crate::naming::PUBLISH_PER_USER`] (256; root and the daemon's user: none) | refused with an error |
//! | names one user follows        | `names.follow_per_user` (256), 2048 in all; `--mirror`: root and the daemon's user only | refused with an error |
//! | names resolved for users      | held as [`crate::naming`] bounds them (4096 names, 64 MiB of lists) | least recently used dropped from memory |
//!
//! Requests on one connection are answered one after another, so a connection holds at most
//! one request's work (a `fetch` of a DAG: its window of wants).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::{bail, Context, Result};
use cairn_net::{fetch, Client};
use cairn_store::{parse_cid, Store};
use serde_json::{json, Value};
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    net::{
        unix::{OwnedReadHalf, OwnedWriteHalf},
        UnixListener, UnixStream,
    },
};

use crate::control::Request;

/// The longest request line read (a `provide` of ~900 CIDs fits).
pub const MAX_LINE: usize = 64 << 10;
/// Connections served at once, from all users.
pub const MAX_CONNECTIONS: usize = 256;
/// Connections served at once for one user id.
pub const MAX_PER_USER: usize = 64;
/// How long a connection may sit without sending a request.
pub const IDLE: Duration = Duration::from_secs(60);
/// How long a reply may take to be written (a client that stops reading is dropped).
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(60);
/// Most CIDs in one `prefetch` request.
pub const MAX_PREFETCH: usize = 1024;
/// The largest window of a `fetch` (the wants one peer may have with another).
pub const MAX_WINDOW: usize = 1024;

/// What a connection's answers need.
pub struct Ctx {
    pub client: Client,
    pub store: Arc<Store>,
    pub timeout: Duration,
    /// The daemon's own user id: with root, the only one allowed admin requests.
    pub owner: u32,
    pub naming: Arc<crate::naming::Naming>,
}

/// Connections being served, in all and per user.
#[derive(Default)]
struct Slots {
    total: usize,
    per_user: HashMap<u32, usize>,
}

/// A connection's place in [`Slots`], given back when it ends.
struct Slot {
    slots: Arc<Mutex<Slots>>,
    uid: u32,
}

impl Slot {
    fn take(slots: &Arc<Mutex<Slots>>, uid: u32) -> Result<Slot, &'static str> {
        let mut s = slots.lock().unwrap_or_else(|e| e.into_inner());
        if s.total >= MAX_CONNECTIONS {
            return Err("the daemon is serving too many connections; try again later");
        }
        let mine = s.per_user.entry(uid).or_default();
        if *mine >= MAX_PER_USER {
            return Err("too many connections to the daemon from this user");
        }
        *mine += 1;
        s.total += 1;
        Ok(Slot {
            slots: slots.clone(),
            uid,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut s = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        s.total -= 1;
        if let Some(n) = s.per_user.get_mut(&self.uid) {
            *n -= 1;
            if *n == 0 {
                s.per_user.remove(&self.uid);
            }
        }
    }
}

/// Accepts connections for as long as the daemon runs.
pub async fn serve(listener: UnixListener, ctx: Arc<Ctx>) {
    let slots = Arc::new(Mutex::new(Slots::default()));
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                // EMFILE and the like: wait a moment rather than spin.
                log::warn!("control socket: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let uid = stream.peer_cred().map(|c| c.uid()).unwrap_or(u32::MAX);
        match Slot::take(&slots, uid) {
            Ok(slot) => {
                tokio::spawn(connection(stream, uid, slot, ctx.clone()));
            }
            Err(why) => {
                // Said on a task of its own, bounded in time, so a client that does not read
                // cannot hold the accept loop.
                tokio::spawn(async move {
                    let (_, mut w) = stream.into_split();
                    let _ = write_line(&mut w, &json!({ "error": why })).await;
                });
            }
        }
    }
}

async fn connection(stream: UnixStream, uid: u32, _slot: Slot, ctx: Arc<Ctx>) {
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::new(r);
    let mut line = Vec::new();
    loop {
        let got = tokio::time::timeout(IDLE, read_line(&mut r, &mut line)).await;
        let reply = match got {
            // Idle too long, closed, or broken.
            Err(_) | Ok(Ok(false)) | Ok(Err(LineError::Io)) => return,
            Ok(Err(LineError::TooLong)) => {
                let e = format!("request longer than {} KiB", MAX_LINE >> 10);
                let _ = write_line(&mut w, &json!({ "error": e })).await;
                return;
            }
            Ok(Ok(true)) => match serde_json::from_slice::<Request>(&line) {
                Err(e) => json!({"error": format!("bad request: {e}")}),
                Ok(req) if req.is_admin() && uid != 0 && uid != ctx.owner => {
                    json!({"error": "only root and the daemon's user may do that"})
                }
                Ok(req) => match answer(&ctx, uid, req, &mut w).await {
                    Ok(v) => json!({ "ok": v }),
                    Err(e) => json!({"error": format!("{e:#}")}),
                },
            },
        };
        if write_line(&mut w, &reply).await.is_err() {
            return;
        }
    }
}

enum LineError {
    TooLong,
    Io,
}

/// Reads one line (without its newline) into `line`, never holding more than [`MAX_LINE`]
/// bytes of it. `Ok(false)` at the end of the stream.
async fn read_line(
    r: &mut BufReader<OwnedReadHalf>,
    line: &mut Vec<u8>,
) -> Result<bool, LineError> {
    line.clear();
    loop {
        let buf = r.fill_buf().await.map_err(|_| LineError::Io)?;
        if buf.is_empty() {
            return Ok(false);
        }
        let (take, done) = match buf.iter().position(|b| *b == b'\n') {
            Some(i) => (i, true),
            None => (buf.len(), false),
        };
        if line.len() + take > MAX_LINE {
            return Err(LineError::TooLong);
        }
        line.extend_from_slice(&buf[..take]);
        r.consume(take + done as usize);
        if done {
            return Ok(true);
        }
    }
}

async fn write_line(w: &mut OwnedWriteHalf, v: &Value) -> std::io::Result<()> {
    let mut s = v.to_string();
    s.push('\n');
    tokio::time::timeout(WRITE_TIMEOUT, w.write_all(s.as_bytes()))
        .await
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))?
}

async fn answer(ctx: &Ctx, uid: u32, req: Request, w: &mut OwnedWriteHalf) -> Result<Value> {
    let c = &ctx.client;
    Ok(match req {
        Request::Id => json!({
            "peer": c.peer_id().to_string(),
            "addrs": c.listen_addrs().await?.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
        }),
        Request::Peers => serde_json::to_value(c.peers().await?)?,
        Request::Stats => {
            let mut v = serde_json::to_value(c.stats().await?)?;
            v["dht"] = serde_json::to_value(c.dht().await?)?;
            // Tasks alive on the daemon's runtime (the soak benchmark watches it).
            v["tasks"] = json!(tokio::runtime::Handle::current()
                .metrics()
                .num_alive_tasks());
            v
        }
        Request::Connect { addr } => {
            let addr: cairn_net::Multiaddr = addr
                .parse()
                .with_context(|| format!("{addr:?} is not a multiaddr"))?;
            json!({"peer": c.dial(addr).await?.to_string()})
        }
        Request::Disconnect { peer } => {
            let p: cairn_net::PeerId = peer
                .parse()
                .with_context(|| format!("{peer:?} is not a peer ID"))?;
            json!({"disconnected": c.disconnect(p).await?})
        }
        Request::Provide { cids } => {
            let cids = cids
                .iter()
                .map(|s| parse_cid(s))
                .collect::<Result<Vec<_>, _>>()?;
            json!({"announced": c.provide(&cids).await?})
        }
        Request::Block { cid } => {
            let cid = parse_cid(&cid)?;
            cairn_net::verifiable(&cid)?;
            let store = ctx.store.clone();
            if !tokio::task::spawn_blocking(move || store.has(&cid)).await?? {
                let data = c
                    .want(cid, ctx.timeout)
                    .await
                    .with_context(|| format!("block {cid}: no peer sent it in time"))?;
                let store = ctx.store.clone();
                tokio::task::spawn_blocking(move || store.put_cache(&cid, &data)).await??;
            }
            json!(null)
        }
        Request::Prefetch { cids } => {
            if cids.len() > MAX_PREFETCH {
                bail!(
                    "a prefetch names {} blocks; at most {MAX_PREFETCH} at once",
                    cids.len()
                );
            }
            let cids: Vec<_> = cids.iter().filter_map(|s| parse_cid(s).ok()).collect();
            c.prefetch(&cids, ctx.timeout);
            json!(null)
        }
        Request::Fetch { cid, window } => {
            if !(1..=MAX_WINDOW).contains(&window) {
                bail!("a fetch window of {window}: it must be between 1 and {MAX_WINDOW}");
            }
            let cid = parse_cid(&cid)?;
            cairn_net::verifiable(&cid)?;
            let (tx, mut rx) = tokio::sync::mpsc::channel::<fetch::FetchProgress>(4);
            let (client, store, timeout) = (c.clone(), ctx.store.clone(), ctx.timeout);
            let task = tokio::spawn(async move {
                fetch::fetch_dag(&client, &store, cid, window, timeout, &move |p| {
                    let _ = tx.try_send(*p);
                })
                .await
            });
            // Dropped with this connection (a client gone, or not reading): so is the fetch.
            let abort = task.abort_handle();
            let _guard = AbortOnDrop(abort);
            while let Some(p) = rx.recv().await {
                write_line(w, &json!({ "progress": p })).await?;
            }
            serde_json::to_value(task.await??)?
        }
        Request::NamePublish {
            name,
            record,
            offline,
        } => {
            let name = parse_name(&name)?;
            let record = cairn_names::record::from_base64(&record)?;
            ctx.naming
                .may_publish(uid, uid == 0 || uid == ctx.owner, &name)
                .map_err(anyhow::Error::msg)?;
            c.publish_name(name, record.clone(), offline).await?;
            if let Err(e) = ctx.naming.published(name, record).await {
                log::warn!("keeping {name}'s record in R/names: {e}");
            }
            json!(null)
        }
        Request::NameResolve {
            name,
            nocache,
            offline,
        } => {
            let name = parse_name(&name)?;
            let mode = crate::naming::Mode { nocache, offline };
            match ctx
                .naming
                .resolve_telling(name, mode)
                .await
                .map_err(anyhow::Error::msg)?
            {
                (Some((k, fresh)), _) => known_json(&k, fresh),
                // Nothing valid, but something came: said, with no "value".
                (None, r) if r.offences + r.others > 0 => json!({
                    "refused": r.offences + r.others,
                    "forged": r.offences,
                    "why": r.why,
                }),
                (None, _) => json!(null),
            }
        }
        Request::NameFollow { name, mirror } => {
            let name = parse_name(&name)?;
            let k = ctx
                .naming
                .follow(name, uid, uid == 0 || uid == ctx.owner, mirror)
                .await
                .map_err(anyhow::Error::msg)?;
            let fresh = ctx.naming.freshness(&k);
            known_json(&k, fresh)
        }
        Request::NameUnfollow { name } => {
            let name = parse_name(&name)?;
            let admin = uid == 0 || uid == ctx.owner;
            json!(ctx
                .naming
                .unfollow(&name, uid, admin)
                .map_err(anyhow::Error::msg)?)
        }
        Request::NameFollowed => {
            let rows: Vec<Value> = ctx
                .naming
                .followed()
                .into_iter()
                .map(|(n, by, mirror)| json!({"name": n.to_string(), "uid": by, "mirror": mirror}))
                .collect();
            json!(rows)
        }
        Request::NameAccept { name } => json!(ctx
            .naming
            .accept(parse_name(&name)?)
            .await
            .map_err(anyhow::Error::msg)?),
    })
}

/// A held name as the control socket answers it.
fn known_json(k: &crate::naming::Known, fresh: crate::naming::Freshness) -> Value {
    let mut v = json!({
        "value": k.record.value,
        "sequence": k.record.sequence,
        "validity": cairn_names::time::format(k.record.validity),
        "ttl_ns": k.record.ttl,
        "record": cairn_names::record::to_base64(&k.bytes),
        "from": k.from,
        "freshness": fresh.as_str(),
    });
    if let crate::naming::Target::Releases { cid, rewritten, .. } = &k.target {
        v["list"] = json!(cid.to_string());
        v["rewritten"] = json!(rewritten);
    }
    v
}

fn parse_name(s: &str) -> Result<cairn_names::Name> {
    Ok(s.parse::<cairn_names::Name>()?)
}

struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
