//! Digests through the persistent [`cache`](super::cache): a file whose
//! key (device, inode, size, mtime, ctime) is remembered with the session's
//! chunk size and algorithm is answered without a read; the digests the
//! spans of a file produce, request after request, are gathered into its
//! entry, stored once every chunk is known.

use std::collections::HashMap;
use std::fs::File;
use std::os::fd::AsFd;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use super::cache::{DigestCache, FileKey};
use super::{Digest, Settings};
use crate::codec::HashAlgo;

/// Files smaller than this are read rather than looked up one by one:
/// from the page cache, reading and hashing a few KiB costs less than the
/// lookup (an `fstat` and a query), which made re-syncing many small files
/// slower with the cache than without (BENCHMARKS.md). Small files compared
/// in batches are looked up in batches ([`Remembered::recall_whole`]).
pub const SMALLEST: u64 = 64 << 10;

/// Files whose digests are being gathered at once, at most; past it the
/// oldest is dropped (it is hashed again next time).
const GATHERING: usize = 256;

/// Chunks of all the files being gathered together, at most (each slot
/// is 32 bytes: 64 MiB in all, shared by every session of a server). A
/// file of more chunks (2 TiB at the default 1 MiB) is not gathered: its
/// digests are remembered only when one request hashes it whole. Without
/// this bound, one request for one chunk of a sparse 16 TiB file with
/// 1 KiB chunks made the server allocate 512 GiB.
const GATHERING_SLOTS: usize = 1 << 21;

/// The cache, and the entries being gathered.
pub struct Remembered {
    cache: DigestCache,
    gathering: Mutex<Gathering>,
    /// Files (or spans of them) answered from the cache, and not.
    hits: AtomicU64,
    misses: AtomicU64,
}

/// The files whose digests are being gathered.
#[derive(Default)]
struct Gathering {
    /// By the file's key and the settings its digests are of: on a server
    /// one `Remembered` serves every session, each with its own chunk size
    /// and algorithm, and two sessions' digests of one file never mix.
    files: HashMap<(FileKey, u32, HashAlgo), Gathered>,
    /// Their slots together, at most [`GATHERING_SLOTS`].
    slots: usize,
}

/// The digests of a file known so far.
struct Gathered {
    digests: Vec<Option<Digest>>,
    missing: usize,
    /// When the first of them was read: the file's state must be older.
    hashed_at: SystemTime,
}

/// Is `dir`, which may not exist yet, inside `tree`?
pub fn inside(dir: &Path, tree: &Path) -> bool {
    let Ok(tree) = tree.canonicalize() else { return false };
    let mut existing = dir;
    let mut rest = Vec::new();
    while !existing.exists() {
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name);
                existing = if parent.as_os_str().is_empty() { Path::new(".") } else { parent };
            }
            _ => return false,
        }
    }
    let Ok(mut real) = existing.canonicalize() else { return false };
    real.extend(rest.iter().rev());
    real.starts_with(tree)
}

impl Gathering {
    /// Stops gathering a file, giving its slots back.
    fn drop_file(&mut self, entry: &(FileKey, u32, HashAlgo)) -> Option<Gathered> {
        let gathered = self.files.remove(entry)?;
        self.slots -= gathered.digests.len();
        Some(gathered)
    }
}

impl std::fmt::Debug for Remembered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remembered").finish_non_exhaustive()
    }
}

impl Remembered {
    /// Digests through `cache`.
    pub fn new(cache: DigestCache) -> Remembered {
        Remembered { cache, gathering: Mutex::default(), hits: AtomicU64::new(0), misses: AtomicU64::new(0) }
    }

    /// The cache in `dir` (else the default place) for a role over the
    /// tree at `tree`; `None`, with one warning, when there is none to use
    /// or it would be inside the tree (where it would be synced, and
    /// change under the transfer).
    pub fn open(dir: Option<&Path>, tree: &Path) -> Option<Arc<Remembered>> {
        let Some(dir) = dir.map(Path::to_owned).or_else(DigestCache::default_dir) else {
            tracing::warn!("no digest cache: neither XDG_CACHE_HOME nor HOME is set (--cache-dir names one)");
            return None;
        };
        if inside(&dir, tree) {
            tracing::warn!(
                "no digest cache: {} is inside the synced tree {}; name another with --cache-dir",
                dir.display(),
                tree.display()
            );
            return None;
        }
        match DigestCache::open(&dir) {
            Ok(cache) => Some(Arc::new(Remembered::new(cache))),
            Err(e) => {
                tracing::warn!("no digest cache: {}: {e}", dir.display());
                None
            }
        }
    }

