//! One connection on the server: its handshake, admission into a session,
//! then its request loop (each request a task of its own, within the
//! session's budget) and the writer that sends the answers.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

use crate::codec::{ErrorKind, Message, Packet};
use crate::session::auth::Key;
use crate::session::conn::{self, BoxIo};
use crate::session::handshake::{self, Wants};
use crate::session::SessionError;

use super::dispatch::serve_request;
use super::members::Member;
use super::table::Session;
use super::{State, HANDSHAKE_TIMEOUT, REQUESTS_PER_CONNECTION, SESSION_BUDGET, SMALL_REQUEST, WRITE_BATCH};

/// Serves one connection: its handshake (holding one of the server's
/// handshake permits until the session is opened or joined), then its
/// requests.
pub(super) async fn serve_connection(
    state: Arc<State>,
    io: BoxIo,
    peer: SocketAddr,
    handshake: OwnedSemaphorePermit,
    binding: Vec<u8>,
) {
    let (mut reader, mut writer) = conn::split(io);
    let greeting = match tokio::time::timeout(
        HANDSHAKE_TIMEOUT,
        handshake::server(&mut reader, &mut writer, state.key.is_some(), &binding),
    )
    .await
    {
        Err(_) => {
            tracing::warn!("{peer}: no handshake within {}s; closed", HANDSHAKE_TIMEOUT.as_secs());
            return;
        }
        Ok(Err(SessionError::Foreign(what))) => {
            tracing::warn!("{peer}: spoke {what}, not the pareco protocol; closed");
            return;
        }
        Ok(Err(e)) => {
            tracing::warn!("{peer}: handshake refused: {e}");
            refuse(&mut writer, &e).await;
            return;
        }
        Ok(Ok(greeting)) => greeting,
    };
    let key = state.key.clone().unwrap_or_else(Key::none);
    let admitted = match &greeting.wants {
        Wants::Open(spec) => match state.key.as_ref().map(|key| handshake::check_proof(&greeting, key)) {
            Some(Err(e)) => Err(e),
            _ => {
                // Proved (or no proof asked for): what is left of opening,
                // the globs to compile, no longer holds a handshake slot.
                drop(handshake);
                state.open(spec.clone()).await.map(|(session, member)| (session, member, key))
            }
        },
        Wants::Join(id) => {
            let joined = state.table.join(*id, state.now_ms(), |session| {
                let key = key.for_join(&session.secret);
                handshake::check_proof(&greeting, &key).map(|()| key)
            });
            // Joined (or refused): the handshake slot is free again. (A
            // joined connection held it for its whole life, so 256 joined
            // connections locked every new client out.)
            drop(handshake);
            joined
        }
    };
    let (session, member, key) = match admitted {
        Ok(admitted) => admitted,
        Err(e) => {
            tracing::warn!("{peer}: session refused: {e}");
            let _ = writer.send_msg(0, Message::Error { kind: e.kind, message: e.message }).await;
            writer.shutdown().await;
            return;
        }
    };
    let opened = matches!(greeting.wants, Wants::Open(_)).then_some(&session.secret);
    let privileged = match &greeting.wants {
        Wants::Open(spec) => !spec.preserve.is_empty() && crate::peer::extra::running_as_root(),
        Wants::Join(_) => false,
    };
    let welcome = handshake::welcome(
        &greeting,
        &key,
        session.id,
        state.config.session_timeout,
        session.max_payload,
        state.table.most_connections(&session) as u32,
        opened,
        privileged,
        session.pacer.rate(),
    );
    let sending = if writer.send_msg(0, welcome).await.is_ok() {
        reader.open(session.max_payload as usize);
        writer.pace(session.pacer.clone());
        Some(serve_requests(&state, &session, &member, reader, writer, peer).await)
    } else {
        None
    };
    // A session whose last connection is gone stays for its client to
    // join again; it expires after the session timeout, or is taken over.
    session.touch(state.now_ms());
    if session.members.leave(&member) == 0 && !session.ended.is_cancelled() {
        tracing::info!(
            "session {:016x}: all connections gone; kept for the client to join again",
            session.id
        );
    }
    if let Some(sending) = sending {
        let _ = sending.await;
    }
}

async fn refuse(writer: &mut conn::Writer, error: &SessionError) {
    let (kind, message) = match error {
        SessionError::Refused(e) => (e.kind, e.message.clone()),
        other => (ErrorKind::Protocol, other.to_string()),
    };
    let _ = writer.send_msg(0, Message::Error { kind, message }).await;
    writer.shutdown().await;
}

/// An answer on its way to the writer, with the share of the session's
/// memory budget its request took (released once it is sent).
pub(super) type Outgoing = (Packet, Option<OwnedSemaphorePermit>);

