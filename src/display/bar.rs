//! The live progress display on stderr (indicatif): bytes done and total,
//! rate, ETA, files done and total, and the phase; "≥" before totals that
//! still grow. Redrawn at most 10 times a second; leaves one summary line.
//! Whatever else is written to the terminal meanwhile goes through
//! [`suspended`], so it prints above the display and never through it.

use std::io::{IsTerminal, Write};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle, TermLike};
use pareco::transfer::stats::human_bytes;
use pareco::transfer::{Report, Snapshot};

/// Redraws a second at most.
const REDRAWS_PER_SECOND: u8 = 10;

/// The display being drawn, if any: log lines and itemized lines print
/// above it.
static ACTIVE: Mutex<Option<ProgressBar>> = Mutex::new(None);

/// Runs `print` with the display, if one is drawn, cleared away, then
/// draws it again below what `print` wrote.
pub(crate) fn suspended<R>(print: impl FnOnce() -> R) -> R {
    let bar = ACTIVE.lock().unwrap_or_else(PoisonError::into_inner).clone();
    match bar {
        Some(bar) => bar.suspend(print),
        None => print(),
    }
}

/// The progress display.
#[derive(Clone)]
pub(crate) struct Bar(ProgressBar);

impl Bar {
    /// Starts drawing on stderr (as plain text with cursor moves when it is
    /// not a terminal: `--progress` forces the display).
    pub(crate) fn start() -> Bar {
        let target = if std::io::stderr().is_terminal() {
            ProgressDrawTarget::stderr_with_hz(REDRAWS_PER_SECOND)
        } else {
            ProgressDrawTarget::term_like_with_hz(Box::new(PlainStderr), REDRAWS_PER_SECOND)
        };
        let bar = ProgressBar::with_draw_target(Some(0), target);
        bar.set_style(
            ProgressStyle::with_template("[{bar:20}] {wide_msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar.set_message("listing");
        *ACTIVE.lock().unwrap_or_else(PoisonError::into_inner) = Some(bar.clone());
        Bar(bar)
    }

    /// Shows `now`.
    pub(crate) fn update(&self, now: &Snapshot) {
        let bar = &self.0;
        // Empty, not full, while nothing is counted yet.
        bar.set_length(now.bytes_total.max(now.bytes_done).max(1));
        bar.set_position(now.bytes_done);
        bar.set_message(line(now, bar.per_sec(), bar.eta()));
    }

    /// Leaves the display as last drawn.
    pub(crate) fn abandon(self) {
        *ACTIVE.lock().unwrap_or_else(PoisonError::into_inner) = None;
        self.0.abandon();
    }

    /// Replaces the display with one summary line of `report`.
    pub(crate) fn finish(self, report: &Report) {
        *ACTIVE.lock().unwrap_or_else(PoisonError::into_inner) = None;
        self.0.set_style(
            ProgressStyle::with_template("{msg}").unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        self.0.finish_with_message(summary(report));
        // indicatif leaves the cursor at the end of the line.
        eprintln!();
    }
}

/// The text beside the bar: `sending 1.2 GiB/≥3.4 GiB, 45.0 MiB/s, ETA
/// ≥52s, files 120/≥500`.
fn line(now: &Snapshot, per_sec: f64, eta: Duration) -> String {
    let at_least = if now.totals_final { "" } else { "≥" };
    let eta = if per_sec > 0.0 && now.bytes_total > now.bytes_done {
        format!("ETA {at_least}{}", humantime::format_duration(Duration::from_secs(eta.as_secs())))
    } else {
        "ETA -".to_owned()
    };
    format!(
        "{} {}/{at_least}{}, {}/s, {eta}, files {}/{at_least}{}",
        now.phase.name(),
        human_bytes(now.bytes_done),
        human_bytes(now.bytes_total),
        human_bytes(per_sec as u64),
        now.files_done,
        now.files_total,
    )
}

/// The line the display leaves: `done: 500 files (120 transferred, 380
/// skipped, 0 failed, 2 deleted), 1.2 GiB sent of 3.4 GiB in 25.1s
/// (48.9 MiB/s)`.
fn summary(report: &Report) -> String {
    format!(
        "done: {} files ({} transferred, {} skipped, {} failed, {} deleted), {} sent of {} in {:.1}s ({}/s)",
        report.files_total,
        report.files_transferred,
        report.files_skipped,
        report.files_failed,
        report.files_deleted,
        human_bytes(report.bytes_transferred),
        human_bytes(report.bytes_total),
        report.duration_s,
        human_bytes(report.throughput_bytes_per_s),
    )
}

/// Stderr that is not a terminal, drawn on with ANSI cursor moves anyway
/// (indicatif draws nothing on a plain stderr).
#[derive(Debug)]
struct PlainStderr;

impl PlainStderr {
    fn put(&self, text: &str) -> std::io::Result<()> {
        std::io::stderr().lock().write_all(text.as_bytes())
    }

    /// Moves the cursor `n` places toward ANSI's `direction` (`A` up, `B`
    /// down, `C` right, `D` left); not at all for 0.
    fn move_cursor(&self, n: usize, direction: char) -> std::io::Result<()> {
        if n == 0 {
            return Ok(());
        }
        self.put(&format!("\x1b[{n}{direction}"))
    }
}

impl TermLike for PlainStderr {
    fn width(&self) -> u16 {
        100
    }

    fn move_cursor_up(&self, n: usize) -> std::io::Result<()> {
        self.move_cursor(n, 'A')
    }

    fn move_cursor_down(&self, n: usize) -> std::io::Result<()> {
        self.move_cursor(n, 'B')
    }

    fn move_cursor_right(&self, n: usize) -> std::io::Result<()> {
        self.move_cursor(n, 'C')
    }

    fn move_cursor_left(&self, n: usize) -> std::io::Result<()> {
        self.move_cursor(n, 'D')
    }

    fn write_line(&self, s: &str) -> std::io::Result<()> {
        self.put(&format!("{s}\n"))
    }

    fn write_str(&self, s: &str) -> std::io::Result<()> {
        self.put(s)
    }

    fn clear_line(&self) -> std::io::Result<()> {
        self.put("\r\x1b[2K")
    }

    fn flush(&self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}
