//! CAR (content-addressed archive) files: v1 read and write, v2 read.
//!
//! Import checks every block's hash before storing it (through [`Store::put`]). On a broken
//! CAR, the blocks of every section before the bad one are kept (each was verified and stored
//! as it was read); the error names the section, its byte offset and how many blocks were kept.
//! Trailing zero-length sections followed only by zero bytes are read as padding (go-car's
//! `ZeroLengthSectionAsEOF`); a zero-length section followed by anything else is an error.

use std::{
    collections::HashSet,
    io::{self, Read, Write},
};

use bytes::Bytes;
use cairn_store::{codec, BlockSource, Cid, Store, StoreError, MAX_BLOCK_SIZE};
use ipld_core::ipld::Ipld;

use crate::{Progress, UnixfsError};

const MAX_HEADER: u64 = 4 << 20;
const MAX_SECTION: u64 = MAX_BLOCK_SIZE as u64 + 1024;
const V2_PRAGMA: [u8; 11] = [
    0x0a, 0xa1, 0x67, 0x76, 0x65, 0x72, 0x73, 0x69, 0x6f, 0x6e, 0x02,
];

/// What is wrong with a CAR.
#[derive(Debug, thiserror::Error)]
pub enum CarError {
    #[error("reading CAR")]
    Io(#[source] io::Error),
    #[error("CAR ends in the middle of {0}")]
    Truncated(String),
    #[error("invalid CAR header: {0}")]
    Header(String),
    #[error("unsupported CAR version {0} (cairn reads versions 1 and 2)")]
    Version(u64),
    #[error("CAR section {index} at byte {offset}: {why}")]
    Section {
        index: u64,
        offset: u64,
        why: String,
    },
}

/// Reads uvarints while counting bytes, to report offsets.
struct Counting<R> {
    inner: R,
    pos: u64,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl<R: Read> Counting<R> {
    /// Reads a uvarint; `Ok(None)` at a clean end of input.
    fn uvarint(&mut self, what: &str) -> Result<Option<u64>, CarError> {
        let mut v: u64 = 0;
        for i in 0..10 {
            let mut b = [0u8];
            match self.read(&mut b) {
                Ok(0) if i == 0 => return Ok(None),
                Ok(0) => return Err(CarError::Truncated(what.into())),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(CarError::Io(e)),
            }
            if i == 9 && b[0] > 1 {
                break;
            }
            v |= ((b[0] & 0x7f) as u64) << (7 * i);
            if b[0] < 0x80 {
                return Ok(Some(v));
            }
        }
        Err(CarError::Header(format!(
            "{what}: varint longer than 64 bits"
        )))
    }

    fn exact(&mut self, n: u64, what: &str) -> Result<Vec<u8>, CarError> {
        let mut buf = Vec::with_capacity(n as usize);
        (&mut *self)
            .take(n)
            .read_to_end(&mut buf)
            .map_err(CarError::Io)?;
        if (buf.len() as u64) < n {
            return Err(CarError::Truncated(what.into()));
        }
        Ok(buf)
    }
}

/// A streaming CAR reader. Blocks are returned as they are in the file, unverified.
pub struct CarReader<R> {
    r: Counting<R>,
    roots: Vec<Cid>,
    version: u64,
    /// End of the CARv1 payload inside a CARv2, from the start of the file.
    end: Option<u64>,
    index: u64,
}

fn decode_header(bytes: &[u8]) -> Result<(u64, Option<Vec<Cid>>), CarError> {
    let value: Ipld = serde_ipld_dagcbor::from_slice(bytes)
        .map_err(|e| CarError::Header(format!("not DAG-CBOR: {e}")))?;
    let Ipld::Map(map) = value else {
        return Err(CarError::Header("header is not a map".into()));
    };
    let version = match map.get("version") {
        Some(Ipld::Integer(v)) => {
            u64::try_from(*v).map_err(|_| CarError::Header(format!("version {v}")))?
        }
        Some(_) => return Err(CarError::Header("version is not a number".into())),
        None => return Err(CarError::Header("no version".into())),
    };
    let roots = match map.get("roots") {
        None => None,
        Some(Ipld::List(items)) => Some(
            items
                .iter()
                .map(|i| match i {
                    Ipld::Link(c) => Ok(*c),
                    _ => Err(CarError::Header("a root is not a CID".into())),
                })
                .collect::<Result<_, _>>()?,
        ),
        Some(_) => return Err(CarError::Header("roots is not a list".into())),
    };
    Ok((version, roots))
}

impl<R: Read> CarReader<R> {
    /// Reads the header (and for CARv2 the inner CARv1 header).
    pub fn new(inner: R) -> Result<Self, CarError> {
        let mut r = Counting { inner, pos: 0 };
        let (version, roots) = Self::header(&mut r)?;
        match version {
            1 => Ok(CarReader {
                r,
                roots: roots.ok_or_else(|| CarError::Header("no roots".into()))?,
                version: 1,
                end: None,
                index: 0,
            }),
            2 => {
                if r.pos != V2_PRAGMA.len() as u64 {
                    return Err(CarError::Header(
                        "CARv2 pragma is not the canonical 11 bytes".into(),
                    ));
                }
                let h = r.exact(40, "the CARv2 header")?;
                let le = |at: usize| {
                    let mut b = [0u8; 8];
                    b.copy_from_slice(&h[at..at + 8]);
                    u64::from_le_bytes(b)
                };
                // `exact` returned all 40 bytes.
                let (data_offset, data_size, index_offset) = (le(16), le(24), le(32));
                if data_offset < 51 || data_size == 0 {
                    return Err(CarError::Header(format!(
                        "CARv2 data offset {data_offset} / size {data_size} out of range"
                    )));
                }
                let end = data_offset
                    .checked_add(data_size)
                    .ok_or_else(|| CarError::Header("CARv2 data size overflows".into()))?;
                if index_offset != 0 && index_offset < end {
                    return Err(CarError::Header(format!(
                        "CARv2 index at {index_offset} overlaps the data ending at {end}"
                    )));
                }
                let skip = data_offset - r.pos;
                io::copy(&mut (&mut r).take(skip), &mut io::sink()).map_err(CarError::Io)?;
                if r.pos != data_offset {
                    return Err(CarError::Truncated("the CARv2 padding".into()));
                }
                let (v, roots) = Self::header(&mut r)?;
                if v != 1 {
                    return Err(CarError::Header(format!(
                        "CARv2 payload has version {v}, expected 1"
                    )));
                }
                if r.pos > end {
                    return Err(CarError::Header(
                        "CARv2 payload header runs past data size".into(),
                    ));
                }
                Ok(CarReader {
                    r,
                    roots: roots.ok_or_else(|| CarError::Header("no roots".into()))?,
                    version: 2,
                    end: Some(end),
                    index: 0,
                })
            }
            v => Err(CarError::Version(v)),
        }
    }

