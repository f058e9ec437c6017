//! The EndpointSlice reconciler: which pods back a Service, packed into slices.
//!
//! [`reconcile`] takes a Service, the pods of the cluster (or of its namespace) and the
//! slices labelled with the Service's name, and plans the slice writes that make the
//! slices list exactly the Service's endpoints. It follows Kubernetes' EndpointSlice
//! controller:
//!
//! - only Services with a non-empty selector and a type other than ExternalName get
//!   slices; slices with another `endpointslice.kubernetes.io/managed-by` value are
//!   never touched, so selector-less Services with hand-written slices keep them;
//! - a pod counts when it has an IP and is not terminal (Succeeded/Failed); terminating
//!   pods stay, flagged `terminating`;
//! - `serving` = pod Ready, `terminating` = deletionTimestamp set,
//!   `ready` = serving && !terminating, or `ready` = true for every endpoint when the
//!   Service sets `publishNotReadyAddresses` **or carries the annotation
//!   `service.alpha.kubernetes.io/tolerate-unready-endpoints: "true"`**. Upstream
//!   Kubernetes dropped the annotation in 1.24; hollow keeps honouring it because
//!   StatefulSet manifests in the wild still rely on it;
//! - one slice per address type (IPv4/IPv6 from `spec.ipFamilies`) and per resolved
//!   port set, at most [`MAX_ENDPOINTS_PER_SLICE`] endpoints per slice;
//! - little churn: unchanged slices are left alone, changed slices are filled before new
//!   slices are created, and an empty Service keeps a single placeholder slice.
//!
//! The managed-by value defaults to Kubernetes' own (`endpointslice-controller.k8s.io`):
//! hollow is the cluster's controller manager, and consumers that look for the upstream
//! value keep working. Against a real cluster that runs kube-controller-manager, set
//! [`Settings::managed_by`] to another value (for example [`HOLLOW_MANAGED_BY`]) so the
//! two controllers do not fight over the same slices.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Pod, Service, ServicePort};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::meta;
use crate::plan::{Deletion, EventNote, EventType, Kind, Object, Plan};

/// The label that joins a slice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// The label naming the controller that owns a slice.
pub const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
/// Kubernetes' own managed-by value, the default.
pub const UPSTREAM_MANAGED_BY: &str = "endpointslice-controller.k8s.io";
/// A managed-by value for running next to kube-controller-manager.
pub const HOLLOW_MANAGED_BY: &str = "endpointslice-controller.hollow.dev";
/// The label Kubernetes puts on slices and Endpoints of headless Services.
pub const HEADLESS_LABEL: &str = "service.kubernetes.io/headless";
/// The pre-1.24 annotation that acts as `publishNotReadyAddresses`.
pub const TOLERATE_UNREADY_ANNOTATION: &str =
    "service.alpha.kubernetes.io/tolerate-unready-endpoints";
/// Kubernetes' default (and our fixed) slice capacity.
pub const MAX_ENDPOINTS_PER_SLICE: usize = 100;

/// Knobs of the reconciler.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// The `endpointslice.kubernetes.io/managed-by` value of slices this controller owns.
    pub managed_by: String,
    /// The most endpoints in one slice (1–1000).
    pub max_endpoints_per_slice: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            managed_by: UPSTREAM_MANAGED_BY.to_string(),
            max_endpoints_per_slice: MAX_ENDPOINTS_PER_SLICE,
        }
    }
}

/// Plans the slice writes for `service` with the default [`Settings`].
pub fn reconcile(
    service: &Service,
    pods: &[Arc<Pod>],
    existing_slices: &[Arc<EndpointSlice>],
) -> Plan {
    reconcile_with(&Settings::default(), service, pods, existing_slices)
}

/// True when a Service's endpoints are published regardless of readiness.
pub fn publishes_not_ready(service: &Service) -> bool {
    let field = service
        .spec
        .as_ref()
        .and_then(|spec| spec.publish_not_ready_addresses)
        == Some(true);
    let annotation = service
        .metadata
        .annotations
        .as_ref()
        .and_then(|annotations| annotations.get(TOLERATE_UNREADY_ANNOTATION))
        .is_some_and(|value| value.eq_ignore_ascii_case("true"));
    field || annotation
}

