//! The first frames of every connection: versions and nonces, then what
//! the client asks for with its proof, then the server's answer with its
//! own proof (see [`super::auth`]).
//!
//! ```text
//! client                                   server
//!   Hello{version, nonce}          ──▶
//!                                  ◀──   Challenge{version, nonce, token_required}
//!   Open{proof, spec} | Join{session, proof} ──▶
//!                                  ◀──   Welcome{session, idle_timeout_ms, max_payload, max_connections, proof, secret, bwlimit}
//!                                         (or Error, and the connection closes)
//! ```

use std::time::Duration;

use serde_bytes::ByteBuf;

use crate::codec::{ErrorKind, Message, Packet, SessionSpec, PROTOCOL_VERSION};
use crate::peer;

use super::auth::{self, Key, Secret, Transcript};
use super::conn::{foreign_protocol, Reader, Writer};
use super::SessionError;

/// What a client asks for after the challenge.
#[derive(Debug, Clone, PartialEq)]
pub enum Intent {
    /// Open a new session with this spec.
    Open(SessionSpec),
    /// Join an open session, whose secret came with its `Welcome`.
    Join {
        /// The session's id.
        session: u64,
        /// The session's secret.
        secret: Secret,
    },
}

/// What the server granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Welcome {
    /// The session's id.
    pub session: u64,
    /// The session expires after this long without a frame.
    pub idle_timeout: Duration,
    /// The largest payload either side may send on the connection (the
    /// chunk size).
    pub max_payload: u32,
    /// The most connections the session takes.
    pub max_connections: u32,
    /// The session's secret, to join it with more connections.
    pub secret: Secret,
    /// The server runs as root (told only to sessions keeping owners,
    /// groups or attributes).
    pub privileged: bool,
    /// The session's bandwidth limit, bytes per second, if any.
    pub bwlimit: Option<u64>,
}

/// What the server learnt from a client's handshake: what it asks for,
/// its proof (unchecked), and the transcript to check it on.
#[derive(Debug, Clone)]
pub struct Greeting {
    /// What the client asks for.
    pub wants: Wants,
    /// The client's proof, as sent.
    pub proof: Option<ByteBuf>,
    /// The digest of this handshake, which the proofs are made on.
    pub transcript: Transcript,
}

/// What a client asks the server for.
#[derive(Debug, Clone, PartialEq)]
pub enum Wants {
    /// Open a new session with this spec.
    Open(SessionSpec),
    /// Join the open session with this id.
    Join(u64),
}

/// The bytes of a client's intent that its transcript covers: `open` and
/// the MessagePack encoding of the spec, or `join` and the session id as a
/// big-endian u64.
pub fn intent_bytes(wants: &Wants) -> Result<Vec<u8>, SessionError> {
    Ok(match wants {
        Wants::Open(spec) => {
            let mut bytes = b"open".to_vec();
            rmp_serde::encode::write(&mut bytes, spec)
                .map_err(|e| SessionError::Protocol(format!("cannot encode the session spec: {e}")))?;
            bytes
        }
        Wants::Join(session) => [&b"join"[..], &session.to_be_bytes()].concat(),
    })
}

/// Runs the client side of the handshake over a channel whose binding is
/// `binding` (empty without TLS); checks the server's proof.
pub async fn client(
    reader: &mut Reader,
    writer: &mut Writer,
    token: Option<&Key>,
    intent: Intent,
    binding: &[u8],
) -> Result<Welcome, SessionError> {
    let client_nonce = auth::random_bytes(auth::NONCE_LEN)?;
    let hello = Message::Hello { version: PROTOCOL_VERSION, nonce: ByteBuf::from(client_nonce.clone()) };
    writer.send_msg(0, hello).await?;
    let (server_nonce, token_required) = match expect(reader, "Challenge").await? {
        Message::Challenge { version, .. } if version != PROTOCOL_VERSION => {
            return Err(refused(
                ErrorKind::Version,
                format!("server speaks protocol version {version}, this client speaks {PROTOCOL_VERSION}"),
            ))
        }
        Message::Challenge { nonce, token_required, .. } => (nonce, token_required),
        other => return Err(unexpected(&other, "Challenge")),
    };
    match (token_required, token) {
        (true, None) => {
            return Err(refused(
                ErrorKind::Auth,
                "the server requires a token: give it with -a/--token, --token-file or PARECO_TOKEN",
            ))
        }
        (false, Some(_)) => {
            return Err(refused(
                ErrorKind::Auth,
                "the server requires no token, so it cannot prove it is the server you gave a token for; \
                 connect without the token, or give the server its token",
            ))
        }
        _ => {}
    }
    let key = token.cloned().unwrap_or_else(Key::none);
    let (wants, key, joined) = match &intent {
        Intent::Open(spec) => (Wants::Open(spec.clone()), key, None),
        Intent::Join { session, secret } => (Wants::Join(*session), key.for_join(secret), Some(*secret)),
    };
    let transcript = Transcript::new(&client_nonce, &server_nonce, binding, &intent_bytes(&wants)?);
    let proof = Some(ByteBuf::from(key.client_proof(&transcript).to_vec()));
    let msg = match intent {
        Intent::Open(spec) => Message::Open { proof, spec },
        Intent::Join { session, .. } => Message::Join { session, proof },
    };
    writer.send_msg(0, msg).await?;
    let (session, idle_timeout_ms, max_payload, max_connections, server_proof, sealed, bwlimit, privileged) =
        match expect(reader, "Welcome").await? {
            Message::Welcome {
                session,
                idle_timeout_ms,
                max_payload,
                max_connections,
                proof,
                secret,
                bwlimit,
                privileged,
            } => (session, idle_timeout_ms, max_payload, max_connections, proof, secret, bwlimit, privileged),
            other => return Err(unexpected(&other, "Welcome")),
        };
    if !auth::proof_matches(&key.server_proof(&transcript), &server_proof) {
        return Err(refused(
            ErrorKind::Auth,
            "the server could not prove that it knows the token: it is not the server you think, \
             or its token differs",
        ));
    }
    // The secret of a session opened here comes sealed in its Welcome.
    let secret = match (joined, sealed) {
        (Some(secret), _) => secret,
        (None, Some(sealed)) => {
            let sealed: Secret = sealed[..]
                .try_into()
                .map_err(|_| SessionError::Protocol(format!("a sealed secret of {} bytes", sealed.len())))?;
            key.seal(&transcript, &sealed)
        }
        (None, None) => return Err(SessionError::Protocol("a Welcome without the session's secret".into())),
    };
    Ok(Welcome {
        session,
        idle_timeout: Duration::from_millis(idle_timeout_ms),
        max_payload,
        max_connections,
        secret,
        privileged,
        bwlimit: Some(bwlimit).filter(|&b| b > 0),
    })
}

