//! Helpers shared by the integration tests: a real server process, the
//! real client binary, tree builders, and a snapshot of a whole tree
//! (bytes, modes, mtimes, link targets) to compare source and destination.

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, SystemTime};

pub const BIN: &str = env!("CARGO_BIN_EXE_pareco");

/// A `pareco listen` process serving a temporary root on 127.0.0.1.
pub struct Server {
    child: Child,
    pub port: u16,
    pub root: tempfile::TempDir,
}

impl Server {
    pub fn start(extra: &[&str]) -> Server {
        let root = tempfile::tempdir().expect("temp dir");
        Server::start_in(root, extra)
    }

    pub fn start_in(root: tempfile::TempDir, extra: &[&str]) -> Server {
        let (child, port) = listen(root.path(), 0, extra);
        Server { child, port, root }
    }

    pub fn url(&self, path: &str) -> String {
        format!("pareco://127.0.0.1:{}/{path}", self.port)
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.path().join(rel)
    }

    /// The most memory the server process has held so far (VmHWM), in bytes.
    pub fn peak_memory(&self) -> u64 {
        let status = fs::read_to_string(format!("/proc/{}/status", self.child.id())).expect("server status");
        let line = status.lines().find(|l| l.starts_with("VmHWM:")).expect("VmHWM");
        let kib: u64 = line.split_whitespace().nth(1).and_then(|n| n.parse().ok()).expect("a number");
        kib * 1024
    }

    /// Bytes the server process has read so far, from files and sockets
    /// (`rchar` of /proc/PID/io).
    pub fn read_chars(&self) -> u64 {
        let io = fs::read_to_string(format!("/proc/{}/io", self.child.id())).expect("server io");
        let line = io.lines().find(|l| l.starts_with("rchar:")).expect("rchar");
        line.split_whitespace().nth(1).and_then(|n| n.parse().ok()).expect("a number")
    }

