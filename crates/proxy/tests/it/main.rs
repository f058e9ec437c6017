//! The proxy against a live in-process API server, with real TCP connections: Services and
//! hand-written EndpointSlices point at small echo servers on 127.0.<lane>.x, and clients
//! connect through the cluster IP, the node port and the load-balancer address (TCP), and
//! send datagrams through the cluster IP (UDP).
//!
//! Each test has its own lane: its own service range (127.96.<lane>.0/24), load-balancer
//! range (127.97.<lane>.0/24), node address (127.0.<lane>.1) and backend addresses, so
//! tests running in parallel never share a socket.

mod cluster;

use std::collections::{HashMap, HashSet};
use std::io::ErrorKind;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use cluster::{Cluster, WAIT, ask, eventually};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpStream, UdpSocket};

fn endpoint(ip: &str, ready: bool) -> serde_json::Value {
    json!({"addresses": [ip], "conditions": {"ready": ready, "serving": ready, "terminating": false}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_ip_spreads_follows_readiness_and_closes_with_the_service() {
    let cluster = Cluster::start(11).await;
    let backends = cluster.backends(&["a", "b", "c"]).await;
    let port = backends[0].port();
    let service = cluster
        .create_service(json!({
            "metadata": {"name": "web"},
            "spec": {"ports": [{"name": "http", "port": 8080, "targetPort": "web"}]}
        }))
        .await;
    let frontend = SocketAddr::new(cluster_ip(&service), 8080);
    cluster
        .create_slice(
            "web",
            port,
            json!([
                endpoint("127.0.11.11", true),
                endpoint("127.0.11.12", true),
                endpoint("127.0.11.13", true)
            ]),
        )
        .await;

    eventually("all three backends answer", || async {
        let mut seen = HashSet::new();
        for _ in 0..6 {
            seen.insert(ask(frontend, None).await.ok()?);
        }
        (seen.len() == 3).then_some(())
    })
    .await;
    let mut counts: HashMap<String, usize> = HashMap::new();
    for _ in 0..30 {
        *counts
            .entry(ask(frontend, None).await.expect("through the proxy"))
            .or_default() += 1;
    }
    assert_eq!(counts.len(), 3, "{counts:?}");
    assert!(
        counts.values().all(|count| *count == 10),
        "round robin: {counts:?}"
    );

    // A connection to "a" stays open while "a" stops being ready.
    let (mut held, held_by) = loop {
        let mut stream = TcpStream::connect(frontend).await.expect("connect");
        let name = read_line(&mut stream).await;
        if name == "a" {
            break (stream, name);
        }
    };
    cluster
        .patch_slice(json!([
            endpoint("127.0.11.11", false),
            endpoint("127.0.11.12", true),
            endpoint("127.0.11.13", true)
        ]))
        .await;
    eventually("a gets no new connection", || async {
        for _ in 0..6 {
            if ask(frontend, None).await.ok()? == "a" {
                return None;
            }
        }
        Some(())
    })
    .await;
    held.write_all(b"still there\n")
        .await
        .expect("write on the held connection");
    assert_eq!(
        read_line(&mut held).await,
        "still there",
        "held by {held_by}"
    );

    // No ready endpoint: the proxy resets new connections at once.
    cluster
        .patch_slice(json!([
            endpoint("127.0.11.11", false),
            endpoint("127.0.11.12", false)
        ]))
        .await;
    eventually("connections are refused", || async {
        match ask(frontend, None).await {
            Err(error) if error.kind() != ErrorKind::TimedOut => Some(()),
            _ => None,
        }
    })
    .await;

    // Deleting the Service closes its listener: nothing accepts there any more.
    cluster
        .services()
        .delete("web", &DeleteParams::default())
        .await
        .expect("delete");
    eventually("the listener is closed", || async {
        match TcpStream::connect(frontend).await {
            Err(error) if error.kind() == ErrorKind::ConnectionRefused => Some(()),
            _ => None,
        }
    })
    .await;
    held.write_all(b"after delete\n")
        .await
        .expect("write on the held connection");
    assert_eq!(read_line(&mut held).await, "after delete");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_ip_affinity_sticks_per_client() {
    let cluster = Cluster::start(12).await;
    let backends = cluster.backends(&["a", "b", "c"]).await;
    let service = cluster
        .create_service(json!({
            "metadata": {"name": "web"},
            "spec": {"sessionAffinity": "ClientIP",
                     "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 600}},
                     "ports": [{"name": "http", "port": 8080}]}
        }))
        .await;
    let frontend = SocketAddr::new(cluster_ip(&service), 8080);
    cluster
        .create_slice(
            "web",
            backends[0].port(),
            json!([
                endpoint("127.0.12.11", true),
                endpoint("127.0.12.12", true),
                endpoint("127.0.12.13", true)
            ]),
        )
        .await;
    let mut chosen = HashSet::new();
    for client in 100..106u8 {
        let from: IpAddr = [127, 0, 12, client].into();
        let first = eventually("the service answers", || async {
            ask(frontend, Some(from)).await.ok()
        })
        .await;
        for _ in 0..5 {
            assert_eq!(
                ask(frontend, Some(from)).await.expect("answer"),
                first,
                "client {from}"
            );
        }
        chosen.insert(first);
    }
    // Six clients over three endpoints: affinity did not pin everyone to one.
    assert!(chosen.len() > 1, "{chosen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_port_and_load_balancer_addresses_answer() {
    let cluster = Cluster::start(13).await;
    let backends = cluster.backends(&["a"]).await;
    let service = cluster
        .create_service(json!({
            "metadata": {"name": "web"},
            "spec": {"type": "LoadBalancer",
                     "ports": [{"name": "http", "port": 8080, "nodePort": 30413}]}
        }))
        .await;
    cluster
        .create_slice(
            "web",
            backends[0].port(),
            json!([endpoint("127.0.13.11", true)]),
        )
        .await;
    let cluster_frontend = SocketAddr::new(cluster_ip(&service), 8080);
    let node_frontend = SocketAddr::new(cluster.node_address(), 30413);
    for frontend in [cluster_frontend, node_frontend] {
        let answer = eventually("the service answers", || async {
            ask(frontend, None).await.ok()
        })
        .await;
        assert_eq!(answer, "a", "through {frontend}");
    }
    let ingress = eventually("a load-balancer address is assigned", || async {
        let service = cluster.services().get("web").await.ok()?;
        first_ingress(&service)
    })
    .await;
    assert_eq!(ingress, IpAddr::from([127, 97, 13, 1]));
    let answer = eventually("the load-balancer address answers", || async {
        ask(SocketAddr::new(ingress, 8080), None).await.ok()
    })
    .await;
    assert_eq!(answer, "a");

    // A second LoadBalancer gets the next free address.
    cluster
        .create_service(json!({
            "metadata": {"name": "other"},
            "spec": {"type": "LoadBalancer", "ports": [{"port": 9090}]}
        }))
        .await;
    let other = eventually("the second address is assigned", || async {
        first_ingress(&cluster.services().get("other").await.ok()?)
    })
    .await;
    assert_eq!(other, IpAddr::from([127, 97, 13, 2]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_not_ready_addresses_makes_not_ready_endpoints_serve() {
    let cluster = Cluster::start(14).await;
    let backends = cluster.backends(&["a"]).await;
    let service = cluster
        .create_service(json!({
            "metadata": {"name": "web"},
            "spec": {"publishNotReadyAddresses": true, "ports": [{"name": "http", "port": 8080}]}
        }))
        .await;
    cluster
        .create_slice(
            "web",
            backends[0].port(),
            json!([endpoint("127.0.14.11", false)]),
        )
        .await;
    let answer = eventually("a not-ready endpoint serves", || async {
        ask(SocketAddr::new(cluster_ip(&service), 8080), None)
            .await
            .ok()
    })
    .await;
    assert_eq!(answer, "a");
}

fn cluster_ip(service: &Service) -> IpAddr {
    service
        .spec
        .as_ref()
        .and_then(|spec| spec.cluster_ip.as_deref())
        .and_then(|ip| ip.parse().ok())
        .expect("a cluster IP")
}

fn first_ingress(service: &Service) -> Option<IpAddr> {
    service
        .status
        .as_ref()?
        .load_balancer
        .as_ref()?
        .ingress
        .as_ref()?
        .first()?
        .ip
        .as_deref()?
        .parse()
        .ok()
}

async fn read_line(stream: &mut TcpStream) -> String {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    tokio::time::timeout(WAIT, reader.read_line(&mut line))
        .await
        .expect("a line in time")
        .expect("read");
    line.trim_end().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_datagrams_reach_an_endpoint_and_replies_come_back() {
    let cluster = Cluster::start(15).await;
    let backend = start_udp_backend(SocketAddr::from(([127, 0, 15, 11], 0)), "a").await;
    let service = cluster
        .create_service(json!({
            "metadata": {"name": "dns"},
            "spec": {"ports": [{"name": "dns", "port": 5353, "protocol": "UDP"}]}
        }))
        .await;
    let slice: EndpointSlice = serde_json::from_value(json!({
        "metadata": {"name": "dns-1", "labels": {"kubernetes.io/service-name": "dns"}},
        "addressType": "IPv4",
        "ports": [{"name": "dns", "port": backend.port(), "protocol": "UDP"}],
        "endpoints": [endpoint("127.0.15.11", true)],
    }))
    .unwrap();
    Api::<EndpointSlice>::namespaced(cluster.client(), "default")
        .create(&Default::default(), &slice)
        .await
        .expect("slice");
    let frontend = SocketAddr::new(cluster_ip(&service), 5353);
    let client = UdpSocket::bind("127.0.15.100:0")
        .await
        .expect("client socket");
    let reply = eventually("a UDP reply through the proxy", || async {
        client.send_to(b"ping", frontend).await.ok()?;
        let mut buffer = [0u8; 64];
        let (length, from) =
            tokio::time::timeout(Duration::from_millis(200), client.recv_from(&mut buffer))
                .await
                .ok()?
                .ok()?;
        Some((
            String::from_utf8_lossy(&buffer[..length]).into_owned(),
            from,
        ))
    })
    .await;
    assert_eq!(reply, ("a:ping".to_owned(), frontend));
}

/// Answers each datagram with `<name>:<datagram>`.
async fn start_udp_backend(address: SocketAddr, name: &'static str) -> SocketAddr {
    let socket = UdpSocket::bind(address).await.expect("bind UDP backend");
    let address = socket.local_addr().expect("UDP backend address");
    tokio::spawn(async move {
        let mut buffer = [0u8; 1024];
        while let Ok((length, from)) = socket.recv_from(&mut buffer).await {
            let mut reply = format!("{name}:").into_bytes();
            reply.extend_from_slice(&buffer[..length]);
            let _ = socket.send_to(&reply, from).await;
        }
    });
    address
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changing_the_service_port_moves_the_listener() {
    let cluster = Cluster::start(16).await;
    let backends = cluster.backends(&["a"]).await;
    let service = cluster
        .create_service(json!({
            "metadata": {"name": "web"},
            "spec": {"ports": [{"name": "http", "port": 8080}]}
        }))
        .await;
    cluster
        .create_slice(
            "web",
            backends[0].port(),
            json!([endpoint("127.0.16.11", true)]),
        )
        .await;
    let old = SocketAddr::new(cluster_ip(&service), 8080);
    let new = SocketAddr::new(cluster_ip(&service), 9090);
    eventually("the first port answers", || async {
        ask(old, None).await.ok()
    })
    .await;
    let patch = json!({"spec": {"ports": [{"name": "http", "port": 9090}]}});
    cluster
        .services()
        .patch("web", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("patch service");
    let answer = eventually("the new port answers", || async {
        ask(new, None).await.ok()
    })
    .await;
    assert_eq!(answer, "a");
    eventually("the old port is closed", || async {
        match TcpStream::connect(old).await {
            Err(error) if error.kind() == ErrorKind::ConnectionRefused => Some(()),
            _ => None,
        }
    })
    .await;
}
