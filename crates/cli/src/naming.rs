//! The daemon's names (`docs/names.md`): what each name was last seen to point to, kept in
//! `R/names/` across restarts, the names the node follows, and `R/store/name/`.
//!
//! - `R/names/<k51…>/record`: the newest valid record seen. A record older than it is
//!   never used again (a peer answering with an old record cannot take a name back).
//! - `R/names/<k51…>/list`: the last good release list of a name that points to one. A new
//!   head is taken only if its `prev` chain reaches this one, each list the one before plus
//!   one change; otherwise this one is kept and a rewritten history reported until
//!   `cairn name accept NAME`. Kept as a file, not pinned: a shallow root (lists, not apps).
//! - `R/names/<k51…>/follow`: the node follows the name: `UID shallow|mirror`. Followed
//!   records are served to peers and put on the DHT again every `names.republish`, so a
//!   name stays resolvable while its owner is away (until its validity ends); `mirror` also
//!   pins the list and, through it, every released version.
//! - `R/names/aliases.toml`: node-wide aliases, `alias = "k51…"`.
//!
//! A name is used for `names.refresh` (or its record's TTL, if shorter) before the network
//! is asked again; the mount answers from what is held meanwhile and asks in the
//! background. Without the network, a held record is served while fresh, then with a
//! warning until its validity ends, then only on request (`--stale`); released versions of
//! a held list always resolve (a version never changes).
//!
//! Bounds (the control socket is open to every local user, who can ask for any name):
//!
//! | what | bound | past it |
//! |---|---|---|
//! | names held in memory | [`MAX_NAMES`], and [`MAX_HELD_LISTS`] bytes of lists | the least recently used names are dropped from memory (their files stay, read again when used) |
//! | names kept in `R/names/` | [`MAX_NAMES`] | a new name is held in memory only |
//! | lists shown by the mount | one `versions.json` per name, built once per list | - |
//! | names one user follows | `names.follow_per_user` (256) | refused |
//! | names one user publishes through the node | [`PUBLISH_PER_USER`] (root and the daemon's user: no limit) | refused |
//! | a record file read | [`MAX_RECORD`] | ignored |
//! | a list file, a list block | [`MAX_LIST`] | refused |
//! | a name's older lists | [`MAX_OLDER`] blocks, [`MAX_CHAIN_BYTES`](cairn_names::releases::MAX_CHAIN_BYTES) with the head | refused |
//! | older lists kept in `R/names/*/older/` | [`MAX_OLDER_ON_DISK`] bytes in all | the lists of names nobody follows are forgotten, least recently kept first; then a new list is refused |
//! | a chain walk | [`MAX_WALK`] lists | a rewritten history |
//! | mount threads waiting for names | [`MAX_WAITING`] | `EAGAIN` |
//! | `aliases.toml` | [`MAX_ALIASES_FILE`] bytes | ignored, with a log line |

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    io::Read,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant, SystemTime},
};

use cairn_fuse::fs::{NameSource, Named, Versions};
use cairn_names::{
    record::{self, Record, MAX_RECORD},
    releases::{List, ListError, MAX_LIST, MAX_OLDER},
    Name,
};
use cairn_net::{config::NamesConfig, Client};
use cairn_store::{codec::codes, Cid, HashAlg, Store};
use serde_json::json;

/// Names held at once, in memory and in `R/names/`.
pub const MAX_NAMES: usize = 4096;
/// How many lists back a new head is followed to the last good one.
pub const MAX_WALK: usize = 1024;
/// Mount threads waiting for the network to resolve a name at once.
pub const MAX_WAITING: usize = 4;
/// Older list blocks kept in `R/names/*/older/`, in bytes, in all names.
pub const MAX_OLDER_ON_DISK: u64 = 1 << 30;
/// Release lists held in memory, in bytes as encoded (a decoded list takes about as much).
pub const MAX_HELD_LISTS: usize = 64 << 20;
/// How long a name's first value is fetched to see whether it is a release list.
pub const PROBE: Duration = Duration::from_secs(3);
/// Followed names republished at once.
pub const REPUBLISH_AT_ONCE: usize = 16;
/// Followed names republished per second at most: each goes into both DHTs, and a peer
/// takes 100 puts a second from one sender (`cairn_net::dht::PUTS_PER_SECOND`).
pub const REPUBLISH_PER_SECOND: u32 = 40;
/// Names one local user (not root, not the daemon's user) may publish through the node.
pub const PUBLISH_PER_USER: usize = 256;
/// Local users whose publications are counted.
pub const PUBLISHERS: usize = 1024;
/// The largest `aliases.toml` read.
pub const MAX_ALIASES_FILE: u64 = 1 << 20;

/// How a resolution may answer.
#[derive(Debug, Clone, Copy, Default)]
pub struct Mode {
    /// Ask the network even if a fresh record is held.
    pub nocache: bool,
    /// Ask no peer.
    pub offline: bool,
}

/// How much a held record can be trusted to be the newest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// Within its TTL (and `names.refresh`) of the network last confirming it.
    Fresh,
    /// Past that, the network unreachable: still valid, maybe not the newest.
    Old,
    /// Past its validity: only released versions of its list are still trusted.
    Expired,
}

impl Freshness {
    pub fn as_str(self) -> &'static str {
        match self {
            Freshness::Fresh => "fresh",
            Freshness::Old => "old",
            Freshness::Expired => "expired",
        }
    }
}

/// What a name points to.
#[derive(Debug, Clone)]
pub enum Target {
    /// A path: `/ipfs/…` or `/ipns/…`.
    Path(String),
    /// A release list (the last good one).
    Releases {
        list: Arc<List>,
        cid: Cid,
        /// Why the newest head was not taken, if it was not.
        rewritten: Option<String>,
    },
}

/// A name as held: its newest record and what it points to.
#[derive(Debug, Clone)]
pub struct Known {
    pub record: Record,
    pub bytes: Vec<u8>,
    pub target: Target,
    /// When the network last answered for it (or the record was published here).
    pub checked: SystemTime,
    /// The peer it came from, if it came from one.
    pub from: Option<String>,
}

impl Known {
    /// The size of the list it holds, as encoded (0 for a path).
    fn list_bytes(&self) -> usize {
        match &self.target {
            Target::Path(_) => 0,
            // A version's fields and a little more each: not encoded again per call.
            Target::Releases { list, .. } => list
                .versions
                .iter()
                .map(|r| {
                    64 + r.v.len()
                        + r.at.len()
                        + r.notes.as_ref().map_or(0, String::len)
                        + r.yanked.as_ref().map_or(0, String::len)
                })
                .sum(),
        }
    }
}

