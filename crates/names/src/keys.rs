//! A user's keys: one file per key under `~/.config/cairn/keys/` (or
//! `$XDG_CONFIG_HOME/cairn/keys/`), in libp2p's protobuf encoding of a private key, which is
//! what kubo's `ipfs key export` writes and what `R/node.key` holds.
//!
//! A key is its owner's alone, so it never lives in a cairn root, and the store checks what ssh
//! checks before it reads or writes one: the keys directory is a directory (not a symlink),
//! owned by the user, mode 0700 or stricter; its parent is owned by the user and writable by
//! nobody else; a key file is a regular file (not a symlink, opened without following one),
//! owned by the user, readable by nobody else. Anything else is refused with the path and why;
//! nothing is repaired behind the user's back.
//!
//! Ed25519 keys are made here and imported; RSA keys (kubo's older peer identities) are
//! imported and kept as they came, since libp2p can sign with them but not write them; other
//! key types are refused.

use std::{
    fs,
    io::{Read, Write},
    os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt},
    path::{Path, PathBuf},
};

use libp2p_identity::{KeyType, Keypair};

use crate::name::Name;

/// The largest key file read (an RSA-4096 key is about 2.4 KiB; a kubo config a few KiB).
pub const MAX_KEY_FILE: u64 = 64 << 10;
/// The longest key name.
pub const MAX_KEY_NAME: usize = 64;

/// Why a key operation failed.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(
        "{0:?} is not a key name (1 to {MAX_KEY_NAME} of A-Z a-z 0-9 . _ -, not starting with .)"
    )]
    BadName(String),
    #[error("no key named {0:?} (cairn key list shows them)")]
    NotFound(String),
    #[error("a key named {0:?} exists already (cairn key rm it first)")]
    Exists(String),
    #[error("{}: {why}; refused, as ssh refuses such key files", path.display())]
    Unsafe { path: PathBuf, why: String },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("not a key: {0}")]
    BadKey(String),
    #[error("neither $XDG_CONFIG_HOME nor $HOME is set: no place for keys")]
    NoHome,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> KeyError + '_ {
    move |source| KeyError::Io {
        path: path.to_owned(),
        source,
    }
}

fn unsafe_(path: &Path, why: impl Into<String>) -> KeyError {
    KeyError::Unsafe {
        path: path.to_owned(),
        why: why.into(),
    }
}

/// A key as the store holds it.
pub struct Key {
    pub name: String,
    pub keypair: Keypair,
    /// The bytes as stored (what `export` writes).
    pub encoded: Vec<u8>,
}

impl Key {
    /// The IPNS name this key signs for.
    pub fn ipns(&self) -> Name {
        Name::of(&self.keypair.public())
    }
}

/// A key's published record, signed again ([`Keystore::resigned`]).
pub struct Resigned {
    pub key: String,
    pub name: Name,
    pub value: String,
    pub record: Vec<u8>,
}

/// A key file's name, and its key or why it cannot be used.
pub type Listed = (String, Result<Key, KeyError>);

/// How long [`Keystore::lock`] waits for another holder.
pub const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(120);

/// The keys of the user running this process.
pub struct Keystore {
    dir: PathBuf,
    uid: u32,
}

fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// The default keys directory: `$XDG_CONFIG_HOME/cairn/keys`, else `~/.config/cairn/keys`.
pub fn default_dir() -> Result<PathBuf, KeyError> {
    let config = match std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
        Some(c) => PathBuf::from(c),
        None => PathBuf::from(
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .ok_or(KeyError::NoHome)?,
        )
        .join(".config"),
    };
    Ok(config.join("cairn").join("keys"))
}

/// Checks a key name: it becomes a file name, so no `/`, no leading dot, nothing odd.
pub fn check_name(name: &str) -> Result<(), KeyError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_KEY_NAME
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(KeyError::BadName(name.chars().take(100).collect()))
    }
}

