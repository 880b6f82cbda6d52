//! Wire codec benchmark: `cargo bench --bench codec`.
//!
//! Measures the codec alone, with `std::time::Instant` and one
//! `hdrhistogram::Histogram` (nanoseconds) per operation:
//!
//! - 1 MiB chunk frames (`Message::Write` + a 1 MiB payload). Encoding is
//!   `Packet::encode_head` chained with the payload `Bytes` (what
//!   the session's frame writer hands to a vectored write; no copy). Decoding is
//!   `FrameCodec::decode` on a `BytesMut` that already holds many frames:
//!   filling that buffer is the memcpy a socket read would do, so it is timed
//!   on its own row and not counted as codec time.
//! - Small control messages (`Hash`, `Probe` with 10 paths, `Done`): encode
//!   and decode, messages per second.
//!
//! Throughput and the mean come from a pass timed as a whole; the
//! percentiles from a second pass that times every frame, so they include
//! the cost of reading the clock twice (a few tens of ns).

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use hdrhistogram::Histogram;
use pareco::codec::{FrameCodec, HashTarget, Message, Packet, RelPath, Span};
use serde_bytes::ByteBuf;
use tokio_util::codec::Decoder;

const MIB: usize = 1 << 20;
/// Chunk frames per read buffer (64 MiB).
const FRAMES_PER_BUFFER: usize = 64;
/// Read buffers per pass: 24 × 64 MiB = 1.5 GiB of payload per pass.
const ROUNDS: usize = 24;
/// Control messages per read buffer, and read buffers per pass: 200 000
/// messages per pass, per message kind.
const CONTROL_PER_BUFFER: usize = 10_000;
const CONTROL_ROUNDS: usize = 20;

/// One line of the result table.
struct Row {
    op: String,
    count: u64,
    /// Payload bytes moved, for the GB/s column (0 for control messages).
    bytes: u64,
    /// Time of the pass timed as a whole.
    wall: Duration,
    /// Per-operation latencies, in nanoseconds.
    hist: Histogram<u64>,
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("histogram bounds")
}

fn record(hist: &mut Histogram<u64>, since: Instant) {
    hist.saturating_record(since.elapsed().as_nanos().max(1) as u64);
}

fn chunk_packets() -> Vec<Packet> {
    let payload: Bytes =
        (0..MIB).map(|i| (i as u32).wrapping_mul(2_654_435_761) as u8).collect::<Vec<u8>>().into();
    (0..FRAMES_PER_BUFFER)
        .map(|i| {
            Packet::with_payload(
                i as u32 + 1,
                Message::Write { handle: 7, offset: (i * MIB) as u64, digest: ByteBuf::from(vec![0xAB; 8]) },
                payload.clone(),
            )
        })
        .collect()
}

/// Encodes `packets` `rounds` times: `encode_head` chained with the payload,
/// the frame a vectored write sends.
fn encode_pass(packets: &[Packet], rounds: usize, mut hist: Option<&mut Histogram<u64>>) -> Duration {
    let start = Instant::now();
    for _ in 0..rounds {
        for packet in packets {
            let t = Instant::now();
            let head = packet.encode_head().expect("encode");
            let frame = head.chain(packet.payload.clone());
            black_box(frame.remaining());
            drop(black_box(frame));
            if let Some(h) = hist.as_deref_mut() {
                record(h, t);
            }
        }
    }
    start.elapsed()
}

/// Per-frame histograms of a decode pass: the decode, and the buffer fill
/// that models the socket read.
struct DecodeHists<'a> {
    decode: &'a mut Histogram<u64>,
    read: &'a mut Histogram<u64>,
}

