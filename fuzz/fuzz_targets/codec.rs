//! Fuzzes the frame decoder with arbitrary bytes.
//!
//! Input layout: the first byte picks the decoder's payload limit,
//! `2^(b mod 32) - 1` (capped at `MAX_PAYLOAD_CAP` by `FrameCodec::new`);
//! the rest is the byte stream. Frames are decoded until an error or a
//! partial frame. Every decoded packet must re-encode (`encode_head` +
//! payload) to a frame that decodes to an equal packet. The seed corpus in
//! `corpus/codec/` uses the same layout; it is written by the ignored test
//! `write_fuzz_corpus` in `tests/it/codec.rs`, which also holds the
//! regression test that runs the decoder over it.
//!
//! Run it with a separate working corpus so the seeds are not flooded:
//!
//! ```text
//! mkdir -p /tmp/fuzz-corpus
//! cargo fuzz run --sanitizer none codec /tmp/fuzz-corpus corpus/codec -- -max_total_time=60
//! ```

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use pareco::codec::{CodecError, FrameCodec, MAX_PAYLOAD_CAP};
use tokio_util::codec::Decoder;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, stream)) = data.split_first() else {
        return;
    };
    let mut codec = FrameCodec::new((1usize << (selector & 31)) - 1);
    let mut buf = BytesMut::from(stream);
    loop {
        match codec.decode(&mut buf) {
            Ok(Some(packet)) => {
                assert!(packet.payload.len() <= codec.max_payload());
                check_reencodes(&packet);
            }
            Ok(None) => {
                // A partial frame: at the end of the stream that is an error
                // naming its length, never a packet.
                let left = buf.len();
                match codec.decode_eof(&mut buf) {
                    Ok(None) => assert_eq!(left, 0),
                    Err(CodecError::Truncated(n)) => assert_eq!(n, left),
                    other => panic!("decode_eof after a partial frame: {other:?}"),
                }
                break;
            }
            Err(_) => break,
        }
    }
});

/// The packet re-encodes, and the new frame decodes to an equal packet.
fn check_reencodes(packet: &pareco::codec::Packet) {
    let head = match packet.encode_head() {
        Ok(head) => head,
        // A header written compactly (variants by index rather than by name)
        // can grow past the limit when re-encoded in canonical form.
        Err(CodecError::HeaderTooLarge(_)) => return,
        Err(e) => panic!("a decoded packet does not re-encode: {e}"),
    };
    let mut frame = BytesMut::with_capacity(head.len() + packet.payload.len());
    frame.extend_from_slice(&head);
    frame.extend_from_slice(&packet.payload);
    let again = FrameCodec::new(MAX_PAYLOAD_CAP)
        .decode(&mut frame)
        .expect("a re-encoded packet decodes")
        .expect("a re-encoded packet is a whole frame");
    assert_eq!(&again, packet, "the re-encoded packet decodes to itself");
    assert!(frame.is_empty(), "nothing after the re-encoded frame");
}
