//! Name lookups and publications on a DHT: what a `GET_VALUE` lookup found, checked one
//! record at a time, and what became of a `PUT_VALUE`.
//!
//! - A lookup hands every valid record it finds to the asker as it arrives (the asker
//!   decides when it has enough: see [`crate::Client::resolve_name`]) and goes on in the
//!   background until kad's query ends; then the best record is written back to the peers
//!   that answered with older ones. A record no honest peer sends (forged, another key's)
//!   costs its sender offence points; an expired one is only refused. Connected cairn
//!   peers are asked too, directly ([`super::ask`]), and their answers checked the same way.
//! - A publication stores the record here, then puts it at the closest peers; it is done at
//!   the first peer's acknowledgement.
//!
//! | what | bound | past it |
//! |---|---|---|
//! | lookups and publications in flight (per node) | [`MAX_NAME_QUERIES`] | refused, saying so |
//! | records handed to one asker | [`FOUND_QUEUE`] queued | the rest dropped (each is kept in the store anyway) |
//! | peers written back to, per lookup | [`MAX_WRITE_BACK`] | the rest left as they are |

use std::sync::{Arc, Mutex};

use cairn_names::{record, Name, Record};
use libp2p::{
    kad::{self, PeerRecord, Quorum},
    PeerId,
};
use tokio::sync::{mpsc, oneshot};

use super::{addrs::Scope, records, Kad};

/// Name lookups and publications in flight at once.
pub const MAX_NAME_QUERIES: usize = 64;
/// Found records queued for one asker.
pub const FOUND_QUEUE: usize = 32;
/// Peers that answered an older record and are sent the best one.
pub const MAX_WRITE_BACK: usize = 20;

/// A valid record a lookup found.
#[derive(Debug, Clone)]
pub struct Found {
    pub record: Record,
    pub bytes: Vec<u8>,
    /// The peer that sent it; `None` for the record this node holds.
    pub from: Option<PeerId>,
    /// Sent by a connected peer asked directly ([`super::ask`]), not found in a DHT: it
    /// neither counts towards the peers a lookup waits for nor confirms a record is the
    /// newest (a Sybil's connections are free; its place in the DHT is not).
    pub direct: bool,
}

/// What one lookup refused, from all the peers it asked: so that "nothing valid" can say
/// whether anything was found at all.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// Records no honest peer sends (forged, another key's, malformed).
    pub offences: u32,
    /// Records honest peers may send (expired: clocks differ; a kind cairn does not take).
    pub others: u32,
    /// Why the last one was refused.
    pub why: Option<String>,
}

/// [`Rejected`], shared by the parts of one lookup (one per DHT, one per peer asked).
pub type Rejects = Arc<Mutex<Rejected>>;

/// Checks `bytes`, sent as `name`'s record: the record if it verifies; `Err(blame)` if not,
/// `blame` saying whether its sender is at fault (see [`records::Refused::is_offence`]).
pub fn check(name: &Name, bytes: &[u8], rejects: &Rejects) -> Result<Record, bool> {
    record::verify(name, bytes, records::now_nanos()).map_err(|e| {
        let why = e.to_string();
        let blame = records::Refused::Invalid(e).is_offence();
        let mut r = rejects.lock().unwrap_or_else(|e| e.into_inner());
        if blame {
            r.offences = r.offences.saturating_add(1);
        } else {
            r.others = r.others.saturating_add(1);
        }
        r.why = Some(why);
        blame
    })
}

/// Offers a checked record to `kad`'s store, so that this node answers others with it if
/// it is the best. An answer to our own lookup does not count against its sender's quota
/// of puts.
pub fn keep(kad: &mut Kad, name: &Name, bytes: &[u8], record: &Record) {
    let key = records::key_of(name);
    if let Err(e) = kad
        .store_mut()
        .records
        .offer_verified(&key, bytes, record.clone(), false, None)
    {
        log::debug!("{name}: not kept: {e}");
    }
}

