//! Data safety: what a transfer must never lose, whatever the other side
//! claims or the source's file system does. The client-side defences are
//! tested against [`Fake`], a server that lies.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use bytes::Bytes;
use pareco::codec::{Entry, ErrorKind, Kind, Message, Meta, Mtime, RelPath, Stat};
use serde_bytes::ByteBuf;

use crate::fake::{refuse, Answers, Fake};
use crate::util::*;

/// The mode and mtime of a directory itself.
fn own_meta(dir: &Path) -> (u32, (i64, i64)) {
    let md = fs::symlink_metadata(dir).unwrap();
    (md.mode() & 0o7777, (md.mtime(), md.mtime_nsec()))
}

#[test]
fn the_root_gets_the_source_roots_mode_and_mtime() {
    for way in both_ways() {
        fs::create_dir_all(&way.src).unwrap();
        file(&way.src.join("PG_VERSION"), b"16\n", 0o600, (1_600_000_000, 1));
        file(&way.src.join("base/1/1259"), &noise(20_000, 1), 0o600, (1_600_000_000, 2));
        // A PostgreSQL data directory: 0700, or the server refuses it.
        set_mode(&way.src, 0o700);
        set_mtime(&way.src, (1_650_000_000, 123_456_789));
        // The destination root exists already, with a mode of its own.
        fs::create_dir_all(&way.dst).unwrap();
        set_mode(&way.dst, 0o755);
        way.sync(&["-c", "4096"]);
        assert_eq!(own_meta(&way.dst), own_meta(&way.src), "{}", way.name);
        assert_same_tree(&way.src, &way.dst);
        // Only the root differs: the next run puts it right again.
        set_mode(&way.dst, 0o775);
        set_mtime(&way.dst, (1_700_000_000, 0));
        way.sync(&["-c", "4096"]);
        assert_eq!(own_meta(&way.dst), own_meta(&way.src), "{}", way.name);
        set_mode(&way.src, 0o755);
    }
}

/// A `Walk` answer of the given listing frames, then the final one.
fn walk_answer(listings: Vec<Message>) -> Answers {
    let last = Message::Listing { entries: Vec::new(), problems: Vec::new(), done: true, root: None };
    listings.into_iter().chain([last]).map(|m| (m, Bytes::new())).collect()
}

fn listing(entries: Vec<Entry>, problems: Vec<String>) -> Message {
    Message::Listing { entries, problems, done: false, root: None }
}

/// A fake server whose `Walk` lists one entry, `stat` at `path`, and that
/// refuses everything else.
fn listing_one(path: RelPath, stat: Stat) -> Fake {
    Fake::start(move |msg| match msg {
        Message::Walk => walk_answer(vec![listing(
            vec![Entry { path: path.clone(), stat: stat.clone(), link: None }],
            vec![],
        )]),
        other => refuse(other),
    })
}

/// The stat of a symlink to `target`.
fn symlink_to(target: &[u8]) -> Stat {
    Stat { kind: Kind::Symlink, size: 0, meta: meta(), target: Some(ByteBuf::from(target.to_vec())) }
}

fn meta() -> Meta {
    Meta { mode: 0o644, mtime: Mtime { secs: 1_600_000_000, nanos: 0 }, extra: None }
}

/// Runs `pareco recv` from `fake` into `local` (which holds a varied tree)
/// and checks that it fails with exit 1 and leaves `local` as it was.
fn recv_changes_nothing(fake: &Fake, local: &Path, extra: &[&str]) -> String {
    let before = snapshot(local);
    let url = fake.url("d");
    let mut args = vec!["recv", &url, local.to_str().unwrap(), "-c", "4096", "-n", "2"];
    args.extend_from_slice(extra);
    let out = pareco(&args);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(snapshot(local) == before, "the destination changed:\n{}", stderr(&out));
    stderr(&out)
}

#[test]
fn a_server_listing_the_root_as_an_entry_cannot_empty_a_recv_destination() {
    let symlink = symlink_to(b"/somewhere/else");
    let big_file = Stat { kind: Kind::File, size: 3 * 4096 + 1, meta: meta(), target: None };
    let small_file = Stat { kind: Kind::File, size: 10, meta: meta(), target: None };
    for stat in [symlink, big_file, small_file] {
        let fake = listing_one(RelPath::root(), stat);
        let local = tempfile::tempdir().unwrap();
        varied_tree(local.path(), 4096);
        let errors = recv_changes_nothing(&fake, local.path(), &[]);
        assert!(errors.contains("listed the root itself"), "{errors}");
        // With --delete too: the listing counts as incomplete.
        let errors = recv_changes_nothing(&fake, local.path(), &["--delete"]);
        assert!(errors.contains("--delete skipped"), "{errors}");
    }
}

