//! `--owner`, `--group`, `--numeric-ids` through the real binary: owners
//! and groups mapped by name where both sides know it, by number
//! otherwise or with `--numeric-ids`, both directions; and a destination
//! that may not set them says so once and syncs the files anyway.
//!
//! To tell a mapping by name from one by number, the server runs in its
//! own mount namespace with a user database where `daemon` is 4242:4343
//! (here it is 1:1). That needs root and `unshare`; without them the tests
//! say so and pass.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use crate::util::{assert_same_tree, file, pareco, snapshot, stderr, sync_ok, BIN};

/// `daemon` here and on the server started by [`Renamed`].
const DAEMON_HERE: (u32, u32) = (1, 1);
const DAEMON_THERE: (u32, u32) = (4242, 4343);
/// A uid and gid with no name on either side.
const NAMELESS: u32 = 7777;

fn owner(path: &Path) -> (u32, u32) {
    let md = fs::symlink_metadata(path).unwrap();
    (md.uid(), md.gid())
}

fn chown(path: &Path, (uid, gid): (u32, u32)) {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid)).unwrap();
}

/// Why these tests cannot run here, if they cannot.
fn unsupported() -> Option<&'static str> {
    if !rustix::process::geteuid().is_root() {
        return Some("not root");
    }
    let daemon = nix::unistd::User::from_name("daemon").ok().flatten();
    if daemon.map(|u| (u.uid.as_raw(), u.gid.as_raw())) != Some(DAEMON_HERE) {
        return Some("no user daemon with uid and gid 1");
    }
    let ok = Command::new("unshare").args(["--mount", "true"]).status().is_ok_and(|s| s.success());
    (!ok).then_some("unshare --mount does not work")
}

/// A `pareco listen` in its own mount namespace, where `daemon` is
/// 4242:4343.
struct Renamed {
    child: Child,
    port: u16,
    root: tempfile::TempDir,
    _db: tempfile::TempDir,
}

impl Renamed {
    fn start() -> Renamed {
        let db = tempfile::tempdir().unwrap();
        let rewrite = |from: &str, to: &Path, edit: &dyn Fn(&str) -> Option<String>| {
            let text: Vec<String> = fs::read_to_string(from).unwrap().lines().filter_map(edit).collect();
            fs::write(to, text.join("\n") + "\n").unwrap();
        };
        let (passwd, group) = (db.path().join("passwd"), db.path().join("group"));
        rewrite("/etc/passwd", &passwd, &|l| match l {
            l if l.starts_with("daemon:") => Some(l.replacen(":1:1:", ":4242:4343:", 1)),
            l => Some(l.to_owned()),
        });
        rewrite("/etc/group", &group, &|l| match l {
            l if l.starts_with("daemon:") => Some(l.replacen(":1:", ":4343:", 1)),
            l => Some(l.to_owned()),
        });
        let root = tempfile::tempdir().unwrap();
        let script =
            r#"mount --bind "$1" /etc/passwd && mount --bind "$2" /etc/group && shift 2 && exec "$@""#;
        let mut child = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c", script, "sh"])
            .args([&passwd, &group])
            .args([Path::new(BIN), Path::new("listen"), Path::new("--bind"), Path::new("127.0.0.1:0")])
            .arg("--root")
            .arg(root.path())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let port = crate::util::wait_listening(&mut child);
        Renamed { child, port, root, _db: db }
    }

    fn url(&self, path: &str) -> String {
        format!("pareco://127.0.0.1:{}/{path}", self.port)
    }
}

