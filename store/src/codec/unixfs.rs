//! The UnixFS `Data` message carried in a dag-pb node's `Data` field (UnixFS v1, with the
//! mode and mtime fields of "UnixFS 1.5"), and the attributes of a node that the index keeps
//! ([`Attrs`]). It lives here, below the UnixFS layer (`cairn-unixfs`, which re-exports it as
//! `cairn_unixfs::data`), so that the index can record what a listing and `stat` need when a
//! block is put, from whatever source.

use super::pb::{self, Reader};
use bytes::Bytes;

use crate::error::DecodeError;

/// UnixFS node types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataType {
    Raw = 0,
    Directory = 1,
    File = 2,
    Metadata = 3,
    Symlink = 4,
    HamtShard = 5,
}

impl DataType {
    fn from_u64(v: u64) -> Option<DataType> {
        Some(match v {
            0 => DataType::Raw,
            1 => DataType::Directory,
            2 => DataType::File,
            3 => DataType::Metadata,
            4 => DataType::Symlink,
            5 => DataType::HamtShard,
            _ => return None,
        })
    }
}

/// A modification time: seconds since the epoch and optional nanoseconds (1..=999,999,999).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Mtime {
    pub seconds: i64,
    pub nanos: Option<u32>,
}

/// A decoded UnixFS `Data` message. `data` slices the block it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Data {
    pub kind: DataType,
    pub data: Option<Bytes>,
    pub filesize: Option<u64>,
    pub blocksizes: Vec<u64>,
    pub hash_type: Option<u64>,
    pub fanout: Option<u64>,
    pub mode: Option<u32>,
    pub mtime: Option<Mtime>,
}

impl Data {
    pub fn new(kind: DataType) -> Data {
        Data {
            kind,
            data: None,
            filesize: None,
            blocksizes: Vec::new(),
            hash_type: None,
            fanout: None,
            mode: None,
            mtime: None,
        }
    }

    /// Encodes in field-number order, `blocksizes` unpacked, as go-unixfs does.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        pb::put_uint(out, 1, self.kind as u64);
        if let Some(d) = &self.data {
            pb::put_bytes(out, 2, d);
        }
        self.encode_tail(out);
    }

    /// Encodes everything after field 2 (`Data`); the importer writes fields 1 and 2 around a
    /// chunk it does not want to copy.
    pub fn encode_tail(&self, out: &mut Vec<u8>) {
        if let Some(s) = self.filesize {
            pb::put_uint(out, 3, s);
        }
        for b in &self.blocksizes {
            pb::put_uint(out, 4, *b);
        }
        if let Some(h) = self.hash_type {
            pb::put_uint(out, 5, h);
        }
        if let Some(f) = self.fanout {
            pb::put_uint(out, 6, f);
        }
        if let Some(m) = self.mode {
            pb::put_uint(out, 7, m as u64);
        }
        if let Some(t) = self.mtime {
            let mut inner = Vec::with_capacity(16);
            pb::put_uint(&mut inner, 1, t.seconds as u64);
            if let Some(n) = t.nanos {
                pb::put_key(&mut inner, 2, pb::FIXED32);
                inner.extend_from_slice(&n.to_le_bytes());
            }
            pb::put_bytes(out, 8, &inner);
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 + self.data.as_ref().map_or(0, |d| d.len()));
        self.encode_into(&mut out);
        out
    }

    /// Decodes a `Data` message. Unknown fields are skipped (UnixFS leaves room for them);
    /// known fields with the wrong wire type, and a missing or unknown `Type`, are errors.
    pub fn decode(buf: &Bytes) -> Result<Data, DecodeError> {
        let (mut d, range) = Data::decode_slice(buf)?;
        d.data = range.map(|r| buf.slice(r));
        Ok(d)
    }

    /// [`Data::decode`] without keeping the bytes: `data` is left `None` and its place in
    /// `buf` returned instead.
    pub fn decode_slice(buf: &[u8]) -> Result<(Data, Option<std::ops::Range<usize>>), DecodeError> {
        let bad = |why: String| DecodeError::Unixfs(why);
        let mut r = Reader::new(buf);
        let mut kind = None;
        let mut range = None;
        let mut d = Data::new(DataType::Raw);
        while !r.is_empty() {
            let (field, wt) = r.key().map_err(|e| bad(e.to_string()))?;
            let want = |w: u8| pb::expect(field, wt, w).map_err(|e| bad(e.to_string()));
            match field {
                1 => {
                    want(pb::VARINT)?;
                    let v = r.varint().map_err(|e| bad(e.to_string()))?;
                    kind = Some(
                        DataType::from_u64(v).ok_or_else(|| bad(format!("unknown type {v}")))?,
                    );
                }
                2 => {
                    want(pb::LEN)?;
                    range = Some(r.bytes_range().map_err(|e| bad(e.to_string()))?);
                }
                3 => {
                    want(pb::VARINT)?;
                    d.filesize = Some(r.varint().map_err(|e| bad(e.to_string()))?);
                }
                4 if wt == pb::LEN => {
                    // Packed encoding, written by some non-Go implementations.
                    let packed = r.bytes().map_err(|e| bad(e.to_string()))?;
                    let mut p = Reader::new(packed);
                    while !p.is_empty() {
                        d.blocksizes
                            .push(p.varint().map_err(|e| bad(e.to_string()))?);
                    }
                }
                4 => {
                    want(pb::VARINT)?;
                    d.blocksizes
                        .push(r.varint().map_err(|e| bad(e.to_string()))?);
                }
                5 => {
                    want(pb::VARINT)?;
                    d.hash_type = Some(r.varint().map_err(|e| bad(e.to_string()))?);
                }
                6 => {
                    want(pb::VARINT)?;
                    d.fanout = Some(r.varint().map_err(|e| bad(e.to_string()))?);
                }
                7 => {
                    want(pb::VARINT)?;
                    d.mode = Some(r.varint().map_err(|e| bad(e.to_string()))? as u32);
                }
                8 => {
                    want(pb::LEN)?;
                    d.mtime = Some(decode_mtime(r.bytes().map_err(|e| bad(e.to_string()))?)?);
                }
                _ => r.skip(wt).map_err(|e| bad(e.to_string()))?,
            }
        }
        d.kind = kind.ok_or_else(|| bad("no Type field".into()))?;
        Ok((d, range))
    }
}

