//! API server benchmark: `cargo bench -p hollow-apiserver --bench api` (or `scripts/bench-api.sh`).
//!
//! Starts the API server in-process, on its own tokio runtime (as if it were its own process),
//! over a redb store in a temporary directory with production durability (every commit is
//! fsynced), and drives it over real HTTP/1.1 on loopback from a second runtime:
//!
//! 1. **Memory per stored pod**: RSS (`VmRSS`) and redb file size before and after storing
//!    10,000 pods, and after listing them.
//! 2. **Listing 10,000 pods**: whole, in pages of 500, and as a `kubectl get` Table.
//! 3. **Creates/s with 16 clients**, each on its own keep-alive connection; latency
//!    percentiles and the store's group-commit batch size.
//! 4. **Write→event delay at 100 watchers**: 100 watch streams on one collection, paced
//!    PATCHes one at a time; for every (watcher, write) pair, the time from just before the
//!    request is sent to the moment that watcher has read the event line.
//!
//! A diagnostics section follows, to tell what limits those figures: a lone store write (the
//! fsync floor), the same creates and watches against a second API server over the memory
//! backend (no fsync), PATCHes with no watchers and at a slower pace, and CPU time per
//! operation split by thread (server runtime, store writer, clients) from
//! `/proc/self/task/*/stat`.
//!
//! `HOLLOW_BENCH_ONLY=watch` runs only the write→event phases (main and slow pace, redb and
//! memory), for work on the watch fan-out.
//!
//! `HOLLOW_BENCH_ONLY=creates` runs only the creates, against the redb server and then the
//! memory one, with their CPU per create by thread: a quick loop (about 10 s) for work on the
//! server's cost per request, and a steady process to attach `perf record -p` to.
//!
//! Both modes end with the **handler alone**: the same creates handed to the router in-process
//! (no sockets, no hyper), 16 at a time on one thread over the memory backend, and that
//! thread's CPU per create. It is the part of the server's CPU that routing, decoding,
//! validation, defaulting and encoding cost, and it is much steadier than the figures above on
//! a machine that other work shares, since it does not depend on how threads get scheduled.
//!
//! Every phase is bounded in time and the whole run stops itself after [`RUN_LIMIT`]; it
//! prints one results table at the end, with the goals from the issue beside the figures.
//! Clients and server share the machine's cores, so the figures are a floor for a server
//! with the machine to itself. The bench uses the `hollow` binary's allocator (jemalloc, with
//! the same settings) so its figures are the binary's; `LD_PRELOAD` cannot swap it back, so
//! comparing allocators means editing the two statics below.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

// SAFETY: jemalloc reads this NUL-terminated string under this exact symbol name before the
// first allocation; it is never written. The same settings as crates/hollow/src/main.rs.
#[allow(unsafe_code)]
#[unsafe(export_name = "_rjem_malloc_conf")]
pub static ALLOCATOR_SETTINGS: &[u8; 68] =
    b"background_thread:true,max_background_threads:1,dirty_decay_ms:1000\0";

use bytes::{Bytes, BytesMut};
use hollow_apiserver::ApiServer;
use hollow_store::{Store, StoreOptions, StoreStats};
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

/// The whole run, builds excluded, stops after this even if a phase hangs.
const RUN_LIMIT: Duration = Duration::from_secs(170);
/// The most any single phase may take.
const PHASE_LIMIT: Duration = Duration::from_secs(40);

const CREATE_CLIENTS: usize = 16;
const CREATE_TOTAL: usize = 20_000;
const STORED_PODS: usize = 10_000;
const LIST_RUNS: usize = 20;
const PAGE_SIZE: usize = 500;
/// The watch phase: 100 watchers, 2,000 writes at 500 per second.
const WATCH_LOAD: WatchLoad = WatchLoad {
    name: "main",
    watchers: 100,
    writes: 2_000,
    pace: Duration::from_millis(2),
};

/// Where each phase keeps its pods, so that the phases do not see each other's objects.
const LIST_NAMESPACE: &str = "bench-list";
const CREATE_NAMESPACE: &str = "bench-create";
const WATCH_NAMESPACE: &str = "bench-watch";

/// The annotation that carries a write's sequence number into the watchers' event lines.
const SEQUENCE_ANNOTATION: &str = "bench.hollow.io/sequence";
const TABLE_ACCEPT: &str = "application/json;as=Table;v=v1;g=meta.k8s.io";

fn main() {
    let client_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("bench-client")
        .enable_all()
        .build()
        .expect("building the client runtime");
    let directory = tempfile::tempdir().expect("creating a temporary directory");
    let database = directory.path().join("store.redb");
    let server = RunningServer::start(Some(&database));
    // The same API server without fsyncs, for the diagnostics: what the HTTP and handler
    // layers manage when the disk is out of the way.
    let memory_server = RunningServer::start(None);
    let outcome = client_runtime.block_on(async {
        tokio::time::timeout(RUN_LIMIT, run(&server, &memory_server, &database)).await
    });
    // Watch streams and keep-alive connections would hold a graceful shutdown open: drop the
    // clients first, then give the server a moment and leave regardless.
    client_runtime.shutdown_timeout(Duration::from_secs(2));
    server.stop(Duration::from_secs(5));
    memory_server.stop(Duration::from_secs(5));
    drop(directory);
    match outcome {
        Ok(report) => {
            println!("{report}");
        }
        Err(_) => {
            eprintln!("benchmark stopped: it ran longer than {RUN_LIMIT:?}");
            std::process::exit(1);
        }
    }
}