/// Decodes `rounds` read buffers, each holding the frames of `packets`
/// repeated `repeat` times. Returns the decode time and the time spent
/// filling the buffers (not codec time). Decoded packets are kept until the
/// buffer is done, as a writer would hold them, and dropped outside the timed
/// region.
fn decode_pass(
    packets: &[Packet],
    repeat: usize,
    rounds: usize,
    max_payload: usize,
    mut hists: Option<DecodeHists<'_>>,
) -> (Duration, Duration) {
    let heads: Vec<Bytes> = packets.iter().map(|p| p.encode_head().expect("encode")).collect();
    let size: usize =
        heads.iter().zip(packets).map(|(h, p)| h.len() + p.payload.len()).sum::<usize>() * repeat;
    let frames = packets.len() * repeat;
    let mut codec = FrameCodec::new(max_payload);
    let mut buf = BytesMut::new();
    let mut out = Vec::with_capacity(frames);
    let (mut decode, mut read) = (Duration::ZERO, Duration::ZERO);
    for _ in 0..rounds {
        let start = Instant::now();
        buf.reserve(size); // reclaims the previous round's allocation
        for _ in 0..repeat {
            for (head, packet) in heads.iter().zip(packets) {
                let t = Instant::now();
                buf.extend_from_slice(head);
                buf.extend_from_slice(&packet.payload);
                if let Some(h) = hists.as_mut() {
                    record(h.read, t);
                }
            }
        }
        read += start.elapsed();

        let start = Instant::now();
        for _ in 0..frames {
            let t = Instant::now();
            let packet = codec.decode(&mut buf).expect("decode").expect("a whole frame");
            out.push(black_box(packet));
            if let Some(h) = hists.as_mut() {
                record(h.decode, t);
            }
        }
        decode += start.elapsed();
        assert!(buf.is_empty());
        assert_eq!(out.last().map(|p| &p.msg), packets.last().map(|p| &p.msg));
        out.clear();
    }
    (decode, read)
}

/// Encodes each packet and decodes its frame from a buffer filled
/// beforehand (the fill is not timed): the per-frame codec cost of one hop.
fn round_trip_pass(
    packets: &[Packet],
    rounds: usize,
    max_payload: usize,
    mut hist: Option<&mut Histogram<u64>>,
) -> Duration {
    let heads: Vec<Bytes> = packets.iter().map(|p| p.encode_head().expect("encode")).collect();
    let size: usize = heads.iter().zip(packets).map(|(h, p)| h.len() + p.payload.len()).sum();
    let mut codec = FrameCodec::new(max_payload);
    let mut buf = BytesMut::new();
    let mut out = Vec::with_capacity(packets.len());
    let mut wall = Duration::ZERO;
    for _ in 0..rounds {
        buf.reserve(size);
        for (head, packet) in heads.iter().zip(packets) {
            buf.extend_from_slice(head);
            buf.extend_from_slice(&packet.payload);
        }
        let start = Instant::now();
        for packet in packets {
            let t = Instant::now();
            let frame = packet.encode_head().expect("encode").chain(packet.payload.clone());
            black_box(frame.remaining());
            drop(black_box(frame));
            let decoded = codec.decode(&mut buf).expect("decode").expect("a whole frame");
            out.push(black_box(decoded));
            if let Some(h) = hist.as_deref_mut() {
                record(h, t);
            }
        }
        wall += start.elapsed();
        out.clear();
    }
    wall
}

fn chunk_frames(rows: &mut Vec<Row>) {
    let packets = chunk_packets();
    let frames = (FRAMES_PER_BUFFER * ROUNDS) as u64;
    let bytes = frames * MIB as u64;

    // Warm up (page faults, allocator), then a whole-pass and a per-frame pass.
    encode_pass(&packets, 2, None);
    decode_pass(&packets, 1, 2, MIB, None);

    let enc_wall = encode_pass(&packets, ROUNDS, None);
    let mut enc_hist = histogram();
    encode_pass(&packets, ROUNDS, Some(&mut enc_hist));

    let (dec_wall, read_wall) = decode_pass(&packets, 1, ROUNDS, MIB, None);
    let (mut dec_hist, mut read_hist) = (histogram(), histogram());
    decode_pass(&packets, 1, ROUNDS, MIB, Some(DecodeHists { decode: &mut dec_hist, read: &mut read_hist }));
    round_trip_pass(&packets, 2, MIB, None);
    let both_wall = round_trip_pass(&packets, ROUNDS, MIB, None);
    let mut both = histogram();
    round_trip_pass(&packets, ROUNDS, MIB, Some(&mut both));

    rows.push(Row {
        op: "1 MiB chunk: encode (head + chain)".into(),
        count: frames,
        bytes,
        wall: enc_wall,
        hist: enc_hist,
    });
    rows.push(Row { op: "1 MiB chunk: decode".into(), count: frames, bytes, wall: dec_wall, hist: dec_hist });
    rows.push(Row {
        op: "1 MiB chunk: encode + decode".into(),
        count: frames,
        bytes,
        wall: both_wall,
        hist: both,
    });
    rows.push(Row {
        op: "(not codec) socket-read memcpy".into(),
        count: frames,
        bytes,
        wall: read_wall,
        hist: read_hist,
    });
}

