//! Walking a [`Tree`] into a stream of entry batches.
//!
//! The walk is an async task that puts entries in order and sends them in
//! batches as it goes, so the transfer starts before a large tree has been
//! read to the end. Directories are read (`read`) on the blocking pool,
//! several at once and ahead of the order: the next directories the order
//! will need are read first, at most [`READ_AHEAD`] of them before they are
//! needed. Waiting for the receiver costs no thread, so a client that stops
//! reading holds nothing but this task's memory, and dropping the receiver
//! ends the walk.
//!
//! Entries come parent first, each directory's entries sorted by name,
//! right after it. Filters are applied here: excluded directories are not
//! even read, and a directory that is not selected itself is listed only
//! once something below it is (so its selected contents have a parent to
//! go into). The root itself is never an entry; its metadata rides in the
//! first batch. With hard links asked for (`-H`), each listed file that has
//! other names gets its link group: a number given to the first listed
//! name of the file and carried by every later one.

mod read;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::codec::{Entry, Kind, Meta, RelPath};

use super::extra::Extras;
use super::filter::Filter;
use super::recent::RecentKeys;
use super::tree::{FileId, Tree};
use super::work::FileWork;
use read::{read_dir, DirRead};

/// A batch is sent once it has this many entries (a little more when
/// held-back parent directories join it)...
pub const BATCH_ENTRIES: usize = 512;
/// ...or about this many bytes of paths and link targets, so that its
/// `Listing` frame stays well below the 1 MiB header limit.
pub const BATCH_BYTES: usize = 256 << 10;
/// A batch is sent at the latest this long after its first entry, and
/// before waiting for a directory that is still being read.
const BATCH_DELAY: Duration = Duration::from_millis(20);
/// Directories read ahead of the order (being read, or read and waiting),
/// which bounds both the blocking threads and the memory a walk takes.
pub const READ_AHEAD: usize = 16;

/// One piece of a listing: entries, and the paths that could not be read
/// (each a one-line message), which make the listing incomplete.
#[derive(Debug, Default)]
pub struct Batch {
    /// Entries in listing order (parents before their contents).
    pub entries: Vec<Entry>,
    /// One line ("PATH: reason") per entry that could not be read.
    pub problems: Vec<String>,
    /// The metadata of the walked directory itself (in the first batch).
    pub root: Option<Meta>,
    /// The listing ended with this error (a remote walk's session was
    /// lost, say): it is incomplete, and the error is the run's.
    pub error: Option<super::Error>,
}

/// The receiving end of a walk; closed after the last batch.
pub type Listing = mpsc::Receiver<Batch>;

/// Starts walking `tree`, its directories read within the role's share
/// of file work, returning the batches as they are made; with `extras`,
/// entries carry the owners, groups and attributes they keep; with
/// `links`, files with other names carry their link group; the keys of
/// small files are noted in `recent`.
pub fn spawn_walk(
    tree: Arc<Tree>,
    filter: Filter,
    extras: Option<Arc<Extras>>,
    links: bool,
    work: FileWork,
    recent: Option<Arc<RecentKeys>>,
) -> Listing {
    let (tx, rx) = mpsc::channel(4);
    let walk = tokio::spawn(Walk::new(tree, filter, extras, links, work, tx.clone(), recent).run());
    tokio::spawn(report_if_stopped(walk, tx));
    rx
}

/// The end of a listing is its channel closing, so a walk that stopped
/// short (its task panicked) would read as complete, and `--delete` act on
/// it: then one more batch, with a problem, goes before the channel closes.
async fn report_if_stopped(walk: JoinHandle<()>, tx: mpsc::Sender<Batch>) {
    if let Err(e) = walk.await {
        let problem = format!("the listing stopped short: {e}");
        let _ = tx.send(Batch { problems: vec![problem], ..Batch::default() }).await;
    }
}

/// A directory being listed: the entries of it not yet emitted.
struct Frame {
    entries: std::vec::IntoIter<(RelPath, crate::codec::Stat, Option<FileId>)>,
    /// Subdirectories (in order) not yet read ahead.
    unread: std::collections::VecDeque<RelPath>,
}

