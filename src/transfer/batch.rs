//! One batch of the listing: probe the destination for its entries, make
//! its directories and symlinks, and start its files — new small files in
//! bundles, small files the destination has in batches compared by digest,
//! the rest one by one — within the run's bound on files in progress.

use std::sync::Arc;

use tokio::sync::Semaphore;

use crate::codec::{Action, Entry, Kind, Stat};
use crate::peer::{Destination, Source};

use super::actions::told;
use super::observe::Outcome;
use super::{bundle, compare, meta, Counters, Ctx, LARGE_FILE_WEIGHT, REQUEST_BYTES};

/// Probes one batch on the destination, makes its directories and symlinks,
/// and starts its files.
pub(super) async fn sync_batch<S, D>(ctx: &Arc<Ctx<S, D>>, entries: Vec<Entry>, files: &Arc<Semaphore>)
where
    S: Source + Clone,
    D: Destination + Clone,
{
    let paths = entries.iter().map(|e| e.path.clone()).collect();
    let found = match ctx.probe(paths).await {
        Ok(found) => found,
        Err(e) => {
            for entry in &entries {
                ctx.links.failed(&entry.path);
                let why = format!("probing the destination: {e}");
                ctx.counters.live.tell(|| told(entry, None, Outcome::Failed { why }));
            }
            return ctx.fail("probing the destination", e);
        }
    };
    let mut actions = Vec::new();
    // Files create missing parent directories themselves, so they need not
    // wait for this batch's directories, unless a directory replaces some
    // other kind of entry.
    let mut replacing = false;
    let mut pending_files = Vec::new();
    // What the directories and symlinks made become, for the watcher.
    let mut made = Vec::new();
    for (entry, found) in entries.into_iter().zip(found) {
        let replaces_dir =
            entry.stat.kind != Kind::Dir && found.as_ref().is_some_and(|f| f.kind == Kind::Dir);
        if replaces_dir && ctx.opts.delete && !ctx.opts.dry_run {
            // It replaces a directory, and all that is in it: with the
            // deletions (`Ctx::held`). (A dry run only tells.)
            ctx.held.lock().unwrap_or_else(|p| p.into_inner()).push(entry);
            continue;
        }
        match entry.stat.kind {
            Kind::Dir => {
                Counters::add(&ctx.counters.dirs_total, 1);
                if found.as_ref().is_none_or(|f| f.kind != Kind::Dir) {
                    replacing |= found.is_some();
                    tracing::info!("{}/", entry.path);
                    if ctx.counters.live.watching() {
                        made.push(told(
                            &entry,
                            found.as_ref(),
                            Outcome::Created { chunks_sent: 0, chunks: 0 },
                        ));
                    }
                    actions.push(Action::MakeDir { path: entry.path });
                } else {
                    if found.as_ref().is_some_and(|f| f.meta.mtime != entry.stat.meta.mtime) {
                        ctx.sweep.lock().unwrap_or_else(|p| p.into_inner()).push(entry.path.clone());
                    }
                    // Its metadata is set once the run is done with its entries.
                    let same = found.as_ref().is_some_and(|f| f.meta == entry.stat.meta);
                    let outcome = if same { Outcome::Unchanged } else { Outcome::Metadata };
                    ctx.counters.live.tell(|| told(&entry, found.as_ref(), outcome));
                }
            }
            Kind::Symlink => {
                Counters::add(&ctx.counters.symlinks_total, 1);
                let same_extra = meta::same_extra(
                    found.as_ref().and_then(|f| f.meta.extra.as_deref()),
                    entry.stat.meta.extra.as_deref(),
                );
                if same_symlink(&entry.stat, found.as_ref()) {
                    if same_extra {
                        ctx.counters.live.tell(|| told(&entry, found.as_ref(), Outcome::Unchanged));
                    } else if ctx.counters.live.watching() {
                        // Told once its metadata is set (below).
                        made.push(told(&entry, found.as_ref(), Outcome::Metadata));
                    }
                } else {
                    if ctx.counters.live.watching() {
                        let outcome = if found.as_ref().is_some_and(|f| f.kind == Kind::Symlink) {
                            Outcome::Updated { chunks_sent: 0, chunks: 0 }
                        } else {
                            Outcome::Created { chunks_sent: 0, chunks: 0 }
                        };
                        made.push(told(&entry, found.as_ref(), outcome));
                    }
                    let target = entry.stat.target.as_deref().map(|t| &t[..]).unwrap_or_default();
                    tracing::info!("{} -> {}", entry.path, String::from_utf8_lossy(target));
                    actions.push(Action::Symlink {
                        path: entry.path.clone(),
                        target: entry.stat.target.clone().unwrap_or_default(),
                        mtime: entry.stat.meta.mtime,
                    });
                }
                // Owner, group and attributes of the link itself, once it is there.
                if entry.stat.meta.extra.is_some()
                    && !(same_extra && same_symlink(&entry.stat, found.as_ref()))
                {
                    actions.push(Action::SetMeta {
                        path: entry.path,
                        kind: Kind::Symlink,
                        meta: entry.stat.meta,
                    });
                }
            }
            Kind::File => pending_files.push((entry, found)),
        }
    }
    if replacing {
        ctx.apply_told(actions, made).await;
    } else if !actions.is_empty() {
        let ctx2 = ctx.clone();
        ctx.tasks.spawn(async move { ctx2.apply_told(actions, made).await });
    }
    let chunk = ctx.opts.chunk_size as u64;
    let mut bundle = Group::new(bundle::BUNDLE_FILES, bundle::bundle_bytes(ctx.opts.chunk_size));
    let mut compared = Group::new(compare::COMPARE_FILES, compare::COMPARE_BYTES);
    for (entry, found) in pending_files {
        let small = if compare::compares(&entry, found.as_ref(), &ctx.opts) {
            Some((Small::Compare, &mut compared))
        } else if bundle::bundles(&entry, found.as_ref(), ctx.opts.chunk_size) {
            Some((Small::Bundle, &mut bundle))
        } else {
            None
        };
        if let Some((small, group)) = small {
            if let Some(full) = group.add((entry, found)) {
                if !start_small(ctx, small, full, files).await {
                    return;
                }
            }
            continue;
        }
        let weight = if entry.stat.size > chunk { LARGE_FILE_WEIGHT } else { 1 };
        let Some(permit) = files_permit(ctx, files, weight).await else { return };
        Counters::add(&ctx.counters.files_total, 1);
        Counters::add(&ctx.counters.bytes_total, entry.stat.size);
        let ctx2 = ctx.clone();
        ctx.tasks.spawn(async move {
            Ctx::sync(&ctx2, entry, found).await;
            drop(permit);
        });
    }
    if start_small(ctx, Small::Bundle, bundle.files, files).await {
        start_small(ctx, Small::Compare, compared.files, files).await;
    }
}

