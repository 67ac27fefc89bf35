//! `git bundle` files: the header cairn reads before a bundle's pack goes to `git index-pack`,
//! and writes in front of the packs it makes (gitformat-bundle(5)).
//!
//! ```text
//! # v2 git bundle                      (v3 adds capabilities: @object-format=sha256)
//! -<prerequisite id> <comment>
//! <tip id> <refname>
//!
//! <pack>
//! ```
//!
//! A bundle comes from the swarm, so [`Header::read`] reads at most [`MAX_HEADER`] bytes
//! and [`MAX_REFS`] lines of each kind before it gives up, and checks every id's length
//! against the object format.

use std::io::{BufRead, Read, Write};

use crate::doc::{Format, MAX_REFS};

/// The longest header read.
pub const MAX_HEADER: u64 = 16 << 20;

/// A bundle's header, as read or to be written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub format: Format,
    /// Commits the pack needs that it does not hold.
    pub prereqs: Vec<Vec<u8>>,
    /// The refs the bundle brings: id, name.
    pub refs: Vec<(Vec<u8>, String)>,
}

/// Why a header is refused.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("not a git bundle (v2 or v3)")]
    NotABundle,
    #[error("bundle header: {0}")]
    Malformed(String),
    #[error("bundle header over {MAX_HEADER} bytes or {MAX_REFS} lines of a kind")]
    TooLarge,
    #[error("reading the bundle: {0}")]
    Io(#[from] std::io::Error),
}

fn malformed(why: impl Into<String>) -> BundleError {
    BundleError::Malformed(why.into())
}

/// Lowercase hex of `id`.
pub fn hex(id: &[u8]) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}

/// The id `s` spells in lowercase hex, if it is exactly `len` bytes.
pub fn unhex(s: &str, len: usize) -> Option<Vec<u8>> {
    if s.len() != 2 * len || !s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    (0..len)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok())
        .collect()
}

impl Header {
    /// Reads the header from `r`, leaving `r` at the first byte of the pack. Returns it and
    /// its length in bytes.
    pub fn read(r: &mut impl BufRead) -> Result<(Header, u64), BundleError> {
        let mut used = 0u64;
        let mut line = Vec::new();
        let mut next = |line: &mut Vec<u8>| -> Result<bool, BundleError> {
            line.clear();
            let n = r.by_ref().take(MAX_HEADER - used).read_until(b'\n', line)?;
            used += n as u64;
            if n == 0 {
                return Ok(false);
            }
            if line.last() != Some(&b'\n') {
                return Err(if used >= MAX_HEADER {
                    BundleError::TooLarge
                } else {
                    malformed("ends before its blank line")
                });
            }
            line.pop();
            Ok(true)
        };
        if !next(&mut line)? {
            return Err(BundleError::NotABundle);
        }
        let v3 = match line.as_slice() {
            b"# v2 git bundle" => false,
            b"# v3 git bundle" => true,
            _ => return Err(BundleError::NotABundle),
        };
        let mut format = Format::Sha1;
        let mut prereqs = Vec::new();
        let mut refs = Vec::new();
        loop {
            if !next(&mut line)? {
                return Err(malformed("ends before its blank line"));
            }
            if line.is_empty() {
                break;
            }
            let s = std::str::from_utf8(&line).map_err(|_| malformed("a line not UTF-8"))?;
            if let Some(cap) = s.strip_prefix('@') {
                if !v3 || !prereqs.is_empty() || !refs.is_empty() {
                    return Err(malformed("a capability out of place"));
                }
                format = match cap {
                    "object-format=sha1" => Format::Sha1,
                    "object-format=sha256" => Format::Sha256,
                    // filter= (a partial bundle) and anything newer: not what cairn writes.
                    _ => return Err(malformed(format!("capability {cap:?}"))),
                };
                continue;
            }
            let len = format.id_len();
            if let Some(p) = s.strip_prefix('-') {
                let id = p.split(' ').next().unwrap_or_default();
                let id = unhex(id, len).ok_or_else(|| malformed("a prerequisite's id"))?;
                if !refs.is_empty() {
                    return Err(malformed("a prerequisite after a ref"));
                }
                if prereqs.len() == MAX_REFS {
                    return Err(BundleError::TooLarge);
                }
                prereqs.push(id);
            } else {
                let (id, name) = s.split_once(' ').ok_or_else(|| malformed("a ref line"))?;
                let id = unhex(id, len).ok_or_else(|| malformed("a ref's id"))?;
                if refs.len() == MAX_REFS {
                    return Err(BundleError::TooLarge);
                }
                refs.push((id, name.to_owned()));
            }
        }
        if refs.is_empty() {
            return Err(malformed("no refs"));
        }
        Ok((
            Header {
                format,
                prereqs,
                refs,
            },
            used,
        ))
    }