/// The daemon's names.
pub struct Naming {
    dir: PathBuf,
    client: Option<Client>,
    store: Arc<Store>,
    timeout: Duration,
    cfg: NamesConfig,
    rt: Option<tokio::runtime::Handle>,
    /// Names held: what is known, when last used, its list's size; and all lists' sizes.
    known: Mutex<Held>,
    refreshing: Mutex<HashSet<Name>>,
    waiting: AtomicUsize,
    aliases: Mutex<Aliases>,
    /// The names each local user published through the node since it started.
    publishers: Mutex<HashMap<u32, HashSet<Name>>>,
    /// Held while a name's files are compared and written: two resolutions of one name
    /// never write an older record or list over a newer one.
    writing: Mutex<()>,
    /// Name directories in `R/names/` (at most [`MAX_NAMES`] are written).
    on_disk: AtomicUsize,
    /// The bytes of older list blocks in `R/names/*/older/`.
    older_on_disk: AtomicU64,
    /// Held while a follow is checked and written (two requests cannot both pass a limit).
    following: Mutex<()>,
    /// What the mount shows for a list, by name: built once per list and freshness.
    shown: Mutex<Shown>,
}

/// Names held: each one's knowledge, last use and list size; the lists' total size.
type Held = (HashMap<Name, (Arc<Known>, Instant, usize)>, usize);

/// What the mount shows per list (its CID, whether expired, the entry) and the bytes of all.
type Shown = (HashMap<Name, (Cid, bool, Named)>, usize);

/// The node's aliases as last read: the file's mtime, when it was looked at, the aliases.
type Aliases = (Option<SystemTime>, Instant, Arc<BTreeMap<String, Name>>);

fn now_nanos() -> i128 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128)
}

/// A good list to keep in `R/names/<name>/`: its head block (`list`) and its older lists'
/// blocks (`older/<cid>`).
pub struct HeldList {
    head: Vec<u8>,
    older: Vec<(Cid, Vec<u8>)>,
}

/// The bytes of the older list blocks kept under `dir` (`R/names/`).
fn older_on_disk(dir: &Path) -> u64 {
    let Ok(names) = std::fs::read_dir(dir) else {
        return 0;
    };
    names
        .flatten()
        .filter_map(|n| std::fs::read_dir(n.path().join("older")).ok())
        .flat_map(|rd| rd.flatten())
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum()
}

/// The CID of a list block as cairn writes it (dag-cbor, sha2-256).
pub fn list_cid(bytes: &[u8]) -> Cid {
    Cid::new_v1(codes::DAG_CBOR, HashAlg::Sha2_256.digest(bytes))
}

/// The CID of a value that may be a release list: `/ipfs/<dag-cbor CID>`, no path.
fn list_value(value: &str) -> Option<Cid> {
    value
        .strip_prefix("/ipfs/")
        .filter(|s| !s.contains('/'))
        .and_then(|s| cairn_store::parse_cid(s).ok())
        .filter(|c| c.codec() == codes::DAG_CBOR)
}

/// Reads at most `max` bytes of `path`; `None` if missing or larger.
fn read_bounded(path: &Path, max: u64) -> Option<Vec<u8>> {
    let f = std::fs::File::open(path).ok()?;
    let mut out = Vec::new();
    f.take(max + 1).read_to_end(&mut out).ok()?;
    (out.len() as u64 <= max).then_some(out)
}

/// Writes `bytes` to `path` through a temporary file and a rename.
fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let tmp = path.with_extension(format!("tmp{}.{n}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

/// Checks a record read back from disk: it must verify for `name`, its validity aside
/// (an expired record still tells which versions were released).
fn verify_held(name: &Name, bytes: &[u8]) -> Option<Record> {
    let u = record::inspect(bytes).ok()?;
    let validity = cairn_names::time::parse(&u.validity)?;
    record::verify(name, bytes, now_nanos().min(validity - 1)).ok()
}

/// An alias: 1 to 64 of `A-Za-z0-9._-`, not starting with a dot, and not a name's spelling.
pub fn check_alias(a: &str) -> Result<(), String> {
    let ok = !a.is_empty()
        && a.len() <= 64
        && !a.starts_with('.')
        && a.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        && a.parse::<Name>().is_err();
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{a:?} is not an alias (1 to 64 of A-Z a-z 0-9 . _ -, not starting with a dot, not a name)"
        ))
    }
}

/// Reads an aliases file (`alias = "k51…"`); bad lines are named in the error.
pub fn read_aliases(path: &Path) -> Result<BTreeMap<String, Name>, String> {
    let Some(bytes) = read_bounded(path, MAX_ALIASES_FILE) else {
        return match std::fs::metadata(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
            _ => Err(format!(
                "{}: unreadable or over {MAX_ALIASES_FILE} bytes",
                path.display()
            )),
        };
    };
    let text = String::from_utf8(bytes).map_err(|_| format!("{}: not UTF-8", path.display()))?;
    let table: BTreeMap<String, String> =
        toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    table
        .into_iter()
        .map(|(a, n)| {
            check_alias(&a)?;
            let name = n
                .parse::<Name>()
                .map_err(|_| format!("{}: {a} = {n:?} is not a name", path.display()))?;
            Ok((a, name))
        })
        .collect()
}

/// Writes an aliases file.
pub fn write_aliases(path: &Path, aliases: &BTreeMap<String, Name>) -> std::io::Result<()> {
    let table: BTreeMap<&String, String> =
        aliases.iter().map(|(a, n)| (a, n.to_string())).collect();
    let text = toml::to_string(&table).expect("a table of strings");
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    write_atomic(path, text.as_bytes())
}

/// A mount symlink target for a path value, relative to `R/store/name/`: `../<cid>/…`
/// (`../app/<cid>/…` for an app) or `<k51…>/…`. `None` for a value whose path is not plain names (`..`, `.`, empty): a record
/// must not point a link out of the store.
pub fn link_target(value: &str) -> Option<String> {
    let (kind, rest) = value.strip_prefix('/')?.split_once('/')?;
    let (head, path) = rest.split_once('/').unwrap_or((rest, ""));
    let path_ok = path.is_empty()
        || path
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != ".." && !c.contains('\0'));
    if !path_ok {
        return None;
    }
    let top = match kind {
        // An app (a dag-cbor node) is shown by the app view, anything else by its default.
        "ipfs" => {
            let cid = cairn_store::parse_cid(head).ok()?;
            let view = if cid.codec() == codes::DAG_CBOR {
                "app/"
            } else {
                ""
            };
            format!("../{view}{}", cairn_store::block_name(&cid))
        }
        "ipns" => head.parse::<Name>().ok()?.to_string(),
        _ => return None,
    };
    Some(if path.is_empty() {
        top
    } else {
        format!("{top}/{path}")
    })
}

