//! Pins are symlinks under `R/pins/per-user/{user}/{prog}/`:
//!
//! - a direct pin `{cid}` -> `R/store/{cid}` keeps the whole DAG under the CID;
//! - an auto pin `auto/{hash}` -> a user's own symlink (like `./result`), which points into
//!   `R/store/{cid}`: the pin lasts as long as the user's symlink points there.
//!
//! A symlink made with plain `ln -s` counts exactly like one made by `cairn pin add`: the CID
//! is read from the link's target (the first path component that is a CID), or from the
//! link's own name when the target names none.
//!
//! `R/pins/per-user` is sticky and world-writable, so anything below it may have been put
//! there by any user. The walker ([`PinWalker`]) therefore opens every directory relative to
//! its parent with `O_NOFOLLOW` and never follows a symlink where a directory belongs (it
//! reports it as [`Refused`]); it reads pins with `readlinkat` and removes stale ones with
//! `unlinkat`, relative to the directory it listed them in, and removes only entries that are
//! symlinks themselves. The crate docs state the whole rule.

use std::{
    collections::HashMap,
    ffi::{OsStr, OsString},
    fmt, fs, io,
    path::{Component, Path, PathBuf},
    rc::Rc,
};

use cairn_store::{Cid, HashAlg, Layout};

use crate::{
    dir::{self, Dir, DirCache, Kind, Listed, Stat},
    GcError,
};

/// How deep the walker descends under `R/profiles/per-user` (a generation is three levels
/// down); deeper directories are reported, not entered, so a walk holds a bounded number of
/// descriptors.
pub const MAX_PROFILE_DEPTH: usize = 16;

/// What a pin is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PinKind {
    Direct,
    /// An auto pin, through the user's symlink at `link`.
    Auto {
        link: PathBuf,
    },
}

/// One pin found on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pin {
    pub user: String,
    pub prog: String,
    pub cid: Cid,
    /// The pin's own symlink under `R/pins`.
    pub path: PathBuf,
    pub kind: PinKind,
}

/// A symlink under `R/pins` that pins nothing any more.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dangling {
    pub path: PathBuf,
    pub why: &'static str,
}

/// Something a walk found where it does not belong and left alone: not followed, not opened,
/// not deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub path: PathBuf,
    pub why: Refusal,
}

