//! A transfer survives what networks and machines do: connections cut one
//! at a time or all at once, a black-holed connection, a server restarted
//! under a session, a client killed with -9. Every fault is made on
//! purpose by [`Proxy`] (or a signal) while a real client and server run,
//! both ways; every test checks the whole mirror afterwards.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::proxy::Proxy;
use crate::util::*;

/// A server started anew on the root of another (the same server after a
/// restart, with none of its sessions); killed when dropped.
struct Restarted {
    child: std::process::Child,
    port: u16,
}

impl Restarted {
    fn on(root: &std::path::Path) -> Restarted {
        let (child, port) = listen(root, 0, &[]);
        Restarted { child, port }
    }
}

impl Drop for Restarted {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A tree of `files` files of `size` bytes each (and a few small ones).
fn tree(root: &std::path::Path, files: usize, size: usize) {
    for i in 0..files {
        file(&root.join(format!("big{i}")), &noise(size, i as u64), 0o640, (1_600_000_000 + i as i64, 7));
    }
    for i in 0..50 {
        file(&root.join(format!("small/s{i}")), &noise(100 + i, 1000 + i as u64), 0o644, (1_500_000_000, 0));
    }
}

/// Runs `args` (plus `--json`) while `fault` runs beside it; returns the
/// exit code, stderr and the report (if any).
fn run_with(args: &[&str], fault: impl FnOnce() + Send) -> (Option<i32>, String, serde_json::Value) {
    std::thread::scope(|scope| {
        let mut child = Command::new(BIN)
            .args(args)
            .arg("--json")
            .env_remove("PARECO_TOKEN")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run pareco");
        let (mut out, mut err) = (child.stdout.take().expect("stdout"), child.stderr.take().expect("stderr"));
        let stdout = scope.spawn(move || read_all(&mut out));
        let stderr = scope.spawn(move || read_all(&mut err));
        let faults = scope.spawn(fault);
        let started = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait") {
                break status;
            }
            if started.elapsed() > RUN_LIMIT {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "pareco {args:?} still runs after {RUN_LIMIT:?}:\n{}",
                    stderr.join().unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        faults.join().expect("fault thread");
        let report =
            serde_json::from_str(&stdout.join().unwrap_or_default()).unwrap_or(serde_json::Value::Null);
        (status.code(), stderr.join().unwrap_or_default(), report)
    })
}

/// A run under faults must end within this.
const RUN_LIMIT: Duration = Duration::from_secs(40);

fn read_all(from: &mut impl std::io::Read) -> String {
    let mut text = String::new();
    let _ = from.read_to_string(&mut text);
    text
}

/// The command of a transfer through `proxy` for `way`.
fn args<'a>(way: &'a Way, url: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let local = way.local.path().to_str().expect("UTF-8 temp path");
    let mut args = if way.name == "send" { vec!["send", local, url] } else { vec!["recv", url, local] };
    args.extend_from_slice(&["-n", "4", "-c", "64KiB"]);
    args.extend_from_slice(extra);
    args
}

fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < limit, "{what} did not happen within {limit:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn connections_cut_one_at_a_time_cost_nothing_but_time() {
    for way in both_ways() {
        tree(&way.src, 4, 3 << 20);
        let proxy = Proxy::start(way.server.port);
        proxy.throttle(4 << 20);
        let url = proxy.url("d");
        let (code, err, report) = run_with(&args(&way, &url, &[]), || {
            wait_for("the session's connections", Duration::from_secs(10), || proxy.open() >= 4);
            for _ in 0..6 {
                std::thread::sleep(Duration::from_millis(150));
                proxy.cut_one();
            }
        });
        assert_eq!(code, Some(0), "{}: {err}", way.name);
        assert_same_tree(&way.src, &way.dst);
        assert!(report["reconnects"].as_u64() >= Some(1), "{}: {report}", way.name);
        assert_eq!(report["errors"], 0, "{}", way.name);
        assert!(!err.contains("all connections lost"), "{}: {err}", way.name);
    }
}

