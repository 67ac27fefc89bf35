//! git itself, as the helper runs it in the repository git started it in (`GIT_DIR`): which
//! objects are here, packs made with `pack-objects` and checked in with `index-pack`.

use std::{
    collections::BTreeSet,
    ffi::OsStr,
    io::{BufRead, BufReader, Read, Write},
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{bail, Context, Result};

use crate::{bundle::hex, doc::Format};

/// The address space `index-pack` may use: a delta chain that would expand past it (a
/// "delta bomb") ends it instead of the machine.
pub const INDEX_PACK_MEMORY: u64 = 8 << 30;

fn git<S: AsRef<OsStr>>(args: &[S]) -> Command {
    let mut c = Command::new("git");
    c.args(args).stdin(Stdio::null()).stderr(Stdio::inherit());
    c
}

/// Revisions for `git rev-list --stdin` and `pack-objects --revs`: each of `want`, then each
/// of `not` as `^id`, a line each.
fn revs(want: &[String], not: &[String]) -> String {
    let mut s = String::new();
    for w in want {
        s.push_str(w);
        s.push('\n');
    }
    for n in not {
        s.push('^');
        s.push_str(n);
        s.push('\n');
    }
    s
}

/// Runs `git ARGS` and returns its standard output.
fn output<S: AsRef<OsStr>>(args: &[S]) -> Result<Vec<u8>> {
    let out = git(args).stdout(Stdio::piped()).output()?;
    if !out.status.success() {
        let a: Vec<_> = args.iter().map(|a| a.as_ref().to_string_lossy()).collect();
        bail!("git {} failed", a.join(" "));
    }
    Ok(out.stdout)
}

/// The repository's object format.
pub fn format() -> Result<Format> {
    match output(&["rev-parse", "--show-object-format"])?.trim_ascii() {
        b"sha1" => Ok(Format::Sha1),
        b"sha256" => Ok(Format::Sha256),
        f => bail!("unknown object format {}", String::from_utf8_lossy(f)),
    }
}

/// The id `rev` names here.
pub fn rev_parse(rev: &str) -> Result<String> {
    let out = output(&[
        "rev-parse",
        "--verify",
        "--quiet",
        &format!("{rev}^{{object}}"),
    ])
    .with_context(|| format!("{rev:?} names no object here"))?;
    Ok(String::from_utf8(out)?.trim().to_owned())
}

/// The ref `HEAD` points to, if it is symbolic.
pub fn symbolic_head() -> Option<String> {
    let out = git(&["symbolic-ref", "--quiet", "HEAD"])
        .stdout(Stdio::piped())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8(out.stdout).ok())
        .flatten()
        .map(|s| s.trim().to_owned())
}

