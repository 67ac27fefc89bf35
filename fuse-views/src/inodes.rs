//! The inode table: one inode per path (parent inode + name), created by lookups and removed
//! when the kernel forgets it. Inode numbers are never reused while mounted.

use std::{
    collections::HashMap,
    ffi::{OsStr, OsString},
    sync::Arc,
};

use crate::view::Entry;

pub const ROOT: u64 = 1;

/// What an inode stands for.
#[derive(Debug, Clone)]
pub enum Inode {
    /// The mount root: lists the views (and, later, pinned roots).
    Root,
    /// `R/store/{view}`: CIDs are looked up here.
    ViewDir(usize),
    /// `R/store/name`: names are looked up here.
    NameDir,
    /// An entry below `R/store/name`.
    Name(crate::fs::names::NameNode),
    /// An entry of a view.
    Node { view: usize, entry: Arc<Entry> },
    /// A directory entry whose own block could not be read when it was listed (missing or
    /// corrupt): shown by name, resolved again when it is used.
    Pending {
        view: usize,
        dir: Arc<Entry>,
        name: String,
        cid: cairn_store::Cid,
    },
}

struct Slot {
    inode: Inode,
    parent: u64,
    name: OsString,
    /// Kernel references (lookups not yet forgotten). Root and view dirs are permanent.
    lookups: u64,
}

pub struct Inodes {
    slots: HashMap<u64, Slot>,
    /// Children by name, per parent: a lookup borrows the name, allocating nothing.
    by_name: HashMap<u64, HashMap<OsString, u64>>,
    next: u64,
}

impl Inodes {
    /// A table with the root (inode 1), one directory per view (inodes 2..) and the names'
    /// directory after them.
    pub fn new(views: usize) -> Inodes {
        let mut t = Inodes {
            slots: HashMap::new(),
            by_name: HashMap::new(),
            next: ROOT + 1,
        };
        t.slots.insert(
            ROOT,
            Slot {
                inode: Inode::Root,
                parent: ROOT,
                name: OsString::new(),
                lookups: u64::MAX / 2,
            },
        );
        for inode in (0..views).map(Inode::ViewDir).chain([Inode::NameDir]) {
            let ino = t.next;
            t.next += 1;
            t.slots.insert(
                ino,
                Slot {
                    inode,
                    parent: ROOT,
                    name: OsString::new(),
                    lookups: u64::MAX / 2,
                },
            );
        }
        t
    }

    /// The inode of `R/store/name`, in a table of `views` views.
    pub fn name_dir(views: usize) -> u64 {
        ROOT + 1 + views as u64
    }

    #[allow(dead_code)]
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The inode of view `v`'s directory.
    pub fn view_dir(v: usize) -> u64 {
        ROOT + 1 + v as u64
    }

    pub fn get(&self, ino: u64) -> Option<&Inode> {
        self.slots.get(&ino).map(|s| &s.inode)
    }

    pub fn parent(&self, ino: u64) -> u64 {
        self.slots.get(&ino).map_or(ROOT, |s| s.parent)
    }

    /// The inode already known for `name` in `parent` (not counted).
    pub fn find(&self, parent: u64, name: &OsStr) -> Option<(u64, Inode)> {
        let ino = *self.by_name.get(&parent)?.get(name)?;
        Some((ino, self.slots.get(&ino)?.inode.clone()))
    }

    /// Counts one more kernel reference to `ino`.
    pub fn count(&mut self, ino: u64) {
        if let Some(slot) = self.slots.get_mut(&ino) {
            slot.lookups += 1;
        }
    }

    /// Replaces what `ino` stands for (a pending entry that could now be resolved).
    pub fn replace(&mut self, ino: u64, inode: Inode) {
        if let Some(slot) = self.slots.get_mut(&ino) {
            slot.inode = inode;
        }
    }

    /// Records `inode` as `name` in `parent` (or finds the one already there), counting one
    /// kernel reference. Returns its number. A name's entry whose meaning changed (a name
    /// now pointing elsewhere) gets a new number; the old one lives on until forgotten.
    pub fn insert(&mut self, parent: u64, name: &OsStr, inode: Inode) -> u64 {
        if let Some(&ino) = self.by_name.get(&parent).and_then(|c| c.get(name)) {
            if let Some(slot) = self.slots.get_mut(&ino) {
                let changed = match (&slot.inode, &inode) {
                    (Inode::Name(old), Inode::Name(new)) => old != new,
                    _ => false,
                };
                if !changed {
                    slot.lookups += 1;
                    return ino;
                }
            }
        }
        let ino = self.next;
        self.next += 1;
        self.slots.insert(
            ino,
            Slot {
                inode,
                parent,
                name: name.to_owned(),
                lookups: 1,
            },
        );
        self.by_name
            .entry(parent)
            .or_default()
            .insert(name.to_owned(), ino);
        ino
    }

    /// The kernel dropped `n` references to `ino`.
    pub fn forget(&mut self, ino: u64, n: u64) {
        let Some(slot) = self.slots.get_mut(&ino) else {
            return;
        };
        slot.lookups = slot.lookups.saturating_sub(n);
        if slot.lookups == 0 {
            let slot = self.slots.remove(&ino).expect("present");
            if let Some(children) = self.by_name.get_mut(&slot.parent) {
                // Unless the name was given to a newer inode meanwhile.
                if children.get(&slot.name) == Some(&ino) {
                    children.remove(&slot.name);
                }
                if children.is_empty() {
                    self.by_name.remove(&slot.parent);
                }
            }
        }
    }

    /// Inodes currently known (for tests and statistics).
    pub fn len(&self) -> usize {
        self.slots.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forget_removes_and_numbers_are_not_reused() {
        let mut t = Inodes::new(2);
        assert_eq!(t.len(), 4);
        let a = t.insert(ROOT, OsStr::new("a"), Inode::Root);
        assert_eq!(t.insert(ROOT, OsStr::new("a"), Inode::Root), a);
        t.forget(a, 1);
        assert!(t.get(a).is_some());
        t.forget(a, 1);
        assert!(t.get(a).is_none());
        let b = t.insert(ROOT, OsStr::new("a"), Inode::Root);
        assert_ne!(a, b);
        assert_eq!(t.find(ROOT, OsStr::new("a")).map(|f| f.0), Some(b));
        t.forget(b, 1);
        assert!(
            t.by_name.is_empty(),
            "a forgotten name leaves nothing behind"
        );
        t.forget(ROOT, 1000);
        assert!(t.get(ROOT).is_some());
    }

    #[test]
    fn a_name_that_changed_meaning_gets_a_new_inode() {
        use crate::fs::names::NameNode;
        let mut t = Inodes::new(1);
        let dir = Inodes::name_dir(1);
        assert!(matches!(t.get(dir), Some(Inode::NameDir)));
        let link = |s: &str| Inode::Name(NameNode::Link(s.into()));
        let a = t.insert(dir, OsStr::new("n"), link("../a"));
        assert_eq!(t.insert(dir, OsStr::new("n"), link("../a")), a);
        let b = t.insert(dir, OsStr::new("n"), link("../b"));
        assert_ne!(a, b);
        assert_eq!(t.find(dir, OsStr::new("n")).map(|f| f.0), Some(b));
        // Forgetting the old inode leaves the name with the new one.
        t.forget(a, 2);
        assert!(t.get(a).is_none());
        assert_eq!(t.find(dir, OsStr::new("n")).map(|f| f.0), Some(b));
    }
}
