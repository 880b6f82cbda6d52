//! Fuzzes the server's connection state machine from the network side:
//! the handshake (`Hello` with the client's nonce, `Challenge` with the
//! server's, `Open`/`Join` with the client's proof, `Welcome` with the
//! server's proof and, for an `Open`, the session's secret sealed), joins,
//! and the first requests of a session, with arbitrary message sequences
//! on up to eight connections at once. No panic, hang or leak of the server
//! may be reachable from the bytes a client sends.
//!
//! Set-up, made once per process: a current-thread tokio runtime, a
//! temporary directory with two server roots (files, directories, a stale
//! temporary file, and symlinks: inside the root, dangling, a loop, and
//! three leading outside it) next to an `outside` directory, and two
//! `pareco::session::Server`s, one with the token `fuzz-token` and one
//! without (session timeout 2 s, 4 sessions, 4 connections per session,
//! setuid and setgid bits cleared: the fuzzer may run as root).
//!
//! Input layout: a sequence of steps (at most `MAX_STEPS`). A step starts
//! with one byte: bits 0-3 the operation, bits 4-6 the connection slot,
//! bit 7 "do not wait for the answer". A slot without a connection gets one
//! at its first use (even slots to the token server, odd slots to the other;
//! `Connect` picks the server explicitly). The operations and their
//! operands are in `Op` and `Wire::get` below; every byte string decodes to
//! some steps. The fuzz side speaks through `tokio::io::duplex` streams
//! handed to `Server::serve_stream`, reads the answers with `FrameCodec`,
//! and learns the nonces (to compute valid proofs: protocol version 2, over
//! the transcript of both nonces, an empty channel binding and the intent),
//! session ids and secrets (to join them) and file handles (`Begun`) it can
//! use in later steps. It sends mostly well-formed frames of `Message`
//! values, and also wrong versions, client nonces of the wrong length,
//! missing, wrong and short proofs, proofs for another token, for another
//! intent or (joins) without the session's secret, out-of-range chunk
//! sizes, bad globs, invalid paths (headers built by hand, see `RawMsg`),
//! payloads in the handshake and over the limit, wrong digests, bit-flipped
//! and truncated frames, and raw bytes.
//!
//! On every `Welcome` of a connection whose handshake it knows (nothing
//! sent out of frame), the target checks (a panic otherwise): the proof it
//! answered was valid (any proof opens a session on the tokenless server),
//! a join got the session it asked for, the server's proof is right, and
//! the secret is there, 32 bytes, for an `Open` only. An input gets
//! `BUDGET` of time; then every connection is dropped. After it, the target
//! checks:
//! - every server connection ends within `GRACE` of its client going away
//!   (no hang);
//! - a server on which a session may have opened has, within `GRACE`, no
//!   session and no upload's claim on a tree left: it accepts
//!   `MAX_SESSIONS` new sessions at once, the first an upload into its
//!   whole root (no leaked session, no request that never ends);
//! - nothing outside the roots changed (no escape).
//!
//! Then the roots an upload may have changed are rebuilt, so every input
//! starts from the same tree. The server's nonces, session ids and secrets
//! are random, the rest (the client's nonces included) is deterministic;
//! time limits only end inputs that would otherwise wait.
//!
//! The seed corpus in `corpus/handshake/` (complete sessions: with and
//! without token, upload and download, joins, refusals, garbage) is written
//! by this target itself; each seed is checked to decode to its steps and
//! to get the answers it was written for:
//!
//! ```text
//! cd fuzz
//! PARECO_FUZZ_WRITE_SEEDS=corpus/handshake RUSTC_BOOTSTRAP=1 cargo fuzz run handshake -- -runs=0
//! ```
//!
//! `PARECO_FUZZ_TRACE=1` prints the steps and the frames received for every
//! input (to read a reproducer). Run it with a separate working corpus so
//! the seeds are not flooded:
//!
//! ```text
//! mkdir -p /tmp/fuzz-handshake
//! RUSTC_BOOTSTRAP=1 cargo fuzz run handshake /tmp/fuzz-handshake corpus/handshake -- -max_total_time=600
//! ```

#![no_main]

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use pareco::codec::{
    Action, DigestList, Direction, ErrorKind, FrameCodec, HashAlgo, HashTarget, Kind, Message, Meta, Mtime,
    Packet, RelPath, SessionSpec, Span, Stat, MAX_PAYLOAD_CAP, PROTOCOL_VERSION,
};
use pareco::peer::hash;
use pareco::peer::temp::temp_name;
use pareco::session::auth::{Key, Secret, Transcript, NONCE_LEN, SECRET_LEN};
use pareco::session::conn::BoxIo;
use pareco::session::handshake::{intent_bytes, Wants};
use pareco::session::{Server, ServerConfig};
use serde::Serialize;
use serde_bytes::ByteBuf;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, ReadHalf, WriteHalf};
use tokio::runtime::Runtime;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::codec::Decoder;

const TOKEN: &str = "fuzz-token";
/// Server 0 requires `TOKEN`, server 1 no token.
const SERVERS: usize = 2;
const MAX_SESSIONS: usize = 4;
const MAX_CONNECTIONS: usize = 4;
/// Connections one input can hold at once (more than a session may have).
const SLOTS: usize = 8;
const MAX_STEPS: usize = 128;
/// Time an input may take before its connections are dropped.
const BUDGET: Duration = Duration::from_millis(300);
/// Time a server connection may take to end once its client is gone.
const GRACE: Duration = Duration::from_secs(10);
const DUPLEX_BUF: usize = 64 << 10;
/// Largest payload a step sends: over the limit of the small chunk sizes,
/// far below the 64 MiB cap.
const MAX_FILL: u32 = (256 << 10) + 1;
/// Largest file size `Begin` asks for, besides the sizes that cannot be
/// set at all: bigger (sparse) files would make hashing them slow.
const SIZE_MASK: u64 = (1 << 20) - 1;
/// Largest `Read`: a chunk, but at most this.
const READ_CAP: u32 = 1 << 20;
const LEN_MASK: u32 = (2 << 20) - 1;
/// Marks a value given in full after its selector byte.
const CUSTOM: u8 = 255;

fuzz_target!(init: init(), |data: &[u8]| {
    let fx = fixture();
    let steps = decode(data);
    let trace = fx.trace;
    if trace {
        eprintln!("steps: {steps:#?}");
    }
    let got = fx.rt.block_on(run(fx, &steps, trace));
    if trace {
        eprintln!("frames received:\n  {}", got.join("\n  "));
    }
});

fn init() {
    let fx = fixture();
    if let Some(dir) = std::env::var_os("PARECO_FUZZ_WRITE_SEEDS") {
        write_seeds(fx, Path::new(&dir));
        std::process::exit(0);
    }
}

// ---------------------------------------------------------------------------
// The servers and their trees
// ---------------------------------------------------------------------------

struct Fixture {
    rt: Runtime,
    servers: Vec<Server>,
    roots: Vec<PathBuf>,
    base: PathBuf,
    /// `base` and `base/outside` as they must stay.
    pristine: Vec<String>,
    /// The token server's key.
    key: Key,
    other_key: Key,
    trace: bool,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(Fixture::new)
}

impl Fixture {
    fn new() -> Fixture {
        let base = fixture_dir(std::process::id());
        remove_stale_fixtures();
        force_remove(&base).expect("remove an old fuzz directory");
        BASE.set(base.clone()).unwrap();
        // SAFETY: registers a plain function without arguments.
        unsafe { atexit(remove_fixture) };
        let outside = base.join("outside");
        fs::create_dir_all(outside.join("sub")).unwrap();
        fs::write(outside.join("secret.txt"), b"secret\n").unwrap();
        fs::write(outside.join("sub/x"), b"x").unwrap();
        let roots: Vec<PathBuf> = ["token", "open"].iter().map(|name| base.join(name)).collect();
        for root in &roots {
            fs::create_dir(root).unwrap();
            populate(root, &outside);
        }
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let servers = rt.block_on(async {
            let mut servers = Vec::new();
            for (i, root) in roots.iter().enumerate() {
                let config = ServerConfig {
                    root: root.clone(),
                    token: (i == 0).then(|| TOKEN.to_owned()),
                    session_timeout: Duration::from_secs(2),
                    max_sessions: MAX_SESSIONS,
                    max_connections: MAX_CONNECTIONS,
                    tls: None,
                    keep_setid: false,
                };
                servers.push(Server::bind("127.0.0.1:0", config).await.expect("bind a server"));
            }
            servers
        });
        check_raw_encoding();
        check_temp_paths();
        Fixture {
            rt,
            servers,
            roots,
            pristine: snapshot(&base),
            base,
            key: Key::from_token(TOKEN),
            other_key: Key::from_token("not-the-token"),
            trace: std::env::var_os("PARECO_FUZZ_TRACE").is_some(),
        }
    }

    /// Puts a root back as `populate` made it.
    fn reset(&self, root: &Path) {
        fs::set_permissions(root, fs::Permissions::from_mode(0o755)).unwrap();
        for entry in fs::read_dir(root).unwrap() {
            force_remove(&entry.unwrap().path()).unwrap();
        }
        populate(root, &self.base.join("outside"));
    }

    /// The key server `server` proves with (the no-token key on the
    /// tokenless one).
    fn server_key(&self, server: usize) -> Key {
        if server == 0 {
            self.key.clone()
        } else {
            Key::none()
        }
    }
}

/// The temporary directory of the process `pid`.
fn fixture_dir(pid: u32) -> PathBuf {
    std::env::temp_dir().join(format!("{FIXTURE_PREFIX}{pid}"))
}

const FIXTURE_PREFIX: &str = "pareco-fuzz-handshake-";

/// The fixture's directory, for `remove_fixture`.
static BASE: OnceLock<PathBuf> = OnceLock::new();

extern "C" {
    fn atexit(callback: extern "C" fn()) -> std::ffi::c_int;
}

/// Removes the fixture when the process exits normally (libFuzzer ends
/// with `exit`); after a crash it stays, to be looked at.
extern "C" fn remove_fixture() {
    if let Some(base) = BASE.get() {
        let _ = force_remove(base);
    }
}

/// Removes the fixtures of processes that are gone (crashed ones).
fn remove_stale_fixtures() {
    let Ok(entries) = fs::read_dir(std::env::temp_dir()) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let pid =
            name.to_str().and_then(|n| n.strip_prefix(FIXTURE_PREFIX)).and_then(|p| p.parse::<u32>().ok());
        if let Some(pid) = pid {
            if !Path::new(&format!("/proc/{pid}")).exists() {
                let _ = force_remove(&fixture_dir(pid));
            }
        }
    }
}

/// Bytes `k mod 251`, so chunks differ.
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|k| (k % 251) as u8).collect()
}

fn populate(root: &Path, outside: &Path) {
    let at = |rel: &str| root.join(rel);
    fs::write(at("file.txt"), pattern(3000)).unwrap();
    fs::write(at("empty"), b"").unwrap();
    fs::write(at("small.bin"), b"0123456789").unwrap();
    fs::create_dir_all(at("dir/sub")).unwrap();
    fs::write(at("dir/note.txt"), b"note\n").unwrap();
    fs::write(at("dir/sub/deep.txt"), pattern(5000)).unwrap();
    // A temporary file left by an interrupted run: `Begin` offers it.
    fs::write(root.join("dir").join(OsStr::from_bytes(&temp_name(b"note.txt"))), b"no").unwrap();
    symlink("file.txt", at("link-file")).unwrap();
    symlink("dir", at("link-dir")).unwrap();
    symlink("nowhere", at("dangling")).unwrap();
    symlink("loop", at("loop")).unwrap();
    // Three ways out: relative, absolute, and from a subdirectory.
    symlink("../outside", at("escape")).unwrap();
    symlink(outside, at("abs")).unwrap();
    symlink("../..", at("dir/up")).unwrap();
}

/// The temporary names in `PATHS` must be the library's, or they would
/// test nothing.
fn check_temp_paths() {
    for (dir, name) in [(&b"dir/"[..], &b"note.txt"[..]), (b"", b"file.txt")] {
        let temp = [dir, &temp_name(name)].concat();
        assert!(PATHS.contains(&&temp[..]), "PATHS lacks {:?}", String::from_utf8_lossy(&temp));
    }
}

/// Removes `path` and everything below it, whatever its permissions.
fn force_remove(path: &Path) -> std::io::Result<()> {
    let meta = match fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        other => other?,
    };
    if meta.is_dir() {
        fs::set_permissions(path, fs::Permissions::from_mode(0o700))?;
        for entry in fs::read_dir(path)? {
            force_remove(&entry?.path())?;
        }
        fs::remove_dir(path)
    } else {
        fs::remove_file(path)
    }
}

/// The names in `base`, and everything about `base` itself and about
/// `base/outside` and its contents.
fn snapshot(base: &Path) -> Vec<String> {
    fn line(path: &Path, name: &str) -> String {
        let meta = fs::symlink_metadata(path).unwrap();
        let content = if meta.is_file() {
            format!("{:?}", fs::read(path).unwrap())
        } else if meta.file_type().is_symlink() {
            format!("-> {:?}", fs::read_link(path).unwrap())
        } else {
            String::new()
        };
        format!("{name} {:o} {} {}.{} {content}", meta.mode(), meta.len(), meta.mtime(), meta.mtime_nsec())
    }
    fn walk(dir: &Path, rel: &str, out: &mut Vec<String>) {
        out.push(line(dir, rel));
        let mut entries: Vec<_> = fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
        entries.sort();
        for path in entries {
            let name = format!("{rel}/{}", path.file_name().unwrap().to_string_lossy());
            if fs::symlink_metadata(&path).unwrap().is_dir() {
                walk(&path, &name, out);
            } else {
                out.push(line(&path, &name));
            }
        }
    }
    let mut out: Vec<String> =
        fs::read_dir(base).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    out.sort();
    out.push(line(base, "."));
    walk(&base.join("outside"), "outside", &mut out);
    out
}

