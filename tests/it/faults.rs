//! A transfer survives what networks and machines do: connections cut one
//! at a time or all at once, black-holed connections, a long link, a
//! server restarted under a session, a client killed with -9. Every fault
//! is made on purpose by the kit's [`Proxy`] (or a signal) while a real
//! client and server run, upload and download, over plain TCP and over
//! TLS ([`cases::each_way`], all four at once). Faults wait for the
//! transfer's progress, not for time. Every test checks the exit code,
//! the whole mirror afterwards (or, for a run that must fail, that nothing
//! is torn and a rerun makes it) and what the report counts of lost
//! connections and sessions.

mod cases;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use pareco::testing::proxy::Proxy;

use crate::util::*;
use cases::{each_way, redialed, tree, Case, MIB};

/// How long a fault waits for its connection to carry a request or an
/// answer (only a failing test waits that long).
const BUSY_WITHIN: Duration = Duration::from_secs(10);

#[test]
fn connections_cut_one_at_a_time_cost_nothing_but_time() {
    const CUTS: usize = 4;
    const RATE: u64 = 4 << 20;
    each_way(|case| {
        let what = case.name();
        tree(&case.src, 3, 2 << 20);
        let proxy = case.proxy(RATE);
        // Each cut after another MiB has passed, while a request or an
        // answer is on its way; then the client makes the connection
        // again.
        let (out, cuts) = case.run(&proxy, &[], |run| {
            let mut cuts = 0;
            while cuts < CUTS
                && run.until(|| proxy.open() >= 4 && proxy.carried() >= (cuts as u64 + 1) * MIB)
                && proxy.cut_busy(BUSY_WITHIN)
                && redialed(&proxy, run, 4 + cuts + 1, RATE)
            {
                cuts += 1;
            }
            cuts
        });
        case.assert_mirrored(&out);
        assert_eq!(cuts, CUTS, "{what}: the run ended before the cuts were made");
        case.assert_rejoined(&out, &proxy, CUTS);
        assert!(out.count("requests_retried") >= CUTS as u64, "{what}: {}", out.report);
        assert_eq!(out.count("sessions_opened"), 1, "{what}: {}", out.report);
        assert!(!out.err.contains("all connections lost"), "{what}: {}", out.err);
    });
}

#[test]
fn an_outage_of_every_connection_is_waited_out() {
    const RATE: u64 = 4 << 20;
    each_way(|case| {
        let what = case.name();
        tree(&case.src, 3, 2 << 20);
        let proxy = case.proxy(RATE);
        // The outage lasts until the client has been turned away twice;
        // then it makes its 4 connections again.
        let (out, outage) = case.run(&proxy, &["--reconnect-timeout", "20s"], |run| {
            if !(run.until(|| proxy.open() >= 4 && proxy.carried() >= MIB) && proxy.cut_busy(BUSY_WITHIN)) {
                return false;
            }
            proxy.outage(true);
            let waited = run.until(|| proxy.refused() >= 2);
            proxy.outage(false);
            waited && redialed(&proxy, run, 8, RATE)
        });
        case.assert_mirrored(&out);
        assert!(outage, "{what}: the run ended before the outage was over");
        assert!(
            out.err.contains("all connections lost") && out.err.contains("reconnecting for up to 20s"),
            "{what}: {}",
            out.err
        );
        assert!(out.err.contains("connected again after"), "{what}: {}", out.err);
        case.assert_rejoined(&out, &proxy, 4);
        assert!(out.count("requests_retried") >= 1, "{what}: {}", out.report);
        assert_eq!(out.count("sessions_opened"), 1, "{what}: {}", out.report);
    });
}

#[test]
fn black_holed_connections_are_found_and_replaced() {
    const RATE: u64 = 2 << 20;
    each_way(|case| {
        let what = case.name();
        tree(&case.src, 3, 2 << 20);
        let proxy = case.proxy(RATE);
        // Two, one after the other: the second is made once the first has
        // been given up and made again. Stalled connections stay open.
        let (out, stalls) = case.run(&proxy, &["--io-timeout", "1s"], |run| {
            let mut stalls = 0;
            while stalls < 2
                && run.until(|| proxy.open() >= 4 && proxy.carried() >= MIB / 2)
                && proxy.stall_busy(BUSY_WITHIN)
                && redialed(&proxy, run, 4 + stalls + 1, RATE)
            {
                stalls += 1;
            }
            stalls
        });
        case.assert_mirrored(&out);
        assert_eq!(stalls, 2, "{what}: the run ended before the stalled connections were replaced");
        case.assert_rejoined(&out, &proxy, 2);
        assert!(out.count("requests_retried") >= 2, "{what}: {}", out.report);
        assert_eq!(out.count("sessions_opened"), 1, "{what}: {}", out.report);
        assert!(!out.err.contains("all connections lost"), "{what}: {}", out.err);
    });
}

