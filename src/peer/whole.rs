//! Digests of whole small files, many in one call: comparing small files
//! costs one trip to the blocking pool (and, remotely, one request) per
//! batch, not per file.

use crate::codec::{ErrorKind, RelPath};

use super::error::{Error, Result};
use std::time::SystemTime;

use super::cache::FileKey;
use super::recent::RecentKeys;
use super::tree::Parent;
use super::{hash, read_full_at, Digest, Remembered, Settings, Tree, MAX_HASH_BYTES};

/// Files one `HashFiles` request may name at most.
pub const MAX_HASH_FILES: usize = 1024;

/// The digest of each file `(path, size)` of `files` as one chunk (what
/// `Hash` of its single chunk gives), or why it has none. Each size is at
/// most a chunk; together at most [`MAX_HASH_BYTES`] (or one chunk).
pub(crate) fn hash_files(
    tree: &Tree,
    settings: &Settings,
    files: &[(RelPath, u64)],
    recent: Option<&RecentKeys>,
) -> Result<Vec<Result<Digest>>> {
    let chunk = u64::from(settings.chunk_size);
    let total: u64 = files.iter().map(|(_, size)| *size).fold(0, u64::saturating_add);
    if files.len() > MAX_HASH_FILES || total > MAX_HASH_BYTES.max(chunk) {
        return Err(Error::new(
            ErrorKind::Limit,
            format!(
                "a HashFiles request names at most {MAX_HASH_FILES} files and {} MiB ({} files, {total} bytes asked)",
                MAX_HASH_BYTES >> 20,
                files.len()
            ),
        ));
    }
    if let Some((path, size)) = files.iter().find(|(_, size)| *size > chunk) {
        return Err(Error::new(
            ErrorKind::Limit,
            format!("{path}: {size} bytes is more than one chunk; HashFiles is for files of one chunk"),
        ));
    }
    let mut buf = Vec::new();
    let remembered = match settings.cache.as_deref() {
        Some(cache) => recall(tree, settings, cache, files, recent),
        None => vec![None; files.len()],
    };
    Ok(files
        .iter()
        .zip(remembered)
        .map(|((path, size), known)| match known {
            Some(digest) => Ok(digest),
            None => hash_whole(tree, settings, path, *size as usize, &mut buf),
        })
        .collect())
}

/// The digests of `files` that need no read: those of empty files, and
/// those the cache remembers for the files' keys: noted in `recent` when
/// the files were listed or probed, else from an `lstat` through the parent
/// directory (opened once for a run of files in it). No file is opened. A
/// file of another size than listed gets none.
fn recall(
    tree: &Tree,
    settings: &Settings,
    cache: &Remembered,
    files: &[(RelPath, u64)],
    recent: Option<&RecentKeys>,
) -> Vec<Option<Digest>> {
    let noted = recent.map(|r| r.take(files.iter().map(|(path, _)| path))).unwrap_or_default();
    let mut keys = Vec::with_capacity(files.len());
    let mut parent: Option<(Parent, RelPath)> = None;
    for (i, (path, size)) in files.iter().enumerate() {
        if let Some(key) = noted.get(i).copied().flatten() {
            keys.push(Some(key).filter(|key| key.size == *size));
            continue;
        }
        let Some((dir, name)) = path.split_last() else {
            keys.push(None);
            continue;
        };
        if parent.as_ref().is_none_or(|(_, open)| *open != dir) {
            parent = tree.parent_of(path).ok().map(|(p, _)| (p, dir));
        }
        let status = parent.as_ref().and_then(|(p, _)| p.file_status(name));
        keys.push(status.map(|st| FileKey::of(&st)).filter(|key| key.size == *size));
    }
    let empty = hash::digest(settings.hash, b"");
    let sized: Vec<Option<FileKey>> = keys.iter().map(|k| k.filter(|k| k.size > 0)).collect();
    let mut digests = cache.recall_whole(&sized, settings);
    for (digest, key) in digests.iter_mut().zip(&keys) {
        if key.is_some_and(|k| k.size == 0) {
            *digest = Some(empty);
        }
    }
    digests
}

/// The digest of the first `size` bytes of the file at `path`, which must
/// have that many.
fn hash_whole(
    tree: &Tree,
    settings: &Settings,
    path: &RelPath,
    size: usize,
    buf: &mut Vec<u8>,
) -> Result<Digest> {
    let file = tree.open_read(path)?;
    // Learnt by the cache when the file has the size listed (it was looked
    // up before, by its path).
    let cache = settings.cache.as_deref();
    let remembered = cache.and_then(|r| Remembered::whole_key(&file, size as u64).map(|key| (r, key)));
    let hashed_at = SystemTime::now();
    buf.resize(size, 0);
    let got = read_full_at(&file, &mut buf[..size], 0).map_err(|e| Error::from_io(e, path, "read"))?;
    if got < size {
        return Err(Error::io(format!("{path}: {got} bytes, fewer than the {size} listed; it changed")));
    }
    let digest = hash::digest(settings.hash, &buf[..size]);
    // Remembered only if the file did not change while it was read.
    if let Some((r, key)) = remembered {
        if Remembered::whole_key(&file, size as u64) == Some(key) {
            r.learn(&key, settings, 0, &[digest], hashed_at);
        }
    }
    Ok(digest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::HashAlgo;

    fn setup() -> (tempfile::TempDir, Tree, Settings) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), b"hello").unwrap();
        std::fs::write(dir.path().join("empty"), b"").unwrap();
        std::os::unix::fs::symlink("a", dir.path().join("link")).unwrap();
        let tree = Tree::open(dir.path()).unwrap();
        let settings = Settings::for_tests(1024);
        (dir, tree, settings)
    }

    fn rel(path: &str) -> RelPath {
        RelPath::new(path).unwrap()
    }

    #[test]
    fn each_file_gets_its_digest_or_its_own_failure() {
        let (_dir, tree, settings) = setup();
        let asked = [
            (rel("a"), 5),
            (rel("gone"), 3),
            (rel("empty"), 0),
            (rel("a"), 9),
            (rel("link"), 1),
            (rel("a"), 2),
        ];
        let got = hash_files(&tree, &settings, &asked, None).unwrap();
        assert_eq!(got[0], Ok(hash::digest(HashAlgo::Xxh3, b"hello")));
        assert_eq!(got[1].as_ref().map_err(|e| e.kind), Err(ErrorKind::NotFound));
        assert_eq!(got[2], Ok(hash::digest(HashAlgo::Xxh3, b"")));
        // Shorter than listed: it changed.
        assert!(
            got[3].as_ref().is_err_and(|e| e.message.contains("fewer than the 9 listed")),
            "{:?}",
            got[3]
        );
        assert_eq!(got[4].as_ref().map_err(|e| e.kind), Err(ErrorKind::Denied));
        // Longer than listed: the listed size is what is compared.
        assert_eq!(got[5], Ok(hash::digest(HashAlgo::Xxh3, b"he")));
    }

    #[test]
    fn a_request_is_bounded() {
        let (_dir, tree, settings) = setup();
        let many = vec![(rel("a"), 5); MAX_HASH_FILES + 1];
        assert_eq!(hash_files(&tree, &settings, &many, None).err().map(|e| e.kind), Some(ErrorKind::Limit));
        let large = [(rel("a"), 1025)];
        assert_eq!(hash_files(&tree, &settings, &large, None).err().map(|e| e.kind), Some(ErrorKind::Limit));
        assert!(hash_files(&tree, &settings, &vec![(rel("a"), 5); MAX_HASH_FILES], None).is_ok());
    }
}
