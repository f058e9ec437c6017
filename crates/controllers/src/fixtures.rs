//! Builders for test objects (tests only).

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{
    Container, ContainerPort, Pod, PodCondition, PodIP, PodSpec, PodStatus, Service, ServicePort,
    ServiceSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;

pub fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .collect()
}

pub fn time(seconds: i64) -> Time {
    Time(Timestamp::from_second(1_800_000_000 + seconds).expect("valid timestamp"))
}

pub fn metadata(name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_string()),
        namespace: Some("default".to_string()),
        uid: Some(format!("uid-{name}")),
        resource_version: Some("1".to_string()),
        creation_timestamp: Some(time(0)),
        ..ObjectMeta::default()
    }
}

/// A service selecting `app=<selector_app>` with one port `web` 80 → `http`.
pub fn service(name: &str, selector_app: &str) -> Service {
    Service {
        metadata: metadata(name),
        spec: Some(ServiceSpec {
            selector: Some(labels(&[("app", selector_app)])),
            cluster_ip: Some("None".to_string()),
            ip_families: Some(vec!["IPv4".to_string()]),
            ports: Some(vec![ServicePort {
                name: Some("web".to_string()),
                port: 80,
                protocol: Some("TCP".to_string()),
                target_port: Some(IntOrString::String("http".to_string())),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

/// A Running pod `app=<app>` with container port `http` 8080, Ready as told, with one IP.
pub fn pod(name: &str, app: &str, ip: &str, ready: bool) -> Pod {
    Pod {
        metadata: ObjectMeta {
            labels: Some(labels(&[("app", app)])),
            ..metadata(name)
        },
        spec: Some(PodSpec {
            node_name: Some("node-a".to_string()),
            containers: vec![Container {
                name: "main".to_string(),
                ports: Some(vec![ContainerPort {
                    name: Some("http".to_string()),
                    container_port: 8080,
                    protocol: Some("TCP".to_string()),
                    ..ContainerPort::default()
                }]),
                ..Container::default()
            }],
            ..PodSpec::default()
        }),
        status: Some(PodStatus {
            phase: Some("Running".to_string()),
            pod_ip: Some(ip.to_string()),
            pod_ips: Some(vec![PodIP { ip: ip.to_string() }]),
            conditions: Some(vec![PodCondition {
                type_: "Ready".to_string(),
                status: if ready { "True" } else { "False" }.to_string(),
                ..PodCondition::default()
            }]),
            ..PodStatus::default()
        }),
    }
}

pub fn arcs<T>(items: impl IntoIterator<Item = T>) -> Vec<Arc<T>> {
    items.into_iter().map(Arc::new).collect()
}
