//! Digests of whole small files, many in one call: comparing small files
//! costs one trip to the blocking pool (and, remotely, one request) per
//! batch, not per file.

use crate::codec::{ErrorKind, RelPath};

use super::error::{Error, Result};
use std::time::SystemTime;

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
    Ok(files.iter().map(|(path, size)| hash_whole(tree, settings, path, *size as usize, &mut buf)).collect())
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
    // Through the cache when the file has the size listed.
    let cache = settings.cache.as_deref();
    let remembered = cache.and_then(|r| Remembered::key(&file, size as u64).map(|key| (r, key)));
    if let Some((r, key)) = &remembered {
        if let Some(digest) = r.recall(key, settings).and_then(|all| all.first().copied()) {
            return Ok(digest);
        }
    }
    let hashed_at = SystemTime::now();
    buf.resize(size, 0);
    let got = read_full_at(&file, &mut buf[..size], 0).map_err(|e| Error::from_io(e, path, "read"))?;
    if got < size {
        return Err(Error::io(format!("{path}: {got} bytes, fewer than the {size} listed; it changed")));
    }
    let digest = hash::digest(settings.hash, &buf[..size]);
    // Remembered only if the file did not change while it was read.
    if let Some((r, key)) = remembered {
        if Remembered::key(&file, size as u64) == Some(key) {
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
        let settings = Settings {
            chunk_size: 1024,
            hash: HashAlgo::Xxh3,
            filter: crate::peer::Filter::default(),
            inplace: false,
            delete: false,
            file_work: 1,
            keep_setid: false,
            fsync: false,
            cache: None,
            extras: None,
        };
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
        let got = hash_files(&tree, &settings, &asked).unwrap();
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
        assert_eq!(hash_files(&tree, &settings, &many).err().map(|e| e.kind), Some(ErrorKind::Limit));
        let large = [(rel("a"), 1025)];
        assert_eq!(hash_files(&tree, &settings, &large).err().map(|e| e.kind), Some(ErrorKind::Limit));
        assert!(hash_files(&tree, &settings, &vec![(rel("a"), 5); MAX_HASH_FILES]).is_ok());
    }
}
