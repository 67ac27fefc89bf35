//! Release lists: what a name's owner has released, as a hash chain anyone can check. A list
//! is one dag-cbor block,
//!
//! ```text
//! {type: "cairn/releases/1", name: "k51…", seq: N,
//!  versions: [{v: "1.2", cid: <link>, at: "2026-12-07T12:00:00Z", notes?: "…", yanked?: "why"}],
//!  prev: <link to the list before> | null,
//!  older?: <link to the list its older entries spilled into>}
//! ```
//!
//! and a name's IPNS record points at its newest list (`/ipfs/<list>`). Each list is the one
//! before plus exactly one change: a version appended, or one yanked (kept, with the reason,
//! never `latest`). A version, once released, never names another CID.
//!
//! **Spilling.** A list block stays under [`MAX_LIST`]: when the next one would not, it starts
//! again with only the change, and `older` links the list before it, whole. The name's
//! versions are then the older list's (its own `older` included), with this block's entries
//! applied in order: a version not seen before is appended; one seen before may only be
//! yanked (the same entry, gaining a reason), and stays where it was released. A [`List`] is
//! that view, read with [`List::load`]; a [`Node`] is one block as written.
//!
//! | what | bound |
//! |---|---|
//! | a list block | [`MAX_LIST`] (1 MiB), checked before it is parsed |
//! | older lists behind a head | [`MAX_OLDER`], read one at a time |
//! | a head and its older lists together | [`MAX_CHAIN_BYTES`] |
//! | versions of a name | [`MAX_VERSIONS`], older lists' included |
//! | a version string | [`MAX_VERSION`] bytes of `A-Za-z0-9._+~-`, not `latest` |
//! | notes, a yank's reason | [`MAX_NOTES`] bytes |

use std::collections::{BTreeMap, HashMap, HashSet};

use cid::Cid;
use ipld_core::ipld::Ipld;

use crate::{name::Name, time};

/// The `type` of a release list.
pub const TYPE: &str = "cairn/releases/1";
/// The largest list block.
pub const MAX_LIST: usize = 1 << 20;
/// Older lists behind one head (a name spills into one about every MiB of lists, so
/// [`MAX_CHAIN_BYTES`] takes about 16).
pub const MAX_OLDER: usize = 128;
/// A head and its older lists, in bytes as encoded (4096 versions with 4 KiB of notes each).
pub const MAX_CHAIN_BYTES: usize = 16 << 20;
/// Versions of a name.
pub const MAX_VERSIONS: usize = 4096;
/// The longest version string.
pub const MAX_VERSION: usize = 64;
/// The longest notes or reason.
pub const MAX_NOTES: usize = 4096;
/// The one version string no release may take: it names the newest.
pub const LATEST: &str = "latest";

/// One released version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    pub v: String,
    pub cid: Cid,
    /// When it was released (RFC 3339, UTC).
    pub at: String,
    pub notes: Option<String>,
    /// Why it was withdrawn, if it was.
    pub yanked: Option<String>,
}

/// One list block, as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub name: Name,
    pub seq: u64,
    /// This block's own entries, in the order they were written.
    pub entries: Vec<Release>,
    pub prev: Option<Cid>,
    /// The list this one's older entries spilled into.
    pub older: Option<Cid>,
}

/// A name's release list as readers see it: a head block and every version it holds, its
/// older lists' included.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct List {
    pub name: Name,
    pub seq: u64,
    /// Every version, in the order they were released.
    pub versions: Vec<Release>,
    pub prev: Option<Cid>,
    pub older: Option<Cid>,
    /// Which of `versions` the head block itself holds, in its order.
    own: Vec<usize>,
    /// The older lists' blocks, in bytes.
    older_bytes: usize,
    /// How many older lists there are.
    depth: usize,
    /// The head block's size as read (or as written, for a list made here).
    size: usize,
}

/// Why a list, or a change to one, is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ListError {
    #[error("a release list of {0} bytes (at most {MAX_LIST})")]
    TooLarge(usize),
    #[error("not a release list: {0}")]
    Malformed(String),
    /// A block of some other kind (a name may point at anything; only lists are lists).
    #[error("not a release list")]
    NotAList,
    #[error("the list is {0}'s, not this name's")]
    OtherName(String),
    #[error(
        "{0:?} is not a version (1 to {MAX_VERSION} of A-Z a-z 0-9 . _ + ~ -, and not \"latest\")"
    )]
    BadVersion(String),
    #[error("version {0} is released already (a version never changes; release a new one)")]
    Exists(String),
    #[error("no version {0} in the list")]
    NoSuchVersion(String),
    #[error("version {0} is yanked already")]
    YankedAlready(String),
    #[error("more than {MAX_VERSIONS} versions")]
    TooMany,
    #[error("notes or a reason of {0} bytes (at most {MAX_NOTES})")]
    LongNotes(usize),
    #[error("its older lists: {0}")]
    Older(String),
}

