//! Sparse files (`--sparse`): runs of zeros found and skipped on both sides.
//!
//! - A source finds a file's holes with `SEEK_DATA`: a chunk that lies in
//!   a hole is neither read nor hashed (the digest of N zero bytes is
//!   computed once, [`zero_digest`]) and is answered as zeros, with no
//!   payload; a chunk read that turns out all zeros is answered the same.
//! - A destination leaves zeros unwritten ([`write_sparse`]): in a fresh
//!   temporary file they are a hole already; anywhere else (in place, a
//!   kept partial file) the hole is punched (`FALLOC_FL_PUNCH_HOLE`), or
//!   zeros written where the file system cannot punch.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Mutex;

use rustix::fs::SeekFrom;
use rustix::io::Errno;

use crate::codec::HashAlgo;

use super::copy;
use super::hash::{self, Digest};

/// Zeros are looked for, and left unwritten, in blocks of this many bytes
/// (at offsets that are multiples of it): the block size of the usual
/// file systems, below which a hole cannot be made.
pub const BLOCK: u64 = 4096;

/// Digests of zeros remembered, by algorithm and length: a session has
/// one chunk size and a last chunk per file, so few are ever needed.
const REMEMBERED: usize = 64;

/// The digest of `len` zero bytes, computed once per algorithm and length.
pub fn zero_digest(algo: HashAlgo, len: usize) -> Digest {
    static KNOWN: Mutex<Option<HashMap<(&str, usize), Digest>>> = Mutex::new(None);
    let mut known = KNOWN.lock().unwrap_or_else(|p| p.into_inner());
    let known = known.get_or_insert_with(HashMap::new);
    if let Some(digest) = known.get(&(algo.name(), len)) {
        return *digest;
    }
    let digest = hash::digest(algo, &vec![0u8; len]);
    if known.len() >= REMEMBERED {
        known.clear();
    }
    known.insert((algo.name(), len), digest);
    digest
}

/// Whether the `len` bytes at `offset` of `file` (of `size` bytes) lie in
/// a hole, asked of the file system without reading them. False when they
/// reach past the end, or when the file system cannot tell.
pub fn in_hole(file: &File, offset: u64, len: u64, size: u64) -> bool {
    if offset.saturating_add(len) > size || len == 0 {
        return false;
    }
    match rustix::fs::seek(file, SeekFrom::Data(offset)) {
        Ok(data) => data >= offset + len,
        // Nothing but a hole from `offset` to the end of the file.
        Err(Errno::NXIO) => true,
        Err(_) => false,
    }
}

/// Whether `data` is all zeros.
pub fn all_zeros(data: &[u8]) -> bool {
    // Block by block, each folded without branches (vectorized), so that
    // data stops the scan at its first block.
    data.chunks(BLOCK as usize).all(|block| block.iter().fold(0u8, |acc, b| acc | b) == 0)
}

/// Writes `data` at `offset` of `file`, leaving out its blocks of zeros:
/// with `punch` they are made holes (the file may hold other bytes there),
/// without it they are left as they are (a hole already).
pub fn write_sparse(file: &File, data: &[u8], offset: u64, punch: bool) -> io::Result<()> {
    let end = offset + data.len() as u64;
    let mut at = offset;
    // The current run: its start and whether it is zeros.
    let mut run: Option<(u64, bool)> = None;
    while at < end {
        let next = ((at / BLOCK + 1) * BLOCK).min(end);
        let zeros = all_zeros(&data[(at - offset) as usize..(next - offset) as usize]);
        match run {
            Some((start, kind)) if kind != zeros => {
                put_run(file, data, offset, start, at, kind, punch)?;
                run = Some((at, zeros));
            }
            None => run = Some((at, zeros)),
            Some(_) => {}
        }
        at = next;
    }
    if let Some((start, zeros)) = run {
        put_run(file, data, offset, start, end, zeros, punch)?;
    }
    Ok(())
}

fn put_run(
    file: &File,
    data: &[u8],
    base: u64,
    start: u64,
    end: u64,
    zeros: bool,
    punch: bool,
) -> io::Result<()> {
    if !zeros {
        return file.write_all_at(&data[(start - base) as usize..(end - base) as usize], start);
    }
    if punch {
        copy::zero(file, start, end - start)?;
    }
    Ok(())
}

/// Makes the `len` bytes at `offset` of `file` zeros: a hole punched, or
/// nothing at all when they are a hole already (`punch` false).
pub fn zero_range(file: &File, offset: u64, len: u64, punch: bool) -> io::Result<()> {
    if punch && len > 0 {
        copy::zero(file, offset, len)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn zero_digest_is_the_digest_of_zeros() {
        for algo in HashAlgo::ALL {
            for len in [0, 1, 4096, 100_000] {
                assert_eq!(zero_digest(algo, len), hash::digest(algo, &vec![0u8; len]));
            }
        }
    }

    #[test]
    fn zeros_are_left_out_and_holes_found() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let file = File::options().create(true).truncate(true).read(true).write(true).open(&path).unwrap();
        let size = 64 * BLOCK;
        file.set_len(size).unwrap();
        // Data in block 1 and block 40, zeros in between (and a partial
        // zero run inside block 1).
        let mut data = vec![0u8; (48 * BLOCK) as usize];
        data[BLOCK as usize..BLOCK as usize + 10].fill(7);
        data[(40 * BLOCK) as usize] = 9;
        write_sparse(&file, &data, 0, false).unwrap();
        let mut back = vec![0u8; data.len()];
        file.read_exact_at(&mut back, 0).unwrap();
        assert_eq!(back, data);
        assert!(file.metadata().unwrap().blocks() * 512 <= 4 * BLOCK, "zeros were written");
        assert!(in_hole(&file, 2 * BLOCK, 30 * BLOCK, size));
        assert!(!in_hole(&file, 0, 2 * BLOCK, size));
        assert!(in_hole(&file, 41 * BLOCK, 23 * BLOCK, size));
        assert!(!in_hole(&file, 41 * BLOCK, 24 * BLOCK, size), "past the end");
        // Punched: the data of block 40 becomes a hole again.
        write_sparse(&file, &vec![0u8; BLOCK as usize], 40 * BLOCK, true).unwrap();
        assert!(in_hole(&file, 2 * BLOCK, 62 * BLOCK, size));
        assert!(all_zeros(&[0; 10_000]) && !all_zeros(&[0, 0, 1]));
    }
}
