//! The balancer against a live in-process API server: a selector-less Service with a
//! hand-written EndpointSlice, changed while a balancer watches it.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;

use hollow_lb::{Balancer, Error};
use hollow_testkit::LocalApiServer;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const WAIT: Duration = Duration::from_secs(10);

/// A server that writes its own address to each connection and closes it.
async fn start_backend(address: &str) -> SocketAddr {
    let listener = TcpListener::bind(address).await.expect("bind backend");
    let address = listener.local_addr().expect("backend address");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let _ = stream.write_all(address.to_string().as_bytes()).await;
        }
    });
    address
}

fn slice(endpoints: serde_json::Value, port: u16) -> EndpointSlice {
    serde_json::from_value(json!({
        "metadata": {"name": "web-1", "labels": {"kubernetes.io/service-name": "web"}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": port, "protocol": "TCP"}],
        "endpoints": endpoints,
    }))
    .expect("slice")
}

async fn with_version(slices: &Api<EndpointSlice>, mut slice: EndpointSlice) -> EndpointSlice {
    let current = slices.get("web-1").await.expect("current slice");
    slice.metadata.resource_version = current.metadata.resource_version;
    slice
}

async fn wait_for_change(balancer: &mut Balancer, until: impl Fn(&hollow_lb::Endpoints) -> bool) {
    tokio::time::timeout(WAIT, async {
        while !until(&balancer.endpoints()) {
            balancer.changed().await.expect("watch running");
        }
    })
    .await
    .expect("the balancer saw the change in time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follows_the_endpoint_slices_of_a_service() {
    let api = LocalApiServer::start().await;
    let services: Api<Service> = Api::namespaced(api.client.clone(), "default");
    let slices: Api<EndpointSlice> = Api::namespaced(api.client.clone(), "default");
    let service: Service = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"clusterIP": "None", "ports": [{"name": "http", "port": 80}]}
    }))
    .unwrap();
    services
        .create(&PostParams::default(), &service)
        .await
        .expect("service");

    let first = start_backend("127.0.41.1:0").await;
    let port = first.port();
    let second = start_backend(&format!("127.0.41.2:{port}")).await;

    // Nothing yet: a typed error, not a hang.
    let mut balancer = Balancer::watch(api.client.clone(), "default", "web", "http")
        .await
        .expect("watch starts");
    assert!(matches!(balancer.pick(), Err(Error::NoEndpoints { .. })));

    let created = slice(
        json!([
            {"addresses": ["127.0.41.1"], "conditions": {"ready": true}},
            {"addresses": ["127.0.41.2"], "conditions": {"ready": true}},
            {"addresses": ["127.0.41.3"], "conditions": {"ready": false}},
        ]),
        port,
    );
    slices
        .create(&PostParams::default(), &created)
        .await
        .expect("slice");
    wait_for_change(&mut balancer, |endpoints| endpoints.usable().len() == 2).await;

    let mut reached = HashSet::new();
    for _ in 0..4 {
        let endpoint = balancer.pick().expect("an endpoint");
        let mut stream = TcpStream::connect(endpoint.address())
            .await
            .expect("connect");
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.expect("read");
        assert_eq!(answer, endpoint.address().to_string());
        reached.insert(answer);
    }
    assert_eq!(
        reached,
        HashSet::from([first.to_string(), second.to_string()])
    );

    let least_loaded = balancer.pick_least_loaded().expect("an endpoint");
    let other = balancer.pick_least_loaded().expect("an endpoint");
    assert_ne!(least_loaded.address(), other.address());
    let sticky = balancer.pick_by_key("client-a").unwrap().address();
    assert_eq!(balancer.pick_by_key("client-a").unwrap().address(), sticky);

    // connect() skips an endpoint that refuses: 127.0.41.3 listens nowhere.
    let refusing = slice(
        json!([
            {"addresses": ["127.0.41.3"], "conditions": {"ready": true}},
            {"addresses": ["127.0.41.2"], "conditions": {"ready": true}},
        ]),
        port,
    );
    slices
        .replace(
            "web-1",
            &PostParams::default(),
            &with_version(&slices, refusing).await,
        )
        .await
        .expect("replace slice");
    wait_for_change(&mut balancer, |endpoints| {
        endpoints.is_usable(SocketAddr::from(([127, 0, 41, 3], port)))
    })
    .await;
    for _ in 0..4 {
        let mut stream = balancer.connect(WAIT).await.expect("one endpoint answers");
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.expect("read");
        assert_eq!(answer, second.to_string());
    }

    // The first backend turns not ready: picks move to the second at once.
    let patch = json!({"endpoints": [
        {"addresses": ["127.0.41.1"], "conditions": {"ready": false, "serving": true, "terminating": true}},
        {"addresses": ["127.0.41.2"], "conditions": {"ready": true}},
    ]});
    slices
        .patch("web-1", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("patch slice");
    wait_for_change(&mut balancer, |endpoints| endpoints.usable().len() == 1).await;
    for _ in 0..4 {
        assert_eq!(balancer.pick().unwrap().address(), second);
    }

    // Only a terminating-but-serving endpoint left: it is the fallback.
    let patch = json!({"endpoints": [
        {"addresses": ["127.0.41.1"], "conditions": {"ready": false, "serving": true, "terminating": true}},
    ]});
    slices
        .patch("web-1", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("patch slice");
    wait_for_change(&mut balancer, |endpoints| {
        endpoints.is_terminating_fallback()
    })
    .await;
    assert_eq!(balancer.pick().unwrap().address(), first);

    slices
        .delete("web-1", &DeleteParams::default())
        .await
        .expect("delete slice");
    wait_for_change(&mut balancer, |endpoints| endpoints.all().is_empty()).await;
    let error = balancer.pick().expect_err("no endpoint left");
    assert_eq!(
        error.to_string(),
        "service default/web has no ready endpoint for port http"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_api_server_is_an_error() {
    // A port that was just free: nothing listens there.
    let address = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let config = kube::Config::new(format!("http://{address}").parse().unwrap());
    let client = Client::try_from(config).unwrap();
    let result = tokio::time::timeout(WAIT, Balancer::watch(client, "default", "web", 80u16))
        .await
        .expect("fails promptly");
    assert!(matches!(result, Err(Error::Watch { .. })), "{result:?}");
}
