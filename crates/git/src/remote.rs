//! The remote helper's conversation with git (gitremote-helpers(7)): `capabilities`,
//! `option`, `list`, a batch of `fetch`es, a batch of `push`es.
//!
//! A repository is a document listing refs and the bundles that hold their objects
//! (`doc.rs`). Fetching checks every bundle's header against the document before its pack
//! goes to `git index-pack --strict`; pushing makes one bundle of what the remote lacks, a
//! new document, and publishes it in the owner's profile, only if the profile is still the one
//! listed (compare and swap on the record's sequence).

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    io::{BufRead, BufReader, Read, Write},
    path::{Path, PathBuf},
};

use anyhow::{bail, ensure, Context, Result};
use cid::Cid;

use crate::{
    bundle::{hex, unhex, Header},
    cairn::{Cairn, Published},
    doc::{check_ref, Bundle, Document, Format},
    git,
    url::Url,
};

/// The program pins belong to: one pin per remote, on the document last fetched or pushed.
const PROG: &str = "git";
/// The pin of a fetch in flight: moved to [`PROG`] when the fetch went through, dropped
/// when it was refused (so a refused document keeps nothing pinned).
const FETCHING: &str = "git-fetch";

/// The most tips a bundle may have to be shared by forks (each is walked at every push).
const MAX_SHARED_TIPS: usize = 256;

/// What `list` found.
#[derive(Clone)]
struct Listed {
    doc: Option<(Cid, Document)>,
    /// The sequence of the profile's record (key URLs), None if it has none.
    sequence: Option<u64>,
}

/// One line of a push batch.
struct Push {
    force: bool,
    /// Empty: delete `dst`.
    src: String,
    dst: String,
}

pub struct Helper {
    url: Url,
    cairn: Cairn,
    /// `$GIT_DIR/cairn/<url>/`: the newest sequence seen, the document pinned (None: git
    /// runs the helper outside a repository, as for `git ls-remote`).
    state: Option<PathBuf>,
    object_format: bool,
    dry_run: bool,
    listed: Option<Listed>,
    /// Keeps of packs fetched but not named to git: removed when git hangs up, after it
    /// has moved its refs (git takes one `lock` per fetch).
    keeps: Vec<PathBuf>,
}

/// The file name of a URL's state directory: the URL with every byte but `A-Za-z0-9.-`
/// written `_XX`, so two URLs never share one.
pub fn slug(url: &Url) -> String {
    let mut out = String::new();
    for b in url.to_string().trim_start_matches("cairn://").bytes() {
        if b.is_ascii_alphanumeric() || b"-".contains(&b) || (b == b'.' && !out.is_empty()) {
            out.push(b as char);
        } else {
            out.push_str(&format!("_{b:02x}"));
        }
    }
    out
}

fn read_state(path: &Path) -> Option<String> {
    Some(fs::read_to_string(path).ok()?.trim().to_owned())
}

fn write_state(path: &Path, value: &str) -> Result<()> {
    write_file(path, format!("{value}\n").as_bytes())
}

/// Replaces `path` with `bytes` through a new file of a fresh name beside it (made
/// exclusively: in a repository others may write to, no link of theirs is followed).
fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().context("a state file's directory")?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.persist(path)?;
    Ok(())
}

impl Helper {
    pub fn new(url: &str) -> Result<Helper> {
        let url = Url::parse(url)?;
        let state = match git::git_dir() {
            Ok(d) => {
                let state = d.join("cairn").join(slug(&url));
                fs::create_dir_all(&state)
                    .with_context(|| format!("creating {}", state.display()))?;
                Some(state)
            }
            Err(_) => None,
        };
        Ok(Helper {
            url,
            cairn: Cairn::locate(),
            state,
            object_format: false,
            dry_run: false,
            listed: None,
            keeps: Vec::new(),
        })
    }

    fn state(&self) -> Result<&Path> {
        self.state.as_deref().context("not in a git repository")
    }

    /// Talks with git until it hangs up.
    pub fn run(&mut self, input: impl BufRead, out: &mut impl Write) -> Result<()> {
        let r = self.talk(input, out);
        for k in self.keeps.drain(..) {
            let _ = fs::remove_file(k);
        }
        r
    }

