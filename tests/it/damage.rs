//! Data damaged on the way: the destination refuses a chunk or a small file
//! whose bytes do not match their digest, and the engine sends it once more.
//! The engine runs here between two local trees, with a destination that
//! flips a byte of the first data it is given.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use pareco::codec::{Action, HashTarget, Meta, RelPath, Span, Stat};
use pareco::peer::{
    Begun, Destination, Digest, Listing, LocalDestination, LocalSource, NewFile, Result, Settings, Tree,
};
use pareco::transfer;

use crate::util::*;

const CHUNK: usize = 4096;

/// A local destination that damages the first `put_files` data and the
/// first chunk `write` it sees.
#[derive(Clone)]
struct Damaging {
    inner: LocalDestination,
    put_files_damaged: Arc<AtomicBool>,
    write_damaged: Arc<AtomicBool>,
}

fn flip_last(data: &Bytes) -> Bytes {
    let mut bytes = data.to_vec();
    if let Some(last) = bytes.last_mut() {
        *last ^= 0x5a;
    }
    bytes.into()
}

impl Destination for Damaging {
    async fn walk(&self) -> Result<Listing> {
        self.inner.walk().await
    }

    async fn probe(&self, paths: Vec<RelPath>) -> Result<Vec<Option<Stat>>> {
        self.inner.probe(paths).await
    }

    async fn hash(&self, target: HashTarget, span: Span) -> Result<Vec<Digest>> {
        self.inner.hash(target, span).await
    }

    async fn hash_files(&self, files: Vec<(RelPath, u64)>) -> Result<Vec<Result<Digest>>> {
        self.inner.hash_files(files).await
    }

    async fn begin(&self, path: RelPath, size: u64) -> Result<Begun> {
        self.inner.begin(path, size).await
    }

    async fn copy_old(&self, handle: u64, ranges: Vec<(u64, u64)>) -> Result<()> {
        self.inner.copy_old(handle, ranges).await
    }

    async fn write(&self, handle: u64, offset: u64, data: Bytes, digest: Digest) -> Result<()> {
        let data = if self.write_damaged.swap(true, Ordering::SeqCst) { data } else { flip_last(&data) };
        self.inner.write(handle, offset, data, digest).await
    }

    async fn zero(&self, handle: u64, offset: u64, len: u32) -> Result<()> {
        self.inner.zero(handle, offset, len).await
    }

    async fn finish(&self, handle: u64, meta: Meta) -> Result<()> {
        self.inner.finish(handle, meta).await
    }

    async fn discard(&self, handle: u64, remove: bool) -> Result<()> {
        self.inner.discard(handle, remove).await
    }

    async fn put_file(&self, path: RelPath, meta: Meta, data: Bytes, digest: Digest) -> Result<()> {
        self.inner.put_file(path, meta, data, digest).await
    }

    async fn put_files(&self, files: Vec<NewFile>, data: Bytes) -> Result<Vec<(usize, pareco::peer::Error)>> {
        // The last byte of the buffer belongs to the last non-empty file.
        let data = if self.put_files_damaged.swap(true, Ordering::SeqCst) { data } else { flip_last(&data) };
        self.inner.put_files(files, data).await
    }

    async fn apply(&self, actions: Vec<Action>) -> Result<Vec<(RelPath, String)>> {
        self.inner.apply(actions).await
    }
}

fn settings() -> Settings {
    local_settings(CHUNK as u32)
}

#[test]
fn damaged_small_files_and_chunks_are_sent_once_more() {
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    // Small files that travel together in one bundle, and one large file.
    for i in 0..5 {
        file(&src.path().join(format!("small/{i}")), &noise(100, i), 0o640, (1_700_000_000, 7));
    }
    file(&src.path().join("large"), &noise(CHUNK * 3, 9), 0o600, (1_700_000_001, 0));
    let report = tokio::runtime::Runtime::new().unwrap().block_on(async {
        let source = LocalSource::new(Tree::open(src.path()).unwrap(), settings());
        let dest = Damaging {
            inner: LocalDestination::new(Tree::open(dst.path()).unwrap(), settings()),
            put_files_damaged: Arc::default(),
            write_damaged: Arc::default(),
        };
        let options = local_options(CHUNK as u32);
        let counters = Arc::new(transfer::Counters::default());
        transfer::run(source, dest.clone(), options, counters.clone()).await.expect("transfer runs");
        assert!(dest.put_files_damaged.load(Ordering::SeqCst) && dest.write_damaged.load(Ordering::SeqCst));
        counters.report(std::time::Duration::from_secs(1), 0, Default::default(), Default::default())
    });
    assert!(report.complete(), "{report:?}");
    assert_eq!(report.files_transferred, 6);
    assert_eq!(report.files_failed, 0);
    // Every byte once, plus the damaged small file and the damaged chunk again.
    assert_eq!(report.bytes_transferred, 5 * 100 + 3 * CHUNK as u64 + 100 + CHUNK as u64);
    assert_same_tree(src.path(), dst.path());
}
