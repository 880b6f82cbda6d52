//! The key of one `pareco ui` process: a fresh random secret that every
//! API request must show as `Authorization: Bearer KEY`. The page gets it
//! from the fragment of the address `pareco ui` prints (`/#key=KEY`),
//! which a browser never sends to any server, and keeps it in the tab's
//! `sessionStorage`. No cookie: a browser sends a host's cookies to every
//! port of that host, so another local user's server on another port
//! would receive it.

use axum::http::header::AUTHORIZATION;
use axum::http::HeaderMap;

use crate::session::auth;

/// Random bytes of a key (shown as twice as many hex digits).
const KEY_BYTES: usize = 32;

/// The key of this process.
pub(super) struct Key(String);

impl Key {
    /// A fresh random key.
    pub(super) fn generate() -> std::io::Result<Key> {
        Ok(Key(auth::random_bytes(KEY_BYTES)?.iter().map(|b| format!("{b:02x}")).collect()))
    }

    pub(super) fn as_str(&self) -> &str {
        &self.0
    }

    /// Is `given` the key? (Constant time: the digests are compared.)
    pub(super) fn matches(&self, given: &str) -> bool {
        blake3::hash(given.as_bytes()) == blake3::hash(self.0.as_bytes())
    }

    /// Does the request carry the key as a bearer token?
    pub(super) fn carried_by(&self, headers: &HeaderMap) -> bool {
        headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|k| self.matches(k.trim()))
    }
}
