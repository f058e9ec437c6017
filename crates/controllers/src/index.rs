//! Indexes over the cached objects, so that one change costs work proportional to what
//! it touches rather than to the size of the cluster.
//!
//! - [`PodIndex`]: pods by namespace and label pair (a Service's candidates), by
//!   controlling owner (a workload's pods) and by name;
//! - [`ServiceIndex`]: Services by namespace and selector pair (the Services a pod's
//!   labels may match);
//! - [`SliceIndex`]: EndpointSlices by namespace and `kubernetes.io/service-name`.
//!
//! They are plain data kept current one object at a time by the controller wiring (right
//! where its watches update the reflector stores) and handed to the pure reconcilers as
//! ordinary slices of objects, so the reconcilers neither know nor care about them.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;

use crate::endpointslice::{self, SERVICE_NAME_LABEL};
use crate::{meta, scheduler};

/// Objects of one namespace sharing one key, by name. Ordered, so that lists come out
/// in name order, the order the reconcilers sort them into anyway.
type ByName<K> = BTreeMap<String, Arc<K>>;

/// Adds `object` under `key` in a two-level map.
fn insert<K>(
    map: &mut HashMap<(String, String), ByName<K>>,
    key: (String, String),
    name: &str,
    object: &Arc<K>,
) {
    map.entry(key)
        .or_default()
        .insert(name.to_string(), object.clone());
}

/// Removes `name` under `key`, dropping the key once it is empty.
fn forget<K>(map: &mut HashMap<(String, String), ByName<K>>, key: &(String, String), name: &str) {
    if let Some(objects) = map.get_mut(key) {
        objects.remove(name);
        if objects.is_empty() {
            map.remove(key);
        }
    }
}

/// Pods by label pair, by controlling owner and by name.
#[derive(Debug, Default)]
pub struct PodIndex {
    /// (namespace, name) → pod.
    by_name: HashMap<(String, String), Arc<Pod>>,
    /// namespace → (label key, value) → pods.
    by_label: HashMap<String, HashMap<(String, String), ByName<Pod>>>,
    /// (namespace, controller uid) → pods.
    by_controller: HashMap<(String, String), ByName<Pod>>,
    /// Node name → pods running there (see [`scheduler::node_load`]).
    node_load: HashMap<String, usize>,
    /// Pods waiting for the scheduler.
    unscheduled: HashMap<(String, String), Arc<Pod>>,
}

impl PodIndex {
    /// Indexes `pods`.
    pub fn new(pods: impl IntoIterator<Item = Arc<Pod>>) -> PodIndex {
        let mut index = PodIndex::default();
        for pod in pods {
            index.upsert(pod);
        }
        index
    }

    /// Adds or replaces a pod.
    pub fn upsert(&mut self, pod: Arc<Pod>) {
        let namespace = meta::namespace(&pod.metadata).to_string();
        let name = meta::name(&pod.metadata).to_string();
        self.remove(&namespace, &name);
        let by_pair = self.by_label.entry(namespace.clone()).or_default();
        for (key, value) in meta::labels(&pod.metadata) {
            by_pair
                .entry((key.clone(), value.clone()))
                .or_default()
                .insert(name.clone(), pod.clone());
        }
        if let Some(owner) = meta::controller_of(&pod.metadata) {
            insert(
                &mut self.by_controller,
                (namespace.clone(), owner.uid.clone()),
                &name,
                &pod,
            );
        }
        if let Some(node) = scheduler::counted_node(&pod) {
            *self.node_load.entry(node.to_string()).or_default() += 1;
        }
        if scheduler::needs_scheduling(&pod) {
            self.unscheduled
                .insert((namespace.clone(), name.clone()), pod.clone());
        }
        self.by_name.insert((namespace, name), pod);
    }

    /// Forgets a pod.
    pub fn remove(&mut self, namespace: &str, name: &str) {
        let Some(pod) = self
            .by_name
            .remove(&(namespace.to_string(), name.to_string()))
        else {
            return;
        };
        if let Some(by_pair) = self.by_label.get_mut(namespace) {
            for (key, value) in meta::labels(&pod.metadata) {
                let pair = (key.clone(), value.clone());
                if let Some(pods) = by_pair.get_mut(&pair) {
                    pods.remove(name);
                    if pods.is_empty() {
                        by_pair.remove(&pair);
                    }
                }
            }
            if by_pair.is_empty() {
                self.by_label.remove(namespace);
            }
        }
        if let Some(owner) = meta::controller_of(&pod.metadata) {
            forget(
                &mut self.by_controller,
                &(namespace.to_string(), owner.uid.clone()),
                name,
            );
        }
        if let Some(node) = scheduler::counted_node(&pod)
            && let Some(count) = self.node_load.get_mut(node)
        {
            *count -= 1;
            if *count == 0 {
                self.node_load.remove(node);
            }
        }
        self.unscheduled
            .remove(&(namespace.to_string(), name.to_string()));
    }