// ---------------------------------------------------------------------------
// Steps: what an input is made of
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
struct Step {
    slot: u8,
    /// Wait for the answer (or the close) before the next step.
    wait: bool,
    op: Op,
}

#[derive(Debug, Clone, PartialEq)]
enum Op {
    /// Drops the slot's connection, if any, and connects to a server.
    Connect {
        server: u8,
    },
    /// A `Hello` with a client nonce of `nonce_len` bytes (32 is right).
    Hello {
        version: u32,
        nonce_len: u8,
    },
    Open {
        proof: Proof,
        spec: SessionSpec,
    },
    Join {
        proof: Proof,
        session: SessionRef,
    },
    Request {
        id: IdSel,
        req: Req,
    },
    /// Bytes sent as they are.
    Raw {
        bytes: Vec<u8>,
    },
    /// A request's frame with one byte changed.
    Mutate {
        id: IdSel,
        req: Req,
        at: u16,
        xor: u8,
    },
    /// The first bytes of a request's frame.
    Truncate {
        id: IdSel,
        req: Req,
        keep: u16,
    },
    /// A message with a path the codec refuses.
    BadPath {
        id: IdSel,
        msg: BadMsg,
    },
    /// Ends the client's side of the stream, still reading answers.
    ShutdownWrite,
    Drop,
    /// Waits for the answers to every request sent on the slot.
    Sync,
}

