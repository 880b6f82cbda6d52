//! Copying unchanged ranges of an old file into the file being built in
//! its place, keeping holes as holes.
//!
//! ext4 has no reflinks, so `copy_file_range` copies bytes, and a hole read
//! back is zeros that the copy would write, allocating them: a `CopyOld` of
//! a sparse old file could fill the disk with a few bytes on the wire. So
//! only the ranges that hold data (`SEEK_DATA`/`SEEK_HOLE`) are copied, and
//! the holes between them are punched into the new file (it may be a kept
//! partial file with old bytes there), which allocates nothing.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use rustix::fs::{FallocateFlags, SeekFrom};
use rustix::io::Errno;

/// Copies `len` bytes at `offset` from `from` to the same offset of `to`:
/// the data in the kernel where it can (`copy_file_range`), holes as holes.
pub(super) fn copy_range(from: &File, to: &File, offset: u64, len: u64) -> io::Result<()> {
    let end = offset + len;
    let mut at = offset;
    while at < end {
        let data = match rustix::fs::seek(from, SeekFrom::Data(at)) {
            Ok(data) => data.min(end),
            // Nothing but a hole from here to the end of the file.
            Err(Errno::NXIO) => end,
            // A file system that cannot tell: all of it is data.
            Err(Errno::INVAL | Errno::OPNOTSUPP) => at,
            Err(e) => return Err(e.into()),
        };
        if data > at {
            zero(to, at, data - at)?;
        }
        if data >= end {
            break;
        }
        let hole = match rustix::fs::seek(from, SeekFrom::Hole(data)) {
            Ok(hole) => hole.min(end),
            Err(Errno::INVAL | Errno::OPNOTSUPP) => end,
            Err(e) => return Err(e.into()),
        };
        copy_data(from, to, data, hole - data)?;
        at = hole;
    }
    Ok(())
}

/// Makes `len` bytes at `offset` of `to` read as zeros without allocating
/// them (a hole), or writes zeros where holes cannot be punched.
pub(super) fn zero(to: &File, offset: u64, len: u64) -> io::Result<()> {
    let punch = FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE;
    match rustix::fs::fallocate(to, punch, offset, len) {
        Ok(()) => Ok(()),
        Err(Errno::OPNOTSUPP) => {
            let zeros = vec![0u8; len.min(1 << 20) as usize];
            let mut done = 0;
            while done < len {
                let n = (len - done).min(zeros.len() as u64) as usize;
                to.write_all_at(&zeros[..n], offset + done)?;
                done += n as u64;
            }
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

fn copy_data(from: &File, to: &File, offset: u64, len: u64) -> io::Result<()> {
    let (mut off_in, mut off_out, mut left) = (offset, offset, len);
    while left > 0 {
        let step = left.min(1 << 30) as usize;
        match rustix::fs::copy_file_range(from, Some(&mut off_in), to, Some(&mut off_out), step) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => left -= n as u64,
            Err(Errno::XDEV | Errno::NOSYS | Errno::INVAL) => {
                return copy_through_buffer(from, to, off_in, left);
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

fn copy_through_buffer(from: &File, to: &File, mut offset: u64, mut left: u64) -> io::Result<()> {
    let mut buf = vec![0u8; left.min(1 << 20) as usize];
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        from.read_exact_at(&mut buf[..n], offset)?;
        to.write_all_at(&buf[..n], offset)?;
        offset += n as u64;
        left -= n as u64;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn holes_stay_holes_and_data_is_copied() {
        let dir = tempfile::tempdir().unwrap();
        let old = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(dir.path().join("old"))
            .unwrap();
        // 1 GiB, sparse but for 8 KiB of data in the middle.
        old.set_len(1 << 30).unwrap();
        old.write_all_at(&[7u8; 8192], 512 << 20).unwrap();
        // The new file is a kept partial file: old bytes everywhere.
        let new = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(dir.path().join("new"))
            .unwrap();
        new.set_len(1 << 30).unwrap();
        new.write_all_at(&[9u8; 4096], 0).unwrap();
        new.write_all_at(&[9u8; 4096], 700 << 20).unwrap();
        copy_range(&old, &new, 0, 1 << 30).unwrap();
        let mut buf = vec![1u8; 8192];
        for (at, want) in [(0, 0u8), (700 << 20, 0), (512 << 20, 7)] {
            new.read_exact_at(&mut buf, at).unwrap();
            assert!(buf.iter().all(|&b| b == want), "at {at}");
        }
        // Only the data (and a block or two around it) is allocated.
        assert!(
            new.metadata().unwrap().blocks() * 512 < 1 << 20,
            "{} blocks",
            new.metadata().unwrap().blocks()
        );
    }
}
