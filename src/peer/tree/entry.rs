//! One entry of a tree, and the open files behind entries: a directory
//! opened to act on its entries by name, and the state of an entry or an
//! open file.

use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};

use rustix::fs::{AtFlags, Mode, OFlags, Timespec, Timestamps, UTIME_OMIT};
use rustix::io::Errno;

use crate::codec::{Kind, Meta, Mtime, RelPath, Stat};
use crate::peer::error::{Error, Result};

/// A directory of a tree, opened to work on several of its entries by
/// name. Names are single components, so nothing is resolved through
/// them, and the last component is never followed.
#[derive(Debug)]
pub struct Parent {
    pub(super) fd: OwnedFd,
    /// Its path in the tree, for messages.
    pub(super) dir: RelPath,
}

impl Parent {
    fn shown(&self, name: &[u8]) -> RelPath {
        self.dir.join(name).unwrap_or_default()
    }

    /// The state of entry `name`, as [`Tree::lstat`](super::Tree::lstat) gives it.
    pub fn stat(&self, name: &[u8]) -> Result<Option<Stat>> {
        Ok(self.status(name)?.map(|(stat, _)| stat))
    }

    /// [`stat`](Parent::stat), with the system's `lstat` it came from.
    pub fn status(&self, name: &[u8]) -> Result<Option<(Stat, rustix::fs::Stat)>> {
        match status_at(&self.fd, name) {
            Ok(status) => Ok(status),
            Err(Errno::NOENT) | Err(Errno::NOTDIR) => Ok(None),
            Err(e) => Err(Error::from_errno(e, &self.shown(name), "stat")),
        }
    }

    /// The system's `lstat` of entry `name` if it is a regular file; `None`
    /// for anything else, missing or not.
    pub fn file_status(&self, name: &[u8]) -> Option<rustix::fs::Stat> {
        let st = rustix::fs::statat(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW).ok()?;
        (rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::RegularFile).then_some(st)
    }

    /// Creates entry `name` as a new, empty file (mode 0600) to become
    /// `file` (named in messages, since `name` is a temporary's); fails if
    /// anything is there.
    pub fn create_new(&self, name: &[u8], file: &RelPath) -> Result<File> {
        let flags = OFlags::RDWR | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = rustix::fs::openat(&self.fd, name, flags, Mode::from(0o600))
            .map_err(|e| Error::from_errno(e, file, "create the temporary file of"))?;
        Ok(File::from(fd))
    }

    /// Removes entry `name`, a file or symlink; a missing one is fine.
    pub fn remove(&self, name: &[u8]) -> Result<()> {
        match rustix::fs::unlinkat(&self.fd, name, AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => Ok(()),
            Err(e) => Err(Error::from_errno(e, &self.shown(name), "remove")),
        }
    }

    /// Renames entry `from` to `to`, replacing `to`.
    pub fn rename(&self, from: &[u8], to: &[u8]) -> Result<()> {
        rustix::fs::renameat(&self.fd, from, &self.fd, to)
            .map_err(|e| Error::from_errno(e, &self.shown(to), "rename into place"))
    }
}

/// `lstat` of entry `name` of directory `dir` (with its target if it is a
/// symlink); `None` for anything but a file, directory or symlink.
pub(crate) fn stat_at<P: rustix::path::Arg + Copy>(
    dir: &OwnedFd,
    name: P,
) -> rustix::io::Result<Option<Stat>> {
    Ok(status_at(dir, name)?.map(|(stat, _)| stat))
}

/// [`stat_at`], with the system's `lstat` it came from.
pub(crate) fn status_at<P: rustix::path::Arg + Copy>(
    dir: &OwnedFd,
    name: P,
) -> rustix::io::Result<Option<(Stat, rustix::fs::Stat)>> {
    let st = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)?;
    let file_type = rustix::fs::FileType::from_raw_mode(st.st_mode);
    let target = if file_type == rustix::fs::FileType::Symlink {
        Some(rustix::fs::readlinkat(dir, name, Vec::new())?.into_bytes())
    } else {
        None
    };
    Ok(stat_of(&st, target).map(|stat| (stat, st)))
}

