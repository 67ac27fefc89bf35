//! What each peer did: bytes and blocks each way, DONT_HAVEs, offences (blocks we did not
//! want, blocks that are not what their prefix says, malformed messages), and how fast it
//! answers our want-blocks, kept across restarts in `R/ledger.json`. The strangers' group
//! gets a line of its own, for the adaptive stranger policy.
//!
//! Two kinds of memory. Totals since we first met a peer, and *recent* bytes each way, which
//! decay with a half-life of [`HALF_LIFE`] (short-term history, after Feldman et al.: a peer
//! that built a good record and then stops giving loses it within minutes, and one that
//! took a lot long ago is not held to it forever). The incentives work builds its scores on
//! the recent figures.
//!
//! Offences decay faster (one point per [`DECAY`]), so a burst of duplicates from an honest
//! peer after a cancel crossed it on the wire costs nothing lasting, while a peer that keeps
//! sending garbage reaches [`DISCONNECT_AT`] within seconds and is refused for [`BAN`].
//!
//! The file is bounded ([`MAX_PEERS`]): when full, the strangers (peers that gave us less
//! than [`STRANGER_BYTES`] lately) seen longest ago are forgotten first; forgetting one costs
//! nothing, since strangers and peers that only took are served alike.

use std::{
    collections::HashMap,
    path::Path,
    time::{Duration, Instant, SystemTime},
};

use libp2p::PeerId;
use serde::{Deserialize, Serialize};

/// Points of offence at which a peer is disconnected and refused for [`BAN`].
pub const DISCONNECT_AT: f64 = 50.0;
/// One point of offence is forgiven per this long.
pub const DECAY: Duration = Duration::from_millis(500);
/// How long a disconnected offender is refused.
pub const BAN: Duration = Duration::from_secs(600);
/// Recent bytes lose half their weight per this long.
pub const HALF_LIFE: Duration = Duration::from_secs(600);
/// A peer that gave us less than this lately (decayed, [`HALF_LIFE`]) is a stranger (one
/// chunk of a default import: in a swarm a pair of peers may trade only a few blocks). What
/// it took does not count: a free-rider that took much stays with the strangers, so that its
/// many identities share one class ([`crate::incentives`]); and what it gave long ago does
/// not either: a peer that gave once and has only taken since is a stranger again after a few
/// half-lives, as short-term history asks.
pub const STRANGER_BYTES: u64 = 256 << 10;

/// Milliseconds since the epoch, now.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A quantity that halves every [`HALF_LIFE`] (wall-clock time, so it survives restarts).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Decaying {
    pub value: f64,
    /// When `value` was last brought up to date (ms since the epoch).
    pub at_ms: u64,
}

impl Decaying {
    /// The value as of `now_ms`.
    pub fn at(&self, now_ms: u64) -> f64 {
        let dt = now_ms.saturating_sub(self.at_ms) as f64 / 1000.0;
        self.value * 0.5f64.powf(dt / HALF_LIFE.as_secs_f64())
    }

    pub fn add(&mut self, x: f64, now_ms: u64) {
        self.value = self.at(now_ms) + x;
        self.at_ms = now_ms;
    }
}

/// Something a peer did wrong, and what it costs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offence {
    /// A block we never asked for (or stopped asking for long ago).
    Unwanted,
    /// A block whose prefix cannot name a block (identity hash, a CID version that does not
    /// exist). A prefix naming a hash cairn cannot compute is not this: such a block answers
    /// no want of ours, so it is unwanted.
    BadBlock,
    /// A message that does not decode, or breaks a limit.
    Malformed,
    /// More wants than a peer may have with us.
    TooManyWants,
    /// Messages faster than any honest peer sends them.
    Flood,
    /// A message begun and not finished in time (holding our buffers).
    Stalled,
    /// An IPNS record that does not verify (forged, expired, for another key, malformed),
    /// sent by DHT `PUT_VALUE` or as a `GET_VALUE` answer.
    BadRecord,
    /// A batch of shared history that does not check (forged, past its window, malformed),
    /// the peer's own or one it relayed (`crate::reputation`).
    BadStatement,
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
            Offence::BadRecord => 10.0,
            Offence::BadStatement => 10.0,
        }
    }
}

