//! Block acceptance: what becomes of a block a peer sent us, in one place.
//!
//! 1. **Decode** ([`super::wire::Message::decode`], in the connection's reader): a block is a
//!    prefix and bytes, at most [`super::wire::MAX_BLOCK`].
//! 2. **Hash** ([`hash`], on a blocking thread, still in the reader: hashing is the one
//!    costly step, and readers of different connections hash on different cores): the
//!    multihash of the bytes under the hash function and digest length the prefix names.
//! 3. **Match** ([`Engine::accept`], in the engine, which owns the wants): by multihash
//!    only. A want for dag-pb `bafybei…` answered under a `raw` prefix with the right bytes is
//!    the block we wanted: the codec and CID version are ours, not the sender's, and the block
//!    is stored under the CID we asked for, so that its links go into the index and the next
//!    read finds it. A prefix that names another codec costs the sender nothing; bytes that
//!    hash to nothing we want are unwanted.
//! 4. **Store** as cache under our CID, on a blocking thread; until it is on disk, later
//!    wants for it are answered from memory.
//! 5. **Notify**: the waiters get the bytes at once (before the write), and peers that
//!    asked us for this block while we lacked it are queued an answer once it is stored.
//! 6. **Account**: the sender's ledger (bytes, answer time), or its offence.
//!
//! We only want what we can check ([`verifiable`]): a CID whose hash function cairn cannot
//! compute is refused when it is asked for, with a clear error, and never sent to a peer.
//! So a block whose prefix names such a hash answers no want of ours: it is unwanted (a
//! peer only sends it unasked), never a "bad block" charged for our own limitation.

use std::time::Instant;

use bytes::Bytes;
use cairn_store::{
    codec,
    hash::{checked_digest, digest_size, IDENTITY, MIN_DIGEST, SHA1},
    Cid,
};
use libp2p::PeerId;

use super::{
    engine::Engine,
    wants::{Key, Received},
    wire::Prefix,
    Event,
};
use crate::ledger::Offence;

/// Why cairn will not ask for a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Unverifiable {
    #[error("{cid} uses the hash function 0x{code:x}, which cairn cannot compute, so no peer's copy of it could be checked")]
    Hash { cid: Cid, code: u64 },
    #[error("{cid} has a {len}-byte digest: under {MIN_DIGEST} bytes names no single block, over the hash function's output names none")]
    Digest { cid: Cid, len: usize },
}

/// Ok if cairn can check a block of this CID (identity CIDs carry their bytes: checked too).
/// Every want passes through here before it reaches a peer.
pub fn verifiable(cid: &Cid) -> Result<(), Unverifiable> {
    let mh = cid.hash();
    if mh.code() == IDENTITY {
        return Ok(());
    }
    let size = digest_size(mh.code()).ok_or(Unverifiable::Hash {
        cid: *cid,
        code: mh.code(),
    })?;
    let len = mh.size() as usize;
    if !(MIN_DIGEST..=size).contains(&len) {
        return Err(Unverifiable::Digest { cid: *cid, len });
    }
    Ok(())
}

/// How the store says it: a read of such a block fails with this, at once.
impl From<Unverifiable> for cairn_store::StoreError {
    fn from(e: Unverifiable) -> Self {
        match e {
            Unverifiable::Hash { cid, code } => {
                cairn_store::StoreError::UnsupportedHash { cid, code }
            }
            Unverifiable::Digest { cid, .. } => cairn_store::StoreError::Unavailable {
                cid,
                why: "its digest length cannot be checked",
            },
        }
    }
}

/// What a received block's bytes hash to under the prefix it came with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hashed {
    /// The multihash: what a want is matched on.
    Key(Key),
    /// The prefix names a hash function or digest length cairn never asks for: this block
    /// cannot answer any want of ours.
    Unverifiable,
    /// The prefix cannot name a block at all (an identity hash, a CID version that does not
    /// exist, a CIDv0 that is not dag-pb sha2-256).
    Malformed(&'static str),
}

