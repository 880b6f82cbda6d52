//! A persistent cache of chunk digests, so that a re-sync does not read and
//! hash again the files that have not changed.
//!
//! A file is known by its [`FileKey`]: device, inode, size, mtime and ctime
//! (both in nanoseconds), plus the chunk size and the algorithm. ctime
//! cannot be set by a user, so a rewrite that puts size and mtime back is
//! still told. Digests are remembered only for a file whose mtime and ctime
//! are both at least [`RACY_WINDOW`] older than the moment its hashing
//! began: a file changed again within its file system's timestamp
//! granularity could keep the very same key with other bytes.
//!
//! The store is SQLite (compiled in): one file, `digests.sqlite3`, shared by
//! every pareco process of the user (a client and a server on one host, two
//! clients at once) through SQLite's write-ahead log and locks, crash-safe
//! by SQLite's journal. Nothing the file holds is trusted: every row carries
//! a check value and is compared with the file's whole key, a damaged row is
//! a miss (and deleted), and a damaged, truncated or foreign file is
//! replaced with one warning. Any other SQLite error is one warning and a
//! miss: the cache never fails a transfer.
//!
//! Lookups run in one read transaction per burst: a batch's keys of
//! nearby inodes with one range query per run ([`runs`]), the others with
//! one prepared statement each. Writes are buffered and committed in one
//! transaction per [`BATCH`] entries (or on [`DigestCache::flush`] and
//! drop). Rows not used for [`MAX_UNUSED_DAYS`] (those of files that no
//! longer exist among them) and the least recently used beyond
//! [`MAX_ROWS`] are pruned once a day: when a cache is opened, or flushed
//! on a later day.
//!
//! Replacing the file while another process has it open would corrupt
//! SQLite's log, so openers hold a shared `flock` on `digests.lock` and the
//! file is only replaced under an exclusive one.

mod open;
mod runs;
mod store;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rusqlite::Connection;

use crate::codec::HashAlgo;
use crate::peer::Digest;

#[cfg(test)]
use open::default_dir_from;
use store::{Found, Op, Pk, State};

/// Rows already read by a batch's range queries: `None` where a run held
/// no row for the key. (foldhash: the keys are our own files' inodes.)
type Known = HashMap<Pk, Option<Found>, foldhash::fast::RandomState>;

/// How much older than the start of its hashing a file's mtime and ctime
/// must both be for its digests to be remembered.
pub const RACY_WINDOW: Duration = Duration::from_secs(2);
/// Buffered writes committed at once.
pub const BATCH: usize = 1000;
/// Rows not used for more days than this are pruned.
pub const MAX_UNUSED_DAYS: i64 = 30;
/// Rows kept at most; the least recently used beyond are pruned.
pub const MAX_ROWS: u64 = 2_000_000;
/// Lookups run in one read transaction at most: taking and dropping
/// SQLite's file locks (`fcntl` calls) for each would cost a good part of
/// it. Within one, what other processes write meanwhile is not seen.
const READ_BURST: u32 = 256;
/// How long one read transaction of lookups lasts at most.
const READ_BURST_TIME: Duration = Duration::from_millis(20);
/// Marks of rows as used buffered at most before they are committed.
const MAX_TOUCHES: usize = 50_000;
/// Bytes of digests buffered at most before they are committed.
const MAX_PENDING_BYTES: usize = 8 << 20;
/// The digests of one file stored at most (a larger file is not cached):
/// 64 MiB, four million chunks.
const MAX_DIGEST_BYTES: usize = 64 << 20;

/// The database.
const FILE: &str = "digests.sqlite3";
/// Held shared by every opener, exclusive to replace the database.
const LOCK_FILE: &str = "digests.lock";
/// Where a bad database is moved aside to.
const BAD_SUFFIX: &str = ".bad";
/// Left beside the database by a process that met damage in it, so that the
/// next opener replaces it.
const DAMAGED_SUFFIX: &str = ".damaged";

/// A file's identity and state, from fstat/lstat.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileKey {
    /// The device of its file system.
    pub dev: u64,
    /// Its inode number.
    pub ino: u64,
    /// Its size in bytes.
    pub size: u64,
    /// Its modification time, in nanoseconds since the epoch.
    pub mtime_ns: i128,
    /// Its status change time, in nanoseconds since the epoch.
    pub ctime_ns: i128,
}

