//! Applies a [`Plan`] through `kube::Api`, and records events.
//!
//! Writes go in plan order: creates, updates (`replace`, guarded by the
//! `resourceVersion` the plan was computed from), status updates (`replace_status`),
//! merge patches, deletes (with a uid precondition), then the plan's events. A failing
//! write does not stop the others; the first error is returned so the controller retries
//! with back-off.
//!
//! The executor records the events that depend on a write's outcome: creating or
//! deleting a pod that has a controlling owner gives `SuccessfulCreate` /
//! `SuccessfulDelete` (or `FailedCreate` / `FailedDelete`) on the owner, worded as
//! Kubernetes' ReplicaSet and StatefulSet controllers word them. Repeated identical
//! events are folded into one core/v1 Event whose `count` grows, as client-go's event
//! correlator does, so a controller stuck on bad input does not flood the API.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::Mutex;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{Endpoints, Event, EventSource, ObjectReference, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{
    DeleteParams, Patch as KubePatch, PatchParams, PostParams, Preconditions, PropagationPolicy,
};
use kube::{Api, Client, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::meta;
use crate::plan::{Deletion, EventNote, EventType, Kind, Object, Patch, Plan, Propagation};

/// Event cache entries kept for folding repeats; beyond this the cache starts afresh.
const EVENT_CACHE_LIMIT: usize = 4096;

/// What a write did, for the caller's bookkeeping (see `wiring`'s expectations).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Written {
    /// An object now exists under this name with this resourceVersion.
    Present {
        /// Its kind.
        kind: Kind,
        /// Its namespace.
        namespace: String,
        /// Its (possibly server-generated) name.
        name: String,
        /// The resourceVersion the server returned.
        resource_version: Option<String>,
    },
    /// The object with this uid is gone or going.
    Absent {
        /// Its kind.
        kind: Kind,
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
        /// The uid that was deleted.
        uid: Option<String>,
    },
}

/// The outcome of applying a plan.
#[derive(Debug)]
pub struct Applied {
    /// The writes that succeeded.
    pub written: Vec<Written>,
    /// The first write that failed.
    pub error: Option<WriteError>,
    /// The EndpointSlices created or replaced, as the server returned them (with their
    /// names and resourceVersions), so a controller can plan its next step on them
    /// before its watch delivers them.
    pub slices: Vec<EndpointSlice>,
}

/// A write that failed.
#[derive(Debug, thiserror::Error)]
#[error("{verb} {kind:?} {namespace}/{name}: {source}")]
pub struct WriteError {
    /// create, replace, replace status, patch, delete.
    pub verb: &'static str,
    /// The kind written.
    pub kind: Kind,
    /// Its namespace.
    pub namespace: String,
    /// Its name (or generateName prefix).
    pub name: String,
    /// What the API server said.
    #[source]
    pub source: kube::Error,
}

impl WriteError {
    /// True for conflicts (stale resourceVersion, name taken): a normal race that a retry
    /// with a fresher cache resolves, not worth a warning event.
    pub fn is_conflict(&self) -> bool {
        matches!(&self.source, kube::Error::Api(status) if status.code == 409)
    }
}

struct RecordedEvent {
    name: String,
    namespace: String,
    count: i32,
}

/// Applies plans and records events.
pub struct Executor {
    client: Client,
    component: String,
    events: Mutex<HashMap<(String, String, String, String), RecordedEvent>>,
    sequence: std::sync::atomic::AtomicU64,
}

/// Evaluates `$body` with `$type` naming the k8s-openapi type of `$kind`, so one generic
/// call serves every kind a plan may write.
macro_rules! with_type_of {
    ($kind:expr, $type:ident => $body:expr) => {
        match $kind {
            Kind::Pod => {
                type $type = Pod;
                $body
            }
            Kind::Service => {
                type $type = Service;
                $body
            }
            Kind::Endpoints => {
                type $type = Endpoints;
                $body
            }
            Kind::EndpointSlice => {
                type $type = EndpointSlice;
                $body
            }
            Kind::ReplicaSet => {
                type $type = ReplicaSet;
                $body
            }
            Kind::Deployment => {
                type $type = Deployment;
                $body
            }
            Kind::StatefulSet => {
                type $type = StatefulSet;
                $body
            }
        }
    };
}

