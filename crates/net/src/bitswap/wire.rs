//! Bitswap messages on the wire: an unsigned-varint length, then a protobuf `Message`
//! (boxo's `message.proto`; field numbers in `../shared/specs/wire-formats.md`).
//!
//! The protobuf is written by hand with the primitives dag-pb uses, so that decoding is as
//! strict and bounded as everything else that reads a stranger's bytes: every length is
//! checked before it is used, a message holds at most [`MAX_MESSAGE`] bytes, a block at most
//! [`MAX_BLOCK`], a CID at most [`MAX_CID`]. A decoded block is a slice of the message when it
//! is most of it, and a copy when it is small (a slice would keep the whole message alive as
//! long as the block). Hashing a received block is not done here: see
//! [`super::accept`].

use bytes::Bytes;
use cairn_store::{
    codec::{
        codes,
        pb::{self, put_bytes, put_key, put_uint, put_varint, Reader},
    },
    Cid, DecodeError,
};
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The largest message read or written (boxo's and Helia's limit).
pub const MAX_MESSAGE: usize = 4 << 20;
/// The largest block accepted (the Bitswap spec's limit).
pub const MAX_BLOCK: usize = 2 << 20;
/// The longest CID accepted in a message (boxo's `MaximumAllowedCid`).
pub const MAX_CID: usize = 168;
/// Most wantlist entries, blocks or presences decoded from one message. Real peers send at
/// most 1024 wants per peer; a message full of tiny entries is refused, not walked.
pub const MAX_ITEMS: usize = 4096;

/// Why a message was refused.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("message of {0} bytes is over the {MAX_MESSAGE}-byte limit")]
    TooLarge(u64),
    #[error("malformed message: {0}")]
    Decode(#[from] DecodeError),
    #[error("malformed message: {0}")]
    Invalid(&'static str),
    #[error("block of {0} bytes is over the {MAX_BLOCK}-byte limit")]
    BlockTooLarge(usize),
    #[error("more than {MAX_ITEMS} entries in one message")]
    TooManyItems,
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

fn invalid(why: &'static str) -> WireError {
    WireError::Invalid(why)
}

/// What a wantlist entry asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WantType {
    /// Send the block.
    Block,
    /// Say whether you have it (and send it if it is tiny).
    Have,
}

/// One wantlist entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub cid: Cid,
    pub priority: i32,
    pub cancel: bool,
    pub want_type: WantType,
    pub send_dont_have: bool,
}

impl Entry {
    pub fn want(cid: Cid, want_type: WantType, send_dont_have: bool) -> Entry {
        Entry {
            cid,
            priority: 1,
            cancel: false,
            want_type,
            send_dont_have,
        }
    }

    pub fn cancel(cid: Cid) -> Entry {
        Entry {
            cid,
            priority: 0,
            cancel: true,
            want_type: WantType::Block,
            send_dont_have: false,
        }
    }
}

/// A peer's answer about a block it was asked to say whether it has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presence {
    Have,
    DontHave,
}

/// How a block's CID is rebuilt from its bytes: `version, codec, multihash code, digest
/// length`, each an unsigned varint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Prefix {
    pub version: u64,
    pub codec: u64,
    pub mh_code: u64,
    pub mh_len: u64,
}

impl Prefix {
    /// The prefix of `cid`. Blocks are sent with the prefix of the CID that was wanted: kubo
    /// matches what it receives against its wants byte for byte, so a CIDv1 prefix for a
    /// CIDv0 want would be dropped.
    pub fn of(cid: &Cid) -> Prefix {
        Prefix {
            version: match cid.version() {
                cid::Version::V0 => 0,
                cid::Version::V1 => 1,
            },
            codec: cid.codec(),
            mh_code: cid.hash().code(),
            mh_len: cid.hash().size() as u64,
        }
    }

    /// The prefix of a Bitswap 1.0.0 block: CIDv0, dag-pb, sha2-256.
    pub fn v0() -> Prefix {
        Prefix {
            version: 0,
            codec: codes::DAG_PB,
            mh_code: 0x12,
            mh_len: 32,
        }
    }

    pub fn encode_into(&self, out: &mut Vec<u8>) {
        for v in [self.version, self.codec, self.mh_code, self.mh_len] {
            put_varint(out, v);
        }
    }

    /// Reads a prefix; trailing bytes are ignored, as go-cid does.
    pub fn decode(bytes: &[u8]) -> Result<Prefix, WireError> {
        let mut r = Reader::new(bytes);
        Ok(Prefix {
            version: r.varint()?,
            codec: r.varint()?,
            mh_code: r.varint()?,
            mh_len: r.varint()?,
        })
    }
}

