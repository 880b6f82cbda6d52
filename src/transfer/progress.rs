//! What happened to one file while it was synced (the chunks and bytes it
//! moved, whether its source changed or vanished meanwhile), and its
//! record: counted, logged, told to the watcher.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use super::observe::{Live, Outcome};
use super::stats::Counters;
use super::{told, Ctx};
use crate::codec::{Action, Entry, ErrorKind, Kind, RelPath, Stat};
use crate::peer::{self, Destination, Digest, Source};

/// What happened to one file, for the counters.
#[derive(Default)]
pub(super) struct Progress {
    /// Chunks delivered, and their bytes (each counted once).
    pub chunks_sent: AtomicU64,
    pub data_sent: AtomicU64,
    /// Payload bytes put on the wire, a chunk sent again counted again.
    pub bytes_sent: AtomicU64,
    pub changed: AtomicBool,
    pub vanished: AtomicBool,
}

impl Progress {
    /// `len` bytes of the file were put on the wire (or would have been,
    /// in a dry run).
    pub(super) fn sent(&self, live: &Live, len: u64) {
        self.bytes_sent.fetch_add(len, Ordering::Relaxed);
        Live::add(&live.bytes_sent, len);
    }

    /// A chunk of `len` bytes of the file is in place at the destination
    /// (or would be, in a dry run).
    pub(super) fn delivered(&self, live: &Live, len: u64) {
        self.chunks_sent.fetch_add(1, Ordering::Relaxed);
        self.data_sent.fetch_add(len, Ordering::Relaxed);
        Live::add(&live.bytes_done, len);
    }
}

/// Passes on the error of a call to the source, noting a missing file as
/// a source that vanished (a missing destination file is a plain error).
pub(super) fn from_source(progress: &Progress) -> impl Fn(peer::Error) -> peer::Error + '_ {
    |e| {
        if e.kind == ErrorKind::NotFound {
            progress.vanished.store(true, Ordering::Relaxed);
        }
        e
    }
}

/// Notes whether the source file changed since it was listed.
pub(super) fn note_change(
    progress: &Progress,
    listed: &Stat,
    now: &Stat,
    expected: Option<Digest>,
    got: Digest,
) {
    if now.size != listed.size || now.meta.mtime != listed.meta.mtime || expected.is_some_and(|e| e != got) {
        progress.changed.store(true, Ordering::Relaxed);
    }
}

impl<S: Source + Clone, D: Destination + Clone> Ctx<S, D> {
    /// Counts and logs what happened to one file, and tells the watcher.
    pub(super) async fn record(
        ctx: &Arc<Self>,
        entry: &Entry,
        found: Option<Stat>,
        progress: &Progress,
        result: Result<(), peer::Error>,
    ) {
        let c = &ctx.counters;
        let chunks_sent = progress.chunks_sent.load(Ordering::Relaxed);
        Counters::add(&c.chunks_transferred, chunks_sent);
        Counters::add(&c.bytes_transferred, progress.bytes_sent.load(Ordering::Relaxed));
        let size = entry.stat.size;
        let chunk = ctx.opts.chunk_size as u64;
        let sent_bytes = progress.data_sent.load(Ordering::Relaxed).min(size);
        Live::add(&c.live.bytes_done, size - sent_bytes);
        Live::add(&c.live.files_done, 1);
        if progress.vanished.load(Ordering::Relaxed) {
            Counters::add(&c.files_vanished, 1);
            ctx.links.failed(&entry.path);
            // Only `--delete` deletes: without it, the destination keeps
            // its copy, as it keeps every file the source does not have.
            if ctx.opts.delete {
                tracing::warn!(
                    "{}: vanished during the transfer; removed from the destination too",
                    entry.path
                );
            } else {
                tracing::warn!(
                    "{}: vanished during the transfer (the destination keeps its copy)",
                    entry.path
                );
            }
            c.live.tell(|| told(entry, found.as_ref(), Outcome::Vanished));
            if ctx.opts.delete && found.is_some_and(|f| f.kind == Kind::File) {
                let remove = vec![Action::Remove { path: entry.path.clone(), kind: Kind::File }];
                ctx.apply(remove).await;
            }
            return;
        }
        match result {
            Err(e) => {
                Counters::add(&c.files_failed, 1);
                ctx.links.failed(&entry.path);
                let dir = entry.path.split_last().map_or_else(RelPath::root, |(dir, _)| dir);
                ctx.unswept.lock().unwrap_or_else(|p| p.into_inner()).insert(dir);
                c.live.tell(|| told(entry, found.as_ref(), Outcome::Failed { why: e.to_string() }));
                ctx.fail("", e);
            }
            Ok(()) => {
                if progress.changed.load(Ordering::Relaxed) {
                    Counters::add(&c.files_changed, 1);
                    tracing::warn!("{}: changed while it was read; sent as read", entry.path);
                }
                Counters::add(&c.bytes_skipped, size - sent_bytes);
                let had = found.as_ref().filter(|f| f.kind == Kind::File);
                let chunks = size.div_ceil(chunk);
                if chunks_sent > 0 || (size == 0 && had.is_none_or(|f| f.size != 0)) {
                    Counters::add(&c.files_transferred, 1);
                    tracing::info!("{}: {} of {} chunk(s) sent", entry.path, chunks_sent, chunks);
                    c.live.tell(|| {
                        let outcome = match had {
                            Some(_) => Outcome::Updated { chunks_sent, chunks },
                            None => Outcome::Created { chunks_sent, chunks },
                        };
                        told(entry, found.as_ref(), outcome)
                    });
                } else {
                    Counters::add(&c.files_skipped, 1);
                    tracing::debug!("{}: up to date", entry.path);
                    c.live.tell(|| {
                        let same = had.is_some_and(|f| f.meta == entry.stat.meta);
                        let outcome = if same { Outcome::Unchanged } else { Outcome::Metadata };
                        told(entry, found.as_ref(), outcome)
                    });
                }
            }
        }
    }
}