/// Whether `c` is a list block's CID as lists are written (CIDv1, dag-cbor, sha2-256): a
/// list links only such, so a kept copy is checked by that one hash.
pub fn is_list_cid(c: &Cid) -> bool {
    c.version() == cid::Version::V1
        && c.codec() == 0x71
        && c.hash().code() == 0x12
        && c.hash().size() == 32
}

fn malformed(why: impl Into<String>) -> ListError {
    ListError::Malformed(why.into())
}

/// Checks a version string.
pub fn check_version(v: &str) -> Result<(), ListError> {
    // Never a dot first (`.`, `..`, hidden files) nor `versions.json`: versions are file
    // names in the mount's `name/` directories.
    let ok = !v.is_empty()
        && v.len() <= MAX_VERSION
        && v != LATEST
        && v != "versions.json"
        && !v.starts_with('.')
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._+~-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(ListError::BadVersion(v.chars().take(100).collect()))
    }
}

fn check_notes(n: &str) -> Result<(), ListError> {
    if n.len() > MAX_NOTES {
        return Err(ListError::LongNotes(n.len()));
    }
    Ok(())
}

/// The older lists a reader read last: one chain of them, each kept as a prefix of the newest
/// one's versions (with the yanks later lists made undone), so that a walk back through
/// many spills reads each block once and holds one list's versions.
#[derive(Default)]
pub struct OlderCache {
    /// The newest list's versions.
    versions: Vec<Release>,
    /// From the oldest to the newest.
    lists: Vec<Snapshot>,
}

/// One list of an [`OlderCache`] chain.
struct Snapshot {
    cid: Cid,
    /// Its block's size.
    size: usize,
    /// Its versions: this many of the newest's.
    len: usize,
    /// Versions released by lists older than it that it yanked.
    yanks: Vec<usize>,
    /// The list, without its versions.
    list: List,
}

impl OlderCache {
    /// The list at `c`, and its block's size, if it is here.
    fn get(&self, c: &Cid) -> Option<(List, usize)> {
        let k = self.lists.iter().position(|s| s.cid == *c)?;
        let s = &self.lists[k];
        let mut versions = self.versions.get(..s.len)?.to_vec();
        for later in &self.lists[k + 1..] {
            for &i in later.yanks.iter().filter(|&&i| i < s.len) {
                versions[i].yanked = None;
            }
        }
        Some((
            List {
                versions,
                ..s.list.clone()
            },
            s.size,
        ))
    }

    /// Keeps `list` (at `c`, `size` bytes, whose versions are kept later with
    /// [`OlderCache::set_versions`]) as the newest, on top of its own older list.
    fn push(&mut self, c: Cid, list: &List, size: usize, yanks: Vec<usize>) {
        let below = list
            .older
            .and_then(|o| self.lists.iter().position(|s| s.cid == o));
        self.lists.truncate(below.map_or(0, |k| k + 1));
        self.lists.push(Snapshot {
            cid: c,
            size,
            len: list.versions.len(),
            yanks,
            list: List {
                versions: Vec::new(),
                ..list.clone()
            },
        });
    }

    /// Keeps the chain up to `c` only, `versions` being its newest list's.
    fn set_versions(&mut self, c: Cid, versions: &[Release]) {
        if let Some(k) = self.lists.iter().position(|s| s.cid == c) {
            self.lists.truncate(k + 1);
            self.versions = versions.to_vec();
        } else {
            *self = OlderCache::default();
        }
    }
}

impl List {
    /// The empty list of `name`, before its first release.
    pub fn empty(name: Name) -> List {
        List {
            name,
            seq: 0,
            versions: Vec::new(),
            prev: None,
            older: None,
            own: Vec::new(),
            older_bytes: 0,
            depth: 0,
            size: 0,
        }
    }

    /// The list whose head block is `bytes` (of `name`, if given), its older lists read
    /// through `block`, one at a time.
    pub fn load(
        bytes: &[u8],
        name: Option<&Name>,
        block: impl FnMut(&Cid) -> Result<Vec<u8>, String>,
    ) -> Result<List, ListError> {
        Self::load_with(bytes, name, block, &mut OlderCache::default())
    }

