//! The output of every reconcile function: a [`Plan`] of API writes.
//!
//! Reconcilers never talk to the API server. They describe the writes they want, and
//! [`crate::executor::Executor`] performs them. Tests assert on plans directly, so a plan
//! holds plain k8s-openapi objects that compare with `==`.

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{Binding, Endpoints, ObjectReference, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// A kind of object a plan can touch. Only namespaced kinds appear: every kind the
/// controllers write lives in a namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// core/v1 Pod.
    Pod,
    /// core/v1 Service.
    Service,
    /// core/v1 Endpoints (the legacy endpoints object).
    Endpoints,
    /// discovery.k8s.io/v1 EndpointSlice.
    EndpointSlice,
    /// apps/v1 ReplicaSet.
    ReplicaSet,
    /// apps/v1 Deployment.
    Deployment,
    /// apps/v1 StatefulSet.
    StatefulSet,
}

impl Kind {
    /// The `kind` string as it appears in owner references and object references.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Pod => "Pod",
            Kind::Service => "Service",
            Kind::Endpoints => "Endpoints",
            Kind::EndpointSlice => "EndpointSlice",
            Kind::ReplicaSet => "ReplicaSet",
            Kind::Deployment => "Deployment",
            Kind::StatefulSet => "StatefulSet",
        }
    }

    /// The `apiVersion` of the kind.
    pub fn api_version(self) -> &'static str {
        match self {
            Kind::Pod | Kind::Service | Kind::Endpoints => "v1",
            Kind::EndpointSlice => "discovery.k8s.io/v1",
            Kind::ReplicaSet | Kind::Deployment | Kind::StatefulSet => "apps/v1",
        }
    }

    /// Parses an owner reference's `kind` and `apiVersion`; `None` for kinds the
    /// controllers do not know (their existence cannot be checked, so they are left alone).
    pub fn from_reference(api_version: &str, kind: &str) -> Option<Kind> {
        [
            Kind::Pod,
            Kind::Service,
            Kind::Endpoints,
            Kind::EndpointSlice,
            Kind::ReplicaSet,
            Kind::Deployment,
            Kind::StatefulSet,
        ]
        .into_iter()
        .find(|candidate| candidate.as_str() == kind && candidate.api_version() == api_version)
    }
}

/// A whole object to create or replace.
#[derive(Clone, Debug, PartialEq)]
#[allow(clippy::large_enum_variant)] // plans are short-lived; boxing would only add noise
pub enum Object {
    /// A Pod.
    Pod(Pod),
    /// A Service (only ever patched, listed for completeness of replace).
    Service(Service),
    /// A legacy Endpoints object.
    Endpoints(Endpoints),
    /// An EndpointSlice.
    EndpointSlice(EndpointSlice),
    /// A ReplicaSet.
    ReplicaSet(ReplicaSet),
    /// A Deployment.
    Deployment(Deployment),
    /// A StatefulSet.
    StatefulSet(StatefulSet),
    /// A pod binding: created through the pod's `binding` subresource.
    Binding(Binding),
}

impl Object {
    /// The kind written (a binding writes its pod).
    pub fn kind(&self) -> Kind {
        match self {
            Object::Pod(_) | Object::Binding(_) => Kind::Pod,
            Object::Service(_) => Kind::Service,
            Object::Endpoints(_) => Kind::Endpoints,
            Object::EndpointSlice(_) => Kind::EndpointSlice,
            Object::ReplicaSet(_) => Kind::ReplicaSet,
            Object::Deployment(_) => Kind::Deployment,
            Object::StatefulSet(_) => Kind::StatefulSet,
        }
    }

    /// The object's metadata.
    pub fn metadata(&self) -> &ObjectMeta {
        match self {
            Object::Pod(object) => &object.metadata,
            Object::Service(object) => &object.metadata,
            Object::Endpoints(object) => &object.metadata,
            Object::EndpointSlice(object) => &object.metadata,
            Object::ReplicaSet(object) => &object.metadata,
            Object::Deployment(object) => &object.metadata,
            Object::StatefulSet(object) => &object.metadata,
            Object::Binding(object) => &object.metadata,
        }
    }

    /// The name, or the generateName prefix followed by `*` when the server picks the name.
    pub fn display_name(&self) -> String {
        let metadata = self.metadata();
        match (&metadata.name, &metadata.generate_name) {
            (Some(name), _) => name.clone(),
            (None, Some(prefix)) => format!("{prefix}*"),
            (None, None) => String::new(),
        }
    }
}

