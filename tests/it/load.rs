//! Honest load on one server: 64 sessions at once (the default
//! `--max-sessions`), 8 connections each, half uploads and half downloads
//! of trees of small and large files. Everything completes, the server's
//! memory stays under a measured bound, and its descriptors return to their
//! idle count once the clients are gone. (Hostile peers: `bounds`,
//! `hardening`.) `scripts/load.sh` is the longer, configurable version.
//!
//! All 512 connections are served at once: a connection gives back its
//! handshake slot (`MAX_HANDSHAKES`, 256) once it has joined. (It did not
//! always: the joins beyond 256 waited in the listen backlog, and those
//! that waited past the client's 15 s were made again; this test found
//! it.) So no connection may be replaced under this honest load.

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::*;

/// Clients at once: as many uploads as downloads.
const SESSIONS: usize = 64;
/// Small files per tree (0 to 4 KiB each, in 10 directories).
const SMALL_FILES: usize = 200;
/// The two large files of a tree, plus a few bytes that differ per tree.
const LARGE: [usize; 2] = [3 << 19, 5 << 19];
/// Every client must be done by then; they take 10 to 30 s on a busy
/// 2-core machine (debug build), the whole test 20 to 45 s.
const CLIENT_DEADLINE: Duration = Duration::from_secs(120);
/// How long the server may take to drop the descriptors of sessions whose
/// clients have closed them and exited (it has always been done by the
/// time the last client exited).
const DRAIN_DEADLINE: Duration = Duration::from_secs(15);
/// The server's peak resident memory (VmHWM) must stay under this.
/// Measured with the debug build: 5 MiB idle (13 descriptors), a peak of
/// 48 to 71 MiB under this load (64 sessions × 8 connections, 256 KiB
/// chunks), and 86 to 128 MiB once all 512 connections are served at once
/// (handshake slots released on join; 101 to 123 MiB with the
/// release build; over 10 rounds of `scripts/load.sh` it levels off at
/// 140 MiB, memory the allocator keeps). The bound is twice the highest
/// single-round peak: room for a busier machine and another allocator, and
/// still far below what 64 sessions may take at their full budget (256 MiB
/// each).
const PEAK_MEMORY_BOUND: u64 = 256 << 20;

/// One client process and what it syncs.
struct Client {
    what: String,
    child: Child,
    /// Its `--json` report and its stderr.
    out: PathBuf,
    err: PathBuf,
    /// The tree it copies from and the tree it makes a mirror.
    src: PathBuf,
    dst: PathBuf,
}

