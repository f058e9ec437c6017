//! Delay from a pod status write to the EndpointSlice that reflects it.
//!
//! `cargo run --release -p hollow-controllers --example latency [pods] [rate_per_second] [seconds] [nodelay]`
//!
//! With `nodelay` the example serves the API server's router itself with `TCP_NODELAY` on
//! accepted connections, to show what Nagle's algorithm on the watch streams costs.
//!
//! Starts hollow's API server in this process (in-memory store, loopback), runs the
//! controllers against it through kube-rs, creates one headless Service over `pods` Ready
//! pods, and then flips pod readiness through the status subresource:
//!
//! - idle: one change at a time, the next only after the previous one showed up;
//! - loaded: `rate_per_second` changes per second for `seconds` seconds.
//!
//! A delay runs from just before the status write is sent to the moment a watch on
//! EndpointSlices delivers a slice with the new condition, so it includes both API round
//! trips and the watch deliveries, not just the controller.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use serde_json::json;
use tokio::time::Instant;

type Pending = Arc<Mutex<HashMap<String, (bool, Instant)>>>;

fn percentile(sorted: &[Duration], fraction: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let position = ((sorted.len() as f64 - 1.0) * fraction).round() as usize;
    sorted[position.min(sorted.len() - 1)]
}

fn report(label: &str, mut samples: Vec<Duration>, sent: usize, elapsed: Duration) {
    samples.sort();
    let milliseconds = |duration: Duration| duration.as_secs_f64() * 1e3;
    println!(
        "{label}: {} of {sent} changes seen ({:.0}/s sent); p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        samples.len(),
        sent as f64 / elapsed.as_secs_f64().max(1e-9),
        milliseconds(percentile(&samples, 0.5)),
        milliseconds(percentile(&samples, 0.9)),
        milliseconds(percentile(&samples, 0.99)),
        milliseconds(samples.last().copied().unwrap_or_default()),
    );
}

async fn set_ready(pods: &Api<Pod>, index: usize, ready: bool) {
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
    if let Err(error) = pods
        .patch_status(
            &format!("lat-{index}"),
            &PatchParams::default(),
            &Patch::Merge(&status),
        )
        .await
    {
        eprintln!("status write failed: {error}");
    }
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let mut arguments = std::env::args().skip(1);
    let pod_count: usize = arguments
        .next()
        .and_then(|value| value.parse().ok())
        .unwrap_or(1000);
    let rate: u64 = arguments
        .next()
        .and_then(|value| value.parse().ok())
        .unwrap_or(1000);
    let seconds: u64 = arguments
        .next()
        .and_then(|value| value.parse().ok())
        .unwrap_or(5);
    let nodelay = arguments.next().as_deref() == Some("nodelay");

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let address = listener.local_addr().expect("address");
    let store = hollow_store::Store::in_memory(hollow_store::StoreOptions::default());
    let server = hollow_apiserver::ApiServer::new(store, address)
        .await
        .expect("API server");
    if nodelay {
        use axum::serve::ListenerExt;
        let listener = listener.tap_io(|connection| {
            let _ = connection.set_nodelay(true);
        });
        tokio::spawn(async move { axum::serve(listener, server.router()).await });
    } else {
        tokio::spawn(server.serve(listener, std::future::pending()));
    }
    let client = Client::try_from(kube::Config::new(
        format!("http://{address}").parse().expect("URL"),
    ))
    .expect("client");
    tokio::spawn(hollow_controllers::run(
        client.clone(),
        hollow_controllers::Options::default(),
        std::future::pending(),
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

    let services: Api<k8s_openapi::api::core::v1::Service> =
        Api::namespaced(client.clone(), "default");
    let service = serde_json::from_value(json!({
        "metadata": {"name": "lat"},
        "spec": {"clusterIP": "None", "selector": {"app": "lat"}, "ports": [{"name": "http", "port": 80}]},
    }))
    .expect("service");
    services
        .create(&PostParams::default(), &service)
        .await
        .expect("service");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    for index in 0..pod_count {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": format!("lat-{index}"), "labels": {"app": "lat"}},
            "spec": {"nodeName": "node-1", "containers": [{"name": "main", "image": "example/lat"}]},
        }))
        .expect("pod");
        pods.create(&PostParams::default(), &pod)
            .await
            .expect("pod");
        set_ready(&pods, index, true).await;
    }

    let pending: Pending = Arc::new(Mutex::new(HashMap::new()));
    let samples: Arc<Mutex<Vec<Duration>>> = Arc::new(Mutex::new(Vec::new()));
    let ready_count = Arc::new(Mutex::new(HashMap::<String, bool>::new()));
    {
        let (pending, samples, ready_count) =
            (pending.clone(), samples.clone(), ready_count.clone());
        let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");
        let config = watcher::Config::default().labels("kubernetes.io/service-name=lat");
        tokio::spawn(async move {
            let mut events =
                std::pin::pin!(watcher(slices, config).default_backoff().applied_objects());
            while let Some(Ok(slice)) = events.next().await {
                let seen = Instant::now();
                let mut pending = pending.lock().expect("pending lock");
                let mut states = ready_count.lock().expect("state lock");
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
                    states.insert(name.clone(), ready);
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
        let ready = ready_count
            .lock()
            .expect("state lock")
            .values()
            .filter(|ready| **ready)
            .count();
        if ready == pod_count {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "only {ready} of {pod_count} pods reached the slices"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "{pod_count} ready pods in the slices after {:.0} ms",
        started.elapsed().as_secs_f64() * 1e3
    );

    // Idle: one change at a time.
    let idle_changes = 200.min(pod_count * 2);
    let started = Instant::now();
    for change in 0..idle_changes {
        let index = change % pod_count;
        let ready = (change / pod_count) % 2 == 1;
        pending
            .lock()
            .expect("pending lock")
            .insert(format!("lat-{index}"), (ready, Instant::now()));
        set_ready(&pods, index, ready).await;
        while pending
            .lock()
            .expect("pending lock")
            .contains_key(&format!("lat-{index}"))
        {
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
    }
    report(
        "idle",
        std::mem::take(&mut *samples.lock().expect("samples lock")),
        idle_changes,
        started.elapsed(),
    );
    // Every pod ready again before the loaded run.
    for index in 0..pod_count {
        set_ready(&pods, index, true).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    samples.lock().expect("samples lock").clear();
    pending.lock().expect("pending lock").clear();

    // Loaded: `rate` changes per second, each pod flipping in turn.
    let total = usize::try_from(rate * seconds).unwrap_or(usize::MAX);
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    let started = Instant::now();
    let mut writes = Vec::with_capacity(total);
    for change in 0..total {
        ticker.tick().await;
        let index = change % pod_count;
        let ready = (change / pod_count) % 2 == 1;
        pending
            .lock()
            .expect("pending lock")
            .insert(format!("lat-{index}"), (ready, Instant::now()));
        let pods = pods.clone();
        writes.push(tokio::spawn(
            async move { set_ready(&pods, index, ready).await },
        ));
    }
    let sent_in = started.elapsed();
    for write in writes {
        let _ = write.await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    report(
        &format!("loaded ({rate}/s target)"),
        std::mem::take(&mut *samples.lock().expect("samples lock")),
        total,
        sent_in,
    );
}
