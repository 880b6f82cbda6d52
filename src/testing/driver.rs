//! Runs [`Step`](super::ops::Step)s against a [`Fixture`]'s servers. Each connection is a
//! `tokio::io::duplex` stream handed to `Server::serve_stream`; a task
//! reads the answers with `FrameCodec`, and what they teach (the server's
//! nonces, session ids and secrets, file handles) serves later steps.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, ReadHalf, WriteHalf};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::codec::Decoder;

use super::fixture::{Fixture, SERVERS};
use super::ops::SLOTS;
use crate::codec::{FrameCodec, HashAlgo, Message, Packet, MAX_PAYLOAD_CAP, PROTOCOL_VERSION};
use crate::session::auth::{Secret, NONCE_LEN};
use crate::session::conn::BoxIo;
use crate::session::handshake::Wants;

/// Bytes a duplex stream buffers each way.
const DUPLEX_BUF: usize = 64 << 10;

/// The end of the line a wait that ran out of time leaves.
pub(super) const NO_ANSWER: &str = "no answer in time";

/// What the connection reader passes on.
pub(super) enum Event {
    Frame(Packet),
    Eof,
    /// The server broke the framing: a check failed.
    Broken(String),
}

/// What the first `Open` or `Join` sent on a connection asked for, whatever
/// frame it was.
#[derive(Clone, Copy)]
pub(super) enum Intent {
    /// An open of a session with this hash algorithm.
    Open(HashAlgo),
    Join,
}

/// The `Open` or `Join` a connection sent as its second frame, which the
/// server takes for its intent: what it asks for, the secret a join's
/// proof was made with (if the session's was known), and whether its
/// proof is the one a correct client sends.
#[derive(Clone)]
pub(super) struct Sent {
    pub(super) wants: Wants,
    pub(super) secret: Option<Secret>,
    pub(super) valid: bool,
}

/// The client side of one connection.
pub(super) struct Conn {
    pub(super) server: usize,
    /// The connection's number in the run (its client nonce derives from
    /// it).
    pub(super) serial: u16,
    writer: Option<WriteHalf<DuplexStream>>,
    events: mpsc::UnboundedReceiver<Event>,
    reader: JoinHandle<()>,
    pub(super) eof: bool,
    /// Bytes were sent that may not end on a frame boundary: answers
    /// cannot be expected any more.
    pub(super) desynced: bool,
    /// Frames with id 0 received (handshake answers, connection errors).
    pub(super) id0: usize,
    /// Whole frames sent: the server takes the first for `Hello` and the
    /// second for the intent.
    frames: usize,
    /// The nonce of the `Hello` sent as the first frame.
    pub(super) client_nonce: Option<Vec<u8>>,
    /// The nonce of the server's `Challenge`.
    pub(super) server_nonce: Option<Vec<u8>>,
    /// The first `Open` or `Join` sent (for the session's hash algorithm).
    pub(super) intent: Option<Intent>,
    /// The intent frame, if it was an `Open` or `Join` sent whole.
    pub(super) sent: Option<Sent>,
    pub(super) welcomed: bool,
    pub(super) refusal: Option<String>,
    pub(super) algo: HashAlgo,
    pub(super) chunk: u32,
    /// Requests sent and not answered yet, by id.
    pub(super) outstanding: HashMap<u32, usize>,
    pub(super) next_id: u32,
    pub(super) last_id: u32,
}

/// A session a `Welcome` of the run named.
pub(super) struct Known {
    pub(super) id: u64,
    pub(super) algo: HashAlgo,
    /// Unsealed from the `Welcome` of its `Open`, or proved by a join,
    /// when that handshake was known.
    pub(super) secret: Option<Secret>,
}

/// One run of steps.
pub(super) struct Run<'f> {
    pub(super) fx: &'f Fixture,
    pub(super) conns: Vec<Option<Conn>>,
    pub(super) serving: Vec<JoinHandle<()>>,
    pub(super) sessions: Vec<Known>,
    pub(super) handles: Vec<u64>,
    /// Servers that may have opened a session in this run.
    pub(super) opened: [bool; SERVERS],
    /// Servers that may have written into their root (an upload session).
    pub(super) dirty: [bool; SERVERS],
    pub(super) deadline: Instant,
    peers: u16,
    pub(super) trace: Vec<String>,
}

/// Reads the server's frames off one connection.
async fn read_frames(mut read: ReadHalf<DuplexStream>, events: mpsc::UnboundedSender<Event>) {
    let mut codec = FrameCodec::new(MAX_PAYLOAD_CAP);
    let mut buf = BytesMut::with_capacity(16 << 10);
    loop {
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(packet)) => {
                    let _ = events.send(Event::Frame(packet));
                }
                Ok(None) => break,
                Err(e) => {
                    let _ = events.send(Event::Broken(format!("the server sent a malformed frame: {e}")));
                    return;
                }
            }
        }
        match read.read_buf(&mut buf).await {
            Ok(0) | Err(_) => {
                let _ = events.send(if buf.is_empty() {
                    Event::Eof
                } else {
                    Event::Broken("the server closed a connection in the middle of a frame".into())
                });
                return;
            }
            Ok(_) => {}
        }
    }
}

