//! `R/store/name/`: names, as whoever mounts resolves them ([`NameSource`]; the daemon asks
//! the DHT, a mount without one reads what the daemon last saw).
//!
//! - `R/store/name/<name>` of a plain IPNS name is a symlink to its content,
//!   `../<cid>[/path]` (or to another name, `<k51…>`);
//! - of a release list, a directory: one symlink per version, `<v> -> ../../app/<cid>` for an
//!   app and `../../<cid>` for anything else, `latest` to the newest version not yanked, and
//!   `versions.json`;
//! - an alias is a symlink to the name it stands for.
//!
//! What a name points to changes, so every entry here is given the listings' TTL, and an
//! entry whose meaning changed gets a new inode: the kernel keeps symlink targets with the
//! inode, and a new inode is how it learns that a target changed. A program started through
//! `latest` therefore runs one whole version, the one `latest` named when it was looked up.

use std::sync::Arc;

use cairn_store::{codec::codes, Cid};

/// What `R/store/name/` shows; whoever mounts passes one in.
pub trait NameSource: Send + Sync {
    /// The entries `R/store/name/` lists (aliases and followed names), from what is known
    /// now: listing waits for no network.
    fn list(&self) -> Vec<(String, Named)>;

    /// What `name` (any spelling of a name, or an alias) is now; `Ok(None)` if it is none.
    /// May wait for the network (within the fetch timeout).
    fn lookup(&self, name: &str) -> std::io::Result<Option<Named>>;
}

/// One entry of `R/store/name/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Named {
    /// A symlink, with its target relative to `R/store/name/`.
    Link(String),
    /// A release list: a directory of versions.
    Releases(Arc<Versions>),
}

/// A release list as the mount shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versions {
    /// Each version and its content, in the order they were released.
    pub versions: Vec<(String, Cid)>,
    /// The newest version not yanked, if any (none either while the record is too old to
    /// trust which is newest).
    pub latest: Option<String>,
    /// What `versions.json` holds.
    pub json: Vec<u8>,
}

impl Versions {
    /// The symlink target of version `v` (`latest` included), relative to the list's
    /// directory.
    pub fn target(&self, v: &str) -> Option<String> {
        let v = if v == "latest" {
            self.latest.as_deref()?
        } else {
            v
        };
        let (_, cid) = self.versions.iter().find(|(name, _)| name == v)?;
        Some(version_target(cid))
    }
}

/// Where a version's symlink points: apps (dag-cbor app nodes) into the app view, anything
/// else to the store's top, in its default view.
pub fn version_target(cid: &Cid) -> String {
    let name = cairn_store::block_name(cid);
    if cid.codec() == codes::DAG_CBOR {
        format!("../../app/{name}")
    } else {
        format!("../../{name}")
    }
}

/// The names shown under `R/store/name/`. [`Names::none`] shows none.
#[derive(Clone)]
pub struct Names(pub Arc<dyn NameSource>);

struct NoNames;

impl NameSource for NoNames {
    fn list(&self) -> Vec<(String, Named)> {
        Vec::new()
    }
    fn lookup(&self, _: &str) -> std::io::Result<Option<Named>> {
        Ok(None)
    }
}

impl Names {
    /// Shows no names.
    pub fn none() -> Names {
        Names(Arc::new(NoNames))
    }
}

impl std::fmt::Debug for Names {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Names(..)")
    }
}

/// An inode below `R/store/name/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameNode {
    /// A symlink and its target.
    Link(Arc<str>),
    /// A release list's directory.
    Dir(Arc<Versions>),
    /// `versions.json`.
    File(Arc<[u8]>),
}

impl NameNode {
    pub(crate) fn of(named: Named) -> NameNode {
        match named {
            Named::Link(t) => NameNode::Link(t.into()),
            Named::Releases(v) => NameNode::Dir(v),
        }
    }

    /// The entry `name` of a release list's directory.
    pub(crate) fn child(versions: &Arc<Versions>, name: &str) -> Option<NameNode> {
        if name == "versions.json" {
            return Some(NameNode::File(versions.json.as_slice().into()));
        }
        versions.target(name).map(|t| NameNode::Link(t.into()))
    }

    /// A release list directory's entries.
    pub(crate) fn children(versions: &Arc<Versions>) -> Vec<(String, NameNode)> {
        // Versions are checked when a list is read; a name that could not be a file name, or
        // that would hide `latest` or `versions.json`, is still never listed.
        let mut out: Vec<(String, NameNode)> = versions
            .versions
            .iter()
            .filter(|(v, _)| {
                cairn_unixfs::get::check_name("", v).is_ok()
                    && v != "latest"
                    && v != "versions.json"
            })
            .map(|(v, cid)| (v.clone(), NameNode::Link(version_target(cid).into())))
            .collect();
        if let Some(t) = versions.target("latest") {
            out.push(("latest".into(), NameNode::Link(t.into())));
        }
        out.push((
            "versions.json".into(),
            NameNode::File(versions.json.as_slice().into()),
        ));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_store::HashAlg;

    #[test]
    fn versions_link_into_the_right_view() {
        let app = Cid::new_v1(codes::DAG_CBOR, HashAlg::Sha2_256.digest(b"app"));
        let tree = Cid::new_v1(codes::DAG_PB, HashAlg::Sha2_256.digest(b"tree"));
        let v = Arc::new(Versions {
            versions: vec![("1.0".into(), app), ("2.0".into(), tree)],
            latest: Some("1.0".into()),
            json: b"{}".to_vec(),
        });
        assert_eq!(v.target("1.0").unwrap(), format!("../../app/{app}"));
        assert_eq!(v.target("2.0").unwrap(), format!("../../{tree}"));
        assert_eq!(v.target("latest"), v.target("1.0"));
        assert_eq!(v.target("3.0"), None);
        let names: Vec<String> = NameNode::children(&v).into_iter().map(|c| c.0).collect();
        assert_eq!(names, ["1.0", "2.0", "latest", "versions.json"]);
        let none = Versions {
            latest: None,
            ..(*v).clone()
        };
        assert_eq!(none.target("latest"), None);
    }
}
