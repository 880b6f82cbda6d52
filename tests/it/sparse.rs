//! `--sparse`: a file of 4 GiB with 8 MiB of data arrives with its holes
//! as holes, costing about its data on the wire and on disk, both ways,
//! with a temporary file and with `--inplace`; a region zeroed at the
//! source becomes zeros (a hole) at the destination in a re-sync.

use std::fs;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;

use crate::util::{both_ways, noise, set_mode, set_mtime};

const MIB: u64 = 1 << 20;
const SIZE: u64 = 4 << 30;
/// The two runs of data: 4 MiB at the start, 4 MiB at 3 GiB.
const DATA: [u64; 2] = [0, 3 << 30];
const RUN: u64 = 4 * MIB;
/// 2 MiB of zeros written out (allocated) at 1 GiB: zeros, not a hole.
const ZEROS_AT: u64 = 1 << 30;

fn sparse_image(path: &Path) {
    let f = fs::File::create(path).unwrap();
    f.set_len(SIZE).unwrap();
    for (i, at) in DATA.iter().enumerate() {
        f.write_all_at(&noise(RUN as usize, i as u64 + 1), *at).unwrap();
    }
    f.write_all_at(&vec![0u8; 2 * MIB as usize], ZEROS_AT).unwrap();
    drop(f);
    set_mode(path, 0o640);
    set_mtime(path, (1_700_000_000, 1));
}

fn allocated(path: &Path) -> u64 {
    fs::metadata(path).unwrap().blocks() * 512
}

fn read_at(path: &Path, at: u64, len: u64) -> Vec<u8> {
    let mut buf = vec![0u8; len as usize];
    fs::File::open(path).unwrap().read_exact_at(&mut buf, at).unwrap();
    buf
}

/// `dst` has `src`'s size, mode, mtime and the bytes of its data runs,
/// and no more than `most` bytes allocated: everything else is a hole,
/// so zeros as at the source.
fn assert_same_sparse(src: &Path, dst: &Path, most: u64, what: &str) {
    let (s, d) = (fs::metadata(src).unwrap(), fs::metadata(dst).unwrap());
    assert_eq!(d.len(), SIZE, "{what}");
    assert_eq!(
        (d.mode() & 0o7777, d.mtime(), d.mtime_nsec()),
        (s.mode() & 0o7777, s.mtime(), s.mtime_nsec())
    );
    for at in DATA {
        assert!(read_at(src, at, RUN) == read_at(dst, at, RUN), "{what}: data at {at} differs");
    }
    assert!(allocated(dst) <= most, "{what}: {} bytes allocated, at most {most} expected", allocated(dst));
}

fn sparse_both_ways(inplace: bool) {
    let mode = if inplace { "--inplace" } else { "temporary file" };
    for way in both_ways() {
        let what = format!("{} with {mode}", way.name);
        fs::create_dir_all(&way.src).unwrap();
        let (src, dst) = (way.src.join("img"), way.dst.join("img"));
        sparse_image(&src);
        let mut opts = vec!["--sparse"];
        if inplace {
            opts.push("--inplace");
        }
        let first = way.sync(&opts);
        assert_same_sparse(&src, &dst, 2 * RUN + MIB, &what);
        let wire = first["wire_bytes"].as_u64().unwrap();
        assert!(wire < 2 * RUN + 2 * MIB, "{what}: {wire} bytes on the wire for 8 MiB of data");
        assert_eq!(first["bytes_transferred"], 2 * RUN, "{what}: {first}");
        assert_eq!(first["bytes_total"], SIZE, "{what}");

        // The first run of data is zeroed at the source (written out, not
        // a hole): the destination's becomes a hole, and no data travels.
        let f = fs::OpenOptions::new().write(true).open(&src).unwrap();
        f.write_all_at(&vec![0u8; RUN as usize], DATA[0]).unwrap();
        drop(f);
        set_mtime(&src, (1_700_000_100, 2));
        let again = way.sync(&opts);
        assert_same_sparse(&src, &dst, RUN + MIB, &format!("{what}, re-sync"));
        assert!(read_at(&dst, DATA[0], RUN).iter().all(|b| *b == 0), "{what}: zeroed region");
        assert_eq!(again["bytes_transferred"], 0, "{what}: {again}");
        assert!(again["wire_bytes"].as_u64().unwrap() < 2 * MIB, "{what}: {again}");
    }
}

#[test]
fn a_sparse_file_costs_its_data_with_a_temporary_file() {
    sparse_both_ways(false);
}

#[test]
fn a_sparse_file_costs_its_data_in_place() {
    sparse_both_ways(true);
}