    /// The server's standard output (the generated token, with `-g`).
    pub fn stdout_line(&mut self) -> String {
        let out = self.child.stdout.as_mut().expect("stdout");
        let mut line = String::new();
        BufReader::new(out).read_line(&mut line).expect("read stdout");
        line.trim().to_owned()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `pareco listen` on `root`, on 127.0.0.1:`port` (0: any free
/// port), with `extra` options; returns the process and the port it
/// listens on once it says so. Its log is drained so that it never blocks.
pub fn listen(root: &Path, port: u16, extra: &[&str]) -> (Child, u16) {
    let mut child = Command::new(BIN)
        .args(["listen", "--bind", &format!("127.0.0.1:{port}"), "--root"])
        .arg(root)
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start server");
    let port = wait_listening(&mut child);
    (child, port)
}

/// The port a server started with its stderr piped listens on, once it
/// says so; its log is drained from then on so that it never blocks.
pub fn wait_listening(child: &mut Child) -> u16 {
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    let port = loop {
        let line = lines.next().expect("server exited before listening").expect("read stderr");
        if let Some(addr) = line.strip_prefix("listening on ") {
            break addr.rsplit(':').next().and_then(|p| p.parse().ok()).expect("a port");
        }
    };
    std::thread::spawn(move || for _ in lines {});
    port
}

/// Runs the client binary.
pub fn pareco(args: &[&str]) -> Output {
    Command::new(BIN).args(args).env_remove("PARECO_TOKEN").output().expect("run pareco")
}

/// Sets the permission bits of `path`.
pub fn set_mode(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// Runs the client as an unprivileged user: as `nobody` when the tests run
/// as root (who can read any directory), else as the user running them.
pub fn unprivileged(args: &[&str]) -> std::process::Output {
    unprivileged_command().args(args).env_remove("PARECO_TOKEN").output().expect("run pareco")
}

/// The command that runs pareco as [`unprivileged`] does. Through
/// `setpriv`, which becomes pareco: killing the child ends pareco itself
/// (`runuser` would stay its parent, and pareco would outlive the test).
pub fn unprivileged_command() -> Command {
    if rustix::process::geteuid().is_root() {
        let mut command = Command::new("setpriv");
        command.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--", BIN]);
        command
    } else {
        Command::new(BIN)
    }
}

/// Runs the client and expects success within `limit`.
pub fn sync_within(args: &[&str], limit: Duration) {
    let mut child = Command::new(BIN)
        .args(args)
        .env_remove("PARECO_TOKEN")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run pareco");
    let started = std::time::Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            let mut err = String::new();
            std::io::Read::read_to_string(child.stderr.as_mut().expect("stderr"), &mut err).ok();
            assert!(status.success(), "pareco {args:?} failed ({status:?}):\n{err}");
            return;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            panic!("pareco {args:?} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs the client and expects success; returns its `--json` report.
pub fn sync_ok(args: &[&str]) -> serde_json::Value {
    let mut all = args.to_vec();
    all.push("--json");
    let out = pareco(&all);
    assert!(
        out.status.success(),
        "pareco {args:?} failed ({:?}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("one JSON object on stdout")
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Writes a file with the given content, mode and mtime (seconds, nanos).
pub fn file(path: &Path, content: &[u8], mode: u32, mtime: (i64, u32)) {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).unwrap();
    }
    fs::write(path, content).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    set_mtime(path, mtime);
}

pub fn set_mtime(path: &Path, (secs, nanos): (i64, u32)) {
    let time = SystemTime::UNIX_EPOCH + Duration::new(secs as u64, nanos);
    fs::File::options()
        .write(true)
        .open(path)
        .or_else(|_| fs::File::open(path))
        .unwrap()
        .set_modified(time)
        .unwrap();
}

/// Deterministic pseudo-random bytes.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// What a test compares of one entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Snap {
    File { content: Vec<u8>, mode: u32, mtime: (i64, i64) },
    Dir { mode: u32, mtime: (i64, i64) },
    Link { target: PathBuf, mtime: (i64, i64) },
}

/// Every entry below `root` (root excluded), by relative path.
pub fn snapshot(root: &Path) -> BTreeMap<String, Snap> {
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// Entries that vanish while they are read (a server still discarding the
/// temporary files of a session that just died) are left out.
fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Snap>) {
    let Some(entries) = gone_is_none(fs::read_dir(dir)) else { return };
    for entry in entries {
        let Some(entry) = gone_is_none(entry) else { continue };
        let path = entry.path();
        let Some(md) = gone_is_none(fs::symlink_metadata(&path)) else { continue };
        let rel = path.strip_prefix(root).unwrap().to_string_lossy().into_owned();
        let mtime = (md.mtime(), md.mtime_nsec());
        let mode = md.mode() & 0o7777;
        let snap = if md.file_type().is_symlink() {
            Snap::Link { target: fs::read_link(&path).unwrap(), mtime }
        } else if md.is_dir() {
            walk(root, &path, out);
            Snap::Dir { mode, mtime }
        } else {
            let Some(content) = gone_is_none(fs::read(&path)) else { continue };
            Snap::File { content, mode, mtime }
        };
        out.insert(rel, snap);
    }
}

/// `None` for an entry that is gone; any other error fails the test.
fn gone_is_none<T>(result: std::io::Result<T>) -> Option<T> {
    match result {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        other => Some(other.unwrap()),
    }
}

/// Asserts two trees are identical in every byte, mode, mtime and link.
pub fn assert_same_tree(source: &Path, dest: &Path) {
    let (a, b) = (snapshot(source), snapshot(dest));
    let only_a: Vec<_> = a.keys().filter(|k| !b.contains_key(*k)).collect();
    let only_b: Vec<_> = b.keys().filter(|k| !a.contains_key(*k)).collect();
    assert!(
        only_a.is_empty() && only_b.is_empty(),
        "only in source: {only_a:?}; only in destination: {only_b:?}"
    );
    for (path, snap) in &a {
        assert!(
            &b[path] == snap,
            "{path} differs:\n source {:?}\n dest   {:?}",
            short(snap),
            short(&b[path])
        );
    }
}

fn short(s: &Snap) -> String {
    match s {
        Snap::File { content, mode, mtime } => {
            format!("file {} bytes mode {mode:o} mtime {mtime:?}", content.len())
        }
        other => format!("{other:?}"),
    }
}

/// A varied tree: nested and empty dirs, odd names, symlinks (relative,
/// absolute, dangling), zero-byte, exactly-one-chunk and multi-chunk files,
/// assorted modes and nanosecond mtimes. `chunk` is the chunk size used.
pub fn varied_tree(root: &Path, chunk: usize) {
    let t = (1_600_000_000, 123_456_789);
    file(&root.join("plain.txt"), b"hello, world\n", 0o644, t);
    file(&root.join("empty"), b"", 0o600, (1_500_000_000, 1));
    file(&root.join("exact"), &noise(chunk, 1), 0o640, t);
    file(&root.join("big.bin"), &noise(chunk * 5 + 77, 2), 0o755, (1_700_000_000, 999_999_999));
    file(&root.join("with space/ünïcode ☃.txt"), b"snow", 0o644, t);
    file(&root.join("new\nline"), b"newline in the name", 0o644, t);
    file(&root.join("a/b/c/deep.txt"), &noise(3000, 3), 0o444, t);
    fs::create_dir_all(root.join("empty-dir/inner-empty")).unwrap();
    std::os::unix::fs::symlink("../plain.txt", root.join("a/rel-link")).unwrap();
    std::os::unix::fs::symlink("/etc/hostname", root.join("abs-link")).unwrap();
    std::os::unix::fs::symlink("does/not/exist", root.join("dangling")).unwrap();
    fs::set_permissions(root.join("a/b"), fs::Permissions::from_mode(0o750)).unwrap();
    for dir in ["a/b/c", "a/b", "a", "with space", "empty-dir/inner-empty", "empty-dir"] {
        set_mtime(&root.join(dir), (1_650_000_000, 42));
    }
}

/// One direction of a test that runs a transfer both ways: a fresh server,
/// a local directory, and which of the two is the source.
pub struct Way {
    /// `send` (local → server) or `recv` (server → local).
    pub name: &'static str,
    pub server: Server,
    pub local: tempfile::TempDir,
    /// The source tree and the destination tree, whichever side they are.
    pub src: PathBuf,
    pub dst: PathBuf,
}

impl Way {
    /// Runs the transfer from `src` to `dst` with `extra` options; returns
    /// the `--json` report.
    pub fn sync(&self, extra: &[&str]) -> serde_json::Value {
        self.with_args(extra, sync_ok)
    }

    /// Runs the transfer with `extra` options, as it is (no `--json`).
    pub fn run(&self, extra: &[&str]) -> Output {
        self.with_args(extra, pareco)
    }

    /// Calls `run` with the transfer's arguments, then `extra`.
    fn with_args<T>(&self, extra: &[&str], run: impl FnOnce(&[&str]) -> T) -> T {
        let url = self.server.url("d");
        let local = self.local.path().to_str().expect("UTF-8 temp path");
        let mut args = match self.name {
            "send" => vec!["send", local, &url],
            _ => vec!["recv", &url, local],
        };
        args.extend_from_slice(extra);
        run(&args)
    }
}

/// An upload and a download, each with its own server; the remote tree is
/// the server's `d`.
pub fn both_ways() -> [Way; 2] {
    ["send", "recv"].map(|name| {
        let server = Server::start(&[]);
        let local = tempfile::tempdir().expect("temp dir");
        let (src, dst) = if name == "send" {
            (local.path().to_owned(), server.path("d"))
        } else {
            (server.path("d"), local.path().to_owned())
        };
        Way { name, server, local, src, dst }
    })
}

/// Where pareco builds the file `dir/name` (its temporary file).
pub fn temp_of(dir: &Path, name: &str) -> PathBuf {
    use std::os::unix::ffi::OsStrExt;
    dir.join(std::ffi::OsStr::from_bytes(&pareco::peer::temp::temp_name(name.as_bytes())))
}

/// The settings of a local role in engine tests: `chunk` bytes, xxh3, no
/// filters.
pub fn local_settings(chunk: u32) -> pareco::peer::Settings {
    pareco::peer::Settings::for_session(&plain_spec(chunk), pareco::peer::Filter::default(), true)
}

/// The options of a transfer in engine tests: `chunk` bytes, nothing
/// deleted, a window of 1 MiB.
pub fn local_options(chunk: u32) -> pareco::transfer::Options {
    pareco::transfer::Options {
        window: 1 << 20,
        ..pareco::transfer::Options::for_session(&plain_spec(chunk), false, 1)
    }
}

/// A session of `chunk` bytes and xxh3 with every option off.
fn plain_spec(chunk: u32) -> pareco::codec::SessionSpec {
    use pareco::codec::{Direction, HashAlgo, RelPath, SessionSpec};
    SessionSpec::new(Direction::Upload, RelPath::root(), chunk, HashAlgo::Xxh3)
}
