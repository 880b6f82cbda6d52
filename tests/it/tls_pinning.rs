//! TLS without a certificate authority: a certificate named with
//! `--ca-cert` that is exactly the server's is pinned whatever its CA flag
//! (as OpenSSL's `req -x509` makes it), and `listen --tls-self-signed`
//! keeps a certificate whose fingerprint clients pin with
//! `--tls-fingerprint`.

use std::fs;
use std::io::{BufRead, BufReader};
use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

use x509_parser::extensions::GeneralName;

use rcgen::{date_time_ymd, BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};

use crate::tls::Pki;
use crate::util::*;

const C: &str = "4096";

/// Writes a self-signed certificate for `names` to `dir/stem.pem` and its
/// key to `dir/stem-key.pem`, marked as a CA (`CA:TRUE`) as OpenSSL marks
/// `req -x509` certificates unless told otherwise.
fn self_signed_ca(dir: &Path, stem: &str, names: &[&str], valid: (i32, i32)) {
    let mut params = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    params.distinguished_name.push(DnType::CommonName, names[0]);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.not_before = date_time_ymd(valid.0, 1, 1);
    params.not_after = date_time_ymd(valid.1, 1, 1);
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    fs::write(dir.join(format!("{stem}.pem")), cert.pem()).unwrap();
    fs::write(dir.join(format!("{stem}-key.pem")), key.serialize_pem()).unwrap();
}

/// A running `pareco listen` (killed when dropped), its port and the
/// fingerprint it printed.
struct Listening {
    child: Child,
    port: u16,
    fingerprint: String,
}

