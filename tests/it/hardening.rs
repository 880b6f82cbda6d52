//! A server that bad input cannot hurt: raw-byte clients, limits, expiry.
//!
//! Every test talks to a real `pareco listen` process through [`Raw`], a
//! blocking client that writes frames by hand (`Packet::encode_head`, or
//! the test kit's mirror messages for what the library refuses to encode)
//! and decodes the answers with the library's `FrameCodec`. Each case checks the `Error`
//! frame the server sends where it still can, that the connection is then
//! closed (a read returns 0) or, for a failed request, still answers, and
//! that the server afterwards still serves a normal transfer.

use std::fs;
use std::net::Shutdown;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use pareco::codec::{
    Action, ErrorKind, FileRead, HashTarget, Kind, Message, Meta, Mtime, Packet, RelPath, SmallFile, Span,
    MAX_HANDSHAKE_HEADER_LEN, MAX_HEADER_LEN, PROTOCOL_VERSION,
};
use pareco::testing::frames::{encode_header, frame_bytes, prefix, raw_frame};
use pareco::testing::mirror;
use serde_bytes::ByteBuf;

use crate::raw::*;
use crate::util::*;

const TOKEN: &str = "correct-horse-battery-staple-7f3a";

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// A server whose root sits in a temporary directory beside an empty
/// directory `outside`, for links that lead out of the root. Keep the
/// first value alive: it holds both.
fn server_beside_outside() -> (tempfile::TempDir, PathBuf, Server) {
    let outer = tempfile::tempdir().unwrap();
    let outside = outer.path().join("outside");
    fs::create_dir(&outside).unwrap();
    let root = tempfile::Builder::new().prefix("root").tempdir_in(outer.path()).unwrap();
    (outer, outside, Server::start_in(root, &[]))
}

/// Every entry below `dir`, as relative paths.
fn listing(dir: &Path) -> Vec<String> {
    snapshot(dir).into_keys().collect()
}

// ---------------------------------------------------------------------------
// Bytes that are not the protocol
// ---------------------------------------------------------------------------

#[test]
fn garbage_bytes_get_a_protocol_error_and_a_close() {
    let server = Server::start(&[]);
    // A frame whose header is not MessagePack at all.
    let mut raw = Raw::connect(server.port);
    raw.send_bytes(&raw_frame(&[0xC1, 0xC1, 0xC1, 0xC1], &[]));
    let message = raw.refused(ErrorKind::Protocol);
    assert!(message.starts_with("malformed message"), "{message}");

    // Random bytes (whose first length is over the limit).
    let mut garbage = noise(200, 7);
    garbage[0] = 0xEE;
    let mut raw = Raw::connect(server.port);
    raw.send_bytes(&garbage);
    let message = raw.refused(ErrorKind::Protocol);
    assert!(message.contains("over the limit"), "{message}");

    // Valid MessagePack that is no message.
    let mut raw = Raw::connect(server.port);
    raw.send_bytes(&raw_frame(&encode_header(0, "Frobnicate"), &[]));
    let message = raw.refused(ErrorKind::Protocol);
    assert!(message.contains("Frobnicate"), "{message}");
    still_serves(&server, "after", &[]);
}

#[test]
fn http_and_ssh_are_closed_without_an_answer() {
    let server = Server::start(&[]);
    for greeting in [&b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"[..], b"SSH-2.0-OpenSSH_9.6\r\n"] {
        let mut raw = Raw::connect(server.port);
        raw.send_bytes(greeting);
        raw.closed();
    }
    still_serves(&server, "after", &[]);
}

#[test]
fn wrong_protocol_version_names_both_versions() {
    let server = Server::start(&[]);
    let theirs = PROTOCOL_VERSION + 41;
    let mut raw = Raw::connect(server.port);
    raw.send(0, Message::Hello { version: theirs, nonce: ByteBuf::from(vec![0x5a; 32]) });
    let message = raw.refused(ErrorKind::Version);
    assert!(message.contains(&format!("version {theirs}")), "{message}");
    assert!(message.contains(&format!("speaks {PROTOCOL_VERSION}")), "{message}");
    still_serves(&server, "after", &[]);
}

#[test]
fn headers_over_64_kib_in_the_handshake_and_1_mib_after_are_refused_from_the_prefix() {
    let server = Server::start(&[]);

    // Before the handshake, a peer that has proved nothing yet...
    let too_long = MAX_HANDSHAKE_HEADER_LEN + 1;
    let mut raw = Raw::connect(server.port);
    raw.send_bytes(&prefix(too_long as u32, 0));
    let message = raw.refused(ErrorKind::Protocol);
    assert!(message.contains(&format!("{too_long} bytes")), "{message}");
    assert!(message.contains(&format!("limit of {MAX_HANDSHAKE_HEADER_LEN} bytes")), "{message}");
    let mut raw = Raw::connect(server.port);
    raw.hello();
    raw.send_bytes(&prefix(too_long as u32, 0));
    raw.refused(ErrorKind::Protocol);

    // ...and in a session.
    let too_long = MAX_HEADER_LEN + 1;
    let (mut raw, _) = Raw::opened(server.port, None, upload("d"));
    raw.send_bytes(&prefix(too_long as u32, 0));
    let message = raw.refused(ErrorKind::Protocol);
    assert!(message.contains(&format!("{too_long} bytes")), "{message}");
    still_serves(&server, "after", &[]);
}