    /// Writes what is buffered.
    pub fn flush(&self) {
        self.cache.flush();
    }

    /// The key of `file` if its size is `size` (a span cut for another
    /// size has other last chunks than those remembered) and at least
    /// [`SMALLEST`].
    pub fn key(file: &File, size: u64) -> Option<FileKey> {
        if size < SMALLEST {
            return None;
        }
        let key = FileKey::of(&rustix::fs::fstat(file.as_fd()).ok()?);
        (key.size == size).then_some(key)
    }

    /// The key of `file`, read whole as one chunk, if its size is `size`
    /// (whatever the size: a batch of whole files is looked up at once,
    /// which costs less than reading them).
    pub fn whole_key(file: &File, size: u64) -> Option<FileKey> {
        let key = FileKey::of(&rustix::fs::fstat(file.as_fd()).ok()?);
        (key.size == size).then_some(key)
    }

    /// The digests of every chunk of the file with `key`, if remembered.
    pub fn recall(&self, key: &FileKey, settings: &Settings) -> Option<Vec<Digest>> {
        let chunks = key.size.div_ceil(u64::from(settings.chunk_size));
        let digests =
            self.cache.get(key, settings.chunk_size, settings.hash).filter(|d| d.len() as u64 == chunks);
        let counter = if digests.is_some() { &self.hits } else { &self.misses };
        counter.fetch_add(1, Ordering::Relaxed);
        digests
    }

    /// The digest of each file of one chunk whose key is remembered (a
    /// `None` key is a miss), in one lookup of the cache for them all.
    pub fn recall_whole(&self, keys: &[Option<FileKey>], settings: &Settings) -> Vec<Option<Digest>> {
        let found = self.cache.get_many(keys, settings.chunk_size, settings.hash);
        let digests: Vec<Option<Digest>> =
            found.into_iter().map(|d| d.filter(|d| d.len() == 1).and_then(|d| d.first().copied())).collect();
        let hits = digests.iter().filter(|d| d.is_some()).count() as u64;
        self.hits.fetch_add(hits, Ordering::Relaxed);
        self.misses.fetch_add(keys.len() as u64 - hits, Ordering::Relaxed);
        digests
    }

    /// One line on what the cache saved: lookups answered without a read,
    /// and those that had to read.
    pub fn summary(&self) -> String {
        let (hits, misses) = (self.hits.load(Ordering::Relaxed), self.misses.load(Ordering::Relaxed));
        format!("digest cache: {hits} lookup(s) answered without reading, {misses} read")
    }

