//! What the fault tests share: the four cases every fault is made in
//! (upload and download, each over plain TCP and over TLS), the run of a
//! client while a fault thread works the proxy, and the outcome to check.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use pareco::testing::proxy::Proxy;

use crate::tls::Pki;
use crate::util::*;

pub(super) const MIB: u64 = 1 << 20;

/// A run under faults must end within this.
const RUN_LIMIT: Duration = Duration::from_secs(60);

/// Bytes per second each way of each connection while the client makes
/// a connection again: little of its data passes meanwhile, but a chunk
/// of 64 KiB still takes only 1/4 s (no connection times out).
const TRICKLE: u64 = 256 << 10;

/// One direction of a transfer, over plain TCP or over TLS, between a
/// local directory and the tree `d` of a server that can be restarted.
pub(super) struct Case {
    /// `send` (local → server) or `recv` (server → local).
    direction: &'static str,
    /// The certificates of a TLS server; none over plain TCP.
    pki: Option<Pki>,
    /// The server process and its port.
    server: Mutex<(Child, u16)>,
    root: tempfile::TempDir,
    local: tempfile::TempDir,
    /// The source tree and the destination tree, whichever side they are.
    pub(super) src: PathBuf,
    pub(super) dst: PathBuf,
}

/// Upload and download, each over plain TCP and over TLS.
fn ways() -> Vec<Case> {
    [("send", false), ("recv", false), ("send", true), ("recv", true)]
        .map(|(way, tls)| Case::new(way, tls))
        .into()
}

/// Runs `test` on each of the four cases, all at the same time: they
/// mostly wait (on the throttled proxy, on the client's timeouts). The
/// first failure fails the test, with its own message.
pub(super) fn each_way(test: impl Fn(Case) + Sync) {
    let cases = ways();
    std::thread::scope(|scope| {
        let test = &test;
        let runs: Vec<_> = cases
            .into_iter()
            .map(|case| {
                let name = case.name();
                std::thread::Builder::new()
                    .name(name)
                    .spawn_scoped(scope, move || test(case))
                    .expect("a thread")
            })
            .collect();
        for run in runs {
            if let Err(panic) = run.join() {
                std::panic::resume_unwind(panic);
            }
        }
    });
}

impl Case {
    /// `send` or `recv`, with `tls` or without.
    pub(super) fn new(direction: &'static str, tls: bool) -> Case {
        let pki = tls.then(Pki::new);
        let root = tempfile::tempdir().expect("temp dir");
        let local = tempfile::tempdir().expect("temp dir");
        let server = serve(root.path(), pki.as_ref());
        let (src, dst) = if direction == "send" {
            (local.path().to_owned(), root.path().join("d"))
        } else {
            (root.path().join("d"), local.path().to_owned())
        };
        Case { direction, pki, server: Mutex::new(server), root, local, src, dst }
    }

    /// `send over TLS`, `recv over TCP`...
    pub(super) fn name(&self) -> String {
        format!("{} over {}", self.direction, if self.pki.is_some() { "TLS" } else { "TCP" })
    }

    /// A proxy in front of this case's server, throttled to `bytes_per_s`
    /// per direction of each connection.
    pub(super) fn proxy(&self, bytes_per_s: u64) -> Proxy {
        let proxy = Proxy::start(self.server.lock().unwrap().1);
        proxy.throttle(bytes_per_s);
        proxy
    }

    /// Restarts the server: a new one on the same root (without the old
    /// one's sessions), then the old one killed with SIGKILL; returns the
    /// new one's port.
    pub(super) fn restart(&self) -> u16 {
        let fresh = serve(self.root.path(), self.pki.as_ref());
        let port = fresh.1;
        let (mut old, _) = std::mem::replace(&mut *self.server.lock().unwrap(), fresh);
        let _ = old.kill();
        let _ = old.wait();
        port
    }

