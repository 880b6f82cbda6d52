//! The SQLite side of the digest cache: the file's identity, its schema,
//! the rows and their check values, batched writes and pruning.
//!
//! One table keyed by `(dev, ino, chunk, algo)`, so a file has one row per
//! chunk size and algorithm and a new state of it replaces the old; the rest
//! of its key (size, mtime, ctime) is compared on reading. Every row carries
//! an XXH3-64 check value over all of its key fields and digests: a row that
//! SQLite reads back fine but whose bytes were damaged is told by it.
//! `WITHOUT ROWID` keeps the rows in the primary key's B-tree itself, with
//! no second index: one small file costs about 80 bytes.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{params, Connection, ErrorCode, OptionalExtension, TransactionBehavior};

use crate::codec::HashAlgo;

/// `PRAGMA application_id` of a pareco digest cache: "PRDC".
pub(super) const APPLICATION_ID: i32 = 0x5052_4443;
/// `PRAGMA user_version`: the version of the schema below.
pub(super) const SCHEMA_VERSION: i32 = 1;
/// How long a statement waits for another connection's write lock.
pub(super) const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Seed of the rows' check values.
const CHECK_SEED: u64 = 0x7061_7265_636f_6331;

const SCHEMA: &str = "
CREATE TABLE digests (
    dev INTEGER NOT NULL,
    ino INTEGER NOT NULL,
    chunk INTEGER NOT NULL,
    algo INTEGER NOT NULL,
    size INTEGER NOT NULL,
    mtime INTEGER NOT NULL,
    ctime INTEGER NOT NULL,
    used INTEGER NOT NULL,
    digests BLOB NOT NULL,
    check_value INTEGER NOT NULL,
    PRIMARY KEY (dev, ino, chunk, algo)
) WITHOUT ROWID;
CREATE TABLE meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
";

const SELECT: &str = "SELECT size, mtime, ctime, used, digests, check_value FROM digests \
                      WHERE dev = ?1 AND ino = ?2 AND chunk = ?3 AND algo = ?4";
const SELECT_RANGE: &str = "SELECT ino, size, mtime, ctime, used, digests, check_value FROM digests \
                            WHERE dev = ?1 AND ino BETWEEN ?2 AND ?3 AND chunk = ?4 AND algo = ?5";
const INSERT: &str = "INSERT OR REPLACE INTO digests \
                      (dev, ino, chunk, algo, size, mtime, ctime, used, digests, check_value) \
                      VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)";
const TOUCH: &str = "UPDATE digests SET used = ?5 \
                     WHERE dev = ?1 AND ino = ?2 AND chunk = ?3 AND algo = ?4 AND used < ?5";
const DELETE: &str = "DELETE FROM digests WHERE dev = ?1 AND ino = ?2 AND chunk = ?3 AND algo = ?4 \
                      AND (?5 IS NULL OR check_value = ?5)";

/// The primary key of a row, ordered as SQLite orders it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) struct Pk {
    pub(super) dev: i64,
    pub(super) ino: i64,
    pub(super) chunk: i64,
    pub(super) algo: i64,
}

impl Pk {
    pub(super) fn new(dev: u64, ino: u64, chunk_size: u32, algo: HashAlgo) -> Pk {
        // Bit for bit: SQLite has no unsigned integers.
        Pk { dev: dev as i64, ino: ino as i64, chunk: i64::from(chunk_size), algo: algo_code(algo) }
    }
}

/// The state a row was stored for, compared on reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct State {
    pub(super) size: i64,
    pub(super) mtime: i64,
    pub(super) ctime: i64,
}

/// A row as read back.
pub(super) struct Found {
    pub(super) state: State,
    pub(super) used: i64,
    pub(super) digests: Vec<u8>,
    pub(super) check: i64,
}

/// One buffered write.
pub(super) enum Op {
    /// Stores (or replaces) the digests of a file.
    Put { pk: Pk, state: State, used: i64, digests: Vec<u8> },
    /// Marks a row as used on `day`.
    Touch { pk: Pk, day: i64 },
    /// Deletes a damaged row: only if it still has check value `check`
    /// (another process may have replaced it meanwhile), or whatever it
    /// holds when `None`.
    Delete { pk: Pk, check: Option<i64> },
}

impl Op {
    /// The row it is about.
    pub(super) fn pk(&self) -> Pk {
        match self {
            Op::Put { pk, .. } | Op::Touch { pk, .. } | Op::Delete { pk, .. } => *pk,
        }
    }
}

/// A stable number for each algorithm (not the enum's discriminant, which
/// a reordering would change).
fn algo_code(algo: HashAlgo) -> i64 {
    match algo {
        HashAlgo::Xxh3 => 1,
        HashAlgo::Xxh128 => 2,
        HashAlgo::Xxh64 => 3,
        HashAlgo::Crc32 => 4,
        HashAlgo::Crc32c => 5,
        HashAlgo::Adler32 => 6,
    }
}

