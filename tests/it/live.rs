//! Live sources (the database-migration case): files that change or vanish
//! while they are read. The engine runs here between two local trees, with
//! a source that meddles with a file the moment it is first read.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use pareco::codec::{RelPath, Span};
use pareco::peer::{
    Bundle, Chunk, Digest, Listing, LocalDestination, LocalSource, Result, Settings, Source, Tree,
};
use pareco::transfer::{self, Options};

use crate::util::*;

const CHUNK: usize = 4096;

/// A local source that runs `meddle` on the file `victim` just before it is
/// first read.
#[derive(Clone)]
struct Meddling {
    inner: LocalSource,
    root: PathBuf,
    victim: &'static str,
    meddle: fn(&std::path::Path),
    done: Arc<AtomicBool>,
}

impl Source for Meddling {
    async fn walk(&self) -> Result<Listing> {
        self.inner.walk().await
    }

    async fn hash(&self, path: RelPath, span: Span) -> Result<Vec<Digest>> {
        self.inner.hash(path, span).await
    }

    async fn hash_files(&self, files: Vec<(RelPath, u64)>) -> Result<Vec<Result<Digest>>> {
        self.inner.hash_files(files).await
    }

    async fn read(&self, path: RelPath, offset: u64, len: u32) -> Result<Chunk> {
        if path.as_bytes() == self.victim.as_bytes() && !self.done.swap(true, Ordering::SeqCst) {
            (self.meddle)(&self.root.join(self.victim));
        }
        self.inner.read(path, offset, len).await
    }

    async fn read_files(&self, files: Vec<(RelPath, u32)>) -> Result<Bundle> {
        if files.iter().any(|(path, _)| path.as_bytes() == self.victim.as_bytes())
            && !self.done.swap(true, Ordering::SeqCst)
        {
            (self.meddle)(&self.root.join(self.victim));
        }
        self.inner.read_files(files).await
    }
}

fn settings() -> Settings {
    local_settings(CHUNK as u32)
}

fn options() -> Options {
    local_options(CHUNK as u32)
}

fn run(
    src: &std::path::Path,
    dst: &std::path::Path,
    victim: &'static str,
    meddle: fn(&std::path::Path),
) -> transfer::Report {
    run_with(src, dst, victim, meddle, options())
}

fn run_with(
    src: &std::path::Path,
    dst: &std::path::Path,
    victim: &'static str,
    meddle: fn(&std::path::Path),
    options: Options,
) -> transfer::Report {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (hard_links, inplace) = (options.hard_links, options.inplace);
    let settings = || Settings { hard_links, inplace, ..settings() };
    rt.block_on(async {
        let source = Meddling {
            inner: LocalSource::new(Tree::open(src).unwrap(), settings()),
            root: src.to_owned(),
            victim,
            meddle,
            done: Arc::new(AtomicBool::new(false)),
        };
        let dest = LocalDestination::new(Tree::open(dst).unwrap(), settings());
        let counters = Arc::new(transfer::Counters::default());
        transfer::run(source, dest, options, counters.clone()).await.expect("transfer runs");
        counters.report(std::time::Duration::from_secs(1), 0, Default::default(), Default::default())
    })
}

fn plain_run(src: &std::path::Path, dst: &std::path::Path) -> transfer::Report {
    run(src, dst, "no such file", |_| {})
}

#[test]
fn a_file_growing_while_read_is_sent_as_read_and_counted() {
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    let original = noise(CHUNK * 10, 1);
    file(&src.path().join("db/table"), &original, 0o600, (1_600_000_000, 0));
    file(&src.path().join("db/other"), b"steady", 0o600, (1_600_000_000, 0));
    let report = run(src.path(), dst.path(), "db/table", |path| {
        // A writer that changes a byte in place and appends, like a database.
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new().read(true).write(true).open(path).unwrap();
        let mut first = [0u8; 1];
        f.read_exact_at(&mut first, 0).unwrap();
        f.write_all_at(&[first[0] ^ 0xff], 0).unwrap();
        f.write_all_at(b"appended by a writer", (CHUNK * 10) as u64).unwrap();
    });
    assert!(report.complete(), "{report:?}");
    assert_eq!(report.files_changed_during_transfer, 1);
    assert_eq!(report.files_vanished, 0);
    // Sent as read: the listed size, the bytes read (the writer came first).
    let got = std::fs::read(dst.path().join("db/table")).unwrap();
    assert_eq!(got.len(), CHUNK * 10);
    assert_eq!(got[0], original[0] ^ 0xff);
    assert!(got[1..] == original[1..]);
    // With the writer stopped, the next run makes an exact mirror and sends
    // only what changed: the new tail.
    let report = plain_run(src.path(), dst.path());
    assert!(report.complete());
    assert_eq!(report.files_changed_during_transfer, 0);
    assert_eq!(report.bytes_transferred, 20);
    assert_same_tree(src.path(), dst.path());
}