/// `recv --exclude`: what the client left out is not the server's to
/// list; a server that lists it anyway changes nothing there.
#[test]
fn a_server_listing_what_recv_excludes_changes_nothing_there() {
    let symlink = symlink_to(b"elsewhere");
    let fake = listing_one(RelPath::new("plain.txt").unwrap(), symlink);
    let local = tempfile::tempdir().unwrap();
    varied_tree(local.path(), 4096);
    let errors = recv_changes_nothing(&fake, local.path(), &["--exclude", "*.txt"]);
    assert!(errors.contains("--include/--exclude leave out"), "{errors}");
    let errors = recv_changes_nothing(&fake, local.path(), &["--exclude", "*.txt", "--delete"]);
    assert!(errors.contains("--delete skipped"), "{errors}");
    // With includes, a directory outside them is listed only as the parent
    // of something inside them: alone, it would replace the file there.
    let dir = Stat { kind: Kind::Dir, size: 0, meta: meta(), target: None };
    let fake = listing_one(RelPath::new("exact").unwrap(), dir);
    let errors = recv_changes_nothing(&fake, local.path(), &["--include", "*.txt"]);
    assert!(errors.contains("--include/--exclude leave out"), "{errors}");
}

/// A server that lists `link/evil` without `link`: at the destination,
/// `link` is a symlink to a directory the run must leave alone.
#[test]
fn a_server_listing_an_entry_before_its_directory_changes_nothing() {
    let symlink = symlink_to(b"/etc/passwd");
    let fake = listing_one(RelPath::new("link/evil").unwrap(), symlink);
    let local = tempfile::tempdir().unwrap();
    varied_tree(local.path(), 4096);
    fs::create_dir(local.path().join("secrets")).unwrap();
    std::os::unix::fs::symlink("secrets", local.path().join("link")).unwrap();
    let errors = recv_changes_nothing(&fake, local.path(), &["--exclude", "secrets"]);
    assert!(errors.contains("before their directories"), "{errors}");
}

#[test]
fn recv_delete_deletes_nothing_after_an_incomplete_listing() {
    let answers: [fn() -> Answers; 2] = [
        // One directory could not be read: its entries are missing.
        || walk_answer(vec![listing(Vec::new(), vec!["secret: Permission denied (os error 13)".into()])]),
        // The walk failed as a whole (a busy server).
        || {
            let message = "listing failed: resource busy".to_owned();
            vec![(Message::Error { kind: ErrorKind::Io, message }, Bytes::new())]
        },
    ];
    for answer in answers {
        let fake = Fake::start(move |msg| match msg {
            Message::Walk => answer(),
            other => refuse(other),
        });
        let local = tempfile::tempdir().unwrap();
        varied_tree(local.path(), 4096);
        let errors = recv_changes_nothing(&fake, local.path(), &["--delete"]);
        assert!(errors.contains("--delete skipped: the source listing is incomplete"), "{errors}");
    }
}

#[test]
fn send_delete_with_an_unreadable_source_directory_deletes_nothing() {
    let server = Server::start(&[]);
    let src = tempfile::tempdir().unwrap();
    set_mode(src.path(), 0o755);
    file(&src.path().join("keep.txt"), b"keep", 0o644, (1_600_000_000, 0));
    file(&src.path().join("secret/inner.txt"), b"inner", 0o644, (1_600_000_000, 0));
    file(&src.path().join("secret/deeper/x"), &noise(9000, 4), 0o644, (1_600_000_000, 0));
    let (local, url) = (src.path().to_str().unwrap(), server.url("d"));
    sync_ok(&["send", local, &url, "-c", "4096"]);
    let mirror = snapshot(&server.path("d"));
    // Now the source directory cannot be read by the client.
    set_mode(&src.path().join("secret"), 0o000);
    let out = unprivileged(&["send", local, &url, "--delete", "-c", "4096"]);
    set_mode(&src.path().join("secret"), 0o755);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("secret"), "{}", stderr(&out));
    assert!(stderr(&out).contains("--delete skipped"), "{}", stderr(&out));
    // Everything is still there; only the directory's own mode followed
    // the source's (0000), as it should.
    let mut now = snapshot(&server.path("d"));
    assert!(matches!(now.remove("secret"), Some(Snap::Dir { mode: 0, .. })));
    let mut mirror = mirror;
    mirror.remove("secret");
    assert!(now == mirror, "the destination changed:\n{}", stderr(&out));
}

