//! Profiles: what a user publishes about themselves under one key (GitTorrent's per-user
//! record): a display name, the packages they release (each a name) and their
//! repositories (each a name or a path, for the git helper). One dag-cbor block:
//!
//! ```text
//! {type: "cairn/profile/1", name: "k51…", display: "…",
//!  packages: {"hello": "k51…"}, repositories: {"cairn": "/ipns/k51…"}}
//! ```
//!
//! Profiles come from strangers; what one can make a reader spend:
//!
//! | what | bound |
//! |---|---|
//! | a profile block | [`MAX_PROFILE`] (256 KiB), checked before it is parsed |
//! | entries (packages and repositories) | [`MAX_ENTRIES`] in all |
//! | an entry's key | [`MAX_KEY`] bytes of `A-Za-z0-9._+~-` |
//! | an entry's value, the display name | [`MAX_VALUE`] bytes (the display name: any text) |

use std::collections::BTreeMap;

use ipld_core::ipld::Ipld;

use crate::Name;

const TYPE: &str = "cairn/profile/1";
/// The largest profile block.
pub const MAX_PROFILE: usize = 256 << 10;
/// Packages and repositories in one profile.
pub const MAX_ENTRIES: usize = 1024;
/// An entry's key.
pub const MAX_KEY: usize = 64;
/// An entry's value, and the display name.
pub const MAX_VALUE: usize = 512;

/// A profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    pub name: Name,
    pub display: Option<String>,
    /// Package name -> the name its releases are under.
    pub packages: BTreeMap<String, Name>,
    /// Repository name -> where it lives (a name or a path).
    pub repositories: BTreeMap<String, String>,
}

/// Why a profile is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProfileError {
    #[error("a profile of {0} bytes (at most {MAX_PROFILE})")]
    TooLarge(usize),
    #[error("not a profile: {0}")]
    Malformed(String),
    #[error("the profile is {0}'s, not this name's")]
    OtherName(String),
    #[error("{0:?} is not an entry name (1 to {MAX_KEY} of A-Z a-z 0-9 . _ + ~ -)")]
    BadKey(String),
    #[error("a value or display name too long (at most {MAX_VALUE} bytes)")]
    LongValue,
    #[error("more than {MAX_ENTRIES} entries")]
    TooMany,
}

fn malformed(why: impl Into<String>) -> ProfileError {
    ProfileError::Malformed(why.into())
}

/// Checks an entry's key.
pub fn check_key(k: &str) -> Result<(), ProfileError> {
    let ok = !k.is_empty()
        && k.len() <= MAX_KEY
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._+~-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(ProfileError::BadKey(k.chars().take(100).collect()))
    }
}

fn check_value(v: &str) -> Result<(), ProfileError> {
    if v.len() > MAX_VALUE {
        return Err(ProfileError::LongValue);
    }
    Ok(())
}

impl Profile {
    /// An empty profile of `name`.
    pub fn empty(name: Name) -> Profile {
        Profile {
            name,
            display: None,
            packages: BTreeMap::new(),
            repositories: BTreeMap::new(),
        }
    }

    /// Checks every bound.
    pub fn check(&self) -> Result<(), ProfileError> {
        if self.packages.len() + self.repositories.len() > MAX_ENTRIES {
            return Err(ProfileError::TooMany);
        }
        if let Some(d) = &self.display {
            check_value(d)?;
        }
        for k in self.packages.keys() {
            check_key(k)?;
        }
        for (k, v) in &self.repositories {
            check_key(k)?;
            check_value(v)?;
        }
        Ok(())
    }