    fn talk(&mut self, input: impl BufRead, out: &mut impl Write) -> Result<()> {
        let mut lines = input.lines();
        while let Some(line) = lines.next() {
            let line = line?;
            let (cmd, arg) = line.split_once(' ').unwrap_or((line.as_str(), ""));
            match cmd {
                "" => return Ok(()),
                "capabilities" => {
                    writeln!(out, "fetch\npush\noption\nobject-format\n")?;
                }
                "option" => {
                    let answer = self.option(arg);
                    writeln!(out, "{answer}")?;
                }
                "list" => {
                    let listed = self.resolve(arg == "for-push")?;
                    self.list(&listed, out)?;
                    self.listed = Some(listed);
                }
                "fetch" => {
                    let wants = batch(arg, "fetch", &mut lines)?;
                    if let Some(keep) = self.fetch(&wants)? {
                        writeln!(out, "lock {}", keep.display())?;
                    }
                    writeln!(out)?;
                }
                "push" => {
                    let pushes = batch(arg, "push", &mut lines)?;
                    let pushes = pushes
                        .iter()
                        .map(|p| parse_push(p))
                        .collect::<Result<Vec<_>>>()?;
                    for (dst, r) in self.push(&pushes)? {
                        match r {
                            Ok(()) => writeln!(out, "ok {dst}")?,
                            Err(why) => writeln!(out, "error {dst} {why}")?,
                        }
                    }
                    writeln!(out)?;
                }
                _ => bail!("git asked for {cmd:?}, which this helper does not do"),
            }
            out.flush()?;
        }
        Ok(())
    }

