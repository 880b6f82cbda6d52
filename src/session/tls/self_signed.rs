//! `pareco listen --tls-self-signed`: the server's own certificate, made
//! once with rcgen and kept, so that its fingerprint (which clients pin
//! with `--tls-fingerprint`) stays the same across restarts.
//!
//! The directory holds `cert.pem` (0644) and `key.pem` (0600), the
//! directory itself made 0700. Each file is written under a temporary name,
//! flushed and renamed; the key first, so that `cert.pem` existing means
//! both are complete. Without `cert.pem` a new pair is made (a `key.pem`
//! alone is left from an interrupted start, and was never used).
//!
//! The certificate is an ECDSA P-256 end-entity certificate (no CA flag)
//! for this host's name, the address the server binds to unless it is
//! unspecified, and `localhost`, `127.0.0.1` and `::1`, valid from a day
//! before it is made for 100 years.

use std::ffi::OsString;
use std::fs::{self, DirBuilder, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tokio_rustls::rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

use super::{Acceptor, TlsError};

/// The certificate file in the kept directory.
pub const CERT_FILE: &str = "cert.pem";
/// The private key file in the kept directory.
pub const KEY_FILE: &str = "key.pem";

/// The server's own certificate, ready to serve.
pub struct SelfSigned {
    /// Serves it.
    pub acceptor: Acceptor,
    /// Made by this call (else loaded from where it was kept).
    pub made: bool,
}

/// `$XDG_DATA_HOME/pareco/tls`, else `$HOME/.local/share/pareco/tls`
/// (relative paths are ignored, as the XDG spec says).
pub fn default_dir() -> Option<PathBuf> {
    default_dir_from(std::env::var_os("XDG_DATA_HOME"), std::env::var_os("HOME"))
}

fn default_dir_from(xdg_data_home: Option<OsString>, home: Option<OsString>) -> Option<PathBuf> {
    let absolute = |var: Option<OsString>| var.map(PathBuf::from).filter(|p| p.is_absolute());
    let data = absolute(xdg_data_home).or_else(|| absolute(home).map(|h| h.join(".local").join("share")))?;
    Some(data.join("pareco").join("tls"))
}

/// The names a certificate made for a server bound to `bind` (`ADDR:PORT`)
/// carries: this host's name, `ADDR` unless it is unspecified (`0.0.0.0`,
/// `::`), and `localhost`, `127.0.0.1`, `::1`.
pub fn names(bind: &str) -> Vec<String> {
    let host = rustix::system::uname().nodename().to_string_lossy().into_owned();
    let addr = bind.rsplit_once(':').map_or(bind, |(addr, _)| addr);
    let addr = addr.trim_start_matches('[').trim_end_matches(']');
    let unspecified = addr.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_unspecified());
    let mut names = Vec::new();
    for name in [host.as_str(), if unspecified { "" } else { addr }, "localhost", "127.0.0.1", "::1"] {
        if !name.is_empty() && !names.iter().any(|n| n == name) {
            names.push(name.to_owned());
        }
    }
    names
}

/// Loads the certificate kept in `dir`, or makes one for `names` and keeps
/// it there.
pub fn load_or_make(dir: &Path, names: &[String]) -> Result<SelfSigned, TlsError> {
    let cert = dir.join(CERT_FILE);
    let key = dir.join(KEY_FILE);
    if cert.exists() {
        if let Ok(md) = fs::metadata(&key) {
            if md.permissions().mode() & 0o077 != 0 {
                tracing::warn!("{}: others may read this private key (chmod 600 it)", key.display());
            }
        }
        let acceptor = Acceptor::from_pem_files(&cert, &key)?;
        return Ok(SelfSigned { acceptor, made: false });
    }
    let written = |path: &Path| {
        let path = path.to_owned();
        move |source| TlsError::Write { path, source }
    };
    DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(written(dir))?;
    let key_pair = rcgen::KeyPair::generate()?;
    let mut params = rcgen::CertificateParams::new(names.to_vec())?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(rcgen::DnType::CommonName, names.first().map_or("pareco", |n| n.as_str()));
    params.not_before = time::OffsetDateTime::now_utc() - time::Duration::days(1);
    params.not_after = params.not_before + time::Duration::days(100 * 365);
    let made = params.self_signed(&key_pair)?;
    keep(dir, KEY_FILE, &key_pair.serialize_pem(), 0o600).map_err(written(&key))?;
    keep(dir, CERT_FILE, &made.pem(), 0o644).map_err(written(&cert))?;
    fs::File::open(dir).and_then(|d| d.sync_all()).map_err(written(dir))?;
    let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key_pair.serialize_der()));
    let acceptor = Acceptor::new(vec![made.der().clone()], key_der, &cert)?;
    Ok(SelfSigned { acceptor, made: true })
}

/// Writes `text` to `dir/name` with `mode`: under a temporary name first,
/// flushed, then renamed.
fn keep(dir: &Path, name: &str, text: &str, mode: u32) -> std::io::Result<()> {
    let temp = dir.join(format!(".{name}.tmp"));
    // Left by an interrupted start.
    let _ = fs::remove_file(&temp);
    let mut file = OpenOptions::new().write(true).create_new(true).mode(mode).open(&temp)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    fs::rename(&temp, dir.join(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_dir_follows_xdg_then_home() {
        let dir = default_dir_from(Some("/x/data".into()), Some("/home/u".into()));
        assert_eq!(dir, Some(PathBuf::from("/x/data/pareco/tls")));
        let dir = default_dir_from(Some("relative".into()), Some("/home/u".into()));
        assert_eq!(dir, Some(PathBuf::from("/home/u/.local/share/pareco/tls")));
        assert_eq!(default_dir_from(None, None), None);
    }

    #[test]
    fn names_carry_the_bound_address_unless_unspecified() {
        let names = names("192.0.2.7:4650");
        assert!(names.iter().any(|n| n == "192.0.2.7"), "{names:?}");
        for local in ["localhost", "127.0.0.1", "::1"] {
            assert!(names.iter().any(|n| n == local), "{names:?}");
        }
        assert!(!super::names("0.0.0.0:4650").iter().any(|n| n == "0.0.0.0"));
        assert!(!super::names("[::]:4650").iter().any(|n| n == "::"));
        assert!(super::names("[2001:db8::1]:1").iter().any(|n| n == "2001:db8::1"));
    }
}
