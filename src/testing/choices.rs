//! The values the fuzzer draws operands from: tables of the interesting
//! ones (the fixture's paths, chunk sizes at and past the limits, bad
//! globs, ...) by one selector byte, now and then any value at all; the
//! draws of the plain operands of [`ops`](super::ops) (those its derived
//! `Arbitrary` names, and those the requests are made of). On input that
//! has run out, every draw gives the first, most common choice.

use arbitrary::{Arbitrary, Result, Unstructured};

use super::ops::SLOTS;
use crate::codec::{Direction, HashAlgo, Kind, Meta, Mtime, RelPath, SessionSpec, Span, PROTOCOL_VERSION};

/// Largest payload drawn: over the limit of the small chunk sizes, far
/// below the 64 MiB cap.
pub const MAX_FILL: u32 = (256 << 10) + 1;
/// Largest `Read` of [`LenSel::Chunk`](super::ops::LenSel::Chunk).
pub const READ_CAP: u32 = 1 << 20;
/// File sizes a `Begin` asks for, besides those of [`SIZES`]: at most
/// this (bigger sparse files would make hashing them slow).
pub(super) const SIZE_MASK: u64 = (1 << 20) - 1;
/// Lengths of a `Read` given in full: at most this.
pub(super) const LEN_MASK: u32 = (2 << 20) - 1;

const V: u32 = PROTOCOL_VERSION;
/// Protocol versions of `Hello`.
pub const VERSIONS: &[u32] = &[V, V, V, V, V, V, V, 0, V - 1, V + 1, u32::MAX];
/// Lengths of the client nonce of `Hello`: mostly the right one.
pub const NONCE_LENS: &[u8] = &[32, 32, 32, 32, 32, 0, 31, 33];
/// Chunk sizes of a session spec, valid (1 KiB to 64 MiB) or not.
pub const CHUNKS: &[u32] =
    &[1024, 1024, 1024, 1024, 4096, 4096, 65536, 1 << 20, 1023, 0, 64 << 20, (64 << 20) + 1, u32::MAX];