    fn option(&mut self, arg: &str) -> &'static str {
        let (name, value) = arg.split_once(' ').unwrap_or((arg, ""));
        match name {
            "object-format" => {
                self.object_format = value == "true";
                "ok"
            }
            "dry-run" => {
                self.dry_run = value == "true";
                "ok"
            }
            "verbosity" | "progress" | "followtags" => "ok",
            _ => "unsupported",
        }
    }

    fn seen_file(&self) -> Option<PathBuf> {
        Some(self.state.as_ref()?.join("seen"))
    }

    /// The document the URL names now (none: a key's repository not yet pushed).
    fn resolve(&self, for_push: bool) -> Result<Listed> {
        let (doc, sequence) = match &self.url {
            Url::Snapshot(c) => (Some(*c), None),
            Url::Object(_) => (None, None),
            Url::Profile { profile, repo } => {
                let p = self.profile(profile, None)?;
                (repo_doc(&p, repo)?, None)
            }
            Url::Key { key, repo } => {
                // The network's newest, not a record this node holds from minutes ago: a
                // fetch right after a push gets it.
                let r = self
                    .cairn
                    .resolve(key)
                    .with_context(|| format!("resolving {key}"))?;
                match r {
                    None if for_push => {
                        eprintln!("cairn: {key} has published no profile; pushing makes one");
                        (None, None)
                    }
                    None => bail!("{key}: no valid record found"),
                    Some(r) => {
                        let seen = self.seen_file().as_deref().and_then(read_state);
                        let seen: Option<u64> = seen.and_then(|s| s.parse().ok());
                        if let Some(seen) = seen.filter(|s| r.sequence < *s) {
                            bail!(
                                "{key}: the network's record (sequence {}) is older than one \
                                 this repository has seen ({seen}); refusing to go back",
                                r.sequence
                            );
                        }
                        if let Some(f) = self.seen_file() {
                            write_state(&f, &r.sequence.to_string())?;
                        }
                        let cid = r
                            .value
                            .strip_prefix("/ipfs/")
                            .and_then(|c| Cid::try_from(c).ok())
                            .with_context(|| {
                                format!("{key} points to {}, not a profile", r.value)
                            })?;
                        let p = self.profile(&cid, key.parse().ok().as_ref())?;
                        (repo_doc(&p, repo)?, Some(r.sequence))
                    }
                }
            }
        };
        let doc = match doc {
            Some(c) => Some((c, self.document(&c)?)),
            None if for_push || matches!(self.url, Url::Object(_)) => None,
            None => bail!("{}: no such repository", self.url),
        };
        Ok(Listed { doc, sequence })
    }

    fn profile(
        &self,
        cid: &Cid,
        name: Option<&cairn_names::Name>,
    ) -> Result<cairn_names::profile::Profile> {
        let bytes = self.cairn.block(cid)?;
        cairn_names::profile::Profile::decode(&bytes, name)
            .with_context(|| format!("the profile {cid}"))
    }

    fn document(&self, cid: &Cid) -> Result<Document> {
        let bytes = self.cairn.block(cid)?;
        Document::decode(&bytes).with_context(|| format!("the repository document {cid}"))
    }

    fn list(&self, listed: &Listed, out: &mut impl Write) -> Result<()> {
        if let Url::Object(cid) = &self.url {
            let format = crate::objects::format_of(cid)?;
            let block = self.cairn.block(cid)?;
            ensure!(
                crate::objects::kind(&block) == Some("commit"),
                "{cid} is a git {}, not a commit",
                crate::objects::kind(&block).unwrap_or("object of no known type")
            );
            if self.object_format {
                writeln!(out, ":object-format {}", format.name())?;
            }
            writeln!(out, "@refs/heads/main HEAD")?;
            writeln!(out, "{} refs/heads/main\n", hex(cid.hash().digest()))?;
            return Ok(());
        }
        let Some((_, doc)) = &listed.doc else {
            if self.object_format {
                writeln!(out, ":object-format {}", git::format()?.name())?;
            }
            writeln!(out)?;
            return Ok(());
        };
        if self.object_format {
            writeln!(out, ":object-format {}", doc.format.name())?;
        }
        if doc.refs.contains_key(&doc.head) {
            writeln!(out, "@{} HEAD", doc.head)?;
        }
        for (name, id) in &doc.refs {
            writeln!(out, "{} {name}", hex(id))?;
        }
        writeln!(out)?;
        Ok(())
    }

    fn listed(&mut self, for_push: bool) -> Result<Listed> {
        if let Some(l) = &self.listed {
            return Ok(l.clone());
        }
        let l = self.resolve(for_push)?;
        self.listed = Some(l.clone());
        Ok(l)
    }

    /// Fetches the listed document's bundles into the repository; `wants` are `<id> <ref>`.
    /// Returns the `.keep` file git is to remove once its refs are in.
    fn fetch(&mut self, wants: &[String]) -> Result<Option<PathBuf>> {
        if let Url::Object(cid) = self.url {
            return self.fetch_objects(&cid, wants).map(Some);
        }
        let Some((cid, doc)) = self.listed(false)?.doc else {
            bail!("{}: no such repository", self.url);
        };
        let here = git::format()?;
        ensure!(
            doc.format == here,
            "{} is a {} repository; this one is {}",
            self.url,
            doc.format.name(),
            here.name()
        );
        // A pin first, so nothing fetched below is collected halfway; then only the
        // bundles this repository lacks, each stopped past the size its entry declares.
        self.cairn.pin(&cid, FETCHING)?;
        let mut keeps = Vec::new();
        let mut imported = Vec::new();
        let had = git::ref_ids()?;
        let result = self
            .import(&doc, &mut keeps, &mut imported)
            .and_then(|()| self.all_here(doc.format, wants))
            .and_then(|()| {
                let tips: Vec<String> = wants
                    .iter()
                    .filter_map(|w| w.split(' ').next())
                    .map(str::to_owned)
                    .collect();
                git::check_new(&tips, &had)
            });
        if let Err(e) = result {
            // Nothing of a refused fetch stays: not even the packs of the bundles before,
            // nor the pin of its document.
            for k in &keeps {
                git::remove_pack(k);
            }
            self.cairn.unpin(&cid, FETCHING);
            return Err(e);
        }
        let moved = self.pinned(&cid);
        self.cairn.unpin(&cid, FETCHING);
        moved?;
        if let Err(e) = self.remember(doc.format, &imported) {
            eprintln!("cairn: warning: recording the bundles fetched: {e:#}");
        }
        let last = keeps.pop();
        self.keeps.extend(keeps);
        Ok(last)
    }

    /// Object mode: the commit's whole DAG, fetched, exported and packed, through
    /// `git index-pack` and the same checks as a bundle's objects.
    fn fetch_objects(&mut self, cid: &Cid, wants: &[String]) -> Result<PathBuf> {
        let format = crate::objects::format_of(cid)?;
        let here = git::format()?;
        ensure!(
            format == here,
            "{} is a {} object; this repository is {}",
            self.url,
            format.name(),
            here.name()
        );
        self.cairn.pin(cid, FETCHING)?;
        let r = self.fetch_objects_pinned(cid, format, wants);
        if r.is_ok() {
            if let Err(e) = self.pinned(cid) {
                eprintln!("cairn: warning: {e:#}");
            }
        }
        self.cairn.unpin(cid, FETCHING);
        r
    }

    fn fetch_objects_pinned(
        &mut self,
        cid: &Cid,
        format: Format,
        wants: &[String],
    ) -> Result<PathBuf> {
        self.cairn.fetch_all(cid)?;
        // Straight from the store into index-pack: `cairn dag export` read twice (the pack's
        // header counts the objects first), no copy on disk on the way.
        let had = git::ref_ids()?;
        let mut exports = Vec::new();
        let keep = git::index_pack_from(0, |stdin| {
            let n = crate::objects::pack_from_car(
                || {
                    let mut child = self.cairn.export_stream(cid)?;
                    let out = child.stdout.take().expect("piped");
                    exports.push(child);
                    Ok(std::io::BufReader::new(out))
                },
                format,
                stdin,
            )?;
            eprintln!("cairn: {n} objects, one pack");
            Ok(())
        });
        let mut exported = true;
        for mut c in exports {
            exported &= c.wait().is_ok_and(|s| s.success());
        }
        let keep = keep?;
        if !exported {
            git::remove_pack(&keep);
            bail!("cairn dag export {cid} failed");
        }
        let tips = vec![hex(cid.hash().digest())];
        let checked = self
            .all_here(format, wants)
            .and_then(|()| git::check_new(&tips, &had));
        if let Err(e) = checked {
            git::remove_pack(&keep);
            return Err(e);
        }
        Ok(keep)
    }

    /// `$GIT_DIR/cairn/known`: the bundles this repository holds every object of, from any
    /// remote (a document of no refs, its bundles oldest first, the newest 64 kept).
    fn known_file(&self) -> Result<PathBuf> {
        Ok(self
            .state()?
            .parent()
            .context("a state directory")?
            .join("known"))
    }

    fn known(&self, format: Format) -> Vec<Bundle> {
        // (Read back through the document's decoder: the file is the user's, but checked.)
        let Ok(path) = self.known_file() else {
            return Vec::new();
        };
        match fs::read(&path).map(|b| Document::decode(&b)) {
            Ok(Ok(d)) if d.format == format => d.bundles,
            _ => Vec::new(),
        }
    }

    /// Records bundles as held here: imported by a fetch that went through, and checked.
    fn remember(&self, format: Format, bundles: &[Bundle]) -> Result<()> {
        if bundles.is_empty() {
            return Ok(());
        }
        let mut known = self.known(format);
        for b in bundles {
            if !known.iter().any(|k| k.cid == b.cid) {
                known.push(b.clone());
            }
        }
        let skip = known.len().saturating_sub(crate::doc::MAX_BUNDLES);
        let d = Document {
            format,
            head: "refs/heads/main".into(),
            refs: BTreeMap::new(),
            bundles: known.split_off(skip),
        };
        write_file(&self.known_file()?, &d.encode())
    }

    /// Fails unless every object git `wants` (`<id> <ref>`) is here now.
    fn all_here(&self, format: Format, wants: &[String]) -> Result<()> {
        let want_ids = wants
            .iter()
            .map(|w| {
                let id = w.split(' ').next().unwrap_or_default();
                unhex(id, format.id_len()).with_context(|| format!("git wants {w:?}"))
            })
            .collect::<Result<Vec<_>>>()?;
        let gone = git::missing(want_ids.iter().map(Vec::as_slice))?;
        if let Some(id) = gone.first() {
            bail!(
                "{}: no bundle brings {} (the document lists a ref its bundles lack)",
                self.url,
                hex(id)
            );
        }
        Ok(())
    }

    /// Each bundle whose tips are not all here, oldest first, through `git index-pack`.
    /// Bundles that hold what they claim (checked by [`Self::holds`]) go to `imported`.
    fn import(
        &self,
        doc: &Document,
        keeps: &mut Vec<PathBuf>,
        imported: &mut Vec<Bundle>,
    ) -> Result<()> {
        let needed: Vec<&Bundle> = doc
            .bundles
            .iter()
            .filter(|b| {
                git::missing(b.tips.iter().map(Vec::as_slice)).map_or(true, |m| !m.is_empty())
            })
            .collect();
        for b in &needed {
            // Blocks of a file carry a little more than its bytes (dag-pb framing, the
            // nodes above its chunks): 1/64 and 64 KiB of slack, no more.
            let max = b.size.saturating_add(b.size / 64).saturating_add(64 << 10);
            self.cairn
                .fetch(&b.cid, b.size, max)
                .with_context(|| format!("fetching bundle {} ({} bytes)", b.cid, b.size))?;
        }
        for b in needed {
            // An earlier bundle may have brought these tips: a bundle claiming them is not
            // imported (nor recorded for forks: its claims go unchecked).
            if git::missing(b.tips.iter().map(Vec::as_slice))?.is_empty() {
                continue;
            }
            let lacking = git::missing(b.prereqs.iter().map(Vec::as_slice))?;
            if let Some(p) = lacking.first() {
                bail!(
                    "bundle {} needs {}, which no earlier bundle brought",
                    b.cid,
                    hex(p)
                );
            }
            let keep = self.import_one(doc.format, b)?;
            keeps.push(keep.clone());
            if self.holds(b, &keep) {
                imported.push(b.clone());
            }
        }
        Ok(())
    }

    /// Whether a bundle just imported (its pack kept at `keep`) holds what it claims, so that
    /// a fork may list it for others: its tips are commits, here now, at most
    /// [`MAX_SHARED_TIPS`], and every object they reach past its prerequisites is in its
    /// pack. (A delta whose base lies outside the prerequisites is not caught here: a
    /// clone of such a fork fails at index-pack, as it would from the bundle's publisher.)
    fn holds(&self, b: &Bundle, keep: &Path) -> bool {
        let check = || -> Result<bool> {
            if b.tips.is_empty() || b.tips.len() > MAX_SHARED_TIPS {
                return Ok(false);
            }
            let tips: Vec<String> = b.tips.iter().map(|t| hex(t)).collect();
            if !git::all_commits(&tips)? {
                return Ok(false);
            }
            let prereqs: Vec<String> = b.prereqs.iter().map(|p| hex(p)).collect();
            let in_pack = git::pack_ids(&keep.with_extension("idx"))?;
            git::objects_within(&tips, &prereqs, &in_pack)
        };
        check().unwrap_or(false)
    }

    fn import_one(&self, format: Format, b: &Bundle) -> Result<PathBuf> {
        let mut child = self.cairn.cat(&b.cid)?;
        let mut r = BufReader::new(child.stdout.take().expect("piped"));
        let (h, hlen) = Header::read(&mut r).with_context(|| format!("bundle {}", b.cid))?;
        let tips: BTreeSet<&[u8]> = h.refs.iter().map(|(id, _)| id.as_slice()).collect();
        let prereqs: BTreeSet<&[u8]> = h.prereqs.iter().map(Vec::as_slice).collect();
        ensure!(
            h.format == format
                && tips == b.tips.iter().map(Vec::as_slice).collect()
                && prereqs == b.prereqs.iter().map(Vec::as_slice).collect()
                && hlen < b.size,
            "bundle {}: its header disagrees with the document",
            b.cid
        );
        let pack_len = b.size - hlen;
        let mut counted = Counted {
            inner: r.by_ref().take(pack_len),
            n: 0,
        };
        let keep = git::index_pack(&mut counted, pack_len);
        let fed = counted.n;
        let mut extra = [0u8; 1];
        let more = r.read(&mut extra).unwrap_or(0);
        drop(r);
        let cat = child.wait()?;
        let keep = keep.with_context(|| format!("bundle {}", b.cid))?;
        if fed != pack_len || more != 0 || !cat.success() {
            git::remove_pack(&keep);
            bail!(
                "bundle {}: {} bytes, not the {} its document says",
                b.cid,
                hlen + fed + more as u64,
                b.size
            );
        }
        Ok(keep)
    }

    /// Moves this remote's pin to `cid`.
    fn pinned(&self, cid: &Cid) -> Result<()> {
        self.cairn.pin(cid, PROG)?;
        let file = self.state()?.join("doc");
        if let Some(old) = read_state(&file).and_then(|s| Cid::try_from(s.as_str()).ok()) {
            if old != *cid {
                self.cairn.unpin(&old, PROG);
            }
        }
        write_state(&file, &cid.to_string())
    }

    /// Pushes a batch: each ref's outcome.
    fn push(&mut self, pushes: &[Push]) -> Result<Vec<(String, Result<(), String>)>> {
        let (key, repo) = match &self.url {
            Url::Key { key, repo } => (key.clone(), repo.clone()),
            u => {
                let why = format!("{u} names a fixed state; push to cairn://<key>/<repo>");
                return Ok(pushes
                    .iter()
                    .map(|p| (p.dst.clone(), Err(why.clone())))
                    .collect());
            }
        };
        let Some(keyname) = self.cairn.own_key(&key)? else {
            let why = format!("{key} is not one of your keys (cairn key list)");
            return Ok(pushes
                .iter()
                .map(|p| (p.dst.clone(), Err(why.clone())))
                .collect());
        };
        let mut listed = self.listed(true)?;
        let first = listed.clone();
        for _attempt in 0..4 {
            // Refs another push moved since git judged ours: git's judgement no longer holds.
            let moved = |name: &str| {
                let was = first.doc.as_ref().and_then(|(_, d)| d.refs.get(name));
                let now = listed.doc.as_ref().and_then(|(_, d)| d.refs.get(name));
                was != now
            };
            let mut outcome: Vec<(String, Result<(), String>)> = Vec::new();
            let mut applied = Vec::new();
            for p in pushes {
                if !check_ref(&p.dst) {
                    outcome.push((p.dst.clone(), Err("not a ref name git takes".into())));
                } else if moved(&p.dst) && !p.force {
                    outcome.push((p.dst.clone(), Err("fetch first".into())));
                } else {
                    outcome.push((p.dst.clone(), Ok(())));
                    applied.push(p);
                }
            }
            if applied.is_empty() || self.dry_run {
                return Ok(outcome);
            }
            let (doc_cid, doc) = self.next_document(&listed, &applied)?;
            self.cairn.pin(&doc_cid, PROG)?;
            match self
                .cairn
                .set_repo(&keyname, &repo, &doc_cid, listed.sequence)?
            {
                Published::Done(profile) => {
                    // Out now: what fails from here is told, not a failed push.
                    if let Err(e) = self.pinned(&doc_cid) {
                        eprintln!("cairn: warning: {e:#}");
                    }
                    self.cairn.provide(&doc_cid);
                    eprintln!(
                        "cairn: published {}; this state: cairn://{doc_cid}",
                        self.url
                    );
                    // Compare and swap holds on this machine (one lock per key) and against
                    // what the network said a moment ago; a push from another machine in
                    // between shows here, as the network holding another profile.
                    let now = self.cairn.resolve(&key).ok().flatten();
                    if let Some(r) = &now {
                        if let Some(f) = self.seen_file() {
                            let _ = write_state(&f, &r.sequence.to_string());
                        }
                    }
                    if now.as_ref().map(|r| r.value.as_str()) != Some(&format!("/ipfs/{profile}")) {
                        let why = "published, but the network holds another state; fetch first";
                        return Ok(outcome
                            .into_iter()
                            .map(|(d, r)| (d, r.and(Err(why.to_owned()))))
                            .collect());
                    }
                    self.listed = Some(Listed {
                        doc: Some((doc_cid, doc)),
                        sequence: now.map(|r| r.sequence),
                    });
                    return Ok(outcome);
                }
                Published::Moved => {
                    self.cairn.unpin(&doc_cid, PROG);
                    eprintln!("cairn: {} moved while pushing; trying again", self.url);
                    listed = self.resolve(true)?;
                }
            }
        }
        bail!("{} kept moving while pushing; try again", self.url)
    }

    /// The document after `pushes`, stored (with its new bundle, if any objects are new).
    fn next_document(&self, listed: &Listed, pushes: &[&Push]) -> Result<(Cid, Document)> {
        let here = git::format()?;
        let mut doc = match &listed.doc {
            Some((_, d)) => d.clone(),
            None => Document {
                format: here,
                head: String::new(),
                refs: BTreeMap::new(),
                bundles: Vec::new(),
            },
        };
        ensure!(
            doc.format == here,
            "{} is a {} repository; this one is {}",
            self.url,
            doc.format.name(),
            here.name()
        );
        let mut have = self.local(doc.refs.values().map(Vec::as_slice).chain(doc.tips()))?;
        let mut brought = Vec::new();
        for p in pushes {
            if p.src.is_empty() {
                doc.refs.remove(&p.dst);
            } else {
                let id = git::rev_parse(&p.src)?;
                let bytes = unhex(&id, here.id_len()).context("git printed a bad id")?;
                doc.refs.insert(p.dst.clone(), bytes.clone());
                brought.push((bytes, p.dst.clone()));
            }
        }
        // This push's own directory (0700, a fresh name): pushes side by side never share
        // a file, and nobody else's link is followed.
        let tmp = tempfile::Builder::new()
            .prefix("push.")
            .tempdir_in(self.state()?)?;
        let tmp = tmp.path();
        if !brought.is_empty() {
            self.share(&mut doc, &brought, &mut have)?;
            if let Some(b) = self.make_bundle(here, &brought, &have, tmp)? {
                doc.bundles.push(b);
            }
        }
        self.consolidate(&mut doc, tmp)?;
        if !doc.refs.contains_key(&doc.head) {
            doc.head = choose_head(&doc.refs);
        }
        let path = tmp.join("document");
        fs::write(&path, doc.encode())?;
        Document::decode(&doc.encode()).context("the document this push would publish")?;
        let cid = self.cairn.put_dag_cbor(&path)?;
        let _ = fs::remove_file(&path);
        Ok((cid, doc))
    }

    /// Forks share: bundles this repository fetched from any remote whose tips the pushed
    /// history contains (and whose prerequisites the document already brings) are listed
    /// as they are, by CID, instead of packed again; `have` grows by their tips.
    fn share(
        &self,
        doc: &mut Document,
        brought: &[(Vec<u8>, String)],
        have: &mut Vec<String>,
    ) -> Result<()> {
        let new: Vec<String> = brought.iter().map(|(id, _)| hex(id)).collect();
        for k in self.known(doc.format) {
            if doc.bundles.len() >= crate::doc::MAX_BUNDLES - 1 {
                break;
            }
            if doc.bundles.iter().any(|b| b.cid == k.cid) {
                continue;
            }
            let tips: Vec<String> = k.tips.iter().map(|t| hex(t)).collect();
            let prereqs: Vec<String> = k.prereqs.iter().map(|p| hex(p)).collect();
            // Its tips in the pushed history, not already in what the document brings, its
            // prerequisites brought, and every block of it here to serve.
            if k.tips.len() > MAX_SHARED_TIPS
                || !git::reaches(&new, &tips)?
                || git::reaches(have, &tips)?
                || !git::reaches(have, &prereqs)?
                || !self.cairn.complete(&k.cid)
            {
                continue;
            }
            have.extend(tips);
            doc.bundles.push(k);
        }
        Ok(())
    }

    /// Those of `ids` that are here, as hex.
    fn local<'a>(&self, ids: impl IntoIterator<Item = &'a [u8]>) -> Result<Vec<String>> {
        let ids: BTreeSet<&[u8]> = ids.into_iter().collect();
        let gone = git::missing(ids.iter().copied())?;
        Ok(ids
            .into_iter()
            .filter(|i| !gone.contains(*i))
            .map(hex)
            .collect())
    }

    /// A bundle of what `tips` reach and `have` does not, added to the store (None: no
    /// object is new).
    fn make_bundle(
        &self,
        format: Format,
        tips: &[(Vec<u8>, String)],
        have: &[String],
        tmp: &Path,
    ) -> Result<Option<Bundle>> {
        let want: Vec<String> = tips.iter().map(|(id, _)| hex(id)).collect();
        let prereqs = git::boundary(&want, have)?;
        let pack_path = tmp.join("pack");
        let objects = git::pack(&want, have, &mut fs::File::create(&pack_path)?)?;
        if objects == 0 {
            let _ = fs::remove_file(&pack_path);
            return Ok(None);
        }
        let header = Header {
            format,
            prereqs: prereqs
                .iter()
                .map(|p| unhex(p, format.id_len()).context("git printed a bad id"))
                .collect::<Result<_>>()?,
            refs: tips.to_vec(),
        };
        let path = tmp.join("bundle");
        {
            let mut f = std::io::BufWriter::new(fs::File::create(&path)?);
            header.write(&mut f)?;
            std::io::copy(&mut fs::File::open(&pack_path)?, &mut f)?;
            f.into_inner()?.sync_all()?;
        }
        let _ = fs::remove_file(&pack_path);
        let size = fs::metadata(&path)?.len();
        let cid = self.cairn.add(&path)?;
        let _ = fs::remove_file(&path);
        let mut tip_ids: Vec<Vec<u8>> = Vec::new();
        for (id, _) in tips {
            if !tip_ids.contains(id) {
                tip_ids.push(id.clone());
            }
        }
        Ok(Some(Bundle {
            cid,
            size,
            objects: objects.into(),
            tips: tip_ids,
            prereqs: header.prereqs,
        }))
    }

    /// Keeps the bundles geometric, as `git repack --geometric=2` keeps packs: each at least
    /// twice the size of all newer ones together, so a repository pushed n times has
    /// O(log n) bundles. The newest ones that break the rule become one bundle, if their
    /// objects and those of the bundles before them are here.
    fn consolidate(&self, doc: &mut Document, tmp: &Path) -> Result<()> {
        let sizes: Vec<u64> = doc.bundles.iter().map(|b| b.size).collect();
        let Some(start) = (0..sizes.len())
            .find(|&i| i + 1 < sizes.len() && sizes[i] < 2 * sizes[i + 1..].iter().sum::<u64>())
        else {
            return Ok(());
        };
        let merged = &doc.bundles[start..];
        let all_tips: Vec<&[u8]> = doc
            .bundles
            .iter()
            .flat_map(|b| b.tips.iter().map(Vec::as_slice))
            .collect();
        if !git::missing(all_tips)?.is_empty() {
            return Ok(());
        }
        let by_id: BTreeMap<&[u8], &str> = doc
            .refs
            .iter()
            .map(|(n, id)| (id.as_slice(), n.as_str()))
            .collect();
        let mut tips: Vec<(Vec<u8>, String)> = Vec::new();
        for id in merged.iter().flat_map(|b| b.tips.iter()) {
            if tips.iter().any(|(t, _)| t == id) {
                continue;
            }
            let name = by_id.get(id.as_slice()).map_or_else(
                || format!("refs/cairn/tips/{}", hex(id)),
                |n| (*n).to_owned(),
            );
            tips.push((id.clone(), name));
        }
        let have: Vec<String> = doc.bundles[..start]
            .iter()
            .flat_map(|b| b.tips.iter().map(|t| hex(t)))
            .collect();
        if let Some(b) = self.make_bundle(doc.format, &tips, &have, tmp)? {
            doc.bundles.truncate(start);
            doc.bundles.push(b);
        }
        Ok(())
    }
}