impl Drop for Renamed {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A tree of three files and a directory: owned by `daemon`, by a uid
/// and gid without a name, and by `bin` (2:2 on both sides).
fn owned_tree(root: &Path, daemon: (u32, u32)) {
    let t = (1_600_000_000, 7);
    file(&root.join("by-daemon"), b"daemon's", 0o644, t);
    file(&root.join("nameless"), b"nobody knows", 0o600, t);
    file(&root.join("sub/by-bin"), b"bin's", 0o640, t);
    chown(&root.join("by-daemon"), daemon);
    chown(&root.join("nameless"), (NAMELESS, NAMELESS));
    chown(&root.join("sub/by-bin"), (2, 2));
    chown(&root.join("sub"), daemon);
}

#[test]
fn owners_and_groups_travel_by_name_else_by_number_both_ways() {
    if let Some(why) = unsupported() {
        eprintln!("skipped: {why}");
        return;
    }
    let server = Renamed::start();
    // Upload: daemon (1:1 here) arrives as the server's daemon, 4242:4343.
    let local = tempfile::tempdir().unwrap();
    owned_tree(local.path(), DAEMON_HERE);
    let up = server.root.path().join("up");
    sync_ok(&["send", local.path().to_str().unwrap(), &server.url("up"), "-o", "-g"]);
    assert_same_tree(local.path(), &up);
    assert_eq!(owner(&up.join("by-daemon")), DAEMON_THERE);
    assert_eq!(owner(&up.join("sub")), DAEMON_THERE);
    assert_eq!(owner(&up.join("nameless")), (NAMELESS, NAMELESS));
    assert_eq!(owner(&up.join("sub/by-bin")), (2, 2));
    // Nothing differs any more: a second run changes nothing.
    let again = pareco(&["send", local.path().to_str().unwrap(), &server.url("up"), "-o", "-g", "-v"]);
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(!stderr(&again).contains("metadata updated"), "{}", stderr(&again));
    // With --numeric-ids the numbers travel as they are.
    sync_ok(&["send", local.path().to_str().unwrap(), &server.url("numeric"), "-o", "-g", "--numeric-ids"]);
    let numeric = server.root.path().join("numeric");
    assert_eq!(owner(&numeric.join("by-daemon")), DAEMON_HERE);
    assert_eq!(owner(&numeric.join("nameless")), (NAMELESS, NAMELESS));
    // Only the group: owners stay those the destination gives.
    sync_ok(&["send", local.path().to_str().unwrap(), &server.url("group"), "-g"]);
    assert_eq!(owner(&server.root.path().join("group/by-daemon")), (0, DAEMON_THERE.1));

    // Download: the server's daemon (4242:4343) arrives as daemon here, 1:1.
    let there = server.root.path().join("down");
    owned_tree(&there, DAEMON_THERE);
    let down = tempfile::tempdir().unwrap();
    sync_ok(&["recv", &server.url("down"), down.path().to_str().unwrap(), "-o", "-g"]);
    assert_same_tree(&there, down.path());
    assert_eq!(owner(&down.path().join("by-daemon")), DAEMON_HERE);
    assert_eq!(owner(&down.path().join("sub")), DAEMON_HERE);
    assert_eq!(owner(&down.path().join("nameless")), (NAMELESS, NAMELESS));
    let numeric = tempfile::tempdir().unwrap();
    sync_ok(&["recv", &server.url("down"), numeric.path().to_str().unwrap(), "-o", "-g", "--numeric-ids"]);
    assert_eq!(owner(&numeric.path().join("by-daemon")), DAEMON_THERE);
    // An owner changed alone is fixed without sending the data again.
    chown(&there.join("by-daemon"), (2, 2));
    let report = sync_ok(&["recv", &server.url("down"), down.path().to_str().unwrap(), "-o", "-g"]);
    assert_eq!(report["bytes_transferred"], 0, "{report}");
    assert_eq!(owner(&down.path().join("by-daemon")), (2, 2));
}

/// Lines of `text` that contain `needle`.
fn count(text: &str, needle: &str) -> usize {
    text.lines().filter(|l| l.contains(needle)).count()
}

#[test]
fn a_destination_that_may_not_set_owners_says_so_once_and_syncs_anyway() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: not root");
        return;
    }
    // Download into a directory of nobody's, run as nobody.
    let server = crate::util::Server::start(&[]);
    let there = server.path("d");
    for i in 0..5 {
        file(&there.join(format!("f{i}")), b"data", 0o644, (1_600_000_000, 0));
        chown(&there.join(format!("f{i}")), DAEMON_HERE);
    }
    let down = tempfile::tempdir().unwrap();
    fs::set_permissions(down.path(), fs::Permissions::from_mode(0o777)).unwrap();
    let into = down.path().join("mirror");
    let out = crate::util::unprivileged(&["recv", &server.url("d"), into.to_str().unwrap(), "-o", "-g"]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert_eq!(count(&err, "--owner: this process does not run as root"), 1, "{err}");
    // nobody is in no group daemon: the group cannot be set either, said once.
    assert_eq!(count(&err, "cannot set its owner or group"), 1, "{err}");
    assert_same_tree(&there, &into);
    assert_eq!(owner(&into.join("f0")).0, 65534);

    // Upload to a server run as nobody: the client says it once.
    let root = tempfile::tempdir().unwrap();
    fs::set_permissions(root.path(), fs::Permissions::from_mode(0o777)).unwrap();
    let mut child = crate::util::unprivileged_command()
        .args(["listen", "--bind", "127.0.0.1:0"])
        .arg("--root")
        .arg(root.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let port = crate::util::wait_listening(&mut child);
    let url = format!("pareco://127.0.0.1:{port}/up");
    let out = pareco(&["send", there.to_str().unwrap(), &url, "-o"]);
    let _ = child.kill();
    let _ = child.wait();
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert_eq!(count(&err, "--owner: the server does not run as root"), 1, "{err}");
    assert_eq!(snapshot(&there), snapshot(&root.path().join("up")));
    assert_eq!(owner(&root.path().join("up/f0")).0, 65534);
}
