//! The page, its script and its style sheet, built into the binary: no
//! network, no build step. The script inserts every value it shows as
//! text (`textContent`), never as HTML.

/// The page (`/`).
pub(super) const PAGE: &str = include_str!("page/index.html");
/// Its script (`/app.js`).
pub(super) const SCRIPT: &str = include_str!("page/app.js");
/// Its style sheet (`/app.css`).
pub(super) const STYLE: &str = include_str!("page/app.css");
