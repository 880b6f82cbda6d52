//! What each [`Op`] sends, made from what the run has learnt so far.

use bytes::Bytes;
use serde_bytes::ByteBuf;

use super::checks::server_key;
use super::client::{intent_message, key_of, Handshake};
use super::driver::{client_nonce, Intent, Run, Sent};
use super::fixture::SERVERS;
use super::frames::frame_bytes;
use super::mirror;
use super::ops::{
    BadMsg, Data, DigestSel, HandleSel, IdSel, LenSel, OffSel, Op, Proof, Req, SessionRef, Step, SLOTS,
};
use crate::codec::{
    Direction, HashAlgo, HashTarget, Message, Meta, Mtime, Packet, RelPath, SessionSpec, SmallFile, Span,
};
use crate::peer::hash;
use crate::session::auth::{Secret, NONCE_LEN, SECRET_LEN};
use crate::session::handshake::{intent_bytes, Wants};

/// A token the fixture's servers do not know.
const OTHER_TOKEN: &str = "not-the-token";
/// The metadata of the files of mirror messages.
const META: Meta = Meta { mode: 0o644, mtime: Mtime { secs: 1_700_000_000, nanos: 0 }, extra: None };

fn intent_of(wants: &Wants) -> Vec<u8> {
    intent_bytes(wants).expect("an intent encodes")
}

/// The direction a session spec does not have.
fn flip(direction: Direction) -> Direction {
    match direction {
        Direction::Upload => Direction::Download,
        Direction::Download => Direction::Upload,
    }
}

fn payload(data: &Data) -> Bytes {
    match data {
        Data::Bytes(bytes) => Bytes::from(bytes.clone()),
        Data::Fill(byte, len) => Bytes::from(vec![*byte; *len as usize]),
    }
}

fn digest(sel: DigestSel, algo: HashAlgo, data: &[u8]) -> ByteBuf {
    let right = hash::digest(algo, data);
    match sel {
        DigestSel::Right => hash::encode(algo, right),
        DigestSel::Wrong => hash::encode(algo, right ^ 1),
        DigestSel::Short => {
            let mut digest = hash::encode(algo, right).into_vec();
            digest.pop();
            ByteBuf::from(digest)
        }
        DigestSel::Empty => ByteBuf::new(),
    }
}

/// The `Hello` nonce or the intent the server makes of `msg` if it is a
/// connection's first or second frame (for messages sent as requests).
fn noted(msg: &Message) -> (Option<Vec<u8>>, Option<Sent>) {
    let sent = |wants| Some(Sent { wants, secret: None, valid: false });
    match msg {
        Message::Hello { nonce, .. } => (Some(nonce.to_vec()), None),
        Message::Open { spec, .. } => (None, sent(Wants::Open(spec.clone()))),
        Message::Join { session, .. } => (None, sent(Wants::Join(*session))),
        _ => (None, None),
    }
}