    /// The command of this case's transfer from or to `url`, in chunks of
    /// 64 KiB, with TLS if the server has it.
    fn args(&self, url: &str) -> Vec<String> {
        let local = self.local.path().to_str().expect("UTF-8 temp path").to_owned();
        let mut args = match self.direction {
            "send" => vec!["send".to_owned(), local, url.to_owned()],
            _ => vec!["recv".to_owned(), url.to_owned(), local],
        };
        args.extend(["-c", "64KiB"].map(String::from));
        if let Some(pki) = &self.pki {
            args.extend(["--tls".to_owned(), "--ca-cert".to_owned(), pki.arg("ca.pem")]);
        }
        args
    }

    /// Runs the transfer again, straight to the server, and expects it to
    /// make the destination an exact mirror.
    pub(super) fn rerun(&self) {
        let url = format!("pareco://127.0.0.1:{}/d", self.server.lock().unwrap().1);
        let args = self.args(&url);
        let report = sync_ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(report["errors"], 0, "{}: {report}", self.name());
        assert_same_tree(&self.src, &self.dst);
    }

    /// Asserts that every file the destination has under its own name
    /// (temporary files aside) has the source's bytes: a run that failed
    /// part of the way tore nothing.
    pub(super) fn assert_not_torn(&self) {
        let source = snapshot(&self.src);
        for (path, entry) in snapshot(&self.dst) {
            let Snap::File { content, .. } = entry else { continue };
            if path.rsplit('/').next().is_some_and(|name| name.starts_with(".pareco-")) {
                continue;
            }
            let Some(Snap::File { content: original, .. }) = source.get(&path) else {
                panic!("{}: {path} is not in the source", self.name())
            };
            assert!(&content == original, "{}: {path} is torn", self.name());
        }
    }

    /// Runs this case's transfer through `proxy` (4 connections, `extra`
    /// options, `--json`) while `fault` works the proxy beside it; returns
    /// how the run ended and what `fault` returned.
    pub(super) fn run<T: Send>(
        &self,
        proxy: &Proxy,
        extra: &[&str],
        fault: impl FnOnce(&Running) -> T + Send,
    ) -> (Outcome, T) {
        let mut args = self.args(&proxy.url("d"));
        args.extend(["-n", "4", "--json"].map(String::from));
        args.extend(extra.iter().map(|a| a.to_string()));
        let running = Running { ended: AtomicBool::new(false) };
        std::thread::scope(|scope| {
            let mut child = Command::new(BIN)
                .args(&args)
                .env_remove("PARECO_TOKEN")
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("run pareco");
            let (mut out, mut err) =
                (child.stdout.take().expect("stdout"), child.stderr.take().expect("stderr"));
            let stdout = scope.spawn(move || read_all(&mut out));
            let stderr = scope.spawn(move || read_all(&mut err));
            let faults = scope.spawn(|| fault(&running));
            let started = Instant::now();
            let status = loop {
                if let Some(status) = child.try_wait().expect("wait") {
                    break status;
                }
                if started.elapsed() > RUN_LIMIT {
                    let _ = child.kill();
                    let _ = child.wait();
                    running.ended.store(true, Ordering::SeqCst);
                    panic!(
                        "{}: pareco {args:?} still ran after {RUN_LIMIT:?} (proxy: {} open, {} accepted, {} \
                         refused, {} bytes carried):\n{}",
                        self.name(),
                        proxy.open(),
                        proxy.accepted(),
                        proxy.refused(),
                        proxy.carried(),
                        stderr.join().unwrap_or_default()
                    );
                }
                std::thread::sleep(Duration::from_millis(10));
            };
            running.ended.store(true, Ordering::SeqCst);
            let did = faults.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            let report =
                serde_json::from_str(&stdout.join().unwrap_or_default()).unwrap_or(serde_json::Value::Null);
            (Outcome { code: status.code(), err: stderr.join().unwrap_or_default(), report }, did)
        })
    }

