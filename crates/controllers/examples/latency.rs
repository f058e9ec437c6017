//! Delay from a pod status write to the EndpointSlice that reflects it.
//!
//! ```text
//! cargo run --release -p hollow-controllers --example latency -- \
//!     [--pods 1000] [--services 1] [--phases 5:20,1000:5] [--concurrency 16]
//! ```
//!
//! Starts hollow's API server in this process (in-memory store, loopback), runs the
//! controllers against it through kube-rs, creates `--services` headless Services and
//! `--pods` Ready pods spread evenly over them (pod `i` belongs to Service
//! `i % services`), and then flips pod readiness through the status subresource, pods in
//! turn, at each phase's `RATE:SECONDS` (changes per second for that many seconds;
//! `5:20` is the idle figure, `1000:5` the loaded one).
//!
//! A delay runs from just before the status write is sent to the moment a watch on
//! EndpointSlices delivers a slice with the new condition, so it includes both API round
//! trips and the watch deliveries, not just the controller. Each phase prints the delay's
//! p50/p90/p99/max and sample count, the status write's own round trip, and where the
//! controller spent its time per Service reconcile (from the controllers'
//! `hollow_controllers::timing` debug events).
//!
//! `--concurrency` sets the controllers' reconciles in flight per controller
//! ([`hollow_controllers::Options::concurrency`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use serde_json::json;
use tokio::time::Instant;
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;

/// Pod name → (wanted readiness, when the write was sent).
type Pending = Arc<Mutex<HashMap<String, (bool, Instant)>>>;

/// The controllers' timing events, summed up per `message/field`.
#[derive(Clone, Default)]
struct Timings(Arc<Mutex<BTreeMap<String, Vec<u64>>>>);

struct Fields {
    prefix: String,
    values: Vec<(String, u64)>,
}

