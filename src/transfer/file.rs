//! Syncing one file: skip it, fix only its metadata, or send just the
//! chunks the destination lacks.
//!
//! - A file the destination lacks is sent whole: in one `PutFile` when it
//!   fits in a chunk, else chunk by chunk into a temporary file.
//! - A file the destination has is compared by chunk digests, both sides
//!   hashing at once, segment by segment; equal chunks are cloned from the
//!   old file (or, in place, left alone), a partial temporary file from an
//!   interrupted run is checked for chunks it already holds, and only the
//!   rest travels.
//! - `--skip-digest` trusts equal size and mtime and reads nothing.
//! - A source file that changes while it is read is sent as read and
//!   counted; one that vanishes is removed from the destination too.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use tokio::task::JoinSet;

use crate::codec::{Action, Entry, ErrorKind, HashTarget, Kind, Meta, RelPath, Span, Stat};
use crate::peer::{self, Destination, Digest, Source};

use super::stats::Counters;
use super::Ctx;

/// New small files sent together: files and bytes per request at most.
pub(super) const BUNDLE_FILES: usize = 256;
const BUNDLE_BYTES: u64 = 1 << 20;
/// Chunks hashed per request at most, and bytes per request at most: what
/// the other side accepts.
const SEGMENT_CHUNKS: u64 = peer::MAX_HASH_CHUNKS as u64;
const SEGMENT_BYTES: u64 = peer::MAX_HASH_BYTES;
/// Bytes of chunks summed up in one digest in the first round of comparing
/// a file (with chunks this size or larger, chunks are compared directly).
const GROUP_BYTES: u64 = 64 << 10;
/// Groups being compared chunk by chunk at once for one file.
const REFINES_IN_FLIGHT: usize = 16;
/// Chunks one file may have: the per-chunk bookkeeping of a file is kept in
/// memory, up to 33 bytes a chunk (16 Mi chunks of 1 MiB: a 16 TiB file).
const MAX_CHUNKS_PER_FILE: u64 = 1 << 24;
/// Segments hashed at once for one file.
const SEGMENTS_IN_FLIGHT: usize = 2;

/// Where each chunk of a file being built comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    /// Equal in the destination's existing file.
    Old,
    /// Already in the partial temporary file.
    Partial,
    /// Must be sent.
    Send,
}

/// What happened to one file, for the counters.
#[derive(Default)]
struct Progress {
    /// Chunks delivered, and their bytes (each counted once).
    chunks_sent: AtomicU64,
    data_sent: AtomicU64,
    /// Payload bytes put on the wire, a chunk sent again counted again.
    bytes_sent: AtomicU64,
    changed: AtomicBool,
    vanished: AtomicBool,
}

/// Syncs one file and records the outcome.
pub(super) async fn sync<S, D>(ctx: &Arc<Ctx<S, D>>, entry: Entry, found: Option<Stat>)
where
    S: Source + Clone,
    D: Destination + Clone,
{
    let progress = Arc::new(Progress::default());
    let result = sync_file(ctx, &entry, found.as_ref(), &progress).await;
    record(ctx, &entry, found, &progress, result).await;
}

/// Can `entry` travel in a bundle? Only a small file the destination does
/// not have in that size: it is sent whole, nothing to compare.
pub(super) fn bundles(entry: &Entry, found: Option<&Stat>, chunk_size: u32) -> bool {
    entry.stat.size <= bundle_bytes(chunk_size)
        && found.is_none_or(|f| f.kind == Kind::File && f.size != entry.stat.size)
}

/// Bytes of one bundle at most.
pub(super) fn bundle_bytes(chunk_size: u32) -> u64 {
    BUNDLE_BYTES.min(chunk_size as u64)
}