/// Counters for one peer.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct PeerStats {
    pub blocks_received: u64,
    pub bytes_received: u64,
    pub blocks_sent: u64,
    pub bytes_sent: u64,
    pub duplicate_blocks: u64,
    pub unwanted_blocks: u64,
    pub bad_blocks: u64,
    pub malformed_messages: u64,
    /// IPNS records that did not verify.
    pub bad_records: u64,
    /// Batches of shared history that did not check.
    pub bad_statements: u64,
    pub dont_haves: u64,
    /// Current offence points (decayed).
    pub offence: f64,
    #[serde(skip)]
    offence_at: Option<Instant>,
    /// Bytes received from the peer lately (what it gave us), decaying.
    pub recent_received: Decaying,
    /// Bytes sent to the peer lately (what it took), decaying.
    pub recent_sent: Decaying,
    /// When we first and last exchanged anything (seconds since the epoch).
    pub first_seen: u64,
    pub last_seen: u64,
    /// Blocks lately that were not what we asked for (unwanted, or not what their prefix
    /// says), decaying: a peer with any is asked last ([`crate::incentives::is_bad`]).
    pub recent_bad: Decaying,
    /// How long its answers to our want-blocks took, and their bytes per second (moving
    /// averages; 0 until it answered one).
    pub answer_ms: f64,
    pub answer_rate: f64,
}

impl PeerStats {
    fn seen(&mut self, now_ms: u64) {
        let secs = now_ms / 1000;
        if self.first_seen == 0 {
            self.first_seen = secs;
        }
        self.last_seen = secs;
    }

    /// True if the peer gave us less than [`STRANGER_BYTES`] lately (decayed to `now_ms`).
    pub fn is_stranger(&self, now_ms: u64) -> bool {
        self.recent_received.at(now_ms) < STRANGER_BYTES as f64
    }

    /// Adds an offence; returns the decayed total.
    pub fn offend(&mut self, o: Offence, now: Instant) -> f64 {
        self.decay(now);
        self.offence += o.points();
        if matches!(o, Offence::Unwanted | Offence::BadBlock) {
            self.recent_bad.add(1.0, now_ms());
        }
        match o {
            Offence::Unwanted => self.unwanted_blocks += 1,
            Offence::BadBlock => self.bad_blocks += 1,
            Offence::Malformed | Offence::TooManyWants | Offence::Flood | Offence::Stalled => {
                self.malformed_messages += 1
            }
            Offence::BadRecord => self.bad_records += 1,
            Offence::BadStatement => self.bad_statements += 1,
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

/// What the strangers, as one group, gave us and took lately: the adaptive stranger
/// policy's input ([`crate::incentives::stranger_weight`]).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Group {
    pub recent_received: Decaying,
    pub recent_sent: Decaying,
}

/// Every peer's counters, and the totals.
#[derive(Debug, Default)]
pub struct Ledger {
    peers: HashMap<PeerId, PeerStats>,
    banned: HashMap<PeerId, Instant>,
    pub totals: PeerStats,
    pub strangers: Group,
    /// Changed since loaded or saved.
    dirty: bool,
}

/// `R/ledger.json`.
#[derive(Serialize, Deserialize)]
struct LedgerFile {
    version: u32,
    totals: PeerStats,
    #[serde(default)]
    strangers: Group,
    peers: HashMap<String, PeerStats>,
}

/// The most peers remembered (about 300 bytes each in the file).
pub const MAX_PEERS: usize = 4096;

impl Ledger {
    pub fn peer(&mut self, p: PeerId) -> &mut PeerStats {
        if self.peers.len() >= MAX_PEERS && !self.peers.contains_key(&p) {
            // The stranger seen longest ago, else whoever was seen longest ago.
            let now = now_ms();
            if let Some(gone) = self
                .peers
                .iter()
                .min_by_key(|(_, s)| (!s.is_stranger(now), s.last_seen))
                .map(|(k, _)| *k)
            {
                self.peers.remove(&gone);
            }
        }
        self.dirty = true;
        self.peers.entry(p).or_default()
    }

    /// The ledger saved at `path` (an empty one if there is none; a damaged file is set
    /// aside as `path.bad` and the ledger starts empty, with a log line).
    pub fn load(path: &Path) -> Ledger {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) => {
                if e.kind() != std::io::ErrorKind::NotFound {
                    log::warn!("ledger {}: {e}; starting empty", path.display());
                }
                return Ledger::default();
            }
        };
        let file: LedgerFile = match serde_json::from_slice(&bytes) {
            Ok(f) => f,
            Err(e) => {
                log::warn!("ledger {}: {e}; set aside, starting empty", path.display());
                let _ = std::fs::rename(path, path.with_extension("json.bad"));
                return Ledger::default();
            }
        };
        let mut l = Ledger::default();
        for (k, stats) in file.peers {
            if let Ok(p) = k.parse::<PeerId>() {
                if l.peers.len() < MAX_PEERS {
                    l.peers.insert(p, stats);
                }
            }
        }
        l.totals = file.totals;
        l.strangers = file.strangers;
        l.dirty = false;
        l
    }