/// Makes `dir` (mode 0700) if it is missing; never changes one that exists.
fn make_dir(dir: &Path) -> Result<(), KeyError> {
    match fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(io(dir)(e)),
    }
}

/// `dir` is a real directory (not a symlink), owned by `uid`, with no bit of `forbidden`.
fn check_dir(dir: &Path, uid: u32, forbidden: u32, what: &str) -> Result<(), KeyError> {
    let m = fs::symlink_metadata(dir).map_err(io(dir))?;
    if !m.is_dir() {
        return Err(unsafe_(dir, "not a directory (a symlink?)"));
    }
    if m.uid() != uid {
        return Err(unsafe_(
            dir,
            format!("owned by uid {}, not by you ({uid})", m.uid()),
        ));
    }
    if m.mode() & forbidden != 0 {
        return Err(unsafe_(
            dir,
            format!("{what} (mode {:o}; chmod 700 it)", m.mode() & 0o7777),
        ));
    }
    Ok(())
}

impl Keystore {
    /// The keys directory of this user, made (0700) if missing.
    pub fn open_default() -> Result<Keystore, KeyError> {
        Keystore::open(&default_dir()?)
    }

    /// The keys directory `dir`, made (0700, and its parent) if missing, then checked.
    pub fn open(dir: &Path) -> Result<Keystore, KeyError> {
        let uid = euid();
        let parent = dir
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        if let Some(grand) = parent.parent().filter(|p| !p.as_os_str().is_empty()) {
            if !grand.exists() {
                fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(grand)
                    .map_err(io(grand))?;
            }
        }
        make_dir(parent)?;
        make_dir(dir)?;
        // The parent: the user's and writable by nobody else; the keys directory: the user's
        // and open to nobody else.
        check_dir(parent, uid, 0o022, "writable by others")?;
        check_dir(dir, uid, 0o077, "open to others")?;
        Ok(Keystore {
            dir: dir.to_owned(),
            uid,
        })
    }

