//! Removing a whole directory tree, level by level through descriptors,
//! so that no tree is too deep for it, with a bounded number of them open;
//! never the root itself.

use crate::codec::{ErrorKind, Kind, RelPath};
use crate::peer::error::{Error, Result};
use crate::peer::temp::is_temp_name;

use super::Tree;

/// Directories held open at once while a tree is removed. A subdirectory
/// found deeper is first moved up into the directory being removed (by
/// `renameat` between descriptors held, so nothing is resolved by path),
/// so a tree of any depth costs at most this many descriptors: one per
/// level made a client exhaust the server's with a deep enough tree.
const OPEN_LEVELS: usize = 64;

#[cfg(test)]
static MOST_OPEN: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

impl Tree {
    /// Removes whatever is at `rel`, a whole directory tree included
    /// (symlinks inside are removed, never followed). Iterative, so no tree
    /// is too deep for it; never the root itself.
    pub fn remove_all(&self, rel: &RelPath) -> Result<()> {
        if rel.is_root() {
            return Err(Error::denied("the root itself cannot be removed"));
        }
        match self.lstat(rel)? {
            None => return Ok(()),
            Some(st) if st.kind != Kind::Dir => return self.remove_file(rel),
            Some(_) => {}
        }
        // The directories being emptied, each open, the deepest last, with
        // its name in the one before it and its subdirectories still to
        // remove. Opened by descriptor, level by level, so no tree is too
        // deep for it.
        let mut stack = vec![emptying(self.open_dir_strict(rel)?, Vec::new(), rel)?];
        let mut moved = 0u64;
        while let Some((_, _, subdirs)) = stack.last_mut() {
            if let Some(child) = subdirs.pop() {
                let deepest = &stack[stack.len() - 1].0;
                if stack.len() >= OPEN_LEVELS {
                    let up = move_up(deepest, &child, &stack[0].0, &mut moved, rel)?;
                    stack[0].2.push(up);
                    continue;
                }
                let opened = deepest.open_dir_strict(&child)?;
                let next = emptying(opened, child.as_bytes().to_vec(), rel)?;
                stack.push(next);
                #[cfg(test)]
                MOST_OPEN.fetch_max(stack.len(), std::sync::atomic::Ordering::Relaxed);
                continue;
            }
            let Some((_, name, _)) = stack.pop() else { break };
            match stack.last() {
                Some((parent, _, _)) => {
                    let name = RelPath::new(name).map_err(|e| Error::denied(e.to_string()))?;
                    parent.remove_empty_dir(&name)?;
                }
                None => {
                    self.remove_empty_dir(rel)?;
                }
            }
        }
        Ok(())
    }

    /// Removes the temporary files ([`is_temp_name`]) directly in the
    /// directory `rel`, except those named in `keep`. A directory that is
    /// gone has none.
    pub fn remove_temps(&self, rel: &RelPath, keep: &[Vec<u8>]) -> Result<()> {
        let opened;
        let dir = if rel.is_root() {
            self
        } else {
            opened = match self.open_dir_strict(rel) {
                Err(e) if e.kind == ErrorKind::NotFound => return Ok(()),
                other => other?,
            };
            &opened
        };
        for name in dir.child_names(rel, |name| is_temp_name(name) && !keep.iter().any(|k| k == name))? {
            let temp = rel.join(&name).map_err(|e| Error::denied(e.to_string()))?;
            match dir.unlink_file(&name) {
                Err(e) if e == rustix::io::Errno::NOENT || e == rustix::io::Errno::ISDIR => {}
                other => other.map_err(|e| Error::from_errno(e, &temp, "remove"))?,
            }
        }
        Ok(())
    }

    /// Unlinks the non-directory `name` in this directory.
    fn unlink_file(&self, name: &[u8]) -> rustix::io::Result<()> {
        rustix::fs::unlinkat(&self.dir, name, rustix::fs::AtFlags::empty())
    }

    /// Names in this directory that `wanted` accepts (`rel` only names it
    /// in errors); the others are never copied.
    fn child_names(&self, rel: &RelPath, wanted: impl Fn(&[u8]) -> bool) -> Result<Vec<Vec<u8>>> {
        let mut names = Vec::new();
        let dir =
            rustix::fs::Dir::read_from(&self.dir).map_err(|e| Error::from_errno(e, rel, "read directory"))?;
        for entry in dir {
            let entry = entry.map_err(|e| Error::from_errno(e, rel, "read directory"))?;
            let name = entry.file_name().to_bytes();
            if name != b"." && name != b".." && wanted(name) {
                names.push(name.to_vec());
            }
        }
        Ok(names)
    }
}

