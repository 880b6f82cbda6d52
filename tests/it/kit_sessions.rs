//! The handshake fuzz target's driver (`pareco::testing`) on scripted
//! sessions that get somewhere: upload with a token, download without,
//! joins, files written in place and pipelined requests, the limits of a
//! server; [`kit_refusals`](crate::kit_refusals) has those refused. Each
//! test runs its steps on a fresh fixture (two in-process servers, see
//! `pareco::testing::fixture`), checks that the answers listed came, in
//! order, and gets the checks of every fuzz input with them: every
//! `Welcome` right, and afterwards no hang, no session left, nothing
//! changed outside the roots.

use std::time::Duration;

use pareco::codec::{
    Action, Direction, HashAlgo, HashTarget, Kind, Message, Meta, Mtime, RelPath, SessionSpec, Span,
    PROTOCOL_VERSION,
};
use pareco::peer::temp::temp_name;
use pareco::testing::choices::{BAD_PATHS, PATHS};
use pareco::testing::ops::{
    Data, DigestSel, HandleSel, IdSel, LenSel, OffSel, Op, Proof, Req, SessionRef, Step,
};
use pareco::testing::Fixture;
use serde_bytes::ByteBuf;

use Direction::{Download, Upload};
use HashAlgo::{Adler32, Crc32, Xxh128, Xxh3};

/// The time a scenario may take: far more than it needs, so that a slow
/// machine does not cut it short (a wait that runs out fails the test).
const BUDGET: Duration = Duration::from_secs(20);

/// Runs `steps` on a fresh fixture; each of `expected` must be part of a
/// line of what was received, in this order.
pub fn scenario(steps: Vec<Step>, expected: &[&str]) {
    Fixture::new(BUDGET).run_expecting(&steps, expected);
}

pub fn rel(path: &str) -> RelPath {
    RelPath::new(path).expect("a valid test path")
}

pub fn spec(direction: Direction, path: &str, chunk_size: u32, hash: HashAlgo) -> SessionSpec {
    SessionSpec::new(direction, rel(path), chunk_size, hash)
}

pub fn span(size: u64, first: u64, count: u32, group: u32) -> Span {
    Span { size, first, count, group }
}

pub fn hash_path(path: &str, span: Span) -> Message {
    Message::Hash { target: HashTarget::Path(rel(path)), span }
}

/// A `Hello` with a nonce of zeros, sent as a message.
pub fn client_hello() -> Message {
    Message::Hello { version: PROTOCOL_VERSION, nonce: ByteBuf::from(vec![0; 32]) }
}

fn meta() -> Meta {
    Meta { mode: 0o644, mtime: Mtime { secs: 1_700_000_000, nanos: 0 }, extra: None }
}

/// A `Write` of chunk `chunk` of the `handle`-th file begun.
fn write(handle: u8, chunk: u8, data: Data, digest: DigestSel) -> Req {
    Req::Write { handle: HandleSel::Known(handle), offset: OffSel::Chunk(chunk), data, digest }
}

#[test]
fn fixture_paths_are_valid_and_name_the_library_temporaries() {
    for path in PATHS {
        assert!(RelPath::new(path.to_vec()).is_ok(), "{:?}", String::from_utf8_lossy(path));
    }
    for path in BAD_PATHS {
        assert!(RelPath::new(path.to_vec()).is_err(), "{:?}", String::from_utf8_lossy(path));
    }
    for (dir, name) in [(&b"dir/"[..], &b"note.txt"[..]), (b"", b"file.txt")] {
        let temp = [dir, &temp_name(name)].concat();
        assert!(PATHS.contains(&&temp[..]), "PATHS lacks {:?}", String::from_utf8_lossy(&temp));
    }
}

