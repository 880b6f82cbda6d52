//! Writing whole entries at the destination: a small file at once, and the
//! directory-level actions (directories, symlinks, hard links, metadata,
//! removals).
//! Neither ever replaces or removes the root itself.

use std::os::unix::fs::FileExt;

use std::fs::File;

use crate::codec::{Action, ErrorKind, Kind, Meta, RelPath, Stat};
use crate::peer::error::{Error, Result};
use crate::peer::extra::At;
use crate::peer::temp::{temp_name, temp_path};
use crate::peer::tree::set_file_meta;
use crate::peer::{Digest, SETID_BITS};

use super::{check_digest, Inner};

impl Inner {
    /// Writes a whole small file (its directory is flushed by the caller,
    /// once for many files, with `fsync`).
    pub(super) fn put_file(&self, path: RelPath, meta: Meta, data: &[u8], digest: Digest) -> Result<()> {
        below_root(&path)?;
        check_digest(&self.settings, data, digest, &path, 0)?;
        if self.settings.inplace {
            self.prepare_file_slot(&path)?;
            if let Some(file) = self.open_in_place(&path)? {
                self.write_data(&file, data, true)
                    .and_then(|()| file.set_len(data.len() as u64))
                    .map_err(|e| Error::from_io(e, &path, "write"))?;
                self.set_meta_of(&file, meta, &path)?;
                return self.sync_file(&file, &path);
            }
        }
        // The common case of many small files, in few system calls: the
        // parent directory is opened once and the rest happens by name.
        let (parent, name) = match self.tree.parent_of(&path) {
            Err(e) if e.kind == ErrorKind::NotFound => {
                if let Some((dir, _)) = path.split_last() {
                    self.tree.replace_with_dirs(&dir)?;
                }
                self.tree.parent_of(&path)?
            }
            other => other?,
        };
        let temp = temp_name(name);
        let file = match parent.create_new(&temp, &path) {
            Ok(file) => file,
            Err(_) => {
                // A stale temporary file (or anything else) is in the way.
                self.make_room(&temp_path(&path)?)?;
                parent.create_new(&temp, &path)?
            }
        };
        let written = self.write_data(&file, data, false).map_err(|e| Error::from_io(e, &path, "write"));
        let finished = written
            .and_then(|()| self.set_meta_of(&file, meta, &path))
            .and_then(|()| self.sync_file(&file, &path));
        if let Err(e) = finished {
            let _ = self.tree.remove_file(&temp_path(&path)?);
            return Err(e);
        }
        // A rename replaces a file, symlink or special file at `name`; only
        // a directory there (the source's file was a directory here) has to
        // go first.
        match parent.rename(&temp, name) {
            Err(_) if parent.stat(name)?.is_some_and(|st| st.kind == Kind::Dir) => {
                if let Err(e) = self.make_room(&path) {
                    let _ = parent.remove(&temp);
                    return Err(e);
                }
                parent.rename(&temp, name)
            }
            other => other,
        }
    }

    /// Writes a whole file's `data` at its start; sparse sessions size the
    /// file first and leave its zeros out (`punch`: the file may hold other
    /// bytes there).
    fn write_data(&self, file: &std::fs::File, data: &[u8], punch: bool) -> std::io::Result<()> {
        if !self.settings.sparse {
            return file.write_all_at(data, 0);
        }
        file.set_len(data.len() as u64)?;
        crate::peer::sparse::write_sparse(file, data, 0, punch)
    }

    /// `lstat` of each path, with the owner, group and attribute digest
    /// the session keeps.
    pub(super) fn probe(&self, paths: &[RelPath]) -> Result<Vec<Option<Stat>>> {
        let mut found = self.tree.lstat_all(paths, self.recent.as_deref())?;
        if let Some(extras) = &self.settings.extras {
            for (rel, stat) in paths.iter().zip(found.iter_mut()) {
                if let Some(stat) = stat {
                    // One that cannot be read compares unequal, and setting it says why.
                    let extra = self.tree.with_entry(rel, |at| extras.read(at, false).ok());
                    stat.meta.extra = extra.ok().flatten().map(Box::new);
                }
            }
        }
        Ok(found)
    }

