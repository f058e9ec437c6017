//! End-to-end tests: the real `hollow` binary driven by real clients (kubectl, dig, HTTP).
//!
//! Each test starts its own `hollow up` on a loopback port with a fresh data directory and
//! kills it by PID when it ends.

mod bad_input;
mod durability;
mod kubectl;

use hollow_testkit::Hollow;

/// Starts the `hollow` binary this test run built.
pub fn start_hollow() -> Hollow {
    Hollow::start(env!("CARGO_BIN_EXE_hollow"), &[])
}
