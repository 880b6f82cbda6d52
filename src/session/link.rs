//! One connection of a client's [`Pool`](super::Pool): a writer task that
//! takes requests from the pool's queue while the connection has room and
//! sends them (and a `Ping` when it has been idle), and a reader task that
//! hands each answer to whoever waits for it.
//!
//! When the connection fails — an error either way, the server closing
//! it, or nothing arriving for the I/O timeout while requests are in
//! flight — its requests go back into the queue to be sent again under
//! the same ids, and the redialer is told.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::codec::{ErrorKind, Message, Packet};
use crate::peer::Error;

use super::conn::{Reader, Writer};
use super::inflight::Reply;
use super::pool::{lock, Call, LinkSettings, Shared, SMALL_COST};

/// Bytes of requests queued before they are sent together.
const WRITE_BATCH: usize = 256 << 10;

/// What a request in flight keeps to be sent again.
pub(super) struct Resend {
    msg: Message,
    payload: Bytes,
    cost: usize,
    /// Its share of its connection's budget.
    _permit: OwnedSemaphorePermit,
}

/// What every connection of a pool needs to be started.
pub(super) struct Link {
    pub shared: Arc<Shared>,
    pub settings: LinkSettings,
    /// Where a lost connection says why.
    pub lost: mpsc::UnboundedSender<String>,
}

impl Link {
    /// Starts serving the pool's queue over one more connection.
    pub(super) fn spawn(&self, conn: (Reader, Writer)) {
        let index = NEXT_LINK.fetch_add(1, Ordering::Relaxed);
        spawn_pair(index, conn, self.shared.clone(), self.settings, self.lost.clone());
    }
}

/// Numbers that tell a pool's connections apart.
static NEXT_LINK: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Spawns the writer and reader tasks of connection `index`.
fn spawn_pair(
    index: usize,
    (reader, writer): (Reader, Writer),
    shared: Arc<Shared>,
    settings: LinkSettings,
    lost: mpsc::UnboundedSender<String>,
) {
    let budget = Arc::new(Semaphore::new(settings.budget));
    let done = CancellationToken::new();
    let link = Arc::new(LinkState { index, shared, settings, done });
    tokio::spawn(write_loop(link.clone(), writer, budget));
    tokio::spawn(read_loop(link, reader, lost));
}

struct LinkState {
    index: usize,
    shared: Arc<Shared>,
    settings: LinkSettings,
    /// Cancelled when the connection is done for.
    done: CancellationToken,
}

/// A `Ping` nobody waits for: its answer proves the connection works.
fn ping() -> Call {
    let (tx, _) = oneshot::channel();
    Call { msg: Message::Ping, payload: Bytes::new(), cost: SMALL_COST, reply: Reply::Once(tx), id: None }
}

async fn write_loop(link: Arc<LinkState>, mut writer: Writer, budget: Arc<Semaphore>) {
    let capacity = budget.available_permits();
    let jobs = link.shared.jobs.clone();
    loop {
        // Take work only when this connection has room for some.
        let Ok(first) = budget.clone().acquire_owned().await else { return };
        let call = tokio::select! {
            call = jobs.recv() => match call { Ok(call) => call, Err(_) => break },
            () = tokio::time::sleep(link.settings.ping_every) => ping(),
            () = link.done.cancelled() => return,
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
                        if !flush(&link, &mut writer).await {
                            requeue(&link, call);
                            return;
                        }
                        let more = tokio::select! {
                            more = budget.clone().acquire_many_owned(extra as u32) => more,
                            () = link.done.cancelled() => {
                                requeue(&link, call);
                                return;
                            }
                        };
                        match more {
                            Ok(more) => permit.merge(more),
                            Err(_) => return,
                        }
                    }
                }
            }
            let Call { msg, payload, cost, reply, id } = call;
            let timed = msg.moves_data();
            let packet = Packet::with_payload(0, msg.clone(), payload.clone());
            let held = Resend { msg, payload, cost, _permit: permit };
            let inserted =
                lock(&link.shared.inflight).insert(link.index, id, reply, timed, held, Instant::now());
            let id = match inserted {
                Ok(id) => id,
                // This connection is lost: the request goes to another.
                Err((reply, held)) if link.done.is_cancelled() => {
                    let Resend { msg, payload, cost, .. } = held;
                    requeue(&link, Call { msg, payload, cost, reply, id });
                    return;
                }
                Err((reply, _)) => {
                    reply.send(Err(Error::new(ErrorKind::Lost, "the session is lost")));
                    continue;
                }
            };
            if let Err(e) = writer.queue(&Packet { id, ..packet }) {
                lock(&link.shared.inflight).fail(id, Error::new(ErrorKind::Protocol, e.to_string()));
                continue;
            }
            if writer.queued() >= WRITE_BATCH {
                break;
            }
            if let Ok(permit) = budget.clone().try_acquire_owned() {
                next = jobs.try_recv().ok().map(|call| (call, permit));
            }
        }
        if !flush(&link, &mut writer).await {
            return;
        }
    }
    writer.shutdown().await;
}