impl FileKey {
    /// The key of the file `st` describes.
    // `dev_t` and `ino_t` are 64 bits on Linux, narrower elsewhere.
    #[allow(clippy::unnecessary_cast)]
    pub fn of(st: &rustix::fs::Stat) -> FileKey {
        let ns = |secs, nanos| i128::from(secs) * 1_000_000_000 + i128::from(nanos);
        FileKey {
            dev: st.st_dev as u64,
            ino: st.st_ino as u64,
            size: u64::try_from(st.st_size).unwrap_or(0),
            mtime_ns: ns(st.st_mtime, st.st_mtime_nsec),
            ctime_ns: ns(st.st_ctime, st.st_ctime_nsec),
        }
    }

    /// The state stored for it; `None` for times beyond SQLite's 64 bits
    /// (before 1678 or after 2262), never cached.
    fn state(&self) -> Option<State> {
        Some(State {
            size: i64::try_from(self.size).ok()?,
            mtime: i64::try_from(self.mtime_ns).ok()?,
            ctime: i64::try_from(self.ctime_ns).ok()?,
        })
    }
}

/// The persistent digest cache of one user. `Send + Sync`: shared by all
/// sessions of a server through `Arc`; calls are serialised on one SQLite
/// connection and block on file I/O (call them where blocking is allowed).
pub struct DigestCache {
    path: PathBuf,
    state: Mutex<Inner>,
    /// The day for tests; the system clock's otherwise.
    fixed_day: Option<i64>,
    max_rows: u64,
}

struct Inner {
    /// `None` once the cache is out of use for this run.
    conn: Option<Connection>,
    /// The shared lock on [`LOCK_FILE`], held while `conn` is.
    lock: Option<File>,
    /// Puts and deletions, committed every [`BATCH`].
    pending: Vec<Op>,
    pending_bytes: usize,
    /// Marks of rows as used: each may rewrite a page, and none is urgent,
    /// so they wait for a flush (or [`MAX_TOUCHES`]) and go in key order.
    touches: Vec<Op>,
    /// The read transaction lookups run in, if one is open: since when and
    /// for how many.
    reading: Option<(Instant, u32)>,
    /// The day of the last pruning, by this process or another.
    pruned_on: i64,
    /// A warning was given: no more.
    warned: bool,
}

impl DigestCache {
    /// The digests of every chunk of the file (chunk `i` at index `i`), if
    /// remembered for exactly this key, chunk size and algorithm.
    pub fn get(&self, key: &FileKey, chunk_size: u32, algo: HashAlgo) -> Option<Vec<Digest>> {
        let mut inner = self.inner();
        if let Err(e) = self.begin_read(&mut inner) {
            self.failed(&mut inner, "reading", e);
            return None;
        }
        self.get_locked(&mut inner, key, chunk_size, algo, &mut Known::default())
    }

    /// [`get`](DigestCache::get) of many files (`None` keys are misses),
    /// under one lock and one read transaction, the rows of nearby inodes
    /// read by one range query each ([`runs`]): what a batch of small
    /// files costs is then little more than the rows read.
    pub fn get_many(
        &self,
        keys: &[Option<FileKey>],
        chunk_size: u32,
        algo: HashAlgo,
    ) -> Vec<Option<Vec<Digest>>> {
        let mut inner = self.inner();
        if let Err(e) = self.begin_read(&mut inner) {
            self.failed(&mut inner, "reading", e);
            return vec![None; keys.len()];
        }
        let mut known = read_runs(&inner, keys, chunk_size, algo);
        keys.iter()
            .map(|key| self.get_locked(&mut inner, key.as_ref()?, chunk_size, algo, &mut known))
            .collect()
    }

    fn get_locked(
        &self,
        inner: &mut Inner,
        key: &FileKey,
        chunk_size: u32,
        algo: HashAlgo,
        known: &mut Known,
    ) -> Option<Vec<Digest>> {
        let state = key.state()?;
        let chunks = chunk_count(key.size, chunk_size)?;
        let pk = Pk::new(key.dev, key.ino, chunk_size, algo);
        let read = match known.remove(&pk) {
            Some(found) => Ok(found),
            None => store::select(inner.conn.as_ref()?, &pk),
        };
        let found = match read {
            Ok(found) => found?,
            Err(
                e @ (rusqlite::Error::InvalidColumnType(..) | rusqlite::Error::FromSqlConversionFailure(..)),
            ) => {
                self.damaged_row(inner, pk, None, &e.to_string());
                return None;
            }
            Err(e) => {
                self.failed(inner, "reading", e);
                return None;
            }
        };
        if found.state != state {
            return None;
        }
        let width = algo.width();
        let check = store::check_value(&pk, &state, &found.digests);
        if found.check != check || found.digests.len() as u64 != chunks.saturating_mul(width as u64) {
            self.damaged_row(inner, pk, Some(found.check), "check value does not match");
            return None;
        }
        let today = self.today();
        if found.used < today {
            self.push(inner, Op::Touch { pk, day: today }, 0);
        }
        Some(
            found
                .digests
                .chunks(width)
                .map(|d| {
                    let mut full = [0u8; 16];
                    full[16 - width..].copy_from_slice(d);
                    u128::from_be_bytes(full)
                })
                .collect(),
        )
    }