/// A file that vanishes while it is read: with `--delete` its copy at the
/// destination goes too (the mirror is exact); without, nothing is ever
/// deleted (a lying server answering `NotFound` to every read of a `recv`
/// removed each file the destination had before).
#[test]
fn a_file_vanishing_while_read_is_dropped_from_the_destination_only_with_delete() {
    for (size, name) in [(CHUNK * 6, "big"), (100, "small")] {
        for delete in [false, true] {
            let src = tempfile::tempdir().unwrap();
            let dst = tempfile::tempdir().unwrap();
            file(&src.path().join("keep"), b"keep me", 0o644, (1, 0));
            file(&src.path().join(name), &noise(size, 2), 0o644, (2, 0));
            // An older version is on the destination already.
            let older = noise(size + 1, 3);
            file(&dst.path().join(name), &older, 0o644, (1, 0));
            let options = Options { delete, ..options() };
            let report = run_with(
                src.path(),
                dst.path(),
                if name == "big" { "big" } else { "small" },
                |path| std::fs::remove_file(path).unwrap(),
                options,
            );
            assert!(report.complete(), "{name} {delete}: {report:?}");
            assert_eq!(report.files_vanished, 1, "{name} {delete}");
            assert!(!temp_of(dst.path(), name).exists(), "{name} {delete}");
            if delete {
                assert!(!dst.path().join(name).exists(), "{name}");
                assert_same_tree(src.path(), dst.path());
            } else {
                assert_eq!(std::fs::read(dst.path().join(name)).unwrap(), older, "{name}");
                assert_eq!(std::fs::read(dst.path().join("keep")).unwrap(), b"keep me");
            }
        }
    }
}

#[test]
fn a_file_replaced_by_rename_while_read_is_changed_not_vanished() {
    // The safe way to rewrite a file: write a new one beside it, rename it
    // over the old. The source had the old one open already (it hashed it
    // to compare with the destination's copy).
    fn replace(path: &std::path::Path) {
        let new = path.with_extension("new");
        std::fs::write(&new, noise(CHUNK * 6 + 5, 9)).unwrap();
        std::fs::rename(&new, path).unwrap();
    }
    for (size, name) in [(CHUNK * 6, "big"), (100, "small")] {
        let src = tempfile::tempdir().unwrap();
        let dst = tempfile::tempdir().unwrap();
        file(&src.path().join(name), &noise(size, 2), 0o644, (2, 0));
        // An older version of the same size is on the destination already.
        file(&dst.path().join(name), &noise(size, 3), 0o644, (1, 0));
        let report = run(src.path(), dst.path(), if name == "big" { "big" } else { "small" }, replace);
        assert!(report.complete(), "{name}: {report:?}");
        assert_eq!(report.files_vanished, 0, "{name}");
        assert_eq!(report.files_changed_during_transfer, 1, "{name}");
        assert!(dst.path().join(name).exists(), "{name}: the destination copy was deleted");
        // The writer is done: the next run makes an exact mirror.
        let report = plain_run(src.path(), dst.path());
        assert!(report.complete() && report.files_changed_during_transfer == 0, "{name}: {report:?}");
        assert_same_tree(src.path(), dst.path());
    }
}

/// `-H`: the first name of a file vanishes while it is read; its other
/// name is still in the source but was to be linked to the first at the
/// destination, so it is not there. That is a failed file, not a success.
#[test]
fn a_hard_link_whose_first_name_vanished_fails_the_run() {
    for size in [CHUNK * 3, 100] {
        let src = tempfile::tempdir().unwrap();
        let dst = tempfile::tempdir().unwrap();
        file(&src.path().join("a"), &noise(size, 4), 0o644, (2, 0));
        std::fs::hard_link(src.path().join("a"), src.path().join("b")).unwrap();
        let options = Options { hard_links: true, ..options() };
        let report =
            run_with(src.path(), dst.path(), "a", |path| std::fs::remove_file(path).unwrap(), options);
        assert_eq!(report.files_vanished, 1, "{size}");
        assert!(!dst.path().join("b").exists(), "{size}");
        assert!(!report.complete(), "{size}: b is missing at the destination: {report:?}");
        assert_eq!(report.files_failed, 1, "{size}");
    }
}