/// The selector of a Service whose endpoints this controller manages, or `None` for
/// ExternalName and selector-less Services (someone else writes their endpoints).
pub fn managed_selector(service: &Service) -> Option<&BTreeMap<String, String>> {
    let spec = service.spec.as_ref()?;
    if spec.type_.as_deref() == Some("ExternalName") || meta::is_terminating(&service.metadata) {
        return None;
    }
    spec.selector
        .as_ref()
        .filter(|selector| !selector.is_empty())
}

/// The pod index moved to [`crate::index`]; kept here for existing callers.
pub use crate::index::PodIndex;

/// The pods a Service selects: same namespace, every selector pair present.
pub fn selected_pods<'a>(service: &Service, pods: &'a [Arc<Pod>]) -> Vec<&'a Pod> {
    let Some(selector) = managed_selector(service) else {
        return Vec::new();
    };
    let namespace = meta::namespace(&service.metadata);
    let mut selected: Vec<&Pod> = pods
        .iter()
        .map(|pod| pod.as_ref())
        .filter(|pod| meta::namespace(&pod.metadata) == namespace)
        .filter(|pod| meta::service_selector_matches(selector, meta::labels(&pod.metadata)))
        .collect();
    // Store iteration order is arbitrary; sorting keeps the plans deterministic.
    selected.sort_by(|left, right| meta::name(&left.metadata).cmp(meta::name(&right.metadata)));
    selected
}

/// The port a Service port reaches on a pod, or `None` when a named target port matches
/// no container port of that protocol (Kubernetes then leaves the port out for the pod).
pub fn resolve_target_port(service_port: &ServicePort, pod: &Pod) -> Option<i32> {
    let protocol = service_port.protocol.as_deref().unwrap_or("TCP");
    let wanted = match &service_port.target_port {
        None => return Some(service_port.port),
        Some(IntOrString::Int(0)) => return Some(service_port.port),
        Some(IntOrString::Int(number)) => return Some(*number),
        Some(IntOrString::String(text)) if text.is_empty() => return Some(service_port.port),
        Some(IntOrString::String(text)) => match text.parse::<i32>() {
            Ok(number) => return Some(number),
            Err(_) => text,
        },
    };
    let spec = pod.spec.as_ref()?;
    // Regular containers first, then sidecars (init containers that keep running).
    let sidecars = spec
        .init_containers
        .iter()
        .flatten()
        .filter(|container| container.restart_policy.as_deref() == Some("Always"));
    spec.containers
        .iter()
        .chain(sidecars)
        .flat_map(|container| container.ports.iter().flatten())
        .find(|port| {
            port.name.as_deref() == Some(wanted)
                && port.protocol.as_deref().unwrap_or("TCP") == protocol
        })
        .map(|port| port.container_port)
}

/// The endpoint ports of `pod` for `service`, in service port order.
fn endpoint_ports(service: &Service, pod: &Pod) -> Vec<EndpointPort> {
    service_ports(service)
        .iter()
        .filter_map(|service_port| {
            let port = resolve_target_port(service_port, pod)?;
            Some(EndpointPort {
                name: Some(service_port.name.clone().unwrap_or_default()),
                port: Some(port),
                protocol: Some(
                    service_port
                        .protocol
                        .clone()
                        .unwrap_or_else(|| "TCP".to_string()),
                ),
                app_protocol: service_port.app_protocol.clone(),
            })
        })
        .collect()
}

fn service_ports(service: &Service) -> &[ServicePort] {
    service
        .spec
        .as_ref()
        .and_then(|spec| spec.ports.as_deref())
        .unwrap_or_default()
}

/// The address types a Service's slices carry: `spec.ipFamilies`, else the family of
/// its cluster IP, else IPv4.
pub fn address_types(service: &Service) -> Vec<&'static str> {
    let spec = service.spec.as_ref();
    let families: Vec<&'static str> = spec
        .and_then(|spec| spec.ip_families.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|family| match family.as_str() {
            "IPv4" => Some("IPv4"),
            "IPv6" => Some("IPv6"),
            _ => None,
        })
        .collect();
    if !families.is_empty() {
        return families;
    }
    let cluster_ip = spec
        .and_then(|spec| spec.cluster_ip.as_deref())
        .and_then(|ip| ip.parse::<IpAddr>().ok());
    match cluster_ip {
        Some(IpAddr::V6(_)) => vec!["IPv6"],
        _ => vec!["IPv4"],
    }
}

