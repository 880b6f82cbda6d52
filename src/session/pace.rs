//! `--bwlimit`: one rate for all the connections of a session, kept by the
//! side that sends (the client for what it sends, the server for its
//! answers), in slices of a frame, so that no chunk goes out as one burst.
//!
//! A [`Pacer`] is shared by every connection that sends for one session
//! (on the client, by every session of one run: a replaced connection or
//! a new session after an outage starts from where the last left off, not
//! from a full budget). It hands out the right to send in slices of a
//! twentieth of a second's worth (at most [`MAX_SLICE`]), each at the time
//! the bytes granted before it have gone at the rate: the scheme of the
//! generic cell rate algorithm, whose single timestamp is the time at
//! which what was granted so far will have gone. Slices are booked in the
//! order they are asked for, so N busy connections take turns and each
//! moves `rate / N`. Time the pacer stood idle is not saved up beyond one
//! slice, and a slice whose time passed by more than a twentieth of a
//! second (or its own time, if longer) before its connection woke up (the process was not scheduled) lapses
//! and is asked for again, so slices booked for all the connections do
//! not go out at once after a stall: the most that goes at once is a few
//! slices (two tenths of a second's worth), and any window of T seconds
//! carries at most `rate × T` plus that.
//!
//! Each sending end holds a [`Gate`]: it books a slice when the last one
//! is used up and sleeps (on tokio's clock) until the slice's time.
//! Waiting happens in the writer of one connection only, between two
//! writes of a frame.
//!
//! (A hand-written pacer rather than the `governor` crate: it has to run
//! on tokio's clock so that its tests can pause time, lower its rate once
//! the server's limit is known, and grant slices that never exceed the
//! burst, which this does in some thirty lines.)

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};
use std::time::Duration;

use serde::Serialize;
use tokio::time::{Instant, Sleep};

/// The largest slice granted at once, whatever the rate.
pub const MAX_SLICE: u64 = 256 << 10;
/// The smallest slice (unless the rate is lower: then a second's worth).
const MIN_SLICE: u64 = 1024;
/// Slices per second of the rate.
const SLICES_PER_SECOND: u64 = 20;
/// A booked slice lapses when its connection wakes later than this after
/// its time (or a slice's time, if longer): beyond a timer's and a busy
/// scheduler's lateness, which must not cost the rate.
const LAPSE: Duration = Duration::from_millis(50);

/// The rate of a session's sending, shared by its connections.
#[derive(Debug)]
pub struct Pacer {
    /// The rate asked for on this side; 0: none.
    own: u64,
    /// The rate in force (the lower of this side's and the other side's);
    /// 0: none.
    rate: AtomicU64,
    /// When all that was granted so far will have gone at the rate.
    paid_until: Mutex<Option<Instant>>,
    /// Slices that had to wait for their time.
    waits: AtomicU64,
}

/// What a pacer did, for the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Pacing {
    /// The rate in force, bytes per second.
    pub bytes_per_s: u64,
    /// Slices of a write that waited for their time.
    pub waits: u64,
}

/// A bandwidth limit as people write it: bytes per second, with the
/// size suffixes of the chunk size (`512k`, `20M`, `1G`), at least 1 KiB.
/// The one reading of `--bwlimit` and of the web runner's `bwlimit`.
pub fn parse_rate(text: &str) -> Result<u64, String> {
    let rate = parse_size::Config::new()
        .with_binary()
        .parse_size(text)
        .map_err(|e| format!("{e} (use bytes per second, e.g. 512k, 20M, 1G)"))?;
    if rate < 1024 {
        return Err(format!("{rate} bytes per second is below the least, 1k"));
    }
    Ok(rate)
}

impl Pacer {
    /// A pacer for `rate` bytes per second, or none (`None`, or 0): then
    /// it lets everything through until [`agree`](Pacer::agree)d on a
    /// rate.
    pub fn new(rate: Option<u64>) -> Arc<Pacer> {
        let own = rate.unwrap_or(0);
        Arc::new(Pacer { own, rate: AtomicU64::new(own), paid_until: Mutex::new(None), waits: 0.into() })
    }

    /// Puts in force the lower of this side's rate and `other` (the other
    /// side's; `None` or 0: none).
    pub fn agree(&self, other: Option<u64>) {
        let rate = match (self.own, other.unwrap_or(0)) {
            (0, other) => other,
            (own, 0) => own,
            (own, other) => own.min(other),
        };
        self.rate.store(rate, Ordering::Relaxed);
    }

    /// The rate in force, bytes per second, if any.
    pub fn rate(&self) -> Option<u64> {
        Some(self.rate.load(Ordering::Relaxed)).filter(|&r| r > 0)
    }

