//! The plain data the messages carry: session specs, entries and their
//! state, spans of chunks, directory actions, per-file outcomes, error
//! kinds. Encoded as PROTOCOL.md §4 and §5 say.

use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use super::extra::{Extra, Preserve};
use super::path::RelPath;

/// Which way the data flows, seen from the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Direction {
    /// Client is the source, the server's tree the destination.
    Upload,
    /// Server's tree is the source, the client the destination.
    Download,
}

/// Digest functions a session can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum HashAlgo {
    /// XXH3-64, 8 bytes (the default).
    Xxh3,
    /// XXH3-128, 16 bytes.
    Xxh128,
    /// XXH64, 8 bytes.
    Xxh64,
    /// CRC-32 (IEEE, as zlib's `crc32`), 4 bytes.
    Crc32,
    /// CRC-32C (Castagnoli), 4 bytes.
    Crc32c,
    /// Adler-32 (as zlib's `adler32`), 4 bytes.
    Adler32,
}

impl HashAlgo {
    /// Every algorithm, in the order of declaration.
    pub const ALL: [HashAlgo; 6] = [
        HashAlgo::Xxh3,
        HashAlgo::Xxh128,
        HashAlgo::Xxh64,
        HashAlgo::Crc32,
        HashAlgo::Crc32c,
        HashAlgo::Adler32,
    ];

    /// The lower-case name users give it by.
    pub fn name(self) -> &'static str {
        match self {
            HashAlgo::Xxh3 => "xxh3",
            HashAlgo::Xxh128 => "xxh128",
            HashAlgo::Xxh64 => "xxh64",
            HashAlgo::Crc32 => "crc32",
            HashAlgo::Crc32c => "crc32c",
            HashAlgo::Adler32 => "adler32",
        }
    }

    /// The algorithm called `name`, if any.
    pub fn from_name(name: &str) -> Option<HashAlgo> {
        HashAlgo::ALL.into_iter().find(|a| a.name() == name)
    }

    /// Bytes of one digest on the wire.
    pub fn width(self) -> usize {
        match self {
            HashAlgo::Xxh128 => 16,
            HashAlgo::Xxh3 | HashAlgo::Xxh64 => 8,
            HashAlgo::Crc32 | HashAlgo::Crc32c | HashAlgo::Adler32 => 4,
        }
    }
}

/// Everything a session fixes when it is opened. Every field is encoded,
/// in order, but the last (`preserve`), which only a session that keeps
/// owners, groups or attributes sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionSpec {
    /// Which way the data flows.
    pub direction: Direction,
    /// The server-side tree, relative to the server's root.
    pub path: RelPath,
    /// Chunk size in bytes, 1024 to 64 MiB.
    pub chunk_size: u32,
    /// The digest function for every chunk digest of the session.
    pub hash: HashAlgo,
    /// Include globs: when there are any, only what matches them is synced.
    pub includes: Vec<String>,
    /// Exclude globs: what matches them is not synced (excludes win).
    pub excludes: Vec<String>,
    /// Write changed chunks straight into existing files.
    pub inplace: bool,
    /// The client deletes what the source does not have; without it, the
    /// destination refuses to replace a non-empty directory by a file or
    /// symlink (which would delete its contents).
    pub delete: bool,
    /// The destination flushes file data before a file takes its final
    /// name, and directories after their entries change.
    pub fsync: bool,
    // --- hard links and sparse files (protocol 4) ---
    /// `-H`: the source's listing gives files that are hard links of each
    /// other one link group ([`Entry::link`]); the client links them at
    /// the destination ([`Action::Link`]) instead of sending them again.
    pub hard_links: bool,
    /// `--sparse`: a source answers a `Read` of zeros with `Zeros` (no
    /// payload; holes found with `SEEK_DATA` are not even read), and a
    /// destination leaves runs of zeros as holes (`Zero`, and the zero
    /// blocks of a `Write` or `PutFile`).
    pub sparse: bool,
    /// The client's `--bwlimit`: the most bytes per second either side
    /// sends in this session, all connections together; 0: no limit.
    /// Always encoded (protocol 4).
    pub bwlimit: u64,
    /// Owners, groups, extended attributes (protocol 4). Encoded only when
    /// something is asked for, and therefore last: a spec without it is 12
    /// elements long (every field before it is always sent).
    #[serde(default, skip_serializing_if = "Preserve::is_empty")]
    pub preserve: Preserve,
}

