//! `cairn name`: IPNS names. A record is signed here, with the user's key (which never
//! leaves this process), and handed to the running daemon, which checks it, keeps it and
//! puts it on the DHT; resolving asks the daemon, which asks the DHT.

use std::{collections::HashSet, io::Read, path::Path, process::ExitCode, time::Duration};

use anyhow::{bail, Context, Result};
use cairn_names::{
    keys::Keystore,
    record::{self, MAX_RECORD},
    time, Name,
};
use clap::Subcommand;
use serde_json::Value;

use crate::control::{Control, Request};

/// How deep `/ipns/` values are followed.
pub const MAX_DEPTH: usize = 32;

#[derive(Subcommand)]
pub enum NameCmd {
    /// Point your key's name at PATH (like `ipfs name publish`): sign a record one higher in
    /// sequence than the newest the network knows, and publish it through the daemon. Prints
    /// "Published to NAME: PATH"
    Publish {
        /// /ipfs/CID[/path], /ipns/NAME, or a bare CID
        path: String,
        /// The key to sign with (`cairn key list`)
        #[arg(long, short, default_value = "self")]
        key: String,
        /// How long the record is valid (s, m, h, d)
        #[arg(long, default_value = "48h", value_parser = parse_duration)]
        lifetime: Duration,
        /// How long resolvers may cache it (s, m, h, d)
        #[arg(long, default_value = "5m", value_parser = parse_duration)]
        ttl: Duration,
        /// Keep it in this node only; put it on no DHT peer
        #[arg(long)]
        offline: bool,
    },
    /// Print what NAME points to (k51…, 12D3…, Qm…, bafz…, /ipns/… or an alias), following
    /// /ipns/ values up to 32 deep; NAME@VERSION (or NAME@latest) a released version's CID.
    /// A record older than its TTL is used with a warning while the network cannot be asked,
    /// and one past its validity only with --stale (released versions always resolve)
    Resolve {
        name: String,
        /// Ask the network even if this node holds a record
        #[arg(long)]
        nocache: bool,
        /// Ask no peer: this node's record only
        #[arg(long)]
        offline: bool,
        /// Use a record whose validity has ended, if nothing newer is found
        #[arg(long)]
        stale: bool,
        /// Print the record's fields as JSON instead of its value (exit status 4: no valid
        /// record was found)
        #[arg(long)]
        json: bool,
    },
    /// Take NAME's newest release list as it is, though it does not extend the last one you
    /// saw (after a rewritten history was reported); as root or the daemon's user, for the
    /// node (and its mount) too
    Accept { name: String },
    /// Have the node keep NAME resolvable: its record is kept across restarts, served to
    /// peers and put on the DHT again every few hours (names.republish), so it outlives its
    /// owner's absence until its validity ends; its release list is kept too
    Follow {
        name: String,
        /// Also pin and fetch every version it released, and each new one as it comes (root
        /// or the daemon's user only)
        #[arg(long)]
        mirror: bool,
    },
    /// Stop following NAME (as who followed it, root or the daemon's user)
    Unfollow { name: String },
    /// List the names the node follows and the aliases you can use
    List,
    /// Sign your names' records again with a new validity (keys you published with) and hand
    /// them to the daemon; run it every day or so (a systemd user timer: docs/names.md) so
    /// your names stay resolvable while the daemon's user is not you
    Republish,
    /// Local names for names: `cairn name alias set hello k51…`, then `hello@1.0`
    #[command(subcommand)]
    Alias(AliasCmd),
    /// Print a record's fields: of NAME (resolved and verified), or of a record FILE
    /// (verified with --verify NAME, else only read)
    Inspect {
        /// NAME, or a file holding a record
        what: String,
        /// The name FILE's record must verify for
        #[arg(long, value_name = "NAME")]
        verify: Option<String>,
    },
}

#[derive(Subcommand)]
pub enum AliasCmd {
    /// Make ALIAS stand for NAME (yours, in ~/.config/cairn/aliases.toml; with --node, the
    /// node's, in R/names/aliases.toml, listed in R/store/name/: root or the daemon's user)
    Set {
        alias: String,
        name: String,
        #[arg(long)]
        node: bool,
    },
    /// Remove ALIAS
    Rm {
        alias: String,
        #[arg(long)]
        node: bool,
    },
    /// List your aliases and the node's
    List,
}

