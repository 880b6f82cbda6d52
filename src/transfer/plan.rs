//! Deciding where each chunk of a file comes from, from digests alone: no
//! I/O, so every rule is tested here directly.
//!
//! A file of N chunks is compared with the destination's old version in
//! two rounds: first one digest per *group* of chunks from each side, then,
//! for the groups that differ, one digest per chunk. Equal chunks come from
//! the old file; chunks a partial temporary file (from an interrupted run)
//! already holds stay where they are; the rest must be sent.

use crate::peer::{self, Digest};

/// Chunks hashed per request at most, and bytes per request at most: what
/// the other side accepts.
const SEGMENT_CHUNKS: u64 = peer::MAX_HASH_CHUNKS as u64;
const SEGMENT_BYTES: u64 = peer::MAX_HASH_BYTES;
/// Bytes of chunks summed up in one digest in the first round of comparing
/// a file (with chunks this size or larger, chunks are compared directly).
const GROUP_BYTES: u64 = 64 << 10;

/// Where a chunk of a file being built comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Origin {
    /// Equal in the destination's existing file.
    Old,
    /// Already in the partial temporary file.
    Partial,
    /// Must be sent.
    Send,
}

/// How a file of a given chunk size is compared: chunks per group in the
/// first round, and chunks per hash request (a multiple of the group).
pub(super) fn segments(chunk: u64) -> (u64, u64) {
    let group = (GROUP_BYTES / chunk).max(1);
    let per_segment = ((SEGMENT_BYTES / chunk).clamp(1, SEGMENT_CHUNKS) / group).max(1) * group;
    (group, per_segment)
}

/// Where each chunk of one file comes from, and the source's digest of
/// each chunk that must be sent, where the comparison learnt it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Plan {
    pub origin: Vec<Origin>,
    pub ours: Vec<Option<Digest>>,
}

impl Plan {
    /// A file of `chunks` chunks, all to be sent.
    pub(super) fn new(chunks: u64) -> Plan {
        Plan { origin: vec![Origin::Send; chunks as usize], ours: vec![None; chunks as usize] }
    }

    fn chunks(&self) -> u64 {
        self.origin.len() as u64
    }

    /// The first round: `mine` and `theirs` hold one digest per group of
    /// `group` chunks (each a prefix: a side may know fewer). Marks the
    /// chunks of equal groups `Old`; with `group` 1 keeps the source's
    /// digest of each differing chunk. Returns the differing groups worth
    /// comparing chunk by chunk: those that start within the old file's
    /// `old_chunks` chunks.
    pub(super) fn first_round(
        &mut self,
        group: u64,
        mine: &[Digest],
        theirs: &[Digest],
        old_chunks: u64,
    ) -> Vec<u64> {
        let chunks = self.chunks();
        let mut refine = Vec::new();
        for g in 0..chunks.div_ceil(group) {
            let range = (g * group) as usize..((g + 1) * group).min(chunks) as usize;
            match (mine.get(g as usize), theirs.get(g as usize)) {
                (Some(a), Some(b)) if a == b => self.origin[range].fill(Origin::Old),
                (Some(a), Some(_)) if group == 1 => self.ours[range.start] = Some(*a),
                _ if group > 1 && g * group < old_chunks => refine.push(g),
                _ => {}
            }
        }
        refine
    }

    /// The second round for the chunks from `first`: one digest per chunk
    /// from each side. Digests beyond the file are ignored.
    pub(super) fn refine(&mut self, first: u64, mine: &[Digest], theirs: &[Digest]) {
        for (k, digest) in mine.iter().enumerate() {
            let i = first as usize + k;
            if i >= self.origin.len() {
                break;
            }
            if theirs.get(k) == Some(digest) {
                self.origin[i] = Origin::Old;
            } else {
                self.ours[i] = Some(*digest);
            }
        }
    }

    /// Would the comparison need more source digests to check a partial
    /// file (a chunk to send whose digest it did not learn)?
    pub(super) fn lacks_digests(&self) -> bool {
        self.origin.iter().zip(&self.ours).any(|(o, d)| *o == Origin::Send && d.is_none())
    }

