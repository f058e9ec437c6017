//! Write→answer latency: how long after the API acknowledges an EndpointSlice write does the
//! DNS server answer with the change?
//!
//!     cargo run --release -p hollow-dns --example update_latency -- [CLUSTER.yaml]
//!
//! (`crates/dns/bench/update_latency.sh` generates the bench kit's cluster and runs this.)
//!
//! 1. Starts hollow's API server in-process (in-memory store, loopback port) and creates the
//!    cluster's Namespaces, Services and EndpointSlices through it (64 requests in flight).
//! 2. Starts the DNS server as a child process (this binary with `--dns-child`), which lists
//!    and watches the API like `hollow up` does, so its resident memory is its own; waits for
//!    its first answer.
//! 3. Idle: `CHANGES` times, flips the ready condition of one endpoint of a headless service
//!    (PUT of the slice), takes the time the 200 arrives, then queries the endpoint's name over
//!    UDP in a tight loop until the answer reflects the flip (NXDOMAIN ↔ an address).
//! 4. Loaded: the same while other slices get `LOAD_RATE` writes per second in total.
//! 5. Prints p50/p99/max of both, the full-rebuild time and incremental update times from the
//!    server's metrics, and the child's resident memory; stops the child.
//! 6. With `HOLLOW` set to a `hollow` binary: starts `hollow dns` against the same API server
//!    (through a kubeconfig file), waits for its first answer and prints its resident memory
//!    after sync, the zone breakdown from its metrics and the mappings that hold it
//!    (`/proc/PID/smaps`); then writes `CHURN` slices at `LOAD_RATE` per second and prints
//!    the same again. This is the deployed program, with jemalloc as allocator, where the
//!    child above runs on glibc malloc inside this benchmark's binary.
//!
//! Environment: CHANGES (default 300), LOAD_RATE (100), CLUSTER (path; else the argument, else
//! /tmp/hollow-dns-bench-data/k8s/cluster.yaml), HOLLOW (path of a `hollow` binary; unset to
//! skip step 6), LATENCY (0 skips steps 2–5, for memory alone), CHURN (slice writes after
//! step 6's sync, default 1000), HOLD (seconds to keep `hollow dns` running at the end, for a
//! look at it by hand). `_RJEM_MALLOC_CONF=stats_print:true` in the environment makes
//! `hollow dns` print jemalloc's statistics when it stops.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use hollow_apiserver::{ApiServer, ApiServerConfig};
use hollow_dns::{DnsConfig, DnsServer, Snapshot, Upstreams};
use hollow_store::{Store, StoreOptions};
use k8s_openapi::api::core::v1::{Namespace, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Api;
use kube::api::PostParams;
use serde_json::Value;

const CLUSTER_DEFAULT: &str = "/tmp/hollow-dns-bench-data/k8s/cluster.yaml";
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

fn main() {
    let arguments: Vec<String> = std::env::args().skip(1).collect();
    if arguments.first().map(String::as_str) == Some("--dns-child") {
        dns_child(&arguments[1]);
        return;
    }
    let path = std::env::var("CLUSTER")
        .ok()
        .or_else(|| arguments.first().cloned())
        .unwrap_or_else(|| CLUSTER_DEFAULT.to_owned());
    let changes: usize = env_number("CHANGES", 300);
    let load_rate: u64 = env_number("LOAD_RATE", 100);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(benchmark(&path, changes, load_rate));
}

fn env_number<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(default)
}

fn client(address: SocketAddr) -> kube::Client {
    let url: http::Uri = format!("http://{address}").parse().expect("url");
    let mut config = kube::Config::new(url);
    config.default_namespace = "default".into();
    kube::Client::try_from(config).expect("client")
}

