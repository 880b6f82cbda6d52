//! What happened to one file while it was synced: the chunks and bytes it
//! moved, and whether its source changed or vanished meanwhile.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::observe::Live;
use crate::codec::{ErrorKind, Stat};
use crate::peer::{self, Digest};

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
