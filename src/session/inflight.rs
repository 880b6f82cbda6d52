//! The requests of a session in flight on the client's connections: the id
//! each was sent under (unique in the session), the connection it went out
//! on, who waits for its answer, and when it left. Plain data without I/O —
//! time is an argument — so its rules are tested here; the pool's tasks
//! share one behind a lock.
//!
//! When a connection is lost, its requests are taken back
//! ([`InFlight::take_link`]) to be sent again, under the same ids, on
//! another: a request the server already did is then answered from its
//! table of answers, not done twice (PROTOCOL.md §11).

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use crate::codec::{ErrorKind, Message, Packet};
use crate::peer::Error;

/// Who waits for the answer of a request.
#[derive(Debug)]
pub(super) enum Reply {
    /// One answer.
    Once(oneshot::Sender<Result<Packet, Error>>),
    /// Several (a `Walk`): every `Listing` up to the one marked `done`.
    Stream(mpsc::UnboundedSender<Result<Packet, Error>>),
}

impl Reply {
    pub(super) fn send(self, result: Result<Packet, Error>) {
        match self {
            Reply::Once(tx) => drop(tx.send(result)),
            Reply::Stream(tx) => drop(tx.send(result)),
        }
    }
}

/// A request on the wire, and what it holds until it is answered (`T`:
/// what the pool needs to send it again).
struct Pending<T> {
    link: usize,
    reply: Reply,
    sent: Instant,
    timed: bool,
    held: T,
}

/// A request taken back from a lost connection.
pub(super) struct Unanswered<T> {
    /// The id it was sent under, to send it again with.
    pub id: u32,
    /// Who waits for its answer.
    pub reply: Reply,
    /// What the pool keeps to send it again.
    pub held: T,
}

/// The requests in flight on the connections of one session.
pub(super) struct InFlight<T> {
    /// `None` once the session is lost.
    pending: Option<HashMap<u32, Pending<T>>>,
    last_id: u32,
    /// Connections lost: nothing more is sent on them.
    lost: HashSet<usize>,
}

impl<T> InFlight<T> {
    pub(super) fn new() -> Self {
        InFlight { pending: Some(HashMap::new()), last_id: 0, lost: HashSet::new() }
    }

    /// Registers a request sent at `now` on connection `link`: under `id`
    /// if it is sent again, else under a new id (never 0, never one in
    /// flight); returns the id. A lost connection or session (or, cannot
    /// happen, an id already in flight) gives the request back.
    pub(super) fn insert(
        &mut self,
        link: usize,
        id: Option<u32>,
        reply: Reply,
        timed: bool,
        held: T,
        now: Instant,
    ) -> Result<u32, (Reply, T)> {
        let Some(pending) = self.pending.as_mut().filter(|_| !self.lost.contains(&link)) else {
            return Err((reply, held));
        };
        let id = match id {
            Some(id) if pending.contains_key(&id) || id == 0 => return Err((reply, held)),
            Some(id) => id,
            None => {
                let mut id = self.last_id;
                loop {
                    id = id.wrapping_add(1).max(1);
                    if !pending.contains_key(&id) {
                        break;
                    }
                }
                self.last_id = id;
                id
            }
        };
        pending.insert(id, Pending { link, reply, sent: now, timed, held });
        Ok(id)
    }

    /// Takes back a request that was never sent; fails it with `error`.
    pub(super) fn fail(&mut self, id: u32, error: Error) {
        if let Some(p) = self.pending.as_mut().and_then(|m| m.remove(&id)) {
            p.reply.send(Err(error));
        }
    }

    /// Hands an answer that arrived at `now` to whoever waits for it (an
    /// `Error` becomes `Err`). A request is done with its last answer (for
    /// a `Walk`, the `Listing` marked `done`); returns its round trip if it
    /// is a timed one. An answer to no request in flight is dropped.
    pub(super) fn deliver(&mut self, packet: Packet, now: Instant) -> Option<Duration> {
        let pending = self.pending.as_mut()?;
        let last = !matches!(packet.msg, Message::Listing { done: false, .. });
        let id = packet.id;
        let result = match packet.msg {
            Message::Error { kind, message } => Err(Error::from_peer(kind, &message)),
            _ => Ok(packet),
        };
        if !last {
            if let Some(Pending { reply: Reply::Stream(tx), .. }) = pending.get(&id) {
                let _ = tx.send(result);
            }
            return None;
        }
        let p = pending.remove(&id)?;
        let round_trip = p.timed.then(|| now.saturating_duration_since(p.sent));
        p.reply.send(result);
        round_trip
    }

    /// Connection `link` is lost: its requests, to be sent again. Nothing
    /// more can be sent on it.
    pub(super) fn take_link(&mut self, link: usize) -> Vec<Unanswered<T>> {
        self.lost.insert(link);
        let Some(pending) = self.pending.as_mut() else { return Vec::new() };
        let ids: Vec<u32> = pending.iter().filter(|(_, p)| p.link == link).map(|(id, _)| *id).collect();
        let mut taken: Vec<Unanswered<T>> = ids
            .into_iter()
            .filter_map(|id| pending.remove(&id).map(|p| (id, p)))
            .map(|(id, p)| Unanswered { id, reply: p.reply, held: p.held })
            .collect();
        // Sent again in the order they were first sent.
        let newest = self.last_id;
        taken.sort_unstable_by_key(|u| std::cmp::Reverse(newest.wrapping_sub(u.id)));
        taken
    }

    /// Requests in flight on connection `link`.
    pub(super) fn on_link(&self, link: usize) -> usize {
        self.pending.as_ref().map_or(0, |m| m.values().filter(|p| p.link == link).count())
    }