impl Naming {
    /// The names of the node at `root`; `client` is `None` for a mount without a daemon
    /// (then nothing is asked of the network), `rt` the runtime its background work runs on.
    pub fn open(
        root: &Path,
        client: Option<Client>,
        store: Arc<Store>,
        timeout: Duration,
        cfg: NamesConfig,
        rt: Option<tokio::runtime::Handle>,
    ) -> std::io::Result<Arc<Naming>> {
        let dir = root.join("names");
        if client.is_some() {
            std::fs::create_dir_all(&dir)?;
        }
        let on_disk = std::fs::read_dir(&dir).map_or(0, |rd| {
            rd.flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .count()
        });
        Ok(Arc::new(Naming {
            dir: dir.clone(),
            client,
            store,
            timeout,
            cfg,
            rt,
            known: Mutex::new((HashMap::new(), 0)),
            refreshing: Mutex::new(HashSet::new()),
            waiting: AtomicUsize::new(0),
            aliases: Mutex::new((None, Instant::now(), Arc::new(BTreeMap::new()))),
            publishers: Mutex::new(HashMap::new()),
            writing: Mutex::new(()),
            on_disk: AtomicUsize::new(on_disk),
            older_on_disk: AtomicU64::new(older_on_disk(&dir)),
            following: Mutex::new(()),
            shown: Mutex::new((HashMap::new(), 0)),
        }))
    }

    fn name_dir(&self, name: &Name) -> PathBuf {
        self.dir.join(name.to_string())
    }

    /// The node-wide aliases, read again when `aliases.toml` changed (looked at once a
    /// second at most).
    pub fn aliases(&self) -> Arc<BTreeMap<String, Name>> {
        let mut a = self.aliases.lock().expect("aliases");
        if a.1.elapsed() < Duration::from_secs(1) && a.0.is_some() {
            return a.2.clone();
        }
        let path = self.dir.join("aliases.toml");
        let mtime = std::fs::metadata(&path)
            .and_then(|m| m.modified())
            .unwrap_or(SystemTime::UNIX_EPOCH);
        if a.0 != Some(mtime) {
            a.2 = Arc::new(read_aliases(&path).unwrap_or_else(|e| {
                log::warn!("{e}");
                BTreeMap::new()
            }));
            a.0 = Some(mtime);
        }
        a.1 = Instant::now();
        a.2.clone()
    }

    /// How far `k` can be trusted now.
    pub fn freshness(&self, k: &Known) -> Freshness {
        if k.record.validity <= now_nanos() {
            return Freshness::Expired;
        }
        let ttl = Duration::from_nanos(k.record.ttl).min(self.cfg.refresh);
        match k.checked.elapsed() {
            Ok(age) if age < ttl => Freshness::Fresh,
            // Past its TTL, or confirmed "in the future" (a clock set back): ask again.
            _ => Freshness::Old,
        }
    }

    /// What is held for `name`: in memory, else read back from `R/names/`.
    pub fn held(&self, name: &Name) -> Option<Arc<Known>> {
        if let Some((k, at, _)) = self.known.lock().expect("known").0.get_mut(name) {
            *at = Instant::now();
            return Some(k.clone());
        }
        let dir = self.name_dir(name);
        let bytes = read_bounded(&dir.join("record"), MAX_RECORD as u64)?;
        let record = verify_held(name, &bytes)?;
        let checked = std::fs::metadata(dir.join("record"))
            .and_then(|m| m.modified())
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let target = match (self.good_list(name), list_value(&record.value)) {
            (Some((list, cid)), Some(v)) => Target::Releases {
                list: Arc::new(list),
                cid,
                rewritten: (v != cid).then(|| format!("the record points to {}", record.value)),
            },
            _ => Target::Path(record.value.clone()),
        };
        let k = Arc::new(Known {
            record,
            bytes,
            target,
            checked,
            from: None,
        });
        self.remember(name, k.clone());
        Some(k)
    }

    /// The last good list of `name` kept in `R/names/`, and its CID.
    fn good_list(&self, name: &Name) -> Option<(List, Cid)> {
        self.good_list_with(name, |_| Err("not asked".into()))
            .map_err(|e| log::warn!("{name}: its kept list: {e}"))
            .ok()?
    }

    /// The last good list of `name`, its older lists read from `R/names/`, the store, or
    /// else `fetch` (what comes from there is kept again). `Ok(None)`: no list is kept;
    /// `Err`: one is, and cannot be read whole.
    fn good_list_with(
        &self,
        name: &Name,
        mut fetch: impl FnMut(&Cid) -> Result<Vec<u8>, String>,
    ) -> Result<Option<(List, Cid)>, String> {
        let dir = self.name_dir(name);
        let Some(bytes) = read_bounded(&dir.join("list"), MAX_LIST as u64) else {
            return Ok(None);
        };
        let mut fetched = Vec::new();
        let list = List::load(&bytes, Some(name), |c| {
            self.older_block(name, c).or_else(|_| {
                let b = fetch(c)?;
                fetched.push((*c, b.clone()));
                Ok(b)
            })
        })
        .map_err(|e| e.to_string())?;
        if !fetched.is_empty() {
            let _w = self.writing.lock().expect("writing");
            if let Err(e) = self.write_older(&dir, &fetched) {
                log::warn!("{name}: keeping its older lists again: {e}");
            }
        }
        Ok(Some((list, list_cid(&bytes))))
    }

    /// An older list block of `name`: kept in `R/names/<name>/older/`, else in the store.
    fn older_block(&self, name: &Name, cid: &Cid) -> Result<Vec<u8>, String> {
        let file = self.name_dir(name).join("older").join(cid.to_string());
        if let Some(b) = read_bounded(&file, MAX_LIST as u64).filter(|b| list_cid(b) == *cid) {
            return Ok(b);
        }
        match self.store.get(cid) {
            Ok(Some(b)) => Ok(b.to_vec()),
            _ => Err(format!("{cid} is neither kept nor in the store")),
        }
    }

    /// Writes `held` as the last good list in `dir`: the older blocks first (those not
    /// there yet, while [`MAX_OLDER_ON_DISK`] allows), then the head, then the older blocks
    /// no longer used go.
    fn write_list(&self, dir: &Path, held: &HeldList) -> std::io::Result<()> {
        let keep: HashSet<String> = held.older.iter().map(|(c, _)| c.to_string()).collect();
        self.write_older(dir, &held.older)?;
        write_atomic(&dir.join("list"), &held.head)?;
        self.remove_older(dir, &keep);
        Ok(())
    }