    /// [`List::load`], reusing the older list in `cache` if it is this one's.
    pub fn load_with(
        bytes: &[u8],
        name: Option<&Name>,
        mut block: impl FnMut(&Cid) -> Result<Vec<u8>, String>,
        cache: &mut OlderCache,
    ) -> Result<List, ListError> {
        let head = Node::decode(bytes, name)?;
        // The older lists, newest first, until one that is cached or the first.
        let (mut base, mut base_bytes) = (List::empty(head.name), 0);
        let mut chain = Vec::new();
        let mut next = head.older;
        let mut total = bytes.len();
        let mut hit = false;
        // A name has each version once and yanks each once: more entries than that are
        // refused before they are all decoded.
        let mut entries = head.entries.len();
        while let Some(c) = next {
            if let Some((l, size)) = cache.get(&c).filter(|(l, _)| l.name == head.name) {
                base_bytes = l.older_bytes + size;
                base = l;
                hit = true;
                break;
            }
            if chain.len() >= MAX_OLDER {
                return Err(ListError::Older(format!("more than {MAX_OLDER} of them")));
            }
            let b = block(&c).map_err(ListError::Older)?;
            total += b.len();
            if total > MAX_CHAIN_BYTES {
                return Err(ListError::Older(format!(
                    "more than {MAX_CHAIN_BYTES} bytes of lists"
                )));
            }
            let n = Node::decode(&b, Some(&head.name))
                .map_err(|e| ListError::Older(format!("{c}: {e}")))?;
            entries += n.entries.len();
            if entries > 2 * MAX_VERSIONS {
                return Err(ListError::TooMany);
            }
            next = n.older;
            chain.push((c, n, b.len()));
        }
        let head_depth = match (head.older, hit) {
            (None, _) => 0,
            (Some(_), true) => base.depth + 1 + chain.len(),
            (Some(_), false) => chain.len(),
        };
        if total + base_bytes > MAX_CHAIN_BYTES || head_depth > MAX_OLDER {
            return Err(ListError::Older(format!(
                "more than {MAX_CHAIN_BYTES} bytes or {MAX_OLDER} lists"
            )));
        }
        let mut index: HashMap<String, usize> = base
            .versions
            .iter()
            .enumerate()
            .map(|(i, r)| (r.v.clone(), i))
            .collect();
        // Each list's depth: the number of lists older than it.
        let first = if hit { base.depth + 1 } else { 0 };
        for (depth, (c, n, len)) in (first..).zip(chain.into_iter().rev()) {
            let yanks = match base.apply(&mut index, n) {
                Ok(y) => y,
                Err(e) => {
                    *cache = OlderCache::default();
                    return Err(ListError::Older(format!("{c}: {e}")));
                }
            };
            // `base` is now the list at `c`, whole.
            (base.older_bytes, base.depth, base.size) = (base_bytes, depth, len);
            cache.push(c, &base, len, yanks);
            base_bytes += len;
        }
        if let Some(o) = head.older {
            cache.set_versions(o, &base.versions);
        }
        base.apply(&mut index, head)?;
        (base.older_bytes, base.depth, base.size) = (base_bytes, head_depth, bytes.len());
        Ok(base)
    }

    /// Applies block `n`'s entries on top of this (its older) list; `self` becomes `n`'s list.
    /// Returns the versions of older lists it yanked.
    fn apply(
        &mut self,
        index: &mut HashMap<String, usize>,
        n: Node,
    ) -> Result<Vec<usize>, ListError> {
        let base = self.versions.len();
        let mut own = Vec::with_capacity(n.entries.len());
        let mut yanks = Vec::new();
        for e in n.entries {
            match index.get(&e.v) {
                Some(&i) if i < base => {
                    let old = &self.versions[i];
                    let a_yank = old.yanked.is_none()
                        && e.yanked.is_some()
                        && Release {
                            yanked: None,
                            ..e.clone()
                        } == *old;
                    if !a_yank {
                        return Err(malformed(format!(
                            "version {} differs from its older list's",
                            e.v
                        )));
                    }
                    self.versions[i] = e;
                    own.push(i);
                    yanks.push(i);
                }
                // Twice in one block: refused when it was decoded.
                Some(_) => return Err(malformed(format!("version {} twice", e.v))),
                None => {
                    if self.versions.len() >= MAX_VERSIONS {
                        return Err(ListError::TooMany);
                    }
                    index.insert(e.v.clone(), self.versions.len());
                    own.push(self.versions.len());
                    self.versions.push(e);
                }
            }
        }
        self.name = n.name;
        self.seq = n.seq;
        self.prev = n.prev;
        self.older = n.older;
        self.own = own;
        Ok(yanks)
    }

    /// The head block.
    pub fn node(&self) -> Node {
        Node {
            name: self.name,
            seq: self.seq,
            entries: self.own.iter().map(|&i| self.versions[i].clone()).collect(),
            prev: self.prev,
            older: self.older,
        }
    }

    /// The head block, encoded.
    pub fn encode(&self) -> Vec<u8> {
        self.node().encode()
    }

    /// The newest version not yanked.
    pub fn latest(&self) -> Option<&Release> {
        self.versions.iter().rev().find(|r| r.yanked.is_none())
    }

    /// Version `v` (`latest`: the newest not yanked).
    pub fn get(&self, v: &str) -> Option<&Release> {
        if v == LATEST {
            return self.latest();
        }
        self.versions.iter().find(|r| r.v == v)
    }

