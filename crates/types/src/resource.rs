//! The registry of resources hollow serves.
//!
//! One [`ResourceInfo`] per resource: everything discovery publishes and everything the API
//! server needs to route a URL, name a storage key and answer errors in kube-apiserver's words
//! (`deployments.apps "web" not found`).

/// Whether objects of a resource live in a namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    Namespaced,
    Cluster,
}

/// A subresource served under `.../{name}/{subresource}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Subresource {
    pub name: &'static str,
    /// Group, version and kind of what the subresource answers with.
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub verbs: &'static [&'static str],
}

/// Everything hollow knows about one served resource.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResourceInfo {
    /// API group; `""` is the core group.
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub list_kind: &'static str,
    /// The plural, lower-case resource name used in URLs.
    pub plural: &'static str,
    pub singular: &'static str,
    pub scope: Scope,
    pub short_names: &'static [&'static str],
    pub categories: &'static [&'static str],
    pub verbs: &'static [&'static str],
    pub subresources: &'static [Subresource],
    /// `metadata.generation` is kept and bumped on every spec change.
    pub tracks_generation: bool,
}

impl ResourceInfo {
    /// `apiVersion` as objects carry it: `v1` or `apps/v1`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `plural` or `plural.group`, as kube-apiserver names a resource in error messages.
    pub fn qualified_plural(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    pub fn is_namespaced(&self) -> bool {
        self.scope == Scope::Namespaced
    }

    pub fn subresource(&self, name: &str) -> Option<&'static Subresource> {
        self.subresources.iter().find(|sub| sub.name == name)
    }

    /// The storage key prefix of every object of this resource: `/<group>/<plural>/`.
    pub fn key_prefix(&self) -> String {
        let group = if self.group.is_empty() {
            "core"
        } else {
            self.group
        };
        format!("/{group}/{}/", self.plural)
    }

    /// The storage key prefix of every object in one namespace (or of all, with `None`).
    pub fn namespace_prefix(&self, namespace: Option<&str>) -> String {
        match (self.scope, namespace) {
            (Scope::Namespaced, Some(namespace)) => {
                format!("{}{namespace}/", self.key_prefix())
            }
            _ => self.key_prefix(),
        }
    }

    /// The storage key of one object.
    pub fn key(&self, namespace: Option<&str>, name: &str) -> String {
        match (self.scope, namespace) {
            (Scope::Namespaced, Some(namespace)) => {
                format!("{}{namespace}/{name}", self.key_prefix())
            }
            _ => format!("{}{name}", self.key_prefix()),
        }
    }

    /// Looks a resource up by group and plural.
    pub fn find(group: &str, plural: &str) -> Option<&'static ResourceInfo> {
        RESOURCES
            .iter()
            .find(|resource| resource.group == group && resource.plural == plural)
    }

    /// Looks a resource up by the kind its objects carry.
    pub fn find_kind(api_version: &str, kind: &str) -> Option<&'static ResourceInfo> {
        RESOURCES
            .iter()
            .find(|resource| resource.kind == kind && resource.api_version() == api_version)
    }
}

const ALL_VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];
const NAMESPACE_VERBS: &[&str] = &[
    "create", "delete", "get", "list", "patch", "update", "watch",
];
const SUBRESOURCE_VERBS: &[&str] = &["get", "patch", "update"];

const fn status(group: &'static str, kind: &'static str) -> Subresource {
    Subresource {
        name: "status",
        group,
        version: "v1",
        kind,
        verbs: SUBRESOURCE_VERBS,
    }
}

const SCALE: Subresource = Subresource {
    name: "scale",
    group: "autoscaling",
    version: "v1",
    kind: "Scale",
    verbs: SUBRESOURCE_VERBS,
};

const BINDING: Subresource = Subresource {
    name: "binding",
    group: "",
    version: "v1",
    kind: "Binding",
    verbs: &["create"],
};

const LOG: Subresource = Subresource {
    name: "log",
    group: "",
    version: "v1",
    kind: "Pod",
    verbs: &["get"],
};

