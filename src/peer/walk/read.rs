//! Reading one directory of a walk: its entries, sorted by name, each with
//! its `lstat`, read through the directory's own descriptor.
//!
//! The directory is opened from the tree's root with `openat2` refusing
//! every symlink on the way (`RESOLVE_NO_SYMLINKS`) and any step out of the
//! tree (`RESOLVE_BENEATH`), and its entries are stated with `statat` on
//! that descriptor without following them. So a directory swapped for a
//! symlink while the walk runs (by a client that may write into the tree)
//! fails to open and becomes a problem; it is never followed.

use std::ffi::CString;
use std::os::fd::OwnedFd;

use rustix::fs::{FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

use crate::codec::{Kind, RelPath, Stat};
use crate::peer::cache::FileKey;
use crate::peer::extra::{At, Extras};
use crate::peer::filter::Filter;
use crate::peer::recent::RecentKeys;
use crate::peer::temp::is_temp_name;
use crate::peer::tree::{linked_id, stat_at, status_at, FileId, Tree};

/// Problems named one by one per directory; the rest are counted.
const PROBLEMS_PER_DIR: usize = 64;

const STRICT: ResolveFlags =
    ResolveFlags::BENEATH.union(ResolveFlags::NO_SYMLINKS).union(ResolveFlags::NO_MAGICLINKS);

/// One directory as read: its own metadata, its listed entries by path,
/// sorted by name (with `links`, a file with other names with its identity), the
/// entries that could not be read, and the names of special files that
/// were skipped.
#[derive(Debug, Default)]
pub(super) struct DirRead {
    pub own: Option<Stat>,
    pub entries: Vec<(RelPath, Stat, Option<FileId>)>,
    pub problems: Vec<String>,
    pub skipped: Vec<RelPath>,
}

/// Reads the directory `dir` of `tree`: excluded entries and pareco's own
/// temporary files are left out before they are even stated. A directory
/// that is gone (deleted while the walk ran) reads as empty, without a
/// problem; any other failure is a problem. With `extras`, each entry (and
/// the directory itself) gets the owner, group and attributes they keep;
/// with `links`, each file with other names its [`FileId`]. The keys of
/// small files are noted in `recent`.
pub(super) fn read_dir(
    tree: &Tree,
    filter: &Filter,
    extras: Option<&Extras>,
    links: bool,
    dir: &RelPath,
    recent: Option<&RecentKeys>,
) -> DirRead {
    let mut read = DirRead::default();
    if let Err(e) = read_into(tree, filter, extras, links, dir, &mut read, recent) {
        if e != Errno::NOENT {
            read.problems.push(format!("{dir}: cannot read directory: {}", std::io::Error::from(e)));
        }
    }
    if read.problems.len() > PROBLEMS_PER_DIR {
        let more = read.problems.len() - PROBLEMS_PER_DIR;
        read.problems.truncate(PROBLEMS_PER_DIR);
        read.problems.push(format!("{dir}: {more} more entries could not be read"));
    }
    // All in one directory: by path is by name.
    read.entries.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    read
}

fn read_into(
    tree: &Tree,
    filter: &Filter,
    extras: Option<&Extras>,
    links: bool,
    dir: &RelPath,
    read: &mut DirRead,
    recent: Option<&RecentKeys>,
) -> Result<(), Errno> {
    let fd = rustix::fs::openat2(
        tree.fd(),
        dir.as_path(),
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
        STRICT,
    )?;
    read.own = stat_at(&fd, c".")?;
    if let (Some(extras), Some(own)) = (extras, read.own.as_mut()) {
        add_extra(extras, &fd, b".", own, dir, &mut read.problems);
    }
    let mut keys = Vec::new();
    for (name, file_type) in names(&fd)? {
        let bytes = name.as_bytes();
        let Ok(path) = dir.join(bytes) else { continue };
        if is_temp_name(bytes) || filter.excludes(&path) {
            continue;
        }
        if is_special(file_type) {
            read.skipped.push(path);
            continue;
        }
        match status_at(&fd, &name) {
            Ok(Some((mut stat, st))) => {
                if let Some(extras) = extras {
                    add_extra(extras, &fd, bytes, &mut stat, &path, &mut read.problems);
                }
                if recent.is_some_and(|r| stat.kind == Kind::File && r.wants(stat.size)) {
                    keys.push((read.entries.len(), FileKey::of(&st)));
                }
                let id = if links { linked_id(&st) } else { None };
                read.entries.push((path, stat, id));
            }
            // A FIFO, socket or device the directory entry did not tell.
            Ok(None) if file_type == FileType::Unknown => read.skipped.push(path),
            // Gone meanwhile (or replaced by a special file): not listed.
            Ok(None) | Err(Errno::NOENT) => {}
            Err(e) => read.problems.push(format!("{path}: {}", std::io::Error::from(e))),
        }
    }
    if let Some(recent) = recent {
        recent.note(keys.into_iter().map(|(i, key)| (&read.entries[i].0, key)));
    }
    Ok(())
}

/// Gives `stat` of entry `name` of the directory `fd` its owner, group and
/// attributes; one it cannot read them for is listed without them (its
/// destination's are left alone) and is a problem.
fn add_extra(
    extras: &Extras,
    fd: &OwnedFd,
    name: &[u8],
    stat: &mut Stat,
    path: &RelPath,
    problems: &mut Vec<String>,
) {
    use std::os::fd::AsFd;
    let read = At::entry(fd.as_fd(), name)
        .map_err(|e| std::io::Error::from(e).to_string())
        .and_then(|at| extras.read(&at, true));
    match read {
        Ok(extra) => stat.meta.extra = Some(Box::new(extra)),
        Err(why) => problems.push(format!("{path}: {why}")),
    }
}

/// The names in the directory (`.` and `..` left out) with the type the
/// directory entry gives.
fn names(fd: &OwnedFd) -> Result<Vec<(CString, FileType)>, Errno> {
    let mut names = Vec::new();
    for entry in rustix::fs::Dir::read_from(fd)? {
        let entry = entry?;
        let name = entry.file_name();
        if name == c"." || name == c".." {
            continue;
        }
        names.push((name.to_owned(), entry.file_type()));
    }
    Ok(names)
}

fn is_special(file_type: FileType) -> bool {
    !matches!(file_type, FileType::RegularFile | FileType::Directory | FileType::Symlink | FileType::Unknown)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_swapped_for_a_symlink_is_a_problem_never_followed() {
        let outer = tempfile::tempdir().unwrap();
        let root = outer.path().join("root");
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        std::fs::write(outer.path().join("outside-secret"), b"x").unwrap();
        let tree = Tree::open(&root).unwrap();
        let filter = Filter::default();
        let first = read_dir(&tree, &filter, None, false, &RelPath::root(), None);
        assert_eq!(first.entries.len(), 1);
        // Between reading the parent and reading `a`, a client swaps `a`
        // for a symlink out of the tree (to `/`, and to the parent of the
        // root), and `a/b`'s parent for one too.
        std::fs::rename(root.join("a"), root.join("moved")).unwrap();
        std::os::unix::fs::symlink("/", root.join("a")).unwrap();
        std::os::unix::fs::symlink("../..", root.join("moved/b2")).unwrap();
        for dir in ["a", "moved/b2"] {
            let read = read_dir(&tree, &filter, None, false, &RelPath::new(dir).unwrap(), None);
            assert!(read.entries.is_empty(), "{dir}: listed {:?}", read.entries);
            assert_eq!(read.problems.len(), 1, "{dir}: {:?}", read.problems);
        }
    }
}
