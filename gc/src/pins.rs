//! Pins are symlinks under `R/pins/per-user/{user}/{prog}/`:
//!
//! - a direct pin `{cid}` -> `R/store/{cid}` keeps the whole DAG under the CID;
//! - an auto pin `auto/{hash}` -> a user's own symlink (like `./result`), which points into
//!   `R/store/{cid}`: the pin lasts as long as the user's symlink points there.
//!
//! A symlink made with plain `ln -s` counts exactly like one made by `cairn pin add`: the CID
//! is read from the link's target (the first path component that is a CID), or from the
//! link's own name when the target names none.

use std::{
    ffi::OsStr,
    fs, io,
    os::unix::fs::{symlink, MetadataExt, PermissionsExt},
    path::{Component, Path, PathBuf},
};

use cairn_store::{Cid, HashAlg, Layout};

use crate::GcError;

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

/// `R/pins/per-user/{user}/{prog}`, created if needed: the user directory belongs to the user
/// (made by root for them, or by themselves under the sticky `per-user` directory).
fn prog_dir(layout: &Layout, user: &str, prog: &str) -> Result<PathBuf, GcError> {
    check_component("user", user)?;
    check_component("program", prog)?;
    let per_user = layout.user_pins();
    let user_dir = per_user.join(user);
    if !user_dir.exists() {
        fs::create_dir_all(&user_dir).map_err(|e| GcError::io(&user_dir, e))?;
        fs::set_permissions(&user_dir, fs::Permissions::from_mode(0o755))
            .map_err(|e| GcError::io(&user_dir, e))?;
    }
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    match owner(&user_dir) {
        Some(owner) if owner != me && me != 0 => {
            return Err(GcError::NotYours {
                path: user_dir,
                owner,
                me,
            })
        }
        _ => {}
    }
    let dir = user_dir.join(prog);
    fs::create_dir_all(&dir).map_err(|e| GcError::io(&dir, e))?;
    Ok(dir)
}

/// Replaces (or creates) the symlink `at` -> `target` atomically.
fn put_symlink(target: &Path, at: &Path) -> Result<(), GcError> {
    let tmp = at.with_extension(format!("tmp{}", std::process::id()));
    let _ = fs::remove_file(&tmp);
    symlink(target, &tmp).map_err(|e| GcError::io(&tmp, e))?;
    fs::rename(&tmp, at).map_err(|e| GcError::io(at, e))
}

/// Pins `cid` for `user` under `prog`. Returns the pin's path.
pub fn add(layout: &Layout, user: &str, prog: &str, cid: &Cid) -> Result<PathBuf, GcError> {
    let dir = prog_dir(layout, user, prog)?;
    let name = cairn_store::block_name(cid);
    let path = dir.join(&name);
    put_symlink(&layout.store().join(&name), &path)?;
    Ok(path)
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
    let name = cairn_store::block_name(cid);
    put_symlink(&layout.store().join(&name), &abs)?;
    let auto = prog_dir(layout, user, prog)?.join("auto");
    fs::create_dir_all(&auto).map_err(|e| GcError::io(&auto, e))?;
    let path = auto.join(auto_name(&abs));
    // Recreated even if present, so the collector sees its directory change.
    put_symlink(&abs, &path)?;
    Ok(path)
}

/// Removes `user`'s direct pins of `cid` (under `prog`, or under every program). Returns how
/// many were removed.
pub fn remove(
    layout: &Layout,
    user: &str,
    prog: Option<&str>,
    cid: &Cid,
) -> Result<usize, GcError> {
    let want = cairn_store::canonical(cid);
    let mut n = 0;
    for pin in list(layout)?.0 {
        if pin.user == user
            && prog.is_none_or(|p| p == pin.prog)
            && cairn_store::canonical(&pin.cid) == want
        {
            fs::remove_file(&pin.path).map_err(|e| GcError::io(&pin.path, e))?;
            n += 1;
        }
    }
    Ok(n)
}

