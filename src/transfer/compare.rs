//! Small files the destination already has in the same size are compared
//! in batches: one `hash_files` on each side for many files at once; the
//! equal ones only get their metadata fixed, the others travel whole in
//! bundles.

use crate::codec::{Action, Entry, Kind, RelPath, Stat};
use crate::peer::{self, Destination, Source};

use super::bundle;
use super::meta::same_meta;
use super::progress::Progress;
use super::stats::Counters;
use super::{Ctx, Options};

/// Small files compared together at most (a listing batch holds 512).
pub(super) const COMPARE_FILES: usize = 512;

/// Is `entry` compared in a batch? A file of at most a chunk that the
/// destination has as a file of the same size, unless `--skip-digest`
/// settles it by its mtime.
pub(super) fn compares(entry: &Entry, found: Option<&Stat>, opts: &Options) -> bool {
    let Some(old) = found.filter(|f| f.kind == Kind::File && f.size == entry.stat.size) else {
        return false;
    };
    entry.stat.size <= u64::from(opts.chunk_size)
        && !(opts.skip_digest && old.meta.mtime == entry.stat.meta.mtime)
}

/// Compares a batch of small files (see [`compares`]) and syncs those that
/// differ; records each outcome.
pub(super) async fn sync_compared<S, D>(ctx: &std::sync::Arc<Ctx<S, D>>, files: Vec<(Entry, Option<Stat>)>)
where
    S: Source + Clone,
    D: Destination + Clone,
{
    let wanted: Vec<(RelPath, u64)> = files.iter().map(|(e, _)| (e.path.clone(), e.stat.size)).collect();
    let (ours, theirs) = tokio::join!(ctx.source.hash_files(wanted.clone()), ctx.dest.hash_files(wanted));
    let (ours, theirs) = match (ours, theirs) {
        (Ok(ours), Ok(theirs)) => (ours, theirs),
        // A batch that could not be compared at all: file by file, where
        // each failure is reported as it should be.
        _ => {
            for (entry, found) in files {
                Ctx::sync(ctx, entry, found).await;
            }
            return;
        }
    };
    let mut actions = Vec::new();
    let mut differ = Vec::new();
    let mut equal = Vec::new();
    for (((entry, found), ours), theirs) in files.into_iter().zip(ours).zip(theirs) {
        match (ours, theirs) {
            (Ok(a), Ok(b)) if a == b => {
                let have = found.as_ref().map(|f| &f.meta);
                if have.is_some_and(|have| !same_meta(have, &entry.stat.meta)) {
                    tracing::info!("{}: metadata updated", entry.path);
                    actions.push(Action::SetMeta {
                        path: entry.path.clone(),
                        kind: Kind::File,
                        meta: entry.stat.meta.clone(),
                    });
                }
                equal.push((entry, found));
            }
            _ => differ.push((entry, found)),
        }
    }
    let nonempty = |e: &Entry| u64::from(e.stat.size > 0);
    Counters::add(&ctx.counters.chunks_total, equal.iter().map(|(e, _)| nonempty(e)).sum());
    if !actions.is_empty() {
        ctx.apply(actions).await;
    }
    for (entry, found) in equal {
        Ctx::record(ctx, &entry, found, &Progress::default(), Ok(())).await;
    }
    send_differing(ctx, differ).await;
}

/// Sends the files found to differ: in bundles, or alone when one is too
/// large for a bundle.
async fn send_differing<S, D>(ctx: &std::sync::Arc<Ctx<S, D>>, files: Vec<(Entry, Option<Stat>)>)
where
    S: Source + Clone,
    D: Destination + Clone,
{
    let most = bundle::bundle_bytes(ctx.opts.chunk_size);
    let mut group = Vec::new();
    let mut bytes = 0;
    for (entry, found) in files {
        let size = entry.stat.size;
        if size > most {
            Counters::add(&ctx.counters.chunks_total, 1);
            let progress = Progress::default();
            let result = Ctx::sync_small(ctx, &entry, None, &progress).await;
            Ctx::record(ctx, &entry, found, &progress, result).await;
            continue;
        }
        if group.len() == bundle::BUNDLE_FILES || bytes + size > most {
            bundle::sync_bundle(ctx, std::mem::take(&mut group)).await;
            bytes = 0;
        }
        bytes += size;
        group.push((entry, found));
    }
    if !group.is_empty() {
        bundle::sync_bundle(ctx, group).await;
    }
}

/// Bytes one batch of compared files may hold at most (what one
/// `HashFiles` may ask to read).
pub(super) const COMPARE_BYTES: u64 = peer::MAX_HASH_BYTES;
