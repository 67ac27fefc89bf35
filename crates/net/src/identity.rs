//! The node's persistent identity: an Ed25519 key in `R/node.key` (libp2p's protobuf
//! encoding, mode 0600), created on first start. The peer ID is derived from it, so a node
//! keeps its peer ID across restarts and peers' records of it stay valid.

use std::{io::Write, os::unix::fs::OpenOptionsExt, path::Path};

use libp2p::identity::Keypair;

/// Reads the key at `path`, or creates one there (atomically: a racing second start reads
/// the first one's key).
pub fn load_or_create(path: &Path) -> std::io::Result<Keypair> {
    match std::fs::read(path) {
        Ok(bytes) => {
            return Keypair::from_protobuf_encoding(&bytes).map_err(|e| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{} is not a libp2p key: {e}", path.display()),
                )
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let key = Keypair::generate_ed25519();
    let bytes = key
        .to_protobuf_encoding()
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(&bytes)?;
    f.sync_all()?;
    drop(f);
    // link, not rename: if another process created the key meanwhile, keep theirs.
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(key),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => load_or_create(path),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_key_survives_a_restart_and_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("node.key");
        let a = super::load_or_create(&p).unwrap();
        let b = super::load_or_create(&p).unwrap();
        assert_eq!(a.public().to_peer_id(), b.public().to_peer_id());
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        std::fs::write(&p, b"garbage").unwrap();
        assert!(super::load_or_create(&p).is_err());
    }
}