#[test]
fn payloads_are_refused_before_welcome_and_over_the_chunk_size() {
    let server = Server::start(&[]);
    // During the handshake the payload limit is 0.
    let mut raw = Raw::connect(server.port);
    raw.send_with(
        0,
        Message::Hello { version: PROTOCOL_VERSION, nonce: ByteBuf::from(vec![0x5a; 32]) },
        Bytes::from_static(b"x"),
    );
    let message = raw.refused(ErrorKind::Protocol);
    assert!(message.contains("payload (1 bytes) before the handshake is complete"), "{message}");

    // A Write in the handshake, payload and all.
    let mut raw = Raw::connect(server.port);
    raw.hello();
    let write = Message::Write { handle: 1, offset: 0, digest: digest(b"data") };
    raw.send_with(0, write, Bytes::from_static(b"data"));
    let message = raw.refused(ErrorKind::Protocol);
    assert!(message.contains("before the handshake is complete"), "{message}");

    // In a session, the limit is the chunk size.
    let (mut raw, _) = Raw::opened(server.port, None, upload("d"));
    let data = Bytes::from(noise(CHUNK as usize + 1, 3));
    raw.send_with(7, Message::Write { handle: 1, offset: 0, digest: digest(&data) }, data);
    let message = raw.refused(ErrorKind::Protocol);
    assert!(message.contains(&format!("payload of {} bytes", CHUNK + 1)), "{message}");
    assert!(message.contains(&format!("limit of {CHUNK} bytes")), "{message}");
    still_serves(&server, "after", &[]);
}

#[test]
fn truncated_frame_then_close() {
    let server = Server::start(&[]);
    // In the handshake.
    let hello = frame_bytes(&Packet::new(
        0,
        Message::Hello { version: PROTOCOL_VERSION, nonce: ByteBuf::from(vec![0x5a; 32]) },
    ));
    let mut raw = Raw::connect(server.port);
    raw.send_bytes(&hello[..hello.len() - 1]);
    raw.stream.shutdown(Shutdown::Write).unwrap();
    let message = raw.refused(ErrorKind::Protocol);
    assert!(message.contains("closed in the middle of a frame"), "{message}");

    // In a session: half a Write, then the end of the stream.
    let (mut raw, _) = Raw::opened(server.port, None, upload("d"));
    let data = Bytes::from_static(b"0123456789");
    let write = frame_bytes(&Packet::with_payload(
        1,
        Message::Write { handle: 1, offset: 0, digest: digest(&data) },
        data,
    ));
    raw.send_bytes(&write[..write.len() - 4]);
    raw.stream.shutdown(Shutdown::Write).unwrap();
    raw.refused(ErrorKind::Protocol);
    still_serves(&server, "after", &[]);
}

#[test]
fn messages_out_of_order_are_refused() {
    let server = Server::start(&[]);
    // A Write, an Open, a Ping before Hello.
    let before_hello = [
        Message::Write { handle: 1, offset: 0, digest: ByteBuf::new() },
        Message::Open { proof: None, spec: upload("d") },
        Message::Ping,
    ];
    for msg in before_hello {
        let name = msg.name();
        let mut raw = Raw::connect(server.port);
        raw.send(0, msg);
        let message = raw.refused(ErrorKind::Protocol);
        assert!(message.contains(&format!("expected Hello, got {name}")), "{message}");
    }
    // Hello twice; a Begin instead of Open or Join.
    for msg in [
        Message::Hello { version: PROTOCOL_VERSION, nonce: ByteBuf::from(vec![0x5a; 32]) },
        Message::Begin { path: rel("f"), size: 1 },
    ] {
        let name = msg.name();
        let mut raw = Raw::connect(server.port);
        raw.hello();
        raw.send(0, msg);
        let message = raw.refused(ErrorKind::Protocol);
        assert!(message.contains(&format!("expected Open or Join, got {name}")), "{message}");
    }
    // Handshake messages inside a session are failed requests; the session
    // goes on.
    let (mut raw, _) = Raw::opened(server.port, None, upload("d"));
    let late = [
        Message::Hello { version: PROTOCOL_VERSION, nonce: ByteBuf::from(vec![0x5a; 32]) },
        Message::Open { proof: None, spec: upload("e") },
        Message::Welcome {
            session: 1,
            idle_timeout_ms: 1,
            max_payload: 1,
            max_connections: 1,
            proof: ByteBuf::new(),
            secret: None,
            bwlimit: 0,
            privileged: false,
        },
        Message::Pong,
    ];
    for (id, msg) in (1..).zip(late) {
        let name = msg.name();
        let message = raw.request_fails(id, msg, Bytes::new(), ErrorKind::Protocol);
        assert_eq!(message, format!("{name} is not a request"));
    }
    raw.pings(10);
    assert!(!server.path("e").exists());
    raw.close_session(11);
    still_serves(&server, "after", &[]);
}

// ---------------------------------------------------------------------------
// Sessions and tokens
// ---------------------------------------------------------------------------

#[test]
fn joins_need_a_known_session_and_its_secret() {
    let server = Server::start(&[]);
    let mut raw = Raw::connect(server.port);
    raw.join(None, Ticket { id: 0x0123_4567_89ab_cdef, secret: [0; 32] });
    let message = raw.refused(ErrorKind::NoSession);
    assert!(message.contains("0123456789abcdef"), "{message}");
    // Without a token on the server, joining still takes the session's
    // secret: another client cannot join someone else's session.
    let (owner, session) = Raw::opened(server.port, None, upload("d"));
    let mut raw = Raw::connect(server.port);
    raw.join(None, Ticket { secret: [1; 32], ..session });
    raw.refused(ErrorKind::Auth);
    let mut raw = Raw::connect(server.port);
    raw.join(None, session);
    assert_eq!(raw.welcome(), session);
    raw.pings(1);
    owner.close_session(2);
    still_serves(&server, "after", &[]);
}

