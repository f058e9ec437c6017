//! Durable write throughput and the writer thread's CPU per write:
//! `cargo bench -p hollow-store --bench writes`.
//!
//! 16 concurrent writers create keys with 1,444-byte values (the size of a typical pod) in a
//! redb store in a temporary directory, twice in the same minutes so the two figures compare:
//!
//! * `fsync per commit`: every group-commit batch is a durable redb commit (the old design);
//! * `write-ahead log`: every batch is one append + one fdatasync of the log and a new
//!   in-memory overlay; a background thread applies the overlay to redb every 100 ms in one
//!   durable commit (the current default).
//!
//! To compare with redb on the acknowledgement path (every batch also a non-durable redb
//! commit on the writer thread, the design before the overlay), run the same bench from
//! commit e0d4055 in a second work tree, alternating with this one:
//! `git worktree add --detach /tmp/before e0d4055 && cd /tmp/before &&
//! cargo bench -p hollow-store --bench writes -- wal`.
//!
//! A last part measures the delay from a write to its watch event with 100 watchers and one
//! writer paced at 100 writes/s (p50, p99, max), the durable-write path's other goal.
//!
//! The writer thread's CPU comes from `/proc/self/task/<tid>/schedstat` (nanoseconds on CPU),
//! so it counts the kernel's share of the fsync too; the applier thread's CPU (off the
//! acknowledgement path, but still CPU) is reported beside it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hollow_store::{Backend, RedbBackend, Store, StoreOptions, constant};

const WRITERS: usize = 16;
const WRITES: usize = 32_000;
const VALUE_BYTES: usize = 1_444;

#[tokio::main]
async fn main() {
    let directory = tempfile::tempdir().expect("create a temporary directory");
    println!(
        "hollow-store durable writes: {WRITERS} writers, {WRITES} creates of {VALUE_BYTES} B \
         values, in {}",
        directory.path().display()
    );
    // `-- wal`, `-- fsync` or `-- watch` runs one part only (for a profiler, or to compare).
    let only: Option<String> = std::env::args().skip(1).find(|arg| !arg.starts_with('-'));
    for round in 0..2 {
        for mode in [Mode::FsyncPerCommit, Mode::WriteAheadLog] {
            let name = match mode {
                Mode::FsyncPerCommit => "fsync",
                Mode::WriteAheadLog => "wal",
            };
            if only.as_deref().is_some_and(|only| only != name) {
                continue;
            }
            let path = directory.path().join(format!("{mode:?}-{round}.redb"));
            let backend = Arc::new(
                match mode {
                    Mode::FsyncPerCommit => RedbBackend::open_fsync_per_commit(&path),
                    Mode::WriteAheadLog => RedbBackend::open(&path),
                }
                .expect("open the redb backend"),
            );
            run(mode, backend).await;
        }
    }
    if only.as_deref().is_none_or(|only| only == "watch") {
        for round in 0..2 {
            let path = directory.path().join(format!("watch-{round}.redb"));
            watch_delay(RedbBackend::open(&path).expect("open the redb backend")).await;
        }
    }
}

const WATCHERS: usize = 100;
const PACED_WRITES_PER_SECOND: u64 = 100;
const PACED_WRITES: u64 = 500;