/// Hashes `data` as its prefix says (CPU work: call it on a blocking thread). A digest
/// length shorter than the function's output is a truncated digest, as in the store.
pub fn hash(prefix: &Prefix, data: &[u8]) -> Hashed {
    if prefix.mh_code == IDENTITY {
        return Hashed::Malformed("identity-hash block");
    }
    match prefix.version {
        0 if *prefix != Prefix::v0() => {
            return Hashed::Malformed("a CIDv0 prefix other than dag-pb sha2-256")
        }
        0 | 1 => {}
        _ => return Hashed::Malformed("unsupported CID version"),
    }
    let Some(mh) = checked_digest(prefix.mh_code, data) else {
        return if prefix.mh_code == SHA1 {
            Hashed::Malformed("a block carrying a sha1 collision attack")
        } else {
            Hashed::Unverifiable
        };
    };
    let len = prefix.mh_len as usize;
    if len == mh.size() as usize {
        return Hashed::Key(mh);
    }
    if !(MIN_DIGEST..mh.size() as usize).contains(&len) {
        return Hashed::Unverifiable;
    }
    match Key::wrap(prefix.mh_code, &mh.digest()[..len]) {
        Ok(k) => Hashed::Key(k),
        Err(_) => Hashed::Unverifiable,
    }
}

/// A block as the engine receives it: decoded and hashed by the connection's reader.
pub struct Incoming {
    pub prefix: Prefix,
    pub data: Bytes,
    pub hashed: Hashed,
}

impl Engine {
    /// Steps 3 to 6 for one block from `peer`. Actions for the planner's peers (cancels,
    /// the next wants) go to `acts`.
    pub(super) fn accept(
        &mut self,
        peer: PeerId,
        block: Incoming,
        now: Instant,
        acts: &mut Vec<super::wants::Action>,
    ) {
        let key = match block.hashed {
            Hashed::Key(k) => k,
            Hashed::Unverifiable => {
                log::debug!(
                    "bitswap: {peer} sent a block under hash 0x{:x}/{} bytes, which we never ask for",
                    block.prefix.mh_code,
                    block.prefix.mh_len
                );
                self.offend(peer, Offence::Unwanted);
                return;
            }
            Hashed::Malformed(why) => {
                log::debug!("bitswap: bad block from {peer}: {why}");
                self.offend(peer, Offence::BadBlock);
                return;
            }
        };
        let data = block.data;
        match self.wants.block(peer, &key, &data, now, acts) {
            Received::Wanted(cid, waited) => {
                self.ledger.received(peer, data.len());
                if let Some(w) = waited {
                    self.ledger.answered(peer, data.len(), w);
                }
                self.refresh(peer);
                self.storing.insert(key, data.clone());
                let (store, events) = (self.store.clone(), self.events_tx.clone());
                tokio::spawn(async move {
                    let stored = tokio::task::spawn_blocking(move || {
                        let links = codec::links_of(&cid, &data).unwrap_or_default();
                        store.put_cache(&cid, &data).map(|_| links)
                    })
                    .await;
                    let links = match stored {
                        Ok(Ok(links)) => Some(links),
                        Ok(Err(e)) => {
                            log::warn!("storing {cid}: {e}");
                            None
                        }
                        Err(e) => {
                            log::warn!("storing {cid}: {e}");
                            None
                        }
                    };
                    let _ = events
                        .send(Event::Stored {
                            cid,
                            from: peer,
                            links,
                        })
                        .await;
                });
            }
            Received::Duplicate => self.ledger.duplicate(peer),
            Received::Unwanted => self.offend(peer, Offence::Unwanted),
        }
    }

