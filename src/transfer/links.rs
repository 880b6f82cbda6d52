//! Hard links (`-H`): a file the listing gives a link group that an entry
//! listed before it already had is another name of that entry's file (its
//! *leader*). Such a follower is not compared or sent: once every file is
//! in place under its final name (the run's files are all done), the
//! destination is asked to make it a hard link of the leader there, which
//! it does only if it is not that already. A follower whose leader failed
//! or vanished is left alone, and fails the run. The watcher hears of each follower once its
//! link is made (or, in a dry run, would be).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use crate::codec::{Action, Entry, Kind, RelPath};
use crate::peer::{self, Destination, Source};

use super::actions::told;
use super::observe::{Live, Outcome};
use super::stats::Counters;
use super::{delete, Ctx};

/// Followers probed at once, for the watcher.
const PROBE_PATHS: usize = 512;
const _: () = assert!(PROBE_PATHS <= crate::codec::MAX_LIST);

/// A follower whose leader failed or vanished, and that leader.
type Orphan = (Entry, RelPath);

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
    followers: Vec<(Entry, RelPath)>,
    /// Leaders that could not be synced.
    failed: HashSet<RelPath>,
    /// Links made after the deletions ([`Ctx::make_held_links`]).
    held: Vec<(Entry, Action)>,
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
                    let follower = (entry.clone(), leader.clone());
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

    /// The links held for after the deletions, taken.
    pub(super) fn take_held(&self) -> Vec<(Entry, Action)> {
        std::mem::take(&mut self.lock().held)
    }

    /// The links to make now that every file is done: one per follower
    /// whose leader is in place, with the follower's entry. Followers of a
    /// failed leader are returned apart, with their leader.
    fn links(&self) -> (Vec<(Entry, Action)>, Vec<Orphan>) {
        let mut state = self.lock();
        let followers = std::mem::take(&mut state.followers);
        let (mut links, mut orphans) = (Vec::new(), Vec::new());
        for (entry, leader) in followers {
            if state.failed.contains(&leader) {
                orphans.push((entry, leader));
                continue;
            }
            tracing::debug!("{}: another name of {leader}", entry.path);
            let action = Action::Link { path: entry.path.clone(), target: leader };
            links.push((entry, action));
        }
        (links, orphans)
    }
}

impl<S: Source + Clone, D: Destination + Clone> Ctx<S, D> {
    /// Makes the links of every follower whose leader is in place (through
    /// [`Ctx::apply_told`]: in a dry run, none), and counts them. A
    /// watcher hears of each follower: `Unchanged` when the destination
    /// already had it as the source's file (same size and metadata, as
    /// an up-to-date name of the leader is), `Created` or `Updated`
    /// otherwise; `Failed` when its leader could not be synced.
    ///
    /// With `--delete`, a link whose name is a directory at the destination,
    /// or whose first name waits for the deletions to take a directory's
    /// place ([`Ctx::held`]), is made after them ([`Ctx::make_held_links`]).
    pub(super) async fn make_links(self: &Arc<Self>) {
        let (links, orphans) = self.links.links();
        let live = &self.counters.live;
        Live::add(&live.files_done, (links.len() + orphans.len()) as u64);
        let holding = self.opts.delete && !self.opts.dry_run;
        // A follower left without its link is not at the destination as
        // the source has it: a failed file, whether its leader failed or
        // vanished (which alone counts no error).
        for (entry, leader) in &orphans {
            self.refuse_link(entry, &format!("not linked: {leader}, its other name, could not be synced"));
        }
        let held: HashSet<RelPath> = if holding {
            self.held.lock().unwrap_or_else(|p| p.into_inner()).iter().map(|e| e.path.clone()).collect()
        } else {
            HashSet::new()
        };
        let (mut actions, mut events) = (Vec::new(), Vec::new());
        for part in links.chunks(PROBE_PATHS) {
            let found = if live.watching() || holding {
                let paths = part.iter().map(|(entry, _)| entry.path.clone()).collect();
                self.probe(paths).await.unwrap_or_else(|_| vec![None; part.len()])
            } else {
                vec![None; part.len()]
            };
            for ((entry, action), found) in part.iter().zip(found) {
                let waits = matches!(action, Action::Link { target, .. } if held.contains(target));
                if holding && (waits || found.as_ref().is_some_and(|f| f.kind == Kind::Dir)) {
                    self.links.lock().held.push((entry.clone(), action.clone()));
                    continue;
                }
                if live.watching() {
                    events.push(told(
                        entry,
                        found.as_ref(),
                        link_outcome(entry, found.as_ref(), self.opts.chunk_size),
                    ));
                }
                actions.push(action.clone());
            }
        }
        let linked = self.apply_told(actions, events).await;
        Counters::add(&self.counters.files_linked, linked as u64);
    }

