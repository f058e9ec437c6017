//! Discovery, version and OpenAPI: how clients learn what the server serves.
//!
//! Everything is derived from the resource registry ([`hollow_types::RESOURCES`]) and built once
//! at start-up. Aggregated discovery (`apidiscovery.k8s.io` v2 and v2beta1) is what kubectl
//! uses; it needs the exact response content type or kubectl silently finds no resources. The
//! legacy documents (`APIVersions`, `APIGroupList`, `APIResourceList`) serve older clients.
//!
//! The OpenAPI documents are the minimum kubectl's validation needs: per group-version, a PATCH
//! operation that declares the `fieldValidation` parameter for each kind, so kubectl validates
//! on the server instead of downloading schemas.

use hollow_types::RESOURCES;
use hollow_types::resource::{ResourceInfo, groups};
use http::HeaderMap;
use serde_json::{Value, json};

/// The Kubernetes release hollow answers as. The gcloud `kubectl` dispatcher picks its client
/// version from this minor.
pub const KUBERNETES_MINOR: &str = "32";

pub fn version() -> Value {
    json!({
        "major": "1",
        "minor": KUBERNETES_MINOR,
        "gitVersion": format!("v1.{KUBERNETES_MINOR}.0-hollow.{}", env!("CARGO_PKG_VERSION")),
        "gitCommit": "hollow",
        "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z",
        "goVersion": "go1.23.4",
        "compiler": "gc",
        "platform": format!("{}/{}", std::env::consts::OS, go_arch()),
    })
}

fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// Which aggregated discovery version the client asked for, if any.
pub fn aggregated_version(headers: &HeaderMap) -> Option<&'static str> {
    let accept = headers.get(http::header::ACCEPT)?.to_str().ok()?;
    for media_range in accept.split(',') {
        let media_range = media_range.trim();
        if !media_range.contains("as=APIGroupDiscoveryList") {
            if media_range.starts_with("application/json") || media_range.starts_with("*/*") {
                return None;
            }
            continue;
        }
        if media_range.contains("v=v2beta1") {
            return Some("v2beta1");
        }
        if media_range.contains("v=v2") {
            return Some("v2");
        }
    }
    None
}

pub fn aggregated_content_type(version: &str) -> String {
    format!("application/json;g=apidiscovery.k8s.io;v={version};as=APIGroupDiscoveryList")
}

fn discovery_resource(resource: &ResourceInfo) -> Value {
    let subresources: Vec<Value> = resource
        .subresources
        .iter()
        .map(|sub| {
            json!({
                "subresource": sub.name,
                "responseKind": {"group": sub.group, "version": sub.version, "kind": sub.kind},
                "verbs": sub.verbs,
            })
        })
        .collect();
    let mut entry = json!({
        "resource": resource.plural,
        "responseKind": {"group": resource.group, "version": resource.version, "kind": resource.kind},
        "scope": if resource.is_namespaced() { "Namespaced" } else { "Cluster" },
        "singularResource": resource.singular,
        "verbs": resource.verbs,
        "subresources": subresources,
    });
    if !resource.short_names.is_empty() {
        entry["shortNames"] = json!(resource.short_names);
    }
    if !resource.categories.is_empty() {
        entry["categories"] = json!(resource.categories);
    }
    entry
}

/// The aggregated discovery document for `/api` (core group) or `/apis` (named groups).
pub fn aggregated(core: bool, version: &str) -> Value {
    let items: Vec<Value> = groups()
        .into_iter()
        .filter(|(group, _)| group.is_empty() == core)
        .map(|(group, group_version)| {
            let resources: Vec<Value> = RESOURCES
                .iter()
                .filter(|resource| resource.group == group)
                .map(discovery_resource)
                .collect();
            json!({
                "metadata": {"name": group, "creationTimestamp": null},
                "versions": [{"version": group_version, "resources": resources, "freshness": "Current"}],
            })
        })
        .collect();
    json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": format!("apidiscovery.k8s.io/{version}"),
        "metadata": {},
        "items": items,
    })
}

/// Legacy `/api`.
pub fn api_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    })
}

fn group_entry(group: &str, version: &str) -> Value {
    let group_version = format!("{group}/{version}");
    json!({
        "name": group,
        "versions": [{"groupVersion": group_version, "version": version}],
        "preferredVersion": {"groupVersion": group_version, "version": version},
    })
}

