//! Every message declared once: its name, its place in the protocol (a
//! handshake step, a request and which role of the server serves it and
//! what answers it, or an answer), whether a payload travels with it, and
//! how much file data its answer carries. Everything that needs to know —
//! names in errors, the decoder's payload rule, the requests a session
//! refuses, the requests the client times, what a request costs in flight
//! on either side — reads it from here. A new message is one more line.

use super::message::Message;

/// Where a message belongs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// A step of the handshake (§7 of PROTOCOL.md).
    Handshake,
    /// A request, served by the server's role of the session.
    Request(Serves),
    /// An answer to a request.
    Answer,
}

/// Which role of a session serves a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Serves {
    /// The session itself, whatever its role (`Ping`, `Close`).
    Session,
    /// Either role (`Walk`, `Hash`, `HashFiles`).
    Either,
    /// The source: a download session.
    Source,
    /// The destination: an upload session.
    Destination,
}

/// What the protocol says of one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Declaration {
    /// The message's variant name, as on the wire and in errors.
    pub name: &'static str,
    /// Whether it is a handshake step, a request (and who serves it) or an
    /// answer.
    pub class: Class,
    /// A raw payload travels after its header (else it MUST NOT).
    pub payload: bool,
    /// For a request: the messages that answer it (besides `Error`).
    pub answers: &'static [&'static str],
    /// For a request: done at most once per request id. Sent again under
    /// the same id (after its connection was lost), it is answered with
    /// the first answer, not done again (§11 of PROTOCOL.md). The other
    /// requests read, or write the same bytes again: doing them twice has
    /// the effect of once.
    pub once: bool,
}

/// What a heap allocation costs beyond its bytes, about (the allocator's
/// header and rounding), for [`Message::list_bytes`].
const ALLOCATION: usize = 32;

impl Message {
    /// The declaration of this message.
    pub fn declaration(&self) -> Declaration {
        use Class::*;
        use Serves::*;
        // name, class, payload, once, answers
        let (name, class, payload, once, answers): (_, _, _, _, &'static [&'static str]) = match self {
            Message::Hello { .. } => ("Hello", Handshake, false, false, &["Challenge"]),
            Message::Challenge { .. } => ("Challenge", Handshake, false, false, &["Open", "Join"]),
            Message::Open { .. } => ("Open", Handshake, false, false, &["Welcome"]),
            Message::Join { .. } => ("Join", Handshake, false, false, &["Welcome"]),
            Message::Welcome { .. } => ("Welcome", Handshake, false, false, &[]),
            Message::Ping => ("Ping", Request(Session), false, false, &["Pong"]),
            Message::Walk => ("Walk", Request(Either), false, false, &["Listing"]),
            Message::Probe { .. } => ("Probe", Request(Destination), false, false, &["Probed"]),
            Message::Hash { .. } => ("Hash", Request(Either), false, false, &["Hashes"]),
            Message::HashFiles { .. } => ("HashFiles", Request(Either), false, false, &["FilesHashed"]),
            Message::Read { .. } => ("Read", Request(Source), false, false, &["Data", "Zeros"]),
            Message::ReadFiles { .. } => ("ReadFiles", Request(Source), false, false, &["FilesRead"]),
            Message::Begin { .. } => ("Begin", Request(Destination), false, true, &["Begun"]),
            Message::CopyOld { .. } => ("CopyOld", Request(Destination), false, false, &["Done"]),
            Message::Write { .. } => ("Write", Request(Destination), true, false, &["Done"]),
            Message::Zero { .. } => ("Zero", Request(Destination), false, false, &["Done"]),
            Message::Finish { .. } => ("Finish", Request(Destination), false, true, &["Done"]),
            Message::Discard { .. } => ("Discard", Request(Destination), false, true, &["Done"]),
            Message::PutFile { .. } => ("PutFile", Request(Destination), true, true, &["Done"]),
            Message::PutFiles { .. } => ("PutFiles", Request(Destination), true, true, &["FilesPut"]),
            Message::Apply { .. } => ("Apply", Request(Destination), false, true, &["Applied"]),
            Message::Close => ("Close", Request(Session), false, false, &["Done"]),
            Message::Pong => ("Pong", Answer, false, false, &[]),
            Message::Listing { .. } => ("Listing", Answer, false, false, &[]),
            Message::Probed { .. } => ("Probed", Answer, false, false, &[]),
            Message::Hashes { .. } => ("Hashes", Answer, false, false, &[]),
            Message::FilesHashed { .. } => ("FilesHashed", Answer, false, false, &[]),
            Message::Data { .. } => ("Data", Answer, true, false, &[]),
            Message::Zeros { .. } => ("Zeros", Answer, false, false, &[]),
            Message::FilesRead { .. } => ("FilesRead", Answer, true, false, &[]),
            Message::Begun { .. } => ("Begun", Answer, false, false, &[]),
            Message::Done => ("Done", Answer, false, false, &[]),
            Message::Applied { .. } => ("Applied", Answer, false, false, &[]),
            Message::FilesPut { .. } => ("FilesPut", Answer, false, false, &[]),
            Message::Error { .. } => ("Error", Answer, false, false, &[]),
        };
        Declaration { name, class, payload, answers, once }
    }

    /// The variant name, for logs and protocol errors.
    pub fn name(&self) -> &'static str {
        self.declaration().name
    }

    /// Does this message travel with a payload?
    pub fn has_payload(&self) -> bool {
        self.declaration().payload
    }

    /// Bytes of file data the answer to this request carries (a `Read`'s
    /// length, the lengths of a `ReadFiles` added up).
    pub fn answer_data(&self) -> u64 {
        match self {
            Message::Read { len, .. } => u64::from(*len),
            Message::ReadFiles { files } => files.iter().map(|(_, len)| u64::from(*len)).sum(),
            _ => 0,
        }
    }

    /// Bytes the lists of a decoded request take in memory besides the
    /// bytes its header encodes: each item's own size, and an allocation
    /// for its path or data. (A list holds at most [`super::MAX_LIST`].)
    pub fn list_bytes(&self) -> u64 {
        fn of<T>(items: &[T]) -> u64 {
            (items.len() * (std::mem::size_of::<T>() + ALLOCATION)) as u64
        }
        match self {
            Message::Probe { paths } => of(paths),
            Message::HashFiles { files } => of(files),
            Message::ReadFiles { files } => of(files),
            Message::CopyOld { ranges, .. } => of(ranges),
            Message::PutFiles { files } => of(files),
            Message::Apply { actions } => of(actions),
            _ => 0,
        }
    }

    /// Does this request move file data one way or the other (the requests
    /// whose round trips the client measures)?
    pub fn moves_data(&self) -> bool {
        self.has_payload() || self.answer_data() > 0
    }
}
