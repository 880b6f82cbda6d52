//! `-n auto`: how many connections a session keeps, tuned while it runs.
//!
//! [`Tuner`] is the rule, without I/O or clocks: it starts with a few
//! connections and is told the session's goodput (bytes on the wire per
//! second) once per [`INTERVAL`]. While goodput rises by more than a tenth
//! after the connections doubled, they double again, up to what the server
//! takes; two intervals without such a rise and it settles for good (it
//! never takes connections away: a lossy link's goodput wobbles, and a
//! connection too many costs little). Intervals with almost no traffic (a
//! listing, small files being compared) say nothing about the link and
//! are not counted. [`tune`] drives it over the pool's byte counter.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::redial::Target;

/// Connections an automatic session starts with.
pub const START: usize = 4;
/// How often goodput is measured.
pub const INTERVAL: Duration = Duration::from_millis(500);
/// Goodput must rise by this factor for the connections to double again.
const GAIN: f64 = 1.10;
/// Intervals without that rise before the count settles.
const PATIENCE: u32 = 2;
/// Goodput below this says nothing about the link (bytes per second).
const SIGNAL: f64 = 1_048_576.0;

/// The rule of `-n auto`.
#[derive(Debug, Clone)]
pub struct Tuner {
    connections: usize,
    most: usize,
    best: f64,
    flat: u32,
    settled: bool,
}

impl Tuner {
    /// A tuner that may go up to `most` connections.
    pub fn new(most: usize) -> Tuner {
        let most = most.max(1);
        Tuner { connections: START.min(most), most, best: 0.0, flat: 0, settled: false }
    }

    /// The connections to keep now.
    pub fn connections(&self) -> usize {
        self.connections
    }

    /// Has it stopped changing?
    pub fn settled(&self) -> bool {
        self.settled
    }

    /// The goodput of the last interval, in bytes per second; returns the
    /// connections to keep.
    pub fn observe(&mut self, goodput: f64) -> usize {
        if self.settled || goodput < SIGNAL {
            return self.connections;
        }
        if goodput > self.best * GAIN {
            self.best = goodput;
            self.flat = 0;
            if self.connections < self.most {
                self.connections = (self.connections * 2).min(self.most);
            } else {
                self.settled = true;
            }
        } else {
            self.best = self.best.max(goodput);
            self.flat += 1;
            self.settled = self.flat >= PATIENCE;
        }
        self.connections
    }
}

/// Runs `tuner` over the byte counter `wire`, raising `target`, until it
/// settles or `stop`.
pub(super) async fn tune(
    mut tuner: Tuner,
    wire: Arc<AtomicU64>,
    target: Arc<Target>,
    stop: CancellationToken,
) {
    let (mut last, mut since) = (wire.load(Ordering::Relaxed), Instant::now());
    while !tuner.settled() {
        tokio::select! {
            () = tokio::time::sleep(INTERVAL) => {}
            () = stop.cancelled() => return,
        }
        let now = wire.load(Ordering::Relaxed);
        let goodput = now.saturating_sub(last) as f64 / since.elapsed().as_secs_f64().max(1e-3);
        (last, since) = (now, Instant::now());
        let before = tuner.connections();
        let wanted = tuner.observe(goodput);
        if wanted != before {
            tracing::debug!(
                "-n auto: {:.1} MB/s with {before} connections; going to {wanted}",
                goodput / 1e6
            );
            target.raise(wanted);
        }
    }
    tracing::info!("-n auto: settled on {} connections", tuner.connections());
}

#[cfg(test)]
mod tests {
    use super::*;

    const MB: f64 = 1e6;

    #[test]
    fn doubles_while_goodput_rises_and_settles_when_it_stops() {
        let mut t = Tuner::new(64);
        assert_eq!(t.connections(), 4);
        // A listing: no signal, nothing changes.
        assert_eq!(t.observe(0.2 * MB), 4);
        assert_eq!(t.observe(40.0 * MB), 8);
        assert_eq!(t.observe(70.0 * MB), 16);
        // Less than a tenth more: flat once, twice, settled.
        assert_eq!(t.observe(75.0 * MB), 16);
        assert!(!t.settled());
        assert_eq!(t.observe(60.0 * MB), 16);
        assert!(t.settled());
        // Settled for good.
        assert_eq!(t.observe(500.0 * MB), 16);
    }

    #[test]
    fn a_rise_after_a_flat_interval_starts_over() {
        let mut t = Tuner::new(64);
        t.observe(40.0 * MB);
        assert_eq!(t.observe(41.0 * MB), 8);
        assert_eq!(t.observe(60.0 * MB), 16);
        assert!(!t.settled());
    }

    #[test]
    fn never_past_what_the_server_takes() {
        let mut t = Tuner::new(6);
        assert_eq!(t.observe(10.0 * MB), 6);
        assert_eq!(t.observe(20.0 * MB), 6);
        assert!(t.settled());
        let mut one = Tuner::new(1);
        assert_eq!(one.connections(), 1);
        assert_eq!(one.observe(10.0 * MB), 1);
    }
}
