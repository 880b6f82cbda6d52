//! Hard links (`-H`): another name for a regular file of the tree, made
//! beneath the root like every other change. Both names are resolved from
//! the root with their parents confined ([`Tree::parent_of`]); the link is
//! made on the last components with `linkat` without following them, so a
//! symlink in the tree is never followed out of it.

use rustix::fs::{AtFlags, FileType};
use rustix::io::Errno;

use crate::codec::RelPath;
use crate::peer::error::{Error, Result};
use crate::peer::temp::temp_name;

use super::Tree;

impl Tree {
    /// Makes `path` another name of the regular file `target`, replacing
    /// what is at `path` (a file, symlink or special file: a directory
    /// must be cleared first) through a temporary name and a rename, so
    /// `path` is never missing. Does nothing, and returns false, when
    /// `path` is that file already.
    pub fn hard_link(&self, target: &RelPath, path: &RelPath) -> Result<bool> {
        let (from, from_name) = self.parent_of(target)?;
        let st = rustix::fs::statat(&from.fd, from_name, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| Error::from_errno(e, target, "stat"))?;
        if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
            return Err(Error::denied(format!("{path}: cannot link to {target}: not a regular file")));
        }
        let (to, name) = self.parent_of(path)?;
        match rustix::fs::statat(&to.fd, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(have) if have.st_dev == st.st_dev && have.st_ino == st.st_ino => return Ok(false),
            Ok(_) | Err(Errno::NOENT) => {}
            Err(e) => return Err(Error::from_errno(e, path, "stat")),
        }
        let temp = temp_name(name);
        match rustix::fs::unlinkat(&to.fd, temp.as_slice(), AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => {}
            Err(e) => return Err(Error::from_errno(e, path, "clear the temporary name of")),
        }
        rustix::fs::linkat(&from.fd, from_name, &to.fd, temp.as_slice(), AtFlags::empty())
            .map_err(|e| Error::from_errno(e, path, "make hard link"))?;
        if let Err(e) = rustix::fs::renameat(&to.fd, temp.as_slice(), &to.fd, name) {
            let _ = rustix::fs::unlinkat(&to.fd, temp.as_slice(), AtFlags::empty());
            return Err(Error::from_errno(e, path, "rename into place"));
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use super::*;

    #[test]
    fn links_stay_beneath_the_root_and_are_made_once() {
        let outer = tempfile::tempdir().unwrap();
        let root = outer.path().join("root");
        let outside = outer.path().join("outside");
        std::fs::create_dir_all(root.join("d")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("secret"), b"s").unwrap();
        std::fs::write(root.join("f"), b"f").unwrap();
        std::fs::write(root.join("d/copy"), b"f").unwrap();
        std::os::unix::fs::symlink(&outside, root.join("out")).unwrap();
        std::os::unix::fs::symlink(outside.join("secret"), root.join("to-secret")).unwrap();
        let tree = Tree::open(&root).unwrap();
        let rel = |p: &str| RelPath::new(p).unwrap();
        // Through a symlink out of the tree, either way: refused.
        assert!(tree.hard_link(&rel("out/secret"), &rel("x")).is_err());
        assert!(tree.hard_link(&rel("f"), &rel("out/planted")).is_err());
        assert!(!outside.join("planted").exists() && !root.join("x").exists());
        // A symlink as the target is not followed: refused, not linked.
        assert!(tree.hard_link(&rel("to-secret"), &rel("y")).is_err());
        assert!(!root.join("y").exists());
        assert_eq!(std::fs::metadata(outside.join("secret")).unwrap().nlink(), 1);
        // A separate copy becomes a link, then nothing more is done.
        assert!(tree.hard_link(&rel("f"), &rel("d/copy")).unwrap());
        let ino = |p: &str| std::fs::metadata(root.join(p)).unwrap().ino();
        assert_eq!(ino("d/copy"), ino("f"));
        assert!(!tree.hard_link(&rel("f"), &rel("d/copy")).unwrap());
    }
}