    /// The session is lost: every request in flight fails with `Lost` and
    /// `why`, and no more are taken.
    pub(super) fn close(&mut self, why: &str) {
        for (_, p) in self.pending.take().into_iter().flatten() {
            p.reply.send(Err(Error::new(ErrorKind::Lost, why.to_owned())));
        }
    }

    /// Requests in flight.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.pending.as_ref().map_or(0, HashMap::len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::Entry;

    fn once() -> (Reply, oneshot::Receiver<Result<Packet, Error>>) {
        let (tx, rx) = oneshot::channel();
        (Reply::Once(tx), rx)
    }

    #[test]
    fn ids_skip_zero_and_those_in_flight_and_answers_find_their_request() {
        let t0 = Instant::now();
        let mut inflight = InFlight::<()>::new();
        inflight.last_id = u32::MAX - 1;
        let (a, mut ra) = once();
        let (b, mut rb) = once();
        let (c, _rc) = once();
        assert_eq!(inflight.insert(0, None, a, true, (), t0).ok(), Some(u32::MAX));
        assert_eq!(inflight.insert(1, None, b, false, (), t0).ok(), Some(1), "0 is never an id");
        inflight.last_id = 0;
        assert_eq!(inflight.insert(0, None, c, false, (), t0).ok(), Some(2), "1 is in flight");
        let later = t0 + Duration::from_millis(5);
        assert_eq!(inflight.deliver(Packet::new(1, Message::Done), later), None, "not timed");
        assert_eq!(rb.try_recv().unwrap().unwrap().msg, Message::Done);
        let error = Message::Error { kind: ErrorKind::Io, message: "disk \u{1b}[2J full".into() };
        assert_eq!(inflight.deliver(Packet::new(u32::MAX, error), later), Some(Duration::from_millis(5)));
        let e = ra.try_recv().unwrap().unwrap_err();
        assert_eq!(e.kind, ErrorKind::Io);
        assert!(!e.message.contains('\u{1b}'), "peer text is escaped");
        // An answer to nothing in flight (or a second answer) is dropped.
        assert_eq!(inflight.deliver(Packet::new(1, Message::Done), later), None);
        assert_eq!(inflight.len(), 1);
        // An id given (a request sent again) is used, unless in flight.
        let (d, _rd) = once();
        assert!(inflight.insert(1, Some(2), d, false, (), t0).is_err());
        let (e, _re) = once();
        assert_eq!(inflight.insert(1, Some(77), e, false, (), t0).ok(), Some(77));
    }

    #[test]
    fn a_walk_gets_every_listing_and_ends_with_the_last() {
        let t0 = Instant::now();
        let mut inflight = InFlight::<()>::new();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let id = inflight.insert(0, None, Reply::Stream(tx), false, (), t0).unwrap();
        let listing = |done| Message::Listing {
            entries: Vec::<Entry>::new(),
            problems: vec![format!("{done}")],
            done,
            root: None,
        };
        inflight.deliver(Packet::new(id, listing(false)), t0);
        inflight.deliver(Packet::new(id, listing(false)), t0);
        assert_eq!(inflight.len(), 1);
        inflight.deliver(Packet::new(id, listing(true)), t0);
        assert_eq!(inflight.len(), 0);
        let got: Vec<bool> = std::iter::from_fn(|| rx.try_recv().ok())
            .map(|r| matches!(r.unwrap().msg, Message::Listing { done: true, .. }))
            .collect();
        assert_eq!(got, [false, false, true]);
    }

    #[test]
    fn a_lost_connection_gives_back_its_requests_in_order_and_only_its_own() {
        let t0 = Instant::now();
        let mut inflight = InFlight::<&str>::new();
        inflight.last_id = u32::MAX - 2;
        for (link, name) in [(0, "a"), (1, "b"), (0, "c"), (0, "d")] {
            inflight.insert(link, None, once().0, false, name, t0).ok().unwrap();
        }
        assert_eq!((inflight.on_link(0), inflight.on_link(1)), (3, 1));
        let taken: Vec<(u32, &str)> = inflight.take_link(0).into_iter().map(|u| (u.id, u.held)).collect();
        assert_eq!(taken, [(u32::MAX - 1, "a"), (1, "c"), (2, "d")]);
        assert_eq!((inflight.on_link(0), inflight.len()), (0, 1));
        // A writer that has not noticed yet cannot send on it any more.
        assert!(inflight.insert(0, None, once().0, false, "e", t0).is_err());
        assert!(inflight.insert(1, None, once().0, false, "f", t0).is_ok());
    }

    #[test]
    fn a_lost_session_fails_everything_in_flight_and_takes_nothing_more() {
        let t0 = Instant::now();
        let mut inflight = InFlight::<()>::new();
        let (a, mut ra) = once();
        let (b, mut rb) = once();
        inflight.insert(0, None, a, false, (), t0).unwrap();
        let id = inflight.insert(1, None, b, false, (), t0).unwrap();
        inflight.fail(id, Error::new(ErrorKind::Protocol, "could not be encoded"));
        assert_eq!(rb.try_recv().unwrap().unwrap_err().kind, ErrorKind::Protocol);
        inflight.close("reset by peer");
        let e = ra.try_recv().unwrap().unwrap_err();
        assert_eq!((e.kind, e.message.as_str()), (ErrorKind::Lost, "reset by peer"));
        let (c, _rc) = once();
        assert!(inflight.insert(0, None, c, false, (), t0).is_err());
        assert_eq!(inflight.deliver(Packet::new(1, Message::Done), t0), None);
    }
}
