//! Frames: `u32 header_len | u32 payload_len | header | payload`.
//!
//! Reading is a tokio-util [`Decoder`]: it checks both lengths against the
//! limits *before* it reserves room for the frame, then splits the header and
//! the payload off its read buffer, so the payload reaches the file write as
//! the very bytes the socket filled. Writing does not go through a tokio-util
//! `Encoder`, whose single `BytesMut` would force a copy of every payload:
//! [`Packet::encode_head`] renders the prefix and header into a small buffer,
//! and the connection's writer (`session::conn::Writer`) sends heads and
//! payload `Bytes` side by side in vectored writes.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio_util::codec::Decoder;

use super::message::Message;
use super::{MAX_HANDSHAKE_HEADER_LEN, MAX_HEADER_LEN, MAX_PAYLOAD_CAP, PREFIX_LEN};

/// One decoded frame: a request id, the message, and the raw payload that
/// followed the header (empty when the message carries none).
#[derive(Debug, Clone, PartialEq)]
pub struct Packet {
    /// Correlates a response with its request; 0 for connection-level frames.
    pub id: u32,
    /// The message the header carries.
    pub msg: Message,
    /// The raw bytes after the header (empty when the message carries none).
    pub payload: Bytes,
}

/// What can be wrong with the bytes of a frame.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The header length is over [`MAX_HEADER_LEN`].
    #[error("frame header of {0} bytes is over the limit of {MAX_HEADER_LEN} bytes")]
    HeaderTooLarge(usize),
    /// During the handshake, the header length is over
    /// [`MAX_HANDSHAKE_HEADER_LEN`].
    #[error("handshake frame header of {0} bytes is over the limit of {MAX_HANDSHAKE_HEADER_LEN} bytes")]
    HandshakeHeaderTooLarge(usize),
    /// The header length is 0.
    #[error("frame with an empty header")]
    EmptyHeader,
    #[error("frame payload of {len} bytes is over this connection's limit of {limit} bytes")]
    /// The payload is over the connection's limit (or, when encoding, over
    /// [`MAX_PAYLOAD_CAP`]).
    PayloadTooLarge {
        /// The payload's length in bytes.
        len: usize,
        /// The largest payload allowed.
        limit: usize,
    },
    /// A frame with a payload arrived before the handshake was complete.
    #[error("frame with a payload ({0} bytes) before the handshake is complete")]
    PayloadInHandshake(usize),
    #[error("{name} carries no payload, but {len} bytes came with it")]
    /// A payload came with a message that carries none.
    UnexpectedPayload {
        /// The message's name.
        name: &'static str,
        /// The payload's length in bytes.
        len: usize,
    },
    /// The stream ended inside a frame; counts the bytes of it received,
    /// prefix included.
    #[error("connection closed in the middle of a frame ({0} bytes of it received)")]
    Truncated(usize),
    /// The header does not decode to `[id, message]`, or bytes are left over.
    #[error("malformed message: {0}")]
    Malformed(String),
    /// A message could not be encoded to MessagePack.
    #[error("message could not be encoded: {0}")]
    Encode(String),
    /// Reading from or writing to the connection failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl Packet {
    /// A packet without a payload.
    pub fn new(id: u32, msg: Message) -> Self {
        Packet { id, msg, payload: Bytes::new() }
    }

    /// A packet whose `payload` goes after the header.
    pub fn with_payload(id: u32, msg: Message, payload: Bytes) -> Self {
        Packet { id, msg, payload }
    }

    /// The frame prefix and MessagePack header, ready to be sent in front of
    /// `self.payload`.
    pub fn encode_head(&self) -> Result<Bytes, CodecError> {
        if self.payload.len() > MAX_PAYLOAD_CAP {
            return Err(CodecError::PayloadTooLarge { len: self.payload.len(), limit: MAX_PAYLOAD_CAP });
        }
        let mut buf = BytesMut::with_capacity(128).writer();
        buf.get_mut().put_bytes(0, PREFIX_LEN);
        rmp_serde::encode::write(&mut buf, &(self.id, &self.msg))
            .map_err(|e| CodecError::Encode(e.to_string()))?;
        let mut buf = buf.into_inner();
        let header_len = buf.len() - PREFIX_LEN;
        if header_len > MAX_HEADER_LEN {
            return Err(CodecError::HeaderTooLarge(header_len));
        }
        buf[0..4].copy_from_slice(&(header_len as u32).to_be_bytes());
        buf[4..8].copy_from_slice(&(self.payload.len() as u32).to_be_bytes());
        Ok(buf.freeze())
    }
}

