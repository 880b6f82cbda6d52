//! PROTOCOL.md's examples, checked against the code: every encoded message
//! of its appendix (§16) is exactly what the encoder makes of the message
//! its title describes, and decodes back to it. So a second implementer
//! can trust the vectors, and a change of the wire format cannot leave them
//! behind.

use bytes::{Bytes, BytesMut};
use pareco::codec::{
    Action, DigestList, Direction, Entry, ErrorKind, Extra, FileFailure, FileRead, FrameCodec, HashAlgo,
    HashTarget, Id, IdName, Kind, Message, Meta, Mtime, Packet, Preserve, RelPath, SessionSpec, SmallFile,
    Span, Stat, Xattr, XattrDigest, XattrList, Xattrs, MAX_PAYLOAD_CAP,
};
use serde_bytes::ByteBuf;
use tokio_util::codec::Decoder;

/// One example of the appendix: its title line and its bytes (the frame's
/// prefix and header, then the payload).
struct Example {
    title: String,
    head: Vec<u8>,
    payload: Vec<u8>,
}

/// The examples of §16: a title line, then indented lines of hex bytes;
/// `|` separates the payload; `XX…XX` stands for a run of `XX` as long as
/// the `bin` marker before it (`c4 NN`) says.
fn appendix() -> Vec<Example> {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/PROTOCOL.md")).unwrap();
    let section = doc.split("## 16. Appendix").nth(1).expect("the appendix");
    let block = section.split("```").nth(1).expect("a code block");
    let mut examples: Vec<Example> = Vec::new();
    for line in block.lines().filter(|l| !l.trim().is_empty()) {
        if !line.starts_with(' ') {
            examples.push(Example { title: line.to_owned(), head: Vec::new(), payload: Vec::new() });
            continue;
        }
        let example = examples.last_mut().expect("bytes after a title");
        for token in line.split_whitespace() {
            let into_payload = !example.payload.is_empty() || token == "|";
            if token == "|" {
                example.payload.push(0); // a marker, dropped below
                continue;
            }
            let bytes = if into_payload { &mut example.payload } else { &mut example.head };
            match token.split_once('…') {
                Some((a, b)) => {
                    assert_eq!(a, b, "{}: {token}", example.title);
                    let byte = u8::from_str_radix(a, 16).unwrap();
                    let n = bytes.len();
                    assert!(
                        n >= 2 && bytes[n - 2] == 0xc4,
                        "{}: {token} without a bin8 marker",
                        example.title
                    );
                    let len = bytes[n - 1] as usize;
                    bytes.extend(std::iter::repeat_n(byte, len));
                }
                None => bytes.push(
                    u8::from_str_radix(token, 16)
                        .unwrap_or_else(|_| panic!("{}: not a hex byte: {token}", example.title)),
                ),
            }
        }
    }
    for example in &mut examples {
        if !example.payload.is_empty() {
            example.payload.remove(0);
        }
    }
    examples
}

