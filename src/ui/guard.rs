//! The middleware every request passes, in order: the `Host` must be this
//! UI's own when it listens on loopback (a DNS-rebinding page gets
//! nothing), a state-changing request must not come from another origin
//! (403), and an API request must carry the key (401). The page and its
//! script and style are served without it: they are the same for everyone
//! and hold nothing secret (the page reads the key from its address's
//! fragment). Every response, refusals included, carries the security
//! headers.

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header::{HOST, ORIGIN};
use axum::http::uri::Authority;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::App;

/// Scripts, styles and connections from the UI itself only; no inline
/// script or style, no frames, no forms sent elsewhere.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
                   img-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

const SECURITY_HEADERS: [(&str, &str); 5] = [
    ("content-security-policy", CSP),
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    // Nothing about the page is passed on to other sites.
    ("referrer-policy", "no-referrer"),
    ("cache-control", "no-store"),
];

/// A refusal: its status and one line saying why, as `{"error": ...}`.
pub(super) fn refusal(status: StatusCode, why: impl Into<String>) -> Response {
    (status, Json(serde_json::json!({ "error": why.into() }))).into_response()
}

/// The page and its assets: the only paths served without the key.
const PUBLIC: [&str; 3] = ["/", "/app.js", "/app.css"];

/// Checks a request, then runs it; adds the security headers to the
/// response.
pub(super) async fn guard(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    let mut response = check(&app, request, next).await;
    let headers = response.headers_mut();
    for (name, value) in SECURITY_HEADERS {
        headers.insert(HeaderName::from_static(name), HeaderValue::from_static(value));
    }
    response
}

async fn check(app: &App, request: Request, next: Next) -> Response {
    let headers = request.headers();
    if !host_allowed(app, headers) {
        return refusal(StatusCode::FORBIDDEN, "this UI answers only at the address it printed");
    }
    let reads = matches!(*request.method(), Method::GET | Method::HEAD);
    if !reads && !same_origin(headers) {
        return refusal(StatusCode::FORBIDDEN, "a request from another origin may not change anything");
    }
    let public = reads && PUBLIC.contains(&request.uri().path());
    if !public && !app.key.carried_by(headers) {
        return refusal(
            StatusCode::UNAUTHORIZED,
            "the key is missing or wrong: open the address `pareco ui` printed, or send Authorization: Bearer KEY",
        );
    }
    next.run(request).await
}

/// On loopback, only `localhost` or a loopback address with our port may
/// be the `Host`: another name resolving to 127.0.0.1 is a rebinding page.
/// Bound elsewhere, the names the machine is reached by are not known.
fn host_allowed(app: &App, headers: &HeaderMap) -> bool {
    if !app.addr.ip().is_loopback() {
        return true;
    }
    let Some(authority) = headers.get(HOST).and_then(|h| h.to_str().ok()?.parse::<Authority>().ok()) else {
        return false;
    };
    let host = authority.host().trim_start_matches('[').trim_end_matches(']');
    let loopback =
        host.eq_ignore_ascii_case("localhost") || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    loopback && authority.port_u16() == Some(app.addr.port())
}

/// Does a state-changing request come from the page itself? A browser
/// names the page's origin in `Origin` (and `Sec-Fetch-Site`); a request
/// with neither comes from a program, not from a web page.
fn same_origin(headers: &HeaderMap) -> bool {
    let text = |name| headers.get(name).map(|v| v.to_str().unwrap_or("\u{0}"));
    if let Some(site) = text(HeaderName::from_static("sec-fetch-site")) {
        if !matches!(site, "same-origin" | "none") {
            return false;
        }
    }
    match (text(ORIGIN), text(HOST)) {
        (None, _) => true,
        (Some(origin), Some(host)) => origin == format!("http://{host}"),
        (Some(_), None) => false,
    }
}
