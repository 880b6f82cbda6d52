//! The server: accepts connections, runs their handshake, keeps the table
//! of open sessions, and answers each request with the session's local
//! peer role.
//!
//! - this file: the configuration, the listener and the accept loop (TLS
//!   included), expiry.
//! - `table`: the open sessions, their limits and claims, expiry rules.
//! - `connection`: one connection's handshake, request loop and writer.
//! - `dispatch`: answering one request with the session's role.
//!
//! Each connection has a reader loop and a writer task. Requests are
//! answered concurrently (up to [`REQUESTS_PER_CONNECTION`] at once, within
//! the session's [`SESSION_BUDGET`]; beyond that the reader stops reading,
//! which pushes back through TCP). A session ends when the client closes
//! it, or when nothing arrived on any of its connections for the idle
//! timeout; then everything it was waiting for is cancelled. A session
//! whose connections are all gone stays for its client to join again (a
//! link outage), until it expires or a new session needs its place or its
//! tree (it is then taken over).

mod connection;
mod dispatch;
mod members;
mod replay;
mod table;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::codec::{ErrorKind, SessionSpec};
use crate::peer::{self, Filter, Remembered, Tree};

use super::auth::Key;
use super::conn::BoxIo;
use super::tls::Acceptor;
use super::SessionError;
use connection::serve_connection;
use members::Member;
use table::{Limits, Refusal, Session, Table};

/// A connection must finish its handshake within this time.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long opening a session waits for the sessions it took over to end.
const TAKEOVER_WAIT: Duration = Duration::from_secs(10);
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
/// Steps of file work one session runs at once, of the pool's
/// [`peer::BLOCKING_THREADS`]: no session can take every thread.
pub const FILE_WORK_PER_SESSION: usize = 8;
/// Walks one session may have in progress at once (each holds up to
/// [`peer::walk::READ_AHEAD`] directory listings in memory).
pub const WALKS_PER_SESSION: usize = 2;
/// Bytes of frames being read one session may make the server buffer, at
/// most one frame per connection: a session of chunks of C bytes may join
/// at most `FRAMES_PER_SESSION / C` connections (at least 2).
pub const FRAMES_PER_SESSION: usize = 512 << 20;
/// Connections a session with chunks of `chunk` bytes may have at most, so
/// that the frames being read on them stay within [`FRAMES_PER_SESSION`]
/// (a server's `--max-connections` may allow fewer).
pub fn connections_for(chunk: u32) -> usize {
    (FRAMES_PER_SESSION / (chunk as usize).max(1)).max(2)
}

/// Connections in their handshake at once (TLS included); more wait to be
/// accepted, so that peers that have proved nothing can take little.
pub const MAX_HANDSHAKES: usize = 256;

/// Sessions with globs being opened at once (the globs compiled on the
/// blocking pool, which every session's file work shares); the others wait
/// up to [`OPENING_WAIT`], then are refused `Busy`. A session without
/// globs has nothing to compile and does not wait.
pub const MAX_OPENING: usize = 8;

/// How long an `Open` with globs waits for its turn: within the time a
/// client asks again after `Busy`, so that one refusal is not the end of
/// its run.
pub const OPENING_WAIT: Duration = Duration::from_secs(2);

/// How a server is set up. (Its `Debug` shows no token.)
#[derive(Clone)]
pub struct ServerConfig {
    /// The directory served; nothing outside it is ever touched.
    pub root: PathBuf,
    /// The token clients must prove; `None` lets anyone open sessions.
    pub token: Option<String>,
    /// A session with no frame and no finished request for this long
    /// expires.
    pub session_timeout: Duration,
    /// Sessions open at once at most.
    pub max_sessions: usize,
    /// Connections per session at most.
    pub max_connections: usize,
    /// The certificate to speak TLS with (then TLS only); `None` for plain
    /// TCP.
    pub tls: Option<Acceptor>,
    /// Keep the setuid and setgid bits of uploaded files.
    pub keep_setid: bool,
    /// The persistent digest cache every session hashes through, if any.
    pub cache: Option<Arc<Remembered>>,
    /// `--bwlimit`: the most bytes per second each session sends and
    /// accepts (the client's own limit wins when lower).
    pub bwlimit: Option<u64>,
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
            .field("cache", &self.cache.is_some())
            .field("bwlimit", &self.bwlimit)
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

/// What every connection of a server shares.
struct State {
    table: Table,
    key: Option<Key>,
    config: ServerConfig,
    epoch: Instant,
    /// Permits are connections in their handshake ([`MAX_HANDSHAKES`]).
    handshakes: Arc<Semaphore>,
    /// Permits are sessions being opened ([`MAX_OPENING`]).
    opening: Semaphore,
}

impl Server {
    /// Opens the root and binds the listening socket.
    pub async fn bind(addr: &str, config: ServerConfig) -> Result<Server, SessionError> {
        let root = Tree::open(&config.root)
            .map_err(|source| SessionError::Root { path: config.root.clone(), source })?;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| SessionError::Listen { addr: addr.to_owned(), source })?;
        let key = config.token.as_deref().map(Key::from_token);
        let limits = Limits {
            max_sessions: config.max_sessions,
            max_connections: config.max_connections,
            keep_setid: config.keep_setid,
        };
        let state = State {
            table: Table::new(root, limits, config.cache.clone(), config.tls.is_some()),
            key,
            config,
            epoch: Instant::now(),
            handshakes: Arc::new(Semaphore::new(MAX_HANDSHAKES)),
            opening: Semaphore::new(MAX_OPENING),
        };
        Ok(Server { listener, state: Arc::new(state) })
    }

