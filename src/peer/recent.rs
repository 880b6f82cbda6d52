//! The keys of files a role stated a moment ago, so that the digest cache
//! can be asked about them without stating them again.
//!
//! A re-sync of many small files costs, per file and per side, the `lstat`
//! every sync tool makes (the source's walk, the destination's probe) and,
//! to look its digest up in the cache, the file's key (device, inode, size,
//! mtime, ctime), which that same `lstat` gave. The walk and the probe note
//! the keys of small files here, and comparing them takes the keys back: a
//! file is stated once. The key is then as old as the listing (or probe),
//! which is what the comparison is about; a file changed since is caught
//! by its next sync, as when it changes just after being read.
//!
//! Bounded: the engine compares the files of a batch soon after the batch
//! is listed, and the walk runs at most a few batches ahead, so only the
//! latest keys are kept, in two generations of at most [`GENERATION`] keys
//! and [`GENERATION_BYTES`] of paths (taking a key leaves its path's bytes
//! in place): when the newer is full the older is dropped whole, so noting
//! a key costs no bookkeeping of its age; an older key is stated again.
//!
//! A generation keeps its paths' bytes one after another in one buffer and
//! finds them by a hash of the path: noting a path copies its bytes, with
//! no allocation of its own, and finding it compares bytes that lie close
//! together. Two paths with the same hash in one generation both lose their
//! key (a miss, so the file is read): never the other file's key.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::Mutex;

use crate::codec::RelPath;

use super::cache::FileKey;

/// Keys in one generation; at most twice as many are kept.
pub const GENERATION: usize = 1 << 15;

/// Bytes of paths noted in one generation (keys taken included), past
/// which it is full as well.
pub const GENERATION_BYTES: usize = 4 << 20;

/// The keys of the files stated lately, by path in the role's tree.
#[derive(Debug)]
pub struct RecentKeys {
    /// Only files of at most this size are noted (those compared whole).
    largest: u64,
    /// foldhash: SipHash's resistance to chosen keys is not needed, as two
    /// paths with one hash only cost a read.
    hasher: foldhash::fast::RandomState,
    keys: Mutex<Keys>,
}

#[derive(Debug, Default)]
struct Keys {
    newer: Generation,
    older: Generation,
}

#[derive(Debug, Default)]
struct Generation {
    /// The bytes of the noted paths, one after another.
    paths: Vec<u8>,
    /// By the hash of a path.
    slots: HashMap<u64, Slot, foldhash::fast::RandomState>,
}

#[derive(Debug)]
struct Slot {
    /// Where its path lies in [`Generation::paths`].
    start: usize,
    len: usize,
    /// `None` when two paths had its hash.
    key: Option<FileKey>,
}

impl Generation {
    fn path(&self, slot: &Slot) -> &[u8] {
        &self.paths[slot.start..slot.start + slot.len]
    }

    fn note(&mut self, hash: u64, path: &[u8], key: FileKey) {
        if let Some(slot) = self.slots.get_mut(&hash) {
            let same = self.paths[slot.start..slot.start + slot.len] == *path;
            slot.key = if same { slot.key.and(Some(key)) } else { None };
            return;
        }
        let start = self.paths.len();
        self.paths.extend_from_slice(path);
        self.slots.insert(hash, Slot { start, len: path.len(), key: Some(key) });
    }

    /// Takes the key of `path`: `Some(None)` when its hash is ambiguous.
    fn take(&mut self, hash: u64, path: &[u8]) -> Option<Option<FileKey>> {
        let slot = self.slots.get(&hash)?;
        let key = if self.path(slot) == path { slot.key } else { None };
        self.slots.remove(&hash);
        Some(key)
    }
}

impl RecentKeys {
    /// Notes the keys of files of at most `largest` bytes.
    pub fn new(largest: u64) -> RecentKeys {
        RecentKeys { largest, hasher: foldhash::fast::RandomState::default(), keys: Mutex::default() }
    }

    /// Is a file of `size` bytes worth noting?
    pub fn wants(&self, size: u64) -> bool {
        size <= self.largest
    }

