//! Sessions: everything between a socket and a peer role.
//!
//! - [`conn`]: one connection — the byte stream (TCP or TLS), split into a
//!   frame reader and writer, with a byte counter.
//! - [`tls`]: TLS set-up for both ends (rustls).
//! - [`auth`]: the token's challenge and response.
//! - [`handshake`]: version, authentication, opening or joining a session.
//! - [`client`]: the `pareco://` address, and connecting the N connections
//!   of a session into a [`Pool`].
//! - [`pool`]: the client's work queue served by all connections.
//! - `link`: one connection of a pool, its writer and reader; a lost one
//!   gives its requests back to the queue.
//! - `redial`: replaces lost connections, waits out outages.
//! - `inflight`: the requests in flight on a pool's connections (ids, the
//!   connection, who waits for the answer), as plain data.
//! - [`pace`]: `--bwlimit`, one sending rate shared by a session's
//!   connections.
//! - [`remote`]: [`RemoteSource`] and [`RemoteDestination`], the server's
//!   tree as a peer role, over a pool.
//! - [`server`]: the listener, the table of sessions, expiry, and answering
//!   requests with the local peer roles.

pub mod auth;
pub mod autotune;
pub mod client;
pub mod conn;
pub mod handshake;
mod inflight;
mod link;
pub mod pace;
pub mod pool;
mod redial;
pub mod remote;
pub mod server;
pub mod tls;

pub use client::{connect, ClientConfig, Remote};
pub use pool::{Latency, Pool, Resilience};
pub use remote::{RemoteDestination, RemoteSource};
pub use server::{Server, ServerConfig};

use crate::codec::CodecError;
use crate::peer;

/// Why a connection or session could not be set up or went wrong.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The other side said no, and why.
    #[error("{0}")]
    Refused(peer::Error),
    /// The other side does not speak this protocol; says what it spoke.
    #[error("the other side answered with {0}, not the pareco protocol")]
    Foreign(&'static str),
    /// The other side sent something the handshake does not allow.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The connection closed while the handshake waited for a message.
    #[error("{0}")]
    Closed(String),
    /// A frame could not be read, decoded, encoded or written.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// Any other I/O error.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The TCP connection could not be made.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// The server's address, `HOST:PORT`.
        addr: String,
        /// Why the connection failed.
        source: std::io::Error,
    },
    /// The TLS handshake with the server failed.
    #[error("{}", tls_failure(.addr, .source))]
    TlsHandshake {
        /// The server's address, `HOST:PORT`.
        addr: String,
        /// Why the TLS handshake failed.
        source: std::io::Error,
    },
    /// A plain connection reached a server that speaks only TLS.
    #[error("the server at {addr} expects TLS: use --tls or a pareco+tls:// address")]
    ExpectsTls {
        /// The server's address, `HOST:PORT`.
        addr: String,
    },
    /// Connecting and the handshake took longer than allowed.
    #[error("no answer from {addr} within {}s", .after.as_secs())]
    Timeout {
        /// The server's address, `HOST:PORT`.
        addr: String,
        /// The time allowed.
        after: std::time::Duration,
    },
    /// The server's root directory could not be opened.
    #[error("cannot open root directory {}: {source}", .path.display())]
    Root {
        /// The root directory, as given.
        path: std::path::PathBuf,
        /// Why it could not be opened.
        source: std::io::Error,
    },
    /// The server could not bind its listening socket.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address to listen on, as given.
        addr: String,
        /// Why binding failed.
        source: std::io::Error,
    },
}

/// What to tell a user whose TLS handshake with `addr` failed.
fn tls_failure(addr: &str, error: &std::io::Error) -> String {
    match error.kind() {
        std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset => format!(
            "the server at {addr} closed the connection during the TLS handshake: \
             it does not seem to use TLS (use a pareco:// address without --tls)"
        ),
        _ if tls::is_ca_used_as_end_entity(error) => format!(
            "TLS handshake with {addr} failed: {error} (the server's certificate is marked as a CA; \
             if it is self-signed, trust it with --ca-cert CERT.pem or --tls-fingerprint)"
        ),
        _ => match tls::fingerprint_mismatch(error) {
            Some(mismatch) => format!("TLS handshake with {addr} failed: {mismatch}"),
            None => format!("TLS handshake with {addr} failed: {error}"),
        },
    }
}
