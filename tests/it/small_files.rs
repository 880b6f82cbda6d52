//! Re-syncing many small files the destination already has in the same
//! size: they are compared in batches, and only those whose bytes differ
//! travel, even when size and mtime say nothing changed.

use std::fs;

use crate::util::*;

#[test]
fn small_files_of_equal_size_are_compared_by_content_in_batches() {
    for way in both_ways() {
        // More files than one listing batch, in two directories.
        for i in 0..700u64 {
            let size = 1 + (i as usize * 37) % 3000;
            file(&way.src.join(format!("d{}/f{i:04}", i % 2)), &noise(size, i), 0o644, (1_600_000_000, 0));
        }
        file(&way.src.join("empty"), b"", 0o600, (1_600_000_000, 0));
        let first = way.sync(&["-c", "4KiB"]);
        assert_eq!(first["files_transferred"], 701, "{}: {first}", way.name);
        // Same size and mtime, other bytes (rsync's quick check would miss
        // them); other permission bits only; untouched.
        for i in (0..700u64).step_by(70) {
            let path = way.src.join(format!("d{}/f{i:04}", i % 2));
            let mut bytes = fs::read(&path).unwrap();
            bytes[0] ^= 0xff;
            file(&path, &bytes, 0o644, (1_600_000_000, 0));
        }
        for i in (5..700u64).step_by(100) {
            set_mode(&way.src.join(format!("d{}/f{i:04}", i % 2)), 0o600);
        }
        let again = way.sync(&["-c", "4KiB"]);
        assert_same_tree(&way.src, &way.dst);
        assert_eq!(again["files_total"], 701, "{}: {again}", way.name);
        assert_eq!(again["files_transferred"], 10, "{}: {again}", way.name);
        assert_eq!(again["files_skipped"], 691, "{}: {again}", way.name);
        assert_eq!(again["errors"], 0, "{}: {again}", way.name);
        let changed: u64 = (0..700u64).step_by(70).map(|i| 1 + (i * 37) % 3000).sum();
        assert_eq!(again["bytes_transferred"], changed, "{}: {again}", way.name);
        // Nothing left to do.
        let last = way.sync(&["-c", "4KiB"]);
        assert_eq!(last["files_transferred"], 0, "{}: {last}", way.name);
    }
}
