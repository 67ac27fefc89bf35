//! Multihashes: computing them for new blocks and checking them on every read.

use std::{fmt, str::FromStr};

use cid::Cid;
use multihash::Multihash;
use multihash_codetable::{Code, MultihashDigest};

use crate::error::StoreError;

/// The multihash code of the identity "hash" (the digest is the data itself).
pub const IDENTITY: u64 = 0x00;
/// The multihash code of sha1: git's object ids, checked for collision attacks. Not a
/// [`HashAlg`]: cairn never names new blocks with it.
pub const SHA1: u64 = 0x11;

/// `data`'s multihash under the function `code`: a [`HashAlg`], or sha1 with collision
/// detection (as git's own, sha1dc). `None`: a function cairn cannot compute, or sha1 input
/// that carries a collision attack (such as SHAttered's), which names no one block.
pub fn checked_digest(code: u64, data: &[u8]) -> Option<Multihash<64>> {
    if code == SHA1 {
        let r = sha1_checked::Sha1::try_digest(data);
        if r.has_collision() {
            return None;
        }
        return Multihash::wrap(SHA1, r.hash().as_ref()).ok();
    }
    HashAlg::from_code(code).map(|alg| alg.digest(data))
}

/// The full digest length of the function `code`, if cairn computes it.
pub fn digest_size(code: u64) -> Option<usize> {
    if code == SHA1 {
        return Some(20);
    }
    HashAlg::from_code(code).map(HashAlg::size)
}

/// A hash function blocks can be named by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HashAlg {
    Sha2_256,
    Sha2_512,
    Blake2b256,
    Blake3,
}

impl HashAlg {
    /// The multicodec code of this hash function.
    pub fn code(self) -> u64 {
        match self {
            HashAlg::Sha2_256 => 0x12,
            HashAlg::Sha2_512 => 0x13,
            HashAlg::Blake2b256 => 0xb220,
            HashAlg::Blake3 => 0x1e,
        }
    }

    pub fn from_code(code: u64) -> Option<HashAlg> {
        Some(match code {
            0x12 => HashAlg::Sha2_256,
            0x13 => HashAlg::Sha2_512,
            0xb220 => HashAlg::Blake2b256,
            0x1e => HashAlg::Blake3,
            _ => return None,
        })
    }

    /// Hashes `data` into a multihash.
    pub fn digest(self, data: &[u8]) -> Multihash<64> {
        let code = match self {
            HashAlg::Sha2_256 => Code::Sha2_256,
            HashAlg::Sha2_512 => Code::Sha2_512,
            HashAlg::Blake2b256 => Code::Blake2b256,
            HashAlg::Blake3 => Code::Blake3_256,
        };
        code.digest(data)
    }

    /// Bytes of a full digest.
    pub fn size(self) -> usize {
        match self {
            HashAlg::Sha2_256 | HashAlg::Blake2b256 | HashAlg::Blake3 => 32,
            HashAlg::Sha2_512 => 64,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            HashAlg::Sha2_256 => "sha2-256",
            HashAlg::Sha2_512 => "sha2-512",
            HashAlg::Blake2b256 => "blake2b-256",
            HashAlg::Blake3 => "blake3",
        }
    }
}

impl fmt::Display for HashAlg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for HashAlg {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "sha2-256" => HashAlg::Sha2_256,
            "sha2-512" => HashAlg::Sha2_512,
            "blake2b-256" => HashAlg::Blake2b256,
            "blake3" => HashAlg::Blake3,
            other => {
                return Err(format!(
                    "unknown hash {other:?} (choose sha2-256, sha2-512, blake2b-256 or blake3)"
                ))
            }
        })
    }
}

/// The shortest truncated digest accepted (128 bits): anything shorter can be matched by
/// other bytes with little work, so such a CID does not name one block.
pub const MIN_DIGEST: usize = 16;

/// Checks that `data` is the block `cid` names. The error never carries the bytes.
pub fn verify(cid: &Cid, data: &[u8]) -> Result<(), StoreError> {
    let mh = cid.hash();
    if mh.code() == IDENTITY {
        return if mh.digest() == data {
            Ok(())
        } else {
            Err(StoreError::Corrupt { cid: *cid })
        };
    }
    // A sha1 collision attack is refused as a mismatch is.
    let computed = match checked_digest(mh.code(), data) {
        Some(c) => c,
        None if mh.code() == SHA1 => return Err(StoreError::Corrupt { cid: *cid }),
        None => {
            return Err(StoreError::UnsupportedHash {
                cid: *cid,
                code: mh.code(),
            })
        }
    };
    let want = mh.digest();
    // A multihash may carry a truncated digest; it must be a prefix of the full one, and
    // long enough to name anything: a digest of no bytes would match every block.
    if want.len() >= MIN_DIGEST && computed.digest().get(..want.len()) == Some(want) {
        Ok(())
    } else {
        Err(StoreError::Corrupt { cid: *cid })
    }
}

