//! The client's side of a session: N connections serving one work queue.
//!
//! Every request goes into one shared queue. Each connection (a [`link`])
//! takes the next request whenever it has room (a budget of bytes in
//! flight per connection), gives it an id unique in the session and sends
//! it; answers go to whoever waits for them. So no request waits for
//! another's round trip and a slow connection simply takes less work.
//!
//! A connection that is lost costs nothing but time: its requests go back
//! into the queue, to be sent again under the same ids (the server answers
//! a repeat of a request it did from its table, PROTOCOL.md §11), and
//! [`redial`] joins a replacement to the session. Only a session that is
//! gone for good (the server no longer knows it, or no connection could
//! be made for the reconnect timeout) fails the requests, with `Lost`.
//!
//! [`link`]: super::link
//! [`redial`]: super::redial

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use hdrhistogram::Histogram;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::codec::{ErrorKind, Message, Packet};
use crate::peer::Error;

use super::autotune::{self, Tuner};
use super::conn::{Reader, Writer};
use super::inflight::{InFlight, Reply};
use super::link::{Link, Resend};
use super::redial::{self, Redial, Target};

/// Requests of no particular size count as this many bytes in flight.
pub(super) const SMALL_COST: usize = 1024;

/// A request waiting for a connection.
pub(super) struct Call {
    pub msg: Message,
    pub payload: Bytes,
    pub cost: usize,
    pub reply: Reply,
    /// The id it was sent under before, if it is sent again.
    pub id: Option<u32>,
}

/// What the connections and the redialer of a pool share.
pub(super) struct Shared {
    /// Round trips of chunk requests, in microseconds.
    pub latency: Mutex<Histogram<u64>>,
    /// Why the session was lost, or the last connection was, to explain
    /// failures.
    pub last_failure: Mutex<Option<String>>,
    /// The requests in flight on every connection.
    pub inflight: Mutex<InFlight<Resend>>,
    /// The queue, as the connections and the redialer see it: they must
    /// not keep it open once the pool is gone.
    pub queue: async_channel::WeakSender<Call>,
    /// The other end of the queue.
    pub jobs: async_channel::Receiver<Call>,
    /// Connections joined to replace lost ones.
    pub reconnects: AtomicU64,
    /// Requests sent again after their connection was lost.
    pub retried: AtomicU64,
    /// The client is closing the session: losses are expected.
    pub closing: AtomicBool,
    /// The server said it no longer has the session.
    pub gone: AtomicBool,
}

impl Shared {
    /// The session is gone for good: everything in flight or queued fails
    /// with `Lost` and `why`, and nothing more is taken.
    pub(super) fn lose_session(&self, why: &str) {
        *lock(&self.last_failure) = Some(why.to_owned());
        lock(&self.inflight).close(why);
        self.jobs.close();
        while let Ok(call) = self.jobs.try_recv() {
            call.reply.send(Err(Error::new(ErrorKind::Lost, why.to_owned())));
        }
    }
}

/// How each connection of a pool behaves.
#[derive(Debug, Clone, Copy)]
pub struct LinkSettings {
    /// Bytes of requests and answers in flight per connection.
    pub budget: usize,
    /// A connection with requests in flight on which nothing arrived for
    /// this long is lost.
    pub io_timeout: Duration,
    /// An idle connection sends a `Ping` this often (it keeps the session
    /// from expiring, and proves the connection still works).
    pub ping_every: Duration,
}

/// N connections of one session behind one work queue. Cheap to clone.
#[derive(Clone)]
pub struct Pool {
    queue: async_channel::Sender<Call>,
    shared: Arc<Shared>,
    wire: Arc<AtomicU64>,
    /// The server said it runs as root (see `Welcome::privileged`).
    server_privileged: bool,
    /// The connections it keeps (raised by `-n auto`).
    target: Arc<Target>,
    /// Stops the redialer when the last clone is dropped.
    _stop: Arc<DropGuard>,
}

/// Round-trip latency percentiles of chunk requests, in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Latency {
    /// The median.
    pub p50: u64,
    /// The 90th percentile.
    pub p90: u64,
    /// The 99th percentile.
    pub p99: u64,
    /// The longest round trip.
    pub max: u64,
}

/// What a session went through on its connections.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Resilience {
    /// Connections joined to replace lost ones.
    pub reconnects: u64,
    /// Requests sent again because their connection was lost.
    pub requests_retried: u64,
    /// Sessions opened on the server.
    pub sessions_opened: u64,
}

impl Pool {
    /// The same pool, knowing whether the server runs as root.
    pub(super) fn with_server_privileged(self, server_privileged: bool) -> Pool {
        Pool { server_privileged, ..self }
    }

    /// Did the server say it runs as root? (Only said to sessions that keep
    /// owners, groups or attributes.)
    pub fn server_privileged(&self) -> bool {
        self.server_privileged
    }

