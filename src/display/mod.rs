//! What `send` and `recv` show while they run: the live progress display
//! on a terminal ([`bar`]), newline-delimited JSON events for programs
//! ([`events`]), the itemized lines of `--dry-run`, and the log writer that
//! keeps log lines clear of the progress display.
//!
//! All of it watches the engine through `pareco::transfer::observe`: a
//! [`Watch`] for entries done, snapshots of the counters for progress.

pub(crate) mod bar;
pub(crate) mod events;

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pareco::codec::Direction;
use pareco::job::Live;
use pareco::transfer::observe::EntryEvent;
use pareco::transfer::{Counters, Report, Watch};
use tokio_util::sync::CancellationToken;

use crate::cli::TransferArgs;
use events::Rate;

/// How a run is shown.
pub(crate) struct Display {
    /// The run shown: the counters of its current session (a run that
    /// carries on in a new session gets new counters).
    current: Arc<Live>,
    bar: Option<bar::Bar>,
    events: bool,
    watch: Option<Arc<dyn Watch>>,
    stop: CancellationToken,
    started: Instant,
    /// The updates are started.
    following: bool,
}

impl Display {
    /// The display `opts` ask for, for a transfer in `direction`.
    pub(crate) fn new(opts: &TransferArgs, direction: Direction) -> Display {
        let show = &opts.show;
        let quiet_by_default =
            opts.verbosity.quiet || opts.json || show.json_events || !std::io::stderr().is_terminal();
        let drawn = show.progress || (!show.no_progress && !quiet_by_default);
        // Data goes from the local side with `send`, to it with `recv`.
        let sent = if direction == Direction::Upload { '<' } else { '>' };
        let watch: Option<Arc<dyn Watch>> = if show.json_events {
            Some(Arc::new(events::EntryEvents { sent }))
        } else if show.dry_run {
            Some(Arc::new(Itemized { sent, stdout: !opts.json }))
        } else {
            None
        };
        events::enable(show.json_events);
        Display {
            current: Arc::new(Live::default()),
            bar: drawn.then(bar::Bar::start),
            events: show.json_events,
            watch,
            stop: CancellationToken::new(),
            started: Instant::now(),
            following: false,
        }
    }

    /// What watches the entries of a run shown this way, if anything.
    pub(crate) fn watch(&self) -> Option<Arc<dyn Watch>> {
        self.watch.clone()
    }

    /// Shows the run `live` tells of from now on, and starts the updates
    /// the first time.
    pub(crate) fn follow(&mut self, live: Arc<Live>) {
        self.current = live;
        if std::mem::replace(&mut self.following, true) {
            return;
        }
        if let Some(bar) = &self.bar {
            let (bar, current, stop) = (bar.clone(), self.current.clone(), self.stop.clone());
            tokio::spawn(every(Duration::from_millis(100), stop, move || bar.update(&snapshot(&current))));
        }
        if self.events {
            let (current, stop, started) = (self.current.clone(), self.stop.clone(), self.started);
            let mut rate = Rate::since(started);
            tokio::spawn(every(Duration::from_secs(1), stop, move || {
                events::progress(&snapshot(&current), started.elapsed(), &mut rate);
            }));
        }
    }

    /// Ends the updates; the progress display leaves one summary line, and
    /// the JSON events end with a last progress and the report.
    pub(crate) fn finish(&mut self, report: &Report, counters: &Counters) {
        self.stop.cancel();
        if let Some(bar) = self.bar.take() {
            bar.finish(report);
        }
        if self.events {
            // The last one with the rate of the whole run.
            let mut rate = Rate::since(self.started);
            events::progress(&counters.snapshot(), self.started.elapsed(), &mut rate);
            events::report(report);
        }
    }
}

impl Drop for Display {
    /// A run that ends without a report (it failed, or was interrupted)
    /// leaves the display as it was last drawn.
    fn drop(&mut self) {
        self.stop.cancel();
        if let Some(bar) = self.bar.take() {
            bar.abandon();
        }
    }
}

fn snapshot(current: &Live) -> pareco::transfer::Snapshot {
    current.counters().snapshot()
}

/// Runs `tick` every `period` until `stop`.
async fn every(period: Duration, stop: CancellationToken, mut tick: impl FnMut() + Send + 'static) {
    let mut interval = tokio::time::interval(period);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = interval.tick() => tick(),
            () = stop.cancelled() => return,
        }
    }
}

/// `--dry-run`'s lines: each entry that would change, itemized.
struct Itemized {
    sent: char,
    /// On stdout, else (with `--json`, which owns stdout) on stderr.
    stdout: bool,
}

impl Watch for Itemized {
    fn entry(&self, event: &EntryEvent) {
        if let Some(line) = event.itemized(self.sent) {
            print_line(self.stdout, &line);
        }
    }
}

/// Prints `line` on stdout or stderr, above the progress display if one
/// is drawn.
pub(crate) fn print_line(stdout: bool, line: &str) {
    bar::suspended(|| {
        let _ = if stdout {
            writeln!(std::io::stdout().lock(), "{line}")
        } else {
            writeln!(std::io::stderr().lock(), "{line}")
        };
    });
}

/// The writer of log lines: stderr, above the progress display if one is
/// drawn.
#[derive(Clone, Copy)]
pub(crate) struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        bar::suspended(|| std::io::stderr().lock().write_all(buf))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = LogWriter;

    fn make_writer(&'a self) -> LogWriter {
        *self
    }
}