    /// The list after releasing `v` as `cid`; `self` is at `self_cid` (`None` for the empty
    /// list before the first release).
    pub fn append(
        &self,
        self_cid: Option<Cid>,
        v: &str,
        cid: Cid,
        at: time::Nanos,
        notes: Option<String>,
    ) -> Result<List, ListError> {
        self.append_within(self_cid, v, cid, at, notes, MAX_LIST)
    }

    /// [`List::append`], spilling past `limit` bytes.
    fn append_within(
        &self,
        self_cid: Option<Cid>,
        v: &str,
        cid: Cid,
        at: time::Nanos,
        notes: Option<String>,
        limit: usize,
    ) -> Result<List, ListError> {
        check_version(v)?;
        if let Some(n) = &notes {
            check_notes(n)?;
        }
        if self.versions.iter().any(|r| r.v == v) {
            return Err(ListError::Exists(v.to_owned()));
        }
        if self.versions.len() >= MAX_VERSIONS {
            return Err(ListError::TooMany);
        }
        let mut next = self.successor(self_cid);
        next.own.push(next.versions.len());
        next.versions.push(Release {
            v: v.to_owned(),
            cid,
            at: time::format(at),
            notes,
            yanked: None,
        });
        let change = next.versions.len() - 1;
        self.spilled(self_cid, next, change, limit)
    }

    /// The list after yanking `v`, saying why.
    pub fn yank(&self, self_cid: Cid, v: &str, reason: &str) -> Result<List, ListError> {
        self.yank_within(self_cid, v, reason, MAX_LIST)
    }

    /// [`List::yank`], spilling past `limit` bytes.
    fn yank_within(
        &self,
        self_cid: Cid,
        v: &str,
        reason: &str,
        limit: usize,
    ) -> Result<List, ListError> {
        check_notes(reason)?;
        let mut next = self.successor(Some(self_cid));
        let i = next
            .versions
            .iter()
            .position(|r| r.v == v)
            .ok_or_else(|| ListError::NoSuchVersion(v.to_owned()))?;
        let r = &mut next.versions[i];
        if r.yanked.is_some() {
            return Err(ListError::YankedAlready(v.to_owned()));
        }
        r.yanked = Some(reason.to_owned());
        if !next.own.contains(&i) {
            next.own.push(i);
        }
        self.spilled(Some(self_cid), next, i, limit)
    }

    /// `next`, or, if its block would be over `limit` bytes, `next` started again with only
    /// its change (the version at `change`) and `self` (at `self_cid`) as its older list.
    fn spilled(
        &self,
        self_cid: Option<Cid>,
        mut next: List,
        change: usize,
        limit: usize,
    ) -> Result<List, ListError> {
        let size = next.encode().len();
        let (Some(c), true) = (self_cid, size > limit) else {
            next.size = size;
            return self.bounded(next);
        };
        next.older = Some(c);
        next.own = vec![change];
        next.older_bytes = self.older_bytes + self.size;
        next.depth = self.depth + 1;
        next.size = next.encode().len();
        self.bounded(next)
    }

    /// `next` if its lists are within bounds.
    fn bounded(&self, next: List) -> Result<List, ListError> {
        let total = next.older_bytes + next.size;
        if next.depth > MAX_OLDER {
            return Err(ListError::Older(format!(
                "the name's lists would be more than {MAX_OLDER} deep: a new name"
            )));
        }
        if total > MAX_CHAIN_BYTES {
            return Err(ListError::Older(format!(
                "the name's lists would take {total} bytes (at most {MAX_CHAIN_BYTES}): shorter notes, or a new name"
            )));
        }
        Ok(next)
    }

    fn successor(&self, self_cid: Option<Cid>) -> List {
        List {
            seq: if self_cid.is_some() { self.seq + 1 } else { 0 },
            prev: self_cid,
            ..self.clone()
        }
    }

    /// Whether `next` is this list (at `self_cid`) plus exactly one allowed change.
    pub fn is_followed_by(&self, self_cid: Cid, next: &List) -> bool {
        if next.name != self.name || next.prev != Some(self_cid) || next.seq != self.seq + 1 {
            return false;
        }
        // Its older lists are this one's, or this one itself after a spill: a walk back
        // then reads each older list once.
        if next.older != self.older && next.older != Some(self_cid) {
            return false;
        }
        let (old, new) = (&self.versions, &next.versions);
        if new.len() == old.len() + 1 {
            // An append: everything before unchanged, the new version new.
            return new[..old.len()] == old[..]
                && !old.iter().any(|r| r.v == new[old.len()].v)
                && new[old.len()].yanked.is_none();
        }
        if new.len() != old.len() {
            return false;
        }
        // A yank: one entry changed, only in gaining a reason.
        let changed: Vec<usize> = (0..old.len()).filter(|&i| old[i] != new[i]).collect();
        match changed[..] {
            [i] => {
                old[i].yanked.is_none()
                    && new[i].yanked.is_some()
                    && Release {
                        yanked: None,
                        ..new[i].clone()
                    } == old[i]
            }
            _ => false,
        }
    }

