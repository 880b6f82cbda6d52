//! How the fuzzer draws a request and each selector of
//! [`ops`](super::ops) (`Arbitrary`), from the values of
//! [`choices`](super::choices): weighted towards what gets furthest (valid
//! proofs, the next request id, the right digest). On input that has run
//! out, every draw gives the first, most common choice.

use arbitrary::{Arbitrary, Result, Unstructured};
use serde_bytes::ByteBuf;

use super::choices::{
    dict, kind, meta, mtime, path, pick, span, up_to, ANY, LENGTHS, LEN_MASK, MAX_FILL, OFFSETS, SIZES,
    SIZE_MASK, TARGETS, WRITE_OFFSETS,
};
use super::ops::{Data, DigestSel, HandleSel, IdSel, LenSel, OffSel, Proof, Req, SessionRef};
use crate::codec::{
    Action, DigestList, ErrorKind, HashTarget, Kind, Message, Meta, Mtime, RelPath, Stat, PROTOCOL_VERSION,
};

fn action(u: &mut Unstructured<'_>) -> Result<Action> {
    Ok(match u.int_in_range(0..=3u8)? {
        0 => Action::MakeDir { path: path(u)? },
        1 => Action::Symlink { path: path(u)?, target: ByteBuf::from(dict(u, TARGETS)?), mtime: mtime(u)? },
        2 => Action::SetMeta { path: path(u)?, kind: kind(u)?, meta: meta(u)? },
        _ => Action::Remove { path: path(u)?, kind: kind(u)? },
    })
}

/// A file size for `Begin`: one of [`SIZES`], or one of at most 1 MiB.
fn size(u: &mut Unstructured<'_>) -> Result<u64> {
    let size = pick(u, SIZES)?;
    Ok(if SIZES.contains(&size) { size } else { size & SIZE_MASK })
}

/// Messages that are no requests: the server must refuse each one.
fn non_request(u: &mut Unstructured<'_>) -> Result<Message> {
    let meta = Meta { mode: 0o644, mtime: Mtime { secs: 1_700_000_000, nanos: 0 }, extra: None };
    let stat = Stat { kind: Kind::File, size: 1, meta: meta.clone(), target: None };
    let zeros = |n: usize| ByteBuf::from(vec![0; n]);
    Ok(match u.int_in_range(0..=14u8)? {
        0 => Message::Hello { version: PROTOCOL_VERSION, nonce: zeros(32) },
        1 => Message::Challenge { version: PROTOCOL_VERSION, nonce: zeros(32), token_required: false },
        2 => Message::Join { session: 1, proof: None },
        3 => Message::Welcome {
            session: 1,
            idle_timeout_ms: 1000,
            max_payload: 1024,
            max_connections: 4,
            proof: zeros(32),
            secret: Some(zeros(32)),
            bwlimit: 0,
            privileged: false,
        },
        4 => Message::Pong,
        5 => {
            Message::Listing { entries: Vec::new(), problems: vec!["x".into()], done: true, root: Some(meta) }
        }
        6 => Message::Probed { found: vec![None, Some(stat)] },
        7 => Message::Hashes { digests: DigestList(vec![1; 8]) },
        8 => Message::Data { digest: zeros(8), file: stat },
        9 => Message::Begun { handle: 1, partial: false },
        10 => Message::Done,
        11 => Message::Applied { failures: vec![(RelPath::root(), "x".into())] },
        12 => Message::Error { kind: ErrorKind::Protocol, message: "from the client".into() },
        13 => Message::Error { kind: ErrorKind::Lost, message: String::new() },
        _ => Message::Hello { version: PROTOCOL_VERSION + 1, nonce: ByteBuf::new() },
    })
}