#[test]
fn over_tls_too() {
    let pki = crate::tls::Pki::new();
    let ca = pki.arg("ca.pem");
    for name in ["send", "recv"] {
        let server = pki.server("server");
        let local = tempfile::tempdir().unwrap();
        let (src, dst) = if name == "send" {
            (local.path().to_owned(), server.path("d"))
        } else {
            (server.path("d"), local.path().to_owned())
        };
        let way = Way { name, server, local, src, dst };
        tree(&way.src, 3, 2 << 20);
        let proxy = Proxy::start(way.server.port);
        proxy.throttle(2 << 20);
        let url = proxy.url("d");
        let (code, err, report) = run_with(&args(&way, &url, &["--tls", "--ca-cert", &ca]), || {
            wait_for("the session's connections", Duration::from_secs(10), || proxy.open() >= 4);
            for _ in 0..4 {
                std::thread::sleep(Duration::from_millis(200));
                proxy.cut_one();
            }
        });
        assert_eq!(code, Some(0), "{name}: {err}");
        assert_same_tree(&way.src, &way.dst);
        assert!(report["reconnects"].as_u64() >= Some(1), "{name}: {report}");
    }
}

#[test]
fn an_outage_of_every_connection_is_waited_out() {
    for way in both_ways() {
        tree(&way.src, 3, 2 << 20);
        let proxy = Proxy::start(way.server.port);
        proxy.throttle(4 << 20);
        let url = proxy.url("d");
        let (code, err, report) = run_with(&args(&way, &url, &["--reconnect-timeout", "20s"]), || {
            wait_for("the session's connections", Duration::from_secs(10), || proxy.open() >= 4);
            std::thread::sleep(Duration::from_millis(200));
            proxy.outage(true);
            std::thread::sleep(Duration::from_secs(2));
            proxy.outage(false);
        });
        assert_eq!(code, Some(0), "{}: {err}", way.name);
        assert_same_tree(&way.src, &way.dst);
        assert!(err.contains("all connections lost") && err.contains("reconnecting for up to 20s"), "{err}");
        assert!(err.contains("connected again after"), "{err}");
        assert!(report["reconnects"].as_u64() >= Some(4), "{report}");
        assert!(report["requests_retried"].as_u64() >= Some(1), "{report}");
    }
}

#[test]
fn a_black_holed_connection_is_found_and_replaced() {
    for way in both_ways() {
        tree(&way.src, 2, 2 << 20);
        let proxy = Proxy::start(way.server.port);
        proxy.throttle(1 << 20);
        let url = proxy.url("d");
        let (code, err, report) = run_with(&args(&way, &url, &["--io-timeout", "1s"]), || {
            wait_for("the session's connections", Duration::from_secs(10), || proxy.open() >= 4);
            std::thread::sleep(Duration::from_millis(100));
            proxy.stall_one();
        });
        assert_eq!(code, Some(0), "{}: {err}", way.name);
        assert_same_tree(&way.src, &way.dst);
        assert!(report["reconnects"].as_u64() >= Some(1), "{}: {report}", way.name);
    }
}

