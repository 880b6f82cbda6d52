//! A blocking connection that speaks frames by hand, for tests that play
//! a client (or a server) that the library would never be: it writes frames
//! with `Packet::encode_head` (or bytes built by the test, see
//! `pareco::testing::frames`) and decodes what comes back with the
//! library's `FrameCodec`; its handshake is the test kit's
//! (`pareco::testing::client`).

use std::io::{ErrorKind as IoKind, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use pareco::codec::{
    Direction, ErrorKind, FrameCodec, HashAlgo, Message, Meta, Mtime, Packet, RelPath, SessionSpec,
    MAX_PAYLOAD_CAP, PROTOCOL_VERSION,
};
use pareco::peer::hash;
use pareco::session::auth::Secret;
use pareco::session::handshake::Wants;
use pareco::testing::client::{intent_message, key_of, Handshake};
use pareco::testing::frames::frame_bytes;
use serde_bytes::ByteBuf;
use tokio_util::codec::Decoder;

use crate::util::*;

/// The chunk size raw sessions open with.
pub const CHUNK: u32 = 4096;

/// How long a raw connection waits for an answer (or for the close) before
/// it calls the other side stuck.
pub const WAIT: Duration = Duration::from_secs(5);

/// What a client needs to join a session: its id and secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket {
    pub id: u64,
    pub secret: Secret,
}

/// A blocking connection that speaks frames by hand.
pub struct Raw {
    pub stream: TcpStream,
    buf: BytesMut,
    codec: FrameCodec,
    /// The handshake's nonces (the client's, the server's), once sent.
    nonces: Option<(Vec<u8>, Vec<u8>)>,
    /// The handshake of the `Open`/`Join` sent, and the secret a join
    /// used, to check the `Welcome`.
    sent: Option<(Handshake, Option<Secret>)>,
}

impl Raw {
    pub fn connect(port: u16) -> Raw {
        Raw::over(TcpStream::connect(("127.0.0.1", port)).expect("connect"), WAIT)
    }

    /// The server's end of a connection a fake server accepted: it waits
    /// as long as a real server would for the client's next request.
    pub fn accepted(stream: TcpStream) -> Raw {
        Raw::over(stream, Duration::from_secs(60))
    }

    /// A raw connection over `stream` that waits `wait` for a frame.
    fn over(stream: TcpStream, wait: Duration) -> Raw {
        stream.set_read_timeout(Some(wait)).unwrap();
        stream.set_nodelay(true).unwrap();
        let codec = FrameCodec::new(MAX_PAYLOAD_CAP);
        Raw { stream, buf: BytesMut::new(), codec, nonces: None, sent: None }
    }