    /// The pods running on each node, as [`scheduler::node_load`] counts them.
    pub fn node_load(&self) -> &HashMap<String, usize> {
        &self.node_load
    }

    /// The pods waiting for the scheduler.
    pub fn unscheduled(&self) -> Vec<Arc<Pod>> {
        self.unscheduled.values().cloned().collect()
    }

    /// The pod called `name` in `namespace`.
    pub fn get(&self, namespace: &str, name: &str) -> Option<&Arc<Pod>> {
        self.by_name.get(&(namespace.to_string(), name.to_string()))
    }

    /// How many pods are indexed.
    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    /// Whether no pod is indexed.
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// A superset of the pods `service` selects (those sharing its rarest selector pair);
    /// the reconcilers do the exact matching.
    pub fn candidates(&self, service: &Service) -> Vec<Arc<Pod>> {
        let Some(selector) = endpointslice::managed_selector(service) else {
            return Vec::new();
        };
        let Some(by_pair) = self.by_label.get(meta::namespace(&service.metadata)) else {
            return Vec::new();
        };
        let mut rarest: Option<&ByName<Pod>> = None;
        for (key, value) in selector {
            let Some(pods) = by_pair.get(&(key.clone(), value.clone())) else {
                return Vec::new();
            };
            if rarest.is_none_or(|current| pods.len() < current.len()) {
                rarest = Some(pods);
            }
        }
        rarest
            .map(|pods| pods.values().cloned().collect())
            .unwrap_or_default()
    }

    /// The pods in `namespace` whose controlling owner has the uid `owner_uid`.
    pub fn controlled_by(&self, namespace: &str, owner_uid: &str) -> Vec<Arc<Pod>> {
        self.by_controller
            .get(&(namespace.to_string(), owner_uid.to_string()))
            .map(|pods| pods.values().cloned().collect())
            .unwrap_or_default()
    }
}

/// Services by selector pair, to find the Services a pod may belong to without looking
/// at every Service.
#[derive(Debug, Default)]
pub struct ServiceIndex {
    /// (namespace, name) → the selector the Service is indexed under.
    selectors: HashMap<(String, String), BTreeMap<String, String>>,
    /// namespace → (selector key, value) → names of Services whose selector has the pair.
    by_pair: HashMap<String, HashMap<(String, String), Vec<String>>>,
}

impl ServiceIndex {
    /// Indexes `services`.
    pub fn new(services: impl IntoIterator<Item = Arc<Service>>) -> ServiceIndex {
        let mut index = ServiceIndex::default();
        for service in services {
            index.upsert(&service);
        }
        index
    }

    /// Adds or replaces a Service. Services without a managed selector are not indexed.
    pub fn upsert(&mut self, service: &Service) {
        let namespace = meta::namespace(&service.metadata).to_string();
        let name = meta::name(&service.metadata).to_string();
        let selector = endpointslice::managed_selector(service).cloned();
        if selector.as_ref() == self.selectors.get(&(namespace.clone(), name.clone())) {
            return;
        }
        self.remove(&namespace, &name);
        let Some(selector) = selector else {
            return;
        };
        let by_pair = self.by_pair.entry(namespace.clone()).or_default();
        for (key, value) in &selector {
            by_pair
                .entry((key.clone(), value.clone()))
                .or_default()
                .push(name.clone());
        }
        self.selectors.insert((namespace, name), selector);
    }

    /// Forgets a Service.
    pub fn remove(&mut self, namespace: &str, name: &str) {
        let Some(selector) = self
            .selectors
            .remove(&(namespace.to_string(), name.to_string()))
        else {
            return;
        };
        if let Some(by_pair) = self.by_pair.get_mut(namespace) {
            for pair in selector {
                if let Some(names) = by_pair.get_mut(&pair) {
                    names.retain(|indexed| indexed != name);
                    if names.is_empty() {
                        by_pair.remove(&pair);
                    }
                }
            }
        }
    }

    /// The names of the Services in `namespace` whose selector matches `labels`.
    pub fn selecting(&self, namespace: &str, labels: &BTreeMap<String, String>) -> Vec<String> {
        let Some(by_pair) = self.by_pair.get(namespace) else {
            return Vec::new();
        };
        let mut names: Vec<String> = Vec::new();
        for (key, value) in labels {
            for name in by_pair
                .get(&(key.clone(), value.clone()))
                .into_iter()
                .flatten()
            {
                if names.contains(name) {
                    continue;
                }
                let matches = self
                    .selectors
                    .get(&(namespace.to_string(), name.clone()))
                    .is_some_and(|selector| meta::service_selector_matches(selector, labels));
                if matches {
                    names.push(name.clone());
                }
            }
        }
        names
    }
}

