//! The operations of a client: what the handshake fuzz target generates
//! (`Arbitrary`, with the values of [`choices`]) and the
//! scenario tests write by hand; [`Fixture::run`](super::Fixture::run)
//! performs them.
//!
//! Operands that depend on what the server said are selectors: the n-th
//! session id or file handle the run has learnt, the next request id, the
//! session's chunk size, the right digest of a payload. Proofs are made
//! from the connection's nonces as far as they are known.

use arbitrary::Arbitrary;

use super::choices;
use crate::codec::{Message, Meta, RelPath, SessionSpec, Span, PROTOCOL_VERSION};
use crate::session::auth::NONCE_LEN;

/// Connections one run can hold at once (more than a session may have).
pub const SLOTS: usize = 8;
/// Steps of one run at most; the rest are ignored.
pub const MAX_STEPS: usize = 128;

/// One operation on one connection.
#[derive(Debug, Clone, PartialEq, Arbitrary)]
pub struct Step {
    /// The connection, 0 to [`SLOTS`] - 1. A slot without a connection
    /// gets one at its first use: even slots to server 0, odd ones to
    /// server 1 (`Connect` picks the server).
    #[arbitrary(with = choices::slot)]
    pub slot: u8,
    /// Wait for the answer (or the end of the connection, or of the run's
    /// time) before the next step.
    #[arbitrary(with = choices::mostly_true)]
    pub wait: bool,
    /// What to do.
    pub op: Op,
}

impl Step {
    /// `op` on `slot`, waiting for its answer.
    pub fn new(slot: u8, op: Op) -> Step {
        Step { slot, wait: true, op }
    }

    /// The same step, not waiting for its answer.
    pub fn no_wait(self) -> Step {
        Step { wait: false, ..self }
    }

    /// A new connection on `slot` to `server`.
    pub fn connect(slot: u8, server: u8) -> Step {
        Step::new(slot, Op::Connect { server })
    }

    /// A right `Hello`.
    pub fn hello(slot: u8) -> Step {
        Step::new(slot, Op::Hello { version: PROTOCOL_VERSION, nonce_len: NONCE_LEN as u8 })
    }

    /// An `Open` of `spec` with `proof`.
    pub fn open(slot: u8, proof: Proof, spec: SessionSpec) -> Step {
        Step::new(slot, Op::Open { proof, spec })
    }

    /// A `Join` of `session` with `proof`.
    pub fn join(slot: u8, proof: Proof, session: SessionRef) -> Step {
        Step::new(slot, Op::Join { proof, session })
    }

    /// `req` with the connection's next request id.
    pub fn request(slot: u8, req: Req) -> Step {
        Step::new(slot, Op::Request { id: IdSel::Next, req })
    }

    /// `msg` with the connection's next request id.
    pub fn message(slot: u8, msg: Message) -> Step {
        Step::request(slot, Req::Msg(msg))
    }
}

/// What a step does.
#[derive(Debug, Clone, PartialEq, Arbitrary)]
pub enum Op {
    /// A request: its frame, with the id `id`.
    Request {
        /// The request id.
        id: IdSel,
        /// The request.
        req: Req,
    },
    /// A `Hello` with a client nonce of `nonce_len` bytes (32 is right).
    Hello {
        /// The protocol version.
        #[arbitrary(with = choices::version)]
        version: u32,
        /// The nonce's length.
        #[arbitrary(with = choices::nonce_len)]
        nonce_len: u8,
    },
    /// An `Open` of `spec`.
    Open {
        /// The proof sent.
        proof: Proof,
        /// The session asked for.
        #[arbitrary(with = choices::spec)]
        spec: SessionSpec,
    },
    /// A `Join`.
    Join {
        /// The proof sent.
        proof: Proof,
        /// The session to join.
        session: SessionRef,
    },
    /// Drops the slot's connection, if any, and connects to a server.
    Connect {
        /// 0 (the token server) or 1.
        #[arbitrary(with = choices::server)]
        server: u8,
    },
    /// Bytes sent as they are.
    Raw {
        /// The bytes.
        #[arbitrary(with = choices::raw_bytes)]
        bytes: Vec<u8>,
    },
    /// A request's frame with one byte changed (`xor` 0: unchanged).
    Mutate {
        /// The request id.
        id: IdSel,
        /// The request.
        req: Req,
        /// Which byte, modulo the frame's length.
        at: u16,
        /// What to flip in it.
        xor: u8,
    },
    /// The first bytes of a request's frame.
    Truncate {
        /// The request id.
        id: IdSel,
        /// The request.
        req: Req,
        /// How many bytes, modulo the frame's length.
        keep: u16,
    },
    /// A message with a path the codec refuses (a mirror's frame).
    BadPath {
        /// The request id.
        id: IdSel,
        /// The message.
        msg: BadMsg,
    },
    /// Ends the client's side of the stream, still reading answers.
    ShutdownWrite,
    /// Drops the connection.
    Drop,
    /// Waits for the answers to every request sent on the slot.
    Sync,
}

