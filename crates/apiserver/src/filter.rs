//! Label and field selectors applied to stored objects.
//!
//! Name and namespace come from the storage key, and labels from a decode that skips every
//! other field, so the common selectors (`metadata.name=x`, `app=web`) never build a whole JSON
//! tree. Other fields (`spec.nodeName`, `involvedObject.uid`) decode the object.

use std::collections::BTreeMap;

use hollow_types::ResourceInfo;
use hollow_types::selector::{FieldSelector, LabelSelector};
use serde::Deserialize;
use serde_json::Value;

use crate::error::{ApiError, ApiResult};
use crate::object::field_string;

/// The fields a resource can be selected on besides `metadata.name` and `metadata.namespace`,
/// as kube-apiserver registers them.
fn selectable_fields(resource: &ResourceInfo) -> &'static [&'static str] {
    match resource.kind {
        "Pod" => &[
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        ],
        "Event" => &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ],
        "Namespace" => &["status.phase"],
        "Node" => &["spec.unschedulable"],
        "Service" => &["spec.clusterIP", "spec.type"],
        "ReplicaSet" => &["status.replicas"],
        _ => &[],
    }
}

/// A request's selectors, ready to test objects.
#[derive(Debug, Default)]
pub struct Filter {
    labels: Option<LabelSelector>,
    fields: Option<FieldSelector>,
    /// The field selector names something other than name and namespace.
    needs_object: bool,
    /// The one object a watch on an object's URL is about.
    name: Option<String>,
}

#[derive(Deserialize, Default)]
struct LabelsOnly {
    #[serde(default)]
    metadata: MetadataLabels,
}

#[derive(Deserialize, Default)]
struct MetadataLabels {
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

impl Filter {
    pub fn new(
        resource: &ResourceInfo,
        label_selector: Option<&str>,
        field_selector: Option<&str>,
    ) -> ApiResult<Filter> {
        let labels = match label_selector.filter(|text| !text.trim().is_empty()) {
            Some(text) => Some(
                LabelSelector::parse(text)
                    .map_err(|error| ApiError::bad_request(error.to_string()))?,
            ),
            None => None,
        };
        let mut needs_object = false;
        let fields = match field_selector.filter(|text| !text.trim().is_empty()) {
            Some(text) => {
                let selector = FieldSelector::parse(text)
                    .map_err(|error| ApiError::bad_request(error.to_string()))?;
                let allowed = selectable_fields(resource);
                for field in selector.fields() {
                    match field {
                        "metadata.name" | "metadata.namespace" => {}
                        other if allowed.contains(&other) => needs_object = true,
                        other => {
                            return Err(ApiError::bad_request(format!(
                                "field label not supported: {other}"
                            )));
                        }
                    }
                }
                Some(selector)
            }
            None => None,
        };
        Ok(Filter {
            labels,
            fields,
            needs_object,
            name: None,
        })
    }

    /// Adds `metadata.name=<name>` (a watch on a single object's URL).
    pub fn with_name(mut self, name: &str) -> Filter {
        self.name = Some(name.to_string());
        self
    }

    pub fn is_everything(&self) -> bool {
        self.labels.is_none() && self.fields.is_none() && self.name.is_none()
    }

    /// Tests a stored object by its key and bytes.
    pub fn matches(&self, key: &str, bytes: &[u8]) -> bool {
        if self.is_everything() {
            return true;
        }
        let (namespace, name) = name_and_namespace(key);
        if self.name.as_deref().is_some_and(|wanted| wanted != name) {
            return false;
        }
        if let Some(labels) = &self.labels {
            let parsed: LabelsOnly = serde_json::from_slice(bytes).unwrap_or_default();
            if !labels.matches(&parsed.metadata.labels) {
                return false;
            }
        }
        if let Some(fields) = &self.fields {
            let object: Option<Value> = if self.needs_object {
                serde_json::from_slice(bytes).ok()
            } else {
                None
            };
            return fields.matches(|field| match field {
                "metadata.name" => Some(name.to_string()),
                "metadata.namespace" => Some(namespace.unwrap_or_default().to_string()),
                other => object
                    .as_ref()
                    .and_then(|object| object_field(object, other)),
            });
        }
        true
    }
}

fn object_field(object: &Value, field: &str) -> Option<String> {
    match field {
        "source" => field_string(object, "source.component"),
        "spec.hostNetwork" | "spec.unschedulable" => {
            Some(field_string(object, field).unwrap_or_else(|| "false".to_string()))
        }
        _ => Some(field_string(object, field).unwrap_or_default()),
    }
}

/// Splits a storage key `/<group>/<plural>/[<namespace>/]<name>`.
fn name_and_namespace(key: &str) -> (Option<&str>, &str) {
    let mut parts = key.trim_start_matches('/').splitn(4, '/');
    let _group = parts.next();
    let _plural = parts.next();
    match (parts.next(), parts.next()) {
        (Some(namespace), Some(name)) => (Some(namespace), name),
        (Some(name), None) => (None, name),
        _ => (None, ""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pods() -> &'static ResourceInfo {
        ResourceInfo::find("", "pods").unwrap()
    }

    #[test]
    fn splits_keys() {
        assert_eq!(name_and_namespace("/core/pods/ns/a"), (Some("ns"), "a"));
        assert_eq!(name_and_namespace("/core/nodes/n1"), (None, "n1"));
    }

    #[test]
    fn selects_by_label_name_and_field() {
        let pod = br#"{"metadata":{"name":"a","labels":{"app":"web"}},"spec":{"nodeName":"n1"},"status":{"phase":"Running"}}"#;
        let key = "/core/pods/default/a";
        let filter = Filter::new(pods(), Some("app=web"), None).unwrap();
        assert!(filter.matches(key, pod));
        let filter = Filter::new(pods(), Some("app in (db)"), None).unwrap();
        assert!(!filter.matches(key, pod));
        let filter = Filter::new(pods(), None, Some("metadata.name=a,spec.nodeName=n1")).unwrap();
        assert!(filter.matches(key, pod));
        let filter = Filter::new(pods(), None, Some("status.phase!=Running")).unwrap();
        assert!(!filter.matches(key, pod));
        let filter = Filter::new(pods(), None, Some("metadata.namespace=other")).unwrap();
        assert!(!filter.matches(key, pod));
    }

    #[test]
    fn refuses_unknown_fields() {
        let error = Filter::new(pods(), None, Some("spec.foo=x")).unwrap_err();
        assert_eq!(error.code, 400);
        assert_eq!(error.message, "field label not supported: spec.foo");
    }
}
