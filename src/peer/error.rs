//! The error a peer operation returns: a wire [`ErrorKind`] and one line
//! that names the path at fault. The same value travels in an `Error` frame,
//! so a remote failure reads exactly like a local one.

use std::io;

use rustix::io::Errno;

pub use crate::codec::printable;
use crate::codec::{ErrorKind, RelPath};

/// The result of a peer operation.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A failed peer operation: its kind, and one line naming the path at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Error {
    /// What went wrong, as an `Error` frame carries it.
    pub kind: ErrorKind,
    /// One line for people, naming the path at fault.
    pub message: String,
}

impl Error {
    /// An error of `kind` with `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error { kind, message: message.into() }
    }

    /// An error the other side sent: its text is made [`printable`].
    pub fn from_peer(kind: ErrorKind, message: &str) -> Self {
        Error::new(kind, printable(message))
    }

    /// A `Denied` error: not allowed, such as a path that leads outside the
    /// root.
    pub fn denied(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Denied, message)
    }

    /// Does this error mean the destination takes no more files (full or
    /// read-only)?
    pub fn stops_destination(&self) -> bool {
        matches!(self.kind, ErrorKind::NoSpace | ErrorKind::ReadOnly)
    }

    /// An `Io` error: any other failure of the file system.
    pub fn io(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Io, message)
    }

    /// Maps a failed system call on `rel` to an error naming it; an escape
    /// from the tree becomes `Denied`, a missing entry `NotFound`, a full
    /// file system `NoSpace` and a read-only one `ReadOnly`.
    pub fn from_errno(errno: Errno, rel: &RelPath, what: &str) -> Self {
        match errno {
            Errno::XDEV => Error::denied(format!("{rel}: leads outside the synced root")),
            Errno::LOOP => Error::denied(format!("{rel}: is a symlink, which is not followed")),
            Errno::NOENT => Error::new(ErrorKind::NotFound, format!("{what} {rel}: not found")),
            Errno::NOTDIR => {
                Error::new(ErrorKind::NotFound, format!("{what} {rel}: a parent is not a directory"))
            }
            Errno::NOSPC => Error::new(ErrorKind::NoSpace, format!("{what} {rel}: no space left on device")),
            Errno::DQUOT => Error::new(ErrorKind::NoSpace, format!("{what} {rel}: disk quota exceeded")),
            Errno::ROFS => Error::new(ErrorKind::ReadOnly, format!("{what} {rel}: read-only file system")),
            errno => Error::io(format!("{what} {rel}: {}", describe(errno))),
        }
    }

    /// Maps a failed I/O operation on `rel` as [`from_errno`](Error::from_errno)
    /// does; an error without an OS error code is `Io`.
    pub fn from_io(err: io::Error, rel: &RelPath, what: &str) -> Self {
        match err.raw_os_error() {
            Some(code) => Error::from_errno(Errno::from_raw_os_error(code), rel, what),
            None => Error::io(format!("{what} {rel}: {err}")),
        }
    }
}

/// What an error code means, as a user reads it: "permission denied", not
/// "Permission denied (os error 13)".
fn describe(errno: Errno) -> String {
    let text = io::Error::from(errno).to_string();
    let text = text.split(" (os error").next().unwrap_or(&text);
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => format!("error {}", errno.raw_os_error()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_errors_read_plainly_and_name_the_path() {
        let rel = RelPath::new("a/b").unwrap();
        let e = Error::from_errno(Errno::ACCESS, &rel, "create the temporary file of");
        assert_eq!(
            (e.kind, e.message.as_str()),
            (ErrorKind::Io, "create the temporary file of a/b: permission denied")
        );
        let e = Error::from_io(io::Error::from_raw_os_error(libc::EIO), &rel, "read");
        assert_eq!(e.message, "read a/b: input/output error");
    }

    #[test]
    fn peer_text_loses_its_power_over_the_terminal() {
        let evil = "ok \u{1b}]0;pwned\u{7}\u{1b}[2J\r\nfake line \u{202e}txt.exe \u{9b}31m ünï";
        let shown = printable(evil);
        assert!(!shown.chars().any(|c| c.is_control()), "{shown:?}");
        assert!(!shown.contains('\u{202e}'));
        assert!(shown.starts_with("ok \\u{1b}]0;pwned\\u{7}"), "{shown}");
        assert!(shown.ends_with(" ünï"));
        assert_eq!(printable("plain text: 100% fine"), "plain text: 100% fine");
    }
}
