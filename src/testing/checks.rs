//! What a run checks: every `Welcome` against the handshake this side
//! sent, and after the run, once every connection is dropped:
//! - every server connection ends within [`GRACE`] (no hang);
//! - a server on which a session may have opened has, within [`GRACE`],
//!   no session and no upload's claim on a tree left: it accepts
//!   [`MAX_SESSIONS`] new sessions at once, the first an upload into its
//!   whole root (no leaked session, no request that never ends);
//! - nothing outside the roots changed (no escape).
//!
//! Then the roots an upload may have changed are rebuilt, so that every
//! run starts from the same trees.

use std::time::Duration;

use serde_bytes::ByteBuf;
use tokio::time::Instant;

use super::client::{intent_message, key_of, Handshake};
use super::driver::{client_nonce, Conn, Run, Sent};
use super::fixture::{MAX_SESSIONS, SERVERS, TOKEN};
use super::frames::frame_bytes;
use super::ops::{Proof, SLOTS};
use super::steps::root_spec;
use crate::codec::{Direction, Message, Packet, PROTOCOL_VERSION};
use crate::session::auth::{Key, Secret, NONCE_LEN, SECRET_LEN};
use crate::session::handshake::{intent_bytes, Wants};

/// The time a server connection may take to end once its client is gone,
/// and a server to drop the sessions of a run.
const GRACE: Duration = Duration::from_secs(10);

/// The key server `server` of the fixture proves with.
pub(super) fn server_key(server: usize) -> Key {
    key_of((server == 0).then_some(TOKEN))
}

/// Checks a `Welcome` against the handshake `conn` sent, when it knows it,
/// and returns the session's secret if it learnt it: unsealed for an
/// `Open`, the one a join proved it knows.
///
/// Bytes sent out of frame (`desynced`) may have made another handshake
/// than the one noted: then nothing is asserted, and what is learnt is
/// only taken if the server's proof agrees.
pub(super) fn check_welcome(
    conn: &Conn,
    session: u64,
    proof: &[u8],
    sealed: Option<&[u8]>,
) -> Option<Secret> {
    let (Some(sent), Some(client), Some(server)) = (&conn.sent, &conn.client_nonce, &conn.server_nonce)
    else {
        return None;
    };
    let strict = !conn.desynced;
    if strict {
        // Only the tokenless server opens a session whatever the proof.
        let checked = conn.server == 0 || matches!(sent.wants, Wants::Join(_));
        assert!(
            !checked || sent.valid,
            "auth: server {} welcomed {:?} on a proof that is not valid",
            conn.server,
            sent.wants
        );
        if let Wants::Join(id) = sent.wants {
            assert_eq!(session, id, "a join welcomed into another session");
        }
    }
    let join_secret = match (&sent.wants, &sent.secret) {
        (Wants::Join(_), Some(secret)) => Some(secret),
        // Not a valid proof (asserted above when strict).
        (Wants::Join(_), None) => return None,
        (Wants::Open(_), _) => None,
    };
    let handshake = Handshake::of_wants(&server_key(conn.server), join_secret, client, server, &sent.wants);
    let right = handshake.server_proof_matches(proof);
    assert!(right || !strict, "the server's proof in the Welcome to {:?} is wrong", sent.wants);
    if !right {
        return None;
    }
    match (&sent.wants, sealed) {
        (Wants::Open(_), Some(sealed)) if sealed.len() == SECRET_LEN => handshake.unseal(sealed),
        (Wants::Join(_), None) => sent.secret,
        (wants, sealed) => {
            assert!(!strict, "a Welcome to {wants:?} with a secret of {:?} bytes", sealed.map(<[u8]>::len));
            None
        }
    }
}

impl Run<'_> {
    /// Waits until every server connection has ended.
    async fn await_servers(&mut self) {
        for serving in std::mem::take(&mut self.serving) {
            match tokio::time::timeout(GRACE, serving).await {
                Err(_) => panic!("hang: a server connection still runs {GRACE:?} after its client went away"),
                Ok(Err(e)) if e.is_panic() => panic!("a server connection panicked: {e}"),
                Ok(_) => {}
            }
        }
    }

    /// Drops every connection and checks the servers: no hang, no session
    /// left, nothing changed outside the roots. Then resets the roots.
    pub(super) async fn finish(mut self) {
        for slot in 0..SLOTS {
            self.disconnect(slot);
        }
        self.await_servers().await;
        for server in 0..SERVERS {
            if self.opened[server] {
                self.check_no_session_left(server).await;
            }
        }
        if !self.dirty.contains(&true) {
            return;
        }
        if let Some((new, gone)) = self.fx.changed_outside() {
            panic!("escape: the server changed something outside its root: new {new:#?}, gone {gone:#?}");
        }
        for server in (0..SERVERS).filter(|&server| self.dirty[server]) {
            self.fx.reset(server);
        }
    }

    /// The server must accept `MAX_SESSIONS` sessions at once, the first
    /// one an upload into the whole root: the run left no session open,
    /// and no upload's claim on a tree.
    ///
    /// A claim lasts until the session's last request is done, and requests
    /// may still run when their connection has ended (a `Walk` waiting for
    /// its next batch, a write in the blocking pool): a refusal is retried
    /// for up to `GRACE`. Once the upload is accepted, no request of the
    /// run writes any more, so the roots can be reset.
    async fn check_no_session_left(&mut self, server: usize) {
        const _: () = assert!(SLOTS >= MAX_SESSIONS);
        let start = Instant::now();
        let mut spec = root_spec(Direction::Upload);
        let mut slot = 0;
        while slot < MAX_SESSIONS {
            self.deadline = Instant::now() + GRACE;
            self.connect(slot, server);
            let nonce = client_nonce(self.conn(slot).serial, NONCE_LEN as u8);
            let hello = Message::Hello { version: PROTOCOL_VERSION, nonce: ByteBuf::from(nonce.clone()) };
            self.send_frame(slot, &frame_bytes(&Packet::new(0, hello)), Some(nonce), None).await;
            self.wait(slot, |c| c.id0 > 0).await;
            let wants = Wants::Open(spec.clone());
            let intent = intent_bytes(&wants).expect("an intent encodes");
            let (proof, valid) = self.proof(slot, Proof::Valid, &intent, &intent, None);
            let open = frame_bytes(&Packet::new(0, intent_message(wants.clone(), proof)));
            self.send_frame(slot, &open, None, Some(Sent { wants, secret: None, valid })).await;
            self.wait(slot, |c| c.id0 > 1).await;
            let conn = self.conn(slot);
            if conn.welcomed {
                slot += 1;
                spec.direction = Direction::Download;
                continue;
            }
            assert!(
                start.elapsed() < GRACE,
                "leak: {GRACE:?} after the run, server {server} still refuses session {} of {MAX_SESSIONS} \
                 ({:?}): {:?}",
                slot + 1,
                spec.direction,
                conn.refusal
            );
            self.disconnect(slot);
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        for slot in 0..MAX_SESSIONS {
            self.disconnect(slot);
        }
        self.await_servers().await;
    }
}
