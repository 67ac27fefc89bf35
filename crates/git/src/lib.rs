//! git over cairn (the git issue): repositories published under a user's key and cloned from
//! the swarm, by `git-remote-cairn`, the remote helper git runs for `cairn://` URLs.
//!
//! - [`doc`]: the repository document a URL resolves to (refs, and the `git bundle` files that
//!   hold the objects), decoded only within its bounds;
//! - [`bundle`]: a bundle's header, read before its pack goes to `git index-pack`;
//! - [`url`]: the URLs; [`remote`]: the conversation with git; [`cairn`] and [`git`]: the two
//!   programs the helper drives; [`objects`]: object mode, a git-raw DAG as one pack;
//! - git objects as blocks (codec git-raw, sha1 with collision detection) live in the store:
//!   `cairn_store::codec::git`.
//!
//! What a document or bundle from a peer can make this crate spend:
//!
//! | what | bound | where | past it |
//! |---|---|---|---|
//! | a document | 1 MiB ([`doc::MAX_DOC`]), before parsing | [`doc::Document::decode`] | refused |
//! | refs, tips, prerequisites | 65,536 ([`doc::MAX_REFS`]) each | [`doc::Document::decode`], [`bundle::Header::read`] | refused |
//! | bundles | 64 ([`doc::MAX_BUNDLES`]) | [`doc::Document::decode`] | refused |
//! | a bundle's header | 16 MiB ([`bundle::MAX_HEADER`]) | [`bundle::Header::read`] | refused |
//! | a bundle's CID | a file's (dag-pb or raw, sha2-256) | [`doc::Document::decode`] | refused |
//! | a bundle's blocks | its declared size + 1/64 + 64 KiB (`cairn fetch --max-bytes`), a window of one block per 256 KiB | [`remote`] | fetch stopped, refused |
//! | a bundle's pack | the size its document declares, `index-pack --max-input-size` | [`remote`] | refused, pack deleted |
//! | a tree, commit or tag | 16 MiB ([`git::MAX_STRUCTURE`]); trees 4096 deep (`core.maxTreeDepth`) | [`git::check_new`] | refused, packs deleted |
//! | `index-pack`'s memory (delta bombs) | 8 GiB of address space ([`git::INDEX_PACK_MEMORY`]) | [`git::index_pack`] | index-pack dies, refused |
//! | a `cairn` command's answer | 4 MiB read | [`cairn`] | cut |
//! | a CAR section (object mode) | 2 MiB + 256 bytes | [`objects::pack_from_car`] | refused |

pub mod bundle;
pub mod cairn;
pub mod doc;
pub mod git;
pub mod objects;
pub mod remote;
pub mod url;