/// The API server on its own thread and runtime.
struct RunningServer {
    address: SocketAddr,
    store: Store,
    stop: oneshot::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl RunningServer {
    /// Over a redb file at `database`, or over the memory backend when there is none.
    fn start(database: Option<&Path>) -> RunningServer {
        let database = database.map(Path::to_path_buf);
        let (started, started_receiver) = std::sync::mpsc::channel();
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("apiserver".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .thread_name("apiserver-worker")
                    .enable_all()
                    .build()
                    .expect("building the server runtime");
                runtime.block_on(async move {
                    let store = match database {
                        Some(path) => Store::open_redb(&path, StoreOptions::default())
                            .expect("opening the redb store"),
                        None => Store::in_memory(StoreOptions::default()),
                    };
                    let listener = TcpListener::bind("127.0.0.1:0")
                        .await
                        .expect("binding a loopback port");
                    let address = listener.local_addr().expect("the bound address");
                    let server = ApiServer::new(store.clone(), address)
                        .await
                        .expect("preparing the API server");
                    started
                        .send((address, store))
                        .expect("the benchmark waits for the server");
                    let stopped = async {
                        let _ = stopped.await;
                    };
                    server.serve(listener, stopped).await.expect("serving");
                });
                runtime.shutdown_timeout(Duration::from_secs(1));
            })
            .expect("starting the server thread");
        let (address, store) = started_receiver
            .recv_timeout(Duration::from_secs(30))
            .expect("the API server starts within 30 s");
        RunningServer {
            address,
            store,
            stop,
            thread,
        }
    }

    fn stop(self, patience: Duration) {
        let _ = self.stop.send(());
        let deadline = Instant::now() + patience;
        while !self.thread.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// `HOLLOW_BENCH_ONLY=creates`: only the creates phase, on both backends.
fn only_creates() -> bool {
    std::env::var_os("HOLLOW_BENCH_ONLY").is_some_and(|value| value == "creates")
}

/// `HOLLOW_BENCH_ONLY=watch`: only the write→event phases, on both backends.
fn only_watch() -> bool {
    std::env::var_os("HOLLOW_BENCH_ONLY").is_some_and(|value| value == "watch")
}

/// The write→event phases alone: the main load and the slow one, against the redb server and
/// then the memory one, with CPU per write by thread. A quick loop (about 20 s) for work on
/// the watch fan-out, and a steady process to attach `perf record -p` to.
async fn watch_only(
    server: &RunningServer,
    memory_server: &RunningServer,
    pod: &Arc<PodTemplate>,
    mut report: String,
) -> String {
    let slow_load = WatchLoad {
        name: "slow",
        writes: 500,
        pace: Duration::from_millis(10),
        ..WATCH_LOAD
    };
    let mut results = Vec::new();
    for (backend, target) in [("redb", server), ("memory", memory_server)] {
        for load in [WATCH_LOAD, slow_load] {
            progress(&format!(
                "write→event, {backend}, {} watchers, one write per {:?}",
                load.watchers, load.pace
            ));
            let delay = measure_watch_delay(target.address, pod, load).await;
            results.push((backend, load, delay));
        }
    }
    let _ = writeln!(report, "load average at end {}\n", load_average());
    for (backend, load, delay) in &results {
        watch_rows(&mut report, backend, load, delay);
    }
    report
}

/// The creates phase alone, against the redb server and then the memory one.
async fn creates_only(
    server: &RunningServer,
    memory_server: &RunningServer,
    pod: &Arc<PodTemplate>,
    mut report: String,
) -> String {
    let mut results = Vec::new();
    for (backend, target) in [("redb", server), ("memory", memory_server)] {
        progress(&format!("creates with 16 clients, {backend}"));
        let cpu_before = thread_cpu();
        let creates = measure_creates(target, pod).await;
        let cpu = cpu_by_role(&cpu_before, &thread_cpu());
        results.push((backend, creates, cpu));
    }
    progress("creates through the handler alone");
    let handler = measure_handler_alone(pod);
    let _ = writeln!(report, "load average at end {}\n", load_average());
    for (backend, creates, cpu) in &results {
        creates_rows(&mut report, backend, creates, cpu);
    }
    handler_rows(&mut report, &handler);
    report
}

/// What the in-process creates cost.
struct HandlerAlone {
    creates: usize,
    cpu: Duration,
    elapsed: Duration,
}

/// `HANDLER_CREATES` creates handed straight to the router on a single-threaded runtime over
/// the memory backend, 16 at a time; the CPU is that thread's (the store's writer thread is not
/// counted).
fn measure_handler_alone(pod: &Arc<PodTemplate>) -> HandlerAlone {
    const HANDLER_CREATES: usize = 20_000;
    let pod = pod.clone();
    std::thread::Builder::new()
        .name("handler-alone".into())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("building the handler runtime");
            runtime.block_on(async move {
                let store = Store::in_memory(StoreOptions::default());
                let address: SocketAddr = "127.0.0.1:6443".parse().expect("an address");
                let server = ApiServer::new(store, address)
                    .await
                    .expect("preparing the API server");
                let router = server.router();
                let send = |method: Method, path: &str, body: Bytes| {
                    let request = Request::builder()
                        .method(method)
                        .uri(path)
                        .header(header::HOST, "127.0.0.1")
                        .header(header::ACCEPT, "application/json")
                        .header(header::CONTENT_TYPE, "application/json")
                        .body(axum::body::Body::from(body))
                        .expect("a valid request");
                    let router = router.clone();
                    async move {
                        let response = tower::ServiceExt::oneshot(router, request)
                            .await
                            .expect("the router answers");
                        let status = response.status();
                        let body = response
                            .into_body()
                            .collect()
                            .await
                            .expect("reading the answer")
                            .to_bytes();
                        assert_eq!(
                            status,
                            StatusCode::CREATED,
                            "{}",
                            String::from_utf8_lossy(&body)
                        );
                    }
                };
                let namespace = json!({"metadata": {"name": CREATE_NAMESPACE}});
                send(
                    Method::POST,
                    "/api/v1/namespaces",
                    Bytes::from(namespace.to_string()),
                )
                .await;
                let path = format!("/api/v1/namespaces/{CREATE_NAMESPACE}/pods");
                // Warm up allocator and caches before measuring.
                for index in 0..1_000 {
                    send(
                        Method::POST,
                        &path,
                        pod.body(&format!("warm-up-{index:06}")),
                    )
                    .await;
                }
                // As many creates in flight as the HTTP clients keep, so the thread seldom
                // sleeps between them (as a busy server's workers do not).
                let cpu_before = this_thread_cpu();
                let started = Instant::now();
                let clients = (0..CREATE_CLIENTS).map(|client| {
                    let (send, pod, path) = (&send, &pod, &path);
                    async move {
                        for index in (client..HANDLER_CREATES).step_by(CREATE_CLIENTS) {
                            let body = pod.body(&format!("storefront-5d8f7c9b4-{index:06}"));
                            send(Method::POST, path, body).await;
                        }
                    }
                });
                futures::future::join_all(clients).await;
                HandlerAlone {
                    creates: HANDLER_CREATES,
                    cpu: this_thread_cpu().saturating_sub(cpu_before),
                    elapsed: started.elapsed(),
                }
            })
        })
        .expect("starting the handler thread")
        .join()
        .expect("the handler thread")
}

