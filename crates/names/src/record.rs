//! IPNS records: the `IpnsEntry` protobuf, its dag-cbor `data`, signed and verified as the
//! IPNS specification's V2 says (IPIP-428), written with the V1 fields too, as kubo 0.22 and
//! Helia write them, so that older resolvers read them.
//!
//! Verification, in order, of bytes from anyone:
//! 1. at most [`MAX_RECORD`] bytes, before anything is parsed;
//! 2. `signatureV2` and `data` present (a V1-only record is refused);
//! 3. the public key: the record's `pubKey` if it has one (it must be the name's key), else
//!    the key inlined in the name;
//! 4. `signatureV2` verifies over `"ipns-signature:" ‖ data`;
//! 5. `data` is a dag-cbor map of `Value`, `Validity`, `ValidityType`, `Sequence`, `TTL`;
//!    V1 fields present in the protobuf must equal their `data` counterparts (`signatureV1`
//!    itself is never checked);
//! 6. `ValidityType` is 0 (EOL) and `Validity` an RFC 3339 time not past;
//! 7. the value is `/ipfs/…` or `/ipns/…`, at most [`MAX_VALUE`] bytes.

use std::collections::BTreeMap;

use ipld_core::ipld::Ipld;
use libp2p_identity::{Keypair, PublicKey};
use prost::Message;

use crate::{
    name::Name,
    time::{self, Nanos},
};

/// The largest record accepted, as the IPNS specification and kubo bound it.
pub const MAX_RECORD: usize = 10 << 10;
/// The largest value (a path) a record may name.
pub const MAX_VALUE: usize = 4096;
/// How long a record cairn signs is valid unless told otherwise (kubo's default too).
pub const LIFETIME: std::time::Duration = std::time::Duration::from_secs(48 * 3600);
/// How long resolvers may use a record cairn signs unless told otherwise.
pub const TTL: std::time::Duration = std::time::Duration::from_secs(300);
/// What a V2 signature signs before `data`.
const SIGNATURE_PREFIX: &[u8] = b"ipns-signature:";

/// The wire form (field numbers from the IPNS specification).
#[derive(Clone, PartialEq, prost::Message)]
struct IpnsEntry {
    #[prost(bytes = "vec", optional, tag = "1")]
    value: Option<Vec<u8>>,
    #[prost(bytes = "vec", optional, tag = "2")]
    signature_v1: Option<Vec<u8>>,
    #[prost(int32, optional, tag = "3")]
    validity_type: Option<i32>,
    #[prost(bytes = "vec", optional, tag = "4")]
    validity: Option<Vec<u8>>,
    #[prost(uint64, optional, tag = "5")]
    sequence: Option<u64>,
    #[prost(uint64, optional, tag = "6")]
    ttl: Option<u64>,
    #[prost(bytes = "vec", optional, tag = "7")]
    pub_key: Option<Vec<u8>>,
    #[prost(bytes = "vec", optional, tag = "8")]
    signature_v2: Option<Vec<u8>>,
    #[prost(bytes = "vec", optional, tag = "9")]
    data: Option<Vec<u8>>,
}

/// A record that verified for a name: what it says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// `/ipfs/…` or `/ipns/…`.
    pub value: String,
    /// Until when it is valid (nanoseconds since the epoch).
    pub validity: Nanos,
    pub sequence: u64,
    /// How long a resolver may cache it, in nanoseconds.
    pub ttl: u64,
}

/// Why bytes are not a valid record for a name.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RecordError {
    #[error("a record of {0} bytes (at most {MAX_RECORD})")]
    TooLarge(usize),
    #[error("not an IPNS record: {0}")]
    Malformed(String),
    #[error("no V2 signature (V1-only records are refused)")]
    NoSignatureV2,
    #[error("no public key: neither in the record nor inlined in the name")]
    NoKey,
    #[error("the record's public key is not the name's")]
    WrongKey,
    #[error("the signature does not verify")]
    BadSignature,
    #[error("its V1 field {0} differs from its signed data")]
    V1Mismatch(&'static str),
    #[error("validity type {0} (only 0, EOL, exists)")]
    ValidityType(i128),
    #[error("expired at {0}")]
    Expired(String),
    #[error("its value is not an /ipfs/ or /ipns/ path")]
    BadValue,
}

fn malformed(why: impl Into<String>) -> RecordError {
    RecordError::Malformed(why.into())
}

/// The fields of `data`, decoded.
struct Data {
    value: Vec<u8>,
    validity: Vec<u8>,
    validity_type: i128,
    sequence: u64,
    ttl: u64,
}

