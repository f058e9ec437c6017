//! Per-kind rules for writes: what the server sets, keeps and checks.
//!
//! kube-apiserver calls these "strategies": before a create or update the server resets the
//! fields clients may not set, fills defaults, bumps `generation` on spec changes, and
//! validates. Each function works on the whole JSON document, so fields the server does not
//! model pass through untouched.

use hollow_types::ResourceInfo;
use hollow_types::k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use hollow_types::k8s_openapi::api::core::v1::{Endpoints, Event, Namespace, Node, Pod, Service};
use hollow_types::k8s_openapi::api::discovery::v1::EndpointSlice;
use hollow_types::validation::{self, FieldError, NameRule};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::{ApiError, ApiResult};
use crate::object::{metadata_mut, now_rfc3339};

/// Checks that a body's fields have the types Kubernetes gives them, by decoding it into the
/// generated type. The decoded value is thrown away: the JSON document is what is stored.
pub fn check_field_types(resource: &ResourceInfo, object: &Value) -> ApiResult<()> {
    fn check<'a, T: Deserialize<'a>>(object: &'a Value) -> Result<(), serde_json::Error> {
        T::deserialize(object).map(drop)
    }
    let result = match resource.kind {
        "Namespace" => check::<Namespace>(object),
        "Node" => check::<Node>(object),
        "Pod" => check::<Pod>(object),
        "Service" => check::<Service>(object),
        "Endpoints" => check::<Endpoints>(object),
        "Event" => check::<Event>(object),
        "EndpointSlice" => check::<EndpointSlice>(object),
        "Deployment" => check::<Deployment>(object),
        "ReplicaSet" => check::<ReplicaSet>(object),
        "StatefulSet" => check::<StatefulSet>(object),
        _ => Ok(()),
    };
    result.map_err(|error| {
        ApiError::bad_request(format!(
            "{kind} in version \"{version}\" cannot be handled as a {kind}: {error}",
            kind = resource.kind,
            version = resource.version,
        ))
    })
}

/// The name rule kube-apiserver applies to each kind.
fn name_rule(resource: &ResourceInfo) -> NameRule {
    match resource.kind {
        "Namespace" => NameRule::Dns1123Label,
        "Service" => NameRule::Dns1035Label,
        _ => NameRule::Dns1123Subdomain,
    }
}

/// Validation of a new object, or with `old` of an update.
pub fn validate(resource: &ResourceInfo, object: &Value, old: Option<&Value>) -> Vec<FieldError> {
    static NO_METADATA: std::sync::LazyLock<Value> = std::sync::LazyLock::new(|| json!({}));
    let metadata = object.get("metadata").unwrap_or(&NO_METADATA);
    let mut errors =
        validation::validate_object_meta(metadata, resource.is_namespaced(), name_rule(resource));
    match resource.kind {
        "Service" => errors.extend(crate::service::validate(object)),
        "Pod" => {
            match object.get("spec") {
                Some(spec) => crate::workload::validate_pod_spec(spec, "spec", &mut errors),
                None => errors.push(FieldError::required("spec", "")),
            }
            if let Some(old) = old {
                crate::workload::validate_pod_update(object, old, &mut errors);
            }
        }
        "Deployment" | "ReplicaSet" | "StatefulSet" => {
            crate::workload::validate_workload(resource.kind, object, old, &mut errors)
        }
        _ => {}
    }
    errors
}

/// What the server sets on every new object, then the kind's own defaults.
pub fn prepare_for_create(resource: &ResourceInfo, object: &mut Value, uid: String) {
    let metadata = metadata_mut(object);
    for server_owned in [
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "resourceVersion",
        "generation",
        "selfLink",
    ] {
        metadata.remove(server_owned);
    }
    metadata.insert("uid".into(), Value::String(uid));
    metadata.insert("creationTimestamp".into(), Value::String(now_rfc3339()));
    if resource.tracks_generation {
        metadata.insert("generation".into(), Value::from(1));
    }
    if let Some(map) = object.as_object_mut() {
        map.insert("apiVersion".into(), Value::String(resource.api_version()));
        map.insert("kind".into(), Value::String(resource.kind.to_string()));
    }
    // Status belongs to controllers and agents; a client's status on create is dropped, as
    // kube-apiserver's strategies do.
    match resource.kind {
        "Namespace" => {
            object["status"] = json!({"phase": "Active"});
            if object.pointer("/spec/finalizers").is_none() {
                object["spec"] = json!({"finalizers": ["kubernetes"]});
            }
        }
        "Pod" => {
            object["status"] = json!({"phase": "Pending", "qosClass": "BestEffort"});
        }
        "Service" => {
            object["status"] = json!({"loadBalancer": {}});
        }
        "Deployment" | "ReplicaSet" | "StatefulSet" => {
            object["status"] = json!({});
        }
        _ => {}
    }
    set_defaults(resource, object);
}