/// A block's bytes out of the message `buf`: a slice when the block is at least half of it
/// (the message's memory is mostly the block anyway), else a copy, so that a 100-byte block
/// kept in a cache does not keep a 4 MiB message alive.
fn block_bytes(buf: &Bytes, range: std::ops::Range<usize>) -> Bytes {
    if range.len() * 2 >= buf.len() {
        buf.slice(range)
    } else {
        Bytes::copy_from_slice(&buf[range])
    }
}

/// One Bitswap message, decoded or to be encoded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Message {
    /// This wantlist replaces the sender's previous one.
    pub full: bool,
    pub wants: Vec<Entry>,
    /// Blocks with the prefix of their CID (1.1.0 and later), or `Prefix::v0` (1.0.0).
    pub blocks: Vec<(Prefix, Bytes)>,
    pub presences: Vec<(Cid, Presence)>,
    pub pending_bytes: i32,
}

/// The protocol versions, for encoding: 1.0.0 carries blocks in field 2, with no prefixes
/// and no presences.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Version {
    V100,
    V110,
    V120,
}

impl Message {
    pub fn is_empty(&self) -> bool {
        self.wants.is_empty() && self.blocks.is_empty() && self.presences.is_empty() && !self.full
    }

    /// Bytes this message takes on the wire, roughly (for batching).
    pub fn size_hint(&self) -> usize {
        16 + self.wants.len() * 48
            + self.presences.len() * 44
            + self.blocks.iter().map(|(_, b)| b.len() + 16).sum::<usize>()
    }

    /// The protobuf bytes for a peer speaking `version`.
    pub fn encode(&self, version: Version) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.size_hint());
        let mut scratch = Vec::new();
        // The wantlist is always written (kubo's is never absent), even when empty.
        let mut wl = Vec::with_capacity(self.wants.len() * 48);
        for e in &self.wants {
            if version < Version::V120 && e.want_type == WantType::Have {
                // Older peers know only want-block.
                if !e.cancel {
                    scratch.clear();
                    encode_entry(&mut scratch, &Entry::want(e.cid, WantType::Block, false));
                    put_bytes(&mut wl, 1, &scratch);
                    continue;
                }
            }
            scratch.clear();
            encode_entry(&mut scratch, e);
            put_bytes(&mut wl, 1, &scratch);
        }
        if self.full {
            put_uint(&mut wl, 2, 1);
        }
        put_bytes(&mut out, 1, &wl);
        for (prefix, data) in &self.blocks {
            if version == Version::V100 {
                put_bytes(&mut out, 2, data);
                continue;
            }
            scratch.clear();
            let mut p = Vec::with_capacity(8);
            prefix.encode_into(&mut p);
            put_bytes(&mut scratch, 1, &p);
            put_key(&mut scratch, 2, pb::LEN);
            put_varint(&mut scratch, data.len() as u64);
            put_key(&mut out, 3, pb::LEN);
            put_varint(&mut out, (scratch.len() + data.len()) as u64);
            out.extend_from_slice(&scratch);
            out.extend_from_slice(data);
        }
        if version >= Version::V110 {
            for (cid, presence) in &self.presences {
                scratch.clear();
                put_bytes(&mut scratch, 1, &cid.to_bytes());
                if *presence == Presence::DontHave {
                    put_uint(&mut scratch, 2, 1);
                }
                put_bytes(&mut out, 4, &scratch);
            }
            if self.pending_bytes != 0 {
                put_uint(&mut out, 5, self.pending_bytes as i64 as u64);
            }
        }
        out
    }

    /// Decodes a message. Unknown fields are skipped (protobuf's rule); known fields with the
    /// wrong wire type, CIDs that do not parse, oversized blocks and too many items are
    /// errors that refuse the whole message.
    pub fn decode(buf: &Bytes) -> Result<Message, WireError> {
        if buf.len() > MAX_MESSAGE {
            return Err(WireError::TooLarge(buf.len() as u64));
        }
        let mut m = Message::default();
        let mut r = Reader::new(buf);
        let mut items = 0usize;
        let mut count = || {
            items += 1;
            if items > MAX_ITEMS {
                Err(WireError::TooManyItems)
            } else {
                Ok(())
            }
        };
        while !r.is_empty() {
            let (field, wt) = r.key()?;
            match field {
                1 => {
                    pb::expect(field, wt, pb::LEN)?;
                    let wl = r.bytes()?;
                    let mut w = Reader::new(wl);
                    while !w.is_empty() {
                        let (f, t) = w.key()?;
                        match f {
                            1 => {
                                pb::expect(f, t, pb::LEN)?;
                                count()?;
                                m.wants.push(decode_entry(w.bytes()?)?);
                            }
                            2 => {
                                pb::expect(f, t, pb::VARINT)?;
                                m.full = w.varint()? != 0;
                            }
                            _ => w.skip(t)?,
                        }
                    }
                }
                2 => {
                    pb::expect(field, wt, pb::LEN)?;
                    count()?;
                    let range = r.bytes_range()?;
                    if range.len() > MAX_BLOCK {
                        return Err(WireError::BlockTooLarge(range.len()));
                    }
                    m.blocks.push((Prefix::v0(), block_bytes(buf, range)));
                }
                3 => {
                    pb::expect(field, wt, pb::LEN)?;
                    count()?;
                    let range = r.bytes_range()?;
                    m.blocks.push(decode_block(buf, range)?);
                }
                4 => {
                    pb::expect(field, wt, pb::LEN)?;
                    count()?;
                    m.presences.push(decode_presence(r.bytes()?)?);
                }
                5 => {
                    pb::expect(field, wt, pb::VARINT)?;
                    m.pending_bytes = r.varint()? as i64 as i32;
                }
                _ => r.skip(wt)?,
            }
        }
        Ok(m)
    }
}