/// EndpointSlices by namespace and the Service named in their `kubernetes.io/service-name`.
#[derive(Debug, Default)]
pub struct SliceIndex {
    /// (namespace, slice name) → the Service it was indexed under.
    services: HashMap<(String, String), String>,
    /// (namespace, Service name) → slices.
    by_service: HashMap<(String, String), ByName<EndpointSlice>>,
}

impl SliceIndex {
    /// Indexes `slices`.
    pub fn new(slices: impl IntoIterator<Item = Arc<EndpointSlice>>) -> SliceIndex {
        let mut index = SliceIndex::default();
        for slice in slices {
            index.upsert(slice);
        }
        index
    }

    /// Adds or replaces a slice.
    pub fn upsert(&mut self, slice: Arc<EndpointSlice>) {
        let namespace = meta::namespace(&slice.metadata).to_string();
        let name = meta::name(&slice.metadata).to_string();
        self.remove(&namespace, &name);
        let Some(service) = meta::labels(&slice.metadata).get(SERVICE_NAME_LABEL) else {
            return;
        };
        insert(
            &mut self.by_service,
            (namespace.clone(), service.clone()),
            &name,
            &slice,
        );
        self.services.insert((namespace, name), service.clone());
    }

    /// Forgets a slice.
    pub fn remove(&mut self, namespace: &str, name: &str) {
        if let Some(service) = self
            .services
            .remove(&(namespace.to_string(), name.to_string()))
        {
            forget(
                &mut self.by_service,
                &(namespace.to_string(), service),
                name,
            );
        }
    }

    /// The slice called `name` in `namespace`, if it carries a Service label.
    pub fn get(&self, namespace: &str, name: &str) -> Option<&Arc<EndpointSlice>> {
        let service = self
            .services
            .get(&(namespace.to_string(), name.to_string()))?;
        self.by_service
            .get(&(namespace.to_string(), service.clone()))?
            .get(name)
    }

