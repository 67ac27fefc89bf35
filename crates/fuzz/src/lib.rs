//! The bodies of cairn's fuzz targets: one function per decoder of bytes that cairn takes from
//! strangers (blocks from peers, CAR files, journals left by crashed writers).
//!
//! `fuzz/` (a `cargo fuzz` project, nightly) calls each function from a `fuzz_target!`;
//! `tests/regressions.rs` replays every input under `fuzz/regressions/{target}/` on stable,
//! so a crash the fuzzer once found stays fixed. Each function must return normally for
//! every input: a panic, an overflow (debug assertions are on in both builds), a hang or an
//! allocation out of proportion to the input is a finding.
//!
//! Beyond "does not panic", the targets check what the decoders promise: a dag-pb node that
//! decodes re-encodes to a node that decodes the same; `links` agrees with the full decoder;
//! the HAMT and DAG walks finish within bounds whatever shape the DAG has.
//!
//! ```
//! cairn_fuzz::dagpb(b"\x12\x02\x0a\x00");
//! cairn_fuzz::car(&[0x80; 64]);
//! ```

use std::{collections::HashMap, sync::Arc};

use bytes::Bytes;
use cairn_store::{
    codec::{self, codes, dagpb},
    journal, BlockSource, Cid, HashAlg, StoreError,
};
use cairn_unixfs::{
    car::CarReader,
    data::Data,
    get, hamt,
    node::{HamtNode, Node},
    resolve, FileReader,
};

mod bitswap;
mod ipns;
mod ledger;
pub use bitswap::bitswap;
pub use ipns::ipns;
pub use ledger::ledger;

/// A target: one input in, a panic on a finding.
pub type Target = fn(&[u8]);

/// Every target, by the name `cargo fuzz` and the regression directories know it.
pub const TARGETS: &[(&str, Target)] = &[
    ("dagpb", dagpb),
    ("unixfs", unixfs),
    ("hamt", hamt_shard),
    ("dagcbor", dagcbor),
    ("dagjson", dagjson),
    ("car", car),
    ("journal", journal_records),
    ("dag", dag),
    ("bitswap", bitswap),
    ("app", app),
    ("ledger", ledger),
    ("ipns", ipns),
    ("git", git),
    ("gitdoc", gitdoc),
    ("gitbundle", gitbundle),
    ("gitcar", gitcar),
];

/// A dag-pb block: the full decoder, the link extractor the index uses, and a round trip.
pub fn dagpb(data: &[u8]) {
    let block = Bytes::copy_from_slice(data);
    let full = dagpb::PbNode::decode(&block);
    let links = dagpb::links(data);
    assert_eq!(full.is_ok(), links.is_ok(), "decode and links disagree");
    if let (Ok(node), Ok(links)) = (full, links) {
        let cids: Vec<Cid> = node.links.iter().map(|l| l.cid).collect();
        assert_eq!(cids, links);
        let again = dagpb::PbNode::decode(&Bytes::from(node.encode())).expect("re-encoded node");
        assert_eq!(again, node);
    }
}

/// A dag-pb block read as UnixFS (files, directories, shards, symlinks, mode and mtime), and
/// the attributes the index keeps of it, which must be what the decoder makes of it.
pub fn unixfs(data: &[u8]) {
    use cairn_store::codec::unixfs::{AttrKind, Attrs};
    let _ = Data::decode(&Bytes::copy_from_slice(data));
    let cid = Cid::new_v1(codes::DAG_PB, HashAlg::Sha2_256.digest(data));
    let attrs = Attrs::of_dag_pb(data);
    let node = Node::decode(&cid, Bytes::copy_from_slice(data));
    if let Ok(Node::File(f)) = &node {
        let parts: u64 = f.children.iter().map(|(_, s)| *s).sum();
        assert_eq!(f.size, f.inline.len() as u64 + parts);
    }
    // Attributes are read without validating links; where the decoder accepts the node,
    // they must agree with it.
    if let Ok(node) = &node {
        let want = match node {
            Node::File(f) => Some((AttrKind::File, f.size)),
            Node::Directory(d) => Some((AttrKind::Directory, d.links.len() as u64)),
            Node::HamtShard(h) => Some((AttrKind::Directory, h.links.len() as u64)),
            Node::Symlink { target, .. } => Some((AttrKind::Symlink, target.len() as u64)),
            Node::Opaque { .. } => None,
        };
        assert_eq!(attrs.map(|a| (a.kind, a.size)), want, "attributes disagree");
        if let Some(a) = attrs {
            assert_eq!((a.mode, a.mtime), (node.meta().mode, node.meta().mtime));
            // And they survive the index's encoding.
            let mut buf = Vec::new();
            a.encode_into(&mut buf);
            let mut r = cairn_store::codec::pb::Reader::new(&buf);
            assert_eq!(Attrs::decode_from(&mut r), Some(a));
        }
    }
}