    /// Notes the keys of `files`, stated just now.
    pub fn note<'a>(&self, files: impl IntoIterator<Item = (&'a RelPath, FileKey)>) {
        let mut keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        for (path, key) in files {
            if key.size > self.largest {
                continue;
            }
            if keys.newer.slots.len() >= GENERATION || keys.newer.paths.len() >= GENERATION_BYTES {
                keys.older = std::mem::take(&mut keys.newer);
            }
            let hash = self.hasher.hash_one(path.as_bytes());
            keys.newer.note(hash, path.as_bytes(), key);
        }
    }

    /// Takes the noted key of each of `paths` (`None` where there is none).
    /// A path noted twice may have a key in each generation: both go, and
    /// the newer is the answer, so an outdated key is never given.
    pub fn take<'a>(&self, paths: impl IntoIterator<Item = &'a RelPath>) -> Vec<Option<FileKey>> {
        let mut keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        let keys = &mut *keys;
        paths
            .into_iter()
            .map(|path| {
                let hash = self.hasher.hash_one(path.as_bytes());
                let older = keys.older.take(hash, path.as_bytes()).flatten();
                match keys.newer.take(hash, path.as_bytes()) {
                    Some(newer) => newer,
                    None => older,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(ino: u64, size: u64) -> FileKey {
        FileKey { dev: 1, ino, size, mtime_ns: 5, ctime_ns: 6 }
    }

    fn rel(path: &str) -> RelPath {
        RelPath::new(path).unwrap()
    }

    #[test]
    fn a_key_is_taken_once_and_large_files_are_not_noted() {
        let recent = RecentKeys::new(100);
        recent.note([(&rel("a"), key(1, 10)), (&rel("big"), key(2, 101)), (&rel("b"), key(3, 100))]);
        assert_eq!(
            recent.take([&rel("b"), &rel("big"), &rel("a")]),
            vec![Some(key(3, 100)), None, Some(key(1, 10))]
        );
        assert_eq!(recent.take([&rel("a")]), vec![None]);
    }

    #[test]
    fn a_path_noted_again_has_its_latest_key() {
        let recent = RecentKeys::new(100);
        recent.note([(&rel("a"), key(1, 10))]);
        recent.note([(&rel("a"), key(9, 10))]);
        assert_eq!(recent.take([&rel("a")]), vec![Some(key(9, 10))]);
    }

    #[test]
    fn only_the_latest_keys_are_kept() {
        let recent = RecentKeys::new(100);
        let noted = 2 * GENERATION as u64 + 10;
        let paths: Vec<RelPath> = (0..noted).map(|i| rel(&format!("f{i}"))).collect();
        recent.note(paths.iter().zip(0..).map(|(path, i)| (path, key(i, 1))));
        // The first generation was dropped whole; the last two are kept.
        let first_kept = GENERATION as u64;
        let (dropped, kept, last) =
            (format!("f{}", first_kept - 1), format!("f{first_kept}"), format!("f{}", noted - 1));
        assert_eq!(
            recent.take([&rel("f0"), &rel(&dropped), &rel(&kept), &rel(&last)]),
            vec![None, None, Some(key(first_kept, 1)), Some(key(noted - 1, 1))]
        );
    }

    #[test]
    fn paths_whose_keys_were_taken_do_not_pile_up() {
        // A re-sync takes each key soon after noting it: the generation
        // never holds many keys, but it kept every path's bytes.
        let recent = RecentKeys::new(100);
        let long = "d".repeat(90);
        for i in 0..150_000u64 {
            let path = rel(&format!("{long}/f{i}"));
            recent.note([(&path, key(i, 1))]);
            assert_eq!(recent.take([&path]), vec![Some(key(i, 1))]);
        }
        let keys = recent.keys.lock().unwrap();
        let held = keys.newer.paths.len() + keys.older.paths.len();
        assert!(held <= 2 * GENERATION_BYTES + 100, "{held} bytes of paths held");
    }

    #[test]
    fn a_path_noted_in_both_generations_gives_its_newer_key_once() {
        let recent = RecentKeys::new(100);
        recent.note([(&rel("a"), key(1, 10))]);
        let paths: Vec<RelPath> = (0..GENERATION as u64).map(|i| rel(&format!("f{i}"))).collect();
        recent.note(paths.iter().zip(0..).map(|(path, i)| (path, key(i, 1))));
        recent.note([(&rel("a"), key(9, 10))]);
        assert_eq!(recent.take([&rel("a")]), vec![Some(key(9, 10))]);
        assert_eq!(recent.take([&rel("a")]), vec![None]);
    }

    #[test]
    fn two_paths_with_one_hash_both_miss_and_never_swap_keys() {
        let mut generation = Generation::default();
        generation.note(7, b"a", key(1, 10));
        generation.note(7, b"b", key(2, 10));
        generation.note(7, b"a", key(3, 10));
        generation.note(8, b"c", key(4, 10));
        assert_eq!(generation.take(7, b"b"), Some(None));
        assert_eq!(generation.take(7, b"a"), None);
        assert_eq!(generation.take(8, b"x"), Some(None));
        assert_eq!(generation.take(8, b"c"), None);
    }
}
