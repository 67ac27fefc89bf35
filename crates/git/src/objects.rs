//! Object mode: a commit stored one git object per block (codec git-raw, as git-remote-ipld
//! stored repositories), turned into one pack for `git index-pack`.
//!
//! The DAG comes as `cairn dag export` writes it, a CARv1 of verified blocks; each block is a
//! loose object, `<type> <size>\0<body>`, and becomes one undeltified pack entry. Slow for
//! large histories (a block and a round trip per object; see docs/git-format.md), but it
//! reads what other tools published.

use std::io::{BufRead, Read, Write};

use anyhow::{bail, ensure, Context, Result};
use cid::Cid;
use flate2::{write::ZlibEncoder, Compression};
use sha1_checked::Digest;

use crate::doc::Format;

/// The codec of git objects as blocks.
pub const GIT_RAW: u64 = 0x78;
/// The longest CAR section read: a block (2 MiB at most, Bitswap's limit) and its CID.
const MAX_SECTION: u64 = (2 << 20) + 256;

/// The object format a git-raw CID's multihash names: sha1 (0x11) or sha2-256 (0x12).
pub fn format_of(cid: &Cid) -> Result<Format> {
    ensure!(
        cid.codec() == GIT_RAW,
        "{cid} is not a git object (codec git-raw)"
    );
    match cid.hash().code() {
        0x11 => Ok(Format::Sha1),
        0x12 => Ok(Format::Sha256),
        c => bail!("{cid}: a git object named by multihash {c:#x}, neither sha1 nor sha2-256"),
    }
}

/// The type of a loose object, from its header.
pub fn kind(block: &[u8]) -> Option<&str> {
    let space = block.iter().take(8).position(|b| *b == b' ')?;
    std::str::from_utf8(&block[..space]).ok()
}

fn varint(r: &mut impl BufRead) -> Result<Option<u64>> {
    let mut v = 0u64;
    for i in 0..10 {
        let mut b = [0u8];
        if r.read(&mut b)? == 0 {
            ensure!(i == 0, "a CAR cut inside a length");
            return Ok(None);
        }
        v |= u64::from(b[0] & 0x7f) << (7 * i);
        if b[0] & 0x80 == 0 {
            return Ok(Some(v));
        }
    }
    bail!("a CAR length of more than 64 bits")
}

/// Each git-raw block of a CARv1, in order: calls `each(type code, body)`.
fn blocks(mut car: impl BufRead, mut each: impl FnMut(u8, &[u8]) -> Result<()>) -> Result<()> {
    let header = varint(&mut car)?.context("an empty CAR")?;
    ensure!(header <= MAX_SECTION, "a CAR header of {header} bytes");
    std::io::copy(&mut car.by_ref().take(header), &mut std::io::sink())?;
    let mut buf = Vec::new();
    while let Some(len) = varint(&mut car)? {
        ensure!(len <= MAX_SECTION, "a CAR section of {len} bytes");
        buf.clear();
        car.by_ref().take(len).read_to_end(&mut buf)?;
        ensure!(buf.len() as u64 == len, "a CAR cut inside a block");
        let mut r = buf.as_slice();
        let cid = Cid::read_bytes(&mut r).context("a CID in the CAR")?;
        ensure!(
            cid.codec() == GIT_RAW,
            "{cid} in a git object DAG is no git object"
        );
        let nul = r
            .iter()
            .position(|b| *b == 0)
            .context("a git object without header")?;
        let (head, body) = (&r[..nul], &r[nul + 1..]);
        let head = std::str::from_utf8(head).context("a git object's header")?;
        let (t, size) = head.split_once(' ').context("a git object's header")?;
        ensure!(
            size.bytes().all(|b| b.is_ascii_digit())
                && !(size.len() > 1 && size.starts_with('0'))
                && size.parse::<usize>().ok() == Some(body.len()),
            "{cid}: its header says {size} bytes, its body has {}",
            body.len()
        );
        let code = match t {
            "commit" => 1,
            "tree" => 2,
            "blob" => 3,
            "tag" => 4,
            _ => bail!("{cid}: a git object of type {t:?}"),
        };
        each(code, body)?;
    }
    Ok(())
}

/// The hash a pack of `format` ends with.
enum Trailer {
    Sha1(Box<sha1_checked::Sha1>),
    Sha256(sha2::Sha256),
}

impl Trailer {
    fn update(&mut self, b: &[u8]) {
        match self {
            Trailer::Sha1(h) => h.update(b),
            Trailer::Sha256(h) => sha2::Digest::update(h, b),
        }
    }

    fn finish(self) -> Vec<u8> {
        match self {
            Trailer::Sha1(h) => h.finalize().to_vec(),
            Trailer::Sha256(h) => sha2::Digest::finalize(h).to_vec(),
        }
    }
}