    /// Remembers the digests of every chunk of the file with `key`
    /// (`digests.len() == key.size.div_ceil(chunk_size)`, else ignored),
    /// unless the file changed within [`RACY_WINDOW`] before `hashed_at`.
    /// Buffered.
    ///
    /// `key` must describe the file as it was read: from `fstat` on the
    /// descriptor read, before or after reading, with `hashed_at` taken
    /// before the first read.
    pub fn put(
        &self,
        key: &FileKey,
        chunk_size: u32,
        algo: HashAlgo,
        digests: &[Digest],
        hashed_at: SystemTime,
    ) {
        let Some(state) = key.state() else { return };
        if chunk_count(key.size, chunk_size) != Some(digests.len() as u64) || !settled(key, hashed_at) {
            return;
        }
        let width = algo.width();
        if digests.len().saturating_mul(width) > MAX_DIGEST_BYTES {
            return;
        }
        let mut packed = Vec::with_capacity(digests.len() * width);
        for d in digests {
            packed.extend_from_slice(&d.to_be_bytes()[16 - width..]);
        }
        let bytes = packed.len();
        let pk = Pk::new(key.dev, key.ino, chunk_size, algo);
        let op = Op::Put { pk, state, used: self.today(), digests: packed };
        let mut inner = self.inner();
        if inner.conn.is_some() {
            self.push(&mut inner, op, bytes);
        }
    }

    /// Writes buffered entries (also done on drop and every [`BATCH`]
    /// puts), and ends the read transaction that lookups share: call it
    /// when a run of work is over, so that an idle cache holds no snapshot
    /// that keeps other processes' log from being checkpointed.
    pub fn flush(&self) {
        let mut inner = self.inner();
        self.flush_locked(&mut inner, true);
    }