/// The pod's IPs of one address type, from `status.podIPs` (or `status.podIP`).
pub fn pod_addresses(pod: &Pod, address_type: &str) -> Vec<String> {
    let Some(status) = pod.status.as_ref() else {
        return Vec::new();
    };
    let mut ips: Vec<&str> = status
        .pod_ips
        .iter()
        .flatten()
        .map(|pod_ip| pod_ip.ip.as_str())
        .collect();
    if ips.is_empty() {
        ips.extend(status.pod_ip.as_deref());
    }
    ips.into_iter()
        .filter(|ip| match ip.parse::<IpAddr>() {
            Ok(IpAddr::V4(_)) => address_type == "IPv4",
            Ok(IpAddr::V6(_)) => address_type == "IPv6",
            Err(_) => false,
        })
        .map(str::to_string)
        .collect()
}

/// Whether a pod belongs in a Service's slices at all: it has an IP and has not ended.
pub fn pod_counts(pod: &Pod) -> bool {
    let has_ip = pod.status.as_ref().is_some_and(|status| {
        status.pod_ip.as_deref().is_some_and(|ip| !ip.is_empty())
            || status.pod_ips.as_ref().is_some_and(|ips| !ips.is_empty())
    });
    has_ip && !meta::is_pod_terminal(pod)
}

/// The hostname an endpoint carries: the pod's `spec.hostname` when its `spec.subdomain`
/// names this Service (that is what makes `<hostname>.<service>` resolve).
pub fn endpoint_hostname(service: &Service, pod: &Pod) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    let hostname = spec
        .hostname
        .as_deref()
        .filter(|hostname| !hostname.is_empty())?;
    let same_namespace = meta::namespace(&pod.metadata) == meta::namespace(&service.metadata);
    (same_namespace && spec.subdomain.as_deref() == Some(meta::name(&service.metadata)))
        .then(|| hostname.to_string())
}

fn build_endpoint(
    service: &Service,
    pod: &Pod,
    addresses: Vec<String>,
    publish_not_ready: bool,
) -> Endpoint {
    let serving = meta::is_pod_ready(pod);
    let terminating = meta::is_terminating(&pod.metadata);
    Endpoint {
        addresses,
        conditions: Some(EndpointConditions {
            ready: Some(publish_not_ready || (serving && !terminating)),
            serving: Some(serving),
            terminating: Some(terminating),
        }),
        hostname: endpoint_hostname(service, pod),
        node_name: pod.spec.as_ref().and_then(|spec| spec.node_name.clone()),
        target_ref: Some(meta::object_reference(Kind::Pod, &pod.metadata)),
        ..Endpoint::default()
    }
}

/// The pod an existing endpoint points at, when it is a pod of `namespace`. Endpoints are
/// matched to the desired ones by it, so a pod that changes (or is recreated under the
/// same name) is updated in place; an endpoint pointing elsewhere matches nothing.
fn endpoint_pod<'a>(endpoint: &'a Endpoint, namespace: &str) -> Option<&'a str> {
    let reference = endpoint.target_ref.as_ref()?;
    let is_local_pod = reference.kind.as_deref() == Some("Pod")
        && reference.namespace.as_deref() == Some(namespace);
    is_local_pod.then_some(reference.name.as_deref()).flatten()
}

/// The labels every managed slice of `service` carries.
fn slice_labels(settings: &Settings, service: &Service) -> BTreeMap<String, String> {
    let mut labels: BTreeMap<String, String> = meta::labels(&service.metadata)
        .iter()
        .filter(|(key, _)| key.as_str() != MANAGED_BY_LABEL && key.as_str() != SERVICE_NAME_LABEL)
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect();
    labels.remove(HEADLESS_LABEL);
    if is_headless(service) {
        labels.insert(HEADLESS_LABEL.to_string(), String::new());
    }
    labels.insert(
        SERVICE_NAME_LABEL.to_string(),
        meta::name(&service.metadata).to_string(),
    );
    labels.insert(MANAGED_BY_LABEL.to_string(), settings.managed_by.clone());
    labels
}

/// A Service with `clusterIP: None`.
pub fn is_headless(service: &Service) -> bool {
    service
        .spec
        .as_ref()
        .and_then(|spec| spec.cluster_ip.as_deref())
        == Some("None")
}

fn is_managed_slice_of(settings: &Settings, service: &Service, slice: &EndpointSlice) -> bool {
    let labels = meta::labels(&slice.metadata);
    labels.get(MANAGED_BY_LABEL) == Some(&settings.managed_by)
        && labels.get(SERVICE_NAME_LABEL).map(String::as_str) == Some(meta::name(&service.metadata))
        && meta::namespace(&slice.metadata) == meta::namespace(&service.metadata)
}