/// Decodes frames into [`Packet`]s, enforcing a header limit and a payload
/// limit, both of which a session raises after the handshake.
#[derive(Debug, Clone)]
pub struct FrameCodec {
    max_payload: usize,
    /// Smaller during the handshake, so that a peer that has not proved
    /// anything yet can make the other side buffer little.
    handshake: bool,
    /// Bytes of the header of the frame decoded last.
    last_header: usize,
}

impl FrameCodec {
    /// A decoder that accepts payloads of up to `max_payload` bytes (capped
    /// at [`MAX_PAYLOAD_CAP`]) and headers of up to [`MAX_HEADER_LEN`].
    pub fn new(max_payload: usize) -> Self {
        FrameCodec { max_payload: max_payload.min(MAX_PAYLOAD_CAP), handshake: false, last_header: 0 }
    }

    /// The decoder of a connection's handshake: no payloads, and headers of
    /// up to [`MAX_HANDSHAKE_HEADER_LEN`].
    pub fn handshake() -> Self {
        FrameCodec { max_payload: 0, handshake: true, last_header: 0 }
    }

    /// Ends the handshake: payloads of up to `max_payload` bytes, headers
    /// of up to [`MAX_HEADER_LEN`] from now on.
    pub fn open(&mut self, max_payload: usize) {
        self.handshake = false;
        self.set_max_payload(max_payload);
    }

    /// Accepts payloads of up to `max_payload` bytes (capped at
    /// [`MAX_PAYLOAD_CAP`]) from now on.
    pub fn set_max_payload(&mut self, max_payload: usize) {
        self.max_payload = max_payload.min(MAX_PAYLOAD_CAP);
    }

    /// The largest payload accepted now, in bytes.
    pub fn max_payload(&self) -> usize {
        self.max_payload
    }

    /// Bytes of the header of the frame decoded last (what its message
    /// holds in memory is at least that much).
    pub fn last_header_len(&self) -> usize {
        self.last_header
    }
}

impl Decoder for FrameCodec {
    type Item = Packet;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Packet>, CodecError> {
        if src.len() < PREFIX_LEN {
            src.reserve(PREFIX_LEN - src.len());
            return Ok(None);
        }
        let header_len = u32::from_be_bytes([src[0], src[1], src[2], src[3]]) as usize;
        let payload_len = u32::from_be_bytes([src[4], src[5], src[6], src[7]]) as usize;
        if header_len == 0 {
            return Err(CodecError::EmptyHeader);
        }
        if self.handshake && header_len > MAX_HANDSHAKE_HEADER_LEN {
            return Err(CodecError::HandshakeHeaderTooLarge(header_len));
        }
        if header_len > MAX_HEADER_LEN {
            return Err(CodecError::HeaderTooLarge(header_len));
        }
        if payload_len > self.max_payload {
            return Err(match self.max_payload {
                0 => CodecError::PayloadInHandshake(payload_len),
                limit => CodecError::PayloadTooLarge { len: payload_len, limit },
            });
        }
        let total = PREFIX_LEN + header_len + payload_len;
        if src.len() < total {
            // Room for exactly this frame, so the payload lands in one
            // allocation and can be split off without a copy.
            src.reserve(total - src.len());
            return Ok(None);
        }
        src.advance(PREFIX_LEN);
        let header = src.split_to(header_len);
        let payload = src.split_to(payload_len).freeze();
        let (id, msg) = decode_header(&header)?;
        if !payload.is_empty() && !msg.has_payload() {
            return Err(CodecError::UnexpectedPayload { name: msg.name(), len: payload.len() });
        }
        self.last_header = header_len;
        Ok(Some(Packet { id, msg, payload }))
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Packet>, CodecError> {
        match self.decode(src)? {
            Some(packet) => Ok(Some(packet)),
            None if src.is_empty() => Ok(None),
            None => Err(CodecError::Truncated(src.len())),
        }
    }
}

/// Decodes a MessagePack header, refusing bytes left over after the message.
fn decode_header(header: &[u8]) -> Result<(u32, Message), CodecError> {
    let mut de = rmp_serde::Deserializer::new(header);
    let decoded: (u32, Message) = serde::Deserialize::deserialize(&mut de)
        .map_err(|e| CodecError::Malformed(super::printable(&e.to_string())))?;
    let rest = de.get_ref().len();
    if rest != 0 {
        return Err(CodecError::Malformed(format!("{rest} bytes after the message")));
    }
    Ok(decoded)
}
