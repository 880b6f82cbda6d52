//! The runs of this process: each on a thread of its own with its own
//! runtime (whose threads report to the run, see `observe`), cancellable,
//! kept after they end (the oldest finished ones make room for new ones).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::observe::{self, FileOutcome, Observed, Progress};
use super::request::Summary;
use crate::job::{self, Job, JobError, Stage};
use crate::peer::{self, Remembered};
use crate::transfer::Report;

/// Runs kept at most; beyond, the oldest finished ones are forgotten.
const RUNS_KEPT: usize = 100;
/// Runs going at once at most (each has a thread, a runtime and its
/// connections); another is refused until one ends.
pub(super) const RUNS_AT_ONCE: usize = 16;
/// How long an ended run's runtime may take to stop its tasks.
const SHUTDOWN: Duration = Duration::from_millis(200);

/// Where a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum State {
    /// Not started yet.
    Queued,
    Running,
    /// Ended with a report (which may count errors).
    Done,
    /// Stopped without a report.
    Failed,
    Cancelled,
}

/// How a run ended.
struct End {
    state: State,
    report: Option<Report>,
    message: Option<String>,
    duration: Duration,
}

/// One run.
pub(super) struct Run {
    id: u64,
    summary: Summary,
    started: Instant,
    cancel: CancellationToken,
    observed: Arc<Observed>,
    running: AtomicBool,
    end: Mutex<Option<End>>,
}

/// A run as the API shows it.
#[derive(Serialize)]
pub(super) struct RunView {
    id: u64,
    direction: &'static str,
    local: String,
    remote: String,
    pub state: State,
    progress: Progress,
    /// The `--json` report, once the run is done.
    report: Option<Report>,
    /// Why the run failed.
    message: Option<String>,
    files: Vec<FileOutcome>,
    errors: Vec<String>,
    warnings: Vec<String>,
    /// Error and warning lines left out (beyond the first thousand).
    lines_omitted: u64,
}

impl Run {
    /// Has the run ended?
    pub(super) fn ended(&self) -> bool {
        self.end.lock().unwrap_or_else(|p| p.into_inner()).is_some()
    }

    /// Asks the run to stop.
    pub(super) fn cancel(&self) {
        self.cancel.cancel();
    }

    /// The run as the API shows it now.
    pub(super) fn view(&self) -> RunView {
        let end = self.end.lock().unwrap_or_else(|p| p.into_inner());
        let state = match end.as_ref() {
            Some(end) => end.state,
            None if self.running.load(Ordering::Relaxed) => State::Running,
            None => State::Queued,
        };
        let phase = match (state, self.observed.live.stage()) {
            (State::Queued, _) => Some("queued"),
            (State::Running, Stage::Connecting) => Some("connecting"),
            (State::Running, Stage::Transferring) => None,
            (State::Running, Stage::Closing) => Some("closing"),
            _ => Some("ended"),
        };
        let elapsed = end.as_ref().map_or_else(|| self.started.elapsed(), |e| e.duration);
        let progress = Progress::of(&self.observed.live.counters(), phase, elapsed, end.is_some());
        let (files, errors, warnings, lines_omitted) = self.observed.outcomes(|o| {
            (o.files.iter().rev().cloned().collect(), o.errors.clone(), o.warnings.clone(), o.omitted)
        });
        RunView {
            id: self.id,
            direction: self.summary.direction,
            local: self.summary.local.clone(),
            remote: self.summary.remote.clone(),
            state,
            progress,
            report: end.as_ref().and_then(|e| e.report.clone()),
            message: end.as_ref().and_then(|e| e.message.clone()),
            files,
            errors,
            warnings,
            lines_omitted,
        }
    }

    /// Runs `job` on this thread, on a runtime of its own, to its end.
    fn execute(&self, mut job: Job) {
        observe::attach(&self.observed);
        // As the command line: the local directory is checked (and for a
        // download made) before the digest cache is opened for it.
        if let Err(e) = job::open_local(job.direction, &job.local, job.options.dry_run) {
            return self.finish(Err(e));
        }
        job.settings.cache = Remembered::open(None, &job.local);
        job.watch = Some(Arc::new(observe::FilesWatch(self.observed.clone())));
        let observed = self.observed.clone();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .max_blocking_threads(peer::BLOCKING_THREADS)
            .thread_name(format!("pareco-run-{}", self.id))
            .on_thread_start(move || observe::attach(&observed))
            .enable_all()
            .build();
        let runtime = match runtime {
            Ok(runtime) => runtime,
            Err(e) => return self.finish(Err(JobError::Failed(format!("cannot start the run: {e}")))),
        };
        self.running.store(true, Ordering::Relaxed);
        let outcome = runtime.block_on(job::run(&job, &self.observed.live, &self.cancel));
        // The token goes with the job.
        drop(job);
        runtime.shutdown_timeout(SHUTDOWN);
        self.finish(outcome);
    }

    fn finish(&self, outcome: Result<Report, JobError>) {
        let (state, report, message) = match outcome {
            Ok(report) => (State::Done, Some(report), None),
            Err(JobError::Cancelled) => (State::Cancelled, None, None),
            Err(JobError::Failed(message)) => {
                self.observed.note(tracing::Level::ERROR, message.clone());
                (State::Failed, None, Some(message))
            }
        };
        let end = End { state, report, message, duration: self.started.elapsed() };
        *self.end.lock().unwrap_or_else(|p| p.into_inner()) = Some(end);
    }
}

/// The runs of this process, by id.
#[derive(Default)]
pub(super) struct Runs {
    last_id: AtomicU64,
    runs: Mutex<BTreeMap<u64, Arc<Run>>>,
}

impl Runs {
    /// Starts `job`; returns its id, or `None` when [`RUNS_AT_ONCE`] runs
    /// are going.
    pub(super) fn start(&self, job: Job, summary: Summary) -> Option<u64> {
        let mut runs = self.runs.lock().unwrap_or_else(|p| p.into_inner());
        if runs.values().filter(|r| !r.ended()).count() >= RUNS_AT_ONCE {
            return None;
        }
        let id = self.last_id.fetch_add(1, Ordering::Relaxed) + 1;
        let run = Arc::new(Run {
            id,
            summary,
            started: Instant::now(),
            cancel: CancellationToken::new(),
            observed: Arc::default(),
            running: Default::default(),
            end: Mutex::new(None),
        });
        while runs.len() >= RUNS_KEPT {
            let Some(oldest) = runs.values().find(|r| r.ended()).map(|r| r.id) else { break };
            runs.remove(&oldest);
        }
        runs.insert(id, run.clone());
        drop(runs);
        let thread = run.clone();
        let spawned =
            std::thread::Builder::new().name(format!("pareco-run-{id}")).spawn(move || thread.execute(job));
        if let Err(e) = spawned {
            run.finish(Err(JobError::Failed(format!("cannot start the run: {e}"))));
        }
        Some(id)
    }

    /// The run `id`, if there is one.
    pub(super) fn get(&self, id: u64) -> Option<Arc<Run>> {
        self.runs.lock().unwrap_or_else(|p| p.into_inner()).get(&id).cloned()
    }

    /// Every run, oldest first.
    pub(super) fn all(&self) -> Vec<Arc<Run>> {
        self.runs.lock().unwrap_or_else(|p| p.into_inner()).values().cloned().collect()
    }
}
