//! The connections of one session, as the server counts them: how many
//! there are (none: the session is an orphan), when each last heard from
//! its client, and a way to cut each.
//!
//! A connection whose client's side died without a word (a black-holed
//! flow, a NAT box that forgot it) looks alive to the server until it has
//! been silent for half the session timeout. Its client, meanwhile, has
//! given up on it and joins a replacement; were the old one still counted,
//! a session at its maximum of connections could not get it back. So a
//! join at the maximum cuts the connection that has been silent longest:
//! the joiner proved it is the session's own client, so it can only ever
//! take the place of one of its own connections.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

/// The connections of a session.
#[derive(Debug, Default)]
pub(super) struct Members {
    list: Mutex<Vec<Entry>>,
    next_id: AtomicU64,
}

#[derive(Debug)]
struct Entry {
    id: u64,
    heard_ms: Arc<AtomicU64>,
    cut: CancellationToken,
}

/// One connection's membership, held by the task serving it.
#[derive(Debug)]
pub(super) struct Member {
    id: u64,
    heard_ms: Arc<AtomicU64>,
    /// Cancelled when a replacement took this connection's place.
    pub cut: CancellationToken,
}

/// A connection cut to make room, and how long it had been silent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Replaced {
    pub silent_ms: u64,
}

impl Member {
    /// The connection heard from its client at `now_ms`.
    pub(super) fn heard(&self, now_ms: u64) {
        self.heard_ms.store(now_ms, Ordering::Relaxed);
    }
}

impl Members {
    /// How many connections the session has.
    pub(super) fn count(&self) -> usize {
        self.lock().len()
    }

    /// Counts a new connection at `now_ms`. When the session already has
    /// `most`, the one silent longest is cut and no longer counted.
    pub(super) fn add(&self, now_ms: u64, most: usize) -> (Member, Option<Replaced>) {
        let mut list = self.lock();
        let mut replaced = None;
        if list.len() >= most.max(1) {
            let quietest = list.iter().enumerate().min_by_key(|(_, e)| e.heard_ms.load(Ordering::Relaxed));
            if let Some(at) = quietest.map(|(at, _)| at) {
                let gone = list.swap_remove(at);
                gone.cut.cancel();
                replaced = Some(Replaced {
                    silent_ms: now_ms.saturating_sub(gone.heard_ms.load(Ordering::Relaxed)),
                });
            }
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let heard_ms = Arc::new(AtomicU64::new(now_ms));
        let cut = CancellationToken::new();
        list.push(Entry { id, heard_ms: heard_ms.clone(), cut: cut.clone() });
        (Member { id, heard_ms, cut }, replaced)
    }

    /// The connection of `member` ended; returns how many are left. (One
    /// cut to make room was no longer counted.)
    pub(super) fn leave(&self, member: &Member) -> usize {
        let mut list = self.lock();
        list.retain(|e| e.id != member.id);
        list.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Entry>> {
        self.list.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_join_at_the_maximum_cuts_the_connection_silent_longest() {
        let members = Members::default();
        let (a, none) = members.add(0, 3);
        let (b, _) = members.add(0, 3);
        let (c, _) = members.add(0, 3);
        assert_eq!((none, members.count()), (None, 3));
        a.heard(900);
        c.heard(800);
        // b has been silent since 0.
        let (d, replaced) = members.add(1000, 3);
        assert_eq!(replaced, Some(Replaced { silent_ms: 1000 }));
        assert!(b.cut.is_cancelled() && !a.cut.is_cancelled() && !c.cut.is_cancelled());
        assert_eq!(members.count(), 3);
        // The cut one leaving changes nothing; the others count down.
        assert_eq!(members.leave(&b), 3);
        assert_eq!(members.leave(&a), 2);
        assert_eq!(members.leave(&c), 1);
        assert_eq!(members.leave(&d), 0);
    }

    #[test]
    fn below_the_maximum_nothing_is_cut() {
        let members = Members::default();
        let (a, _) = members.add(0, 2);
        let (_b, replaced) = members.add(5, 2);
        assert_eq!(replaced, None);
        assert!(!a.cut.is_cancelled());
    }
}