/// What `list` shows as HEAD when the document's is gone: main, master, a branch, any ref.
fn choose_head(refs: &BTreeMap<String, Vec<u8>>) -> String {
    let local = git::symbolic_head().filter(|h| refs.contains_key(h));
    local
        .or_else(|| {
            ["refs/heads/main", "refs/heads/master"]
                .into_iter()
                .find(|h| refs.contains_key(*h))
                .map(str::to_owned)
        })
        .or_else(|| refs.keys().find(|r| r.starts_with("refs/heads/")).cloned())
        .or_else(|| refs.keys().next().cloned())
        .unwrap_or_else(|| "refs/heads/main".to_owned())
}

/// The document a profile lists for `repo` (None: it lists no such repository).
fn repo_doc(p: &cairn_names::profile::Profile, repo: &str) -> Result<Option<Cid>> {
    let Some(w) = p.repositories.get(repo) else {
        return Ok(None);
    };
    let cid = w
        .strip_prefix("/ipfs/")
        .and_then(|c| Cid::try_from(c).ok())
        .with_context(|| format!("the profile's {repo} is {w:?}, not /ipfs/<document>"))?;
    Ok(Some(cid))
}

/// A batch of `cmd` lines (`fetch …` or `push …`), `first`'s argument already read, up to
/// the blank line that ends it: the arguments.
fn batch(
    first: &str,
    cmd: &str,
    lines: &mut impl Iterator<Item = std::io::Result<String>>,
) -> Result<Vec<String>> {
    let mut args = vec![first.to_owned()];
    for l in lines {
        let l = l?;
        match l.strip_prefix(cmd).and_then(|r| r.strip_prefix(' ')) {
            Some(a) => args.push(a.to_owned()),
            None if l.is_empty() => return Ok(args),
            None => bail!("git said {l:?} in a {cmd} batch"),
        }
    }
    Ok(args)
}

fn parse_push(s: &str) -> Result<Push> {
    let (force, rest) = match s.strip_prefix('+') {
        Some(r) => (true, r),
        None => (false, s),
    };
    let (src, dst) = rest
        .split_once(':')
        .with_context(|| format!("git pushed {s:?}"))?;
    Ok(Push {
        force,
        src: src.to_owned(),
        dst: dst.to_owned(),
    })
}

struct Counted<R> {
    inner: R,
    n: u64,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.n += n as u64;
        Ok(n)
    }
}