/// A client nonce of `len` bytes, the same for the same connection of a
/// run every time.
pub(super) fn client_nonce(serial: u16, len: u8) -> Vec<u8> {
    let [hi, lo] = serial.to_be_bytes();
    (0..len).map(|i| [hi, lo, 0xc1][usize::from(i) % 3] ^ i).collect()
}

/// A line of the trace for `msg`.
fn describe(msg: &Message) -> String {
    match msg {
        Message::Error { kind, message } => format!("Error({kind:?}: {message})"),
        Message::Begun { handle, partial } => format!("Begun({handle}, partial={partial})"),
        Message::Hashes { digests } => format!("Hashes({} bytes)", digests.0.len()),
        Message::Listing { entries, problems, done, root } => format!(
            "Listing({} entries, {} problems, done={done}{})",
            entries.len(),
            problems.len(),
            if root.is_some() { ", root" } else { "" }
        ),
        Message::Applied { failures } => format!("Applied({} failures)", failures.len()),
        Message::FilesPut { failures } => format!("FilesPut({} failures)", failures.len()),
        Message::FilesRead { files } => format!("FilesRead({} files)", files.len()),
        Message::Probed { found } => {
            format!("Probed({} of {} found)", found.iter().filter(|f| f.is_some()).count(), found.len())
        }
        other => other.name().to_owned(),
    }
}

