//! One connected peer's side of the engine: the queue of what we owe it (our wants and
//! cancels, and the blocks and presences it asked for), the task that turns that queue into
//! messages, and the tasks that read what it sends.
//!
//! Every outgoing message goes on a new stream, closed once written (Helia drops inbound
//! streams idle for 10 s; kubo reads each to its end). Every inbound stream is read until the
//! peer closes it, after our side of it is closed at once (Helia frees a stream only when
//! both sides are closed). Disk reads and hashing run on blocking threads; this task only
//! moves bytes.

use std::{
    collections::{HashMap, VecDeque},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use bytes::Bytes;
use cairn_store::{Cid, Store, StoreError};
use futures::{AsyncReadExt, AsyncWriteExt};
use libp2p::{PeerId, Stream};
use tokio::sync::{mpsc, Notify};

use super::{
    behaviour::Opener,
    handler::{Inbound, OpenError},
    upload::{Class, Upload},
    wants::Key,
    wire::{self, Entry, Message, Prefix, Presence, Version, WantType, WireError},
    Event,
};
use crate::ledger::Offence;

/// A want-have for a block this small is answered with the block (as kubo and Helia do).
pub const SEND_SMALL_BLOCKS: u64 = 1024;
/// Target size of an outgoing message: well under the 4 MiB limit (kubo drops larger ones).
pub const MESSAGE_TARGET: usize = 2 << 20;
/// Blocks resolved from disk in one go, per peer.
const SERVE_BATCH: usize = 32;
/// How long an open, a write or a peer's close may take.
const SEND_TIMEOUT: Duration = Duration::from_secs(30);
/// An inbound stream silent this long is dropped (kubo keeps its want stream open and
/// reopens it when needed).
const INBOUND_IDLE: Duration = Duration::from_secs(120);
/// How long one message may take to arrive once its first byte has.
const FRAME_TIME: Duration = Duration::from_secs(20);

/// What a peer wants from us.
#[derive(Debug, Clone)]
pub struct LedgerEntry {
    pub cid: Cid,
    pub want_type: WantType,
    pub send_dont_have: bool,
    /// In the serve queue now.
    pub queued: bool,
}

/// Everything owed to one peer; shared by the engine (which fills it) and the peer's
/// sender task (which empties it). Bounded: the ledger by [`super::MAX_WANTS_PER_PEER`], the
/// serve queue by the ledger, our wants by the engine's want limit.
#[derive(Default)]
pub struct PeerQueue {
    /// Our wants and cancels for this peer, latest per block.
    pub control: HashMap<Key, Entry>,
    /// What the peer wants from us.
    pub ledger: HashMap<Key, LedgerEntry>,
    /// Ledger entries to answer, in order.
    pub serve: VecDeque<Key>,
}

pub struct PeerShared {
    pub queue: Mutex<PeerQueue>,
    pub notify: Notify,
    pub closed: AtomicBool,
    /// Its class and weight under the upload limit, kept up to date by the engine.
    pub stranger: AtomicBool,
    weight: AtomicU64,
}

impl PeerShared {
    pub fn new() -> Arc<PeerShared> {
        Arc::new(PeerShared {
            queue: Mutex::new(PeerQueue::default()),
            notify: Notify::new(),
            closed: AtomicBool::new(false),
            stranger: AtomicBool::new(true),
            weight: AtomicU64::new(1f64.to_bits()),
        })
    }

    pub fn set_weight(&self, w: f64) {
        self.weight.store(w.to_bits(), Ordering::Relaxed);
    }

    pub fn weight(&self) -> f64 {
        f64::from_bits(self.weight.load(Ordering::Relaxed))
    }

    pub fn lock(&self) -> std::sync::MutexGuard<'_, PeerQueue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What answering one ledger entry came to.
enum Answer {
    Block(Prefix, Bytes),
    Presence(Cid, Presence),
    /// Missing, and the peer did not ask to hear so: stay in the ledger, silently.
    Wait,
    /// No longer wanted.
    Skip,
}

/// The sender task of one peer: runs until the peer disconnects.
pub async fn send_loop(
    peer: PeerId,
    shared: Arc<PeerShared>,
    opener: Opener,
    store: Arc<Store>,
    limit: Option<Arc<Upload>>,
    events: mpsc::Sender<Event>,
) {
    let mut version: Option<Version> = None;
    // Under a limit, messages are small enough that whoever weighs most goes next soon.
    let target = limit
        .as_ref()
        .map_or(MESSAGE_TARGET, |l| l.message_target());
    loop {
        let notified = shared.notify.notified();
        if shared.closed.load(Ordering::Relaxed) {
            return;
        }
        let (control, serve) = {
            let mut q = shared.lock();
            let control: Vec<Entry> = q.control.drain().map(|(_, e)| e).collect();
            let mut serve = Vec::new();
            while serve.len() < SERVE_BATCH {
                let Some(k) = q.serve.pop_front() else { break };
                if let Some(e) = q.ledger.get_mut(&k) {
                    e.queued = false;
                    serve.push((k, e.clone()));
                }
            }
            (control, serve)
        };
        if control.is_empty() && serve.is_empty() {
            notified.await;
            continue;
        }
        let answers = if serve.is_empty() {
            Vec::new()
        } else {
            let store = store.clone();
            tokio::task::spawn_blocking(move || {
                serve
                    .into_iter()
                    .map(|(k, e)| (k, answer(&store, &e)))
                    .collect::<Vec<_>>()
            })
            .await
            .unwrap_or_default()
        };
        let mut msgs = vec![Message {
            wants: control,
            ..Default::default()
        }];
        {
            let mut q = shared.lock();
            for (k, a) in answers {
                match a {
                    // Bitswap 1.0.0 has no prefixes: its blocks are CIDv0 by definition.
                    Answer::Block(prefix, _)
                        if version == Some(Version::V100) && prefix != Prefix::v0() =>
                    {
                        q.ledger.remove(&k);
                    }
                    Answer::Block(prefix, data) => {
                        q.ledger.remove(&k);
                        let last = msgs.last_mut().expect("one message at least");
                        if !last.blocks.is_empty() && last.size_hint() + data.len() > target {
                            msgs.push(Message::default());
                        }
                        msgs.last_mut().expect("pushed").blocks.push((prefix, data));
                    }
                    Answer::Presence(cid, p) => {
                        if p == Presence::Have {
                            q.ledger.remove(&k);
                        }
                        msgs.last_mut().expect("one").presences.push((cid, p));
                    }
                    Answer::Wait => {}
                    Answer::Skip => {
                        q.ledger.remove(&k);
                    }
                }
            }
        }
        for msg in msgs.into_iter().filter(|m| !m.is_empty()) {
            let blocks = msg.blocks.len() as u64;
            let bytes: usize = msg.blocks.iter().map(|(_, d)| d.len()).sum();
            if let (Some(limit), true) = (&limit, bytes > 0) {
                if shared.stranger.load(Ordering::Relaxed) {
                    limit
                        .take(Class::Strangers, limit.stranger_weight(), bytes)
                        .await;
                } else {
                    limit.take(Class::Peer(peer), shared.weight(), bytes).await;
                }
            }
            match send(&opener, peer, &mut version, &msg).await {
                Ok(()) => {
                    if blocks > 0 {
                        let _ = events
                            .send(Event::Sent {
                                peer,
                                blocks,
                                bytes: bytes as u64,
                            })
                            .await;
                    }
                }
                Err(OpenError::Unsupported) => {
                    let _ = events.send(Event::NotBitswap(peer)).await;
                    return;
                }
                Err(e) => {
                    log::debug!("bitswap: sending to {peer}: {e}");
                    if matches!(e, OpenError::NotConnected) {
                        // Gone (a late message may have brought it back to the engine).
                        let _ = events.send(Event::Disconnected(peer)).await;
                        return;
                    }
                }
            }
        }
    }
}

/// Answers one ledger entry from the store (on a blocking thread).
fn answer(store: &Store, e: &LedgerEntry) -> Answer {
    let size = match store.blocks().size(&e.cid) {
        Ok(s) => s,
        Err(err) => {
            log::warn!("bitswap: {}: {err}", e.cid);
            None
        }
    };
    let missing = || {
        if e.send_dont_have {
            Answer::Presence(e.cid, Presence::DontHave)
        } else {
            Answer::Wait
        }
    };
    let Some(size) = size else { return missing() };
    if size > wire::MAX_BLOCK as u64 {
        return Answer::Skip;
    }
    if e.want_type == WantType::Have && size > SEND_SMALL_BLOCKS {
        return Answer::Presence(e.cid, Presence::Have);
    }
    match store.get(&e.cid) {
        Ok(Some(data)) => Answer::Block(Prefix::of(&e.cid), data),
        Ok(None) => missing(),
        Err(StoreError::Corrupt { cid }) => {
            log::warn!("bitswap: block {cid} is corrupt on disk; moving it aside");
            let _ = store.blocks().quarantine(&cid);
            missing()
        }
        Err(err) => {
            log::warn!("bitswap: reading {}: {err}", e.cid);
            missing()
        }
    }
}

/// Sends one message on a new stream, closed once written.
async fn send(
    opener: &Opener,
    peer: PeerId,
    version: &mut Option<Version>,
    msg: &Message,
) -> Result<(), OpenError> {
    let (mut stream, v) = opener.open(peer, SEND_TIMEOUT).await?;
    *version = Some(v);
    let bytes = msg.encode(v);
    let write = async {
        wire::write_frame(&mut stream, &bytes).await?;
        stream.close().await
    };
    tokio::time::timeout(SEND_TIMEOUT, write)
        .await
        .map_err(|_| OpenError::Timeout)??;
    // Dropped once the peer has closed its side too (or after a while): dropping a stream
    // the peer has not finished with would reset it.
    tokio::spawn(async move {
        let mut sink = [0u8; 64];
        let _ = tokio::time::timeout(SEND_TIMEOUT, async {
            while let Ok(n) = stream.read(&mut sink).await {
                if n == 0 {
                    break;
                }
            }
        })
        .await;
    });
    Ok(())
}

/// A message as the engine sees it: blocks already hashed (on a blocking thread).
pub struct Received {
    pub full: bool,
    pub wants: Vec<Entry>,
    pub presences: Vec<(Cid, Presence)>,
    /// Each block with the CID its bytes give under its prefix, or why they give none.
    pub blocks: Vec<(Result<Cid, WireError>, Bytes)>,
}

/// Reads one inbound stream to its end, handing each message to the engine.
pub async fn read_loop(inbound: Inbound, events: mpsc::Sender<Event>) {
    let Inbound { peer, stream, .. } = inbound;
    let mut stream: Stream = stream;
    // Our side of an inbound stream carries nothing: close it now.
    let _ = stream.close().await;
    let mut r = futures::io::BufReader::with_capacity(16 << 10, stream);
    let mut buf = Vec::new();
    loop {
        // Waiting for a message may take long (kubo keeps its want stream open); once one
        // has begun, it must arrive within FRAME_TIME.
        match tokio::time::timeout(INBOUND_IDLE, futures::AsyncBufReadExt::fill_buf(&mut r)).await {
            Ok(Ok([])) | Err(_) => return,
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                log::debug!("bitswap: stream from {peer}: {e}");
                return;
            }
        }
        let frame = tokio::time::timeout(FRAME_TIME, wire::read_frame(&mut r, &mut buf)).await;
        let bytes = match frame {
            Ok(Ok(true)) => Bytes::from(std::mem::take(&mut buf)),
            Ok(Ok(false)) => return,
            Err(_) => {
                log::debug!("bitswap: {peer} stalled in the middle of a message");
                let _ = events.send(Event::Offence(peer, Offence::Stalled)).await;
                return;
            }
            Ok(Err(WireError::Io(e))) => {
                log::debug!("bitswap: stream from {peer}: {e}");
                return;
            }
            Ok(Err(e)) => {
                log::debug!("bitswap: from {peer}: {e}");
                let _ = events.send(Event::Offence(peer, Offence::Malformed)).await;
                return;
            }
        };
        let msg = match Message::decode(&bytes) {
            Ok(m) => m,
            Err(e) => {
                log::debug!("bitswap: from {peer}: {e}");
                let _ = events.send(Event::Offence(peer, Offence::Malformed)).await;
                return;
            }
        };
        let blocks = if msg.blocks.is_empty() {
            Vec::new()
        } else {
            let raw = msg.blocks;
            tokio::task::spawn_blocking(move || {
                raw.into_iter()
                    .map(|(prefix, data)| (prefix.cid(&data), data))
                    .collect()
            })
            .await
            .unwrap_or_default()
        };
        let received = Received {
            full: msg.full,
            wants: msg.wants,
            presences: msg.presences,
            blocks,
        };
        if events.send(Event::Inbound(peer, received)).await.is_err() {
            return;
        }
    }
}
