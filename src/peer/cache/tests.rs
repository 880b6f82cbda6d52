//! Tests of the digest cache: hits and misses, the racy rule, damaged,
//! truncated and foreign files, damaged rows, sharing between threads and
//! processes, pruning, and the cost of lookups.

use std::ffi::OsString;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant, SystemTime};

use rusqlite::{Connection, OptionalExtension};
use tracing_subscriber::fmt::MakeWriter;

use super::*;
use crate::peer::hash;

/// An mtime and ctime long past: 2020-09-13.
const OLD: i128 = 1_600_000_000 * 1_000_000_000;
const KIB: u32 = 1024;

fn key(ino: u64, size: u64) -> FileKey {
    FileKey { dev: 42, ino, size, mtime_ns: OLD, ctime_ns: OLD + 5 }
}

/// The digests a file of `key` would have: distinct per key and chunk.
fn digests(key: &FileKey, chunk_size: u32, algo: HashAlgo) -> Vec<Digest> {
    (0..key.size.div_ceil(u64::from(chunk_size)))
        .map(|i| {
            let seed = [key.ino, i, key.size, key.mtime_ns as u64, key.ctime_ns as u64];
            let bytes: Vec<u8> = seed.iter().flat_map(|v| v.to_le_bytes()).collect();
            hash::digest(algo, &bytes)
        })
        .collect()
}

fn put(cache: &DigestCache, key: &FileKey, chunk_size: u32, algo: HashAlgo) {
    cache.put(key, chunk_size, algo, &digests(key, chunk_size, algo), SystemTime::now());
}

fn db(dir: &Path) -> PathBuf {
    dir.join(FILE)
}

