//! `pareco ui`: a web page and a small JSON API, served from the binary
//! itself, to start transfers, watch them and cancel them from a browser.
//!
//! Runs use the library directly ([`crate::job`], the same engine as
//! `send`/`recv`), each on its own runtime thread. Safe by construction:
//! loopback unless told otherwise, every API request needs the process's
//! random key as a bearer token (the page reads it from its address's
//! fragment, `/#key=KEY`, which no server ever sees), state-changing
//! requests from another origin are refused,
//! responses carry a strict Content-Security-Policy, the page inserts
//! everything a transfer produces as text only, and a transfer token given
//! in a request is used and forgotten.
//!
//! - `key`: the key of this process, and how a request proves it has it.
//! - `guard`: the middleware every request passes (host, origin, key,
//!   security headers).
//! - `routes`: the router and its handlers.
//! - `request`: the body of `POST /api/runs`, checked and made a job.
//! - `runs`: the runs of this process, each on its own thread.
//! - `observe`: what the API shows of a run, from what the run reports
//!   (the one place that knows how a run tells its progress and outcomes).
//! - `assets`: the page, its script and its style sheet.

mod assets;
mod guard;
mod key;
mod observe;
mod request;
mod routes;
mod runs;

use std::net::SocketAddr;
use std::sync::Arc;

pub use observe::RunLogs;

/// What every handler shares.
struct App {
    key: key::Key,
    /// The bound address (the `Host` a request must name).
    addr: SocketAddr,
    runs: runs::Runs,
}

/// Serves the UI on `bind` until the process ends. Prints
/// `ui on http://ADDR:PORT/#key=KEY` on stderr once it listens.
pub async fn serve(bind: &str) -> Result<(), String> {
    let listener =
        tokio::net::TcpListener::bind(bind).await.map_err(|e| format!("cannot listen on {bind}: {e}"))?;
    let addr = listener.local_addr().map_err(|e| format!("{bind}: {e}"))?;
    if !addr.ip().is_loopback() {
        tracing::warn!(
            "the UI listens on {addr}, not on loopback: anyone who can reach it and holds the key \
             can read and write files as this user"
        );
    }
    let key = key::Key::generate().map_err(|e| format!("cannot make a key: {e}"))?;
    let url_host = if addr.ip().is_unspecified() { "127.0.0.1".to_owned() } else { addr.ip().to_string() };
    let url_host = if url_host.contains(':') { format!("[{url_host}]") } else { url_host };
    let url = format!("http://{url_host}:{}/#key={}", addr.port(), key.as_str());
    let app = Arc::new(App { key, addr, runs: runs::Runs::default() });
    eprintln!("ui on {url}");
    axum::serve(listener, routes::router(app)).await.map_err(|e| format!("the UI stopped: {e}"))
}
