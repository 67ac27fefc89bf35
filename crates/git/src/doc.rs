//! The repository document: what a `cairn://` URL resolves to, one dag-cbor block.
//!
//! ```text
//! {"v": 1, "object-format": "sha1" | "sha256", "head": "refs/heads/main",
//!  "refs": {"refs/heads/main": <id bytes>, …},
//!  "bundles": [{"cid": <link>, "size": N, "objects": N, "tips": [<id>…], "prereqs": [<id>…]}, …]}
//! ```
//!
//! Bundles are oldest first. Ids are bytes, not links: fetching or pinning the document then
//! reaches its bundles and nothing else (git objects are not stored one per block), so
//! `cairn fetch <document>` is a whole clone.
//!
//! A document comes from whoever holds the name it was published under, or from any peer, so
//! [`Document::decode`] refuses, before building anything it was not asked to:
//!
//! | what | bound |
//! |---|---|
//! | the block | [`MAX_DOC`] bytes, checked before parsing |
//! | refs | [`MAX_REFS`], each a name `git check-ref-format` takes, under `refs/` |
//! | bundles | [`MAX_BUNDLES`], each with at most [`MAX_REFS`] tips and prerequisites |
//! | ids | exactly the object format's length (20 bytes for sha1, 32 for sha256) |
//! | its form | canonical dag-cbor, no field unknown or missing, `v` 1, `head` one of `refs` |
//! | a bundle's CID | a file's: dag-pb or raw, sha2-256 |

use std::collections::{BTreeMap, BTreeSet};

use cid::Cid;
use ipld_core::ipld::Ipld;

const DAG_PB: u64 = 0x70;
const RAW: u64 = 0x55;
const SHA2_256: u64 = 0x12;

/// The largest document.
pub const MAX_DOC: usize = 1 << 20;
/// Refs in a document, and tips or prerequisites in a bundle.
pub const MAX_REFS: usize = 65_536;
/// Bundles in a document (consolidation keeps a repository at O(log n) of them).
pub const MAX_BUNDLES: usize = 64;

/// The hash a repository names its objects by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Sha1,
    Sha256,
}

impl Format {
    /// An id's length in bytes.
    pub fn id_len(self) -> usize {
        match self {
            Format::Sha1 => 20,
            Format::Sha256 => 32,
        }
    }

    /// As git names it (`extensions.objectFormat`).
    pub fn name(self) -> &'static str {
        match self {
            Format::Sha1 => "sha1",
            Format::Sha256 => "sha256",
        }
    }
}

/// One `git bundle` file of the repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bundle {
    /// The file, added as `ipfs add` adds it.
    pub cid: Cid,
    /// Its size in bytes.
    pub size: u64,
    /// Objects in its pack.
    pub objects: u64,
    /// The commits (or other objects) it brings, as its header lists them.
    pub tips: Vec<Vec<u8>>,
    /// The commits it needs from earlier bundles.
    pub prereqs: Vec<Vec<u8>>,
}

/// A repository as published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    pub format: Format,
    /// The ref `HEAD` points to.
    pub head: String,
    pub refs: BTreeMap<String, Vec<u8>>,
    /// Oldest first.
    pub bundles: Vec<Bundle>,
}

/// Why a document is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DocError {
    #[error("a document of {0} bytes (at most {MAX_DOC})")]
    TooLarge(usize),
    #[error("not a repository document: {0}")]
    Malformed(String),
    #[error("not in canonical dag-cbor (it would be written otherwise)")]
    NotCanonical,
    #[error("more than {MAX_REFS} refs")]
    TooManyRefs,
    #[error("more than {MAX_BUNDLES} bundles")]
    TooManyBundles,
    #[error("{0:?} is not a ref name git takes under refs/")]
    BadRef(String),
    #[error("an object id of {0} bytes in a {1} repository")]
    BadId(usize, &'static str),
    #[error("head {0:?} is not among the refs")]
    UnlistedHead(String),
}

fn malformed(why: impl Into<String>) -> DocError {
    DocError::Malformed(why.into())
}

