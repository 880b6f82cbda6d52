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
//! - `inflight`: the requests in flight on one connection (ids, who waits
//!   for the answer), as plain data.
//! - [`remote`]: [`RemoteSource`] and [`RemoteDestination`], the server's
//!   tree as a peer role, over a pool.
//! - [`server`]: the listener, the table of sessions, expiry, and answering
//!   requests with the local peer roles.

pub mod auth;
pub mod client;
pub mod conn;
pub mod handshake;
mod inflight;
pub mod pool;
pub mod remote;
pub mod server;
pub mod tls;

pub use client::{connect, ClientConfig, Remote};
pub use pool::{Latency, Pool};
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
    #[error("protocol error: {0}")]
    Protocol(String),
    #[error("{0}")]
    Closed(String),
    #[error(transparent)]
    Codec(#[from] CodecError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("cannot connect to {addr}: {source}")]
    Connect { addr: String, source: std::io::Error },
    #[error("{}", tls_failure(.addr, .source))]
    TlsHandshake { addr: String, source: std::io::Error },
    #[error("the server at {addr} expects TLS: use --tls or a pareco+tls:// address")]
    ExpectsTls { addr: String },
    #[error("no answer from {addr} within {}s", .after.as_secs())]
    Timeout { addr: String, after: std::time::Duration },
    #[error("cannot open root directory {}: {source}", .path.display())]
    Root { path: std::path::PathBuf, source: std::io::Error },
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: String, source: std::io::Error },
}

/// What to tell a user whose TLS handshake with `addr` failed.
fn tls_failure(addr: &str, error: &std::io::Error) -> String {
    match error.kind() {
        std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset => format!(
            "the server at {addr} closed the connection during the TLS handshake: \
             it does not seem to use TLS (use a pareco:// address without --tls)"
        ),
        _ if tls::is_ca_used_as_end_entity(error) => format!(
            "TLS handshake with {addr} failed: {error} (the server's self-signed certificate \
             is marked as a CA; make it with basicConstraints CA:FALSE, see README)"
        ),
        _ => format!("TLS handshake with {addr} failed: {error}"),
    }
}
