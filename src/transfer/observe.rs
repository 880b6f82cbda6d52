//! Watching a run while it goes: the phase it is in, how far it got, whether
//! its totals are final, and what was done to each entry.
//!
//! Two ways to watch, both cheap when nobody does:
//! - poll [`Counters::snapshot`](super::Counters::snapshot) (a few atomic
//!   loads) for a [`Snapshot`]: phase, files and bytes done and total;
//! - give the counters a [`Watch`] ([`Counters::watched`](super::Counters::watched)):
//!   it is told of every file, directory and symlink the run is done with,
//!   as an [`EntryEvent`]. Without one, the engine builds no event at all.
//!
//! The counters themselves ([`super::stats`]) stay the source of the final
//! report; a watcher only hears about entries as they finish.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;

use serde::Serialize;

use crate::codec::{Kind, Meta, RelPath, Stat};

/// What a run is doing. The engine lists, compares and sends at once, so
/// the phases overlap in time; a run is in the first of these that holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// The source listing is still streaming in (files it already listed
    /// are compared and sent meanwhile).
    Listing,
    /// Listed in full; no file data is on its way at this moment: digests
    /// are being compared, or metadata fixed.
    Comparing,
    /// Listed in full; file data is on its way to the destination.
    Sending,
    /// `--delete`: removing what the source does not have.
    Deleting,
    /// Giving directories their metadata, clearing temporaries of earlier
    /// interrupted runs.
    Finishing,
    /// The run is over.
    Done,
}

impl Phase {
    /// The phase's name, as `--json-events` writes it.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Listing => "listing",
            Phase::Comparing => "comparing",
            Phase::Sending => "sending",
            Phase::Deleting => "deleting",
            Phase::Finishing => "finishing",
            Phase::Done => "done",
        }
    }
}

/// Where a run stands, read from its counters at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Snapshot {
    /// What the run is doing.
    pub phase: Phase,
    /// The source was listed in full and every listed file counted: the
    /// totals grow no more. Until then they are lower bounds ("≥").
    pub totals_final: bool,
    /// Regular files the run is done with (however it ended for them).
    pub files_done: u64,
    /// Regular files listed so far.
    pub files_total: u64,
    /// Bytes of files the run is done with, plus the chunks delivered of
    /// files in progress.
    pub bytes_done: u64,
    /// Bytes of the files listed so far.
    pub bytes_total: u64,
    /// File data sent so far (payload; part of `bytes_done`).
    pub bytes_sent: u64,
}

/// What was done to one entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Outcome {
    /// The destination had no such entry (or one of another kind), and now
    /// has it. A file sends `chunks_sent` of its `chunks` (fewer when a
    /// partial file of an interrupted run held some).
    Created {
        /// Chunks sent.
        chunks_sent: u64,
        /// Chunks of the file.
        chunks: u64,
    },
    /// The destination had it with other contents (a symlink: another
    /// target); `chunks_sent` of `chunks` were sent.
    Updated {
        /// Chunks sent.
        chunks_sent: u64,
        /// Chunks of the file.
        chunks: u64,
    },
    /// Same contents; only permissions or mtime were set.
    Metadata,
    /// Removed from the destination (`--delete`).
    Deleted,
    /// Could not be synced (or deleted); `why` is the error.
    Failed {
        /// The error, as logged.
        why: String,
    },
    /// Vanished from the source during the run (removed from the
    /// destination too with `--delete`).
    Vanished,
    /// Already in place: nothing was done.
    Unchanged,
}

/// An entry the run is done with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryEvent {
    /// Where it is, relative to the root of the transfer.
    pub path: RelPath,
    /// What it is (for a deleted entry: what it was).
    pub kind: Kind,
    /// What was done to it.
    pub outcome: Outcome,
    /// A file's size (in the source; for a deleted file, in the destination).
    pub size: u64,
    /// What differed between the source's entry and the destination's
    /// before the run (all false when the destination had none).
    pub changed: Changed,
}

/// Which attributes of an entry differed from what the destination had.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Changed {
    /// The size (files).
    pub size: bool,
    /// The modification time.
    pub mtime: bool,
    /// The permission bits.
    pub mode: bool,
}

impl Changed {
    /// What differs between `want` (the source's) and `have` (the
    /// destination's), if the destination has an entry of the same kind.
    pub fn between(want: &Stat, have: Option<&Stat>) -> Changed {
        match have.filter(|h| h.kind == want.kind) {
            None => Changed::default(),
            Some(have) => Changed {
                size: want.kind == Kind::File && have.size != want.size,
                ..Changed::of_meta(&want.meta, &have.meta)
            },
        }
    }

    fn of_meta(want: &Meta, have: &Meta) -> Changed {
        Changed { size: false, mtime: want.mtime != have.mtime, mode: want.mode != have.mode }
    }
}