    /// The directory the keys are in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.key"))
    }

    /// Whether a key of that name exists (as any file at all).
    pub fn exists(&self, name: &str) -> Result<bool, KeyError> {
        check_name(name)?;
        Ok(fs::symlink_metadata(self.path(name)).is_ok())
    }

    /// Reads key `name`, checking its file first.
    pub fn get(&self, name: &str) -> Result<Key, KeyError> {
        check_name(name)?;
        let Some(encoded) = self.read_private(&self.path(name), MAX_KEY_FILE)? else {
            return Err(KeyError::NotFound(name.to_owned()));
        };
        let keypair = decode(&encoded)?;
        Ok(Key {
            name: name.to_owned(),
            keypair,
            encoded,
        })
    }

    /// Every key's name, in order, with its key or why it cannot be used.
    pub fn list(&self) -> Result<Vec<Listed>, KeyError> {
        let mut names: Vec<String> = fs::read_dir(&self.dir)
            .map_err(io(&self.dir))?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let f = e.file_name().into_string().ok()?;
                let n = f.strip_suffix(".key")?.to_owned();
                check_name(&n).ok().map(|_| n)
            })
            .collect();
        names.sort();
        Ok(names
            .into_iter()
            .map(|n| {
                let k = self.get(&n);
                (n, k)
            })
            .collect())
    }

    /// Makes a new Ed25519 key called `name`.
    pub fn generate(&self, name: &str) -> Result<Key, KeyError> {
        let keypair = Keypair::generate_ed25519();
        let encoded = keypair
            .to_protobuf_encoding()
            .map_err(|e| KeyError::BadKey(e.to_string()))?;
        self.store(name, &encoded)?;
        Ok(Key {
            name: name.to_owned(),
            keypair,
            encoded,
        })
    }

    /// Imports a key from `bytes` in any form [`decode_import`] reads, as `name`.
    pub fn import(&self, name: &str, bytes: &[u8]) -> Result<Key, KeyError> {
        let encoded = decode_import(bytes)?;
        let keypair = decode(&encoded)?;
        self.store(name, &encoded)?;
        Ok(Key {
            name: name.to_owned(),
            keypair,
            encoded,
        })
    }

    /// Removes key `name`: its file goes, and with it the name's future (nobody can sign
    /// for it again unless the key was exported).
    pub fn remove(&self, name: &str) -> Result<(), KeyError> {
        check_name(name)?;
        let path = self.path(name);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(KeyError::NotFound(name.to_owned()))
            }
            Err(e) => Err(io(&path)(e)),
        }
    }

    /// The last record this user published under key `name`: its sequence and value, as
    /// [`set_head`](Self::set_head) left it (`NAME.head`, checked as key files are: mode 0600). A
    /// publish goes on from it when the network has forgotten the name (expired while its
    /// owner was away) or answers with something older, so that it never starts again at 0.
    pub fn head(&self, name: &str) -> Result<Option<(u64, String)>, KeyError> {
        check_name(name)?;
        let path = self.dir.join(format!("{name}.head"));
        let Some(bytes) = self.read_private(&path, 8192)? else {
            return Ok(None);
        };
        let text = String::from_utf8_lossy(&bytes);
        let (seq, value) = text
            .trim_end()
            .split_once(' ')
            .ok_or_else(|| KeyError::BadKey(format!("{}: not 'SEQUENCE VALUE'", path.display())))?;
        let seq = seq
            .parse()
            .map_err(|_| KeyError::BadKey(format!("{}: not 'SEQUENCE VALUE'", path.display())))?;
        Ok(Some((seq, value.to_owned())))
    }

    /// Holds key `name`'s lock (`.NAME.lock`, flock, waited for up to [`LOCK_WAIT`]) until
    /// the file it returns is dropped:
    /// a read, change and publish of what the key's name points to, one at a time.
    pub fn lock(&self, name: &str) -> Result<fs::File, KeyError> {
        check_name(name)?;
        let path = self.dir.join(format!(".{name}.lock"));
        let f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&path)
            .map_err(io(&path))?;
        // Waited for [`LOCK_WAIT`] at most: a change that hangs must not stall every later
        // one for ever.
        let start = std::time::Instant::now();
        loop {
            // SAFETY: flock on a descriptor this function owns.
            let r = unsafe {
                libc::flock(
                    std::os::fd::AsRawFd::as_raw_fd(&f),
                    libc::LOCK_EX | libc::LOCK_NB,
                )
            };
            if r == 0 {
                return Ok(f);
            }
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EWOULDBLOCK) {
                return Err(io(&path)(e));
            }
            if start.elapsed() > LOCK_WAIT {
                return Err(io(&path)(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!(
                        "another change of key {name}'s name held this lock for {} s",
                        LOCK_WAIT.as_secs()
                    ),
                )));
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// Records that key `name` last published `value` at `sequence`.
    pub fn set_head(&self, name: &str, sequence: u64, value: &str) -> Result<(), KeyError> {
        check_name(name)?;
        let path = self.dir.join(format!("{name}.head"));
        let tmp = self.write_temp(name, format!("{sequence} {value}\n").as_bytes())?;
        let renamed = fs::rename(&tmp, &path);
        if renamed.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        renamed.map_err(io(&path))
    }

    /// Every key with a published head, its record signed again: the same sequence and
    /// value, valid for [`crate::record::LIFETIME`] from `now`. Keys that cannot be read or
    /// sign are left out.
    pub fn resigned(&self, now: crate::time::Nanos) -> Vec<Resigned> {
        let mut out = Vec::new();
        for (key_name, key) in self.list().unwrap_or_default() {
            let (Ok(key), Ok(Some((seq, value)))) = (key, self.head(&key_name)) else {
                continue;
            };
            let validity = now + crate::record::LIFETIME.as_nanos() as i128;
            let ttl = crate::record::TTL.as_nanos() as u64;
            if let Ok(bytes) = crate::record::sign(&key.keypair, &value, seq, validity, ttl) {
                out.push(Resigned {
                    key: key_name,
                    name: key.ipns(),
                    value,
                    record: bytes,
                });
            }
        }
        out
    }

    /// Reads a file of the keys directory that must be the user's alone (a regular file,
    /// never through a symlink, owned by the user, mode 0600 or stricter), at most `max`
    /// bytes; `None` if it does not exist.
    fn read_private(&self, path: &Path, max: u64) -> Result<Option<Vec<u8>>, KeyError> {
        let mut file = match fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
                return Err(unsafe_(path, "a symlink"));
            }
            Err(e) => return Err(io(path)(e)),
        };
        let m = file.metadata().map_err(io(path))?;
        if !m.is_file() {
            return Err(unsafe_(path, "not a regular file"));
        }
        if m.uid() != self.uid {
            return Err(unsafe_(
                path,
                format!("owned by uid {}, not by you ({})", m.uid(), self.uid),
            ));
        }
        if m.mode() & 0o077 != 0 {
            return Err(unsafe_(
                path,
                format!(
                    "readable or writable by others (mode {:o}; chmod 600 it)",
                    m.mode() & 0o7777
                ),
            ));
        }
        if m.len() > max {
            return Err(KeyError::BadKey(format!(
                "{}: {} bytes",
                path.display(),
                m.len()
            )));
        }
        let mut bytes = Vec::new();
        Read::by_ref(&mut file)
            .take(max)
            .read_to_end(&mut bytes)
            .map_err(io(path))?;
        Ok(Some(bytes))
    }

    /// Writes `bytes` to a fresh temporary file of the keys directory (made 0600 and
    /// exclusively, never through a symlink, synced); its path.
    fn write_temp(&self, name: &str, bytes: &[u8]) -> Result<PathBuf, KeyError> {
        let tmp = self.dir.join(format!(".{name}.{}.tmp", std::process::id()));
        let _ = fs::remove_file(&tmp);
        let write = || -> std::io::Result<()> {
            let mut f = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&tmp)?;
            f.write_all(bytes)?;
            f.sync_all()
        };
        match write() {
            Ok(()) => Ok(tmp),
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                Err(io(&tmp)(e))
            }
        }
    }

    /// Writes a new key file: a temporary file made 0600 and exclusively, synced, then linked
    /// in under its name, which must not exist (a key is never overwritten).
    fn store(&self, name: &str, encoded: &[u8]) -> Result<(), KeyError> {
        check_name(name)?;
        let path = self.path(name);
        let tmp = self.write_temp(name, encoded)?;
        // link(2) fails if the name exists: two `key gen` of one name cannot both win.
        let linked = fs::hard_link(&tmp, &path);
        let _ = fs::remove_file(&tmp);
        match linked {
            Ok(()) => {
                if let Ok(d) = fs::File::open(&self.dir) {
                    let _ = d.sync_all();
                }
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                Err(KeyError::Exists(name.to_owned()))
            }
            Err(e) => Err(io(&path)(e)),
        }
    }
}