/// The messages the appendix's titles describe, in its order (handshake
/// messages with id 0, the others with id 42).
fn described() -> Vec<Packet> {
    let rel = |p: &str| RelPath::new(p).unwrap();
    let bin = |byte: u8, n: usize| ByteBuf::from(vec![byte; n]);
    let meta = Meta { mode: 0o644, mtime: Mtime { secs: 1_700_000_000, nanos: 5 }, extra: None };
    let file = Stat { kind: Kind::File, size: 10, meta: meta.clone(), target: None };
    let link =
        Stat { kind: Kind::Symlink, size: 0, meta: meta.clone(), target: Some(ByteBuf::from(b"t".to_vec())) };
    let spec = |direction, hash, inplace| SessionSpec {
        direction,
        path: rel("data"),
        chunk_size: 1 << 20,
        hash,
        includes: vec!["*.txt".into()],
        excludes: Vec::new(),
        inplace,
        delete: inplace,
        fsync: false,
        hard_links: inplace,
        sparse: inplace,
        bwlimit: 0,
        preserve: Default::default(),
    };
    let digest8 = || ByteBuf::from((1u8..=8).collect::<Vec<u8>>());
    // Protocol 4: owners, groups and attributes, in a session that asks.
    let preserve = Preserve { owner: true, group: true, numeric_ids: false, xattrs: true, privileged: true };
    let alice = Id { id: 1000, name: Some(IdName::new(b"alice".to_vec()).unwrap()) };
    let attrs = XattrList::new(vec![Xattr {
        name: ByteBuf::from(b"user.a".to_vec()),
        value: ByteBuf::from(b"v".to_vec()),
    }])
    .unwrap();
    let with_extra = |xattrs| Meta {
        extra: Some(Box::new(Extra {
            owner: Some(alice.clone()),
            group: Some(Id { id: 1000, name: None }),
            xattrs: Some(xattrs),
        })),
        ..meta.clone()
    };
    let listed = with_extra(Xattrs::Listed(attrs));
    let probed = with_extra(Xattrs::Digest(XattrDigest([0x5a; 32])));
    let session = 0x0123_4567_89ab_cdef;
    let welcome = |secret, bwlimit, privileged| Message::Welcome {
        session,
        idle_timeout_ms: 150_000,
        max_payload: 1 << 20,
        max_connections: 64,
        proof: bin(0xdd, 32),
        secret,
        bwlimit,
        privileged,
    };
    let span = |size, first, count, group| Span { size, first, count, group };
    let hs = |msg| Packet::new(0, msg);
    let rq = |msg| Packet::new(42, msg);
    let with = |msg, payload: &'static [u8]| Packet::with_payload(42, msg, Bytes::from_static(payload));
    vec![
        hs(Message::Hello { version: 4, nonce: bin(0xcc, 32) }),
        hs(Message::Challenge { version: 4, nonce: bin(0xaa, 32), token_required: true }),
        hs(Message::Open { proof: None, spec: spec(Direction::Upload, HashAlgo::Xxh3, false) }),
        hs(Message::Open {
            proof: Some(bin(0xbb, 32)),
            spec: spec(Direction::Download, HashAlgo::Adler32, true),
        }),
        hs(Message::Open {
            proof: None,
            spec: SessionSpec { preserve, ..spec(Direction::Upload, HashAlgo::Xxh3, false) },
        }),
        hs(Message::Open {
            proof: None,
            spec: SessionSpec { bwlimit: 20 << 20, ..spec(Direction::Upload, HashAlgo::Xxh3, false) },
        }),
        hs(Message::Join { session, proof: None }),
        hs(welcome(Some(bin(0xee, 32)), 0, false)),
        hs(welcome(None, 0, false)),
        hs(welcome(Some(bin(0xee, 32)), 0, true)),
        hs(welcome(None, 20 << 20, false)),
        rq(Message::Ping),
        rq(Message::Walk),
        rq(Message::Probe { paths: vec![rel("a"), rel("b/c")] }),
        rq(Message::Hash { target: HashTarget::Path(rel("f")), span: span(3_000_000, 0, 3, 1) }),
        rq(Message::Hash { target: HashTarget::Path(rel("f")), span: span(3_000_000, 0, 1024, 16) }),
        rq(Message::Hash { target: HashTarget::Handle(7), span: span(3_000_000, 1024, 1024, 1) }),
        rq(Message::HashFiles { files: vec![(rel("a"), 2), (rel("b"), 3)] }),
        rq(Message::Read { path: rel("f"), offset: 1 << 20, len: 1 << 20 }),
        rq(Message::ReadFiles { files: vec![(rel("a"), 2), (rel("b"), 3)] }),
        rq(Message::Begin { path: rel("f"), size: 3_000_000 }),
        rq(Message::CopyOld { handle: 1, ranges: vec![(0, 1 << 20), (2 << 20, 902_848)] }),
        with(Message::Write { handle: 1, offset: 1 << 20, digest: digest8() }, b"hello"),
        rq(Message::Zero { handle: 1, offset: 2 << 20, len: 1 << 20 }),
        rq(Message::Finish { handle: 1, meta: meta.clone() }),
        rq(Message::Discard { handle: 1, remove: true }),
        with(Message::PutFile { path: rel("s"), meta: meta.clone(), digest: bin(9, 8) }, b"hi"),
        with(
            Message::PutFiles {
                files: vec![
                    SmallFile { path: rel("s"), meta: meta.clone(), len: 2, digest: bin(9, 8) },
                    SmallFile { path: rel("t"), meta: meta.clone(), len: 0, digest: bin(9, 8) },
                ],
            },
            b"hi",
        ),
        rq(Message::Apply {
            actions: vec![
                Action::MakeDir { path: rel("d") },
                Action::Symlink { path: rel("l"), target: ByteBuf::from(b"t".to_vec()), mtime: meta.mtime },
                Action::SetMeta { path: rel("d"), kind: Kind::Dir, meta: meta.clone() },
                Action::Remove { path: rel("x"), kind: Kind::File },
                Action::Link { path: rel("g"), target: rel("f") },
            ],
        }),
        rq(Message::Close),
        rq(Message::Pong),
        rq(Message::Listing {
            entries: vec![
                Entry { path: rel("f"), stat: file.clone(), link: Some(3) },
                Entry { path: rel("l"), stat: link, link: None },
            ],
            problems: vec!["x: denied".into()],
            done: false,
            root: Some(meta.clone()),
        }),
        rq(Message::Listing { entries: Vec::new(), problems: Vec::new(), done: true, root: None }),
        rq(Message::Listing {
            entries: vec![Entry {
                path: rel("f"),
                stat: Stat { meta: listed.clone(), ..file.clone() },
                link: None,
            }],
            problems: Vec::new(),
            done: false,
            root: None,
        }),
        rq(Message::Probed { found: vec![Some(file.clone()), None] }),
        rq(Message::Probed { found: vec![Some(Stat { meta: probed, ..file.clone() })] }),
        rq(Message::Hashes { digests: DigestList([1u64.to_be_bytes(), 2u64.to_be_bytes()].concat()) }),
        rq(Message::FilesHashed {
            digests: DigestList([1u64.to_be_bytes(), 2u64.to_be_bytes()].concat()),
            failures: vec![FileFailure { index: 1, kind: ErrorKind::NotFound, message: "b".into() }],
        }),
        with(Message::Data { digest: digest8(), file: file.clone() }, b"hello"),
        rq(Message::Zeros { file: file.clone() }),
        with(
            Message::FilesRead {
                files: vec![
                    FileRead::Read { digest: digest8(), file },
                    FileRead::Failed { kind: ErrorKind::NotFound, message: "b".into() },
                ],
            },
            b"hi",
        ),
        rq(Message::Begun { handle: 1, partial: false }),
        rq(Message::Done),
        rq(Message::Applied { failures: vec![(rel("x"), "boom".into())] }),
        rq(Message::FilesPut {
            failures: vec![FileFailure { index: 1, kind: ErrorKind::DigestMismatch, message: "t".into() }],
        }),
        rq(Message::Error { kind: ErrorKind::Version, message: "v".into() }),
    ]
}

