//! `--delete`: removing what the destination has and the source does not,
//! once everything else is done and only when the run met no problem, and
//! not at all when more would go than `--max-delete` allows.

use std::collections::HashSet;
use std::sync::Arc;

use crate::codec::{Action, Entry, ErrorKind, Kind, RelPath};
use crate::peer::{self, Destination, Source};

use tokio::sync::Semaphore;

use super::observe::{Changed, EntryEvent, Outcome};
use super::stats::Counters;
use super::{batch, Ctx, ACTIONS_PER_REQUEST};
use crate::peer::walk::BATCH_ENTRIES;

/// Removes what the destination has and the source does not, children
/// before their parents. Directories holding excluded entries stay. False
/// when nothing was deleted for more than `--max-delete`.
pub(super) async fn delete_extraneous<S, D>(
    ctx: &Arc<Ctx<S, D>>,
    seen: &HashSet<RelPath>,
) -> Result<bool, peer::Error>
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
        return Ok(false);
    }
    // Temporary files are never listed: those that interrupted runs left in
    // a directory to delete would keep it there, run after run.
    let temps: Vec<Action> = doomed
        .iter()
        .filter(|e| e.stat.kind == Kind::Dir)
        .map(|e| Action::RemoveTemps { path: e.path.clone() })
        .collect();
    for chunk in temps.chunks(ACTIONS_PER_REQUEST) {
        ctx.apply(chunk.to_vec()).await;
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
    Ok(true)
}

/// The files and symlinks held back because a directory is at their path
/// ([`Ctx::held`]): the deletions emptied it of what the source does not
/// have, so it makes way (with the temporary files in it), and they are
/// synced as any other. A directory that still holds entries (excluded
/// ones) stays, and its entry fails.
pub(super) async fn replace_held<S, D>(ctx: &Arc<Ctx<S, D>>, files: &Arc<Semaphore>)
where
    S: Source + Clone,
    D: Destination + Clone,
{
    let held = std::mem::take(&mut *ctx.held.lock().unwrap_or_else(|p| p.into_inner()));
    // In pieces the size of a listing batch: each is probed and sent as one.
    for part in held.chunks(BATCH_ENTRIES) {
        let made = match make_way(ctx, part.iter().map(|e| e.path.clone()).collect()).await {
            Ok(made) => made,
            Err(e) => return ctx.fail("", e),
        };
        let mut ready = Vec::new();
        for (entry, made) in part.iter().zip(made) {
            if !made {
                refuse(
                    ctx,
                    entry,
                    "the directory there holds entries this run does not delete (excluded ones)",
                );
            } else {
                ready.push(entry.clone());
            }
        }
        batch::sync_batch(ctx, ready, files).await;
    }
    ctx.tasks.wait().await;
    // One that found a directory again (something made it meanwhile) was
    // held once more: it fails rather than being left out unsaid.
    let again = std::mem::take(&mut *ctx.held.lock().unwrap_or_else(|p| p.into_inner()));
    for entry in again {
        refuse(ctx, &entry, "a directory was made there again during the run");
    }
    ctx.make_held_links().await;
}

/// Removes the directories at `dirs`, with the temporary files in them
/// (the deletions emptied them of the rest); says of each whether it is
/// gone (one holding excluded entries stays).
pub(super) async fn make_way<S, D>(ctx: &Arc<Ctx<S, D>>, dirs: Vec<RelPath>) -> Result<Vec<bool>, peer::Error>
where
    S: Source + Clone,
    D: Destination + Clone,
{
    if dirs.is_empty() {
        return Ok(Vec::new());
    }
    let actions = dirs.iter().flat_map(|path| {
        [Action::RemoveTemps { path: path.clone() }, Action::Remove { path: path.clone(), kind: Kind::Dir }]
    });
    ctx.apply(actions.collect()).await;
    let found = ctx.probe(dirs).await?;
    Ok(found.iter().map(|f| !f.as_ref().is_some_and(|f| f.kind == Kind::Dir)).collect())
}

/// Fails the held entries ([`Ctx::held`]): `--delete` did not run, so the
/// directories at their paths stay.
pub(super) fn refuse_held<S: Source + Clone, D: Destination + Clone>(ctx: &Arc<Ctx<S, D>>) {
    let held = std::mem::take(&mut *ctx.held.lock().unwrap_or_else(|p| p.into_inner()));
    for entry in held {
        refuse(ctx, &entry, "a directory is there, and nothing is deleted (--delete did not run)");
    }
    ctx.refuse_held_links();
}

fn refuse<S: Source + Clone, D: Destination + Clone>(ctx: &Arc<Ctx<S, D>>, entry: &Entry, why: &str) {
    ctx.links.failed(&entry.path);
    if entry.stat.kind == Kind::File {
        Counters::add(&ctx.counters.files_total, 1);
        Counters::add(&ctx.counters.files_failed, 1);
    }
    ctx.fail(&entry.path.to_string(), peer::Error::denied(format!("not replaced: {why}")));
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
