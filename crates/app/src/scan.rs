//! Finding the placeholder in a stream of bytes, across any split into reads, in memory
//! bounded by the placeholder's length.

use memchr::memmem::Finder;

use crate::{LEN, PLACEHOLDER, STEM};

/// At most this many partial placeholders are remembered per file (they only make warnings).
const MAX_PARTIAL: usize = 16;

/// Feeds on a file's bytes in order; finds every whole placeholder and every [`STEM`] that
/// does not begin one.
pub struct Scanner {
    whole: Finder<'static>,
    stem: Finder<'static>,
    /// The last `LEN - 1` bytes seen, where a match may have begun.
    tail: Vec<u8>,
    /// Bytes seen so far.
    seen: u64,
    found: Vec<u64>,
    stems: Vec<u64>,
}

impl Default for Scanner {
    fn default() -> Self {
        Scanner::new()
    }
}

impl Scanner {
    pub fn new() -> Scanner {
        Scanner {
            whole: Finder::new(PLACEHOLDER.as_bytes()),
            stem: Finder::new(STEM.as_bytes()),
            tail: Vec::with_capacity(2 * LEN),
            seen: 0,
            found: Vec::new(),
            stems: Vec::new(),
        }
    }

    /// The next bytes of the stream.
    pub fn feed(&mut self, bytes: &[u8]) {
        // Matches that begin in the tail and end in `bytes`: search the tail joined to just
        // enough of `bytes`, keeping those that begin in the tail.
        let start = self.seen - self.tail.len() as u64;
        let tail_len = self.tail.len();
        self.tail
            .extend_from_slice(&bytes[..bytes.len().min(LEN - 1)]);
        for i in self.whole.find_iter(&self.tail) {
            if i < tail_len {
                self.found.push(start + i as u64);
            }
        }
        for i in self.stem.find_iter(&self.tail) {
            if i < tail_len {
                self.stems.push(start + i as u64);
            }
        }
        self.tail.truncate(tail_len);
        // Matches that begin in `bytes`.
        for i in self.whole.find_iter(bytes) {
            self.found.push(self.seen + i as u64);
        }
        if self.stems.len() < MAX_PARTIAL + self.found.len() {
            for i in self.stem.find_iter(bytes) {
                self.stems.push(self.seen + i as u64);
            }
        }
        self.seen += bytes.len() as u64;
        // Keep the last LEN - 1 bytes of everything seen.
        if bytes.len() >= LEN - 1 {
            self.tail.clear();
            self.tail
                .extend_from_slice(&bytes[bytes.len() - (LEN - 1)..]);
        } else {
            self.tail.extend_from_slice(bytes);
            let extra = self.tail.len().saturating_sub(LEN - 1);
            self.tail.drain(..extra);
        }
    }

    /// The offsets of whole placeholders (sorted, none overlapping: the placeholder cannot
    /// overlap itself), and of stems that begin none (at most a few).
    pub fn finish(mut self) -> (Vec<u64>, Vec<u64>) {
        self.found.sort_unstable();
        self.found.dedup();
        self.stems.sort_unstable();
        self.stems.dedup();
        let found = self.found;
        let mut partial: Vec<u64> = self
            .stems
            .into_iter()
            .filter(|s| found.binary_search(s).is_err())
            .collect();
        partial.truncate(MAX_PARTIAL);
        (found, partial)
    }
}

/// The placeholder occurrences in `bytes` (a symlink target, say).
pub fn find_in(bytes: &[u8]) -> (Vec<u64>, Vec<u64>) {
    let mut s = Scanner::new();
    s.feed(bytes);
    s.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every split of a stream into reads finds the same occurrences, including those cut
    /// by a read boundary, and no others.
    #[test]
    fn finds_placeholders_across_every_split() {
        let p = PLACEHOLDER.as_bytes();
        let mut data = vec![b'x'; 300];
        for at in [0usize, 61, 140, 300 - LEN] {
            data[at..at + LEN].copy_from_slice(p);
        }
        // A stem without the rest, and a placeholder missing its last byte.
        data[200..200 + STEM.len()].copy_from_slice(STEM.as_bytes());
        let want = vec![0u64, 61, 140, 300 - LEN as u64];
        for split in [1usize, 2, 7, LEN - 1, LEN, LEN + 1, 100, 300] {
            let mut s = Scanner::new();
            for c in data.chunks(split) {
                s.feed(c);
            }
            let (found, partial) = s.finish();
            assert_eq!(found, want, "reads of {split}");
            assert_eq!(partial, vec![200], "reads of {split}");
        }
        let mut cut = p[..LEN - 1].to_vec();
        cut.push(b'!');
        assert_eq!(find_in(&cut), (vec![], vec![0]));
        assert_eq!(find_in(b""), (vec![], vec![]));
    }
}
