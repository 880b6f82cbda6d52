//! The TLS options of the command line, turned into the library's
//! set-ups: the server's (`--tls-cert`/`--tls-key` or `--tls-self-signed`)
//! and the client's (`--tls`, `--ca-cert`, `--tls-fingerprint`,
//! `--tls-server-name`).

use pareco::peer::{self, Tree};
use pareco::session::tls::{self_signed, Acceptor, Connector, Trust};
use pareco::session::Remote;

use crate::cli::{ListenArgs, TransferArgs};
use crate::Failure;

/// The server's TLS set-up, if it serves TLS; prints the fingerprint of
/// its certificate on stderr (`tls fingerprint sha256:HEX`).
pub(crate) fn acceptor(args: &ListenArgs) -> Result<Option<Acceptor>, Failure> {
    let usage = |e: pareco::session::tls::TlsError| Failure::usage(e.to_string());
    let acceptor = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Acceptor::from_pem_files(cert, key).map_err(usage)?,
        _ if args.tls_self_signed => {
            let dir = match &args.tls_dir {
                Some(dir) => dir.clone(),
                None => self_signed::default_dir().ok_or_else(|| {
                    Failure::usage("--tls-self-signed: neither XDG_DATA_HOME nor HOME is set (--tls-dir names a directory)")
                })?,
            };
            if Tree::open(&args.root).is_ok() && peer::remembered::inside(&dir, &args.root) {
                return Err(Failure::usage(format!(
                    "--tls-dir {} is inside the served root {}: the private key must not be where sessions can read it",
                    dir.display(),
                    args.root.display()
                )));
            }
            let kept = self_signed::load_or_make(&dir, &self_signed::names(&args.bind)).map_err(usage)?;
            if kept.made {
                tracing::info!("made a self-signed certificate in {}", dir.display());
            }
            kept.acceptor
        }
        _ => return Ok(None),
    };
    eprintln!("tls fingerprint {}", acceptor.fingerprint());
    Ok(Some(acceptor))
}

/// The client's TLS set-up for `remote`, if it uses TLS.
pub(crate) fn connector(opts: &TransferArgs, remote: &Remote) -> Result<Option<Connector>, Failure> {
    if !(opts.tls || remote.tls) {
        if opts.ca_cert.is_some() || opts.tls_fingerprint.is_some() || opts.tls_server_name.is_some() {
            return Err(Failure::usage(
                "--ca-cert, --tls-fingerprint and --tls-server-name need --tls or a pareco+tls:// address",
            ));
        }
        return Ok(None);
    }
    let trust = match (&opts.ca_cert, opts.tls_fingerprint) {
        (Some(file), _) => Trust::File(file),
        (None, Some(fingerprint)) => Trust::Fingerprint(fingerprint),
        (None, None) => Trust::System,
    };
    let name = opts.tls_server_name.as_deref().unwrap_or(&remote.host);
    Connector::new(trust, name).map(Some).map_err(|e| Failure::usage(e.to_string()))
}
