//! Authentication: proofs of a shared token, both ways, bound to everything
//! a connection's handshake says. The token never travels.
//!
//! - Both ends derive a 32-byte [`Key`] from the token (BLAKE3's key
//!   derivation); without a token the key is 32 zero bytes, which proves
//!   nothing but keeps one scheme for both cases.
//! - A [`Transcript`] digests what the handshake fixed: the client's nonce,
//!   the server's nonce, the channel (a TLS exporter value, so a proof made
//!   on one TLS connection is worthless on another) and what the client
//!   asks for (the whole session spec, or the session it joins).
//! - The client proves the key on the transcript; the server answers with
//!   its own proof on it (so the client knows it talks to a holder of the
//!   token) and, when it opens a session, hands out the session's secret
//!   sealed with the key.
//! - Joining a session takes a key derived from the token's key and that
//!   secret: a token holder that did not open the session cannot join it.
//!
//! PROTOCOL.md §7.2 gives the byte-exact computation and test vectors.

use std::fmt;

/// Domain-separation contexts (BLAKE3 `derive_key`).
const KEY_CONTEXT: &str = "pareco 2026-11 token key v1";
const TRANSCRIPT_CONTEXT: &str = "pareco 2026-11 handshake transcript v2";
/// Bytes of a nonce (each side sends one), and of a session secret.
pub const NONCE_LEN: usize = 32;
/// Bytes of a session secret.
pub const SECRET_LEN: usize = 32;
/// The TLS exporter label of the channel binding.
pub const EXPORTER_LABEL: &[u8] = b"EXPORTER-pareco-channel-binding";

/// A key: derived from a token, or the no-token key. Its `Debug` never
/// shows the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Key([u8; 32]);

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Key(..)")
    }
}

/// What one handshake fixed, digested (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transcript([u8; 32]);

/// A session's secret, handed out sealed when it is opened and needed to
/// join it.
pub type Secret = [u8; SECRET_LEN];

impl Key {
    /// The key derived from `token` (BLAKE3 `derive_key`).
    pub fn from_token(token: &str) -> Key {
        Key(blake3::derive_key(KEY_CONTEXT, token.as_bytes()))
    }

    /// The key of a side that has no token.
    pub fn none() -> Key {
        Key([0; 32])
    }

    /// The key that joins the session whose secret is `secret`.
    pub fn for_join(&self, secret: &Secret) -> Key {
        Key(*blake3::keyed_hash(&self.0, secret).as_bytes())
    }

    fn mac(&self, role: &[u8], transcript: &Transcript) -> [u8; 32] {
        let mut hasher = blake3::Hasher::new_keyed(&self.0);
        hasher.update(role);
        hasher.update(&transcript.0);
        *hasher.finalize().as_bytes()
    }

    /// The client's proof on `transcript`.
    pub fn client_proof(&self, transcript: &Transcript) -> [u8; 32] {
        self.mac(b"client", transcript)
    }

    /// The server's proof on `transcript`.
    pub fn server_proof(&self, transcript: &Transcript) -> [u8; 32] {
        self.mac(b"server", transcript)
    }

    /// Seals (or unseals: the same operation) a session secret for the
    /// handshake of `transcript`.
    pub fn seal(&self, transcript: &Transcript, secret: &Secret) -> Secret {
        let pad = self.mac(b"seal", transcript);
        std::array::from_fn(|i| secret[i] ^ pad[i])
    }
}

/// Is `proof` the 32 bytes `expected`? Constant time.
pub fn proof_matches(expected: &[u8; 32], proof: &[u8]) -> bool {
    let Ok(proof) = <[u8; 32]>::try_from(proof) else { return false };
    blake3::Hash::from_bytes(*expected) == blake3::Hash::from_bytes(proof)
}

impl Transcript {
    /// The digest of the nonces, the channel binding (empty without TLS)
    /// and the client's intent (its encoding, see PROTOCOL.md §7.2), each
    /// prefixed by its length as a big-endian u32.
    pub fn new(client_nonce: &[u8], server_nonce: &[u8], binding: &[u8], intent: &[u8]) -> Transcript {
        let mut hasher = blake3::Hasher::new_derive_key(TRANSCRIPT_CONTEXT);
        for part in [client_nonce, server_nonce, binding, intent] {
            hasher.update(&(part.len() as u32).to_be_bytes());
            hasher.update(part);
        }
        Transcript(*hasher.finalize().as_bytes())
    }
}

