//! Prometheus metrics, in the text exposition format over a minimal HTTP/1.1 handler.
//!
//! Counters live in per-worker shards (one cache-line-aligned block per UDP worker, plus one
//! shared by TCP and forwarding), so the hot path only ever increments atomics that no other
//! core writes. A scrape sums the shards. Hand-written rather than `prometheus-client`: the
//! handful of series below do not justify a registry, and the shards need custom summing.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::snapshot::Snapshot;
use crate::wire::record_type;

const QUERY_TYPES: [(u16, &str); 9] = [
    (record_type::A, "A"),
    (record_type::AAAA, "AAAA"),
    (record_type::SRV, "SRV"),
    (record_type::PTR, "PTR"),
    (record_type::CNAME, "CNAME"),
    (record_type::TXT, "TXT"),
    (record_type::SOA, "SOA"),
    (record_type::NS, "NS"),
    (record_type::ANY, "ANY"),
];
const OTHER_TYPE: usize = QUERY_TYPES.len();
const RESPONSE_CODES: [&str; 8] = [
    "NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED", "BADVERS", "OTHER",
];
/// Upper bounds of the latency histogram, in microseconds.
const LATENCY_BOUNDS_MICROS: [u64; 12] =
    [1, 2, 5, 10, 20, 50, 100, 200, 500, 1_000, 10_000, 100_000];

/// Counters of one worker.
#[repr(align(128))]
#[derive(Default)]
pub struct WorkerMetrics {
    queries: [[AtomicU64; RESPONSE_CODES.len()]; QUERY_TYPES.len() + 1],
    latency: [AtomicU64; LATENCY_BOUNDS_MICROS.len() + 1],
    latency_sum_nanos: AtomicU64,
    answer_records: AtomicU64,
    forwarded: AtomicU64,
    dropped: AtomicU64,
}

fn type_index(qtype: u16) -> usize {
    QUERY_TYPES
        .iter()
        .position(|&(known, _)| known == qtype)
        .unwrap_or(OTHER_TYPE)
}

fn rcode_index(rcode: u16) -> usize {
    match rcode {
        0..=5 => rcode as usize,
        16 => 6,
        _ => 7,
    }
}

impl WorkerMetrics {
    /// Records one answered query. Relaxed increments of this worker's own counters.
    #[inline]
    pub fn record(&self, qtype: u16, rcode: u16, answers: u16, elapsed: Duration) {
        self.queries[type_index(qtype)][rcode_index(rcode)].fetch_add(1, Ordering::Relaxed);
        let micros = elapsed.as_micros() as u64;
        let bucket = LATENCY_BOUNDS_MICROS
            .iter()
            .position(|&bound| micros < bound)
            .unwrap_or(LATENCY_BOUNDS_MICROS.len());
        self.latency[bucket].fetch_add(1, Ordering::Relaxed);
        self.latency_sum_nanos
            .fetch_add(elapsed.as_nanos() as u64, Ordering::Relaxed);
        self.answer_records
            .fetch_add(answers as u64, Ordering::Relaxed);
    }

    pub fn record_forward(&self) {
        self.forwarded.fetch_add(1, Ordering::Relaxed);
    }

    pub fn record_drop(&self) {
        self.dropped.fetch_add(1, Ordering::Relaxed);
    }
}

/// All metrics of one server.
pub struct Metrics {
    shards: Box<[WorkerMetrics]>,
    rebuilds: AtomicU64,
    last_rebuild_nanos: AtomicU64,
    updates: AtomicU64,
    update_nanos: AtomicU64,
    last_update_nanos: AtomicU64,
    max_update_nanos: AtomicU64,
}

impl Metrics {
    pub fn new(shard_count: usize) -> Self {
        Self {
            shards: (0..shard_count.max(1))
                .map(|_| WorkerMetrics::default())
                .collect(),
            rebuilds: AtomicU64::new(0),
            last_rebuild_nanos: AtomicU64::new(0),
            updates: AtomicU64::new(0),
            update_nanos: AtomicU64::new(0),
            last_update_nanos: AtomicU64::new(0),
            max_update_nanos: AtomicU64::new(0),
        }
    }

    /// The shard of worker `index` (the last shard is shared by TCP and forwarding).
    pub fn shard(&self, index: usize) -> &WorkerMetrics {
        &self.shards[index.min(self.shards.len() - 1)]
    }

    pub fn shared_shard(&self) -> &WorkerMetrics {
        &self.shards[self.shards.len() - 1]
    }

    pub fn record_rebuild(&self, duration: Duration) {
        self.rebuilds.fetch_add(1, Ordering::Relaxed);
        self.last_rebuild_nanos
            .store(duration.as_nanos() as u64, Ordering::Relaxed);
    }

    pub fn record_update(&self, duration: Duration) {
        let nanos = duration.as_nanos() as u64;
        self.updates.fetch_add(1, Ordering::Relaxed);
        self.update_nanos.fetch_add(nanos, Ordering::Relaxed);
        self.last_update_nanos.store(nanos, Ordering::Relaxed);
        self.max_update_nanos.fetch_max(nanos, Ordering::Relaxed);
    }

    fn sum(&self, read: impl Fn(&WorkerMetrics) -> &AtomicU64) -> u64 {
        self.shards
            .iter()
            .map(|shard| read(shard).load(Ordering::Relaxed))
            .sum()
    }