#[test]
fn token_server_refuses_missing_and_wrong_proofs() {
    let server = Server::start(&["-a", TOKEN]);
    let (mut good, session) = Raw::opened(server.port, Some(TOKEN), upload("held"));

    // Open without a proof, with one made without the token, with a wrong
    // one, with a proof of the wrong size.
    let mut raw = Raw::connect(server.port);
    raw.hello();
    raw.send(0, Message::Open { proof: None, spec: upload("d") });
    let message = raw.refused(ErrorKind::Auth);
    assert!(message.contains("token is required"), "{message}");
    let mut raw = Raw::connect(server.port);
    raw.open(None, upload("d"));
    assert_eq!(raw.refused(ErrorKind::Auth), "wrong token");
    let mut raw = Raw::connect(server.port);
    raw.open(Some("not the token"), upload("d"));
    assert_eq!(raw.refused(ErrorKind::Auth), "wrong token");
    let mut raw = Raw::connect(server.port);
    raw.hello();
    raw.send(0, Message::Open { proof: Some(ByteBuf::from(vec![0u8; 5])), spec: upload("d") });
    assert_eq!(raw.refused(ErrorKind::Auth), "wrong token");

    // Join an open session with a wrong token, without one, and with the
    // token but not the session's secret (another token holder). Session
    // ids are no secret: joining takes the session's secret too.
    let not_this_client = "wrong token, or not the client that opened this session";
    let stranger = Ticket { secret: [9; 32], ..session };
    for (token, ticket) in [(Some("not the token"), session), (None, session), (Some(TOKEN), stranger)] {
        let mut raw = Raw::connect(server.port);
        raw.join(token, ticket);
        assert_eq!(raw.refused(ErrorKind::Auth), not_this_client);
    }
    let mut raw = Raw::connect(server.port);
    raw.join(Some(TOKEN), Ticket { id: session.id ^ 1, ..session });
    raw.refused(ErrorKind::NoSession);
    // With the token and the secret, it joins.
    let mut raw = Raw::connect(server.port);
    raw.join(Some(TOKEN), session);
    assert_eq!(raw.welcome(), session);
    drop(raw);

    // The client binary without the token and with a wrong one.
    let src = tempfile::tempdir().unwrap();
    file(&src.path().join("f"), b"x", 0o644, (1, 0));
    let local = src.path().to_str().unwrap();
    let out = pareco(&["send", local, &server.url("d")]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("the server requires a token"), "{}", stderr(&out));
    let out = pareco(&["send", local, &server.url("d"), "-a", "not the token"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("wrong token"), "{}", stderr(&out));

    // Nothing was made under the root but the held session's directory.
    assert_eq!(listing(server.root.path()), ["held"]);
    good.pings(1);
    good.close_session(2);
    still_serves(&server, "after", &["-a", TOKEN]);
}

#[test]
fn idle_session_expires_and_its_id_is_gone() {
    let server = Server::start(&["--session-timeout", "300ms"]);
    let (mut raw, session) = Raw::opened(server.port, None, upload("d"));
    let started = Instant::now();
    raw.closed();
    let waited = started.elapsed();
    assert!(waited < Duration::from_secs(3), "closed only after {waited:?}");
    // The silent connection is closed at half the timeout; the session
    // waits for its client to join again until the whole of it.
    std::thread::sleep(Duration::from_millis(600));
    let mut late = Raw::connect(server.port);
    late.join(None, session);
    let message = late.refused(ErrorKind::NoSession);
    assert!(message.contains(&format!("{:016x}", session.id)), "{message}");
    // A client that keeps its session alive is not expired.
    still_serves(&server, "after", &[]);
}

#[test]
fn max_sessions_is_enforced() {
    let server = Server::start(&["--max-sessions", "1"]);
    let (mut held, _) = Raw::opened(server.port, None, download(""));
    let mut raw = Raw::connect(server.port);
    raw.open(None, upload("d"));
    let message = raw.refused(ErrorKind::Limit);
    assert!(message.contains("maximum of 1 sessions"), "{message}");
    assert!(message.contains("try again later"), "{message}");
    // The client binary says so too.
    let src = tempfile::tempdir().unwrap();
    file(&src.path().join("f"), b"x", 0o644, (1, 0));
    let out = pareco(&["send", src.path().to_str().unwrap(), &server.url("d")]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("maximum of 1 sessions"), "{}", stderr(&out));
    assert!(!server.path("d").exists());
    held.pings(1);
    held.close_session(2);
    still_serves(&server, "after", &[]);
}

#[test]
fn max_connections_is_enforced_by_replacing_the_connection_silent_longest() {
    let server = Server::start(&["--max-connections", "2"]);
    // A Pong shows each connection is in the session before the next Join.
    let (mut first, session) = Raw::opened(server.port, None, upload("d"));
    first.pings(1);
    std::thread::sleep(std::time::Duration::from_millis(20));
    let mut second = Raw::connect(server.port);
    second.join(None, session);
    assert_eq!(second.welcome(), session);
    second.pings(1);
    // A third join does not make three: the connection silent longest
    // (the first, whose client may have lost it without a word) is closed
    // to make room, and the others are untouched.
    std::thread::sleep(std::time::Duration::from_millis(20));
    let mut third = Raw::connect(server.port);
    third.join(None, session);
    assert_eq!(third.welcome(), session);
    first.closed();
    second.pings(2);
    third.pings(1);
    drop(second);
    third.close_session(3);
    still_serves(&server, "after", &[]);
}

#[test]
fn joined_connections_give_back_their_handshake_slot() {
    // More joined connections than handshakes the server runs at once
    // (256): each must free its slot once joined, or the next client waits
    // in the listen backlog for as long as they live.
    let server = Server::start(&["--max-connections", "300"]);
    let (mut first, session) = Raw::opened(server.port, None, upload("d"));
    let joined: Vec<Raw> = (0..pareco::session::server::MAX_HANDSHAKES)
        .map(|_| {
            let mut raw = Raw::connect(server.port);
            raw.join(None, session);
            assert_eq!(raw.welcome(), session);
            raw
        })
        .collect();
    let (mut other, _) = Raw::opened(server.port, None, download(""));
    other.pings(1);
    first.pings(1);
    drop(joined);
    first.close_session(2);
}

// ---------------------------------------------------------------------------
// Requests in an open session
// ---------------------------------------------------------------------------

#[test]
fn write_to_an_unknown_handle_fails_and_the_session_goes_on() {
    let server = Server::start(&[]);
    let (mut raw, _) = Raw::opened(server.port, None, upload("d"));
    let data = Bytes::from_static(b"abcd");
    let write = Message::Write { handle: 4242, offset: 0, digest: digest(&data) };
    let message = raw.request_fails(1, write, data, ErrorKind::Protocol);
    assert!(message.contains("handle 4242"), "{message}");
    let finish = Message::Finish { handle: 4242, meta: meta() };
    raw.request_fails(2, finish, Bytes::new(), ErrorKind::Protocol);
    raw.pings(3);
    raw.close_session(4);
    assert_eq!(listing(&server.path("d")), Vec::<String>::new());
    still_serves(&server, "after", &[]);
}

#[test]
fn write_past_the_end_of_a_begun_file_fails_and_the_session_goes_on() {
    let server = Server::start(&[]);
    let (mut raw, _) = Raw::opened(server.port, None, upload("d"));
    let handle = match raw.request(1, Message::Begin { path: rel("f"), size: 10 }, Bytes::new()) {
        Message::Begun { handle, partial: false } => handle,
        other => panic!("expected Begun, got {other:?}"),
    };
    let data = Bytes::from_static(b"WXYZ");
    for (id, offset) in [(2, 8), (3, 10), (4, u64::MAX - 1)] {
        let write = Message::Write { handle, offset, digest: digest(&data) };
        let message = raw.request_fails(id, write, data.clone(), ErrorKind::Protocol);
        assert!(message.contains(&format!("chunk at {offset} is past the end")), "{message}");
    }
    raw.pings(5);
    // The file can still be written and finished.
    let write = Message::Write { handle, offset: 6, digest: digest(&data) };
    assert_eq!(raw.request(6, write, data.clone()), Message::Done);
    assert_eq!(raw.request(7, Message::Finish { handle, meta: meta() }, Bytes::new()), Message::Done);
    assert_eq!(fs::read(server.path("d/f")).unwrap(), b"\0\0\0\0\0\0WXYZ");
    raw.close_session(8);
    still_serves(&server, "after", &[]);
}

#[test]
fn a_payload_on_a_message_that_carries_none_is_refused() {
    let server = Server::start(&[]);
    let (mut raw, _) = Raw::opened(server.port, None, upload("d"));
    raw.send_with(1, Message::Apply { actions: Vec::new() }, Bytes::from_static(b"smuggled"));
    let message = raw.refused(ErrorKind::Protocol);
    assert!(message.contains("Apply carries no payload, but 8 bytes came with it"), "{message}");
    still_serves(&server, "after", &[]);
}

#[test]
fn an_upload_session_can_neither_replace_nor_remove_its_root() {
    let server = Server::start(&[]);
    varied_tree(&server.path("d"), CHUNK as usize);
    let before = snapshot(&server.path("d"));
    let (mut raw, _) = Raw::opened(server.port, None, upload("d"));
    let root = RelPath::root();
    let message = raw.request_fails(
        1,
        Message::Begin { path: root.clone(), size: 3 * CHUNK as u64 },
        Bytes::new(),
        ErrorKind::Denied,
    );
    assert!(message.contains("the root itself"), "{message}");
    let data = Bytes::from_static(b"root?");
    let put = Message::PutFile { path: root.clone(), meta: meta(), digest: digest(&data) };
    raw.request_fails(2, put, data.clone(), ErrorKind::Denied);
    let file = SmallFile { path: root.clone(), meta: meta(), len: data.len() as u32, digest: digest(&data) };
    match raw.request(3, Message::PutFiles { files: vec![file] }, data) {
        Message::FilesPut { failures } => assert_eq!(failures.len(), 1, "{failures:?}"),
        other => panic!("expected FilesPut, got {other:?}"),
    }
    let target = ByteBuf::from(b"/".to_vec());
    let actions = vec![
        Action::Symlink { path: root.clone(), target, mtime: meta().mtime },
        Action::MakeDir { path: root.clone() },
        Action::Remove { path: root.clone(), kind: Kind::Dir },
        Action::Remove { path: root.clone(), kind: Kind::File },
        Action::SetMeta { path: root.clone(), kind: Kind::File, meta: meta() },
    ];
    match raw.request(4, Message::Apply { actions }, Bytes::new()) {
        Message::Applied { failures } => {
            assert_eq!(failures.len(), 5, "{failures:?}");
            assert!(failures.iter().all(|(path, why)| path.is_root() && why.contains("the root itself")));
        }
        other => panic!("expected Applied, got {other:?}"),
    }
    raw.close_session(5);
    assert!(snapshot(&server.path("d")) == before, "the session's root changed");
    still_serves(&server, "after", &[]);
}

#[test]
fn a_setuid_bit_cannot_be_planted_by_calling_a_file_a_directory() {
    let server = Server::start(&[]);
    file(&server.path("d/tool"), b"#!/bin/sh\n", 0o755, (1, 0));
    let (mut raw, _) = Raw::opened(server.port, None, upload("d"));
    let setuid = Meta { mode: 0o6755, ..meta() };
    let actions = vec![Action::SetMeta { path: rel("tool"), kind: Kind::Dir, meta: setuid }];
    assert_eq!(
        raw.request(1, Message::Apply { actions }, Bytes::new()),
        Message::Applied { failures: vec![] }
    );
    assert_eq!(fs::metadata(server.path("d/tool")).unwrap().permissions().mode() & 0o7777, 0o755);
    raw.close_session(2);
}

#[test]
fn writing_in_place_into_a_setuid_program_clears_its_bits_first() {
    let server = Server::start(&[]);
    file(&server.path("d/prog"), &noise(3 * CHUNK as usize, 5), 0o4755, (1, 0));
    let mut spec = upload("d");
    spec.inplace = true;
    let (mut raw, _) = Raw::opened(server.port, None, spec);
    let handle =
        match raw.request(1, Message::Begin { path: rel("prog"), size: 3 * CHUNK as u64 }, Bytes::new()) {
            Message::Begun { handle, .. } => handle,
            other => panic!("expected Begun, got {other:?}"),
        };
    let data = Bytes::from_static(b"#!/bin/sh\nid\n");
    let write = Message::Write { handle, offset: 0, digest: digest(&data) };
    assert_eq!(raw.request(2, write, data), Message::Done);
    // Abandoned without Finish: the program has new bytes, but no setuid.
    assert_eq!(raw.request(3, Message::Discard { handle, remove: false }, Bytes::new()), Message::Done);
    assert_eq!(fs::metadata(server.path("d/prog")).unwrap().permissions().mode() & 0o7777, 0o755);
    raw.close_session(4);
}

#[test]
fn forbidden_paths_make_the_frame_malformed() {
    let outer = tempfile::tempdir().unwrap();
    let root = tempfile::Builder::new().prefix("root").tempdir_in(outer.path()).unwrap();
    let server = Server::start_in(root, &[]);
    let bad: [&[u8]; 7] = [b"..", b"../x", b"a/../../x", b"/etc/x", b"a\0b", b"a//b", b"a/"];
    // A fresh upload directory per session: a session whose connection was
    // just refused may still hold its directory for a moment.
    let mut sessions = 0;
    let mut next_upload = || {
        sessions += 1;
        upload(&format!("d/{sessions}"))
    };
    for path in bad {
        let shown = String::from_utf8_lossy(path).into_owned();
        let msgs = [
            mirror::Msg::Begin { path: ByteBuf::from(path), size: 1 },
            mirror::Msg::Probe { paths: vec![ByteBuf::from(&b"ok"[..]), ByteBuf::from(path)] },
            mirror::Msg::PutFile { path: ByteBuf::from(path), meta: meta(), digest: digest(b"x") },
        ];
        for msg in msgs {
            let payload: &[u8] = if matches!(msg, mirror::Msg::PutFile { .. }) { b"x" } else { b"" };
            let (mut raw, _) = Raw::opened(server.port, None, next_upload());
            raw.send_bytes(&msg.frame(1, payload));
            let message = raw.refused(ErrorKind::Protocol);
            assert!(message.starts_with("malformed message"), "{shown:?}: {message}");
            assert!(message.contains("path"), "{shown:?}: {message}");
        }
        // A Read in a download session.
        let (mut raw, _) = Raw::opened(server.port, None, download(""));
        let read = mirror::Msg::Read { path: ByteBuf::from(path), offset: 0, len: 1 };
        raw.send_bytes(&read.frame(1, b""));
        raw.refused(ErrorKind::Protocol);
        // The session path of an Open.
        let spec = mirror::Spec::with_path(&upload(""), path);
        let mut raw = Raw::connect(server.port);
        raw.hello();
        raw.send_bytes(&mirror::Msg::Open { proof: None, spec }.frame(0, b""));
        let message = raw.refused(ErrorKind::Protocol);
        assert!(message.contains("malformed message"), "{shown:?}: {message}");
    }
    // Nothing was made beside the root, nor in it but the sessions' empty
    // directories.
    assert_eq!(fs::read_dir(outer.path()).unwrap().count(), 1);
    let made = listing(server.root.path());
    assert_eq!(made.len(), 1 + sessions, "{made:?}");
    assert!(
        made.iter().all(|p| p == "d" || p.strip_prefix("d/").is_some_and(|n| n.parse::<u32>().is_ok())),
        "{made:?}"
    );
    still_serves(&server, "after", &[]);
}

#[test]
fn requests_against_the_session_direction_are_denied() {
    let server = Server::start(&[]);
    file(&server.path("src/f"), b"source file", 0o644, (1, 0));

    // Reading from an upload session.
    let (mut raw, _) = Raw::opened(server.port, None, upload("src"));
    let read = Message::Read { path: rel("f"), offset: 0, len: 4 };
    let message = raw.request_fails(1, read, Bytes::new(), ErrorKind::Denied);
    assert!(message.contains("upload session"), "{message}");
    let read = Message::ReadFiles { files: vec![(rel("f"), 4)] };
    let message = raw.request_fails(2, read, Bytes::new(), ErrorKind::Denied);
    assert!(message.contains("upload session"), "{message}");
    raw.pings(3);
    raw.close_session(4);

    // Changing the tree of a download session.
    let (mut raw, _) = Raw::opened(server.port, None, download("src"));
    let put = Message::PutFile { path: rel("new"), meta: meta(), digest: digest(b"data") };
    let message = raw.request_fails(1, put, Bytes::from_static(b"data"), ErrorKind::Denied);
    assert!(message.contains("download session") && message.contains("PutFile"), "{message}");
    let denied = [
        Message::PutFile { path: rel("f"), meta: meta(), digest: digest(b"data") },
        Message::PutFiles {
            files: vec![SmallFile { path: rel("f"), meta: meta(), len: 4, digest: digest(b"data") }],
        },
        Message::Begin { path: rel("f"), size: 4 },
        Message::Apply { actions: vec![Action::Remove { path: rel("f"), kind: pareco::codec::Kind::File }] },
        Message::Apply { actions: vec![Action::MakeDir { path: rel("dir") }] },
    ];
    for (id, msg) in (2..).zip(denied) {
        let payload = if msg.has_payload() { Bytes::from_static(b"data") } else { Bytes::new() };
        raw.request_fails(id, msg, payload, ErrorKind::Denied);
    }
    raw.pings(11);
    raw.close_session(12);
    assert_eq!(listing(&server.path("src")), ["f"]);
    assert_eq!(fs::read(server.path("src/f")).unwrap(), b"source file");
    still_serves(&server, "after", &[]);
}

#[test]
fn put_files_answers_file_by_file_and_refuses_lengths_that_do_not_add_up() {
    let (_outer, outside, server) = server_beside_outside();
    fs::create_dir(server.path("d")).unwrap();
    std::os::unix::fs::symlink(&outside, server.path("d/out")).unwrap();

    let (mut raw, _) = Raw::opened(server.port, None, upload("d"));
    let small = |path: &str, data: &[u8], claimed: &[u8]| SmallFile {
        path: rel(path),
        meta: meta(),
        len: data.len() as u32,
        digest: digest(claimed),
    };
    let files = vec![
        small("a", b"one", b"one"),
        small("out/b", b"two", b"two"),
        small("sub/c", b"three", b"not three"),
        small("sub/empty", b"", b""),
        small("e", b"four", b"four"),
    ];
    let payload = Bytes::from_static(b"onetwothreefour");
    match raw.request(1, Message::PutFiles { files }, payload) {
        Message::FilesPut { failures } => {
            let got: Vec<(u32, ErrorKind)> = failures.iter().map(|f| (f.index, f.kind)).collect();
            assert_eq!(got, [(1, ErrorKind::Denied), (2, ErrorKind::DigestMismatch)], "{failures:?}");
            assert!(failures[1].message.contains("sub/c"), "{failures:?}");
        }
        other => panic!("expected FilesPut, got {other:?}"),
    }
    assert_eq!(fs::read(server.path("d/a")).unwrap(), b"one");
    assert_eq!(fs::read(server.path("d/e")).unwrap(), b"four");
    assert_eq!(fs::read(server.path("d/sub/empty")).unwrap(), b"");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(fs::metadata(server.path("d/e")).unwrap().permissions().mode() & 0o7777, meta().mode);
    assert_eq!(listing(&server.path("d/sub")), ["empty"], "no torn or temporary file");
    assert!(listing(&outside).is_empty(), "nothing written through the link");

    // Lengths that claim more (or fewer) bytes than the payload has: the
    // request fails as a whole, nothing is written, the session goes on.
    for (id, claimed) in [(2, 5), (3, 3)] {
        let files = vec![SmallFile { path: rel("f"), meta: meta(), len: claimed, digest: digest(b"four") }];
        let message = raw.request_fails(
            id,
            Message::PutFiles { files },
            Bytes::from_static(b"four"),
            ErrorKind::Protocol,
        );
        assert!(message.contains("bytes"), "{message}");
    }
    assert!(!server.path("d/f").exists());
    raw.pings(4);
    raw.close_session(5);
    still_serves(&server, "after", &[]);
}

#[test]
fn read_files_answers_file_by_file_and_refuses_more_than_a_chunk() {
    let (_outer, outside, server) = server_beside_outside();
    let outside = outside.join("secret");
    file(&outside, b"secret", 0o644, (1, 0));
    file(&server.path("s/a"), b"alpha", 0o644, (1, 0));
    file(&server.path("s/sub/b"), b"beta", 0o600, (2, 5));
    std::os::unix::fs::symlink(&outside, server.path("s/link")).unwrap();

    let (mut raw, _) = Raw::opened(server.port, None, download("s"));
    let files = vec![(rel("a"), 5), (rel("gone"), 3), (rel("link"), 6), (rel("sub/b"), 4), (rel("sub"), 1)];
    let (msg, payload) = raw.request_with_payload(1, Message::ReadFiles { files }, Bytes::new());
    let Message::FilesRead { files } = msg else { panic!("expected FilesRead, got {msg:?}") };
    assert_eq!(payload, Bytes::from_static(b"alphabeta"));
    let outcome: Vec<Result<(u64, i64), ErrorKind>> = files
        .iter()
        .map(|f| match f {
            FileRead::Read { file, .. } => Ok((file.size, file.meta.mtime.secs)),
            FileRead::Failed { kind, .. } => Err(*kind),
        })
        .collect();
    // The symlink is not followed (it is not a regular file), nor is the
    // directory read.
    assert_eq!(outcome[0], Ok((5, 1)));
    assert_eq!(outcome[1], Err(ErrorKind::NotFound));
    assert!(outcome[2].is_err(), "{files:?}");
    assert_eq!(outcome[3], Ok((4, 2)));
    assert!(outcome[4].is_err(), "{files:?}");
    if let FileRead::Read { digest: got, .. } = &files[3] {
        assert_eq!(*got, digest(b"beta"));
    }

    // More bytes in all than one chunk: refused as a whole.
    let files = vec![(rel("a"), 1 << 20), (rel("sub/b"), 1)];
    let message = raw.request_fails(2, Message::ReadFiles { files }, Bytes::new(), ErrorKind::Protocol);
    assert!(message.contains("chunk size"), "{message}");
    raw.pings(3);
    raw.close_session(4);
    still_serves(&server, "after", &[]);
}

#[test]
fn symlinks_out_of_the_root_are_not_followed() {
    let (outer, outside, server) = server_beside_outside();
    fs::create_dir(server.path("d")).unwrap();
    std::os::unix::fs::symlink(&outside, server.path("d/abs")).unwrap();
    std::os::unix::fs::symlink("../../outside", server.path("d/rel")).unwrap();
    assert!(server.path("d/rel/.").is_dir(), "the relative link does lead outside");

    let (mut raw, _) = Raw::opened(server.port, None, upload("d"));
    let mut id = 0;
    let mut next = || {
        id += 1;
        id
    };
    for link in ["abs", "rel"] {
        for name in [format!("{link}/x"), format!("{link}/new/x")] {
            let begin = Message::Begin { path: rel(&name), size: 3 };
            let message = raw.request_fails(next(), begin, Bytes::new(), ErrorKind::Denied);
            assert!(message.contains("outside the synced root"), "{name}: {message}");
            let put = Message::PutFile { path: rel(&name), meta: meta(), digest: digest(b"abc") };
            let message = raw.request_fails(next(), put, Bytes::from_static(b"abc"), ErrorKind::Denied);
            assert!(message.contains("outside the synced root"), "{name}: {message}");
            assert!(!message.contains(outer.path().to_str().unwrap()), "{message}");
        }
        let apply = Message::Apply {
            actions: vec![
                Action::MakeDir { path: rel(&format!("{link}/dir")) },
                Action::Symlink {
                    path: rel(&format!("{link}/sym")),
                    target: ByteBuf::from(&b"/etc"[..]),
                    mtime: Mtime { secs: 1, nanos: 0 },
                },
            ],
        };
        match raw.request(next(), apply, Bytes::new()) {
            Message::Applied { failures } => assert_eq!(failures.len(), 2, "{failures:?}"),
            other => panic!("expected Applied, got {other:?}"),
        }
        // Looking through the link is refused too.
        let probe = Message::Probe { paths: vec![rel(&format!("{link}/x"))] };
        let message = raw.request_fails(next(), probe, Bytes::new(), ErrorKind::Denied);
        assert!(message.contains("outside the synced root"), "{message}");
    }
    raw.pings(next());
    raw.close_session(next());

    // A session cannot be opened through the link either.
    let mut raw = Raw::connect(server.port);
    raw.open(None, upload("d/abs/sub"));
    let message = raw.refused(ErrorKind::Denied);
    assert!(message.contains("outside the synced root"), "{message}");
    let mut raw = Raw::connect(server.port);
    raw.open(None, download("d/rel"));
    raw.refused(ErrorKind::Denied);

    assert_eq!(listing(&outside), Vec::<String>::new(), "something was made outside the root");
    assert_eq!(fs::read_link(server.path("d/abs")).unwrap(), outside);
    still_serves(&server, "after", &[]);
}

// ---------------------------------------------------------------------------
// What errors and logs reveal
// ---------------------------------------------------------------------------

#[test]
fn errors_before_authentication_reveal_no_server_path() {
    let server = Server::start(&["-a", TOKEN]);
    let root = server.root.path().to_str().unwrap().to_owned();
    let real_root = fs::canonicalize(server.root.path()).unwrap().to_str().unwrap().to_owned();
    let mut messages = Vec::new();
    let mut refused = |bytes: Vec<u8>, after_hello: bool, kind: ErrorKind| {
        let mut raw = Raw::connect(server.port);
        if after_hello {
            raw.hello();
        }
        raw.send_bytes(&bytes);
        messages.push(raw.refused(kind));
    };
    let hello = |version| {
        frame_bytes(&Packet::new(0, Message::Hello { version, nonce: ByteBuf::from(vec![0x5a; 32]) }))
    };
    refused(raw_frame(&[0xC1], &[]), false, ErrorKind::Protocol);
    refused(hello(PROTOCOL_VERSION + 1), false, ErrorKind::Version);
    refused(frame_bytes(&Packet::new(0, Message::Ping)), false, ErrorKind::Protocol);
    refused(prefix(MAX_HEADER_LEN as u32 + 1, 0).to_vec(), false, ErrorKind::Protocol);
    refused(
        frame_bytes(&Packet::new(0, Message::Open { proof: None, spec: upload("d") })),
        true,
        ErrorKind::Auth,
    );
    let missing = Message::Open { proof: None, spec: download("no/such/dir") };
    refused(frame_bytes(&Packet::new(0, missing)), true, ErrorKind::Auth);
    let wrong = Message::Open { proof: Some(ByteBuf::from(vec![7u8; 32])), spec: upload("etc") };
    refused(frame_bytes(&Packet::new(0, wrong)), true, ErrorKind::Auth);
    refused(
        frame_bytes(&Packet::new(0, Message::Join { session: 1, proof: None })),
        true,
        ErrorKind::NoSession,
    );
    refused(frame_bytes(&Packet::new(0, Message::Ping)), true, ErrorKind::Protocol);
    let bad_path = mirror::Msg::Begin { path: ByteBuf::from(&b"../../etc/passwd"[..]), size: 1 };
    refused(bad_path.frame(0, b""), true, ErrorKind::Protocol);
    assert_eq!(messages.len(), 10);
    for message in &messages {
        assert!(!message.contains(&root) && !message.contains(&real_root), "{message}");
        assert!(!message.contains(TOKEN), "{message}");
    }
    assert_eq!(listing(server.root.path()), Vec::<String>::new());
    still_serves(&server, "after", &["-a", TOKEN]);
}

#[test]
fn token_never_appears_in_the_server_log() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    fs::create_dir(&root).unwrap();
    let log_path = dir.path().join("server.log");
    let log = fs::File::create(&log_path).unwrap();
    let mut child = Command::new(BIN)
        .args(["listen", "--bind", "127.0.0.1:0", "-vv", "-a", TOKEN, "--root"])
        .arg(&root)
        .env_remove("PARECO_TOKEN")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start server");
    let started = Instant::now();
    let port: u16 = loop {
        let text = fs::read_to_string(&log_path).unwrap();
        if let Some(line) = text.lines().find_map(|l| l.strip_prefix("listening on ")) {
            break line.rsplit(':').next().unwrap().parse().unwrap();
        }
        assert!(child.try_wait().unwrap().is_none(), "server exited:\n{text}");
        assert!(started.elapsed() < WAIT, "server not listening after {WAIT:?}:\n{text}");
        std::thread::sleep(Duration::from_millis(10));
    };
    let url = |path: &str| format!("pareco://127.0.0.1:{port}/{path}");
    let src = tempfile::tempdir().unwrap();
    file(&src.path().join("f.txt"), b"secret-free content\n", 0o644, (1_600_000_000, 0));
    file(&src.path().join("big"), &noise(5 * CHUNK as usize, 8), 0o644, (1_600_000_000, 0));
    let local = src.path().to_str().unwrap();

    // Failing: a wrong token, a missing one, a raw client with a bad proof.
    let wrong = format!("{TOKEN}-but-wrong");
    for args in [vec!["send", local, &url("a"), "-a", &wrong], vec!["send", local, &url("a")]] {
        let out = pareco(&args);
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        assert!(!stderr(&out).contains(TOKEN), "{}", stderr(&out));
    }
    let mut raw = Raw::connect(port);
    raw.open(Some(&wrong), upload("a"));
    raw.refused(ErrorKind::Auth);
    // Succeeding, both ways, with several connections.
    let up = sync_ok(&["send", local, &url("a"), "-a", TOKEN, "-c", "4096", "-n", "3", "-vv"]);
    assert_eq!(up["files_transferred"], 2, "{up}");
    let back = tempfile::tempdir().unwrap();
    sync_ok(&["recv", &url("a"), back.path().to_str().unwrap(), "-a", TOKEN, "-c", "4096", "-n", "3"]);
    assert_same_tree(src.path(), back.path());

    let _ = child.kill();
    let _ = child.wait();
    let log = fs::read_to_string(&log_path).unwrap();
    assert!(log.contains("wrong token"), "the refusals are logged:\n{log}");
    assert!(log.contains("opened"), "the sessions are logged:\n{log}");
    assert!(!log.contains(TOKEN), "the token is in the server log:\n{log}");
}

