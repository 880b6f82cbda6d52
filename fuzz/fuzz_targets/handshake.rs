//! Fuzzes the server's connection state machine from the network side:
//! the handshake (`Hello`, `Challenge`, `Open` or `Join` with the client's
//! proof, `Welcome` with the server's), joins, and the requests of a
//! session, in arbitrary sequences on up to eight connections at once. No
//! panic, hang or leak of the server may be reachable from the bytes a
//! client sends.
//!
//! An input is a list of `pareco::testing::ops::Step`s, derived with
//! `Arbitrary`: connect, `Hello` of any version and nonce length, `Open`
//! and `Join` with right, missing, wrong, short or misdirected proofs,
//! requests (right or wrong digests, payloads over the limit, sessions and
//! handles learnt from the answers), messages that are no requests, paths
//! the codec refuses, bit-flipped and truncated frames, raw bytes, shutdown,
//! drop, wait. `Fixture::shared()` runs them against two servers (with and
//! without a token) on roots full of symlinks leading in, nowhere, round
//! and out, and checks every `Welcome` and, after each input, that no
//! connection hangs, no session is left and nothing outside the roots
//! changed (see `pareco::testing`). tests/it/kit_sessions.rs and
//! kit_refusals.rs run scripted inputs through the same driver.
//!
//! `PARECO_FUZZ_TRACE=1` prints each input's steps and what it received
//! (to read a reproducer). A run grows its own corpus. A step takes 6 bytes
//! or more (`Hello`, `Open` and a `Ping` about 30): `-len_control=0` lets
//! inputs reach sessions at once, not after minutes of growing the length
//! limit.
//!
//! ```text
//! mkdir -p /tmp/fuzz-handshake
//! RUSTC_BOOTSTRAP=1 cargo fuzz run handshake /tmp/fuzz-handshake -- \
//!     -max_total_time=600 -len_control=0 -max_len=1024
//! PARECO_FUZZ_TRACE=1 RUSTC_BOOTSTRAP=1 cargo fuzz run handshake artifacts/handshake/crash-...
//! ```

#![no_main]

use libfuzzer_sys::fuzz_target;
use pareco::testing::ops::Step;
use pareco::testing::Fixture;

fuzz_target!(|steps: Vec<Step>| {
    Fixture::shared().run(&steps);
});