#[test]
fn a_long_link_with_cuts_costs_nothing_but_time() {
    const DELAY: Duration = Duration::from_millis(25);
    const RATE: u64 = 2 << 20;
    each_way(|case| {
        let what = case.name();
        tree(&case.src, 3, 2 << 20);
        let proxy = case.proxy(RATE);
        proxy.delay(DELAY);
        let (out, cuts) = case.run(&proxy, &[], |run| {
            let mut cuts = 0;
            while cuts < 2
                && run.until(|| proxy.open() >= 4 && proxy.carried() >= MIB)
                && proxy.cut_busy(BUSY_WITHIN)
                && redialed(&proxy, run, 4 + cuts + 1, RATE)
            {
                cuts += 1;
            }
            cuts
        });
        case.assert_mirrored(&out);
        assert_eq!(cuts, 2, "{what}: the run ended before the cuts were made");
        case.assert_rejoined(&out, &proxy, 2);
        assert!(out.count("requests_retried") >= 2, "{what}: {}", out.report);
        assert_eq!(out.count("sessions_opened"), 1, "{what}: {}", out.report);
        // Every chunk's round trip crossed the link both ways.
        let p50 = out.report["chunk_latency_us"]["p50"].as_u64().unwrap_or(0);
        assert!(p50 >= 2 * DELAY.as_micros() as u64, "{what}: {}", out.report);
    });
}

#[test]
fn a_server_restarted_under_a_session_gets_a_new_session_that_carries_on() {
    const RATE: u64 = 2 << 20;
    each_way(|case| {
        let what = case.name();
        tree(&case.src, 2, 2 << 20);
        let proxy = case.proxy(RATE);
        // With a request held, the server is killed and started anew on
        // the same tree (with the same certificate), where the proxy
        // sends new connections.
        let (out, restarted) = case.run(&proxy, &[], |run| {
            if !(run.until(|| proxy.open() >= 4 && proxy.carried() >= MIB) && proxy.stall_busy(BUSY_WITHIN)) {
                return false;
            }
            proxy.retarget(case.restart());
            proxy.cut_all();
            true
        });
        case.assert_mirrored(&out);
        assert!(restarted, "{what}: the run ended before the restart");
        assert!(
            out.err.contains("is not open") && out.err.contains("opening a new session to carry on"),
            "{what}: {}",
            out.err
        );
        assert_eq!(out.count("sessions_opened"), 2, "{what}: {}", out.report);
        // What the lost session sent counts too: every byte crossed once
        // at least (the new session reuses what the old one wrote).
        assert!(out.count("bytes_transferred") >= out.count("bytes_total"), "{what}: {}", out.report);
        // No connection joined the old session on the new server; the
        // request held was sent again before the session was found gone.
        assert_eq!(out.count("reconnects"), 0, "{what}: {}", out.report);
        assert!(out.count("requests_retried") >= 1, "{what}: {}", out.report);
    });
}

#[test]
fn without_reconnection_an_outage_fails_the_run_at_once_and_clearly() {
    let case = Case::new("send", false);
    tree(&case.src, 2, 2 << 20);
    let proxy = case.proxy(2 << 20);
    let started = Instant::now();
    let (out, outage) = case.run(&proxy, &["--reconnect-timeout", "0"], |run| {
        let due = run.until(|| proxy.open() >= 4 && proxy.carried() >= MIB);
        if due {
            proxy.outage(true);
        }
        due
    });
    assert!(outage, "the run ended before the outage: {}", out.err);
    assert_eq!(out.code, Some(1), "{}", out.err);
    assert!(lost_clearly(&out.err), "{}", out.err);
    assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
    // No report (the run failed), and no connection was tried again.
    assert_eq!(out.report, serde_json::Value::Null);
    assert_eq!((proxy.accepted(), proxy.refused()), (4, 0));
    case.assert_not_torn();
    case.rerun();
}

#[test]
fn without_reconnection_a_restarted_server_ends_the_run_at_once() {
    let case = Case::new("send", false);
    tree(&case.src, 2, 2 << 20);
    let proxy = case.proxy(2 << 20);
    let started = Instant::now();
    let (out, restarted) = case.run(&proxy, &["--reconnect-timeout", "0"], |run| {
        let due = run.until(|| proxy.open() >= 4 && proxy.carried() >= MIB);
        if due {
            proxy.retarget(case.restart());
            proxy.cut_all();
        }
        due
    });
    assert!(restarted, "the run ended before the restart: {}", out.err);
    assert_eq!(out.code, Some(1), "{}", out.err);
    assert!(lost_clearly(&out.err), "{}", out.err);
    assert!(started.elapsed() < Duration::from_secs(20), "{:?}", started.elapsed());
    assert_eq!(out.report, serde_json::Value::Null);
    assert_eq!(proxy.accepted(), 4, "no connection may be tried again");
    case.assert_not_torn();
    case.rerun();
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
    // Killed once a MiB has passed.
    let started = Instant::now();
    while proxy.open() < 4 || proxy.carried() < MIB {
        assert!(child.try_wait().expect("wait").is_none(), "the upload ended before it was killed");
        assert!(started.elapsed() < Duration::from_secs(60), "the upload did not get going");
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().expect("kill -9");
    child.wait().expect("reap");
    // The rerun wants the same tree while the killed session still holds
    // it; it is admitted at once.
    let started = Instant::now();
    let report = sync_ok(&["send", src.path().to_str().unwrap(), &server.url("d"), "-c", "64KiB"]);
    assert!(started.elapsed() < Duration::from_secs(15), "{:?}", started.elapsed());
    assert_same_tree(src.path(), &server.path("d"));
    assert_eq!((&report["errors"], &report["sessions_opened"]), (&0.into(), &1.into()), "{report}");
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

/// Does stderr say that the connection to the server was lost? A request
/// that a connection's writer had taken when the session was lost fails
/// with "the session is closed" instead (its queue is closed by then; a
/// known fault of the client, src/session/link.rs `requeue`), and that
/// can be the error the run ends with.
fn lost_clearly(err: &str) -> bool {
    err.contains("connection to the server lost") || err.contains(": the session is closed")
}