    /// The rate in force and how often it made a write wait, if a rate is.
    pub fn pacing(&self) -> Option<Pacing> {
        self.rate().map(|bytes_per_s| Pacing { bytes_per_s, waits: self.waits.load(Ordering::Relaxed) })
    }

    /// The most one grant holds at `rate`.
    fn slice(rate: u64) -> u64 {
        (rate / SLICES_PER_SECOND).max(MIN_SLICE.min(rate)).min(MAX_SLICE)
    }

    /// Books up to `want` bytes (at most a slice) at `rate`; returns how
    /// many, from when they may be sent, and until when (after that the
    /// booking lapses).
    fn book(&self, want: usize, rate: u64, now: Instant) -> (usize, Instant, Instant) {
        let slice = Pacer::slice(rate);
        let bytes = (want as u64).clamp(1, slice);
        let at_rate =
            |bytes: u64| Duration::from_nanos((bytes as u128 * 1_000_000_000 / rate as u128) as u64);
        let mut paid_until = super::pool::lock(&self.paid_until);
        // Idle time saves up one slice at most.
        let earliest = now.checked_sub(at_rate(slice)).unwrap_or(now);
        let from = paid_until.map_or(now, |t| t.max(earliest));
        *paid_until = Some(from + at_rate(bytes));
        (bytes as usize, from, from + at_rate(slice).max(LAPSE))
    }
}

/// One sending end's turn at its pacer: the bytes it may still send, and
/// the wait for the next slice.
#[derive(Debug)]
pub struct Gate {
    pacer: Arc<Pacer>,
    /// Bytes granted and not yet sent.
    granted: usize,
    /// The slice booked: its size, when it lapses, and the sleep until
    /// its time.
    waiting: Option<(usize, Instant, Pin<Box<Sleep>>)>,
}

impl Gate {
    /// A turn at `pacer`.
    pub fn new(pacer: Arc<Pacer>) -> Gate {
        Gate { pacer, granted: 0, waiting: None }
    }

    /// How many of `want` bytes may be sent now (at least 1 when `want`
    /// is); pending while the next slice's time has not come.
    pub fn poll_allow(&mut self, cx: &mut Context<'_>, want: usize) -> Poll<usize> {
        loop {
            if let Some((bytes, lapses, sleep)) = &mut self.waiting {
                ready!(sleep.as_mut().poll(cx));
                if Instant::now() <= *lapses {
                    self.granted += *bytes;
                }
                self.waiting = None;
            }
            let Some(rate) = self.pacer.rate() else { return Poll::Ready(want) };
            if self.granted > 0 || want == 0 {
                return Poll::Ready(want.min(self.granted));
            }
            let now = Instant::now();
            let (bytes, from, lapses) = self.pacer.book(want, rate, now);
            if from <= now {
                self.granted = bytes;
            } else {
                self.pacer.waits.fetch_add(1, Ordering::Relaxed);
                self.waiting = Some((bytes, lapses, Box::pin(tokio::time::sleep_until(from))));
            }
        }
    }

    /// How many of `want` bytes may be sent now, once their time comes.
    pub async fn allow(&mut self, want: usize) -> usize {
        std::future::poll_fn(|cx| self.poll_allow(cx, want)).await
    }