impl Drop for Listening {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Listening {
    fn url(&self, host: &str, path: &str) -> String {
        format!("pareco+tls://{host}:{}/{path}", self.port)
    }
}

/// Starts `pareco listen` on 127.0.0.1 serving `root` with `extra`
/// options and `env`; reads its stderr up to `listening on`.
fn listen_tls(root: &Path, extra: &[&str], env: &[(&str, &Path)]) -> Listening {
    let mut command = Command::new(BIN);
    command.args(["listen", "--bind", "127.0.0.1:0", "--root"]).arg(root).args(extra);
    for (key, value) in env {
        command.env(key, value);
    }
    let mut child = command.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().expect("start server");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut fingerprint = String::new();
    let port = loop {
        let line = lines.next().expect("server exited before listening").unwrap();
        if let Some(printed) = line.strip_prefix("tls fingerprint ") {
            fingerprint = printed.to_owned();
        }
        if let Some(addr) = line.strip_prefix("listening on ") {
            break addr.rsplit(':').next().unwrap().parse().unwrap();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    Listening { child, port, fingerprint }
}

fn small_tree(root: &Path) {
    file(&root.join("a.txt"), b"pinned\n", 0o644, (1_600_000_000, 5));
    file(&root.join("sub/b.bin"), &noise(5_000, 3), 0o600, (1_600_000_001, 6));
}

fn run(args: &[&str]) -> Output {
    pareco(args)
}

/// Expects the client to fail with status 1; returns its stderr.
fn fails(args: &[&str]) -> String {
    let out = run(args);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "pareco {args:?}: {:?}\n{err}", out.status);
    err
}

#[test]
fn self_signed_certificate_marked_as_ca_is_pinned_by_ca_cert() {
    let certs = tempfile::tempdir().unwrap();
    let dir = certs.path();
    self_signed_ca(dir, "host", &["localhost", "127.0.0.1"], (2000, 4000));
    self_signed_ca(dir, "other", &["localhost", "127.0.0.1"], (2000, 4000));
    self_signed_ca(dir, "expired", &["localhost", "127.0.0.1"], (2020, 2021));
    self_signed_ca(dir, "future", &["localhost", "127.0.0.1"], (3000, 4000));
    let pem = |stem: &str| dir.join(format!("{stem}.pem")).to_str().unwrap().to_owned();
    let start = |stem: &str| {
        let root = tempfile::tempdir().unwrap();
        let key = dir.join(format!("{stem}-key.pem"));
        let server =
            listen_tls(root.path(), &["--tls-cert", &pem(stem), "--tls-key", key.to_str().unwrap()], &[]);
        (root, server)
    };
    let src = tempfile::tempdir().unwrap();
    small_tree(src.path());
    let local = src.path().to_str().unwrap();

    // The server's own certificate is trusted, both ways, by name and by IP.
    let (root, server) = start("host");
    sync_ok(&["send", local, &server.url("localhost", "up"), "--ca-cert", &pem("host"), "-c", C]);
    assert_same_tree(src.path(), &root.path().join("up"));
    let back = tempfile::tempdir().unwrap();
    let target = back.path().join("down");
    sync_ok(&["recv", &server.url("127.0.0.1", "up"), target.to_str().unwrap(), "--ca-cert", &pem("host")]);
    assert_same_tree(src.path(), &target);

    // Pinned still checks the name...
    let url = server.url("127.0.0.1", "x");
    let err = fails(&["send", local, &url, "--ca-cert", &pem("host"), "--tls-server-name", "elsewhere.test"]);
    assert!(err.contains("certificate not valid for name \"elsewhere.test\""), "{err}");
    // ...pins exactly that certificate, not another one of the same names...
    let err = fails(&["send", local, &url, "--ca-cert", &pem("other"), "-c", C]);
    assert!(err.contains("TLS handshake with"), "{err}");
    // ...and without it, a certificate marked as a CA is refused with a hint.
    let out = run(&["send", local, &url, "-c", C]);
    let err = stderr(&out);
    if out.status.code() == Some(1) {
        assert!(err.contains("--ca-cert") && err.contains("--tls-fingerprint"), "{err}");
    }
    assert!(!out.status.success(), "{err}");
    assert!(!root.path().join("x").exists(), "nothing may be written by a refused client");

    // Validity is still checked.
    for (stem, why) in [("expired", "certificate expired"), ("future", "certificate not valid yet")] {
        let (root, server) = start(stem);
        let err = fails(&["send", local, &server.url("localhost", "x"), "--ca-cert", &pem(stem), "-c", C]);
        assert!(err.contains(why), "{stem}: {err}");
        assert!(!root.path().join("x").exists());
    }
}

/// A server's certificate signed by a CA is trusted when `--ca-cert` names
/// that certificate itself, not the CA (webpki alone finds no issuer).
#[test]
fn certificate_signed_by_a_ca_is_pinned_by_itself() {
    let pki = Pki::new();
    let server = pki.server("server");
    let src = tempfile::tempdir().unwrap();
    small_tree(src.path());
    let url = format!("pareco+tls://localhost:{}/pinned", server.port);
    let leaf = pki.arg("server.pem");
    sync_ok(&["send", src.path().to_str().unwrap(), &url, "--ca-cert", &leaf, "-c", C]);
    assert_same_tree(src.path(), &server.path("pinned"));
}

#[test]
fn self_signed_server_is_pinned_by_its_fingerprint_and_keeps_it() {
    let root = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let tls_dir = state.path().join("tls");
    let dir_arg = tls_dir.to_str().unwrap();
    let src = tempfile::tempdir().unwrap();
    small_tree(src.path());
    let local = src.path().to_str().unwrap();

    let server = listen_tls(root.path(), &["--tls-self-signed", "--tls-dir", dir_arg], &[]);
    let fingerprint = server.fingerprint.clone();
    assert!(fingerprint.starts_with("sha256:") && fingerprint.len() == 7 + 64, "{fingerprint:?}");
    // Kept: the key for the owner only, in a directory for the owner only.
    let mode = |path: &Path| fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&tls_dir.join("key.pem")), 0o600);
    assert_eq!(mode(&tls_dir), 0o700);
    let cert_pem = fs::read(tls_dir.join("cert.pem")).unwrap();
    let der = rustls_pemfile::certs(&mut &cert_pem[..]).next().unwrap().unwrap();
    let digest = ring::digest::digest(&ring::digest::SHA256, der.as_ref());
    let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(fingerprint, format!("sha256:{hex}"), "the fingerprint is the SHA-256 of the certificate");
    // For this host's name and the local addresses, no CA flag.
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).unwrap();
    let sans: Vec<String> = cert
        .subject_alternative_name()
        .unwrap()
        .unwrap()
        .value
        .general_names
        .iter()
        .map(|name| match name {
            GeneralName::DNSName(dns) => dns.to_string(),
            GeneralName::IPAddress(&[a, b, c, d]) => IpAddr::from([a, b, c, d]).to_string(),
            GeneralName::IPAddress(ip) => IpAddr::from(<[u8; 16]>::try_from(*ip).unwrap()).to_string(),
            other => format!("{other:?}"),
        })
        .collect();
    let host = rustix::system::uname().nodename().to_string_lossy().into_owned();
    for name in [host.as_str(), "localhost", "127.0.0.1", "::1"] {
        assert!(sans.iter().any(|san| san == name), "{name} in {sans:?}");
    }
    assert!(!cert.is_ca());

    // The fingerprint replaces the CA and the name check, both ways, and
    // is taken as OpenSSL prints it too.
    sync_ok(&["send", local, &server.url("127.0.0.1", "up"), "--tls-fingerprint", &fingerprint, "-c", C]);
    assert_same_tree(src.path(), &root.path().join("up"));
    let openssl_style = format!(
        "SHA256:{}",
        hex.to_uppercase()
            .as_bytes()
            .chunks(2)
            .map(|p| std::str::from_utf8(p).unwrap())
            .collect::<Vec<_>>()
            .join(":")
    );
    let back = tempfile::tempdir().unwrap();
    let target = back.path().join("down");
    let url = server.url("localhost", "up");
    let args = ["--tls-fingerprint", &openssl_style, "--tls-server-name", "any.name.test"];
    sync_ok(&[&["recv", &url, target.to_str().unwrap()][..], &args].concat());
    assert_same_tree(src.path(), &target);

    // Another fingerprint is refused, naming both on one line.
    let wrong = format!("sha256:{}", "ab".repeat(32));
    let err = fails(&["send", local, &server.url("127.0.0.1", "x"), "--tls-fingerprint", &wrong, "-c", C]);
    let line = err.lines().find(|l| l.contains("fingerprint")).unwrap_or_default();
    assert!(line.contains(&fingerprint) && line.contains(&wrong), "{err}");
    assert!(!root.path().join("x").exists());
    // Without the fingerprint, the system's roots do not know it.
    assert!(!run(&["send", local, &server.url("127.0.0.1", "x"), "-c", C]).status.success());
    drop(server);

    // The next start reuses the same certificate and key.
    let key_pem = fs::read(tls_dir.join("key.pem")).unwrap();
    let again = listen_tls(root.path(), &["--tls-self-signed", "--tls-dir", dir_arg], &[]);
    assert_eq!(again.fingerprint, fingerprint);
    assert_eq!(fs::read(tls_dir.join("cert.pem")).unwrap(), cert_pem);
    assert_eq!(fs::read(tls_dir.join("key.pem")).unwrap(), key_pem);
    sync_ok(&["send", local, &again.url("127.0.0.1", "again"), "--tls-fingerprint", &fingerprint, "-c", C]);
    assert_same_tree(src.path(), &root.path().join("again"));
}

