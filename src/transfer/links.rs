//! Hard links (`-H`): a file the listing gives a link group that an entry
//! listed before it already had is another name of that entry's file (its
//! *leader*). Such a follower is not compared or sent: once every file is
//! in place under its final name (the run's files are all done), the
//! destination is asked to make it a hard link of the leader there, which
//! it does only if it is not that already. A follower whose leader failed
//! or vanished is left alone.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use crate::codec::{Action, Entry, Kind, RelPath};

/// The link groups of a run's listing.
#[derive(Debug, Default)]
pub(super) struct Links {
    /// `-H` was asked for (else the groups a source lists are ignored).
    enabled: bool,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// The first listed name of each group.
    leaders: HashMap<u64, RelPath>,
    /// Each later name, with its group's leader, in listing order.
    followers: Vec<(RelPath, RelPath)>,
    /// Leaders that could not be synced.
    failed: HashSet<RelPath>,
}

impl Links {
    pub(super) fn new(enabled: bool) -> Links {
        Links { enabled, ..Links::default() }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes the followers out of a batch of the listing, in order: what
    /// is left is synced as usual. Returns how many were taken.
    pub(super) fn take_followers(&self, entries: &mut Vec<Entry>) -> usize {
        if !self.enabled || entries.iter().all(|e| e.link.is_none()) {
            return 0;
        }
        let mut state = self.lock();
        let before = entries.len();
        entries.retain(|entry| {
            let Some(group) = entry.link.filter(|_| entry.stat.kind == Kind::File) else { return true };
            match state.leaders.get(&group) {
                Some(leader) => {
                    let follower = (entry.path.clone(), leader.clone());
                    state.followers.push(follower);
                    false
                }
                None => {
                    state.leaders.insert(group, entry.path.clone());
                    true
                }
            }
        });
        before - entries.len()
    }

    /// Notes that the file at `path` could not be synced.
    pub(super) fn failed(&self, path: &RelPath) {
        if self.enabled {
            self.lock().failed.insert(path.clone());
        }
    }

    /// The links to make now that every file is done: one per follower
    /// whose leader is in place. Followers of a failed leader are named.
    pub(super) fn actions(&self) -> Vec<Action> {
        let mut state = self.lock();
        let followers = std::mem::take(&mut state.followers);
        followers
            .into_iter()
            .filter(|(path, leader)| {
                let failed = state.failed.contains(leader);
                if failed {
                    tracing::warn!("{path}: not linked: {leader}, its other name, could not be synced");
                }
                !failed
            })
            .map(|(path, target)| {
                tracing::debug!("{path}: another name of {target}");
                Action::Link { path, target }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{Meta, Mtime, Stat};

    fn entry(path: &str, kind: Kind, link: Option<u64>) -> Entry {
        let meta = Meta { mode: 0o644, mtime: Mtime { secs: 0, nanos: 0 } };
        Entry { path: RelPath::new(path).unwrap(), stat: Stat { kind, size: 1, meta, target: None }, link }
    }

    #[test]
    fn later_names_of_a_group_follow_its_first_across_batches() {
        let links = Links::new(true);
        let mut first = vec![entry("a", Kind::File, Some(0)), entry("d", Kind::Dir, None)];
        let mut second = vec![entry("d/b", Kind::File, Some(0)), entry("d/c", Kind::File, Some(1))];
        let mut third = vec![entry("e", Kind::File, Some(1)), entry("f", Kind::File, Some(0))];
        assert_eq!(links.take_followers(&mut first), 0);
        assert_eq!(links.take_followers(&mut second), 1);
        assert_eq!(links.take_followers(&mut third), 2);
        assert_eq!(second.len(), 1);
        assert!(third.is_empty());
        links.failed(&RelPath::new("d/c").unwrap());
        let rel = |p: &str| RelPath::new(p).unwrap();
        assert_eq!(
            links.actions(),
            vec![
                Action::Link { path: rel("d/b"), target: rel("a") },
                Action::Link { path: rel("f"), target: rel("a") },
            ]
        );
    }

    #[test]
    fn groups_are_ignored_without_hard_links() {
        let links = Links::new(false);
        let mut batch = vec![entry("a", Kind::File, Some(0)), entry("b", Kind::File, Some(0))];
        assert_eq!(links.take_followers(&mut batch), 0);
        assert_eq!(batch.len(), 2);
        assert!(links.actions().is_empty());
    }
}