impl Visit for Fields {
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.values.push((field.name().to_string(), value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.values
            .push((field.name().to_string(), u64::try_from(value).unwrap_or(0)));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() != "message" {
            self.prefix.push_str(&format!(" {}={value}", field.name()));
        }
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.prefix = format!("{value:?}{}", self.prefix);
        }
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Timings {
    fn enabled(&self, metadata: &tracing::Metadata<'_>, _: Context<'_, S>) -> bool {
        metadata.target() == "hollow_controllers::timing"
    }

    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        let mut fields = Fields {
            prefix: String::new(),
            values: Vec::new(),
        };
        event.record(&mut fields);
        let mut timings = self.0.lock().expect("timings lock");
        for (name, value) in fields.values {
            timings
                .entry(format!("{}: {name}", fields.prefix))
                .or_default()
                .push(value);
        }
    }
}

impl Timings {
    fn report(&self) {
        let timings = std::mem::take(&mut *self.0.lock().expect("timings lock"));
        for (name, mut values) in timings {
            values.sort_unstable();
            let at =
                |fraction: f64| values[((values.len() as f64 - 1.0) * fraction).round() as usize];
            println!(
                "    {name:<48} n {:>6}  p50 {:>7}  p99 {:>7}  max {:>7}",
                values.len(),
                at(0.5),
                at(0.99),
                values.last().copied().unwrap_or_default()
            );
        }
    }
}

fn percentile(sorted: &[Duration], fraction: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let position = ((sorted.len() as f64 - 1.0) * fraction).round() as usize;
    sorted[position.min(sorted.len() - 1)]
}

fn summary(mut samples: Vec<Duration>) -> String {
    samples.sort();
    let milliseconds = |duration: Duration| duration.as_secs_f64() * 1e3;
    format!(
        "n {}; p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        samples.len(),
        milliseconds(percentile(&samples, 0.5)),
        milliseconds(percentile(&samples, 0.9)),
        milliseconds(percentile(&samples, 0.99)),
        milliseconds(samples.last().copied().unwrap_or_default()),
    )
}

fn pod_name(index: usize) -> String {
    format!("lat-{index}")
}

async fn set_ready(pods: &Api<Pod>, index: usize, ready: bool) -> Duration {
    let ip = format!(
        "10.{}.{}.{}",
        100 + index / 65536,
        index / 256 % 256,
        index % 256
    );
    let status = json!({"status": {
        "phase": "Running",
        "podIP": ip,
        "podIPs": [{"ip": ip}],
        "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}],
    }});
    let started = Instant::now();
    if let Err(error) = pods
        .patch_status(
            &pod_name(index),
            &PatchParams::default(),
            &Patch::Merge(&status),
        )
        .await
    {
        eprintln!("status write failed: {error}");
    }
    started.elapsed()
}

struct Arguments {
    pods: usize,
    services: usize,
    phases: Vec<(u64, u64)>,
    concurrency: u16,
}

fn usage(problem: &str) -> ! {
    eprintln!(
        "{problem}\nusage: latency [--pods N] [--services N] [--phases RATE:SECONDS,...] [--concurrency N]"
    );
    std::process::exit(2)
}

fn parse_arguments() -> Arguments {
    let mut arguments = Arguments {
        pods: 1000,
        services: 1,
        phases: vec![(5, 20), (1000, 5)],
        concurrency: hollow_controllers::Options::default().concurrency,
    };
    let mut given = std::env::args().skip(1);
    while let Some(argument) = given.next() {
        let mut value = || {
            given
                .next()
                .unwrap_or_else(|| usage(&format!("{argument} needs a value")))
        };
        match argument.as_str() {
            "--pods" => arguments.pods = value().parse().unwrap_or_else(|_| usage("--pods")),
            "--services" => {
                arguments.services = value().parse().unwrap_or_else(|_| usage("--services"))
            }
            "--phases" => {
                arguments.phases = value()
                    .split(',')
                    .map(|phase| {
                        let (rate, seconds) =
                            phase.split_once(':').unwrap_or_else(|| usage("--phases"));
                        (
                            rate.parse().unwrap_or_else(|_| usage("--phases rate")),
                            seconds
                                .parse()
                                .unwrap_or_else(|_| usage("--phases seconds")),
                        )
                    })
                    .collect()
            }
            "--concurrency" => {
                arguments.concurrency = value().parse().unwrap_or_else(|_| usage("--concurrency"))
            }
            other => usage(&format!("unknown argument {other}")),
        }
    }
    if arguments.services == 0 || arguments.pods < arguments.services {
        usage("need at least one pod per service");
    }
    if arguments.phases.iter().any(|(rate, _)| *rate == 0) {
        usage("a phase's rate must be positive");
    }
    arguments
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let arguments = parse_arguments();
    let timings = Timings::default();
    tracing_subscriber::registry().with(timings.clone()).init();
    let pod_count = arguments.pods;
    let service_count = arguments.services;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let address = listener.local_addr().expect("address");
    let store = hollow_store::Store::in_memory(hollow_store::StoreOptions::default());
    let server = hollow_apiserver::ApiServer::new(store, address)
        .await
        .expect("API server");
    tokio::spawn(server.serve(listener, std::future::pending()));
    let client = Client::try_from(kube::Config::new(
        format!("http://{address}").parse().expect("URL"),
    ))
    .expect("client");
    let (stop_controllers, stopped) = tokio::sync::oneshot::channel::<()>();
    let controllers = tokio::spawn(hollow_controllers::run(
        client.clone(),
        hollow_controllers::Options {
            concurrency: arguments.concurrency,
            ..hollow_controllers::Options::default()
        },
        async move {
            let _ = stopped.await;
        },
    ));

    let nodes: Api<Node> = Api::all(client.clone());
    let node: Node = serde_json::from_value(json!({"metadata": {"name": "node-1"}})).expect("node");
    nodes
        .create(&PostParams::default(), &node)
        .await
        .expect("node");
    let ready = json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}});
    nodes
        .patch_status("node-1", &PatchParams::default(), &Patch::Merge(&ready))
        .await
        .expect("node status");

    let started = Instant::now();
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    futures::stream::iter(0..service_count)
        .for_each_concurrent(8, |index| {
            let services = services.clone();
            async move {
                let service: Service = serde_json::from_value(json!({
                    "metadata": {"name": format!("lat-svc-{index}")},
                    "spec": {
                        "clusterIP": "None",
                        "selector": {"app": format!("lat-{index}")},
                        "ports": [{"name": "http", "port": 80}],
                    },
                }))
                .expect("service");
                services
                    .create(&PostParams::default(), &service)
                    .await
                    .expect("service");
            }
        })
        .await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    futures::stream::iter(0..pod_count)
        .for_each_concurrent(8, |index| {
            let pods = pods.clone();
            async move {
                let pod: Pod = serde_json::from_value(json!({
                    "metadata": {
                        "name": pod_name(index),
                        "labels": {"app": format!("lat-{}", index % service_count)},
                    },
                    "spec": {
                        "nodeName": "node-1",
                        "containers": [{"name": "main", "image": "example/lat"}],
                    },
                }))
                .expect("pod");
                pods.create(&PostParams::default(), &pod)
                    .await
                    .expect("pod");
                set_ready(&pods, index, true).await;
            }
        })
        .await;
    println!(
        "{pod_count} pods over {service_count} services ({} per service) created in {:.0} ms",
        pod_count / service_count,
        started.elapsed().as_secs_f64() * 1e3
    );

    let pending: Pending = Arc::new(Mutex::new(HashMap::new()));
    let samples: Arc<Mutex<Vec<Duration>>> = Arc::new(Mutex::new(Vec::new()));
    let readiness = Arc::new(Mutex::new(HashMap::<String, bool>::new()));
    {
        let (pending, samples, readiness) = (pending.clone(), samples.clone(), readiness.clone());
        let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");
        tokio::spawn(async move {
            let mut events = std::pin::pin!(
                watcher(slices, watcher::Config::default())
                    .default_backoff()
                    .applied_objects()
            );
            while let Some(Ok(slice)) = events.next().await {
                let seen = Instant::now();
                let mut pending = pending.lock().expect("pending lock");
                let mut readiness = readiness.lock().expect("readiness lock");
                for endpoint in slice.endpoints.iter().flatten() {
                    let Some(name) = endpoint
                        .target_ref
                        .as_ref()
                        .and_then(|target| target.name.clone())
                    else {
                        continue;
                    };
                    let ready = endpoint
                        .conditions
                        .as_ref()
                        .and_then(|conditions| conditions.ready)
                        == Some(true);
                    readiness.insert(name.clone(), ready);
                    if let Some((wanted, sent)) = pending.get(&name).copied()
                        && wanted == ready
                    {
                        pending.remove(&name);
                        samples.lock().expect("samples lock").push(seen - sent);
                    }
                }
            }
        });
    }
    let started = Instant::now();
    loop {
        let ready = readiness
            .lock()
            .expect("readiness lock")
            .values()
            .filter(|ready| **ready)
            .count();
        if ready == pod_count {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "only {ready} of {pod_count} pods reached the slices"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "{pod_count} ready pods in the slices after {:.0} ms",
        started.elapsed().as_secs_f64() * 1e3
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    timings.report();

    // Each phase flips pods in turn; `flips` counts changes so far, so a pod's wanted
    // readiness alternates from one pass over the pods to the next.
    let mut flips = 0usize;
    for (rate, seconds) in arguments.phases {
        samples.lock().expect("samples lock").clear();
        pending.lock().expect("pending lock").clear();
        timings.0.lock().expect("timings lock").clear();
        let total = usize::try_from(rate * seconds).unwrap_or(usize::MAX);
        let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        let started = Instant::now();
        let mut writes = Vec::with_capacity(total);
        for _ in 0..total {
            ticker.tick().await;
            // Spread consecutive changes over the Services: pod i belongs to i % services.
            let index = flips % pod_count;
            let ready = (flips / pod_count) % 2 == 1;
            flips += 1;
            pending
                .lock()
                .expect("pending lock")
                .insert(pod_name(index), (ready, Instant::now()));
            let pods = pods.clone();
            writes.push(tokio::spawn(
                async move { set_ready(&pods, index, ready).await },
            ));
        }
        let sent_in = started.elapsed();
        let mut write_times = Vec::with_capacity(writes.len());
        for write in writes {
            if let Ok(took) = write.await {
                write_times.push(took);
            }
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while !pending.lock().expect("pending lock").is_empty() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let unseen = pending.lock().expect("pending lock").len();
        let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
        println!(
            "phase {rate}/s for {seconds} s ({pod_count} pods, {service_count} services; {total} changes sent at {:.0}/s, {unseen} not seen; loadavg {})",
            total as f64 / sent_in.as_secs_f64().max(1e-9),
            load.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        );
        println!(
            "  write → slice seen: {}",
            summary(std::mem::take(&mut *samples.lock().expect("samples lock")))
        );
        println!("  status write alone: {}", summary(write_times));
        println!("  controller timings (µs):");
        timings.report();
    }
    // Stop the controllers before the runtime goes, so no reconcile is cut off mid-way.
    let _ = stop_controllers.send(());
    let _ = tokio::time::timeout(Duration::from_secs(10), controllers).await;
}
