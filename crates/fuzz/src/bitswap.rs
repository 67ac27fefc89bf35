//! The Bitswap message decoder: the bytes any connected peer can send us.
//!
//! What holds for every input:
//! - `Message::decode` returns; what it returns is within the limits (items, block sizes).
//! - A decoded message re-encodes at 1.2.0 to one that decodes equal: priorities, `full`,
//!   presences and pending bytes included. The bytes may differ (unknown fields are dropped,
//!   repeated wantlists merged, 1.0.0 blocks given a prefix, varints made minimal), and so may
//!   the size: a negative priority or pending-bytes count takes 10 bytes however it came, and a
//!   1.0.0 block gains its prefix, so the re-encoding can be up to [`GROWTH_PER_ITEM`] bytes per
//!   item longer. Near the 4 MiB limit it can then be refused as too large, and only then
//!   may it fail to decode.
//! - At 1.1.0 and 1.0.0 the re-encoding decodes to what those versions can carry: want-haves
//!   become plain want-blocks; at 1.0.0 blocks lose their prefix (read back as CIDv0's) and
//!   presences and pending bytes are not sent.
//! - `accept::hash` of every decoded block returns; a key it gives names those very bytes
//!   (the store's own check agrees), with the prefix's hash function.
//! - `read_frame` over the input read as a stream returns each frame exactly as it lies in the
//!   input, never holds more than [`wire::MAX_MESSAGE`] bytes, and stops at the first error.

use bytes::Bytes;
use cairn_net::bitswap::{
    accept::{self, Hashed},
    wire::{
        self, read_frame, Entry, Message, Prefix, Version, WantType, MAX_BLOCK, MAX_ITEMS,
        MAX_MESSAGE,
    },
};
use cairn_store::codec::pb::varint_len;

/// The most a re-encoding grows per item, with room to spare: a 1.0.0 block given a prefix
/// gains 6 bytes of prefix field, up to 5 of data key and length and 1 of outer length.
const GROWTH_PER_ITEM: usize = 16;

/// One input: as a protobuf message, and as a stream of length-prefixed frames.
pub fn bitswap(data: &[u8]) {
    message(&Bytes::copy_from_slice(data));
    frames(data);
}

fn message(buf: &Bytes) {
    let Ok(m) = Message::decode(buf) else {
        return;
    };
    let items = m.wants.len() + m.blocks.len() + m.presences.len();
    assert!(items <= MAX_ITEMS, "{items} items decoded");
    for (prefix, data) in &m.blocks {
        assert!(data.len() <= MAX_BLOCK);
        if let Hashed::Key(key) = accept::hash(prefix, data) {
            assert_eq!(key.code(), prefix.mh_code);
            let cid = cairn_store::Cid::new_v1(prefix.codec, key);
            cairn_store::hash::verify(&cid, data).expect("a key names the bytes it came from");
        }
    }

    let encoded = m.encode(Version::V120);
    assert!(
        encoded.len() <= buf.len() + GROWTH_PER_ITEM * items + 16,
        "{} bytes re-encode to {}",
        buf.len(),
        encoded.len()
    );
    if let Some(back) = decode_fitting(encoded) {
        assert_eq!(back, m, "1.2.0 round trip");
    }

    // Older versions know only want-block: a want-have goes as a plain one.
    let downgraded: Vec<Entry> = m
        .wants
        .iter()
        .map(|e| match e.want_type {
            WantType::Have if !e.cancel => Entry::want(e.cid, WantType::Block, false),
            _ => e.clone(),
        })
        .collect();
    if let Some(back) = decode_fitting(m.encode(Version::V110)) {
        let want = Message {
            wants: downgraded.clone(),
            ..m.clone()
        };
        assert_eq!(back, want, "1.1.0 round trip");
    }
    if let Some(back) = decode_fitting(m.encode(Version::V100)) {
        let want = Message {
            full: m.full,
            wants: downgraded,
            blocks: m
                .blocks
                .iter()
                .map(|(_, data)| (Prefix::v0(), data.clone()))
                .collect(),
            presences: Vec::new(),
            pending_bytes: 0,
        };
        assert_eq!(back, want, "1.0.0 round trip");
    }
}

