//! The table of open sessions: opening (with the checks that come before
//! anything is created), joining, ending, expiry, and the upload sessions'
//! claims on the trees they write into.
//!
//! Time is an argument (milliseconds since the server's epoch), so the
//! table's rules are tested here without waiting.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::codec::{Direction, ErrorKind, SessionSpec};
use crate::peer::extra::{running_as_root, Extras, Scope};
use crate::peer::{self, Filter, LocalDestination, LocalSource, Remembered, Settings, Tree};
use crate::session::auth::{self, Secret};
use crate::session::pace::Pacer;

use super::members::{Member, Members};
use super::replay::Replays;
use super::{connections_for, FILE_WORK_PER_SESSION, SESSION_BUDGET, WALKS_PER_SESSION};

/// The limits the table enforces.
#[derive(Debug, Clone, Copy)]
pub(super) struct Limits {
    pub max_sessions: usize,
    pub max_connections: usize,
    pub keep_setid: bool,
}

/// The open sessions of a server, over its root.
pub(super) struct Table {
    root: Tree,
    limits: Limits,
    /// The digest cache every session hashes through, if any.
    cache: Option<Arc<Remembered>>,
    /// Connections are TLS: chunks arrive authenticated, and are not hashed
    /// again (see [`Settings::check_digests`]).
    tls: bool,
    sessions: Mutex<HashMap<u64, Arc<Session>>>,
    /// The trees upload sessions write into, by session id.
    writers: Writers,
    /// The latest sessions ended to make way for a new one, so that their
    /// client learns why ([`MAX_TAKEN_OVER`] at most).
    taken_over: Mutex<VecDeque<u64>>,
}

/// Taken-over session ids remembered.
const MAX_TAKEN_OVER: usize = 1024;

/// Why a session was not opened.
#[derive(Debug)]
pub(super) enum Refusal {
    /// Refused, with the error for the client.
    Refused(peer::Error),
    /// The tree is claimed by sessions that are ending (orphans just taken
    /// over, or ended with requests still finishing): try again shortly.
    Wait,
}

impl From<peer::Error> for Refusal {
    fn from(e: peer::Error) -> Refusal {
        Refusal::Refused(e)
    }
}

type Writers = Arc<Mutex<HashMap<u64, PathBuf>>>;

/// An upload session's claim on the tree it writes into. It is released
/// when its destination role is dropped, that is once the last request and
/// the last step of file work still running for it are done, not merely
/// when the session leaves the table.
struct WriteClaim {
    writers: Writers,
    id: u64,
}

impl Drop for WriteClaim {
    fn drop(&mut self) {
        lock(&self.writers).remove(&self.id);
    }
}

/// One open session on the server.
pub(super) struct Session {
    pub id: u64,
    pub role: Role,
    pub max_payload: u32,
    /// Milliseconds since the server's epoch when a frame last arrived or
    /// a request was done.
    last_active: AtomicU64,
    /// Its connections.
    pub members: Members,
    /// Cancelled when the session ends: everything it waits for ends too.
    pub ended: CancellationToken,
    /// Permits are bytes of [`SESSION_BUDGET`].
    pub budget: Arc<Semaphore>,
    /// Permits are walks in progress ([`WALKS_PER_SESSION`]).
    pub walks: Arc<Semaphore>,
    /// What a connection must prove it knows to join the session.
    pub secret: Secret,
    /// The answers of requests done once, for their repeats.
    pub replays: Replays,
    /// The session's `--bwlimit` (the client's, lowered to the server's),
    /// which all its connections send within.
    pub pacer: Arc<Pacer>,
}

/// The session's half of the transfer.
pub(super) enum Role {
    Source(LocalSource),
    Destination(LocalDestination),
}

impl Session {
    /// Marks the session active at `now_ms`.
    pub(super) fn touch(&self, now_ms: u64) {
        self.last_active.store(now_ms, Ordering::Relaxed);
    }

