//! The IPNS records a DHT keeps (`PUT_VALUE`, `GET_VALUE` under `/ipns/` + a name's
//! multihash): every record is verified before it is kept (signature, validity, key), and
//! only the best one per name is kept, so an older record never replaces a newer one and a
//! record that did not verify is never stored nor served.
//!
//! | records                          | bound                   | past it                           |
//! |----------------------------------|-------------------------|-----------------------------------|
//! | others'                          | [`MAX_OTHERS`]          | expired ones go first, then refused |
//! | others', from one peer           | [`PER_PEER`]            | refused                           |
//! | names whose highest sequence is remembered | [`MAX_FLOORS`] | those not held forgotten first |
//! | published through this node      | [`MAX_OWN`]             | refused                           |
//! | one record                       | 10 KiB (`cairn_names::record::MAX_RECORD`), before parsing | refused |
//! | how long one is kept             | its validity, at most [`KEEP_FOR`] after it arrived | dropped |
//!
//! Keys other than `/ipns/…` are refused: cairn keeps no other kind of value record.

use std::{
    collections::HashMap,
    time::{Duration, Instant, SystemTime},
};

use cairn_names::{record, Name, Record, RecordError};
use libp2p::{kad::RecordKey, PeerId};

/// Records from others kept at once (per DHT).
pub const MAX_OTHERS: usize = 4096;
/// Records published through this node kept at once (per DHT).
pub const MAX_OWN: usize = 4096;
/// How long a record from another peer is kept at most, whatever its validity says.
pub const KEEP_FOR: Duration = Duration::from_secs(48 * 3600);
/// The key prefix of IPNS records.
pub const PREFIX: &[u8] = b"/ipns/";

/// A kept record.
#[derive(Debug, Clone)]
pub struct Held {
    pub bytes: Vec<u8>,
    pub record: Record,
    pub expires: Instant,
    /// Published through this node (by a local user), not learnt from a peer.
    pub own: bool,
    /// The peer it came from (for its quota), if it came from one.
    pub from: Option<PeerId>,
}

/// What became of a record offered to the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    /// Kept: the first or a better record of its name.
    Kept,
    /// The very record held already.
    Same,
    /// Older than (or the loser of a tie with) the record held, sequence `0`: not kept.
    Older(u64),
}

/// Why a record was not kept.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    #[error("not an /ipns/ key")]
    NotIpns,
    #[error(transparent)]
    Invalid(#[from] RecordError),
    #[error("the record store is full")]
    Full,
    #[error("this peer has {PER_PEER} records held here already")]
    Quota,
}

impl Refused {
    /// Whether the sender is to blame: only for what no honest implementation sends (bytes
    /// that are not a record, a signature that does not verify, another key's record). An
    /// expired record (clocks differ), a value or key type cairn does not take (kubo and
    /// Helia take more), another namespace, a full store: refused, not blamed.
    pub fn is_offence(&self) -> bool {
        matches!(
            self,
            Refused::Invalid(
                RecordError::TooLarge(_)
                    | RecordError::Malformed(_)
                    | RecordError::BadSignature
                    | RecordError::WrongKey
                    | RecordError::V1Mismatch(_)
            )
        )
    }
}

/// Records from one peer kept at once (per DHT), so that one peer cannot fill the store.
pub const PER_PEER: usize = 64;

/// The DHT key of a name's records.
pub fn key_of(name: &Name) -> RecordKey {
    let mut k = PREFIX.to_vec();
    k.extend_from_slice(&name.to_bytes());
    RecordKey::new(&k)
}

/// The name a DHT key is of, if it is an IPNS key.
pub fn name_of(key: &RecordKey) -> Option<Name> {
    let rest = key.as_ref().strip_prefix(PREFIX)?;
    libp2p::PeerId::from_bytes(rest).ok().map(Name::from)
}

/// Now, as IPNS validity counts it.
pub fn now_nanos() -> cairn_names::time::Nanos {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128)
}

