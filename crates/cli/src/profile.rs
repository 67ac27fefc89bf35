//! `cairn profile`: what you publish about yourself under one key (GitTorrent's per-user
//! record): a display name, your packages and your repositories (`docs/names.md`).

use std::{path::Path, process::ExitCode};

use anyhow::{bail, Context, Result};
use cairn_names::{
    keys::{KeyError, Keystore},
    profile::Profile,
    record, Name,
};
use clap::Subcommand;

use crate::{
    control::{Control, Request},
    name::printable,
};

#[derive(Subcommand)]
pub enum ProfileCmd {
    /// Change your profile and publish it (under the key `profile`, made the first time;
    /// its name, printed then, is what others look you up by)
    Set {
        /// The name shown for you
        #[arg(long)]
        display: Option<String>,
        /// A package you release: NAME=NAME (a k51 name, an alias or one of your keys)
        #[arg(long, value_name = "PACKAGE=NAME")]
        package: Vec<String>,
        /// A repository of yours: NAME=WHERE (a name or a path)
        #[arg(long, value_name = "REPO=WHERE")]
        repo: Vec<String>,
        /// Remove a package or repository
        #[arg(long, value_name = "NAME")]
        rm: Vec<String>,
        /// The key to publish under
        #[arg(long, default_value = "profile")]
        key: String,
        /// Publish only if the profile's record is still at this sequence (`none`: it has
        /// no record yet); else exit with status 3 and change nothing. For programs that
        /// read the profile, change it and must not undo another's change (git-remote-cairn)
        #[arg(long, value_name = "N|none")]
        expect_sequence: Option<String>,
    },
    /// Show a profile: NAME's (k51…, an alias or one of your keys), or your own
    Show {
        name: Option<String>,
        #[arg(long)]
        json: bool,
        /// Ask the network even if this node holds a fresh record
        #[arg(long)]
        nocache: bool,
    },
}

/// The profile `name` points to, if it has published one.
fn fetch(root: &Path, c: &mut Control, name: &Name, nocache: bool) -> Result<Option<Profile>> {
    let r = c.call(&Request::NameResolve {
        name: name.to_string(),
        nocache,
        offline: false,
    })?;
    let Some(value) = r["value"].as_str() else {
        return Ok(None);
    };
    let cid = value
        .strip_prefix("/ipfs/")
        .and_then(|s| cairn_store::parse_cid(s).ok())
        .with_context(|| format!("{name} points to {}, not a profile", printable(value)))?;
    let bytes = crate::release::block(root, c, &cid)?;
    Ok(Some(
        Profile::decode(&bytes, Some(name)).with_context(|| format!("{name} points to {cid}"))?,
    ))
}

fn split(s: &str) -> Result<(&str, &str)> {
    s.split_once('=')
        .with_context(|| format!("{s:?}: NAME=VALUE"))
}

