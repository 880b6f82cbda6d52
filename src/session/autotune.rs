//! `-n auto`: how many connections a session keeps, tuned while it runs.
//!
//! [`Tuner`] is the rule, without I/O or clocks: it is told, sample by
//! sample, how many bytes crossed the wire and in how long, and answers
//! how many connections to keep. It starts with [`START`] and measures
//! each count over a warm-up and a window scaled to the link ([`Pace`]:
//! at least half a second and a second, longer on a link whose session
//! took long to open). The warm-up is ignored (new connections handshake
//! and ramp up; the first one is twice as long), the window is judged as
//! a whole (bytes over time, so one wobbly sample weighs no more than its
//! share). When the connections doubled and the window's goodput rose by
//! more than a tenth over the count before, they double again, up to
//! what the server takes; when not, the count settles.
//!
//! A settled count is still watched, and doubles again when
//! - its goodput, averaged over all its samples, beats the count before
//!   by a tenth after all (a lossy cubic link's goodput wobbles by more
//!   than a tenth from window to window: one unlucky window must not end
//!   the climb), or
//! - its last two windows fell to half of what the count before seemed
//!   worth:
//!   that count was measured in a burst that passed (on a lossy cubic
//!   link the session's first connections find the link empty and
//!   overshoot in slow start for a second or two; the counts after them,
//!   measured as the burst ebbs, look no better, and each connection is
//!   then held to ~1 MB/s by the losses).
//!
//! It never takes connections away: it stops about one doubling past the
//! count where goodput stopped rising, and a connection too many costs
//! little. Samples with almost no traffic (a listing, small files being
//! compared) say nothing about the link and are not counted. [`tune`]
//! drives it over the pool's byte counter.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::redial::Target;

/// Connections an automatic session starts with: four. On a long link
/// every doubling costs a warm-up and a window below the link's speed
/// (from two, about 2 s at two thirds of it on the emulated 50 ms link);
/// where the CPU is the limit (loopback) four cost little more than two,
/// and a whole transfer may be over before a first window is measured.
pub const START: usize = 4;
/// How often [`tune`] reads the byte counter.
pub const SAMPLE: Duration = Duration::from_millis(250);
/// Goodput must rise by this factor for the connections to double again.
const GAIN: f64 = 1.10;
/// A settled count whose last [`FALL_WINDOWS`] windows fell by this factor
/// below what the count before seemed worth doubles again: that count was
/// measured in a burst that passed.
const FALL: f64 = 2.0;
/// A fall counts when it lasts this many windows (a dip of one window is
/// a busy CPU more often than a burst that passed).
const FALL_WINDOWS: f64 = 2.0;
/// The first count's warm-up is this many times as long: every connection
/// is new, and the session may still be listing.
const FIRST_WARM_UP: f64 = 2.0;
/// Goodput below this says nothing about the link (bytes per second).
const SIGNAL: f64 = 1_048_576.0;

/// How long each count is measured, scaled to the link.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pace {
    /// Signal ignored after the count changed.
    pub warm_up: Duration,
    /// Signal measured after the warm-up before the count is judged.
    pub window: Duration,
}

impl Pace {
    /// The pace for a link on which opening the session (a TCP handshake
    /// and the `Hello`/`Welcome` exchange: about four round trips on the
    /// emulated 50 ms link) took `open`: a warm-up of 2.5 and a window of
    /// 5 such times (some 10 and 20 round trips), and no less than half a
    /// second and a second, no more than 4 and 8 seconds.
    pub fn for_open(open: Duration) -> Pace {
        Pace {
            warm_up: open.mul_f64(2.5).clamp(Duration::from_millis(500), Duration::from_secs(4)),
            window: (open * 5).clamp(Duration::from_secs(1), Duration::from_secs(8)),
        }
    }
}

/// The rule of `-n auto`.
#[derive(Debug, Clone)]
pub struct Tuner {
    connections: usize,
    most: usize,
    pace: Pace,
    /// Signal still to ignore at this count, in seconds.
    warming: f64,
    /// Bytes and seconds of signal measured at this count.
    bytes: f64,
    seconds: f64,
    /// The last [`FALL_WINDOWS`] windows of those samples (bytes, seconds),
    /// oldest first.
    recent: VecDeque<(f64, f64)>,
    /// Goodput of the count before (none at the start).
    before: Option<f64>,
    /// Measured a whole window without a rise: settled, and watched.
    settled: bool,
}

