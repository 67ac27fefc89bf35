//! What each peer did: bytes and blocks each way, and offences (blocks we did not want,
//! blocks that are not what their prefix says, malformed messages). The incentives issue
//! grows this into scores; for now it decides one thing: a peer whose offences outweigh a
//! threshold within a short window is disconnected and refused for a while.
//!
//! Offences decay (one point per [`DECAY`]), so a burst of duplicates from an honest peer
//! after a cancel crossed it on the wire costs nothing lasting, while a peer that keeps
//! sending garbage reaches [`DISCONNECT_AT`] within seconds.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use libp2p::PeerId;
use serde::Serialize;

/// Points of offence at which a peer is disconnected and refused for [`BAN`].
pub const DISCONNECT_AT: f64 = 50.0;
/// One point of offence is forgiven per this long.
pub const DECAY: Duration = Duration::from_millis(500);
/// How long a disconnected offender is refused.
pub const BAN: Duration = Duration::from_secs(600);

/// Something a peer did wrong, and what it costs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offence {
    /// A block we never asked for (or stopped asking for long ago).
    Unwanted,
    /// A block whose bytes do not give a CID we can check (unsupported hash, bad prefix).
    BadBlock,
    /// A message that does not decode, or breaks a limit.
    Malformed,
    /// More wants than a peer may have with us.
    TooManyWants,
    /// Messages faster than any honest peer sends them.
    Flood,
    /// A message begun and not finished in time (holding our buffers).
    Stalled,
}

impl Offence {
    pub fn points(self) -> f64 {
        match self {
            Offence::Unwanted => 1.0,
            // Extra wants are dropped, as kubo drops them; only a stream of such messages
            // adds up.
            Offence::TooManyWants => 0.2,
            Offence::BadBlock => 10.0,
            Offence::Malformed => 30.0,
            Offence::Flood => 10.0,
            Offence::Stalled => 10.0,
        }
    }
}

/// Counters for one peer.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PeerStats {
    pub blocks_received: u64,
    pub bytes_received: u64,
    pub blocks_sent: u64,
    pub bytes_sent: u64,
    pub duplicate_blocks: u64,
    pub unwanted_blocks: u64,
    pub bad_blocks: u64,
    pub malformed_messages: u64,
    pub dont_haves: u64,
    /// Current offence points (decayed).
    pub offence: f64,
    #[serde(skip)]
    offence_at: Option<Instant>,
}

impl PeerStats {
    /// Adds an offence; returns the decayed total.
    pub fn offend(&mut self, o: Offence, now: Instant) -> f64 {
        self.decay(now);
        self.offence += o.points();
        match o {
            Offence::Unwanted => self.unwanted_blocks += 1,
            Offence::BadBlock => self.bad_blocks += 1,
            Offence::Malformed | Offence::TooManyWants | Offence::Flood | Offence::Stalled => {
                self.malformed_messages += 1
            }
        }
        self.offence
    }

    fn decay(&mut self, now: Instant) {
        if let Some(at) = self.offence_at {
            let forgiven = now.duration_since(at).as_secs_f64() / DECAY.as_secs_f64();
            self.offence = (self.offence - forgiven).max(0.0);
        }
        self.offence_at = Some(now);
    }
}

/// Every peer's counters, and the totals.
#[derive(Debug, Default)]
pub struct Ledger {
    peers: HashMap<PeerId, PeerStats>,
    banned: HashMap<PeerId, Instant>,
    pub totals: PeerStats,
}

/// The most peers remembered; the quietest are forgotten first.
const MAX_PEERS: usize = 4096;

impl Ledger {
    pub fn peer(&mut self, p: PeerId) -> &mut PeerStats {
        if self.peers.len() >= MAX_PEERS && !self.peers.contains_key(&p) {
            if let Some(quiet) = self
                .peers
                .iter()
                .min_by_key(|(_, s)| s.bytes_received + s.bytes_sent)
                .map(|(k, _)| *k)
            {
                self.peers.remove(&quiet);
            }
        }
        self.peers.entry(p).or_default()
    }

    pub fn get(&self, p: &PeerId) -> Option<&PeerStats> {
        self.peers.get(p)
    }

    pub fn received(&mut self, p: PeerId, bytes: usize) {
        let s = self.peer(p);
        s.blocks_received += 1;
        s.bytes_received += bytes as u64;
        self.totals.blocks_received += 1;
        self.totals.bytes_received += bytes as u64;
    }

    /// A block we had already: bytes wasted, nobody's fault.
    pub fn duplicate(&mut self, p: PeerId) {
        self.peer(p).duplicate_blocks += 1;
        self.totals.duplicate_blocks += 1;
    }

    pub fn sent(&mut self, p: PeerId, blocks: u64, bytes: u64) {
        let s = self.peer(p);
        s.blocks_sent += blocks;
        s.bytes_sent += bytes;
        self.totals.blocks_sent += blocks;
        self.totals.bytes_sent += bytes;
    }

    /// Records an offence; true if the peer must now be disconnected (and is banned).
    pub fn offend(&mut self, p: PeerId, o: Offence) -> bool {
        let now = Instant::now();
        let total = self.peer(p).offend(o, now);
        self.totals.offend(o, now);
        if total >= DISCONNECT_AT {
            self.banned.insert(p, now + BAN);
            return true;
        }
        false
    }

    /// True while `p` is refused.
    pub fn is_banned(&mut self, p: &PeerId) -> bool {
        let now = Instant::now();
        self.banned.retain(|_, until| *until > now);
        self.banned.contains_key(p)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&PeerId, &PeerStats)> {
        self.peers.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offences_decay_and_garbage_gets_a_peer_banned() {
        let mut l = Ledger::default();
        let p = PeerId::random();
        // A few duplicates after a cancel are forgiven.
        for _ in 0..10 {
            assert!(!l.offend(p, Offence::Unwanted));
        }
        assert!(!l.offend(p, Offence::Malformed));
        assert!(l.offend(p, Offence::Malformed));
        assert!(l.is_banned(&p));
        // Two malformed messages in a row are not forgiven, whatever came before.
        let q = PeerId::random();
        assert!(!l.offend(q, Offence::Malformed));
        assert!(l.offend(q, Offence::Malformed));
        let mut s = PeerStats::default();
        let t = Instant::now();
        s.offend(Offence::Malformed, t);
        s.decay(t + DECAY * 30);
        assert_eq!(s.offence, 0.0);
    }
}
