//! `cairn release` and `cairn versions`: a name's release list, a hash chain of versions
//! only the name's key can extend (`docs/names.md`).

use std::{os::unix::fs::DirBuilderExt, path::Path, process::ExitCode};

use anyhow::{bail, Context, Result};
use cairn_names::{
    keys::{KeyError, Keystore},
    record,
    releases::{List, Release, LATEST},
    Name,
};
use cairn_store::{codec::codes, Cid, HashAlg, Store};
use clap::Args;
use serde_json::{json, Value};

use crate::{
    control::{Control, Request},
    name::printable,
};

#[derive(Args)]
pub struct ReleaseArgs {
    /// The package: the name of your key for it (made at the first release)
    name: String,
    /// The version to release (letters, digits, . _ + ~ -; never "latest")
    #[arg(required_unless_present = "yank")]
    version: Option<String>,
    /// What it is: a CID (an app added with `cairn add --app`, or any tree)
    #[arg(required_unless_present = "yank")]
    cid: Option<String>,
    /// A line about the release
    #[arg(long)]
    notes: Option<String>,
    /// Withdraw VERSION instead (it stays listed, with the reason, and is never "latest")
    #[arg(long, value_name = "VERSION", conflicts_with_all = ["version", "cid", "notes"], requires = "reason")]
    yank: Option<String>,
    /// Why it is withdrawn
    #[arg(long)]
    reason: Option<String>,
    /// How long the new record is valid (s, m, h, d): past it, nobody can tell which
    /// version is latest until you release again or run `cairn name republish`
    #[arg(long, default_value = "48h", value_parser = crate::name::parse_duration)]
    lifetime: std::time::Duration,
    /// How long resolvers may use the record before asking again (s, m, h, d)
    #[arg(long, default_value = "5m", value_parser = crate::name::parse_duration)]
    ttl: std::time::Duration,
}

fn now() -> cairn_names::time::Nanos {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128)
}

/// The block `cid`, fetched through the daemon if it is not here.
pub fn block(root: &Path, c: &mut Control, cid: &Cid) -> Result<Vec<u8>> {
    let store = Store::open(root)?;
    if let Some(b) = store.get(cid)? {
        return Ok(b.to_vec());
    }
    c.call(&Request::Block {
        cid: cid.to_string(),
    })
    .with_context(|| format!("fetching the release list {cid}"))?;
    Ok(store
        .get(cid)?
        .with_context(|| format!("{cid} is not in the store after fetching it"))?
        .to_vec())
}

/// A name's newest release list as resolved: the list, its CID, the record's sequence, and
/// how fresh the record is (`fresh`, `old`: past its TTL and the network unreachable,
/// `expired`: past its validity).
#[derive(Clone)]
pub struct Head {
    pub list: List,
    pub cid: Cid,
    pub seq: u64,
    pub freshness: String,
}

/// The name's newest list and its CID, from the network (through the daemon), checked.
/// `None`: nothing published yet.
pub fn current(root: &Path, c: &mut Control, name: &Name, nocache: bool) -> Result<Option<Head>> {
    let r = c.call(&Request::NameResolve {
        name: name.to_string(),
        nocache,
        offline: false,
    })?;
    let Some(value) = r["value"].as_str() else {
        return Ok(None);
    };
    let sequence = r["sequence"].as_u64().unwrap_or(0);
    let mut head = list_at(root, c, name, value, sequence)?;
    head.freshness = r["freshness"].as_str().unwrap_or("fresh").to_owned();
    Ok(Some(head))
}

/// How many lists back a new head is followed to the last one this user saw.
const MAX_WALK: usize = 1024;

/// Where the last good head of each name this user read is kept.
fn seen_path(name: &Name) -> Result<std::path::PathBuf> {
    let keys = cairn_names::keys::default_dir()?;
    let dir = keys.parent().unwrap_or(&keys).join("seen");
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .with_context(|| dir.display().to_string())?;
    Ok(dir.join(name.to_string()))
}

