//! The fixture the handshake fuzz target and its scenario tests run
//! against: two servers on roots full of symlinks, beside a directory that
//! must never change.
//!
//! A fixture's directory (in the temporary directory, named after the
//! process) holds:
//! - `outside/` (`secret.txt`, `sub/x`): nothing a client sends may change
//!   it, nor the directory itself;
//! - `token/`, the root of server 0, which requires [`TOKEN`], and `open/`,
//!   the root of server 1, which requires none. Each has files
//!   (`file.txt`, 3000 bytes; `empty`; `small.bin`; `dir/note.txt`;
//!   `dir/sub/deep.txt`, 5000 bytes), a temporary file an interrupted run
//!   left in `dir/`, and symlinks: inside the root (`link-file`,
//!   `link-dir`), dangling (`dangling`), a loop (`loop`), and three out of
//!   it (`escape` relative, `abs` absolute, `dir/up` from a subdirectory).
//!
//! Both servers: sessions expire after [`SESSION_TIMEOUT`], at most
//! [`MAX_SESSIONS`] sessions of [`MAX_CONNECTIONS`] connections each,
//! setuid and setgid bits cleared (a fuzzer may run as root).

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::runtime::Runtime;
use tokio::time::Instant;

use super::driver::{Run, NO_ANSWER};
use super::ops::{Step, MAX_STEPS};
use crate::peer::temp::temp_name;
use crate::session::{Server, ServerConfig};

/// The token server 0 requires.
pub const TOKEN: &str = "fuzz-token";
/// The fixture's servers: 0 requires [`TOKEN`], 1 no token.
pub const SERVERS: usize = 2;
/// Sessions a server holds at once.
pub const MAX_SESSIONS: usize = 4;
/// Connections a session may have.
pub const MAX_CONNECTIONS: usize = 4;
/// A session without traffic for this long expires.
pub const SESSION_TIMEOUT: Duration = Duration::from_secs(2);
/// The time one input of the fuzz target may take before its connections
/// are dropped.
pub const FUZZ_BUDGET: Duration = Duration::from_millis(300);

/// The servers, their roots, and what must not change (see the module
/// docs).
pub struct Fixture {
    pub(super) rt: Runtime,
    pub(super) servers: Vec<Arc<Server>>,
    pub(super) roots: Vec<PathBuf>,
    base: PathBuf,
    /// [`snapshot`] of `base` as it must stay.
    pristine: Vec<String>,
    /// The time one run of operations may take.
    pub(super) budget: Duration,
    /// Print the steps of each run and what was received, as it comes.
    pub(super) echo: bool,
}

impl Fixture {
    /// A fresh fixture in which a run of operations may take `budget`
    /// before its connections are dropped; removed when dropped.
    pub fn new(budget: Duration) -> Fixture {
        static MADE: AtomicUsize = AtomicUsize::new(0);
        remove_stale_fixtures();
        let base = std::env::temp_dir().join(format!(
            "{PREFIX}{}-{}",
            std::process::id(),
            MADE.fetch_add(1, Ordering::Relaxed)
        ));
        force_remove(&base).expect("remove an old fixture directory");
        let outside = base.join("outside");
        fs::create_dir_all(outside.join("sub")).expect("make the fixture's outside directory");
        fs::write(outside.join("secret.txt"), b"secret\n").expect("write outside/secret.txt");
        fs::write(outside.join("sub/x"), b"x").expect("write outside/sub/x");
        let roots: Vec<PathBuf> = ["token", "open"].iter().map(|name| base.join(name)).collect();
        for root in &roots {
            fs::create_dir(root).expect("make a root");
            populate(root, &outside);
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime for the fixture");
        let servers = rt.block_on(async {
            let mut servers = Vec::new();
            for (i, root) in roots.iter().enumerate() {
                let config = ServerConfig {
                    root: root.clone(),
                    token: (i == 0).then(|| TOKEN.to_owned()),
                    session_timeout: SESSION_TIMEOUT,
                    max_sessions: MAX_SESSIONS,
                    max_connections: MAX_CONNECTIONS,
                    tls: None,
                    cache: None,
                    keep_setid: false,
                    bwlimit: None,
                };
                servers.push(Arc::new(Server::bind("127.0.0.1:0", config).await.expect("bind a server")));
            }
            servers
        });
        Fixture { rt, servers, roots, pristine: snapshot(&base), base, budget, echo: false }
    }

    /// The fixture of a fuzz target: made once per process with
    /// [`FUZZ_BUDGET`]; with `PARECO_FUZZ_TRACE` set in the environment,
    /// each run prints its steps and what was received, as it comes (to
    /// read a reproducer). It is removed when the process exits normally
    /// (libFuzzer ends with `exit`, which drops no static); after a crash
    /// it stays, to be looked at, until a later fixture removes it.
    pub fn shared() -> &'static Fixture {
        static SHARED: OnceLock<Fixture> = OnceLock::new();
        SHARED.get_or_init(|| {
            let mut fixture = Fixture::new(FUZZ_BUDGET);
            fixture.echo = std::env::var_os("PARECO_FUZZ_TRACE").is_some();
            SHARED_BASE.get_or_init(|| fixture.base.clone());
            // SAFETY: registers a function that takes no arguments and
            // only reads a `OnceLock` that is set by then.
            unsafe { libc::atexit(remove_shared) };
            fixture
        })
    }

