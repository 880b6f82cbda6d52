//! A destination that fills up: one line naming the path and the cause,
//! exit 1, no new file started after it, no temporary file left holding
//! space, nothing torn under a final name; once space is freed, a rerun
//! completes. The destination is a small tmpfs (mounting one needs root:
//! without it these tests say so and pass).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::*;

/// A tmpfs mounted on a directory, unmounted when dropped.
pub struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` on `dir`; `None` without the privilege.
    pub fn mount(dir: &Path, size: &str) -> Option<Tmpfs> {
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!("skipped: mounting a tmpfs needs root");
            return None;
        }
        Some(Tmpfs { path: dir.to_owned() })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn resize(&self, size: &str) {
        let status =
            Command::new("mount").args(["-o", &format!("remount,size={size}")]).arg(&self.path).status();
        assert!(status.expect("remount").success());
    }
}

impl Tmpfs {
    /// Makes the file system read-only (`true`) or writable again.
    pub fn read_only(&self, on: bool) {
        let how = if on { "remount,ro" } else { "remount,rw" };
        let status = Command::new("mount").args(["-o", how]).arg(&self.path).status();
        assert!(status.expect("remount").success());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.path).status();
        let _ = fs::remove_dir(&self.path);
    }
}

/// 12 files of 1 MiB and 30 small ones: more than 6 MiB.
fn tree(root: &Path) {
    for i in 0..12 {
        file(&root.join(format!("big/f{i:02}")), &noise(1 << 20, i), 0o644, (1_600_000_000, 0));
    }
    for i in 0..30 {
        file(&root.join(format!("small/s{i:02}")), &noise(2000, 100 + i), 0o600, (1_500_000_000, 0));
    }
}

/// Every regular file under `root`, by path.
fn files_under(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut dirs = vec![root.to_owned()];
    while let Some(dir) = dirs.pop() {
        for entry in fs::read_dir(&dir).expect("read dir").flatten() {
            let path = entry.path();
            if entry.file_type().expect("file type").is_dir() {
                dirs.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out
}

fn check_full_run(out: &std::process::Output, src: &Path, dst: &Path) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "one line, not one per file:\n{err}");
    assert!(lines[0].contains("no space left on device") && lines[0].contains("/f"), "{err}");
    // No temporary file holds space, and what has its final name is whole.
    for path in files_under(dst) {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        assert!(!name.starts_with(".pareco-"), "temporary file left: {}", path.display());
        let rel = path.strip_prefix(dst).unwrap();
        assert_eq!(fs::read(&path).unwrap(), fs::read(src.join(rel)).unwrap(), "{} is torn", rel.display());
    }
}

#[test]
fn a_full_disk_under_an_upload_stops_it_cleanly_and_a_rerun_completes() {
    let root = tempfile::tempdir().unwrap();
    let Some(disk) = Tmpfs::mount(root.path(), "6m") else { return };
    let server = Server::start_in(root, &[]);
    let src = tempfile::tempdir().unwrap();
    tree(src.path());
    let url = server.url("d");
    let out = pareco(&["send", src.path().to_str().unwrap(), &url, "-c", "256KiB", "-q"]);
    check_full_run(&out, src.path(), &disk.path().join("d"));
    // The server still serves.
    let elsewhere = tempfile::tempdir().unwrap();
    sync_ok(&["recv", &server.url(""), elsewhere.path().to_str().unwrap()]);
    disk.resize("64m");
    sync_ok(&["send", src.path().to_str().unwrap(), &url, "-c", "256KiB"]);
    assert_same_tree(src.path(), &disk.path().join("d"));
}

#[test]
fn a_full_disk_under_a_download_stops_it_cleanly_and_a_rerun_completes() {
    let local = tempfile::tempdir().unwrap();
    let Some(disk) = Tmpfs::mount(local.path(), "6m") else { return };
    let server = Server::start(&[]);
    tree(&server.path("d"));
    let dst = disk.path().join("d");
    let out = pareco(&["recv", &server.url("d"), dst.to_str().unwrap(), "-c", "256KiB", "-q"]);
    check_full_run(&out, &server.path("d"), &dst);
    disk.resize("64m");
    sync_ok(&["recv", &server.url("d"), dst.to_str().unwrap(), "-c", "256KiB"]);
    assert_same_tree(&server.path("d"), &dst);
}