/// A JSON merge patch (RFC 7386) against one object, or against its status subresource.
#[derive(Clone, Debug, PartialEq)]
pub struct Patch {
    /// What is patched.
    pub kind: Kind,
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// Whether the patch goes to the `status` subresource.
    pub status: bool,
    /// The merge patch document.
    pub patch: serde_json::Value,
}

/// How dependents of a deleted object are treated (the API's `propagationPolicy`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Propagation {
    /// Delete now; the garbage collector removes dependents afterwards.
    Background,
    /// Delete dependents that block owner deletion first, then the object.
    Foreground,
}

/// An object to delete, guarded by its uid so that a newer object with the same name
/// is never deleted by mistake.
#[derive(Clone, Debug, PartialEq)]
pub struct Deletion {
    /// What is deleted.
    pub kind: Kind,
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// The uid precondition; `None` deletes whatever carries the name.
    pub uid: Option<String>,
    /// The propagation policy; `None` leaves the server's default.
    pub propagation: Option<Propagation>,
    /// The controller to tell about the outcome with a `SuccessfulDelete` or
    /// `FailedDelete` event (pods deleted by their ReplicaSet or StatefulSet).
    pub report_to: Option<ObjectReference>,
}

impl Deletion {
    /// The deletion of a pod by its controlling owner, reported to that owner.
    pub fn of_pod(pod: &Pod) -> Deletion {
        let report_to = crate::meta::controller_of(&pod.metadata).map(|owner| ObjectReference {
            api_version: Some(owner.api_version.clone()),
            kind: Some(owner.kind.clone()),
            name: Some(owner.name.clone()),
            uid: Some(owner.uid.clone()),
            namespace: pod.metadata.namespace.clone(),
            ..ObjectReference::default()
        });
        Deletion {
            kind: Kind::Pod,
            namespace: crate::meta::namespace(&pod.metadata).to_string(),
            name: crate::meta::name(&pod.metadata).to_string(),
            uid: pod.metadata.uid.clone(),
            propagation: None,
            report_to,
        }
    }
}

/// The severity of an event, as `kubectl describe` prints it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventType {
    /// Something expected happened.
    Normal,
    /// Something the user may need to fix.
    Warning,
}

impl EventType {
    /// The API string.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

/// An event to record about an object. Timestamps, name and count are the executor's
/// business (it aggregates repeats the way client-go's event correlator does).
#[derive(Clone, Debug, PartialEq)]
pub struct EventNote {
    /// The object the event is about.
    pub regarding: ObjectReference,
    /// Normal or Warning.
    pub type_: EventType,
    /// A short CamelCase reason, e.g. `SuccessfulCreate`.
    pub reason: String,
    /// A human-readable message.
    pub message: String,
}

/// Every write one reconcile wants, in the order the executor applies them:
/// creates, updates, status updates, patches, deletes, then events.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    /// Objects to create (possibly with `generateName`).
    pub create: Vec<Object>,
    /// Objects to replace; each carries the `resourceVersion` it was computed from, so a
    /// concurrent change makes the write fail with a conflict instead of losing data.
    pub update: Vec<Object>,
    /// Objects whose status subresource is replaced.
    pub update_status: Vec<Object>,
    /// Merge patches.
    pub patch: Vec<Patch>,
    /// Objects to delete.
    pub delete: Vec<Deletion>,
    /// Events that are not tied to the outcome of a write. Events for pod creation and
    /// deletion (`SuccessfulCreate`, `FailedCreate`, ...) are recorded by the executor
    /// because only it knows the server-assigned name and whether the write worked.
    pub events: Vec<EventNote>,
}

impl Plan {
    /// True when the plan has nothing to do.
    pub fn is_empty(&self) -> bool {
        self.create.is_empty()
            && self.update.is_empty()
            && self.update_status.is_empty()
            && self.patch.is_empty()
            && self.delete.is_empty()
            && self.events.is_empty()
    }

    /// Appends another plan's writes to this one.
    pub fn extend(&mut self, other: Plan) {
        self.create.extend(other.create);
        self.update.extend(other.update);
        self.update_status.extend(other.update_status);
        self.patch.extend(other.patch);
        self.delete.extend(other.delete);
        self.events.extend(other.events);
    }

    /// The number of API writes (events excluded).
    pub fn write_count(&self) -> usize {
        self.create.len()
            + self.update.len()
            + self.update_status.len()
            + self.patch.len()
            + self.delete.len()
    }
}
