//! [`LocalSource`]: the source role over a local [`Tree`].

use std::collections::HashMap;
use std::fs::File;
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};

use crate::codec::{RelPath, Span, Stat};

use super::error::{Error, Result};
use super::tree::{file_stat, Tree};
use super::{
    blocking, hash, hash_chunks, read_full_at, read_new_at, walk, Bundle, Chunk, Digest, Listing, Settings,
    Source,
};

/// Open files are kept for the next chunk up to this many; then the cache
/// starts over.
const OPEN_FILES: usize = 256;

/// The source role over a local tree. Cheap to clone.
#[derive(Debug, Clone)]
pub struct LocalSource {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    tree: Arc<Tree>,
    settings: Settings,
    open: Mutex<HashMap<RelPath, Arc<File>>>,
}

impl LocalSource {
    /// What this role was set up with.
    pub fn settings(&self) -> &Settings {
        &self.inner.settings
    }

    pub fn new(tree: Tree, settings: Settings) -> Self {
        LocalSource { inner: Arc::new(Inner { tree: Arc::new(tree), settings, open: Mutex::default() }) }
    }
}

impl Inner {
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
}

impl Source for LocalSource {
    async fn walk(&self) -> Result<Listing> {
        Ok(walk::spawn_walk(self.inner.tree.clone(), self.inner.settings.filter.clone()))
    }

    async fn hash(&self, path: RelPath, span: Span) -> Result<Vec<Digest>> {
        let inner = self.inner.clone();
        blocking(move || {
            let file = inner.file(&path)?;
            hash_chunks(&file, &inner.settings, span, &path)
        })
        .await
    }

    async fn read(&self, path: RelPath, offset: u64, len: u32) -> Result<Chunk> {
        self.inner.check_len(len.into())?;
        let inner = self.inner.clone();
        blocking(move || inner.read_chunk(&*inner.file(&path)?, &path, offset, len)).await
    }

    async fn read_files(&self, files: Vec<(RelPath, u32)>) -> Result<Bundle> {
        let total: u64 = files.iter().map(|(_, len)| u64::from(*len)).sum();
        self.inner.check_len(total)?;
        let inner = self.inner.clone();
        // One trip to the blocking pool and one buffer for all of them; the
        // files are read once, so they bypass the cache of open files.
        blocking(move || {
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
        let file = self.tree.open_read(path)?;
        read_full_at(&file, buf, 0).map_err(|e| Error::from_io(e, path, "read"))?;
        Ok((hash::digest(self.settings.hash, buf), file_stat(&file, path)?))
    }

    fn read_chunk(&self, file: &File, path: &RelPath, offset: u64, len: u32) -> Result<Chunk> {
        let mut data =
            read_new_at(file, len as usize, offset).map_err(|e| Error::from_io(e, path, "read"))?;
        // Past the end of a file that shrank: zeros, as the doc says.
        data.resize(len as usize, 0);
        let digest = hash::digest(self.settings.hash, &data);
        let stat = file_stat(file, path)?;
        Ok(Chunk { data: Bytes::from(data), digest, file: stat })
    }
}