/// The best valid record of each name, bounded.
#[derive(Default)]
pub struct Records {
    held: HashMap<RecordKey, Held>,
    own: usize,
    /// Records held per peer they came from (only peers with some).
    per_peer: HashMap<PeerId, usize>,
    /// The highest sequence seen per name, kept after its record expires or is replaced, so
    /// that a valid older record put again later is still older ([`MAX_FLOORS`] names).
    floor: HashMap<RecordKey, u64>,
}

/// Names whose highest sequence is remembered beyond their records.
pub const MAX_FLOORS: usize = 2 * (MAX_OTHERS + MAX_OWN);

impl Records {
    /// Verifies `bytes` as a record under `key` (from peer `from`, or a local user: `own`)
    /// and keeps it if it is better than what is held for its name. The cheap checks come
    /// first: the very record held, a full store or quota cost no signature check.
    pub fn offer(
        &mut self,
        key: &RecordKey,
        bytes: &[u8],
        own: bool,
        from: Option<PeerId>,
    ) -> Result<Offer, Refused> {
        let name = name_of(key).ok_or(Refused::NotIpns)?;
        let now = Instant::now();
        if let Some(h) = self.held.get_mut(key) {
            if h.expires > now && h.bytes == bytes {
                if own && !h.own && self.own < MAX_OWN {
                    h.own = true;
                    self.own += 1;
                    if let Some(p) = h.from.take() {
                        Self::unquota(&mut self.per_peer, p);
                    }
                }
                return Ok(Offer::Same);
            }
        } else {
            self.room(now, own, from)?;
        }
        let record = record::verify(&name, bytes, now_nanos())?;
        self.keep(key, bytes, record, own, from)
    }

    /// Like [`offer`](Self::offer), for a record already verified for `key`'s name.
    pub fn offer_verified(
        &mut self,
        key: &RecordKey,
        bytes: &[u8],
        record: Record,
        own: bool,
        from: Option<PeerId>,
    ) -> Result<Offer, Refused> {
        if !self.held.contains_key(key) {
            self.room(Instant::now(), own, from)?;
        }
        self.keep(key, bytes, record, own, from)
    }

    /// Whether a new name has room, from `from` or a local user. Expired records are swept
    /// out (a walk of the store) only when a bound is reached, not for every offer.
    fn room(&mut self, now: Instant, own: bool, from: Option<PeerId>) -> Result<(), Refused> {
        if self.bound(own, from).is_err() {
            self.prune(now);
        }
        self.bound(own, from)
    }

    fn bound(&self, own: bool, from: Option<PeerId>) -> Result<(), Refused> {
        if own {
            if self.own >= MAX_OWN {
                return Err(Refused::Full);
            }
            return Ok(());
        }
        if self.held.len() - self.own >= MAX_OTHERS {
            return Err(Refused::Full);
        }
        if from.is_some_and(|p| self.per_peer.get(&p).copied().unwrap_or(0) >= PER_PEER) {
            return Err(Refused::Quota);
        }
        Ok(())
    }

    fn unquota(per_peer: &mut HashMap<PeerId, usize>, p: PeerId) {
        if let Some(n) = per_peer.get_mut(&p) {
            *n -= 1;
            if *n == 0 {
                per_peer.remove(&p);
            }
        }
    }

