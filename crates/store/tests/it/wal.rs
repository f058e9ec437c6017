//! The write-ahead log across a real crash: a child process writes through a store whose
//! applier never runs (so redb holds none of the writes: every acknowledged write lives in the
//! in-memory overlay and, durably, in the log alone), reports its acknowledgements, and is
//! `kill -9`ed while idle. Reopening must replay the log.
//!
//! The child is this same test binary, re-run with `--ignored --exact` on
//! [`log_only_writer_child`] and the database path in [`CHILD_ENV`].

use std::io::{BufRead, BufReader, Write as _};
use std::os::unix::process::ExitStatusExt;
use std::sync::Arc;
use std::time::Duration;

use hollow_store::{Backend, RedbBackend, RedbOptions, Store, StoreOptions, constant};

const CHILD_ENV: &str = "HOLLOW_STORE_LOG_CHILD_DB";
const WRITES: u64 = 400;

#[test]
fn writes_only_in_the_log_survive_kill_9() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("log.redb");
    let mut child = crate::spawn_writer_child("wal::log_only_writer_child", CHILD_ENV, &path);
    let mut acknowledged = 0;
    let mut last_revision = 0;
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        // libtest prints the test's name without a newline before its output.
        if let Some((_, revision)) = line.split_once("ACK ") {
            acknowledged += 1;
            last_revision = revision.parse().unwrap();
        }
        if line == "IDLE" {
            break;
        }
    }
    child.kill().expect("kill -9 the writer child");
    let status = child.wait().unwrap();
    assert_eq!(status.signal(), Some(9), "{status:?}");
    assert_eq!(acknowledged, WRITES, "the child stopped before IDLE");
    assert_eq!(last_revision, WRITES);
    let log_directory = directory.path().join("log.redb-wal");
    assert!(
        std::fs::read_dir(&log_directory).unwrap().count() > 0,
        "the acknowledged writes are in the log"
    );

    let store = Store::open_redb(&path, StoreOptions::default()).expect("reopen after the crash");
    assert_eq!(store.current_revision(), WRITES);
    for index in 0..WRITES {
        let key = format!("/log/{index:04}");
        let record = store
            .get(&key)
            .unwrap()
            .unwrap_or_else(|| panic!("acknowledged {key} was lost"));
        assert_eq!(record.mod_revision, index + 1);
        assert_eq!(record.value, key.as_bytes());
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let next = runtime
        .block_on(store.create("/after-crash", constant("x")))
        .unwrap();
    assert_eq!(next.revision, WRITES + 1);
}

/// The writer half of [`writes_only_in_the_log_survive_kill_9`]; run only by it.
#[test]
#[ignore = "the child process of writes_only_in_the_log_survive_kill_9"]
fn log_only_writer_child() {
    let path = std::env::var_os(CHILD_ENV).expect("run by writes_only_in_the_log_survive_kill_9");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let options = RedbOptions {
            write_ahead_log: true,
            checkpoint_interval: Duration::from_secs(3600),
        };
        let backend = Arc::new(RedbBackend::open_with(path.as_ref(), options).unwrap());
        let store =
            Store::new(backend.clone() as Arc<dyn Backend>, StoreOptions::default()).unwrap();
        for index in 0..WRITES {
            let key = format!("/log/{index:04}");
            let event = store.create(key.clone(), constant(key)).await.unwrap();
            println!("ACK {}", event.revision);
        }
        assert_eq!(backend.sync_stats().durable_commits, 0);
        println!("IDLE");
        std::io::stdout().flush().unwrap();
        // Bounded so a forgotten child ends by itself.
        tokio::time::sleep(Duration::from_secs(60)).await;
    });
}