/// The client's proof in an `Open` or `Join`.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Proof {
    /// Computed with the server's key (for a join, with the session's
    /// secret) over the transcript of the connection's nonces, as far as
    /// they are known (32 zero bytes each if not), and the intent sent.
    Valid,
    Missing,
    /// One bit off.
    Wrong,
    /// 31 bytes.
    Short,
    /// Valid, for another token.
    OtherToken,
    /// Valid, with the server's key but without the session's secret
    /// (a join by a token holder that did not open the session; for an
    /// open, the same as `Valid`).
    NoSecret,
    /// Valid, for another intent: an open of the other direction, a join
    /// of the next session id.
    OtherIntent,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum SessionRef {
    /// The n-th session id a `Welcome` of this input gave (modulo their
    /// number; `n` itself if there is none).
    Known(u8),
    Raw(u64),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum HandleSel {
    /// The n-th handle a `Begun` of this input gave (modulo their number).
    Known(u8),
    Raw(u64),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum IdSel {
    /// 1, 2, 3, ... per connection.
    Next,
    Zero,
    /// The id of the slot's previous request.
    Last,
    Raw(u32),
}

#[derive(Debug, Clone, PartialEq)]
enum Req {
    /// A message sent as it is: `Ping`, `Walk`, `Probe`, `Hash` of a path,
    /// `Begin`, `Apply`, `Close`, or one that is no request.
    Msg(Message),
    HashHandle {
        handle: HandleSel,
        span: Span,
    },
    Read {
        path: RelPath,
        offset: u64,
        len: LenSel,
    },
    CopyOld {
        handle: HandleSel,
        ranges: Vec<(u64, u64)>,
    },
    Write {
        handle: HandleSel,
        offset: OffSel,
        data: Data,
        digest: DigestSel,
    },
    Finish {
        handle: HandleSel,
        meta: Meta,
    },
    Discard {
        handle: HandleSel,
        remove: bool,
    },
    PutFile {
        path: RelPath,
        meta: Meta,
        data: Data,
        digest: DigestSel,
    },
    /// A `Ping` with a payload.
    Stray(Data),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum LenSel {
    /// The session's chunk size (at most `READ_CAP`).
    Chunk,
    ChunkPlus1,
    Value(u32),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum OffSel {
    /// n chunks of the session.
    Chunk(u8),
    Value(u64),
}

#[derive(Debug, Clone, PartialEq)]
enum Data {
    Bytes(Vec<u8>),
    Fill(u8, u32),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum DigestSel {
    /// The digest of the payload with the session's algorithm.
    Right,
    Wrong,
    Short,
    Empty,
}

#[derive(Debug, Clone, PartialEq)]
enum BadMsg {
    Open { proof: Proof, upload: bool, path: Vec<u8> },
    Probe(Vec<Vec<u8>>),
    Hash(Vec<u8>),
    Read(Vec<u8>),
    Begin(Vec<u8>),
    PutFile(Vec<u8>),
    MakeDir(Vec<u8>),
    Symlink(Vec<u8>),
}

const V: u32 = PROTOCOL_VERSION;
const VERSIONS: &[u32] = &[V, V, V, V, V, V, V, 0, V - 1, V + 1, u32::MAX];
/// Lengths of the client nonce in `Hello`, by a selector byte: mostly the
/// right one.
const NONCE_LENS: [u8; 8] = [32, 32, 32, 32, 32, 0, 31, 33];
const CHUNKS: &[u32] =
    &[1024, 1024, 1024, 1024, 4096, 4096, 65536, 1 << 20, 1023, 0, 64 << 20, (64 << 20) + 1, u32::MAX];
const ALGOS: [HashAlgo; 6] =
    [HashAlgo::Xxh3, HashAlgo::Xxh128, HashAlgo::Xxh64, HashAlgo::Crc32, HashAlgo::Crc32c, HashAlgo::Adler32];
const KINDS: [Kind; 3] = [Kind::File, Kind::Dir, Kind::Symlink];
const GLOBS: &[&str] = &[
    "*.txt",
    "**.txt",
    "dir",
    "dir/**",
    "*",
    "**",
    "[",
    "a**b**c**d**e**f",
    "{a,b",
    "\\",
    "**/*.bin",
    "sub",
    "?",
    "[!a]*",
    "a{b,c}",
    "",
];
/// Valid paths: the fixture's entries, ways through its symlinks, new ones.
const PATHS: &[&[u8]] = &[
    b"",
    b"file.txt",
    b"dir",
    b"dir/sub",
    b"dir/sub/deep.txt",
    b"dir/note.txt",
    b"empty",
    b"small.bin",
    b"link-file",
    b"link-dir",
    b"link-dir/note.txt",
    b"escape",
    b"escape/secret.txt",
    b"abs",
    b"abs/secret.txt",
    b"dangling",
    b"loop",
    b"loop/x",
    b"dir/up",
    b"dir/up/outside/secret.txt",
    b"up",
    b"up/a.bin",
    b"up/b",
    b"up/b/c.txt",
    b"new/x/y.txt",
    // The temporary files of `dir/note.txt` and `file.txt` (see
    // `check_temp_paths`).
    b"dir/.pareco-0b7db6e39c7add2d1adb46f2f3ffc203.tmp",
    b".pareco-334786b6e9f5ba82ec18e5f50f5d9b13.tmp",
    b"file.txt/child",
    b"missing/file",
    b"..a",
    b"with space",
    b"\xff\xfe",
];
/// Paths the codec refuses.
const BAD_PATHS: &[&[u8]] = &[
    b"..",
    b"../outside",
    b"/etc/passwd",
    b"/",
    b"a//b",
    b"file.txt/",
    b"./file.txt",
    b"dir/../..",
    b"dir/./note.txt",
    b"a\0b",
    b"escape/../..",
    b"dir/sub/../../..",
];
const TARGETS: &[&[u8]] = &[
    b"file.txt",
    b"dir",
    b"../outside",
    b"../../outside/secret.txt",
    b"/etc",
    b"",
    b"loop",
    b"a\0b",
    b"up/b",
];
const SIZES: &[u64] =
    &[0, 1, 10, 1000, 1023, 1024, 1025, 3000, 4096, 5000, 65536, 1 << 20, u64::MAX, 1 << 63];
const SPAN_SIZES: &[u64] = &[3000, 0, 1, 1024, 2048, 2500, 5000, 10, 1 << 20, u64::MAX, u64::MAX - 1023];
const FIRSTS: &[u64] = &[0, 0, 1, 2, 3, u64::MAX, u64::MAX / 1024, 1 << 54];
const COUNTS: &[u32] = &[1, 2, 3, 4, 0, 100, u32::MAX];
const GROUPS: &[u32] = &[1, 1, 0, 2, 3, 4, u32::MAX];
const OFFSETS: &[u64] = &[0, 1, 1000, 1024, 2048, 2999, 3000, 1 << 20, u64::MAX, 1 << 63];
const LENGTHS: &[u64] = &[0, 1, 1024, 2000, 3000, 3001, u64::MAX];
const WRITE_OFFSETS: &[u64] = &[0, 1, 1000, 1024, 2048, 2999, 3000, u64::MAX, u64::MAX - 5];
const MODES: &[u32] = &[0o644, 0o755, 0o600, 0, 0o7777, 0o4755, u32::MAX];
const SECS: &[i64] = &[1_700_000_000, 0, -1, i64::MIN, i64::MAX, 1 << 40];
const NANOS: &[u32] = &[0, 1, 999_999_999, 1_000_000_000, u32::MAX];

/// Reads an input; past its end every byte is 0.
struct Cursor<'a>(&'a [u8]);

impl Cursor<'_> {
    fn done(&self) -> bool {
        self.0.is_empty()
    }

    fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }

    fn array<const N: usize>(&mut self) -> [u8; N] {
        std::array::from_fn(|_| self.u8())
    }

    /// A length byte (at most `max`), then that many bytes.
    fn bytes(&mut self, max: usize) -> Vec<u8> {
        let n = usize::from(self.u8()).min(max).min(self.0.len());
        let (taken, rest) = self.0.split_at(n);
        self.0 = rest;
        taken.to_vec()
    }
}

fn put_bytes(o: &mut Vec<u8>, bytes: &[u8], max: usize) {
    assert!(bytes.len() <= max.min(255), "{} bytes do not fit in a step", bytes.len());
    o.push(bytes.len() as u8);
    o.extend_from_slice(bytes);
}

/// A number taken from a table by a selector byte, or given in full.
trait Num: Copy + PartialEq {
    fn take(c: &mut Cursor) -> Self;
    fn put(self, o: &mut Vec<u8>);
}

macro_rules! num {
    ($($t:ty),*) => {$(
        impl Num for $t {
            fn take(c: &mut Cursor) -> Self {
                <$t>::from_be_bytes(c.array())
            }
            fn put(self, o: &mut Vec<u8>) {
                o.extend_from_slice(&self.to_be_bytes());
            }
        }
    )*};
}
num!(u16, u32, u64, i64);

fn pick<T: Num>(c: &mut Cursor, table: &[T]) -> T {
    match c.u8() {
        CUSTOM => T::take(c),
        b => table[usize::from(b) % table.len()],
    }
}

fn put_pick<T: Num>(o: &mut Vec<u8>, table: &[T], value: T) {
    match table.iter().position(|&t| t == value) {
        Some(i) => o.push(i as u8),
        None => {
            o.push(CUSTOM);
            value.put(o);
        }
    }
}

fn get_vec<T>(c: &mut Cursor, max: u8, mut get: impl FnMut(&mut Cursor) -> T) -> Vec<T> {
    let n = c.u8() % (max + 1);
    (0..n).map(|_| get(c)).collect()
}

fn put_vec<T>(o: &mut Vec<u8>, max: u8, items: &[T], mut put: impl FnMut(&mut Vec<u8>, &T)) {
    assert!(items.len() <= usize::from(max), "too many items for a step");
    o.push(items.len() as u8);
    for item in items {
        put(o, item);
    }
}

/// An item of a dictionary by a selector byte, or given in full.
fn get_dict(c: &mut Cursor, dict: &[&[u8]], max: usize) -> Vec<u8> {
    match c.u8() {
        CUSTOM => c.bytes(max),
        b => dict[usize::from(b) % dict.len()].to_vec(),
    }
}

fn put_dict(o: &mut Vec<u8>, dict: &[&[u8]], max: usize, value: &[u8]) {
    match dict.iter().position(|&d| d == value) {
        Some(i) => o.push(i as u8),
        None => {
            o.push(CUSTOM);
            put_bytes(o, value, max);
        }
    }
}

/// A part of a step: read from an input, and written back (for the seeds).
trait Wire: Sized {
    fn get(c: &mut Cursor) -> Self;
    fn put(&self, o: &mut Vec<u8>);
}

fn decode(data: &[u8]) -> Vec<Step> {
    let mut c = Cursor(data);
    let mut steps = Vec::new();
    while !c.done() && steps.len() < MAX_STEPS {
        steps.push(Step::get(&mut c));
    }
    steps
}

fn encode(steps: &[Step]) -> Vec<u8> {
    let mut o = Vec::new();
    for step in steps {
        step.put(&mut o);
    }
    o
}

impl Wire for Step {
    fn get(c: &mut Cursor) -> Self {
        let head = c.u8();
        let op = match head & 0x0f {
            0 => Op::Connect { server: c.u8() & 1 },
            1 => Op::Hello {
                version: pick(c, VERSIONS),
                nonce_len: match c.u8() {
                    CUSTOM => c.u8(),
                    b => NONCE_LENS[usize::from(b) % NONCE_LENS.len()],
                },
            },
            2 => Op::Open { proof: Proof::get(c), spec: SessionSpec::get(c) },
            3 => Op::Join { proof: Proof::get(c), session: SessionRef::get(c) },
            5 => Op::Raw { bytes: c.bytes(255) },
            6 => Op::Mutate { id: IdSel::get(c), req: Req::get(c), at: u16::take(c), xor: c.u8() },
            7 => Op::Truncate { id: IdSel::get(c), req: Req::get(c), keep: u16::take(c) },
            8 => Op::BadPath { id: IdSel::get(c), msg: BadMsg::get(c) },
            9 => Op::ShutdownWrite,
            10 => Op::Drop,
            11 => Op::Sync,
            _ => Op::Request { id: IdSel::get(c), req: Req::get(c) },
        };
        Step { slot: (head >> 4) & 7, wait: head & 0x80 == 0, op }
    }

    fn put(&self, o: &mut Vec<u8>) {
        let kind = match &self.op {
            Op::Connect { .. } => 0,
            Op::Hello { .. } => 1,
            Op::Open { .. } => 2,
            Op::Join { .. } => 3,
            Op::Request { .. } => 4,
            Op::Raw { .. } => 5,
            Op::Mutate { .. } => 6,
            Op::Truncate { .. } => 7,
            Op::BadPath { .. } => 8,
            Op::ShutdownWrite => 9,
            Op::Drop => 10,
            Op::Sync => 11,
        };
        assert!(usize::from(self.slot) < SLOTS);
        o.push(kind | self.slot << 4 | u8::from(!self.wait) << 7);
        match &self.op {
            Op::Connect { server } => o.push(*server),
            Op::Hello { version, nonce_len } => {
                put_pick(o, VERSIONS, *version);
                match NONCE_LENS.iter().position(|n| n == nonce_len) {
                    Some(i) => o.push(i as u8),
                    None => {
                        o.push(CUSTOM);
                        o.push(*nonce_len);
                    }
                }
            }
            Op::Open { proof, spec } => {
                proof.put(o);
                spec.put(o);
            }
            Op::Join { proof, session } => {
                proof.put(o);
                session.put(o);
            }
            Op::Request { id, req } => {
                id.put(o);
                req.put(o);
            }
            Op::Raw { bytes } => put_bytes(o, bytes, 255),
            Op::Mutate { id, req, at, xor } => {
                id.put(o);
                req.put(o);
                at.put(o);
                o.push(*xor);
            }
            Op::Truncate { id, req, keep } => {
                id.put(o);
                req.put(o);
                keep.put(o);
            }
            Op::BadPath { id, msg } => {
                id.put(o);
                msg.put(o);
            }
            Op::ShutdownWrite | Op::Drop | Op::Sync => {}
        }
    }
}

impl Wire for Proof {
    fn get(c: &mut Cursor) -> Self {
        match c.u8() % 12 {
            0..=5 => Proof::Valid,
            6 => Proof::Missing,
            7 => Proof::Wrong,
            8 => Proof::Short,
            9 => Proof::OtherToken,
            10 => Proof::NoSecret,
            _ => Proof::OtherIntent,
        }
    }

    fn put(&self, o: &mut Vec<u8>) {
        o.push(match self {
            Proof::Valid => 0,
            Proof::Missing => 6,
            Proof::Wrong => 7,
            Proof::Short => 8,
            Proof::OtherToken => 9,
            Proof::NoSecret => 10,
            Proof::OtherIntent => 11,
        });
    }
}

impl Wire for SessionRef {
    fn get(c: &mut Cursor) -> Self {
        match c.u8() {
            CUSTOM => SessionRef::Raw(u64::take(c)),
            n => SessionRef::Known(n),
        }
    }

    fn put(&self, o: &mut Vec<u8>) {
        match self {
            SessionRef::Known(n) => o.push(*n),
            SessionRef::Raw(id) => {
                o.push(CUSTOM);
                id.put(o);
            }
        }
    }
}

impl Wire for HandleSel {
    fn get(c: &mut Cursor) -> Self {
        match c.u8() {
            CUSTOM => HandleSel::Raw(u64::take(c)),
            n => HandleSel::Known(n),
        }
    }

    fn put(&self, o: &mut Vec<u8>) {
        match self {
            HandleSel::Known(n) => o.push(*n),
            HandleSel::Raw(h) => {
                o.push(CUSTOM);
                h.put(o);
            }
        }
    }
}

impl Wire for IdSel {
    fn get(c: &mut Cursor) -> Self {
        match c.u8() {
            CUSTOM => IdSel::Raw(u32::take(c)),
            254 => IdSel::Last,
            253 => IdSel::Zero,
            _ => IdSel::Next,
        }
    }

    fn put(&self, o: &mut Vec<u8>) {
        match self {
            IdSel::Next => o.push(0),
            IdSel::Zero => o.push(253),
            IdSel::Last => o.push(254),
            IdSel::Raw(id) => {
                o.push(CUSTOM);
                id.put(o);
            }
        }
    }
}

impl Wire for LenSel {
    fn get(c: &mut Cursor) -> Self {
        match c.u8() {
            CUSTOM => LenSel::Value(u32::take(c) & LEN_MASK),
            b => match b % 8 {
                0..=2 => LenSel::Chunk,
                3 => LenSel::ChunkPlus1,
                4 => LenSel::Value(0),
                5 => LenSel::Value(1),
                6 => LenSel::Value(100),
                _ => LenSel::Value(u32::MAX),
            },
        }
    }

    fn put(&self, o: &mut Vec<u8>) {
        match self {
            LenSel::Chunk => o.push(0),
            LenSel::ChunkPlus1 => o.push(3),
            LenSel::Value(0) => o.push(4),
            LenSel::Value(1) => o.push(5),
            LenSel::Value(100) => o.push(6),
            LenSel::Value(u32::MAX) => o.push(7),
            LenSel::Value(len) => {
                assert!(*len <= LEN_MASK);
                o.push(CUSTOM);
                len.put(o);
            }
        }
    }
}

impl Wire for OffSel {
    fn get(c: &mut Cursor) -> Self {
        match c.u8() {
            CUSTOM => OffSel::Value(u64::take(c)),
            k @ 0..16 => OffSel::Chunk(k),
            b => OffSel::Value(WRITE_OFFSETS[usize::from(b - 16) % WRITE_OFFSETS.len()]),
        }
    }

    fn put(&self, o: &mut Vec<u8>) {
        match self {
            OffSel::Chunk(k) => {
                assert!(*k < 16);
                o.push(*k);
            }
            OffSel::Value(v) => match WRITE_OFFSETS.iter().position(|w| w == v) {
                Some(i) => o.push(16 + i as u8),
                None => {
                    o.push(CUSTOM);
                    v.put(o);
                }
            },
        }
    }
}

impl Wire for Data {
    fn get(c: &mut Cursor) -> Self {
        match c.u8() {
            CUSTOM => Data::Fill(c.u8(), u32::take(c) % (MAX_FILL + 1)),
            n => {
                let n = usize::from(n).min(c.0.len());
                let (taken, rest) = c.0.split_at(n);
                c.0 = rest;
                Data::Bytes(taken.to_vec())
            }
        }
    }

    fn put(&self, o: &mut Vec<u8>) {
        match self {
            Data::Bytes(bytes) => put_bytes(o, bytes, 254),
            Data::Fill(byte, len) => {
                assert!(*len <= MAX_FILL);
                o.push(CUSTOM);
                o.push(*byte);
                len.put(o);
            }
        }
    }
}

impl Data {
    fn bytes(&self) -> Bytes {
        match self {
            Data::Bytes(bytes) => Bytes::from(bytes.clone()),
            Data::Fill(byte, len) => Bytes::from(vec![*byte; *len as usize]),
        }
    }
}

impl Wire for DigestSel {
    fn get(c: &mut Cursor) -> Self {
        match c.u8() % 8 {
            0..=4 => DigestSel::Right,
            5 => DigestSel::Wrong,
            6 => DigestSel::Short,
            _ => DigestSel::Empty,
        }
    }

    fn put(&self, o: &mut Vec<u8>) {
        o.push(match self {
            DigestSel::Right => 0,
            DigestSel::Wrong => 5,
            DigestSel::Short => 6,
            DigestSel::Empty => 7,
        });
    }
}

impl DigestSel {
    fn digest(self, algo: HashAlgo, data: &[u8]) -> ByteBuf {
        let right = hash::digest(algo, data);
        match self {
            DigestSel::Right => hash::encode(algo, right),
            DigestSel::Wrong => hash::encode(algo, right ^ 1),
            DigestSel::Short => {
                let mut digest = hash::encode(algo, right).into_vec();
                digest.pop();
                ByteBuf::from(digest)
            }
            DigestSel::Empty => ByteBuf::new(),
        }
    }
}

impl Wire for RelPath {
    fn get(c: &mut Cursor) -> Self {
        RelPath::new(get_dict(c, PATHS, 64)).unwrap_or_default()
    }

    fn put(&self, o: &mut Vec<u8>) {
        put_dict(o, PATHS, 64, self.as_bytes());
    }
}

fn get_glob(c: &mut Cursor) -> String {
    match c.u8() {
        CUSTOM => String::from_utf8_lossy(&c.bytes(32)).into_owned(),
        b => GLOBS[usize::from(b) % GLOBS.len()].to_owned(),
    }
}

fn put_glob(o: &mut Vec<u8>, glob: &str) {
    match GLOBS.iter().position(|&g| g == glob) {
        Some(i) => o.push(i as u8),
        None => {
            o.push(CUSTOM);
            put_bytes(o, glob.as_bytes(), 32);
        }
    }
}

impl Wire for SessionSpec {
    fn get(c: &mut Cursor) -> Self {
        let flags = c.u8();
        SessionSpec {
            direction: if flags & 1 == 0 { Direction::Upload } else { Direction::Download },
            inplace: flags & 2 != 0,
            delete: flags & 4 != 0,
            path: RelPath::get(c),
            chunk_size: pick(c, CHUNKS),
            hash: ALGOS[usize::from(c.u8()) % ALGOS.len()],
            includes: get_vec(c, 2, get_glob),
            excludes: get_vec(c, 2, get_glob),
        }
    }

    fn put(&self, o: &mut Vec<u8>) {
        o.push(u8::from(self.direction == Direction::Download) | u8::from(self.inplace) << 1 | u8::from(self.delete) << 2);
        self.path.put(o);
        put_pick(o, CHUNKS, self.chunk_size);
        o.push(ALGOS.iter().position(|&a| a == self.hash).unwrap() as u8);
        put_vec(o, 2, &self.includes, |o, g| put_glob(o, g));
        put_vec(o, 2, &self.excludes, |o, g| put_glob(o, g));
    }
}

impl Wire for Span {
    fn get(c: &mut Cursor) -> Self {
        Span {
            size: pick(c, SPAN_SIZES),
            first: pick(c, FIRSTS),
            count: pick(c, COUNTS),
            group: pick(c, GROUPS),
        }
    }

    fn put(&self, o: &mut Vec<u8>) {
        put_pick(o, SPAN_SIZES, self.size);
        put_pick(o, FIRSTS, self.first);
        put_pick(o, COUNTS, self.count);
        put_pick(o, GROUPS, self.group);
    }
}

impl Wire for Mtime {
    fn get(c: &mut Cursor) -> Self {
        Mtime { secs: pick(c, SECS), nanos: pick(c, NANOS) }
    }

    fn put(&self, o: &mut Vec<u8>) {
        put_pick(o, SECS, self.secs);
        put_pick(o, NANOS, self.nanos);
    }
}

impl Wire for Meta {
    fn get(c: &mut Cursor) -> Self {
        Meta { mode: pick(c, MODES), mtime: Mtime::get(c) }
    }

    fn put(&self, o: &mut Vec<u8>) {
        put_pick(o, MODES, self.mode);
        self.mtime.put(o);
    }
}

impl Wire for Kind {
    fn get(c: &mut Cursor) -> Self {
        KINDS[usize::from(c.u8()) % KINDS.len()]
    }

    fn put(&self, o: &mut Vec<u8>) {
        o.push(KINDS.iter().position(|k| k == self).unwrap() as u8);
    }
}

impl Wire for Action {
    fn get(c: &mut Cursor) -> Self {
        match c.u8() % 4 {
            0 => Action::MakeDir { path: RelPath::get(c) },
            1 => Action::Symlink {
                path: RelPath::get(c),
                target: ByteBuf::from(get_dict(c, TARGETS, 64)),
                mtime: Mtime::get(c),
            },
            2 => Action::SetMeta { path: RelPath::get(c), kind: Kind::get(c), meta: Meta::get(c) },
            _ => Action::Remove { path: RelPath::get(c), kind: Kind::get(c) },
        }
    }

    fn put(&self, o: &mut Vec<u8>) {
        match self {
            Action::MakeDir { path } => {
                o.push(0);
                path.put(o);
            }
            Action::Symlink { path, target, mtime } => {
                o.push(1);
                path.put(o);
                put_dict(o, TARGETS, 64, target);
                mtime.put(o);
            }
            Action::SetMeta { path, kind, meta } => {
                o.push(2);
                path.put(o);
                kind.put(o);
                meta.put(o);
            }
            Action::Remove { path, kind } => {
                o.push(3);
                path.put(o);
                kind.put(o);
            }
        }
    }
}

fn get_size(c: &mut Cursor) -> u64 {
    let size = pick(c, SIZES);
    if SIZES.contains(&size) {
        size
    } else {
        size & SIZE_MASK
    }
}

fn put_size(o: &mut Vec<u8>, size: u64) {
    assert!(SIZES.contains(&size) || size <= SIZE_MASK);
    put_pick(o, SIZES, size);
}

/// Messages that are no requests (the server must refuse each one).
fn non_requests() -> Vec<Message> {
    let stat = Stat { kind: Kind::File, size: 1, meta: meta(), target: None };
    vec![
        Message::Hello { version: PROTOCOL_VERSION, nonce: ByteBuf::from(vec![0; NONCE_LEN]) },
        Message::Challenge {
            version: PROTOCOL_VERSION,
            nonce: ByteBuf::from(vec![0; 32]),
            token_required: false,
        },
        Message::Join { session: 1, proof: None },
        Message::Welcome {
            session: 1,
            idle_timeout_ms: 1000,
            max_payload: 1024,
            proof: ByteBuf::from(vec![0; 32]),
            secret: Some(ByteBuf::from(vec![0; SECRET_LEN])),
        },
        Message::Pong,
        Message::Listing { entries: Vec::new(), problems: vec!["x".into()], done: true, root: Some(meta()) },
        Message::Probed { found: vec![None, Some(stat.clone())] },
        Message::Hashes { digests: DigestList(vec![1; 8]) },
        Message::Data { digest: ByteBuf::from(vec![0; 8]), file: stat },
        Message::Begun { handle: 1, partial: false },
        Message::Done,
        Message::Applied { failures: vec![(RelPath::root(), "x".into())] },
        Message::Error { kind: ErrorKind::Protocol, message: "from the client".into() },
        Message::Error { kind: ErrorKind::Lost, message: String::new() },
        Message::Hello { version: PROTOCOL_VERSION + 1, nonce: ByteBuf::new() },
    ]
}

fn meta() -> Meta {
    Meta { mode: 0o644, mtime: Mtime { secs: 1_700_000_000, nanos: 0 } }
}

impl Wire for Req {
    fn get(c: &mut Cursor) -> Self {
        match c.u8() % 22 {
            0 => Req::Msg(Message::Ping),
            1 => Req::Msg(Message::Walk),
            2 => Req::Msg(Message::Probe { paths: get_vec(c, 4, RelPath::get) }),
            3 => Req::Msg(Message::Hash { target: HashTarget::Path(RelPath::get(c)), span: Span::get(c) }),
            4 => Req::HashHandle { handle: HandleSel::get(c), span: Span::get(c) },
            5 | 6 => Req::Read { path: RelPath::get(c), offset: pick(c, OFFSETS), len: LenSel::get(c) },
            7 | 8 => Req::Msg(Message::Begin { path: RelPath::get(c), size: get_size(c) }),
            9 => Req::CopyOld {
                handle: HandleSel::get(c),
                ranges: get_vec(c, 2, |c| (pick(c, OFFSETS), pick(c, LENGTHS))),
            },
            10..=12 => Req::Write {
                handle: HandleSel::get(c),
                offset: OffSel::get(c),
                data: Data::get(c),
                digest: DigestSel::get(c),
            },
            13 => Req::Finish { handle: HandleSel::get(c), meta: Meta::get(c) },
            14 => Req::Discard { handle: HandleSel::get(c), remove: c.u8() & 1 == 1 },
            15 | 16 => Req::PutFile {
                path: RelPath::get(c),
                meta: Meta::get(c),
                data: Data::get(c),
                digest: DigestSel::get(c),
            },
            17 | 18 => Req::Msg(Message::Apply { actions: get_vec(c, 3, Action::get) }),
            19 => Req::Msg(Message::Close),
            20 => {
                let mut others = non_requests();
                let i = usize::from(c.u8()) % others.len();
                Req::Msg(others.swap_remove(i))
            }
            _ => Req::Stray(Data::get(c)),
        }
    }

    fn put(&self, o: &mut Vec<u8>) {
        match self {
            Req::Msg(Message::Ping) => o.push(0),
            Req::Msg(Message::Walk) => o.push(1),
            Req::Msg(Message::Probe { paths }) => {
                o.push(2);
                put_vec(o, 4, paths, |o, p| p.put(o));
            }
            Req::Msg(Message::Hash { target: HashTarget::Path(path), span }) => {
                o.push(3);
                path.put(o);
                span.put(o);
            }
            Req::HashHandle { handle, span } => {
                o.push(4);
                handle.put(o);
                span.put(o);
            }
            Req::Read { path, offset, len } => {
                o.push(5);
                path.put(o);
                put_pick(o, OFFSETS, *offset);
                len.put(o);
            }
            Req::Msg(Message::Begin { path, size }) => {
                o.push(7);
                path.put(o);
                put_size(o, *size);
            }
            Req::CopyOld { handle, ranges } => {
                o.push(9);
                handle.put(o);
                put_vec(o, 2, ranges, |o, &(offset, len)| {
                    put_pick(o, OFFSETS, offset);
                    put_pick(o, LENGTHS, len);
                });
            }
            Req::Write { handle, offset, data, digest } => {
                o.push(10);
                handle.put(o);
                offset.put(o);
                data.put(o);
                digest.put(o);
            }
            Req::Finish { handle, meta } => {
                o.push(13);
                handle.put(o);
                meta.put(o);
            }
            Req::Discard { handle, remove } => {
                o.push(14);
                handle.put(o);
                o.push(u8::from(*remove));
            }
            Req::PutFile { path, meta, data, digest } => {
                o.push(15);
                path.put(o);
                meta.put(o);
                data.put(o);
                digest.put(o);
            }
            Req::Msg(Message::Apply { actions }) => {
                o.push(17);
                put_vec(o, 3, actions, |o, a| a.put(o));
            }
            Req::Msg(Message::Close) => o.push(19),
            Req::Msg(other) => {
                let i = non_requests().iter().position(|m| m == other);
                o.push(20);
                o.push(i.unwrap_or_else(|| panic!("{other:?} cannot be written as a step")) as u8);
            }
            Req::Stray(data) => {
                o.push(21);
                data.put(o);
            }
        }
    }
}

fn get_bad_path(c: &mut Cursor) -> Vec<u8> {
    get_dict(c, BAD_PATHS, 64)
}

fn put_bad_path(o: &mut Vec<u8>, path: &[u8]) {
    put_dict(o, BAD_PATHS, 64, path);
}

impl Wire for BadMsg {
    fn get(c: &mut Cursor) -> Self {
        match c.u8() % 8 {
            0 => BadMsg::Open { proof: Proof::get(c), upload: c.u8() & 1 == 0, path: get_bad_path(c) },
            1 => BadMsg::Probe(get_vec(c, 3, get_bad_path)),
            2 => BadMsg::Hash(get_bad_path(c)),
            3 => BadMsg::Read(get_bad_path(c)),
            4 => BadMsg::Begin(get_bad_path(c)),
            5 => BadMsg::PutFile(get_bad_path(c)),
            6 => BadMsg::MakeDir(get_bad_path(c)),
            _ => BadMsg::Symlink(get_bad_path(c)),
        }
    }

    fn put(&self, o: &mut Vec<u8>) {
        match self {
            BadMsg::Open { proof, upload, path } => {
                o.push(0);
                proof.put(o);
                o.push(u8::from(!upload));
                put_bad_path(o, path);
            }
            BadMsg::Probe(paths) => {
                o.push(1);
                put_vec(o, 3, paths, |o, p| put_bad_path(o, p));
            }
            BadMsg::Hash(path) => {
                o.push(2);
                put_bad_path(o, path);
            }
            BadMsg::Read(path) => {
                o.push(3);
                put_bad_path(o, path);
            }
            BadMsg::Begin(path) => {
                o.push(4);
                put_bad_path(o, path);
            }
            BadMsg::PutFile(path) => {
                o.push(5);
                put_bad_path(o, path);
            }
            BadMsg::MakeDir(path) => {
                o.push(6);
                put_bad_path(o, path);
            }
            BadMsg::Symlink(path) => {
                o.push(7);
                put_bad_path(o, path);
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Headers the library refuses to encode: paths as raw bin
// ---------------------------------------------------------------------------

/// The messages of `Message` that carry a path, with the path as plain
/// bytes; serialized like `Message` (same variant names and field order).
#[derive(Serialize)]
enum RawMsg {
    Open { proof: Option<ByteBuf>, spec: RawSpec },
    Probe { paths: Vec<ByteBuf> },
    Hash { target: RawTarget, span: Span },
    Read { path: ByteBuf, offset: u64, len: u32 },
    Begin { path: ByteBuf, size: u64 },
    PutFile { path: ByteBuf, meta: Meta, digest: ByteBuf },
    Apply { actions: Vec<RawAction> },
}

#[derive(Serialize)]
struct RawSpec {
    direction: Direction,
    path: ByteBuf,
    chunk_size: u32,
    hash: HashAlgo,
    includes: Vec<String>,
    excludes: Vec<String>,
    inplace: bool,
    delete: bool,
}

#[derive(Serialize)]
enum RawTarget {
    Path(ByteBuf),
}

#[derive(Serialize)]
enum RawAction {
    MakeDir { path: ByteBuf },
    Symlink { path: ByteBuf, target: ByteBuf, mtime: Mtime },
}

/// A whole frame with a hand-made header.
fn raw_frame(id: u32, msg: &RawMsg) -> Vec<u8> {
    let header = rmp_serde::to_vec(&(id, msg)).expect("a raw header encodes");
    let mut frame = Vec::with_capacity(8 + header.len());
    frame.extend_from_slice(&(header.len() as u32).to_be_bytes());
    frame.extend_from_slice(&0u32.to_be_bytes());
    frame.extend_from_slice(&header);
    frame
}

/// `RawMsg` must encode like `Message`, or its frames would test nothing.
fn check_raw_encoding() {
    let path = RelPath::new("dir/a").unwrap();
    let spec = SessionSpec {
        direction: Direction::Download,
        path: path.clone(),
        chunk_size: 1024,
        hash: HashAlgo::Crc32,
        includes: vec!["*".into()],
        excludes: Vec::new(),
        inplace: true,
        delete: false,
    };
    let raw_path = || ByteBuf::from(path.as_bytes().to_vec());
    let span = Span { size: 3000, first: 1, count: 2, group: 3 };
    let meta = meta();
    let mtime = meta.mtime;
    // The proof of an `Open` sent with a raw path covers the same bytes.
    let raw_spec = RawSpec {
        direction: spec.direction,
        path: raw_path(),
        chunk_size: spec.chunk_size,
        hash: spec.hash,
        includes: spec.includes.clone(),
        excludes: spec.excludes.clone(),
        inplace: spec.inplace,
        delete: spec.delete,
    };
    assert_eq!(
        intent_bytes(&Wants::Open(spec.clone())).unwrap(),
        [&b"open"[..], &rmp_serde::to_vec(&raw_spec).unwrap()].concat(),
        "the intent of a RawSpec differs"
    );
    let pairs = [
        (
            Message::Open { proof: None, spec: spec.clone() },
            RawMsg::Open {
                proof: None,
                spec: RawSpec {
                    direction: spec.direction,
                    path: raw_path(),
                    chunk_size: spec.chunk_size,
                    hash: spec.hash,
                    includes: spec.includes.clone(),
                    excludes: spec.excludes.clone(),
                    inplace: spec.inplace,
                    delete: spec.delete,
                },
            },
        ),
        (Message::Probe { paths: vec![path.clone()] }, RawMsg::Probe { paths: vec![raw_path()] }),
        (
            Message::Hash { target: HashTarget::Path(path.clone()), span },
            RawMsg::Hash { target: RawTarget::Path(raw_path()), span },
        ),
        (
            Message::Read { path: path.clone(), offset: 5, len: 6 },
            RawMsg::Read { path: raw_path(), offset: 5, len: 6 },
        ),
        (Message::Begin { path: path.clone(), size: 7 }, RawMsg::Begin { path: raw_path(), size: 7 }),
        (
            Message::PutFile { path: path.clone(), meta, digest: ByteBuf::from(vec![1, 2]) },
            RawMsg::PutFile { path: raw_path(), meta, digest: ByteBuf::from(vec![1, 2]) },
        ),
        (
            Message::Apply {
                actions: vec![
                    Action::MakeDir { path: path.clone() },
                    Action::Symlink { path: path.clone(), target: ByteBuf::from(b"t".to_vec()), mtime },
                ],
            },
            RawMsg::Apply {
                actions: vec![
                    RawAction::MakeDir { path: raw_path() },
                    RawAction::Symlink { path: raw_path(), target: ByteBuf::from(b"t".to_vec()), mtime },
                ],
            },
        ),
    ];
    for (msg, raw) in pairs {
        assert_eq!(frame(9, msg.clone(), Bytes::new()), raw_frame(9, &raw), "RawMsg differs from {msg:?}");
    }
}

/// A whole frame: head and payload.
fn frame(id: u32, msg: Message, payload: Bytes) -> Vec<u8> {
    let packet = Packet::with_payload(id, msg, payload);
    let mut frame = packet.encode_head().expect("a fuzz frame encodes").to_vec();
    frame.extend_from_slice(&packet.payload);
    frame
}

// ---------------------------------------------------------------------------
// Running an input
// ---------------------------------------------------------------------------

enum Event {
    Frame(Packet),
    Eof,
}

/// What the first `Open` or `Join` sent on a connection asked for.
#[derive(Clone, Copy)]
enum Intent {
    Open(HashAlgo),
    Join,
}

/// The `Open` or `Join` a connection sent as its second frame, which the
/// server takes for its intent: what it asks for, the secret a join's proof
/// was made with (if the session's was known), and whether its proof is
/// the one a correct client sends.
#[derive(Clone)]
struct Sent {
    wants: Wants,
    secret: Option<Secret>,
    valid: bool,
}

/// The fuzz side of one connection.
struct Conn {
    server: usize,
    /// The connection's number in the input (its client nonce derives
    /// from it).
    serial: u16,
    writer: Option<WriteHalf<DuplexStream>>,
    events: mpsc::UnboundedReceiver<Event>,
    reader: JoinHandle<()>,
    eof: bool,
    /// Bytes were sent that may not end on a frame boundary: answers
    /// cannot be expected any more.
    desynced: bool,
    /// Frames with id 0 received (handshake answers, connection errors).
    id0: usize,
    /// Whole frames sent: the server takes the first for `Hello` and the
    /// second for the intent.
    frames: usize,
    /// The nonce of the `Hello` sent as the first frame.
    client_nonce: Option<Vec<u8>>,
    /// The nonce of the server's `Challenge`.
    server_nonce: Option<Vec<u8>>,
    /// The first `Open` or `Join` sent, whatever frame it was (for the
    /// session's hash algorithm).
    intent: Option<Intent>,
    /// The intent frame, if it was an `Open` or `Join` sent whole.
    sent: Option<Sent>,
    welcomed: bool,
    refusal: Option<String>,
    algo: HashAlgo,
    chunk: u32,
    /// Requests sent and not answered yet, by id.
    outstanding: HashMap<u32, usize>,
    next_id: u32,
    last_id: u32,
}

struct Known {
    id: u64,
    algo: HashAlgo,
    /// Unsealed from the `Welcome` of its `Open`, when that handshake was
    /// known.
    secret: Option<Secret>,
}

struct Run {
    fx: &'static Fixture,
    conns: Vec<Option<Conn>>,
    serving: Vec<JoinHandle<()>>,
    sessions: Vec<Known>,
    handles: Vec<u64>,
    /// Servers that may have opened a session in this input.
    opened: [bool; SERVERS],
    /// Servers that may have written into their root (an upload session).
    dirty: [bool; SERVERS],
    deadline: Instant,
    peers: u16,
    trace: Option<Vec<String>>,
}

/// Runs `steps`, checks the servers afterwards, and returns the frames
/// received (when `trace`).
async fn run(fx: &'static Fixture, steps: &[Step], trace: bool) -> Vec<String> {
    let mut run = Run {
        fx,
        conns: (0..SLOTS).map(|_| None).collect(),
        serving: Vec::new(),
        sessions: Vec::new(),
        handles: Vec::new(),
        opened: [false; SERVERS],
        dirty: [false; SERVERS],
        deadline: Instant::now() + BUDGET,
        peers: 0,
        trace: trace.then(Vec::new),
    };
    for step in steps {
        if Instant::now() >= run.deadline {
            break;
        }
        run.step(step).await;
    }
    let received = run.trace.take().unwrap_or_default();
    run.finish().await;
    received
}

/// Reads the server's frames off one connection.
async fn read_frames(mut read: ReadHalf<DuplexStream>, events: mpsc::UnboundedSender<Event>) {
    let mut codec = FrameCodec::new(MAX_PAYLOAD_CAP);
    let mut buf = BytesMut::with_capacity(16 << 10);
    loop {
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(packet)) => {
                    let _ = events.send(Event::Frame(packet));
                }
                Ok(None) => break,
                Err(e) => panic!("the server sent a malformed frame: {e}"),
            }
        }
        match read.read_buf(&mut buf).await {
            Ok(0) | Err(_) => {
                assert!(buf.is_empty(), "the server closed a connection in the middle of a frame");
                let _ = events.send(Event::Eof);
                return;
            }
            Ok(_) => {}
        }
    }
}

/// Checks a `Welcome` against the handshake this side sent, when it knows
/// it (see the module docs), and returns the session's secret if it learnt
/// it: unsealed for an `Open`, the one a join proved it knows.
fn check_welcome(
    fx: &Fixture,
    conn: &Conn,
    session: u64,
    proof: &[u8],
    sealed: Option<&[u8]>,
) -> Option<Secret> {
    let (Some(sent), Some(client), Some(server)) = (&conn.sent, &conn.client_nonce, &conn.server_nonce)
    else {
        return None;
    };
    // Bytes sent out of frame may have made another handshake than the one
    // noted: then what is learnt is only taken if the server's proof agrees.
    let strict = !conn.desynced;
    if strict {
        // Only the tokenless server opens a session whatever the proof.
        let checked = conn.server == 0 || matches!(sent.wants, Wants::Join(_));
        assert!(
            !checked || sent.valid,
            "auth: server {} welcomed {:?} on a proof that is not valid",
            conn.server,
            sent.wants
        );
        if let Wants::Join(id) = sent.wants {
            assert_eq!(session, id, "a join welcomed into another session");
        }
    }
    let transcript = Transcript::new(client, server, b"", &intent_bytes(&sent.wants).unwrap());
    let key = fx.server_key(conn.server);
    let key = match (&sent.wants, &sent.secret) {
        (Wants::Join(_), Some(secret)) => key.for_join(secret),
        // Not a valid proof (checked above when strict).
        (Wants::Join(_), None) => return None,
        (Wants::Open(_), _) => key,
    };
    let right = proof[..] == key.server_proof(&transcript)[..];
    assert!(right || !strict, "the server's proof in the Welcome to {:?} is wrong", sent.wants);
    if !right {
        return None;
    }
    match (&sent.wants, sealed) {
        (Wants::Open(_), Some(sealed)) if sealed.len() == SECRET_LEN => {
            Some(key.seal(&transcript, &Secret::try_from(sealed).unwrap()))
        }
        (Wants::Join(_), None) => sent.secret,
        (wants, sealed) => {
            assert!(!strict, "a Welcome to {wants:?} with a secret of {:?} bytes", sealed.map(<[u8]>::len));
            None
        }
    }
}

/// A client nonce of `len` bytes, the same for the same connection of an
/// input on every run.
fn client_nonce(serial: u16, len: u8) -> Vec<u8> {
    let [hi, lo] = serial.to_be_bytes();
    (0..len).map(|i| [hi, lo, 0xc1][usize::from(i) % 3] ^ i).collect()
}

/// The `Hello` nonce or the intent the server makes of `msg` if it is a
/// connection's first or second frame (for messages sent as requests).
fn noted(msg: &Message) -> (Option<Vec<u8>>, Option<Sent>) {
    let sent = |wants| Some(Sent { wants, secret: None, valid: false });
    match msg {
        Message::Hello { nonce, .. } => (Some(nonce.to_vec()), None),
        Message::Open { spec, .. } => (None, sent(Wants::Open(spec.clone()))),
        Message::Join { session, .. } => (None, sent(Wants::Join(*session))),
        _ => (None, None),
    }
}

/// The direction a session spec does not have.
fn flip(direction: Direction) -> Direction {
    match direction {
        Direction::Upload => Direction::Download,
        Direction::Download => Direction::Upload,
    }
}

fn describe(msg: &Message) -> String {
    match msg {
        Message::Error { kind, message } => format!("Error({kind:?}: {message})"),
        Message::Begun { handle, partial } => format!("Begun({handle}, partial={partial})"),
        Message::Hashes { digests } => format!("Hashes({} bytes)", digests.0.len()),
        Message::Listing { entries, problems, done, root } => format!(
            "Listing({} entries, {} problems, done={done}{})",
            entries.len(),
            problems.len(),
            if root.is_some() { ", root" } else { "" }
        ),
        Message::Applied { failures } => format!("Applied({} failures)", failures.len()),
        Message::Probed { found } => {
            format!("Probed({} of {} found)", found.iter().filter(|f| f.is_some()).count(), found.len())
        }
        other => other.name().to_owned(),
    }
}

impl Run {
    fn conn(&mut self, slot: usize) -> &mut Conn {
        self.conns[slot].as_mut().expect("a connected slot")
    }

    fn connect(&mut self, slot: usize, server: usize) {
        self.disconnect(slot);
        let (client, served) = tokio::io::duplex(DUPLEX_BUF);
        self.peers = self.peers.wrapping_add(1);
        let peer = SocketAddr::from((Ipv4Addr::LOCALHOST, self.peers));
        let io: BoxIo = Box::new(served);
        self.serving.push(tokio::spawn(self.fx.servers[server].serve_stream(io, peer)));
        let (read, write) = tokio::io::split(client);
        let (tx, events) = mpsc::unbounded_channel();
        self.conns[slot] = Some(Conn {
            server,
            serial: self.peers,
            writer: Some(write),
            events,
            reader: tokio::spawn(read_frames(read, tx)),
            eof: false,
            desynced: false,
            id0: 0,
            frames: 0,
            client_nonce: None,
            server_nonce: None,
            intent: None,
            sent: None,
            welcomed: false,
            refusal: None,
            algo: HashAlgo::Xxh3,
            chunk: 1024,
            outstanding: HashMap::new(),
            next_id: 0,
            last_id: 0,
        });
    }

    /// Drops the connection: the server sees the end of the stream.
    fn disconnect(&mut self, slot: usize) {
        if let Some(conn) = self.conns[slot].take() {
            conn.reader.abort();
        }
    }

    /// Takes in what the server sent.
    fn absorb(&mut self, slot: usize, event: Event) {
        let Run { fx, conns, sessions, handles, trace, opened, .. } = self;
        let Some(conn) = conns[slot].as_mut() else { return };
        let packet = match event {
            Event::Eof => {
                conn.eof = true;
                if let Some(trace) = trace {
                    trace.push(format!("{slot} closed"));
                }
                return;
            }
            Event::Frame(packet) => packet,
        };
        if let Some(trace) = trace {
            trace.push(format!("{slot} {} {}", packet.id, describe(&packet.msg)));
        }
        if packet.id == 0 {
            conn.id0 += 1;
        }
        match &packet.msg {
            Message::Challenge { version, nonce, token_required } => {
                assert_eq!(packet.id, 0, "a Challenge with an id");
                assert_eq!(*version, PROTOCOL_VERSION);
                assert_eq!(*token_required, conn.server == 0, "token_required of server {}", conn.server);
                assert_eq!(nonce.len(), NONCE_LEN, "nonce of {} bytes", nonce.len());
                assert!(conn.server_nonce.is_none(), "a second Challenge");
                conn.server_nonce = Some(nonce.to_vec());
            }
            Message::Welcome { session, max_payload, proof, secret, .. } => {
                assert_eq!(packet.id, 0, "a Welcome with an id");
                assert_ne!(*session, 0, "session id 0");
                let secret = check_welcome(fx, conn, *session, proof, secret.as_ref().map(|s| &s[..]));
                let algo = match (&conn.sent, conn.intent) {
                    (Some(Sent { wants: Wants::Open(spec), .. }), _) => spec.hash,
                    (None, Some(Intent::Open(algo))) => algo,
                    _ => sessions.iter().find(|k| k.id == *session).map_or(HashAlgo::Xxh3, |k| k.algo),
                };
                conn.welcomed = true;
                opened[conn.server] = true;
                conn.algo = algo;
                conn.chunk = *max_payload;
                match sessions.iter_mut().find(|k| k.id == *session) {
                    Some(known) => known.secret = known.secret.or(secret),
                    None => sessions.push(Known { id: *session, algo, secret }),
                }
            }
            Message::Begun { handle, .. } => handles.push(*handle),
            Message::Error { message, .. } if packet.id == 0 => conn.refusal = Some(message.clone()),
            _ => {}
        }
        if !matches!(packet.msg, Message::Listing { done: false, .. }) {
            if let Some(n) = conn.outstanding.get_mut(&packet.id) {
                *n -= 1;
                if *n == 0 {
                    conn.outstanding.remove(&packet.id);
                }
            }
        }
    }

    /// Takes in what already arrived on `slot`, without waiting.
    fn pump(&mut self, slot: usize) {
        while let Some(Ok(event)) = self.conns[slot].as_mut().map(|c| c.events.try_recv()) {
            self.absorb(slot, event);
        }
    }

    /// Takes in answers until `until` holds, the connection ends, or the
    /// input's time is up.
    async fn wait(&mut self, slot: usize, until: impl Fn(&Conn) -> bool) {
        loop {
            let deadline = self.deadline;
            let Some(conn) = self.conns[slot].as_mut() else { return };
            if conn.eof || conn.desynced || until(conn) {
                return;
            }
            let event = match tokio::time::timeout_at(deadline, conn.events.recv()).await {
                Ok(Some(event)) => event,
                Ok(None) => Event::Eof,
                Err(_) => return,
            };
            self.absorb(slot, event);
        }
    }

    /// Sends `bytes`; false if they could not be sent (whole).
    async fn send(&mut self, slot: usize, bytes: &[u8]) -> bool {
        let deadline = self.deadline;
        let conn = self.conn(slot);
        let Some(writer) = conn.writer.as_mut() else { return false };
        // A failed write: the server has closed (its answers, and the
        // end, are still to be read) or stopped reading until the end of
        // the input.
        if !matches!(tokio::time::timeout_at(deadline, writer.write_all(bytes)).await, Ok(Ok(()))) {
            conn.writer = None;
            return false;
        }
        true
    }

    /// Sends a whole frame; once it is sent, notes what the server makes
    /// of it if it is the connection's first frame (`hello`: the nonce of a
    /// `Hello`) or its second (`intent`: an `Open` or `Join`).
    async fn send_frame(
        &mut self,
        slot: usize,
        bytes: &[u8],
        hello: Option<Vec<u8>>,
        intent: Option<Sent>,
    ) -> bool {
        if !self.send(slot, bytes).await {
            return false;
        }
        let conn = self.conn(slot);
        match conn.frames {
            0 => conn.client_nonce = hello,
            1 => conn.sent = intent,
            _ => {}
        }
        conn.frames += 1;
        true
    }

    /// Sends a handshake frame and waits for the answer, an id-0 frame.
    /// Unless the answer (or the end) came, a session may have opened.
    async fn send_intent(&mut self, slot: usize, bytes: &[u8], intent: Option<Sent>, wait: bool) {
        let before = self.conn(slot).id0;
        if self.send_frame(slot, bytes, None, intent).await && wait {
            self.wait(slot, |c| c.id0 > before).await;
        }
        let conn = self.conn(slot);
        if conn.welcomed || !(conn.id0 > before || conn.eof) {
            self.opened[conn.server] = true;
        }
    }

    /// The proof `proof` for the intent whose bytes are `intent`
    /// (`other`: those of another intent), for a join of a session whose
    /// secret is `join` (`Some(None)`: not known), and whether it is the
    /// proof a correct client sends: made with both nonces of the
    /// connection and, for a join, the session's secret.
    fn proof(
        &self,
        slot: usize,
        proof: Proof,
        intent: &[u8],
        other: &[u8],
        join: Option<Option<Secret>>,
    ) -> (Option<ByteBuf>, bool) {
        let conn = self.conns[slot].as_ref().expect("a connected slot");
        let zeros = vec![0; NONCE_LEN];
        let client = conn.client_nonce.as_ref().unwrap_or(&zeros);
        let server = conn.server_nonce.as_ref().unwrap_or(&zeros);
        let transcript = |intent: &[u8]| Transcript::new(client, server, b"", intent);
        let secret = join.map(|secret| secret.unwrap_or([0; SECRET_LEN]));
        let joining = |key: &Key| secret.map_or_else(|| key.clone(), |secret| key.for_join(&secret));
        let key = self.fx.server_key(conn.server);
        let valid = joining(&key).client_proof(&transcript(intent));
        let proof = match proof {
            Proof::Valid => valid.to_vec(),
            Proof::Missing => return (None, false),
            Proof::Wrong => {
                let mut wrong = valid.to_vec();
                wrong[0] ^= 1;
                wrong
            }
            Proof::Short => valid[..31].to_vec(),
            Proof::OtherToken => joining(&self.fx.other_key).client_proof(&transcript(intent)).to_vec(),
            Proof::NoSecret => key.client_proof(&transcript(intent)).to_vec(),
            Proof::OtherIntent => joining(&key).client_proof(&transcript(other)).to_vec(),
        };
        let right = proof[..] == valid[..]
            && conn.client_nonce.is_some()
            && conn.server_nonce.is_some()
            && join.is_none_or(|secret| secret.is_some());
        (Some(ByteBuf::from(proof)), right)
    }

    fn request_id(&mut self, slot: usize, id: IdSel) -> u32 {
        let conn = self.conn(slot);
        let id = match id {
            IdSel::Next => {
                conn.next_id = conn.next_id.wrapping_add(1).max(1);
                conn.next_id
            }
            IdSel::Zero => 0,
            IdSel::Last => conn.last_id,
            IdSel::Raw(id) => id,
        };
        conn.last_id = id;
        id
    }

    fn handle(&self, handle: HandleSel) -> u64 {
        match handle {
            HandleSel::Known(n) if self.handles.is_empty() => u64::from(n),
            HandleSel::Known(n) => self.handles[usize::from(n) % self.handles.len()],
            HandleSel::Raw(handle) => handle,
        }
    }

    /// The message and payload of a request, with what this input learnt.
    fn resolve(&mut self, slot: usize, req: &Req) -> (Message, Bytes) {
        let conn = self.conn(slot);
        let (algo, chunk) = (conn.algo, conn.chunk);
        let msg = match req {
            Req::Msg(msg) => msg.clone(),
            Req::HashHandle { handle, span } => {
                Message::Hash { target: HashTarget::Handle(self.handle(*handle)), span: *span }
            }
            Req::Read { path, offset, len } => {
                let len = match len {
                    LenSel::Chunk => chunk.min(READ_CAP),
                    LenSel::ChunkPlus1 => chunk.saturating_add(1),
                    LenSel::Value(len) => *len,
                };
                Message::Read { path: path.clone(), offset: *offset, len }
            }
            Req::CopyOld { handle, ranges } => {
                Message::CopyOld { handle: self.handle(*handle), ranges: ranges.clone() }
            }
            Req::Write { handle, offset, data, digest } => {
                let payload = data.bytes();
                let offset = match offset {
                    OffSel::Chunk(k) => u64::from(*k) * u64::from(chunk),
                    OffSel::Value(offset) => *offset,
                };
                let msg = Message::Write {
                    handle: self.handle(*handle),
                    offset,
                    digest: digest.digest(algo, &payload),
                };
                return (msg, payload);
            }
            Req::Finish { handle, meta } => Message::Finish { handle: self.handle(*handle), meta: *meta },
            Req::Discard { handle, remove } => {
                Message::Discard { handle: self.handle(*handle), remove: *remove }
            }
            Req::PutFile { path, meta, data, digest } => {
                let payload = data.bytes();
                let msg = Message::PutFile {
                    path: path.clone(),
                    meta: *meta,
                    digest: digest.digest(algo, &payload),
                };
                return (msg, payload);
            }
            Req::Stray(data) => return (Message::Ping, data.bytes()),
        };
        (msg, Bytes::new())
    }

    /// The frame of `msg`, and for an `Open` the intent it makes if the
    /// codec takes its path after all (one given in full).
    fn bad_frame(&mut self, slot: usize, id: u32, msg: &BadMsg) -> (Vec<u8>, Option<Sent>) {
        let path = |p: &[u8]| ByteBuf::from(p.to_vec());
        let mut intent = None;
        let raw = match msg {
            BadMsg::Open { proof, upload, path: p } => {
                let direction = if *upload { Direction::Upload } else { Direction::Download };
                let spec = |direction| RawSpec {
                    direction,
                    path: path(p),
                    chunk_size: 1024,
                    hash: HashAlgo::Xxh3,
                    includes: Vec::new(),
                    excludes: Vec::new(),
                    inplace: false,
                    delete: false,
                };
                let open = |spec: &RawSpec| [&b"open"[..], &rmp_serde::to_vec(spec).unwrap()].concat();
                let (proof, valid) =
                    self.proof(slot, *proof, &open(&spec(direction)), &open(&spec(flip(direction))), None);
                intent = RelPath::new(p.clone()).ok().map(|path| Sent {
                    wants: Wants::Open(SessionSpec {
                        direction,
                        path,
                        chunk_size: 1024,
                        hash: HashAlgo::Xxh3,
                        includes: Vec::new(),
                        excludes: Vec::new(),
                        inplace: false,
                        delete: false,
                    }),
                    secret: None,
                    valid,
                });
                RawMsg::Open { proof, spec: spec(direction) }
            }
            BadMsg::Probe(paths) => RawMsg::Probe { paths: paths.iter().map(|p| path(p)).collect() },
            BadMsg::Hash(p) => RawMsg::Hash {
                target: RawTarget::Path(path(p)),
                span: Span { size: 3000, first: 0, count: 3, group: 1 },
            },
            BadMsg::Read(p) => RawMsg::Read { path: path(p), offset: 0, len: 1024 },
            BadMsg::Begin(p) => RawMsg::Begin { path: path(p), size: 100 },
            BadMsg::PutFile(p) => {
                RawMsg::PutFile { path: path(p), meta: meta(), digest: ByteBuf::from(vec![0; 8]) }
            }
            BadMsg::MakeDir(p) => RawMsg::Apply { actions: vec![RawAction::MakeDir { path: path(p) }] },
            BadMsg::Symlink(p) => RawMsg::Apply {
                actions: vec![RawAction::Symlink {
                    path: path(p),
                    target: path(b"file.txt"),
                    mtime: meta().mtime,
                }],
            },
        };
        (raw_frame(id, &raw), intent)
    }

    async fn step(&mut self, step: &Step) {
        let slot = usize::from(step.slot);
        if let Op::Connect { server } = step.op {
            self.connect(slot, usize::from(server));
            return;
        }
        if self.conns[slot].is_none() {
            self.connect(slot, slot % SERVERS);
        }
        self.pump(slot);
        let server = self.conn(slot).server;
        match &step.op {
            Op::Open { spec, .. } if spec.direction == Direction::Upload => self.dirty[server] = true,
            // A path given in full may be one the codec takes.
            Op::BadPath { msg: BadMsg::Open { upload: true, .. }, .. } => self.dirty[server] = true,
            // Anything may come of these bytes.
            Op::Raw { .. } | Op::Mutate { .. } | Op::Truncate { .. } => {
                self.dirty[server] = true;
                self.opened[server] = true;
            }
            _ => {}
        }
        let before = self.conn(slot).id0;
        match &step.op {
            Op::Connect { .. } => unreachable!(),
            Op::Hello { version, nonce_len } => {
                let nonce = client_nonce(self.conn(slot).serial, *nonce_len);
                let hello = Message::Hello { version: *version, nonce: ByteBuf::from(nonce.clone()) };
                let sent = self.send_frame(slot, &frame(0, hello, Bytes::new()), Some(nonce), None).await;
                if sent && step.wait {
                    self.wait(slot, |c| c.id0 > before).await;
                }
            }
            Op::Open { proof, spec } => {
                let conn = self.conn(slot);
                conn.intent.get_or_insert(Intent::Open(spec.hash));
                let wants = Wants::Open(spec.clone());
                let other = Wants::Open(SessionSpec { direction: flip(spec.direction), ..spec.clone() });
                let (proof, valid) = self.proof(
                    slot,
                    *proof,
                    &intent_bytes(&wants).unwrap(),
                    &intent_bytes(&other).unwrap(),
                    None,
                );
                let bytes = frame(0, Message::Open { proof, spec: spec.clone() }, Bytes::new());
                self.send_intent(slot, &bytes, Some(Sent { wants, secret: None, valid }), step.wait).await;
            }
            Op::Join { proof, session } => {
                let known = |id: u64| self.sessions.iter().find(|k| k.id == id).and_then(|k| k.secret);
                let (session, secret) = match *session {
                    SessionRef::Known(n) if self.sessions.is_empty() => (u64::from(n), None),
                    SessionRef::Known(n) => {
                        let known = &self.sessions[usize::from(n) % self.sessions.len()];
                        (known.id, known.secret)
                    }
                    SessionRef::Raw(id) => (id, known(id)),
                };
                self.conn(slot).intent.get_or_insert(Intent::Join);
                let (proof, valid) = self.proof(
                    slot,
                    *proof,
                    &intent_bytes(&Wants::Join(session)).unwrap(),
                    &intent_bytes(&Wants::Join(session.wrapping_add(1))).unwrap(),
                    Some(secret),
                );
                let bytes = frame(0, Message::Join { session, proof }, Bytes::new());
                let sent = Sent { wants: Wants::Join(session), secret, valid };
                self.send_intent(slot, &bytes, Some(sent), step.wait).await;
            }
            Op::Request { id, req } => {
                let id = self.request_id(slot, *id);
                let (msg, payload) = self.resolve(slot, req);
                let (hello, intent) = noted(&msg);
                // Before the Welcome, the server answers with id 0 (or
                // waits for more of the handshake).
                *self.conn(slot).outstanding.entry(id).or_default() += 1;
                if self.send_frame(slot, &frame(id, msg, payload), hello, intent).await && step.wait {
                    self.wait(slot, |c| !c.outstanding.contains_key(&id) || c.id0 > before).await;
                }
            }
            Op::Raw { bytes } => {
                self.send(slot, bytes).await;
                self.conn(slot).desynced = true;
            }
            Op::Mutate { id, req, at, xor } => {
                let id = self.request_id(slot, *id);
                let (msg, payload) = self.resolve(slot, req);
                let (hello, intent) = noted(&msg);
                let mut bytes = frame(id, msg, payload);
                let at = usize::from(*at) % bytes.len();
                bytes[at] ^= *xor;
                if *xor == 0 {
                    self.send_frame(slot, &bytes, hello, intent).await;
                } else {
                    self.send(slot, &bytes).await;
                    self.conn(slot).desynced = true;
                }
            }
            Op::Truncate { id, req, keep } => {
                let id = self.request_id(slot, *id);
                let (msg, payload) = self.resolve(slot, req);
                let bytes = frame(id, msg, payload);
                self.send(slot, &bytes[..usize::from(*keep) % bytes.len()]).await;
                self.conn(slot).desynced = true;
            }
            Op::BadPath { id, msg } => {
                let id = self.request_id(slot, *id);
                let (bytes, intent) = self.bad_frame(slot, id, msg);
                if let BadMsg::Open { .. } = msg {
                    self.conn(slot).intent.get_or_insert(Intent::Open(HashAlgo::Xxh3));
                    self.send_intent(slot, &bytes, intent, step.wait).await;
                } else {
                    // The header does not decode: an error with id 0 and the
                    // end (a path given in full may be a valid one: then an
                    // answer to the request).
                    *self.conn(slot).outstanding.entry(id).or_default() += 1;
                    if self.send_frame(slot, &bytes, None, None).await && step.wait {
                        self.wait(slot, |c| !c.outstanding.contains_key(&id) || c.id0 > before).await;
                    }
                }
            }
            Op::ShutdownWrite => {
                let deadline = self.deadline;
                if let Some(mut writer) = self.conn(slot).writer.take() {
                    let _ = tokio::time::timeout_at(deadline, writer.shutdown()).await;
                }
            }
            Op::Drop => self.disconnect(slot),
            Op::Sync => self.wait(slot, |c| c.outstanding.is_empty()).await,
        }
    }

    /// Waits until every server connection has ended.
    async fn await_servers(&mut self) {
        for serving in std::mem::take(&mut self.serving) {
            if tokio::time::timeout(GRACE, serving).await.is_err() {
                panic!("hang: a server connection still runs {GRACE:?} after its client went away");
            }
        }
    }

    /// Drops every connection and checks the servers: no hang, no session
    /// left, nothing changed outside the roots. Then resets the roots.
    async fn finish(mut self) {
        for slot in 0..SLOTS {
            self.disconnect(slot);
        }
        self.await_servers().await;
        for server in 0..SERVERS {
            if self.opened[server] {
                self.check_no_session_left(server).await;
            }
        }
        if self.dirty.iter().any(|&d| d) {
            let now = snapshot(&self.fx.base);
            if now != self.fx.pristine {
                let changed: Vec<_> = now.iter().filter(|e| !self.fx.pristine.contains(e)).collect();
                let gone: Vec<_> = self.fx.pristine.iter().filter(|e| !now.contains(e)).collect();
                panic!(
                    "escape: the server changed something outside its root: new {changed:#?}, gone {gone:#?}"
                );
            }
            for (root, _) in self.fx.roots.iter().zip(self.dirty).filter(|(_, dirty)| *dirty) {
                self.fx.reset(root);
            }
        }
    }

    /// The server must accept `MAX_SESSIONS` sessions at once, the first
    /// one an upload into the whole root: the input left no session open,
    /// and no upload's claim on a tree.
    ///
    /// A claim lasts until the session's last request is done, and requests
    /// may still run when their connection has ended (a `Walk` waiting for
    /// its next batch, a write in the blocking pool): a refusal is retried
    /// for up to `GRACE`. Once the upload is accepted, no request of the
    /// input writes any more, so the roots can be reset.
    async fn check_no_session_left(&mut self, server: usize) {
        const _: () = assert!(SLOTS >= MAX_SESSIONS);
        let start = Instant::now();
        let mut spec = SessionSpec {
            direction: Direction::Upload,
            path: RelPath::root(),
            chunk_size: 1024,
            hash: HashAlgo::Xxh3,
            includes: Vec::new(),
            excludes: Vec::new(),
            inplace: false,
            delete: false,
        };
        let mut slot = 0;
        while slot < MAX_SESSIONS {
            self.deadline = Instant::now() + GRACE;
            self.connect(slot, server);
            let nonce = client_nonce(self.conn(slot).serial, NONCE_LEN as u8);
            let hello = Message::Hello { version: PROTOCOL_VERSION, nonce: ByteBuf::from(nonce.clone()) };
            self.send_frame(slot, &frame(0, hello, Bytes::new()), Some(nonce), None).await;
            self.wait(slot, |c| c.id0 > 0).await;
            let wants = Wants::Open(spec.clone());
            let intent = intent_bytes(&wants).unwrap();
            let (proof, valid) = self.proof(slot, Proof::Valid, &intent, &intent, None);
            let open = frame(0, Message::Open { proof, spec: spec.clone() }, Bytes::new());
            self.send_frame(slot, &open, None, Some(Sent { wants, secret: None, valid })).await;
            self.wait(slot, |c| c.id0 > 1).await;
            let conn = self.conn(slot);
            if conn.welcomed {
                slot += 1;
                spec.direction = Direction::Download;
                continue;
            }
            assert!(
                start.elapsed() < GRACE,
                "leak: {GRACE:?} after the input, server {server} still refuses session {} of {MAX_SESSIONS} \
                 ({:?}): {:?}",
                slot + 1,
                spec.direction,
                conn.refusal
            );
            self.disconnect(slot);
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        for slot in 0..MAX_SESSIONS {
            self.disconnect(slot);
        }
        self.await_servers().await;
    }
}

// ---------------------------------------------------------------------------
// Seed corpus
// ---------------------------------------------------------------------------

fn step(slot: u8, op: Op) -> Step {
    Step { slot, wait: true, op }
}

fn req(slot: u8, req: Req) -> Step {
    step(slot, Op::Request { id: IdSel::Next, req })
}

fn msg(slot: u8, msg: Message) -> Step {
    req(slot, Req::Msg(msg))
}

fn hello(slot: u8) -> Step {
    step(slot, Op::Hello { version: PROTOCOL_VERSION, nonce_len: NONCE_LEN as u8 })
}

fn join(slot: u8, proof: Proof, session: SessionRef) -> Step {
    step(slot, Op::Join { proof, session })
}

fn open(slot: u8, proof: Proof, spec: SessionSpec) -> Step {
    step(slot, Op::Open { proof, spec })
}

fn rel(path: &str) -> RelPath {
    RelPath::new(path).unwrap()
}

fn spec(direction: Direction, path: &str, chunk_size: u32, hash: HashAlgo) -> SessionSpec {
    SessionSpec {
        direction,
        path: rel(path),
        chunk_size,
        hash,
        includes: Vec::new(),
        excludes: Vec::new(),
        inplace: false,
        delete: false,
    }
}

fn span(size: u64, first: u64, count: u32, group: u32) -> Span {
    Span { size, first, count, group }
}

fn write(handle: u8, chunk: u8, data: Data, digest: DigestSel) -> Req {
    Req::Write { handle: HandleSel::Known(handle), offset: OffSel::Chunk(chunk), data, digest }
}

/// The seeds: a name, the steps, and what must be received, in order (each
/// a part of one line of the trace).
fn seeds() -> Vec<(&'static str, Vec<Step>, Vec<&'static str>)> {
    use Direction::{Download, Upload};
    use HashAlgo::{Adler32, Crc32, Xxh128, Xxh3};
    vec![
        (
            "upload-token",
            vec![
                hello(0),
                open(0, Proof::Valid, spec(Upload, "", 1024, Xxh3)),
                msg(0, Message::Probe { paths: vec![rel("up/a.bin"), rel("file.txt"), rel("escape")] }),
                msg(0, Message::Begin { path: rel("up/a.bin"), size: 3000 }),
                req(0, write(0, 0, Data::Fill(7, 1024), DigestSel::Right)),
                req(0, write(0, 1, Data::Fill(8, 1024), DigestSel::Right)),
                req(0, write(0, 2, Data::Fill(9, 952), DigestSel::Right)),
                req(0, write(0, 0, Data::Bytes(b"x".to_vec()), DigestSel::Wrong)),
                req(0, write(0, 3, Data::Bytes(b"x".to_vec()), DigestSel::Right)),
                req(0, Req::HashHandle { handle: HandleSel::Known(0), span: span(3000, 0, 3, 1) }),
                req(0, Req::Finish { handle: HandleSel::Known(0), meta: meta() }),
                msg(
                    0,
                    Message::Hash { target: HashTarget::Path(rel("up/a.bin")), span: span(3000, 0, 3, 2) },
                ),
                req(
                    0,
                    Req::PutFile {
                        path: rel("up/b/c.txt"),
                        meta: meta(),
                        data: Data::Bytes(b"hello".to_vec()),
                        digest: DigestSel::Right,
                    },
                ),
                msg(
                    0,
                    Message::Apply {
                        actions: vec![
                            Action::MakeDir { path: rel("new/x/y.txt") },
                            Action::Symlink {
                                path: rel("up/b"),
                                target: ByteBuf::from(b"../outside".to_vec()),
                                mtime: meta().mtime,
                            },
                            Action::SetMeta { path: rel("up/a.bin"), kind: Kind::File, meta: meta() },
                        ],
                    },
                ),
                msg(0, Message::Walk),
                msg(0, Message::Ping),
                msg(0, Message::Close),
            ],
            vec![
                "0 0 Challenge",
                "0 0 Welcome",
                "0 1 Probed(2 of 3 found)",
                "0 2 Begun(1, partial=false)",
                "0 3 Done",
                "0 4 Done",
                "0 5 Done",
                "0 6 Error(DigestMismatch",
                "0 7 Error(Protocol",
                "0 8 Hashes(0 bytes)",
                "0 9 Done",
                "0 10 Hashes(16 bytes)",
                "0 11 Done",
                "0 12 Applied(0 failures)",
                "0 13 Listing(",
                "0 13 Listing(0 entries, 0 problems, done=true)",
                "0 14 Pong",
                "0 15 Done",
            ],
        ),
        (
            "download-open",
            vec![
                hello(1),
                open(1, Proof::Missing, spec(Download, "", 1024, Crc32)),
                msg(1, Message::Walk),
                msg(
                    1,
                    Message::Hash { target: HashTarget::Path(rel("file.txt")), span: span(3000, 0, 3, 1) },
                ),
                msg(
                    1,
                    Message::Hash {
                        target: HashTarget::Path(rel("dir/sub/deep.txt")),
                        span: span(5000, 1, 4, 2),
                    },
                ),
                req(1, Req::Read { path: rel("file.txt"), offset: 0, len: LenSel::Chunk }),
                req(1, Req::Read { path: rel("file.txt"), offset: 2048, len: LenSel::Value(1000) }),
                req(1, Req::Read { path: rel("escape/secret.txt"), offset: 0, len: LenSel::Chunk }),
                req(1, Req::Read { path: rel("link-file"), offset: 0, len: LenSel::Chunk }),
                req(1, Req::Read { path: rel("file.txt"), offset: 0, len: LenSel::ChunkPlus1 }),
                msg(1, Message::Begin { path: rel("file.txt"), size: 10 }),
                req(1, Req::HashHandle { handle: HandleSel::Known(1), span: span(3000, 0, 3, 1) }),
                msg(1, Message::Close),
            ],
            vec![
                "1 0 Challenge",
                "1 0 Welcome",
                // The first Listing carries the root's metadata.
                "problems, done=false, root)",
                "1 1 Listing(0 entries, 0 problems, done=true)",
                "1 2 Hashes(12 bytes)",
                "1 3 Hashes(8 bytes)",
                "1 4 Data",
                "1 5 Data",
                "1 6 Error(Denied",
                "1 7 Error(Denied",
                "1 8 Error(Protocol",
                "1 9 Error(Denied",
                "1 10 Error(Denied",
                "1 11 Done",
            ],
        ),
        (
            "join",
            vec![
                hello(1),
                open(1, Proof::Missing, spec(Upload, "up", 4096, Xxh128)),
                hello(3),
                join(3, Proof::Valid, SessionRef::Known(0)),
                req(
                    3,
                    Req::PutFile {
                        path: rel("file.txt"),
                        meta: meta(),
                        data: Data::Fill(1, 4096),
                        digest: DigestSel::Right,
                    },
                ),
                msg(1, Message::Probe { paths: vec![rel("file.txt")] }),
                msg(1, Message::Begin { path: rel("new/x/y.txt"), size: 5000 }),
                req(3, write(0, 1, Data::Fill(2, 904), DigestSel::Right)),
                req(1, Req::CopyOld { handle: HandleSel::Known(0), ranges: vec![(0, 1024)] }),
                req(3, Req::Discard { handle: HandleSel::Known(0), remove: false }),
                msg(3, Message::Close),
                msg(1, Message::Ping),
            ],
            vec![
                "1 0 Welcome",
                "3 0 Welcome",
                "3 1 Done",
                "1 1 Probed(1 of 1 found)",
                "1 2 Begun(1, partial=false)",
                "3 2 Done",
                "1 3 Error(Protocol",
                "3 3 Done",
                "3 4 Done",
                "1 closed",
            ],
        ),
        (
            "auth",
            vec![
                hello(0),
                open(0, Proof::Missing, spec(Download, "", 1024, Xxh3)),
                hello(2),
                open(2, Proof::Wrong, spec(Download, "", 1024, Xxh3)),
                hello(4),
                open(4, Proof::OtherIntent, spec(Download, "", 1024, Xxh3)),
                hello(6),
                open(6, Proof::OtherToken, spec(Download, "", 1024, Xxh3)),
                step(6, Op::Connect { server: 0 }),
                hello(6),
                open(6, Proof::Valid, spec(Download, "", 1024, Xxh3)),
                step(0, Op::Connect { server: 0 }),
                hello(0),
                join(0, Proof::OtherToken, SessionRef::Known(0)),
                step(2, Op::Connect { server: 0 }),
                hello(2),
                join(2, Proof::NoSecret, SessionRef::Known(0)),
                step(4, Op::Connect { server: 0 }),
                hello(4),
                join(4, Proof::Short, SessionRef::Known(0)),
                step(0, Op::Connect { server: 0 }),
                hello(0),
                join(0, Proof::Missing, SessionRef::Known(0)),
                step(2, Op::Connect { server: 0 }),
                hello(2),
                join(2, Proof::OtherIntent, SessionRef::Known(0)),
                step(4, Op::Connect { server: 0 }),
                hello(4),
                join(4, Proof::Valid, SessionRef::Raw(5)),
                step(4, Op::Connect { server: 0 }),
                hello(4),
                join(4, Proof::Valid, SessionRef::Known(0)),
                msg(4, Message::Ping),
                msg(6, Message::Ping),
            ],
            vec![
                "0 0 Challenge",
                "0 0 Error(Auth: a token is required",
                "2 0 Error(Auth: wrong token",
                "4 0 Error(Auth: wrong token",
                "6 0 Error(Auth: wrong token",
                "6 0 Welcome",
                "0 0 Error(Auth: wrong token, or not the client that opened this session",
                "2 0 Error(Auth: wrong token, or not the client",
                "4 0 Error(Auth: wrong token, or not the client",
                "0 0 Error(Auth: a token is required",
                "2 0 Error(Auth: wrong token, or not the client",
                "4 0 Error(NoSession",
                "4 0 Welcome",
                "4 1 Pong",
                "6 1 Pong",
            ],
        ),
        (
            "join-auth",
            vec![
                // The tokenless server opens on any proof, but a join must
                // prove the session's secret.
                hello(1),
                open(1, Proof::Wrong, spec(Download, "dir", 1024, Xxh3)),
                hello(3),
                join(3, Proof::Missing, SessionRef::Known(0)),
                hello(5),
                join(5, Proof::NoSecret, SessionRef::Known(0)),
                hello(7),
                join(7, Proof::OtherToken, SessionRef::Known(0)),
                step(3, Op::Connect { server: 1 }),
                hello(3),
                join(3, Proof::Valid, SessionRef::Known(0)),
                msg(3, Message::Probe { paths: vec![rel("note.txt")] }),
                msg(3, Message::Hash { target: HashTarget::Path(rel("note.txt")), span: span(5, 0, 1, 1) }),
                // A join on the other server, with a secret it does not know.
                step(0, Op::Connect { server: 0 }),
                hello(0),
                join(0, Proof::Valid, SessionRef::Known(0)),
            ],
            vec![
                "1 0 Welcome",
                "3 0 Error(Auth",
                "5 0 Error(Auth: wrong token, or not the client",
                "7 0 Error(Auth: wrong token, or not the client",
                "3 0 Welcome",
                "3 1 Error(Denied",
                "3 2 Hashes(8 bytes)",
                "0 0 Error(NoSession",
            ],
        ),
        (
            "hello",
            vec![
                step(0, Op::Hello { version: PROTOCOL_VERSION - 1, nonce_len: 32 }),
                step(1, Op::Hello { version: PROTOCOL_VERSION, nonce_len: 31 }),
                step(2, Op::Hello { version: PROTOCOL_VERSION, nonce_len: 0 }),
                step(3, Op::Hello { version: PROTOCOL_VERSION, nonce_len: 33 }),
                step(4, Op::Hello { version: PROTOCOL_VERSION, nonce_len: 200 }),
                step(5, Op::Hello { version: u32::MAX, nonce_len: 32 }),
                step(6, Op::Hello { version: PROTOCOL_VERSION + 1, nonce_len: 0 }),
                hello(7),
                msg(7, non_requests()[0].clone()),
                // A Hello sent as a request is the connection's Hello.
                step(0, Op::Connect { server: 0 }),
                msg(0, non_requests()[0].clone()),
                open(0, Proof::Valid, spec(Download, "dir/sub", 1024, Xxh3)),
                msg(0, Message::Walk),
            ],
            vec![
                "0 0 Error(Version: client speaks protocol version 1",
                "1 0 Error(Protocol: protocol error: a nonce of 31 bytes in Hello, not 32",
                "2 0 Error(Protocol: protocol error: a nonce of 0 bytes",
                "3 0 Error(Protocol: protocol error: a nonce of 33 bytes",
                "4 0 Error(Protocol: protocol error: a nonce of 200 bytes",
                "5 0 Error(Version",
                "6 0 Error(Version",
                "7 0 Challenge",
                "7 0 Error(Protocol: protocol error: expected Open or Join, got Hello",
                "0 0 Challenge",
                "0 0 Welcome",
                "0 2 Listing(1 entries, 0 problems, done=false, root)",
                "0 2 Listing(0 entries, 0 problems, done=true)",
            ],
        ),
        (
            "garbage",
            vec![
                step(0, Op::Raw { bytes: b"GET / HTTP/1.1\r\n\r\n".to_vec() }),
                step(1, Op::Truncate { id: IdSel::Zero, req: Req::Msg(non_requests()[0].clone()), keep: 10 }),
                msg(2, Message::Ping),
                hello(3),
                req(3, Req::Stray(Data::Bytes(b"payload".to_vec()))),
                hello(5),
                step(5, Op::Mutate { id: IdSel::Zero, req: Req::Msg(Message::Ping), at: 9, xor: 0x40 }),
                hello(7),
                step(7, Op::ShutdownWrite),
                step(7, Op::Sync),
            ],
            vec!["2 0 Error(Protocol: protocol error: expected Hello, got Ping", "3 0 Error(Protocol"],
        ),
        (
            "bad-paths",
            vec![
                hello(1),
                step(
                    1,
                    Op::BadPath {
                        id: IdSel::Zero,
                        msg: BadMsg::Open {
                            proof: Proof::Missing,
                            upload: true,
                            path: b"../outside".to_vec(),
                        },
                    },
                ),
                hello(3),
                open(3, Proof::Missing, spec(Upload, "", 1024, Xxh3)),
                step(3, Op::BadPath { id: IdSel::Next, msg: BadMsg::MakeDir(b"escape/../..".to_vec()) }),
                hello(5),
                open(5, Proof::Missing, spec(Download, "", 1024, Xxh3)),
                step(5, Op::BadPath { id: IdSel::Next, msg: BadMsg::Read(b"/etc/passwd".to_vec()) }),
            ],
            vec![
                "1 0 Error(Protocol",
                "3 0 Welcome",
                "3 0 Error(Protocol",
                "5 0 Welcome",
                "5 0 Error(Protocol",
            ],
        ),
        (
            "refusals",
            vec![
                hello(1),
                open(1, Proof::Missing, spec(Upload, "", 1023, Xxh3)),
                hello(3),
                open(
                    3,
                    Proof::Missing,
                    SessionSpec { includes: vec!["[".into()], ..spec(Download, "", 1024, Xxh3) },
                ),
                hello(5),
                open(5, Proof::Missing, spec(Download, "missing/file", 1024, Xxh3)),
                hello(7),
                open(7, Proof::Missing, spec(Download, "escape", 1024, Xxh3)),
                step(1, Op::Connect { server: 1 }),
                hello(1),
                open(1, Proof::Missing, spec(Upload, "abs", 1024, Xxh3)),
                step(3, Op::Connect { server: 1 }),
                hello(3),
                open(3, Proof::Missing, spec(Upload, "file.txt", 1024, Xxh3)),
            ],
            vec![
                "1 0 Error(Limit: chunk size 1023",
                "3 0 Error(Denied: bad glob",
                "5 0 Error(NotFound",
                "7 0 Error(Denied",
                "1 0 Error(Denied",
                "3 0 Error(NotFound",
            ],
        ),
        (
            "limits",
            vec![
                hello(1),
                open(1, Proof::Missing, spec(Upload, "dir", 1024, Adler32)),
                hello(3),
                open(3, Proof::Missing, spec(Upload, "dir/sub", 1024, Xxh3)),
                hello(5),
                open(5, Proof::Missing, spec(Download, "dir", 1024, Xxh3)),
                hello(7),
                open(7, Proof::Missing, spec(Download, "", 65536, Xxh3)),
                step(3, Op::Connect { server: 1 }),
                hello(3),
                open(3, Proof::Missing, spec(Download, "link-dir", 1024, Xxh3)),
                step(0, Op::Connect { server: 1 }),
                hello(0),
                open(0, Proof::Missing, spec(Download, "", 1024, Xxh3)),
                step(7, Op::Drop),
                step(0, Op::Connect { server: 1 }),
                hello(0),
                join(0, Proof::Valid, SessionRef::Known(0)),
                step(2, Op::Connect { server: 1 }),
                hello(2),
                join(2, Proof::Valid, SessionRef::Known(0)),
                step(4, Op::Connect { server: 1 }),
                hello(4),
                join(4, Proof::Valid, SessionRef::Known(0)),
                step(6, Op::Connect { server: 1 }),
                hello(6),
                join(6, Proof::Valid, SessionRef::Known(0)),
            ],
            vec![
                "1 0 Welcome",
                "3 0 Error(Busy",
                "5 0 Welcome",
                "7 0 Welcome",
                "3 0 Welcome",
                "0 0 Error(Limit: the server has its maximum of 4 sessions",
                "0 0 Welcome",
                "2 0 Welcome",
                "4 0 Welcome",
                "6 0 Error(Limit: session already has the maximum of 4 connections",
            ],
        ),
        (
            "inplace-partial",
            vec![
                hello(0),
                open(0, Proof::Valid, SessionSpec { inplace: true, ..spec(Upload, "dir", 1024, Crc32) }),
                msg(0, Message::Begin { path: rel("note.txt"), size: 2000 }),
                req(0, Req::CopyOld { handle: HandleSel::Known(0), ranges: vec![(0, 1)] }),
                req(0, write(0, 0, Data::Fill(3, 1024), DigestSel::Right)),
                req(0, write(0, 0, Data::Fill(3, 1024), DigestSel::Short)),
                req(0, Req::Discard { handle: HandleSel::Known(0), remove: true }),
                req(0, Req::Finish { handle: HandleSel::Known(0), meta: meta() }),
                msg(0, Message::Close),
                hello(2),
                open(2, Proof::Valid, spec(Upload, "dir", 1024, Xxh3)),
                msg(2, Message::Begin { path: rel("note.txt"), size: 10 }),
                req(2, Req::HashHandle { handle: HandleSel::Known(1), span: span(10, 0, 1, 1) }),
                req(2, Req::Finish { handle: HandleSel::Known(1), meta: meta() }),
                msg(2, Message::Probe { paths: vec![rel("note.txt"), rel("new"), rel("new/x")] }),
            ],
            vec![
                "0 0 Welcome",
                "0 1 Begun(1, partial=false)",
                "0 2 Error(Protocol",
                "0 3 Done",
                "0 4 Error(Protocol",
                "0 5 Done",
                "0 6 Error(Protocol: no file is being built",
                "0 7 Done",
                "2 0 Welcome",
                "2 1 Begun(1, partial=true)",
                "2 2 Hashes(8 bytes)",
                "2 3 Done",
                "2 4 Probed(1 of 3 found)",
            ],
        ),
        (
            "pipeline",
            vec![
                hello(1),
                open(1, Proof::Missing, spec(Upload, "new", 1024, Xxh3)),
                Step { wait: false, ..msg(1, Message::Begin { path: rel("a.bin"), size: 2048 }) },
                step(1, Op::Sync),
                Step { wait: false, ..req(1, write(0, 0, Data::Fill(5, 1024), DigestSel::Right)) },
                Step { wait: false, ..req(1, write(0, 1, Data::Fill(6, 1024), DigestSel::Right)) },
                Step { wait: false, ..msg(1, Message::Walk) },
                Step { wait: false, ..req(1, Req::Finish { handle: HandleSel::Known(0), meta: meta() }) },
                Step { wait: false, ..msg(1, Message::Ping) },
                step(1, Op::Sync),
                step(1, Op::Request { id: IdSel::Last, req: Req::Msg(Message::Ping) }),
                step(1, Op::Request { id: IdSel::Zero, req: Req::Msg(Message::Walk) }),
                step(1, Op::Request { id: IdSel::Raw(u32::MAX), req: Req::Msg(Message::Close) }),
            ],
            vec!["1 0 Welcome", "1 1 Begun", "1 6 Pong", "1 0 Listing", "1 4294967295 Done"],
        ),
        (
            "not-requests",
            vec![
                hello(1),
                open(1, Proof::Missing, spec(Download, "dir", 1024, Xxh3)),
                msg(1, non_requests()[0].clone()),
                msg(1, non_requests()[3].clone()),
                msg(1, non_requests()[12].clone()),
                msg(1, Message::Probe { paths: vec![rel("note.txt")] }),
                req(1, Req::Stray(Data::Fill(0, 1025))),
                msg(1, Message::Ping),
            ],
            vec![
                "1 0 Welcome",
                "1 1 Error(Protocol: Hello is not a request",
                "1 2 Error(Protocol: Welcome is not a request",
                "1 3 Error(Protocol: Error is not a request",
                "1 4 Error(Denied",
                "1 0 Error(Protocol: frame payload of 1025 bytes",
                "1 closed",
            ],
        ),
    ]
}

/// Writes the seeds into `dir` after checking each one.
fn write_seeds(fx: &'static Fixture, dir: &Path) {
    fs::create_dir_all(dir).unwrap();
    for old in fs::read_dir(dir).unwrap() {
        let old = old.unwrap().path();
        if old.file_name().unwrap().to_string_lossy().starts_with("seed-") {
            fs::remove_file(old).unwrap();
        }
    }
    for (name, steps, expected) in seeds() {
        let bytes = encode(&steps);
        assert_eq!(decode(&bytes), steps, "seed {name} does not decode to its steps");
        let got = fx.rt.block_on(run(fx, &steps, true));
        let mut at = 0;
        for want in &expected {
            match got[at..].iter().position(|line| line.contains(want)) {
                Some(i) => at += i + 1,
                None => {
                    panic!("seed {name}: {want:?} not received (after line {at}) in:\n  {}", got.join("\n  "))
                }
            }
        }
        fs::write(dir.join(format!("seed-{name}")), &bytes).unwrap();
        eprintln!("seed-{name}: {} steps, {} bytes, {} frames received", steps.len(), bytes.len(), got.len());
    }
}