#[test]
fn every_legal_name_and_link_target_syncs_however_long() {
    for way in both_ways() {
        fs::create_dir_all(&way.src).unwrap();
        // Names of 250 and 255 bytes, a file of several chunks among them.
        let long = "l".repeat(250);
        file(&way.src.join(&long), b"a long name", 0o644, (1_600_000_000, 0));
        file(&way.src.join("m".repeat(255)), &noise(5 * 4096, 7), 0o644, (1_600_000_000, 0));
        // Enough long symlink targets that one listing batch, probe answer
        // or Apply request of them would pass the 1 MiB header limit.
        let links = way.src.join("links");
        fs::create_dir_all(&links).unwrap();
        for i in 0..600 {
            let target = format!("{i}/{}", "t".repeat(4000));
            std::os::unix::fs::symlink(target, links.join(format!("{i:03}-{}", "n".repeat(200)))).unwrap();
        }
        way.sync(&["-c", "4096"]);
        assert_same_tree(&way.src, &way.dst);
        // And again, with everything in place (probes find every link).
        let report = way.sync(&["-c", "4096"]);
        assert_eq!(report["files_transferred"], 0, "{}", way.name);
    }
}

#[test]
fn hard_links_at_the_destination_are_never_written_through() {
    let server = Server::start(&[]);
    let src = tempfile::tempdir().unwrap();
    let (local, url) = (src.path().to_str().unwrap(), server.url("d"));
    let new = noise(6 * 4096, 8);
    file(&src.path().join("big"), &new, 0o644, (1_600_000_000, 0));
    file(&src.path().join("small"), b"new small", 0o644, (1_600_000_000, 0));
    let outside = tempfile::tempdir_in(server.root.path()).unwrap();
    let dest = server.path("d");
    fs::create_dir_all(&dest).unwrap();
    // An --inplace target that is also known by another name...
    let old = noise(6 * 4096, 9);
    fs::write(dest.join("big"), &old).unwrap();
    fs::hard_link(dest.join("big"), outside.path().join("big-link")).unwrap();
    fs::write(dest.join("small"), b"old small").unwrap();
    fs::hard_link(dest.join("small"), outside.path().join("small-link")).unwrap();
    sync_ok(&["send", local, &url, "-c", "4096", "--inplace"]);
    assert_same_tree(src.path(), &dest);
    assert_eq!(fs::read(outside.path().join("big-link")).unwrap(), old);
    assert_eq!(fs::read(outside.path().join("small-link")).unwrap(), b"old small");
    // ...and a kept temporary file that is a hard link of something else.
    let changed = noise(6 * 4096, 10);
    file(&src.path().join("big"), &changed, 0o644, (1_600_000_001, 0));
    let shared = outside.path().join("shared");
    fs::write(&shared, noise(6 * 4096, 11)).unwrap();
    fs::hard_link(&shared, temp_of(&dest, "big")).unwrap();
    sync_ok(&["send", local, &url, "-c", "4096"]);
    assert_same_tree(src.path(), &dest);
    assert_eq!(fs::read(&shared).unwrap(), noise(6 * 4096, 11));
}

