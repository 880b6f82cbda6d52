//! [`LocalDestination`]: the destination role over a local [`Tree`].
//!
//! A changed file is built in a temporary file beside it ([`super::temp`]):
//! unchanged chunks are copied from the old file (holes kept, see
//! `peer::copy`), new chunks written at their offsets after their digest
//! is checked, and only a complete file is renamed over the old one. A
//! temporary file left by an interrupted run is kept and offered for reuse
//! (`Begun::partial`). With `inplace`, chunks go straight into the existing
//! file instead. Whole small files and directory-level actions are in
//! `entries`.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use crate::codec::{Action, ErrorKind, HashTarget, Kind, Meta, RelPath, Span, Stat};

mod entries;

use entries::below_root;

use super::error::{Error, Result};
use super::temp::temp_path;
use super::tree::{file_stat, link_count, set_file_meta, Tree};
use super::{
    copy, hash, hash_chunks, walk, Begun, Destination, Digest, FileWork, Listing, NewFile, Settings,
    SETID_BITS,
};

/// Paths one probe may name.
pub const MAX_PROBE_PATHS: usize = 1024;

/// Bytes one `CopyOld` may copy: 64 MiB, or one chunk if chunks are
/// larger (the same bound as a `Hash` span).
pub fn max_copy(chunk_size: u32) -> u64 {
    super::MAX_HASH_BYTES.max(u64::from(chunk_size))
}

/// Files being built at once at most (each holds up to two descriptors).
pub const MAX_BUILDING: usize = 512;

/// The destination role over a local tree. Cheap to clone.
#[derive(Debug, Clone)]
pub struct LocalDestination {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    tree: Arc<Tree>,
    settings: Settings,
    work: FileWork,
    building: Mutex<HashMap<u64, Arc<Building>>>,
    /// Files being built or being begun (at most [`MAX_BUILDING`]).
    slots: AtomicUsize,
    next_handle: AtomicU64,
}

/// A file being built.
#[derive(Debug)]
struct Building {
    path: RelPath,
    size: u64,
    /// The temporary file's path; `None` when writing in place.
    temp: Option<RelPath>,
    /// Where chunks are written.
    file: File,
    /// The previous version and its size, if there was one (temporary-file
    /// mode only: in place, the file is its own previous version).
    old: Option<(File, u64)>,
    partial: bool,
}

impl LocalDestination {
    /// What this role was set up with.
    pub fn settings(&self) -> &Settings {
        &self.inner.settings
    }

    /// The destination role over `tree`, set up with `settings`.
    pub fn new(tree: Tree, settings: Settings) -> Self {
        LocalDestination {
            inner: Arc::new(Inner {
                work: FileWork::new(settings.file_work),
                tree: Arc::new(tree),
                settings,
                building: Mutex::default(),
                slots: AtomicUsize::new(0),
                next_handle: AtomicU64::new(1),
            }),
        }
    }
}

impl Inner {
    fn building(&self, handle: u64) -> Result<Arc<Building>> {
        self.lock().get(&handle).cloned().ok_or_else(|| unknown_handle(handle))
    }