impl SessionSpec {
    /// A session of `direction` at `path` with every option off: no
    /// filters, nothing written in place, deleted or flushed, no hard
    /// links, holes or pacing, no owners or attributes kept.
    pub fn new(direction: Direction, path: RelPath, chunk_size: u32, hash: HashAlgo) -> SessionSpec {
        SessionSpec {
            direction,
            path,
            chunk_size,
            hash,
            includes: Vec::new(),
            excludes: Vec::new(),
            inplace: false,
            delete: false,
            fsync: false,
            hard_links: false,
            sparse: false,
            bwlimit: 0,
            preserve: Preserve::default(),
        }
    }
}

/// The kind of a tree entry. Other kinds (FIFOs, sockets, devices) are
/// never listed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Kind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link.
    Symlink,
}

/// Modification time: seconds and nanoseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Mtime {
    /// Seconds since the Unix epoch (may be negative).
    pub secs: i64,
    /// Nanoseconds within the second, below 10⁹.
    pub nanos: u32,
}

/// The metadata pareco keeps in sync: permission bits and mtime, and
/// what else the session asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    /// Permission bits (`mode & 0o7777`).
    pub mode: u32,
    /// Modification time.
    pub mtime: Mtime,
    /// Owner, group, extended attributes: only in a session that asks for
    /// them (else not encoded: the meta is 2 elements long).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra: Option<Box<Extra>>,
}

/// The state of one entry: its kind, size (files), metadata and, for a
/// symlink, its target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stat {
    /// What the entry is.
    pub kind: Kind,
    /// Size in bytes (files only; 0 for directories and symlinks).
    pub size: u64,
    /// Permission bits and mtime; for a symlink, the link's own.
    pub meta: Meta,
    /// The symlink's target bytes; `None` for other kinds.
    pub target: Option<ByteBuf>,
}

/// One entry of a listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Its path, relative to the listed directory.
    pub path: RelPath,
    /// Its state.
    pub stat: Stat,
    /// With `hard_links`, for a regular file with other names: its link
    /// group, the same number for every entry of the listing that is the
    /// same file. Encoded only when set (an entry without it is 2 elements
    /// long).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<u64>,
}

/// Whose digests a `Hash` request asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum HashTarget {
    /// A file by path: a source file, or a destination's existing file.
    Path(RelPath),
    /// The partial temporary file of a destination file being built.
    Handle(u64),
}

/// Chunks `first..first + count` of a file of `size` bytes, digested in
/// groups of `group` consecutive chunks: with `group` 1 each chunk's digest;
/// otherwise one digest per group, the digest of its chunks' digests packed
/// back to back. A group ends at `group` chunks, at the end of the span or
/// at the end of the file. Answers cover a prefix: they stop before the
/// first chunk the file does not fully hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Span {
    /// The file size the chunks are cut for (the size the source listed).
    pub size: u64,
    /// Index of the first chunk.
    pub first: u64,
    /// Number of chunks (at most 1024).
    pub count: u32,
    /// Chunks per digest: 1 (or 0) for one digest per chunk.
    pub group: u32,
}

/// Digests packed back to back, each `HashAlgo::width` bytes, big-endian.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DigestList(#[serde(with = "serde_bytes")] pub Vec<u8>);