/// Why a walk left something alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// A symlink where a directory belongs (a user, a program, `auto`, the temp pin
    /// directory's place): never followed.
    SymlinkForDirectory,
    /// Something else that is not a directory where a directory belongs.
    NotADirectory { found: &'static str },
    /// Not a symlink in an `auto` directory: not a pin, and not deleted.
    NotASymlink { found: &'static str },
    /// Not a regular file in `R/pins/temp`: not opened, not deleted.
    NotATempFile { found: &'static str },
    /// A user's directory (or one inside it) owned by neither that user nor root. Its pins
    /// count; no collector running as another user than its owner deletes anything in it.
    NotTheUsers {
        user: String,
        owner: u32,
        user_uid: Option<u32>,
    },
    /// A pin link that pins nothing, left in place because its directory is not this
    /// process's to clean: it runs neither as the directory's owner nor as root in a
    /// directory that belongs to the user it is named after (see the crate docs).
    NotRemoved { why: &'static str },
    /// Deeper than [`MAX_PROFILE_DEPTH`] under `R/profiles/per-user`: not entered.
    TooDeep,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::SymlinkForDirectory => {
                write!(f, "a symlink where a directory belongs: not followed")
            }
            Refusal::NotADirectory { found } => {
                write!(f, "{found} where a directory belongs: not entered")
            }
            Refusal::NotASymlink { found } => {
                write!(
                    f,
                    "{found} in an auto pin directory: not a pin, not deleted"
                )
            }
            Refusal::NotATempFile { found } => {
                write!(f, "{found} among temp pins: not opened, not deleted")
            }
            Refusal::NotTheUsers {
                user,
                owner,
                user_uid,
            } => {
                let theirs = user_uid.map_or(String::new(), |u| format!(" (uid {u})"));
                write!(
                    f,
                    "owned by uid {owner}, not by {user}{theirs} or root: its pins count, \
                     nothing in it is deleted"
                )
            }
            Refusal::NotRemoved { why } => {
                write!(
                    f,
                    "pins nothing ({why}) but is left in place: only the owner of its \
                     directory may clean it (or root, when that is the user it is named after)"
                )
            }
            Refusal::TooDeep => write!(
                f,
                "more than {MAX_PROFILE_DEPTH} levels deep in profiles: not entered"
            ),
        }
    }
}

/// Everything one walk of `R/pins/per-user` found.
#[derive(Debug, Default, Clone)]
pub struct Walk {
    pub pins: Vec<Pin>,
    /// Pin symlinks that pin nothing (removed, if the walk was asked to remove them).
    pub dangling: Vec<Dangling>,
    pub refused: Vec<Refused>,
    /// For the collector, which walks once per batch and needs only the CIDs: they go here
    /// instead of into `pins` ([`PinWalker::walk_cids`]).
    pub(crate) cids: Option<Vec<Cid>>,
}

/// The first component of `target` that parses as a CID.
pub fn cid_in_path(target: &Path) -> Option<Cid> {
    target.components().find_map(|c| match c {
        Component::Normal(s) => s.to_str()?.parse::<Cid>().ok(),
        _ => None,
    })
}

/// The name of the user running this process.
pub fn current_user() -> String {
    // SAFETY: getpwuid_r with a buffer we own; the result points into it.
    unsafe {
        let uid = libc::geteuid();
        let mut pw: libc::passwd = std::mem::zeroed();
        let mut buf = vec![0 as libc::c_char; 4096];
        let mut out: *mut libc::passwd = std::ptr::null_mut();
        if libc::getpwuid_r(uid, &mut pw, buf.as_mut_ptr(), buf.len(), &mut out) == 0
            && !out.is_null()
        {
            if let Ok(name) = std::ffi::CStr::from_ptr(pw.pw_name).to_str() {
                return name.to_owned();
            }
        }
        uid.to_string()
    }
}

fn check_component(what: &str, s: &str) -> Result<(), GcError> {
    if s.is_empty() || s == "." || s == ".." || s.contains('/') || s.contains('\0') || s == "auto" {
        return Err(GcError::BadName {
            what: what.to_owned(),
            name: s.to_owned(),
        });
    }
    Ok(())
}

fn to_string(s: &OsStr) -> String {
    s.to_string_lossy().into_owned()
}

/// Opens one of the fixed directories of the root (`pins`, `per-user`, `temp`, `profiles`)
/// in `parent`. Only the owner of the root can change these, so a symlink here is a broken
/// setup, and an error: cairn neither follows it nor collects without it. `Ok(None)` if it
/// does not exist.
pub(crate) fn open_fixed(parent: &Dir, name: &str) -> Result<Option<Dir>, GcError> {
    match parent.open_dir(OsStr::new(name)) {
        Ok(d) => Ok(Some(d)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) if dir::not_a_dir(&e) => Err(GcError::NotADirectory {
            path: parent.join(OsStr::new(name)),
        }),
        Err(e) => Err(GcError::io(parent.join(OsStr::new(name)), e)),
    }
}

/// Opens `R/pins/per-user`, if there is one.
fn open_per_user(layout: &Layout) -> Result<Option<Dir>, GcError> {
    let root = Dir::open_path(layout.root()).map_err(|e| GcError::io(layout.root(), e))?;
    match open_fixed(&root, "pins")? {
        Some(pins) => open_fixed(&pins, "per-user"),
        None => Ok(None),
    }
}

/// Opens (creating it if needed) the directory `name` in `parent`, never through a symlink.
fn open_or_make(parent: &Dir, name: &str) -> Result<Dir, GcError> {
    let os = OsStr::new(name);
    let path = parent.join(os);
    match parent.mkdir(os, 0o755) {
        Ok(()) => {
            let d = parent.open_dir(os).map_err(|e| GcError::io(&path, e))?;
            // Readable by the collector and by `pin ls` of every user, whatever the umask.
            d.chmod(0o755).map_err(|e| GcError::io(&path, e))?;
            return Ok(d);
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(GcError::io(&path, e)),
    }
    parent.open_dir(os).map_err(|e| {
        if dir::not_a_dir(&e) {
            GcError::NotADirectory { path: path.clone() }
        } else {
            GcError::io(&path, e)
        }
    })
}

/// Fails unless this process may write pins in `user_dir` for `user`: it owns the directory,
/// or it is root and the directory belongs to root or to `user`.
fn check_owner(user_dir: &Dir, user: &str) -> Result<(), GcError> {
    let st = user_dir
        .stat()
        .map_err(|e| GcError::io(user_dir.path(), e))?;
    let me = dir::euid();
    let ok = st.uid == me || (me == 0 && (st.uid == 0 || dir::uid_of(user) == Some(st.uid)));
    if ok {
        Ok(())
    } else {
        Err(GcError::NotYours {
            path: user_dir.path().to_owned(),
            owner: st.uid,
            me,
        })
    }
}

/// `R/pins/per-user/{user}/{prog}`, created if needed and opened without following symlinks.
/// The user directory must be the caller's (see [`check_owner`]).
fn prog_dir(layout: &Layout, user: &str, prog: &str) -> Result<Dir, GcError> {
    check_component("user", user)?;
    check_component("program", prog)?;
    let per_user = open_per_user(layout)?
        .ok_or_else(|| GcError::io(layout.user_pins(), io::Error::from(io::ErrorKind::NotFound)))?;
    let user_dir = open_or_make(&per_user, user)?;
    check_owner(&user_dir, user)?;
    open_or_make(&user_dir, prog)
}

/// Replaces (or creates) the symlink `name` -> `target` in `dir` atomically.
fn put_symlink(dir: &Dir, target: &Path, name: &str) -> Result<PathBuf, GcError> {
    let tmp = OsString::from(format!("{name}.tmp{}", std::process::id()));
    let _ = dir.unlink(&tmp);
    dir.symlink(target, &tmp)
        .map_err(|e| GcError::io(dir.join(&tmp), e))?;
    let path = dir.join(OsStr::new(name));
    dir.rename(&tmp, OsStr::new(name))
        .map_err(|e| GcError::io(&path, e))?;
    Ok(path)
}

/// Pins `cid` for `user` under `prog`. Returns the pin's path.
pub fn add(layout: &Layout, user: &str, prog: &str, cid: &Cid) -> Result<PathBuf, GcError> {
    let dir = prog_dir(layout, user, prog)?;
    let name = cairn_store::block_name(cid);
    put_symlink(&dir, &layout.store().join(&name), &name)
}

/// The name of the auto pin for the user's symlink at absolute path `link`.
pub fn auto_name(link: &Path) -> String {
    let mh = HashAlg::Sha2_256.digest(link.as_os_str().as_encoded_bytes());
    mh.digest()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Makes the user's symlink `link` -> `R/store/{cid}` and an auto pin that follows it.
/// Re-pointing or deleting `link` later unpins at the next collection.
pub fn add_auto(
    layout: &Layout,
    user: &str,
    prog: &str,
    cid: &Cid,
    link: &Path,
) -> Result<PathBuf, GcError> {
    let abs = if link.is_absolute() {
        link.to_owned()
    } else {
        std::env::current_dir()
            .map_err(|e| GcError::io(link, e))?
            .join(link)
    };
    if let Ok(m) = fs::symlink_metadata(&abs) {
        if !m.file_type().is_symlink() {
            return Err(GcError::io(
                &abs,
                io::Error::new(io::ErrorKind::AlreadyExists, "exists and is not a symlink"),
            ));
        }
    }
    let auto = open_or_make(&prog_dir(layout, user, prog)?, "auto")?;
    // The user's link is the user's own file, wherever they keep it: made like `ln -sf`.
    let name = cairn_store::block_name(cid);
    let tmp = abs.with_extension(format!("tmp{}", std::process::id()));
    let _ = fs::remove_file(&tmp);
    std::os::unix::fs::symlink(layout.store().join(&name), &tmp)
        .map_err(|e| GcError::io(&tmp, e))?;
    fs::rename(&tmp, &abs).map_err(|e| GcError::io(&abs, e))?;
    // Recreated even if present, so the collector sees its directory change.
    put_symlink(&auto, &abs, &auto_name(&abs))
}

/// Removes `user`'s pins of `cid` (under `prog`, or under every program), direct and auto.
/// Returns how many were removed.
pub fn remove(
    layout: &Layout,
    user: &str,
    prog: Option<&str>,
    cid: &Cid,
) -> Result<usize, GcError> {
    check_component("user", user)?;
    let Some(per_user) = open_per_user(layout)? else {
        return Ok(0);
    };
    let user_dir = match per_user.open_dir(OsStr::new(user)) {
        Ok(d) => d,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) if dir::not_a_dir(&e) => {
            return Err(GcError::NotADirectory {
                path: per_user.join(OsStr::new(user)),
            })
        }
        Err(e) => return Err(GcError::io(per_user.join(OsStr::new(user)), e)),
    };
    check_owner(&user_dir, user)?;
    let want = cairn_store::canonical(cid);
    let mut walker = PinWalker::new();
    let mut walk = Walk::default();
    let mut n = 0;
    let mut act = |pin: &Pin| {
        let hit = prog.is_none_or(|p| p == pin.prog) && cairn_store::canonical(&pin.cid) == want;
        n += usize::from(hit);
        hit
    };
    walker.walk_user(
        &per_user,
        OsStr::new(user),
        Act::RemovePins(&mut act),
        &mut walk,
    )?;
    Ok(n)
}

/// Every pin, and every pin symlink that pins nothing (a target with no CID, an auto pin
/// whose user link is gone or points elsewhere). Nothing is removed. What the walk refused
/// is left out: see [`walk`].
pub fn list(layout: &Layout) -> Result<(Vec<Pin>, Vec<Dangling>), GcError> {
    let w = PinWalker::new().walk(layout, Stale::List)?;
    Ok((w.pins, w.dangling))
}

/// Every pin, every pin symlink that a collection run by this process would remove, and
/// everything refused (including the links it would leave). Nothing is removed.
pub fn walk(layout: &Layout) -> Result<Walk, GcError> {
    PinWalker::new().walk(layout, Stale::WouldRemove)
}

/// CIDs named by symlinks anywhere under `R/profiles/per-user` (user environments'
/// generations). What the walk refused is logged.
pub fn profile_roots(layout: &Layout) -> Result<Vec<Cid>, GcError> {
    let mut refused = Vec::new();
    let roots = PinWalker::new().profile_roots(layout, &mut refused)?;
    for r in refused {
        log::warn!("{}: {}", r.path.display(), r.why);
    }
    Ok(roots)
}

/// Follows an auto pin whose own target is `link` (the user's symlink) to a CID.
fn resolve_auto(name: &OsStr, link: &Path) -> Result<Cid, &'static str> {
    if !link.is_absolute() {
        return Err("its target is not an absolute path");
    }
    // Checked before the user's link is even read: a pin cairn did not make for this link
    // is not one.
    if auto_name(link) != name.to_str().unwrap_or("") {
        return Err("its name does not match the link it follows");
    }
    // Read, never opened: the user's link may be anything, anywhere.
    let target = match fs::read_link(link) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err("the user's link is gone"),
        Err(_) => return Err("the user's link is not a symlink"),
    };
    cid_in_path(&target).ok_or("the user's link no longer points into the store")
}

