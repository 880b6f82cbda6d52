//! The test kit (feature `testing`, off by default): what the integration
//! tests and the fuzz targets share instead of each rebuilding it.
//!
//! - [`frames`]: the bytes of frames, of a `Packet` or around a header
//!   built by hand.
//! - [`mirror`]: messages that serialize like `Message` but hold paths as
//!   plain bytes, to write headers the library refuses to encode.
//! - [`client`]: the client's side of the handshake: proofs from the
//!   nonces, the intent and the token; the check of the `Welcome`.
//! - [`Fixture`]: two servers on roots full of symlinks beside a
//!   directory that must not change; [`Fixture::run`] performs a list of
//!   [`ops`] against them over in-memory streams and checks every answer
//!   it can and, afterwards, that no connection hangs, no session is left
//!   and nothing outside the roots changed.
//! - [`ops`]: what a client does, step by step; derived with `Arbitrary`
//!   from the values of [`choices`] for the handshake fuzz target, written
//!   by hand in the scenario tests.
//! - [`proxy`]: a TCP proxy between a real client and server that cuts,
//!   refuses, stalls, delays, throttles or redirects their connections.

mod checks;
pub mod choices;
pub mod client;
mod draws;
mod driver;
pub mod fixture;
pub mod frames;
pub mod mirror;
pub mod ops;
pub mod proxy;
mod steps;

pub use fixture::Fixture;
