//! git over cairn (the git issue): repositories published under a user's key and cloned from
//! the swarm. Built so far:
//!
//! - [`doc`]: the repository document a `cairn://` URL resolves to (refs, and the `git bundle`
//!   files that hold the objects), decoded only within its bounds;
//! - git objects as blocks (codec git-raw, sha1 with collision detection) live in the store:
//!   `cairn_store::codec::git`.
//!
//! `git-remote-cairn` (list, fetch, push over bundles) is not built yet; docs/git-format.md
//! says what exists.
//!
//! What a document from a peer can make this crate spend:
//!
//! | what | bound | where | past it |
//! |---|---|---|---|
//! | a document | 1 MiB ([`doc::MAX_DOC`]), before parsing | [`doc::Document::decode`] | refused |
//! | refs, tips, prerequisites | 65,536 ([`doc::MAX_REFS`]) each | [`doc::Document::decode`] | refused |
//! | bundles | 64 ([`doc::MAX_BUNDLES`]) | [`doc::Document::decode`] | refused |

pub mod doc;
