//! End-to-end tests: a real server on 127.0.0.1:0, fed snapshots built from Kubernetes objects
//! (the example cluster of dns-spec.md §1), queried with the real `dig` over UDP and TCP.
//! Each test follows one section of the checklist.

mod api;
mod dig;
mod upstream;

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use hollow_dns::{ClusterState, DnsConfig, DnsServer, PodMode, Snapshot, Upstreams, example};

use dig::dig;

fn config() -> DnsConfig {
    DnsConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        upstreams: Upstreams::Disabled,
        udp_workers: 1,
        metrics_listen: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
        pod_mode: PodMode::Insecure,
        ..DnsConfig::default()
    }
}

async fn start(config: &DnsConfig, state: &ClusterState) -> DnsServer {
    let settings = config.snapshot_settings();
    let server = DnsServer::start(
        config.server_settings().expect("settings"),
        Snapshot::unsynced(&settings),
    )
    .await
    .expect("server starts");
    server.publish(Snapshot::build(state, &settings));
    server
}

const TRANSPORTS: [&[&str]; 2] = [&["+notcp"], &["+tcp"]];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_ip_services() {
    let server = start(&config(), &example::cluster()).await;
    let address = server.udp_addr();
    for transport in TRANSPORTS {
        let api = dig(address, "api.default.svc.cluster.local.", "A", transport).await;
        api.assert_status("NOERROR");
        assert_eq!(api.data("A"), ["10.96.10.20"]);
        assert!(api.has_flag("aa"));
        assert_eq!(api.answer[0].ttl, 5);

        dig(address, "api.default.svc.cluster.local.", "AAAA", transport)
            .await
            .assert_negative("NOERROR");

        let srv = dig(
            address,
            "_http._tcp.api.default.svc.cluster.local.",
            "SRV",
            transport,
        )
        .await;
        assert_eq!(srv.answer.len(), 1, "{}", srv.raw);
        assert!(
            srv.answer[0]
                .data
                .ends_with(" 80 api.default.svc.cluster.local."),
            "{}",
            srv.raw
        );
        assert_eq!(srv.additional[0].data, "10.96.10.20");
        let syslog = dig(
            address,
            "_syslog._udp.api.default.svc.cluster.local.",
            "SRV",
            transport,
        )
        .await;
        assert!(
            syslog.answer[0]
                .data
                .ends_with(" 514 api.default.svc.cluster.local.")
        );
        for missing in ["_http._udp", "_grpc._tcp"] {
            dig(
                address,
                &format!("{missing}.api.default.svc.cluster.local."),
                "SRV",
                transport,
            )
            .await
            .assert_negative("NXDOMAIN");
        }

        let dual_a = dig(address, "dual.default.svc.cluster.local.", "A", transport).await;
        assert_eq!(dual_a.data("A"), ["10.96.10.30"]);
        let dual_aaaa = dig(
            address,
            "dual.default.svc.cluster.local.",
            "AAAA",
            transport,
        )
        .await;
        assert_eq!(dual_aaaa.data("AAAA"), ["fd00:10:96::1e"]);
        let endpoint = dig(
            address,
            "10-244-2-10.api.default.svc.cluster.local.",
            "A",
            transport,
        )
        .await;
        assert_eq!(endpoint.data("A"), ["10.244.2.10"]);
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headless_services_and_endpoint_names() {
    let server = start(&config(), &example::cluster()).await;
    let address = server.udp_addr();
    for transport in TRANSPORTS {
        let a = dig(address, "nginx.default.svc.cluster.local.", "A", transport).await;
        assert_eq!(a.data("A"), ["10.244.1.10", "10.244.1.11", "10.244.1.12"]);
        let aaaa = dig(
            address,
            "nginx.default.svc.cluster.local.",
            "AAAA",
            transport,
        )
        .await;
        assert_eq!(
            aaaa.data("AAAA"),
            ["fd00:10:244:1::a", "fd00:10:244:1::b", "fd00:10:244:1::c"]
        );
        let web0 = dig(
            address,
            "web-0.nginx.default.svc.cluster.local.",
            "A",
            transport,
        )
        .await;
        assert_eq!(web0.data("A"), ["10.244.1.10"]);
        let web0_v6 = dig(
            address,
            "web-0.nginx.default.svc.cluster.local.",
            "AAAA",
            transport,
        )
        .await;
        assert_eq!(web0_v6.data("AAAA"), ["fd00:10:244:1::a"]);
        for missing in [
            "web-3.nginx.default.svc.cluster.local.",
            "10-244-1-10.nginx.default.svc.cluster.local.",
            "*.nginx.default.svc.cluster.local.",
        ] {
            dig(address, missing, "A", transport)
                .await
                .assert_negative("NXDOMAIN");
        }

        let srv = dig(
            address,
            "_web._tcp.nginx.default.svc.cluster.local.",
            "SRV",
            transport,
        )
        .await;
        let mut targets: Vec<String> = srv
            .answer
            .iter()
            .map(|line| {
                line.data
                    .split_whitespace()
                    .skip(2)
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect();
        targets.sort();
        assert_eq!(
            targets,
            [
                "80 web-0.nginx.default.svc.cluster.local.",
                "80 web-1.nginx.default.svc.cluster.local.",
                "80 web-2.nginx.default.svc.cluster.local."
            ]
        );
        assert_eq!(
            srv.additional.len(),
            6,
            "A and AAAA per target:\n{}",
            srv.raw
        );
        // Headless SRV carries the endpoint (target) port, like CoreDNS.
        let cache = dig(
            address,
            "_redis._tcp.cache.ns1.svc.cluster.local.",
            "SRV",
            transport,
        )
        .await;
        assert_eq!(cache.answer.len(), 1);
        assert!(
            cache.answer[0]
                .data
                .ends_with(" 7379 cache-0.cache.ns1.svc.cluster.local.")
        );
        dig(address, "big.ns1.svc.cluster.local.", "SRV", transport)
            .await
            .assert_negative("NOERROR");
    }

    // Rotation: clients that take the first record see different ones.
    let mut firsts = std::collections::BTreeSet::new();
    for _ in 0..6 {
        let a = dig(address, "nginx.default.svc.cluster.local.", "A", &[]).await;
        firsts.insert(a.answer[0].data.clone());
    }
    assert!(
        firsts.len() > 1,
        "headless answers should rotate: {firsts:?}"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reverse_lookups() {
    let server = start(&config(), &example::cluster()).await;
    let address = server.udp_addr();
    for transport in TRANSPORTS {
        let cases = [
            ("10.96.10.20", "api.default.svc.cluster.local."),
            ("fd00:10:96::1e", "dual.default.svc.cluster.local."),
            ("10.244.1.10", "web-0.nginx.default.svc.cluster.local."),
            ("fd00:10:244:1::b", "web-1.nginx.default.svc.cluster.local."),
            ("10.244.3.21", "db-1.db.ns1.svc.cluster.local."),
        ];
        for (ip, name) in cases {
            let reply = dig(address, ip, "PTR-X", transport).await;
            assert_eq!(reply.data("PTR"), [name], "{ip}");
        }
        // Not-ready endpoints have no PTR.
        dig(address, "10.244.3.31", "PTR-X", transport)
            .await
            .assert_negative("NXDOMAIN");
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_names() {
    let server = start(&config(), &example::cluster()).await;
    let address = server.udp_addr();
    for transport in TRANSPORTS {
        let cname = dig(
            address,
            "ext.default.svc.cluster.local.",
            "CNAME",
            transport,
        )
        .await;
        assert_eq!(cname.data("CNAME"), ["www.example.com."]);
        let chased = dig(address, "to-api.ns1.svc.cluster.local.", "A", transport).await;
        assert_eq!(chased.data("CNAME"), ["api.default.svc.cluster.local."]);
        assert_eq!(chased.data("A"), ["10.96.10.20"]);
        for missing in [
            "ext-ip.default.svc.cluster.local.",
            "www.google.com.default.svc.cluster.local.",
            "foo.ext.default.svc.cluster.local.",
            "_http._tcp.ext.default.svc.cluster.local.",
        ] {
            dig(address, missing, "A", transport)
                .await
                .assert_negative("NXDOMAIN");
        }
        dig(address, "ext.default.svc.cluster.local.", "SRV", transport)
            .await
            .assert_negative("NOERROR");
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodata_versus_nxdomain_and_the_apex() {
    let server = start(&config(), &example::cluster()).await;
    let address = server.udp_addr();
    for transport in TRANSPORTS {
        let soa = dig(address, "cluster.local.", "SOA", transport).await;
        assert_eq!(soa.answer[0].rtype, "SOA");
        assert!(
            soa.answer[0]
                .data
                .starts_with("ns.dns.cluster.local. hostmaster.cluster.local.")
        );
        let ns = dig(address, "cluster.local.", "NS", transport).await;
        assert_eq!(ns.data("NS"), ["ns.dns.cluster.local."]);
        let version = dig(address, "dns-version.cluster.local.", "TXT", transport).await;
        assert_eq!(version.data("TXT"), ["\"1.1.0\""]);
        for (name, rtype) in [
            ("cluster.local.", "A"),
            ("cluster.local.", "TXT"),
            ("dns-version.cluster.local.", "A"),
            ("svc.cluster.local.", "A"),
            ("pod.cluster.local.", "A"),
            ("default.svc.cluster.local.", "A"),
            ("api.default.svc.cluster.local.", "TXT"),
            ("api.default.svc.cluster.local.", "ANY"),
            ("db.ns1.svc.cluster.local.", "AAAA"),
        ] {
            let reply = dig(address, name, rtype, transport).await;
            reply.assert_negative("NOERROR");
        }
        for (name, rtype) in [
            ("ns2.svc.cluster.local.", "A"),
            ("nope.default.svc.cluster.local.", "AAAA"),
            ("nope.default.svc.cluster.local.", "SOA"),
            ("a.b.c.api.default.svc.cluster.local.", "A"),
            ("foo.cluster.local.", "A"),
        ] {
            let reply = dig(address, name, rtype, transport).await;
            reply.assert_negative("NXDOMAIN");
            // Negative answers use the short negative TTL.
            assert_eq!(reply.authority[0].ttl, 1);
        }
    }
    // The client's spelling survives (0x20), for the answer and the SOA owner.
    let mixed = dig(address, "Api.DEFAULT.svc.Cluster.Local.", "A", &[]).await;
    assert_eq!(mixed.answer[0].owner, "Api.DEFAULT.svc.Cluster.Local.");
    let negative = dig(address, "Nope.default.svc.Cluster.Local.", "A", &[]).await;
    assert_eq!(negative.authority[0].owner, "Cluster.Local.");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncation_and_tcp_fallback_with_1000_endpoints() {
    let server = start(&config(), &example::cluster()).await;
    let address = server.udp_addr();
    let name = "big.ns1.svc.cluster.local.";
    let classic = dig(address, name, "A", &["+notcp", "+ignore", "+noedns"]).await;
    assert!(classic.has_flag("tc"), "{}", classic.raw);
    assert_eq!(classic.answer.len(), 29);
    let edns = dig(address, name, "A", &["+notcp", "+ignore", "+bufsize=1232"]).await;
    assert!(edns.has_flag("tc"));
    assert!(
        edns.answer.len() > 60 && edns.answer.len() < 80,
        "{}",
        edns.answer.len()
    );
    // Without +ignore dig retries over TCP on TC, as glibc does.
    let retried = dig(address, name, "A", &["+notcp"]).await;
    assert!(!retried.has_flag("tc"));
    assert_eq!(retried.answer.len(), 1000);
    let tcp = dig(address, name, "A", &["+tcp"]).await;
    assert_eq!(tcp.answer.len(), 1000);
    let mut unique = tcp.data("A");
    unique.dedup();
    assert_eq!(unique.len(), 1000);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_publish_not_ready_and_the_annotation() {
    let server = start(&config(), &example::cluster()).await;
    let address = server.udp_addr();
    for transport in TRANSPORTS {
        let cache = dig(address, "cache.ns1.svc.cluster.local.", "A", transport).await;
        assert_eq!(cache.data("A"), ["10.244.3.30"]);
        for name in ["cache-1", "cache-2"] {
            dig(
                address,
                &format!("{name}.cache.ns1.svc.cluster.local."),
                "A",
                transport,
            )
            .await
            .assert_negative("NXDOMAIN");
        }
        let db = dig(address, "db.ns1.svc.cluster.local.", "A", transport).await;
        assert_eq!(db.data("A"), ["10.244.3.20", "10.244.3.21", "10.244.3.22"]);
        dig(address, "idle.ns1.svc.cluster.local.", "A", transport)
            .await
            .assert_negative("NXDOMAIN");
        let legacy = dig(address, "legacy.ns1.svc.cluster.local.", "A", transport).await;
        assert_eq!(legacy.data("A"), ["10.244.3.50"]);
        let legacy_host = dig(
            address,
            "legacy-0.legacy.ns1.svc.cluster.local.",
            "A",
            transport,
        )
        .await;
        assert_eq!(legacy_host.data("A"), ["10.244.3.50"]);
    }
    server.shutdown().await;

    // CoreDNS-compatible: the annotation is ignored.
    let coredns_like = DnsConfig {
        tolerate_unready_annotation: false,
        ..config()
    };
    let server = start(&coredns_like, &example::cluster()).await;
    dig(server.udp_addr(), "legacy.ns1.svc.cluster.local.", "A", &[])
        .await
        .assert_negative("NXDOMAIN");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_shows_in_the_next_answer() {
    let config = config();
    let mut cluster = example::cluster();
    let server = start(&config, &cluster).await;
    let address = server.udp_addr();
    let before = dig(address, "cache.ns1.svc.cluster.local.", "A", &[]).await;
    assert_eq!(before.data("A"), ["10.244.3.30"]);

    // cache-1 turns ready, cache-0 turns not ready.
    let slice = cluster
        .endpoint_slices
        .iter_mut()
        .find(|slice| slice.metadata.name.as_deref() == Some("cache-1"))
        .unwrap();
    let slice = std::sync::Arc::make_mut(slice);
    let endpoints = slice.endpoints.as_mut().unwrap();
    endpoints[0].conditions.as_mut().unwrap().ready = Some(false);
    endpoints[1].conditions.as_mut().unwrap().ready = Some(true);
    server.publish(Snapshot::build(&cluster, &config.snapshot_settings()));

    let after = dig(address, "cache.ns1.svc.cluster.local.", "A", &[]).await;
    assert_eq!(after.data("A"), ["10.244.3.31"]);
    dig(address, "cache-0.cache.ns1.svc.cluster.local.", "A", &[])
        .await
        .assert_negative("NXDOMAIN");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_records_in_each_mode() {
    let cluster = example::cluster();
    let name = "10-244-2-50.default.pod.cluster.local.";
    for transport in TRANSPORTS {
        let disabled = start(
            &DnsConfig {
                pod_mode: PodMode::Disabled,
                ..config()
            },
            &cluster,
        )
        .await;
        for query in [name, "default.pod.cluster.local."] {
            dig(disabled.udp_addr(), query, "A", transport)
                .await
                .assert_negative("NXDOMAIN");
        }
        disabled.shutdown().await;

        let insecure = start(
            &DnsConfig {
                pod_mode: PodMode::Insecure,
                ..config()
            },
            &cluster,
        )
        .await;
        let address = insecure.udp_addr();
        assert_eq!(
            dig(address, name, "A", transport).await.data("A"),
            ["10.244.2.50"]
        );
        let anywhere = dig(address, "1-2-3-4.ns1.pod.cluster.local.", "A", transport).await;
        assert_eq!(anywhere.data("A"), ["1.2.3.4"]);
        dig(address, "default.pod.cluster.local.", "A", transport)
            .await
            .assert_negative("NOERROR");
        dig(address, name, "AAAA", transport)
            .await
            .assert_negative("NOERROR");
        for missing in [
            "blah.default.pod.cluster.local.",
            "1-2-3-4.ns2.pod.cluster.local.",
        ] {
            dig(address, missing, "A", transport)
                .await
                .assert_negative("NXDOMAIN");
        }
        insecure.shutdown().await;

        let verified = start(
            &DnsConfig {
                pod_mode: PodMode::Verified,
                ..config()
            },
            &cluster,
        )
        .await;
        let address = verified.udp_addr();
        assert_eq!(
            dig(address, name, "A", transport).await.data("A"),
            ["10.244.2.50"]
        );
        let secondary = dig(
            address,
            "fd00-10-244-1--a.default.pod.cluster.local.",
            "AAAA",
            transport,
        )
        .await;
        assert_eq!(secondary.data("AAAA"), ["fd00:10:244:1::a"]);
        for missing in [
            "10-244-2-50.ns1.pod.cluster.local.",
            "1-2-3-4.default.pod.cluster.local.",
        ] {
            dig(address, missing, "A", transport)
                .await
                .assert_negative("NXDOMAIN");
        }
        verified.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_off_is_refused() {
    let server = start(&config(), &example::cluster()).await;
    for transport in TRANSPORTS {
        let reply = dig(server.udp_addr(), "www.example.com.", "A", transport).await;
        reply.assert_status("REFUSED");
        assert!(reply.answer.is_empty());
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_on_with_a_cache() {
    let upstream = upstream::start();
    let config = DnsConfig {
        upstreams: Upstreams::Servers(vec![upstream.addr]),
        ..config()
    };
    let server = start(&config, &example::cluster()).await;
    let address = server.udp_addr();
    for transport in TRANSPORTS {
        let reply = dig(address, "www.example.com.", "A", transport).await;
        reply.assert_status("NOERROR");
        assert_eq!(reply.data("A"), ["192.0.2.53"]);
        let missing = dig(address, "nothing.example.org.", "A", transport).await;
        missing.assert_status("NXDOMAIN");
        // ExternalName outside the zone: CNAME, then the target's address from upstream.
        let ext = dig(address, "ext.default.svc.cluster.local.", "AAAA", transport).await;
        assert_eq!(ext.data("CNAME"), ["www.example.com."]);
        assert_eq!(ext.data("AAAA"), ["2001:db8::53"]);
        // Cluster names are still answered locally.
        let api = dig(address, "api.default.svc.cluster.local.", "A", transport).await;
        assert_eq!(api.data("A"), ["10.96.10.20"]);
    }
    let asked = upstream.queries.load(std::sync::atomic::Ordering::Relaxed);
    let again = dig(address, "www.example.com.", "A", &[]).await;
    assert_eq!(again.data("A"), ["192.0.2.53"]);
    assert_eq!(
        upstream.queries.load(std::sync::atomic::Ordering::Relaxed),
        asked,
        "a repeated query is answered from the cache"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_that_never_answers_gets_the_client_a_servfail() {
    let upstream = upstream::silent();
    let config = DnsConfig {
        upstreams: Upstreams::Servers(vec![upstream.addr]),
        forward_timeout: Duration::from_millis(300),
        ..config()
    };
    let server = start(&config, &example::cluster()).await;
    let address = server.udp_addr();
    for transport in TRANSPORTS {
        // dig waits 3 s: the answer must come from the server's own 300 ms forward timeout.
        let reply = dig(address, "www.example.com.", "A", transport).await;
        reply.assert_status("SERVFAIL");
        assert!(reply.answer.is_empty());
        // What `dig CH TXT version.bind` sends: forwarded too, and failed the same way.
        let options = [transport, &["-c", "CH"]].concat();
        dig(address, "version.bind.", "TXT", &options)
            .await
            .assert_status("SERVFAIL");
        // Cluster names never wait on the upstream.
        let api = dig(address, "api.default.svc.cluster.local.", "A", transport).await;
        assert_eq!(api.data("A"), ["10.96.10.20"]);
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servfail_until_the_first_sync() {
    let config = config();
    let settings = config.snapshot_settings();
    let server = DnsServer::start(
        config.server_settings().unwrap(),
        Snapshot::unsynced(&settings),
    )
    .await
    .unwrap();
    let address = server.udp_addr();
    for transport in TRANSPORTS {
        dig(address, "api.default.svc.cluster.local.", "A", transport)
            .await
            .assert_status("SERVFAIL");
        dig(address, "nope.default.svc.cluster.local.", "A", transport)
            .await
            .assert_status("SERVFAIL");
    }
    server.publish(Snapshot::build(&example::cluster(), &settings));
    let reply = dig(address, "api.default.svc.cluster.local.", "A", &[]).await;
    assert_eq!(reply.data("A"), ["10.96.10.20"]);
    server.shutdown().await;
}

fn exchange_raw(server: SocketAddr, packet: &[u8]) -> Option<Vec<u8>> {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    socket.send_to(packet, server).unwrap();
    let mut buffer = [0u8; 4096];
    socket
        .recv(&mut buffer)
        .ok()
        .map(|len| buffer[..len].to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_queries_and_unknown_opcodes() {
    let server = start(&config(), &example::cluster()).await;
    let address = server.udp_addr();
    let replies = tokio::task::spawn_blocking(move || {
        // Header claims one question, none follows.
        let truncated = exchange_raw(address, &[0x11, 0x22, 0x01, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
        // Opcode 2 (STATUS) with a question.
        let mut status = vec![0x33, 0x44, 0x10, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        status.extend_from_slice(b"\x03api\x00\x00\x01\x00\x01");
        let not_implemented = exchange_raw(address, &status);
        // A compression loop in the question name.
        let mut looping = vec![0x55, 0x66, 0x01, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        looping.extend_from_slice(&[0xC0, 12, 0, 1, 0, 1]);
        let loop_reply = exchange_raw(address, &looping);
        // Too short for a header: dropped.
        let short = exchange_raw(address, &[1, 2, 3]);
        (truncated, not_implemented, loop_reply, short)
    })
    .await
    .unwrap();
    let rcode = |reply: &Option<Vec<u8>>| reply.as_ref().map(|reply| reply[3] & 0xF);
    assert_eq!(rcode(&replies.0), Some(1), "FORMERR");
    assert_eq!(replies.0.as_ref().unwrap()[..2], [0x11, 0x22]);
    assert_eq!(rcode(&replies.1), Some(4), "NOTIMP");
    assert_eq!(rcode(&replies.2), Some(1), "FORMERR for a pointer loop");
    assert_eq!(replies.3, None);
    // Still serving.
    let reply = dig(address, "api.default.svc.cluster.local.", "A", &[]).await;
    assert_eq!(reply.data("A"), ["10.96.10.20"]);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_endpoint() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = start(&config(), &example::cluster()).await;
    let address = server.udp_addr();
    dig(address, "api.default.svc.cluster.local.", "A", &[]).await;
    dig(address, "nope.default.svc.cluster.local.", "A", &["+tcp"]).await;
    let mut stream = tokio::net::TcpStream::connect(server.metrics_addr().unwrap())
        .await
        .unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut body = String::new();
    stream.read_to_string(&mut body).await.unwrap();
    assert!(body.starts_with("HTTP/1.1 200 OK"), "{body}");
    for expected in [
        "hollow_dns_queries_total{type=\"A\",rcode=\"NOERROR\"} 1",
        "hollow_dns_queries_total{type=\"A\",rcode=\"NXDOMAIN\"} 1",
        "hollow_dns_request_duration_seconds_count 2",
        "hollow_dns_answer_records_total 1",
        "hollow_dns_synced 1",
        "hollow_dns_snapshot_age_seconds ",
        "hollow_dns_snapshot_names ",
    ] {
        assert!(body.contains(expected), "missing {expected:?} in\n{body}");
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_queries_is_answered_in_full() {
    let server = start(&config(), &example::cluster()).await;
    let address = server.udp_addr();
    let answered = tokio::task::spawn_blocking(move || {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        // More than one receive batch, sent before the server can drain any of it.
        for id in 0..100u16 {
            let mut query = id.to_be_bytes().to_vec();
            query.extend_from_slice(&[1, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
            query.extend_from_slice(
                b"\x03api\x07default\x03svc\x07cluster\x05local\x00\x00\x01\x00\x01",
            );
            socket.send_to(&query, address).unwrap();
        }
        let mut seen = std::collections::BTreeSet::new();
        let mut buffer = [0u8; 512];
        while let Ok(len) = socket.recv(&mut buffer) {
            assert_eq!(buffer[3] & 0xF, 0, "NOERROR");
            assert_eq!(&buffer[len - 4..len], &[10, 96, 10, 20]);
            seen.insert(u16::from_be_bytes([buffer[0], buffer[1]]));
            if seen.len() == 100 {
                break;
            }
        }
        seen.len()
    })
    .await
    .unwrap();
    assert_eq!(answered, 100);
    server.shutdown().await;
}