/// Without `--tls-dir` the certificate is kept under `$XDG_DATA_HOME`.
#[test]
fn self_signed_certificate_is_kept_under_the_data_directory() {
    let root = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let server = listen_tls(root.path(), &["--tls-self-signed"], &[("XDG_DATA_HOME", data.path())]);
    let kept = data.path().join("pareco/tls");
    assert!(kept.join("cert.pem").is_file() && kept.join("key.pem").is_file());
    drop(server);
    let again = listen_tls(root.path(), &["--tls-self-signed"], &[("XDG_DATA_HOME", data.path())]);
    assert!(!again.fingerprint.is_empty());
    assert_eq!(fs::read_dir(root.path()).unwrap().count(), 0, "nothing is kept in the served root");
}

#[test]
fn tls_dir_inside_the_root_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let inside = root.path().join("keys");
    let out = Command::new(BIN)
        .args(["listen", "--bind", "127.0.0.1:0", "--tls-self-signed", "--root"])
        .arg(root.path())
        .arg("--tls-dir")
        .arg(&inside)
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("--tls-dir") && err.contains("inside the served root"), "{err}");
    assert!(!inside.exists());
}

#[test]
fn bad_or_misplaced_fingerprints_are_usage_errors() {
    let src = tempfile::tempdir().unwrap();
    let local = src.path().to_str().unwrap();
    let out = run(&["send", local, "pareco+tls://127.0.0.1:1/x", "--tls-fingerprint", "sha256:abc"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("64 hex digits"), "{}", stderr(&out));
    let fingerprint = format!("sha256:{}", "ab".repeat(32));
    let out = run(&["send", local, "pareco://127.0.0.1:1/x", "--tls-fingerprint", &fingerprint]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("need --tls"), "{}", stderr(&out));
    let out =
        run(&["send", local, "pareco+tls://h/x", "--tls-fingerprint", &fingerprint, "--ca-cert", "c.pem"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("cannot be used with"), "{}", stderr(&out));
}
