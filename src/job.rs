//! One client run of `send` or `recv`, from the first connection to the
//! final report: the path the command line and `pareco ui` share.
//!
//! A run opens the local tree (made for a download), connects a session,
//! and drives [`transfer::run`] over it. A server that lost the session (it
//! restarted) gets a new one that carries on: what is in place already is
//! found again by digest, and what earlier sessions sent still counts. A
//! run can be cancelled: its session is closed and it ends as
//! [`JobError::Cancelled`].

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::codec::{Direction, SessionSpec};
use crate::peer::{LocalDestination, LocalSource, Settings, Tree};
use crate::session::{self, ClientConfig, Remote, RemoteDestination, RemoteSource, Resilience};
use crate::transfer::{self, Counters, Report, Watch};

/// Sessions one run opens at most (each after the server lost the one
/// before).
const MAX_SESSIONS_PER_RUN: u64 = 8;
/// How long a cancelled run waits for its session to close.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// Everything a run needs, decided before it starts.
pub struct Job {
    /// Upload (local to remote) or download.
    pub direction: Direction,
    /// The local directory.
    pub local: PathBuf,
    /// The remote tree.
    pub remote: Remote,
    /// The session the server is asked for.
    pub spec: SessionSpec,
    /// The local role's settings (its cache included).
    pub settings: Settings,
    /// How the engine behaves.
    pub options: transfer::Options,
    /// How to connect (its token included).
    pub config: ClientConfig,
    /// What hears of every entry done, if anything.
    pub watch: Option<Arc<dyn Watch>>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("direction", &self.direction)
            .field("local", &self.local)
            .field("remote", &self.remote)
            .field("spec", &self.spec)
            .field("options", &self.options)
            .field("watched", &self.watch.is_some())
            .finish_non_exhaustive()
    }
}

/// Where a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Opening the local tree and connecting.
    Connecting,
    /// The engine runs (listing, comparing, sending, deleting).
    Transferring,
    /// Closing the session.
    Closing,
}

/// What a run shows while it runs: its stage and the counters of its
/// current session (a session that carries on gets new ones).
pub struct Live {
    stage: AtomicU8,
    counters: Mutex<Arc<Counters>>,
}

impl Default for Live {
    fn default() -> Self {
        Live { stage: AtomicU8::new(Stage::Connecting as u8), counters: Mutex::default() }
    }
}

impl Live {
    /// The counters of the current session.
    pub fn counters(&self) -> Arc<Counters> {
        self.counters.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The stage the run is in.
    pub fn stage(&self) -> Stage {
        match self.stage.load(Ordering::Relaxed) {
            s if s == Stage::Transferring as u8 => Stage::Transferring,
            s if s == Stage::Closing as u8 => Stage::Closing,
            _ => Stage::Connecting,
        }
    }

    fn set_stage(&self, stage: Stage) {
        self.stage.store(stage as u8, Ordering::Relaxed);
    }

    fn set_counters(&self, counters: Arc<Counters>) {
        *self.counters.lock().unwrap_or_else(|p| p.into_inner()) = counters;
    }
}

/// Why a run ended without a report.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobError {
    /// It could not go on: one line saying why.
    #[error("{0}")]
    Failed(String),
    /// It was cancelled.
    #[error("cancelled")]
    Cancelled,
}

/// Runs `job` to its end, showing its progress in `live`; stops early
/// when `cancel` is cancelled. The report may count errors (files that
/// failed): see [`Report::complete`].
pub async fn run(job: &Job, live: &Live, cancel: &CancellationToken) -> Result<Report, JobError> {
    let remote = &job.remote;
    let failed = |e: &dyn std::fmt::Display| JobError::Failed(format!("{remote}: {e}"));
    let started = Instant::now();
    let mut connections = Resilience::default();
    let mut counters = Arc::new(match &job.watch {
        Some(watch) => Counters::watched(watch.clone()),
        None => Counters::default(),
    });
    live.set_counters(counters.clone());
    let mut wire_bytes = 0;
    let dry_run = job.options.dry_run;
    // Checked (and for a download made) before anything is sent.
    let mut tree = Some(open_local(job.direction, &job.local, dry_run)?);
    if dry_run && job.direction == Direction::Upload && server_lacks_target(job, cancel).await? {
        // The server would make the directory as the upload opens: compared
        // with an empty tree here instead, the server is left untouched.
        live.set_stage(Stage::Transferring);
        let source =
            LocalSource::new(tree.take().ok_or_else(|| failed(&"no local tree"))?, job.settings.clone());
        let vacant = open_vacant(&job.local)?;
        let dest = LocalDestination::new(vacant, Settings { cache: None, ..job.settings.clone() });
        let run = transfer::run(source, dest, job.options.clone(), counters.clone());
        tokio::select! {
            result = run => result.map_err(|e| failed(&e))?,
            () = cancel.cancelled() => return Err(JobError::Cancelled),
        }
        live.set_stage(Stage::Closing);
        return Ok(counters.report(started.elapsed(), 0, Default::default(), connections));
    }
    let pool = loop {
        live.set_stage(Stage::Connecting);
        let pool = tokio::select! {
            pool = session::connect(remote, job.spec.clone(), &job.config) => pool.map_err(|e| failed(&e))?,
            () = cancel.cancelled() => return Err(JobError::Cancelled),
        };
        connections.sessions_opened += 1;
        let tree = match tree.take() {
            Some(tree) => tree,
            None => open_local(job.direction, &job.local, dry_run)?,
        };
        live.set_stage(Stage::Transferring);
        let settings = Settings {
            extras: agreed_extras(&job.spec, &pool),
            check_digests: job.config.tls.is_none(),
            ..job.settings.clone()
        };
        let options = transfer::Options {
            connections: job.config.auto.then(|| pool.connections()),
            ..job.options.clone()
        };
        let hash = settings.hash;
        let run = async {
            match job.direction {
                Direction::Upload => {
                    let source = LocalSource::new(tree, settings);
                    let dest = RemoteDestination::new(pool.clone(), hash);
                    transfer::run(source, dest, options, counters.clone()).await
                }
                Direction::Download => {
                    let options =
                        transfer::Options { listing_filter: Some(settings.filter.clone()), ..options };
                    let dest = LocalDestination::new(tree, settings);
                    let source = RemoteSource::new(pool.clone(), hash);
                    transfer::run(source, dest, options, counters.clone()).await
                }
            }
        };
        let result = tokio::select! {
            result = run => result,
            () = cancel.cancelled() => {
                live.set_stage(Stage::Closing);
                let _ = tokio::time::timeout(CLOSE_TIMEOUT, pool.close()).await;
                return Err(JobError::Cancelled);
            }
        };
        let lost = pool.resilience();
        connections.reconnects += lost.reconnects;
        connections.requests_retried += lost.requests_retried;
        match result {
            Ok(()) => break pool,
            Err(e) if pool.session_gone() && connections.sessions_opened < MAX_SESSIONS_PER_RUN => {
                tracing::warn!("{e}; opening a new session to carry on");
                wire_bytes += pool.wire_bytes();
                counters = Arc::new(Counters::carrying_on(&counters));
                live.set_counters(counters.clone());
            }
            Err(e) => return Err(failed(&e)),
        }
    };
    live.set_stage(Stage::Closing);
    pool.close().await;
    if let Some(cache) = &job.settings.cache {
        cache.flush();
        tracing::info!("{}", cache.summary());
    }
    wire_bytes += pool.wire_bytes();
    Ok(Report {
        bwlimit: job.config.pacer.pacing(),
        ..counters.report(started.elapsed(), wire_bytes, pool.latency(), connections)
    })
}

