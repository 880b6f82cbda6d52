//! The two roles of a transfer over the local file system.
//!
//! - [`Source`] lists a tree, hashes its files chunk by chunk and reads
//!   chunks; [`Destination`] lists and probes its tree, hashes what it
//!   already has, and builds files from chunks without ever leaving a torn
//!   file under a final name. These traits are the whole contract between
//!   the sync engine ([`crate::transfer`]) and a tree: [`LocalSource`] and
//!   [`LocalDestination`] implement them here over a [`Tree`];
//!   [`crate::session::remote`] implements them over the network by asking
//!   the server, which answers with the same local types. So an upload and a
//!   download run the very same code, on swapped machines.
//! - [`tree`]: the confined directory every operation goes through.
//! - [`cache`]: the persistent digest cache, so unchanged files are not read again.
//! - [`walk`], [`filter`], [`hash`]: listing, include/exclude globs, digests;
//!   [`whole`]: digests of many small files at once; [`remembered`]:
//!   digests through the persistent [`cache`]; [`extra`]: owners, groups
//!   and extended attributes; [`sparse`]: holes and runs of zeros
//!   (`--sparse`).

pub mod cache;
mod copy;
pub mod destination;
pub mod error;
pub mod extra;
pub mod filter;
pub mod hash;
pub mod recent;
pub mod remembered;
pub mod source;
pub mod sparse;
pub mod temp;
pub mod tree;
pub mod walk;
pub mod whole;
pub mod work;

use std::future::Future;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;

use crate::codec::{Action, HashAlgo, HashTarget, Meta, RelPath, SessionSpec, Span, Stat};

pub use destination::LocalDestination;
pub use error::{Error, Result};
pub use filter::Filter;
pub use hash::Digest;
pub use remembered::Remembered;
pub use source::LocalSource;
pub use tree::Tree;
pub use walk::{Batch, Listing};
pub use work::FileWork;

/// Threads for file-system work (reads, writes, hashing, listing), the
/// size of the runtime's blocking pool. More than a few per core only adds
/// contention in the kernel and context switches.
pub const BLOCKING_THREADS: usize = 16;

/// Descriptors one role may hold open at most, besides those of the
/// requests it is serving (one or two each): source files kept open for
/// their next chunk, or files being built (two each: the new file and the
/// old); and the directories a walk reads at once.
pub const DESCRIPTORS_PER_ROLE: usize = {
    let files = if source::OPEN_FILES > 2 * destination::MAX_BUILDING {
        source::OPEN_FILES
    } else {
        2 * destination::MAX_BUILDING
    };
    files + walk::READ_AHEAD
};

/// Smallest and largest chunk size a session accepts.
pub const MIN_CHUNK_SIZE: u32 = 1024;
/// Largest chunk size a session accepts: the payload cap, 64 MiB.
pub const MAX_CHUNK_SIZE: u32 = crate::codec::MAX_PAYLOAD_CAP as u32;

/// What both roles of one transfer agree on.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Chunk size in bytes.
    pub chunk_size: u32,
    /// The digest function for every chunk digest.
    pub hash: HashAlgo,
    /// The include and exclude globs, compiled.
    pub filter: Filter,
    /// Write changed chunks into the existing file instead of a temporary.
    pub inplace: bool,
    /// Deletion was asked for (`--delete`): only then is a non-empty
    /// directory replaced by a file or symlink.
    pub delete: bool,
    /// Steps of file work the role runs at once (see [`work`]): all of the
    /// pool on a client, a share of it for each session on a server.
    pub file_work: usize,
    /// Give files the setuid and setgid bits they are sent with (else they
    /// are cleared: a destination run as root would otherwise let anyone
    /// who may write into it plant a setuid-root program).
    pub keep_setid: bool,
    /// Flush file data before a file takes its final name, and a directory
    /// after its entries change (`--fsync`).
    pub fsync: bool,
    /// The persistent digest cache, if one is used.
    pub cache: Option<Arc<Remembered>>,
    /// `-H`: a walk gives files with other names their link group.
    pub hard_links: bool,
    /// `--sparse`: holes are neither read nor written (see [`sparse`]).
    pub sparse: bool,
    /// Owners, groups and extended attributes, when the session keeps any
    /// (set once the server's part is known: see [`extra::Scope::agreed`]).
    pub extras: Option<Arc<extra::Extras>>,
    /// A destination recomputes the digest of every chunk that arrives and
    /// refuses one that differs. Off when the chunks arrive over TLS: each
    /// TLS record is authenticated already (AES-GCM or ChaCha20-Poly1305),
    /// so a chunk damaged on the way fails the connection before it is
    /// seen, and hashing it again would only cost CPU.
    pub check_digests: bool,
}

