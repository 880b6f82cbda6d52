//! The adapter between a running job and what the API shows of it: the
//! one place that knows how a run tells its progress and its outcomes.
//!
//! - Progress: a snapshot of the job's [`Live`] counters when asked
//!   (phase, totals, done).
//! - Errors and warnings: the lines the run logs. Each run has its own
//!   runtime whose threads are [`attach`]ed to its [`Observed`]; the
//!   [`RunLogs`] layer routes every event logged on such a thread there.
//! - Files: what the engine tells its [`Watch`] of each entry done
//!   ([`FilesWatch`]), the most recent [`FILES_KEPT`]; every failed file is
//!   among the errors too.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::{Context, Layer};

use crate::job::Live;
use crate::transfer::observe::{EntryEvent, Outcome};
use crate::transfer::{Counters, Watch};

/// Files listed per run at most (the most recent).
pub(super) const FILES_KEPT: usize = 300;
/// Errors and warnings kept per run at most (the first ones); more are
/// counted.
const LINES_KEPT: usize = 1000;
/// Bytes kept of one line or failure reason: a peer's error message may
/// take a whole 1 MiB frame header, and a run keeps a thousand of them.
const LINE_BYTES: usize = 4096;

/// `text`, cut to at most [`LINE_BYTES`] (on a character boundary) with
/// a note of how much was cut.
fn kept(mut text: String) -> String {
    if text.len() > LINE_BYTES {
        let end = (0..=LINE_BYTES).rev().find(|&i| text.is_char_boundary(i)).unwrap_or(0);
        let cut = text.len() - end;
        text.truncate(end);
        text.push_str(&format!("… ({cut} more bytes)"));
    }
    text
}

thread_local! {
    static OBSERVED: RefCell<Option<Arc<Observed>>> = const { RefCell::new(None) };
}

/// Routes what the current thread logs to `observed` (until the thread
/// ends).
pub(super) fn attach(observed: &Arc<Observed>) {
    OBSERVED.with(|o| *o.borrow_mut() = Some(observed.clone()));
}

/// What was done to one entry.
#[derive(Debug, Clone, Serialize)]
pub(super) struct FileOutcome {
    /// The path, relative to the transfer's root.
    pub path: String,
    /// `created`, `updated`, `metadata`, `deleted`, `failed` or `vanished`.
    pub outcome: &'static str,
    /// More about it (`3 of 3 chunk(s) sent`, why it failed), or empty.
    pub detail: String,
}

/// Hears of each entry a run is done with, for its list of files
/// (unchanged entries are left out).
pub(super) struct FilesWatch(pub Arc<Observed>);

impl Watch for FilesWatch {
    fn entry(&self, event: &EntryEvent) {
        // Directories and symlinks carry no chunks.
        let file = event.kind == crate::codec::Kind::File;
        let chunks =
            |sent: &u64, of: &u64| if file { format!("{sent} of {of} chunk(s) sent") } else { String::new() };
        let (outcome, detail) = match &event.outcome {
            Outcome::Created { chunks_sent, chunks: of } => ("created", chunks(chunks_sent, of)),
            Outcome::Updated { chunks_sent, chunks: of } => ("updated", chunks(chunks_sent, of)),
            Outcome::Metadata => ("metadata", String::new()),
            Outcome::Deleted => ("deleted", String::new()),
            Outcome::Failed { why } => ("failed", kept(why.clone())),
            Outcome::Vanished => ("vanished", String::new()),
            Outcome::Unchanged => return,
        };
        let path = String::from_utf8_lossy(event.path.as_bytes()).into_owned();
        let mut outcomes = self.0.outcomes.lock().unwrap_or_else(|p| p.into_inner());
        if outcomes.files.len() == FILES_KEPT {
            outcomes.files.pop_front();
        }
        outcomes.files.push_back(FileOutcome { path, outcome, detail });
    }
}

/// What the run reported so far, besides its counters.
#[derive(Default)]
pub(super) struct Outcomes {
    pub files: VecDeque<FileOutcome>,
    pub errors: Vec<String>,
    pub warnings: Vec<String>,
    /// Lines left out beyond [`LINES_KEPT`].
    pub omitted: u64,
}

/// One run as it is observed.
#[derive(Default)]
pub(super) struct Observed {
    pub live: Live,
    outcomes: Mutex<Outcomes>,
}

