//! [`Tree`]: a directory that every file-system operation of a peer goes
//! through, and that nothing escapes.
//!
//! A `Tree` holds an open directory descriptor. Paths below it are resolved
//! by the kernel with `openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS)`, so
//! `..`, absolute symlinks and relative symlinks that climb out of the tree
//! fail with `EXDEV` instead of being followed. Operations on an entry itself
//! (stat, unlink, rename, mkdir, symlink, utimes) resolve its parent that way
//! and then act on the last component with the `*at` calls, never following
//! it. The same type serves the server's root and the client's local
//! directory, so both sides behave alike.
//!
//! - `entry`: a directory opened to act on its entries by name, and the
//!   state of an entry or an open file.
//! - `remove`: removing a whole directory tree.

mod entry;
mod link;
mod remove;

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

use crate::codec::{Kind, Mtime, RelPath, Stat};

use super::cache::FileKey;
use super::error::{Error, Result};
use super::extra::At;
use super::recent::RecentKeys;
pub use entry::{file_stat, link_count, set_file_meta, Parent};
pub(crate) use entry::{linked_id, stat_at, status_at, FileId};
use entry::{regular_file, stat_of, timestamps};

const RESOLVE: ResolveFlags = ResolveFlags::BENEATH.union(ResolveFlags::NO_MAGICLINKS);

/// An open directory that confines every path resolved below it.
#[derive(Debug)]
pub struct Tree {
    dir: OwnedFd,
}

impl Tree {
    /// Opens the directory at `path` (a local path, may be relative).
    pub fn open(path: &Path) -> io::Result<Tree> {
        let dir =
            rustix::fs::open(path, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?;
        Ok(Tree { dir })
    }

    /// The tree at `rel` below this one, which must stay inside it; with
    /// `create`, missing directories on the way are made.
    pub fn subtree(&self, rel: &RelPath, create: bool) -> Result<Tree> {
        if create {
            self.make_dirs(rel)?;
        }
        let dir = rustix::fs::openat2(
            &self.dir,
            rel.as_path(),
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
            RESOLVE,
        )
        .map_err(|e| Error::from_errno(e, rel, "open directory"))?;
        Ok(Tree { dir })
    }

    /// The directory at `rel` below this one, reached through no symlink at
    /// all (`RESOLVE_NO_SYMLINKS`, and `O_NOFOLLOW` at the end): what
    /// removing a tree descends through, so that a directory swapped for a
    /// symlink meanwhile fails to open instead of leading elsewhere.
    pub fn open_dir_strict(&self, rel: &RelPath) -> Result<Tree> {
        let dir = rustix::fs::openat2(
            &self.dir,
            rel.as_path(),
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
            RESOLVE.union(ResolveFlags::NO_SYMLINKS),
        )
        .map_err(|e| Error::from_errno(e, rel, "open directory"))?;
        Ok(Tree { dir })
    }

    /// The directory's descriptor, for resolving paths beneath it.
    pub fn fd(&self) -> &OwnedFd {
        &self.dir
    }

    /// A path that names this very directory: `/proc/self/fd/N` resolves
    /// to the descriptor we hold.
    pub fn proc_path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/self/fd/{}", self.dir.as_raw_fd()))
    }

    /// Opens an existing regular file for reading, refusing a symlink.
    pub fn open_read(&self, rel: &RelPath) -> Result<File> {
        let fd = rustix::fs::openat2(
            &self.dir,
            rel.as_path(),
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
            Mode::empty(),
            RESOLVE,
        )
        .map_err(|e| Error::from_errno(e, rel, "open"))?;
        regular_file(fd, rel)
    }

    /// Opens (`create`: or creates, with mode 0600) a regular file for
    /// reading and writing, never through a symlink, never truncating.
    pub fn open_write(&self, rel: &RelPath, create: bool) -> Result<File> {
        let mut flags = OFlags::RDWR | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let mut mode = Mode::empty();
        if create {
            flags |= OFlags::CREATE;
            mode = Mode::from(0o600);
        }
        let fd = rustix::fs::openat2(&self.dir, rel.as_path(), flags | OFlags::NONBLOCK, mode, RESOLVE)
            .map_err(|e| Error::from_errno(e, rel, "open for writing"))?;
        regular_file(fd, rel)
    }