/// `30s`, `5m`, `48h`, `7d`, `100ms`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let (n, unit) = s
        .find(|c: char| !c.is_ascii_digit())
        .map_or((s, ""), |i| s.split_at(i));
    let n: u64 = n
        .parse()
        .map_err(|_| format!("{s:?}: a number, then s, m, h or d"))?;
    let secs = match unit {
        "ms" => return Ok(Duration::from_millis(n)),
        "s" | "" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => return Err(format!("{s:?}: a number, then ms, s, m, h or d")),
    };
    Ok(Duration::from_secs(secs))
}

fn now() -> time::Nanos {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128)
}

/// `/ipfs/CID/…`, `/ipns/NAME/…`, or a bare CID (checked) made `/ipfs/CID`.
fn value_of(path: &str) -> Result<String> {
    if let Some(rest) = path.strip_prefix("/ipfs/") {
        let cid = rest.split('/').next().unwrap_or("");
        cairn_store::parse_cid(cid)?;
        return Ok(path.to_owned());
    }
    if let Some(rest) = path.strip_prefix("/ipns/") {
        rest.split('/').next().unwrap_or("").parse::<Name>()?;
        return Ok(path.to_owned());
    }
    let cid = cairn_store::parse_cid(path)
        .with_context(|| format!("{path:?} is neither /ipfs/…, /ipns/… nor a CID"))?;
    Ok(format!("/ipfs/{cid}"))
}

/// What the daemon says it refused when it found no valid record: "" when nothing came, so
/// that "no record" and "only invalid records" read differently.
fn refusals(r: &Value) -> String {
    match r["refused"].as_u64() {
        Some(n) if n > 0 => format!(
            "; {n} record{} refused ({} forged, malformed or another key's; the last: {})",
            if n == 1 { "" } else { "s" },
            r["forged"].as_u64().unwrap_or(0),
            r["why"].as_str().unwrap_or("?")
        ),
        _ => String::new(),
    }
}

/// The daemon's best record of `name`, if any.
fn resolve_once(c: &mut Control, name: &Name, nocache: bool, offline: bool) -> Result<Value> {
    c.call(&Request::NameResolve {
        name: name.to_string(),
        nocache,
        offline,
    })
}