/// The check value of a row: every field but `used`.
pub(super) fn check_value(pk: &Pk, state: &State, digests: &[u8]) -> i64 {
    let mut bytes = Vec::with_capacity(56 + digests.len());
    for field in [pk.dev, pk.ino, pk.chunk, pk.algo, state.size, state.mtime, state.ctime] {
        bytes.extend_from_slice(&field.to_le_bytes());
    }
    bytes.extend_from_slice(digests);
    xxhash_rust::xxh3::xxh3_64_with_seed(&bytes, CHECK_SEED) as i64
}

/// Why an existing file cannot be used.
pub(super) enum OpenError {
    /// It is damaged or not ours: to be replaced.
    Bad(String),
    /// No cache can be used there (permissions, I/O, a lock held too long).
    Unusable(io::Error),
    /// Another connection held a lock past the busy timeout, or one that
    /// SQLite does not wait for (as while another process creates the
    /// database): worth another try.
    Busy(rusqlite::Error),
}

/// Whether `err` says the file itself is damaged or no database.
pub(super) fn is_corruption(err: &rusqlite::Error) -> bool {
    matches!(err.sqlite_error_code(), Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase))
}

fn classify(err: rusqlite::Error) -> OpenError {
    if is_corruption(&err) {
        OpenError::Bad(err.to_string())
    } else if matches!(err.sqlite_error_code(), Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)) {
        OpenError::Busy(err)
    } else {
        OpenError::Unusable(io::Error::other(err))
    }
}

/// The write-ahead log beside `path`.
pub(super) fn wal_path(path: &Path) -> PathBuf {
    sibling(path, "-wal")
}

/// The shared-memory index beside `path`.
pub(super) fn shm_path(path: &Path) -> PathBuf {
    sibling(path, "-shm")
}

pub(super) fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// What is wrong with the file at `path` that its first bytes show without
/// SQLite: no SQLite header, or shorter than its header says while no
/// write-ahead log holds the rest. `None` for a missing or empty file too.
pub(super) fn header_problem(path: &Path) -> Option<String> {
    let mut file = File::open(path).ok()?;
    let len = file.metadata().ok()?.len();
    if len == 0 {
        return None;
    }
    let mut header = [0u8; 100];
    if len < 100 || file.read_exact(&mut header).is_err() {
        return Some(format!("truncated to {len} bytes"));
    }
    if &header[..16] != b"SQLite format 3\0" {
        return Some("not an SQLite database".into());
    }
    let be32 = |at: usize| u32::from_be_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]]);
    let page_size = match u16::from_be_bytes([header[16], header[17]]) {
        1 => 65536,
        n => u64::from(n),
    };
    let pages = u64::from(be32(28));
    // The page count in the header is valid only when the change counter
    // matches the version it was written for.
    let counted = pages > 0 && be32(24) == be32(92);
    let wal_empty = std::fs::metadata(wal_path(path)).map(|m| m.len() == 0).unwrap_or(true);
    if counted && wal_empty && len < pages * page_size {
        return Some(format!("truncated to {len} bytes of {}", pages * page_size));
    }
    None
}

/// Opens the database at `path` (an existing file, possibly empty), makes
/// it ours if it is empty, and checks that it is ours.
pub(super) fn open(path: &Path) -> Result<Connection, OpenError> {
    let conn = Connection::open(path).map_err(classify)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(classify)?;
    // Whose is it? Nothing is written to a database of another program.
    let (app, version, tables) = survey(&conn).map_err(classify)?;
    if app == 0 {
        if tables > 0 || version != 0 {
            return Err(OpenError::Bad("an SQLite database of another program".into()));
        }
    } else if app != APPLICATION_ID {
        return Err(OpenError::Bad(format!("not a pareco digest cache (application_id {app:#x})")));
    }
    // WAL: readers and the writer of other processes do not block each
    // other, and a commit is not an fsync (NORMAL): a crash loses at most
    // the last commits, never the database's consistency.
    conn.pragma_update(None, "journal_mode", "WAL").map_err(classify)?;
    conn.pragma_update(None, "synchronous", "NORMAL").map_err(classify)?;
    // The pages of 200 000 small files (16 MiB, the default is 2): a
    // re-sync of them then reads each page from the file once.
    conn.pragma_update(None, "cache_size", -16384).map_err(classify)?;
    if app == 0 {
        create(&conn).map_err(classify)?;
    }
    let (app, version, _) = survey(&conn).map_err(classify)?;
    if app != APPLICATION_ID {
        return Err(OpenError::Bad(format!("not a pareco digest cache (application_id {app:#x})")));
    }
    if version != SCHEMA_VERSION {
        return Err(OpenError::Bad(format!("schema version {version}, this pareco uses {SCHEMA_VERSION}")));
    }
    // Reads the schema and the roots of both tables.
    conn.prepare_cached(SELECT).map_err(classify)?;
    conn.query_row("SELECT count(*) FROM meta", [], |r| r.get::<_, i64>(0)).map_err(classify)?;
    conn.query_row("SELECT 1 FROM digests LIMIT 1", [], |_| Ok(())).optional().map_err(classify)?;
    Ok(conn)
}