    fn header(r: &mut Counting<R>) -> Result<(u64, Option<Vec<Cid>>), CarError> {
        let len = r
            .uvarint("the header length")?
            .ok_or_else(|| CarError::Truncated("the header length".into()))?;
        if len == 0 || len > MAX_HEADER {
            return Err(CarError::Header(format!(
                "header length {len} is out of range"
            )));
        }
        let bytes = r.exact(len, "the header")?;
        decode_header(&bytes)
    }

    pub fn roots(&self) -> &[Cid] {
        &self.roots
    }

    pub fn version(&self) -> u64 {
        self.version
    }

    /// Sections read so far.
    pub fn sections(&self) -> u64 {
        self.index
    }

    /// Byte offset of the reader in the file.
    pub fn offset(&self) -> u64 {
        self.r.pos
    }

    /// The next block, or `Ok(None)` at the end.
    pub fn next_block(&mut self) -> Result<Option<(Cid, Bytes)>, CarError> {
        let offset = self.r.pos;
        if self.end.is_some_and(|e| offset >= e) {
            return Ok(None);
        }
        let index = self.index;
        let section = |why: String| CarError::Section { index, offset, why };
        let Some(len) = self.r.uvarint("a section length")? else {
            if self.end.is_some() {
                return Err(CarError::Truncated("the CARv2 payload".into()));
            }
            return Ok(None);
        };
        if let Some(end) = self.end {
            // An overlong varint can run past the payload's end before saying anything.
            if self.r.pos > end {
                return Err(section(format!(
                    "the section length runs past the end of the CARv2 payload at byte {end}"
                )));
            }
        }
        if len == 0 {
            return self.padding(index, offset);
        }
        if len > MAX_SECTION {
            return Err(section(format!(
                "length {len} exceeds the {MAX_SECTION}-byte limit"
            )));
        }
        if let Some(end) = self.end {
            if self.r.pos.saturating_add(len) > end {
                return Err(section(format!(
                    "length {len} runs past the end of the CARv2 payload"
                )));
            }
        }
        let bytes = self
            .r
            .exact(len, &format!("section {index} at byte {offset}"))?;
        let mut cur = io::Cursor::new(&bytes[..]);
        let cid = Cid::read_bytes(&mut cur).map_err(|e| section(format!("invalid CID: {e}")))?;
        let at = cur.position() as usize;
        let data = Bytes::from(bytes).slice(at..);
        self.index += 1;
        Ok(Some((cid, data)))
    }

