//! One integration-test binary (as ripgrep does): shared helpers in
//! [`util`], one module per area.

mod codec;
mod damage;
mod hardening;
mod live;
mod sync;
mod tls;
mod util;
