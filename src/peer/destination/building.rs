//! Files built chunk by chunk: `Begin` opens the temporary file (or, with
//! `inplace`, the file itself), `CopyOld` and `Write` fill it, `Finish`
//! puts it in place and `Discard` drops it. A file that hits a full file
//! system gives its space back at once.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::codec::{ErrorKind, Kind, Meta, RelPath};

use super::super::error::{Error, Result};
use super::super::temp::temp_path;
use super::super::tree::{file_stat, link_count, set_file_meta};
use super::super::{copy, sparse, Begun, Digest, SETID_BITS};
use super::entries::below_root;
use super::{check_digest, max_copy, protocol, Inner, MAX_BUILDING};

/// A file being built.
#[derive(Debug)]
pub(super) struct Building {
    pub(super) path: RelPath,
    pub(super) size: u64,
    /// The temporary file's path; `None` when writing in place.
    pub(super) temp: Option<RelPath>,
    /// Where chunks are written.
    pub(super) file: File,
    /// The previous version and its size, if there was one (temporary-file
    /// mode only: in place, the file is its own previous version).
    pub(super) old: Option<(File, u64)>,
    pub(super) partial: bool,
}

impl Building {
    /// Whether the file may hold bytes where a chunk goes: all but a fresh
    /// temporary file, whose unwritten chunks are holes.
    fn holds_bytes(&self) -> bool {
        self.temp.is_none() || self.partial
    }
}

impl Inner {
    pub(super) fn begin(&self, path: RelPath, size: u64) -> Result<Begun> {
        below_root(&path)?;
        if self.slots.fetch_add(1, Ordering::SeqCst) >= MAX_BUILDING {
            self.slots.fetch_sub(1, Ordering::SeqCst);
            return Err(Error::new(
                ErrorKind::Limit,
                format!("{path}: {MAX_BUILDING} files are being built already; finish or discard one first"),
            ));
        }
        let begun = self.start(path, size);
        if begun.is_err() {
            self.slots.fetch_sub(1, Ordering::SeqCst);
        }
        begun
    }

    fn start(&self, path: RelPath, size: u64) -> Result<Begun> {
        let existing = self.prepare_file_slot(&path)?;
        let building = match self.open_in_place(&path)? {
            Some(file) => Building { path, size, temp: None, file, old: None, partial: false },
            None => {
                let temp = temp_path(&path)?;
                let kept = match self.tree.lstat(&temp)? {
                    Some(st) if st.kind == Kind::File => Some(self.tree.open_write(&temp, false)?),
                    _ => None,
                };
                // A kept temporary file with another name is shared with
                // something else: start afresh rather than write into it.
                let (file, partial) = match kept {
                    Some(file) if link_count(&file, &temp)? == 1 => (file, true),
                    _ => (self.fresh_temp(&temp, &path)?, false),
                };
                let old = match existing {
                    Some(st) => Some((self.tree.open_read(&path)?, st.size)),
                    None => None,
                };
                Building { path, size, temp: Some(temp), file, old, partial }
            }
        };
        if let Err(e) = building.file.set_len(size) {
            let error = Error::from_io(e, &building.path, "resize");
            if let (ErrorKind::NoSpace, Some(temp)) = (error.kind, &building.temp) {
                let _ = self.tree.remove_file(temp);
            }
            return Err(error);
        }
        let begun =
            Begun { handle: self.next_handle.fetch_add(1, Ordering::Relaxed), partial: building.partial };
        self.lock().insert(begun.handle, Arc::new(building));
        Ok(begun)
    }

    /// With `inplace`, the file itself to write into (made if missing),
    /// unless it has other names (hard links), which writing into it would
    /// change too: such a file is replaced instead, as without `inplace`.
    pub(super) fn open_in_place(&self, path: &RelPath) -> Result<Option<File>> {
        if !self.settings.inplace {
            return Ok(None);
        }
        let file = self.tree.open_write(path, true)?;
        if link_count(&file, path)? > 1 {
            tracing::debug!("{path}: has hard links; replaced rather than written in place");
            return Ok(None);
        }
        // A setuid or setgid program written into in place would carry its
        // bits with new content until `Finish` (or for good, if the file is
        // abandoned): clear them before any byte is written.
        let (stat, _) = file_stat(&file, path)?;
        if !self.settings.keep_setid && stat.meta.mode & SETID_BITS != 0 {
            set_file_meta(&file, &self.file_meta(stat.meta), path)?;
        }
        Ok(Some(file))
    }

    pub(super) fn copy_old(&self, handle: u64, ranges: Vec<(u64, u64)>) -> Result<()> {
        let b = self.building(handle)?;
        let Some((old, old_size)) = &b.old else {
            return Err(protocol(format!("{}: no old file to copy from", b.path)));
        };
        // In order, without overlaps, within the file and within one
        // request's bytes: a request is a bounded step of work.
        let (mut done, mut total) = (0u64, 0u64);
        for &(offset, len) in &ranges {
            let end = offset.checked_add(len).filter(|end| *end <= b.size.min(*old_size));
            let Some(end) = end.filter(|_| offset >= done) else {
                return Err(protocol(format!(
                    "{}: copy ranges out of order or past the end of the file",
                    b.path
                )));
            };
            (done, total) = (end, total + len);
        }
        if total > max_copy(self.settings.chunk_size) {
            return Err(protocol(format!(
                "{}: one CopyOld copies at most {} bytes ({total} asked)",
                b.path,
                max_copy(self.settings.chunk_size)
            )));
        }
        for (offset, len) in ranges {
            copy::copy_range(old, &b.file, offset, len)
                .map_err(|e| self.give_back_space(handle, Error::from_io(e, &b.path, "copy")))?;
        }
        Ok(())
    }