/// Every resource hollow serves, in discovery order.
pub static RESOURCES: &[ResourceInfo] = &[
    ResourceInfo {
        group: "",
        version: "v1",
        kind: "Namespace",
        list_kind: "NamespaceList",
        plural: "namespaces",
        singular: "namespace",
        scope: Scope::Cluster,
        short_names: &["ns"],
        categories: &[],
        verbs: NAMESPACE_VERBS,
        subresources: &[status("", "Namespace")],
        tracks_generation: false,
    },
    ResourceInfo {
        group: "",
        version: "v1",
        kind: "Node",
        list_kind: "NodeList",
        plural: "nodes",
        singular: "node",
        scope: Scope::Cluster,
        short_names: &["no"],
        categories: &[],
        verbs: ALL_VERBS,
        subresources: &[status("", "Node")],
        tracks_generation: false,
    },
    ResourceInfo {
        group: "",
        version: "v1",
        kind: "Pod",
        list_kind: "PodList",
        plural: "pods",
        singular: "pod",
        scope: Scope::Namespaced,
        short_names: &["po"],
        categories: &["all"],
        verbs: ALL_VERBS,
        subresources: &[status("", "Pod"), BINDING, LOG],
        tracks_generation: true,
    },
    ResourceInfo {
        group: "",
        version: "v1",
        kind: "Service",
        list_kind: "ServiceList",
        plural: "services",
        singular: "service",
        scope: Scope::Namespaced,
        short_names: &["svc"],
        categories: &["all"],
        verbs: ALL_VERBS,
        subresources: &[status("", "Service")],
        tracks_generation: false,
    },
    ResourceInfo {
        group: "",
        version: "v1",
        kind: "Endpoints",
        list_kind: "EndpointsList",
        plural: "endpoints",
        singular: "endpoints",
        scope: Scope::Namespaced,
        short_names: &["ep"],
        categories: &[],
        verbs: ALL_VERBS,
        subresources: &[],
        tracks_generation: false,
    },
    ResourceInfo {
        group: "",
        version: "v1",
        kind: "Event",
        list_kind: "EventList",
        plural: "events",
        singular: "event",
        scope: Scope::Namespaced,
        short_names: &["ev"],
        categories: &[],
        verbs: ALL_VERBS,
        subresources: &[],
        tracks_generation: false,
    },
    ResourceInfo {
        group: "discovery.k8s.io",
        version: "v1",
        kind: "EndpointSlice",
        list_kind: "EndpointSliceList",
        plural: "endpointslices",
        singular: "endpointslice",
        scope: Scope::Namespaced,
        short_names: &[],
        categories: &[],
        verbs: ALL_VERBS,
        subresources: &[],
        tracks_generation: false,
    },
    ResourceInfo {
        group: "apps",
        version: "v1",
        kind: "Deployment",
        list_kind: "DeploymentList",
        plural: "deployments",
        singular: "deployment",
        scope: Scope::Namespaced,
        short_names: &["deploy"],
        categories: &["all"],
        verbs: ALL_VERBS,
        subresources: &[status("apps", "Deployment"), SCALE],
        tracks_generation: true,
    },
    ResourceInfo {
        group: "apps",
        version: "v1",
        kind: "ReplicaSet",
        list_kind: "ReplicaSetList",
        plural: "replicasets",
        singular: "replicaset",
        scope: Scope::Namespaced,
        short_names: &["rs"],
        categories: &["all"],
        verbs: ALL_VERBS,
        subresources: &[status("apps", "ReplicaSet"), SCALE],
        tracks_generation: true,
    },
    ResourceInfo {
        group: "apps",
        version: "v1",
        kind: "StatefulSet",
        list_kind: "StatefulSetList",
        plural: "statefulsets",
        singular: "statefulset",
        scope: Scope::Namespaced,
        short_names: &["sts"],
        categories: &["all"],
        verbs: ALL_VERBS,
        subresources: &[status("apps", "StatefulSet"), SCALE],
        tracks_generation: true,
    },
];

/// The API groups served, each with its one version, in discovery order.
pub fn groups() -> Vec<(&'static str, &'static str)> {
    let mut groups: Vec<(&str, &str)> = Vec::new();
    for resource in RESOURCES {
        if !groups.contains(&(resource.group, resource.version)) {
            groups.push((resource.group, resource.version));
        }
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_keep_namespaces_apart() {
        let pods = ResourceInfo::find("", "pods").unwrap();
        assert_eq!(pods.key(Some("a"), "x"), "/core/pods/a/x");
        assert_eq!(pods.namespace_prefix(Some("a")), "/core/pods/a/");
        assert_eq!(pods.namespace_prefix(None), "/core/pods/");
        let namespaces = ResourceInfo::find("", "namespaces").unwrap();
        assert_eq!(namespaces.key(None, "default"), "/core/namespaces/default");
        let deployments = ResourceInfo::find("apps", "deployments").unwrap();
        assert_eq!(deployments.qualified_plural(), "deployments.apps");
        assert_eq!(deployments.api_version(), "apps/v1");
    }

    #[test]
    fn every_plural_and_short_name_is_unique() {
        let mut names: Vec<&str> = RESOURCES
            .iter()
            .flat_map(|resource| {
                std::iter::once(resource.plural).chain(resource.short_names.iter().copied())
            })
            .collect();
        let count = names.len();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), count);
    }
}