/// The client's proof in an `Open` or `Join`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proof {
    /// Made with the server's key (for a join, with the session's secret
    /// too) over the connection's nonces as far as they are known (32 zero
    /// bytes each if not) and the intent sent.
    Valid,
    /// No proof.
    Missing,
    /// One bit off.
    Wrong,
    /// 31 bytes.
    Short,
    /// Valid, for another token.
    OtherToken,
    /// Valid, with the server's key but without the session's secret (a
    /// join by a token holder that did not open the session; for an open,
    /// the same as `Valid`).
    NoSecret,
    /// Valid, for another intent: an open of the other direction, a join
    /// of the next session id.
    OtherIntent,
}

/// A session id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionRef {
    /// The n-th session id a `Welcome` of the run gave (modulo their
    /// number; `n` itself if there is none).
    Known(u8),
    /// This id.
    Raw(u64),
}

/// A file handle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandleSel {
    /// The n-th handle a `Begun` of the run gave (modulo their number; `n`
    /// itself if there is none).
    Known(u8),
    /// This handle.
    Raw(u64),
}

/// A request id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdSel {
    /// 1, 2, 3, ... on each connection.
    Next,
    /// 0, the handshake's id.
    Zero,
    /// The id of the slot's previous request.
    Last,
    /// This id.
    Raw(u32),
}

/// A request.
#[derive(Debug, Clone, PartialEq)]
pub enum Req {
    /// A message sent as it is: a request, or one that is none.
    Msg(Message),
    /// `Hash` of a file being built.
    HashHandle {
        /// The file.
        handle: HandleSel,
        /// Which chunks.
        span: Span,
    },
    /// `Read`.
    Read {
        /// The file.
        path: RelPath,
        /// Where.
        offset: u64,
        /// How much.
        len: LenSel,
    },
    /// `CopyOld`.
    CopyOld {
        /// The file being built.
        handle: HandleSel,
        /// Ranges of the old file: offset and length.
        ranges: Vec<(u64, u64)>,
    },
    /// `Write` with `data` as payload.
    Write {
        /// The file being built.
        handle: HandleSel,
        /// Where.
        offset: OffSel,
        /// The payload.
        data: Data,
        /// Its digest.
        digest: DigestSel,
    },
    /// `Finish`.
    Finish {
        /// The file being built.
        handle: HandleSel,
        /// Its permission bits and mtime.
        meta: Meta,
    },
    /// `Discard`.
    Discard {
        /// The file being built.
        handle: HandleSel,
        /// Remove the temporary file too.
        remove: bool,
    },
    /// `PutFile` with `data` as payload.
    PutFile {
        /// The file.
        path: RelPath,
        /// Its permission bits and mtime.
        meta: Meta,
        /// The payload.
        data: Data,
        /// Its digest.
        digest: DigestSel,
    },
    /// `PutFiles`: the files' data one after the other as payload.
    PutFiles {
        /// Each file: where, its metadata, its data and its digest.
        files: Vec<(RelPath, Meta, Data, DigestSel)>,
    },
    /// A `Ping` with a payload.
    Stray(Data),
}

/// The length of a `Read`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LenSel {
    /// The session's chunk size (at most [`READ_CAP`](choices::READ_CAP)).
    Chunk,
    /// One byte over the chunk size.
    ChunkPlus1,
    /// This length.
    Value(u32),
}

/// The offset of a `Write`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffSel {
    /// n chunks of the session.
    Chunk(u8),
    /// This offset.
    Value(u64),
}

/// A payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Data {
    /// These bytes.
    Bytes(Vec<u8>),
    /// This byte, this many times.
    Fill(u8, u32),
}

/// The digest sent with a payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DigestSel {
    /// The payload's digest with the session's algorithm.
    Right,
    /// One bit off.
    Wrong,
    /// One byte short.
    Short,
    /// No bytes.
    Empty,
}

/// A message holding a path the codec refuses (or any path, given in
/// full by the fuzzer), sent as a [mirror](super::mirror) of it.
#[derive(Debug, Clone, PartialEq, Eq, Arbitrary)]
pub enum BadMsg {
    /// An `Open` of a 1 KiB, xxh3 session of `path`.
    Open {
        /// The proof sent.
        proof: Proof,
        /// Upload, or download.
        upload: bool,
        /// The session's path.
        #[arbitrary(with = choices::bad_path)]
        path: Vec<u8>,
    },
    /// A `Probe` of these paths.
    Probe(#[arbitrary(with = choices::bad_paths)] Vec<Vec<u8>>),
    /// A `Hash` of the first 3000 bytes of the path.
    Hash(#[arbitrary(with = choices::bad_path)] Vec<u8>),
    /// A `Read` of 1024 bytes of the path.
    Read(#[arbitrary(with = choices::bad_path)] Vec<u8>),
    /// A `Begin` of 100 bytes at the path.
    Begin(#[arbitrary(with = choices::bad_path)] Vec<u8>),
    /// A `PutFile` at the path.
    PutFile(#[arbitrary(with = choices::bad_path)] Vec<u8>),
    /// An `Apply` making a directory at the path.
    MakeDir(#[arbitrary(with = choices::bad_path)] Vec<u8>),
    /// An `Apply` making a symlink to `file.txt` at the path.
    Symlink(#[arbitrary(with = choices::bad_path)] Vec<u8>),
}