fn encode_entry(out: &mut Vec<u8>, e: &Entry) {
    put_bytes(out, 1, &e.cid.to_bytes());
    if e.priority != 0 {
        put_uint(out, 2, e.priority as i64 as u64);
    }
    if e.cancel {
        put_uint(out, 3, 1);
    }
    if e.want_type == WantType::Have {
        put_uint(out, 4, 1);
    }
    if e.send_dont_have {
        put_uint(out, 5, 1);
    }
}

fn cid(bytes: &[u8]) -> Result<Cid, WireError> {
    if bytes.is_empty() {
        return Err(invalid("empty CID"));
    }
    if bytes.len() > MAX_CID {
        return Err(invalid("CID longer than 168 bytes"));
    }
    let c = Cid::try_from(bytes).map_err(|_| invalid("invalid CID"))?;
    if c.encoded_len() != bytes.len() {
        return Err(invalid("trailing bytes after a CID"));
    }
    Ok(c)
}

fn decode_entry(buf: &[u8]) -> Result<Entry, WireError> {
    let mut r = Reader::new(buf);
    let mut e = Entry {
        cid: Cid::default(),
        priority: 0,
        cancel: false,
        want_type: WantType::Block,
        send_dont_have: false,
    };
    let mut have_cid = false;
    while !r.is_empty() {
        let (f, t) = r.key()?;
        match f {
            1 => {
                pb::expect(f, t, pb::LEN)?;
                e.cid = cid(r.bytes()?)?;
                have_cid = true;
            }
            2 => {
                pb::expect(f, t, pb::VARINT)?;
                e.priority = r.varint()? as i64 as i32;
            }
            3 => {
                pb::expect(f, t, pb::VARINT)?;
                e.cancel = r.varint()? != 0;
            }
            4 => {
                pb::expect(f, t, pb::VARINT)?;
                e.want_type = match r.varint()? {
                    0 => WantType::Block,
                    1 => WantType::Have,
                    _ => return Err(invalid("unknown want type")),
                };
            }
            5 => {
                pb::expect(f, t, pb::VARINT)?;
                e.send_dont_have = r.varint()? != 0;
            }
            _ => r.skip(t)?,
        }
    }
    if !have_cid {
        return Err(invalid("wantlist entry without a CID"));
    }
    Ok(e)
}

/// The block field at `at` in the message `msg`.
fn decode_block(msg: &Bytes, at: std::ops::Range<usize>) -> Result<(Prefix, Bytes), WireError> {
    let base = at.start;
    let buf = &msg[at];
    let mut r = Reader::new(buf);
    let (mut prefix, mut data) = (None, None);
    while !r.is_empty() {
        let (f, t) = r.key()?;
        match f {
            1 => {
                pb::expect(f, t, pb::LEN)?;
                prefix = Some(Prefix::decode(r.bytes()?)?);
            }
            2 => {
                pb::expect(f, t, pb::LEN)?;
                let range = r.bytes_range()?;
                if range.len() > MAX_BLOCK {
                    return Err(WireError::BlockTooLarge(range.len()));
                }
                data = Some(block_bytes(msg, base + range.start..base + range.end));
            }
            _ => r.skip(t)?,
        }
    }
    Ok((
        prefix.ok_or(invalid("block without a prefix"))?,
        data.unwrap_or_default(),
    ))
}