/// The DNS side: serve and watch the API server at the given address until stdin closes.
fn dns_child(api: &str) {
    hollow_dns::share_one_heap_arena();
    let api: SocketAddr = api.parse().expect("API address");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let config = DnsConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            upstreams: Upstreams::Disabled,
            udp_workers: 1,
            metrics_listen: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
            ..DnsConfig::default()
        };
        let server = DnsServer::start(
            config.server_settings().expect("settings"),
            Snapshot::unsynced(&config.snapshot_settings()),
        )
        .await
        .expect("DNS server starts");
        println!(
            "{} {}",
            server.udp_addr(),
            server.metrics_addr().expect("metrics address")
        );
        std::io::stdout().flush().expect("stdout");
        // The zone's own account of its heap, whenever it changes.
        std::thread::spawn(|| {
            let mut shown = String::new();
            loop {
                std::thread::sleep(Duration::from_millis(500));
                if let Some(report) = hollow_dns::zone_memory_report() {
                    let text = report.to_string();
                    if text != shown {
                        eprintln!("DNS child zone heap: {text}; {}", allocator_usage());
                        shown = text;
                    }
                }
            }
        });
        let parent_gone = async {
            let _ = tokio::task::spawn_blocking(|| {
                let mut sink = Vec::new();
                let _ = std::io::stdin().read_to_end(&mut sink);
            })
            .await;
        };
        hollow_dns::watch(&server, client(api), &config, parent_gone)
            .await
            .expect("watch");
        server.shutdown().await;
    });
}

/// What glibc's allocator holds over all arenas: bytes in use (small chunks and mmapped
/// blocks) and bytes free but kept, so that heap fragmentation shows apart from live data.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn allocator_usage() -> String {
    #[repr(C)]
    struct MallInfo2 {
        arena: usize,
        ordblks: usize,
        smblks: usize,
        hblks: usize,
        hblkhd: usize,
        usmblks: usize,
        fsmblks: usize,
        uordblks: usize,
        fordblks: usize,
        keepcost: usize,
    }
    unsafe extern "C" {
        fn mallinfo2() -> MallInfo2;
    }
    // SAFETY: mallinfo2 (glibc ≥ 2.33) only reads the allocator's own statistics and returns
    // them by value; the struct above matches its C layout (ten size_t fields).
    let info = unsafe { mallinfo2() };
    let mib = |bytes: usize| bytes as f64 / (1024.0 * 1024.0);
    format!(
        "malloc: {:.1} MiB in use ({:.1} in mmapped blocks), {:.1} MiB free but kept",
        mib(info.uordblks + info.hblkhd),
        mib(info.hblkhd),
        mib(info.fordblks)
    )
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn allocator_usage() -> String {
    String::new()
}

struct Cluster {
    namespaces: Vec<Namespace>,
    services: Vec<Service>,
    slices: Vec<EndpointSlice>,
}

fn load(path: &str) -> Cluster {
    let text = std::fs::read_to_string(path).unwrap_or_else(|error| {
        panic!("read {path}: {error} (generate it with the bench kit's gen_cluster.py)")
    });
    let mut options = serde_saphyr::Options::default();
    options.budget = None;
    let documents: Vec<Value> =
        serde_saphyr::from_multiple_with_options(&text, options).expect("valid YAML");
    let mut cluster = Cluster {
        namespaces: Vec::new(),
        services: Vec::new(),
        slices: Vec::new(),
    };
    for document in documents {
        match document.get("kind").and_then(Value::as_str) {
            Some("Namespace") => cluster
                .namespaces
                .push(serde_json::from_value(document).expect("Namespace")),
            Some("Service") => {
                let mut service: Service = serde_json::from_value(document).expect("Service");
                // The API server allocates from one IPv4 range; keep dual-stack services'
                // IPv4 address only (their AAAA records play no part in this benchmark).
                if let Some(spec) = &mut service.spec
                    && spec.ip_family_policy.as_deref() != Some("SingleStack")
                {
                    spec.cluster_ips = spec.cluster_ip.clone().map(|ip| vec![ip]);
                    spec.ip_families = Some(vec!["IPv4".to_owned()]);
                    spec.ip_family_policy = Some("SingleStack".to_owned());
                }
                cluster.services.push(service);
            }
            Some("EndpointSlice") => cluster
                .slices
                .push(serde_json::from_value(document).expect("EndpointSlice")),
            _ => {}
        }
    }
    cluster
}

async fn create_all<K>(client: &kube::Client, objects: Vec<K>)
where
    K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::Serialize
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    futures::stream::iter(objects)
        .map(|object| {
            let api: Api<K> = Api::namespaced(
                client.clone(),
                object.meta().namespace.as_deref().unwrap_or("default"),
            );
            async move {
                match api.create(&PostParams::default(), &object).await {
                    Err(kube::Error::Api(status)) if status.code == 409 => {}
                    result => {
                        result.expect("create");
                    }
                }
            }
        })
        .buffer_unordered(64)
        .collect::<Vec<()>>()
        .await;
}

