//! Every message of the protocol (the plain data they carry is in
//! [`super::types`]).
//!
//! A frame header is the MessagePack encoding of `[id, message]`, where
//! `message` is [`Message`] in serde's externally tagged form (a one-entry
//! map from the variant name to its fields, structs as arrays). Binary fields
//! (paths, digests, nonces) are MessagePack `bin`.

use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use super::path::RelPath;
use super::types::*;

fn is_false(value: &bool) -> bool {
    !value
}

/// All messages, in handshake order first, then requests, then responses.
/// `PROTOCOL.md` gives the sequence in which they are exchanged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Message {
    // --- handshake ---
    /// Client → server, first frame of every connection, with a fresh
    /// nonce of the client's.
    Hello {
        /// The protocol version the client speaks (`PROTOCOL_VERSION`).
        version: u32,
        /// 32 fresh random bytes of the client's, which the proofs are bound to.
        nonce: ByteBuf,
    },
    /// Server → client: its version and a fresh nonce to prove the token on.
    Challenge {
        /// The protocol version the server speaks.
        version: u32,
        /// 32 fresh random bytes of the server's, new for every connection.
        nonce: ByteBuf,
        /// The server has a token configured, and proves it.
        token_required: bool,
    },
    /// Client → server: open a new session.
    Open {
        /// The client's proof of the token (32 bytes); checked only by a
        /// server with a token.
        proof: Option<ByteBuf>,
        /// The session to open.
        spec: SessionSpec,
    },
    /// Client → server: add this connection to an open session.
    Join {
        /// The session's id, from the `Welcome` that answered its `Open`.
        session: u64,
        /// The client's proof made with the session's join key; always
        /// checked.
        proof: Option<ByteBuf>,
    },
    /// Server → client: the connection belongs to `session` now. `proof`
    /// is the server's proof of the key; `secret`, when a session was
    /// opened, its secret sealed with the key (needed to join it).
    Welcome {
        /// The session's id (never 0), to be given in `Join`.
        session: u64,
        /// The server's session timeout: the session expires after this many
        /// milliseconds without a frame.
        idle_timeout_ms: u64,
        /// The largest payload either side may send on this connection from
        /// now on (the session's chunk size).
        max_payload: u32,
        /// The most connections the session takes: a client keeps no more
        /// (a join beyond takes the place of its connection silent
        /// longest).
        max_connections: u32,
        /// The server's proof of the key (32 bytes).
        proof: ByteBuf,
        /// For an `Open`, the session's secret sealed with the key; `None`
        /// for a `Join`.
        secret: Option<ByteBuf>,
        /// The session's bandwidth limit in bytes per second (the lower of
        /// the client's and the server's), which both sides send within;
        /// 0: none. Always encoded (protocol 4).
        #[serde(default)]
        bwlimit: u64,
        /// The server runs as root (said, protocol 4, only to an `Open`
        /// whose spec keeps owners, groups or attributes; else not encoded,
        /// as the last element).
        #[serde(default, skip_serializing_if = "is_false")]
        privileged: bool,
    },

    // --- requests (client → server) ---
    /// Keeps an idle session from expiring.
    Ping,
    /// List the tree (answered by any number of `Listing`).
    Walk,
    /// `lstat` each path on the destination.
    Probe {
        /// The entries to look at.
        #[serde(deserialize_with = "super::bounded::list")]
        paths: Vec<RelPath>,
    },
    /// Digests of a span of chunks of a file.
    Hash {
        /// The file whose chunks are digested.
        target: HashTarget,
        /// Which chunks, cut for which size, and how many per digest.
        span: Span,
    },
    /// Digests of several whole small files at once, each `(path, size)`
    /// as listed: what one `Hash` of the single chunk of each would give.
    HashFiles {
        /// Each file and its size as listed (at most the chunk size).
        #[serde(deserialize_with = "super::bounded::list")]
        files: Vec<(RelPath, u64)>,
    },
    /// Read `len` bytes at `offset` of a source file.
    Read {
        /// The source file.
        path: RelPath,
        /// Byte offset to read from.
        offset: u64,
        /// Bytes to read; at most the chunk size.
        len: u32,
    },
    /// Read several whole small files, each `(path, len)`, as one `Read`
    /// at offset 0 each would.
    ReadFiles {
        /// Each file and its length as listed; the lengths add up to at most
        /// the chunk size.
        #[serde(deserialize_with = "super::bounded::list")]
        files: Vec<(RelPath, u32)>,
    },
    /// Start writing a file of `size` bytes on the destination.
    Begin {
        /// The final path of the file (not the root).
        path: RelPath,
        /// Its size in bytes when complete.
        size: u64,
    },
    /// Copy unchanged ranges from the old file into the file being built.
    CopyOld {
        /// The file being built, from `Begun`.
        handle: u64,
        /// `(offset, len)` byte ranges, each copied from the old file to the
        /// same offset of the file being built.
        #[serde(deserialize_with = "super::bounded::list")]
        ranges: Vec<(u64, u64)>,
    },
    /// Write the payload at `offset` of the file being built.
    Write {
        /// The file being built, from `Begun`.
        handle: u64,
        /// Where the payload goes in the file.
        offset: u64,
        /// Digest of the payload.
        digest: ByteBuf,
    },
    /// Sparse sessions: the `len` bytes at `offset` of the file being built
    /// are zeros (left or made a hole).
    Zero {
        /// The file being built, from `Begun`.
        handle: u64,
        /// Where the zeros start.
        offset: u64,
        /// How many; at most the chunk size.
        len: u32,
    },
    /// Apply metadata and put the file in place.
    Finish {
        /// The file being built, from `Begun`.
        handle: u64,
        /// Permission bits and mtime to give the file.
        meta: Meta,
    },
    /// Drop a file being built: keep the partial temporary file for reuse, or
    /// remove it and the final file (its source vanished).
    Discard {
        /// The file being built, from `Begun`.
        handle: u64,
        /// `false`: keep what was built; `true`: the source vanished, remove
        /// the temporary file and the file at the path.
        remove: bool,
    },
    /// A whole small file in one frame: the payload is its content.
    PutFile {
        /// The file (not the root).
        path: RelPath,
        /// Permission bits and mtime to give it.
        meta: Meta,
        /// Digest of the whole payload.
        digest: ByteBuf,
    },
    /// Several whole small files in one frame: the payload is their
    /// contents back to back, in the order of `files`.
    PutFiles {
        /// Each file's path, metadata, length and digest.
        #[serde(deserialize_with = "super::bounded::list")]
        files: Vec<SmallFile>,
    },
    /// Directory, symlink, metadata and delete operations, in order.
    Apply {
        /// The operations; one that fails does not stop the others.
        #[serde(deserialize_with = "super::bounded::list")]
        actions: Vec<Action>,
    },
    /// The transfer is over: the server ends the session.
    Close,

    // --- responses (server → client) ---
    /// Answer to `Ping`; carries nothing.
    Pong,
    /// Part of the answer to `Walk`; `done` marks the last one. `problems`
    /// name entries that could not be read (the transfer is incomplete).
    /// `root`, in the first one, is the metadata of the listed directory
    /// itself, which is never an entry.
    Listing {
        /// Entries in listing order (parents before their contents).
        entries: Vec<Entry>,
        /// One line ("PATH: reason") per entry that could not be read.
        problems: Vec<String>,
        /// `true` on the final, empty frame of the walk.
        done: bool,
        /// In the first frame, the mode and mtime of the listed directory;
        /// `None` in the others.
        root: Option<Meta>,
    },
    /// Answer to `Probe`.
    Probed {
        /// One per probed path, in the same order: its state, or `None` when
        /// no file, directory or symlink is there.
        found: Vec<Option<Stat>>,
    },
    /// Digests of the requested chunks: a prefix of them, those the file
    /// fully holds.
    Hashes {
        /// One digest per chunk (`group` 1) or per group of chunks.
        digests: DigestList,
    },
    /// Answer to `HashFiles`: one digest per file, in order; a file that
    /// could not be hashed has a zero digest and is named in `failures`.
    FilesHashed {
        /// One digest per requested file, in order.
        digests: DigestList,
        /// Each file of the request that has no digest, with why.
        failures: Vec<FileFailure>,
    },
    /// Answer to `Read`; the payload is the data. `file` is the file's state
    /// right after the read, to notice a source that changes under us.
    Data {
        /// Digest of the payload.
        digest: ByteBuf,
        /// The source file's state right after the read.
        file: Stat,
    },
    /// Sparse sessions: answer to a `Read` whose bytes are all zeros, in
    /// place of `Data`, with no payload.
    Zeros {
        /// The source file's state right after the read.
        file: Stat,
    },
    /// Answer to `ReadFiles`: one outcome per file, in order; the payload is
    /// the data of the files read, back to back, `len` bytes each.
    FilesRead {
        /// One outcome per requested file, in order.
        files: Vec<FileRead>,
    },
    /// `partial`: a temporary file from an interrupted run was kept, and
    /// `Hash` on the handle tells what it already holds.
    Begun {
        /// The handle of the file being built, for the requests that fill,
        /// finish or discard it.
        handle: u64,
        /// A temporary file from an interrupted run was kept.
        partial: bool,
    },
    /// A request that needs no other answer succeeded.
    Done,
    /// Answer to `Apply`: the actions that failed, with why.
    Applied {
        /// The path of each action that failed, and why.
        failures: Vec<(RelPath, String)>,
    },
    /// Answer to `PutFiles`: the files that failed, by their index in the
    /// request, with why; every other file is in place.
    FilesPut {
        /// Each file of the request that was not written.
        failures: Vec<FileFailure>,
    },
    /// A request (or, with id 0, the connection) failed.
    Error {
        /// What went wrong, for the program.
        kind: ErrorKind,
        /// One line for people, naming the path at fault.
        message: String,
    },
}