fn decode_presence(buf: &[u8]) -> Result<(Cid, Presence), WireError> {
    let mut r = Reader::new(buf);
    let (mut c, mut presence) = (None, Presence::Have);
    while !r.is_empty() {
        let (f, t) = r.key()?;
        match f {
            1 => {
                pb::expect(f, t, pb::LEN)?;
                c = Some(cid(r.bytes()?)?);
            }
            2 => {
                pb::expect(f, t, pb::VARINT)?;
                presence = match r.varint()? {
                    0 => Presence::Have,
                    1 => Presence::DontHave,
                    _ => return Err(invalid("unknown presence type")),
                };
            }
            _ => r.skip(t)?,
        }
    }
    Ok((c.ok_or(invalid("presence without a CID"))?, presence))
}

/// Reads a message's length prefix. `Ok(None)` at a clean end of stream (before any byte); a
/// stream that ends inside the prefix is an error, and so is a length over [`MAX_MESSAGE`],
/// refused as soon as its varint says so.
pub async fn read_len<R: AsyncRead + Unpin>(r: &mut R) -> Result<Option<usize>, WireError> {
    let mut len: u64 = 0;
    for i in 0..10 {
        let mut b = [0u8];
        match r.read(&mut b).await? {
            0 if i == 0 => return Ok(None),
            0 => return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into()),
            _ => {}
        }
        len |= ((b[0] & 0x7f) as u64) << (7 * i);
        if len > MAX_MESSAGE as u64 {
            return Err(WireError::TooLarge(len));
        }
        if b[0] < 0x80 {
            return Ok(Some(len as usize));
        }
    }
    Err(invalid("message length varint too long"))
}

/// Reads one length-prefixed message into `buf` (reused between calls). `Ok(false)` at a
/// clean end of stream (before any byte of a message); a stream that ends inside a message
/// is an error. A length over [`MAX_MESSAGE`] is refused before anything else is read, and
/// the buffer grows only as the bytes arrive. (The node's readers add a memory budget and
/// timeouts around the same steps: see [`super::handler`].)
pub async fn read_frame<R: AsyncRead + Unpin>(
    r: &mut R,
    buf: &mut Vec<u8>,
) -> Result<bool, WireError> {
    let Some(len) = read_len(r).await? else {
        return Ok(false);
    };
    // A peer that announces 4 MiB and sends 4 bytes gets 4 bytes of our memory.
    buf.clear();
    let got = (&mut *r).take(len as u64).read_to_end(buf).await?;
    if got < len {
        return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
    }
    Ok(true)
}