/// One directory-level operation of an `Apply` request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Action {
    /// Make sure a directory exists (replacing a non-directory).
    MakeDir {
        /// The directory (not the root).
        path: RelPath,
    },
    /// Make `path` a symlink to `target` (replacing what is there).
    Symlink {
        /// Where the link goes (not the root).
        path: RelPath,
        /// The bytes the link points to, created exactly as sent.
        target: ByteBuf,
        /// The link's own mtime.
        mtime: Mtime,
    },
    /// Set permission bits and mtime (mode is ignored for symlinks).
    SetMeta {
        /// The entry; the root only with `kind` `Dir`.
        path: RelPath,
        /// The kind the source listed; `Symlink` skips the permission bits.
        kind: Kind,
        /// Permission bits and mtime to set.
        meta: Meta,
    },
    /// Remove an entry; a directory only when it is empty.
    Remove {
        /// The entry (not the root).
        path: RelPath,
        /// `Dir` removes an empty directory; the other kinds unlink.
        kind: Kind,
    },
    /// Make `path` a hard link of the regular file `target` (replacing what
    /// is at `path`, unless it is that file already). Both are paths below
    /// the session directory.
    Link {
        /// The new name (not the root).
        path: RelPath,
        /// The file it becomes another name of (not the root).
        target: RelPath,
    },
    /// Remove the temporary files an interrupted run left directly in the
    /// directory `path` (the root included), except those of files this
    /// session is building. Sent at the end of a run that had no error.
    RemoveTemps {
        /// The directory.
        path: RelPath,
    },
}

impl Action {
    /// The path the action is on.
    pub fn path(&self) -> &RelPath {
        match self {
            Action::MakeDir { path }
            | Action::Symlink { path, .. }
            | Action::SetMeta { path, .. }
            | Action::Remove { path, .. }
            | Action::Link { path, .. }
            | Action::RemoveTemps { path } => path,
        }
    }
}

/// One file of a `PutFiles` request: `len` bytes of the payload, after
/// those of the files before it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SmallFile {
    /// Where the file goes (not the root).
    pub path: RelPath,
    /// Its permission bits and mtime.
    pub meta: Meta,
    /// Its size: the next `len` bytes of the payload.
    pub len: u32,
    /// Digest of those bytes.
    pub digest: ByteBuf,
}

/// The outcome of one file of a `ReadFiles` request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum FileRead {
    /// Read: its data is in the payload. As in `Data`, `file` is the file's
    /// state right after the read.
    Read {
        /// Digest of the file's bytes in the payload.
        digest: ByteBuf,
        /// The file's state right after the read.
        file: Stat,
    },
    /// Not read (a file that vanished is `NotFound`).
    Failed {
        /// Why, as for a failed request.
        kind: ErrorKind,
        /// Why, for people.
        message: String,
    },
}

/// A file of a `PutFiles` request that was not written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileFailure {
    /// Its index in the request's `files`.
    pub index: u32,
    /// Why, as for a failed request.
    pub kind: ErrorKind,
    /// Why, for people.
    pub message: String,
}

/// Why a request failed, so the other side can react without parsing text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorKind {
    /// Malformed, out-of-order or inconsistent message. With id 0 (a frame
    /// that could not be decoded, a broken handshake) the connection is
    /// closed; as the answer to one request, only that request failed.
    Protocol,
    /// Protocol versions differ.
    Version,
    /// Missing or wrong token.
    Auth,
    /// Path outside the root, or a request the session's direction forbids.
    Denied,
    /// Another session is writing into an overlapping tree.
    Busy,
    /// A server limit was reached (sessions, connections).
    Limit,
    /// Unknown or expired session.
    NoSession,
    /// The file does not exist (a source that vanished).
    NotFound,
    /// A chunk's data did not match its digest.
    DigestMismatch,
    /// Any other I/O error.
    Io,
    /// The destination's file system is full, or its user over quota
    /// (`ENOSPC`, `EDQUOT`): the client stops starting new files.
    NoSpace,
    /// The destination's file system is read-only (`EROFS`): the client
    /// stops starting new files.
    ReadOnly,
    /// The connection to the other side was lost. Reported locally by the
    /// client; never sent.
    Lost,
}