fn decode_data(bytes: &[u8]) -> Result<Data, RecordError> {
    let ipld: Ipld = serde_ipld_dagcbor::from_slice(bytes)
        .map_err(|e| malformed(format!("its data is not dag-cbor: {e}")))?;
    let Ipld::Map(map) = ipld else {
        return Err(malformed("its data is not a map"));
    };
    let bytes_of = |k: &'static str| match map.get(k) {
        Some(Ipld::Bytes(b)) => Ok(b.clone()),
        _ => Err(malformed(format!("its data has no {k} bytes"))),
    };
    let int_of = |k: &'static str| match map.get(k) {
        Some(Ipld::Integer(i)) => Ok(*i),
        _ => Err(malformed(format!("its data has no {k} integer"))),
    };
    let unsigned = |k: &'static str| {
        int_of(k).and_then(|i| u64::try_from(i).map_err(|_| malformed(format!("{k} {i}"))))
    };
    Ok(Data {
        value: bytes_of("Value")?,
        validity: bytes_of("Validity")?,
        validity_type: int_of("ValidityType")?,
        sequence: unsigned("Sequence")?,
        ttl: unsigned("TTL")?,
    })
}

fn encode_data(d: &Data) -> Vec<u8> {
    let map: BTreeMap<String, Ipld> = [
        ("Value", Ipld::Bytes(d.value.clone())),
        ("Validity", Ipld::Bytes(d.validity.clone())),
        ("ValidityType", Ipld::Integer(d.validity_type)),
        ("Sequence", Ipld::Integer(d.sequence.into())),
        ("TTL", Ipld::Integer(d.ttl.into())),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    serde_ipld_dagcbor::to_vec(&Ipld::Map(map)).expect("a map of bytes and integers encodes")
}

/// Verifies `bytes` as a record of `name` at time `now`; what it says if it holds.
pub fn verify(name: &Name, bytes: &[u8], now: Nanos) -> Result<Record, RecordError> {
    if bytes.len() > MAX_RECORD {
        return Err(RecordError::TooLarge(bytes.len()));
    }
    let e = IpnsEntry::decode(bytes).map_err(|e| malformed(e.to_string()))?;
    let (Some(sig), Some(data)) = (&e.signature_v2, &e.data) else {
        return Err(RecordError::NoSignatureV2);
    };
    let key = match &e.pub_key {
        Some(k) => {
            let key = PublicKey::try_decode_protobuf(k)
                .map_err(|e| malformed(format!("its public key: {e}")))?;
            if !name.is_of(&key) {
                return Err(RecordError::WrongKey);
            }
            key
        }
        None => name.inline_key().ok_or(RecordError::NoKey)?,
    };
    let mut signed = Vec::with_capacity(SIGNATURE_PREFIX.len() + data.len());
    signed.extend_from_slice(SIGNATURE_PREFIX);
    signed.extend_from_slice(data);
    if !key.verify(&signed, sig) {
        return Err(RecordError::BadSignature);
    }
    let d = decode_data(data)?;
    // V1 fields, where present, say what the signed data says.
    if e.value.as_ref().is_some_and(|v| *v != d.value) {
        return Err(RecordError::V1Mismatch("value"));
    }
    if e.validity.as_ref().is_some_and(|v| *v != d.validity) {
        return Err(RecordError::V1Mismatch("validity"));
    }
    if e.validity_type
        .is_some_and(|t| t as i128 != d.validity_type)
    {
        return Err(RecordError::V1Mismatch("validityType"));
    }
    if e.sequence.is_some_and(|s| s != d.sequence) {
        return Err(RecordError::V1Mismatch("sequence"));
    }
    if e.ttl.is_some_and(|t| t != d.ttl) {
        return Err(RecordError::V1Mismatch("ttl"));
    }
    if d.validity_type != 0 {
        return Err(RecordError::ValidityType(d.validity_type));
    }
    let validity = std::str::from_utf8(&d.validity)
        .ok()
        .and_then(time::parse)
        .ok_or_else(|| malformed("its validity is not an RFC 3339 time"))?;
    if validity <= now {
        return Err(RecordError::Expired(time::format(validity)));
    }
    let value = String::from_utf8(d.value).map_err(|_| RecordError::BadValue)?;
    if value.len() > MAX_VALUE || !(value.starts_with("/ipfs/") || value.starts_with("/ipns/")) {
        return Err(RecordError::BadValue);
    }
    Ok(Record {
        value,
        validity,
        sequence: d.sequence,
        ttl: d.ttl,
    })
}

/// What a record says, read without verifying it (for `cairn name inspect` of a file whose
/// name is not known): nothing here is to be trusted until [`verify`] says so.
#[derive(Debug, Clone)]
pub struct Unverified {
    pub value: String,
    pub validity: String,
    pub sequence: u64,
    pub ttl: u64,
    pub signature_v1: bool,
    pub signature_v2: bool,
    /// The name of the public key the record carries, if it carries one.
    pub key_name: Option<Name>,
}

/// Reads a record's signed `data` (or, failing that, its V1 fields) without verifying it.
pub fn inspect(bytes: &[u8]) -> Result<Unverified, RecordError> {
    if bytes.len() > MAX_RECORD {
        return Err(RecordError::TooLarge(bytes.len()));
    }
    let e = IpnsEntry::decode(bytes).map_err(|e| malformed(e.to_string()))?;
    let key_name = e
        .pub_key
        .as_ref()
        .and_then(|k| PublicKey::try_decode_protobuf(k).ok())
        .map(|k| Name::of(&k));
    let (value, validity, sequence, ttl) = match e.data.as_deref().map(decode_data) {
        Some(Ok(d)) => (d.value, d.validity, d.sequence, d.ttl),
        _ => (
            e.value.clone().unwrap_or_default(),
            e.validity.clone().unwrap_or_default(),
            e.sequence.unwrap_or(0),
            e.ttl.unwrap_or(0),
        ),
    };
    Ok(Unverified {
        value: String::from_utf8_lossy(&value).into_owned(),
        validity: String::from_utf8_lossy(&validity).into_owned(),
        sequence,
        ttl,
        signature_v1: e.signature_v1.is_some(),
        signature_v2: e.signature_v2.is_some(),
        key_name,
    })
}

/// Base64 (padded) of a record, as the control socket carries it.
pub fn to_base64(bytes: &[u8]) -> String {
    cid::multibase::Base::Base64Pad.encode(bytes)
}

/// A record from [`to_base64`]'s form, refused past [`MAX_RECORD`] before decoding.
pub fn from_base64(s: &str) -> Result<Vec<u8>, RecordError> {
    if s.len() > MAX_RECORD.div_ceil(3) * 4 {
        return Err(RecordError::TooLarge(s.len() / 4 * 3));
    }
    cid::multibase::Base::Base64Pad
        .decode(s)
        .map_err(|_| malformed("not base64"))
}

/// Signs a record of `key`'s name saying `value`, valid until `validity`, with V2 and V1
/// signatures and fields. The public key goes in the record when the name does not inline
/// it (RSA).
pub fn sign(
    key: &Keypair,
    value: &str,
    sequence: u64,
    validity: Nanos,
    ttl: u64,
) -> Result<Vec<u8>, RecordError> {
    if value.len() > MAX_VALUE || !(value.starts_with("/ipfs/") || value.starts_with("/ipns/")) {
        return Err(RecordError::BadValue);
    }
    let d = Data {
        value: value.as_bytes().to_vec(),
        validity: time::format(validity).into_bytes(),
        validity_type: 0,
        sequence,
        ttl,
    };
    let data = encode_data(&d);
    let sign = |msg: &[u8]| {
        key.sign(msg)
            .map_err(|e| malformed(format!("signing: {e}")))
    };
    let mut v2 = SIGNATURE_PREFIX.to_vec();
    v2.extend_from_slice(&data);
    // V1 signs value ‖ validity ‖ "EOL".
    let mut v1 = d.value.clone();
    v1.extend_from_slice(&d.validity);
    v1.extend_from_slice(b"EOL");
    let public = key.public();
    let entry = IpnsEntry {
        value: Some(d.value.clone()),
        signature_v1: Some(sign(&v1)?),
        validity_type: Some(0),
        validity: Some(d.validity.clone()),
        sequence: Some(sequence),
        ttl: Some(ttl),
        pub_key: Name::of(&public)
            .inline_key()
            .is_none()
            .then(|| public.encode_protobuf()),
        signature_v2: Some(sign(&v2)?),
        data: Some(data),
    };
    let bytes = entry.encode_to_vec();
    if bytes.len() > MAX_RECORD {
        return Err(RecordError::TooLarge(bytes.len()));
    }
    Ok(bytes)
}

/// Which of two valid records of one name is the better: the higher sequence, then the
/// later validity, then (the same sequence and validity, different records: the key's owner
/// signed two, an equivocation the caller may log) the greater bytes, so that every node
/// picks the same one.
pub fn better<'a>(a: (&'a Record, &'a [u8]), b: (&'a Record, &'a [u8])) -> (&'a Record, &'a [u8]) {
    let key = |r: &(&Record, &[u8])| (r.0.sequence, r.0.validity);
    match key(&a).cmp(&key(&b)) {
        std::cmp::Ordering::Greater => a,
        std::cmp::Ordering::Less => b,
        std::cmp::Ordering::Equal if a.1 >= b.1 => a,
        std::cmp::Ordering::Equal => b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Nanos = 3600 * 1_000_000_000;
    const NOW: Nanos = 1_800_000_000 * 1_000_000_000;

    /// Ed25519 and RSA records sign and verify, V1 fields and all; the data is canonical
    /// dag-cbor (what is decoded encodes to the same bytes).
    #[test]
    fn signed_records_verify() {
        let ed = Keypair::generate_ed25519();
        let bytes = sign(&ed, "/ipfs/bafkqaaa", 7, NOW + HOUR, 300 * 1_000_000_000).unwrap();
        let name = Name::of(&ed.public());
        let r = verify(&name, &bytes, NOW).unwrap();
        assert_eq!(r.value, "/ipfs/bafkqaaa");
        assert_eq!(
            (r.sequence, r.validity, r.ttl),
            (7, NOW + HOUR, 300_000_000_000)
        );
        let e = IpnsEntry::decode(&bytes[..]).unwrap();
        assert!(e.pub_key.is_none(), "an Ed25519 key is in its name");
        let data = e.data.unwrap();
        assert_eq!(encode_data(&decode_data(&data).unwrap()), data);

        // Past its validity, or for another name: refused.
        assert!(matches!(
            verify(&name, &bytes, NOW + HOUR),
            Err(RecordError::Expired(_))
        ));
        let other = Name::of(&Keypair::generate_ed25519().public());
        assert_eq!(verify(&other, &bytes, NOW), Err(RecordError::BadSignature));
    }

    /// Every field changed after signing is caught, by the signature or by the V1 check.
    #[test]
    fn tampering_is_refused() {
        let key = Keypair::generate_ed25519();
        let name = Name::of(&key.public());
        let bytes = sign(&key, "/ipfs/bafkqaaa", 1, NOW + HOUR, 1).unwrap();
        let e = IpnsEntry::decode(&bytes[..]).unwrap();
        let cases: Vec<(IpnsEntry, RecordError)> = vec![
            (
                IpnsEntry {
                    value: Some(b"/ipfs/bafkqaab".to_vec()),
                    ..e.clone()
                },
                RecordError::V1Mismatch("value"),
            ),
            (
                IpnsEntry {
                    sequence: Some(2),
                    ..e.clone()
                },
                RecordError::V1Mismatch("sequence"),
            ),
            (
                IpnsEntry {
                    signature_v2: None,
                    ..e.clone()
                },
                RecordError::NoSignatureV2,
            ),
            (
                IpnsEntry {
                    data: Some({
                        let mut d = e.data.clone().unwrap();
                        let n = d.len();
                        d[n - 1] ^= 1;
                        d
                    }),
                    ..e.clone()
                },
                RecordError::BadSignature,
            ),
            (
                IpnsEntry {
                    pub_key: Some(Keypair::generate_ed25519().public().encode_protobuf()),
                    ..e.clone()
                },
                RecordError::WrongKey,
            ),
        ];
        for (entry, want) in cases {
            assert_eq!(verify(&name, &entry.encode_to_vec(), NOW), Err(want));
        }
        let big = vec![0u8; MAX_RECORD + 1];
        assert_eq!(
            verify(&name, &big, NOW),
            Err(RecordError::TooLarge(MAX_RECORD + 1))
        );
        assert!(matches!(
            verify(&name, b"\xff\xff\xff", NOW),
            Err(RecordError::Malformed(_))
        ));
        assert_eq!(
            sign(&key, "not a path", 1, NOW, 1),
            Err(RecordError::BadValue)
        );
    }

    #[test]
    fn the_better_record() {
        let r = |sequence, validity| Record {
            value: "/ipfs/x".into(),
            validity,
            sequence,
            ttl: 0,
        };
        let (a, b, c) = (r(2, 10), r(1, 99), r(2, 11));
        assert_eq!(better((&a, b"a"), (&b, b"b")).0, &a);
        assert_eq!(better((&a, b"a"), (&c, b"c")).0, &c);
        // A tie is broken by the bytes, the same way on every node.
        let d = r(2, 10);
        assert_eq!(better((&a, b"a"), (&d, b"d")).1, b"d");
        assert_eq!(better((&d, b"d"), (&a, b"a")).1, b"d");
    }
}
