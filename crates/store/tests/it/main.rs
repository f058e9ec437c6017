//! Integration tests of `hollow-store`: the conformance suite over both backends, plus the
//! redb-only durability checks (reopen, and a `kill -9` crash test).

mod crash;
mod reopen;
mod wal;

/// Re-runs this test binary as a child process that executes only the ignored test `test`
/// (a writer that prints `ACK` lines), with the database path in the environment variable
/// `path_variable`; its stdout is piped to the caller, which kills it.
fn spawn_writer_child(
    test: &str,
    path_variable: &str,
    path: &std::path::Path,
) -> std::process::Child {
    std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            test,
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(path_variable, path)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .expect("start the writer child")
}

mod memory {
    hollow_store::conformance_tests!(|options| hollow_store::Store::in_memory(options));
}

mod redb {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use hollow_store::{Store, StoreOptions};

    /// Builds stores over fresh redb files in one temporary directory that lives as long as
    /// the returned closure.
    pub fn fresh_redb() -> impl Fn(StoreOptions) -> Store {
        let directory = Arc::new(tempfile::tempdir().expect("create a temporary directory"));
        let counter = AtomicUsize::new(0);
        move |options| {
            let index = counter.fetch_add(1, Ordering::Relaxed);
            let path = directory.path().join(format!("store-{index}.redb"));
            Store::open_redb(&path, options).expect("open a fresh redb store")
        }
    }

    hollow_store::conformance_tests!(fresh_redb());
}
