//! The upload limit, shared by every peer's sender, and the order in which waiting senders
//! go: weighted fair queueing, each peer weighted by its generosity (see
//! [`crate::incentives`]), every stranger in one shared class.
//!
//! Bytes are metered by a token bucket ([`Upload::take`] may overdraw it; the next sender
//! then waits until the debt is paid). While nobody waits, a sender goes at once: with spare
//! capacity everyone is served, whatever its weight. When senders wait (contention), the
//! one with the smallest virtual finish tag goes next (self-clocked fair queueing, Golestani
//! 1994): a class's tag advances by `bytes / weight` per message, so backlogged classes share
//! the upload in proportion to their weights and an idle class banks nothing. Strangers all
//! share [`Class::Strangers`], so a thousand fresh identities get what one would.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use libp2p::PeerId;
use tokio::sync::Notify;

/// Who a sender sends for, as the scheduler sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    Peer(PeerId),
    /// Every peer with no history with us, as one.
    Strangers,
}

struct Pending {
    seq: u64,
    tag: f64,
    bytes: usize,
    /// Woken when it becomes the first in line.
    wake: Arc<Notify>,
}

struct State {
    tokens: f64,
    at: Instant,
    /// The tag of the message sent last: the scheduler's virtual time.
    vtime: f64,
    /// Each class's last tag.
    finish: HashMap<Class, f64>,
    waiting: Vec<Pending>,
    seq: u64,
}

/// The upload limit and its queue.
pub struct Upload {
    rate: f64,
    state: Mutex<State>,
    /// The strangers' class weight, kept up to date by the engine (`f64` bits).
    strangers: AtomicU64,
}

impl Upload {
    pub fn new(bytes_per_sec: u64) -> Upload {
        Upload {
            rate: bytes_per_sec.max(1) as f64,
            state: Mutex::new(State {
                tokens: 0.0,
                at: Instant::now(),
                vtime: 0.0,
                finish: HashMap::new(),
                waiting: Vec::new(),
                seq: 0,
            }),
            strangers: AtomicU64::new(1f64.to_bits()),
        }
    }

    /// How big an outgoing message may be under this limit: a quarter second of upload,
    /// between 256 KiB and [`super::peer::MESSAGE_TARGET`]. One message is what the
    /// scheduler cannot take back once it is sent.
    pub fn message_target(&self) -> usize {
        ((self.rate / 4.0) as usize).clamp(256 << 10, super::peer::MESSAGE_TARGET)
    }

    pub fn set_stranger_weight(&self, w: f64) {
        self.strangers.store(w.to_bits(), Ordering::Relaxed);
    }

    pub fn stranger_weight(&self) -> f64 {
        f64::from_bits(self.strangers.load(Ordering::Relaxed))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until `bytes` may be sent for `class`, whose weight is `weight` (> 0). A burst
    /// of up to a quarter second of upload is allowed. Only the first in line waits on the
    /// clock; the others sleep until it hands the line on, so a message costs one wake-up.
    pub async fn take(&self, class: Class, weight: f64, bytes: usize) {
        let weight = if weight.is_finite() && weight > 0.0 {
            weight
        } else {
            1e-3
        };
        let wake = Arc::new(Notify::new());
        let seq = {
            let mut s = self.lock();
            self.refill(&mut s);
            let start = s.finish.get(&class).copied().unwrap_or(0.0).max(s.vtime);
            let tag = start + bytes as f64 / weight;
            s.finish.insert(class, tag);
            if s.finish.len() > 4096 {
                // A class whose last tag is behind the virtual time starts afresh anyway.
                let v = s.vtime;
                s.finish.retain(|_, t| *t > v);
            }
            if s.waiting.is_empty() && s.tokens >= 0.0 {
                s.tokens -= bytes as f64;
                s.vtime = tag;
                return;
            }
            s.seq += 1;
            let seq = s.seq;
            s.waiting.push(Pending {
                seq,
                tag,
                bytes,
                wake: wake.clone(),
            });
            seq
        };
        // Taken out of the queue if the sender gives up (its peer went away).
        let mut guard = Queued {
            upload: self,
            seq,
            done: false,
        };
        loop {
            let debt = {
                let mut s = self.lock();
                self.refill(&mut s);
                match first(&s.waiting) {
                    Some(i) if s.waiting[i].seq == seq => {
                        if s.tokens >= 0.0 {
                            let p = s.waiting.swap_remove(i);
                            s.tokens -= p.bytes as f64;
                            s.vtime = s.vtime.max(p.tag);
                            guard.done = true;
                            if let Some(next) = first(&s.waiting) {
                                s.waiting[next].wake.notify_one();
                            }
                            return;
                        }
                        Some(Duration::from_secs_f64(-s.tokens / self.rate))
                    }
                    _ => None,
                }
            };
            match debt {
                // First in line: wait for the debt to be paid, or for a newcomer that goes
                // before us (it wakes nobody; we find out when the clock runs out).
                Some(d) => tokio::time::sleep(d).await,
                None => wake.notified().await,
            }
        }
    }

    fn refill(&self, s: &mut State) {
        let now = Instant::now();
        let burst = self.rate / 4.0;
        s.tokens = (s.tokens + now.duration_since(s.at).as_secs_f64() * self.rate).min(burst);
        s.at = now;
    }
}

/// A place in the queue, given back if its sender stops waiting.
struct Queued<'a> {
    upload: &'a Upload,
    seq: u64,
    done: bool,
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        if !self.done {
            let mut s = self.upload.lock();
            s.waiting.retain(|p| p.seq != self.seq);
            if let Some(next) = first(&s.waiting) {
                s.waiting[next].wake.notify_one();
            }
        }
    }
}

/// The index of the first in line: the smallest tag, then the oldest.
fn first(waiting: &[Pending]) -> Option<usize> {
    waiting
        .iter()
        .enumerate()
        .min_by(|(_, a), (_, b)| a.tag.total_cmp(&b.tag).then(a.seq.cmp(&b.seq)))
        .map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two classes that keep the queue full share the upload in proportion to their weights.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn backlogged_classes_share_by_weight() {
        let up = Arc::new(Upload::new(4 << 20));
        let (heavy, light) = (Class::Peer(PeerId::random()), Class::Strangers);
        let sent = Arc::new(Mutex::new(Vec::new()));
        let run = |class: Class, weight: f64, n: usize| {
            let (up, sent) = (up.clone(), sent.clone());
            tokio::spawn(async move {
                for _ in 0..n {
                    up.take(class, weight, 64 << 10).await;
                    sent.lock().unwrap().push(class);
                }
            })
        };
        let a = run(heavy, 4.0, 40);
        let b = run(light, 1.0, 40);
        a.await.unwrap();
        let light_share = sent.lock().unwrap().iter().filter(|c| **c == light).count();
        b.await.unwrap();
        // While both waited, the light class got about a fifth of the messages.
        assert!(
            (5..=16).contains(&light_share),
            "light class sent {light_share} of its 40 while the heavy one sent 40"
        );
    }
}
