//! HAMT-sharded directories as kubo writes them: murmur3-x64-64 of each name, consumed from
//! the most significant bit, `log2(fanout)` bits per level; link names are the bucket index in
//! upper-case hex (padded), followed by the entry name for entries; a bucket holding two or
//! more entries becomes a sub-shard.

use bytes::Bytes;
use cairn_store::{codec::dagpb::PbLink, BlockSource, Cid};

use crate::{node::Node, UnixfsError};

/// The multicodec of murmur3-x64-64, the only HAMT hash kubo uses.
pub const MURMUR3_X64_64: u64 = 0x22;

/// kubo's default fanout.
pub const DEFAULT_FANOUT: u64 = 256;

/// MurmurHash3 x64 128-bit with seed 0; returns the first 64-bit half (`h1`), as Go's
/// `murmur3.Sum64` does.
pub fn murmur3_x64_64(key: &[u8]) -> u64 {
    const C1: u64 = 0x87c3_7b91_1142_53d5;
    const C2: u64 = 0x4cf5_ad43_2745_937f;
    let (mut h1, mut h2) = (0u64, 0u64);
    let blocks = key.chunks_exact(16);
    let tail = blocks.remainder();
    for b in blocks {
        let mut k1 = u64::from_le_bytes(b[..8].try_into().expect("8 bytes"));
        let mut k2 = u64::from_le_bytes(b[8..].try_into().expect("8 bytes"));
        k1 = k1.wrapping_mul(C1).rotate_left(31).wrapping_mul(C2);
        h1 ^= k1;
        h1 = h1
            .rotate_left(27)
            .wrapping_add(h2)
            .wrapping_mul(5)
            .wrapping_add(0x52dc_e729);
        k2 = k2.wrapping_mul(C2).rotate_left(33).wrapping_mul(C1);
        h2 ^= k2;
        h2 = h2
            .rotate_left(31)
            .wrapping_add(h1)
            .wrapping_mul(5)
            .wrapping_add(0x3849_5ab5);
    }
    let (mut k1, mut k2) = (0u64, 0u64);
    for (i, &byte) in tail.iter().enumerate() {
        if i < 8 {
            k1 ^= (byte as u64) << (8 * i);
        } else {
            k2 ^= (byte as u64) << (8 * (i - 8));
        }
    }
    if tail.len() > 8 {
        h2 ^= k2.wrapping_mul(C2).rotate_left(33).wrapping_mul(C1);
    }
    if !tail.is_empty() {
        h1 ^= k1.wrapping_mul(C1).rotate_left(31).wrapping_mul(C2);
    }
    let len = key.len() as u64;
    h1 ^= len;
    h2 ^= len;
    h1 = h1.wrapping_add(h2);
    h2 = h2.wrapping_add(h1);
    h1 = fmix64(h1);
    h2 = fmix64(h2);
    h1.wrapping_add(h2)
}

fn fmix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^ (k >> 33)
}

/// The bits of a name's hash, consumed level by level.
#[derive(Debug, Clone, Copy)]
pub struct HashBits {
    hash: u64,
    consumed: u32,
}

impl HashBits {
    pub fn new(name: &str) -> Self {
        HashBits {
            hash: murmur3_x64_64(name.as_bytes()),
            consumed: 0,
        }
    }

    /// The bucket index at the next level, or `None` when the 64 bits are used up.
    pub fn next(&mut self, bits: u32) -> Option<usize> {
        if self.consumed + bits > 64 {
            return None;
        }
        let idx = (self.hash << self.consumed) >> (64 - bits);
        self.consumed += bits;
        Some(idx as usize)
    }
}

/// `log2(fanout)`.
pub fn bits_of(fanout: u64) -> u32 {
    fanout.trailing_zeros()
}

/// Width of a bucket prefix in hex digits (2 for fanout 256).
pub fn prefix_len(fanout: u64) -> usize {
    format!("{:X}", fanout - 1).len()
}

pub fn prefix(idx: usize, fanout: u64) -> String {
    format!("{:0width$X}", idx, width = prefix_len(fanout))
}