impl Settings {
    /// Plain settings for unit tests: `chunk_size`, xxh3, no filter, no
    /// options, one step of file work, no cache.
    #[cfg(test)]
    pub(crate) fn for_tests(chunk_size: u32) -> Settings {
        let spec =
            SessionSpec::new(crate::codec::Direction::Upload, RelPath::root(), chunk_size, HashAlgo::Xxh3);
        Settings { file_work: 1, ..Settings::for_session(&spec, Filter::default(), false) }
    }

    /// Where a role notes the keys of the small files it states, so that
    /// the cache is asked about them without stating them again: only with
    /// a cache, for files compared whole (at most a chunk).
    pub fn recent_keys(&self) -> Option<Arc<recent::RecentKeys>> {
        self.cache.as_ref().map(|_| Arc::new(recent::RecentKeys::new(u64::from(self.chunk_size))))
    }

    /// The settings of a role of the session `spec` describes, with its
    /// globs compiled into `filter`: both sides derive theirs from the one
    /// spec the client sends.
    pub fn for_session(spec: &SessionSpec, filter: Filter, keep_setid: bool) -> Settings {
        Settings {
            chunk_size: spec.chunk_size,
            hash: spec.hash,
            filter,
            inplace: spec.inplace,
            delete: spec.delete,
            file_work: BLOCKING_THREADS,
            keep_setid,
            fsync: spec.fsync,
            cache: None,
            hard_links: spec.hard_links,
            sparse: spec.sparse,
            extras: None,
            check_digests: true,
        }
    }
}

/// The setuid and setgid bits.
pub const SETID_BITS: u32 = 0o6000;

/// A chunk read from a source file, with its digest and the file's state
/// right after the read.
#[derive(Debug, Clone)]
pub struct Chunk {
    /// The bytes read, exactly as many as asked for; none when `zeros`.
    pub data: Bytes,
    /// Sparse sessions: the chunk is all zeros (a hole, not even read) and
    /// `data` is empty.
    pub zeros: bool,
    /// Digest of `data`.
    pub digest: Digest,
    /// The file's state right after the read.
    pub file: Stat,
}

/// Small files read together by [`Source::read_files`]: the bytes of those
/// read, back to back (each its requested length), and for each file its
/// digest and its state right after the read, or why it was not read.
#[derive(Debug, Clone)]
pub struct Bundle {
    /// The bytes of the files read, back to back.
    pub data: Bytes,
    /// One per requested file, in order: its digest and state after the
    /// read, or why it was not read (then it has no bytes in `data`).
    pub files: Vec<Result<(Digest, Stat)>>,
}

/// A whole small file for [`Destination::put_files`]: `len` bytes of the
/// shared buffer, after those of the files before it.
#[derive(Debug, Clone)]
pub struct NewFile {
    /// Where the file goes (not the root).
    pub path: RelPath,
    /// Permission bits and mtime to give it.
    pub meta: Meta,
    /// Its size: the next `len` bytes of the shared buffer.
    pub len: u32,
    /// Digest of those bytes.
    pub digest: Digest,
}

/// A file the destination has started building.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Begun {
    /// Names the file being built in later calls, until it is finished or
    /// discarded.
    pub handle: u64,
    /// A partial temporary file from an interrupted run was kept; hashing
    /// the handle tells which chunks it already holds.
    pub partial: bool,
}

