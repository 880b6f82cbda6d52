//! The answers of a session's requests that are done at most once
//! ([`Declaration::once`](crate::codec::Declaration::once)): `Begin`,
//! `Finish`, `Discard`, `PutFile`, `PutFiles`, `Apply`.
//!
//! A client whose connection was lost sends the requests that were in
//! flight on it again, under the same ids, on another connection. The
//! first of the two may have been done already (its answer lost with the
//! connection) or may still be running. Either way the repeat waits for
//! and gets the first one's answer, and the work is done once. A request
//! is known by its id and a fingerprint of its frame header (message and
//! payload length): an id used again for another request is a new request.
//!
//! The table keeps the most recent [`MAX_ENTRIES`] answers and at most
//! [`MAX_BYTES`] of them. A repeat comes at the latest when the client
//! gives up on a silent connection (its `--io-timeout`, 30 s by default):
//! 16 384 answers cover that at some 550 of these requests a second (a
//! `Begin` and a `Finish` per file of more than one chunk), where 4096
//! did not on a fast link, and the repeat of a `Finish` whose answer was
//! forgotten failed a file that was in place. An answer is a few dozen
//! bytes, so a session's table stays within a few MiB.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::OnceCell;

use crate::codec::{Message, Packet};

/// Answers remembered per session at most...
pub(super) const MAX_ENTRIES: usize = 16384;
/// ...and bytes of their headers and payloads at most.
pub(super) const MAX_BYTES: usize = 4 << 20;

/// One request done once, and its answer once there is one.
struct Entry {
    fingerprint: u128,
    answer: OnceCell<(Message, Bytes)>,
}

#[derive(Default)]
struct Entries {
    by_id: HashMap<u32, Arc<Entry>>,
    /// Ids in the order they were answered (with their answer's size).
    answered: VecDeque<(u32, usize)>,
    bytes: usize,
}

/// The requests done once of one session, by id.
#[derive(Default)]
pub(super) struct Replays {
    entries: Mutex<Entries>,
}

impl Replays {
    /// Answers `request` with `serve` unless it was served already (or is
    /// being served): then with that answer. `serve` runs at most once per
    /// request, however often the request arrives.
    pub(super) async fn answer<F, Fut>(&self, request: Packet, serve: F) -> Packet
    where
        F: FnOnce(Packet) -> Fut,
        Fut: Future<Output = Packet>,
    {
        let id = request.id;
        let fingerprint = fingerprint(&request);
        let entry = {
            let mut entries = lock(&self.entries);
            match entries.by_id.get(&id) {
                Some(entry) if entry.fingerprint == fingerprint => entry.clone(),
                _ => {
                    let entry = Arc::new(Entry { fingerprint, answer: OnceCell::new() });
                    entries.by_id.insert(id, entry.clone());
                    entry
                }
            }
        };
        let mut first = false;
        let (msg, payload) = entry
            .answer
            .get_or_init(|| async {
                first = true;
                let answer = serve(request).await;
                (answer.msg, answer.payload)
            })
            .await
            .clone();
        if first {
            self.answered(id, &entry, size(&msg, &payload));
        }
        Packet::with_payload(id, msg, payload)
    }

    /// Remembers that `entry` was answered; forgets the oldest answers
    /// beyond the bounds.
    fn answered(&self, id: u32, entry: &Arc<Entry>, size: usize) {
        let mut entries = lock(&self.entries);
        // Remembered only if the id still names this request.
        if !entries.by_id.get(&id).is_some_and(|e| Arc::ptr_eq(e, entry)) {
            return;
        }
        entries.answered.push_back((id, size));
        entries.bytes += size;
        while entries.answered.len() > MAX_ENTRIES || entries.bytes > MAX_BYTES {
            let Some((old, old_size)) = entries.answered.pop_front() else { break };
            entries.bytes -= old_size;
            // The id may name a newer request by now, still running.
            if entries.by_id.get(&old).is_some_and(|e| e.answer.initialized()) {
                entries.by_id.remove(&old);
            }
        }
    }

    /// Requests remembered (answered or running).
    #[cfg(test)]
    fn len(&self) -> usize {
        lock(&self.entries).by_id.len()
    }
}