    fn keep(
        &mut self,
        key: &RecordKey,
        bytes: &[u8],
        record: Record,
        own: bool,
        from: Option<PeerId>,
    ) -> Result<Offer, Refused> {
        let now = Instant::now();
        let now_sys = now_nanos();
        let left = u64::try_from((record.validity - now_sys).max(0)).unwrap_or(u64::MAX);
        let until = now + Duration::from_nanos(left).min(KEEP_FOR);
        let mut own = own;
        if let Some(&f) = self.floor.get(key) {
            if record.sequence < f {
                return Ok(Offer::Older(f));
            }
        }
        if let Some(h) = self.held.get(key) {
            if h.expires > now {
                if h.bytes == bytes {
                    return Ok(Offer::Same);
                }
                let (_, best) = record::better((&h.record, &h.bytes), (&record, bytes));
                if best != bytes {
                    return Ok(Offer::Older(h.record.sequence));
                }
                if h.record.sequence == record.sequence && h.record.validity == record.validity {
                    log::warn!(
                        "{}: two different records with sequence {} (its key signed both); keeping the same one every node keeps",
                        name_of(key).map(|n| n.to_string()).unwrap_or_default(),
                        record.sequence
                    );
                }
            }
            // A name published here stays ours when a peer brings its newer record.
            own = own || h.own;
            self.remove(key);
        }
        if own && self.own >= MAX_OWN {
            // Only when a peer's record is replaced by a local one and ours are full.
            own = false;
        }
        let from = if own { None } else { from };
        if self.floor.len() >= MAX_FLOORS && !self.floor.contains_key(key) {
            // Forget the floors of names not held now first.
            let held = &self.held;
            self.floor.retain(|k, _| held.contains_key(k));
            if self.floor.len() >= MAX_FLOORS {
                self.floor.clear();
            }
        }
        let f = self.floor.entry(key.clone()).or_default();
        *f = (*f).max(record.sequence);
        self.own += own as usize;
        if let Some(p) = from {
            *self.per_peer.entry(p).or_default() += 1;
        }
        self.held.insert(
            key.clone(),
            Held {
                bytes: bytes.to_vec(),
                record,
                expires: until,
                own,
                from,
            },
        );
        Ok(Offer::Kept)
    }

    /// The highest sequence this store has seen for `key`'s name, held or not.
    pub fn floor(&self, key: &RecordKey) -> Option<u64> {
        self.floor.get(key).copied()
    }

    /// The record held under `key`, if it is still valid (by the wall clock too: a machine
    /// that slept must not serve what expired meanwhile).
    pub fn get(&self, key: &RecordKey) -> Option<&Held> {
        self.held
            .get(key)
            .filter(|h| h.expires > Instant::now() && h.record.validity > now_nanos())
    }

    pub fn remove(&mut self, key: &RecordKey) {
        if let Some(h) = self.held.remove(key) {
            self.own -= h.own as usize;
            if let Some(p) = h.from {
                Self::unquota(&mut self.per_peer, p);
            }
        }
    }

    /// Drops expired records.
    pub fn prune(&mut self, now: Instant) {
        let now_sys = now_nanos();
        let gone: Vec<RecordKey> = self
            .held
            .iter()
            .filter(|(_, h)| h.expires <= now || h.record.validity <= now_sys)
            .map(|(k, _)| k.clone())
            .collect();
        for k in gone {
            self.remove(&k);
        }
    }

    /// Records held: (others', published here).
    pub fn len(&self) -> (usize, usize) {
        (self.held.len() - self.own, self.own)
    }

    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use cairn_names::time::Nanos;
    use libp2p::identity::Keypair;

    use super::*;

    const HOUR: Nanos = 3600 * 1_000_000_000;

    fn signed(key: &Keypair, value: &str, seq: u64) -> Vec<u8> {
        record::sign(key, value, seq, now_nanos() + HOUR, 1).unwrap()
    }