    fn take(&self, handle: u64) -> Result<Arc<Building>> {
        let taken = self.lock().remove(&handle).ok_or_else(|| unknown_handle(handle))?;
        self.slots.fetch_sub(1, Ordering::SeqCst);
        Ok(taken)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Building>>> {
        self.building.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Clears the way for a regular file at `path`: removes a directory or
    /// symlink there, and makes missing parent directories.
    fn prepare_file_slot(&self, path: &RelPath) -> Result<Option<Stat>> {
        let existing = self.tree.lstat(path)?;
        match &existing {
            Some(st) if st.kind != Kind::File => {
                self.make_room(path)?;
                Ok(None)
            }
            Some(_) => Ok(existing),
            None => {
                if let Some((parent, _)) = path.split_last().filter(|(p, _)| !p.is_root()) {
                    self.tree.replace_with_dirs(&parent)?;
                }
                Ok(None)
            }
        }
    }

    /// Opens a fresh, empty temporary file at `temp`, created anew (so
    /// never through a name something else put there meanwhile).
    fn fresh_temp(&self, temp: &RelPath) -> Result<File> {
        self.make_room(temp)?;
        let (parent, name) = self.tree.parent_of(temp)?;
        parent.create_new(name)
    }

    /// Removes what is at `path` to make room for an entry of another
    /// kind. A directory goes only if it is empty, unless deletion was asked
    /// for: replacing a directory by a file or symlink deletes everything
    /// in it, which a source that merely lists `path` as a file (or a
    /// lying one) must not be able to do without `--delete`.
    fn make_room(&self, path: &RelPath) -> Result<()> {
        match self.tree.lstat(path)? {
            Some(st) if st.kind == Kind::Dir && !self.settings.delete => {
                if self.tree.remove_empty_dir(path)? {
                    return Ok(());
                }
                Err(Error::denied(format!(
                    "{path}: a directory that is not empty is where the source has a file or symlink; \
                     it is replaced only with --delete"
                )))
            }
            Some(_) => self.tree.remove_all(path),
            None => Ok(()),
        }
    }

    fn begin(&self, path: RelPath, size: u64) -> Result<Begun> {
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
                    _ => (self.fresh_temp(&temp)?, false),
                };
                let old = match existing {
                    Some(st) => Some((self.tree.open_read(&path)?, st.size)),
                    None => None,
                };
                Building { path, size, temp: Some(temp), file, old, partial }
            }
        };
        building.file.set_len(size).map_err(|e| Error::from_io(e, &building.path, "resize"))?;
        let begun =
            Begun { handle: self.next_handle.fetch_add(1, Ordering::Relaxed), partial: building.partial };
        self.lock().insert(begun.handle, Arc::new(building));
        Ok(begun)
    }

    /// With `inplace`, the file itself to write into (made if missing),
    /// unless it has other names (hard links), which writing into it would
    /// change too: such a file is replaced instead, as without `inplace`.
    fn open_in_place(&self, path: &RelPath) -> Result<Option<File>> {
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
            set_file_meta(&file, self.file_meta(stat.meta), path)?;
        }
        Ok(Some(file))
    }

    fn hash(&self, target: HashTarget, span: Span) -> Result<Vec<Digest>> {
        match target {
            HashTarget::Path(path) => {
                let file = self.tree.open_read(&path)?;
                hash_chunks(&file, &self.settings, span, &path)
            }
            HashTarget::Handle(handle) => {
                let b = self.building(handle)?;
                if !b.partial {
                    return Ok(Vec::new());
                }
                hash_chunks(&b.file, &self.settings, Span { size: span.size.min(b.size), ..span }, &b.path)
            }
        }
    }

    fn copy_old(&self, handle: u64, ranges: Vec<(u64, u64)>) -> Result<()> {
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
            copy::copy_range(old, &b.file, offset, len).map_err(|e| Error::from_io(e, &b.path, "copy"))?;
        }
        Ok(())
    }

    fn write(&self, handle: u64, offset: u64, data: &[u8], digest: Digest) -> Result<()> {
        let b = self.building(handle)?;
        if offset.checked_add(data.len() as u64).is_none_or(|end| end > b.size) {
            return Err(protocol(format!("{}: chunk at {offset} is past the end of the file", b.path)));
        }
        check_digest(&self.settings, data, digest, &b.path, offset)?;
        b.file.write_all_at(data, offset).map_err(|e| Error::from_io(e, &b.path, "write"))
    }

    fn finish(&self, handle: u64, meta: Meta) -> Result<()> {
        let b = self.take(handle)?;
        b.file.set_len(b.size).map_err(|e| Error::from_io(e, &b.path, "resize"))?;
        set_file_meta(&b.file, self.file_meta(meta), &b.path)?;
        match &b.temp {
            Some(temp) => self.tree.rename(temp, &b.path),
            None => Ok(()),
        }
    }

    fn discard(&self, handle: u64, remove: bool) -> Result<()> {
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

impl Destination for LocalDestination {
    async fn walk(&self) -> Result<Listing> {
        let inner = &self.inner;
        Ok(walk::spawn_walk(inner.tree.clone(), inner.settings.filter.clone(), inner.work.clone()))
    }

    async fn probe(&self, paths: Vec<RelPath>) -> Result<Vec<Option<Stat>>> {
        if paths.len() > MAX_PROBE_PATHS {
            return Err(Error::new(
                ErrorKind::Limit,
                format!("a probe names at most {MAX_PROBE_PATHS} paths ({} named)", paths.len()),
            ));
        }
        let inner = self.inner.clone();
        inner.work.clone().run(move || inner.tree.lstat_all(&paths)).await
    }

    async fn hash(&self, target: HashTarget, span: Span) -> Result<Vec<Digest>> {
        let inner = self.inner.clone();
        inner.work.clone().run(move || inner.hash(target, span)).await
    }

    async fn begin(&self, path: RelPath, size: u64) -> Result<Begun> {
        let inner = self.inner.clone();
        inner.work.clone().run(move || inner.begin(path, size)).await
    }

    async fn copy_old(&self, handle: u64, ranges: Vec<(u64, u64)>) -> Result<()> {
        let inner = self.inner.clone();
        inner.work.clone().run(move || inner.copy_old(handle, ranges)).await
    }

    async fn write(&self, handle: u64, offset: u64, data: Bytes, digest: Digest) -> Result<()> {
        let inner = self.inner.clone();
        inner.work.clone().run(move || inner.write(handle, offset, &data, digest)).await
    }

    async fn finish(&self, handle: u64, meta: Meta) -> Result<()> {
        let inner = self.inner.clone();
        inner.work.clone().run(move || inner.finish(handle, meta)).await
    }

    async fn discard(&self, handle: u64, remove: bool) -> Result<()> {
        let inner = self.inner.clone();
        inner.work.clone().run(move || inner.discard(handle, remove)).await
    }

    async fn put_file(&self, path: RelPath, meta: Meta, data: Bytes, digest: Digest) -> Result<()> {
        let inner = self.inner.clone();
        inner.work.clone().run(move || inner.put_file(path, meta, &data, digest)).await
    }

    async fn put_files(&self, files: Vec<NewFile>, data: Bytes) -> Result<Vec<(usize, Error)>> {
        let total: u64 = files.iter().map(|f| u64::from(f.len)).sum();
        if total != data.len() as u64 {
            return Err(Error::new(
                ErrorKind::Protocol,
                format!("{} files of {total} bytes in all came with {} bytes", files.len(), data.len()),
            ));
        }
        let inner = self.inner.clone();
        // One trip to the blocking pool for all of them.
        inner
            .work
            .clone()
            .run(move || {
                let mut start = 0;
                let mut failures = Vec::new();
                for (index, file) in files.into_iter().enumerate() {
                    let end = start + file.len as usize;
                    if let Err(e) = inner.put_file(file.path, file.meta, &data[start..end], file.digest) {
                        failures.push((index, e));
                    }
                    start = end;
                }
                Ok(failures)
            })
            .await
    }

    async fn apply(&self, actions: Vec<Action>) -> Result<Vec<(RelPath, String)>> {
        let inner = self.inner.clone();
        inner
            .work
            .clone()
            .run(move || {
                Ok(actions
                    .iter()
                    .filter_map(|a| inner.apply(a).err().map(|e| (a.path().clone(), e.message)))
                    .collect())
            })
            .await
    }
}

fn check_digest(settings: &Settings, data: &[u8], digest: Digest, path: &RelPath, offset: u64) -> Result<()> {
    if hash::digest(settings.hash, data) == digest {
        Ok(())
    } else {
        Err(Error::new(
            ErrorKind::DigestMismatch,
            format!("{path}: chunk at {offset} does not match its digest"),
        ))
    }
}

fn protocol(message: String) -> Error {
    Error::new(ErrorKind::Protocol, message)
}

fn unknown_handle(handle: u64) -> Error {
    protocol(format!("no file is being built under handle {handle}"))
}