impl Tuner {
    /// A tuner that may go up to `most` connections, at `pace`.
    pub fn new(most: usize, pace: Pace) -> Tuner {
        let most = most.max(1);
        Tuner {
            connections: START.min(most),
            most,
            pace,
            warming: pace.warm_up.as_secs_f64() * FIRST_WARM_UP,
            bytes: 0.0,
            seconds: 0.0,
            recent: VecDeque::new(),
            before: None,
            settled: false,
        }
    }

    /// The connections to keep now.
    pub fn connections(&self) -> usize {
        self.connections
    }

    /// Has it found a count where goodput stopped rising (or reached the
    /// most it may keep)? A settled count may still double (see the
    /// module's doc).
    pub fn settled(&self) -> bool {
        self.settled
    }

    /// Is there nothing left to tune (the most it may keep, measured)?
    pub fn finished(&self) -> bool {
        self.settled && self.connections >= self.most
    }

    /// `bytes` crossed the wire in the last `elapsed`; returns the
    /// connections to keep.
    pub fn observe(&mut self, bytes: u64, elapsed: Duration) -> usize {
        let (bytes, seconds) = (bytes as f64, elapsed.as_secs_f64());
        if self.finished() || seconds <= 0.0 || bytes < SIGNAL * seconds {
            return self.connections;
        }
        if self.warming > 0.0 {
            self.warming -= seconds;
            return self.connections;
        }
        let window = self.pace.window.as_secs_f64();
        self.bytes += bytes;
        self.seconds += seconds;
        self.recent.push_back((bytes, seconds));
        let tail = FALL_WINDOWS * window;
        while self.recent.len() > 1 && self.recent.iter().skip(1).map(|r| r.1).sum::<f64>() >= tail {
            self.recent.pop_front();
        }
        if self.seconds < window {
            return self.connections;
        }
        // Over all of this count's samples, and over its last windows.
        let overall = self.bytes / self.seconds;
        let (b, s) = self.recent.iter().fold((0.0, 0.0), |(b, s), r| (b + r.0, s + r.1));
        let lately = b / s;
        match self.before {
            None => self.double(overall),
            Some(before) if overall >= before * GAIN => self.double(overall),
            Some(before) if self.settled && self.seconds >= tail && lately * FALL <= before => {
                self.double(lately)
            }
            Some(_) => self.settled = true,
        }
        self.connections
    }

    /// Doubles the connections, `goodput` being what they are worth now
    /// (or settles, at the most it may keep).
    fn double(&mut self, goodput: f64) {
        if self.connections >= self.most {
            self.settled = true;
            return;
        }
        self.before = Some(goodput);
        self.connections = (self.connections * 2).min(self.most);
        self.warming = self.pace.warm_up.as_secs_f64();
        (self.bytes, self.seconds, self.settled) = (0.0, 0.0, false);
        self.recent.clear();
    }
}

/// Runs `tuner` over the byte counter `wire`, raising `target`, until it
/// has nothing left to tune or `stop`.
pub(super) async fn tune(
    mut tuner: Tuner,
    wire: Arc<AtomicU64>,
    target: Arc<Target>,
    stop: CancellationToken,
) {
    let (mut last, mut since) = (wire.load(Ordering::Relaxed), Instant::now());
    let mut said = None;
    while !tuner.finished() {
        tokio::select! {
            () = tokio::time::sleep(SAMPLE) => {}
            () = stop.cancelled() => return,
        }
        let (now, at) = (wire.load(Ordering::Relaxed), Instant::now());
        let bytes = now.saturating_sub(last);
        let elapsed = at - since;
        (last, since) = (now, at);
        let before = tuner.connections();
        let wanted = tuner.observe(bytes, elapsed);
        if wanted != before {
            tracing::debug!(
                "-n auto: {:.1} MB/s with {before} connections; going to {wanted}",
                bytes as f64 / elapsed.as_secs_f64() / 1e6
            );
            target.raise(wanted);
        }
        if tuner.settled() && said != Some(wanted) {
            said = Some(wanted);
            tracing::info!("-n auto: settled on {wanted} connections");
        }
    }
}

#[cfg(test)]
#[path = "autotune_tests.rs"]
mod tests;