    /// A file being built that hit a full file system gives its space
    /// back: its temporary file is removed and its handle is gone (the
    /// client stops the run; a later run starts the file afresh).
    fn give_back_space(&self, handle: u64, error: Error) -> Error {
        if error.kind == ErrorKind::NoSpace {
            if let Ok(b) = self.take(handle) {
                if let Some(temp) = &b.temp {
                    let _ = self.tree.remove_file(temp);
                }
                self.gave_back.lock().unwrap_or_else(|p| p.into_inner()).insert(handle, b.path.clone());
            }
        }
        error
    }

    pub(super) fn write(&self, handle: u64, offset: u64, data: &[u8], digest: Digest) -> Result<()> {
        let b = self.building(handle)?;
        if offset.checked_add(data.len() as u64).is_none_or(|end| end > b.size) {
            return Err(protocol(format!("{}: chunk at {offset} is past the end of the file", b.path)));
        }
        check_digest(&self.settings, data, digest, &b.path, offset)?;
        let written = match self.settings.sparse {
            true => sparse::write_sparse(&b.file, data, offset, b.holds_bytes()),
            false => b.file.write_all_at(data, offset),
        };
        written.map_err(|e| self.give_back_space(handle, Error::from_io(e, &b.path, "write")))
    }

    /// Sparse sessions: `len` bytes at `offset` are zeros.
    pub(super) fn zero(&self, handle: u64, offset: u64, len: u32) -> Result<()> {
        let b = self.building(handle)?;
        if !self.settings.sparse || len > self.settings.chunk_size {
            return Err(protocol(format!("{}: Zero is for sparse sessions, at most a chunk", b.path)));
        }
        if offset.checked_add(len.into()).is_none_or(|end| end > b.size) {
            return Err(protocol(format!("{}: zeros at {offset} are past the end of the file", b.path)));
        }
        sparse::zero_range(&b.file, offset, len.into(), b.holds_bytes())
            .map_err(|e| self.give_back_space(handle, Error::from_io(e, &b.path, "punch a hole in")))
    }

    pub(super) fn finish(&self, handle: u64, meta: Meta) -> Result<()> {
        let b = self.take(handle)?;
        if let Err(e) = b.file.set_len(b.size) {
            let error = Error::from_io(e, &b.path, "resize");
            if let (ErrorKind::NoSpace, Some(temp)) = (error.kind, &b.temp) {
                let _ = self.tree.remove_file(temp);
            }
            return Err(error);
        }
        self.set_meta_of(&b.file, meta, &b.path)?;
        self.sync_file(&b.file, &b.path)?;
        match &b.temp {
            Some(temp) => {
                self.tree.rename(temp, &b.path)?;
                self.sync_parents([&b.path])
            }
            None => Ok(()),
        }
    }

    pub(super) fn discard(&self, handle: u64, remove: bool) -> Result<()> {
        let b = self.take(handle)?;
        if remove {
            if let Some(temp) = &b.temp {
                self.tree.remove_file(temp)?;
            }
            self.tree.remove_file(&b.path)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::peer::{Settings, Tree};

    #[test]
    fn a_request_in_flight_for_a_file_given_back_for_lack_of_space_fails_for_lack_of_space() {
        let dir = tempfile::tempdir().unwrap();
        let settings = Settings::for_tests(1024);
        let dest = super::super::LocalDestination::new(Tree::open(dir.path()).unwrap(), settings);
        let inner = &dest.inner;
        let path = RelPath::new("f").unwrap();
        let begun = inner.begin(path, 4096).unwrap();
        let full = Error::new(ErrorKind::NoSpace, "f: write: no space left on device");
        assert_eq!(inner.give_back_space(begun.handle, full).kind, ErrorKind::NoSpace);
        // The other chunks of the file were on their way.
        let late = inner.write(begun.handle, 1024, &[0; 1024], 0).unwrap_err();
        assert_eq!((late.kind, late.message.as_str()), (ErrorKind::NoSpace, "f: no space left on device"));
        let meta = Meta { mode: 0o644, mtime: crate::codec::Mtime { secs: 0, nanos: 0 }, extra: None };
        assert_eq!(inner.finish(begun.handle, meta).unwrap_err().kind, ErrorKind::NoSpace);
        // A handle never given out is still a protocol error.
        assert_eq!(inner.write(999, 0, &[], 0).unwrap_err().kind, ErrorKind::Protocol);
    }

    #[test]
    fn a_chunk_unlike_its_digest_is_refused_unless_it_came_over_tls() {
        let data = b"the bytes that arrived";
        let wrong = crate::peer::hash::digest(crate::codec::HashAlgo::Xxh3, b"the bytes that were sent");
        for check_digests in [true, false] {
            let dir = tempfile::tempdir().unwrap();
            let settings = Settings { check_digests, ..Settings::for_tests(1024) };
            let dest = super::super::LocalDestination::new(Tree::open(dir.path()).unwrap(), settings);
            let begun = dest.inner.begin(RelPath::new("f").unwrap(), data.len() as u64).unwrap();
            let written = dest.inner.write(begun.handle, 0, data, wrong);
            match check_digests {
                true => assert_eq!(written.unwrap_err().kind, ErrorKind::DigestMismatch),
                false => written.unwrap(),
            }
        }
    }
}
