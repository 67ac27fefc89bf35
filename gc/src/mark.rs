//! The mark phase's sets, keyed by each block's whole identity.
//!
//! A block is its canonical CID: codec and full multihash (hash code and every digest byte).
//! That is what names its file, and the codec decides its links, so nothing shorter can
//! stand for it: two blocks that shared a shorter key (a hostile DAG can link to a made-up
//! CID that shares any prefix of a live block's digest) would count as one, and marking the
//! made-up one would leave the live one's children unmarked.
//!
//! Every CID the collector meets is interned once into a table of [`Key`]s and referred to
//! by its `u32` number after that: the candidate list, the marked and indexed sets (bit
//! sets) and the links (a flat list of numbers) cost a few bytes per block on top of the key.

use std::{
    collections::HashMap,
    hash::{BuildHasher, RandomState},
};

use cairn_store::{codec, Cid, Store};
use hashbrown::{hash_table::Entry, HashTable};

use crate::GcError;

/// A block's identity. Inline (36 bytes: codec and hash code as 16-bit numbers, then a
/// 32-byte digest) for every block cairn makes (sha2-256, blake2b-256, blake3 with raw,
/// dag-pb, dag-cbor, dag-json); the canonical CID's bytes, boxed, for anything else. A CID is
/// inline exactly when it fits, so one CID never has two keys.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Inline([u8; 36]),
    Boxed(Box<[u8]>),
}

impl Key {
    fn of(cid: &Cid) -> Key {
        let cid = cairn_store::canonical(cid);
        let mh = cid.hash();
        match (
            u16::try_from(cid.codec()),
            u16::try_from(mh.code()),
            <[u8; 32]>::try_from(mh.digest()),
        ) {
            (Ok(codec), Ok(code), Ok(digest)) => {
                let mut k = [0u8; 36];
                k[..2].copy_from_slice(&codec.to_le_bytes());
                k[2..4].copy_from_slice(&code.to_le_bytes());
                k[4..].copy_from_slice(&digest);
                Key::Inline(k)
            }
            _ => Key::Boxed(cid.to_bytes().into_boxed_slice()),
        }
    }

    fn cid(&self) -> Cid {
        match self {
            Key::Inline(k) => {
                let codec = u16::from_le_bytes([k[0], k[1]]);
                let code = u16::from_le_bytes([k[2], k[3]]);
                let mh = multihash::Multihash::<64>::wrap(code.into(), &k[4..])
                    .expect("32 bytes fit a 64-byte multihash");
                Cid::new_v1(codec.into(), mh)
            }
            Key::Boxed(b) => Cid::try_from(&b[..]).expect("made from a CID's bytes"),
        }
    }
}

/// Every CID met so far, numbered in order of arrival.
struct Keys {
    /// Numbers, found by the hash of their key. Keyed by a per-process random hasher: link
    /// CIDs in a hostile DAG are chosen by its author, so they must not be able to pick
    /// colliding buckets.
    table: HashTable<u32>,
    keys: Vec<Key>,
    hasher: RandomState,
}

impl Keys {
    fn new() -> Keys {
        Keys {
            table: HashTable::new(),
            keys: Vec::new(),
            hasher: RandomState::new(),
        }
    }

    /// The number of `cid`, given a new one if it is new.
    fn id(&mut self, cid: &Cid) -> u32 {
        let key = Key::of(cid);
        let hash = self.hasher.hash_one(&key);
        let Keys {
            table,
            keys,
            hasher,
        } = self;
        let next = u32::try_from(keys.len()).expect("fewer than 2^32 distinct blocks");
        match table.entry(
            hash,
            |&i| keys[i as usize] == key,
            |&i| hasher.hash_one(&keys[i as usize]),
        ) {
            Entry::Occupied(e) => return *e.get(),
            Entry::Vacant(v) => {
                v.insert(next);
            }
        }
        keys.push(key);
        next
    }

