//! Real transfers over real sockets, both directions, checking the whole
//! destination tree.

use std::fs;
use std::os::unix::fs::MetadataExt;

use crate::util::*;

const CHUNK: usize = 4096;
const C: &str = "4096";

fn count(report: &serde_json::Value, key: &str) -> u64 {
    report[key].as_u64().unwrap_or_else(|| panic!("{key} missing in {report}"))
}

#[test]
fn upload_new_tree_then_nothing_to_do() {
    let server = Server::start(&[]);
    let src = tempfile::tempdir().unwrap();
    varied_tree(src.path(), CHUNK);
    let r = sync_ok(&["send", src.path().to_str().unwrap(), &server.url("dst"), "-c", C, "-n", "4"]);
    assert_same_tree(src.path(), &server.path("dst"));
    assert_eq!(count(&r, "files_total"), 7, "{r}");
    assert_eq!(count(&r, "files_transferred"), 7);
    assert_eq!(count(&r, "dirs_total"), 6);
    let bytes: u64 = [13, 0, CHUNK, CHUNK * 5 + 77, 4, 19, 3000].iter().map(|&n| n as u64).sum();
    assert_eq!(count(&r, "bytes_total"), bytes);
    assert_eq!(count(&r, "bytes_transferred"), bytes);
    assert!(count(&r, "wire_bytes") > bytes);
    for key in ["p50", "p90", "p99", "max"] {
        assert!(r["chunk_latency_us"][key].as_u64().unwrap() > 0, "{key}");
    }

    let again = sync_ok(&["send", src.path().to_str().unwrap(), &server.url("dst"), "-c", C]);
    assert_same_tree(src.path(), &server.path("dst"));
    assert_eq!(count(&again, "files_transferred"), 0);
    assert_eq!(count(&again, "files_skipped"), 7);
    assert_eq!(count(&again, "bytes_transferred"), 0);
    assert_eq!(count(&again, "bytes_skipped"), bytes);
    assert_eq!(count(&again, "chunks_transferred"), 0);
}

#[test]
fn download_new_tree_into_missing_directory() {
    let server = Server::start(&[]);
    varied_tree(&server.path("data"), CHUNK);
    let dst = tempfile::tempdir().unwrap();
    let target = dst.path().join("not/yet/there");
    let r = sync_ok(&["recv", &server.url("data"), target.to_str().unwrap(), "-c", C, "-n", "3"]);
    assert_same_tree(&server.path("data"), &target);
    assert_eq!(count(&r, "files_transferred"), 7);
    let again = sync_ok(&["recv", &server.url("data"), target.to_str().unwrap(), "-c", C]);
    assert_eq!(count(&again, "bytes_transferred"), 0);
}

#[test]
fn fully_different_files_are_replaced() {
    let server = Server::start(&[]);
    let src = tempfile::tempdir().unwrap();
    varied_tree(src.path(), CHUNK);
    varied_tree(&server.path("dst"), CHUNK);
    // Same names, other content, sizes and metadata on the destination.
    file(&server.path("dst/big.bin"), &noise(CHUNK * 7, 9), 0o600, (1, 0));
    file(&server.path("dst/exact"), &noise(CHUNK, 10), 0o600, (1, 0));
    file(&server.path("dst/plain.txt"), b"HELLO, WORLD\n", 0o600, (1, 0));
    let r = sync_ok(&["send", src.path().to_str().unwrap(), &server.url("dst"), "-c", C]);
    assert_same_tree(src.path(), &server.path("dst"));
    assert_eq!(count(&r, "files_transferred"), 3);
    assert_eq!(count(&r, "bytes_transferred"), (CHUNK * 5 + 77 + CHUNK + 13) as u64);
}

