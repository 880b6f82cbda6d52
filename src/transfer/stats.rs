//! What a transfer counts while it runs, and the report it ends with.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use super::observe::{Live, Snapshot, Watch};
use crate::session::pace::Pacing;
use crate::session::{Latency, Resilience};

/// Counters shared by all tasks of a transfer.
#[derive(Debug, Default)]
pub struct Counters {
    /// Regular files the source listed.
    pub files_total: AtomicU64,
    /// Files for which data was sent (or that were created empty).
    pub files_transferred: AtomicU64,
    /// Files for which no data had to be sent.
    pub files_skipped: AtomicU64,
    /// Files and symlinks removed from the destination by `--delete`.
    pub files_deleted: AtomicU64,
    /// Files that could not be synced.
    pub files_failed: AtomicU64,
    /// Files that changed while they were read (sent as read).
    pub files_changed: AtomicU64,
    /// Files that vanished from the source during the transfer.
    pub files_vanished: AtomicU64,
    /// `-H`: files that are other names of a file listed before them,
    /// made (or found) hard links of it at the destination.
    pub files_linked: AtomicU64,
    /// Directories the source listed.
    pub dirs_total: AtomicU64,
    /// Symlinks the source listed.
    pub symlinks_total: AtomicU64,
    /// Bytes of all the files the source listed.
    pub bytes_total: AtomicU64,
    /// Chunk payload bytes sent (a re-sent chunk counts twice).
    pub bytes_transferred: AtomicU64,
    /// Bytes of files and chunks found already in place.
    pub bytes_skipped: AtomicU64,
    /// Chunks of the files the source listed.
    pub chunks_total: AtomicU64,
    /// Chunks delivered to the destination, each counted once.
    pub chunks_transferred: AtomicU64,
    /// Errors met (failed files, unreadable entries, failed actions).
    pub errors: AtomicU64,
    /// Where the run stands, and who watches it.
    pub(crate) live: Live,
}

impl Counters {
    /// The counters of a run that tells `watch` of every entry it is done
    /// with (see [`super::observe`]).
    pub fn watched(watch: Arc<dyn Watch>) -> Counters {
        Counters { live: Live::watched(Some(watch)), ..Counters::default() }
    }

    /// Where the run stands now: phase, files and bytes done and total.
    pub fn snapshot(&self) -> Snapshot {
        self.live.snapshot(Counters::get(&self.files_total), Counters::get(&self.bytes_total))
    }

    /// Adds `n` to `counter`.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// The current value of `counter`.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// The counters of a new session that carries on after `earlier` was
    /// lost: it checks every file again, so it counts files and totals
    /// afresh, but what `earlier` sent was sent and stays counted.
    pub fn carrying_on(earlier: &Counters) -> Counters {
        let counters = Counters { live: Live::watched(earlier.live.watcher()), ..Counters::default() };
        Counters::add(&counters.bytes_transferred, Counters::get(&earlier.bytes_transferred));
        Counters::add(&counters.chunks_transferred, Counters::get(&earlier.chunks_transferred));
        Live::add(&counters.live.bytes_sent, Counters::get(&earlier.live.bytes_sent));
        counters
    }

    /// The final report, with what only the caller knows: the duration, the
    /// bytes on the wire, the chunk latencies and what the connections went
    /// through.
    pub fn report(
        &self,
        duration: Duration,
        wire_bytes: u64,
        chunk_latency_us: Latency,
        connections: Resilience,
    ) -> Report {
        let get = Counters::get;
        let chunks_total = get(&self.chunks_total);
        let chunks_transferred = get(&self.chunks_transferred);
        let bytes_transferred = get(&self.bytes_transferred);
        let seconds = duration.as_secs_f64();
        Report {
            files_total: get(&self.files_total),
            files_transferred: get(&self.files_transferred),
            files_skipped: get(&self.files_skipped),
            files_deleted: get(&self.files_deleted),
            files_failed: get(&self.files_failed),
            files_changed_during_transfer: get(&self.files_changed),
            files_vanished: get(&self.files_vanished),
            files_linked: get(&self.files_linked),
            dirs_total: get(&self.dirs_total),
            symlinks_total: get(&self.symlinks_total),
            bytes_total: get(&self.bytes_total),
            bytes_transferred,
            bytes_skipped: get(&self.bytes_skipped),
            wire_bytes,
            chunks_total,
            chunks_transferred,
            chunks_skipped: chunks_total.saturating_sub(chunks_transferred),
            errors: get(&self.errors),
            duration_s: seconds,
            throughput_bytes_per_s: if seconds > 0.0 {
                (bytes_transferred as f64 / seconds) as u64
            } else {
                0
            },
            chunk_latency_us,
            connections,
            bwlimit: None,
        }
    }
}