    /// Checks that this list (at `cid`) extends `old`, the last good head a reader saw:
    /// walking `prev` back at most `max` lists, each the one before plus one change, reaches
    /// `old`. `block` reads a list block (from the store or the network). `Err` says why the
    /// history is not the one `old` began.
    pub fn extends(
        &self,
        cid: Cid,
        old: &Cid,
        max: usize,
        mut block: impl FnMut(&Cid) -> Result<Vec<u8>, String>,
    ) -> Result<(), String> {
        if cid == *old {
            return Ok(());
        }
        let mut cache = OlderCache::default();
        let (mut l, mut lc) = (self.clone(), cid);
        for _ in 0..max {
            let Some(p) = l.prev else {
                return Err(format!("its chain ends before {old}"));
            };
            // A spill's older list is the one before it, whole: read once.
            let pl = match cache.get(&p) {
                Some((pl, _)) => pl,
                None => List::load_with(&block(&p)?, Some(&self.name), &mut block, &mut cache)
                    .map_err(|e| format!("the list {p} before {lc}: {e}"))?,
            };
            if !pl.is_followed_by(p, &l) {
                return Err(format!("{lc} is not {p} plus one change"));
            }
            if p == *old {
                return Ok(());
            }
            (l, lc) = (pl, p);
        }
        Err(format!("its chain does not reach {old} within {max} lists"))
    }
}

impl Node {
    /// The block, as dag-cbor.
    pub fn encode(&self) -> Vec<u8> {
        let versions = self
            .entries
            .iter()
            .map(|r| {
                let mut m = BTreeMap::new();
                m.insert("v".to_owned(), Ipld::String(r.v.clone()));
                m.insert("cid".to_owned(), Ipld::Link(r.cid));
                m.insert("at".to_owned(), Ipld::String(r.at.clone()));
                if let Some(n) = &r.notes {
                    m.insert("notes".to_owned(), Ipld::String(n.clone()));
                }
                if let Some(y) = &r.yanked {
                    m.insert("yanked".to_owned(), Ipld::String(y.clone()));
                }
                Ipld::Map(m)
            })
            .collect();
        let mut m = BTreeMap::new();
        m.insert("type".to_owned(), Ipld::String(TYPE.to_owned()));
        m.insert("name".to_owned(), Ipld::String(self.name.to_string()));
        m.insert("seq".to_owned(), Ipld::Integer(self.seq.into()));
        m.insert("versions".to_owned(), Ipld::List(versions));
        m.insert("prev".to_owned(), self.prev.map_or(Ipld::Null, Ipld::Link));
        if let Some(o) = self.older {
            m.insert("older".to_owned(), Ipld::Link(o));
        }
        serde_ipld_dagcbor::to_vec(&Ipld::Map(m)).expect("a list encodes")
    }

    /// Decodes and checks a list block; `name`, if given, is the name it must be of.
    pub fn decode(bytes: &[u8], name: Option<&Name>) -> Result<Node, ListError> {
        if bytes.len() > MAX_LIST {
            return Err(ListError::TooLarge(bytes.len()));
        }
        let ipld: Ipld = serde_ipld_dagcbor::from_slice(bytes)
            .map_err(|e| malformed(format!("not dag-cbor: {e}")))?;
        let Ipld::Map(m) = ipld else {
            return Err(ListError::NotAList);
        };
        let string = |m: &BTreeMap<String, Ipld>, k: &str| match m.get(k) {
            Some(Ipld::String(s)) => Ok(s.clone()),
            _ => Err(malformed(format!("no {k} string"))),
        };
        if string(&m, "type").ok().as_deref() != Some(TYPE) {
            return Err(ListError::NotAList);
        }
        let list_name: Name = string(&m, "name")?
            .parse()
            .map_err(|_| malformed("its name is not a name"))?;
        if let Some(n) = name {
            if *n != list_name {
                return Err(ListError::OtherName(list_name.to_string()));
            }
        }
        let seq = match m.get("seq") {
            Some(Ipld::Integer(i)) => u64::try_from(*i).map_err(|_| malformed("seq"))?,
            _ => return Err(malformed("no seq")),
        };
        let prev = match m.get("prev") {
            Some(Ipld::Link(c)) if is_list_cid(c) => Some(*c),
            Some(Ipld::Null) | None => None,
            _ => return Err(malformed("prev is not a list's link")),
        };
        let older = match m.get("older") {
            Some(Ipld::Link(c)) if is_list_cid(c) => Some(*c),
            None => None,
            _ => return Err(malformed("older is not a list's link")),
        };
        let Some(Ipld::List(vs)) = m.get("versions") else {
            return Err(malformed("no versions list"));
        };
        if vs.len() > MAX_VERSIONS {
            return Err(ListError::TooMany);
        }
        let mut seen = HashSet::new();
        let mut versions = Vec::with_capacity(vs.len());
        for v in vs {
            let Ipld::Map(r) = v else {
                return Err(malformed("a version is not a map"));
            };
            let opt = |k: &str| match r.get(k) {
                Some(Ipld::String(s)) => check_notes(s).map(|_| Some(s.clone())),
                None => Ok(None),
                _ => Err(malformed(format!("{k} is not a string"))),
            };
            let release = Release {
                v: string(r, "v")?,
                cid: match r.get("cid") {
                    Some(Ipld::Link(c)) => *c,
                    _ => return Err(malformed("a version without a cid link")),
                },
                at: string(r, "at")?,
                notes: opt("notes")?,
                yanked: opt("yanked")?,
            };
            check_version(&release.v)?;
            if time::parse(&release.at).is_none() {
                return Err(malformed(format!(
                    "{}: at is not an RFC 3339 time",
                    release.v
                )));
            }
            if !seen.insert(release.v.clone()) {
                return Err(malformed(format!("version {} twice", release.v)));
            }
            versions.push(release);
        }
        Ok(Node {
            name: list_name,
            seq,
            entries: versions,
            prev,
            older,
        })
    }
}

