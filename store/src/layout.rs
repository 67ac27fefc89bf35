//! Where things live under a cairn root `R` (see ARCHITECTURE.md, "On-disk layout").

use std::path::{Path, PathBuf};

use cid::Cid;

use crate::StoreError;

/// The paths of one cairn root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    root: PathBuf,
}

impl Layout {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Layout { root: root.into() }
    }

    /// The root used when neither `--root` nor `CAIRN_ROOT` is given: `/ipfs` for root,
    /// otherwise `$XDG_DATA_HOME/cairn`, or `~/.local/share/cairn`.
    pub fn default_root() -> PathBuf {
        // SAFETY: geteuid cannot fail and touches no memory.
        if unsafe { libc::geteuid() } == 0 {
            return PathBuf::from("/ipfs");
        }
        if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|x| !x.is_empty()) {
            return PathBuf::from(x).join("cairn");
        }
        let home = std::env::var_os("HOME").unwrap_or_else(|| ".".into());
        PathBuf::from(home).join(".local/share/cairn")
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn blocks(&self) -> PathBuf {
        self.root.join("blocks")
    }
    pub fn staging(&self) -> PathBuf {
        self.root.join("blocks/.tmp")
    }
    pub fn corrupt(&self) -> PathBuf {
        self.root.join("blocks/.corrupt")
    }
    pub fn index(&self) -> PathBuf {
        self.root.join("index")
    }
    pub fn index_db(&self) -> PathBuf {
        self.root.join("index/db")
    }
    pub fn journals(&self) -> PathBuf {
        self.root.join("index/journal")
    }
    pub fn store(&self) -> PathBuf {
        self.root.join("store")
    }
    pub fn pins(&self) -> PathBuf {
        self.root.join("pins")
    }
    pub fn user_pins(&self) -> PathBuf {
        self.root.join("pins/per-user")
    }
    pub fn temp_pins(&self) -> PathBuf {
        self.root.join("pins/temp")
    }
    pub fn pins_lock(&self) -> PathBuf {
        self.root.join("pins/lock")
    }
    pub fn profiles(&self) -> PathBuf {
        self.root.join("profiles/per-user")
    }

    /// The file that holds (or would hold) the block `cid`.
    pub fn block_path(&self, cid: &Cid) -> PathBuf {
        self.blocks().join(crate::block_name(cid))
    }

    /// Creates the root and every directory below it. Safe to run again.
    pub fn create(&self) -> Result<(), StoreError> {
        for dir in [
            self.root.clone(),
            self.blocks(),
            self.staging(),
            self.corrupt(),
            self.index(),
            self.journals(),
            self.user_pins(),
            self.temp_pins(),
            self.profiles(),
        ] {
            std::fs::create_dir_all(&dir).map_err(|e| StoreError::io(&dir, e))?;
        }
        // The mountpoint may hold a mount a killed daemon left behind: `stat` of it then fails
        // (ENOTCONN), and so `mkdir` says it exists. That is for the mount to clean up, not an
        // error here.
        let store = self.store();
        match std::fs::create_dir(&store) {
            Err(e)
                if e.kind() != std::io::ErrorKind::AlreadyExists
                    && e.raw_os_error() != Some(libc::ENOTCONN) =>
            {
                return Err(StoreError::io(&store, e))
            }
            _ => {}
        }
        // Every user makes their own directory here, which then belongs to them alone: sticky
        // and world-writable, like /tmp. Only the owner of the root can (and need) set this.
        for dir in [self.user_pins(), self.profiles()] {
            use std::os::unix::fs::PermissionsExt;
            let meta = std::fs::metadata(&dir).map_err(|e| StoreError::io(&dir, e))?;
            if meta.permissions().mode() & 0o7777 != 0o1777 {
                match std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o1777)) {
                    Err(e) if e.kind() != std::io::ErrorKind::PermissionDenied => {
                        return Err(StoreError::io(&dir, e))
                    }
                    _ => {}
                }
            }
        }
        let lock = self.pins_lock();
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&lock)
            .map_err(|e| StoreError::io(&lock, e))?;
        Ok(())
    }

    /// Fails with [`StoreError::NotARoot`] unless `cairn init` made this root.
    pub fn check(&self) -> Result<(), StoreError> {
        if self.blocks().is_dir() && self.index().is_dir() {
            Ok(())
        } else {
            Err(StoreError::NotARoot {
                path: self.root.clone(),
            })
        }
    }
}
