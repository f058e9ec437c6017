//! Serves a cluster read from Kubernetes YAML (the bench kit's `k8s/cluster.yaml`: Namespaces,
//! Services, EndpointSlices) until SIGTERM or Ctrl-C, with forwarding off. Used by
//! `crates/dns/bench/run.sh`; handy for poking at the server with dig as well.
//!
//!     cargo run --release -p hollow-dns --example bench_server -- CLUSTER.yaml [ADDR] [WORKERS]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use hollow_dns::{ClusterState, DnsConfig, DnsServer, Snapshot, Upstreams};
use serde_json::Value;

fn load(path: &str) -> ClusterState {
    let text = std::fs::read_to_string(path).unwrap_or_else(|error| panic!("read {path}: {error}"));
    // The default parsing budget is sized for configuration files, not 28 MB of objects.
    let mut options = serde_saphyr::Options::default();
    options.budget = None;
    let documents: Vec<Value> =
        serde_saphyr::from_multiple_with_options(&text, options).expect("valid YAML");
    let mut state = ClusterState::default();
    for document in documents {
        match document.get("kind").and_then(Value::as_str) {
            Some("Namespace") => state.namespaces.push(Arc::new(
                serde_json::from_value(document).expect("Namespace"),
            )),
            Some("Service") => state
                .services
                .push(Arc::new(serde_json::from_value(document).expect("Service"))),
            Some("EndpointSlice") => state.endpoint_slices.push(Arc::new(
                serde_json::from_value(document).expect("EndpointSlice"),
            )),
            _ => {}
        }
    }
    state
}

fn main() {
    let mut arguments = std::env::args().skip(1);
    let path = arguments
        .next()
        .expect("usage: bench_server CLUSTER.yaml [ADDR] [WORKERS]");
    let listen: SocketAddr = arguments
        .next()
        .unwrap_or_else(|| "127.0.0.1:15353".to_owned())
        .parse()
        .expect("listen address");
    let workers: usize = arguments
        .next()
        .map(|text| text.parse().expect("worker count"))
        .unwrap_or(1);

    let config = DnsConfig {
        listen,
        upstreams: Upstreams::Disabled,
        udp_workers: workers,
        ..DnsConfig::default()
    };
    let started = Instant::now();
    let state = load(&path);
    let loaded = started.elapsed();
    let snapshot = Snapshot::build(&state, &config.snapshot_settings());
    let stats = snapshot.stats();
    eprintln!(
        "loaded {} services, {} slices, {} namespaces in {loaded:?}; snapshot: {} names, {} records, {:.1} MiB index, built in {:?}",
        state.services.len(),
        state.endpoint_slices.len(),
        state.namespaces.len(),
        stats.names,
        stats.records,
        stats.index_bytes as f64 / (1024.0 * 1024.0),
        stats.build_duration
    );
    eprintln!("index breakdown:\n{}", snapshot.index_breakdown());
    // Serve only the compact index: the Kubernetes objects are not needed any more.
    drop(state);
    // The index grew among the parsed objects and the encoder's temporaries, so its pieces
    // (two per shard, a few KiB each) sit scattered over the pages of the parse's heap and
    // each pins a page or two that is otherwise free: about as much again as the index
    // itself. Copied on a thread of its own, it gets an allocator arena of its own (glibc
    // gives a new thread a fresh one), so the copies pack into contiguous pages and the
    // parse's heap is left with nothing in it to pin.
    let snapshot = std::thread::spawn(move || snapshot.repacked())
        .join()
        .expect("repacking the index");
    // Hand the heap pages freed by YAML parsing back to the kernel, so resident memory shows
    // what serving needs rather than the parser's garbage.
    hollow_dns::release_free_heap();

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let server = DnsServer::start(config.server_settings().expect("settings"), snapshot)
            .await
            .expect("server starts");
        eprintln!("serving on {}", server.udp_addr());
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .expect("signal handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate.recv() => {}
        }
        server.shutdown().await;
    });
}
