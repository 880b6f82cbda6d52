//! Answering one request with the session's local role: the `Walk`
//! stream, and every other request's one answer.

use bytes::Bytes;
use tokio::sync::{mpsc, OwnedSemaphorePermit};

use crate::codec::{Class, ErrorKind, FileFailure, FileRead, HashAlgo, HashTarget, Message, Packet, Serves};
use crate::peer::{self, hash, Destination, NewFile, Source};

use super::connection::Outgoing;
use super::table::{Role, Session};
use super::WALKS_PER_SESSION;

/// Answers one request (a `Walk` with a stream of `Listing`s).
pub(super) async fn serve_request(
    session: &Session,
    packet: Packet,
    budget: OwnedSemaphorePermit,
    tx: &mpsc::Sender<Outgoing>,
) {
    if let Message::Walk = packet.msg {
        let Ok(_walking) = session.walks.clone().try_acquire_owned() else {
            let message = format!("a session may walk at most {WALKS_PER_SESSION} trees at once");
            let _ = tx
                .send((Packet::new(packet.id, Message::Error { kind: ErrorKind::Limit, message }), None))
                .await;
            return;
        };
        stream_walk(session, packet.id, tx).await;
    } else if packet.msg.declaration().once {
        let response = session.replays.answer(packet, |packet| answer(session, packet)).await;
        let _ = tx.send((response, Some(budget))).await;
    } else {
        let response = answer(session, packet).await;
        let _ = tx.send((response, Some(budget))).await;
    }
}

/// Sends the session's tree as `Listing` responses to request `id`.
async fn stream_walk(session: &Session, id: u32, tx: &mpsc::Sender<Outgoing>) {
    let listing = match &session.role {
        Role::Source(source) => source.walk().await,
        Role::Destination(destination) => destination.walk().await,
    };
    let mut listing = match listing {
        Ok(listing) => listing,
        Err(e) => {
            let _ =
                tx.send((Packet::new(id, Message::Error { kind: e.kind, message: e.message }), None)).await;
            return;
        }
    };
    while let Some(batch) = listing.recv().await {
        let msg = Message::Listing {
            entries: batch.entries,
            problems: batch.problems,
            done: false,
            root: batch.root,
        };
        if tx.send((Packet::new(id, msg), None)).await.is_err() {
            return;
        }
    }
    let last = Message::Listing { entries: Vec::new(), problems: Vec::new(), done: true, root: None };
    let _ = tx.send((Packet::new(id, last), None)).await;
}

/// Answers one request with the session's local role.
async fn answer(session: &Session, packet: Packet) -> Packet {
    let id = packet.id;
    match respond(&session.role, packet.msg, packet.payload).await {
        Ok((msg, payload)) => Packet::with_payload(id, msg, payload),
        Err(e) => Packet::new(id, Message::Error { kind: e.kind, message: e.message }),
    }
}