/// A run with a failed file still removes what interrupted runs left
/// elsewhere (before, it swept nothing, and then gave the directories
/// their source's mtime, after which no run looked in them again); the
/// failed file's own temporary file stays for the next run.
#[test]
fn a_run_with_a_failed_file_sweeps_every_other_directory() {
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    file(&src.path().join("a"), &noise(CHUNK * 3, 5), 0o644, (2, 0));
    file(&src.path().join("d/b"), b"bee", 0o644, (2, 0));
    std::fs::create_dir_all(dst.path().join("d")).unwrap();
    // What a killed run left in d, for a file no longer in the source.
    let left = temp_of(&dst.path().join("d"), "gone");
    std::fs::write(&left, b"half a file").unwrap();
    let killed_at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
    std::fs::File::open(dst.path().join("d")).unwrap().set_modified(killed_at).unwrap();
    let report = run(src.path(), dst.path(), "a", |path| {
        // `a` becomes a directory as it is read: it fails.
        std::fs::remove_file(path).unwrap();
        std::fs::create_dir(path).unwrap();
    });
    assert_eq!(report.files_failed, 1, "{report:?}");
    assert!(!report.complete());
    assert!(!left.exists(), "the temporary file of an interrupted run stays in d");
    assert!(temp_of(dst.path(), "a").exists(), "the failed file's temporary file is kept");
    assert_eq!(std::fs::read(dst.path().join("d/b")).unwrap(), b"bee");
}

/// A source whose listing ends with its session lost (a server restarted
/// while it walked): the other calls go to `inner`.
#[derive(Clone)]
struct LostWalk {
    inner: LocalSource,
}

impl Source for LostWalk {
    async fn walk(&self) -> Result<Listing> {
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        let lost = pareco::peer::Error::new(pareco::codec::ErrorKind::Lost, "the session was lost");
        tx.send(pareco::peer::Batch { error: Some(lost), ..Default::default() }).await.unwrap();
        Ok(rx)
    }

    async fn hash(&self, path: RelPath, span: Span) -> Result<Vec<Digest>> {
        self.inner.hash(path, span).await
    }

    async fn hash_files(&self, files: Vec<(RelPath, u64)>) -> Result<Vec<Result<Digest>>> {
        self.inner.hash_files(files).await
    }

    async fn read(&self, path: RelPath, offset: u64, len: u32) -> Result<Chunk> {
        self.inner.read(path, offset, len).await
    }

    async fn read_files(&self, files: Vec<(RelPath, u32)>) -> Result<Bundle> {
        self.inner.read_files(files).await
    }
}

/// A listing cut short by a lost session ends the run with that error,
/// which the client answers by opening a new session (before, it was one
/// more listing problem, and the run ended as failed instead).
#[test]
fn a_session_lost_during_the_listing_is_the_runs_error() {
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let error = rt.block_on(async {
        let source = LostWalk { inner: LocalSource::new(Tree::open(src.path()).unwrap(), settings()) };
        let dest = LocalDestination::new(Tree::open(dst.path()).unwrap(), settings());
        let counters = Arc::new(transfer::Counters::default());
        transfer::run(source, dest, options(), counters)
            .await
            .expect_err("the run ends with the lost session")
    });
    assert_eq!(error.kind, pareco::codec::ErrorKind::Lost, "{error}");
}

/// `--inplace` without `--delete`: a file that vanishes while it is
/// rewritten in place leaves a copy that is part old, part new. That is a
/// failed file, not a vanished one the destination keeps as it was.
#[test]
fn a_file_vanishing_while_rewritten_in_place_fails_the_run() {
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    file(&src.path().join("big"), &noise(CHUNK * 6, 2), 0o644, (2, 0));
    file(&dst.path().join("big"), &noise(CHUNK * 6, 3), 0o644, (1, 0));
    let options = Options { inplace: true, ..options() };
    let report = run_with(src.path(), dst.path(), "big", |path| std::fs::remove_file(path).unwrap(), options);
    assert_eq!(report.files_failed, 1, "{report:?}");
    assert!(!report.complete());
}
