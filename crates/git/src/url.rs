//! `cairn://` URLs: which repository a remote names, and whether it can move.
//!
//! | URL | what | push |
//! |---|---|---|
//! | `cairn://<document CID>` | a snapshot: that document, forever | refused |
//! | `cairn://<profile CID>/<repo>` | the repository as that profile lists it | refused |
//! | `cairn://<key>/<repo>` | the repository its owner publishes now (`k51…`, an alias or one of your keys) | the key's holder |
//! | `cairn://<git-raw CID>` | object mode: a commit stored one object per block | refused |

use std::fmt;

use cid::Cid;

use crate::objects::GIT_RAW;

/// The CID codec of IPNS names (libp2p-key).
const LIBP2P_KEY: u64 = 0x72;
const DAG_CBOR: u64 = 0x71;

/// The longest repository name a profile takes (`cairn_names::profile::MAX_KEY`).
const MAX_REPO: usize = 64;

/// A parsed `cairn://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Url {
    /// A repository document.
    Snapshot(Cid),
    /// A repository as a profile block lists it.
    Profile { profile: Cid, repo: String },
    /// A repository under a name: `key` is a k51 name, an alias or a key's name.
    Key { key: String, repo: String },
    /// A git-raw object.
    Object(Cid),
}

#[derive(Debug, thiserror::Error)]
#[error("{url:?} is not a cairn URL: {why} (cairn://<key>/<repo>, cairn://<document CID>, cairn://<profile CID>/<repo>)")]
pub struct UrlError {
    url: String,
    why: &'static str,
}

impl Url {
    /// Parses `s`, with or without its `cairn://` (git hands `cairn::<rest>` remotes over
    /// without it).
    pub fn parse(s: &str) -> Result<Url, UrlError> {
        let err = |why| UrlError {
            url: s.to_owned(),
            why,
        };
        let rest = s.strip_prefix("cairn://").unwrap_or(s);
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let (first, repo) = match rest.split_once('/') {
            Some((f, r)) => (f, Some(r)),
            None => (rest, None),
        };
        if first.is_empty() {
            return Err(err("nothing names the repository"));
        }
        if let Some(r) = repo {
            if r.is_empty()
                || r.len() > MAX_REPO
                || !r
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._+~-".contains(&b))
            {
                return Err(err("a repository name is 1 to 64 of A-Z a-z 0-9 . _ + ~ -"));
            }
        }
        let repo = repo.map(str::to_owned);
        match (Cid::try_from(first).ok(), repo) {
            (Some(c), Some(repo)) if c.codec() == LIBP2P_KEY => Ok(Url::Key {
                key: first.to_owned(),
                repo,
            }),
            (Some(c), Some(repo)) if c.codec() == DAG_CBOR => Ok(Url::Profile { profile: c, repo }),
            (Some(c), None) if c.codec() == DAG_CBOR => Ok(Url::Snapshot(c)),
            (Some(c), None) if c.codec() == GIT_RAW => Ok(Url::Object(c)),
            (Some(_), _) => Err(err("a CID of the wrong kind here")),
            (None, Some(repo)) => Ok(Url::Key {
                key: first.to_owned(),
                repo,
            }),
            (None, None) => Err(err("a name needs a repository: cairn://<key>/<repo>")),
        }
    }
}

impl fmt::Display for Url {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Url::Snapshot(c) | Url::Object(c) => write!(f, "cairn://{c}"),
            Url::Profile { profile, repo } => write!(f, "cairn://{profile}/{repo}"),
            Url::Key { key, repo } => write!(f, "cairn://{key}/{repo}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "bafyreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku";
    const KEY: &str = "k51qzi5uqu5dlvj2baxnqndepeb86cbk3ng7n3i46uzyxzyqj2xjonzllnv0v8";

    #[test]
    fn parses_each_kind() {
        let doc = Cid::try_from(DOC).unwrap();
        assert_eq!(
            Url::parse(&format!("cairn://{DOC}")).unwrap(),
            Url::Snapshot(doc)
        );
        assert_eq!(Url::parse(&format!("{DOC}/")).unwrap(), Url::Snapshot(doc));
        assert_eq!(
            Url::parse(&format!("cairn://{DOC}/demo")).unwrap(),
            Url::Profile {
                profile: doc,
                repo: "demo".into()
            }
        );
        for key in [KEY, "alice"] {
            let u = Url::parse(&format!("cairn://{key}/demo.git")).unwrap();
            assert_eq!(
                u,
                Url::Key {
                    key: key.into(),
                    repo: "demo.git".into()
                }
            );
            assert_eq!(u.to_string(), format!("cairn://{key}/demo.git"));
        }
    }

    #[test]
    fn refuses_what_names_nothing() {
        for bad in [
            "cairn://",
            "cairn:///demo",
            "cairn://alice",
            &format!("cairn://{KEY}"),
            &format!("cairn://{KEY}/a/b"),
            &format!("cairn://{KEY}/{}", "a".repeat(65)),
            // A raw block: not a document.
            "cairn://bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku",
        ] {
            assert!(Url::parse(bad).is_err(), "took {bad}");
        }
    }
}