/// What a walk does with pin links that pin nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stale {
    /// List them all in [`Walk::dangling`].
    List,
    /// List those a collection would remove; report the others as refused.
    WouldRemove,
    /// Remove them where this process may; report the others as refused.
    Remove,
}

/// What a walk does besides listing.
enum Act<'a> {
    Stale(Stale),
    /// Remove the pins for which the function answers true (`pin rm`).
    RemovePins(&'a mut dyn FnMut(&Pin) -> bool),
}

/// Walks pins and profiles without following any symlink, keeping what it read so that the
/// next walk re-reads only the directories that changed (the collector walks once per batch).
#[derive(Default)]
pub struct PinWalker {
    pins: DirCache,
    profiles: DirCache,
    uids: HashMap<OsString, Option<u32>>,
}

/// Where removals are allowed inside one user's directory.
#[derive(Clone, Copy)]
struct Trust<'a> {
    user: &'a OsStr,
    user_uid: Option<u32>,
    /// Every directory from the user's down to this one may be cleaned by this process: it
    /// owns them, or it is root and they belong to the user.
    may_delete: bool,
    /// One of them belongs to neither the user nor root (and was reported).
    foreign: bool,
}

impl PinWalker {
    pub fn new() -> PinWalker {
        PinWalker::default()
    }