/// The calling thread's time on a CPU, in nanoseconds from `/proc/thread-self/schedstat`
/// (the scheduler's own account, finer than the 10 ms ticks of `stat`).
fn this_thread_cpu() -> Duration {
    let schedstat = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap_or_default();
    let nanoseconds = schedstat
        .split_whitespace()
        .next()
        .and_then(|field| field.parse().ok())
        .unwrap_or(0);
    Duration::from_nanos(nanoseconds)
}

fn handler_rows(report: &mut String, handler: &HandlerAlone) {
    let _ = writeln!(
        report,
        "{:<58} {:>24}",
        "handler alone (no HTTP), memory: CPU µs per create",
        format!(
            "{:.1}",
            handler.cpu.as_secs_f64() * 1e6 / handler.creates.max(1) as f64
        )
    );
    let _ = writeln!(
        report,
        "{:<58} {:>24}",
        "  16 in flight, wall time per create",
        format!(
            "{:.1} µs",
            handler.elapsed.as_secs_f64() * 1e6 / handler.creates.max(1) as f64
        )
    );
}

/// Rate, failures and CPU per create by thread for one burst of creates.
fn creates_rows(report: &mut String, backend: &str, creates: &Creates, cpu: &[(Role, Duration)]) {
    let per_create = |role: Role| {
        let spent = cpu
            .iter()
            .find(|(candidate, _)| *candidate == role)
            .map_or(Duration::ZERO, |(_, spent)| *spent);
        format!(
            "{:.0}",
            spent.as_secs_f64() * 1e6 / creates.latencies.len().max(1) as f64
        )
    };
    let _ = writeln!(
        report,
        "{:<58} {:>24}",
        format!("{backend}: creates/s; writes per commit; failed"),
        format!(
            "{:.0}/s; {:.1}; {}",
            creates.per_second(),
            creates.writes as f64 / creates.commits.max(1) as f64,
            creates.failures
        )
    );
    let _ = writeln!(
        report,
        "{:<58} {:>24}",
        format!("{backend}: CPU µs per create: server / writer / clients"),
        format!(
            "{} / {} / {}",
            per_create(Role::Server),
            per_create(Role::StoreWriter),
            per_create(Role::Client)
        )
    );
}