#[test]
fn absurd_hash_spans_are_answered_not_fatal() {
    let server = Server::start(&[]);
    file(&server.path("d/f"), &noise(10_000, 1), 0o644, (1, 0));
    let (mut raw, _) = Raw::opened(server.port, None, download("d"));
    // A group of 4 billion chunks and a count to match: the server must
    // size nothing by them.
    for (id, group, count) in [(1, u32::MAX, u32::MAX), (2, u32::MAX, 3), (3, 0, u32::MAX)] {
        let span = Span { size: u64::MAX, first: 0, count, group };
        match raw.request(id, Message::Hash { target: HashTarget::Path(rel("f")), span }, Bytes::new()) {
            Message::Hashes { .. } | Message::Error { .. } => {}
            other => panic!("unexpected answer {other:?}"),
        }
    }
    raw.pings(4);
    raw.close_session(5);
    still_serves(&server, "after", &[]);
}

#[test]
fn a_fifo_in_the_way_of_a_directory_is_replaced() {
    let server = Server::start(&[]);
    std::fs::create_dir_all(server.path("d")).unwrap();
    let fifo = rustix::fs::FileType::Fifo;
    rustix::fs::mknodat(rustix::fs::CWD, server.path("d/sub"), fifo, rustix::fs::Mode::from(0o644), 0)
        .unwrap();
    let src = tempfile::tempdir().unwrap();
    file(&src.path().join("sub/inner.txt"), b"inside", 0o644, (1, 0));
    sync_ok(&["send", src.path().to_str().unwrap(), &server.url("d")]);
    assert_same_tree(src.path(), &server.path("d"));
}

#[test]
fn a_fifo_named_by_a_client_does_not_hang_the_server() {
    let server = Server::start(&[]);
    std::fs::create_dir_all(server.path("d")).unwrap();
    let fifo = rustix::fs::FileType::Fifo;
    rustix::fs::mknodat(rustix::fs::CWD, server.path("d/pipe"), fifo, rustix::fs::Mode::from(0o644), 0)
        .unwrap();
    let (mut raw, _) = Raw::opened(server.port, None, download("d"));
    let message = raw.request_fails(
        1,
        Message::Read { path: rel("pipe"), offset: 0, len: 10 },
        Bytes::new(),
        ErrorKind::Denied,
    );
    assert!(message.contains("not a regular file"), "{message}");
    let span = Span { size: 10, first: 0, count: 1, group: 1 };
    raw.request_fails(
        2,
        Message::Hash { target: HashTarget::Path(rel("pipe")), span },
        Bytes::new(),
        ErrorKind::Denied,
    );
    raw.pings(3);
    raw.close_session(4);
    still_serves(&server, "after", &[]);
}