/// Moves the subdirectory `child` of `from` into `to` (the directory
/// being removed), under a name nothing there has; returns that name.
fn move_up(from: &Tree, child: &RelPath, to: &Tree, moved: &mut u64, rel: &RelPath) -> Result<RelPath> {
    loop {
        *moved += 1;
        let name = format!(".pareco-removing-{moved}");
        let flags = rustix::fs::RenameFlags::NOREPLACE;
        let moved =
            match rustix::fs::renameat_with(&from.dir, child.as_bytes(), &to.dir, name.as_str(), flags) {
                // A file system without RENAME_NOREPLACE (NFS, CIFS): the name
                // is looked up first instead.
                Err(rustix::io::Errno::INVAL) => match to.lstat(&relative(&name)?)? {
                    Some(_) => Err(rustix::io::Errno::EXIST),
                    None => rustix::fs::renameat(&from.dir, child.as_bytes(), &to.dir, name.as_str()),
                },
                other => other,
            };
        match moved {
            Ok(()) => return relative(&name),
            Err(rustix::io::Errno::EXIST) => continue,
            Err(e) => return Err(Error::from_errno(e, rel, "move a deep directory up to remove it")),
        }
    }
}

fn relative(name: &str) -> Result<RelPath> {
    RelPath::new(name).map_err(|e| Error::denied(e.to_string()))
}

/// A directory of [`Tree::remove_all`] with everything but its
/// subdirectories removed, and those subdirectories.
fn emptying(dir: Tree, name: Vec<u8>, rel: &RelPath) -> Result<(Tree, Vec<u8>, Vec<RelPath>)> {
    let mut subdirs = Vec::new();
    for child in dir.child_names(rel, |_| true)? {
        let child = RelPath::new(child).map_err(|e| Error::denied(e.to_string()))?;
        match dir.lstat(&child)? {
            Some(st) if st.kind == Kind::Dir => subdirs.push(child),
            _ => dir.remove_file(&child)?,
        }
    }
    Ok((dir, name, subdirs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustix::fs::{Mode, OFlags};

    #[test]
    fn remove_all_takes_any_depth_and_never_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let tree = Tree::open(dir.path()).unwrap();
        // 3000 levels: deeper than any path can name from the root.
        let mut fd = rustix::fs::open(dir.path(), OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()).unwrap();
        rustix::fs::mkdirat(&fd, "top", Mode::from(0o755)).unwrap();
        fd = rustix::fs::openat(&fd, "top", OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()).unwrap();
        for _ in 0..3000 {
            rustix::fs::mkdirat(&fd, "d", Mode::from(0o755)).unwrap();
            let file =
                rustix::fs::openat(&fd, "f", OFlags::CREATE | OFlags::WRONLY, Mode::from(0o644)).unwrap();
            drop(file);
            rustix::fs::symlinkat("/", &fd, "up").unwrap();
            fd = rustix::fs::openat(&fd, "d", OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()).unwrap();
        }
        drop(fd);
        let root = RelPath::root();
        assert_eq!(tree.remove_all(&root).unwrap_err().kind, crate::codec::ErrorKind::Denied);
        tree.remove_all(&RelPath::new("top").unwrap()).unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        // With at most OPEN_LEVELS directories open at once, not 3000.
        let most = MOST_OPEN.load(std::sync::atomic::Ordering::Relaxed);
        assert!(most <= OPEN_LEVELS, "{most} directories open at once");
    }

    #[test]
    fn removing_never_follows_a_symlink_swapped_in_on_the_way() {
        let dir = tempfile::tempdir().unwrap();
        let tree = Tree::open(dir.path()).unwrap();
        std::fs::create_dir_all(dir.path().join("keep/deep")).unwrap();
        std::fs::write(dir.path().join("keep/deep/important"), b"x").unwrap();
        std::fs::write(dir.path().join("precious"), b"y").unwrap();
        // `x` was a directory when it was looked at; now it is a symlink to
        // the root (what a lying peer's racing requests can make of it).
        std::os::unix::fs::symlink(".", dir.path().join("x")).unwrap();
        for path in ["x", "x/keep"] {
            let opened = tree.open_dir_strict(&RelPath::new(path).unwrap());
            assert!(opened.is_err(), "{path} opened through a symlink");
        }
        // Removing `x` removes the symlink alone; `x/keep` is not reachable.
        tree.remove_all(&RelPath::new("x/keep").unwrap()).unwrap_err();
        tree.remove_all(&RelPath::new("x").unwrap()).unwrap();
        assert!(dir.path().join("keep/deep/important").exists() && dir.path().join("precious").exists());
    }
}