/// The delay from a write's submission to each of `WATCHERS` watchers receiving its event,
/// with one writer paced at `PACED_WRITES_PER_SECOND` (the API server's watch-delay goal:
/// p99 ≤ 5 ms). Each value carries its submission time, so a watcher needs nothing else.
async fn watch_delay(backend: RedbBackend) {
    let store = Store::new(
        Arc::new(backend) as Arc<dyn Backend>,
        StoreOptions::default(),
    )
    .expect("start the store");
    let epoch = Instant::now();
    let mut watchers = Vec::new();
    for _ in 0..WATCHERS {
        let mut watch = store
            .watch("/registry/pods/", store.current_revision())
            .expect("start a watch");
        watchers.push(tokio::spawn(async move {
            let mut delays = Vec::with_capacity(PACED_WRITES as usize);
            while delays.len() < PACED_WRITES as usize {
                let event = watch.next().await.expect("the watch ended").expect("event");
                let sent: [u8; 8] = event.value[..8].try_into().expect("a timestamped value");
                let sent = Duration::from_nanos(u64::from_le_bytes(sent));
                delays.push(epoch.elapsed().saturating_sub(sent));
            }
            delays
        }));
    }
    let mut ticks =
        tokio::time::interval(Duration::from_micros(1_000_000 / PACED_WRITES_PER_SECOND));
    for index in 0..PACED_WRITES {
        ticks.tick().await;
        let store = store.clone();
        // Its own task, so a slow write does not delay the next one's submission.
        tokio::spawn(async move {
            let mut value = vec![b'x'; VALUE_BYTES];
            let sent = epoch.elapsed().as_nanos() as u64;
            value[..8].copy_from_slice(&sent.to_le_bytes());
            store
                .create(
                    format!("/registry/pods/watch/pod-{index:06}"),
                    constant(value),
                )
                .await
                .expect("durable create");
        });
    }
    let mut delays = Vec::new();
    for watcher in watchers {
        delays.extend(watcher.await.expect("watcher task"));
    }
    delays.sort_unstable();
    let quantile = |q: f64| delays[((delays.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e3;
    println!(
        "{:<18} {WATCHERS} watchers, {PACED_WRITES_PER_SECOND} writes/s: write → event delay \
         p50 {:.2} ms | p99 {:.2} ms | max {:.2} ms",
        "watch delay:",
        quantile(0.5),
        quantile(0.99),
        quantile(1.0),
    );
    store.shutdown().await;
}

#[derive(Clone, Copy, Debug)]
enum Mode {
    FsyncPerCommit,
    WriteAheadLog,
}

async fn run(mode: Mode, backend: Arc<RedbBackend>) {
    let store = Store::new(backend.clone() as Arc<dyn Backend>, StoreOptions::default())
        .expect("start the store");
    let writer_thread = wait_for_thread(WRITER_THREAD).expect("find the store writer thread");
    // Before the overlay (commit e0d4055) there was no applier thread: its CPU reads as 0.
    let applier_thread = match mode {
        Mode::WriteAheadLog => wait_for_thread(APPLIER_THREAD),
        Mode::FsyncPerCommit => None,
    };
    let cpu_before = thread_cpu(writer_thread);
    let applier_cpu_before = applier_thread.map(thread_cpu).unwrap_or_default();
    let syncs_before = backend.sync_stats();
    let elapsed = concurrent_creates(&store, WRITERS, WRITES / WRITERS).await;
    let cpu = thread_cpu(writer_thread).saturating_sub(cpu_before);
    let applier_cpu = applier_thread
        .map(thread_cpu)
        .unwrap_or_default()
        .saturating_sub(applier_cpu_before);
    let syncs = backend.sync_stats();
    let stats = store.stats();
    let commits = stats.commits.max(1) as f64;
    println!(
        "{:<18} {:>7.0} writes/s | writer CPU {:>5.1} µs/write (applier {:>4.1}) | \
         {:>5.1} writes/commit | {:.2} log fsyncs + {:.3} redb durable commits per commit",
        format!("{mode:?}:"),
        WRITES as f64 / elapsed.as_secs_f64(),
        cpu.as_secs_f64() * 1e6 / WRITES as f64,
        applier_cpu.as_secs_f64() * 1e6 / WRITES as f64,
        stats.writes as f64 / commits,
        (syncs.log_syncs - syncs_before.log_syncs) as f64 / commits,
        (syncs.durable_commits - syncs_before.durable_commits) as f64 / commits,
    );
    store.shutdown().await;
}

/// `writers` tasks each creating `per_writer` keys; returns the wall time.
async fn concurrent_creates(store: &Store, writers: usize, per_writer: usize) -> Duration {
    let value = Bytes::from(vec![b'x'; VALUE_BYTES]);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for writer in 0..writers {
        let store = store.clone();
        let value = value.clone();
        tasks.push(tokio::spawn(async move {
            for index in 0..per_writer {
                store
                    .create(
                        format!("/registry/pods/bench-{writer:03}/pod-{index:06}"),
                        constant(value.clone()),
                    )
                    .await
                    .expect("durable create");
            }
        }));
    }
    for task in tasks {
        task.await.expect("writer task");
    }
    started.elapsed()
}

/// Thread names as the kernel keeps them: their first 15 bytes.
const WRITER_THREAD: &str = "hollow-store-wr";
const APPLIER_THREAD: &str = "hollow-store-ap";

/// A thread names itself once it runs, which may be a moment after it was spawned.
fn wait_for_thread(name: &str) -> Option<u64> {
    for _ in 0..200 {
        if let Some(thread) = newest_thread_named(name) {
            return Some(thread);
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    None
}

/// The newest thread of this process with this name (a previous store's threads have exited
/// by the time the next store starts).
fn newest_thread_named(name: &str) -> Option<u64> {
    let mut newest = None;
    for entry in std::fs::read_dir("/proc/self/task").ok()? {
        let entry = entry.ok()?;
        let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
        if comm.trim_end() == name {
            let id: u64 = entry.file_name().to_str()?.parse().ok()?;
            newest = newest.max(Some(id));
        }
    }
    newest
}

fn thread_cpu(thread: u64) -> Duration {
    let schedstat = std::fs::read_to_string(format!("/proc/self/task/{thread}/schedstat"))
        .expect("read the writer thread's schedstat");
    let on_cpu_nanos = schedstat
        .split_whitespace()
        .next()
        .and_then(|field| field.parse().ok())
        .expect("schedstat starts with nanoseconds on CPU");
    Duration::from_nanos(on_cpu_nanos)
}