/// `len` random bytes from the operating system.
pub fn random_bytes(len: usize) -> std::io::Result<Vec<u8>> {
    let mut bytes = vec![0u8; len];
    getrandom::fill(&mut bytes).map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok(bytes)
}

/// A fresh random session secret.
pub fn random_secret() -> std::io::Result<Secret> {
    let mut secret = [0u8; SECRET_LEN];
    getrandom::fill(&mut secret).map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok(secret)
}

/// A new random token of 160 bits, as 40 hex digits.
pub fn generate_token() -> std::io::Result<String> {
    Ok(random_bytes(20)?.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn proofs_bind_the_key_and_everything_in_the_transcript() {
        let key = Key::from_token("s3cret");
        let t = Transcript::new(&[1; 32], &[2; 32], b"", b"open");
        let proof = key.client_proof(&t);
        assert!(proof_matches(&proof, &proof));
        assert!(!proof_matches(&proof, &proof[..31]));
        // Another token, nonce, channel or intent: another proof.
        assert_ne!(Key::from_token("s3cret!").client_proof(&t), proof);
        for other in [
            Transcript::new(&[3; 32], &[2; 32], b"", b"open"),
            Transcript::new(&[1; 32], &[3; 32], b"", b"open"),
            Transcript::new(&[1; 32], &[2; 32], b"tls", b"open"),
            Transcript::new(&[1; 32], &[2; 32], b"", b"join"),
        ] {
            assert_ne!(key.client_proof(&other), proof);
        }
        // The two directions differ: a proof cannot be reflected.
        assert_ne!(key.server_proof(&t), proof);
        // Sealing twice gives the secret back; the sealed value is not it.
        let secret = [7u8; 32];
        assert_ne!(key.seal(&t, &secret), secret);
        assert_eq!(key.seal(&t, &key.seal(&t, &secret)), secret);
        assert_ne!(key.for_join(&secret), key);
        assert_eq!(format!("{key:?}"), "Key(..)");
        let token = generate_token().unwrap();
        assert_eq!(token.len(), 40);
        assert_ne!(token, generate_token().unwrap());
    }

    /// The test vectors of PROTOCOL.md §7.2.
    #[test]
    fn protocol_test_vectors() {
        let key = Key::from_token("s3cret");
        assert_eq!(hex(&key.0), "0dd7ab6ed274d22a0c3c9249f683bc390dd03ccf966764d3ab1d6c680b16ff62");
        let t = Transcript::new(&[0xaa; 32], &[0xbb; 32], b"", b"join\x00\x00\x00\x00\x00\x00\x00\x2a");
        let vectors = [
            hex(&t.0),
            hex(&key.client_proof(&t)),
            hex(&key.server_proof(&t)),
            hex(&key.seal(&t, &[0x11; 32])),
            hex(&key.for_join(&[0x11; 32]).0),
        ];
        assert_eq!(vectors, PROTOCOL_VECTORS);
    }

    /// Computed independently (Python's `blake3` package) from the text of
    /// PROTOCOL.md: transcript, client proof, server proof, the secret of
    /// 32 bytes 0x11 sealed, and the join key for that secret.
    const PROTOCOL_VECTORS: [&str; 5] = [
        "409368f2af258cd16308d44423385763c385695b366ee8c2a7ffc9c1bc9cb165",
        "594ab73e8d1e7efcf69ec1c1cf2aac7413aff0d3456380797abbc02ef271a5b4",
        "fb526c82b1af6c49f379bad6961248d82f85a3ee28eeddd57c90bb903cd72850",
        "d3ecd71c909cc6c2791065ff02420482098e9cee88d424dda97b1771ee0ce2a8",
        "856f897fe73085ff2ea57fffe8ac4e927079666ad7e55e793a686473ad707c23",
    ];
}