/// Small files gathered for one request: at most so many, of so many
/// bytes of data, and of [`REQUEST_BYTES`] of names.
struct Group {
    files: Vec<(Entry, Option<Stat>)>,
    bytes: u64,
    names: usize,
    most_files: usize,
    most_bytes: u64,
}

impl Group {
    fn new(most_files: usize, most_bytes: u64) -> Group {
        Group { files: Vec::new(), bytes: 0, names: 0, most_files, most_bytes }
    }

    /// Adds `file`; when it does not fit, the files gathered so far are
    /// returned first, to be started, and it begins the next group.
    fn add(&mut self, file: (Entry, Option<Stat>)) -> Option<Vec<(Entry, Option<Stat>)>> {
        let name = file.0.path.as_bytes().len() + 64;
        let full = self.files.len() == self.most_files
            || self.names + name > REQUEST_BYTES
            || self.bytes + file.0.stat.size > self.most_bytes;
        let started = full.then(|| {
            (self.bytes, self.names) = (0, 0);
            std::mem::take(&mut self.files)
        });
        self.bytes += file.0.stat.size;
        self.names += name;
        self.files.push(file);
        started
    }
}

/// What is done with a group of small files, all in one request.
#[derive(Clone, Copy)]
enum Small {
    /// Files the destination has: compared by digest ([`compare`]).
    Compare,
    /// New files: sent in a bundle ([`bundle`]).
    Bundle,
}

/// Starts a group of small files; false when the run stops.
async fn start_small<S, D>(
    ctx: &Arc<Ctx<S, D>>,
    small: Small,
    group: Vec<(Entry, Option<Stat>)>,
    files: &Arc<Semaphore>,
) -> bool
where
    S: Source + Clone,
    D: Destination + Clone,
{
    if group.is_empty() {
        return true;
    }
    let Some(permit) = files_permit(ctx, files, group.len() as u32).await else { return false };
    Counters::add(&ctx.counters.files_total, group.len() as u64);
    Counters::add(&ctx.counters.bytes_total, group.iter().map(|(e, _)| e.stat.size).sum());
    let ctx2 = ctx.clone();
    ctx.tasks.spawn(async move {
        match small {
            Small::Compare => compare::sync_compared(&ctx2, group).await,
            Small::Bundle => bundle::sync_bundle(&ctx2, group).await,
        }
        drop(permit);
    });
    true
}

/// Room for `weight` more files in progress; `None` when the run stops.
async fn files_permit<S, D>(
    ctx: &Ctx<S, D>,
    files: &Arc<Semaphore>,
    weight: u32,
) -> Option<tokio::sync::OwnedSemaphorePermit>
where
    S: Source + Clone,
    D: Destination + Clone,
{
    tokio::select! {
        permit = files.clone().acquire_many_owned(weight) => permit.ok(),
        () = ctx.abort.cancelled() => None,
    }
}

fn same_symlink(source: &Stat, found: Option<&Stat>) -> bool {
    found.is_some_and(|f| {
        f.kind == Kind::Symlink && f.target == source.target && f.meta.mtime == source.meta.mtime
    })
}
