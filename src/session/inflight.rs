//! The requests in flight on one connection of the client's pool: the id
//! each was sent under, who waits for its answer, and when it left. Plain
//! data without I/O — time is an argument — so its rules are tested here;
//! the pool's writer and reader tasks share one behind a lock.

use std::collections::HashMap;
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

/// A request on the wire, and what it holds until it is answered (`T`: the
/// pool's share of the connection's budget).
struct Pending<T> {
    reply: Reply,
    sent: Instant,
    timed: bool,
    _held: T,
}

/// The requests in flight on one connection.
pub(super) struct InFlight<T> {
    /// `None` once the connection is gone.
    pending: Option<HashMap<u32, Pending<T>>>,
    last_id: u32,
}

impl<T> InFlight<T> {
    pub(super) fn new() -> Self {
        InFlight { pending: Some(HashMap::new()), last_id: 0 }
    }

    /// Registers a request sent at `now`: the id to send it under (never 0,
    /// never one in flight). A closed connection gives the reply back.
    pub(super) fn insert(&mut self, reply: Reply, timed: bool, held: T, now: Instant) -> Result<u32, Reply> {
        let Some(pending) = self.pending.as_mut() else { return Err(reply) };
        let mut id = self.last_id;
        loop {
            id = id.wrapping_add(1).max(1);
            if !pending.contains_key(&id) {
                break;
            }
        }
        self.last_id = id;
        pending.insert(id, Pending { reply, sent: now, timed, _held: held });
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

    /// The connection is gone: every request in flight fails with `Lost`
    /// and `why`, and no more are taken.
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
        assert_eq!(inflight.insert(a, true, (), t0).ok(), Some(u32::MAX));
        assert_eq!(inflight.insert(b, false, (), t0).ok(), Some(1), "0 is never an id");
        inflight.last_id = 0;
        assert_eq!(inflight.insert(c, false, (), t0).ok(), Some(2), "1 is in flight");
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
    }

    #[test]
    fn a_walk_gets_every_listing_and_ends_with_the_last() {
        let t0 = Instant::now();
        let mut inflight = InFlight::<()>::new();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let id = inflight.insert(Reply::Stream(tx), false, (), t0).unwrap();
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
    fn a_lost_connection_fails_everything_in_flight_and_takes_nothing_more() {
        let t0 = Instant::now();
        let mut inflight = InFlight::<()>::new();
        let (a, mut ra) = once();
        let (b, mut rb) = once();
        inflight.insert(a, false, (), t0).unwrap();
        let id = inflight.insert(b, false, (), t0).unwrap();
        inflight.fail(id, Error::new(ErrorKind::Protocol, "could not be encoded"));
        assert_eq!(rb.try_recv().unwrap().unwrap_err().kind, ErrorKind::Protocol);
        inflight.close("reset by peer");
        let e = ra.try_recv().unwrap().unwrap_err();
        assert_eq!((e.kind, e.message.as_str()), (ErrorKind::Lost, "reset by peer"));
        let (c, _rc) = once();
        assert!(inflight.insert(c, false, (), t0).is_err());
        assert_eq!(inflight.deliver(Packet::new(1, Message::Done), t0), None);
    }
}