    /// Runs `steps` (the first [`MAX_STEPS`]) within the fixture's budget,
    /// then drops every connection and checks the servers: no hang, no
    /// session left, nothing changed outside the roots (a panic
    /// otherwise). Returns what was received, a line per event:
    /// `SLOT ID What` for a frame, `SLOT closed`, and `SLOT: no answer in
    /// time` when a wait ran out of the budget.
    pub fn run(&self, steps: &[Step]) -> Vec<String> {
        if self.echo {
            eprintln!("steps: {steps:#?}\nreceived:");
        }
        self.rt.block_on(async {
            let mut run = Run::new(self);
            for step in steps.iter().take(MAX_STEPS) {
                if Instant::now() >= run.deadline {
                    break;
                }
                run.step(step).await;
            }
            let received = std::mem::take(&mut run.trace);
            run.finish().await;
            received
        })
    }

    /// Runs `steps` as [`Fixture::run`] does and asserts that each of
    /// `expected` is part of a line of what was received, in this order,
    /// and that no wait ran out of time.
    pub fn run_expecting(&self, steps: &[Step], expected: &[&str]) {
        let received = self.run(steps);
        let all = || received.join("\n  ");
        let mut at = 0;
        for want in expected {
            match received[at..].iter().position(|line| line.contains(want)) {
                Some(i) => at += i + 1,
                None => panic!("{want:?} not received (after line {at}) in:\n  {}", all()),
            }
        }
        let late = received.iter().any(|line| line.ends_with(NO_ANSWER));
        assert!(!late, "a wait ran out of time:\n  {}", all());
    }

    /// Puts the root of `server` back as the fixture made it.
    pub(super) fn reset(&self, server: usize) {
        let root = &self.roots[server];
        fs::set_permissions(root, fs::Permissions::from_mode(0o755)).expect("open up a root");
        for entry in fs::read_dir(root).expect("list a root") {
            force_remove(&entry.expect("an entry of a root").path()).expect("empty a root");
        }
        populate(root, &self.base.join("outside"));
    }

    /// What changed outside the roots since the fixture was made: the
    /// lines of [`snapshot`] that are new, and those that are gone.
    pub(super) fn changed_outside(&self) -> Option<(Vec<String>, Vec<String>)> {
        let now = snapshot(&self.base);
        if now == self.pristine {
            return None;
        }
        let new = now.iter().filter(|line| !self.pristine.contains(line)).cloned().collect();
        let gone = self.pristine.iter().filter(|line| !now.contains(line)).cloned().collect();
        Some((new, gone))
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = force_remove(&self.base);
    }
}

/// The start of a fixture directory's name; the process id follows.
const PREFIX: &str = "pareco-testing-fixture-";

/// The directory of the shared fixture, for [`remove_shared`].
static SHARED_BASE: OnceLock<PathBuf> = OnceLock::new();

