//! [`LocalDestination`]: the destination role over a local [`Tree`].
//!
//! A changed file is built in a temporary file beside it ([`super::temp`]):
//! unchanged chunks are copied from the old file (holes kept, see
//! `peer::copy`), new chunks written at their offsets after their digest
//! is checked, and only a complete file is renamed over the old one. A
//! temporary file left by an interrupted run is kept and offered for reuse
//! (`Begun::partial`). With `inplace`, chunks go straight into the existing
//! file instead. Files built chunk by chunk are in `building`; whole
//! small files and directory-level actions in `entries`.

use std::collections::HashMap;
use std::fs::File;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use crate::codec::{Action, ErrorKind, HashTarget, Kind, Meta, RelPath, Span, Stat};

mod building;
mod durable;
mod entries;

use building::Building;

use super::error::{Error, Result};
use super::recent::RecentKeys;
use super::tree::Tree;
use super::{
    hash, hash_chunks, walk, whole, Begun, Destination, Digest, FileWork, Listing, NewFile, Settings,
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

struct Inner {
    tree: Arc<Tree>,
    settings: Settings,
    work: FileWork,
    building: Mutex<HashMap<u64, Arc<Building>>>,
    /// Files given back for lack of space, by handle, with their paths: a
    /// request for one that was still in flight fails as the file did (no
    /// space), not as an unknown handle.
    gave_back: Mutex<HashMap<u64, RelPath>>,
    /// Files being built or being begun (at most [`MAX_BUILDING`]).
    slots: AtomicUsize,
    next_handle: AtomicU64,
    /// Keys of the small files probes stated, with a digest cache.
    recent: Option<Arc<RecentKeys>>,
    /// Held as long as the role or any step of work it started lives (a
    /// server's claim on the tree, see [`LocalDestination::holding`]).
    _held: Option<Box<dyn std::any::Any + Send + Sync>>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inner")
            .field("tree", &self.tree)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl LocalDestination {
    /// What this role was set up with.
    pub fn settings(&self) -> &Settings {
        &self.inner.settings
    }

    /// The destination role over `tree`, set up with `settings`.
    pub fn new(tree: Tree, settings: Settings) -> Self {
        Self::build(tree, settings, None)
    }

    /// The same, holding `held` until the role and every step of work it
    /// started are gone: a step on the blocking pool runs to its end even
    /// when the request that started it was cancelled, so a claim on the
    /// tree must outlive it, not merely the session.
    pub fn holding(tree: Tree, settings: Settings, held: Box<dyn std::any::Any + Send + Sync>) -> Self {
        Self::build(tree, settings, Some(held))
    }

    fn build(tree: Tree, settings: Settings, held: Option<Box<dyn std::any::Any + Send + Sync>>) -> Self {
        LocalDestination {
            inner: Arc::new(Inner {
                work: FileWork::new(settings.file_work),
                recent: settings.recent_keys(),
                tree: Arc::new(tree),
                settings,
                building: Mutex::default(),
                gave_back: Mutex::default(),
                slots: AtomicUsize::new(0),
                next_handle: AtomicU64::new(1),
                _held: held,
            }),
        }
    }
}

impl Inner {
    fn building(&self, handle: u64) -> Result<Arc<Building>> {
        self.lock().get(&handle).cloned().ok_or_else(|| self.unknown(handle))
    }

    fn take(&self, handle: u64) -> Result<Arc<Building>> {
        let taken = self.lock().remove(&handle).ok_or_else(|| self.unknown(handle))?;
        self.slots.fetch_sub(1, Ordering::SeqCst);
        Ok(taken)
    }

    /// Why `handle` names no file being built.
    fn unknown(&self, handle: u64) -> Error {
        match self.gave_back.lock().unwrap_or_else(|p| p.into_inner()).get(&handle) {
            Some(path) => Error::new(ErrorKind::NoSpace, format!("{path}: no space left on device")),
            None => unknown_handle(handle),
        }
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

    /// Opens a fresh, empty temporary file at `temp` for `path`, created
    /// anew (so never through a name something else put there meanwhile).
    fn fresh_temp(&self, temp: &RelPath, path: &RelPath) -> Result<File> {
        self.make_room(temp)?;
        let (parent, name) = self.tree.parent_of(temp)?;
        parent.create_new(name, path)
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
}

impl Destination for LocalDestination {
    async fn walk(&self) -> Result<Listing> {
        let inner = &self.inner;
        Ok(walk::spawn_walk(
            inner.tree.clone(),
            inner.settings.filter.clone(),
            None,
            false,
            inner.work.clone(),
            None,
        ))
    }

    async fn probe(&self, paths: Vec<RelPath>) -> Result<Vec<Option<Stat>>> {
        if paths.len() > MAX_PROBE_PATHS {
            return Err(Error::new(
                ErrorKind::Limit,
                format!("a probe names at most {MAX_PROBE_PATHS} paths ({} named)", paths.len()),
            ));
        }
        let inner = self.inner.clone();
        inner.work.clone().run(move || inner.probe(&paths)).await
    }

    async fn hash_files(&self, files: Vec<(RelPath, u64)>) -> Result<Vec<Result<Digest>>> {
        let inner = self.inner.clone();
        inner
            .work
            .clone()
            .run(move || whole::hash_files(&inner.tree, &inner.settings, &files, inner.recent.as_deref()))
            .await
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

    async fn zero(&self, handle: u64, offset: u64, len: u32) -> Result<()> {
        let inner = self.inner.clone();
        inner.work.clone().run(move || inner.zero(handle, offset, len)).await
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
        inner
            .work
            .clone()
            .run(move || {
                inner.put_file(path.clone(), meta, &data, digest)?;
                inner.sync_parents([&path])
            })
            .await
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
                let mut written = Vec::new();
                for (index, file) in files.into_iter().enumerate() {
                    let end = start + file.len as usize;
                    match inner.put_file(file.path.clone(), file.meta, &data[start..end], file.digest) {
                        Ok(()) => written.push(file.path),
                        Err(e) => failures.push((index, e)),
                    }
                    start = end;
                }
                // Their directories flushed once each, not once per file.
                inner.sync_parents(&written)?;
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
                let mut failures = Vec::new();
                for action in &actions {
                    match inner.apply(action) {
                        Ok(()) => {}
                        // A full or read-only destination fails the whole
                        // request with its kind: the run stops, in one line.
                        Err(e) if e.stops_destination() => return Err(e),
                        Err(e) => failures.push((action.path().clone(), e.message)),
                    }
                }
                // The directories whose entries changed, and those made.
                inner.sync_parents(actions.iter().map(Action::path))?;
                let made = actions.iter().filter_map(|a| match a {
                    Action::MakeDir { path } | Action::RemoveTemps { path } => Some(path),
                    _ => None,
                });
                inner.sync_dirs(made)?;
                Ok(failures)
            })
            .await
    }
}

/// Refuses a chunk that does not match its digest (unless the session's
/// transport vouches for it: see [`Settings::check_digests`]).
fn check_digest(settings: &Settings, data: &[u8], digest: Digest, path: &RelPath, offset: u64) -> Result<()> {
    if !settings.check_digests || hash::digest(settings.hash, data) == digest {
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
