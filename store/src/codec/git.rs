//! git objects as blocks (codec `git-raw`, 0x78): a block is a loose object as git hashes
//! it, `<type> <size>\0<body>`, and its CID's digest is the object's id: sha1 (0x11, 20
//! bytes) for an ordinary repository, sha2-256 (0x12, 32 bytes) for one made with
//! `--object-format=sha256`. The ids inside an object are as long as the block's own.
//!
//! Links, as go-ipld-git reads them (kubo reads the same, sha1 only):
//! - a tree's entries, `<octal mode> <name>\0<id>`, except gitlinks (mode 160000: a
//!   submodule's commit, in another repository);
//! - a commit's `tree` and `parent` header lines;
//! - a tag's `object` line.
//!
//! A blob has none. Everything else in a commit or tag (authors, signatures, a mergetag's
//! embedded tag) is text, not links. The parser is strict where git is: the header's size
//! must be the body's length, ids are lowercase hex of the right length, names are not
//! empty; it allocates only the links it returns (at most one per 24 bytes of tree).

use cid::Cid;
use multihash::Multihash;

use crate::error::DecodeError;

/// The codec of git objects.
pub const GIT_RAW: u64 = 0x78;
/// The multihash code of sha1, which names git objects.
pub const SHA1: u64 = 0x11;
/// The multihash code of sha2-256, which names objects of `object-format=sha256` repos.
pub const SHA2_256: u64 = 0x12;

/// The kinds of git object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Blob,
    Tree,
    Commit,
    Tag,
}

fn bad(why: impl Into<String>) -> DecodeError {
    DecodeError::Git(why.into())
}

/// The object's kind and body, the header checked.
pub fn split(bytes: &[u8]) -> Result<(Kind, &[u8]), DecodeError> {
    let nul = bytes
        .iter()
        .take(32)
        .position(|&b| b == 0)
        .ok_or_else(|| bad("no object header"))?;
    let header = &bytes[..nul];
    let body = &bytes[nul + 1..];
    let (kind, size) = header
        .iter()
        .position(|&b| b == b' ')
        .map(|sp| (&header[..sp], &header[sp + 1..]))
        .ok_or_else(|| bad("no size in the object header"))?;
    let kind = match kind {
        b"blob" => Kind::Blob,
        b"tree" => Kind::Tree,
        b"commit" => Kind::Commit,
        b"tag" => Kind::Tag,
        _ => return Err(bad("not a blob, tree, commit or tag")),
    };
    let digits_ok = !size.is_empty()
        && size.iter().all(u8::is_ascii_digit)
        && (size == b"0" || size[0] != b'0');
    let size: usize = std::str::from_utf8(size)
        .ok()
        .filter(|_| digits_ok)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("the object size is not a number"))?;
    if size != body.len() {
        return Err(bad(format!(
            "the header says {size} bytes, the body has {}",
            body.len()
        )));
    }
    Ok((kind, body))
}