/// Warnings logged while `f` runs on this thread.
fn warnings<T>(f: impl FnOnce() -> T) -> (T, Vec<String>) {
    #[derive(Clone, Default)]
    struct Logs(Arc<Mutex<Vec<u8>>>);
    impl Write for Logs {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    impl<'a> MakeWriter<'a> for Logs {
        type Writer = Logs;
        fn make_writer(&'a self) -> Logs {
            self.clone()
        }
    }
    let logs = Logs::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(logs.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::WARN)
        .finish();
    let out = tracing::subscriber::with_default(subscriber, f);
    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    (out, text.lines().map(String::from).collect())
}

#[test]
fn round_trip_for_every_algorithm_and_across_opens() {
    fn shareable<T: Send + Sync>() {}
    shareable::<DigestCache>();
    let dir = tempfile::tempdir().unwrap();
    let files: Vec<FileKey> = (1..=4).map(|i| key(i, u64::from(KIB) * 5 / 2 * i)).collect();
    {
        let cache = DigestCache::open(dir.path()).unwrap();
        for algo in HashAlgo::ALL {
            for k in &files {
                put(&cache, k, KIB, algo);
            }
        }
        cache.flush();
        for algo in HashAlgo::ALL {
            for k in &files {
                assert_eq!(cache.get(k, KIB, algo), Some(digests(k, KIB, algo)), "{algo:?} {k:?}");
            }
        }
        // A hit on the day of the row writes nothing.
        assert!(cache.inner().pending.is_empty() && cache.inner().touches.is_empty());
    }
    let cache = DigestCache::open(dir.path()).unwrap();
    for algo in HashAlgo::ALL {
        for k in &files {
            assert_eq!(cache.get(k, KIB, algo), Some(digests(k, KIB, algo)));
        }
    }
    // Each algorithm's digests are packed at its width.
    let raw = Connection::open(db(dir.path())).unwrap();
    let len: i64 = raw
        .query_row(
            "SELECT length(digests) FROM digests WHERE ino = 1 AND algo = ?1",
            [store_code(HashAlgo::Crc32)],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(len, 3 * 4);
}

fn store_code(algo: HashAlgo) -> i64 {
    store::Pk::new(0, 0, 1, algo).algo
}

#[test]
fn put_is_buffered_then_committed_by_flush_and_drop() {
    let dir = tempfile::tempdir().unwrap();
    let a = key(1, 10);
    let b = key(2, 10);
    let cache = DigestCache::open(dir.path()).unwrap();
    put(&cache, &a, KIB, HashAlgo::Xxh3);
    let other = DigestCache::open(dir.path()).unwrap();
    assert_eq!(other.get(&a, KIB, HashAlgo::Xxh3), None, "not written before a flush");
    cache.flush();
    // The other's lookups see it once their read transaction is over: at
    // its flush, or after a burst's time.
    other.flush();
    assert!(other.get(&a, KIB, HashAlgo::Xxh3).is_some());
    put(&cache, &b, KIB, HashAlgo::Xxh3);
    drop(cache);
    std::thread::sleep(READ_BURST_TIME + Duration::from_millis(5));
    assert!(other.get(&b, KIB, HashAlgo::Xxh3).is_some(), "written on drop");
    // Every BATCH puts are committed without a flush.
    let cache = DigestCache::open(dir.path()).unwrap();
    for i in 0..BATCH as u64 {
        put(&cache, &key(100 + i, 10), KIB, HashAlgo::Xxh3);
    }
    other.flush();
    assert!(other.get(&key(100, 10), KIB, HashAlgo::Xxh3).is_some());
    drop(cache);
}

#[test]
fn any_change_of_key_chunk_size_or_algorithm_misses() {
    let dir = tempfile::tempdir().unwrap();
    let cache = DigestCache::open(dir.path()).unwrap();
    let k = key(7, 3000);
    put(&cache, &k, KIB, HashAlgo::Xxh128);
    cache.flush();
    assert!(cache.get(&k, KIB, HashAlgo::Xxh128).is_some());
    let changed = [
        FileKey { ctime_ns: k.ctime_ns + 1, ..k },
        FileKey { mtime_ns: k.mtime_ns + 1, ..k },
        FileKey { mtime_ns: k.mtime_ns - 1_000_000_000, ..k },
        FileKey { size: k.size + 1, ..k },
        FileKey { size: k.size - 1, ..k },
        FileKey { ino: k.ino + 1, ..k },
        FileKey { dev: k.dev + 1, ..k },
    ];
    for c in &changed {
        assert_eq!(cache.get(c, KIB, HashAlgo::Xxh128), None, "{c:?}");
    }
    assert_eq!(cache.get(&k, 2 * KIB, HashAlgo::Xxh128), None);
    assert_eq!(cache.get(&k, 0, HashAlgo::Xxh128), None);
    for algo in HashAlgo::ALL.into_iter().filter(|a| *a != HashAlgo::Xxh128) {
        assert_eq!(cache.get(&k, KIB, algo), None, "{algo:?}");
    }
    assert!(cache.get(&k, KIB, HashAlgo::Xxh128).is_some());
}

#[test]
fn files_changed_within_the_racy_window_or_wrong_digest_counts_are_not_remembered() {
    let dir = tempfile::tempdir().unwrap();
    let cache = DigestCache::open(dir.path()).unwrap();
    let at = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let at_ns = 1_700_000_000i128 * 1_000_000_000;
    let window = RACY_WINDOW.as_nanos() as i128;
    let with = |ino, mtime_ns, ctime_ns| FileKey { dev: 1, ino, size: 10, mtime_ns, ctime_ns };
    let cases = [
        (with(1, at_ns - window, at_ns - window), true),
        (with(2, at_ns - window + 1, at_ns - window), false),
        (with(3, at_ns - window, at_ns - window + 1), false),
        (with(4, OLD, at_ns - 1_000_000_000), false),
        (with(5, at_ns + 1_000_000_000, at_ns + 1_000_000_000), false),
        (with(6, OLD, OLD), true),
    ];
    for (k, _) in &cases {
        cache.put(k, KIB, HashAlgo::Xxh3, &digests(k, KIB, HashAlgo::Xxh3), at);
    }
    // One digest too many or too few.
    let k = with(7, OLD, OLD);
    let mut ds = digests(&k, KIB, HashAlgo::Xxh3);
    ds.push(1);
    cache.put(&k, KIB, HashAlgo::Xxh3, &ds, at);
    cache.put(&k, KIB, HashAlgo::Xxh3, &[], at);
    cache.flush();
    for (k, kept) in &cases {
        assert_eq!(cache.get(k, KIB, HashAlgo::Xxh3).is_some(), *kept, "{k:?}");
    }
    assert_eq!(cache.get(&k, KIB, HashAlgo::Xxh3), None);
}

#[test]
fn a_new_state_of_a_file_replaces_its_entry() {
    let dir = tempfile::tempdir().unwrap();
    let cache = DigestCache::open(dir.path()).unwrap();
    let old = key(9, 5000);
    let new = FileKey { size: 7000, ctime_ns: old.ctime_ns + 10, mtime_ns: old.mtime_ns + 10, ..old };
    put(&cache, &old, KIB, HashAlgo::Xxh3);
    put(&cache, &key(10, 5000), KIB, HashAlgo::Xxh3);
    cache.flush();
    put(&cache, &new, KIB, HashAlgo::Xxh3);
    cache.flush();
    assert_eq!(cache.get(&old, KIB, HashAlgo::Xxh3), None);
    assert_eq!(cache.get(&new, KIB, HashAlgo::Xxh3), Some(digests(&new, KIB, HashAlgo::Xxh3)));
    assert!(cache.get(&key(10, 5000), KIB, HashAlgo::Xxh3).is_some());
    let raw = Connection::open(db(dir.path())).unwrap();
    let rows: i64 = raw.query_row("SELECT count(*) FROM digests WHERE ino = 9", [], |r| r.get(0)).unwrap();
    assert_eq!(rows, 1);
}

/// Opens the cache in `dir` (whose file is bad), checks the one warning,
/// the file moved aside, and that the new cache works and persists.
fn assert_replaced(dir: &Path, what: &str) {
    let (cache, warned) = warnings(|| DigestCache::open(dir).unwrap());
    assert_eq!(warned.len(), 1, "{warned:?}");
    assert!(warned[0].contains("WARN") && warned[0].contains(&db(dir).display().to_string()), "{warned:?}");
    assert!(warned[0].contains(what), "{warned:?}");
    assert!(store::sibling(&db(dir), BAD_SUFFIX).exists());
    let k = key(77, 100);
    assert_eq!(cache.get(&k, KIB, HashAlgo::Xxh3), None);
    put(&cache, &k, KIB, HashAlgo::Xxh3);
    drop(cache);
    let (cache, warned) = warnings(|| DigestCache::open(dir).unwrap());
    assert!(warned.is_empty(), "{warned:?}");
    assert_eq!(cache.get(&k, KIB, HashAlgo::Xxh3), Some(digests(&k, KIB, HashAlgo::Xxh3)));
}

#[test]
fn a_garbage_file_is_warned_about_and_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let garbage: Vec<u8> = (0..20_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    fs::write(db(dir.path()), &garbage).unwrap();
    assert_replaced(dir.path(), "not an SQLite database");
    assert_eq!(fs::read(store::sibling(&db(dir.path()), BAD_SUFFIX)).unwrap(), garbage);
}

#[test]
fn a_database_of_another_program_is_warned_about_and_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let other = Connection::open(db(dir.path())).unwrap();
    other.execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1);").unwrap();
    drop(other);
    assert_replaced(dir.path(), "another program");
    // And one with another application id.
    let dir = tempfile::tempdir().unwrap();
    let other = Connection::open(db(dir.path())).unwrap();
    other.execute_batch("PRAGMA application_id = 7; CREATE TABLE digests (x);").unwrap();
    drop(other);
    assert_replaced(dir.path(), "application_id 0x7");
}