    /// One walk of `R/pins/per-user`, doing with pin links that pin nothing what `stale`
    /// says (removing them only where this process may: see the crate docs).
    pub fn walk(&mut self, layout: &Layout, stale: Stale) -> Result<Walk, GcError> {
        self.walk_into(layout, stale, Walk::default())
    }

    /// [`PinWalker::walk`] that gathers the pinned CIDs in `Walk::cids` rather than whole
    /// [`Pin`]s in `Walk::pins`.
    pub(crate) fn walk_cids(&mut self, layout: &Layout, stale: Stale) -> Result<Walk, GcError> {
        self.walk_into(
            layout,
            stale,
            Walk {
                cids: Some(Vec::new()),
                ..Walk::default()
            },
        )
    }

    fn walk_into(&mut self, layout: &Layout, stale: Stale, mut out: Walk) -> Result<Walk, GcError> {
        self.pins.begin();
        if let Some(per_user) = open_per_user(layout)? {
            let (users, _) = listing(&mut self.pins, &per_user)?;
            for e in users.iter() {
                match e.kind {
                    Kind::Dir => {
                        self.walk_user(&per_user, &e.name, Act::Stale(stale), &mut out)?;
                    }
                    kind => out.refused.push(refuse_dir(&per_user, &e.name, kind)),
                }
            }
        }
        self.pins.end();
        Ok(out)
    }

