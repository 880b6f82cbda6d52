//! Directory-level actions on the destination (make a directory or
//! symlink, remove, set metadata, clear temporaries), many per request, in
//! requests of bounded size; in a dry run, none. Each failure is one error
//! line, and the watcher hears what became of each entry.

use crate::codec::{Action, Entry, Kind, Stat};
use crate::peer::{self, Destination, Source};

use super::observe::{Changed, EntryEvent, Outcome};
use super::{Ctx, ACTIONS_PER_REQUEST, REQUEST_BYTES};

impl<S: Source + Clone, D: Destination + Clone> Ctx<S, D> {
    /// Runs `actions` on the destination, in order, in requests of at most
    /// [`ACTIONS_PER_REQUEST`] actions and about [`REQUEST_BYTES`] bytes;
    /// reports each that failed and returns how many succeeded. In a dry
    /// run, runs none and returns all.
    pub(super) async fn apply(&self, actions: Vec<Action>) -> usize {
        self.apply_told(actions, Vec::new()).await
    }

    /// [`apply`](Self::apply), then tells the watcher of `events`, one per
    /// action (none when nobody watches): as they are, or `Failed` for an
    /// action that failed.
    pub(super) async fn apply_told(&self, mut actions: Vec<Action>, mut events: Vec<EntryEvent>) -> usize {
        let mut done = 0;
        while !actions.is_empty() {
            let rest = actions.split_off(request_len(&actions, ACTIONS_PER_REQUEST, action_bytes));
            let total = actions.len();
            let later = events.split_off(total.min(events.len()));
            let told = std::mem::replace(&mut events, later);
            let request = std::mem::replace(&mut actions, rest);
            let answer = if self.opts.dry_run { Ok(Vec::new()) } else { self.dest.apply(request).await };
            let failures = match answer {
                Ok(failures) => {
                    for (path, why) in &failures {
                        self.fail("", peer::Error::io(format!("{path}: {why}")));
                    }
                    done += total.saturating_sub(failures.len());
                    failures
                }
                Err(e) => {
                    let all = told.iter().map(|t| (t.path.clone(), e.to_string())).collect();
                    self.fail("", e);
                    all
                }
            };
            for mut event in told {
                if let Some((_, why)) = failures.iter().find(|(path, _)| *path == event.path) {
                    event.outcome = Outcome::Failed { why: why.clone() };
                }
                self.counters.live.tell(|| event);
            }
        }
        done
    }
}

/// How many of `items` (at most `max`) make a request of about
/// [`REQUEST_BYTES`] bytes, at least one.
fn request_len<T>(items: &[T], max: usize, bytes: fn(&T) -> usize) -> usize {
    let mut total = 0;
    let count = items
        .iter()
        .take(max)
        .take_while(|item| {
            total += bytes(item);
            total <= REQUEST_BYTES
        })
        .count();
    count.max(1).min(items.len())
}

/// Roughly the bytes of an action in a request (and of its failure, if it
/// fails, in the answer).
fn action_bytes(action: &Action) -> usize {
    let target = match action {
        Action::Symlink { target, .. } => target.len(),
        _ => 0,
    };
    action.path().as_bytes().len() + target + 64
}

/// The event of `entry`, which the destination had as `found`.
pub(super) fn told(entry: &Entry, found: Option<&Stat>, outcome: Outcome) -> EntryEvent {
    let size = if entry.stat.kind == Kind::File { entry.stat.size } else { 0 };
    EntryEvent {
        path: entry.path.clone(),
        kind: entry.stat.kind,
        outcome,
        size,
        changed: Changed::between(&entry.stat, found),
    }
}