/// Runs every phase and returns the results table.
async fn run(server: &RunningServer, memory_server: &RunningServer, database: &Path) -> String {
    let address = server.address;
    let mut report = String::new();
    let _ = writeln!(
        report,
        "\nhollow API server benchmark: redb (durable), HTTP/1.1 on {address}, \
         {} cores, load average at start {}",
        std::thread::available_parallelism().map_or(0, |cores| cores.get()),
        load_average()
    );
    for namespace in [LIST_NAMESPACE, CREATE_NAMESPACE, WATCH_NAMESPACE] {
        create_namespace(address, namespace).await;
        create_namespace(memory_server.address, namespace).await;
    }
    let pod = Arc::new(PodTemplate::new());
    if only_creates() {
        return creates_only(server, memory_server, &pod, report).await;
    }
    if only_watch() {
        return watch_only(server, memory_server, &pod, report).await;
    }

    // Memory first, while the process holds nothing but an empty store.
    progress("storing 10,000 pods (memory per pod)");
    let memory = measure_memory(server, database, &pod).await;
    progress("listing 10,000 pods");
    let lists = measure_lists(address).await;
    progress("creates with 16 clients");
    let cpu_before_creates = thread_cpu();
    let creates = measure_creates(server, &pod).await;
    let create_cpu = cpu_by_role(&cpu_before_creates, &thread_cpu());
    progress("write→event delay with 100 watchers");
    let watch = measure_watch_delay(address, &pod, WATCH_LOAD).await;

    progress("diagnostics");
    let lone_writes = measure_lone_store_writes(&server.store, &pod).await;
    let unwatched_load = WatchLoad {
        name: "unwatched",
        watchers: 0,
        writes: 300,
        ..WATCH_LOAD
    };
    let slow_load = WatchLoad {
        name: "slow",
        writes: 500,
        pace: Duration::from_millis(10),
        ..WATCH_LOAD
    };
    let unwatched = measure_watch_delay(address, &pod, unwatched_load).await;
    let slow_watch = measure_watch_delay(address, &pod, slow_load).await;
    // The same measurements with no fsync under the API server.
    let cpu_before_creates = thread_cpu();
    let memory_creates = measure_creates(memory_server, &pod).await;
    let memory_create_cpu = cpu_by_role(&cpu_before_creates, &thread_cpu());
    let memory_watch = measure_watch_delay(memory_server.address, &pod, WATCH_LOAD).await;
    let memory_unwatched = measure_watch_delay(memory_server.address, &pod, unwatched_load).await;
    progress("creates through the handler alone");
    let handler = measure_handler_alone(&pod);
    progress("done");

    let _ = writeln!(report, "load average at end {}\n", load_average());
    let _ = writeln!(report, "{:<58} {:>24}   goal", "measurement", "result");
    let _ = writeln!(report, "{}", "-".repeat(96));
    let mut row = |name: &str, value: String, goal: &str| {
        let _ = writeln!(report, "{name:<58} {value:>24}   {goal}");
    };

    row(
        &format!("creates/s, {CREATE_CLIENTS} clients, keep-alive"),
        format!("{:.0}/s", creates.per_second()),
        "≥ 10,000/s",
    );
    row(
        "  create latency p50 / p99",
        format!(
            "{} / {}",
            millis(percentile(&creates.latencies, 0.50)),
            millis(percentile(&creates.latencies, 0.99))
        ),
        "",
    );
    row(
        "  pods created / failed / wall time",
        format!(
            "{} / {} / {:.2} s",
            creates.latencies.len(),
            creates.failures,
            creates.elapsed.as_secs_f64()
        ),
        "",
    );
    row(
        "  group commit: writes per commit (commits)",
        format!(
            "{:.1} ({})",
            creates.writes as f64 / creates.commits.max(1) as f64,
            creates.commits
        ),
        "",
    );

    for (name, timings, goal) in [
        (
            "list 10,000 pods, JSON, best / median",
            &lists.whole,
            "≤ 50 ms",
        ),
        (
            "list 10,000 pods, pages of 500, best / median",
            &lists.paged,
            "",
        ),
        (
            "list 10,000 pods, Table, best / median",
            &lists.table,
            "info",
        ),
    ] {
        row(
            name,
            format!(
                "{} / {}",
                millis(percentile(timings, 0.0)),
                millis(percentile(timings, 0.5))
            ),
            goal,
        );
    }
    row(
        "  response size: JSON / Table",
        format!(
            "{:.1} MB / {:.1} MB",
            lists.whole_bytes as f64 / 1e6,
            lists.table_bytes as f64 / 1e6
        ),
        "",
    );

    row(
        &format!(
            "write→event, {} watchers, {:.0} writes/s, p50 / p99",
            WATCH_LOAD.watchers, watch.writes_per_second
        ),
        format!(
            "{} / {}",
            millis(percentile(&watch.delays, 0.50)),
            millis(percentile(&watch.delays, 0.99))
        ),
        "p99 ≤ 5 ms",
    );
    row(
        "  write→event max",
        millis(percentile(&watch.delays, 1.0)),
        "",
    );
    row(
        "  PATCH acknowledged p50 / p99",
        format!(
            "{} / {}",
            millis(percentile(&watch.acknowledgements, 0.50)),
            millis(percentile(&watch.acknowledgements, 0.99))
        ),
        "",
    );
    row(
        "  events received / expected",
        format!("{} / {}", watch.delays.len(), watch.expected),
        "",
    );

    let pods = STORED_PODS as f64;
    row(
        "RSS per stored pod (10,000 stored)",
        format!(
            "{:.2} KB",
            memory.after_store.saturating_sub(memory.before) as f64 / pods / 1024.0
        ),
        "info",
    );
    row(
        "  RSS before / after storing",
        format!("{} / {} MB", memory.before >> 20, memory.after_store >> 20),
        "",
    );
    row(
        "  RSS after 20 JSON / 20 paged / 20 Table lists",
        format!(
            "{} / {} / {} MB",
            lists.rss_after_whole >> 20,
            lists.rss_after_paged >> 20,
            lists.rss_after_table >> 20
        ),
        "",
    );
    row(
        "  redb file per stored pod",
        format!(
            "{:.2} KB",
            memory.file_after.saturating_sub(memory.file_before) as f64 / pods / 1024.0
        ),
        "",
    );
    row(
        "  pod as stored (JSON bytes)",
        format!("{} B", memory.stored_pod_bytes),
        "",
    );

    let _ = writeln!(
        report,
        "\ndiagnostics: where the time goes\n{}",
        "-".repeat(96)
    );
    let mut row = |name: &str, value: String| {
        let _ = writeln!(report, "{name:<58} {value:>24}");
    };
    row(
        "store write alone (1 writer, no HTTP) p50 / p99",
        format!(
            "{} / {}",
            millis(percentile(&lone_writes, 0.50)),
            millis(percentile(&lone_writes, 0.99))
        ),
    );
    for (backend, creates, cpu) in [
        (
            "redb, before any list",
            &memory.population,
            &memory.population_cpu,
        ),
        ("redb", &creates, &create_cpu),
        ("memory", &memory_creates, &memory_create_cpu),
    ] {
        creates_rows(&mut report, backend, creates, cpu);
    }
    handler_rows(&mut report, &handler);
    for (backend, load, watch) in [
        ("redb", WATCH_LOAD, &watch),
        ("redb", slow_load, &slow_watch),
        ("redb", unwatched_load, &unwatched),
        ("memory", WATCH_LOAD, &memory_watch),
        ("memory", unwatched_load, &memory_unwatched),
    ] {
        watch_rows(&mut report, backend, &load, watch);
    }
    report
}

/// Delay, acknowledgement and CPU rows for one write→event phase.
fn watch_rows(report: &mut String, backend: &str, load: &WatchLoad, watch: &WatchDelay) {
    let mut row = |name: &str, value: String| {
        let _ = writeln!(report, "{name:<58} {value:>24}");
    };
    let title = format!(
        "{backend}: {} watchers, {:.0} PATCH/s:",
        load.watchers, watch.writes_per_second
    );
    if load.watchers > 0 {
        row(
            &format!("{title} write→event p50 / p99 / max"),
            format!(
                "{} / {} / {}",
                millis(percentile(&watch.delays, 0.50)),
                millis(percentile(&watch.delays, 0.99)),
                millis(percentile(&watch.delays, 1.0))
            ),
        );
    }
    row(
        &format!("{title} PATCH answered p50 / p99"),
        format!(
            "{} / {}",
            millis(percentile(&watch.acknowledgements, 0.50)),
            millis(percentile(&watch.acknowledgements, 0.99))
        ),
    );
    let per_write = |role: Role| {
        watch
            .cpu_per_write
            .iter()
            .find(|(candidate, _)| *candidate == role)
            .map_or(0.0, |(_, spent)| spent.as_secs_f64() * 1e6)
    };
    row(
        &format!("{title} CPU µs per write: server / writer / clients"),
        format!(
            "{:.0} / {:.0} / {:.0}",
            per_write(Role::Server),
            per_write(Role::StoreWriter),
            per_write(Role::Client)
        ),
    );
}

