//! `--delete`: removing what the destination has and the source does not,
//! once everything else is done and only when the run met no problem, and
//! not at all when more would go than `--max-delete` allows.

use std::collections::HashSet;
use std::sync::Arc;

use crate::codec::{Action, Entry, ErrorKind, Kind, RelPath};
use crate::peer::{self, Destination, Source};

use super::observe::{Changed, EntryEvent, Outcome};
use super::stats::Counters;
use super::{Ctx, ACTIONS_PER_REQUEST};

/// Removes what the destination has and the source does not, children
/// before their parents. Directories holding excluded entries stay.
pub(super) async fn delete_extraneous<S, D>(
    ctx: &Arc<Ctx<S, D>>,
    seen: &HashSet<RelPath>,
) -> Result<(), peer::Error>
where
    S: Source + Clone,
    D: Destination + Clone,
{
    let mut listing = ctx.dest.walk().await?;
    let mut doomed = Vec::new();
    while let Some(batch) = listing.recv().await {
        for problem in batch.problems {
            ctx.fail("", peer::Error::io(problem));
        }
        doomed.extend(batch.entries.into_iter().filter(|e| !e.path.is_root() && !seen.contains(&e.path)));
    }
    doomed.reverse();
    let most = ctx.opts.max_delete.unwrap_or(u64::MAX);
    if doomed.len() as u64 > most {
        let why = format!("--max-delete {most}: {} entries would be deleted; none was", doomed.len());
        ctx.fail("", peer::Error::new(ErrorKind::Limit, why));
        return Ok(());
    }
    for chunk in doomed.chunks(ACTIONS_PER_REQUEST) {
        let actions: Vec<Action> = chunk
            .iter()
            .map(|e| {
                tracing::info!("deleting {}", e.path);
                Action::Remove { path: e.path.clone(), kind: e.stat.kind }
            })
            .collect();
        let events =
            if ctx.counters.live.watching() { chunk.iter().map(deleted).collect() } else { Vec::new() };
        let files = chunk.iter().filter(|e| e.stat.kind != Kind::Dir).count();
        let done = ctx.apply_told(actions, events).await;
        Counters::add(&ctx.counters.files_deleted, files.min(done) as u64);
    }
    Ok(())
}

/// The event of deleting `entry`.
fn deleted(entry: &Entry) -> EntryEvent {
    let size = if entry.stat.kind == Kind::File { entry.stat.size } else { 0 };
    EntryEvent {
        path: entry.path.clone(),
        kind: entry.stat.kind,
        outcome: Outcome::Deleted,
        size,
        changed: Changed::default(),
    }
}