fn fingerprint(request: &Packet) -> u128 {
    match request.encode_head() {
        Ok(head) => xxhash_rust::xxh3::xxh3_128(&head),
        // Cannot happen for a request that was decoded; never equal to
        // anything then.
        Err(_) => u128::from(request.id) ^ u128::MAX,
    }
}

/// What an answer takes in memory, about.
fn size(msg: &Message, payload: &Bytes) -> usize {
    let head = match msg {
        Message::Applied { failures } => {
            failures.iter().map(|(path, why)| path.as_bytes().len() + why.len() + 16).sum()
        }
        Message::FilesPut { failures } => failures.iter().map(|f| f.message.len() + 16).sum(),
        _ => 0,
    };
    64 + head + payload.len()
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::codec::{Meta, Mtime, RelPath};

    fn finish(id: u32, handle: u64) -> Packet {
        Packet::new(
            id,
            Message::Finish {
                handle,
                meta: Meta { mode: 0o644, mtime: Mtime { secs: 0, nanos: 0 }, extra: None },
            },
        )
    }

    async fn served(replays: &Replays, request: Packet, runs: &AtomicUsize) -> Packet {
        replays
            .answer(request, |p| async move {
                runs.fetch_add(1, Ordering::SeqCst);
                Packet::new(p.id, Message::Done)
            })
            .await
    }

    #[tokio::test]
    async fn a_repeat_gets_the_first_answer_without_being_done_again() {
        let replays = Replays::default();
        let runs = AtomicUsize::new(0);
        assert_eq!(served(&replays, finish(7, 1), &runs).await.msg, Message::Done);
        let again = served(&replays, finish(7, 1), &runs).await;
        assert_eq!((again.id, again.msg, runs.load(Ordering::SeqCst)), (7, Message::Done, 1));
        // The same id for another request is a new request.
        served(&replays, finish(7, 2), &runs).await;
        assert_eq!(runs.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_repeat_that_arrives_while_the_first_runs_waits_for_it() {
        let replays = Arc::new(Replays::default());
        let (release, wait) = tokio::sync::oneshot::channel::<()>();
        let first = {
            let replays = replays.clone();
            tokio::spawn(async move {
                replays
                    .answer(finish(3, 9), |p| async move {
                        let _ = wait.await;
                        Packet::new(p.id, Message::Begun { handle: 42, partial: false })
                    })
                    .await
            })
        };
        tokio::task::yield_now().await;
        let repeat = {
            let replays = replays.clone();
            tokio::spawn(
                async move { replays.answer(finish(3, 9), |_| async { panic!("done twice") }).await },
            )
        };
        tokio::task::yield_now().await;
        let _ = release.send(());
        let (a, b) = (first.await.unwrap(), repeat.await.unwrap());
        assert_eq!(a, b);
        assert_eq!(a.msg, Message::Begun { handle: 42, partial: false });
    }

    #[tokio::test]
    async fn old_answers_are_forgotten_beyond_the_bounds() {
        let replays = Replays::default();
        let runs = AtomicUsize::new(0);
        for id in 1..=(MAX_ENTRIES as u32 + 10) {
            served(&replays, finish(id, 0), &runs).await;
        }
        assert_eq!(replays.len(), MAX_ENTRIES);
        // The oldest is done again; the newest is not.
        served(&replays, finish(1, 0), &runs).await;
        served(&replays, finish(MAX_ENTRIES as u32 + 10, 0), &runs).await;
        assert_eq!(runs.load(Ordering::SeqCst), MAX_ENTRIES + 11);
        // Bytes bound: big answers push out the old ones.
        let big = "x".repeat(512 << 10);
        let first = MAX_ENTRIES as u32 + 100;
        for id in first..first + 20 {
            replays
                .answer(finish(id, 0), |p| {
                    let failures = vec![(RelPath::new("f").unwrap(), big.clone())];
                    async move { Packet::new(p.id, Message::Applied { failures }) }
                })
                .await;
        }
        let bytes = lock(&replays.entries).bytes;
        assert!(bytes <= MAX_BYTES, "{bytes}");
        assert!(replays.len() <= MAX_BYTES / (512 << 10), "{}", replays.len());
    }
}
