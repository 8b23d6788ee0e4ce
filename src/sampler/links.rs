//! The names of files with more than one link (hard links), by inode: a
//! change seen under one name is a change of every name of that inode, so
//! the sampler reads them all in the same sample.
//!
//! Only files seen with a link count above one are kept, so the map stays
//! as small as the set of linked files. It learns from every read: the
//! baseline's walk, and each observation of a sample (a new link is a new
//! name, which raises its own event). A file whose link count exceeds the
//! names known for it has names the sampler has not seen: the sampler
//! looks for them once in its index, and those it still cannot find lie
//! outside the tree ([`Links::outside`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::event::Linked;
use crate::tree::Inode;

/// (device, inode).
pub(super) type Id = (u64, u64);

/// Linked files: inode → names, and name → inode.
#[derive(Debug, Default)]
pub(super) struct Links {
    by_inode: HashMap<Id, Names>,
    by_path: BTreeMap<Vec<u8>, Id>,
}

#[derive(Debug, Default)]
struct Names {
    names: BTreeSet<Vec<u8>>,
    /// The link count last seen.
    nlink: u64,
    /// The link count when the index was last searched for more names
    /// (or the baseline saw them all).
    searched: u64,
}

impl Links {
    /// Forget everything (a new tree).
    pub fn clear(&mut self) {
        self.by_inode.clear();
        self.by_path.clear();
    }

    /// What `path` is now: `inode`, or (`None`) nothing linked.
    pub fn set(&mut self, path: &[u8], inode: Option<Inode>) {
        let new = inode.filter(|i| i.nlink > 1);
        let old = self.by_path.get(path).copied();
        if let Some(old) = old
            && new.is_none_or(|n| n.id() != old)
        {
            self.by_path.remove(path);
            if let Some(names) = self.by_inode.get_mut(&old) {
                names.names.remove(path);
                if names.names.is_empty() {
                    self.by_inode.remove(&old);
                }
            }
        }
        if let Some(new) = new {
            let names = self.by_inode.entry(new.id()).or_default();
            names.names.insert(path.to_vec());
            names.nlink = new.nlink;
            self.by_path.insert(path.to_vec(), new.id());
        }
    }

    /// The inode `path` had when last seen, if it was linked.
    pub fn of_path(&self, path: &[u8]) -> Option<Id> {
        self.by_path.get(path).copied()
    }

    /// The known names of `id`.
    pub fn names(&self, id: Id) -> impl Iterator<Item = &Vec<u8>> {
        self.by_inode.get(&id).into_iter().flat_map(|n| n.names.iter())
    }

    /// Whether a file of `nlink` links, `known` of whose names are known,
    /// may have names in the index that were never seen as linked (a
    /// link made to a file that had one name): not when the index was
    /// searched at that link count already.
    pub fn worth_searching(&self, id: Id, nlink: u64, known: usize) -> bool {
        nlink > known as u64 && self.by_inode.get(&id).is_none_or(|n| nlink > n.searched)
    }

    /// The index was searched for the names of `id` at `nlink` links.
    pub fn searched(&mut self, id: Id, nlink: u64) {
        if let Some(names) = self.by_inode.get_mut(&id) {
            names.searched = nlink;
        }
    }

    /// Every name has been seen (a baseline).
    pub fn all_searched(&mut self) {
        for names in self.by_inode.values_mut() {
            names.searched = names.nlink;
        }
    }

    /// The files with names outside what is tracked, by one of their
    /// names, in a stable order.
    pub fn outside(&self) -> Vec<Linked> {
        let mut out: Vec<Linked> = self
            .by_inode
            .iter()
            .filter(|(_, n)| n.nlink > n.names.len() as u64)
            .filter_map(|(id, n)| n.names.first().map(|p| Linked { path: p.clone(), dev: id.0, ino: id.1 }))
            .collect();
        out.sort_by(|a, b| a.path.cmp(&b.path));
        out
    }

    /// Paths kept.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.by_path.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(links: &Links, ino: u64) -> Vec<&[u8]> {
        links.names((1, ino)).map(|n| n.as_slice()).collect()
    }

    fn inode(ino: u64, nlink: u64) -> Option<Inode> {
        Some(Inode { dev: 1, ino, nlink, mode: 0o644 })
    }

    #[test]
    fn names_follow_links_renames_and_deletions() {
        let mut links = Links::default();
        links.set(b"a", inode(7, 1));
        assert_eq!(links.len(), 0, "one link: not kept");
        links.set(b"a", inode(7, 2));
        links.set(b"d/b", inode(7, 2));
        assert_eq!(names(&links, 7), [&b"a"[..], b"d/b"]);
        assert!(links.outside().is_empty());
        // Renamed: the old name goes, the new one comes.
        links.set(b"d/b", None);
        links.set(b"c", inode(7, 2));
        assert_eq!(names(&links, 7), [&b"a"[..], b"c"]);
        // Replaced by another file with one link.
        links.set(b"c", inode(9, 1));
        assert_eq!(links.of_path(b"c"), None);
        assert_eq!(links.outside(), [Linked { path: b"a".to_vec(), dev: 1, ino: 7 }], "a's count is stale");
        links.set(b"a", inode(7, 1));
        assert_eq!(links.len(), 0);
        assert!(links.outside().is_empty());
    }

    #[test]
    fn the_index_is_searched_once_per_link_count() {
        let mut links = Links::default();
        links.set(b"x", inode(3, 2));
        assert!(links.worth_searching((1, 3), 2, 1));
        links.searched((1, 3), 2);
        assert!(!links.worth_searching((1, 3), 2, 1), "a name outside the tree is not searched again");
        assert!(links.worth_searching((1, 3), 3, 1), "a new link is");
        assert!(!links.worth_searching((1, 3), 3, 3), "not when every name is known");
        assert_eq!(links.outside(), [Linked { path: b"x".to_vec(), dev: 1, ino: 3 }]);
    }
}
