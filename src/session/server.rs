//! The server: accepts connections, runs their handshake, keeps the table
//! of open sessions, and answers each request with the session's local
//! peer role.
//!
//! Each connection has a reader loop and a writer task. Requests are
//! answered concurrently (up to [`REQUESTS_PER_CONNECTION`] at once; beyond
//! that the reader stops reading, which pushes back through TCP). A session
//! ends when the client closes it, when its last connection goes away, or
//! when nothing arrived on any of its connections for the idle timeout.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::codec::{Direction, ErrorKind, FileFailure, FileRead, HashTarget, Message, Packet, SessionSpec};
use crate::peer::{
    self, hash, Destination, Filter, LocalDestination, LocalSource, NewFile, Settings, Source, Tree,
};

use super::auth::{Key, Secret};
use super::conn::{self, BoxIo};
use super::handshake::{self, Wants};
use super::tls::Acceptor;
use super::SessionError;

/// A connection must finish its handshake within this time.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Requests one connection may have in progress on the server.
pub const REQUESTS_PER_CONNECTION: usize = 64;
/// Bytes of answers queued before they are sent together.
const WRITE_BATCH: usize = 256 << 10;
/// Bytes the requests of one session may take while they are served: their
/// payloads and the data of their answers, until those are sent. (Each
/// connection also buffers at most one frame it is reading.)
pub const SESSION_BUDGET: usize = 256 << 20;
/// What a request counts for beyond the data it moves.
const SMALL_REQUEST: u64 = 1024;
/// Connections in their handshake at once (TLS included); more wait to be
/// accepted, so that peers that have proved nothing can take little.
pub const MAX_HANDSHAKES: usize = 256;

/// How a server is set up. (Its `Debug` shows no token.)
#[derive(Clone)]
pub struct ServerConfig {
    /// The directory served; nothing outside it is ever touched.
    pub root: PathBuf,
    pub token: Option<String>,
    pub session_timeout: Duration,
    pub max_sessions: usize,
    pub max_connections: usize,
    pub tls: Option<Acceptor>,
    /// Keep the setuid and setgid bits of uploaded files.
    pub keep_setid: bool,
}

impl std::fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerConfig")
            .field("root", &self.root)
            .field("token", &self.token.as_ref().map(|_| "(redacted)"))
            .field("session_timeout", &self.session_timeout)
            .field("max_sessions", &self.max_sessions)
            .field("max_connections", &self.max_connections)
            .field("tls", &self.tls)
            .field("keep_setid", &self.keep_setid)
            .finish()
    }
}

impl ServerConfig {
    /// Descriptors the server may need at most with this configuration:
    /// every session its role's own and a socket per connection, the
    /// file-system work running at once (two each), and the connections in
    /// their handshake.
    pub fn descriptors_needed(&self) -> u64 {
        let per_session = peer::DESCRIPTORS_PER_ROLE + self.max_connections;
        (self.max_sessions * per_session + 2 * peer::BLOCKING_THREADS + MAX_HANDSHAKES + 16) as u64
    }
}

/// A bound server, ready to [`run`](Server::run).
pub struct Server {
    listener: TcpListener,
    state: Arc<State>,
}

struct State {
    root: Tree,
    key: Option<Key>,
    config: ServerConfig,
    sessions: Mutex<HashMap<u64, Arc<Session>>>,
    /// The trees upload sessions write into, by session id.
    writers: Writers,
    epoch: Instant,
    /// Permits are connections in their handshake ([`MAX_HANDSHAKES`]).
    handshakes: Arc<Semaphore>,
}

type Writers = Arc<Mutex<HashMap<u64, PathBuf>>>;

/// An upload session's claim on the tree it writes into. It is released
/// when the session is dropped, that is once the last request still
/// running for it is done, not merely when the session leaves the table.
struct WriteClaim {
    writers: Writers,
    id: u64,
}

impl Drop for WriteClaim {
    fn drop(&mut self) {
        lock(&self.writers).remove(&self.id);
    }
}

/// One open session on the server.
struct Session {
    id: u64,
    role: Role,
    max_payload: u32,
    /// For uploads: the claim on the tree written into.
    _claim: Option<WriteClaim>,
    /// Milliseconds since the server's epoch when a frame last arrived.
    last_active: AtomicU64,
    connections: AtomicUsize,
    ended: CancellationToken,
    /// Permits are bytes of [`SESSION_BUDGET`].
    budget: Arc<Semaphore>,
    /// What a connection must prove it knows to join the session.
    secret: Secret,
}

/// The session's half of the transfer.
enum Role {
    Source(LocalSource),
    Destination(LocalDestination),
}

