//! Index journals: how processes that do not hold the RocksDB index record what they wrote.
//!
//! RocksDB admits one writing process at a time. cairn has many writers (several `cairn add`
//! at once, the network daemon, a CAR import) and one long reader that must not stall them
//! (the collector). So a writer never waits for the database: it appends its records to its own
//! journal, `R/index/journal/{pid}-{nanos}.log`, holding an exclusive `flock` on it while it
//! writes. Whoever opens the database next (the writer itself when it finishes, if the database
//! is free; `gc`, `refs`, `stat`, `repair` otherwise) ingests every journal it can lock, that
//! is, every journal whose writer has finished or died, then deletes it.
//!
//! Records are framed `[len u32][crc32 u32][payload]`; a torn tail (the writer was killed
//! mid-write) fails its checksum and is dropped with everything after it. Losing records is
//! safe: the index is a cache of facts that can be re-derived from the block files, and every
//! reader falls back to parsing the block when the index has no entry.

use std::{
    fs::{self, File, OpenOptions},
    io::{self, Read, Write},
    os::fd::AsRawFd,
    path::{Path, PathBuf},
    time::{SystemTime, UNIX_EPOCH},
};

use cid::Cid;

use crate::{index::BlockMeta, StoreError};

const OP_PUT: u8 = 1;
const OP_DELETE: u8 = 2;
const FLUSH_AT: usize = 256 << 10;

/// One journal record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    Put(Cid, BlockMeta),
    Delete(Cid),
}

/// The journal of one writing process. Dropping it flushes and releases the lock.
#[derive(Debug)]
pub struct JournalWriter {
    file: File,
    path: PathBuf,
    buf: Vec<u8>,
    records: u64,
}

impl JournalWriter {
    /// Creates a new journal in `dir` and locks it.
    pub fn create(dir: &Path) -> Result<Self, StoreError> {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let path = dir.join(format!("{}-{nanos}.log", std::process::id()));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| StoreError::io(&path, e))?;
        flock(&file, libc::LOCK_EX).map_err(|e| StoreError::io(&path, e))?;
        Ok(JournalWriter {
            file,
            path,
            buf: Vec::with_capacity(FLUSH_AT + 4096),
            records: 0,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn records(&self) -> u64 {
        self.records
    }

    pub fn append(&mut self, record: &Record) -> Result<(), StoreError> {
        let start = self.buf.len();
        self.buf.extend_from_slice(&[0; 8]);
        match record {
            Record::Put(cid, meta) => {
                self.buf.push(OP_PUT);
                let key = cid.to_bytes();
                crate::codec::pb::put_varint(&mut self.buf, key.len() as u64);
                self.buf.extend_from_slice(&key);
                meta.encode_into(&mut self.buf);
            }
            Record::Delete(cid) => {
                self.buf.push(OP_DELETE);
                let key = cid.to_bytes();
                crate::codec::pb::put_varint(&mut self.buf, key.len() as u64);
                self.buf.extend_from_slice(&key);
            }
        }
        let payload = &self.buf[start + 8..];
        let len = payload.len() as u32;
        let crc = crc32fast::hash(payload);
        self.buf[start..start + 4].copy_from_slice(&len.to_le_bytes());
        self.buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
        self.records += 1;
        if self.buf.len() >= FLUSH_AT {
            self.flush()?;
        }
        Ok(())
    }

    /// Writes buffered records to the file (no fsync: see the store's sync policy).
    pub fn flush(&mut self) -> Result<(), StoreError> {
        if !self.buf.is_empty() {
            self.file
                .write_all(&self.buf)
                .map_err(|e| StoreError::io(&self.path, e))?;
            self.buf.clear();
        }
        Ok(())
    }

    /// Flushes, fsyncs and unlocks the journal, leaving it for the next ingest.
    pub fn finish(mut self) -> Result<PathBuf, StoreError> {
        self.flush()?;
        self.file
            .sync_data()
            .map_err(|e| StoreError::io(&self.path, e))?;
        Ok(self.path.clone())
    }
}

impl Drop for JournalWriter {
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

/// A finished journal, locked by the ingesting process so no one else ingests it too.
pub struct ClaimedJournal {
    _file: File,
    pub path: PathBuf,
    pub records: Vec<Record>,
    /// Set when the journal ended in a torn or corrupt record (its writer was killed).
    pub torn: bool,
}

/// Claims every journal in `dir` whose writer has finished or died.
pub fn claim_all(dir: &Path) -> Result<Vec<ClaimedJournal>, StoreError> {
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(StoreError::io(dir, e)),
    };
    let mut paths: Vec<PathBuf> = rd
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    paths.sort();
    let mut out = Vec::new();
    for path in paths {
        let mut file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(StoreError::io(&path, e)),
        };
        if flock(&file, libc::LOCK_EX | libc::LOCK_NB).is_err() {
            continue; // its writer is still running
        }
        // Another ingester may have deleted it between our open and our lock.
        if !path.exists() {
            continue;
        }
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)
            .map_err(|e| StoreError::io(&path, e))?;
        let (records, torn) = parse(&bytes);
        if torn {
            log::warn!(
                "{}: skipped a torn or corrupt record and everything after it ({} records kept)",
                path.display(),
                records.len()
            );
        }
        out.push(ClaimedJournal {
            _file: file,
            path,
            records,
            torn,
        });
    }
    Ok(out)
}

/// The complete, checksummed records of a journal's bytes, and whether it ended in a torn or
/// corrupt record (which is dropped with everything after it).
pub fn parse(mut bytes: &[u8]) -> (Vec<Record>, bool) {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let Some(record) = parse_one(&mut bytes) else {
            return (out, true);
        };
        out.push(record);
    }
    (out, false)
}