/// The occupied-bucket bitfield as go-bitfield serialises it: a big-endian integer of
/// `fanout/8` bytes with leading zero bytes stripped.
pub fn bitfield(occupied: impl IntoIterator<Item = usize>, fanout: u64) -> Vec<u8> {
    let n = (fanout / 8) as usize;
    let mut bytes = vec![0u8; n];
    for i in occupied {
        bytes[n - 1 - i / 8] |= 1 << (i % 8);
    }
    let first = bytes.iter().position(|&b| b != 0).unwrap_or(n);
    bytes.split_off(first)
}

/// What a link of a shard is.
pub enum ShardLink<'a> {
    /// A sub-shard for bucket `idx`.
    Shard(usize),
    /// An entry named `name` in bucket `idx`.
    Entry(usize, &'a str),
}

/// Classifies a shard link by its name.
pub fn classify(link: &PbLink, fanout: u64) -> Result<ShardLink<'_>, UnixfsError> {
    let name = link.name();
    let plen = prefix_len(fanout);
    let bad = || UnixfsError::BadUnixfs(format!("HAMT link name {name:?} has no bucket prefix"));
    let (p, rest) = name.split_at_checked(plen).ok_or_else(bad)?;
    if !p
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b))
    {
        return Err(bad());
    }
    let idx = usize::from_str_radix(p, 16).map_err(|_| bad())?;
    if idx as u64 >= fanout {
        return Err(bad());
    }
    Ok(if rest.is_empty() {
        ShardLink::Shard(idx)
    } else {
        ShardLink::Entry(idx, rest)
    })
}

fn load_shard(src: &dyn BlockSource, cid: &Cid) -> Result<crate::node::HamtNode, UnixfsError> {
    let block = src.get(cid)?.ok_or(UnixfsError::MissingBlock(*cid))?;
    match Node::decode(cid, block)? {
        Node::HamtShard(h) => Ok(h),
        _ => Err(UnixfsError::InvalidNode {
            cid: *cid,
            reason: "HAMT link to a node that is not a shard".into(),
        }),
    }
}

/// Finds `name` in the HAMT whose root shard is `root`, fetching only the shards on its path.
pub fn lookup(
    src: &dyn BlockSource,
    root: &crate::node::HamtNode,
    name: &str,
) -> Result<Option<PbLink>, UnixfsError> {
    let mut bits = HashBits::new(name);
    let mut shard = std::borrow::Cow::Borrowed(root);
    loop {
        let b = bits_of(shard.fanout);
        let Some(idx) = bits.next(b) else {
            return Ok(None);
        };
        let mut next = None;
        for link in &shard.links {
            match classify(link, shard.fanout)? {
                ShardLink::Entry(i, n) if i == idx && n == name => return Ok(Some(link.clone())),
                ShardLink::Shard(i) if i == idx => next = Some(link.cid),
                _ => {}
            }
        }
        match next {
            Some(cid) => shard = std::borrow::Cow::Owned(load_shard(src, &cid)?),
            None => return Ok(None),
        }
    }
}

/// The most entries a listing returns before it is an error (see [`list_limited`]).
pub const MAX_LISTING: usize = 1 << 20;

/// Every entry of the HAMT, depth first in link order, as links whose names are the entry
/// names. Needs every shard block, none of the entries'. At most [`MAX_LISTING`] entries.
pub fn list(
    src: &dyn BlockSource,
    root: &crate::node::HamtNode,
) -> Result<Vec<PbLink>, UnixfsError> {
    list_limited(src, root, MAX_LISTING)
}