/// Syncs a bundle of small files (see [`bundles`]) with one read on the
/// source and one write on the destination, and records each outcome.
pub(super) async fn sync_bundle<S, D>(ctx: &Arc<Ctx<S, D>>, files: Vec<(Entry, Option<Stat>)>)
where
    S: Source + Clone,
    D: Destination + Clone,
{
    let progress: Vec<Progress> = files.iter().map(|_| Progress::default()).collect();
    let mut results: Vec<Result<(), peer::Error>> = files.iter().map(|_| Ok(())).collect();
    let mut retry = Vec::new();
    let nonempty = files.iter().filter(|(e, _)| e.stat.size > 0).count();
    Counters::add(&ctx.counters.chunks_total, nonempty as u64);
    {
        let bytes: u64 = files.iter().map(|(e, _)| e.stat.size).sum();
        let _permit = ctx.data.clone().acquire_many_owned(bytes.max(1) as u32).await;
        let wanted = files.iter().map(|(e, _)| (e.path.clone(), e.stat.size as u32)).collect();
        let mut batch = Vec::with_capacity(files.len());
        let mut sent = Vec::with_capacity(files.len());
        // A request that failed as a whole fails each of its files.
        let bundle = ctx
            .source
            .read_files(wanted)
            .await
            .unwrap_or_else(|e| peer::Bundle { data: bytes::Bytes::new(), files: vec![Err(e); files.len()] });
        for (i, ((entry, _), read)) in files.iter().zip(bundle.files).enumerate() {
            match read {
                Ok((digest, now)) => {
                    note_change(&progress[i], &entry.stat, &now, None, digest);
                    progress[i].bytes_sent.fetch_add(entry.stat.size, Ordering::Relaxed);
                    let (path, meta, len) = (entry.path.clone(), entry.stat.meta, entry.stat.size as u32);
                    batch.push(peer::NewFile { path, meta, len, digest });
                    sent.push(i);
                }
                Err(e) => results[i] = Err(from_source(&progress[i])(e)),
            }
        }
        if !batch.is_empty() {
            match ctx.dest.put_files(batch, bundle.data).await {
                Ok(failures) => {
                    for (k, e) in failures {
                        let Some(&i) = sent.get(k) else { continue };
                        if e.kind == ErrorKind::DigestMismatch {
                            tracing::warn!("{e}; sending it again");
                            retry.push(i);
                        } else {
                            results[i] = Err(e);
                        }
                    }
                }
                Err(e) => sent.iter().for_each(|&i| results[i] = Err(e.clone())),
            }
            for &i in &sent {
                let size = files[i].0.stat.size;
                if results[i].is_ok() && !retry.contains(&i) && size > 0 {
                    progress[i].chunks_sent.fetch_add(1, Ordering::Relaxed);
                    progress[i].data_sent.fetch_add(size, Ordering::Relaxed);
                }
            }
        }
    }
    // A file damaged on the way goes once more on its own.
    for i in retry {
        results[i] = sync_small(ctx, &files[i].0, None, &progress[i]).await;
    }
    for (((entry, found), progress), result) in files.into_iter().zip(&progress).zip(results) {
        record(ctx, &entry, found, progress, result).await;
    }
}

/// Counts and logs what happened to one file.
async fn record<S, D>(
    ctx: &Arc<Ctx<S, D>>,
    entry: &Entry,
    found: Option<Stat>,
    progress: &Progress,
    result: Result<(), peer::Error>,
) where
    S: Source + Clone,
    D: Destination + Clone,
{
    let c = &ctx.counters;
    let chunks_sent = progress.chunks_sent.load(Ordering::Relaxed);
    Counters::add(&c.chunks_transferred, chunks_sent);
    Counters::add(&c.bytes_transferred, progress.bytes_sent.load(Ordering::Relaxed));
    let size = entry.stat.size;
    let chunk = ctx.opts.chunk_size as u64;
    let sent_bytes = progress.data_sent.load(Ordering::Relaxed).min(size);
    if progress.vanished.load(Ordering::Relaxed) {
        Counters::add(&c.files_vanished, 1);
        tracing::warn!("{}: vanished during the transfer; removed from the destination too", entry.path);
        if found.is_some_and(|f| f.kind == Kind::File) {
            let remove = vec![Action::Remove { path: entry.path.clone(), kind: Kind::File }];
            ctx.apply(remove).await;
        }
        return;
    }
    match result {
        Err(e) => {
            Counters::add(&c.files_failed, 1);
            ctx.fail("", e);
        }
        Ok(()) => {
            if progress.changed.load(Ordering::Relaxed) {
                Counters::add(&c.files_changed, 1);
                tracing::warn!("{}: changed while it was read; sent as read", entry.path);
            }
            Counters::add(&c.bytes_skipped, size - sent_bytes);
            if chunks_sent > 0 || (size == 0 && found.is_none_or(|f| f.kind != Kind::File || f.size != 0)) {
                Counters::add(&c.files_transferred, 1);
                tracing::info!("{}: {} of {} chunk(s) sent", entry.path, chunks_sent, size.div_ceil(chunk));
            } else {
                Counters::add(&c.files_skipped, 1);
                tracing::debug!("{}: up to date", entry.path);
            }
        }
    }
}