#[test]
fn a_truncated_file_is_warned_about_and_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let cache = DigestCache::open(dir.path()).unwrap();
    for i in 0..5000 {
        put(&cache, &key(i, 100), KIB, HashAlgo::Xxh128);
    }
    drop(cache);
    let len = fs::metadata(db(dir.path())).unwrap().len();
    assert!(len > 100_000, "{len}");
    let file = OpenOptions::new().write(true).open(db(dir.path())).unwrap();
    file.set_len(len / 2).unwrap();
    drop(file);
    assert_replaced(dir.path(), "truncated");
    // Truncated within the header.
    fs::write(db(dir.path()), b"SQLite format 3\0").unwrap();
    assert_replaced(dir.path(), "truncated");
}

#[test]
fn damaged_pages_give_no_wrong_answer_and_are_replaced_by_a_later_open() {
    let dir = tempfile::tempdir().unwrap();
    let cache = DigestCache::open(dir.path()).unwrap();
    let keys: Vec<FileKey> = (0..5000).map(|i| key(i, 100)).collect();
    for k in &keys {
        put(&cache, k, KIB, HashAlgo::Xxh128);
    }
    drop(cache);
    // Overwrite pages in the middle of the file, leaving its size and header.
    let mut bytes = fs::read(db(dir.path())).unwrap();
    let len = bytes.len();
    bytes[len / 3..len / 2].fill(0xAB);
    fs::write(db(dir.path()), &bytes).unwrap();
    let (hits, warned) = warnings(|| {
        let cache = DigestCache::open(dir.path()).unwrap();
        keys.iter()
            .filter(|k| match cache.get(k, KIB, HashAlgo::Xxh128) {
                Some(ds) => {
                    assert_eq!(ds, digests(k, KIB, HashAlgo::Xxh128));
                    true
                }
                None => false,
            })
            .count()
    });
    assert!(hits < keys.len(), "the damage was never met");
    assert_eq!(warned.len(), 1, "{warned:?}");
    // The next open replaces the file, which then works.
    assert_replaced(dir.path(), "damaged");
}

