//! cairn's apps: content that names its own install path.
//!
//! A program usually contains the path it is installed at: an RPATH, a shebang, a data
//! directory in its config. In a content-addressed store that path contains the CID, which
//! hashes the content: a circle. cairn breaks it the way Nix does for content-addressed
//! derivations. The program is built with [`PLACEHOLDER`] where its CID will be (a token of
//! exactly the CID's length); [`import`] stores the tree unchanged (plain UnixFS, kubo's CIDs)
//! and records where the placeholder occurs, per file, in an [`AppNode`] (dag-cbor) whose
//! CID covers both. The `app` view of the mount then serves the files with the app node's
//! CID written over each recorded occurrence, so `R/store/app/<cid>/bin/prog` finds
//! `R/store/app/<cid>/lib/` where it looks. Sizes never change; offsets are the same in the
//! stored and the served bytes.
//!
//! A webapp is the same node with another type: the `webapp` view serves it for static web
//! servers.
//!
//! The format is described in `docs/app-format.md` of the project, with what cannot work
//! (a self-path inside compressed or checksummed data, or spelled at another length).

mod import;
mod node;
mod scan;

pub use import::{import, Imported, Warning};
pub use node::{AppError, AppKind, AppNode, MAX_NODE_BYTES};
pub use scan::Scanner;

/// Stands where the app's own CID will be. It has exactly the length of the string the view
/// writes over it, the canonical CID of an app node (CIDv1, base32, dag-cbor, sha2-256: 59
/// characters), and is not a CID itself: '-' is not a base32 digit. Part of the format: it
/// never changes within a format version.
pub const PLACEHOLDER: &str = "cairn-self-placeholder-d33d38c23a5658f14bc5309233ae608426b0";

/// [`PLACEHOLDER`]'s length, which is also the length of every app's CID string.
pub const LEN: usize = PLACEHOLDER.len();

/// The first bytes of [`PLACEHOLDER`]: seen without the rest, they are a self-path the view
/// cannot rewrite (cut short, or spelled at another length), which the importer warns about.
pub const STEM: &str = "cairn-self-placeholder";

/// The string the view writes over the placeholder in app `cid`: its canonical name, if it
/// has the placeholder's length (every app node cairn makes has).
pub fn self_reference(cid: &cid::Cid) -> Option<String> {
    let s = cairn_store::block_name(cid);
    (s.len() == LEN).then_some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The placeholder is exactly as long as the CID an app node gets, and cannot be mistaken
    /// for one.
    #[test]
    fn the_placeholder_has_the_length_of_an_app_cid_and_is_not_a_cid() {
        let node = AppNode {
            kind: AppKind::App,
            content: "QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn"
                .parse()
                .unwrap(),
            name: Some("x".into()),
            refs: Default::default(),
        };
        let (cid, _) = node.encode().unwrap();
        assert_eq!(cairn_store::block_name(&cid).len(), PLACEHOLDER.len());
        assert_eq!(self_reference(&cid).unwrap().len(), LEN);
        assert!(PLACEHOLDER.parse::<cid::Cid>().is_err());
        assert!(PLACEHOLDER.starts_with(STEM));
        assert!(PLACEHOLDER
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-'));
    }
}
