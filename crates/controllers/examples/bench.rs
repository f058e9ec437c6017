//! Reconcile cost from a cold start: 10,000 pods over 1,000 services.
//!
//! `cargo run --release -p hollow-controllers --example bench [pods] [services]`
//!
//! Every service selects its own `app=<n>` label (10 pods each by default), all in one
//! namespace. As in the controller, pods are indexed by label once
//! ([`endpointslice::PodIndex`]) and each Service gets its candidates from the index.
//! Measures planning only: the cost of the pure reconcilers, not of the API writes.
//!
//! Then it flips the readiness of 1,000 pods one at a time (each with a new
//! resourceVersion, as the API server would give it) and plans the affected Service's
//! slices after each flip, with a warm per-Service endpoint memo
//! ([`endpointslice::EndpointCache`]) as the controller keeps it, and without one.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use hollow_controllers::endpointslice::{self, EndpointCache, Settings};
use hollow_controllers::{endpoints, plan::Object};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, Pod, PodCondition, PodIP, PodSpec, PodStatus, Service, ServicePort,
    ServiceSpec,
};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

fn metadata(name: String, labels: BTreeMap<String, String>) -> ObjectMeta {
    ObjectMeta {
        uid: Some(format!("uid-{name}")),
        name: Some(name),
        namespace: Some("default".to_string()),
        labels: Some(labels),
        resource_version: Some("1".to_string()),
        ..ObjectMeta::default()
    }
}