/// True if this CID's multihash can be verified by this store.
pub fn is_supported(cid: &Cid) -> bool {
    cid.hash().code() == IDENTITY || digest_size(cid.hash().code()).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// sha1 names git objects; a block carrying a collision attack names none: both halves
    /// of SHAttered (two different 320-byte prefixes with one sha1) are refused as a
    /// mismatch is, while an ordinary object verifies.
    #[test]
    fn sha1_refuses_collision_attacks() {
        let one = include_bytes!("../testdata/shattered-1.prefix");
        let two = include_bytes!("../testdata/shattered-2.prefix");
        assert_ne!(one, two);
        let unhex = |h: &str| -> Vec<u8> {
            (0..h.len() / 2)
                .map(|i| u8::from_str_radix(&h[2 * i..2 * i + 2], 16).unwrap())
                .collect()
        };
        let id = unhex("f92d74e3874587aaf443d1db961d4e26dde13e9c");
        let cid = Cid::new_v1(0x55, Multihash::wrap(SHA1, &id).unwrap());
        for half in [&one[..], &two[..]] {
            assert!(checked_digest(SHA1, half).is_none());
            assert!(matches!(
                verify(&cid, half),
                Err(StoreError::Corrupt { .. })
            ));
        }
        // git's blob "hello\n".
        let blob = b"blob 6\0hello\n";
        let id = unhex("ce013625030ba8dba906f756967f9e9ca394464a");
        let cid = Cid::new_v1(0x78, Multihash::wrap(SHA1, &id).unwrap());
        assert!(verify(&cid, blob).is_ok());
        assert!(matches!(
            verify(&cid, b"blob 6\0hellO\n"),
            Err(StoreError::Corrupt { .. })
        ));
        assert!(is_supported(&cid));
    }

    #[test]
    fn verify_accepts_the_right_bytes_only() {
        // `echo hello | ipfs add --cid-version 1`
        let cid: Cid = "bafkreicysg23kiwv34eg2d7qweipxwosdo2py4ldv42nbauguluen5v6am"
            .parse()
            .unwrap();
        verify(&cid, b"hello\n").unwrap();
        let err = verify(&cid, b"hellO\n").unwrap_err();
        assert!(matches!(err, StoreError::Corrupt { .. }));
        assert!(!err.to_string().contains("hellO"));
    }

    #[test]
    fn sizes_are_the_digests_sizes() {
        for alg in [
            HashAlg::Sha2_256,
            HashAlg::Sha2_512,
            HashAlg::Blake2b256,
            HashAlg::Blake3,
        ] {
            assert_eq!(
                alg.size(),
                alg.digest(b"x").size() as usize,
                "{}",
                alg.name()
            );
        }
    }

    #[test]
    fn every_algorithm_round_trips() {
        for alg in [
            HashAlg::Sha2_256,
            HashAlg::Sha2_512,
            HashAlg::Blake2b256,
            HashAlg::Blake3,
        ] {
            let mh = alg.digest(b"data");
            let cid = Cid::new_v1(0x55, mh);
            verify(&cid, b"data").unwrap();
            assert!(verify(&cid, b"dat4").is_err());
            assert_eq!(alg.name().parse::<HashAlg>().unwrap(), alg);
        }
    }

    #[test]
    fn identity_cids_verify_against_their_own_digest() {
        let cid = Cid::new_v1(0x55, Multihash::wrap(IDENTITY, b"inline").unwrap());
        verify(&cid, b"inline").unwrap();
        assert!(verify(&cid, b"other").is_err());
    }

    /// A truncated digest must still name one block: a sha2-256 multihash with a digest of
    /// zero bytes would otherwise verify any bytes at all (a peer could answer anything).
    #[test]
    fn short_truncated_digests_verify_nothing() {
        let full = HashAlg::Sha2_256.digest(b"data");
        for len in [0, 1, 8, 15] {
            let mh = Multihash::<64>::wrap(0x12, &full.digest()[..len]).unwrap();
            let cid = Cid::new_v1(0x55, mh);
            assert!(verify(&cid, b"data").is_err(), "{len}");
            assert!(verify(&cid, b"anything").is_err(), "{len}");
        }
        let mh = Multihash::<64>::wrap(0x12, &full.digest()[..20]).unwrap();
        verify(&Cid::new_v1(0x55, mh), b"data").unwrap();
    }
}