impl<'f> Run<'f> {
    pub(super) fn new(fx: &'f Fixture) -> Run<'f> {
        Run {
            fx,
            conns: (0..SLOTS).map(|_| None).collect(),
            serving: Vec::new(),
            sessions: Vec::new(),
            handles: Vec::new(),
            opened: [false; SERVERS],
            dirty: [false; SERVERS],
            deadline: Instant::now() + fx.budget,
            peers: 0,
            trace: Vec::new(),
        }
    }

    /// Adds `line` to what was received (and prints it, if the fixture
    /// echoes).
    fn note(&mut self, line: String) {
        if self.fx.echo {
            eprintln!("  {line}");
        }
        self.trace.push(line);
    }

    pub(super) fn conn(&mut self, slot: usize) -> &mut Conn {
        self.conns[slot].as_mut().expect("a step on a connected slot")
    }

    pub(super) fn connect(&mut self, slot: usize, server: usize) {
        self.disconnect(slot);
        let (client, served) = tokio::io::duplex(DUPLEX_BUF);
        self.peers = self.peers.wrapping_add(1);
        let peer = SocketAddr::from((Ipv4Addr::LOCALHOST, self.peers));
        let io: BoxIo = Box::new(served);
        let serving = Arc::clone(&self.fx.servers[server]);
        self.serving.push(tokio::spawn(async move { serving.serve_stream(io, peer).await }));
        let (read, write) = tokio::io::split(client);
        let (tx, events) = mpsc::unbounded_channel();
        self.conns[slot] = Some(Conn {
            server,
            serial: self.peers,
            writer: Some(write),
            events,
            reader: tokio::spawn(read_frames(read, tx)),
            eof: false,
            desynced: false,
            id0: 0,
            frames: 0,
            client_nonce: None,
            server_nonce: None,
            intent: None,
            sent: None,
            welcomed: false,
            refusal: None,
            algo: HashAlgo::Xxh3,
            chunk: 1024,
            outstanding: HashMap::new(),
            next_id: 0,
            last_id: 0,
        });
    }

    /// Drops the connection, once what already came is taken in: the
    /// server sees the end of the stream.
    pub(super) fn disconnect(&mut self, slot: usize) {
        self.pump(slot);
        if let Some(conn) = self.conns[slot].take() {
            conn.reader.abort();
        }
    }

    /// Takes in what the server sent.
    fn absorb(&mut self, slot: usize, event: Event) {
        if self.conns[slot].is_none() {
            return;
        }
        let line = match &event {
            Event::Eof => format!("{slot} closed"),
            Event::Frame(packet) => format!("{slot} {} {}", packet.id, describe(&packet.msg)),
            Event::Broken(why) => panic!("{why}"),
        };
        self.note(line);
        let Some(conn) = self.conns[slot].as_mut() else { return };
        let Event::Frame(packet) = event else {
            conn.eof = true;
            return;
        };
        if packet.id == 0 {
            conn.id0 += 1;
        }
        match &packet.msg {
            Message::Challenge { version, nonce, token_required } => {
                assert_eq!(packet.id, 0, "a Challenge with an id");
                assert_eq!(*version, PROTOCOL_VERSION);
                assert_eq!(*token_required, conn.server == 0, "token_required of server {}", conn.server);
                assert_eq!(nonce.len(), NONCE_LEN, "nonce of {} bytes", nonce.len());
                assert!(conn.server_nonce.is_none(), "a second Challenge");
                conn.server_nonce = Some(nonce.to_vec());
            }
            Message::Welcome { session, max_payload, proof, secret, .. } => {
                assert_eq!(packet.id, 0, "a Welcome with an id");
                assert_ne!(*session, 0, "session id 0");
                let secret =
                    super::checks::check_welcome(conn, *session, proof, secret.as_ref().map(|s| &s[..]));
                let known = self.sessions.iter().find(|k| k.id == *session);
                let algo = match (&conn.sent, conn.intent) {
                    (Some(Sent { wants: Wants::Open(spec), .. }), _) => spec.hash,
                    (None, Some(Intent::Open(algo))) => algo,
                    _ => known.map_or(HashAlgo::Xxh3, |k| k.algo),
                };
                conn.welcomed = true;
                conn.algo = algo;
                conn.chunk = *max_payload;
                self.opened[conn.server] = true;
                match self.sessions.iter_mut().find(|k| k.id == *session) {
                    Some(known) => known.secret = known.secret.or(secret),
                    None => self.sessions.push(Known { id: *session, algo, secret }),
                }
            }
            Message::Begun { handle, .. } => self.handles.push(*handle),
            Message::Error { message, .. } if packet.id == 0 => conn.refusal = Some(message.clone()),
            _ => {}
        }
        if !matches!(packet.msg, Message::Listing { done: false, .. }) {
            if let Some(n) = conn.outstanding.get_mut(&packet.id) {
                *n -= 1;
                if *n == 0 {
                    conn.outstanding.remove(&packet.id);
                }
            }
        }
    }

    /// Takes in what already arrived on `slot`, without waiting.
    pub(super) fn pump(&mut self, slot: usize) {
        while let Some(Ok(event)) = self.conns[slot].as_mut().map(|c| c.events.try_recv()) {
            self.absorb(slot, event);
        }
    }

    /// Takes in answers until `until` holds, the connection ends, or the
    /// run's time is up.
    pub(super) async fn wait(&mut self, slot: usize, until: impl Fn(&Conn) -> bool) {
        loop {
            let deadline = self.deadline;
            let Some(conn) = self.conns[slot].as_mut() else { return };
            if conn.eof || conn.desynced || until(conn) {
                return;
            }
            let event = match tokio::time::timeout_at(deadline, conn.events.recv()).await {
                Ok(Some(event)) => event,
                Ok(None) => Event::Eof,
                Err(_) => {
                    self.note(format!("{slot}: {NO_ANSWER}"));
                    return;
                }
            };
            self.absorb(slot, event);
        }
    }

    /// Sends `bytes`; false if they could not be sent (whole).
    pub(super) async fn send(&mut self, slot: usize, bytes: &[u8]) -> bool {
        let deadline = self.deadline;
        let conn = self.conn(slot);
        let Some(writer) = conn.writer.as_mut() else { return false };
        // A failed write: the server has closed (its answers, and the
        // end, are still to be read) or stopped reading until the end of
        // the run.
        if !matches!(tokio::time::timeout_at(deadline, writer.write_all(bytes)).await, Ok(Ok(()))) {
            conn.writer = None;
            return false;
        }
        true
    }

    /// Ends the client's side of the stream.
    pub(super) async fn shutdown_write(&mut self, slot: usize) {
        let deadline = self.deadline;
        if let Some(mut writer) = self.conn(slot).writer.take() {
            let _ = tokio::time::timeout_at(deadline, writer.shutdown()).await;
        }
    }

    /// Sends a whole frame; once it is sent, notes what the server makes
    /// of it if it is the connection's first frame (`hello`: the nonce of a
    /// `Hello`) or its second (`intent`: an `Open` or `Join`).
    pub(super) async fn send_frame(
        &mut self,
        slot: usize,
        bytes: &[u8],
        hello: Option<Vec<u8>>,
        intent: Option<Sent>,
    ) -> bool {
        if !self.send(slot, bytes).await {
            return false;
        }
        let conn = self.conn(slot);
        match conn.frames {
            0 => conn.client_nonce = hello,
            1 => conn.sent = intent,
            _ => {}
        }
        conn.frames += 1;
        true
    }

    /// Sends a handshake frame and waits for the answer, an id-0 frame.
    /// Unless the answer (or the end) came, a session may have opened.
    pub(super) async fn send_intent(&mut self, slot: usize, bytes: &[u8], intent: Option<Sent>, wait: bool) {
        let before = self.conn(slot).id0;
        if self.send_frame(slot, bytes, None, intent).await && wait {
            self.wait(slot, |c| c.id0 > before).await;
        }
        let conn = self.conn(slot);
        if conn.welcomed || !(conn.id0 > before || conn.eof) {
            let server = conn.server;
            self.opened[server] = true;
        }
    }
}
