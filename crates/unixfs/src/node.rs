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
    let data = Data::decode(raw_data)?;
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