/// The side data comes from.
pub trait Source: Send + Sync + 'static {
    /// Lists the tree, filtered, in batches.
    fn walk(&self) -> impl Future<Output = Result<Listing>> + Send;
    /// Digests of a span of chunks of `path` (see [`Span`]).
    fn hash(&self, path: RelPath, span: Span) -> impl Future<Output = Result<Vec<Digest>>> + Send;
    /// Digests of whole small files, each `(path, size)` as listed (at most
    /// a chunk): one per file, as `hash` of its single chunk, or why it has
    /// none.
    fn hash_files(
        &self,
        files: Vec<(RelPath, u64)>,
    ) -> impl Future<Output = Result<Vec<Result<Digest>>>> + Send;
    /// Reads `len` bytes at `offset`; past the end of a file that shrank,
    /// the chunk is filled with zeros (and `Chunk::file` shows the change).
    fn read(&self, path: RelPath, offset: u64, len: u32) -> impl Future<Output = Result<Chunk>> + Send;
    /// Reads whole small files, each `(path, len)`, as `read(path, 0, len)`
    /// would, into one buffer.
    fn read_files(&self, files: Vec<(RelPath, u32)>) -> impl Future<Output = Result<Bundle>> + Send;
}

/// The side data goes to.
pub trait Destination: Send + Sync + 'static {
    /// Lists the tree, filtered, in batches (for `--delete`).
    fn walk(&self) -> impl Future<Output = Result<Listing>> + Send;
    /// `lstat` of each path; `None` where nothing usable is.
    fn probe(&self, paths: Vec<RelPath>) -> impl Future<Output = Result<Vec<Option<Stat>>>> + Send;
    /// Digests of a span of chunks of the existing file (`Path`) or of the
    /// partial file being built (`Handle`).
    fn hash(&self, target: HashTarget, span: Span) -> impl Future<Output = Result<Vec<Digest>>> + Send;
    /// Digests of whole small files the destination has, as
    /// [`Source::hash_files`].
    fn hash_files(
        &self,
        files: Vec<(RelPath, u64)>,
    ) -> impl Future<Output = Result<Vec<Result<Digest>>>> + Send;
    /// Starts building `path` with `size` bytes.
    fn begin(&self, path: RelPath, size: u64) -> impl Future<Output = Result<Begun>> + Send;
    /// Copies unchanged `(offset, len)` ranges from the existing file into
    /// the file being built.
    fn copy_old(&self, handle: u64, ranges: Vec<(u64, u64)>) -> impl Future<Output = Result<()>> + Send;
    /// Checks `data` against `digest`, then writes it at `offset`.
    fn write(
        &self,
        handle: u64,
        offset: u64,
        data: Bytes,
        digest: Digest,
    ) -> impl Future<Output = Result<()>> + Send;
    /// Sparse sessions: makes `len` bytes at `offset` of the file being
    /// built zeros, leaving or making them a hole.
    fn zero(&self, handle: u64, offset: u64, len: u32) -> impl Future<Output = Result<()>> + Send;
    /// Applies `meta` and puts the file in place.
    fn finish(&self, handle: u64, meta: Meta) -> impl Future<Output = Result<()>> + Send;
    /// Stops building: keeps the partial file, or (`remove`) deletes it and
    /// the final file.
    fn discard(&self, handle: u64, remove: bool) -> impl Future<Output = Result<()>> + Send;
    /// Writes a whole small file at once.
    fn put_file(
        &self,
        path: RelPath,
        meta: Meta,
        data: Bytes,
        digest: Digest,
    ) -> impl Future<Output = Result<()>> + Send;
    /// Writes whole small files at once, as `put_file` would each; `data`
    /// holds their contents back to back. Returns the files that failed, by
    /// index, with why.
    fn put_files(
        &self,
        files: Vec<NewFile>,
        data: Bytes,
    ) -> impl Future<Output = Result<Vec<(usize, Error)>>> + Send;
    /// Runs directory-level actions in order; returns those that failed.
    /// A destination that is full or read-only fails the whole request
    /// (`NoSpace`, `ReadOnly`) at the first action it refuses.
    fn apply(&self, actions: Vec<Action>) -> impl Future<Output = Result<Vec<(RelPath, String)>>> + Send;
}