/// Whether git takes `name` as a ref (the rules of `git check-ref-format`), under `refs/`.
pub fn check_ref(name: &str) -> bool {
    let Some(rest) = name.strip_prefix("refs/") else {
        return false;
    };
    !rest.is_empty()
        && !name.ends_with('/')
        && !name.ends_with('.')
        && !name.contains("..")
        && !name.contains("//")
        && !name.contains("@{")
        && !name
            .bytes()
            .any(|b| b < 0x20 || b == 0x7f || b" ~^:?*[\\".contains(&b))
        && name
            .split('/')
            .all(|c| !c.starts_with('.') && !c.ends_with(".lock"))
}

impl Document {
    /// The document as its dag-cbor block.
    pub fn encode(&self) -> Vec<u8> {
        let id = |i: &Vec<u8>| Ipld::Bytes(i.clone());
        let bundles = self
            .bundles
            .iter()
            .map(|b| {
                Ipld::Map(BTreeMap::from([
                    ("cid".to_owned(), Ipld::Link(b.cid)),
                    ("size".to_owned(), Ipld::Integer(b.size.into())),
                    ("objects".to_owned(), Ipld::Integer(b.objects.into())),
                    (
                        "tips".to_owned(),
                        Ipld::List(b.tips.iter().map(id).collect()),
                    ),
                    (
                        "prereqs".to_owned(),
                        Ipld::List(b.prereqs.iter().map(id).collect()),
                    ),
                ]))
            })
            .collect();
        let refs = self.refs.iter().map(|(k, v)| (k.clone(), id(v))).collect();
        let doc = Ipld::Map(BTreeMap::from([
            ("v".to_owned(), Ipld::Integer(1)),
            (
                "object-format".to_owned(),
                Ipld::String(self.format.name().to_owned()),
            ),
            ("head".to_owned(), Ipld::String(self.head.clone())),
            ("refs".to_owned(), Ipld::Map(refs)),
            ("bundles".to_owned(), Ipld::List(bundles)),
        ]));
        serde_ipld_dagcbor::to_vec(&doc).expect("a document encodes")
    }

    /// Decodes and checks a document block (see the module's table).
    pub fn decode(bytes: &[u8]) -> Result<Document, DocError> {
        if bytes.len() > MAX_DOC {
            return Err(DocError::TooLarge(bytes.len()));
        }
        let ipld: Ipld = serde_ipld_dagcbor::from_slice(bytes)
            .map_err(|e| malformed(format!("not dag-cbor: {e}")))?;
        let m = fields(&ipld, &["v", "object-format", "head", "refs", "bundles"])?;
        if m["v"] != &Ipld::Integer(1) {
            return Err(malformed("not version 1"));
        }
        let format = match m["object-format"] {
            Ipld::String(s) if s == "sha1" => Format::Sha1,
            Ipld::String(s) if s == "sha256" => Format::Sha256,
            _ => return Err(malformed("object-format is neither sha1 nor sha256")),
        };
        let id = |v: &Ipld| match v {
            Ipld::Bytes(b) if b.len() == format.id_len() => Ok(b.clone()),
            Ipld::Bytes(b) => Err(DocError::BadId(b.len(), format.name())),
            _ => Err(malformed("an object id that is not bytes")),
        };
        let Ipld::Map(refs_in) = m["refs"] else {
            return Err(malformed("refs is not a map"));
        };
        if refs_in.len() > MAX_REFS {
            return Err(DocError::TooManyRefs);
        }
        let mut refs = BTreeMap::new();
        for (name, v) in refs_in {
            if !check_ref(name) {
                return Err(DocError::BadRef(name.chars().take(256).collect()));
            }
            refs.insert(name.clone(), id(v)?);
        }
        let head = match m["head"] {
            Ipld::String(h) => h.clone(),
            _ => return Err(malformed("head is not a string")),
        };
        if !refs.is_empty() && !refs.contains_key(&head) {
            return Err(DocError::UnlistedHead(head.chars().take(256).collect()));
        }
        let Ipld::List(bundles_in) = m["bundles"] else {
            return Err(malformed("bundles is not a list"));
        };
        if bundles_in.len() > MAX_BUNDLES {
            return Err(DocError::TooManyBundles);
        }
        let mut bundles = Vec::with_capacity(bundles_in.len());
        for b in bundles_in {
            let f = fields(b, &["cid", "size", "objects", "tips", "prereqs"])?;
            let Ipld::Link(cid) = f["cid"] else {
                return Err(malformed("a bundle's cid is not a link"));
            };
            // A file as `ipfs add` adds it: dag-pb (or one raw block), sha2-256. Anything
            // else would have a fetch walk a DAG that is no file.
            if !matches!(cid.codec(), DAG_PB | RAW) || cid.hash().code() != SHA2_256 {
                return Err(malformed(format!("a bundle's cid {cid} is not a file's")));
            }
            let count = |v: &Ipld, what: &str| match v {
                Ipld::Integer(i) => u64::try_from(*i).map_err(|_| malformed(what.to_owned())),
                _ => Err(malformed(format!("a bundle's {what} is not a number"))),
            };
            let ids = |v: &Ipld, what: &str| -> Result<Vec<Vec<u8>>, DocError> {
                let Ipld::List(l) = v else {
                    return Err(malformed(format!("a bundle's {what} is not a list")));
                };
                if l.len() > MAX_REFS {
                    return Err(DocError::TooManyRefs);
                }
                l.iter().map(id).collect()
            };
            bundles.push(Bundle {
                cid: *cid,
                size: count(f["size"], "size")?,
                objects: count(f["objects"], "objects")?,
                tips: ids(f["tips"], "tips")?,
                prereqs: ids(f["prereqs"], "prereqs")?,
            });
        }
        let doc = Document {
            format,
            head,
            refs,
            bundles,
        };
        // One document, one block: any other spelling of it is refused.
        if doc.encode() != bytes {
            return Err(DocError::NotCanonical);
        }
        Ok(doc)
    }