/// Whether the server has no directory at the job's remote path: a
/// download session of it (one connection, read only) is refused as not
/// found.
async fn server_lacks_target(job: &Job, cancel: &CancellationToken) -> Result<bool, JobError> {
    let spec = SessionSpec { direction: Direction::Download, delete: false, ..job.spec.clone() };
    let config = ClientConfig { connections: 1, auto: false, ..job.config.clone() };
    let opened = tokio::select! {
        opened = session::connect(&job.remote, spec, &config) => opened,
        () = cancel.cancelled() => return Err(JobError::Cancelled),
    };
    match opened {
        Ok(pool) => {
            pool.close().await;
            Ok(false)
        }
        Err(session::SessionError::Refused(e)) if e.kind == crate::codec::ErrorKind::NotFound => Ok(true),
        Err(e) => Err(JobError::Failed(format!("{}: {e}", job.remote))),
    }
}

/// The local tree: for an upload it must exist; for a download it is made
/// (in a dry run, a download into a directory that does not exist compares
/// with an empty directory, made and removed at once).
pub fn open_local(direction: Direction, local: &Path, dry_run: bool) -> Result<Tree, JobError> {
    let failed = |e: &dyn std::fmt::Display| JobError::Failed(format!("{}: {e}", local.display()));
    if direction == Direction::Download && dry_run && !local.exists() {
        return open_vacant(local);
    }
    if direction == Direction::Download {
        std::fs::create_dir_all(local)
            .map_err(|e| JobError::Failed(format!("cannot create {}: {e}", local.display())))?;
    }
    match std::fs::metadata(local) {
        Ok(md) if md.is_dir() => {}
        Ok(_) => return Err(JobError::Failed(format!("{} is not a directory", local.display()))),
        Err(e) => return Err(failed(&e)),
    }
    Tree::open(local).map_err(|e| failed(&e))
}

/// The owners, groups and attributes the session keeps, now that the
/// server said whether it runs as root; what was asked for and cannot be
/// kept is said once.
fn agreed_extras(spec: &SessionSpec, pool: &session::Pool) -> Option<Arc<crate::peer::extra::Extras>> {
    let scope = crate::peer::extra::Scope::agreed(spec, pool.server_privileged());
    if spec.preserve.owner && !scope.owner {
        let side = if spec.direction == Direction::Upload { "the server does" } else { "this process does" };
        tracing::warn!(
            "--owner: {side} not run as root, so owners cannot be set; files are synced without them"
        );
    }
    crate::peer::extra::Extras::new(scope)
}

/// An empty tree that stands for `local`, which does not exist: a new
/// directory under the temporary directory, opened, then removed (an open
/// directory that was removed lists nothing and holds nothing).
fn open_vacant(local: &Path) -> Result<Tree, JobError> {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let vacant =
        std::env::temp_dir().join(format!("pareco-dry-run-{}-{}", std::process::id(), nanos.as_nanos()));
    let failed = |e: &dyn std::fmt::Display| {
        JobError::Failed(format!("{} (for the dry run into {}): {e}", vacant.display(), local.display()))
    };
    std::fs::create_dir(&vacant).map_err(|e| failed(&e))?;
    let tree = Tree::open(&vacant).map_err(|e| failed(&e));
    std::fs::remove_dir(&vacant).map_err(|e| failed(&e))?;
    tree
}