async fn sync_file<S, D>(
    ctx: &Arc<Ctx<S, D>>,
    entry: &Entry,
    found: Option<&Stat>,
    progress: &Arc<Progress>,
) -> Result<(), peer::Error>
where
    S: Source + Clone,
    D: Destination + Clone,
{
    let size = entry.stat.size;
    let chunk = ctx.opts.chunk_size as u64;
    let chunks = size.div_ceil(chunk);
    if chunks > MAX_CHUNKS_PER_FILE {
        return Err(peer::Error::new(
            ErrorKind::Limit,
            format!(
                "{}: {size} bytes is over {MAX_CHUNKS_PER_FILE} chunks; use a larger --chunk-size",
                entry.path
            ),
        ));
    }
    Counters::add(&ctx.counters.chunks_total, chunks);
    let old = found.filter(|f| f.kind == Kind::File);
    if let Some(old) = old {
        if ctx.opts.skip_digest && old.size == size && old.meta.mtime == entry.stat.meta.mtime {
            return fix_meta(ctx, &entry.path, old.meta, entry.stat.meta).await;
        }
    }
    if size <= chunk {
        return sync_small(ctx, entry, old, progress).await;
    }
    sync_large(ctx, entry, old, chunks, progress).await
}

/// Passes on the error of a call to the source, noting a missing file as
/// a source that vanished (a missing destination file is a plain error).
fn from_source(progress: &Progress) -> impl Fn(peer::Error) -> peer::Error + '_ {
    |e| {
        if e.kind == ErrorKind::NotFound {
            progress.vanished.store(true, Ordering::Relaxed);
        }
        e
    }
}

/// Applies `want` where it differs from `have`.
async fn fix_meta<S, D>(
    ctx: &Arc<Ctx<S, D>>,
    path: &RelPath,
    have: Meta,
    want: Meta,
) -> Result<(), peer::Error>
where
    S: Source + Clone,
    D: Destination + Clone,
{
    if have != want {
        tracing::info!("{path}: metadata updated");
        ctx.apply(vec![Action::SetMeta { path: path.clone(), kind: Kind::File, meta: want }]).await;
    }
    Ok(())
}

/// Notes whether the source file changed since it was listed.
fn note_change(progress: &Progress, listed: &Stat, now: &Stat, expected: Option<Digest>, got: Digest) {
    if now.size != listed.size || now.meta.mtime != listed.meta.mtime || expected.is_some_and(|e| e != got) {
        progress.changed.store(true, Ordering::Relaxed);
    }
}

/// A file of at most one chunk: compared by one digest, sent in one frame.
async fn sync_small<S, D>(
    ctx: &Arc<Ctx<S, D>>,
    entry: &Entry,
    old: Option<&Stat>,
    progress: &Progress,
) -> Result<(), peer::Error>
where
    S: Source + Clone,
    D: Destination + Clone,
{
    let (path, size) = (&entry.path, entry.stat.size);
    let mut expected = None;
    if let Some(old) = old.filter(|o| o.size == size) {
        let whole = Span { size, first: 0, count: 1, group: 1 };
        let (ours, theirs) = tokio::try_join!(
            async { ctx.source.hash(path.clone(), whole).await.map_err(from_source(progress)) },
            ctx.dest.hash(HashTarget::Path(path.clone()), whole),
        )?;
        if ours == theirs && ours.len() as u64 == size.div_ceil(ctx.opts.chunk_size as u64) {
            return fix_meta(ctx, path, old.meta, entry.stat.meta).await;
        }
        expected = ours.first().copied();
    }
    let _permit = ctx.data.clone().acquire_many_owned(size.max(1) as u32).await;
    for attempt in 0..2 {
        let chunk = ctx.source.read(path.clone(), 0, size as u32).await.map_err(from_source(progress))?;
        note_change(progress, &entry.stat, &chunk.file, expected, chunk.digest);
        progress.bytes_sent.fetch_add(size, Ordering::Relaxed);
        match ctx.dest.put_file(path.clone(), entry.stat.meta, chunk.data, chunk.digest).await {
            Ok(()) => break,
            Err(e) if e.kind == ErrorKind::DigestMismatch && attempt == 0 => {
                tracing::warn!("{e}; sending it again");
            }
            Err(e) => return Err(e),
        }
    }
    if size > 0 {
        progress.chunks_sent.fetch_add(1, Ordering::Relaxed);
        progress.data_sent.fetch_add(size, Ordering::Relaxed);
    }
    Ok(())
}