    /// The ids the bundles bring (their tips).
    pub fn tips(&self) -> BTreeSet<&[u8]> {
        self.bundles
            .iter()
            .flat_map(|b| b.tips.iter())
            .map(Vec::as_slice)
            .collect()
    }
}

/// The map `v` with exactly the fields `names`.
fn fields<'a>(v: &'a Ipld, names: &[&'a str]) -> Result<BTreeMap<&'a str, &'a Ipld>, DocError> {
    let Ipld::Map(m) = v else {
        return Err(malformed("not a map"));
    };
    if m.len() != names.len() {
        return Err(malformed(format!(
            "{} fields where {} are expected",
            m.len(),
            names.len()
        )));
    }
    names
        .iter()
        .map(|n| {
            m.get(*n)
                .map(|x| (*n, x))
                .ok_or_else(|| malformed(format!("no {n}")))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc() -> Document {
        let bundle = Cid::new_v1(
            0x70,
            multihash::Multihash::<64>::wrap(0x12, &[7; 32]).unwrap(),
        );
        Document {
            format: Format::Sha1,
            head: "refs/heads/main".into(),
            refs: BTreeMap::from([
                ("refs/heads/main".into(), vec![1; 20]),
                ("refs/tags/v1".into(), vec![2; 20]),
            ]),
            bundles: vec![Bundle {
                cid: bundle,
                size: 1234,
                objects: 9,
                tips: vec![vec![1; 20], vec![2; 20]],
                prereqs: vec![],
            }],
        }
    }

    #[test]
    fn a_document_round_trips() {
        let d = doc();
        assert_eq!(Document::decode(&d.encode()), Ok(d.clone()));
        let empty = Document {
            refs: BTreeMap::new(),
            bundles: vec![],
            ..d
        };
        assert_eq!(Document::decode(&empty.encode()), Ok(empty));
    }

    #[test]
    fn what_is_refused() {
        let d = doc();
        let refused = |d: &Document| Document::decode(&d.encode()).unwrap_err();
        let mut x = d.clone();
        x.head = "refs/heads/other".into();
        assert!(matches!(refused(&x), DocError::UnlistedHead(_)));
        let mut x = d.clone();
        x.refs.insert("refs/heads/short".into(), vec![3; 19]);
        assert_eq!(refused(&x), DocError::BadId(19, "sha1"));
        let mut x = d.clone();
        x.format = Format::Sha256;
        assert_eq!(refused(&x), DocError::BadId(20, "sha256"));
        for bad in [
            "HEAD",
            "refs/",
            "refs/heads/a..b",
            "refs/heads/.x",
            "refs/x.lock",
        ] {
            let mut x = d.clone();
            x.refs.insert(bad.into(), vec![3; 20]);
            assert!(matches!(refused(&x), DocError::BadRef(_)), "{bad}");
        }
        // A bundle that is no file: dag-cbor (a fetch would walk whatever it links), or
        // another hash.
        for (codec, hash) in [(0x71, 0x12), (0x55, 0x11), (0x70, 0x1e)] {
            let mut x = d.clone();
            x.bundles[0].cid = Cid::new_v1(
                codec,
                multihash::Multihash::<64>::wrap(hash, &[7; 32]).unwrap(),
            );
            assert!(
                matches!(refused(&x), DocError::Malformed(_)),
                "{codec:x} {hash:x}"
            );
        }
        let mut x = d.clone();
        x.bundles = vec![d.bundles[0].clone(); MAX_BUNDLES + 1];
        assert_eq!(refused(&x), DocError::TooManyBundles);
        assert!(matches!(
            Document::decode(&vec![0; MAX_DOC + 1]),
            Err(DocError::TooLarge(_))
        ));
        // Another field, or one missing.
        let extra = Ipld::Map(BTreeMap::from([("v".to_owned(), Ipld::Integer(1))]));
        let bytes = serde_ipld_dagcbor::to_vec(&extra).unwrap();
        assert!(matches!(
            Document::decode(&bytes),
            Err(DocError::Malformed(_))
        ));
        // The same document spelled otherwise: its top map's keys in another order.
        let good = d.encode();
        let odd = reorder_top(&good);
        assert_ne!(odd, good);
        // (Refused by the decoder itself, or by the re-encoding check.)
        assert!(matches!(
            Document::decode(&odd),
            Err(DocError::NotCanonical | DocError::Malformed(_))
        ));
    }

    /// `bytes` (a canonical map of five text keys) with its entries reversed.
    fn reorder_top(bytes: &[u8]) -> Vec<u8> {
        let ipld: Ipld = serde_ipld_dagcbor::from_slice(bytes).unwrap();
        let Ipld::Map(m) = ipld else { unreachable!() };
        // Each entry encoded alone as a one-entry map, its header byte dropped.
        let mut entries: Vec<Vec<u8>> = m
            .into_iter()
            .map(|(k, v)| {
                let one = serde_ipld_dagcbor::to_vec(&Ipld::Map(BTreeMap::from([(k, v)]))).unwrap();
                one[1..].to_vec()
            })
            .collect();
        entries.sort_by_key(|e| e.len());
        let mut out = vec![0xa5];
        for e in entries.iter().rev() {
            out.extend(e);
        }
        out
    }

    /// The ref rules agree with `git check-ref-format` itself.
    #[test]
    fn ref_names_as_git_checks_them() {
        for name in [
            "refs/heads/main",
            "refs/tags/v1.0",
            "refs/heads/feature/x-y_z",
            "refs/heads/a..b",
            "refs/heads/.hidden",
            "refs/heads/x.lock",
            "refs/heads/x/",
            "refs/heads//x",
            "refs/heads/x.",
            "refs/heads/a b",
            "refs/heads/a~1",
            "refs/heads/a^",
            "refs/heads/a:b",
            "refs/heads/a?",
            "refs/heads/a*",
            "refs/heads/a[b",
            "refs/heads/a\\b",
            "refs/heads/a@{1}",
            "refs/heads/@",
            "refs/heads/ünï",
            "refs/heads/a\x01b",
        ] {
            let git = std::process::Command::new("git")
                .args(["check-ref-format", name])
                .status()
                .expect("git (this test needs git)")
                .success();
            assert_eq!(check_ref(name), git, "{name:?}");
        }
        assert!(!check_ref("HEAD"));
        assert!(!check_ref("heads/main"));
    }
}