    /// Step 5, once the block is on disk: its children are likely at the same peer, and
    /// peers that wanted it from us get it now.
    pub(super) fn stored(&mut self, cid: Cid, from: PeerId, links: Option<Vec<Cid>>) {
        self.storing.remove(cid.hash());
        if let Some(links) = links {
            self.wants.hint(from, &links);
            self.notify_new_block(&cid);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(data: &[u8]) -> Cid {
        Cid::new_v1(
            codec::codes::RAW,
            cairn_store::HashAlg::Sha2_256.digest(data),
        )
    }

    /// git objects are named by sha1, computed with collision detection: a block carrying
    /// SHAttered's attack is a bad block (its sender is charged), not a block of that sha1.
    #[test]
    fn a_sha1_collision_is_a_bad_block() {
        let git = Prefix {
            version: 1,
            codec: codec::codes::GIT_RAW,
            mh_code: cairn_store::hash::SHA1,
            mh_len: 20,
        };
        let blob = b"blob 6\0hello\n";
        let Hashed::Key(k) = hash(&git, blob) else {
            panic!("an ordinary object hashes");
        };
        let id = "ce013625030ba8dba906f756967f9e9ca394464a";
        let hex: String = k.digest().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, id);
        verifiable(&Cid::new_v1(codec::codes::GIT_RAW, k)).unwrap();
        for half in [
            &include_bytes!("../../../../store/testdata/shattered-1.prefix")[..],
            &include_bytes!("../../../../store/testdata/shattered-2.prefix")[..],
        ] {
            assert!(matches!(hash(&git, half), Hashed::Malformed(_)));
        }
    }

    /// The key is the multihash, whatever codec the prefix names; a truncated digest hashes
    /// to its truncation; identity, CIDv2 and a non-dag-pb CIDv0 are malformed; hash
    /// functions and digest lengths cairn never asks for cannot answer a want.
    #[test]
    fn blocks_hash_as_their_prefix_says() {
        let data = b"hello";
        let want = raw(data);
        let as_pb = Prefix {
            codec: codec::codes::DAG_PB,
            ..Prefix::of(&want)
        };
        assert_eq!(hash(&as_pb, data), Hashed::Key(*want.hash()));
        assert_ne!(
            hash(&Prefix::of(&want), b"hellO"),
            Hashed::Key(*want.hash())
        );
        let short = Prefix {
            mh_len: 20,
            ..Prefix::of(&want)
        };
        let Hashed::Key(k) = hash(&short, data) else {
            panic!("a 20-byte digest hashes");
        };
        assert_eq!(k.digest(), &want.hash().digest()[..20]);
        let truncated = Cid::new_v1(codec::codes::RAW, k);
        cairn_store::hash::verify(&truncated, data).unwrap();
        verifiable(&truncated).unwrap();
        for (p, why) in [
            (
                Prefix {
                    mh_code: IDENTITY,
                    ..Prefix::of(&want)
                },
                "identity",
            ),
            (
                Prefix {
                    version: 2,
                    ..Prefix::of(&want)
                },
                "version",
            ),
            (
                Prefix {
                    codec: 0x55,
                    ..Prefix::v0()
                },
                "v0",
            ),
        ] {
            assert!(matches!(hash(&p, data), Hashed::Malformed(_)), "{why}");
        }
        for p in [
            Prefix {
                mh_code: 0x16,
                ..Prefix::of(&want)
            },
            Prefix {
                mh_len: 8,
                ..Prefix::of(&want)
            },
            Prefix {
                mh_len: 33,
                ..Prefix::of(&want)
            },
        ] {
            assert_eq!(hash(&p, data), Hashed::Unverifiable, "{p:?}");
        }
    }

    /// sha3-256 (0x16): the store cannot check it, so it is never asked for.
    #[test]
    fn unverifiable_cids_are_named() {
        let sha3 = Cid::new_v1(0x55, Key::wrap(0x16, &[7; 32]).unwrap());
        let e = verifiable(&sha3).unwrap_err();
        assert!(e.to_string().contains("0x16"), "{e}");
        let short = Cid::new_v1(0x55, Key::wrap(0x12, &[7; 8]).unwrap());
        assert!(matches!(
            verifiable(&short),
            Err(Unverifiable::Digest { len: 8, .. })
        ));
        verifiable(&raw(b"x")).unwrap();
    }
}