/// The outcome of a transfer, as `--json` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Regular files the source listed.
    pub files_total: u64,
    /// Files for which data was sent (or that were created empty).
    pub files_transferred: u64,
    /// Files for which no data had to be sent.
    pub files_skipped: u64,
    /// Files and symlinks removed from the destination by `--delete`.
    pub files_deleted: u64,
    /// Files that could not be synced.
    pub files_failed: u64,
    /// Files that changed while they were read (sent as read).
    pub files_changed_during_transfer: u64,
    /// Files that vanished from the source during the transfer.
    pub files_vanished: u64,
    /// `-H`: files that are other names of a file listed before them,
    /// made (or found) hard links of it at the destination; no data sent.
    pub files_linked: u64,
    /// Directories the source listed.
    pub dirs_total: u64,
    /// Symlinks the source listed.
    pub symlinks_total: u64,
    /// Bytes of all the files the source listed.
    pub bytes_total: u64,
    /// Chunk payload bytes actually sent (a re-sent chunk counts twice).
    pub bytes_transferred: u64,
    /// Bytes of files and chunks found already in place.
    pub bytes_skipped: u64,
    /// Everything the client's sockets sent and received.
    pub wire_bytes: u64,
    /// Chunks of the files the source listed.
    pub chunks_total: u64,
    /// Chunks delivered to the destination, each counted once.
    pub chunks_transferred: u64,
    /// Chunks not sent: `chunks_total - chunks_transferred`.
    pub chunks_skipped: u64,
    /// Errors met (failed files, unreadable entries, failed actions).
    pub errors: u64,
    /// How long the transfer took, in seconds.
    pub duration_s: f64,
    /// `bytes_transferred` per second of the whole run.
    pub throughput_bytes_per_s: u64,
    /// Round-trip latency percentiles of the requests that moved file data,
    /// in microseconds.
    pub chunk_latency_us: Latency,
    /// Connections replaced, requests sent again, sessions opened (as
    /// `reconnects`, `requests_retried`, `sessions_opened`).
    #[serde(flatten)]
    pub connections: Resilience,
    /// The session's bandwidth limit and how often it held the client's
    /// writes back (absent without a limit).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bwlimit: Option<Pacing>,
}

impl Report {
    /// Did the transfer make the destination a complete mirror?
    pub fn complete(&self) -> bool {
        self.errors == 0
    }

    /// The human summary printed at the end.
    pub fn summary(&self) -> String {
        let pct = |part: u64, whole: u64| if whole == 0 { 100.0 } else { part as f64 * 100.0 / whole as f64 };
        let mut lines = vec![
            format!(
                "files: {} total, {} transferred, {} skipped ({:.1}%), {} deleted, {} failed",
                self.files_total,
                self.files_transferred,
                self.files_skipped,
                pct(self.files_skipped, self.files_total),
                self.files_deleted,
                self.files_failed,
            ),
            format!(
                "bytes: {} total, {} transferred, {} skipped ({:.1}%), {} on the wire",
                human_bytes(self.bytes_total),
                human_bytes(self.bytes_transferred),
                human_bytes(self.bytes_skipped),
                pct(self.bytes_skipped, self.bytes_total),
                human_bytes(self.wire_bytes),
            ),
            format!(
                "time: {:.2}s, {}/s; chunk round trip p50 {:.1} ms, p99 {:.1} ms",
                self.duration_s,
                human_bytes(self.throughput_bytes_per_s),
                self.chunk_latency_us.p50 as f64 / 1000.0,
                self.chunk_latency_us.p99 as f64 / 1000.0,
            ),
        ];
        if self.files_linked > 0 {
            lines.push(format!("hard links: {} file(s) linked to another name", self.files_linked));
        }
        let c = &self.connections;
        if c.reconnects + c.requests_retried > 0 {
            lines.push(format!(
                "connections: {} lost and replaced, {} request(s) sent again",
                c.reconnects, c.requests_retried
            ));
        }
        if let Some(pacing) = &self.bwlimit {
            lines.push(format!(
                "bandwidth limit: {}/s, this side's writes held back {} time(s)",
                human_bytes(pacing.bytes_per_s),
                pacing.waits
            ));
        }
        if self.files_changed_during_transfer + self.files_vanished > 0 {
            lines.push(format!(
                "live source: {} file(s) changed while read (sent as read), {} vanished; run again to settle them",
                self.files_changed_during_transfer, self.files_vanished
            ));
        }
        lines.join("\n")
    }
}

/// `1536` → `1.5 KiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}