    /// Numbers `keys`, the first keys met, all at once: sized for them from the start rather
    /// than grown (and rehashed) as they come. Returns their numbers in order.
    fn adopt(&mut self, keys: Vec<Key>) -> Vec<u32> {
        assert!(self.keys.is_empty(), "adopt comes first");
        let n = u32::try_from(keys.len()).expect("fewer than 2^32 distinct blocks");
        self.table = HashTable::with_capacity(keys.len());
        self.keys = keys;
        let Keys {
            table,
            keys,
            hasher,
        } = self;
        (0..n)
            .map(|i| {
                let key = &keys[i as usize];
                match table.entry(
                    hasher.hash_one(key),
                    |&j| keys[j as usize] == *key,
                    |&j| hasher.hash_one(&keys[j as usize]),
                ) {
                    // The same key twice: one number for both, the second copy never used.
                    Entry::Occupied(e) => *e.get(),
                    Entry::Vacant(v) => {
                        v.insert(i);
                        i
                    }
                }
            })
            .collect()
    }

    fn cid(&self, id: u32) -> Cid {
        self.keys[id as usize].cid()
    }
}

/// A growable set of numbers.
#[derive(Default)]
struct Bits(Vec<u64>);

impl Bits {
    /// Adds `i`; false if it was there already.
    fn insert(&mut self, i: u32) -> bool {
        let (word, bit) = (i as usize / 64, 1u64 << (i % 64));
        if word >= self.0.len() {
            self.0.resize(word + 1, 0);
        }
        let new = self.0[word] & bit == 0;
        self.0[word] |= bit;
        new
    }

    fn contains(&self, i: u32) -> bool {
        self.0
            .get(i as usize / 64)
            .is_some_and(|w| w & (1u64 << (i % 64)) != 0)
    }
}

/// The blocks known to the collection and which of them are marked live.
pub(crate) struct Marker<'a> {
    store: &'a Store,
    keys: Keys,
    /// Blocks that have an index entry: their links are in `links`, or they have none.
    indexed: Bits,
    marked: Bits,
    marked_count: u64,
    /// The children of each indexed block that has any: a range of `edges`.
    links: HashMap<u32, (usize, u32)>,
    edges: Vec<u32>,
}

