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
mod proxy;
mod tls;

use hollow_testkit::Hollow;

/// Starts the `hollow` binary this test run built, without its node agent: tests of the API
/// server and controllers report pod status themselves, so it is theirs to decide. Without
/// the service proxy too: these tests never connect to service addresses, and parallel
/// instances on the default service range would contend for the same ones.
pub fn start_control_plane() -> Hollow {
    Hollow::start(env!("CARGO_BIN_EXE_hollow"), &["--no-agent", "--no-proxy"])
}

/// Starts the whole of `hollow up`, node agent included.
pub fn start_hollow() -> Hollow {
    Hollow::start(env!("CARGO_BIN_EXE_hollow"), &[])
}

/// One of the repository's example manifests (`examples/`).
pub fn example(name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}
