//! The adapter between a running job and what the API shows of it: the
//! one place that knows how a run tells its progress and its outcomes.
//!
//! - Progress: polled from the job's [`Live`] counters when asked.
//! - Errors and warnings: the lines the run logs. Each run has its own
//!   runtime whose threads are [`attach`]ed to its [`Observed`]; the
//!   [`RunLogs`] layer routes every event logged on such a thread there.
//! - Files: the engine's per-file lines (`PATH: N of M chunk(s) sent`,
//!   `PATH: metadata updated`, `deleting PATH`), the most recent
//!   [`FILES_KEPT`], and every failed file among the errors.

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
use crate::transfer::Counters;

/// Files listed per run at most (the most recent).
pub(super) const FILES_KEPT: usize = 300;
/// Errors and warnings kept per run at most (the first ones); more are
/// counted.
const LINES_KEPT: usize = 1000;

thread_local! {
    static OBSERVED: RefCell<Option<Arc<Observed>>> = const { RefCell::new(None) };
}

/// Routes what the current thread logs to `observed` (until the thread
/// ends).
pub(super) fn attach(observed: &Arc<Observed>) {
    OBSERVED.with(|o| *o.borrow_mut() = Some(observed.clone()));
}

/// What was done to one file.
#[derive(Debug, Clone, Serialize)]
pub(super) struct FileOutcome {
    /// The path, relative to the transfer's root.
    pub path: String,
    /// `transferred`, `metadata`, or `deleted`.
    pub outcome: &'static str,
    /// More about it (`3 of 3 chunk(s) sent`), or empty.
    pub detail: String,
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
            _ => {
                if let Some(file) = file_outcome(&line) {
                    if outcomes.files.len() == FILES_KEPT {
                        outcomes.files.pop_front();
                    }
                    outcomes.files.push_back(file);
                }
                return;
            }
        };
        if lines.len() < LINES_KEPT {
            lines.push(line);
        } else {
            outcomes.omitted += 1;
        }
    }
}

/// How far a run is, from its counters.
#[derive(Debug, Serialize)]
pub(super) struct Progress {
    /// `queued`, `connecting`, `transferring`, `closing` or `ended`.
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
    /// The progress `counters` show after `elapsed`, in `phase`.
    pub(super) fn of(counters: &Counters, phase: &'static str, elapsed: Duration, ended: bool) -> Progress {
        let get = Counters::get;
        let bytes_total = get(&counters.bytes_total);
        let sent = get(&counters.bytes_transferred);
        let bytes_done = (sent + get(&counters.bytes_skipped)).min(bytes_total);
        let files_done = [&counters.files_transferred, &counters.files_skipped, &counters.files_failed]
            .into_iter()
            .chain([&counters.files_vanished])
            .map(get)
            .sum();
        let seconds = elapsed.as_secs_f64();
        let rate = if seconds > 0.0 { (sent as f64 / seconds) as u64 } else { 0 };
        let eta_s = (rate > 0 && !ended).then(|| (bytes_total - bytes_done).div_ceil(rate));
        Progress {
            phase,
            bytes_done,
            bytes_total,
            files_done,
            files_total: get(&counters.files_total),
            rate_bytes_per_s: rate,
            eta_s,
            elapsed_s: seconds,
            totals_final: ended,
        }
    }
}

/// The file a per-file line of the engine names, and what was done to it.
fn file_outcome(line: &str) -> Option<FileOutcome> {
    let outcome = |path: &str, outcome, detail: &str| {
        Some(FileOutcome { path: path.to_owned(), outcome, detail: detail.to_owned() })
    };
    if let Some(path) = line.strip_prefix("deleting ") {
        return outcome(path, "deleted", "");
    }
    let (path, what) = line.rsplit_once(": ")?;
    if what == "metadata updated" {
        return outcome(path, "metadata", "");
    }
    let (sent, total) = what.strip_suffix(" chunk(s) sent")?.split_once(" of ")?;
    if sent.parse::<u64>().is_ok() && total.parse::<u64>().is_ok() {
        return outcome(path, "transferred", what);
    }
    None
}

/// The layer of the process's log that hands each event logged on a run's
/// threads to that run. (Logged at any level: the engine's per-file lines
/// are `info`.)
pub struct RunLogs;

impl<S: Subscriber> Layer<S> for RunLogs {
    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(LevelFilter::INFO)
    }

    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let level = *event.metadata().level();
        if level > Level::INFO {
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
    fn the_engines_per_file_lines_name_the_file_and_what_was_done() {
        let f = file_outcome("a: b/c: 2 of 3 chunk(s) sent").unwrap();
        assert_eq!(
            (f.path.as_str(), f.outcome, f.detail.as_str()),
            ("a: b/c", "transferred", "2 of 3 chunk(s) sent")
        );
        let f = file_outcome("<img src=x>: metadata updated").unwrap();
        assert_eq!((f.path.as_str(), f.outcome), ("<img src=x>", "metadata"));
        let f = file_outcome("deleting x/y").unwrap();
        assert_eq!((f.path.as_str(), f.outcome), ("x/y", "deleted"));
        assert!(file_outcome("x: some of 3 chunk(s) sent").is_none());
        assert!(file_outcome("x/").is_none());
    }

    #[test]
    fn files_keep_the_most_recent_and_lines_the_first() {
        let observed = Observed::default();
        for i in 0..FILES_KEPT + 5 {
            observed.note(Level::INFO, format!("f{i}: 1 of 1 chunk(s) sent"));
        }
        for i in 0..LINES_KEPT + 2 {
            observed.note(Level::ERROR, format!("e{i}"));
        }
        observed.outcomes(|o| {
            assert_eq!(o.files.len(), FILES_KEPT);
            assert_eq!(o.files[0].path, "f5");
            assert_eq!((o.errors.len(), o.errors[0].as_str(), o.omitted), (LINES_KEPT, "e0", 2));
        });
    }
}