    /// Writes the ledger to `path` (atomically: a temporary file renamed over it) if it
    /// changed since it was loaded or last saved.
    pub fn save(&mut self, path: &Path) -> std::io::Result<()> {
        if !self.dirty {
            return Ok(());
        }
        let file = LedgerFile {
            version: 1,
            totals: self.totals.clone(),
            strangers: self.strangers.clone(),
            peers: self
                .peers
                .iter()
                .map(|(p, s)| (p.to_string(), s.clone()))
                .collect(),
        };
        let tmp = path.with_extension(format!("json.tmp-{}", std::process::id()));
        std::fs::write(
            &tmp,
            serde_json::to_vec(&file).map_err(std::io::Error::other)?,
        )?;
        std::fs::rename(&tmp, path)?;
        self.dirty = false;
        Ok(())
    }

    pub fn get(&self, p: &PeerId) -> Option<&PeerStats> {
        self.peers.get(p)
    }

    pub fn received(&mut self, p: PeerId, bytes: usize) {
        let now = now_ms();
        let s = self.peer(p);
        let stranger = s.is_stranger(now);
        s.blocks_received += 1;
        s.bytes_received += bytes as u64;
        s.recent_received.add(bytes as f64, now);
        s.seen(now);
        if stranger {
            self.strangers.recent_received.add(bytes as f64, now);
        }
        self.totals.blocks_received += 1;
        self.totals.bytes_received += bytes as u64;
    }

    /// `p` answered a want-block of ours with `bytes`, `waited` after we asked.
    pub fn answered(&mut self, p: PeerId, bytes: usize, waited: Duration) {
        const ALPHA: f64 = 0.2;
        let s = self.peer(p);
        let ms = waited.as_secs_f64() * 1000.0;
        let rate = bytes as f64 / waited.as_secs_f64().max(1e-4);
        if s.answer_ms == 0.0 {
            (s.answer_ms, s.answer_rate) = (ms, rate);
        } else {
            s.answer_ms += ALPHA * (ms - s.answer_ms);
            s.answer_rate += ALPHA * (rate - s.answer_rate);
        }
    }

    /// A block we had already: bytes wasted, nobody's fault.
    pub fn duplicate(&mut self, p: PeerId) {
        self.peer(p).duplicate_blocks += 1;
        self.totals.duplicate_blocks += 1;
    }