/// A test that fails leaves no client running.
impl Drop for Client {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[test]
fn sixty_four_mixed_sessions_complete_in_bounded_memory_and_leave_no_descriptor_behind() {
    let begun = Instant::now();
    let server = Server::start(&["--max-sessions", &SESSIONS.to_string()]);
    let pid = server_pid(&server);
    let work = tempfile::tempdir().unwrap();
    // Files are slices of one pool of noise, at different offsets.
    let pool = noise(8 << 20, 77);
    for i in 0..SESSIONS {
        let src = if i % 2 == 0 {
            work.path().join(format!("up-src/{i}"))
        } else {
            server.path(&format!("down/{i}"))
        };
        tree(&src, i, &pool);
    }
    let idle = descriptors(pid);

    let started = Instant::now();
    let mut clients: Vec<Client> = (0..SESSIONS).map(|i| spawn(&server, work.path(), i)).collect();
    let mut peak_fds = idle;
    let mut done: Vec<Option<std::process::ExitStatus>> = vec![None; SESSIONS];
    while done.iter().any(Option::is_none) {
        for (client, status) in clients.iter_mut().zip(&mut done) {
            if status.is_none() {
                *status = client.child.try_wait().expect("wait for a client");
            }
        }
        peak_fds = peak_fds.max(descriptors(pid));
        if started.elapsed() > CLIENT_DEADLINE {
            let late: Vec<&str> = clients
                .iter()
                .zip(&done)
                .filter(|(_, s)| s.is_none())
                .map(|(c, _)| c.what.as_str())
                .collect();
            // (Dropping the clients kills them.)
            panic!("not done within {CLIENT_DEADLINE:?}: {}", late.join(", "));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let wall = started.elapsed();
    for (client, status) in clients.iter().zip(&done) {
        let status = status.expect("exited");
        assert!(
            status.success(),
            "{} failed ({status:?}):\n{}",
            client.what,
            fs::read_to_string(&client.err).unwrap_or_default()
        );
    }

    // Every client sent Close before it exited: its session ends at once,
    // and its connections with it.
    let drain = Instant::now();
    let mut after = descriptors(pid);
    while after != idle && drain.elapsed() < DRAIN_DEADLINE {
        std::thread::sleep(Duration::from_millis(100));
        after = descriptors(pid);
    }
    assert_eq!(
        after,
        idle,
        "the server holds {after} descriptors {DRAIN_DEADLINE:?} after the last client exited, \
         against {idle} idle:\n{}",
        fd_targets(pid)
    );
    let drained = drain.elapsed();

    let peak = server.peak_memory();
    // Connections replaced, by client: none are lost under honest load on
    // one machine. (When joined connections kept their handshake slot,
    // joins beyond 256 waited past the client's 15 s and were made again.)
    let mut replaced = Vec::new();
    for client in &clients {
        assert_same_tree(&client.src, &client.dst);
        let report: serde_json::Value =
            serde_json::from_slice(&fs::read(&client.out).unwrap()).expect("one JSON report");
        let count = |key: &str| report[key].as_u64().unwrap_or_else(|| panic!("{key} in {report}"));
        if count("reconnects") + count("requests_retried") > 0 {
            replaced.push(format!(
                "{}: {} reconnects, {} requests retried",
                client.what,
                count("reconnects"),
                count("requests_retried")
            ));
        }
    }
    eprintln!(
        "load: {SESSIONS} sessions in {wall:.1?} ({:.1?} in all); server peak RSS {} MiB; descriptors \
         idle {idle}, peak {peak_fds}, after {after} ({drained:.1?} to drain); {} clients replaced \
         connections {replaced:?}",
        begun.elapsed(),
        peak >> 20,
        replaced.len()
    );
    assert!(peak < PEAK_MEMORY_BOUND, "server peak memory {} MiB", peak >> 20);
    assert!(replaced.is_empty(), "connections lost under honest load: {replaced:?}");
}

/// Tree `i`: `SMALL_FILES` small files in 10 directories and two large ones.
fn tree(root: &Path, i: usize, pool: &[u8]) {
    for j in 0..SMALL_FILES {
        let len = (j * 37 + i * 11) % 4097;
        let start = (i * 7919 + j * 4099) % (pool.len() - len);
        let mtime = (1_600_000_000 + i as i64, j as u32);
        file(&root.join(format!("d{}/f{j}", j % 10)), &pool[start..start + len], 0o644, mtime);
    }
    for (k, len) in LARGE.into_iter().enumerate() {
        let start = (i * 65_537 + k * 1_000_003) % (pool.len() - len - SESSIONS);
        let data = &pool[start..start + len + i];
        file(&root.join(format!("large{k}.bin")), data, 0o600, (1_700_000_000, i as u32));
    }
}

/// Starts client `i`: even ones upload `up-src/i` into the server's `up/i`,
/// odd ones download the server's `down/i` into `down-dst/i`.
fn spawn(server: &Server, work: &Path, i: usize) -> Client {
    let (what, src, dst, args) = if i.is_multiple_of(2) {
        let src = work.join(format!("up-src/{i}"));
        let args = vec!["send".into(), src.clone().into_os_string(), server.url(&format!("up/{i}")).into()];
        (format!("send {i}"), src, server.path(&format!("up/{i}")), args)
    } else {
        let dst = work.join(format!("down-dst/{i}"));
        fs::create_dir_all(&dst).unwrap();
        let args = vec!["recv".into(), server.url(&format!("down/{i}")).into(), dst.clone().into_os_string()];
        (format!("recv {i}"), server.path(&format!("down/{i}")), dst, args)
    };
    let out = work.join(format!("client-{i}.json"));
    let err = work.join(format!("client-{i}.err"));
    let child = Command::new(BIN)
        .args(args)
        .args(["-n", "8", "-c", "256KiB", "--json"])
        .env_remove("PARECO_TOKEN")
        .stdin(Stdio::null())
        .stdout(fs::File::create(&out).unwrap())
        .stderr(fs::File::create(&err).unwrap())
        .spawn()
        .expect("start a client");
    Client { what, child, out, err, src, dst }
}

/// The pid of `server`, found by its command line (`listen ... --root
/// ROOT`, its root being a fresh temporary directory).
fn server_pid(server: &Server) -> u32 {
    let root = server.root.path().as_os_str().as_bytes();
    let found: Vec<u32> = fs::read_dir("/proc")
        .unwrap()
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .filter(|pid: &u32| {
            let Ok(cmdline) = fs::read(format!("/proc/{pid}/cmdline")) else { return false };
            let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
            args.get(1) == Some(&&b"listen"[..]) && args.windows(2).any(|w| w == [&b"--root"[..], root])
        })
        .collect();
    assert_eq!(found.len(), 1, "server processes serving {:?}: {found:?}", server.root.path());
    found[0]
}

/// Open descriptors of process `pid`.
fn descriptors(pid: u32) -> usize {
    fs::read_dir(format!("/proc/{pid}/fd")).expect("the server's descriptors").count()
}

/// What the descriptors of `pid` are (sockets, files), to show in a failure.
fn fd_targets(pid: u32) -> String {
    let mut targets: Vec<String> = fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| fs::read_link(e.ok()?.path()).ok())
        .map(|t| t.display().to_string())
        .collect();
    targets.sort();
    targets.join("\n")
}
