//! `--fsync`: a file's data is flushed before it takes its final name, and
//! a directory after its entries changed, so that what a run reported done
//! survives a power cut. Without it, both are left to the kernel.

use std::collections::BTreeSet;
use std::fs::File;

use crate::codec::RelPath;
use crate::peer::error::{Error, Result};

use super::Inner;

impl Inner {
    /// With `fsync`, flushes `file` (data and metadata) to the disk.
    pub(super) fn sync_file(&self, file: &File, rel: &RelPath) -> Result<()> {
        if self.settings.fsync {
            file.sync_all().map_err(|e| Error::from_io(e, rel, "flush"))?;
        }
        Ok(())
    }

    /// With `fsync`, flushes the directories holding the entries `rels`,
    /// each once.
    pub(super) fn sync_parents<'a>(&self, rels: impl IntoIterator<Item = &'a RelPath>) -> Result<()> {
        if !self.settings.fsync {
            return Ok(());
        }
        let parents: BTreeSet<RelPath> =
            rels.into_iter().map(|rel| rel.split_last().map_or_else(RelPath::root, |(dir, _)| dir)).collect();
        self.sync_dirs(parents.iter())
    }

    /// With `fsync`, flushes the directories `dirs` themselves (what
    /// entries they hold).
    pub(super) fn sync_dirs<'a>(&self, dirs: impl IntoIterator<Item = &'a RelPath>) -> Result<()> {
        if !self.settings.fsync {
            return Ok(());
        }
        for dir in dirs {
            let synced = if dir.is_root() {
                rustix::fs::fsync(self.tree.fd())
            } else {
                match self.tree.open_dir_strict(dir) {
                    Ok(opened) => rustix::fs::fsync(opened.fd()),
                    // Gone meanwhile: nothing of it to flush.
                    Err(e) if e.kind == crate::codec::ErrorKind::NotFound => continue,
                    Err(e) => return Err(e),
                }
            };
            synced.map_err(|e| Error::from_errno(e, dir, "flush directory"))?;
        }
        Ok(())
    }
}
