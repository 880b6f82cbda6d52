//! The persistent digest cache: an unchanged file is not read again on
//! either side, a file rewritten to its old size and mtime is still caught
//! (by its ctime), a damaged cache file costs one warning and nothing
//! else, and a cache is never kept inside a synced tree.

use std::fs;
use std::path::Path;
use std::time::Duration;

use crate::util::*;

/// Files this old are past the racy window (2 s) and get remembered.
fn age() {
    std::thread::sleep(Duration::from_millis(2100));
}

fn tree(root: &Path) {
    for i in 0..3 {
        file(&root.join(format!("big/f{i}")), &noise(3 << 20, i), 0o644, (1_600_000_000, 0));
    }
    // Small files, compared in batches, are looked up in batches too.
    for i in 0..40 {
        file(&root.join(format!("small/s{i:02}")), &noise(3000, 10 + i), 0o644, (1_600_000_000, 0));
    }
    for i in 0..5 {
        file(&root.join(format!("mid/m{i}")), &noise(100_000, 50 + i), 0o644, (1_600_000_000, 0));
    }
}

fn run(args: &[&str], cache: &Path) -> (serde_json::Value, String) {
    let mut all = args.to_vec();
    all.extend(["-c", "256KiB", "--json", "-v", "--cache-dir", cache.to_str().unwrap()]);
    let out = pareco(&all);
    assert!(out.status.success(), "{}", stderr(&out));
    (serde_json::from_slice(&out.stdout).expect("a JSON report"), stderr(&out))
}

/// An upload whose caches on both sides are warm: copied, aged past the
/// racy window, and re-synced once (which remembers every file).
struct Warm {
    _caches: tempfile::TempDir,
    server: Server,
    src: tempfile::TempDir,
    client_cache: std::path::PathBuf,
}

impl Warm {
    fn upload() -> Warm {
        let caches = tempfile::tempdir().unwrap();
        let server = Server::start(&["--cache-dir", caches.path().join("server").to_str().unwrap()]);
        let src = tempfile::tempdir().unwrap();
        tree(src.path());
        let client_cache = caches.path().join("client");
        let (local, url) = (src.path().to_str().unwrap(), server.url("d"));
        run(&["send", local, &url], &client_cache);
        age();
        run(&["send", local, &url], &client_cache);
        Warm { _caches: caches, server, src, client_cache }
    }
}

#[test]
fn unchanged_files_are_not_read_again_on_either_side() {
    for direction in ["send", "recv"] {
        let caches = tempfile::tempdir().unwrap();
        let server_cache = caches.path().join("server");
        let client_cache = caches.path().join("client");
        let server = Server::start(&["--cache-dir", server_cache.to_str().unwrap()]);
        let local = tempfile::tempdir().unwrap();
        let (src, dst) = match direction {
            "send" => (local.path().to_owned(), server.path("d")),
            _ => (server.path("d"), local.path().to_owned()),
        };
        tree(&src);
        let url = server.url("d");
        let args: Vec<&str> = match direction {
            "send" => vec!["send", local.path().to_str().unwrap(), &url],
            _ => vec!["recv", &url, local.path().to_str().unwrap()],
        };
        run(&args, &client_cache);
        age();
        // The first re-sync reads everything and remembers it.
        let before = server.read_chars();
        let (_, err) = run(&args, &client_cache);
        let reading = server.read_chars() - before;
        assert!(err.contains("0 lookup(s) answered without reading, 48 read"), "{direction}: {err}");
        assert!(reading > 9 << 20, "{direction}: the server read {reading} bytes");
        // The next reads nothing on either side.
        let before = server.read_chars();
        let (report, err) = run(&args, &client_cache);
        let reading = server.read_chars() - before;
        assert!(err.contains("48 lookup(s) answered without reading, 0 read"), "{direction}: {err}");
        assert!(reading < 1 << 20, "{direction}: the server read {reading} bytes");
        assert_eq!(report["files_transferred"], 0, "{direction}: {report}");
        assert_same_tree(&src, &dst);
    }
}

#[test]
fn a_rewrite_that_puts_back_size_and_mtime_is_still_caught() {
    let warm = Warm::upload();
    let (src, server, client_cache) = (&warm.src, &warm.server, &warm.client_cache);
    let (local, url) = (src.path().to_str().unwrap(), server.url("d"));
    // Same size, same mtime, other bytes: only the ctime tells.
    let mut big = fs::read(src.path().join("big/f1")).unwrap();
    big[1 << 20] ^= 1;
    file(&src.path().join("big/f1"), &big, 0o644, (1_600_000_000, 0));
    file(&src.path().join("mid/m1"), &noise(100_000, 99), 0o644, (1_600_000_000, 0));
    file(&src.path().join("small/s07"), &noise(3000, 98), 0o644, (1_600_000_000, 0));
    let (report, _) = run(&["send", local, &url], client_cache);
    assert_eq!(report["files_transferred"], 3, "{report}");
    assert_eq!(report["chunks_transferred"], 3, "{report}");
    assert_same_tree(src.path(), &server.path("d"));
}