pub fn run(root: &Path, cmd: NameCmd) -> Result<ExitCode> {
    match cmd {
        NameCmd::Publish {
            path,
            key,
            lifetime,
            ttl,
            offline,
        } => {
            let value = value_of(&path)?;
            let ks = Keystore::open_default()?;
            let key = ks.get(&key).map_err(|e| match e {
                cairn_names::keys::KeyError::NotFound(k) if k == "self" => anyhow::anyhow!(
                    "no key named self: make one with `cairn key gen self`, or give --key"
                ),
                e => e.into(),
            })?;
            let name = key.ipns();
            let mut c = Control::require(root)?;
            // One past the newest the network knows or this user last published, so no
            // resolver prefers an old record.
            let current = resolve_once(&mut c, &name, false, offline)?;
            let last = ks.head(&key.name)?.map(|(s, _)| s);
            let sequence = current["sequence"].as_u64().max(last).map_or(0, |s| s + 1);
            let validity = now() + lifetime.as_nanos() as i128;
            let bytes = record::sign(
                &key.keypair,
                &value,
                sequence,
                validity,
                ttl.as_nanos() as u64,
            )?;
            c.call(&Request::NamePublish {
                name: name.to_string(),
                record: record::to_base64(&bytes),
                offline,
            })
            .with_context(|| format!("publishing {name}"))?;
            ks.set_head(&key.name, sequence, &value)?;
            println!("Published to {name}: {}", printable(&value));
        }
        NameCmd::Resolve {
            name,
            nocache,
            offline,
            stale,
            json,
        } => {
            if let Some((n, v)) = name.split_once('@') {
                let path = crate::release::resolve_version(root, n, v, nocache, stale)?;
                println!("{path}");
                return Ok(ExitCode::SUCCESS);
            }
            let mut c = Control::require(root)?;
            let name = crate::release::name_arg(root, &name)?;
            if json {
                // The record of this name itself, not of the names it points to.
                let r = resolve_once(&mut c, &name, nocache, offline)?;
                if r["value"].is_null() {
                    eprintln!("cairn: {name}: no valid record found{}", refusals(&r));
                    return Ok(ExitCode::from(4));
                }
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                let how = How {
                    nocache,
                    offline,
                    stale,
                };
                let value = resolve_path(&mut c, name, how, &mut HashSet::new())?;
                println!("{}", printable(&value));
            }
        }
        NameCmd::Accept { name } => return crate::release::accept(root, &name),
        NameCmd::Follow { name, mirror } => {
            let name = crate::release::name_arg(root, &name)?;
            let mut c = Control::require(root)?;
            let r = c.call(&Request::NameFollow {
                name: name.to_string(),
                mirror,
            })?;
            let what = match r["list"].as_str() {
                Some(l) => format!("its release list {l}"),
                None => printable(r["value"].as_str().unwrap_or_default()),
            };
            println!(
                "following {name}{}: {what}",
                if mirror { " (mirrored)" } else { "" }
            );
        }
        NameCmd::Unfollow { name } => {
            let name = crate::release::name_arg(root, &name)?;
            let mut c = Control::require(root)?;
            let r = c.call(&Request::NameUnfollow {
                name: name.to_string(),
            })?;
            if r.as_bool() == Some(true) {
                println!("no longer following {name}");
            } else {
                eprintln!("cairn: the node does not follow {name}");
            }
        }
        NameCmd::List => {
            let mut c = Control::require(root)?;
            let r = c.call(&Request::NameFollowed)?;
            for row in r.as_array().into_iter().flatten() {
                println!(
                    "follow {} (user {}{})",
                    row["name"].as_str().unwrap_or_default(),
                    row["uid"],
                    if row["mirror"] == true {
                        ", mirrored"
                    } else {
                        ""
                    }
                );
            }
            list_aliases(root)?;
        }
        NameCmd::Republish => return republish(root),
        NameCmd::Alias(a) => return alias(root, a),
        NameCmd::Inspect { what, verify } => {
            let path = Path::new(&what);
            if path.is_file() {
                let mut bytes = Vec::new();
                std::fs::File::open(path)?
                    .take(MAX_RECORD as u64 + 1)
                    .read_to_end(&mut bytes)?;
                print_record(&bytes, verify.as_deref())?;
            } else {
                let name: Name = what.parse()?;
                let mut c = Control::require(root)?;
                let r = resolve_once(&mut c, &name, false, false)?;
                let Some(b64) = r["record"].as_str() else {
                    bail!("{name}: no valid record found");
                };
                print_record(&record::from_base64(b64)?, Some(&what))?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// How `name resolve` asks.
#[derive(Clone, Copy)]
struct How {
    nocache: bool,
    offline: bool,
    stale: bool,
}

/// The value `name` resolves to, after every `/ipns/` step.
fn resolve_path(
    c: &mut Control,
    mut name: Name,
    how: How,
    seen: &mut HashSet<Name>,
) -> Result<String> {
    let How {
        nocache, offline, ..
    } = how;
    loop {
        if !seen.insert(name) {
            bail!("{name} points back to itself through /ipns/ values (a loop)");
        }
        if seen.len() > MAX_DEPTH {
            bail!("more than {MAX_DEPTH} /ipns/ names in a row");
        }
        let r = resolve_once(c, &name, nocache, offline)?;
        let Some(value) = r["value"].as_str() else {
            bail!(
                "{name}: no valid record found{}{}",
                if offline { " in this node" } else { "" },
                refusals(&r)
            );
        };
        match r["freshness"].as_str() {
            Some("expired") if !how.stale => bail!(
                "{name}: the record held here ({}) is past its validity ({}) and no newer one was found; --stale uses it anyway",
                printable(value),
                r["validity"].as_str().unwrap_or_default()
            ),
            Some(f @ ("old" | "expired")) => eprintln!(
                "cairn: warning: {name}: the network could not confirm the record held here ({f}: past its TTL); it may not be the newest"
            ),
            _ => {}
        }
        match value.strip_prefix("/ipns/") {
            Some(rest) if !rest.contains('/') => name = rest.parse()?,
            Some(rest) => {
                let n = rest.split('/').next().unwrap_or("");
                let inner = resolve_path(c, n.parse()?, how, seen)?;
                return Ok(format!("{inner}{}", &rest[n.len()..]));
            }
            None => return Ok(value.to_owned()),
        }
    }
}

/// `cairn name republish`: every key of this user with a published head is signed again
/// (same sequence and value, a new validity) and handed to the daemon.
fn republish(root: &Path) -> Result<ExitCode> {
    let ks = Keystore::open_default()?;
    let mut c = Control::require(root)?;
    let (mut ok, mut failed) = (0, 0);
    for r in ks.resigned(now()) {
        let (key_name, name, value) = (&r.key, r.name, &r.value);
        match c.call(&Request::NamePublish {
            name: name.to_string(),
            record: record::to_base64(&r.record),
            offline: false,
        }) {
            Ok(_) => {
                ok += 1;
                println!("republished {key_name} ({name}): {}", printable(value));
            }
            Err(e) => {
                failed += 1;
                eprintln!("cairn: {key_name} ({name}): {e:#}");
            }
        }
    }
    if ok + failed == 0 {
        eprintln!("cairn: none of your keys has published a name yet");
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The aliases file `alias` works on.
fn aliases_path(root: &Path, node: bool) -> Result<std::path::PathBuf> {
    if node {
        Ok(root.join("names").join("aliases.toml"))
    } else {
        crate::release::user_aliases()
    }
}

fn alias(root: &Path, cmd: AliasCmd) -> Result<ExitCode> {
    use crate::naming::{check_alias, read_aliases, write_aliases};
    match cmd {
        AliasCmd::Set { alias, name, node } => {
            check_alias(&alias).map_err(anyhow::Error::msg)?;
            let name = crate::release::name_arg(root, &name)?;
            let path = aliases_path(root, node)?;
            let mut a = read_aliases(&path).map_err(anyhow::Error::msg)?;
            a.insert(alias.clone(), name);
            write_aliases(&path, &a).with_context(|| path.display().to_string())?;
            println!("{alias} -> {name}");
        }
        AliasCmd::Rm { alias, node } => {
            let path = aliases_path(root, node)?;
            let mut a = read_aliases(&path).map_err(anyhow::Error::msg)?;
            if a.remove(&alias).is_none() {
                bail!("no alias {alias:?} in {}", path.display());
            }
            write_aliases(&path, &a).with_context(|| path.display().to_string())?;
        }
        AliasCmd::List => list_aliases(root)?,
    }
    Ok(ExitCode::SUCCESS)
}

fn list_aliases(root: &Path) -> Result<()> {
    for (whose, node) in [("yours", false), ("node", true)] {
        let path = aliases_path(root, node)?;
        match crate::naming::read_aliases(&path) {
            Ok(a) => {
                for (alias, name) in a {
                    println!("alias {alias} -> {name} ({whose})");
                }
            }
            Err(e) => eprintln!("cairn: {e}"),
        }
    }
    Ok(())
}

/// `s` with control characters escaped: values and notes come from strangers, and must not
/// drive the terminal they are printed on.
pub fn printable(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            if c.is_control() {
                c.escape_default().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect()
}

fn print_record(bytes: &[u8], name: Option<&str>) -> Result<()> {
    let u = record::inspect(bytes)?;
    println!("Value:         {}", printable(&u.value));
    println!("Validity:      {}", printable(&u.validity));
    println!("Sequence:      {}", u.sequence);
    println!("TTL:           {:?}", Duration::from_nanos(u.ttl));
    println!(
        "Signatures:    {}",
        match (u.signature_v1, u.signature_v2) {
            (true, true) => "V1 and V2",
            (false, true) => "V2",
            (true, false) => "V1 only (refused by V2 rules)",
            (false, false) => "none",
        }
    );
    if let Some(k) = u.key_name {
        println!("Key of:        {k}");
    }
    match name {
        Some(n) => {
            let n: Name = n.parse()?;
            match record::verify(&n, bytes, now()) {
                Ok(_) => println!("Verified for:  {n}"),
                Err(e) => {
                    println!("Verified for:  {n}: NO, {e}");
                    bail!("the record does not verify for {n}: {e}");
                }
            }
        }
        None => println!("Verified:      not checked (give --verify NAME)"),
    }
    Ok(())
}
