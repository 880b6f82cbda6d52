//! Mirrors of the messages that carry paths, with the paths as plain
//! bytes, so that a header holding a path the codec refuses (`..`, an
//! absolute path, a NUL byte, ...) can be written at all.
//!
//! A mirror serializes like [`Message`](crate::codec::Message): the same
//! variant names and the same fields in the same order, which is all its
//! decoder looks at. With a valid path a mirror's header is byte for byte
//! the message's (tests/it/codec.rs checks every shape).

use serde::Serialize;
use serde_bytes::ByteBuf;

use super::frames::{encode_header, raw_frame};
use crate::codec::{Direction, HashAlgo, Meta, Mtime, SessionSpec, Span};

/// The messages of `Message` that carry a path, the path as bytes.
#[derive(Debug, Clone, Serialize)]
pub enum Msg {
    /// As `Message::Open`.
    Open {
        /// The client's proof.
        proof: Option<ByteBuf>,
        /// The session asked for.
        spec: Spec,
    },
    /// As `Message::Probe`.
    Probe {
        /// The paths to look at.
        paths: Vec<ByteBuf>,
    },
    /// As `Message::Hash`.
    Hash {
        /// What to hash.
        target: HashTarget,
        /// Which chunks.
        span: Span,
    },
    /// As `Message::Read`.
    Read {
        /// The file.
        path: ByteBuf,
        /// Where to start.
        offset: u64,
        /// How many bytes.
        len: u32,
    },
    /// As `Message::Begin`.
    Begin {
        /// The file to build.
        path: ByteBuf,
        /// Its size.
        size: u64,
    },
    /// As `Message::PutFile`.
    PutFile {
        /// The file.
        path: ByteBuf,
        /// Its permission bits and mtime.
        meta: Meta,
        /// The payload's digest.
        digest: ByteBuf,
    },
    /// As `Message::Apply`.
    Apply {
        /// The changes.
        actions: Vec<Action>,
    },
    /// As `Message::Applied`.
    Applied {
        /// The paths that failed, and why.
        failures: Vec<(ByteBuf, String)>,
    },
}

impl Msg {
    /// The header `[id, self]`.
    pub fn header(&self, id: u32) -> Vec<u8> {
        encode_header(id, self)
    }

    /// The whole frame of `self` with request id `id` and `payload`.
    pub fn frame(&self, id: u32, payload: &[u8]) -> Vec<u8> {
        raw_frame(&self.header(id), payload)
    }
}

/// As [`SessionSpec`], the path as bytes.
#[derive(Debug, Clone, Serialize)]
pub struct Spec {
    /// Which way the data flows.
    pub direction: Direction,
    /// The server-side tree.
    pub path: ByteBuf,
    /// Chunk size in bytes.
    pub chunk_size: u32,
    /// The digest function.
    pub hash: HashAlgo,
    /// Include globs.
    pub includes: Vec<String>,
    /// Exclude globs.
    pub excludes: Vec<String>,
    /// Write changed chunks in place.
    pub inplace: bool,
    /// The client deletes what the source does not have.
    pub delete: bool,
    /// Flush to disk.
    pub fsync: bool,
    /// Hard links (`-H`).
    pub hard_links: bool,
    /// Sparse files (`--sparse`).
    pub sparse: bool,
    /// Bytes per second at most (0: no limit).
    pub bwlimit: u64,
    /// Owners, groups, attributes (encoded only when something is asked for).
    #[serde(skip_serializing_if = "crate::codec::Preserve::is_empty")]
    pub preserve: crate::codec::Preserve,
}

impl Spec {
    /// `spec` with its path replaced by `path`.
    pub fn with_path(spec: &SessionSpec, path: &[u8]) -> Spec {
        Spec {
            direction: spec.direction,
            path: ByteBuf::from(path.to_vec()),
            chunk_size: spec.chunk_size,
            hash: spec.hash,
            includes: spec.includes.clone(),
            excludes: spec.excludes.clone(),
            inplace: spec.inplace,
            delete: spec.delete,
            fsync: spec.fsync,
            hard_links: spec.hard_links,
            sparse: spec.sparse,
            bwlimit: spec.bwlimit,
            preserve: spec.preserve,
        }
    }

    /// The bytes of the intent an `Open` of this spec proves: `open` and
    /// the spec's MessagePack encoding, as
    /// [`intent_bytes`](crate::session::handshake::intent_bytes) makes them
    /// of a `SessionSpec`.
    pub fn intent_bytes(&self) -> Vec<u8> {
        let spec = rmp_serde::to_vec(self).expect("a mirror spec encodes");
        [&b"open"[..], &spec].concat()
    }
}

/// As `HashTarget`, the path as bytes.
#[derive(Debug, Clone, Serialize)]
pub enum HashTarget {
    /// A file of the tree.
    Path(ByteBuf),
}

/// As `Action` (the variants that make something), the path as bytes.
#[derive(Debug, Clone, Serialize)]
pub enum Action {
    /// Make a directory.
    MakeDir {
        /// Where.
        path: ByteBuf,
    },
    /// Make a symlink.
    Symlink {
        /// Where.
        path: ByteBuf,
        /// What it points to.
        target: ByteBuf,
        /// Its mtime.
        mtime: Mtime,
    },
}

/// `Begin` with its path as a MessagePack `str` instead of `bin`.
#[derive(Debug, Clone, Serialize)]
pub enum StrMsg {
    /// As `Message::Begin`.
    Begin {
        /// The file, as text.
        path: String,
        /// Its size.
        size: u64,
    },
}

/// `Begin` with its path as an array of integers instead of `bin`.
#[derive(Debug, Clone, Serialize)]
pub enum SeqMsg {
    /// As `Message::Begin`.
    Begin {
        /// The file, as a sequence of bytes.
        path: Vec<u8>,
        /// Its size.
        size: u64,
    },
}
