//! A user's profile directory: generations, the current one, the lock.

use std::{
    fs::{self, File},
    io,
    os::unix::fs::{MetadataExt, OpenOptionsExt},
    path::{Path, PathBuf},
    time::SystemTime,
};

use cairn_store::{Cid, Layout};

use crate::EnvError;

/// One generation: its number, its environment, and when it was made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generation {
    pub n: u32,
    pub cid: Cid,
    pub made: SystemTime,
}

/// `R/profiles/per-user/{user}/`, opened by its owner, locked while this value lives.
pub struct Profile {
    dir: PathBuf,
    store: PathBuf,
    _lock: File,
}

/// Checks that `p` is a real directory (not a symlink) owned by the calling user.
fn check_own_dir(p: &Path) -> Result<(), EnvError> {
    let md = fs::symlink_metadata(p).map_err(|e| EnvError::io(p, e))?;
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    if md.file_type().is_symlink() || !md.is_dir() {
        return Err(EnvError::Refused(format!(
            "{} is not a directory (a symlink or file someone put there?): refusing to use it",
            p.display()
        )));
    }
    if md.uid() != me {
        return Err(EnvError::Refused(format!(
            "{} belongs to uid {}, not to you (uid {me}): refusing to use it; if someone \
             squatted your name, ask root to remove it",
            p.display(),
            md.uid()
        )));
    }
    Ok(())
}

/// Makes directory `p` (mode 0755) unless it exists, then checks it is ours.
fn own_dir(p: &Path) -> Result<(), EnvError> {
    match fs::create_dir(p) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(EnvError::io(p, e)),
    }
    check_own_dir(p)
}

/// Points `name` in `dir` at `target` by renaming a fresh symlink over it: a reader sees the
/// old link or the new one, never neither.
fn replace_symlink(dir: &Path, name: &str, target: &Path) -> Result<(), EnvError> {
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let _ = fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp).map_err(|e| EnvError::io(&tmp, e))?;
    let path = dir.join(name);
    fs::rename(&tmp, &path).map_err(|e| EnvError::io(&path, e))
}

impl Profile {
    /// Opens (making it if needed) the profile of `user`, who must be the calling user, and
    /// takes its lock, waiting for another env command of the same user to finish.
    pub fn open(layout: &Layout, user: &str) -> Result<Profile, EnvError> {
        if user.is_empty() || user.contains('/') || user.starts_with('.') {
            return Err(EnvError::Refused(format!("bad user name {user:?}")));
        }
        let per_user = layout.profiles();
        fs::create_dir_all(&per_user).map_err(|e| EnvError::io(&per_user, e))?;
        let dir = per_user.join(user);
        own_dir(&dir)?;
        own_dir(&dir.join("generations"))?;
        let lock_path = dir.join(".lock");
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&lock_path)
            .map_err(|e| EnvError::io(&lock_path, e))?;
        // SAFETY: flock on a descriptor we own.
        if unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&lock), libc::LOCK_EX) } != 0 {
            return Err(EnvError::io(&lock_path, io::Error::last_os_error()));
        }
        Ok(Profile {
            dir,
            store: layout.store(),
            _lock: lock,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `current`, the link that `~/.cairn-profile` points at.
    pub fn current_link(&self) -> PathBuf {
        self.dir.join("current")
    }

    /// Every generation, oldest first. Entries that are not `{n} -> .../store/{cid}` are
    /// skipped.
    pub fn generations(&self) -> Result<Vec<Generation>, EnvError> {
        let gens = self.dir.join("generations");
        let mut out = Vec::new();
        for entry in fs::read_dir(&gens).map_err(|e| EnvError::io(&gens, e))? {
            let entry = entry.map_err(|e| EnvError::io(&gens, e))?;
            let Some(n) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            let path = entry.path();
            let Ok(target) = fs::read_link(&path) else {
                continue;
            };
            let Some(cid) = target
                .file_name()
                .and_then(|c| c.to_str())
                .and_then(|c| c.parse::<Cid>().ok())
            else {
                continue;
            };
            let made = fs::symlink_metadata(&path)
                .and_then(|m| m.modified())
                .unwrap_or(SystemTime::UNIX_EPOCH);
            out.push(Generation { n, cid, made });
        }
        out.sort_by_key(|g| g.n);
        Ok(out)
    }

    /// The generation `current` points at, if any.
    pub fn current(&self) -> Result<Option<u32>, EnvError> {
        match fs::read_link(self.current_link()) {
            Ok(t) => Ok(t
                .strip_prefix("generations")
                .ok()
                .and_then(|n| n.to_str())
                .and_then(|n| n.parse().ok())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(EnvError::io(self.current_link(), e)),
        }
    }

    /// Records environment `cid` as a new generation (one past the newest); returns its
    /// number. Not current until [`Profile::switch`].
    pub fn add(&self, cid: &Cid) -> Result<u32, EnvError> {
        let n = self.generations()?.last().map_or(1, |g| g.n + 1);
        let target = self.store.join(cairn_store::block_name(cid));
        replace_symlink(&self.dir.join("generations"), &n.to_string(), &target)?;
        Ok(n)
    }

    /// Makes generation `n` current, atomically.
    pub fn switch(&self, n: u32) -> Result<(), EnvError> {
        if !self.generations()?.iter().any(|g| g.n == n) {
            return Err(EnvError::Refused(format!("there is no generation {n}")));
        }
        replace_symlink(
            &self.dir,
            "current",
            &Path::new("generations").join(n.to_string()),
        )
    }

    /// Deletes generation `n` (its blocks go at the next `cairn gc` unless another root
    /// keeps them). The current generation is never deleted.
    pub fn remove(&self, n: u32) -> Result<(), EnvError> {
        if self.current()? == Some(n) {
            return Err(EnvError::Refused(format!(
                "generation {n} is the current one"
            )));
        }
        let p = self.dir.join("generations").join(n.to_string());
        let md = fs::symlink_metadata(&p).map_err(|e| EnvError::io(&p, e))?;
        if !md.file_type().is_symlink() {
            return Err(EnvError::Refused(format!(
                "{} is not a generation link",
                p.display()
            )));
        }
        fs::remove_file(&p).map_err(|e| EnvError::io(&p, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generations_switch_and_refuse_a_foreign_directory() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        layout.create().unwrap();
        let cid: Cid = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
            .parse()
            .unwrap();
        let p = Profile::open(&layout, "alice").unwrap();
        assert_eq!(p.current().unwrap(), None);
        assert_eq!(p.add(&cid).unwrap(), 1);
        assert_eq!(p.add(&cid).unwrap(), 2);
        p.switch(2).unwrap();
        assert_eq!(p.current().unwrap(), Some(2));
        assert!(p.remove(2).is_err(), "the current generation stays");
        p.remove(1).unwrap();
        assert_eq!(p.generations().unwrap().len(), 1);
        assert!(p.switch(1).is_err());
        drop(p);
        // A symlink where a user's directory belongs is refused, not followed.
        let elsewhere = dir.path().join("elsewhere");
        fs::create_dir(&elsewhere).unwrap();
        std::os::unix::fs::symlink(&elsewhere, layout.profiles().join("bob")).unwrap();
        assert!(Profile::open(&layout, "bob").is_err());
        assert!(fs::read_dir(&elsewhere).unwrap().next().is_none());
    }
}