impl Server {
    /// Opens the root and binds the listening socket.
    pub async fn bind(addr: &str, config: ServerConfig) -> Result<Server, SessionError> {
        let root = Tree::open(&config.root).map_err(|e| {
            SessionError::Other(format!("cannot open root directory {}: {e}", config.root.display()))
        })?;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| SessionError::Other(format!("cannot listen on {addr}: {e}")))?;
        let key = config.token.as_deref().map(Key::from_token);
        let state = State {
            root,
            key,
            config,
            sessions: Mutex::default(),
            writers: Writers::default(),
            epoch: Instant::now(),
            handshakes: Arc::new(Semaphore::new(MAX_HANDSHAKES)),
        };
        Ok(Server { listener, state: Arc::new(state) })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves one stream that was accepted elsewhere (tests and the fuzz
    /// target drive the server's state machine this way).
    pub async fn serve_stream(&self, io: BoxIo, peer: SocketAddr) {
        let Ok(handshake) = self.state.handshakes.clone().acquire_owned().await else { return };
        serve_connection(self.state.clone(), io, peer, handshake, Vec::new()).await;
    }

    /// Serves until the process ends.
    pub async fn run(self) {
        tokio::spawn(expire_idle_sessions(self.state.clone()));
        loop {
            // Beyond MAX_HANDSHAKES connections in their handshake, new
            // ones wait in the kernel's backlog until one is done (each has
            // HANDSHAKE_TIMEOUT at most).
            let Ok(handshake) = self.state.handshakes.clone().acquire_owned().await else { return };
            let (stream, peer) = match self.listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let state = self.state.clone();
            tokio::spawn(async move {
                let (io, binding): (BoxIo, Vec<u8>) = match &state.config.tls {
                    Some(acceptor) => {
                        match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                            Ok(Ok(tls)) => match super::tls::binding(tls.get_ref().1) {
                                Ok(binding) => (Box::new(tls), binding),
                                Err(e) => {
                                    tracing::warn!("{peer}: {e}");
                                    return;
                                }
                            },
                            Ok(Err(e)) => {
                                tracing::warn!("{peer}: TLS handshake failed: {e}");
                                return;
                            }
                            Err(_) => {
                                tracing::warn!(
                                    "{peer}: no TLS handshake within {}s; closed",
                                    HANDSHAKE_TIMEOUT.as_secs()
                                );
                                return;
                            }
                        }
                    }
                    None => (Box::new(stream), Vec::new()),
                };
                serve_connection(state, io, peer, handshake, binding).await;
            });
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl State {
    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    async fn open(&self, spec: SessionSpec) -> Result<Arc<Session>, peer::Error> {
        if !(peer::MIN_CHUNK_SIZE..=peer::MAX_CHUNK_SIZE).contains(&spec.chunk_size) {
            return Err(peer::Error::new(
                ErrorKind::Limit,
                format!(
                    "chunk size {} is outside {}..={} bytes",
                    spec.chunk_size,
                    peer::MIN_CHUNK_SIZE,
                    peer::MAX_CHUNK_SIZE
                ),
            ));
        }
        // Globs compile on the blocking pool, not on the async workers.
        let (includes, excludes) = (spec.includes.clone(), spec.excludes.clone());
        let filter = peer::blocking(move || {
            Filter::new(&includes, &excludes).map_err(|e| peer::Error::denied(e.to_string()))
        })
        .await?;
        self.open_with(spec, filter)
    }

    fn open_with(&self, spec: SessionSpec, filter: Filter) -> Result<Arc<Session>, peer::Error> {
        let settings = Settings {
            chunk_size: spec.chunk_size,
            hash: spec.hash,
            filter,
            inplace: spec.inplace,
            keep_setid: self.config.keep_setid,
        };
        let upload = spec.direction == Direction::Upload;
        // Refuse early, before making any directory, when the server is full.
        self.check_room(&lock(&self.sessions))?;
        let tree = self.root.subtree(&spec.path, upload).map_err(|e| match e.kind {
            ErrorKind::NotFound => {
                peer::Error::new(ErrorKind::NotFound, format!("no directory {} on the server", spec.path))
            }
            _ => e,
        })?;
        let real = std::fs::read_link(tree.proc_path())
            .map_err(|e| peer::Error::io(format!("{}: {e}", spec.path)))?;
        let role = if upload {
            Role::Destination(LocalDestination::new(tree, settings))
        } else {
            Role::Source(LocalSource::new(tree, settings))
        };
        let mut sessions = lock(&self.sessions);
        self.check_room(&sessions)?;
        let mut writers = lock(&self.writers);
        if upload && writers.values().any(|other| overlaps(other, &real)) {
            return Err(peer::Error::new(
                ErrorKind::Busy,
                format!("another session is writing into {} or a directory overlapping it", spec.path),
            ));
        }
        let id = loop {
            let id = u64::from_le_bytes(random8().map_err(|e| peer::Error::io(e.to_string()))?);
            if id != 0 && !sessions.contains_key(&id) {
                break id;
            }
        };
        let secret = super::auth::random_secret().map_err(|e| peer::Error::io(e.to_string()))?;
        if upload {
            writers.insert(id, real);
        }
        drop(writers);
        let session = Arc::new(Session {
            id,
            role,
            max_payload: spec.chunk_size,
            _claim: upload.then(|| WriteClaim { writers: self.writers.clone(), id }),
            last_active: AtomicU64::new(self.now_ms()),
            // The opening connection counts from here, so the session
            // ends when it goes, even before the Welcome is sent.
            connections: AtomicUsize::new(1),
            ended: CancellationToken::new(),
            budget: Arc::new(Semaphore::new(SESSION_BUDGET)),
            secret,
        });
        sessions.insert(id, session.clone());
        tracing::info!(
            "session {id:016x}: {} {} opened",
            if upload { "upload into" } else { "download of" },
            spec.path
        );
        Ok(session)
    }

    fn check_room(&self, sessions: &HashMap<u64, Arc<Session>>) -> Result<(), peer::Error> {
        if sessions.len() >= self.config.max_sessions {
            return Err(peer::Error::new(
                ErrorKind::Limit,
                format!(
                    "the server has its maximum of {} sessions open; try again later",
                    self.config.max_sessions
                ),
            ));
        }
        Ok(())
    }

    /// Adds a connection to session `id` once `admit` (the check of its
    /// proof) says yes: counted at once, under the lock, so concurrent
    /// joins cannot pass the limit.
    fn join<T>(
        &self,
        id: u64,
        admit: impl FnOnce(&Session) -> Result<T, peer::Error>,
    ) -> Result<(Arc<Session>, T), peer::Error> {
        let sessions = lock(&self.sessions);
        let session = sessions
            .get(&id)
            .cloned()
            .ok_or_else(|| peer::Error::new(ErrorKind::NoSession, format!("no open session {id:016x}")))?;
        let admitted = admit(&session)?;
        if session.connections.load(Ordering::Relaxed) >= self.config.max_connections {
            return Err(peer::Error::new(
                ErrorKind::Limit,
                format!("session already has the maximum of {} connections", self.config.max_connections),
            ));
        }
        session.connections.fetch_add(1, Ordering::Relaxed);
        Ok((session, admitted))
    }

    fn end(&self, session: &Session, why: &str) {
        if lock(&self.sessions).remove(&session.id).is_some() {
            tracing::info!("session {:016x}: {why}", session.id);
        }
        session.ended.cancel();
    }
}

/// Does one of two real paths contain the other?
fn overlaps(a: &Path, b: &Path) -> bool {
    a.starts_with(b) || b.starts_with(a)
}

fn random8() -> std::io::Result<[u8; 8]> {
    let bytes = super::auth::random_bytes(8)?;
    let mut out = [0u8; 8];
    out.copy_from_slice(&bytes);
    Ok(out)
}

async fn expire_idle_sessions(state: Arc<State>) {
    let timeout = state.config.session_timeout;
    let every = (timeout / 4).clamp(Duration::from_millis(20), Duration::from_secs(1));
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        let now = state.now_ms();
        let idle: Vec<Arc<Session>> = lock(&state.sessions)
            .values()
            .filter(|s| {
                now.saturating_sub(s.last_active.load(Ordering::Relaxed)) > timeout.as_millis() as u64
            })
            .cloned()
            .collect();
        for session in idle {
            state.end(&session, &format!("expired after {} idle", humantime::format_duration(timeout)));
        }
    }
}

/// Serves one connection: its handshake (holding one of the server's
/// handshake permits until the session is opened or joined), then its
/// requests.
async fn serve_connection(
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
            _ => state.open(spec.clone()).await.map(|session| (session, key)),
        },
        Wants::Join(id) => state.join(*id, |session| {
            let key = key.for_join(&session.secret);
            handshake::check_proof(&greeting, &key).map(|()| key)
        }),
    };
    drop(handshake);
    let (session, key) = match admitted {
        Ok(admitted) => admitted,
        Err(e) => {
            tracing::warn!("{peer}: session refused: {e}");
            let _ = writer.send_msg(0, Message::Error { kind: e.kind, message: e.message }).await;
            writer.shutdown().await;
            return;
        }
    };
    let opened = matches!(greeting.wants, Wants::Open(_)).then_some(&session.secret);
    let welcome = handshake::welcome(
        &greeting,
        &key,
        session.id,
        state.config.session_timeout,
        session.max_payload,
        opened,
    );
    let sending = if writer.send_msg(0, welcome).await.is_ok() {
        reader.open(session.max_payload as usize);
        Some(serve_requests(&state, &session, reader, writer, peer).await)
    } else {
        None
    };
    // The session leaves the table before the socket closes. (An upload's
    // claim on its tree lasts until the last request still running for it
    // is done; see WriteClaim.)
    if session.connections.fetch_sub(1, Ordering::Relaxed) == 1 {
        state.end(&session, "ended: the client closed its connections");
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
type Outgoing = (Packet, Option<OwnedSemaphorePermit>);

async fn serve_requests(
    state: &Arc<State>,
    session: &Arc<Session>,
    mut reader: conn::Reader,
    mut writer: conn::Writer,
    peer: SocketAddr,
) -> tokio::task::JoinHandle<()> {
    let (tx, rx) = mpsc::channel::<Outgoing>(REQUESTS_PER_CONNECTION);
    writer.set_stall_timeout(state.config.session_timeout);
    let sending = tokio::spawn(send_answers(writer, rx, session.id, peer));
    let in_progress = Arc::new(Semaphore::new(REQUESTS_PER_CONNECTION));
    loop {
        let packet = tokio::select! {
            packet = reader.next() => packet,
            () = session.ended.cancelled() => break,
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
        session.last_active.store(state.now_ms(), Ordering::Relaxed);
        let id = packet.id;
        match packet.msg {
            Message::Ping => {
                let _ = tx.send((Packet::new(id, Message::Pong), None)).await;
            }
            Message::Close => {
                let _ = tx.send((Packet::new(id, Message::Done), None)).await;
                state.end(session, "closed by the client");
                break;
            }
            _ => {
                // Room for one more request on this connection, and for the
                // bytes it moves in the session's budget: until then this
                // connection is not read, which pushes back through TCP.
                let Ok(permit) = in_progress.clone().acquire_owned().await else { break };
                let cost = request_cost(&packet);
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
                    session.last_active.store(state.now_ms(), Ordering::Relaxed);
                    drop(permit);
                });
            }
        }
    }
    sending
}

/// Answers one request (a `Walk` with a stream of `Listing`s).
async fn serve_request(
    session: &Session,
    packet: Packet,
    budget: OwnedSemaphorePermit,
    tx: &mpsc::Sender<Outgoing>,
) {
    if let Message::Walk = packet.msg {
        stream_walk(session, packet.id, tx).await;
    } else {
        let response = answer(session, packet).await;
        let _ = tx.send((response, Some(budget))).await;
    }
}

/// Bytes a request takes of its session's budget while it is served: its
/// payload, the data its answer carries, and a little for the rest.
fn request_cost(packet: &Packet) -> u32 {
    let answer = match &packet.msg {
        Message::Read { len, .. } => u64::from(*len),
        Message::ReadFiles { files } => files.iter().map(|(_, len)| u64::from(*len)).sum(),
        _ => 0,
    };
    let cost = packet.payload.len() as u64 + answer + SMALL_REQUEST;
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
    let done = |()| (Message::Done, Bytes::new());
    match (role, msg) {
        (Role::Source(source), Message::Hash { target: HashTarget::Path(path), span }) => {
            let digests = source.hash(path, span).await?;
            let algo = source.settings().hash;
            Ok((Message::Hashes { digests: hash::pack(algo, &digests) }, Bytes::new()))
        }
        (Role::Source(source), Message::Read { path, offset, len }) => {
            let chunk = source.read(path, offset, len).await?;
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
                Message::Begin { path, size } => {
                    let b = dest.begin(path, size).await?;
                    Ok((Message::Begun { handle: b.handle, partial: b.partial }, Bytes::new()))
                }
                Message::CopyOld { handle, ranges } => dest.copy_old(handle, ranges).await.map(done),
                Message::Write { handle, offset, digest } => {
                    dest.write(handle, offset, payload, hash::decode(algo, &digest)?).await.map(done)
                }
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
                Message::Read { .. } | Message::ReadFiles { .. } => {
                    Err(peer::Error::denied("an upload session does not read files from the server"))
                }
                other => Err(unexpected(&other)),
            }
        }
        (
            Role::Source(_),
            msg @ (Message::Probe { .. }
            | Message::Hash { .. }
            | Message::Begin { .. }
            | Message::CopyOld { .. }
            | Message::Write { .. }
            | Message::Finish { .. }
            | Message::Discard { .. }
            | Message::PutFile { .. }
            | Message::PutFiles { .. }
            | Message::Apply { .. }),
        ) => Err(peer::Error::denied(format!(
            "a download session only lists, hashes and reads the server's files ({} refused)",
            msg.name()
        ))),
        (Role::Source(_), other) => Err(unexpected(&other)),
    }
}

fn unexpected(msg: &Message) -> peer::Error {
    peer::Error::new(ErrorKind::Protocol, format!("{} is not a request", msg.name()))
}