#[test]
fn one_differing_chunk_travels_alone() {
    for way in both_ways() {
        let content = noise(CHUNK * 10 + 100, 4);
        let mut changed = content.clone();
        changed[CHUNK * 6 + 5] ^= 0xff;
        let (src, dst) = (&way.src, &way.dst);
        file(&src.join("f"), &changed, 0o644, (1_600_000_000, 5));
        file(&dst.join("f"), &content, 0o644, (1_600_000_000, 5));
        let inode = fs::metadata(dst.join("f")).unwrap().ino();
        let r = way.sync(&["-c", C]);
        assert_same_tree(src, dst);
        assert_eq!(count(&r, "bytes_transferred"), CHUNK as u64, "{}", way.name);
        assert_eq!(count(&r, "chunks_transferred"), 1);
        assert_eq!(count(&r, "chunks_total"), 11);
        assert_eq!(count(&r, "chunks_skipped"), 10);
        // Built in a temporary file and renamed: a new inode.
        assert_ne!(fs::metadata(dst.join("f")).unwrap().ino(), inode);
    }
}

#[test]
fn metadata_only_changes_send_no_data() {
    let server = Server::start(&[]);
    let src = tempfile::tempdir().unwrap();
    varied_tree(src.path(), CHUNK);
    sync_ok(&["send", src.path().to_str().unwrap(), &server.url("dst"), "-c", C]);
    fs::set_permissions(src.path().join("big.bin"), std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .unwrap();
    set_mtime(&src.path().join("plain.txt"), (1_234_567_890, 1));
    set_mtime(&src.path().join("a/b"), (1_111_111_111, 0));
    let r = sync_ok(&["send", src.path().to_str().unwrap(), &server.url("dst"), "-c", C]);
    assert_same_tree(src.path(), &server.path("dst"));
    assert_eq!(count(&r, "bytes_transferred"), 0);
    assert_eq!(count(&r, "files_transferred"), 0);
}

#[test]
fn grown_and_shrunk_files_reuse_their_common_chunks() {
    let server = Server::start(&[]);
    let src = tempfile::tempdir().unwrap();
    let base = noise(CHUNK * 8, 5);
    file(&server.path("d/grow"), &base, 0o644, (1, 0));
    file(&server.path("d/shrink"), &base, 0o644, (1, 0));
    let mut grown = base.clone();
    grown.extend_from_slice(&noise(CHUNK + 10, 6));
    file(&src.path().join("grow"), &grown, 0o644, (2, 0));
    file(&src.path().join("shrink"), &base[..CHUNK * 3 + 1], 0o644, (2, 0));
    let r = sync_ok(&["send", src.path().to_str().unwrap(), &server.url("d"), "-c", C]);
    assert_same_tree(src.path(), &server.path("d"));
    // grow: its two new chunks; shrink: nothing, even its one-byte tail
    // chunk is there already.
    assert_eq!(count(&r, "bytes_transferred"), (CHUNK + 10) as u64);
    assert_eq!(count(&r, "bytes_skipped"), count(&r, "bytes_total") - (CHUNK + 10) as u64);
}

#[test]
fn delete_removes_extraneous_entries_only() {
    let server = Server::start(&[]);
    let src = tempfile::tempdir().unwrap();
    varied_tree(src.path(), CHUNK);
    let outside = tempfile::tempdir().unwrap();
    file(&outside.path().join("keep-me"), b"precious", 0o644, (1, 0));
    let dst = server.path("dst");
    file(&dst.join("stale.txt"), b"old", 0o644, (1, 0));
    file(&dst.join("old-dir/sub/x"), b"old", 0o644, (1, 0));
    std::os::unix::fs::symlink(outside.path(), dst.join("link-out")).unwrap();
    std::os::unix::fs::symlink(outside.path().join("keep-me"), dst.join("a-link-to-file")).unwrap();

    // Without --delete, extra entries stay.
    sync_ok(&["send", src.path().to_str().unwrap(), &server.url("dst"), "-c", C]);
    assert!(dst.join("stale.txt").exists() && dst.join("old-dir/sub/x").exists());
    // What a killed run left in a directory to delete (never listed) does
    // not keep that directory there.
    fs::write(temp_of(&dst.join("old-dir/sub"), "y"), b"half a file").unwrap();

    let r = sync_ok(&["send", src.path().to_str().unwrap(), &server.url("dst"), "-c", C, "--delete"]);
    assert_same_tree(src.path(), &dst);
    assert_eq!(count(&r, "files_deleted"), 4);
    assert_eq!(fs::read(outside.path().join("keep-me")).unwrap(), b"precious");

    // The alias works too, and on a download.
    let local = tempfile::tempdir().unwrap();
    file(&local.path().join("junk"), b"x", 0o644, (1, 0));
    sync_ok(&["recv", &server.url("dst"), local.path().to_str().unwrap(), "--delete-unexpected", "-c", C]);
    assert_same_tree(src.path(), local.path());
}

#[test]
fn kind_changes_replace_entries() {
    let server = Server::start(&[]);
    let src = tempfile::tempdir().unwrap();
    file(&src.path().join("was-dir"), b"now a file", 0o644, (5, 0));
    fs::create_dir_all(src.path().join("was-file/inner")).unwrap();
    std::os::unix::fs::symlink("target", src.path().join("was-file-now-link")).unwrap();
    file(&src.path().join("was-link"), &noise(CHUNK * 3, 1), 0o644, (5, 0));
    file(&server.path("d/was-dir/x/y"), b"y", 0o644, (1, 0));
    file(&server.path("d/was-file"), b"f", 0o644, (1, 0));
    file(&server.path("d/was-file-now-link"), b"f", 0o644, (1, 0));
    fs::create_dir_all(server.path("d")).unwrap();
    std::os::unix::fs::symlink("elsewhere", server.path("d/was-link")).unwrap();
    set_mtime(&src.path().join("was-file/inner"), (7, 0));
    set_mtime(&src.path().join("was-file"), (7, 0));
    // Replacing a directory that is not empty by a file deletes what it
    // holds: without --delete the run says so and keeps the directory...
    let (local, url) = (src.path().to_str().unwrap(), server.url("d"));
    let out = pareco(&["send", local, &url, "-c", C]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("was-dir: a directory that is not empty"), "{}", stderr(&out));
    assert_eq!(fs::read(server.path("d/was-dir/x/y")).unwrap(), b"y");
    // ...and with --delete it is replaced, like every other kind change.
    sync_ok(&["send", local, &url, "-c", C, "--delete"]);
    assert_same_tree(src.path(), &server.path("d"));
}

#[test]
fn an_empty_directory_in_the_way_of_a_file_is_replaced_without_delete() {
    let server = Server::start(&[]);
    let src = tempfile::tempdir().unwrap();
    file(&src.path().join("was-empty-dir"), b"now a file", 0o644, (5, 0));
    std::os::unix::fs::symlink("target", src.path().join("link-over-empty-dir")).unwrap();
    fs::create_dir_all(server.path("d/was-empty-dir")).unwrap();
    fs::create_dir_all(server.path("d/link-over-empty-dir")).unwrap();
    sync_ok(&["send", src.path().to_str().unwrap(), &server.url("d"), "-c", C]);
    assert_same_tree(src.path(), &server.path("d"));
}

#[test]
fn glob_examples_of_the_original() {
    let cases: [(&[&str], &[&str]); 5] = [
        (&["-i", "*.txt"], &["file1.txt"]),
        (&["-i", "*/*.txt"], &["A-dir", "A-dir/file2.txt", "B-dir", "B-dir/file4.txt"]),
        (&["-i", "**.txt"], &["A-dir", "A-dir/file2.txt", "B-dir", "B-dir/file4.txt", "file1.txt"]),
        (&["-i", "A*"], &["A-dir", "A-dir/file2.txt", "A-dir/file3.zip"]),
        (&["-i", "**.txt", "-e", "B-dir"], &["A-dir", "A-dir/file2.txt", "file1.txt"]),
    ];
    let server = Server::start(&[]);
    let t = (1_600_000_000, 0);
    for name in ["file1.txt", "A-dir/file2.txt", "A-dir/file3.zip", "B-dir/file4.txt"] {
        file(&server.path("my-dir").join(name), name.as_bytes(), 0o644, t);
    }
    for (n, (filters, expected)) in cases.iter().enumerate() {
        // Download with filters...
        let local = tempfile::tempdir().unwrap();
        let mut args = vec!["recv", &*server.url("my-dir").leak(), local.path().to_str().unwrap()];
        args.extend_from_slice(filters);
        sync_ok(&args);
        let got: Vec<String> = snapshot(local.path()).into_keys().collect();
        assert_eq!(got, *expected, "recv {filters:?}");
        // ...and upload the full tree with the same filters.
        let dst = format!("up{n}");
        let mut args = vec![
            "send",
            &*server.path("my-dir").to_str().unwrap().to_owned().leak(),
            &*server.url(&dst).leak(),
        ];
        args.extend_from_slice(filters);
        sync_ok(&args);
        let got: Vec<String> = snapshot(&server.path(&dst)).into_keys().collect();
        assert_eq!(got, *expected, "send {filters:?}");
    }
}

#[test]
fn filters_protect_destination_entries() {
    let server = Server::start(&[]);
    let src = tempfile::tempdir().unwrap();
    file(&src.path().join("keep.log"), b"new log", 0o644, (9, 0));
    file(&src.path().join("data.txt"), b"new data", 0o644, (9, 0));
    file(&server.path("d/keep.log"), b"old log", 0o644, (1, 0));
    file(&server.path("d/extra.log"), b"extra log", 0o644, (1, 0));
    file(&server.path("d/extra.txt"), b"extra", 0o644, (1, 0));
    sync_ok(&["send", src.path().to_str().unwrap(), &server.url("d"), "-e", "*.log", "--delete"]);
    assert_eq!(fs::read(server.path("d/keep.log")).unwrap(), b"old log");
    assert_eq!(fs::read(server.path("d/extra.log")).unwrap(), b"extra log");
    assert!(!server.path("d/extra.txt").exists());
    assert_eq!(fs::read(server.path("d/data.txt")).unwrap(), b"new data");
}

#[test]
fn skip_digest_trusts_size_and_mtime() {
    let server = Server::start(&[]);
    let src = tempfile::tempdir().unwrap();
    let t = (1_600_000_000, 7);
    file(&src.path().join("same-stamp"), b"AAAA", 0o644, t);
    file(&server.path("d/same-stamp"), b"BBBB", 0o644, t);
    file(&src.path().join("other-stamp"), &noise(CHUNK * 4, 1), 0o644, t);
    let mut old = noise(CHUNK * 4, 1);
    old[10] ^= 1;
    file(&server.path("d/other-stamp"), &old, 0o644, (1, 0));
    let r = sync_ok(&["send", src.path().to_str().unwrap(), &server.url("d"), "--skip-digest", "-c", C]);
    // Equal size and mtime: trusted, not even read.
    assert_eq!(fs::read(server.path("d/same-stamp")).unwrap(), b"BBBB");
    // Different mtime: compared by chunks, one chunk sent.
    assert_eq!(fs::read(server.path("d/other-stamp")).unwrap(), noise(CHUNK * 4, 1));
    assert_eq!(count(&r, "bytes_transferred"), CHUNK as u64);
    // With digests, the lie is found.
    sync_ok(&["send", src.path().to_str().unwrap(), &server.url("d"), "-c", C]);
    assert_same_tree(src.path(), &server.path("d"));
}

#[test]
fn inplace_keeps_the_inode_and_sends_changed_chunks() {
    for way in both_ways() {
        let (src, dst) = (&way.src, &way.dst);
        let old = noise(CHUNK * 6, 2);
        let mut new = old.clone();
        new[CHUNK * 2] ^= 1;
        new.truncate(CHUNK * 5 + 3);
        file(&src.join("db"), &new, 0o600, (3, 3));
        file(&dst.join("db"), &old, 0o644, (1, 1));
        file(&src.join("small"), b"new small", 0o644, (3, 3));
        file(&dst.join("small"), b"old small", 0o644, (1, 1));
        let inode = fs::metadata(dst.join("db")).unwrap().ino();
        let r = way.sync(&["--inplace", "-c", C]);
        assert_same_tree(src, dst);
        assert_eq!(fs::metadata(dst.join("db")).unwrap().ino(), inode, "{}", way.name);
        // The changed chunk and the small file (the 3-byte tail is there).
        assert_eq!(count(&r, "bytes_transferred"), (CHUNK + 9) as u64);
    }
}

#[test]
fn partial_temporary_file_is_reused() {
    let server = Server::start(&[]);
    let src = tempfile::tempdir().unwrap();
    let content = noise(CHUNK * 8, 11);
    file(&src.path().join("f"), &content, 0o644, (1_600_000_000, 0));
    // An interrupted run left the first five chunks in the temporary file.
    let mut partial = content[..CHUNK * 5].to_vec();
    partial.resize(CHUNK * 8, 0);
    file(&temp_of(&server.path("d"), "f"), &partial, 0o600, (1, 0));
    let r = sync_ok(&["send", src.path().to_str().unwrap(), &server.url("d"), "-c", C]);
    assert_same_tree(src.path(), &server.path("d"));
    assert_eq!(count(&r, "bytes_transferred"), (CHUNK * 3) as u64);
}

#[test]
fn concurrent_sessions_and_overlap_refused() {
    let server = Server::start(&[]);
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    varied_tree(a.path(), CHUNK);
    file(&b.path().join("only-b"), &noise(CHUNK * 20, 3), 0o644, (1, 0));
    let (ua, ub) = (server.url("x/a"), server.url("x/b"));
    let (pa, pb) = (a.path().to_str().unwrap().to_owned(), b.path().to_str().unwrap().to_owned());
    let ta = std::thread::spawn(move || sync_ok(&["send", &pa, &ua, "-c", C]));
    let tb = std::thread::spawn(move || sync_ok(&["send", &pb, &ub, "-c", C]));
    ta.join().unwrap();
    tb.join().unwrap();
    assert_same_tree(a.path(), &server.path("x/a"));
    assert_same_tree(b.path(), &server.path("x/b"));

    // A session writing into x holds it: an upload into x/a overlaps.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let remote: pareco::session::Remote = server.url("x").parse().unwrap();
        let spec = pareco::codec::SessionSpec::new(
            pareco::codec::Direction::Upload,
            remote.path.clone(),
            4096,
            pareco::codec::HashAlgo::Xxh3,
        );
        let config = pareco::session::ClientConfig {
            connections: 1,
            auto: false,
            token: None,
            tls: None,
            reconnect_timeout: std::time::Duration::ZERO,
            io_timeout: std::time::Duration::from_secs(30),
            pacer: pareco::session::pace::Pacer::new(None),
        };
        let holder = pareco::session::connect(&remote, spec, &config).await.unwrap();
        let out = pareco(&["send", a.path().to_str().unwrap(), &server.url("x/a")]);
        assert_eq!(out.status.code(), Some(1));
        assert!(stderr(&out).contains("another session is writing into x/a"), "{}", stderr(&out));
        // Reading is fine meanwhile.
        let local = tempfile::tempdir().unwrap();
        sync_ok(&["recv", &server.url("x/a"), local.path().to_str().unwrap()]);
        holder.close().await;
    });
    // Once closed, the tree is free again.
    sync_ok(&["send", a.path().to_str().unwrap(), &server.url("x/a")]);
}

