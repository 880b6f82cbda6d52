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

use std::sync::atomic::Ordering;
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use tokio::task::JoinSet;

use crate::codec::{Action, Entry, ErrorKind, HashTarget, Kind, Meta, RelPath, Span, Stat};
use crate::peer::{self, Destination, Digest, Source};

use super::plan::{copy_requests, segments, Origin, Plan};
use super::progress::{from_source, note_change, Progress};
use super::stats::Counters;
use super::Ctx;
use crate::peer::destination::max_copy;

/// Groups being compared chunk by chunk at once for one file.
const REFINES_IN_FLIGHT: usize = 16;
/// Chunks one file may have: the per-chunk bookkeeping of a file is kept in
/// memory, up to 33 bytes a chunk (16 Mi chunks of 1 MiB: a 16 TiB file).
const MAX_CHUNKS_PER_FILE: u64 = 1 << 24;
/// Segments hashed at once for one file.
const SEGMENTS_IN_FLIGHT: usize = 2;

/// One chunk to read from the source and write into a file being built.
struct ChunkJob {
    path: RelPath,
    /// The file as the source listed it (to notice a change).
    listed: Stat,
    handle: u64,
    offset: u64,
    len: u32,
    /// The source's digest of the chunk, if the comparison learnt it.
    expected: Option<Digest>,
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

fn flatten(joined: Result<Result<(), peer::Error>, tokio::task::JoinError>) -> Result<(), peer::Error> {
    joined.map_err(|e| peer::Error::io(format!("chunk task failed: {e}")))?
}

impl<S: Source + Clone, D: Destination + Clone> Ctx<S, D> {
    /// Syncs one file and records the outcome.
    pub(super) async fn sync(ctx: &Arc<Self>, entry: Entry, found: Option<Stat>) {
        let progress = Arc::new(Progress::default());
        let result = Self::sync_file(ctx, &entry, found.as_ref(), &progress).await;
        Self::record(ctx, &entry, found, &progress, result).await;
    }