pub fn run(root: &Path, cmd: ProfileCmd) -> Result<ExitCode> {
    match cmd {
        ProfileCmd::Set {
            display,
            package,
            repo,
            rm,
            key,
            expect_sequence,
        } => {
            let expect = match expect_sequence.as_deref() {
                None => None,
                Some("none") => Some(None),
                Some(n) => Some(Some(n.parse::<u64>().with_context(|| {
                    format!("--expect-sequence {n:?}: a number or none")
                })?)),
            };
            let ks = Keystore::open_default()?;
            // One change of this key's profile at a time on this machine: two would read the
            // same profile and the second would undo the first.
            let _lock = ks.lock(&key)?;
            let (k, made) = match ks.get(&key) {
                Ok(k) => (k, false),
                Err(KeyError::NotFound(_)) => (ks.generate(&key)?, true),
                Err(e) => return Err(e.into()),
            };
            let name = k.ipns();
            let mut c = Control::require(root)?;
            // The network's, else the one this user last published (a name whose record
            // expired must not start again empty).
            let mine = || -> Option<Profile> {
                let (_, v) = ks.head(&key).ok()??;
                let cid = cairn_store::parse_cid(v.strip_prefix("/ipfs/")?).ok()?;
                let bytes =
                    crate::release::block(root, &mut Control::require(root).ok()?, &cid).ok()?;
                Profile::decode(&bytes, Some(&name)).ok()
            };
            // A change that must not undo another's reads the network's newest, not a
            // record this node holds from minutes ago.
            let nocache = expect.is_some();
            let mut p = match fetch(root, &mut c, &name, nocache)? {
                Some(p) => p,
                None => mine().unwrap_or_else(|| Profile::empty(name)),
            };
            if display.is_some() {
                p.display = display;
            }
            for s in &package {
                let (pkg, n) = split(s)?;
                p.packages
                    .insert(pkg.to_owned(), crate::release::name_arg(root, n)?);
            }
            for s in &repo {
                let (r, w) = split(s)?;
                p.repositories.insert(r.to_owned(), w.to_owned());
            }
            for r in &rm {
                if p.packages.remove(r).is_none() && p.repositories.remove(r).is_none() {
                    bail!("your profile has no package or repository {r:?}");
                }
            }
            p.check()?;
            let bytes = p.encode();
            if bytes.len() > cairn_names::profile::MAX_PROFILE {
                bail!(
                    "the profile would be {} bytes, over the {} one may have",
                    bytes.len(),
                    cairn_names::profile::MAX_PROFILE
                );
            }
            let r = c.call(&Request::NameResolve {
                name: name.to_string(),
                nocache,
                offline: false,
            })?;
            let old = ks.head(&key)?;
            if let Some(expect) = expect {
                let now = r["sequence"].as_u64().max(old.as_ref().map(|(s, _)| *s));
                if now != expect {
                    let show = |s: Option<u64>| s.map_or("none".to_owned(), |s| s.to_string());
                    eprintln!(
                        "cairn: the profile {name} is at sequence {}, not {}: it moved",
                        show(now),
                        show(expect)
                    );
                    return Ok(ExitCode::from(3));
                }
            }
            let sequence = r["sequence"]
                .as_u64()
                .max(old.as_ref().map(|(s, _)| *s))
                .map_or(0, |s| s + 1);
            let old = old.and_then(|(_, v)| cairn_store::parse_cid(v.strip_prefix("/ipfs/")?).ok());
            let cid = crate::release::publish_block(
                root,
                &mut c,
                &ks,
                &k,
                &crate::release::Publication {
                    prog: "profile",
                    bytes: &bytes,
                    sequence,
                    old,
                    lifetime: record::LIFETIME,
                    ttl: record::TTL,
                },
            )?;
            if made {
                eprintln!("cairn: made the key {key}; your profile's name, to share: {name}");
            }
            println!("published the profile {name} ({cid})");
        }
        ProfileCmd::Show {
            name,
            json,
            nocache,
        } => {
            let name = match name {
                Some(n) => crate::release::name_arg(root, &n)?,
                None => crate::release::name_arg(root, "profile")?,
            };
            let mut c = Control::require(root)?;
            let Some(p) = fetch(root, &mut c, &name, nocache)? else {
                bail!("{name}: no valid record found");
            };
            if json {
                let packages: serde_json::Map<String, serde_json::Value> = p
                    .packages
                    .iter()
                    .map(|(k, n)| (k.clone(), n.to_string().into()))
                    .collect();
                println!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({
                        "name": name.to_string(), "display": p.display,
                        "packages": packages, "repositories": p.repositories,
                    }))?
                );
            } else {
                println!("name     {name}");
                if let Some(d) = &p.display {
                    println!("display  {}", printable(d));
                }
                for (k, n) in &p.packages {
                    println!("package  {k} {n}");
                }
                for (k, w) in &p.repositories {
                    println!("repo     {k} {}", printable(w));
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