#[test]
fn upload_with_a_token() {
    let apply = Message::Apply {
        actions: vec![
            Action::MakeDir { path: rel("new/x/y.txt") },
            Action::Symlink {
                path: rel("up/b"),
                target: ByteBuf::from(b"../outside".to_vec()),
                mtime: meta().mtime,
            },
            Action::SetMeta { path: rel("up/a.bin"), kind: Kind::File, meta: meta() },
        ],
    };
    let put = Req::PutFile {
        path: rel("up/b/c.txt"),
        meta: meta(),
        data: Data::Bytes(b"hello".to_vec()),
        digest: DigestSel::Right,
    };
    scenario(
        vec![
            Step::hello(0),
            Step::open(0, Proof::Valid, spec(Upload, "", 1024, Xxh3)),
            Step::message(0, Message::Probe { paths: vec![rel("up/a.bin"), rel("file.txt"), rel("escape")] }),
            Step::message(0, Message::Begin { path: rel("up/a.bin"), size: 3000 }),
            Step::request(0, write(0, 0, Data::Fill(7, 1024), DigestSel::Right)),
            Step::request(0, write(0, 1, Data::Fill(8, 1024), DigestSel::Right)),
            Step::request(0, write(0, 2, Data::Fill(9, 952), DigestSel::Right)),
            Step::request(0, write(0, 0, Data::Bytes(b"x".to_vec()), DigestSel::Wrong)),
            Step::request(0, write(0, 3, Data::Bytes(b"x".to_vec()), DigestSel::Right)),
            Step::request(0, Req::HashHandle { handle: HandleSel::Known(0), span: span(3000, 0, 3, 1) }),
            Step::request(0, Req::Finish { handle: HandleSel::Known(0), meta: meta() }),
            Step::message(0, hash_path("up/a.bin", span(3000, 0, 3, 2))),
            Step::request(0, put),
            Step::message(0, apply),
            Step::message(0, Message::Walk),
            Step::message(0, Message::Ping),
            Step::message(0, Message::Close),
        ],
        &[
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
            // up/b holds c.txt: without `delete`, no symlink replaces it.
            "0 12 Applied(1 failures)",
            "0 13 Listing(",
            "0 13 Listing(0 entries, 0 problems, done=true)",
            "0 14 Pong",
            "0 15 Done",
        ],
    );
}

#[test]
fn download_without_a_token() {
    scenario(
        vec![
            Step::hello(1),
            Step::open(1, Proof::Missing, spec(Download, "", 1024, Crc32)),
            Step::message(1, Message::Walk),
            Step::message(1, hash_path("file.txt", span(3000, 0, 3, 1))),
            Step::message(1, hash_path("dir/sub/deep.txt", span(5000, 1, 4, 2))),
            Step::request(1, Req::Read { path: rel("file.txt"), offset: 0, len: LenSel::Chunk }),
            Step::request(1, Req::Read { path: rel("file.txt"), offset: 2048, len: LenSel::Value(1000) }),
            Step::request(1, Req::Read { path: rel("escape/secret.txt"), offset: 0, len: LenSel::Chunk }),
            Step::request(1, Req::Read { path: rel("link-file"), offset: 0, len: LenSel::Chunk }),
            Step::request(1, Req::Read { path: rel("file.txt"), offset: 0, len: LenSel::ChunkPlus1 }),
            Step::message(1, Message::Begin { path: rel("file.txt"), size: 10 }),
            Step::request(1, Req::HashHandle { handle: HandleSel::Known(1), span: span(3000, 0, 3, 1) }),
            Step::message(
                1,
                Message::ReadFiles { files: vec![(rel("small.bin"), 10), (rel("missing/file"), 1)] },
            ),
            Step::message(1, Message::Close),
        ],
        &[
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
            "1 11 FilesRead(2 files)",
            "1 12 Done",
        ],
    );
}

#[test]
fn a_join_shares_the_session_and_its_handles() {
    let put = Req::PutFile {
        path: rel("file.txt"),
        meta: meta(),
        data: Data::Fill(1, 4096),
        digest: DigestSel::Right,
    };
    let put_files = Req::PutFiles {
        files: vec![
            (rel("p/one"), meta(), Data::Bytes(b"one".to_vec()), DigestSel::Right),
            (rel("p/two"), meta(), Data::Bytes(b"two".to_vec()), DigestSel::Wrong),
        ],
    };
    scenario(
        vec![
            Step::hello(1),
            Step::open(1, Proof::Missing, spec(Upload, "up", 4096, Xxh128)),
            Step::hello(3),
            Step::join(3, Proof::Valid, SessionRef::Known(0)),
            Step::request(3, put),
            Step::message(1, Message::Probe { paths: vec![rel("file.txt")] }),
            Step::message(1, Message::Begin { path: rel("new/x/y.txt"), size: 5000 }),
            Step::request(3, write(0, 1, Data::Fill(2, 904), DigestSel::Right)),
            Step::request(1, Req::CopyOld { handle: HandleSel::Known(0), ranges: vec![(0, 1024)] }),
            Step::request(3, Req::Discard { handle: HandleSel::Known(0), remove: false }),
            Step::request(3, put_files),
            Step::message(3, Message::Close),
            Step::message(1, Message::Ping),
        ],
        &[
            "1 0 Welcome",
            "3 0 Welcome",
            "3 1 Done",
            "1 1 Probed(1 of 1 found)",
            "1 2 Begun(1, partial=false)",
            "3 2 Done",
            "1 3 Error(Protocol",
            "3 3 Done",
            "3 4 FilesPut(1 failures)",
            "3 5 Done",
            "1 closed",
        ],
    );
}