/// Decodes a re-encoding, which must succeed unless it grew past the limit.
fn decode_fitting(encoded: Vec<u8>) -> Option<Message> {
    let len = encoded.len();
    match Message::decode(&Bytes::from(encoded)) {
        Ok(m) => Some(m),
        Err(wire::WireError::TooLarge(_)) if len > MAX_MESSAGE => None,
        Err(e) => panic!("a re-encoded message of {len} bytes does not decode: {e}"),
    }
}

/// Frames as the engine reads them: each into a fresh buffer, until the end or an error.
fn frames(data: &[u8]) {
    futures::executor::block_on(async {
        let mut rest = data;
        loop {
            let before = rest;
            let mut buf = Vec::new();
            let read = read_frame(&mut rest, &mut buf).await;
            assert!(
                buf.capacity() <= MAX_MESSAGE,
                "{} bytes set aside for a frame",
                buf.capacity()
            );
            match read {
                Ok(true) => {
                    let head = before.len() - rest.len() - buf.len();
                    assert!(head >= varint_len(buf.len() as u64) && head <= 10);
                    assert_eq!(&before[head..head + buf.len()], &buf[..]);
                    message(&Bytes::from(buf));
                }
                Ok(false) => {
                    assert!(before.is_empty(), "a clean end with bytes left");
                    return;
                }
                Err(_) => return,
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use cairn_net::bitswap::wire::{Message, Prefix, Version, MAX_BLOCK, MAX_MESSAGE};
    use cairn_store::codec::pb::{put_bytes, put_varint};

    /// Two 1.0.0 blocks that fill a message to the byte decode; re-encoded at 1.2.0 they gain
    /// prefixes and no longer fit, which the target allows.
    #[test]
    fn a_full_message_may_re_encode_past_the_limit() {
        let mut msg = Vec::new();
        let first = MAX_BLOCK;
        put_bytes(&mut msg, 2, &vec![1u8; first]);
        // field key (1) + length varint (3) + data = what is left.
        let second = MAX_MESSAGE - msg.len() - 1 - 3;
        assert!(second <= MAX_BLOCK);
        put_bytes(&mut msg, 2, &vec![2u8; second]);
        assert_eq!(msg.len(), MAX_MESSAGE);
        let m = Message::decode(&Bytes::from(msg.clone())).unwrap();
        assert_eq!(m.blocks.len(), 2);
        assert_eq!(m.blocks[0].0, Prefix::v0());
        assert!(m.encode(Version::V120).len() > MAX_MESSAGE);
        super::bitswap(&msg);
    }

    /// The regression input: two wantlists (the first `full`), priorities and pending bytes
    /// that are negative as i32s, an explicit zero priority and HAVE, unknown fields, a 1.0.0
    /// block and a prefix with a trailing byte. It decodes, and re-encodes to other, longer
    /// bytes that decode to the same message.
    #[test]
    fn odd_but_valid_messages_round_trip_to_other_bytes() {
        let input = include_bytes!(
            "../../../fuzz/regressions/bitswap/merged-wantlists-negative-priority-v0-block-unknown-fields"
        );
        let m = Message::decode(&Bytes::from_static(input)).unwrap();
        assert!(m.full);
        assert_eq!(m.wants.len(), 2);
        assert_eq!((m.wants[0].priority, m.wants[1].priority), (-1, 0));
        assert_eq!(m.pending_bytes, i32::MIN);
        assert_eq!(m.blocks.len(), 2);
        assert_eq!(m.blocks[0].0, Prefix::v0());
        assert!(m.blocks[1].1.is_empty());
        assert_eq!(m.presences.len(), 1);
        let again = m.encode(Version::V120);
        assert_ne!(&again[..], &input[..]);
        assert!(again.len() > input.len());
        assert_eq!(Message::decode(&Bytes::from(again)).unwrap(), m);
    }

    /// The same bytes as a frame stream: a frame of that message, then a length over the limit.
    #[test]
    fn frames_then_an_oversized_length() {
        let mut msg = Vec::new();
        put_bytes(&mut msg, 4, &{
            let mut p = Vec::new();
            let v0 = cairn_store::Cid::new_v0(cairn_store::HashAlg::Sha2_256.digest(b"x")).unwrap();
            put_bytes(&mut p, 1, &v0.to_bytes());
            p
        });
        let mut stream = Vec::new();
        put_varint(&mut stream, msg.len() as u64);
        stream.extend_from_slice(&msg);
        put_varint(&mut stream, MAX_MESSAGE as u64 + 1);
        super::bitswap(&stream);
    }
}
