//! [`RelPath`]: a path below a synced root, as it travels on the wire.
//!
//! File names on Linux are bytes, not UTF-8, so a path is a byte string of
//! `/`-separated components. Every `RelPath` that exists has been checked: no
//! leading `/`, no empty, `.` or `..` component, no NUL byte. The empty path
//! names the root itself.

use std::ffi::OsStr;
use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A checked relative path; see the module docs for the rules.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct RelPath(Vec<u8>);

/// Why a byte string is not a [`RelPath`].
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PathError {
    /// It starts with `/`.
    #[error("path {0:?} is absolute")]
    Absolute(String),
    /// It has an empty component (`//`, or a trailing `/`).
    #[error("path {0:?} has an empty component")]
    EmptyComponent(String),
    /// It has a `.` or `..` component.
    #[error("path {0:?} has a '.' or '..' component")]
    DotComponent(String),
    /// It contains a NUL byte.
    #[error("path {0:?} contains a NUL byte")]
    Nul(String),
}

impl RelPath {
    /// The root of the synced tree.
    pub fn root() -> Self {
        RelPath(Vec::new())
    }

    /// Checks `bytes` against the rules in the module docs.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Result<Self, PathError> {
        let bytes = bytes.into();
        if bytes.is_empty() {
            return Ok(RelPath(bytes));
        }
        let shown = || String::from_utf8_lossy(&bytes).into_owned();
        if bytes.contains(&0) {
            return Err(PathError::Nul(shown()));
        }
        if bytes[0] == b'/' {
            return Err(PathError::Absolute(shown()));
        }
        for component in bytes.split(|&b| b == b'/') {
            match component {
                b"" => return Err(PathError::EmptyComponent(shown())),
                b"." | b".." => return Err(PathError::DotComponent(shown())),
                _ => {}
            }
        }
        Ok(RelPath(bytes))
    }

    /// Parses a user-given remote path: leading, trailing and doubled `/`
    /// and `.` components are dropped; `..` and NUL are still refused.
    pub fn from_user(text: &str) -> Result<Self, PathError> {
        let cleaned: Vec<&str> = text.split('/').filter(|c| !c.is_empty() && *c != ".").collect();
        if cleaned.contains(&"..") {
            return Err(PathError::DotComponent(text.to_owned()));
        }
        RelPath::new(cleaned.join("/"))
    }

    /// Whether this is the empty path, the root itself.
    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    /// The path's bytes, as they travel on the wire.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The path as a relative [`Path`] (`.` for the root).
    pub fn as_path(&self) -> &Path {
        if self.0.is_empty() {
            Path::new(".")
        } else {
            Path::new(OsStr::from_bytes(&self.0))
        }
    }

    /// `self/name`, where `name` is one component (no `/`).
    pub fn join(&self, name: &[u8]) -> Result<Self, PathError> {
        let mut bytes = Vec::with_capacity(self.0.len() + 1 + name.len());
        bytes.extend_from_slice(&self.0);
        if !bytes.is_empty() {
            bytes.push(b'/');
        }
        bytes.extend_from_slice(name);
        RelPath::new(bytes)
    }

    /// The bytes of the parent path (empty for a child of the root) and the
    /// last component, without making a path of the parent; `None` for the
    /// root.
    pub fn split_last_bytes(&self) -> Option<(&[u8], &[u8])> {
        if self.0.is_empty() {
            return None;
        }
        Some(match self.0.iter().rposition(|&b| b == b'/') {
            Some(i) => (&self.0[..i], &self.0[i + 1..]),
            None => (&[][..], &self.0[..]),
        })
    }

    /// The parent path and the last component; `None` for the root.
    pub fn split_last(&self) -> Option<(RelPath, &[u8])> {
        self.split_last_bytes().map(|(dir, name)| (RelPath(dir.to_vec()), name))
    }

    /// Every proper ancestor, nearest the root first (the root excluded).
    pub fn ancestors(&self) -> impl Iterator<Item = &[u8]> {
        self.0.iter().enumerate().filter(|(_, &b)| b == b'/').map(|(i, _)| &self.0[..i])
    }

    /// Number of components (0 for the root).
    pub fn depth(&self) -> usize {
        if self.0.is_empty() {
            0
        } else {
            1 + self.0.iter().filter(|&&b| b == b'/').count()
        }
    }

    /// Is `self` equal to `other` or below it?
    pub fn starts_with(&self, other: &RelPath) -> bool {
        other.0.is_empty()
            || (self.0.starts_with(&other.0)
                && (self.0.len() == other.0.len() || self.0[other.0.len()] == b'/'))
    }
}

impl fmt::Display for RelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            f.write_str(".")
        } else {
            write!(f, "{}", String::from_utf8_lossy(&self.0).escape_debug())
        }
    }
}

impl fmt::Debug for RelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RelPath({self})")
    }
}

impl Serialize for RelPath {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for RelPath {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let bytes = serde_bytes::ByteBuf::deserialize(d)?;
        RelPath::new(bytes.into_vec()).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_and_odd_names() {
        for ok in ["", "a", "a/b", "with space/ünï", "new\nline", "..a/b..", ".hidden"] {
            assert!(RelPath::new(ok).is_ok(), "{ok:?}");
        }
    }

    #[test]
    fn refuses_escapes() {
        assert!(matches!(RelPath::new("/etc"), Err(PathError::Absolute(_))));
        assert!(matches!(RelPath::new("a//b"), Err(PathError::EmptyComponent(_))));
        assert!(matches!(RelPath::new("a/"), Err(PathError::EmptyComponent(_))));
        assert!(matches!(RelPath::new("a/../b"), Err(PathError::DotComponent(_))));
        assert!(matches!(RelPath::new(".."), Err(PathError::DotComponent(_))));
        assert!(matches!(RelPath::new("./a"), Err(PathError::DotComponent(_))));
        assert!(matches!(RelPath::new(b"a\0b".to_vec()), Err(PathError::Nul(_))));
    }

    #[test]
    fn user_paths_are_cleaned() {
        assert_eq!(RelPath::from_user("/data//x/./y/").unwrap(), RelPath::new("data/x/y").unwrap());
        assert_eq!(RelPath::from_user("/").unwrap(), RelPath::root());
        assert!(RelPath::from_user("/a/../../etc").is_err());
    }

    #[test]
    fn structure() {
        let p = RelPath::new("a/b/c").unwrap();
        assert_eq!(p.depth(), 3);
        let anc: Vec<&[u8]> = p.ancestors().collect();
        assert_eq!(anc, vec![&b"a"[..], &b"a/b"[..]]);
        let (parent, name) = p.split_last().unwrap();
        assert_eq!(parent, RelPath::new("a/b").unwrap());
        assert_eq!(name, b"c");
        assert!(p.starts_with(&RelPath::new("a/b").unwrap()));
        assert!(!RelPath::new("a/bc").unwrap().starts_with(&RelPath::new("a/b").unwrap()));
        assert!(p.starts_with(&RelPath::root()));
    }
}
