//! The example cluster of the DNS checklist (dns-spec.md §1), as Kubernetes objects.
//!
//! Used by the tests (unit and integration) and handy for trying the server by hand. It holds
//! every awkward case the checklist names: a dual-stack ClusterIP service without endpoints,
//! a dual-stack headless StatefulSet whose IPv4 endpoints sit twice in overlapping slices,
//! not-ready and terminating endpoints with and without `publishNotReadyAddresses`, the
//! tolerate-unready annotation, ExternalNames (a host, an IP, an in-zone target, and one named
//! `com`), and a headless service with 1,000 endpoints in 10 slices.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Namespace, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::records::ClusterState;

fn object<T: DeserializeOwned>(value: Value) -> Arc<T> {
    Arc::new(serde_json::from_value(value).expect("example objects are well-formed"))
}

/// A Service; `spec` is merged over `{}`.
pub fn service(namespace: &str, name: &str, spec: Value) -> Arc<Service> {
    object(json!({
        "metadata": {"namespace": namespace, "name": name},
        "spec": spec,
    }))
}

/// One endpoint of a slice: address, hostname, ready/serving/terminating conditions.
pub fn endpoint(address: &str, hostname: Option<&str>, ready: bool, terminating: bool) -> Value {
    let mut value = json!({
        "addresses": [address],
        "conditions": {"ready": ready, "serving": ready || terminating, "terminating": terminating},
    });
    if let Some(hostname) = hostname {
        value["hostname"] = json!(hostname);
    }
    value
}

/// An EndpointSlice of `service`; `ports` are (name, port, protocol).
pub fn slice(
    namespace: &str,
    name: &str,
    service: &str,
    address_type: &str,
    ports: &[(&str, i32, &str)],
    endpoints: Vec<Value>,
) -> Arc<EndpointSlice> {
    let ports: Vec<Value> = ports
        .iter()
        .map(|(name, port, protocol)| json!({"name": name, "port": port, "protocol": protocol}))
        .collect();
    object(json!({
        "metadata": {
            "namespace": namespace,
            "name": name,
            "labels": {"kubernetes.io/service-name": service},
        },
        "addressType": address_type,
        "ports": ports,
        "endpoints": endpoints,
    }))
}

pub fn namespace(name: &str) -> Arc<Namespace> {
    object(json!({"metadata": {"name": name}}))
}

pub fn pod(namespace: &str, name: &str, addresses: &[&str]) -> Arc<Pod> {
    let pod_ips: Vec<Value> = addresses.iter().map(|ip| json!({"ip": ip})).collect();
    object(json!({
        "metadata": {"namespace": namespace, "name": name},
        "status": {"phase": "Running", "podIP": addresses.first(), "podIPs": pod_ips},
    }))
}

