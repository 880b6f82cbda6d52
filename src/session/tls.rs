//! TLS for both ends with rustls (ring provider, AES-GCM suites first).
//!
//! The server loads its certificate chain and key from PEM files, or makes
//! and keeps its own ([`self_signed`]). The client verifies the server
//! ([`Trust`]) against the system's trusted roots; or against a given PEM
//! file, whose certificates are trusted both as CAs and, each exactly, as
//! the server's own (pinned, whatever its CA flag); or by the SHA-256
//! fingerprint of the server's certificate ([`pin`]). The name from the
//! address (or `--tls-server-name`) is checked except with a fingerprint;
//! validity always. There is no way to turn verification off.
//!
//! For bulk transfer, both ends read the socket through a buffer (rustls
//! alone reads at most one record, 16 KiB, per system call) and let rustls
//! hold more encrypted records than its default before they go out, so
//! that a 1 MiB chunk takes 4 system calls instead of 16;
//! `benches/tls.sh` measures what TLS costs.

use std::fmt;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::net::TcpStream;
use tokio_rustls::rustls::{self, pki_types::ServerName};
use tokio_rustls::{TlsAcceptor, TlsConnector};

pub mod pin;
pub mod self_signed;

pub use pin::{Fingerprint, FingerprintMismatch};

/// Accepts TLS connections with the server's certificate.
#[derive(Clone)]
pub struct Acceptor {
    inner: TlsAcceptor,
    fingerprint: Fingerprint,
}

/// What the client trusts the server's certificate by.
#[derive(Debug, Clone, Copy)]
pub enum Trust<'a> {
    /// The system's trusted roots.
    System,
    /// The certificates of a PEM file (`--ca-cert`): as CAs, and each as
    /// the server's own certificate when it is exactly that one.
    File(&'a Path),
    /// The SHA-256 fingerprint of the server's certificate
    /// (`--tls-fingerprint`): no CA, no name check.
    Fingerprint(Fingerprint),
}

/// Opens TLS connections, verifying the server.
#[derive(Clone)]
pub struct Connector {
    inner: TlsConnector,
    name: ServerName<'static>,
}

impl fmt::Debug for Acceptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Acceptor(..)")
    }
}

impl fmt::Debug for Connector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Connector({:?})", self.name)
    }
}

/// The ring provider with AES-128-GCM first: with AES instructions (any
/// x86-64 server of the last decade) it is the fastest suite, and as safe
/// as the others for this use.
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    use rustls::crypto::ring::cipher_suite::*;
    let mut provider = rustls::crypto::ring::default_provider();
    provider.cipher_suites = vec![
        TLS13_AES_128_GCM_SHA256,
        TLS13_AES_256_GCM_SHA384,
        TLS13_CHACHA20_POLY1305_SHA256,
        TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    ];
    Arc::new(provider)
}

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read.
    #[error("{}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why it could not be read.
        source: std::io::Error,
    },
    /// A certificate file holds no PEM certificate.
    #[error("{}: no PEM certificate in it", path.display())]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// The key file holds no PEM private key.
    #[error("{}: no PEM private key in it", path.display())]
    NoKey {
        /// The file.
        path: PathBuf,
    },
    /// rustls refused the server's certificate and key, or a CA
    /// certificate.
    #[error("{}: {source}", path.display())]
    Refused {
        /// The certificate file, or the CA file.
        path: PathBuf,
        /// Why rustls refused it.
        source: rustls::Error,
    },
    /// The server's own certificate could not be made.
    #[error("cannot make a self-signed certificate: {0}")]
    Make(#[from] rcgen::Error),
    /// A file of the server's own certificate could not be written.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// The file, or its directory.
        path: PathBuf,
        /// Why it could not be written.
        source: std::io::Error,
    },
    /// No CA file was given and the system has no trusted roots.
    #[error("no trusted root certificates on this system; give one with --ca-cert")]
    NoRoots,
    /// The name to check the server's certificate against is not a valid
    /// TLS server name.
    #[error("{0:?} is not a valid TLS server name")]
    ServerName(String),
    /// rustls could not be set up with the protocol versions asked for.
    #[error("TLS set-up failed: {0}")]
    Setup(#[source] rustls::Error),
}

fn read_error(path: &Path) -> impl FnOnce(std::io::Error) -> TlsError + '_ {
    |source| TlsError::Read { path: path.to_owned(), source }
}

fn read_certs(path: &Path) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, TlsError> {
    let file = std::fs::File::open(path).map_err(read_error(path))?;
    let certs = rustls_pemfile::certs(&mut BufReader::new(file))
        .collect::<Result<Vec<_>, _>>()
        .map_err(read_error(path))?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate { path: path.to_owned() });
    }
    Ok(certs)
}