fn slice_ports(slice: &EndpointSlice) -> &[EndpointPort] {
    slice.ports.as_deref().unwrap_or_default()
}

fn slice_endpoints(slice: &EndpointSlice) -> &[Endpoint] {
    slice.endpoints.as_deref().unwrap_or_default()
}

/// The endpoints one address type and one port set should list, in pod-name order.
/// Slices are planned with positions into `endpoints`, so that comparing an unchanged
/// slice costs no copies.
struct Group<'a> {
    ports: &'a [EndpointPort],
    endpoints: Vec<&'a Endpoint>,
    /// Pod name → position in `endpoints`.
    index: HashMap<&'a str, usize>,
    placed: Vec<bool>,
    /// Per position: the pod's endpoint came from the memo, unchanged since the last
    /// reconcile.
    unchanged: Vec<bool>,
}

impl Group<'_> {
    /// The position of the pod's endpoint, unless a slice already took it.
    fn take(&mut self, pod: &str) -> Option<usize> {
        let position = *self.index.get(pod)?;
        if self.placed[position] {
            return None;
        }
        self.placed[position] = true;
        Some(position)
    }

    /// The positions of the endpoints no slice took yet.
    fn remaining(&mut self) -> Vec<usize> {
        let mut rest = Vec::new();
        for (position, placed) in self.placed.iter_mut().enumerate() {
            if !*placed {
                *placed = true;
                rest.push(position);
            }
        }
        rest
    }
}

/// A managed slice after removal of stale endpoints, before new ones are added.
struct Working<'a> {
    slice: &'a EndpointSlice,
    /// Positions in the group's endpoints, in slice order.
    endpoints: Vec<usize>,
    changed: bool,
}

/// What one pod contributes to a Service's slices for one address type.
#[derive(Debug)]
struct PodEndpoint {
    ports: Vec<EndpointPort>,
    endpoint: Endpoint,
    /// Names of the Service ports that resolve to no port of this pod.
    unresolved_ports: Vec<String>,
}

/// What one pod contributes to a Service's slices, per address type of the Service
/// (`None` where the pod does not count or has no address of the type).
#[derive(Debug)]
struct PodEndpoints(Vec<Option<PodEndpoint>>);

fn derive_pod_endpoints(
    service: &Service,
    pod: &Pod,
    address_types: &[&str],
    publish_not_ready: bool,
) -> PodEndpoints {
    PodEndpoints(
        address_types
            .iter()
            .map(|address_type| {
                if !pod_counts(pod) {
                    return None;
                }
                let addresses = pod_addresses(pod, address_type);
                if addresses.is_empty() {
                    return None;
                }
                let ports = endpoint_ports(service, pod);
                let unresolved_ports = if ports.len() < service_ports(service).len() {
                    service_ports(service)
                        .iter()
                        .filter(|service_port| resolve_target_port(service_port, pod).is_none())
                        .map(|service_port| service_port.name.clone().unwrap_or_default())
                        .collect()
                } else {
                    Vec::new()
                };
                Some(PodEndpoint {
                    ports,
                    endpoint: build_endpoint(service, pod, addresses, publish_not_ready),
                    unresolved_ports,
                })
            })
            .collect(),
    )
}

/// A memo of each pod's endpoints for one Service, so a reconcile after one pod changed
/// derives one endpoint instead of all of them. An entry is reused while the pod's uid
/// and resourceVersion and the Service's uid and resourceVersion are unchanged (an API
/// server changes the resourceVersion with every write); objects without them are never
/// memoized. Plans are the same with or without a cache: it only saves work.
#[derive(Debug, Default)]
pub struct EndpointCache {
    /// The Service (uid, resourceVersion) the entries were derived for.
    service: Option<(String, String)>,
    /// Pod uid → (resourceVersion, endpoints).
    pods: HashMap<String, (String, Arc<PodEndpoints>)>,
    /// Slice name → the resourceVersion at which the last reconcile found the slice
    /// exactly as desired. While a slice keeps that version, its endpoints of unchanged
    /// pods need no comparing: only the slices holding changed pods are compared.
    verified: HashMap<String, String>,
}

impl EndpointCache {
    /// How many pods are memoized.
    pub fn len(&self) -> usize {
        self.pods.len()
    }

