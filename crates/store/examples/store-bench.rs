//! Store benchmark: `cargo run --release -p hollow-store --example store-bench`.
//!
//! Measures, on a redb file in a temporary directory (so every write is fsynced):
//!
//! * the raw backend: one commit per batch of 1, 16 and 256 writes, no engine around it;
//! * durable creates per second with 1, 16 and 64 concurrent writers (group commit at work);
//! * listing 10,000 records, whole and in pages of 500;
//! * write→event latency with 100 watchers: from the moment `write` is called to the moment
//!   each watcher holds the event, next to the write's own acknowledgement latency; then the
//!   same over the memory backend, where no fsync hides the engine's own overhead.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hollow_store::{Backend, Precondition, RedbBackend, Store, StoreOptions, Write, constant};

#[tokio::main]
async fn main() {
    let directory = tempfile::tempdir().expect("create a temporary directory");
    println!("hollow-store benchmark (redb, Durability::Immediate, {directory:?})");

    // The floor under everything: one backend commit (one fsync) per batch, no engine around it.
    for batch in [1, 16, 256] {
        let backend =
            RedbBackend::open(&directory.path().join(format!("raw-{batch}.redb"))).unwrap();
        let commits = 300;
        let value = Bytes::from(vec![b'x'; 512]);
        let started = Instant::now();
        for commit in 0..commits {
            let writes = (0..batch)
                .map(|index| Write::Put {
                    key: format!("/bench/raw/{:03}/{commit:06}/{index:03}", index % 16),
                    precondition: Precondition::MustNotExist,
                    value: constant(value.clone()),
                })
                .collect();
            backend.commit(writes).unwrap();
        }
        let elapsed = started.elapsed();
        println!(
            "raw redb commit, batches of {batch:>3}: {:.2} ms per commit = {:>7.0} writes/s",
            elapsed.as_secs_f64() * 1_000.0 / commits as f64,
            (commits * batch) as f64 / elapsed.as_secs_f64()
        );
    }

    for writers in [1, 16, 64] {
        let path = directory.path().join(format!("creates-{writers}.redb"));
        let store = Store::open_redb(&path, StoreOptions::default()).unwrap();
        let total = if writers == 1 { 1_000 } else { 16_000 };
        let elapsed = concurrent_creates(&store, "/bench/create/", writers, total / writers).await;
        let stats = store.stats();
        println!(
            "durable creates, {writers:>2} writers: {total} in {:.2} s = {:>7.0} writes/s \
             ({} commits, {:.1} writes per commit)",
            elapsed.as_secs_f64(),
            total as f64 / elapsed.as_secs_f64(),
            stats.commits,
            stats.writes as f64 / stats.commits as f64,
        );
    }

    // The engine's own ceiling: the same 16 writers with no disk under them.
    let store = Store::in_memory(StoreOptions::default());
    let elapsed = concurrent_creates(&store, "/bench/create/", 16, 4_000).await;
    let stats = store.stats();
    println!(
        "memory creates, 16 writers: 64000 in {:.2} s = {:>7.0} writes/s ({:.1} writes per commit)",
        elapsed.as_secs_f64(),
        64_000.0 / elapsed.as_secs_f64(),
        stats.writes as f64 / stats.commits as f64,
    );
    drop(store);

    let store =
        Store::open_redb(&directory.path().join("list.redb"), StoreOptions::default()).unwrap();
    concurrent_creates(&store, "/bench/list/", 50, 200).await;
    let value_bytes = 512;
    let rounds = 20;
    // Warm the page cache so the whole and paged figures compare like with like.
    store.list("/bench/list/", None, None).unwrap();
    let started = Instant::now();
    for _ in 0..rounds {
        let page = store.list("/bench/list/", None, None).unwrap();
        assert_eq!(page.records.len(), 10_000);
    }
    println!(
        "list 10,000 records ({value_bytes} B values), whole: {:.2} ms per list",
        started.elapsed().as_secs_f64() * 1_000.0 / rounds as f64
    );
    let started = Instant::now();
    for _ in 0..rounds {
        let mut start_after: Option<String> = None;
        let mut count = 0;
        loop {
            let page = store
                .list("/bench/list/", start_after.as_deref(), Some(500))
                .unwrap();
            count += page.records.len();
            if !page.more {
                break;
            }
            start_after = page.records.last().map(|record| record.key.clone());
        }
        assert_eq!(count, 10_000);
    }
    println!(
        "list 10,000 records in pages of 500: {:.2} ms per full walk",
        started.elapsed().as_secs_f64() * 1_000.0 / rounds as f64
    );
    drop(store);

    for writers in [1, 16] {
        let path = directory.path().join(format!("watch-{writers}.redb"));
        let store = Store::open_redb(&path, StoreOptions::default()).unwrap();
        watch_latency(store, "redb", writers).await;
    }
    // Without the fsync, what is left is the engine's own cost: batching, fan-out, wake-ups.
    for writers in [1, 16] {
        watch_latency(Store::in_memory(StoreOptions::default()), "memory", writers).await;
    }
}