#[test]
fn without_reconnection_an_outage_fails_the_run_at_once_and_clearly() {
    let way = both_ways().into_iter().next().expect("send");
    tree(&way.src, 2, 2 << 20);
    let proxy = Proxy::start(way.server.port);
    proxy.throttle(2 << 20);
    let url = proxy.url("d");
    let started = Instant::now();
    let (code, err, _) = run_with(&args(&way, &url, &["--reconnect-timeout", "0"]), || {
        wait_for("the session's connections", Duration::from_secs(10), || proxy.open() >= 4);
        std::thread::sleep(Duration::from_millis(300));
        proxy.outage(true);
    });
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("connection to the server lost"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
}

#[test]
fn a_server_restarted_under_a_session_gets_a_new_session_that_carries_on() {
    for way in both_ways() {
        tree(&way.src, 2, 2 << 20);
        let proxy = Proxy::start(way.server.port);
        proxy.throttle(2 << 20);
        // A new server (no sessions) on the same tree, for where the old
        // one was.
        let fresh = Restarted::on(way.server.root.path());
        let url = proxy.url("d");
        let (code, err, report) = run_with(&args(&way, &url, &[]), || {
            wait_for("the session's connections", Duration::from_secs(10), || proxy.open() >= 4);
            std::thread::sleep(Duration::from_millis(200));
            proxy.retarget(fresh.port);
            proxy.cut_all();
        });
        assert_eq!(code, Some(0), "{}: {err}", way.name);
        assert!(err.contains("is not open") && err.contains("opening a new session to carry on"), "{err}");
        assert_eq!(report["sessions_opened"], 2, "{}: {report}", way.name);
        assert_same_tree(&way.src, &way.dst);
    }
}

#[test]
fn without_reconnection_a_restarted_server_ends_the_run_at_once() {
    let way = both_ways().into_iter().next().expect("send");
    tree(&way.src, 2, 2 << 20);
    let proxy = Proxy::start(way.server.port);
    proxy.throttle(2 << 20);
    let fresh = Server::start(&[]);
    let url = proxy.url("d");
    let started = Instant::now();
    let (code, err, _) = run_with(&args(&way, &url, &["--reconnect-timeout", "0"]), || {
        wait_for("the session's connections", Duration::from_secs(10), || proxy.open() >= 4);
        std::thread::sleep(Duration::from_millis(200));
        proxy.retarget(fresh.port);
        proxy.cut_all();
    });
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("connection to the server lost"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(20), "{:?}", started.elapsed());
}

#[test]
fn a_client_killed_mid_upload_is_taken_over_by_the_rerun_at_once() {
    let server = Server::start(&["--session-timeout", "10m"]);
    let src = tempfile::tempdir().unwrap();
    tree(src.path(), 4, 2 << 20);
    let proxy = Proxy::start(server.port);
    proxy.throttle(1 << 20);
    let url = proxy.url("d");
    let mut child = Command::new(BIN)
        .args(["send", src.path().to_str().unwrap(), &url, "-n", "4", "-c", "64KiB"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run pareco");
    wait_for("the session's connections", Duration::from_secs(10), || proxy.open() >= 4);
    std::thread::sleep(Duration::from_millis(300));
    child.kill().expect("kill -9");
    child.wait().expect("reap");
    // The rerun wants the same tree while the killed session still holds
    // it; it is admitted at once.
    let started = Instant::now();
    sync_ok(&["send", src.path().to_str().unwrap(), &server.url("d"), "-c", "64KiB"]);
    assert!(started.elapsed() < Duration::from_secs(15), "{:?}", started.elapsed());
    assert_same_tree(src.path(), &server.path("d"));
}

#[test]
fn a_run_without_error_leaves_no_temporary_file_behind() {
    for way in both_ways() {
        file(&way.src.join("same"), b"unchanged", 0o644, (1_600_000_000, 0));
        file(&way.src.join("sub/new"), &noise(300_000, 1), 0o644, (1_600_000_000, 0));
        std::fs::create_dir_all(way.dst.join("sub")).unwrap();
        file(&way.dst.join("same"), b"unchanged", 0o644, (1_600_000_000, 0));
        // Left by interrupted runs: of a file now gone from the source, of
        // one that is unchanged, of one that is sent now.
        for (dir, name) in [("", "gone"), ("", "same"), ("sub", "new")] {
            let temp = temp_of(&way.dst.join(dir), name);
            std::fs::write(&temp, b"partial").unwrap();
        }
        let r = way.sync(&["-c", "64KiB"]);
        assert_eq!(r["errors"], 0, "{}: {r}", way.name);
        assert_same_tree(&way.src, &way.dst);
        for dir in ["", "sub"] {
            let left: Vec<String> = std::fs::read_dir(way.dst.join(dir))
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|name| name.starts_with(".pareco-"))
                .collect();
            assert!(left.is_empty(), "{}: {left:?} left in {dir:?}", way.name);
        }
    }
}