    /// Takes `mine`, the source's digests of every chunk, where none was
    /// learnt.
    pub(super) fn learn(&mut self, mine: &[Digest]) {
        for (ours, digest) in self.ours.iter_mut().zip(mine) {
            ours.get_or_insert(*digest);
        }
    }

    /// Marks the chunks to send that the partial temporary file holds
    /// already (`partial`: its digest of each chunk, a prefix).
    pub(super) fn reuse_partial(&mut self, partial: &[Digest]) {
        for (i, origin) in self.origin.iter_mut().enumerate() {
            if *origin == Origin::Send && self.ours[i].is_some() && partial.get(i).copied() == self.ours[i] {
                *origin = Origin::Partial;
            }
        }
    }

    /// Does the old file hold every chunk?
    pub(super) fn all_old(&self) -> bool {
        self.origin.iter().all(|o| *o == Origin::Old)
    }

    /// `(offset, len)` byte ranges of the runs of chunks from `which`, for
    /// chunks of `chunk` bytes of a file of `size` bytes.
    pub(super) fn runs(&self, which: Origin, chunk: u64, size: u64) -> Vec<(u64, u64)> {
        let mut ranges: Vec<(u64, u64)> = Vec::new();
        for (i, o) in self.origin.iter().enumerate() {
            if *o != which {
                continue;
            }
            let offset = i as u64 * chunk;
            let len = chunk.min(size - offset);
            match ranges.last_mut() {
                Some((start, run)) if *start + *run == offset => *run += len,
                _ => ranges.push((offset, len)),
            }
        }
        ranges
    }
}

/// Ranges to copy per `CopyOld` request at most.
const RANGES_PER_COPY: usize = 4096;
const _: () = assert!(RANGES_PER_COPY <= crate::codec::MAX_LIST);