/// The error rustls stands for with `other` (a certificate refused for a
/// reason rustls has no variant of).
fn other_certificate_error(
    error: &std::io::Error,
) -> Option<&(dyn std::error::Error + Send + Sync + 'static)> {
    let inner = error.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>());
    match inner {
        Some(rustls::Error::InvalidCertificate(rustls::CertificateError::Other(other))) => Some(&*other.0),
        _ => None,
    }
}

/// Is `error` (from a TLS handshake) the server's certificate refused
/// because it is marked as a CA? (A self-signed certificate, as OpenSSL
/// makes it by default, checked against the system's roots or another CA.)
pub fn is_ca_used_as_end_entity(error: &std::io::Error) -> bool {
    other_certificate_error(error).and_then(|e| e.downcast_ref::<webpki::Error>())
        == Some(&webpki::Error::CaUsedAsEndEntity)
}

/// The fingerprints, when `error` (from a TLS handshake) is the server's
/// certificate refused for not having the one given.
pub fn fingerprint_mismatch(error: &std::io::Error) -> Option<&FingerprintMismatch> {
    other_certificate_error(error).and_then(|e| e.downcast_ref::<FingerprintMismatch>())
}

impl Acceptor {
    /// The server's TLS set-up, with the certificate chain in `cert` and its
    /// private key in `key` (both PEM files).
    pub fn from_pem_files(cert: &Path, key: &Path) -> Result<Acceptor, TlsError> {
        let certs = read_certs(cert)?;
        let file = std::fs::File::open(key).map_err(read_error(key))?;
        let key_der = rustls_pemfile::private_key(&mut BufReader::new(file))
            .map_err(read_error(key))?
            .ok_or_else(|| TlsError::NoKey { path: key.to_owned() })?;
        Acceptor::new(certs, key_der, cert)
    }

    /// The server's TLS set-up with `certs` (the server's own first) and
    /// its private key; `path` names them in errors.
    fn new(
        certs: Vec<rustls::pki_types::CertificateDer<'static>>,
        key: rustls::pki_types::PrivateKeyDer<'static>,
        path: &Path,
    ) -> Result<Acceptor, TlsError> {
        let fingerprint = Fingerprint::of(&certs[0]);
        let config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Setup)?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|source| TlsError::Refused { path: path.to_owned(), source })?;
        Ok(Acceptor { inner: TlsAcceptor::from(Arc::new(config)), fingerprint })
    }

    /// The SHA-256 fingerprint of the server's certificate, which a client
    /// can pin with `--tls-fingerprint`.
    pub fn fingerprint(&self) -> Fingerprint {
        self.fingerprint
    }

    /// Runs the server side of the TLS handshake over `stream`.
    pub async fn accept(
        &self,
        stream: TcpStream,
    ) -> std::io::Result<tokio_rustls::server::TlsStream<Wire<TcpStream>>> {
        let mut tls = self.inner.accept(wire(stream)).await?;
        tls.get_mut().1.set_buffer_limit(Some(SEND_BUFFER));
        Ok(tls)
    }
}

impl Connector {
    /// Verifies the server by `trust`; connects to it as `server_name`
    /// (checked unless trusted by fingerprint).
    pub fn new(trust: Trust<'_>, server_name: &str) -> Result<Connector, TlsError> {
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Setup)?;
        let config = match trust {
            Trust::System => {
                let mut roots = rustls::RootCertStore::empty();
                for cert in rustls_native_certs::load_native_certs().certs {
                    let _ = roots.add(cert);
                }
                if roots.is_empty() {
                    return Err(TlsError::NoRoots);
                }
                builder.with_root_certificates(roots)
            }
            Trust::File(path) => {
                let certs = read_certs(path)?;
                let refused = |source| TlsError::Refused { path: path.to_owned(), source };
                let verifier = pin::Verifier::certificates(certs, provider()).map_err(refused)?;
                builder.dangerous().with_custom_certificate_verifier(Arc::new(verifier))
            }
            Trust::Fingerprint(fingerprint) => {
                let verifier = pin::Verifier::fingerprint(fingerprint, &provider());
                builder.dangerous().with_custom_certificate_verifier(Arc::new(verifier))
            }
        }
        .with_no_client_auth();
        let name = ServerName::try_from(server_name.trim_start_matches('[').trim_end_matches(']').to_owned())
            .map_err(|_| TlsError::ServerName(server_name.to_owned()))?;
        Ok(Connector { inner: TlsConnector::from(Arc::new(config)), name })
    }

    /// Runs the TLS handshake over `stream` (any byte stream, so the
    /// caller can count the bytes underneath).
    pub async fn connect<S>(&self, stream: S) -> std::io::Result<tokio_rustls::client::TlsStream<Wire<S>>>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        let mut tls = self.inner.connect(self.name.clone(), wire(stream)).await?;
        tls.get_mut().1.set_buffer_limit(Some(SEND_BUFFER));
        Ok(tls)
    }
}