fn api<K>(client: &Client, namespace: &str) -> Api<K>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>,
{
    Api::namespaced(client.clone(), namespace)
}

fn is_not_found(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 404)
}

fn present<K: Resource>(kind: Kind, object: &K) -> Written {
    let metadata = object.meta();
    Written::Present {
        kind,
        namespace: meta::namespace(metadata).to_string(),
        name: meta::name(metadata).to_string(),
        resource_version: metadata.resource_version.clone(),
    }
}

impl Executor {
    /// An executor writing through `client`; `component` names the event source.
    pub fn new(client: Client, component: impl Into<String>) -> Self {
        Executor {
            client,
            component: component.into(),
            events: Mutex::new(HashMap::new()),
            sequence: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// The client the executor writes with.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Applies every write of `plan`, then its events. Every write is attempted; the
    /// outcome lists what was written and the first error, if any.
    pub async fn apply(&self, plan: Plan) -> Applied {
        let mut written = Vec::new();
        let mut slices = Vec::new();
        let mut first_error: Option<WriteError> = None;
        let mut note =
            |result: Result<Written, WriteError>, written: &mut Vec<Written>| match result {
                Ok(done) => written.push(done),
                Err(error) => {
                    tracing::debug!(%error, "write failed");
                    if first_error.is_none() {
                        first_error = Some(error);
                    }
                }
            };
        for object in plan.create {
            let owner_event = PodOwnerEvent::of(&object);
            let result = self.create(object, &mut slices).await;
            if let Some(owner_event) = owner_event {
                self.record_pod_outcome(owner_event, "create", &result)
                    .await;
            }
            note(result, &mut written);
        }
        for object in plan.update {
            let started = std::time::Instant::now();
            let kind = match &object {
                Object::Endpoints(_) => "Endpoints",
                Object::EndpointSlice(_) => "EndpointSlice",
                _ => "other",
            };
            let result = self.replace(object, false, &mut slices).await;
            tracing::debug!(
                target: "hollow_controllers::timing",
                kind,
                write_us = started.elapsed().as_micros() as u64,
                "replace"
            );
            note(result, &mut written);
        }
        for object in plan.update_status {
            note(self.replace(object, true, &mut slices).await, &mut written);
        }
        for patch in plan.patch {
            note(self.patch(patch).await, &mut written);
        }
        for deletion in plan.delete {
            let owner_event = deletion.report_to.clone().map(|owner| PodOwnerEvent {
                owner,
                pod_name: deletion.name.clone(),
            });
            let result = self.delete(deletion).await;
            if let Some(owner_event) = owner_event {
                self.record_pod_outcome(owner_event, "delete", &result)
                    .await;
            }
            note(result, &mut written);
        }
        for event in plan.events {
            self.record(&event).await;
        }
        Applied {
            written,
            error: first_error,
            slices,
        }
    }

    async fn create(
        &self,
        object: Object,
        slices: &mut Vec<EndpointSlice>,
    ) -> Result<Written, WriteError> {
        let kind = object.kind();
        let namespace = meta::namespace(object.metadata()).to_string();
        let name = object.display_name();
        let client = &self.client;
        let result = match object {
            Object::Pod(pod) => create_typed(client, kind, &pod).await,
            Object::Service(service) => create_typed(client, kind, &service).await,
            Object::Endpoints(endpoints) => create_typed(client, kind, &endpoints).await,
            Object::EndpointSlice(slice) => api::<EndpointSlice>(client, &namespace)
                .create(&PostParams::default(), &slice)
                .await
                .map(|created| {
                    let done = present(kind, &created);
                    slices.push(created);
                    done
                }),
            Object::ReplicaSet(set) => create_typed(client, kind, &set).await,
            Object::Deployment(set) => create_typed(client, kind, &set).await,
            Object::StatefulSet(set) => create_typed(client, kind, &set).await,
            Object::Binding(binding) => {
                let pod_name = meta::name(&binding.metadata).to_string();
                // kube-scheduler binds through the subresource; the answer is a Status.
                let result: Result<serde_json::Value, kube::Error> = api::<Pod>(client, &namespace)
                    .create_subresource("binding", &pod_name, &PostParams::default(), &binding)
                    .await;
                result.map(|_| Written::Present {
                    kind,
                    namespace: namespace.clone(),
                    name: pod_name,
                    resource_version: None,
                })
            }
        };
        result.map_err(|source| WriteError {
            verb: "create",
            kind,
            namespace,
            name,
            source,
        })
    }

    async fn replace(
        &self,
        object: Object,
        status: bool,
        slices: &mut Vec<EndpointSlice>,
    ) -> Result<Written, WriteError> {
        let verb = if status { "replace status" } else { "replace" };
        let kind = object.kind();
        let namespace = meta::namespace(object.metadata()).to_string();
        let name = object.display_name();
        let client = &self.client;
        let result = match object {
            Object::Pod(pod) => replace_typed(client, kind, &pod, status).await,
            Object::Service(service) => replace_typed(client, kind, &service, status).await,
            Object::Endpoints(endpoints) => replace_typed(client, kind, &endpoints, status).await,
            Object::EndpointSlice(slice) => api::<EndpointSlice>(client, &namespace)
                .replace(meta::name(&slice.metadata), &PostParams::default(), &slice)
                .await
                .map(|replaced| {
                    let done = present(kind, &replaced);
                    slices.push(replaced);
                    done
                }),
            Object::ReplicaSet(set) => replace_typed(client, kind, &set, status).await,
            Object::Deployment(set) => replace_typed(client, kind, &set, status).await,
            Object::StatefulSet(set) => replace_typed(client, kind, &set, status).await,
            Object::Binding(_) => Err(kube::Error::BuildRequest(
                kube::core::request::Error::Validation("a binding can only be created".to_string()),
            )),
        };
        result.map_err(|source| WriteError {
            verb,
            kind,
            namespace,
            name,
            source,
        })
    }

    async fn patch(&self, patch: Patch) -> Result<Written, WriteError> {
        let Patch {
            kind,
            namespace,
            name,
            status,
            patch,
        } = patch;
        let result = with_type_of!(
            kind,
            K => patch_typed::<K>(&self.client, kind, &namespace, &name, status, &patch).await
        );
        result.map_err(|source| WriteError {
            verb: "patch",
            kind,
            namespace,
            name,
            source,
        })
    }

    async fn delete(&self, deletion: Deletion) -> Result<Written, WriteError> {
        let Deletion {
            kind,
            namespace,
            name,
            uid,
            propagation,
            ..
        } = deletion;
        let params = DeleteParams {
            preconditions: uid.clone().map(|uid| Preconditions {
                uid: Some(uid),
                resource_version: None,
            }),
            propagation_policy: propagation.map(|propagation| match propagation {
                Propagation::Background => PropagationPolicy::Background,
                Propagation::Foreground => PropagationPolicy::Foreground,
            }),
            ..DeleteParams::default()
        };
        let result = with_type_of!(
            kind,
            K => delete_typed::<K>(&self.client, &namespace, &name, &params).await
        );
        match result {
            Ok(()) => Ok(Written::Absent {
                kind,
                namespace,
                name,
                uid,
            }),
            // Already gone, or replaced by a newer object with another uid: either way the
            // object this plan meant is no more.
            Err(kube::Error::Api(status))
                if status.code == 404 || (status.code == 409 && uid.is_some()) =>
            {
                Ok(Written::Absent {
                    kind,
                    namespace,
                    name,
                    uid,
                })
            }
            Err(source) => Err(WriteError {
                verb: "delete",
                kind,
                namespace,
                name,
                source,
            }),
        }
    }

    async fn record_pod_outcome(
        &self,
        owner_event: PodOwnerEvent,
        verb: &str,
        result: &Result<Written, WriteError>,
    ) {
        let PodOwnerEvent { owner, pod_name } = owner_event;
        let owner_kind = owner.kind.clone().unwrap_or_default();
        let owner_name = owner.name.clone().unwrap_or_default();
        let pod_name = match result {
            Ok(Written::Present { name, .. }) => name.clone(),
            _ => pod_name,
        };
        let (type_, reason, message) = match (result, owner_kind.as_str(), verb) {
            (Err(error), _, _) if error.is_conflict() => return,
            (Ok(_), "StatefulSet", _) => {
                let capitalised = if verb == "create" {
                    "SuccessfulCreate"
                } else {
                    "SuccessfulDelete"
                };
                (
                    EventType::Normal,
                    capitalised,
                    format!("{verb} Pod {pod_name} in StatefulSet {owner_name} successful"),
                )
            }
            (Err(error), "StatefulSet", _) => {
                let reason = if verb == "create" {
                    "FailedCreate"
                } else {
                    "FailedDelete"
                };
                (
                    EventType::Warning,
                    reason,
                    format!(
                        "{verb} Pod {pod_name} in StatefulSet {owner_name} failed error: {}",
                        error.source
                    ),
                )
            }
            (Ok(_), _, "create") => (
                EventType::Normal,
                "SuccessfulCreate",
                format!("Created pod: {pod_name}"),
            ),
            (Ok(_), _, _) => (
                EventType::Normal,
                "SuccessfulDelete",
                format!("Deleted pod: {pod_name}"),
            ),
            (Err(error), _, "create") => (
                EventType::Warning,
                "FailedCreate",
                format!("Error creating: {}", error.source),
            ),
            (Err(error), _, _) => (
                EventType::Warning,
                "FailedDelete",
                format!("Error deleting: {}", error.source),
            ),
        };
        self.record(&EventNote {
            regarding: owner,
            type_,
            reason: reason.to_string(),
            message,
        })
        .await;
    }

    /// Records one event, folding it into an earlier identical one when there is one.
    pub async fn record(&self, note: &EventNote) {
        let regarding = &note.regarding;
        let namespace = regarding
            .namespace
            .clone()
            .filter(|namespace| !namespace.is_empty())
            .unwrap_or_else(|| "default".to_string());
        let key = (
            regarding.uid.clone().unwrap_or_else(|| {
                format!("{namespace}/{}", regarding.name.clone().unwrap_or_default())
            }),
            note.type_.as_str().to_string(),
            note.reason.clone(),
            note.message.clone(),
        );
        let now = Time(Timestamp::now());
        let previous = self
            .events
            .lock()
            .expect("event cache lock")
            .get(&key)
            .map(|event| (event.name.clone(), event.namespace.clone(), event.count));
        let events: Api<Event> = api(&self.client, &namespace);
        if let Some((name, event_namespace, count)) = previous {
            let events_there: Api<Event> = api(&self.client, &event_namespace);
            let patch = json!({"count": count + 1, "lastTimestamp": now});
            match events_there
                .patch(&name, &PatchParams::default(), &KubePatch::Merge(&patch))
                .await
            {
                Ok(_) => {
                    if let Some(entry) = self.events.lock().expect("event cache lock").get_mut(&key)
                    {
                        entry.count = count + 1;
                    }
                    return;
                }
                Err(error) if is_not_found(&error) => {}
                Err(error) => {
                    tracing::debug!(%error, "event update failed");
                    return;
                }
            }
        }
        let sequence = self
            .sequence
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!(
            "{}.{:x}{:04x}",
            regarding
                .name
                .clone()
                .unwrap_or_else(|| "object".to_string()),
            now.0.as_nanosecond(),
            sequence & 0xffff
        );
        let event = Event {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(namespace.clone()),
                ..ObjectMeta::default()
            },
            involved_object: regarding.clone(),
            reason: Some(note.reason.clone()),
            message: Some(note.message.clone()),
            type_: Some(note.type_.as_str().to_string()),
            source: Some(EventSource {
                component: Some(self.component.clone()),
                host: None,
            }),
            reporting_component: Some(self.component.clone()),
            reporting_instance: Some(self.component.clone()),
            first_timestamp: Some(now.clone()),
            last_timestamp: Some(now),
            count: Some(1),
            ..Event::default()
        };
        match events.create(&PostParams::default(), &event).await {
            Ok(_) => {
                let mut cache = self.events.lock().expect("event cache lock");
                if cache.len() >= EVENT_CACHE_LIMIT {
                    cache.clear();
                }
                cache.insert(
                    key,
                    RecordedEvent {
                        name,
                        namespace,
                        count: 1,
                    },
                );
            }
            Err(error) => tracing::debug!(%error, "event create failed"),
        }
    }
}

/// The owner a pod write reports to.
#[derive(Clone, Debug)]
struct PodOwnerEvent {
    owner: ObjectReference,
    pod_name: String,
}

impl PodOwnerEvent {
    fn of(object: &Object) -> Option<Self> {
        let Object::Pod(pod) = object else {
            return None;
        };
        Self::for_metadata(&pod.metadata, object.display_name())
    }