impl<'a> Marker<'a> {
    pub fn new(store: &'a Store) -> Marker<'a> {
        Marker {
            store,
            keys: Keys::new(),
            indexed: Bits::default(),
            marked: Bits::default(),
            marked_count: 0,
            links: HashMap::new(),
            edges: Vec::new(),
        }
    }

    /// Numbers the candidates, before anything else is numbered. Returns their numbers.
    pub fn candidates(&mut self, cids: impl Iterator<Item = Cid>) -> Vec<u32> {
        let keys = cids.map(|c| Key::of(&c)).collect();
        self.keys.adopt(keys)
    }

    /// The CID number `id` stands for (in its canonical form).
    pub fn cid(&self, id: u32) -> Cid {
        self.keys.cid(id)
    }

    /// Records the index entry of `cid`: it has exactly these links.
    pub fn indexed(&mut self, cid: &Cid, links: &[Cid]) {
        let id = self.keys.id(cid);
        self.indexed.insert(id);
        if links.is_empty() {
            return;
        }
        let start = self.edges.len();
        // An entry met twice (it cannot be, the index is keyed by the canonical CID) would
        // keep both lists: more children marked, never fewer.
        if let Some(&(s, n)) = self.links.get(&id) {
            self.edges.extend_from_within(s..s + n as usize);
        }
        for c in links {
            let child = self.keys.id(c);
            self.edges.push(child);
        }
        let n = u32::try_from(self.edges.len() - start).expect("fewer than 2^32 links");
        self.links.insert(id, (start, n));
    }

    pub fn is_marked(&self, id: u32) -> bool {
        self.marked.contains(id)
    }

    /// How many distinct CIDs are marked (present or not).
    pub fn marked_count(&self) -> u64 {
        self.marked_count
    }

    /// Marks `root` and everything below it.
    pub fn mark(&mut self, root: &Cid) -> Result<(), GcError> {
        let mut stack = vec![self.keys.id(root)];
        while let Some(id) = stack.pop() {
            if !self.marked.insert(id) {
                continue;
            }
            self.marked_count += 1;
            if let Some(&(s, n)) = self.links.get(&id) {
                stack.extend_from_slice(&self.edges[s..s + n as usize]);
            } else if !self.indexed.contains(id) {
                // Not in the index (a journal not yet ingested, or a block written during
                // this collection): parse the block itself, if it is here.
                let cid = self.keys.cid(id);
                if let Some(data) = self.store.blocks().get_unverified(&cid)? {
                    if let Ok(children) = codec::links_of(&cid, &data) {
                        for c in &children {
                            stack.push(self.keys.id(c));
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use cairn_store::HashAlg;

    use super::*;

    fn flipped(cid: &Cid) -> Cid {
        let mut d = cid.hash().digest().to_vec();
        *d.last_mut().unwrap() ^= 1;
        Cid::new_v1(
            cid.codec(),
            multihash::Multihash::wrap(cid.hash().code(), &d).unwrap(),
        )
    }

    #[test]
    fn keys_tell_apart_every_byte_of_the_digest_and_the_codec() {
        let mut keys = Keys::new();
        let a = Cid::new_v1(0x55, HashAlg::Sha2_256.digest(b"a"));
        let a_pb = Cid::new_v1(0x70, *a.hash());
        let ids = [a, flipped(&a), a_pb].map(|c| keys.id(&c));
        assert_eq!(ids, [0, 1, 2]);
        assert_eq!(keys.id(&a), 0);
        for (i, c) in [a, flipped(&a), a_pb].iter().enumerate() {
            assert_eq!(keys.cid(i as u32), *c);
        }
    }

    #[test]
    fn adopted_keys_are_numbered_in_order_and_met_again() {
        let cids: Vec<Cid> = (0..1000u32)
            .map(|i| Cid::new_v1(0x55, HashAlg::Sha2_256.digest(&i.to_le_bytes())))
            .collect();
        let mut keys = Keys::new();
        let mut adopted: Vec<Key> = cids.iter().map(Key::of).collect();
        adopted.push(Key::of(&cids[7]));
        let ids = keys.adopt(adopted);
        assert_eq!(ids[..1000], (0..1000).collect::<Vec<u32>>());
        assert_eq!(ids[1000], 7, "a key met twice has one number");
        assert_eq!(keys.id(&cids[999]), 999);
        assert_eq!(keys.id(&flipped(&cids[0])), 1001);
    }

    #[test]
    fn a_cid_v0_and_its_v1_are_one_key() {
        let mut keys = Keys::new();
        let v0 = Cid::new_v0(HashAlg::Sha2_256.digest(b"node")).unwrap();
        let v1 = cairn_store::canonical(&v0);
        assert_eq!(keys.id(&v0), keys.id(&v1));
    }

    #[test]
    fn other_multihashes_are_boxed_and_round_trip() {
        let mut keys = Keys::new();
        let long = Cid::new_v1(
            0x55,
            multihash::Multihash::wrap(0x13, &[7u8; 64]).unwrap(), // sha2-512
        );
        let identity = Cid::new_v1(0x55, multihash::Multihash::wrap(0, b"hi").unwrap());
        let big_codec = Cid::new_v1(0x1_0000, *long.hash());
        for c in [long, identity, big_codec] {
            let id = keys.id(&c);
            assert!(matches!(keys.keys[id as usize], Key::Boxed(_)));
            assert_eq!(keys.cid(id), c);
        }
        assert_eq!(std::mem::size_of::<Key>(), 40);
    }

    #[test]
    fn bits() {
        let mut b = Bits::default();
        assert!(b.insert(130));
        assert!(!b.insert(130));
        assert!(b.contains(130) && !b.contains(129) && !b.contains(10_000));
    }
}