    /// The address the server listens on (with its port, when bound to
    /// port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves one stream that was accepted elsewhere, as a plain
    /// connection (tests and the fuzz target drive the server's state
    /// machine this way). A server with TLS refuses it: its sessions rely
    /// on TLS to authenticate every chunk (they do not hash them again).
    pub async fn serve_stream(&self, io: BoxIo, peer: SocketAddr) {
        if self.state.config.tls.is_some() {
            tracing::warn!("{peer}: a stream without TLS given to a TLS server: closed");
            return;
        }
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

impl State {
    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Opens a session for `spec`, with the opening connection as its
    /// first member: its globs compiled on the blocking pool, not on the
    /// async workers.
    async fn open(&self, spec: SessionSpec) -> Result<(Arc<Session>, Member), peer::Error> {
        Table::check_chunk_size(&spec)?;
        let (includes, excludes) = (spec.includes.clone(), spec.excludes.clone());
        let filter = if includes.is_empty() && excludes.is_empty() {
            Filter::default()
        } else {
            let busy =
                || peer::Error::new(ErrorKind::Busy, "too many sessions are being opened at once; try again");
            let opening = tokio::time::timeout(OPENING_WAIT, self.opening.acquire()).await;
            let Ok(Ok(_opening)) = opening else { return Err(busy()) };
            peer::work::run_blocking(move || {
                Filter::new(&includes, &excludes).map_err(|e| peer::Error::denied(e.to_string()))
            })
            .await?
        };
        // Sessions taken over are ending: their claims on the tree go once
        // their requests, cancelled, are done.
        let deadline = Instant::now() + TAKEOVER_WAIT;
        loop {
            match self.table.open(spec.clone(), filter.clone(), self.now_ms()) {
                Ok((session, member)) => {
                    session.pacer.agree(self.config.bwlimit);
                    if let Some(rate) = session.pacer.rate() {
                        tracing::info!("session {:016x}: sends within {rate} bytes/s", session.id);
                    }
                    return Ok((session, member));
                }
                Err(Refusal::Refused(e)) => return Err(e),
                Err(Refusal::Wait) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(Refusal::Wait) => {
                    return Err(peer::Error::new(
                        ErrorKind::Busy,
                        format!("a session that was writing into {} is still ending; try again", spec.path),
                    ))
                }
            }
        }
    }
}

/// Ends the sessions idle for longer than the session timeout, checking
/// every quarter of it (20 ms to 1 s).
async fn expire_idle_sessions(state: Arc<State>) {
    let timeout = state.config.session_timeout;
    let every = (timeout / 4).clamp(Duration::from_millis(20), Duration::from_secs(1));
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        for session in state.table.idle(state.now_ms(), timeout.as_millis() as u64) {
            let why = format!("expired after {} idle", humantime::format_duration(timeout));
            state.table.end(&session, &why);
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt;

    use super::*;

    fn config(root: PathBuf) -> ServerConfig {
        ServerConfig {
            root,
            token: None,
            session_timeout: Duration::from_secs(60),
            max_sessions: 4,
            max_connections: 4,
            tls: None,
            cache: None,
            keep_setid: false,
            bwlimit: None,
        }
    }

    /// Opening sessions compiles their globs on the pool every session's
    /// file work shares: a flood of opens waits its turn, then is `Busy`.
    #[tokio::test(start_paused = true)]
    async fn sessions_are_opened_a_few_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let server = Server::bind("127.0.0.1:0", config(dir.path().to_owned())).await.unwrap();
        let plain = SessionSpec::new(
            crate::codec::Direction::Download,
            crate::codec::RelPath::root(),
            1 << 20,
            crate::codec::HashAlgo::Xxh3,
        );
        let globbed = || SessionSpec { excludes: vec!["*.tmp".into()], ..plain.clone() };
        let held = server.state.opening.acquire_many(MAX_OPENING as u32).await.unwrap();
        let refused = server.state.open(globbed()).await.err().expect("refused while others are opening");
        assert_eq!(refused.kind, ErrorKind::Busy, "{refused}");
        // Without globs there is nothing to compile, and no turn to wait.
        assert!(server.state.open(plain.clone()).await.is_ok());
        drop(held);
        assert!(server.state.open(globbed()).await.is_ok());
    }

    /// A TLS server's sessions trust TLS to authenticate every chunk: a
    /// stream that did not come through TLS is closed before it is read.
    #[tokio::test]
    async fn a_tls_server_closes_a_stream_without_tls() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir(&root).unwrap();
        let names = ["127.0.0.1".to_owned()];
        let tls = super::super::tls::self_signed::load_or_make(&dir.path().join("tls"), &names).unwrap();
        let config = ServerConfig { tls: Some(tls.acceptor), ..config(root) };
        let server = Server::bind("127.0.0.1:0", config).await.unwrap();
        let (mut client, served) = tokio::io::duplex(1024);
        let peer = "127.0.0.1:9".parse().unwrap();
        let serving = server.serve_stream(Box::new(served), peer);
        tokio::time::timeout(Duration::from_secs(5), serving).await.expect("closed at once, not served");
        assert_eq!(client.read(&mut [0u8; 16]).await.unwrap(), 0);
    }
}
