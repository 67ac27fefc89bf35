//! Restoring a DAG to the filesystem (`cairn get`): files, directories, symlinks, and mode and
//! mtime where the nodes carry them.
//!
//! Every entry name is checked before anything is created: names that are empty, `.`, `..`,
//! or contain `/` or NUL are refused, so nothing is ever written outside the destination.
//! Nothing existing is overwritten, and symlinks are created, never followed.

use std::{
    ffi::CString,
    fs::{self, OpenOptions},
    io::{BufWriter, Write},
    os::unix::{ffi::OsStrExt, fs::OpenOptionsExt},
    path::Path,
};

use cairn_store::{BlockSource, Cid};

use crate::{
    data::Mtime,
    node::{Metadata, Node},
    reader::{Decode, FileReader},
    resolve, Progress, UnixfsError,
};

const MAX_DEPTH: usize = 1024;

/// What `get` wrote.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct GetStats {
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    pub bytes: u64,
}

/// Checks that `name` is a plain file name.
pub fn check_name(dir: &str, name: &str) -> Result<(), UnixfsError> {
    let why = if name.is_empty() {
        "empty name"
    } else if name == "." || name == ".." {
        "relative path component"
    } else if name.contains('/') {
        "name contains '/'"
    } else if name.contains('\0') {
        "name contains NUL"
    } else {
        return Ok(());
    };
    Err(UnixfsError::UnsafeName {
        dir: dir.to_owned(),
        name: name.to_owned(),
        why,
    })
}

/// Writes the DAG at `cid` to `dest`, which must not exist.
pub fn get(
    src: &dyn BlockSource,
    cid: &Cid,
    dest: &Path,
    progress: &dyn Progress,
) -> Result<GetStats, UnixfsError> {
    if fs::symlink_metadata(dest).is_ok() {
        return Err(UnixfsError::io(
            dest,
            std::io::Error::new(std::io::ErrorKind::AlreadyExists, "already exists"),
        ));
    }
    let mut stats = GetStats::default();
    write_node(src, cid, dest, &cid.to_string(), &mut stats, progress, 0)?;
    Ok(stats)
}

fn write_node(
    src: &dyn BlockSource,
    cid: &Cid,
    dest: &Path,
    shown: &str,
    stats: &mut GetStats,
    progress: &dyn Progress,
    depth: usize,
) -> Result<(), UnixfsError> {
    if depth > MAX_DEPTH {
        return Err(UnixfsError::Unsupported(format!(
            "{shown}: directories nested deeper than {MAX_DEPTH}"
        )));
    }
    let node = resolve::load(src, cid)?;
    let meta = node.meta();
    match node {
        Node::Directory(_) | Node::HamtShard(_) => {
            let entries = resolve::list(src, &node)?;
            for e in &entries {
                check_name(shown, e.name())?;
            }
            fs::create_dir(dest).map_err(|e| UnixfsError::io(dest, e))?;
            stats.dirs += 1;
            for e in entries {
                let child = dest.join(e.name());
                let shown = format!("{shown}/{}", e.name());
                write_node(src, &e.cid, &child, &shown, stats, progress, depth + 1)?;
            }
            apply_meta(dest, &meta, 0o755)?;
        }
        Node::Symlink { target, .. } => {
            std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(&target), dest)
                .map_err(|e| UnixfsError::io(dest, e))?;
            stats.symlinks += 1;
            if let Some(t) = meta.mtime {
                set_mtime(dest, t, true)?;
            }
        }
        node => {
            let reader = FileReader::from_node(Decode(src), cid, std::sync::Arc::new(node))?;
            let file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW)
                .open(dest)
                .map_err(|e| UnixfsError::io(dest, e))?;
            let mut w = BufWriter::with_capacity(1 << 20, file);
            let n = reader.copy_to(&mut w, progress).map_err(|e| match e {
                UnixfsError::Output(e) => UnixfsError::io(dest, e),
                e => e,
            })?;
            w.flush().map_err(|e| UnixfsError::io(dest, e))?;
            stats.files += 1;
            stats.bytes += n;
            apply_meta(dest, &meta, 0o644)?;
        }
    }
    Ok(())
}

fn apply_meta(path: &Path, meta: &Metadata, default_mode: u32) -> Result<(), UnixfsError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = meta.mode.map_or(default_mode, |m| m & 0o7777);
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(|e| UnixfsError::io(path, e))?;
    if let Some(t) = meta.mtime {
        set_mtime(path, t, false)?;
    }
    Ok(())
}

fn set_mtime(path: &Path, t: Mtime, nofollow: bool) -> Result<(), UnixfsError> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| UnixfsError::Unsupported(format!("{}: path contains NUL", path.display())))?;
    let times = [
        libc::timespec {
            tv_sec: 0,
            tv_nsec: libc::UTIME_OMIT,
        },
        libc::timespec {
            tv_sec: t.seconds as libc::time_t,
            tv_nsec: t.nanos.unwrap_or(0) as _,
        },
    ];
    let flags = if nofollow {
        libc::AT_SYMLINK_NOFOLLOW
    } else {
        0
    };
    // SAFETY: `c` is a valid C string and `times` two valid timespecs, both live for the call.
    if unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), times.as_ptr(), flags) } != 0 {
        return Err(UnixfsError::io(path, std::io::Error::last_os_error()));
    }
    Ok(())
}

/// Writes one file's bytes to `w` (`cairn cat`).
pub fn cat(
    src: &dyn BlockSource,
    cid: &Cid,
    w: &mut dyn Write,
    progress: &dyn Progress,
) -> Result<u64, UnixfsError> {
    FileReader::open(src, cid)?.copy_to(w, progress)
}
