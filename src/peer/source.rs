//! [`LocalSource`]: the source role over a local [`Tree`].

use std::collections::HashMap;
use std::fs::File;
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};

use crate::codec::{RelPath, Span, Stat};

use super::error::{Error, Result};
use super::recent::RecentKeys;
use super::tree::{file_stat, Tree};
use super::{
    hash, hash_chunks, read_full_at, read_new_at, sparse, walk, whole, Bundle, Chunk, Digest, FileWork,
    Listing, Settings, Source,
};

/// Open files are kept for the next chunk up to this many; then the cache
/// starts over.
pub const OPEN_FILES: usize = 256;

/// The source role over a local tree. Cheap to clone.
#[derive(Debug, Clone)]
pub struct LocalSource {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    tree: Arc<Tree>,
    settings: Settings,
    work: FileWork,
    open: Mutex<HashMap<RelPath, Arc<File>>>,
    /// Keys of the small files the walk stated, with a digest cache.
    recent: Option<Arc<RecentKeys>>,
}

impl LocalSource {
    /// What this role was set up with.
    pub fn settings(&self) -> &Settings {
        &self.inner.settings
    }

    /// The source role over `tree`, set up with `settings`.
    pub fn new(tree: Tree, settings: Settings) -> Self {
        let work = FileWork::new(settings.file_work);
        let recent = settings.recent_keys();
        LocalSource {
            inner: Arc::new(Inner { tree: Arc::new(tree), settings, work, open: Mutex::default(), recent }),
        }
    }
}

impl Inner {
    /// Runs `work` on the open file of `path` (from the cache with
    /// `cached`); `work` tells whether the file still had a name when it was
    /// done. A file unlinked since it was opened has been replaced (renamed
    /// over: the safe way to rewrite a file) or deleted, and the path tells
    /// which: `work` runs once more on the file now at the path, and only
    /// when there is none has the file vanished (`NotFound`).
    fn at_path<T>(
        &self,
        path: &RelPath,
        cached: bool,
        mut work: impl FnMut(&File) -> Result<(T, bool)>,
    ) -> Result<T> {
        let open = || if cached { self.file(path) } else { self.tree.open_read(path).map(Arc::new) };
        let (out, named) = work(&*open()?)?;
        if named {
            return Ok(out);
        }
        self.forget(path);
        Ok(work(&*open()?)?.0)
    }

    /// The open file for `rel`, from the cache or freshly opened.
    fn file(&self, rel: &RelPath) -> Result<Arc<File>> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(file) = open.get(rel) {
            return Ok(file.clone());
        }
        let file = Arc::new(self.tree.open_read(rel)?);
        if open.len() >= OPEN_FILES {
            open.clear();
        }
        open.insert(rel.clone(), file.clone());
        Ok(file)
    }

    /// Drops the cached open file of `rel`.
    fn forget(&self, rel: &RelPath) {
        self.open.lock().unwrap_or_else(|p| p.into_inner()).remove(rel);
    }
}

impl Source for LocalSource {
    async fn walk(&self) -> Result<Listing> {
        let inner = &self.inner;
        Ok(walk::spawn_walk(
            inner.tree.clone(),
            inner.settings.filter.clone(),
            inner.settings.extras.clone(),
            inner.settings.hard_links,
            inner.work.clone(),
            inner.recent.clone(),
        ))
    }

    async fn hash(&self, path: RelPath, span: Span) -> Result<Vec<Digest>> {
        let inner = self.inner.clone();
        inner
            .work
            .clone()
            .run(move || {
                inner.at_path(&path, true, |file| {
                    let digests = hash_chunks(file, &inner.settings, span, &path)?;
                    Ok((digests, file_stat(file, &path)?.1))
                })
            })
            .await
    }

    async fn hash_files(&self, files: Vec<(RelPath, u64)>) -> Result<Vec<Result<Digest>>> {
        let inner = self.inner.clone();
        inner
            .work
            .clone()
            .run(move || whole::hash_files(&inner.tree, &inner.settings, &files, inner.recent.as_deref()))
            .await
    }

    async fn read(&self, path: RelPath, offset: u64, len: u32) -> Result<Chunk> {
        self.inner.check_len(len.into())?;
        let inner = self.inner.clone();
        inner
            .work
            .clone()
            .run(move || inner.at_path(&path, true, |file| inner.read_chunk(file, &path, offset, len)))
            .await
    }

    async fn read_files(&self, files: Vec<(RelPath, u32)>) -> Result<Bundle> {
        let total: u64 = files.iter().map(|(_, len)| u64::from(*len)).sum();
        self.inner.check_len(total)?;
        let inner = self.inner.clone();
        // One trip to the blocking pool and one buffer for all of them; the
        // files are read once, so they bypass the cache of open files.
        inner
            .work
            .clone()
            .run(move || {
                let mut data = BytesMut::with_capacity(total as usize);
                let files = files
                    .iter()
                    .map(|(path, len)| {
                        let start = data.len();
                        // Past the end of a file that shrank: zeros.
                        data.resize(start + *len as usize, 0);
                        let read = inner.read_whole(path, &mut data[start..]);
                        if read.is_err() {
                            data.truncate(start);
                        }
                        read
                    })
                    .collect();
                Ok(Bundle { data: data.freeze(), files })
            })
            .await
    }
}

impl Inner {
    /// A read (of one chunk, or of a bundle of small files) is at most a
    /// chunk.
    fn check_len(&self, len: u64) -> Result<()> {
        if len > u64::from(self.settings.chunk_size) {
            return Err(Error::new(
                crate::codec::ErrorKind::Protocol,
                format!("read of {len} bytes is over the chunk size"),
            ));
        }
        Ok(())
    }

    /// Reads the start of a small file into `buf`, zeros past its end.
    fn read_whole(&self, path: &RelPath, buf: &mut [u8]) -> Result<(Digest, Stat)> {
        self.at_path(path, false, |file| {
            buf.fill(0);
            read_full_at(file, buf, 0).map_err(|e| Error::from_io(e, path, "read"))?;
            let (stat, named) = file_stat(file, path)?;
            Ok(((hash::digest(self.settings.hash, buf), stat), named))
        })
    }

    /// Reads one chunk; tells whether the file still had a name after it.
    /// Sparse sessions: a chunk in a hole is not read, and one of zeros is
    /// not sent (see [`super::sparse`]).
    fn read_chunk(&self, file: &File, path: &RelPath, offset: u64, len: u32) -> Result<(Chunk, bool)> {
        if self.settings.sparse {
            let (stat, named) = file_stat(file, path)?;
            if sparse::in_hole(file, offset, len.into(), stat.size) {
                return Ok((self.zeros(len, stat), named));
            }
        }
        let mut data =
            read_new_at(file, len as usize, offset).map_err(|e| Error::from_io(e, path, "read"))?;
        // Past the end of a file that shrank: zeros, as the doc says.
        data.resize(len as usize, 0);
        let (stat, named) = file_stat(file, path)?;
        if self.settings.sparse && sparse::all_zeros(&data) {
            return Ok((self.zeros(len, stat), named));
        }
        let digest = hash::digest(self.settings.hash, &data);
        Ok((Chunk { data: Bytes::from(data), zeros: false, digest, file: stat }, named))
    }

    /// A chunk of `len` zeros, without its bytes.
    fn zeros(&self, len: u32, file: Stat) -> Chunk {
        let digest = sparse::zero_digest(self.settings.hash, len as usize);
        Chunk { data: Bytes::new(), zeros: true, digest, file }
    }
}