#[cfg(test)]
mod tests {
    use libp2p_identity::Keypair;

    use super::*;

    fn no_older(c: &Cid) -> Result<Vec<u8>, String> {
        Err(format!("no {c}"))
    }

    fn cid(n: u8) -> Cid {
        let mh = multihash::Multihash::<64>::wrap(0x12, &[n; 32]).unwrap();
        Cid::new_v1(0x55, mh)
    }

    fn list_cid(l: &List) -> Cid {
        // Any distinct CID per list will do for the chain's logic.
        let b = l.encode();
        let mut d = [0u8; 32];
        for (i, x) in b.iter().enumerate() {
            d[i % 32] = d[i % 32].wrapping_mul(31).wrapping_add(*x);
        }
        Cid::new_v1(0x71, multihash::Multihash::<64>::wrap(0x12, &d).unwrap())
    }

    #[test]
    fn a_chain_of_releases_and_a_yank() {
        let name = Name::of(&Keypair::generate_ed25519().public());
        let at = 1_800_000_000_000_000_000;
        let l0 = List::empty(name)
            .append(None, "1.0", cid(1), at, Some("first".into()))
            .unwrap();
        assert_eq!((l0.seq, l0.prev), (0, None));
        let c0 = list_cid(&l0);
        let l1 = l0.append(Some(c0), "1.1", cid(2), at, None).unwrap();
        assert!(l0.is_followed_by(c0, &l1));
        assert_eq!(l1.latest().unwrap().v, "1.1");
        let c1 = list_cid(&l1);
        let l2 = l1.yank(c1, "1.1", "broken build").unwrap();
        assert!(l1.is_followed_by(c1, &l2));
        assert_eq!(l2.latest().unwrap().v, "1.0");
        assert_eq!(l2.get("latest").unwrap().cid, cid(1));
        assert_eq!(
            l2.get("1.1").unwrap().yanked.as_deref(),
            Some("broken build")
        );
        // Round trip, and the name is checked.
        let back = List::load(&l2.encode(), Some(&name), no_older).unwrap();
        assert_eq!(back, l2);
        let other = Name::of(&Keypair::generate_ed25519().public());
        assert!(matches!(
            List::load(&l2.encode(), Some(&other), no_older),
            Err(ListError::OtherName(_))
        ));

        // What is refused.
        assert_eq!(
            l1.append(Some(c1), "1.0", cid(9), at, None),
            Err(ListError::Exists("1.0".into()))
        );
        for bad in [
            "latest",
            "",
            "1 0",
            "a/b",
            ".",
            "..",
            ".1",
            "versions.json",
            &"9".repeat(65),
        ] {
            assert!(matches!(
                l1.append(Some(c1), bad, cid(9), at, None),
                Err(ListError::BadVersion(_))
            ));
        }
        assert!(matches!(
            l2.yank(list_cid(&l2), "1.1", "again"),
            Err(ListError::YankedAlready(_))
        ));
        // A rewritten history is not a step: a version's CID changed, two changes at once,
        // a skipped sequence.
        let mut rewritten = l1.clone();
        rewritten.seq = 1;
        rewritten.prev = Some(c0);
        rewritten.versions[0].cid = cid(7);
        assert!(!l0.is_followed_by(c0, &rewritten));
        let two = l1.append(Some(c1), "1.2", cid(3), at, None).unwrap();
        assert!(!l0.is_followed_by(c0, &two));
        let mut skipped = l1.clone();
        skipped.seq = 5;
        assert!(!l0.is_followed_by(c0, &skipped));
    }

