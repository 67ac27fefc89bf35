//! Release lists: what a name's owner has released, as a hash chain anyone can check. A list
//! is one dag-cbor block,
//!
//! ```text
//! {type: "cairn/releases/1", name: "k51…", seq: N,
//!  versions: [{v: "1.2", cid: <link>, at: "2026-12-07T12:00:00Z", notes?: "…", yanked?: "why"}],
//!  prev: <link to the list before> | null}
//! ```
//!
//! and a name's IPNS record points at its newest list (`/ipfs/<list>`). Each list is the one
//! before plus exactly one change: a version appended, or one yanked (kept, with the reason,
//! never `latest`). A version, once released, never names another CID.
//!
//! | what | bound |
//! |---|---|
//! | a list block | [`MAX_LIST`] (1 MiB), checked before it is parsed |
//! | versions in a list | [`MAX_VERSIONS`] |
//! | a version string | [`MAX_VERSION`] bytes of `A-Za-z0-9._+~-`, not `latest` |
//! | notes, a yank's reason | [`MAX_NOTES`] bytes |

use std::collections::{BTreeMap, HashSet};

use cid::Cid;
use ipld_core::ipld::Ipld;

use crate::{name::Name, time};

/// The `type` of a release list.
pub const TYPE: &str = "cairn/releases/1";
/// The largest list block.
pub const MAX_LIST: usize = 1 << 20;
/// Versions in one list.
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

/// A release list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct List {
    pub name: Name,
    pub seq: u64,
    /// In the order they were released.
    pub versions: Vec<Release>,
    pub prev: Option<Cid>,
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

impl List {
    /// The empty list of `name`, before its first release.
    pub fn empty(name: Name) -> List {
        List {
            name,
            seq: 0,
            versions: Vec::new(),
            prev: None,
        }
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
        next.versions.push(Release {
            v: v.to_owned(),
            cid,
            at: time::format(at),
            notes,
            yanked: None,
        });
        Ok(next)
    }

    /// The list after yanking `v`, saying why.
    pub fn yank(&self, self_cid: Cid, v: &str, reason: &str) -> Result<List, ListError> {
        check_notes(reason)?;
        let mut next = self.successor(Some(self_cid));
        let r = next
            .versions
            .iter_mut()
            .find(|r| r.v == v)
            .ok_or_else(|| ListError::NoSuchVersion(v.to_owned()))?;
        if r.yanked.is_some() {
            return Err(ListError::YankedAlready(v.to_owned()));
        }
        r.yanked = Some(reason.to_owned());
        Ok(next)
    }

    fn successor(&self, self_cid: Option<Cid>) -> List {
        List {
            name: self.name,
            seq: if self_cid.is_some() { self.seq + 1 } else { 0 },
            versions: self.versions.clone(),
            prev: self_cid,
        }
    }

    /// Whether `next` is this list (at `self_cid`) plus exactly one allowed change.
    pub fn is_followed_by(&self, self_cid: Cid, next: &List) -> bool {
        if next.name != self.name || next.prev != Some(self_cid) || next.seq != self.seq + 1 {
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
        let (mut l, mut lc) = (self.clone(), cid);
        for _ in 0..max {
            let Some(p) = l.prev else {
                return Err(format!("its chain ends before {old}"));
            };
            let pl = List::decode(&block(&p)?, Some(&self.name))
                .map_err(|e| format!("the list {p} before {lc}: {e}"))?;
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

    /// The list as its dag-cbor block.
    pub fn encode(&self) -> Vec<u8> {
        let versions = self
            .versions
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
        serde_ipld_dagcbor::to_vec(&Ipld::Map(m)).expect("a list encodes")
    }

    /// Decodes and checks a list block; `name`, if given, is the name it must be of.
    pub fn decode(bytes: &[u8], name: Option<&Name>) -> Result<List, ListError> {
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
            Some(Ipld::Link(c)) => Some(*c),
            Some(Ipld::Null) | None => None,
            _ => return Err(malformed("prev is not a link")),
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
        Ok(List {
            name: list_name,
            seq,
            versions,
            prev,
        })
    }
}

#[cfg(test)]
mod tests {
    use libp2p_identity::Keypair;

    use super::*;

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
        let back = List::decode(&l2.encode(), Some(&name)).unwrap();
        assert_eq!(back, l2);
        let other = Name::of(&Keypair::generate_ed25519().public());
        assert!(matches!(
            List::decode(&l2.encode(), Some(&other)),
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
    fn hostile_lists_are_refused() {
        assert!(matches!(
            List::decode(&vec![0u8; MAX_LIST + 1], None),
            Err(ListError::TooLarge(_))
        ));
        assert_eq!(List::decode(b"\xa0", None), Err(ListError::NotAList));
        assert_eq!(List::decode(b"\x01", None), Err(ListError::NotAList));
        let name = Name::of(&Keypair::generate_ed25519().public());
        let mut l = List::empty(name)
            .append(None, "1", cid(1), 0, None)
            .unwrap();
        l.versions.push(l.versions[0].clone());
        assert!(matches!(
            List::decode(&l.encode(), None),
            Err(ListError::Malformed(_))
        ));
    }
}