    /// A zero-length section: the end, provided only zero bytes follow.
    fn padding(&mut self, index: u64, offset: u64) -> Result<Option<(Cid, Bytes)>, CarError> {
        let mut buf = [0u8; 8192];
        loop {
            let limit = self.end.map_or(buf.len() as u64, |e| {
                e.saturating_sub(self.r.pos).min(buf.len() as u64)
            });
            if limit == 0 {
                return Ok(None);
            }
            let n = self
                .r
                .read(&mut buf[..limit as usize])
                .map_err(CarError::Io)?;
            if n == 0 {
                return Ok(None);
            }
            if buf[..n].iter().any(|&b| b != 0) {
                return Err(CarError::Section {
                    index,
                    offset,
                    why: "zero-length section followed by more data".into(),
                });
            }
        }
    }
}

/// Writes a CARv1.
pub struct CarWriter<W> {
    w: W,
}

impl<W: Write> CarWriter<W> {
    pub fn new(mut w: W, roots: &[Cid]) -> io::Result<Self> {
        let mut map = std::collections::BTreeMap::new();
        map.insert(
            "roots".to_string(),
            Ipld::List(roots.iter().map(|c| Ipld::Link(*c)).collect()),
        );
        map.insert("version".to_string(), Ipld::Integer(1));
        let header = serde_ipld_dagcbor::to_vec(&Ipld::Map(map)).map_err(io::Error::other)?;
        write_uvarint(&mut w, header.len() as u64)?;
        w.write_all(&header)?;
        Ok(CarWriter { w })
    }

    pub fn write_block(&mut self, cid: &Cid, data: &[u8]) -> io::Result<()> {
        let c = cid.to_bytes();
        write_uvarint(&mut self.w, (c.len() + data.len()) as u64)?;
        self.w.write_all(&c)?;
        self.w.write_all(data)
    }