    /// The next frame, or `None` when the stream ended or failed in any
    /// way (for a fake server, whose client may go at any moment).
    pub fn next(&mut self) -> Option<Packet> {
        loop {
            if let Some(packet) = self.codec.decode(&mut self.buf).ok()? {
                return Some(packet);
            }
            let mut chunk = [0u8; 16 * 1024];
            match self.stream.read(&mut chunk) {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// Sends `bytes` in one write.
    pub fn send_bytes(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write to the server");
    }

    pub fn send(&mut self, id: u32, msg: Message) {
        self.send_with(id, msg, Bytes::new());
    }

    pub fn send_with(&mut self, id: u32, msg: Message, payload: Bytes) {
        self.send_bytes(&frame_bytes(&Packet::with_payload(id, msg, payload)));
    }

    /// The next frame, or `None` once the server has closed the connection
    /// (cleanly: a reset or a frame cut short fails the test).
    pub fn recv(&mut self) -> Option<Packet> {
        loop {
            if let Some(packet) = self.codec.decode(&mut self.buf).expect("the server sent a bad frame") {
                return Some(packet);
            }
            let mut chunk = [0u8; 16 * 1024];
            match self.stream.read(&mut chunk) {
                Ok(0) => {
                    assert!(self.buf.is_empty(), "connection closed in the middle of a frame");
                    return None;
                }
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), IoKind::WouldBlock | IoKind::TimedOut) => {
                    panic!("no frame and no close from the server within {WAIT:?}")
                }
                Err(e) if e.kind() == IoKind::Interrupted => {}
                Err(e) => panic!("reading from the server: {e}"),
            }
        }
    }

    /// The next frame must be an `Error` of `kind`; returns its id and text.
    pub fn error(&mut self, kind: ErrorKind) -> (u32, String) {
        match self.recv() {
            Some(Packet { id, msg: Message::Error { kind: got, message }, .. }) => {
                assert_eq!(got, kind, "error {message:?}");
                (id, message)
            }
            other => panic!("expected an {kind:?} error, got {other:?}"),
        }
    }

    /// The server must close the connection now, with nothing more sent.
    pub fn closed(&mut self) {
        if let Some(packet) = self.recv() {
            panic!("expected the server to close the connection, got {packet:?}");
        }
    }

    /// A connection-level refusal: an `Error` frame with id 0, then the close.
    pub fn refused(&mut self, kind: ErrorKind) -> String {
        let (id, message) = self.error(kind);
        assert_eq!(id, 0, "a connection-level error has id 0: {message}");
        self.closed();
        message
    }

    /// Sends `Hello` (with a fresh nonce) and reads the `Challenge`: its
    /// nonce and whether a token is required.
    pub fn hello(&mut self) -> (Vec<u8>, bool) {
        let nonce = pareco::session::auth::random_bytes(32).unwrap();
        self.send(0, Message::Hello { version: PROTOCOL_VERSION, nonce: ByteBuf::from(nonce.clone()) });
        match self.recv() {
            Some(Packet { msg: Message::Challenge { version, nonce: theirs, token_required }, .. }) => {
                assert_eq!(version, PROTOCOL_VERSION);
                self.nonces = Some((nonce, theirs.to_vec()));
                (theirs.into_vec(), token_required)
            }
            other => panic!("expected Challenge, got {other:?}"),
        }
    }

    /// Handshake up to sending the `Open` or `Join` of `wants`, with the
    /// proof made with `token` if given (the no-token key otherwise) and,
    /// for a join, the session's secret.
    fn intent(&mut self, token: Option<&str>, wants: Wants, secret: Option<Secret>) {
        self.hello();
        let (client, server) = self.nonces.clone().expect("nonces");
        let handshake = Handshake::of_wants(&key_of(token), secret.as_ref(), &client, &server, &wants);
        self.send(0, intent_message(wants, Some(handshake.client_proof().to_vec())));
        self.sent = Some((handshake, secret));
    }

    pub fn open(&mut self, token: Option<&str>, spec: SessionSpec) {
        self.intent(token, Wants::Open(spec), None);
    }

    pub fn join(&mut self, token: Option<&str>, session: Ticket) {
        self.intent(token, Wants::Join(session.id), Some(session.secret));
    }

    /// The next frame must be `Welcome`, with the server's proof; returns
    /// the session's ticket (its secret unsealed for an `Open`).
    pub fn welcome(&mut self) -> Ticket {
        let (handshake, joined) = self.sent.take().expect("an Open or Join sent");
        match self.recv() {
            Some(Packet { msg: Message::Welcome { session, proof, secret, .. }, .. }) => {
                assert!(handshake.server_proof_matches(&proof), "the server's proof");
                let secret = match (joined, secret) {
                    (Some(secret), None) => secret,
                    (None, Some(sealed)) => handshake.unseal(&sealed).expect("a secret of 32 bytes"),
                    other => panic!("unexpected secrets {other:?}"),
                };
                Ticket { id: session, secret }
            }
            other => panic!("expected Welcome, got {other:?}"),
        }
    }

    /// A connection with a session opened for `spec`.
    pub fn opened(port: u16, token: Option<&str>, spec: SessionSpec) -> (Raw, Ticket) {
        let mut raw = Raw::connect(port);
        raw.open(token, spec);
        let session = raw.welcome();
        (raw, session)
    }

    /// Sends a request and returns the answer, which must carry its id.
    pub fn request(&mut self, id: u32, msg: Message, payload: Bytes) -> Message {
        self.request_with_payload(id, msg, payload).0
    }

    /// A request and its answer, with the answer's payload.
    pub fn request_with_payload(&mut self, id: u32, msg: Message, payload: Bytes) -> (Message, Bytes) {
        self.send_with(id, msg, payload);
        let packet = self.recv().expect("the server closed the connection instead of answering");
        assert_eq!(packet.id, id, "answer to another request: {packet:?}");
        (packet.msg, packet.payload)
    }

    /// A request that must fail with `kind`; returns the error's text.
    pub fn request_fails(&mut self, id: u32, msg: Message, payload: Bytes, kind: ErrorKind) -> String {
        match self.request(id, msg, payload) {
            Message::Error { kind: got, message } => {
                assert_eq!(got, kind, "error {message:?}");
                message
            }
            other => panic!("expected an {kind:?} error, got {other:?}"),
        }
    }

    /// The session still answers on this connection.
    pub fn pings(&mut self, id: u32) {
        assert_eq!(self.request(id, Message::Ping, Bytes::new()), Message::Pong);
    }

    /// Ends the session with `Close` and waits until the server has closed
    /// the connection (by then the session is gone from its table).
    pub fn close_session(mut self, id: u32) {
        assert_eq!(self.request(id, Message::Close, Bytes::new()), Message::Done);
        self.closed();
    }
}

// ---------------------------------------------------------------------------
// Helpers for raw sessions
// ---------------------------------------------------------------------------

pub fn rel(path: &str) -> RelPath {
    RelPath::new(path).unwrap()
}

pub fn spec(direction: Direction, path: &str) -> SessionSpec {
    SessionSpec::new(direction, rel(path), CHUNK, HashAlgo::Xxh3)
}

pub fn upload(path: &str) -> SessionSpec {
    spec(Direction::Upload, path)
}

pub fn download(path: &str) -> SessionSpec {
    spec(Direction::Download, path)
}

pub fn digest(data: &[u8]) -> ByteBuf {
    hash::encode(HashAlgo::Xxh3, hash::digest(HashAlgo::Xxh3, data))
}

pub fn meta() -> Meta {
    Meta { mode: 0o644, mtime: Mtime { secs: 1_600_000_000, nanos: 0 }, extra: None }
}

/// The server still serves a normal upload (into `path`, a fresh name so
/// that no leftover session of the test overlaps it).
pub fn still_serves(server: &Server, path: &str, extra: &[&str]) {
    let src = tempfile::tempdir().unwrap();
    file(&src.path().join("small.txt"), b"still serving\n", 0o644, (1_600_000_000, 1));
    file(&src.path().join("sub/chunks.bin"), &noise(3 * CHUNK as usize + 5, 21), 0o600, (1_600_000_002, 2));
    let local = src.path().to_str().unwrap();
    let url = server.url(path);
    let mut args = vec!["send", local, &url, "-c", "4096", "-n", "2"];
    args.extend_from_slice(extra);
    sync_ok(&args);
    assert_same_tree(src.path(), &server.path(path));
}
