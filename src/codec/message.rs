//! Every message of the protocol, and the plain data they carry.
//!
//! A frame header is the MessagePack encoding of `[id, message]`, where
//! `message` is [`Message`] in serde's externally tagged form (a one-entry
//! map from the variant name to its fields, structs as arrays). Binary fields
//! (paths, digests, nonces) are MessagePack `bin`.

use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use super::path::RelPath;

/// All messages, in handshake order first, then requests, then responses.
/// `PROTOCOL.md` gives the sequence in which they are exchanged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Message {
    // --- handshake ---
    /// Client → server, first frame of every connection, with a fresh
    /// nonce of the client's.
    Hello {
        version: u32,
        nonce: ByteBuf,
    },
    /// Server → client: its version and a fresh nonce to prove the token on.
    Challenge {
        version: u32,
        nonce: ByteBuf,
        token_required: bool,
    },
    /// Client → server: open a new session.
    Open {
        proof: Option<ByteBuf>,
        spec: SessionSpec,
    },
    /// Client → server: add this connection to an open session.
    Join {
        session: u64,
        proof: Option<ByteBuf>,
    },
    /// Server → client: the connection belongs to `session` now. `proof`
    /// is the server's proof of the key; `secret`, when a session was
    /// opened, its secret sealed with the key (needed to join it).
    Welcome {
        session: u64,
        idle_timeout_ms: u64,
        max_payload: u32,
        proof: ByteBuf,
        secret: Option<ByteBuf>,
    },

    // --- requests (client → server) ---
    /// Keeps an idle session from expiring.
    Ping,
    /// List the tree (answered by any number of `Listing`).
    Walk,
    /// `lstat` each path on the destination.
    Probe {
        paths: Vec<RelPath>,
    },
    /// Digests of a span of chunks of a file.
    Hash {
        target: HashTarget,
        span: Span,
    },
    /// Read `len` bytes at `offset` of a source file.
    Read {
        path: RelPath,
        offset: u64,
        len: u32,
    },
    /// Read several whole small files, each `(path, len)`, as one `Read`
    /// at offset 0 each would.
    ReadFiles {
        files: Vec<(RelPath, u32)>,
    },
    /// Start writing a file of `size` bytes on the destination.
    Begin {
        path: RelPath,
        size: u64,
    },
    /// Copy unchanged ranges from the old file into the file being built.
    CopyOld {
        handle: u64,
        ranges: Vec<(u64, u64)>,
    },
    /// Write the payload at `offset` of the file being built.
    Write {
        handle: u64,
        offset: u64,
        digest: ByteBuf,
    },
    /// Apply metadata and put the file in place.
    Finish {
        handle: u64,
        meta: Meta,
    },
    /// Drop a file being built: keep the partial temporary file for reuse, or
    /// remove it and the final file (its source vanished).
    Discard {
        handle: u64,
        remove: bool,
    },
    /// A whole small file in one frame: the payload is its content.
    PutFile {
        path: RelPath,
        meta: Meta,
        digest: ByteBuf,
    },
    /// Several whole small files in one frame: the payload is their
    /// contents back to back, in the order of `files`.
    PutFiles {
        files: Vec<SmallFile>,
    },
    /// Directory, symlink, metadata and delete operations, in order.
    Apply {
        actions: Vec<Action>,
    },
    /// The transfer is over: the server ends the session.
    Close,

    // --- responses (server → client) ---
    Pong,
    /// Part of the answer to `Walk`; `done` marks the last one. `problems`
    /// name entries that could not be read (the transfer is incomplete).
    /// `root`, in the first one, is the metadata of the listed directory
    /// itself, which is never an entry.
    Listing {
        entries: Vec<Entry>,
        problems: Vec<String>,
        done: bool,
        root: Option<Meta>,
    },
    Probed {
        found: Vec<Option<Stat>>,
    },
    /// Digests of the requested chunks: a prefix of them, those the file
    /// fully holds.
    Hashes {
        digests: DigestList,
    },
    /// Answer to `Read`; the payload is the data. `file` is the file's state
    /// right after the read, to notice a source that changes under us.
    Data {
        digest: ByteBuf,
        file: Stat,
    },
    /// Answer to `ReadFiles`: one outcome per file, in order; the payload is
    /// the data of the files read, back to back, `len` bytes each.
    FilesRead {
        files: Vec<FileRead>,
    },
    /// `partial`: a temporary file from an interrupted run was kept, and
    /// `Hash` on the handle tells what it already holds.
    Begun {
        handle: u64,
        partial: bool,
    },
    /// A request that needs no other answer succeeded.
    Done,
    /// Answer to `Apply`: the actions that failed, with why.
    Applied {
        failures: Vec<(RelPath, String)>,
    },
    /// Answer to `PutFiles`: the files that failed, by their index in the
    /// request, with why; every other file is in place.
    FilesPut {
        failures: Vec<FileFailure>,
    },
    /// A request (or, with id 0, the connection) failed.
    Error {
        kind: ErrorKind,
        message: String,
    },
}

