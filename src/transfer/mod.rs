//! The sync engine: makes a destination tree a mirror of a source tree,
//! whichever of the two is on the other machine.
//!
//! - this file: the run as a whole — stream the source listing in batches,
//!   then `--delete`, the sweep for temporary files and directory metadata.
//! - `batch`: one batch of the listing — probe the destination, create
//!   directories and symlinks, hand files to [`file`](mod@file) (small ones
//!   in bundles and compared batches).
//! - [`file`](mod@file): one file — decide what to skip, compare chunk digests, send
//!   only the chunks that differ.
//! - `plan`: where each chunk comes from, decided from digests alone (pure
//!   functions, tested on their own).
//! - `actions`: directory-level actions (make, remove, set metadata), many
//!   per request.
//! - `bundle`: new small files, many per request.
//! - `delete`: `--delete`, once the rest is done.
//! - `links`: `-H`, files that are other names of a file listed before,
//!   linked at the destination once the files are done.
//! - `meta`: when the destination's metadata is already the source's.
//! - `progress`: what happened to one file, and its record (counters, log,
//!   watcher).
//! - [`stats`]: counters and the final report.
//! - [`observe`]: the run as it goes, for displays: phase, progress, and
//!   what was done to each entry.
//! - [`window`]: how many bytes of chunk data may be in flight.
//!
//! Everything runs at once: several batches are probed while earlier files
//! transfer, many files are in flight, and a large file's chunks are spread
//! over all connections. Two bounds keep memory flat whatever the tree: the
//! bytes of chunk data in flight ([`Options::window`]) and the number of
//! files in progress.

mod actions;
mod batch;
mod bundle;
mod checked;
mod compare;
mod delete;
pub mod file;
mod links;
mod meta;
pub mod observe;
mod plan;
mod progress;
pub mod stats;
pub mod window;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::codec::{Action, ErrorKind, Kind, Meta, RelPath, SessionSpec, Stat};
use crate::peer::{self, Destination, Filter, Source};

use actions::told;
use observe::Stage;

pub use observe::{Phase, Snapshot, Watch};
pub use stats::{Counters, Report};

/// Entries per `Apply` request at most...
const ACTIONS_PER_REQUEST: usize = 512;
/// ...and about this many bytes of paths and targets per request (for
/// `Apply`, bundles of small files), so that a request and its answer stay
/// well below the 1 MiB header limit whatever the names.
pub(crate) const REQUEST_BYTES: usize = 256 << 10;

// Every list a request carries fits what a server decodes.
const _: () = assert!(
    ACTIONS_PER_REQUEST <= crate::codec::MAX_LIST
        && bundle::BUNDLE_FILES <= crate::codec::MAX_LIST
        && compare::COMPARE_FILES <= crate::codec::MAX_LIST
);

/// Batches of the listing being probed and dispatched at once.
const BATCHES_IN_FLIGHT: usize = 32;
/// Files in progress at once (a large file counts as [`LARGE_FILE_WEIGHT`]).
const FILES_IN_FLIGHT: usize = 4096;
const LARGE_FILE_WEIGHT: u32 = 16;

/// How a transfer behaves.
#[derive(Debug, Clone)]
pub struct Options {
    /// Chunk size in bytes, as in the session.
    pub chunk_size: u32,
    /// Trust equal size and mtime without reading the file.
    pub skip_digest: bool,
    /// Remove destination entries the source does not have.
    pub delete: bool,
    /// Chunks are written into existing files (nothing to copy from old).
    pub inplace: bool,
    /// Bytes of chunk data in flight at most ([`window::for_connections`]).
    pub window: usize,
    /// `-n auto`: the session's connections as they are added; the window
    /// widens to match.
    pub connections: Option<tokio::sync::watch::Receiver<usize>>,
    /// `-H`: files listed in one link group arrive as hard links.
    pub hard_links: bool,
    /// Change nothing on the destination (`--dry-run`): only list, probe
    /// and compare; count and report what would be done.
    pub dry_run: bool,
    /// With `delete`: delete nothing, and fail, if more than this many
    /// entries would go (`--max-delete`).
    pub max_delete: Option<u64>,
    /// A source on the other side of the wire (a download): the session's
    /// `--include`/`--exclude`, which the source's listing must keep to,
    /// as it must list each entry's directory before it. An entry that
    /// breaks either (only a lying server lists one) is ignored, and the
    /// listing counts as incomplete.
    pub listing_filter: Option<Filter>,
}