/// What a listing and `stat` need of a UnixFS node, which the index keeps so that they need
/// not read the node's block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attrs {
    pub kind: AttrKind,
    /// A file's size, a symlink target's length, a directory's (or HAMT shard's) number of
    /// links.
    pub size: u64,
    pub mode: Option<u32>,
    pub mtime: Option<Mtime>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttrKind {
    File = 1,
    Directory = 2,
    Symlink = 3,
}

impl Attrs {
    /// The attributes of a dag-pb block, by the rules `cairn-unixfs` decodes nodes with (a
    /// file is its inline data and its parts, one per link, matching `filesize`; a HAMT has a
    /// valid fanout and murmur3). `None` for anything else: a node without UnixFS data, one
    /// that does not decode, a Metadata node. Reads `block` in place.
    pub fn of_dag_pb(block: &[u8]) -> Option<Attrs> {
        let mut r = Reader::new(block);
        let (mut data, mut links) = (None, 0usize);
        while !r.is_empty() {
            match r.key().ok()? {
                (1, pb::LEN) if data.is_none() => data = Some(r.bytes().ok()?),
                (2, pb::LEN) => {
                    r.bytes().ok()?;
                    links += 1;
                }
                _ => return None,
            }
        }
        let (d, range) = Data::decode_slice(data?).ok()?;
        let inline = range.map_or(0, |r| r.len() as u64);
        let (kind, size) = match d.kind {
            DataType::File | DataType::Raw => {
                if d.blocksizes.len() != links {
                    return None;
                }
                let size = d
                    .blocksizes
                    .iter()
                    .try_fold(inline, |a, b| a.checked_add(*b))?;
                if d.filesize.is_some_and(|f| f != size) {
                    return None;
                }
                (AttrKind::File, size)
            }
            DataType::Directory => (AttrKind::Directory, links as u64),
            DataType::HamtShard => {
                let f = d.fanout?;
                if !(8..=1024).contains(&f) || !f.is_power_of_two() || d.hash_type != Some(0x22) {
                    return None;
                }
                (AttrKind::Directory, links as u64)
            }
            DataType::Symlink => (AttrKind::Symlink, inline),
            DataType::Metadata => return None,
        };
        Some(Attrs {
            kind,
            size,
            mode: d.mode,
            mtime: d.mtime,
        })
    }