/// An app node (dag-cbor, from any peer): decodes or is refused; what decodes re-encodes to
/// a node that decodes the same, with every offset list sorted and non-overlapping.
pub fn app(data: &[u8]) {
    let Ok(node) = cairn_app::AppNode::decode(data) else {
        return;
    };
    for offsets in node.refs.values() {
        assert!(!offsets.is_empty());
        for w in offsets.windows(2) {
            assert!(w[1] >= w[0] + cairn_app::LEN as u64);
        }
    }
    let (_, bytes) = node.encode().expect("a decoded node encodes");
    assert_eq!(
        cairn_app::AppNode::decode(&bytes).expect("re-decodes"),
        node
    );
}

/// Every CID names this one block: the most hostile HAMT there is, a shard whose sub-shards
/// are all itself.
struct OneBlock(Bytes);

impl BlockSource for OneBlock {
    fn get(&self, _: &Cid) -> Result<Option<Bytes>, StoreError> {
        Ok(Some(self.0.clone()))
    }
    fn has(&self, _: &Cid) -> Result<bool, StoreError> {
        Ok(true)
    }
}

/// A HAMT shard: listing and lookups, with every link leading back to the shard itself.
pub fn hamt_shard(data: &[u8]) {
    let block = Bytes::copy_from_slice(data);
    let cid = Cid::new_v1(codes::DAG_PB, HashAlg::Sha2_256.digest(data));
    let Ok(Node::HamtShard(root)) = Node::decode(&cid, block.clone()) else {
        return;
    };
    let src = OneBlock(block);
    if let Ok(entries) = hamt::list_limited(&src, &root, 100_000) {
        assert!(
            entries.len() <= root.links.len(),
            "a shard listed itself twice"
        );
    }
    for name in names(&root)
        .into_iter()
        .chain(["", "a", "index.html"].map(String::from))
    {
        let _ = hamt::lookup(&src, &root, &name);
    }
}

fn names(root: &HamtNode) -> Vec<String> {
    root.links
        .iter()
        .take(16)
        .filter_map(|l| match hamt::classify(l, root.fanout) {
            Ok(hamt::ShardLink::Entry(_, n)) => Some(n.to_owned()),
            _ => None,
        })
        .collect()
}

/// DAG-CBOR link extraction (the index records every block's links).
pub fn dagcbor(data: &[u8]) {
    let _ = codec::links(codes::DAG_CBOR, data);
}

/// A git object (git-raw), its links read with sha1 and with sha2-256 ids: every link a
/// git-raw CID of the same hash.
pub fn git(data: &[u8]) {
    for (len, code) in [(20, 0x11), (32, 0x12)] {
        if let Ok(links) = codec::git::links(data, len) {
            assert!(links
                .iter()
                .all(|l| l.codec() == codes::GIT_RAW && l.hash().code() == code));
        }
    }
}

/// A repository document (a `cairn://` URL's target, from any peer): one that decodes is
/// the one canonical spelling of itself.
pub fn gitdoc(data: &[u8]) {
    if let Ok(d) = cairn_git::doc::Document::decode(data) {
        assert_eq!(d.encode(), data);
    }
}

/// A bundle's header: read within its bounds; what was read writes out as a header that
/// reads back the same, and the reader stops at the pack.
pub fn gitbundle(data: &[u8]) {
    let mut r = data;
    if let Ok((h, used)) = cairn_git::bundle::Header::read(&mut r) {
        assert_eq!(
            used as usize + r.len(),
            data.len(),
            "the reader is not at the pack"
        );
        let mut out = Vec::new();
        h.write(&mut out).expect("to a Vec");
        let (again, n) = cairn_git::bundle::Header::read(&mut out.as_slice()).expect("re-read");
        assert_eq!(again, h);
        assert_eq!(n as usize, out.len());
    }
}

/// Object mode's CAR of git objects, turned into a pack: within its bounds, and a pack
/// of as many objects as its header says.
pub fn gitcar(data: &[u8]) {
    let mut pack = Vec::new();
    let open = || Ok(data);
    if let Ok(n) = cairn_git::objects::pack_from_car(open, cairn_git::doc::Format::Sha1, &mut pack)
    {
        assert_eq!(&pack[..4], b"PACK");
        assert_eq!(u32::from_be_bytes(pack[8..12].try_into().unwrap()), n);
    }
}

/// DAG-JSON link extraction.
pub fn dagjson(data: &[u8]) {
    let _ = codec::links(codes::DAG_JSON, data);
}

/// A CAR file, v1 or v2, read to its end.
pub fn car(data: &[u8]) {
    let Ok(mut r) = CarReader::new(data) else {
        return;
    };
    while let Ok(Some((_, block))) = r.next_block() {
        assert!(block.len() <= data.len());
    }
}