/// Tells whoever watches the run how far it got; the results come at the end.
fn progress(phase: &str) {
    eprintln!("[{}] {phase}", jiff::Timestamp::now().strftime("%H:%M:%S"));
}

/// Sequential creates straight on the store, bypassing HTTP: the commit (fsync) latency the
/// API server's writes sit on.
async fn measure_lone_store_writes(store: &Store, pod: &PodTemplate) -> Vec<Duration> {
    const WRITES: usize = 300;
    let mut latencies = Vec::with_capacity(WRITES);
    for index in 0..WRITES {
        let value = pod.body(&format!("probe-{index}"));
        let started = Instant::now();
        store
            .create(
                format!("/hollow-bench/lone-writes/{index:06}"),
                hollow_store::constant(value),
            )
            .await
            .expect("a store write");
        latencies.push(started.elapsed());
    }
    latencies.sort_unstable();
    latencies
}

/// Who spent the CPU, told apart by thread name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    /// The API server's runtime: HTTP, routing, handlers, watch framing.
    Server,
    /// The store's writer thread: batching, redb commits, watch fan-out.
    StoreWriter,
    /// The benchmark's own clients.
    Client,
    Other,
}

impl Role {
    fn of_thread(name: &str) -> Role {
        // `comm` holds at most 15 bytes of the thread name.
        if name.starts_with("apiserver") {
            Role::Server
        } else if name.starts_with("hollow-store") {
            Role::StoreWriter
        } else if name.starts_with("bench-client") {
            Role::Client
        } else {
            Role::Other
        }
    }
}

/// CPU time (user + system) of every thread of this process, by thread id, with its role.
fn thread_cpu() -> Vec<(u64, Role, Duration)> {
    // USER_HZ, which Linux fixes at 100 for user space.
    const TICK: Duration = Duration::from_millis(10);
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    let mut threads = Vec::new();
    for task in tasks.flatten() {
        let Some(id) = task.file_name().to_str().and_then(|id| id.parse().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        // `pid (comm) state ppid …`: comm may hold spaces, so split at its closing paren.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let name = &stat[open + 1..close];
        let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        // Fields 14 and 15 of stat (utime, stime) are the 12th and 13th after comm.
        let ticks: u32 = fields
            .get(11..13)
            .map(|times| {
                times
                    .iter()
                    .filter_map(|time| time.parse::<u32>().ok())
                    .sum()
            })
            .unwrap_or(0);
        threads.push((id, Role::of_thread(name), TICK * ticks));
    }
    threads
}

/// CPU spent per role between two snapshots.
fn cpu_by_role(
    before: &[(u64, Role, Duration)],
    after: &[(u64, Role, Duration)],
) -> Vec<(Role, Duration)> {
    let mut spent: Vec<(Role, Duration)> = Vec::new();
    for (id, role, total) in after {
        let earlier = before
            .iter()
            .find(|(candidate, _, _)| candidate == id)
            .map_or(Duration::ZERO, |(_, _, earlier)| *earlier);
        let delta = total.saturating_sub(earlier);
        match spent.iter_mut().find(|(candidate, _)| candidate == role) {
            Some((_, sum)) => *sum += delta,
            None => spent.push((*role, delta)),
        }
    }
    spent
}

/// Pods for the benchmark: one serialised template with a placeholder where the name goes, so
/// that clients spend next to no time building bodies.
struct PodTemplate {
    before_name: String,
    after_name: String,
}

impl PodTemplate {
    const PLACEHOLDER: &str = "@@NAME@@";

    fn new() -> PodTemplate {
        let pod = json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": Self::PLACEHOLDER,
                "labels": {
                    "app": "storefront",
                    "tier": "frontend",
                    "pod-template-hash": "5d8f7c9b4",
                    "app.kubernetes.io/version": "1.4.2",
                },
                "annotations": {
                    "prometheus.io/scrape": "true",
                    "prometheus.io/port": "9090",
                },
            },
            "spec": {
                "containers": [{
                    "name": "storefront",
                    "image": "registry.example.com/shop/storefront:1.4.2",
                    "ports": [
                        {"name": "http", "containerPort": 8080, "protocol": "TCP"},
                        {"name": "metrics", "containerPort": 9090, "protocol": "TCP"},
                    ],
                    "env": [
                        {"name": "RUST_LOG", "value": "info"},
                        {"name": "LISTEN_ADDRESS", "value": "0.0.0.0:8080"},
                        {"name": "CATALOG_URL", "value": "http://catalog.shop.svc.cluster.local:8080"},
                    ],
                    "resources": {
                        "requests": {"cpu": "100m", "memory": "128Mi"},
                        "limits": {"memory": "256Mi"},
                    },
                    "readinessProbe": {
                        "httpGet": {"path": "/ready", "port": "http"},
                        "periodSeconds": 5,
                    },
                }],
                "restartPolicy": "Always",
                "terminationGracePeriodSeconds": 30,
                "dnsPolicy": "ClusterFirst",
                "serviceAccountName": "default",
                "nodeName": "node-a",
            },
        });
        let text = pod.to_string();
        let (before_name, after_name) = text
            .split_once(Self::PLACEHOLDER)
            .expect("the template holds the placeholder");
        PodTemplate {
            before_name: before_name.to_owned(),
            after_name: after_name.to_owned(),
        }
    }

    fn body(&self, name: &str) -> Bytes {
        let mut body =
            String::with_capacity(self.before_name.len() + name.len() + self.after_name.len());
        body.push_str(&self.before_name);
        body.push_str(name);
        body.push_str(&self.after_name);
        Bytes::from(body)
    }
}