extern "C" fn remove_shared() {
    if let Some(base) = SHARED_BASE.get() {
        let _ = force_remove(base);
    }
}

/// Removes the fixtures of processes that are gone (crashed fuzzers).
fn remove_stale_fixtures() {
    let Ok(entries) = fs::read_dir(std::env::temp_dir()) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let pid = name
            .to_str()
            .and_then(|name| name.strip_prefix(PREFIX))
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok());
        if pid.is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists()) {
            let _ = force_remove(&entry.path());
        }
    }
}

/// Bytes `k mod 251`, so that chunks differ.
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|k| (k % 251) as u8).collect()
}

/// Fills an empty `root` (see the module docs).
fn populate(root: &Path, outside: &Path) {
    let at = |rel: &str| root.join(rel);
    let write = |rel: &str, data: &[u8]| fs::write(at(rel), data).expect("write a fixture file");
    let link = |target: &Path, rel: &str| symlink(target, at(rel)).expect("make a fixture symlink");
    fs::create_dir_all(at("dir/sub")).expect("make dir/sub");
    write("file.txt", &pattern(3000));
    write("empty", b"");
    write("small.bin", b"0123456789");
    write("dir/note.txt", b"note\n");
    write("dir/sub/deep.txt", &pattern(5000));
    // A temporary file left by an interrupted run: `Begin` offers it.
    let temp = at("dir").join(OsStr::from_bytes(&temp_name(b"note.txt")));
    fs::write(temp, b"no").expect("write a stale temporary file");
    link(Path::new("file.txt"), "link-file");
    link(Path::new("dir"), "link-dir");
    link(Path::new("nowhere"), "dangling");
    link(Path::new("loop"), "loop");
    // Three ways out: relative, absolute, and from a subdirectory.
    link(Path::new("../outside"), "escape");
    link(outside, "abs");
    link(Path::new("../.."), "dir/up");
}

/// Removes `path` and everything below it, whatever its permissions.
fn force_remove(path: &Path) -> std::io::Result<()> {
    let meta = match fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        other => other?,
    };
    if meta.is_dir() {
        fs::set_permissions(path, fs::Permissions::from_mode(0o700))?;
        for entry in fs::read_dir(path)? {
            force_remove(&entry?.path())?;
        }
        fs::remove_dir(path)
    } else {
        fs::remove_file(path)
    }
}

/// One line per entry that must not change: the names in `base`, and
/// everything about `base` itself and about `base/outside` and what it
/// holds (mode, size, mtime, content or link target).
fn snapshot(base: &Path) -> Vec<String> {
    fn line(path: &Path, name: &str) -> String {
        let meta = fs::symlink_metadata(path).expect("state a fixture entry");
        let content = if meta.is_file() {
            format!("{:?}", fs::read(path).expect("read a fixture file"))
        } else if meta.file_type().is_symlink() {
            format!("-> {:?}", fs::read_link(path).expect("read a fixture symlink"))
        } else {
            String::new()
        };
        format!("{name} {:o} {} {}.{} {content}", meta.mode(), meta.len(), meta.mtime(), meta.mtime_nsec())
    }
    fn walk(dir: &Path, rel: &str, out: &mut Vec<String>) {
        out.push(line(dir, rel));
        let mut entries: Vec<PathBuf> = fs::read_dir(dir)
            .expect("list a fixture directory")
            .map(|entry| entry.expect("an entry of a fixture directory").path())
            .collect();
        entries.sort();
        for path in entries {
            let name = format!("{rel}/{}", path.file_name().unwrap_or_default().to_string_lossy());
            if fs::symlink_metadata(&path).is_ok_and(|meta| meta.is_dir()) {
                walk(&path, &name, out);
            } else {
                out.push(line(&path, &name));
            }
        }
    }
    let mut out: Vec<String> = fs::read_dir(base)
        .expect("list the fixture")
        .map(|entry| entry.expect("an entry of the fixture").file_name().to_string_lossy().into_owned())
        .collect();
    out.sort();
    out.push(line(base, "."));
    walk(&base.join("outside"), "outside", &mut out);
    out
}