    /// The directory holding `rel`, opened beneath the tree, and the name
    /// of `rel` in it. The root itself has no parent and is refused.
    pub fn parent_of<'a>(&self, rel: &'a RelPath) -> Result<(Parent, &'a [u8])> {
        let (dir, name) = rel
            .split_last()
            .ok_or_else(|| Error::denied(format!("{rel}: the root itself cannot be changed")))?;
        let fd = rustix::fs::openat2(
            &self.dir,
            dir.as_path(),
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
            RESOLVE,
        )
        .map_err(|e| Error::from_errno(e, &dir, "open directory"))?;
        Ok((Parent { fd, dir }, name))
    }

    /// Runs `act` on entry `rel` itself (the root: the tree's directory),
    /// never following it, for what has no `*at` call (extended
    /// attributes; see [`At`]).
    pub fn with_entry<T>(&self, rel: &RelPath, act: impl FnOnce(&At) -> T) -> Result<T> {
        use std::os::fd::AsFd;
        let parent;
        let (dir, name) = match self.parent_of(rel) {
            Ok((found, name)) => {
                parent = found;
                (parent.fd.as_fd(), name)
            }
            Err(_) if rel.is_root() => (self.dir.as_fd(), &b"."[..]),
            Err(e) => return Err(e),
        };
        let at = At::entry(dir, name).map_err(|e| Error::from_errno(e, rel, "open"))?;
        Ok(act(&at))
    }

    /// `lstat`: the entry's state, or `None` when nothing (or something
    /// other than a file, directory or symlink) is there.
    pub fn lstat(&self, rel: &RelPath) -> Result<Option<Stat>> {
        if rel.is_root() {
            let st = rustix::fs::fstat(&self.dir).map_err(|e| Error::from_errno(e, rel, "stat"))?;
            return Ok(stat_of(&st, None));
        }
        match self.parent_of(rel) {
            Ok((parent, name)) => parent.stat(name),
            Err(e) if e.kind == crate::codec::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// [`lstat`](Tree::lstat) of many paths, opening each parent directory
    /// once for a run of paths that share it (as a listing's do); the keys
    /// of small files are noted in `recent`.
    pub fn lstat_all(&self, rels: &[RelPath], recent: Option<&RecentKeys>) -> Result<Vec<Option<Stat>>> {
        let mut keys = Vec::new();
        let mut last: Option<Parent> = None;
        let mut out = Vec::with_capacity(rels.len());
        for rel in rels {
            let Some((dir, name)) = rel.split_last_bytes() else {
                out.push(self.lstat(rel)?);
                continue;
            };
            if last.as_ref().is_none_or(|p| p.dir.as_bytes() != dir) {
                last = match self.parent_of(rel) {
                    Ok((parent, _)) => Some(parent),
                    Err(e) if e.kind == crate::codec::ErrorKind::NotFound => None,
                    Err(e) => return Err(e),
                };
            }
            let status = match &last {
                Some(parent) if parent.dir.as_bytes() == dir => parent.status(name)?,
                _ => None,
            };
            if let (Some(recent), Some((stat, st))) = (recent, &status) {
                if stat.kind == crate::codec::Kind::File && recent.wants(stat.size) {
                    keys.push((rel, FileKey::of(st)));
                }
            }
            out.push(status.map(|(stat, _)| stat));
        }
        if let Some(recent) = recent {
            recent.note(keys);
        }
        Ok(out)
    }

    /// Makes `rel` and every missing directory above it (mode 0755, later
    /// corrected by the sync). An existing directory is fine.
    pub fn make_dirs(&self, rel: &RelPath) -> Result<()> {
        let mut done = RelPath::root();
        for component in rel.as_bytes().split(|&b| b == b'/').filter(|c| !c.is_empty()) {
            done = done.join(component).map_err(|e| Error::denied(e.to_string()))?;
            self.make_dir(&done)?;
        }
        Ok(())
    }

    /// Makes sure `rel` is a directory, replacing any non-directory on the
    /// way (a destination whose file became a directory at the source).
    pub fn replace_with_dirs(&self, rel: &RelPath) -> Result<()> {
        if self.lstat(rel)?.is_some_and(|st| st.kind == Kind::Dir) {
            return Ok(());
        }
        let mut done = RelPath::root();
        for component in rel.as_bytes().split(|&b| b == b'/') {
            done = done.join(component).map_err(|e| Error::denied(e.to_string()))?;
            match self.lstat(&done)? {
                Some(st) if st.kind == Kind::Dir => continue,
                Some(_) => self.remove_all(&done)?,
                None => {}
            }
            let (parent, name) = self.parent_of(&done)?;
            match rustix::fs::mkdirat(&parent.fd, name, Mode::from(0o755)) {
                Ok(()) => {}
                // Made meanwhile by another task, or a FIFO, socket or
                // device that lstat does not report: replace the latter.
                Err(Errno::EXIST) if parent.stat(name)?.is_some_and(|st| st.kind == Kind::Dir) => {}
                Err(Errno::EXIST) => {
                    self.remove_file(&done)?;
                    self.make_dir(&done)?;
                }
                Err(e) => return Err(Error::from_errno(e, &done, "make directory")),
            }
        }
        Ok(())
    }

    /// Makes one directory. Whatever already exists there is left for the
    /// next step to judge: opening through it fails cleanly if it is not a
    /// directory or leads out of the tree.
    pub fn make_dir(&self, rel: &RelPath) -> Result<()> {
        let (parent, name) = self.parent_of(rel)?;
        match rustix::fs::mkdirat(&parent.fd, name, Mode::from(0o755)) {
            Ok(()) | Err(Errno::EXIST) => Ok(()),
            Err(e) => Err(Error::from_errno(e, rel, "make directory")),
        }
    }

    /// Makes `rel` a symlink to `target`.
    pub fn symlink(&self, target: &[u8], rel: &RelPath) -> Result<()> {
        let (parent, name) = self.parent_of(rel)?;
        rustix::fs::symlinkat(target, &parent.fd, name).map_err(|e| Error::from_errno(e, rel, "make symlink"))
    }

    /// Renames `from` to `to` (both below this tree), replacing `to`.
    pub fn rename(&self, from: &RelPath, to: &RelPath) -> Result<()> {
        let (from_parent, from_name) = self.parent_of(from)?;
        let (to_parent, to_name) = self.parent_of(to)?;
        rustix::fs::renameat(&from_parent.fd, from_name, &to_parent.fd, to_name)
            .map_err(|e| Error::from_errno(e, to, "rename into place"))
    }

    /// Removes a file or symlink; a missing entry is fine.
    pub fn remove_file(&self, rel: &RelPath) -> Result<()> {
        let (parent, name) = self.parent_of(rel)?;
        match rustix::fs::unlinkat(&parent.fd, name, AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => Ok(()),
            Err(e) => Err(Error::from_errno(e, rel, "remove")),
        }
    }

    /// Removes an empty directory. Returns false, and leaves it, when it is
    /// not empty.
    pub fn remove_empty_dir(&self, rel: &RelPath) -> Result<bool> {
        let (parent, name) = self.parent_of(rel)?;
        match rustix::fs::unlinkat(&parent.fd, name, AtFlags::REMOVEDIR) {
            Ok(()) | Err(Errno::NOENT) => Ok(true),
            Err(Errno::NOTEMPTY) | Err(Errno::EXIST) => Ok(false),
            Err(e) => Err(Error::from_errno(e, rel, "remove directory")),
        }
    }

    /// Sets the permission bits of a file or directory; the setuid and
    /// setgid bits of anything but a directory only with `keep_setid`
    /// (what the entry is, not what the caller says it is, decides).
    pub fn set_mode(&self, rel: &RelPath, mode: u32, keep_setid: bool) -> Result<()> {
        if rel.is_root() {
            return rustix::fs::fchmod(&self.dir, Mode::from(mode & 0o7777))
                .map_err(|e| Error::from_errno(e, rel, "set permissions"));
        }
        // chmodat would follow a symlink put there meanwhile: pin the entry
        // itself with O_PATH|O_NOFOLLOW, refuse a symlink, and change the
        // inode the descriptor holds through its /proc name.
        let fd = rustix::fs::openat2(
            &self.dir,
            rel.as_path(),
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
            RESOLVE,
        )
        .map_err(|e| Error::from_errno(e, rel, "set permissions"))?;
        let st = rustix::fs::fstat(&fd).map_err(|e| Error::from_errno(e, rel, "stat"))?;
        let file_type = rustix::fs::FileType::from_raw_mode(st.st_mode);
        if file_type == rustix::fs::FileType::Symlink {
            return Err(Error::denied(format!("{rel}: is a symlink; its permissions are not set")));
        }
        let mode = if keep_setid || file_type == rustix::fs::FileType::Directory {
            mode
        } else {
            mode & !crate::peer::SETID_BITS
        };
        // Already so (a re-sync's directories): no change, and no new ctime.
        if st.st_mode & 0o7777 == mode & 0o7777 {
            return Ok(());
        }
        rustix::fs::chmod(format!("/proc/self/fd/{}", fd.as_raw_fd()), Mode::from(mode & 0o7777))
            .map_err(|e| Error::from_errno(e, rel, "set permissions"))
    }

    /// Sets the mtime of any entry, a symlink itself included.
    pub fn set_mtime(&self, rel: &RelPath, mtime: Mtime) -> Result<()> {
        let times = timestamps(mtime);
        let result = if rel.is_root() {
            rustix::fs::futimens(&self.dir, &times)
        } else {
            let (parent, name) = self.parent_of(rel)?;
            rustix::fs::utimensat(&parent.fd, name, &times, AtFlags::SYMLINK_NOFOLLOW)
        };
        result.map_err(|e| Error::from_errno(e, rel, "set mtime"))
    }
}
