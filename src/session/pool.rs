//! The client's side of a session: N connections serving one work queue.
//!
//! Every request goes into one shared queue. Each connection has a writer
//! task that takes the next request whenever the connection has room (a
//! budget of bytes in flight per connection), gives it an id and sends it,
//! and a reader task that hands each response to whoever is waiting for it.
//! So no request waits for another's round trip, a slow connection simply
//! takes less work, and a connection that dies fails only its own requests.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};

use crate::codec::{ErrorKind, Message, Packet};
use crate::peer::Error;

use super::conn::{Reader, Writer};
use super::inflight::{InFlight, Reply};

/// Requests of no particular size count as this many bytes in flight.
const SMALL_COST: usize = 1024;
/// Bytes of requests queued before they are sent together.
const WRITE_BATCH: usize = 256 << 10;

/// A request waiting for a connection.
struct Call {
    msg: Message,
    payload: Bytes,
    cost: usize,
    reply: Reply,
}

/// Requests in flight on one connection, each holding its share of the
/// connection's budget.
type PendingMap = Arc<Mutex<InFlight<OwnedSemaphorePermit>>>;

/// What the connections of a pool share and report.
#[derive(Debug)]
struct Shared {
    /// Round trips of chunk requests, in microseconds.
    latency: Mutex<Histogram<u64>>,
    /// Why the last connection died, to explain later failures.
    last_failure: Mutex<Option<String>>,
}

/// N connections of one session behind one work queue. Cheap to clone.
#[derive(Clone)]
pub struct Pool {
    queue: async_channel::Sender<Call>,
    shared: Arc<Shared>,
    wire: Arc<AtomicU64>,
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

impl Pool {
    /// Starts serving the queue over `conns`, each allowed `budget` bytes
    /// of requests and responses in flight. `wire` is the byte counter the
    /// connections' streams feed.
    pub fn start(conns: Vec<(Reader, Writer)>, budget: usize, wire: Arc<AtomicU64>) -> Pool {
        let (queue, jobs) = async_channel::unbounded();
        let shared = Arc::new(Shared {
            latency: Mutex::new(Histogram::new(3).expect("3 significant figures are valid")),
            last_failure: Mutex::new(None),
        });
        for (reader, writer) in conns {
            let pending: PendingMap = Arc::new(Mutex::new(InFlight::new()));
            let budget = Arc::new(Semaphore::new(budget));
            let done = tokio_util::sync::CancellationToken::new();
            tokio::spawn(write_loop(writer, jobs.clone(), pending.clone(), budget, done.clone()));
            tokio::spawn(read_loop(reader, pending, shared.clone(), done));
        }
        Pool { queue, shared, wire }
    }

    /// Sends a request and waits for its response; an `Error` response
    /// becomes `Err`.
    pub async fn call(&self, msg: Message, payload: Bytes) -> Result<Packet, Error> {
        // What the request takes of a connection's budget: the data it
        // moves either way, and some for the rest.
        let cost = (payload.len() + msg.answer_data() as usize).max(SMALL_COST);
        let (tx, rx) = oneshot::channel();
        self.enqueue(Call { msg, payload, cost, reply: Reply::Once(tx) }).await?;
        rx.await.map_err(|_| self.lost())?
    }

    /// Sends a request answered by several responses (a `Walk`).
    pub async fn stream(
        &self,
        msg: Message,
    ) -> Result<mpsc::UnboundedReceiver<Result<Packet, Error>>, Error> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.enqueue(Call { msg, payload: Bytes::new(), cost: SMALL_COST, reply: Reply::Stream(tx) }).await?;
        Ok(rx)
    }

    async fn enqueue(&self, call: Call) -> Result<(), Error> {
        self.queue.send(call).await.map_err(|_| self.lost())
    }

    fn lost(&self) -> Error {
        let why = self.shared.last_failure.lock().unwrap_or_else(|p| p.into_inner()).clone();
        Error::new(ErrorKind::Lost, why.unwrap_or_else(|| "connection to the server lost".to_owned()))
    }

    /// Ends the session on the server (best effort: a dead session is gone
    /// already).
    pub async fn close(&self) {
        let _ = self.call(Message::Close, Bytes::new()).await;
    }

    /// Bytes sent and received on all connections so far.
    pub fn wire_bytes(&self) -> u64 {
        self.wire.load(Ordering::Relaxed)
    }