    pub fn sent(&mut self, p: PeerId, blocks: u64, bytes: u64) {
        let now = now_ms();
        let s = self.peer(p);
        let stranger = s.is_stranger(now);
        s.blocks_sent += blocks;
        s.bytes_sent += bytes;
        s.recent_sent.add(bytes as f64, now);
        s.seen(now);
        if stranger {
            self.strangers.recent_sent.add(bytes as f64, now);
        }
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
    /// True if `p` is refused now. Looks at `p`'s ban alone (it runs for every message);
    /// [`prune_bans`](Self::prune_bans) drops the expired ones.
    pub fn is_banned(&mut self, p: &PeerId) -> bool {
        match self.banned.get(p) {
            Some(until) if *until > Instant::now() => true,
            Some(_) => {
                self.banned.remove(p);
                false
            }
            None => false,
        }
    }

    /// Forgets bans that have run out.
    pub fn prune_bans(&mut self) {
        let now = Instant::now();
        self.banned.retain(|_, until| *until > now);
    }

    pub fn iter(&self) -> impl Iterator<Item = (&PeerId, &PeerStats)> {
        self.peers.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a peer gave long ago does not keep it out of the strangers: 1 MiB just now does,
    /// 1 MiB an hour ago (six half-lives: 16 KiB now) does not.
    #[test]
    fn a_stranger_is_judged_on_what_it_gave_lately() {
        let now = now_ms();
        let mut s = PeerStats::default();
        assert!(s.is_stranger(now));
        s.bytes_received = 1 << 20;
        s.recent_received = Decaying {
            value: (1 << 20) as f64,
            at_ms: now,
        };
        assert!(!s.is_stranger(now));
        s.recent_received.at_ms = now - 3_600_000;
        assert!(s.is_stranger(now));
    }

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

    /// Recent bytes halve per half-life; totals do not.
    #[test]
    fn recent_history_decays() {
        let mut d = Decaying::default();
        d.add(1000.0, 1_000_000);
        let h = HALF_LIFE.as_millis() as u64;
        assert!((d.at(1_000_000 + h) - 500.0).abs() < 1e-6);
        assert!(d.at(1_000_000 + 10 * h) < 1.0);
        d.add(1000.0, 1_000_000 + h);
        assert!((d.at(1_000_000 + h) - 1500.0).abs() < 1e-6);
    }

    /// The ledger survives a save and a load; a damaged file is set aside; when full, the
    /// stranger seen longest ago goes first, never a peer we traded with.
    #[test]
    fn the_ledger_persists_and_forgets_strangers_first() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.json");
        let mut l = Ledger::default();
        let (friend, stranger) = (PeerId::random(), PeerId::random());
        l.received(friend, 4 << 20);
        l.sent(stranger, 1, 100);
        l.peer(stranger).dont_haves = 3;
        l.save(&path).unwrap();
        let mut back = Ledger::load(&path);
        assert_eq!(back.get(&friend).unwrap().bytes_received, 4 << 20);
        assert_eq!(back.get(&stranger).unwrap().dont_haves, 3);
        assert_eq!(back.totals.bytes_received, 4 << 20);
        assert!(back.get(&friend).unwrap().recent_received.value > 0.0);
        // Full: a newcomer pushes out a stranger, not the friend (even one seen earlier).
        back.peers.get_mut(&friend).unwrap().last_seen = 1;
        while back.peers.len() < MAX_PEERS {
            let p = PeerId::random();
            back.peer(p).last_seen = u64::MAX;
        }
        back.peer(PeerId::random());
        assert!(back.get(&friend).is_some());
        assert!(back.get(&stranger).is_none());
        std::fs::write(&path, b"{ not json").unwrap();
        assert!(Ledger::load(&path).get(&friend).is_none());
        assert!(path.with_extension("json.bad").exists());
    }
}