#[test]
fn root_is_a_jail() {
    let server = Server::start(&[]);
    let outside = tempfile::tempdir().unwrap();
    file(&outside.path().join("secret"), b"secret", 0o644, (1, 0));
    std::os::unix::fs::symlink(outside.path(), server.path("escape")).unwrap();
    fs::create_dir_all(server.path("inside")).unwrap();
    std::os::unix::fs::symlink("../../..", server.path("inside/up")).unwrap();
    let src = tempfile::tempdir().unwrap();
    file(&src.path().join("x"), b"x", 0o644, (1, 0));
    let local = tempfile::tempdir().unwrap();
    for path in ["escape", "escape/sub", "inside/up", "inside/up/etc"] {
        for (args, what) in [
            (vec!["send", src.path().to_str().unwrap(), &*server.url(path).leak()], "send"),
            (vec!["recv", &*server.url(path).leak(), local.path().to_str().unwrap()], "recv"),
        ] {
            let out = pareco(&args);
            assert_eq!(out.status.code(), Some(1), "{what} {path}: {}", stderr(&out));
            assert!(stderr(&out).contains("outside the synced root"), "{what} {path}: {}", stderr(&out));
        }
    }
    let out = pareco(&["send", src.path().to_str().unwrap(), &server.url("../x")]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(snapshot(outside.path()).len(), 1);
    assert_eq!(fs::read(outside.path().join("secret")).unwrap(), b"secret");
    // A symlink inside the tree is synced as a symlink, never followed.
    let r = sync_ok(&["recv", &server.url(""), local.path().to_str().unwrap()]);
    assert_eq!(count(&r, "files_total"), 0);
    assert_eq!(fs::read_link(local.path().join("escape")).unwrap(), outside.path());
}

#[test]
fn tokens_are_checked() {
    let server = Server::start(&["-a", "right-token"]);
    let src = tempfile::tempdir().unwrap();
    file(&src.path().join("f"), b"data", 0o644, (1, 0));
    let url = server.url("d");
    let s = src.path().to_str().unwrap();
    let out = pareco(&["send", s, &url]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("requires a token"), "{}", stderr(&out));
    let out = pareco(&["send", s, &url, "-a", "wrong-token"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("wrong token"), "{}", stderr(&out));
    assert!(!stderr(&out).contains("right-token"));
    assert!(!server.path("d").exists(), "nothing may be written without the token");
    sync_ok(&["send", s, &url, "-a", "right-token"]);
    let token_file = src.path().join("token");
    fs::write(&token_file, "right-token\n").unwrap();
    sync_ok(&["send", s, &url, "--token-file", token_file.to_str().unwrap()]);
    let out = std::process::Command::new(BIN)
        .args(["send", s, &url, "--json"])
        .env("PARECO_TOKEN", "right-token")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn generated_token_is_printed_once_and_required() {
    let mut server = Server::start(&["-g"]);
    let token = server.stdout_line();
    assert!(token.len() >= 32 && token.chars().all(|c| c.is_ascii_hexdigit()), "{token}");
    let src = tempfile::tempdir().unwrap();
    file(&src.path().join("f"), b"data", 0o644, (1, 0));
    let out = pareco(&["send", src.path().to_str().unwrap(), &server.url("d")]);
    assert_eq!(out.status.code(), Some(1));
    sync_ok(&["send", src.path().to_str().unwrap(), &server.url("d"), "-a", &token]);
}

#[test]
fn usage_errors_exit_2_and_failures_exit_1() {
    let server = Server::start(&[]);
    let src = tempfile::tempdir().unwrap();
    let s = src.path().to_str().unwrap();
    for args in [
        vec!["send", s, "http://host/x"],
        vec!["send", s, "pareco://host:0/x"],
        vec!["send", s, &*server.url("d").leak(), "-c", "12"],
        vec!["send", s, &*server.url("d").leak(), "-c", "lots"],
        vec!["send", s, &*server.url("d").leak(), "--hash", "md5"],
        vec!["send", s, &*server.url("d").leak(), "-i", "["],
        vec!["send", s, &*server.url("d").leak(), "--no-such-option"],
        vec!["listen", "--session-timeout", "soon"],
    ] {
        let out = pareco(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(!stderr(&out).trim().is_empty());
    }
    let missing = src.path().join("missing");
    let out = pareco(&["send", missing.to_str().unwrap(), &server.url("d")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("missing"), "{}", stderr(&out));
    let out = pareco(&["recv", &server.url("no/such/dir"), s]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no directory no/such/dir"), "{}", stderr(&out));
    drop(server);
    let out = pareco(&["send", s, "pareco://127.0.0.1:1/x"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("cannot connect"), "{}", stderr(&out));
}

#[test]
fn scattered_small_changes_cost_few_digests_on_the_wire() {
    for way in both_ways() {
        let (src, dst) = (&way.src, &way.dst);
        const SMALL: usize = 1024;
        let old = noise(SMALL * 4096, 7);
        let mut new = old.clone();
        let touched: Vec<usize> = (0..12).map(|k| (k * 337 + 11) % 4096).collect();
        for &c in &touched {
            new[c * SMALL + 100] ^= 0x5a;
        }
        file(&src.join("db"), &new, 0o600, (5, 0));
        file(&dst.join("db"), &old, 0o600, (4, 0));
        let r = way.sync(&["-c", "1k"]);
        assert_same_tree(src, dst);
        let changed = (touched.len() * SMALL) as u64;
        assert_eq!(count(&r, "bytes_transferred"), changed, "{}", way.name);
        // 4096 chunk digests would be 32 KiB; grouped, far less travels.
        let wire = count(&r, "wire_bytes");
        assert!(wire < changed + 24 * 1024, "{}: {wire} bytes on the wire for {changed} changed", way.name);
    }
}

#[test]
fn interrupt_ends_the_session_and_a_rerun_finishes_the_job() {
    let server = Server::start(&[]);
    let src = tempfile::tempdir().unwrap();
    file(&src.path().join("big"), &noise(48 << 20, 12), 0o644, (1_600_000_000, 0));
    let client = std::process::Command::new(BIN)
        .args(["send", src.path().to_str().unwrap(), &server.url("d"), "-n", "1", "-c", "4k", "-q"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Interrupt once a megabyte of the file has been written.
    let temp = temp_of(&server.path("d"), "big");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while fs::metadata(&temp).map_or(0, |m| m.blocks() * 512) < 1 << 20 {
        assert!(std::time::Instant::now() < deadline, "the transfer never got going");
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    let status =
        std::process::Command::new("kill").args(["-INT", &client.id().to_string()]).status().unwrap();
    assert!(status.success());
    let out = client.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    assert!(stderr(&out).contains("interrupted"), "{}", stderr(&out));
    assert!(!server.path("d/big").exists(), "no file under its final name before it is complete");
    // The session is gone (the tree is not held), and the rerun completes,
    // reusing the partial file.
    let r = sync_ok(&["send", src.path().to_str().unwrap(), &server.url("d"), "-c", "4k"]);
    assert_same_tree(src.path(), &server.path("d"));
    assert!(count(&r, "bytes_transferred") <= (47 << 20), "{r}");
}

#[test]
fn fsync_mirrors_the_same_both_ways_with_and_without_inplace() {
    for extra in [&["--fsync"][..], &["--fsync", "--inplace"]] {
        for way in both_ways() {
            varied_tree(&way.src, 4096);
            let mut args = vec!["-c", "4KiB"];
            args.extend_from_slice(extra);
            let r = way.sync(&args);
            assert_same_tree(&way.src, &way.dst);
            assert_eq!(r["errors"], 0, "{} {extra:?}: {r}", way.name);
            // Changed again: files built chunk by chunk, and small ones.
            file(&way.src.join("big.bin"), &noise(4096 * 5 + 77, 9), 0o755, (1_700_000_001, 0));
            file(&way.src.join("plain.txt"), b"changed\n", 0o644, (1_700_000_002, 0));
            way.sync(&args);
            assert_same_tree(&way.src, &way.dst);
        }
    }
}