    /// Round-trip latency percentiles of the requests that moved file data
    /// so far.
    pub fn latency(&self) -> Latency {
        let h = self.shared.latency.lock().unwrap_or_else(|p| p.into_inner());
        Latency {
            p50: h.value_at_quantile(0.50),
            p90: h.value_at_quantile(0.90),
            p99: h.value_at_quantile(0.99),
            max: h.max(),
        }
    }

    /// Sends a `Ping` every `every` until the pool is dropped, so the server
    /// does not expire a session that is busy on this side.
    pub fn keep_alive(&self, every: Duration) {
        let queue = self.queue.downgrade();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(queue) = queue.upgrade() else { return };
                let (tx, _rx) = oneshot::channel();
                let ping = Call {
                    msg: Message::Ping,
                    payload: Bytes::new(),
                    cost: SMALL_COST,
                    reply: Reply::Once(tx),
                };
                if queue.send(ping).await.is_err() {
                    return;
                }
            }
        });
    }
}

async fn write_loop(
    mut writer: Writer,
    jobs: async_channel::Receiver<Call>,
    pending: PendingMap,
    budget: Arc<Semaphore>,
    done: tokio_util::sync::CancellationToken,
) {
    let capacity = budget.available_permits();
    loop {
        // Take work only when this connection has room for some.
        let Ok(first) = budget.clone().acquire_owned().await else { return };
        let call = tokio::select! {
            call = jobs.recv() => match call { Ok(call) => call, Err(_) => break },
            () = done.cancelled() => return,
        };
        let mut next = Some((call, first));
        // Queue this request and whatever else is ready and fits, then send
        // them all at once.
        while let Some((call, mut permit)) = next.take() {
            let extra = call.cost.clamp(1, capacity) - 1;
            if extra > 0 {
                match budget.clone().try_acquire_many_owned(extra as u32) {
                    Ok(more) => permit.merge(more),
                    Err(_) => {
                        // Send what is queued before waiting: the room is
                        // freed by answers to exactly those requests.
                        if !flush(&mut writer, &pending, &done).await {
                            return;
                        }
                        match budget.clone().acquire_many_owned(extra as u32).await {
                            Ok(more) => permit.merge(more),
                            Err(_) => return,
                        }
                    }
                }
            }
            let timed = call.msg.moves_data();
            let id = match lock(&pending).insert(call.reply, timed, permit, Instant::now()) {
                Ok(id) => id,
                Err(reply) => {
                    reply.send(Err(Error::new(ErrorKind::Lost, "connection to the server lost")));
                    return;
                }
            };
            if let Err(e) = writer.queue(&Packet::with_payload(id, call.msg, call.payload)) {
                lock(&pending).fail(id, Error::new(ErrorKind::Protocol, e.to_string()));
                continue;
            }
            if writer.queued() >= WRITE_BATCH {
                break;
            }
            if let Ok(permit) = budget.clone().try_acquire_owned() {
                next = jobs.try_recv().ok().map(|call| (call, permit));
            }
        }
        if !flush(&mut writer, &pending, &done).await {
            return;
        }
    }
    writer.shutdown().await;
}

/// Sends what the writer has queued; on failure the connection is done for.
async fn flush(
    writer: &mut Writer,
    pending: &PendingMap,
    done: &tokio_util::sync::CancellationToken,
) -> bool {
    match writer.flush().await {
        Ok(()) => true,
        Err(e) => {
            done.cancel();
            fail_all(pending, &format!("sending to the server failed: {e}"));
            false
        }
    }
}

async fn read_loop(
    mut reader: Reader,
    pending: PendingMap,
    shared: Arc<Shared>,
    done: tokio_util::sync::CancellationToken,
) {
    let why = loop {
        let packet = tokio::select! {
            packet = reader.next() => packet,
            () = done.cancelled() => break "connection closed".to_owned(),
        };
        let packet = match packet {
            Some(Ok(packet)) => packet,
            Some(Err(e)) => break format!("bad data from the server: {e}"),
            None => break "the server closed the connection".to_owned(),
        };
        if packet.id == 0 {
            if let Message::Error { message, .. } = &packet.msg {
                break format!("the server ended the connection: {}", crate::peer::error::printable(message));
            }
            continue;
        }
        if let Some(round_trip) = lock(&pending).deliver(packet, Instant::now()) {
            let micros = round_trip.as_micros() as u64;
            let _ = lock(&shared.latency).record(micros.max(1));
        }
    };
    done.cancel();
    *shared.last_failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(why.clone());
    fail_all(&pending, &why);
}

fn fail_all(pending: &PendingMap, why: &str) {
    lock(pending).close(why);
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