/// Digests of chunks `0..chunks` in groups of `group`, a segment per request,
/// from `hash` (given a span without its size).
async fn digests_of<F, Fut>(
    chunks: u64,
    group: u64,
    per_segment: u64,
    hash: F,
) -> Result<Vec<Digest>, peer::Error>
where
    F: Fn(u64, u32, u32) -> Fut,
    Fut: std::future::Future<Output = Result<Vec<Digest>, peer::Error>>,
{
    let segments = (0..chunks.div_ceil(per_segment)).map(|k| {
        let first = k * per_segment;
        hash(first, per_segment.min(chunks - first) as u32, group as u32)
    });
    let parts: Vec<Vec<Digest>> =
        futures::stream::iter(segments).buffered(SEGMENTS_IN_FLIGHT).try_collect().await?;
    let mut all = Vec::with_capacity(chunks.div_ceil(group).min(1 << 20) as usize);
    for (k, part) in parts.into_iter().enumerate() {
        let want = (per_segment.min(chunks - k as u64 * per_segment)).div_ceil(group) as usize;
        let short = part.len() < want;
        all.extend(part);
        if short {
            break;
        }
    }
    Ok(all)
}

/// How a large file is compared: chunks per group of the first, coarse
/// round, and chunks per hash request.
fn plan(chunk: u64) -> (u64, u64) {
    let group = (GROUP_BYTES / chunk).max(1);
    let per_segment = ((SEGMENT_BYTES / chunk).clamp(1, SEGMENT_CHUNKS) / group).max(1) * group;
    (group, per_segment)
}

/// A file of several chunks.
async fn sync_large<S, D>(
    ctx: &Arc<Ctx<S, D>>,
    entry: &Entry,
    old: Option<&Stat>,
    chunks: u64,
    progress: &Arc<Progress>,
) -> Result<(), peer::Error>
where
    S: Source + Clone,
    D: Destination + Clone,
{
    let (path, size) = (&entry.path, entry.stat.size);
    let mut origin = vec![Origin::Send; chunks as usize];
    let mut ours: Vec<Option<Digest>> = Vec::new();
    if let Some(old) = old {
        ours = compare(ctx, path, size, old.size, &mut origin, progress).await?;
        if old.size == size && origin.iter().all(|o| *o == Origin::Old) {
            return fix_meta(ctx, path, old.meta, entry.stat.meta).await;
        }
    }
    let begun = ctx.dest.begin(path.clone(), size).await?;
    let built = build(ctx, entry, begun, &mut origin, ours, progress).await;
    match built {
        Ok(()) => ctx.dest.finish(begun.handle, entry.stat.meta).await,
        Err(e) => {
            let remove = progress.vanished.load(Ordering::Relaxed);
            if e.kind != ErrorKind::Lost {
                let _ = ctx.dest.discard(begun.handle, remove).await;
            }
            Err(e)
        }
    }
}

