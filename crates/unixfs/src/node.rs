//! A block seen as UnixFS: [`Node::decode`] turns a block into a file, directory, HAMT shard,
//! symlink, or (for other codecs) opaque bytes.

use bytes::Bytes;
use cairn_store::{
    codec::{
        codes,
        dagpb::{PbLink, PbNode},
    },
    Cid,
};

use crate::{
    data::{Data, DataType, Mtime},
    UnixfsError,
};

/// Mode and mtime, when the node carries them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Metadata {
    pub mode: Option<u32>,
    pub mtime: Option<Mtime>,
}

/// A file node: inline bytes followed by children, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileNode {
    /// Bytes stored in this node before any child's.
    pub inline: Bytes,
    /// Children with the number of file bytes below each.
    pub children: Vec<(Cid, u64)>,
    pub size: u64,
    pub meta: Metadata,
}

/// A directory node (not sharded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirNode {
    pub links: Vec<PbLink>,
    pub meta: Metadata,
}

/// One shard of a HAMT directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HamtNode {
    pub fanout: u64,
    pub links: Vec<PbLink>,
    pub meta: Metadata,
}

/// A block as UnixFS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    File(FileNode),
    Directory(DirNode),
    HamtShard(HamtNode),
    Symlink {
        target: Bytes,
        meta: Metadata,
    },
    /// A block of another codec (dag-cbor, dag-json, ...) or a dag-pb node without UnixFS
    /// data: shown as its bytes.
    Opaque {
        codec: u64,
        bytes: Bytes,
    },
}

impl Node {
    /// Decodes `block`, the bytes of `cid` (already verified).
    pub fn decode(cid: &Cid, block: Bytes) -> Result<Node, UnixfsError> {
        match cid.codec() {
            codes::RAW => Ok(Node::File(FileNode {
                size: block.len() as u64,
                inline: block,
                children: Vec::new(),
                meta: Metadata::default(),
            })),
            codes::DAG_PB => decode_pb(&block).map_err(|e| e.at(cid)),
            codec => Ok(Node::Opaque {
                codec,
                bytes: block,
            }),
        }
    }

    pub fn meta(&self) -> Metadata {
        match self {
            Node::File(f) => f.meta,
            Node::Directory(d) => d.meta,
            Node::HamtShard(h) => h.meta,
            Node::Symlink { meta, .. } => *meta,
            Node::Opaque { .. } => Metadata::default(),
        }
    }

    pub fn is_dir(&self) -> bool {
        matches!(self, Node::Directory(_) | Node::HamtShard(_))
    }
}

fn bad(why: impl Into<String>) -> UnixfsError {
    UnixfsError::BadUnixfs(why.into())
}

