//! The IPNS records a DHT keeps (`PUT_VALUE`, `GET_VALUE` under `/ipns/` + a name's
//! multihash): every record is verified before it is kept (signature, validity, key), and
//! only the best one per name is kept, so an older record never replaces a newer one and a
//! record that did not verify is never stored nor served.
//!
//! | records                          | bound                   | past it                           |
//! |----------------------------------|-------------------------|-----------------------------------|
//! | others'                          | [`MAX_OTHERS`]          | expired ones go first, then refused |
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
use libp2p::kad::RecordKey;

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
}

/// What became of a record offered to the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    /// Kept: the first or a better record of its name.
    Kept,
    /// The very record held already.
    Same,
    /// Older than (or the loser of a tie with) the record held: not kept.
    Older,
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
}

impl Refused {
    /// Whether the sender is to blame (a full store is ours to bear).
    pub fn is_offence(&self) -> bool {
        !matches!(self, Refused::Full)
    }
}

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
}

impl Records {
    /// Verifies `bytes` as a record under `key` and keeps it if it is better than what is
    /// held for its name.
    pub fn offer(&mut self, key: &RecordKey, bytes: &[u8], own: bool) -> Result<Offer, Refused> {
        let name = name_of(key).ok_or(Refused::NotIpns)?;
        let now_sys = now_nanos();
        let record = record::verify(&name, bytes, now_sys)?;
        let now = Instant::now();
        let left = u64::try_from((record.validity - now_sys).max(0)).unwrap_or(u64::MAX);
        let until = now + Duration::from_nanos(left).min(KEEP_FOR);
        if let Some(h) = self.held.get_mut(key) {
            if h.expires > now {
                if h.bytes == bytes {
                    // Kept again: it lives on, and a local publish makes it ours.
                    if own && !h.own {
                        h.own = true;
                        self.own += 1;
                    }
                    h.expires = h.expires.max(until);
                    return Ok(Offer::Same);
                }
                let (_, best) = record::better((&h.record, &h.bytes), (&record, bytes));
                if best != bytes {
                    return Ok(Offer::Older);
                }
                if h.record.sequence == record.sequence && h.record.validity == record.validity {
                    log::warn!(
                        "{name}: two different records with sequence {} (its key signed both); keeping the same one every node keeps",
                        record.sequence
                    );
                }
            }
        }
        let was_own = self.held.get(key).is_some_and(|h| h.own);
        let own = own || was_own;
        if self.held.contains_key(key) {
            self.remove(key);
        } else {
            self.prune(now);
            let full = if own {
                self.own >= MAX_OWN
            } else {
                self.held.len() - self.own >= MAX_OTHERS
            };
            if full {
                return Err(Refused::Full);
            }
        }
        self.own += own as usize;
        self.held.insert(
            key.clone(),
            Held {
                bytes: bytes.to_vec(),
                record,
                expires: until,
                own,
            },
        );
        Ok(Offer::Kept)
    }

    /// The record held under `key`, if it has not expired.
    pub fn get(&self, key: &RecordKey) -> Option<&Held> {
        self.held.get(key).filter(|h| h.expires > Instant::now())
    }

    pub fn remove(&mut self, key: &RecordKey) {
        if let Some(h) = self.held.remove(key) {
            self.own -= h.own as usize;
        }
    }

    /// Drops expired records.
    pub fn prune(&mut self, now: Instant) {
        let own = &mut self.own;
        self.held.retain(|_, h| {
            let keep = h.expires > now;
            if !keep {
                *own -= h.own as usize;
            }
            keep
        });
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
        assert_eq!(r.offer(&k, &two, false).unwrap(), Offer::Kept);
        assert_eq!(r.offer(&k, &one, false).unwrap(), Offer::Older);
        assert_eq!(r.offer(&k, &two, false).unwrap(), Offer::Same);
        assert_eq!(r.get(&k).unwrap().record.value, "/ipfs/b");
        let three = signed(&key, "/ipfs/c", 3);
        assert_eq!(r.offer(&k, &three, false).unwrap(), Offer::Kept);
        assert_eq!(r.get(&k).unwrap().record.sequence, 3);

        let other = key_of(&Name::of(&Keypair::generate_ed25519().public()));
        let e = r.offer(&other, &three, false).unwrap_err();
        assert!(e.is_offence(), "{e}");
        let mut forged = three.clone();
        let n = forged.len();
        forged[n - 3] ^= 1;
        assert!(r.offer(&k, &forged, false).unwrap_err().is_offence());
        assert!(matches!(
            r.offer(&RecordKey::new(b"/pk/x"), &three, false),
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
            r.offer(&k, &signed(&key, "/ipfs/x", 1), false).unwrap();
            keys.push(key);
        }
        let extra = Keypair::generate_ed25519();
        let k = key_of(&Name::of(&extra.public()));
        let bytes = signed(&extra, "/ipfs/x", 1);
        let e = r.offer(&k, &bytes, false).unwrap_err();
        assert!(matches!(e, Refused::Full) && !e.is_offence());
        assert_eq!(r.offer(&k, &bytes, true).unwrap(), Offer::Kept);
        assert_eq!(r.len(), (MAX_OTHERS, 1));
        // A newer record of a name held still replaces it when full.
        let k0 = key_of(&Name::of(&keys[0].public()));
        assert_eq!(
            r.offer(&k0, &signed(&keys[0], "/ipfs/y", 2), false)
                .unwrap(),
            Offer::Kept
        );
        assert_eq!(r.len(), (MAX_OTHERS, 1));
    }
}