/// A client for one name: sends A queries and reads the answer's rcode and answer count.
struct Prober {
    socket: UdpSocket,
    query: Vec<u8>,
}

impl Prober {
    fn new(server: SocketAddr, name: &str) -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
        socket.connect(server).expect("connect");
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .expect("timeout");
        let mut query = vec![0, 0, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        for label in name.split('.') {
            query.push(label.len() as u8);
            query.extend_from_slice(label.as_bytes());
        }
        query.push(0);
        query.extend_from_slice(&[0, 1, 0, 1]);
        Self { socket, query }
    }

    /// (rcode, answer count), or `None` when no answer came.
    fn ask(&mut self, id: u16) -> Option<(u8, u16)> {
        self.query[..2].copy_from_slice(&id.to_be_bytes());
        self.socket.send(&self.query).ok()?;
        let mut buffer = [0u8; 1500];
        loop {
            let len = self.socket.recv(&mut buffer).ok()?;
            if len >= 12 && buffer[..2] == id.to_be_bytes() {
                return Some((buffer[3] & 0x0F, u16::from_be_bytes([buffer[6], buffer[7]])));
            }
        }
    }

    /// Asks until the name exists (`true`) or is NXDOMAIN (`false`) as wanted; the time of the
    /// first such answer, or `None` after [`ANSWER_TIMEOUT`].
    fn until(&mut self, want_present: bool) -> Option<Instant> {
        let deadline = Instant::now() + ANSWER_TIMEOUT;
        let mut id = 1u16;
        while Instant::now() < deadline {
            id = id.wrapping_add(1);
            if let Some((rcode, answers)) = self.ask(id) {
                let present = rcode == 0 && answers > 0;
                let absent = rcode == 3;
                if (want_present && present) || (!want_present && absent) {
                    return Some(Instant::now());
                }
            }
        }
        None
    }
}

/// The DNS name of endpoint `index` of a slice of `service`, as the server publishes it.
fn endpoint_name(slice: &EndpointSlice, index: usize) -> String {
    let endpoint = &slice.endpoints.as_ref().expect("endpoints")[index];
    let label = endpoint.hostname.clone().unwrap_or_else(|| {
        hollow_dns::records::dashed_address(endpoint.addresses[0].parse().expect("address"))
    });
    let labels = slice.metadata.labels.as_ref().expect("labels");
    format!(
        "{label}.{}.{}.svc.cluster.local",
        labels[hollow_dns::records::SERVICE_NAME_LABEL],
        slice.metadata.namespace.as_deref().expect("namespace")
    )
}

/// Flips the ready condition of endpoint `index`; returns the new readiness.
fn flip(slice: &mut EndpointSlice, index: usize) -> bool {
    let endpoint = &mut slice.endpoints.as_mut().expect("endpoints")[index];
    let conditions = endpoint.conditions.get_or_insert_default();
    let ready = !conditions.ready.unwrap_or(true);
    conditions.ready = Some(ready);
    conditions.serving = Some(ready);
    ready
}

async fn write(client: &kube::Client, slice: &EndpointSlice) -> EndpointSlice {
    let api: Api<EndpointSlice> = Api::namespaced(
        client.clone(),
        slice.metadata.namespace.as_deref().expect("namespace"),
    );
    api.replace(
        slice.metadata.name.as_deref().expect("name"),
        &PostParams::default(),
        slice,
    )
    .await
    .expect("replace")
}

/// One measured change per slice in turn: returns the write→answer latencies.
async fn measure(
    client: &kube::Client,
    dns: SocketAddr,
    slices: &mut [EndpointSlice],
    changes: usize,
    pause: Duration,
    failures: &mut usize,
) -> Vec<Duration> {
    let mut latencies = Vec::with_capacity(changes);
    for change in 0..changes {
        let count = slices.len();
        let slice = &mut slices[change % count];
        let index = (change / count) % slice.endpoints.as_ref().map_or(1, Vec::len);
        let name = endpoint_name(slice, index);
        let ready = flip(slice, index);
        *slice = write(client, slice).await;
        let acknowledged = Instant::now();
        let answered = tokio::task::spawn_blocking(move || Prober::new(dns, &name).until(ready))
            .await
            .expect("prober");
        match answered {
            Some(answered) => latencies.push(answered.saturating_duration_since(acknowledged)),
            None => *failures += 1,
        }
        tokio::time::sleep(pause).await;
    }
    latencies
}