/// The objects `bytes` links to; ids are `id_len` bytes (20: sha1, 32: sha2-256) and
/// become git-raw CIDs of the same hash.
pub fn links(bytes: &[u8], id_len: usize) -> Result<Vec<Cid>, DecodeError> {
    let code = match id_len {
        20 => SHA1,
        32 => SHA2_256,
        _ => return Err(bad(format!("{id_len}-byte object ids"))),
    };
    let cid = |id: &[u8]| -> Result<Cid, DecodeError> {
        let mh = Multihash::<64>::wrap(code, id).map_err(|e| bad(e.to_string()))?;
        Ok(Cid::new_v1(GIT_RAW, mh))
    };
    let (kind, body) = split(bytes)?;
    match kind {
        Kind::Blob => Ok(Vec::new()),
        Kind::Tree => {
            let mut out = Vec::new();
            let mut rest = body;
            while !rest.is_empty() {
                let sp = rest
                    .iter()
                    .take(8)
                    .position(|&b| b == b' ')
                    .ok_or_else(|| bad("a tree entry without a mode"))?;
                let mode = &rest[..sp];
                if mode.is_empty() || !mode.iter().all(|b| (b'0'..=b'7').contains(b)) {
                    return Err(bad("a tree entry's mode is not octal"));
                }
                rest = &rest[sp + 1..];
                let nul = rest
                    .iter()
                    .position(|&b| b == 0)
                    .ok_or_else(|| bad("a tree entry's name is not ended"))?;
                if nul == 0 {
                    return Err(bad("a tree entry without a name"));
                }
                let id = rest
                    .get(nul + 1..nul + 1 + id_len)
                    .ok_or_else(|| bad("a tree entry's id is cut short"))?;
                if mode != b"160000" {
                    out.push(cid(id)?);
                }
                rest = &rest[nul + 1 + id_len..];
            }
            Ok(out)
        }
        Kind::Commit | Kind::Tag => {
            let mut out = Vec::new();
            for (i, line) in body.split(|&b| b == b'\n').enumerate() {
                if line.is_empty() {
                    break; // the message follows the first empty line
                }
                let (key, value) = match line.iter().position(|&b| b == b' ') {
                    Some(sp) => (&line[..sp], &line[sp + 1..]),
                    None => (line, &b""[..]),
                };
                let wanted = match kind {
                    Kind::Commit => key == b"tree" || key == b"parent",
                    _ => key == b"object",
                };
                if !wanted {
                    continue;
                }
                // As git writes them: `tree` first in a commit, `object` first in a tag.
                if (key == b"tree" || key == b"object") && i != 0 {
                    return Err(bad("a second tree or object line"));
                }
                out.push(cid(&hex(value, id_len)?)?);
            }
            if out.is_empty() {
                return Err(bad("a commit without a tree, or a tag without an object"));
            }
            Ok(out)
        }
    }
}

/// `id_len` bytes from lowercase hex.
fn hex(text: &[u8], id_len: usize) -> Result<Vec<u8>, DecodeError> {
    if text.len() != 2 * id_len {
        return Err(bad("an object id of the wrong length"));
    }
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Ok(c - b'0'),
        b'a'..=b'f' => Ok(c - b'a' + 10),
        _ => Err(bad("an object id that is not lowercase hex")),
    };
    text.chunks(2)
        .map(|p| Ok(nibble(p[0])? << 4 | nibble(p[1])?))
        .collect()
}

#[cfg(test)]
mod tests {
    // Checked against git's own objects in tests/git.rs (which runs git: a fork in this
    // test binary would hold other tests' journal locks while it runs).
    use super::*;

    #[test]
    fn malformed_objects_are_refused() {
        let id = "ab".repeat(20);
        for bad in [
            &b""[..],
            b"blob 1\0",
            b"blob 01\0x",
            b"blob -1\0",
            b"blob 2\0x",
            b"tag\0",
            b"frob 0\0",
            b"tree 3\x00100",
            b"tree 9\x00100644 x\0ab",
            b"tree 25\x00100644 \0aaaaaaaaaaaaaaaaaaaa",
            b"tree 26\x00100a44 x\0aaaaaaaaaaaaaaaaaaaa",
            b"commit 0\0",
            b"commit 11\0author x\n\n",
        ] {
            assert!(
                links(bad, 20).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        for body in [
            format!("tree {}\n", &id[..39]),
            format!("tree {}\n", id.to_uppercase()),
            format!("parent {id}\ntree {id}\n"),
            format!("tree {id}\ntree {id}\n"),
        ] {
            let o = format!("commit {}\0{body}", body.len());
            assert!(links(o.as_bytes(), 20).is_err(), "{body:?}");
        }
        // Ids as long as the block's own hash: a sha1 tree read as sha256 is cut short.
        let o = format!("commit {}\0tree {id}\n", id.len() + 6);
        assert_eq!(links(o.as_bytes(), 20).unwrap().len(), 1);
        assert!(links(o.as_bytes(), 32).is_err());
    }
}