/// The whole example cluster.
pub fn cluster() -> ClusterState {
    let tcp =
        |name: &'static str, port: i32| json!({"name": name, "port": port, "protocol": "TCP"});
    let mut services = vec![
        service(
            "kube-system",
            "kube-dns",
            json!({"clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"], "ports": [
                {"name": "dns", "port": 53, "protocol": "UDP"},
                {"name": "dns-tcp", "port": 53, "protocol": "TCP"},
                {"name": "metrics", "port": 9153, "protocol": "TCP"}]}),
        ),
        service(
            "default",
            "kubernetes",
            json!({"clusterIP": "10.96.0.1", "ports": [tcp("https", 443)]}),
        ),
        service(
            "default",
            "api",
            json!({"clusterIP": "10.96.10.20", "clusterIPs": ["10.96.10.20"], "ports": [
                {"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080},
                {"name": "syslog", "port": 514, "protocol": "UDP", "targetPort": 5514}]}),
        ),
        service(
            "default",
            "dual",
            json!({"clusterIP": "10.96.10.30", "clusterIPs": ["10.96.10.30", "fd00:10:96::1e"],
                   "ipFamilyPolicy": "RequireDualStack", "ports": [tcp("http", 80)]}),
        ),
        service(
            "default",
            "nginx",
            json!({"clusterIP": "None", "clusterIPs": ["None"], "ipFamilyPolicy": "RequireDualStack",
                   "ports": [tcp("web", 80), tcp("metrics", 9113)]}),
        ),
        service(
            "default",
            "ext",
            json!({"type": "ExternalName", "externalName": "www.example.com"}),
        ),
        service(
            "default",
            "ext-ip",
            json!({"type": "ExternalName", "externalName": "192.0.2.10"}),
        ),
        service(
            "default",
            "com",
            json!({"type": "ExternalName", "externalName": "api.default.svc.cluster.local"}),
        ),
        service(
            "ns1",
            "db",
            json!({"clusterIP": "None", "publishNotReadyAddresses": true, "ports": [tcp("pg", 5432)]}),
        ),
        service(
            "ns1",
            "cache",
            json!({"clusterIP": "None", "ports": [{"name": "redis", "port": 6379, "protocol": "TCP", "targetPort": 7379}]}),
        ),
        service(
            "ns1",
            "idle",
            json!({"clusterIP": "None", "ports": [tcp("http", 80)]}),
        ),
        service(
            "ns1",
            "to-api",
            json!({"type": "ExternalName", "externalName": "api.default.svc.cluster.local"}),
        ),
        service("ns1", "big", json!({"clusterIP": "None"})),
    ];
    services.push(object(json!({
        "metadata": {"namespace": "ns1", "name": "legacy", "annotations": {
            "service.alpha.kubernetes.io/tolerate-unready-endpoints": "true"}},
        "spec": {"clusterIP": "None", "ports": [tcp("http", 80)]},
    })));

    let mut slices = vec![
        slice(
            "kube-system",
            "kube-dns-1",
            "kube-dns",
            "IPv4",
            &[
                ("dns", 53, "UDP"),
                ("dns-tcp", 53, "TCP"),
                ("metrics", 9153, "TCP"),
            ],
            vec![
                endpoint("10.244.0.5", None, true, false),
                endpoint("10.244.0.6", None, true, false),
            ],
        ),
        slice(
            "default",
            "api-1",
            "api",
            "IPv4",
            &[("http", 8080, "TCP"), ("syslog", 5514, "UDP")],
            vec![
                endpoint("10.244.2.10", None, true, false),
                endpoint("10.244.2.11", None, true, false),
            ],
        ),
        slice(
            "default",
            "nginx-v4-a",
            "nginx",
            "IPv4",
            &[("web", 80, "TCP"), ("metrics", 9113, "TCP")],
            vec![
                endpoint("10.244.1.10", Some("web-0"), true, false),
                endpoint("10.244.1.11", Some("web-1"), true, false),
            ],
        ),
        slice(
            "default",
            "nginx-v4-b",
            "nginx",
            "IPv4",
            &[("web", 80, "TCP"), ("metrics", 9113, "TCP")],
            vec![
                endpoint("10.244.1.11", Some("web-1"), true, false),
                endpoint("10.244.1.12", Some("web-2"), true, false),
            ],
        ),
        slice(
            "default",
            "nginx-v6",
            "nginx",
            "IPv6",
            &[("web", 80, "TCP"), ("metrics", 9113, "TCP")],
            vec![
                endpoint("fd00:10:244:1::a", Some("web-0"), true, false),
                endpoint("fd00:10:244:1::b", Some("web-1"), true, false),
                endpoint("fd00:10:244:1::c", Some("web-2"), true, false),
            ],
        ),
        slice(
            "ns1",
            "db-1",
            "db",
            "IPv4",
            &[("pg", 5432, "TCP")],
            vec![
                endpoint("10.244.3.20", Some("db-0"), true, false),
                endpoint("10.244.3.21", Some("db-1"), true, false),
                endpoint("10.244.3.22", Some("db-2"), true, true),
            ],
        ),
        slice(
            "ns1",
            "cache-1",
            "cache",
            "IPv4",
            &[("redis", 7379, "TCP")],
            vec![
                endpoint("10.244.3.30", Some("cache-0"), true, false),
                endpoint("10.244.3.31", Some("cache-1"), false, false),
                endpoint("10.244.3.32", Some("cache-2"), false, true),
            ],
        ),
        slice(
            "ns1",
            "idle-1",
            "idle",
            "IPv4",
            &[("http", 80, "TCP")],
            vec![endpoint("10.244.3.40", Some("idle-0"), false, false)],
        ),
        slice(
            "ns1",
            "legacy-1",
            "legacy",
            "IPv4",
            &[("http", 80, "TCP")],
            vec![endpoint("10.244.3.50", Some("legacy-0"), false, false)],
        ),
    ];
    let big_addresses: Vec<String> = (100..104)
        .flat_map(|third| (1..=250).map(move |fourth| format!("10.244.{third}.{fourth}")))
        .collect();
    for (index, chunk) in big_addresses.chunks(100).enumerate() {
        slices.push(slice(
            "ns1",
            &format!("big-{index}"),
            "big",
            "IPv4",
            &[],
            chunk
                .iter()
                .map(|address| endpoint(address, None, true, false))
                .collect(),
        ));
    }

    let pods = vec![
        pod("default", "client", &["10.244.2.50"]),
        pod("default", "web-0", &["10.244.1.10", "fd00:10:244:1::a"]),
        pod("default", "web-1", &["10.244.1.11", "fd00:10:244:1::b"]),
        pod("default", "web-2", &["10.244.1.12", "fd00:10:244:1::c"]),
        pod("default", "api-5d8f-abcde", &["10.244.2.10"]),
        pod("default", "api-5d8f-fghij", &["10.244.2.11"]),
    ];
    ClusterState {
        services,
        endpoint_slices: slices,
        namespaces: vec![
            namespace("default"),
            namespace("ns1"),
            namespace("kube-system"),
        ],
        pods,
    }
}