fn control_packets() -> Vec<(&'static str, Packet)> {
    let paths: Vec<RelPath> = (0..10)
        .map(|i| RelPath::new(format!("src/module_{i}/some_file_name_{i}.rs")).expect("valid path"))
        .collect();
    vec![
        (
            "Hash",
            Packet::new(
                1234,
                Message::Hash {
                    target: HashTarget::Path(RelPath::new("data/images/disk-0001.img").expect("valid path")),
                    span: Span { size: 10 << 30, first: 512, count: 64, group: 1 },
                },
            ),
        ),
        ("Probe (10 paths)", Packet::new(1235, Message::Probe { paths })),
        ("Done", Packet::new(1236, Message::Done)),
    ]
}

fn control_messages(rows: &mut Vec<Row>) {
    let count = (CONTROL_PER_BUFFER * CONTROL_ROUNDS) as u64;
    for (name, packet) in control_packets() {
        let packets = [packet];
        let head_len = packets[0].encode_head().expect("encode").len();

        encode_pass(&packets, CONTROL_PER_BUFFER, None);
        let enc_wall = encode_pass(&packets, count as usize, None);
        let mut enc_hist = histogram();
        encode_pass(&packets, count as usize, Some(&mut enc_hist));

        decode_pass(&packets, CONTROL_PER_BUFFER, 2, 0, None);
        let (dec_wall, _) = decode_pass(&packets, CONTROL_PER_BUFFER, CONTROL_ROUNDS, 0, None);
        let (mut dec_hist, mut read_hist) = (histogram(), histogram());
        let hists = DecodeHists { decode: &mut dec_hist, read: &mut read_hist };
        decode_pass(&packets, CONTROL_PER_BUFFER, CONTROL_ROUNDS, 0, Some(hists));

        rows.push(Row {
            op: format!("{name} ({head_len} B): encode"),
            count,
            bytes: 0,
            wall: enc_wall,
            hist: enc_hist,
        });
        rows.push(Row {
            op: format!("{name} ({head_len} B): decode"),
            count,
            bytes: 0,
            wall: dec_wall,
            hist: dec_hist,
        });
    }
}

fn ns(v: f64) -> String {
    if v < 1e3 {
        format!("{v:.0} ns")
    } else if v < 1e6 {
        format!("{:.2} µs", v / 1e3)
    } else {
        format!("{:.2} ms", v / 1e6)
    }
}

fn print_table(rows: &[Row]) {
    println!(
        "{:<36} {:>8} {:>22} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "operation", "count", "throughput", "mean", "p50", "p90", "p99", "max"
    );
    println!("{}", "-".repeat(36 + 8 + 22 + 9 * 5 + 7));
    for row in rows {
        let secs = row.wall.as_secs_f64();
        let throughput = if row.bytes > 0 {
            format!("{:.1} GB/s", row.bytes as f64 / secs / 1e9)
        } else {
            format!("{:.2} M msg/s", row.count as f64 / secs / 1e6)
        };
        let q = |p: f64| ns(row.hist.value_at_quantile(p) as f64);
        println!(
            "{:<36} {:>8} {:>22} {:>9} {:>9} {:>9} {:>9} {:>9}",
            row.op,
            row.count,
            throughput,
            ns(secs * 1e9 / row.count as f64),
            q(0.50),
            q(0.90),
            q(0.99),
            ns(row.hist.max() as f64),
        );
    }
}

fn main() {
    let start = Instant::now();
    let mut rows = Vec::new();
    chunk_frames(&mut rows);
    control_messages(&mut rows);
    println!();
    print_table(&rows);
    println!();
    println!("GB/s = 10^9 payload bytes per second. mean = pass timed as a whole / count;");
    println!("percentiles time each frame on its own (clock overhead included).");
    println!("The memcpy row is the buffer fill that models the socket read; it is not codec time.");
    let chunk = rows.iter().find(|r| r.op == "1 MiB chunk: encode + decode").expect("row");
    let gbps = chunk.bytes as f64 / chunk.wall.as_secs_f64() / 1e9;
    println!(
        "chunk frames through encode + decode: {gbps:.1} GB/s (target > 10 GB/s: {})",
        if gbps > 10.0 { "met" } else { "NOT met" }
    );
    println!("total bench time {:.2} s", start.elapsed().as_secs_f64());
}