    /// Asserts that the run ended with exit 0, no error in its report, and
    /// the destination an exact mirror of the source.
    pub(super) fn assert_mirrored(&self, out: &Outcome) {
        assert_eq!(out.code, Some(0), "{}: {}", self.name(), out.err);
        assert_eq!(out.report["errors"], 0, "{}: {}", self.name(), out.report);
        assert_same_tree(&self.src, &self.dst);
    }

    /// Asserts what the report counts of the connections the client made
    /// again through `proxy` (beyond its first 4), of which there must
    /// have been `least`: each joined the session, but perhaps the last,
    /// which the end of the session may overtake (a client makes them one
    /// at a time, so an earlier one was done when the next was made).
    pub(super) fn assert_rejoined(&self, out: &Outcome, proxy: &Proxy, least: usize) {
        let again = proxy.accepted() as u64 - 4;
        let reconnects = out.count("reconnects");
        assert!(again >= least as u64, "{}: {again} connections made again, not {least}", self.name());
        assert!(
            reconnects <= again && reconnects + 1 >= again,
            "{}: {again} connections made again, {reconnects} joined: {}",
            self.name(),
            out.report
        );
    }
}

impl Drop for Case {
    fn drop(&mut self) {
        let (child, _) = &mut *self.server.lock().unwrap();
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// Starts `pareco listen` on `root`, with the certificates of `pki` if
/// any; returns the process and its port.
fn serve(root: &Path, pki: Option<&Pki>) -> (Child, u16) {
    let tls = pki.map(|pki| {
        ["--tls-cert".into(), pki.arg("server.pem"), "--tls-key".into(), pki.arg("server-key.pem")]
    });
    let args: Vec<&str> = tls.iter().flatten().map(String::as_str).collect();
    listen(root, 0, &args)
}

/// After a fault: holds the link to a trickle until the client has made
/// `n` connections in all (so that the transfer cannot end first, however
/// loaded the machine), then lets it run at `rate` again. False if the
/// client ended first.
pub(super) fn redialed(proxy: &Proxy, run: &Running, n: usize, rate: u64) -> bool {
    proxy.throttle(TRICKLE);
    let made = run.until(|| proxy.accepted() >= n);
    proxy.throttle(rate);
    made
}

/// A tree of `files` files of `size` bytes each (and 50 small ones).
pub(super) fn tree(root: &Path, files: usize, size: usize) {
    for i in 0..files {
        file(&root.join(format!("big{i}")), &noise(size, i as u64), 0o640, (1_600_000_000 + i as i64, 7));
    }
    for i in 0..50 {
        file(&root.join(format!("small/s{i}")), &noise(100 + i, 1000 + i as u64), 0o644, (1_500_000_000, 0));
    }
}

/// How a run ended: exit code, stderr, the `--json` report (null if none).
pub(super) struct Outcome {
    pub(super) code: Option<i32>,
    pub(super) err: String,
    pub(super) report: serde_json::Value,
}

impl Outcome {
    /// The report's counter `key`.
    pub(super) fn count(&self, key: &str) -> u64 {
        self.report[key]
            .as_u64()
            .unwrap_or_else(|| panic!("no {key} in the report: {}\n{}", self.report, self.err))
    }
}

/// What the fault thread knows of the client: whether it still runs.
pub(super) struct Running {
    ended: AtomicBool,
}

impl Running {
    /// Waits until `done` holds (true) or the client has ended (false).
    /// No time limit of its own: a client that hangs is killed after
    /// [`RUN_LIMIT`], which ends the wait.
    pub(super) fn until(&self, mut done: impl FnMut() -> bool) -> bool {
        loop {
            if done() {
                return true;
            }
            if self.ended.load(Ordering::SeqCst) {
                return false;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

fn read_all(from: &mut impl std::io::Read) -> String {
    let mut text = String::new();
    let _ = from.read_to_string(&mut text);
    text
}