/// `writers` tasks each creating `per_writer` keys of 512 bytes; returns the wall time.
async fn concurrent_creates(
    store: &Store,
    prefix: &str,
    writers: usize,
    per_writer: usize,
) -> Duration {
    let value = Bytes::from(vec![b'x'; 512]);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for writer in 0..writers {
        let store = store.clone();
        let prefix = prefix.to_owned();
        let value = value.clone();
        tasks.push(tokio::spawn(async move {
            for index in 0..per_writer {
                store
                    .create(
                        format!("{prefix}{writer:03}/{index:06}"),
                        constant(value.clone()),
                    )
                    .await
                    .unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    started.elapsed()
}

/// 100 watchers on the written prefix; each write carries the time it was submitted.
async fn watch_latency(store: Store, backend: &str, writers: usize) {
    const WATCHERS: usize = 100;
    const WRITES_PER_WRITER: usize = 300;
    let origin = Instant::now();
    let total = writers * WRITES_PER_WRITER;
    let mut watchers = Vec::new();
    for _ in 0..WATCHERS {
        let mut watch = store
            .watch("/bench/watch/", store.current_revision())
            .unwrap();
        watchers.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(total);
            while latencies.len() < total {
                let event = watch.next().await.unwrap().unwrap();
                let submitted = u64::from_le_bytes(event.value[..8].try_into().unwrap());
                let now = origin.elapsed().as_nanos() as u64;
                latencies.push(now - submitted);
            }
            latencies
        }));
    }
    let acknowledgements = Arc::new(std::sync::Mutex::new(Vec::with_capacity(total)));
    let mut tasks = Vec::new();
    for writer in 0..writers {
        let store = store.clone();
        let acknowledgements = acknowledgements.clone();
        tasks.push(tokio::spawn(async move {
            for index in 0..WRITES_PER_WRITER {
                let submitted = origin.elapsed().as_nanos() as u64;
                let mut value = submitted.to_le_bytes().to_vec();
                value.resize(512, b'x');
                store
                    .create(
                        format!("/bench/watch/{writer:03}/{index:06}"),
                        constant(value),
                    )
                    .await
                    .unwrap();
                let acknowledged = origin.elapsed().as_nanos() as u64 - submitted;
                acknowledgements.lock().unwrap().push(acknowledged);
                // Paced, not flat out: latency under a steady load rather than a queue.
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let mut event_latencies = Vec::with_capacity(total * WATCHERS);
    for watcher in watchers {
        event_latencies.extend(watcher.await.unwrap());
    }
    let mut acknowledgements = std::mem::take(&mut *acknowledgements.lock().unwrap());
    println!(
        "{backend:>6}: {WATCHERS} watchers, {writers:>2} paced writers: write→ack p50 {} p99 {}; \
         write→event p50 {} p99 {} max {} ({} deliveries)",
        millis(percentile(&mut acknowledgements, 0.50)),
        millis(percentile(&mut acknowledgements, 0.99)),
        millis(percentile(&mut event_latencies, 0.50)),
        millis(percentile(&mut event_latencies, 0.99)),
        millis(percentile(&mut event_latencies, 1.0)),
        event_latencies.len(),
    );
}

fn percentile(samples: &mut [u64], quantile: f64) -> u64 {
    samples.sort_unstable();
    let index = ((samples.len() as f64 - 1.0) * quantile).round() as usize;
    samples[index]
}

fn millis(nanos: u64) -> String {
    format!("{:.2} ms", nanos as f64 / 1e6)
}