fn percentile(sorted: &[Duration], percent: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((sorted.len() as f64) * percent / 100.0).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn summary(label: &str, mut latencies: Vec<Duration>, failures: usize) {
    latencies.sort();
    println!(
        "{label}: {} changes, p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms, mean {:.3} ms{}",
        latencies.len(),
        percentile(&latencies, 50.0).as_secs_f64() * 1e3,
        percentile(&latencies, 99.0).as_secs_f64() * 1e3,
        latencies.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
        latencies.iter().sum::<Duration>().as_secs_f64() * 1e3 / latencies.len().max(1) as f64,
        if failures > 0 {
            format!(", {failures} NOT SEEN within {ANSWER_TIMEOUT:?}")
        } else {
            String::new()
        }
    );
}

fn scrape(metrics: SocketAddr) -> String {
    let mut stream = TcpStream::connect(metrics).expect("metrics endpoint");
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .expect("request");
    let mut text = String::new();
    stream.read_to_string(&mut text).expect("response");
    text
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|line| {
            let (key, value) = line.split_once(' ')?;
            (key == name).then(|| value.trim().parse().ok()).flatten()
        })
        .unwrap_or(f64::NAN)
}

/// (current, peak, anonymous, file-backed) resident memory of a process, in MiB.
fn resident_memory(pid: u32) -> (f64, f64, f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next()?.parse::<f64>().ok())
            .map_or(f64::NAN, |kib| kib / 1024.0)
    };
    (
        field("VmRSS:"),
        field("VmHWM:"),
        field("RssAnon:"),
        field("RssFile:"),
    )
}

struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        drop(self.0.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn benchmark(path: &str, changes: usize, load_rate: u64) {
    let started = Instant::now();
    let cluster = load(path);
    eprintln!(
        "parsed {} namespaces, {} services, {} slices in {:?}",
        cluster.namespaces.len(),
        cluster.services.len(),
        cluster.slices.len(),
        started.elapsed()
    );

    let store = Store::in_memory(StoreOptions::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let api_address = listener.local_addr().expect("address");
    // The kit's ClusterIPs are in 10.96.0.0/12, as in kubeadm clusters.
    let mut api_config = ApiServerConfig::new(api_address);
    api_config.service_cidr = "10.96.0.0/12".parse().expect("CIDR");
    let api_server = ApiServer::with_config(store, api_config)
        .await
        .expect("API server");
    let (stop_api, api_stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(api_server.serve(listener, async {
        let _ = api_stopped.await;
    }));
    let client = client(api_address);

    let started = Instant::now();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    for namespace in &cluster.namespaces {
        match namespaces.create(&PostParams::default(), namespace).await {
            // The API server creates default, kube-system and kube-public itself.
            Err(kube::Error::Api(status)) if status.code == 409 => {}
            result => {
                result.expect("create namespace");
            }
        }
    }
    let headless_slices: Vec<EndpointSlice> = cluster
        .slices
        .iter()
        .filter(|slice| {
            slice
                .metadata
                .name
                .as_deref()
                .is_some_and(|name| name.starts_with("hl-"))
                && slice
                    .endpoints
                    .as_ref()
                    .is_some_and(|endpoints| endpoints.len() >= 2)
        })
        .cloned()
        .collect();
    create_all(&client, cluster.services).await;
    create_all(&client, cluster.slices).await;
    eprintln!(
        "created the cluster through the API in {:?}",
        started.elapsed()
    );
    assert!(
        headless_slices.len() >= 20,
        "the cluster has too few headless slices"
    );

    if env_number("LATENCY", 1) != 0 {
        latency(
            path,
            &client,
            api_address,
            &headless_slices,
            changes,
            load_rate,
        )
        .await;
    }
    if let Ok(hollow) = std::env::var("HOLLOW") {
        standalone_memory(&hollow, &client, api_address, &headless_slices, load_rate).await;
    }
    let _ = stop_api.send(());
}

/// Steps 2–5: the DNS child's write→answer latency, idle and loaded, and its memory.
async fn latency(
    path: &str,
    client: &kube::Client,
    api_address: SocketAddr,
    headless_slices: &[EndpointSlice],
    changes: usize,
    load_rate: u64,
) {
    let started = Instant::now();
    let mut child = Command::new(std::env::current_exe().expect("own path"))
        .args(["--dns-child", &api_address.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the DNS child");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("DNS child prints its addresses");
    let child = ChildGuard(child);
    let pid = child.0.id();
    let mut addresses = line.split_whitespace();
    let dns: SocketAddr = addresses.next().expect("DNS address").parse().expect("DNS");
    let metrics: SocketAddr = addresses.next().expect("metrics").parse().expect("metrics");

    assert!(
        wait_for_first_sync(dns, &headless_slices[0]).await,
        "the DNS server never answered from the cluster"
    );
    let sync_time = started.elapsed();
    let text = scrape(metrics);
    let synced_memory = resident_memory(pid);

    // Measured slices come from the first headless services, load from the rest.
    let (measured, loaded) = headless_slices.split_at(10);
    let mut measured = measured.to_vec();
    let mut failures = 0;
    let idle = measure(
        client,
        dns,
        &mut measured,
        changes,
        Duration::from_millis(10),
        &mut failures,
    )
    .await;
    let idle_failures = std::mem::replace(&mut failures, 0);

    let running = Arc::new(AtomicBool::new(true));
    let background_writes = Arc::new(AtomicU64::new(0));
    let load = tokio::spawn({
        let client = client.clone();
        let running = running.clone();
        let background_writes = background_writes.clone();
        let loaded = loaded.to_vec();
        async move {
            let mut interval =
                tokio::time::interval(Duration::from_secs_f64(1.0 / load_rate.max(1) as f64));
            let mut next = 0usize;
            // Each slice is written by one task at a time, in turn.
            let slots: Vec<Arc<tokio::sync::Mutex<EndpointSlice>>> = loaded
                .into_iter()
                .map(|slice| Arc::new(tokio::sync::Mutex::new(slice)))
                .collect();
            while running.load(Ordering::Relaxed) {
                interval.tick().await;
                let slot = slots[next % slots.len()].clone();
                next += 1;
                let client = client.clone();
                let background_writes = background_writes.clone();
                tokio::spawn(async move {
                    let mut slice = slot.lock().await;
                    let index = background_writes.load(Ordering::Relaxed) as usize
                        % slice.endpoints.as_ref().map_or(1, Vec::len);
                    flip(&mut slice, index);
                    *slice = write(&client, &slice).await;
                    background_writes.fetch_add(1, Ordering::Relaxed);
                });
            }
        }
    });
    let load_started = Instant::now();
    let loaded_latencies = measure(
        client,
        dns,
        &mut measured,
        changes,
        Duration::from_millis(100),
        &mut failures,
    )
    .await;
    running.store(false, Ordering::Relaxed);
    let _ = load.await;
    let load_seconds = load_started.elapsed().as_secs_f64();
    let total_writes =
        background_writes.load(Ordering::Relaxed) as f64 + loaded_latencies.len() as f64;

    let after = scrape(metrics);
    let end_memory = resident_memory(pid);
    println!("== hollow-dns write→answer latency ({path}) ==");
    println!(
        "DNS child: first full sync answered {:.2} s after start; full rebuild {:.1} ms",
        sync_time.as_secs_f64(),
        metric(&text, "hollow_dns_snapshot_rebuild_seconds") * 1e3
    );
    summary("idle", idle, idle_failures);
    summary(
        &format!(
            "under load ({:.0} slice writes/s in total)",
            total_writes / load_seconds
        ),
        loaded_latencies,
        failures,
    );
    let updates = metric(&after, "hollow_dns_snapshot_updates_total");
    println!(
        "incremental updates: {updates} published, mean {:.1} µs, max {:.1} µs, last {:.1} µs",
        metric(&after, "hollow_dns_snapshot_update_seconds_sum") * 1e6 / updates,
        metric(&after, "hollow_dns_snapshot_update_seconds_max") * 1e6,
        metric(&after, "hollow_dns_snapshot_update_seconds") * 1e6,
    );
    println!(
        "snapshot: {} names, {:.1} MiB index",
        metric(&after, "hollow_dns_snapshot_names"),
        metric(&after, "hollow_dns_snapshot_index_bytes") / (1024.0 * 1024.0)
    );
    println!(
        "DNS child resident memory: {:.1} MiB after sync (peak {:.1} MiB), {:.1} MiB at the end (peak {:.1} MiB)",
        synced_memory.0, synced_memory.1, end_memory.0, end_memory.1
    );
    println!(
        "  of which anonymous (heap, stacks) {:.1} / {:.1} MiB, file-backed (the binary) {:.1} / {:.1} MiB",
        synced_memory.2, end_memory.2, synced_memory.3, end_memory.3
    );
    println!("DNS child zone heap: {}", zone_heap(&after));
    drop(child);
}

/// Whether the first endpoint address at `index` of `slice` is ready (unset counts as ready).
fn endpoint_ready(slice: &EndpointSlice, index: usize) -> bool {
    slice.endpoints.as_ref().expect("endpoints")[index]
        .conditions
        .as_ref()
        .and_then(|conditions| conditions.ready)
        .unwrap_or(true)
}

/// Polls the DNS server at `dns` (for up to 300 s) until the first endpoint of `slice`
/// answers as the API has it: the server has finished its first sync.
async fn wait_for_first_sync(dns: SocketAddr, slice: &EndpointSlice) -> bool {
    let name = endpoint_name(slice, 0);
    let ready = endpoint_ready(slice, 0);
    tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(300);
        let mut prober = Prober::new(dns, &name);
        while Instant::now() < deadline {
            if prober.until(ready).is_some() {
                return true;
            }
        }
        false
    })
    .await
    .expect("sync wait")
}

/// The zone's heap breakdown from the `hollow_dns_zone_heap_bytes` series of a scrape, in MiB.
fn zone_heap(metrics: &str) -> String {
    let parts: Vec<String> = metrics
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("hollow_dns_zone_heap_bytes{part=\"")?;
            let (part, value) = rest.split_once("\"} ")?;
            let bytes: f64 = value.trim().parse().ok()?;
            Some(format!("{part} {:.2}", bytes / (1024.0 * 1024.0)))
        })
        .collect();
    if parts.is_empty() {
        "not reported".to_owned()
    } else {
        parts.join(", ")
    }
}

/// A loopback port free for both UDP and TCP at the time of asking.
fn free_port() -> u16 {
    loop {
        let udp = UdpSocket::bind("127.0.0.1:0").expect("bind UDP");
        let port = udp.local_addr().expect("address").port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// Step 6: the resident memory of the real `hollow dns` against the same API server: after
/// its first sync, then after `CHURN` slice writes at `load_rate` per second (the memory an
/// incremental update leaves behind), with the mappings that hold it.
async fn standalone_memory(
    hollow: &str,
    client: &kube::Client,
    api: SocketAddr,
    headless_slices: &[EndpointSlice],
    load_rate: u64,
) {
    let directory = tempfile::tempdir().expect("temporary directory");
    let kubeconfig = directory.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: bench\n  cluster:\n    server: http://{api}\n\
             users:\n- name: bench\n  user: {{}}\ncontexts:\n- name: bench\n  context:\n    cluster: bench\n    user: bench\n\
             current-context: bench\n"
        ),
    )
    .expect("write kubeconfig");
    let dns = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let metrics = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let started = Instant::now();
    let child = Command::new(hollow)
        .arg("dns")
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .args(["--listen", &dns.to_string(), "--upstream", "none"])
        .args(["--dns-metrics-listen", &metrics.to_string()])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap_or_else(|error| panic!("start {hollow} dns: {error}"));
    // SIGTERM first, so that a `_RJEM_MALLOC_CONF=stats_print:true` in the environment gets
    // jemalloc's statistics printed at exit.
    let child = TerminatedChild(ChildGuard(child));
    let pid = child.0.0.id();
    assert!(
        wait_for_first_sync(dns, &headless_slices[0]).await,
        "hollow dns never answered from the cluster"
    );
    let sync_time = started.elapsed();
    // The zone's memory report and jemalloc's purge of the sync's garbage lag by a second or so.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let memory = resident_memory(pid);
    let text = scrape(metrics);
    println!(
        "hollow dns (the deployed binary, {hollow}): answered {:.2} s after start; resident memory {:.1} MiB after sync (peak {:.1} MiB), anonymous {:.1}, file-backed {:.1}",
        sync_time.as_secs_f64(),
        memory.0,
        memory.1,
        memory.2,
        memory.3
    );
    println!("hollow dns zone heap: {}", zone_heap(&text));
    println!("hollow dns mappings after sync:\n{}", mappings(pid));

    let churn: usize = env_number("CHURN", 1000);
    if churn > 0 {
        // One write at a time per slice, round-robin, at the load rate: what the zone keeps
        // after thousands of incremental updates.
        let mut slices: Vec<EndpointSlice> = headless_slices.to_vec();
        let mut interval =
            tokio::time::interval(Duration::from_secs_f64(1.0 / load_rate.max(1) as f64));
        let started = Instant::now();
        for write_number in 0..churn {
            interval.tick().await;
            let count = slices.len();
            let slice = &mut slices[write_number % count];
            let index = (write_number / count) % slice.endpoints.as_ref().map_or(1, Vec::len);
            flip(slice, index);
            *slice = write(client, slice).await;
        }
        let written = started.elapsed();
        tokio::time::sleep(Duration::from_secs(3)).await;
        let memory = resident_memory(pid);
        let text = scrape(metrics);
        println!(
            "hollow dns after {churn} slice writes in {:.1} s ({} updates published): resident memory {:.1} MiB (peak {:.1} MiB), anonymous {:.1}, file-backed {:.1}",
            written.as_secs_f64(),
            metric(&text, "hollow_dns_snapshot_updates_total"),
            memory.0,
            memory.1,
            memory.2,
            memory.3
        );
        println!("hollow dns zone heap: {}", zone_heap(&text));
        println!("hollow dns mappings at the end:\n{}", mappings(pid));
    }
    let hold: u64 = env_number("HOLD", 0);
    if hold > 0 {
        println!("hollow dns (pid {pid}) keeps running for {hold} s (HOLD)");
        tokio::time::sleep(Duration::from_secs(hold)).await;
    }
    drop(child);
}

/// Resident memory of a process by mapping (`/proc/PID/smaps`): the binary's segments,
/// shared libraries, heap and anonymous mappings, those above 64 KiB, largest first.
fn mappings(pid: u32) -> String {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap_or_default();
    // (mapping, permissions) → (resident KiB, anonymous KiB, count)
    let mut totals: std::collections::BTreeMap<(String, String), (u64, u64, usize)> =
        std::collections::BTreeMap::new();
    let mut current = (String::new(), String::new());
    for line in text.lines() {
        let mut words = line.split_whitespace();
        let Some(first) = words.next() else { continue };
        if first.contains('-') && !first.ends_with(':') {
            let permissions = words.next().unwrap_or_default().to_owned();
            let path = words.nth(3).unwrap_or("[anonymous]");
            let path = path.rsplit('/').next().unwrap_or(path).to_owned();
            current = (path, permissions);
            totals.entry(current.clone()).or_default().2 += 1;
            continue;
        }
        let mut kib = || words.next().and_then(|value| value.parse::<u64>().ok());
        match first {
            "Rss:" => totals.entry(current.clone()).or_default().0 += kib().unwrap_or(0),
            "Anonymous:" => totals.entry(current.clone()).or_default().1 += kib().unwrap_or(0),
            _ => {}
        }
    }
    let mut rows: Vec<_> = totals
        .into_iter()
        .filter(|(_, (resident, _, _))| *resident >= 64)
        .collect();
    rows.sort_by_key(|(_, (resident, _, _))| std::cmp::Reverse(*resident));
    rows.iter()
        .map(|((path, permissions), (resident, anonymous, count))| {
            format!(
                "  {:>8.2} MiB resident, {:>6.2} anonymous  {permissions} {path} ({count} mapping{})",
                *resident as f64 / 1024.0,
                *anonymous as f64 / 1024.0,
                if *count == 1 { "" } else { "s" }
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A child that is asked to stop with SIGTERM before [`ChildGuard`]'s kill.
struct TerminatedChild(ChildGuard);

impl Drop for TerminatedChild {
    fn drop(&mut self) {
        if let Ok(pid) = i32::try_from(self.0.0.id()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
    }
}