    fn for_metadata(metadata: &ObjectMeta, pod_name: String) -> Option<Self> {
        let owner = meta::controller_of(metadata)?;
        Some(PodOwnerEvent {
            owner: ObjectReference {
                api_version: Some(owner.api_version.clone()),
                kind: Some(owner.kind.clone()),
                name: Some(owner.name.clone()),
                uid: Some(owner.uid.clone()),
                namespace: metadata.namespace.clone(),
                ..ObjectReference::default()
            },
            pod_name,
        })
    }
}

async fn create_typed<K>(client: &Client, kind: Kind, object: &K) -> Result<Written, kube::Error>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + Serialize
        + DeserializeOwned
        + Debug,
{
    let namespace = meta::namespace(object.meta()).to_string();
    let created = api::<K>(client, &namespace)
        .create(&PostParams::default(), object)
        .await?;
    Ok(present(kind, &created))
}

async fn replace_typed<K>(
    client: &Client,
    kind: Kind,
    object: &K,
    status: bool,
) -> Result<Written, kube::Error>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + Serialize
        + DeserializeOwned
        + Debug,
{
    let metadata = object.meta();
    let objects = api::<K>(client, meta::namespace(metadata));
    let replaced = if status {
        objects
            .replace_status(meta::name(metadata), &PostParams::default(), object)
            .await?
    } else {
        objects
            .replace(meta::name(metadata), &PostParams::default(), object)
            .await?
    };
    Ok(present(kind, &replaced))
}

async fn patch_typed<K>(
    client: &Client,
    kind: Kind,
    namespace: &str,
    name: &str,
    status: bool,
    patch: &serde_json::Value,
) -> Result<Written, kube::Error>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + Serialize
        + DeserializeOwned
        + Debug,
{
    let objects = api::<K>(client, namespace);
    let params = PatchParams::default();
    let patched = if status {
        objects
            .patch_status(name, &params, &KubePatch::Merge(patch))
            .await?
    } else {
        objects
            .patch(name, &params, &KubePatch::Merge(patch))
            .await?
    };
    Ok(present(kind, &patched))
}

async fn delete_typed<K>(
    client: &Client,
    namespace: &str,
    name: &str,
    params: &DeleteParams,
) -> Result<(), kube::Error>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + Serialize
        + DeserializeOwned
        + Debug,
{
    api::<K>(client, namespace)
        .delete(name, params)
        .await
        .map(|_| ())
}