struct Walk {
    tree: Arc<Tree>,
    filter: Arc<Filter>,
    extras: Option<Arc<Extras>>,
    tx: mpsc::Sender<Batch>,
    batch: Batch,
    bytes: usize,
    started: Instant,
    /// Directories met but not yet listed because nothing below them was
    /// selected so far (only with include patterns), nearest the root first.
    held: Vec<Entry>,
    ahead: std::collections::HashMap<RelPath, JoinHandle<DirRead>>,
    work: FileWork,
    /// Hard links asked for: the link group of each file with other names
    /// listed so far.
    links: Option<std::collections::HashMap<FileId, u64>>,
    /// Where the keys of small files are noted, if anywhere.
    recent: Option<Arc<RecentKeys>>,
}

impl Drop for Walk {
    /// Stops the directory reads still running or waiting when the walk
    /// ends early (its receiver is gone: the session ended).
    fn drop(&mut self) {
        for read in self.ahead.values() {
            read.abort();
        }
    }
}

impl Walk {
    fn new(
        tree: Arc<Tree>,
        filter: Filter,
        extras: Option<Arc<Extras>>,
        links: bool,
        work: FileWork,
        tx: mpsc::Sender<Batch>,
        recent: Option<Arc<RecentKeys>>,
    ) -> Walk {
        Walk {
            tree,
            filter: Arc::new(filter),
            extras,
            tx,
            batch: Batch::default(),
            bytes: 0,
            started: Instant::now(),
            held: Vec::new(),
            ahead: std::collections::HashMap::new(),
            work,
            links: links.then(std::collections::HashMap::new),
            recent,
        }
    }

    /// Walks the whole tree; stops early when the receiver is gone.
    async fn run(mut self) {
        let root = RelPath::root();
        let Some(read) = self.read(&root).await else { return };
        self.batch.root = read.own.as_ref().map(|st| st.meta.clone());
        let mut stack = vec![self.frame(read)];
        self.read_ahead(&mut stack);
        while let Some(frame) = stack.last_mut() {
            let Some((path, stat, id)) = frame.entries.next() else {
                stack.pop();
                continue;
            };
            let is_dir = stat.kind == Kind::Dir;
            if is_dir && frame.unread.front() == Some(&path) {
                // Not read ahead: it is read now, not a second time later.
                frame.unread.pop_front();
            }
            let (listed, path) = if is_dir { (path.clone(), Some(path)) } else { (path, None) };
            if !self.emit(Entry { path: listed, stat, link: None }, id).await {
                return;
            }
            if let Some(path) = path {
                let Some(read) = self.read(&path).await else { return };
                let frame = self.frame(read);
                stack.push(frame);
                self.read_ahead(&mut stack);
            }
        }
        self.flush(true).await;
    }

    /// The frame of a directory just read; its problems join the batch.
    fn frame(&mut self, read: DirRead) -> Frame {
        self.bytes += read.problems.iter().map(|p| p.len() + 8).sum::<usize>();
        self.batch.problems.extend(read.problems);
        for path in read.skipped {
            tracing::warn!("{path}: skipped: not a regular file, directory or symlink");
        }
        let unread = read
            .entries
            .iter()
            .filter(|(_, stat, _)| stat.kind == Kind::Dir)
            .map(|(path, _, _)| path.clone())
            .collect();
        Frame { entries: read.entries.into_iter(), unread }
    }

    /// Starts reading the next directories the order will need, deepest
    /// frame first, while fewer than [`READ_AHEAD`] are read ahead.
    fn read_ahead(&mut self, stack: &mut [Frame]) {
        for frame in stack.iter_mut().rev() {
            while self.ahead.len() < READ_AHEAD {
                let Some(dir) = frame.unread.pop_front() else { break };
                let read = self.start_reading(&dir);
                self.ahead.insert(dir, read);
            }
        }
    }

    /// Starts reading `dir`, as one step of the role's file work.
    fn start_reading(&self, dir: &RelPath) -> JoinHandle<DirRead> {
        let (tree, filter, extras, dir, work) =
            (self.tree.clone(), self.filter.clone(), self.extras.clone(), dir.clone(), self.work.clone());
        let recent = self.recent.clone();
        let links = self.links.is_some();
        tokio::spawn(async move {
            let read = work.run({
                let dir = dir.clone();
                move || Ok(read_dir(&tree, &filter, extras.as_deref(), links, &dir, recent.as_deref()))
            });
            read.await
                .unwrap_or_else(|e| DirRead { problems: vec![format!("{dir}: {e}")], ..DirRead::default() })
        })
    }