    /// The links held back by [`Ctx::make_links`], once the deletions are
    /// done and the held files are synced: a directory at a link's name
    /// makes way (it stays, and the link fails, if excluded entries are in
    /// it), and a link whose first name failed fails.
    pub(super) async fn make_held_links(self: &Arc<Self>) {
        let held = self.links.take_held();
        for part in held.chunks(PROBE_PATHS) {
            let mut ready = Vec::new();
            for (entry, action) in part {
                match action {
                    Action::Link { target, .. } if self.links.lock().failed.contains(target) => {
                        self.refuse_link(
                            entry,
                            &format!("not linked: {target}, its other name, could not be synced"),
                        );
                    }
                    _ => ready.push((entry, action)),
                }
            }
            let paths: Vec<RelPath> = ready.iter().map(|(e, _)| e.path.clone()).collect();
            let found = match self.probe(paths).await {
                Ok(found) => found,
                Err(e) => return self.fail("", e),
            };
            // A directory at a link's name makes way first.
            let (at_dirs, free): (Vec<_>, Vec<_>) = ready
                .into_iter()
                .zip(found)
                .partition(|(_, f)| f.as_ref().is_some_and(|f| f.kind == Kind::Dir));
            let made = match delete::make_way(
                self,
                at_dirs.iter().map(|((e, _), _)| e.path.clone()).collect(),
            )
            .await
            {
                Ok(made) => made,
                Err(e) => return self.fail("", e),
            };
            let mut actions: Vec<Action> = free.into_iter().map(|((_, action), _)| action.clone()).collect();
            for (((entry, action), _), made) in at_dirs.into_iter().zip(made) {
                if made {
                    actions.push(action.clone());
                } else {
                    let why = "not linked: the directory there holds entries this run does not delete (excluded ones)";
                    self.refuse_link(entry, why);
                }
            }
            let linked = self.apply(actions).await;
            Counters::add(&self.counters.files_linked, linked as u64);
        }
    }

    /// Fails the held links: `--delete` did not run.
    pub(super) fn refuse_held_links(self: &Arc<Self>) {
        for (entry, _) in self.links.take_held() {
            self.refuse_link(
                &entry,
                "not linked: a directory is there, and nothing is deleted (--delete did not run)",
            );
        }
    }

    fn refuse_link(&self, entry: &Entry, why: &str) {
        Counters::add(&self.counters.files_failed, 1);
        self.fail(&entry.path.to_string(), peer::Error::denied(why));
        self.counters.live.tell(|| told(entry, None, Outcome::Failed { why: why.to_owned() }));
    }
}

/// What linking `entry` does to what the destination had there, `found`.
fn link_outcome(entry: &Entry, found: Option<&crate::codec::Stat>, chunk_size: u32) -> Outcome {
    let chunks = entry.stat.size.div_ceil(u64::from(chunk_size));
    match found.filter(|f| f.kind == Kind::File) {
        None => Outcome::Created { chunks_sent: 0, chunks },
        Some(f) if f.size == entry.stat.size && f.meta == entry.stat.meta => Outcome::Unchanged,
        Some(_) => Outcome::Updated { chunks_sent: 0, chunks },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{Meta, Mtime, Stat};

    fn entry(path: &str, kind: Kind, link: Option<u64>) -> Entry {
        let meta = Meta { mode: 0o644, mtime: Mtime { secs: 0, nanos: 0 }, extra: None };
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
        let (made, orphans) = links.links();
        assert_eq!(
            made.into_iter().map(|(_, action)| action).collect::<Vec<_>>(),
            vec![
                Action::Link { path: rel("d/b"), target: rel("a") },
                Action::Link { path: rel("f"), target: rel("a") },
            ]
        );
        assert_eq!(orphans, vec![(entry("e", Kind::File, Some(1)), rel("d/c"))]);
    }

    #[test]
    fn groups_are_ignored_without_hard_links() {
        let links = Links::new(false);
        let mut batch = vec![entry("a", Kind::File, Some(0)), entry("b", Kind::File, Some(0))];
        assert_eq!(links.take_followers(&mut batch), 0);
        assert_eq!(batch.len(), 2);
        assert_eq!(links.links(), (Vec::new(), Vec::new()));
    }
}
