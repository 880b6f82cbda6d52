//! The system calls on one entry for owners and extended attributes: on an
//! open file by its descriptor, or on any entry (a symlink included) by a
//! path through `/proc/self/fd` of its open parent directory, with the
//! calls that never follow the last component (`lchown`, `l*xattr`).

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

use rustix::fs::{AtFlags, Gid, Uid, XattrFlags, CWD};
use rustix::io::{Errno, Result};

/// An entry to act on.
pub enum At<'a> {
    /// An open file (or directory).
    Fd(BorrowedFd<'a>),
    /// Entry `name` of the open directory `dir` (`.`: the directory).
    Path(CString),
}

impl<'a> At<'a> {
    /// Entry `name` (a single component, or `.`) of the directory `dir`,
    /// which must stay open while this is used.
    pub fn entry(dir: BorrowedFd<'a>, name: &[u8]) -> Result<At<'a>> {
        let mut path = format!("/proc/self/fd/{}/", dir.as_raw_fd()).into_bytes();
        path.extend_from_slice(name);
        CString::new(path).map(At::Path).map_err(|_| Errno::INVAL)
    }

    /// The entry's owner and group.
    pub fn owner(&self) -> Result<(u32, u32)> {
        let st = match self {
            At::Fd(fd) => rustix::fs::fstat(fd)?,
            At::Path(path) => rustix::fs::statat(CWD, path.as_c_str(), AtFlags::SYMLINK_NOFOLLOW)?,
        };
        Ok((st.st_uid, st.st_gid))
    }

    /// Sets the owner and group (`None`: left as they are).
    pub fn chown(&self, uid: Option<u32>, gid: Option<u32>) -> Result<()> {
        let uid = uid.map(Uid::from_raw);
        let gid = gid.map(Gid::from_raw);
        match self {
            At::Fd(fd) => rustix::fs::fchown(fd, uid, gid),
            At::Path(path) => rustix::fs::chownat(CWD, path.as_c_str(), uid, gid, AtFlags::SYMLINK_NOFOLLOW),
        }
    }

    /// The names of the entry's attributes (that this process may see),
    /// NUL-terminated back to back; at most `most` bytes of them
    /// (`RANGE` beyond).
    pub fn list(&self, most: usize) -> Result<Vec<u8>> {
        let mut buf = vec![0u8; most];
        let len = match self {
            At::Fd(fd) => rustix::fs::flistxattr(fd, &mut buf[..])?,
            At::Path(path) => rustix::fs::llistxattr(path.as_c_str(), &mut buf[..])?,
        };
        buf.truncate(len);
        Ok(buf)
    }

    /// The value of attribute `name`, if it is at most `most` bytes
    /// (`RANGE` beyond).
    pub fn get(&self, name: &[u8], most: usize) -> Result<Vec<u8>> {
        let name = CString::new(name).map_err(|_| Errno::INVAL)?;
        let mut buf = vec![0u8; most];
        let len = match self {
            At::Fd(fd) => rustix::fs::fgetxattr(fd, name.as_c_str(), &mut buf[..])?,
            At::Path(path) => rustix::fs::lgetxattr(path.as_c_str(), name.as_c_str(), &mut buf[..])?,
        };
        buf.truncate(len);
        Ok(buf)
    }

    /// Sets attribute `name` to `value`.
    pub fn set(&self, name: &[u8], value: &[u8]) -> Result<()> {
        let name = CString::new(name).map_err(|_| Errno::INVAL)?;
        match self {
            At::Fd(fd) => rustix::fs::fsetxattr(fd, name.as_c_str(), value, XattrFlags::empty()),
            At::Path(path) => {
                rustix::fs::lsetxattr(path.as_c_str(), name.as_c_str(), value, XattrFlags::empty())
            }
        }
    }

    /// Removes attribute `name`; one already gone is fine.
    pub fn remove(&self, name: &[u8]) -> Result<()> {
        let name = CString::new(name).map_err(|_| Errno::INVAL)?;
        let removed = match self {
            At::Fd(fd) => rustix::fs::fremovexattr(fd, name.as_c_str()),
            At::Path(path) => rustix::fs::lremovexattr(path.as_c_str(), name.as_c_str()),
        };
        match removed {
            Err(Errno::NODATA) => Ok(()),
            other => other,
        }
    }
}

impl<'a> From<&'a std::fs::File> for At<'a> {
    fn from(file: &'a std::fs::File) -> At<'a> {
        At::Fd(file.as_fd())
    }
}
