//! TLS on both ends: transfers, refused certificates, mixed plaintext/TLS.
//!
//! Certificates are made at test time with rcgen: a self-signed CA, a
//! server certificate it signs for `localhost` and 127.0.0.1, and the odd
//! ones the refusal tests need (another CA, a name-only certificate, an
//! expired one), all written as PEM files into a temporary directory.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use rcgen::{
    date_time_ymd, BasicConstraints, Certificate, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

use crate::util::*;

const C: &str = "4096";

/// How long a client may take to fail; beyond it the test calls it a hang.
const DEADLINE: Duration = Duration::from_secs(10);

/// A CA: its certificate and key.
struct Ca {
    cert: Certificate,
    key: KeyPair,
}

fn make_ca(name: &str) -> Ca {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    Ca { cert, key }
}

/// The PEM files of every certificate and key the tests use.
pub(crate) struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    pub(crate) fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let ca = make_ca("pareco test CA");
        let other = make_ca("some other CA");
        fs::write(dir.path().join("ca.pem"), ca.cert.pem()).unwrap();
        fs::write(dir.path().join("other-ca.pem"), other.cert.pem()).unwrap();
        let valid = (date_time_ymd(2000, 1, 1), date_time_ymd(4000, 1, 1));
        let leaves: [(&str, &[&str], _); 3] = [
            ("server", &["localhost", "127.0.0.1"], valid),
            ("named", &["pareco.test"], valid),
            ("expired", &["localhost", "127.0.0.1"], (date_time_ymd(2020, 1, 1), date_time_ymd(2021, 1, 1))),
        ];
        for (stem, names, (not_before, not_after)) in leaves {
            let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
            let mut params = CertificateParams::new(names).unwrap();
            params.distinguished_name.push(DnType::CommonName, stem);
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
            params.not_before = not_before;
            params.not_after = not_after;
            let key = KeyPair::generate().unwrap();
            let cert = params.signed_by(&key, &ca.cert, &ca.key).unwrap();
            fs::write(dir.path().join(format!("{stem}.pem")), cert.pem()).unwrap();
            fs::write(dir.path().join(format!("{stem}-key.pem")), key.serialize_pem()).unwrap();
        }
        Pki { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub(crate) fn arg(&self, name: &str) -> String {
        self.path(name).to_str().unwrap().to_owned()
    }

    /// A TLS server with the certificate `stem.pem` and key `stem-key.pem`.
    pub(crate) fn server(&self, stem: &str) -> Server {
        let cert = self.arg(&format!("{stem}.pem"));
        let key = self.arg(&format!("{stem}-key.pem"));
        Server::start(&["--tls-cert", &cert, "--tls-key", &key])
    }
}

fn tls_url(server: &Server, host: &str, path: &str) -> String {
    format!("pareco+tls://{host}:{}/{path}", server.port)
}

/// Runs the client, failing the test if it has not ended within
/// [`DEADLINE`] (it is killed then).
fn run_with_deadline(args: &[&str]) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .env_remove("PARECO_TOKEN")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run pareco");
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut out = Vec::new();
            let _ = pipe.read_to_end(&mut out);
            out
        })
    };
    let stdout = drain(Box::new(child.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.stderr.take().unwrap()));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            panic!("pareco {args:?} still running after {DEADLINE:?}: it hangs");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Output { status, stdout: stdout.join().unwrap(), stderr: stderr.join().unwrap() }
}

/// Runs the client and expects it to fail with status 1; returns stderr.
fn fails(args: &[&str]) -> String {
    let out = run_with_deadline(args);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "pareco {args:?}: {:?}\n{err}", out.status);
    err
}

/// A small tree to send.
fn small_tree(root: &Path) {
    file(&root.join("a.txt"), b"over TLS\n", 0o644, (1_600_000_000, 5));
    file(&root.join("sub/b.bin"), &noise(10_000, 11), 0o600, (1_600_000_001, 6));
}

/// The server still serves a TLS transfer after whatever came before.
fn still_serves(pki: &Pki, server: &Server, path: &str) {
    let src = tempfile::tempdir().unwrap();
    small_tree(src.path());
    let ca = pki.arg("ca.pem");
    let url = tls_url(server, "localhost", path);
    sync_ok(&["send", src.path().to_str().unwrap(), &url, "--ca-cert", &ca, "-c", C, "-n", "2"]);
    assert_same_tree(src.path(), &server.path(path));
}

#[test]
fn tls_transfers_both_ways() {
    let pki = Pki::new();
    let server = pki.server("server");
    let ca = pki.arg("ca.pem");

    // Upload with --tls and a pareco:// address (the name checked is the IP).
    let src = tempfile::tempdir().unwrap();
    varied_tree(src.path(), 4096);
    let local = src.path().to_str().unwrap();
    let r = sync_ok(&["send", local, &server.url("up"), "--tls", "--ca-cert", &ca, "-c", C, "-n", "3"]);
    assert_same_tree(src.path(), &server.path("up"));
    assert_eq!(r["files_transferred"], 7, "{r}");

    // Download with a pareco+tls:// address and a host name.
    let dst = tempfile::tempdir().unwrap();
    let target = dst.path().join("down");
    let url = tls_url(&server, "localhost", "up");
    let r = sync_ok(&["recv", &url, target.to_str().unwrap(), "--ca-cert", &ca, "-c", C, "-n", "3"]);
    assert_same_tree(src.path(), &target);
    assert_eq!(r["files_transferred"], 7, "{r}");
}