    /// `kind | size | mode + 1 (0: none) | 0, or 1 seconds, or 2 seconds nanos` as varints
    /// (seconds zigzag-encoded).
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        pb::put_varint(out, self.kind as u64);
        pb::put_varint(out, self.size);
        pb::put_varint(out, self.mode.map_or(0, |m| m as u64 + 1));
        match self.mtime {
            None => pb::put_varint(out, 0),
            Some(t) => {
                pb::put_varint(out, if t.nanos.is_some() { 2 } else { 1 });
                pb::put_varint(out, ((t.seconds << 1) ^ (t.seconds >> 63)) as u64);
                if let Some(n) = t.nanos {
                    pb::put_varint(out, n as u64);
                }
            }
        }
    }

    pub fn decode_from(r: &mut Reader<'_>) -> Option<Attrs> {
        let kind = match r.varint().ok()? {
            1 => AttrKind::File,
            2 => AttrKind::Directory,
            3 => AttrKind::Symlink,
            _ => return None,
        };
        let size = r.varint().ok()?;
        let mode = match r.varint().ok()? {
            0 => None,
            m => Some(u32::try_from(m - 1).ok()?),
        };
        let mtime = match r.varint().ok()? {
            0 => None,
            f @ (1 | 2) => {
                let z = r.varint().ok()?;
                let seconds = ((z >> 1) as i64) ^ -((z & 1) as i64);
                let nanos = if f == 2 {
                    Some(u32::try_from(r.varint().ok()?).ok()?)
                } else {
                    None
                };
                Some(Mtime { seconds, nanos })
            }
            _ => return None,
        };
        Some(Attrs {
            kind,
            size,
            mode,
            mtime,
        })
    }
}

fn decode_mtime(buf: &[u8]) -> Result<Mtime, DecodeError> {
    let bad = |why: String| DecodeError::Unixfs(format!("mtime: {why}"));
    let mut r = Reader::new(buf);
    let mut t = Mtime::default();
    let mut have_seconds = false;
    while !r.is_empty() {
        let (field, wt) = r.key().map_err(|e| bad(e.to_string()))?;
        match (field, wt) {
            (1, pb::VARINT) => {
                t.seconds = r.varint().map_err(|e| bad(e.to_string()))? as i64;
                have_seconds = true;
            }
            (2, pb::FIXED32) => {
                let n = r.fixed32().map_err(|e| bad(e.to_string()))?;
                if n > 999_999_999 {
                    return Err(bad(format!("nanoseconds {n} out of range")));
                }
                t.nanos = (n != 0).then_some(n);
            }
            (_, wt) => r.skip(wt).map_err(|e| bad(e.to_string()))?,
        }
    }
    if !have_seconds {
        return Err(bad("no seconds".into()));
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubo_byte_layouts() {
        let mut empty = Data::new(DataType::File);
        empty.filesize = Some(0);
        assert_eq!(empty.encode(), [0x08, 0x02, 0x18, 0x00]);
        empty.mode = Some(0o640);
        assert_eq!(empty.encode(), [0x08, 0x02, 0x18, 0x00, 0x38, 0xa0, 0x03]);
        assert_eq!(Data::new(DataType::Directory).encode(), [0x08, 0x01]);
    }

    #[test]
    fn round_trip_with_everything() {
        let d = Data {
            kind: DataType::File,
            data: Some(Bytes::from_static(b"abc")),
            filesize: Some(10),
            blocksizes: vec![3, 7],
            hash_type: None,
            fanout: None,
            mode: Some(0o755),
            mtime: Some(Mtime {
                seconds: -5,
                nanos: Some(54321),
            }),
        };
        assert_eq!(Data::decode(&Bytes::from(d.encode())).unwrap(), d);
    }

    #[test]
    fn garbage_is_an_error() {
        for bad in [&b""[..], b"\x08\x09", b"\x08", b"\x12\x05ab", b"\x0a\x00"] {
            assert!(
                Data::decode(&Bytes::copy_from_slice(bad)).is_err(),
                "{bad:x?}"
            );
        }
    }
}
