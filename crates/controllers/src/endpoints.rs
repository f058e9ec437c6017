//! The legacy `v1/Endpoints` object of a Service, as Kubernetes' endpoints controller
//! writes it, so `kubectl describe svc` prints `Endpoints: 10.0.0.5:8080,…`.
//!
//! One object per Service with a selector, named like the Service. Ready pods go to
//! `addresses`, the rest to `notReadyAddresses` (all to `addresses` when the Service
//! publishes not-ready addresses, see [`crate::endpointslice::publishes_not_ready`]).
//! Terminating pods are left out unless not-ready addresses are published. Only the
//! primary IP family is listed. More than [`MAX_ADDRESSES`] addresses are truncated,
//! ready ones first, and the object is annotated [`OVER_CAPACITY_ANNOTATION`].
//!
//! Unlike Kubernetes, the object carries a controller owner reference to its Service,
//! so the garbage collector removes it with the Service (Kubernetes' endpoints
//! controller deletes it itself on the Service's delete event).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, Pod, Service,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::endpointslice::{self, HEADLESS_LABEL};
use crate::meta;
use crate::plan::{Kind, Object, Plan};

/// The most addresses one Endpoints object lists.
pub const MAX_ADDRESSES: usize = 1000;
/// Set to `truncated` when addresses were dropped.
pub const OVER_CAPACITY_ANNOTATION: &str = "endpoints.kubernetes.io/over-capacity";

/// Plans the create or update of the Service's Endpoints object.
pub fn reconcile(service: &Service, pods: &[Arc<Pod>], existing: Option<&Endpoints>) -> Plan {
    let mut plan = Plan::default();
    if endpointslice::managed_selector(service).is_none() {
        return plan;
    }
    let publish_not_ready = endpointslice::publishes_not_ready(service);
    let primary_family = endpointslice::address_types(service)
        .first()
        .copied()
        .unwrap_or("IPv4");

    // (ports, ready?) → addresses; BTreeMap keeps subsets in a stable order.
    let mut by_ports: BTreeMap<Vec<PortKey>, (Vec<EndpointAddress>, Vec<EndpointAddress>)> =
        BTreeMap::new();
    for pod in endpointslice::selected_pods(service, pods) {
        if !endpointslice::pod_counts(pod)
            || (meta::is_terminating(&pod.metadata) && !publish_not_ready)
        {
            continue;
        }
        let Some(ip) = endpointslice::pod_addresses(pod, primary_family)
            .into_iter()
            .next()
        else {
            continue;
        };
        let address = EndpointAddress {
            ip,
            hostname: endpointslice::endpoint_hostname(service, pod),
            node_name: pod.spec.as_ref().and_then(|spec| spec.node_name.clone()),
            target_ref: Some(meta::object_reference(Kind::Pod, &pod.metadata)),
        };
        let ports: Vec<PortKey> = service
            .spec
            .as_ref()
            .and_then(|spec| spec.ports.as_deref())
            .unwrap_or_default()
            .iter()
            .filter_map(|service_port| {
                let port = endpointslice::resolve_target_port(service_port, pod)?;
                Some(PortKey {
                    name: service_port.name.clone().unwrap_or_default(),
                    port,
                    protocol: service_port
                        .protocol
                        .clone()
                        .unwrap_or_else(|| "TCP".to_string()),
                    app_protocol: service_port.app_protocol.clone(),
                })
            })
            .collect();
        let (ready, not_ready) = by_ports.entry(ports).or_default();
        if publish_not_ready || meta::is_pod_ready(pod) {
            ready.push(address);
        } else {
            not_ready.push(address);
        }
    }
    let mut subsets: Vec<(Vec<PortKey>, Vec<EndpointAddress>, Vec<EndpointAddress>)> = by_ports
        .into_iter()
        .map(|(ports, (mut ready, mut not_ready))| {
            sort_addresses(&mut ready);
            sort_addresses(&mut not_ready);
            (ports, ready, not_ready)
        })
        .collect();
    let truncated = truncate(&mut subsets);

    let subsets: Vec<EndpointSubset> = subsets
        .into_iter()
        .filter(|(_, ready, not_ready)| !ready.is_empty() || !not_ready.is_empty())
        .map(|(ports, ready, not_ready)| EndpointSubset {
            addresses: (!ready.is_empty()).then_some(ready),
            not_ready_addresses: (!not_ready.is_empty()).then_some(not_ready),
            ports: (!ports.is_empty()).then(|| ports.into_iter().map(PortKey::into_port).collect()),
        })
        .collect();

    let mut labels: BTreeMap<String, String> = meta::labels(&service.metadata).clone();
    labels.remove(HEADLESS_LABEL);
    if endpointslice::is_headless(service) {
        labels.insert(HEADLESS_LABEL.to_string(), String::new());
    }
    let owner = meta::controller_reference(Kind::Service, &service.metadata);
    let mut annotations: BTreeMap<String, String> = existing
        .and_then(|endpoints| endpoints.metadata.annotations.clone())
        .unwrap_or_default();
    if truncated {
        annotations.insert(
            OVER_CAPACITY_ANNOTATION.to_string(),
            "truncated".to_string(),
        );
    } else {
        annotations.remove(OVER_CAPACITY_ANNOTATION);
    }
    let annotations = (!annotations.is_empty()).then_some(annotations);
    let subsets = (!subsets.is_empty()).then_some(subsets);

    match existing {
        Some(current) => {
            let unchanged = normalized_subsets(current.subsets.as_ref())
                == normalized_subsets(subsets.as_ref())
                && current.metadata.labels.clone().unwrap_or_default() == labels
                && current.metadata.annotations == annotations
                && current
                    .metadata
                    .owner_references
                    .as_ref()
                    .is_some_and(|references| references.contains(&owner));
            if !unchanged {
                let mut updated = current.clone();
                updated.subsets = subsets;
                updated.metadata.labels = Some(labels);
                updated.metadata.annotations = annotations;
                let references = updated
                    .metadata
                    .owner_references
                    .get_or_insert_with(Vec::new);
                references.retain(|reference| reference.controller != Some(true));
                references.push(owner);
                plan.update.push(Object::Endpoints(updated));
            }
        }
        None => plan.create.push(Object::Endpoints(Endpoints {
            metadata: ObjectMeta {
                name: service.metadata.name.clone(),
                namespace: service.metadata.namespace.clone(),
                labels: Some(labels),
                annotations,
                owner_references: Some(vec![owner]),
                ..ObjectMeta::default()
            },
            subsets,
        })),
    }
    plan
}

