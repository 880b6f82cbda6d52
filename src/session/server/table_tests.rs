//! The session table's rules, at chosen times.

use super::*;
use crate::codec::{HashAlgo, RelPath};

fn table(max_sessions: usize) -> (tempfile::TempDir, Table) {
    table_of(max_sessions, false)
}

/// A table of a server with TLS or without.
fn table_of(max_sessions: usize, tls: bool) -> (tempfile::TempDir, Table) {
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits { max_sessions, max_connections: 2, keep_setid: false };
    let table = Table::new(Tree::open(dir.path()).unwrap(), limits, None, tls);
    (dir, table)
}

fn spec(direction: Direction, path: &str) -> SessionSpec {
    SessionSpec::new(direction, RelPath::new(path).unwrap(), 4096, HashAlgo::Xxh3)
}

/// Opens a session; its opening connection stays counted.
fn open(table: &Table, direction: Direction, path: &str, now: u64) -> Result<Arc<Session>, peer::Error> {
    opened(table, direction, path, now).map(|(session, _)| session)
}

/// Opens a session; with its opening connection, to end it.
fn opened(
    table: &Table,
    direction: Direction,
    path: &str,
    now: u64,
) -> Result<(Arc<Session>, Member), peer::Error> {
    table.open(spec(direction, path), Filter::default(), now).map_err(|e| match e {
        Refusal::Refused(e) => e,
        Refusal::Wait => peer::Error::new(ErrorKind::Busy, "wait"),
    })
}

#[test]
fn sessions_expire_after_their_last_activity_and_not_before() {
    let (_dir, table) = table(8);
    let a = open(&table, Direction::Upload, "a", 0).unwrap();
    let b = open(&table, Direction::Download, "", 100).unwrap();
    assert!(table.idle(150, 150).is_empty());
    let idle: Vec<u64> = table.idle(151, 150).iter().map(|s| s.id).collect();
    assert_eq!(idle, [a.id]);
    a.touch(200);
    let idle: Vec<u64> = table.idle(300, 150).iter().map(|s| s.id).collect();
    assert_eq!(idle, [b.id]);
    let mut idle: Vec<u64> = table.idle(400, 150).iter().map(|s| s.id).collect();
    idle.sort_unstable();
    let mut both = vec![a.id, b.id];
    both.sort_unstable();
    assert_eq!(idle, both);
    table.end(&a, "expired");
    assert!(a.ended.is_cancelled());
    assert_eq!(table.idle(400, 150).len(), 1);
}

#[test]
fn overlapping_uploads_are_busy_until_the_claim_is_dropped() {
    let (_dir, table) = table(8);
    let a = open(&table, Direction::Upload, "x/y", 0).unwrap();
    for path in ["x", "x/y", "x/y/z", ""] {
        let busy = open(&table, Direction::Upload, path, 0).err().expect("busy");
        assert_eq!(busy.kind, ErrorKind::Busy, "{path}");
    }
    // Downloads and other trees are fine.
    open(&table, Direction::Download, "x", 0).unwrap();
    open(&table, Direction::Upload, "x/w", 0).unwrap();
    // The claim lasts until the session itself is gone, not merely out
    // of the table.
    table.end(&a, "closed");
    assert_eq!(open(&table, Direction::Upload, "x/y", 0).err().map(|e| e.kind), Some(ErrorKind::Busy));
    drop(a);
    open(&table, Direction::Upload, "x/y", 0).unwrap();
}