fn seen(name: &Name) -> Result<Option<Cid>> {
    match std::fs::read_to_string(seen_path(name)?) {
        Ok(s) => Ok(cairn_store::parse_cid(s.trim()).ok()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}

fn set_seen(name: &Name, cid: &Cid) -> Result<()> {
    let path = seen_path(name)?;
    let tmp = path.with_extension(format!("{}.tmp", std::process::id()));
    std::fs::write(&tmp, format!("{cid}\n"))?;
    std::fs::rename(&tmp, &path)?;
    Ok(())
}

/// `cairn name accept NAME`: forget the last good head, so the next read takes the
/// network's; for the node too when this user may tell it so.
pub fn accept(root: &Path, name: &str) -> Result<ExitCode> {
    let name = name_arg(root, name)?;
    match std::fs::remove_file(seen_path(&name)?) {
        Ok(()) => eprintln!("cairn: {name}: your next read takes the newest list as it is"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!("cairn: {name}: you have seen no list yet, nothing to accept")
        }
        Err(e) => return Err(e.into()),
    }
    if let Some(mut c) = Control::connect(root) {
        match c.call(&Request::NameAccept {
            name: name.to_string(),
        }) {
            Ok(_) => eprintln!("cairn: {name}: so does the node's"),
            Err(e) => eprintln!("cairn: the node keeps its last good list: {e}"),
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The newest list of `name`, checked against the last one this user saw: the new head must
/// reach it through `prev`, each list the one before plus one change. A rewritten history
/// keeps the last good list (`strict`: is an error) until `cairn name accept NAME`.
pub fn checked(
    root: &Path,
    c: &mut Control,
    name: &Name,
    nocache: bool,
    strict: bool,
) -> Result<Option<Head>> {
    let Some(head) = current(root, c, name, nocache)? else {
        return Ok(None);
    };
    let Some(old) = seen(name)? else {
        set_seen(name, &head.cid)?;
        return Ok(Some(head));
    };
    let walked = head.list.extends(head.cid, &old, MAX_WALK, |p| {
        block(root, c, p).map_err(|e| format!("{e:#}"))
    });
    let Err(why) = walked else {
        set_seen(name, &head.cid)?;
        return Ok(Some(head));
    };
    let msg = format!(
        "{name}: rewritten history: the newest list {} does not extend {old}, the last seen ({why}); `cairn name accept {name}` takes it",
        head.cid
    );
    if strict {
        bail!("{msg}");
    }
    eprintln!("cairn: warning: {msg}; the last good list is used");
    let good = List::load(&block(root, c, &old)?, Some(name), |p| {
        block(root, c, p).map_err(|e| format!("{e:#}"))
    })?;
    Ok(Some(Head {
        list: good,
        cid: old,
        ..head
    }))
}

/// The list a record's `value` points at, checked, with the record's sequence.
fn list_at(root: &Path, c: &mut Control, name: &Name, value: &str, seq: u64) -> Result<Head> {
    let cid = value
        .strip_prefix("/ipfs/")
        .filter(|s| !s.contains('/'))
        .and_then(|s| cairn_store::parse_cid(s).ok())
        .with_context(|| {
            format!(
                "{name} points to {}, not to a release list",
                printable(value)
            )
        })?;
    let list = List::load(&block(root, c, &cid)?, Some(name), |p| {
        block(root, c, p).map_err(|e| format!("{e:#}"))
    })
    .with_context(|| format!("{name} points to {cid}"))?;
    Ok(Head {
        list,
        cid,
        seq,
        freshness: "fresh".into(),
    })
}

pub fn release(root: &Path, a: ReleaseArgs) -> Result<ExitCode> {
    let ks = Keystore::open_default()?;
    let (key, made) = match ks.get(&a.name) {
        Ok(k) => (k, false),
        Err(KeyError::NotFound(_)) if a.yank.is_none() => (ks.generate(&a.name)?, true),
        Err(e) => return Err(e.into()),
    };
    let name = key.ipns();
    let mut c = Control::require(root)?;
    // The newest head the network knows, so that two machines with one key do not fork;
    // or the one this user last published, if the network knows none or an older one (a
    // name whose records expired while its owner was away must not start again at 0).
    let net = checked(root, &mut c, &name, false, true)?;
    let cur = match (net, ks.head(&a.name)?) {
        (Some(n), Some((seq, value))) if seq > n.seq => {
            Some(list_at(root, &mut c, &name, &value, seq)?)
        }
        (None, Some((seq, value))) => Some(list_at(root, &mut c, &name, &value, seq)?),
        (n, _) => n,
    };
    let cur = cur.map(|h| (h.list, h.cid, h.seq));
    let (next, what) = match (&a.yank, &cur) {
        (Some(v), Some((list, cid, _))) => (
            list.yank(*cid, v, a.reason.as_deref().unwrap_or(""))?,
            format!("yanked {} {v}", a.name),
        ),
        (Some(_), None) => bail!("{name} has no releases to yank"),
        (None, _) => {
            let (v, target) = (a.version.unwrap_or_default(), a.cid.unwrap_or_default());
            let target = cairn_store::parse_cid(&target)?;
            let (list, cid) = match &cur {
                Some((l, c, _)) => (l.clone(), Some(*c)),
                None => (List::empty(name), None),
            };
            let next = list.append(cid, &v, target, now(), a.notes.clone())?;
            let store = Store::open(root)?;
            if !store.has(&target)? {
                eprintln!(
                    "cairn: note: {target} is not in this store; peers can fetch it only from nodes that have it"
                );
            }
            (next, format!("released {} {v} -> {target}", a.name))
        }
    };
    let bytes = next.encode();
    if bytes.len() > cairn_names::releases::MAX_LIST {
        bail!(
            "the list would be {} bytes, over the {} a list may have: shorter notes, or a new name",
            bytes.len(),
            cairn_names::releases::MAX_LIST
        );
    }
    let list_cid = publish_block(
        root,
        &mut c,
        &ks,
        &key,
        &Publication {
            prog: "releases",
            bytes: &bytes,
            sequence: cur.as_ref().map_or(0, |(_, _, s)| s + 1),
            old: cur.as_ref().map(|(_, old, _)| *old),
            lifetime: a.lifetime,
            ttl: a.ttl,
        },
    )?;
    set_seen(&name, &list_cid)?;
    if made {
        eprintln!(
            "cairn: made the key {}; its name, to share: {name} (cairn key export {} -o FILE keeps a copy)",
            a.name, a.name
        );
    }
    println!("{what} (list {list_cid}, name {name})");
    Ok(ExitCode::SUCCESS)
}

/// A dag-cbor block a key's name is to point to, and how.
pub struct Publication<'a> {
    /// The pins' program name (`R/pins/per-user/USER/PROG/`).
    pub prog: &'a str,
    pub bytes: &'a [u8],
    pub sequence: u64,
    /// The block the name pointed to before, whose pin goes.
    pub old: Option<Cid>,
    pub lifetime: std::time::Duration,
    pub ttl: std::time::Duration,
}

/// Stores and pins `p`'s block (the old one's pin goes), signs a record of `key`'s name
/// pointing to it, publishes it through the daemon, records the head, and announces the
/// block (root and the daemon's user only; others' blocks are found through the peers
/// that resolve them). Returns the block's CID.
pub fn publish_block(
    root: &Path,
    c: &mut Control,
    ks: &Keystore,
    key: &cairn_names::keys::Key,
    p: &Publication,
) -> Result<Cid> {
    let name = key.ipns();
    let cid = Cid::new_v1(codes::DAG_CBOR, HashAlg::Sha2_256.digest(p.bytes));
    let store = Store::init(root)?;
    store.put(&cid, p.bytes)?;
    let layout = store.layout();
    let user = cairn_gc::pins::current_user();
    cairn_gc::pins::add(layout, &user, p.prog, &cid)?;
    let value = format!("/ipfs/{cid}");
    let rec = record::sign(
        &key.keypair,
        &value,
        p.sequence,
        now() + p.lifetime.as_nanos() as i128,
        p.ttl.as_nanos() as u64,
    )?;
    c.call(&Request::NamePublish {
        name: name.to_string(),
        record: record::to_base64(&rec),
        offline: false,
    })
    .with_context(|| format!("publishing {name}"))?;
    ks.set_head(&key.name, p.sequence, &value)?;
    if let Some(old) = p.old.filter(|o| *o != cid) {
        cairn_gc::pins::remove(layout, &user, Some(p.prog), &old)?;
    }
    if let Err(e) = c.call(&Request::Provide {
        cids: vec![cid.to_string()],
    }) {
        log::debug!("announcing {cid}: {e}");
    }
    Ok(cid)
}

/// NAME: a name (k51…, or any spelling of one), one of your aliases, one of the node's,
/// or one of your keys' names.
pub fn name_arg(root: &Path, s: &str) -> Result<Name> {
    if let Ok(n) = s.parse::<Name>() {
        return Ok(n);
    }
    for path in [user_aliases()?, root.join("names").join("aliases.toml")] {
        let aliases = crate::naming::read_aliases(&path).map_err(anyhow::Error::msg)?;
        if let Some(n) = aliases.get(s) {
            return Ok(*n);
        }
    }
    let ks = Keystore::open_default()?;
    match ks.get(s) {
        Ok(k) => Ok(k.ipns()),
        Err(KeyError::NotFound(_)) | Err(KeyError::BadName(_)) => {
            bail!("{s:?} is not an IPNS name (k51…), an alias, nor one of your keys")
        }
        Err(e) => Err(e.into()),
    }
}

/// This user's aliases file, `~/.config/cairn/aliases.toml`.
pub fn user_aliases() -> Result<std::path::PathBuf> {
    let keys = cairn_names::keys::default_dir()?;
    Ok(keys.parent().unwrap_or(&keys).join("aliases.toml"))
}

fn row(r: &Release, latest: bool) -> Value {
    json!({
        "version": r.v,
        "cid": r.cid.to_string(),
        "at": r.at,
        "notes": r.notes,
        "yanked": r.yanked,
        "latest": latest,
    })
}

pub fn versions(root: &Path, name: &str, json: bool, nocache: bool) -> Result<ExitCode> {
    let name = name_arg(root, name)?;
    let mut c = Control::require(root)?;
    let Some(Head { list, cid, .. }) = checked(root, &mut c, &name, nocache, false)? else {
        bail!("{name}: no valid record found");
    };
    let latest = list.latest().map(|r| r.v.clone());
    if json {
        let rows: Vec<Value> = list
            .versions
            .iter()
            .map(|r| row(r, Some(&r.v) == latest.as_ref()))
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "name": name.to_string(), "list": cid.to_string(), "seq": list.seq, "versions": rows,
            }))?
        );
        return Ok(ExitCode::SUCCESS);
    }
    for r in &list.versions {
        let mut line = format!("{:<16} {} {}", r.v, r.cid, r.at.get(..19).unwrap_or(&r.at));
        if Some(&r.v) == latest.as_ref() {
            line.push_str(" latest");
        }
        if let Some(y) = &r.yanked {
            line.push_str(&format!(" yanked: {}", printable(y)));
        }
        println!("{line}");
    }
    Ok(ExitCode::SUCCESS)
}