/// One keep-alive HTTP/1.1 connection, used for one request at a time.
struct Connection {
    sender: SendRequest<Full<Bytes>>,
}

impl Connection {
    async fn open(address: SocketAddr) -> Connection {
        let stream = TcpStream::connect(address)
            .await
            .expect("connecting to the API server");
        // What any latency-minded client does; the server side is the server's business.
        stream.set_nodelay(true).expect("setting TCP_NODELAY");
        let (sender, connection) = http1::handshake(TokioIo::new(stream))
            .await
            .expect("HTTP/1.1 handshake");
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Connection { sender }
    }

    /// Sends a request and returns the response with its body still unread.
    async fn send(&mut self, request: Request<Full<Bytes>>) -> Response<Incoming> {
        self.sender
            .ready()
            .await
            .expect("the connection takes another request");
        self.sender
            .send_request(request)
            .await
            .expect("the API server answers")
    }

    /// Sends a request and reads the whole answer.
    async fn call(&mut self, request: Request<Full<Bytes>>) -> (StatusCode, Bytes) {
        let response = self.send(request).await;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .expect("reading the response body")
            .to_bytes();
        (status, body)
    }
}

fn request(method: Method, path: &str) -> http::request::Builder {
    Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, "127.0.0.1")
}

fn empty_get(path: &str, accept: &str) -> Request<Full<Bytes>> {
    request(Method::GET, path)
        .header(header::ACCEPT, accept)
        .body(Full::new(Bytes::new()))
        .expect("a valid request")
}

fn json_request(
    method: Method,
    path: &str,
    content_type: &str,
    body: Bytes,
) -> Request<Full<Bytes>> {
    request(method, path)
        .header(header::ACCEPT, "application/json")
        .header(header::CONTENT_TYPE, content_type)
        .body(Full::new(body))
        .expect("a valid request")
}

async fn create_namespace(address: SocketAddr, name: &str) {
    let mut connection = Connection::open(address).await;
    let body = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
    let (status, answer) = connection
        .call(json_request(
            Method::POST,
            "/api/v1/namespaces",
            "application/json",
            Bytes::from(body.to_string()),
        ))
        .await;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "creating namespace {name}: {}",
        String::from_utf8_lossy(&answer)
    );
}

/// What a burst of concurrent creates achieved.
struct Creates {
    elapsed: Duration,
    /// One per successful create.
    latencies: Vec<Duration>,
    failures: usize,
    /// Store writes and commits during the burst.
    writes: u64,
    commits: u64,
    /// The size of one created pod as the server returned it.
    stored_pod_bytes: usize,
}

impl Creates {
    fn per_second(&self) -> f64 {
        self.latencies.len() as f64 / self.elapsed.as_secs_f64()
    }
}

/// `clients` tasks, each on its own connection, create `total` pods between them as fast as
/// the server answers; stops early at `PHASE_LIMIT`.
async fn create_pods(
    server: &RunningServer,
    pod: &Arc<PodTemplate>,
    namespace: &str,
    clients: usize,
    total: usize,
) -> Creates {
    let mut connections = Vec::with_capacity(clients);
    for _ in 0..clients {
        connections.push(Connection::open(server.address).await);
    }
    let path: Arc<str> = Arc::from(format!("/api/v1/namespaces/{namespace}/pods"));
    let before: StoreStats = server.store.stats();
    let deadline = Instant::now() + PHASE_LIMIT;
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(clients);
    for (client, mut connection) in connections.into_iter().enumerate() {
        let pod = pod.clone();
        let path = path.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(total / clients + 1);
            let mut failures = 0;
            let mut stored_pod_bytes = 0;
            // Bodies are built as they are sent, so that the memory phase measures the
            // server's memory rather than a queue of request bodies.
            for index in (client..total).step_by(clients) {
                if Instant::now() > deadline {
                    break;
                }
                let body = pod.body(&format!("storefront-5d8f7c9b4-{index:06}"));
                let sent = Instant::now();
                let (status, answer) = connection
                    .call(json_request(Method::POST, &path, "application/json", body))
                    .await;
                let latency = sent.elapsed();
                if status == StatusCode::CREATED {
                    latencies.push(latency);
                    stored_pod_bytes = answer.len();
                } else {
                    if failures == 0 {
                        eprintln!(
                            "create failed with {status}: {}",
                            String::from_utf8_lossy(&answer)
                        );
                    }
                    failures += 1;
                }
            }
            (latencies, failures, stored_pod_bytes)
        }));
    }
    let mut creates = Creates {
        elapsed: Duration::ZERO,
        latencies: Vec::with_capacity(total),
        failures: 0,
        writes: 0,
        commits: 0,
        stored_pod_bytes: 0,
    };
    for task in tasks {
        let (latencies, failures, stored_pod_bytes) = task.await.expect("a create client");
        creates.latencies.extend(latencies);
        creates.failures += failures;
        creates.stored_pod_bytes = creates.stored_pod_bytes.max(stored_pod_bytes);
    }
    creates.elapsed = started.elapsed();
    let after = server.store.stats();
    creates.writes = after.writes - before.writes;
    creates.commits = after.commits - before.commits;
    creates.latencies.sort_unstable();
    creates
}

async fn measure_creates(server: &RunningServer, pod: &Arc<PodTemplate>) -> Creates {
    create_pods(server, pod, CREATE_NAMESPACE, CREATE_CLIENTS, CREATE_TOTAL).await
}

