//! Keeps a client's session at its N connections: each lost connection is
//! replaced by a new one that joins the session (authenticated like any
//! join), tried with exponential backoff and jitter.
//!
//! With every connection lost (a link outage, a server briefly out of
//! reach) the session waits for up to the reconnect timeout, saying so
//! once, and again once it is back. It is lost for good — every request
//! fails with `Lost` — when the server answers a join with "no such
//! session" (it restarted, the session expired or was taken over), when
//! the timeout passes, or, without reconnection, with its last connection.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::codec::ErrorKind;

use super::conn::{Reader, Writer};
use super::link::Link;
use super::SessionError;

/// First wait before dialing again...
const MIN_BACKOFF: Duration = Duration::from_millis(100);
/// ...doubled after each failure, up to this.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Makes one more connection joined to the session.
pub(super) type Dial =
    Arc<dyn Fn() -> BoxFuture<'static, Result<(Reader, Writer), SessionError>> + Send + Sync>;

/// How many connections the session keeps: fixed, or raised by `-n auto`
/// (see [`super::autotune`]).
#[derive(Debug)]
pub(super) struct Target {
    wanted: watch::Sender<usize>,
}

impl Target {
    /// Keep `n` connections.
    pub(super) fn new(n: usize) -> Arc<Target> {
        Arc::new(Target { wanted: watch::Sender::new(n) })
    }

    /// How many to keep now.
    pub(super) fn get(&self) -> usize {
        *self.wanted.borrow()
    }

    /// Keep `n` from now on.
    pub(super) fn raise(&self, n: usize) {
        self.wanted.send_replace(n);
    }

    /// Follows the count as it is raised.
    pub(super) fn watch(&self) -> watch::Receiver<usize> {
        self.wanted.subscribe()
    }
}

/// How lost connections are replaced.
pub(super) struct Redial {
    /// Joins a new connection to the session.
    pub dial: Dial,
    /// How long the session may have no connection at all.
    pub reconnect_timeout: Duration,
}

/// Replaces the connections of `link`'s pool that are lost (each says why
/// on `losses`) until `stop`, keeping `target` of them (`live` at first);
/// makes more when the target is raised.
pub(super) async fn supervise(
    link: Link,
    target: Arc<Target>,
    mut live: usize,
    mut losses: mpsc::UnboundedReceiver<String>,
    redial: Option<Redial>,
    stop: CancellationToken,
) {
    let shared = link.shared.clone();
    let mut why = String::from("not connected yet");
    let mut outage: Option<Instant> = None;
    let mut backoff = MIN_BACKOFF;
    // Connections lost and not replaced yet (the others wanted were added
    // by a raised target: they are no reconnects).
    let mut owed = 0usize;
    let mut raised = target.watch();
    loop {
        if live >= target.get() {
            tokio::select! {
                lost = losses.recv() => match lost {
                    Some(lost) => { live -= 1; owed += 1; why = lost; }
                    None => return,
                },
                // `target` is held here: its sender outlives this wait.
                _ = raised.changed() => continue,
                () = stop.cancelled() => return,
            }
        }
        while let Ok(lost) = losses.try_recv() {
            live = live.saturating_sub(1);
            owed += 1;
            why = lost;
        }
        // A session being closed loses its connections on purpose.
        let closing = shared.closing.load(Ordering::Relaxed);
        let Some(redial) = redial.as_ref().filter(|_| !closing) else {
            if live == 0 {
                shared.lose_session(&format!("connection to the server lost: {why}"));
                return;
            }
            tracing::debug!("a connection was lost ({why}); going on with {live}");
            tokio::select! {
                lost = losses.recv() => if let Some(lost) = lost { live -= 1; owed += 1; why = lost; },
                () = stop.cancelled() => return,
            }
            continue;
        };
        if live == 0 && outage.is_none() {
            outage = Some(Instant::now());
            tracing::warn!(
                "all connections lost ({why}); reconnecting for up to {}",
                humantime::format_duration(redial.reconnect_timeout)
            );
        }
        if let Some(since) = outage {
            if since.elapsed() >= redial.reconnect_timeout {
                shared.lose_session(&format!(
                    "all connections lost and none could be made again within {}: {why}",
                    humantime::format_duration(redial.reconnect_timeout)
                ));
                return;
            }
        }
        tokio::select! {
            () = tokio::time::sleep(jitter(backoff)) => {}
            () = stop.cancelled() => return,
        }
        match (redial.dial)().await {
            Ok(conn) => {
                link.spawn(conn);
                live += 1;
                if owed > 0 {
                    owed -= 1;
                    shared.reconnects.fetch_add(1, Ordering::Relaxed);
                }
                backoff = MIN_BACKOFF;
                if let Some(since) = outage.take() {
                    tracing::warn!(
                        "connected again after {}; going on",
                        humantime::format_duration(Duration::from_millis(since.elapsed().as_millis() as u64))
                    );
                }
            }
            Err(SessionError::Refused(e)) if e.kind == ErrorKind::NoSession => {
                shared.gone.store(true, Ordering::Relaxed);
                shared.lose_session(&format!("the server lost the session: {}", e.message));
                return;
            }
            Err(e) => {
                tracing::debug!("joining the session again failed: {e}");
                why = e.to_string();
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// Somewhere between half of `backoff` and all of it, so that clients cut
/// off together do not come back together.
fn jitter(backoff: Duration) -> Duration {
    let random = getrandom::u32().unwrap_or(u32::MAX / 2);
    let fraction = 0.5 + f64::from(random) / f64::from(u32::MAX) / 2.0;
    backoff.mul_f64(fraction)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_half_and_all_of_the_backoff() {
        for _ in 0..1000 {
            let j = jitter(Duration::from_millis(100));
            assert!(j >= Duration::from_millis(50) && j <= Duration::from_millis(100), "{j:?}");
        }
    }
}