/// Servers may return `subsets: []` or leave it out; both mean "none".
fn normalized_subsets(subsets: Option<&Vec<EndpointSubset>>) -> &[EndpointSubset] {
    subsets.map(Vec::as_slice).unwrap_or_default()
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct PortKey {
    name: String,
    port: i32,
    protocol: String,
    app_protocol: Option<String>,
}

impl PortKey {
    fn into_port(self) -> EndpointPort {
        EndpointPort {
            name: (!self.name.is_empty()).then_some(self.name),
            port: self.port,
            protocol: Some(self.protocol),
            app_protocol: self.app_protocol,
        }
    }
}

fn sort_addresses(addresses: &mut [EndpointAddress]) {
    addresses.sort_by(|left, right| {
        let parse = |address: &EndpointAddress| address.ip.parse::<IpAddr>().ok();
        parse(left)
            .cmp(&parse(right))
            .then_with(|| left.ip.cmp(&right.ip))
    });
}

type Subset = (Vec<PortKey>, Vec<EndpointAddress>, Vec<EndpointAddress>);

/// Caps the total at [`MAX_ADDRESSES`]: ready addresses first, and each subset gives up
/// addresses in proportion to its size. Returns whether anything was dropped.
fn truncate(subsets: &mut [Subset]) -> bool {
    let ready_total: usize = subsets.iter().map(|(_, ready, _)| ready.len()).sum();
    let not_ready_total: usize = subsets
        .iter()
        .map(|(_, _, not_ready)| not_ready.len())
        .sum();
    if ready_total + not_ready_total <= MAX_ADDRESSES {
        return false;
    }
    let ready_budget = ready_total.min(MAX_ADDRESSES);
    let not_ready_budget = MAX_ADDRESSES - ready_budget;
    let keep_counts = |sizes: Vec<usize>, total: usize, budget: usize| -> Vec<usize> {
        let mut keep: Vec<usize> = sizes
            .iter()
            .map(|size| size * budget / total.max(1))
            .collect();
        // Rounding down leaves a few slots; hand them out in subset order.
        let mut left = budget - keep.iter().sum::<usize>();
        for (kept, size) in keep.iter_mut().zip(&sizes) {
            let extra = (size - *kept).min(left);
            *kept += extra;
            left -= extra;
        }
        keep
    };
    let ready_keep = keep_counts(
        subsets.iter().map(|(_, ready, _)| ready.len()).collect(),
        ready_total,
        ready_budget,
    );
    let not_ready_keep = keep_counts(
        subsets
            .iter()
            .map(|(_, _, not_ready)| not_ready.len())
            .collect(),
        not_ready_total,
        not_ready_budget,
    );
    for ((subset, ready_count), not_ready_count) in
        subsets.iter_mut().zip(ready_keep).zip(not_ready_keep)
    {
        subset.1.truncate(ready_count);
        subset.2.truncate(not_ready_count);
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{arcs, pod, service, time};

    fn endpoints_of(plan: &Plan) -> &Endpoints {
        match plan.create.first().or(plan.update.first()) {
            Some(Object::Endpoints(endpoints)) => endpoints,
            other => panic!("no endpoints in plan: {other:?}"),
        }
    }

    fn ips(addresses: &Option<Vec<EndpointAddress>>) -> Vec<&str> {
        addresses
            .iter()
            .flatten()
            .map(|address| address.ip.as_str())
            .collect()
    }

    #[test]
    fn ready_and_not_ready_addresses_and_no_terminating() {
        let mut terminating = pod("web-2", "web", "10.0.0.7", true);
        terminating.metadata.deletion_timestamp = Some(time(1));
        let pods = arcs([
            pod("web-0", "web", "10.0.0.10", true),
            pod("web-1", "web", "10.0.0.6", false),
            terminating,
        ]);
        let plan = reconcile(&service("web", "web"), &pods, None);
        let endpoints = endpoints_of(&plan);
        let subsets = endpoints.subsets.as_ref().unwrap();
        assert_eq!(subsets.len(), 1);
        assert_eq!(ips(&subsets[0].addresses), vec!["10.0.0.10"]);
        assert_eq!(ips(&subsets[0].not_ready_addresses), vec!["10.0.0.6"]);
        assert_eq!(subsets[0].ports.as_ref().unwrap()[0].port, 8080);
        assert_eq!(endpoints.metadata.name.as_deref(), Some("web"));
        assert_eq!(
            endpoints
                .metadata
                .labels
                .as_ref()
                .unwrap()
                .get(HEADLESS_LABEL)
                .map(String::as_str),
            Some("")
        );

        // Written back unchanged, nothing more to do.
        let plan = reconcile(&service("web", "web"), &pods, Some(endpoints));
        assert_eq!(plan, Plan::default());
    }

    #[test]
    fn publish_not_ready_lists_everyone_as_ready() {
        let mut terminating = pod("web-2", "web", "10.0.0.7", true);
        terminating.metadata.deletion_timestamp = Some(time(1));
        let pods = arcs([pod("web-1", "web", "10.0.0.6", false), terminating]);
        let mut service = service("web", "web");
        service.spec.as_mut().unwrap().publish_not_ready_addresses = Some(true);
        let plan = reconcile(&service, &pods, None);
        let subsets = endpoints_of(&plan).subsets.clone().unwrap();
        assert_eq!(ips(&subsets[0].addresses), vec!["10.0.0.6", "10.0.0.7"]);
        assert_eq!(subsets[0].not_ready_addresses, None);
    }

    #[test]
    fn more_than_a_thousand_addresses_are_truncated_ready_first_and_annotated() {
        let pods = arcs((0..1200).map(|index| {
            pod(
                &format!("web-{index}"),
                "web",
                &format!("10.1.{}.{}", index / 200, index % 200 + 1),
                index < 900,
            )
        }));
        let plan = reconcile(&service("web", "web"), &pods, None);
        let endpoints = endpoints_of(&plan);
        let subset = &endpoints.subsets.as_ref().unwrap()[0];
        assert_eq!(subset.addresses.as_ref().unwrap().len(), 900);
        assert_eq!(subset.not_ready_addresses.as_ref().unwrap().len(), 100);
        assert_eq!(
            endpoints.metadata.annotations.as_ref().unwrap()[OVER_CAPACITY_ANNOTATION],
            "truncated"
        );

        // Back under the cap, the annotation goes away.
        let plan = reconcile(&service("web", "web"), &pods[..10], Some(endpoints));
        let endpoints = endpoints_of(&plan);
        assert_eq!(endpoints.metadata.annotations, None);
        assert_eq!(
            endpoints.subsets.as_ref().unwrap()[0]
                .addresses
                .as_ref()
                .unwrap()
                .len(),
            10
        );
    }

    #[test]
    fn selectorless_service_is_not_touched() {
        let mut service = service("web", "web");
        service.spec.as_mut().unwrap().selector = None;
        assert_eq!(
            reconcile(
                &service,
                &arcs([pod("web-0", "web", "10.0.0.5", true)]),
                None
            ),
            Plan::default()
        );
    }

    #[test]
    fn no_pods_gives_an_empty_object() {
        let plan = reconcile(&service("web", "web"), &[], None);
        assert_eq!(endpoints_of(&plan).subsets, None);
    }
}
