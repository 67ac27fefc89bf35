//! `cairn env`: install apps into your profile, switch generations, roll back.

use std::{
    collections::HashSet,
    path::{Path, PathBuf},
    process::ExitCode,
    time::SystemTime,
};

use anyhow::{bail, Context, Result};
use cairn_env::{Installed, Manifest, Profile};
use cairn_store::{parse_cid, Cid, Store};
use clap::{Args, Subcommand};

use crate::{daemon::NetArgs, progress::Bar};

#[derive(Args)]
pub struct EnvArgs {
    #[command(subcommand)]
    cmd: Option<EnvCmd>,
    /// Without a command: print the line that puts your profile on PATH, for this shell
    #[arg(long, value_name = "sh|fish", default_value = "sh")]
    shell: String,
}

#[derive(Subcommand)]
enum EnvCmd {
    /// Install apps (CIDs from `cairn add --app`, or released versions: NAME@VERSION, NAME
    /// for the latest) in a new generation and switch to it; an app installed under the same
    /// name is replaced (an upgrade). A CID that is not here whole is fetched first (through
    /// the daemon when one runs)
    Install {
        /// App CIDs, as `cairn add --app` printed them, or NAME[@VERSION] (k51…, or one of
        /// your keys), which needs a running daemon
        #[arg(required = true)]
        cids: Vec<String>,
        /// Install under this name [default: the name recorded by `add --app --name`]
        #[arg(long)]
        name: Option<String>,
        /// Which app wins a path that two provide: the lower number
        #[arg(long, default_value_t = 5, allow_negative_numbers = true)]
        priority: i32,
    },
    /// Install the newest release of every app installed from a release list (NAME@VERSION),
    /// in a new generation; say which installed versions are yanked. Needs a running daemon
    Upgrade,
    /// Remove apps by name, in a new generation
    Remove {
        /// Names, as `cairn env list` shows them
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// The generations, the current one marked, what each contains and when it was made
    List {
        /// Print JSON instead of text, for scripts
        #[arg(long)]
        json: bool,
    },
    /// Make generation N current
    Switch { n: u32 },
    /// Go back to the generation before the current one
    Rollback,
    /// What changed from generation N to generation M
    Diff { n: u32, m: u32 },
    /// Delete all but the newest KEEP generations (never the current one); their blocks go
    /// at the next `cairn gc`
    Gc {
        #[arg(long)]
        keep: usize,
    },
}

pub fn run(root: &Path, args: EnvArgs) -> Result<ExitCode> {
    let Some(cmd) = args.cmd else {
        let bin = "$HOME/.cairn-profile/bin";
        match args.shell.as_str() {
            "sh" | "bash" | "zsh" => println!("export PATH=\"{bin}:$PATH\""),
            "fish" => println!("set -gx PATH {bin} $PATH"),
            other => bail!("unknown shell {other:?} (sh or fish)"),
        }
        return Ok(ExitCode::SUCCESS);
    };
    let store = Store::init(root)?;
    let user = cairn_gc::pins::current_user();
    let profile = Profile::open(store.layout(), &user)?;
    match cmd {
        EnvCmd::Install {
            cids,
            name,
            priority,
        } => {
            if name.is_some() && cids.len() > 1 {
                bail!("--name names one app; install several CIDs without it");
            }
            let mut manifest = current_manifest(&store, &profile)?;
            for c in &cids {
                // A released version (NAME@VERSION, or NAME for the latest) or a CID.
                let (c, release, version) = match c.split_once('@') {
                    Some((n, v)) => {
                        let (n, r) = crate::release::release_of(root, n, v, false, false)?;
                        (r.cid.to_string(), Some(n.to_string()), Some(r.v))
                    }
                    None if parse_cid(c).is_err() => {
                        let (n, r) = crate::release::release_of(root, c, "latest", false, false)?;
                        (r.cid.to_string(), Some(n.to_string()), Some(r.v))
                    }
                    None => (c.clone(), None, None),
                };
                let c = &c;
                let cid = parse_cid(c)?;
                ensure_whole(root, &store, &cid)?;
                let node = store
                    .get(&cid)?
                    .with_context(|| format!("block {cid} is not in the store"))?;
                let app = cairn_app::AppNode::decode(&node).with_context(|| {
                    format!("{c} is not an app (add it with `cairn add --app`)")
                })?;
                let name = name
                    .clone()
                    .or(app.name)
                    .with_context(|| format!("{c} has no name: give it one with --name"))?;
                let entry = Installed {
                    name: name.clone(),
                    cid: cairn_store::block_name(&cid),
                    priority,
                    release,
                    version,
                };
                match manifest.apps.iter_mut().find(|a| a.name == name) {
                    Some(old) if old.cid == entry.cid => {
                        eprintln!("cairn: {name} is installed already ({})", old.cid);
                        *old = entry;
                    }
                    Some(old) => {
                        eprintln!("cairn: upgrading {name}: {} -> {}", old.cid, entry.cid);
                        *old = entry;
                    }
                    None => {
                        eprintln!("cairn: installing {name} ({})", entry.cid);
                        manifest.apps.push(entry);
                    }
                }
            }
            commit(root, &store, &profile, &manifest)?;
        }
        EnvCmd::Upgrade => {
            let mut manifest = current_manifest(&store, &profile)?;
            let mut changed = false;
            for app in manifest.apps.iter_mut() {
                let (Some(rel), Some(have)) = (app.release.clone(), app.version.clone()) else {
                    continue;
                };
                let name: cairn_names::Name = rel.parse()?;
                let (latest, yanked) = crate::release::newest(root, &name, &have)?;
                if let Some(why) = yanked {
                    eprintln!(
                        "cairn: warning: {} {have} is yanked: {} (install another version with cairn env install {rel}@VERSION)",
                        app.name,
                        crate::name::printable(&why)
                    );
                }
                let Some(latest) = latest else { continue };
                if latest.v == have {
                    continue;
                }
                ensure_whole(root, &store, &latest.cid)?;
                eprintln!("cairn: upgrading {} {have} -> {}", app.name, latest.v);
                app.cid = cairn_store::block_name(&latest.cid);
                app.version = Some(latest.v);
                changed = true;
            }
            if changed {
                commit(root, &store, &profile, &manifest)?;
            } else {
                eprintln!("cairn: everything installed from a release list is at its newest");
            }
        }
        EnvCmd::Remove { names } => {
            let mut manifest = current_manifest(&store, &profile)?;
            for n in &names {
                let before = manifest.apps.len();
                manifest.apps.retain(|a| &a.name != n);
                if manifest.apps.len() == before {
                    bail!("{n} is not installed (cairn env list)");
                }
                eprintln!("cairn: removing {n}");
            }
            commit(root, &store, &profile, &manifest)?;
        }
        EnvCmd::List { json } => list(&store, &profile, json)?,
        EnvCmd::Switch { n } => {
            profile.switch(n)?;
            ensure_home_link(&profile);
            eprintln!("cairn: switched to generation {n}");
        }
        EnvCmd::Rollback => {
            let cur = profile
                .current()?
                .context("no generation is current: nothing to roll back")?;
            let prev = profile
                .generations()?
                .iter()
                .map(|g| g.n)
                .filter(|n| *n < cur)
                .max()
                .with_context(|| format!("generation {cur} is the oldest there is"))?;
            profile.switch(prev)?;
            eprintln!("cairn: rolled back from generation {cur} to {prev}");
        }
        EnvCmd::Diff { n, m } => {
            let gens = profile.generations()?;
            let get = |k: u32| -> Result<Manifest> {
                let g = gens
                    .iter()
                    .find(|g| g.n == k)
                    .with_context(|| format!("there is no generation {k}"))?;
                Ok(Manifest::read(&store, &g.cid)?)
            };
            let (a, b) = (get(n)?, get(m)?);
            let mut names: Vec<&str> = a
                .apps
                .iter()
                .chain(&b.apps)
                .map(|x| x.name.as_str())
                .collect::<HashSet<_>>()
                .into_iter()
                .collect();
            names.sort_unstable();
            for name in names {
                match (a.get(name), b.get(name)) {
                    (None, Some(y)) => println!("+ {name} {}", y.cid),
                    (Some(x), None) => println!("- {name} {}", x.cid),
                    (Some(x), Some(y)) if x.cid != y.cid => {
                        println!("~ {name} {} -> {}", x.cid, y.cid)
                    }
                    _ => {}
                }
            }
        }
        EnvCmd::Gc { keep } => {
            let cur = profile.current()?;
            let gens = profile.generations()?;
            let cut = gens.len().saturating_sub(keep);
            let mut dropped = 0;
            for g in &gens[..cut] {
                if Some(g.n) == cur {
                    continue;
                }
                profile.remove(g.n)?;
                dropped += 1;
            }
            eprintln!(
                "cairn: dropped {dropped} generations; `cairn gc` deletes what only they kept"
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The manifest of the current generation (empty if there is none).
fn current_manifest(store: &Store, profile: &Profile) -> Result<Manifest> {
    let Some(n) = profile.current()? else {
        return Ok(Manifest::default());
    };
    let g = profile
        .generations()?
        .into_iter()
        .find(|g| g.n == n)
        .with_context(|| format!("the current generation {n} is missing"))?;
    Ok(Manifest::read(store, &g.cid)?)
}

/// Builds the environment of `manifest`, records it as a new generation and switches to it.
fn commit(root: &Path, store: &Store, profile: &Profile, manifest: &Manifest) -> Result<()> {
    let root_abs = std::fs::canonicalize(root).unwrap_or_else(|_| root.to_owned());
    let cid = cairn_env::build(store, store, &root_abs, &manifest.apps)?;
    store.flush().context("syncing the store")?;
    let n = profile.add(&cid)?;
    profile.switch(n)?;
    store.release();
    ensure_home_link(profile);
    let names: Vec<&str> = manifest.apps.iter().map(|a| a.name.as_str()).collect();
    eprintln!(
        "cairn: generation {n} is current: {} ({})",
        if names.is_empty() {
            "nothing installed".to_owned()
        } else {
            names.join(", ")
        },
        cairn_store::block_name(&cid)
    );
    Ok(())
}

/// `~/.cairn-profile -> current`, made if missing; left alone (with a word) if it points
/// elsewhere.
fn ensure_home_link(profile: &Profile) {
    let Some(home) = std::env::var_os("HOME") else {
        return;
    };
    let link = PathBuf::from(home).join(".cairn-profile");
    let want = profile.current_link();
    match std::fs::read_link(&link) {
        Ok(t) if t == want => {}
        Ok(t) => eprintln!(
            "cairn: {} points at {}, not {}: left as it is",
            link.display(),
            t.display(),
            want.display()
        ),
        Err(_) if link.symlink_metadata().is_ok() => {
            eprintln!(
                "cairn: {} exists and is not a symlink: left as it is",
                link.display()
            )
        }
        Err(_) => {
            if let Err(e) = std::os::unix::fs::symlink(&want, &link) {
                eprintln!("cairn: making {}: {e}", link.display());
            } else {
                eprintln!(
                    "cairn: {} -> {}; put it on PATH with: eval \"$(cairn env)\"",
                    link.display(),
                    want.display()
                );
            }
        }
    }
}

/// Makes sure every block of `cid`'s DAG is here and verified, fetching what is missing.
fn ensure_whole(root: &Path, store: &Store, cid: &Cid) -> Result<()> {
    if missing(store, cid)? == 0 {
        return Ok(());
    }
    eprintln!("cairn: {cid} is not all here: fetching it");
    let how = crate::swarm::FetchArgs {
        pin: false,
        prog: "env",
        window: 32,
        json: false,
        max_bytes: None,
    };
    crate::swarm::fetch(root, &cid.to_string(), &how, &NetArgs::default())?;
    let left = missing(store, cid)?;
    if left > 0 {
        bail!("{left} blocks of {cid} are still missing: not switching");
    }
    Ok(())
}

/// How many blocks of the DAG below `cid` are missing; every present one is read and its
/// hash checked.
fn missing(store: &Store, cid: &Cid) -> Result<u64> {
    let bar = Bar::items("verify", 0);
    let mut seen = HashSet::new();
    let mut stack = vec![*cid];
    let mut missing = 0;
    let mut checked = 0;
    while let Some(c) = stack.pop() {
        if !seen.insert(cairn_store::canonical(&c)) {
            continue;
        }
        match store.get(&c)? {
            None => missing += 1,
            Some(bytes) => {
                let links = cairn_store::codec::links_of(&c, &bytes)
                    .map_err(|e| anyhow::anyhow!("{c}: {e}"))?;
                stack.extend(links);
            }
        }
        checked += 1;
        bar.set_position(checked);
    }
    bar.finish();
    Ok(missing)
}

fn list(store: &Store, profile: &Profile, json: bool) -> Result<()> {
    let cur = profile.current()?;
    let mut rows = Vec::new();
    for g in profile.generations()? {
        let manifest = Manifest::read(store, &g.cid).ok();
        let made = g
            .made
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        rows.push((g, manifest, made));
    }
    if json {
        let v: Vec<_> = rows
            .iter()
            .map(|(g, m, made)| {
                serde_json::json!({
                    "generation": g.n,
                    "current": Some(g.n) == cur,
                    "cid": cairn_store::block_name(&g.cid),
                    "made": made,
                    "apps": m.as_ref().map(|m| &m.apps),
                })
            })
            .collect();
        println!("{}", serde_json::Value::Array(v));
        return Ok(());
    }
    for (g, m, made) in rows {
        let mark = if Some(g.n) == cur { "*" } else { " " };
        println!(
            "{mark} {:>4}  {}  {}",
            g.n,
            humantime(made),
            cairn_store::block_name(&g.cid)
        );
        match m {
            Some(m) if m.apps.is_empty() => println!("        (nothing installed)"),
            Some(m) => {
                for a in &m.apps {
                    match &a.version {
                        Some(v) => println!("        {} {} ({v})", a.name, a.cid),
                        None => println!("        {} {}", a.name, a.cid),
                    }
                }
            }
            None => println!("        (its blocks are not all here)"),
        }
    }
    Ok(())
}

/// `YYYY-MM-DD HH:MM:SS` UTC.
fn humantime(secs: u64) -> String {
    let days = secs / 86400;
    let (h, m, s) = ((secs / 3600) % 24, (secs / 60) % 60, secs % 60);
    // Civil from days (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let mo = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(mo <= 2);
    format!("{y:04}-{mo:02}-{d:02} {h:02}:{m:02}:{s:02}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn humantime_is_utc_civil_time() {
        assert_eq!(super::humantime(0), "1970-01-01 00:00:00");
        assert_eq!(super::humantime(1_796_000_000), "2026-11-30 00:53:20");
    }
}