    /// Writes older list blocks into `dir/older/`, all or none: a list kept without its
    /// older lists could not be checked against later. Past [`MAX_OLDER_ON_DISK`], the
    /// older lists of names nobody follows go first, least recently kept first (such a name
    /// is then as if never seen: its next list is taken without a history to check).
    fn write_older(&self, dir: &Path, blocks: &[(Cid, Vec<u8>)]) -> std::io::Result<()> {
        let older = dir.join("older");
        let new: Vec<_> = blocks
            .iter()
            .filter(|(c, _)| !older.join(c.to_string()).exists())
            .collect();
        if new.is_empty() {
            return Ok(());
        }
        let need: u64 = new.iter().map(|(_, b)| b.len() as u64).sum();
        if self.older_on_disk.load(Ordering::Relaxed) + need > MAX_OLDER_ON_DISK {
            self.make_room(need, dir);
        }
        if self.older_on_disk.fetch_add(need, Ordering::Relaxed) + need > MAX_OLDER_ON_DISK {
            self.older_on_disk.fetch_sub(need, Ordering::Relaxed);
            return Err(std::io::Error::other(format!(
                "older lists take {MAX_OLDER_ON_DISK} bytes in R/names already, of followed names"
            )));
        }
        std::fs::create_dir_all(&older)?;
        for (i, (c, b)) in new.iter().enumerate() {
            if let Err(e) = write_atomic(&older.join(c.to_string()), b) {
                let unwritten: u64 = new[i..].iter().map(|(_, b)| b.len() as u64).sum();
                self.older_on_disk.fetch_sub(unwritten, Ordering::Relaxed);
                return Err(e);
            }
        }
        Ok(())
    }

    /// Forgets the lists of names nobody follows, least recently kept first, until `need`
    /// more bytes of older lists fit (never `except`'s).
    fn make_room(&self, need: u64, except: &Path) {
        let Ok(rd) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let mut names: Vec<(SystemTime, PathBuf)> = rd
            .flatten()
            .map(|e| e.path())
            .filter(|d| d != except && d.join("older").is_dir() && !d.join("follow").exists())
            .map(|d| {
                let t = std::fs::metadata(d.join("list"))
                    .and_then(|m| m.modified())
                    .unwrap_or(SystemTime::UNIX_EPOCH);
                (t, d)
            })
            .collect();
        names.sort();
        for (_, d) in names {
            if self.older_on_disk.load(Ordering::Relaxed) + need <= MAX_OLDER_ON_DISK {
                break;
            }
            log::info!("{}: its lists forgotten to make room", d.display());
            let _ = std::fs::remove_file(d.join("list"));
            self.remove_older(&d, &HashSet::new());
        }
    }

    /// Removes the older list blocks in `dir` not in `keep`.
    fn remove_older(&self, dir: &Path, keep: &HashSet<String>) {
        let Ok(rd) = std::fs::read_dir(dir.join("older")) else {
            return;
        };
        for e in rd.flatten() {
            if keep.contains(&*e.file_name().to_string_lossy()) {
                continue;
            }
            let size = e.metadata().map_or(0, |m| m.len());
            if std::fs::remove_file(e.path()).is_ok() {
                self.older_on_disk.fetch_sub(size, Ordering::Relaxed);
            }
        }
    }

    fn remember(&self, name: &Name, k: Arc<Known>) {
        let size = k.list_bytes();
        let mut guard = self.known.lock().expect("known");
        let (known, lists) = &mut *guard;
        // Never a record older than the one held (a copy read before a newer one was kept).
        if let Some((h, at, _)) = known.get_mut(name) {
            let (_, best) = record::better((&h.record, &h.bytes), (&k.record, &k.bytes));
            if best == h.bytes.as_slice() && h.bytes != k.bytes {
                *at = Instant::now();
                return;
            }
        }
        if let Some((_, _, old)) = known.insert(*name, (k, Instant::now(), size)) {
            *lists -= old;
        }
        *lists += size;
        // Past either bound, the least recently used names are dropped from memory, only
        // from memory: their files stay, so what was seen of them still holds.
        while known.len() > MAX_NAMES || *lists > MAX_HELD_LISTS {
            let oldest = known
                .iter()
                .filter(|(n, _)| *n != name)
                .min_by_key(|(_, (_, at, _))| *at)
                .map(|(n, _)| *n);
            let Some(o) = oldest else { break };
            if let Some((_, _, s)) = known.remove(&o) {
                *lists -= s;
            }
        }
    }

    /// A block: from the store, else from the network within `timeout`.
    fn block_within(&self, cid: &Cid, timeout: Duration) -> Result<Vec<u8>, String> {
        if let Ok(Some(b)) = self.store.get(cid) {
            return Ok(b.to_vec());
        }
        let client = self.client.as_ref().ok_or(format!("{cid} is not here"))?;
        client
            .want_blocking(*cid, timeout)
            .map(|b| b.to_vec())
            .ok_or_else(|| format!("no peer sent {cid} in time"))
    }