/// Legacy `/apis`.
pub fn api_group_list() -> Value {
    let groups: Vec<Value> = groups()
        .into_iter()
        .filter(|(group, _)| !group.is_empty())
        .map(|(group, version)| group_entry(group, version))
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// Legacy `/apis/{group}`.
pub fn api_group(group: &str) -> Option<Value> {
    let (_, version) = groups().into_iter().find(|(name, _)| *name == group)?;
    let mut entry = group_entry(group, version);
    entry["kind"] = Value::from("APIGroup");
    entry["apiVersion"] = Value::from("v1");
    Some(entry)
}

/// Legacy `/api/v1` and `/apis/{group}/{version}`.
pub fn api_resource_list(group: &str, version: &str) -> Option<Value> {
    let served: Vec<&ResourceInfo> = RESOURCES
        .iter()
        .filter(|resource| resource.group == group && resource.version == version)
        .collect();
    if served.is_empty() {
        return None;
    }
    let mut resources = Vec::new();
    for resource in served {
        let mut entry = json!({
            "name": resource.plural,
            "singularName": resource.singular,
            "namespaced": resource.is_namespaced(),
            "kind": resource.kind,
            "verbs": resource.verbs,
        });
        if !resource.short_names.is_empty() {
            entry["shortNames"] = json!(resource.short_names);
        }
        if !resource.categories.is_empty() {
            entry["categories"] = json!(resource.categories);
        }
        resources.push(entry);
        for sub in resource.subresources {
            let mut sub_entry = json!({
                "name": format!("{}/{}", resource.plural, sub.name),
                "singularName": "",
                "namespaced": resource.is_namespaced(),
                "kind": sub.kind,
                "verbs": sub.verbs,
            });
            if !sub.group.is_empty() && sub.group != group {
                sub_entry["group"] = Value::from(sub.group);
                sub_entry["version"] = Value::from(sub.version);
            }
            resources.push(sub_entry);
        }
    }
    let group_version = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": resources,
    }))
}

/// `/openapi/v3`: one document per served group-version.
pub fn openapi_root() -> Value {
    let mut paths = serde_json::Map::new();
    for (group, version) in groups() {
        let path = if group.is_empty() {
            format!("api/{version}")
        } else {
            format!("apis/{group}/{version}")
        };
        paths.insert(
            path.clone(),
            json!({"serverRelativeURL": format!("/openapi/v3/{path}?hash={}", openapi_hash())}),
        );
    }
    json!({"paths": paths})
}

/// Changes when the served set changes, so kubectl's OpenAPI cache follows upgrades.
fn openapi_hash() -> String {
    format!("hollow-{}", env!("CARGO_PKG_VERSION")).replace('.', "-")
}

/// `/openapi/v3/api/v1` or `/openapi/v3/apis/{group}/{version}`.
pub fn openapi_group_version(group: &str, version: &str) -> Option<Value> {
    let mut paths = serde_json::Map::new();
    for resource in RESOURCES
        .iter()
        .filter(|resource| resource.group == group && resource.version == version)
    {
        let base = if group.is_empty() {
            format!("/api/{version}")
        } else {
            format!("/apis/{group}/{version}")
        };
        let path = if resource.is_namespaced() {
            format!(
                "{base}/namespaces/{{namespace}}/{}/{{name}}",
                resource.plural
            )
        } else {
            format!("{base}/{}/{{name}}", resource.plural)
        };
        let operation = json!({
            "x-kubernetes-group-version-kind": {"group": group, "version": version, "kind": resource.kind},
            "parameters": [{"name": "fieldValidation", "in": "query", "schema": {"type": "string"}}],
        });
        paths.insert(path, json!({"put": operation.clone(), "patch": operation}));
    }
    if paths.is_empty() {
        return None;
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": format!("v1.{KUBERNETES_MINOR}.0")},
        "paths": paths,
        "components": {"schemas": {}},
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn aggregated_discovery_is_negotiated() {
        let mut headers = HeaderMap::new();
        headers.insert(http::header::ACCEPT, HeaderValue::from_static(
            "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json",
        ));
        assert_eq!(aggregated_version(&headers), Some("v2"));
        headers.insert(http::header::ACCEPT, HeaderValue::from_static(
            "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json",
        ));
        assert_eq!(aggregated_version(&headers), Some("v2beta1"));
        headers.insert(
            http::header::ACCEPT,
            HeaderValue::from_static("application/json, */*"),
        );
        assert_eq!(aggregated_version(&headers), None);
    }

    #[test]
    fn discovery_lists_every_resource_with_what_kubectl_needs() {
        let core = aggregated(true, "v2");
        let resources = core["items"][0]["versions"][0]["resources"]
            .as_array()
            .unwrap();
        let services = resources
            .iter()
            .find(|entry| entry["resource"] == "services")
            .unwrap();
        assert_eq!(services["shortNames"], json!(["svc"]));
        assert_eq!(services["categories"], json!(["all"]));
        assert_eq!(services["scope"], "Namespaced");
        assert_eq!(services["responseKind"]["kind"], "Service");
        let apps = aggregated(false, "v2beta1");
        assert_eq!(apps["apiVersion"], "apidiscovery.k8s.io/v2beta1");
        assert!(
            apps["items"]
                .as_array()
                .unwrap()
                .iter()
                .any(|group| group["metadata"]["name"] == "apps")
        );
        let legacy = api_resource_list("apps", "v1").unwrap();
        assert!(
            legacy["resources"]
                .as_array()
                .unwrap()
                .iter()
                .any(|entry| entry["name"] == "statefulsets/scale")
        );
    }
}
