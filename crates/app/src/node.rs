//! The app node: dag-cbor, one block, naming the content and where the placeholder is in it.
//!
//! ```text
//! type App struct {
//!   type    String          # "cairn-app" or "cairn-webapp"
//!   version Int             # 1
//!   content &Directory      # the tree as stored: UnixFS v1 (dag-pb), kubo's CIDs
//!   name    optional String # what `cairn env install` calls it
//!   refs    {String:[Int]}  # path below content -> byte offsets of the placeholder,
//!                           # strictly increasing, never overlapping; for a symlink,
//!                           # offsets into its target
//! }
//! ```
//!
//! Keys are sorted as DAG-CBOR requires, so one tree always makes one node and one CID. The
//! node comes from strangers like any block: [`AppNode::decode`] checks every field, and a
//! node it accepts can be served without further checks but one: that the bytes at each
//! offset are the placeholder (the view answers EIO when they are not).

use std::collections::BTreeMap;

use cairn_store::{codec::codes, Cid, HashAlg};
use serde::{Deserialize, Serialize};

use crate::LEN;

/// The largest app node cairn makes or reads (the network's block limit is 2 MiB; this
/// leaves room and still records about 150,000 self-references).
pub const MAX_NODE_BYTES: usize = 1 << 20;

/// Which view shows an app node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppKind {
    /// A program: `R/store/app/<cid>/`.
    App,
    /// A static web app: `R/store/webapp/<cid>/`.
    Webapp,
}

impl AppKind {
    fn tag(self) -> &'static str {
        match self {
            AppKind::App => "cairn-app",
            AppKind::Webapp => "cairn-webapp",
        }
    }
}

/// A decoded, checked app node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppNode {
    pub kind: AppKind,
    /// The root directory of the tree (dag-pb).
    pub content: Cid,
    pub name: Option<String>,
    /// Per path below `content` ('/'-separated), the offsets of the placeholder.
    pub refs: BTreeMap<String, Vec<u64>>,
}