/// Writes the git-raw blocks of the CAR `open` gives as one pack (version 2, every object
/// whole) to `out`; the number of objects. `open` is called twice (the pack's header counts
/// the objects first), so nothing is copied to disk on the way.
pub fn pack_from_car<R: BufRead>(
    mut open: impl FnMut() -> Result<R>,
    format: Format,
    out: &mut dyn Write,
) -> Result<u32> {
    let mut count = 0u32;
    blocks(open()?, |_, _| {
        count = count.checked_add(1).context("over 2^32 objects")?;
        Ok(())
    })?;
    let mut hash = match format {
        Format::Sha1 => Trailer::Sha1(Box::new(sha1_checked::Sha1::new())),
        Format::Sha256 => Trailer::Sha256(<sha2::Sha256 as sha2::Digest>::new()),
    };
    let mut put = |bytes: &[u8], out: &mut dyn Write| -> std::io::Result<()> {
        hash.update(bytes);
        out.write_all(bytes)
    };
    let mut head = b"PACK\0\0\0\x02".to_vec();
    head.extend_from_slice(&count.to_be_bytes());
    put(&head, out)?;
    let mut written = 0u32;
    blocks(open()?, |code, body| {
        written += 1;
        // Type and size: 3 bits of type, then the size 4 bits first, 7 at a time.
        let mut size = body.len() as u64;
        let mut h = vec![(code << 4) | (size & 0x0f) as u8];
        size >>= 4;
        while size > 0 {
            *h.last_mut().expect("one byte") |= 0x80;
            h.push((size & 0x7f) as u8);
            size >>= 7;
        }
        put(&h, out)?;
        let mut z = ZlibEncoder::new(Vec::new(), Compression::fast());
        z.write_all(body)?;
        put(&z.finish()?, out)?;
        Ok(())
    })?;
    ensure!(written == count, "the CAR changed while it was read");
    let trailer = hash.finish();
    out.write_all(&trailer)?;
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn car(blocks: &[(Cid, Vec<u8>)]) -> Vec<u8> {
        let mut out = vec![1, 0]; // a one-byte header (its contents are not read)
        for (cid, data) in blocks {
            let c = cid.to_bytes();
            let len = c.len() + data.len();
            assert!(len < 128 * 128);
            out.extend([(len as u8 & 0x7f) | 0x80, (len >> 7) as u8]);
            out.extend(c);
            out.extend(data);
        }
        out
    }

    fn file(path: &std::path::Path) -> Result<std::io::BufReader<std::fs::File>> {
        Ok(std::io::BufReader::new(std::fs::File::open(path)?))
    }

    fn git_cid(data: &[u8]) -> Cid {
        let d = sha1_checked::Sha1::digest(data);
        Cid::new_v1(GIT_RAW, multihash::Multihash::<64>::wrap(0x11, &d).unwrap())
    }

    #[test]
    fn a_pack_git_reads() {
        let blob = b"blob 6\0hello\n".to_vec();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.car");
        std::fs::write(&path, car(&[(git_cid(&blob), blob.clone())])).unwrap();
        let mut pack = Vec::new();
        assert_eq!(
            pack_from_car(|| file(&path), Format::Sha1, &mut pack).unwrap(),
            1
        );
        let repo = dir.path().join("r");
        let git = |args: &[&str], input: Option<&[u8]>| {
            let mut c = std::process::Command::new("git")
                .args(args)
                .current_dir(dir.path())
                .env("GIT_DIR", &repo)
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            c.stdin
                .take()
                .unwrap()
                .write_all(input.unwrap_or(b""))
                .unwrap();
            let o = c.wait_with_output().unwrap();
            assert!(o.status.success(), "git {args:?}");
            String::from_utf8(o.stdout).unwrap()
        };
        git(&["init", "-q", "--bare", repo.to_str().unwrap()], None);
        git(&["index-pack", "--stdin", "--strict"], Some(&pack));
        let id = crate::bundle::hex(git_cid(&blob).hash().digest());
        assert_eq!(git(&["cat-file", "blob", &id], None), "hello\n");
    }

    #[test]
    fn refuses_what_is_no_git_object() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.car");
        for bad in [
            b"blob 7\0hello\n".to_vec(),
            b"blub 6\0hello\n".to_vec(),
            b"blob6hello".to_vec(),
            b"blob +6\0hello\n".to_vec(),
            b"blob 06\0hello\n".to_vec(),
        ] {
            std::fs::write(&path, car(&[(git_cid(&bad), bad.clone())])).unwrap();
            assert!(pack_from_car(|| file(&path), Format::Sha1, &mut Vec::new()).is_err());
        }
        let raw = Cid::new_v1(0x55, *git_cid(b"x").hash());
        std::fs::write(&path, car(&[(raw, b"blob 1\0x".to_vec())])).unwrap();
        assert!(pack_from_car(|| file(&path), Format::Sha1, &mut Vec::new()).is_err());
    }
}
