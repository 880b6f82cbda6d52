//! What a client checks in the listing of a source on the other side of
//! the wire (PROTOCOL §14.2), so that a lying server cannot make it act
//! where it should not: the session's own filters, and each entry's
//! directory listed before it.

use std::collections::HashSet;

use crate::codec::{Entry, Kind, RelPath};
use crate::peer::Filter;

/// The checks of one listing, batch after batch.
pub(super) struct ListingCheck {
    /// The session's `--include`/`--exclude`, which the source's walk
    /// applied.
    filter: Filter,
    /// The directories listed so far.
    dirs: HashSet<RelPath>,
}

impl ListingCheck {
    pub(super) fn new(filter: Filter) -> ListingCheck {
        ListingCheck { filter, dirs: HashSet::new() }
    }

    /// Drops from `entries` (one batch) what the source may not list;
    /// returns one line for each kind of entry dropped.
    pub(super) fn keep(&mut self, entries: &mut Vec<Entry>) -> Vec<String> {
        let mut dropped = Vec::new();
        let listed = entries.len();
        *entries = kept_to(&self.filter, std::mem::take(entries));
        if entries.len() < listed {
            dropped.push(format!(
                "the source listed {} entries that --include/--exclude leave out; they are ignored",
                listed - entries.len()
            ));
        }
        // Parents come first: an entry whose parent was not listed as a
        // directory would go wherever the destination's own entry there
        // leads (a symlink to a directory the run leaves alone).
        let listed = entries.len();
        entries.retain(|e| {
            let parent = e.path.split_last().map_or_else(RelPath::root, |(dir, _)| dir);
            let known = parent.is_root() || self.dirs.contains(&parent);
            if known && e.stat.kind == Kind::Dir {
                self.dirs.insert(e.path.clone());
            }
            known
        });
        if entries.len() < listed {
            dropped.push(format!(
                "the source listed {} entries before their directories; they are ignored",
                listed - entries.len()
            ));
        }
        dropped
    }
}

/// The entries of a listing batch that `filter` selects, and the
/// directories it does not select itself but that hold the next entry kept
/// (a walk lists those as parents of what it selects below them, in the
/// same batch); never an excluded one.
fn kept_to(filter: &Filter, entries: Vec<Entry>) -> Vec<Entry> {
    let mut keep = vec![false; entries.len()];
    for (i, e) in entries.iter().enumerate().rev() {
        let holds_next = entries
            .get(i + 1)
            .is_some_and(|next| keep[i + 1] && next.path.starts_with(&e.path) && next.path != e.path);
        keep[i] =
            filter.selects(&e.path) || (e.stat.kind == Kind::Dir && !filter.excludes(&e.path) && holds_next);
    }
    entries.into_iter().zip(keep).filter_map(|(e, keep)| keep.then_some(e)).collect()
}
