//! One integration-test binary (as ripgrep does): shared helpers in
//! [`util`], one module per area.

mod bounds;
mod bwlimit;
mod cache;
mod chaos;
mod codec;
mod damage;
mod fake;
mod faults;
mod full_disk;
mod hardening;
mod kit_refusals;
mod kit_sessions;
mod links;
mod live;
mod load;
mod owners;
mod protocol_doc;
mod raw;
mod safety;
mod shell;
mod show;
mod small_files;
mod sparse;
mod sync;
mod tls;
mod tls_pinning;
mod ui_api;
mod ui_browser;
mod ui_kit;
mod unwritable;
mod util;
mod xattrs;