/// Compares a file with the destination's existing version, both sides
/// hashing at once: first whole groups of chunks, then the chunks of the
/// groups that differ, so that a file with scattered small changes costs
/// few digests on the wire. Marks equal chunks `Old`; returns the source
/// digests it learnt of the chunks that differ.
async fn compare<S, D>(
    ctx: &Arc<Ctx<S, D>>,
    path: &RelPath,
    size: u64,
    old_size: u64,
    origin: &mut [Origin],
    progress: &Progress,
) -> Result<Vec<Option<Digest>>, peer::Error>
where
    S: Source + Clone,
    D: Destination + Clone,
{
    let chunks = origin.len() as u64;
    let (group, per_segment) = plan(ctx.opts.chunk_size as u64);
    let span = |first, count, group| Span { size, first, count, group };
    let mine = digests_of(chunks, group, per_segment, |f, c, g| ctx.source.hash(path.clone(), span(f, c, g)));
    let theirs = digests_of(chunks, group, per_segment, |f, c, g| {
        ctx.dest.hash(HashTarget::Path(path.clone()), span(f, c, g))
    });
    let (mine, theirs) = tokio::try_join!(async { mine.await.map_err(from_source(progress)) }, theirs)?;
    let mut ours = vec![None; origin.len()];
    let mut refine = Vec::new();
    // Chunks the old file holds at least partly: a group it ends in is
    // compared chunk by chunk, so a grown file reuses all it can.
    let old_chunks = old_size.div_ceil(ctx.opts.chunk_size as u64);
    for g in 0..chunks.div_ceil(group) {
        let range = (g * group) as usize..((g + 1) * group).min(chunks) as usize;
        match (mine.get(g as usize), theirs.get(g as usize)) {
            (Some(a), Some(b)) if a == b => origin[range].fill(Origin::Old),
            (Some(a), Some(_)) if group == 1 => ours[range.start] = Some(*a),
            _ if group > 1 && g * group < old_chunks => refine.push(g),
            _ => {}
        }
    }
    let refined = refine.into_iter().map(|g| {
        let (first, count) = (g * group, group.min(chunks - g * group) as u32);
        let mine = ctx.source.hash(path.clone(), span(first, count, 1));
        let theirs = ctx.dest.hash(HashTarget::Path(path.clone()), span(first, count, 1));
        async move {
            let (mine, theirs) =
                tokio::try_join!(async { mine.await.map_err(from_source(progress)) }, theirs)?;
            Ok::<_, peer::Error>((first, mine, theirs))
        }
    });
    let mut refined = futures::stream::iter(refined).buffer_unordered(REFINES_IN_FLIGHT);
    while let Some((first, mine, theirs)) = refined.try_next().await? {
        for (k, digest) in mine.iter().enumerate() {
            let i = first as usize + k;
            if theirs.get(k) == Some(digest) {
                origin[i] = Origin::Old;
            } else {
                ours[i] = Some(*digest);
            }
        }
    }
    Ok(ours)
}