    /// The better record wins whatever the order; a record for another name's key, or a
    /// forged one, is refused as the sender's fault.
    #[test]
    fn only_the_best_valid_record_is_kept() {
        let key = Keypair::generate_ed25519();
        let name = Name::of(&key.public());
        let k = key_of(&name);
        assert_eq!(name_of(&k), Some(name));
        let mut r = Records::default();
        let (one, two) = (signed(&key, "/ipfs/a", 1), signed(&key, "/ipfs/b", 2));
        assert_eq!(r.offer(&k, &two, false, None).unwrap(), Offer::Kept);
        assert_eq!(r.offer(&k, &one, false, None).unwrap(), Offer::Older(2));
        assert_eq!(r.offer(&k, &two, false, None).unwrap(), Offer::Same);
        assert_eq!(r.get(&k).unwrap().record.value, "/ipfs/b");
        let three = signed(&key, "/ipfs/c", 3);
        assert_eq!(r.offer(&k, &three, false, None).unwrap(), Offer::Kept);
        assert_eq!(r.get(&k).unwrap().record.sequence, 3);
        // Gone from the store (expired, say), a name's older records stay older.
        r.remove(&k);
        assert_eq!(r.offer(&k, &two, false, None).unwrap(), Offer::Older(3));
        assert_eq!(r.offer(&k, &three, false, None).unwrap(), Offer::Kept);

        let other = key_of(&Name::of(&Keypair::generate_ed25519().public()));
        let e = r.offer(&other, &three, false, None).unwrap_err();
        assert!(e.is_offence(), "{e}");
        let mut forged = three.clone();
        let n = forged.len();
        forged[n - 3] ^= 1;
        assert!(r.offer(&k, &forged, false, None).unwrap_err().is_offence());
        assert!(matches!(
            r.offer(&RecordKey::new(b"/pk/x"), &three, false, None),
            Err(Refused::NotIpns)
        ));
        assert_eq!(r.get(&k).unwrap().record.sequence, 3);
    }

    /// Others' records stop at MAX_OTHERS and cannot crowd out records published here.
    #[test]
    fn others_are_bounded_apart_from_our_own() {
        let mut r = Records::default();
        let mut keys = Vec::new();
        for _ in 0..MAX_OTHERS {
            let key = Keypair::generate_ed25519();
            let k = key_of(&Name::of(&key.public()));
            r.offer(&k, &signed(&key, "/ipfs/x", 1), false, None)
                .unwrap();
            keys.push(key);
        }
        let extra = Keypair::generate_ed25519();
        let k = key_of(&Name::of(&extra.public()));
        let bytes = signed(&extra, "/ipfs/x", 1);
        let e = r.offer(&k, &bytes, false, None).unwrap_err();
        assert!(matches!(e, Refused::Full) && !e.is_offence());
        assert_eq!(r.offer(&k, &bytes, true, None).unwrap(), Offer::Kept);
        assert_eq!(r.len(), (MAX_OTHERS, 1));
        // A newer record of a name held still replaces it when full.
        let k0 = key_of(&Name::of(&keys[0].public()));
        assert_eq!(
            r.offer(&k0, &signed(&keys[0], "/ipfs/y", 2), false, None)
                .unwrap(),
            Offer::Kept
        );
        assert_eq!(r.len(), (MAX_OTHERS, 1));
    }

    /// One peer keeps at most PER_PEER names here; records that are only expired, or of a
    /// kind cairn does not take, are refused without blame.
    #[test]
    fn one_peer_has_a_quota_and_honest_refusals_cost_nothing() {
        let mut r = Records::default();
        let p = PeerId::random();
        for i in 0..=PER_PEER {
            let key = Keypair::generate_ed25519();
            let k = key_of(&Name::of(&key.public()));
            let got = r.offer(&k, &signed(&key, "/ipfs/x", 1), false, Some(p));
            if i < PER_PEER {
                assert_eq!(got.unwrap(), Offer::Kept);
            } else {
                assert!(matches!(got, Err(Refused::Quota)));
                assert!(!got.unwrap_err().is_offence());
            }
        }
        let key = Keypair::generate_ed25519();
        let k = key_of(&Name::of(&key.public()));
        let expired = record::sign(&key, "/ipfs/x", 1, now_nanos() - HOUR, 1).unwrap();
        let e = r.offer(&k, &expired, false, None).unwrap_err();
        assert!(!e.is_offence(), "{e}");
        assert!(r.get(&k).is_none());
    }
}