/// Those of `ids` this repository does not have.
pub fn missing<'a>(ids: impl IntoIterator<Item = &'a [u8]>) -> Result<BTreeSet<Vec<u8>>> {
    let ids: Vec<&[u8]> = ids.into_iter().collect();
    if ids.is_empty() {
        return Ok(BTreeSet::new());
    }
    let mut child = git(&["cat-file", "--batch-check=%(objectname)"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let mut stdin = child.stdin.take().expect("piped");
    let list: Vec<u8> = ids
        .iter()
        .flat_map(|i| format!("{}\n", hex(i)).into_bytes())
        .collect();
    let writer = std::thread::spawn(move || stdin.write_all(&list));
    let mut gone = BTreeSet::new();
    for (line, id) in BufReader::new(child.stdout.take().expect("piped"))
        .lines()
        .zip(&ids)
    {
        if line?.ends_with(" missing") {
            gone.insert(id.to_vec());
        }
    }
    writer.join().expect("writer")?;
    if !child.wait()?.success() {
        bail!("git cat-file --batch-check failed");
    }
    Ok(gone)
}

/// The commits at the boundary of `want --not have`: what a pack of it needs and lacks.
pub fn boundary(want: &[String], have: &[String]) -> Result<Vec<String>> {
    // On standard input: tens of thousands of refs would pass the argument list's limit.
    let input = revs(want, have);
    let out = with_input(&["rev-list", "--boundary", "--stdin"], input)?
        .context("git rev-list --boundary failed")?;
    Ok(String::from_utf8(out)?
        .lines()
        .filter_map(|l| l.strip_prefix('-'))
        .map(str::to_owned)
        .collect())
}

/// Writes a thin pack of `want --not have` to `out` as `git bundle create` makes its packs;
/// the number of objects in it.
pub fn pack(want: &[String], have: &[String], out: &mut impl Write) -> Result<u32> {
    let mut child = git(&[
        "pack-objects",
        "--stdout",
        "--thin",
        "--delta-base-offset",
        "--revs",
        "-q",
    ])
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .spawn()?;
    let mut stdin = child.stdin.take().expect("piped");
    let revs = revs(want, have);
    let writer = std::thread::spawn(move || stdin.write_all(revs.as_bytes()));
    let mut stdout = child.stdout.take().expect("piped");
    let mut head = [0u8; 12];
    stdout
        .read_exact(&mut head)
        .context("git pack-objects wrote no pack")?;
    out.write_all(&head)?;
    std::io::copy(&mut stdout, out)?;
    writer.join().expect("writer")?;
    if !child.wait()?.success() {
        bail!("git pack-objects failed");
    }
    if &head[..4] != b"PACK" {
        bail!("git pack-objects wrote no pack");
    }
    Ok(u32::from_be_bytes(head[8..12].try_into().expect("4 bytes")))
}

/// Feeds a pack to `git index-pack --stdin --fix-thin --strict --keep`, within `max` bytes
/// and [`INDEX_PACK_MEMORY`]; the `.keep` file that holds the pack until refs point into it.
pub fn index_pack(pack: &mut impl Read, max: u64) -> Result<PathBuf> {
    index_pack_from(max, |stdin| {
        std::io::copy(pack, stdin)?;
        Ok(())
    })
}

/// As [`index_pack`], the pack written by `feed` (with `max` of 0: no size bound).
pub fn index_pack_from(
    max: u64,
    feed: impl FnOnce(&mut dyn Write) -> Result<()>,
) -> Result<PathBuf> {
    let mut args = vec![
        "index-pack".to_owned(),
        "--stdin".into(),
        "--fix-thin".into(),
        "--strict".into(),
        "--keep=cairn".into(),
    ];
    if max > 0 {
        args.push(format!("--max-input-size={max}"));
    }
    let mut c = git(&args);
    c.stdin(Stdio::piped()).stdout(Stdio::piped());
    // SAFETY: setrlimit is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        c.pre_exec(|| {
            let lim = libc::rlimit {
                rlim_cur: INDEX_PACK_MEMORY,
                rlim_max: INDEX_PACK_MEMORY,
            };
            if libc::setrlimit(libc::RLIMIT_AS, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = c.spawn()?;
    let mut stdin = std::io::BufWriter::new(child.stdin.take().expect("piped"));
    let fed = feed(&mut stdin).and_then(|()| Ok(stdin.flush()?));
    drop(stdin);
    let mut out = String::new();
    child
        .stdout
        .take()
        .expect("piped")
        .take(4096)
        .read_to_string(&mut out)?;
    let status = child.wait()?;
    fed.context("feeding git index-pack")?;
    if !status.success() {
        bail!("git index-pack refused the pack");
    }
    let hash = out
        .trim()
        .strip_prefix("keep\t")
        .context("git index-pack did not keep the pack")?;
    // Where index-pack wrote it: the common object directory, also from a linked worktree
    // or with GIT_OBJECT_DIRECTORY set.
    let out = output(&[
        "rev-parse".to_owned(),
        "--git-path".into(),
        format!("objects/pack/pack-{hash}.keep"),
    ])?;
    let path = PathBuf::from(String::from_utf8(out)?.trim());
    Ok(std::env::current_dir()?.join(path))
}

/// The largest tree, commit or tag taken from a peer (git itself has no bound; blobs may be
/// any size).
pub const MAX_STRUCTURE: u64 = 16 << 20;

/// Walks every object `tips` reach and `have` do not, as git's own connectivity check does:
/// fails on an object missing, a tree nested deeper than `core.maxTreeDepth` (git's
/// traversal refuses those, 4096 by default), or a tree, commit or tag over
/// [`MAX_STRUCTURE`].
pub fn check_new(tips: &[String], have: &[String]) -> Result<()> {
    // git's own default depth, whatever the user's configuration says.
    let mut list = git(&[
        "-c",
        "core.maxTreeDepth=4096",
        "rev-list",
        "--objects",
        "--stdin",
    ])
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .spawn()?;
    let mut stdin = list.stdin.take().expect("piped");
    let revs = revs(tips, have);
    let writer = std::thread::spawn(move || stdin.write_all(revs.as_bytes()));
    let mut check = git(&[
        "cat-file",
        "--batch-check=%(objectname) %(objecttype) %(objectsize) %(rest)",
    ])
    .stdin(Stdio::from(list.stdout.take().expect("piped")))
    .stdout(Stdio::piped())
    .spawn()?;
    let mut too_big = None;
    // Paths (%(rest)) are bytes, not always UTF-8.
    for line in BufReader::new(check.stdout.take().expect("piped")).split(b'\n') {
        let line = line?;
        let line = String::from_utf8_lossy(&line);
        let mut f = line.split(' ');
        let (id, kind, size) = (f.next(), f.next(), f.next());
        let size: u64 = size.and_then(|s| s.parse().ok()).unwrap_or(0);
        if kind != Some("blob") && size > MAX_STRUCTURE && too_big.is_none() {
            too_big = Some(format!(
                "{} {} of {size} bytes",
                kind.unwrap_or("?"),
                id.unwrap_or("?")
            ));
        }
    }
    let listed = list.wait()?;
    let checked = check.wait()?;
    writer.join().expect("writer")?;
    if !listed.success() {
        bail!("the objects fetched are not whole, or a tree is nested too deep (git rev-list refused them)");
    }
    if !checked.success() {
        bail!("git cat-file --batch-check failed");
    }
    if let Some(what) = too_big {
        bail!("a {what}: over the {MAX_STRUCTURE} a tree, commit or tag may have");
    }
    Ok(())
}

/// Runs `git ARGS` with `input` on its standard input; its output, if it succeeded.
fn with_input(args: &[&str], input: String) -> Result<Option<Vec<u8>>> {
    let mut child = git(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let mut stdin = child.stdin.take().expect("piped");
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child.wait_with_output()?;
    let _ = writer.join().expect("writer");
    Ok(out.status.success().then_some(out.stdout))
}

/// Whether every one of the commits `ids` is reachable from `from` (ids that are no
/// commits, or missing, are not). One walk, ids on standard input.
pub fn reaches(from: &[String], ids: &[String]) -> Result<bool> {
    if ids.is_empty() {
        return Ok(true);
    }
    if !all_commits(ids)? {
        return Ok(false);
    }
    let input = revs(ids, from);
    Ok(with_input(&["rev-list", "--stdin"], input)?.is_some_and(|out| out.is_empty()))
}

/// Whether every one of `ids` is a commit here.
pub fn all_commits(ids: &[String]) -> Result<bool> {
    let input = revs(ids, &[]);
    let Some(out) = with_input(&["cat-file", "--batch-check=%(objecttype)"], input)? else {
        return Ok(false);
    };
    let kinds: Vec<&[u8]> = out
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    Ok(kinds.len() == ids.len() && kinds.iter().all(|k| *k == b"commit"))
}

/// The ids a pack's index lists (`git show-index`).
pub fn pack_ids(idx: &Path) -> Result<std::collections::HashSet<String>> {
    let out = git(&["show-index"])
        .stdin(std::fs::File::open(idx)?)
        .stdout(Stdio::piped())
        .output()?;
    if !out.status.success() {
        bail!("git show-index failed");
    }
    Ok(String::from_utf8(out.stdout)?
        .lines()
        .filter_map(|l| l.split(' ').nth(1).map(str::to_owned))
        .collect())
}

/// Whether every object `tips` reach past `prereqs` is in `pack`.
pub fn objects_within(
    tips: &[String],
    prereqs: &[String],
    pack: &std::collections::HashSet<String>,
) -> Result<bool> {
    let input = revs(tips, prereqs);
    let Some(out) = with_input(&["rev-list", "--objects", "--stdin"], input)? else {
        return Ok(false);
    };
    Ok(out
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .all(|l| {
            let id = l.split(|b| *b == b' ').next().unwrap_or_default();
            std::str::from_utf8(id).is_ok_and(|id| pack.contains(id))
        }))
}

/// The ids local refs point to.
pub fn ref_ids() -> Result<Vec<String>> {
    let out = output(&["for-each-ref", "--format=%(objectname)"])?;
    let mut ids: Vec<String> = String::from_utf8(out)?.lines().map(str::to_owned).collect();
    ids.sort();
    ids.dedup();
    Ok(ids)
}

/// Deletes the pack a `.keep` file holds, with its index and the keep itself.
pub fn remove_pack(keep: &Path) {
    for ext in ["pack", "idx", "rev", "keep"] {
        let _ = std::fs::remove_file(keep.with_extension(ext));
    }
}

/// The repository's git directory.
pub fn git_dir() -> Result<PathBuf> {
    let out = output(&["rev-parse", "--absolute-git-dir"])?;
    Ok(Path::new(String::from_utf8(out)?.trim()).to_owned())
}