/// The kind's defaults, applied on every create and update as kube-apiserver's decoding does.
pub fn set_defaults(resource: &ResourceInfo, object: &mut Value) {
    match resource.kind {
        "Service" => crate::service::set_defaults(object),
        "Pod" => {
            if let Some(spec) = object.get_mut("spec") {
                crate::workload::default_pod_spec(spec);
            }
        }
        "Deployment" | "ReplicaSet" | "StatefulSet" => {
            crate::workload::default_workload(resource.kind, object)
        }
        _ => {}
    }
}

/// Carries over what an update of the main resource may not change.
pub fn prepare_for_update(resource: &ResourceInfo, new: &mut Value, old: &Value) {
    keep_server_metadata(new, old);
    if resource.subresource("status").is_some() {
        match old.get("status") {
            Some(status) => new["status"] = status.clone(),
            None => {
                if let Some(map) = new.as_object_mut() {
                    map.remove("status");
                }
            }
        }
    }
    if resource.tracks_generation {
        let generation = old
            .pointer("/metadata/generation")
            .and_then(Value::as_i64)
            .unwrap_or(1);
        let generation = if new.get("spec") != old.get("spec") {
            generation + 1
        } else {
            generation
        };
        metadata_mut(new).insert("generation".into(), Value::from(generation));
    }
}

/// Carries over everything but `status` for a write to the `status` subresource.
pub fn prepare_for_status_update(new: &mut Value, old: &Value) {
    let status = new.get("status").cloned();
    *new = old.clone();
    match status {
        Some(status) => new["status"] = status,
        None => {
            if let Some(map) = new.as_object_mut() {
                map.remove("status");
            }
        }
    }
}

/// Metadata only the server sets: copied from the stored object.
fn keep_server_metadata(new: &mut Value, old: &Value) {
    let Some(old_metadata) = old.get("metadata").and_then(Value::as_object) else {
        return;
    };
    let new_metadata = metadata_mut(new);
    for server_owned in [
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "generation",
        "selfLink",
    ] {
        match old_metadata.get(server_owned) {
            Some(value) => new_metadata.insert(server_owned.into(), value.clone()),
            None => new_metadata.remove(server_owned),
        };
    }
    for client_owned_once in ["name", "namespace"] {
        if let Some(value) = old_metadata.get(client_owned_once) {
            new_metadata.insert(client_owned_once.into(), value.clone());
        }
    }
}

/// Namespaces that exist from the start and may not be deleted.
pub fn is_protected_namespace(name: &str) -> bool {
    matches!(name, "default" | "kube-system" | "kube-public")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployments() -> &'static ResourceInfo {
        ResourceInfo::find("apps", "deployments").unwrap()
    }

    #[test]
    fn generation_moves_only_with_the_spec() {
        let mut old = json!({"metadata":{"name":"a","uid":"u","generation":3},"spec":{"replicas":1},"status":{"replicas":1}});
        let mut new = json!({"metadata":{"name":"a","labels":{"x":"y"}},"spec":{"replicas":1},"status":{"replicas":9}});
        prepare_for_update(deployments(), &mut new, &old);
        assert_eq!(new["metadata"]["generation"], 3);
        assert_eq!(new["metadata"]["uid"], "u");
        assert_eq!(
            new["status"]["replicas"], 1,
            "status is kept on a main-resource update"
        );

        let mut changed = json!({"metadata":{"name":"a"},"spec":{"replicas":2}});
        prepare_for_update(deployments(), &mut changed, &old);
        assert_eq!(changed["metadata"]["generation"], 4);

        let mut status = json!({"metadata":{"name":"a","labels":{"no":"no"}},"spec":{"replicas":7},"status":{"replicas":2}});
        prepare_for_status_update(&mut status, &old);
        assert_eq!(status["spec"]["replicas"], 1);
        assert_eq!(status["status"]["replicas"], 2);
        assert!(status["metadata"].get("labels").is_none());
        old["status"] = json!(null);
    }

    #[test]
    fn create_sets_server_fields_and_drops_client_status() {
        let mut pod = json!({"metadata":{"name":"p","creationTimestamp":null,"uid":"mine"},"spec":{"containers":[]},"status":{"phase":"Running"}});
        let pods = ResourceInfo::find("", "pods").unwrap();
        prepare_for_create(pods, &mut pod, "server-uid".into());
        assert_eq!(pod["metadata"]["uid"], "server-uid");
        assert!(pod["metadata"]["creationTimestamp"].is_string());
        assert_eq!(pod["status"]["phase"], "Pending");
        assert_eq!(pod["kind"], "Pod");
        assert_eq!(pod["apiVersion"], "v1");
    }

    #[test]
    fn field_types_are_checked() {
        let deployment = json!({"metadata":{"name":"a"},"spec":{"replicas":"three"}});
        let error = check_field_types(deployments(), &deployment).unwrap_err();
        assert_eq!(error.code, 400);
        assert!(error.message.contains("cannot be handled as a Deployment"));
    }
}
