//! The key of one `pareco ui` process: a fresh random secret that every
//! request must show, as `Authorization: Bearer KEY` or in the cookie the
//! page is given when it is opened with `/?key=KEY`.

use axum::http::header::AUTHORIZATION;
use axum::http::HeaderMap;
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};

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

    /// Does the request carry the key, as a bearer token or in the cookie?
    pub(super) fn carried_by(&self, headers: &HeaderMap, jar: &CookieJar, port: u16) -> bool {
        let bearer = headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|k| self.matches(k.trim()));
        bearer || jar.get(&cookie_name(port)).is_some_and(|c| self.matches(c.value()))
    }

    /// The cookie that carries the key for the page: sent back to this
    /// address only, never readable by scripts, never sent cross-site.
    pub(super) fn cookie(&self, port: u16) -> Cookie<'static> {
        Cookie::build((cookie_name(port), self.0.clone()))
            .http_only(true)
            .same_site(SameSite::Strict)
            .path("/")
            .build()
    }
}

/// One name per port: cookies are shared by every port of a host, and
/// two UIs on one machine must not overwrite each other's.
fn cookie_name(port: u16) -> String {
    format!("pareco_ui_{port}")
}