#[test]
fn a_damaged_row_is_a_miss_and_is_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let cache = DigestCache::open(dir.path()).unwrap();
    for ino in 1..=3 {
        put(&cache, &key(ino, 3000), KIB, HashAlgo::Xxh64);
    }
    drop(cache);
    let raw = Connection::open(db(dir.path())).unwrap();
    let mut blob: Vec<u8> =
        raw.query_row("SELECT digests FROM digests WHERE ino = 1", [], |r| r.get(0)).unwrap();
    blob[5] ^= 0x10;
    raw.execute("UPDATE digests SET digests = ?1 WHERE ino = 1", [&blob]).unwrap();
    raw.execute("UPDATE digests SET check_value = 'x' WHERE ino = 2", []).unwrap();
    drop(raw);
    let warned = warnings(|| {
        let cache = DigestCache::open(dir.path()).unwrap();
        assert_eq!(cache.get(&key(1, 3000), KIB, HashAlgo::Xxh64), None);
        assert_eq!(cache.get(&key(2, 3000), KIB, HashAlgo::Xxh64), None);
        let k = key(3, 3000);
        assert_eq!(cache.get(&k, KIB, HashAlgo::Xxh64), Some(digests(&k, KIB, HashAlgo::Xxh64)));
    })
    .1;
    assert_eq!(warned.len(), 1, "{warned:?}");
    assert!(warned[0].contains("damaged entry"), "{warned:?}");
    let raw = Connection::open(db(dir.path())).unwrap();
    let rows: Vec<i64> = raw
        .prepare("SELECT ino FROM digests")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(rows, [3]);
}