/// Like [`list`], with a cap on the entries: a listing that would hold more is
/// [`UnixfsError::TooLarge`].
///
/// Written against hostile DAGs: each shard block is loaded once (a shard that appears twice
/// cannot be part of a valid HAMT, since its entries' hash prefixes place it in one bucket
/// only, and a DAG whose shards all link to one shard would otherwise take time exponential
/// in its depth), sub-shards must have their parent's fanout, and the depth is bounded by the
/// 64 bits of the hash. So the work is proportional to the bytes of the distinct shards.
pub fn list_limited(
    src: &dyn BlockSource,
    root: &crate::node::HamtNode,
    max_entries: usize,
) -> Result<Vec<PbLink>, UnixfsError> {
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let bits = bits_of(root.fanout);
    // Depth-first, in link order: a stack of shards with the index of their next link.
    let mut stack: Vec<(std::borrow::Cow<'_, crate::node::HamtNode>, usize)> =
        vec![(std::borrow::Cow::Borrowed(root), 0)];
    while let Some((shard, i)) = stack.last_mut() {
        let Some(link) = shard.links.get(*i) else {
            stack.pop();
            continue;
        };
        *i += 1;
        let fanout = shard.fanout;
        match classify(link, fanout)? {
            ShardLink::Entry(_, name) => {
                if out.len() >= max_entries {
                    return Err(UnixfsError::TooLarge(format!(
                        "HAMT directory has more than {max_entries} entries"
                    )));
                }
                out.push(PbLink {
                    cid: link.cid,
                    name: Some(name.to_owned()),
                    tsize: link.tsize,
                });
            }
            ShardLink::Shard(_) => {
                let cid = link.cid;
                if (stack.len() as u32) * bits >= 64 {
                    return Err(UnixfsError::InvalidNode {
                        cid,
                        reason: "HAMT deeper than its hash".into(),
                    });
                }
                if !seen.insert(cairn_store::canonical(&cid)) {
                    return Err(UnixfsError::InvalidNode {
                        cid,
                        reason: "HAMT shard linked more than once".into(),
                    });
                }
                let child = load_shard(src, &cid)?;
                if child.fanout != fanout {
                    return Err(UnixfsError::InvalidNode {
                        cid,
                        reason: format!("HAMT shard has fanout {} under {fanout}", child.fanout),
                    });
                }
                stack.push((std::borrow::Cow::Owned(child), 0));
            }
        }
    }
    Ok(out)
}

/// An in-memory HAMT being built from a full list of entries.
pub(crate) struct Builder {
    fanout: u64,
    root: Level,
}

pub(crate) struct Level {
    pub slots: Vec<Slot>,
}

pub(crate) enum Slot {
    Empty,
    Entry(usize, HashBits),
    Child(Box<Level>),
}

impl Builder {
    pub fn new(fanout: u64) -> Self {
        Builder {
            fanout,
            root: Level::new(fanout),
        }
    }

    /// Inserts entry number `idx`, named `name`.
    pub fn insert(&mut self, idx: usize, name: &str) -> Result<(), UnixfsError> {
        let bits = bits_of(self.fanout);
        let fanout = self.fanout;
        let mut level = &mut self.root;
        let mut hb = HashBits::new(name);
        loop {
            let Some(b) = hb.next(bits) else {
                return Err(UnixfsError::Unsupported(format!(
                    "HAMT: names hash identically to {name:?}"
                )));
            };
            let slot = &mut level.slots[b];
            match slot {
                Slot::Empty => {
                    *slot = Slot::Entry(idx, hb);
                    return Ok(());
                }
                Slot::Entry(..) => {
                    let Slot::Entry(other, mut other_bits) = std::mem::replace(slot, Slot::Empty)
                    else {
                        unreachable!()
                    };
                    let mut child = Level::new(fanout);
                    let ob = other_bits.next(bits).ok_or_else(|| {
                        UnixfsError::Unsupported(format!(
                            "HAMT: names hash identically to {name:?}"
                        ))
                    })?;
                    child.slots[ob] = Slot::Entry(other, other_bits);
                    *slot = Slot::Child(Box::new(child));
                    let Slot::Child(c) = slot else { unreachable!() };
                    level = c;
                }
                Slot::Child(c) => level = c,
            }
        }
    }

    pub fn into_root(self) -> Level {
        self.root
    }
}

impl Level {
    fn new(fanout: u64) -> Self {
        Level {
            slots: (0..fanout).map(|_| Slot::Empty).collect(),
        }
    }
}

/// Bytes of a bitfield for tests and diagnostics.
pub fn bitfield_bytes(b: &Bytes) -> Vec<usize> {
    let n = b.len();
    let mut out = Vec::new();
    for (j, byte) in b.iter().enumerate() {
        for bit in 0..8 {
            if byte & (1 << bit) != 0 {
                out.push((n - 1 - j) * 8 + bit);
            }
        }
    }
    out.sort_unstable();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur3_matches_the_spec_example() {
        // ipfs/specs unixfs.md: "470.txt" hashes to 00 6e 88 df ...
        let h = murmur3_x64_64(b"470.txt").to_be_bytes();
        assert_eq!(&h[..4], &[0x00, 0x6e, 0x88, 0xdf]);
        let mut bits = HashBits::new("470.txt");
        assert_eq!(bits.next(8), Some(0x00));
        assert_eq!(bits.next(8), Some(0x6e));
    }

    #[test]
    fn bitfield_strips_leading_zero_bytes() {
        assert_eq!(bitfield([0usize, 9], 256), vec![0x02, 0x01]);
        assert_eq!(bitfield([255usize], 256).len(), 32);
        assert_eq!(
            bitfield_bytes(&Bytes::from(bitfield([3usize, 200], 256))),
            vec![3, 200]
        );
    }

    use crate::data::{Data, DataType};
    use cairn_store::{codec::dagpb::PbNode, HashAlg, Store};

    /// Stores a HAMT shard with these links and returns its CID and node.
    fn put_shard(store: &Store, links: Vec<PbLink>, fanout: u64) -> (Cid, crate::node::HamtNode) {
        let mut data = Data::new(DataType::HamtShard);
        data.hash_type = Some(MURMUR3_X64_64);
        data.fanout = Some(fanout);
        data.data = Some(Bytes::new());
        let block = PbNode {
            links,
            data: Some(Bytes::from(data.encode())),
        }
        .encode();
        let cid = Cid::new_v1(0x70, HashAlg::Sha2_256.digest(&block));
        store.put(&cid, &block).unwrap();
        match Node::decode(&cid, Bytes::from(block)).unwrap() {
            Node::HamtShard(h) => (cid, h),
            _ => unreachable!(),
        }
    }

    fn file(store: &Store, body: &[u8]) -> Cid {
        let cid = Cid::new_v1(0x55, HashAlg::Sha2_256.digest(body));
        store.put(&cid, body).unwrap();
        cid
    }

    /// Seven levels of 256 sub-shard links, every one to the same shard below: a listing
    /// that followed each link would visit 256^7 shards. It must fail at once instead.
    #[test]
    fn shards_that_all_link_to_one_shard_are_refused_quickly() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::init(dir.path()).unwrap();
        let f = file(&store, b"x");
        let (mut below, mut root) = put_shard(
            &store,
            vec![PbLink::new(f, "00a", 1), PbLink::new(f, "01b", 1)],
            256,
        );
        for _ in 0..7 {
            let links = (0..256)
                .map(|i| PbLink::new(below, prefix(i, 256), 1))
                .collect();
            (below, root) = put_shard(&store, links, 256);
        }
        let t = std::time::Instant::now();
        let err = list(&store, &root).unwrap_err();
        assert!(err.to_string().contains("more than once"), "{err}");
        assert!(t.elapsed() < std::time::Duration::from_secs(1));
    }

    #[test]
    fn listings_are_capped_and_fanouts_must_agree() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::init(dir.path()).unwrap();
        let f = file(&store, b"y");
        let entries: Vec<PbLink> = (0..10)
            .map(|i| PbLink::new(f, format!("{}n{i}", prefix(i, 256)), 1))
            .collect();
        let (_, root) = put_shard(&store, entries, 256);
        assert_eq!(list(&store, &root).unwrap().len(), 10);
        let err = list_limited(&store, &root, 5).unwrap_err();
        assert!(matches!(err, UnixfsError::TooLarge(_)), "{err}");

        let (small, _) = put_shard(&store, vec![PbLink::new(f, "0a", 1)], 16);
        let (_, root) = put_shard(&store, vec![PbLink::new(small, "00", 1)], 256);
        let err = list(&store, &root).unwrap_err();
        assert!(err.to_string().contains("fanout"), "{err}");
    }

    #[test]
    fn prefixes() {
        assert_eq!(prefix(10, 256), "0A");
        assert_eq!(prefix(3, 16), "3");
        assert_eq!(prefix(700, 1024), "2BC");
    }
}
