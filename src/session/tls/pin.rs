//! Trusting a server's certificate without a certificate authority.
//!
//! - A certificate of the `--ca-cert` file that is exactly (same DER) the
//!   one the server shows is trusted as pinned, whatever its CA flag, with
//!   the server name and validity still checked. Any other certificate the
//!   server shows goes the usual way: a path to one of the file's
//!   certificates as CAs.
//! - `--tls-fingerprint sha256:HEX` trusts the certificate whose SHA-256
//!   (of its DER) that is, as SSH and Syncthing trust a host key: the
//!   fingerprint replaces the CA and the name check; validity is checked.
//!
//! The handshake signatures are checked as rustls always does, with the
//! public key of the certificate so trusted.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use tokio_rustls::rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use tokio_rustls::rustls::client::{verify_server_name, WebPkiServerVerifier};
use tokio_rustls::rustls::crypto::{self, CryptoProvider, WebPkiSupportedAlgorithms};
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_rustls::rustls::server::ParsedCertificate;
use tokio_rustls::rustls::{
    CertificateError, DigitallySignedStruct, Error, OtherError, RootCertStore, SignatureScheme,
};

/// The SHA-256 of a certificate's DER: `sha256:` and 64 lowercase hex
/// digits when shown. Parsed case-insensitively, with or without the
/// `sha256:` prefix and with or without colons between bytes (as
/// `openssl x509 -noout -fingerprint -sha256` prints it).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Fingerprint([u8; 32]);

impl Fingerprint {
    /// The fingerprint of `cert`.
    pub fn of(cert: &CertificateDer<'_>) -> Fingerprint {
        let digest = ring::digest::digest(&ring::digest::SHA256, cert.as_ref());
        let mut bytes = [0u8; 32];
        bytes.copy_from_slice(digest.as_ref());
        Fingerprint(bytes)
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("sha256:")?;
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Fingerprint {
    type Err = String;

    fn from_str(text: &str) -> Result<Fingerprint, String> {
        let wrong = || format!("{text:?} is not sha256: and 64 hex digits (as `pareco listen` prints it)");
        let hex = match text.split_once(':') {
            Some((algo, rest)) if algo.eq_ignore_ascii_case("sha256") => rest,
            _ => text,
        };
        let digits: Vec<u8> = hex.bytes().filter(|&b| b != b':').collect();
        if digits.len() != 64 || !digits.iter().all(u8::is_ascii_hexdigit) {
            return Err(wrong());
        }
        let mut bytes = [0u8; 32];
        for (byte, pair) in bytes.iter_mut().zip(digits.chunks(2)) {
            let pair = std::str::from_utf8(pair).map_err(|_| wrong())?;
            *byte = u8::from_str_radix(pair, 16).map_err(|_| wrong())?;
        }
        Ok(Fingerprint(bytes))
    }
}

/// The server's certificate is not the one `--tls-fingerprint` names.
#[derive(Debug, thiserror::Error)]
#[error("the server's certificate has fingerprint {found}, not {expected} as given with --tls-fingerprint")]
pub struct FingerprintMismatch {
    /// The fingerprint given.
    pub expected: Fingerprint,
    /// The fingerprint of the certificate the server showed.
    pub found: Fingerprint,
}

/// What a [`Verifier`] trusts.
#[derive(Debug)]
enum Pinned {
    /// These certificates exactly; others by a path to them as CAs.
    Certificates { certs: Vec<CertificateDer<'static>>, as_cas: Arc<WebPkiServerVerifier> },
    /// The certificate with this fingerprint.
    Fingerprint(Fingerprint),
}

/// Verifies the server's certificate by pinning (see the module doc).
#[derive(Debug)]
pub(super) struct Verifier {
    pinned: Pinned,
    algorithms: WebPkiSupportedAlgorithms,
}

impl Verifier {
    /// Trusts `certs` as pinned and as CAs.
    pub(super) fn certificates(
        certs: Vec<CertificateDer<'static>>,
        provider: Arc<CryptoProvider>,
    ) -> Result<Verifier, Error> {
        let mut roots = RootCertStore::empty();
        for cert in &certs {
            roots.add(cert.clone())?;
        }
        let algorithms = provider.signature_verification_algorithms;
        let as_cas = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|e| Error::General(e.to_string()))?;
        Ok(Verifier { pinned: Pinned::Certificates { certs, as_cas }, algorithms })
    }

    /// Trusts the certificate with `fingerprint`.
    pub(super) fn fingerprint(fingerprint: Fingerprint, provider: &CryptoProvider) -> Verifier {
        let algorithms = provider.signature_verification_algorithms;
        Verifier { pinned: Pinned::Fingerprint(fingerprint), algorithms }
    }
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        match &self.pinned {
            Pinned::Certificates { certs, as_cas } => {
                if !certs.iter().any(|cert| cert.as_ref() == end_entity.as_ref()) {
                    return as_cas.verify_server_cert(
                        end_entity,
                        intermediates,
                        server_name,
                        ocsp_response,
                        now,
                    );
                }
                check_validity(end_entity, now)?;
                verify_server_name(&ParsedCertificate::try_from(end_entity)?, server_name)?;
            }
            Pinned::Fingerprint(expected) => {
                let found = Fingerprint::of(end_entity);
                if found != *expected {
                    let mismatch = FingerprintMismatch { expected: *expected, found };
                    return Err(CertificateError::Other(OtherError(Arc::new(mismatch))).into());
                }
                check_validity(end_entity, now)?;
            }
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// Is `now` within the validity of `cert` (notBefore ≤ now ≤ notAfter, as
/// webpki has it)?
fn check_validity(cert: &CertificateDer<'_>, now: UnixTime) -> Result<(), Error> {
    let (_, parsed) =
        x509_parser::parse_x509_certificate(cert.as_ref()).map_err(|_| CertificateError::BadEncoding)?;
    let validity = parsed.validity();
    let at = |seconds: i64| UnixTime::since_unix_epoch(std::time::Duration::from_secs(seconds.max(0) as u64));
    let time = now.as_secs() as i64;
    if time < validity.not_before.timestamp() {
        let not_before = at(validity.not_before.timestamp());
        return Err(CertificateError::NotValidYetContext { time: now, not_before }.into());
    }
    if time > validity.not_after.timestamp() {
        let not_after = at(validity.not_after.timestamp());
        return Err(CertificateError::ExpiredContext { time: now, not_after }.into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::Fingerprint;

    #[test]
    fn fingerprints_parse_as_printed_and_as_openssl_prints_them() {
        let printed = format!("sha256:{}", "0a".repeat(32));
        let fingerprint: Fingerprint = printed.parse().unwrap();
        assert_eq!(fingerprint.to_string(), printed);
        let openssl = format!("SHA256:{}", ["0A"; 32].join(":"));
        assert_eq!(openssl.parse::<Fingerprint>().unwrap(), fingerprint);
        assert_eq!("0a".repeat(32).parse::<Fingerprint>().unwrap(), fingerprint);
        for bad in [
            "sha256:0a",
            "sha1:00",
            &format!("+a{}", "0a".repeat(31)),
            &"zz".repeat(32),
            &format!("md5:{}", "0a".repeat(32)),
        ] {
            assert!(bad.parse::<Fingerprint>().is_err(), "{bad}");
        }
    }
}
