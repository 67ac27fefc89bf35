//! A name: the multihash of a public key (the key itself, inlined, for Ed25519; its SHA-256
//! for RSA), as libp2p's peer IDs are. Printed as kubo prints IPNS names, a CIDv1 with codec
//! libp2p-key in base36 (`k51…`); read in that form, as a peer ID (`12D3…`, `Qm…`), as any
//! other CIDv1 string of a libp2p key (`bafz…`), with or without `/ipns/` in front.

use std::{fmt, str::FromStr};

use cid::Cid;
use libp2p_identity::{PeerId, PublicKey};

/// The multicodec of a libp2p public key in a CID.
pub const LIBP2P_KEY: u64 = 0x72;

/// An IPNS name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Name(PeerId);

/// Why a string is not a name.
#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not an IPNS name (k51…, 12D3…, Qm… or bafz…, optionally after /ipns/)")]
pub struct NotAName(pub String);

impl Name {
    /// The name of `key`.
    pub fn of(key: &PublicKey) -> Name {
        Name(key.to_peer_id())
    }

    /// The multihash bytes the DHT keys a name's records by (after `/ipns/`).
    pub fn to_bytes(&self) -> Vec<u8> {
        self.0.to_bytes()
    }

    /// As a peer ID.
    pub fn peer_id(&self) -> PeerId {
        self.0
    }

    /// The public key inlined in the name, for keys small enough to be (Ed25519); `None` for
    /// a name that is a hash of its key (RSA): its records carry the key.
    pub fn inline_key(&self) -> Option<PublicKey> {
        let mh = multihash::Multihash::<64>::from_bytes(&self.0.to_bytes()).ok()?;
        (mh.code() == 0)
            .then(|| PublicKey::try_decode_protobuf(mh.digest()).ok())
            .flatten()
    }

    /// Whether `key` is the key this name names.
    pub fn is_of(&self, key: &PublicKey) -> bool {
        key.to_peer_id() == self.0
    }
}

impl From<PeerId> for Name {
    /// Every peer ID is a name: the one its key signs records for.
    fn from(p: PeerId) -> Name {
        Name(p)
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mh =
            multihash::Multihash::<64>::from_bytes(&self.0.to_bytes()).map_err(|_| fmt::Error)?;
        let cid = Cid::new_v1(LIBP2P_KEY, mh);
        let s = cid
            .to_string_of_base(cid::multibase::Base::Base36Lower)
            .map_err(|_| fmt::Error)?;
        f.write_str(&s)
    }
}

impl FromStr for Name {
    type Err = NotAName;

    fn from_str(s: &str) -> Result<Name, NotAName> {
        let bad = || NotAName(s.chars().take(200).collect());
        let t = s.strip_prefix("/ipns/").unwrap_or(s);
        if t.starts_with("12D3") || t.starts_with("Qm") || t.starts_with('1') {
            return PeerId::from_str(t).map(Name).map_err(|_| bad());
        }
        let cid = Cid::try_from(t).map_err(|_| bad())?;
        if cid.codec() != LIBP2P_KEY || cid.version() != cid::Version::V1 {
            return Err(bad());
        }
        PeerId::from_multihash(*cid.hash())
            .map(Name)
            .map_err(|_| bad())
    }
}

#[cfg(test)]
mod tests {
    use libp2p_identity::Keypair;

    use super::*;

    /// One Ed25519 key's name in every form it is read in, and printed as kubo prints it.
    #[test]
    fn every_form_of_a_name() {
        let key = Keypair::generate_ed25519();
        let name = Name::of(&key.public());
        let k51 = name.to_string();
        assert!(k51.starts_with("k51"), "{k51}");
        let peer = key.public().to_peer_id().to_string();
        let base32 = Cid::try_from(k51.as_str())
            .unwrap()
            .to_string_of_base(cid::multibase::Base::Base32Lower)
            .unwrap();
        for s in [
            k51.clone(),
            format!("/ipns/{k51}"),
            peer.clone(),
            format!("/ipns/{peer}"),
            base32,
        ] {
            assert_eq!(s.parse::<Name>().unwrap(), name, "{s}");
        }
        assert_eq!(name.inline_key(), Some(key.public()));
        assert!(name.is_of(&key.public()));
        assert!(!name.is_of(&Keypair::generate_ed25519().public()));
        // A CID of anything but a libp2p key is no name.
        let raw = Cid::new_v1(0x55, *Cid::try_from(k51.as_str()).unwrap().hash());
        for s in ["", "/ipns/", "hello", &raw.to_string()] {
            assert!(s.parse::<Name>().is_err(), "{s}");
        }
    }
}
