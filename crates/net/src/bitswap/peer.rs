//! One connected peer's side of the engine: what we owe it (the blocks and presences it
//! asked for, and our wants and cancels for it), and the task that turns that into messages.
//!
//! The sender task sends messages through the [`Outbox`] (the connection's handler writes
//! each on a new stream and closes it): ours in order, answers several at once. Disk reads run on blocking threads; this
//! task only moves bytes. A message that could not be sent puts what it carried back, so no
//! want or cancel of ours is lost to a failed stream.

use std::{
    collections::{HashMap, VecDeque},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use bytes::Bytes;
use cairn_store::{Cid, Store};
use futures::{future::BoxFuture, stream::FuturesUnordered, FutureExt, StreamExt};
use libp2p::PeerId;
use tokio::sync::{mpsc, Notify};

use super::{
    behaviour::Outbox,
    handler::SendError,
    upload::{Class, Upload},
    wants::Key,
    wire::{self, Entry, Message, Prefix, Presence, Version, WantType},
    Event,
};

/// A want-have for a block this small is answered with the block (as kubo and Helia do).
pub const SEND_SMALL_BLOCKS: u64 = 1024;
/// Target size of an outgoing message: well under the 4 MiB limit (kubo drops larger ones).
pub const MESSAGE_TARGET: usize = 2 << 20;
/// Target size of an answer to a peer that reads many streams at once: one stream's window
/// (`crate::muxer::STREAM_WINDOW`) less room for framing, so that each answer arrives in one
/// trip and [`IN_FLIGHT_MANY`] of them move together. A larger message waits a round trip
/// for every window it spans: a 480 KiB answer took two and a half round trips at 20 ms.
const CONCURRENT_TARGET: usize = crate::muxer::STREAM_WINDOW - (16 << 10);
/// Wantlist entries in one outgoing message (receivers refuse messages of more than
/// [`wire::MAX_ITEMS`] items; a peer holds at most 1024 of our wants anyway).
pub const MAX_ENTRIES: usize = 1024;
/// Our wants and cancels kept for a peer while messages to it fail.
const MAX_CONTROL: usize = 4 * super::MAX_WANTS_PER_PEER;
/// Blocks resolved from disk in one go, per peer.
const SERVE_BATCH: usize = 32;
/// How long one send may take, from handing it over to the peer's handler to written.
const SEND_TIMEOUT: Duration = Duration::from_secs(40);
/// How long to wait before trying again after a send failed.
const RETRY_AFTER: Duration = Duration::from_millis(200);

/// Something a peer wants from us.
#[derive(Debug, Clone)]
pub struct TheirWant {
    pub cid: Cid,
    pub want_type: WantType,
    pub send_dont_have: bool,
    /// In the serve queue now, under this number.
    pub queued: Option<u64>,
}

/// Everything owed to one peer; shared by the engine (which fills it) and the peer's
/// sender task (which empties it). Bounded: `wants` by [`super::MAX_WANTS_PER_PEER`], the
/// serve queue by twice that (stale entries are dropped when it grows past), `control` by
/// the planner's limit on what one peer holds of ours.
#[derive(Default)]
pub struct PeerQueue {
    /// Our wants and cancels for this peer, latest per block, not yet sent.
    pub control: HashMap<Key, Entry>,
    /// The next message replaces whatever the peer kept of our wantlist (it connected anew).
    pub full: bool,
    /// What the peer wants from us.
    pub wants: HashMap<Key, TheirWant>,
    /// Wants to answer, in order, each with the number it was queued under: an entry
    /// cancelled (or answered) since is skipped when it comes up.
    serve: VecDeque<(Key, u64)>,
    next: u64,
    /// Our wants and cancels overflowed [`MAX_CONTROL`] while messages failed: the engine
    /// is asked to resend our whole list instead.
    overflowed: bool,
}

impl PeerQueue {
    /// Queues an answer to the peer's want for `key`, unless one is queued already.
    pub fn queue(&mut self, key: Key) {
        let Some(w) = self.wants.get_mut(&key) else {
            return;
        };
        if w.queued.is_some() {
            return;
        }
        self.next += 1;
        w.queued = Some(self.next);
        self.serve.push_back((key, self.next));
        if self.serve.len() > 2 * super::MAX_WANTS_PER_PEER {
            // Mostly stale entries (wants and cancels in a loop): drop them, in one pass.
            let wants = &self.wants;
            self.serve
                .retain(|(k, n)| wants.get(k).is_some_and(|w| w.queued == Some(*n)));
        }
    }

    /// The next want to answer, taken off the queue.
    fn pop(&mut self) -> Option<(Key, TheirWant)> {
        while let Some((k, n)) = self.serve.pop_front() {
            if let Some(w) = self.wants.get_mut(&k) {
                if w.queued == Some(n) {
                    w.queued = None;
                    return Some((k, w.clone()));
                }
            }
        }
        None
    }

    /// A want-have for `key` was answered HAVE: it ends, unless a want-block for the same
    /// block came while the answer was being made (it was queued again then, and is
    /// answered with the block: dropping it here left the peer waiting for a block that
    /// never came).
    fn answered_have(&mut self, key: &Key) {
        let upgraded = self
            .wants
            .get(key)
            .is_some_and(|w| w.queued.is_some() || w.want_type == WantType::Block);
        if !upgraded {
            self.wants.remove(key);
        }
    }

    /// Entries waiting in the serve queue, stale ones included (for tests).
    pub fn serve_len(&self) -> usize {
        self.serve.len()
    }

    /// Our wants and cancels of a message that was not sent, back in the queue (behind any
    /// newer entry for the same block). Past [`MAX_CONTROL`] entries (a peer we have not
    /// reached for a long while) the queue is given up: the engine fills it again with our
    /// whole list, in a message that replaces the peer's (no cancel is then needed).
    fn put_back(&mut self, entries: Vec<Entry>, full: bool) {
        for e in entries {
            if self.control.len() >= MAX_CONTROL {
                self.overflowed = true;
                break;
            }
            self.control.entry(*e.cid.hash()).or_insert(e);
        }
        self.full |= full;
    }
}

pub struct PeerShared {
    pub queue: Mutex<PeerQueue>,
    pub notify: Notify,
    pub closed: AtomicBool,
    /// Its class and weight under the upload limit, kept up to date by the engine.
    pub stranger: AtomicBool,
    weight: AtomicU64,
    /// It reads many inbound streams at once: answers go [`IN_FLIGHT_MANY`] rounds at a time.
    pub concurrent: AtomicBool,
}

impl PeerShared {
    pub fn new() -> Arc<PeerShared> {
        Arc::new(PeerShared {
            queue: Mutex::new(PeerQueue::default()),
            notify: Notify::new(),
            closed: AtomicBool::new(false),
            stranger: AtomicBool::new(true),
            concurrent: AtomicBool::new(false),
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

/// What answering one of the peer's wants came to.
enum Answer {
    Block(Prefix, Bytes),
    Presence(Cid, Presence),
    /// Missing, and the peer did not ask to hear so: stay in its list, silently.
    Wait,
    /// No longer wanted.
    Skip,
}

/// Our wants and cancels, in messages of at most [`MAX_ENTRIES`] entries; the first one
/// carries `full`.
fn control_messages(mut control: Vec<Entry>, full: bool) -> Vec<Message> {
    let mut msgs = Vec::new();
    while !control.is_empty() || (full && msgs.is_empty()) {
        let rest = control.split_off(control.len().min(MAX_ENTRIES));
        msgs.push(Message {
            full: full && msgs.is_empty(),
            wants: std::mem::replace(&mut control, rest),
            ..Default::default()
        });
    }
    msgs
}

/// The sender task of one peer: runs until the engine closes it. Blocks read for serving
/// take room from `serving` (KiB) until they are sent, and one round reads blocks only up to
/// the message target, so what waits in memory to be served is bounded for all peers.
///
/// Our wants and cancels go out in order, one message at a time: a cancel overtaken by the
/// want that follows it would take that want away at the peer. Answers (blocks, presences)
/// do not depend on one another and go out [`IN_FLIGHT`] at a time, each on its own stream,
/// while the next round is read from disk.
pub async fn send_loop(
    peer: PeerId,
    shared: Arc<PeerShared>,
    outbox: Outbox,
    store: Arc<Store>,
    limit: Option<Arc<Upload>>,
    serving: Arc<tokio::sync::Semaphore>,
    events: mpsc::Sender<Event>,
) {
    let version: Arc<Mutex<Option<Version>>> = Arc::default();
    // Under a limit, messages are small enough that whoever weighs most goes next soon.
    let most_target = limit
        .as_ref()
        .map_or(MESSAGE_TARGET, |l| l.message_target());
    let sender = Sender {
        peer,
        shared: shared.clone(),
        outbox,
        limit,
        events,
        version: version.clone(),
    };
    let mut in_flight: FuturesUnordered<BoxFuture<'static, bool>> = FuturesUnordered::new();
    loop {
        // Answers written since: a failure puts what it carried back and pauses a moment.
        let mut failed = false;
        while let Some(Some(ok)) = in_flight.next().now_or_never() {
            failed |= !ok;
        }
        if failed && !sender.failed().await {
            return;
        }
        let notified = shared.notify.notified();
        if shared.closed.load(Ordering::Relaxed) {
            return;
        }
        let (most, target) = if shared.concurrent.load(Ordering::Relaxed) {
            (IN_FLIGHT_MANY, most_target.min(CONCURRENT_TARGET))
        } else {
            (IN_FLIGHT, most_target)
        };
        let full_pipe = in_flight.len() >= most;
        let (control, full, serve) = {
            let mut q = shared.lock();
            let control: Vec<Entry> = q.control.drain().map(|(_, e)| e).collect();
            let full = std::mem::take(&mut q.full);
            let mut serve = Vec::new();
            while serve.len() < SERVE_BATCH && !full_pipe {
                let Some(w) = q.pop() else { break };
                serve.push(w);
            }
            (control, full, serve)
        };
        if control.is_empty() && !full && serve.is_empty() {
            // Wait for work, or for an answer to finish writing (room for the next).
            tokio::select! {
                _ = notified => {}
                Some(ok) = in_flight.next(), if !in_flight.is_empty() => {
                    if !ok && !sender.failed().await {
                        return;
                    }
                }
            }
            continue;
        }
        let mut ours = control_messages(control, full).into_iter();
        while let Some(msg) = ours.next() {
            if !sender.send(msg, Vec::new()).await {
                // What was not sent goes back, in order, behind what failed.
                for rest in ours.by_ref() {
                    put_back(&shared, rest, Vec::new());
                }
                if !sender.failed().await {
                    return;
                }
                break;
            }
        }
        if serve.is_empty() {
            continue;
        }
        // Room for a round's blocks: at most the target plus the last block read when a
        // want-block is among them, else only blocks small enough to answer a want-have.
        let most = if serve.iter().any(|(_, w)| w.want_type == WantType::Block) {
            target + wire::MAX_BLOCK
        } else {
            SERVE_BATCH * SEND_SMALL_BLOCKS as usize
        };
        let units = (most >> 10).max(1) as u32;
        let Ok(room) = serving.clone().acquire_many_owned(units).await else {
            return;
        };
        let (answers, unread) = {
            let store = store.clone();
            tokio::task::spawn_blocking(move || {
                let mut bytes = 0;
                let mut answers = Vec::new();
                let mut unread = Vec::new();
                for (k, w) in serve {
                    if bytes >= target {
                        unread.push(k);
                        continue;
                    }
                    let a = answer(&store, &w);
                    if let Answer::Block(_, data) = &a {
                        bytes += data.len();
                    }
                    answers.push((k, a, w));
                }
                (answers, unread)
            })
            .await
            .unwrap_or_default()
        };
        let v100 = *version.lock().expect("version") == Some(Version::V100);
        let mut msgs = vec![Message::default()];
        // What each message answered, to put back in the peer's list if it is not sent.
        let mut answered: Vec<Vec<(Key, TheirWant)>> = vec![Vec::new()];
        {
            let mut q = shared.lock();
            for k in unread {
                q.queue(k);
            }
            for (k, a, w) in answers {
                match a {
                    // Bitswap 1.0.0 has no prefixes: its blocks are CIDv0 by definition.
                    Answer::Block(prefix, _) if v100 && prefix != Prefix::v0() => {
                        q.wants.remove(&k);
                    }
                    Answer::Block(prefix, data) => {
                        q.wants.remove(&k);
                        let last = msgs.last_mut().expect("one message at least");
                        if !last.blocks.is_empty() && last.size_hint() + data.len() > target {
                            msgs.push(Message::default());
                            answered.push(Vec::new());
                        }
                        msgs.last_mut().expect("pushed").blocks.push((prefix, data));
                        answered.last_mut().expect("pushed").push((k, w));
                    }
                    Answer::Presence(cid, p) => {
                        if p == Presence::Have {
                            q.answered_have(&k);
                            answered.last_mut().expect("one").push((k, w));
                        }
                        msgs.last_mut().expect("one").presences.push((cid, p));
                    }
                    Answer::Wait => {}
                    Answer::Skip => {
                        q.wants.remove(&k);
                    }
                }
            }
        }
        // The round's room is given back when the last of its messages is written.
        // A round's messages go one after another, on a task of their own (so that an answer
        // holding its turn under the upload limit never waits for this loop); its room is
        // given back when the last is written. After a failure the rest go back unsent.
        let round: Vec<_> = msgs
            .into_iter()
            .zip(answered)
            .filter(|(m, _)| !m.is_empty())
            .collect();
        if round.is_empty() {
            continue;
        }
        let sender = sender.clone();
        in_flight.push(
            tokio::spawn(async move {
                let mut ok = true;
                for (msg, answered) in round {
                    if ok {
                        ok = sender.send(msg, answered).await;
                    } else {
                        put_back(&sender.shared, msg, answered);
                    }
                }
                drop(room);
                ok
            })
            .map(|r| r.unwrap_or(false))
            .boxed(),
        );
    }
}

/// Rounds of answers being written to one peer at once (a round's messages go one after
/// another, each on a stream of its own).
///
/// One: a stream moves at most its 256 KiB window per round trip (see `crate::muxer`), so
/// a peer 20 ms away is served at about 12 MB/s, and 8 at once measured twice that on
/// `bench/firstrun.py`. But a peer may take only one inbound stream at a time and drop the
/// rest after negotiating them (libp2p-stream's receivers do; the test suite's raw peer lost
/// DONT_HAVEs that way), and a message dropped there is lost without an error here: the
/// peer then waits for what it asked. So peers get one round at a time until they show
/// they read streams concurrently ([`IN_FLIGHT_MANY`]).
const IN_FLIGHT: usize = 1;
/// Rounds in flight to a peer known to read many streams at once: a cairn node (it speaks
/// `/cairn/history/1.0.0`; its handler reads 16 streams of a connection at once), kubo and
/// Helia (go-libp2p and js-libp2p serve each stream on its own), told by identify. A peer
/// that claims to be one of them and is not only loses its own answers.
const IN_FLIGHT_MANY: usize = 8;

/// What sending to one peer needs, shared by the messages in flight.
#[derive(Clone)]
struct Sender {
    peer: PeerId,
    shared: Arc<PeerShared>,
    outbox: Outbox,
    limit: Option<Arc<Upload>>,
    events: mpsc::Sender<Event>,
    /// The Bitswap version the peer speaks, once a message reached it.
    version: Arc<Mutex<Option<Version>>>,
}

impl Sender {
    /// Sends one message (under the upload limit); false if it failed, after putting what
    /// it carried back. A peer the engine let go gets nothing more.
    async fn send(&self, msg: Message, answered: Vec<(Key, TheirWant)>) -> bool {
        if self.shared.closed.load(Ordering::Relaxed) {
            return true;
        }
        let blocks = msg.blocks.len() as u64;
        let bytes: usize = msg.blocks.iter().map(|(_, d)| d.len()).sum();
        if let (Some(limit), true) = (&self.limit, bytes > 0) {
            if self.shared.stranger.load(Ordering::Relaxed) {
                limit
                    .take(Class::Strangers, limit.stranger_weight(), bytes)
                    .await;
            } else {
                limit
                    .take(Class::Peer(self.peer), self.shared.weight(), bytes)
                    .await;
            }
        }
        let keep = self.shared.concurrent.load(Ordering::Relaxed);
        match self
            .outbox
            .send(self.peer, msg.clone(), SEND_TIMEOUT, keep)
            .await
        {
            Ok(v) => {
                *self.version.lock().expect("version") = Some(v);
                if blocks > 0 {
                    let _ = self
                        .events
                        .send(Event::Sent {
                            peer: self.peer,
                            blocks,
                            bytes: bytes as u64,
                        })
                        .await;
                }
                true
            }
            Err(SendError::Unsupported) => {
                let _ = self.events.send(Event::NotBitswap(self.peer)).await;
                self.shared.closed.store(true, Ordering::Relaxed);
                true
            }
            Err(e) => {
                log::debug!("bitswap: sending to {}: {e}", self.peer);
                put_back(&self.shared, msg, answered);
                false
            }
        }
    }

    /// After a failed send: a resync if our list overflowed meanwhile, then a pause (a
    /// connection closing, a busy handler; a peer that is gone is closed by the engine
    /// meanwhile). False if the task should stop.
    async fn failed(&self) -> bool {
        if std::mem::take(&mut self.shared.lock().overflowed) {
            let _ = self.events.send(Event::Resync(self.peer)).await;
        }
        tokio::time::sleep(RETRY_AFTER).await;
        !self.shared.closed.load(Ordering::Relaxed)
    }
}

/// A message that was not sent: its wants and cancels go back in the queue, and the wants of
/// the peer it answered are answered again.
fn put_back(shared: &PeerShared, msg: Message, answered: Vec<(Key, TheirWant)>) {
    let mut q = shared.lock();
    q.put_back(msg.wants, msg.full);
    for (k, w) in answered {
        if q.wants.len() < super::MAX_WANTS_PER_PEER || q.wants.contains_key(&k) {
            q.wants.entry(k).or_insert(TheirWant { queued: None, ..w });
            q.queue(k);
        }
    }
}

/// Answers one of the peer's wants from the store (on a blocking thread).
///
/// A block is sent as it is on disk, not hashed again first: every Bitswap peer hashes what
/// it receives (cairn in `accept`, kubo and Helia likewise), and hashing here too cost a
/// fifth of the rate at which kubo downloads from cairn (0.80-0.85x kubo from kubo with it,
/// 1.06-1.25x without, `bench/net.py`, BENCHMARKS.md). Block files are written once, after
/// their bytes were hashed, and never changed; what damages one on disk is found by every
/// local read (the mount and `cat` verify) and by `cairn verify`, and a peer sent such a
/// block refuses it and asks someone else.
fn answer(store: &Store, e: &TheirWant) -> Answer {
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
    match store.blocks().get_unverified(&e.cid) {
        Ok(Some(data)) => Answer::Block(Prefix::of(&e.cid), data),
        Ok(None) => missing(),
        Err(err) => {
            log::warn!("bitswap: reading {}: {err}", e.cid);
            missing()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_store::HashAlg;

    fn cid(n: u32) -> Cid {
        Cid::new_v1(0x55, HashAlg::Sha2_256.digest(&n.to_le_bytes()))
    }

    /// 3,000 wants and cancels go out in messages of at most MAX_ENTRIES entries, each well
    /// under 4 MiB and decodable by a peer's strict decoder; only the first replaces the
    /// peer's list.
    #[test]
    fn control_is_split_into_messages_peers_accept() {
        let entries: Vec<Entry> = (0..3000)
            .map(|n| {
                if n % 3 == 0 {
                    Entry::cancel(cid(n))
                } else {
                    Entry::want(cid(n), WantType::Have, true)
                }
            })
            .collect();
        let msgs = control_messages(entries, true);
        assert_eq!(msgs.len(), 3);
        assert!(msgs[0].full && !msgs[1].full && !msgs[2].full);
        let mut total = 0;
        for m in &msgs {
            let bytes = m.encode(Version::V120);
            assert!(bytes.len() < wire::MAX_MESSAGE);
            let back = Message::decode(&Bytes::from(bytes)).expect("decodes");
            assert!(back.wants.len() <= MAX_ENTRIES);
            total += back.wants.len();
        }
        assert_eq!(total, 3000);
        let only_full = control_messages(Vec::new(), true);
        assert_eq!(only_full.len(), 1);
        assert!(only_full[0].full && only_full[0].wants.is_empty());
        assert!(control_messages(Vec::new(), false).is_empty());
    }

    /// A peer that wants and cancels the same blocks over and over leaves the serve queue
    /// no longer than twice its limit, and each want still queued is answered once.
    #[test]
    fn wants_and_cancels_in_a_loop_keep_the_serve_queue_bounded() {
        let mut q = PeerQueue::default();
        for round in 0..100u32 {
            for n in 0..1000 {
                let c = cid(n);
                q.wants.insert(
                    *c.hash(),
                    TheirWant {
                        cid: c,
                        want_type: WantType::Block,
                        send_dont_have: false,
                        queued: None,
                    },
                );
                q.queue(*c.hash());
                if round < 99 {
                    q.wants.remove(c.hash());
                }
            }
            assert!(q.serve_len() <= 2 * super::super::MAX_WANTS_PER_PEER + 1);
        }
        let mut answered = std::collections::HashSet::new();
        while let Some((k, _)) = q.pop() {
            assert!(answered.insert(k), "answered twice");
        }
        assert_eq!(answered.len(), 1000);
    }

    /// The wants and cancels of a message that was not sent go back in the queue, behind any
    /// newer entry for the same block, and the next message still replaces the peer's list.
    #[test]
    fn a_want_block_during_a_have_is_answered() {
        let mut q = PeerQueue::default();
        let c = cid(7);
        let k = *c.hash();
        let want = |want_type| TheirWant {
            cid: c,
            want_type,
            send_dont_have: true,
            queued: None,
        };
        q.wants.insert(k, want(WantType::Have));
        q.queue(k);
        // The sender takes the want-have; a want-block for it arrives (as the engine
        // records it) while the HAVE is being made.
        let (_, taken) = q.pop().unwrap();
        assert_eq!(taken.want_type, WantType::Have);
        q.wants.get_mut(&k).unwrap().want_type = WantType::Block;
        q.queue(k);
        q.answered_have(&k);
        let (_, next) = q.pop().expect("the want-block is still to be answered");
        assert_eq!(next.want_type, WantType::Block);
        // A plain want-have ends with its HAVE.
        let mut q = PeerQueue::default();
        q.wants.insert(k, want(WantType::Have));
        q.queue(k);
        q.pop().unwrap();
        q.answered_have(&k);
        assert!(q.wants.is_empty() && q.pop().is_none());
    }

    #[test]
    fn a_failed_message_puts_its_wants_back() {
        let mut q = PeerQueue::default();
        q.control.insert(*cid(2).hash(), Entry::cancel(cid(2)));
        q.put_back(
            vec![
                Entry::want(cid(1), WantType::Have, true),
                Entry::want(cid(2), WantType::Block, true),
            ],
            true,
        );
        assert!(q.full);
        assert_eq!(q.control.len(), 2);
        assert!(q.control[cid(1).hash()].want_type == WantType::Have);
        assert!(q.control[cid(2).hash()].cancel, "the newer cancel stays");
    }
}