#[test]
fn a_batch_read_in_runs_gives_what_one_lookup_each_gives() {
    let dir = tempfile::tempdir().unwrap();
    let cache = DigestCache::open(dir.path()).unwrap();
    let algo = HashAlgo::Xxh64;
    // Dense inodes 100..=140 with holes (every 7th has no row), ino 120
    // stored for an older state, and rows of the same inodes that must not
    // be taken for them: another chunk size, algorithm and device.
    let stored = |ino: u64| !ino.is_multiple_of(7);
    for ino in (100..=140).filter(|&i| stored(i)) {
        let k = key(ino, 3000);
        let k = if ino == 120 { FileKey { mtime_ns: k.mtime_ns - 1, ..k } } else { k };
        put(&cache, &k, KIB, algo);
    }
    for ino in 90..=150 {
        put(&cache, &key(ino, 3000), 2 * KIB, algo);
        put(&cache, &key(ino, 3000), KIB, HashAlgo::Xxh128);
        put(&cache, &FileKey { dev: 43, ..key(ino, 3000) }, KIB, algo);
    }
    for ino in (200..=210).chain([5000]) {
        put(&cache, &key(ino, 3000), KIB, algo);
    }
    drop(cache);
    // A damaged row in each run: bytes flipped in the first, a check value
    // of the wrong type (which fails a range query as a whole) in the
    // second.
    let raw = Connection::open(db(dir.path())).unwrap();
    let mut blob: Vec<u8> = raw
        .query_row(
            "SELECT digests FROM digests WHERE ino = 110 AND dev = 42 AND chunk = 1024 AND algo = 3",
            [],
            |r| r.get(0),
        )
        .unwrap();
    blob[3] ^= 0x40;
    raw.execute(
        "UPDATE digests SET digests = ?1 WHERE ino = 110 AND dev = 42 AND chunk = 1024 AND algo = 3",
        [&blob],
    )
    .unwrap();
    raw.execute(
        "UPDATE digests SET check_value = 'x' WHERE ino = 205 AND dev = 42 AND chunk = 1024 AND algo = 3",
        [],
    )
    .unwrap();
    drop(raw);

    let mut keys: Vec<Option<FileKey>> = (95..=145).rev().map(|ino| Some(key(ino, 3000))).collect();
    keys.extend((200..=210).map(|ino| Some(key(ino, 3000))));
    keys.extend([
        None,
        Some(key(104, 3000)),
        Some(key(5000, 3000)),
        Some(FileKey { size: 3001, ..key(101, 3000) }),
    ]);
    let expected: Vec<Option<Vec<Digest>>> = keys
        .iter()
        .map(|k| {
            let k = k.as_ref()?;
            let first = (100..=140).contains(&k.ino) && stored(k.ino) && ![110, 120].contains(&k.ino);
            let second = (200..=210).contains(&k.ino) && k.ino != 205 || k.ino == 5000;
            ((first || second) && k.size == 3000).then(|| digests(k, KIB, algo))
        })
        .collect();
    let cache = DigestCache::open(dir.path()).unwrap();
    let (got, warned) = warnings(|| cache.get_many(&keys, KIB, algo));
    assert_eq!(got, expected);
    assert_eq!(warned.len(), 1, "{warned:?}");
    assert!(warned[0].contains("damaged entry"), "{warned:?}");
    // The damaged rows were told apart, one by one, and deleted.
    cache.flush();
    let raw = Connection::open(db(dir.path())).unwrap();
    let left: i64 = raw
        .query_row(
            "SELECT count(*) FROM digests WHERE ino IN (110, 205) AND dev = 42 AND chunk = 1024 AND algo = 3",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(left, 0);
}

/// Puts `n` small files from inode `mine` on, reading now and then the
/// other writer's (from inode `theirs`): any hit must be right. Then all
/// of its own must be there.
fn share(dir: &Path, mine: u64, theirs: u64, n: u64) {
    let ((), warned) = warnings(|| share_quietly(dir, mine, theirs, n));
    assert!(warned.is_empty(), "{warned:?}");
}

fn share_quietly(dir: &Path, mine: u64, theirs: u64, n: u64) {
    let cache = DigestCache::open(dir).unwrap();
    for i in 0..n {
        put(&cache, &key(mine + i, 100), KIB, HashAlgo::Xxh3);
        if i % 3 == 0 {
            let k = key(theirs + (i * 7919) % n, 100);
            if let Some(ds) = cache.get(&k, KIB, HashAlgo::Xxh3) {
                assert_eq!(ds, digests(&k, KIB, HashAlgo::Xxh3));
            }
        }
        if i % 500 == 0 {
            cache.flush();
        }
    }
    cache.flush();
    for i in 0..n {
        let k = key(mine + i, 100);
        assert_eq!(cache.get(&k, KIB, HashAlgo::Xxh3), Some(digests(&k, KIB, HashAlgo::Xxh3)));
    }
}

fn assert_all_there(dir: &Path, from: u64, n: u64) {
    let cache = DigestCache::open(dir).unwrap();
    for i in 0..n {
        let k = key(from + i, 100);
        assert_eq!(cache.get(&k, KIB, HashAlgo::Xxh3), Some(digests(&k, KIB, HashAlgo::Xxh3)), "{i}");
    }
}

#[test]
fn two_caches_on_one_directory_in_two_threads() {
    let dir = tempfile::tempdir().unwrap();
    let barrier = Arc::new(Barrier::new(2));
    let threads: Vec<_> = [(0, 1_000_000), (1_000_000, 0)]
        .into_iter()
        .map(|(mine, theirs)| {
            let dir = dir.path().to_owned();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                share(&dir, mine, theirs, 5000);
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_all_there(dir.path(), 0, 5000);
    assert_all_there(dir.path(), 1_000_000, 5000);
}

const CHILD_DIR: &str = "PARECO_TEST_CACHE_CHILD_DIR";

/// The other process of [`two_processes_on_one_directory`]; nothing when
/// run by itself.
#[test]
#[ignore = "run by two_processes_on_one_directory"]
fn cache_child_process() {
    let Some(dir) = std::env::var_os(CHILD_DIR) else { return };
    let dir = PathBuf::from(dir);
    fs::write(dir.join("child-ready"), b"").unwrap();
    share(&dir, 2_000_000, 0, 5000);
}

#[test]
fn two_processes_on_one_directory() {
    let dir = tempfile::tempdir().unwrap();
    let child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "peer::cache::tests::cache_child_process", "--ignored", "--test-threads=1"])
        .env(CHILD_DIR, dir.path())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !dir.path().join("child-ready").exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(2));
    }
    share(dir.path(), 0, 2_000_000, 5000);
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && stdout.contains("1 passed"), "{stdout}");
    assert_all_there(dir.path(), 0, 5000);
    assert_all_there(dir.path(), 2_000_000, 5000);
}

