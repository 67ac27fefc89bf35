//! Paths inside DAGs: `CID/path/inside`, through directories and HAMT shards.

use cairn_store::{codec::dagpb::PbLink, parse_cid, BlockSource, Cid};

use crate::{hamt, node::Node, UnixfsError};

/// Splits `[/ipfs/]CID[/path...]` into the CID and the path's components. Empty components
/// (double slashes, a trailing slash) are ignored.
pub fn parse_path(s: &str) -> Result<(Cid, Vec<String>), UnixfsError> {
    let s = s.strip_prefix("/ipfs/").unwrap_or(s);
    let mut parts = s.split('/').filter(|p| !p.is_empty());
    let first = parts
        .next()
        .ok_or_else(|| UnixfsError::NotFound { path: s.to_owned() })?;
    let cid = parse_cid(first)?;
    Ok((cid, parts.map(str::to_owned).collect()))
}

/// Loads and decodes one node.
pub fn load(src: &dyn BlockSource, cid: &Cid) -> Result<Node, UnixfsError> {
    let block = src.get(cid)?.ok_or(UnixfsError::MissingBlock(*cid))?;
    Node::decode(cid, block)
}

/// The link named `name` in a directory or HAMT node, if any.
pub fn lookup(
    src: &dyn BlockSource,
    node: &Node,
    name: &str,
) -> Result<Option<PbLink>, UnixfsError> {
    match node {
        Node::Directory(d) => Ok(d.links.iter().find(|l| l.name() == name).cloned()),
        Node::HamtShard(h) => hamt::lookup(src, h, name),
        _ => Ok(None),
    }
}

/// The entries of a directory or HAMT node, names as users see them.
pub fn list(src: &dyn BlockSource, node: &Node) -> Result<Vec<PbLink>, UnixfsError> {
    match node {
        Node::Directory(d) => Ok(d.links.clone()),
        Node::HamtShard(h) => hamt::list(src, h),
        _ => Ok(Vec::new()),
    }
}

/// Follows `path` from `root`, returning the CID it names.
pub fn resolve(
    src: &dyn BlockSource,
    root: &Cid,
    path: &[impl AsRef<str>],
) -> Result<Cid, UnixfsError> {
    let mut cid = *root;
    let mut walked = root.to_string();
    for part in path {
        let part = part.as_ref();
        let node = load(src, &cid)?;
        if !node.is_dir() {
            return Err(UnixfsError::NotADirectory { path: walked });
        }
        walked.push('/');
        walked.push_str(part);
        cid = lookup(src, &node, part)?
            .ok_or_else(|| UnixfsError::NotFound {
                path: walked.clone(),
            })?
            .cid;
    }
    Ok(cid)
}
