//! The collector's side of temp pins: following the files in `R/pins/temp`.
//!
//! Any name is accepted (`{pid}`, `{pid}-{n}`, ...). Only regular files are temp pins: each is
//! opened with `O_NOFOLLOW | O_NONBLOCK` (a symlink fails, a FIFO cannot make the collector
//! wait) and checked to be a regular file before anything else. A file whose `flock` the
//! collector can take has no living writer and is removed with `unlinkat`, after checking that
//! the name still names the file it locked. Anything else there is reported and left alone.

use std::{
    collections::{HashMap, HashSet},
    ffi::{OsStr, OsString},
    fs::File,
    io,
    os::{fd::AsRawFd, unix::fs::FileExt},
};

use cairn_store::{temp, Cid, Layout};

use crate::{
    dir::{self, Dir, DirCache, Kind},
    pins::{self, Refusal, Refused},
    GcError,
};

/// How much of a temp pin file is read at once.
const READ_CHUNK: usize = 64 << 10;

/// A temp pin file being followed: what was read of it so far.
struct TempFile {
    file: File,
    /// Its identity: a new process may make a new file under a name that was used before.
    dev: u64,
    ino: u64,
    /// Up to the end of the last complete line read.
    offset: u64,
}

/// What one look at `R/pins/temp` found.
#[derive(Debug, Default)]
pub(crate) struct TempLook {
    /// The CIDs read from live writers' files since the last look.
    pub cids: Vec<Cid>,
    pub refused: Vec<Refused>,
}

/// The temp pin files of live writers, read incrementally across the collection's looks.
#[derive(Default)]
pub(crate) struct TempPins {
    cache: DirCache,
    files: HashMap<OsString, TempFile>,
    /// Files of dead writers found (and, unless a dry run, removed), by identity.
    dead: HashSet<(u64, u64)>,
}

fn try_lock(f: &File) -> io::Result<bool> {
    loop {
        // SAFETY: a valid fd.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            return Ok(true);
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EWOULDBLOCK) => return Ok(false),
            _ => return Err(e),
        }
    }
}

impl TempPins {
    /// Live writers' files being followed.
    pub fn live(&self) -> usize {
        self.files.len()
    }

    /// Dead writers' files found so far.
    pub fn dead(&self) -> usize {
        self.dead.len()
    }

    /// Looks at `R/pins/temp`: new files are checked (dead ones removed unless `dry_run`),
    /// and every live file is read from where the last look stopped.
    pub fn look(&mut self, layout: &Layout, dry_run: bool) -> Result<TempLook, GcError> {
        let mut out = TempLook::default();
        let root = Dir::open_path(layout.root()).map_err(|e| GcError::io(layout.root(), e))?;
        let temp_dir = match pins::open_fixed(&root, "pins")? {
            Some(p) => pins::open_fixed(&p, "temp")?,
            None => None,
        };
        let Some(temp_dir) = temp_dir else {
            self.files.clear();
            return Ok(out);
        };
        self.cache.begin();
        let (listing, fresh) = pins::listing(&mut self.cache, &temp_dir)?;
        self.cache.end();
        // An unchanged directory has the same files under the same names: only their new
        // lines need reading.
        if fresh {
            let names: HashSet<&OsStr> = listing.iter().map(|e| e.name.as_os_str()).collect();
            // Files that vanished: their writers finished (after pinning what they keep).
            self.files.retain(|n, _| names.contains(n.as_os_str()));
            for e in listing.iter() {
                if e.kind != Kind::File {
                    out.refused.push(Refused {
                        path: temp_dir.join(&e.name),
                        why: Refusal::NotATempFile {
                            found: e.kind.describe(),
                        },
                    });
                    continue;
                }
                self.check(&temp_dir, &e.name, dry_run, &mut out)?;
            }
        }
        for (name, t) in &mut self.files {
            read_lines(t, &mut out.cids).map_err(|e| GcError::io(temp_dir.join(name), e))?;
        }
        Ok(out)
    }

    /// Starts following the file `name`, unless it is followed already; removes it if its
    /// writer is dead.
    fn check(
        &mut self,
        d: &Dir,
        name: &OsStr,
        dry_run: bool,
        out: &mut TempLook,
    ) -> Result<(), GcError> {
        let path = d.join(name);
        let now = match d.stat_at(name) {
            Ok(st) => st,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(GcError::io(&path, e)),
        };
        if let Some(t) = self.files.get(name) {
            if (t.dev, t.ino) == (now.dev, now.ino) {
                return Ok(());
            }
            self.files.remove(name);
        }
        let file = match d.open_file(name) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            // Replaced by a symlink (ELOOP) or a socket (ENXIO) since the listing.
            Err(e) if matches!(e.raw_os_error(), Some(libc::ELOOP) | Some(libc::ENXIO)) => {
                out.refused.push(Refused {
                    path,
                    why: Refusal::NotATempFile {
                        found: Kind::Other.describe(),
                    },
                });
                return Ok(());
            }
            Err(e) => return Err(GcError::io(&path, e)),
        };
        let st = dir::fstat(&file).map_err(|e| GcError::io(&path, e))?;
        if st.kind != Kind::File {
            out.refused.push(Refused {
                path,
                why: Refusal::NotATempFile {
                    found: st.kind.describe(),
                },
            });
            return Ok(());
        }
        // Its writer holds an exclusive lock for as long as it lives.
        if !try_lock(&file).map_err(|e| GcError::io(&path, e))? {
            self.files.insert(
                name.to_owned(),
                TempFile {
                    file,
                    dev: st.dev,
                    ino: st.ino,
                    offset: 0,
                },
            );
            return Ok(());
        }
        if self.dead.insert((st.dev, st.ino)) {
            log::info!("{} belonged to a dead writer", path.display());
        }
        if dry_run {
            return Ok(());
        }
        // Removed only while the name still names the file we hold locked (a writer that
        // opened it meanwhile finds it gone and makes another).
        match d.stat_at(name) {
            Ok(again) if (again.dev, again.ino) == (st.dev, st.ino) => match d.unlink(name) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(GcError::io(&path, e)),
            },
            Ok(_) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(GcError::io(&path, e)),
        }
    }
}

/// Reads the complete lines appended to `t` since the last read; a line being written is
/// read next time.
fn read_lines(t: &mut TempFile, cids: &mut Vec<Cid>) -> io::Result<()> {
    let mut buf = vec![0u8; READ_CHUNK];
    loop {
        let n = match t.file.read_at(&mut buf, t.offset) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if n == 0 {
            return Ok(());
        }
        match buf[..n].iter().rposition(|b| *b == b'\n') {
            Some(i) => {
                cids.extend(temp::parse(&buf[..=i]));
                t.offset += i as u64 + 1;
            }
            // A whole chunk without a line end is no list of CIDs: skipped.
            None if n == buf.len() => t.offset += n as u64,
            None => return Ok(()),
        }
    }
}