#[test]
fn limits_of_sessions_trees_and_connections() {
    let join_first = |slot| {
        [Step::connect(slot, 1), Step::hello(slot), Step::join(slot, Proof::Valid, SessionRef::Known(0))]
    };
    let mut steps = vec![
        Step::hello(1),
        Step::open(1, Proof::Missing, spec(Upload, "dir", 1024, Adler32)),
        Step::hello(3),
        Step::open(3, Proof::Missing, spec(Upload, "dir/sub", 1024, Xxh3)),
        Step::hello(5),
        Step::open(5, Proof::Missing, spec(Download, "dir", 1024, Xxh3)),
        Step::hello(7),
        Step::open(7, Proof::Missing, spec(Download, "", 65536, Xxh3)),
        Step::connect(3, 1),
        Step::hello(3),
        Step::open(3, Proof::Missing, spec(Download, "link-dir", 1024, Xxh3)),
        Step::connect(0, 1),
        Step::hello(0),
        Step::open(0, Proof::Missing, spec(Download, "", 1024, Xxh3)),
        Step::new(7, Op::Drop),
    ];
    for slot in [0, 2, 4, 6] {
        steps.extend(join_first(slot));
    }
    scenario(
        steps,
        &[
            "1 0 Welcome",
            "3 0 Error(Busy",
            "5 0 Welcome",
            "7 0 Welcome",
            "3 0 Welcome",
            "0 0 Error(Limit: the server has its maximum of 4 sessions",
            "0 0 Welcome",
            "2 0 Welcome",
            "4 0 Welcome",
            // At the maximum of 4, the join takes the place of the
            // connection silent longest: slot 0's first, dropped by its
            // client before the server saw it go.
            "6 0 Welcome",
        ],
    );
}

#[test]
fn in_place_and_partial_files() {
    scenario(
        vec![
            Step::hello(0),
            Step::open(0, Proof::Valid, SessionSpec { inplace: true, ..spec(Upload, "dir", 1024, Crc32) }),
            Step::message(0, Message::Begin { path: rel("note.txt"), size: 2000 }),
            Step::request(0, Req::CopyOld { handle: HandleSel::Known(0), ranges: vec![(0, 1)] }),
            Step::request(0, write(0, 0, Data::Fill(3, 1024), DigestSel::Right)),
            Step::request(0, write(0, 0, Data::Fill(3, 1024), DigestSel::Short)),
            Step::request(0, Req::Discard { handle: HandleSel::Known(0), remove: true }),
            Step::request(0, Req::Finish { handle: HandleSel::Known(0), meta: meta() }),
            Step::message(0, Message::Close),
            Step::hello(2),
            Step::open(2, Proof::Valid, spec(Upload, "dir", 1024, Xxh3)),
            Step::message(2, Message::Begin { path: rel("note.txt"), size: 10 }),
            Step::request(2, Req::HashHandle { handle: HandleSel::Known(1), span: span(10, 0, 1, 1) }),
            Step::request(2, Req::Finish { handle: HandleSel::Known(1), meta: meta() }),
            Step::message(2, Message::Probe { paths: vec![rel("note.txt"), rel("new"), rel("new/x")] }),
        ],
        &[
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
    );
}

#[test]
fn pipelined_requests_are_answered_by_id() {
    scenario(
        vec![
            Step::hello(1),
            Step::open(1, Proof::Missing, spec(Upload, "new", 1024, Xxh3)),
            Step::message(1, Message::Begin { path: rel("a.bin"), size: 2048 }).no_wait(),
            Step::new(1, Op::Sync),
            Step::request(1, write(0, 0, Data::Fill(5, 1024), DigestSel::Right)).no_wait(),
            Step::request(1, write(0, 1, Data::Fill(6, 1024), DigestSel::Right)).no_wait(),
            Step::message(1, Message::Walk).no_wait(),
            Step::request(1, Req::Finish { handle: HandleSel::Known(0), meta: meta() }).no_wait(),
            Step::message(1, Message::Ping).no_wait(),
            Step::new(1, Op::Sync),
            Step::new(1, Op::Request { id: IdSel::Last, req: Req::Msg(Message::Ping) }),
            Step::new(1, Op::Request { id: IdSel::Zero, req: Req::Msg(Message::Walk) }),
            Step::new(1, Op::Request { id: IdSel::Raw(u32::MAX), req: Req::Msg(Message::Close) }),
        ],
        &["1 0 Welcome", "1 1 Begun", "1 6 Pong", "1 0 Listing", "1 4294967295 Done"],
    );
}