/// Fills a begun file: reuses what the partial file holds, clones equal
/// chunks from the old file, and sends the rest.
async fn build<S, D>(
    ctx: &Arc<Ctx<S, D>>,
    entry: &Entry,
    begun: peer::Begun,
    origin: &mut [Origin],
    mut ours: Vec<Option<Digest>>,
    progress: &Arc<Progress>,
) -> Result<(), peer::Error>
where
    S: Source + Clone,
    D: Destination + Clone,
{
    let (path, size) = (&entry.path, entry.stat.size);
    let chunk = ctx.opts.chunk_size as u64;
    let chunks = origin.len() as u64;
    let (_, per_segment) = plan(chunk);
    if begun.partial {
        let span = |first, count, group| Span { size, first, count, group };
        let unknown =
            origin.iter().zip(&ours).any(|(o, d)| *o == Origin::Send && d.is_none()) || ours.is_empty();
        if unknown {
            let mine =
                digests_of(chunks, 1, per_segment, |f, c, g| ctx.source.hash(path.clone(), span(f, c, g)))
                    .await
                    .map_err(from_source(progress))?;
            ours = (0..chunks as usize).map(|i| mine.get(i).copied()).collect();
        }
        let partial = digests_of(chunks, 1, per_segment, |f, c, g| {
            ctx.dest.hash(HashTarget::Handle(begun.handle), span(f, c, g))
        })
        .await?;
        for (i, o) in origin.iter_mut().enumerate() {
            if *o == Origin::Send && ours[i].is_some() && partial.get(i).copied() == ours[i] {
                *o = Origin::Partial;
            }
        }
    }
    if !ctx.opts.inplace {
        let ranges = runs(origin, Origin::Old, chunk, size);
        for part in ranges.chunks(4096) {
            ctx.dest.copy_old(begun.handle, part.to_vec()).await?;
        }
    }
    let mut sending = JoinSet::new();
    for (i, o) in origin.iter().enumerate() {
        if *o != Origin::Send {
            continue;
        }
        if let Some(Err(e)) = sending.try_join_next().map(flatten) {
            sending.abort_all();
            return Err(e);
        }
        let offset = i as u64 * chunk;
        let len = chunk.min(size - offset) as u32;
        let permit = tokio::select! {
            permit = ctx.data.clone().acquire_many_owned(len) => permit,
            () = ctx.abort.cancelled() => return Err(peer::Error::new(ErrorKind::Lost, "transfer aborted")),
        };
        let Ok(permit) = permit else { break };
        let expected = ours.get(i).copied().flatten();
        let (ctx, path, progress, stat) = (ctx.clone(), path.clone(), progress.clone(), entry.stat.clone());
        sending.spawn(async move {
            let sent = send_chunk(&ctx, &path, &stat, begun.handle, offset, len, expected, &progress).await;
            drop(permit);
            sent
        });
    }
    while let Some(result) = sending.join_next().await {
        if let Err(e) = flatten(result) {
            sending.abort_all();
            return Err(e);
        }
    }
    Ok(())
}

fn flatten(joined: Result<Result<(), peer::Error>, tokio::task::JoinError>) -> Result<(), peer::Error> {
    joined.map_err(|e| peer::Error::io(format!("chunk task failed: {e}")))?
}

/// Reads one chunk from the source and writes it to the destination,
/// sending it once more if it arrives damaged.
#[allow(clippy::too_many_arguments)]
async fn send_chunk<S, D>(
    ctx: &Ctx<S, D>,
    path: &RelPath,
    listed: &Stat,
    handle: u64,
    offset: u64,
    len: u32,
    expected: Option<Digest>,
    progress: &Progress,
) -> Result<(), peer::Error>
where
    S: Source + Clone,
    D: Destination + Clone,
{
    for attempt in 0..2 {
        let chunk = ctx.source.read(path.clone(), offset, len).await.map_err(from_source(progress))?;
        note_change(progress, listed, &chunk.file, expected, chunk.digest);
        progress.bytes_sent.fetch_add(len as u64, Ordering::Relaxed);
        match ctx.dest.write(handle, offset, chunk.data, chunk.digest).await {
            Ok(()) => {
                tracing::debug!("{path}: chunk at {offset} ({len} bytes) sent");
                progress.chunks_sent.fetch_add(1, Ordering::Relaxed);
                progress.data_sent.fetch_add(len as u64, Ordering::Relaxed);
                return Ok(());
            }
            Err(e) if e.kind == ErrorKind::DigestMismatch && attempt == 0 => {
                tracing::warn!("{e}; sending it again");
            }
            Err(e) => return Err(e),
        }
    }
    unreachable!("the second attempt returns")
}

/// `(offset, len)` byte ranges of the runs of chunks with origin `which`.
fn runs(origin: &[Origin], which: Origin, chunk: u64, size: u64) -> Vec<(u64, u64)> {
    let mut ranges: Vec<(u64, u64)> = Vec::new();
    for (i, o) in origin.iter().enumerate() {
        if *o != which {
            continue;
        }
        let offset = i as u64 * chunk;
        let len = chunk.min(size - offset);
        match ranges.last_mut() {
            Some((start, run)) if *start + *run == offset => *run += len,
            _ => ranges.push((offset, len)),
        }
    }
    ranges
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_coalesce_neighbours_and_clip_the_tail() {
        use Origin::*;
        let origin = [Old, Old, Send, Old, Partial, Old, Old];
        assert_eq!(runs(&origin, Old, 10, 65), vec![(0, 20), (30, 10), (50, 15)]);
        assert_eq!(runs(&origin, Send, 10, 65), vec![(20, 10)]);
    }
}