impl EntryEvent {
    /// The entry as one line of `--dry-run` output, in the manner of
    /// rsync's `--itemize-changes` (`YXcstpoguax path`, see README), or
    /// `None` when nothing was (or would be) changed. `sent` is `<` for an
    /// upload and `>` for a download.
    pub fn itemized(&self, sent: char) -> Option<String> {
        let kind = match self.kind {
            Kind::File => 'f',
            Kind::Dir => 'd',
            Kind::Symlink => 'L',
        };
        let slash = if self.kind == Kind::Dir { "/" } else { "" };
        let data = if self.kind == Kind::File { sent } else { 'c' };
        let flag = |on: bool, c: char| if on { c } else { '.' };
        let code = match &self.outcome {
            Outcome::Created { .. } => format!("{data}{kind}+++++++++"),
            Outcome::Deleted => "*deleting  ".to_owned(),
            Outcome::Updated { .. } | Outcome::Metadata => {
                let moved = if matches!(self.outcome, Outcome::Updated { .. }) { data } else { '.' };
                let content = matches!(self.outcome, Outcome::Updated { .. });
                let c = &self.changed;
                format!(
                    "{moved}{kind}{}{}{}{}.....",
                    flag(content, 'c'),
                    flag(c.size, 's'),
                    flag(c.mtime, 't'),
                    // A symlink's permission bits mean nothing.
                    flag(c.mode && self.kind != Kind::Symlink, 'p'),
                )
            }
            Outcome::Failed { .. } | Outcome::Vanished | Outcome::Unchanged => return None,
        };
        Some(format!("{code} {}{slash}", self.path))
    }
}

/// Told of every entry a run is done with. Called from the engine's tasks,
/// concurrently: keep it quick (hand the event on, don't block on I/O
/// that may stall).
pub trait Watch: Send + Sync {
    /// `event` is done.
    fn entry(&self, event: &EntryEvent);
}

/// The part of a run's counters that says where it stands, and its
/// watcher; kept inside [`Counters`](super::Counters).
#[derive(Default)]
pub(crate) struct Live {
    stage: AtomicU8,
    listed: AtomicBool,
    /// Listing batches not yet turned into counted work.
    batches_open: AtomicU64,
    /// Requests carrying file data under way.
    sending: AtomicU64,
    pub(crate) bytes_done: AtomicU64,
    pub(crate) files_done: AtomicU64,
    pub(crate) bytes_sent: AtomicU64,
    watch: Option<Arc<dyn Watch>>,
}

impl fmt::Debug for Live {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Live").field("stage", &self.stage).field("watched", &self.watch.is_some()).finish()
    }
}

/// The stages the engine goes through; [`Phase`] is derived from them.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stage {
    Listing = 0,
    Transferring = 1,
    Deleting = 2,
    Finishing = 3,
    Done = 4,
}

impl Live {
    pub(crate) fn watched(watch: Option<Arc<dyn Watch>>) -> Live {
        Live { watch, ..Live::default() }
    }

    /// The watcher, for a new run that carries on this one.
    pub(crate) fn watcher(&self) -> Option<Arc<dyn Watch>> {
        self.watch.clone()
    }

    /// Tells the watcher, if any, of the entry `event` makes (not called,
    /// so nothing built, without one).
    pub(crate) fn tell(&self, event: impl FnOnce() -> EntryEvent) {
        if let Some(watch) = &self.watch {
            watch.entry(&event());
        }
    }

    pub(crate) fn watching(&self) -> bool {
        self.watch.is_some()
    }

    pub(crate) fn set_stage(&self, stage: Stage) {
        self.stage.store(stage as u8, Ordering::Relaxed);
    }

    /// The source listing ended.
    pub(crate) fn set_listed(&self) {
        self.listed.store(true, Ordering::Relaxed);
    }

    pub(crate) fn batch_opened(&self) {
        self.batches_open.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn batch_counted(&self) {
        self.batches_open.fetch_sub(1, Ordering::Relaxed);
    }

    /// Marks a request carrying file data as under way until the guard
    /// is dropped.
    pub(crate) fn sending(&self) -> Sending<'_> {
        self.sending.fetch_add(1, Ordering::Relaxed);
        Sending(&self.sending)
    }

    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// The phase and progress, with the totals from the counters.
    pub(crate) fn snapshot(&self, files_total: u64, bytes_total: u64) -> Snapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let listed = self.listed.load(Ordering::Relaxed);
        let phase = match self.stage.load(Ordering::Relaxed) {
            0 if !listed => Phase::Listing,
            0 | 1 if get(&self.sending) > 0 => Phase::Sending,
            0 | 1 => Phase::Comparing,
            2 => Phase::Deleting,
            3 => Phase::Finishing,
            _ => Phase::Done,
        };
        Snapshot {
            phase,
            totals_final: listed && get(&self.batches_open) == 0,
            files_done: get(&self.files_done),
            files_total,
            bytes_done: get(&self.bytes_done),
            bytes_total,
            bytes_sent: get(&self.bytes_sent),
        }
    }
}

/// A request carrying file data, under way while it lives.
pub(crate) struct Sending<'a>(&'a AtomicU64);

impl Drop for Sending<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_phase_follows_the_stage_and_the_data_under_way() {
        let live = Live::default();
        live.set_stage(Stage::Listing);
        live.batch_opened();
        assert_eq!(live.snapshot(0, 0).phase, Phase::Listing);
        {
            let _sending = live.sending();
            // Still listing: the listing streams while data moves.
            assert_eq!(live.snapshot(0, 0).phase, Phase::Listing);
            live.set_listed();
            live.set_stage(Stage::Transferring);
            assert_eq!(live.snapshot(0, 0).phase, Phase::Sending);
        }
        let now = live.snapshot(3, 10);
        assert_eq!(now.phase, Phase::Comparing);
        // A batch not yet counted: the totals may still grow.
        assert!(!now.totals_final);
        live.batch_counted();
        assert!(live.snapshot(3, 10).totals_final);
        live.set_stage(Stage::Deleting);
        assert_eq!(live.snapshot(3, 10).phase, Phase::Deleting);
        live.set_stage(Stage::Done);
        assert_eq!(live.snapshot(3, 10).phase, Phase::Done);
    }

    #[test]
    fn nothing_is_built_for_nobody() {
        let live = Live::default();
        live.tell(|| unreachable!("no watcher, no event"));
    }
}