    /// Opens the directory `name` in `parent` for a walk: `Ok(None)` if it vanished or is
    /// not a directory (then reported in `out`).
    fn enter(parent: &Dir, name: &OsStr, out: &mut Walk) -> Result<Option<Dir>, GcError> {
        match parent.open_dir(name) {
            Ok(d) => Ok(Some(d)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) if dir::not_a_dir(&e) => {
                // Replaced since it was listed: say what it is now.
                let kind = parent.stat_at(name).map_or(Kind::Other, |s| s.kind);
                out.refused.push(refuse_dir(parent, name, kind));
                Ok(None)
            }
            Err(e) => Err(GcError::io(parent.join(name), e)),
        }
    }

    /// Whether `d`, owned as its `stat` says, keeps the right to delete inside the user's
    /// directory; reports the first directory down the path owned by neither the user nor
    /// root.
    fn trust<'a>(d: &Dir, st: &Stat, parent: Trust<'a>, out: &mut Walk) -> Trust<'a> {
        let owner = st.uid;
        let foreign = owner != 0 && Some(owner) != parent.user_uid;
        if foreign && !parent.foreign {
            out.refused.push(Refused {
                path: d.path().to_owned(),
                why: Refusal::NotTheUsers {
                    user: to_string(parent.user),
                    owner,
                    user_uid: parent.user_uid,
                },
            });
        }
        let me = dir::euid();
        let ours = owner == me || (me == 0 && Some(owner) == parent.user_uid);
        Trust {
            may_delete: parent.may_delete && ours,
            foreign: parent.foreign || foreign,
            ..parent
        }
    }

    fn walk_user(
        &mut self,
        per_user: &Dir,
        user: &OsStr,
        mut act: Act<'_>,
        out: &mut Walk,
    ) -> Result<(), GcError> {
        let Some(user_dir) = Self::enter(per_user, user, out)? else {
            return Ok(());
        };
        let user_uid = *self
            .uids
            .entry(user.to_owned())
            .or_insert_with(|| user.to_str().and_then(dir::uid_of));
        let st = stat(&user_dir)?;
        let trust = Self::trust(
            &user_dir,
            &st,
            Trust {
                user,
                user_uid,
                may_delete: true,
                foreign: false,
            },
            out,
        );
        let (progs, _) = list_dir(&mut self.pins, &user_dir, &st)?;
        for p in progs.iter() {
            if p.kind != Kind::Dir {
                out.refused.push(refuse_dir(&user_dir, &p.name, p.kind));
                continue;
            }
            let Some(prog_dir) = Self::enter(&user_dir, &p.name, out)? else {
                continue;
            };
            let st = stat(&prog_dir)?;
            let trust = Self::trust(&prog_dir, &st, trust, out);
            let (entries, _) = list_dir(&mut self.pins, &prog_dir, &st)?;
            for e in entries.iter() {
                let at = Place {
                    dir: &prog_dir,
                    user,
                    prog: &p.name,
                    trust,
                };
                match (e.kind, e.name == "auto") {
                    (Kind::Dir, true) => {
                        let Some(auto) = Self::enter(&prog_dir, &e.name, out)? else {
                            continue;
                        };
                        let st = stat(&auto)?;
                        let trust = Self::trust(&auto, &st, trust, out);
                        let (links, _) = list_dir(&mut self.pins, &auto, &st)?;
                        for a in links.iter() {
                            let at = Place {
                                dir: &auto,
                                trust,
                                ..at
                            };
                            let Some(link) = &a.target else {
                                if a.kind != Kind::Symlink {
                                    out.refused.push(Refused {
                                        path: auto.join(&a.name),
                                        why: Refusal::NotASymlink {
                                            found: a.kind.describe(),
                                        },
                                    });
                                }
                                continue;
                            };
                            let found = resolve_auto(&a.name, link).map(|cid| {
                                (
                                    cid,
                                    PinKind::Auto {
                                        link: link.to_owned(),
                                    },
                                )
                            });
                            at.found(&a.name, found, &mut act, out)?;
                        }
                    }
                    (Kind::Symlink, true) => {
                        out.refused.push(refuse_dir(&prog_dir, &e.name, e.kind));
                    }
                    (Kind::Symlink, false) => {
                        if e.target.is_none() {
                            continue;
                        }
                        let found = e
                            .target_cid
                            .or_else(|| e.name.to_str()?.parse().ok())
                            .map(|cid| (cid, PinKind::Direct))
                            .ok_or("its target names no CID");
                        at.found(&e.name, found, &mut act, out)?;
                    }
                    // Anything else in a program's directory is not a pin: left alone.
                    _ => {}
                }
            }
        }
        Ok(())
    }

    /// CIDs named by symlinks anywhere under `R/profiles/per-user`. Nothing there is ever
    /// deleted; a symlink is read, never followed.
    pub fn profile_roots(
        &mut self,
        layout: &Layout,
        refused: &mut Vec<Refused>,
    ) -> Result<Vec<Cid>, GcError> {
        let mut roots = Vec::new();
        self.profiles.begin();
        let root = Dir::open_path(layout.root()).map_err(|e| GcError::io(layout.root(), e))?;
        if let Some(profiles) = open_fixed(&root, "profiles")? {
            if let Some(per_user) = open_fixed(&profiles, "per-user")? {
                self.profile_dir(&per_user, 0, &mut roots, refused)?;
            }
        }
        self.profiles.end();
        Ok(roots)
    }

    fn profile_dir(
        &mut self,
        d: &Dir,
        depth: usize,
        roots: &mut Vec<Cid>,
        refused: &mut Vec<Refused>,
    ) -> Result<(), GcError> {
        let (entries, _) = listing(&mut self.profiles, d)?;
        for e in entries.iter() {
            match e.kind {
                Kind::Symlink => roots.extend(e.target_cid),
                Kind::Dir if depth >= MAX_PROFILE_DEPTH => refused.push(Refused {
                    path: d.join(&e.name),
                    why: Refusal::TooDeep,
                }),
                Kind::Dir => {
                    let mut out = Walk::default();
                    if let Some(sub) = Self::enter(d, &e.name, &mut out)? {
                        self.profile_dir(&sub, depth + 1, roots, refused)?;
                    }
                    refused.append(&mut out.refused);
                }
                _ => {}
            }
        }
        Ok(())
    }
}

