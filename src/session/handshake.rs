//! The first frames of every connection: version, challenge, authentication,
//! and opening or joining a session.
//!
//! ```text
//! client                                   server
//!   Hello{version}                 ──▶
//!                                  ◀──   Challenge{version, nonce, token_required}
//!   Open{proof, spec} | Join{session, proof} ──▶
//!                                  ◀──   Welcome{session, idle_timeout_ms, max_payload}
//!                                         (or Error, and the connection closes)
//! ```

use std::time::Duration;

use serde_bytes::ByteBuf;

use crate::codec::{ErrorKind, Message, Packet, SessionSpec, PROTOCOL_VERSION};
use crate::peer;

use super::auth::{self, Key};
use super::conn::{foreign_protocol, Reader, Writer};
use super::SessionError;

/// What a client asks for after the challenge.
#[derive(Debug, Clone, PartialEq)]
pub enum Intent {
    Open(SessionSpec),
    Join(u64),
}

/// What the server granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Welcome {
    pub session: u64,
    pub idle_timeout: Duration,
    pub max_payload: u32,
}

/// Runs the client side of the handshake.
pub async fn client(
    reader: &mut Reader,
    writer: &mut Writer,
    key: Option<&Key>,
    intent: Intent,
) -> Result<Welcome, SessionError> {
    writer.send_msg(0, Message::Hello { version: PROTOCOL_VERSION }).await?;
    let (nonce, token_required) = match expect(reader, "Challenge").await? {
        Message::Challenge { version, .. } if version != PROTOCOL_VERSION => {
            return Err(refused(
                ErrorKind::Version,
                format!("server speaks protocol version {version}, this client speaks {PROTOCOL_VERSION}"),
            ))
        }
        Message::Challenge { nonce, token_required, .. } => (nonce, token_required),
        other => return Err(unexpected(&other, "Challenge")),
    };
    if token_required && key.is_none() {
        return Err(refused(
            ErrorKind::Auth,
            "the server requires a token: give it with -a/--token, --token-file or PARECO_TOKEN",
        ));
    }
    let proof = key.map(|k| ByteBuf::from(k.prove(&nonce).to_vec()));
    let msg = match intent {
        Intent::Open(spec) => Message::Open { proof, spec },
        Intent::Join(session) => Message::Join { session, proof },
    };
    writer.send_msg(0, msg).await?;
    match expect(reader, "Welcome").await? {
        Message::Welcome { session, idle_timeout_ms, max_payload } => {
            Ok(Welcome { session, idle_timeout: Duration::from_millis(idle_timeout_ms), max_payload })
        }
        other => Err(unexpected(&other, "Welcome")),
    }
}

/// Runs the server side up to the client's intent, its token checked. The
/// caller answers with `Welcome` or an error.
pub async fn server(
    reader: &mut Reader,
    writer: &mut Writer,
    key: Option<&Key>,
) -> Result<Intent, SessionError> {
    match expect(reader, "Hello").await? {
        Message::Hello { version } if version == PROTOCOL_VERSION => {}
        Message::Hello { version } => {
            return Err(refused(
                ErrorKind::Version,
                format!("client speaks protocol version {version}, this server speaks {PROTOCOL_VERSION}"),
            ))
        }
        other => return Err(unexpected(&other, "Hello")),
    }
    let nonce = auth::random_bytes(auth::NONCE_LEN)?;
    let challenge = Message::Challenge {
        version: PROTOCOL_VERSION,
        nonce: ByteBuf::from(nonce.clone()),
        token_required: key.is_some(),
    };
    writer.send_msg(0, challenge).await?;
    let (intent, proof) = match expect(reader, "Open or Join").await? {
        Message::Open { proof, spec } => (Intent::Open(spec), proof),
        Message::Join { session, proof } => (Intent::Join(session), proof),
        other => return Err(unexpected(&other, "Open or Join")),
    };
    if let Some(key) = key {
        match proof {
            None => return Err(refused(ErrorKind::Auth, "a token is required and none was given")),
            Some(proof) if !key.verify(&nonce, &proof) => {
                return Err(refused(ErrorKind::Auth, "wrong token"))
            }
            Some(_) => {}
        }
    }
    Ok(intent)
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