#[test]
fn setuid_and_setgid_bits_are_cleared_unless_asked_for() {
    let is_root = rustix::process::geteuid().is_root();
    let make = |dir: &Path| {
        file(&dir.join("tool"), b"#!/bin/sh\n", 0o6755, (1_600_000_000, 0));
        file(&dir.join("big-tool"), &noise(5 * 4096, 12), 0o4750, (1_600_000_000, 0));
        fs::create_dir_all(dir.join("shared")).unwrap();
        // A setgid directory keeps its bit: it gives no privilege.
        set_mode(&dir.join("shared"), 0o2775);
    };
    let mode = |path: &Path| fs::symlink_metadata(path).unwrap().mode() & 0o7777;
    // Upload: the server clears them, unless it runs with --keep-setid.
    for (extra, kept) in [(&[][..], false), (&["--keep-setid"][..], true)] {
        let server = Server::start(extra);
        let src = tempfile::tempdir().unwrap();
        make(src.path());
        sync_ok(&["send", src.path().to_str().unwrap(), &server.url("d"), "-c", "4096"]);
        let d = server.path("d");
        assert_eq!(mode(&d.join("tool")), if kept { 0o6755 } else { 0o755 });
        assert_eq!(mode(&d.join("big-tool")), if kept { 0o4750 } else { 0o750 });
        assert_eq!(mode(&d.join("shared")), 0o2775);
    }
    // Download: a client run as root clears them, unless --keep-setid.
    let server = Server::start(&[]);
    make(&server.path("d"));
    for (extra, kept) in [(&[][..], !is_root), (&["--keep-setid"][..], true)] {
        let local = tempfile::tempdir().unwrap();
        let url = server.url("d");
        let mut args = vec!["recv", &url, local.path().to_str().unwrap(), "-c", "4096"];
        args.extend_from_slice(extra);
        sync_ok(&args);
        assert_eq!(mode(&local.path().join("tool")), if kept { 0o6755 } else { 0o755 });
        assert_eq!(mode(&local.path().join("big-tool")), if kept { 0o4750 } else { 0o750 });
    }
}

#[test]
fn text_from_a_server_cannot_drive_the_terminal() {
    let evil = "\u{1b}]0;pwned\u{7}\u{1b}[2J\u{1b}[31mfake\r\n\u{202e}";
    let fake = Fake::start(move |msg| match msg {
        Message::Walk => walk_answer(vec![listing(Vec::new(), vec![format!("{evil} problem")])]),
        Message::Probe { .. } => {
            let message = format!("{evil} error");
            vec![(Message::Error { kind: ErrorKind::Io, message }, Bytes::new())]
        }
        other => refuse(other),
    });
    let local = tempfile::tempdir().unwrap();
    let out = pareco(&["recv", &fake.url("d"), local.path().to_str().unwrap()]);
    let err = stderr(&out);
    assert!(err.contains("\\u{1b}]0;pwned"), "{err}");
    assert!(!err.contains('\u{1b}') && !err.contains('\u{7}') && !err.contains('\u{202e}'), "{err:?}");
}

/// A server that says it requires a token but does not know it: it answers
/// the first connection's handshake with a proof made up on the spot.
fn impostor() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let Ok((stream, _)) = listener.accept() else { return };
        let mut conn = crate::raw::Raw::accepted(stream);
        conn.next();
        let nonce = ByteBuf::from(vec![1u8; 32]);
        conn.send(
            0,
            Message::Challenge { version: pareco::codec::PROTOCOL_VERSION, nonce, token_required: true },
        );
        conn.next();
        let (proof, secret) = (ByteBuf::from(vec![2u8; 32]), Some(ByteBuf::from(vec![3u8; 32])));
        conn.send(
            0,
            Message::Welcome {
                session: 1,
                idle_timeout_ms: 150_000,
                max_payload: 4096,
                max_connections: 8,
                proof,
                secret,
                bwlimit: 0,
                privileged: false,
            },
        );
        // Whatever the client sends now would be the data of a session the
        // impostor was never entitled to.
        assert!(conn.next().is_none(), "the client went on with an impostor");
    });
    port
}