/// Writes one length-prefixed message.
pub async fn write_frame<W: AsyncWrite + Unpin>(w: &mut W, msg: &[u8]) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(10);
    put_varint(&mut head, msg.len() as u64);
    w.write_all(&head).await?;
    w.write_all(msg).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_store::HashAlg;

    fn raw(data: &[u8]) -> Cid {
        Cid::new_v1(codes::RAW, HashAlg::Sha2_256.digest(data))
    }

    fn sample() -> Message {
        let v0: Cid = "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH"
            .parse()
            .unwrap();
        Message {
            full: true,
            wants: vec![
                Entry::want(raw(b"a"), WantType::Have, true),
                Entry::want(v0, WantType::Block, false),
                Entry::cancel(raw(b"b")),
                Entry {
                    priority: -7,
                    ..Entry::want(raw(b"c"), WantType::Block, true)
                },
            ],
            blocks: vec![(Prefix::of(&raw(b"hello")), Bytes::from_static(b"hello"))],
            presences: vec![(raw(b"x"), Presence::Have), (raw(b"y"), Presence::DontHave)],
            pending_bytes: 12345,
        }
    }

    #[test]
    fn messages_round_trip_at_1_2_0() {
        let m = sample();
        let back = Message::decode(&Bytes::from(m.encode(Version::V120))).unwrap();
        assert_eq!(back, m);
        let (prefix, data) = &back.blocks[0];
        assert_eq!(*prefix, Prefix::of(&raw(b"hello")));
        assert_eq!(&data[..], b"hello");
    }

    #[test]
    fn older_versions_get_what_they_understand() {
        let m = sample();
        let v1 = Message::decode(&Bytes::from(m.encode(Version::V110))).unwrap();
        assert!(v1.wants.iter().all(|e| e.want_type == WantType::Block));
        assert_eq!(v1.presences, m.presences);
        let v0 = Message::decode(&Bytes::from(m.encode(Version::V100))).unwrap();
        assert!(v0.presences.is_empty());
        assert_eq!(
            v0.blocks,
            vec![(Prefix::v0(), Bytes::from_static(b"hello"))]
        );
    }

    /// Prefixes are written as four varints; a 1.0.0 block's prefix is a CIDv0's.
    #[test]
    fn prefixes_encode_as_varints() {
        let v0: Cid = "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH"
            .parse()
            .unwrap();
        assert_eq!(Prefix::of(&v0), Prefix::v0());
        let mut bytes = Vec::new();
        Prefix::of(&raw(b"z")).encode_into(&mut bytes);
        assert_eq!(bytes, [0x01, 0x55, 0x12, 0x20]);
        assert_eq!(Prefix::decode(&bytes).unwrap(), Prefix::of(&raw(b"z")));
    }

    /// A small block is copied out of its message, a large one shares it.
    #[test]
    fn small_blocks_do_not_keep_their_message_alive() {
        let big = vec![7u8; 100_000];
        let m = Message {
            blocks: vec![
                (Prefix::of(&raw(b"s")), Bytes::from_static(b"small")),
                (Prefix::of(&raw(&big)), Bytes::from(big.clone())),
            ],
            ..Default::default()
        };
        let buf = Bytes::from(m.encode(Version::V120));
        let back = Message::decode(&buf).unwrap();
        let inside = |b: &Bytes| {
            let (lo, hi) = (buf.as_ptr() as usize, buf.as_ptr() as usize + buf.len());
            (lo..hi).contains(&(b.as_ptr() as usize))
        };
        assert!(!inside(&back.blocks[0].1), "the small block is a copy");
        assert!(inside(&back.blocks[1].1), "the large block is a slice");
        assert_eq!(back, m);
    }

    #[test]
    fn malformed_messages_are_errors() {
        let c = raw(b"a").to_bytes();
        let mut entry_without_cid = Vec::new();
        put_uint(&mut entry_without_cid, 2, 1);
        let mut wl = Vec::new();
        put_bytes(&mut wl, 1, &entry_without_cid);
        let mut no_cid = Vec::new();
        put_bytes(&mut no_cid, 1, &wl);
        let mut long_cid = Vec::new();
        let mut e = Vec::new();
        put_bytes(&mut e, 1, &[c.clone(), vec![0; 200]].concat());
        let mut wl = Vec::new();
        put_bytes(&mut wl, 1, &e);
        put_bytes(&mut long_cid, 1, &wl);
        let mut big_block = Vec::new();
        put_bytes(&mut big_block, 2, &vec![0u8; MAX_BLOCK + 1]);
        let mut many = Vec::new();
        for _ in 0..=MAX_ITEMS {
            let mut p = Vec::new();
            put_bytes(&mut p, 1, &c);
            put_bytes(&mut many, 4, &p);
        }
        for bad in [
            &b"\x0a"[..],
            b"\x0a\x05\x0a\x03",
            b"\x08\x01",
            &no_cid,
            &long_cid,
            &big_block,
            &many,
        ] {
            assert!(Message::decode(&Bytes::copy_from_slice(bad)).is_err());
        }
        // Unknown fields are skipped.
        let mut unknown = Vec::new();
        put_uint(&mut unknown, 9, 5);
        assert_eq!(
            Message::decode(&Bytes::from(unknown)).unwrap(),
            Message::default()
        );
    }

    #[test]
    fn frames_are_bounded() {
        futures::executor::block_on(async {
            let mut out = Vec::new();
            write_frame(&mut out, b"abc").await.unwrap();
            write_frame(&mut out, b"").await.unwrap();
            let mut r = &out[..];
            let mut buf = Vec::new();
            assert!(read_frame(&mut r, &mut buf).await.unwrap());
            assert_eq!(buf, b"abc");
            assert!(read_frame(&mut r, &mut buf).await.unwrap());
            assert!(buf.is_empty());
            assert!(!read_frame(&mut r, &mut buf).await.unwrap());

            let mut huge = Vec::new();
            put_varint(&mut huge, MAX_MESSAGE as u64 + 1);
            let err = read_frame(&mut &huge[..], &mut buf).await.unwrap_err();
            assert!(matches!(err, WireError::TooLarge(_)), "{err}");
            assert!(buf.capacity() < MAX_MESSAGE);
            let truncated = [0x05, b'a'];
            assert!(read_frame(&mut &truncated[..], &mut buf).await.is_err());
            assert!(read_frame(&mut &[0xffu8; 12][..], &mut buf).await.is_err());
        });
    }
}