impl<'a> Arbitrary<'a> for Req {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        Ok(match u.int_in_range(0..=23u8)? {
            0 => Req::Msg(Message::Ping),
            1 => Req::Msg(Message::Walk),
            2 => Req::Msg(Message::Probe { paths: up_to(u, 4, path)? }),
            3 => Req::Msg(Message::Hash { target: HashTarget::Path(path(u)?), span: span(u)? }),
            4 => Req::HashHandle { handle: u.arbitrary()?, span: span(u)? },
            5 | 6 => Req::Read { path: path(u)?, offset: pick(u, OFFSETS)?, len: u.arbitrary()? },
            7 | 8 => Req::Msg(Message::Begin { path: path(u)?, size: size(u)? }),
            9 => Req::CopyOld {
                handle: u.arbitrary()?,
                ranges: up_to(u, 2, |u| Ok((pick(u, OFFSETS)?, pick(u, LENGTHS)?)))?,
            },
            10..=12 => Req::Write {
                handle: u.arbitrary()?,
                offset: u.arbitrary()?,
                data: u.arbitrary()?,
                digest: u.arbitrary()?,
            },
            13 => Req::Finish { handle: u.arbitrary()?, meta: meta(u)? },
            14 => Req::Discard { handle: u.arbitrary()?, remove: u.arbitrary()? },
            15 | 16 => {
                Req::PutFile { path: path(u)?, meta: meta(u)?, data: u.arbitrary()?, digest: u.arbitrary()? }
            }
            17 | 18 => Req::Msg(Message::Apply { actions: up_to(u, 3, action)? }),
            19 => Req::Msg(Message::Close),
            20 => Req::Msg(non_request(u)?),
            21 => Req::PutFiles {
                files: up_to(u, 3, |u| Ok((path(u)?, meta(u)?, u.arbitrary()?, u.arbitrary()?)))?,
            },
            22 => Req::Msg(Message::ReadFiles {
                files: up_to(u, 3, |u| Ok((path(u)?, pick(u, &[3000, 1, 0, 1024, 5000, u32::MAX])?)))?,
            }),
            _ => Req::Stray(u.arbitrary()?),
        })
    }
}

impl<'a> Arbitrary<'a> for Proof {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        Ok(match u.int_in_range(0..=11u8)? {
            0..=5 => Proof::Valid,
            6 => Proof::Missing,
            7 => Proof::Wrong,
            8 => Proof::Short,
            9 => Proof::OtherToken,
            10 => Proof::NoSecret,
            _ => Proof::OtherIntent,
        })
    }
}

impl<'a> Arbitrary<'a> for SessionRef {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        Ok(match u8::arbitrary(u)? {
            ANY => SessionRef::Raw(u.arbitrary()?),
            n => SessionRef::Known(n),
        })
    }
}

impl<'a> Arbitrary<'a> for HandleSel {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        Ok(match u8::arbitrary(u)? {
            ANY => HandleSel::Raw(u.arbitrary()?),
            n => HandleSel::Known(n),
        })
    }
}

impl<'a> Arbitrary<'a> for IdSel {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        Ok(match u.int_in_range(0..=31u8)? {
            0..=28 => IdSel::Next,
            29 => IdSel::Zero,
            30 => IdSel::Last,
            _ => IdSel::Raw(u.arbitrary()?),
        })
    }
}

impl<'a> Arbitrary<'a> for LenSel {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        Ok(match u.int_in_range(0..=8u8)? {
            0..=2 => LenSel::Chunk,
            3 => LenSel::ChunkPlus1,
            4 => LenSel::Value(0),
            5 => LenSel::Value(1),
            6 => LenSel::Value(100),
            7 => LenSel::Value(u32::MAX),
            _ => LenSel::Value(u32::arbitrary(u)? & LEN_MASK),
        })
    }
}

impl<'a> Arbitrary<'a> for OffSel {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        Ok(match u8::arbitrary(u)? {
            ANY => OffSel::Value(u.arbitrary()?),
            k @ 0..16 => OffSel::Chunk(k),
            b => OffSel::Value(WRITE_OFFSETS[usize::from(b - 16) % WRITE_OFFSETS.len()]),
        })
    }
}

impl<'a> Arbitrary<'a> for Data {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        Ok(match u8::arbitrary(u)? {
            ANY => Data::Fill(u.arbitrary()?, u32::arbitrary(u)? % (MAX_FILL + 1)),
            n => Data::Bytes(u.bytes(usize::from(n).min(u.len()))?.to_vec()),
        })
    }
}

impl<'a> Arbitrary<'a> for DigestSel {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        Ok(match u.int_in_range(0..=7u8)? {
            0..=4 => DigestSel::Right,
            5 => DigestSel::Wrong,
            6 => DigestSel::Short,
            _ => DigestSel::Empty,
        })
    }
}