impl Options {
    /// The options of a transfer for the session `spec`, over
    /// `connections` connections.
    pub fn for_session(spec: &SessionSpec, skip_digest: bool, connections: usize) -> Options {
        Options {
            chunk_size: spec.chunk_size,
            skip_digest,
            delete: spec.delete,
            inplace: spec.inplace,
            window: window::for_connections(connections, spec.chunk_size),
            connections: None,
            hard_links: spec.hard_links,
            dry_run: false,
            max_delete: None,
            listing_filter: None,
        }
    }
}

/// What every task of a transfer shares.
pub(crate) struct Ctx<S, D> {
    source: S,
    dest: D,
    opts: Options,
    counters: Arc<Counters>,
    /// Permits are bytes of chunk data in flight.
    data: Arc<Semaphore>,
    /// Set when the session is lost: no point going on.
    abort: CancellationToken,
    fatal: Mutex<Option<peer::Error>>,
    tasks: TaskTracker,
    /// `-H`: the link groups of the listing.
    links: links::Links,
    /// The directories to sweep for temporary files once the run is done.
    /// Creating a file in a directory sets its mtime, and a run sets it to
    /// the source's only after its sweep: so a directory the destination
    /// had with its source's mtime holds no temporary file of an
    /// interrupted run, and one this run made holds none of another. Only
    /// the others are read (the root always).
    sweep: Mutex<Vec<RelPath>>,
    /// Directories of the files that failed in this run: their temporary
    /// files stay for the next run to go on from, so they are not swept.
    unswept: Mutex<HashSet<RelPath>>,
    /// With `--delete`: files and symlinks whose path is a directory at the
    /// destination. Making way for them deletes what that directory holds,
    /// so they wait for the deletions ([`delete::replace_held`]): counted,
    /// bounded by `--max-delete`, and only after a complete listing.
    held: Mutex<Vec<crate::codec::Entry>>,
}

impl<S: Source + Clone, D: Destination + Clone> Ctx<S, D> {
    /// Records a failure: a lost session, or a destination that is full or
    /// read-only, stops the run (no new file is started; the first such
    /// error is the run's one line); anything else is one error line and
    /// the run goes on.
    fn fail(&self, what: &str, error: peer::Error) {
        if error.kind == ErrorKind::Lost || error.stops_destination() {
            let mut fatal = self.fatal.lock().unwrap_or_else(|p| p.into_inner());
            if fatal.is_none() {
                *fatal = Some(error);
            }
            self.abort.cancel();
            return;
        }
        if self.abort.is_cancelled() {
            return;
        }
        Counters::add(&self.counters.errors, 1);
        if what.is_empty() {
            tracing::error!("{error}");
        } else {
            tracing::error!("{what}: {error}");
        }
    }

    /// Probes `paths` on the destination. An answer too large for one frame
    /// (symlink targets can be long) is asked for again in halves.
    async fn probe(&self, paths: Vec<RelPath>) -> Result<Vec<Option<Stat>>, peer::Error> {
        let mut found = Vec::with_capacity(paths.len());
        let mut pending = vec![paths];
        while let Some(mut paths) = pending.pop() {
            match self.dest.probe(paths.clone()).await {
                Err(e) if e.kind == ErrorKind::Limit && paths.len() > 1 => {
                    let second = paths.split_off(paths.len() / 2);
                    pending.extend([second, paths]);
                }
                Err(e) => return Err(e),
                Ok(part) => found.extend(part),
            }
        }
        Ok(found)
    }
}