/// Which way the data flows, seen from the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Direction {
    /// Client is the source, the server's tree the destination.
    Upload,
    /// Server's tree is the source, the client the destination.
    Download,
}

/// Digest functions a session can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum HashAlgo {
    Xxh3,
    Xxh128,
    Xxh64,
    Crc32,
    Crc32c,
    Adler32,
}

impl HashAlgo {
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

/// Everything a session fixes when it is opened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionSpec {
    pub direction: Direction,
    /// The server-side tree, relative to the server's root.
    pub path: RelPath,
    pub chunk_size: u32,
    pub hash: HashAlgo,
    pub includes: Vec<String>,
    pub excludes: Vec<String>,
    /// Write changed chunks straight into existing files.
    pub inplace: bool,
}

/// The kind of a tree entry. Other kinds (FIFOs, sockets, devices) are
/// never listed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Kind {
    File,
    Dir,
    Symlink,
}

/// Modification time: seconds and nanoseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Mtime {
    pub secs: i64,
    pub nanos: u32,
}

/// The metadata pareco keeps in sync: permission bits and mtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    /// Permission bits (`mode & 0o7777`).
    pub mode: u32,
    pub mtime: Mtime,
}

/// The state of one entry: its kind, size (files), metadata and, for a
/// symlink, its target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stat {
    pub kind: Kind,
    pub size: u64,
    pub meta: Meta,
    pub target: Option<ByteBuf>,
}

/// One entry of a listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub path: RelPath,
    pub stat: Stat,
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
    pub size: u64,
    pub first: u64,
    pub count: u32,
    pub group: u32,
}

/// Digests packed back to back, each `HashAlgo::width` bytes, big-endian.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DigestList(#[serde(with = "serde_bytes")] pub Vec<u8>);

/// One directory-level operation of an `Apply` request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Action {
    /// Make sure a directory exists (replacing a non-directory).
    MakeDir { path: RelPath },
    /// Make `path` a symlink to `target` (replacing what is there).
    Symlink { path: RelPath, target: ByteBuf, mtime: Mtime },
    /// Set permission bits and mtime (mode is ignored for symlinks).
    SetMeta { path: RelPath, kind: Kind, meta: Meta },
    /// Remove an entry; a directory only when it is empty.
    Remove { path: RelPath, kind: Kind },
}

impl Action {
    pub fn path(&self) -> &RelPath {
        match self {
            Action::MakeDir { path }
            | Action::Symlink { path, .. }
            | Action::SetMeta { path, .. }
            | Action::Remove { path, .. } => path,
        }
    }
}

/// One file of a `PutFiles` request: `len` bytes of the payload, after
/// those of the files before it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SmallFile {
    pub path: RelPath,
    pub meta: Meta,
    pub len: u32,
    pub digest: ByteBuf,
}

/// The outcome of one file of a `ReadFiles` request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum FileRead {
    /// Read: its data is in the payload. As in `Data`, `file` is the file's
    /// state right after the read.
    Read { digest: ByteBuf, file: Stat },
    /// Not read (a file that vanished is `NotFound`).
    Failed { kind: ErrorKind, message: String },
}

/// A file of a `PutFiles` request that was not written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileFailure {
    /// Its index in the request's `files`.
    pub index: u32,
    pub kind: ErrorKind,
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
    /// The connection to the other side was lost. Reported locally by the
    /// client; never sent.
    Lost,
}
