//! The client's side of the handshake, by hand: the proof of an `Open` or
//! `Join` from the connection's nonces, the intent and the key, and the
//! check of the server's `Welcome` (its proof, the secret it seals).
//! Channels are plain streams here: the channel binding is empty.

use serde_bytes::ByteBuf;

use crate::codec::Message;
use crate::session::auth::{Key, Secret, Transcript};
use crate::session::handshake::{intent_bytes, Wants};

/// The key and transcript of one handshake, as far as a client sees them.
#[derive(Debug, Clone)]
pub struct Handshake {
    key: Key,
    transcript: Transcript,
}

impl Handshake {
    /// The handshake of the intent whose bytes are `intent` (those of
    /// [`intent_bytes`], or of a [mirror spec](super::mirror::Spec)), after
    /// `client_nonce` and `server_nonce`, proved with `key` or, for a join,
    /// with the key derived from it and the session's `join_secret`.
    pub fn new(
        key: &Key,
        join_secret: Option<&Secret>,
        client_nonce: &[u8],
        server_nonce: &[u8],
        intent: &[u8],
    ) -> Handshake {
        let key = join_secret.map_or_else(|| key.clone(), |secret| key.for_join(secret));
        Handshake { key, transcript: Transcript::new(client_nonce, server_nonce, b"", intent) }
    }

    /// The handshake of `wants` (see [`Handshake::new`]).
    pub fn of_wants(
        key: &Key,
        join_secret: Option<&Secret>,
        client_nonce: &[u8],
        server_nonce: &[u8],
        wants: &Wants,
    ) -> Handshake {
        let intent = intent_bytes(wants).expect("a test's intent encodes");
        Handshake::new(key, join_secret, client_nonce, server_nonce, &intent)
    }

    /// The proof a correct client sends.
    pub fn client_proof(&self) -> [u8; 32] {
        self.key.client_proof(&self.transcript)
    }

    /// Is `proof` the server's proof of this handshake?
    pub fn server_proof_matches(&self, proof: &[u8]) -> bool {
        proof == self.key.server_proof(&self.transcript)
    }

    /// The session's secret from the sealed one of an `Open`'s `Welcome`;
    /// `None` if it is not [`SECRET_LEN`](crate::session::auth::SECRET_LEN)
    /// bytes.
    pub fn unseal(&self, sealed: &[u8]) -> Option<Secret> {
        let sealed = Secret::try_from(sealed).ok()?;
        Some(self.key.seal(&self.transcript, &sealed))
    }
}

/// The key of `token`, or the no-token key.
pub fn key_of(token: Option<&str>) -> Key {
    token.map_or_else(Key::none, Key::from_token)
}

/// The `Open` or `Join` that asks for `wants` with `proof`.
pub fn intent_message(wants: Wants, proof: Option<Vec<u8>>) -> Message {
    let proof = proof.map(ByteBuf::from);
    match wants {
        Wants::Open(spec) => Message::Open { proof, spec },
        Wants::Join(session) => Message::Join { session, proof },
    }
}