#[test]
fn every_encoded_example_of_the_appendix_is_what_the_code_encodes() {
    let examples = appendix();
    let described = described();
    assert_eq!(examples.len(), described.len(), "examples in the appendix");
    for (example, packet) in examples.iter().zip(&described) {
        let title = &example.title;
        assert_eq!(title.split(['{', ' ']).next(), Some(packet.msg.name()), "{title}");
        let head = packet.encode_head().unwrap();
        assert_eq!(&head[..], &example.head[..], "{title}: the encoder gives other bytes");
        assert_eq!(&packet.payload[..], &example.payload[..], "{title}: payload");
        let mut frame = BytesMut::from(&example.head[..]);
        frame.extend_from_slice(&example.payload);
        let decoded = FrameCodec::new(MAX_PAYLOAD_CAP)
            .decode(&mut frame)
            .unwrap_or_else(|e| panic!("{title}: does not decode: {e}"))
            .unwrap_or_else(|| panic!("{title}: an incomplete frame"));
        assert_eq!(&decoded, packet, "{title}");
        assert!(frame.is_empty(), "{title}: bytes left over");
    }
    // Every message of the protocol has its example.
    let mut names: Vec<&str> = described.iter().map(|p| p.msg.name()).collect();
    names.dedup();
    assert_eq!(names.len(), 35, "{names:?}");
}

/// Prints the bytes of every example as the appendix writes them (to
/// update it after a change of the wire format):
/// `cargo test --test it protocol_doc::print_appendix -- --ignored --nocapture`.
#[test]
#[ignore]
fn print_appendix() {
    for packet in described() {
        let mut bytes: Vec<String> =
            packet.encode_head().unwrap().iter().map(|b| format!("{b:02x}")).collect();
        if !packet.payload.is_empty() {
            bytes.push("|".into());
            bytes.extend(packet.payload.iter().map(|b| format!("{b:02x}")));
        }
        println!("{}\n  {}", packet.msg.name(), bytes.join(" "));
    }
}