async fn serve_requests(
    state: &Arc<State>,
    session: &Arc<Session>,
    member: &Member,
    mut reader: conn::Reader,
    mut writer: conn::Writer,
    peer: SocketAddr,
) -> tokio::task::JoinHandle<()> {
    let (tx, rx) = mpsc::channel::<Outgoing>(REQUESTS_PER_CONNECTION);
    writer.set_stall_timeout(state.config.session_timeout);
    let sending = tokio::spawn(send_answers(writer, rx, session.id, peer));
    let in_progress = Arc::new(Semaphore::new(REQUESTS_PER_CONNECTION));
    // A client pings each idle connection at least every third of the
    // session timeout: one silent for half of it, with nothing in
    // progress, is gone (its client's machine vanished, or a middlebox
    // dropped the flow), and the session is left for its client to join.
    let silence = state.config.session_timeout / 2;
    loop {
        let packet = tokio::select! {
            packet = reader.next() => packet,
            () = session.ended.cancelled() => break,
            () = member.cut.cancelled() => {
                tracing::info!("session {:016x}, {peer}: replaced by a new connection; closed", session.id);
                break;
            }
            () = tokio::time::sleep(silence) => {
                if in_progress.available_permits() < REQUESTS_PER_CONNECTION {
                    continue;
                }
                tracing::info!(
                    "session {:016x}, {peer}: nothing arrived for {}; connection closed",
                    session.id,
                    humantime::format_duration(silence)
                );
                break;
            }
        };
        let packet = match packet {
            None => break,
            Some(Ok(packet)) => packet,
            Some(Err(e)) => {
                tracing::warn!("session {:016x}, {peer}: {e}; connection closed", session.id);
                let _ = tx.send((protocol_error(0, e.to_string()), None)).await;
                break;
            }
        };
        let now = state.now_ms();
        session.touch(now);
        member.heard(now);
        let id = packet.id;
        match packet.msg {
            Message::Ping => {
                let _ = tx.send((Packet::new(id, Message::Pong), None)).await;
            }
            Message::Close => {
                let _ = tx.send((Packet::new(id, Message::Done), None)).await;
                state.table.end(session, "closed by the client");
                break;
            }
            _ => {
                // Room for one more request on this connection, and for the
                // bytes it moves in the session's budget: until then this
                // connection is not read, which pushes back through TCP.
                let Ok(permit) = in_progress.clone().acquire_owned().await else { break };
                let cost = request_cost(&packet, reader.last_header_len());
                let budget = tokio::select! {
                    budget = session.budget.clone().acquire_many_owned(cost) => budget,
                    () = session.ended.cancelled() => break,
                };
                let Ok(budget) = budget else { break };
                let (state, session, tx) = (state.clone(), session.clone(), tx.clone());
                tokio::spawn(async move {
                    // Everything a request waits for ends with its session.
                    let ended = session.ended.clone();
                    tokio::select! {
                        () = serve_request(&session, packet, budget, &tx) => {}
                        () = ended.cancelled() => {}
                    }
                    // Work the server did keeps the session alive as much
                    // as a frame from the client does.
                    session.touch(state.now_ms());
                    drop(permit);
                });
            }
        }
    }
    sending
}

/// Bytes a request takes of its session's budget while it is served: its
/// payload, the data its answer carries, its header of `header_len` bytes
/// and what its lists take in memory beyond it, and a little for the rest.
fn request_cost(packet: &Packet, header_len: usize) -> u32 {
    let cost = packet.payload.len() as u64
        + packet.msg.answer_data()
        + header_len as u64
        + packet.msg.list_bytes()
        + SMALL_REQUEST;
    cost.min(SESSION_BUDGET as u64) as u32
}

/// Sends the answers of one connection, those ready together in one write,
/// until every request task is done with it or the client stops taking data
/// (a write that makes no progress for the session timeout fails).
async fn send_answers(
    mut writer: conn::Writer,
    mut rx: mpsc::Receiver<Outgoing>,
    session: u64,
    peer: SocketAddr,
) {
    while let Some((packet, permit)) = rx.recv().await {
        let mut held = vec![permit];
        let mut next = Some(packet);
        while let Some(packet) = next.take() {
            if let Err(e) = writer.queue(&packet) {
                // An answer too large for one frame fails its request, not
                // the connection.
                let why = format!("the answer to this request cannot be sent: {e}");
                if writer
                    .queue(&Packet::new(packet.id, Message::Error { kind: ErrorKind::Limit, message: why }))
                    .is_err()
                {
                    break;
                }
            }
            if writer.queued() < WRITE_BATCH {
                if let Ok((packet, permit)) = rx.try_recv() {
                    next = Some(packet);
                    held.push(permit);
                }
            }
        }
        if let Err(e) = writer.flush().await {
            tracing::warn!("session {session:016x}, {peer}: {e}; connection closed");
            return;
        }
    }
    writer.shutdown().await;
}

fn protocol_error(id: u32, message: String) -> Packet {
    Packet::new(id, Message::Error { kind: ErrorKind::Protocol, message })
}
