//! The handshake fuzz target's driver (`pareco::testing`) on scripted
//! refusals: proofs for the token server and for joins, `Hello`s of the
//! wrong version or nonce, garbage, paths the codec refuses, sessions that
//! cannot be opened, messages that are no requests. As in
//! [`kit_sessions`](crate::kit_sessions), each runs on a fresh fixture
//! with the checks of every fuzz input.

use pareco::codec::{Direction, ErrorKind, HashAlgo, Message, SessionSpec, PROTOCOL_VERSION};
use pareco::testing::ops::{BadMsg, Data, IdSel, Op, Proof, Req, SessionRef, Step};
use serde_bytes::ByteBuf;

use crate::kit_sessions::{client_hello, hash_path, rel, scenario, span, spec};
use Direction::{Download, Upload};
use HashAlgo::Xxh3;

#[test]
fn the_token_server_refuses_every_proof_but_the_right_one() {
    let any = || spec(Download, "", 1024, Xxh3);
    scenario(
        vec![
            Step::hello(0),
            Step::open(0, Proof::Missing, any()),
            Step::hello(2),
            Step::open(2, Proof::Wrong, any()),
            Step::hello(4),
            Step::open(4, Proof::OtherIntent, any()),
            Step::hello(6),
            Step::open(6, Proof::OtherToken, any()),
            Step::connect(6, 0),
            Step::hello(6),
            Step::open(6, Proof::Valid, any()),
            Step::connect(0, 0),
            Step::hello(0),
            Step::join(0, Proof::OtherToken, SessionRef::Known(0)),
            Step::connect(2, 0),
            Step::hello(2),
            Step::join(2, Proof::NoSecret, SessionRef::Known(0)),
            Step::connect(4, 0),
            Step::hello(4),
            Step::join(4, Proof::Short, SessionRef::Known(0)),
            Step::connect(0, 0),
            Step::hello(0),
            Step::join(0, Proof::Missing, SessionRef::Known(0)),
            Step::connect(2, 0),
            Step::hello(2),
            Step::join(2, Proof::OtherIntent, SessionRef::Known(0)),
            Step::connect(4, 0),
            Step::hello(4),
            Step::join(4, Proof::Valid, SessionRef::Raw(5)),
            Step::connect(4, 0),
            Step::hello(4),
            Step::join(4, Proof::Valid, SessionRef::Known(0)),
            Step::message(4, Message::Ping),
            Step::message(6, Message::Ping),
        ],
        &[
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
    );
}

#[test]
fn without_a_token_a_join_still_takes_the_session_secret() {
    scenario(
        vec![
            // The tokenless server opens on any proof, but a join must
            // prove the session's secret.
            Step::hello(1),
            Step::open(1, Proof::Wrong, spec(Download, "dir", 1024, Xxh3)),
            Step::hello(3),
            Step::join(3, Proof::Missing, SessionRef::Known(0)),
            Step::hello(5),
            Step::join(5, Proof::NoSecret, SessionRef::Known(0)),
            Step::hello(7),
            Step::join(7, Proof::OtherToken, SessionRef::Known(0)),
            Step::connect(3, 1),
            Step::hello(3),
            Step::join(3, Proof::Valid, SessionRef::Known(0)),
            Step::message(3, Message::Probe { paths: vec![rel("note.txt")] }),
            Step::message(3, hash_path("note.txt", span(5, 0, 1, 1))),
            // A join on the other server, with a secret it does not know.
            Step::connect(0, 0),
            Step::hello(0),
            Step::join(0, Proof::Valid, SessionRef::Known(0)),
        ],
        &[
            "1 0 Welcome",
            "3 0 Error(Auth",
            "5 0 Error(Auth: wrong token, or not the client",
            "7 0 Error(Auth: wrong token, or not the client",
            "3 0 Welcome",
            "3 1 Error(Denied",
            "3 2 Hashes(8 bytes)",
            "0 0 Error(NoSession",
        ],
    );
}

#[test]
fn hello_takes_one_version_and_a_32_byte_nonce() {
    scenario(
        vec![
            Step::new(0, Op::Hello { version: PROTOCOL_VERSION - 1, nonce_len: 32 }),
            Step::new(1, Op::Hello { version: PROTOCOL_VERSION, nonce_len: 31 }),
            Step::new(2, Op::Hello { version: PROTOCOL_VERSION, nonce_len: 0 }),
            Step::new(3, Op::Hello { version: PROTOCOL_VERSION, nonce_len: 33 }),
            Step::new(4, Op::Hello { version: PROTOCOL_VERSION, nonce_len: 200 }),
            Step::new(5, Op::Hello { version: u32::MAX, nonce_len: 32 }),
            Step::new(6, Op::Hello { version: PROTOCOL_VERSION + 1, nonce_len: 0 }),
            Step::hello(7),
            Step::message(7, client_hello()),
            // A Hello sent as a request is the connection's Hello.
            Step::connect(0, 0),
            Step::message(0, client_hello()),
            Step::open(0, Proof::Valid, spec(Download, "dir/sub", 1024, Xxh3)),
            Step::message(0, Message::Walk),
        ],
        &[
            "0 0 Error(Version: client speaks protocol version 3, this server speaks 4",
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
    );
}

#[test]
fn garbage_ends_connections_and_nothing_else() {
    scenario(
        vec![
            Step::new(0, Op::Raw { bytes: b"GET / HTTP/1.1\r\n\r\n".to_vec() }),
            Step::new(1, Op::Truncate { id: IdSel::Zero, req: Req::Msg(client_hello()), keep: 10 }),
            Step::message(2, Message::Ping),
            Step::hello(3),
            Step::request(3, Req::Stray(Data::Bytes(b"payload".to_vec()))),
            Step::hello(5),
            Step::new(5, Op::Mutate { id: IdSel::Zero, req: Req::Msg(Message::Ping), at: 9, xor: 0x40 }),
            Step::hello(7),
            Step::new(7, Op::ShutdownWrite),
            Step::new(7, Op::Sync),
        ],
        &["2 0 Error(Protocol: protocol error: expected Hello, got Ping", "3 0 Error(Protocol"],
    );
}

#[test]
fn paths_the_codec_refuses_end_the_connection() {
    let open_out = BadMsg::Open { proof: Proof::Missing, upload: true, path: b"../outside".to_vec() };
    scenario(
        vec![
            Step::hello(1),
            Step::new(1, Op::BadPath { id: IdSel::Zero, msg: open_out }),
            Step::hello(3),
            Step::open(3, Proof::Missing, spec(Upload, "", 1024, Xxh3)),
            Step::new(3, Op::BadPath { id: IdSel::Next, msg: BadMsg::MakeDir(b"escape/../..".to_vec()) }),
            Step::hello(5),
            Step::open(5, Proof::Missing, spec(Download, "", 1024, Xxh3)),
            Step::new(5, Op::BadPath { id: IdSel::Next, msg: BadMsg::Read(b"/etc/passwd".to_vec()) }),
        ],
        &["1 0 Error(Protocol", "3 0 Welcome", "3 0 Error(Protocol", "5 0 Welcome", "5 0 Error(Protocol"],
    );
}

#[test]
fn sessions_that_cannot_be_are_refused() {
    let bad_glob = SessionSpec { includes: vec!["[".into()], ..spec(Download, "", 1024, Xxh3) };
    scenario(
        vec![
            Step::hello(1),
            Step::open(1, Proof::Missing, spec(Upload, "", 1023, Xxh3)),
            Step::hello(3),
            Step::open(3, Proof::Missing, bad_glob),
            Step::hello(5),
            Step::open(5, Proof::Missing, spec(Download, "missing/file", 1024, Xxh3)),
            Step::hello(7),
            Step::open(7, Proof::Missing, spec(Download, "escape", 1024, Xxh3)),
            Step::connect(1, 1),
            Step::hello(1),
            Step::open(1, Proof::Missing, spec(Upload, "abs", 1024, Xxh3)),
            Step::connect(3, 1),
            Step::hello(3),
            Step::open(3, Proof::Missing, spec(Upload, "file.txt", 1024, Xxh3)),
        ],
        &[
            "1 0 Error(Limit: chunk size 1023",
            "3 0 Error(Denied: bad glob",
            "5 0 Error(NotFound",
            "7 0 Error(Denied",
            "1 0 Error(Denied",
            "3 0 Error(NotFound",
        ],
    );
}

#[test]
fn messages_that_are_no_requests_are_refused() {
    let welcome = Message::Welcome {
        session: 1,
        idle_timeout_ms: 1000,
        max_payload: 1024,
        max_connections: 4,
        proof: ByteBuf::from(vec![0; 32]),
        secret: Some(ByteBuf::from(vec![0; 32])),
        bwlimit: 0,
        privileged: false,
    };
    let error = Message::Error { kind: ErrorKind::Protocol, message: "from the client".into() };
    scenario(
        vec![
            Step::hello(1),
            Step::open(1, Proof::Missing, spec(Download, "dir", 1024, Xxh3)),
            Step::message(1, client_hello()),
            Step::message(1, welcome),
            Step::message(1, error),
            Step::message(1, Message::Probe { paths: vec![rel("note.txt")] }),
            Step::request(1, Req::Stray(Data::Fill(0, 1025))),
            Step::message(1, Message::Ping),
        ],
        &[
            "1 0 Welcome",
            "1 1 Error(Protocol: Hello is not a request",
            "1 2 Error(Protocol: Welcome is not a request",
            "1 3 Error(Protocol: Error is not a request",
            "1 4 Error(Denied",
            "1 0 Error(Protocol: frame payload of 1025 bytes",
            "1 closed",
        ],
    );
}