    /// Starts serving the queue over `conns`, and keeps `target`
    /// connections (with `tuner`, as many as it finds worth it): `wire` is
    /// the byte counter the connections' streams feed; missing and lost
    /// connections are made through `redial` (none: a lost connection is
    /// not replaced, and the session is lost with the last one).
    pub(super) fn start(
        conns: Vec<(Reader, Writer)>,
        target: usize,
        tuner: Option<Tuner>,
        settings: LinkSettings,
        wire: Arc<AtomicU64>,
        redial: Option<Redial>,
    ) -> Pool {
        let (queue, jobs) = async_channel::unbounded();
        let shared = Arc::new(Shared {
            latency: Mutex::new(Histogram::new(3).expect("3 significant figures are valid")),
            last_failure: Mutex::new(None),
            inflight: Mutex::new(InFlight::new()),
            queue: queue.downgrade(),
            jobs,
            reconnects: AtomicU64::new(0),
            retried: AtomicU64::new(0),
            closing: AtomicBool::new(false),
            gone: AtomicBool::new(false),
        });
        let (lost, losses) = mpsc::unbounded_channel();
        let link = Link { shared: shared.clone(), settings, lost };
        let live = conns.len();
        for conn in conns {
            link.spawn(conn);
        }
        let stop = CancellationToken::new();
        let target = Target::new(target);
        if let Some(tuner) = tuner.filter(|_| redial.is_some()) {
            tokio::spawn(autotune::tune(tuner, wire.clone(), target.clone(), stop.clone()));
        }
        tokio::spawn(redial::supervise(link, target.clone(), live, losses, redial, stop.clone()));
        Pool { queue, shared, wire, server_privileged: false, target, _stop: Arc::new(stop.drop_guard()) }
    }

    /// The number of connections the pool keeps, as `-n auto` raises it.
    pub fn connections(&self) -> tokio::sync::watch::Receiver<usize> {
        self.target.watch()
    }

    /// Sends a request and waits for its response; an `Error` response
    /// becomes `Err`, and so does an answer the request's declaration does
    /// not list (a `Protocol` error).
    pub async fn call(&self, msg: Message, payload: Bytes) -> Result<Packet, Error> {
        // What the request takes of a connection's budget: the data it
        // moves either way, and some for the rest.
        let cost = (payload.len() + msg.answer_data() as usize).max(SMALL_COST);
        let declared = msg.declaration();
        let (tx, rx) = oneshot::channel();
        self.enqueue(Call { msg, payload, cost, reply: Reply::Once(tx), id: None }).await?;
        let answer = rx.await.map_err(|_| self.lost())??;
        if !declared.answers.contains(&answer.msg.name()) {
            return Err(Error::new(
                ErrorKind::Protocol,
                format!("the server answered {} to {}", answer.msg.name(), declared.name),
            ));
        }
        Ok(answer)
    }

    /// Sends a request answered by several responses (a `Walk`). If its
    /// connection is lost it is sent again, and the responses start over:
    /// the receiver may see an entry twice.
    pub async fn stream(
        &self,
        msg: Message,
    ) -> Result<mpsc::UnboundedReceiver<Result<Packet, Error>>, Error> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.enqueue(Call {
            msg,
            payload: Bytes::new(),
            cost: SMALL_COST,
            reply: Reply::Stream(tx),
            id: None,
        })
        .await?;
        Ok(rx)
    }

    async fn enqueue(&self, call: Call) -> Result<(), Error> {
        self.queue.send(call).await.map_err(|_| self.lost())
    }

    fn lost(&self) -> Error {
        let why = lock(&self.shared.last_failure).clone();
        Error::new(ErrorKind::Lost, why.unwrap_or_else(|| "connection to the server lost".to_owned()))
    }

    /// Ends the session on the server (best effort: a dead session is gone
    /// already). Connections lost from now on are not replaced.
    pub async fn close(&self) {
        self.shared.closing.store(true, Ordering::Relaxed);
        let _ = self.call(Message::Close, Bytes::new()).await;
    }

    /// Bytes sent and received on all connections so far.
    pub fn wire_bytes(&self) -> u64 {
        self.wire.load(Ordering::Relaxed)
    }

    /// Round-trip latency percentiles of the requests that moved file data
    /// so far.
    pub fn latency(&self) -> Latency {
        let h = lock(&self.shared.latency);
        Latency {
            p50: h.value_at_quantile(0.50),
            p90: h.value_at_quantile(0.90),
            p99: h.value_at_quantile(0.99),
            max: h.max(),
        }
    }

    /// Did the server say it no longer has the session (it restarted, or
    /// the session expired or was taken over)? A new session can then
    /// carry on with the work.
    pub fn session_gone(&self) -> bool {
        self.shared.gone.load(Ordering::Relaxed)
    }

    /// What the session went through on its connections so far.
    pub fn resilience(&self) -> Resilience {
        Resilience {
            reconnects: self.shared.reconnects.load(Ordering::Relaxed),
            requests_retried: self.shared.retried.load(Ordering::Relaxed),
            sessions_opened: 1,
        }
    }
}

pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