    /// Writes the header (v2 for sha1, v3 for sha256, as `git bundle create` does).
    pub fn write(&self, w: &mut impl Write) -> std::io::Result<()> {
        match self.format {
            Format::Sha1 => w.write_all(b"# v2 git bundle\n")?,
            Format::Sha256 => w.write_all(b"# v3 git bundle\n@object-format=sha256\n")?,
        }
        for p in &self.prereqs {
            writeln!(w, "-{}", hex(p))?;
        }
        for (id, name) in &self.refs {
            writeln!(w, "{} {name}", hex(id))?;
        }
        w.write_all(b"\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(b: u8, len: usize) -> Vec<u8> {
        vec![b; len]
    }

    #[test]
    fn round_trips_and_leaves_the_reader_at_the_pack() {
        for format in [Format::Sha1, Format::Sha256] {
            let h = Header {
                format,
                prereqs: vec![id(1, format.id_len())],
                refs: vec![
                    (id(2, format.id_len()), "refs/heads/main".into()),
                    (id(3, format.id_len()), "refs/tags/v1".into()),
                ],
            };
            let mut bytes = Vec::new();
            h.write(&mut bytes).unwrap();
            let len = bytes.len() as u64;
            bytes.extend_from_slice(b"PACK...");
            let mut r = std::io::Cursor::new(bytes);
            let (back, used) = Header::read(&mut r).unwrap();
            assert_eq!(back, h);
            assert_eq!(used, len);
            let mut rest = Vec::new();
            std::io::Read::read_to_end(&mut r, &mut rest).unwrap();
            assert_eq!(rest, b"PACK...");
        }
    }

    #[test]
    fn reads_what_git_writes() {
        // A prerequisite with its comment, as `git bundle create` writes it.
        let text = format!(
            "# v2 git bundle\n-{} subject of a commit\n{} refs/heads/main\n\nPACK",
            "a".repeat(40),
            "b".repeat(40)
        );
        let (h, _) = Header::read(&mut text.as_bytes()).unwrap();
        assert_eq!(h.prereqs, vec![vec![0xaa; 20]]);
        assert_eq!(h.refs, vec![(vec![0xbb; 20], "refs/heads/main".into())]);
    }

    #[test]
    fn refuses_what_is_not_a_header() {
        let bad = [
            "".to_string(),
            "# v4 git bundle\n".into(),
            "# v2 git bundle\n".into(),
            format!("# v2 git bundle\n{} refs/heads/main\n", "b".repeat(40)),
            format!("# v2 git bundle\n{} refs/heads/main\n\n", "B".repeat(40)),
            format!("# v2 git bundle\n{} refs/heads/main\n\n", "b".repeat(64)),
            format!(
                "# v2 git bundle\n@object-format=sha256\n{} r\n\n",
                "b".repeat(64)
            ),
            format!(
                "# v3 git bundle\n@filter=blob:none\n{} r\n\n",
                "b".repeat(40)
            ),
            format!(
                "# v2 git bundle\n{} r\n-{}\n\n",
                "b".repeat(40),
                "a".repeat(40)
            ),
            "# v2 git bundle\n\n".into(),
        ];
        for t in bad {
            assert!(Header::read(&mut t.as_bytes()).is_err(), "took {t:?}");
        }
    }

    #[test]
    fn a_header_without_end_stops_at_a_bound() {
        // Ref lines without end are read up to a bound, and no further.
        struct Endless(u64);
        impl std::io::Read for Endless {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                let line = format!("{} refs/heads/x\n", "b".repeat(40));
                let line = line.as_bytes();
                for b in buf.iter_mut() {
                    *b = line[(self.0 % line.len() as u64) as usize];
                    self.0 += 1;
                }
                Ok(buf.len())
            }
        }
        let mut src = Endless(0);
        let mut head = b"# v2 git bundle\n"
            .as_slice()
            .chain(std::io::BufReader::new(std::io::Read::by_ref(&mut src)));
        assert!(matches!(
            Header::read(&mut head),
            Err(BundleError::TooLarge)
        ));
        assert!(src.0 <= MAX_HEADER + 64 * 1024);
    }
}