impl Run<'_> {
    /// Performs one step.
    pub(super) async fn step(&mut self, step: &Step) {
        let slot = usize::from(step.slot) % SLOTS;
        if let Op::Connect { server } = step.op {
            self.connect(slot, usize::from(server) % SERVERS);
            return;
        }
        if self.conns[slot].is_none() {
            self.connect(slot, slot % SERVERS);
        }
        self.pump(slot);
        let server = self.conn(slot).server;
        match &step.op {
            Op::Open { spec, .. } if spec.direction == Direction::Upload => self.dirty[server] = true,
            // A path given in full may be one the codec takes.
            Op::BadPath { msg: BadMsg::Open { upload: true, .. }, .. } => self.dirty[server] = true,
            // Anything may come of these bytes.
            Op::Raw { .. } | Op::Mutate { .. } | Op::Truncate { .. } => {
                self.dirty[server] = true;
                self.opened[server] = true;
            }
            _ => {}
        }
        let before = self.conn(slot).id0;
        match &step.op {
            // Done above.
            Op::Connect { .. } => {}
            Op::Hello { version, nonce_len } => {
                let nonce = client_nonce(self.conn(slot).serial, *nonce_len);
                let hello = Message::Hello { version: *version, nonce: ByteBuf::from(nonce.clone()) };
                let sent =
                    self.send_frame(slot, &frame_bytes(&Packet::new(0, hello)), Some(nonce), None).await;
                if sent && step.wait {
                    self.wait(slot, |c| c.id0 > before).await;
                }
            }
            Op::Open { proof, spec } => {
                self.conn(slot).intent.get_or_insert(Intent::Open(spec.hash));
                let wants = Wants::Open(spec.clone());
                let other = Wants::Open(SessionSpec { direction: flip(spec.direction), ..spec.clone() });
                let (proof, valid) = self.proof(slot, *proof, &intent_of(&wants), &intent_of(&other), None);
                let bytes = frame_bytes(&Packet::new(0, intent_message(wants.clone(), proof)));
                self.send_intent(slot, &bytes, Some(Sent { wants, secret: None, valid }), step.wait).await;
            }
            Op::Join { proof, session } => {
                let (session, secret) = self.session(*session);
                self.conn(slot).intent.get_or_insert(Intent::Join);
                let wants = Wants::Join(session);
                let other = intent_of(&Wants::Join(session.wrapping_add(1)));
                let (proof, valid) = self.proof(slot, *proof, &intent_of(&wants), &other, Some(secret));
                let bytes = frame_bytes(&Packet::new(0, intent_message(wants.clone(), proof)));
                self.send_intent(slot, &bytes, Some(Sent { wants, secret, valid }), step.wait).await;
            }
            Op::Request { id, req } => {
                let id = self.request_id(slot, *id);
                let (msg, payload) = self.resolve(slot, req);
                let (hello, intent) = noted(&msg);
                // Before the Welcome, the server answers with id 0 (or
                // waits for more of the handshake).
                *self.conn(slot).outstanding.entry(id).or_default() += 1;
                let bytes = frame_bytes(&Packet::with_payload(id, msg, payload));
                if self.send_frame(slot, &bytes, hello, intent).await && step.wait {
                    self.wait(slot, |c| !c.outstanding.contains_key(&id) || c.id0 > before).await;
                }
            }
            Op::Raw { bytes } => {
                self.send(slot, bytes).await;
                self.conn(slot).desynced = true;
            }
            Op::Mutate { id, req, at, xor } => {
                let id = self.request_id(slot, *id);
                let (msg, payload) = self.resolve(slot, req);
                let (hello, intent) = noted(&msg);
                let mut bytes = frame_bytes(&Packet::with_payload(id, msg, payload));
                let at = usize::from(*at) % bytes.len();
                bytes[at] ^= *xor;
                if *xor == 0 {
                    self.send_frame(slot, &bytes, hello, intent).await;
                } else {
                    self.send(slot, &bytes).await;
                    self.conn(slot).desynced = true;
                }
            }
            Op::Truncate { id, req, keep } => {
                let id = self.request_id(slot, *id);
                let (msg, payload) = self.resolve(slot, req);
                let bytes = frame_bytes(&Packet::with_payload(id, msg, payload));
                self.send(slot, &bytes[..usize::from(*keep) % bytes.len()]).await;
                self.conn(slot).desynced = true;
            }
            Op::BadPath { id, msg } => {
                let id = self.request_id(slot, *id);
                let (bytes, intent) = self.bad_frame(slot, id, msg);
                if let BadMsg::Open { .. } = msg {
                    self.conn(slot).intent.get_or_insert(Intent::Open(HashAlgo::Xxh3));
                    self.send_intent(slot, &bytes, intent, step.wait).await;
                } else {
                    // The header does not decode: an error with id 0 and the
                    // end (a path given in full may be a valid one: then an
                    // answer to the request).
                    *self.conn(slot).outstanding.entry(id).or_default() += 1;
                    if self.send_frame(slot, &bytes, None, None).await && step.wait {
                        self.wait(slot, |c| !c.outstanding.contains_key(&id) || c.id0 > before).await;
                    }
                }
            }
            Op::ShutdownWrite => self.shutdown_write(slot).await,
            Op::Drop => self.disconnect(slot),
            Op::Sync => self.wait(slot, |c| c.outstanding.is_empty()).await,
        }
    }

    /// The proof `proof` for the intent whose bytes are `intent`
    /// (`other`: those of another intent), for a join of a session whose
    /// secret is `join` (`Some(None)`: not known), and whether it is the
    /// proof a correct client sends: made with both nonces of the
    /// connection and, for a join, the session's secret.
    pub(super) fn proof(
        &self,
        slot: usize,
        proof: Proof,
        intent: &[u8],
        other: &[u8],
        join: Option<Option<Secret>>,
    ) -> (Option<Vec<u8>>, bool) {
        let conn = self.conns[slot].as_ref().expect("a proof on a connected slot");
        let zeros = [0; NONCE_LEN];
        let client = conn.client_nonce.as_deref().unwrap_or(&zeros);
        let server = conn.server_nonce.as_deref().unwrap_or(&zeros);
        let secret = join.map(|secret| secret.unwrap_or([0; SECRET_LEN]));
        let key = server_key(conn.server);
        let made = |key, secret: Option<&Secret>, intent| {
            Handshake::new(key, secret, client, server, intent).client_proof().to_vec()
        };
        let valid = made(&key, secret.as_ref(), intent);
        let proof = match proof {
            Proof::Valid => valid.clone(),
            Proof::Missing => return (None, false),
            Proof::Wrong => {
                let mut wrong = valid.clone();
                wrong[0] ^= 1;
                wrong
            }
            Proof::Short => valid[..31].to_vec(),
            Proof::OtherToken => made(&key_of(Some(OTHER_TOKEN)), secret.as_ref(), intent),
            Proof::NoSecret => made(&key, None, intent),
            Proof::OtherIntent => made(&key, secret.as_ref(), other),
        };
        let right = proof == valid
            && conn.client_nonce.is_some()
            && conn.server_nonce.is_some()
            && join.is_none_or(|secret| secret.is_some());
        (Some(proof), right)
    }

    /// The id and, if known, the secret of the session `session`.
    fn session(&self, session: SessionRef) -> (u64, Option<Secret>) {
        match session {
            SessionRef::Known(n) if self.sessions.is_empty() => (u64::from(n), None),
            SessionRef::Known(n) => {
                let known = &self.sessions[usize::from(n) % self.sessions.len()];
                (known.id, known.secret)
            }
            SessionRef::Raw(id) => (id, self.sessions.iter().find(|k| k.id == id).and_then(|k| k.secret)),
        }
    }

    fn request_id(&mut self, slot: usize, id: IdSel) -> u32 {
        let conn = self.conn(slot);
        let id = match id {
            IdSel::Next => {
                conn.next_id = conn.next_id.wrapping_add(1).max(1);
                conn.next_id
            }
            IdSel::Zero => 0,
            IdSel::Last => conn.last_id,
            IdSel::Raw(id) => id,
        };
        conn.last_id = id;
        id
    }

    fn handle(&self, handle: HandleSel) -> u64 {
        match handle {
            HandleSel::Known(n) if self.handles.is_empty() => u64::from(n),
            HandleSel::Known(n) => self.handles[usize::from(n) % self.handles.len()],
            HandleSel::Raw(handle) => handle,
        }
    }

    /// The message and payload of a request, with what the run learnt.
    fn resolve(&mut self, slot: usize, req: &Req) -> (Message, Bytes) {
        let conn = self.conn(slot);
        let (algo, chunk) = (conn.algo, conn.chunk);
        let msg = match req {
            Req::Msg(msg) => msg.clone(),
            Req::HashHandle { handle, span } => {
                Message::Hash { target: HashTarget::Handle(self.handle(*handle)), span: *span }
            }
            Req::Read { path, offset, len } => {
                let len = match len {
                    LenSel::Chunk => chunk.min(super::choices::READ_CAP),
                    LenSel::ChunkPlus1 => chunk.saturating_add(1),
                    LenSel::Value(len) => *len,
                };
                Message::Read { path: path.clone(), offset: *offset, len }
            }
            Req::CopyOld { handle, ranges } => {
                Message::CopyOld { handle: self.handle(*handle), ranges: ranges.clone() }
            }
            Req::Write { handle, offset, data, digest: sel } => {
                let data = payload(data);
                let offset = match offset {
                    OffSel::Chunk(k) => u64::from(*k) * u64::from(chunk),
                    OffSel::Value(offset) => *offset,
                };
                let digest = digest(*sel, algo, &data);
                return (Message::Write { handle: self.handle(*handle), offset, digest }, data);
            }
            Req::Finish { handle, meta } => {
                Message::Finish { handle: self.handle(*handle), meta: meta.clone() }
            }
            Req::Discard { handle, remove } => {
                Message::Discard { handle: self.handle(*handle), remove: *remove }
            }
            Req::PutFile { path, meta, data, digest: sel } => {
                let data = payload(data);
                let digest = digest(*sel, algo, &data);
                return (Message::PutFile { path: path.clone(), meta: meta.clone(), digest }, data);
            }
            Req::PutFiles { files } => {
                let mut all = Vec::new();
                let files = files
                    .iter()
                    .map(|(path, meta, data, sel)| {
                        let data = payload(data);
                        all.extend_from_slice(&data);
                        let len = u32::try_from(data.len()).expect("a drawn payload is under 4 GiB");
                        SmallFile {
                            path: path.clone(),
                            meta: meta.clone(),
                            len,
                            digest: digest(*sel, algo, &data),
                        }
                    })
                    .collect();
                return (Message::PutFiles { files }, Bytes::from(all));
            }
            Req::Stray(data) => return (Message::Ping, payload(data)),
        };
        (msg, Bytes::new())
    }

    /// The frame of `msg` (a mirror's), and for an `Open` the intent it
    /// makes if the codec takes its path after all (one given in full).
    fn bad_frame(&mut self, slot: usize, id: u32, msg: &BadMsg) -> (Vec<u8>, Option<Sent>) {
        let bytes = |path: &[u8]| ByteBuf::from(path.to_vec());
        let mut intent = None;
        let mirror = match msg {
            BadMsg::Open { proof, upload, path } => {
                let direction = if *upload { Direction::Upload } else { Direction::Download };
                let spec = root_spec(direction);
                let sent = mirror::Spec::with_path(&spec, path);
                let other = mirror::Spec::with_path(
                    &SessionSpec { direction: flip(direction), ..spec.clone() },
                    path,
                );
                let (proof, valid) =
                    self.proof(slot, *proof, &sent.intent_bytes(), &other.intent_bytes(), None);
                intent = RelPath::new(path.clone()).ok().map(|path| Sent {
                    wants: Wants::Open(SessionSpec { path, ..spec }),
                    secret: None,
                    valid,
                });
                mirror::Msg::Open { proof: proof.map(ByteBuf::from), spec: sent }
            }
            BadMsg::Probe(paths) => mirror::Msg::Probe { paths: paths.iter().map(|p| bytes(p)).collect() },
            BadMsg::Hash(path) => mirror::Msg::Hash {
                target: mirror::HashTarget::Path(bytes(path)),
                span: Span { size: 3000, first: 0, count: 3, group: 1 },
            },
            BadMsg::Read(path) => mirror::Msg::Read { path: bytes(path), offset: 0, len: 1024 },
            BadMsg::Begin(path) => mirror::Msg::Begin { path: bytes(path), size: 100 },
            BadMsg::PutFile(path) => {
                mirror::Msg::PutFile { path: bytes(path), meta: META, digest: ByteBuf::from(vec![0; 8]) }
            }
            BadMsg::MakeDir(path) => {
                mirror::Msg::Apply { actions: vec![mirror::Action::MakeDir { path: bytes(path) }] }
            }
            BadMsg::Symlink(path) => mirror::Msg::Apply {
                actions: vec![mirror::Action::Symlink {
                    path: bytes(path),
                    target: bytes(b"file.txt"),
                    mtime: META.mtime,
                }],
            },
        };
        (mirror.frame(id, &[]), intent)
    }
}

/// A plain session over a server's whole root: 1 KiB chunks, xxh3, no
/// filters or options.
pub(super) fn root_spec(direction: Direction) -> SessionSpec {
    SessionSpec::new(direction, RelPath::root(), 1024, HashAlgo::Xxh3)
}
