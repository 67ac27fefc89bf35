//! Which callers get attributes with their listings.
//!
//! A READDIRPLUS reply carries every entry's attributes, and the kernel makes an inode and a
//! dentry for each: about 2.5 µs an entry here, four times what `find` costs on ext4 over
//! the whole walk, for a program that reads only names and kinds. A plain READDIR carries
//! names and kinds, and a program that then `stat`s the entries pays a LOOKUP for each.
//!
//! The kernel chooses between the two (`FUSE_READDIRPLUS_AUTO`): plus for a directory's
//! first request, plain after that unless the program looked names up in the directory
//! meanwhile. Since Linux 6.16 a first request is as large as the program's buffer, so the
//! first request is usually the whole directory and every listing instantiates every entry.
//!
//! cairn decides by caller instead. A caller (the kernel names the calling thread; 0 for a
//! caller outside the mount's PID namespace) that has looked up something other than a
//! directory through the mount reads attributes: `ls -l`, `du`, `tar`, a program opening
//! its files. Its listings carry attributes. Any other caller's first request for a large
//! directory is answered with "." and ".." alone. The kernel then asks for the rest plainly,
//! unless some lookup in that directory missed its dentries meanwhile. `find` only looks up
//! the directories it descends into, so it never switches. A tool that lists on one thread
//! and `stat`s on another gets names only on the listing thread: slower, never wrong.
//!
//! What a caller did is kept in a small table indexed by its thread ID. A collision or a
//! reused ID only changes which reply a caller gets, never what it reads.

use std::sync::atomic::{AtomicU32, Ordering};

/// Slots in the table of callers that read attributes.
const SLOTS: usize = 4096;

/// Directories with at most this many entries are listed with attributes for every caller:
/// the extra request that a names-only first reply costs would outweigh the inodes saved.
pub(crate) const SMALL_LISTING: usize = 16;

pub(crate) struct Listers {
    /// A caller's thread ID in its slot: it looked up something other than a directory.
    reads_attrs: Box<[AtomicU32]>,
}

impl Listers {
    pub(crate) fn new() -> Listers {
        Listers {
            reads_attrs: (0..SLOTS).map(|_| AtomicU32::new(0)).collect(),
        }
    }

    /// `pid` looked up an entry that is not a directory.
    pub(crate) fn looked_up_file(&self, pid: u32) {
        let slot = &self.reads_attrs[pid as usize % SLOTS];
        if slot.load(Ordering::Relaxed) != pid {
            slot.store(pid, Ordering::Relaxed);
        }
    }

    /// Whether `pid` gets attributes with its listings.
    pub(crate) fn reads_attrs(&self, pid: u32) -> bool {
        pid != 0 && self.reads_attrs[pid as usize % SLOTS].load(Ordering::Relaxed) == pid
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_caller_switches_alone() {
        let l = Listers::new();
        assert!(!l.reads_attrs(4242));
        l.looked_up_file(4242);
        assert!(l.reads_attrs(4242));
        assert!(!l.reads_attrs(4243));
        // Another thread in the same slot takes it over.
        l.looked_up_file(4242 + SLOTS as u32);
        assert!(!l.reads_attrs(4242));
        assert!(!l.reads_attrs(0));
    }
}