/// `NAME@VERSION` (`latest` too): the version's CID, as `/ipfs/CID`.
pub fn resolve_version(
    root: &Path,
    name: &str,
    v: &str,
    nocache: bool,
    stale: bool,
) -> Result<String> {
    let (_, r) = release_of(root, name, v, nocache, stale)?;
    Ok(format!("/ipfs/{}", r.cid))
}

/// The name and its release `v` (`latest`: the newest not yanked), with a warning if it is
/// yanked. `latest` of a record past its validity needs `stale`: which version is newest
/// is then no longer known (a released version still is what it was).
pub fn release_of(
    root: &Path,
    name: &str,
    v: &str,
    nocache: bool,
    stale: bool,
) -> Result<(Name, Release)> {
    let name = name_arg(root, name)?;
    let mut c = Control::require(root)?;
    let Some(Head {
        list, freshness, ..
    }) = checked(root, &mut c, &name, nocache, false)?
    else {
        bail!("{name}: no valid record found");
    };
    if v == LATEST {
        match freshness.as_str() {
            "expired" if !stale => bail!(
                "{name}: its record's validity has ended and no newer one was found, so which version is latest is unknown; NAME@VERSION still resolves, and --stale takes the last known latest"
            ),
            "expired" | "old" => eprintln!(
                "cairn: warning: {name}: the network could not confirm its record ({freshness}); latest may not be the newest"
            ),
            _ => {}
        }
    }
    let r = list
        .get(v)
        .with_context(|| format!("{name} has no version {v}"))?
        .clone();
    if let Some(y) = &r.yanked {
        eprintln!("cairn: warning: {name}@{v} is yanked: {}", printable(y));
    }
    Ok((name, r))
}

/// The newest release of `name` if it was released after version `have` (never a step
/// back to an older one when `have` is yanked), and why `have` is yanked, if it is.
pub fn newest(root: &Path, name: &Name, have: &str) -> Result<(Option<Release>, Option<String>)> {
    let mut c = Control::require(root)?;
    let Some(Head { list, .. }) = checked(root, &mut c, name, true, false)? else {
        bail!("{name}: no valid record found");
    };
    let yanked = list.get(have).and_then(|r| r.yanked.clone());
    let at = |v: &str| list.versions.iter().position(|r| r.v == v);
    let newer = list
        .latest()
        .filter(|l| match (at(&l.v), at(have)) {
            (Some(l), Some(h)) => l > h,
            _ => true,
        })
        .cloned();
    Ok((newer, yanked))
}

/// A CID argument that may also be `NAME@VERSION`: the version's CID.
pub fn cid_arg(root: &Path, s: &str) -> Result<String> {
    match s.split_once('@') {
        Some((n, v)) => Ok(resolve_version(root, n, v, false, false)?
            .trim_start_matches("/ipfs/")
            .to_owned()),
        None => Ok(s.to_owned()),
    }
}
