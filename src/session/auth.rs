//! Token authentication by challenge and response: the token never travels.
//!
//! Both ends derive a 32-byte key from the token with BLAKE3's key
//! derivation; for each connection the server sends a fresh random nonce
//! and the client answers with the keyed BLAKE3 hash of it. The server
//! compares in constant time (`blake3::Hash` equality).

use std::fmt;

/// Domain-separation context for deriving the key from a token.
const KEY_CONTEXT: &str = "pareco 2026-11 token key v1";
/// Bytes of a server nonce.
pub const NONCE_LEN: usize = 32;

/// A key derived from a token. Its `Debug` never shows the secret.
#[derive(Clone)]
pub struct Key([u8; 32]);

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Key(..)")
    }
}

impl Key {
    pub fn from_token(token: &str) -> Key {
        Key(blake3::derive_key(KEY_CONTEXT, token.as_bytes()))
    }

    /// The answer to a server's `nonce`.
    pub fn prove(&self, nonce: &[u8]) -> [u8; 32] {
        *blake3::keyed_hash(&self.0, nonce).as_bytes()
    }

    /// Does `proof` answer `nonce` for this key? Constant time.
    pub fn verify(&self, nonce: &[u8], proof: &[u8]) -> bool {
        let Ok(proof) = <[u8; 32]>::try_from(proof) else { return false };
        blake3::keyed_hash(&self.0, nonce) == blake3::Hash::from_bytes(proof)
    }
}

/// `len` random bytes from the operating system.
pub fn random_bytes(len: usize) -> std::io::Result<Vec<u8>> {
    let mut bytes = vec![0u8; len];
    getrandom::fill(&mut bytes).map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok(bytes)
}

/// A new random token of 160 bits, as 40 hex digits.
pub fn generate_token() -> std::io::Result<String> {
    Ok(random_bytes(20)?.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proof_checks_out_only_with_the_same_token_and_nonce() {
        let key = Key::from_token("s3cret");
        let nonce = random_bytes(NONCE_LEN).unwrap();
        let proof = key.prove(&nonce);
        assert!(key.verify(&nonce, &proof));
        assert!(!Key::from_token("s3cret!").verify(&nonce, &proof));
        assert!(!key.verify(&random_bytes(NONCE_LEN).unwrap(), &proof));
        assert!(!key.verify(&nonce, &proof[..31]));
        assert_eq!(format!("{key:?}"), "Key(..)");
        let token = generate_token().unwrap();
        assert_eq!(token.len(), 40);
        assert_ne!(token, generate_token().unwrap());
    }
}
