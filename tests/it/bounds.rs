//! One client can only hurt its own session: the server's bounds on what a
//! session, a stopped client or a peer that has proved nothing can take
//! (threads, memory, descriptors, disk).

use std::fs;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::time::Duration;

use bytes::Bytes;
use pareco::codec::{ErrorKind, HashTarget, Message, Packet, Span};

use crate::raw::*;
use crate::util::*;

/// Shrinks a connection's receive buffer, so that a client that stops
/// reading stops the server's writes soon.
fn small_receive_buffer(raw: &Raw) {
    let size: libc::c_int = 4096;
    // SAFETY: setsockopt on a socket we own, with a pointer to a c_int
    // that lives across the call.
    let done = unsafe {
        libc::setsockopt(
            raw.stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&size as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(done, 0, "setsockopt");
}

#[test]
fn clients_that_stop_reading_freeze_nothing_and_expire_with_everything_they_held() {
    let server = Server::start(&["--session-timeout", "2s", "--max-sessions", "24"]);
    // A listing of a few thousand entries, most of which cannot leave the
    // server while nobody reads.
    let big = server.path("big");
    for d in 0..10 {
        fs::create_dir_all(big.join(format!("{d}"))).unwrap();
        for i in 0..500 {
            fs::write(big.join(format!("{d}/{i:04}-{}", "n".repeat(60))), b"").unwrap();
        }
    }
    // More stalled walks than the server has threads for file work.
    let stalled: Vec<Raw> = (0..20)
        .map(|_| {
            let (mut raw, _) = Raw::opened(server.port, None, download("big"));
            small_receive_buffer(&raw);
            raw.send(1, Message::Walk);
            raw
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    // Every other session is served as usual, at once.
    let src = tempfile::tempdir().unwrap();
    file(&src.path().join("sub/chunks.bin"), &noise(3 * CHUNK as usize + 5, 21), 0o600, (1_600_000_002, 2));
    let url = server.url("after");
    sync_within(
        &["send", src.path().to_str().unwrap(), &url, "-c", "4096", "-n", "2"],
        Duration::from_secs(10),
    );
    assert_same_tree(src.path(), &server.path("after"));
    // The stalled sessions expire, and what they held goes with them: 23
    // sessions can open again.
    std::thread::sleep(Duration::from_secs(4));
    let opened: Vec<(Raw, Ticket)> =
        (0..23).map(|_| Raw::opened(server.port, None, download("big"))).collect();
    assert_eq!(opened.len(), 23);
    drop(stalled);
}

#[test]
fn a_session_holds_at_most_its_memory_budget() {
    let server = Server::start(&[]);
    file(&server.path("d/f"), b"tiny", 0o644, (1, 0));
    // 64 MiB chunks, and reads far past the end of a 4-byte file: each
    // answer is 64 MiB of zeros. 128 of them asked for at once, none read.
    let mut spec = download("d");
    spec.chunk_size = 64 << 20;
    let mut raw = Raw::connect(server.port);
    raw.open(None, spec);
    match raw.recv() {
        Some(pareco::codec::Packet { msg: Message::Welcome { .. }, .. }) => {}
        other => panic!("expected Welcome, got {other:?}"),
    }
    small_receive_buffer(&raw);
    for id in 1..=128 {
        raw.send(id, Message::Read { path: rel("f"), offset: 1 << 40, len: 64 << 20 });
    }
    std::thread::sleep(Duration::from_secs(3));
    // 8 GiB asked for; the budget is 256 MiB.
    let peak = server.peak_memory();
    assert!(peak < 768 << 20, "server peak memory {} MiB", peak >> 20);
    drop(raw);
    still_serves(&server, "after", &[]);
}

#[test]
fn hash_spans_are_capped() {
    let server = Server::start(&[]);
    file(&server.path("d/f"), &noise(10 * CHUNK as usize, 1), 0o644, (1, 0));
    let (mut raw, _) = Raw::opened(server.port, None, download("d"));
    let size = 1 << 42;
    let hash = |count, group| Message::Hash {
        target: HashTarget::Path(rel("f")),
        span: Span { size, first: 0, count, group },
    };
    for (id, count) in [(1, 1025), (2, u32::MAX)] {
        let message = raw.request_fails(id, hash(count, 1), Bytes::new(), ErrorKind::Limit);
        assert!(message.contains("at most 1024 chunks"), "{message}");
    }
    // The most a request may ask: answered (for the chunks the file holds).
    match raw.request(3, hash(1024, 1), Bytes::new()) {
        Message::Hashes { digests } => assert_eq!(digests.0.len(), 10 * 8),
        other => panic!("expected Hashes, got {other:?}"),
    }
    raw.close_session(4);
}

#[test]
fn a_session_builds_at_most_512_files_at_once() {
    let server = Server::start(&[]);
    let (mut raw, _) = Raw::opened(server.port, None, upload("d"));
    let mut handles = Vec::new();
    for i in 0..512u32 {
        match raw.request(i + 1, Message::Begin { path: rel(&format!("f{i}")), size: 10 }, Bytes::new()) {
            Message::Begun { handle, .. } => handles.push(handle),
            other => panic!("Begin {i}: {other:?}"),
        }
    }
    let message = raw.request_fails(
        600,
        Message::Begin { path: rel("one-more"), size: 10 },
        Bytes::new(),
        ErrorKind::Limit,
    );
    assert!(message.contains("512 files are being built"), "{message}");
    // Finishing one makes room for another.
    assert_eq!(
        raw.request(601, Message::Discard { handle: handles[0], remove: true }, Bytes::new()),
        Message::Done
    );
    assert!(matches!(
        raw.request(602, Message::Begin { path: rel("one-more"), size: 10 }, Bytes::new()),
        Message::Begun { .. }
    ));
    raw.close_session(603);
}

#[test]
fn copying_from_a_sparse_old_file_allocates_nothing_for_its_holes() {
    let server = Server::start(&[]);
    // An old file of 1 GiB that holds 4 KiB of data.
    let old = server.path("d/sparse");
    fs::create_dir_all(old.parent().unwrap()).unwrap();
    let f = fs::File::create(&old).unwrap();
    f.set_len(1 << 30).unwrap();
    f.write_all_at(&noise(4096, 3), 1 << 29).unwrap();
    drop(f);
    let (mut raw, _) = Raw::opened(server.port, None, upload("d"));
    let handle = match raw.request(1, Message::Begin { path: rel("sparse"), size: 1 << 30 }, Bytes::new()) {
        Message::Begun { handle, .. } => handle,
        other => panic!("expected Begun, got {other:?}"),
    };
    // A few bytes on the wire ask for the whole gigabyte, 64 MiB (the
    // most one request may copy) at a time.
    for (id, k) in (2..).zip(0..16u64) {
        let ranges = vec![(k << 26, 1 << 26)];
        assert_eq!(raw.request(id, Message::CopyOld { handle, ranges }, Bytes::new()), Message::Done);
    }
    let temp = temp_of(&server.path("d"), "sparse");
    assert!(fs::metadata(&temp).unwrap().blocks() * 512 < 1 << 20, "the copy allocated its holes");
    assert_eq!(raw.request(30, Message::Finish { handle, meta: meta() }, Bytes::new()), Message::Done);
    let new = fs::File::open(&old).unwrap();
    let mut got = vec![0u8; 4096];
    new.read_exact_at(&mut got, 1 << 29).unwrap();
    assert_eq!(got, noise(4096, 3));
    raw.close_session(31);
}

#[test]
fn handshakes_in_progress_are_capped_and_the_rest_wait_their_turn() {
    let server = Server::start(&[]);
    // 256 connections that never say a word hold every handshake slot.
    let mut idle: Vec<std::net::TcpStream> =
        (0..256).map(|_| std::net::TcpStream::connect(("127.0.0.1", server.port)).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(300));
    // The next one waits: its Hello gets no Challenge yet...
    let mut next = Raw::connect(server.port);
    next.stream.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    next.send(
        0,
        Message::Hello {
            version: pareco::codec::PROTOCOL_VERSION,
            nonce: serde_bytes::ByteBuf::from(vec![0x5a; 32]),
        },
    );
    let mut byte = [0u8; 1];
    let waited = std::io::Read::read(&mut next.stream, &mut byte);
    assert!(waited.is_err(), "answered while 256 handshakes were in progress: {waited:?}");
    // ...until one of them goes.
    idle.pop();
    next.stream.set_read_timeout(Some(WAIT)).unwrap();
    match next.recv() {
        Some(pareco::codec::Packet { msg: Message::Challenge { .. }, .. }) => {}
        other => panic!("expected Challenge, got {other:?}"),
    }
    drop(idle);
}

#[test]
fn glob_lists_are_capped() {
    let server = Server::start(&[]);
    let mut spec = download("d");
    spec.includes = (0..65).map(|i| format!("{i}*.txt")).collect();
    fs::create_dir_all(server.path("d")).unwrap();
    let mut raw = Raw::connect(server.port);
    raw.open(None, spec);
    let message = raw.refused(ErrorKind::Denied);
    assert!(message.contains("more than 64 patterns"), "{message}");
}

#[test]
fn the_server_raises_its_open_file_limit_to_the_hard_limit() {
    use std::io::{BufRead, BufReader};
    let root = tempfile::tempdir().unwrap();
    // Started with a soft limit of 256, as some systems start processes.
    let script =
        format!("ulimit -Sn 256 && exec {BIN} listen --bind 127.0.0.1:0 --root {}", root.path().display());
    let mut child = std::process::Command::new("sh")
        .args(["-c", &script])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    while !lines.next().expect("server output").unwrap().starts_with("listening on") {}
    let limits = fs::read_to_string(format!("/proc/{}/limits", child.id())).unwrap();
    let _ = child.kill();
    let _ = child.wait();
    let line = limits.lines().find(|l| l.starts_with("Max open files")).expect("a limit line");
    // "Max open files  SOFT  HARD  files"
    let fields: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(fields[3], fields[4], "{line}");
}

#[test]
fn one_copy_request_is_a_bounded_step() {
    let server = Server::start(&[]);
    file(&server.path("d/old"), &noise(1 << 20, 4), 0o644, (1, 0));
    let (mut raw, _) = Raw::opened(server.port, None, upload("d"));
    let handle = match raw.request(1, Message::Begin { path: rel("old"), size: 1 << 20 }, Bytes::new()) {
        Message::Begun { handle, .. } => handle,
        other => panic!("expected Begun, got {other:?}"),
    };
    // The same range again and again would be unbounded work from a few
    // bytes: ranges must be in order, without overlaps...
    let again = vec![(0, 1 << 20); pareco::codec::MAX_LIST];
    let message =
        raw.request_fails(2, Message::CopyOld { handle, ranges: again }, Bytes::new(), ErrorKind::Protocol);
    assert!(message.contains("out of order"), "{message}");
    let backwards = vec![(4096, 4096), (0, 4096)];
    raw.request_fails(3, Message::CopyOld { handle, ranges: backwards }, Bytes::new(), ErrorKind::Protocol);
    // ...and good ones are copied.
    let forwards = vec![(0, 4096), (4096, 4096), (1 << 19, 1 << 19)];
    assert_eq!(raw.request(4, Message::CopyOld { handle, ranges: forwards }, Bytes::new()), Message::Done);
    raw.close_session(5);
    // A list longer than any request may carry is refused as it is decoded
    // (20 000 ranges of a few bytes each hold 0.5 MB in memory).
    let (mut raw, _) = Raw::opened(server.port, None, upload("d"));
    raw.send(1, Message::CopyOld { handle: 1, ranges: vec![(0, 1); 20_000] });
    match raw.recv() {
        Some(Packet { id: 0, msg: Message::Error { kind: ErrorKind::Protocol, message }, .. }) => {
            assert!(message.contains("at most 4096 items"), "{message}")
        }
        other => panic!("expected a protocol error, got {other:?}"),
    }
}

#[test]
fn probes_walks_and_connections_of_a_session_are_capped() {
    let server = Server::start(&[]);
    let big = server.path("d/big");
    for i in 0..3000 {
        fs::create_dir_all(big.join(format!("{}", i % 30))).unwrap();
        fs::write(big.join(format!("{}/{i}", i % 30)), b"").unwrap();
    }
    // A probe names at most 1024 paths (each answer may carry a 4 KiB
    // symlink target).
    let (mut raw, session) = Raw::opened(server.port, None, upload("d"));
    let paths = vec![rel("x"); 1025];
    let message = raw.request_fails(1, Message::Probe { paths }, Bytes::new(), ErrorKind::Limit);
    assert!(message.contains("at most 1024 paths"), "{message}");
    // Two walks at once at most: the third, sent with them, is refused.
    for id in [2, 3, 4] {
        raw.send(id, Message::Walk);
    }
    let mut ends = Vec::new();
    while ends.len() < 3 {
        match raw.recv().expect("an answer") {
            Packet { id, msg: Message::Error { kind, message }, .. } => {
                ends.push((id, format!("{kind:?}: {message}")))
            }
            Packet { id, msg: Message::Listing { done: true, .. }, .. } => ends.push((id, "done".into())),
            _ => {}
        }
    }
    let refused: Vec<_> = ends.iter().filter(|(_, end)| end.contains("at most 2 trees at once")).collect();
    assert_eq!(refused.len(), 1, "{ends:?}");
    // Connections, by chunk size: 512 MiB of frames being read at most,
    // so 8 connections of 64 MiB chunks.
    let mut spec = upload("e");
    spec.chunk_size = 64 << 20;
    let mut connections = vec![Raw::connect(server.port)];
    connections[0].open(None, spec);
    let ticket = connections[0].welcome();
    for _ in 1..8 {
        let mut joined = Raw::connect(server.port);
        joined.join(None, ticket);
        assert_eq!(joined.welcome(), ticket);
        connections.push(joined);
    }
    // A ninth takes the place of the one silent longest (the opening
    // one): never more than eight.
    let mut ninth = Raw::connect(server.port);
    ninth.join(None, ticket);
    assert_eq!(ninth.welcome(), ticket);
    connections[0].closed();
    drop((raw, session, connections));
}

#[test]
fn a_client_keeps_no_more_connections_than_the_server_takes() {
    let server = Server::start(&["--max-connections", "2"]);
    let src = tempfile::tempdir().unwrap();
    for i in 0..6 {
        file(&src.path().join(format!("f{i}")), &noise(300_000, i), 0o644, (1_600_000_000, 0));
    }
    let out =
        pareco(&["send", src.path().to_str().unwrap(), &server.url("d"), "-n", "8", "-c", "64KiB", "--json"]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("the server takes at most 2 connections for this session; using 2"), "{err}");
    // No connection took the place of another.
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["reconnects"], 0, "{report}");
    assert_same_tree(src.path(), &server.path("d"));
}

#[test]
fn connections_auto_grows_while_the_transfer_gets_faster_and_never_past_the_server() {
    let server = Server::start(&["--max-connections", "6"]);
    let src = tempfile::tempdir().unwrap();
    for i in 0..8 {
        file(&src.path().join(format!("f{i}")), &noise(8 << 20, i), 0o644, (1_600_000_000, 0));
    }
    let args = [
        "send",
        src.path().to_str().unwrap(),
        &server.url("d"),
        "-n",
        "auto",
        "-c",
        "256KiB",
        "--json",
        "-v",
    ];
    let out = pareco(&args);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(!err.contains("takes at most"), "{err}");
    // It starts with 4 and settles there, or doubles once and stops at the
    // server's 6.
    for line in err.lines().filter(|l| l.contains("-n auto: settled on")) {
        assert!(
            line.ends_with("settled on 4 connections") || line.ends_with("settled on 6 connections"),
            "{err}"
        );
    }
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["reconnects"], 0, "{report}");
    assert_same_tree(src.path(), &server.path("d"));
    let bad = pareco(&["send", src.path().to_str().unwrap(), &server.url("e"), "-n", "many"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        stderr(&bad).contains("neither a number of connections from 1 to 256 nor `auto`"),
        "{}",
        stderr(&bad)
    );
}