    /// Has the session lost all its connections (its client gone, or
    /// reconnecting)?
    fn orphaned(&self) -> bool {
        self.members.count() == 0
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Table {
    pub(super) fn new(root: Tree, limits: Limits, cache: Option<Arc<Remembered>>, tls: bool) -> Table {
        Table {
            root,
            limits,
            cache,
            tls,
            sessions: Mutex::default(),
            writers: Writers::default(),
            taken_over: Mutex::default(),
        }
    }

    /// Refuses a chunk size out of range (before anything else is done).
    pub(super) fn check_chunk_size(spec: &SessionSpec) -> Result<(), peer::Error> {
        if !(peer::MIN_CHUNK_SIZE..=peer::MAX_CHUNK_SIZE).contains(&spec.chunk_size) {
            return Err(peer::Error::new(
                ErrorKind::Limit,
                format!(
                    "chunk size {} is outside {}..={} bytes",
                    spec.chunk_size,
                    peer::MIN_CHUNK_SIZE,
                    peer::MAX_CHUNK_SIZE
                ),
            ));
        }
        Ok(())
    }

    /// Opens a session for `spec` with its compiled `filter` at `now_ms`,
    /// with the opening connection as its first member.
    ///
    /// Orphans (sessions whose connections are all gone) make way: the
    /// longest idle one ends when the server is full, and those writing
    /// into a tree overlapping an upload's end (then [`Refusal::Wait`]
    /// until their requests are done).
    pub(super) fn open(
        &self,
        spec: SessionSpec,
        filter: Filter,
        now_ms: u64,
    ) -> Result<(Arc<Session>, Member), Refusal> {
        let settings = Settings {
            file_work: FILE_WORK_PER_SESSION,
            cache: self.cache.clone(),
            extras: Extras::new(Scope::agreed(&spec, running_as_root())),
            check_digests: !self.tls,
            ..Settings::for_session(&spec, filter, self.limits.keep_setid)
        };
        let upload = spec.direction == Direction::Upload;
        // Refuse early, before making any directory, when the server is full.
        self.make_room(&mut lock(&self.sessions))?;
        let tree = self.root.subtree(&spec.path, upload).map_err(|e| match e.kind {
            ErrorKind::NotFound => {
                peer::Error::new(ErrorKind::NotFound, format!("no directory {} on the server", spec.path))
            }
            _ => e,
        })?;
        let real = std::fs::read_link(tree.proc_path())
            .map_err(|e| peer::Error::io(format!("{}: {e}", spec.path)))?;
        let mut sessions = lock(&self.sessions);
        self.make_room(&mut sessions)?;
        let mut writers = lock(&self.writers);
        let claimed: Vec<u64> = if upload {
            writers.iter().filter(|(_, other)| overlaps(other, &real)).map(|(id, _)| *id).collect()
        } else {
            Vec::new()
        };
        if !claimed.is_empty() {
            let live = |id: &u64| sessions.get(id).is_some_and(|s| !s.orphaned());
            if claimed.iter().any(live) {
                return Err(Refusal::Refused(peer::Error::new(
                    ErrorKind::Busy,
                    format!("another session is writing into {} or a directory overlapping it", spec.path),
                )));
            }
            drop(writers);
            for id in claimed {
                if let Some(orphan) = sessions.remove(&id) {
                    self.taken_over(&orphan);
                }
            }
            return Err(Refusal::Wait);
        }
        let id = loop {
            let id = u64::from_le_bytes(random8().map_err(|e| peer::Error::io(e.to_string()))?);
            if id != 0 && !sessions.contains_key(&id) {
                break id;
            }
        };
        let secret = auth::random_secret().map_err(|e| peer::Error::io(e.to_string()))?;
        // The claim on the tree lasts as long as the role and any step of
        // work it started, not merely the session.
        let role = if upload {
            writers.insert(id, real);
            let claim = WriteClaim { writers: self.writers.clone(), id };
            Role::Destination(LocalDestination::holding(tree, settings, Box::new(claim)))
        } else {
            Role::Source(LocalSource::new(tree, settings))
        };
        drop(writers);
        let session = Arc::new(Session {
            id,
            role,
            max_payload: spec.chunk_size,
            last_active: AtomicU64::new(now_ms),
            members: Members::default(),
            ended: CancellationToken::new(),
            budget: Arc::new(Semaphore::new(SESSION_BUDGET)),
            walks: Arc::new(Semaphore::new(WALKS_PER_SESSION)),
            secret,
            replays: Replays::default(),
            pacer: Pacer::new(Some(spec.bwlimit)),
        });
        // The opening connection counts from here, so the session is an
        // orphan when it goes, even before the Welcome is sent.
        let (member, _) = session.members.add(now_ms, 1);
        sessions.insert(id, session.clone());
        tracing::info!(
            "session {id:016x}: {} {} opened",
            if upload { "upload into" } else { "download of" },
            spec.path
        );
        Ok((session, member))
    }

    /// Ends an orphan taken over by a newer session: its requests are
    /// cancelled, and a later join of it learns why.
    fn taken_over(&self, orphan: &Session) {
        tracing::info!("session {:016x}: taken over by a new session (its connections were gone)", orphan.id);
        orphan.ended.cancel();
        let mut taken = lock(&self.taken_over);
        if taken.len() >= MAX_TAKEN_OVER {
            taken.pop_front();
        }
        taken.push_back(orphan.id);
    }

    /// Room for one more session: when full, the longest idle orphan ends.
    fn make_room(&self, sessions: &mut HashMap<u64, Arc<Session>>) -> Result<(), peer::Error> {
        if sessions.len() >= self.limits.max_sessions {
            let oldest = sessions
                .values()
                .filter(|s| s.orphaned())
                .min_by_key(|s| s.last_active.load(Ordering::Relaxed))
                .map(|s| s.id);
            if let Some(orphan) = oldest.and_then(|id| sessions.remove(&id)) {
                self.taken_over(&orphan);
            }
        }
        if sessions.len() >= self.limits.max_sessions {
            return Err(peer::Error::new(
                ErrorKind::Limit,
                format!(
                    "the server has its maximum of {} sessions open; try again later",
                    self.limits.max_sessions
                ),
            ));
        }
        Ok(())
    }

    /// Adds a connection to session `id` at `now_ms` once `admit` (the
    /// check of its proof) says yes: counted at once, under the lock, so
    /// concurrent joins cannot pass the limit. At the limit, the session's
    /// connection silent longest makes way (see [`super::members`]).
    pub(super) fn join<T>(
        &self,
        id: u64,
        now_ms: u64,
        admit: impl FnOnce(&Session) -> Result<T, peer::Error>,
    ) -> Result<(Arc<Session>, Member, T), peer::Error> {
        let sessions = lock(&self.sessions);
        let session = sessions.get(&id).cloned().ok_or_else(|| {
            let why = if lock(&self.taken_over).contains(&id) {
                "was taken over by a newer session (its connections had all gone)"
            } else {
                "is not open (it ended, expired, or the server restarted)"
            };
            peer::Error::new(ErrorKind::NoSession, format!("session {id:016x} {why}"))
        })?;
        let admitted = admit(&session)?;
        let most = self.most_connections(&session);
        let (member, replaced) = session.members.add(now_ms, most);
        if let Some(replaced) = replaced {
            tracing::info!(
                "session {id:016x}: at its maximum of {most} connections, the one silent for {} ms makes way for a new one",
                replaced.silent_ms
            );
        }
        Ok((session, member, admitted))
    }

    /// The most connections `session` takes: fewer for large chunks, so
    /// that the frames it may be reading stay within bounds.
    pub(super) fn most_connections(&self, session: &Session) -> usize {
        connections_for(session.max_payload).min(self.limits.max_connections)
    }

    pub(super) fn end(&self, session: &Session, why: &str) {
        if lock(&self.sessions).remove(&session.id).is_some() {
            tracing::info!("session {:016x}: {why}", session.id);
        }
        session.ended.cancel();
        // What the session's hashing taught the cache is kept now, not
        // when enough other sessions have added to it.
        if let Some(cache) = &self.cache {
            cache.flush();
        }
    }

    /// The sessions with no activity for longer than `timeout_ms` at
    /// `now_ms`.
    pub(super) fn idle(&self, now_ms: u64, timeout_ms: u64) -> Vec<Arc<Session>> {
        lock(&self.sessions)
            .values()
            .filter(|s| now_ms.saturating_sub(s.last_active.load(Ordering::Relaxed)) > timeout_ms)
            .cloned()
            .collect()
    }
}

/// Does one of two real paths contain the other?
fn overlaps(a: &Path, b: &Path) -> bool {
    a.starts_with(b) || b.starts_with(a)
}

fn random8() -> std::io::Result<[u8; 8]> {
    let bytes = auth::random_bytes(8)?;
    let mut out = [0u8; 8];
    out.copy_from_slice(&bytes);
    Ok(out)
}

#[cfg(test)]
#[path = "table_tests.rs"]
mod tests;
