//! Walking a [`Tree`] into a stream of entry batches.
//!
//! The walk runs on a blocking thread (jwalk reads directories in parallel)
//! and sends batches as it goes, so the transfer starts before a large tree
//! has been read to the end. Entries come parent first, in sorted order.
//! Filters are applied here: excluded directories are not even read, and a
//! directory that is not selected itself is listed only once something below
//! it is (so its selected contents have a parent to go into).

use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::codec::{Entry, Kind, Meta, Mtime, RelPath, Stat};

use super::filter::Filter;
use super::tree::Tree;

/// A batch is sent once it has this many entries (a little more when
/// held-back parent directories join it).
pub const BATCH_ENTRIES: usize = 512;
/// A batch is sent at the latest this long after its first entry.
const BATCH_DELAY: Duration = Duration::from_millis(20);

/// One piece of a listing: entries, and the paths that could not be read
/// (each a one-line message), which make the transfer incomplete.
#[derive(Debug, Default)]
pub struct Batch {
    pub entries: Vec<Entry>,
    pub problems: Vec<String>,
}

/// The receiving end of a walk; closed after the last batch.
pub type Listing = mpsc::Receiver<Batch>;

/// Is `name` one of pareco's own temporary files (never listed)?
pub fn is_temp_name(name: &[u8]) -> bool {
    name.starts_with(b".") && name.ends_with(super::TEMP_SUFFIX.as_bytes())
}

/// Starts walking `tree`, returning the batches as they are made.
pub fn spawn_walk(tree: Arc<Tree>, filter: Filter) -> Listing {
    let (tx, rx) = mpsc::channel(4);
    tokio::task::spawn_blocking(move || walk(&tree, &filter, &tx));
    rx
}

fn walk(tree: &Tree, filter: &Filter, tx: &mpsc::Sender<Batch>) {
    let root = tree.proc_path();
    let prune_root = root.clone();
    let prune_filter = filter.clone();
    let walker =
        jwalk::WalkDir::new(&root).sort(true).skip_hidden(false).follow_links(false).process_read_dir(
            move |_, dir, _, children| {
                children.retain(|child| match child {
                    Ok(child) => {
                        let name = child.file_name.as_bytes();
                        if is_temp_name(name) {
                            return false;
                        }
                        relative(&prune_root, &dir.join(&child.file_name))
                            .is_none_or(|rel| !prune_filter.excludes(&rel))
                    }
                    Err(_) => true,
                });
            },
        );

    let mut batch = Batch::default();
    let mut started = Instant::now();
    // Directories met but not yet listed because nothing below them was
    // selected so far (only with include patterns), nearest the root first.
    let mut pending: Vec<Entry> = Vec::new();
    for item in walker {
        let entry = match item {
            Ok(entry) if entry.depth == 0 => continue,
            Ok(entry) => entry,
            Err(e) => {
                batch.problems.push(walk_error(&root, &e));
                continue;
            }
        };
        let path = entry.path();
        let Some(rel) = relative(&root, &path) else { continue };
        let stat = match stat_of(&path, entry.file_type()) {
            Ok(Some(stat)) => stat,
            Ok(None) => {
                tracing::warn!("{rel}: skipped: not a regular file, directory or symlink");
                continue;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                batch.problems.push(format!("{rel}: {e}"));
                continue;
            }
        };
        if let Some(e) = &entry.read_children_error {
            batch.problems.push(format!("{rel}: cannot read directory: {e}"));
        }
        pending.retain(|dir| rel.starts_with(&dir.path) && rel != dir.path);
        let entry = Entry { path: rel, stat };
        if filter.selects(&entry.path) {
            if batch.entries.is_empty() {
                started = Instant::now();
            }
            batch.entries.append(&mut pending);
            batch.entries.push(entry);
        } else if entry.stat.kind == Kind::Dir {
            pending.push(entry);
        }
        let full = batch.entries.len() >= BATCH_ENTRIES;
        let due = !batch.entries.is_empty() && started.elapsed() >= BATCH_DELAY;
        if full || due {
            if tx.blocking_send(std::mem::take(&mut batch)).is_err() {
                return;
            }
            started = Instant::now();
        }
    }
    if !batch.entries.is_empty() || !batch.problems.is_empty() {
        let _ = tx.blocking_send(batch);
    }
}

fn relative(root: &Path, path: &Path) -> Option<RelPath> {
    let rel = path.strip_prefix(root).ok()?;
    RelPath::new(rel.as_os_str().as_bytes().to_vec()).ok()
}

fn walk_error(root: &Path, error: &jwalk::Error) -> String {
    let shown =
        error.path().and_then(|p| relative(root, p)).map_or_else(|| "?".to_owned(), |p| p.to_string());
    let cause = error.io_error().map_or_else(|| error.to_string(), |e| e.to_string());
    format!("{shown}: {cause}")
}

fn stat_of(path: &Path, file_type: std::fs::FileType) -> std::io::Result<Option<Stat>> {
    use std::os::unix::fs::MetadataExt;
    let kind = if file_type.is_file() {
        Kind::File
    } else if file_type.is_dir() {
        Kind::Dir
    } else if file_type.is_symlink() {
        Kind::Symlink
    } else {
        return Ok(None);
    };
    let md = std::fs::symlink_metadata(path)?;
    let target = if kind == Kind::Symlink {
        Some(serde_bytes::ByteBuf::from(std::fs::read_link(path)?.into_os_string().into_vec()))
    } else {
        None
    };
    use std::os::unix::ffi::OsStringExt;
    Ok(Some(Stat {
        kind,
        size: if kind == Kind::File { md.size() } else { 0 },
        meta: Meta {
            mode: md.mode() & 0o7777,
            mtime: Mtime { secs: md.mtime(), nanos: md.mtime_nsec() as u32 },
        },
        target,
    }))
}