/// Reads exactly `buf.len()` bytes at `offset`, or fewer at the end of the
/// file; returns how many.
pub(crate) fn read_full_at(file: &std::fs::File, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
    use std::os::unix::fs::FileExt;
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// Reads up to `len` bytes at `offset` into a new buffer, without first
/// zeroing it; fewer at the end of the file.
pub(crate) fn read_new_at(file: &std::fs::File, len: usize, offset: u64) -> std::io::Result<Vec<u8>> {
    let mut data = Vec::with_capacity(len);
    while data.len() < len {
        let at = offset + data.len() as u64;
        match rustix::io::pread(file, rustix::buffer::spare_capacity(&mut data), at) {
            Ok(0) => break,
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(data)
}

/// Chunks one `Hash` request may span at most, and bytes (unless a single
/// chunk is larger): what one request may cost the side that hashes.
pub const MAX_HASH_CHUNKS: u32 = 1024;
/// Bytes one `Hash` request may span at most, unless a single chunk is
/// larger.
pub const MAX_HASH_BYTES: u64 = 64 << 20;

/// The digests of `span` of `file` (see [`Span`]), within the limits above.
pub(crate) fn hash_chunks(
    file: &std::fs::File,
    settings: &Settings,
    span: Span,
    rel: &RelPath,
) -> Result<Vec<Digest>> {
    let chunk = settings.chunk_size as u64;
    if span.count > MAX_HASH_CHUNKS || u64::from(span.count) * chunk > MAX_HASH_BYTES.max(chunk) {
        return Err(Error::new(
            crate::codec::ErrorKind::Limit,
            format!(
                "{rel}: a hash request spans at most {MAX_HASH_CHUNKS} chunks and {} MiB ({} chunks asked)",
                MAX_HASH_BYTES >> 20,
                span.count
            ),
        ));
    }
    let group = span.group.max(1) as usize;
    let width = settings.hash.width();
    // Through the cache when the file has the size the span is cut for.
    let remembered = settings.cache.as_deref().and_then(|r| Remembered::key(file, span.size).map(|k| (r, k)));
    let recalled = remembered.as_ref().and_then(|(r, key)| r.recall(key, settings));
    let hashed_at = SystemTime::now();
    let mut learnt = Vec::new();
    // As large as the largest chunk the span reads, not a whole chunk
    // size: zeroing 1 MiB for a file of 2 KiB was most of the cost of
    // comparing small files.
    let first_offset = span.first.saturating_mul(chunk);
    let reads = if recalled.is_some() { 0 } else { chunk.min(span.size.saturating_sub(first_offset)) };
    let mut buf = vec![0u8; reads as usize];
    let mut out = Vec::with_capacity((span.count as usize / group).min(4096));
    // `group` comes from the peer: size the buffer by what the span can hold.
    let per_group = if group > 1 { group.min(span.count as usize) * width } else { 0 };
    let mut packed: Vec<u8> = Vec::with_capacity(per_group.min(1 << 20));
    let end = span.first.saturating_add(span.count as u64);
    // Sparse sessions: chunks in a hole are digested without reading.
    let file_size = match settings.sparse && recalled.is_none() {
        true => file.metadata().map_err(|e| Error::from_io(e, rel, "stat"))?.len(),
        false => 0,
    };
    for index in span.first..end {
        let offset = index.saturating_mul(chunk);
        if offset >= span.size {
            break;
        }
        let len = chunk.min(span.size - offset) as usize;
        let digest = match recalled.as_ref().and_then(|all| all.get(index as usize)) {
            Some(digest) => *digest,
            None if sparse::in_hole(file, offset, len as u64, file_size) => {
                let digest = sparse::zero_digest(settings.hash, len);
                learnt.push(digest);
                digest
            }
            None => {
                let got = read_full_at(file, &mut buf[..len], offset)
                    .map_err(|e| Error::from_io(e, rel, "read"))?;
                if got < len {
                    break;
                }
                let digest = hash::digest(settings.hash, &buf[..len]);
                learnt.push(digest);
                digest
            }
        };
        if group == 1 {
            out.push(digest);
            continue;
        }
        packed.extend_from_slice(&digest.to_be_bytes()[16 - width..]);
        let last = packed.len() == group * width || index + 1 == end || offset + len as u64 == span.size;
        if last {
            out.push(hash::digest(settings.hash, &packed));
            packed.clear();
        }
    }
    // Remembered only if the file did not change while it was read.
    if let (Some((r, key)), None) = (&remembered, &recalled) {
        if Remembered::key(file, span.size).as_ref() == Some(key) {
            r.learn(key, settings, span.first, &learnt, hashed_at);
        }
    }
    Ok(out)
}