/// Include and exclude globs, some of them invalid.
pub const GLOBS: &[&str] = &[
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
/// Valid paths: the fixture's entries, ways through its symlinks, new
/// ones, and the temporary files of `dir/note.txt` and `file.txt` (a test
/// checks they are the library's names).
pub const PATHS: &[&[u8]] = &[
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
    b"dir/.pareco-0b7db6e39c7add2d1adb46f2f3ffc203.tmp",
    b".pareco-334786b6e9f5ba82ec18e5f50f5d9b13.tmp",
    b"file.txt/child",
    b"missing/file",
    b"..a",
    b"with space",
    b"\xff\xfe",
];
/// Paths the codec refuses.
pub const BAD_PATHS: &[&[u8]] = &[
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
/// Symlink targets.
pub const TARGETS: &[&[u8]] = &[
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
pub(super) const SIZES: &[u64] =
    &[0, 1, 10, 1000, 1023, 1024, 1025, 3000, 4096, 5000, 65536, 1 << 20, u64::MAX, 1 << 63];
const SPAN_SIZES: &[u64] = &[3000, 0, 1, 1024, 2048, 2500, 5000, 10, 1 << 20, u64::MAX, u64::MAX - 1023];
const FIRSTS: &[u64] = &[0, 0, 1, 2, 3, u64::MAX, u64::MAX / 1024, 1 << 54];
const COUNTS: &[u32] = &[1, 2, 3, 4, 0, 100, u32::MAX];
const GROUPS: &[u32] = &[1, 1, 0, 2, 3, 4, u32::MAX];
pub(super) const OFFSETS: &[u64] = &[0, 1, 1000, 1024, 2048, 2999, 3000, 1 << 20, u64::MAX, 1 << 63];
pub(super) const LENGTHS: &[u64] = &[0, 1, 1024, 2000, 3000, 3001, u64::MAX];
pub(super) const WRITE_OFFSETS: &[u64] = &[0, 1, 1000, 1024, 2048, 2999, 3000, u64::MAX, u64::MAX - 5];
const MODES: &[u32] = &[0o644, 0o755, 0o600, 0, 0o7777, 0o4755, u32::MAX];
const SECS: &[i64] = &[1_700_000_000, 0, -1, i64::MIN, i64::MAX, 1 << 40];
const NANOS: &[u32] = &[0, 1, 999_999_999, 1_000_000_000, u32::MAX];

/// The selector byte after which a value is given in full.
pub(super) const ANY: u8 = u8::MAX;

/// A value of `table` by one selector byte, or after [`ANY`] any value.
pub(super) fn pick<'a, T: Copy + Arbitrary<'a>>(u: &mut Unstructured<'a>, table: &[T]) -> Result<T> {
    match u8::arbitrary(u)? {
        ANY => u.arbitrary(),
        b => Ok(table[usize::from(b) % table.len()]),
    }
}

/// Up to `max` bytes.
fn bytes(u: &mut Unstructured<'_>, max: usize) -> Result<Vec<u8>> {
    let len = u.int_in_range(0..=max)?.min(u.len());
    Ok(u.bytes(len)?.to_vec())
}

/// Up to `max` items, each drawn by `item`.
pub(super) fn up_to<'a, T>(
    u: &mut Unstructured<'a>,
    max: u8,
    mut item: impl FnMut(&mut Unstructured<'a>) -> Result<T>,
) -> Result<Vec<T>> {
    let n = u.int_in_range(0..=max)?;
    (0..n).map(|_| item(u)).collect()
}

/// An entry of `dict` by one selector byte, or after [`ANY`] any bytes.
pub(super) fn dict(u: &mut Unstructured<'_>, dict: &[&[u8]]) -> Result<Vec<u8>> {
    match u8::arbitrary(u)? {
        ANY => bytes(u, 64),
        b => Ok(dict[usize::from(b) % dict.len()].to_vec()),
    }
}

pub(super) fn slot(u: &mut Unstructured<'_>) -> Result<u8> {
    u.int_in_range(0..=SLOTS as u8 - 1)
}

pub(super) fn mostly_true(u: &mut Unstructured<'_>) -> Result<bool> {
    u.ratio(7u8, 8)
}

pub(super) fn server(u: &mut Unstructured<'_>) -> Result<u8> {
    u.int_in_range(0..=1)
}

pub(super) fn version(u: &mut Unstructured<'_>) -> Result<u32> {
    pick(u, VERSIONS)
}

pub(super) fn nonce_len(u: &mut Unstructured<'_>) -> Result<u8> {
    pick(u, NONCE_LENS)
}

pub(super) fn raw_bytes(u: &mut Unstructured<'_>) -> Result<Vec<u8>> {
    bytes(u, 255)
}

pub(super) fn bad_path(u: &mut Unstructured<'_>) -> Result<Vec<u8>> {
    dict(u, BAD_PATHS)
}

pub(super) fn bad_paths(u: &mut Unstructured<'_>) -> Result<Vec<Vec<u8>>> {
    up_to(u, 3, bad_path)
}

pub(super) fn path(u: &mut Unstructured<'_>) -> Result<RelPath> {
    Ok(RelPath::new(dict(u, PATHS)?).unwrap_or_default())
}

fn glob(u: &mut Unstructured<'_>) -> Result<String> {
    match u8::arbitrary(u)? {
        ANY => Ok(String::from_utf8_lossy(&bytes(u, 32)?).into_owned()),
        b => Ok(GLOBS[usize::from(b) % GLOBS.len()].to_owned()),
    }
}

pub(super) fn spec(u: &mut Unstructured<'_>) -> Result<SessionSpec> {
    let flags = u8::arbitrary(u)?;
    Ok(SessionSpec {
        direction: if flags & 1 == 0 { Direction::Upload } else { Direction::Download },
        inplace: flags & 2 != 0,
        delete: flags & 4 != 0,
        fsync: flags & 8 != 0,
        hard_links: flags & 16 != 0,
        sparse: flags & 32 != 0,
        // Unpaced: a paced server would only slow the fuzzing down.
        bwlimit: 0,
        path: path(u)?,
        chunk_size: pick(u, CHUNKS)?,
        hash: *u.choose(&HashAlgo::ALL)?,
        includes: up_to(u, 2, glob)?,
        excludes: up_to(u, 2, glob)?,
        preserve: Default::default(),
    })
}

pub(super) fn span(u: &mut Unstructured<'_>) -> Result<Span> {
    Ok(Span {
        size: pick(u, SPAN_SIZES)?,
        first: pick(u, FIRSTS)?,
        count: pick(u, COUNTS)?,
        group: pick(u, GROUPS)?,
    })
}

pub(super) fn mtime(u: &mut Unstructured<'_>) -> Result<Mtime> {
    Ok(Mtime { secs: pick(u, SECS)?, nanos: pick(u, NANOS)? })
}

pub(super) fn meta(u: &mut Unstructured<'_>) -> Result<Meta> {
    Ok(Meta { mode: pick(u, MODES)?, mtime: mtime(u)?, extra: None })
}

pub(super) fn kind(u: &mut Unstructured<'_>) -> Result<Kind> {
    Ok(*u.choose(&[Kind::File, Kind::Dir, Kind::Symlink])?)
}