/// Index journal records, as a crashed writer may leave them.
pub fn journal_records(data: &[u8]) {
    let (records, _) = journal::parse(data);
    assert!(records.len() <= data.len() / 9 + 1);
    // An index record, directory summary included: what decodes survives its encoding.
    if let Some(meta) = cairn_store::BlockMeta::decode(data) {
        assert_eq!(cairn_store::BlockMeta::decode(&meta.encode()), Some(meta));
    }
}

/// Blocks at the CIDs a CAR gives them, hashes unchecked: the fuzzer can then shape DAGs
/// (sharing, cycles, depth) by editing CARs, which it could not do if every link had to
/// match a hash. Hash checking is the store's job and is not what this target tests.
struct CarBlocks(HashMap<Cid, Bytes>);

impl BlockSource for CarBlocks {
    fn get(&self, cid: &Cid) -> Result<Option<Bytes>, StoreError> {
        Ok(self.0.get(&cairn_store::canonical(cid)).cloned())
    }
    fn size(&self, cid: &Cid) -> Result<Option<u64>, StoreError> {
        Ok(self
            .0
            .get(&cairn_store::canonical(cid))
            .map(|b| b.len() as u64))
    }
    fn has(&self, cid: &Cid) -> Result<bool, StoreError> {
        Ok(self.0.contains_key(&cairn_store::canonical(cid)))
    }
}

/// Files larger than this are not read whole (a small DAG can describe an enormous file by
/// repeating blocks; reading it is proportional to its size, which is legal, just slow).
const READ_WHOLE: u64 = 1 << 20;

/// A small CAR imported, then listed, resolved, read and exported through the code that
/// `cairn ls`, `cat`, `get`, `dag export` and the mount use.
pub fn dag(data: &[u8]) {
    let Ok(mut r) = CarReader::new(data) else {
        return;
    };
    let roots = r.roots().to_vec();
    let mut blocks = HashMap::new();
    while let Ok(Some((cid, block))) = r.next_block() {
        blocks.insert(cairn_store::canonical(&cid), block);
    }
    let src = Arc::new(CarBlocks(blocks));
    let cache = cairn_fuse::cache::NodeCache::new(src.clone(), 16 << 20);
    for root in roots.iter().take(4) {
        walk(&*src, &cache, root);
    }
    let _ = cairn_unixfs::car::export(&*src, &roots, std::io::sink(), &());
}

/// True if the tree under `root` has at most 256 nodes, none reached twice, and no file over
/// [`READ_WHOLE`]: then `get` writes output in proportion to the input. (`get` of a DAG that
/// repeats a directory is legal and writes each copy, like `ipfs get`: its output can be
/// exponential in the DAG's size, which is not a finding.)
fn small_tree(src: &dyn BlockSource, root: &Cid) -> bool {
    let mut seen = std::collections::HashSet::new();
    let mut stack = vec![*root];
    while let Some(cid) = stack.pop() {
        if !seen.insert(cairn_store::canonical(&cid)) || seen.len() > 256 {
            return false;
        }
        match resolve::load(src, &cid) {
            Ok(node) if node.is_dir() => match resolve::list(src, &node) {
                Ok(entries) => stack.extend(entries.iter().map(|e| e.cid)),
                Err(_) => return true,
            },
            Ok(Node::File(f)) if f.size > READ_WHOLE => return false,
            _ => {}
        }
    }
    true
}

fn walk(src: &dyn BlockSource, cache: &cairn_fuse::cache::NodeCache, root: &Cid) {
    let Ok(node) = resolve::load(src, root) else {
        return;
    };
    if node.is_dir() {
        // `cairn ls`, the mount's listing, a lookup of each name, and `cairn get`.
        let Ok(entries) = resolve::list(src, &node) else {
            return;
        };
        let _ = cache.listing(root, &node);
        for e in entries.iter().take(8) {
            let _ = resolve::resolve(src, root, &[e.name()]);
            if let Ok(child) = cache.entry_node(&e.cid) {
                if let Node::File(f) = &*child {
                    if f.size <= READ_WHOLE {
                        let _ = FileReader::from_node(cache, &e.cid, child.clone())
                            .and_then(|r| r.read_at(0, f.size as usize));
                    }
                }
            }
        }
        if small_tree(src, root) {
            if let Ok(dir) = tempfile::tempdir() {
                let _ = get::get(src, root, &dir.path().join("out"), &());
            }
        }
        return;
    }
    // `cairn cat` and the mount's reads: whole, and a range in the middle.
    if let Ok(reader) = FileReader::open(src, root) {
        let size = reader.size();
        if size <= READ_WHOLE {
            let mut out = Vec::new();
            let _ = get::cat(src, root, &mut out, &());
            if let Ok(r) = FileReader::from_node(cache, root, Arc::new(node)) {
                let mut mid = Vec::new();
                if r.read_into(size / 3, size / 2, &mut mid).is_ok() {
                    let end = out.len().min((size / 3 + size / 2) as usize);
                    if out.len() as u64 == size {
                        assert_eq!(mid, out[(size / 3) as usize..end], "two reads disagree");
                    }
                }
            }
        }
    }
}