/// Sends what the writer has queued; on failure the connection is done for
/// (the reader gives its requests back). Gives up too when the connection
/// is done for meanwhile: on a connection that went silent (the reader's
/// `--io-timeout`), a write the peer takes nothing of would otherwise wait
/// for TCP to give up, many minutes later.
async fn flush(link: &LinkState, writer: &mut Writer) -> bool {
    let sent = tokio::select! {
        sent = writer.flush() => sent,
        () = link.done.cancelled() => return false,
    };
    match sent {
        Ok(()) => true,
        Err(e) => {
            tracing::debug!("connection {}: sending failed: {e}", link.index);
            link.done.cancel();
            false
        }
    }
}

/// Puts a request that was taken but not sent back into the queue; when
/// the queue is closed (the session was lost, or the pool is gone), it
/// fails with the reason the session was lost, if that is known.
fn requeue(link: &LinkState, call: Call) {
    let call = match link.shared.queue.upgrade() {
        Some(queue) => match queue.try_send(call) {
            Ok(()) => return,
            Err(e) => e.into_inner(),
        },
        None => call,
    };
    let why = lock(&link.shared.last_failure).clone().unwrap_or_else(|| "the session is closed".to_owned());
    call.reply.send(Err(Error::new(ErrorKind::Lost, why)));
}

async fn read_loop(link: Arc<LinkState>, mut reader: Reader, lost: mpsc::UnboundedSender<String>) {
    let io_timeout = link.settings.io_timeout;
    let why = loop {
        let packet = tokio::select! {
            packet = reader.next() => packet,
            () = link.done.cancelled() => break "sending to the server failed".to_owned(),
            () = tokio::time::sleep(io_timeout) => {
                if lock(&link.shared.inflight).on_link(link.index) == 0 {
                    continue;
                }
                break format!("nothing arrived from the server for {}", humantime::format_duration(io_timeout));
            }
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
        if let Some(round_trip) = lock(&link.shared.inflight).deliver(packet, Instant::now()) {
            let micros = round_trip.as_micros() as u64;
            let _ = lock(&link.shared.latency).record(micros.max(1));
        }
    };
    link.done.cancel();
    // Its requests go to the other connections, under the same ids.
    let unanswered = lock(&link.shared.inflight).take_link(link.index);
    let retried = unanswered.iter().filter(|u| !matches!(u.held.msg, Message::Ping)).count();
    link.shared.retried.fetch_add(retried as u64, Ordering::Relaxed);
    for u in unanswered {
        if matches!(u.held.msg, Message::Ping) {
            continue;
        }
        let Resend { msg, payload, cost, .. } = u.held;
        requeue(&link, Call { msg, payload, cost, reply: u.reply, id: Some(u.id) });
    }
    let _ = lost.send(why);
}
