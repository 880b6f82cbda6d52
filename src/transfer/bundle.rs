//! New small files travel in bundles: one read of many files on the
//! source, one write of them on the destination, one request each way.

use std::sync::Arc;

use crate::codec::{Entry, ErrorKind, Kind, Stat};
use crate::peer::{self, Destination, Source};

use super::progress::{from_source, note_change, Progress};
use super::stats::Counters;
use super::Ctx;

/// New small files sent together: files and bytes per request at most.
pub(super) const BUNDLE_FILES: usize = 256;
const BUNDLE_BYTES: u64 = 1 << 20;

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
    let live = &ctx.counters.live;
    if ctx.opts.dry_run {
        for ((entry, _), progress) in files.iter().zip(&progress) {
            progress.sent(live, entry.stat.size);
            if entry.stat.size > 0 {
                progress.delivered(live, entry.stat.size);
            }
        }
    } else {
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
                    progress[i].sent(live, entry.stat.size);
                    let (path, meta, len) =
                        (entry.path.clone(), entry.stat.meta.clone(), entry.stat.size as u32);
                    batch.push(peer::NewFile { path, meta, len, digest });
                    sent.push(i);
                }
                Err(e) => results[i] = Err(from_source(&progress[i])(e)),
            }
        }
        if !batch.is_empty() {
            let sending = live.sending();
            let written = ctx.dest.put_files(batch, bundle.data).await;
            drop(sending);
            match written {
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
                    progress[i].delivered(live, size);
                }
            }
        }
    }
    // A file damaged on the way goes once more on its own.
    for i in retry {
        results[i] = Ctx::sync_small(ctx, &files[i].0, None, &progress[i]).await;
    }
    for (((entry, found), progress), result) in files.into_iter().zip(&progress).zip(results) {
        Ctx::record(ctx, &entry, found, progress, result).await;
    }
}
