//! Throughput and connection rate through the proxy versus straight to the backend, on
//! loopback: `cargo run --release -p hollow-proxy --example bench`.
//!
//! An in-process API server and proxy serve one ClusterIP Service whose hand-written
//! EndpointSlice points at a local sink server. Each figure is measured for a fixed time, so
//! a run takes about 20 s. Tune with BENCH_SECONDS (default 3) and BENCH_CONNECTIONS
//! (concurrent clients in the connection-rate test, default 16).

#[allow(dead_code)]
#[path = "../tests/it/cluster.rs"]
mod cluster;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cluster::{Cluster, ask, eventually};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const LANE: u8 = 200;
const CHUNK: usize = 64 * 1024;

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() {
    let seconds = Duration::from_secs(setting("BENCH_SECONDS", 3));
    let concurrency = setting("BENCH_CONNECTIONS", 16) as usize;
    let cluster = Cluster::start(LANE).await;

    // Port 1 of the lane's first backend address answers the proxy's readiness probe (a
    // greeting echo server); the sink and the closer share the second backend address.
    let greeter = cluster.backends(&["bench"]).await[0];
    let sink = start_sink(SocketAddr::from(([127, 0, LANE, 12], 0))).await;
    let closer = start_closer(SocketAddr::from(([127, 0, LANE, 12], 0))).await;
    let service = cluster
        .create_service(json!({
            "metadata": {"name": "web"},
            "spec": {"ports": [
                {"name": "http", "port": 8080},
                {"name": "sink", "port": 8081},
                {"name": "close", "port": 8082},
            ]}
        }))
        .await;
    let cluster_ip: std::net::IpAddr = service
        .spec
        .and_then(|spec| spec.cluster_ip)
        .and_then(|ip| ip.parse().ok())
        .expect("cluster IP");
    let slices: kube::Api<k8s_openapi::api::discovery::v1::EndpointSlice> =
        kube::Api::namespaced(cluster.client(), "default");
    for (name, port, ip) in [
        ("http", greeter.port(), greeter.ip()),
        ("sink", sink.port(), sink.ip()),
        ("close", closer.port(), closer.ip()),
    ] {
        let slice = serde_json::from_value(json!({
            "metadata": {"name": format!("web-{name}"), "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv4",
            "ports": [{"name": name, "port": port}],
            "endpoints": [{"addresses": [ip.to_string()]}],
        }))
        .expect("slice");
        slices
            .create(&Default::default(), &slice)
            .await
            .expect("create slice");
    }
    let through_proxy = |port| SocketAddr::new(cluster_ip, port);
    eventually("the proxy serves", || async {
        ask(through_proxy(8080), None).await.ok()
    })
    .await;
    eventually("all ports are served", || async {
        let sink_ready = TcpStream::connect(through_proxy(8081)).await.is_ok();
        let close_ready = TcpStream::connect(through_proxy(8082)).await.is_ok();
        (sink_ready && close_ready).then_some(())
    })
    .await;

    println!(
        "hollow-proxy bench: loopback, {} s per figure, {} cores",
        seconds.as_secs(),
        std::thread::available_parallelism().map_or(1, usize::from)
    );
    for streams in [1, 4] {
        let direct = throughput(sink, streams, seconds).await;
        let proxied = throughput(through_proxy(8081), streams, seconds).await;
        println!(
            "throughput, {streams} stream(s):     direct {direct:>8.0} MB/s   via proxy {proxied:>8.0} MB/s   ({:.0}%)",
            100.0 * proxied / direct
        );
    }
    let direct = connection_rate(closer, concurrency, seconds).await;
    let proxied = connection_rate(through_proxy(8082), concurrency, seconds).await;
    println!(
        "connections/s, {concurrency} clients:  direct {direct:>8.0}/s      via proxy {proxied:>8.0}/s      ({:.0}%)",
        100.0 * proxied / direct
    );
}

/// Reads everything, then answers with the number of bytes read.
async fn start_sink(address: SocketAddr) -> SocketAddr {
    let listener = TcpListener::bind(address).await.expect("bind sink");
    let address = listener.local_addr().expect("sink address");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buffer = vec![0u8; CHUNK];
                let mut total = 0u64;
                loop {
                    match stream.read(&mut buffer).await {
                        Ok(0) | Err(_) => break,
                        Ok(read) => total += read as u64,
                    }
                }
                let _ = stream.write_all(&total.to_be_bytes()).await;
            });
        }
    });
    address
}

/// Writes one byte and closes: the cheapest possible request.
async fn start_closer(address: SocketAddr) -> SocketAddr {
    let listener = TcpListener::bind(address).await.expect("bind closer");
    let address = listener.local_addr().expect("closer address");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let _ = stream.write_all(b"x").await;
            });
        }
    });
    address
}

/// MB/s (10^6 bytes) written by `streams` clients for `duration`, as counted by the sink.
async fn throughput(target: SocketAddr, streams: usize, duration: Duration) -> f64 {
    let start = Instant::now();
    let tasks: Vec<_> = (0..streams)
        .map(|_| {
            tokio::spawn(async move {
                let mut stream = TcpStream::connect(target).await.expect("connect");
                let chunk = vec![7u8; CHUNK];
                let deadline = Instant::now() + duration;
                while Instant::now() < deadline {
                    stream.write_all(&chunk).await.expect("write");
                }
                stream.shutdown().await.expect("shutdown");
                let mut count = [0u8; 8];
                stream.read_exact(&mut count).await.expect("byte count");
                u64::from_be_bytes(count)
            })
        })
        .collect();
    let mut bytes = 0;
    for task in tasks {
        bytes += task.await.expect("stream task");
    }
    bytes as f64 / start.elapsed().as_secs_f64() / 1e6
}

/// Completed connect–read–close cycles per second with `concurrency` clients.
async fn connection_rate(target: SocketAddr, concurrency: usize, duration: Duration) -> f64 {
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let done = Arc::clone(&done);
            let stop = Arc::clone(&stop);
            tokio::spawn(async move {
                let mut byte = [0u8; 1];
                while !stop.load(Ordering::Relaxed) {
                    let Ok(mut stream) = TcpStream::connect(target).await else {
                        continue;
                    };
                    if stream.read_exact(&mut byte).await.is_ok() {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    let elapsed = start.elapsed();
    for task in tasks {
        task.await.expect("client task");
    }
    done.load(Ordering::Relaxed) as f64 / elapsed.as_secs_f64()
}