/// Bytes read from the socket at once under TLS. rustls reads into a
/// buffer of one record (16 KiB) at most, so without this every record cost
/// the receiving side its own `recv` (about 66 000 for a 1 GiB upload); with
/// it, a read takes what the socket holds, and rustls copies its records out
/// of memory.
const READ_AHEAD: usize = 256 << 10;

/// Encrypted bytes rustls may hold before the socket takes them (its own
/// default is 64 KiB): a 1 MiB chunk is encrypted and handed to the socket
/// in 4 vectored writes of 16 records instead of 16 writes. Not more: the
/// reading half of the connection waits for its lock while a write
/// encrypts.
const SEND_BUFFER: usize = 256 << 10;

/// The byte stream under a TLS connection: the socket behind a read buffer
/// of [`READ_AHEAD`] bytes (writes go straight through).
pub type Wire<S> = tokio::io::BufReader<S>;

fn wire<S: tokio::io::AsyncRead>(stream: S) -> Wire<S> {
    tokio::io::BufReader::with_capacity(READ_AHEAD, stream)
}

/// The channel binding of a TLS connection (either end): a value both ends
/// export from the session's keys, which nobody else knows.
pub fn binding<D>(connection: &rustls::ConnectionCommon<D>) -> std::io::Result<Vec<u8>> {
    connection
        .export_keying_material(vec![0u8; 32], super::auth::EXPORTER_LABEL, None)
        .map_err(|e| std::io::Error::other(format!("no TLS channel binding: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_rustls::rustls::{CipherSuite, ProtocolVersion};

    /// The suite and protocol version a pareco client made with `versions`
    /// and a pareco server agree on, as each end sees them.
    async fn negotiated(
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> [(Option<CipherSuite>, Option<ProtocolVersion>); 2] {
        let dir = tempfile::tempdir().unwrap();
        let acceptor = self_signed::load_or_make(dir.path(), &["127.0.0.1".to_owned()]).unwrap().acceptor;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let verifier = pin::Verifier::fingerprint(acceptor.fingerprint(), &provider());
        let config = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(versions)
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_no_client_auth();
        let connector =
            Connector { inner: TlsConnector::from(Arc::new(config)), name: ServerName::from(addr.ip()) };
        let server = async {
            let (tcp, _) = listener.accept().await.unwrap();
            let tls = acceptor.accept(tcp).await.unwrap();
            let connection = tls.get_ref().1;
            (connection.negotiated_cipher_suite().map(|s| s.suite()), connection.protocol_version())
        };
        let client = async {
            let tls = connector.connect(TcpStream::connect(addr).await.unwrap()).await.unwrap();
            let connection = tls.get_ref().1;
            (connection.negotiated_cipher_suite().map(|s| s.suite()), connection.protocol_version())
        };
        let (server, client) = tokio::join!(server, client);
        [server, client]
    }

    /// Two pareco ends agree on AES-128-GCM (the cheapest suite with AES
    /// instructions), not on rustls's first choice, AES-256-GCM.
    #[tokio::test]
    async fn pareco_ends_agree_on_aes_128_gcm() {
        let tls13 = (Some(CipherSuite::TLS13_AES_128_GCM_SHA256), Some(ProtocolVersion::TLSv1_3));
        assert_eq!(negotiated(rustls::DEFAULT_VERSIONS).await, [tls13; 2]);
        // The certificate --tls-self-signed makes has an ECDSA key.
        let tls12 =
            (Some(CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256), Some(ProtocolVersion::TLSv1_2));
        assert_eq!(negotiated(&[&rustls::version::TLS12]).await, [tls12; 2]);
    }

    /// Only AEAD suites are offered (all of rustls's are), AES-128-GCM first
    /// for both protocol versions.
    #[test]
    fn the_suites_are_aead_with_aes_128_gcm_first() {
        let suites: Vec<_> = provider().cipher_suites.iter().map(|s| s.suite()).collect();
        assert_eq!(suites[0], CipherSuite::TLS13_AES_128_GCM_SHA256);
        let tls12 = provider()
            .cipher_suites
            .iter()
            .find(|s| s.version() == &rustls::version::TLS12)
            .map(|s| s.suite());
        assert_eq!(tls12, Some(CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256));
        assert!(suites
            .iter()
            .all(|s| format!("{s:?}").contains("GCM") || format!("{s:?}").contains("CHACHA20_POLY1305")));
    }
}