    /// The slices labelled with Service `service` in `namespace`.
    pub fn of_service(&self, namespace: &str, service: &str) -> Vec<Arc<EndpointSlice>> {
        self.by_service
            .get(&(namespace.to_string(), service.to_string()))
            .map(|slices| slices.values().cloned().collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{pod, service};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

    fn names<K: kube::Resource>(objects: Vec<Arc<K>>) -> Vec<String> {
        let mut names: Vec<String> = objects
            .iter()
            .map(|object| meta::name(object.meta()).to_string())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn candidates_come_from_the_rarest_selector_pair_in_the_namespace() {
        let mut narrow = service("web", "web");
        narrow
            .spec
            .as_mut()
            .unwrap()
            .selector
            .as_mut()
            .unwrap()
            .insert("tier".into(), "db".into());
        let mut db = pod("db-0", "web", "10.0.0.1", true);
        db.metadata
            .labels
            .as_mut()
            .unwrap()
            .insert("tier".into(), "db".into());
        let mut elsewhere = pod("web-9", "web", "10.0.0.9", true);
        elsewhere.metadata.namespace = Some("other".into());
        let mut index =
            PodIndex::new([db, pod("web-0", "web", "10.0.0.2", true), elsewhere].map(Arc::new));
        assert_eq!(names(index.candidates(&narrow)), vec!["db-0"]);
        assert_eq!(
            names(index.candidates(&service("web", "web"))),
            vec!["db-0", "web-0"]
        );
        assert!(index.candidates(&service("web", "nothing")).is_empty());

        // Relabelled and removed pods leave the index.
        index.upsert(Arc::new(pod("web-0", "other", "10.0.0.2", true)));
        assert_eq!(
            names(index.candidates(&service("web", "web"))),
            vec!["db-0"]
        );
        index.remove("default", "db-0");
        assert!(index.candidates(&service("web", "web")).is_empty());
        assert_eq!(index.len(), 2);
        assert!(index.get("other", "web-9").is_some());
        assert!(index.get("default", "db-0").is_none());
    }

    #[test]
    fn pods_are_found_by_their_controlling_owner() {
        let owned = |name: &str, uid: &str, controller: bool| {
            let mut pod = pod(name, "web", "10.0.0.1", true);
            pod.metadata.owner_references = Some(vec![OwnerReference {
                api_version: "apps/v1".into(),
                kind: "ReplicaSet".into(),
                name: "web".into(),
                uid: uid.into(),
                controller: Some(controller),
                ..OwnerReference::default()
            }]);
            Arc::new(pod)
        };
        let mut index = PodIndex::new([
            owned("a", "rs-1", true),
            owned("b", "rs-1", true),
            owned("c", "rs-2", true),
            owned("d", "rs-1", false),
        ]);
        assert_eq!(
            names(index.controlled_by("default", "rs-1")),
            vec!["a", "b"]
        );
        assert!(index.controlled_by("other", "rs-1").is_empty());
        // Adoption by another owner moves the pod.
        index.upsert(owned("a", "rs-2", true));
        assert_eq!(names(index.controlled_by("default", "rs-1")), vec!["b"]);
        assert_eq!(
            names(index.controlled_by("default", "rs-2")),
            vec!["a", "c"]
        );
        index.remove("default", "c");
        assert_eq!(names(index.controlled_by("default", "rs-2")), vec!["a"]);
    }

    #[test]
    fn node_load_and_unscheduled_pods_follow_the_pods() {
        let on = |name: &str, node: Option<&str>, phase: &str| {
            let mut pod = pod(name, "web", "10.0.0.1", true);
            let spec = pod.spec.as_mut().unwrap();
            spec.node_name = node.map(str::to_string);
            pod.status.as_mut().unwrap().phase = Some(phase.to_string());
            Arc::new(pod)
        };
        let pods = vec![
            on("a", Some("node-a"), "Running"),
            on("b", Some("node-a"), "Running"),
            on("c", Some("node-b"), "Succeeded"),
            on("d", None, "Pending"),
        ];
        let mut index = PodIndex::new(pods.clone());
        assert_eq!(index.node_load(), &scheduler::node_load(&pods));
        assert_eq!(names(index.unscheduled()), vec!["d"]);

        // Binding d and finishing a: the counts move with them.
        index.upsert(on("d", Some("node-b"), "Running"));
        index.upsert(on("a", Some("node-a"), "Failed"));
        index.remove("default", "b");
        let now = vec![
            on("a", Some("node-a"), "Failed"),
            on("c", Some("node-b"), "Succeeded"),
            on("d", Some("node-b"), "Running"),
        ];
        assert_eq!(index.node_load(), &scheduler::node_load(&now));
        assert_eq!(index.node_load().get("node-b"), Some(&1));
        assert!(index.unscheduled().is_empty());
    }

    #[test]
    fn services_are_found_by_the_labels_they_select() {
        let mut narrow = service("narrow", "web");
        narrow
            .spec
            .as_mut()
            .unwrap()
            .selector
            .as_mut()
            .unwrap()
            .insert("tier".into(), "db".into());
        let mut external = service("external", "web");
        external.spec.as_mut().unwrap().type_ = Some("ExternalName".into());
        let mut index = ServiceIndex::new(
            [
                service("web", "web"),
                narrow,
                external,
                service("api", "api"),
            ]
            .map(Arc::new),
        );
        let labels = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(key, value)| (key.to_string(), value.to_string()))
                .collect()
        };
        let mut selecting = index.selecting("default", &labels(&[("app", "web")]));
        selecting.sort();
        assert_eq!(selecting, vec!["web"]);
        let mut selecting = index.selecting("default", &labels(&[("app", "web"), ("tier", "db")]));
        selecting.sort();
        assert_eq!(selecting, vec!["narrow", "web"]);
        assert!(
            index
                .selecting("other", &labels(&[("app", "web")]))
                .is_empty()
        );

        // A changed selector moves the Service; a removed one is gone.
        index.upsert(&service("web", "api"));
        assert_eq!(
            index.selecting("default", &labels(&[("app", "api")])).len(),
            2
        );
        assert!(
            index
                .selecting("default", &labels(&[("app", "web")]))
                .is_empty()
        );
        index.remove("default", "api");
        assert_eq!(
            index.selecting("default", &labels(&[("app", "api")])),
            vec!["web"]
        );
    }

    #[test]
    fn slices_are_found_by_their_service_label() {
        let slice = |name: &str, service: &str| {
            let mut slice = EndpointSlice::default();
            slice.metadata.name = Some(name.into());
            slice.metadata.namespace = Some("default".into());
            slice.metadata.labels = Some(BTreeMap::from([(
                SERVICE_NAME_LABEL.to_string(),
                service.to_string(),
            )]));
            Arc::new(slice)
        };
        let mut index = SliceIndex::new([slice("web-a", "web"), slice("web-b", "web")]);
        index.upsert(slice("api-a", "api"));
        assert_eq!(
            names(index.of_service("default", "web")),
            vec!["web-a", "web-b"]
        );
        // Relabelling moves a slice to the other Service.
        index.upsert(slice("web-b", "api"));
        assert_eq!(names(index.of_service("default", "web")), vec!["web-a"]);
        assert_eq!(
            names(index.of_service("default", "api")),
            vec!["api-a", "web-b"]
        );
        index.remove("default", "api-a");
        assert_eq!(names(index.of_service("default", "api")), vec!["web-b"]);
        assert!(index.get("default", "web-b").is_some());
        assert!(index.get("default", "api-a").is_none());
        assert!(index.of_service("other", "web").is_empty());
    }
}