    /// Learns the digests of chunks `first..` of the file with `key`, read
    /// from `hashed_at` on; stores its entry once every chunk is known.
    pub fn learn(
        &self,
        key: &FileKey,
        settings: &Settings,
        first: u64,
        digests: &[Digest],
        hashed_at: SystemTime,
    ) {
        let chunks = key.size.div_ceil(u64::from(settings.chunk_size));
        if digests.is_empty() || first >= chunks {
            return;
        }
        if first == 0 && digests.len() as u64 == chunks {
            self.cache.put(key, settings.chunk_size, settings.hash, digests, hashed_at);
            return;
        }
        let Ok(chunks) = usize::try_from(chunks) else { return };
        if chunks > GATHERING_SLOTS {
            return;
        }
        let entry = (*key, settings.chunk_size, settings.hash);
        let mut gathering = self.gathering.lock().unwrap_or_else(|p| p.into_inner());
        let gathering = &mut *gathering;
        if !gathering.files.contains_key(&entry) {
            // Room for one more file and its slots: the oldest go first.
            while gathering.files.len() >= GATHERING || gathering.slots + chunks > GATHERING_SLOTS {
                let Some(oldest) = gathering.files.iter().min_by_key(|(_, g)| g.hashed_at).map(|(k, _)| *k)
                else {
                    break;
                };
                gathering.drop_file(&oldest);
            }
            gathering.slots += chunks;
        }
        let gathered = gathering.files.entry(entry).or_insert_with(|| Gathered {
            digests: vec![None; chunks],
            missing: chunks,
            hashed_at,
        });
        gathered.hashed_at = gathered.hashed_at.min(hashed_at);
        for (slot, digest) in gathered.digests.iter_mut().skip(first as usize).zip(digests) {
            if slot.replace(*digest).is_none() {
                gathered.missing -= 1;
            }
        }
        if gathered.missing == 0 {
            if let Some(done) = gathering.drop_file(&entry) {
                let all: Vec<Digest> = done.digests.into_iter().flatten().collect();
                self.cache.put(key, settings.chunk_size, settings.hash, &all, done.hashed_at);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// Two sessions of one server, each with its own algorithm or chunk
    /// size, hash spans of one file: each entry stored holds only digests
    /// of its own settings.
    #[test]
    fn spans_hashed_with_other_settings_never_mix_into_one_entry() {
        let dir = tempfile::tempdir().unwrap();
        let remembered = Remembered::new(DigestCache::open(dir.path()).unwrap());
        let old = 1_600_000_000 * 1_000_000_000;
        let key = FileKey { dev: 7, ino: 9, size: 4 << 20, mtime_ns: old, ctime_ns: old };
        let xxh3 = Settings::for_tests(1 << 20);
        let xxh128 = Settings { hash: HashAlgo::Xxh128, ..Settings::for_tests(1 << 20) };
        let halves = Settings::for_tests(2 << 20);
        // Distinct per settings and chunk, so that a mix would show.
        let digests = |tag: u128, chunks: u128| (0..chunks).map(|i| tag << 8 | i).collect::<Vec<Digest>>();
        let now = SystemTime::now();
        remembered.learn(&key, &xxh3, 0, &digests(3, 4)[..2], now);
        remembered.learn(&key, &xxh128, 2, &digests(128, 4)[2..], now);
        remembered.learn(&key, &halves, 1, &digests(2, 2)[1..], now);
        remembered.flush();
        for settings in [&xxh3, &xxh128, &halves] {
            assert_eq!(
                remembered.recall(&key, settings),
                None,
                "{:?} {}",
                settings.hash,
                settings.chunk_size
            );
        }
        remembered.learn(&key, &xxh3, 2, &digests(3, 4)[2..], now);
        remembered.learn(&key, &halves, 0, &digests(2, 2)[..1], now);
        remembered.flush();
        assert_eq!(remembered.recall(&key, &xxh3), Some(digests(3, 4)));
        assert_eq!(remembered.recall(&key, &halves), Some(digests(2, 2)));
        assert_eq!(remembered.recall(&key, &xxh128), None);
    }

    /// What one server gathers for all its sessions stays bounded, however
    /// large the files its clients ask about.
    #[test]
    fn gathering_holds_at_most_its_slots() {
        let dir = tempfile::tempdir().unwrap();
        let remembered = Remembered::new(DigestCache::open(dir.path()).unwrap());
        let settings = Settings::for_tests(1024);
        let key = |ino, chunks: u64| FileKey { dev: 7, ino, size: chunks * 1024, mtime_ns: 0, ctime_ns: 0 };
        let now = SystemTime::now();
        // One chunk of a sparse 16 TiB file: not gathered at all (this
        // asked for 512 GiB before).
        remembered.learn(&key(1, 1 << 34), &settings, 1, &[5], now);
        assert_eq!(remembered.gathering.lock().unwrap().slots, 0);
        // Files of 40 % of the slots each: the oldest go to make room.
        let big = (GATHERING_SLOTS as u64) * 2 / 5;
        for ino in 2..6 {
            remembered.learn(&key(ino, big), &settings, 1, &[5], now + Duration::from_secs(ino));
            let gathering = remembered.gathering.lock().unwrap();
            assert!(gathering.slots <= GATHERING_SLOTS, "{} slots", gathering.slots);
            assert_eq!(gathering.slots, gathering.files.values().map(|g| g.digests.len()).sum::<usize>());
        }
        let gathering = remembered.gathering.lock().unwrap();
        let mut kept: Vec<u64> = gathering.files.keys().map(|(k, ..)| k.ino).collect();
        kept.sort_unstable();
        assert_eq!(kept, [4, 5]);
    }
}