struct Memory {
    before: u64,
    after_store: u64,
    file_before: u64,
    file_after: u64,
    stored_pod_bytes: usize,
    /// The creates that stored the pods: the same load as the creates phase, but on a heap
    /// that no large list has fragmented yet.
    population: Creates,
    population_cpu: Vec<(Role, Duration)>,
}

/// Stores the pods the list phase reads, with RSS and file size around it.
async fn measure_memory(server: &RunningServer, database: &Path, pod: &Arc<PodTemplate>) -> Memory {
    let before = resident_bytes();
    let file_before = file_size(database);
    let cpu_before = thread_cpu();
    let creates = create_pods(server, pod, LIST_NAMESPACE, CREATE_CLIENTS, STORED_PODS).await;
    let population_cpu = cpu_by_role(&cpu_before, &thread_cpu());
    assert_eq!(
        creates.latencies.len(),
        STORED_PODS,
        "every pod of the list phase is stored"
    );
    Memory {
        before,
        after_store: resident_bytes(),
        file_before,
        file_after: file_size(database),
        stored_pod_bytes: creates.stored_pod_bytes,
        population: creates,
        population_cpu,
    }
}

struct Lists {
    whole: Vec<Duration>,
    rss_after_whole: u64,
    rss_after_paged: u64,
    rss_after_table: u64,
    paged: Vec<Duration>,
    table: Vec<Duration>,
    whole_bytes: usize,
    table_bytes: usize,
}

/// The part of a list a paging client reads: the continue token, and how many items came.
#[derive(Deserialize)]
struct ListPage {
    metadata: ListMetadata,
    items: Vec<IgnoredAny>,
}

#[derive(Deserialize)]
struct ListMetadata {
    #[serde(rename = "continue", default)]
    continue_token: Option<String>,
}

async fn measure_lists(address: SocketAddr) -> Lists {
    let deadline = Instant::now() + PHASE_LIMIT;
    let mut connection = Connection::open(address).await;
    let path = format!("/api/v1/namespaces/{LIST_NAMESPACE}/pods");

    let (status, body) = connection.call(empty_get(&path, "application/json")).await;
    assert_eq!(status, StatusCode::OK);
    let page: ListPage = serde_json::from_slice(&body).expect("a pod list");
    assert_eq!(page.items.len(), STORED_PODS, "the list holds every pod");
    let whole_bytes = body.len();
    let mut whole = Vec::with_capacity(LIST_RUNS);
    while whole.len() < LIST_RUNS && Instant::now() < deadline {
        let started = Instant::now();
        let (status, body) = connection.call(empty_get(&path, "application/json")).await;
        whole.push(started.elapsed());
        assert_eq!((status, body.len()), (StatusCode::OK, whole_bytes));
    }

    let rss_after_whole = resident_bytes();

    let mut paged = Vec::with_capacity(LIST_RUNS);
    while paged.len() < LIST_RUNS && Instant::now() < deadline {
        let started = Instant::now();
        let mut continue_token: Option<String> = None;
        let mut items = 0;
        loop {
            let page_path = match &continue_token {
                None => format!("{path}?limit={PAGE_SIZE}"),
                Some(token) => format!("{path}?limit={PAGE_SIZE}&continue={}", query_escape(token)),
            };
            let (status, body) = connection
                .call(empty_get(&page_path, "application/json"))
                .await;
            assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
            let page: ListPage = serde_json::from_slice(&body).expect("a pod list page");
            items += page.items.len();
            continue_token = page
                .metadata
                .continue_token
                .filter(|token| !token.is_empty());
            if continue_token.is_none() {
                break;
            }
        }
        paged.push(started.elapsed());
        assert_eq!(items, STORED_PODS, "paging reaches every pod once");
    }

    let rss_after_paged = resident_bytes();

    let (status, body) = connection.call(empty_get(&path, TABLE_ACCEPT)).await;
    assert_eq!(status, StatusCode::OK);
    let table: Value = serde_json::from_slice(&body).expect("a Table");
    assert_eq!(table["kind"], "Table", "the server answered with a Table");
    assert_eq!(
        table["rows"].as_array().map(Vec::len),
        Some(STORED_PODS),
        "the Table has a row per pod"
    );
    let table_bytes = body.len();
    let mut table = Vec::with_capacity(LIST_RUNS);
    while table.len() < LIST_RUNS && Instant::now() < deadline {
        let started = Instant::now();
        let (status, _) = connection.call(empty_get(&path, TABLE_ACCEPT)).await;
        table.push(started.elapsed());
        assert_eq!(status, StatusCode::OK);
    }

    let rss_after_table = resident_bytes();

    for timings in [&mut whole, &mut paged, &mut table] {
        timings.sort_unstable();
    }
    Lists {
        whole,
        rss_after_whole,
        rss_after_paged,
        rss_after_table,
        paged,
        table,
        whole_bytes,
        table_bytes,
    }
}

/// Continue tokens are opaque; escape whatever is not safe in a query value.
fn query_escape(value: &str) -> String {
    let mut escaped = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
            escaped.push(byte as char);
        } else {
            let _ = write!(escaped, "%{byte:02X}");
        }
    }
    escaped
}

struct WatchDelay {
    /// One per (watcher, write) pair whose event arrived.
    delays: Vec<Duration>,
    acknowledgements: Vec<Duration>,
    expected: usize,
    /// The rate the writes went at: at most the load's pace, less when answers come slower.
    writes_per_second: f64,
    /// CPU per write while the writes went on and the watchers read them, by role.
    cpu_per_write: Vec<(Role, Duration)>,
}

/// A watcher's view: when it read the event of each write, by sequence number.
type Sightings = Vec<(usize, Instant)>;

/// How hard the watch phase pushes.
#[derive(Clone, Copy)]
struct WatchLoad {
    /// Tells runs on one server apart: each PATCHes its own pod.
    name: &'static str,
    watchers: usize,
    writes: usize,
    /// The time between the starts of two writes (when the previous one has been answered).
    pace: Duration,
}