    /// The contents of `dir`: read ahead, or read now. Sends the batch so
    /// far first if the read is not done yet. `None` when the receiver is
    /// gone.
    async fn read(&mut self, dir: &RelPath) -> Option<DirRead> {
        let handle = match self.ahead.remove(dir) {
            Some(handle) => handle,
            None => self.start_reading(dir),
        };
        if !handle.is_finished() && !self.flush(false).await {
            return None;
        }
        Some(handle.await.unwrap_or_else(|e| DirRead {
            problems: vec![format!("{dir}: reading the directory failed: {e}")],
            ..DirRead::default()
        }))
    }

    /// Adds `entry` (a file with other names: `id`) to the batch, or holds
    /// a directory back (see [`Walk::held`]), and sends the batch when it is
    /// due. False when the receiver is gone.
    async fn emit(&mut self, mut entry: Entry, id: Option<FileId>) -> bool {
        self.held.retain(|dir| entry.path.starts_with(&dir.path) && entry.path != dir.path);
        if !self.filter.selects(&entry.path) {
            if entry.stat.kind == Kind::Dir {
                self.held.push(entry);
            }
            return true;
        }
        if let (Some(groups), Some(id)) = (self.links.as_mut(), id) {
            let next = groups.len() as u64;
            entry.link = Some(*groups.entry(id).or_insert(next));
        }
        if self.batch.entries.is_empty() {
            self.started = Instant::now();
        }
        for entry in std::mem::take(&mut self.held).into_iter().chain([entry]) {
            self.bytes += entry_bytes(&entry);
            self.batch.entries.push(entry);
        }
        let full = self.batch.entries.len() >= BATCH_ENTRIES || self.bytes >= BATCH_BYTES;
        if full || self.started.elapsed() >= BATCH_DELAY {
            return self.flush(false).await;
        }
        true
    }

    /// Sends the batch if it holds anything (`last`: even if empty, when
    /// nothing was sent yet, so the root's metadata arrives). False when
    /// the receiver is gone.
    async fn flush(&mut self, last: bool) -> bool {
        let empty = self.batch.entries.is_empty() && self.batch.problems.is_empty();
        if empty && !(last && self.batch.root.is_some()) {
            return true;
        }
        self.bytes = 0;
        self.tx.send(std::mem::take(&mut self.batch)).await.is_ok()
    }
}

/// Roughly the bytes an entry takes in a `Listing` frame.
fn entry_bytes(entry: &Entry) -> usize {
    entry.path.as_bytes().len() + entry.stat.target.as_ref().map_or(0, |t| t.len()) + 48 + extra_bytes(entry)
}

/// Roughly the bytes of an entry's owner, group and attributes.
fn extra_bytes(entry: &Entry) -> usize {
    let Some(extra) = entry.stat.meta.extra.as_deref() else { return 0 };
    let id_bytes = |id: &Option<crate::codec::Id>| {
        id.as_ref().map_or(0, |id| 8 + id.name.as_ref().map_or(0, |n| n.as_bytes().len()))
    };
    let xattrs = match &extra.xattrs {
        Some(crate::codec::Xattrs::Listed(list)) => {
            list.attrs().iter().map(|a| a.name.len() + a.value.len() + 8).sum()
        }
        _ => 40,
    };
    id_bytes(&extra.owner) + id_bytes(&extra.group) + xattrs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_walk_that_panics_ends_with_a_problem_not_a_complete_listing() {
        let (tx, mut rx) = mpsc::channel(4);
        let sender = tx.clone();
        let walk = tokio::spawn(async move {
            let _ = sender.send(Batch::default()).await;
            panic!("a bug in the walk");
        });
        tokio::spawn(report_if_stopped(walk, tx));
        assert!(rx.recv().await.unwrap().problems.is_empty());
        let last = rx.recv().await.expect("a batch that says the listing is incomplete");
        assert_eq!(last.problems.len(), 1, "{:?}", last.problems);
        assert!(last.problems[0].contains("stopped short"), "{:?}", last.problems);
        assert!(rx.recv().await.is_none());
    }
}