fn service(index: usize) -> Service {
    Service {
        metadata: metadata(format!("svc-{index}"), BTreeMap::new()),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".to_string()),
            selector: Some(BTreeMap::from([(
                "app".to_string(),
                format!("app-{index}"),
            )])),
            ports: Some(vec![ServicePort {
                name: Some("http".to_string()),
                port: 80,
                target_port: Some(IntOrString::String("http".to_string())),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

fn pod(index: usize, services: usize) -> Pod {
    let ip = format!(
        "10.{}.{}.{}",
        index / 65536 % 256,
        index / 256 % 256,
        index % 256
    );
    Pod {
        metadata: metadata(
            format!("pod-{index}"),
            BTreeMap::from([("app".to_string(), format!("app-{}", index % services))]),
        ),
        spec: Some(PodSpec {
            node_name: Some("node-a".to_string()),
            containers: vec![Container {
                name: "main".to_string(),
                ports: Some(vec![ContainerPort {
                    name: Some("http".to_string()),
                    container_port: 8080,
                    ..ContainerPort::default()
                }]),
                ..Container::default()
            }],
            ..PodSpec::default()
        }),
        status: Some(PodStatus {
            phase: Some("Running".to_string()),
            pod_ip: Some(ip.clone()),
            pod_ips: Some(vec![PodIP { ip }]),
            conditions: Some(vec![PodCondition {
                type_: "Ready".to_string(),
                status: "True".to_string(),
                ..PodCondition::default()
            }]),
            ..PodStatus::default()
        }),
    }
}

fn main() {
    let mut arguments = std::env::args().skip(1);
    let pod_count: usize = arguments
        .next()
        .and_then(|value| value.parse().ok())
        .unwrap_or(10_000);
    let service_count: usize = arguments
        .next()
        .and_then(|value| value.parse().ok())
        .unwrap_or(1_000);
    let services: Vec<Service> = (0..service_count).map(service).collect();
    let pods: Vec<Arc<Pod>> = (0..pod_count)
        .map(|index| Arc::new(pod(index, service_count)))
        .collect();

    let started = Instant::now();
    let index = endpointslice::PodIndex::new(pods.iter().cloned());
    let candidates: Vec<Vec<Arc<Pod>>> = services
        .iter()
        .map(|service| index.candidates(service))
        .collect();
    let indexing = started.elapsed();

    let started = Instant::now();
    let mut created: Vec<Vec<Arc<EndpointSlice>>> = Vec::with_capacity(service_count);
    let mut writes = 0;
    let mut endpoints_listed = 0;
    for (service, pods) in services.iter().zip(&candidates) {
        let plan = endpointslice::reconcile(service, pods, &[]);
        writes += plan.write_count();
        let slices: Vec<Arc<EndpointSlice>> = plan
            .create
            .into_iter()
            .enumerate()
            .filter_map(|(index, object)| match object {
                Object::EndpointSlice(mut slice) => {
                    endpoints_listed += slice.endpoints.as_ref().map_or(0, Vec::len);
                    slice.metadata.name = Some(format!(
                        "{}{index}",
                        slice.metadata.generate_name.clone().unwrap_or_default()
                    ));
                    slice.metadata.uid = slice.metadata.name.clone();
                    slice.metadata.resource_version = Some("1".to_string());
                    Some(Arc::new(slice))
                }
                _ => None,
            })
            .collect();
        created.push(slices);
    }
    let slices_cold = started.elapsed();

    let started = Instant::now();
    for (service, pods) in services.iter().zip(&candidates) {
        writes += endpoints::reconcile(service, pods, None).write_count();
    }
    let endpoints_cold = started.elapsed();

    let started = Instant::now();
    let mut steady_writes = 0;
    for ((service, slices), pods) in services.iter().zip(&created).zip(&candidates) {
        steady_writes += endpointslice::reconcile(service, pods, slices).write_count();
    }
    let slices_steady = started.elapsed();

    println!("{pod_count} pods over {service_count} services (one namespace)");
    println!(
        "  pod label index:          {:>8.1} ms",
        indexing.as_secs_f64() * 1e3
    );
    println!(
        "  EndpointSlices from cold: {:>8.1} ms  ({} endpoints listed)",
        slices_cold.as_secs_f64() * 1e3,
        endpoints_listed
    );
    println!(
        "  Endpoints from cold:      {:>8.1} ms",
        endpoints_cold.as_secs_f64() * 1e3
    );
    println!(
        "  cold total:               {:>8.1} ms  ({writes} planned writes)",
        (indexing + slices_cold + endpoints_cold).as_secs_f64() * 1e3
    );
    println!(
        "  steady-state re-check:    {:>8.1} ms  ({steady_writes} planned writes)",
        slices_steady.as_secs_f64() * 1e3
    );
    assert_eq!(
        endpoints_listed, pod_count,
        "every pod is listed exactly once"
    );
    assert_eq!(
        steady_writes, 0,
        "a second pass over unchanged input plans nothing"
    );

    // One pod changes at a time: the per-change planning cost.
    let settings = Settings::default();
    let mut caches: Vec<EndpointCache> = services
        .iter()
        .zip(&created)
        .zip(&candidates)
        .map(|((service, slices), pods)| {
            let mut cache = EndpointCache::default();
            endpointslice::reconcile_cached(&settings, service, pods, slices, &mut cache);
            cache
        })
        .collect();
    let mut index = index;
    let mut warm = Vec::new();
    let mut cold = Vec::new();
    let flips = 1000.min(pod_count);
    for flip in 0..flips {
        let pod_position = flip * (pod_count / flips);
        let service_position = pod_position % service_count;
        let mut changed = pod(pod_position, service_count);
        changed.metadata.resource_version = Some((2 + flip).to_string());
        if let Some(conditions) = changed
            .status
            .as_mut()
            .and_then(|status| status.conditions.as_mut())
        {
            conditions[0].status = "False".to_string();
        }
        index.upsert(Arc::new(changed));
        let service = &services[service_position];
        let slices = &created[service_position];

        let started = Instant::now();
        let pods = index.candidates(service);
        let plan = endpointslice::reconcile_cached(
            &settings,
            service,
            &pods,
            slices,
            &mut caches[service_position],
        );
        warm.push(started.elapsed());
        assert_eq!(plan.update.len(), 1, "one flip rewrites one slice");

        let started = Instant::now();
        let pods = index.candidates(service);
        let plan = endpointslice::reconcile(service, &pods, slices);
        cold.push(started.elapsed());
        assert_eq!(plan.update.len(), 1, "one flip rewrites one slice");

        // Back to Ready (a newer version), so the slices stay right for the next flip.
        let mut restored = pod(pod_position, service_count);
        restored.metadata.resource_version = Some((2 + flips + flip).to_string());
        index.upsert(Arc::new(restored));
    }
    let summary = |mut samples: Vec<std::time::Duration>| {
        samples.sort();
        let at = |fraction: f64| {
            samples[((samples.len() as f64 - 1.0) * fraction).round() as usize].as_secs_f64() * 1e6
        };
        format!(
            "p50 {:>8.1} µs  p99 {:>8.1} µs  max {:>8.1} µs",
            at(0.5),
            at(0.99),
            samples.last().map_or(0.0, |last| last.as_secs_f64() * 1e6)
        )
    };
    println!(
        "  one pod flipped, {} pods behind its Service, {flips} flips:",
        pod_count / service_count
    );
    println!("    with the endpoint memo:    {}", summary(warm));
    println!("    without (cold derivation): {}", summary(cold));
}
