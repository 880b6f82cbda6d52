//! The wire codec: bytes ⇄ frames ⇄ messages. No file system, no policy.
//!
//! - [`frame`]: the frame layout (an 8-byte length prefix, a MessagePack header,
//!   an optional raw payload), the tokio-util [`FrameCodec`] decoder, and
//!   the encoding of a frame's head to send beside its payload.
//! - [`message`]: every message of the protocol as one serde enum.
//! - [`types`]: the plain data types the messages carry.
//! - [`extra`]: owner, group and extended attributes, for the sessions
//!   that ask for them, checked against their limits when decoded.
//! - [`declared`]: each message declared once — name, class, payload, who
//!   serves it and what answers it.
//! - [`path`]: [`RelPath`], a path relative to a synced root that is checked
//!   when it is decoded, so a name with `..`, `/`-rooting or NUL never leaves
//!   the codec.
//! - [`text`]: [`printable`], peer-supplied text made safe for a terminal.
//!
//! `PROTOCOL.md` at the top of the repository describes the same thing in
//! prose, byte by byte.

pub mod bounded;
pub mod declared;
pub mod extra;
pub mod frame;
pub mod message;
pub mod path;
pub mod text;
pub mod types;

pub use bounded::MAX_LIST;
pub use declared::{Class, Declaration, Serves};
pub use extra::{Extra, Id, IdName, Preserve, Xattr, XattrDigest, XattrList, Xattrs};
pub use frame::{CodecError, FrameCodec, Packet};
pub use message::*;
pub use path::RelPath;
pub use text::printable;
pub use types::*;

/// The protocol version this build speaks. A peer with another version is
/// refused during the handshake with a message naming both.
pub const PROTOCOL_VERSION: u32 = 4;

/// Largest MessagePack header a frame may carry.
pub const MAX_HEADER_LEN: usize = 1 << 20;

/// Largest header of a handshake frame (an `Open` with its globs is the
/// largest): a peer that has not authenticated yet makes the server
/// buffer at most this much.
pub const MAX_HANDSHAKE_HEADER_LEN: usize = 64 << 10;

/// Hard cap on a frame's payload, whatever chunk size a session negotiates.
pub const MAX_PAYLOAD_CAP: usize = 64 << 20;

/// Bytes of the fixed frame prefix: header length and payload length, both
/// big-endian `u32`.
pub const PREFIX_LEN: usize = 8;
