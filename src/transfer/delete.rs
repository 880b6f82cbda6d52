//! `--delete`: removing what the destination has and the source does not,
//! once everything else is done and only when the run met no problem.

use std::collections::HashSet;
use std::sync::Arc;

use crate::codec::{Action, Kind, RelPath};
use crate::peer::{self, Destination, Source};

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
    for chunk in doomed.chunks(ACTIONS_PER_REQUEST) {
        let actions: Vec<Action> = chunk
            .iter()
            .map(|e| {
                tracing::info!("deleting {}", e.path);
                Action::Remove { path: e.path.clone(), kind: e.stat.kind }
            })
            .collect();
        let files = chunk.iter().filter(|e| e.stat.kind != Kind::Dir).count();
        let done = ctx.apply(actions).await;
        Counters::add(&ctx.counters.files_deleted, files.min(done) as u64);
    }
    Ok(())
}