    pub fn finish(mut self) -> io::Result<W> {
        self.w.flush()?;
        Ok(self.w)
    }
}

fn write_uvarint(w: &mut impl Write, v: u64) -> io::Result<()> {
    let mut buf = Vec::with_capacity(10);
    codec::pb::put_varint(&mut buf, v);
    w.write_all(&buf)
}

/// What an import stored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CarImport {
    pub roots: Vec<Cid>,
    pub version: u64,
    pub blocks: u64,
    /// Blocks that were not in the store before.
    pub fresh: u64,
    pub bytes: u64,
}

/// An import that stopped at a bad section; `kept` describes what was stored before it.
#[derive(Debug, thiserror::Error)]
#[error("kept the {} blocks before the error", kept.blocks)]
pub struct CarImportError {
    pub kept: CarImport,
    #[source]
    pub error: UnixfsError,
}

/// Imports a CAR into `store`, verifying every block before it is stored. The caller flushes.
pub fn import<R: Read>(
    store: &Store,
    input: R,
    progress: &dyn Progress,
) -> Result<CarImport, CarImportError> {
    let mut stats = CarImport::default();
    let mut reader = match CarReader::new(input) {
        Ok(r) => r,
        Err(e) => {
            return Err(CarImportError {
                kept: stats,
                error: e.into(),
            })
        }
    };
    stats.roots = reader.roots().to_vec();
    stats.version = reader.version();
    loop {
        let offset = reader.offset();
        let index = reader.sections();
        let fail = |stats: &CarImport, error: UnixfsError| CarImportError {
            kept: stats.clone(),
            error,
        };
        let (cid, data) = match reader.next_block() {
            Ok(Some(b)) => b,
            Ok(None) => return Ok(stats),
            Err(e) => return Err(fail(&stats, e.into())),
        };
        let put = store.put(&cid, &data).map_err(|e| match e {
            StoreError::Corrupt { cid } => UnixfsError::Car(CarError::Section {
                index,
                offset,
                why: format!("block {cid} does not match its hash"),
            }),
            other => other.into(),
        });
        match put {
            Ok(fresh) => {
                stats.blocks += 1;
                stats.fresh += fresh as u64;
                stats.bytes += data.len() as u64;
                progress.add_bytes(reader.offset() - offset);
            }
            Err(e) => return Err(fail(&stats, e)),
        }
    }
}

/// Writes the DAGs under `roots` as a CARv1, depth first, each block once (as `ipfs dag
/// export` does). Fails on the first missing block.
pub fn export<W: Write>(
    src: &dyn BlockSource,
    roots: &[Cid],
    out: W,
    progress: &dyn Progress,
) -> Result<(W, u64), UnixfsError> {
    let mut w = CarWriter::new(out, roots).map_err(UnixfsError::Output)?;
    let mut seen = HashSet::new();
    let mut stack: Vec<Cid> = roots.iter().rev().copied().collect();
    let mut blocks = 0;
    while let Some(cid) = stack.pop() {
        if !seen.insert(cairn_store::canonical(&cid)) {
            continue;
        }
        let data = src.get(&cid)?.ok_or(UnixfsError::MissingBlock(cid))?;
        w.write_block(&cid, &data).map_err(UnixfsError::Output)?;
        blocks += 1;
        progress.add_bytes(data.len() as u64);
        let links =
            codec::links_of(&cid, &data).map_err(|source| StoreError::Decode { cid, source })?;
        stack.extend(links.into_iter().rev());
    }
    Ok((w.finish().map_err(UnixfsError::Output)?, blocks))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn car_v1(roots: &[Cid], blocks: &[(Cid, &[u8])]) -> Vec<u8> {
        let mut w = CarWriter::new(Vec::new(), roots).unwrap();
        for (c, d) in blocks {
            w.write_block(c, d).unwrap();
        }
        w.finish().unwrap()
    }

    /// A CARv2 wrapping `payload`, claiming `data_size` bytes of it.
    fn car_v2(payload: &[u8], data_size: u64) -> Vec<u8> {
        let mut v = V2_PRAGMA.to_vec();
        v.extend_from_slice(&[0; 16]);
        v.extend_from_slice(&51u64.to_le_bytes());
        v.extend_from_slice(&data_size.to_le_bytes());
        v.extend_from_slice(&0u64.to_le_bytes());
        v.extend_from_slice(payload);
        v
    }

    fn read_all(bytes: &[u8]) -> Result<Vec<(Cid, Bytes)>, CarError> {
        let mut r = CarReader::new(bytes)?;
        let mut out = Vec::new();
        while let Some(b) = r.next_block()? {
            out.push(b);
        }
        Ok(out)
    }

    fn block(data: &[u8]) -> Cid {
        Cid::new_v1(0x55, cairn_store::HashAlg::Sha2_256.digest(data))
    }

    /// A zero-length section spelled as an overlong varint (0x80 0x00) whose last byte lies
    /// past the end of the CARv2 payload: the padding arithmetic must not underflow.
    #[test]
    fn an_overlong_zero_length_straddling_the_payload_end_is_an_error() {
        let c = block(b"hi");
        let mut payload = car_v1(&[c], &[(c, b"hi")]);
        let size = payload.len() as u64 + 1;
        payload.extend_from_slice(&[0x80, 0x00]);
        let err = read_all(&car_v2(&payload, size)).unwrap_err();
        assert!(err.to_string().contains("past the end"), "{err}");
        // The same zero-length section inside the payload is padding, as go-car reads it.
        let blocks = read_all(&car_v2(&payload, size + 1)).unwrap();
        assert_eq!(blocks.len(), 1);
    }

    #[test]
    fn huge_lengths_are_refused_before_allocating() {
        let c = block(b"hi");
        let mut v = car_v1(&[c], &[]);
        v.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]);
        let err = read_all(&v).unwrap_err();
        assert!(err.to_string().contains("exceeds"), "{err}");
        // A header length of 2^63.
        let v = [0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01];
        assert!(read_all(&v).is_err());
        // A CARv2 whose data size overflows.
        let err = read_all(&car_v2(&car_v1(&[c], &[]), u64::MAX)).unwrap_err();
        assert!(err.to_string().contains("overflows"), "{err}");
    }

    /// A header nested thousands of levels deep is an error, not a stack overflow.
    #[test]
    fn a_deeply_nested_header_is_an_error() {
        let mut v = Vec::new();
        let body = vec![0x81u8; 100_000];
        codec::pb::put_varint(&mut v, body.len() as u64);
        v.extend_from_slice(&body);
        assert!(read_all(&v).is_err());
    }
}
