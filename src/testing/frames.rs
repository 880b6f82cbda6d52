//! The bytes of frames: of a [`Packet`], or around a header built by hand
//! (to send what [`Message`](crate::codec::Message) cannot hold).

use serde::Serialize;

use crate::codec::{Packet, PREFIX_LEN};

/// The bytes of the whole frame of `packet`: prefix, header, payload.
///
/// Panics if the packet does not encode (a header over the limit): a test
/// that builds one has a mistake of its own.
pub fn frame_bytes(packet: &Packet) -> Vec<u8> {
    let head = packet.encode_head().expect("a test's packet encodes");
    let mut bytes = Vec::with_capacity(head.len() + packet.payload.len());
    bytes.extend_from_slice(&head);
    bytes.extend_from_slice(&packet.payload);
    bytes
}

/// The 8-byte prefix of a frame: the header's length, then the payload's,
/// both big-endian.
pub fn prefix(header_len: u32, payload_len: u32) -> [u8; PREFIX_LEN] {
    let mut prefix = [0u8; PREFIX_LEN];
    prefix[..4].copy_from_slice(&header_len.to_be_bytes());
    prefix[4..].copy_from_slice(&payload_len.to_be_bytes());
    prefix
}

/// A frame around any header and payload, with their true lengths.
pub fn raw_frame(header: &[u8], payload: &[u8]) -> Vec<u8> {
    let header_len = u32::try_from(header.len()).expect("a test's header is under 4 GiB");
    let payload_len = u32::try_from(payload.len()).expect("a test's payload is under 4 GiB");
    let mut bytes = prefix(header_len, payload_len).to_vec();
    bytes.extend_from_slice(header);
    bytes.extend_from_slice(payload);
    bytes
}

/// The MessagePack header `[id, msg]` of anything serializable: a
/// [mirror](super::mirror) message, or a value that is no message at all.
pub fn encode_header<T: Serialize + ?Sized>(id: u32, msg: &T) -> Vec<u8> {
    rmp_serde::to_vec(&(id, msg)).expect("a test's header encodes")
}