#[test]
fn certificate_of_another_ca_is_refused() {
    let pki = Pki::new();
    let server = pki.server("server");
    let src = tempfile::tempdir().unwrap();
    small_tree(src.path());
    let local = src.path().to_str().unwrap();
    let other = pki.arg("other-ca.pem");
    for url in [tls_url(&server, "localhost", "x"), tls_url(&server, "127.0.0.1", "x")] {
        let err = fails(&["send", local, &url, "--ca-cert", &other, "-c", C]);
        assert!(err.contains("TLS handshake with"), "{err}");
        assert!(err.contains("invalid peer certificate: UnknownIssuer"), "{err}");
    }
    // The system's roots do not know the test CA either (a system without
    // any roots is a usage error, status 2).
    let out = run_with_deadline(&["send", local, &tls_url(&server, "localhost", "x"), "-c", C]);
    let err = stderr(&out);
    match out.status.code() {
        Some(1) => assert!(err.contains("invalid peer certificate: UnknownIssuer"), "{err}"),
        Some(2) => assert!(err.contains("no trusted root certificates"), "{err}"),
        other => panic!("status {other:?}: {err}"),
    }
    assert!(!server.path("x").exists(), "nothing may be written by a refused client");
    still_serves(&pki, &server, "ok");
}

#[test]
fn wrong_server_name_is_refused_and_tls_server_name_fixes_it() {
    let pki = Pki::new();
    let ca = pki.arg("ca.pem");
    let src = tempfile::tempdir().unwrap();
    small_tree(src.path());
    let local = src.path().to_str().unwrap();

    // A certificate for localhost and 127.0.0.1, checked against another name.
    let server = pki.server("server");
    let url = tls_url(&server, "127.0.0.1", "x");
    let err = fails(&["send", local, &url, "--ca-cert", &ca, "--tls-server-name", "elsewhere.test"]);
    assert!(err.contains("certificate not valid for name \"elsewhere.test\""), "{err}");
    assert!(!server.path("x").exists());

    // A certificate only for pareco.test: the address alone does not match...
    let named = pki.server("named");
    for host in ["127.0.0.1", "localhost"] {
        let url = tls_url(&named, host, "x");
        let err = fails(&["send", local, &url, "--ca-cert", &ca, "-c", C]);
        assert!(err.contains(&format!("certificate not valid for name \"{host}\"")), "{err}");
        assert!(err.contains("pareco.test"), "the names the certificate has are shown: {err}");
    }
    assert!(!named.path("x").exists());
    // ...and naming the server fixes it, both ways.
    let url = tls_url(&named, "127.0.0.1", "x");
    sync_ok(&["send", local, &url, "--ca-cert", &ca, "--tls-server-name", "pareco.test", "-c", C]);
    assert_same_tree(src.path(), &named.path("x"));
    let dst = tempfile::tempdir().unwrap();
    let back = dst.path().join("back");
    let args = ["--ca-cert", &ca, "--tls-server-name", "pareco.test", "-c", C];
    sync_ok(&[&["recv", &url, back.to_str().unwrap()][..], &args].concat());
    assert_same_tree(src.path(), &back);
}

#[test]
fn expired_certificate_is_refused() {
    let pki = Pki::new();
    let server = pki.server("expired");
    let ca = pki.arg("ca.pem");
    let src = tempfile::tempdir().unwrap();
    small_tree(src.path());
    let url = tls_url(&server, "localhost", "x");
    let err = fails(&["send", src.path().to_str().unwrap(), &url, "--ca-cert", &ca, "-c", C]);
    assert!(err.contains("TLS handshake with"), "{err}");
    assert!(err.contains("certificate expired"), "{err}");
    let dst = tempfile::tempdir().unwrap();
    let err = fails(&["recv", &url, dst.path().to_str().unwrap(), "--ca-cert", &ca, "-c", C]);
    assert!(err.contains("certificate expired"), "{err}");
    assert!(!server.path("x").exists());
}

/// The server speaks TLS and the client does not: the user is told so,
/// and how to fix it, at once.
#[test]
fn plaintext_client_against_tls_server_is_told_to_use_tls() {
    let pki = Pki::new();
    let server = pki.server("server");
    let src = tempfile::tempdir().unwrap();
    small_tree(src.path());
    let url = server.url("x");
    let err = fails(&["send", src.path().to_str().unwrap(), &url, "-c", C]);
    assert!(err.contains("expects TLS"), "{err}");
    assert!(err.contains("--tls") && err.contains("pareco+tls://"), "{err}");
    let dst = tempfile::tempdir().unwrap();
    let err = fails(&["recv", &url, dst.path().to_str().unwrap(), "-c", C]);
    assert!(err.contains("expects TLS"), "{err}");
    assert!(!server.path("x").exists());
    still_serves(&pki, &server, "ok");
}

#[test]
fn tls_client_against_plaintext_server_fails_fast() {
    let pki = Pki::new();
    let server = Server::start(&[]);
    let src = tempfile::tempdir().unwrap();
    small_tree(src.path());
    let ca = pki.arg("ca.pem");
    let url = tls_url(&server, "localhost", "x");
    let err = fails(&["send", src.path().to_str().unwrap(), &url, "--ca-cert", &ca, "-c", C]);
    assert!(err.contains("closed the connection during the TLS handshake"), "{err}");
    assert!(err.contains("does not seem to use TLS"), "{err}");
    assert!(!server.path("x").exists());
    // Still serving plaintext clients.
    let local = src.path().to_str().unwrap();
    sync_ok(&["send", local, &server.url("ok"), "-c", C, "-n", "2"]);
    assert_same_tree(src.path(), &server.path("ok"));
}