/// A private key in libp2p's protobuf encoding, if it is an Ed25519 or RSA key.
pub fn decode(encoded: &[u8]) -> Result<Keypair, KeyError> {
    // The protobuf's first field is the key type (field 1, varint): name the type refused.
    let kind = match encoded {
        [0x08, t, ..] => *t,
        _ => 0xff,
    };
    match kind {
        0 | 1 => {}
        2 => {
            return Err(KeyError::BadKey(
                "a secp256k1 key (only Ed25519 and RSA)".into(),
            ))
        }
        3 => {
            return Err(KeyError::BadKey(
                "an ECDSA key (only Ed25519 and RSA)".into(),
            ))
        }
        _ => {
            return Err(KeyError::BadKey(
                "not a private key in libp2p's protobuf encoding".into(),
            ));
        }
    }
    let keypair =
        Keypair::from_protobuf_encoding(encoded).map_err(|e| KeyError::BadKey(e.to_string()))?;
    match keypair.key_type() {
        KeyType::Ed25519 | KeyType::RSA => Ok(keypair),
        other => Err(KeyError::BadKey(format!(
            "a {other:?} key (only Ed25519 and RSA)"
        ))),
    }
}

/// What `key import` reads: a private key in libp2p's protobuf encoding (`ipfs key export`,
/// `R/node.key`); the same in base64 (kubo's config `Identity.PrivKey`); or a kubo config
/// file, whose `Identity.PrivKey` is taken.
pub fn decode_import(bytes: &[u8]) -> Result<Vec<u8>, KeyError> {
    if bytes.len() as u64 > MAX_KEY_FILE {
        return Err(KeyError::BadKey(format!(
            "{} bytes (at most {MAX_KEY_FILE})",
            bytes.len()
        )));
    }
    if bytes.first() == Some(&0x08) {
        return Ok(bytes.to_vec());
    }
    let text = std::str::from_utf8(bytes)
        .map_err(|_| KeyError::BadKey("neither a protobuf key nor text".into()))?
        .trim();
    let b64 = if text.starts_with('{') {
        let config: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| KeyError::BadKey(format!("a JSON file, but: {e}")))?;
        config["Identity"]["PrivKey"]
            .as_str()
            .ok_or_else(|| KeyError::BadKey("a JSON file without Identity.PrivKey".into()))?
            .to_owned()
    } else {
        text.to_owned()
    };
    cid::multibase::Base::Base64Pad
        .decode(&b64)
        .map_err(|_| KeyError::BadKey("neither a protobuf key, base64 nor a kubo config".into()))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn store() -> (tempfile::TempDir, Keystore) {
        let t = tempfile::tempdir().unwrap();
        let ks = Keystore::open(&t.path().join("cairn/keys")).unwrap();
        (t, ks)
    }

    #[test]
    fn generate_export_import_remove() {
        let (_t, ks) = store();
        let k = ks.generate("hello").unwrap();
        assert_eq!(k.keypair.key_type(), KeyType::Ed25519);
        let mode = fs::metadata(ks.dir().join("hello.key")).unwrap().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(fs::metadata(ks.dir()).unwrap().mode() & 0o777, 0o700);
        assert!(matches!(ks.generate("hello"), Err(KeyError::Exists(_))));
        let again = ks.get("hello").unwrap();
        assert_eq!(again.ipns(), k.ipns());
        // Export and import round-trip, raw and as base64.
        let copy = ks.import("copy", &again.encoded).unwrap();
        assert_eq!(copy.ipns(), k.ipns());
        let b64 = cid::multibase::Base::Base64Pad.encode(&again.encoded);
        let config = format!(r#"{{"Identity": {{"PeerID": "x", "PrivKey": "{b64}"}}}}"#);
        assert_eq!(
            ks.import("conf", config.as_bytes()).unwrap().ipns(),
            k.ipns()
        );
        assert_eq!(ks.import("b64", b64.as_bytes()).unwrap().ipns(), k.ipns());
        let names: Vec<String> = ks.list().unwrap().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["b64", "conf", "copy", "hello"]);
        ks.remove("copy").unwrap();
        assert!(matches!(ks.get("copy"), Err(KeyError::NotFound(_))));
        for bad in ["", ".hidden", "a/b", "..", &"x".repeat(65), "a b"] {
            assert!(
                matches!(ks.generate(bad), Err(KeyError::BadName(_))),
                "{bad}"
            );
        }
    }

    /// The last published head of a key survives, and is refused if others could write it.
    #[test]
    fn heads_are_kept_beside_their_keys() {
        let (_t, ks) = store();
        assert_eq!(ks.head("app").unwrap(), None);
        ks.set_head("app", 7, "/ipfs/bafkqaaa").unwrap();
        ks.set_head("app", 8, "/ipfs/bafkqaab").unwrap();
        assert_eq!(ks.head("app").unwrap(), Some((8, "/ipfs/bafkqaab".into())));
        let path = ks.dir().join("app.head");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o666)).unwrap();
        assert!(matches!(ks.head("app"), Err(KeyError::Unsafe { .. })));
    }

    /// What ssh refuses is refused: a key file others may read, a symlink, a directory open
    /// to others.
    #[test]
    fn loose_files_are_refused() {
        let (t, ks) = store();
        ks.generate("k").unwrap();
        let path = ks.dir().join("k.key");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        assert!(matches!(ks.get("k"), Err(KeyError::Unsafe { .. })));
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        assert!(ks.get("k").is_ok());
        // A symlink to a key that would pass is still refused.
        std::os::unix::fs::symlink(&path, ks.dir().join("link.key")).unwrap();
        assert!(matches!(ks.get("link"), Err(KeyError::Unsafe { .. })));
        fs::set_permissions(ks.dir(), fs::Permissions::from_mode(0o750)).unwrap();
        assert!(matches!(
            Keystore::open(ks.dir()),
            Err(KeyError::Unsafe { .. })
        ));
        // A keys directory that is a symlink is refused.
        let real = t.path().join("elsewhere");
        fs::create_dir(&real).unwrap();
        fs::set_permissions(&real, fs::Permissions::from_mode(0o700)).unwrap();
        std::os::unix::fs::symlink(&real, t.path().join("cairn/linked")).unwrap();
        assert!(matches!(
            Keystore::open(&t.path().join("cairn/linked")),
            Err(KeyError::Unsafe { .. })
        ));
    }

    #[test]
    fn other_key_types_are_refused() {
        // A secp256k1 key in protobuf form: type 2, then 32 bytes.
        let mut secp = vec![0x08, 0x02, 0x12, 32];
        secp.extend([7u8; 32]);
        assert!(matches!(decode(&secp), Err(KeyError::BadKey(m)) if m.contains("secp256k1")));
        assert!(decode(b"garbage").is_err());
        assert!(decode_import(&[0u8; 70_000]).is_err());
    }

    /// An RSA key (kubo's older identities), made by openssl as PKCS#1 and wrapped as libp2p
    /// wraps it: imported, exported as it came, and its records carry the key and verify.
    #[test]
    fn rsa_keys_import_and_sign() {
        let out = std::process::Command::new("sh")
            .args([
                "-c",
                "openssl genrsa 2048 2>/dev/null | openssl rsa -traditional -outform DER 2>/dev/null",
            ])
            .output()
            .expect("openssl (Debian: apt install openssl)");
        let der = out.stdout;
        assert!(der.len() > 1000, "openssl made no key");
        let mut pb = vec![0x08, 0x00, 0x12];
        let mut n = der.len();
        while n >= 0x80 {
            pb.push((n as u8) | 0x80);
            n >>= 7;
        }
        pb.push(n as u8);
        pb.extend_from_slice(&der);
        let (_t, ks) = store();
        let k = ks.import("kubo", &pb).unwrap();
        assert_eq!(k.keypair.key_type(), KeyType::RSA);
        assert!(k.ipns().inline_key().is_none());
        assert_eq!(ks.get("kubo").unwrap().encoded, pb);
        let now = 1_800_000_000_000_000_000;
        let rec = crate::record::sign(&k.keypair, "/ipfs/bafkqaaa", 1, now + 1, 1).unwrap();
        assert_eq!(
            crate::record::verify(&k.ipns(), &rec, now).unwrap().value,
            "/ipfs/bafkqaaa"
        );
        assert!(k.ipns().peer_id().to_string().starts_with("Qm"));
    }
}