    async fn sync_file(
        ctx: &Arc<Self>,
        entry: &Entry,
        found: Option<&Stat>,
        progress: &Arc<Progress>,
    ) -> Result<(), peer::Error> {
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
                return Self::fix_meta(ctx, &entry.path, &old.meta, &entry.stat.meta).await;
            }
        }
        if size <= chunk {
            return Self::sync_small(ctx, entry, old, progress).await;
        }
        Self::sync_large(ctx, entry, old, chunks, progress).await
    }

    /// Applies `want` where it differs from `have`.
    async fn fix_meta(ctx: &Arc<Self>, path: &RelPath, have: &Meta, want: &Meta) -> Result<(), peer::Error> {
        if !super::meta::same_meta(have, want) {
            tracing::info!("{path}: metadata updated");
            let meta = want.clone();
            ctx.apply(vec![Action::SetMeta { path: path.clone(), kind: Kind::File, meta }]).await;
        }
        Ok(())
    }

    /// A file of at most one chunk: compared by one digest, sent in one frame.
    pub(super) async fn sync_small(
        ctx: &Arc<Self>,
        entry: &Entry,
        old: Option<&Stat>,
        progress: &Progress,
    ) -> Result<(), peer::Error> {
        let (path, size) = (&entry.path, entry.stat.size);
        let mut expected = None;
        if let Some(old) = old.filter(|o| o.size == size) {
            let whole = Span { size, first: 0, count: 1, group: 1 };
            let (ours, theirs) = tokio::try_join!(
                async { ctx.source.hash(path.clone(), whole).await.map_err(from_source(progress)) },
                ctx.dest.hash(HashTarget::Path(path.clone()), whole),
            )?;
            if ours == theirs && ours.len() as u64 == size.div_ceil(ctx.opts.chunk_size as u64) {
                return Self::fix_meta(ctx, path, &old.meta, &entry.stat.meta).await;
            }
            expected = ours.first().copied();
        }
        let live = &ctx.counters.live;
        if ctx.opts.dry_run {
            progress.sent(live, size);
            if size > 0 {
                progress.delivered(live, size);
            }
            return Ok(());
        }
        let _permit = ctx.data.clone().acquire_many_owned(size.max(1) as u32).await;
        for attempt in 0..2 {
            let chunk = ctx.source.read(path.clone(), 0, size as u32).await.map_err(from_source(progress))?;
            note_change(progress, &entry.stat, &chunk.file, expected, chunk.digest);
            progress.sent(live, size);
            let _sending = live.sending();
            // Sparse zeros: a small file is still sent whole, in one frame.
            let data = if chunk.zeros { vec![0u8; size as usize].into() } else { chunk.data };
            match ctx.dest.put_file(path.clone(), entry.stat.meta.clone(), data, chunk.digest).await {
                Ok(()) => break,
                Err(e) if e.kind == ErrorKind::DigestMismatch && attempt == 0 => {
                    tracing::warn!("{e}; sending it again");
                }
                Err(e) => return Err(e),
            }
        }
        if size > 0 {
            progress.delivered(live, size);
        }
        Ok(())
    }

    /// A file of several chunks.
    async fn sync_large(
        ctx: &Arc<Self>,
        entry: &Entry,
        old: Option<&Stat>,
        chunks: u64,
        progress: &Arc<Progress>,
    ) -> Result<(), peer::Error> {
        let (path, size) = (&entry.path, entry.stat.size);
        let mut plan = Plan::new(chunks);
        if let Some(old) = old {
            Self::compare(ctx, path, size, old.size, &mut plan, progress).await?;
            if old.size == size && plan.all_old() {
                return Self::fix_meta(ctx, path, &old.meta, &entry.stat.meta).await;
            }
        }
        if ctx.opts.dry_run {
            // What the run would send, as if no partial file of an
            // interrupted run held any of it.
            let chunk = ctx.opts.chunk_size as u64;
            for (i, _) in plan.origin.iter().enumerate().filter(|(_, o)| **o == Origin::Send) {
                let len = chunk.min(size - i as u64 * chunk);
                progress.sent(&ctx.counters.live, len);
                progress.delivered(&ctx.counters.live, len);
            }
            return Ok(());
        }
        let begun = ctx.dest.begin(path.clone(), size).await?;
        let built = Self::build(ctx, entry, begun, &mut plan, progress).await;
        match built {
            Ok(()) => ctx.dest.finish(begun.handle, entry.stat.meta.clone()).await,
            Err(e) => {
                // `remove` unlinks the file at `path` as well: only for
                // `--delete`. Without it the temporary file stays; the sweep
                // at the end of the run removes it, and keeps those of
                // files that failed for the next run.
                let vanished = progress.vanished.load(Ordering::Relaxed);
                let remove = ctx.opts.delete && vanished;
                if e.kind != ErrorKind::Lost {
                    // The file has failed already, so this is only said.
                    if let Err(discard) = ctx.dest.discard(begun.handle, remove).await {
                        tracing::warn!("{path}: giving up the file being built: {discard}");
                    }
                }
                if vanished && ctx.opts.inplace && !remove {
                    // What stays is neither the old file nor the new one.
                    progress.vanished.store(false, Ordering::Relaxed);
                    let why = "vanished from the source while it was rewritten in place: \
                               the destination's copy is part old, part new";
                    return Err(peer::Error::io(why));
                }
                Err(e)
            }
        }
    }

    /// Compares a file with the destination's existing version, both sides
    /// hashing at once: first whole groups of chunks, then the chunks of the
    /// groups that differ, so that a file with scattered small changes costs
    /// few digests on the wire. Fills in `plan`.
    async fn compare(
        ctx: &Arc<Self>,
        path: &RelPath,
        size: u64,
        old_size: u64,
        plan: &mut Plan,
        progress: &Progress,
    ) -> Result<(), peer::Error> {
        let chunks = plan.origin.len() as u64;
        let (group, per_segment) = segments(ctx.opts.chunk_size as u64);
        let span = |first, count, group| Span { size, first, count, group };
        let mine =
            digests_of(chunks, group, per_segment, |f, c, g| ctx.source.hash(path.clone(), span(f, c, g)));
        let theirs = digests_of(chunks, group, per_segment, |f, c, g| {
            ctx.dest.hash(HashTarget::Path(path.clone()), span(f, c, g))
        });
        let (mine, theirs) = tokio::try_join!(async { mine.await.map_err(from_source(progress)) }, theirs)?;
        // Chunks the old file holds at least partly: a group it ends in is
        // compared chunk by chunk, so a grown file reuses all it can.
        let old_chunks = old_size.div_ceil(ctx.opts.chunk_size as u64);
        let refine = plan.first_round(group, &mine, &theirs, old_chunks);
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
            plan.refine(first, &mine, &theirs);
        }
        Ok(())
    }

    /// Fills a begun file: reuses what the partial file holds, clones equal
    /// chunks from the old file, and sends the rest.
    async fn build(
        ctx: &Arc<Self>,
        entry: &Entry,
        begun: peer::Begun,
        plan: &mut Plan,
        progress: &Arc<Progress>,
    ) -> Result<(), peer::Error> {
        let (path, size) = (&entry.path, entry.stat.size);
        let chunk = ctx.opts.chunk_size as u64;
        let chunks = plan.origin.len() as u64;
        let (_, per_segment) = segments(chunk);
        if begun.partial {
            let span = |first, count, group| Span { size, first, count, group };
            if plan.lacks_digests() {
                let mine = digests_of(chunks, 1, per_segment, |f, c, g| {
                    ctx.source.hash(path.clone(), span(f, c, g))
                })
                .await
                .map_err(from_source(progress))?;
                plan.learn(&mine);
            }
            let partial = digests_of(chunks, 1, per_segment, |f, c, g| {
                ctx.dest.hash(HashTarget::Handle(begun.handle), span(f, c, g))
            })
            .await?;
            plan.reuse_partial(&partial);
        }
        if !ctx.opts.inplace {
            let ranges = plan.runs(Origin::Old, chunk, size);
            for part in copy_requests(ranges, max_copy(ctx.opts.chunk_size)) {
                ctx.dest.copy_old(begun.handle, part).await?;
            }
        }
        let mut sending = JoinSet::new();
        for (i, o) in plan.origin.iter().enumerate() {
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
            let job = ChunkJob {
                path: path.clone(),
                listed: entry.stat.clone(),
                handle: begun.handle,
                offset,
                len,
                expected: plan.ours.get(i).copied().flatten(),
            };
            let (ctx, progress) = (ctx.clone(), progress.clone());
            sending.spawn(async move {
                let sent = Self::send_chunk(&ctx, &job, &progress).await;
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

    /// Reads one chunk from the source and writes it to the destination,
    /// sending it once more if it arrives damaged.
    async fn send_chunk(ctx: &Self, job: &ChunkJob, progress: &Progress) -> Result<(), peer::Error> {
        let ChunkJob { path, listed, handle, offset, len, expected } = job;
        let (handle, offset, len, expected) = (*handle, *offset, *len, *expected);
        for attempt in 0..2 {
            let chunk = ctx.source.read(path.clone(), offset, len).await.map_err(from_source(progress))?;
            note_change(progress, listed, &chunk.file, expected, chunk.digest);
            let live = &ctx.counters.live;
            let sending = live.sending();
            let written = if chunk.zeros {
                // Sparse: no bytes travel, the destination leaves a hole.
                ctx.dest.zero(handle, offset, len).await
            } else {
                progress.sent(live, len as u64);
                ctx.dest.write(handle, offset, chunk.data, chunk.digest).await
            };
            drop(sending);
            match written {
                Ok(()) => {
                    tracing::debug!("{path}: chunk at {offset} ({len} bytes) sent");
                    progress.delivered(live, len as u64);
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
}
