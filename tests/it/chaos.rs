//! Killed at any moment, nothing is torn and nothing is lost: rounds of a
//! transfer of a changing tree (uploads and downloads in turn, through a
//! slowed-down [`Proxy`]), in which the client or the server is killed
//! with SIGKILL at a random moment. After each kill, every file under its
//! final name must be one of the versions the source ever had (never a
//! mix); a client that was not killed must end with exit 0 and an exact
//! mirror (a restarted server gets a new session); then a rerun must make
//! an exact mirror and leave no temporary file.
//!
//! `cargo test` runs a few rounds; `scripts/chaos.sh` runs many
//! (`PARECO_CHAOS_ROUNDS`, `PARECO_CHAOS_SEED`).

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::util::*;
use pareco::testing::proxy::Proxy;

/// A server process on a root, on a port that stays the same when it is
/// killed and started again.
struct Killable {
    child: Child,
    port: u16,
    root: std::path::PathBuf,
}

impl Killable {
    fn start(root: &Path, port: u16) -> Killable {
        let (child, port) = listen(root, port, &["--session-timeout", "10m"]);
        Killable { child, port, root: root.to_owned() }
    }

    fn kill_and_restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        *self = Killable::start(&self.root.clone(), self.port);
    }
}

impl Drop for Killable {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// xorshift64*: the same rounds for the same seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The source tree, and every version each of its files ever had.
struct Source {
    versions: HashMap<String, HashSet<Vec<u8>>>,
}

impl Source {
    /// Changes some files of the tree at `root` (creating it the first
    /// time): new contents, new files, removed files.
    fn change(&mut self, root: &Path, rng: &mut Rng, round: u64) {
        for i in 0..6 {
            let name = format!("big{i}");
            if round == 0 || rng.below(3) == 0 {
                let size = (1 << 20) + rng.below(2 << 20) as usize;
                self.write(root, &name, &noise(size, rng.next()));
            }
        }
        for i in 0..30 {
            let name = format!("small/s{i}");
            match rng.below(6) {
                _ if round == 0 => self.write(root, &name, &noise(100 + i * 37, rng.next())),
                0 => self.write(root, &name, &noise(100 + rng.below(5000) as usize, rng.next())),
                1 => {
                    let _ = std::fs::remove_file(root.join(&name));
                }
                _ => {}
            }
        }
    }

    fn write(&mut self, root: &Path, name: &str, data: &[u8]) {
        file(&root.join(name), data, 0o644, (1_600_000_000, 0));
        self.versions.entry(name.to_owned()).or_default().insert(data.to_vec());
    }

    /// Every file under its final name in `dst` is a version of it.
    fn check_not_torn(&self, dst: &Path, what: &str) {
        for (name, versions) in &self.versions {
            let Ok(data) = std::fs::read(dst.join(name)) else { continue };
            assert!(versions.contains(&data), "{what}: {name} is torn ({} bytes)", data.len());
        }
    }
}

fn no_temporaries(root: &Path) {
    for dir in [root.to_owned(), root.join("small")] {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            assert!(!name.starts_with(".pareco-"), "temporary file {name} left in {}", dir.display());
        }
    }
}

#[test]
fn killed_at_any_moment_nothing_is_torn_and_the_rerun_is_exact() {
    let rounds: u64 = std::env::var("PARECO_CHAOS_ROUNDS").ok().and_then(|n| n.parse().ok()).unwrap_or(4);
    let seed: u64 = std::env::var("PARECO_CHAOS_SEED").ok().and_then(|n| n.parse().ok()).unwrap_or(0x5eed);
    let mut rng = Rng(seed | 1);
    let server_root = tempfile::tempdir().unwrap();
    let local = tempfile::tempdir().unwrap();
    let mut server = Killable::start(server_root.path(), 0);
    let proxy = Proxy::start(server.port);
    proxy.throttle(3 << 20);
    let (mut up, mut down) = (Source { versions: HashMap::new() }, Source { versions: HashMap::new() });
    let (mut client_kills, mut server_kills) = (0, 0);
    for round in 0..rounds {
        let upload = round % 2 == 0;
        let (src, dst) = if upload {
            (local.path().join("up"), server_root.path().join("up"))
        } else {
            (server_root.path().join("down"), local.path().join("down"))
        };
        let source = if upload { &mut up } else { &mut down };
        source.change(&src, &mut rng, round / 2);
        let url = proxy.url(if upload { "up" } else { "down" });
        let (src_arg, dst_arg) = if upload {
            (src.to_str().unwrap().to_owned(), url.clone())
        } else {
            (url.clone(), dst.to_str().unwrap().to_owned())
        };
        let verb = if upload { "send" } else { "recv" };
        let mut client = Command::new(BIN)
            .args([verb, &src_arg, &dst_arg, "-n", "4", "-c", "64KiB", "--delete", "-q"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run pareco");
        std::thread::sleep(Duration::from_millis(50 + rng.below(700)));
        let kill_server = rng.below(2) == 0;
        let what = format!(
            "round {round} (seed {seed}, {verb}, {} killed)",
            if kill_server { "server" } else { "client" }
        );
        if kill_server {
            server.kill_and_restart();
            proxy.retarget(server.port);
            server_kills += 1;
            let out = client.wait_with_output().expect("wait");
            // The client carries on with a new session.
            assert!(out.status.success(), "{what}: {}", String::from_utf8_lossy(&out.stderr));
            assert_same_tree(&src, &dst);
        } else {
            let _ = client.kill();
            let _ = client.wait();
            client_kills += 1;
            source.check_not_torn(&dst, &what);
        }
        // Whatever happened, a rerun makes the mirror exact.
        sync_ok(&[verb, &src_arg, &dst_arg, "-n", "4", "-c", "64KiB", "--delete"]);
        assert_same_tree(&src, &dst);
        no_temporaries(&dst);
    }
    eprintln!("chaos: {rounds} rounds survived, {client_kills} client kills, {server_kills} server kills (seed {seed})");
}