/// Makes `dest` a mirror of `source`, counting into `counters` (which the
/// caller keeps, so that the work of a run cut short still counts). `Err`
/// only when the run could not go on at all (the listing failed, the
/// session was lost).
pub async fn run<S, D>(source: S, dest: D, opts: Options, counters: Arc<Counters>) -> Result<(), peer::Error>
where
    S: Source + Clone,
    D: Destination + Clone,
{
    let window = opts.window.max(opts.chunk_size as usize);
    let hard_links = opts.hard_links;
    let delete = opts.delete;
    let data = Arc::new(Semaphore::new(window));
    let _widening =
        opts.connections.clone().map(|n| window::follow(data.clone(), window, n, opts.chunk_size));
    let ctx = Arc::new(Ctx {
        source,
        dest,
        opts,
        counters,
        data,
        abort: CancellationToken::new(),
        fatal: Mutex::new(None),
        tasks: TaskTracker::new(),
        links: links::Links::new(hard_links),
        sweep: Mutex::new(vec![RelPath::root()]),
        unswept: Mutex::default(),
        held: Mutex::default(),
    });
    ctx.counters.live.set_stage(Stage::Listing);
    let mut listing = ctx.source.walk().await?;
    let batches = Arc::new(Semaphore::new(BATCHES_IN_FLIGHT));
    let files = Arc::new(Semaphore::new(FILES_IN_FLIGHT));
    let mut dirs: Vec<(RelPath, Meta)> = Vec::new();
    let mut seen: HashSet<RelPath> = HashSet::new();
    let mut check = ctx.opts.listing_filter.clone().map(checked::ListingCheck::new);
    let mut root = None;
    let mut incomplete = false;
    while let Some(mut batch) = tokio::select! {
        batch = listing.recv() => batch,
        () = ctx.abort.cancelled() => None,
    } {
        incomplete |= !batch.problems.is_empty() || batch.error.is_some();
        for problem in batch.problems {
            ctx.fail("", peer::Error::io(problem));
        }
        if let Some(error) = batch.error {
            ctx.fail("listing the source's tree", error);
        }
        root = root.or(batch.root);
        if batch.entries.iter().any(|e| e.path.is_root()) {
            // Only a broken or lying source lists the root as an entry:
            // acting on it could replace the whole destination.
            incomplete = true;
            batch.entries.retain(|e| !e.path.is_root());
            let why = "the source listed the root itself as an entry; that entry is ignored";
            ctx.fail("", peer::Error::new(ErrorKind::Protocol, why));
        }
        if let Some(check) = &mut check {
            for why in check.keep(&mut batch.entries) {
                incomplete = true;
                ctx.fail("", peer::Error::new(ErrorKind::Protocol, why));
            }
        }
        for entry in &batch.entries {
            if entry.stat.kind == Kind::Dir {
                dirs.push((entry.path.clone(), entry.stat.meta.clone()));
            }
            if delete {
                seen.insert(entry.path.clone());
            }
        }
        let followers = ctx.links.take_followers(&mut batch.entries);
        Counters::add(&ctx.counters.files_total, followers as u64);
        let Ok(permit) = batches.clone().acquire_owned().await else { break };
        let (ctx2, files) = (ctx.clone(), files.clone());
        ctx.counters.live.batch_opened();
        ctx.tasks.spawn(async move {
            batch::sync_batch(&ctx2, batch.entries, &files).await;
            ctx2.counters.live.batch_counted();
            drop(permit);
        });
    }
    // (A run cut short never gets final totals.)
    if !ctx.abort.is_cancelled() {
        ctx.counters.live.set_listed();
    }
    ctx.counters.live.set_stage(Stage::Transferring);
    ctx.tasks.close();
    ctx.tasks.wait().await;
    if let Some(fatal) = ctx.fatal.lock().unwrap_or_else(|p| p.into_inner()).take() {
        return Err(fatal);
    }
    // Every file is under its final name now: the other names of each.
    ctx.make_links().await;
    if delete {
        let errors = Counters::get(&ctx.counters.errors);
        if incomplete || errors > 0 {
            tracing::warn!(
                "--delete skipped: {}; nothing is deleted unless the source was listed and copied without error",
                if incomplete { "the source listing is incomplete".to_owned() } else { format!("{errors} error(s)") }
            );
            delete::refuse_held(&ctx);
        } else {
            ctx.counters.live.set_stage(Stage::Deleting);
            if delete::delete_extraneous(&ctx, &seen).await? {
                delete::replace_held(&ctx, &files).await;
            } else {
                delete::refuse_held(&ctx);
            }
        }
    }
    ctx.counters.live.set_stage(Stage::Finishing);
    // The temporary files still there were left by interrupted runs, for
    // files done by now or no longer in the source: they go, but in the
    // directories of files that failed in this run, which the next run
    // goes on from. (Before the directories get their mtimes, after which
    // a later run would not look in them again.)
    if !incomplete {
        let sweep = std::mem::take(&mut *ctx.sweep.lock().unwrap_or_else(|p| p.into_inner()));
        let unswept = std::mem::take(&mut *ctx.unswept.lock().unwrap_or_else(|p| p.into_inner()));
        let sweep = sweep.into_iter().filter(|dir| !unswept.contains(dir));
        ctx.apply(sweep.map(|path| Action::RemoveTemps { path }).collect()).await;
    }
    // The root of the transfer gets the source root's metadata too.
    dirs.extend(root.map(|meta| (RelPath::root(), meta)));
    // Deepest first (the root last), after every write and delete that
    // touches them.
    dirs.sort_by_key(|(path, _)| std::cmp::Reverse(path.depth()));
    let actions =
        dirs.into_iter().map(|(path, meta)| Action::SetMeta { path, kind: Kind::Dir, meta }).collect();
    ctx.apply(actions).await;
    ctx.counters.live.set_stage(Stage::Done);
    if let Some(fatal) = ctx.fatal.lock().unwrap_or_else(|p| p.into_inner()).take() {
        return Err(fatal);
    }
    Ok(())
}