    /// Renders the text exposition format.
    pub fn render(&self, snapshot: &Snapshot) -> String {
        let mut text = String::with_capacity(4096);
        text.push_str("# HELP hollow_dns_queries_total DNS queries answered, by query type and response code.\n");
        text.push_str("# TYPE hollow_dns_queries_total counter\n");
        for type_slot in 0..=OTHER_TYPE {
            let type_name = QUERY_TYPES
                .get(type_slot)
                .map(|&(_, name)| name)
                .unwrap_or("OTHER");
            for (rcode_slot, rcode_name) in RESPONSE_CODES.iter().enumerate() {
                let count = self.sum(|shard| &shard.queries[type_slot][rcode_slot]);
                if count > 0 {
                    let _ = writeln!(
                        text,
                        "hollow_dns_queries_total{{type=\"{type_name}\",rcode=\"{rcode_name}\"}} {count}"
                    );
                }
            }
        }
        text.push_str("# HELP hollow_dns_request_duration_seconds Time from receiving a query to handing its answer to the kernel.\n");
        text.push_str("# TYPE hollow_dns_request_duration_seconds histogram\n");
        let mut cumulative = 0;
        for (slot, bound) in LATENCY_BOUNDS_MICROS.iter().enumerate() {
            cumulative += self.sum(|shard| &shard.latency[slot]);
            let _ = writeln!(
                text,
                "hollow_dns_request_duration_seconds_bucket{{le=\"{}\"}} {cumulative}",
                *bound as f64 / 1e6
            );
        }
        cumulative += self.sum(|shard| &shard.latency[LATENCY_BOUNDS_MICROS.len()]);
        let _ = writeln!(
            text,
            "hollow_dns_request_duration_seconds_bucket{{le=\"+Inf\"}} {cumulative}"
        );
        let _ = writeln!(
            text,
            "hollow_dns_request_duration_seconds_sum {}",
            self.sum(|shard| &shard.latency_sum_nanos) as f64 / 1e9
        );
        let _ = writeln!(
            text,
            "hollow_dns_request_duration_seconds_count {cumulative}"
        );

        let counters = [
            (
                "hollow_dns_answer_records_total",
                "Resource records served in answer sections.",
                self.sum(|shard| &shard.answer_records),
            ),
            (
                "hollow_dns_forwarded_total",
                "Queries for names outside the zone sent upstream.",
                self.sum(|shard| &shard.forwarded),
            ),
            (
                "hollow_dns_dropped_total",
                "Datagrams dropped without an answer (not a query).",
                self.sum(|shard| &shard.dropped),
            ),
            (
                "hollow_dns_snapshot_rebuilds_total",
                "Snapshots built from the watched objects.",
                self.rebuilds.load(Ordering::Relaxed),
            ),
            (
                "hollow_dns_snapshot_updates_total",
                "Incremental snapshot updates (one per batch of watch events).",
                self.updates.load(Ordering::Relaxed),
            ),
        ];
        for (name, help, value) in counters {
            let _ = writeln!(
                text,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
            );
        }
        let age = SystemTime::now()
            .duration_since(snapshot.built_at())
            .unwrap_or_default()
            .as_secs_f64();
        let stats = snapshot.stats();
        let gauges = [
            (
                "hollow_dns_snapshot_age_seconds",
                "Seconds since the served snapshot was built.",
                age,
            ),
            (
                "hollow_dns_snapshot_rebuild_seconds",
                "Time the last snapshot rebuild took.",
                self.last_rebuild_nanos.load(Ordering::Relaxed) as f64 / 1e9,
            ),
            (
                "hollow_dns_snapshot_update_seconds",
                "Time the last incremental snapshot update took.",
                self.last_update_nanos.load(Ordering::Relaxed) as f64 / 1e9,
            ),
            (
                "hollow_dns_snapshot_update_seconds_max",
                "Longest incremental snapshot update so far.",
                self.max_update_nanos.load(Ordering::Relaxed) as f64 / 1e9,
            ),
            (
                "hollow_dns_snapshot_update_seconds_sum",
                "Total time spent in incremental snapshot updates (divide by the updates total for the mean).",
                self.update_nanos.load(Ordering::Relaxed) as f64 / 1e9,
            ),
            (
                "hollow_dns_snapshot_names",
                "Names in the served snapshot.",
                stats.names as f64,
            ),
            (
                "hollow_dns_snapshot_records",
                "Resource records in the served snapshot.",
                stats.records as f64,
            ),
            (
                "hollow_dns_snapshot_index_bytes",
                "Heap bytes of the served snapshot's packed index.",
                stats.index_bytes as f64,
            ),
            (
                "hollow_dns_synced",
                "1 once the first full sync with the API is served.",
                if snapshot.is_synced() { 1.0 } else { 0.0 },
            ),
        ];
        for (name, help, value) in gauges {
            let _ = writeln!(
                text,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
            );
        }
        if let Some(report) = crate::zone_memory_report() {
            text.push_str("# HELP hollow_dns_zone_heap_bytes Estimated heap bytes of the watch-fed zone, by part (a few seconds old at most).\n# TYPE hollow_dns_zone_heap_bytes gauge\n");
            for (part, bytes) in report.parts() {
                let _ = writeln!(
                    text,
                    "hollow_dns_zone_heap_bytes{{part=\"{part}\"}} {bytes}"
                );
            }
        }
        text
    }
}

/// Serves `GET /metrics` (any path, really) until the listener task is aborted.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>, snapshot: Arc<ArcSwap<Snapshot>>) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            continue;
        };
        let metrics = Arc::clone(&metrics);
        let snapshot = Arc::clone(&snapshot);
        tokio::spawn(async move {
            let mut request = [0u8; 2048];
            let read =
                tokio::time::timeout(Duration::from_secs(5), stream.read(&mut request)).await;
            if !matches!(read, Ok(Ok(n)) if n > 0) {
                return;
            }
            let body = metrics.render(&snapshot.load());
            let response = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes()).await;
            let _ = stream.shutdown().await;
        });
    }
}