    #[test]
    fn a_reader_follows_the_chain_back_to_what_it_saw() {
        let name = Name::of(&Keypair::generate_ed25519().public());
        let mut blocks = std::collections::HashMap::new();
        let mut keep = |l: &List| {
            let c = list_cid(l);
            blocks.insert(c, l.encode());
            c
        };
        let l0 = List::empty(name)
            .append(None, "1.0", cid(1), 0, None)
            .unwrap();
        let c0 = keep(&l0);
        let l1 = l0.append(Some(c0), "1.1", cid(2), 0, None).unwrap();
        let c1 = keep(&l1);
        let l2 = l1.yank(c1, "1.1", "broken").unwrap();
        let c2 = keep(&l2);
        let get = |c: &Cid| blocks.get(c).cloned().ok_or(format!("no {c}"));
        assert_eq!(l2.extends(c2, &c0, 8, get), Ok(()));
        assert_eq!(l2.extends(c2, &c2, 8, get), Ok(()));
        assert!(l2
            .extends(c2, &c0, 1, get)
            .unwrap_err()
            .contains("within 1"));
        // A head whose chain went elsewhere: 1.0 now names another CID.
        let mut forged = List::empty(name)
            .append(None, "1.0", cid(9), 0, None)
            .unwrap();
        forged.seq = 0;
        let f0 = list_cid(&forged);
        let mut blocks2 = blocks.clone();
        blocks2.insert(f0, forged.encode());
        let f1 = forged.append(Some(f0), "1.1", cid(2), 0, None).unwrap();
        let get2 = |c: &Cid| blocks2.get(c).cloned().ok_or(format!("no {c}"));
        assert!(f1
            .extends(list_cid(&f1), &c0, 8, get2)
            .unwrap_err()
            .contains("ends before"));
    }

    #[test]
    fn long_lists_spill_into_older_ones() {
        let name = Name::of(&Keypair::generate_ed25519().public());
        let limit = 700;
        let mut blocks = std::collections::HashMap::new();
        let (mut l, mut c) = (List::empty(name), None);
        let mut first = None;
        for k in 0..40u8 {
            let v = format!("1.{k}");
            let next = l
                .append_within(c, &v, cid(k), 0, Some("n".repeat(40)), limit)
                .unwrap();
            if let Some(c) = c {
                assert!(l.is_followed_by(c, &next));
            }
            let bytes = next.encode();
            assert!(bytes.len() <= limit, "a block of {}", bytes.len());
            let nc = list_cid(&next);
            blocks.insert(nc, bytes);
            first.get_or_insert(nc);
            (l, c) = (next, Some(nc));
        }
        let (c, first) = (c.unwrap(), first.unwrap());
        assert!(l.depth >= 4, "{} older lists", l.depth);
        let reads = std::cell::Cell::new(0);
        let get = |x: &Cid| {
            reads.set(reads.get() + 1);
            blocks.get(x).cloned().ok_or(format!("no {x}"))
        };
        // What a reader loads is what the writer had: every version, in order.
        let loaded = List::load(&blocks[&c], Some(&name), get).unwrap();
        assert_eq!(loaded, l);
        assert_eq!(loaded.versions.len(), 40);
        assert_eq!(loaded.get("1.0").unwrap().cid, cid(0));

        // A version in an older list is yanked by the head, and stays where it was.
        let y = l.yank_within(c, "1.0", "bad", limit).unwrap();
        assert!(l.is_followed_by(c, &y));
        let yc = list_cid(&y);
        blocks.insert(yc, y.encode());
        let get = |x: &Cid| {
            reads.set(reads.get() + 1);
            blocks.get(x).cloned().ok_or(format!("no {x}"))
        };
        let loaded = List::load(&blocks[&yc], Some(&name), get).unwrap();
        assert_eq!(loaded, y);
        assert_eq!(loaded.versions[0].yanked.as_deref(), Some("bad"));
        assert_eq!(loaded.latest().unwrap().v, "1.39");
        // The whole chain checks out back to the first list, each older list read once.
        reads.set(0);
        assert_eq!(y.extends(yc, &first, 100, get), Ok(()));
        assert!(
            reads.get() <= 40 + y.depth,
            "{} reads for 40 lists and {} older ones",
            reads.get(),
            y.depth
        );

        // A head rewriting a version of an older list, or releasing it again, is refused.
        for (i, forged) in [cid(99), cid(0)].into_iter().enumerate() {
            let mut n = y.node();
            n.entries.push(Release {
                v: "1.1".into(),
                cid: forged,
                at: time::format(0),
                notes: (i == 1).then(|| "n".repeat(40)),
                yanked: None,
            });
            let err = List::load(&n.encode(), Some(&name), get).unwrap_err();
            assert!(matches!(err, ListError::Malformed(_)), "{err:?}");
        }

        // A chain of more than MAX_OLDER older lists is refused before it is all read.
        let mut deep = std::collections::HashMap::new();
        let mut older = None;
        let mut bytes = Vec::new();
        for k in 0..=MAX_OLDER + 1 {
            let n = Node {
                name,
                seq: k as u64,
                entries: vec![Release {
                    v: format!("0.{k}"),
                    cid: cid(1),
                    at: time::format(0),
                    notes: None,
                    yanked: None,
                }],
                prev: None,
                older,
            };
            bytes = n.encode();
            let mut d = [0u8; 32];
            d[..8].copy_from_slice(&(k as u64).to_le_bytes());
            let nc = Cid::new_v1(0x71, multihash::Multihash::<64>::wrap(0x12, &d).unwrap());
            deep.insert(nc, bytes.clone());
            older = Some(nc);
        }
        reads.set(0);
        let get = |x: &Cid| {
            reads.set(reads.get() + 1);
            deep.get(x).cloned().ok_or(format!("no {x}"))
        };
        assert!(matches!(
            List::load(&bytes, Some(&name), get),
            Err(ListError::Older(_))
        ));
        assert!(reads.get() <= MAX_OLDER);
    }