/// Runs the server side up to the client's intent and proof. The caller
/// checks the proof ([`check_proof`]) and answers with [`welcome`] or an
/// error.
pub async fn server(
    reader: &mut Reader,
    writer: &mut Writer,
    token_required: bool,
    binding: &[u8],
) -> Result<Greeting, SessionError> {
    let client_nonce = match expect(reader, "Hello").await? {
        Message::Hello { version, nonce } if version == PROTOCOL_VERSION => nonce,
        Message::Hello { version, .. } => {
            return Err(refused(
                ErrorKind::Version,
                format!("client speaks protocol version {version}, this server speaks {PROTOCOL_VERSION}"),
            ))
        }
        other => return Err(unexpected(&other, "Hello")),
    };
    if client_nonce.len() != auth::NONCE_LEN {
        return Err(SessionError::Protocol(format!(
            "a nonce of {} bytes in Hello, not {}",
            client_nonce.len(),
            auth::NONCE_LEN
        )));
    }
    let server_nonce = auth::random_bytes(auth::NONCE_LEN)?;
    let challenge = Message::Challenge {
        version: PROTOCOL_VERSION,
        nonce: ByteBuf::from(server_nonce.clone()),
        token_required,
    };
    writer.send_msg(0, challenge).await?;
    let (wants, proof) = match expect(reader, "Open or Join").await? {
        Message::Open { proof, spec } => (Wants::Open(spec), proof),
        Message::Join { session, proof } => (Wants::Join(session), proof),
        other => return Err(unexpected(&other, "Open or Join")),
    };
    let transcript = Transcript::new(&client_nonce, &server_nonce, binding, &intent_bytes(&wants)?);
    Ok(Greeting { wants, proof, transcript })
}

/// Checks a client's proof against `key` (the server's token key, or for a
/// join the session's join key).
pub fn check_proof(greeting: &Greeting, key: &Key) -> Result<(), peer::Error> {
    match &greeting.proof {
        None => Err(peer::Error::new(ErrorKind::Auth, "a token is required and none was given")),
        Some(proof) if !auth::proof_matches(&key.client_proof(&greeting.transcript), proof) => {
            let why = match greeting.wants {
                Wants::Open(_) => "wrong token",
                Wants::Join(_) => "wrong token, or not the client that opened this session",
            };
            Err(peer::Error::new(ErrorKind::Auth, why))
        }
        Some(_) => Ok(()),
    }
}

/// The server's `Welcome` for a handshake checked with `key`; `secret` is
/// the session's, for an `Open` (sealed in it); `privileged`: the server
/// runs as root and the session asked for owners, groups or attributes;
/// `bwlimit` the session's bandwidth limit, if any.
#[allow(clippy::too_many_arguments)]
pub fn welcome(
    greeting: &Greeting,
    key: &Key,
    session: u64,
    idle_timeout: Duration,
    max_payload: u32,
    max_connections: u32,
    secret: Option<&Secret>,
    privileged: bool,
    bwlimit: Option<u64>,
) -> Message {
    let transcript = &greeting.transcript;
    Message::Welcome {
        session,
        idle_timeout_ms: idle_timeout.as_millis() as u64,
        max_payload,
        max_connections,
        proof: ByteBuf::from(key.server_proof(transcript).to_vec()),
        secret: secret.map(|s| ByteBuf::from(key.seal(transcript, s).to_vec())),
        bwlimit: bwlimit.unwrap_or(0),
        privileged,
    }
}

/// Reads the next message, turning an `Error` frame into a refusal and an
/// early end (or bytes of another protocol) into a clear error.
async fn expect(reader: &mut Reader, wanted: &str) -> Result<Message, SessionError> {
    match reader.next().await {
        Some(Ok(Packet { msg: Message::Error { kind, message }, .. })) => {
            Err(SessionError::Refused(peer::Error::from_peer(kind, &message)))
        }
        Some(Ok(packet)) => Ok(packet.msg),
        Some(Err(e)) => Err(match foreign_protocol(reader.buffered()) {
            Some(what) => SessionError::Foreign(what),
            None => e.into(),
        }),
        None => Err(match foreign_protocol(reader.buffered()) {
            Some(what) => SessionError::Foreign(what),
            None => SessionError::Closed(format!("connection closed while waiting for {wanted}")),
        }),
    }
}

fn refused(kind: ErrorKind, message: impl Into<String>) -> SessionError {
    SessionError::Refused(peer::Error::new(kind, message))
}

fn unexpected(got: &Message, wanted: &str) -> SessionError {
    SessionError::Protocol(format!("expected {wanted}, got {}", got.name()))
}