    /// What a new record's value points to, its list checked against the last good one
    /// (blocking: it may fetch list blocks, within one fetch timeout in all), and the list
    /// block to keep if it is a new good one.
    fn target_blocking(
        &self,
        name: &Name,
        value: &str,
    ) -> Result<(Target, Option<HeldList>), String> {
        let Some(cid) = list_value(value) else {
            return Ok((Target::Path(value.to_owned()), None));
        };
        let deadline = Instant::now() + self.timeout;
        let block = |c: &Cid| {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!("the chain was not read within {:?}", self.timeout));
            }
            self.block_within(c, left)
        };
        // A kept list that cannot be read whole (its older lists lost) holds back any new
        // one: taking the next as if none had been seen would skip the history check.
        let good = self
            .good_list_with(name, block)
            .map_err(|e| format!("{name}: the last good list cannot be read ({e}); `cairn name accept {name}` takes the newest as it is"))?;
        if let Some((list, good_cid)) = &good {
            if *good_cid == cid {
                let t = Target::Releases {
                    list: Arc::new(list.clone()),
                    cid,
                    rewritten: None,
                };
                return Ok((t, None));
            }
        }
        // Whether a name with no list yet points to one is asked for a few seconds only: a
        // plain name of an app nobody near serves must still resolve.
        let first = match &good {
            Some(_) => block(&cid),
            None => self.block_within(&cid, self.timeout.min(PROBE)),
        };
        let bytes = match first {
            Ok(b) => b,
            // Nothing to check it against: what it is will be seen when it is read.
            Err(e) if good.is_none() => {
                log::info!("{name} points to {cid}, not fetched ({e}): taken as a path");
                return Ok((Target::Path(value.to_owned()), None));
            }
            Err(e) => return Err(e),
        };
        let mut older = Vec::new();
        let loaded = List::load(&bytes, Some(name), |c| {
            let b = block(c)?;
            older.push((*c, b.clone()));
            Ok(b)
        });
        let list = match loaded {
            Ok(l) => l,
            Err(ListError::NotAList) => return Ok((Target::Path(value.to_owned()), None)),
            Err(e) => return Err(format!("{name} points to {cid}: {e}")),
        };
        if let Some((old, old_cid)) = good {
            if let Err(why) = list.extends(cid, &old_cid, MAX_WALK, block) {
                let why = format!(
                    "rewritten history: the newest list {cid} does not extend {old_cid}, the last seen ({why}); `cairn name accept {name}` takes it"
                );
                log::warn!("{name}: {why}");
                let t = Target::Releases {
                    list: Arc::new(old),
                    cid: old_cid,
                    rewritten: Some(why),
                };
                return Ok((t, None));
            }
        }
        let t = Target::Releases {
            list: Arc::new(list),
            cid,
            rewritten: None,
        };
        Ok((t, Some(HeldList { head: bytes, older })))
    }

    /// Keeps `k` (with `list`, a new good list block) as what is held for `name`, unless
    /// something better was kept meanwhile; returns what is held after.
    fn keep(&self, name: &Name, k: Known, list: Option<HeldList>) -> Result<Arc<Known>, String> {
        let _w = self.writing.lock().expect("writing");
        if let Some(h) = self.held(name) {
            let (_, best) = record::better((&h.record, &h.bytes), (&k.record, &k.bytes));
            if best == h.bytes.as_slice() && h.bytes != k.bytes {
                return Ok(h);
            }
        }
        // A process without a daemon only reads; past the bound, new names stay in memory.
        let dir = self.name_dir(name);
        let persist = self.client.is_some()
            && (dir.exists() || self.on_disk.load(Ordering::Relaxed) < MAX_NAMES);
        if persist {
            if !dir.exists() {
                self.on_disk.fetch_add(1, Ordering::Relaxed);
            }
            std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
            match (&list, &k.target) {
                (Some(held), _) => self.write_list(&dir, held).map_err(|e| e.to_string())?,
                // The owner moved the name off a list: its last list no longer applies.
                (None, Target::Path(_)) => {
                    let _ = std::fs::remove_file(dir.join("list"));
                    self.remove_older(&dir, &HashSet::new());
                }
                _ => {}
            }
            write_atomic(&dir.join("record"), &k.bytes).map_err(|e| e.to_string())?;
        } else if self.client.is_some() {
            log::warn!(
                "{name}: {MAX_NAMES} names are kept in R/names already; this one only in memory"
            );
        }
        let k = Arc::new(k);
        self.remember(name, k.clone());
        if let (Some(_), Target::Releases { cid, .. }) = (&list, &k.target) {
            self.mirror_pin(name, Some(cid));
        }
        Ok(k)
    }

    /// Takes a verified record of `name` if it is newer than what is held; returns what is
    /// held after. `confirms`: it came from a DHT peer, so it may confirm that the record is
    /// still the newest (a peer asked directly does not: connections cost a Sybil nothing,
    /// a place near the name's key in the DHT does).
    async fn learn(
        self: &Arc<Self>,
        name: Name,
        rec: Record,
        bytes: Vec<u8>,
        from: Option<String>,
        confirms: bool,
    ) -> Result<Arc<Known>, String> {
        let held = self.held(&name);
        if let Some(h) = &held {
            let (_, best) = record::better((&h.record, &h.bytes), (&rec, &bytes));
            if best == h.bytes.as_slice() {
                // Nothing newer. Only a peer sending the very record held confirms it is
                // still the newest (this node's own DHT copy, or an older record, does not).
                if !confirms || bytes != h.bytes {
                    return Ok(h.clone());
                }
                let k = Arc::new(Known {
                    checked: SystemTime::now(),
                    from,
                    ..(**h).clone()
                });
                self.remember(&name, k.clone());
                return Ok(k);
            }
        }
        let this = self.clone();
        let value = rec.value.clone();
        let (target, list) =
            tokio::task::spawn_blocking(move || this.target_blocking(&name, &value))
                .await
                .map_err(|e| e.to_string())??;
        // Fresh only if a peer sent it: a record a local user handed over, or one found in
        // this node's own DHT store, is taken (it verified, it is newer) but not trusted to
        // be the newest until the network is asked.
        let checked = if confirms {
            SystemTime::now()
        } else {
            SystemTime::UNIX_EPOCH
        };
        let k = Known {
            record: rec,
            bytes,
            target,
            checked,
            from,
        };
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.keep(&name, k, list))
            .await
            .map_err(|e| e.to_string())?
    }

    /// Resolves `name`: the newest valid record the network and this node know, never one
    /// older than held, and how fresh it is. `Ok(None)`: no record anywhere.
    pub async fn resolve(
        self: &Arc<Self>,
        name: Name,
        mode: Mode,
    ) -> Result<Option<(Arc<Known>, Freshness)>, String> {
        self.resolve_telling(name, mode).await.map(|(k, _)| k)
    }

    /// As [`Naming::resolve`], with what the lookup refused when it found nothing valid
    /// (records that did not verify, and why): so that "no record" and "only invalid
    /// records" read differently. Neither is an error: a forgery proves nothing, and
    /// failing on one would let any peer stop a name's first publication.
    pub async fn resolve_telling(
        self: &Arc<Self>,
        name: Name,
        mode: Mode,
    ) -> Result<
        (
            Option<(Arc<Known>, Freshness)>,
            cairn_net::dht::ipns::Rejected,
        ),
        String,
    > {
        let mut refused = cairn_net::dht::ipns::Rejected::default();
        let held = self.held(&name);
        if let Some(h) = &held {
            if !mode.nocache && self.freshness(h) == Freshness::Fresh {
                return Ok((Some((h.clone(), Freshness::Fresh)), refused));
            }
        }
        // Offline, the node's own DHT store is still asked (records peers put here).
        if let Some(client) = &self.client {
            let asked = tokio::time::timeout(
                self.timeout,
                client.resolve_name(name, mode.nocache, mode.offline),
            )
            .await;
            match asked {
                Ok(Ok(cairn_net::Resolved {
                    found: Some(found), ..
                })) => {
                    let confirms = found.from.is_some() && !found.direct;
                    let from = found.from.map(|p| p.to_string());
                    let k = self
                        .learn(name, found.record, found.bytes, from, confirms)
                        .await?;
                    let f = self.freshness(&k);
                    return Ok((Some((k, f)), refused));
                }
                Ok(Ok(cairn_net::Resolved {
                    found: None,
                    rejected,
                })) => {
                    if rejected.offences + rejected.others > 0 {
                        log::info!(
                            "resolving {name}: {} records refused (the last: {})",
                            rejected.offences + rejected.others,
                            rejected.why.clone().unwrap_or_default()
                        );
                    }
                    refused = rejected;
                }
                Ok(Err(e)) => log::debug!("resolving {name}: {e}"),
                Err(_) => log::debug!("resolving {name}: timed out"),
            }
        }
        Ok((
            held.map(|h| {
                let f = self.freshness(&h);
                (h, f)
            }),
            refused,
        ))
    }

    /// Whether local user `uid` may publish a record of `name` through the node: at most
    /// [`PUBLISH_PER_USER`] names each (root and the daemon's user: no limit), counted
    /// from the daemon's start. The signature is the authority; this bounds what one user
    /// can make the node keep and put for others.
    pub fn may_publish(&self, uid: u32, admin: bool, name: &Name) -> Result<(), String> {
        if admin {
            return Ok(());
        }
        let mut p = self.publishers.lock().expect("publishers");
        if !p.contains_key(&uid) && p.len() >= PUBLISHERS {
            return Err("too many local users have published through this node".into());
        }
        let mine = p.entry(uid).or_default();
        if mine.contains(name) {
            return Ok(());
        }
        if mine.len() >= PUBLISH_PER_USER {
            return Err(format!(
                "you have published {PUBLISH_PER_USER} names through this node, the most one user may"
            ));
        }
        mine.insert(*name);
        Ok(())
    }

    /// A record published through this node (already verified and kept by the DHT).
    pub async fn published(self: &Arc<Self>, name: Name, bytes: Vec<u8>) -> Result<(), String> {
        let rec = record::verify(&name, &bytes, now_nanos()).map_err(|e| e.to_string())?;
        self.learn(name, rec, bytes, None, false).await.map(|_| ())
    }

    /// Forgets the last good list of `name` and takes the one its newest record points to
    /// as it is. Returns whether there was one to forget.
    pub async fn accept(self: &Arc<Self>, name: Name) -> Result<bool, String> {
        let Some(held) = self.held(&name) else {
            return Ok(false);
        };
        let had = std::fs::remove_file(self.name_dir(&name).join("list")).is_ok();
        self.remove_older(&self.name_dir(&name), &HashSet::new());
        let this = self.clone();
        let value = held.record.value.clone();
        let (target, list) =
            tokio::task::spawn_blocking(move || this.target_blocking(&name, &value))
                .await
                .map_err(|e| e.to_string())??;
        let _w = self.writing.lock().expect("writing");
        if self.held(&name).is_some_and(|h| h.bytes != held.bytes) {
            return Err(format!("{name} changed meanwhile; accept it again"));
        }
        if let Some(held) = list {
            self.write_list(&self.name_dir(&name), &held)
                .map_err(|e| e.to_string())?;
        }
        self.remember(
            &name,
            Arc::new(Known {
                target,
                ..(*held).clone()
            }),
        );
        Ok(had)
    }

    /// Who follows `name` and whether mirrored, if it is followed.
    fn follow_of(&self, name: &Name) -> Option<(u32, bool)> {
        let text = read_bounded(&self.name_dir(name).join("follow"), 64)?;
        let text = String::from_utf8(text).ok()?;
        let (uid, how) = text.trim().split_once(' ')?;
        Some((uid.parse().ok()?, how == "mirror"))
    }

    /// The names followed, with who asked and whether mirrored.
    pub fn followed(&self) -> Vec<(Name, u32, bool)> {
        let Ok(rd) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        rd.flatten()
            .filter_map(|e| {
                let name: Name = e.file_name().to_str()?.parse().ok()?;
                let text = read_bounded(&e.path().join("follow"), 64)?;
                let text = String::from_utf8(text).ok()?;
                let (uid, how) = text.trim().split_once(' ')?;
                Some((name, uid.parse().ok()?, how == "mirror"))
            })
            .collect()
    }

    /// Follows `name` for user `uid` (resolving it now, so there is something to keep).
    pub async fn follow(
        self: &Arc<Self>,
        name: Name,
        uid: u32,
        admin: bool,
        mirror: bool,
    ) -> Result<Arc<Known>, String> {
        if mirror && !admin {
            return Err(
                "--mirror pins everything a name releases: root or the daemon's user only".into(),
            );
        }
        // Checked before the (slow) resolution, and again with the write, under one lock.
        self.may_follow(name, uid, admin)?;
        let (k, _) = self
            .resolve(name, Mode::default())
            .await?
            .ok_or_else(|| format!("{name}: no valid record found"))?;
        {
            let _f = self.following.lock().expect("following");
            self.may_follow(name, uid, admin)?;
            let dir = self.name_dir(&name);
            std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
            let how = if mirror { "mirror" } else { "shallow" };
            write_atomic(&dir.join("follow"), format!("{uid} {how}\n").as_bytes())
                .map_err(|e| e.to_string())?;
        }
        if let Target::Releases { cid, .. } = &k.target {
            self.mirror_pin(&name, Some(cid));
        }
        // Served from here from now on.
        if let Some(c) = &self.client {
            if let Err(e) = c.publish_name(name, k.bytes.clone(), true).await {
                log::debug!("keeping {name}'s record: {e}");
            }
        }
        Ok(k)
    }

    /// Whether `uid` may follow `name` (again): not another user's follow, within the
    /// per-user and node-wide counts.
    fn may_follow(&self, name: Name, uid: u32, admin: bool) -> Result<(), String> {
        let followed = self.followed();
        if let Some((_, by, _)) = followed.iter().find(|(n, _, _)| *n == name) {
            if *by != uid && !admin {
                return Err(format!("{name} is followed already (by user {by})"));
            }
            return Ok(());
        }
        let mine = followed.iter().filter(|(_, u, _)| *u == uid).count();
        if mine >= self.cfg.follow_per_user {
            return Err(format!(
                "you follow {mine} names already, the most this node allows one user (names.follow_per_user)"
            ));
        }
        if followed.len() >= MAX_NAMES / 2 {
            return Err(format!(
                "this node follows {} names already",
                followed.len()
            ));
        }
        Ok(())
    }

    /// Stops following `name`; only who followed it, root or the daemon's user may.
    pub fn unfollow(&self, name: &Name, uid: u32, admin: bool) -> Result<bool, String> {
        let Some((_, by, _)) = self.followed().into_iter().find(|(n, _, _)| n == name) else {
            return Ok(false);
        };
        if by != uid && !admin {
            return Err(format!("{name} is followed by user {by}, not by you"));
        }
        std::fs::remove_file(self.name_dir(name).join("follow")).map_err(|e| e.to_string())?;
        self.mirror_pin(name, None);
        Ok(true)
    }

    /// A mirrored name's pin: on `list` (its newest list, and through it every version),
    /// or none.
    fn mirror_pin(&self, name: &Name, list: Option<&Cid>) {
        let mirrored = self.follow_of(name).is_some_and(|(_, m)| m);
        let layout = self.store.layout();
        let user = cairn_gc::pins::current_user();
        let prog = format!("names-{name}");
        // The pins of this name live in their own directory: the old one goes first.
        if let Ok((pins, _)) = cairn_gc::pins::list(layout) {
            for p in pins.iter().filter(|p| p.prog == prog) {
                if Some(&p.cid) != list || !mirrored {
                    let _ = cairn_gc::pins::remove(layout, &user, Some(&prog), &p.cid);
                }
            }
        }
        if let (true, Some(cid)) = (mirrored, list) {
            if let Err(e) = cairn_gc::pins::add(layout, &user, &prog, cid) {
                log::warn!("pinning {name}'s list: {e}");
            }
            self.mirror_fetch(name, *cid);
        }
    }

    /// Fetches everything a mirrored name's list reaches (its versions, its older lists)
    /// in the background.
    fn mirror_fetch(&self, name: &Name, list: Cid) {
        let (Some(rt), Some(client)) = (&self.rt, &self.client) else {
            return;
        };
        let (client, store, timeout, name) =
            (client.clone(), self.store.clone(), self.timeout, *name);
        rt.spawn(async move {
            match cairn_net::fetch::fetch_dag(&client, &store, list, 64, timeout, &|_| {}).await {
                Ok(p) => log::info!("mirrored {name}: {p:?}"),
                Err(e) => log::warn!("mirroring {name}: {e}"),
            }
        });
    }

    /// Puts every followed name's record on the DHT again, and re-signs the names of this
    /// daemon's user (keys with a published head) with a new validity. Returns how many
    /// records went out.
    pub async fn republish(self: &Arc<Self>) -> usize {
        let Some(client) = self.client.clone() else {
            return 0;
        };
        let mut n = 0;
        let mut own = HashSet::new();
        // Paced: a peer takes 100 puts a second from one sender before it calls it a flood,
        // and in a small network every peer is among every name's closest.
        let mut pace = tokio::time::interval(Duration::from_secs(1) / REPUBLISH_PER_SECOND);
        // A late tick delays the ones after it, never a burst to catch up.
        pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        if let Ok(ks) = cairn_names::keys::Keystore::open_default() {
            for r in ks.resigned(now_nanos()) {
                pace.tick().await;
                own.insert(r.name);
                match client.publish_name(r.name, r.record.clone(), false).await {
                    Ok(()) => {
                        n += 1;
                        let _ = self.published(r.name, r.record).await;
                    }
                    Err(e) => log::info!("republishing {}: {e}", r.name),
                }
            }
        }
        // Followed names, REPUBLISH_AT_ONCE at a time. Each is first brought up to the
        // newest record this node has seen of it (held, or put into its DHT store by the
        // owner or others): a follower never puts back an older one than it knows. A lookup
        // on the network per name would cost about a second each (`resolve`'s wait for
        // three answers); owners put new records at the closest peers, followers among them.
        let mut running = tokio::task::JoinSet::new();
        for (name, _, _) in self.followed() {
            if own.contains(&name) {
                continue;
            }
            pace.tick().await;
            if running.len() >= REPUBLISH_AT_ONCE {
                n += running.join_next().await.and_then(|r| r.ok()).unwrap_or(0);
            }
            let (this, client) = (self.clone(), client.clone());
            running.spawn(async move {
                // Not from a peer: taken if newer, never counted as a confirmation.
                if let Ok(cairn_net::Resolved {
                    found: Some(found), ..
                }) = client.resolve_name(name, false, true).await
                {
                    let _ = this
                        .learn(name, found.record, found.bytes, None, false)
                        .await;
                }
                let Some(k) = this.held(&name) else { return 0 };
                if this.freshness(&k) == Freshness::Expired {
                    return 0;
                }
                this.restore_list(&name);
                match client.publish_name(name, k.bytes.clone(), false).await {
                    Ok(()) => 1,
                    Err(e) => {
                        log::info!("republishing {name}: {e}");
                        0
                    }
                }
            });
        }
        while let Some(r) = running.join_next().await {
            n += r.unwrap_or(0);
        }
        n
    }

    /// Puts a followed name's last good list back into the store if the collector took it
    /// (the list file is the root that keeps it; the store is where peers are served from).
    fn restore_list(&self, name: &Name) {
        let dir = self.name_dir(name);
        let Some(bytes) = read_bounded(&dir.join("list"), MAX_LIST as u64) else {
            return;
        };
        let mut blocks = vec![(list_cid(&bytes), bytes)];
        if let Ok(rd) = std::fs::read_dir(dir.join("older")) {
            blocks.extend(
                rd.flatten()
                    .take(MAX_OLDER)
                    .filter_map(|e| read_bounded(&e.path(), MAX_LIST as u64))
                    .map(|b| (list_cid(&b), b)),
            );
        }
        for (cid, bytes) in blocks {
            if !self.store.has(&cid).unwrap_or(true) {
                match self.store.put_cache(&cid, &bytes) {
                    Ok(_) => log::info!("{name}: its list {cid} is served again"),
                    Err(e) => log::warn!("{name}: restoring its list {cid}: {e}"),
                }
            }
        }
    }

    /// At start, followed names' records are kept in the DHT again (served to peers); then
    /// every `names.republish` they are put on the DHT, once a peer is connected.
    pub async fn run(self: Arc<Self>) {
        let Some(client) = self.client.clone() else {
            return;
        };
        for (name, _, _) in self.followed() {
            self.restore_list(&name);
            if let Some(k) = self.held(&name) {
                let _ = client.publish_name(name, k.bytes.clone(), true).await;
            }
        }
        let Some(every) = self.cfg.republish else {
            return;
        };
        loop {
            while client.peers().await.map(|p| p.is_empty()).unwrap_or(true) {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            let t = Instant::now();
            let n = self.republish().await;
            log::info!(
                "republished {n} names in {:.1} s",
                t.elapsed().as_secs_f64()
            );
            tokio::time::sleep(every).await;
        }
    }

    /// `versions.json` of a list.
    fn versions_json(name: &Name, list: &List, cid: &Cid, latest: Option<&str>) -> Vec<u8> {
        let versions: Vec<serde_json::Value> = list
            .versions
            .iter()
            .map(|r| {
                json!({"version": r.v, "cid": r.cid.to_string(), "at": r.at,
                       "notes": r.notes, "yanked": r.yanked})
            })
            .collect();
        let mut v = serde_json::to_vec_pretty(&json!({
            "name": name.to_string(), "list": cid.to_string(), "seq": list.seq,
            "latest": latest, "versions": versions,
        }))
        .expect("json");
        v.push(b'\n');
        v
    }

    /// What the mount shows for a held name.
    fn named(&self, name: &Name, k: &Known, f: Freshness) -> Option<Named> {
        match &k.target {
            Target::Path(v) if f != Freshness::Expired => link_target(v).map(Named::Link),
            Target::Path(_) => None,
            Target::Releases { list, cid, .. } => {
                let expired = f == Freshness::Expired;
                let mut guard = self.shown.lock().expect("shown");
                let (shown, bytes) = &mut *guard;
                if let Some((c, e, n)) = shown.get(name) {
                    if c == cid && *e == expired {
                        return Some(n.clone());
                    }
                }
                let latest = list.latest().filter(|_| !expired).map(|r| r.v.clone());
                let n = Named::Releases(Arc::new(Versions {
                    versions: list.versions.iter().map(|r| (r.v.clone(), r.cid)).collect(),
                    json: Self::versions_json(name, list, cid, latest.as_deref()),
                    latest,
                }));
                // Bounded as the lists held are: past it, built again as they are used.
                let size = match &n {
                    Named::Releases(v) => v.json.len() + 64 * v.versions.len(),
                    Named::Link(t) => t.len(),
                };
                if shown.len() >= MAX_NAMES || *bytes + size > MAX_HELD_LISTS {
                    shown.clear();
                    *bytes = 0;
                }
                *bytes += size;
                shown.insert(*name, (*cid, expired, n.clone()));
                Some(n)
            }
        }
    }

    /// Asks the network again for `name` in the background (once at a time per name).
    fn refresh(self: &Arc<Self>, name: Name) {
        let Some(rt) = &self.rt else { return };
        if self.client.is_none() || !self.refreshing.lock().expect("refreshing").insert(name) {
            return;
        }
        let this = self.clone();
        /// Takes the name out of `refreshing` however the task ends.
        struct Done(Arc<Naming>, Name);
        impl Drop for Done {
            fn drop(&mut self) {
                if let Ok(mut r) = self.0.refreshing.lock() {
                    r.remove(&self.1);
                }
            }
        }
        rt.spawn(async move {
            let _done = Done(this.clone(), name);
            let mode = Mode {
                nocache: true,
                offline: false,
            };
            if let Err(e) = this.resolve(name, mode).await {
                log::info!("refreshing {name}: {e}");
            }
        });
    }

    /// The mount's lookup of `R/store/name/<s>` (on a FUSE thread).
    fn mount_lookup(self: &Arc<Self>, s: &str) -> std::io::Result<Option<Named>> {
        if let Some(n) = self.aliases().get(s) {
            return Ok(Some(Named::Link(n.to_string())));
        }
        let Ok(name) = s.parse::<Name>() else {
            return Ok(None);
        };
        if name.to_string() != s {
            return Ok(Some(Named::Link(name.to_string())));
        }
        if let Some(h) = self.held(&name) {
            let f = self.freshness(&h);
            if f != Freshness::Fresh {
                self.refresh(name);
            }
            if f != Freshness::Expired || matches!(h.target, Target::Releases { .. }) {
                return Ok(self.named(&name, &h, f));
            }
        }
        let Some(rt) = &self.rt else {
            return Ok(None);
        };
        if self.client.is_none() {
            return Ok(None);
        }
        if self.waiting.fetch_add(1, Ordering::SeqCst) >= MAX_WAITING {
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            return Err(std::io::Error::from_raw_os_error(libc::EAGAIN));
        }
        let r = rt.block_on(self.resolve(name, Mode::default()));
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        match r {
            Ok(Some((k, f))) => Ok(self.named(&name, &k, f)),
            Ok(None) => Ok(None),
            Err(e) => {
                log::warn!("{name}: {e}");
                Err(std::io::Error::from_raw_os_error(libc::EIO))
            }
        }
    }

    /// `R/store/name/`'s listing: aliases (links) and followed names held.
    fn mount_list(&self) -> Vec<(String, Named)> {
        let mut out: Vec<(String, Named)> = self
            .aliases()
            .iter()
            .map(|(a, n)| (a.clone(), Named::Link(n.to_string())))
            .collect();
        for (name, _, _) in self.followed() {
            if let Some(k) = self.held(&name) {
                if let Some(n) = self.named(&name, &k, self.freshness(&k)) {
                    out.push((name.to_string(), n));
                }
            }
        }
        out
    }
}

