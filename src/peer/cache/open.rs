//! Opening the digest cache: the directory, the shared lock, and a damaged,
//! truncated or foreign file warned about once and replaced (only by a
//! process alone with it); a file another process still has open is left
//! alone and the run goes without a cache.

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rusqlite::Connection;
use rustix::fs::{flock, FlockOperation};

use super::store::{self, OpenError};
use super::{DigestCache, Inner, BAD_SUFFIX, DAMAGED_SUFFIX, FILE, LOCK_FILE, MAX_ROWS};

impl DigestCache {
    /// `$XDG_CACHE_HOME/pareco`, else `$HOME/.cache/pareco`.
    pub fn default_dir() -> Option<PathBuf> {
        default_dir_from(std::env::var_os("XDG_CACHE_HOME"), std::env::var_os("HOME"))
    }

    /// Opens or creates the cache in `dir` (creating `dir`). A damaged or
    /// foreign file: one warning, replaced. Err only when no cache can be
    /// used at all (then the caller warns and goes on without one).
    pub fn open(dir: &Path) -> io::Result<DigestCache> {
        DigestCache::open_with(dir, None, MAX_ROWS)
    }

    /// [`DigestCache::open`] on a given day (`None`: today) with a given
    /// bound on rows.
    pub(super) fn open_with(dir: &Path, fixed_day: Option<i64>, max_rows: u64) -> io::Result<DigestCache> {
        fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
        let path = dir.join(FILE);
        let lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(dir.join(LOCK_FILE))?;
        flock(&lock, FlockOperation::LockShared)?;
        let marker = store::sibling(&path, DAMAGED_SUFFIX);
        let marked = marker.exists();
        let problem = match store::header_problem(&path) {
            Some(problem) => problem,
            None if marked => "left marked as damaged by an earlier run".to_string(),
            None => match open_file(&path) {
                Ok(conn) => return Ok(DigestCache::ready(path, conn, lock, fixed_day, max_rows)),
                Err(OpenError::Unusable(e)) => return Err(e),
                Err(OpenError::Busy(e)) => return Err(io::Error::other(e)),
                Err(OpenError::Bad(problem)) => problem,
            },
        };
        // Only a process alone with the file may replace it.
        if flock(&lock, FlockOperation::NonBlockingLockExclusive).is_err() {
            if marked && store::header_problem(&path).is_none() {
                // Only marked: its other rows are still checked one by one.
                flock(&lock, FlockOperation::LockShared)?;
                if let Ok(conn) = open_file(&path) {
                    return Ok(DigestCache::ready(path, conn, lock, fixed_day, max_rows));
                }
            }
            tracing::warn!(
                "digest cache {}: {problem}; another process has it open, so this run goes without",
                path.display()
            );
            return Ok(DigestCache::disabled(path, fixed_day, max_rows));
        }
        let aside = store::sibling(&path, BAD_SUFFIX);
        let moved = fs::rename(&path, &aside);
        for stale in [store::wal_path(&path), store::shm_path(&path), marker] {
            match fs::remove_file(&stale) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        match moved {
            Ok(()) => tracing::warn!(
                "digest cache {}: {problem}; moved aside to {} and started afresh",
                path.display(),
                aside.display()
            ),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        flock(&lock, FlockOperation::LockShared)?;
        match open_file(&path) {
            Ok(conn) => Ok(DigestCache::ready(path, conn, lock, fixed_day, max_rows)),
            Err(OpenError::Unusable(e)) => Err(e),
            Err(OpenError::Busy(e)) => Err(io::Error::other(e)),
            Err(OpenError::Bad(problem)) => Err(io::Error::other(format!("{}: {problem}", path.display()))),
        }
    }

    pub(super) fn ready(
        path: PathBuf,
        conn: Connection,
        lock: File,
        fixed_day: Option<i64>,
        max_rows: u64,
    ) -> DigestCache {
        let cache = DigestCache {
            path,
            state: Mutex::new(Inner {
                conn: Some(conn),
                lock: Some(lock),
                pending: Vec::new(),
                pending_bytes: 0,
                touches: Vec::new(),
                reading: None,
                pruned_on: i64::MIN,
                warned: false,
            }),
            fixed_day,
            max_rows,
        };
        cache.prune_if_due(&mut cache.inner());
        cache
    }

    pub(super) fn disabled(path: PathBuf, fixed_day: Option<i64>, max_rows: u64) -> DigestCache {
        DigestCache {
            path,
            state: Mutex::new(Inner {
                conn: None,
                lock: None,
                pending: Vec::new(),
                pending_bytes: 0,
                touches: Vec::new(),
                reading: None,
                pruned_on: i64::MIN,
                warned: true,
            }),
            fixed_day,
            max_rows,
        }
    }
}

/// [`DigestCache::default_dir`] from those variables: relative paths are
/// ignored, as the XDG spec says.
pub(super) fn default_dir_from(xdg_cache_home: Option<OsString>, home: Option<OsString>) -> Option<PathBuf> {
    let absolute = |var: Option<OsString>| var.map(PathBuf::from).filter(|p| p.is_absolute());
    match absolute(xdg_cache_home) {
        Some(xdg) => Some(xdg.join("pareco")),
        None => absolute(home).map(|home| home.join(".cache").join("pareco")),
    }
}

/// Opens the database at `path`, creating it owner-only if missing.
pub(super) fn open_file(path: &Path) -> Result<Connection, OpenError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(OpenError::Unusable)?;
    let deadline = Instant::now() + store::BUSY_TIMEOUT;
    let mut pause = Duration::from_millis(1);
    loop {
        match store::open(path) {
            Err(OpenError::Busy(_)) if Instant::now() < deadline => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            Err(OpenError::Busy(e)) => return Err(OpenError::Unusable(io::Error::other(e))),
            other => return other,
        }
    }
}