fn stat(d: &Dir) -> Result<Stat, GcError> {
    d.stat().map_err(|e| GcError::io(d.path(), e))
}

fn list_dir(cache: &mut DirCache, d: &Dir, st: &Stat) -> Result<(Rc<[Listed]>, bool), GcError> {
    cache.list(d, st).map_err(|e| GcError::io(d.path(), e))
}

/// The entries of `d`, from `cache` if `d` did not change since it was listed there, and
/// whether they were read just now.
pub(crate) fn listing(cache: &mut DirCache, d: &Dir) -> Result<(Rc<[Listed]>, bool), GcError> {
    list_dir(cache, d, &stat(d)?)
}

/// A refusal of `name` in `parent`, found where a directory belongs.
fn refuse_dir(parent: &Dir, name: &OsStr, kind: Kind) -> Refused {
    Refused {
        path: parent.join(name),
        why: if kind == Kind::Symlink {
            Refusal::SymlinkForDirectory
        } else {
            Refusal::NotADirectory {
                found: kind.describe(),
            }
        },
    }
}

/// The directory a walk found a pin link in.
#[derive(Clone, Copy)]
struct Place<'a> {
    dir: &'a Dir,
    user: &'a OsStr,
    prog: &'a OsStr,
    trust: Trust<'a>,
}