    /// Gives an open regular file `meta` (as [`Inner::file_meta`] says):
    /// owner, group and attributes first, then permission bits and mtime.
    pub(super) fn set_meta_of(&self, file: &File, meta: Meta, path: &RelPath) -> Result<()> {
        if let (Some(extras), Some(extra)) = (&self.settings.extras, meta.extra.as_deref()) {
            extras.apply(&At::from(file), extra, path, self.settings.keep_setid)?;
        }
        set_file_meta(file, &self.file_meta(meta), path)
    }

    /// `meta` as a regular file here gets it: without the setuid and
    /// setgid bits unless `keep_setid`.
    pub(super) fn file_meta(&self, meta: Meta) -> Meta {
        if self.settings.keep_setid {
            return meta;
        }
        Meta { mode: meta.mode & !SETID_BITS, ..meta }
    }

    pub(super) fn apply(&self, action: &Action) -> Result<()> {
        match action {
            // The root itself only ever gets its metadata set, or its
            // temporary files removed.
            Action::SetMeta { path, kind: Kind::Dir, .. } | Action::RemoveTemps { path }
                if path.is_root() => {}
            other => below_root(other.path())?,
        }
        match action {
            Action::MakeDir { path } => self.tree.replace_with_dirs(path),
            Action::Symlink { path, target, mtime } => {
                match self.tree.lstat(path)? {
                    Some(st) if st.target.as_deref().map(|t| &t[..]) == Some(&target[..]) => {}
                    Some(_) => {
                        self.make_room(path)?;
                        self.tree.symlink(target, path)?;
                    }
                    None => {
                        if let Some((parent, _)) = path.split_last().filter(|(p, _)| !p.is_root()) {
                            self.tree.replace_with_dirs(&parent)?;
                        }
                        self.tree.symlink(target, path)?;
                    }
                }
                self.tree.set_mtime(path, *mtime)
            }
            Action::SetMeta { path, kind, meta } => {
                if let (Some(extras), Some(extra)) = (&self.settings.extras, meta.extra.as_deref()) {
                    let keep_setid = self.settings.keep_setid;
                    self.tree.with_entry(path, |at| extras.apply(at, extra, path, keep_setid))??;
                }
                if *kind != Kind::Symlink {
                    self.tree.set_mode(path, meta.mode, self.settings.keep_setid)?;
                }
                self.tree.set_mtime(path, meta.mtime)
            }
            Action::Link { path, target } => {
                below_root(target)?;
                match self.tree.lstat(path)? {
                    Some(st) if st.kind == Kind::Dir => self.make_room(path)?,
                    Some(_) => {}
                    None => {
                        if let Some((parent, _)) = path.split_last().filter(|(p, _)| !p.is_root()) {
                            self.tree.replace_with_dirs(&parent)?;
                        }
                    }
                }
                self.tree.hard_link(target, path).map(drop)
            }
            Action::Remove { path, kind: Kind::Dir } => self.tree.remove_empty_dir(path).map(drop),
            Action::Remove { path, .. } => self.tree.remove_file(path),
            Action::RemoveTemps { path } => {
                let in_use: Vec<Vec<u8>> = self
                    .lock()
                    .values()
                    .filter_map(|b| b.temp.as_ref())
                    .filter_map(|temp| {
                        temp.split_last().filter(|(dir, _)| dir == path).map(|(_, n)| n.to_vec())
                    })
                    .collect();
                self.tree.remove_temps(path, &in_use)
            }
        }
    }
}

/// Refuses the root of the tree as the target of an operation that
/// creates, replaces or removes an entry, before anything is touched.
pub(super) fn below_root(path: &RelPath) -> Result<()> {
    if path.is_root() {
        return Err(Error::denied("the root itself cannot be replaced or removed, only its metadata set"));
    }
    Ok(())
}