    /// What a hostile chain cannot do: link older lists by another kind of CID (a kept copy
    /// is checked by one hash), swap a list's older lists for others with the same versions
    /// (a walk back would read each anew), or carry more entries than a name can have.
    #[test]
    fn hostile_chains_are_refused() {
        let name = Name::of(&Keypair::generate_ed25519().public());
        let (mut l, mut c) = (List::empty(name), None);
        let mut blocks = std::collections::HashMap::new();
        for k in 0..12u8 {
            l = l
                .append_within(c, &format!("1.{k}"), cid(k), 0, None, 300)
                .unwrap();
            let nc = list_cid(&l);
            blocks.insert(nc, l.encode());
            c = Some(nc);
        }
        let c = c.unwrap();
        assert!(l.older.is_some());
        // An older link of another kind.
        let mut n = l.node();
        n.older = Some(cid(1));
        assert!(matches!(
            Node::decode(&n.encode(), None),
            Err(ListError::Malformed(_))
        ));
        // The next list, its versions right but its older lists another chain's.
        let next = l.append(Some(c), "2.0", cid(50), 0, None).unwrap();
        assert!(l.is_followed_by(c, &next));
        let mut swapped = next.clone();
        swapped.older = Some(list_cid(&List::empty(name)));
        assert!(!l.is_followed_by(c, &swapped));
        // Entries past twice the versions a name may have are refused as they are read.
        let big = |k: usize, older: Option<Cid>| Node {
            name,
            seq: k as u64,
            entries: (0..MAX_VERSIONS)
                .map(|i| Release {
                    v: format!("{k}.{i}"),
                    cid: cid(1),
                    at: time::format(0),
                    notes: None,
                    yanked: None,
                })
                .collect(),
            prev: None,
            older,
        };
        let (b0, b1) = (big(0, None), big(1, None));
        let (c0, c1) = (list_cid(&List::empty(name)), c);
        let b1 = Node {
            older: Some(c0),
            ..b1
        };
        let head = big(2, Some(c1));
        let chain: std::collections::HashMap<Cid, Vec<u8>> =
            [(c0, b0.encode()), (c1, b1.encode())].into();
        let reads = std::cell::Cell::new(0);
        let got = List::load(&head.encode(), Some(&name), |x| {
            reads.set(reads.get() + 1);
            chain.get(x).cloned().ok_or(format!("no {x}"))
        });
        assert_eq!(got, Err(ListError::TooMany));
        // 4096 and 4096 entries may be a name's (each version and its yank); the third
        // block's are refused as it is read.
        assert_eq!(reads.get(), 2);
    }

    #[test]
    fn hostile_lists_are_refused() {
        assert!(matches!(
            List::load(&vec![0u8; MAX_LIST + 1], None, no_older),
            Err(ListError::TooLarge(_))
        ));
        assert_eq!(
            List::load(b"\xa0", None, no_older),
            Err(ListError::NotAList)
        );
        assert_eq!(
            List::load(b"\x01", None, no_older),
            Err(ListError::NotAList)
        );
        let name = Name::of(&Keypair::generate_ed25519().public());
        let l = List::empty(name)
            .append(None, "1", cid(1), 0, None)
            .unwrap();
        let mut n = l.node();
        n.entries.push(n.entries[0].clone());
        assert!(matches!(
            List::load(&n.encode(), None, no_older),
            Err(ListError::Malformed(_))
        ));
    }
}
