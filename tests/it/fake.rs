//! A fake server that lies: it speaks the protocol (the handshake, then
//! frames through the library's codec) and answers every request with
//! whatever the test's script says, so that the client's defences can be
//! tested against a server no honest implementation would be.

use std::net::TcpListener;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use pareco::codec::{ErrorKind, Message, Packet, PROTOCOL_VERSION};
use serde_bytes::ByteBuf;

use pareco::session::auth::{Key, Transcript};
use pareco::session::handshake::{intent_bytes, Wants};

use crate::raw::Raw;

/// What the fake server answers to one request: any number of frames
/// (several `Listing`s for a `Walk`), each with its payload.
pub type Answers = Vec<(Message, Bytes)>;

/// A fake server listening on 127.0.0.1 until the test process ends.
pub struct Fake {
    pub port: u16,
}

impl Fake {
    /// Serves every connection with `script`, which sees each request and
    /// returns the answers. `Ping` and `Close` are answered as a real
    /// server would.
    pub fn start(script: impl Fn(&Message) -> Answers + Send + Sync + 'static) -> Fake {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("local addr").port();
        let script = Arc::new(script);
        // The chunk size of the session opened, for the connections joining it.
        let chunk = Arc::new(AtomicU32::new(1 << 20));
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let (script, chunk) = (script.clone(), chunk.clone());
                std::thread::spawn(move || serve(Raw::accepted(stream), &*script, &chunk));
            }
        });
        Fake { port }
    }

    pub fn url(&self, path: &str) -> String {
        format!("pareco://127.0.0.1:{}/{path}", self.port)
    }
}

/// The secret of the fake server's one session.
const SECRET: [u8; 32] = [3; 32];

fn serve(mut conn: Raw, script: &(dyn Fn(&Message) -> Answers + Send + Sync), chunk: &AtomicU32) {
    let Some(Packet { msg: Message::Hello { nonce: client_nonce, .. }, .. }) = conn.next() else { return };
    let nonce = [7u8; 32];
    let challenge = Message::Challenge {
        version: PROTOCOL_VERSION,
        nonce: ByteBuf::from(nonce.to_vec()),
        token_required: false,
    };
    conn.send(0, challenge);
    let (wants, max_payload) = match conn.next() {
        Some(Packet { msg: Message::Open { spec, .. }, .. }) => {
            chunk.store(spec.chunk_size, Ordering::SeqCst);
            let size = spec.chunk_size;
            (Wants::Open(spec), size)
        }
        Some(Packet { msg: Message::Join { session, .. }, .. }) => {
            (Wants::Join(session), chunk.load(Ordering::SeqCst))
        }
        _ => return,
    };
    // A server without a token: the no-token key, and for a join the
    // session's join key, prove what a real one would.
    let transcript = Transcript::new(&client_nonce, &nonce, b"", &intent_bytes(&wants).expect("intent"));
    let (key, secret) = match wants {
        Wants::Open(_) => (Key::none(), Some(ByteBuf::from(Key::none().seal(&transcript, &SECRET).to_vec()))),
        Wants::Join(_) => (Key::none().for_join(&SECRET), None),
    };
    let proof = ByteBuf::from(key.server_proof(&transcript).to_vec());
    let max_connections = 64;
    conn.send(
        0,
        Message::Welcome {
            session: 1,
            idle_timeout_ms: 150_000,
            max_payload,
            max_connections,
            proof,
            secret,
            bwlimit: 0,
            privileged: false,
        },
    );
    while let Some(packet) = conn.next() {
        let answers = match packet.msg {
            Message::Ping => vec![(Message::Pong, Bytes::new())],
            Message::Close => vec![(Message::Done, Bytes::new())],
            ref msg => script(msg),
        };
        for (msg, payload) in answers {
            conn.send_with(packet.id, msg, payload);
        }
    }
}

/// The answer to anything a script does not expect.
pub fn refuse(msg: &Message) -> Answers {
    let message = format!("the fake server does not answer {}", msg.name());
    vec![(Message::Error { kind: ErrorKind::Io, message }, Bytes::new())]
}