impl Place<'_> {
    /// Records the link `name` here: a pin, or one that pins nothing (`Err(why)`), and
    /// removes it if the walk's act asks for that and this directory may be cleaned.
    fn found(
        &self,
        name: &OsStr,
        found: Result<(Cid, PinKind), &'static str>,
        act: &mut Act<'_>,
        out: &mut Walk,
    ) -> Result<(), GcError> {
        if let (Ok((cid, _)), Some(cids), Act::Stale(_)) = (&found, &mut out.cids, &act) {
            cids.push(*cid);
            return Ok(());
        }
        let path = self.dir.join(name);
        let remove = match found {
            Ok((cid, kind)) => {
                let pin = Pin {
                    user: to_string(self.user),
                    prog: to_string(self.prog),
                    cid,
                    path: path.clone(),
                    kind,
                };
                let remove = match act {
                    Act::RemovePins(f) => f(&pin),
                    _ => false,
                };
                if !remove {
                    out.pins.push(pin);
                }
                remove
            }
            Err(why) => {
                let cleaning = matches!(act, Act::Stale(Stale::WouldRemove | Stale::Remove));
                if cleaning && !self.trust.may_delete {
                    out.refused.push(Refused {
                        path,
                        why: Refusal::NotRemoved { why },
                    });
                    return Ok(());
                }
                out.dangling.push(Dangling {
                    path: path.clone(),
                    why,
                });
                matches!(act, Act::Stale(Stale::Remove))
            }
        };
        if !remove {
            return Ok(());
        }
        if !self.trust.may_delete {
            return Err(GcError::NotYours {
                path: self.dir.path().to_owned(),
                owner: self.dir.stat().map_or(u32::MAX, |s| s.uid),
                me: dir::euid(),
            });
        }
        // Only a symlink is ever removed: checked again just before, on the entry itself.
        match self.dir.stat_at(name) {
            Ok(st) if st.kind == Kind::Symlink => match self.dir.unlink(name) {
                Ok(()) => {
                    log::info!("removed {}", path.display());
                    Ok(())
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(GcError::io(&path, e)),
            },
            Ok(_) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(GcError::io(&path, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    /// A root with a user directory `u/p` and a directory of files outside it.
    fn setup() -> (tempfile::TempDir, Layout, PathBuf) {
        let t = tempfile::tempdir().unwrap();
        let layout = Layout::new(t.path().join("root"));
        layout.create().unwrap();
        let outside = t.path().join("outside");
        fs::create_dir_all(outside.join("auto")).unwrap();
        fs::write(outside.join("f"), "outside").unwrap();
        fs::write(outside.join("auto/g"), "outside").unwrap();
        fs::create_dir_all(layout.user_pins().join("u/p")).unwrap();
        (t, layout, outside)
    }

    #[test]
    fn symlinks_where_directories_belong_are_refused_not_followed() {
        let (_t, layout, outside) = setup();
        let pins = layout.user_pins();
        symlink(&outside, pins.join("u/p/auto")).unwrap();
        symlink(&outside, pins.join("u/prog-link")).unwrap();
        symlink(&outside, pins.join("user-link")).unwrap();
        let w = PinWalker::new().walk(&layout, Stale::Remove).unwrap();
        let refused: Vec<_> = w.refused.iter().map(|r| r.path.clone()).collect();
        assert_eq!(
            refused,
            [
                pins.join("u/p/auto"),
                pins.join("u/prog-link"),
                pins.join("user-link")
            ]
        );
        assert!(w
            .refused
            .iter()
            .all(|r| r.why == Refusal::SymlinkForDirectory));
        assert!(w.pins.is_empty() && w.dangling.is_empty());
        assert!(outside.join("f").exists() && outside.join("auto/g").exists());
        assert!(fs::symlink_metadata(pins.join("u/p/auto")).is_ok());
    }

    #[test]
    fn only_symlinks_that_pin_nothing_are_removed() {
        let (_t, layout, outside) = setup();
        let p = layout.user_pins().join("u/p");
        let cid = Cid::new_v1(0x55, HashAlg::Sha2_256.digest(b"pinned"));
        symlink(
            layout.store().join(cid.to_string()),
            p.join(cid.to_string()),
        )
        .unwrap();
        symlink(outside.join("f"), p.join("to-a-file")).unwrap();
        fs::write(p.join("a-file"), "mine").unwrap();
        fs::create_dir(p.join("auto")).unwrap();
        fs::write(p.join("auto/not-a-link"), "mine").unwrap();
        let w = PinWalker::new().walk(&layout, Stale::Remove).unwrap();
        assert_eq!(w.pins.len(), 1);
        assert_eq!(w.pins[0].cid, cid);
        assert_eq!(
            w.dangling.iter().map(|d| &d.path).collect::<Vec<_>>(),
            [&p.join("to-a-file")]
        );
        assert!(fs::symlink_metadata(p.join("to-a-file")).is_err());
        assert!(outside.join("f").exists());
        assert!(p.join("a-file").exists() && p.join("auto/not-a-link").exists());
        assert_eq!(w.refused.len(), 1);
        assert_eq!(w.refused[0].path, p.join("auto/not-a-link"));
    }
}