    /// Whether nothing is memoized.
    pub fn is_empty(&self) -> bool {
        self.pods.is_empty()
    }

    /// Drops the entries unless they were derived for this version of `service`;
    /// returns whether entries may be used and stored.
    fn prepare(&mut self, service: &Service) -> bool {
        let version = service
            .metadata
            .uid
            .clone()
            .zip(service.metadata.resource_version.clone());
        if self.service != version {
            self.pods.clear();
            self.verified.clear();
            self.service = version;
        }
        self.service.is_some()
    }

    fn derive(
        &mut self,
        enabled: bool,
        service: &Service,
        pod: &Pod,
        address_types: &[&str],
        publish_not_ready: bool,
    ) -> (Arc<PodEndpoints>, bool) {
        let identity = pod
            .metadata
            .uid
            .as_ref()
            .zip(pod.metadata.resource_version.as_ref())
            .filter(|_| enabled);
        if let Some((uid, version)) = identity
            && let Some((cached_version, derived)) = self.pods.get(uid)
            && cached_version == version
        {
            return (derived.clone(), true);
        }
        let derived = Arc::new(derive_pod_endpoints(
            service,
            pod,
            address_types,
            publish_not_ready,
        ));
        if let Some((uid, version)) = identity {
            self.pods
                .insert(uid.clone(), (version.clone(), derived.clone()));
        }
        (derived, false)
    }

    /// Forgets pods that are no longer selected.
    fn retain_selected(&mut self, selected: &[&Pod]) {
        if self.pods.len() <= selected.len() {
            return;
        }
        let uids: std::collections::HashSet<&str> = selected
            .iter()
            .filter_map(|pod| pod.metadata.uid.as_deref())
            .collect();
        self.pods.retain(|uid, _| uids.contains(uid.as_str()));
    }
}

/// Plans the slice writes for `service`.
pub fn reconcile_with(
    settings: &Settings,
    service: &Service,
    pods: &[Arc<Pod>],
    existing_slices: &[Arc<EndpointSlice>],
) -> Plan {
    reconcile_cached(
        settings,
        service,
        pods,
        existing_slices,
        &mut EndpointCache::default(),
    )
}