fn read_dir_sorted(dir: &Path) -> Result<Vec<fs::DirEntry>, GcError> {
    let mut v: Vec<fs::DirEntry> = match fs::read_dir(dir) {
        Ok(rd) => rd.filter_map(Result::ok).collect(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(GcError::io(dir, e)),
    };
    v.sort_by_key(|e| e.file_name());
    Ok(v)
}

fn to_string(s: &OsStr) -> String {
    s.to_string_lossy().into_owned()
}

/// Every pin, and every pin symlink that pins nothing (a target with no CID, an auto pin
/// whose user link is gone or points elsewhere).
pub fn list(layout: &Layout) -> Result<(Vec<Pin>, Vec<Dangling>), GcError> {
    let (mut pins, mut dangling) = (Vec::new(), Vec::new());
    for user in read_dir_sorted(&layout.user_pins())? {
        if !user.path().is_dir() {
            continue;
        }
        for prog in read_dir_sorted(&user.path())? {
            if !prog.path().is_dir() {
                continue;
            }
            for e in read_dir_sorted(&prog.path())? {
                let path = e.path();
                let name = e.file_name();
                if name == "auto" && path.is_dir() {
                    for a in read_dir_sorted(&path)? {
                        match resolve_auto(&a.path()) {
                            Ok((cid, link)) => pins.push(Pin {
                                user: to_string(&user.file_name()),
                                prog: to_string(&prog.file_name()),
                                cid,
                                path: a.path(),
                                kind: PinKind::Auto { link },
                            }),
                            Err(why) => dangling.push(Dangling {
                                path: a.path(),
                                why,
                            }),
                        }
                    }
                    continue;
                }
                let Ok(target) = fs::read_link(&path) else {
                    continue; // not a symlink: not a pin
                };
                match cid_in_path(&target).or_else(|| name.to_str()?.parse().ok()) {
                    Some(cid) => pins.push(Pin {
                        user: to_string(&user.file_name()),
                        prog: to_string(&prog.file_name()),
                        cid,
                        path,
                        kind: PinKind::Direct,
                    }),
                    None => dangling.push(Dangling {
                        path,
                        why: "its target names no CID",
                    }),
                }
            }
        }
    }
    Ok((pins, dangling))
}

/// Follows an auto pin to the user's symlink and from there to a CID.
fn resolve_auto(auto: &Path) -> Result<(Cid, PathBuf), &'static str> {
    let link = fs::read_link(auto).map_err(|_| "not a symlink")?;
    let target = match fs::read_link(&link) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err("the user's link is gone"),
        Err(_) => return Err("the user's link is not a symlink"),
    };
    if auto_name(&link) != auto.file_name().and_then(OsStr::to_str).unwrap_or("") {
        return Err("its name does not match the link it follows");
    }
    cid_in_path(&target)
        .map(|c| (c, link))
        .ok_or("the user's link no longer points into the store")
}

/// CIDs named by symlinks anywhere under `R/profiles` (user environments' generations).
pub fn profile_roots(layout: &Layout) -> Result<Vec<Cid>, GcError> {
    let mut out = Vec::new();
    let mut stack = vec![layout.profiles()];
    while let Some(dir) = stack.pop() {
        for e in read_dir_sorted(&dir)? {
            let Ok(m) = fs::symlink_metadata(e.path()) else {
                continue;
            };
            if m.file_type().is_symlink() {
                if let Some(c) = fs::read_link(e.path())
                    .ok()
                    .as_deref()
                    .and_then(cid_in_path)
                {
                    out.push(c);
                }
            } else if m.is_dir() {
                stack.push(e.path());
            }
        }
    }
    Ok(out)
}

/// The owner of a user's pin directory, for `pin ls`.
pub fn owner(path: &Path) -> Option<u32> {
    fs::symlink_metadata(path).ok().map(|m| m.uid())
}