#[test]
fn limits_on_sessions_and_connections_and_joins_that_are_not_admitted() {
    let (_dir, table) = table(1);
    let a = open(&table, Direction::Download, "", 0).unwrap();
    assert_eq!(open(&table, Direction::Download, "", 0).err().map(|e| e.kind), Some(ErrorKind::Limit));
    let refused = table.join(a.id, 0, |_| Err::<(), _>(peer::Error::new(ErrorKind::Auth, "no")));
    assert_eq!(refused.err().map(|e| e.kind), Some(ErrorKind::Auth));
    assert_eq!(a.members.count(), 1);
    // One connection from the open, one joined: the limit of two.
    let (_, second, _) = table.join(a.id, 10, |s| Ok(s.secret)).unwrap();
    assert_eq!(a.members.count(), 2);
    // A third takes the place of the one silent longest (the opening one,
    // silent since 0): the session never has more than two.
    second.heard(15);
    let (_, _third, ()) = table.join(a.id, 20, |_| Ok(())).unwrap();
    assert_eq!(a.members.count(), 2);
    assert!(!second.cut.is_cancelled());
    let (_, _fourth, ()) = table.join(a.id, 30, |_| Ok(())).unwrap();
    assert!(second.cut.is_cancelled());
    assert_eq!(a.members.count(), 2);
    assert_eq!(table.join(a.id ^ 1, 0, |_| Ok(())).err().map(|e| e.kind), Some(ErrorKind::NoSession));
    table.end(&a, "closed");
    assert_eq!(table.join(a.id, 0, |_| Ok(())).err().map(|e| e.kind), Some(ErrorKind::NoSession));
    open(&table, Direction::Download, "", 0).unwrap();
}

#[test]
fn a_taken_over_session_keeps_its_tree_while_a_step_of_its_work_runs() {
    let (_dir, table) = table(4);
    let (a, member) = opened(&table, Direction::Upload, "x", 0).unwrap();
    // A step on the blocking pool holds the role, not the session.
    let step = match &a.role {
        Role::Destination(dest) => dest.clone(),
        Role::Source(_) => panic!("an upload's role"),
    };
    a.members.leave(&member);
    let wait = table.open(spec(Direction::Upload, "x"), Filter::default(), 5);
    assert!(matches!(wait, Err(Refusal::Wait)), "{:?}", wait.err());
    drop(a);
    let still = table.open(spec(Direction::Upload, "x"), Filter::default(), 6);
    assert!(matches!(still, Err(Refusal::Wait)), "{:?}", still.err().map(|_| ()));
    drop(step);
    opened(&table, Direction::Upload, "x", 7).unwrap();
}

#[test]
fn orphans_make_way_for_new_sessions_and_their_joins_learn_why() {
    let (_dir, table) = table(2);
    let (a, a_member) = opened(&table, Direction::Upload, "x", 0).unwrap();
    // While its connection lives, the tree is busy.
    assert_eq!(open(&table, Direction::Upload, "x/y", 0).err().map(|e| e.kind), Some(ErrorKind::Busy));
    // Its connections gone, it is taken over; the new one waits for its
    // claim, held until its last request is done.
    a.members.leave(&a_member);
    let wait = table.open(spec(Direction::Upload, "x/y"), Filter::default(), 5);
    assert!(matches!(wait, Err(Refusal::Wait)), "{:?}", wait.err());
    assert!(a.ended.is_cancelled());
    let gone = table.join(a.id, 0, |_| Ok(())).err().expect("taken over");
    assert_eq!(gone.kind, ErrorKind::NoSession);
    assert!(gone.message.contains("taken over"), "{}", gone.message);
    drop(a);
    let (b, b_member) = opened(&table, Direction::Upload, "x/y", 5).unwrap();
    // A full server ends its longest idle orphan for a new session.
    let (c, c_member) = opened(&table, Direction::Download, "", 6).unwrap();
    assert_eq!(open(&table, Direction::Download, "", 7).err().map(|e| e.kind), Some(ErrorKind::Limit));
    b.members.leave(&b_member);
    c.members.leave(&c_member);
    b.touch(8);
    open(&table, Direction::Download, "", 9).unwrap();
    assert!(c.ended.is_cancelled() && !b.ended.is_cancelled());
    let unknown = table.join(c.id ^ 1, 0, |_| Ok(())).err().expect("unknown");
    assert!(unknown.message.contains("is not open"), "{}", unknown.message);
}

#[test]
fn an_upload_over_tls_does_not_hash_its_chunks_again() {
    for tls in [false, true] {
        let (_dir, table) = table_of(1, tls);
        let session = open(&table, Direction::Upload, "", 0).unwrap();
        let Role::Destination(dest) = &session.role else { panic!("an upload's server is its destination") };
        assert_eq!(dest.settings().check_digests, !tls);
    }
}
