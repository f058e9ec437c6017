//! The watch side end to end: hollow's API server in-process on a loopback port, objects
//! written through kube-rs, answers read with dig. Every wait is bounded.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hollow_apiserver::ApiServer;
use hollow_dns::{DnsConfig, DnsServer, Snapshot, example, watch};
use hollow_store::{Store, StoreOptions};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Api;
use kube::api::PostParams;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::dig::{Answer, dig};

const WAIT: Duration = Duration::from_secs(15);

async fn start_api_server() -> (SocketAddr, oneshot::Sender<()>) {
    let store = Store::in_memory(StoreOptions::default());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let server = ApiServer::new(store, address).await.unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(server.serve(listener, async {
        let _ = stopped.await;
    }));
    (address, stop)
}

fn client(address: SocketAddr) -> kube::Client {
    let url: http::Uri = format!("http://{address}").parse().unwrap();
    let mut config = kube::Config::new(url);
    config.default_namespace = "default".into();
    kube::Client::try_from(config).unwrap()
}

/// Asks until `accept` holds, for at most [`WAIT`]; returns the accepted answer.
async fn dig_until(
    server: SocketAddr,
    name: &str,
    rtype: &str,
    accept: impl Fn(&Answer) -> bool,
) -> Answer {
    let deadline = Instant::now() + WAIT;
    loop {
        let answer = dig(server, name, rtype, &[]).await;
        if accept(&answer) {
            return answer;
        }
        assert!(
            Instant::now() < deadline,
            "{name} {rtype} never reached the expected answer; last:\n{}",
            answer.raw
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_made_through_the_api_show_in_answers() {
    let (api_address, stop_api) = start_api_server().await;
    let config = DnsConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        upstreams: hollow_dns::Upstreams::Disabled,
        udp_workers: 1,
        ..DnsConfig::default()
    };
    let server = Arc::new(
        DnsServer::start(
            config.server_settings().unwrap(),
            Snapshot::unsynced(&config.snapshot_settings()),
        )
        .await
        .unwrap(),
    );
    let dns = server.udp_addr();
    let (stop_watch, watch_stopped) = oneshot::channel::<()>();
    let watcher = {
        let server = Arc::clone(&server);
        let client = client(api_address);
        let config = config.clone();
        tokio::spawn(async move {
            watch(&server, client, &config, async {
                let _ = watch_stopped.await;
            })
            .await
        })
    };

    // The API server creates default/kubernetes itself; once it resolves, the first sync is in.
    dig_until(
        dns,
        "kubernetes.default.svc.cluster.local.",
        "A",
        |answer| answer.status == "NOERROR" && !answer.answer.is_empty(),
    )
    .await;

    let client = client(api_address);
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let slices: Api<EndpointSlice> = Api::namespaced(client, "default");
    let headless = example::service(
        "default",
        "web",
        json!({"clusterIP": "None", "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}),
    );
    services
        .create(&PostParams::default(), &headless)
        .await
        .unwrap();
    let slice = example::slice(
        "default",
        "web-abc",
        "web",
        "IPv4",
        &[("http", 8080, "TCP")],
        vec![
            example::endpoint("10.244.7.10", Some("web-0"), true, false),
            example::endpoint("10.244.7.11", Some("web-1"), true, false),
        ],
    );
    slices.create(&PostParams::default(), &slice).await.unwrap();
    dig_until(dns, "web.default.svc.cluster.local.", "A", |answer| {
        answer.data("A") == ["10.244.7.10", "10.244.7.11"]
    })
    .await;
    let srv = dig(dns, "_http._tcp.web.default.svc.cluster.local.", "SRV", &[]).await;
    assert_eq!(srv.answer.len(), 2, "{}", srv.raw);

    // web-1 turns not ready: it leaves the service name and loses its own name.
    let mut changed = slices.get("web-abc").await.unwrap();
    changed.endpoints.as_mut().unwrap()[1]
        .conditions
        .as_mut()
        .unwrap()
        .ready = Some(false);
    slices
        .replace("web-abc", &PostParams::default(), &changed)
        .await
        .unwrap();
    dig_until(dns, "web.default.svc.cluster.local.", "A", |answer| {
        answer.data("A") == ["10.244.7.10"]
    })
    .await;
    dig(dns, "web-1.web.default.svc.cluster.local.", "A", &[])
        .await
        .assert_negative("NXDOMAIN");

    // A ClusterIP service answers with the address the API server allocated.
    let created = services
        .create(
            &PostParams::default(),
            &example::service(
                "default",
                "api",
                json!({"ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}),
            ),
        )
        .await
        .unwrap();
    let cluster_ip = created.spec.unwrap().cluster_ip.unwrap();
    dig_until(dns, "api.default.svc.cluster.local.", "A", |answer| {
        answer.data("A") == [cluster_ip.clone()]
    })
    .await;

    // The API server goes away: the last good data keeps being served.
    drop(stop_api);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let still = dig(dns, "web.default.svc.cluster.local.", "A", &[]).await;
    assert_eq!(still.data("A"), ["10.244.7.10"]);

    let _ = stop_watch.send(());
    watcher.await.unwrap().unwrap();
    Arc::try_unwrap(server)
        .ok()
        .expect("the watch task released the server")
        .shutdown()
        .await;
}