/// `ranges` (in order, without overlaps) cut into requests of at most
/// [`RANGES_PER_COPY`] ranges and `max_bytes` bytes each, a long range split
/// across requests.
pub(super) fn copy_requests(ranges: Vec<(u64, u64)>, max_bytes: u64) -> Vec<Vec<(u64, u64)>> {
    let mut requests = Vec::new();
    let (mut request, mut bytes) = (Vec::new(), 0);
    for (mut offset, mut len) in ranges {
        while len > 0 {
            if bytes == max_bytes || request.len() == RANGES_PER_COPY {
                requests.push(std::mem::take(&mut request));
                bytes = 0;
            }
            let take = len.min(max_bytes - bytes);
            request.push((offset, take));
            (offset, len, bytes) = (offset + take, len - take, bytes + take);
        }
    }
    if !request.is_empty() {
        requests.push(request);
    }
    requests
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use Origin::*;

    fn plan_of(origin: &[Origin]) -> Plan {
        Plan { origin: origin.to_vec(), ours: vec![None; origin.len()] }
    }

    #[test]
    fn runs_coalesce_neighbours_and_clip_the_tail() {
        let plan = plan_of(&[Old, Old, Send, Old, Partial, Old, Old]);
        assert_eq!(plan.runs(Old, 10, 65), vec![(0, 20), (30, 10), (50, 15)]);
        assert_eq!(plan.runs(Send, 10, 65), vec![(20, 10)]);
    }

    #[test]
    fn copies_are_cut_into_bounded_requests() {
        let requests = copy_requests(vec![(0, 100), (200, 30), (300, 5)], 64);
        assert_eq!(requests, vec![vec![(0, 64)], vec![(64, 36), (200, 28)], vec![(228, 2), (300, 5)]]);
        let many: Vec<(u64, u64)> = (0..5000).map(|i| (i * 10, 1)).collect();
        let requests = copy_requests(many.clone(), 1 << 20);
        assert_eq!(requests.iter().map(Vec::len).collect::<Vec<_>>(), [4096, 904]);
        assert_eq!(requests.concat(), many);
        assert!(copy_requests(Vec::new(), 64).is_empty());
    }

    #[test]
    fn segments_stay_within_what_a_hash_request_may_ask() {
        for chunk in [1024, 4096, 65536, 1 << 20, 48 << 20, 64 << 20] {
            let (group, per_segment) = segments(chunk);
            assert!(per_segment % group == 0 && per_segment >= group, "{chunk}");
            assert!(per_segment <= SEGMENT_CHUNKS, "{chunk}");
            assert!(per_segment * chunk <= SEGMENT_BYTES.max(chunk), "{chunk}");
        }
        assert_eq!(segments(4096), (16, 1024));
        assert_eq!(segments(1 << 20), (1, 64));
    }

    #[test]
    fn two_rounds_find_the_one_changed_chunk() {
        // 40 chunks in groups of 16: the change is in chunk 20 (group 1).
        let mut plan = Plan::new(40);
        let refine = plan.first_round(16, &[1, 2, 3], &[1, 9, 3], 40);
        assert_eq!(refine, [1]);
        let mine: Vec<Digest> = (16..32).collect();
        let theirs: Vec<Digest> = (16..32).map(|d| if d == 20 { 0 } else { d }).collect();
        plan.refine(16, &mine, &theirs);
        assert_eq!(plan.origin.iter().filter(|o| **o == Send).count(), 1);
        assert_eq!(plan.origin[20], Send);
        assert_eq!(plan.ours[20], Some(20));
        assert_eq!(plan.runs(Send, 4096, 40 * 4096), [(20 * 4096, 4096)]);
    }

    #[test]
    fn a_lying_side_cannot_push_the_plan_out_of_the_file() {
        let mut plan = Plan::new(3);
        plan.refine(2, &[7, 8, 9, 10], &[0, 0, 0, 0]);
        assert_eq!(plan.ours, [None, None, Some(7)]);
    }

    proptest! {
        /// Whatever the digests, a chunk is `Old` only if both sides gave
        /// the same digest for it (or for its whole group), every other
        /// chunk is sent, and the runs of each origin cover exactly its
        /// chunks' bytes.
        #[test]
        fn the_plan_never_keeps_a_chunk_that_differs(
            old_file in prop::collection::vec(0u8..4, 1..80),
            new_file in prop::collection::vec(0u8..4, 1..80),
            group in 1u64..20,
            tail in 1u64..4096,
        ) {
            let chunks = new_file.len() as u64;
            let digest_of = |file: &[u8], first: usize, count: usize| -> Digest {
                file.get(first..first + count).map_or(u128::MAX, |c| c.iter().fold(7, |h, b| h * 31 + *b as u128))
            };
            let groups = |file: &[u8]| -> Vec<Digest> {
                (0..chunks.div_ceil(group) as usize)
                    .map(|g| g * group as usize)
                    .take_while(|first| *first < file.len())
                    .map(|first| digest_of(file, first, (group as usize).min(chunks as usize - first)))
                    .collect()
            };
            let mut plan = Plan::new(chunks);
            let refine = plan.first_round(group, &groups(&new_file), &groups(&old_file), old_file.len() as u64);
            for g in refine {
                let first = (g * group) as usize;
                let count = (group as usize).min(chunks as usize - first);
                let mine: Vec<Digest> = (first..first + count).map(|i| digest_of(&new_file, i, 1)).collect();
                let theirs: Vec<Digest> =
                    (first..first + count).take_while(|i| *i < old_file.len()).map(|i| digest_of(&old_file, i, 1)).collect();
                plan.refine(first as u64, &mine, &theirs);
            }
            for (i, origin) in plan.origin.iter().enumerate() {
                if *origin == Old {
                    prop_assert_eq!(old_file.get(i), Some(&new_file[i]), "chunk {} kept but differs", i);
                }
            }
            let size = (chunks - 1) * 4096 + tail;
            let covered: u64 = [Old, Partial, Send].iter().flat_map(|w| plan.runs(*w, 4096, size)).map(|(_, len)| len).sum();
            prop_assert_eq!(covered, size);
        }
    }
}
