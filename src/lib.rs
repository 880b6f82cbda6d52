//! pareco: parallel remote directory sync.
//!
//! - [`codec`]: bytes ⇄ frames ⇄ messages (no file system, no policy).
//! - [`peer`]: the two roles of a transfer, source and destination, over the
//!   local file system.
//! - [`session`]: handshake, authentication, the N connections of a session,
//!   the server, and the remote stand-ins for a peer on the other machine.
//! - [`transfer`]: the sync engine that drives a source and a destination,
//!   whichever of them is remote.
//! - [`job`]: one client run of `send`/`recv`, sessions to report (the CLI
//!   and the web front end share it).
//! - [`ui`]: `pareco ui`, the local web page and JSON API that start and
//!   watch runs.

#![warn(missing_docs, unreachable_pub)]

pub mod codec;
pub mod job;
pub mod peer;
pub mod session;
#[cfg(feature = "testing")]
pub mod testing;
pub mod transfer;
pub mod ui;