async fn measure_watch_delay(
    address: SocketAddr,
    pod: &PodTemplate,
    load: WatchLoad,
) -> WatchDelay {
    let deadline = Instant::now() + PHASE_LIMIT;
    let mut writer = Connection::open(address).await;
    let pods = format!("/api/v1/namespaces/{WATCH_NAMESPACE}/pods");
    let watched = format!("watched-{}", load.name);
    let (status, created) = writer
        .call(json_request(
            Method::POST,
            &pods,
            "application/json",
            pod.body(&watched),
        ))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let created: Value = serde_json::from_slice(&created).expect("the created pod");
    let resource_version = created["metadata"]["resourceVersion"]
        .as_str()
        .expect("a resourceVersion")
        .to_owned();

    // Sequence 0 is a warm-up write: once every watcher has seen it, every stream is live.
    let warmed_up = Arc::new(AtomicUsize::new(0));
    let mut watchers = Vec::with_capacity(load.watchers);
    for _ in 0..load.watchers {
        let path = format!("{pods}?watch=true&resourceVersion={resource_version}");
        let warmed_up = warmed_up.clone();
        watchers.push(tokio::spawn(async move {
            let mut connection = Connection::open(address).await;
            let response = connection.send(empty_get(&path, "application/json")).await;
            assert_eq!(response.status(), StatusCode::OK, "the watch starts");
            read_sightings(response.into_body(), &warmed_up, load.writes, deadline).await
        }));
    }

    let patch_path = format!("{pods}/{watched}");
    let patch = |sequence: usize| {
        let body =
            json!({"metadata": {"annotations": {SEQUENCE_ANNOTATION: sequence.to_string()}}});
        json_request(
            Method::PATCH,
            &patch_path,
            "application/merge-patch+json",
            Bytes::from(body.to_string()),
        )
    };
    let (status, _) = writer.call(patch(0)).await;
    assert_eq!(status, StatusCode::OK);
    while warmed_up.load(Ordering::Relaxed) < load.watchers {
        assert!(
            Instant::now() < deadline,
            "only {} of {} watchers saw the warm-up write",
            warmed_up.load(Ordering::Relaxed),
            load.watchers
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    // Index = sequence number; sequence 0 is the warm-up and not measured.
    let cpu_before = thread_cpu();
    let mut sent_at = Vec::with_capacity(load.writes + 1);
    sent_at.push(Instant::now());
    let mut acknowledgements = Vec::with_capacity(load.writes);
    let mut pace = tokio::time::interval(load.pace);
    pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for sequence in 1..=load.writes {
        pace.tick().await;
        if Instant::now() > deadline {
            break;
        }
        let request = patch(sequence);
        let sent = Instant::now();
        sent_at.push(sent);
        let (status, body) = writer.call(request).await;
        acknowledgements.push(sent.elapsed());
        assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    }
    let writing = sent_at[0].elapsed();
    let writes = sent_at.len() - 1;

    let mut delays = Vec::with_capacity(writes * load.watchers);
    let watchers = futures::future::join_all(watchers).await;
    for watcher in watchers {
        let sightings = watcher.expect("a watcher");
        for (sequence, seen) in sightings {
            if (1..=writes).contains(&sequence) {
                delays.push(seen.saturating_duration_since(sent_at[sequence]));
            }
        }
    }
    delays.sort_unstable();
    acknowledgements.sort_unstable();
    WatchDelay {
        delays,
        acknowledgements,
        expected: writes * load.watchers,
        writes_per_second: writes as f64 / writing.as_secs_f64(),
        cpu_per_write: cpu_by_role(&cpu_before, &thread_cpu())
            .into_iter()
            .map(|(role, spent)| (role, spent / writes.max(1) as u32))
            .collect(),
    }
}

/// Reads event lines until the last write's event, the end of the stream or `deadline`.
async fn read_sightings(
    mut body: Incoming,
    warmed_up: &AtomicUsize,
    last_sequence: usize,
    deadline: Instant,
) -> Sightings {
    let mut sightings = Vec::with_capacity(last_sequence + 1);
    let mut pending = BytesMut::new();
    loop {
        let Ok(frame) = tokio::time::timeout_at(deadline.into(), body.frame()).await else {
            return sightings;
        };
        let Some(Ok(frame)) = frame else {
            return sightings;
        };
        // One timestamp per read: every line in it was on the socket by now.
        let seen = Instant::now();
        let Ok(data) = frame.into_data() else {
            continue;
        };
        pending.extend_from_slice(&data);
        while let Some(end) = pending.iter().position(|byte| *byte == b'\n') {
            let line = pending.split_to(end + 1);
            let Some(sequence) = sequence_of(&line) else {
                continue;
            };
            if sequence == 0 {
                warmed_up.fetch_add(1, Ordering::Relaxed);
            }
            sightings.push((sequence, seen));
            if sequence == last_sequence {
                return sightings;
            }
        }
    }
}

/// The sequence annotation's value in a watch event line, without parsing the whole object.
fn sequence_of(line: &[u8]) -> Option<usize> {
    let line = std::str::from_utf8(line).ok()?;
    let marker = format!("\"{SEQUENCE_ANNOTATION}\":\"");
    let start = line.find(&marker)? + marker.len();
    let digits = &line[start..];
    let end = digits.find('"')?;
    digits[..end].parse().ok()
}

/// The process's resident set size, from `/proc/self/status`.
fn resident_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .map_or(0, |kilobytes| kilobytes * 1024)
}

fn file_size(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |metadata| metadata.len())
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|_| "unknown".into())
}

/// The sample at `quantile` (0 = best, 1 = worst) of sorted samples.
fn percentile(sorted: &[Duration], quantile: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() as f64 - 1.0) * quantile).round() as usize;
    sorted[index]
}

fn millis(duration: Duration) -> String {
    format!("{:.2} ms", duration.as_secs_f64() * 1_000.0)
}