fn parse_one(bytes: &mut &[u8]) -> Option<Record> {
    let header = bytes.get(..8)?;
    let len = u32::from_le_bytes(header[..4].try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(header[4..].try_into().ok()?);
    let payload = bytes.get(8..8usize.checked_add(len)?)?;
    // An all-zero header is a zero-length payload whose CRC (0) matches: a file extended but
    // never written (a crash after the size reached the disk, before the data did). Every
    // real record has at least an opcode and a key.
    let (&op, body) = payload.split_first()?;
    if crc32fast::hash(payload) != crc {
        return None;
    }
    *bytes = &bytes[8 + len..];
    let mut r = crate::codec::pb::Reader::new(body);
    let key = r.bytes().ok()?;
    let cid = Cid::try_from(key).ok()?;
    let rest = body.get(r.position()..)?;
    match op {
        OP_PUT => Some(Record::Put(cid, BlockMeta::decode(rest)?)),
        OP_DELETE if rest.is_empty() => Some(Record::Delete(cid)),
        _ => None,
    }
}

pub(crate) fn flock(file: &File, op: i32) -> io::Result<()> {
    loop {
        // SAFETY: the fd is valid for the duration of the call.
        if unsafe { libc::flock(file.as_raw_fd(), op) } == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(n: u64) -> BlockMeta {
        BlockMeta {
            attrs: None,
            children: None,
            size: n,
            codec: 0x70,
            links: vec!["QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH"
                .parse()
                .unwrap()],
        }
    }

    #[test]
    fn journals_round_trip_and_live_ones_are_not_claimed() {
        let dir = tempfile::tempdir().unwrap();
        let cid: Cid = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
            .parse()
            .unwrap();
        let mut w = JournalWriter::create(dir.path()).unwrap();
        w.append(&Record::Put(cid, meta(7))).unwrap();
        w.append(&Record::Delete(cid)).unwrap();
        w.flush().unwrap();
        // flock is per open file description: a second open in this process must not get it.
        assert!(claim_all(dir.path()).unwrap().is_empty());
        w.finish().unwrap();
        let claimed = claim_all(dir.path()).unwrap();
        assert_eq!(claimed.len(), 1);
        assert_eq!(
            claimed[0].records,
            vec![Record::Put(cid, meta(7)), Record::Delete(cid)]
        );
        assert!(!claimed[0].torn);
    }

    /// A crash can leave a journal whose size reached the disk but whose bytes did not: zeros.
    /// An all-zero header passes its CRC check (crc32 of nothing is 0); it must read as torn.
    #[test]
    fn zero_filled_journals_are_torn_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let cid: Cid = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
            .parse()
            .unwrap();
        fs::write(dir.path().join("1-1.log"), vec![0u8; 4096]).unwrap();
        let mut w = JournalWriter::create(dir.path()).unwrap();
        w.append(&Record::Put(cid, meta(3))).unwrap();
        let path = w.finish().unwrap();
        let mut bytes = fs::read(&path).unwrap();
        bytes.extend_from_slice(&[0u8; 100]);
        fs::write(&path, bytes).unwrap();
        let mut claimed = claim_all(dir.path()).unwrap();
        claimed.sort_by(|a, b| a.path.cmp(&b.path));
        assert_eq!(claimed.len(), 2);
        assert!(claimed[0].records.is_empty() && claimed[0].torn);
        assert_eq!(claimed[1].records, vec![Record::Put(cid, meta(3))]);
        assert!(claimed[1].torn);
    }

    /// Records whose checksum matches but whose payload is not a record (a one-byte payload,
    /// a delete with trailing bytes, an unknown opcode) end the journal; nothing panics.
    #[test]
    fn checksummed_garbage_ends_the_journal() {
        let frame = |payload: &[u8]| {
            let mut v = (payload.len() as u32).to_le_bytes().to_vec();
            v.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
            v.extend_from_slice(payload);
            v
        };
        let cid: Cid = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
            .parse()
            .unwrap();
        let mut key = vec![];
        crate::codec::pb::put_varint(&mut key, cid.to_bytes().len() as u64);
        key.extend_from_slice(&cid.to_bytes());
        let delete_with_tail = [&[OP_DELETE][..], &key, b"x"].concat();
        for payload in [
            &[OP_PUT][..],
            &[9, 1, 2],
            &delete_with_tail,
            &[OP_PUT, 0xff],
        ] {
            let (records, torn) = parse(&frame(payload));
            assert!(records.is_empty() && torn, "{payload:x?}");
        }
        let (records, torn) = parse(&frame(&[&[OP_DELETE][..], &key].concat()));
        assert_eq!((records, torn), (vec![Record::Delete(cid)], false));
        // A length that would overflow the address arithmetic.
        let (records, torn) = parse(&[0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]);
        assert!(records.is_empty() && torn);
    }

    #[test]
    fn a_torn_tail_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let cid: Cid = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
            .parse()
            .unwrap();
        let mut w = JournalWriter::create(dir.path()).unwrap();
        w.append(&Record::Put(cid, meta(1))).unwrap();
        w.append(&Record::Put(cid, meta(2))).unwrap();
        let path = w.finish().unwrap();
        let bytes = fs::read(&path).unwrap();
        fs::write(&path, &bytes[..bytes.len() - 3]).unwrap();
        let claimed = claim_all(dir.path()).unwrap();
        assert_eq!(claimed[0].records, vec![Record::Put(cid, meta(1))]);
        assert!(claimed[0].torn);
    }
}