    /// Counts `bytes` as sent.
    pub fn sent(&mut self, bytes: usize) {
        self.granted = self.granted.saturating_sub(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sends `total` bytes through `gate` in writes of up to `write`
    /// bytes; returns (time since start, bytes sent) after each write.
    async fn send(gate: &mut Gate, total: usize, write: usize) -> Vec<(Duration, usize)> {
        let start = Instant::now();
        let (mut sent, mut log) = (0, Vec::new());
        while sent < total {
            let n = gate.allow(write.min(total - sent)).await;
            gate.sent(n);
            sent += n;
            log.push((start.elapsed(), sent));
        }
        log
    }

    /// Most bytes sent in any window of `window` (sliding over the log).
    fn most_in_window(log: &[(Duration, usize)], window: Duration) -> usize {
        let mut most = 0;
        for (i, &(t0, _)) in log.iter().enumerate() {
            let before = if i == 0 { 0 } else { log[i - 1].1 };
            let end = log.iter().take_while(|(t, _)| *t < t0 + window).last().map_or(before, |e| e.1);
            most = most.max(end - before);
        }
        most
    }

    #[tokio::test(start_paused = true)]
    async fn holds_the_rate_with_no_burst() {
        let rate = 2 << 20;
        let pacer = Pacer::new(Some(rate));
        let mut gate = Gate::new(pacer.clone());
        let log = send(&mut gate, 20 << 20, 1 << 20).await;
        let took = log.last().unwrap().0.as_secs_f64();
        // 20 MiB at 2 MiB/s: 10 s, less the first slice that goes at once.
        assert!((9.9..=10.0).contains(&took), "{took}");
        let slice = Pacer::slice(rate) as usize;
        assert!(most_in_window(&log, Duration::from_secs(1)) <= rate as usize + slice);
        assert!(most_in_window(&log, Duration::from_millis(1)) <= slice);
        assert!(pacer.pacing().unwrap().waits > 0);
    }

    #[tokio::test(start_paused = true)]
    async fn connections_share_one_rate() {
        let rate = 1 << 20;
        let pacer = Pacer::new(Some(rate));
        let start = Instant::now();
        let sends = (0..8).map(|_| {
            let pacer = pacer.clone();
            tokio::spawn(async move { send(&mut Gate::new(pacer), 1 << 20, 64 << 10).await })
        });
        let logs: Vec<_> = futures::future::join_all(sends).await.into_iter().map(Result::unwrap).collect();
        // 8 MiB at 1 MiB/s, each connection done at about the same time.
        let took = start.elapsed().as_secs_f64();
        assert!((7.9..=8.0).contains(&took), "{took}");
        for log in logs {
            assert!(log.last().unwrap().0.as_secs_f64() > 7.5);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn idle_time_is_not_saved_up() {
        let rate = 1 << 20;
        let pacer = Pacer::new(Some(rate));
        send(&mut Gate::new(pacer.clone()), 1 << 20, 1 << 20).await;
        // A minute idle, then a new connection (or a session after an
        // outage) with the same pacer: two slices at once, then the rate.
        tokio::time::sleep(Duration::from_secs(60)).await;
        let log = send(&mut Gate::new(pacer), 4 << 20, 4 << 20).await;
        let slice = Pacer::slice(rate) as usize;
        let at_once = log.iter().take_while(|(t, _)| t.is_zero()).last().unwrap().1;
        assert_eq!(at_once, 2 * slice);
        assert!(most_in_window(&log, Duration::from_secs(1)) <= rate as usize + 2 * slice);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stall_piles_up_no_slices() {
        let rate = 1 << 20;
        let pacer = Pacer::new(Some(rate));
        let slice = Pacer::slice(rate) as usize;
        let mut gates: Vec<Gate> = (0..8).map(|_| Gate::new(pacer.clone())).collect();
        let waker = futures::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        // Eight connections book a slice each (one goes at once)...
        let mut booked = 0;
        for gate in &mut gates {
            match gate.poll_allow(&mut cx, slice) {
                Poll::Ready(n) => gate.sent(n),
                Poll::Pending => booked += 1,
            }
        }
        assert_eq!(booked, 7);
        // ...then the process is not scheduled for a second, and all of
        // them wake at once: the slices booked in that second lapsed.
        tokio::time::advance(Duration::from_secs(1)).await;
        let mut at_once = 0;
        for gate in &mut gates {
            if let Poll::Ready(n) = gate.poll_allow(&mut cx, slice) {
                gate.sent(n);
                at_once += n;
            }
        }
        assert!(at_once <= 2 * slice, "{at_once} bytes at once, {} slices", at_once / slice);
        // And they still get their turns at the rate afterwards.
        let sends = gates
            .into_iter()
            .map(|mut gate| tokio::spawn(async move { send(&mut gate, slice, slice).await }));
        futures::future::join_all(sends).await;
    }

    #[tokio::test(start_paused = true)]
    async fn the_lower_rate_wins_and_none_means_unpaced() {
        let pacer = Pacer::new(None);
        assert_eq!(pacer.pacing(), None);
        let mut gate = Gate::new(pacer.clone());
        assert_eq!(gate.allow(64 << 20).await, 64 << 20);
        pacer.agree(Some(1 << 20));
        assert_eq!(pacer.rate(), Some(1 << 20));
        let paced = Pacer::new(Some(512 << 10));
        paced.agree(Some(1 << 20));
        assert_eq!(paced.rate(), Some(512 << 10));
        paced.agree(None);
        assert_eq!(paced.rate(), Some(512 << 10));
        let log = send(&mut Gate::new(paced), 1 << 20, 1 << 20).await;
        assert!(log.last().unwrap().0 >= Duration::from_millis(1900));
    }

    #[test]
    fn slices_are_a_twentieth_of_a_second_within_bounds() {
        assert_eq!(Pacer::slice(2 << 20), (2 << 20) / 20);
        assert_eq!(Pacer::slice(1 << 30), MAX_SLICE);
        assert_eq!(Pacer::slice(4096), 1024);
        assert_eq!(Pacer::slice(100), 100);
    }
}
