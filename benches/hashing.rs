//! Hashing benchmark: `cargo bench --bench hashing`.
//!
//! Two tables, each row with an `hdrhistogram` of per-operation latencies:
//!
//! - every digest function on chunks of 4 KiB, 64 KiB and 1 MiB held in
//!   memory (the cost of checking a received chunk);
//! - `LocalSource::hash` over a 256 MiB file in the page cache, per chunk
//!   (group 1) and in 64 KiB groups of 4 KiB chunks (group 16), one span
//!   request per 64 MiB: what a comparison costs a side, reads included.

use std::hint::black_box;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use pareco::codec::{Direction, HashAlgo, RelPath, SessionSpec, Span};
use pareco::peer::{hash, Filter, LocalSource, Settings, Source, Tree};

const FILE_SIZE: usize = 256 << 20;

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("histogram bounds")
}

fn print_row(name: &str, bytes: u64, wall: Duration, hist: &Histogram<u64>) {
    let us = |q: f64| hist.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "{name:<34} {:>8.2} GB/s   p50 {:>9.1} µs  p90 {:>9.1} µs  p99 {:>9.1} µs  max {:>9.1} µs",
        bytes as f64 / wall.as_secs_f64() / 1e9,
        us(0.5),
        us(0.9),
        us(0.99),
        hist.max() as f64 / 1000.0
    );
}

fn digests_in_memory() {
    println!("digest of one chunk in memory");
    for size in [4 << 10, 64 << 10, 1 << 20] {
        let data: Vec<u8> = (0..size).map(|i: usize| (i.wrapping_mul(2_654_435_761) >> 7) as u8).collect();
        let rounds = (512 << 20) / size;
        for algo in HashAlgo::ALL {
            let mut hist = histogram();
            let started = Instant::now();
            for _ in 0..rounds {
                let t = Instant::now();
                black_box(hash::digest(algo, black_box(&data)));
                hist.saturating_record(t.elapsed().as_nanos().max(1) as u64);
            }
            let wall = started.elapsed();
            print_row(&format!("{algo:?} {} KiB", size >> 10), (rounds * size) as u64, wall, &hist);
        }
    }
}

fn hashing_a_file() {
    println!("\nLocalSource::hash over a {} MiB file (page cache), one request per 64 MiB", FILE_SIZE >> 20);
    let dir = tempfile::tempdir().expect("temp dir");
    let data: Vec<u8> = (0..FILE_SIZE).map(|i| (i.wrapping_mul(2_654_435_761) >> 9) as u8).collect();
    std::fs::write(dir.path().join("f"), &data).expect("write file");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    for (chunk, group) in [(1u32 << 20, 1u32), (4 << 10, 1), (4 << 10, 16)] {
        let spec = SessionSpec::new(Direction::Upload, RelPath::root(), chunk, HashAlgo::Xxh3);
        let settings = Settings::for_session(&spec, Filter::default(), true);
        let source = LocalSource::new(Tree::open(dir.path()).expect("open tree"), settings);
        let per_request = ((64 << 20) / chunk) as u64;
        let chunks = (FILE_SIZE as u64).div_ceil(chunk as u64);
        let mut hist = histogram();
        let path = RelPath::new("f").expect("path");
        let started = Instant::now();
        for _ in 0..4 {
            for first in (0..chunks).step_by(per_request as usize) {
                let span = Span { size: FILE_SIZE as u64, first, count: per_request as u32, group };
                let t = Instant::now();
                let digests = rt.block_on(source.hash(path.clone(), span)).expect("hash");
                hist.saturating_record(t.elapsed().as_nanos().max(1) as u64);
                black_box(digests);
            }
        }
        let wall = started.elapsed();
        let name = format!("{} KiB chunks, group {group}", chunk >> 10);
        print_row(&name, 4 * FILE_SIZE as u64, wall, &hist);
    }
}

fn main() {
    digests_in_memory();
    hashing_a_file();
}
