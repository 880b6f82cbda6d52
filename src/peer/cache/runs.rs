//! Runs of nearby inodes in a batch of lookups, each read in one pass.
//!
//! The files of a directory usually have inodes close together (ext4 and
//! xfs give a new file an inode near its directory's), and the rows are
//! kept in (device, inode) order, so the rows a batch of small files asks
//! for mostly lie side by side. Reading a run of them with one range query
//! costs a fraction of one search per row. A run is only formed where the
//! inodes are dense ([`GAP`]), so the rows read but not asked for stay few.

use std::ops::Range;

use super::store::Pk;

/// Inodes further apart than this end a run.
const GAP: i128 = 8;
/// A run of fewer keys is searched row by row.
const SHORTEST: usize = 4;

/// Keys read at once: `pks[keys]` of the sorted keys, whose rows lie from
/// `pks[keys.start]` up to the inode `last` of the same device, chunk size
/// and algorithm.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Run {
    pub(super) keys: Range<usize>,
    pub(super) last: i64,
}

/// Sorts `pks` (any order, repeats allowed) and finds its runs.
pub(super) fn runs(pks: &mut [Pk]) -> Vec<Run> {
    pks.sort_unstable();
    let mut found = Vec::new();
    let mut start = 0;
    for end in 1..=pks.len() {
        let ends = pks.get(end).is_none_or(|next| {
            let last = &pks[end - 1];
            (next.dev, next.chunk, next.algo) != (last.dev, last.chunk, last.algo)
                || i128::from(next.ino) - i128::from(last.ino) > GAP
        });
        if ends {
            if end - start >= SHORTEST {
                found.push(Run { keys: start..end, last: pks[end - 1].ino });
            }
            start = end;
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pk(dev: i64, ino: i64) -> Pk {
        Pk { dev, ino, chunk: 1 << 20, algo: 1 }
    }

    #[test]
    fn dense_inodes_form_runs_and_scattered_ones_do_not() {
        let mut pks = vec![
            pk(1, 105),
            pk(1, 100),
            pk(1, 101),
            pk(1, 103),
            pk(1, 500),
            pk(1, 110),
            pk(2, 104),
            pk(1, 900),
            pk(1, 901),
            pk(1, 902),
        ];
        let found = runs(&mut pks);
        // 100, 101, 103, 105, 110 (gaps of at most 8) on device 1; 500 alone;
        // 900-902 too short; 104 of device 2 alone.
        assert_eq!(found, vec![Run { keys: 0..5, last: 110 }]);
        assert_eq!(pks[0], pk(1, 100));
        assert_eq!(pks[4], pk(1, 110));
    }

    #[test]
    fn repeats_and_extreme_inodes_are_handled() {
        let mut pks = vec![pk(1, i64::MIN), pk(1, i64::MAX), pk(1, 7), pk(1, 7), pk(1, 7), pk(1, 8)];
        let found = runs(&mut pks);
        assert_eq!(found, vec![Run { keys: 1..5, last: 8 }]);
        assert!(runs(&mut []).is_empty());
    }

    #[test]
    fn another_chunk_size_or_algorithm_ends_a_run() {
        let mut pks: Vec<Pk> = (0..8).map(|i| Pk { chunk: if i < 4 { 1 } else { 2 }, ..pk(1, i) }).collect();
        // Sorted by (dev, ino, chunk, algo): the chunk sizes alternate
        // along the inodes, so no two neighbours share one.
        pks.iter_mut().enumerate().for_each(|(i, p)| p.chunk = (i % 2) as i64);
        assert!(runs(&mut pks).is_empty());
    }
}
