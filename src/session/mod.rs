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
    #[error("{0}")]
    Other(String),
}