fn decode_pb(block: &Bytes) -> Result<Node, UnixfsError> {
    let pb = PbNode::decode(block).map_err(|e| bad(e.to_string()))?;
    let Some(raw_data) = pb.data.as_ref() else {
        return Ok(Node::Opaque {
            codec: codes::DAG_PB,
            bytes: block.clone(),
        });
    };
    let data = Data::decode(raw_data).map_err(|e| bad(e.to_string()))?;
    let meta = Metadata {
        mode: data.mode,
        mtime: data.mtime,
    };
    match data.kind {
        DataType::File | DataType::Raw => {
            if data.blocksizes.len() != pb.links.len() {
                return Err(bad(format!(
                    "file node has {} links but {} blocksizes",
                    pb.links.len(),
                    data.blocksizes.len()
                )));
            }
            let inline = data.data.unwrap_or_default();
            let mut size = inline.len() as u64;
            for b in &data.blocksizes {
                size = size
                    .checked_add(*b)
                    .ok_or_else(|| bad("file size overflows"))?;
            }
            if let Some(fs) = data.filesize {
                if fs != size {
                    return Err(bad(format!(
                        "filesize {fs} does not match its parts ({size} bytes)"
                    )));
                }
            }
            let children = pb
                .links
                .iter()
                .zip(&data.blocksizes)
                .map(|(l, s)| (l.cid, *s))
                .collect();
            Ok(Node::File(FileNode {
                inline,
                children,
                size,
                meta,
            }))
        }
        DataType::Directory => Ok(Node::Directory(DirNode {
            links: pb.links,
            meta,
        })),
        DataType::HamtShard => {
            let fanout = data
                .fanout
                .ok_or_else(|| bad("HAMT shard without fanout"))?;
            if !(8..=1024).contains(&fanout) || !fanout.is_power_of_two() {
                return Err(bad(format!(
                    "HAMT fanout {fanout} is not a power of two in 8..=1024"
                )));
            }
            if data.hash_type != Some(crate::hamt::MURMUR3_X64_64) {
                return Err(bad(format!(
                    "HAMT hash type {:?} is not murmur3-x64-64",
                    data.hash_type
                )));
            }
            Ok(Node::HamtShard(HamtNode {
                fanout,
                links: pb.links,
                meta,
            }))
        }
        DataType::Symlink => Ok(Node::Symlink {
            target: data.data.unwrap_or_default(),
            meta,
        }),
        DataType::Metadata => Err(bad("UnixFS Metadata nodes are not supported")),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use cairn_store::{
        codec::unixfs::{AttrKind, Attrs},
        StoreError,
    };

    use super::*;
    use crate::import::{tree, AddOptions, BlockSink};

    /// Keeps every block an import makes.
    #[derive(Default)]
    struct Keep(Mutex<Vec<(Cid, Vec<u8>)>>);

    impl BlockSink for Keep {
        fn put(&self, cid: &Cid, parts: &[&[u8]], _: &[Cid]) -> Result<(), StoreError> {
            self.0.lock().unwrap().push((*cid, parts.concat()));
            Ok(())
        }
    }

    /// The attributes the index keeps (decoded in place by cairn-store) are exactly what
    /// the full decoder makes of every node an import writes: files of one and of many
    /// blocks, empty ones, symlinks, directories, HAMT shards, with and without mode and
    /// mtime. A mount that lists from the index must show what reading would.
    #[test]
    fn index_attributes_agree_with_the_decoder() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("t");
        std::fs::create_dir_all(root.join("many")).unwrap();
        std::fs::write(root.join("empty"), b"").unwrap();
        std::fs::write(root.join("small"), b"hello\n").unwrap();
        std::fs::write(root.join("big"), vec![7u8; 700_000]).unwrap();
        for i in 0..300 {
            std::fs::write(root.join("many").join(format!("f{i:03}")), [i as u8]).unwrap();
        }
        std::os::unix::fs::symlink("small", root.join("link")).unwrap();
        let mut checked = 0;
        for (preserve, cid_version, threshold) in [(false, 0, 256 * 1024), (true, 1, 1000)] {
            let keep = Keep::default();
            let opts = AddOptions {
                preserve_mode: preserve,
                preserve_mtime: preserve,
                shard_threshold: threshold,
                chunk_size: 256 * 1024,
                ..AddOptions::default()
            }
            .resolve(Some(cid_version), None)
            .unwrap();
            tree::add_path(&keep, &opts, &root, true, &()).unwrap();
            for (cid, bytes) in keep.0.into_inner().unwrap() {
                if cid.codec() != codes::DAG_PB {
                    continue;
                }
                let node = Node::decode(&cid, Bytes::from(bytes.clone())).unwrap();
                let want = match &node {
                    Node::File(f) => Some((AttrKind::File, f.size)),
                    Node::Directory(d) => Some((AttrKind::Directory, d.links.len() as u64)),
                    Node::HamtShard(h) => Some((AttrKind::Directory, h.links.len() as u64)),
                    Node::Symlink { target, .. } => Some((AttrKind::Symlink, target.len() as u64)),
                    Node::Opaque { .. } => None,
                };
                let got = Attrs::of_dag_pb(&bytes);
                assert_eq!(got.map(|a| (a.kind, a.size)), want, "{cid}");
                if let Some(a) = got {
                    assert_eq!(a.mode, node.meta().mode, "{cid}");
                    assert_eq!(a.mtime, node.meta().mtime, "{cid}");
                }
                checked += 1;
            }
        }
        assert!(checked > 20, "{checked}");
        // What the decoder refuses, the index does not describe either.
        assert_eq!(Attrs::of_dag_pb(b"\x0a\x02\x08\x03"), None);
        assert_eq!(Attrs::of_dag_pb(b"garbage"), None);
    }
}