/// Plans the slice writes for `service`, reusing (and updating) `cache`'s endpoints of
/// unchanged pods. The plan is the one [`reconcile_with`] gives.
pub fn reconcile_cached(
    settings: &Settings,
    service: &Service,
    pods: &[Arc<Pod>],
    existing_slices: &[Arc<EndpointSlice>],
    cache: &mut EndpointCache,
) -> Plan {
    let mut plan = Plan::default();
    if managed_selector(service).is_none() {
        return plan;
    }
    let capacity = settings.max_endpoints_per_slice.clamp(1, 1000);
    let publish_not_ready = publishes_not_ready(service);
    let address_types = address_types(service);
    let selected = selected_pods(service, pods);
    let cache_enabled = cache.prepare(service);
    let derived: Vec<(Arc<PodEndpoints>, bool)> = selected
        .iter()
        .map(|pod| {
            cache.derive(
                cache_enabled,
                service,
                pod,
                &address_types,
                publish_not_ready,
            )
        })
        .collect();
    cache.retain_selected(&selected);
    let namespace = meta::namespace(&service.metadata);
    let service_uid = meta::uid(&service.metadata);
    let desired_labels = slice_labels(settings, service);
    let owner = meta::controller_reference(Kind::Service, &service.metadata);

    let mut managed: Vec<&EndpointSlice> = existing_slices
        .iter()
        .map(|slice| slice.as_ref())
        .filter(|slice| is_managed_slice_of(settings, service, slice))
        .collect();
    managed.sort_by(|left, right| meta::name(&left.metadata).cmp(meta::name(&right.metadata)));

    let mut to_delete: Vec<&EndpointSlice> = Vec::new();
    let mut to_update: Vec<EndpointSlice> = Vec::new();
    let mut to_create: Vec<EndpointSlice> = Vec::new();
    let mut unresolved_ports: BTreeMap<String, usize> = BTreeMap::new();
    let mut desired_total = 0;
    let mut now_verified: HashMap<String, String> = HashMap::new();
    // Slices of an address type the Service no longer has go away.
    to_delete.extend(
        managed
            .iter()
            .copied()
            .filter(|slice| !address_types.contains(&slice.address_type.as_str())),
    );

    for (type_position, address_type) in address_types.iter().enumerate() {
        // Desired endpoints, grouped by resolved port set.
        let mut groups: Vec<Group> = Vec::new();
        for (pod, (derived, memoized)) in selected.iter().zip(&derived) {
            let Some(PodEndpoint {
                ports,
                endpoint,
                unresolved_ports: unresolved,
            }) = &derived.0[type_position]
            else {
                continue;
            };
            for port_name in unresolved {
                *unresolved_ports.entry(port_name.clone()).or_default() += 1;
            }
            let group_position = match groups.iter().position(|group| group.ports == ports) {
                Some(position) => position,
                None => {
                    groups.push(Group {
                        ports,
                        endpoints: Vec::new(),
                        index: HashMap::with_capacity(selected.len()),
                        placed: Vec::with_capacity(selected.len()),
                        unchanged: Vec::with_capacity(selected.len()),
                    });
                    groups.len() - 1
                }
            };
            let group = &mut groups[group_position];
            group
                .index
                .insert(meta::name(&pod.metadata), group.endpoints.len());
            group.endpoints.push(endpoint);
            group.placed.push(false);
            group.unchanged.push(*memoized);
            desired_total += 1;
        }

        // Existing slices of this type: keep what is still wanted, note what changed.
        let mut working: Vec<(usize, Working)> = Vec::new();
        for slice in managed
            .iter()
            .filter(|slice| slice.address_type == *address_type)
        {
            let owned = meta::is_controlled_by(&slice.metadata, service_uid);
            let group_position = groups
                .iter()
                .position(|group| group.ports == slice_ports(slice));
            let (Some(group_position), true) = (group_position, owned) else {
                to_delete.push(slice);
                continue;
            };
            let group = &mut groups[group_position];
            let mut endpoints = Vec::new();
            let mut changed = false;
            let verified = cache_enabled
                && slice.metadata.resource_version.is_some()
                && cache.verified.get(meta::name(&slice.metadata))
                    == slice.metadata.resource_version.as_ref();
            for existing in slice_endpoints(slice) {
                match endpoint_pod(existing, namespace).and_then(|pod| group.take(pod)) {
                    Some(position) => {
                        let known_equal = verified && group.unchanged[position];
                        changed |= !known_equal && *group.endpoints[position] != *existing;
                        endpoints.push(position);
                    }
                    None => changed = true,
                }
            }
            if endpoints.is_empty() {
                to_delete.push(slice);
                continue;
            }
            let metadata_current = slice.metadata.labels.as_ref() == Some(&desired_labels)
                && slice
                    .metadata
                    .owner_references
                    .as_ref()
                    .is_some_and(|references| references.contains(&owner));
            working.push((
                group_position,
                Working {
                    slice,
                    endpoints,
                    changed: changed || !metadata_current,
                },
            ));
        }

        // New endpoints: fill changed slices first, then create slices, and put a short
        // last batch into an unchanged slice with room rather than creating one more.
        for (group_position, group) in groups.iter_mut().enumerate() {
            let mut remaining = group.remaining();
            for (_, slice) in working
                .iter_mut()
                .filter(|(position, slice)| *position == group_position && slice.changed)
            {
                let room = capacity
                    .saturating_sub(slice.endpoints.len())
                    .min(remaining.len());
                slice.endpoints.extend(remaining.drain(..room));
            }
            while !remaining.is_empty() {
                if remaining.len() < capacity {
                    let fitting = working.iter_mut().find(|(position, slice)| {
                        *position == group_position
                            && !slice.changed
                            && slice.endpoints.len() + remaining.len() <= capacity
                    });
                    if let Some((_, slice)) = fitting {
                        slice.endpoints.append(&mut remaining);
                        slice.changed = true;
                        break;
                    }
                }
                let batch: Vec<Endpoint> = remaining
                    .drain(..capacity.min(remaining.len()))
                    .map(|position| group.endpoints[position].clone())
                    .collect();
                to_create.push(new_slice(
                    service,
                    &desired_labels,
                    &owner,
                    address_type,
                    group.ports.to_vec(),
                    batch,
                ));
            }
        }
        for (_, slice) in working.iter().filter(|(_, slice)| !slice.changed) {
            if let Some(version) = &slice.slice.metadata.resource_version {
                now_verified.insert(
                    meta::name(&slice.slice.metadata).to_string(),
                    version.clone(),
                );
            }
        }
        for (group_position, slice) in working.into_iter().filter(|(_, slice)| slice.changed) {
            let desired = &groups[group_position].endpoints;
            let mut updated = slice.slice.clone();
            updated.endpoints = Some(
                slice
                    .endpoints
                    .iter()
                    .map(|position| desired[*position].clone())
                    .collect(),
            );
            updated.metadata.labels = Some(desired_labels.clone());
            set_owner(&mut updated.metadata, &owner);
            to_update.push(updated);
        }
    }

    // A Service with no endpoints keeps exactly one empty placeholder slice, so watchers
    // can tell "no endpoints" from "not reconciled yet".
    if desired_total == 0 {
        let primary = address_types.first().copied().unwrap_or("IPv4");
        let is_placeholder = |slice: &EndpointSlice| {
            slice.address_type == primary
                && slice_endpoints(slice).is_empty()
                && slice_ports(slice).is_empty()
                && meta::is_controlled_by(&slice.metadata, service_uid)
                && slice.metadata.labels.as_ref() == Some(&desired_labels)
        };
        if let Some(position) = to_delete.iter().position(|slice| is_placeholder(slice)) {
            // An existing placeholder is already right.
            to_delete.remove(position);
        } else if let Some(position) = to_delete
            .iter()
            .rposition(|slice| meta::is_controlled_by(&slice.metadata, service_uid))
        {
            let reused = to_delete.remove(position);
            // Turning a doomed slice into the placeholder saves a create and a delete.
            let mut placeholder = reused.clone();
            placeholder.address_type = primary.to_string();
            placeholder.endpoints = Some(Vec::new());
            placeholder.ports = Some(Vec::new());
            placeholder.metadata.labels = Some(desired_labels.clone());
            set_owner(&mut placeholder.metadata, &owner);
            to_update.push(placeholder);
        } else {
            to_create.push(new_slice(
                service,
                &desired_labels,
                &owner,
                primary,
                Vec::new(),
                Vec::new(),
            ));
        }
    }

    if cache_enabled {
        cache.verified = now_verified;
    }
    let changes = !(to_create.is_empty() && to_update.is_empty() && to_delete.is_empty());
    plan.create
        .extend(to_create.into_iter().map(Object::EndpointSlice));
    plan.update
        .extend(to_update.into_iter().map(Object::EndpointSlice));
    plan.delete
        .extend(to_delete.into_iter().map(|slice| Deletion {
            kind: Kind::EndpointSlice,
            namespace: meta::namespace(&slice.metadata).to_string(),
            name: meta::name(&slice.metadata).to_string(),
            uid: slice.metadata.uid.clone(),
            propagation: None,
            report_to: None,
        }));
    // Events accompany writes, so a steady Service produces an empty plan.
    if changes {
        for (port_name, pod_count) in unresolved_ports {
            plan.events.push(EventNote {
                regarding: meta::object_reference(Kind::Service, &service.metadata),
                type_: EventType::Warning,
                reason: "FailedToResolvePort".to_string(),
                message: format!(
                    "target port of service port {port_name:?} matches no container port in {pod_count} pod(s); the port is left out of their endpoints"
                ),
            });
        }
        if selected.is_empty() {
            plan.events.push(EventNote {
                regarding: meta::object_reference(Kind::Service, &service.metadata),
                type_: EventType::Normal,
                reason: "NoPodsSelected".to_string(),
                message: "the service selector matches no pods; its endpoints are empty"
                    .to_string(),
            });
        }
    }
    plan
}

fn set_owner(
    metadata: &mut ObjectMeta,
    owner: &k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference,
) {
    let references = metadata.owner_references.get_or_insert_with(Vec::new);
    if !references.contains(owner) {
        references.retain(|reference| reference.uid != owner.uid);
        references.push(owner.clone());
    }
}

fn new_slice(
    service: &Service,
    labels: &BTreeMap<String, String>,
    owner: &k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference,
    address_type: &str,
    ports: Vec<EndpointPort>,
    endpoints: Vec<Endpoint>,
) -> EndpointSlice {
    EndpointSlice {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}-", meta::name(&service.metadata))),
            namespace: service.metadata.namespace.clone(),
            labels: Some(labels.clone()),
            owner_references: Some(vec![owner.clone()]),
            ..ObjectMeta::default()
        },
        address_type: address_type.to_string(),
        endpoints: Some(endpoints),
        ports: Some(ports),
    }
}

#[cfg(test)]
mod tests;