async fn respond(role: &Role, msg: Message, payload: Bytes) -> Result<(Message, Bytes), peer::Error> {
    // What the message is, and which role serves it, is declared once.
    let declared = msg.declaration();
    match (declared.class, role) {
        (Class::Request(Serves::Destination), Role::Source(_)) => {
            return Err(peer::Error::denied(format!(
                "a download session only lists, hashes and reads the server's files ({} refused)",
                declared.name
            )))
        }
        (Class::Request(Serves::Source), Role::Destination(_)) => {
            return Err(peer::Error::denied("an upload session does not read files from the server"))
        }
        (Class::Request(_), _) => {}
        (Class::Handshake | Class::Answer, _) => return Err(unexpected(&msg)),
    }
    let done = |()| (Message::Done, Bytes::new());
    match (role, msg) {
        (Role::Source(source), Message::Hash { target: HashTarget::Path(path), span }) => {
            let digests = source.hash(path, span).await?;
            let algo = source.settings().hash;
            Ok((Message::Hashes { digests: hash::pack(algo, &digests) }, Bytes::new()))
        }
        (Role::Source(source), Message::HashFiles { files }) => {
            let hashed = source.hash_files(files).await?;
            Ok((files_hashed(source.settings().hash, hashed), Bytes::new()))
        }
        (Role::Source(source), Message::Read { path, offset, len }) => {
            let chunk = source.read(path, offset, len).await?;
            if chunk.zeros {
                return Ok((Message::Zeros { file: chunk.file }, Bytes::new()));
            }
            let digest = hash::encode(source.settings().hash, chunk.digest);
            Ok((Message::Data { digest, file: chunk.file }, chunk.data))
        }
        (Role::Source(source), Message::ReadFiles { files }) => {
            let algo = source.settings().hash;
            let bundle = source.read_files(files).await?;
            let files = bundle
                .files
                .into_iter()
                .map(|read| match read {
                    Ok((digest, file)) => FileRead::Read { digest: hash::encode(algo, digest), file },
                    Err(e) => FileRead::Failed { kind: e.kind, message: e.message },
                })
                .collect();
            Ok((Message::FilesRead { files }, bundle.data))
        }
        (Role::Destination(dest), msg) => {
            let algo = dest.settings().hash;
            match msg {
                Message::Probe { paths } => {
                    Ok((Message::Probed { found: dest.probe(paths).await? }, Bytes::new()))
                }
                Message::Hash { target, span } => {
                    let digests = dest.hash(target, span).await?;
                    Ok((Message::Hashes { digests: hash::pack(algo, &digests) }, Bytes::new()))
                }
                Message::HashFiles { files } => {
                    Ok((files_hashed(algo, dest.hash_files(files).await?), Bytes::new()))
                }
                Message::Begin { path, size } => {
                    let b = dest.begin(path, size).await?;
                    Ok((Message::Begun { handle: b.handle, partial: b.partial }, Bytes::new()))
                }
                Message::CopyOld { handle, ranges } => dest.copy_old(handle, ranges).await.map(done),
                Message::Write { handle, offset, digest } => {
                    dest.write(handle, offset, payload, hash::decode(algo, &digest)?).await.map(done)
                }
                Message::Zero { handle, offset, len } => dest.zero(handle, offset, len).await.map(done),
                Message::Finish { handle, meta } => dest.finish(handle, meta).await.map(done),
                Message::Discard { handle, remove } => dest.discard(handle, remove).await.map(done),
                Message::PutFile { path, meta, digest } => {
                    dest.put_file(path, meta, payload, hash::decode(algo, &digest)?).await.map(done)
                }
                Message::PutFiles { files } => {
                    let files = files
                        .into_iter()
                        .map(|f| {
                            let digest = hash::decode(algo, &f.digest)?;
                            Ok(NewFile { path: f.path, meta: f.meta, len: f.len, digest })
                        })
                        .collect::<Result<Vec<_>, peer::Error>>()?;
                    let failures = dest
                        .put_files(files, payload)
                        .await?
                        .into_iter()
                        .map(|(index, e)| FileFailure {
                            index: index as u32,
                            kind: e.kind,
                            message: e.message,
                        })
                        .collect();
                    Ok((Message::FilesPut { failures }, Bytes::new()))
                }
                Message::Apply { actions } => {
                    Ok((Message::Applied { failures: dest.apply(actions).await? }, Bytes::new()))
                }
                other => Err(unexpected(&other)),
            }
        }
        (Role::Source(_), Message::Hash { target: HashTarget::Handle(_), .. }) => Err(peer::Error::denied(
            "a download session only lists, hashes and reads the server's files (Hash of a handle refused)",
        )),
        (Role::Source(_), other) => Err(unexpected(&other)),
    }
}

/// The answer to `HashFiles`: a zero digest where a file has none.
fn files_hashed(algo: HashAlgo, hashed: Vec<peer::Result<peer::Digest>>) -> Message {
    let mut failures = Vec::new();
    let digests: Vec<peer::Digest> = hashed
        .into_iter()
        .enumerate()
        .map(|(index, result)| {
            result.unwrap_or_else(|e| {
                failures.push(FileFailure { index: index as u32, kind: e.kind, message: e.message });
                0
            })
        })
        .collect();
    Message::FilesHashed { digests: hash::pack(algo, &digests), failures }
}

fn unexpected(msg: &Message) -> peer::Error {
    peer::Error::new(ErrorKind::Protocol, format!("{} is not a request", msg.name()))
}