/// The application id, the schema version and the number of tables, as
/// of one moment: another process may be creating the database.
fn survey(conn: &Connection) -> rusqlite::Result<(i32, i32, i64)> {
    let in_transaction = !conn.is_autocommit();
    if !in_transaction {
        conn.execute_batch("BEGIN")?;
    }
    let result = (|| {
        let app = conn.pragma_query_value(None, "application_id", |r| r.get(0))?;
        let version = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        let tables = conn.query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get(0))?;
        Ok((app, version, tables))
    })();
    if !in_transaction {
        conn.execute_batch(if result.is_ok() { "COMMIT" } else { "ROLLBACK" })?;
    }
    result
}

/// Creates the schema in an empty database, unless another process has
/// just done so or the database holds something else.
fn create(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let result = (|| {
        let (app, _, tables) = survey(conn)?;
        if app == 0 && tables == 0 {
            conn.execute_batch(SCHEMA)?;
            conn.pragma_update(None, "application_id", APPLICATION_ID)?;
            conn.pragma_update(None, "user_version", SCHEMA_VERSION)?;
        }
        Ok(())
    })();
    match result {
        Ok(()) => conn.execute_batch("COMMIT"),
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

/// The row of `pk`, if any.
pub(super) fn select(conn: &Connection, pk: &Pk) -> rusqlite::Result<Option<Found>> {
    let mut stmt = conn.prepare_cached(SELECT)?;
    stmt.query_row(params![pk.dev, pk.ino, pk.chunk, pk.algo], |r| found_at(r, 0)).optional()
}

/// A row's [`Found`], from its columns `size, mtime, ctime, used, digests,
/// check_value` starting at column `at` (as [`SELECT`] and [`SELECT_RANGE`]
/// list them).
fn found_at(r: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<Found> {
    Ok(Found {
        state: State { size: r.get(at)?, mtime: r.get(at + 1)?, ctime: r.get(at + 2)? },
        used: r.get(at + 3)?,
        digests: r.get(at + 4)?,
        check: r.get(at + 5)?,
    })
}

/// The rows from `first` up to the inode `last_ino` of the same device,
/// chunk size and algorithm, with their inodes: one walk along the
/// primary key's B-tree rather than a search for each.
pub(super) fn select_range(
    conn: &Connection,
    first: &Pk,
    last_ino: i64,
) -> rusqlite::Result<Vec<(i64, Found)>> {
    let mut stmt = conn.prepare_cached(SELECT_RANGE)?;
    let rows = stmt.query_map(params![first.dev, first.ino, last_ino, first.chunk, first.algo], |r| {
        Ok((r.get(0)?, found_at(r, 1)?))
    })?;
    rows.collect()
}

/// Runs `ops` in one transaction.
pub(super) fn write(conn: &mut Connection, ops: &[Op]) -> rusqlite::Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    {
        for op in ops {
            match op {
                Op::Put { pk, state, used, digests } => {
                    let check = check_value(pk, state, digests);
                    tx.prepare_cached(INSERT)?.execute(params![
                        pk.dev,
                        pk.ino,
                        pk.chunk,
                        pk.algo,
                        state.size,
                        state.mtime,
                        state.ctime,
                        used,
                        digests,
                        check
                    ])?;
                }
                Op::Touch { pk, day } => {
                    tx.prepare_cached(TOUCH)?.execute(params![pk.dev, pk.ino, pk.chunk, pk.algo, day])?;
                }
                Op::Delete { pk, check } => {
                    tx.prepare_cached(DELETE)?.execute(params![pk.dev, pk.ino, pk.chunk, pk.algo, check])?;
                }
            }
        }
    }
    tx.commit()
}

/// The day of the last pruning.
pub(super) fn pruned_on(conn: &Connection) -> rusqlite::Result<Option<i64>> {
    conn.query_row("SELECT value FROM meta WHERE name = 'pruned'", [], |r| r.get(0)).optional()
}

/// Deletes the rows not used for more than `max_unused` days before
/// `today`, then the least recently used beyond `max_rows`, unless that was
/// done today already (by this process or another). Returns the rows
/// deleted.
pub(super) fn prune(
    conn: &mut Connection,
    today: i64,
    max_unused: i64,
    max_rows: u64,
) -> rusqlite::Result<u64> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    if pruned_on(&tx)?.is_some_and(|day| day >= today) {
        return Ok(0);
    }
    let mut deleted = tx.execute("DELETE FROM digests WHERE used < ?1", [today - max_unused])? as u64;
    let rows: i64 = tx.query_row("SELECT count(*) FROM digests", [], |r| r.get(0))?;
    let excess = (rows as u64).saturating_sub(max_rows);
    if excess > 0 {
        deleted += tx.execute(
            "DELETE FROM digests WHERE (dev, ino, chunk, algo) IN \
             (SELECT dev, ino, chunk, algo FROM digests ORDER BY used LIMIT ?1)",
            [excess as i64],
        )? as u64;
    }
    tx.execute("INSERT OR REPLACE INTO meta (name, value) VALUES ('pruned', ?1)", [today])?;
    tx.commit()?;
    Ok(deleted)
}
