//! A destination that refuses writes (a read-only file system, a directory
//! the user may not write into) and a source file the user may not read:
//! one clear line naming the path and the cause, exit 1, the rest of the
//! run done, nothing torn; a rerun after the cause is gone completes.

use std::fs;
use std::path::Path;

use crate::full_disk::Tmpfs;
use crate::util::*;

fn tree(root: &Path) {
    for i in 0..4 {
        file(&root.join(format!("big/f{i}")), &noise(600_000, i), 0o644, (1_600_000_000, 0));
    }
    for i in 0..10 {
        file(&root.join(format!("small/s{i}")), &noise(900, 50 + i), 0o644, (1_500_000_000, 0));
    }
}

/// Runs the client, quiet; returns its exit code and stderr.
fn run(args: &[&str]) -> (Option<i32>, String) {
    let mut all = args.to_vec();
    all.extend(["-c", "128KiB", "-q"]);
    let out = pareco(&all);
    (out.status.code(), stderr(&out))
}

fn check_read_only_run(code: Option<i32>, err: &str) {
    assert_eq!(code, Some(1), "{err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "one line, not one per file:\n{err}");
    assert!(lines[0].contains("read-only file system"), "{err}");
}

#[test]
fn a_read_only_destination_stops_a_download_with_one_line_and_a_rerun_completes() {
    let local = tempfile::tempdir().unwrap();
    let Some(disk) = Tmpfs::mount(local.path(), "64m") else { return };
    let server = Server::start(&[]);
    tree(&server.path("d"));
    let dst = disk.path().join("d");
    fs::create_dir(&dst).unwrap();
    disk.read_only(true);
    let (code, err) = run(&["recv", &server.url("d"), dst.to_str().unwrap()]);
    check_read_only_run(code, &err);
    disk.read_only(false);
    sync_ok(&["recv", &server.url("d"), dst.to_str().unwrap()]);
    assert_same_tree(&server.path("d"), &dst);
}

#[test]
fn a_read_only_tree_on_the_server_stops_an_upload_with_one_line_and_the_server_serves_on() {
    let root = tempfile::tempdir().unwrap();
    let Some(disk) = Tmpfs::mount(root.path(), "64m") else { return };
    fs::create_dir(disk.path().join("d")).unwrap();
    file(&disk.path().join("other/x"), b"still readable", 0o644, (1_600_000_000, 0));
    let server = Server::start_in(root, &[]);
    disk.read_only(true);
    let src = tempfile::tempdir().unwrap();
    tree(src.path());
    let (code, err) = run(&["send", src.path().to_str().unwrap(), &server.url("d")]);
    check_read_only_run(code, &err);
    // Other sessions are served.
    let elsewhere = tempfile::tempdir().unwrap();
    sync_ok(&["recv", &server.url("other"), elsewhere.path().to_str().unwrap()]);
    assert_same_tree(&disk.path().join("other"), elsewhere.path());
    disk.read_only(false);
    sync_ok(&["send", src.path().to_str().unwrap(), &server.url("d")]);
    assert_same_tree(src.path(), &disk.path().join("d"));
}

/// A local directory the unprivileged client owns.
fn owned_by_the_client() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    set_mode(dir.path(), 0o755);
    if rustix::process::geteuid().is_root() {
        let nobody = rustix::process::Uid::from_raw(65534);
        rustix::fs::chown(dir.path(), Some(nobody), None).unwrap();
    }
    dir
}

#[test]
fn a_directory_the_client_may_not_write_fails_its_files_by_name_and_the_rest_completes() {
    let server = Server::start(&[]);
    let src = server.path("d");
    tree(&src);
    let local = owned_by_the_client();
    let dst = local.path().join("d");
    // The first run as root makes the tree; then `small` is locked.
    sync_ok(&["recv", &server.url("d"), dst.to_str().unwrap()]);
    if rustix::process::geteuid().is_root() {
        std::process::Command::new("chown").args(["-R", "65534:65534"]).arg(&dst).status().unwrap();
    }
    for i in 0..10 {
        file(&src.join(format!("small/s{i}")), &noise(900, 80 + i), 0o644, (1_500_000_100, 0));
    }
    file(&src.join("big/f0"), &noise(700_000, 9), 0o644, (1_600_000_100, 0));
    set_mode(&dst.join("small"), 0o555);
    let out = unprivileged(&["recv", &server.url("d"), dst.to_str().unwrap(), "-c", "128KiB", "-q"]);
    set_mode(&dst.join("small"), 0o755);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("small/s") && err.contains("ermission denied"), "{err}");
    assert!(!err.contains("big/"), "{err}");
    // The rest was done: big/f0 is the new one.
    assert_eq!(fs::read(dst.join("big/f0")).unwrap(), fs::read(src.join("big/f0")).unwrap());
    // And nothing is torn: the locked files are their old versions, whole.
    for i in 0..10 {
        assert_eq!(fs::read(dst.join(format!("small/s{i}"))).unwrap(), noise(900, 50 + i));
    }
    sync_ok(&["recv", &server.url("d"), dst.to_str().unwrap()]);
    assert_same_tree(&src, &dst);
}

#[test]
fn a_source_file_the_client_may_not_read_fails_alone_by_name() {
    let server = Server::start(&[]);
    let src = owned_by_the_client();
    tree(src.path());
    file(&src.path().join("small/secret"), b"not for nobody", 0o600, (1_600_000_000, 0));
    if rustix::process::geteuid().is_root() {
        std::process::Command::new("chown").args(["-R", "65534:65534"]).arg(src.path()).status().unwrap();
        std::process::Command::new("chown").arg("0:0").arg(src.path().join("small/secret")).status().unwrap();
    } else {
        set_mode(&src.path().join("small/secret"), 0o000);
    }
    let local = src.path().to_str().unwrap();
    let out = unprivileged(&["send", local, &server.url("d"), "-c", "128KiB", "-q"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let lines: Vec<&str> = err.lines().collect();
    assert!(lines.len() <= 2 && err.contains("small/secret") && err.contains("ermission denied"), "{err}");
    // Everything else arrived, exactly.
    let dst = server.path("d");
    assert!(!dst.join("small/secret").exists());
    let mut theirs = snapshot(src.path());
    theirs.remove("small/secret");
    assert!(theirs == snapshot(&dst), "the rest differs:\n{err}");
}
