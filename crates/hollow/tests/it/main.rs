//! End-to-end tests: the real `hollow` binary driven by real clients (kubectl, dig, HTTP).
//!
//! Each test starts its own `hollow up` on a loopback port with a fresh data directory and
//! kills it by PID when it ends.

mod apply;
mod bad_input;
mod durability;
mod headless;
mod kubectl;
mod processes;
mod tls;

use hollow_testkit::Hollow;

/// Starts the `hollow` binary this test run built, without its node agent: tests of the API
/// server and controllers report pod status themselves, so it is theirs to decide.
pub fn start_control_plane() -> Hollow {
    Hollow::start(env!("CARGO_BIN_EXE_hollow"), &["--no-agent"])
}

/// Starts the whole of `hollow up`, node agent included.
pub fn start_hollow() -> Hollow {
    Hollow::start(env!("CARGO_BIN_EXE_hollow"), &[])
}