/// The mount's view of the names ([`NameSource`]).
pub struct MountNames(pub Arc<Naming>);

impl NameSource for MountNames {
    fn list(&self) -> Vec<(String, Named)> {
        self.0.mount_list()
    }

    fn lookup(&self, name: &str) -> std::io::Result<Option<Named>> {
        self.0.mount_lookup(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_stay_in_the_store() {
        let cid = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku";
        assert_eq!(
            link_target(&format!("/ipfs/{cid}")).unwrap(),
            format!("../{cid}")
        );
        assert_eq!(
            link_target(&format!("/ipfs/{cid}/bin/hello")).unwrap(),
            format!("../{cid}/bin/hello")
        );
        let app = Cid::new_v1(codes::DAG_CBOR, HashAlg::Sha2_256.digest(b"an app"));
        assert_eq!(
            link_target(&format!("/ipfs/{app}/bin/hello")).unwrap(),
            format!("../app/{}/bin/hello", cairn_store::block_name(&app))
        );
        for bad in [
            format!("/ipfs/{cid}/../../etc/passwd"),
            format!("/ipfs/{cid}/a/./b"),
            format!("/ipfs/{cid}//b"),
            "/ipfs/notacid".to_owned(),
            "/etc/passwd".to_owned(),
            "/ipns/notaname/x".to_owned(),
        ] {
            assert_eq!(link_target(&bad), None, "{bad}");
        }
    }

    #[test]
    fn one_user_publishes_a_bounded_number_of_names() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::init(dir.path()).unwrap());
        let n = Naming::open(
            dir.path(),
            None,
            store,
            Duration::from_secs(1),
            NamesConfig::default(),
            None,
        )
        .unwrap();
        let name = || Name::of(&cairn_net::Keypair::generate_ed25519().public());
        let first = name();
        n.may_publish(1000, false, &first).unwrap();
        for _ in 1..PUBLISH_PER_USER {
            n.may_publish(1000, false, &name()).unwrap();
        }
        let e = n.may_publish(1000, false, &name()).unwrap_err();
        assert!(e.contains("the most one user may"), "{e}");
        // A name already counted, another user, root: still allowed.
        n.may_publish(1000, false, &first).unwrap();
        n.may_publish(1001, false, &name()).unwrap();
        n.may_publish(0, true, &name()).unwrap();
    }

    #[test]
    fn aliases_are_checked() {
        assert!(check_alias("hello").is_ok());
        assert!(check_alias("my-tool_2.0").is_ok());
        for bad in ["", ".hidden", "a/b", "über", &"a".repeat(65)] {
            assert!(check_alias(bad).is_err(), "{bad}");
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("aliases.toml");
        let name: Name = Name::of(&cairn_net::Keypair::generate_ed25519().public());
        let mut a = BTreeMap::new();
        a.insert("hello".to_owned(), name);
        write_aliases(&path, &a).unwrap();
        assert_eq!(read_aliases(&path).unwrap(), a);
        std::fs::write(&path, "hello = \"nope\"\n").unwrap();
        assert!(read_aliases(&path).unwrap_err().contains("not a name"));
    }
}
