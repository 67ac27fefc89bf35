//! cairn's names: a name is a public key's hash (IPNS, so kubo and Helia resolve the same
//! names), and what it points to is a record only the key's owner can sign.
//!
//! - [`keys`]: a user's keys, in files checked as ssh checks them;
//! - [`name`]: [`Name`], read in every form IPNS names are written in, printed as `k51…`;
//! - [`record`]: IPNS records, signed with V1 and V2 signatures and verified as the
//!   specification's V2 rules say, and which of two is the better;
//! - [`releases`]: release lists, a hash chain of what a name's owner released;
//! - [`profile`]: a user's profile (display name, packages, repositories) under one key;
//! - [`time`]: the RFC 3339 validity times records carry.
//!
//! Records come from strangers (DHT peers, files, other users). What one can make this crate
//! spend:
//!
//! | what | bound | where | past it |
//! |---|---|---|---|
//! | a record | 10 KiB ([`record::MAX_RECORD`]), checked before it is parsed | [`record::verify`] | refused |
//! | its value | 4 KiB ([`record::MAX_VALUE`]), an `/ipfs/` or `/ipns/` path | [`record::verify`] | refused |
//! | a release list block | 1 MiB, 64-byte versions, 4 KiB notes ([`releases`]) | [`releases::Node::decode`] | refused |
//! | a name's release lists | 128 older lists, 16 MiB, 4096 versions in all ([`releases`]) | [`releases::List::load`] | refused |
//! | a profile | 256 KiB, 1024 entries, 64-byte keys, 512-byte values ([`profile`]) | [`profile::Profile::decode`] | refused |
//! | a key file read | 64 KiB ([`keys::MAX_KEY_FILE`]), checked before it is read | [`keys::Keystore::get`], [`keys::decode_import`] | refused |
//! | its signature check | one Ed25519 or RSA verification | [`record::verify`] | - |
//!
//! The commands, the DHT records and the release lists of the names issue build on this.

pub mod keys;
pub mod name;
pub mod profile;
pub mod record;
pub mod releases;
pub mod time;

pub use crate::{
    name::Name,
    record::{Record, RecordError},
};