/// Why bytes are not an app node.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("not an app node: {0}")]
    Invalid(String),
    #[error(
        "the app node would be {0} bytes; the limit is {MAX_NODE_BYTES} (too many self-references)"
    )]
    TooLarge(usize),
    #[error(transparent)]
    Import(#[from] cairn_unixfs::UnixfsError),
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Wire {
    #[serde(rename = "type")]
    kind: String,
    version: u64,
    content: Cid,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    refs: BTreeMap<String, Vec<u64>>,
}

fn invalid(why: impl Into<String>) -> AppError {
    AppError::Invalid(why.into())
}

/// A path as the node may name it: relative, '/'-separated, no empty, `.` or `..` parts.
fn check_path(p: &str) -> Result<(), AppError> {
    if p.is_empty() || p.len() > 4096 {
        return Err(invalid(format!("bad path length {}", p.len())));
    }
    for part in p.split('/') {
        if part.is_empty() || part == "." || part == ".." || part.chars().any(char::is_control) {
            return Err(invalid(format!("bad path {p:?}")));
        }
    }
    Ok(())
}

/// An app's name: what `cairn env` installs it as and prints.
fn check_name(n: &str) -> Result<(), AppError> {
    if n.is_empty() || n.len() > 255 || n.contains('/') || n.chars().any(char::is_control) {
        return Err(invalid(format!("bad name {n:?}")));
    }
    Ok(())
}

fn check_offsets(p: &str, offsets: &[u64]) -> Result<(), AppError> {
    if offsets.is_empty() {
        return Err(invalid(format!("{p:?} lists no offsets")));
    }
    for w in offsets.windows(2) {
        if w[1] < w[0].saturating_add(LEN as u64) {
            return Err(invalid(format!(
                "{p:?}: offsets {} and {} are out of order or overlap",
                w[0], w[1]
            )));
        }
    }
    if offsets
        .last()
        .is_some_and(|o| o.checked_add(LEN as u64).is_none())
    {
        return Err(invalid(format!("{p:?}: offset out of range")));
    }
    Ok(())
}

impl AppNode {
    /// The block and its CID (CIDv1, dag-cbor, sha2-256: the CID the placeholder stands for).
    pub fn encode(&self) -> Result<(Cid, Vec<u8>), AppError> {
        for (p, o) in &self.refs {
            check_path(p)?;
            check_offsets(p, o)?;
        }
        if let Some(n) = &self.name {
            check_name(n)?;
        }
        let wire = Wire {
            kind: self.kind.tag().to_owned(),
            version: 1,
            content: self.content,
            name: self.name.clone(),
            refs: self.refs.clone(),
        };
        let bytes = serde_ipld_dagcbor::to_vec(&wire).map_err(|e| invalid(e.to_string()))?;
        if bytes.len() > MAX_NODE_BYTES {
            return Err(AppError::TooLarge(bytes.len()));
        }
        let cid = Cid::new_v1(codes::DAG_CBOR, HashAlg::Sha2_256.digest(&bytes));
        Ok((cid, bytes))
    }

    /// Decodes and checks a block (of any origin).
    pub fn decode(bytes: &[u8]) -> Result<AppNode, AppError> {
        if bytes.len() > MAX_NODE_BYTES {
            return Err(AppError::TooLarge(bytes.len()));
        }
        let w: Wire = serde_ipld_dagcbor::from_slice(bytes).map_err(|e| invalid(e.to_string()))?;
        let kind = match w.kind.as_str() {
            "cairn-app" => AppKind::App,
            "cairn-webapp" => AppKind::Webapp,
            other => return Err(invalid(format!("unknown type {other:?}"))),
        };
        if w.version != 1 {
            return Err(invalid(format!("unknown version {}", w.version)));
        }
        if w.content.codec() != codes::DAG_PB {
            return Err(invalid("content is not a UnixFS (dag-pb) directory"));
        }
        for (p, o) in &w.refs {
            check_path(p)?;
            check_offsets(p, o)?;
        }
        if let Some(n) = &w.name {
            check_name(n)?;
        }
        Ok(AppNode {
            kind,
            content: w.content,
            name: w.name,
            refs: w.refs,
        })
    }

    /// The block `cid` decoded as an app node, if it is one (any codec but dag-cbor, any
    /// CID the placeholder cannot stand for, and any other dag-cbor block: `None`).
    pub fn from_block(cid: &Cid, bytes: &[u8]) -> Option<AppNode> {
        if cid.codec() != codes::DAG_CBOR || crate::self_reference(cid).is_none() {
            return None;
        }
        AppNode::decode(bytes).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node() -> AppNode {
        let mut refs = BTreeMap::new();
        refs.insert("bin/hello".to_owned(), vec![7, 7 + LEN as u64, 4096]);
        refs.insert("lib".to_owned(), vec![0]);
        AppNode {
            kind: AppKind::App,
            content: "QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn"
                .parse()
                .unwrap(),
            name: Some("hello".into()),
            refs,
        }
    }

    #[test]
    fn round_trips_and_is_canonical() {
        let n = node();
        let (cid, bytes) = n.encode().unwrap();
        assert_eq!(AppNode::decode(&bytes).unwrap(), n);
        assert_eq!(AppNode::from_block(&cid, &bytes), Some(n.clone()));
        // The store's own walker finds the content link (so gc keeps the tree).
        let links = cairn_store::codec::cbor::links(&bytes).unwrap();
        assert_eq!(links, vec![n.content]);
        // DAG-CBOR key order: shorter keys first ("name" < "refs" < "type" < "content" ...).
        let text = String::from_utf8_lossy(&bytes);
        let pos = |k: &str| text.find(k).unwrap();
        assert!(pos("name") < pos("refs") && pos("type") < pos("content"));
        assert!(pos("content") < pos("version"));
    }

    #[test]
    fn hostile_nodes_are_refused() {
        let good = node();
        let mut bad = Vec::new();
        for (p, o) in [
            ("../etc", vec![0]),
            ("/abs", vec![0]),
            ("a//b", vec![0]),
            ("a\x1b]0;x\x07", vec![0]),
            ("a/./b", vec![0]),
            ("x", vec![]),
            ("x", vec![10, 5]),
            ("x", vec![0, LEN as u64 - 1]),
            ("x", vec![u64::MAX - 3]),
        ] {
            let mut n = good.clone();
            n.refs.insert(p.to_owned(), o);
            let w = Wire {
                kind: "cairn-app".into(),
                version: 1,
                content: n.content,
                name: None,
                refs: n.refs,
            };
            bad.push(serde_ipld_dagcbor::to_vec(&w).unwrap());
        }
        for (kind, version) in [("cairn-other", 1), ("cairn-app", 2)] {
            let w = Wire {
                kind: kind.into(),
                version,
                content: good.content,
                name: None,
                refs: BTreeMap::new(),
            };
            bad.push(serde_ipld_dagcbor::to_vec(&w).unwrap());
        }
        bad.push(vec![0xa1, 0x61, b'x', 0x01]);
        bad.push(vec![0x81; 100_000]);
        for b in &bad {
            assert!(AppNode::decode(b).is_err(), "{:x?}", &b[..b.len().min(40)]);
        }
        let raw = Cid::new_v1(codes::RAW, HashAlg::Sha2_256.digest(b"x"));
        let (_, bytes) = good.encode().unwrap();
        assert_eq!(AppNode::from_block(&raw, &bytes), None);
    }

    #[test]
    fn too_many_references_is_a_clear_error() {
        let mut n = node();
        let offsets: Vec<u64> = (0..300_000u64).map(|i| i * 100).collect();
        n.refs.insert("big".into(), offsets);
        assert!(matches!(n.encode(), Err(AppError::TooLarge(_))));
    }
}