#[test]
fn a_client_with_a_token_only_talks_to_a_server_that_proves_it_knows_it() {
    let src = tempfile::tempdir().unwrap();
    file(&src.path().join("secret.txt"), b"for the real server only", 0o600, (1, 0));
    let local = src.path().to_str().unwrap();
    let url = format!("pareco://127.0.0.1:{}/d", impostor());
    let out = pareco(&["send", local, &url, "-a", "the-real-token", "-n", "1"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("could not prove that it knows the token"), "{}", stderr(&out));
    // A server without a token cannot prove anything either: a client that
    // was given a token refuses it, and says how to go on.
    let server = Server::start(&[]);
    let out = pareco(&["send", local, &server.url("d"), "-a", "the-real-token"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("requires no token"), "{}", stderr(&out));
    assert!(!server.path("d/secret.txt").exists());
}

#[test]
fn answers_of_the_wrong_shape_fail_the_run_cleanly() {
    // Download: a server that answers a Hash with far more digests than
    // the span has chunks.
    let size = 5 * 4096;
    let fake = Fake::start(move |msg| match msg {
        Message::Walk => {
            let stat = Stat { kind: Kind::File, size, meta: meta(), target: None };
            walk_answer(vec![listing(
                vec![Entry { path: RelPath::new("big").unwrap(), stat, link: None }],
                vec![],
            )])
        }
        Message::Hash { .. } => {
            let digests = pareco::codec::DigestList(vec![7u8; 8 * 3000]);
            vec![(Message::Hashes { digests }, Bytes::new())]
        }
        other => refuse(other),
    });
    let local = tempfile::tempdir().unwrap();
    file(&local.path().join("big"), &noise(size as usize, 1), 0o644, (1, 0));
    let errors = recv_changes_nothing(&fake, local.path(), &[]);
    assert!(errors.contains("server answered 3000 digests"), "{errors}");
    assert!(!errors.contains("panicked"), "{errors}");
    // Upload: a server that reports more failed actions than it was sent.
    let fake = Fake::start(|msg| match msg {
        Message::Probe { paths } => vec![(Message::Probed { found: vec![None; paths.len()] }, Bytes::new())],
        Message::Apply { .. } => {
            let failures =
                (0..10).map(|i| (RelPath::new(format!("x{i}")).unwrap(), "no".to_owned())).collect();
            vec![(Message::Applied { failures }, Bytes::new())]
        }
        other => refuse(other),
    });
    let src = tempfile::tempdir().unwrap();
    fs::create_dir_all(src.path().join("empty-dir")).unwrap();
    let out = pareco(&["send", src.path().to_str().unwrap(), &fake.url("d"), "-n", "1"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("server answered 10 failures for 1 actions"), "{}", stderr(&out));
    assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
}

#[test]
fn answers_the_declaration_does_not_list_are_protocol_errors() {
    // Every request that can be answered at all gets a `Done` (a valid
    // answer to none of Probe, Begin, PutFiles, Apply).
    let fake = Fake::start(|msg| match msg {
        Message::Walk => refuse(msg),
        _ => vec![(Message::Done, Bytes::new())],
    });
    let src = tempfile::tempdir().unwrap();
    varied_tree(src.path(), 4096);
    let out = pareco(&["send", src.path().to_str().unwrap(), &fake.url("d"), "-n", "1", "-c", "4KiB"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("the server answered Done to Probe"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn without_delete_a_server_cannot_empty_a_directory_by_calling_it_a_file_or_symlink() {
    let symlink =
        Stat { kind: Kind::Symlink, size: 0, meta: meta(), target: Some(ByteBuf::from(b".".to_vec())) };
    let big_file = Stat { kind: Kind::File, size: 3 * 4096 + 1, meta: meta(), target: None };
    let small_file = Stat { kind: Kind::File, size: 10, meta: meta(), target: None };
    for stat in [symlink, big_file, small_file] {
        let fake = Fake::start(move |msg| match msg {
            Message::Walk => {
                let entry = Entry { path: RelPath::new("a").unwrap(), stat: stat.clone(), link: None };
                walk_answer(vec![listing(vec![entry], vec![])])
            }
            Message::Hash { .. } => vec![(Message::Hashes { digests: Default::default() }, Bytes::new())],
            Message::Read { len, .. } => {
                let data = Bytes::from(vec![0u8; *len as usize]);
                let digest = pareco::peer::hash::encode(
                    pareco::codec::HashAlgo::Xxh3,
                    pareco::peer::hash::digest(pareco::codec::HashAlgo::Xxh3, &data),
                );
                vec![(
                    Message::Data {
                        digest,
                        file: Stat { kind: Kind::File, size: 10, meta: meta(), target: None },
                    },
                    data,
                )]
            }
            other => refuse(other),
        });
        // `a` is a directory full of files here (varied_tree makes a/b/c).
        let local = tempfile::tempdir().unwrap();
        varied_tree(local.path(), 4096);
        let errors = recv_changes_nothing(&fake, local.path(), &[]);
        assert!(errors.contains("a: a directory that is not empty"), "{errors}");
    }
}