    fn inner(&self) -> MutexGuard<'_, Inner> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn today(&self) -> i64 {
        self.fixed_day.unwrap_or_else(|| day_of(SystemTime::now()))
    }

    /// Makes sure a read transaction is open for a lookup, a new one when
    /// the last has served its burst.
    fn begin_read(&self, inner: &mut Inner) -> rusqlite::Result<()> {
        let Some(conn) = inner.conn.as_ref() else { return Ok(()) };
        // An error may have ended the transaction in SQLite.
        let open = !conn.is_autocommit();
        match inner.reading {
            Some((since, n)) if open && n < READ_BURST && since.elapsed() < READ_BURST_TIME => {
                inner.reading = Some((since, n + 1));
                return Ok(());
            }
            _ => self.end_read(inner),
        }
        let Some(conn) = inner.conn.as_ref() else { return Ok(()) };
        conn.prepare_cached("BEGIN")?.execute([])?;
        inner.reading = Some((Instant::now(), 1));
        Ok(())
    }

    /// Ends the read transaction of lookups, if one is open.
    fn end_read(&self, inner: &mut Inner) {
        inner.reading = None;
        if let Some(conn) = inner.conn.as_ref().filter(|c| !c.is_autocommit()) {
            if let Err(e) = conn.prepare_cached("COMMIT").and_then(|mut s| s.execute([])) {
                let _ = conn.execute_batch("ROLLBACK");
                self.failed(inner, "reading", e);
            }
        }
    }

    fn push(&self, inner: &mut Inner, op: Op, bytes: usize) {
        if let Op::Touch { .. } = op {
            inner.touches.push(op);
            if inner.touches.len() >= MAX_TOUCHES {
                self.flush_locked(inner, true);
            }
            return;
        }
        inner.pending.push(op);
        inner.pending_bytes += bytes;
        if inner.pending.len() >= BATCH || inner.pending_bytes >= MAX_PENDING_BYTES {
            self.flush_locked(inner, false);
        }
    }

    /// Commits the puts and deletions, and the marks of use too if
    /// `touches`.
    fn flush_locked(&self, inner: &mut Inner, touches: bool) {
        self.end_read(inner);
        let mut ops = std::mem::take(&mut inner.pending);
        inner.pending_bytes = 0;
        if touches {
            ops.append(&mut inner.touches);
        }
        // In key order, rows that share a page are written together. The
        // sort is stable: the operations on one row keep their order.
        ops.sort_by_key(Op::pk);
        if !ops.is_empty() {
            if let Some(conn) = inner.conn.as_mut() {
                if let Err(e) = store::write(conn, &ops) {
                    self.failed(inner, "writing", e);
                }
            }
        }
        // A server runs for days: prune on the first flush of each.
        self.prune_if_due(inner);
    }

    fn prune_if_due(&self, inner: &mut Inner) {
        let today = self.today();
        if inner.pruned_on >= today {
            return;
        }
        self.end_read(inner);
        let Some(conn) = inner.conn.as_mut() else { return };
        match store::prune(conn, today, MAX_UNUSED_DAYS, self.max_rows) {
            Ok(deleted) => {
                inner.pruned_on = today;
                if deleted > 0 {
                    tracing::debug!("digest cache {}: pruned {deleted} entries", self.path.display());
                }
            }
            Err(e) => self.failed(inner, "pruning", e),
        }
    }

    /// A row was damaged: a miss, deleted with the next write.
    fn damaged_row(&self, inner: &mut Inner, pk: Pk, check: Option<i64>, what: &str) {
        if !inner.warned {
            inner.warned = true;
            tracing::warn!(
                "digest cache {}: a damaged entry ({what}) is ignored and deleted",
                self.path.display()
            );
        }
        self.push(inner, Op::Delete { pk, check }, 0);
    }

    /// SQLite failed: one warning for the run. A damaged file is out of use
    /// for the rest of the run, and marked for the next opener to replace.
    fn failed(&self, inner: &mut Inner, doing: &str, err: rusqlite::Error) {
        let corrupt = store::is_corruption(&err);
        if !inner.warned {
            inner.warned = true;
            let then = if corrupt {
                "the cache is out of use for this run and will be replaced"
            } else {
                "going on without what it would have given"
            };
            tracing::warn!("digest cache {}: {doing} failed: {err}; {then}", self.path.display());
        }
        if corrupt {
            inner.conn = None;
            inner.lock = None;
            inner.pending.clear();
            inner.pending_bytes = 0;
            inner.touches.clear();
            let _ = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .open(store::sibling(&self.path, DAMAGED_SUFFIX));
        }
    }
}

impl Drop for DigestCache {
    fn drop(&mut self) {
        self.flush();
    }
}

/// The rows of the runs of nearby inodes among `keys`. A run whose query
/// fails (a damaged row among them, a busy database) is left out: its keys
/// are then searched one by one, which tells which row is damaged.
fn read_runs(inner: &Inner, keys: &[Option<FileKey>], chunk_size: u32, algo: HashAlgo) -> Known {
    let mut known = Known::default();
    let Some(conn) = inner.conn.as_ref() else { return known };
    let mut pks: Vec<Pk> = keys.iter().flatten().map(|k| Pk::new(k.dev, k.ino, chunk_size, algo)).collect();
    for run in runs::runs(&mut pks) {
        let first = pks[run.keys.start];
        let Ok(rows) = store::select_range(conn, &first, run.last) else { continue };
        known.extend(pks[run.keys].iter().map(|pk| (*pk, None)));
        for (ino, found) in rows {
            if let Some(slot) = known.get_mut(&Pk { ino, ..first }) {
                *slot = Some(found);
            }
        }
    }
    known
}

/// The chunks of a file of `size` bytes.
fn chunk_count(size: u64, chunk_size: u32) -> Option<u64> {
    (chunk_size > 0).then(|| size.div_ceil(u64::from(chunk_size)))
}

/// Whether the file's mtime and ctime are both at least [`RACY_WINDOW`]
/// before `hashed_at`.
fn settled(key: &FileKey, hashed_at: SystemTime) -> bool {
    let at = match hashed_at.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_nanos() as i128,
        Err(e) => -(e.duration().as_nanos() as i128),
    };
    let latest = at - RACY_WINDOW.as_nanos() as i128;
    key.mtime_ns <= latest && key.ctime_ns <= latest
}

/// Days since the epoch.
fn day_of(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).map(|d| (d.as_secs() / 86_400) as i64).unwrap_or(0)
}