/// The identity of a regular file with more than one name: its device and
/// inode numbers, the same for all its names.
pub(crate) type FileId = (u64, u64);

/// The [`FileId`] of the entry `st` describes, when it is a regular file
/// with other names (hard links).
pub(crate) fn linked_id(st: &rustix::fs::Stat) -> Option<FileId> {
    let file_type = rustix::fs::FileType::from_raw_mode(st.st_mode);
    let linked = file_type == rustix::fs::FileType::RegularFile && st.st_nlink > 1;
    linked.then_some((st.st_dev, st.st_ino))
}

pub(super) fn stat_of(st: &rustix::fs::Stat, target: Option<Vec<u8>>) -> Option<Stat> {
    let kind = match rustix::fs::FileType::from_raw_mode(st.st_mode) {
        rustix::fs::FileType::RegularFile => Kind::File,
        rustix::fs::FileType::Directory => Kind::Dir,
        rustix::fs::FileType::Symlink => Kind::Symlink,
        _ => return None,
    };
    Some(Stat {
        kind,
        size: if kind == Kind::File { st.st_size as u64 } else { 0 },
        meta: Meta {
            mode: st.st_mode & 0o7777,
            mtime: Mtime { secs: st.st_mtime, nanos: st.st_mtime_nsec as u32 },
            extra: None,
        },
        target: target.map(serde_bytes::ByteBuf::from),
    })
}

/// `fd` as a [`File`] if it is a regular file. Files are opened with
/// `O_NONBLOCK` so that a FIFO named by a peer cannot hang the open; a
/// regular file ignores the flag.
pub(super) fn regular_file(fd: OwnedFd, rel: &RelPath) -> Result<File> {
    let st = rustix::fs::fstat(&fd).map_err(|e| Error::from_errno(e, rel, "stat"))?;
    if rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::RegularFile {
        return Err(Error::denied(format!("{rel}: not a regular file")));
    }
    Ok(File::from(fd))
}

/// Sets permission bits and mtime on an open file.
pub fn set_file_meta(file: &File, meta: &Meta, rel: &RelPath) -> Result<()> {
    rustix::fs::fchmod(file.as_fd(), Mode::from(meta.mode & 0o7777))
        .map_err(|e| Error::from_errno(e, rel, "set permissions"))?;
    rustix::fs::futimens(file.as_fd(), &timestamps(meta.mtime))
        .map_err(|e| Error::from_errno(e, rel, "set mtime"))
}

/// The state of an open file, as [`Tree::lstat`](super::Tree::lstat) would give it, and
/// whether it still has a name (false once it has been unlinked since it
/// was opened: deleted, or replaced by a rename over it).
pub fn file_stat(file: &File, rel: &RelPath) -> Result<(Stat, bool)> {
    let st = rustix::fs::fstat(file.as_fd()).map_err(|e| Error::from_errno(e, rel, "stat"))?;
    let stat = Stat {
        kind: Kind::File,
        size: st.st_size as u64,
        meta: Meta {
            mode: st.st_mode & 0o7777,
            mtime: Mtime { secs: st.st_mtime, nanos: st.st_mtime_nsec as u32 },
            extra: None,
        },
        target: None,
    };
    Ok((stat, st.st_nlink > 0))
}

/// How many names an open file has (hard links; 0 once all are gone).
pub fn link_count(file: &File, rel: &RelPath) -> Result<u64> {
    let st = rustix::fs::fstat(file.as_fd()).map_err(|e| Error::from_errno(e, rel, "stat"))?;
    Ok(st.st_nlink as u64)
}

pub(super) fn timestamps(mtime: Mtime) -> Timestamps {
    Timestamps {
        last_access: Timespec { tv_sec: 0, tv_nsec: UTIME_OMIT },
        last_modification: Timespec { tv_sec: mtime.secs, tv_nsec: mtime.nanos as _ },
    }
}