#[test]
fn a_damaged_cache_file_costs_one_warning_and_is_rebuilt() {
    let caches = tempfile::tempdir().unwrap();
    let server = Server::start(&[]);
    let src = tempfile::tempdir().unwrap();
    tree(src.path());
    let (local, url) = (src.path().to_str().unwrap(), server.url("d"));
    let cache = caches.path().join("client");
    run(&["send", local, &url], &cache);
    age();
    run(&["send", local, &url], &cache);
    let db = cache.join("digests.sqlite3");
    let mut bytes = fs::read(&db).unwrap();
    assert!(bytes.len() > 4096, "{} bytes", bytes.len());
    for b in &mut bytes[..4096] {
        *b = 0x5a;
    }
    fs::write(&db, &bytes).unwrap();
    let (report, err) = run(&["send", local, &url], &cache);
    let warnings: Vec<&str> = err.lines().filter(|l| l.contains("WARN")).collect();
    assert_eq!(warnings.len(), 1, "{err}");
    assert!(warnings[0].contains("digests.sqlite3"), "{err}");
    assert_eq!(report["files_transferred"], 0, "{report}");
    assert_same_tree(src.path(), &server.path("d"));
    // Rebuilt by that run: the next one reads nothing and says nothing.
    let (_, err) = run(&["send", local, &url], &cache);
    assert!(!err.contains("WARN"), "{err}");
    assert!(err.contains("48 lookup(s) answered without reading, 0 read"), "{err}");
}

#[test]
fn a_cache_is_never_kept_inside_a_synced_tree() {
    let root = tempfile::tempdir().unwrap();
    let inside = root.path().join("cache");
    let out =
        pareco(&["listen", "--root", root.path().to_str().unwrap(), "--cache-dir", inside.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("inside the served root"), "{}", stderr(&out));
    let server = Server::start(&[]);
    let src = tempfile::tempdir().unwrap();
    tree(src.path());
    let cache = src.path().join("not/yet");
    let (_, err) = run(&["send", src.path().to_str().unwrap(), &server.url("d")], &cache);
    assert!(err.contains("inside the synced tree"), "{err}");
    assert!(!src.path().join("not").exists());
    assert_same_tree(src.path(), &server.path("d"));
}

#[test]
fn a_file_replaced_by_another_of_the_same_size_and_mtime_is_read() {
    let warm = Warm::upload();
    let (src, server, cache) = (&warm.src, &warm.server, &warm.client_cache);
    let (local, url) = (src.path().to_str().unwrap(), server.url("d"));
    // Deleted and made again (its inode number may well be reused), and
    // replaced by a rename: same size, same mtime, other bytes.
    let gone = src.path().join("mid/m3");
    let ino = std::os::unix::fs::MetadataExt::ino(&fs::metadata(&gone).unwrap());
    fs::remove_file(&gone).unwrap();
    file(&gone, &noise(100_000, 1003), 0o644, (1_600_000_000, 0));
    let reused = std::os::unix::fs::MetadataExt::ino(&fs::metadata(&gone).unwrap()) == ino;
    let fresh = src.path().join("mid/new");
    file(&fresh, &noise(100_000, 1004), 0o644, (1_600_000_000, 0));
    fs::rename(&fresh, src.path().join("mid/m4")).unwrap();
    let small = src.path().join("small/s11");
    fs::remove_file(&small).unwrap();
    file(&small, &noise(3000, 1005), 0o644, (1_600_000_000, 0));
    let (report, _) = run(&["send", local, &url], cache);
    assert_eq!(report["files_transferred"], 3, "inode reused: {reused}; {report}");
    assert_same_tree(src.path(), &server.path("d"));
}

#[test]
fn another_chunk_size_or_digest_is_never_answered_from_the_cache() {
    let warm = Warm::upload();
    let (src, server, cache) = (&warm.src, &warm.server, &warm.client_cache);
    let (local, url) = (src.path().to_str().unwrap(), server.url("d"));
    for extra in [["-c", "64KiB"], ["--hash", "xxh128"]] {
        let mut args = vec!["send", local, &url, "--cache-dir", cache.to_str().unwrap(), "--json", "-v"];
        args.extend(extra);
        let out = pareco(&args);
        let err = stderr(&out);
        assert!(out.status.success(), "{err}");
        assert!(err.contains("0 lookup(s) answered without reading"), "{extra:?}: {err}");
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(report["files_transferred"], 0, "{extra:?}: {report}");
    }
    assert_same_tree(src.path(), &server.path("d"));
}
