//! Crash safety: a child process writes to a redb store as fast as it can and prints every
//! acknowledged write; the parent `kill -9`s it mid-stream, reopens the file and checks that
//! every acknowledged write is there.
//!
//! The child is this same test binary, re-run with `--ignored --exact` on
//! [`crash_writer_child`] and the database path in [`CHILD_ENV`].

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write as _};
use std::os::unix::process::ExitStatusExt;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use hollow_store::{Revision, Store, StoreOptions, constant};

const CHILD_ENV: &str = "HOLLOW_STORE_CRASH_CHILD_DB";
const ACKS_BEFORE_KILL: usize = 2_000;
const DEADLINE: Duration = Duration::from_secs(90);

#[test]
fn acknowledged_writes_survive_kill_9() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("crash.redb");
    let mut child = crate::spawn_writer_child("crash::crash_writer_child", CHILD_ENV, &path);
    let stdout = child.stdout.take().unwrap();
    let (lines_sender, lines) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if lines_sender.send(line).is_err() {
                break;
            }
        }
    });

    let mut acknowledged: BTreeMap<String, Revision> = BTreeMap::new();
    let started = Instant::now();
    let record = |line: String, acknowledged: &mut BTreeMap<String, Revision>| {
        if let Some(rest) = line.strip_prefix("ACK ") {
            let (key, revision) = rest.split_once(' ').expect("ACK <key> <revision>");
            acknowledged.insert(key.to_owned(), revision.parse().unwrap());
        }
    };
    while acknowledged.len() < ACKS_BEFORE_KILL {
        let remaining = DEADLINE.saturating_sub(started.elapsed());
        match lines.recv_timeout(remaining) {
            Ok(line) => record(line, &mut acknowledged),
            Err(error) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "the writer child stopped early ({error:?}) after {} acknowledgements",
                    acknowledged.len()
                );
            }
        }
    }
    // SIGKILL, mid-stream: the child is still writing.
    child.kill().expect("kill -9 the writer child");
    let status = child.wait().unwrap();
    assert_eq!(
        status.signal(),
        Some(9),
        "the child died of the SIGKILL: {status:?}"
    );
    // Everything the child printed before it died was acknowledged.
    reader.join().unwrap();
    for line in lines.try_iter() {
        record(line, &mut acknowledged);
    }

    let store = Store::open_redb(&path, StoreOptions::default()).expect("reopen after the crash");
    let highest = acknowledged.values().copied().max().unwrap();
    assert!(store.current_revision() >= highest);
    for (key, revision) in &acknowledged {
        let record = store
            .get(key)
            .unwrap()
            .unwrap_or_else(|| panic!("acknowledged {key} at {revision} was lost"));
        assert_eq!(record.mod_revision, *revision);
        assert_eq!(record.value, key.as_bytes());
    }
    let listed = store.list("/crash/", None, None).unwrap().records.len();
    assert!(listed >= acknowledged.len());
    // And the store goes on from where it stopped.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let before = store.current_revision();
    let next = runtime
        .block_on(store.create("/after-crash", constant("x")))
        .unwrap();
    assert_eq!(next.revision, before + 1);
}

/// The writer half of [`acknowledged_writes_survive_kill_9`]; run only by it.
#[test]
#[ignore = "the child process of acknowledged_writes_survive_kill_9"]
fn crash_writer_child() {
    let path = std::env::var_os(CHILD_ENV).expect("run by acknowledged_writes_survive_kill_9");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let store = Store::open_redb(path.as_ref(), StoreOptions::default()).unwrap();
        let mut tasks = Vec::new();
        for writer in 0..16 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                // Bounded so a forgotten child ends by itself.
                for index in 0..100_000 {
                    let key = format!("/crash/{writer:02}/{index:06}");
                    let event = store
                        .create(key.clone(), constant(key.clone()))
                        .await
                        .unwrap();
                    let mut stdout = std::io::stdout().lock();
                    writeln!(stdout, "ACK {key} {}", event.revision).unwrap();
                    stdout.flush().unwrap();
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
    });
}