#[test]
fn unused_rows_are_pruned_and_the_least_recently_used_beyond_the_bound() {
    let dir = tempfile::tempdir().unwrap();
    let open = |day, max_rows| DigestCache::open_with(dir.path(), Some(day), max_rows).unwrap();
    let used = |ino: u64| -> Option<i64> {
        let raw = Connection::open(db(dir.path())).unwrap();
        raw.query_row("SELECT used FROM digests WHERE ino = ?1", [ino as i64], |r| r.get(0))
            .optional()
            .unwrap()
    };
    let (a, b) = (key(1, 10), key(2, 10));
    let cache = open(100, MAX_ROWS);
    put(&cache, &a, KIB, HashAlgo::Xxh3);
    put(&cache, &b, KIB, HashAlgo::Xxh3);
    drop(cache);
    assert_eq!((used(1), used(2)), (Some(100), Some(100)));
    // A hit a day later or more marks the row as used.
    let cache = open(120, MAX_ROWS);
    assert!(cache.get(&a, KIB, HashAlgo::Xxh3).is_some());
    drop(cache);
    assert_eq!((used(1), used(2)), (Some(120), Some(100)));
    // Thirty days unused are kept, thirty-one are not.
    drop(open(130, MAX_ROWS));
    assert_eq!(used(2), Some(100));
    let cache = open(131, MAX_ROWS);
    assert_eq!(used(2), None);
    assert!(cache.get(&a, KIB, HashAlgo::Xxh3).is_some());
    assert!(cache.get(&b, KIB, HashAlgo::Xxh3).is_none());
    drop(cache);
    // Beyond the bound, the least recently used go.
    for (day, ino) in [(140, 10), (141, 11), (142, 12), (143, 13)] {
        let cache = open(day, MAX_ROWS);
        put(&cache, &key(ino, 10), KIB, HashAlgo::Xxh3);
    }
    assert_eq!(used(1), Some(131));
    drop(open(144, 3));
    let left: Vec<Option<i64>> = [1, 10, 11, 12, 13].into_iter().map(used).collect();
    assert_eq!(left, [None, None, Some(141), Some(142), Some(143)]);
}

#[test]
fn default_dir_follows_xdg_then_home() {
    let some = |s: &str| Some(OsString::from(s));
    assert_eq!(default_dir_from(some("/x/cache"), some("/home/u")), Some(PathBuf::from("/x/cache/pareco")));
    assert_eq!(default_dir_from(None, some("/home/u")), Some(PathBuf::from("/home/u/.cache/pareco")));
    assert_eq!(default_dir_from(some("rel"), some("/home/u")), Some(PathBuf::from("/home/u/.cache/pareco")));
    assert_eq!(default_dir_from(None, None), None);
}

#[test]
fn the_directory_and_the_file_are_the_owners_alone() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let cache_dir = dir.path().join("a/pareco");
    drop(DigestCache::open(&cache_dir).unwrap());
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&cache_dir), 0o700);
    assert_eq!(mode(&db(&cache_dir)), 0o600);
}