impl Observed {
    /// Runs `read` on what was observed so far.
    pub(super) fn outcomes<T>(&self, read: impl FnOnce(&Outcomes) -> T) -> T {
        read(&self.outcomes.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Notes a line the run logged at `level`.
    pub(super) fn note(&self, level: Level, line: String) {
        let mut outcomes = self.outcomes.lock().unwrap_or_else(|p| p.into_inner());
        let lines = match level {
            Level::ERROR => &mut outcomes.errors,
            Level::WARN => &mut outcomes.warnings,
            _ => return,
        };
        if lines.len() < LINES_KEPT {
            lines.push(kept(line));
        } else {
            outcomes.omitted += 1;
        }
    }
}

/// How far a run is, from its counters.
#[derive(Debug, Serialize)]
pub(super) struct Progress {
    /// `queued`, `connecting`, then the engine's phase (`listing`,
    /// `comparing`, `sending`, `deleting`, `finishing`, `done`), then
    /// `closing` and `ended`.
    phase: &'static str,
    /// Bytes of files done (sent, or found in place) of those listed.
    bytes_done: u64,
    bytes_total: u64,
    /// Files done (sent, up to date, failed or vanished) of those listed.
    files_done: u64,
    files_total: u64,
    /// Payload bytes sent per second, over the whole run so far.
    rate_bytes_per_s: u64,
    /// Seconds left at that rate, when there is one.
    eta_s: Option<u64>,
    elapsed_s: f64,
    /// False while the listing may still add files (totals only grow).
    totals_final: bool,
}

impl Progress {
    /// The progress `counters` show after `elapsed`, in `phase` (`None`:
    /// the engine's own phase).
    pub(super) fn of(
        counters: &Counters,
        phase: Option<&'static str>,
        elapsed: Duration,
        ended: bool,
    ) -> Progress {
        let now = counters.snapshot();
        let seconds = elapsed.as_secs_f64();
        let rate = if seconds > 0.0 { (now.bytes_sent as f64 / seconds) as u64 } else { 0 };
        let left = now.bytes_total.saturating_sub(now.bytes_done);
        let eta_s = (rate > 0 && !ended).then(|| left.div_ceil(rate));
        Progress {
            phase: phase.unwrap_or_else(|| now.phase.name()),
            bytes_done: now.bytes_done,
            bytes_total: now.bytes_total,
            files_done: now.files_done,
            files_total: now.files_total,
            rate_bytes_per_s: rate,
            eta_s,
            elapsed_s: seconds,
            totals_final: ended || now.totals_final,
        }
    }
}

/// The layer of the process's log that hands each warning and error logged
/// on a run's threads to that run.
pub struct RunLogs;

impl<S: Subscriber> Layer<S> for RunLogs {
    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(LevelFilter::WARN)
    }

    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let level = *event.metadata().level();
        if level > Level::WARN {
            return;
        }
        OBSERVED.with(|o| {
            if let Some(observed) = o.borrow().as_ref() {
                let mut message = Message(String::new());
                event.record(&mut message);
                observed.note(level, message.0);
            }
        });
    }
}

/// The `message` of an event.
struct Message(String);

impl Visit for Message {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_keep_the_most_recent_and_lines_the_first() {
        let observed = Arc::new(Observed::default());
        let watch = FilesWatch(observed.clone());
        let event = |path: String, outcome| EntryEvent {
            path: crate::codec::RelPath::new(path.as_str()).unwrap(),
            kind: crate::codec::Kind::File,
            outcome,
            size: 1,
            changed: Default::default(),
        };
        watch.entry(&event("same".into(), Outcome::Unchanged));
        for i in 0..FILES_KEPT + 5 {
            watch.entry(&event(format!("f{i}"), Outcome::Created { chunks_sent: 1, chunks: 1 }));
        }
        watch.entry(&event("<img src=x>".into(), Outcome::Failed { why: "gone".into() }));
        // A peer's message can fill a frame header: its line is cut.
        let long = format!("é{}", "x".repeat(1 << 20));
        watch.entry(&event("long".into(), Outcome::Failed { why: long.clone() }));
        observed.note(Level::WARN, long);
        for i in 0..LINES_KEPT + 2 {
            observed.note(Level::ERROR, format!("e{i}"));
        }
        observed.outcomes(|o| {
            assert_eq!(o.files.len(), FILES_KEPT);
            assert_eq!(o.files[0].path, "f7");
            let cut =
                format!("é{}… ({} more bytes)", "x".repeat(LINE_BYTES - 2), (1 << 20) - (LINE_BYTES - 2));
            assert_eq!(o.files[FILES_KEPT - 1].detail, cut);
            assert_eq!(o.warnings, [cut]);
            let img = &o.files[FILES_KEPT - 2];
            assert_eq!(
                (img.path.as_str(), img.outcome, img.detail.as_str()),
                ("<img src=x>", "failed", "gone")
            );
            assert!(o.files.iter().all(|f| f.path != "same"));
            assert_eq!((o.errors.len(), o.errors[0].as_str(), o.omitted), (LINES_KEPT, "e0", 2));
        });
    }
}