    /// The profile as its dag-cbor block.
    pub fn encode(&self) -> Vec<u8> {
        let mut m = BTreeMap::new();
        m.insert("type".to_owned(), Ipld::String(TYPE.to_owned()));
        m.insert("name".to_owned(), Ipld::String(self.name.to_string()));
        if let Some(d) = &self.display {
            m.insert("display".to_owned(), Ipld::String(d.clone()));
        }
        let packages = self
            .packages
            .iter()
            .map(|(k, n)| (k.clone(), Ipld::String(n.to_string())))
            .collect();
        m.insert("packages".to_owned(), Ipld::Map(packages));
        let repos = self
            .repositories
            .iter()
            .map(|(k, v)| (k.clone(), Ipld::String(v.clone())))
            .collect();
        m.insert("repositories".to_owned(), Ipld::Map(repos));
        serde_ipld_dagcbor::to_vec(&Ipld::Map(m)).expect("a profile encodes")
    }

    /// Decodes and checks a profile block; `name`, if given, is the name it must be of.
    pub fn decode(bytes: &[u8], name: Option<&Name>) -> Result<Profile, ProfileError> {
        if bytes.len() > MAX_PROFILE {
            return Err(ProfileError::TooLarge(bytes.len()));
        }
        let ipld: Ipld = serde_ipld_dagcbor::from_slice(bytes)
            .map_err(|e| malformed(format!("not dag-cbor: {e}")))?;
        let Ipld::Map(m) = ipld else {
            return Err(malformed("not a map"));
        };
        let string = |k: &str| match m.get(k) {
            Some(Ipld::String(s)) => Ok(Some(s.clone())),
            None => Ok(None),
            _ => Err(malformed(format!("{k} is not a string"))),
        };
        if string("type")?.as_deref() != Some(TYPE) {
            return Err(malformed(format!("its type is not {TYPE}")));
        }
        let pname: Name = string("name")?
            .ok_or_else(|| malformed("no name"))?
            .parse()
            .map_err(|_| malformed("its name is not a name"))?;
        if let Some(n) = name {
            if *n != pname {
                return Err(ProfileError::OtherName(pname.to_string()));
            }
        }
        let table = |k: &str| -> Result<Vec<(String, String)>, ProfileError> {
            match m.get(k) {
                None => Ok(Vec::new()),
                Some(Ipld::Map(t)) => {
                    if t.len() > MAX_ENTRIES {
                        return Err(ProfileError::TooMany);
                    }
                    t.iter()
                        .map(|(k, v)| match v {
                            Ipld::String(s) => Ok((k.clone(), s.clone())),
                            _ => Err(malformed(format!("{k} is not a string"))),
                        })
                        .collect()
                }
                _ => Err(malformed(format!("{k} is not a map"))),
            }
        };
        let packages = table("packages")?
            .into_iter()
            .map(|(k, v)| {
                let n = v
                    .parse::<Name>()
                    .map_err(|_| malformed(format!("package {k} is not a name")))?;
                Ok((k, n))
            })
            .collect::<Result<_, ProfileError>>()?;
        let p = Profile {
            name: pname,
            display: string("display")?,
            packages,
            repositories: table("repositories")?.into_iter().collect(),
        };
        p.check()?;
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use libp2p_identity::Keypair;

    fn name() -> Name {
        Name::of(&Keypair::generate_ed25519().public())
    }

    #[test]
    fn round_trip_and_bounds() {
        let me = name();
        let mut p = Profile::empty(me);
        p.display = Some("Ada".into());
        p.packages.insert("hello".into(), name());
        p.repositories
            .insert("cairn".into(), format!("/ipns/{}", name()));
        let back = Profile::decode(&p.encode(), Some(&me)).unwrap();
        assert_eq!(back, p);
        assert!(matches!(
            Profile::decode(&p.encode(), Some(&name())),
            Err(ProfileError::OtherName(_))
        ));
        p.packages.insert("a/b".into(), name());
        assert!(matches!(p.check(), Err(ProfileError::BadKey(_))));
        assert!(matches!(
            Profile::decode(&p.encode(), None),
            Err(ProfileError::BadKey(_))
        ));
        assert!(matches!(
            Profile::decode(&vec![0u8; MAX_PROFILE + 1], None),
            Err(ProfileError::TooLarge(_))
        ));
        assert!(Profile::decode(b"\xa0", None).is_err());
    }
}