/// CPU time of this thread (user and system): the machine is shared, so
/// wall time says little.
fn cpu_time() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a valid clock id and a pointer to a timespec we own.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0);
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Runs `f` and says how long it took, in wall and CPU time.
fn timed(what: &str, n: u64, f: impl FnOnce()) -> Duration {
    let (wall, cpu) = (Instant::now(), cpu_time());
    f();
    let (wall, cpu) = (wall.elapsed(), cpu_time() - cpu);
    eprintln!(
        "digest cache: {n} {what}: {wall:.2?} wall ({:.2?} each), {cpu:.2?} CPU ({:.2?} each)",
        wall / n as u32,
        cpu / n as u32
    );
    cpu
}

/// 100 000 small files, as a re-sync of them would look them up: in no
/// particular order of inodes, on the day they were stored and on a later
/// one (when each hit also marks its row as used).
#[test]
fn lookups_are_cheap() {
    const N: u64 = 100_000;
    let dir = tempfile::tempdir().unwrap();
    // 7919 is prime to N: each file once, scattered.
    let file = |i: u64| key(i * 7919 % N, 100);
    let cache = DigestCache::open_with(dir.path(), Some(1000), MAX_ROWS).unwrap();
    timed("puts", N, || {
        for i in 0..N {
            put(&cache, &key(i, 100), KIB, HashAlgo::Xxh3);
        }
        cache.flush();
    });
    drop(cache);
    let cache = DigestCache::open_with(dir.path(), Some(1000), MAX_ROWS).unwrap();
    let gets = timed("gets", N, || {
        for i in 0..N {
            assert!(cache.get(&file(i), KIB, HashAlgo::Xxh3).is_some());
        }
    });
    drop(cache);
    let cache = DigestCache::open_with(dir.path(), Some(1002), MAX_ROWS).unwrap();
    timed("gets a day later, with their marks", N, || {
        for i in 0..N {
            assert!(cache.get(&file(i), KIB, HashAlgo::Xxh3).is_some());
        }
        cache.flush();
    });
    // Well under a second in a release build; a debug build's SQLite is
    // not optimised.
    assert!(gets < Duration::from_secs(10), "{gets:?}");
}

/// The size on disk of the cache of 1 000 000 small files, and what
/// opening it costs: on the first open of a day (which prunes) and after.
#[test]
#[ignore = "a measurement: writes 1 000 000 rows"]
fn size_of_a_million_files() {
    const N: u64 = 1_000_000;
    let dir = tempfile::tempdir().unwrap();
    let cache = DigestCache::open_with(dir.path(), Some(1000), MAX_ROWS).unwrap();
    // Inodes scattered as a walk would meet them; 37 is prime to 4 000 000.
    let file = |i: u64| FileKey {
        dev: 66306,
        ino: 1_000_000 + i * 37 % 4_000_000,
        size: 100 + i % 4000,
        mtime_ns: OLD + i as i128 * 1_234_567,
        ctime_ns: OLD + i as i128 * 1_234_567 + 891,
    };
    timed("puts", N, || {
        for i in 0..N {
            put(&cache, &file(i), 1 << 20, HashAlgo::Xxh128);
        }
        cache.flush();
    });
    drop(cache);
    let bytes = fs::metadata(db(dir.path())).unwrap().len();
    eprintln!("digest cache of 1 000 000 files: {bytes} bytes");
    assert!(bytes < 200_000_000, "{bytes}");
    timed("first open of a day", 1, || {
        drop(DigestCache::open_with(dir.path(), Some(1001), MAX_ROWS).unwrap())
    });
    let cache = timed_open(dir.path(), 1001);
    timed("gets", N, || {
        for i in 0..N {
            let k = file(i * 7919 % N);
            assert!(cache.get(&k, 1 << 20, HashAlgo::Xxh128).is_some());
        }
    });
}

fn timed_open(dir: &Path, day: i64) -> DigestCache {
    let mut cache = None;
    timed("later open", 1, || cache = Some(DigestCache::open_with(dir, Some(day), MAX_ROWS).unwrap()));
    cache.unwrap()
}