/// A lookup of one name in one DHT.
pub struct Resolving {
    pub name: Name,
    /// Closed when the lookup ends (in every DHT asked).
    pub tx: mpsc::Sender<Found>,
    /// Leave out the record this node holds.
    pub nocache: bool,
    best: Option<(Record, Vec<u8>)>,
    /// Peers of this DHT that sent something older than the best.
    older: Vec<PeerId>,
    /// Peers of this DHT that sent the best so far.
    best_from: Vec<PeerId>,
    /// The highest sequence this node had seen when the lookup began: nothing older is
    /// handed to the asker.
    floor: u64,
    rejects: Rejects,
}

impl Resolving {
    pub fn new(
        name: Name,
        tx: mpsc::Sender<Found>,
        nocache: bool,
        floor: u64,
        rejects: Rejects,
    ) -> Resolving {
        Resolving {
            name,
            tx,
            nocache,
            best: None,
            older: Vec::new(),
            best_from: Vec::new(),
            floor,
            rejects,
        }
    }

    fn behind(&mut self, p: PeerId) {
        if self.older.len() < MAX_WRITE_BACK && !self.older.contains(&p) {
            self.older.push(p);
        }
    }

    /// A record kad found: checked, kept if better, handed on. `Err(peer)` when a peer sent
    /// an invalid one.
    pub fn found(&mut self, kad: &mut Kad, r: PeerRecord) -> Result<(), PeerId> {
        let bytes = r.record.value;
        let record = match check(&self.name, &bytes, &self.rejects) {
            Ok(rec) => {
                keep(kad, &self.name, &bytes, &rec);
                rec
            }
            Err(blame) => {
                log::debug!("{}: a record from {:?} refused", self.name, r.peer);
                return match (blame, r.peer) {
                    (true, Some(p)) => Err(p),
                    _ => Ok(()),
                };
            }
        };
        if record.sequence < self.floor {
            // Older than what this node has seen: written back, never an answer.
            if let Some(p) = r.peer {
                self.behind(p);
            }
            return Ok(());
        }
        let is_best = match &self.best {
            None => true,
            Some((b, bb)) => record::better((b, bb), (&record, &bytes)).1 == bytes.as_slice(),
        };
        if is_best {
            if self.best.as_ref().is_some_and(|(_, bb)| *bb != bytes) {
                // Whoever sent the best so far is behind now.
                for p in std::mem::take(&mut self.best_from) {
                    self.behind(p);
                }
            }
            if let Some(p) = r.peer {
                if self.best_from.len() < MAX_WRITE_BACK {
                    self.best_from.push(p);
                }
            }
            self.best = Some((record.clone(), bytes.clone()));
        } else if let Some(p) = r.peer {
            self.behind(p);
        }
        if r.peer.is_some() || !self.nocache {
            let _ = self.tx.try_send(Found {
                record,
                bytes,
                from: r.peer,
                direct: false,
            });
        }
        Ok(())
    }

    /// The lookup in this DHT ended: the peers that answered older records get the best.
    pub fn end(self, kad: &mut Kad) {
        if let (Some((_, bytes)), false) = (self.best, self.older.is_empty()) {
            let record = kad::Record {
                key: records::key_of(&self.name),
                value: bytes,
                publisher: None,
                expires: None,
            };
            log::debug!(
                "{}: writing the newest record back to {} peers",
                self.name,
                self.older.len()
            );
            kad.put_record_to(record, self.older.into_iter(), Quorum::One);
        }
    }
}

/// A publication in every DHT.
pub struct Publishing {
    pub reply: Option<oneshot::Sender<Result<(), String>>>,
    /// DHTs whose put has not ended.
    pub left: usize,
    pub errors: Vec<String>,
}

impl Publishing {
    /// One DHT's put ended (`Ok` at its first acknowledgement).
    pub fn ended(&mut self, scope: Scope, r: Result<(), String>) {
        match r {
            Ok(()) => {
                if let Some(tx) = self.reply.take() {
                    let _ = tx.send(Ok(()));
                }
            }
            Err(e) => self.errors.push(format!("{scope:?} DHT: {e}")),
        }
    }

    /// Whether every DHT is done with it; the asker has its answer then.
    pub fn last(&mut self) -> bool {
        self.left = self.left.saturating_sub(1);
        if self.left > 0 {
            return false;
        }
        if let Some(tx) = self.reply.take() {
            let _ = tx.send(Err(if self.errors.is_empty() {
                "no DHT peer took the record".into()
            } else {
                self.errors.join("; ")
            }));
        }
        true
    }
}
